//! npm packages: `node_modules/<name>/package.json` and `node_modules/@scope/<name>/package.json`, at any depth.

use std::io::Read;
use std::path::Path;

use super::{Ecosystem, Package};

/// The most of a package.json read: manifests are small; a larger one is no package manifest worth parsing.
const MANIFEST_LIMIT: u64 = 4 << 20;

/// The package a `node_modules` entry holds, from its package.json's name and version.
pub fn read_package(dir: &Path, location: &str) -> Option<Package> {
    let f = std::fs::File::open(dir.join("package.json")).ok()?;
    let mut bytes = Vec::new();
    f.take(MANIFEST_LIMIT).read_to_end(&mut bytes).ok()?;
    parse(&bytes, &format!("{location}/package.json"))
}

/// A package.json's name, version and license.
pub fn parse(bytes: &[u8], location: &str) -> Option<Package> {
    let v: serde_json::Value = serde_json::from_slice(bytes).ok()?;
    let name = v.get("name")?.as_str()?.to_string();
    let version = v.get("version")?.as_str()?.to_string();
    let license = match v.get("license") {
        Some(serde_json::Value::String(s)) => Some(s.clone()),
        Some(l) => l.get("type").and_then(|t| t.as_str()).map(str::to_string),
        None => None,
    };
    Some(Package {
        ecosystem: Ecosystem::Npm,
        name,
        version,
        arch: None,
        license,
        location: location.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_manifest_without_a_version_is_no_package() {
        assert!(parse(br#"{"name":"x"}"#, "/p").is_none());
        let p = parse(
            br#"{"name":"x","version":"1.0.0","license":{"type":"MIT"}}"#,
            "/p",
        )
        .unwrap();
        assert_eq!(p.license.as_deref(), Some("MIT"));
    }
}
