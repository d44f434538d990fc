//! Build caches that travel (BuildKit's remote cache): `--cache-to` writes the records of a build (each step's key, what it was made of, and
//! the layer blobs of its result) as one OCI image manifest — config `application/vnd.kiln.cache.config.v1+json`,
//! the blobs as its layers — into an OCI layout directory or a registry, where any registry that stores images
//! stores it (BuildKit's `image-manifest=true` form); `--cache-from` reads the records back and leaves the blobs
//! where they are until a step hits one. `cache-mounts=true` also carries the contents of the build's
//! `RUN --mount=type=cache` directories, restored before the steps start.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use oci::manifest::{Descriptor, Index, Manifest, MEDIA_INDEX, MEDIA_MANIFEST};
use oci::reference::Reference;
use oci::registry::Client;
use oci::store::Store;
use oci::Digest;
use serde::{Deserialize, Serialize};
use solver::cache::{BlobError, BlobSource, CacheIndex, ImportedCache, PortableRecord};

/// Why a cache spec, import or export failed; each keeps the words of what failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CacheError {
    /// A `--cache-to` or `--cache-from` spec that is none.
    #[error("{0}")]
    Spec(String),
    /// Writing a cache failed.
    #[error("{0}")]
    Export(String),
    /// Reading a cache failed.
    #[error("{0}")]
    Import(String),
}

/// The config media type of a kiln cache manifest.
pub const MEDIA_CACHE_CONFIG: &str = "application/vnd.kiln.cache.config.v1+json";

/// Where a cache is written or read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CacheLocation {
    /// An OCI layout directory.
    Local(PathBuf),
    /// A registry reference.
    Registry(Reference),
    /// Inside the image config of each image the build makes (`--cache-to type=inline`): mode=min records whose
    /// layers are the image's own.
    Inline,
}

/// One `--cache-to`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CacheTo {
    /// Where.
    pub location: CacheLocation,
    /// `mode=max`: every step's result; `min` (the default): the steps whose results are the final image's layers.
    pub max: bool,
    /// `cache-mounts=true`: also the contents of the build's cache mounts.
    pub mounts: bool,
    /// `ignore-error=true`: a failed export is a warning.
    pub ignore_error: bool,
}

/// The config blob of a cache manifest.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct CacheConfig {
    /// The steps.
    pub records: Vec<PortableRecord>,
    /// Cache mount contents by mount id.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub mounts: Vec<MountContents>,
}

/// The contents of one `RUN --mount=type=cache` directory, as a layer.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct MountContents {
    /// The mount's id (its target when no id was given).
    pub id: String,
    /// The layer holding its files.
    pub layer: Descriptor,
}

/// What `--cache-to type=inline` puts in an image config (`kiln.cache.v1`): the image's own steps, each naming how
/// many of the image's layers (from the bottom) its result is, so the records stay true whatever compression the
/// layers are pushed with.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct InlineCache {
    /// The steps.
    pub records: Vec<InlineRecord>,
}

/// One step of an inline cache.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct InlineRecord {
    /// The step's cache key.
    pub key: Digest,
    /// What the key was made of.
    pub parts: solver::cache::KeyParts,
    /// What the step was.
    pub description: String,
    /// The step's place in its Dockerfile.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub slot: Option<String>,
    /// How many of the image's layers, from the bottom, make the step's result.
    pub layers: usize,
}

fn options(spec: &str) -> Result<BTreeMap<String, String>, String> {
    let mut out = BTreeMap::new();
    for part in spec.split(',') {
        let (k, v) = part
            .split_once('=')
            .ok_or_else(|| format!("{spec}: expected KEY=VALUE pairs, got {part:?}"))?;
        out.insert(k.trim().to_string(), v.trim().to_string());
    }
    Ok(out)
}

fn flag(opts: &BTreeMap<String, String>, key: &str) -> Result<bool, String> {
    match opts.get(key).map(String::as_str) {
        None | Some("false") => Ok(false),
        Some("true") => Ok(true),
        Some(other) => Err(format!("{key}={other}: expected true or false")),
    }
}

fn registry_ref(r: &str) -> Result<Reference, String> {
    Reference::parse(r).map_err(|e| format!("ref={r}: {e}"))
}

/// Parses a `--cache-to` spec.
pub fn parse_cache_to(spec: &str) -> Result<CacheTo, CacheError> {
    cache_to_spec(spec).map_err(CacheError::Spec)
}

fn cache_to_spec(spec: &str) -> Result<CacheTo, String> {
    let opts = options(spec).map_err(|e| format!("--cache-to {e}"))?;
    let fail = |m: String| format!("--cache-to {spec}: {m}");
    let location = match opts.get("type").map(String::as_str) {
        Some("local") => CacheLocation::Local(
            opts.get("dest")
                .ok_or_else(|| fail("type=local needs dest=DIR".into()))?
                .into(),
        ),
        Some("registry") => CacheLocation::Registry(
            registry_ref(
                opts.get("ref")
                    .ok_or_else(|| fail("type=registry needs ref=REF".into()))?,
            )
            .map_err(fail)?,
        ),
        Some("inline") => CacheLocation::Inline,
        Some(other) => {
            return Err(fail(format!(
                "unknown type {other:?} (local, registry, inline)"
            )))
        }
        None => return Err(fail("type= is required (local, registry, inline)".into())),
    };
    let max = match opts.get("mode").map(String::as_str) {
        None | Some("min") => false,
        Some("max") => true,
        Some(other) => return Err(fail(format!("mode={other}: expected min or max"))),
    };
    for k in opts.keys() {
        if !matches!(
            k.as_str(),
            "type"
                | "dest"
                | "ref"
                | "mode"
                | "cache-mounts"
                | "ignore-error"
                | "image-manifest"
                | "oci-mediatypes"
                | "compression"
        ) {
            return Err(fail(format!("unknown option {k:?}")));
        }
    }
    let mounts = flag(&opts, "cache-mounts").map_err(fail)?;
    if location == CacheLocation::Inline && (max || mounts) {
        return Err(fail(
            "an inline cache holds only the image's own steps (mode=min, no cache mounts): use type=registry for more".into(),
        ));
    }
    Ok(CacheTo {
        location,
        max,
        mounts,
        ignore_error: flag(&opts, "ignore-error").map_err(fail)?,
    })
}

/// Parses a `--cache-from` spec: `type=local,src=DIR`, `type=registry,ref=REF`, or a bare reference.
pub fn parse_cache_from(spec: &str) -> Result<CacheLocation, CacheError> {
    cache_from_spec(spec).map_err(CacheError::Spec)
}

fn cache_from_spec(spec: &str) -> Result<CacheLocation, String> {
    if !spec.contains('=') {
        return registry_ref(spec)
            .map(CacheLocation::Registry)
            .map_err(|e| format!("--cache-from {e}"));
    }
    let opts = options(spec).map_err(|e| format!("--cache-from {e}"))?;
    let fail = |m: &str| format!("--cache-from {spec}: {m}");
    match opts.get("type").map(String::as_str) {
        Some("local") => Ok(CacheLocation::Local(
            opts.get("src")
                .ok_or_else(|| fail("type=local needs src=DIR"))?
                .into(),
        )),
        Some("registry") => Ok(CacheLocation::Registry(
            registry_ref(
                opts.get("ref")
                    .ok_or_else(|| fail("type=registry needs ref=REF"))?,
            )
            .map_err(|e| fail(&e))?,
        )),
        _ => Err(fail("expected type=local,src=DIR or type=registry,ref=REF")),
    }
}

/// One step's result to export: its key and the snapshot holding it.
pub struct ExportStep {
    /// The cache key.
    pub key: Digest,
    /// The snapshot.
    pub snapshot: String,
}

/// Everything an export needs from the finished build.
pub struct BuildState<'a> {
    /// kiln's store (blobs are made here first).
    pub store: &'a Store,
    /// The snapshots.
    pub snapshots: &'a solver::snapshot::Snapshotter,
    /// The root's cache index (each step's key parts).
    pub index: &'a CacheIndex,
    /// Every step that produced a snapshot.
    pub steps: Vec<ExportStep>,
    /// The final snapshots (one per platform): what mode=min keeps.
    pub finals: Vec<String>,
    /// The build's cache mounts: id → directory.
    pub mounts: BTreeMap<String, PathBuf>,
}

fn gzip_blob(store: &Store, dir: &Path, id: Option<&str>) -> Result<Option<Descriptor>, String> {
    let opts = exporter::diff::DiffOptions::default();
    let blob = match id {
        Some(id) => exporter::layer_blob(
            store,
            &exporter::LayerSource {
                id: id.to_string(),
                diff: dir.to_path_buf(),
                unpacked_from: None,
                created: None,
            },
            exporter::Compression::Gzip(6),
            opts,
        ),
        None => exporter::dir_blob(store, dir, exporter::Compression::Gzip(6), opts),
    }
    .map_err(|e| e.to_string())?;
    Ok((!blob.empty).then_some(blob.descriptor))
}

/// A cache manifest made in the store: its digest, the blobs it names, and how many steps and mounts it holds.
struct Made {
    manifest: Digest,
    blobs: Vec<Descriptor>,
    records: usize,
    mounts: usize,
}

/// Makes the cache manifest for `to` in the store.
fn make_manifest(state: &BuildState, to: &CacheTo) -> Result<Made, String> {
    let keep: Option<BTreeSet<String>> = if to.max {
        None
    } else {
        let mut set = BTreeSet::new();
        for f in &state.finals {
            set.extend(state.snapshots.chain_ids(f).map_err(|e| e.to_string())?);
        }
        Some(set)
    };
    let mut layer_of: BTreeMap<String, Option<Descriptor>> = BTreeMap::new();
    let mut config = CacheConfig::default();
    let mut seen = BTreeSet::new();
    for step in &state.steps {
        if keep.as_ref().is_some_and(|k| !k.contains(&step.snapshot)) || !seen.insert(&step.key) {
            continue;
        }
        let Some(rec) = state.index.get(&step.key).map_err(|e| e.to_string())? else {
            continue;
        };
        let mut layers = Vec::new();
        for s in state
            .snapshots
            .chain_ids(&step.snapshot)
            .map_err(|e| e.to_string())?
        {
            if !layer_of.contains_key(&s) {
                let blob = gzip_blob(state.store, &state.snapshots.diff_dir(&s), Some(&s))?;
                layer_of.insert(s.clone(), blob);
            }
            layers.extend(layer_of[&s].clone());
        }
        config.records.push(PortableRecord {
            key: step.key.clone(),
            parts: rec.parts,
            description: rec.description,
            slot: rec.slot,
            layers,
        });
    }
    if to.mounts {
        for (id, dir) in &state.mounts {
            if let Some(layer) = gzip_blob(state.store, dir, None)? {
                config.mounts.push(MountContents {
                    id: id.clone(),
                    layer,
                });
            }
        }
    }
    let mut blobs: Vec<Descriptor> = Vec::new();
    let mut names = BTreeSet::new();
    let all = config
        .records
        .iter()
        .flat_map(|r| r.layers.iter())
        .chain(config.mounts.iter().map(|m| &m.layer));
    for l in all {
        if names.insert(l.digest.clone()) {
            blobs.push(l.clone());
        }
    }
    let config_bytes = serde_json::to_vec(&config).map_err(|e| e.to_string())?;
    let config_digest = state
        .store
        .put_bytes(&config_bytes)
        .map_err(|e| e.to_string())?;
    let manifest = Manifest {
        schema_version: 2,
        media_type: Some(MEDIA_MANIFEST.to_string()),
        config: Descriptor::new(
            MEDIA_CACHE_CONFIG,
            config_digest.clone(),
            config_bytes.len() as u64,
        ),
        layers: blobs.clone(),
        annotations: Default::default(),
    };
    let bytes = serde_json::to_vec(&manifest).map_err(|e| e.to_string())?;
    let digest = state.store.put_bytes(&bytes).map_err(|e| e.to_string())?;
    blobs.push(manifest.config);
    Ok(Made {
        manifest: digest,
        blobs,
        records: config.records.len(),
        mounts: config.mounts.len(),
    })
}

/// The inline cache of the image whose filesystem is the snapshot `last` (see `inline_records`).
pub fn inline_cache(state: &BuildState, last: &str) -> Result<serde_json::Value, CacheError> {
    inline_records(state, last).map_err(CacheError::Export)
}

/// The inline cache of the image whose filesystem is the snapshot `last`: every step of the build whose result is
/// one of `last`'s chain, with the number of image layers below and including it (one per snapshot: a step that
/// changed nothing keeps its empty layer, as the image does).
fn inline_records(state: &BuildState, last: &str) -> Result<serde_json::Value, String> {
    let chain = state.snapshots.chain_ids(last).map_err(|e| e.to_string())?;
    let depth: BTreeMap<&str, usize> = chain
        .iter()
        .enumerate()
        .map(|(i, s)| (s.as_str(), i + 1))
        .collect();
    let mut cache = InlineCache::default();
    let mut seen = BTreeSet::new();
    for step in &state.steps {
        let Some(&layers) = depth.get(step.snapshot.as_str()) else {
            continue;
        };
        if !seen.insert(&step.key) {
            continue;
        }
        let Some(rec) = state.index.get(&step.key).map_err(|e| e.to_string())? else {
            continue;
        };
        cache.records.push(InlineRecord {
            key: step.key.clone(),
            parts: rec.parts,
            description: rec.description,
            slot: rec.slot,
            layers,
        });
    }
    serde_json::to_value(&cache).map_err(|e| e.to_string())
}

/// Writes `bytes` to `path` through a temporary file and a rename, so a reader sees the old or the new file.
fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let tmp = path.with_extension(format!("kiln-tmp-{}", std::process::id()));
    let mut f = std::fs::File::create(&tmp)?;
    f.write_all(bytes)?;
    f.sync_all()?;
    std::fs::rename(&tmp, path)
}

/// Writes the cache of a finished build to `to`; returns a line saying what was written.
pub fn export(state: &BuildState, to: &CacheTo, client: &Client) -> Result<String, CacheError> {
    export_to(state, to, client).map_err(CacheError::Export)
}

fn export_to(state: &BuildState, to: &CacheTo, client: &Client) -> Result<String, String> {
    if to.location == CacheLocation::Inline {
        // Written into the image configs before the images were made (`inline_cache`).
        return Ok("cache written inline in the image config".to_string());
    }
    let Made {
        manifest,
        blobs,
        records,
        mounts,
    } = make_manifest(state, to)?;
    match &to.location {
        CacheLocation::Local(dir) => {
            let blob_dir = dir.join("blobs/sha256");
            std::fs::create_dir_all(&blob_dir).map_err(|e| format!("{}: {e}", dir.display()))?;
            let size = state
                .store
                .blob_size(&manifest)
                .map_err(|e| e.to_string())?;
            let manifest_desc = Descriptor::new(MEDIA_MANIFEST, manifest.clone(), size);
            for b in blobs.iter().chain(std::iter::once(&manifest_desc)) {
                let dest = blob_dir.join(b.digest.hex());
                if !dest.exists() {
                    let tmp = dest.with_extension("kiln-tmp");
                    state
                        .store
                        .materialize(&b.digest)
                        .map_err(|e| e.to_string())?;
                    std::fs::copy(state.store.blob_path(&b.digest), &tmp)
                        .and_then(|_| std::fs::rename(&tmp, &dest))
                        .map_err(|e| format!("{}: {e}", dest.display()))?;
                }
            }
            std::fs::write(dir.join("oci-layout"), br#"{"imageLayoutVersion":"1.0.0"}"#)
                .map_err(|e| format!("{}: {e}", dir.display()))?;
            let mut entry = manifest_desc;
            entry
                .annotations
                .insert("org.opencontainers.image.ref.name".into(), "latest".into());
            let index = Index {
                schema_version: 2,
                media_type: Some(MEDIA_INDEX.to_string()),
                manifests: vec![entry],
                annotations: Default::default(),
            };
            let bytes = serde_json::to_vec(&index).map_err(|e| e.to_string())?;
            // The index names the manifest only once every blob is in place.
            write_atomic(&dir.join("index.json"), &bytes)
                .map_err(|e| format!("{}: {e}", dir.display()))?;
            Ok(format!(
                "cache exported to {}: {} steps, {} cache mounts",
                dir.display(),
                records,
                mounts
            ))
        }
        CacheLocation::Inline => unreachable!("handled above"),
        CacheLocation::Registry(r) => {
            let pushed = oci::registry::push(client, state.store, &manifest, r)
                .map_err(|e| e.to_string())?;
            Ok(format!(
                "cache exported to {r}: {} steps, {} cache mounts ({} blobs uploaded, {} already there)",
                records,
                mounts,
                pushed.blobs.uploaded,
                pushed.blobs.existing + pushed.blobs.mounted
            ))
        }
    }
}

/// Blobs of a cache in an OCI layout directory.
struct LocalBlobs {
    dir: PathBuf,
    store: Store,
}

impl BlobSource for LocalBlobs {
    fn fetch(&self, blob: &Descriptor) -> Result<(), BlobError> {
        let path = self.dir.join("blobs/sha256").join(blob.digest.hex());
        let mut f = std::fs::File::open(&path).map_err(|e| format!("{}: {e}", path.display()))?;
        let mut w = self.store.writer().map_err(|e| e.to_string())?;
        std::io::copy(&mut f, &mut w).map_err(|e| format!("{}: {e}", path.display()))?;
        w.commit(Some(&blob.digest)).map_err(|e| e.to_string())?;
        Ok(())
    }

    fn describe(&self) -> String {
        self.dir.display().to_string()
    }
}

/// Blobs of a cache in a registry repository.
struct RegistryBlobs {
    client: Arc<Client>,
    reference: Reference,
    store: Store,
}

impl BlobSource for RegistryBlobs {
    fn fetch(&self, blob: &Descriptor) -> Result<(), BlobError> {
        oci::registry::fetch_blob_into(&self.client, &self.store, &self.reference, blob)
            .map(|_| ())
            .map_err(BlobError::Registry)
    }

    fn describe(&self) -> String {
        self.reference.to_string()
    }
}

/// A cache read from one `--cache-from`: its records (blobs stay where they are) and cache mount contents.
pub struct Imported {
    /// Where its blobs are fetched from.
    pub source: Box<dyn BlobSource>,
    /// What it holds.
    pub config: CacheConfig,
}

fn read_verified(path: &Path, digest: &Digest) -> Result<Vec<u8>, String> {
    let bytes = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let actual = Digest::sha256_of(&bytes);
    if &actual != digest {
        return Err(format!(
            "{}: content is {actual}, not {digest}",
            path.display()
        ));
    }
    Ok(bytes)
}

/// Reads a manifest or a blob of a cache location, verified against its digest.
trait Reader {
    fn manifest(&self, digest: &Digest) -> Result<Vec<u8>, String>;
    fn blob(&self, blob: &Descriptor) -> Result<Vec<u8>, String>;
}

struct LocalReader<'a>(&'a Path);

impl Reader for LocalReader<'_> {
    fn manifest(&self, digest: &Digest) -> Result<Vec<u8>, String> {
        read_verified(&self.0.join("blobs/sha256").join(digest.hex()), digest)
    }
    fn blob(&self, blob: &Descriptor) -> Result<Vec<u8>, String> {
        self.manifest(&blob.digest)
    }
}

struct RegistryReader<'a> {
    client: &'a Client,
    store: &'a Store,
    reference: &'a Reference,
}

impl Reader for RegistryReader<'_> {
    fn manifest(&self, digest: &Digest) -> Result<Vec<u8>, String> {
        let r = self.reference.with_digest(digest.clone());
        oci::registry::fetch_manifest_bytes(self.client, &r)
            .map(|(bytes, _, _)| bytes)
            .map_err(|e| e.to_string())
    }
    fn blob(&self, blob: &Descriptor) -> Result<Vec<u8>, String> {
        oci::registry::fetch_blob_into(self.client, self.store, self.reference, blob)
            .map_err(|e| e.to_string())?;
        std::fs::read(self.store.blob_path(&blob.digest)).map_err(|e| e.to_string())
    }
}

/// The cache a manifest carries: a kiln cache manifest's config, or the inline records of an image (of every
/// platform, for an index).
fn config_of(bytes: &[u8], from: &str, reader: &dyn Reader) -> Result<CacheConfig, String> {
    let value: serde_json::Value =
        serde_json::from_slice(bytes).map_err(|e| format!("{from}: not a manifest: {e}"))?;
    if value.get("manifests").is_some() {
        let index: Index =
            serde_json::from_value(value).map_err(|e| format!("{from}: not an index: {e}"))?;
        let mut config = CacheConfig::default();
        for child in &index.manifests {
            let bytes = reader.manifest(&child.digest)?;
            let m: Manifest = serde_json::from_slice(&bytes)
                .map_err(|e| format!("{from}: manifest {}: {e}", child.digest))?;
            if let Some(records) = inline_of(&m, reader, from)? {
                config.records.extend(records);
            }
        }
        if config.records.is_empty() {
            return Err(no_inline(from));
        }
        return Ok(config);
    }
    let m: Manifest =
        serde_json::from_value(value).map_err(|e| format!("{from}: not a manifest: {e}"))?;
    if m.config.media_type == MEDIA_CACHE_CONFIG {
        return serde_json::from_slice(&reader.blob(&m.config)?)
            .map_err(|e| format!("{from}: cache config: {e}"));
    }
    match inline_of(&m, reader, from)? {
        Some(records) => Ok(CacheConfig {
            records,
            mounts: Vec::new(),
        }),
        None => Err(no_inline(from)),
    }
}

fn no_inline(from: &str) -> String {
    format!("{from}: neither a kiln cache nor an image with inline cache (build it with --cache-to type=inline)")
}

/// The inline records of an image manifest, each given the image's own first layers.
fn inline_of(
    m: &Manifest,
    reader: &dyn Reader,
    from: &str,
) -> Result<Option<Vec<PortableRecord>>, String> {
    if !matches!(
        m.config.media_type.as_str(),
        oci::manifest::MEDIA_CONFIG | oci::manifest::MEDIA_DOCKER_CONFIG
    ) {
        return Ok(None);
    }
    let image: oci::Image = serde_json::from_slice(&reader.blob(&m.config)?)
        .map_err(|e| format!("{from}: image config: {e}"))?;
    let Some(inline) = image.inline_cache else {
        return Ok(None);
    };
    let inline: InlineCache =
        serde_json::from_value(inline).map_err(|e| format!("{from}: inline cache: {e}"))?;
    Ok(Some(
        inline
            .records
            .into_iter()
            .filter(|r| r.layers <= m.layers.len())
            .map(|r| PortableRecord {
                key: r.key,
                parts: r.parts,
                description: r.description,
                slot: r.slot,
                layers: m.layers[..r.layers].to_vec(),
            })
            .collect(),
    ))
}

/// Reads the records of one cache location (manifests and configs only; layers stay where they are).
pub fn import(
    location: &CacheLocation,
    store: &Store,
    client: &Arc<Client>,
) -> Result<Imported, CacheError> {
    import_from(location, store, client).map_err(CacheError::Import)
}

fn import_from(
    location: &CacheLocation,
    store: &Store,
    client: &Arc<Client>,
) -> Result<Imported, String> {
    match location {
        CacheLocation::Local(dir) => {
            let index_path = dir.join("index.json");
            let index: Index = serde_json::from_slice(
                &std::fs::read(&index_path)
                    .map_err(|e| format!("{}: {e}", index_path.display()))?,
            )
            .map_err(|e| format!("{}: {e}", index_path.display()))?;
            let entry = index
                .manifests
                .first()
                .ok_or_else(|| format!("{}: names no cache", index_path.display()))?;
            let reader = LocalReader(dir);
            let config = config_of(
                &reader.manifest(&entry.digest)?,
                &dir.display().to_string(),
                &reader,
            )?;
            Ok(Imported {
                source: Box::new(LocalBlobs {
                    dir: dir.clone(),
                    store: store.clone(),
                }),
                config,
            })
        }
        CacheLocation::Registry(r) => {
            let (bytes, _, _) =
                oci::registry::fetch_manifest_bytes(client, r).map_err(|e| e.to_string())?;
            let reader = RegistryReader {
                client,
                store,
                reference: r,
            };
            let config = config_of(&bytes, &r.to_string(), &reader)?;
            Ok(Imported {
                source: Box::new(RegistryBlobs {
                    client: client.clone(),
                    reference: r.clone(),
                    store: store.clone(),
                }),
                config,
            })
        }
        CacheLocation::Inline => Err("type=inline is a --cache-to only".to_string()),
    }
}

/// Restores imported cache mount contents into the build's cache mount directories that are missing or empty (a
/// mount this root already filled keeps its own files). Returns the ids restored.
pub fn restore_mounts(
    imported: &[Imported],
    mounts: &BTreeMap<String, PathBuf>,
    store: &Store,
) -> Vec<Result<String, CacheError>> {
    let mut out = Vec::new();
    let mut done = BTreeSet::new();
    for imp in imported {
        for m in &imp.config.mounts {
            let Some(dir) = mounts.get(&m.id) else {
                continue;
            };
            let empty = std::fs::read_dir(dir).map_or(true, |mut d| d.next().is_none());
            if !empty || !done.insert(m.id.clone()) {
                continue;
            }
            out.push(
                restore_one(imp, m, dir, store)
                    .map(|_| m.id.clone())
                    .map_err(CacheError::Import),
            );
        }
    }
    out
}

fn restore_one(imp: &Imported, m: &MountContents, dir: &Path, store: &Store) -> Result<(), String> {
    if !store.has(&m.layer.digest) {
        imp.source.fetch(&m.layer).map_err(|e| e.to_string())?;
    }
    let parent = dir.parent().unwrap_or(Path::new("."));
    let tmp = parent.join(format!(
        ".import-{}-{}",
        std::process::id(),
        m.layer.digest.hex()
    ));
    let _ = std::fs::remove_dir_all(&tmp);
    std::fs::create_dir_all(&tmp).map_err(|e| format!("{}: {e}", tmp.display()))?;
    let blob = store
        .open_blob(&m.layer.digest)
        .map_err(|e| e.to_string())?;
    let result = oci::layer::apply_layer(blob, &tmp, oci::layer::Whiteouts::Delete)
        .map_err(|e| format!("cache mount {}: {e}", m.id))
        .and_then(|_| {
            let _ = std::fs::remove_dir(dir);
            std::fs::rename(&tmp, dir).map_err(|e| format!("{}: {e}", dir.display()))
        });
    if result.is_err() {
        let _ = std::fs::remove_dir_all(&tmp);
    }
    result
}

/// Gathers the imported records into the worker's lookup table.
pub fn into_cache(imported: Vec<Imported>) -> ImportedCache {
    let mut cache = ImportedCache::new();
    for imp in imported {
        cache.add(imp.source, imp.config.records);
    }
    cache
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn specs_as_buildkit_writes_them() {
        let t = parse_cache_to("type=local,dest=/c,mode=max,cache-mounts=true").unwrap();
        assert_eq!(t.location, CacheLocation::Local("/c".into()));
        assert!(t.max && t.mounts && !t.ignore_error);
        let t =
            parse_cache_to("type=registry,ref=reg:5000/cache:main,image-manifest=true").unwrap();
        assert!(!t.max);
        assert!(matches!(t.location, CacheLocation::Registry(r) if r.repository == "cache"));
        assert!(parse_cache_to("type=registry")
            .unwrap_err()
            .to_string()
            .contains("ref=REF"));
        assert!(parse_cache_to("type=local,dest=/c,mode=all")
            .unwrap_err()
            .to_string()
            .contains("mode=all"));
        assert_eq!(
            parse_cache_to("type=inline").unwrap().location,
            CacheLocation::Inline
        );
        assert!(parse_cache_to("type=inline,mode=max")
            .unwrap_err()
            .to_string()
            .contains("only the image's own steps"));
        assert!(parse_cache_to("type=local,dest=/c,colour=red").is_err());
        assert_eq!(
            parse_cache_from("type=local,src=/c").unwrap(),
            CacheLocation::Local("/c".into())
        );
        assert!(matches!(
            parse_cache_from("reg:5000/cache:main").unwrap(),
            CacheLocation::Registry(r) if r.tag.as_deref() == Some("main")
        ));
        assert!(parse_cache_from("type=gha").is_err());
    }
}
