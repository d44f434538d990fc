//! Re-compressing an image of the store for a registry: kiln's store keeps built layers uncompressed (nothing is
//! gained by compressing what stays on this disk), but a push should send gzip (or zstd). Each layer is compressed
//! once per compression and remembered by its digest, so a second push of the same image makes nothing again and
//! sends the same bytes — hence a push that the registry answers with "already exists" for every blob.

use std::io::{Read, Write};

use oci::manifest::{LayerCompression, Manifest, MEDIA_DOCKER_MANIFEST};
use oci::store::Store;
use oci::Digest;

use crate::compression::Compression;
use crate::error::ExportError;
use oci::registry::ChunkWriter;
use oci::Offloaded;

fn io_err(store: &Store) -> impl Fn(std::io::Error) -> ExportError + '_ {
    move |source| ExportError::Io {
        path: store.root().to_path_buf(),
        source,
    }
}

/// What a compression leaves in the store besides its memo.
#[derive(Clone, Copy)]
pub enum Keep<'a> {
    /// The compressed blob: exports, and pushes that need it again (several targets, a failed stream's retry).
    Blob,
    /// Only its digest and size, when the layer is streamed to a push's one target, whose copy is the one needed:
    /// writing the blob into the store as well cost the bigctx push (367 MB) 1.6 s of its 3.8 here, most of it
    /// the store file's page-cache and disk writes. A memo without its blob is taken when the function says the
    /// target holds that digest (a HEAD); else the layer is made again and streamed (as buildah does every time;
    /// the same bytes).
    DigestOnly(&'a dyn Fn(&Digest) -> bool),
}

/// The memo of `src` compressed with `compression`: a blob's digest and size, and whether the store keeps it.
struct Memo {
    digest: Digest,
    size: u64,
    kept: bool,
}

impl Memo {
    fn path(store: &Store, src: &Digest, compression: Compression) -> std::path::PathBuf {
        store.root().join("layers").join(format!(
            "conv-{}.json",
            Digest::sha256_of(format!("{src}|{}", compression.tag()).as_bytes()).hex()
        ))
    }

    fn read(path: &std::path::Path) -> Option<Memo> {
        let v: serde_json::Value = serde_json::from_slice(&std::fs::read(path).ok()?).ok()?;
        Some(Memo {
            digest: v["digest"].as_str()?.parse().ok()?,
            size: v["size"].as_u64()?,
            // Memos written before digest-only ones existed say nothing: their blob was kept.
            kept: v["kept"].as_bool().unwrap_or(true),
        })
    }

    /// Written after the blob (when kept) is committed; a lost memo only costs a compression.
    fn write(&self, path: &std::path::Path) {
        let mut v = serde_json::json!({"digest": self.digest.to_string(), "size": self.size});
        if !self.kept {
            v["kept"] = serde_json::Value::Bool(false);
        }
        let _ = std::fs::write(path, v.to_string());
    }
}

/// Records that `src` compressed with `compression` is the stored blob `digest` (`size` bytes): what a compression
/// made elsewhere (ahead of the export, from the snapshot) leaves for [`compressed`] to find.
pub(crate) fn remember_kept(
    store: &Store,
    src: &Digest,
    compression: Compression,
    digest: Digest,
    size: u64,
) -> Result<(), ExportError> {
    let memo = Memo::path(store, src, compression);
    std::fs::create_dir_all(memo.parent().unwrap_or(store.root())).map_err(io_err(store))?;
    Memo {
        digest,
        size,
        kept: true,
    }
    .write(&memo);
    Ok(())
}

/// Where the compressed bytes go besides a streamed upload: the store, or only a hasher for their digest.
enum Dest {
    Store(oci::store::BlobWriter),
    Digest(oci::HashingWriter<std::io::Sink>),
}

impl Write for Dest {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        match self {
            Dest::Store(w) => w.write(buf),
            Dest::Digest(w) => w.write(buf),
        }
    }

    fn flush(&mut self) -> std::io::Result<()> {
        match self {
            Dest::Store(w) => w.flush(),
            Dest::Digest(w) => w.flush(),
        }
    }
}

/// The compressed blob of the uncompressed layer `src`: made once, then found by its memo. With
/// [`Keep::DigestOnly`] and a streamed upload from `tee`, the blob goes to the upload alone and only its digest
/// and size are remembered; a memo is then enough without the blob.
pub(crate) fn compressed(
    store: &Store,
    src: &Digest,
    compression: Compression,
    tee: &mut dyn FnMut() -> Option<ChunkWriter>,
    keep: Keep,
) -> Result<(Digest, u64), ExportError> {
    compressed_unless(store, src, compression, tee, keep, &|_| false)
}

/// [`compressed`], abandoned (nothing stored or remembered, [`ExportError::Stopped`]) as soon as `stop`, asked
/// with the uncompressed bytes read so far every few MiB, says so: how a compression begun ahead of an export
/// gives way when the export would rather do it itself.
pub(crate) fn compressed_unless(
    store: &Store,
    src: &Digest,
    compression: Compression,
    tee: &mut dyn FnMut() -> Option<ChunkWriter>,
    keep: Keep,
    stop: &(dyn Fn(u64) -> bool + Sync),
) -> Result<(Digest, u64), ExportError> {
    if compression == Compression::None {
        return Ok((src.clone(), store.blob_size(src)?));
    }
    let memo = Memo::path(store, src, compression);
    std::fs::create_dir_all(memo.parent().unwrap_or(store.root())).map_err(io_err(store))?;
    if let Some(m) = Memo::read(&memo) {
        let held = |d: &Digest| matches!(keep, Keep::DigestOnly(at_target) if at_target(d));
        if store.has(&m.digest) || held(&m.digest) {
            return Ok((m.digest, m.size));
        }
    }
    // A lazy layer (a built image's, see `oci::store`) is rendered straight into the compressor: its
    // uncompressed bytes are never stored.
    let lazy = store.is_lazy(src);
    let mut input = if lazy {
        None
    } else {
        Some(store.open_blob(src)?)
    };
    let mut feed = |w: &mut dyn Write| -> Result<(), ExportError> {
        let mut w = Stoppable::new(w, stop);
        let fed = match input.as_mut() {
            Some(f) => copy(f, &mut w, &mut vec![0u8; 1 << 20]).map_err(io_err(store)),
            None => store
                .render_lazy(src, &mut w)
                .map(|_| ())
                .map_err(ExportError::from),
        };
        match fed {
            Err(_) if w.stopped => Err(ExportError::Stopped),
            other => other,
        }
    };
    // The blob writer hashes and writes on a thread of its own, beside the render and the compressor.
    let extra = tee();
    let dest = match (keep, &extra) {
        (Keep::DigestOnly(_), Some(_)) => Dest::Digest(oci::HashingWriter::new(std::io::sink())),
        _ => Dest::Store(store.writer()?),
    };
    let counted = Tee {
        main: Offloaded::new(dest),
        extra,
    };
    let counted = match compression {
        Compression::Gzip(level) => {
            let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
            let mut gz = crate::pgzip::ParallelGzip::new(counted, level.min(9), threads);
            feed(&mut gz)?;
            gz.finish().map_err(io_err(store))?
        }
        Compression::Zstd(level) => {
            let mut zs =
                zstd::stream::write::Encoder::new(counted, level).map_err(io_err(store))?;
            feed(&mut zs)?;
            zs.finish().map_err(io_err(store))?
        }
        Compression::None => return Ok((src.clone(), store.blob_size(src)?)),
    };
    // The upload is finished as soon as the last byte is made, with the digest hashed beside the compression (it
    // need not hash the same bytes again), while the blob, when kept, is synced into the store. A stopped upload is
    // not an error: the push sends the blob from the store, or (when the store was not given it) makes it again.
    let Tee { main, extra } = counted;
    let finish_upload = |digest: &Digest| {
        if let Some(upload) = extra {
            let _ = upload.finish(digest.clone());
        }
    };
    let made = match main.finish().map_err(io_err(store))? {
        Dest::Store(w) => {
            finish_upload(&w.digest());
            let (digest, size) = w.commit(None)?;
            Memo {
                digest,
                size,
                kept: true,
            }
        }
        Dest::Digest(h) => {
            let (_, digest, size) = h.finish();
            finish_upload(&digest);
            Memo {
                digest,
                size,
                kept: false,
            }
        }
    };
    made.write(&memo);
    Ok((made.digest, made.size))
}

/// Passes writes through, and fails them once `stop` says so (asked every [`STOP_CHECK`] bytes).
pub(crate) struct Stoppable<'a, W: Write> {
    inner: W,
    read: u64,
    next_check: u64,
    stop: &'a (dyn Fn(u64) -> bool + Sync),
    /// Whether a write failed because `stop` said so.
    pub(crate) stopped: bool,
}

impl<'a, W: Write> Stoppable<'a, W> {
    /// Wraps `inner`; `stop` is asked with the bytes written so far.
    pub(crate) fn new(inner: W, stop: &'a (dyn Fn(u64) -> bool + Sync)) -> Self {
        Stoppable {
            inner,
            read: 0,
            next_check: 0,
            stop,
            stopped: false,
        }
    }

    /// The inner writer.
    pub(crate) fn into_inner(self) -> W {
        self.inner
    }
}

/// How often a [`Stoppable`] asks whether to stop.
const STOP_CHECK: u64 = 8 << 20;

impl<W: Write> Write for Stoppable<'_, W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if self.read >= self.next_check {
            self.next_check = self.read + STOP_CHECK;
            if (self.stop)(self.read) {
                self.stopped = true;
                return Err(std::io::Error::other("the compression was stopped"));
            }
        }
        let n = self.inner.write(buf)?;
        self.read += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

/// Writes to the store and, while it accepts, to a second writer (a streamed upload); the second one failing
/// never fails the first.
struct Tee<W: Write> {
    main: W,
    extra: Option<ChunkWriter>,
}

impl<W: Write> Write for Tee<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.main.write(buf)?;
        if let Some(e) = &mut self.extra {
            if e.write_all(&buf[..n]).is_err() {
                self.extra = None;
            }
        }
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.main.flush()
    }
}

fn copy(r: &mut impl Read, w: &mut (impl Write + ?Sized), buf: &mut [u8]) -> std::io::Result<()> {
    loop {
        let n = r.read(buf)?;
        if n == 0 {
            return Ok(());
        }
        w.write_all(&buf[..n])?;
    }
}

/// The manifest to push for the image `manifest` of the store: the same one when its layers already carry a
/// compression, else a manifest (same config, same diffIDs) whose uncompressed layers are compressed with
/// `compression`, in the media-type vocabulary (OCI or Docker) of the original.
pub fn compressed_manifest(
    store: &Store,
    manifest: &Digest,
    compression: Compression,
) -> Result<Digest, ExportError> {
    compressed_manifest_teeing(store, manifest, compression, &mut || None, Keep::Blob)
}

/// As [`compressed_manifest`], and every layer compressed now (not found in the memo) is also written, as it is
/// made, to the writer `tee` returns for it — how a push sends a layer while compressing it. With
/// [`Keep::DigestOnly`] such a layer is not stored: the manifest may then name blobs the store lacks, each either
/// streamed to the target or held there already.
pub fn compressed_manifest_teeing(
    store: &Store,
    manifest: &Digest,
    compression: Compression,
    tee: &mut dyn FnMut() -> Option<ChunkWriter>,
    keep: Keep,
) -> Result<Digest, ExportError> {
    if let oci::store::Stored::Index(mut index) = store.manifest_kind(manifest)? {
        // A multi-platform image: each platform's manifest converted, then an index of the converted ones.
        // Attestation manifests (their layers are statements, not tars) are made again about the converted
        // images they name, after those.
        let mut changed = false;
        let mut moved: Vec<(Digest, oci::manifest::Descriptor)> = Vec::new();
        for entry in &mut index.manifests {
            if crate::attestation::is_attestation(entry) {
                continue;
            }
            let converted =
                compressed_manifest_teeing(store, &entry.digest, compression, tee, keep)?;
            if converted != entry.digest {
                let old = entry.digest.clone();
                entry.size = store.blob_size(&converted)?;
                entry.digest = converted;
                moved.push((old, entry.clone()));
                changed = true;
            }
        }
        for entry in &mut index.manifests {
            let about = entry
                .annotations
                .get(crate::attestation::ANNOTATION_REFERENCE_DIGEST)
                .cloned();
            let target = moved
                .iter()
                .find(|(old, _)| Some(old.to_string()) == about)
                .map(|(_, new)| new);
            if let (true, Some(target)) = (crate::attestation::is_attestation(entry), target) {
                let mut target = target.clone();
                target.platform = None;
                target.annotations.clear();
                *entry = crate::attestation::retarget(store, entry, &target)?;
            }
        }
        if !changed {
            return Ok(manifest.clone());
        }
        let bytes = serde_json::to_vec(&index).map_err(|e| ExportError::Io {
            path: store.root().to_path_buf(),
            source: std::io::Error::other(e),
        })?;
        return Ok(store.put_bytes(&bytes)?);
    }
    let mut m: Manifest = store.read_json(manifest)?;
    let oci = m.media_type.as_deref() != Some(MEDIA_DOCKER_MANIFEST);
    let target = match compression {
        Compression::Gzip(_) => LayerCompression::Gzip,
        Compression::Zstd(_) => LayerCompression::Zstd,
        Compression::None => return Ok(manifest.clone()),
    };
    let mut changed = false;
    for l in &mut m.layers {
        if LayerCompression::of_media_type(&l.media_type) != Some(LayerCompression::None) {
            continue;
        }
        let (d, size) = compressed(store, &l.digest, compression, tee, keep)?;
        l.digest = d;
        l.size = size;
        l.media_type = target.media_type(oci).to_string();
        changed = true;
    }
    if !changed {
        return Ok(manifest.clone());
    }
    if target == LayerCompression::Zstd && !oci {
        m.media_type = Some(oci::manifest::MEDIA_MANIFEST.to_string());
        m.config.media_type = oci::manifest::MEDIA_CONFIG.to_string();
    }
    let bytes = serde_json::to_vec(&m).map_err(|e| ExportError::Io {
        path: store.root().to_path_buf(),
        source: std::io::Error::other(e),
    })?;
    Ok(store.put_bytes(&bytes)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use oci::manifest::{
        Descriptor, MEDIA_CONFIG, MEDIA_LAYER_GZIP, MEDIA_LAYER_TAR, MEDIA_MANIFEST,
    };

    /// A store holding an image of one uncompressed 3 MB layer: the layer's bytes and the manifest's digest.
    fn one_layer_image(store: &Store) -> (Vec<u8>, Digest) {
        let layer: Vec<u8> = (0..3_000_000u32).map(|i| (i % 251) as u8).collect();
        let ld = store.put_bytes(&layer).unwrap();
        let cd = store.put_bytes(b"{}").unwrap();
        let m = Manifest {
            schema_version: 2,
            media_type: Some(MEDIA_MANIFEST.into()),
            config: Descriptor::new(MEDIA_CONFIG, cd, 2),
            layers: vec![Descriptor::new(MEDIA_LAYER_TAR, ld, layer.len() as u64)],
            annotations: Default::default(),
        };
        let md = store.put_bytes(&serde_json::to_vec(&m).unwrap()).unwrap();
        (layer, md)
    }

    #[test]
    fn a_layer_streamed_to_one_target_leaves_its_memo_only_and_is_made_again_the_same() {
        let root = tempfile::tempdir().unwrap();
        let store = Store::open(root.path()).unwrap();
        let (layer, md) = one_layer_image(&store);
        // An upload whose receiving end is gone at once: the stream stops, as a failed upload's would.
        let (w, chunks) = ChunkWriter::channel();
        drop(chunks);
        let mut w = Some(w);
        let nowhere = |_: &Digest| false;
        let a = compressed_manifest_teeing(
            &store,
            &md,
            Compression::Gzip(6),
            &mut || w.take(),
            Keep::DigestOnly(&nowhere),
        )
        .unwrap();
        let pushed: Manifest = store.read_json(&a).unwrap();
        let ld = pushed.layers[0].digest.clone();
        assert!(
            !store.has(&ld),
            "the store does not keep a layer made for a stream"
        );

        // The memo alone serves when the target holds the layer: nothing is compressed or streamed.
        let held = |d: &Digest| *d == ld;
        let mut streams = 0;
        let b = compressed_manifest_teeing(
            &store,
            &md,
            Compression::Gzip(6),
            &mut || {
                streams += 1;
                None
            },
            Keep::DigestOnly(&held),
        )
        .unwrap();
        assert_eq!((b.clone(), streams), (a.clone(), 0));

        // Needed here (an export, or a target that lacks it): made again into the store, the same blob.
        let c = compressed_manifest(&store, &md, Compression::Gzip(6)).unwrap();
        assert_eq!(c, a);
        assert!(store.has(&ld));
        let mut back = Vec::new();
        flate2::read::MultiGzDecoder::new(store.open_blob(&ld).unwrap())
            .read_to_end(&mut back)
            .unwrap();
        assert_eq!(back, layer);
    }

    #[test]
    fn uncompressed_layers_are_compressed_once_and_the_result_is_stable() {
        let root = tempfile::tempdir().unwrap();
        let store = Store::open(root.path()).unwrap();
        let (layer, md) = one_layer_image(&store);
        let a = compressed_manifest(&store, &md, Compression::Gzip(6)).unwrap();
        assert_ne!(a, md);
        let pushed: Manifest = store.read_json(&a).unwrap();
        assert_eq!(pushed.layers[0].media_type, MEDIA_LAYER_GZIP);
        assert!(pushed.layers[0].size < layer.len() as u64 / 10);
        let mut back = Vec::new();
        flate2::read::MultiGzDecoder::new(store.open_blob(&pushed.layers[0].digest).unwrap())
            .read_to_end(&mut back)
            .unwrap();
        assert_eq!(back, layer);
        // Same bytes the second time, from the memo, and a compressed manifest is left as it is.
        assert_eq!(
            compressed_manifest(&store, &md, Compression::Gzip(6)).unwrap(),
            a
        );
        assert_eq!(
            compressed_manifest(&store, &a, Compression::Gzip(6)).unwrap(),
            a
        );
        assert_eq!(
            compressed_manifest(&store, &md, Compression::None).unwrap(),
            md
        );
    }
}
