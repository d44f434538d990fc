//! `kiln pull`, `kiln push`, `kiln login`, `kiln logout`, and the registry client every command that meets a
//! registry builds from the same flags.

use std::io::Read;

use oci::reference::Reference;
use oci::registry::credentials::{Credential, DockerConfig};
use oci::registry::{Client, ClientOptions};
use oci::store::Store;

use crate::cli::{LoginArgs, LogoutArgs, PullArgs, PushArgs, RegistryArgs};
use crate::{root, Failure};

fn fail(e: &dyn std::fmt::Display) -> Failure {
    Failure::Build(e.to_string())
}

/// The registry client for `args`. Test harnesses may shorten the retry schedule with
/// KILN_REGISTRY_RETRIES / KILN_REGISTRY_BACKOFF_MS.
pub fn client(args: &RegistryArgs) -> Result<Client, Failure> {
    let mut opts = ClientOptions {
        insecure: args.insecure.clone(),
        ca_files: args.ca.clone(),
        ..ClientOptions::default()
    };
    let config = crate::config::load().map_err(Failure::Usage)?;
    for (host, r) in config.registry {
        if r.http {
            opts.insecure.push(host.clone());
        }
        opts.ca_files.extend(r.ca);
        if !r.mirrors.is_empty() {
            opts.mirrors.insert(host, r.mirrors);
        }
    }
    if let Some(n) = std::env::var("KILN_REGISTRY_RETRIES")
        .ok()
        .and_then(|v| v.parse().ok())
    {
        opts.retries = n;
    }
    if let Some(ms) = std::env::var("KILN_REGISTRY_BACKOFF_MS")
        .ok()
        .and_then(|v| v.parse().ok())
    {
        opts.backoff = std::time::Duration::from_millis(ms);
    }
    if let Some(n) = std::env::var("KILN_REGISTRY_CHUNK")
        .ok()
        .and_then(|v| crate::commands::build::parse_size(&v).ok())
    {
        opts.chunk_size = n.max(1);
    }
    Client::new(opts).map_err(|e| Failure::Usage(e.to_string()))
}

fn parse_ref(name: &str) -> Result<Reference, Failure> {
    Reference::parse(name).map_err(|e| Failure::Usage(format!("{name}: {e}")))
}

/// Runs `kiln pull`.
pub fn pull(args: &PullArgs) -> Result<(), Failure> {
    let platform = crate::commands::archive::platform_or_host(args.platform.as_deref())?;
    let r = parse_ref(&args.name)?;
    // Held shared, so a `kiln prune` cannot take blobs that are not named yet.
    let _lock = root::lock(&root::root_dir(&args.root), false).map_err(Failure::Build)?;
    let store = Store::open(&root::root_dir(&args.root).join("store")).map_err(|e| fail(&e))?;
    let c = client(&args.registry)?;
    let pulled = oci::registry::pull(&c, &store, &r, &platform).map_err(|e| fail(&e))?;
    // The name is set only once everything it points to is stored.
    let name = Reference {
        digest: None,
        ..r.clone()
    };
    if r.tag.is_some() || r.digest.is_none() {
        store
            .set_image(&name.to_string(), &pulled.manifest)
            .map_err(|e| fail(&e))?;
    }
    println!(
        "{}: pulled {} ({} bytes downloaded)",
        r, pulled.resolved, pulled.downloaded
    );
    Ok(())
}

/// Runs `kiln push`.
pub fn push(args: &PushArgs) -> Result<(), Failure> {
    // Held shared, so a `kiln prune` cannot take blobs that are not named yet.
    let _lock = root::lock(&root::root_dir(&args.root), false).map_err(Failure::Build)?;
    let store = Store::open(&root::root_dir(&args.root).join("store")).map_err(|e| fail(&e))?;
    let source = parse_ref(&args.name)?;
    let entry = store
        .get_image(&source.to_string())
        .map_err(|e| fail(&e))?
        .ok_or_else(|| fail(&oci::store::StoreError::UnknownImage(args.name.clone())))?;
    let target = parse_ref(args.destination.as_deref().unwrap_or(&args.name))?;
    let compression = match args.compression.as_str() {
        "gzip" => exporter::Compression::Gzip(6),
        "zstd" => exporter::Compression::Zstd(3),
        "uncompressed" => exporter::Compression::None,
        other => {
            return Err(Failure::Usage(format!(
                "--compression={other}: valid values are gzip, zstd, uncompressed"
            )))
        }
    };
    let c = client(&args.registry)?;
    let pushed = push_image(&c, &store, &entry.manifest, compression, &[target])?;
    if let Some(f) = &args.digest_file {
        std::fs::write(f, pushed.to_string()).map_err(|e| fail(&e))?;
    }
    Ok(())
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
) -> Result<oci::Digest, Failure> {
    let Some(first) = targets.first() else {
        return Err(Failure::Usage("nothing to push to".to_string()));
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
            uploads.push(s.spawn(move || oci::registry::upload_stream(c, first, chunks)));
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
        let streamed: Vec<oci::Digest> = uploads
            .into_iter()
            .filter_map(|h| h.join().ok().and_then(Result::ok))
            .map(|(d, _)| d)
            .collect();
        let early = early.join().unwrap_or_else(|_| {
            Err(oci::registry::RegistryError::Connection {
                url: first.to_string(),
                reason: "an upload thread panicked".to_string(),
            })
        });
        (converted, streamed, early)
    });
    let mut converted = converted.map_err(|e| fail(&e))?;
    let mut early = early.map_err(|e| fail(&e))?;
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
        converted =
            exporter::compressed_manifest(store, manifest, compression).map_err(|e| fail(&e))?;
    }
    for t in targets {
        let (streamed_here, early_here) = if t == first {
            (&streamed[..], (&ready[..], early.clone()))
        } else {
            (&[][..], (&[][..], Default::default()))
        };
        push_one(c, store, &converted, t, streamed_here, early_here)?;
    }
    Ok(converted)
}

/// The blobs of the store image `manifest` that a push with `compression` sends as they are: every config, and
/// the layers already compressed (all of them when the push compresses nothing).
fn ready_blobs(
    store: &Store,
    manifest: &oci::Digest,
    compression: exporter::Compression,
) -> Result<Vec<oci::manifest::Descriptor>, Failure> {
    let mut out = Vec::new();
    for d in store.image_manifests(manifest).map_err(|e| fail(&e))? {
        let m: oci::manifest::Manifest = store.read_json(&d).map_err(|e| fail(&e))?;
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

/// Pushes one manifest of the store and prints what went where; `streamed` are blobs already sent to this target
/// while they were compressed, `early` the blobs sent beside the compression and what became of them (all of
/// them are in the target already, and are counted as what they were).
pub fn push_one(
    c: &Client,
    store: &Store,
    manifest: &oci::Digest,
    target: &Reference,
    streamed: &[oci::Digest],
    early: (&[oci::Digest], oci::registry::BlobsSent),
) -> Result<oci::Digest, Failure> {
    let (sent_early, early) = early;
    let known: Vec<oci::Digest> = streamed.iter().chain(sent_early).cloned().collect();
    let pushed =
        oci::registry::push_after(c, store, manifest, target, &known).map_err(|e| fail(&e))?;
    let p = &pushed.blobs;
    let layers = layers_of(store, manifest)?;
    let sent: Vec<&oci::manifest::Descriptor> = layers
        .iter()
        .filter(|l| streamed.contains(&l.digest))
        .collect();
    // The final push found what was sent before it already there.
    let before = sent.len() + early.uploaded + early.mounted;
    eprintln!(
        "pushed {target}@{}: {} blobs uploaded ({} bytes), {} mounted, {} already there",
        pushed.digest,
        p.uploaded + sent.len() + early.uploaded,
        p.bytes + sent.iter().map(|l| l.size).sum::<u64>() + early.bytes,
        p.mounted + early.mounted,
        p.existing.saturating_sub(before)
    );
    Ok(pushed.digest)
}

/// The layers of a stored image; of every platform's image for an index.
fn layers_of(
    store: &Store,
    digest: &oci::Digest,
) -> Result<Vec<oci::manifest::Descriptor>, Failure> {
    let mut out = Vec::new();
    for d in store.image_manifests(digest).map_err(|e| fail(&e))? {
        let m: oci::manifest::Manifest = store.read_json(&d).map_err(|e| fail(&e))?;
        out.extend(m.layers);
    }
    Ok(out)
}

fn registry_name(r: Option<&str>) -> String {
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

/// Runs `kiln login`: checks the credential against the registry, then saves it as `docker login` does.
pub fn login(args: &LoginArgs) -> Result<(), Failure> {
    let registry = registry_name(args.registry.as_deref());
    let username = args
        .username
        .clone()
        .ok_or_else(|| Failure::Usage("kiln login needs -u USER".to_string()))?;
    let password = match (&args.password, args.password_stdin) {
        (Some(_), true) => {
            return Err(Failure::Usage(
                "--password and --password-stdin are mutually exclusive".to_string(),
            ))
        }
        (Some(p), false) => p.clone(),
        (None, true) => {
            let mut s = String::new();
            std::io::stdin()
                .read_to_string(&mut s)
                .map_err(|e| Failure::Usage(format!("reading the password from stdin: {e}")))?;
            s.trim_end_matches(['\n', '\r']).to_string()
        }
        (None, false) => {
            return Err(Failure::Usage(
                "kiln login needs --password-stdin (or -p PASSWORD)".to_string(),
            ))
        }
    };
    if password.is_empty() {
        return Err(Failure::Usage("the password is empty".to_string()));
    }
    let cred = Credential {
        username,
        secret: password,
    };
    let c = client(&args.registry_args)?;
    c.set_credential(&registry, cred.clone());
    c.ping(&registry).map_err(|e| fail(&e))?;
    let config = DockerConfig::locate();
    config.store(&registry, &cred).map_err(|e| fail(&e))?;
    println!(
        "Login Succeeded ({registry}; saved in {})",
        config.path.display()
    );
    Ok(())
}

/// Runs `kiln logout`.
pub fn logout(args: &LogoutArgs) -> Result<(), Failure> {
    let registry = registry_name(args.registry.as_deref());
    let config = DockerConfig::locate();
    if config.erase(&registry).map_err(|e| fail(&e))? {
        println!("Removing login credentials for {registry}");
    } else {
        println!("Not logged in to {registry}");
    }
    Ok(())
}
