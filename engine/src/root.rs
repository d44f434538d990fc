//! A kiln root: where kiln keeps its state (`--root`, else KILN_ROOT, else /var/lib/kiln for root and
//! $XDG_DATA_HOME/kiln or ~/.local/share/kiln for other users). [`Root`] alone knows the names of its folders and
//! its lock; every other part of the engine asks it for a path.

use std::path::{Path, PathBuf};

/// Why a root's lock could not be taken.
#[derive(Debug, thiserror::Error)]
#[error("{path}: {reason}")]
pub struct RootError {
    /// The file or directory that failed.
    pub path: String,
    /// The operating system's reason.
    pub reason: String,
}

/// What opening a root did to a root that other users could enter (see [`Root::open`]); the CLI says it once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Tightening {
    /// The root was open (`from`) and is now private (`to`).
    Tightened {
        /// The root.
        dir: PathBuf,
        /// Its mode before.
        from: u32,
        /// Its mode now.
        to: u32,
    },
    /// The root is open and could not be tightened.
    Failed {
        /// The root.
        dir: PathBuf,
        /// Its mode.
        mode: u32,
        /// Why chmod failed.
        reason: String,
    },
}

impl std::fmt::Display for Tightening {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Tightening::Tightened { dir, from, to } => write!(
                f,
                "kiln: the root {} was open to other users (mode {from:04o}); it is now {to:04o}, so that no other \
                 user can reach the files builds made",
                dir.display()
            ),
            Tightening::Failed { dir, mode, reason } => write!(
                f,
                "warning: the root {} is open to other users (mode {mode:04o}) and could not be tightened: {reason}",
                dir.display()
            ),
        }
    }
}

/// A kiln root directory: its layout (store, cache index, snapshots, cache mounts, scratch space, runtime state)
/// and its lock. Cloning is cheap: it is a path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Root {
    dir: PathBuf,
}

impl Root {
    /// Where the root is by default for this process (KILN_ROOT and the user's home decide; `explicit` wins).
    pub fn locate(explicit: Option<&Path>) -> PathBuf {
        if let Some(r) = explicit {
            return r.to_path_buf();
        }
        let is_root = std::fs::metadata("/proc/self")
            .map(|m| std::os::unix::fs::MetadataExt::uid(&m) == 0)
            .unwrap_or(false);
        // A rootless kiln is root only inside its own user namespace: its state stays in the user's home.
        if is_root && !crate::rootless::active() {
            return PathBuf::from("/var/lib/kiln");
        }
        if let Some(x) = std::env::var_os("XDG_DATA_HOME") {
            return PathBuf::from(x).join("kiln");
        }
        let home = std::env::var_os("HOME")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from("."));
        home.join(".local/share/kiln")
    }

    /// Opens (creating) the root at `dir`, made private to its owner (see [`secure`]); what was tightened, if
    /// anything, is returned for the caller to report.
    pub fn open(dir: impl Into<PathBuf>) -> (Root, Option<Tightening>) {
        let dir = dir.into();
        let tightened = secure(&dir);
        (Root { dir }, tightened)
    }

    /// A root at `dir` as it is, created or tightened by no one (for checks that must not change it).
    pub fn at(dir: impl Into<PathBuf>) -> Root {
        Root { dir: dir.into() }
    }

    /// The root directory itself.
    pub fn path(&self) -> &Path {
        &self.dir
    }

    /// The content store: blobs, the image index, layer memos.
    pub fn store(&self) -> PathBuf {
        self.dir.join("store")
    }

    /// The build cache index (records, slots, step locks, imported-layer memos).
    pub fn cache(&self) -> PathBuf {
        self.dir.join("cache")
    }

    /// Snapshots (overlay upper directories with their parents).
    pub fn snapshots(&self) -> PathBuf {
        self.dir.join("snapshots")
    }

    /// `RUN --mount=type=cache` directories, by mount id's digest.
    pub fn cache_mounts(&self) -> PathBuf {
        self.dir.join("cachemounts")
    }

    /// The directory of the cache mount `id`.
    pub fn cache_mount(&self, id: &str) -> PathBuf {
        self.cache_mounts()
            .join(oci::Digest::sha256_of(id.as_bytes()).hex())
    }

    /// The context stat caches (what a context's files looked like when last hashed).
    pub fn stat_caches(&self) -> PathBuf {
        self.dir.join("statcache")
    }

    /// The GC's last exact measure of the build cache and of the free space beside it, from which it estimates,
    /// with one statvfs, whether a build crossed the policy (see `gc::auto_gc`).
    pub fn gc_estimate(&self) -> PathBuf {
        self.dir.join("gc-estimate.json")
    }

    /// Kept `ADD <url>` downloads.
    pub fn downloads(&self) -> PathBuf {
        self.dir.join("downloads")
    }

    /// Scratch space of running steps (rootfs mounts, views, staged contexts).
    pub fn work(&self) -> PathBuf {
        self.dir.join("work")
    }

    /// The OCI runtime's state, bundles and secrets.
    pub fn runtime(&self) -> PathBuf {
        self.dir.join("runc")
    }

    /// The worker's directories in this root.
    pub fn worker_dirs(&self) -> solver::worker::WorkerDirs {
        solver::worker::WorkerDirs {
            snapshots: self.snapshots(),
            cache: self.cache(),
            store: self.store(),
            work: self.work(),
            cache_mounts: self.cache_mounts(),
            stat_caches: self.stat_caches(),
            downloads: self.downloads(),
        }
    }

    /// The lock file builds share and prunes take alone.
    fn lock_file(&self) -> PathBuf {
        self.dir.join("gc.lock")
    }

    /// The tag this root's builds give their step ids (cgroups, network namespaces), so that host leftovers can be
    /// traced to the root whose build left them.
    pub fn owner_tag(&self) -> String {
        let canonical = std::fs::canonicalize(&self.dir).unwrap_or_else(|_| self.dir.clone());
        oci::Digest::sha256_of(canonical.to_string_lossy().as_bytes()).hex()[..10].to_string()
    }

    fn open_lock(&self) -> Result<std::fs::File, RootError> {
        std::fs::create_dir_all(&self.dir).map_err(|e| RootError {
            path: self.dir.display().to_string(),
            reason: e.to_string(),
        })?;
        let p = self.lock_file();
        std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&p)
            .map_err(|e| RootError {
                path: p.display().to_string(),
                reason: e.to_string(),
            })
    }

    /// Takes the root's lock, shared (a build) or exclusive (a prune); waits while the other kind is held.
    pub fn lock(&self, exclusive: bool) -> Result<RootLock, RootError> {
        let file = self.open_lock()?;
        let op = if exclusive {
            rustix::fs::FlockOperation::LockExclusive
        } else {
            rustix::fs::FlockOperation::LockShared
        };
        rustix::fs::flock(&file, op).map_err(|e| RootError {
            path: format!("{}/gc.lock", self.dir.display()),
            reason: e.to_string(),
        })?;
        Ok(RootLock { _file: file })
    }

    /// The exclusive lock if no build holds the root now (automatic GC runs only then).
    pub fn try_lock_exclusive(&self) -> Option<RootLock> {
        let file = self.open_lock().ok()?;
        rustix::fs::flock(&file, rustix::fs::FlockOperation::NonBlockingLockExclusive).ok()?;
        Some(RootLock { _file: file })
    }
}

/// A lock on a root: builds hold it shared for their whole run, `kiln prune` exclusively, so a prune waits for
/// running builds and never removes what one of them holds (and a build waits for a prune in progress).
pub struct RootLock {
    _file: std::fs::File,
}

/// Makes the root a directory that only its owner can enter (0700), whatever the umask, and tightens a root that
/// an earlier kiln left open. A root holds what steps made (setuid binaries, device nodes from base images and
/// archives, build-arg values in cache records): were it open, any local user could run a step's setuid-root
/// binary from its snapshot (Docker's CVE-2021-41091 is this class). Nothing inside the root needs other users:
/// the sandbox mounts the step's overlay and binds before it drops to the step's user, and mounts are reached
/// through the step's own root, not through this path.
fn secure(dir: &Path) -> Option<Tightening> {
    use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
    if let Some(parent) = dir.parent().filter(|p| !p.as_os_str().is_empty()) {
        // Parents keep the umask's modes: they may be shared directories (~/.local/share, /var/lib).
        let _ = std::fs::create_dir_all(parent);
    }
    let _ = std::fs::DirBuilder::new().mode(0o700).create(dir);
    let md = std::fs::metadata(dir).ok()?;
    let mode = md.permissions().mode() & 0o7777;
    if mode & 0o077 == 0 {
        return None;
    }
    Some(
        match std::fs::set_permissions(dir, std::fs::Permissions::from_mode(mode & 0o7700)) {
            Ok(()) => Tightening::Tightened {
                dir: dir.to_path_buf(),
                from: mode,
                to: mode & 0o7700,
            },
            Err(e) => Tightening::Failed {
                dir: dir.to_path_buf(),
                mode,
                reason: e.to_string(),
            },
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_open_root_is_tightened_once() {
        use std::os::unix::fs::PermissionsExt;
        let d = tempfile::tempdir().unwrap();
        let dir = d.path().join("root");
        std::fs::create_dir(&dir).unwrap();
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
        let (root, t) = Root::open(&dir);
        assert!(matches!(
            t,
            Some(Tightening::Tightened {
                from: 0o755,
                to: 0o700,
                ..
            })
        ));
        assert_eq!(Root::open(&dir).1, None, "said once");
        assert_eq!(root.store(), dir.join("store"));
    }
}
