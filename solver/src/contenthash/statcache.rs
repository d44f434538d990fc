//! The stat cache: a file's content digest remembered under its stat (device, inode, size, mtime, ctime), so an
//! unchanged rebuild re-reads only files whose stat changed. The digest never depends on the stat: a miss only
//! costs a re-read, and a hit gives the same digest a re-read would.

use std::collections::HashMap;
use std::io::Write;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use oci::Digest;
use serde::{Deserialize, Serialize};

use super::HashError;

/// What must be unchanged for a remembered content digest to be reused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatKey {
    dev: u64,
    ino: u64,
    size: u64,
    mtime_ns: i128,
    ctime_ns: i128,
}

impl StatKey {
    /// The key of a file's metadata.
    pub fn of(m: &std::fs::Metadata) -> StatKey {
        StatKey {
            dev: m.dev(),
            ino: m.ino(),
            size: m.size(),
            mtime_ns: i128::from(m.mtime()) * 1_000_000_000 + i128::from(m.mtime_nsec()),
            ctime_ns: i128::from(m.ctime()) * 1_000_000_000 + i128::from(m.ctime_nsec()),
        }
    }

    /// True when the file changed (or claims to have changed) less than `window` before `hashed_at`. Such a stat
    /// cannot vouch for the contents: a rewrite of the same size within the same timestamp tick (a few
    /// milliseconds here, a whole second on filesystems with coarse times) leaves the stat as it was, so a digest
    /// remembered under it could outlive the contents it was read from. Git calls these entries racy.
    pub fn is_racy(&self, hashed_at: std::time::SystemTime, window: std::time::Duration) -> bool {
        let at = hashed_at
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as i128);
        let safe_before = at - window.as_nanos() as i128;
        self.ctime_ns >= safe_before || self.mtime_ns >= safe_before
    }
}

#[derive(Serialize, Deserialize)]
struct Record {
    path: PathBuf,
    key: StatKey,
    digest: Digest,
}

/// Content digests by path and stat.
#[derive(Debug, Clone, Default)]
pub struct StatCache {
    entries: HashMap<PathBuf, (StatKey, Digest)>,
    /// Whether anything was learned since loading (an unchanged cache is not written back).
    changed: bool,
}

impl StatCache {
    /// The remembered digest of `path`, if its stat still matches.
    pub fn get(&self, path: &Path, key: &StatKey) -> Option<Digest> {
        match self.entries.get(path) {
            Some((k, d)) if k == key => Some(d.clone()),
            _ => None,
        }
    }

    /// Remembers `digest` for `path` at `key`.
    pub fn insert(&mut self, path: PathBuf, key: StatKey, digest: Digest) {
        let entry = (key, digest);
        if self.entries.get(&path) != Some(&entry) {
            self.entries.insert(path, entry);
            self.changed = true;
        }
    }

    /// Whether [`StatCache::insert`] learned anything since the cache was loaded or made.
    pub fn is_changed(&self) -> bool {
        self.changed
    }

    /// Number of remembered files.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// True when nothing is remembered.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Loads a cache saved by [`StatCache::save`]; a missing or unreadable file is an empty cache (the cache only
    /// saves time, it never decides a result).
    pub fn load(file: &Path) -> StatCache {
        let Ok(bytes) = std::fs::read(file) else {
            return StatCache::default();
        };
        let records: Vec<Record> = serde_json::from_slice(&bytes).unwrap_or_default();
        StatCache {
            entries: records
                .into_iter()
                .map(|r| (r.path, (r.key, r.digest)))
                .collect(),
            changed: false,
        }
    }

    /// Saves atomically: a temporary file renamed over `file`. Not fsynced: the cache is a hint, and one lost or
    /// emptied by a power cut only costs the next build a re-read of the context.
    pub fn save(&self, file: &Path) -> Result<(), HashError> {
        let io = |source| HashError::Io {
            path: file.to_path_buf(),
            source,
        };
        let mut records: Vec<Record> = self
            .entries
            .iter()
            .map(|(p, (k, d))| Record {
                path: p.clone(),
                key: *k,
                digest: d.clone(),
            })
            .collect();
        records.sort_by(|a, b| a.path.cmp(&b.path));
        let bytes = serde_json::to_vec(&records).map_err(|e| io(std::io::Error::other(e)))?;
        let dir = file.parent().unwrap_or(Path::new("."));
        let mut tmp = tempfile_in(dir).map_err(io)?;
        tmp.1.write_all(&bytes).map_err(io)?;
        std::fs::rename(&tmp.0, file).map_err(io)?;
        Ok(())
    }
}

fn tempfile_in(dir: &Path) -> std::io::Result<(PathBuf, std::fs::File)> {
    for n in 0..1000u32 {
        let p = dir.join(format!(".statcache.{}.{n}.tmp", std::process::id()));
        match std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&p)
        {
            Ok(f) => return Ok((p, f)),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(e),
        }
    }
    Err(std::io::Error::other(
        "cannot create a temporary stat cache file",
    ))
}
