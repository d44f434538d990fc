//! The stat cache: a file's content digest remembered under its stat (device, inode, size, mtime, ctime), so an
//! unchanged rebuild re-reads only files whose stat changed. The digest never depends on the stat: a miss only
//! costs a re-read, and a hit gives the same digest a re-read would.

use std::collections::HashMap;
use std::io::Write;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use oci::Digest;

use super::HashError;

/// What must be unchanged for a remembered content digest to be reused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
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

/// The first bytes of a saved cache: names the format, so a file of another version is an empty cache.
const MAGIC: &[u8] = b"kiln-statcache 2\n";

/// Bytes of one record after its path: dev, ino, size (u64 each), mtime and ctime (i128 ns), the SHA-256.
const FIXED: usize = 8 * 3 + 16 * 2 + 32;

/// Content digests by path and stat.
#[derive(Debug, Clone, Default)]
pub struct StatCache {
    /// The SHA-256 of each file's contents, kept as bytes, by the path's bytes: an unchanged rebuild of a
    /// 20,000-file context loads and looks up all of them, and a `PathBuf` key hashes and compares component by
    /// component; a fixed-size binary record loads ten times faster than JSON.
    entries: HashMap<Box<[u8]>, (StatKey, [u8; 32])>,
    /// Whether anything was learned since loading (an unchanged cache is not written back).
    changed: bool,
}

impl StatCache {
    /// The file, inside the root's `statcache/`, that holds the cache of the context at `context`.
    pub fn file_name(context: &Path) -> String {
        format!(
            "{}.bin",
            Digest::sha256_of(context.as_os_str().as_bytes()).hex()
        )
    }

    /// The remembered digest of `path`, if its stat still matches.
    pub fn get(&self, path: &Path, key: &StatKey) -> Option<Digest> {
        match self.entries.get(path.as_os_str().as_bytes()) {
            Some((k, d)) if k == key => Some(Digest::from_sha256_bytes(d)),
            _ => None,
        }
    }

    /// Remembers `digest` for `path` at `key` (content digests are SHA-256; any other is not remembered).
    pub fn insert(&mut self, path: PathBuf, key: StatKey, digest: Digest) {
        let mut raw = [0u8; 32];
        if digest.algorithm() != "sha256" || hex::decode_to_slice(digest.hex(), &mut raw).is_err() {
            return;
        }
        let entry = (key, raw);
        let path = path.into_os_string().into_vec().into_boxed_slice();
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

    /// Loads a cache saved by [`StatCache::save`]; a missing, unreadable or malformed file is an empty cache (the
    /// cache only saves time, it never decides a result).
    pub fn load(file: &Path) -> StatCache {
        std::fs::read(file)
            .ok()
            .and_then(|b| StatCache::parse(&b))
            .unwrap_or_default()
    }

    /// The cache a saved file holds, or `None` when the bytes are not a whole cache of this format.
    pub fn parse(bytes: &[u8]) -> Option<StatCache> {
        let mut rest = bytes.strip_prefix(MAGIC)?;
        // Sized up front from the file (records are FIXED bytes plus a length and a path of a few dozen bytes):
        // growing the table by rehashing cost an unchanged 20,000-file rebuild ~4 % of its time.
        let mut entries = HashMap::with_capacity(rest.len() / (FIXED + 4 + 32));
        while !rest.is_empty() {
            let (len, r) = rest.split_first_chunk::<4>()?;
            let len = u32::from_le_bytes(*len) as usize;
            if r.len() < len + FIXED {
                return None;
            }
            let (path, r) = r.split_at(len);
            let (fixed, r) = r.split_at(FIXED);
            let u64_at =
                |i: usize| u64::from_le_bytes(fixed[i..i + 8].try_into().unwrap_or_default());
            let i128_at =
                |i: usize| i128::from_le_bytes(fixed[i..i + 16].try_into().unwrap_or_default());
            let key = StatKey {
                dev: u64_at(0),
                ino: u64_at(8),
                size: u64_at(16),
                mtime_ns: i128_at(24),
                ctime_ns: i128_at(40),
            };
            let mut digest = [0u8; 32];
            digest.copy_from_slice(&fixed[56..]);
            entries.insert(Box::from(path), (key, digest));
            rest = r;
        }
        Some(StatCache {
            entries,
            changed: false,
        })
    }

    /// Saves atomically: a temporary file renamed over `file`. Not fsynced: the cache is a hint, and one lost or
    /// emptied by a power cut only costs the next build a re-read of the context.
    pub fn save(&self, file: &Path) -> Result<(), HashError> {
        let io = |source| HashError::Io {
            path: file.to_path_buf(),
            source,
        };
        let mut records: Vec<_> = self.entries.iter().collect();
        records.sort_by(|a, b| a.0.cmp(b.0));
        let mut bytes = Vec::with_capacity(MAGIC.len() + records.len() * (FIXED + 64));
        bytes.extend_from_slice(MAGIC);
        for (path, (k, d)) in records {
            let p: &[u8] = path;
            let Ok(len) = u32::try_from(p.len()) else {
                continue;
            };
            bytes.extend_from_slice(&len.to_le_bytes());
            bytes.extend_from_slice(p);
            for v in [k.dev, k.ino, k.size] {
                bytes.extend_from_slice(&v.to_le_bytes());
            }
            for v in [k.mtime_ns, k.ctime_ns] {
                bytes.extend_from_slice(&v.to_le_bytes());
            }
            bytes.extend_from_slice(d);
        }
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
