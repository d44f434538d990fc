//! Image assembly: each snapshot layer compressed once (remembered by snapshot id and compression), the image
//! config with `rootfs.diff_ids` and history, the manifest, all stored before the names that point to them.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use oci::layer::split::Part;
use oci::manifest::{
    Descriptor, LayerCompression, Manifest, MEDIA_CONFIG, MEDIA_DOCKER_CONFIG,
    MEDIA_DOCKER_MANIFEST, MEDIA_LAYER_GZIP, MEDIA_LAYER_TAR, MEDIA_LAYER_ZSTD, MEDIA_MANIFEST,
};
use oci::store::Store;
use oci::{Digest, History, Image};
use serde_json::json;

use crate::compression::Compression;
use crate::convert::Stoppable;
use crate::diff::{write_diff, DiffOptions};
use crate::error::ExportError;
use crate::layout::ArchiveStream;
use oci::{HashedAside, Offloaded};

/// The layer annotation BuildKit's `rewrite-timestamp` writes: the SOURCE_DATE_EPOCH a layer's file times were
/// clamped to.
pub const REWRITTEN_TIMESTAMP: &str = "buildkit/rewritten-timestamp";

/// How an image is written: what the layers are compressed with, which media-type vocabulary names them, and the
/// timestamp that makes the result reproducible. BuildKit's `-o` options map onto it one to one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExportOptions {
    /// Layer compression.
    pub compression: Compression,
    /// OCI media types (BuildKit's default) or Docker's, for tools and registries that only know those.
    pub oci_media_types: bool,
    /// SOURCE_DATE_EPOCH: image and history times, and (with `clamp_file_times`) file times in the layers.
    pub source_date_epoch: Option<i64>,
    /// BuildKit's `rewrite-timestamp`: file times newer than SOURCE_DATE_EPOCH are clamped to it. kiln defaults it
    /// on whenever SOURCE_DATE_EPOCH is set, so that the documented way to a reproducible image is one setting.
    pub clamp_file_times: bool,
    /// BuildKit's `force-compression`: base image layers of another compression than `compression` are not carried
    /// as they are (the snapshot they were unpacked into is exported as one layer of the asked compression).
    pub force_compression: bool,
    /// kiln's `--layer-max-size`: a step's layer whose files exceed this many bytes is written as several layers
    /// along directory boundaries (see `oci::layer::split`), so each fits a registry's limit on one blob.
    pub layer_max_size: Option<u64>,
    /// The time (seconds since the epoch) of a history entry or image that has no other (no layer made here, no
    /// SOURCE_DATE_EPOCH): taken once per build, so every output of one build holds the same config and image ID.
    /// `None`: the time of the export.
    pub build_time: Option<i64>,
}

impl ExportOptions {
    /// gzip level 6 with OCI media types, as BuildKit's image exporter defaults.
    pub fn new(compression: Compression, source_date_epoch: Option<i64>) -> ExportOptions {
        ExportOptions {
            compression,
            oci_media_types: true,
            source_date_epoch,
            clamp_file_times: true,
            force_compression: false,
            layer_max_size: None,
            build_time: None,
        }
    }
}

/// One layer to export: a snapshot's id (for reuse) and its upper directory.
#[derive(Debug, Clone)]
pub struct LayerSource {
    /// Snapshot id.
    pub id: String,
    /// Its diff directory.
    pub diff: PathBuf,
    /// The base image manifest the snapshot was unpacked from: its layers are exported as they are, as BuildKit
    /// does, when the store still holds them.
    pub unpacked_from: Option<Digest>,
    /// When the snapshot was made (seconds since the epoch): its history entry's time when the Dockerfile gave
    /// none, so an image rebuilt from cache keeps its times and its ID (BuildKit takes a layer's ref time).
    pub created: Option<i64>,
}

/// A stored layer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LayerBlob {
    /// Uncompressed digest.
    pub diff_id: Digest,
    /// Compressed blob descriptor.
    pub descriptor: Descriptor,
    /// Whether the layer has no entries.
    pub empty: bool,
}

/// The result of an image export.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExportedImage {
    /// Manifest descriptor.
    pub manifest: Descriptor,
    /// Config digest (the image id).
    pub config: Digest,
}

/// The tree a layer tar is written from: a whole upper directory, or one part of it when a step's result is split
/// to fit a size limit.
#[derive(Clone, Copy)]
struct Tree<'a> {
    dir: &'a Path,
    part: Option<&'a Part>,
}

impl<'a> Tree<'a> {
    fn whole(dir: &'a Path) -> Tree<'a> {
        Tree { dir, part: None }
    }

    fn write<W: std::io::Write>(
        &self,
        out: W,
        opts: DiffOptions,
    ) -> Result<(W, u64), oci::layer::diff::DiffError> {
        match self.part {
            Some(p) => p.write(self.dir, out, opts),
            None => write_diff(self.dir, out, opts),
        }
    }
}

/// Makes (or reuses) the blob of one snapshot layer.
pub fn layer_blob(
    store: &Store,
    layer: &LayerSource,
    compression: Compression,
    opts: DiffOptions,
) -> Result<LayerBlob, ExportError> {
    layer_blob_to(store, layer, compression, opts, None)
}

/// As [`layer_blob`]; a compressed layer made now goes straight into `archive` when it can take it as it is made
/// (and is then not remembered: the store does not hold it).
fn layer_blob_to(
    store: &Store,
    layer: &LayerSource,
    compression: Compression,
    opts: DiffOptions,
    archive: Option<&mut ArchiveStream<'_>>,
) -> Result<LayerBlob, ExportError> {
    let memo = memo_path(store, &snapshot_memo_key(layer, compression, opts))?;
    if let Some(known) = remembered(store, &memo) {
        return Ok(known);
    }
    // The local store's uncompressed layers are lazy: the snapshot is already the layer, so only its digest is
    // computed now and the tar is written when something reads it.
    let made = if matches!(compression, Compression::None) && !layer.id.is_empty() {
        let (digest, size, entries) = oci::store::digest_of_diff(&layer.diff, opts)?;
        store.keep_lazy(&digest, size, &layer.diff, opts)?;
        LayerBlob {
            diff_id: digest.clone(),
            descriptor: Descriptor::new(MEDIA_LAYER_TAR, digest, size),
            empty: entries == 0,
        }
    } else {
        // A snapshot never changes, so the digest its lazy layer recorded is its diffID.
        let known = store.lazy_digest_of(&layer.diff, opts);
        match archive {
            Some(archive) if archive.streams() => {
                return dir_blob_into(Tree::whole(&layer.diff), compression, opts, archive, known)
            }
            _ => stored_blob(store, Tree::whole(&layer.diff), compression, opts, known)?,
        }
    };
    remember(&memo, &made);
    Ok(made)
}

/// Compresses a finished step's layer ahead of its export, while the rest of the build runs: the blob goes into the
/// store under both memos an export consults — the uncompressed layer's (a push converts the store image's lazy
/// layers, `crate::convert`) and the snapshot's (an archive export, [`layer_blob`]) — so either finds it made. The
/// bytes are those the export would make (the same tar, the same deterministic compressor), so when it ran changes
/// nothing. `stop`, asked with the uncompressed bytes read so far and the layer's size, abandons it; `None` then,
/// and for an empty layer.
pub fn precompress(
    store: &Store,
    layer: &LayerSource,
    compression: Compression,
    opts: DiffOptions,
    stop: &(dyn Fn(u64, u64) -> bool + Sync),
) -> Result<Option<LayerBlob>, ExportError> {
    if compression == Compression::None {
        return Ok(None);
    }
    let tar_memo = memo_path(store, &snapshot_memo_key(layer, Compression::None, opts))?;
    let known = remembered(store, &tar_memo)
        .map(|t| t.diff_id)
        .or_else(|| store.lazy_digest_of(&layer.diff, opts));
    // One pass: the tar rendered once, hashed aside (the diffID, unless a lazy layer recorded it) and compressed
    // into the store; asked to stop against the bytes of the files it holds, a close estimate of the tar's size.
    let estimate = dir_bytes(&layer.diff);
    let blob = Offloaded::new(store.writer()?);
    let made = compress_dir(
        Tree::whole(&layer.diff),
        compression,
        opts,
        blob,
        known.clone(),
        &|read| stop(read, estimate),
    );
    let (blob, made) = match made {
        Err(ExportError::Stopped) => return Ok(None),
        other => other?.split(),
    };
    let (digest, size) = blob
        .finish()
        .map_err(|source| ExportError::Io {
            path: layer.diff.clone(),
            source,
        })?
        .commit(None)?;
    let empty = made.entries == 0;
    let (diff_id, tar_size) = (made.diff_id.clone(), made.tar_size);
    let blob = made.layer(digest.clone(), size);
    if let (None, Some(diff_id), Some(tar_size)) = (known, diff_id, tar_size) {
        // The uncompressed layer, as `layer_blob` would have recorded it: lazy, under its memo.
        store.keep_lazy(&diff_id, tar_size, &layer.diff, opts)?;
        remember(
            &tar_memo,
            &LayerBlob {
                diff_id: diff_id.clone(),
                descriptor: Descriptor::new(MEDIA_LAYER_TAR, diff_id, tar_size),
                empty,
            },
        );
    }
    if empty {
        return Ok(None);
    }
    crate::convert::remember_kept(store, &blob.diff_id, compression, digest, size)?;
    remember(
        &memo_path(store, &snapshot_memo_key(layer, compression, opts))?,
        &blob,
    );
    Ok(Some(blob))
}

/// The bytes of the regular files under `dir` (hard links counted each time): about the size of its layer tar.
fn dir_bytes(dir: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .flatten()
        .map(|e| match e.file_type() {
            Ok(t) if t.is_dir() => dir_bytes(&e.path()),
            Ok(t) if t.is_file() => e.metadata().map_or(0, |m| m.len()),
            _ => 0,
        })
        .sum()
}

/// What names a whole snapshot layer's memo: the snapshot, the compression and the epoch its times were
/// clamped to.
fn snapshot_memo_key(layer: &LayerSource, compression: Compression, opts: DiffOptions) -> String {
    format!(
        "{}|{}|{:?}",
        layer.id,
        compression.tag(),
        opts.source_date_epoch
    )
}

/// The blob of part `index` of a split snapshot layer, remembered as whole layers are (a snapshot never changes,
/// so its id, the limit and the part's index name the same bytes). Never lazy: the store keeps the part's tar.
fn part_blob_to(
    store: &Store,
    layer: &LayerSource,
    part: (&Part, usize, u64),
    compression: Compression,
    opts: DiffOptions,
    archive: Option<&mut ArchiveStream<'_>>,
) -> Result<LayerBlob, ExportError> {
    let (part, index, max) = part;
    let memo = memo_path(
        store,
        &format!(
            "{}|{}|{:?}|split:{max}:{index}",
            layer.id,
            compression.tag(),
            opts.source_date_epoch
        ),
    )?;
    if let Some(known) = remembered(store, &memo) {
        return Ok(known);
    }
    let tree = Tree {
        dir: &layer.diff,
        part: Some(part),
    };
    let made = match archive {
        Some(archive) if archive.streams() && !matches!(compression, Compression::None) => {
            return dir_blob_into(tree, compression, opts, archive, None)
        }
        _ => stored_blob(store, tree, compression, opts, None)?,
    };
    remember(&memo, &made);
    Ok(made)
}

/// Where the memo of a layer made from `key` (the snapshot, compression, epoch, part) lives: `layers/` of the
/// store, by the key's digest.
fn memo_path(store: &Store, key: &str) -> Result<PathBuf, ExportError> {
    let memo_dir = store.root().join("layers");
    std::fs::create_dir_all(&memo_dir).map_err(|source| ExportError::Io {
        path: memo_dir.clone(),
        source,
    })?;
    Ok(memo_dir.join(format!("{}.json", Digest::sha256_of(key.as_bytes()).hex())))
}

/// A layer blob remembered in `memo` whose blob the store still holds.
fn remembered(store: &Store, memo: &Path) -> Option<LayerBlob> {
    let v: serde_json::Value = serde_json::from_slice(&std::fs::read(memo).ok()?).ok()?;
    let diff_id: Digest = v["diff_id"].as_str()?.parse().ok()?;
    let digest: Digest = v["digest"].as_str()?.parse().ok()?;
    let size = v["size"].as_u64()?;
    let media = v["media_type"].as_str()?.to_string();
    let empty = v["empty"].as_bool()?;
    store.has(&digest).then(|| LayerBlob {
        diff_id,
        descriptor: Descriptor::new(&media, digest, size),
        empty,
    })
}

/// Records a made layer blob in `memo` (a hint: a lost memo only means the layer is made again).
fn remember(memo: &Path, made: &LayerBlob) {
    let record = json!({"diff_id": made.diff_id.to_string(), "digest": made.descriptor.digest.to_string(), "size": made.descriptor.size, "media_type": made.descriptor.media_type, "empty": made.empty});
    let _ = std::fs::write(memo, record.to_string());
}

/// The layers of the base image `manifest`, for the snapshot unpacked from it: the base's own blobs (so a
/// registry that has the base has them already, and the image keeps the base's layers as BuildKit's does) with the
/// base's diffIDs. An uncompressed base layer (a kiln-built base) is compressed once when a compression is asked
/// for. `None` when they cannot stand for the snapshot: the base is no longer in the store, a layer type kiln does
/// not know, or `force-compression` asks for another compression than a layer has; the snapshot is then exported
/// as one layer made from its files.
fn base_layers(
    store: &Store,
    manifest: &Digest,
    options: &ExportOptions,
) -> Result<Option<Vec<LayerBlob>>, ExportError> {
    let Ok(m) = store.read_json::<Manifest>(manifest) else {
        return Ok(None);
    };
    let Ok(config) = store.read_json::<Image>(&m.config.digest) else {
        return Ok(None);
    };
    if config.rootfs.diff_ids.len() != m.layers.len() {
        return Ok(None);
    }
    let wanted = match options.compression {
        Compression::None => LayerCompression::None,
        Compression::Gzip(_) => LayerCompression::Gzip,
        Compression::Zstd(_) => LayerCompression::Zstd,
    };
    let mut out = Vec::with_capacity(m.layers.len());
    for (desc, diff_id) in m.layers.iter().zip(&config.rootfs.diff_ids) {
        let Some(has) = LayerCompression::of_media_type(&desc.media_type) else {
            return Ok(None);
        };
        if !store.has(&desc.digest) {
            return Ok(None);
        }
        let descriptor =
            if has == wanted || (has != LayerCompression::None && !options.force_compression) {
                Descriptor::new(&desc.media_type, desc.digest.clone(), desc.size)
            } else if has == LayerCompression::None {
                let (digest, size) = crate::convert::compressed(
                    store,
                    &desc.digest,
                    options.compression,
                    &mut || None,
                    crate::convert::Keep::Blob,
                )?;
                Descriptor::new(wanted.media_type(true), digest, size)
            } else {
                return Ok(None);
            };
        out.push(LayerBlob {
            diff_id: diff_id.clone(),
            descriptor,
            empty: false,
        });
    }
    Ok(Some(out))
}

/// The layer blob of a directory tree as it is now (no memo): what a cache mount's contents are exported as.
pub fn dir_blob(
    store: &Store,
    dir: &Path,
    compression: Compression,
    opts: DiffOptions,
) -> Result<LayerBlob, ExportError> {
    stored_blob(store, Tree::whole(dir), compression, opts, None)
}

/// [`dir_blob`], with the tar's digest given when it is `known` (an immutable snapshot's, recorded by its lazy
/// layer).
fn stored_blob(
    store: &Store,
    tree: Tree<'_>,
    compression: Compression,
    opts: DiffOptions,
    known: Option<Digest>,
) -> Result<LayerBlob, ExportError> {
    let io = |source| ExportError::Io {
        path: tree.dir.to_path_buf(),
        source,
    };
    // Every stage but the render runs beside it: the compressor on its workers, the diffID's hash and the store
    // writer (which hashes the blob) on threads of their own.
    let blob = Offloaded::new(store.writer()?);
    let (blob, made) = compress_dir(tree, compression, opts, blob, known, &|_| false)?.split();
    let (stored, size) = blob.finish().map_err(io)?.commit(None)?;
    Ok(made.layer(stored, size))
}

/// The layer blob of `dir` written into `archive` as it is compressed, never stored: an archive export's new
/// layers are written once, not into the store and then again into the archive.
fn dir_blob_into(
    tree: Tree<'_>,
    compression: Compression,
    opts: DiffOptions,
    archive: &mut ArchiveStream<'_>,
    known: Option<Digest>,
) -> Result<LayerBlob, ExportError> {
    let (blob, made) = compress_dir(tree, compression, opts, archive.new_blob(), known, &|_| {
        false
    })?
    .split();
    let (digest, size) = blob.finish()?;
    Ok(made.layer(digest, size))
}

/// A layer tar compressed into a blob writer, and what its pass learnt.
struct Compressed<B> {
    blob: B,
    diff_id: Option<Digest>,
    /// The tar's size, when this pass hashed it.
    tar_size: Option<u64>,
    entries: u64,
    media: &'static str,
}

impl<B> Compressed<B> {
    fn split(self) -> (B, Compressed<()>) {
        let Compressed {
            blob,
            diff_id,
            tar_size,
            entries,
            media,
        } = self;
        (
            blob,
            Compressed {
                blob: (),
                diff_id,
                tar_size,
                entries,
                media,
            },
        )
    }

    /// The layer, once the blob's digest and size are known (an uncompressed blob's digest is its diffID).
    fn layer(self, digest: Digest, size: u64) -> LayerBlob {
        LayerBlob {
            diff_id: self.diff_id.unwrap_or_else(|| digest.clone()),
            descriptor: Descriptor::new(self.media, digest, size),
            empty: self.entries == 0,
        }
    }
}

/// Writes `tree`'s layer tar through `compression` into `blob`, hashing the tar (the diffID) on the way unless
/// `known` gives it (a lazy layer of the same snapshot recorded it).
fn compress_dir<B: std::io::Write>(
    tree: Tree<'_>,
    compression: Compression,
    opts: DiffOptions,
    blob: B,
    known: Option<Digest>,
    stop: &(dyn Fn(u64) -> bool + Sync),
) -> Result<Compressed<B>, ExportError> {
    let io = |source| ExportError::Io {
        path: tree.dir.to_path_buf(),
        source,
    };
    // The tar into `encoder`, hashed aside when its digest is not known (then with its size), given up with
    // `ExportError::Stopped` when `stop` says so.
    fn tar_into<E: std::io::Write>(
        tree: Tree<'_>,
        encoder: E,
        opts: DiffOptions,
        known: Option<Digest>,
        stop: &(dyn Fn(u64) -> bool + Sync),
    ) -> Result<(E, Digest, Option<u64>, u64), ExportError> {
        let fired = std::sync::atomic::AtomicBool::new(false);
        let stop = |read: u64| {
            let s = stop(read);
            if s {
                fired.store(true, std::sync::atomic::Ordering::SeqCst);
            }
            s
        };
        let stopped = |e: oci::layer::diff::DiffError| {
            if fired.load(std::sync::atomic::Ordering::SeqCst) {
                ExportError::Stopped
            } else {
                e.into()
            }
        };
        if let Some(d) = known {
            let (encoder, entries) = tree
                .write(Stoppable::new(encoder, &stop), opts)
                .map_err(stopped)?;
            return Ok((encoder.into_inner(), d, None, entries));
        }
        let (inner, entries) = tree
            .write(Stoppable::new(HashedAside::new(encoder), &stop), opts)
            .map_err(stopped)?;
        let (encoder, d, size) = inner
            .into_inner()
            .finish()
            .map_err(|source| ExportError::Io {
                path: tree.dir.to_path_buf(),
                source,
            })?;
        Ok((encoder, d, Some(size), entries))
    }
    Ok(match compression {
        Compression::Gzip(level) => {
            let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
            let gz = crate::pgzip::ParallelGzip::new(blob, level.min(9), threads);
            let (gz, diff_id, tar_size, entries) = tar_into(tree, gz, opts, known, stop)?;
            Compressed {
                blob: gz.finish().map_err(io)?,
                diff_id: Some(diff_id),
                tar_size,
                entries,
                media: MEDIA_LAYER_GZIP,
            }
        }
        Compression::Zstd(level) => {
            let zs = zstd::stream::write::Encoder::new(blob, level).map_err(io)?;
            let (zs, diff_id, tar_size, entries) = tar_into(tree, zs, opts, known, stop)?;
            Compressed {
                blob: zs.finish().map_err(io)?,
                diff_id: Some(diff_id),
                tar_size,
                entries,
                media: MEDIA_LAYER_ZSTD,
            }
        }
        // Uncompressed, the blob is the tar: its digest is the diffID.
        Compression::None => {
            let (blob, entries) = tree.write(blob, opts)?;
            Compressed {
                blob,
                diff_id: None,
                tar_size: None,
                entries,
                media: MEDIA_LAYER_TAR,
            }
        }
    })
}

/// `epoch` (seconds since 1970, UTC) as RFC 3339 (`2024-01-02T03:04:05Z`): image configs' and attestations' times.
pub fn rfc3339(epoch: i64) -> String {
    // Civil-from-days (Howard Hinnant's algorithm), UTC.
    let days = epoch.div_euclid(86_400);
    let secs = epoch.rem_euclid(86_400);
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = if m <= 2 { y + 1 } else { y };
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        secs / 3600,
        secs % 3600 / 60,
        secs % 60
    )
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .ok()
        .and_then(|d| i64::try_from(d.as_secs()).ok())
        .unwrap_or(0)
}

/// Gives every history entry without a time one, as BuildKit's `normalizeLayersAndHistory` does: an entry with a
/// layer takes its layer's time (`blob_times`, one per non-empty entry, bottom first); an entry without one takes
/// the time of the first layer made after the last timed entry before it, or of the entry before it. Times then
/// come from the snapshots, so a build answered from cache makes the same config, and the same image ID, again.
fn fill_history_times(history: &mut [History], blob_times: &[Option<i64>], fallback: i64) {
    let mut layer = 0;
    for h in history.iter_mut() {
        if h.empty_layer {
            continue;
        }
        if h.created.is_none() {
            h.created = blob_times.get(layer).copied().flatten().map(rfc3339);
        }
        layer += 1;
    }
    // The first timed entry after an untimed one, else the last timed entry.
    let mut created: Option<String> = None;
    let mut untimed_seen = false;
    for h in history.iter() {
        match &h.created {
            Some(t) => {
                created = Some(t.clone());
                if untimed_seen {
                    break;
                }
            }
            None => untimed_seen = true,
        }
    }
    let created = created.unwrap_or_else(|| rfc3339(fallback));
    let mut current = created;
    let mut untimed_seen = false;
    for h in history.iter_mut() {
        match &h.created {
            Some(t) => {
                if untimed_seen {
                    current = t.clone();
                }
            }
            None => {
                untimed_seen = true;
                h.created = Some(current.clone());
            }
        }
    }
}

/// Exports `layers` (bottom first) with `image`'s config and history into the store, then tags it with `names`.
pub fn export_image(
    store: &Store,
    layers: &[LayerSource],
    image: Image,
    options: &ExportOptions,
    names: &[String],
) -> Result<ExportedImage, ExportError> {
    export_image_to(store, layers, image, options, &BTreeMap::new(), names, None)
}

/// Exports an image as [`export_image`] does and appends its blobs to `archive` as they are made, layers first,
/// then its config and manifest: a layer compressed now is written into the archive alone (the store keeps the
/// config and manifest, not the layer), the rest are copied from the store. [`ArchiveStream::finish`] then adds
/// the JSON files.
pub fn export_image_into(
    store: &Store,
    layers: &[LayerSource],
    image: Image,
    options: &ExportOptions,
    archive: &mut ArchiveStream<'_>,
) -> Result<ExportedImage, ExportError> {
    export_image_to(
        store,
        layers,
        image,
        options,
        &BTreeMap::new(),
        &[],
        Some(archive),
    )
}

/// Exports an image as [`export_image`] (no `archive`) or [`export_image_into`] do, with `annotations` on its
/// manifest (BuildKit's `annotation.*` / `annotation-manifest.*`, what `--annotation` sets): the annotated
/// manifest is another manifest, the config (the image id) stays the same.
pub fn export_annotated_image(
    store: &Store,
    layers: &[LayerSource],
    image: Image,
    options: &ExportOptions,
    annotations: &BTreeMap<String, String>,
    names: &[String],
    archive: Option<&mut ArchiveStream<'_>>,
) -> Result<ExportedImage, ExportError> {
    export_image_to(store, layers, image, options, annotations, names, archive)
}

fn export_image_to(
    store: &Store,
    layers: &[LayerSource],
    mut image: Image,
    options: &ExportOptions,
    annotations: &BTreeMap<String, String>,
    names: &[String],
    mut archive: Option<&mut ArchiveStream<'_>>,
) -> Result<ExportedImage, ExportError> {
    let source_date_epoch = options.source_date_epoch;
    let opts = DiffOptions {
        source_date_epoch: source_date_epoch.filter(|_| options.clamp_file_times),
    };
    let mut blobs = Vec::new();
    // Each blob's time: its snapshot's, for a layer made here (a base image's layers carry their own history).
    let mut blob_times: Vec<Option<i64>> = Vec::new();
    // The later parts of split layers, by blob index: each gets a history entry of its own after its step's.
    let mut labels: std::collections::BTreeMap<usize, String> = std::collections::BTreeMap::new();
    for l in layers {
        let base = match &l.unpacked_from {
            Some(manifest) => base_layers(store, manifest, options)?,
            None => None,
        };
        let parts = match (&base, options.layer_max_size) {
            (None, Some(max)) => oci::layer::split::plan(&l.diff, max)?.map(|p| (p, max)),
            _ => None,
        };
        let made = match (base, &parts) {
            (Some(base), _) => base,
            (None, Some((parts, max))) => {
                let mut made = Vec::with_capacity(parts.len());
                for (i, p) in parts.iter().enumerate() {
                    made.push(part_blob_to(
                        store,
                        l,
                        (p, i, *max),
                        options.compression,
                        opts,
                        archive.as_deref_mut(),
                    )?);
                    if i > 0 {
                        labels.insert(blobs.len() + i, p.label.clone());
                    }
                }
                made
            }
            (None, None) => vec![layer_blob_to(
                store,
                l,
                options.compression,
                opts,
                archive.as_deref_mut(),
            )?],
        };
        // A step that changed nothing keeps its (empty) layer, as BuildKit's do: each step's history entry then
        // names its own layer.
        for mut b in made {
            if let Some(archive) = archive.as_deref_mut() {
                archive.append_stored(store, &b.descriptor.digest)?;
            }
            if let Some(c) = LayerCompression::of_media_type(&b.descriptor.media_type) {
                b.descriptor.media_type = c.media_type(options.oci_media_types).to_string();
            }
            // A layer made here with its file times clamped says to what, as BuildKit's rewrite-timestamp marks
            // the layers it rewrote (a base image's layers are kept as they are).
            if let (Some(epoch), None) = (opts.source_date_epoch, &l.unpacked_from) {
                b.descriptor
                    .annotations
                    .insert(REWRITTEN_TIMESTAMP.to_string(), epoch.to_string());
            }
            blobs.push(b);
            blob_times.push(l.unpacked_from.is_none().then_some(l.created).flatten());
        }
    }
    image.rootfs.diff_ids = blobs.iter().map(|b| b.diff_id.clone()).collect();
    // History must name one non-empty entry per layer: base layers first, then the steps that made layers (a
    // split step's later parts are given theirs below).
    let primary = blobs.len() - labels.len();
    let layered = image.history.iter().filter(|h| !h.empty_layer).count();
    if layered < primary {
        let missing = primary - layered;
        let mut base: Vec<History> = (0..missing)
            .map(|_| History {
                created: None,
                created_by: "kiln: base image layer".to_string(),
                comment: String::new(),
                empty_layer: false,
            })
            .collect();
        base.append(&mut image.history);
        image.history = base;
    } else if layered > primary {
        let mut extra = layered - primary;
        for h in image.history.iter_mut().rev() {
            if extra == 0 {
                break;
            }
            if !h.empty_layer {
                h.empty_layer = true;
                extra -= 1;
            }
        }
    }
    if !labels.is_empty() {
        let mut expanded = Vec::with_capacity(image.history.len() + labels.len());
        let mut next = 0usize;
        for h in std::mem::take(&mut image.history) {
            let with_layer = !h.empty_layer;
            let step = h.created_by.clone();
            expanded.push(h);
            if with_layer {
                next += 1;
                while let Some(label) = labels.get(&next) {
                    expanded.push(History {
                        created: None,
                        created_by: step.clone(),
                        comment: format!("kiln layer split, {label}"),
                        empty_layer: false,
                    });
                    next += 1;
                }
            }
        }
        image.history = expanded;
    }
    match source_date_epoch {
        // Every entry the Dockerfile made carries the epoch, as BuildKit's frontend stamps them.
        Some(epoch) => {
            for h in &mut image.history {
                if h.created.is_none() {
                    h.created = Some(rfc3339(epoch));
                }
            }
        }
        None => fill_history_times(
            &mut image.history,
            &blob_times,
            options.build_time.unwrap_or_else(now),
        ),
    }
    // The image's time is its last history entry's, as BuildKit's exporter takes it when the config has none.
    image.created = image
        .history
        .iter()
        .rev()
        .find_map(|h| h.created.clone())
        .or_else(|| {
            Some(rfc3339(
                source_date_epoch.or(options.build_time).unwrap_or_else(now),
            ))
        });
    let config_bytes = serde_json::to_vec(&image).map_err(|e| ExportError::Io {
        path: store.root().to_path_buf(),
        source: std::io::Error::other(e),
    })?;
    let config = store.put_bytes(&config_bytes)?;
    let (manifest_media, config_media) = if options.oci_media_types {
        (MEDIA_MANIFEST, MEDIA_CONFIG)
    } else {
        (MEDIA_DOCKER_MANIFEST, MEDIA_DOCKER_CONFIG)
    };
    let manifest = Manifest {
        schema_version: 2,
        media_type: Some(manifest_media.to_string()),
        config: Descriptor::new(config_media, config.clone(), config_bytes.len() as u64),
        layers: blobs.iter().map(|b| b.descriptor.clone()).collect(),
        annotations: annotations.clone(),
    };
    let manifest_bytes = serde_json::to_vec(&manifest).map_err(|e| ExportError::Io {
        path: store.root().to_path_buf(),
        source: std::io::Error::other(e),
    })?;
    let manifest_digest = store.put_bytes(&manifest_bytes)?;
    if let Some(archive) = archive {
        archive.append_stored(store, &config)?;
        archive.append_stored(store, &manifest_digest)?;
    }
    for n in names {
        store.set_image(n, &manifest_digest)?;
    }
    Ok(ExportedImage {
        manifest: Descriptor::new(manifest_media, manifest_digest, manifest_bytes.len() as u64),
        config,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An empty image config for linux/amd64.
    fn linux_amd64() -> Image {
        Image {
            architecture: "amd64".into(),
            os: "linux".into(),
            ..Default::default()
        }
    }

    #[test]
    fn a_snapshot_compressed_after_its_lazy_layer_takes_the_recorded_diff_id() {
        let root = tempfile::tempdir().unwrap();
        let store = Store::open(&root.path().join("store")).unwrap();
        let snap = root.path().join("snapshots/s1/diff");
        std::fs::create_dir_all(&snap).unwrap();
        std::fs::write(snap.join("f"), "content").unwrap();
        let layer = LayerSource {
            id: "s1".into(),
            diff: snap.clone(),
            unpacked_from: None,
            created: None,
        };
        let opts = DiffOptions {
            source_date_epoch: Some(0),
        };
        let plain = layer_blob(&store, &layer, Compression::None, opts).unwrap();
        let gz = layer_blob(&store, &layer, Compression::Gzip(6), opts).unwrap();
        assert_eq!(gz.diff_id, plain.diff_id);
        // A digest that only the record can have given (not what the tar hashes to) shows the tar was not
        // hashed again; another epoch is another tar, hashed.
        let other = LayerSource {
            id: "s2".into(),
            diff: root.path().join("snapshots/s2/diff"),
            unpacked_from: None,
            created: None,
        };
        std::fs::create_dir_all(&other.diff).unwrap();
        std::fs::write(other.diff.join("f"), "content").unwrap();
        let recorded = Digest::sha256_of(b"recorded");
        store.keep_lazy(&recorded, 1, &other.diff, opts).unwrap();
        let gz = layer_blob(&store, &other, Compression::Gzip(6), opts).unwrap();
        assert_eq!(gz.diff_id, recorded);
        let later = DiffOptions {
            source_date_epoch: Some(1),
        };
        let gz = layer_blob(&store, &other, Compression::Gzip(6), later).unwrap();
        assert_ne!(gz.diff_id, recorded);
    }

    #[test]
    fn history_times_come_from_layers_and_the_entries_around_them() {
        // As BuildKit's normalizeLayersAndHistory: [base t0, ENV, COPY (layer t1), ENV] gives ENV t1 (the first
        // layer made after the base), COPY its layer's t1, the last ENV t1; with no layer made, the base's time.
        let entry = |created: Option<i64>, empty_layer: bool| History {
            created: created.map(rfc3339),
            empty_layer,
            ..Default::default()
        };
        let mut h = vec![
            entry(Some(100), false),
            entry(None, true),
            entry(None, false),
            entry(None, true),
        ];
        fill_history_times(&mut h, &[None, Some(200)], 0);
        let times: Vec<_> = h.iter().map(|h| h.created.clone().unwrap()).collect();
        assert_eq!(
            times,
            [rfc3339(100), rfc3339(200), rfc3339(200), rfc3339(200)]
        );
        let mut h = vec![entry(Some(100), false), entry(None, true)];
        fill_history_times(&mut h, &[None], 0);
        assert_eq!(h[1].created, Some(rfc3339(100)));
    }

    #[test]
    fn dates() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(1_445_412_480), "2015-10-21T07:28:00Z");
        assert_eq!(rfc3339(951_782_400), "2000-02-29T00:00:00Z");
    }

    #[test]
    fn same_inputs_same_manifest_and_layers_are_reused() {
        let root = tempfile::tempdir().unwrap();
        let store = Store::open(root.path()).unwrap();
        let snap = tempfile::tempdir().unwrap();
        std::fs::write(snap.path().join("hello"), "hi").unwrap();
        let empty = tempfile::tempdir().unwrap();
        let layers = vec![
            LayerSource {
                id: "s1".into(),
                diff: snap.path().to_path_buf(),
                unpacked_from: None,
                created: None,
            },
            LayerSource {
                id: "s2".into(),
                diff: empty.path().to_path_buf(),
                unpacked_from: None,
                created: None,
            },
        ];
        let mut image = linux_amd64();
        image.history.push(History {
            created_by: "COPY hello / # buildkit".into(),
            ..Default::default()
        });
        image.history.push(History {
            created_by: "RUN true # buildkit".into(),
            ..Default::default()
        });
        let a = export_image(
            &store,
            &layers,
            image.clone(),
            &ExportOptions::new(Compression::Gzip(6), Some(1_000)),
            &["app:1".into()],
        )
        .unwrap();
        let b = export_image(
            &store,
            &layers,
            image,
            &ExportOptions::new(Compression::Gzip(6), Some(1_000)),
            &[],
        )
        .unwrap();
        assert_eq!(a, b, "reproducible with SOURCE_DATE_EPOCH");
        let m: Manifest = store.read_json(&a.manifest.digest).unwrap();
        assert_eq!(
            m.layers.len(),
            2,
            "a step that changed nothing keeps its layer"
        );
        let cfg: Image = store.read_json(&a.config).unwrap();
        assert_eq!(cfg.rootfs.diff_ids.len(), 2);
        assert_eq!(
            cfg.rootfs.diff_ids[1].to_string(),
            "sha256:5f70bf18a086007016e948b04aed3b82103a36bea41755b6cddfaf10ace3c6ef",
            "an empty tar"
        );
        assert_eq!(cfg.history.iter().filter(|h| !h.empty_layer).count(), 2);
        assert_eq!(
            store.get_image("app:1").unwrap().unwrap().manifest,
            a.manifest.digest
        );
        // The layer blob decompresses to a tar holding the file.
        let blob = store.open_blob(&m.layers[0].digest).unwrap();
        let mut ar = tar::Archive::new(flate2::read::MultiGzDecoder::new(blob));
        let names: Vec<String> = ar
            .entries()
            .unwrap()
            .map(|e| e.unwrap().path().unwrap().display().to_string())
            .collect();
        assert_eq!(names, ["hello"]);
    }

    /// A base image in `store` with a gzip layer and an uncompressed one (a kiln-built base), and the directory
    /// both unpack to (what the worker's base snapshot holds).
    fn base_image(store: &Store) -> (Digest, Vec<LayerBlob>, tempfile::TempDir) {
        let (one, two, unpacked) = (
            tempfile::tempdir().unwrap(),
            tempfile::tempdir().unwrap(),
            tempfile::tempdir().unwrap(),
        );
        for (dir, name) in [(&one, "etc-os-release"), (&two, "bin-tool")] {
            std::fs::write(dir.path().join(name), name).unwrap();
            std::fs::write(unpacked.path().join(name), name).unwrap();
        }
        let opts = DiffOptions::default();
        let layers = vec![
            dir_blob(store, one.path(), Compression::Gzip(6), opts).unwrap(),
            dir_blob(store, two.path(), Compression::None, opts).unwrap(),
        ];
        let mut config = linux_amd64();
        config.rootfs.diff_ids = layers.iter().map(|l| l.diff_id.clone()).collect();
        let config_bytes = serde_json::to_vec(&config).unwrap();
        let manifest = Manifest {
            schema_version: 2,
            media_type: Some(MEDIA_MANIFEST.to_string()),
            config: Descriptor::new(
                MEDIA_CONFIG,
                store.put_bytes(&config_bytes).unwrap(),
                config_bytes.len() as u64,
            ),
            layers: layers.iter().map(|l| l.descriptor.clone()).collect(),
            annotations: Default::default(),
        };
        let digest = store
            .put_bytes(&serde_json::to_vec(&manifest).unwrap())
            .unwrap();
        (digest, layers, unpacked)
    }

    #[test]
    fn a_base_image_keeps_its_own_layers() {
        let root = tempfile::tempdir().unwrap();
        let store = Store::open(root.path()).unwrap();
        let (base, base_layers, unpacked) = base_image(&store);
        let own = tempfile::tempdir().unwrap();
        std::fs::write(own.path().join("app"), "app").unwrap();
        let layers = |unpacked_from: Option<Digest>| {
            vec![
                LayerSource {
                    id: "base".into(),
                    diff: unpacked.path().to_path_buf(),
                    unpacked_from,
                    created: None,
                },
                LayerSource {
                    id: "own".into(),
                    diff: own.path().to_path_buf(),
                    unpacked_from: None,
                    created: None,
                },
            ]
        };
        let image = linux_amd64();
        let export = |unpacked_from: Option<Digest>, options: &ExportOptions| {
            let e =
                export_image(&store, &layers(unpacked_from), image.clone(), options, &[]).unwrap();
            let m: Manifest = store.read_json(&e.manifest.digest).unwrap();
            let c: Image = store.read_json(&e.config).unwrap();
            (m, c)
        };
        let gzip = ExportOptions::new(Compression::Gzip(6), Some(7));
        let (m, c) = export(Some(base.clone()), &gzip);
        assert_eq!(m.layers.len(), 3, "two base layers and the image's own");
        assert_eq!(
            m.layers[0].digest, base_layers[0].descriptor.digest,
            "the base's gzip blob itself"
        );
        assert_eq!(
            c.rootfs.diff_ids[..2],
            [
                base_layers[0].diff_id.clone(),
                base_layers[1].diff_id.clone()
            ]
        );
        // The uncompressed base layer is compressed, its diffID unchanged.
        assert_eq!(m.layers[1].media_type, MEDIA_LAYER_GZIP);
        let mut tar = Vec::new();
        std::io::Read::read_to_end(
            &mut flate2::read::MultiGzDecoder::new(store.open_blob(&m.layers[1].digest).unwrap()),
            &mut tar,
        )
        .unwrap();
        assert_eq!(Digest::sha256_of(&tar), base_layers[1].diff_id);
        // zstd asked for: the gzip layer stays as it is, unless force-compression.
        let mut zstd = ExportOptions::new(Compression::Zstd(3), Some(7));
        let (m, _) = export(Some(base.clone()), &zstd);
        assert_eq!(m.layers[0].digest, base_layers[0].descriptor.digest);
        zstd.force_compression = true;
        let (m, c) = export(Some(base.clone()), &zstd);
        assert_eq!(m.layers.len(), 2, "the base made again as one layer");
        assert!(m.layers.iter().all(|l| l.media_type == MEDIA_LAYER_ZSTD));
        assert!(!c.rootfs.diff_ids.contains(&base_layers[0].diff_id));
        // A base no longer in the store, or no base known: one layer made from the snapshot.
        let gone = Digest::sha256_of(b"not a manifest");
        for from in [Some(gone), None] {
            let (m, _) = export(from, &gzip);
            assert_eq!(m.layers.len(), 2);
            assert_ne!(m.layers[0].digest, base_layers[0].descriptor.digest);
        }
    }

    #[test]
    fn docker_media_types_on_request_with_the_same_layers() {
        let root = tempfile::tempdir().unwrap();
        let store = Store::open(root.path()).unwrap();
        let snap = tempfile::tempdir().unwrap();
        std::fs::write(snap.path().join("f"), "x").unwrap();
        let layers = vec![LayerSource {
            id: "s".into(),
            diff: snap.path().to_path_buf(),
            unpacked_from: None,
            created: None,
        }];
        let image = linux_amd64();
        let mut docker = ExportOptions::new(Compression::Gzip(6), Some(7));
        docker.oci_media_types = false;
        let d = export_image(&store, &layers, image.clone(), &docker, &[]).unwrap();
        let o = export_image(
            &store,
            &layers,
            image,
            &ExportOptions::new(Compression::Gzip(6), Some(7)),
            &[],
        )
        .unwrap();
        assert_eq!(
            d.config, o.config,
            "the config does not depend on media types"
        );
        assert_ne!(d.manifest.digest, o.manifest.digest);
        let dm: Manifest = store.read_json(&d.manifest.digest).unwrap();
        let om: Manifest = store.read_json(&o.manifest.digest).unwrap();
        assert_eq!(dm.media_type.as_deref(), Some(MEDIA_DOCKER_MANIFEST));
        assert_eq!(dm.config.media_type, MEDIA_DOCKER_CONFIG);
        assert_eq!(
            dm.layers[0].media_type,
            oci::manifest::MEDIA_DOCKER_LAYER_GZIP
        );
        assert_eq!(om.layers[0].media_type, MEDIA_LAYER_GZIP);
        assert_eq!(
            dm.layers[0].digest, om.layers[0].digest,
            "one blob, two names"
        );
    }
}
