//! kiln's content store: blobs by sha256 under `<root>/blobs/sha256/`, written through `<root>/ingest/` (write,
//! fsync, verify the digest, rename, fsync the directory) so a reader never sees a partial blob and a crash never
//! leaves a wrong one; and the image index (name:tag → manifest digest) replaced atomically under a lock, with an
//! entry written only after the manifest it points to exists.

mod check;
mod images;
mod ingest;
mod lazy;
mod platforms;

use std::path::{Path, PathBuf};

pub use check::BlobFile;
pub use images::ImageEntry;
pub use ingest::BlobWriter;
pub use lazy::digest_of_diff;
pub use platforms::Stored;

use crate::Digest;

/// Why the store failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// I/O on a store path.
    #[error("{path}: {source}")]
    Io {
        /// The path.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// Content did not have the digest it was expected to have.
    #[error("digest mismatch: expected {expected}, got {actual}")]
    DigestMismatch {
        /// What was expected.
        expected: Digest,
        /// What the bytes hash to.
        actual: Digest,
    },
    /// A blob is not in the store.
    #[error("blob {0} is not in the store")]
    MissingBlob(Digest),
    /// An image name is not in the index.
    #[error("image {0:?} not found in kiln's store (kiln images lists what it holds)")]
    UnknownImage(String),
    /// An index holds no image for the platform asked for.
    #[error("index {index} holds no image for {platform} (it has: {available})")]
    NoPlatform {
        /// The index.
        index: Digest,
        /// The platform asked for.
        platform: String,
        /// The platforms it has.
        available: String,
    },
    /// A stored document does not parse.
    #[error("{path}: {reason}")]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// The parse error.
        reason: String,
    },
}

pub(crate) fn io(path: &Path) -> impl Fn(std::io::Error) -> StoreError + '_ {
    move |source| StoreError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// The content store of one kiln root.
#[derive(Debug, Clone)]
pub struct Store {
    root: PathBuf,
}

impl Store {
    /// Opens (creating) the store under `root`, removing what writers that died left in its ingest area.
    pub fn open(root: &Path) -> Result<Store, StoreError> {
        let store = Store::open_as_is(root)?;
        store.sweep_dead_ingest();
        Ok(store)
    }

    /// Opens (creating) the store without tidying anything: for `kiln doctor`, which reports before it changes.
    pub fn open_as_is(root: &Path) -> Result<Store, StoreError> {
        for sub in ["blobs/sha256", "ingest", "index"] {
            let p = root.join(sub);
            std::fs::create_dir_all(&p).map_err(io(&p))?;
        }
        Ok(Store {
            root: root.to_path_buf(),
        })
    }

    /// Removes what writers whose process is gone left (killed with -9 mid-write): ingest files `<pid>-<n>`,
    /// image index writes, lazy layer recipes, registry source lists, upload sessions' temporaries and big files
    /// compressed ahead by a build, so any kiln command that opens the store
    /// tidies after a dead one. A live writer's file is never touched.
    fn sweep_dead_ingest(&self) {
        let gone = |pid: Option<u32>| {
            pid.is_some_and(|p| {
                p != std::process::id() && !Path::new("/proc").join(p.to_string()).exists()
            })
        };
        for e in self.ingest_files().unwrap_or_default() {
            let name = e.file_name().and_then(|n| n.to_str()).unwrap_or("");
            if gone(name.split('-').next().and_then(|p| p.parse().ok())) {
                let _ = std::fs::remove_file(&e);
            }
        }
        // Temporaries whose name says their writer: `index/images.json.<pid>.tmp` (an index write),
        // `lazy/.tmp-<pid>-<hex>` (a lazy layer's recipe), `sources/<digest>.tmp-<pid>` (a registry source list) and
        // `uploads/<hex>.tmp-<pid>` (a push's upload session), each left by a writer killed before its rename.
        type PidOf = fn(&str) -> Option<&str>;
        let owners: [(&str, PidOf); 4] = [
            ("index", |n| {
                n.strip_prefix("images.json.")
                    .and_then(|r| r.strip_suffix(".tmp"))
            }),
            ("lazy", |n| {
                n.strip_prefix(".tmp-").and_then(|r| r.split('-').next())
            }),
            ("sources", |n| n.rsplit_once(".tmp-").map(|(_, p)| p)),
            ("uploads", |n| n.rsplit_once(".tmp-").map(|(_, p)| p)),
        ];
        for (sub, owner) in owners {
            for e in std::fs::read_dir(self.root.join(sub))
                .into_iter()
                .flatten()
                .flatten()
            {
                let name = e.file_name().to_string_lossy().into_owned();
                if gone(owner(&name).and_then(|p| p.parse().ok())) {
                    let _ = std::fs::remove_file(e.path());
                }
            }
        }
        // `speculated/<pid>-<n>/`: big files a build compressed ahead of its export (`exporter::speculate`).
        for e in std::fs::read_dir(self.root.join("speculated"))
            .into_iter()
            .flatten()
            .flatten()
        {
            let name = e.file_name().to_string_lossy().into_owned();
            if gone(name.split('-').next().and_then(|p| p.parse().ok())) {
                let _ = std::fs::remove_dir_all(e.path());
            }
        }
    }

    /// The store's root.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Where the blob `d` lives (whether or not it exists).
    pub fn blob_path(&self, d: &Digest) -> PathBuf {
        self.root.join("blobs").join(d.algorithm()).join(d.hex())
    }

    /// Whether the blob exists (stored, or lazy with its directory in place).
    pub fn has(&self, d: &Digest) -> bool {
        self.blob_path(d).is_file() || self.is_lazy(d)
    }

    /// Opens a blob for reading (a lazy one is written first).
    pub fn open_blob(&self, d: &Digest) -> Result<std::fs::File, StoreError> {
        self.materialize_if_lazy(d)?;
        let p = self.blob_path(d);
        std::fs::File::open(&p).map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => StoreError::MissingBlob(d.clone()),
            _ => io(&p)(e),
        })
    }

    /// A blob's size in bytes (what a descriptor records); a lazy blob's without writing it.
    pub fn blob_size(&self, d: &Digest) -> Result<u64, StoreError> {
        let p = self.blob_path(d);
        if !p.is_file() {
            if let Some(size) = self.lazy_size(d) {
                return Ok(size);
            }
        }
        std::fs::metadata(&p)
            .map(|m| m.len())
            .map_err(|e| match e.kind() {
                std::io::ErrorKind::NotFound => StoreError::MissingBlob(d.clone()),
                _ => io(&p)(e),
            })
    }

    /// Reads a (small) blob whole.
    pub fn read_blob(&self, d: &Digest) -> Result<Vec<u8>, StoreError> {
        self.materialize_if_lazy(d)?;
        let p = self.blob_path(d);
        std::fs::read(&p).map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => StoreError::MissingBlob(d.clone()),
            _ => io(&p)(e),
        })
    }

    fn materialize_if_lazy(&self, d: &Digest) -> Result<(), StoreError> {
        if !self.blob_path(d).is_file() && self.is_lazy(d) {
            self.materialize(d)?;
        }
        Ok(())
    }

    /// A writer into the ingest area; commit it to make the blob visible.
    pub fn writer(&self) -> Result<BlobWriter, StoreError> {
        BlobWriter::new(self)
    }

    /// Stores `bytes` and returns their digest.
    pub fn put_bytes(&self, bytes: &[u8]) -> Result<Digest, StoreError> {
        let mut w = self.writer()?;
        std::io::Write::write_all(&mut w, bytes).map_err(io(&self.root))?;
        Ok(w.commit(None)?.0)
    }

    /// Reads and parses a JSON blob.
    pub fn read_json<T: serde::de::DeserializeOwned>(&self, d: &Digest) -> Result<T, StoreError> {
        let bytes = self.read_blob(d)?;
        serde_json::from_slice(&bytes).map_err(|e| StoreError::Corrupt {
            path: self.blob_path(d),
            reason: e.to_string(),
        })
    }
}

#[cfg(test)]
mod tests;
