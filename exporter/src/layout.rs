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

/// The blobs of one image, manifest first (an index first, then each of its images'), possibly with repeats.
fn blobs_of(store: &Store, manifest: &Descriptor) -> Result<Vec<Descriptor>, ExportError> {
    if let Stored::Index(index) = store.manifest_kind(&manifest.digest)? {
        let mut out = vec![manifest.clone()];
        for m in &index.manifests {
            out.extend(blobs_of(store, m)?);
        }
        return Ok(out);
    }
    let m: Manifest = store.read_json(&manifest.digest)?;
    let mut out = vec![manifest.clone(), m.config.clone()];
    out.extend(m.layers);
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
            d.annotations
                .insert("org.opencontainers.image.ref.name".to_string(), n.clone());
            manifests.push(d);
        }
    }
    json_bytes(&Index {
        schema_version: 2,
        media_type: Some(MEDIA_INDEX.to_string()),
        manifests,
    })
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
        let path = |d: &oci::Digest| format!("blobs/sha256/{}", d.hex());
        let tags: Vec<&str> = t.names.iter().map(|n| familiar_name(n)).collect();
        entries.push(json!({
            "Config": path(&m.config.digest),
            "RepoTags": tags,
            "Layers": m.layers.iter().map(|l| path(&l.digest)).collect::<Vec<_>>(),
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
/// of what writing the archive costs.
pub trait ArchiveOut: Write {
    /// Appends exactly `len` bytes of `blob` (a blob that changed size under the copy is an error: its header
    /// already promised `len`).
    fn append_blob(&mut self, blob: &mut std::fs::File, len: u64) -> std::io::Result<()> {
        oci::writeback::copy_through(blob, self, len)
    }
}

impl ArchiveOut for Vec<u8> {}
impl ArchiveOut for std::fs::File {}
impl ArchiveOut for std::io::StdoutLock<'_> {}

impl ArchiveOut for oci::writeback::EagerFile {
    fn append_blob(&mut self, blob: &mut std::fs::File, len: u64) -> std::io::Result<()> {
        self.append_from(blob, len)
    }
}

impl<T: ArchiveOut + ?Sized> ArchiveOut for &mut T {
    fn append_blob(&mut self, blob: &mut std::fs::File, len: u64) -> std::io::Result<()> {
        (**self).append_blob(blob, len)
    }
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

/// Writes images as an archive to `out`: the small JSON files first (so a reader can plan before the blobs
/// arrive), then each blob once; entries in a fixed order with zero times, so the same images give the same bytes.
pub fn write_archive<W: ArchiveOut>(
    store: &Store,
    images: &[Tagged],
    format: ArchiveFormat,
    out: W,
) -> Result<W, ExportError> {
    let root = PathBuf::from("<archive>");
    let mut tar = tar::Builder::new(out);
    let add = |tar: &mut tar::Builder<W>,
               path: &str,
               size: u64,
               data: &mut dyn std::io::Read|
     -> Result<(), ExportError> {
        let mut h = tar::Header::new_ustar();
        h.set_mode(0o644);
        h.set_mtime(0);
        h.set_size(size);
        h.set_entry_type(tar::EntryType::Regular);
        tar.append_data(&mut h, path, data).map_err(io(&root))
    };
    add(
        &mut tar,
        "oci-layout",
        OCI_LAYOUT.len() as u64,
        &mut &OCI_LAYOUT[..],
    )?;
    let index = index_json(images)?;
    add(&mut tar, "index.json", index.len() as u64, &mut &index[..])?;
    if format == ArchiveFormat::Docker {
        let manifest = docker_manifest_json(store, images)?;
        add(
            &mut tar,
            "manifest.json",
            manifest.len() as u64,
            &mut &manifest[..],
        )?;
    }
    for b in all_blobs(store, images)? {
        let path = store.blob_path(&b.digest);
        let mut f = store.open_blob(&b.digest)?;
        let size = f.metadata().map_err(io(&path))?.len();
        // The header through the tar writer, the data by the output itself: the tar writer's copy moves 8 KiB per
        // write (45,000 writes for a 370 MB layer); a file takes the blob by an in-kernel copy.
        let mut h = tar::Header::new_ustar();
        h.set_mode(0o644);
        h.set_mtime(0);
        h.set_size(size);
        h.set_entry_type(tar::EntryType::Regular);
        h.set_path(format!("blobs/sha256/{}", b.digest.hex()))
            .map_err(io(&root))?;
        h.set_cksum();
        let out = tar.get_mut();
        out.write_all(h.as_bytes()).map_err(io(&root))?;
        out.append_blob(&mut f, size).map_err(io(&path))?;
        let pad = (512 - size % 512) % 512;
        out.write_all(&[0u8; 512][..pad as usize])
            .map_err(io(&root))?;
    }
    tar.into_inner().map_err(io(&root))
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
        assert_eq!(&names[..3], ["oci-layout", "index.json", "manifest.json"]);
        let blob_names: BTreeSet<&str> = names[3..].iter().copied().collect();
        assert_eq!(blob_names.len(), names.len() - 3, "each blob once");
        let manifest: serde_json::Value = serde_json::from_slice(&files[2].1).unwrap();
        assert_eq!(
            manifest[0]["RepoTags"],
            json!(["app:1", "reg.example:5000/x/app:2"])
        );
        assert_eq!(manifest[1]["RepoTags"], json!([]));
        let layer = manifest[0]["Layers"][0].as_str().unwrap();
        assert!(names.contains(&layer), "{layer} is in the archive");
        let index: Index = serde_json::from_slice(&files[1].1).unwrap();
        assert_eq!(index.manifests.len(), 3, "two names for a, one unnamed b");
        assert_eq!(index.manifests[0].digest, a.digest);
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
