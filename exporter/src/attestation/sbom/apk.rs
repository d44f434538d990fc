//! Alpine packages: `/lib/apk/db/installed`, one record per package, one `X:value` line per field.

use std::path::Path;

use super::{Ecosystem, Package};

/// Where apk keeps its installed database.
const INSTALLED: &str = "lib/apk/db/installed";

/// The packages apk's database under `root` records.
pub fn read(root: &Path) -> Vec<Package> {
    match std::fs::read_to_string(root.join(INSTALLED)) {
        Ok(text) => parse(&text),
        Err(_) => Vec::new(),
    }
}

/// Every record with a name (`P:`) and a version (`V:`).
pub fn parse(text: &str) -> Vec<Package> {
    let mut out = Vec::new();
    let (mut name, mut version, mut arch, mut license) = (None, None, None, None);
    let mut flush = |name: &mut Option<String>,
                     version: &mut Option<String>,
                     arch: &mut Option<String>,
                     license: &mut Option<String>| {
        if let (Some(n), Some(v)) = (name.take(), version.take()) {
            out.push(Package {
                ecosystem: Ecosystem::Apk,
                name: n,
                version: v,
                arch: arch.take(),
                license: license.take(),
                location: format!("/{INSTALLED}"),
            });
        }
        *arch = None;
        *license = None;
    };
    for line in text.lines() {
        if line.trim().is_empty() {
            flush(&mut name, &mut version, &mut arch, &mut license);
            continue;
        }
        match line.split_once(':') {
            Some(("P", v)) => name = Some(v.to_string()),
            Some(("V", v)) => version = Some(v.to_string()),
            Some(("A", v)) => arch = Some(v.to_string()),
            Some(("L", v)) => license = Some(v.to_string()),
            _ => {}
        }
    }
    flush(&mut name, &mut version, &mut arch, &mut license);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_are_separated_by_blank_lines() {
        let text =
            "C:Q1abc=\nP:musl\nV:1.2.4-r2\nA:x86_64\nL:MIT\nF:lib\nR:libc.musl-x86_64.so.1\n\n\
                    P:busybox\nV:1.36.1-r5\nA:x86_64\n";
        let p = parse(text);
        assert_eq!(p.len(), 2);
        assert_eq!(
            (p[0].name.as_str(), p[0].version.as_str()),
            ("musl", "1.2.4-r2")
        );
        assert_eq!(p[0].license.as_deref(), Some("MIT"));
        assert_eq!(
            (p[1].name.as_str(), p[1].arch.as_deref()),
            ("busybox", Some("x86_64"))
        );
        assert_eq!(p[1].license, None);
    }
}
