//! The one base-image resolver of a build. Lowering asks it for the manifest digest a name points to (to pin the
//! source) and the image config (ENV, WORKDIR, ONBUILD...); images come from kiln's store, and one that is missing
//! there (or every one, with `--pull`) is pulled from its registry first. Solving asks the same resolver again,
//! offline (everything was pulled while lowering), and has it unpack images into snapshots.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use std::path::Path;

use frontend::{ImageResolver, ResolveError, ResolvedImage};
use oci::manifest::Manifest;
use oci::reference::Reference;
use oci::registry::Client;
use oci::store::Store;
use oci::{Digest, Image, Platform};
use solver::llb::ResolveMode;
use solver::worker::ImageError;
use solver::worker::{ImageProvider, StoreImages};

/// Resolves base images from a store, pulling what it lacks: the frontend's [`ImageResolver`] and the solver's
/// [`ImageProvider`] in one.
pub struct Resolver {
    store: Store,
    /// Unpacks layers into snapshot directories.
    unpacker: StoreImages,
    /// The registry client; `None` keeps resolution offline.
    registry: Option<Arc<Client>>,
    /// Pull even images the store has (`--pull`).
    always_pull: bool,
    /// References already pulled by this build, so each is asked of its registry once.
    pulled: Mutex<HashMap<String, Digest>>,
    /// Resolving for build checks ([`Resolver::for_checks`]).
    for_checks: bool,
}

impl Resolver {
    /// A resolver over `store` with an optional registry client.
    pub fn new(store: Store, registry: Option<Arc<Client>>, always_pull: bool) -> Resolver {
        Resolver {
            unpacker: StoreImages::new(store.clone()),
            store,
            registry,
            always_pull,
            pulled: Mutex::new(HashMap::new()),
            for_checks: false,
        }
    }

    /// The resolver build checks use (`kiln check`, and `kiln build` after lowering): `store`'s images only,
    /// pulling nothing, so a check costs no network and pulls nothing the build does not need. It hands back an
    /// image made for another platform rather than refusing it, since judging that is InvalidBaseImagePlatform's
    /// job, and an image it cannot find is unknown (`Ok(None)`), not an error: the stage's other rules still run,
    /// and the build, not the check, says why the image cannot be had.
    pub fn for_checks(store: Store) -> Resolver {
        let mut r = Resolver::new(store, None, false);
        r.for_checks = true;
        r
    }

    fn local(&self, r: &Reference, platform: &Platform) -> Result<Option<Digest>, String> {
        if let Some(d) = &r.digest {
            return if self.store.has(d) {
                self.store
                    .platform_manifest(d, platform)
                    .map(Some)
                    .map_err(|e| e.to_string())
            } else {
                Ok(None)
            };
        }
        match self
            .store
            .get_image(&r.to_string())
            .map_err(|e| e.to_string())?
        {
            // A name kiln built for several platforms points at an index: take this platform's image.
            Some(e) => self
                .store
                .platform_manifest(&e.manifest, platform)
                .map(Some)
                .map_err(|e| e.to_string()),
            None => Ok(None),
        }
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

impl ImageResolver for Resolver {
    fn resolve(
        &self,
        reference: &str,
        platform: &Platform,
    ) -> Result<Option<ResolvedImage>, ResolveError> {
        match self.resolve_image(reference, platform) {
            Err(_) if self.for_checks => Ok(None),
            r => r,
        }
    }
}

impl Resolver {
    fn resolve_image(
        &self,
        reference: &str,
        platform: &Platform,
    ) -> Result<Option<ResolvedImage>, ResolveError> {
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
        // As containerd does: an image made for another platform is refused, not relabelled.
        if !image.architecture.is_empty() && !self.for_checks {
            let made_for = Platform {
                os: image.os.clone(),
                architecture: image.architecture.clone(),
                variant: image.variant.clone(),
            };
            if !platform.matches(&made_for) {
                return Err(format!(
                    "the image is {made_for}, not {platform} (the platform this stage is built for)"
                )
                .into());
            }
        }
        Ok(Some(ResolvedImage {
            digest: Some(manifest_digest),
            image,
        }))
    }
}

impl ImageProvider for Resolver {
    /// The store's image for `reference`, found as lowering found it (lowering pinned it and pulled what was
    /// missing, so solving never meets a registry).
    fn resolve(
        &self,
        reference: &str,
        platform: &Platform,
        _mode: ResolveMode,
    ) -> Result<Digest, ImageError> {
        let r = Reference::parse(reference)?;
        self.local(&r, platform)?
            .ok_or_else(|| ImageError::NotFound {
                name: Reference { digest: None, ..r }.to_string(),
            })
    }

    fn unpack(&self, manifest: &Digest, dir: &Path) -> Result<(), ImageError> {
        self.unpacker.unpack(manifest, dir)
    }
}
