//! Caches that travel: `--cache-to` / `--cache-from` through a local directory and through a real registry, the
//! two-runner case (a second root with nothing in it runs no RUN at all), mode=min against mode=max, cache mount
//! contents carried along, and imported records whose blobs are missing or damaged counting as misses.

use kiln_tests::registry::{Auth, Registry};
use kiln_tests::{Context, Root};

use crate::KILN;

fn build(root: &Root, ctx: &Context, extra: &[&str]) -> kiln_tests::Run {
    let mut args = vec!["build", "--progress=plain"];
    args.extend_from_slice(extra);
    args.push(ctx.path().to_str().expect("utf-8"));
    let r = root.kiln(KILN, &args);
    assert_eq!(r.code, 0, "build {extra:?}: {}", r.stderr);
    r
}

/// The `#N` ids of the RUN steps, and of those reported CACHED.
fn runs_and_cached(stderr: &str) -> (Vec<String>, Vec<String>) {
    let mut runs = Vec::new();
    let mut cached = Vec::new();
    for l in stderr.lines() {
        let Some((id, rest)) = l.split_once(' ') else {
            continue;
        };
        if !id.starts_with('#') {
            continue;
        }
        if rest.starts_with('[') && rest.contains("] RUN ") && !runs.contains(&id.to_string()) {
            runs.push(id.to_string());
        }
        if rest == "CACHED" {
            cached.push(id.to_string());
        }
    }
    (runs, cached)
}

fn file(dir: &std::path::Path, name: &str) -> String {
    std::fs::read_to_string(dir.join(name)).unwrap_or_else(|e| panic!("{name}: {e}"))
}

#[test]
fn a_second_runner_with_an_empty_root_runs_no_run_step_and_finds_its_cache_mount_warm() {
    let reg = Registry::start(Auth::Anonymous);
    let a = Root::with_busybox(KILN);
    let base = format!("{}/busybox:latest", reg.host);
    let p = a.kiln(KILN, &["push", "busybox", &base]);
    assert_eq!(p.code, 0, "{}", p.stderr);
    let cache = format!("{}/team/cache:main", reg.host);
    let dockerfile = format!(
        "FROM {base}\n\
         COPY input.txt /input.txt\n\
         RUN --mount=type=cache,id=pip,target=/root/.cache/pip sh -c \
         'ls /root/.cache/pip > /seen; cp /input.txt /root/.cache/pip/wheel-$(cat /input.txt)'\n\
         RUN echo $RANDOM$RANDOM > /ran\n"
    );
    let ctx = Context::new()
        .file("Dockerfile", &dockerfile)
        .file("input.txt", "one");
    let out_a = tempfile::tempdir().unwrap();
    let r = build(
        &a,
        &ctx,
        &[
            "--cache-to",
            &format!("type=registry,ref={cache},mode=max,cache-mounts=true"),
            "-o",
            &format!("type=local,dest={}", out_a.path().display()),
        ],
    );
    assert!(r.stderr.contains("cache exported to"), "{}", r.stderr);

    // Runner B: nothing but the registry.
    let b = Root::empty();
    let out_b = tempfile::tempdir().unwrap();
    let r = build(
        &b,
        &ctx,
        &[
            "--cache-from",
            &cache,
            "-o",
            &format!("type=local,dest={}", out_b.path().display()),
        ],
    );
    let (runs, cached) = runs_and_cached(&r.stderr);
    assert_eq!(runs.len(), 2, "{}", r.stderr);
    for id in &runs {
        assert!(cached.contains(id), "RUN {id} ran in B:\n{}", r.stderr);
    }
    assert_eq!(
        file(out_b.path(), "ran"),
        file(out_a.path(), "ran"),
        "A's result"
    );

    // A changed input (in the same checkout: explanations are per project) makes B run the pip step, which
    // finds A's cache mount contents.
    std::fs::write(ctx.path().join("input.txt"), "two").expect("change input");
    let r = build(
        &b,
        &ctx,
        &[
            "--cache-from",
            &cache,
            "-o",
            &format!("type=local,dest={}", out_b.path().display()),
        ],
    );
    assert!(
        r.stderr.contains("cache miss: file changed: input.txt"),
        "{}",
        r.stderr
    );
    assert_eq!(
        file(out_b.path(), "seen"),
        "wheel-one\n",
        "the mount came warm from A"
    );
}

#[test]
fn an_image_pushed_with_inline_cache_is_a_cache_source_for_an_empty_root() {
    let reg = Registry::start(Auth::Anonymous);
    let a = Root::with_busybox(KILN);
    let base = format!("{}/busybox:latest", reg.host);
    let p = a.kiln(KILN, &["push", "busybox", &base]);
    assert_eq!(p.code, 0, "{}", p.stderr);
    let image = format!("{}/team/app:1", reg.host);
    let ctx = Context::new()
        .file(
            "Dockerfile",
            format!(
                "FROM {base} AS tool\n\
                 RUN echo $RANDOM > /tool\n\
                 FROM {base}\n\
                 COPY input.txt /input.txt\n\
                 RUN echo $RANDOM$RANDOM > /ran\n\
                 ENV DONE=1\n\
                 RUN mkdir -p /empty-step-makes-no-layer && rmdir /empty-step-makes-no-layer\n\
                 RUN echo $RANDOM > /last\n"
            ),
        )
        .file("input.txt", "one");
    let out_a = tempfile::tempdir().unwrap();
    build(
        &a,
        &ctx,
        &[
            "--cache-to",
            "type=inline",
            "--provenance=false",
            "--push",
            "-t",
            &image,
            "-o",
            &format!("type=local,dest={}", out_a.path().display()),
        ],
    );
    let config = kiln_tests::run(
        "skopeo",
        &[
            "inspect",
            "--tls-verify=false",
            "--config",
            "--raw",
            &format!("docker://{image}"),
        ],
        None,
    );
    assert_eq!(config.code, 0, "{}", config.stderr);
    let config: serde_json::Value = serde_json::from_str(&config.stdout).expect("config json");
    let records = config["kiln.cache.v1"]["records"]
        .as_array()
        .expect("inline cache in the pushed config");
    assert!(
        !records
            .iter()
            .any(|r| r["description"].as_str().unwrap_or("").contains("/tool")),
        "the unused-by-the-image stage is not in an inline cache: {records:?}"
    );

    let manifest = kiln_tests::run(
        "skopeo",
        &[
            "inspect",
            "--tls-verify=false",
            "--raw",
            &format!("docker://{image}"),
        ],
        None,
    );
    let manifest: serde_json::Value = serde_json::from_str(&manifest.stdout).expect("manifest");
    let layers = manifest["layers"].as_array().expect("layers").len();
    assert_eq!(
        layers, 5,
        "busybox, COPY and three RUNs: the mkdir/rmdir step keeps its empty layer, as BuildKit's do"
    );
    assert_eq!(
        records.iter().filter_map(|r| r["layers"].as_u64()).max(),
        Some(layers as u64),
        "{records:?}"
    );

    // An image built without inline cache: no use as a cache source.
    let plain = format!("{}/team/plain:1", reg.host);
    build(&a, &ctx, &["--push", "-t", &plain]);

    // Runner B: the registry and the images' names only; several --cache-from at once, the first unusable.
    let b = Root::empty();
    let out = tempfile::tempdir().unwrap();
    let r = build(
        &b,
        &ctx,
        &[
            "--cache-from",
            &plain,
            "--cache-from",
            &image,
            "-o",
            &format!("type=local,dest={}", out.path().display()),
        ],
    );
    let (runs, cached) = runs_and_cached(&r.stderr);
    assert_eq!(runs.len(), 3, "{}", r.stderr);
    for id in &runs {
        assert!(cached.contains(id), "RUN {id} ran in B:\n{}", r.stderr);
    }
    for f in ["ran", "last"] {
        assert_eq!(file(out.path(), f), file(out_a.path(), f), "A's {f}");
    }
    assert!(
        r.stderr
            .contains("neither a kiln cache nor an image with inline cache"),
        "the plain image is refused with its reason: {}",
        r.stderr
    );

    // Alone, it gives no hit and the build goes on.
    let r = build(&Root::empty(), &ctx, &["--cache-from", &plain]);
    let (runs, cached) = runs_and_cached(&r.stderr);
    assert!(runs.iter().all(|id| !cached.contains(id)), "{}", r.stderr);
}

#[test]
fn local_caches_keep_min_or_max_and_a_missing_or_damaged_blob_is_a_miss() {
    let a = Root::with_busybox(KILN);
    let ctx = Context::new().file(
        "Dockerfile",
        "FROM busybox AS build\n\
         RUN echo $RANDOM > /built\n\
         FROM busybox\n\
         COPY --from=build /built /built\n\
         RUN echo $RANDOM > /ran\n",
    );
    let dirs = tempfile::tempdir().unwrap();
    let min = dirs.path().join("min");
    let max = dirs.path().join("max");
    build(
        &a,
        &ctx,
        &[
            "--cache-to",
            &format!("type=local,dest={}", min.display()),
            "--cache-to",
            &format!("type=local,dest={},mode=max", max.display()),
        ],
    );
    assert!(min.join("index.json").is_file() && max.join("oci-layout").is_file());

    // mode=min: the final image's steps only, so the builder stage's RUN runs again elsewhere.
    let b = Root::with_busybox(KILN);
    let r = build(
        &b,
        &ctx,
        &["--cache-from", &format!("type=local,src={}", min.display())],
    );
    let (runs, cached) = runs_and_cached(&r.stderr);
    assert_eq!(runs.len(), 2, "{}", r.stderr);
    let ran: Vec<&String> = runs.iter().filter(|id| !cached.contains(id)).collect();
    assert_eq!(ran.len(), 1, "only the builder RUN: {}", r.stderr);
    // mode=max: everything.
    let c = Root::with_busybox(KILN);
    let r = build(
        &c,
        &ctx,
        &["--cache-from", &format!("type=local,src={}", max.display())],
    );
    let (runs, cached) = runs_and_cached(&r.stderr);
    assert!(runs.iter().all(|id| cached.contains(id)), "{}", r.stderr);

    // Damage every layer blob of the max cache but one kind at a time: a missing blob, then a wrong one.
    let blobs: Vec<std::path::PathBuf> = std::fs::read_dir(max.join("blobs/sha256"))
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .collect();
    let index: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(max.join("index.json")).unwrap()).unwrap();
    let manifest_hex = index["manifests"][0]["digest"].as_str().unwrap()[7..].to_string();
    let manifest: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(max.join("blobs/sha256").join(&manifest_hex)).unwrap(),
    )
    .unwrap();
    let layers: Vec<String> = manifest["layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["digest"].as_str().unwrap()[7..].to_string())
        .collect();
    assert!(layers.len() >= 3, "{manifest}");
    for (i, hex) in layers.iter().enumerate() {
        let p = max.join("blobs/sha256").join(hex);
        if i % 2 == 0 {
            std::fs::remove_file(&p).unwrap();
        } else {
            std::fs::write(&p, b"not the layer").unwrap();
        }
    }
    assert!(blobs.len() > layers.len());
    let d = Root::with_busybox(KILN);
    let out = tempfile::tempdir().unwrap();
    let r = build(
        &d,
        &ctx,
        &[
            "--cache-from",
            &format!("type=local,src={}", max.display()),
            "-o",
            &format!("type=local,dest={}", out.path().display()),
        ],
    );
    assert!(
        r.stderr.contains("imported cache not usable"),
        "{}",
        r.stderr
    );
    assert!(out.path().join("ran").is_file() && out.path().join("built").is_file());
    let left: Vec<_> = std::fs::read_dir(d.path().join("store/ingest"))
        .map(|d| d.flatten().collect())
        .unwrap_or_default();
    assert!(left.is_empty(), "ingest leftovers: {left:?}");
}

#[test]
fn prune_removes_the_least_recently_used_first_and_waits_for_a_running_build() {
    let root = Root::with_busybox(KILN);
    let big = |name: &str, kib: u32| {
        Context::new().file(
            "Dockerfile",
            format!("FROM busybox\nRUN head -c {kib}k /dev/urandom > /{name}\n"),
        )
    };
    let older = big("older", 3072);
    let newer = big("newer", 1536);
    build(&root, &older, &[]);
    build(&root, &newer, &[]);
    let du = root.kiln(KILN, &["du", "--verbose"]);
    assert_eq!(du.code, 0, "{}", du.stderr);
    assert!(
        du.stdout.contains("head -c 3072k") && du.stdout.contains("snapshots"),
        "{}",
        du.stdout
    );

    let p = root.kiln(KILN, &["prune"]);
    assert_eq!(
        p.code, 2,
        "prune without --force does nothing: {}",
        p.stderr
    );
    let p = root.kiln(KILN, &["prune", "-f", "--filter", "until=1h"]);
    assert!(p.stdout.contains("Removed 0 cache records"), "{}", p.stdout);
    // Base (~2 MiB) + 3 MiB + 1.5 MiB is over 4 MiB: the older RUN goes, the base both use stays (it was used
    // again by the newer build). No disk has a million GiB free, so min-free-space prunes down to the reserve.
    let p = root.kiln(
        KILN,
        &[
            "prune",
            "-f",
            "--min-free-space",
            "1000000g",
            "--reserved-space",
            "4m",
        ],
    );
    assert!(p.stdout.contains("Removed 1 cache records"), "{}", p.stdout);
    let (runs, cached) = runs_and_cached(&build(&root, &newer, &[]).stderr);
    assert!(runs.iter().all(|r| cached.contains(r)), "newer kept");
    let r = build(&root, &older, &[]);
    let (runs, cached) = runs_and_cached(&r.stderr);
    assert!(
        runs.iter().all(|r| !cached.contains(r)),
        "older pruned: {}",
        r.stderr
    );
    assert!(
        r.stderr.contains("#1 CACHED"),
        "the base stayed: {}",
        r.stderr
    );

    // A prune started while a build runs waits for it: when the prune returns, the build is over (and fine).
    let slow = Context::new().file(
        "Dockerfile",
        "FROM busybox\nRUN sleep 2 && echo done > /x\n",
    );
    let mut running = root
        .command(
            KILN,
            &["build", "--progress=plain", slow.path().to_str().unwrap()],
        )
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(700));
    let p = root.kiln(KILN, &["prune", "-af"]);
    assert_eq!(p.code, 0, "{}", p.stderr);
    let finished = running.try_wait().unwrap();
    assert!(
        finished.is_some(),
        "prune returned while the build still ran"
    );
    assert!(finished.unwrap().success(), "the build survived the prune");
    let du = root.kiln(KILN, &["du"]);
    assert!(
        du.stdout.contains("cache records           0"),
        "{}",
        du.stdout
    );
    // A removed image's lazy layers go with their snapshots, the notes of their digests included.
    build(&root, &newer, &["-t", "gone:1"]);
    assert_eq!(root.kiln(KILN, &["rmi", "gone:1"]).code, 0);
    let p = root.kiln(KILN, &["prune", "-af"]);
    assert_eq!(p.code, 0, "{}", p.stderr);
    let d = root.kiln(KILN, &["doctor"]);
    assert!(
        d.stdout.contains("is consistent"),
        "{}{}",
        d.stdout,
        d.stderr
    );

    // kiln.toml's [gc] max-used-space prunes after a build.
    let config = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(config.path(), "[gc]\nmax-used-space = \"1m\"\n").unwrap();
    let r = root.kiln_with(
        KILN,
        &["build", "--progress=plain", older.path().to_str().unwrap()],
        &[("KILN_CONFIG", config.path().to_str().unwrap())],
        None,
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(r.stderr.contains("kiln: gc: removed"), "{}", r.stderr);
}
