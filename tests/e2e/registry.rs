//! kiln against a real registry (Debian's docker-registry on a loopback port): push and pull round trips checked
//! by skopeo, FROM pulling a base image, `--push`, Basic auth over TLS and token auth with `kiln login`, a proxy
//! that drops connections and injects 500s and 429s, and the errors users meet.

use kiln_tests::proxy::{FaultyProxy, Plan};
use kiln_tests::registry::{free_port, Auth, Registry};
use kiln_tests::{run, Context, Root};

use crate::KILN;

fn skopeo_inspect(reference: &str, extra: &[&str]) -> serde_json::Value {
    let mut args = vec!["inspect", "--raw"];
    args.extend_from_slice(extra);
    args.push(reference);
    let r = run("skopeo", &args, None);
    assert_eq!(r.code, 0, "skopeo inspect {reference}: {}", r.stderr);
    serde_json::from_str(&r.stdout).expect("skopeo prints JSON")
}

/// An image with a RUN step and a layer of `random_kib` KiB of random bytes (so compression cannot shrink it).
fn build_app(root: &Root, name: &str, random_kib: usize) {
    let ctx = Context::new().file(
        "Dockerfile",
        format!(
            "FROM busybox\nRUN head -c {}k /dev/urandom > /blob && echo built > /hello\n",
            random_kib
        ),
    );
    let r = root.kiln(
        KILN,
        &[
            "build",
            "--progress",
            "plain",
            "-t",
            name,
            ctx.path().to_str().unwrap(),
        ],
    );
    assert_eq!(r.code, 0, "build failed: {}", r.stderr);
}

fn no_ingest_leftovers(root: &Root) {
    let ingest = root.path().join("store/ingest");
    let left: Vec<_> = std::fs::read_dir(&ingest)
        .map(|d| d.flatten().collect())
        .unwrap_or_default();
    assert!(left.is_empty(), "ingest leftovers: {left:?}");
}

#[test]
fn push_and_pull_round_trip_with_skopeo_checking_and_a_second_push_uploading_nothing() {
    let reg = Registry::start(Auth::Anonymous);
    let root = Root::with_busybox(KILN);
    build_app(&root, "app:1", 512);
    let target = format!("{}/team/app:1", reg.host);
    let r = root.kiln(KILN, &["push", "app:1", &target]);
    assert_eq!(r.code, 0, "push: {}", r.stderr);
    assert!(r.stderr.contains("3 blobs uploaded"), "{}", r.stderr);
    // The layers compressed during the push were streamed and put under the digest the store hashed: the registry
    // refused nothing (a wrong digest would be put, refused, and the layer sent again from the store).
    let log = reg.log();
    assert!(
        !log.contains("digest invalid") && !log.contains("blob upload invalid"),
        "{log}"
    );

    // skopeo reads what kiln pushed and copies it out, verifying every digest on the way.
    let m = skopeo_inspect(&format!("docker://{target}"), &["--tls-verify=false"]);
    assert_eq!(m["mediaType"], "application/vnd.oci.image.manifest.v1+json");
    for l in m["layers"].as_array().unwrap() {
        assert_eq!(
            l["mediaType"],
            "application/vnd.oci.image.layer.v1.tar+gzip"
        );
    }
    let out = tempfile::tempdir().unwrap();
    let dest = format!("oci:{}:x", out.path().join("copy").display());
    let c = run(
        "skopeo",
        &[
            "copy",
            "--src-tls-verify=false",
            &format!("docker://{target}"),
            &dest,
        ],
        None,
    );
    assert_eq!(c.code, 0, "skopeo copy: {}", c.stderr);

    // The same image again: every blob is already there, nothing is uploaded.
    let again = root.kiln(KILN, &["push", "app:1", &target]);
    assert_eq!(again.code, 0, "{}", again.stderr);
    assert!(
        again
            .stderr
            .contains("0 blobs uploaded (0 bytes), 0 mounted, 3 already there"),
        "{}",
        again.stderr
    );
    // Another repository of the same registry: blobs are mounted, not uploaded.
    let other = root.kiln(
        KILN,
        &["push", "app:1", &format!("{}/other/app:2", reg.host)],
    );
    assert_eq!(other.code, 0, "{}", other.stderr);
    assert!(
        other
            .stderr
            .contains("0 blobs uploaded (0 bytes), 3 mounted"),
        "{}",
        other.stderr
    );

    // The layers the first push compressed went to the registry only: the store keeps their memo, not a second
    // copy, and `kiln doctor` finds nothing wrong with that.
    let pushed_layers: Vec<String> = m["layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["digest"].as_str().unwrap().to_string())
        .collect();
    let app_layer = pushed_layers.last().unwrap();
    let stored = |d: &str| {
        root.path()
            .join("store/blobs/sha256")
            .join(d.trim_start_matches("sha256:"))
            .exists()
    };
    assert!(
        !stored(app_layer),
        "a streamed layer is not kept in the store"
    );
    let doctor = root.kiln(KILN, &["doctor"]);
    assert_eq!(doctor.code, 0, "doctor: {}{}", doctor.stdout, doctor.stderr);
    // A registry that lacks it: the memo is not enough, so the layer is made again and sent — the same bytes.
    let fresh = Registry::start(Auth::Anonymous);
    let elsewhere = format!("{}/team/app:1", fresh.host);
    let r = root.kiln(KILN, &["push", "app:1", &elsewhere]);
    assert_eq!(r.code, 0, "push to a second registry: {}", r.stderr);
    assert!(r.stderr.contains("3 blobs uploaded"), "{}", r.stderr);
    let m2 = skopeo_inspect(&format!("docker://{elsewhere}"), &["--tls-verify=false"]);
    assert_eq!(
        m2["layers"], m["layers"],
        "the layer made again is the same blob"
    );
    assert!(fresh.manifests_with_missing_blobs().is_empty());

    // A second machine: FROM pulls the pushed image by itself and a RUN sees its files.
    let b = Root::empty();
    let ctx = Context::new().file(
        "Dockerfile",
        format!("FROM {target}\nRUN cat /hello > /seen\n"),
    );
    let r = b.kiln(
        KILN,
        &[
            "build",
            "--progress",
            "plain",
            "-t",
            "child",
            "-o",
            &format!("type=local,dest={}", out.path().join("fs").display()),
            ctx.path().to_str().unwrap(),
        ],
    );
    assert_eq!(r.code, 0, "build FROM the registry: {}", r.stderr);
    assert_eq!(
        std::fs::read_to_string(out.path().join("fs/seen")).unwrap(),
        "built\n"
    );
    let images = b.kiln(KILN, &["images"]);
    assert!(images.stdout.contains(&target), "{}", images.stdout);
    no_ingest_leftovers(&b);

    // kiln pull by digest of what skopeo saw.
    let digest = run(
        "skopeo",
        &[
            "inspect",
            "--tls-verify=false",
            "--format",
            "{{.Digest}}",
            &format!("docker://{target}"),
        ],
        None,
    );
    let c2 = Root::empty();
    let pinned = format!("{}/team/app@{}", reg.host, digest.stdout.trim());
    let p = c2.kiln(KILN, &["pull", &pinned]);
    assert_eq!(p.code, 0, "pull by digest: {}", p.stderr);
    assert!(reg.manifests_with_missing_blobs().is_empty());
}

#[test]
fn build_push_puts_what_the_build_made_and_reports_the_pushed_digest() {
    let reg = Registry::start(Auth::Anonymous);
    let root = Root::with_busybox(KILN);
    let ctx = Context::new().file("Dockerfile", "FROM busybox\nRUN echo pushed > /p\n");
    let meta = tempfile::NamedTempFile::new().unwrap();
    let name = format!("{}/built:latest", reg.host);
    let r = root.kiln(
        KILN,
        &[
            "build",
            "--progress",
            "plain",
            "--push",
            "-t",
            &name,
            "--metadata-file",
            meta.path().to_str().unwrap(),
            ctx.path().to_str().unwrap(),
        ],
    );
    assert_eq!(r.code, 0, "build --push: {}", r.stderr);
    let md: serde_json::Value =
        serde_json::from_slice(&std::fs::read(meta.path()).unwrap()).unwrap();
    let digest = run(
        "skopeo",
        &[
            "inspect",
            "--tls-verify=false",
            "--format",
            "{{.Digest}}",
            &format!("docker://{name}"),
        ],
        None,
    );
    assert_eq!(
        md["containerimage.digest"].as_str().unwrap(),
        digest.stdout.trim()
    );
    // -o type=image,push=true is the same thing.
    let r = root.kiln(
        KILN,
        &[
            "build",
            "--progress",
            "plain",
            "-o",
            &format!("type=image,name={}/other:1,push=true", reg.host),
            ctx.path().to_str().unwrap(),
        ],
    );
    assert_eq!(r.code, 0, "push=true: {}", r.stderr);
    skopeo_inspect(
        &format!("docker://{}/other:1", reg.host),
        &["--tls-verify=false"],
    );
}

#[test]
fn basic_auth_over_tls_with_login_and_logout() {
    let reg = Registry::start(Auth::BasicTls {
        user: "ci".into(),
        password: "s3cret".into(),
    });
    let root = Root::with_busybox(KILN);
    let docker_config = tempfile::tempdir().unwrap();
    let cfg = docker_config.path().to_str().unwrap();
    let ca = reg.ca();
    let env = [
        ("DOCKER_CONFIG", cfg),
        ("KILN_REGISTRY_CA", ca.to_str().unwrap()),
    ];
    let target = format!("{}/private/app:1", reg.host);

    // No credentials: one line naming the URL, the status and what to do.
    let r = root.kiln_with(KILN, &["push", "busybox", &target], &env, None);
    assert_eq!(r.code, 1);
    assert!(
        r.stderr.contains(&format!("https://{}/v2/", reg.host))
            && r.stderr.contains("401")
            && r.stderr.contains("kiln login"),
        "{}",
        r.stderr
    );

    // A wrong password is refused and not saved.
    let bad = root.kiln_with(
        KILN,
        &["login", "-u", "ci", "--password-stdin", &reg.host],
        &env,
        Some(b"wrong\n"),
    );
    assert_eq!(bad.code, 1, "{}", bad.stderr);
    assert!(
        bad.stderr.contains("401")
            && bad.stderr.contains(&reg.host)
            && bad.stderr.contains("wrong user name or password"),
        "{}",
        bad.stderr
    );
    assert!(!docker_config.path().join("config.json").exists());

    let ok = root.kiln_with(
        KILN,
        &["login", "-u", "ci", "--password-stdin", &reg.host],
        &env,
        Some(b"s3cret\n"),
    );
    assert_eq!(ok.code, 0, "{}", ok.stderr);
    let saved: serde_json::Value =
        serde_json::from_slice(&std::fs::read(docker_config.path().join("config.json")).unwrap())
            .unwrap();
    assert!(saved["auths"][&reg.host]["auth"].is_string(), "{saved}");

    let r = root.kiln_with(KILN, &["push", "busybox", &target], &env, None);
    assert_eq!(r.code, 0, "push with the saved login: {}", r.stderr);
    // skopeo reads the same config.json, and trusts the same certificate.
    let certs = tempfile::tempdir().unwrap();
    std::fs::copy(&ca, certs.path().join("ca.crt")).unwrap();
    let s = run(
        "skopeo",
        &[
            "inspect",
            "--authfile",
            docker_config.path().join("config.json").to_str().unwrap(),
            "--cert-dir",
            certs.path().to_str().unwrap(),
            &format!("docker://{target}"),
        ],
        None,
    );
    assert_eq!(s.code, 0, "skopeo with kiln's login: {}", s.stderr);

    // Without the CA the certificate is refused, naming the URL.
    let b = Root::empty();
    let r = b.kiln_with(KILN, &["pull", &target], &[("DOCKER_CONFIG", cfg)], None);
    assert_eq!(r.code, 1);
    assert!(
        r.stderr.contains(&reg.host) && r.stderr.contains("certificate"),
        "{}",
        r.stderr
    );
    let r = b.kiln_with(KILN, &["pull", &target], &env, None);
    assert_eq!(r.code, 0, "pull with login and CA: {}", r.stderr);

    let out = root.kiln_with(KILN, &["logout", &reg.host], &env, None);
    assert_eq!(out.code, 0);
    let r = b.kiln_with(KILN, &["pull", &target], &env, None);
    assert_eq!(r.code, 1, "pull after logout must fail");
    assert!(r.stderr.contains("authentication required"), "{}", r.stderr);
}

#[test]
fn token_auth_flow_with_cached_tokens() {
    let reg = Registry::start(Auth::Token {
        user: "bot".into(),
        password: "tok-pw".into(),
    });
    let root = Root::with_busybox(KILN);
    build_app(&root, "app:1", 64);
    let docker_config = tempfile::tempdir().unwrap();
    let cfg = docker_config.path().to_str().unwrap();
    let env = [("DOCKER_CONFIG", cfg)];
    let target = format!("{}/bots/app:1", reg.host);
    let anon = root.kiln_with(KILN, &["push", "app:1", &target], &env, None);
    assert_eq!(anon.code, 1);
    assert!(
        anon.stderr.contains("authentication required") && anon.stderr.contains("401"),
        "{}",
        anon.stderr
    );

    let bad = root.kiln_with(
        KILN,
        &["login", "-u", "bot", "--password-stdin", &reg.host],
        &env,
        Some(b"nope"),
    );
    assert_eq!(bad.code, 1);
    assert!(
        bad.stderr.contains("/token") && bad.stderr.contains("401"),
        "{}",
        bad.stderr
    );
    let ok = root.kiln_with(
        KILN,
        &["login", "-u", "bot", "--password-stdin", &reg.host],
        &env,
        Some(b"tok-pw"),
    );
    assert_eq!(ok.code, 0, "{}", ok.stderr);

    let tokens = reg.tokens.as_ref().unwrap();
    let before = tokens.issued();
    let r = root.kiln_with(KILN, &["push", "app:1", &target], &env, None);
    assert_eq!(r.code, 0, "push with a token: {}", r.stderr);
    // One token for the push scope serves every request of the push (HEADs, uploads, the manifest).
    assert!(
        tokens.issued() - before <= 2,
        "tokens are cached per scope: {} issued",
        tokens.issued() - before
    );

    let b = Root::empty();
    let r = b.kiln_with(KILN, &["pull", &target], &env, None);
    assert_eq!(r.code, 0, "pull with a token: {}", r.stderr);
    // Mounting from another repository asks for pull on the source in the same token.
    let r = root.kiln_with(
        KILN,
        &["push", "app:1", &format!("{}/bots/copy:1", reg.host)],
        &env,
        None,
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(r.stderr.contains("3 mounted"), "{}", r.stderr);
}

#[test]
fn dropped_connections_500s_and_429s_are_survived_with_verified_digests() {
    let reg = Registry::start(Auth::Anonymous);
    let proxy = FaultyProxy::start(
        &reg.host,
        Plan {
            status_every: Some((5, 500)),
            cut_blob_gets_after: Some(100 << 10),
            cut_patches_after: Some(300 << 10),
            always: None,
            max_upload: None,
        },
    );
    let root = Root::with_busybox(KILN);
    build_app(&root, "big:1", 3 << 10);
    // Chunks of 1 MiB so the 3 MiB layer goes up in PATCHes, one of which the proxy cuts.
    let env = [
        ("KILN_REGISTRY_CHUNK", "1m"),
        ("KILN_REGISTRY_BACKOFF_MS", "20"),
    ];
    let target = format!("{}/flaky/big:1", proxy.host);
    let r = root.kiln_with(KILN, &["push", "big:1", &target], &env, None);
    assert_eq!(r.code, 0, "push through faults: {}", r.stderr);
    let pushed_faults = proxy.faults();
    assert!(
        pushed_faults >= 2,
        "the proxy injected faults during the push ({pushed_faults})"
    );
    let copies = tempfile::tempdir().unwrap();
    let c = run(
        "skopeo",
        &[
            "copy",
            "--src-tls-verify=false",
            &format!("docker://{}/flaky/big:1", reg.host),
            &format!("oci:{}:x", copies.path().join("o").display()),
        ],
        None,
    );
    assert_eq!(c.code, 0, "the registry holds a whole image: {}", c.stderr);

    let b = Root::empty();
    let r = b.kiln_with(KILN, &["pull", &target], &env, None);
    assert_eq!(r.code, 0, "pull through faults: {}", r.stderr);
    assert!(
        proxy.faults() > pushed_faults,
        "faults were injected during the pull too"
    );
    no_ingest_leftovers(&b);
    // What was pulled is what was pushed.
    let pushed = root.kiln(KILN, &["inspect", "big:1"]);
    let pulled = b.kiln(KILN, &["inspect", &format!("{}/flaky/big:1", proxy.host)]);
    let diff_ids = |s: &str| {
        serde_json::from_str::<serde_json::Value>(s).unwrap()["config"]["rootfs"]["diff_ids"]
            .clone()
    };
    assert_eq!(diff_ids(&pushed.stdout), diff_ids(&pulled.stdout));

    // 429s with Retry-After are waited out.
    let slow = FaultyProxy::start(
        &reg.host,
        Plan {
            status_every: Some((3, 429)),
            ..Plan::default()
        },
    );
    let c = Root::empty();
    let r = c.kiln_with(
        KILN,
        &["pull", &format!("{}/flaky/big:1", slow.host)],
        &env,
        None,
    );
    assert_eq!(r.code, 0, "pull through 429s: {}", r.stderr);
    assert!(slow.faults() >= 1);
    assert!(reg.manifests_with_missing_blobs().is_empty());
}

#[test]
fn registry_errors_are_one_clear_line_and_leave_nothing_behind() {
    let reg = Registry::start(Auth::Anonymous);
    let root = Root::with_busybox(KILN);
    let env = [
        ("KILN_REGISTRY_RETRIES", "2"),
        ("KILN_REGISTRY_BACKOFF_MS", "10"),
    ];
    let line = |r: &kiln_tests::Run| {
        assert_eq!(r.code, 1, "{}", r.stderr);
        assert_eq!(r.stderr.trim().lines().count(), 1, "one line: {}", r.stderr);
        r.stderr.clone()
    };
    let e = line(&root.kiln_with(
        KILN,
        &["pull", &format!("{}/nobody/here:1", reg.host)],
        &env,
        None,
    ));
    assert!(
        e.contains(&format!("http://{}/v2/nobody/here/manifests/1", reg.host)) && e.contains("404"),
        "{e}"
    );
    root.kiln(KILN, &["push", "busybox", &format!("{}/bb:1", reg.host)]);
    let e = line(&root.kiln_with(
        KILN,
        &["pull", &format!("{}/bb:nosuchtag", reg.host)],
        &env,
        None,
    ));
    assert!(e.contains("404") && e.contains("MANIFEST_UNKNOWN"), "{e}");

    let down = format!("127.0.0.1:{}", free_port());
    let e = line(&root.kiln_with(KILN, &["pull", &format!("{down}/x:1")], &env, None));
    assert!(
        e.contains(&down) && e.to_lowercase().contains("refused"),
        "{e}"
    );
    let ctx = Context::new().file("Dockerfile", format!("FROM {down}/x:1\nRUN true\n"));
    let r = root.kiln_with(
        KILN,
        &["build", "--progress", "plain", ctx.path().to_str().unwrap()],
        &env,
        None,
    );
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(
        r.stderr.contains("Dockerfile:1") && r.stderr.contains(&down),
        "{}",
        r.stderr
    );

    // A registry answering 503 to everything: the push fails after its retries and no manifest lands.
    let broken = FaultyProxy::start(
        &reg.host,
        Plan {
            always: Some(503),
            max_upload: None,
            ..Plan::default()
        },
    );
    let e = line(&root.kiln_with(
        KILN,
        &["push", "busybox", &format!("{}/never:1", broken.host)],
        &env,
        None,
    ));
    assert!(e.contains("503") && e.contains(&broken.host), "{e}");
    let tags = run(
        "skopeo",
        &[
            "list-tags",
            "--tls-verify=false",
            &format!("docker://{}/never", reg.host),
        ],
        None,
    );
    assert_ne!(tags.code, 0, "no repository was made: {}", tags.stdout);
    no_ingest_leftovers(&root);
}

#[test]
fn docker_hub_names_are_pulled_through_a_mirror_from_the_config_file() {
    let reg = Registry::start(Auth::Anonymous);
    let root = Root::with_busybox(KILN);
    let r = root.kiln(
        KILN,
        &[
            "push",
            "busybox",
            &format!("{}/library/busybox:latest", reg.host),
        ],
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
    let cfg = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(
        cfg.path(),
        format!("[registry.\"docker.io\"]\n  mirrors = [\"{}\"]\n", reg.host),
    )
    .unwrap();
    let env = [("KILN_CONFIG", cfg.path().to_str().unwrap())];
    // A machine with nothing: `FROM busybox` means docker.io/library/busybox, which only the mirror can serve here.
    let b = Root::empty();
    let ctx = Context::new().file("Dockerfile", "FROM busybox\nRUN echo from-mirror\n");
    let r = b.kiln_with(
        KILN,
        &[
            "build",
            "--progress",
            "plain",
            "-t",
            "m",
            ctx.path().to_str().unwrap(),
        ],
        &env,
        None,
    );
    assert_eq!(r.code, 0, "build through the mirror: {}", r.stderr);
    let images = b.kiln(KILN, &["images"]);
    assert!(
        images.stdout.contains("docker.io/library/busybox:latest"),
        "{}",
        images.stdout
    );
    // A typo in the file is an error naming it.
    std::fs::write(cfg.path(), "[registry.\"docker.io\"]\n  mirorrs = []\n").unwrap();
    let r = b.kiln_with(KILN, &["pull", "busybox"], &env, None);
    assert_eq!(r.code, 2);
    assert!(
        r.stderr.contains(cfg.path().to_str().unwrap()) && r.stderr.contains("mirorrs"),
        "{}",
        r.stderr
    );
}

/// sha256 hex of `bytes` (by sha256sum, as the tests check digests with real tools).
fn sha256_hex(bytes: &[u8]) -> String {
    let r = run("sha256sum", &["-"], Some(bytes));
    r.stdout.split(' ').next().expect("a digest").to_string()
}

/// Writes `bytes` into the registry's own storage as a blob of `repo` (what a broken or malicious registry
/// would serve: no validation on the way in), returning its digest hex. `hex` overrides the name it is kept under.
fn plant_blob(reg: &Registry, repo: &str, bytes: &[u8], hex: Option<&str>) -> String {
    let hex = hex.map_or_else(|| sha256_hex(bytes), str::to_string);
    let v2 = reg.data().join("docker/registry/v2");
    let blob = v2.join("blobs/sha256").join(&hex[..2]).join(&hex);
    std::fs::create_dir_all(&blob).expect("blob dir");
    std::fs::write(blob.join("data"), bytes).expect("blob data");
    let link = v2
        .join("repositories")
        .join(repo)
        .join("_layers/sha256")
        .join(&hex);
    std::fs::create_dir_all(&link).expect("layer link dir");
    std::fs::write(link.join("link"), format!("sha256:{hex}")).expect("layer link");
    hex
}

/// Tags `manifest` (planted as it is, unchecked) as `repo:tag` in the registry's storage.
fn plant_manifest(reg: &Registry, repo: &str, tag: &str, manifest: &[u8]) {
    let hex = plant_blob(reg, repo, manifest, None);
    let m = reg
        .data()
        .join("docker/registry/v2/repositories")
        .join(repo)
        .join("_manifests");
    for dir in [
        m.join("revisions/sha256").join(&hex),
        m.join("tags").join(tag).join("current"),
        m.join("tags").join(tag).join("index/sha256").join(&hex),
    ] {
        std::fs::create_dir_all(&dir).expect("manifest dir");
        std::fs::write(dir.join("link"), format!("sha256:{hex}")).expect("manifest link");
    }
}

#[test]
fn manifests_with_wrong_sizes_or_digests_are_refused_and_leave_nothing_behind() {
    let reg = Registry::start(Auth::Anonymous);
    let root = Root::with_busybox(KILN);
    let pushed = root.kiln(KILN, &["push", "busybox", &format!("{}/bb:1", reg.host)]);
    assert_eq!(pushed.code, 0, "{}", pushed.stderr);
    let good = skopeo_inspect(
        &format!("docker://{}/bb:1", reg.host),
        &["--tls-verify=false"],
    );

    // The layer one byte shorter than the manifest says; then a layer whose bytes are not what its digest names.
    let mut short = good.clone();
    let size = short["layers"][0]["size"].as_u64().expect("size");
    short["layers"][0]["size"] = serde_json::json!(size - 1);
    plant_manifest(
        &reg,
        "bb",
        "short",
        &serde_json::to_vec(&short).expect("json"),
    );
    let liar = b"not the layer its digest names".to_vec();
    let claimed = sha256_hex(b"something else entirely");
    plant_blob(&reg, "bb", &liar, Some(&claimed));
    let mut lying = good.clone();
    lying["layers"][0]["digest"] = serde_json::json!(format!("sha256:{claimed}"));
    lying["layers"][0]["size"] = serde_json::json!(liar.len());
    plant_manifest(
        &reg,
        "bb",
        "lying",
        &serde_json::to_vec(&lying).expect("json"),
    );
    // A manifest whose config is not JSON at all.
    let mut garbage = good.clone();
    let junk = plant_blob(&reg, "bb", b"\x00\xffnot json", None);
    garbage["config"]["digest"] = serde_json::json!(format!("sha256:{junk}"));
    garbage["config"]["size"] = serde_json::json!(10);
    plant_manifest(
        &reg,
        "bb",
        "garbage",
        &serde_json::to_vec(&garbage).expect("json"),
    );

    let other = Root::empty();
    let env = [
        ("KILN_REGISTRY_RETRIES", "1"),
        ("KILN_REGISTRY_BACKOFF_MS", "10"),
    ];
    for (tag, needle) in [
        ("short", "byte"),
        ("lying", &claimed[..12]),
        ("garbage", &junk[..12]),
    ] {
        let r = other.kiln_with(
            KILN,
            &["pull", &format!("{}/bb:{tag}", reg.host)],
            &env,
            None,
        );
        assert_eq!(r.code, 1, "{tag}: {}", r.stderr);
        assert_eq!(
            r.stderr.trim().lines().count(),
            1,
            "{tag}: one line: {}",
            r.stderr
        );
        assert!(r.stderr.contains(needle), "{tag}: {}", r.stderr);
        no_ingest_leftovers(&other);
        let images = other.kiln(KILN, &["images"]);
        assert!(!images.stdout.contains("bb"), "{tag}: {}", images.stdout);
        let doctor = other.kiln(KILN, &["doctor"]);
        assert_eq!(doctor.code, 0, "{tag}: {}{}", doctor.stdout, doctor.stderr);
    }
}
