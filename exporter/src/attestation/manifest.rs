//! Attestation manifests as BuildKit's image writer commits them (`commitAttestationsManifest`, OCI artifact form):
//! an `application/vnd.docker.attestation.manifest.v1+json` artifact whose config is the empty JSON, whose layers
//! are in-toto statements and whose `subject` is the image manifest, listed in the index with platform
//! `unknown/unknown` and the `vnd.docker.reference.*` annotations.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use oci::manifest::{Descriptor, MEDIA_MANIFEST};
use oci::store::Store;
use oci::Digest;

use super::statement::Statement;
use super::{
    ANNOTATION_PREDICATE_TYPE, ANNOTATION_REFERENCE_DIGEST, ANNOTATION_REFERENCE_TYPE,
    ARTIFACT_ATTESTATION_MANIFEST, MEDIA_EMPTY, MEDIA_IN_TOTO, REFERENCE_TYPE_ATTESTATION,
};
use crate::error::ExportError;

/// The empty JSON config of an artifact manifest, with its bytes inline (`data`), as OCI's `DescriptorEmptyJSON`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Config {
    media_type: String,
    digest: Digest,
    size: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    data: Option<String>,
}

/// An attestation manifest, with the fields in the order Go's image-spec types marshal them.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct AttestationManifest {
    schema_version: u32,
    media_type: String,
    artifact_type: String,
    config: Config,
    layers: Vec<Descriptor>,
    subject: Descriptor,
}

fn json_err(store: &Store, e: serde_json::Error) -> ExportError {
    ExportError::Io {
        path: store.root().to_path_buf(),
        source: std::io::Error::other(e),
    }
}

/// Whether an index entry is an attestation manifest (by its `vnd.docker.reference.type` annotation): it is no
/// image, and a reader picking a platform passes it by.
pub fn is_attestation(d: &Descriptor) -> bool {
    d.annotations
        .get(ANNOTATION_REFERENCE_TYPE)
        .map(String::as_str)
        == Some(REFERENCE_TYPE_ATTESTATION)
}

/// Stores the statements (each with its predicate type) as the layers of an attestation manifest about `target`
/// (an image manifest) and returns the index entry that lists it.
pub fn store_attestation_manifest(
    store: &Store,
    target: &Descriptor,
    statements: &[(String, Vec<u8>)],
) -> Result<Descriptor, ExportError> {
    let mut layers = Vec::new();
    for (predicate_type, bytes) in statements {
        let digest = store.put_bytes(bytes)?;
        let mut d = Descriptor::new(MEDIA_IN_TOTO, digest, bytes.len() as u64);
        d.annotations.insert(
            ANNOTATION_PREDICATE_TYPE.to_string(),
            predicate_type.clone(),
        );
        layers.push(d);
    }
    let empty = store.put_bytes(b"{}")?;
    let m = AttestationManifest {
        schema_version: 2,
        media_type: MEDIA_MANIFEST.to_string(),
        artifact_type: ARTIFACT_ATTESTATION_MANIFEST.to_string(),
        config: Config {
            media_type: MEDIA_EMPTY.to_string(),
            digest: empty,
            size: 2,
            data: Some("e30=".to_string()),
        },
        layers,
        subject: Descriptor::new(&target.media_type, target.digest.clone(), target.size),
    };
    let bytes = serde_json::to_vec(&m).map_err(|e| json_err(store, e))?;
    let digest = store.put_bytes(&bytes)?;
    let mut d = Descriptor::new(MEDIA_MANIFEST, digest, bytes.len() as u64);
    d.annotations = BTreeMap::from([
        (
            ANNOTATION_REFERENCE_DIGEST.to_string(),
            target.digest.to_string(),
        ),
        (
            ANNOTATION_REFERENCE_TYPE.to_string(),
            REFERENCE_TYPE_ATTESTATION.to_string(),
        ),
    ]);
    d.platform = Some(oci::Platform {
        os: "unknown".to_string(),
        architecture: "unknown".to_string(),
        variant: None,
    });
    Ok(d)
}

/// The attestation manifest `attestation` made again about `target` instead of the image it named: what a push
/// needs after it re-compressed that image (a new manifest digest). Every statement subject that named the old
/// digest names the new one; predicates are kept as they are.
pub fn retarget(
    store: &Store,
    attestation: &Descriptor,
    target: &Descriptor,
) -> Result<Descriptor, ExportError> {
    let m: AttestationManifest = store.read_json(&attestation.digest)?;
    let old = m.subject.digest.clone();
    if old == target.digest {
        return Ok(attestation.clone());
    }
    let mut statements = Vec::new();
    for layer in &m.layers {
        let bytes = store.read_blob(&layer.digest)?;
        let mut v: serde_json::Value =
            serde_json::from_slice(&bytes).map_err(|e| json_err(store, e))?;
        if let Some(subjects) = v.get_mut("subject").and_then(|s| s.as_array_mut()) {
            for s in subjects {
                if s["digest"]["sha256"].as_str() == Some(old.hex()) {
                    s["digest"]["sha256"] =
                        serde_json::Value::String(target.digest.hex().to_string());
                }
            }
        }
        let predicate_type = layer
            .annotations
            .get(ANNOTATION_PREDICATE_TYPE)
            .cloned()
            .unwrap_or_default();
        let subjects: Vec<super::Subject> =
            serde_json::from_value(v["subject"].take()).map_err(|e| json_err(store, e))?;
        let predicate = serde_json::to_vec(&v["predicate"]).map_err(|e| json_err(store, e))?;
        statements.push((
            predicate_type.clone(),
            Statement::wrap(&predicate_type, subjects, &predicate)
                .map_err(|e| json_err(store, e))?,
        ));
    }
    let mut d = store_attestation_manifest(store, target, &statements)?;
    // Annotations the entry carried besides BuildKit's two (an `--annotation` for it) stay.
    for (k, v) in &attestation.annotations {
        d.annotations.entry(k.clone()).or_insert_with(|| v.clone());
    }
    Ok(d)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::attestation::{image_subjects, Attestation, PREDICATE_SPDX};
    use std::sync::Arc;

    #[test]
    fn an_attestation_manifest_has_buildkits_shape_and_follows_a_new_target() {
        let root = tempfile::tempdir().unwrap();
        let store = Store::open(root.path()).unwrap();
        let image = store.put_bytes(b"an image manifest").unwrap();
        let target = Descriptor::new(MEDIA_MANIFEST, image.clone(), 17);
        let amd: oci::Platform = "linux/amd64".parse().unwrap();
        let a = Attestation {
            predicate_type: PREDICATE_SPDX.into(),
            predicate: Arc::new(br#"{"packages":[]}"#.to_vec()),
            filename: "sbom.spdx.json".into(),
            inline_only: false,
        };
        let names = ["docker.io/library/app:1".to_string()];
        let st = Statement::bytes(&a, image_subjects(&names, &amd, &image)).unwrap();
        let d =
            store_attestation_manifest(&store, &target, &[(PREDICATE_SPDX.into(), st)]).unwrap();
        assert!(is_attestation(&d));
        assert_eq!(
            d.annotations[ANNOTATION_REFERENCE_DIGEST],
            image.to_string()
        );
        assert_eq!(d.platform.as_ref().unwrap().to_string(), "unknown/unknown");
        let m: serde_json::Value = store.read_json(&d.digest).unwrap();
        assert_eq!(m["artifactType"], ARTIFACT_ATTESTATION_MANIFEST);
        assert_eq!(m["config"]["mediaType"], MEDIA_EMPTY);
        assert_eq!(m["config"]["data"], "e30=");
        assert!(store.has(&m["config"]["digest"].as_str().unwrap().parse().unwrap()));
        assert_eq!(m["subject"]["digest"], image.to_string());
        assert_eq!(m["layers"][0]["mediaType"], MEDIA_IN_TOTO);
        assert_eq!(
            m["layers"][0]["annotations"][ANNOTATION_PREDICATE_TYPE],
            PREDICATE_SPDX
        );

        let pushed = store.put_bytes(b"the pushed manifest").unwrap();
        let new = Descriptor::new(MEDIA_MANIFEST, pushed.clone(), 19);
        let r = retarget(&store, &d, &new).unwrap();
        assert_eq!(
            r.annotations[ANNOTATION_REFERENCE_DIGEST],
            pushed.to_string()
        );
        let m: serde_json::Value = store.read_json(&r.digest).unwrap();
        assert_eq!(m["subject"]["digest"], pushed.to_string());
        let layer: oci::Digest = m["layers"][0]["digest"].as_str().unwrap().parse().unwrap();
        let s: serde_json::Value = store.read_json(&layer).unwrap();
        assert_eq!(
            s["subject"][0]["name"],
            "pkg:docker/app@1?platform=linux%2Famd64"
        );
        assert_eq!(s["subject"][0]["digest"]["sha256"], pushed.hex());
        assert_eq!(s["predicate"]["packages"], serde_json::json!([]));
        assert_eq!(
            retarget(&store, &r, &new).unwrap(),
            r,
            "already about the target"
        );
    }
}
