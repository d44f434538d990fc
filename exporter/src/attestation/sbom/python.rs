//! Python distributions: `*.dist-info/METADATA` (wheels, pip) and `*.egg-info` (`PKG-INFO` inside a directory, or
//! the file itself) under `site-packages` or `dist-packages`. Only the header is read: a METADATA file's
//! description can be long.

use std::io::{BufRead, BufReader, Read};
use std::path::Path;

use super::{header_fields, Ecosystem, Package};

/// The most of a metadata file's header read (a header is a few KB; the rest is the description).
const HEADER_LIMIT: u64 = 256 << 10;

/// The distribution a `.dist-info` or `.egg-info` directory describes.
pub fn read_dist(dir: &Path, location: &str) -> Option<Package> {
    for file in ["METADATA", "PKG-INFO"] {
        let p = dir.join(file);
        if p.is_file() {
            return read_pkg_info_file(&p, &format!("{location}/{file}"));
        }
    }
    None
}

/// The distribution a METADATA / PKG-INFO file names.
pub fn read_pkg_info_file(path: &Path, location: &str) -> Option<Package> {
    let f = std::fs::File::open(path).ok()?;
    let mut header = String::new();
    for line in BufReader::new(f.take(HEADER_LIMIT)).lines() {
        let line = line.ok()?;
        if line.trim().is_empty() {
            break;
        }
        header.push_str(&line);
        header.push('\n');
    }
    parse(&header, location)
}

/// The Name and Version (and License) of a metadata header.
pub fn parse(header: &str, location: &str) -> Option<Package> {
    let fields = header_fields(&mut header.lines());
    let get = |k: &str| {
        fields
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(k))
            .map(|(_, v)| v.clone())
            .filter(|v| !v.is_empty() && v != "UNKNOWN")
    };
    Some(Package {
        ecosystem: Ecosystem::Python,
        name: get("Name")?,
        version: get("Version")?,
        arch: None,
        license: get("License-Expression").or_else(|| get("License")),
        location: location.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn name_and_version_from_the_header() {
        let p = parse(
            "Metadata-Version: 2.1\nName: nvidia-cudnn-cu12\nVersion: 8.9.2.26\nLicense: UNKNOWN\n",
            "/m",
        )
        .unwrap();
        assert_eq!(
            (p.name.as_str(), p.version.as_str()),
            ("nvidia-cudnn-cu12", "8.9.2.26")
        );
        assert_eq!(p.license, None);
        assert!(parse("Name: x\n", "/m").is_none(), "no version, no package");
    }
}
