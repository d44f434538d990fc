//! `RUN --mount=type=cache` directories and their sharing modes, as BuildKit defines them: `shared` steps use
//! the one directory at once; `locked` steps take turns with every other user of it; `private` steps use it when
//! nobody else does and otherwise a directory of their own (`<id>-1`, `<id>-2`, … kept for later private users).
//! Turns are taken with flock(2) on the directory itself, so they hold across steps, across builds sharing a
//! root, and vanish with a killed process. A shared user waits only while a locked or private user holds it.
//! A fresh directory gets its uid, gid and mode, and with `from=` the contents of `source` in that stage.

use std::fs::File;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

use crate::llb::CacheSharing;
use crate::scheduler::CancelToken;

use super::WorkerError;

/// A cache directory held for one step; its turn ends when this drops.
pub(super) struct Lease {
    /// The directory to mount.
    pub dir: PathBuf,
    _lock: File,
}

fn io(path: &Path) -> impl Fn(std::io::Error) -> WorkerError + '_ {
    move |source| WorkerError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Takes `op` (LOCK_SH or LOCK_EX) on `f`, waiting (and watching `cancel`) unless `wait` is false; false when
/// it is held elsewhere and not waited for.
fn lock(f: &File, op: libc::c_int, wait: bool, cancel: &CancelToken) -> Result<bool, WorkerError> {
    loop {
        // SAFETY: flock on a descriptor this function borrows.
        if unsafe { libc::flock(f.as_raw_fd(), op | libc::LOCK_NB) } == 0 {
            return Ok(true);
        }
        let e = std::io::Error::last_os_error();
        if e.raw_os_error() != Some(libc::EWOULDBLOCK) {
            return Err(WorkerError::Io {
                path: PathBuf::from("cache mount lock"),
                source: e,
            });
        }
        if !wait {
            return Ok(false);
        }
        if cancel.is_cancelled() {
            return Err(WorkerError::Cancelled);
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

/// rename(2) that fails with EEXIST instead of replacing `to`.
fn rename_noreplace(from: &Path, to: &Path) -> std::io::Result<()> {
    use std::os::unix::ffi::OsStrExt;
    let c = |p: &Path| {
        std::ffi::CString::new(p.as_os_str().as_bytes())
            .map_err(|_| std::io::Error::from(std::io::ErrorKind::InvalidInput))
    };
    let (from, to) = (c(from)?, c(to)?);
    // SAFETY: two NUL-terminated paths relative to the working directory.
    let r = unsafe {
        libc::syscall(
            libc::SYS_renameat2,
            libc::AT_FDCWD,
            from.as_ptr(),
            libc::AT_FDCWD,
            to.as_ptr(),
            libc::RENAME_NOREPLACE,
        )
    };
    if r == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// Opens (making it first, through `init`, when missing) the cache directory `dir`.
fn open(dir: &Path, init: &dyn Fn(&Path) -> Result<(), WorkerError>) -> Result<File, WorkerError> {
    if !dir.exists() {
        // Made under a temporary name and renamed, so a half-initialised directory is never used.
        static SEQ: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let seq = SEQ.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let tmp = dir.with_extension(format!("tmp-{}-{seq}", std::process::id()));
        let _ = std::fs::remove_dir_all(&tmp);
        std::fs::create_dir_all(&tmp).map_err(io(&tmp))?;
        init(&tmp)?;
        // Never over another's: a plain rename replaces an empty directory, so two steps making the same new
        // cache at once would each lock a directory of their own.
        if let Err(e) = rename_noreplace(&tmp, dir) {
            let _ = std::fs::remove_dir_all(&tmp);
            // Another step or build made it first: use theirs.
            if !dir.is_dir() {
                return Err(io(dir)(e));
            }
        }
    }
    File::open(dir).map_err(io(dir))
}

/// Sets the cache whose first directory is `base` aside, so that the next user makes it anew (its directories
/// kept for private users go too). A directory a locked or private step holds right now is left to the sweep
/// (its name carries this process's id), not removed under it.
pub(super) fn start_afresh(base: &Path) -> Result<(), WorkerError> {
    static SEQ: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let name = base.file_name().unwrap_or_default().to_string_lossy();
    let parent = base.parent().unwrap_or(Path::new("."));
    let mut dirs = vec![base.to_path_buf()];
    for n in 1.. {
        let d = base.with_file_name(format!("{name}-{n}"));
        if !d.exists() {
            break;
        }
        dirs.push(d);
    }
    for dir in dirs {
        let seq = SEQ.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        // A name the sweep removes once this process is gone, should the removal below stop half-way.
        let aside = parent.join(format!(
            "{}.tmp-{}-old{seq}",
            dir.file_name().unwrap_or_default().to_string_lossy(),
            std::process::id()
        ));
        match std::fs::rename(&dir, &aside) {
            Ok(()) => {
                let free = File::open(&aside).ok().is_some_and(|f| {
                    lock(&f, libc::LOCK_EX, false, &CancelToken::default()).unwrap_or(false)
                });
                if free {
                    let _ = std::fs::remove_dir_all(&aside);
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(io(&dir)(e)),
        }
    }
    Ok(())
}

/// The directory a step with `sharing` mounts for the cache whose first directory is `base`.
pub(super) fn acquire(
    base: &Path,
    sharing: CacheSharing,
    cancel: &CancelToken,
    init: &dyn Fn(&Path) -> Result<(), WorkerError>,
) -> Result<Lease, WorkerError> {
    match sharing {
        // As BuildKit: shared users never wait, not even for a locked one; locked users take turns among
        // themselves (and with a private user holding the first directory).
        CacheSharing::Shared => Ok(Lease {
            dir: base.to_path_buf(),
            _lock: open(base, init)?,
        }),
        CacheSharing::Locked => {
            let f = open(base, init)?;
            lock(&f, libc::LOCK_EX, true, cancel)?;
            Ok(Lease {
                dir: base.to_path_buf(),
                _lock: f,
            })
        }
        CacheSharing::Private => {
            for n in 0.. {
                let dir = if n == 0 {
                    base.to_path_buf()
                } else {
                    let name = base.file_name().unwrap_or_default().to_string_lossy();
                    base.with_file_name(format!("{name}-{n}"))
                };
                let f = open(&dir, init)?;
                if lock(&f, libc::LOCK_EX, false, cancel)? {
                    return Ok(Lease { dir, _lock: f });
                }
            }
            unreachable!("the loop above returns")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn none(_: &Path) -> Result<(), WorkerError> {
        Ok(())
    }

    #[test]
    fn private_users_get_their_own_directory_only_while_it_is_taken() {
        let d = tempfile::tempdir().unwrap();
        let base = d.path().join("c");
        let cancel = CancelToken::default();
        let a = acquire(&base, CacheSharing::Private, &cancel, &none).unwrap();
        let b = acquire(&base, CacheSharing::Private, &cancel, &none).unwrap();
        assert_eq!(a.dir, base);
        assert_eq!(b.dir, d.path().join("c-1"));
        drop(a);
        let c = acquire(&base, CacheSharing::Private, &cancel, &none).unwrap();
        assert_eq!(c.dir, base, "a free directory is reused");
    }

    #[test]
    fn locked_users_take_turns_and_shared_ones_never_wait() {
        let d = tempfile::tempdir().unwrap();
        let base = d.path().join("c");
        let cancel = CancelToken::default();
        let s1 = acquire(&base, CacheSharing::Shared, &cancel, &none).unwrap();
        let s2 = acquire(&base, CacheSharing::Shared, &cancel, &none).unwrap();
        assert_eq!(s1.dir, s2.dir, "shared users use one directory at once");
        // Shared users hold nothing a locked user waits for, and the other way round (BuildKit's semantics).
        let l1 = acquire(&base, CacheSharing::Locked, &cancel, &none).unwrap();
        let s3 = acquire(&base, CacheSharing::Shared, &cancel, &none).unwrap();
        assert_eq!(s3.dir, l1.dir);
        drop((s1, s2, s3));
        let order = std::sync::Mutex::new(Vec::new());
        std::thread::scope(|s| {
            s.spawn(|| {
                let l = acquire(&base, CacheSharing::Locked, &cancel, &none).unwrap();
                order.lock().unwrap().push("second locked");
                drop(l);
            });
            std::thread::sleep(std::time::Duration::from_millis(200));
            order.lock().unwrap().push("first locked done");
            drop(l1);
        });
        assert_eq!(
            *order.lock().unwrap(),
            ["first locked done", "second locked"]
        );
        // A waiting step is released by cancellation.
        let held = acquire(&base, CacheSharing::Locked, &cancel, &none).unwrap();
        cancel.cancel();
        assert!(matches!(
            acquire(&base, CacheSharing::Locked, &cancel, &none),
            Err(WorkerError::Cancelled)
        ));
        drop(held);
    }

    #[test]
    fn steps_making_one_new_cache_at_once_share_one_directory() {
        let d = tempfile::tempdir().unwrap();
        let base = d.path().join("c");
        let cancel = CancelToken::default();
        let order = std::sync::Mutex::new(Vec::new());
        let slow_init = |_: &Path| -> Result<(), WorkerError> {
            std::thread::sleep(std::time::Duration::from_millis(50));
            Ok(())
        };
        std::thread::scope(|s| {
            for who in ["a", "b", "c"] {
                let (base, cancel, order, slow_init) = (&base, &cancel, &order, &slow_init);
                s.spawn(move || {
                    let l = acquire(base, CacheSharing::Locked, cancel, slow_init).unwrap();
                    order.lock().unwrap().push(format!("{who}-in"));
                    std::thread::sleep(std::time::Duration::from_millis(30));
                    order.lock().unwrap().push(format!("{who}-out"));
                    drop(l);
                });
            }
        });
        let order = order.into_inner().unwrap();
        for pair in order.chunks(2) {
            assert_eq!(
                pair[1],
                pair[0].replace("-in", "-out"),
                "took turns: {order:?}"
            );
        }
        let left: Vec<_> = std::fs::read_dir(d.path()).unwrap().flatten().collect();
        assert_eq!(left.len(), 1, "one directory, no temporary left: {left:?}");
    }

    #[test]
    fn a_cache_started_afresh_is_made_anew() {
        let d = tempfile::tempdir().unwrap();
        let base = d.path().join("c");
        let cancel = CancelToken::default();
        let held = acquire(&base, CacheSharing::Private, &cancel, &none).unwrap();
        let other = acquire(&base, CacheSharing::Private, &cancel, &none).unwrap();
        std::fs::write(base.join("old"), "1").unwrap();
        drop(other);
        start_afresh(&base).unwrap();
        let again = acquire(&base, CacheSharing::Shared, &cancel, &none).unwrap();
        assert!(!again.dir.join("old").exists());
        assert!(!d.path().join("c-1").exists());
        // The held directory waits for the sweep; the free one is gone.
        drop(held);
        let left: Vec<_> = std::fs::read_dir(d.path())
            .unwrap()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(left.len(), 2, "{left:?}");
    }

    #[test]
    fn a_fresh_directory_is_initialised_once() {
        let d = tempfile::tempdir().unwrap();
        let base = d.path().join("c");
        let cancel = CancelToken::default();
        let seed = |p: &Path| -> Result<(), WorkerError> {
            std::fs::write(p.join("seed"), "1").map_err(io(p))
        };
        drop(acquire(&base, CacheSharing::Shared, &cancel, &seed).unwrap());
        std::fs::write(base.join("seed"), "changed").unwrap();
        drop(acquire(&base, CacheSharing::Shared, &cancel, &seed).unwrap());
        assert_eq!(
            std::fs::read_to_string(base.join("seed")).unwrap(),
            "changed"
        );
    }
}
