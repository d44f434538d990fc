//! The worker: runs each LLB op for real (sources, file ops, execs) over snapshots, with content-addressed cache
//! lookups before and cache records after. Base images and processes come through two seams, [`ImageProvider`]
//! and [`ProcessRunner`], which the store and the executor implement, and which tests can fake.

mod behind;
mod cachemount;
mod exec;
mod git;
mod http;
mod images;
mod keys;
mod reuse;
mod runner;
mod steplock;
pub mod sweep;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use oci::store::Store;
use oci::{Digest, Platform};

use crate::cache::{explain, CacheIndex, CacheRecord, ImportedCache, IndexError, MissReason};
use crate::contenthash::{ContextHasher, HashError, StatCache};
use crate::fileop::{self, FileOpError, Input};
use crate::llb::{ExecOp, FileOp, Op, ResolveMode, SourceOp, Vertex, VertexId};
use crate::scheduler::{CancelToken, OpRunner};
use crate::snapshot::{SnapshotError, Snapshotter};

pub use exec::{
    ProcessError, ProcessOutcome, ProcessRequest, ProcessRunner, ResolvedMount, ResolvedMountKind,
};
pub use git::GitError;
pub use http::DownloadError;
pub use images::StoreImages;
pub use runner::{SandboxRunner, SecretSource};

/// The solver's view of the image store (and, later, the registry).
pub trait ImageProvider: Sync {
    /// The manifest digest `reference` resolves to for `platform`.
    fn resolve(
        &self,
        reference: &str,
        platform: &Platform,
        mode: ResolveMode,
    ) -> Result<Digest, ImageError>;
    /// Writes the filesystem of the image `manifest` (all layers applied) into the empty directory `dir`.
    fn unpack(&self, manifest: &Digest, dir: &Path) -> Result<(), ImageError>;
}

/// Why an [`ImageProvider`] could not resolve or unpack a base image. The store's own failures are typed; a
/// provider outside this crate (or a test's fake) with a reason of its own says it in words (`From<String>`).
#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    /// The digest a reference pins (`name@sha256:...`) does not parse.
    #[error(transparent)]
    Digest(#[from] oci::DigestError),
    /// The reference itself does not parse.
    #[error(transparent)]
    Reference(#[from] oci::reference::ReferenceError),
    /// Reading the store failed.
    #[error(transparent)]
    Store(#[from] oci::store::StoreError),
    /// One of the image's layers could not be applied.
    #[error("layer {digest}: {source}")]
    Layer {
        /// The layer blob.
        digest: Digest,
        /// Why it could not be applied.
        source: oci::layer::LayerError,
    },
    /// The store has no image by that name.
    #[error(
        "not found in kiln's store (the build pulls base images before it starts; `kiln pull {name}` fetches one by hand)"
    )]
    NotFound {
        /// The name looked up (the reference without its digest).
        name: String,
    },
    /// Another provider's reason, as it put it.
    #[error("{0}")]
    Other(String),
}

impl From<String> for ImageError {
    fn from(reason: String) -> ImageError {
        ImageError::Other(reason)
    }
}

/// Where the worker keeps its state. The engine's `Root` fills it in: it alone knows a kiln root's folder names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkerDirs {
    /// Snapshots.
    pub snapshots: PathBuf,
    /// The cache index (records, slots, step locks, imported-layer memos).
    pub cache: PathBuf,
    /// The content store (its ingest area is swept of dead builds' writes).
    pub store: PathBuf,
    /// Scratch space of running steps.
    pub work: PathBuf,
    /// `RUN --mount=type=cache` directories.
    pub cache_mounts: PathBuf,
    /// Context stat caches.
    pub stat_caches: PathBuf,
    /// Kept `ADD <url>` downloads.
    pub downloads: PathBuf,
}

/// A local directory the build may read (the context, or a named context).
#[derive(Debug, Clone)]
pub struct LocalDir {
    /// The directory.
    pub path: PathBuf,
    /// Its .dockerignore patterns.
    pub ignore: Vec<String>,
}

/// What a vertex produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fs {
    /// An empty filesystem (scratch).
    Empty,
    /// A committed snapshot.
    Snapshot(String),
    /// A local directory, read in place.
    Local(PathBuf, Vec<String>),
}

/// A finished vertex: its cache key, filesystem, and whether it came from the cache.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StepOutput {
    /// The cache key.
    pub key: Digest,
    /// The filesystem.
    pub fs: Fs,
    /// Served from the cache.
    pub cached: bool,
}

/// Why a step failed.
#[derive(Debug, thiserror::Error)]
pub enum WorkerError {
    /// A snapshot operation failed.
    #[error(transparent)]
    Snapshot(#[from] SnapshotError),
    /// The cache index failed.
    #[error(transparent)]
    Index(#[from] IndexError),
    /// Hashing the context failed.
    #[error(transparent)]
    Hash(#[from] HashError),
    /// A file operation failed.
    #[error(transparent)]
    FileOp(#[from] FileOpError),
    /// The image provider failed.
    #[error("image {reference}: {reason}")]
    Image {
        /// The reference.
        reference: String,
        /// Why (boxed: store and layer errors are large, and every worker result carries this type).
        #[source]
        reason: Box<ImageError>,
    },
    /// A RUN exited non-zero or could not start.
    #[error("process \"{command}\" did not complete successfully: {reason}")]
    Process {
        /// The command.
        command: String,
        /// Exit code or error.
        reason: String,
        /// The last lines of its output.
        output_tail: Vec<String>,
    },
    /// The build context a source names was not given.
    #[error("no local directory named {0:?} was given to the build")]
    NoLocal(String),
    /// `ADD <url>` could not download what it names (the URL and what went wrong).
    #[error("{0}")]
    Download(String),
    /// `ADD <url>` could not download what it names.
    #[error(transparent)]
    Http(#[from] DownloadError),
    /// `ADD <git url>` could not resolve, check or check out its ref.
    #[error(transparent)]
    Git(#[from] GitError),
    /// I/O on a working path.
    #[error("{path}: {source}")]
    Io {
        /// The path.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// The build was cancelled.
    #[error("cancelled")]
    Cancelled,
}

/// What the worker tells about cache decisions, for progress output.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CacheEvent {
    /// The vertex was served from the cache.
    Hit(VertexId),
    /// The vertex missed; when an earlier record of the same step exists, the reasons.
    Miss(VertexId, Vec<MissReason>),
    /// An imported cache held the step but its result could not be brought in (it then runs as a miss).
    ImportFailed(VertexId, String),
}

/// Runs ops under a kiln root.
pub struct Worker<'a> {
    snapshots: Snapshotter,
    cache: CacheIndex,
    work: PathBuf,
    /// The directories, for the sweep when the worker is done.
    dirs: WorkerDirs,
    images: &'a dyn ImageProvider,
    runner: &'a dyn ProcessRunner,
    locals: BTreeMap<String, LocalDir>,
    hashers: BTreeMap<String, ContextHasher>,
    cache_mounts: PathBuf,
    on_cache: Box<dyn Fn(CacheEvent) + Sync + 'a>,
    imported: Option<(ImportedCache, Store)>,
    imported_dir: PathBuf,
    /// Step locks (see `steplock`): one build of those sharing the root makes a step, the others reuse it.
    locks: PathBuf,
    /// `ADD <url>` downloads of this build, kept in scratch space until the worker goes.
    downloads: http::Downloads,
    downloads_dir: tempfile_dir::TempDir,
    /// The commits `ADD <git url>` refs resolved to in this build (`remote#ref` → commit).
    git_commits: std::sync::Mutex<BTreeMap<String, String>>,
    /// Cache records and scratch removal, done while the next steps run (see `behind`).
    behind: behind::Behind,
    /// Where the context stat caches are saved.
    stat_dir: PathBuf,
}

fn io(path: &Path) -> impl Fn(std::io::Error) -> WorkerError + '_ {
    move |source| WorkerError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// A build that was dying (killed, not yet reaped) when this one started was still alive to the first sweep: what
/// it left goes when this worker is done, so that no build ends with a dead one's mounts still in place.
impl Drop for Worker<'_> {
    fn drop(&mut self) {
        sweep::sweep_dead(&self.dirs);
    }
}

impl<'a> Worker<'a> {
    /// A worker over the directories `dirs` names (snapshots, cache records, cache mounts, scratch space).
    pub fn new(
        dirs: &WorkerDirs,
        images: &'a dyn ImageProvider,
        runner: &'a dyn ProcessRunner,
        locals: BTreeMap<String, LocalDir>,
        on_cache: Box<dyn Fn(CacheEvent) + Sync + 'a>,
    ) -> Result<Worker<'a>, WorkerError> {
        let snapshots = Snapshotter::open(&dirs.snapshots)?;
        let cache = CacheIndex::open(&dirs.cache)?;
        let work = dirs.work.clone();
        std::fs::create_dir_all(&work).map_err(io(&work))?;
        // What killed builds left (mounts, scratch, half-made snapshots and blobs) goes before this one starts.
        sweep::sweep_dead(dirs);
        let cache_mounts = dirs.cache_mounts.clone();
        std::fs::create_dir_all(&cache_mounts).map_err(io(&cache_mounts))?;
        let stat_dir = dirs.stat_caches.clone();
        std::fs::create_dir_all(&stat_dir).map_err(io(&stat_dir))?;
        let imported_dir = dirs.cache.join("imported");
        std::fs::create_dir_all(&imported_dir).map_err(io(&imported_dir))?;
        let downloads_dir = tempfile_dir::TempDir::new_in(&work, "downloads").map_err(io(&work))?;
        let mut hashers = BTreeMap::new();
        for (name, l) in &locals {
            let cache_file = stat_dir.join(StatCache::file_name(&l.path));
            hashers.insert(
                name.clone(),
                ContextHasher::new(&l.path, &l.ignore, StatCache::load(&cache_file))?,
            );
        }
        Ok(Worker {
            snapshots,
            cache,
            work,
            dirs: dirs.clone(),
            images,
            runner,
            locals,
            hashers,
            cache_mounts,
            on_cache,
            imported: None,
            imported_dir,
            locks: dirs.cache.join("locks"),
            downloads: http::Downloads::keeping(dirs.downloads.clone()),
            downloads_dir,
            git_commits: Default::default(),
            behind: behind::Behind::start(),
            stat_dir,
        })
    }

    /// Consults `cache` (records from `--cache-from`) when a step misses locally; its blobs are fetched into
    /// `store` only for the steps that hit.
    pub fn with_imported(mut self, cache: ImportedCache, store: Store) -> Self {
        if !cache.is_empty() {
            self.imported = Some((cache, store));
        }
        self
    }

    /// Waits until the records of every finished step are published (and scratch space removed); the first error
    /// that work met. A build calls it before it reports its result.
    pub fn settle(&self) -> Result<(), WorkerError> {
        self.behind.settle()?;
        // Snapshots no record names (a failed build's last steps) are made durable too: exports read them next.
        Ok(self.snapshots.sync_published()?)
    }

    /// Saves what the context hashers learned (when they learned anything), so the next build re-reads only
    /// changed files.
    pub fn save_stat_caches(mut self) -> Result<(), WorkerError> {
        for (name, h) in std::mem::take(&mut self.hashers) {
            if let Some(l) = self.locals.get(&name) {
                let f = self.stat_dir.join(StatCache::file_name(&l.path));
                let cache = h.into_stat_cache();
                if cache.is_changed() {
                    cache.save(&f)?;
                }
            }
        }
        Ok(())
    }

    /// The snapshot store, for exporters.
    pub fn snapshots(&self) -> &Snapshotter {
        &self.snapshots
    }

    fn scratch_dir(&self, what: &str) -> Result<tempfile_dir::TempDir, WorkerError> {
        tempfile_dir::TempDir::new_in(&self.work, what).map_err(io(&self.work))
    }

    fn run_vertex(
        &self,
        id: VertexId,
        v: &Vertex,
        inputs: &[StepOutput],
        cancel: &CancelToken,
    ) -> Result<StepOutput, WorkerError> {
        if cancel.is_cancelled() {
            return Err(WorkerError::Cancelled);
        }
        if let Op::Source(SourceOp::Local(l)) = &v.op {
            let dir = self
                .locals
                .get(&l.name)
                .ok_or_else(|| WorkerError::NoLocal(l.name.clone()))?;
            let parts = self.key_parts(v, inputs)?;
            return Ok(StepOutput {
                key: parts.key(),
                fs: Fs::Local(dir.path.clone(), dir.ignore.clone()),
                cached: false,
            });
        }
        if let Op::File(FileOp {
            base: None,
            actions,
        }) = &v.op
        {
            if actions.is_empty() {
                let parts = self.key_parts(v, inputs)?;
                return Ok(StepOutput {
                    key: parts.key(),
                    fs: Fs::Empty,
                    cached: false,
                });
            }
        }
        let parts = self.key_parts(v, inputs)?;
        let key = parts.key();
        if !v.meta.ignore_cache {
            if let Some(hit) = self.local_hit(id, &key)? {
                return Ok(hit);
            }
        }
        if !v.meta.ignore_cache {
            if let Some(snapshot) = self.imported_snapshot(id, &key)? {
                self.record(&key, parts, &snapshot, v, None);
                (self.on_cache)(CacheEvent::Hit(id));
                return Ok(StepOutput {
                    key,
                    fs: Fs::Snapshot(snapshot),
                    cached: true,
                });
            }
        }
        // Another build on this root may be making the same step right now: wait for it, then reuse its result.
        let step_lock = if v.meta.ignore_cache {
            None
        } else {
            let lock = steplock::acquire(&self.locks, key.hex(), &|| cancel.is_cancelled())
                .map_err(|e| match e {
                    steplock::LockError::Cancelled => WorkerError::Cancelled,
                    steplock::LockError::Io(e) => io(&self.locks)(e),
                })?;
            if let Some(hit) = self.local_hit(id, &key)? {
                return Ok(hit);
            }
            Some(lock)
        };
        // The slot's last record, when it is not this key: what the miss is explained against, and what a re-run
        // COPY can start from.
        let prev = match &v.meta.slot {
            Some(slot) => self
                .cache
                .last_for_slot(slot)?
                .filter(|p| p.key != key)
                .map(|p| {
                    // A record whose key no longer recomputes from its parts was made under other file-op
                    // semantics (see `FILE_OP_SEMANTICS`): its tree is no starting point for a re-run copy.
                    let same_semantics = p.parts.key() == p.key;
                    let parts = self.cache.with_listing(&p.parts);
                    (p.snapshot, parts, same_semantics)
                }),
            None => None,
        };
        let reasons = prev
            .as_ref()
            .map(|(_, p, _)| explain(p, &parts))
            .unwrap_or_default();
        (self.on_cache)(CacheEvent::Miss(id, reasons));
        let snapshot = match &v.op {
            Op::Source(SourceOp::Image(img)) => {
                let manifest = parts
                    .resolved
                    .clone()
                    .unwrap_or_else(|| Digest::sha256_of(img.reference.as_bytes()));
                let mut active = self.snapshots.prepare(None)?;
                self.images
                    .unpack(&manifest, &active.diff_dir())
                    .map_err(|reason| WorkerError::Image {
                        reference: img.reference.clone(),
                        reason: Box::new(reason),
                    })?;
                if parts.resolved.is_some() {
                    active.set_unpacked_from(&manifest.to_string());
                }
                self.snapshots.commit_unsynced(active)?
            }
            Op::Source(SourceOp::Http(h)) => {
                let fetched = self.fetch(h)?;
                let active = self.snapshots.prepare(None)?;
                let diff = active.diff_dir();
                http::place(h, &fetched, &diff).map_err(io(&diff))?;
                self.snapshots.commit_unsynced(active)?
            }
            Op::Source(SourceOp::Git(g)) => {
                let commit = self.git_commit(g)?;
                let scratch = self.scratch_dir("git")?;
                let active = self.snapshots.prepare(None)?;
                git::checkout(g, &commit, scratch.path(), &active.diff_dir())?;
                self.snapshots.commit_unsynced(active)?
            }
            Op::Source(other) => {
                return Err(WorkerError::Image {
                    reference: format!("{other:?}"),
                    reason: Box::new(ImageError::Other(
                        "this source type is not supported yet".to_string(),
                    )),
                })
            }
            Op::File(f) => {
                let reuse = prev
                    .as_ref()
                    .filter(|(_, _, same_semantics)| *same_semantics)
                    .and_then(|(snapshot, p, _)| {
                        reuse::plan(f, &parts, p, &self.snapshots.diff_dir(snapshot))
                    });
                self.run_file(f, inputs, reuse)?
            }
            Op::Exec(e) => self.run_exec(id, e, v, inputs, cancel)?,
            Op::Merge(m) => self.run_merge(&m.layers, inputs)?,
        };
        self.record(&key, parts, &snapshot, v, step_lock);
        Ok(StepOutput {
            key,
            fs: Fs::Snapshot(snapshot),
            cached: false,
        })
    }

    /// Publishes the step's cache record behind the steps that follow (its snapshot is already durable); `lock`,
    /// the step lock other builds wait on, is let go only once the record is there for them to find.
    fn record(
        &self,
        key: &Digest,
        parts: crate::cache::KeyParts,
        snapshot: &str,
        v: &Vertex,
        lock: Option<steplock::StepLock>,
    ) {
        let created = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        let record = CacheRecord {
            key: key.clone(),
            parts,
            snapshot: snapshot.to_string(),
            slot: v.meta.slot.clone(),
            description: v.meta.description.clone(),
            created,
        };
        let cache = self.cache.clone();
        let snapshots = self.snapshots.clone();
        self.behind.later(move || {
            // The record names a snapshot: its rename must be durable first.
            snapshots.sync_published()?;
            cache.put(&record)?;
            drop(lock);
            Ok(())
        });
    }

    /// The snapshot of an imported record for `key`, made from its layers (fetched now if the store lacks them);
    /// `None` when no imported cache holds the key or its result could not be brought in.
    /// The download of an `ADD <url>` (made once per build).
    fn fetch(&self, h: &crate::llb::HttpSource) -> Result<http::Fetched, WorkerError> {
        self.downloads
            .fetch(h, self.downloads_dir.path())
            .map_err(WorkerError::Http)
    }

    /// The commit an `ADD <git url>` names now (asked of the remote once per build).
    fn git_commit(&self, g: &crate::llb::GitSource) -> Result<String, WorkerError> {
        let name = format!("{}#{}", g.remote, g.reference.as_deref().unwrap_or("HEAD"));
        let known = self
            .git_commits
            .lock()
            .ok()
            .and_then(|m| m.get(&name).cloned());
        let commit = match known {
            Some(c) => c,
            None => {
                let c = git::resolve(g)?;
                if let Ok(mut m) = self.git_commits.lock() {
                    m.insert(name, c.clone());
                }
                c
            }
        };
        git::check(g, &commit)?;
        Ok(commit)
    }

    /// The step's result from this root's cache, if it holds one whose snapshot still exists.
    fn local_hit(&self, id: VertexId, key: &Digest) -> Result<Option<StepOutput>, WorkerError> {
        let Some(rec) = self.cache.get(key)? else {
            return Ok(None);
        };
        if !self.snapshots.exists(&rec.snapshot) {
            return Ok(None);
        }
        // GC removes the least recently used first.
        self.cache.touch(key);
        (self.on_cache)(CacheEvent::Hit(id));
        Ok(Some(StepOutput {
            key: key.clone(),
            fs: Fs::Snapshot(rec.snapshot),
            cached: true,
        }))
    }

    fn imported_snapshot(&self, id: VertexId, key: &Digest) -> Result<Option<String>, WorkerError> {
        let Some((cache, store)) = &self.imported else {
            return Ok(None);
        };
        let Some((record, source)) = cache.get(key) else {
            return Ok(None);
        };
        match self.materialize(&record.layers, source, store) {
            Ok(snapshot) => Ok(Some(snapshot)),
            Err(reason) => {
                (self.on_cache)(CacheEvent::ImportFailed(
                    id,
                    format!("{}: {reason}", source.describe()),
                ));
                Ok(None)
            }
        }
    }

    /// Builds (or finds) the snapshot chain of `layers`, one snapshot per layer, each remembered under the chain
    /// id of the layers up to it.
    fn materialize(
        &self,
        layers: &[oci::manifest::Descriptor],
        source: &dyn crate::cache::BlobSource,
        store: &Store,
    ) -> Result<String, String> {
        let mut parent: Option<String> = None;
        for i in 0..layers.len() {
            let memo = self
                .imported_dir
                .join(crate::cache::imported::chain_id(&layers[..=i]).hex());
            if let Ok(id) = std::fs::read_to_string(&memo) {
                if self.snapshots.exists(id.trim()) {
                    parent = Some(id.trim().to_string());
                    continue;
                }
            }
            let layer = &layers[i];
            if !store.has(&layer.digest) {
                source.fetch(layer).map_err(|e| e.to_string())?;
            }
            let active = self
                .snapshots
                .prepare(parent.as_deref())
                .map_err(|e| e.to_string())?;
            let blob = store.open_blob(&layer.digest).map_err(|e| e.to_string())?;
            oci::layer::apply_layer(blob, &active.diff_dir(), oci::layer::Whiteouts::Overlay)
                .map_err(|e| format!("layer {}: {e}", layer.digest))?;
            let id = self
                .snapshots
                .commit_unsynced(active)
                .map_err(|e| e.to_string())?;
            // A lost memo only costs a second unpack; the snapshot itself is already durable.
            let _ = std::fs::write(&memo, &id);
            parent = Some(id);
        }
        match parent {
            Some(id) => Ok(id),
            None => {
                let active = self.snapshots.prepare(None).map_err(|e| e.to_string())?;
                self.snapshots
                    .commit_unsynced(active)
                    .map_err(|e| e.to_string())
            }
        }
    }

    /// Makes an input readable as a directory: a read-only mount of a snapshot, a local directory, or an empty dir.
    /// A writable stand-in for `source` whose writes are thrown away with the step: an overlay over a directory,
    /// a copy of a file.
    fn scratch_copy(
        &self,
        source: &Path,
        guards: &mut Vec<crate::snapshot::Mounted>,
        keep: &mut Vec<tempfile_dir::TempDir>,
    ) -> Result<PathBuf, WorkerError> {
        let d = self.scratch_dir("rw")?;
        let base = d.path().to_path_buf();
        keep.push(d);
        if !source.is_dir() {
            let copy = base.join("file");
            std::fs::copy(source, &copy).map_err(io(&copy))?;
            return Ok(copy);
        }
        let (upper, work, view) = (base.join("upper"), base.join("work"), base.join("view"));
        for dir in [&upper, &work, &view] {
            std::fs::create_dir(dir).map_err(io(dir))?;
        }
        guards.push(crate::snapshot::Snapshotter::mount_scratch(
            source, &upper, &work, &view,
        )?);
        Ok(view)
    }

    fn input_view(
        &self,
        fs: &Fs,
        guards: &mut Vec<crate::snapshot::Mounted>,
        keep: &mut Vec<tempfile_dir::TempDir>,
    ) -> Result<Input, WorkerError> {
        match fs {
            Fs::Local(path, ignore) => Ok(Input {
                root: path.clone(),
                default_owner: Some((0, 0)),
                ignore: ignore.clone(),
                reused: None,
            }),
            Fs::Empty => {
                let d = self.scratch_dir("empty")?;
                let root = d.path().to_path_buf();
                keep.push(d);
                Ok(Input {
                    root,
                    default_owner: None,
                    ignore: vec![],
                    reused: None,
                })
            }
            Fs::Snapshot(id) => {
                let d = self.scratch_dir("ro")?;
                let root = d.path().to_path_buf();
                guards.push(self.snapshots.mount_readonly(id, &root)?);
                keep.push(d);
                Ok(Input {
                    root,
                    default_owner: None,
                    ignore: vec![],
                    reused: None,
                })
            }
        }
    }

    fn parent_of(fs: Option<&Fs>) -> Option<String> {
        match fs {
            Some(Fs::Snapshot(id)) => Some(id.clone()),
            _ => None,
        }
    }

    fn run_file(
        &self,
        f: &FileOp,
        inputs: &[StepOutput],
        reuse: Option<reuse::Reuse>,
    ) -> Result<String, WorkerError> {
        let parent = Self::parent_of(f.base.and_then(|i| inputs.get(i)).map(|o| &o.fs));
        let active = self.snapshots.prepare(parent.as_deref())?;
        let merged = self.scratch_dir("merged")?;
        let mut keep = Vec::new();
        let mut guards = Vec::new();
        let views: Result<Vec<Input>, WorkerError> = inputs
            .iter()
            .map(|o| self.input_view(&o.fs, &mut guards, &mut keep))
            .collect();
        let mut views = views?;
        // A re-run COPY from the context starts from a clone of its previous result (see `reuse`).
        if let (Some(r), [crate::llb::FileAction::Copy(c)]) = (reuse, f.actions.as_slice()) {
            let from_context = matches!(inputs.get(c.source).map(|o| &o.fs), Some(Fs::Local(..)));
            let has_base = f.base.and_then(|b| views.get(b)).is_some();
            if from_context && has_base && reuse::clonable(&r.from) {
                let diff = active.diff_dir();
                let cloned = reuse::clone_tree(&r.from, &diff)?;
                if let Some(view) = views.get_mut(c.source) {
                    view.reused = Some(std::sync::Arc::new(crate::fileop::Reused {
                        unchanged: r.unchanged,
                        cloned,
                    }));
                }
            }
        }
        {
            let mount = self.snapshots.mount(&active, merged.path())?;
            fileop::apply(mount.path(), &f.actions, &views)?;
            mount.unmount()?;
        }
        drop(guards);
        Ok(self.snapshots.commit_unsynced(active)?)
    }

    fn run_merge(&self, layers: &[usize], inputs: &[StepOutput]) -> Result<String, WorkerError> {
        let mut iter = layers.iter();
        let parent = Self::parent_of(iter.next().and_then(|i| inputs.get(*i)).map(|o| &o.fs));
        let active = self.snapshots.prepare(parent.as_deref())?;
        let merged = self.scratch_dir("merged")?;
        let mut keep = Vec::new();
        let mut guards = Vec::new();
        {
            let mount = self.snapshots.mount(&active, merged.path())?;
            for &i in iter {
                let Some(out) = inputs.get(i) else { continue };
                let view = self.input_view(&out.fs, &mut guards, &mut keep)?;
                let copy = crate::llb::CopyAction::whole_tree(0);
                fileop::apply(mount.path(), &[crate::llb::FileAction::Copy(copy)], &[view])?;
            }
            mount.unmount()?;
        }
        drop(guards);
        Ok(self.snapshots.commit_unsynced(active)?)
    }

    fn run_exec(
        &self,
        id: VertexId,
        e: &ExecOp,
        v: &Vertex,
        inputs: &[StepOutput],
        cancel: &CancelToken,
    ) -> Result<String, WorkerError> {
        exec::run(self, id, e, v, inputs, cancel)
    }
}

impl OpRunner for Worker<'_> {
    type Output = StepOutput;
    type Error = WorkerError;

    fn run(
        &self,
        id: VertexId,
        vertex: &Vertex,
        inputs: &[StepOutput],
        cancel: &CancelToken,
    ) -> Result<StepOutput, WorkerError> {
        self.run_vertex(id, vertex, inputs, cancel)
    }
}

/// A tiny self-removing directory under the worker's scratch space (no extra crate needed at run time).
mod tempfile_dir {
    use std::path::{Path, PathBuf};
    use std::sync::atomic::{AtomicU64, Ordering};

    static N: AtomicU64 = AtomicU64::new(0);

    /// Removed (recursively) on drop.
    #[derive(Debug)]
    pub struct TempDir(PathBuf);

    impl TempDir {
        pub fn new_in(base: &Path, what: &str) -> std::io::Result<TempDir> {
            loop {
                let n = N.fetch_add(1, Ordering::Relaxed);
                let p = base.join(format!("{what}-{}-{n}", std::process::id()));
                match std::fs::create_dir(&p) {
                    Ok(()) => return Ok(TempDir(p)),
                    Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
                    Err(e) => return Err(e),
                }
            }
        }

        pub fn path(&self) -> &Path {
            &self.0
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            // Never recurse into something still mounted here: detach it first.
            use std::os::unix::fs::MetadataExt;
            let dev = |p: &Path| std::fs::metadata(p).map(|m| m.dev()).ok();
            if let Some(parent) = self.0.parent() {
                if dev(&self.0) != dev(parent) {
                    let _ = rustix::mount::unmount(&self.0, rustix::mount::UnmountFlags::DETACH);
                }
                if dev(&self.0) != dev(parent) {
                    return;
                }
            }
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

#[cfg(test)]
mod tests;
