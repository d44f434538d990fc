//! Tidying after kiln processes that died (kill -9, power loss): their scratch directories and the mounts on
//! them, their half-written snapshots and blobs. Everything such a process makes is named with its pid, so a
//! later build removes what belongs to dead processes only, while other builds on the same root keep running.

use std::path::{Path, PathBuf};

/// Whether the process `pid` is gone or a zombie (a zombie runs no code and makes no mount, so what it left can
/// go; a reused pid only delays the clean-up).
pub fn dead(pid: u32) -> bool {
    if pid == std::process::id() {
        return false;
    }
    match std::fs::read_to_string(Path::new("/proc").join(pid.to_string()).join("stat")) {
        // `pid (comm) S ...`: the state follows the last ')', since comm may hold one.
        Ok(stat) => stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().next())
            .is_some_and(|state| matches!(state, "Z" | "X")),
        Err(_) => true,
    }
}

/// Mount points strictly below `dir`, deepest first.
pub fn mounts_under(dir: &Path) -> Vec<PathBuf> {
    let Ok(info) = std::fs::read_to_string("/proc/self/mountinfo") else {
        return Vec::new();
    };
    let mut out: Vec<PathBuf> = info
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .map(|p| PathBuf::from(unescape_mountinfo(p)))
        .filter(|p| p.starts_with(dir) && p != dir)
        .collect();
    out.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
    out.dedup();
    out
}

/// Undoes mountinfo's octal escapes (`\040` for a space, `\011` for a tab, `\012`, `\134`).
fn unescape_mountinfo(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let code = b
            .get(i + 1..i + 4)
            .filter(|_| b[i] == b'\\')
            .and_then(|d| std::str::from_utf8(d).ok())
            .and_then(|d| u8::from_str_radix(d, 8).ok());
        match code {
            Some(v) => {
                out.push(v);
                i += 4;
            }
            None => {
                out.push(b[i]);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Detaches every mount below `dir` (and on it), then removes it; a file is just removed. A path mounted more
/// than once (a mount stacked on another) is detached until no mount is left on it or below it: removing the
/// tree through a mount that stayed would empty the mounted directory and still leave the mount.
pub fn remove_mounted_tree(dir: &Path) -> std::io::Result<()> {
    for _ in 0..16 {
        let mut left: Vec<PathBuf> = mounts_under(dir);
        left.extend(
            mounts_under(dir.parent().unwrap_or(dir))
                .into_iter()
                .filter(|m| m == dir),
        );
        if left.is_empty() {
            break;
        }
        for m in left {
            let _ = rustix::mount::unmount(&m, rustix::mount::UnmountFlags::DETACH);
        }
    }
    if mounts_under(dir.parent().unwrap_or(dir))
        .iter()
        .any(|m| m.starts_with(dir))
    {
        return Err(std::io::Error::other(format!(
            "{} is still mounted",
            dir.display()
        )));
    }
    let removed = match std::fs::symlink_metadata(dir) {
        Ok(m) if !m.is_dir() => std::fs::remove_file(dir),
        _ => std::fs::remove_dir_all(dir),
    };
    match removed {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

/// The pid in a name kiln gives to per-process work: `<what>-<pid>-<n>` (scratch), `tmp-<pid>-<id>`
/// (snapshots), `<pid>-<n>` (ingest).
fn owner(name: &str) -> Option<u32> {
    let parts: Vec<&str> = name.split('-').collect();
    match parts.as_slice() {
        [pid, n] if n.parse::<u64>().is_ok() => pid.parse().ok(),
        ["tmp", pid, _] => pid.parse().ok(),
        [.., pid, n] if n.parse::<u64>().is_ok() => pid.parse().ok(),
        _ => None,
    }
}

/// Removes what dead kiln processes left in `root`: scratch directories under `work/` (unmounting first),
/// `tmp-` snapshots, ingest files, temporary files of index writes, half-made cache mounts, step locks no one
/// holds. Returns how many entries went.
pub fn sweep_dead(dirs: &super::WorkerDirs) -> usize {
    let mut removed = 0;
    let ingest = dirs.store.join("ingest");
    for dir in [&dirs.work, &dirs.snapshots, &ingest] {
        let Ok(entries) = std::fs::read_dir(dir) else {
            continue;
        };
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if dir == &dirs.snapshots && !name.starts_with("tmp-") {
                continue;
            }
            if owner(&name).is_some_and(dead) && remove_mounted_tree(&e.path()).is_ok() {
                removed += 1;
            }
        }
    }
    // Temporary files of atomic writes (`<name>.tmp.<pid>.<n>`, `.statcache.<pid>.<n>.tmp`, downloads'
    // `.tmp-<pid>-<n>`) and half-made cache mount directories (`<id>.tmp-<pid>-<n>`).
    for dir in [
        dirs.cache.join("records"),
        dirs.cache.join("slots"),
        dirs.cache.join("listings"),
        dirs.stat_caches.clone(),
        dirs.cache_mounts.clone(),
        dirs.downloads.clone(),
    ] {
        for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if temp_owner(&name).is_some_and(dead) && remove_mounted_tree(&e.path()).is_ok() {
                removed += 1;
            }
        }
    }
    removed + super::steplock::sweep(&dirs.cache.join("locks"))
}

/// The pid in the name of a temporary file of an atomic write, or of a cache mount directory being made.
fn temp_owner(name: &str) -> Option<u32> {
    if let Some(rest) = name
        .strip_prefix(".tmp.")
        .or_else(|| name.strip_prefix(".statcache."))
    {
        return rest.split('.').next()?.parse().ok();
    }
    let (_, rest) = name.rsplit_once(".tmp-")?;
    rest.split('-').next()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn temporary_names_say_their_owner() {
        assert_eq!(temp_owner(".tmp.123.0"), Some(123));
        assert_eq!(temp_owner(".statcache.77.3.tmp"), Some(77));
        assert_eq!(temp_owner("pip.tmp-55-2"), Some(55));
        assert_eq!(temp_owner(".tmp-56-0"), Some(56));
        assert_eq!(temp_owner("abc.json"), None);
        assert_eq!(temp_owner("pip"), None);
    }

    #[test]
    fn names_say_their_owner() {
        assert_eq!(owner("rootfs-123-4"), Some(123));
        assert_eq!(owner("cache-src-77-0"), Some(77));
        assert_eq!(owner("tmp-99-abcdef"), Some(99));
        assert_eq!(owner("4242-0"), Some(4242));
        assert_eq!(owner("abcdef"), None);
        assert_eq!(owner("tmp-abcdef"), None);
    }

    #[test]
    fn mountinfo_escapes_are_undone() {
        assert_eq!(unescape_mountinfo(r"/a\040b/c"), "/a b/c");
        assert_eq!(unescape_mountinfo(r"/tab\011x"), "/tab\tx");
        assert_eq!(unescape_mountinfo(r"/end\04"), r"/end\04");
    }

    /// A build killed while another starts may still be a zombie (not yet reaped) when the sweep runs; and a
    /// path can hold two mounts stacked. Both must go, mounts first. (Needs root for the mounts; without it only
    /// the zombie's directory is checked.)
    #[test]
    fn a_zombies_stacked_mounts_are_all_detached_and_its_work_removed() {
        let root = tempfile::tempdir().unwrap();
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let zombie = child.id();
        let stat = format!("/proc/{zombie}/stat");
        for _ in 0..500 {
            if std::fs::read_to_string(&stat).is_ok_and(|s| s.contains(") Z")) {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        assert!(dead(zombie), "a zombie counts as dead");
        let dir = root.path().join(format!("work/rootfs-{zombie}-1"));
        std::fs::create_dir_all(&dir).unwrap();
        let mount = || {
            rustix::mount::mount(
                "none",
                &dir,
                "tmpfs",
                rustix::mount::MountFlags::empty(),
                None,
            )
            .is_ok()
        };
        let mounted = mount() && mount();
        if mounted {
            std::fs::write(dir.join("in-the-top-mount"), "x").unwrap();
        }
        sweep_dead(&crate::worker::tests::dirs(root.path()));
        let still: Vec<_> = mounts_under(root.path());
        for m in &still {
            let _ = rustix::mount::unmount(m, rustix::mount::UnmountFlags::DETACH);
        }
        child.wait().unwrap();
        assert!(still.is_empty(), "mounts left: {still:?}");
        assert!(!dir.exists(), "the zombie's work directory is removed");
    }

    #[test]
    fn only_what_dead_processes_left_is_swept() {
        let root = tempfile::tempdir().unwrap();
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let gone = child.id();
        child.wait().unwrap();
        let me = std::process::id();
        for p in [
            format!("work/rootfs-{gone}-1/sub"),
            format!("work/rootfs-{me}-1"),
            format!("snapshots/tmp-{gone}-abc/diff"),
            format!("snapshots/tmp-{me}-abc/diff"),
            "snapshots/0123abcd/diff".to_string(),
        ] {
            std::fs::create_dir_all(root.path().join(p)).unwrap();
        }
        std::fs::create_dir_all(root.path().join("store/ingest")).unwrap();
        std::fs::create_dir_all(root.path().join("cache/records")).unwrap();
        std::fs::write(
            root.path().join(format!("cache/records/.tmp.{gone}.0")),
            "{",
        )
        .unwrap();
        std::fs::write(root.path().join("cache/records/abc.json"), "{}").unwrap();
        std::fs::write(root.path().join(format!("store/ingest/{gone}-3")), "x").unwrap();
        std::fs::write(root.path().join(format!("store/ingest/{me}-3")), "x").unwrap();
        let mnt = root.path().join(format!("work/rootfs-{gone}-1/sub"));
        let mounted = rustix::mount::mount(
            "none",
            &mnt,
            "tmpfs",
            rustix::mount::MountFlags::empty(),
            None,
        )
        .is_ok();
        let n = sweep_dead(&crate::worker::tests::dirs(root.path()));
        assert_eq!(n, 4);
        assert!(!root
            .path()
            .join(format!("cache/records/.tmp.{gone}.0"))
            .exists());
        assert!(root.path().join("cache/records/abc.json").exists());
        assert!(!root.path().join(format!("work/rootfs-{gone}-1")).exists());
        assert!(root.path().join(format!("work/rootfs-{me}-1")).exists());
        assert!(root.path().join(format!("snapshots/tmp-{me}-abc")).exists());
        assert!(root.path().join("snapshots/0123abcd").exists());
        assert!(root.path().join(format!("store/ingest/{me}-3")).exists());
        if mounted {
            assert!(mounts_under(root.path()).is_empty());
        }
    }
}
