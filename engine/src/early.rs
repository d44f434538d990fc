//! Compression during the build. A build whose image leaves the machine compressed (`--push`, `-o type=oci|docker`
//! with a file or directory) has every layer of the final image compressed by the export; a step's layer is
//! final the moment the step is done, so it is compressed then, on threads of low CPU priority (nice 10): they
//! take, in the main, the cores the running steps leave idle. The export then finds the blob made (the
//! same bytes: same tar, same deterministic compressor). When the build ends with a layer still being compressed,
//! it is finished if half of it is done, else abandoned to the export, which streams it to the registry as it
//! compresses it. `KILN_EARLY_COMPRESSION=0` turns it off.
//!
//! A step that writes a big layer (pip installing a wheelhouse) would still leave all of it to compress after the
//! step, so with gzip the files themselves go ahead of the step: while a step of the chain runs, a scanner looks
//! through the upper directories this process is writing, and each big file (see `exporter::speculate`) that has
//! stopped changing is compressed then, at the same low priority, into blocks the layer's compression takes
//! unchanged when their CRC matches (what a step changes after is compressed again; the blob is the same).

use std::collections::{BTreeSet, HashMap};
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

use exporter::diff::DiffOptions;
use exporter::speculate::{Installed, Speculation};
use exporter::{Compression, LayerSource};
use oci::store::Store;
use solver::llb::{Definition, Op, Vertex, VertexId};
use solver::scheduler::{CancelToken, OpRunner};
use solver::snapshot::Snapshotter;
use solver::worker::{Fs, StepOutput};

use crate::output::Output;

/// What to compress ahead of the export, and with what.
pub(crate) struct Plan {
    compression: Compression,
    opts: DiffOptions,
    /// The vertices whose snapshots are layers of a final image: each root, then the input its output is stacked on
    /// (a RUN's root mount, a file op's base), down to the base image.
    chain: BTreeSet<VertexId>,
    /// The final images' own vertices: their layers are not compressed ahead (see [`Runner`]).
    roots: BTreeSet<VertexId>,
}

/// The plan for a build's outputs, when one of them compresses the image (the first such output's compression;
/// none with `--layer-max-size`, whose parts are other blobs).
pub(crate) fn plan(
    outputs: &[Output],
    epoch: Option<i64>,
    def: &Definition,
    roots: &[VertexId],
) -> Option<Plan> {
    if std::env::var("KILN_EARLY_COMPRESSION").is_ok_and(|v| v == "0") {
        return None;
    }
    let options = outputs.iter().find_map(|o| match o {
        Output::Image {
            layers, push: true, ..
        } => Some(layers.resolve(Compression::Gzip(6), true, epoch)),
        Output::Archive { layers, docker, .. } => {
            Some(layers.resolve(Compression::Gzip(6), !docker, epoch))
        }
        _ => None,
    })?;
    if options.compression == Compression::None || options.layer_max_size.is_some() {
        return None;
    }
    let mut chain = BTreeSet::new();
    for &root in roots {
        let mut at = Some(root);
        while let Some(v) = at {
            if !chain.insert(v) {
                break;
            }
            at = stacked_on(def.vertex(v));
        }
    }
    Some(Plan {
        compression: options.compression,
        opts: DiffOptions {
            source_date_epoch: options
                .source_date_epoch
                .filter(|_| options.clamp_file_times),
        },
        chain,
        roots: roots.iter().copied().collect(),
    })
}

/// The input whose filesystem `v`'s output is a layer on top of.
fn stacked_on(v: &Vertex) -> Option<VertexId> {
    let index = match &v.op {
        Op::Exec(e) => e
            .mounts
            .iter()
            .find(|m| m.output && m.target == "/")
            .and_then(|m| m.input),
        Op::File(f) => f.base,
        Op::Source(_) | Op::Merge(_) => None,
    }?;
    v.inputs.get(index).copied()
}

/// What the compressor thread and the build share.
#[derive(Default)]
pub(crate) struct Compressor {
    /// Set when the build is over: no new layer is begun, and the one being compressed goes on only when half done.
    ending: AtomicBool,
    /// Layers compressed while the build ran.
    made: AtomicUsize,
    /// Steps of the chain running now: the scanner looks for big files only then.
    running: AtomicUsize,
    /// Big files compressed ahead, installed for the build and its export (gzip only).
    speculation: Mutex<Option<(Arc<Speculation>, Installed)>>,
}

impl Compressor {
    /// Starts the compressor thread in `scope`; the sender takes finished snapshots' ids, and dropping every sender
    /// (after [`Compressor::end`]) lets the thread finish.
    pub(crate) fn start<'s, 'e: 's>(
        &'s self,
        scope: &'s std::thread::Scope<'s, 'e>,
        plan: &Plan,
        store: &'e Store,
        snapshots: &'e Snapshotter,
    ) -> (mpsc::Sender<String>, std::thread::ScopedJoinHandle<'s, ()>) {
        let (tx, rx) = mpsc::channel::<String>();
        let (compression, opts) = (plan.compression, plan.opts);
        if let Compression::Gzip(level) = compression {
            if let Ok(spec) = Speculation::new(&store.root().join("speculated"), level) {
                let installed = spec.install();
                if let Ok(mut s) = self.speculation.lock() {
                    *s = Some((spec.clone(), installed));
                }
                scope.spawn(move || self.scan(&spec, snapshots));
            }
        }
        let handle = scope.spawn(move || {
            lowest_priority();
            for id in rx {
                if self.ending.load(Ordering::SeqCst) {
                    break;
                }
                let Some(layer) = source(snapshots, &id) else {
                    continue;
                };
                let stop =
                    |read: u64, size: u64| self.ending.load(Ordering::SeqCst) && read < size / 2;
                // A failure here is the export's to meet and report: it makes the layer again.
                if let Ok(Some(_)) = exporter::precompress(store, &layer, compression, opts, &stop)
                {
                    self.made.fetch_add(1, Ordering::SeqCst);
                }
            }
        });
        (tx, handle)
    }

    /// While the build runs: every [`SCAN_EVERY`], when a step of the chain is running, the big files of the
    /// snapshots being written that have kept their size and time since the last look (and for a second at
    /// least) are compressed ahead, biggest first.
    fn scan(&self, spec: &Speculation, snapshots: &Snapshotter) {
        lowest_priority();
        let mut seen: HashMap<(u64, u64), Seen> = HashMap::new();
        let mut last = Instant::now();
        while !self.ending.load(Ordering::SeqCst) {
            std::thread::sleep(Duration::from_millis(100));
            if last.elapsed() < SCAN_EVERY || self.running.load(Ordering::SeqCst) == 0 {
                continue;
            }
            last = Instant::now();
            let mut ready = Vec::new();
            for dir in snapshots.writing_now() {
                big_files(&dir, &mut |path, meta| {
                    let Ok(rel) = path.strip_prefix(&dir) else {
                        return;
                    };
                    let key = (meta.dev(), meta.ino());
                    let now = (meta.len(), meta.mtime(), meta.mtime_nsec());
                    let settled = std::time::SystemTime::now()
                        .duration_since(std::time::UNIX_EPOCH)
                        .is_ok_and(|t| t.as_secs() as i64 > meta.mtime() + 1);
                    match seen.get_mut(&key) {
                        Some(s) if s.done && s.was == now => {}
                        Some(s) if s.was == now && settled => {
                            s.done = true;
                            ready.push((meta.len(), dir.clone(), rel.to_path_buf()));
                        }
                        // Changed (or an inode used again): looked at afresh.
                        Some(s) if s.done => {
                            s.was = now;
                            s.done = false;
                        }
                        Some(s) => s.was = now,
                        None => {
                            seen.insert(
                                key,
                                Seen {
                                    was: now,
                                    done: false,
                                },
                            );
                        }
                    }
                });
            }
            ready.sort_by(|a, b| b.0.cmp(&a.0).then_with(|| a.1.cmp(&b.1)));
            for (size, upper, rel) in ready {
                if self.ending.load(Ordering::SeqCst) {
                    return;
                }
                if !room_for(spec.dir(), size) {
                    continue;
                }
                // A file gone, replaced or unreadable is the export's to meet; nothing made here is ever wrong, only
                // unused.
                if let Some(f) = open_beneath(&upper, &rel) {
                    let _ = spec.compress_file(f, &|| self.ending.load(Ordering::SeqCst));
                }
            }
        }
    }

    /// Bytes of big files compressed while their steps ran, and of those the layers' compression took so far.
    pub(crate) fn ahead(&self) -> (u64, u64) {
        self.speculation
            .lock()
            .ok()
            .and_then(|s| s.as_ref().map(|(s, _)| (s.made(), s.used())))
            .unwrap_or((0, 0))
    }

    /// The build is over: see [`Compressor::ending`].
    pub(crate) fn end(&self) {
        self.ending.store(true, Ordering::SeqCst);
    }

    /// Layers compressed while the build ran.
    pub(crate) fn made(&self) -> usize {
        self.made.load(Ordering::SeqCst)
    }
}

/// How often the scanner looks through the snapshots being written.
const SCAN_EVERY: Duration = Duration::from_secs(1);

/// What the scanner last saw of a file: its size and time, and whether it was handed to the compressor.
struct Seen {
    was: (u64, i64, i64),
    done: bool,
}

/// Opens `rel` for reading inside `upper`, a directory the running step writes: never through a symlink (the step
/// may swap one in between the walk and the open), so nothing outside the step's own files is read.
fn open_beneath(upper: &Path, rel: &Path) -> Option<std::fs::File> {
    use rustix::fs::{Mode, OFlags, ResolveFlags};
    let dir = std::fs::File::open(upper).ok()?;
    let fd = rustix::fs::openat2(
        &dir,
        rel,
        OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
        ResolveFlags::BENEATH | ResolveFlags::NO_SYMLINKS | ResolveFlags::NO_MAGICLINKS,
    )
    .ok()?;
    Some(std::fs::File::from(fd))
}

/// Whether the filesystem of `dir` has room for the compressed copy of a `size`-byte file and still keeps a margin
/// for the step itself: what is compressed ahead must never be what fills the disk a build needs.
fn room_for(dir: &Path, size: u64) -> bool {
    rustix::fs::statvfs(dir).is_ok_and(|v| {
        let free = v.f_bavail.saturating_mul(v.f_frsize);
        free > size.saturating_mul(2).saturating_add(ROOM_MARGIN)
    })
}

/// Free space kept beside what is compressed ahead.
const ROOM_MARGIN: u64 = 4 << 30;

/// Calls `found` with every regular file of at least `exporter::speculate::BIG` bytes under `dir` (symlinks not
/// followed); what vanishes while walked is skipped.
fn big_files(dir: &Path, found: &mut dyn FnMut(&Path, &std::fs::Metadata)) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let Ok(ft) = e.file_type() else {
            continue;
        };
        if ft.is_dir() {
            big_files(&e.path(), found);
        } else if ft.is_file() {
            if let Ok(meta) = e.metadata() {
                if meta.len() >= exporter::speculate::BIG {
                    found(&e.path(), &meta);
                }
            }
        }
    }
}

/// The layer of snapshot `id`; none for a base image's snapshot (its own compressed blobs are exported).
fn source(snapshots: &Snapshotter, id: &str) -> Option<LayerSource> {
    if snapshots.unpacked_from(id).is_some() {
        return None;
    }
    Some(LayerSource {
        diff: snapshots.diff_dir(id),
        unpacked_from: None,
        created: snapshots.created(id),
        id: id.to_string(),
    })
}

/// How much lower than the build's steps the compressor runs: at nice 10 a busy step outweighs it ten to one
/// (CFS weights 1024 and 110), so it lives mostly on the cores the steps leave idle, yet is never starved the way
/// `SCHED_IDLE` starves it on a machine busy with other work (parallel CI jobs), where the export would then find
/// nothing made and a build could wait on it.
const NICE: i32 = 10;

/// The calling thread (and the compression threads it starts, which inherit it) runs at [`NICE`].
fn lowest_priority() {
    // SAFETY: setpriority with who 0 changes only the calling thread's nice value (Linux threads have their own),
    // and only lowers it.
    unsafe {
        libc::setpriority(libc::PRIO_PROCESS, 0, NICE);
    }
}

/// The worker, with each finished step of a final image's layer chain handed to the compressor.
pub(crate) struct Runner<'a, R> {
    /// The worker.
    pub inner: &'a R,
    /// The plan's chain.
    pub chain: &'a BTreeSet<VertexId>,
    /// The plan's roots.
    pub roots: &'a BTreeSet<VertexId>,
    /// The compressor's intake.
    pub to: mpsc::Sender<String>,
    /// The compressor.
    pub compressor: &'a Compressor,
}

impl<R: OpRunner<Output = StepOutput>> OpRunner for Runner<'_, R> {
    type Output = StepOutput;
    type Error = R::Error;

    fn run(
        &self,
        id: VertexId,
        vertex: &Vertex,
        inputs: &[StepOutput],
        cancel: &CancelToken,
    ) -> Result<StepOutput, R::Error> {
        let watched = self.chain.contains(&id) && matches!(vertex.op, Op::Exec(_));
        if watched {
            self.compressor.running.fetch_add(1, Ordering::SeqCst);
        }
        let out = self.inner.run(id, vertex, inputs, cancel);
        if watched {
            self.compressor.running.fetch_sub(1, Ordering::SeqCst);
        }
        let out = out?;
        // A step answered from the cache was compressed, if ever, by an earlier export; it is not worth doing
        // now, with the build about to end. Nor is a final image's own last step's: nothing of the build is left to
        // run beside it, and the export compresses it straight into where it goes (an archive, the upload) rather
        // than into the store first. Its big files were compressed ahead all the same.
        let last = self.roots.contains(&id);
        if let (true, false, false, Fs::Snapshot(s)) =
            (self.chain.contains(&id), out.cached, last, &out.fs)
        {
            let _ = self.to.send(s.clone());
        }
        Ok(out)
    }
}

impl Plan {
    /// The vertices whose snapshots are layers of a final image.
    pub(crate) fn chain(&self) -> &BTreeSet<VertexId> {
        &self.chain
    }

    /// The final images' own vertices.
    pub(crate) fn roots(&self) -> &BTreeSet<VertexId> {
        &self.roots
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_is_opened_only_inside_the_step_s_directory_and_never_through_a_symlink() {
        let d = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        std::fs::write(outside.path().join("secret"), "host").unwrap();
        std::fs::create_dir(d.path().join("lib")).unwrap();
        std::fs::write(d.path().join("lib/big.so"), "mine").unwrap();
        std::os::unix::fs::symlink(outside.path(), d.path().join("swapped")).unwrap();
        std::os::unix::fs::symlink(outside.path().join("secret"), d.path().join("link")).unwrap();
        assert!(open_beneath(d.path(), Path::new("lib/big.so")).is_some());
        assert!(open_beneath(d.path(), Path::new("swapped/secret")).is_none());
        assert!(open_beneath(d.path(), Path::new("link")).is_none());
        assert!(open_beneath(d.path(), Path::new("../x")).is_none());
    }
}
