//! The persistent cache index under kiln's root: one JSON record per cache key, written atomically (temporary
//! file, fsync, rename, fsync of the directory), plus a pointer per step slot to the slot's latest record, which
//! is what a miss is explained against. Records are independent files, so concurrent builds on one root never
//! see a half-written record and need no lock to read.

use std::io::Write;
use std::path::{Path, PathBuf};

use oci::Digest;
use serde::{Deserialize, Serialize};

use super::key::KeyParts;

/// Why the index could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum IndexError {
    /// I/O on a path of the index.
    #[error("cache index {path}: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// A record that does not parse (a foreign or damaged file); it is treated as absent by readers.
    #[error("cache index {path}: damaged record: {reason}")]
    Damaged {
        /// The record file.
        path: PathBuf,
        /// The parse error.
        reason: String,
    },
}

/// What the cache remembers about one finished step.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CacheRecord {
    /// The cache key (`parts.key()`).
    pub key: Digest,
    /// What the key was made of.
    pub parts: KeyParts,
    /// The snapshot holding the step's result; it must exist before the record is written.
    pub snapshot: String,
    /// The step slot (`stage#step`) this record is the latest of, for explanations.
    pub slot: Option<String>,
    /// What the step was, for `kiln du` and explanations.
    pub description: String,
    /// Seconds since the epoch when recorded.
    pub created: u64,
}

/// The index directory.
#[derive(Debug, Clone)]
pub struct CacheIndex {
    dir: PathBuf,
}

fn io(path: &Path) -> impl Fn(std::io::Error) -> IndexError + '_ {
    move |source| IndexError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Writes `bytes` to `path` so that readers see the old file or the whole new one, never a part; when `durable`,
/// the new one also survives a crash once this returns.
fn write_atomic(path: &Path, bytes: &[u8], durable: bool) -> Result<(), IndexError> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let mut n = 0u32;
    let (tmp, mut file) = loop {
        let tmp = dir.join(format!(".tmp.{}.{n}", std::process::id()));
        match std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&tmp)
        {
            Ok(f) => break (tmp, f),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists && n < 10_000 => n += 1,
            Err(e) => return Err(io(&tmp)(e)),
        }
    };
    let result = (|| {
        file.write_all(bytes).map_err(io(&tmp))?;
        if durable {
            file.sync_all().map_err(io(&tmp))?;
        }
        std::fs::rename(&tmp, path).map_err(io(path))?;
        if durable {
            std::fs::File::open(dir)
                .and_then(|d| d.sync_all())
                .map_err(io(dir))?;
        }
        Ok(())
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

/// How many per-file checksums a record keeps inline; more go to a listing file of their own.
pub const INLINE_FILES: usize = 2000;

fn slot_file(slot: &str) -> String {
    format!("{}.json", Digest::sha256_of(slot.as_bytes()).hex())
}

impl CacheIndex {
    /// Opens (creating) the index in `dir`.
    pub fn open(dir: &Path) -> Result<CacheIndex, IndexError> {
        for sub in ["records", "slots"] {
            let p = dir.join(sub);
            std::fs::create_dir_all(&p).map_err(io(&p))?;
        }
        Ok(CacheIndex {
            dir: dir.to_path_buf(),
        })
    }

    fn record_path(&self, key: &Digest) -> PathBuf {
        self.dir.join("records").join(format!("{}.json", key.hex()))
    }

    fn read(&self, path: &Path) -> Result<Option<CacheRecord>, IndexError> {
        let bytes = match std::fs::read(path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(io(path)(e)),
        };
        serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|e| IndexError::Damaged {
                path: path.to_path_buf(),
                reason: e.to_string(),
            })
    }

    /// The record for `key`, if the step was cached.
    pub fn get(&self, key: &Digest) -> Result<Option<CacheRecord>, IndexError> {
        self.read(&self.record_path(key))
    }

    /// Records a finished step and makes it its slot's latest. Call only once the snapshot exists. A selection of
    /// more than [`INLINE_FILES`] files has its per-file listing written beside the records (`listings/`, named
    /// by its digest) rather than inside the record, which every cache hit reads.
    pub fn put(&self, record: &CacheRecord) -> Result<(), IndexError> {
        let mut stored;
        let mut record = record;
        if record.parts.files.len() > INLINE_FILES {
            stored = record.clone();
            let listing = std::mem::take(&mut stored.parts.files);
            let bytes = serde_json::to_vec(&listing).map_err(|e| IndexError::Damaged {
                path: self.dir.join("listings"),
                reason: e.to_string(),
            })?;
            let d = Digest::sha256_of(&bytes);
            let dir = self.dir.join("listings");
            std::fs::create_dir_all(&dir).map_err(io(&dir))?;
            let p = dir.join(format!("{}.json", d.hex()));
            // A listing is a hint, like a slot: losing it costs an explanation naming the source, not the file.
            if !p.exists() {
                write_atomic(&p, &bytes, false)?;
            }
            stored.parts.listing = Some(d);
            record = &stored;
        }
        let bytes = serde_json::to_vec(record).map_err(|e| IndexError::Damaged {
            path: self.record_path(&record.key),
            reason: e.to_string(),
        })?;
        write_atomic(&self.record_path(&record.key), &bytes, true)?;
        if let Some(slot) = &record.slot {
            // A slot only names the record a later miss is explained against: after a crash it may name an older
            // record or be missing, which costs an explanation, never a wrong hit, so it is not synced.
            write_atomic(
                &self.dir.join("slots").join(slot_file(slot)),
                record.key.to_string().as_bytes(),
                false,
            )?;
        }
        Ok(())
    }

    /// The latest record of a step slot (what a miss is explained against).
    pub fn last_for_slot(&self, slot: &str) -> Result<Option<CacheRecord>, IndexError> {
        let p = self.dir.join("slots").join(slot_file(slot));
        let text = match std::fs::read_to_string(&p) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(io(&p)(e)),
        };
        match text.trim().parse::<Digest>() {
            Ok(key) => self.get(&key),
            Err(e) => Err(IndexError::Damaged {
                path: p,
                reason: e.to_string(),
            }),
        }
    }

    /// `parts` with its per-file listing filled in from `listings/` when the record keeps it there (empty when
    /// that file is gone).
    pub fn with_listing(&self, parts: &KeyParts) -> KeyParts {
        let mut out = parts.clone();
        if let Some(d) = &parts.listing {
            let p = self.dir.join("listings").join(format!("{}.json", d.hex()));
            if let Some(files) = std::fs::read(&p)
                .ok()
                .filter(|b| Digest::sha256_of(b) == *d)
                .and_then(|b| serde_json::from_slice(&b).ok())
            {
                out.files = files;
            }
        }
        out
    }

    /// Removes listings none of `kept` (the records GC left) names; returns how many went.
    pub fn remove_unused_listings<'a>(
        &self,
        kept: impl IntoIterator<Item = &'a CacheRecord>,
    ) -> usize {
        let used: std::collections::BTreeSet<String> = kept
            .into_iter()
            .filter_map(|r| {
                r.parts
                    .listing
                    .as_ref()
                    .map(|d| format!("{}.json", d.hex()))
            })
            .collect();
        let mut n = 0;
        for e in std::fs::read_dir(self.dir.join("listings"))
            .into_iter()
            .flatten()
            .flatten()
        {
            let name = e.file_name().to_string_lossy().into_owned();
            if !name.starts_with('.')
                && !used.contains(&name)
                && std::fs::remove_file(e.path()).is_ok()
            {
                n += 1;
            }
        }
        n
    }

    /// Marks a record used now (its file's modification time), for least-recently-used GC. Best effort: a
    /// record that cannot be touched only looks older than it is.
    pub fn touch(&self, key: &Digest) {
        if let Ok(f) = std::fs::File::options()
            .write(true)
            .open(self.record_path(key))
        {
            let _ = f.set_modified(std::time::SystemTime::now());
        }
    }

    /// When a record was last written or used.
    pub fn last_used(&self, key: &Digest) -> Option<std::time::SystemTime> {
        std::fs::metadata(self.record_path(key))
            .and_then(|m| m.modified())
            .ok()
    }

    /// Forgets a record (GC); its slot pointer, if any, then dangles and reads as absent.
    pub fn remove(&self, key: &Digest) -> Result<(), IndexError> {
        let p = self.record_path(key);
        match std::fs::remove_file(&p) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(io(&p)(e)),
        }
    }

    /// Every file of the index as it reads, for `kiln doctor`: records (or why one does not parse), slot pointers
    /// (with the key each names, if it parses), and temporary files a writer left.
    pub fn files(&self) -> Result<IndexFiles, IndexError> {
        let mut out = IndexFiles::default();
        for sub in ["records", "slots", "listings"] {
            let dir = self.dir.join(sub);
            let entries = match std::fs::read_dir(&dir) {
                Err(e) if e.kind() == std::io::ErrorKind::NotFound && sub == "listings" => continue,
                r => r.map_err(io(&dir))?,
            };
            for e in entries {
                let path = e.map_err(io(&dir))?.path();
                let name = path.file_name().map(|n| n.to_string_lossy().into_owned());
                if name.as_deref().is_some_and(|n| n.starts_with(".tmp.")) {
                    out.temporary.push(path);
                } else if sub == "listings" {
                    continue;
                } else if sub == "records" {
                    let read = match self.read(&path) {
                        Ok(Some(r)) if path.file_stem().is_some_and(|s| *s == *r.key.hex()) => {
                            Ok(r)
                        }
                        Ok(Some(r)) => Err(RecordFault::Misplaced(r.key)),
                        Ok(None) => continue,
                        Err(e) => Err(RecordFault::Unreadable(e)),
                    };
                    out.records.push((path, read));
                } else {
                    let key = std::fs::read_to_string(&path)
                        .ok()
                        .and_then(|t| t.trim().parse::<Digest>().ok());
                    out.slots.push((path, key));
                }
            }
        }
        out.records.sort_by(|a, b| a.0.cmp(&b.0));
        out.slots.sort();
        out.temporary.sort();
        Ok(out)
    }

    /// Every readable record (damaged ones are skipped; `kiln doctor` reports them).
    pub fn list(&self) -> Result<Vec<CacheRecord>, IndexError> {
        let dir = self.dir.join("records");
        let mut out = Vec::new();
        for e in std::fs::read_dir(&dir).map_err(io(&dir))? {
            let path = e.map_err(io(&dir))?.path();
            if path.extension().is_some_and(|x| x == "json") {
                if let Ok(Some(r)) = self.read(&path) {
                    out.push(r);
                }
            }
        }
        out.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(out)
    }
}

/// Why a record file of the index cannot be used (what `kiln doctor` reports before removing it).
#[derive(Debug, thiserror::Error)]
pub enum RecordFault {
    /// The file does not read or parse.
    #[error(transparent)]
    Unreadable(#[from] IndexError),
    /// The file parses but is named after another key than the record it holds.
    #[error("holds the record of {0}")]
    Misplaced(Digest),
}

/// The files of a cache index (see [`CacheIndex::files`]).
#[derive(Debug, Default)]
pub struct IndexFiles {
    /// Each record file, parsed, or why it does not parse.
    pub records: Vec<(PathBuf, Result<CacheRecord, RecordFault>)>,
    /// Each slot pointer and the key it names (`None`: unreadable).
    pub slots: Vec<(PathBuf, Option<Digest>)>,
    /// Temporary files of writes that never finished.
    pub temporary: Vec<PathBuf>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(path: &str, slot: &str) -> CacheRecord {
        let parts = crate::cache::key::mkdir_parts(path);
        CacheRecord {
            key: parts.key(),
            parts,
            snapshot: format!("snap-{path}"),
            slot: Some(slot.to_string()),
            description: format!("WORKDIR {path}"),
            created: 1,
        }
    }

    #[test]
    fn put_get_slot_and_remove() {
        let d = tempfile::tempdir().unwrap();
        let idx = CacheIndex::open(d.path()).unwrap();
        let a = record("/a", "stage#2");
        assert_eq!(idx.get(&a.key).unwrap(), None);
        idx.put(&a).unwrap();
        assert_eq!(idx.get(&a.key).unwrap(), Some(a.clone()));
        let b = record("/b", "stage#2");
        idx.put(&b).unwrap();
        assert_eq!(idx.last_for_slot("stage#2").unwrap(), Some(b.clone()));
        assert_eq!(idx.list().unwrap().len(), 2);
        idx.remove(&b.key).unwrap();
        assert_eq!(idx.last_for_slot("stage#2").unwrap(), None);
        let reopened = CacheIndex::open(d.path()).unwrap();
        assert_eq!(reopened.get(&a.key).unwrap(), Some(a));
        let leftovers: Vec<_> = std::fs::read_dir(d.path().join("records"))
            .unwrap()
            .filter_map(|e| e.ok())
            .filter(|e| e.file_name().to_string_lossy().starts_with(".tmp"))
            .collect();
        assert!(leftovers.is_empty(), "no temporary files remain");
    }

    #[test]
    fn a_long_file_listing_is_kept_beside_the_record_and_read_back_for_explanations() {
        let d = tempfile::tempdir().unwrap();
        let idx = CacheIndex::open(d.path()).unwrap();
        let mut big = record("/big", "stage#3");
        for i in 0..INLINE_FILES + 1 {
            big.parts
                .files
                .insert(format!("f{i}"), Digest::sha256_of(i.to_string().as_bytes()));
        }
        idx.put(&big).unwrap();
        let stored = idx.get(&big.key).unwrap().unwrap();
        assert!(stored.parts.files.is_empty() && stored.parts.listing.is_some());
        assert!(
            std::fs::metadata(
                d.path()
                    .join("records")
                    .join(format!("{}.json", big.key.hex()))
            )
            .unwrap()
            .len()
                < 4096,
            "the record stays small"
        );
        assert_eq!(idx.with_listing(&stored.parts).files, big.parts.files);
        assert_eq!(idx.remove_unused_listings([&stored]), 0);
        idx.remove(&big.key).unwrap();
        assert_eq!(idx.remove_unused_listings([]), 1);
        assert!(idx.with_listing(&stored.parts).files.is_empty());
    }

    #[test]
    fn concurrent_writers_never_leave_a_partial_record() {
        let d = tempfile::tempdir().unwrap();
        let idx = CacheIndex::open(d.path()).unwrap();
        std::thread::scope(|s| {
            for t in 0..4 {
                let idx = idx.clone();
                s.spawn(move || {
                    for i in 0..50 {
                        idx.put(&record(&format!("/{}", i % 10), &format!("slot{t}")))
                            .unwrap();
                    }
                });
            }
            let reader = idx.clone();
            s.spawn(move || {
                for _ in 0..200 {
                    for r in reader.list().unwrap() {
                        assert_eq!(r.parts.key(), r.key);
                    }
                }
            });
        });
        assert_eq!(idx.list().unwrap().len(), 10);
    }

    #[test]
    fn damaged_records_are_errors_not_panics() {
        let d = tempfile::tempdir().unwrap();
        let idx = CacheIndex::open(d.path()).unwrap();
        let a = record("/a", "s");
        std::fs::write(
            d.path()
                .join("records")
                .join(format!("{}.json", a.key.hex())),
            b"{not json",
        )
        .unwrap();
        assert!(matches!(idx.get(&a.key), Err(IndexError::Damaged { .. })));
        assert!(idx.list().unwrap().is_empty());
    }
}
