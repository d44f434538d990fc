//! The build as a function: lower the Dockerfile (once per target platform, merged into one graph), solve the
//! graph with the worker (snapshots, cache, sandbox), export the outputs, write the caches, and collect garbage
//! after. Progress goes out as [`Event`]s, failures as [`BuildError`]s.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};

use oci::store::Store;
use solver::llb::{Definition, NetworkMode, Op, SecurityMode, VertexId};
use solver::scheduler::{Scheduler, SolveError};
use solver::worker::{CacheEvent, Fs, LocalDir, SandboxRunner, Worker, WorkerError};

use crate::error::BuildError;
use crate::events::{Event, Outcome, Progress};
use crate::export::{self, Built};
use crate::gc::{self, PrunePolicy};
use crate::output::Output;
use crate::remotecache::{self, CacheLocation};
use crate::request::BuildRequest;
use crate::resolver::Resolver;
use crate::root::Root;

/// What a build produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BuildResult {
    /// What its outputs came to (the image's digest, when it made one).
    pub outcome: Outcome,
}

/// Builds `request` under `root`: holds the root's lock shared for the build (a prune waits for it), then, when
/// kiln.toml sets a GC policy and no other build holds the root, prunes the build cache down to it.
pub fn build(
    root: &Root,
    request: BuildRequest,
    progress: &dyn Progress,
) -> Result<BuildResult, BuildError> {
    let policy = PrunePolicy::from_config(&crate::config::load()?.gc, root)?;
    // A root already over its bounds (an earlier build crossed them while another held the root) is brought
    // back before this build adds to it.
    collect(root, policy.as_ref(), progress);
    let lock = root.lock(false)?;
    executor::process::set_owner_tag(&root.owner_tag());
    let result = run(root, request, progress).map_err(|e| full_disk(root, e));
    drop(lock);
    if result.is_ok() {
        collect(root, policy.as_ref(), progress);
    }
    result
}

/// Automatic GC under `policy` (see `gc::auto_gc`), its result told as a message or a warning.
fn collect(root: &Root, policy: Option<&(PrunePolicy, gc::PolicySource)>, progress: &dyn Progress) {
    let Some((policy, source)) = policy else {
        return;
    };
    let said = match source {
        gc::PolicySource::Config => "as kiln.toml [gc] says",
        gc::PolicySource::Default => {
            "to keep the root within the default gc policy (kiln du shows it)"
        }
    };
    match gc::auto_gc(root, Some(policy)) {
        Some(Ok(p)) if p.records > 0 => progress.event(Event::Message(format!(
            "kiln: gc: removed {} cache records ({} reclaimed) {said}",
            p.records,
            gc::human(p.bytes),
        ))),
        Some(Err(e)) => progress.event(Event::Warning {
            vertex: None,
            message: format!("gc: {e}"),
        }),
        _ => {}
    }
}

fn invalid(message: String) -> BuildError {
    BuildError::Invalid(message)
}

/// Normalises the names of `-t` and of the image-writing outputs, and completes the outputs as buildx does: `-t`
/// implies an image output, names archives that name nothing, and `--push` pushes the image output.
fn complete_outputs(req: &BuildRequest) -> Result<(Vec<String>, Vec<Output>), BuildError> {
    let mut outputs = req.outputs.clone();
    let mut names: Vec<String> = Vec::new();
    for t in &req.tags {
        names.push(
            frontend::lower::normalize_reference(t).map_err(|e| invalid(format!("-t {t}: {e}")))?,
        );
    }
    for o in &mut outputs {
        if let Output::Image { names: n, .. }
        | Output::Archive { names: n, .. }
        | Output::Load { names: n, .. } = o
        {
            for x in n.iter_mut() {
                *x = frontend::lower::normalize_reference(x)
                    .map_err(|e| invalid(format!("name={x}: {e}")))?;
            }
        }
        // As buildx does, -t names every image-writing output that names nothing itself.
        if let Output::Archive { names: n, .. } | Output::Load { names: n, .. } = o {
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
    if req.push {
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
    if let Some(max) = req.layer_max_size {
        for o in &mut outputs {
            if let Output::Image { layers, .. } | Output::Archive { layers, .. } = o {
                layers.layer_max_size.get_or_insert(max);
            }
        }
    }
    // buildx adds its --annotation flags to every image-writing output.
    for o in &mut outputs {
        if let Output::Image { layers, .. }
        | Output::Archive { layers, .. }
        | Output::Load { layers, .. } = o
        {
            layers.annotations.0.extend(req.annotations.iter().cloned());
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
                return Err(invalid(
                    "--push (or push=true) needs a name to push to: -t REGISTRY/REPO:TAG"
                        .to_string(),
                ));
            }
        }
    }
    Ok((names, outputs))
}

/// Refuses a `--build-context NAME=DIR` whose directory is not there, before anything runs (a step reading it
/// would otherwise report a path missing from the context instead).
fn check_named_dirs(contexts: &BTreeMap<String, frontend::NamedContext>) -> Result<(), BuildError> {
    for (name, ctx) in contexts {
        if let frontend::NamedContext::Local(dir) = ctx {
            match std::fs::metadata(dir) {
                Ok(m) if m.is_dir() => {}
                Ok(_) => {
                    return Err(invalid(format!(
                        "--build-context {name}={dir}: {dir} is not a directory"
                    )))
                }
                Err(_) => {
                    return Err(invalid(format!(
                        "--build-context {name}={dir}: directory {dir} does not exist"
                    )))
                }
            }
        }
    }
    Ok(())
}

/// Refuses, before any step runs, outputs that cannot hold what the build makes, in BuildKit's words: a docker
/// archive (or `--load`) of several platforms, annotations with no place to go; and asks a `--load` engine
/// whether it is there at all.
fn check_outputs(
    outputs: &[Output],
    targets: &[Target],
    attest: &crate::attest::AttestRequest,
    progress: &dyn Progress,
) -> Result<(), BuildError> {
    let platforms: Vec<oci::Platform> = targets.iter().map(|t| t.platform.clone()).collect();
    if attest.any() {
        for o in outputs {
            match o {
                // BuildKit's image writer refuses the same way.
                Output::Image { layers, .. }
                | Output::Archive {
                    layers,
                    docker: false,
                    ..
                } if layers.oci_media_types == Some(false) => {
                    return Err(invalid(
                        "cannot export attestations with \"oci-mediatypes=false\"".to_string(),
                    ))
                }
                Output::Archive { docker: true, .. } | Output::Load { .. } | Output::Tar { .. } => {
                    let what = match o {
                        Output::Tar { .. } => "a tar output",
                        _ => "a docker archive (or --load)",
                    };
                    progress.event(Event::Warning {
                        vertex: None,
                        message: format!(
                            "attestations are not written to {what}: use -o type=oci, type=image, type=registry or type=local for them"
                        ),
                    });
                }
                _ => {}
            }
        }
    }
    for o in outputs {
        let (layers, default_oci) = match o {
            Output::Image { layers, .. } => (layers, true),
            Output::Archive { layers, docker, .. } => (layers, !docker),
            Output::Load { layers, .. } => (layers, false),
            Output::Local { .. } | Output::Tar { .. } => continue,
        };
        let docker = matches!(
            o,
            Output::Archive { docker: true, .. } | Output::Load { .. }
        );
        if docker && platforms.len() > 1 {
            return Err(invalid(
                "docker exporter does not currently support exporting manifest lists (a docker archive holds \
                 one platform per image: use -o type=oci, or push, for a multi-platform build)"
                    .to_string(),
            ));
        }
        let oci = layers.oci_media_types.unwrap_or(default_oci)
            || layers.compression.as_deref() == Some("zstd");
        layers.annotations.check(&platforms, oci)?;
    }
    for o in outputs {
        if let Output::Load { endpoint, .. } = o {
            endpoint.ping()?;
        }
    }
    Ok(())
}

/// Refuses cgroup limits in a rootless kiln before anything runs: an ordinary user has no cgroup delegation, so
/// the first RUN would fail on a cgroup file it may not write.
fn check_rootless_limits(limits: &executor::cgroup::Limits) -> Result<(), BuildError> {
    if !crate::rootless::active() {
        return Ok(());
    }
    let asked: Vec<&str> = [
        ("--memory", limits.memory.is_some()),
        ("--cpus", limits.cpus.is_some()),
        ("--pids-limit", limits.pids.is_some()),
    ]
    .into_iter()
    .filter_map(|(flag, set)| set.then_some(flag))
    .collect();
    if asked.is_empty() {
        return Ok(());
    }
    Err(invalid(format!(
        "{} cannot be used by a rootless kiln: RUN steps run without a cgroup of their own (an ordinary user has no cgroup delegation here); build as root for resource limits",
        asked.join(", ")
    )))
}

/// Refuses steps that need an entitlement the request did not grant.
fn check_entitlements(
    def: &Definition,
    roots: &[VertexId],
    allowed: &BTreeSet<String>,
) -> Result<(), BuildError> {
    for id in def.closure(roots) {
        if let Op::Exec(e) = &def.vertex(id).op {
            if e.network == NetworkMode::Host && !allowed.contains("network.host") {
                return Err(invalid(format!(
                    "{}: entitlement network.host is not allowed (--network=host needs `--allow network.host`)",
                    def.vertex(id).meta.description
                )));
            }
            if e.security == SecurityMode::Insecure && !allowed.contains("security.insecure") {
                return Err(invalid(format!(
                    "{}: entitlement security.insecure is not allowed (--security=insecure needs `--allow security.insecure`)",
                    def.vertex(id).meta.description
                )));
            }
        }
    }
    Ok(())
}

/// Seconds since 1970, now.
fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .ok()
        .and_then(|d| i64::try_from(d.as_secs()).ok())
        .unwrap_or(0)
}

/// The provenance attestation of one target, when asked for.
fn provenance_of(
    req: &BuildRequest,
    def: &Definition,
    root: Option<VertexId>,
    started: i64,
) -> Result<Vec<exporter::attestation::Attestation>, BuildError> {
    let Some(opts) = &req.attest.provenance else {
        return Ok(Vec::new());
    };
    // BuildKit's invocation id is the build's random id; kiln's is derived from the build's start and process.
    let invocation = oci::Digest::sha256_of(
        format!("{started}|{}|{}", std::process::id(), req.project()).as_bytes(),
    );
    let input = crate::attest::provenance::ProvenanceInput {
        request: req,
        definition: def,
        root,
        started,
        finished: now(),
        invocation_id: &invocation.hex()[..25],
    };
    let a = crate::attest::provenance::attestation(opts, &input)
        .map_err(|e| BuildError::Failed(format!("making the provenance attestation: {e}")))?;
    Ok(vec![a])
}

fn run(
    root: &Root,
    mut req: BuildRequest,
    progress: &dyn Progress,
) -> Result<BuildResult, BuildError> {
    let started = now();
    for note in &req.attest.notes {
        progress.event(Event::Warning {
            vertex: None,
            message: note.clone(),
        });
    }
    let (names, outputs) = complete_outputs(&req)?;
    // A pushed image carries mode=min provenance unless the request said otherwise, as `buildx build --push` does.
    let pushes = outputs
        .iter()
        .any(|o| matches!(o, Output::Image { push: true, .. }));
    req.attest.default_for_push(pushes);
    // A destination that cannot be written fails now, not after the whole build.
    crate::output::check_destinations(&outputs)?;
    check_rootless_limits(&req.limits)?;
    check_named_dirs(&req.opts.build_contexts)?;
    if let Some(syntax) = req.dockerfile.parsed.directives.foreign_syntax() {
        progress.event(Event::Warning {
            vertex: None,
            message: format!(
                "# syntax={syntax}: kiln does not run frontend images; this Dockerfile is built with kiln's built-in frontend (docker/dockerfile:1) instead"
            ),
        });
    }
    let store = Store::open(&root.store())?;
    // One registry client for the build (base image pulls, cache import and export, pushes), so tokens are
    // fetched once.
    let registry = Arc::new(crate::registry::client(&req.registry)?);
    let resolver = Resolver::new(store.clone(), Some(registry.clone()), req.pull);
    let (definition, targets, dockerfile_epoch) =
        lower_platforms(&req, &resolver, &req.project(), progress)?;
    build_checks(&req, &store, progress)?;
    // `--build-arg SOURCE_DATE_EPOCH` (or the environment) first, else a global `ARG SOURCE_DATE_EPOCH=` default,
    // as BuildKit's frontend reads it; an empty value sets none.
    let epoch = match (
        req.source_date_epoch,
        dockerfile_epoch.as_deref().map(str::trim),
    ) {
        (Some(e), _) => Some(e),
        (None, Some(v)) if !v.is_empty() => Some(
            v.parse::<i64>()
                .map_err(|_| BuildError::Invalid(format!("invalid SOURCE_DATE_EPOCH: {v}")))?,
        ),
        _ => None,
    };
    let def = &definition;
    let roots: Vec<VertexId> = targets.iter().filter_map(|t| t.root).collect();
    check_outputs(&outputs, &targets, &req.attest, progress)?;
    check_entitlements(def, &roots, &req.allow)?;
    // CDI devices: the specs are read only when a step asks for one, and every device is resolved and checked
    // against `--allow device` before any step runs.
    let grant = crate::runopts::device_grant(&req.allow)?;
    let cdi = if crate::runopts::wants_devices(def, &roots) {
        let registry = executor::cdi::Registry::scan(&crate::config::load()?.cdi.dirs());
        for warning in crate::runopts::check_devices(def, &roots, &grant, &registry)? {
            progress.event(Event::Warning {
                vertex: None,
                message: warning,
            });
        }
        registry
    } else {
        executor::cdi::Registry::default()
    };
    let mut locals = BTreeMap::new();
    locals.insert(
        "context".to_string(),
        LocalDir {
            path: std::path::absolute(&req.context).unwrap_or_else(|_| req.context.clone()),
            ignore: req.opts.ignore_patterns.clone(),
        },
    );
    for (name, ctx) in &req.opts.build_contexts {
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
    let runner = SandboxRunner::new(
        &req.runtime,
        &root.runtime(),
        req.secrets.clone(),
        Box::new(|vertex, line| {
            progress.event(Event::Log {
                vertex,
                line: line.to_string(),
            })
        }),
    )
    .with_limits(req.limits)
    .with_ssh(req.ssh.clone())
    .with_cdi(cdi);
    runner.sweep_stale();
    let cached: Mutex<BTreeSet<VertexId>> = Default::default();
    let worker = Worker::new(
        &root.worker_dirs(),
        &resolver,
        &runner,
        locals,
        Box::new(|ev| match ev {
            CacheEvent::Hit(vertex) => {
                if let Ok(mut c) = cached.lock() {
                    c.insert(vertex);
                }
                progress.event(Event::Cached { vertex });
            }
            CacheEvent::Miss(vertex, reasons) => progress.event(Event::Missed { vertex, reasons }),
            CacheEvent::ImportFailed(vertex, reason) => progress.event(Event::Log {
                vertex,
                line: format!("imported cache not usable: {reason}"),
            }),
        }),
    )?;
    // Imported caches: records now, blobs when a step hits; cache mount contents before any step starts.
    let mounts = cache_mounts(def, &roots, root);
    let mut imported = Vec::new();
    for from in &req.cache_from {
        match remotecache::import(from, &store, &registry) {
            Ok(i) => imported.push(i),
            Err(e) => progress.event(Event::Warning {
                vertex: None,
                message: format!("--cache-from: {e} (building without it)"),
            }),
        }
    }
    for restored in remotecache::restore_mounts(&imported, &mounts, &store) {
        if let Err(e) = restored {
            progress.event(Event::Warning {
                vertex: None,
                message: format!("--cache-from: {e}"),
            });
        }
    }
    let worker = worker.with_imported(remotecache::into_cache(imported), store.clone());
    let parallel = req.max_parallelism.unwrap_or_else(|| {
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(2)
    });
    // A final image's layers are compressed as their steps finish, on the cores the steps leave idle.
    let early = crate::early::plan(&outputs, epoch, def, &roots);
    let compressor = crate::early::Compressor::default();
    let on_event = |ev| match ev {
        solver::scheduler::Event::Started(vertex) => progress.event(Event::Started {
            vertex,
            name: def.vertex(vertex).meta.description.clone(),
            digest: def.digest(vertex).clone(),
            inputs: def
                .vertex(vertex)
                .inputs
                .iter()
                .map(|i| def.digest(*i).clone())
                .collect(),
        }),
        solver::scheduler::Event::Finished(vertex, took) => {
            let was_cached = cached.lock().map(|c| c.contains(&vertex)).unwrap_or(false);
            progress.event(Event::Done {
                vertex,
                took,
                cached: was_cached,
            })
        }
        solver::scheduler::Event::Failed(_) => {}
    };
    let result = std::thread::scope(|scope| match &early {
        Some(plan) => {
            let (to, compressing) = compressor.start(scope, plan, &store, worker.snapshots());
            let runner = crate::early::Runner {
                inner: &worker,
                chain: plan.chain(),
                roots: plan.roots(),
                to,
                compressor: &compressor,
            };
            let result =
                Scheduler::new(parallel).solve(def, &roots, &runner, &req.cancel, &on_event);
            compressor.end();
            drop(runner);
            let _ = compressing.join();
            result
        }
        None => Scheduler::new(parallel).solve(def, &roots, &worker, &req.cancel, &on_event),
    });
    if compressor.made() > 0 {
        progress.event(Event::Message(format!(
            "{} layer(s) compressed while the build ran",
            compressor.made()
        )));
    }
    // The records of the steps that finished are published whatever the outcome (a re-run reuses them).
    let settled = worker.settle();
    if req.cancel.is_cancelled() && !matches!(result, Err(SolveError::Op(..))) {
        return Err(BuildError::Cancelled);
    }
    let outputs_by_vertex = match result {
        Ok(o) => o,
        // The first step to fail was stopped from outside: the build was cancelled, no step failed.
        Err(SolveError::Op(_, WorkerError::Cancelled)) => return Err(BuildError::Cancelled),
        Err(SolveError::Op(vertex, err)) => {
            progress.event(Event::Error {
                vertex,
                message: err.to_string(),
            });
            return Err(BuildError::Step {
                vertex,
                message: step_error(&req, def.vertex(vertex), &err, root),
            });
        }
        Err(SolveError::Cancelled) => return Err(BuildError::Cancelled),
    };
    settled?;
    let snapshots = worker.snapshots().clone();
    worker.save_stat_caches()?;
    let index = solver::cache::CacheIndex::open(&root.cache())?;
    let provenance: Vec<Vec<exporter::attestation::Attestation>> = targets
        .iter()
        .map(|t| provenance_of(&req, def, t.root, started))
        .collect::<Result<_, _>>()?;
    let mut built: Vec<Built> = targets
        .into_iter()
        .zip(provenance)
        .map(|(t, attestations)| Built {
            attestations,
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
    if let Some(opts) = &req.attest.sbom {
        let name = names.first().map(String::as_str).unwrap_or("image");
        for b in &mut built {
            b.attestations.push(crate::attest::sbom::made(
                opts, &snapshots, b, name, epoch, started, progress,
            )?);
        }
    }
    let state = remotecache::BuildState {
        store: &store,
        snapshots: &snapshots,
        index: &index,
        steps: outputs_by_vertex
            .values()
            .filter_map(|o| match &o.fs {
                Fs::Snapshot(s) => Some(remotecache::ExportStep {
                    key: o.key.clone(),
                    snapshot: s.clone(),
                }),
                _ => None,
            })
            .collect(),
        finals: built.iter().filter_map(|b| b.snapshot.clone()).collect(),
        mounts,
    };
    if req
        .cache_to
        .iter()
        .any(|t| t.location == CacheLocation::Inline)
    {
        for b in &mut built {
            if let Some(last) = &b.snapshot {
                b.image.inline_cache =
                    Some(remotecache::inline_cache(&state, last).map_err(BuildError::InlineCache)?);
            }
        }
    }
    let outcome = export::export(
        &export::Exporting {
            store: &store,
            client: &registry,
            snapshots: &snapshots,
            built: &built,
            names: &names,
            epoch,
        },
        &outputs,
        progress,
    )?;
    let (ahead, used) = compressor.ahead();
    if ahead > 0 {
        progress.event(Event::Message(format!(
            "{} MiB of big files compressed while their steps wrote them, {} MiB of it used",
            ahead >> 20,
            used >> 20
        )));
    }
    drop(compressor);
    progress.event(Event::Exported(outcome.clone()));
    for to in &req.cache_to {
        match remotecache::export(&state, to, &registry) {
            Ok(line) => progress.event(Event::Message(line)),
            Err(e) if to.ignore_error => progress.event(Event::Warning {
                vertex: None,
                message: format!("--cache-to: {e}"),
            }),
            Err(e) => return Err(BuildError::CacheExport(e)),
        }
    }
    Ok(BuildResult { outcome })
}

/// The build's `RUN --mount=type=cache` directories by mount id: what `cache-mounts=true` exports and
/// `--cache-from` restores.
fn cache_mounts(
    def: &Definition,
    roots: &[VertexId],
    root: &Root,
) -> BTreeMap<String, std::path::PathBuf> {
    let mut out = BTreeMap::new();
    for id in def.closure(roots) {
        if let Op::Exec(e) = &def.vertex(id).op {
            for m in &e.mounts {
                if let solver::llb::MountKind::Cache { id, .. } = &m.kind {
                    out.insert(id.clone(), root.cache_mount(id));
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

/// Lowers the Dockerfile once per target platform and merges the graphs, so a multi-platform build is one solve:
/// work the platforms share (a `FROM --platform=$BUILDPLATFORM` builder stage) is one vertex and runs once, the
/// rest runs in parallel. With several platforms each step's name and cache slot carry its platform.
fn lower_platforms(
    req: &BuildRequest,
    resolver: &Resolver,
    project: &str,
    progress: &dyn Progress,
) -> Result<(Definition, Vec<Target>, Option<String>), BuildError> {
    let platforms: Vec<Option<oci::Platform>> = if req.platforms.len() > 1 {
        req.platforms.iter().cloned().map(Some).collect()
    } else {
        vec![req.opts.target_platform.clone()]
    };
    let multi = platforms.len() > 1;
    let mut def = Definition::new();
    let mut targets = Vec::new();
    let mut epoch = None;
    for (i, platform) in platforms.into_iter().enumerate() {
        let mut opts = req.opts.clone();
        opts.target_platform = platform.clone();
        let lowered = frontend::lower(&req.dockerfile.parsed, &opts, resolver)
            .map_err(|e| BuildError::Dockerfile(req.dockerfile.render(&e)))?;
        if i == 0 {
            epoch = lowered.source_date_epoch.clone();
            for name in &lowered.unused_build_args {
                progress.event(Event::Warning {
                    vertex: None,
                    message: format!("build-arg {name} was not consumed by any stage"),
                });
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
    Ok((def, targets, epoch))
}

/// BuildKit's build checks, run as its Dockerfile frontend runs them on every build: each finding goes out as an
/// [`Event::CheckWarning`], and when the check directive (or the `BUILDKIT_DOCKERFILE_CHECK` build arg) sets
/// `error=true` any finding fails the build before a step runs, in BuildKit's words (`lint violation found for
/// rules: ...`). Runs after lowering, with a resolver that answers from the store alone: the images the build
/// needs were just resolved (so InvalidBaseImagePlatform sees them), and the checks pull nothing more, not even
/// the bases of stages the target does not reach. Stages that do not lower are the build's errors, not the
/// checks'.
fn build_checks(
    req: &BuildRequest,
    store: &Store,
    progress: &dyn Progress,
) -> Result<(), BuildError> {
    let local = Resolver::for_checks(store.clone());
    let mut opts = req.opts.clone();
    if let Some(first) = req.platforms.first() {
        opts.target_platform = Some(first.clone());
    }
    let report = frontend::checks::run_checks_with(&req.dockerfile.parsed, &opts, &local)
        .map_err(|e| BuildError::Dockerfile(req.dockerfile.render(&e)))?;
    for f in &report.findings {
        progress.event(Event::CheckWarning {
            rule: f.rule.to_string(),
            message: f.message.clone(),
            line: f.span.start_line,
        });
    }
    let Some(first) = report.findings.first() else {
        return Ok(());
    };
    if !report.config.error {
        return Ok(());
    }
    let mut rules: Vec<&str> = Vec::new();
    for f in &report.findings {
        if !rules.contains(&f.rule) {
            rules.push(f.rule);
        }
    }
    let e = frontend::FrontendError::at(
        first.span,
        format!("lint violation found for rules: {}", rules.join(", ")),
    );
    Err(BuildError::Lint(req.dockerfile.render(&e)))
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

fn no_space_line(root: &Root, what: &str) -> String {
    format!(
        "{what}: no space left on device in kiln's root {}: free space, or remove build cache with `kiln prune`",
        root.path().display()
    )
}

/// One line for a build that filled kiln's root, instead of the internal path the write failed on.
fn full_disk(root: &Root, e: BuildError) -> BuildError {
    if e.is_usage() || matches!(e, BuildError::Cancelled) {
        return e;
    }
    let msg = e.to_string();
    if is_no_space(&msg) && !msg.contains("kiln prune") {
        return BuildError::Failed(no_space_line(root, "exporting the image"));
    }
    e
}

/// A failed step's message: the error, the step's last output lines, and its lines of the Dockerfile.
fn step_error(
    req: &BuildRequest,
    v: &solver::llb::Vertex,
    err: &WorkerError,
    root: &Root,
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
        msg.push_str(&format!(
            "\n------ {}:{start} ------",
            req.dockerfile.display_name
        ));
        for (i, l) in req
            .dockerfile
            .parsed
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::request::Dockerfile;

    fn request() -> BuildRequest {
        let d = Dockerfile::parse("Dockerfile".into(), None, b"FROM scratch\n").unwrap();
        BuildRequest::new(d, ".")
    }

    #[test]
    fn tags_imply_an_image_output_and_name_archives_as_buildx_does() {
        let mut r = request();
        r.tags = vec!["app:1".into()];
        r.outputs = vec![crate::output::parse("type=oci,dest=x.tar").unwrap()];
        let (names, outputs) = complete_outputs(&r).unwrap();
        assert_eq!(names, ["docker.io/library/app:1"]);
        assert!(
            matches!(&outputs[0], Output::Archive { names, .. } if names == &["docker.io/library/app:1"])
        );
        assert!(matches!(&outputs[1], Output::Image { push: false, .. }));
    }

    #[test]
    fn a_push_needs_a_name() {
        let mut r = request();
        r.push = true;
        let e = complete_outputs(&r).unwrap_err();
        assert!(e.is_usage());
        assert!(
            e.to_string()
                .starts_with("--push (or push=true) needs a name"),
            "{e}"
        );
        r.tags = vec!["reg:5000/app:1".into()];
        let (_, outputs) = complete_outputs(&r).unwrap();
        assert!(matches!(&outputs[..], [Output::Image { push: true, .. }]));
    }
}
