//! What `kiln doctor` asks of the content store: every blob read back and hashed, files that are not blobs, and
//! ingest files a writer never committed (a writer killed mid-blob leaves one).

use std::io::Read;
use std::path::PathBuf;

use sha2::{Digest as _, Sha256};

use super::{io, Store, StoreError};
use crate::Digest;

/// A file of the blob directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BlobFile {
    /// Named by a digest (whether its content matches is [`Store::verify_blob`]'s question).
    Blob(Digest),
    /// Not named by a digest: nothing kiln writes, so nothing reads it.
    Foreign(PathBuf),
}

impl Store {
    /// Every file of the blob directory.
    pub fn blob_files(&self) -> Result<Vec<BlobFile>, StoreError> {
        let dir = self.root.join("blobs").join("sha256");
        let mut out = Vec::new();
        for e in std::fs::read_dir(&dir).map_err(io(&dir))? {
            let e = e.map_err(io(&dir))?;
            let name = e.file_name().to_string_lossy().into_owned();
            let is_file = e.file_type().map(|t| t.is_file()).unwrap_or(false);
            match format!("sha256:{name}").parse::<Digest>() {
                Ok(d) if is_file => out.push(BlobFile::Blob(d)),
                _ => out.push(BlobFile::Foreign(e.path())),
            }
        }
        out.sort_by(|a, b| format!("{a:?}").cmp(&format!("{b:?}")));
        Ok(out)
    }

    /// Reads the blob `d` whole and returns the digest of what it holds (`d` itself when it is intact).
    pub fn verify_blob(&self, d: &Digest) -> Result<Digest, StoreError> {
        let mut f = self.open_blob(d)?;
        let mut hasher = Sha256::new();
        let mut buf = vec![0u8; 1 << 20];
        loop {
            let n = f.read(&mut buf).map_err(io(&self.blob_path(d)))?;
            if n == 0 {
                break;
            }
            hasher.update(&buf[..n]);
        }
        Ok(Digest::from_sha256_bytes(&hasher.finalize().into()))
    }

    /// Files of the ingest area: blobs being written now, or left by a writer that died (only a caller that
    /// knows no writer runs, such as `kiln doctor` under the root's exclusive lock, may call them stray).
    pub fn ingest_files(&self) -> Result<Vec<PathBuf>, StoreError> {
        let dir = self.root.join("ingest");
        let mut out = Vec::new();
        for e in std::fs::read_dir(&dir).map_err(io(&dir))? {
            out.push(e.map_err(io(&dir))?.path());
        }
        out.sort();
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_changed_blob_hashes_to_something_else_and_strays_are_told_apart() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let d = store.put_bytes(b"hello").unwrap();
        assert_eq!(store.verify_blob(&d).unwrap(), d);
        std::fs::write(store.blob_path(&d), b"hellO").unwrap();
        assert_ne!(store.verify_blob(&d).unwrap(), d);
        std::fs::write(dir.path().join("blobs/sha256/notes.txt"), b"x").unwrap();
        let files = store.blob_files().unwrap();
        assert!(files.contains(&BlobFile::Blob(d)));
        assert!(files.contains(&BlobFile::Foreign(
            dir.path().join("blobs/sha256/notes.txt")
        )));
        assert!(store.ingest_files().unwrap().is_empty());
        let w = store.writer().unwrap();
        assert_eq!(store.ingest_files().unwrap().len(), 1);
        drop(w);
        assert!(
            store.ingest_files().unwrap().is_empty(),
            "a dropped writer leaves nothing"
        );
        // A dead writer's file goes when the store is next opened; a live one's stays.
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let dead = child.id();
        child.wait().unwrap();
        std::fs::write(dir.path().join(format!("ingest/{dead}-0")), b"half").unwrap();
        std::fs::create_dir_all(dir.path().join("sources")).unwrap();
        std::fs::write(dir.path().join(format!("sources/ab.tmp-{dead}")), b"half").unwrap();
        std::fs::write(dir.path().join("sources/ab"), b"kept").unwrap();
        std::fs::create_dir_all(dir.path().join("uploads")).unwrap();
        std::fs::write(dir.path().join(format!("uploads/cd.tmp-{dead}")), b"half").unwrap();
        std::fs::write(dir.path().join("uploads/cd.json"), b"kept").unwrap();
        let ours = format!("speculated/{}-0", std::process::id());
        for d in [format!("speculated/{dead}-3"), ours.clone()] {
            std::fs::create_dir_all(dir.path().join(&d)).unwrap();
            std::fs::write(dir.path().join(d).join("0"), b"blocks").unwrap();
        }
        let live = store.writer().unwrap();
        let store = Store::open(dir.path()).unwrap();
        assert_eq!(
            store.ingest_files().unwrap().len(),
            1,
            "only the live writer's file"
        );
        assert!(!dir.path().join(format!("sources/ab.tmp-{dead}")).exists());
        assert!(dir.path().join("sources/ab").exists());
        assert!(!dir.path().join(format!("uploads/cd.tmp-{dead}")).exists());
        assert!(dir.path().join("uploads/cd.json").exists());
        assert!(!dir.path().join(format!("speculated/{dead}-3")).exists());
        assert!(dir.path().join(ours).join("0").exists());
        drop(live);
    }
}
