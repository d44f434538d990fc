//! Writing a blob: into a unique file of the ingest area, hashed as it is written, then fsynced, verified and
//! renamed into place. Dropping an uncommitted writer removes its file.

use std::io::Write;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};

use sha2::{Digest as _, Sha256};

use super::{io, Store, StoreError};
use crate::Digest;

static SEQ: AtomicU64 = AtomicU64::new(0);

/// A blob being written.
pub struct BlobWriter {
    file: Option<crate::writeback::EagerFile>,
    path: PathBuf,
    hasher: Sha256,
    size: u64,
    store: Store,
}

impl BlobWriter {
    pub(super) fn new(store: &Store) -> Result<BlobWriter, StoreError> {
        let path = store.root.join("ingest").join(format!(
            "{}-{}",
            std::process::id(),
            SEQ.fetch_add(1, Ordering::Relaxed)
        ));
        let file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&path)
            .map_err(io(&path))?;
        Ok(BlobWriter {
            file: Some(crate::writeback::EagerFile::new(file)),
            path,
            hasher: Sha256::new(),
            size: 0,
            store: store.clone(),
        })
    }

    /// The digest of what was written so far — the name [`BlobWriter::commit`] gives it — for a streamed upload of
    /// the same bytes, which then need not hash them again.
    pub fn digest(&self) -> Digest {
        Digest::from_sha256_bytes(&self.hasher.clone().finalize().into())
    }

    /// Makes the blob durable and visible; with `expected`, a different digest is an error and nothing is kept.
    pub fn commit(mut self, expected: Option<&Digest>) -> Result<(Digest, u64), StoreError> {
        let file = self.file.take();
        if let Some(f) = &file {
            f.get_ref().sync_all().map_err(io(&self.path))?;
        }
        drop(file);
        let digest = Digest::from_sha256_bytes(&std::mem::take(&mut self.hasher).finalize().into());
        if let Some(e) = expected {
            if e != &digest {
                let _ = std::fs::remove_file(&self.path);
                return Err(StoreError::DigestMismatch {
                    expected: e.clone(),
                    actual: digest,
                });
            }
        }
        let dest = self.store.blob_path(&digest);
        if dest.is_file() {
            let _ = std::fs::remove_file(&self.path);
        } else {
            std::fs::rename(&self.path, &dest).map_err(io(&dest))?;
            if let Some(dir) = dest.parent() {
                std::fs::File::open(dir)
                    .and_then(|d| d.sync_all())
                    .map_err(io(dir))?;
            }
        }
        self.path = PathBuf::new();
        Ok((digest, self.size))
    }
}

impl Write for BlobWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let f = self
            .file
            .as_mut()
            .ok_or_else(|| std::io::Error::other("blob writer already committed"))?;
        let n = f.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.size += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        match self.file.as_mut() {
            Some(f) => f.flush(),
            None => Ok(()),
        }
    }
}

impl Drop for BlobWriter {
    fn drop(&mut self) {
        if !self.path.as_os_str().is_empty() {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}
