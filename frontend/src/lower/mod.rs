//! Lowering (BuildKit's `dockerfile2llb`): stages, build-arg scoping, and each instruction turned into LLB ops
//! plus the image config its stage accumulates. Only the stages the target needs are lowered.

mod args;
mod copy;
mod dispatch;
mod history;
mod paths;
mod run;
mod stage;

use std::collections::{BTreeMap, BTreeSet};

use llb::{Definition, VertexId};
use oci::{Digest, Image, Platform};

pub use args::{is_proxy_arg, Scope, PROXY_ARGS};
pub use stage::normalize_reference;

use crate::error::FrontendError;
use crate::finding::Finding;
use crate::instructions::{parse_dockerfile, Stages};
use crate::parser::Dockerfile;
use crate::subrequests::outline::Capture;

/// What a `--build-context NAME=VALUE` points at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NamedContext {
    /// A local directory (`NAME=DIR`).
    Local(String),
    /// An image (`NAME=docker-image://REF`).
    Image(String),
    /// An image in an OCI layout (`NAME=oci-layout://PATH[:TAG|@DIGEST]`).
    OciLayout {
        /// The layout directory.
        path: String,
        /// Tag or digest; `latest` when absent.
        reference: String,
    },
}

impl NamedContext {
    /// Parses the value part of `--build-context NAME=VALUE` (BuildKit's syntax).
    pub fn parse(value: &str) -> Result<NamedContext, FrontendError> {
        if let Some(r) = value.strip_prefix("docker-image://") {
            if r.is_empty() {
                return Err(FrontendError::request(
                    "--build-context docker-image:// needs an image reference",
                ));
            }
            return Ok(NamedContext::Image(r.to_string()));
        }
        if let Some(rest) = value.strip_prefix("oci-layout://") {
            let (path, reference) = match rest.rsplit_once('@') {
                Some((p, d)) => (p, d.to_string()),
                None => match rest.rsplit_once(':') {
                    Some((p, t)) if !t.contains('/') => (p, t.to_string()),
                    _ => (rest, "latest".to_string()),
                },
            };
            if path.is_empty() {
                return Err(FrontendError::request(
                    "--build-context oci-layout:// needs a path",
                ));
            }
            return Ok(NamedContext::OciLayout {
                path: path.to_string(),
                reference,
            });
        }
        if value.contains("://") {
            return Err(FrontendError::request(format!(
                "--build-context value {value:?}: unsupported scheme (use a directory, docker-image://REF or oci-layout://PATH[:TAG])"
            )));
        }
        if value.is_empty() {
            return Err(FrontendError::request(
                "--build-context needs NAME=VALUE with a non-empty value",
            ));
        }
        Ok(NamedContext::Local(value.to_string()))
    }
}

/// Everything about a build request the frontend needs; the CLI fills it from flags.
#[derive(Debug, Clone)]
pub struct BuildOpts {
    /// The stage to build; the last one when `None`.
    pub target: Option<String>,
    /// `--build-arg` values (bare `K` already resolved from the environment by the caller).
    pub build_args: BTreeMap<String, String>,
    /// `--build-context` overrides, by name.
    pub build_contexts: BTreeMap<String, NamedContext>,
    /// `--platform`; the build platform when `None`.
    pub target_platform: Option<Platform>,
    /// The platform kiln runs on.
    pub build_platform: Platform,
    /// .dockerignore patterns for the main context.
    pub ignore_patterns: Vec<String>,
    /// `--no-cache`.
    pub no_cache: bool,
    /// `--no-cache-filter`: stage names whose steps must re-run.
    pub no_cache_filter: Vec<String>,
    /// `--pull`.
    pub pull: bool,
    /// `--label`s added to the final image.
    pub labels: BTreeMap<String, String>,
    /// `--network` default for RUN steps.
    pub network: llb::NetworkMode,
    /// `--add-host`: entries every RUN step's `/etc/hosts` gets.
    pub extra_hosts: Vec<llb::HostIp>,
    /// `--shm-size` in bytes: every RUN step's `/dev/shm` is a tmpfs of this size (BuildKit's dockerfile2llb
    /// mounts one when it is set; without it the runtime's 64 MiB one stays).
    pub shm_size: Option<u64>,
    /// `--ulimit`: resource limits of every RUN step's process.
    pub ulimits: Vec<llb::Ulimit>,
}

impl Default for BuildOpts {
    fn default() -> Self {
        BuildOpts {
            target: None,
            build_args: BTreeMap::new(),
            build_contexts: BTreeMap::new(),
            target_platform: None,
            build_platform: Platform::host(),
            ignore_patterns: Vec::new(),
            no_cache: false,
            no_cache_filter: Vec::new(),
            pull: false,
            labels: BTreeMap::new(),
            network: llb::NetworkMode::Default,
            extra_hosts: Vec::new(),
            shm_size: None,
            ulimits: Vec::new(),
        }
    }
}

/// A base image as the store or registry knows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResolvedImage {
    /// Manifest digest: pins the image source so cache keys follow the image, not its tag.
    pub digest: Option<Digest>,
    /// Its config: env, workdir, user, shell and ONBUILD triggers matter to lowering.
    pub image: Image,
}

/// The hook through which the solver tells the frontend what a base image holds. Lowering needs a base image's
/// config (ENV, WORKDIR, ONBUILD triggers) before it can lower the stage built on it.
pub trait ImageResolver: Sync {
    /// Config and digest of `reference` for `platform`; `Ok(None)` when unknown (as for `kiln graph`).
    fn resolve(
        &self,
        reference: &str,
        platform: &Platform,
    ) -> Result<Option<ResolvedImage>, ResolveError>;
}

/// Why an [`ImageResolver`] could not say what a base image holds; lowering reports it at the FROM line. The
/// resolver lives outside the frontend (it reads a store, pulls from a registry), so besides a bad reference its
/// reasons come as its own words (`From<String>`).
#[derive(Debug, thiserror::Error)]
pub enum ResolveError {
    /// The reference does not parse.
    #[error(transparent)]
    Reference(#[from] oci::reference::ReferenceError),
    /// The resolver's reason, as it put it.
    #[error("{0}")]
    Other(String),
}

impl From<String> for ResolveError {
    fn from(reason: String) -> ResolveError {
        ResolveError::Other(reason)
    }
}

/// A resolver that knows no image: lowering then assumes empty base configs.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoResolver;

impl ImageResolver for NoResolver {
    fn resolve(
        &self,
        _reference: &str,
        _platform: &Platform,
    ) -> Result<Option<ResolvedImage>, ResolveError> {
        Ok(None)
    }
}

/// One lowered stage.
#[derive(Debug, Clone)]
pub struct StageResult {
    /// Stage index in the Dockerfile.
    pub index: usize,
    /// Name or `stage-N`.
    pub name: String,
    /// The vertex holding its filesystem; `None` for an empty (scratch) filesystem.
    pub root: Option<VertexId>,
    /// The image config accumulated so far, with history.
    pub image: Image,
    /// The platform it was built for.
    pub platform: Platform,
}

/// The result of lowering.
#[derive(Debug, Clone)]
pub struct Lowered {
    /// The graph of every op the target needs.
    pub definition: Definition,
    /// The target stage.
    pub target: StageResult,
    /// Every stage that was lowered (the target's dependencies and the target), by index.
    pub stages: Vec<StageResult>,
    /// Build-check findings only lowering can see (undefined variables, ignored files, ...).
    pub findings: Vec<Finding>,
    /// Build args given but never declared by a lowered stage.
    pub unused_build_args: Vec<String>,
    /// SOURCE_DATE_EPOCH as a global `ARG` (before the first FROM) leaves it: its default or the build arg, not
    /// yet checked to be a number. BuildKit's frontend takes it as the build's epoch.
    pub source_date_epoch: Option<String>,
}

/// Lowers every stage, whatever the target needs, and returns the findings and the errors of stages that fail
/// to lower: what `kiln check` reports (a failing stage does not hide the findings of the others). `resolver`
/// answers for base images (InvalidBaseImagePlatform needs their configs); [`NoResolver`] resolves none.
pub fn lower_all_for_checks(
    df: &Dockerfile,
    stages: &Stages,
    opts: &BuildOpts,
    resolver: &dyn ImageResolver,
) -> Result<(Vec<Finding>, Vec<FrontendError>), FrontendError> {
    with_deep_stack(stages.stages.len(), || {
        let mut lowerer = stage::Lowerer::new(df, stages, opts, resolver)?;
        let mut errors: Vec<FrontendError> = Vec::new();
        for i in 0..stages.stages.len() {
            if let Err(e) = lowerer.lower_stage(i) {
                if !errors.contains(&e) {
                    errors.push(e);
                }
            }
        }
        Ok((lowerer.findings, errors))
    })
}

/// Lowers the target `opts` names (and the stages it needs) of `df`, recording what its outline needs: the
/// capture, the typed stages and the target's index (see [`crate::subrequests::outline`]).
pub(crate) fn capture_outline(
    df: &Dockerfile,
    opts: &BuildOpts,
    resolver: &dyn ImageResolver,
) -> Result<(Capture, Stages, usize), FrontendError> {
    let (stages, _duplicates) = crate::instructions::parse_dockerfile_for_checks(df)?;
    let (capture, target) = with_deep_stack(stages.stages.len(), || {
        let capture = Capture::new(df);
        let mut lowerer = stage::Lowerer::with_outline(df, &stages, opts, resolver, Some(capture))?;
        let target = lowerer.target_index()?;
        lowerer.lower_stage(target)?;
        Ok((lowerer.outline.unwrap_or_default(), target))
    })?;
    Ok((capture, stages, target))
}

/// Stack for lowering: a stage lowers the stages it depends on recursively, so a chain of thousands of stages
/// needs more than a default thread stack.
const LOWERING_STACK: usize = 256 << 20;

/// Lowers a parsed Dockerfile for `opts`, asking `resolver` for base image configs.
pub fn lower(
    df: &Dockerfile,
    opts: &BuildOpts,
    resolver: &dyn ImageResolver,
) -> Result<Lowered, FrontendError> {
    let stages = parse_dockerfile(df)?;
    with_deep_stack(stages.stages.len(), || {
        lower_stages(df, &stages, opts, resolver)
    })
}

/// Runs `f` on a thread with a large stack when there are many stages (each may recurse into earlier ones).
fn with_deep_stack<T: Send>(
    stage_count: usize,
    f: impl FnOnce() -> Result<T, FrontendError> + Send,
) -> Result<T, FrontendError> {
    if stage_count < 64 {
        return f();
    }
    std::thread::scope(|scope| {
        let worker = std::thread::Builder::new()
            .name("kiln-lower".to_string())
            .stack_size(LOWERING_STACK)
            .spawn_scoped(scope, f);
        match worker {
            Ok(handle) => handle.join().unwrap_or_else(|_| {
                Err(FrontendError::request(
                    "lowering panicked: this is a bug in kiln",
                ))
            }),
            Err(e) => Err(FrontendError::request(format!(
                "cannot start the lowering thread: {e}"
            ))),
        }
    })
}

/// As [`lower`], over stages already typed (so `kiln check` can share them).
pub fn lower_stages(
    df: &Dockerfile,
    stages: &Stages,
    opts: &BuildOpts,
    resolver: &dyn ImageResolver,
) -> Result<Lowered, FrontendError> {
    let mut lowerer = stage::Lowerer::new(df, stages, opts, resolver)?;
    let target = lowerer.target_index()?;
    let result = lowerer.lower_stage(target)?;
    let mut target = result;
    for (k, v) in &opts.labels {
        target.image.config.labels.insert(k.clone(), v.clone());
    }
    let used: BTreeSet<String> = lowerer.used_build_args.clone();
    let unused_build_args = opts
        .build_args
        .keys()
        // SOURCE_DATE_EPOCH and BUILDKIT_* are read by the builder itself, as BuildKit's frontend reads them.
        .filter(|k| {
            !used.contains(*k)
                && !is_proxy_arg(k)
                && !args::is_builtin(k)
                && *k != "SOURCE_DATE_EPOCH"
                && !k.starts_with("BUILDKIT_")
        })
        .cloned()
        .collect();
    let mut stages_out: Vec<StageResult> = lowerer.done.values().cloned().collect();
    stages_out.sort_by_key(|s| s.index);
    Ok(Lowered {
        definition: lowerer.def,
        target,
        stages: stages_out,
        source_date_epoch: lowerer
            .global
            .value("SOURCE_DATE_EPOCH")
            .map(str::to_string),
        findings: lowerer.findings,
        unused_build_args,
    })
}
