//! How a build fails. The CLI prints the `Display` text and chooses the exit code with [`BuildError::is_usage`].

use solver::llb::VertexId;

use crate::config::ConfigError;
use crate::gc::GcError;
use crate::output::OutputError;
use crate::registry::RegistryOpError;
use crate::remotecache::CacheError;
use crate::root::RootError;

/// Why a build failed.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    /// kiln.toml could not be read.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// kiln.toml's `[gc]` sizes are none.
    #[error(transparent)]
    Policy(#[from] GcError),
    /// The request contradicts itself or names what is none (a tag, an entitlement not granted, a push with no
    /// name, a value out of range).
    #[error("{0}")]
    Invalid(String),
    /// An `-o` spec is none, or an output could not be written.
    #[error(transparent)]
    Output(#[from] OutputError),
    /// The Dockerfile does not lower; rendered against its lines.
    #[error("{0}")]
    Dockerfile(String),
    /// The Dockerfile's check directive (or `BUILDKIT_DOCKERFILE_CHECK`) sets `error=true` and build checks
    /// fired: BuildKit refuses such a build before solving anything. Rendered against the first finding's line.
    #[error("{0}")]
    Lint(String),
    /// A registry could not be reached or refused (pulls of base images, pushes).
    #[error(transparent)]
    Registry(#[from] RegistryOpError),
    /// A step failed: the step's error, its last output lines and its place in the Dockerfile.
    #[error("{message}")]
    Step {
        /// The vertex that failed.
        vertex: VertexId,
        /// The rendered message.
        message: String,
    },
    /// The build was cancelled from outside ([`crate::BuildRequest::cancel`]).
    #[error("the build was cancelled")]
    Cancelled,
    /// The root's lock.
    #[error(transparent)]
    Lock(#[from] RootError),
    /// `--cache-to` failed (and was not told to ignore errors).
    #[error("--cache-to: {0}")]
    CacheExport(CacheError),
    /// The inline cache of an image could not be made.
    #[error(transparent)]
    InlineCache(CacheError),
    /// The content store failed.
    #[error(transparent)]
    Store(#[from] oci::store::StoreError),
    /// The snapshots failed.
    #[error(transparent)]
    Snapshot(#[from] solver::snapshot::SnapshotError),
    /// The cache index failed.
    #[error(transparent)]
    Index(#[from] solver::cache::IndexError),
    /// The worker failed outside a step (starting, publishing records, saving stat caches).
    #[error(transparent)]
    Worker(#[from] solver::worker::WorkerError),
    /// `--load`: the engine could not be reached or did not take the image.
    #[error(transparent)]
    Load(#[from] crate::docker_api::DockerApiError),
    /// An annotation is refused (a platform the build does not make, index annotations without an index).
    #[error(transparent)]
    Annotation(#[from] crate::annotations::AnnotationError),
    /// Making an image, an index or an archive failed.
    #[error(transparent)]
    Export(#[from] exporter::ExportError),
    /// A directory of an output could not be made.
    #[error(transparent)]
    Io(#[from] std::io::Error),
    /// What the build said in words: a full disk, a local or tar output that could not be written.
    #[error("{0}")]
    Failed(String),
}

impl BuildError {
    /// Whether the request or the Dockerfile was at fault (exit 2), rather than the build (exit 1).
    pub fn is_usage(&self) -> bool {
        match self {
            BuildError::Config(_)
            | BuildError::Invalid(_)
            | BuildError::Dockerfile(_)
            | BuildError::Annotation(_) => true,
            BuildError::Policy(e) => e.is_usage(),
            BuildError::Output(e) => matches!(e, OutputError::Spec(_)),
            BuildError::Registry(e) => e.is_usage(),
            _ => false,
        }
    }
}
