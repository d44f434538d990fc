//! What the frontend needs to know of base images, read from kiln's store: the manifest digest a name points
//! to (to pin the source) and the image config (ENV, WORKDIR, ONBUILD...).

use frontend::{ImageResolver, ResolvedImage};
use oci::manifest::Manifest;
use oci::store::Store;
use oci::{Image, Platform};

/// Resolves base images from a store.
pub struct StoreResolver {
    /// The store.
    pub store: Store,
}

impl ImageResolver for StoreResolver {
    fn resolve(
        &self,
        reference: &str,
        _platform: &Platform,
    ) -> Result<Option<ResolvedImage>, String> {
        let name = reference.split('@').next().unwrap_or(reference);
        let Some(entry) = self.store.get_image(name).map_err(|e| e.to_string())? else {
            return Err(format!(
                "not found in kiln's store, and pulling from registries is not supported yet; import it first with `kiln import ROOTFS.tar {name}`"
            ));
        };
        let manifest: Manifest = self
            .store
            .read_json(&entry.manifest)
            .map_err(|e| e.to_string())?;
        let image: Image = self
            .store
            .read_json(&manifest.config.digest)
            .map_err(|e| e.to_string())?;
        Ok(Some(ResolvedImage {
            digest: Some(entry.manifest),
            image,
        }))
    }
}
