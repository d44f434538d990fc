//! The store's guarantees: verified, atomic blobs; an index that never points at nothing; concurrency.

use std::io::Write;

use super::*;

#[test]
fn blobs_are_verified_and_atomic() {
    let d = tempfile::tempdir().unwrap();
    let s = Store::open(d.path()).unwrap();
    let digest = s.put_bytes(b"hello").unwrap();
    assert_eq!(digest, Digest::sha256_of(b"hello"));
    assert_eq!(s.read_blob(&digest).unwrap(), b"hello");
    let mut w = s.writer().unwrap();
    w.write_all(b"other").unwrap();
    let wrong = Digest::sha256_of(b"not other");
    assert!(matches!(
        w.commit(Some(&wrong)),
        Err(StoreError::DigestMismatch { .. })
    ));
    assert!(!s.has(&Digest::sha256_of(b"other")));
    {
        let mut w = s.writer().unwrap();
        w.write_all(b"abandoned").unwrap();
    }
    assert!(
        std::fs::read_dir(d.path().join("ingest"))
            .unwrap()
            .next()
            .is_none(),
        "no stray ingest files"
    );
    assert!(matches!(
        s.read_blob(&Digest::sha256_of(b"x")),
        Err(StoreError::MissingBlob(_))
    ));
}

#[test]
fn the_index_points_only_at_stored_manifests() {
    let d = tempfile::tempdir().unwrap();
    let s = Store::open(d.path()).unwrap();
    let missing = Digest::sha256_of(b"manifest");
    assert!(matches!(
        s.set_image("app:1", &missing),
        Err(StoreError::MissingBlob(_))
    ));
    let m = s.put_bytes(b"manifest").unwrap();
    s.set_image("app:1", &m).unwrap();
    assert_eq!(s.get_image("app:1").unwrap().unwrap().manifest, m);
    assert!(s.remove_image("app:1").unwrap());
    assert!(s.get_image("app:1").unwrap().is_none());
}

#[test]
fn concurrent_taggers_lose_nothing() {
    let d = tempfile::tempdir().unwrap();
    let s = Store::open(d.path()).unwrap();
    let m = s.put_bytes(b"m").unwrap();
    std::thread::scope(|scope| {
        for t in 0..4 {
            let s = s.clone();
            let m = m.clone();
            scope.spawn(move || {
                for i in 0..25 {
                    s.set_image(&format!("img{t}:{i}"), &m).unwrap();
                }
            });
        }
    });
    assert_eq!(s.list_images().unwrap().len(), 100);
}
