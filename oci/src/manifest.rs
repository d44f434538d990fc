//! OCI descriptors and image manifests, with kiln's canonical serialization (fixed field order, no maps that
//! reorder), so the same image always has the same manifest digest.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::Digest;

/// `application/vnd.oci.image.manifest.v1+json`.
pub const MEDIA_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
/// `application/vnd.oci.image.index.v1+json`.
pub const MEDIA_INDEX: &str = "application/vnd.oci.image.index.v1+json";
/// `application/vnd.oci.image.config.v1+json`.
pub const MEDIA_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
/// `application/vnd.oci.image.layer.v1.tar+gzip`.
pub const MEDIA_LAYER_GZIP: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
/// `application/vnd.oci.image.layer.v1.tar`.
pub const MEDIA_LAYER_TAR: &str = "application/vnd.oci.image.layer.v1.tar";
/// Docker's manifest media type.
pub const MEDIA_DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
/// Docker's gzip layer media type.
pub const MEDIA_DOCKER_LAYER_GZIP: &str = "application/vnd.docker.image.rootfs.diff.tar.gzip";
/// Docker's uncompressed layer media type.
pub const MEDIA_DOCKER_LAYER_TAR: &str = "application/vnd.docker.image.rootfs.diff.tar";
/// Docker's image config media type.
pub const MEDIA_DOCKER_CONFIG: &str = "application/vnd.docker.container.image.v1+json";
/// Docker's manifest list media type.
pub const MEDIA_DOCKER_INDEX: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
/// `application/vnd.oci.image.layer.v1.tar+zstd`.
pub const MEDIA_LAYER_ZSTD: &str = "application/vnd.oci.image.layer.v1.tar+zstd";

/// The compression a layer media type names, so that layers can be re-labelled between the OCI and Docker
/// vocabularies without being rewritten.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LayerCompression {
    /// A plain tar.
    None,
    /// gzip.
    Gzip,
    /// zstd.
    Zstd,
}

impl LayerCompression {
    /// The compression of a layer media type, or `None` when the media type is not a known layer type.
    pub fn of_media_type(media: &str) -> Option<LayerCompression> {
        match media {
            MEDIA_LAYER_TAR | MEDIA_DOCKER_LAYER_TAR => Some(LayerCompression::None),
            MEDIA_LAYER_GZIP | MEDIA_DOCKER_LAYER_GZIP => Some(LayerCompression::Gzip),
            MEDIA_LAYER_ZSTD => Some(LayerCompression::Zstd),
            _ => None,
        }
    }

    /// The compression found in a blob's first bytes (gzip and zstd magic numbers, else a plain tar).
    pub fn sniff(head: &[u8]) -> LayerCompression {
        if head.starts_with(&[0x1f, 0x8b]) {
            LayerCompression::Gzip
        } else if head.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
            LayerCompression::Zstd
        } else {
            LayerCompression::None
        }
    }

    /// The layer media type for this compression in the OCI (`oci = true`) or Docker vocabulary. Docker has no
    /// zstd type, so zstd layers always carry the OCI one (as BuildKit does).
    pub fn media_type(self, oci: bool) -> &'static str {
        match (self, oci) {
            (LayerCompression::None, true) => MEDIA_LAYER_TAR,
            (LayerCompression::None, false) => MEDIA_DOCKER_LAYER_TAR,
            (LayerCompression::Gzip, true) => MEDIA_LAYER_GZIP,
            (LayerCompression::Gzip, false) => MEDIA_DOCKER_LAYER_GZIP,
            (LayerCompression::Zstd, _) => MEDIA_LAYER_ZSTD,
        }
    }
}

/// A pointer to content: media type, digest, size.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Descriptor {
    /// What the content is.
    pub media_type: String,
    /// Its digest.
    pub digest: Digest,
    /// Its size in bytes.
    pub size: u64,
    /// Annotations (sorted).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
    /// For index entries: the platform.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub platform: Option<crate::Platform>,
}

/// An image manifest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Manifest {
    /// Always 2.
    pub schema_version: u32,
    /// The manifest's own media type.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub media_type: Option<String>,
    /// The config blob.
    pub config: Descriptor,
    /// Layers, bottom first.
    pub layers: Vec<Descriptor>,
    /// Annotations.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
}

/// An image index (OCI layout's `index.json`, or a multi-platform image).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Index {
    /// Always 2.
    pub schema_version: u32,
    /// The index's media type.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub media_type: Option<String>,
    /// Entries.
    pub manifests: Vec<Descriptor>,
    /// Annotations of the index itself (BuildKit's `annotation-index.*`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
}

impl Descriptor {
    /// A descriptor without annotations or platform.
    pub fn new(media_type: &str, digest: Digest, size: u64) -> Descriptor {
        Descriptor {
            media_type: media_type.to_string(),
            digest,
            size,
            annotations: BTreeMap::new(),
            platform: None,
        }
    }
}
