//! The SBOM kiln makes itself, with no scanner image: the packages an image's filesystem records — dpkg's status
//! database ([`dpkg`]), apk's installed database ([`apk`]), Python distributions' metadata ([`python`]), npm
//! packages under `node_modules` ([`npm`]) — as an SPDX 2.3 JSON document ([`spdx`]). The tree is walked once,
//! reading directory entries only, and a file only when its path says it is package metadata, so memory stays
//! bounded by the package list and the time by the number of directories.

pub mod apk;
pub mod dpkg;
pub mod npm;
pub mod python;
pub mod spdx;

use std::path::{Path, PathBuf};

/// Which package manager a package was found by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Ecosystem {
    /// Debian's dpkg.
    Deb,
    /// Alpine's apk.
    Apk,
    /// A Python distribution (dist-info or egg-info).
    Python,
    /// An npm package.
    Npm,
}

impl Ecosystem {
    /// The word an SPDX id and a package URL use for it.
    pub fn purl_type(self) -> &'static str {
        match self {
            Ecosystem::Deb => "deb",
            Ecosystem::Apk => "apk",
            Ecosystem::Python => "pypi",
            Ecosystem::Npm => "npm",
        }
    }
}

/// One package found in the image.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Package {
    /// Who found it.
    pub ecosystem: Ecosystem,
    /// Its name.
    pub name: String,
    /// Its version.
    pub version: String,
    /// Its architecture, when its database says (dpkg, apk).
    pub arch: Option<String>,
    /// Its declared license, when its metadata says.
    pub license: Option<String>,
    /// The metadata it was read from, as a path in the image (`/var/lib/dpkg/status`).
    pub location: String,
}

/// The distribution of the image, from `/etc/os-release` (`debian`, `12`): package URLs of system packages name it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Distro {
    /// `ID`.
    pub id: Option<String>,
    /// `VERSION_ID`.
    pub version_id: Option<String>,
}

/// What a scan found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Scan {
    /// The packages, sorted, each once.
    pub packages: Vec<Package>,
    /// The distribution.
    pub distro: Distro,
}

/// Top-level directories that hold no packages and may be huge or special.
const SKIP_TOP: &[&str] = &["proc", "sys", "dev"];

/// Scans the filesystem rooted at `root` (a mounted image) for the packages it records. Unreadable metadata is
/// passed over, as a scanner would; only a root that cannot be read at all is an error.
pub fn scan(root: &Path) -> std::io::Result<Scan> {
    std::fs::read_dir(root)?;
    let mut packages = Vec::new();
    packages.extend(dpkg::read(root));
    packages.extend(apk::read(root));
    walk(root, &mut packages);
    packages.sort();
    packages
        .dedup_by(|a, b| a.ecosystem == b.ecosystem && a.name == b.name && a.version == b.version);
    Ok(Scan {
        packages,
        distro: read_distro(root),
    })
}

/// Where in the tree a directory is, for what its entries may be.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Place {
    Plain,
    /// Under a `site-packages` or `dist-packages` directory.
    SitePackages,
}

/// One walk of the tree for the metadata found by path: Python distributions and npm packages.
fn walk(root: &Path, out: &mut Vec<Package>) {
    let mut stack: Vec<(PathBuf, Place)> = vec![(root.to_path_buf(), Place::Plain)];
    while let Some((dir, place)) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        let at_top = dir == root;
        let in_node_modules = dir.file_name().is_some_and(|n| n == "node_modules");
        for e in entries.flatten() {
            let Ok(kind) = e.file_type() else { continue };
            let name = e.file_name();
            let Some(name) = name.to_str() else { continue };
            let path = e.path();
            if kind.is_dir() {
                if at_top && SKIP_TOP.contains(&name) {
                    continue;
                }
                if place == Place::SitePackages
                    && (name.ends_with(".dist-info") || name.ends_with(".egg-info"))
                {
                    out.extend(python::read_dist(&path, &image_path(root, &path)));
                    continue;
                }
                if in_node_modules {
                    if name.starts_with('@') {
                        // A scope: its entries are packages too.
                        if let Ok(scoped) = std::fs::read_dir(&path) {
                            for s in scoped.flatten() {
                                if s.file_type().is_ok_and(|t| t.is_dir()) {
                                    let p = s.path();
                                    out.extend(npm::read_package(&p, &image_path(root, &p)));
                                    stack.push((p, place));
                                }
                            }
                        }
                        continue;
                    }
                    out.extend(npm::read_package(&path, &image_path(root, &path)));
                }
                let next = if name == "site-packages" || name == "dist-packages" {
                    Place::SitePackages
                } else {
                    place
                };
                stack.push((path, next));
            } else if kind.is_file() && place == Place::SitePackages && name.ends_with(".egg-info")
            {
                // An old-style egg-info file is the PKG-INFO itself.
                out.extend(python::read_pkg_info_file(&path, &image_path(root, &path)));
            }
        }
    }
}

/// `root/usr/lib/x` → `/usr/lib/x`.
fn image_path(root: &Path, p: &Path) -> String {
    match p.strip_prefix(root) {
        Ok(rel) => format!("/{}", rel.display()),
        Err(_) => p.display().to_string(),
    }
}

/// `/etc/os-release` (or `/usr/lib/os-release`): ID and VERSION_ID.
fn read_distro(root: &Path) -> Distro {
    let text = std::fs::read_to_string(root.join("etc/os-release"))
        .or_else(|_| std::fs::read_to_string(root.join("usr/lib/os-release")))
        .unwrap_or_default();
    let mut d = Distro::default();
    for line in text.lines() {
        let Some((k, v)) = line.split_once('=') else {
            continue;
        };
        let v = v.trim().trim_matches('"').to_string();
        match k.trim() {
            "ID" => d.id = Some(v),
            "VERSION_ID" => d.version_id = Some(v),
            _ => {}
        }
    }
    d
}

/// RFC 822-style header fields (`Name: value`, continuation lines indented) of one paragraph, in order: what
/// dpkg's status, Python's METADATA/PKG-INFO share. Stops at the paragraph's end.
pub(crate) fn header_fields<'a>(
    lines: &mut impl Iterator<Item = &'a str>,
) -> Vec<(&'a str, String)> {
    let mut fields: Vec<(&str, String)> = Vec::new();
    for line in lines {
        if line.trim().is_empty() {
            if fields.is_empty() {
                continue;
            }
            break;
        }
        if line.starts_with([' ', '\t']) {
            if let Some((_, v)) = fields.last_mut() {
                v.push('\n');
                v.push_str(line.trim());
            }
            continue;
        }
        if let Some((k, v)) = line.split_once(':') {
            fields.push((k.trim(), v.trim().to_string()));
        }
    }
    fields
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(root: &Path, path: &str, text: &str) {
        let p = root.join(path);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, text).unwrap();
    }

    #[test]
    fn one_walk_finds_every_kind_of_package() {
        let dir = tempfile::tempdir().unwrap();
        let r = dir.path();
        write(r, "etc/os-release", "ID=debian\nVERSION_ID=\"12\"\n");
        write(
            r,
            "var/lib/dpkg/status",
            "Package: bash\nStatus: install ok installed\nVersion: 5.2.15-2+b2\nArchitecture: amd64\n\n\
             Package: gone\nStatus: deinstall ok config-files\nVersion: 1\n\n",
        );
        write(
            r,
            "opt/venv/lib/python3.11/site-packages/torch-2.3.1+cu121.dist-info/METADATA",
            "Metadata-Version: 2.1\nName: torch\nVersion: 2.3.1+cu121\nLicense: BSD-3\n\nlong text\nName: no\n",
        );
        write(
            r,
            "usr/lib/python3/dist-packages/six-1.16.0.egg-info",
            "Metadata-Version: 1.1\nName: six\nVersion: 1.16.0\n",
        );
        // Not under site-packages: a build tree's metadata is no installed package.
        write(
            r,
            "src/thing.dist-info/METADATA",
            "Name: thing\nVersion: 9\n",
        );
        write(
            r,
            "app/node_modules/left-pad/package.json",
            r#"{"name":"left-pad","version":"1.3.0","license":"WTFPL"}"#,
        );
        write(
            r,
            "app/node_modules/@types/node/package.json",
            r#"{"name":"@types/node","version":"20.1.0"}"#,
        );
        write(
            r,
            "app/node_modules/left-pad/node_modules/inner/package.json",
            r#"{"name":"inner","version":"0.1.0"}"#,
        );
        let s = scan(r).unwrap();
        let got: Vec<(Ecosystem, &str, &str)> = s
            .packages
            .iter()
            .map(|p| (p.ecosystem, p.name.as_str(), p.version.as_str()))
            .collect();
        assert_eq!(
            got,
            [
                (Ecosystem::Deb, "bash", "5.2.15-2+b2"),
                (Ecosystem::Python, "six", "1.16.0"),
                (Ecosystem::Python, "torch", "2.3.1+cu121"),
                (Ecosystem::Npm, "@types/node", "20.1.0"),
                (Ecosystem::Npm, "inner", "0.1.0"),
                (Ecosystem::Npm, "left-pad", "1.3.0"),
            ]
        );
        assert_eq!(s.distro.id.as_deref(), Some("debian"));
        assert_eq!(s.distro.version_id.as_deref(), Some("12"));
        let torch = s.packages.iter().find(|p| p.name == "torch").unwrap();
        assert_eq!(
            torch.location,
            "/opt/venv/lib/python3.11/site-packages/torch-2.3.1+cu121.dist-info/METADATA"
        );
        assert_eq!(torch.license.as_deref(), Some("BSD-3"));
    }
}
