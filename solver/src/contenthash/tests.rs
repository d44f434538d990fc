//! Checksums change exactly when what a COPY would copy changes.

use std::os::unix::fs::PermissionsExt;

use super::*;

fn ctx() -> tempfile::TempDir {
    let d = tempfile::tempdir().expect("tempdir");
    std::fs::create_dir_all(d.path().join("src/sub")).expect("mkdir");
    std::fs::write(d.path().join("src/a.txt"), "a").expect("write");
    std::fs::write(d.path().join("src/sub/b.txt"), "b").expect("write");
    std::fs::write(d.path().join("README.md"), "readme").expect("write");
    std::fs::write(d.path().join("debug.log"), "noise").expect("write");
    d
}

fn sum(root: &Path, ignore: &[&str], src: &str) -> Digest {
    ContextHasher::new(root, ignore, StatCache::default())
        .expect("hasher")
        .checksum(src)
        .unwrap_or_else(|e| panic!("{src}: {e}"))
}

#[test]
fn touching_keeps_and_changing_changes() {
    let d = ctx();
    let before = sum(d.path(), &[], "src");
    // Same content, new mtime.
    std::fs::write(d.path().join("src/a.txt"), "a").expect("rewrite");
    let f = std::fs::File::options()
        .write(true)
        .open(d.path().join("src/a.txt"))
        .expect("open");
    f.set_modified(std::time::SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(42))
        .expect("touch");
    assert_eq!(
        sum(d.path(), &[], "src"),
        before,
        "an mtime change must not change the checksum"
    );
    std::fs::write(d.path().join("src/sub/b.txt"), "B").expect("change");
    let changed = sum(d.path(), &[], "src");
    assert_ne!(changed, before);
    std::fs::set_permissions(
        d.path().join("src/a.txt"),
        std::fs::Permissions::from_mode(0o700),
    )
    .expect("chmod");
    assert_ne!(
        sum(d.path(), &[], "src"),
        changed,
        "a mode change changes the checksum"
    );
    assert_eq!(
        sum(d.path(), &[], "README.md"),
        sum(d.path(), &[], "./README.md")
    );
}

#[test]
fn only_the_selected_paths_count() {
    let d = ctx();
    let a = sum(d.path(), &[], "src/a.txt");
    std::fs::write(d.path().join("README.md"), "changed").expect("write");
    assert_eq!(sum(d.path(), &[], "src/a.txt"), a);
    let all = sum(d.path(), &["*.log"], ".");
    std::fs::write(d.path().join("debug.log"), "more noise").expect("write");
    assert_eq!(
        sum(d.path(), &["*.log"], "."),
        all,
        "ignored files never count"
    );
    std::fs::write(d.path().join("new.txt"), "n").expect("write");
    assert_ne!(sum(d.path(), &["*.log"], "."), all, "a new file counts");
}

#[test]
fn wildcards_symlinks_and_errors() {
    let d = ctx();
    let w = sum(d.path(), &[], "src/*.txt");
    assert_ne!(
        w,
        sum(d.path(), &[], "src/a.txt"),
        "wildcard matches are hashed with their paths"
    );
    std::os::unix::fs::symlink("src/a.txt", d.path().join("link")).expect("symlink");
    assert_eq!(
        sum(d.path(), &[], "link"),
        sum(d.path(), &[], "src/a.txt"),
        "a named symlink is followed"
    );
    std::os::unix::fs::symlink("/etc/passwd", d.path().join("abs")).expect("symlink");
    let h = ContextHasher::new(d.path(), &[] as &[&str], StatCache::default()).expect("hasher");
    assert!(
        matches!(h.checksum("abs"), Err(HashError::NotFound(_))),
        "absolute targets stay inside the context"
    );
    assert!(matches!(
        h.checksum("../x"),
        Err(HashError::OutsideContext(_))
    ));
    assert!(matches!(h.checksum("missing"), Err(HashError::NotFound(_))));
    assert!(matches!(h.checksum("*.none"), Err(HashError::NotFound(_))));
    let ignored = ContextHasher::new(d.path(), &["src"], StatCache::default()).expect("hasher");
    assert!(matches!(
        ignored.checksum("src/a.txt"),
        Err(HashError::NotFound(_))
    ));
}

#[test]
fn the_stat_cache_skips_unchanged_files_and_gives_the_same_result() {
    let d = ctx();
    let store = tempfile::tempdir().expect("tempdir");
    let cache_file = store.path().join("statcache.bin");
    // Files this fresh are racy (see the next test); a short window and a short wait make them remembered.
    let window = std::time::Duration::from_millis(50);
    std::thread::sleep(window * 2);
    let hasher = |cache: &std::path::Path| {
        ContextHasher::new(d.path(), &[] as &[&str], StatCache::load(cache))
            .expect("hasher")
            .with_racy_window(window)
    };
    let first = hasher(&cache_file);
    let a = first.checksum(".").expect("checksum");
    assert_eq!(first.files_read(), 4);
    first.into_stat_cache().save(&cache_file).expect("save");

    let second = hasher(&cache_file);
    assert_eq!(second.checksum(".").expect("checksum"), a);
    assert_eq!(second.files_read(), 0, "nothing changed, nothing re-read");

    std::fs::write(d.path().join("src/a.txt"), "A").expect("change");
    let third = hasher(&cache_file);
    let c = third.checksum(".").expect("checksum");
    assert_eq!(third.files_read(), 1, "only the changed file is re-read");
    let cold = sum(d.path(), &[], ".");
    assert_eq!(c, cold, "cached and uncached checksums agree");
}

#[test]
fn a_file_changed_within_the_racy_window_is_read_again_next_time() {
    // A same-size rewrite within one timestamp tick leaves the stat as it was (kernels before 6.13, or
    // filesystems with whole-second times), so a digest remembered for a file that fresh could outlive its
    // contents: it is not remembered, and the next build reads the file again.
    let d = tempfile::tempdir().expect("tempdir");
    std::fs::write(d.path().join("f"), "fresh").expect("write");
    let h = ContextHasher::new(d.path(), &[] as &[&str], StatCache::default()).expect("hasher");
    h.checksum("f").expect("checksum");
    assert!(
        h.into_stat_cache().is_empty(),
        "a racy entry was remembered"
    );

    let window = std::time::Duration::from_millis(50);
    std::thread::sleep(window * 2);
    let h = ContextHasher::new(d.path(), &[] as &[&str], StatCache::default())
        .expect("hasher")
        .with_racy_window(window);
    h.checksum("f").expect("checksum");
    assert_eq!(h.into_stat_cache().len(), 1, "a settled file is remembered");
}

#[test]
fn a_saved_stat_cache_loads_whole_or_not_at_all() {
    let d = ctx();
    let store = tempfile::tempdir().expect("tempdir");
    let file = store.path().join("c.bin");
    std::thread::sleep(std::time::Duration::from_millis(100));
    let h = ContextHasher::new(d.path(), &[] as &[&str], StatCache::default())
        .expect("hasher")
        .with_racy_window(std::time::Duration::from_millis(50));
    let (_, files) = h.checksum_with_files(".").expect("checksum");
    let cache = h.into_stat_cache();
    assert_eq!(cache.len(), 4);
    cache.save(&file).expect("save");
    let loaded = StatCache::load(&file);
    assert_eq!(loaded.len(), 4);
    // Every remembered digest comes back for the file's current stat: the SHA-256 of its contents.
    for rel in files.keys().filter(|r| !r.ends_with('/')) {
        let path = d.path().join(rel);
        let m = std::fs::symlink_metadata(&path).expect("stat");
        if m.file_type().is_file() {
            let got = loaded.get(&path, &StatKey::of(&m)).expect("remembered");
            let bytes = std::fs::read(&path).expect("read");
            assert_eq!(got, oci::Digest::sha256_of(&bytes), "{rel}");
        }
    }
    // A truncated or foreign file is no cache at all, never a partial one.
    let bytes = std::fs::read(&file).expect("read");
    assert!(StatCache::parse(&bytes[..bytes.len() - 1]).is_none());
    assert!(StatCache::parse(b"[]").is_none());
    std::fs::write(&file, &bytes[..bytes.len() / 2]).expect("truncate");
    assert!(StatCache::load(&file).is_empty());
}
