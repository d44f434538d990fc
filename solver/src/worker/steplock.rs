//! One step computed once across kiln processes sharing a root: a build about to run a step takes an exclusive
//! lock named by its cache key, and once it holds it looks in the cache again — if another build just finished
//! the same step, the result is reused instead of made twice (BuildKit does the same inside its one daemon).
//! The lock file is removed by its holder before unlocking; a waiter that then holds a lock on a removed file
//! sees the inode change and tries again, so no two holders ever coexist.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use rustix::fs::FlockOperation;

/// A held step lock; dropping it releases it.
#[derive(Debug)]
pub struct StepLock {
    path: PathBuf,
    _file: std::fs::File,
}

impl Drop for StepLock {
    fn drop(&mut self) {
        // Removed while still locked: a waiter that opens the path next makes a new file.
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Why no lock was taken.
#[derive(Debug)]
pub enum LockError {
    /// The build was cancelled while waiting.
    Cancelled,
    /// The lock file could not be opened.
    Io(std::io::Error),
}

/// Takes the lock `dir/<name>.lock`, waiting (and checking `cancelled` every few milliseconds) while another
/// process or thread holds it.
pub fn acquire(
    dir: &Path,
    name: &str,
    cancelled: &dyn Fn() -> bool,
) -> Result<StepLock, LockError> {
    std::fs::create_dir_all(dir).map_err(LockError::Io)?;
    let path = dir.join(format!("{name}.lock"));
    loop {
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(LockError::Io)?;
        let mut wait = Duration::from_millis(1);
        loop {
            match rustix::fs::flock(&file, FlockOperation::NonBlockingLockExclusive) {
                Ok(()) => break,
                Err(rustix::io::Errno::WOULDBLOCK) | Err(rustix::io::Errno::INTR) => {
                    if cancelled() {
                        return Err(LockError::Cancelled);
                    }
                    std::thread::sleep(wait);
                    wait = (wait * 2).min(Duration::from_millis(20));
                }
                Err(e) => return Err(LockError::Io(e.into())),
            }
        }
        let held = file.metadata().map_err(LockError::Io)?;
        match std::fs::metadata(&path) {
            Ok(now) if now.ino() == held.ino() && now.dev() == held.dev() => {
                return Ok(StepLock { path, _file: file })
            }
            // The previous holder removed the file after we opened it: lock the new one.
            _ => continue,
        }
    }
}

/// Removes the lock files in `dir` that no one holds (a holder killed with -9 leaves its file behind). Safe
/// while others lock: a file is removed only under its own lock, as a holder would.
pub fn sweep(dir: &Path) -> usize {
    let mut removed = 0;
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = e.path();
        let Ok(file) = std::fs::OpenOptions::new().write(true).open(&path) else {
            continue;
        };
        if rustix::fs::flock(&file, FlockOperation::NonBlockingLockExclusive).is_err() {
            continue;
        }
        let same = match (file.metadata(), std::fs::metadata(&path)) {
            (Ok(a), Ok(b)) => a.ino() == b.ino() && a.dev() == b.dev(),
            _ => false,
        };
        if same && std::fs::remove_file(&path).is_ok() {
            removed += 1;
        }
    }
    removed
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    #[test]
    fn holders_never_overlap_and_the_file_goes_with_the_last() {
        let dir = tempfile::tempdir().unwrap();
        let inside = Arc::new(AtomicUsize::new(0));
        let most = Arc::new(AtomicUsize::new(0));
        let threads: Vec<_> = (0..8)
            .map(|_| {
                let (dir, inside, most) = (dir.path().to_path_buf(), inside.clone(), most.clone());
                std::thread::spawn(move || {
                    for _ in 0..20 {
                        let _l = acquire(&dir, "k", &|| false).unwrap();
                        let n = inside.fetch_add(1, Ordering::SeqCst) + 1;
                        most.fetch_max(n, Ordering::SeqCst);
                        std::thread::sleep(Duration::from_micros(200));
                        inside.fetch_sub(1, Ordering::SeqCst);
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        assert_eq!(most.load(Ordering::SeqCst), 1, "one holder at a time");
        assert!(!dir.path().join("k.lock").exists());
    }

    #[test]
    fn only_files_no_one_holds_are_swept() {
        let dir = tempfile::tempdir().unwrap();
        let held = acquire(dir.path(), "held", &|| false).unwrap();
        std::fs::write(dir.path().join("left.lock"), "").unwrap();
        assert_eq!(sweep(dir.path()), 1);
        assert!(dir.path().join("held.lock").exists());
        drop(held);
        assert!(!dir.path().join("held.lock").exists());
    }

    #[test]
    fn a_cancelled_waiter_gives_up() {
        let dir = tempfile::tempdir().unwrap();
        let _held = acquire(dir.path(), "k", &|| false).unwrap();
        let err = acquire(dir.path(), "k", &|| true).unwrap_err();
        assert!(matches!(err, LockError::Cancelled));
    }
}
