//! `kiln pull`, `kiln push`, `kiln login`, `kiln logout`, and the registry client every command that meets a
//! registry builds from the same flags.

//! Registries: the one client every registry operation of a root is made from (flags, kiln.toml and the test
//! harness's environment), pulling into the store, the push pipeline (compress and upload overlapped, each layer
//! compressed once), and logins saved as `docker login` saves them.

use std::path::PathBuf;

use oci::reference::Reference;
use oci::registry::credentials::{Credential, DockerConfig};
use oci::registry::{Client, ClientOptions, RegistryError};
use oci::store::Store;

use crate::events::{Event, Progress};
use crate::root::Root;

/// How kiln reaches registries, beside what kiln.toml says.
#[derive(Debug, Clone, Default)]
pub struct RegistryOptions {
    /// Registries (host[:port]) that may be reached over plain HTTP.
    pub insecure: Vec<String>,
    /// PEM files of certificates to trust beside the system's.
    pub ca: Vec<PathBuf>,
}

/// Why a registry operation failed.
#[derive(Debug, thiserror::Error)]
pub enum RegistryOpError {
    /// kiln.toml could not be read.
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    /// The client could not be made (a CA file that is none).
    #[error("{0}")]
    Client(RegistryError),
    /// A reference that is none (`what` is how it was given).
    #[error("{what}: {reason}")]
    Reference {
        /// The text given.
        what: String,
        /// Why it is no reference.
        reason: oci::reference::ReferenceError,
    },
    /// Nothing to push to.
    #[error("nothing to push to")]
    NoTarget,
    /// The registry failed.
    #[error(transparent)]
    Registry(#[from] RegistryError),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] oci::store::StoreError),
    /// Converting layers for the push failed.
    #[error(transparent)]
    Export(#[from] exporter::ExportError),
    /// The root's lock.
    #[error(transparent)]
    Lock(#[from] crate::root::RootError),
    /// Saving or erasing a credential failed.
    #[error("{0}")]
    Credentials(String),
}

impl RegistryOpError {
    /// Whether the request was at fault (a bad reference, kiln.toml, a CA file), not the registry.
    pub fn is_usage(&self) -> bool {
        matches!(
            self,
            RegistryOpError::Config(_)
                | RegistryOpError::Client(_)
                | RegistryOpError::Reference { .. }
                | RegistryOpError::NoTarget
        )
    }
}

/// Parses a reference; errors name it as given.
pub fn parse_reference(name: &str) -> Result<Reference, RegistryOpError> {
    Reference::parse(name).map_err(|reason| RegistryOpError::Reference {
        what: name.to_string(),
        reason,
    })
}

/// The registry client for `opts` and kiln.toml's `[registry]` sections. Test harnesses may shorten the retry
/// schedule with KILN_REGISTRY_RETRIES / KILN_REGISTRY_BACKOFF_MS and the upload chunk with KILN_REGISTRY_CHUNK.
pub fn client(opts: &RegistryOptions) -> Result<Client, RegistryOpError> {
    let mut o = ClientOptions {
        insecure: opts.insecure.clone(),
        ca_files: opts.ca.clone(),
        ..ClientOptions::default()
    };
    let config = crate::config::load()?;
    for (host, r) in config.registry {
        if r.http {
            o.insecure.push(host.clone());
        }
        o.ca_files.extend(r.ca);
        if !r.mirrors.is_empty() {
            o.mirrors.insert(host, r.mirrors);
        }
    }
    let env = |name: &str| std::env::var(name).ok();
    if let Some(n) = env("KILN_REGISTRY_RETRIES").and_then(|v| v.parse().ok()) {
        o.retries = n;
    }
    if let Some(ms) = env("KILN_REGISTRY_BACKOFF_MS").and_then(|v| v.parse().ok()) {
        o.backoff = std::time::Duration::from_millis(ms);
    }
    // Any size (`parse_size` would hold it to Docker's 6 MiB minimum of memory limits, and a smaller value was
    // silently ignored).
    if let Some(n) = env("KILN_REGISTRY_CHUNK").and_then(|v| crate::size::parse_bytes(&v).ok()) {
        o.chunk_size = n.max(1);
    }
    Client::new(o).map_err(RegistryOpError::Client)
}

/// What [`pull`] brought.
#[derive(Debug, Clone)]
pub struct Pulled {
    /// The reference as asked.
    pub reference: Reference,
    /// What it resolved to.
    pub resolved: String,
    /// Bytes downloaded.
    pub downloaded: u64,
}

/// Pulls `name` for `platform` into the root's store and names it there once everything it points to is stored.
pub fn pull(
    root: &Root,
    opts: &RegistryOptions,
    name: &str,
    platform: &oci::Platform,
) -> Result<Pulled, RegistryOpError> {
    let r = parse_reference(name)?;
    // Held shared, so a `kiln prune` cannot take blobs that are not named yet.
    let _lock = root.lock(false)?;
    let store = Store::open(&root.store())?;
    let c = client(opts)?;
    let pulled = oci::registry::pull(&c, &store, &r, platform)?;
    let named = Reference {
        digest: None,
        ..r.clone()
    };
    if r.tag.is_some() || r.digest.is_none() {
        store.set_image(&named.to_string(), &pulled.manifest)?;
    }
    Ok(Pulled {
        reference: r,
        resolved: pulled.resolved.to_string(),
        downloaded: pulled.downloaded,
    })
}

/// Pushes the store image `name` to `destination` (itself by default) with `compression`; the pushed manifest's
/// digest. Each target's result is told to `progress` as a [`Event::Message`].
pub fn push(
    root: &Root,
    opts: &RegistryOptions,
    name: &str,
    destination: Option<&str>,
    compression: exporter::Compression,
    progress: &dyn Progress,
) -> Result<oci::Digest, RegistryOpError> {
    // Held shared, so a `kiln prune` cannot take blobs that are not named yet.
    let _lock = root.lock(false)?;
    let store = Store::open(&root.store())?;
    let source = parse_reference(name)?;
    let entry = store
        .get_image(&source.to_string())?
        .ok_or_else(|| oci::store::StoreError::UnknownImage(name.to_string()))?;
    let target = parse_reference(destination.unwrap_or(name))?;
    let c = client(opts)?;
    push_image(
        &c,
        &store,
        &entry.manifest,
        compression,
        &[target],
        progress,
    )
}

/// Pushes the store image `manifest` to each of `targets` with its layers compressed by `compression`. A layer
/// compressed now (not found in the compression memo) is streamed to the first target as it is made, so
/// compression and upload overlap; the push proper then finds it there. With one target the store keeps only the
/// memo of such a layer, not its compressed bytes (`exporter::Keep::DigestOnly`); a layer known only by its memo
/// is checked at the target, and made again into the store when the target lacks it.
pub fn push_image(
    c: &Client,
    store: &Store,
    manifest: &oci::Digest,
    compression: exporter::Compression,
    targets: &[Reference],
    progress: &dyn Progress,
) -> Result<oci::Digest, RegistryOpError> {
    let Some(first) = targets.first() else {
        return Err(RegistryOpError::NoTarget);
    };
    // What needs no compressing — configs, and layers already compressed (a base image's) — goes up to the first
    // target beside the conversion rather than after it.
    let ready = ready_blobs(store, manifest, compression)?;
    // Layers remembered by digest only that the target holds or mounts (asked once each, an error taken as "no":
    // the layer is made again), counted as what they were below.
    let held = std::sync::Mutex::new(Vec::<(oci::Digest, bool)>::new());
    let at_target = |d: &oci::Digest| match oci::registry::held_at(c, store, first, d) {
        Ok(Some(how)) => {
            held.lock()
                .unwrap_or_else(|p| p.into_inner())
                .push((d.clone(), how == oci::registry::Held::Mounted));
            true
        }
        _ => false,
    };
    let (converted, streamed, early) = std::thread::scope(|s| {
        let early = s.spawn(|| oci::registry::push_blobs(c, store, &ready, first));
        let mut uploads = Vec::new();
        let mut tee = || -> Option<oci::registry::ChunkWriter> {
            let (w, chunks) = oci::registry::ChunkWriter::channel();
            uploads.push(s.spawn(move || oci::registry::upload_stream(c, store, first, chunks)));
            Some(w)
        };
        let keep = if targets.len() == 1 {
            exporter::Keep::DigestOnly(&at_target)
        } else {
            exporter::Keep::Blob
        };
        let converted =
            exporter::compressed_manifest_teeing(store, manifest, compression, &mut tee, keep);
        // A failed stream is not an error: the push below uploads that blob from the store.
        let streamed: Vec<oci::registry::Streamed> = uploads
            .into_iter()
            .filter_map(|h| h.join().ok().and_then(Result::ok))
            .collect();
        let early = early.join().unwrap_or_else(|_| {
            Err(oci::registry::RegistryError::Connection {
                url: first.to_string(),
                reason: "an upload thread panicked".to_string(),
            })
        });
        (converted, streamed, early)
    });
    let mut converted = converted?;
    let mut early = early?;
    // What the streams cost beyond their bytes is told with the blobs sent beside them.
    for s in &streamed {
        early.resent += s.resent;
        early.resumed += s.resumed;
    }
    let streamed: Vec<oci::Digest> = streamed.into_iter().map(|s| s.digest).collect();
    let mut ready: Vec<oci::Digest> = ready.into_iter().map(|d| d.digest).collect();
    for (d, mounted) in held.into_inner().unwrap_or_else(|p| p.into_inner()) {
        early.mounted += usize::from(mounted);
        ready.push(d);
    }
    // A layer neither stored, streamed nor held by the target is one whose stream stopped: made again, into the
    // store this time, for the push below to upload.
    let absent = layers_of(store, &converted)?.into_iter().any(|l| {
        !store.has(&l.digest) && !streamed.contains(&l.digest) && !ready.contains(&l.digest)
    });
    if absent {
        converted = exporter::compressed_manifest(store, manifest, compression)?;
    }
    for t in targets {
        let (streamed_here, early_here) = if t == first {
            (&streamed[..], (&ready[..], early.clone()))
        } else {
            (&[][..], (&[][..], Default::default()))
        };
        push_one(c, store, &converted, t, streamed_here, early_here, progress)?;
    }
    Ok(converted)
}

/// The blobs of the store image `manifest` that a push with `compression` sends as they are: every config, and
/// the layers already compressed (all of them when the push compresses nothing).
fn ready_blobs(
    store: &Store,
    manifest: &oci::Digest,
    compression: exporter::Compression,
) -> Result<Vec<oci::manifest::Descriptor>, RegistryOpError> {
    let mut out = Vec::new();
    for d in store.image_manifests(manifest)? {
        let m: oci::manifest::Manifest = store.read_json(&d)?;
        out.push(m.config);
        out.extend(m.layers.into_iter().filter(|l| {
            compression == exporter::Compression::None
                || oci::manifest::LayerCompression::of_media_type(&l.media_type)
                    .is_some_and(|c| c != oci::manifest::LayerCompression::None)
        }));
    }
    let mut seen = std::collections::HashSet::new();
    out.retain(|d| seen.insert(d.digest.clone()));
    Ok(out)
}

/// Pushes one manifest of the store and tells what went where; `streamed` are blobs already sent to this target
/// while they were compressed, `early` the blobs sent beside the compression and what became of them (all of
/// them are in the target already, and are counted as what they were).
fn push_one(
    c: &Client,
    store: &Store,
    manifest: &oci::Digest,
    target: &Reference,
    streamed: &[oci::Digest],
    early: (&[oci::Digest], oci::registry::BlobsSent),
    progress: &dyn Progress,
) -> Result<oci::Digest, RegistryOpError> {
    let (sent_early, early) = early;
    let known: Vec<oci::Digest> = streamed.iter().chain(sent_early).cloned().collect();
    let pushed = oci::registry::push_after(c, store, manifest, target, &known)?;
    let p = &pushed.blobs;
    let layers = layers_of(store, manifest)?;
    let sent: Vec<&oci::manifest::Descriptor> = layers
        .iter()
        .filter(|l| streamed.contains(&l.digest))
        .collect();
    // The final push found what was sent before it already there.
    let before = sent.len() + early.uploaded + early.mounted;
    // A flaky network's cost, and what an interrupted earlier push had already sent, are told when there are any.
    let mut extra = String::new();
    let (resent, resumed) = (p.resent + early.resent, p.resumed + early.resumed);
    if resent > 0 {
        extra.push_str(&format!(", {resent} bytes sent again"));
    }
    if resumed > 0 {
        extra.push_str(&format!(
            ", {resumed} bytes resumed from an interrupted push"
        ));
    }
    progress.event(Event::Message(format!(
        "pushed {target}@{}: {} blobs uploaded ({} bytes), {} mounted, {} already there{extra}",
        pushed.digest,
        p.uploaded + sent.len() + early.uploaded,
        p.bytes + sent.iter().map(|l| l.size).sum::<u64>() + early.bytes,
        p.mounted + early.mounted,
        p.existing.saturating_sub(before)
    )));
    Ok(pushed.digest)
}

/// The layers of a stored image; of every platform's image for an index.
fn layers_of(
    store: &Store,
    digest: &oci::Digest,
) -> Result<Vec<oci::manifest::Descriptor>, RegistryOpError> {
    let mut out = Vec::new();
    for d in store.image_manifests(digest)? {
        let m: oci::manifest::Manifest = store.read_json(&d)?;
        out.extend(m.layers);
    }
    Ok(out)
}

/// The registry a login names: Docker Hub by default and by its other host names.
pub fn registry_name(r: Option<&str>) -> String {
    match r {
        None => oci::reference::DOCKER_HUB.to_string(),
        Some(r) => {
            let host = r
                .trim_start_matches("https://")
                .trim_start_matches("http://")
                .split('/')
                .next()
                .unwrap_or(r);
            match host {
                "index.docker.io" | "registry-1.docker.io" => {
                    oci::reference::DOCKER_HUB.to_string()
                }
                h => h.to_string(),
            }
        }
    }
}

/// Checks `credential` against `registry`, then saves it as `docker login` does; the file it was saved in.
pub fn login(
    opts: &RegistryOptions,
    registry: &str,
    credential: Credential,
) -> Result<PathBuf, RegistryOpError> {
    let c = client(opts)?;
    c.set_credential(registry, credential.clone());
    c.ping(registry)?;
    let config = DockerConfig::locate();
    config
        .store(registry, &credential)
        .map_err(|e| RegistryOpError::Credentials(e.to_string()))?;
    Ok(config.path)
}

/// Forgets the saved credential of `registry`; whether there was one.
pub fn logout(registry: &str) -> Result<bool, RegistryOpError> {
    DockerConfig::locate()
        .erase(registry)
        .map_err(|e| RegistryOpError::Credentials(e.to_string()))
}
