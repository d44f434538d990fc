//! `kiln build`: the flags become an [`engine::BuildRequest`]; the engine's events are rendered as they come, the
//! image id and build metadata written when the outputs are, and Ctrl-C cancels the build.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::PathBuf;
use std::sync::mpsc::{channel, RecvTimeoutError};
use std::sync::Mutex;
use std::time::Duration;

use engine::{BuildRequest, Event, Outcome};
use solver::llb::NetworkMode;

use super::open_root;
use crate::cli::BuildArgs;
use crate::progress::{Mode, Progress};
use crate::{request, Failure};

fn usage(e: impl std::fmt::Display) -> Failure {
    Failure::Usage(e.to_string())
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

fn limits(args: &BuildArgs) -> Result<executor::cgroup::Limits, Failure> {
    let memory = args
        .memory
        .as_deref()
        .map(|m| engine::size::parse_size(m).map_err(|e| usage(format!("--memory {m}: {e}"))));
    Ok(executor::cgroup::Limits {
        memory: memory.transpose()?,
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
    })
}

/// The request `args` describe, over the context and Dockerfile of `request_args`.
fn request(
    args: &BuildArgs,
    request_args: &crate::cli::RequestArgs,
) -> Result<BuildRequest, Failure> {
    let loaded = request::load(request_args)?;
    let mut opts = loaded.opts;
    opts.no_cache = args.no_cache;
    opts.no_cache_filter = args.no_cache_filter.clone();
    for l in &args.labels {
        let (k, v) = l
            .split_once('=')
            .ok_or_else(|| usage(format!("--label {l}: expected KEY=VALUE")))?;
        opts.labels.insert(k.to_string(), v.to_string());
    }
    opts.network = match args.network.as_str() {
        "default" => NetworkMode::Default,
        "none" => NetworkMode::None,
        "host" => NetworkMode::Host,
        other => {
            return Err(usage(format!(
                "--network={other}: valid values are default, none, host"
            )))
        }
    };
    for h in &args.add_hosts {
        let entry =
            engine::runopts::parse_add_host(h).map_err(|e| usage(format!("--add-host: {e}")))?;
        opts.extra_hosts.push(entry);
    }
    if let Some(s) = &args.shm_size {
        opts.shm_size =
            engine::runopts::parse_shm_size(s).map_err(|e| usage(format!("--shm-size: {e}")))?;
    }
    for u in &args.ulimits {
        let limit =
            engine::runopts::parse_ulimit(u).map_err(|e| usage(format!("--ulimit: {e}")))?;
        // A later --ulimit of the same resource replaces the earlier one, as Docker's UlimitOpt keeps one a name.
        opts.ulimits.retain(|x| x.name != limit.name);
        opts.ulimits.push(limit);
    }
    let outputs = args.outputs.iter().map(|o| engine::output::parse(o));
    let cache_to = args
        .cache_to
        .iter()
        .map(|s| engine::remotecache::parse_cache_to(s));
    let cache_from = args
        .cache_from
        .iter()
        .map(|s| engine::remotecache::parse_cache_from(s));
    let mut req = BuildRequest::new(loaded.dockerfile, request_args.context.clone());
    req.outputs = outputs.collect::<Result<_, _>>().map_err(usage)?;
    if let Some(engine) = &args.load {
        // buildx's `--load`: the docker exporter, sent to the engine.
        req.outputs.push(engine::output::Output::Load {
            endpoint: engine::docker_api::Endpoint::for_load(engine).map_err(usage)?,
            names: Vec::new(),
            layers: Default::default(),
        });
    }
    if args.quiet {
        let to_stdout = req.outputs.iter().any(|o| match o {
            engine::output::Output::Archive { dest, .. } | engine::output::Output::Tar { dest } => {
                dest == "-"
            }
            _ => false,
        });
        if to_stdout {
            return Err(usage(
                "-q prints the image ID on stdout: an output written to stdout (dest=-) cannot share it",
            ));
        }
    }
    let annotations = args.annotations.iter().map(|a| {
        engine::annotations::parse_flag(a).map_err(|e| usage(format!("--annotation {a}: {e}")))
    });
    req.annotations = annotations.collect::<Result<_, _>>()?;
    for a in &args.attest {
        req.attest.add_attest(a)?;
    }
    if let Some(v) = &args.provenance {
        req.attest.set_provenance(v)?;
    }
    if let Some(v) = &args.sbom {
        req.attest.set_sbom(v)?;
    }
    req.cache_to = cache_to.collect::<Result<_, _>>().map_err(usage)?;
    req.cache_from = cache_from.collect::<Result<_, _>>().map_err(usage)?;
    req.source_date_epoch = source_date_epoch(&opts.build_args)?;
    req.opts = opts;
    req.platforms = loaded.platforms;
    req.tags = args.tags.clone();
    req.push = args.push;
    if let Some(v) = &args.layer_max_size {
        req.layer_max_size =
            Some(engine::output::parse_layer_max_size(v).map_err(|e| usage(format!("--{e}")))?);
    }
    let ssh = args.ssh.iter().map(|s| engine::request::parse_ssh(s));
    req.ssh = ssh.collect::<Result<_, _>>()?;
    let secrets = args
        .secrets
        .iter()
        .map(|s| engine::request::parse_secret(s));
    req.secrets = secrets.collect::<Result<_, _>>()?;
    req.allow = args.allow.iter().cloned().collect();
    req.max_parallelism = args.max_parallelism;
    req.runtime = args.runtime.clone();
    req.limits = limits(args)?;
    req.pull = args.pull;
    req.registry = super::registry::options(&args.registry);
    Ok(req)
}

/// The engine's events, rendered; the image id and metadata files written when the outputs are.
struct Sink<'a> {
    progress: &'a Progress,
    trace: engine::trace::Trace,
    args: &'a BuildArgs,
    failed: Mutex<Option<Failure>>,
    /// The build check warnings so far, for the metadata file's `buildx.build.warnings` (as buildx records them).
    warnings: Mutex<Vec<serde_json::Value>>,
    /// The image id, once the outputs are written: what `-q` prints.
    image_id: Mutex<Option<String>>,
}

impl Sink<'_> {
    fn write(&self, path: &Option<PathBuf>, text: impl FnOnce() -> String) {
        if let Some(f) = path {
            if let Err(e) = std::fs::write(f, text()) {
                let mut failed = self.failed.lock().unwrap_or_else(|p| p.into_inner());
                failed.get_or_insert(Failure::Build(format!("{}: {e}", f.display())));
            }
        }
    }
}

impl engine::Progress for Sink<'_> {
    fn event(&self, event: Event) {
        self.trace.record(&event);
        if let Event::CheckWarning {
            rule,
            message,
            line,
        } = &event
        {
            let mut w = self.warnings.lock().unwrap_or_else(|p| p.into_inner());
            w.push(crate::progress::rawjson::check_warning(
                rule, message, *line,
            ));
        }
        let Event::Exported(outcome) = &event else {
            return self.progress.event(event);
        };
        let mut metadata = serde_json::Map::new();
        if let Outcome::Image(image) = outcome {
            metadata.insert(
                "containerimage.digest".into(),
                image.digest.to_string().into(),
            );
            if let Some(config) = &image.config {
                metadata.insert(
                    "containerimage.config.digest".into(),
                    config.to_string().into(),
                );
            }
            if !image.names.is_empty() {
                metadata.insert("image.name".into(), image.names.join(",").into());
            }
            self.write(&self.args.iidfile, || image.id().to_string());
            *self.image_id.lock().unwrap_or_else(|p| p.into_inner()) = Some(image.id().to_string());
        }
        let warnings = self.warnings.lock().map(|w| w.clone()).unwrap_or_default();
        if !warnings.is_empty() {
            metadata.insert("buildx.build.warnings".into(), warnings.into());
        }
        let written = *outcome != Outcome::NoOutput;
        self.progress.event(event);
        if written {
            let doc = serde_json::Value::Object(metadata);
            self.write(&self.args.metadata_file, || {
                serde_json::to_string_pretty(&doc).unwrap_or_default()
            });
        }
    }
}

/// Stages a context given on stdin (`kiln build -`), as `docker build -` takes one.
fn stage_stdin(
    args: &crate::cli::RequestArgs,
    root: &engine::Root,
) -> Result<Option<engine::stdin_context::Staged>, Failure> {
    if args.context.as_os_str() != "-" {
        return Ok(None);
    }
    if args.file.as_deref().is_some_and(|f| f.as_os_str() == "-") {
        return Err(usage(
            "the context and the Dockerfile cannot both come from stdin",
        ));
    }
    let mut input = Vec::new();
    std::io::stdin()
        .read_to_end(&mut input)
        .map_err(|e| usage(format!("reading the build context from stdin: {e}")))?;
    Ok(Some(engine::stdin_context::stage(
        root,
        args.file.as_deref(),
        input,
    )?))
}

/// Runs `kiln build`.
pub fn run(args: &BuildArgs) -> Result<(), Failure> {
    let call = match (&args.call, args.check) {
        (Some(c), _) => super::call::parse(c)?,
        (None, true) => super::call::parse("check")?,
        (None, false) => None,
    };
    if let Some(call) = call {
        return super::call::run(args, call);
    }
    let mut mode = Mode::parse(&args.progress).map_err(Failure::Usage)?;
    if args.quiet {
        // buildx's rule: -q is quiet progress, and no other kind.
        if !matches!(args.progress.as_str(), "auto" | "quiet") {
            return Err(usage(format!(
                "progress={} and quiet cannot be used together",
                args.progress
            )));
        }
        mode = Mode::Quiet;
    }
    let root = open_root(&args.root);
    let staged = stage_stdin(&args.request, &root)?;
    let mut request_args = args.request.clone();
    if let Some(s) = &staged {
        request_args.context = s.context.clone();
        request_args.file = s.file.clone();
    }
    let req = request(args, &request_args)?;
    // The files written after the build must be writable before it starts.
    for (flag, path) in [
        ("--iidfile", &args.iidfile),
        ("--metadata-file", &args.metadata_file),
    ] {
        if let Some(p) = path {
            engine::output::check_file_destination(flag, p).map_err(usage)?;
        }
    }
    let cancel = req.cancel.clone();
    let progress = Progress::new(mode);
    let sink = Sink {
        progress: &progress,
        trace: engine::trace::Trace::new(),
        args,
        failed: Mutex::new(None),
        warnings: Mutex::new(Vec::new()),
        image_id: Mutex::new(None),
    };
    let signals = crate::signals::Guard::install();
    let (stop, stopped) = channel::<()>();
    let result = std::thread::scope(|scope| {
        // SIGINT/SIGTERM cancel the build: running steps are killed and cleaned up, the rest never start. The
        // live display's timers move even while no step prints anything.
        let (signals, cancel, progress) = (&signals, &cancel, &progress);
        scope.spawn(move || {
            let mut ticks = 0u32;
            while let Err(RecvTimeoutError::Timeout) =
                stopped.recv_timeout(Duration::from_millis(50))
            {
                if signals.received().is_some() {
                    cancel.cancel();
                }
                ticks += 1;
                if mode == Mode::Tty && ticks.is_multiple_of(2) {
                    progress.tick();
                }
            }
        });
        let r = engine::build(&root, req, &sink);
        drop(stop);
        r
    });
    progress.print_check_warnings();
    // The trace is written however the build ends: a failed build's timeline is the one worth reading.
    if let Some(p) = &args.trace {
        if let Err(e) = sink.trace.write(p) {
            eprintln!("warning: --trace {}: {e}", p.display());
        }
    }
    match result {
        Err(e) => match signals.received() {
            Some(signal) => Err(Failure::Interrupted(signal)),
            None => Err(e.into()),
        },
        Ok(_) => match sink.failed.into_inner().unwrap_or_else(|p| p.into_inner()) {
            Some(f) => Err(f),
            None => {
                if args.quiet {
                    if let Some(id) = sink
                        .image_id
                        .into_inner()
                        .unwrap_or_else(|p| p.into_inner())
                    {
                        println!("{id}");
                    }
                }
                Ok(())
            }
        },
    }
}
