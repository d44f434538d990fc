//! What a build is asked to do: the Dockerfile (read and parsed), the options it is lowered with, the context, the
//! outputs, caches, secrets and limits. The CLI turns its flags into a [`BuildRequest`]; a program using the
//! engine as a library fills one in directly.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use oci::Platform;
use solver::scheduler::CancelToken;
use solver::worker::SecretSource;

use crate::error::BuildError;
use crate::output::Output;
use crate::registry::RegistryOptions;
use crate::remotecache::{CacheLocation, CacheTo};

/// A Dockerfile read and parsed, with the name its errors are reported under.
#[derive(Debug, Clone)]
pub struct Dockerfile {
    /// The name errors are reported under (its path, or `<stdin>`).
    pub display_name: String,
    /// Where it was read from (`None` for stdin): with the context, it names the project's cache slots.
    pub path: Option<PathBuf>,
    /// Its parse.
    pub parsed: frontend::parser::Dockerfile,
    /// The bytes it was parsed from: BuildKit's subrequests (`--call=outline`...) return them as the source.
    pub bytes: Vec<u8>,
}

/// Why a Dockerfile could not be read or parsed.
#[derive(Debug, thiserror::Error)]
pub enum DockerfileError {
    /// It could not be read.
    #[error("cannot read Dockerfile {path}: {source}")]
    Read {
        /// The file.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// Standard input could not be read.
    #[error("cannot read the Dockerfile from stdin: {0}")]
    Stdin(std::io::Error),
    /// It does not parse; rendered against its lines (file:line:column, the line and a caret).
    #[error("{0}")]
    Syntax(String),
}

impl Dockerfile {
    /// Reads and parses the Dockerfile at `path`, or standard input for `None`.
    pub fn read(path: Option<&Path>) -> Result<Dockerfile, DockerfileError> {
        let (display_name, bytes) = match path {
            Some(p) => {
                let bytes = std::fs::read(p).map_err(|source| DockerfileError::Read {
                    path: p.display().to_string(),
                    source,
                })?;
                (p.display().to_string(), bytes)
            }
            None => {
                let mut bytes = Vec::new();
                std::io::stdin()
                    .read_to_end(&mut bytes)
                    .map_err(DockerfileError::Stdin)?;
                ("<stdin>".to_string(), bytes)
            }
        };
        Dockerfile::parse(display_name, path.map(Path::to_path_buf), &bytes)
    }

    /// Parses `bytes` as the Dockerfile `display_name` (read from `path`).
    pub fn parse(
        display_name: String,
        path: Option<PathBuf>,
        bytes: &[u8],
    ) -> Result<Dockerfile, DockerfileError> {
        let parsed = frontend::parse_bytes(bytes).map_err(|e| {
            let lines: Vec<String> = String::from_utf8_lossy(bytes)
                .lines()
                .map(str::to_string)
                .collect();
            DockerfileError::Syntax(e.render(&display_name, &lines))
        })?;
        Ok(Dockerfile {
            display_name,
            path,
            parsed,
            bytes: bytes.to_vec(),
        })
    }

    /// Renders a frontend error against this Dockerfile's lines.
    pub fn render(&self, e: &frontend::FrontendError) -> String {
        e.render(&self.display_name, &self.parsed.lines)
    }
}

/// `CONTEXT/Dockerfile`, or `CONTEXT/dockerfile` when only that exists, as BuildKit falls back to the lower-case
/// name (its testDockerfileLowercase).
pub fn default_dockerfile(context: &Path) -> PathBuf {
    let upper = context.join("Dockerfile");
    let lower = context.join("dockerfile");
    if !upper.exists() && lower.is_file() {
        return lower;
    }
    upper
}

/// One build.
#[derive(Debug, Clone)]
pub struct BuildRequest {
    /// The Dockerfile.
    pub dockerfile: Dockerfile,
    /// What it is lowered with: target, build args, named contexts, ignore patterns, labels, network, cache use.
    pub opts: frontend::BuildOpts,
    /// Every target platform in order, without repeats; empty for `opts.target_platform` (this machine's).
    pub platforms: Vec<Platform>,
    /// The build context directory.
    pub context: PathBuf,
    /// `-t` names (normalised by the engine).
    pub tags: Vec<String>,
    /// Where the result goes.
    pub outputs: Vec<Output>,
    /// Push the image output (`--push`).
    pub push: bool,
    /// `--annotation`s: added to every image-writing output, after its own `annotation.*` options.
    pub annotations: Vec<crate::annotations::Annotation>,
    /// Attestations to attach (`--provenance`, `--sbom`, `--attest`).
    pub attest: crate::attest::AttestRequest,
    /// Caches to write.
    pub cache_to: Vec<CacheTo>,
    /// Caches to read.
    pub cache_from: Vec<CacheLocation>,
    /// `RUN --mount=type=secret` sources by id.
    pub secrets: BTreeMap<String, SecretSource>,
    /// `RUN --mount=type=ssh` agent sockets by id.
    pub ssh: BTreeMap<String, PathBuf>,
    /// Entitlements granted: `network.host`, `security.insecure`.
    pub allow: BTreeSet<String>,
    /// How many steps may run at once (default: the CPU count).
    pub max_parallelism: Option<usize>,
    /// What runs RUN steps: `builtin`, or an OCI runtime binary.
    pub runtime: String,
    /// Cgroup limits of every RUN step.
    pub limits: executor::cgroup::Limits,
    /// Pull base images even when the store has them.
    pub pull: bool,
    /// How registries are reached.
    pub registry: RegistryOptions,
    /// SOURCE_DATE_EPOCH: timestamps are clamped to it.
    pub source_date_epoch: Option<i64>,
    /// `--layer-max-size`: every image-writing output splits a step's layer larger than this (an output's own
    /// `layer-max-size=` wins), so no blob passes a registry's limit.
    pub layer_max_size: Option<u64>,
    /// Cancels the build from outside (a signal): running steps are killed and cleaned up.
    pub cancel: Arc<CancelToken>,
}

impl BuildRequest {
    /// A request to build `dockerfile` over `context` with defaults everywhere else (no outputs: the result stays
    /// in the cache until `outputs` or `tags` say where it goes).
    pub fn new(dockerfile: Dockerfile, context: impl Into<PathBuf>) -> BuildRequest {
        BuildRequest {
            dockerfile,
            opts: frontend::BuildOpts::default(),
            platforms: Vec::new(),
            context: context.into(),
            tags: Vec::new(),
            outputs: Vec::new(),
            push: false,
            annotations: Vec::new(),
            attest: Default::default(),
            cache_to: Vec::new(),
            cache_from: Vec::new(),
            secrets: BTreeMap::new(),
            ssh: BTreeMap::new(),
            allow: BTreeSet::new(),
            max_parallelism: None,
            runtime: "builtin".to_string(),
            limits: Default::default(),
            pull: false,
            registry: RegistryOptions::default(),
            source_date_epoch: None,
            layer_max_size: None,
            cancel: Arc::new(CancelToken::default()),
        }
    }

    /// Which project a build is, for its steps' cache slots: the context directory's name and the Dockerfile's
    /// path in it. Two projects sharing a root then never explain a miss of one against a record of the other,
    /// while the same project checked out under the same name elsewhere (another CI runner) keeps its slots.
    pub(crate) fn project(&self) -> String {
        let context = std::fs::canonicalize(&self.context).unwrap_or_else(|_| self.context.clone());
        let name = context
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let dockerfile = match self.dockerfile.path.as_deref() {
            Some(f) if f == default_dockerfile(&self.context) => "Dockerfile".to_string(),
            // Standard input.
            None => "-".to_string(),
            Some(f) => {
                let f = std::fs::canonicalize(f).unwrap_or_else(|_| f.to_path_buf());
                f.strip_prefix(&context)
                    .map(|p| p.to_string_lossy().into_owned())
                    .unwrap_or_else(|_| f.to_string_lossy().into_owned())
            }
        };
        oci::Digest::sha256_of(format!("{name}\0{dockerfile}").as_bytes()).hex()[..12].to_string()
    }
}

fn invalid(message: String) -> BuildError {
    BuildError::Invalid(message)
}

/// `--ssh default` (the agent at $SSH_AUTH_SOCK) or `--ssh ID=SOCKET`: agent sockets only (BuildKit also takes
/// key files, which kiln would have to serve through an agent of its own).
pub fn parse_ssh(spec: &str) -> Result<(String, PathBuf), BuildError> {
    let (id, path) = match spec.split_once('=') {
        Some((id, path)) => (id.to_string(), PathBuf::from(path)),
        None => {
            let sock = std::env::var_os("SSH_AUTH_SOCK").ok_or_else(|| {
                invalid(format!(
                    "--ssh {spec}: SSH_AUTH_SOCK is not set; start an agent or give {spec}=SOCKET"
                ))
            })?;
            (spec.to_string(), PathBuf::from(sock))
        }
    };
    let is_socket = std::fs::metadata(&path)
        .map(|m| std::os::unix::fs::FileTypeExt::is_socket(&m.file_type()))
        .unwrap_or(false);
    if !is_socket {
        return Err(invalid(format!(
            "--ssh {spec}: {} is not an agent socket",
            path.display()
        )));
    }
    Ok((id, path))
}

/// `--secret id=ID,src=FILE` or `id=ID,env=VAR` (the variable named like the id when neither is given).
pub fn parse_secret(spec: &str) -> Result<(String, SecretSource), BuildError> {
    let mut id = None;
    let mut src = None;
    for part in spec.split(',') {
        match part.split_once('=') {
            Some(("id", v)) => id = Some(v.to_string()),
            Some(("src" | "source", v)) => src = Some(SecretSource::File(v.into())),
            Some(("env", v)) => src = Some(SecretSource::Env(v.to_string())),
            Some(("type", _)) => {}
            _ => {
                return Err(invalid(format!(
                    "--secret {spec}: expected id=ID,src=FILE or id=ID,env=VAR"
                )))
            }
        }
    }
    let id = id.ok_or_else(|| invalid(format!("--secret {spec}: id= is required")))?;
    let src = src.unwrap_or_else(|| SecretSource::Env(id.clone()));
    Ok((id, src))
}
