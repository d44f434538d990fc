//! Snapshots on a real overlayfs (needs root, as kiln's builds do).

use std::os::unix::fs::{FileTypeExt, MetadataExt};

use super::*;

fn is_root() -> bool {
    std::fs::metadata("/proc/self")
        .map(|m| std::os::unix::fs::MetadataExt::uid(&m) == 0)
        .unwrap_or(false)
}

/// A snapshotter in a fresh directory and an empty mount point beside it.
fn fixture() -> (tempfile::TempDir, Snapshotter, std::path::PathBuf) {
    assert!(
        is_root(),
        "snapshot tests need root (kiln mounts overlayfs)"
    );
    let d = tempfile::tempdir().unwrap();
    let s = Snapshotter::open(&d.path().join("snapshots")).unwrap();
    let mnt = d.path().join("mnt");
    std::fs::create_dir(&mnt).unwrap();
    (d, s, mnt)
}

#[test]
fn layers_hold_exactly_their_changes() {
    let (_dir, s, mnt) = fixture();

    let base = s.prepare(None).unwrap();
    let m = s.mount(&base, &mnt).unwrap();
    std::fs::create_dir(mnt.join("etc")).unwrap();
    std::fs::write(mnt.join("etc/keep"), "k").unwrap();
    std::fs::write(mnt.join("etc/gone"), "g").unwrap();
    m.unmount().unwrap();
    let base_id = s.commit(base).unwrap();

    let top = s.prepare(Some(&base_id)).unwrap();
    let m = s.mount(&top, &mnt).unwrap();
    assert_eq!(std::fs::read_to_string(mnt.join("etc/keep")).unwrap(), "k");
    std::fs::remove_file(mnt.join("etc/gone")).unwrap();
    std::fs::write(mnt.join("new"), "n").unwrap();
    drop(m);
    let diff = top.diff_dir();
    let whiteout = std::fs::symlink_metadata(diff.join("etc/gone")).unwrap();
    assert!(
        whiteout.file_type().is_char_device() && whiteout.rdev() == 0,
        "a deletion is an overlay whiteout"
    );
    assert!(
        !diff.join("etc/keep").exists(),
        "unchanged files stay in the parent layer"
    );
    assert!(diff.join("new").exists());
    let top_id = s.commit(top).unwrap();
    assert_eq!(s.chain(&top_id).unwrap().len(), 2);

    let m = s.mount_readonly(&top_id, &mnt).unwrap();
    assert!(!mnt.join("etc/gone").exists());
    assert!(
        std::fs::write(mnt.join("x"), "x").is_err(),
        "read-only view"
    );
    drop(m);
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    assert!(
        !mounts.contains(mnt.to_str().unwrap()),
        "nothing left mounted"
    );
    assert!(s.stray().unwrap().is_empty());
}

#[test]
fn an_abandoned_snapshot_leaves_nothing() {
    let d = tempfile::tempdir().unwrap();
    let s = Snapshotter::open(d.path()).unwrap();
    let a = s.prepare(None).unwrap();
    std::fs::write(a.diff_dir().join("f"), "x").unwrap();
    drop(a);
    assert!(s.stray().unwrap().is_empty());
    assert!(matches!(
        s.prepare(Some("nope")),
        Err(SnapshotError::Missing(_))
    ));
}

#[test]
fn the_snapshots_being_written_are_listed_until_committed() {
    let d = tempfile::tempdir().unwrap();
    let s = Snapshotter::open(d.path()).unwrap();
    assert!(s.writing_now().is_empty());
    let a = s.prepare(None).unwrap();
    let b = s.prepare(None).unwrap();
    let mut want = vec![a.diff_dir(), b.diff_dir()];
    want.sort();
    assert_eq!(s.writing_now(), want);
    s.commit(a).unwrap();
    assert_eq!(s.writing_now(), vec![b.diff_dir()]);
    drop(b);
    assert!(s.writing_now().is_empty());
}

#[test]
fn the_image_a_snapshot_was_unpacked_from_is_kept_with_it() {
    let d = tempfile::tempdir().unwrap();
    let s = Snapshotter::open(d.path()).unwrap();
    let mut base = s.prepare(None).unwrap();
    base.set_unpacked_from("sha256:abc");
    let base = s.commit(base).unwrap();
    let top = s.prepare(Some(&base)).unwrap();
    let top = s.commit(top).unwrap();
    assert_eq!(s.unpacked_from(&base).as_deref(), Some("sha256:abc"));
    assert_eq!(s.unpacked_from(&top), None, "a step's own layer");
    assert_eq!(s.unpacked_from("nope"), None);
    // Snapshots committed before the field existed read as not unpacked.
    let old = s.path(&top).join("meta.json");
    std::fs::write(&old, format!(r#"{{"parent":"{base}"}}"#)).unwrap();
    assert_eq!(s.unpacked_from(&top), None);
    assert_eq!(s.chain_ids(&top).unwrap(), [base, top]);
}

#[test]
fn a_chain_deeper_than_one_page_of_paths_still_mounts() {
    let (_dir, s, mnt) = fixture();
    // 120 layers of ~100-byte paths: three times what the kernel's one page of options holds.
    let mut parent: Option<String> = None;
    for i in 0..120 {
        let a = s.prepare(parent.as_deref()).unwrap();
        std::fs::write(a.diff_dir().join(format!("f{i}")), i.to_string()).unwrap();
        parent = Some(s.commit(a).unwrap());
    }
    let top = parent.unwrap();
    let next = s.prepare(Some(&top)).unwrap();
    let m = s.mount(&next, &mnt).unwrap();
    assert_eq!(std::fs::read_to_string(mnt.join("f0")).unwrap(), "0");
    assert_eq!(std::fs::read_to_string(mnt.join("f119")).unwrap(), "119");
    std::fs::write(mnt.join("top"), "t").unwrap();
    m.unmount().unwrap();
    assert!(next.diff_dir().join("top").exists());
    let m = s.mount_readonly(&top, &mnt).unwrap();
    assert_eq!(std::fs::read_to_string(mnt.join("f60")).unwrap(), "60");
    drop(m);
}

#[test]
fn a_chain_is_read_from_disk_once_and_forgotten_with_what_is_removed() {
    let (dir, s, _mnt) = fixture();
    let mut parent = None;
    let mut ids = Vec::new();
    for _ in 0..3 {
        let a = s.prepare(parent.as_deref()).unwrap();
        let id = s.commit(a).unwrap();
        parent = Some(id.clone());
        ids.push(id);
    }
    assert_eq!(s.chain_ids(&ids[2]).unwrap(), ids);
    // Walked once, the chain no longer reads the ancestors' meta.json (committed snapshots never change)...
    std::fs::write(
        dir.path().join("snapshots").join(&ids[0]).join("meta.json"),
        "garbage",
    )
    .unwrap();
    assert_eq!(s.chain_ids(&ids[2]).unwrap(), ids);
    assert_eq!(
        s.clone().chain(&ids[1]).unwrap().len(),
        2,
        "clones share what was read"
    );
    // ...while a snapshotter that never read it does.
    let fresh = Snapshotter::open(&dir.path().join("snapshots")).unwrap();
    assert!(fresh.chain_ids(&ids[2]).is_err());
    // A removed snapshot is forgotten.
    s.remove(&ids[2]).unwrap();
    assert!(matches!(
        s.chain_ids(&ids[2]),
        Err(SnapshotError::Missing(_))
    ));
}

#[test]
fn a_writable_mount_is_volatile_and_its_commit_is_still_whole() {
    let (_dir, s, mnt) = fixture();
    let a = s.prepare(None).unwrap();
    let m = s.mount(&a, &mnt).unwrap();
    std::fs::write(mnt.join("f"), "data").unwrap();
    let info = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    let line = info
        .lines()
        .find(|l| l.split(' ').nth(4) == Some(mnt.to_str().unwrap()))
        .expect("the overlay is mounted");
    // Kernels before 5.10 refuse the option; kiln then mounts without it (and says so nowhere else).
    if !overlay::VOLATILE_REFUSED.load(std::sync::atomic::Ordering::Relaxed) {
        assert!(line.contains("volatile"), "{line}");
    }
    m.unmount().unwrap();
    // The overlay's volatile marker lives in its work directory, which the commit removes with the rest.
    let id = s.commit(a).unwrap();
    assert_eq!(
        std::fs::read_to_string(s.diff_dir(&id).join("f")).unwrap(),
        "data"
    );
    assert!(!s.path(&id).join("work").exists());
    let b = s.prepare(Some(&id)).unwrap();
    let m = s.mount(&b, &mnt).unwrap();
    assert_eq!(std::fs::read_to_string(mnt.join("f")).unwrap(), "data");
    m.unmount().unwrap();
}

#[test]
fn the_snapshots_directory_spreads_new_snapshots_where_the_filesystem_can() {
    use rustix::fs::IFlags;
    let d = tempfile::tempdir().unwrap();
    // Whether this filesystem takes the mark at all (ext4 does; tmpfs, btrfs and xfs do not): tried on a probe.
    let probe = d.path().join("probe");
    std::fs::create_dir(&probe).unwrap();
    let takes_it = std::fs::File::open(&probe)
        .ok()
        .and_then(|f| {
            let flags = rustix::fs::ioctl_getflags(&f).ok()?;
            rustix::fs::ioctl_setflags(&f, flags | IFlags::TOPDIR).ok()?;
            Some(
                rustix::fs::ioctl_getflags(&f)
                    .ok()?
                    .contains(IFlags::TOPDIR),
            )
        })
        .unwrap_or(false);
    let dir = d.path().join("snapshots");
    let s = Snapshotter::open(&dir).unwrap();
    let flags = rustix::fs::ioctl_getflags(std::fs::File::open(&dir).unwrap()).ok();
    assert_eq!(
        flags.map(|f| f.contains(IFlags::TOPDIR)).unwrap_or(false),
        takes_it,
        "marked exactly where the filesystem takes the mark"
    );
    // Opening again keeps the mark and the store works as before.
    let s2 = Snapshotter::open(&dir).unwrap();
    let a = s.prepare(None).unwrap();
    std::fs::write(a.diff_dir().join("f"), "x").unwrap();
    let id = s.commit(a).unwrap();
    assert!(s2.exists(&id));
}
