//! The crash suite: kiln killed with SIGKILL at random moments of builds that write large layers, of pushes and of
//! pulls. After every kill `kiln doctor` finds nothing damaged (only leftovers), the registry holds no manifest
//! whose blobs are missing, and the next run succeeds, reuses what finished before the kill and tidies what the
//! kill left, so that `kiln doctor` then finds nothing at all. The number of kills
//! is KILN_CRASH_KILLS (default 50); KILN_CRASH_SEED replays a run (the seed is in every failure message).

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use kiln_tests::registry::{Auth, Registry};
use kiln_tests::{Context, Root};

use crate::KILN;

/// xorshift64*: enough randomness to spread kills, and replayable from its seed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// Uniform in [0, 1).
    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// Runs `cmd`, SIGKILLs it after `after`; true when it was still running then (a real kill).
fn killed_after(mut cmd: Command, after: Duration) -> bool {
    let mut child = cmd
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("start kiln");
    let deadline = Instant::now() + after;
    while Instant::now() < deadline {
        if child.try_wait().expect("wait").is_some() {
            return false;
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    let running = child.try_wait().expect("wait").is_none();
    let _ = child.kill();
    let _ = child.wait();
    running
}

/// The `damaged` lines of `kiln doctor` on `root` (leftovers of the kill are allowed).
fn damage(root: &Path) -> Vec<String> {
    let out = kiln_tests::run(
        KILN,
        &["doctor", "--root", root.to_str().expect("utf-8")],
        None,
    );
    assert!(
        out.code == 0 || out.code == 1,
        "doctor failed: {}",
        out.stderr
    );
    out.stdout
        .lines()
        .filter(|l| l.starts_with("damaged"))
        .map(str::to_string)
        .collect()
}

/// `kiln doctor --quick` on `root` finds nothing at all: the run after a kill tidied what the kill left.
fn tidy(root: &Path, why: &str) {
    let out = kiln_tests::run(
        KILN,
        &["doctor", "--quick", "--root", root.to_str().expect("utf-8")],
        None,
    );
    assert_eq!(out.code, 0, "{why}: {}{}", out.stdout, out.stderr);
}

/// Descriptions of the published cache records in `root`, by record file. A killed build can leave a record's
/// temporary (`.tmp.PID.N`) complete but never renamed: that step did not finish, and the next run sweeps it, so it
/// is not counted (counting it made this suite flake once, with KILN_CRASH_SEED=1796049785618301389: the step ran
/// again, rightly, and its miss was explained against the previous round's record).
fn records(root: &Path) -> BTreeSet<(String, String)> {
    let mut out = BTreeSet::new();
    for e in std::fs::read_dir(root.join("cache/records"))
        .into_iter()
        .flatten()
        .flatten()
    {
        let name = e.file_name().to_string_lossy().into_owned();
        if name.starts_with('.') || !name.ends_with(".json") {
            continue;
        }
        if let Ok(text) = std::fs::read_to_string(e.path()) {
            if let Ok(v) = serde_json::from_str::<serde_json::Value>(&text) {
                let d = v["description"].as_str().unwrap_or_default().to_string();
                out.insert((name, d));
            }
        }
    }
    out
}

/// The step descriptions (`[2/4] RUN ...`) that plain progress reports CACHED.
fn cached_steps(stderr: &str) -> BTreeSet<String> {
    let mut names = std::collections::BTreeMap::new();
    let mut out = BTreeSet::new();
    for l in stderr.lines() {
        let Some((id, rest)) = l.split_once(' ') else {
            continue;
        };
        if rest.starts_with('[') {
            names.entry(id.to_string()).or_insert(rest.to_string());
        } else if rest == "CACHED" {
            if let Some(n) = names.get(id) {
                out.insert(n.clone());
            }
        }
    }
    out
}

/// Changes a byte of the big context file and grows it by one, so its COPY (and what follows) is new work.
fn touch_big(path: &Path, rng: &mut Rng) {
    let mut bytes = std::fs::read(path).expect("read big.bin");
    let at = (rng.next() as usize) % bytes.len();
    bytes[at] = bytes[at].wrapping_add(1);
    bytes.push(at as u8);
    std::fs::write(path, bytes).expect("write big.bin");
}

#[derive(Clone, Copy, Debug)]
enum Op {
    Build,
    Push,
    Pull,
}

#[test]
fn kill_9_at_random_moments_never_damages_the_store_and_the_next_run_reuses_finished_work() {
    let kills: usize = std::env::var("KILN_CRASH_KILLS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(50);
    let seed: u64 = std::env::var("KILN_CRASH_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(1, |d| d.as_nanos() as u64 | 1)
        });
    let mut rng = Rng(seed);
    let root = Root::with_busybox(KILN);
    let pull_root = Root::empty();
    let registry = Registry::start(Auth::Anonymous);
    let mut noise = vec![0u8; 24 << 20];
    for chunk in noise.chunks_mut(8) {
        chunk.copy_from_slice(&rng.next().to_le_bytes()[..chunk.len()]);
    }
    let ctx = Context::new()
        .file(
            "Dockerfile",
            "FROM busybox\nARG N\nCOPY big.bin /data/big.bin\n\
             RUN head -c 16777216 /dev/urandom > /data/gen && echo $N > /data/n\n\
             RUN md5sum /data/big.bin /data/gen > /data/sums\n",
        )
        .file("big.bin", noise);
    let big = ctx.path().join("big.bin");
    let ctx_path = ctx.path().to_str().expect("utf-8").to_string();
    let build_args = |n: usize| -> Vec<String> {
        [
            "build",
            "--progress=plain",
            "--build-arg",
            &format!("N={n}"),
            "-t",
            "crash:latest",
            &ctx_path,
        ]
        .iter()
        .map(|s| s.to_string())
        .collect()
    };
    let why = |what: &str| format!("{what} (KILN_CRASH_SEED={seed})");

    // Uninterrupted runs first: they say how long each operation takes, so kills land all through it.
    let timed = |f: &dyn Fn() -> kiln_tests::Run| {
        let t = Instant::now();
        let r = f();
        assert_eq!(r.code, 0, "{}", why(&r.stderr));
        t.elapsed()
    };
    let args0 = build_args(0);
    let args0: Vec<&str> = args0.iter().map(String::as_str).collect();
    let mut took_build = timed(&|| root.kiln(KILN, &args0));
    let target = |v: usize| format!("{}/crash:v{v}", registry.host);
    let mut took_push = timed(&|| root.kiln(KILN, &["push", "crash:latest", &target(0)]));
    let mut took_pull = timed(&|| pull_root.kiln(KILN, &["pull", &target(0)]));
    let mut pushed = 0usize;

    let (mut done, mut attempts, mut n) = (0usize, 0usize, 0usize);
    let mut by_op = [0usize; 3];
    while done < kills {
        attempts += 1;
        assert!(
            attempts < kills * 4,
            "{}",
            why("too many kills landed after the operation finished")
        );
        let op = [Op::Build, Op::Build, Op::Build, Op::Push, Op::Pull][attempts % 5];
        match op {
            Op::Build => {
                n += 1;
                touch_big(&big, &mut rng);
                let args = build_args(n);
                let args: Vec<&str> = args.iter().map(String::as_str).collect();
                let before = records(root.path());
                let at = took_build.mul_f64(rng.unit() * 1.1);
                if !killed_after(root.command(KILN, &args), at) {
                    continue;
                }
                let bad = damage(root.path());
                assert!(
                    bad.is_empty(),
                    "{}",
                    why(&format!("build killed at {at:?}: {bad:?}"))
                );
                let finished: BTreeSet<String> = records(root.path())
                    .difference(&before)
                    .map(|(_, d)| d.clone())
                    .collect();
                let t = Instant::now();
                let again = root.kiln(KILN, &args);
                took_build = t.elapsed().max(took_build / 2);
                assert_eq!(again.code, 0, "{}", why(&again.stderr));
                tidy(
                    root.path(),
                    &why("after the build that followed a killed one"),
                );
                let cached = cached_steps(&again.stderr);
                for step in &finished {
                    assert!(
                        cached.iter().any(|c| c.contains(step.as_str())),
                        "{}",
                        why(&format!(
                            "{step} finished before the kill at {at:?} but ran again:\n{}",
                            again.stderr
                        ))
                    );
                }
                by_op[0] += 1;
            }
            Op::Push => {
                let v = pushed + 1;
                let at = took_push.mul_f64(rng.unit() * 1.1);
                if !killed_after(
                    root.command(KILN, &["push", "crash:latest", &target(v)]),
                    at,
                ) {
                    pushed = v;
                    continue;
                }
                let bad = damage(root.path());
                assert!(
                    bad.is_empty(),
                    "{}",
                    why(&format!("push killed at {at:?}: {bad:?}"))
                );
                let dangling = registry.manifests_with_missing_blobs();
                assert!(dangling.is_empty(), "{}", why(&format!("{dangling:?}")));
                let t = Instant::now();
                let again = root.kiln(KILN, &["push", "crash:latest", &target(v)]);
                took_push = t.elapsed().max(took_push / 2);
                assert_eq!(again.code, 0, "{}", why(&again.stderr));
                tidy(
                    root.path(),
                    &why("after the push that followed a killed one"),
                );
                pushed = v;
                by_op[1] += 1;
            }
            Op::Pull => {
                let at = took_pull.mul_f64(rng.unit() * 1.1);
                let what = target(pushed);
                if !killed_after(pull_root.command(KILN, &["pull", &what]), at) {
                    continue;
                }
                let bad = damage(pull_root.path());
                assert!(
                    bad.is_empty(),
                    "{}",
                    why(&format!("pull killed at {at:?}: {bad:?}"))
                );
                let t = Instant::now();
                let again = pull_root.kiln(KILN, &["pull", &what]);
                took_pull = t.elapsed().max(took_pull / 2);
                assert_eq!(again.code, 0, "{}", why(&again.stderr));
                tidy(
                    pull_root.path(),
                    &why("after the pull that followed a killed one"),
                );
                by_op[2] += 1;
            }
        }
        done += 1;
    }
    eprintln!(
        "crash suite: {done} kills (builds {}, pushes {}, pulls {}) in {attempts} attempts, seed {seed}",
        by_op[0], by_op[1], by_op[2]
    );
    // A clean build tidies what the killed ones left in the root; doctor then finds nothing at all.
    let last = build_args(n);
    let last: Vec<&str> = last.iter().map(String::as_str).collect();
    let r = root.kiln(KILN, &last);
    assert_eq!(r.code, 0, "{}", why(&r.stderr));
    let clean = root.kiln(KILN, &["doctor"]);
    assert_eq!(
        clean.code,
        0,
        "{}",
        why(&format!("{}{}", clean.stdout, clean.stderr))
    );
    // The pull root has had no build to tidy it: repair does, then it is clean too.
    let repaired = pull_root.kiln(KILN, &["doctor", "--repair"]);
    assert_eq!(repaired.code, 0, "{}", why(&repaired.stdout));
    let images = pull_root.kiln(KILN, &["images"]);
    assert!(images.stdout.contains("crash"), "{}", images.stdout);
}

/// One durability-relevant system call of a trace.
#[derive(Debug, Clone)]
enum Call {
    Fsync(String),
    /// `syncfs` of the filesystem holding this path (a whole tree made durable in one call).
    Syncfs(String),
    Rename(String, String),
}

/// The fsync and rename calls of an `strace -f -y` log, in the order they completed (a call another thread
/// interrupted is joined with its `resumed` line).
fn calls(trace: &str) -> Vec<Call> {
    let mut pending: std::collections::BTreeMap<String, String> = Default::default();
    let mut out = Vec::new();
    for line in trace.lines() {
        let Some((pid, rest)) = line.split_once(' ') else {
            continue;
        };
        // strace pads the pid column: `2496  rename(...)` when pids are short.
        let rest = rest.trim_start();
        let text = if let Some(head) = rest.strip_suffix(" <unfinished ...>") {
            pending.insert(pid.to_string(), head.to_string());
            continue;
        } else if let Some(i) = rest.find("resumed>") {
            let head = pending.remove(pid).unwrap_or_default();
            format!("{head}{}", &rest[i + "resumed>".len()..])
        } else {
            rest.to_string()
        };
        if !text.contains(") = 0") && !text.trim_end().ends_with("= 0") {
            continue;
        }
        let quoted: Vec<&str> = text.split('"').skip(1).step_by(2).collect();
        if text.starts_with("fsync(") || text.starts_with("fdatasync(") {
            if let (Some(a), Some(b)) = (text.find('<'), text.find(">)")) {
                out.push(Call::Fsync(text[a + 1..b].to_string()));
            }
        } else if text.starts_with("syncfs(") {
            if let (Some(a), Some(b)) = (text.find('<'), text.find(">)")) {
                out.push(Call::Syncfs(text[a + 1..b].to_string()));
            }
        } else if text.starts_with("rename") && quoted.len() >= 2 {
            out.push(Call::Rename(quoted[0].to_string(), quoted[1].to_string()));
        }
    }
    out
}

/// Checks containerd's discipline on a trace: whatever a rename publishes was synced first, and the directory it
/// lands in is synced afterwards before anything that points at it is published. `unsynced` names the
/// directories whose files are deliberately not synced (hints that cost an explanation, never a wrong result).
fn check_order(trace: &[Call], root: &Path, unsynced: &[&str]) -> Vec<String> {
    let root = root.to_string_lossy().to_string();
    let mut problems = Vec::new();
    let synced_before = |i: usize, path: &str| {
        trace[..i]
            .iter()
            .any(|c| matches!(c, Call::Fsync(p) if p == path))
    };
    let dir_synced_after = |i: usize, dir: &str| {
        trace[i + 1..]
            .iter()
            .any(|c| matches!(c, Call::Fsync(p) if p == dir))
    };
    for (i, c) in trace.iter().enumerate() {
        let Call::Rename(src, dst) = c else { continue };
        if !dst.starts_with(&root) || unsynced.iter().any(|u| dst.contains(u)) {
            continue;
        }
        if !synced_before(i, src) {
            problems.push(format!("{dst} published before {src} was synced"));
        }
        let dir = Path::new(dst)
            .parent()
            .map(|d| d.to_string_lossy().to_string())
            .unwrap_or_default();
        if !dir_synced_after(i, &dir) {
            problems.push(format!("{dir} not synced after {dst} was renamed into it"));
        }
    }
    problems
}

/// Position of the first rename whose target ends with `suffix`, and of the first fsync of `dir` after `from`.
fn renamed_at(trace: &[Call], suffix: &str) -> Option<usize> {
    trace
        .iter()
        .position(|c| matches!(c, Call::Rename(_, d) if d.ends_with(suffix)))
}

fn dir_synced_after(trace: &[Call], from: usize, dir: &str) -> Option<usize> {
    trace[from..]
        .iter()
        .position(|c| matches!(c, Call::Fsync(p) if p == dir))
        .map(|i| i + from)
}

fn strace(root: &Path, args: &[&str]) -> Vec<Call> {
    let log = root.join("strace.log");
    let out = Command::new("strace")
        .args([
            "-f",
            "-y",
            "-qq",
            "-e",
            "trace=fsync,fdatasync,syncfs,rename,renameat,renameat2",
            "-o",
        ])
        .arg(&log)
        .arg(KILN)
        .args(args)
        .env("KILN_ROOT", root)
        .env("PATH", kiln_tests::path_with_sbin())
        .output()
        .expect("run strace (apt-get install strace)");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = std::fs::read_to_string(&log).expect("trace");
    std::fs::remove_file(&log).expect("remove trace");
    calls(&text)
}

#[test]
fn every_write_is_synced_before_what_points_at_it_is_published() {
    let root = Root::with_busybox(KILN);
    let registry = Registry::start(Auth::Anonymous);
    let ctx = Context::new()
        .file(
            "Dockerfile",
            "FROM busybox\nCOPY f /f\nCOPY many /many\nRUN echo hi > /x && mkdir -p /d/e && echo deep > /d/e/f\n",
        )
        .file("f", "data");
    // Enough files that the snapshot is made durable with one syncfs rather than an fsync per file.
    let ctx = (0..300).fold(ctx, |c, i| c.file(&format!("many/{i}"), format!("{i}")));
    let mut by_syncfs = 0;
    let build = strace(
        root.path(),
        &[
            "build",
            "--progress=quiet",
            "-t",
            "synced:1",
            ctx.path().to_str().expect("utf-8"),
        ],
    );
    // Slot pointers and stat caches are hints: an older one after a power cut costs an explanation or a re-hash.
    let problems = check_order(&build, root.path(), &["/cache/slots/", "/statcache/"]);
    assert!(problems.is_empty(), "build: {problems:#?}\n{build:#?}");
    // A record is published only once the snapshot it names is in place and its directory synced.
    let snapshots = root.path().join("snapshots").to_string_lossy().to_string();
    let mut records_checked = 0;
    for e in std::fs::read_dir(root.path().join("cache/records"))
        .expect("records")
        .flatten()
    {
        let name = e.file_name().to_string_lossy().to_string();
        let Some(rec_at) = renamed_at(&build, &format!("/cache/records/{name}")) else {
            continue;
        };
        let v: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(e.path()).expect("record"))
                .expect("json");
        let snap = v["snapshot"].as_str().expect("snapshot");
        let snap_at = renamed_at(&build, &format!("/snapshots/{snap}"))
            .expect("the snapshot was made in this build");
        let synced = dir_synced_after(&build, snap_at, &snapshots).expect("snapshots dir synced");
        assert!(
            snap_at < synced && synced < rec_at,
            "record {name}: snapshot {snap} at {snap_at}, synced {synced}, record {rec_at}"
        );
        // The snapshot's own directory and every file in it were synced before it was renamed into place.
        let tmp = match &build[snap_at] {
            Call::Rename(src, _) => src.clone(),
            _ => unreachable!(),
        };
        let diff = format!("{tmp}/diff");
        let fsynced = build[..snap_at]
            .iter()
            .any(|c| matches!(c, Call::Fsync(p) if *p == diff));
        let syncfsed = build[..snap_at]
            .iter()
            .any(|c| matches!(c, Call::Syncfs(p) if p.starts_with(&format!("{tmp}/"))));
        assert!(
            fsynced || syncfsed,
            "{diff} not synced before {snap} was published"
        );
        if syncfsed && !fsynced {
            by_syncfs += 1;
        }
        for must in [format!("{tmp}/meta.json"), tmp.clone()] {
            assert!(
                build[..snap_at]
                    .iter()
                    .any(|c| matches!(c, Call::Fsync(p) if *p == must)),
                "{must} not synced before {snap} was published"
            );
        }
        records_checked += 1;
    }
    assert_eq!(
        records_checked, 4,
        "the base image's unpacking, the two COPYs and the RUN made records"
    );
    assert_eq!(by_syncfs, 1, "the 300-file COPY was synced with one syncfs");
    // The image name is published after every blob of the image.
    let index_at = renamed_at(&build, "/store/index/images.json").expect("images.json written");
    let inspect = root.kiln(KILN, &["inspect", "synced:1"]);
    let v: serde_json::Value = serde_json::from_str(&inspect.stdout).expect("inspect");
    let mut blobs = vec![v["Digest"].as_str().expect("digest").to_string()];
    blobs.push(
        v["Manifest"]["config"]["digest"]
            .as_str()
            .expect("config")
            .to_string(),
    );
    for l in v["Manifest"]["layers"].as_array().expect("layers") {
        blobs.push(l["digest"].as_str().expect("layer").to_string());
    }
    // A layer the build made is lazy (a recipe naming its snapshot, `store/lazy/<hex>.json`, synced like a blob
    // by check_order above); the rest are blobs. Either is published before the name.
    let mut lazy = 0;
    for b in &blobs {
        let hex = b.trim_start_matches("sha256:");
        if let Some(at) = renamed_at(&build, hex) {
            assert!(at < index_at, "blob {b} published after the image name");
        }
        if let Some(at) = renamed_at(&build, &format!("/store/lazy/{hex}.json")) {
            assert!(
                at < index_at,
                "lazy layer {b} published after the image name"
            );
            lazy += 1;
        }
    }
    assert_eq!(
        lazy, 3,
        "the two COPYs and the RUN made lazy layers (the base's layer is the base image's own blob)"
    );

    // A pull into an empty root: each blob synced and in place before the name that needs it.
    let target = format!("{}/synced:1", registry.host);
    let pushed = root.kiln(KILN, &["push", "synced:1", &target]);
    assert_eq!(pushed.code, 0, "{}", pushed.stderr);
    let other = Root::empty();
    let pull = strace(other.path(), &["pull", &target]);
    // Where blobs were seen in registries is a hint too: a lost entry costs an upload instead of a mount.
    let problems = check_order(&pull, other.path(), &["/store/sources/"]);
    assert!(problems.is_empty(), "pull: {problems:#?}\n{pull:#?}");
    let index_at = renamed_at(&pull, "/store/index/images.json").expect("images.json written");
    let blob_renames = pull[..index_at]
        .iter()
        .filter(|c| matches!(c, Call::Rename(_, d) if d.contains("/store/blobs/")))
        .count();
    assert!(blob_renames >= blobs.len(), "{pull:#?}");
}
