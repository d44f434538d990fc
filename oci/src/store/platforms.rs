//! Multi-platform images in the store: a name may point at an index (what `kiln build --platform a,b` writes, or a
//! loaded multi-platform archive); whoever needs one image picks the entry for its platform here.

use super::{Store, StoreError};
use crate::manifest::{Descriptor, Index, MEDIA_DOCKER_INDEX, MEDIA_INDEX};
use crate::{Digest, Platform};

/// What a stored manifest-or-index blob is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Stored {
    /// A single image's manifest.
    Manifest,
    /// An index, with its entries.
    Index(Index),
}

impl Store {
    /// Reads `digest` and says whether it is an index (by media type, or by a `manifests` list when the media type
    /// is absent, as OCI allows) or an image manifest.
    pub fn manifest_kind(&self, digest: &Digest) -> Result<Stored, StoreError> {
        let v: serde_json::Value = self.read_json(digest)?;
        let media = v.get("mediaType").and_then(|m| m.as_str()).unwrap_or("");
        let is_index = media == MEDIA_INDEX
            || media == MEDIA_DOCKER_INDEX
            || (media.is_empty() && v.get("manifests").is_some());
        if !is_index {
            return Ok(Stored::Manifest);
        }
        serde_json::from_value(v)
            .map(Stored::Index)
            .map_err(|e| StoreError::Corrupt {
                path: self.blob_path(digest),
                reason: e.to_string(),
            })
    }

    /// The image manifests behind `digest`: itself for a manifest, every entry of an index.
    pub fn image_manifests(&self, digest: &Digest) -> Result<Vec<Digest>, StoreError> {
        Ok(match self.manifest_kind(digest)? {
            Stored::Index(index) => index.manifests.into_iter().map(|m| m.digest).collect(),
            Stored::Manifest => vec![digest.clone()],
        })
    }

    /// The image manifest serving `platform`: `digest` itself when it is a manifest, else the first entry of the
    /// index whose platform matches and whose manifest the store holds.
    pub fn platform_manifest(
        &self,
        digest: &Digest,
        platform: &Platform,
    ) -> Result<Digest, StoreError> {
        match self.manifest_kind(digest)? {
            Stored::Manifest => Ok(digest.clone()),
            Stored::Index(index) => index
                .manifests
                .iter()
                .find(|m| {
                    m.platform.as_ref().is_some_and(|p| platform.matches(p)) && self.has(&m.digest)
                })
                .map(|m| m.digest.clone())
                .ok_or_else(|| StoreError::NoPlatform {
                    index: digest.clone(),
                    platform: platform.to_string(),
                    available: platforms_of(&index.manifests),
                }),
        }
    }
}

fn platforms_of(entries: &[Descriptor]) -> String {
    let list: Vec<String> = entries
        .iter()
        .filter_map(|m| m.platform.as_ref().map(|p| p.to_string()))
        .collect();
    if list.is_empty() {
        "none".to_string()
    } else {
        list.join(", ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manifest::{Manifest, MEDIA_CONFIG, MEDIA_MANIFEST};

    fn manifest(store: &Store, arch: &str) -> Descriptor {
        let config = store.put_bytes(arch.as_bytes()).unwrap();
        let m = Manifest {
            schema_version: 2,
            media_type: Some(MEDIA_MANIFEST.to_string()),
            config: Descriptor::new(MEDIA_CONFIG, config, arch.len() as u64),
            layers: vec![],
            annotations: Default::default(),
        };
        let bytes = serde_json::to_vec(&m).unwrap();
        let d = store.put_bytes(&bytes).unwrap();
        let mut desc = Descriptor::new(MEDIA_MANIFEST, d, bytes.len() as u64);
        desc.platform = Some(format!("linux/{arch}").parse().unwrap());
        desc
    }

    #[test]
    fn an_index_serves_each_platform_its_own_manifest() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let amd = manifest(&store, "amd64");
        let arm = manifest(&store, "arm64");
        let index = Index {
            schema_version: 2,
            media_type: Some(MEDIA_INDEX.to_string()),
            manifests: vec![amd.clone(), arm.clone()],
            annotations: Default::default(),
        };
        let id = store
            .put_bytes(&serde_json::to_vec(&index).unwrap())
            .unwrap();
        let pick = |p: &str| store.platform_manifest(&id, &p.parse().unwrap());
        assert_eq!(pick("linux/amd64").unwrap(), amd.digest);
        assert_eq!(pick("linux/arm64").unwrap(), arm.digest);
        let err = pick("linux/s390x").unwrap_err().to_string();
        assert!(
            err.contains("linux/s390x") && err.contains("linux/amd64, linux/arm64"),
            "{err}"
        );
        assert_eq!(
            store
                .platform_manifest(&amd.digest, &"linux/s390x".parse().unwrap())
                .unwrap(),
            amd.digest
        );
        assert!(
            matches!(store.manifest_kind(&id).unwrap(), Stored::Index(i) if i.manifests.len() == 2)
        );
        assert_eq!(store.manifest_kind(&arm.digest).unwrap(), Stored::Manifest);
        assert_eq!(
            store.image_manifests(&id).unwrap(),
            [amd.digest.clone(), arm.digest.clone()]
        );
        assert_eq!(
            store.image_manifests(&arm.digest).unwrap(),
            vec![arm.digest]
        );
    }
}
