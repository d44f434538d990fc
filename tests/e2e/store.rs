//! Image outputs and store commands with real tools checking them: docker archives and OCI tars read by skopeo,
//! zstd and Docker media types, `kiln save/load/tag/rmi/inspect` round trips between two roots, and a full disk.

use kiln_tests::{repo_root, run, Root};

use crate::KILN;

fn hello() -> String {
    repo_root()
        .join("examples/hello")
        .to_str()
        .expect("utf-8")
        .to_string()
}

fn skopeo_inspect(transport: &str, raw: bool) -> serde_json::Value {
    let mut args = vec!["inspect"];
    if raw {
        args.push("--raw");
    }
    args.push(transport);
    let r = run("skopeo", &args, None);
    assert_eq!(r.code, 0, "skopeo inspect {transport}: {}", r.stderr);
    serde_json::from_str(&r.stdout).expect("skopeo prints JSON")
}

#[test]
fn docker_archive_output_is_read_by_skopeo_and_loads_into_another_root() {
    let root = Root::with_busybox(KILN);
    let out = tempfile::tempdir().expect("tempdir");
    let archive = out.path().join("hello.docker.tar");
    let dest = format!("type=docker,dest={}", archive.display());
    let r = root.kiln(
        KILN,
        &[
            "build",
            "--progress=quiet",
            "-t",
            "hello:docker",
            "-o",
            &dest,
            &hello(),
        ],
    );
    assert_eq!(r.code, 0, "{}", r.stderr);

    let transport = format!("docker-archive:{}", archive.display());
    let v = skopeo_inspect(&transport, false);
    assert_eq!(v["Labels"]["org.opencontainers.image.title"], "kiln hello");
    // skopeo copies it on as a registry would receive it.
    let copied = out.path().join("copied");
    let c = run(
        "skopeo",
        &[
            "copy",
            &transport,
            &format!("oci:{}:hello", copied.display()),
        ],
        None,
    );
    assert_eq!(c.code, 0, "skopeo copy: {}", c.stderr);

    // Docker media types by default, as BuildKit's docker exporter writes.
    let other = tempfile::tempdir().expect("tempdir");
    let load = run_in(
        other.path(),
        &["load", "-i", archive.to_str().expect("utf-8")],
    );
    assert_eq!(load.code, 0, "{}", load.stderr);
    assert!(
        load.stdout
            .contains("Loaded image: docker.io/library/hello:docker"),
        "{}",
        load.stdout
    );
    let inspect = run_in(other.path(), &["inspect", "hello:docker"]);
    assert_eq!(inspect.code, 0, "{}", inspect.stderr);
    let i: serde_json::Value = serde_json::from_str(&inspect.stdout).expect("json");
    assert_eq!(
        i["Manifest"]["mediaType"],
        "application/vnd.docker.distribution.manifest.v2+json"
    );
    assert_eq!(
        i["Config"]["config"]["Labels"]["org.opencontainers.image.title"],
        "kiln hello"
    );
}

fn run_in(root: &std::path::Path, args: &[&str]) -> kiln_tests::Run {
    let mut a = vec!["--root".to_string(), root.display().to_string()];
    a.splice(0..0, [args[0].to_string()]);
    a.extend(args[1..].iter().map(|s| s.to_string()));
    let refs: Vec<&str> = a.iter().map(String::as_str).collect();
    run(KILN, &refs, None)
}

#[test]
fn save_load_tag_rmi_inspect_round_trip_between_two_roots() {
    let root = Root::with_busybox(KILN);
    let r = root.kiln(
        KILN,
        &["build", "--progress=quiet", "-t", "app:1", &hello()],
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(
        root.kiln(KILN, &["tag", "app:1", "registry.example:5000/team/app:2"])
            .code,
        0
    );
    let out = tempfile::tempdir().expect("tempdir");
    for format in ["oci", "docker"] {
        let file = out.path().join(format!("app.{format}.tar"));
        let s = root.kiln(
            KILN,
            &[
                "save",
                "app:1",
                "registry.example:5000/team/app:2",
                "--format",
                format,
                "-o",
                file.to_str().expect("utf-8"),
            ],
        );
        assert_eq!(s.code, 0, "{}", s.stderr);
        let other = tempfile::tempdir().expect("tempdir");
        let l = run_in(other.path(), &["load", "-i", file.to_str().expect("utf-8")]);
        assert_eq!(l.code, 0, "{format}: {}", l.stderr);
        let images = run_in(other.path(), &["images"]);
        assert!(
            images.stdout.contains("docker.io/library/app:1"),
            "{}",
            images.stdout
        );
        assert!(
            images.stdout.contains("registry.example:5000/team/app:2"),
            "{}",
            images.stdout
        );
        let a = run_in(other.path(), &["inspect", "app:1"]);
        let b = root.kiln(KILN, &["inspect", "app:1"]);
        let a: serde_json::Value = serde_json::from_str(&a.stdout).expect("json");
        let b: serde_json::Value = serde_json::from_str(&b.stdout).expect("json");
        assert_eq!(a["Digest"], b["Digest"], "{format}: the same image arrives");
        // The loaded image is usable as a base.
        let ctx = kiln_tests::Context::new().file(
            "Dockerfile",
            "FROM app:1\nRUN grep -q \"hello from kiln\" /app/message.txt\n",
        );
        let built = run_in(
            other.path(),
            &[
                "build",
                "--progress=plain",
                "-t",
                "on-top:1",
                ctx.path().to_str().expect("utf-8"),
            ],
        );
        assert_eq!(built.code, 0, "{format}: {}", built.stderr);
    }
    let oci = out.path().join("app.oci.tar");
    let v = skopeo_inspect(&format!("oci-archive:{}:1", oci.display()), false);
    assert_eq!(v["Labels"]["org.opencontainers.image.title"], "kiln hello");
    // skopeo finds each image of the docker archive by the tag manifest.json gives it.
    let docker = out.path().join("app.docker.tar");
    for tag in ["app:1", "registry.example:5000/team/app:2"] {
        let d = skopeo_inspect(&format!("docker-archive:{}:{tag}", docker.display()), false);
        assert_eq!(
            d["Labels"]["org.opencontainers.image.title"], "kiln hello",
            "{tag}"
        );
    }

    // rmi checks every name first: a typo removes nothing.
    let bad = root.kiln(KILN, &["rmi", "registry.example:5000/team/app:2", "nope:1"]);
    assert_ne!(bad.code, 0);
    assert!(bad.stderr.contains("nope:1"), "{}", bad.stderr);
    let images = root.kiln(KILN, &["images"]).stdout;
    assert!(
        images.contains("registry.example:5000/team/app:2"),
        "{images}"
    );
    let ok = root.kiln(KILN, &["rmi", "registry.example:5000/team/app:2"]);
    assert_eq!(ok.code, 0, "{}", ok.stderr);
    let images = root.kiln(KILN, &["images"]).stdout;
    assert!(
        !images.contains("registry.example:5000/team/app:2"),
        "{images}"
    );
    assert!(images.contains("docker.io/library/app:1"), "{images}");
    let missing = root.kiln(KILN, &["inspect", "gone:1"]);
    assert_ne!(missing.code, 0);
    assert!(missing.stderr.contains("gone:1"), "{}", missing.stderr);
}

#[test]
fn compression_and_media_type_options_reach_the_manifest() {
    let root = Root::with_busybox(KILN);
    let out = tempfile::tempdir().expect("tempdir");
    let zstd = out.path().join("z.tar");
    let docker = out.path().join("d.tar");
    let r = root.kiln(
        KILN,
        &[
            "build",
            "--progress=quiet",
            "-o",
            &format!(
                "type=oci,dest={},compression=zstd,compression-level=5,name=zimg:1",
                zstd.display()
            ),
            "-o",
            &format!("type=oci,dest={},oci-mediatypes=false", docker.display()),
            &hello(),
        ],
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
    // hello built into one output.
    let build_to = |output: String| {
        let r = root.kiln(
            KILN,
            &["build", "--progress=quiet", "-o", &output, &hello()],
        );
        assert_eq!(r.code, 0, "{}", r.stderr);
    };
    // A layout directory (tar=false) is read by skopeo's oci: transport and copied on to an archive.
    let dir = out.path().join("layout");
    build_to(format!(
        "type=oci,dest={},tar=false,name=dir:1",
        dir.display()
    ));
    let v = skopeo_inspect(&format!("oci:{}:1", dir.display()), false);
    assert_eq!(v["Labels"]["org.opencontainers.image.title"], "kiln hello");
    let c = run(
        "skopeo",
        &[
            "copy",
            &format!("oci:{}:1", dir.display()),
            &format!("oci-archive:{}", out.path().join("from-dir.tar").display()),
        ],
        None,
    );
    assert_eq!(c.code, 0, "skopeo copy oci: → oci-archive: {}", c.stderr);
    // The base's gzip layer is kept as it is (BuildKit's default); the layers the build made are zstd, and
    // force-compression makes every layer zstd.
    let media = |archive: &std::path::Path| -> Vec<String> {
        let m = skopeo_inspect(&format!("oci-archive:{}", archive.display()), true);
        m["layers"]
            .as_array()
            .expect("layers")
            .iter()
            .map(|l| l["mediaType"].as_str().expect("mediaType").to_string())
            .collect()
    };
    const ZSTD: &str = "application/vnd.oci.image.layer.v1.tar+zstd";
    let z = media(&zstd);
    assert_eq!(z[0], "application/vnd.oci.image.layer.v1.tar+gzip", "{z:?}");
    assert!(z.len() > 1 && z[1..].iter().all(|m| m == ZSTD), "{z:?}");
    let forced = out.path().join("forced.tar");
    build_to(format!(
        "type=oci,dest={},compression=zstd,force-compression=true",
        forced.display()
    ));
    let f = media(&forced);
    assert!(f.iter().all(|m| m == ZSTD), "{f:?}");
    let d = skopeo_inspect(&format!("oci-archive:{}", docker.display()), true);
    assert_eq!(
        d["mediaType"],
        "application/vnd.docker.distribution.manifest.v2+json"
    );
    assert_eq!(
        d["config"]["mediaType"],
        "application/vnd.docker.container.image.v1+json"
    );
    for l in d["layers"].as_array().expect("layers") {
        assert_eq!(
            l["mediaType"],
            "application/vnd.docker.image.rootfs.diff.tar.gzip"
        );
    }
    // A zstd image is a base kiln can build on.
    let other = tempfile::tempdir().expect("tempdir");
    let l = run_in(other.path(), &["load", "-i", zstd.to_str().expect("utf-8")]);
    assert_eq!(l.code, 0, "{}", l.stderr);
    assert!(
        l.stdout.contains("docker.io/library/zimg:1"),
        "{}",
        l.stdout
    );
    let ctx = kiln_tests::Context::new().file(
        "Dockerfile",
        "FROM zimg:1\nRUN grep -q \"hello from kiln\" /app/message.txt\n",
    );
    let built = run_in(
        other.path(),
        &[
            "build",
            "--progress=plain",
            ctx.path().to_str().expect("utf-8"),
        ],
    );
    assert_eq!(built.code, 0, "{}", built.stderr);

    let bad = root.kiln(
        KILN,
        &[
            "build",
            "--progress=quiet",
            "-o",
            "type=oci,dest=x.tar,compression=brotli",
            &hello(),
        ],
    );
    assert_eq!(bad.code, 2, "{}", bad.stderr);
    assert!(bad.stderr.contains("brotli"), "{}", bad.stderr);
}

fn tar_dir(dir: &std::path::Path, dest: &std::path::Path) {
    let (dir, dest) = (dir.to_str().expect("utf-8"), dest.to_str().expect("utf-8"));
    assert_eq!(run("tar", &["-C", dir, "-cf", dest, "."], None).code, 0);
}

/// A tmpfs of a few MiB, unmounted on drop: a disk that fills up.
struct SmallDisk(tempfile::TempDir);

impl SmallDisk {
    fn mount(size: &str) -> SmallDisk {
        let dir = tempfile::tempdir().expect("tempdir");
        let m = run(
            "mount",
            &[
                "-t",
                "tmpfs",
                "-o",
                &format!("size={size}"),
                "kiln-full",
                dir.path().to_str().expect("utf-8"),
            ],
            None,
        );
        assert_eq!(m.code, 0, "mount a small tmpfs (needs root): {}", m.stderr);
        SmallDisk(dir)
    }

    fn path(&self) -> &std::path::Path {
        self.0.path()
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg(self.0.path())
            .status();
    }
}

#[test]
fn a_full_disk_fails_with_one_clear_line_and_leaves_the_store_consistent() {
    let mnt = SmallDisk::mount("4m");
    let root = mnt.path().join("root");
    // A small image first, so there is an index to keep intact.
    let work = tempfile::tempdir().expect("tempdir");
    let small = work.path().join("small.tar");
    let big = work.path().join("big.tar");
    let files = work.path().join("files");
    std::fs::create_dir(&files).expect("mkdir");
    std::fs::write(files.join("a"), "a").expect("write");
    tar_dir(&files, &small);
    let mut noise = vec![0u8; 8 << 20];
    std::io::Read::read_exact(
        &mut std::fs::File::open("/dev/urandom").expect("urandom"),
        &mut noise,
    )
    .expect("read urandom");
    std::fs::write(files.join("big.bin"), noise).expect("write");
    tar_dir(&files, &big);
    let ok = run_in(
        &root,
        &["import", small.to_str().expect("utf-8"), "small:1"],
    );
    assert_eq!(ok.code, 0, "{}", ok.stderr);
    let index_before = std::fs::read(root.join("store/index/images.json")).expect("index");

    let full = run_in(&root, &["import", big.to_str().expect("utf-8"), "big:1"]);
    assert_ne!(full.code, 0, "the import cannot fit");
    let last = full
        .stderr
        .trim()
        .lines()
        .last()
        .unwrap_or_default()
        .to_string();
    assert!(last.contains("No space left on device"), "{}", full.stderr);
    assert_eq!(
        full.stderr.trim().lines().count(),
        1,
        "one line: {}",
        full.stderr
    );
    assert_eq!(
        std::fs::read(root.join("store/index/images.json")).expect("index"),
        index_before,
        "the index is untouched"
    );
    let ingest: Vec<_> = std::fs::read_dir(root.join("store/ingest"))
        .expect("ingest")
        .collect();
    assert!(ingest.is_empty(), "no partial blob left: {ingest:?}");
    let images = run_in(&root, &["images"]);
    assert!(
        images.stdout.contains("small:1") && !images.stdout.contains("big:1"),
        "{}",
        images.stdout
    );
    // Every blob that is there is whole.
    for b in std::fs::read_dir(root.join("store/blobs/sha256")).expect("blobs") {
        let p = b.expect("entry").path();
        let sum = run("sha256sum", &[p.to_str().expect("utf-8")], None);
        assert!(sum
            .stdout
            .starts_with(p.file_name().and_then(|n| n.to_str()).expect("name")));
    }
}

/// An OCI layout tar holding one image whose only layer is `layer`.
fn archive_with_layer(layer: &[u8], name: &str) -> Vec<u8> {
    use sha2::Digest as _;
    let hex = |b: &[u8]| format!("{:x}", sha2::Sha256::digest(b));
    let config =
        br#"{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}"#;
    let manifest = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": format!("sha256:{}", hex(config)), "size": config.len()},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": format!("sha256:{}", hex(layer)), "size": layer.len()}],
    }))
    .expect("json");
    let index = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "manifests": [{"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": format!("sha256:{}", hex(&manifest)), "size": manifest.len(),
                       "annotations": {"io.containerd.image.name": name}}],
    }))
    .expect("json");
    let mut b = tar::Builder::new(Vec::new());
    let files: [(String, &[u8]); 4] = [
        ("index.json".into(), &index),
        (format!("blobs/sha256/{}", hex(config)), config),
        (format!("blobs/sha256/{}", hex(&manifest)), &manifest),
        (format!("blobs/sha256/{}", hex(layer)), layer),
    ];
    for (p, data) in files {
        let mut h = tar::Header::new_ustar();
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        b.append_data(&mut h, p, data).expect("append");
    }
    b.into_inner().expect("tar")
}

#[test]
fn a_hostile_base_image_fails_the_build_and_leaves_no_snapshot() {
    let root = tempfile::tempdir().expect("tempdir");
    let corpus = repo_root().join("tests/corpus/hostile-layers");
    let layer = std::fs::read(corpus.join("traversal.tar")).expect("corpus");
    let archive = root.path().join("evil.tar");
    std::fs::write(&archive, archive_with_layer(&layer, "evil:1")).expect("write");
    let store = root.path().join("kiln");
    let l = run_in(&store, &["load", "-i", archive.to_str().expect("utf-8")]);
    assert_eq!(l.code, 0, "loading only stores blobs: {}", l.stderr);
    let ctx = kiln_tests::Context::new().file("Dockerfile", "FROM evil:1\nRUN true\n");
    let b = run_in(
        &store,
        &[
            "build",
            "--progress=plain",
            "-t",
            "out:1",
            ctx.path().to_str().expect("utf-8"),
        ],
    );
    assert_eq!(b.code, 1, "{}", b.stderr);
    assert!(
        b.stderr.contains("kiln-hostile-escape"),
        "names the entry: {}",
        b.stderr
    );
    for p in ["/kiln-hostile-escape", "/tmp/kiln-hostile-escape"] {
        assert!(!std::path::Path::new(p).exists(), "wrote {p}");
    }
    let leftovers: Vec<_> = std::fs::read_dir(store.join("snapshots"))
        .map(|d| d.filter_map(Result::ok).map(|e| e.file_name()).collect())
        .unwrap_or_default();
    assert!(
        leftovers
            .iter()
            .all(|n| !n.to_string_lossy().starts_with("tmp-")),
        "half-made snapshots left: {leftovers:?}"
    );
    assert!(!run_in(&store, &["images"]).stdout.contains("out:1"));
}

/// Random bytes (incompressible, so sizes on disk are what they say).
fn noise(len: usize) -> Vec<u8> {
    let mut v = vec![0u8; len];
    std::io::Read::read_exact(
        &mut std::fs::File::open("/dev/urandom").expect("urandom"),
        &mut v,
    )
    .expect("read urandom");
    v
}

#[test]
fn a_build_that_fills_the_disk_fails_with_one_line_and_the_root_stays_consistent() {
    let mnt = SmallDisk::mount("16m");
    let root = mnt.path().join("root");
    let base = std::process::Command::new("bash")
        .arg(repo_root().join("scripts/base-images.sh"))
        .arg(KILN)
        .env("KILN_ROOT", &root)
        .output()
        .expect("base images");
    assert!(
        base.status.success(),
        "{}",
        String::from_utf8_lossy(&base.stderr)
    );
    let ctx = kiln_tests::Context::new()
        .file("Dockerfile", "FROM busybox\nCOPY big /big\n")
        .file("big", noise(20 << 20));
    let ctx_path = ctx.path().to_str().expect("utf-8");
    let one_line = |r: &kiln_tests::Run, what: &str| {
        assert_eq!(r.code, 1, "{what}: {}", r.stderr);
        let lines: Vec<&str> = r.stderr.trim().lines().collect();
        assert_eq!(lines.len(), 1, "{what}: one line: {}", r.stderr);
        assert!(
            lines[0].contains("no space left on device in kiln's root")
                && lines[0].contains(&root.display().to_string())
                && lines[0].contains("kiln prune"),
            "{what}: {}",
            r.stderr
        );
        lines[0].to_string()
    };
    let doctor_clean = |what: &str| {
        let d = run_in(&root, &["doctor"]);
        assert_eq!(d.code, 0, "{what}: {}{}", d.stdout, d.stderr);
    };

    // The COPY itself cannot fit: the step is named, not the scratch path the write failed on.
    let copy = run_in(
        &root,
        &["build", "--progress=quiet", "-t", "full:1", ctx_path],
    );
    let line = one_line(&copy, "COPY");
    assert!(
        line.contains("[2/2] COPY big /big")
            && !line.contains(&root.join("work").display().to_string()),
        "{line}"
    );
    doctor_clean("after the COPY");

    // The step fits, its layer blob does not: the export fails the same way. (An uncompressed image in the
    // store is lazy, rendered from the snapshot when read, so it is a gzip layer that must be written.)
    std::fs::write(ctx.path().join("big"), noise(7 << 20)).expect("write");
    let export = run_in(
        &root,
        &[
            "build",
            "--progress=quiet",
            "-o",
            "type=image,name=full:1,compression=gzip",
            ctx_path,
        ],
    );
    one_line(&export, "export");
    doctor_clean("after the export");
    let images = run_in(&root, &["images"]);
    assert!(
        !images.stdout.contains("full"),
        "no half image is named: {}",
        images.stdout
    );

    // Space made by prune: the same root builds again.
    let pruned = run_in(&root, &["prune", "--all", "--force"]);
    assert_eq!(pruned.code, 0, "{}", pruned.stderr);
    std::fs::write(ctx.path().join("big"), noise(1 << 20)).expect("write");
    let ok = run_in(
        &root,
        &["build", "--progress=quiet", "-t", "full:1", ctx_path],
    );
    assert_eq!(ok.code, 0, "{}", ok.stderr);
    doctor_clean("after a build that fits");
}

/// A built image's uncompressed layers are lazy: the store records which snapshot each renders from and writes
/// the tar only when something reads it, so a build writes its data once. Read, saved, pruned: the bytes are the
/// digest the manifest names.
#[test]
fn built_layers_are_written_only_when_read_and_outlive_their_snapshots() {
    let root = Root::with_busybox(KILN);
    let ctx = kiln_tests::Context::new()
        .file("Dockerfile", "FROM busybox\nCOPY f /f\nRUN echo hi > /x\n")
        .file("f", noise(1 << 20));
    let built = build_tagged(root.path(), "lazy:1", &ctx);
    assert_eq!(built.code, 0, "{}", built.stderr);
    let inspect = root.kiln(KILN, &["inspect", "lazy:1"]);
    assert_eq!(inspect.code, 0, "{}", inspect.stderr);
    let v: serde_json::Value = serde_json::from_str(&inspect.stdout).expect("json");
    let layers: Vec<String> = v["Manifest"]["layers"]
        .as_array()
        .expect("layers")
        .iter()
        .map(|l| l["digest"].as_str().expect("digest").to_string())
        .collect();
    let built_layers = &layers[layers.len() - 2..];
    let blob = |d: &str| {
        root.path()
            .join("store/blobs/sha256")
            .join(d.trim_start_matches("sha256:"))
    };
    for d in built_layers {
        assert!(!blob(d).exists(), "{d} was written at build time");
        assert!(root
            .path()
            .join("store/lazy")
            .join(format!("{}.json", d.trim_start_matches("sha256:")))
            .is_file());
    }
    let doctor = root.kiln(KILN, &["doctor"]);
    assert_eq!(doctor.code, 0, "{}{}", doctor.stdout, doctor.stderr);

    // Prune drops every snapshot: the image's lazy layers are written first, and hash to their digests.
    let pruned = root.kiln(KILN, &["prune", "--all", "--force"]);
    assert_eq!(pruned.code, 0, "{}", pruned.stderr);
    let left: Vec<_> = std::fs::read_dir(root.path().join("snapshots"))
        .expect("snapshots")
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n != "empty")
        .collect();
    assert!(left.is_empty(), "prune --all left snapshots: {left:?}");
    for d in built_layers {
        let bytes = std::fs::read(blob(d)).expect("written by prune");
        assert_eq!(&oci::Digest::sha256_of(&bytes).to_string(), d);
    }
    let doctor = root.kiln(KILN, &["doctor"]);
    assert_eq!(doctor.code, 0, "{}{}", doctor.stdout, doctor.stderr);

    // The image still builds on and runs.
    let on = kiln_tests::Context::new().file(
        "Dockerfile",
        "FROM lazy:1\nRUN cat /x && test -s /f && echo ok > /ok\n",
    );
    let r = build_tagged(root.path(), "on:1", &on);
    assert_eq!(r.code, 0, "{}", r.stderr);
}

fn build_tagged(root: &std::path::Path, tag: &str, ctx: &kiln_tests::Context) -> kiln_tests::Run {
    let path = ctx.path().to_str().expect("utf-8");
    run_in(root, &["build", "--progress=quiet", "-t", tag, path])
}

#[test]
fn a_large_layer_goes_into_the_archive_as_it_is_compressed_and_stdout_gets_the_same_bytes() {
    let root = Root::with_busybox(KILN);
    // 3 MiB that gzip cannot shrink: past what the archive holds back before writing a layer's header.
    let mut noise = vec![0u8; 3 << 20];
    std::io::Read::read_exact(
        &mut std::fs::File::open("/dev/urandom").expect("open /dev/urandom"),
        &mut noise,
    )
    .expect("read /dev/urandom");
    let ctx = kiln_tests::Context::new()
        .file("Dockerfile", "FROM busybox\nCOPY noise.bin /noise.bin\n")
        .file("noise.bin", &noise);
    let ctx = ctx.path().to_str().expect("utf-8");
    let out = tempfile::tempdir().expect("tempdir");
    let file = out.path().join("file.tar");
    let dest = format!("type=oci,dest={}", file.display());
    // One image both times: its creation time fixed.
    let epoch = [("SOURCE_DATE_EPOCH", "1700000000")];
    let r = root.kiln_with(
        KILN,
        &["build", "--progress=quiet", "-o", &dest, ctx],
        &epoch,
        None,
    );
    assert_eq!(r.code, 0, "{}", r.stderr);

    // skopeo checks every blob against its digest on the way.
    let transport = format!("oci-archive:{}", file.display());
    let copied = out.path().join("copied");
    let c = run(
        "skopeo",
        &["copy", &transport, &format!("oci:{}:x", copied.display())],
        None,
    );
    assert_eq!(c.code, 0, "skopeo copy: {}", c.stderr);
    let v = skopeo_inspect(&transport, true);
    let layer = v["layers"][1]["digest"].as_str().expect("the COPY layer");
    assert!(v["layers"][1]["size"].as_u64().expect("size") > 3 << 20);
    let hex = layer.trim_start_matches("sha256:");
    assert!(
        !root.path().join("store/blobs/sha256").join(hex).exists(),
        "the layer was written into the archive only"
    );

    // Standard output cannot go back to a header: the layer goes through the store, and the archive is the same.
    let piped = out.path().join("stdout.tar");
    let status = root
        .command(
            KILN,
            &["build", "--progress=quiet", "-o", "type=oci,dest=-", ctx],
        )
        .envs(epoch)
        .stdout(std::fs::File::create(&piped).expect("create"))
        .status()
        .expect("run kiln");
    assert!(status.success());
    assert!(root.path().join("store/blobs/sha256").join(hex).exists());
    assert!(
        std::fs::read(&piped).expect("read") == std::fs::read(&file).expect("read"),
        "the same bytes both ways"
    );
}
