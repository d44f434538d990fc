//! Large uploads survive the network: pushes to a real registry (Debian's docker-registry) behind a proxy that
//! buffers each upload request as nginx does and drops connections mid-blob, and pushes killed with SIGKILL and
//! run again. Both upload paths are covered: a layer compressed while it is sent (streamed, `kiln push` of a built
//! image) and a stored blob sent in PATCH chunks (`--compression uncompressed`, chunks of 6 MiB, the smallest
//! KILN_REGISTRY_CHUNK takes).

use std::time::{Duration, Instant};

use kiln_tests::proxy::{FaultyProxy, UploadFaults};
use kiln_tests::registry::{Auth, Registry};
use kiln_tests::{Context, Root};

use crate::KILN;

/// Random bytes (so compression cannot shrink them): the streamed layer spans several 4 MiB chunks.
const LAYER: usize = 30 << 20;

/// A root holding `big:1`: FROM scratch and one layer of a random file of [`LAYER`] bytes.
fn image_root() -> Root {
    image_root_and_context().0
}

/// [`image_root`], and the build context it was built from.
fn image_root_and_context() -> (Root, Context) {
    use std::io::Read;
    let mut random = vec![0u8; LAYER];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut random))
        .expect("read /dev/urandom");
    let ctx = Context::new()
        .file("Dockerfile", "FROM scratch\nCOPY blob /blob\n")
        .file("blob", random);
    let root = Root::empty();
    let r = root.kiln(
        KILN,
        &[
            "build",
            "--progress",
            "plain",
            "-t",
            "big:1",
            ctx.path().to_str().unwrap(),
        ],
    );
    assert_eq!(r.code, 0, "build: {}", r.stderr);
    (root, ctx)
}

/// The `(N bytes)` of kiln's "pushed …: M blobs uploaded (N bytes)" line.
fn pushed_bytes(stderr: &str) -> u64 {
    let at = stderr.find("blobs uploaded (").expect("a pushed line") + "blobs uploaded (".len();
    stderr[at..]
        .split(' ')
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("a byte count in {stderr}"))
}

/// The N of ", N bytes WHAT" in kiln's pushed line, 0 when it says none.
fn told(stderr: &str, what: &str) -> u64 {
    stderr
        .lines()
        .filter(|l| l.contains("pushed "))
        .find_map(|l| {
            let end = l.find(&format!(" bytes {what}"))?;
            l[..end].rsplit(' ').next()?.parse().ok()
        })
        .unwrap_or(0)
}

/// The diffIDs of an image as kiln inspects it.
fn diff_ids(root: &Root, name: &str) -> serde_json::Value {
    let r = root.kiln(KILN, &["inspect", name]);
    assert_eq!(r.code, 0, "inspect {name}: {}", r.stderr);
    let v: serde_json::Value = serde_json::from_str(&r.stdout).expect("inspect prints JSON");
    v["config"]["rootfs"]["diff_ids"].clone()
}

/// What the registry holds at `reference` (pulled straight from it, not through the proxy) is `big:1`.
fn registry_holds_the_image(root: &Root, reg: &Registry, repo: &str) {
    let other = Root::empty();
    let reference = format!("{}/{repo}:1", reg.host);
    let r = other.kiln(KILN, &["pull", &reference]);
    assert_eq!(r.code, 0, "pull back: {}", r.stderr);
    assert_eq!(diff_ids(root, "big:1"), diff_ids(&other, &reference));
    assert_eq!(
        reg.manifests_with_missing_blobs(),
        Vec::<String>::new(),
        "every manifest's blobs are in the registry"
    );
}

/// No upload session is left recorded once the blobs are done.
fn no_sessions_left(root: &Root) {
    let left: Vec<_> = std::fs::read_dir(root.path().join("store/uploads"))
        .map(|d| d.flatten().map(|e| e.path()).collect())
        .unwrap_or_default();
    assert!(left.is_empty(), "upload sessions left: {left:?}");
}

fn sessions(root: &Root) -> usize {
    std::fs::read_dir(root.path().join("store/uploads"))
        .map(|d| d.count())
        .unwrap_or(0)
}

const UNCOMPRESSED: [&str; 2] = ["--compression", "uncompressed"];

#[test]
fn a_push_through_a_proxy_dropping_connections_mid_blob_resumes_each_chunk() {
    let reg = Registry::start(Auth::Anonymous);
    let root = image_root();
    // Streamed (4 MiB chunks) and stored (6 MiB chunks): every second PATCH is cut a quarter of a MiB in.
    for (repo, extra, every, chunk) in [
        ("streamed/big", &[][..], 2, 4u64 << 20),
        ("stored/big", &UNCOMPRESSED[..], 2, 6 << 20),
    ] {
        let proxy = FaultyProxy::buffering(
            &reg.host,
            UploadFaults {
                cut_every: Some(every),
                cut_after: 256 << 10,
                ..UploadFaults::default()
            },
        );
        let target = format!("{}/{repo}:1", proxy.host);
        let mut args = vec!["push"];
        args.extend_from_slice(extra);
        args.extend(["big:1", &target]);
        let env = [
            ("KILN_REGISTRY_CHUNK", "6m"),
            ("KILN_REGISTRY_BACKOFF_MS", "20"),
        ];
        let r = root.kiln_with(KILN, &args, &env, None);
        assert_eq!(r.code, 0, "{repo}: push through drops: {}", r.stderr);
        assert!(
            proxy.faults() >= 3,
            "{repo}: several drops ({})",
            proxy.faults()
        );
        let blobs = pushed_bytes(&r.stderr);
        assert!(blobs > LAYER as u64, "{repo}: {}", r.stderr);
        // Each drop costs at most the chunk it cut (all of it handed to the request, however much of it went).
        let resent = told(&r.stderr, "sent again");
        assert!(
            resent > 0 && resent <= proxy.faults() as u64 * chunk,
            "{repo}: kiln tells what it sent twice, at most a chunk a drop: {resent} for {} drops: {}",
            proxy.faults(),
            r.stderr
        );
        let through = proxy.upload_bytes();
        assert!(
            (through as f64) < 1.2 * blobs as f64,
            "{repo}: {through} bytes went through the proxy for {blobs} bytes of blobs"
        );
        registry_holds_the_image(&root, &reg, repo);
        no_sessions_left(&root);
    }
}

#[test]
fn a_chunk_whose_answer_was_lost_begins_the_blob_again_when_the_registry_dropped_its_session() {
    // distribution cancels a session asked about with an older Location (its `_state` carries the offset), so
    // after a lost answer the blob cannot go on where it stood: it is begun again, and the push completes.
    let reg = Registry::start(Auth::Anonymous);
    let root = image_root();
    for (repo, extra) in [("stored/big", &UNCOMPRESSED[..]), ("streamed/big", &[][..])] {
        let proxy = FaultyProxy::buffering(
            &reg.host,
            UploadFaults {
                lose_answers: vec![2, 5],
                ..UploadFaults::default()
            },
        );
        let target = format!("{}/{repo}:1", proxy.host);
        let mut args = vec!["push"];
        args.extend_from_slice(extra);
        args.extend(["big:1", &target]);
        let env = [
            ("KILN_REGISTRY_CHUNK", "6m"),
            ("KILN_REGISTRY_BACKOFF_MS", "20"),
        ];
        let r = root.kiln_with(KILN, &args, &env, None);
        assert_eq!(r.code, 0, "{repo}: push with lost answers: {}", r.stderr);
        assert!(proxy.faults() >= 1, "{repo}: an answer was lost");
        registry_holds_the_image(&root, &reg, repo);
        no_sessions_left(&root);
    }
}

/// Starts `kiln push ARGS`, waits for the proxy to hold a PATCH, kills kiln with SIGKILL.
fn push_killed_mid_blob(root: &Root, proxy: &FaultyProxy, args: &[&str], env: &[(&str, &str)]) {
    let mut cmd = root.command(KILN, args);
    cmd.envs(env.iter().copied())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null());
    let mut child = cmd.spawn().expect("start kiln push");
    let deadline = Instant::now() + Duration::from_secs(120);
    while !proxy.stalled() {
        if let Ok(Some(status)) = child.try_wait() {
            panic!("kiln push ended ({status}) before the proxy held its PATCH");
        }
        assert!(Instant::now() < deadline, "the proxy never held a PATCH");
        std::thread::sleep(Duration::from_millis(20));
    }
    child.kill().expect("kill -9 kiln push");
    let _ = child.wait();
}

#[test]
fn a_push_killed_mid_blob_and_run_again_sends_only_what_the_registry_lacks() {
    let reg = Registry::start(Auth::Anonymous);
    let root = image_root();
    // The 4th chunk (of 4 MiB streamed, of 6 MiB stored) is held until kiln is killed.
    for (repo, extra, stall) in [
        ("streamed/big", &[][..], 4),
        ("stored/big", &UNCOMPRESSED[..], 4),
    ] {
        let proxy = FaultyProxy::buffering(
            &reg.host,
            UploadFaults {
                stall: Some((stall, 100 << 10)),
                ..UploadFaults::default()
            },
        );
        let target = format!("{}/{repo}:1", proxy.host);
        let mut args = vec!["push"];
        args.extend_from_slice(extra);
        args.extend(["big:1", &target]);
        let env = [("KILN_REGISTRY_CHUNK", "6m")];
        push_killed_mid_blob(&root, &proxy, &args, &env);
        assert!(
            sessions(&root) >= 1,
            "{repo}: the killed push left its upload session recorded"
        );
        let first = proxy.take_upload_bytes();
        let r = root.kiln_with(KILN, &args, &env, None);
        assert_eq!(r.code, 0, "{repo}: the push run again: {}", r.stderr);
        let again = proxy.take_upload_bytes();
        let resumed = told(&r.stderr, "resumed from an interrupted push");
        assert!(
            resumed >= 12 << 20,
            "{repo}: the rerun went on from the registry's offset: {}",
            r.stderr
        );
        assert!(
            // (64 KiB for the config and gzip's framing of random bytes.)
            again + (12 << 20) <= LAYER as u64 + (64 << 10),
            "{repo}: the rerun sent {again} bytes of a {LAYER}-byte layer (the killed push {first})"
        );
        registry_holds_the_image(&root, &reg, repo);
        no_sessions_left(&root);
    }
}

#[test]
fn a_build_push_killed_mid_layer_and_run_again_sends_only_what_the_registry_lacks() {
    let reg = Registry::start(Auth::Anonymous);
    let (root, ctx) = image_root_and_context();
    let proxy = FaultyProxy::buffering(
        &reg.host,
        UploadFaults {
            stall: Some((4, 100 << 10)),
            ..UploadFaults::default()
        },
    );
    let target = format!("{}/built/big:1", proxy.host);
    let args = [
        "build",
        "--progress",
        "plain",
        "--push",
        "-t",
        &target,
        ctx.path().to_str().unwrap(),
    ];
    push_killed_mid_blob(&root, &proxy, &args, &[]);
    assert!(
        sessions(&root) >= 1,
        "the killed build left its upload session recorded"
    );
    proxy.take_upload_bytes();
    let r = root.kiln_with(KILN, &args, &[], None);
    assert_eq!(r.code, 0, "the build run again: {}", r.stderr);
    let again = proxy.take_upload_bytes();
    assert!(
        told(&r.stderr, "resumed from an interrupted push") >= 12 << 20,
        "the rerun went on from the registry's offset: {}",
        r.stderr
    );
    assert!(
        again + (12 << 20) <= LAYER as u64 + (64 << 10),
        "the rerun sent {again} bytes of a {LAYER}-byte layer"
    );
    let other = Root::empty();
    let direct = format!("{}/built/big:1", reg.host);
    let p = other.kiln(KILN, &["pull", &direct]);
    assert_eq!(p.code, 0, "pull back: {}", p.stderr);
    assert_eq!(diff_ids(&root, "big:1"), diff_ids(&other, &direct));
    no_sessions_left(&root);
}
