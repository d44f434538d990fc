//! The images of a root's store: listing, naming, removing names, inspecting, and moving them in and out as OCI
//! layout tars or docker archives (`kiln images`, `tag`, `rmi`, `inspect`, `load`, `save`).

use std::collections::BTreeMap;
use std::io::Read;

use oci::manifest::{Descriptor, Manifest, MEDIA_INDEX, MEDIA_MANIFEST};
use oci::store::{ImageEntry, Store, StoreError, Stored};
use oci::{Digest, Platform};

use crate::root::{Root, RootError};

/// Why an image operation failed.
#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    /// The store failed (an unknown name is [`StoreError::UnknownImage`]).
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The root's lock.
    #[error(transparent)]
    Lock(#[from] RootError),
    /// A name that is no reference.
    #[error("{name}: {reason}")]
    Name {
        /// The name given.
        name: String,
        /// Why.
        reason: String,
    },
    /// An input that could not be opened.
    #[error("{path}: {source}")]
    Input {
        /// The file.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// An archive that could not be read (or a name in it that is none).
    #[error("{0}")]
    Archive(String),
    /// A manifest that names no config.
    #[error("{0}: manifest has no config")]
    NoConfig(Digest),
    /// JSON of the store that does not serialize.
    #[error(transparent)]
    Json(#[from] serde_json::Error),
    /// Writing an archive or a layer failed.
    #[error("{0}")]
    Write(String),
}

impl ImageError {
    /// Whether the request was at fault (a bad name or input file), not the store.
    pub fn is_usage(&self) -> bool {
        matches!(self, ImageError::Name { .. } | ImageError::Input { .. })
    }
}

/// A name as the store keys it (`app` → `docker.io/library/app:latest`).
pub fn full_name(n: &str) -> Result<String, ImageError> {
    frontend::lower::normalize_reference(n).map_err(|e| ImageError::Name {
        name: n.to_string(),
        reason: e.to_string(),
    })
}

/// The platform a `--platform` value names, or this machine's.
pub fn platform_or_host(p: Option<&str>) -> Result<Platform, oci::PlatformError> {
    match p {
        Some(p) => p.parse(),
        None => Ok(Platform::host()),
    }
}

fn open(root: &Root) -> Result<Store, ImageError> {
    Ok(Store::open(&root.store())?)
}

fn lookup(store: &Store, n: &str) -> Result<ImageEntry, ImageError> {
    store
        .get_image(&full_name(n)?)?
        .ok_or_else(|| StoreError::UnknownImage(n.to_string()).into())
}

/// One image of the store, as `kiln images` lists it.
#[derive(Debug, Clone)]
pub struct Listed {
    /// Its name.
    pub name: String,
    /// Its manifest (or index).
    pub manifest: Digest,
    /// Config plus layers; of every platform for a multi-platform image (shared blobs counted once).
    pub size: u64,
}

/// The images of the store.
pub fn list(root: &Root) -> Result<Vec<Listed>, ImageError> {
    let store = open(root)?;
    Ok(store
        .list_images()?
        .into_iter()
        .map(|e| Listed {
            size: image_size(&store, &e.manifest),
            name: e.name,
            manifest: e.manifest,
        })
        .collect())
}

fn image_size(store: &Store, digest: &Digest) -> u64 {
    let manifests = store.image_manifests(digest).unwrap_or_default();
    let mut blobs = BTreeMap::new();
    for d in manifests {
        if let Ok(m) = store.read_json::<Manifest>(&d) {
            for b in std::iter::once(m.config).chain(m.layers) {
                blobs.insert(b.digest, b.size);
            }
        }
    }
    blobs.values().sum()
}

/// Gives the image `source` the name `target` too.
pub fn tag(root: &Root, source: &str, target: &str) -> Result<(), ImageError> {
    let store = open(root)?;
    let entry = lookup(&store, source)?;
    Ok(store.set_image(&full_name(target)?, &entry.manifest)?)
}

/// Removes names; every one is checked before any is removed, so a typo removes nothing. The full names removed.
pub fn rmi(root: &Root, names: &[String]) -> Result<Vec<String>, ImageError> {
    let store = open(root)?;
    let mut full = Vec::new();
    for n in names {
        lookup(&store, n)?;
        full.push(full_name(n)?);
    }
    for n in &full {
        store.remove_image(n)?;
    }
    Ok(full)
}

/// A stored manifest or index as a descriptor, with the media type it declares.
fn descriptor_of(store: &Store, digest: &Digest) -> Result<Descriptor, ImageError> {
    let bytes = store.read_blob(digest)?;
    let media = match store.manifest_kind(digest)? {
        Stored::Index(i) => i.media_type.unwrap_or_else(|| MEDIA_INDEX.to_string()),
        Stored::Manifest => serde_json::from_slice::<serde_json::Value>(&bytes)
            .ok()
            .and_then(|v| v["mediaType"].as_str().map(str::to_string))
            .unwrap_or_else(|| MEDIA_MANIFEST.to_string()),
    };
    Ok(Descriptor::new(&media, digest.clone(), bytes.len() as u64))
}

fn inspect_manifest(store: &Store, digest: &Digest) -> Result<serde_json::Value, ImageError> {
    let manifest: serde_json::Value = store.read_json(digest)?;
    let config_digest: Digest = manifest["config"]["digest"]
        .as_str()
        .and_then(|d| d.parse().ok())
        .ok_or_else(|| ImageError::NoConfig(digest.clone()))?;
    let config: serde_json::Value = store.read_json(&config_digest)?;
    Ok(serde_json::json!({
        "Digest": digest.to_string(),
        "Id": config_digest.to_string(),
        "Manifest": manifest,
        "Config": config,
    }))
}

/// One attestation manifest of an index as `kiln inspect` lists it: the image it is about and its statements
/// (predicate type, digest, size; with `statements`, each statement itself).
fn inspect_attestation(
    store: &Store,
    entry: &Descriptor,
    statements: bool,
) -> Result<serde_json::Value, ImageError> {
    let manifest: Manifest = store.read_json(&entry.digest)?;
    let mut list = Vec::new();
    for l in &manifest.layers {
        let mut one = serde_json::json!({
            "PredicateType": l.annotations.get(exporter::attestation::ANNOTATION_PREDICATE_TYPE),
            "Digest": l.digest.to_string(),
            "Size": l.size,
        });
        if statements {
            one["Statement"] = store.read_json::<serde_json::Value>(&l.digest)?;
        }
        list.push(one);
    }
    Ok(serde_json::json!({
        "Digest": entry.digest.to_string(),
        "For": entry.annotations.get(exporter::attestation::ANNOTATION_REFERENCE_DIGEST),
        "Statements": list,
    }))
}

/// An image's digest, id, manifest and config (for an index: the index, then each platform's), as
/// `kiln inspect` prints them.
pub fn inspect(root: &Root, name: &str) -> Result<serde_json::Value, ImageError> {
    inspect_with(root, name, false)
}

/// [`inspect`], and for an index with attestation manifests an `Attestations` list naming each one's image and
/// statements — with `statements`, the in-toto statements themselves (`kiln inspect --attestations`).
pub fn inspect_with(
    root: &Root,
    name: &str,
    statements: bool,
) -> Result<serde_json::Value, ImageError> {
    let store = open(root)?;
    let entry = lookup(&store, name)?;
    Ok(match store.manifest_kind(&entry.manifest)? {
        Stored::Manifest => {
            let mut one = inspect_manifest(&store, &entry.manifest)?;
            one["Name"] = entry.name.clone().into();
            one
        }
        Stored::Index(index) => {
            let mut platforms = Vec::new();
            let mut attestations = Vec::new();
            for m in &index.manifests {
                if exporter::attestation::is_attestation(m) {
                    attestations.push(inspect_attestation(&store, m, statements)?);
                    continue;
                }
                let mut one = inspect_manifest(&store, &m.digest)?;
                one["Platform"] = serde_json::to_value(&m.platform)?;
                platforms.push(one);
            }
            let mut out = serde_json::json!({
                "Name": entry.name,
                "Digest": entry.manifest.to_string(),
                "Index": index,
                "Platforms": platforms,
            });
            if !attestations.is_empty() {
                out["Attestations"] = attestations.into();
            }
            out
        }
    })
}

/// What [`load`] put in the store: the names set, and the images the archive named nothing.
#[derive(Debug, Clone, Default)]
pub struct Loaded {
    /// Full names set.
    pub named: Vec<String>,
    /// Manifests of unnamed images.
    pub unnamed: Vec<Digest>,
}

/// Loads every image of an archive (`input`, described as `label` in errors) into the store, under the names the
/// archive gives it; names are checked before any is set, so a bad one leaves the index as it was.
pub fn load(
    root: &Root,
    input: Box<dyn Read>,
    label: &str,
    platform: &Platform,
) -> Result<Loaded, ImageError> {
    // Held shared, so a `kiln prune` cannot take blobs that are not named yet.
    let _lock = root.lock(false)?;
    let store = open(root)?;
    let images = oci::archive::load_archive(&store, input, platform)
        .map_err(|e| ImageError::Archive(format!("{label}: {e}")))?;
    let mut named = Vec::new();
    for image in &images {
        for n in &image.names {
            let full = frontend::lower::normalize_reference(n)
                .map_err(|e| ImageError::Archive(format!("the archive names {n:?}: {e}")))?;
            named.push((full, image.manifest.clone()));
        }
    }
    let mut out = Loaded::default();
    for (name, manifest) in named {
        store.set_image(&name, &manifest)?;
        out.named.push(name);
    }
    out.unnamed = images
        .into_iter()
        .filter(|i| i.names.is_empty())
        .map(|i| i.manifest)
        .collect();
    Ok(out)
}

/// Writes images of the store into one archive at `dest` (`-` for stdout), atomically.
pub fn save(
    root: &Root,
    names: &[String],
    format: exporter::ArchiveFormat,
    dest: &str,
) -> Result<(), ImageError> {
    // Held shared, so a `kiln prune` cannot take blobs that are not named yet.
    let _lock = root.lock(false)?;
    let store = open(root)?;
    let mut images: Vec<exporter::Tagged> = Vec::new();
    for n in names {
        let full = full_name(n)?;
        let entry = store
            .get_image(&full)?
            .ok_or_else(|| StoreError::UnknownImage(n.clone()))?;
        let desc = descriptor_of(&store, &entry.manifest)?;
        match images.iter_mut().find(|t| t.manifest.digest == desc.digest) {
            Some(t) => t.names.push(full),
            None => images.push(exporter::Tagged {
                manifest: desc,
                names: vec![full],
            }),
        }
    }
    crate::output::write_to(dest, |w| {
        exporter::write_archive(&store, &images, format, w)
            .map(|_| ())
            .map_err(|e| e.to_string())
    })
    .map_err(|e| ImageError::Write(e.to_string()))
}
