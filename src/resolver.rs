//! What the frontend needs to know of base images: the manifest digest a name points to (to pin the source) and
//! the image config (ENV, WORKDIR, ONBUILD...). Images come from kiln's store; one that is missing there (or every
//! one, with `--pull`) is pulled from its registry first, so that the solver only ever reads the store.

use std::collections::HashMap;
use std::sync::Mutex;

use frontend::{ImageResolver, ResolvedImage};
use oci::manifest::{Index, Manifest, MEDIA_DOCKER_INDEX, MEDIA_INDEX};
use oci::reference::Reference;
use oci::registry::Client;
use oci::store::Store;
use oci::{Digest, Image, Platform};

/// Resolves base images from a store, pulling what it lacks.
pub struct StoreResolver {
    /// The store.
    pub store: Store,
    /// The registry client; `None` keeps resolution offline.
    pub registry: Option<Client>,
    /// Pull even images the store has (`--pull`).
    pub always_pull: bool,
    /// References already pulled by this build, so each is asked of its registry once.
    pub pulled: Mutex<HashMap<String, Digest>>,
}

impl StoreResolver {
    /// A resolver over `store` with an optional registry client.
    pub fn new(store: Store, registry: Option<Client>, always_pull: bool) -> StoreResolver {
        StoreResolver {
            store,
            registry,
            always_pull,
            pulled: Mutex::new(HashMap::new()),
        }
    }

    /// The platform's manifest when `d` is an index held in the store, else `d`.
    fn platform_manifest(&self, d: &Digest, platform: &Platform) -> Result<Digest, String> {
        let v: serde_json::Value = self.store.read_json(d).map_err(|e| e.to_string())?;
        let media = v.get("mediaType").and_then(|m| m.as_str()).unwrap_or("");
        if media != MEDIA_INDEX && media != MEDIA_DOCKER_INDEX && v.get("manifests").is_none() {
            return Ok(d.clone());
        }
        let index: Index = serde_json::from_value(v).map_err(|e| e.to_string())?;
        index
            .manifests
            .iter()
            .find(|m| m.platform.as_ref().is_some_and(|p| platform.matches(p)))
            .map(|m| m.digest.clone())
            .filter(|m| self.store.has(m))
            .ok_or_else(|| format!("index {d} in the store holds no image for {platform}"))
    }

    fn local(&self, r: &Reference, platform: &Platform) -> Result<Option<Digest>, String> {
        if let Some(d) = &r.digest {
            return if self.store.has(d) {
                self.platform_manifest(d, platform).map(Some)
            } else {
                Ok(None)
            };
        }
        Ok(self
            .store
            .get_image(&r.to_string())
            .map_err(|e| e.to_string())?
            .map(|e| e.manifest))
    }

    fn pull(&self, r: &Reference, platform: &Platform) -> Result<Digest, String> {
        let key = format!("{r}|{platform}");
        if let Some(d) = self.pulled.lock().ok().and_then(|m| m.get(&key).cloned()) {
            return Ok(d);
        }
        let client = self.registry.as_ref().ok_or_else(|| {
            format!("not found in kiln's store (import it with `kiln import ROOTFS.tar {r}` or load it with `kiln load`)")
        })?;
        let pulled =
            oci::registry::pull(client, &self.store, r, platform).map_err(|e| e.to_string())?;
        if r.digest.is_none() {
            self.store
                .set_image(&r.to_string(), &pulled.manifest)
                .map_err(|e| e.to_string())?;
        }
        if let Ok(mut m) = self.pulled.lock() {
            m.insert(key, pulled.manifest.clone());
        }
        Ok(pulled.manifest)
    }
}

impl ImageResolver for StoreResolver {
    fn resolve(
        &self,
        reference: &str,
        platform: &Platform,
    ) -> Result<Option<ResolvedImage>, String> {
        let r = Reference::parse(reference)?;
        let manifest_digest = match self.local(&r, platform)? {
            Some(d) if !self.always_pull || r.digest.is_some() => d,
            _ => self.pull(&r, platform)?,
        };
        let manifest: Manifest = self
            .store
            .read_json(&manifest_digest)
            .map_err(|e| e.to_string())?;
        let image: Image = self
            .store
            .read_json(&manifest.config.digest)
            .map_err(|e| e.to_string())?;
        Ok(Some(ResolvedImage {
            digest: Some(manifest_digest),
            image,
        }))
    }
}
