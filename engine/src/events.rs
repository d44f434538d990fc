//! The build's one event stream. Everything a build has to tell while it runs (a step started, came from the
//! cache or missed it and why, printed a line, finished or failed; warnings; what the outputs became) reaches the
//! caller as [`Event`]s through one [`Progress`], keyed by the vertex they concern. Renderers, traces and metadata
//! files are all built from it; the engine itself never prints.

use std::time::Duration;

use oci::Digest;
use solver::cache::MissReason;
use solver::llb::VertexId;

/// Receives a build's events, from the solver's threads (hence `Sync`); must not block for long.
pub trait Progress: Sync {
    /// One event, in the order it happened for its vertex.
    fn event(&self, event: Event);
}

/// A [`Progress`] that drops everything (for callers that only want the result).
pub struct Silent;

impl Progress for Silent {
    fn event(&self, _: Event) {}
}

impl<F: Fn(Event) + Sync> Progress for F {
    fn event(&self, event: Event) {
        self(event)
    }
}

/// Something that happened during a build.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    /// A vertex started; always the first event of a vertex. `name` is its step name (`[stage 2/4] RUN make`),
    /// empty for the internal vertices no display shows.
    Started {
        /// The vertex.
        vertex: VertexId,
        /// Its step name.
        name: String,
        /// Its digest in the build graph (its op and, recursively, its inputs'): stable across builds of the same
        /// step, as BuildKit's vertex digests are, so a machine-read stream (`--progress=rawjson`) can name it.
        digest: Digest,
        /// The digests of the vertices it reads, in order.
        inputs: Vec<Digest>,
    },
    /// The vertex's result came from the cache (local, or imported with `--cache-from`).
    Cached {
        /// The vertex.
        vertex: VertexId,
    },
    /// The vertex missed the cache and runs; when an earlier record of the same step exists, why it missed.
    Missed {
        /// The vertex.
        vertex: VertexId,
        /// What changed since the step's last record.
        reasons: Vec<MissReason>,
    },
    /// A line of the vertex's output (a RUN's stdout or stderr, or a note of the engine about the step).
    Log {
        /// The vertex.
        vertex: VertexId,
        /// The line, without its newline.
        line: String,
    },
    /// Bytes moved for the vertex out of `total` when known. Part of the stream's contract for pulls and
    /// downloads; the registry client and the downloader do not report their bytes yet, so no build sends it.
    Progress {
        /// The vertex.
        vertex: VertexId,
        /// Bytes so far.
        current: u64,
        /// Bytes in all.
        total: Option<u64>,
    },
    /// The vertex finished after `took`; `cached` when it was served from the cache.
    Done {
        /// The vertex.
        vertex: VertexId,
        /// How long it ran.
        took: Duration,
        /// Whether it came from the cache.
        cached: bool,
    },
    /// The vertex failed; the build stops.
    Error {
        /// The vertex.
        vertex: VertexId,
        /// Why, in one line.
        message: String,
    },
    /// Something the user should know that does not stop the build (an unused build-arg, a cache that could not
    /// be imported); `vertex` when it concerns one.
    Warning {
        /// The vertex it concerns, if any.
        vertex: Option<VertexId>,
        /// What.
        message: String,
    },
    /// A build check (BuildKit's lint rules) fired for the Dockerfile. Sent before any step starts, so a
    /// renderer can list them after the build as buildx does and `--progress=rawjson` carries them as they come.
    CheckWarning {
        /// BuildKit's rule name, e.g. `FromAsCasing`.
        rule: String,
        /// What is wrong, in BuildKit's words.
        message: String,
        /// The Dockerfile line at fault (1-based).
        line: usize,
    },
    /// A result line about the build as a whole (a push, a cache export, an automatic GC).
    Message(String),
    /// The outputs are written (caches may still follow).
    Exported(Outcome),
}

/// What a build's outputs came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// There was no output: the result stays in the cache.
    NoOutput,
    /// Outputs were written, none of them an image (a local directory, a tar).
    Files,
    /// An image was written (the pushed one when there was a push).
    Image(ImageResult),
}

/// An image a build made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageResult {
    /// The manifest's digest (an index's for several platforms): what `containerimage.digest` reports.
    pub digest: Digest,
    /// The config digest of a single-platform image: its image id.
    pub config: Option<Digest>,
    /// The names it was given.
    pub names: Vec<String>,
}

impl ImageResult {
    /// BuildKit's image id: the config digest of one image, the index digest of several.
    pub fn id(&self) -> &Digest {
        self.config.as_ref().unwrap_or(&self.digest)
    }
}
