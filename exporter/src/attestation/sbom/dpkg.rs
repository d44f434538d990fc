//! Debian packages: `/var/lib/dpkg/status` (what `dpkg -l` lists as installed) and the per-package files of
//! `/var/lib/dpkg/status.d/` that distroless images carry instead.

use std::path::Path;

use super::{header_fields, Ecosystem, Package};

/// The installed packages dpkg's databases under `root` record.
pub fn read(root: &Path) -> Vec<Package> {
    let mut out = Vec::new();
    if let Ok(text) = std::fs::read_to_string(root.join("var/lib/dpkg/status")) {
        out.extend(parse(&text, "/var/lib/dpkg/status", true));
    }
    if let Ok(entries) = std::fs::read_dir(root.join("var/lib/dpkg/status.d")) {
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            // `<pkg>.md5sums` files list checksums, not packages.
            if name.ends_with(".md5sums") {
                continue;
            }
            if let Ok(text) = std::fs::read_to_string(e.path()) {
                out.extend(parse(
                    &text,
                    &format!("/var/lib/dpkg/status.d/{name}"),
                    false,
                ));
            }
        }
    }
    out
}

/// The packages of one status file: every paragraph with a Package and a Version, and (where the file says, as
/// the main status file does) a Status ending in `installed`.
pub fn parse(text: &str, location: &str, needs_status: bool) -> Vec<Package> {
    let mut out = Vec::new();
    let mut lines = text.lines().peekable();
    while lines.peek().is_some() {
        let fields = header_fields(&mut lines);
        let get = |k: &str| {
            fields
                .iter()
                .find(|(n, _)| n.eq_ignore_ascii_case(k))
                .map(|(_, v)| v.clone())
        };
        let installed = match get("Status") {
            Some(s) => s.split_whitespace().last() == Some("installed"),
            None => !needs_status,
        };
        if let (Some(name), Some(version), true) = (get("Package"), get("Version"), installed) {
            out.push(Package {
                ecosystem: Ecosystem::Deb,
                name,
                version,
                arch: get("Architecture"),
                license: None,
                location: location.to_string(),
            });
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn installed_paragraphs_only_with_continuations_skipped() {
        let text = "Package: dpkg\nEssential: yes\nStatus: install ok installed\nVersion: 1.21.22\n\
                    Description: Debian package management system\n This package provides\n .\n more\n\
                    Architecture: amd64\n\n\n\
                    Package: half\nStatus: install ok half-installed\nVersion: 2\n\n\
                    Package: libc6\nStatus: install ok installed\nVersion: 2.36-9+deb12u7\n";
        let p = parse(text, "/var/lib/dpkg/status", true);
        assert_eq!(p.len(), 2);
        assert_eq!(
            (p[0].name.as_str(), p[0].version.as_str()),
            ("dpkg", "1.21.22")
        );
        assert_eq!(p[0].arch.as_deref(), Some("amd64"));
        assert_eq!(
            (p[1].name.as_str(), p[1].version.as_str()),
            ("libc6", "2.36-9+deb12u7")
        );
        // status.d files (distroless) carry no Status.
        assert_eq!(
            parse("Package: tzdata\nVersion: 2024a\n", "x", false).len(),
            1
        );
    }
}
