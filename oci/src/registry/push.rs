//! Pushing an image from the store: every blob first (skipped when the registry has it, mounted from another
//! repository of the same registry when kiln knows one that holds it, else uploaded: one PUT for small blobs, PATCH
//! chunks for large ones, resumed from the registry's recorded offset when a chunk fails), streamed from the store
//! file, then the manifest. A registry therefore never holds a manifest of kiln's whose blobs are missing.

use std::io::{Read, Seek, SeekFrom};

use reqwest::blocking::Body;

use reqwest::header::{CONTENT_LENGTH, CONTENT_TYPE, LOCATION};
use reqwest::{Method, StatusCode};

use super::resume::{self, Saved, Sessions};
use super::transport::{unexpected, BodyFn, Client, Req};
use super::RegistryError;
use crate::manifest::{
    Descriptor, Index, Manifest, MEDIA_DOCKER_INDEX, MEDIA_INDEX, MEDIA_MANIFEST,
};
use crate::reference::Reference;
use crate::store::{Store, StoreError};
use crate::Digest;

/// What a push did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pushed {
    /// The manifest (or index) digest the registry now serves.
    pub digest: Digest,
    /// What became of its blobs.
    pub blobs: BlobsSent,
}

#[derive(Default)]
struct Tally {
    uploaded: usize,
    mounted: usize,
    existing: usize,
    bytes: u64,
    resent: u64,
    resumed: u64,
    /// Blobs this push already put in the target repository: counted as there without asking.
    known: Vec<Digest>,
}

impl Tally {
    fn sent(self) -> BlobsSent {
        BlobsSent {
            uploaded: self.uploaded,
            mounted: self.mounted,
            existing: self.existing,
            bytes: self.bytes,
            resent: self.resent,
            resumed: self.resumed,
        }
    }
}

fn push_scopes(r: &Reference, from: Option<&str>) -> Vec<String> {
    let mut s = vec![format!("repository:{}:pull,push", r.repository)];
    if let Some(f) = from {
        s.push(format!("repository:{f}:pull"));
    }
    s
}

/// Resolves a Location header against the request URL (registries send both absolute and relative ones).
fn resolve_location(
    base: &str,
    resp: &reqwest::blocking::Response,
) -> Result<String, RegistryError> {
    let loc = resp
        .headers()
        .get(LOCATION)
        .and_then(|v| v.to_str().ok())
        .ok_or_else(|| RegistryError::Invalid {
            url: base.to_string(),
            reason: "upload response carries no Location".to_string(),
        })?;
    let base = reqwest::Url::parse(base).map_err(|e| RegistryError::Invalid {
        url: base.to_string(),
        reason: e.to_string(),
    })?;
    base.join(loc)
        .map(|u| u.to_string())
        .map_err(|e| RegistryError::Invalid {
            url: base.to_string(),
            reason: format!("bad Location {loc:?}: {e}"),
        })
}

fn with_query(url: &str, key: &str, value: &str) -> String {
    let sep = if url.contains('?') { '&' } else { '?' };
    format!("{url}{sep}{key}={value}")
}

/// Sections up to this size are read into memory and sent as one buffer. A reader-backed body crosses reqwest's
/// blocking bridge 8 KiB at a time — a read, a hand-off to the runtime thread and a `writev` each: 1.9 s of
/// system time for a 367 MB upload here, against a few tenths with whole buffers. The default chunk size matches,
/// so every chunk is sent this way; at most [`ClientOptions::concurrency`](super::ClientOptions) of them are held.
const IN_MEMORY_SECTION: u64 = 16 << 20;

/// `len` bytes of the stored blob `d` from `start`, as a request body.
fn section_body(store: &Store, d: &Digest, start: u64, len: u64) -> std::io::Result<Body> {
    let mut f = store.open_blob(d).map_err(std::io::Error::other)?;
    f.seek(SeekFrom::Start(start))?;
    if len <= IN_MEMORY_SECTION {
        let mut buf = Vec::with_capacity(len as usize);
        f.take(len).read_to_end(&mut buf)?;
        if buf.len() as u64 != len {
            return Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                format!("blob {d} ends before byte {}", start + len),
            ));
        }
        return Ok(Body::from(buf));
    }
    Ok(Body::sized(f.take(len), len))
}

/// The offset the registry has received so far of an upload, from its `Range: 0-N` answer.
fn upload_offset(
    client: &Client,
    host: &str,
    scopes: &[String],
    url: &str,
) -> Option<(u64, String)> {
    let resp = client
        .send(&Req {
            method: Method::GET,
            url: url.to_string(),
            host,
            scopes,
            headers: vec![],
            body: None,
        })
        .ok()?;
    if resp.status() != StatusCode::NO_CONTENT {
        return None;
    }
    let next = resolve_location(url, &resp).unwrap_or_else(|_| url.to_string());
    let end = resp
        .headers()
        .get("range")
        .and_then(|v| v.to_str().ok())
        .and_then(|r| r.rsplit('-').next())
        .and_then(|n| n.trim().parse::<u64>().ok());
    // distribution answers `0-0` for a session with nothing in it (and, ambiguously, with one byte): taken as
    // empty, which at worst sends that byte again.
    Some((end.filter(|e| *e > 0).map_or(0, |e| e + 1), next))
}

/// Sends a request without a body and returns its response when the status is `expect`, else the error naming it.
fn send_expecting(
    client: &Client,
    method: Method,
    url: &str,
    host: &str,
    scopes: &[String],
    expect: StatusCode,
) -> Result<reqwest::blocking::Response, RegistryError> {
    let resp = client.send(&Req {
        method: method.clone(),
        url: url.to_string(),
        host,
        scopes,
        headers: vec![(CONTENT_LENGTH.as_str(), "0".to_string())],
        body: None,
    })?;
    if resp.status() != expect {
        return Err(unexpected(&method, url, resp));
    }
    Ok(resp)
}

/// Opens an upload session in `target`'s repository and returns its location.
fn start_upload(
    client: &Client,
    host: &str,
    target: &Reference,
    scopes: &[String],
) -> Result<String, RegistryError> {
    let url = client.url(host, &format!("/v2/{}/blobs/uploads/", target.repository))?;
    let resp = send_expecting(
        client,
        Method::POST,
        &url,
        host,
        scopes,
        StatusCode::ACCEPTED,
    )?;
    resolve_location(&url, &resp)
}

/// Closes an upload session whose bytes are all sent, naming the blob's digest.
fn finish_upload(
    client: &Client,
    host: &str,
    scopes: &[String],
    location: &str,
    digest: &Digest,
) -> Result<(), RegistryError> {
    let url = with_query(location, "digest", &digest.to_string());
    send_expecting(client, Method::PUT, &url, host, scopes, StatusCode::CREATED).map(|_| ())
}

/// The headers of a request carrying `len` bytes of a blob.
fn octet_stream(len: u64) -> Vec<(&'static str, String)> {
    vec![
        (
            CONTENT_TYPE.as_str(),
            "application/octet-stream".to_string(),
        ),
        (CONTENT_LENGTH.as_str(), len.to_string()),
    ]
}

/// Closes an upload session with its last `len` bytes in the same request (a PUT with a body, which the
/// distribution spec allows): one request fewer than a PATCH and then a PUT.
fn finish_upload_with(
    client: &Client,
    host: &str,
    scopes: &[String],
    location: &str,
    digest: &Digest,
    len: u64,
    body: BodyFn<'_>,
) -> Result<(), RegistryError> {
    let url = with_query(location, "digest", &digest.to_string());
    let resp = client.send(&Req {
        method: Method::PUT,
        url: url.clone(),
        host,
        scopes,
        headers: octet_stream(len),
        body: Some(body),
    })?;
    if resp.status() != StatusCode::CREATED {
        return Err(unexpected(&Method::PUT, &url, resp));
    }
    Ok(())
}

/// Where a blob stands in a push's target before any upload.
enum Standing {
    /// The repository holds it.
    There,
    /// Mounted just now from another repository of the same registry.
    Mounted,
    /// Neither; with the upload session a mount request opened instead, when one did.
    Absent(Option<String>),
}

fn standing(
    client: &Client,
    store: &Store,
    host: &str,
    target: &Reference,
    digest: &Digest,
) -> Result<Standing, RegistryError> {
    let repo = &target.repository;
    let scopes = push_scopes(target, None);
    let blob_url = client.url(host, &format!("/v2/{repo}/blobs/{digest}"))?;
    let head = client.send(&Req {
        method: Method::HEAD,
        url: blob_url.clone(),
        host,
        scopes: &scopes,
        headers: vec![],
        body: None,
    })?;
    if head.status().is_success() {
        return Ok(Standing::There);
    }
    // Cross-repository mount: asked once per known source; 201 means done, 202 means an upload began instead.
    let sources = super::sources::repositories(store, digest, &target.registry, repo);
    for from in sources.iter().take(3) {
        let scopes = push_scopes(target, Some(from));
        let url = client.url(
            host,
            &format!("/v2/{repo}/blobs/uploads/?mount={digest}&from={from}"),
        )?;
        let resp = client.send(&Req {
            method: Method::POST,
            url: url.clone(),
            host,
            scopes: &scopes,
            headers: vec![(CONTENT_LENGTH.as_str(), "0".to_string())],
            body: None,
        })?;
        match resp.status() {
            StatusCode::CREATED => return Ok(Standing::Mounted),
            StatusCode::ACCEPTED => {
                return Ok(Standing::Absent(Some(resolve_location(&url, &resp)?)))
            }
            _ => {}
        }
    }
    Ok(Standing::Absent(None))
}

/// How a push's target came to hold a blob without an upload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Held {
    /// The repository had it.
    Already,
    /// Mounted just now from another repository of the same registry.
    Mounted,
}

/// Whether `target`'s repository holds the blob `digest`, mounting it from another repository of the same
/// registry where kiln knows one: how a push confirms a layer it remembers only by its digest (see
/// `exporter::Keep`) before naming it in a manifest. An upload session a mount request opened is cancelled.
pub fn held_at(
    client: &Client,
    store: &Store,
    target: &Reference,
    digest: &Digest,
) -> Result<Option<Held>, RegistryError> {
    let host = target.endpoint_host().to_string();
    match standing(client, store, &host, target, digest)? {
        Standing::There => Ok(Some(Held::Already)),
        Standing::Mounted => Ok(Some(Held::Mounted)),
        Standing::Absent(session) => {
            if let Some(location) = session {
                let scopes = push_scopes(target, None);
                let _ = client.send(&Req {
                    method: Method::DELETE,
                    url: location,
                    host: &host,
                    scopes: &scopes,
                    headers: vec![],
                    body: None,
                });
            }
            Ok(None)
        }
    }
}

fn upload_blob(
    client: &Client,
    store: &Store,
    host: &str,
    target: &Reference,
    d: &Descriptor,
    tally: &std::sync::Mutex<Tally>,
) -> Result<(), RegistryError> {
    upload_blob_once(client, store, host, target, d, tally).map_err(|e| too_large(e, d))
}

/// A 413 answer to an upload, said as what it is: this blob is above the registry's limit.
fn too_large(e: RegistryError, d: &Descriptor) -> RegistryError {
    match e {
        RegistryError::Status { url, status, .. } if status.starts_with("413") => {
            RegistryError::BlobTooLarge {
                url,
                status,
                digest: d.digest.clone(),
                size: d.size,
            }
        }
        e => e,
    }
}

fn upload_blob_once(
    client: &Client,
    store: &Store,
    host: &str,
    target: &Reference,
    d: &Descriptor,
    tally: &std::sync::Mutex<Tally>,
) -> Result<(), RegistryError> {
    let count = |f: &dyn Fn(&mut Tally)| {
        if let Ok(mut t) = tally.lock() {
            f(&mut t)
        }
    };
    if tally.lock().is_ok_and(|t| t.known.contains(&d.digest)) {
        count(&|t| t.existing += 1);
        return Ok(());
    }
    let scopes = push_scopes(target, None);
    let session = match standing(client, store, host, target, &d.digest)? {
        Standing::There => {
            count(&|t| t.existing += 1);
            return Ok(());
        }
        Standing::Mounted => {
            count(&|t| t.mounted += 1);
            return Ok(());
        }
        Standing::Absent(location) => location,
    };
    // Only now are the bytes needed: a blob the registry has, or mounts, needs no copy here.
    if !store.has(&d.digest) {
        return Err(RegistryError::MissingLocal {
            reference: target.to_string(),
            digest: d.digest.clone(),
        });
    }
    if d.size <= client.opts.chunk_size {
        let location = match session {
            Some(l) => l,
            None => start_upload(client, host, target, &scopes)?,
        };
        let body = move || section_body(store, &d.digest, 0, d.size);
        finish_upload_with(client, host, &scopes, &location, &d.digest, d.size, &body)?;
        count(&|t| {
            t.uploaded += 1;
            t.bytes += d.size
        });
        return Ok(());
    }
    // A chunked upload: its session is saved after every chunk, so that a rerun after kill -9 goes on from it.
    let sessions = Sessions::new(store, target);
    let key = resume::blob_key(&d.digest);
    let earlier =
        sessions.load(&key).and_then(
            |s| match upload_offset(client, host, &scopes, &s.location) {
                Some((at, next)) if at <= d.size => Some((at, next)),
                _ => {
                    sessions.forget(&key);
                    None
                }
            },
        );
    let (mut location, mut offset) = match (earlier, session) {
        (Some((at, next)), opened) => {
            if let Some(opened) = opened {
                cancel(client, host, &scopes, &opened);
            }
            count(&|t| t.resumed += at);
            (next, at)
        }
        (None, opened) => {
            let l = match opened {
                Some(l) => l,
                None => start_upload(client, host, target, &scopes)?,
            };
            (l, 0)
        }
    };
    let save = |location: &str, offset: u64| {
        sessions.save(
            &key,
            &Saved {
                location: location.to_string(),
                offset,
                chunks: Vec::new(),
            },
        )
    };
    save(&location, offset);
    let first = offset;
    // Bytes handed to requests, every attempt counted (the transport's own retries too).
    let wire = std::sync::atomic::AtomicU64::new(0);
    // Failed attempts since the last chunk the registry took.
    let mut setbacks = 0u32;
    while offset < d.size {
        let len = client.opts.chunk_size.min(d.size - offset);
        let start = offset;
        let wire = &wire;
        let body = move || {
            wire.fetch_add(len, std::sync::atomic::Ordering::Relaxed);
            section_body(store, &d.digest, start, len)
        };
        let sent = patch_chunk(client, host, &scopes, &location, start, len, &body);
        match sent {
            Ok(resp) if resp.status() == StatusCode::ACCEPTED => {
                location = resolve_location(&location, &resp)?;
                offset += len;
                setbacks = 0;
                save(&location, offset);
                count(&|t| t.bytes += len);
            }
            other => {
                // Ask the registry how much it has and carry on from there; a session it no longer has (a
                // registry that cancels one whose chunk was cut, or whose answer was lost) is begun again.
                setbacks += 1;
                if setbacks > client.opts.retries.max(1) {
                    return Err(match other {
                        Ok(resp) => unexpected(&Method::PATCH, &location, resp),
                        Err(e) => e,
                    });
                }
                let (at, next) = match upload_offset(client, host, &scopes, &location) {
                    Some((at, next)) if at <= d.size => (at, next),
                    _ => (0, start_upload(client, host, target, &scopes)?),
                };
                count(&|t| t.bytes = t.bytes.saturating_sub(offset - at.min(offset)));
                offset = at;
                location = next;
                save(&location, offset);
            }
        }
    }
    finish_upload(client, host, &scopes, &location, &d.digest)?;
    sessions.forget(&key);
    let wire = wire.into_inner();
    count(&|t| {
        t.uploaded += 1;
        t.resent += wire.saturating_sub(d.size - first);
    });
    Ok(())
}

/// Cancels an upload session that will not be used (best effort: an abandoned one expires anyway).
fn cancel(client: &Client, host: &str, scopes: &[String], location: &str) {
    let _ = client.send(&Req {
        method: Method::DELETE,
        url: location.to_string(),
        host,
        scopes,
        headers: vec![],
        body: None,
    });
}

/// Sends `len` bytes (from `body`) at `start` of the upload at `location`: one PATCH with its Content-Range.
fn patch_chunk(
    client: &Client,
    host: &str,
    scopes: &[String],
    location: &str,
    start: u64,
    len: u64,
    body: BodyFn<'_>,
) -> Result<reqwest::blocking::Response, RegistryError> {
    client.send(&Req {
        method: Method::PATCH,
        url: location.to_string(),
        host,
        scopes,
        headers: {
            let mut h = octet_stream(len);
            h.push(("content-range", format!("{}-{}", start, start + len - 1)));
            h
        },
        body: Some(body),
    })
}

fn upload_all(
    client: &Client,
    store: &Store,
    host: &str,
    target: &Reference,
    blobs: &[Descriptor],
    tally: &std::sync::Mutex<Tally>,
) -> Result<(), RegistryError> {
    let next = std::sync::atomic::AtomicUsize::new(0);
    let failed = std::sync::atomic::AtomicBool::new(false);
    let workers = client.opts.concurrency.clamp(1, blobs.len().max(1));
    std::thread::scope(|s| {
        let handles: Vec<_> = (0..workers)
            .map(|_| {
                s.spawn(|| loop {
                    if failed.load(std::sync::atomic::Ordering::Relaxed) {
                        return Ok(());
                    }
                    let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    let Some(d) = blobs.get(i) else { return Ok(()) };
                    if let Err(e) = upload_blob(client, store, host, target, d, tally) {
                        failed.store(true, std::sync::atomic::Ordering::Relaxed);
                        return Err(e);
                    }
                })
            })
            .collect();
        let mut first = Ok(());
        for h in handles {
            let r = h.join().unwrap_or_else(|_| {
                Err(RegistryError::Connection {
                    url: target.to_string(),
                    reason: "an upload thread panicked".to_string(),
                })
            });
            if first.is_ok() {
                first = r;
            }
        }
        first
    })
}

fn put_manifest(
    client: &Client,
    host: &str,
    target: &Reference,
    reference: &str,
    media: &str,
    bytes: &[u8],
) -> Result<(), RegistryError> {
    let scopes = push_scopes(target, None);
    let url = client.url(
        host,
        &format!("/v2/{}/manifests/{reference}", target.repository),
    )?;
    let owned = bytes.to_vec();
    let body = move || Ok(Body::from(owned.clone()));
    let resp = client.send(&Req {
        method: Method::PUT,
        url: url.clone(),
        host,
        scopes: &scopes,
        headers: vec![(CONTENT_TYPE.as_str(), media.to_string())],
        body: Some(&body),
    })?;
    if resp.status() != StatusCode::CREATED {
        return Err(unexpected(&Method::PUT, &url, resp));
    }
    Ok(())
}

/// Pushes the manifest (or index) `digest` of `store` to `target`, tagging it with `target`'s tag when it has one.
pub fn push(
    client: &Client,
    store: &Store,
    digest: &Digest,
    target: &Reference,
) -> Result<Pushed, RegistryError> {
    push_after(client, store, digest, target, &[])
}

/// [`push`] after the blobs `known` were put in `target`'s repository by this same push (streamed while they were
/// compressed, or sent beside that): they are counted as there without a HEAD each.
pub fn push_after(
    client: &Client,
    store: &Store,
    digest: &Digest,
    target: &Reference,
    known: &[Digest],
) -> Result<Pushed, RegistryError> {
    let host = target.endpoint_host().to_string();
    let tally = std::sync::Mutex::new(Tally {
        known: known.to_vec(),
        ..Tally::default()
    });
    let media = push_tree(client, store, &host, target, digest, &tally, 0)?;
    let bytes = store.read_blob(digest)?;
    let reference = target.tag.clone().unwrap_or_else(|| digest.to_string());
    put_manifest(client, &host, target, &reference, &media, &bytes)?;
    Ok(Pushed {
        digest: digest.clone(),
        blobs: tally.into_inner().unwrap_or_default().sent(),
    })
}

/// Uploads `blobs` of the store to `target`'s repository — each skipped when the registry has it, mounted when kiln
/// knows another repository there that holds it — and no manifest: what a push sends while its other layers are
/// still being compressed (the config, a base image's layers).
pub fn push_blobs(
    client: &Client,
    store: &Store,
    blobs: &[Descriptor],
    target: &Reference,
) -> Result<BlobsSent, RegistryError> {
    let host = target.endpoint_host().to_string();
    let tally = std::sync::Mutex::new(Tally::default());
    upload_all(client, store, &host, target, blobs, &tally)?;
    super::sources::record(store, &target.registry, &target.repository, blobs);
    Ok(tally.into_inner().unwrap_or_default().sent())
}

/// What a push, or [`push_blobs`], did with the blobs.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BlobsSent {
    /// Blobs uploaded.
    pub uploaded: usize,
    /// Blobs mounted from another repository.
    pub mounted: usize,
    /// Blobs the registry already had.
    pub existing: usize,
    /// Bytes sent.
    pub bytes: u64,
    /// Bytes sent more than once: chunks whose request failed and that the registry had not kept, and blobs
    /// begun again because the registry dropped their session. What a flaky network costs.
    pub resent: u64,
    /// Bytes not sent because an earlier, interrupted push had left them in an upload session the registry
    /// still had.
    pub resumed: u64,
}

/// Uploads what `digest` refers to (an index's manifests, put by digest; a manifest's blobs) and returns its media
/// type; the caller puts `digest` itself.
fn push_tree(
    client: &Client,
    store: &Store,
    host: &str,
    target: &Reference,
    digest: &Digest,
    tally: &std::sync::Mutex<Tally>,
    depth: u32,
) -> Result<String, RegistryError> {
    let bytes = store.read_blob(digest).map_err(|e| match e {
        StoreError::MissingBlob(d) => RegistryError::MissingLocal {
            reference: target.to_string(),
            digest: d,
        },
        e => e.into(),
    })?;
    let v: serde_json::Value =
        serde_json::from_slice(&bytes).map_err(|e| RegistryError::Invalid {
            url: digest.to_string(),
            reason: e.to_string(),
        })?;
    let media = v
        .get("mediaType")
        .and_then(|m| m.as_str())
        .unwrap_or(if v.get("manifests").is_some() {
            MEDIA_INDEX
        } else {
            MEDIA_MANIFEST
        })
        .to_string();
    if media == MEDIA_INDEX || media == MEDIA_DOCKER_INDEX {
        let index: Index = serde_json::from_slice(&bytes).map_err(|e| RegistryError::Invalid {
            url: digest.to_string(),
            reason: e.to_string(),
        })?;
        if depth > 2 {
            return Err(RegistryError::Invalid {
                url: digest.to_string(),
                reason: "indexes nested too deeply".to_string(),
            });
        }
        for m in &index.manifests {
            let child = push_tree(client, store, host, target, &m.digest, tally, depth + 1)?;
            let child_bytes = store.read_blob(&m.digest)?;
            put_manifest(
                client,
                host,
                target,
                &m.digest.to_string(),
                &child,
                &child_bytes,
            )?;
        }
        return Ok(media);
    }
    let manifest: Manifest =
        serde_json::from_slice(&bytes).map_err(|e| RegistryError::Invalid {
            url: digest.to_string(),
            reason: e.to_string(),
        })?;
    let mut blobs = vec![manifest.config.clone()];
    blobs.extend(manifest.layers.iter().cloned());
    upload_all(client, store, host, target, &blobs, tally)?;
    super::sources::record(store, &target.registry, &target.repository, &blobs);
    Ok(media)
}

/// Bytes of each PATCH of a streamed upload: large enough that a request's round trip — and the registry's own
/// work per request (docker-registry reopens the upload and saves its hash state each time) — is small beside its
/// transfer, small enough for the memory target. A 367 MB layer, compressed as it is pushed (medians of 3, peak
/// RSS): 2 MiB chunks 4.5 s / 60 MiB, 4 MiB 4.2 s / 78 MiB, 8 MiB 4.1 s / 108–121 MiB. The chunks are buffers
/// passed round (see [`Chunks`]).
pub const STREAM_CHUNK: usize = 4 << 20;

/// The buffers of a streamed upload: one being filled, one waiting, one being sent.
const STREAM_BUFFERS: usize = 3;

/// What a [`ChunkWriter`] hands its upload: whole chunks, then the rest with the digest of all of it.
enum Piece {
    Chunk(Vec<u8>),
    Last(Vec<u8>, Digest),
}

/// The writing end of a streamed upload: what is written is gathered into chunks of [`STREAM_CHUNK`] bytes, each
/// handed whole to [`upload_stream`] on its own thread. A chunk is one request body sent in one piece, which a
/// reader-backed body (8 KiB at a time, through a pipe and a thread hand-off each) cannot do; and a chunk can be
/// sent again when its request fails. [`ChunkWriter::finish`] ends the stream with the blob's digest; dropping the
/// writer without it abandons the upload.
pub struct ChunkWriter {
    buf: Vec<u8>,
    tx: Option<std::sync::mpsc::SyncSender<Piece>>,
    /// Buffers the upload has finished with.
    spare: std::sync::mpsc::Receiver<Vec<u8>>,
    /// Buffers made so far (never more than [`STREAM_BUFFERS`]).
    made: usize,
}

/// The receiving end of a [`ChunkWriter`], for [`upload_stream`]: each chunk's buffer goes back to the writer once
/// sent, so a push allocates [`STREAM_BUFFERS`] of them, not one per chunk.
pub struct Chunks {
    rx: std::sync::mpsc::Receiver<Piece>,
    back: std::sync::mpsc::SyncSender<Vec<u8>>,
}

impl Chunks {
    /// The next piece, until the writer is finished or dropped.
    fn next(&self) -> Option<Piece> {
        self.rx.recv().ok()
    }

    /// Hands a sent chunk's buffer back to the writer.
    pub fn give_back(&self, mut buf: Vec<u8>) {
        buf.clear();
        let _ = self.back.try_send(buf);
    }
}

impl ChunkWriter {
    /// A writer and the receiving end to give to [`upload_stream`].
    pub fn channel() -> (ChunkWriter, Chunks) {
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        let (back, spare) = std::sync::mpsc::sync_channel(STREAM_BUFFERS);
        (
            ChunkWriter {
                buf: Vec::with_capacity(STREAM_CHUNK),
                tx: Some(tx),
                spare,
                made: 1,
            },
            Chunks { rx, back },
        )
    }

    /// An empty buffer: a spare one, a new one while fewer than [`STREAM_BUFFERS`] exist, else the next one the
    /// upload gives back.
    fn fresh(&mut self) -> Vec<u8> {
        if let Ok(b) = self.spare.try_recv() {
            return b;
        }
        if self.made < STREAM_BUFFERS {
            self.made += 1;
            return Vec::with_capacity(STREAM_CHUNK);
        }
        self.spare
            .recv()
            .unwrap_or_else(|_| Vec::with_capacity(STREAM_CHUNK))
    }

    fn send(&mut self) -> std::io::Result<()> {
        let next = self.fresh();
        let chunk = std::mem::replace(&mut self.buf, next);
        self.hand_over(Piece::Chunk(chunk))
    }

    fn hand_over(&mut self, piece: Piece) -> std::io::Result<()> {
        match &self.tx {
            Some(tx) if tx.send(piece).is_ok() => Ok(()),
            _ => {
                self.tx = None;
                Err(std::io::Error::other("the streamed upload stopped"))
            }
        }
    }

    /// Ends the stream: the last partial chunk goes with `digest` — the blob's, hashed by whoever wrote the same
    /// bytes to the store, so the upload does not hash them a second time — and the upload puts both at once.
    pub fn finish(mut self, digest: Digest) -> std::io::Result<()> {
        let rest = std::mem::take(&mut self.buf);
        self.hand_over(Piece::Last(rest, digest))
    }
}

impl std::io::Write for ChunkWriter {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        let n = (STREAM_CHUNK - self.buf.len()).min(data.len());
        self.buf.extend_from_slice(&data[..n]);
        if self.buf.len() == STREAM_CHUNK {
            self.send()?;
        }
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// A sent chunk's buffer, to be filled again. The request is done with its body, but the HTTP client's connection
/// task drops its copy of the handle a moment after the response arrives; taking the buffer back while it is still
/// shared would copy all of it into a new allocation (a 4 MiB allocation and copy per chunk, and freed chunks
/// left in the allocator's arenas: ~17 MiB of the torch push's peak). So it waits for that, briefly, and only
/// then gives up and lets a new buffer be made.
fn reclaim(mut chunk: bytes::Bytes) -> Vec<u8> {
    for _ in 0..200 {
        match chunk.try_into_mut() {
            Ok(owned) => return Vec::from(owned),
            Err(shared) => chunk = shared,
        }
        std::thread::sleep(std::time::Duration::from_micros(250));
    }
    Vec::with_capacity(STREAM_CHUNK)
}

/// What [`upload_stream`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Streamed {
    /// The blob's digest, as the writer finished with it.
    pub digest: Digest,
    /// Its size.
    pub size: u64,
    /// Bytes sent more than once (chunks whose request failed and that the registry had not kept).
    pub resent: u64,
    /// Bytes not sent because an interrupted earlier push had left them in a session the registry still had.
    pub resumed: u64,
}

/// One streamed upload's session: where it is, what it has sent, and its record for a rerun.
struct StreamSession<'a> {
    client: &'a Client,
    host: &'a str,
    scopes: &'a [String],
    sessions: Sessions,
    key: String,
    location: String,
    /// End offset and CRC-32 of each chunk the registry has, as saved for a rerun.
    chunks: Vec<(u64, u32)>,
    /// Bytes handed to requests, every attempt counted.
    wire: std::sync::atomic::AtomicU64,
}

impl StreamSession<'_> {
    fn save(&self, offset: u64) {
        self.sessions.save(
            &self.key,
            &Saved {
                location: self.location.clone(),
                offset,
                chunks: self.chunks.clone(),
            },
        );
    }

    /// Sends `chunk`, which starts at `start` of the stream, from `at` (the registry has what is before): one
    /// PATCH, and on failure another from wherever the registry then says it stands inside the chunk. A
    /// registry that stands elsewhere, or has dropped the session, ends the upload: the bytes before this chunk
    /// are gone from this side.
    fn send(&mut self, chunk: &bytes::Bytes, start: u64, mut at: u64) -> Result<(), RegistryError> {
        let end = start + chunk.len() as u64;
        let mut setbacks = 0u32;
        while at < end {
            let part = chunk.slice((at - start) as usize..);
            let len = part.len() as u64;
            let wire = &self.wire;
            let body = || {
                wire.fetch_add(len, std::sync::atomic::Ordering::Relaxed);
                Ok(reqwest::blocking::Body::from(part.clone()))
            };
            let sent = patch_chunk(
                self.client,
                self.host,
                self.scopes,
                &self.location,
                at,
                len,
                &body,
            );
            match sent {
                Ok(resp) if resp.status() == StatusCode::ACCEPTED => {
                    self.location = resolve_location(&self.location, &resp)?;
                    return Ok(());
                }
                other => {
                    setbacks += 1;
                    let standing =
                        upload_offset(self.client, self.host, self.scopes, &self.location);
                    match (other, standing) {
                        // The registry kept none, some or all of the chunk: on from there.
                        (_, Some((now, next)))
                            if setbacks <= self.client.opts.retries.max(1)
                                && (start..=end).contains(&now) =>
                        {
                            at = now;
                            self.location = next;
                        }
                        (other, standing) => {
                            if standing.is_none() {
                                self.sessions.forget(&self.key);
                            }
                            return Err(match other {
                                Ok(resp) => unexpected(&Method::PATCH, &self.location, resp),
                                Err(e) => e,
                            });
                        }
                    }
                }
            }
        }
        Ok(())
    }
}

/// Uploads a blob whose digest is not known yet — a layer being compressed as it is sent — as the chunks of a
/// [`ChunkWriter`] arrive, one PATCH each (a failed chunk is sent again from where the registry says it stands),
/// then puts the rest under the digest the writer finishes with, in one request.
///
/// The session is saved in `store` after every chunk (see the `resume` module), named by the digest of the
/// first chunk: a push killed midway and run again makes the layer again — compression is deterministic — and
/// sends only what the registry does not have, the chunks before that being checked against the CRC-32 each one
/// had (the registry checks the whole blob's digest at the end). The stream cannot be replayed from its start, so
/// a chunk that cannot be sent, a made-again layer that differs from the saved record, or a writer dropped
/// unfinished ends this attempt; callers fall back to an ordinary upload from the store.
pub fn upload_stream(
    client: &Client,
    store: &Store,
    target: &Reference,
    chunks: Chunks,
) -> Result<Streamed, RegistryError> {
    let host = target.endpoint_host().to_string();
    let scopes = push_scopes(target, None);
    let unfinished = |url: &str| RegistryError::Invalid {
        url: url.to_string(),
        reason: "the streamed layer ended unfinished (its writer stopped)".to_string(),
    };
    let first = match chunks.next() {
        Some(Piece::Chunk(c)) => c,
        Some(Piece::Last(rest, digest)) => {
            // Smaller than a chunk: one request, nothing to resume.
            let location = start_upload(client, &host, target, &scopes)?;
            let len = rest.len() as u64;
            let rest = bytes::Bytes::from(rest);
            let body = || Ok(reqwest::blocking::Body::from(rest.clone()));
            finish_upload_with(client, &host, &scopes, &location, &digest, len, &body)?;
            return Ok(Streamed {
                digest,
                size: len,
                resent: 0,
                resumed: 0,
            });
        }
        None => return Err(unfinished(&target.to_string())),
    };
    let sessions = Sessions::new(store, target);
    let key = resume::stream_key(&Digest::sha256_of(&first));
    // Where an interrupted push of the same stream left its session, when the registry still has it.
    let earlier = sessions.load(&key).and_then(|s| {
        match upload_offset(client, &host, &scopes, &s.location) {
            Some((at, next)) if at > 0 => {
                // Only the chunks the registry has are kept of the record.
                let kept: Vec<(u64, u32)> = s
                    .chunks
                    .iter()
                    .copied()
                    .take_while(|(end, _)| *end <= at)
                    .collect();
                Some((next, at, kept))
            }
            Some((_, next)) => Some((next, 0, Vec::new())),
            None => {
                sessions.forget(&key);
                None
            }
        }
    });
    let (location, skip_to, record) = match earlier {
        Some(e) => e,
        None => (start_upload(client, &host, target, &scopes)?, 0, Vec::new()),
    };
    let mut up = StreamSession {
        client,
        host: &host,
        scopes: &scopes,
        sessions,
        key,
        location,
        chunks: Vec::new(),
        wire: std::sync::atomic::AtomicU64::new(0),
    };
    if skip_to == 0 {
        up.save(0);
    }
    let mut offset = 0u64;
    let mut resumed = 0u64;
    let mut next = Some(first);
    let (rest, digest) = loop {
        let chunk = match next.take().map(Piece::Chunk).or_else(|| chunks.next()) {
            Some(Piece::Chunk(chunk)) => chunk,
            Some(Piece::Last(rest, digest)) => break (rest, digest),
            None => return Err(unfinished(&up.location)),
        };
        if chunk.is_empty() {
            chunks.give_back(chunk);
            continue;
        }
        let len = chunk.len() as u64;
        let end = offset + len;
        let crc = crc32fast::hash(&chunk);
        if offset < skip_to {
            // The registry has (some of) this chunk from the earlier push: it must be the same chunk.
            let recorded = record.get(up.chunks.len()).copied();
            if recorded.is_some_and(|r| r != (end, crc)) || (recorded.is_none() && end <= skip_to) {
                cancel(client, &host, &scopes, &up.location);
                up.sessions.forget(&up.key);
                return Err(RegistryError::Invalid {
                    url: up.location,
                    reason: "the layer made again differs from what the interrupted push sent"
                        .to_string(),
                });
            }
            resumed += skip_to.min(end) - offset;
        }
        let chunk = bytes::Bytes::from(chunk);
        up.send(&chunk, offset, skip_to.clamp(offset, end))?;
        up.chunks.push((end, crc));
        offset = end;
        if end > skip_to {
            up.save(offset);
        }
        chunks.give_back(reclaim(chunk));
    };
    let len = rest.len() as u64;
    let rest = bytes::Bytes::from(rest);
    let body = || Ok(reqwest::blocking::Body::from(rest.clone()));
    let (location, sessions, key) = (up.location, up.sessions, up.key);
    let wire = up.wire.into_inner();
    finish_upload_with(client, &host, &scopes, &location, &digest, len, &body)?;
    sessions.forget(&key);
    Ok(Streamed {
        digest,
        size: offset + len,
        resent: wire.saturating_sub(offset - resumed),
        resumed,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn a_chunk_writer_hands_over_whole_chunks_then_the_rest_and_stops_when_the_upload_does() {
        let (mut w, rx) = ChunkWriter::channel();
        let read_all = |rx: Chunks| {
            std::thread::spawn(move || {
                let mut lens = Vec::new();
                let mut seen = std::collections::BTreeSet::new();
                loop {
                    match rx.next() {
                        Some(Piece::Chunk(c)) => {
                            lens.push(c.len());
                            seen.insert(c.as_ptr() as usize);
                            rx.give_back(c);
                        }
                        Some(Piece::Last(rest, d)) => {
                            lens.push(rest.len());
                            return (lens, seen.len(), Some(d));
                        }
                        None => return (lens, seen.len(), None),
                    }
                }
            })
        };
        let reader = read_all(rx);
        let data = vec![7u8; 6 * STREAM_CHUNK + 12_345];
        for piece in data.chunks(1_000_003) {
            w.write_all(piece).unwrap();
        }
        let digest = Digest::sha256_of(&data);
        w.finish(digest.clone()).unwrap();
        let (lens, buffers, done) = reader.join().unwrap();
        let mut want = vec![STREAM_CHUNK; 6];
        want.push(12_345);
        assert_eq!(lens, want);
        assert!(buffers <= STREAM_BUFFERS, "{buffers} buffers for 7 chunks");
        assert_eq!(done, Some(digest), "the digest comes with the rest");

        // A writer dropped unfinished gives no digest: the upload is abandoned, not put under a wrong name.
        let (mut w, rx) = ChunkWriter::channel();
        let reader = read_all(rx);
        w.write_all(&data[..STREAM_CHUNK + 1]).unwrap();
        drop(w);
        let (lens, _, done) = reader.join().unwrap();
        assert_eq!((lens, done), (vec![STREAM_CHUNK], None));

        // A buffer given back is the next one filled once all of them exist.
        let (mut w, rx) = ChunkWriter::channel();
        let mut made: Vec<Vec<u8>> = (1..STREAM_BUFFERS).map(|_| w.fresh()).collect();
        let returned = made.pop().unwrap();
        let at = returned.as_ptr();
        rx.give_back(returned);
        let reused = w.fresh();
        assert_eq!(reused.as_ptr(), at);
        drop((made, reused, rx));
        assert!(
            w.write_all(&data).is_err(),
            "a stopped upload fails the writer, so the tee drops it"
        );
    }

    #[test]
    fn a_sent_chunk_is_taken_back_whole_once_the_client_lets_go_of_it() {
        let data = vec![9u8; STREAM_CHUNK];
        let at = data.as_ptr();
        let chunk = bytes::Bytes::from(data);
        let held = chunk.clone();
        // The client's copy goes a moment later, as hyper's connection task drops a sent body.
        let later = std::thread::spawn(move || {
            std::thread::sleep(std::time::Duration::from_millis(5));
            drop(held);
        });
        let back = reclaim(chunk);
        later.join().unwrap();
        assert_eq!(back.as_ptr(), at, "the same buffer, not a copy");
        assert_eq!(back.capacity(), STREAM_CHUNK);
    }
}
