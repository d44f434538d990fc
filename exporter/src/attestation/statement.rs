//! In-toto statements: a predicate (provenance, SBOM) and the subjects it is about, as BuildKit's
//! `MakeInTotoStatements` wraps what a build attests.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

/// One attestation of one platform's result, before it names its subjects: what the build says (the predicate)
/// and where `-o type=local` writes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attestation {
    /// The predicate type URI (e.g. [`super::PREDICATE_SLSA_V1`]).
    pub predicate_type: String,
    /// The predicate, as JSON; shared because every output of a build wraps the same one.
    pub predicate: Arc<Vec<u8>>,
    /// Its file name in a local output (`provenance.json`, `sbom.spdx.json`), as BuildKit names it.
    pub filename: String,
    /// Only for outputs that hold images (BuildKit's `inline-only`): not written into a local directory.
    pub inline_only: bool,
}

/// What a statement is about: a name and its digests.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Subject {
    /// A package URL of the image (`pkg:docker/app@1?platform=linux%2Famd64`), a file's path, or `_`.
    pub name: String,
    /// Digests by algorithm (`sha256` → hex).
    pub digest: BTreeMap<String, String>,
}

impl Subject {
    /// A subject named `name` with one sha256 digest.
    pub fn sha256(name: impl Into<String>, digest: &oci::Digest) -> Subject {
        Subject {
            name: name.into(),
            digest: BTreeMap::from([("sha256".to_string(), digest.hex().to_string())]),
        }
    }
}

/// The in-toto statement type BuildKit writes.
pub const STATEMENT_V1: &str = "https://in-toto.io/Statement/v1";

/// The header of an in-toto v1 statement: everything but its predicate (read back to retarget a statement).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Statement {
    /// `https://in-toto.io/Statement/v1`.
    #[serde(rename = "_type")]
    pub type_: String,
    /// The predicate type URI.
    #[serde(rename = "predicateType")]
    pub predicate_type: String,
    /// What the statement is about.
    pub subject: Vec<Subject>,
}

impl Statement {
    /// The statement wrapping `attestation`'s predicate for `subjects`, as JSON: the predicate's bytes go in as
    /// they are, never parsed again (an SBOM of a large venv is megabytes).
    pub fn bytes(
        attestation: &Attestation,
        subjects: Vec<Subject>,
    ) -> Result<Vec<u8>, serde_json::Error> {
        Statement::wrap(
            &attestation.predicate_type,
            subjects,
            &attestation.predicate,
        )
    }

    /// `{"_type":…,"predicateType":…,"subject":[…],"predicate":PREDICATE}`, BuildKit's field order.
    pub(crate) fn wrap(
        predicate_type: &str,
        subjects: Vec<Subject>,
        predicate: &[u8],
    ) -> Result<Vec<u8>, serde_json::Error> {
        let head = Statement {
            type_: STATEMENT_V1.to_string(),
            predicate_type: predicate_type.to_string(),
            subject: subjects,
        };
        let mut out = serde_json::to_vec(&head)?;
        out.pop();
        out.extend_from_slice(b",\"predicate\":");
        out.extend_from_slice(predicate);
        out.push(b'}');
        Ok(out)
    }
}

/// The package URL BuildKit names an image with (`util/purl.RefToPURL`): `docker.io/library/app:1` on linux/amd64
/// → `pkg:docker/app@1?platform=linux%2Famd64`; a digest reference carries it as the `digest` qualifier.
pub fn image_purl(reference: &str, platform: Option<&oci::Platform>) -> String {
    let (name, digest) = match reference.split_once('@') {
        Some((n, d)) => (n, Some(d)),
        None => (reference, None),
    };
    // The tag is after the last ':' that follows the last '/' (a registry's port is not a tag).
    let slash = name.rfind('/').map_or(0, |i| i + 1);
    let (repo, tag) = match name[slash..].rfind(':') {
        Some(i) => (&name[..slash + i], Some(&name[slash + i + 1..])),
        None => (name, None),
    };
    let tag = match (tag, digest) {
        (Some(t), _) => Some(t),
        (None, None) => Some("latest"),
        (None, Some(_)) => None,
    };
    let familiar = repo
        .strip_prefix("docker.io/library/")
        .or_else(|| repo.strip_prefix("docker.io/"))
        .unwrap_or(repo);
    let mut out = format!("pkg:docker/{familiar}");
    if let Some(t) = tag {
        out.push('@');
        out.push_str(t);
    }
    let mut qualifiers = Vec::new();
    if let Some(d) = digest {
        qualifiers.push(format!("digest={}", d.replace(':', "%3A")));
    }
    if let Some(p) = platform {
        qualifiers.push(format!("platform={}", p.to_string().replace('/', "%2F")));
    }
    if !qualifiers.is_empty() {
        out.push('?');
        out.push_str(&qualifiers.join("&"));
    }
    out
}

/// The subjects of an image's statements, as BuildKit's image exporter names them: one package URL per name the
/// image is given, all with the image manifest's digest; `_` when it has no name.
pub fn image_subjects(
    names: &[String],
    platform: &oci::Platform,
    manifest: &oci::Digest,
) -> Vec<Subject> {
    if names.is_empty() {
        return vec![Subject::sha256("_", manifest)];
    }
    names
        .iter()
        .map(|n| Subject::sha256(image_purl(n, Some(platform)), manifest))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn package_urls_name_images_as_buildkit_does() {
        let amd: oci::Platform = "linux/amd64".parse().unwrap();
        assert_eq!(
            image_purl("docker.io/library/alpine:latest", Some(&amd)),
            "pkg:docker/alpine@latest?platform=linux%2Famd64"
        );
        assert_eq!(
            image_purl("localhost:5000/team/app", None),
            "pkg:docker/localhost:5000/team/app@latest"
        );
        assert_eq!(
            image_purl("docker.io/library/debian:12@sha256:abcd", Some(&amd)),
            "pkg:docker/debian@12?digest=sha256%3Aabcd&platform=linux%2Famd64"
        );
    }

    #[test]
    fn a_statement_keeps_its_predicate_bytes_and_names_its_subjects() {
        let a = Attestation {
            predicate_type: super::super::PREDICATE_SPDX.into(),
            predicate: Arc::new(br#"{"spdxVersion":"SPDX-2.3"}"#.to_vec()),
            filename: "sbom.spdx.json".into(),
            inline_only: false,
        };
        let d = oci::Digest::sha256_of(b"m");
        let s =
            Statement::bytes(&a, image_subjects(&[], &"linux/amd64".parse().unwrap(), &d)).unwrap();
        let v: serde_json::Value = serde_json::from_slice(&s).unwrap();
        assert_eq!(v["_type"], STATEMENT_V1);
        assert_eq!(v["predicateType"], "https://spdx.dev/Document");
        assert_eq!(v["subject"][0]["name"], "_");
        assert_eq!(v["subject"][0]["digest"]["sha256"], d.hex());
        assert_eq!(v["predicate"]["spdxVersion"], "SPDX-2.3");
    }
}
