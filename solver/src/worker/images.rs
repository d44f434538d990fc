//! Base images from kiln's own store: a reference resolves to the manifest tagged with it, and unpacking applies
//! every layer in order onto the snapshot directory (whiteouts become deletions, as the layers are flattened).

use std::path::Path;

use oci::layer::{apply_layer, Whiteouts};
use oci::manifest::Manifest;
use oci::store::Store;
use oci::{Digest, Platform};

use super::ImageProvider;
use crate::llb::ResolveMode;

/// Images held in a kiln store.
pub struct StoreImages {
    store: Store,
}

impl StoreImages {
    /// Images of `store`.
    pub fn new(store: Store) -> StoreImages {
        StoreImages { store }
    }
}

impl ImageProvider for StoreImages {
    fn resolve(
        &self,
        reference: &str,
        platform: &Platform,
        _mode: ResolveMode,
    ) -> Result<Digest, String> {
        let name = reference.split('@').next().unwrap_or(reference);
        if let Some((_, digest)) = reference.split_once('@') {
            let d: Digest = digest
                .parse()
                .map_err(|e: oci::DigestError| e.to_string())?;
            if self.store.has(&d) {
                return Ok(d);
            }
        }
        match self.store.get_image(name).map_err(|e| e.to_string())? {
            Some(entry) => self
                .store
                .platform_manifest(&entry.manifest, platform)
                .map_err(|e| e.to_string()),
            None => Err(format!(
                "not found in kiln's store (the build pulls base images before it starts; `kiln pull {name}` fetches one by hand)"
            )),
        }
    }

    fn unpack(&self, manifest: &Digest, dir: &Path) -> Result<(), String> {
        let m: Manifest = self.store.read_json(manifest).map_err(|e| e.to_string())?;
        for layer in &m.layers {
            let blob = self
                .store
                .open_blob(&layer.digest)
                .map_err(|e| e.to_string())?;
            apply_layer(blob, dir, Whiteouts::Delete)
                .map_err(|e| format!("layer {}: {e}", layer.digest))?;
        }
        Ok(())
    }
}
