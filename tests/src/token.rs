//! A token service for the registry's `auth: token` mode, as Docker Hub's auth.docker.io is one: it checks a
//! Basic credential, and answers with a JWT (RS256, signed by openssl with the key whose certificate the registry
//! trusts, the certificate in the `x5c` header) granting the scopes asked for. Anonymous callers get a token
//! granting nothing, as public token services do for private repositories.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine as _;

use crate::registry::{header, read_head, respond};

/// A running token service.
pub struct TokenService {
    /// `127.0.0.1:PORT`.
    pub host: String,
    issued: Arc<AtomicUsize>,
}

fn b64url(b: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b)
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'%' if i + 2 < b.len() => {
                let v = u8::from_str_radix(&s[i + 1..i + 3], 16).unwrap_or(b'?');
                out.push(v);
                i += 3;
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            c => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn sign(key: &Path, data: &[u8]) -> Vec<u8> {
    let dir = tempfile::tempdir().expect("tmp");
    let input = dir.path().join("in");
    std::fs::write(&input, data).expect("write");
    let out = Command::new("openssl")
        .args(["dgst", "-sha256", "-sign"])
        .arg(key)
        .arg(&input)
        .output()
        .expect("openssl dgst");
    assert!(out.status.success(), "openssl could not sign");
    out.stdout
}

impl TokenService {
    /// Starts the service, signing with `key` (its certificate beside it, `.crt` for `.key`).
    pub fn start(key: PathBuf, user: &str, password: &str) -> TokenService {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the token service");
        let host = listener.local_addr().expect("addr").to_string();
        let der = Command::new("openssl")
            .args(["x509", "-outform", "DER", "-in"])
            .arg(key.with_extension("crt"))
            .output()
            .expect("openssl x509")
            .stdout;
        let x5c = base64::engine::general_purpose::STANDARD.encode(der);
        let expected = format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"))
        );
        let user = user.to_string();
        let issued = Arc::new(AtomicUsize::new(0));
        let count = issued.clone();
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(mut s) = conn else { continue };
                let Some(head) = read_head(&mut s) else {
                    continue;
                };
                let target = head.split_whitespace().nth(1).unwrap_or("").to_string();
                let query = target.split_once('?').map(|(_, q)| q).unwrap_or("");
                let mut scopes = Vec::new();
                for pair in query.split('&') {
                    if let Some(v) = pair.strip_prefix("scope=") {
                        scopes.push(percent_decode(v));
                    }
                }
                let auth = header(&head, "authorization");
                let granted = match auth {
                    Some(a) if a == expected => true,
                    Some(_) => {
                        respond(
                            &mut s,
                            "401 Unauthorized",
                            &[],
                            b"{\"details\":\"bad credentials\"}",
                        );
                        continue;
                    }
                    None => false,
                };
                let access: Vec<serde_json::Value> = if granted {
                    scopes
                        .iter()
                        .flat_map(|sc| sc.split(' ').map(str::to_string).collect::<Vec<_>>())
                        .filter_map(|sc| {
                            let mut parts = sc.splitn(3, ':');
                            let (t, n, a) = (parts.next()?, parts.next()?, parts.next()?);
                            Some(serde_json::json!({"type": t, "name": n, "actions": a.split(',').collect::<Vec<_>>()}))
                        })
                        .collect()
                } else {
                    Vec::new()
                };
                let now = SystemTime::now()
                    .duration_since(UNIX_EPOCH)
                    .map(|d| d.as_secs())
                    .unwrap_or(0);
                let n = count.fetch_add(1, Ordering::SeqCst);
                let header_json = serde_json::json!({"typ": "JWT", "alg": "RS256", "x5c": [x5c]});
                let claims = serde_json::json!({
                    "iss": "kiln-test-issuer", "sub": if granted { user.as_str() } else { "" },
                    "aud": "kiln-test", "exp": now + 300, "nbf": now - 10, "iat": now,
                    "jti": format!("t{n}"), "access": access,
                });
                let signing_input = format!(
                    "{}.{}",
                    b64url(header_json.to_string().as_bytes()),
                    b64url(claims.to_string().as_bytes())
                );
                let sig = sign(&key, signing_input.as_bytes());
                let token = format!("{signing_input}.{}", b64url(&sig));
                let body = serde_json::json!({"token": token, "expires_in": 300}).to_string();
                respond(
                    &mut s,
                    "200 OK",
                    &[("Content-Type", "application/json".to_string())],
                    body.as_bytes(),
                );
            }
        });
        TokenService { host, issued }
    }

    /// Tokens issued so far (to check that clients cache them).
    pub fn issued(&self) -> usize {
        self.issued.load(Ordering::SeqCst)
    }
}
