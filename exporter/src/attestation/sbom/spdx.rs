//! A scan as an SPDX 2.3 JSON document — the predicate of an `https://spdx.dev/Document` statement — with a
//! package URL per package, as scanners write them, so tools that read BuildKit's SBOMs read kiln's.

use serde::Serialize;

use super::{Distro, Ecosystem, Package, Scan};

/// The document's creator line.
fn creator() -> String {
    format!("Tool: kiln-{}", env!("CARGO_PKG_VERSION"))
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Document<'a> {
    spdx_version: &'static str,
    data_license: &'static str,
    #[serde(rename = "SPDXID")]
    spdx_id: &'static str,
    name: &'a str,
    document_namespace: String,
    creation_info: CreationInfo,
    packages: Vec<SpdxPackage>,
    relationships: Vec<Relationship>,
}

#[derive(Serialize)]
struct CreationInfo {
    creators: Vec<String>,
    created: String,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct SpdxPackage {
    name: String,
    #[serde(rename = "SPDXID")]
    spdx_id: String,
    version_info: String,
    download_location: &'static str,
    files_analyzed: bool,
    license_concluded: &'static str,
    license_declared: &'static str,
    copyright_text: &'static str,
    source_info: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    comment: Option<String>,
    external_refs: Vec<ExternalRef>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ExternalRef {
    reference_category: &'static str,
    reference_type: &'static str,
    reference_locator: String,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Relationship {
    spdx_element_id: &'static str,
    relationship_type: &'static str,
    related_spdx_element: String,
}

/// Percent-encodes what a package URL component may not hold as it is.
fn pct(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b".-_~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The package URL of `p`: `pkg:deb/debian/bash@5.2.15-2%2Bb2?arch=amd64&distro=debian-12`,
/// `pkg:apk/alpine/musl@1.2.4-r2?arch=x86_64`, `pkg:pypi/torch@2.3.1%2Bcu121`, `pkg:npm/%40types/node@20.1.0`.
pub fn purl(p: &Package, distro: &Distro) -> String {
    let version = pct(&p.version);
    match p.ecosystem {
        Ecosystem::Deb | Ecosystem::Apk => {
            let default = if p.ecosystem == Ecosystem::Deb {
                "debian"
            } else {
                "alpine"
            };
            let ns = distro.id.as_deref().unwrap_or(default);
            let mut q = Vec::new();
            if let Some(a) = &p.arch {
                q.push(format!("arch={}", pct(a)));
            }
            if let (Some(id), Some(v)) = (&distro.id, &distro.version_id) {
                q.push(format!("distro={}-{}", pct(id), pct(v)));
            }
            let q = if q.is_empty() {
                String::new()
            } else {
                format!("?{}", q.join("&"))
            };
            format!(
                "pkg:{}/{}/{}@{version}{q}",
                p.ecosystem.purl_type(),
                pct(ns),
                pct(&p.name)
            )
        }
        // PyPI names are normalised: lower case, `_` and `.` as `-`.
        Ecosystem::Python => format!(
            "pkg:pypi/{}@{version}",
            pct(&p.name.to_lowercase().replace(['_', '.'], "-"))
        ),
        Ecosystem::Npm => match p.name.split_once('/') {
            Some((scope, name)) => format!("pkg:npm/{}/{}@{version}", pct(scope), pct(name)),
            None => format!("pkg:npm/{}@{version}", pct(&p.name)),
        },
    }
}

/// An SPDX identifier from free text: letters, digits, `.` and `-` only.
fn spdx_id(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '.' || c == '-' {
                c
            } else {
                '-'
            }
        })
        .collect()
}

fn source_info(p: &Package) -> String {
    let what = match p.ecosystem {
        Ecosystem::Deb => "installed Debian package database",
        Ecosystem::Apk => "installed Alpine package database",
        Ecosystem::Python => "installed Python package metadata",
        Ecosystem::Npm => "installed npm package manifest",
    };
    format!("acquired package info from {what}: {}", p.location)
}

/// The SPDX 2.3 JSON document of `scan`, named `name` (the image), created at `created` (RFC 3339). Its namespace
/// is derived from its content, so the same image gives the same document.
pub fn document(scan: &Scan, name: &str, created: &str) -> Result<Vec<u8>, serde_json::Error> {
    let mut packages = Vec::with_capacity(scan.packages.len());
    let mut relationships = Vec::with_capacity(scan.packages.len());
    let mut fingerprint = sha2_hex_init();
    for (i, p) in scan.packages.iter().enumerate() {
        let id = format!(
            "SPDXRef-Package-{}-{}-{i}",
            p.ecosystem.purl_type(),
            spdx_id(&p.name)
        );
        let locator = purl(p, &scan.distro);
        sha2_update(&mut fingerprint, locator.as_bytes());
        relationships.push(Relationship {
            spdx_element_id: "SPDXRef-DOCUMENT",
            relationship_type: "DESCRIBES",
            related_spdx_element: id.clone(),
        });
        packages.push(SpdxPackage {
            name: p.name.clone(),
            spdx_id: id,
            version_info: p.version.clone(),
            download_location: "NOASSERTION",
            files_analyzed: false,
            license_concluded: "NOASSERTION",
            license_declared: "NOASSERTION",
            copyright_text: "NOASSERTION",
            source_info: source_info(p),
            comment: p.license.as_ref().map(|l| format!("license: {l}")),
            external_refs: vec![ExternalRef {
                reference_category: "PACKAGE-MANAGER",
                reference_type: "purl",
                reference_locator: locator,
            }],
        });
    }
    let doc = Document {
        spdx_version: "SPDX-2.3",
        data_license: "CC0-1.0",
        spdx_id: "SPDXRef-DOCUMENT",
        name,
        document_namespace: format!(
            "https://kiln.dev/spdxdocs/{}-{}",
            spdx_id(name),
            sha2_finish(fingerprint)
        ),
        creation_info: CreationInfo {
            creators: vec![creator()],
            created: created.to_string(),
        },
        packages,
        relationships,
    };
    serde_json::to_vec(&doc)
}

fn sha2_hex_init() -> sha2::Sha256 {
    <sha2::Sha256 as sha2::Digest>::new()
}

fn sha2_update(h: &mut sha2::Sha256, bytes: &[u8]) {
    sha2::Digest::update(h, bytes);
    sha2::Digest::update(h, b"\n");
}

fn sha2_finish(h: sha2::Sha256) -> String {
    let out = sha2::Digest::finalize(h);
    out.iter().take(16).map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pkg(e: Ecosystem, name: &str, version: &str, arch: Option<&str>) -> Package {
        Package {
            ecosystem: e,
            name: name.into(),
            version: version.into(),
            arch: arch.map(Into::into),
            license: None,
            location: "/x".into(),
        }
    }

    #[test]
    fn package_urls_per_ecosystem() {
        let debian = Distro {
            id: Some("debian".into()),
            version_id: Some("12".into()),
        };
        assert_eq!(
            purl(
                &pkg(Ecosystem::Deb, "bash", "5.2.15-2+b2", Some("amd64")),
                &debian
            ),
            "pkg:deb/debian/bash@5.2.15-2%2Bb2?arch=amd64&distro=debian-12"
        );
        assert_eq!(
            purl(
                &pkg(Ecosystem::Python, "Typing_Extensions", "4.12.2", None),
                &debian
            ),
            "pkg:pypi/typing-extensions@4.12.2"
        );
        assert_eq!(
            purl(&pkg(Ecosystem::Npm, "@types/node", "20.1.0", None), &debian),
            "pkg:npm/%40types/node@20.1.0"
        );
    }

    #[test]
    fn the_document_is_spdx_2_3_and_the_same_for_the_same_packages() {
        let scan = Scan {
            packages: vec![pkg(Ecosystem::Deb, "dpkg", "1.21.22", Some("amd64"))],
            distro: Distro::default(),
        };
        let a = document(&scan, "app", "2024-01-01T00:00:00Z").unwrap();
        assert_eq!(a, document(&scan, "app", "2024-01-01T00:00:00Z").unwrap());
        let v: serde_json::Value = serde_json::from_slice(&a).unwrap();
        assert_eq!(v["spdxVersion"], "SPDX-2.3");
        assert_eq!(v["SPDXID"], "SPDXRef-DOCUMENT");
        assert_eq!(v["packages"][0]["name"], "dpkg");
        assert_eq!(v["packages"][0]["versionInfo"], "1.21.22");
        assert_eq!(
            v["packages"][0]["externalRefs"][0]["referenceLocator"],
            "pkg:deb/debian/dpkg@1.21.22?arch=amd64"
        );
        assert_eq!(
            v["relationships"][0]["relatedSpdxElement"],
            v["packages"][0]["SPDXID"]
        );
    }
}
