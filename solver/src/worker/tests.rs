//! The worker over real snapshots (overlayfs, as root) with a fake image provider and a fake process runner:
//! cache hits on an unchanged rebuild, misses that name the changed file, failures that carry the exit code.

use std::collections::BTreeMap;
use std::sync::Mutex;

use super::*;
use crate::llb::{
    CopyAction, Definition, ExecOp, FileAction, ImageSource, LocalSource, Mount, MountKind,
    NetworkMode, SecurityMode, VertexMeta,
};
use crate::scheduler::Scheduler;

struct FakeImages;

impl ImageProvider for FakeImages {
    fn resolve(
        &self,
        reference: &str,
        _p: &Platform,
        _m: ResolveMode,
    ) -> Result<Digest, ImageError> {
        Ok(Digest::sha256_of(reference.as_bytes()))
    }

    fn unpack(&self, _manifest: &Digest, dir: &Path) -> Result<(), ImageError> {
        std::fs::create_dir_all(dir.join("etc")).map_err(|e| e.to_string())?;
        std::fs::write(dir.join("etc/passwd"), "root:x:0:0::/root:/bin/sh\n")
            .map_err(|e| ImageError::Other(e.to_string()))
    }
}

/// "Runs" `sh -c CMD` by appending CMD to /ran in the rootfs; `exit N` fails with N.
#[derive(Default)]
struct FakeRunner {
    runs: Mutex<usize>,
}

impl ProcessRunner for FakeRunner {
    fn run(
        &self,
        req: &ProcessRequest<'_>,
        _c: &CancelToken,
    ) -> Result<ProcessOutcome, ProcessError> {
        *self.runs.lock().unwrap() += 1;
        let cmd = req.op.args.last().cloned().unwrap_or_default();
        if let Some(code) = cmd.strip_prefix("exit ") {
            return Ok(ProcessOutcome {
                exit_code: code.parse().unwrap_or(1),
                output_tail: vec!["failing on purpose".into()],
                oom_killed: false,
            });
        }
        let app = req.rootfs.join("app/copied.txt");
        let seen = std::fs::read_to_string(app).unwrap_or_default();
        std::fs::write(req.rootfs.join("ran"), format!("{cmd} saw {seen}"))
            .map_err(|e| e.to_string())?;
        Ok(ProcessOutcome {
            exit_code: 0,
            output_tail: vec![],
            oom_killed: false,
        })
    }
}

fn meta(slot: &str) -> VertexMeta {
    VertexMeta {
        description: slot.to_string(),
        slot: Some(slot.to_string()),
        ..Default::default()
    }
}

fn definition(cmd: &str) -> (Definition, VertexId) {
    let mut d = Definition::new();
    let img = d.add(
        Op::Source(SourceOp::Image(ImageSource {
            reference: "docker.io/library/busybox:latest".into(),
            platform: "linux/amd64".parse().unwrap(),
            resolve_mode: ResolveMode::Default,
        })),
        vec![],
        meta("s#1"),
    );
    let ctx = d.add(
        Op::Source(SourceOp::Local(LocalSource {
            name: "context".into(),
            include_patterns: vec![],
            exclude_patterns: vec![],
            follow_paths: vec![],
        })),
        vec![],
        VertexMeta::default(),
    );
    let copy = d.add(
        Op::File(FileOp {
            base: Some(0),
            actions: vec![FileAction::Copy(CopyAction {
                source: 1,
                src: "copied.txt".into(),
                dest: "/app/".into(),
                chown: None,
                mode: None,
                follow_symlinks: true,
                copy_dir_contents: true,
                unpack_archive: false,
                create_dest_path: true,
                allow_wildcard: true,
                allow_empty_wildcard: true,
                include_patterns: vec![],
                exclude_patterns: vec![],
                parents: false,
            })],
        }),
        vec![img, ctx],
        meta("s#2"),
    );
    let run = d.add(
        Op::Exec(ExecOp {
            args: vec!["/bin/sh".into(), "-c".into(), cmd.into()],
            env: vec!["PATH=/bin".into()],
            cwd: "/app".into(),
            user: String::new(),
            mounts: vec![Mount {
                input: Some(0),
                selector: "/".into(),
                target: "/".into(),
                readonly: false,
                output: true,
                kind: MountKind::Bind,
            }],
            network: NetworkMode::None,
            security: SecurityMode::Sandbox,
            proxy_env: Vec::new(),
            extra_hosts: Vec::new(),
            ulimits: Vec::new(),
            cdi_devices: Vec::new(),
        }),
        vec![copy],
        meta("s#3"),
    );
    (d, run)
}

struct Build {
    hits: usize,
    misses: Vec<Vec<MissReason>>,
    result: Result<BTreeMap<VertexId, StepOutput>, String>,
}

fn build(root: &Path, ctx: &Path, cmd: &str, runner: &FakeRunner) -> Build {
    let (d, top) = definition(cmd);
    let events = Mutex::new(Vec::new());
    let locals = BTreeMap::from([(
        "context".to_string(),
        LocalDir {
            path: ctx.to_path_buf(),
            ignore: vec![],
        },
    )]);
    let result = {
        let worker = Worker::new(
            &dirs(root),
            &FakeImages,
            runner,
            locals,
            Box::new(|e| events.lock().unwrap().push(e)),
        )
        .unwrap();
        let r = Scheduler::new(2).solve(&d, &[top], &worker, &CancelToken::default(), &|_| {});
        worker.save_stat_caches().unwrap();
        r.map_err(|e| match e {
            crate::scheduler::SolveError::Op(_, err) => err.to_string(),
            crate::scheduler::SolveError::Cancelled => "cancelled".into(),
        })
    };
    let events = events.into_inner().unwrap();
    Build {
        hits: events
            .iter()
            .filter(|e| matches!(e, CacheEvent::Hit(_)))
            .count(),
        misses: events
            .into_iter()
            .filter_map(|e| match e {
                CacheEvent::Miss(_, r) => Some(r),
                _ => None,
            })
            .collect(),
        result,
    }
}

#[test]
fn rebuilds_hit_the_cache_and_misses_say_why() {
    let root = tempfile::tempdir().unwrap();
    let ctx = tempfile::tempdir().unwrap();
    std::fs::write(ctx.path().join("copied.txt"), "v1").unwrap();
    let runner = FakeRunner::default();

    let first = build(root.path(), ctx.path(), "make", &runner);
    let outputs = first.result.unwrap();
    assert_eq!(first.hits, 0);
    assert_eq!(*runner.runs.lock().unwrap(), 1);
    let (_, top) = definition("make");
    let Fs::Snapshot(id) = &outputs[&top].fs else {
        panic!("exec produces a snapshot")
    };
    let snaps = Snapshotter::open(&root.path().join("snapshots")).unwrap();
    let view = tempfile::tempdir().unwrap();
    {
        let m = snaps.mount_readonly(id, view.path()).unwrap();
        assert_eq!(
            std::fs::read_to_string(m.path().join("ran")).unwrap(),
            "make saw v1"
        );
        assert!(m.path().join("etc/passwd").exists());
    }

    let again = build(root.path(), ctx.path(), "make", &runner);
    again.result.unwrap();
    assert_eq!(again.hits, 3, "image, copy and run all cached");
    assert_eq!(*runner.runs.lock().unwrap(), 1, "nothing re-ran");

    // Touch without changing: still cached.
    std::fs::write(ctx.path().join("copied.txt"), "v1").unwrap();
    assert_eq!(build(root.path(), ctx.path(), "make", &runner).hits, 3);

    std::fs::write(ctx.path().join("copied.txt"), "v2").unwrap();
    let changed = build(root.path(), ctx.path(), "make", &runner);
    changed.result.unwrap();
    assert_eq!(changed.hits, 1, "only the image is still cached");
    assert!(
        changed
            .misses
            .iter()
            .any(|r| r.contains(&MissReason::FileChanged("copied.txt".into()))),
        "{:?}",
        changed.misses
    );
    assert!(changed
        .misses
        .iter()
        .any(|r| r.contains(&MissReason::ParentChanged(0))));
    assert_eq!(*runner.runs.lock().unwrap(), 2);
}

#[test]
fn a_failing_run_reports_its_exit_code_and_records_nothing() {
    let root = tempfile::tempdir().unwrap();
    let ctx = tempfile::tempdir().unwrap();
    std::fs::write(ctx.path().join("copied.txt"), "x").unwrap();
    let runner = FakeRunner::default();
    let b = build(root.path(), ctx.path(), "exit 3", &runner);
    let err = b.result.unwrap_err();
    assert!(err.contains("exit code: 3"), "{err}");
    let snaps = Snapshotter::open(&root.path().join("snapshots")).unwrap();
    assert!(
        snaps.stray().unwrap().is_empty(),
        "the failed step's upper dir is gone"
    );
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    assert!(
        !mounts.contains(root.path().to_str().unwrap()),
        "nothing left mounted"
    );
}

/// A root's worker directories as kiln lays them out (the engine's `Root` names them for real builds).
pub(crate) fn dirs(root: &Path) -> WorkerDirs {
    WorkerDirs {
        snapshots: root.join("snapshots"),
        cache: root.join("cache"),
        store: root.join("store"),
        work: root.join("work"),
        cache_mounts: root.join("cachemounts"),
        stat_caches: root.join("statcache"),
        downloads: root.join("downloads"),
    }
}
