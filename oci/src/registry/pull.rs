//! Pulling an image into the store: the manifest (an index resolved to this platform's image), then the config and
//! layers, downloaded a few at a time, each streamed through the store's verified ingest and resumed with a Range
//! request when a connection drops. The manifest is stored last, so the store never holds a manifest whose blobs
//! are missing.

use std::io::{Read, Write};

use reqwest::header::{ACCEPT, CONTENT_TYPE, RANGE};
use reqwest::{Method, StatusCode};

use super::transport::{unexpected, Client, Req};
use super::{RegistryError, ACCEPT_MANIFESTS, MAX_MANIFEST};
use crate::manifest::{Descriptor, Index, Manifest, MEDIA_DOCKER_INDEX, MEDIA_INDEX};
use crate::reference::Reference;
use crate::store::Store;
use crate::{Digest, Platform};

/// What a pull brought.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pulled {
    /// The platform image's manifest, now in the store.
    pub manifest: Digest,
    /// The digest the reference resolved to (the index's, for a multi-platform image), the one to pin.
    pub resolved: Digest,
    /// Bytes downloaded (blobs already in the store cost nothing).
    pub downloaded: u64,
}

fn pull_scope(r: &Reference) -> Vec<String> {
    vec![format!("repository:{}:pull", r.repository)]
}

/// Fetches a manifest or index by tag or digest: its bytes, media type and digest.
fn fetch_manifest(
    client: &Client,
    host: &str,
    r: &Reference,
    reference: &str,
) -> Result<(Vec<u8>, String, Digest), RegistryError> {
    let url = client.url(host, &format!("/v2/{}/manifests/{reference}", r.repository))?;
    let scopes = pull_scope(r);
    let resp = client.send(&Req {
        method: Method::GET,
        url: url.clone(),
        host,
        scopes: &scopes,
        headers: vec![(ACCEPT.as_str(), ACCEPT_MANIFESTS.to_string())],
        body: None,
    })?;
    if !resp.status().is_success() {
        return Err(unexpected(&Method::GET, &url, resp));
    }
    let media = resp
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_string();
    let mut bytes = Vec::new();
    resp.take(MAX_MANIFEST + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| RegistryError::Connection {
            url: url.clone(),
            reason: e.to_string(),
        })?;
    if bytes.len() as u64 > MAX_MANIFEST {
        return Err(RegistryError::Invalid {
            url,
            reason: format!("manifest larger than {MAX_MANIFEST} bytes"),
        });
    }
    let digest = Digest::sha256_of(&bytes);
    if let Ok(expected) = reference.parse::<Digest>() {
        if expected != digest {
            return Err(RegistryError::Invalid {
                url,
                reason: format!("manifest has digest {digest}, not the {expected} asked for"),
            });
        }
    }
    // Schema 1 is recognised by its media type or, when a registry omits it, by its shape.
    let v: serde_json::Value =
        serde_json::from_slice(&bytes).map_err(|e| RegistryError::Invalid {
            url: url.clone(),
            reason: format!("manifest is not JSON: {e}"),
        })?;
    if media.starts_with("application/vnd.docker.distribution.manifest.v1")
        || v.get("schemaVersion").and_then(|s| s.as_u64()) == Some(1)
    {
        return Err(RegistryError::Schema1 {
            reference: r.to_string(),
        });
    }
    let media = if media.is_empty() || media == "application/json" {
        v.get("mediaType")
            .and_then(|m| m.as_str())
            .map(str::to_string)
            .unwrap_or_else(|| {
                if v.get("manifests").is_some() {
                    MEDIA_INDEX.to_string()
                } else {
                    crate::manifest::MEDIA_MANIFEST.to_string()
                }
            })
    } else {
        media
    };
    Ok((bytes, media, digest))
}

/// Downloads one blob into the store, verified against its descriptor; resumes after a dropped connection.
fn fetch_blob(
    client: &Client,
    store: &Store,
    host: &str,
    r: &Reference,
    d: &Descriptor,
) -> Result<u64, RegistryError> {
    if store.has(&d.digest) {
        return Ok(0);
    }
    let url = client.url(host, &format!("/v2/{}/blobs/{}", r.repository, d.digest))?;
    let scopes = pull_scope(r);
    let mut writer = store.writer()?;
    let mut have: u64 = 0;
    let mut failures = 0u32;
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let mut headers = Vec::new();
        if have > 0 {
            headers.push((RANGE.as_str(), format!("bytes={have}-")));
        }
        let resp = client.send(&Req {
            method: Method::GET,
            url: url.clone(),
            host,
            scopes: &scopes,
            headers,
            body: None,
        })?;
        match resp.status() {
            StatusCode::PARTIAL_CONTENT if have > 0 => {}
            StatusCode::OK => {
                if have > 0 {
                    // The server ignored the Range: start the blob again.
                    writer = store.writer()?;
                    have = 0;
                }
            }
            _ => return Err(unexpected(&Method::GET, &url, resp)),
        }
        let mut resp = resp;
        let broke = loop {
            match resp.read(&mut buf) {
                Ok(0) => break None,
                Ok(n) => {
                    if have + n as u64 > d.size {
                        return Err(RegistryError::Invalid {
                            url,
                            reason: format!(
                                "blob is larger than the {} bytes its descriptor gives",
                                d.size
                            ),
                        });
                    }
                    writer
                        .write_all(&buf[..n])
                        .map_err(|e| crate::store::StoreError::Io {
                            path: store.root().join("ingest"),
                            source: e,
                        })?;
                    have += n as u64;
                }
                Err(e) => break Some(e),
            }
        };
        match broke {
            None if have == d.size => break,
            None => {
                if failures >= client.opts.retries {
                    return Err(RegistryError::Invalid {
                        url,
                        reason: format!(
                            "blob ended after {have} of its {} bytes, {failures} times",
                            d.size
                        ),
                    });
                }
            }
            Some(e) => {
                if failures >= client.opts.retries {
                    return Err(RegistryError::Connection {
                        url,
                        reason: format!("download broke at byte {have} of {}: {e}", d.size),
                    });
                }
            }
        }
        failures += 1;
        std::thread::sleep(client.opts.backoff.saturating_mul(failures));
    }
    writer.commit(Some(&d.digest)).map_err(|e| match e {
        crate::store::StoreError::DigestMismatch { expected, actual } => RegistryError::Invalid {
            url: url.clone(),
            reason: format!("blob has digest {actual}, not {expected}"),
        },
        other => other.into(),
    })?;
    Ok(d.size)
}

/// Pulls `r` for `platform` into `store` from its registry (or a mirror of it) and returns what it stored. Names
/// are left to the caller.
pub fn pull(
    client: &Client,
    store: &Store,
    r: &Reference,
    platform: &Platform,
) -> Result<Pulled, RegistryError> {
    let mut hosts: Vec<String> = client
        .opts
        .mirrors
        .get(&r.registry)
        .cloned()
        .unwrap_or_default();
    hosts.push(r.endpoint_host().to_string());
    let mut last = None;
    for (i, host) in hosts.iter().enumerate() {
        match pull_from(client, store, host, r, platform) {
            Ok(p) => return Ok(p),
            // A mirror that fails is skipped, as Docker does; the registry's own error is the one reported.
            Err(e) if i + 1 < hosts.len() => last = Some(e),
            Err(e) => return Err(e),
        }
    }
    Err(last.unwrap_or_else(|| RegistryError::Connection {
        url: r.to_string(),
        reason: "no registry to pull from".to_string(),
    }))
}

fn pull_from(
    client: &Client,
    store: &Store,
    host: &str,
    r: &Reference,
    platform: &Platform,
) -> Result<Pulled, RegistryError> {
    let (mut bytes, mut media, resolved) =
        fetch_manifest(client, host, r, &r.manifest_reference())?;
    let mut index_bytes = Vec::new();
    let mut depth = 0;
    while media == MEDIA_INDEX || media == MEDIA_DOCKER_INDEX {
        depth += 1;
        let index: Index = serde_json::from_slice(&bytes).map_err(|e| RegistryError::Invalid {
            url: r.to_string(),
            reason: format!("index: {e}"),
        })?;
        let chosen = index
            .manifests
            .iter()
            .find(|m| m.platform.as_ref().is_some_and(|p| platform.matches(p)))
            .ok_or_else(|| RegistryError::NoPlatform {
                reference: r.to_string(),
                platform: platform.to_string(),
                offered: index
                    .manifests
                    .iter()
                    .filter_map(|m| m.platform.as_ref().map(|p| p.to_string()))
                    .collect::<Vec<_>>()
                    .join(", "),
            })?
            .clone();
        if depth > 2 {
            return Err(RegistryError::Invalid {
                url: r.to_string(),
                reason: "indexes nested too deeply".to_string(),
            });
        }
        index_bytes.push(bytes);
        let (b, m, d) = fetch_manifest(client, host, r, &chosen.digest.to_string())?;
        if d != chosen.digest {
            return Err(RegistryError::Invalid {
                url: r.to_string(),
                reason: format!("manifest {d} is not the {} its index names", chosen.digest),
            });
        }
        bytes = b;
        media = m;
    }
    let manifest: Manifest =
        serde_json::from_slice(&bytes).map_err(|e| RegistryError::Invalid {
            url: r.to_string(),
            reason: format!("manifest ({media}): {e}"),
        })?;
    let mut blobs = vec![manifest.config.clone()];
    blobs.extend(manifest.layers.iter().cloned());
    let downloaded = fetch_all(client, store, host, r, &blobs)?;
    // The config is the image: one that does not parse would only fail later, at a FROM far from its cause.
    if let Err(e) = store.read_json::<crate::image::Image>(&manifest.config.digest) {
        return Err(RegistryError::Invalid {
            url: r.to_string(),
            reason: format!(
                "config {} is not an image config: {e}",
                manifest.config.digest
            ),
        });
    }
    super::sources::record(store, &r.registry, &r.repository, &blobs);
    let digest = store.put_bytes(&bytes)?;
    for b in &index_bytes {
        store.put_bytes(b)?;
    }
    Ok(Pulled {
        manifest: digest,
        resolved,
        downloaded,
    })
}

/// Downloads `blobs` with at most `concurrency` at once; the first failure stops the others from starting.
fn fetch_all(
    client: &Client,
    store: &Store,
    host: &str,
    r: &Reference,
    blobs: &[Descriptor],
) -> Result<u64, RegistryError> {
    let next = std::sync::atomic::AtomicUsize::new(0);
    let failed = std::sync::atomic::AtomicBool::new(false);
    let workers = client.opts.concurrency.clamp(1, blobs.len().max(1));
    let results: Vec<Result<u64, RegistryError>> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..workers)
            .map(|_| {
                s.spawn(|| {
                    let mut total = 0u64;
                    loop {
                        if failed.load(std::sync::atomic::Ordering::Relaxed) {
                            return Ok(total);
                        }
                        let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        let Some(d) = blobs.get(i) else {
                            return Ok(total);
                        };
                        match fetch_blob(client, store, host, r, d) {
                            Ok(n) => total += n,
                            Err(e) => {
                                failed.store(true, std::sync::atomic::Ordering::Relaxed);
                                return Err(e);
                            }
                        }
                    }
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join().unwrap_or_else(|_| {
                    Err(RegistryError::Connection {
                        url: r.to_string(),
                        reason: "a download thread panicked".to_string(),
                    })
                })
            })
            .collect()
    });
    let mut total = 0;
    for res in results {
        total += res?;
    }
    Ok(total)
}

/// Fetches the manifest `r` names as it is, whatever it describes (an artifact such as a build cache): its bytes,
/// media type and digest, verified when `r` names a digest. Nothing is stored.
pub fn fetch_manifest_bytes(
    client: &Client,
    r: &Reference,
) -> Result<(Vec<u8>, String, Digest), RegistryError> {
    fetch_manifest(client, r.endpoint_host(), r, &r.manifest_reference())
}

/// Downloads one blob of `r`'s repository into the store (verified, resumed after a dropped connection); returns
/// the bytes downloaded (0 when the store already had it).
pub fn fetch_blob_into(
    client: &Client,
    store: &Store,
    r: &Reference,
    blob: &Descriptor,
) -> Result<u64, RegistryError> {
    fetch_blob(client, store, r.endpoint_host(), r, blob)
}

/// Resolves `r` to the digest its registry gives it now, without downloading anything else.
pub fn resolve(client: &Client, r: &Reference) -> Result<Digest, RegistryError> {
    let (_, _, d) = fetch_manifest(client, r.endpoint_host(), r, &r.manifest_reference())?;
    Ok(d)
}
