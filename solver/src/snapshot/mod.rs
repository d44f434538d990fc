//! Snapshots: each step's result is a layer directory (an overlay upper dir) on top of its parent's chain. A
//! snapshot's `diff` directory *is* its layer diff, so export walks it and never compares two trees. Work in
//! progress lives under `tmp-<id>` and becomes visible only by an atomic rename once it is synced.

mod overlay;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use serde::{Deserialize, Serialize};

pub use overlay::{Mounted, MAX_LOWER_DATA};

/// Why a snapshot operation failed.
#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    /// I/O on a snapshot path.
    #[error("snapshot {path}: {source}")]
    Io {
        /// The path.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// The snapshot does not exist (removed by GC, or never committed).
    #[error("snapshot {0} does not exist")]
    Missing(String),
    /// Mounting the overlay failed.
    #[error("mounting overlay at {target}: {source} (options: {options})")]
    Mount {
        /// Mount point.
        target: PathBuf,
        /// Overlay options.
        options: String,
        /// The cause.
        source: std::io::Error,
    },
    /// The chain is too deep for one overlay mount and must be flattened first.
    #[error("snapshot chain of {0} layers is too deep for one overlay mount")]
    ChainTooDeep(usize),
}

fn io(path: &Path) -> impl Fn(std::io::Error) -> SnapshotError + '_ {
    move |source| SnapshotError::Io {
        path: path.to_path_buf(),
        source,
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Meta {
    parent: Option<String>,
    /// The image manifest this snapshot is the unpacked form of (see [`Active::set_unpacked_from`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    unpacked_from: Option<String>,
    /// When it was committed (seconds since the epoch): the time its layer's history entry carries, as BuildKit's
    /// exporter takes a layer's time from its ref, so a build served from cache makes the same image again.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    created: Option<i64>,
}

/// A snapshot being written: its upper (`diff`) and overlay work directories, and its parent.
#[derive(Debug)]
pub struct Active {
    id: String,
    dir: PathBuf,
    parent: Option<String>,
    unpacked_from: Option<String>,
    committed: bool,
}

impl Active {
    /// The upper directory: everything written to a mount of this snapshot lands here.
    pub fn diff_dir(&self) -> PathBuf {
        self.dir.join("diff")
    }

    /// The parent snapshot.
    pub fn parent(&self) -> Option<&str> {
        self.parent.as_deref()
    }

    /// Records that this snapshot holds exactly the files of the image `manifest` (a base image unpacked), so an
    /// export can carry the base's own layers — the same blobs a registry may already have — instead of one layer
    /// re-made from the snapshot.
    pub fn set_unpacked_from(&mut self, manifest: &str) {
        self.unpacked_from = Some(manifest.to_string());
    }
}

impl Drop for Active {
    fn drop(&mut self) {
        if !self.committed {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

/// The snapshot store under `<root>/snapshots`.
#[derive(Debug, Clone)]
pub struct Snapshotter {
    dir: PathBuf,
    /// Parents of committed snapshots already read, shared by clones: a committed snapshot never changes, and
    /// every step walks its whole chain to mount it, so a chain of N steps read N(N+1)/2 `meta.json` files.
    parents: std::sync::Arc<std::sync::Mutex<std::collections::HashMap<String, Option<String>>>>,
    /// Set by [`Snapshotter::commit_unsynced`], cleared by [`Snapshotter::sync_published`]: renames into the
    /// snapshots directory not yet made durable (shared by clones).
    unsynced: std::sync::Arc<std::sync::atomic::AtomicBool>,
    /// Held while the directory is synced, so a caller that finds nothing unsynced knows no sync is still under way.
    syncing: std::sync::Arc<std::sync::Mutex<()>>,
}

static COUNTER: AtomicU64 = AtomicU64::new(0);

fn new_id() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let seed = format!("{nanos}-{}-{n}", std::process::id());
    oci::Digest::sha256_of(seed.as_bytes()).hex()[..24].to_string()
}

impl Snapshotter {
    /// Opens (creating) the store in `dir`.
    pub fn open(dir: &Path) -> Result<Snapshotter, SnapshotError> {
        std::fs::create_dir_all(dir.join("empty")).map_err(io(dir))?;
        spread_new_snapshots(dir);
        Ok(Snapshotter {
            dir: dir.to_path_buf(),
            parents: Default::default(),
            unsynced: Default::default(),
            syncing: Default::default(),
        })
    }

    /// The parent of the committed snapshot `id`, from memory once read.
    fn parent_of(&self, id: &str) -> Result<Option<String>, SnapshotError> {
        if let Some(p) = self.parents.lock().ok().and_then(|m| m.get(id).cloned()) {
            return Ok(p);
        }
        let meta_path = self.path(id).join("meta.json");
        let bytes =
            std::fs::read(&meta_path).map_err(|_| SnapshotError::Missing(id.to_string()))?;
        let meta: Meta =
            serde_json::from_slice(&bytes).map_err(|e| io(&meta_path)(std::io::Error::other(e)))?;
        if let Ok(mut m) = self.parents.lock() {
            m.insert(id.to_string(), meta.parent.clone());
        }
        Ok(meta.parent)
    }

    /// `id` and its ancestors, top first.
    fn walk(&self, id: &str) -> Result<Vec<String>, SnapshotError> {
        let mut out = Vec::new();
        let mut cur = Some(id.to_string());
        while let Some(c) = cur {
            cur = self.parent_of(&c)?;
            out.push(c);
            if out.len() > 10_000 {
                return Err(SnapshotError::ChainTooDeep(out.len()));
            }
        }
        Ok(out)
    }

    fn path(&self, id: &str) -> PathBuf {
        self.dir.join(id)
    }

    /// Whether a committed snapshot exists.
    pub fn exists(&self, id: &str) -> bool {
        self.path(id).join("meta.json").is_file()
    }

    /// Starts a snapshot on top of `parent` (or of nothing).
    pub fn prepare(&self, parent: Option<&str>) -> Result<Active, SnapshotError> {
        if let Some(p) = parent {
            if !self.exists(p) {
                return Err(SnapshotError::Missing(p.to_string()));
            }
        }
        let id = new_id();
        let dir = self.dir.join(format!("tmp-{}-{id}", std::process::id()));
        for sub in ["diff", "work"] {
            std::fs::create_dir_all(dir.join(sub)).map_err(io(&dir))?;
        }
        Ok(Active {
            id,
            dir,
            parent: parent.map(str::to_string),
            unpacked_from: None,
            committed: false,
        })
    }

    /// Makes an active snapshot durable and visible: syncs its files, writes its metadata, renames it into place,
    /// and syncs the snapshots directory so the rename itself survives a crash.
    pub fn commit(&self, active: Active) -> Result<String, SnapshotError> {
        let id = self.commit_unsynced(active)?;
        self.sync_published()?;
        Ok(id)
    }

    /// [`Snapshotter::commit`] but for the last sync — of the snapshots directory, which makes the rename durable
    /// — left to [`Snapshotter::sync_published`], which whoever records a reference to the snapshot calls first
    /// (the worker, before a cache record). A build's steps mount the snapshot at once either way; one directory
    /// sync was a journal commit on every RUN step's path, now one for all the steps whose records wait behind.
    pub fn commit_unsynced(&self, mut active: Active) -> Result<String, SnapshotError> {
        let meta = Meta {
            parent: active.parent.clone(),
            unpacked_from: active.unpacked_from.clone(),
            created: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .ok()
                .and_then(|d| i64::try_from(d.as_secs()).ok()),
        };
        let _ = std::fs::remove_dir_all(active.dir.join("work"));
        sync_tree(&active.dir.join("diff"))?;
        let meta_path = active.dir.join("meta.json");
        let bytes =
            serde_json::to_vec(&meta).map_err(|e| io(&meta_path)(std::io::Error::other(e)))?;
        std::fs::write(&meta_path, bytes).map_err(io(&meta_path))?;
        std::fs::File::open(&meta_path)
            .and_then(|f| f.sync_all())
            .map_err(io(&meta_path))?;
        // The directory's own entries (diff, meta.json) must be durable before the rename publishes it.
        std::fs::File::open(&active.dir)
            .and_then(|f| f.sync_all())
            .map_err(io(&active.dir))?;
        let final_dir = self.path(&active.id);
        std::fs::rename(&active.dir, &final_dir).map_err(io(&final_dir))?;
        self.unsynced
            .store(true, std::sync::atomic::Ordering::SeqCst);
        active.committed = true;
        Ok(active.id.clone())
    }

    /// Makes every rename of [`Snapshotter::commit_unsynced`] so far durable (one directory sync, skipped when
    /// there is none).
    pub fn sync_published(&self) -> Result<(), SnapshotError> {
        let _turn = self.syncing.lock().unwrap_or_else(|p| p.into_inner());
        if self
            .unsynced
            .swap(false, std::sync::atomic::Ordering::SeqCst)
        {
            if let Err(e) = std::fs::File::open(&self.dir).and_then(|d| d.sync_all()) {
                self.unsynced
                    .store(true, std::sync::atomic::Ordering::SeqCst);
                return Err(io(&self.dir)(e));
            }
        }
        Ok(())
    }

    /// The ids of `id` and its ancestors, bottom (oldest) first: the layers of an image built on `id`.
    pub fn chain_ids(&self, id: &str) -> Result<Vec<String>, SnapshotError> {
        let mut out = self.walk(id)?;
        out.reverse();
        Ok(out)
    }

    /// The image manifest a committed snapshot was unpacked from, if it was (see [`Active::set_unpacked_from`]).
    /// A snapshot whose metadata cannot be read answers `None`: the export then re-makes its layer, which is
    /// always correct.
    pub fn unpacked_from(&self, id: &str) -> Option<String> {
        let bytes = std::fs::read(self.path(id).join("meta.json")).ok()?;
        serde_json::from_slice::<Meta>(&bytes).ok()?.unpacked_from
    }

    /// When a committed snapshot was made, in seconds since the epoch: recorded at commit, or for a snapshot
    /// committed before that was recorded, its metadata file's time. `None` when neither can be read.
    pub fn created(&self, id: &str) -> Option<i64> {
        let path = self.path(id).join("meta.json");
        let bytes = std::fs::read(&path).ok()?;
        if let Some(t) = serde_json::from_slice::<Meta>(&bytes).ok()?.created {
            return Some(t);
        }
        let modified = std::fs::metadata(&path).ok()?.modified().ok()?;
        let secs = modified
            .duration_since(std::time::UNIX_EPOCH)
            .ok()?
            .as_secs();
        i64::try_from(secs).ok()
    }

    /// A committed snapshot's own diff directory.
    pub fn diff_dir(&self, id: &str) -> PathBuf {
        self.path(id).join("diff")
    }

    /// The diff directories of `id` and its ancestors, top first.
    pub fn chain(&self, id: &str) -> Result<Vec<PathBuf>, SnapshotError> {
        Ok(self
            .walk(id)?
            .iter()
            .map(|c| self.path(c).join("diff"))
            .collect())
    }

    /// Mounts an overlay of `active` over its parent chain at `target` (read-write; writes land in its diff).
    pub fn mount(&self, active: &Active, target: &Path) -> Result<Mounted, SnapshotError> {
        let lowers = match &active.parent {
            Some(p) => self.chain(p)?,
            None => vec![self.dir.join("empty")],
        };
        overlay::mount(
            &lowers,
            &active.dir.join("diff"),
            &active.dir.join("work"),
            target,
        )
    }

    /// Mounts `lower` with a throw-away `upper` and `work` at `target`: a writable view whose writes never reach
    /// `lower` (`RUN --mount=type=bind,rw` discards them with `upper`).
    pub fn mount_scratch(
        lower: &Path,
        upper: &Path,
        work: &Path,
        target: &Path,
    ) -> Result<Mounted, SnapshotError> {
        overlay::mount(&[lower.to_path_buf()], upper, work, target)
    }

    /// Mounts a committed snapshot read-only at `target` (for copies out of it).
    pub fn mount_readonly(&self, id: &str, target: &Path) -> Result<Mounted, SnapshotError> {
        let mut lowers = self.chain(id)?;
        if lowers.len() == 1 {
            lowers.push(self.dir.join("empty"));
        }
        overlay::mount_lower_only(&lowers, target)
    }

    /// Removes a committed snapshot (GC; the caller makes sure no child or record still needs it).
    pub fn remove(&self, id: &str) -> Result<(), SnapshotError> {
        let p = self.path(id);
        if let Ok(mut m) = self.parents.lock() {
            m.remove(id);
        }
        match std::fs::remove_dir_all(&p) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(io(&p)(e)),
        }
    }

    /// Every entry of the snapshot directory and what it is, for `kiln doctor`.
    pub fn entries(&self) -> Result<Vec<SnapshotEntry>, SnapshotError> {
        let mut out = Vec::new();
        for e in std::fs::read_dir(&self.dir).map_err(io(&self.dir))? {
            let e = e.map_err(io(&self.dir))?;
            let id = e.file_name().to_string_lossy().into_owned();
            if id == "empty" {
                continue;
            }
            let path = e.path();
            let state = if id.starts_with("tmp-") || !path.join("meta.json").exists() {
                SnapshotState::Stray
            } else {
                match std::fs::read(path.join("meta.json")) {
                    Err(e) => SnapshotState::Damaged(format!("meta.json: {e}")),
                    Ok(bytes) => match serde_json::from_slice::<Meta>(&bytes) {
                        Err(e) => SnapshotState::Damaged(format!("meta.json: {e}")),
                        Ok(_) if !path.join("diff").is_dir() => {
                            SnapshotState::Damaged("no diff directory".to_string())
                        }
                        Ok(meta) => SnapshotState::Committed {
                            parent: meta.parent,
                        },
                    },
                }
            };
            out.push(SnapshotEntry { id, path, state });
        }
        out.sort_by(|a, b| a.id.cmp(&b.id));
        Ok(out)
    }

    /// The upper directories of the snapshots this process is writing now (its steps' `tmp-<pid>-*`): where a
    /// running step's files land, for those that read them before the step ends (compression during the build).
    pub fn writing_now(&self) -> Vec<PathBuf> {
        let prefix = format!("tmp-{}-", std::process::id());
        let Ok(entries) = std::fs::read_dir(&self.dir) else {
            return Vec::new();
        };
        let mut out: Vec<PathBuf> = entries
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().starts_with(&prefix))
            .map(|e| e.path().join("diff"))
            .collect();
        out.sort();
        out
    }

    /// Leftovers of interrupted work (`tmp-*` directories), for clean-up and `kiln doctor`.
    pub fn stray(&self) -> Result<Vec<PathBuf>, SnapshotError> {
        let mut out = Vec::new();
        for e in std::fs::read_dir(&self.dir).map_err(io(&self.dir))? {
            let e = e.map_err(io(&self.dir))?;
            if e.file_name().to_string_lossy().starts_with("tmp-") {
                out.push(e.path());
            }
        }
        Ok(out)
    }
}

/// Marks the snapshots directory as a top of directory hierarchies for ext4's allocator (`chattr +T`), so each
/// new snapshot directory is placed as a home directory is: in a block group with few directories, picked from a
/// start hashed from its (random) name, with its files near it. Without the mark a snapshot lands in the groups of
/// its parent directory, where the snapshots pruned or deleted before it were; on ext4 without a journal every
/// file created there then scans past each inode freed in the last minute (`recently_deleted`: five minutes while
/// the inode table is unwritten), a whole group per file once the group holds nothing else. Measured here: a
/// cold `COPY` of 20,000 files 14–15 s without the mark, 1.0–1.7 s with it; a Debian base unpacked in 5.7–6.0 s
/// and 0.6–0.7 s. A hint only: other filesystems (and ext4 refusing it) change nothing, so errors are ignored.
fn spread_new_snapshots(dir: &Path) {
    use rustix::fs::IFlags;
    let Ok(d) = std::fs::File::open(dir) else {
        return;
    };
    if let Ok(flags) = rustix::fs::ioctl_getflags(&d) {
        if !flags.contains(IFlags::TOPDIR) {
            let _ = rustix::fs::ioctl_setflags(&d, flags | IFlags::TOPDIR);
        }
    }
}

/// One entry of the snapshot directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnapshotEntry {
    /// Its name: a snapshot id, or `tmp-<id>` for work in progress.
    pub id: String,
    /// Its directory.
    pub path: PathBuf,
    /// What it is.
    pub state: SnapshotState,
}

/// What a directory of the snapshot store holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SnapshotState {
    /// A committed snapshot on top of `parent` (which a healthy store also holds).
    Committed {
        /// The parent snapshot.
        parent: Option<String>,
    },
    /// Work in progress, or what an interrupted step left: nothing refers to it.
    Stray,
    /// Committed once, but unreadable now.
    Damaged(String),
}

/// fsyncs every file and directory of a tree (what a crash must not lose once a snapshot is committed).
/// Past this many files, one `syncfs` of the filesystem is cheaper than an `fsync` per file: each fsync is a journal
/// commit (20,000 small files took 4.6 s one by one and 0.36 s with one syncfs here), while syncfs also waits for
/// other writers' dirty data, which only matters when the tree is small.
const SYNC_EACH_UP_TO: usize = 256;

/// Makes every file and directory under `dir` durable.
fn sync_tree(dir: &Path) -> Result<(), SnapshotError> {
    let mut files = Vec::new();
    let mut dirs = vec![dir.to_path_buf()];
    let mut i = 0;
    while i < dirs.len() {
        let d = dirs[i].clone();
        i += 1;
        for e in std::fs::read_dir(&d).map_err(io(&d))? {
            let e = e.map_err(io(&d))?;
            let ft = e.file_type().map_err(io(&d))?;
            if ft.is_dir() {
                dirs.push(e.path());
            } else if ft.is_file() {
                files.push(e.path());
            }
            if files.len() + dirs.len() > SYNC_EACH_UP_TO {
                let f = std::fs::File::open(dir).map_err(io(dir))?;
                return rustix::fs::syncfs(&f).map_err(|e| io(dir)(e.into()));
            }
        }
    }
    for p in files.iter().chain(dirs.iter().rev()) {
        std::fs::File::open(p)
            .and_then(|f| f.sync_all())
            .map_err(io(p))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests;
