//! Image archives: images of the store written as an OCI layout directory (`oci-layout`, `index.json`, `blobs/`),
//! as a tar of one (`-o type=oci`, `kiln save`), or as a docker archive (`-o type=docker`, `kiln save --format
//! docker`) — an OCI layout tar that also carries Docker's `manifest.json`, as BuildKit and Docker 25 write it, so
//! `docker load`, `podman load`, skopeo, umoci and containerd all read it.

use std::collections::BTreeSet;
use std::io::Write;
use std::path::{Path, PathBuf};

use oci::manifest::{Descriptor, Index, Manifest, MEDIA_INDEX};
use oci::store::{Store, Stored};
use serde_json::json;

use crate::ExportError;

/// One image to put in an archive: its manifest and the names it is given there.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tagged {
    /// The image's manifest, in the store.
    pub manifest: Descriptor,
    /// Full references (`docker.io/library/app:1`); may be empty.
    pub names: Vec<String>,
}

/// Which kind of archive to write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ArchiveFormat {
    /// An OCI image layout.
    Oci,
    /// An OCI image layout plus Docker's `manifest.json`.
    Docker,
}

fn io(path: &Path) -> impl Fn(std::io::Error) -> ExportError + '_ {
    move |source| ExportError::Io {
        path: path.to_path_buf(),
        source,
    }
}

fn json_bytes(v: &impl serde::Serialize) -> Result<Vec<u8>, ExportError> {
    serde_json::to_vec(v).map_err(|e| ExportError::Io {
        path: PathBuf::from("<archive index>"),
        source: std::io::Error::other(e),
    })
}

/// The blobs of one image in the order an archive holds them: its layers, its config, then its manifest (an
/// index's images one after the other, then the index), possibly with repeats. Blobs come before what names them,
/// so an archive can be written while its layers are still being made.
fn blobs_of(store: &Store, manifest: &Descriptor) -> Result<Vec<Descriptor>, ExportError> {
    if let Stored::Index(index) = store.manifest_kind(&manifest.digest)? {
        let mut out = Vec::new();
        for m in &index.manifests {
            out.extend(blobs_of(store, m)?);
        }
        out.push(manifest.clone());
        return Ok(out);
    }
    let m: Manifest = store.read_json(&manifest.digest)?;
    let mut out = m.layers;
    out.push(m.config.clone());
    out.push(manifest.clone());
    Ok(out)
}

/// `index.json`: one entry per (image, name); an unnamed image gets one entry without a name.
fn index_json(images: &[Tagged]) -> Result<Vec<u8>, ExportError> {
    let mut manifests = Vec::new();
    for t in images {
        if t.names.is_empty() {
            manifests.push(t.manifest.clone());
        }
        for n in &t.names {
            let mut d = t.manifest.clone();
            d.annotations
                .insert("io.containerd.image.name".to_string(), n.clone());
            d.annotations.insert(
                "org.opencontainers.image.ref.name".to_string(),
                oci_ref_name(n).to_string(),
            );
            manifests.push(d);
        }
    }
    json_bytes(&Index {
        schema_version: 2,
        media_type: Some(MEDIA_INDEX.to_string()),
        manifests,
        annotations: Default::default(),
    })
}

/// The OCI `ref.name` of an image name: its tag or digest without the repository (`docker.io/org/repo:tag1` →
/// `tag1`, `…/repo@sha256:…` → `@sha256:…`), as containerd's archive exporter, and so BuildKit, writes it. The
/// full name is in `io.containerd.image.name`.
pub fn oci_ref_name(name: &str) -> &str {
    let Some(slash) = name.find('/') else {
        return name;
    };
    let path = &name[slash..];
    match path.find([':', '@']) {
        Some(i) if path.as_bytes()[i] == b':' => &path[i + 1..],
        Some(i) => &path[i..],
        None => "",
    }
}

/// The short form Docker shows and writes in `RepoTags` (`docker.io/library/app:1` → `app:1`).
pub fn familiar_name(name: &str) -> &str {
    name.strip_prefix("docker.io/library/")
        .or_else(|| name.strip_prefix("docker.io/"))
        .unwrap_or(name)
}

/// Docker's `manifest.json`: per image its config, tags and layers as paths inside the archive.
fn docker_manifest_json(store: &Store, images: &[Tagged]) -> Result<Vec<u8>, ExportError> {
    let mut entries = Vec::new();
    for t in images {
        if let Stored::Index(_) = store.manifest_kind(&t.manifest.digest)? {
            // Docker's manifest.json lists one config per image; BuildKit refuses the same way.
            return Err(ExportError::Unsupported(
                "a docker archive holds one platform per image: export a multi-platform build with \
                 -o type=oci (or build one platform with --platform)"
                    .to_string(),
            ));
        }
        let m: Manifest = store.read_json(&t.manifest.digest)?;
        let tags: Vec<&str> = t.names.iter().map(|n| familiar_name(n)).collect();
        entries.push(json!({
            "Config": blob_name(&m.config.digest),
            "RepoTags": tags,
            "Layers": m.layers.iter().map(|l| blob_name(&l.digest)).collect::<Vec<_>>(),
        }));
    }
    json_bytes(&entries)
}

fn all_blobs(store: &Store, images: &[Tagged]) -> Result<Vec<Descriptor>, ExportError> {
    let mut seen = BTreeSet::new();
    let mut out = Vec::new();
    for t in images {
        for b in blobs_of(store, &t.manifest)? {
            if seen.insert(b.digest.clone()) {
                out.push(b);
            }
        }
    }
    Ok(out)
}

/// Where an archive is written. Any writer will do; a file being written (`EagerFile`) takes each blob by an
/// in-kernel copy from the store instead of through this process, which for a layer of hundreds of MiB is most
/// of what writing the archive costs, and lets an export write a layer into the archive as it is compressed
/// ([`ArchiveStream::new_blob`]) instead of into the store first.
pub trait ArchiveOut: Write {
    /// Appends exactly `len` bytes of `blob` (a blob that changed size under the copy is an error: its header
    /// already promised `len`).
    fn append_blob(&mut self, blob: &mut std::fs::File, len: u64) -> std::io::Result<()> {
        oci::writeback::copy_through(blob, self, len)
    }

    /// Whether bytes already written can be overwritten ([`ArchiveOut::rewrite_at`]): a tar header holds its
    /// entry's size, which a blob being compressed does not know until its end.
    fn can_rewrite(&self) -> bool {
        false
    }

    /// Overwrites `buf.len()` bytes written earlier at `offset`; only called when [`ArchiveOut::can_rewrite`].
    fn rewrite_at(&mut self, _offset: u64, _buf: &[u8]) -> std::io::Result<()> {
        Err(std::io::Error::new(
            std::io::ErrorKind::Unsupported,
            "this output cannot go back to what it wrote",
        ))
    }

    /// A writer carrying on at this output's end that another thread can own, so a layer's bytes are written
    /// beside the work that makes them (`None`: they are written on the making thread). Nothing is written here
    /// until it comes back through [`ArchiveOut::rejoin`].
    fn split_off(&mut self) -> Option<oci::writeback::EagerFile> {
        None
    }

    /// Takes back a writer [`ArchiveOut::split_off`] gave.
    fn rejoin(&mut self, _aside: oci::writeback::EagerFile) {}
}

impl ArchiveOut for Vec<u8> {
    fn can_rewrite(&self) -> bool {
        true
    }

    fn rewrite_at(&mut self, offset: u64, buf: &[u8]) -> std::io::Result<()> {
        let at = usize::try_from(offset).map_err(std::io::Error::other)?;
        match self.get_mut(at..at.saturating_add(buf.len())) {
            Some(old) => {
                old.copy_from_slice(buf);
                Ok(())
            }
            None => Err(std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                "rewriting past the end",
            )),
        }
    }
}

impl ArchiveOut for std::fs::File {
    fn can_rewrite(&self) -> bool {
        // A regular file; a pipe or device given as the destination is written straight through.
        self.metadata().is_ok_and(|m| m.is_file())
    }

    fn rewrite_at(&mut self, offset: u64, buf: &[u8]) -> std::io::Result<()> {
        std::os::unix::fs::FileExt::write_all_at(self, buf, offset)
    }
}

impl ArchiveOut for std::io::StdoutLock<'_> {}

impl ArchiveOut for oci::writeback::EagerFile {
    fn append_blob(&mut self, blob: &mut std::fs::File, len: u64) -> std::io::Result<()> {
        self.append_from(blob, len)
    }

    fn can_rewrite(&self) -> bool {
        self.get_ref().can_rewrite()
    }

    fn rewrite_at(&mut self, offset: u64, buf: &[u8]) -> std::io::Result<()> {
        std::os::unix::fs::FileExt::write_all_at(self.get_ref(), buf, offset)
    }

    fn split_off(&mut self) -> Option<oci::writeback::EagerFile> {
        oci::writeback::EagerFile::split_off(self).ok()
    }

    fn rejoin(&mut self, aside: oci::writeback::EagerFile) {
        oci::writeback::EagerFile::rejoin(self, aside)
    }
}

impl<T: ArchiveOut + ?Sized> ArchiveOut for &mut T {
    fn append_blob(&mut self, blob: &mut std::fs::File, len: u64) -> std::io::Result<()> {
        (**self).append_blob(blob, len)
    }

    fn can_rewrite(&self) -> bool {
        (**self).can_rewrite()
    }

    fn rewrite_at(&mut self, offset: u64, buf: &[u8]) -> std::io::Result<()> {
        (**self).rewrite_at(offset, buf)
    }

    fn split_off(&mut self) -> Option<oci::writeback::EagerFile> {
        (**self).split_off()
    }

    fn rejoin(&mut self, aside: oci::writeback::EagerFile) {
        (**self).rejoin(aside)
    }
}

/// A writer counting what goes through it.
struct Counted<'a> {
    out: &'a mut dyn ArchiveOut,
    n: u64,
}

impl Write for Counted<'_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.out.write(buf)?;
        self.n += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.out.flush()
    }
}

/// A blob this small is held in memory until it ends, then written with its header; a larger one gets a
/// placeholder header that is filled in at its end.
const HOLD: usize = 1 << 20;

/// An image archive being written: the blobs, each once, in the order [`blobs_of`] gives, then `oci-layout`,
/// `index.json` and (a docker archive) `manifest.json` — the order containerd and BuildKit write, which lets an
/// export put each layer into the archive as it compresses it, without a copy in the store first. Entries have
/// zero times, so the same images give the same bytes however the layers got there.
pub struct ArchiveStream<'a> {
    out: &'a mut dyn ArchiveOut,
    /// Whether `out` can go back to fill in a header (asked once: it does not change while writing).
    rewrites: bool,
    pos: u64,
    written: BTreeSet<oci::Digest>,
}

impl<'a> ArchiveStream<'a> {
    /// Starts an archive at the start of `out`.
    pub fn new(out: &'a mut dyn ArchiveOut) -> ArchiveStream<'a> {
        ArchiveStream {
            rewrites: out.can_rewrite(),
            out,
            pos: 0,
            written: BTreeSet::new(),
        }
    }

    /// Whether a blob can be written as it is made ([`ArchiveStream::new_blob`]): the output can go back to fill
    /// in its header. Otherwise (stdout, a pipe) a new blob goes into the store and is copied from there.
    pub fn streams(&self) -> bool {
        self.rewrites
    }

    fn put(&mut self, bytes: &[u8]) -> Result<(), ExportError> {
        self.out
            .write_all(bytes)
            .map_err(io(Path::new("<archive>")))?;
        self.pos += bytes.len() as u64;
        Ok(())
    }

    fn pad(&mut self, size: u64) -> Result<(), ExportError> {
        let pad = (512 - size % 512) % 512;
        self.put(&[0u8; 512][..pad as usize])
    }

    /// Appends blob `d` of the store unless the archive has it already. A lazy layer is rendered straight into
    /// the archive where the output allows (instead of into the store, then copied).
    pub fn append_stored(&mut self, store: &Store, d: &oci::Digest) -> Result<(), ExportError> {
        if self.written.contains(d) {
            return Ok(());
        }
        if self.streams() && store.is_lazy(d) {
            let mut blob = self.new_blob();
            store.render_lazy(d, &mut blob)?;
            blob.finish()?;
            return Ok(());
        }
        if store.is_lazy(d) {
            // An output that cannot go back (a pipe, stdout, an engine's socket): the lazy blob's size is known
            // beforehand, so it is rendered straight after its header, never written into the store first.
            let size = store.blob_size(d)?;
            self.put(entry_header(&blob_name(d), size)?.as_bytes())?;
            let mut counted = Counted {
                out: &mut *self.out,
                n: 0,
            };
            store.render_lazy(d, &mut counted)?;
            if counted.n != size {
                return Err(ExportError::Io {
                    path: store.blob_path(d),
                    source: std::io::Error::other(format!(
                        "the layer rendered {} bytes, not the {size} it was recorded with",
                        counted.n
                    )),
                });
            }
            self.pos += size;
            self.pad(size)?;
            self.written.insert(d.clone());
            return Ok(());
        }
        let path = store.blob_path(d);
        let mut f = store.open_blob(d)?;
        let size = f.metadata().map_err(io(&path))?.len();
        // The header here, the data by the output itself: a file takes the blob by an in-kernel copy.
        self.put(entry_header(&blob_name(d), size)?.as_bytes())?;
        self.out.append_blob(&mut f, size).map_err(io(&path))?;
        self.pos += size;
        self.pad(size)?;
        self.written.insert(d.clone());
        Ok(())
    }

    /// A blob to write as it is made: its name and size go into its header when it ends.
    pub fn new_blob(&mut self) -> NewBlob<'_, 'a> {
        NewBlob {
            archive: self,
            held: Vec::new(),
            header_at: None,
            aside: None,
            hash: oci::Offloaded::new(oci::HashingWriter::new(std::io::sink())),
        }
    }

    fn add_file(&mut self, path: &str, data: &[u8]) -> Result<(), ExportError> {
        self.put(entry_header(path, data.len() as u64)?.as_bytes())?;
        self.put(data)?;
        self.pad(data.len() as u64)
    }

    /// Appends every blob of `images` not written yet, then the layout's JSON files and the tar's end.
    pub fn finish(
        mut self,
        store: &Store,
        images: &[Tagged],
        format: ArchiveFormat,
    ) -> Result<(), ExportError> {
        for b in all_blobs(store, images)? {
            self.append_stored(store, &b.digest)?;
        }
        self.add_file("oci-layout", OCI_LAYOUT)?;
        self.add_file("index.json", &index_json(images)?)?;
        if format == ArchiveFormat::Docker {
            self.add_file("manifest.json", &docker_manifest_json(store, images)?)?;
        }
        self.put(&[0u8; 1024])?;
        self.out.flush().map_err(io(Path::new("<archive>")))
    }
}

/// A blob being written into an archive as it is made (a layer coming out of its compressor), hashed on a thread
/// of its own on the way.
pub struct NewBlob<'s, 'a> {
    archive: &'s mut ArchiveStream<'a>,
    held: Vec<u8>,
    header_at: Option<u64>,
    /// The output's writer on a thread of its own, once the blob is past [`HOLD`] (where the output has one).
    aside: Option<oci::Offloaded<oci::writeback::EagerFile>>,
    hash: oci::Offloaded<oci::HashingWriter<std::io::Sink>>,
}

impl NewBlob<'_, '_> {
    /// Ends the blob and gives its digest and size.
    pub fn finish(self) -> Result<(oci::Digest, u64), ExportError> {
        let NewBlob {
            archive,
            held,
            header_at,
            aside,
            hash,
        } = self;
        let archive_io = io(Path::new("<archive>"));
        if let Some(aside) = aside {
            archive.out.rejoin(aside.finish().map_err(&archive_io)?);
        }
        let (_, d, size) = hash.finish().map_err(&archive_io)?.finish();
        match header_at {
            None => {
                if !archive.written.contains(&d) {
                    archive.put(entry_header(&blob_name(&d), size)?.as_bytes())?;
                    archive.put(&held)?;
                    archive.pad(size)?;
                    archive.written.insert(d.clone());
                }
            }
            Some(at) => {
                // Two snapshots with the same large content would leave the second copy in the archive as a
                // repeated entry under the same name: harmless to every reader, which keeps the last.
                let header = entry_header(&blob_name(&d), size)?;
                archive
                    .out
                    .rewrite_at(at, header.as_bytes())
                    .map_err(&archive_io)?;
                archive.pad(size)?;
                archive.written.insert(d.clone());
            }
        }
        Ok((d, size))
    }
}

impl Write for NewBlob<'_, '_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.hash.write_all(buf)?;
        if self.header_at.is_some() {
            match &mut self.aside {
                Some(aside) => aside.write_all(buf)?,
                None => self.archive.out.write_all(buf)?,
            }
            self.archive.pos += buf.len() as u64;
            return Ok(buf.len());
        }
        self.held.extend_from_slice(buf);
        if self.held.len() >= HOLD {
            self.header_at = Some(self.archive.pos);
            let held = std::mem::take(&mut self.held);
            for part in [&[0u8; 512][..], &held] {
                self.archive.out.write_all(part)?;
                self.archive.pos += part.len() as u64;
            }
            self.aside = self.archive.out.split_off().map(oci::Offloaded::new);
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn blob_name(d: &oci::Digest) -> String {
    format!("blobs/sha256/{}", d.hex())
}

/// A regular file's ustar header: mode 0644, owner 0, time 0.
fn entry_header(path: &str, size: u64) -> Result<tar::Header, ExportError> {
    let mut h = tar::Header::new_ustar();
    h.set_mode(0o644);
    h.set_mtime(0);
    h.set_size(size);
    h.set_entry_type(tar::EntryType::Regular);
    h.set_path(path).map_err(io(Path::new("<archive>")))?;
    h.set_cksum();
    Ok(h)
}

const OCI_LAYOUT: &[u8] = br#"{"imageLayoutVersion":"1.0.0"}"#;

/// Writes images as an OCI layout directory at `dir`.
pub fn write_layout_dir(store: &Store, images: &[Tagged], dir: &Path) -> Result<(), ExportError> {
    let blobs_dir = dir.join("blobs/sha256");
    std::fs::create_dir_all(&blobs_dir).map_err(io(&blobs_dir))?;
    for b in all_blobs(store, images)? {
        let dest = blobs_dir.join(b.digest.hex());
        if !dest.exists() {
            store.materialize(&b.digest)?;
            std::fs::copy(store.blob_path(&b.digest), &dest).map_err(io(&dest))?;
        }
    }
    let layout = dir.join("oci-layout");
    std::fs::write(&layout, OCI_LAYOUT).map_err(io(&layout))?;
    let index = dir.join("index.json");
    std::fs::write(&index, index_json(images)?).map_err(io(&index))
}

/// Writes images as an archive to `out` (see [`ArchiveStream`] for its order).
pub fn write_archive<W: ArchiveOut>(
    store: &Store,
    images: &[Tagged],
    format: ArchiveFormat,
    mut out: W,
) -> Result<W, ExportError> {
    ArchiveStream::new(&mut out).finish(store, images, format)?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{export_image, Compression, ExportOptions, LayerSource};

    fn image_in(store: &Store, file: &str) -> Descriptor {
        // A snapshot lives as long as the store (the image's layer is lazy: rendered from it when read).
        let snap = store.root().join("snapshots").join(file);
        std::fs::create_dir_all(&snap).unwrap();
        std::fs::write(snap.join(file), file).unwrap();
        let layers = vec![LayerSource {
            id: file.to_string(),
            diff: snap,
            unpacked_from: None,
            created: None,
        }];
        let image = oci::Image {
            architecture: "amd64".into(),
            os: "linux".into(),
            ..Default::default()
        };
        export_image(
            store,
            &layers,
            image,
            &ExportOptions::new(Compression::None, Some(0)),
            &[],
        )
        .unwrap()
        .manifest
    }

    #[test]
    fn the_oci_ref_name_is_the_tag_or_digest_alone() {
        assert_eq!(oci_ref_name("docker.io/org/repo:tag1"), "tag1");
        assert_eq!(oci_ref_name("localhost:5000/repo:2"), "2");
        assert_eq!(oci_ref_name("docker.io/org/repo@sha256:abc"), "@sha256:abc");
        assert_eq!(oci_ref_name("docker.io/org/repo"), "");
    }

    fn entries(bytes: &[u8]) -> Vec<(String, Vec<u8>)> {
        let mut ar = tar::Archive::new(bytes);
        ar.entries()
            .unwrap()
            .map(|e| {
                let mut e = e.unwrap();
                let p = e.path().unwrap().display().to_string();
                let mut v = Vec::new();
                std::io::Read::read_to_end(&mut e, &mut v).unwrap();
                (p, v)
            })
            .collect()
    }

    #[test]
    fn docker_archive_lists_every_image_with_short_tags_and_shared_blobs_once() {
        let root = tempfile::tempdir().unwrap();
        let store = Store::open(root.path()).unwrap();
        let a = image_in(&store, "a");
        let b = image_in(&store, "b");
        let images = vec![
            Tagged {
                manifest: a.clone(),
                names: vec![
                    "docker.io/library/app:1".into(),
                    "reg.example:5000/x/app:2".into(),
                ],
            },
            Tagged {
                manifest: b,
                names: vec![],
            },
        ];
        let bytes = write_archive(&store, &images, ArchiveFormat::Docker, Vec::new()).unwrap();
        let again = write_archive(&store, &images, ArchiveFormat::Docker, Vec::new()).unwrap();
        assert_eq!(bytes, again, "the same images give the same bytes");
        let files = entries(&bytes);
        let names: Vec<&str> = files.iter().map(|(p, _)| p.as_str()).collect();
        let n = names.len();
        assert_eq!(
            &names[n - 3..],
            ["oci-layout", "index.json", "manifest.json"],
            "the JSON files after the blobs"
        );
        let blob_names: BTreeSet<&str> = names[..n - 3].iter().copied().collect();
        assert_eq!(blob_names.len(), n - 3, "each blob once");
        let manifest: serde_json::Value = serde_json::from_slice(&files[n - 1].1).unwrap();
        assert_eq!(
            manifest[0]["RepoTags"],
            json!(["app:1", "reg.example:5000/x/app:2"])
        );
        assert_eq!(manifest[1]["RepoTags"], json!([]));
        let layer = manifest[0]["Layers"][0].as_str().unwrap();
        assert_eq!(names[0], layer, "an image's layers first");
        assert_eq!(
            names[1..3],
            [
                manifest[0]["Config"].as_str().unwrap(),
                format!("blobs/sha256/{}", a.digest.hex()).as_str()
            ],
            "then its config and manifest"
        );
        let index: Index = serde_json::from_slice(&files[n - 2].1).unwrap();
        assert_eq!(index.manifests.len(), 3, "two names for a, one unnamed b");
        assert_eq!(index.manifests[0].digest, a.digest);
    }

    /// An output that cannot go back (as stdout cannot).
    struct Forward(Vec<u8>);

    impl Write for Forward {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.write(buf)
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    impl ArchiveOut for Forward {}

    /// Three snapshots: 3 MiB that gzip cannot shrink (past what a new blob holds back), a small file, nothing.
    fn three_layers(root: &Path) -> Vec<LayerSource> {
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        let noise: Vec<u8> = (0..3 << 20)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect();
        let files: [&[(&str, &[u8])]; 3] = [&[("big", &noise)], &[("small", b"small")], &[]];
        files
            .iter()
            .enumerate()
            .map(|(i, files)| {
                let dir = root.join(format!("snapshots/{i}"));
                std::fs::create_dir_all(&dir).unwrap();
                for (name, data) in files.iter() {
                    std::fs::write(dir.join(name), data).unwrap();
                }
                LayerSource {
                    id: format!("s{i}"),
                    diff: dir,
                    unpacked_from: None,
                    created: None,
                }
            })
            .collect()
    }

    fn exported_into(
        store: &Store,
        layers: &[LayerSource],
        out: &mut dyn ArchiveOut,
    ) -> Descriptor {
        let image = oci::Image {
            architecture: "amd64".into(),
            os: "linux".into(),
            ..Default::default()
        };
        let options = ExportOptions::new(Compression::Gzip(6), Some(0));
        let mut archive = ArchiveStream::new(out);
        let made = crate::export_image_into(store, layers, image, &options, &mut archive).unwrap();
        let tagged = [Tagged {
            manifest: made.manifest.clone(),
            names: vec!["app:1".into()],
        }];
        archive
            .finish(store, &tagged, ArchiveFormat::Docker)
            .unwrap();
        made.manifest
    }

    #[test]
    fn layers_compressed_into_an_archive_are_written_there_only_and_give_the_same_archive() {
        let root = tempfile::tempdir().unwrap();
        let store = Store::open(&root.path().join("store")).unwrap();
        let layers = three_layers(root.path());
        let mut streamed = Vec::new();
        let manifest = exported_into(&store, &layers, &mut streamed);
        let m: Manifest = store.read_json(&manifest.digest).unwrap();
        assert_eq!(
            m.layers.len(),
            3,
            "a step that changed nothing keeps its (empty) layer"
        );
        assert!(
            m.layers[0].size > HOLD as u64,
            "the big layer was written before its size was known"
        );
        for l in &m.layers {
            assert!(!store.has(&l.digest), "{} was not stored", l.digest);
        }
        let files = entries(&streamed);
        let names: Vec<&str> = files.iter().map(|(p, _)| p.as_str()).collect();
        let want: Vec<String> = m
            .layers
            .iter()
            .chain([&m.config, &manifest])
            .map(|d| format!("blobs/sha256/{}", d.digest.hex()))
            .collect();
        assert_eq!(
            names[..5],
            want.iter().map(String::as_str).collect::<Vec<_>>()[..]
        );
        for (path, data) in &files[..5] {
            assert_eq!(
                format!("blobs/sha256/{}", oci::Digest::sha256_of(data).hex()),
                *path,
                "an entry's bytes match its name"
            );
        }

        // Into a file: the placeholder header filled in where it was written.
        let out = tempfile::tempdir().unwrap();
        let path = out.path().join("a.tar");
        let mut file = oci::writeback::EagerFile::new(std::fs::File::create(&path).unwrap());
        assert_eq!(exported_into(&store, &layers, &mut file), manifest);
        assert!(!store.has(&m.layers[0].digest));
        assert_eq!(std::fs::read(&path).unwrap(), streamed);

        // Through an output that cannot go back, the layers are stored first and copied: the same bytes, and the
        // same as the archive of the stored image.
        let mut forward = Forward(Vec::new());
        assert_eq!(exported_into(&store, &layers, &mut forward), manifest);
        assert!(m.layers.iter().all(|l| store.has(&l.digest)));
        assert_eq!(forward.0, streamed);
        let tagged = [Tagged {
            manifest,
            names: vec!["app:1".into()],
        }];
        let saved = write_archive(&store, &tagged, ArchiveFormat::Docker, Vec::new()).unwrap();
        assert_eq!(saved, streamed);
    }

    #[test]
    fn a_file_copied_into_by_the_kernel_holds_the_same_archive_as_a_buffer() {
        let root = tempfile::tempdir().unwrap();
        let store = Store::open(root.path()).unwrap();
        let images = vec![
            Tagged {
                manifest: image_in(&store, "a"),
                names: vec!["app:1".into()],
            },
            Tagged {
                manifest: image_in(&store, "bb"),
                names: vec![],
            },
        ];
        let bytes = write_archive(&store, &images, ArchiveFormat::Docker, Vec::new()).unwrap();
        let out = tempfile::tempdir().unwrap();
        let path = out.path().join("a.tar");
        let file = oci::writeback::EagerFile::new(std::fs::File::create(&path).unwrap());
        write_archive(&store, &images, ArchiveFormat::Docker, file).unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), bytes);
    }

    #[test]
    fn oci_archive_has_no_docker_manifest_and_dir_matches_tar() {
        let root = tempfile::tempdir().unwrap();
        let store = Store::open(root.path()).unwrap();
        let a = image_in(&store, "a");
        let images = vec![Tagged {
            manifest: a,
            names: vec!["app:1".into()],
        }];
        let bytes = write_archive(&store, &images, ArchiveFormat::Oci, Vec::new()).unwrap();
        let files = entries(&bytes);
        assert!(files.iter().all(|(p, _)| p != "manifest.json"));
        let dir = tempfile::tempdir().unwrap();
        write_layout_dir(&store, &images, dir.path()).unwrap();
        for (p, data) in files {
            assert_eq!(std::fs::read(dir.path().join(&p)).unwrap(), data, "{p}");
        }
    }
}
