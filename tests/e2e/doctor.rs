//! `kiln doctor`: a root damaged by hand and littered as an interrupted build leaves it is reported finding by
//! finding, left alone without `--repair`, made consistent with it, and the next build works on it.

use kiln_tests::{run, Context, Root};

use crate::KILN;

fn doctor(root: &Root, args: &[&str]) -> kiln_tests::Run {
    let mut all = vec!["doctor"];
    all.extend_from_slice(args);
    root.kiln(KILN, &all)
}

/// The snapshot a cache record of the step described by `needle` holds.
fn snapshot_of(root: &Root, needle: &str) -> String {
    for e in std::fs::read_dir(root.path().join("cache/records")).expect("records") {
        let text = std::fs::read_to_string(e.expect("entry").path()).expect("record");
        let v: serde_json::Value = serde_json::from_str(&text).expect("json");
        if v["description"]
            .as_str()
            .is_some_and(|d| d.contains(needle))
        {
            return v["snapshot"].as_str().expect("snapshot").to_string();
        }
    }
    panic!("no record for {needle}");
}

/// The digest of `image`'s last layer in the store.
fn last_layer(root: &Root, image: &str) -> String {
    let out = root.kiln(KILN, &["inspect", image]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let v: serde_json::Value = serde_json::from_str(&out.stdout).expect("inspect json");
    v["Manifest"]["layers"]
        .as_array()
        .and_then(|l| l.last())
        .and_then(|l| l["digest"].as_str())
        .expect("a layer")
        .to_string()
}

#[test]
fn doctor_reports_damage_and_leftovers_and_repair_makes_the_root_consistent() {
    let root = Root::with_busybox(KILN);
    let ctx = Context::new().file(
        "Dockerfile",
        "FROM busybox\nRUN echo one > /one\nRUN echo two > /two\nRUN echo three > /three\n",
    );
    let path = ctx.path().to_str().expect("utf-8");
    let built = root.kiln(KILN, &["build", "--progress=plain", "-t", "doc:1", path]);
    assert_eq!(built.code, 0, "{}", built.stderr);
    let clean = doctor(&root, &[]);
    assert_eq!(clean.code, 0, "{}{}", clean.stdout, clean.stderr);
    assert!(clean.stdout.contains("is consistent"), "{}", clean.stdout);

    // Damage: a layer blob changed on disk, a snapshot with a child gone, a record that does not parse. (A built
    // image's uncompressed layers are lazy — rendered from their snapshots when read, never stored — so the image
    // is named again with gzip layers, which the store keeps as blobs.)
    let r = root.path();
    let gzip = root.kiln(
        KILN,
        &[
            "build",
            "--progress=plain",
            "-o",
            "type=image,name=doc:1,compression=gzip",
            path,
        ],
    );
    assert_eq!(gzip.code, 0, "{}", gzip.stderr);
    let layer = last_layer(&root, "doc:1");
    let blob = r
        .join("store/blobs/sha256")
        .join(layer.trim_start_matches("sha256:"));
    let mut bytes = std::fs::read(&blob).expect("blob");
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0xff;
    std::fs::write(&blob, bytes).expect("write blob");
    let two = snapshot_of(&root, "echo two");
    std::fs::remove_dir_all(r.join("snapshots").join(&two)).expect("remove snapshot");
    std::fs::write(r.join("cache/records/0000.json"), "{not json").expect("write");
    // Leftovers: what kill -9 in the middle of steps and blob writes leaves.
    std::fs::write(r.join("store/ingest/4242-0"), vec![7u8; 4096]).expect("ingest");
    std::fs::create_dir_all(r.join("snapshots/tmp-deadbeef/diff")).expect("tmp snapshot");
    // A note of a lazy layer's digest whose recipe is gone (a crash between the two writes).
    std::fs::create_dir_all(r.join("store/lazy/dirs")).expect("notes dir");
    std::fs::write(r.join("store/lazy/dirs/abcdef"), &layer).expect("stray note");
    let mnt = r.join("work/step-1/rootfs");
    std::fs::create_dir_all(&mnt).expect("work dir");
    let m = run(
        "mount",
        &[
            "-t",
            "tmpfs",
            "kiln-doctor-test",
            mnt.to_str().expect("utf-8"),
        ],
        None,
    );
    assert_eq!(m.code, 0, "{}", m.stderr);
    std::fs::create_dir_all(r.join("runc/secrets/kiln-1-0")).expect("secrets dir");
    std::fs::write(r.join("runc/secrets/kiln-1-0/token"), "s3cret").expect("secret");
    // A cgroup of a step whose kiln process is gone (the pid of a finished child).
    let mut child = std::process::Command::new("true").spawn().expect("spawn");
    let dead = child.id();
    child.wait().expect("reap");
    // Step ids carry a tag of their root, so doctor reports this root's host leftovers and not another's.
    let canonical = std::fs::canonicalize(r).expect("canonical root");
    let digest = oci::Digest::sha256_of(canonical.to_string_lossy().as_bytes());
    let tag = &digest.hex()[..10];
    let pids = std::path::Path::new("/sys/fs/cgroup/pids/kiln");
    let cgroup = pids.join(format!("kiln-{dead}-0-{tag}"));
    let foreign = pids.join(format!("kiln-{dead}-1-0123456789"));
    let have_v1_pids = std::path::Path::new("/sys/fs/cgroup/pids/cgroup.procs").exists();
    if have_v1_pids {
        std::fs::create_dir_all(&cgroup).expect("make a cgroup");
        std::fs::create_dir_all(&foreign).expect("make a cgroup");
    }

    let found = doctor(&root, &[]);
    assert_eq!(found.code, 1, "{}{}", found.stdout, found.stderr);
    let out = &found.stdout;
    let line_with = |words: &[&str]| {
        out.lines()
            .find(|l| words.iter().all(|w| l.contains(w)))
            .unwrap_or_else(|| panic!("no line with {words:?}:\n{out}"))
            .to_string()
    };
    assert!(line_with(&["damaged", &layer, "hashes to"]).starts_with("damaged"));
    line_with(&["damaged", "image docker.io/library/doc:1", &layer]);
    line_with(&["damaged", "cache record", "echo two", &two]);
    line_with(&["damaged", "cache record", "0000.json"]);
    line_with(&["damaged", "its parent", &two]);
    line_with(&["leftover", "ingest file", "4242-0"]);
    line_with(&["leftover", "tmp-deadbeef"]);
    line_with(&["leftover", "lazy layer note", "abcdef"]);
    line_with(&["leftover", "mount", "work/step-1/rootfs"]);
    line_with(&["leftover", "secrets directory", "kiln-1-0"]);
    if have_v1_pids {
        line_with(&["leftover", "cgroup", &format!("kiln-{dead}-0-{tag}")]);
        assert!(
            !out.contains(&format!("kiln-{dead}-1-")),
            "another root's: {out}"
        );
    }
    assert!(
        found.stderr.contains("doctor --repair"),
        "the summary says how to repair: {}",
        found.stderr
    );
    // Without --repair nothing changes.
    assert!(r.join("store/ingest/4242-0").exists());
    assert!(blob.exists());

    let repaired = doctor(&root, &["--repair"]);
    assert_eq!(repaired.code, 0, "{}{}", repaired.stdout, repaired.stderr);
    assert!(
        repaired.stdout.contains("image names were forgotten"),
        "{}",
        repaired.stdout
    );
    assert!(
        !r.join("runc/secrets/kiln-1-0").exists(),
        "no secret stays on disk"
    );
    assert!(!cgroup.exists());
    assert!(
        !r.join("store/lazy/dirs/abcdef").exists(),
        "the stray note went"
    );
    let _ = std::fs::remove_dir(&foreign);
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").expect("mountinfo");
    assert!(!mounts.contains(mnt.to_str().expect("utf-8")), "{mounts}");
    let after = doctor(&root, &[]);
    assert_eq!(after.code, 0, "{}{}", after.stdout, after.stderr);

    // The next build re-runs what was lost and reuses the rest; the result is whole again.
    let again = root.kiln(KILN, &["build", "--progress=plain", "-t", "doc:1", path]);
    assert_eq!(again.code, 0, "{}", again.stderr);
    assert!(
        again.stderr.contains("RUN echo one") && again.stderr.contains("CACHED"),
        "{}",
        again.stderr
    );
    let images = root.kiln(KILN, &["images"]);
    assert!(images.stdout.contains("doc"), "{}", images.stdout);
    let last = doctor(&root, &[]);
    assert_eq!(last.code, 0, "{}{}", last.stdout, last.stderr);
}

#[test]
fn doctor_on_a_missing_root_is_a_usage_error() {
    let dir = tempfile::tempdir().expect("tempdir");
    let missing = dir.path().join("nowhere");
    let out = run(
        KILN,
        &["doctor", "--root", missing.to_str().expect("utf-8")],
        None,
    );
    assert_eq!(out.code, 2, "{}", out.stderr);
    assert!(out.stderr.contains("no kiln root"), "{}", out.stderr);
    assert!(!missing.exists(), "doctor makes no root");
}
