//! Base images from kiln's own store, unpacked: every layer applied in order onto the snapshot directory
//! (whiteouts become deletions, as the layers are flattened). Which manifest a reference names is the engine's
//! resolver's to say (one resolver serves lowering and solving).

use std::path::Path;

use oci::layer::{apply_layer, Whiteouts};
use oci::manifest::Manifest;
use oci::store::Store;
use oci::Digest;

use super::ImageError;
#[cfg(doc)]
use super::ImageProvider;

/// Images held in a kiln store.
pub struct StoreImages {
    store: Store,
}

impl StoreImages {
    /// Images of `store`.
    pub fn new(store: Store) -> StoreImages {
        StoreImages { store }
    }

    /// Writes the filesystem of the image `manifest` (all its layers applied in order, whiteouts as deletions)
    /// into the empty directory `dir`: how an [`ImageProvider`] unpacks what it resolved.
    pub fn unpack(&self, manifest: &Digest, dir: &Path) -> Result<(), ImageError> {
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
