//! Reading image archives into the store (`kiln load`): OCI layout tars, docker archives in both Docker's classic
//! shape (`<id>/layer.tar`, `<hex>.json`, `manifest.json`) and the OCI-layout shape Docker 25 and BuildKit write,
//! gzip-compressed or not. The archive is read once, as a stream: every blob goes through the store's verified
//! ingest, and no path from the archive is ever used as a path on disk, so a hostile archive can name what it likes.

use std::collections::BTreeMap;
use std::io::Read;

use serde::Deserialize;

use crate::manifest::{
    Descriptor, Index, LayerCompression, Manifest, MEDIA_DOCKER_CONFIG, MEDIA_DOCKER_INDEX,
    MEDIA_DOCKER_MANIFEST, MEDIA_INDEX,
};
use crate::store::{Store, StoreError};
use crate::{Digest, Platform};

/// The largest metadata file (index.json, manifest.json, a config) read into memory.
const MAX_METADATA: u64 = 64 << 20;

/// Why an archive could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ArchiveError {
    /// Reading the archive failed.
    #[error("reading the archive: {0}")]
    Read(#[source] std::io::Error),
    /// The store failed (a blob whose bytes do not match its name lands here as a digest mismatch).
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The archive is not one kiln understands.
    #[error("not an image archive: {0}")]
    Malformed(String),
    /// The archive names content it does not hold.
    #[error("the archive refers to {what} {digest}, which it does not contain")]
    Missing {
        /// What was referred to (layer, config, manifest).
        what: &'static str,
        /// Its digest.
        digest: Digest,
    },
}

/// One image the archive held.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoadedImage {
    /// The manifest, now in the store.
    pub manifest: Digest,
    /// Names the archive gives it, as written there (the caller normalises them).
    pub names: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct DockerEntry {
    config: String,
    #[serde(default)]
    repo_tags: Option<Vec<String>>,
    layers: Vec<String>,
}

/// What the pass over the archive collected.
#[derive(Default)]
struct Collected {
    /// `blobs/<alg>/<hex>` and every other regular file, by normalised path: digest and size.
    files: BTreeMap<String, (Digest, u64)>,
    /// Symbolic links inside the archive (classic docker archives link repeated layers).
    links: BTreeMap<String, String>,
    index: Option<Vec<u8>>,
    docker_manifest: Option<Vec<u8>>,
}

fn normalise(path: &str) -> String {
    let mut parts: Vec<&str> = Vec::new();
    for p in path.split('/') {
        match p {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            p => parts.push(p),
        }
    }
    parts.join("/")
}

fn read_small(entry: &mut impl Read, path: &str) -> Result<Vec<u8>, ArchiveError> {
    let mut v = Vec::new();
    entry
        .take(MAX_METADATA + 1)
        .read_to_end(&mut v)
        .map_err(ArchiveError::Read)?;
    if v.len() as u64 > MAX_METADATA {
        return Err(ArchiveError::Malformed(format!(
            "{path} is larger than {MAX_METADATA} bytes"
        )));
    }
    Ok(v)
}

fn collect<R: Read>(store: &Store, input: R) -> Result<Collected, ArchiveError> {
    let mut c = Collected::default();
    let mut ar = tar::Archive::new(input);
    for entry in ar.entries().map_err(ArchiveError::Read)? {
        let mut entry = entry.map_err(ArchiveError::Read)?;
        let raw = String::from_utf8_lossy(&entry.path_bytes()).into_owned();
        let path = normalise(&raw);
        let kind = entry.header().entry_type();
        if kind.is_symlink() || kind.is_hard_link() {
            if let Ok(Some(target)) = entry.link_name() {
                let target = target.to_string_lossy().into_owned();
                let resolved = if kind.is_symlink() && !target.starts_with('/') {
                    let dir = path.rsplit_once('/').map(|(d, _)| d).unwrap_or("");
                    normalise(&format!("{dir}/{target}"))
                } else {
                    normalise(&target)
                };
                c.links.insert(path, resolved);
            }
            continue;
        }
        if !kind.is_file() {
            continue;
        }
        match path.as_str() {
            "index.json" => {
                c.index = Some(read_small(&mut entry, &path)?);
                continue;
            }
            "manifest.json" => {
                c.docker_manifest = Some(read_small(&mut entry, &path)?);
                continue;
            }
            "oci-layout" | "repositories" => continue,
            _ => {}
        }
        // A blob named by its digest is verified against that name; any other file (classic docker layers and
        // configs) is stored under the digest its bytes have.
        let named: Option<Digest> = path
            .strip_prefix("blobs/")
            .map(|rest| rest.replacen('/', ":", 1))
            .and_then(|d| d.parse().ok());
        if let Some(d) = &named {
            if store.has(d) {
                c.files.insert(path, (d.clone(), entry.size()));
                continue;
            }
        }
        let mut w = store.writer()?;
        let size = std::io::copy(&mut entry, &mut w).map_err(ArchiveError::Read)?;
        let (digest, _) = w.commit(named.as_ref())?;
        c.files.insert(path, (digest, size));
    }
    Ok(c)
}

impl Collected {
    fn resolve(&self, path: &str) -> Option<(Digest, u64)> {
        let mut p = normalise(path);
        for _ in 0..16 {
            if let Some(f) = self.files.get(&p) {
                return Some(f.clone());
            }
            p = self.links.get(&p)?.clone();
        }
        None
    }
}

fn check_image(store: &Store, manifest: &Digest) -> Result<(), ArchiveError> {
    if !store.has(manifest) {
        return Err(ArchiveError::Missing {
            what: "manifest",
            digest: manifest.clone(),
        });
    }
    let m: Manifest = store.read_json(manifest)?;
    if !store.has(&m.config.digest) {
        return Err(ArchiveError::Missing {
            what: "config",
            digest: m.config.digest,
        });
    }
    for l in m.layers {
        if !store.has(&l.digest) {
            return Err(ArchiveError::Missing {
                what: "layer",
                digest: l.digest,
            });
        }
    }
    Ok(())
}

/// The manifest of `d` for `platform`: `d` itself, or the matching entry of the index it names.
fn pick_manifest(
    store: &Store,
    d: &Descriptor,
    platform: &Platform,
) -> Result<Digest, ArchiveError> {
    if d.media_type != MEDIA_INDEX && d.media_type != MEDIA_DOCKER_INDEX {
        return Ok(d.digest.clone());
    }
    if !store.has(&d.digest) {
        return Err(ArchiveError::Missing {
            what: "index",
            digest: d.digest.clone(),
        });
    }
    let index: Index = store.read_json(&d.digest)?;
    let chosen = index
        .manifests
        .iter()
        .find(|m| m.platform.as_ref().is_some_and(|p| platform.matches(p)))
        .ok_or_else(|| {
            ArchiveError::Malformed(format!("index {} has no image for {platform}", d.digest))
        })?;
    pick_manifest(store, chosen, platform)
}

fn from_index(
    store: &Store,
    bytes: &[u8],
    platform: &Platform,
) -> Result<Vec<LoadedImage>, ArchiveError> {
    let index: Index = serde_json::from_slice(bytes)
        .map_err(|e| ArchiveError::Malformed(format!("index.json: {e}")))?;
    let mut out: Vec<LoadedImage> = Vec::new();
    for d in &index.manifests {
        let manifest = pick_manifest(store, d, platform)?;
        check_image(store, &manifest)?;
        let name = d
            .annotations
            .get("io.containerd.image.name")
            .or_else(|| d.annotations.get("org.opencontainers.image.ref.name"))
            // A bare tag ("latest") names no repository: the image loads unnamed.
            .filter(|n| n.contains('/') || n.contains(':') && !n.starts_with(':'))
            .cloned();
        match out.iter_mut().find(|i| i.manifest == manifest) {
            Some(i) => i.names.extend(name),
            None => out.push(LoadedImage {
                manifest,
                names: name.into_iter().collect(),
            }),
        }
    }
    Ok(out)
}

fn from_docker_manifest(
    store: &Store,
    c: &Collected,
    bytes: &[u8],
) -> Result<Vec<LoadedImage>, ArchiveError> {
    let entries: Vec<DockerEntry> = serde_json::from_slice(bytes)
        .map_err(|e| ArchiveError::Malformed(format!("manifest.json: {e}")))?;
    let missing = |p: &str| {
        ArchiveError::Malformed(format!(
            "manifest.json names {p}, which the archive does not hold"
        ))
    };
    let mut out = Vec::new();
    for e in entries {
        let (config, config_size) = c.resolve(&e.config).ok_or_else(|| missing(&e.config))?;
        let mut layers = Vec::new();
        for l in &e.layers {
            let (digest, size) = c.resolve(l).ok_or_else(|| missing(l))?;
            let mut head = [0u8; 4];
            let mut f = store.open_blob(&digest)?;
            let n = f.read(&mut head).map_err(ArchiveError::Read)?;
            let media = LayerCompression::sniff(&head[..n]).media_type(false);
            layers.push(Descriptor::new(media, digest, size));
        }
        let manifest = Manifest {
            schema_version: 2,
            media_type: Some(MEDIA_DOCKER_MANIFEST.to_string()),
            config: Descriptor::new(MEDIA_DOCKER_CONFIG, config, config_size),
            layers,
            annotations: Default::default(),
        };
        let bytes =
            serde_json::to_vec(&manifest).map_err(|e| ArchiveError::Malformed(e.to_string()))?;
        let digest = store.put_bytes(&bytes)?;
        out.push(LoadedImage {
            manifest: digest,
            names: e.repo_tags.unwrap_or_default(),
        });
    }
    Ok(out)
}

/// Reads an OCI layout tar or a docker archive (plain or gzip) into `store`, choosing `platform`'s image from
/// multi-platform indexes, and returns the images it held. Names are not set: the caller validates them first.
pub fn load_archive<R: Read>(
    store: &Store,
    input: R,
    platform: &Platform,
) -> Result<Vec<LoadedImage>, ArchiveError> {
    let mut buffered = std::io::BufReader::new(input);
    let head = std::io::BufRead::fill_buf(&mut buffered)
        .map_err(ArchiveError::Read)?
        .to_vec();
    let c = if head.starts_with(&[0x1f, 0x8b]) {
        collect(store, flate2::read::MultiGzDecoder::new(buffered))?
    } else {
        collect(store, buffered)?
    };
    match (&c.index, &c.docker_manifest) {
        (Some(index), _) => from_index(store, index, platform),
        (None, Some(m)) => from_docker_manifest(store, &c, m),
        (None, None) => Err(ArchiveError::Malformed(
            "neither index.json (OCI layout) nor manifest.json (docker archive) found".to_string(),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manifest::{MEDIA_CONFIG, MEDIA_LAYER_TAR, MEDIA_MANIFEST};

    fn tar_of(files: &[(&str, &[u8])], links: &[(&str, &str)]) -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        for (p, data) in files {
            let mut h = tar::Header::new_gnu();
            h.set_size(data.len() as u64);
            h.set_mode(0o644);
            h.set_entry_type(tar::EntryType::Regular);
            b.append_data(&mut h, p, *data).unwrap();
        }
        for (p, target) in links {
            let mut h = tar::Header::new_gnu();
            h.set_size(0);
            h.set_entry_type(tar::EntryType::Symlink);
            b.append_link(&mut h, p, target).unwrap();
        }
        b.into_inner().unwrap()
    }

    fn layer_tar() -> Vec<u8> {
        tar_of(&[("hello", b"hi")], &[])
    }

    #[test]
    fn classic_docker_archive_with_a_linked_layer_loads() {
        let root = tempfile::tempdir().unwrap();
        let store = Store::open(root.path()).unwrap();
        let layer = layer_tar();
        let config =
            br#"{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}"#;
        let manifest = br#"[{"Config":"abc.json","RepoTags":["app:1"],"Layers":["l1/layer.tar","l2/layer.tar"]}]"#;
        let archive = tar_of(
            &[
                ("manifest.json", manifest),
                ("abc.json", config),
                ("l1/layer.tar", &layer),
            ],
            &[("l2/layer.tar", "../l1/layer.tar")],
        );
        let images = load_archive(&store, &archive[..], &Platform::host()).unwrap();
        assert_eq!(images.len(), 1);
        assert_eq!(images[0].names, ["app:1"]);
        let m: Manifest = store.read_json(&images[0].manifest).unwrap();
        assert_eq!(m.layers.len(), 2);
        assert_eq!(m.layers[0].digest, Digest::sha256_of(&layer));
        assert_eq!(m.layers[1].digest, m.layers[0].digest);
        assert_eq!(
            m.layers[0].media_type,
            crate::manifest::MEDIA_DOCKER_LAYER_TAR
        );
        assert_eq!(m.config.digest, Digest::sha256_of(config));
    }

    fn oci_archive(lie_about_layer: bool, name: &str) -> (Vec<u8>, Digest) {
        let layer = layer_tar();
        let config = br#"{"architecture":"amd64","os":"linux"}"#.to_vec();
        let ld = Digest::sha256_of(&layer);
        let cd = Digest::sha256_of(&config);
        let m = Manifest {
            schema_version: 2,
            media_type: Some(MEDIA_MANIFEST.into()),
            config: Descriptor::new(MEDIA_CONFIG, cd.clone(), config.len() as u64),
            layers: vec![Descriptor::new(
                MEDIA_LAYER_TAR,
                ld.clone(),
                layer.len() as u64,
            )],
            annotations: Default::default(),
        };
        let mb = serde_json::to_vec(&m).unwrap();
        let md = Digest::sha256_of(&mb);
        let mut d = Descriptor::new(MEDIA_MANIFEST, md.clone(), mb.len() as u64);
        d.annotations
            .insert("org.opencontainers.image.ref.name".into(), name.into());
        let index = serde_json::to_vec(&Index {
            schema_version: 2,
            media_type: Some(MEDIA_INDEX.into()),
            manifests: vec![d],
            annotations: Default::default(),
        })
        .unwrap();
        let layer_bytes: Vec<u8> = if lie_about_layer {
            b"other bytes".to_vec()
        } else {
            layer
        };
        let p = |d: &Digest| format!("blobs/sha256/{}", d.hex());
        let archive = tar_of(
            &[
                ("./oci-layout", br#"{"imageLayoutVersion":"1.0.0"}"#),
                (&p(&ld), &layer_bytes),
                (&p(&cd), &config),
                (&p(&md), &mb),
                ("index.json", &index),
            ],
            &[],
        );
        (archive, md)
    }

    #[test]
    fn oci_layout_tar_loads_gzipped_or_not_and_keeps_its_name() {
        let root = tempfile::tempdir().unwrap();
        let store = Store::open(root.path()).unwrap();
        let (archive, md) = oci_archive(false, "docker.io/library/app:2");
        let images = load_archive(&store, &archive[..], &Platform::host()).unwrap();
        assert_eq!(
            images,
            [LoadedImage {
                manifest: md.clone(),
                names: vec!["docker.io/library/app:2".into()]
            }]
        );
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        std::io::Write::write_all(&mut gz, &archive).unwrap();
        let gz = gz.finish().unwrap();
        let other = tempfile::tempdir().unwrap();
        let store2 = Store::open(other.path()).unwrap();
        assert_eq!(
            load_archive(&store2, &gz[..], &Platform::host()).unwrap()[0].manifest,
            md
        );
    }

    #[test]
    fn a_bare_tag_loads_unnamed() {
        let root = tempfile::tempdir().unwrap();
        let store = Store::open(root.path()).unwrap();
        let (archive, _) = oci_archive(false, "latest");
        let images = load_archive(&store, &archive[..], &Platform::host()).unwrap();
        assert!(images[0].names.is_empty());
    }

    #[test]
    fn a_blob_that_lies_about_its_digest_is_refused_and_not_kept() {
        let root = tempfile::tempdir().unwrap();
        let store = Store::open(root.path()).unwrap();
        let (archive, _) = oci_archive(true, "app:1");
        let err = load_archive(&store, &archive[..], &Platform::host()).unwrap_err();
        assert!(
            matches!(err, ArchiveError::Store(StoreError::DigestMismatch { .. })),
            "{err}"
        );
        let blobs: Vec<_> = std::fs::read_dir(root.path().join("blobs/sha256"))
            .map(|d| d.collect())
            .unwrap_or_default();
        assert!(blobs.is_empty(), "nothing half-loaded: {blobs:?}");
        let ingest: Vec<_> = std::fs::read_dir(root.path().join("ingest"))
            .unwrap()
            .collect();
        assert!(ingest.is_empty(), "no ingest leftovers");
    }

    #[test]
    fn garbage_is_not_an_archive() {
        let root = tempfile::tempdir().unwrap();
        let store = Store::open(root.path()).unwrap();
        let archive = tar_of(&[("x", b"y")], &[]);
        assert!(matches!(
            load_archive(&store, &archive[..], &Platform::host()),
            Err(ArchiveError::Malformed(_))
        ));
        let truncated = &oci_archive(false, "a:1").0[..700];
        assert!(load_archive(&store, truncated, &Platform::host()).is_err());
    }
}
