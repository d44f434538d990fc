//! Where kiln keeps its state: `--root`, else KILN_ROOT, else /var/lib/kiln for root and $XDG_DATA_HOME/kiln
//! (or ~/.local/share/kiln) for other users.

use std::path::{Path, PathBuf};

use crate::cli::RootArgs;

/// The root directory for this invocation, made (when missing) and kept private to its owner (see [`secure`]).
pub fn root_dir(args: &RootArgs) -> PathBuf {
    let dir = locate(args);
    secure(&dir, true);
    dir
}

/// The root directory for a command that must find one there (`kiln doctor`): never made, but tightened.
pub fn existing_root_dir(args: &RootArgs) -> PathBuf {
    let dir = locate(args);
    secure(&dir, false);
    dir
}

/// Where the root is, by `--root`, KILN_ROOT or the user's default.
fn locate(args: &RootArgs) -> PathBuf {
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

/// Makes the root a directory that only its owner can enter (0700), whatever the umask, and tightens a root that
/// an earlier kiln left open, saying so once. A root holds what steps made (setuid binaries, device nodes from
/// base images and archives, build-arg values in cache records): were it open, any local user could run a
/// step's setuid-root binary from its snapshot (Docker's CVE-2021-41091 is this class). Nothing inside the root
/// needs other users: the sandbox mounts the step's overlay and binds before it drops to the step's user, and
/// mounts are reached through the step's own root, not through this path.
fn secure(dir: &Path, create: bool) {
    use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
    if create {
        if let Some(parent) = dir.parent().filter(|p| !p.as_os_str().is_empty()) {
            // Parents keep the umask's modes: they may be shared directories (~/.local/share, /var/lib).
            let _ = std::fs::create_dir_all(parent);
        }
        let _ = std::fs::DirBuilder::new().mode(0o700).create(dir);
    }
    let Ok(md) = std::fs::metadata(dir) else {
        return;
    };
    let mode = md.permissions().mode() & 0o7777;
    if mode & 0o077 == 0 {
        return;
    }
    match std::fs::set_permissions(dir, std::fs::Permissions::from_mode(mode & 0o7700)) {
        Ok(()) => eprintln!(
            "kiln: the root {} was open to other users (mode {mode:04o}); it is now {:04o}, so that no other \
             user can reach the files builds made",
            dir.display(),
            mode & 0o7700
        ),
        Err(e) => eprintln!(
            "warning: the root {} is open to other users (mode {mode:04o}) and could not be tightened: {e}",
            dir.display()
        ),
    }
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
