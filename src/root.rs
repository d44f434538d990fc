//! Where kiln keeps its state: `--root`, else KILN_ROOT, else /var/lib/kiln for root and $XDG_DATA_HOME/kiln
//! (or ~/.local/share/kiln) for other users.

use std::path::{Path, PathBuf};

use crate::cli::RootArgs;

/// The root directory for this invocation.
pub fn root_dir(args: &RootArgs) -> PathBuf {
    if let Some(r) = &args.root {
        return r.clone();
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

/// A lock on a root: builds hold it shared for their whole run, `kiln prune` exclusively, so a prune waits for
/// running builds and never removes what one of them holds (and a build waits for a prune in progress).
pub struct RootLock {
    _file: std::fs::File,
}

fn open_lock(root: &Path) -> Result<std::fs::File, String> {
    std::fs::create_dir_all(root).map_err(|e| format!("{}: {e}", root.display()))?;
    let p = root.join("gc.lock");
    std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&p)
        .map_err(|e| format!("{}: {e}", p.display()))
}

/// Takes the root's lock, shared (a build) or exclusive (a prune); waits while the other kind is held.
pub fn lock(root: &Path, exclusive: bool) -> Result<RootLock, String> {
    let file = open_lock(root)?;
    let op = if exclusive {
        rustix::fs::FlockOperation::LockExclusive
    } else {
        rustix::fs::FlockOperation::LockShared
    };
    rustix::fs::flock(&file, op).map_err(|e| format!("{}/gc.lock: {e}", root.display()))?;
    Ok(RootLock { _file: file })
}

/// The exclusive lock if no build holds the root now (automatic GC runs only then).
pub fn try_lock_exclusive(root: &Path) -> Option<RootLock> {
    let file = open_lock(root).ok()?;
    rustix::fs::flock(&file, rustix::fs::FlockOperation::NonBlockingLockExclusive).ok()?;
    Some(RootLock { _file: file })
}
