//! Compression during the build (#29): a final image's layer is compressed as soon as its step is done, while later
//! steps run, and the image that leaves — pushed to a real registry and written to an OCI archive — is the same,
//! byte for byte, as when every layer is compressed by the export.

use std::io::{Read, Write};
use std::net::TcpListener;
use std::path::Path;
use std::time::{Duration, Instant};

use kiln_tests::registry::{free_port, Auth, Registry};
use kiln_tests::{Context, Root};

use crate::KILN;

/// `n` incompressible bytes from xorshift64 seeded with `seed`: the same in both builds a test compares.
fn noise(seed: u64, n: usize) -> Vec<u8> {
    let mut x = seed;
    (0..n.div_ceil(8))
        .flat_map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x.to_le_bytes()
        })
        .take(n)
        .collect()
}

/// Two layers (24 MB of incompressible bytes copied in, 24 MB of text made by a RUN), then a step that waits, on
/// the host's loopback, until the test answers it (busybox's nc has no `-z`; its wget does).
fn context(port: u16) -> Context {
    Context::new()
        .file("random.bin", noise(0x9E37_79B9_7F4A_7C15, 24_000_000))
        .file(
            "Dockerfile",
            format!(
                "FROM busybox\n\
             COPY random.bin /random\n\
             RUN yes kiln | head -c 24000000 > /text\n\
             RUN until wget -q -O /dev/null http://127.0.0.1:{port}/; do sleep 0.1; done\n"
            ),
        )
}

/// Compressed blobs the push memo names in `root`'s store (`layers/conv-*.json`).
fn compressed_layers(root: &Path) -> usize {
    std::fs::read_dir(root.join("store/layers"))
        .map(|d| {
            d.flatten()
                .filter(|e| e.file_name().to_string_lossy().starts_with("conv-"))
                .count()
        })
        .unwrap_or(0)
}

/// The manifest digest of the one image in an OCI archive.
fn archive_manifest(archive: &Path) -> String {
    let mut tar = tar::Archive::new(std::fs::File::open(archive).expect("open the archive"));
    for entry in tar.entries().expect("entries") {
        let mut entry = entry.expect("entry");
        if entry.path().expect("path").to_string_lossy() == "index.json" {
            let mut s = String::new();
            entry.read_to_string(&mut s).expect("index.json");
            let index: serde_json::Value = serde_json::from_str(&s).expect("json");
            return index["manifests"][0]["digest"]
                .as_str()
                .expect("a manifest digest")
                .to_string();
        }
    }
    panic!("no index.json in {}", archive.display());
}

/// The digest `kiln build --push` reports for `target` (`pushed TARGET@DIGEST: …`).
fn pushed_digest(stderr: &str, target: &str) -> String {
    stderr
        .lines()
        .find_map(|l| l.strip_prefix(&format!("pushed {target}@")))
        .and_then(|rest| rest.split(": ").next())
        .map(str::to_string)
        .unwrap_or_else(|| panic!("no push of {target} in:\n{stderr}"))
}

/// Starts `kiln build` of `ctx` in `root`, pushing to `reg` as `early/NAME:1` and writing an OCI archive into
/// `out`, with compression during the build on or off: the child, the archive and the push target.
fn build(
    reg: &Registry,
    ctx: &Context,
    out: &Path,
    root: &Root,
    name: &str,
    early: bool,
) -> (std::process::Child, std::path::PathBuf, String) {
    {
        let archive = out.join(format!("{name}.tar"));
        let target = format!("{}/early/{name}:1", reg.host);
        let mut cmd = root.command(
            KILN,
            &[
                "build",
                "--progress=plain",
                "--provenance=false",
                "--build-arg",
                "SOURCE_DATE_EPOCH=1700000000",
                "--network",
                "host",
                "--allow",
                "network.host",
                "-o",
                &format!("type=image,name={target},push=true"),
                "-o",
                &format!("type=oci,dest={}", archive.display()),
                ctx.path().to_str().expect("utf-8"),
            ],
        );
        if !early {
            cmd.env("KILN_EARLY_COMPRESSION", "0");
        }
        cmd.stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped());
        (cmd.spawn().expect("start kiln"), archive, target)
    }
}

/// Waits until `count` reaches 2 while the build's last RUN waits, then lets it end (answering on `port`) and waits
/// for the build: its stderr, after checking it succeeded, and the answering listener (to drop after).
fn release_when(
    child: std::process::Child,
    port: u16,
    what: &str,
    count: &dyn Fn() -> usize,
) -> (String, TcpListener) {
    let deadline = Instant::now() + Duration::from_secs(300);
    while count() < 2 {
        assert!(
            Instant::now() < deadline,
            "{} of 2 {what} while the build waited",
            count()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let release = release(port);
    let done = child.wait_with_output().expect("kiln build");
    let stderr = String::from_utf8_lossy(&done.stderr).to_string();
    assert!(done.status.success(), "{stderr}");
    (stderr, release)
}

/// Answers every HTTP request on `port` with 200 (what the waiting RUN asks for), until dropped.
fn release(port: u16) -> TcpListener {
    let release = TcpListener::bind(("127.0.0.1", port)).expect("bind the release port");
    let answering = release.try_clone().expect("listener");
    std::thread::spawn(move || {
        for mut conn in answering.incoming().flatten() {
            let mut head = [0u8; 1024];
            let _ = conn.read(&mut head);
            let _ = conn.write_all(b"HTTP/1.0 200 OK\r\nContent-Length: 0\r\n\r\n");
        }
    });
    release
}

#[test]
fn a_finished_layer_is_compressed_while_later_steps_run_and_the_image_is_the_same() {
    let reg = Registry::start(Auth::Anonymous);
    let port = free_port();
    let ctx = context(port);
    let out = tempfile::tempdir().expect("tempdir");
    let build =
        |root: &Root, name: &str, early: bool| build(&reg, &ctx, out.path(), root, name, early);

    // With compression during the build: the COPY's and the first RUN's layers are compressed into the store
    // while the last RUN still waits — the test lets it end only then.
    let early_root = Root::with_busybox(KILN);
    let (child, early_archive, early_target) = build(&early_root, "during", true);
    let (stderr, release) = release_when(child, port, "layers compressed", &|| {
        compressed_layers(early_root.path())
    });
    assert!(
        stderr.contains("2 layer(s) compressed while the build ran"),
        "{stderr}"
    );
    let early_pushed = pushed_digest(&stderr, &early_target);

    // Without it, on a fresh root: the export compresses (and streams) every layer itself.
    let late_root = Root::with_busybox(KILN);
    let (child, late_archive, late_target) = build(&late_root, "after", false);
    let done = child.wait_with_output().expect("kiln build");
    let stderr = String::from_utf8_lossy(&done.stderr).to_string();
    assert!(done.status.success(), "{stderr}");
    assert!(
        !stderr.contains("compressed while the build ran"),
        "{stderr}"
    );
    drop(release);

    assert_eq!(early_pushed, pushed_digest(&stderr, &late_target));
    assert_eq!(
        archive_manifest(&early_archive),
        archive_manifest(&late_archive)
    );
    assert!(reg.manifests_with_missing_blobs().is_empty());
}

/// Files compressed ahead and finished, in `root`'s store (`speculated/PID/N`).
fn speculated(root: &Path) -> usize {
    std::fs::read_dir(root.join("store/speculated"))
        .into_iter()
        .flatten()
        .flatten()
        .flat_map(|pid| {
            std::fs::read_dir(pid.path())
                .into_iter()
                .flatten()
                .flatten()
        })
        .filter(|f| !f.file_name().to_string_lossy().ends_with(".tmp"))
        .count()
}

#[test]
fn big_files_are_compressed_while_their_step_still_runs_and_the_image_is_the_same() {
    let reg = Registry::start(Auth::Anonymous);
    let port = free_port();
    // One RUN writes two big files (3 MB of incompressible bytes, 5 MB of text), waits until the test has seen
    // both compressed ahead, then changes one byte in the middle of the first: that block is compressed again.
    let ctx = Context::new()
        .file("random.bin", noise(0x2545_F491_4F6C_DD1D, 3_200_000))
        .file(
            "Dockerfile",
            format!(
                "FROM busybox\n\
             COPY random.bin /random\n\
             RUN cp /random /a && yes kiln | head -c 5000000 > /b \\\n\
              && until wget -q -O /dev/null http://127.0.0.1:{port}/; do sleep 0.1; done \\\n\
              && printf X | dd of=/a bs=1 seek=1500000 conv=notrunc 2>/dev/null\n"
            ),
        );
    let out = tempfile::tempdir().expect("tempdir");
    let root = Root::with_busybox(KILN);
    let (child, early_archive, early_target) = build(&reg, &ctx, out.path(), &root, "ahead", true);
    let (stderr, release) = release_when(child, port, "big files compressed ahead", &|| {
        speculated(root.path())
    });
    // /a (3.2 MB: one of its 4 blocks changed) and /b (5 MB): 7 of 8 MiB-sized blocks taken, at least 6 MiB.
    let used: u64 = stderr
        .lines()
        .find_map(|l| {
            l.split(" MiB of it used")
                .next()
                .filter(|_| l.contains("MiB of it used"))
        })
        .and_then(|l| l.rsplit(", ").next())
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or_else(|| panic!("no speculation line in:\n{stderr}"));
    assert!(used >= 6, "{used} MiB used:\n{stderr}");
    assert_eq!(
        speculated(root.path()),
        0,
        "the files made ahead are removed"
    );
    let early_pushed = pushed_digest(&stderr, &early_target);

    let late_root = Root::with_busybox(KILN);
    let (child, late_archive, late_target) =
        build(&reg, &ctx, out.path(), &late_root, "plain", false);
    let done = child.wait_with_output().expect("kiln build");
    let stderr = String::from_utf8_lossy(&done.stderr).to_string();
    assert!(done.status.success(), "{stderr}");
    assert!(!stderr.contains("MiB of it used"), "{stderr}");
    drop(release);
    assert_eq!(early_pushed, pushed_digest(&stderr, &late_target));
    assert_eq!(
        archive_manifest(&early_archive),
        archive_manifest(&late_archive)
    );
}
