//! Layer apply on real tars, hostile ones included.

use std::io::Write;
use std::os::unix::fs::{FileTypeExt, MetadataExt};

use super::*;

fn tar_of(entries: &[(&str, tar::EntryType, &[u8], Option<&str>)]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for (name, kind, data, link) in entries {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(*kind);
        h.set_mode(if kind.is_dir() { 0o755 } else { 0o644 });
        h.set_uid(1000);
        h.set_gid(1000);
        h.set_mtime(1_000_000);
        h.set_size(data.len() as u64);
        if let Some(l) = link {
            h.set_link_name(l).unwrap();
        }
        // Bypass the builder's path checks to be able to write hostile names.
        let name_bytes = name.as_bytes();
        h.as_old_mut().name[..name_bytes.len()].copy_from_slice(name_bytes);
        h.set_cksum();
        b.append(&h, *data).unwrap();
    }
    b.into_inner().unwrap()
}

fn gz(bytes: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    e.write_all(bytes).unwrap();
    e.finish().unwrap()
}

use tar::EntryType::{Directory as D, Link as H, Regular as F, Symlink as S};

#[test]
fn applies_files_links_owners_and_whiteouts() {
    let t = tempfile::tempdir().unwrap();
    let layer = tar_of(&[
        ("etc/", D, b"", None),
        ("etc/passwd", F, b"root:x:0:0\n", None),
        ("etc/hard", H, b"", Some("etc/passwd")),
        ("etc/soft", S, b"", Some("passwd")),
        ("etc/.wh.old", F, b"", None),
        ("var/.wh..wh..opq", F, b"", None),
    ]);
    let stats = apply_layer(&gz(&layer)[..], t.path(), Whiteouts::Overlay).unwrap();
    assert_eq!(stats.entries, 6);
    let m = std::fs::metadata(t.path().join("etc/passwd")).unwrap();
    assert_eq!(
        (m.uid(), m.mode() & 0o777, m.mtime()),
        (1000, 0o644, 1_000_000)
    );
    assert_eq!(
        m.ino(),
        std::fs::metadata(t.path().join("etc/hard")).unwrap().ino()
    );
    assert_eq!(
        std::fs::read_link(t.path().join("etc/soft")).unwrap(),
        PathBuf::from("passwd")
    );
    let wh = std::fs::symlink_metadata(t.path().join("etc/old")).unwrap();
    assert!(wh.file_type().is_char_device() && wh.rdev() == 0);
    let mut opaque = [0u8; 4];
    let n = rustix::fs::getxattr(
        t.path().join("var"),
        "trusted.overlay.opaque",
        &mut opaque[..],
    )
    .unwrap();
    assert_eq!(&opaque[..n], b"y");

    let flat = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(flat.path().join("var/junk")).unwrap();
    std::fs::write(flat.path().join("etc-old"), "x").unwrap();
    std::fs::create_dir_all(flat.path().join("etc")).unwrap();
    std::fs::write(flat.path().join("etc/old"), "x").unwrap();
    apply_layer(&layer[..], flat.path(), Whiteouts::Delete).unwrap();
    assert!(!flat.path().join("etc/old").exists());
    assert!(
        std::fs::read_dir(flat.path().join("var"))
            .unwrap()
            .next()
            .is_none(),
        "opaque dir emptied"
    );
}

#[test]
fn hostile_entries_are_refused_and_nothing_escapes() {
    let outside = tempfile::tempdir().unwrap();
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("traversal", tar_of(&[("../escape", F, b"x", None)])),
        ("absolute", tar_of(&[("/abs", F, b"x", None)])),
        (
            "hardlink out",
            tar_of(&[("h", H, b"", Some("../../etc/passwd"))]),
        ),
        (
            "truncated gzip",
            gz(&tar_of(&[("a", F, b"x", None)]))[..20].to_vec(),
        ),
    ];
    for (what, bytes) in cases {
        let t = tempfile::tempdir().unwrap();
        let target = t.path().join("root");
        std::fs::create_dir(&target).unwrap();
        assert!(
            apply_layer(&bytes[..], &target, Whiteouts::Delete).is_err(),
            "{what} must fail"
        );
        assert!(!t.path().join("escape").exists(), "{what}");
    }
    // A symlinked parent pointing outside is followed inside the target instead.
    let t = tempfile::tempdir().unwrap();
    let layer = tar_of(&[
        ("link", S, b"", Some(outside.path().to_str().unwrap())),
        ("link/pwned", F, b"x", None),
    ]);
    apply_layer(&layer[..], t.path(), Whiteouts::Delete).unwrap();
    assert!(
        std::fs::read_dir(outside.path()).unwrap().next().is_none(),
        "nothing written outside"
    );
    let bad_sum = {
        let mut b = tar_of(&[("a", F, b"x", None)]);
        b[148] = b'9';
        b
    };
    let t = tempfile::tempdir().unwrap();
    assert!(
        apply_layer(&bad_sum[..], t.path(), Whiteouts::Delete).is_err(),
        "bad checksum"
    );
}

#[test]
fn zstd_layers_are_recognised_by_content() {
    let layer = tar_of(&[("z.txt", tar::EntryType::Regular, b"zstd", None)]);
    let compressed = zstd::encode_all(&layer[..], 3).unwrap();
    let target = tempfile::tempdir().unwrap();
    apply_layer(&compressed[..], target.path(), Whiteouts::Delete).unwrap();
    assert_eq!(std::fs::read(target.path().join("z.txt")).unwrap(), b"zstd");
}

#[test]
fn a_file_replaces_whatever_stands_in_its_way_and_never_writes_through_a_symlink() {
    let outside = tempfile::tempdir().unwrap();
    std::fs::write(outside.path().join("victim"), "keep").unwrap();
    let t = tempfile::tempdir().unwrap();
    let root = t.path();
    std::os::unix::fs::symlink(outside.path().join("victim"), root.join("a")).unwrap();
    std::fs::create_dir_all(root.join("b/inner")).unwrap();
    std::fs::write(root.join("b/inner/f"), "old").unwrap();
    std::fs::write(root.join("c"), "old contents, longer than the new").unwrap();
    std::os::unix::fs::symlink(outside.path().join("new"), root.join("d")).unwrap();

    // Large enough to cross several of the read-ahead's pieces and the copy's 1 MiB buffer.
    let big: Vec<u8> = (0..3_500_000u32).map(|i| (i * 7 % 253) as u8).collect();
    let mut b = tar::Builder::new(Vec::new());
    for (name, data, mode) in [
        ("a", &b"new-a"[..], 0o644),
        ("b", &b"new-b"[..], 0o644),
        ("c", &b"new-c"[..], 0o4755),
        ("d", &b"new-d"[..], 0o644),
        ("big", &big[..], 0o600),
    ] {
        if name == "c" {
            b.append_pax_extensions([("SCHILY.xattr.user.kiln", &b"v"[..])])
                .unwrap();
        }
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(F);
        h.set_mode(mode);
        h.set_uid(1000);
        h.set_gid(1001);
        h.set_mtime(1_234_567);
        h.set_size(data.len() as u64);
        b.append_data(&mut h, name, data).unwrap();
    }
    let layer = gz(&b.into_inner().unwrap());
    apply_layer(&layer[..], root, Whiteouts::Delete).unwrap();

    assert_eq!(
        std::fs::read_to_string(outside.path().join("victim")).unwrap(),
        "keep"
    );
    assert!(
        !outside.path().join("new").exists(),
        "nothing made through a dangling symlink"
    );
    for (name, want) in [
        ("a", "new-a"),
        ("b", "new-b"),
        ("c", "new-c"),
        ("d", "new-d"),
    ] {
        let m = std::fs::symlink_metadata(root.join(name)).unwrap();
        assert!(m.is_file(), "{name} is a regular file now");
        assert_eq!(std::fs::read_to_string(root.join(name)).unwrap(), want);
        assert_eq!(
            (m.uid(), m.gid(), m.mtime()),
            (1000, 1001, 1_234_567),
            "{name}"
        );
    }
    // The set-user-ID bit survives the change of owner (which clears it), so the mode is set after it.
    let c = std::fs::metadata(root.join("c")).unwrap();
    assert_eq!(c.mode() & 0o7777, 0o4755);
    assert_eq!(std::fs::read(root.join("big")).unwrap(), big);
    // User attributes, where this filesystem keeps them.
    let probe = root.join("probe");
    std::fs::write(&probe, "").unwrap();
    if rustix::fs::setxattr(&probe, "user.probe", b"1", rustix::fs::XattrFlags::empty()).is_ok() {
        let mut v = [0u8; 4];
        let n = rustix::fs::getxattr(root.join("c"), "user.kiln", &mut v[..]).unwrap();
        assert_eq!(&v[..n], b"v");
    }
}

#[test]
fn a_gzip_layer_cut_short_inside_a_large_file_fails_and_names_no_success() {
    let big: Vec<u8> = (0..4_000_000u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    let mut b = tar::Builder::new(Vec::new());
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(F);
    h.set_mode(0o644);
    h.set_size(big.len() as u64);
    b.append_data(&mut h, "big", &big[..]).unwrap();
    let layer = gz(&b.into_inner().unwrap());
    let cut = &layer[..layer.len() * 2 / 3];
    let t = tempfile::tempdir().unwrap();
    match apply_layer(cut, t.path(), Whiteouts::Delete) {
        Err(LayerError::Malformed(_)) => {}
        other => panic!("a truncated layer must be malformed, got {other:?}"),
    }
}

#[test]
fn whiteouts_that_name_no_entry_of_their_directory_are_refused() {
    for name in ["out/.wh.", "out/.wh..", "out/.wh...", ".wh..."] {
        for how in [Whiteouts::Delete, Whiteouts::Overlay] {
            let t = tempfile::tempdir().unwrap();
            let target = t.path().join("root");
            std::fs::create_dir_all(target.join("out")).unwrap();
            std::fs::write(target.join("keep"), "k").unwrap();
            std::fs::write(t.path().join("beside"), "b").unwrap();
            let layer = tar_of(&[(name, F, b"", None)]);
            let err = apply_layer(&layer[..], &target, how).unwrap_err();
            assert!(
                matches!(err, LayerError::Unsafe { .. }),
                "{name} ({how:?}): {err}"
            );
            assert!(target.join("keep").exists(), "{name} ({how:?})");
            assert!(target.join("out").is_dir(), "{name} ({how:?})");
            assert!(t.path().join("beside").exists(), "{name} ({how:?})");
        }
    }
}

/// Needs root (a tmpfs mount); skipped otherwise.
#[test]
fn a_whiteout_never_empties_what_is_mounted_below_it() {
    let t = tempfile::tempdir().unwrap();
    let mnt = t.path().join("dir/mnt");
    std::fs::create_dir_all(&mnt).unwrap();
    if rustix::mount::mount(
        "tmpfs",
        &mnt,
        "tmpfs",
        rustix::mount::MountFlags::empty(),
        None,
    )
    .is_err()
    {
        eprintln!("skipped: mounting a tmpfs needs root");
        return;
    }
    std::fs::write(mnt.join("precious"), "p").unwrap();
    let layer = tar_of(&[(".wh.dir", F, b"", None)]);
    let r = apply_layer(&layer[..], t.path(), Whiteouts::Delete);
    let kept = mnt.join("precious").exists();
    let _ = rustix::mount::unmount(&mnt, rustix::mount::UnmountFlags::DETACH);
    assert!(r.is_err(), "removing across a mount point must fail");
    assert!(kept, "the mounted file survives");
}

#[test]
fn each_run_of_a_directory_resolves_its_parent_anew_when_a_symlink_moves_it() {
    let outside = tempfile::tempdir().unwrap();
    let t = tempfile::tempdir().unwrap();
    let root = t.path();
    // `a/s` is made a symlink (to `/b`, inside the root) between two runs of `a`'s entries, and an absolute
    // symlink `c` to the real outside directory: entries under them land inside the root, in `b` and `c`'s own
    // resolution, whatever parent the entries before them had.
    let out = outside.path().to_string_lossy().into_owned();
    let layer = tar_of(&[
        ("a/", D, b"", None),
        ("a/1", F, b"one", None),
        ("a/s", S, b"", Some("/b")),
        ("a/s/2", F, b"two", None),
        ("a/3", F, b"three", None),
        ("c", S, b"", Some(&out)),
        ("c/4", F, b"four", None),
        ("a/s/5", F, b"five", None),
    ]);
    apply_layer(&layer[..], root, Whiteouts::Overlay).unwrap();
    let read = |p: &str| std::fs::read_to_string(root.join(p)).unwrap();
    assert_eq!(read("a/1"), "one");
    assert_eq!(read("b/2"), "two");
    assert_eq!(read("a/3"), "three");
    assert_eq!(read("b/5"), "five");
    assert!(
        std::fs::read_dir(outside.path()).unwrap().next().is_none(),
        "nothing written through the absolute symlink"
    );
    assert_eq!(
        read(&format!("{}/4", out.trim_start_matches('/'))),
        "four",
        "c/4 lands at the symlink's target taken inside the root"
    );
}
