//! `kiln build` with real parts: busybox made offline, overlayfs snapshots, runc, and skopeo/umoci checking what
//! kiln wrote.

use std::os::unix::fs::MetadataExt;

use kiln_tests::{repo_root, run, Context, Root};

use crate::KILN;

fn build(root: &Root, ctx: &Context, extra: &[&str]) -> kiln_tests::Run {
    let mut args = vec!["build", "--progress=plain"];
    args.extend_from_slice(extra);
    args.push(ctx.path().to_str().expect("utf-8"));
    root.kiln(KILN, &args)
}

fn cached_lines(stderr: &str) -> usize {
    stderr.lines().filter(|l| l.ends_with(" CACHED")).count()
}

const APP: &str = "\
FROM busybox
WORKDIR /app
COPY src/ ./src/
RUN cat src/a.txt src/b.txt > joined.txt
ARG MODE=fast
RUN echo mode=$MODE > mode.txt
COPY notes.md /notes.md
";

fn app_context() -> Context {
    Context::new()
        .file("Dockerfile", APP)
        .file("src/a.txt", "a\n")
        .file("src/b.txt", "b\n")
        .file("notes.md", "notes\n")
}

#[test]
fn the_cache_never_misses_without_cause_and_says_why_it_missed() {
    let root = Root::with_busybox(KILN);
    let ctx = app_context();
    let first = build(&root, &ctx, &["-t", "app:1"]);
    assert_eq!(first.code, 0, "{}", first.stderr);
    assert_eq!(cached_lines(&first.stderr), 0);

    let again = build(&root, &ctx, &["-t", "app:1"]);
    assert_eq!(again.code, 0, "{}", again.stderr);
    assert_eq!(
        cached_lines(&again.stderr),
        6,
        "every step cached:\n{}",
        again.stderr
    );

    // Touch without changing.
    std::fs::write(ctx.path().join("src/a.txt"), "a\n").expect("rewrite");
    let touched = build(&root, &ctx, &["-t", "app:1"]);
    assert_eq!(
        cached_lines(&touched.stderr),
        6,
        "touching must not miss:\n{}",
        touched.stderr
    );

    std::fs::write(ctx.path().join("src/b.txt"), "B\n").expect("change");
    let changed = build(&root, &ctx, &["-t", "app:1"]);
    assert_eq!(changed.code, 0, "{}", changed.stderr);
    assert!(
        changed
            .stderr
            .contains("cache miss: file changed: src/b.txt"),
        "{}",
        changed.stderr
    );
    assert!(
        changed.stderr.contains("cache miss: input 0 changed"),
        "{}",
        changed.stderr
    );
    assert_eq!(
        cached_lines(&changed.stderr),
        2,
        "FROM and WORKDIR stay cached:\n{}",
        changed.stderr
    );

    let arg = build(&root, &ctx, &["-t", "app:1", "--build-arg", "MODE=slow"]);
    assert_eq!(arg.code, 0, "{}", arg.stderr);
    assert!(
        arg.stderr
            .contains("cache miss: MODE changed: \"fast\" -> \"slow\""),
        "{}",
        arg.stderr
    );
    // As in BuildKit, a build arg reaches every RUN after its ARG line; steps before it stay cached.
    assert_eq!(
        cached_lines(&arg.stderr),
        4,
        "only the steps that see MODE re-run:\n{}",
        arg.stderr
    );

    // Another project built into the same root is never explained against this one's records.
    let other = Context::new().file("Dockerfile", "FROM busybox\nWORKDIR /elsewhere\nCOPY . .\n");
    let o = build(&root, &other, &[]);
    assert_eq!(o.code, 0, "{}", o.stderr);
    assert!(!o.stderr.contains("cache miss"), "{}", o.stderr);
    // And this project still is, after the other ran.
    std::fs::write(ctx.path().join("src/a.txt"), "A\n").expect("change");
    let back = build(&root, &ctx, &["-t", "app:1", "--build-arg", "MODE=slow"]);
    assert!(
        back.stderr.contains("cache miss: file changed: src/a.txt"),
        "{}",
        back.stderr
    );
}

/// A selection too big to list inside its cache record (more than 2,000 files) still names the one file that
/// changed, and only that one: the listing is kept beside the record. (Before, each build kept a different subset
/// — the first 2,000 hashed, in whatever order the threads finished — and a miss named files that had not changed.)
#[test]
fn a_miss_in_a_big_context_names_exactly_the_file_that_changed() {
    let root = Root::with_busybox(KILN);
    let mut ctx = Context::new().file("Dockerfile", "FROM busybox\nCOPY . /app\n");
    for i in 0..2500 {
        ctx = ctx.file(&format!("d{}/f{i}.txt", i % 25), format!("{i}\n"));
    }
    let first = build(&root, &ctx, &[]);
    assert_eq!(first.code, 0, "{}", first.stderr);
    std::fs::write(ctx.path().join("d7/f1907.txt"), "changed\n").expect("change");
    let r = build(&root, &ctx, &[]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let reasons: Vec<&str> = r
        .stderr
        .lines()
        .filter(|l| l.contains("cache miss:"))
        .collect();
    assert_eq!(reasons.len(), 1, "one reason, for the COPY:\n{}", r.stderr);
    assert!(
        reasons[0].ends_with("cache miss: file changed: d7/f1907.txt"),
        "{}",
        r.stderr
    );
}

/// The layers of `image` in `root`, bottom first.
fn layers_of(root: &Root, image: &str) -> Vec<String> {
    let out = root.kiln(KILN, &["inspect", image]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let v: serde_json::Value = serde_json::from_str(&out.stdout).expect("inspect json");
    v["Manifest"]["layers"]
        .as_array()
        .expect("layers")
        .iter()
        .map(|l| l["digest"].as_str().expect("digest").to_string())
        .collect()
}

/// A COPY that re-runs because some context files changed starts from a clone of its previous result (files
/// linked, not written) and replaces only what changed: its layer is exactly a fresh root's, and the previous
/// result is untouched (going back to the old files hits the old record and gives the old layer).
#[test]
fn a_rerun_copy_reuses_unchanged_files_and_gives_exactly_a_fresh_builds_layer() {
    let root = Root::with_busybox(KILN);
    let mut ctx = Context::new().file(
        "Dockerfile",
        "FROM busybox\nCOPY . /app\nRUN cat /app/a.txt > /copied\n",
    );
    for i in 0..60 {
        ctx = ctx.file(&format!("d{}/f{i}.txt", i % 4), format!("file {i}\n"));
    }
    ctx = ctx.file("a.txt", "first\n");
    std::fs::create_dir_all(ctx.path().join("empty/inner")).expect("empty dirs");
    let path = ctx.path().to_str().expect("utf-8").to_string();
    let tagged = |r: &Root, tag: &str| {
        let b = r.kiln(KILN, &["build", "--progress=plain", "-t", tag, &path]);
        assert_eq!(b.code, 0, "{}", b.stderr);
        b
    };
    tagged(&root, "r:1");
    let first = layers_of(&root, "r:1");
    std::fs::write(ctx.path().join("a.txt"), "second, longer\n").expect("change");
    std::fs::write(ctx.path().join("d1/f5.txt"), "FILE 5\n").expect("change");
    let again = tagged(&root, "r:2");
    assert!(
        again.stderr.contains("cache miss: file changed: a.txt"),
        "{}",
        again.stderr
    );
    let second = layers_of(&root, "r:2");
    // The unchanged files of the new result are the old result's, linked.
    let linked = std::fs::read_dir(root.path().join("snapshots"))
        .expect("snapshots")
        .flatten()
        .map(|e| e.path().join("diff/app/d2/f6.txt"))
        .filter(|p| std::fs::metadata(p).is_ok_and(|m| m.nlink() >= 2))
        .count();
    assert_eq!(linked, 2, "both COPY results hold one inode for d2/f6.txt");

    let fresh = Root::with_busybox(KILN);
    tagged(&fresh, "r:2");
    // (The RUN's layer holds a file made at run time, so only the COPY's is compared.)
    assert_eq!(
        second[1],
        layers_of(&fresh, "r:2")[1],
        "a reused COPY gives a fresh build's layer"
    );

    std::fs::write(ctx.path().join("a.txt"), "first\n").expect("change back");
    std::fs::write(ctx.path().join("d1/f5.txt"), "file 5\n").expect("change back");
    // The old contents again: the old record hits, and its snapshot still renders the layer it was recorded with
    // (doctor re-renders every lazy layer), so the clone wrote nothing through the links.
    let back = tagged(&root, "r:3");
    assert!(back.stderr.contains(" CACHED"), "{}", back.stderr);
    let third = layers_of(&root, "r:3");
    assert_eq!(third[1], first[1], "the old COPY result is the one reused");
    let doctor = root.kiln(KILN, &["doctor"]);
    assert_eq!(doctor.code, 0, "{}{}", doctor.stdout, doctor.stderr);

    // A removed (empty) directory, then a removed file, never survive from the previous result.
    let fresh = Root::with_busybox(KILN);
    std::fs::remove_dir_all(ctx.path().join("empty/inner")).expect("remove dir");
    std::fs::write(ctx.path().join("d0/f0.txt"), "changed too\n").expect("change");
    tagged(&root, "r:4");
    tagged(&fresh, "r:4");
    assert_eq!(layers_of(&root, "r:4")[1], layers_of(&fresh, "r:4")[1]);
    std::fs::remove_file(ctx.path().join("d3/f7.txt")).expect("remove file");
    std::fs::write(ctx.path().join("d0/f0.txt"), "changed again\n").expect("change");
    tagged(&root, "r:5");
    tagged(&fresh, "r:5");
    assert_eq!(layers_of(&root, "r:5")[1], layers_of(&fresh, "r:5")[1]);

    // A file only touched (same contents, another mtime) beside a changed one is copied again, not left linked
    // with its old mtime: a fresh build keeps the new one.
    let touched = std::process::Command::new("touch")
        .args(["-d", "@1000000000"])
        .arg(ctx.path().join("d2/f6.txt"))
        .status()
        .expect("touch");
    assert!(touched.success());
    std::fs::write(ctx.path().join("d0/f0.txt"), "changed a third time\n").expect("change");
    let sixth = tagged(&root, "r:6");
    assert!(
        sixth.stderr.contains("cache miss: file changed: d0/f0.txt"),
        "{}",
        sixth.stderr
    );
    let fresh = Root::with_busybox(KILN);
    tagged(&fresh, "r:6");
    assert_eq!(layers_of(&root, "r:6")[1], layers_of(&fresh, "r:6")[1]);
}

#[test]
fn a_failing_run_exits_1_with_its_output_and_line_and_unused_stages_never_run() {
    let root = Root::with_busybox(KILN);
    let ctx = Context::new().file(
        "Dockerfile",
        "FROM busybox AS broken\nRUN echo never-run && exit 9\n\nFROM busybox\nRUN echo about to fail\nRUN echo some output && exit 3\n",
    );
    let r = build(&root, &ctx, &[]);
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert!(r.stderr.contains("exit code: 3"), "{}", r.stderr);
    assert!(
        r.stderr.contains("some output"),
        "the step's last output lines are shown:\n{}",
        r.stderr
    );
    assert!(
        r.stderr.contains(":6 ------"),
        "the Dockerfile line is named:\n{}",
        r.stderr
    );
    assert!(
        !r.stderr.contains("never-run"),
        "the unused stage never ran:\n{}",
        r.stderr
    );
    let ok = build(
        &root,
        &Context::new().file(
            "Dockerfile",
            "FROM busybox AS broken\nRUN exit 9\nFROM busybox\nRUN true\n",
        ),
        &[],
    );
    assert_eq!(ok.code, 0, "{}", ok.stderr);
}

#[test]
fn independent_stages_run_at_the_same_time() {
    let root = Root::with_busybox(KILN);
    let stage = |n: &str| {
        // Each stage's RUN differs (its name), so they are two steps, not one step solved once.
        format!("FROM busybox AS {n}\nRUN echo {n} > /name && cut -d\" \" -f1 /proc/uptime > /start && sleep 1 && cut -d\" \" -f1 /proc/uptime > /end\n")
    };
    let df = format!(
        "{}{}FROM busybox\nCOPY --from=one /start /one.start\nCOPY --from=one /end /one.end\nCOPY --from=two /start /two.start\nCOPY --from=two /end /two.end\n",
        stage("one"),
        stage("two")
    );
    let ctx = Context::new().file("Dockerfile", df);
    let out = tempfile::tempdir().expect("tempdir");
    let dest = format!("type=local,dest={}", out.path().display());
    let trace = out.path().join("trace.json");
    let r = build(
        &root,
        &ctx,
        &["-o", &dest, "--trace", trace.to_str().expect("utf-8")],
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
    // The trace shows the two RUN steps side by side, on two lanes, overlapping.
    let doc: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&trace).expect("trace written")).expect("json");
    let runs: Vec<(u64, u64, u64)> = doc["traceEvents"]
        .as_array()
        .expect("traceEvents")
        .iter()
        .filter(|e| e["name"].as_str().is_some_and(|n| n.contains("RUN echo")))
        .map(|e| {
            let n = |k: &str| e[k].as_u64().expect("number");
            (n("tid"), n("ts"), n("ts") + n("dur"))
        })
        .collect();
    assert_eq!(runs.len(), 2, "{doc}");
    assert_ne!(runs[0].0, runs[1].0, "two lanes");
    assert!(
        runs[0].1 < runs[1].2 && runs[1].1 < runs[0].2,
        "overlap: {runs:?}"
    );
    assert!(
        runs.iter().all(|r| r.2 - r.1 >= 1_000_000),
        "each RUN lasts its sleep"
    );
    // The tty display draws running steps and collapses finished ones to one line each.
    let tty = root.kiln(
        KILN,
        &[
            "build",
            "--no-cache",
            "--progress=tty",
            ctx.path().to_str().expect("utf-8"),
        ],
    );
    assert_eq!(tty.code, 0, "{}", tty.stderr);
    assert!(tty.stderr.contains("\x1b["), "redraws with ANSI escapes");
    assert!(
        tty.stderr
            .lines()
            .any(|l| l.contains("RUN echo") && l.contains(" DONE ")),
        "{}",
        tty.stderr
    );
    assert!(tty.stderr.contains("kiln: "), "summary: {}", tty.stderr);
    let t = |f: &str| -> f64 {
        std::fs::read_to_string(out.path().join(f))
            .expect("timestamp file")
            .trim()
            .parse()
            .expect("seconds of uptime")
    };
    assert!(
        t("one.start") < t("two.end") && t("two.start") < t("one.end"),
        "the two stages' RUN steps overlap in time"
    );
}

#[test]
fn exported_images_are_accepted_by_skopeo_umoci_and_runc() {
    let root = Root::with_busybox(KILN);
    let hello = repo_root().join("examples/hello");
    let out = tempfile::tempdir().expect("tempdir");
    let archive = out.path().join("hello.tar");
    let dest = format!("type=oci,dest={}", archive.display());
    let meta = out.path().join("meta.json");
    let r = root.kiln(
        KILN,
        &[
            "build",
            "-t",
            "hello:e2e",
            "-o",
            &dest,
            "--metadata-file",
            meta.to_str().expect("utf-8"),
            hello.to_str().expect("utf-8"),
        ],
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
    let metadata: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&meta).expect("metadata")).expect("json");
    let digest = metadata["containerimage.digest"]
        .as_str()
        .expect("containerimage.digest")
        .to_string();

    let inspect = run(
        "skopeo",
        &["inspect", &format!("oci-archive:{}", archive.display())],
        None,
    );
    assert_eq!(
        inspect.code, 0,
        "skopeo rejected the archive: {}",
        inspect.stderr
    );
    let v: serde_json::Value = serde_json::from_str(&inspect.stdout).expect("skopeo json");
    assert_eq!(v["Digest"], digest.as_str());
    assert_eq!(v["Labels"]["org.opencontainers.image.title"], "kiln hello");
    // The base's layer is the base image's own blob (as BuildKit keeps it), not one made again from its files:
    // a registry that has busybox has it already.
    let base = root.kiln(KILN, &["inspect", "busybox"]);
    assert_eq!(base.code, 0, "{}", base.stderr);
    let base: serde_json::Value = serde_json::from_str(&base.stdout).expect("inspect json");
    assert_eq!(
        v["Layers"][0], base["Manifest"]["layers"][0]["digest"],
        "{v} against {base}"
    );
    assert_eq!(v["Layers"].as_array().map(Vec::len), Some(4), "{v}");

    let layout = out.path().join("layout");
    std::fs::create_dir(&layout).expect("mkdir");
    assert_eq!(
        run(
            "tar",
            &[
                "-C",
                layout.to_str().expect("utf-8"),
                "-xf",
                archive.to_str().expect("utf-8")
            ],
            None
        )
        .code,
        0
    );
    let bundle = out.path().join("bundle");
    // umoci finds the image by its `org.opencontainers.image.ref.name`: the tag alone, as BuildKit writes it.
    let image = format!("{}:e2e", layout.display());
    let unpack = run(
        "umoci",
        &["unpack", "--image", &image, bundle.to_str().expect("utf-8")],
        None,
    );
    assert_eq!(
        unpack.code, 0,
        "umoci rejected the image: {}",
        unpack.stderr
    );
    let msg = std::fs::read_to_string(bundle.join("rootfs/app/message.txt"))
        .expect("message.txt in the image");
    assert_eq!(msg, "hello from kiln\nbuilt by kiln\n");
    let config = bundle.join("config.json");
    let text = std::fs::read_to_string(&config)
        .expect("config.json")
        .replace("\"terminal\": true", "\"terminal\": false");
    std::fs::write(&config, text).expect("write config");
    let id = format!("kiln-e2e-{}", std::process::id());
    let ran = std::process::Command::new("runc")
        .args(["run", &id])
        .current_dir(&bundle)
        .env("PATH", kiln_tests::path_with_sbin())
        .output()
        .expect("runc");
    assert_eq!(
        String::from_utf8_lossy(&ran.stdout),
        "hello from kiln\nbuilt by kiln\n",
        "{}",
        String::from_utf8_lossy(&ran.stderr)
    );

    let images = root.kiln(KILN, &["images"]);
    assert!(
        images.stdout.contains("docker.io/library/hello:e2e"),
        "{}",
        images.stdout
    );
}

#[test]
fn reproducible_with_source_date_epoch_in_two_empty_roots() {
    let hello = repo_root().join("examples/hello");
    let digest = |root: &Root| {
        let dir = tempfile::tempdir().expect("tempdir");
        let meta = dir.path().join("m.json");
        let r = root.kiln(
            KILN,
            &[
                "build",
                "--build-arg",
                "SOURCE_DATE_EPOCH=1445412480",
                "-t",
                "repro:1",
                "--metadata-file",
                meta.to_str().expect("utf-8"),
                hello.to_str().expect("utf-8"),
            ],
        );
        assert_eq!(r.code, 0, "{}", r.stderr);
        let v: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&meta).expect("meta")).expect("json");
        v["containerimage.digest"]
            .as_str()
            .expect("digest")
            .to_string()
    };
    let a = digest(&Root::with_busybox(KILN));
    let b = digest(&Root::with_busybox(KILN));
    assert_eq!(a, b, "same inputs, same manifest digest");
}

#[test]
fn limits_bound_every_run_and_an_oom_kill_is_reported_as_such() {
    let root = Root::with_busybox(KILN);
    let hog = Context::new().file(
        "Dockerfile",
        "FROM busybox\nRUN x=$(head -c 209715200 /dev/zero | tr '\\0' a); echo ${#x}\n",
    );
    let r = build(&root, &hog, &["--memory", "64m"]);
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert!(r.stderr.contains("OOM killer"), "{}", r.stderr);
    assert!(r.stderr.contains("Dockerfile:2"), "{}", r.stderr);
    let pids = Context::new().file(
        "Dockerfile",
        "FROM busybox\nRUN i=0; while [ $i -lt 200 ]; do sleep 30 & i=$((i+1)); done; echo started all\n",
    );
    let r = build(&root, &pids, &["--pids-limit", "32"]);
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert!(r.stderr.contains("can't fork"), "{}", r.stderr);
    assert!(
        !r.stderr.lines().any(|l| l
            .split(' ')
            .nth(1)
            .is_some_and(|t| t.parse::<f64>().is_ok())
            && l.ends_with(" started all")),
        "{}",
        r.stderr
    );
    let bad = build(&root, &pids, &["--memory", "lots"]);
    assert_eq!(bad.code, 2, "{}", bad.stderr);
    assert!(bad.stderr.contains("--memory lots"), "{}", bad.stderr);
}

fn kiln_command(root: &Root, args: &[&str]) -> std::process::Command {
    root.command(KILN, args)
}

#[test]
fn kill_9_mid_build_then_a_rebuild_succeeds_and_reuses_finished_steps() {
    use std::io::BufRead;
    let root = Root::with_busybox(KILN);
    let ctx = Context::new().file(
        "Dockerfile",
        "FROM busybox\nRUN echo first > /first\nARG PAUSE=20\nRUN echo waiting; sleep $PAUSE\n",
    );
    let mut child = kiln_command(
        &root,
        &[
            "build",
            "--progress=plain",
            ctx.path().to_str().expect("utf-8"),
        ],
    )
    .stderr(std::process::Stdio::piped())
    .spawn()
    .expect("start kiln");
    let stderr = child.stderr.take().expect("stderr");
    // Wait until the long step is running (its first output line), then kill -9.
    for line in std::io::BufReader::new(stderr).lines() {
        let line = line.expect("line");
        if line.ends_with(" waiting") {
            break;
        }
    }
    let killed = child.id();
    child.kill().expect("kill -9");
    child.wait().expect("reap");
    let again = build(
        &root,
        &ctx,
        &["--build-arg", "PAUSE=0", "-t", "after-kill:1"],
    );
    assert_eq!(again.code, 0, "{}", again.stderr);
    // FROM and the finished RUN come from the cache; only the killed step runs again.
    assert_eq!(cached_lines(&again.stderr), 2, "{}", again.stderr);
    // The next build swept what the killed one left: its container and its cgroups.
    let prefix = format!("kiln-{killed}-");
    for c in ["memory", "pids", "cpu"] {
        let left: Vec<String> = std::fs::read_dir(format!("/sys/fs/cgroup/{c}/kiln"))
            .map(|d| {
                d.flatten()
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .filter(|n| n.starts_with(&prefix))
                    .collect()
            })
            .unwrap_or_default();
        assert!(left.is_empty(), "{c}: {left:?}");
    }
    let ps = run("ps", &["-eo", "args"], None).stdout;
    assert!(
        !ps.lines().any(|l| l == "sleep 20"),
        "the killed step's process is gone:\n{ps}"
    );
    // And its network: namespace, veth pair, subnet claim.
    let netns = run("ip", &["netns", "list"], None).stdout;
    assert!(!netns.contains(&prefix), "{netns}");
    let claims: Vec<String> = std::fs::read_dir("/run/kiln/net")
        .map(|d| {
            d.flatten()
                .filter_map(|e| std::fs::read_to_string(e.path()).ok())
                .filter(|owner| owner.starts_with(&prefix))
                .collect()
        })
        .unwrap_or_default();
    assert!(claims.is_empty(), "{claims:?}");
}

#[test]
fn two_concurrent_builds_on_one_root_both_succeed() {
    let root = Root::with_busybox(KILN);
    let shared = "FROM busybox\nRUN echo shared > /shared && sleep 1\n";
    let a = Context::new().file("Dockerfile", format!("{shared}RUN echo a > /who\n"));
    let b = Context::new().file("Dockerfile", format!("{shared}RUN echo b > /who\n"));
    let spawn = |ctx: &Context, tag: &str| {
        kiln_command(
            &root,
            &[
                "build",
                "--progress=plain",
                "-t",
                tag,
                ctx.path().to_str().expect("utf-8"),
            ],
        )
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("start kiln")
    };
    let (ca, cb) = (spawn(&a, "conc:a"), spawn(&b, "conc:b"));
    let (oa, ob) = (
        ca.wait_with_output().expect("a"),
        cb.wait_with_output().expect("b"),
    );
    assert!(
        oa.status.success(),
        "{}",
        String::from_utf8_lossy(&oa.stderr)
    );
    assert!(
        ob.status.success(),
        "{}",
        String::from_utf8_lossy(&ob.stderr)
    );
    let images = root.kiln(KILN, &["images"]).stdout;
    assert!(
        images.contains("conc:a") && images.contains("conc:b"),
        "{images}"
    );
    for (tag, who) in [("conc:a", "a"), ("conc:b", "b")] {
        let out = tempfile::tempdir().expect("tempdir");
        let ctx = Context::new().file("Dockerfile", format!("FROM {tag}\n"));
        let dest = format!("type=local,dest={}", out.path().display());
        let r = build(&root, &ctx, &["-o", &dest]);
        assert_eq!(r.code, 0, "{}", r.stderr);
        assert_eq!(
            std::fs::read_to_string(out.path().join("who")).expect("who"),
            format!("{who}\n")
        );
        assert_eq!(
            std::fs::read_to_string(out.path().join("shared")).expect("shared"),
            "shared\n"
        );
    }
}

#[test]
fn stdin_gives_a_dockerfile_or_a_tar_context() {
    let root = Root::with_busybox(KILN);
    let r = root.path().to_str().expect("utf-8").to_string();
    let out = tempfile::tempdir().expect("tempdir");
    let dest = |n: &str| format!("type=local,dest={}", out.path().join(n).display());
    let lone = run(
        KILN,
        &[
            "build",
            "--root",
            &r,
            "--progress=plain",
            "-o",
            &dest("lone"),
            "-",
        ],
        Some(b"FROM busybox\nRUN echo from-stdin > /got\n"),
    );
    assert_eq!(lone.code, 0, "{}", lone.stderr);
    assert_eq!(
        std::fs::read_to_string(out.path().join("lone/got")).expect("got"),
        "from-stdin\n"
    );
    let ctx = Context::new()
        .file("docker/Build.df", "FROM busybox\nCOPY data.txt /got\n")
        .file("data.txt", "from-a-tar\n");
    let tarred = std::process::Command::new("tar")
        .args(["-C", ctx.path().to_str().expect("utf-8"), "-czf", "-", "."])
        .output()
        .expect("tar");
    let from_tar = run(
        KILN,
        &[
            "build",
            "--root",
            &r,
            "--progress=plain",
            "-f",
            "docker/Build.df",
            "-o",
            &dest("tar"),
            "-",
        ],
        Some(&tarred.stdout),
    );
    assert_eq!(from_tar.code, 0, "{}", from_tar.stderr);
    assert_eq!(
        std::fs::read_to_string(out.path().join("tar/got")).expect("got"),
        "from-a-tar\n"
    );
    let work: Vec<_> = std::fs::read_dir(root.path().join("work"))
        .map(|d| d.flatten().map(|e| e.file_name()).collect())
        .unwrap_or_default();
    assert!(work.is_empty(), "staged contexts are removed: {work:?}");
}

#[test]
fn ssh_agents_are_forwarded_only_to_the_steps_that_mount_them() {
    let root = Root::with_busybox(KILN);
    let dir = tempfile::tempdir().expect("tempdir");
    let sock = dir.path().join("agent.sock");
    let _agent = std::os::unix::net::UnixListener::bind(&sock).expect("bind an agent socket");
    let ctx = Context::new().file(
        "Dockerfile",
        "FROM busybox\nRUN --mount=type=ssh test -S \"$SSH_AUTH_SOCK\" && echo \"agent at $SSH_AUTH_SOCK\"\nRUN test -z \"$SSH_AUTH_SOCK\" && ! test -e /run/buildkit/ssh_agent.0 && echo no-agent-here\n",
    );
    let spec = format!("default={}", sock.display());
    let r = build(&root, &ctx, &["--ssh", &spec]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(
        r.stderr.contains("agent at /run/buildkit/ssh_agent.0"),
        "{}",
        r.stderr
    );
    assert!(r.stderr.contains("no-agent-here"), "{}", r.stderr);
    // required=true without an agent fails before anything runs, naming the id.
    let req = Context::new().file(
        "Dockerfile",
        "FROM busybox\nRUN --mount=type=ssh,id=deploy,required=true true\n",
    );
    let r = build(&root, &req, &[]);
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert!(
        r.stderr.contains("ssh agent deploy is required"),
        "{}",
        r.stderr
    );
    let bad = build(&root, &req, &["--ssh", "deploy=/etc/passwd"]);
    assert_eq!(bad.code, 2, "{}", bad.stderr);
    assert!(bad.stderr.contains("not an agent socket"), "{}", bad.stderr);
}

#[test]
fn a_context_with_only_a_lower_case_dockerfile_builds_from_it() {
    // BuildKit's testDockerfileLowercase.
    let root = Root::empty();
    let ctx = Context::new()
        .file("dockerfile", "FROM scratch\nCOPY a.txt /a.txt\n")
        .file("a.txt", "a\n");
    let out = tempfile::tempdir().expect("tempdir");
    let dest = format!("type=local,dest={}", out.path().display());
    let r = build(&root, &ctx, &["-o", &dest]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(
        std::fs::read_to_string(out.path().join("a.txt")).expect("a.txt"),
        "a\n"
    );
}

#[test]
fn a_wildcard_source_that_matches_nothing_copies_the_other_sources() {
    // BuildKit's testEmptyWildcard; a file that later matches is picked up (the empty match is in the key).
    let root = Root::empty();
    let ctx = Context::new()
        .file("Dockerfile", "FROM scratch\nCOPY foo nomatch* /\n")
        .file("foo", "contents0");
    let out = tempfile::tempdir().expect("tempdir");
    let dest = format!("type=local,dest={}", out.path().join("a").display());
    let r = build(&root, &ctx, &["-o", &dest]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(
        std::fs::read_to_string(out.path().join("a/foo")).expect("foo"),
        "contents0"
    );
    std::fs::write(ctx.path().join("nomatch-now"), "x").expect("write");
    let dest = format!("type=local,dest={}", out.path().join("b").display());
    let r = build(&root, &ctx, &["-o", &dest]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(out.path().join("b/nomatch-now").is_file(), "{}", r.stderr);
}

#[test]
fn each_step_s_history_entry_names_its_own_layer() {
    // BuildKit's testExportedHistory: WORKDIR / makes no layer, a RUN that changes nothing keeps an empty one,
    // and the history's non-empty entries line up with the layers.
    let root = Root::with_busybox(KILN);
    let ctx = Context::new()
        .file(
            "Dockerfile",
            "FROM busybox AS base\nENV foo=bar\nCOPY foo /foo2\nFROM busybox\nLABEL lbl=val\nCOPY --from=base foo2 foo3\nWORKDIR /\nRUN echo bar > foo4\nRUN [\"ls\"]\nEXPOSE 2375 5000 1234/udp\n",
        )
        .file("foo", "contents0");
    let r = build(&root, &ctx, &["-t", "hist:1"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let inspect = root.kiln(KILN, &["inspect", "hist:1"]);
    let v: serde_json::Value = serde_json::from_str(&inspect.stdout).expect("inspect json");
    let config = &v["Config"];
    let diff_ids = config["rootfs"]["diff_ids"].as_array().expect("diff_ids");
    assert_eq!(
        diff_ids.len(),
        4,
        "busybox, COPY, RUN echo, RUN ls: {config}"
    );
    assert_eq!(
        diff_ids[3], "sha256:5f70bf18a086007016e948b04aed3b82103a36bea41755b6cddfaf10ace3c6ef",
        "RUN ls changed nothing: an empty tar"
    );
    let steps: Vec<(bool, String)> = config["history"]
        .as_array()
        .expect("history")
        .iter()
        .map(|h| {
            (
                h["empty_layer"].as_bool().unwrap_or(false),
                h["created_by"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect();
    let want = [
        (true, "LABEL lbl=val"),
        // testExportedHistory requires "COPY foo2 foo3": dispatchCopy's history names no --from.
        (false, "COPY foo2 foo3 # buildkit"),
        (true, "WORKDIR /"),
        (false, "echo bar > foo4"),
        (false, "RUN ls"),
        (true, "EXPOSE [1234/udp 2375/tcp 5000/tcp]"),
    ];
    let tail = &steps[steps.len() - want.len()..];
    for ((empty, by), (want_empty, want_by)) in tail.iter().zip(want) {
        assert!(by.contains(want_by), "{by} / {want_by}: {steps:?}");
        assert_eq!(*empty, want_empty, "{by}: {steps:?}");
    }
    assert_eq!(
        steps.iter().filter(|(empty, _)| !empty).count(),
        diff_ids.len(),
        "{steps:?}"
    );
}

#[test]
fn a_step_runs_with_its_primary_group_among_its_groups() {
    // BuildKit's testUserAdditionalGids (CVE-2023-25173), on a busybox given BuildKit's busybox's group lines.
    let root = Root::with_busybox(KILN);
    let ctx = Context::new().file(
        "Dockerfile",
        "FROM busybox\n\
         RUN echo 'daemon:x:1:1:daemon:/:/bin/sh' >> /etc/passwd && echo 'daemon:x:1:' >> /etc/group && echo 'wheel:x:10:root' >> /etc/group\n\
         SHELL [\"/bin/sh\", \"-euxc\"]\n\
         RUN [ \"$(id)\" = \"uid=0(root) gid=0(root) groups=0(root),10(wheel)\" ]\n\
         USER 1234\n\
         RUN [ \"$(id)\" = \"uid=1234 gid=0(root) groups=0(root)\" ]\n\
         USER 1234:1234\n\
         RUN [ \"$(id)\" = \"uid=1234 gid=1234 groups=1234\" ]\n\
         USER daemon\n\
         RUN [ \"$(id)\" = \"uid=1(daemon) gid=1(daemon) groups=1(daemon)\" ]\n",
    );
    let r = build(&root, &ctx, &[]);
    assert_eq!(r.code, 0, "{}", r.stderr);
}
