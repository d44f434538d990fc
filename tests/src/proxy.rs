//! A loopback HTTP proxy in front of the test registry that misbehaves on purpose, as networks and registries do:
//! some requests answered with 500 or 429 without reaching the registry, the first download of each blob cut off
//! mid-body, the first chunk of each upload cut off mid-request. One request per connection, so each fault hits
//! exactly one request.
//!
//! Started with [`UploadFaults`], it is also what stands in front of most registries in production, a reverse
//! proxy that buffers each upload request whole before passing it on (nginx's `proxy_request_buffering on`), on a
//! link that drops: an upload cut mid-body never reaches the registry, so the session stays as it was and a client
//! can ask where it stands and go on; an answer lost after the registry took the request is the other case.

use std::collections::{HashMap, HashSet};
use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use crate::registry::{header, read_head, respond};

/// What the proxy breaks.
#[derive(Debug, Clone, Default)]
pub struct Plan {
    /// Every Nth request is answered with this status (500, 503 or 429 with `Retry-After: 1`) instead of
    /// being forwarded.
    pub status_every: Option<(usize, u16)>,
    /// The first GET of each blob is cut after this many body bytes.
    pub cut_blob_gets_after: Option<usize>,
    /// The first PATCH through the proxy is cut after this many body bytes. Only the first: distribution cancels
    /// an upload session whose PATCH was cut mid-body, so a client starts the blob again in a new session, and
    /// cutting every session's first PATCH would leave no way through.
    pub cut_patches_after: Option<usize>,
    /// Every request is answered 503 (a registry that is down behind a load balancer).
    pub always: Option<u16>,
    /// An upload session (its PATCH and PUT bodies together) above this many bytes is answered 413, as a
    /// registry with a per-blob limit answers.
    pub max_upload: Option<usize>,
}

/// Faults of uploads through a request-buffering proxy. With these, every upload request (a PATCH, or a POST or
/// PUT with a body, to `/blobs/uploads/`) is read whole from the client before anything of it is forwarded.
#[derive(Debug, Clone, Default)]
pub struct UploadFaults {
    /// These PATCHes (counted from 1 over the proxy's life) are cut after [`UploadFaults::cut_after`] body bytes:
    /// the client's connection is closed and nothing is forwarded.
    pub cut_patches: Vec<usize>,
    /// Every Nth PATCH is cut likewise.
    pub cut_every: Option<usize>,
    /// Body bytes read of a cut PATCH before the cut.
    pub cut_after: usize,
    /// Points in the upload-body bytes received so far (all requests together) where the request under way is
    /// cut, each once: how a link that drops now and then meets a client that sends a blob in one request as well
    /// as one that sends it in chunks.
    pub cut_at_bytes: Vec<u64>,
    /// These PATCHes are forwarded whole and the registry's answer is read, then the client's connection is
    /// closed before the answer reaches it.
    pub lose_answers: Vec<usize>,
    /// The Nth PATCH stops after this many body bytes: held open, nothing forwarded, until the client goes.
    pub stall: Option<(usize, usize)>,
}

/// A running proxy.
pub struct FaultyProxy {
    /// `127.0.0.1:PORT`, to use as the registry's host.
    pub host: String,
    faults: Arc<AtomicUsize>,
    counters: Arc<Counters>,
}

/// What the proxy counts of uploads.
#[derive(Default)]
struct Counters {
    /// Upload-body bytes received from clients, cut requests' included.
    upload_bytes: AtomicU64,
    /// PATCHes seen.
    patches: AtomicUsize,
    /// Whether the stall has begun.
    stalled: AtomicBool,
    /// The byte points of [`UploadFaults::cut_at_bytes`] not yet passed.
    pending_cuts: Mutex<Vec<u64>>,
}

fn reason(code: u16) -> &'static str {
    match code {
        413 => "Payload Too Large",
        429 => "Too Many Requests",
        500 => "Internal Server Error",
        503 => "Service Unavailable",
        _ => "Error",
    }
}

/// Rewrites a head's Connection header to `close`.
fn with_close(head: &str) -> String {
    let mut out = String::new();
    for (i, line) in head.split("\r\n").enumerate() {
        if line.is_empty() {
            continue;
        }
        if i > 0 && line.to_ascii_lowercase().starts_with("connection:") {
            continue;
        }
        out.push_str(line);
        out.push_str("\r\n");
    }
    out.push_str("Connection: close\r\n\r\n");
    out
}

impl FaultyProxy {
    /// Starts a proxy to `upstream` (`host:port`) that follows `plan`.
    pub fn start(upstream: &str, plan: Plan) -> FaultyProxy {
        FaultyProxy::start_with(upstream, plan, None, "127.0.0.1:0")
    }

    /// Starts a request-buffering proxy to `upstream` that breaks uploads as `uploads` says (and nothing else).
    pub fn buffering(upstream: &str, uploads: UploadFaults) -> FaultyProxy {
        FaultyProxy::start_with(upstream, Plan::default(), Some(uploads), "127.0.0.1:0")
    }

    /// Starts a proxy on `listen` (`127.0.0.1:0` for any port) to `upstream` that follows `plan` and, when given,
    /// buffers uploads and breaks them as `uploads` says.
    pub fn start_with(
        upstream: &str,
        plan: Plan,
        uploads: Option<UploadFaults>,
        listen: &str,
    ) -> FaultyProxy {
        let listener = TcpListener::bind(listen).expect("bind the proxy");
        let host = listener.local_addr().expect("addr").to_string();
        let faults = Arc::new(AtomicUsize::new(0));
        let counters = Arc::new(Counters::default());
        if let (Some(u), Ok(mut p)) = (&uploads, counters.pending_cuts.lock()) {
            p.clone_from(&u.cut_at_bytes);
        }
        let state = Arc::new(Mutex::new(State::default()));
        let upstream = upstream.to_string();
        let (f, c) = (faults.clone(), counters.clone());
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(client) = conn else { continue };
                let (plan, uploads, state, upstream, f, c) = (
                    plan.clone(),
                    uploads.clone(),
                    state.clone(),
                    upstream.clone(),
                    f.clone(),
                    c.clone(),
                );
                std::thread::spawn(move || {
                    serve(client, &plan, uploads.as_ref(), &state, &upstream, &f, &c)
                });
            }
        });
        FaultyProxy {
            host,
            faults,
            counters,
        }
    }

    /// Faults injected so far.
    pub fn faults(&self) -> usize {
        self.faults.load(Ordering::SeqCst)
    }

    /// Upload-body bytes received from clients so far (requests that were cut included).
    pub fn upload_bytes(&self) -> u64 {
        self.counters.upload_bytes.load(Ordering::SeqCst)
    }

    /// [`FaultyProxy::upload_bytes`], counted from zero again.
    pub fn take_upload_bytes(&self) -> u64 {
        self.counters.upload_bytes.swap(0, Ordering::SeqCst)
    }

    /// Whether [`UploadFaults::stall`]'s PATCH has reached its stall.
    pub fn stalled(&self) -> bool {
        self.counters.stalled.load(Ordering::SeqCst)
    }
}

/// What the proxy has seen: requests so far, the method and path of each, and the bytes each upload session sent.
#[derive(Default)]
struct State {
    requests: usize,
    seen: HashSet<String>,
    uploaded: HashMap<String, usize>,
}

fn serve(
    mut client: TcpStream,
    plan: &Plan,
    uploads: Option<&UploadFaults>,
    state: &Mutex<State>,
    upstream: &str,
    faults: &AtomicUsize,
    counters: &Counters,
) {
    // A TLS handshake (a client trying https first) is answered as Go's plain-HTTP server answers one (what the
    // registry itself would say), so the client falls back to http at once rather than waiting for a handshake.
    let mut first = [0u8; 1];
    match client.peek(&mut first) {
        Ok(1) if first[0] == 0x16 => {
            let _ = client.write_all(b"HTTP/1.0 400 Bad Request\r\n\r\nClient sent an HTTP request to an HTTPS server.\n");
            let _ = client.shutdown(Shutdown::Both);
            return;
        }
        Ok(1) => {}
        _ => return,
    }
    let Some(head) = read_head(&mut client) else {
        return;
    };
    let mut words = head.split_whitespace();
    let method = words.next().unwrap_or("").to_string();
    let path = words.next().unwrap_or("").to_string();
    let path_only = path.split('?').next().unwrap_or("").to_string();
    let content_length: usize = header(&head, "content-length")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let chunked =
        header(&head, "transfer-encoding").is_some_and(|v| v.eq_ignore_ascii_case("chunked"));
    if let Some(u) = uploads {
        let upload = path_only.contains("/blobs/uploads/")
            && matches!(method.as_str(), "PATCH" | "PUT" | "POST")
            && (content_length > 0 || chunked);
        if upload {
            let req = Upload {
                head: &head,
                method: &method,
                content_length,
                chunked,
            };
            serve_upload(client, &req, u, upstream, faults, counters);
            return;
        }
    }
    let (n, first_of_kind, over_limit) = {
        let Ok(mut s) = state.lock() else { return };
        s.requests += 1;
        // A PATCH counts once over the proxy's life (see `Plan::cut_patches_after`); a blob GET once per blob.
        let key = if method == "PATCH" {
            method.to_string()
        } else {
            format!("{method} {path_only}")
        };
        let first = s.seen.insert(key);
        let mut over = false;
        if let Some(limit) = plan.max_upload {
            if (method == "PATCH" || method == "PUT") && path_only.contains("/blobs/uploads/") {
                let sent = s.uploaded.entry(path_only.clone()).or_insert(0);
                *sent += content_length;
                over = *sent > limit;
            }
        }
        (s.requests, first, over)
    };
    let inject = plan
        .always
        .or(over_limit.then_some(413))
        .or(match plan.status_every {
            Some((every, code)) if every > 0 && n % every == 0 => Some(code),
            _ => None,
        });
    if let Some(code) = inject {
        faults.fetch_add(1, Ordering::SeqCst);
        // The request body is drained first so the client sees the answer, not a reset.
        let _ = std::io::copy(
            &mut (&mut client).take(content_length as u64),
            &mut std::io::sink(),
        );
        let mut headers = vec![("Content-Type", "application/json".to_string())];
        if code == 429 {
            headers.push(("Retry-After", "1".to_string()));
        }
        let body = format!("{{\"errors\":[{{\"code\":\"INJECTED\",\"message\":\"fault injected by the test proxy ({code})\"}}]}}");
        respond(
            &mut client,
            &format!("{code} {}", reason(code)),
            &headers,
            body.as_bytes(),
        );
        return;
    }
    let Ok(mut up) = TcpStream::connect(upstream) else {
        respond(&mut client, "502 Bad Gateway", &[], b"");
        return;
    };
    if up.write_all(with_close(&head).as_bytes()).is_err() {
        return;
    }
    let cut_request = (method == "PATCH" && first_of_kind)
        .then_some(plan.cut_patches_after)
        .flatten();
    let to_send = cut_request.map_or(content_length, |c| c.min(content_length));
    if std::io::copy(&mut (&mut client).take(to_send as u64), &mut up).is_err() {
        return;
    }
    if to_send < content_length {
        faults.fetch_add(1, Ordering::SeqCst);
        let _ = up.shutdown(Shutdown::Both);
        let _ = client.shutdown(Shutdown::Both);
        return;
    }
    // The response: head rewritten to close, body streamed, cut when the plan says so.
    let Some(resp_head) = read_head(&mut up) else {
        return;
    };
    if client.write_all(with_close(&resp_head).as_bytes()).is_err() {
        return;
    }
    let is_blob_get = method == "GET" && path_only.contains("/blobs/sha256:");
    let cut = (is_blob_get && first_of_kind)
        .then_some(plan.cut_blob_gets_after)
        .flatten();
    match cut {
        Some(limit) => {
            let sent = std::io::copy(&mut (&mut up).take(limit as u64), &mut client).unwrap_or(0);
            let mut probe = [0u8; 1];
            // Only a body longer than the limit is cut (and counted); a shorter one went through whole.
            if sent as usize == limit && up.read(&mut probe).map(|n| n > 0).unwrap_or(false) {
                faults.fetch_add(1, Ordering::SeqCst);
            }
        }
        None => {
            let _ = std::io::copy(&mut up, &mut client);
        }
    }
    let _ = client.shutdown(Shutdown::Both);
}

/// An upload request whose head has been read.
struct Upload<'a> {
    head: &'a str,
    method: &'a str,
    content_length: usize,
    chunked: bool,
}

/// How reading an upload's body ended.
enum BodyRead {
    Whole(Vec<u8>),
    /// Stopped on purpose (a cut, or the stall's point).
    Stopped,
    /// The client went away or broke the framing.
    Gone,
}

/// Reads the body of `req` (a `Content-Length` one or a chunked one, decoded), counting its bytes, until it ends
/// or `stop_after` bytes of it were read or a pending cut point of all uploads' bytes is passed.
fn read_body(
    client: &mut impl std::io::BufRead,
    req: &Upload,
    stop_after: Option<usize>,
    counters: &Counters,
) -> BodyRead {
    let mut body = Vec::with_capacity(req.content_length.min(64 << 20));
    let mut buf = vec![0u8; 1 << 20];
    // Reads `n` bytes into the body; false when stopped or gone (told by `end`).
    let mut take = |client: &mut dyn std::io::BufRead, mut n: usize, end: &mut Option<BodyRead>| {
        while n > 0 {
            let mut want = n.min(buf.len());
            if let Some(stop) = stop_after {
                want = want.min(stop.saturating_sub(body.len()));
            }
            let total = counters.upload_bytes.load(Ordering::SeqCst);
            if let Ok(p) = counters.pending_cuts.lock() {
                if let Some(next) = p.iter().filter(|c| **c >= total).min() {
                    want = want.min((next - total) as usize);
                }
            }
            if want == 0 {
                if let Ok(mut p) = counters.pending_cuts.lock() {
                    let before = p.len();
                    p.retain(|c| *c > total);
                    if p.len() < before || stop_after.is_some_and(|s| body.len() >= s) {
                        *end = Some(BodyRead::Stopped);
                        return false;
                    }
                }
                continue;
            }
            match client.read(&mut buf[..want]) {
                Ok(0) | Err(_) => {
                    *end = Some(BodyRead::Gone);
                    return false;
                }
                Ok(got) => {
                    counters
                        .upload_bytes
                        .fetch_add(got as u64, Ordering::SeqCst);
                    body.extend_from_slice(&buf[..got]);
                    n -= got;
                }
            }
        }
        true
    };
    let mut end = None;
    if !req.chunked {
        if take(client, req.content_length, &mut end) {
            return BodyRead::Whole(body);
        }
        return end.unwrap_or(BodyRead::Gone);
    }
    loop {
        let mut line = String::new();
        if client.read_line(&mut line).is_err() {
            return BodyRead::Gone;
        }
        let size = line.trim().split(';').next().unwrap_or("");
        let Ok(size) = usize::from_str_radix(size, 16) else {
            return BodyRead::Gone;
        };
        if size == 0 {
            // Trailers, up to the empty line.
            loop {
                let mut t = String::new();
                match client.read_line(&mut t) {
                    Ok(0) | Err(_) => return BodyRead::Gone,
                    Ok(_) if t.trim().is_empty() => break,
                    Ok(_) => {}
                }
            }
            break;
        }
        if !take(client, size, &mut end) {
            return end.unwrap_or(BodyRead::Gone);
        }
        let mut crlf = [0u8; 2];
        if client.read_exact(&mut crlf).is_err() {
            return BodyRead::Gone;
        }
    }
    BodyRead::Whole(body)
}

/// The request head to forward for a buffered body of `len` bytes: closing, and framed by Content-Length.
fn buffered_head(head: &str, len: usize) -> String {
    let mut out = String::new();
    for (i, line) in head.split("\r\n").enumerate() {
        let lower = line.to_ascii_lowercase();
        if line.is_empty()
            || (i > 0
                && (lower.starts_with("connection:")
                    || lower.starts_with("transfer-encoding:")
                    || lower.starts_with("content-length:")))
        {
            continue;
        }
        out.push_str(line);
        out.push_str("\r\n");
    }
    out.push_str(&format!(
        "Content-Length: {len}\r\nConnection: close\r\n\r\n"
    ));
    out
}

/// Serves an upload request as a request-buffering proxy does: the body read whole, then forwarded; or cut,
/// stalled, or its answer lost, as `faults` says.
fn serve_upload(
    mut client: TcpStream,
    req: &Upload,
    faults: &UploadFaults,
    upstream: &str,
    injected: &AtomicUsize,
    counters: &Counters,
) {
    let patch = if req.method == "PATCH" {
        counters.patches.fetch_add(1, Ordering::SeqCst) + 1
    } else {
        0
    };
    let cut = patch > 0
        && (faults.cut_patches.contains(&patch)
            || faults.cut_every.is_some_and(|k| k > 0 && patch % k == 0));
    let stall = faults
        .stall
        .filter(|(n, _)| patch > 0 && *n == patch)
        .map(|(_, at)| at);
    let stop_after = if cut { Some(faults.cut_after) } else { stall };
    let Ok(reader) = client.try_clone() else {
        return;
    };
    let mut reader = std::io::BufReader::with_capacity(1 << 20, reader);
    let body = match read_body(&mut reader, req, stop_after, counters) {
        BodyRead::Whole(body) => body,
        BodyRead::Gone => return,
        BodyRead::Stopped => {
            if stall.is_some() && !cut {
                counters.stalled.store(true, Ordering::SeqCst);
                // Held: nothing forwarded, nothing answered, until the client goes away.
                let _ = std::io::copy(&mut reader, &mut std::io::sink());
                return;
            }
            injected.fetch_add(1, Ordering::SeqCst);
            let _ = client.shutdown(Shutdown::Both);
            return;
        }
    };
    let Ok(mut up) = TcpStream::connect(upstream) else {
        respond(&mut client, "502 Bad Gateway", &[], b"");
        return;
    };
    if up
        .write_all(buffered_head(req.head, body.len()).as_bytes())
        .and_then(|_| up.write_all(&body))
        .is_err()
    {
        return;
    }
    let Some(resp_head) = read_head(&mut up) else {
        return;
    };
    if faults.lose_answers.contains(&patch) {
        // The registry took it; its answer goes nowhere.
        injected.fetch_add(1, Ordering::SeqCst);
        let _ = client.shutdown(Shutdown::Both);
        return;
    }
    if client.write_all(with_close(&resp_head).as_bytes()).is_err() {
        return;
    }
    let _ = std::io::copy(&mut up, &mut client);
    let _ = client.shutdown(Shutdown::Both);
}
