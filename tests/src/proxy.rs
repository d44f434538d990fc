//! A loopback HTTP proxy in front of the test registry that misbehaves on purpose, as networks and registries do:
//! some requests answered with 500 or 429 without reaching the registry, the first download of each blob cut off
//! mid-body, the first chunk of each upload cut off mid-request. One request per connection, so each fault hits
//! exactly one request.

use std::collections::{HashMap, HashSet};
use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
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
    /// The first PATCH of each upload session is cut after this many body bytes.
    pub cut_patches_after: Option<usize>,
    /// Every request is answered 503 (a registry that is down behind a load balancer).
    pub always: Option<u16>,
    /// An upload session (its PATCH and PUT bodies together) above this many bytes is answered 413, as a
    /// registry with a per-blob limit answers.
    pub max_upload: Option<usize>,
}

/// A running proxy.
pub struct FaultyProxy {
    /// `127.0.0.1:PORT`, to use as the registry's host.
    pub host: String,
    faults: Arc<AtomicUsize>,
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
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the proxy");
        let host = listener.local_addr().expect("addr").to_string();
        let faults = Arc::new(AtomicUsize::new(0));
        let state = Arc::new(Mutex::new(State::default()));
        let upstream = upstream.to_string();
        let f = faults.clone();
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(client) = conn else { continue };
                let (plan, state, upstream, f) =
                    (plan.clone(), state.clone(), upstream.clone(), f.clone());
                std::thread::spawn(move || serve(client, &plan, &state, &upstream, &f));
            }
        });
        FaultyProxy { host, faults }
    }

    /// Faults injected so far.
    pub fn faults(&self) -> usize {
        self.faults.load(Ordering::SeqCst)
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
    state: &Mutex<State>,
    upstream: &str,
    faults: &AtomicUsize,
) {
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
    let (n, first_of_kind, over_limit) = {
        let Ok(mut s) = state.lock() else { return };
        s.requests += 1;
        let key = format!("{method} {path_only}");
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
