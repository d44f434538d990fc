//! `kiln build`: lower the Dockerfile, solve the graph with the worker (snapshots, cache, runc), export.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use exporter::{ArchiveFormat, Compression, ExportOptions, LayerSource, Tagged};
use oci::store::Store;
use solver::llb::{NetworkMode, Op, SecurityMode, VertexId};
use solver::scheduler::{CancelToken, Event, Scheduler, SolveError};
use solver::worker::{
    CacheEvent, Fs, LocalDir, SandboxRunner, SecretSource, StoreImages, Worker, WorkerError,
};

use crate::cli::BuildArgs;
use crate::outputs::{self, Output};
use crate::progress::{Mode, Progress};
use crate::resolver::StoreResolver;
use crate::{cache_io, request, root, Failure};

fn usage(e: impl std::fmt::Display) -> Failure {
    Failure::Usage(e.to_string())
}

/// `--ssh default` (the agent at $SSH_AUTH_SOCK) or `--ssh ID=SOCKET`: agent sockets only (BuildKit also takes
/// key files, which kiln would have to serve through an agent of its own).
fn parse_ssh(spec: &str) -> Result<(String, std::path::PathBuf), Failure> {
    let (id, path) = match spec.split_once('=') {
        Some((id, path)) => (id.to_string(), std::path::PathBuf::from(path)),
        None => {
            let sock = std::env::var_os("SSH_AUTH_SOCK").ok_or_else(|| {
                usage(format!(
                    "--ssh {spec}: SSH_AUTH_SOCK is not set; start an agent or give {spec}=SOCKET"
                ))
            })?;
            (spec.to_string(), std::path::PathBuf::from(sock))
        }
    };
    let is_socket = std::fs::metadata(&path)
        .map(|m| std::os::unix::fs::FileTypeExt::is_socket(&m.file_type()))
        .unwrap_or(false);
    if !is_socket {
        return Err(usage(format!(
            "--ssh {spec}: {} is not an agent socket",
            path.display()
        )));
    }
    Ok((id, path))
}

fn parse_secret(spec: &str) -> Result<(String, SecretSource), Failure> {
    let mut id = None;
    let mut src = None;
    for part in spec.split(',') {
        match part.split_once('=') {
            Some(("id", v)) => id = Some(v.to_string()),
            Some(("src" | "source", v)) => src = Some(SecretSource::File(v.into())),
            Some(("env", v)) => src = Some(SecretSource::Env(v.to_string())),
            Some(("type", _)) => {}
            _ => {
                return Err(usage(format!(
                    "--secret {spec}: expected id=ID,src=FILE or id=ID,env=VAR"
                )))
            }
        }
    }
    let id = id.ok_or_else(|| usage(format!("--secret {spec}: id= is required")))?;
    let src = src.unwrap_or_else(|| SecretSource::Env(id.clone()));
    Ok((id, src))
}

/// A size as Docker's flags take it (bytes, or a number with b, k, m or g in binary units), at least Docker's
/// 6 MiB minimum for memory limits.
pub(crate) fn parse_size(s: &str) -> Result<u64, String> {
    let bytes = parse_bytes(s)?;
    if bytes < 6 << 20 {
        return Err("must be at least 6m (Docker's minimum)".to_string());
    }
    Ok(bytes)
}

/// A size in bytes, or a number with b, k, m or g (binary units); zero allowed.
pub(crate) fn parse_bytes(s: &str) -> Result<u64, String> {
    let t = s.trim().to_ascii_lowercase();
    let (num, mult) = match t.trim_end_matches('b').chars().last() {
        Some('k') => (&t[..t.trim_end_matches('b').len() - 1], 1u64 << 10),
        Some('m') => (&t[..t.trim_end_matches('b').len() - 1], 1 << 20),
        Some('g') => (&t[..t.trim_end_matches('b').len() - 1], 1 << 30),
        _ => (t.trim_end_matches('b'), 1),
    };
    let n: f64 = num
        .parse()
        .map_err(|_| "not a size (e.g. 512m, 2g)".to_string())?;
    if !(n >= 0.0 && n.is_finite()) {
        return Err("must be positive".to_string());
    }
    Ok((n * mult as f64) as u64)
}

fn source_date_epoch(build_args: &BTreeMap<String, String>) -> Result<Option<i64>, Failure> {
    let raw = build_args
        .get("SOURCE_DATE_EPOCH")
        .cloned()
        .or_else(|| std::env::var("SOURCE_DATE_EPOCH").ok());
    match raw {
        None => Ok(None),
        Some(v) => v.trim().parse::<i64>().map(Some).map_err(|_| {
            usage(format!(
                "SOURCE_DATE_EPOCH={v:?} is not a number of seconds"
            ))
        }),
    }
}

/// Runs `kiln build`: the build holds its root's lock shared (a prune waits for it), then, when kiln.toml asks
/// for it, collects garbage.
pub fn run(args: &BuildArgs) -> Result<(), Failure> {
    if args.check {
        return crate::commands::check::run(&args.request);
    }
    let gc = crate::commands::gc::PrunePolicy::from_config(
        &crate::config::load().map_err(Failure::Usage)?.gc,
    )?;
    let root = root::root_dir(&args.root);
    let lock = root::lock(&root, false).map_err(Failure::Build)?;
    executor::process::set_owner_tag(&crate::commands::doctor::owner_tag(&root));
    let result = build(args).map_err(|f| full_disk(&root, f));
    drop(lock);
    if result.is_ok() {
        crate::commands::gc::auto_gc(&root, gc);
    }
    result
}

fn build(args: &BuildArgs) -> Result<(), Failure> {
    let mode = Mode::parse(&args.progress).map_err(Failure::Usage)?;
    let staged = crate::stdin_context::stage(&args.request, &root::root_dir(&args.root))?;
    let request_args = staged.as_ref().map_or(&args.request, |s| &s.request);
    let mut loaded = request::load(request_args)?;
    loaded.opts.no_cache = args.no_cache;
    loaded.opts.no_cache_filter = args.no_cache_filter.clone();
    for l in &args.labels {
        let (k, v) = l
            .split_once('=')
            .ok_or_else(|| usage(format!("--label {l}: expected KEY=VALUE")))?;
        loaded.opts.labels.insert(k.to_string(), v.to_string());
    }
    loaded.opts.network = match args.network.as_str() {
        "default" => NetworkMode::Default,
        "none" => NetworkMode::None,
        "host" => NetworkMode::Host,
        other => {
            return Err(usage(format!(
                "--network={other}: valid values are default, none, host"
            )))
        }
    };
    let mut outputs: Vec<Output> = args
        .outputs
        .iter()
        .map(|o| outputs::parse(o))
        .collect::<Result<_, _>>()
        .map_err(Failure::Usage)?;
    let mut names: Vec<String> = Vec::new();
    for t in &args.tags {
        names.push(
            frontend::lower::normalize_reference(t).map_err(|e| usage(format!("-t {t}: {e}")))?,
        );
    }
    for o in &mut outputs {
        if let Output::Image { names: n, .. } | Output::Archive { names: n, .. } = o {
            for x in n.iter_mut() {
                *x = frontend::lower::normalize_reference(x)
                    .map_err(|e| usage(format!("name={x}: {e}")))?;
            }
        }
        // As buildx does, -t names every image-writing output that names nothing itself.
        if let Output::Archive { names: n, .. } = o {
            if n.is_empty() {
                n.extend(names.iter().cloned());
            }
        }
    }
    if !names.is_empty() && !outputs.iter().any(|o| matches!(o, Output::Image { .. })) {
        outputs.push(Output::Image {
            names: vec![],
            push: false,
            layers: Default::default(),
        });
    }
    if args.push {
        match outputs
            .iter_mut()
            .find(|o| matches!(o, Output::Image { .. }))
        {
            Some(Output::Image { push, .. }) => *push = true,
            _ => outputs.push(Output::Image {
                names: vec![],
                push: true,
                layers: Default::default(),
            }),
        }
    }
    for o in &outputs {
        if let Output::Image {
            push: true,
            names: n,
            ..
        } = o
        {
            if n.is_empty() && names.is_empty() {
                return Err(usage(
                    "--push (or push=true) needs a name to push to: -t REGISTRY/REPO:TAG"
                        .to_string(),
                ));
            }
        }
    }
    let cache_to = args
        .cache_to
        .iter()
        .map(|s| cache_io::parse_cache_to(s))
        .collect::<Result<Vec<_>, _>>()
        .map_err(Failure::Usage)?;
    let cache_from = args
        .cache_from
        .iter()
        .map(|s| cache_io::parse_cache_from(s))
        .collect::<Result<Vec<_>, _>>()
        .map_err(Failure::Usage)?;
    let epoch = source_date_epoch(&loaded.opts.build_args)?;
    let root = root::root_dir(&args.root);
    let store = Store::open(&root.join("store")).map_err(|e| Failure::Build(e.to_string()))?;
    // One registry client for the build (base image pulls, cache import and export, pushes), so tokens are
    // fetched once.
    let registry = std::sync::Arc::new(crate::commands::registry::client(&args.registry)?);
    let resolver = StoreResolver::new(store.clone(), Some(registry.clone()), args.pull);
    let (definition, targets) = lower_platforms(&loaded, &resolver, &project_of(request_args))?;
    let def = &definition;
    let roots: Vec<VertexId> = targets.iter().filter_map(|t| t.root).collect();
    if targets.len() > 1 {
        for o in &outputs {
            if let Output::Archive { docker: true, .. } = o {
                return Err(usage(
                    "-o type=docker holds one platform per image: use -o type=oci for a multi-platform build"
                        .to_string(),
                ));
            }
        }
    }
    let allowed: BTreeSet<&str> = args.allow.iter().map(String::as_str).collect();
    for id in def.closure(&roots) {
        if let Op::Exec(e) = &def.vertex(id).op {
            if e.network == NetworkMode::Host && !allowed.contains("network.host") {
                return Err(usage(format!(
                    "{}: entitlement network.host is not allowed (--network=host needs `--allow network.host`)",
                    def.vertex(id).meta.description
                )));
            }
            if e.security == SecurityMode::Insecure && !allowed.contains("security.insecure") {
                return Err(usage(format!(
                    "{}: entitlement security.insecure is not allowed (--security=insecure needs `--allow security.insecure`)",
                    def.vertex(id).meta.description
                )));
            }
        }
    }
    let mut locals = BTreeMap::new();
    locals.insert(
        "context".to_string(),
        LocalDir {
            path: std::path::absolute(&request_args.context)
                .unwrap_or_else(|_| request_args.context.clone()),
            ignore: loaded.opts.ignore_patterns.clone(),
        },
    );
    for (name, ctx) in &loaded.opts.build_contexts {
        if let frontend::NamedContext::Local(dir) = ctx {
            locals.insert(
                name.clone(),
                LocalDir {
                    path: dir.into(),
                    // Its own .dockerignore, as BuildKit's dockerui reads it (an unreadable one is none, as there).
                    ignore: frontend::dockerignore::read_patterns(std::path::Path::new(dir), None)
                        .unwrap_or_default(),
                },
            );
        }
    }
    let ssh = args
        .ssh
        .iter()
        .map(|s| parse_ssh(s))
        .collect::<Result<BTreeMap<_, _>, _>>()?;
    let mut secrets = BTreeMap::new();
    for s in &args.secrets {
        let (id, src) = parse_secret(s)?;
        secrets.insert(id, src);
    }

    let limits = executor::cgroup::Limits {
        memory: args
            .memory
            .as_deref()
            .map(|m| parse_size(m).map_err(|e| usage(format!("--memory {m}: {e}"))))
            .transpose()?,
        cpus: match args.cpus {
            Some(c) if !(c > 0.0 && c.is_finite()) => {
                return Err(usage(format!("--cpus {c}: must be a positive number")))
            }
            c => c,
        },
        pids: match args.pids_limit {
            Some(n) if n < 1 => return Err(usage(format!("--pids-limit {n}: must be at least 1"))),
            n => n,
        },
    };
    let progress = Progress::new(mode);
    // The trace is written however the build ends: a failed build's timeline is the one worth reading.
    struct TraceOnDrop<'a>(&'a Progress, Option<&'a Path>);
    impl Drop for TraceOnDrop<'_> {
        fn drop(&mut self) {
            if let Some(p) = self.1 {
                if let Err(e) = self.0.write_trace(p) {
                    eprintln!("warning: --trace {}: {e}", p.display());
                }
            }
        }
    }
    let _trace = TraceOnDrop(&progress, args.trace.as_deref());
    let desc = |id: VertexId| def.vertex(id).meta.description.clone();
    let runner = SandboxRunner::new(
        &args.runtime,
        &root.join("runc"),
        secrets,
        Box::new(|step, line| progress.line(step, line)),
    )
    .with_limits(limits)
    .with_ssh(ssh);
    runner.sweep_stale();
    let images = StoreImages::new(store.clone());
    let cached: std::sync::Mutex<BTreeSet<VertexId>> = Default::default();
    let worker = Worker::new(
        &root,
        &images,
        &runner,
        locals,
        Box::new(|ev| match ev {
            CacheEvent::Hit(id) => {
                if let Ok(mut c) = cached.lock() {
                    c.insert(id);
                }
                let d = desc(id);
                if !d.is_empty() {
                    progress.cached(&d);
                }
            }
            CacheEvent::Miss(id, reasons) => {
                let d = desc(id);
                if !d.is_empty() {
                    progress.missed(&d, &reasons);
                }
            }
            CacheEvent::ImportFailed(id, reason) => {
                let d = desc(id);
                progress.line(&d, &format!("imported cache not usable: {reason}"));
            }
        }),
    )
    .map_err(|e| Failure::Build(e.to_string()))?;
    // Imported caches: records now, blobs when a step hits; cache mount contents before any step starts.
    let mounts = cache_mounts(def, &roots, &root);
    let mut imported = Vec::new();
    for from in &cache_from {
        match cache_io::import(from, &store, &registry) {
            Ok(i) => imported.push(i),
            Err(e) => eprintln!("warning: --cache-from: {e} (building without it)"),
        }
    }
    for restored in cache_io::restore_mounts(&imported, &mounts, &store) {
        if let Err(e) = restored {
            eprintln!("warning: --cache-from: {e}");
        }
    }
    let worker = worker.with_imported(cache_io::into_cache(imported), store.clone());
    let parallel = args.max_parallelism.unwrap_or_else(|| {
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(2)
    });
    let cancel = CancelToken::default();
    let (stop_ticker, ticks) = std::sync::mpsc::channel::<()>();
    let (stop_watch, watch) = std::sync::mpsc::channel::<()>();
    let signals = crate::signals::Guard::install();
    let result = std::thread::scope(|scope| {
        // SIGINT/SIGTERM cancel the build: running steps are killed and cleaned up, the rest never start.
        {
            let (cancel, signals) = (&cancel, &signals);
            scope.spawn(move || {
                while let Err(std::sync::mpsc::RecvTimeoutError::Timeout) =
                    watch.recv_timeout(std::time::Duration::from_millis(50))
                {
                    if signals.received().is_some() {
                        cancel.cancel();
                    }
                }
            });
        }
        // The live display's timers move even while no step prints anything; the ticker stops as soon as the
        // solve ends (its channel closes), so it never delays the build.
        if mode == Mode::Tty {
            let progress = &progress;
            scope.spawn(move || {
                while let Err(std::sync::mpsc::RecvTimeoutError::Timeout) =
                    ticks.recv_timeout(std::time::Duration::from_millis(100))
                {
                    progress.tick();
                }
            });
        }
        let r = Scheduler::new(parallel).solve(def, &roots, &worker, &cancel, &|ev| match ev {
            Event::Started(id) => {
                let d = desc(id);
                if !d.is_empty() {
                    progress.started(&d);
                }
            }
            Event::Finished(id, took) => {
                let d = desc(id);
                let was_cached = cached.lock().map(|c| c.contains(&id)).unwrap_or(false);
                if !d.is_empty() {
                    progress.done(&d, took, was_cached);
                }
            }
            Event::Failed(_) => {}
        });
        drop(stop_ticker);
        drop(stop_watch);
        r
    });
    // The records of the steps that finished are published whatever the outcome (a re-run reuses them).
    let settled = worker.settle();
    if let Some(signal) = signals.received() {
        return Err(Failure::Interrupted(signal));
    }
    drop(signals);
    let outputs_by_vertex = match result {
        Ok(o) => o,
        Err(SolveError::Op(id, err)) => {
            let d = desc(id);
            progress.failed(&d, &err.to_string());
            return Err(Failure::Build(build_error(
                &loaded,
                def.vertex(id),
                &err,
                &root,
            )));
        }
        Err(SolveError::Cancelled) => {
            return Err(Failure::Build("the build was cancelled".to_string()))
        }
    };
    settled.map_err(|e| Failure::Build(e.to_string()))?;
    let snapshots = worker.snapshots().clone();
    worker
        .save_stat_caches(&root)
        .map_err(|e| Failure::Build(e.to_string()))?;
    let index = solver::cache::CacheIndex::open(&root.join("cache"))
        .map_err(|e| Failure::Build(e.to_string()))?;
    let mut built: Vec<Built> = targets
        .into_iter()
        .map(|t| Built {
            snapshot: match t
                .root
                .and_then(|r| outputs_by_vertex.get(&r))
                .map(|o| &o.fs)
            {
                Some(Fs::Snapshot(id)) => Some(id.clone()),
                _ => None,
            },
            platform: t.platform,
            image: oci::Image {
                // A base image's inline cache describes the base's build, never this one.
                inline_cache: None,
                ..t.image
            },
        })
        .collect();
    let state = cache_io::BuildState {
        store: &store,
        snapshots: &snapshots,
        index: &index,
        steps: outputs_by_vertex
            .values()
            .filter_map(|o| match &o.fs {
                Fs::Snapshot(s) => Some(cache_io::ExportStep {
                    key: o.key.clone(),
                    snapshot: s.clone(),
                }),
                _ => None,
            })
            .collect(),
        finals: built.iter().filter_map(|b| b.snapshot.clone()).collect(),
        mounts,
    };
    if cache_to
        .iter()
        .any(|t| t.location == cache_io::CacheLocation::Inline)
    {
        for b in &mut built {
            if let Some(last) = &b.snapshot {
                b.image.inline_cache =
                    Some(cache_io::inline_cache(&state, last).map_err(Failure::Build)?);
            }
        }
    }
    export(
        &store, &registry, &snapshots, &built, &outputs, &names, epoch, args, &progress,
    )?;
    for to in &cache_to {
        match cache_io::export(&state, to, &registry) {
            Ok(line) => eprintln!("{line}"),
            Err(e) if to.ignore_error => eprintln!("warning: --cache-to: {e}"),
            Err(e) => return Err(Failure::Build(format!("--cache-to: {e}"))),
        }
    }
    Ok(())
}

/// The build's `RUN --mount=type=cache` directories by mount id: what `cache-mounts=true` exports and
/// `--cache-from` restores.
fn cache_mounts(
    def: &solver::llb::Definition,
    roots: &[VertexId],
    root: &Path,
) -> BTreeMap<String, std::path::PathBuf> {
    let mut out = BTreeMap::new();
    for id in def.closure(roots) {
        if let Op::Exec(e) = &def.vertex(id).op {
            for m in &e.mounts {
                if let solver::llb::MountKind::Cache { id, .. } = &m.kind {
                    out.insert(
                        id.clone(),
                        root.join("cachemounts")
                            .join(oci::Digest::sha256_of(id.as_bytes()).hex()),
                    );
                }
            }
        }
    }
    out
}

/// One target platform's lowering: its final vertex and the image config its stage accumulated.
struct Target {
    platform: oci::Platform,
    root: Option<VertexId>,
    image: oci::Image,
}

/// One target platform's result: the snapshot of its final filesystem (none for an empty `FROM scratch`).
struct Built {
    platform: oci::Platform,
    snapshot: Option<String>,
    image: oci::Image,
}

/// Which project a build is, for its steps' cache slots: the context directory's name and the Dockerfile's path
/// in it. Two projects sharing a root then never explain a miss of one against a record of the other, while
/// the same project checked out under the same name elsewhere (another CI runner) keeps its slots.
fn project_of(args: &crate::cli::RequestArgs) -> String {
    let context = std::fs::canonicalize(&args.context).unwrap_or_else(|_| args.context.clone());
    let name = context
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let dockerfile = match &args.file {
        Some(f) => {
            let f = std::fs::canonicalize(f).unwrap_or_else(|_| f.clone());
            f.strip_prefix(&context)
                .map(|p| p.to_string_lossy().into_owned())
                .unwrap_or_else(|_| f.to_string_lossy().into_owned())
        }
        None => "Dockerfile".to_string(),
    };
    oci::Digest::sha256_of(format!("{name}\0{dockerfile}").as_bytes()).hex()[..12].to_string()
}

/// Lowers the Dockerfile once per target platform and merges the graphs, so a multi-platform build is one solve:
/// work the platforms share (a `FROM --platform=$BUILDPLATFORM` builder stage) is one vertex and runs once, the
/// rest runs in parallel. With several platforms each step's name and cache slot carry its platform.
fn lower_platforms(
    loaded: &request::Loaded,
    resolver: &StoreResolver,
    project: &str,
) -> Result<(solver::llb::Definition, Vec<Target>), Failure> {
    let platforms: Vec<Option<oci::Platform>> = if loaded.platforms.len() > 1 {
        loaded.platforms.iter().cloned().map(Some).collect()
    } else {
        vec![loaded.opts.target_platform.clone()]
    };
    let multi = platforms.len() > 1;
    let mut def = solver::llb::Definition::new();
    let mut targets = Vec::new();
    for (i, platform) in platforms.into_iter().enumerate() {
        let mut opts = loaded.opts.clone();
        opts.target_platform = platform.clone();
        let lowered =
            frontend::lower(&loaded.dockerfile, &opts, resolver).map_err(|e| loaded.fail(&e))?;
        if i == 0 {
            for name in &lowered.unused_build_args {
                eprintln!("warning: build-arg {name} was not consumed by any stage");
            }
        }
        let platform = platform.unwrap_or_else(|| lowered.target.platform.clone());
        let label = platform.to_string();
        let map = def.absorb(&lowered.definition, |m| {
            let mut m = if multi {
                platform_meta(m, &label)
            } else {
                m.clone()
            };
            m.slot = m.slot.map(|s| format!("{project} {s}"));
            m
        });
        targets.push(Target {
            root: lowered.target.root.map(|r| map[r.index()]),
            image: lowered.target.image,
            platform,
        });
    }
    Ok((def, targets))
}

/// `[build 2/4] RUN make` → `[linux/arm64 build 2/4] RUN make`, as BuildKit names the steps of each platform.
fn platform_meta(m: &solver::llb::VertexMeta, platform: &str) -> solver::llb::VertexMeta {
    let mut m = m.clone();
    if let Some(rest) = m.description.strip_prefix('[') {
        if !rest.starts_with("internal]") {
            m.description = format!("[{platform} {rest}");
        }
    }
    m.slot = m.slot.map(|s| format!("{platform} {s}"));
    m
}

/// Whether an error's text says the disk is full (ENOSPC, however deep in the error it was wrapped).
fn is_no_space(text: &str) -> bool {
    text.contains("No space left on device") || text.contains("(os error 28)")
}

fn no_space_line(root: &std::path::Path, what: &str) -> String {
    format!(
        "{what}: no space left on device in kiln's root {}: free space, or remove build cache with `kiln prune`",
        root.display()
    )
}

/// One line for a build that filled kiln's root, instead of the internal path the write failed on.
fn full_disk(root: &std::path::Path, f: Failure) -> Failure {
    match f {
        Failure::Build(msg) if is_no_space(&msg) && !msg.contains("kiln prune") => {
            Failure::Build(no_space_line(root, "exporting the image"))
        }
        other => other,
    }
}

fn build_error(
    loaded: &request::Loaded,
    v: &solver::llb::Vertex,
    err: &WorkerError,
    root: &std::path::Path,
) -> String {
    // A full disk is no fault of the Dockerfile: one line naming the step, not the internal path it failed on.
    if is_no_space(&err.to_string()) && !matches!(err, WorkerError::Process { .. }) {
        return no_space_line(root, &format!("failed to solve: {}", v.meta.description));
    }
    let mut msg = format!("failed to solve: {err}");
    if let WorkerError::Process { output_tail, .. } = err {
        if !output_tail.is_empty() {
            msg.push_str("\n------ last output lines ------");
            for l in output_tail {
                msg.push_str(&format!("\n  {l}"));
            }
        }
    }
    if let Some((start, end)) = v.meta.lines {
        msg.push_str(&format!("\n------ {}:{start} ------", loaded.display_name));
        for (i, l) in loaded
            .dockerfile
            .lines
            .iter()
            .enumerate()
            .take(end)
            .skip(start.saturating_sub(1))
        {
            msg.push_str(&format!("\n {:>4} | {l}", i + 1));
        }
    }
    msg
}

/// What an image output produced: the manifest (or, for several platforms, the index) and the config digest of a
/// single-platform image (its image id).
struct Produced {
    manifest: oci::manifest::Descriptor,
    config: Option<oci::Digest>,
}

#[allow(clippy::too_many_arguments)]
fn export(
    store: &Store,
    client: &oci::registry::Client,
    snapshots: &solver::snapshot::Snapshotter,
    built: &[Built],
    outputs: &[Output],
    names: &[String],
    epoch: Option<i64>,
    args: &BuildArgs,
    progress: &Progress,
) -> Result<(), Failure> {
    let fail = |e: &dyn std::fmt::Display| Failure::Build(e.to_string());
    if outputs.is_empty() {
        eprintln!(
            "warning: no output specified (-t or -o): the build result stays only in kiln's cache"
        );
        progress.summary("no output");
        return Ok(());
    }
    let mut layers: Vec<Vec<LayerSource>> = Vec::new();
    for b in built {
        layers.push(match &b.snapshot {
            Some(id) => snapshots
                .chain_ids(id)
                .map_err(|e| fail(&e))?
                .into_iter()
                .map(|s| LayerSource {
                    diff: snapshots.diff_dir(&s),
                    unpacked_from: snapshots.unpacked_from(&s).and_then(|m| m.parse().ok()),
                    id: s,
                })
                .collect(),
            None => Vec::new(),
        });
    }
    let mut all_names: Vec<String> = names.to_vec();
    for o in outputs {
        if let Output::Image { names, .. } = o {
            all_names.extend(names.iter().cloned());
        }
    }
    // One platform: its image, named. Several: each platform's image, then an index of them, named.
    // With an archive, each image's blobs go into it as they are made (see `exporter::ArchiveStream`).
    let export = |options: &ExportOptions,
                  names: &[String],
                  mut archive: Option<&mut exporter::ArchiveStream<'_>>|
     -> Result<Produced, Failure> {
        let one =
            |layers: &[LayerSource],
             image: oci::Image,
             names: &[String],
             archive: Option<&mut exporter::ArchiveStream<'_>>| match archive {
                Some(archive) => {
                    exporter::export_image_into(store, layers, image, options, archive)
                }
                None => exporter::export_image(store, layers, image, options, names),
            };
        if let [only] = built {
            let image =
                one(&layers[0], only.image.clone(), names, archive).map_err(|e| fail(&e))?;
            return Ok(Produced {
                manifest: image.manifest,
                config: Some(image.config),
            });
        }
        let mut images = Vec::new();
        for (b, l) in built.iter().zip(&layers) {
            let image =
                one(l, b.image.clone(), &[], archive.as_deref_mut()).map_err(|e| fail(&e))?;
            images.push((b.platform.clone(), image));
        }
        let index = exporter::export_index(store, &images, options.oci_media_types, names)
            .map_err(|e| fail(&e))?;
        Ok(Produced {
            manifest: index,
            config: None,
        })
    };
    // The digest reported is that of the image that leaves the machine when there is one.
    let mut exported: Option<(Produced, Vec<String>)> = None;
    let mut metadata = serde_json::Map::new();
    for o in outputs {
        match o {
            Output::Image {
                layers: opts,
                push,
                names: own,
            } => {
                // Kiln's own store keeps layers uncompressed unless told otherwise (nothing is gained by
                // compressing what stays on this disk); a push gets gzip, made once per snapshot and remembered,
                // an archive written to a file gzip compressed straight into it.
                let mut image = export(
                    &opts.resolve(Compression::None, true, epoch),
                    &all_names,
                    None,
                )?;
                if *push {
                    let targets = if own.is_empty() { names } else { &own[..] };
                    let refs = targets
                        .iter()
                        .map(|t| {
                            oci::reference::Reference::parse(t)
                                .map_err(|e| usage(format!("{t}: {e}")))
                        })
                        .collect::<Result<Vec<_>, _>>()?;
                    let level = opts.resolve(Compression::Gzip(6), true, epoch).compression;
                    let pushed = crate::commands::registry::push_image(
                        client,
                        store,
                        &image.manifest.digest,
                        level,
                        &refs,
                    )?;
                    let size = store.blob_size(&pushed).map_err(|e| fail(&e))?;
                    image.manifest =
                        oci::manifest::Descriptor::new(&image.manifest.media_type, pushed, size);
                }
                if exported.is_none() || *push {
                    exported = Some((image, all_names.clone()));
                }
            }
            Output::Archive {
                dest,
                tar,
                docker,
                names,
                layers: opts,
            } => {
                let options = opts.resolve(Compression::Gzip(6), !docker, epoch);
                let tagged = |image: &Produced| {
                    [Tagged {
                        manifest: image.manifest.clone(),
                        names: names.clone(),
                    }]
                };
                let format = if *docker {
                    ArchiveFormat::Docker
                } else {
                    ArchiveFormat::Oci
                };
                let image = if *tar {
                    let mut produced = None;
                    outputs::write_to(dest, |w| {
                        let mut archive = exporter::ArchiveStream::new(w);
                        let image =
                            export(&options, &[], Some(&mut archive)).map_err(failure_text)?;
                        archive
                            .finish(store, &tagged(&image), format)
                            .map_err(|e| e.to_string())?;
                        produced = Some(image);
                        Ok(())
                    })?;
                    produced.ok_or_else(|| fail(&"the archive was written without an image"))?
                } else {
                    let image = export(&options, &[], None)?;
                    exporter::write_layout_dir(store, &tagged(&image), Path::new(dest))
                        .map_err(|e| fail(&e))?;
                    image
                };
                exported = Some((image, names.clone()));
            }
            Output::Local { dest } => {
                // Several platforms: one directory per platform (`linux_amd64/`), as BuildKit writes them.
                for b in built {
                    let dir = if built.len() > 1 {
                        Path::new(dest).join(platform_dir(&b.platform))
                    } else {
                        Path::new(dest).to_path_buf()
                    };
                    std::fs::create_dir_all(&dir).map_err(|e| fail(&e))?;
                    with_final_fs(snapshots, b.snapshot.as_deref(), |fs_root| {
                        copy_tree(fs_root, &dir)
                    })?;
                }
            }
            Output::Tar { dest } => {
                let diff = exporter::diff::DiffOptions {
                    source_date_epoch: epoch,
                };
                if let [only] = built {
                    with_final_fs(snapshots, only.snapshot.as_deref(), |fs_root| {
                        outputs::write_to(dest, |w| {
                            exporter::diff::write_diff(fs_root, w, diff)
                                .map(|_| ())
                                .map_err(|e| e.to_string())
                        })
                        .map_err(failure_text)
                    })?;
                } else {
                    with_final_fss(snapshots, built, &mut Vec::new(), &mut |trees| {
                        outputs::write_to(dest, |w| {
                            exporter::diff::write_trees(trees, w, diff)
                                .map(|_| ())
                                .map_err(|e| e.to_string())
                        })
                        .map_err(failure_text)
                    })?;
                }
            }
        }
    }
    if let Some((image, names)) = &exported {
        metadata.insert(
            "containerimage.digest".into(),
            image.manifest.digest.to_string().into(),
        );
        if let Some(config) = &image.config {
            metadata.insert(
                "containerimage.config.digest".into(),
                config.to_string().into(),
            );
        }
        if !names.is_empty() {
            metadata.insert("image.name".into(), names.join(",").into());
        }
        if let Some(f) = &args.iidfile {
            // BuildKit's image id: the config digest of one image, the index digest of several.
            let id = image.config.as_ref().unwrap_or(&image.manifest.digest);
            std::fs::write(f, id.to_string()).map_err(|e| fail(&e))?;
        }
        progress.summary(&format!("image {}", image.manifest.digest));
    } else {
        progress.summary("exported");
    }
    if let Some(f) = &args.metadata_file {
        let text = serde_json::to_string_pretty(&serde_json::Value::Object(metadata))
            .map_err(|e| fail(&e))?;
        std::fs::write(f, text).map_err(|e| fail(&e))?;
    }
    Ok(())
}

fn failure_text(f: Failure) -> String {
    match f {
        Failure::Build(m) | Failure::Usage(m) => m,
        Failure::Interrupted(s) => format!("stopped by signal {s}"),
    }
}

/// `linux/arm/v7` → `linux_arm_v7`: a platform's directory in multi-platform local and tar outputs.
fn platform_dir(p: &oci::Platform) -> String {
    p.to_string().replace('/', "_")
}

/// Copies a final filesystem into `dest` (`-o type=local`).
fn copy_tree(fs_root: &Path, dest: &Path) -> Result<(), String> {
    let copy = solver::llb::CopyAction::whole_tree(0);
    let input = solver::fileop::Input {
        root: fs_root.to_path_buf(),
        default_owner: None,
        ignore: vec![],
        reused: None,
    };
    solver::fileop::apply(dest, &[solver::llb::FileAction::Copy(copy)], &[input])
        .map_err(|e| e.to_string())
}

/// Named filesystem trees (`linux_amd64` → a mounted view), what a multi-platform tar output is written from.
type Trees<'a> = [(String, &'a Path)];

/// Mounts every platform's final filesystem (recursively, one per level) and calls `f` with all of them, each
/// under its platform's directory name.
fn with_final_fss<'a>(
    snapshots: &solver::snapshot::Snapshotter,
    rest: &'a [Built],
    trees: &mut Vec<(String, std::path::PathBuf)>,
    f: &mut dyn FnMut(&Trees) -> Result<(), String>,
) -> Result<(), Failure> {
    match rest.split_first() {
        None => {
            let borrowed: Vec<(String, &Path)> = trees
                .iter()
                .map(|(n, p)| (n.clone(), p.as_path()))
                .collect();
            f(&borrowed).map_err(Failure::Build)
        }
        Some((b, rest)) => {
            let mut inner: Result<(), Failure> = Ok(());
            with_final_fs(snapshots, b.snapshot.as_deref(), |fs_root| {
                trees.push((platform_dir(&b.platform), fs_root.to_path_buf()));
                inner = with_final_fss(snapshots, rest, trees, f);
                trees.pop();
                Ok(())
            })?;
            inner
        }
    }
}

fn with_final_fs(
    snapshots: &solver::snapshot::Snapshotter,
    snapshot: Option<&str>,
    f: impl FnOnce(&Path) -> Result<(), String>,
) -> Result<(), Failure> {
    let view = view_dir()?;
    let result = match snapshot {
        Some(id) => {
            let m = snapshots
                .mount_readonly(id, &view)
                .map_err(|e| Failure::Build(e.to_string()))?;
            let r = f(m.path());
            drop(m);
            r
        }
        None => f(&view),
    };
    let _ = std::fs::remove_dir(&view);
    result.map_err(Failure::Build)
}

/// An empty directory to mount a final filesystem on; each call its own, as several may be mounted at once.
fn view_dir() -> Result<std::path::PathBuf, Failure> {
    static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let p = std::env::temp_dir().join(format!("kiln-view-{}-{n}", std::process::id()));
    std::fs::create_dir_all(&p).map_err(|e| Failure::Build(format!("{}: {e}", p.display())))?;
    Ok(p)
}

#[cfg(test)]
mod tests {
    use super::parse_size;

    #[test]
    fn sizes_as_docker_reads_them() {
        assert_eq!(parse_size("64m"), Ok(64 << 20));
        assert_eq!(parse_size("1g"), Ok(1 << 30));
        assert_eq!(parse_size("1.5GB"), Ok(3 << 29));
        assert_eq!(parse_size("8388608"), Ok(8 << 20));
        assert!(parse_size("1k").is_err(), "below the minimum");
        assert!(parse_size("lots").is_err());
        assert!(parse_size("-5m").is_err());
    }
}
