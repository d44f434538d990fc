//! The image index: `index/images.json`, a sorted list of name → manifest digest, replaced atomically while an
//! exclusive lock on `index/lock` is held, so concurrent kiln processes never lose each other's tags.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;

use serde::{Deserialize, Serialize};

use super::{io, Store, StoreError};
use crate::Digest;

/// One named image.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageEntry {
    /// `name:tag` as given (normalised by the caller).
    pub name: String,
    /// The manifest.
    pub manifest: Digest,
    /// Seconds since the epoch when tagged.
    pub created: u64,
}

struct Locked {
    _file: std::fs::File,
}

fn lock(dir: &Path) -> Result<Locked, StoreError> {
    let p = dir.join("lock");
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&p)
        .map_err(io(&p))?;
    rustix::fs::flock(&file, rustix::fs::FlockOperation::LockExclusive)
        .map_err(|e| io(&p)(e.into()))?;
    Ok(Locked { _file: file })
}

impl Store {
    fn images_path(&self) -> std::path::PathBuf {
        self.root.join("index").join("images.json")
    }

    fn load_images(&self) -> Result<BTreeMap<String, ImageEntry>, StoreError> {
        let p = self.images_path();
        let bytes = match std::fs::read(&p) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(BTreeMap::new()),
            Err(e) => return Err(io(&p)(e)),
        };
        let list: Vec<ImageEntry> =
            serde_json::from_slice(&bytes).map_err(|e| StoreError::Corrupt {
                path: p.clone(),
                reason: e.to_string(),
            })?;
        Ok(list.into_iter().map(|e| (e.name.clone(), e)).collect())
    }

    fn save_images(&self, images: &BTreeMap<String, ImageEntry>) -> Result<(), StoreError> {
        let p = self.images_path();
        let dir = self.root.join("index");
        let tmp = dir.join(format!("images.json.{}.tmp", std::process::id()));
        let list: Vec<&ImageEntry> = images.values().collect();
        let bytes =
            serde_json::to_vec_pretty(&list).map_err(|e| io(&p)(std::io::Error::other(e)))?;
        let mut f = std::fs::File::create(&tmp).map_err(io(&tmp))?;
        f.write_all(&bytes).map_err(io(&tmp))?;
        f.sync_all().map_err(io(&tmp))?;
        std::fs::rename(&tmp, &p).map_err(io(&p))?;
        std::fs::File::open(&dir)
            .and_then(|d| d.sync_all())
            .map_err(io(&dir))
    }

    /// Tags `manifest` as `name`; the manifest blob must already be stored.
    pub fn set_image(&self, name: &str, manifest: &Digest) -> Result<(), StoreError> {
        if !self.has(manifest) {
            return Err(StoreError::MissingBlob(manifest.clone()));
        }
        let _guard = lock(&self.root.join("index"))?;
        let mut images = self.load_images()?;
        let created = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        images.insert(
            name.to_string(),
            ImageEntry {
                name: name.to_string(),
                manifest: manifest.clone(),
                created,
            },
        );
        self.save_images(&images)
    }

    /// The manifest digest of `name`.
    pub fn get_image(&self, name: &str) -> Result<Option<ImageEntry>, StoreError> {
        Ok(self.load_images()?.remove(name))
    }

    /// Every named image, sorted by name.
    pub fn list_images(&self) -> Result<Vec<ImageEntry>, StoreError> {
        Ok(self.load_images()?.into_values().collect())
    }

    /// Removes a name (its blobs stay until garbage collection).
    pub fn remove_image(&self, name: &str) -> Result<bool, StoreError> {
        let _guard = lock(&self.root.join("index"))?;
        let mut images = self.load_images()?;
        let removed = images.remove(name).is_some();
        if removed {
            self.save_images(&images)?;
        }
        Ok(removed)
    }
}
