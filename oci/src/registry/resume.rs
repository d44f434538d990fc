//! Upload sessions kept across runs, so that a push killed mid-blob (kill -9, a closed laptop, a CI job cancelled)
//! and run again sends only what the registry has not got yet. Each open session of a chunked upload is a small
//! JSON file in the store's `uploads/` directory, named by the registry, the repository and what is uploaded (a
//! stored blob by its digest; a streamed layer, whose digest is not known until its end, by the digest of its
//! first chunk). It holds the session's last Location (registries such as distribution's sign the received
//! offset into it, and a Location with an older offset cancels the session, so the file is rewritten after every
//! chunk the registry took) and how far it got; a streamed layer's file also holds the digest of each chunk sent,
//! so that a rerun can check the chunks it makes again are the ones the registry already has. The file is written
//! atomically (a temporary file renamed over it) and removed when the blob is done or the session is gone, or
//! when it is older than a registry keeps an unfinished upload (see [`STALE`]).

use std::path::PathBuf;

use crate::reference::Reference;
use crate::store::Store;
use crate::Digest;

/// One upload session as it stood after its last accepted chunk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Saved {
    /// The Location the registry gave with its last answer.
    pub location: String,
    /// Bytes the registry had received by then.
    pub offset: u64,
    /// For a streamed layer: the end offset and CRC-32 of each chunk sent, in order.
    pub chunks: Vec<(u64, u32)>,
}

/// The saved sessions of one push target.
pub(crate) struct Sessions {
    dir: PathBuf,
    prefix: String,
}

impl Sessions {
    /// The sessions of `target`'s repository in `store`.
    pub fn new(store: &Store, target: &Reference) -> Sessions {
        let dir = store.root().join("uploads");
        forget_stale(&dir);
        Sessions {
            dir,
            prefix: format!("{}|{}|", target.registry, target.repository),
        }
    }

    fn path(&self, key: &str) -> PathBuf {
        let name = Digest::sha256_of(format!("{}{key}", self.prefix).as_bytes());
        self.dir.join(format!("{}.json", name.hex()))
    }

    /// The saved session of `key`, if there is a readable one.
    pub fn load(&self, key: &str) -> Option<Saved> {
        let v: serde_json::Value =
            serde_json::from_slice(&std::fs::read(self.path(key)).ok()?).ok()?;
        let chunks = match v.get("chunks").and_then(|c| c.as_array()) {
            Some(list) => list
                .iter()
                .map(|c| {
                    Some((
                        c.get(0)?.as_u64()?,
                        u32::try_from(c.get(1)?.as_u64()?).ok()?,
                    ))
                })
                .collect::<Option<Vec<_>>>()?,
            None => Vec::new(),
        };
        Some(Saved {
            location: v.get("location")?.as_str()?.to_string(),
            offset: v.get("offset")?.as_u64()?,
            chunks,
        })
    }

    /// Records `saved` as `key`'s session. A failure to write costs only a resume, so it is not an error.
    pub fn save(&self, key: &str, saved: &Saved) {
        let v = serde_json::json!({
            "target": self.prefix.trim_end_matches('|'),
            "key": key,
            "location": saved.location,
            "offset": saved.offset,
            "chunks": saved.chunks.iter().map(|(end, crc)| serde_json::json!([end, crc])).collect::<Vec<_>>(),
        });
        let path = self.path(key);
        let _ = std::fs::create_dir_all(&self.dir);
        let tmp = path.with_extension(format!("tmp-{}", std::process::id()));
        if std::fs::write(&tmp, v.to_string()).is_err() || std::fs::rename(&tmp, &path).is_err() {
            let _ = std::fs::remove_file(&tmp);
        }
    }

    /// Forgets `key`'s session: its blob is done, or the registry no longer has the session.
    pub fn forget(&self, key: &str) {
        let _ = std::fs::remove_file(self.path(key));
    }
}

/// How long a session is worth keeping: distribution purges unfinished uploads a week old (its `uploadpurging`
/// default, 168 h), so an older file names a session no registry still has, for a blob never pushed again.
pub(crate) const STALE: std::time::Duration = std::time::Duration::from_secs(7 * 24 * 3600);

/// Removes the session files in `dir` last written more than [`STALE`] ago.
fn forget_stale(dir: &std::path::Path) {
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let old = e
            .metadata()
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| t.elapsed().ok())
            .is_some_and(|age| age > STALE);
        if old {
            let _ = std::fs::remove_file(e.path());
        }
    }
}

/// The key of a stored blob's session.
pub(crate) fn blob_key(d: &Digest) -> String {
    format!("blob {d}")
}

/// The key of a streamed layer's session, named by its first chunk.
pub(crate) fn stream_key(first: &Digest) -> String {
    format!("stream {first}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_session_is_saved_read_back_and_forgotten_per_target() {
        let root = tempfile::tempdir().unwrap();
        let store = Store::open(root.path()).unwrap();
        let a = Sessions::new(&store, &Reference::parse("reg.example/a/b:1").unwrap());
        let other = Sessions::new(&store, &Reference::parse("reg.example/a/c:1").unwrap());
        let d = Digest::sha256_of(b"x");
        let saved = Saved {
            location: "https://reg.example/v2/a/b/blobs/uploads/u?_state=s".into(),
            offset: 8 << 20,
            chunks: vec![(4 << 20, 7), (8 << 20, u32::MAX)],
        };
        a.save(&stream_key(&d), &saved);
        assert_eq!(a.load(&stream_key(&d)), Some(saved.clone()));
        assert_eq!(other.load(&stream_key(&d)), None, "another repository's");
        assert_eq!(a.load(&blob_key(&d)), None, "another kind of upload's");
        let moved = Saved {
            offset: 12 << 20,
            ..saved
        };
        a.save(&stream_key(&d), &moved);
        assert_eq!(a.load(&stream_key(&d)), Some(moved));
        a.forget(&stream_key(&d));
        assert_eq!(a.load(&stream_key(&d)), None);
        let left: Vec<_> = std::fs::read_dir(root.path().join("uploads"))
            .unwrap()
            .collect();
        assert!(left.is_empty(), "no temporary files are left: {left:?}");
    }

    #[test]
    fn a_session_older_than_a_registry_keeps_one_is_forgotten() {
        let root = tempfile::tempdir().unwrap();
        let store = Store::open(root.path()).unwrap();
        let target = Reference::parse("reg.example/a/b:1").unwrap();
        let a = Sessions::new(&store, &target);
        let saved = Saved {
            location: "https://reg.example/v2/a/b/blobs/uploads/u".into(),
            offset: 4 << 20,
            chunks: vec![],
        };
        let (old, fresh) = (Digest::sha256_of(b"old"), Digest::sha256_of(b"fresh"));
        a.save(&blob_key(&old), &saved);
        a.save(&blob_key(&fresh), &saved);
        let eight_days_ago =
            std::time::SystemTime::now() - STALE - std::time::Duration::from_secs(86_400);
        std::fs::File::options()
            .write(true)
            .open(a.path(&blob_key(&old)))
            .unwrap()
            .set_modified(eight_days_ago)
            .unwrap();
        let again = Sessions::new(&store, &target);
        assert_eq!(again.load(&blob_key(&old)), None);
        assert_eq!(again.load(&blob_key(&fresh)), Some(saved));
    }
}
