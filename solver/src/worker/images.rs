//! Base images from kiln's own store: a reference resolves to the manifest tagged with it, and unpacking applies
//! every layer in order onto the snapshot directory (whiteouts become deletions, as the layers are flattened).

use std::path::Path;

use oci::layer::{apply_layer, Whiteouts};
use oci::manifest::Manifest;
use oci::store::Store;
use oci::{Digest, Platform};

use super::{ImageError, ImageProvider};
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
    ) -> Result<Digest, ImageError> {
        let name = reference.split('@').next().unwrap_or(reference);
        if let Some((_, digest)) = reference.split_once('@') {
            let d: Digest = digest.parse()?;
            if self.store.has(&d) {
                return Ok(d);
            }
        }
        match self.store.get_image(name)? {
            Some(entry) => Ok(self.store.platform_manifest(&entry.manifest, platform)?),
            None => Err(ImageError::NotFound {
                name: name.to_string(),
            }),
        }
    }

    fn unpack(&self, manifest: &Digest, dir: &Path) -> Result<(), ImageError> {
        let m: Manifest = self.store.read_json(manifest)?;
        for layer in &m.layers {
            let blob = self.store.open_blob(&layer.digest)?;
            apply_layer(blob, dir, Whiteouts::Delete).map_err(|source| ImageError::Layer {
                digest: layer.digest.clone(),
                source,
            })?;
        }
        Ok(())
    }
}
