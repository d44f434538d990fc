//! A real registry for the end-to-end tests: Debian's `docker-registry` (the CNCF distribution registry) started on
//! a free loopback port with a configuration of the test's choosing — anonymous, htpasswd Basic auth over TLS with a
//! certificate made here by openssl, or token auth against [`TokenService`] — and stopped on drop.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// How the registry authenticates.
pub enum Auth {
    /// No authentication, plain HTTP.
    Anonymous,
    /// htpasswd Basic auth over TLS; the certificate is at [`Registry::ca`].
    BasicTls {
        /// The one user.
        user: String,
        /// Its password.
        password: String,
    },
    /// Bearer tokens from a token service the test runs, which signs with the key whose certificate the registry
    /// trusts.
    Token {
        /// The one user the token service knows.
        user: String,
        /// Its password.
        password: String,
    },
}

/// A running registry.
pub struct Registry {
    child: Child,
    dir: tempfile::TempDir,
    /// `127.0.0.1:PORT`.
    pub host: String,
    /// The token service, for `Auth::Token`.
    pub tokens: Option<crate::token::TokenService>,
}

/// A free loopback port (bound, read and released; the registry binds it right after).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("bind a loopback port")
}

fn sh(cmd: &mut Command) {
    let out = cmd.output().expect("run a helper program");
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Makes a self-signed certificate for 127.0.0.1 and its key (RSA, so the token service can sign RS256 with
/// openssl alone).
pub fn self_signed(dir: &Path, name: &str) -> (PathBuf, PathBuf) {
    let cert = dir.join(format!("{name}.crt"));
    let key = dir.join(format!("{name}.key"));
    sh(Command::new("openssl").args([
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-days",
        "2",
        "-subj",
        &format!("/CN={name}"),
        "-addext",
        "subjectAltName=IP:127.0.0.1,DNS:localhost",
        "-keyout",
        key.to_str().expect("utf-8 path"),
        "-out",
        cert.to_str().expect("utf-8 path"),
    ]));
    (cert, key)
}

/// Makes a test CA and a server certificate for 127.0.0.1 signed by it (rustls, rightly, refuses a CA
/// certificate used as a server's own): returns (CA certificate, server certificate, server key).
pub fn ca_and_server(dir: &Path) -> (PathBuf, PathBuf, PathBuf) {
    let p = |n: &str| dir.join(n).to_str().expect("utf-8 path").to_string();
    sh(Command::new("openssl").args([
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-days",
        "2",
        "-subj",
        "/CN=kiln-test-ca",
        "-keyout",
        &p("ca.key"),
        "-out",
        &p("ca.crt"),
    ]));
    sh(Command::new("openssl").args([
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-subj",
        "/CN=127.0.0.1",
        "-keyout",
        &p("server.key"),
        "-out",
        &p("server.csr"),
    ]));
    std::fs::write(
        dir.join("server.ext"),
        "subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n",
    )
    .expect("write extensions");
    sh(Command::new("openssl").args([
        "x509",
        "-req",
        "-in",
        &p("server.csr"),
        "-CA",
        &p("ca.crt"),
        "-CAkey",
        &p("ca.key"),
        "-CAcreateserial",
        "-days",
        "2",
        "-extfile",
        &p("server.ext"),
        "-out",
        &p("server.crt"),
    ]));
    (
        dir.join("ca.crt"),
        dir.join("server.crt"),
        dir.join("server.key"),
    )
}

impl Registry {
    /// Starts a registry with `auth`, waiting until it answers.
    pub fn start(auth: Auth) -> Registry {
        let dir = tempfile::tempdir().expect("registry dir");
        let port = free_port();
        let host = format!("127.0.0.1:{port}");
        let mut tokens = None;
        let (tls, auth_yaml) = match &auth {
            Auth::Anonymous => (String::new(), String::new()),
            Auth::BasicTls { user, password } => {
                let (_, cert, key) = ca_and_server(dir.path());
                let out = Command::new("htpasswd")
                    .args(["-Bbn", user, password])
                    .output()
                    .expect("run htpasswd (apache2-utils)");
                assert!(out.status.success(), "htpasswd failed");
                std::fs::write(dir.path().join("htpasswd"), &out.stdout).expect("write htpasswd");
                (
                    format!(
                        "  tls:\n    certificate: {}\n    key: {}\n",
                        cert.display(),
                        key.display()
                    ),
                    format!(
                        "auth:\n  htpasswd:\n    realm: kiln-test\n    path: {}\n",
                        dir.path().join("htpasswd").display()
                    ),
                )
            }
            Auth::Token { user, password } => {
                let (cert, key) = self_signed(dir.path(), "tokens");
                let svc = crate::token::TokenService::start(key, user, password);
                let yaml = format!(
                    "auth:\n  token:\n    realm: http://{}/token\n    service: kiln-test\n    issuer: kiln-test-issuer\n    rootcertbundle: {}\n",
                    svc.host,
                    cert.display()
                );
                tokens = Some(svc);
                (String::new(), yaml)
            }
        };
        let config = format!(
            "version: 0.1\nlog:\n  level: warn\nstorage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\nhttp:\n  addr: {host}\n{tls}{auth_yaml}",
            dir.path().join("data").display()
        );
        let config_path = dir.path().join("config.yml");
        std::fs::write(&config_path, config).expect("write registry config");
        let log = std::fs::File::create(dir.path().join("registry.log")).expect("registry log");
        let child = Command::new("docker-registry")
            .arg("serve")
            .arg(&config_path)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start docker-registry (apt-get install docker-registry)");
        let deadline = Instant::now() + Duration::from_secs(20);
        while TcpStream::connect(&host).is_err() {
            assert!(Instant::now() < deadline, "the registry did not start");
            std::thread::sleep(Duration::from_millis(50));
        }
        Registry {
            child,
            dir,
            host,
            tokens,
        }
    }

    /// The CA that signed the registry's TLS certificate (for `--registry-ca`), when it has one.
    pub fn ca(&self) -> PathBuf {
        self.dir.path().join("ca.crt")
    }

    /// The registry's storage directory (to check what it holds).
    pub fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// The registry's log, for assertion messages.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("registry.log")).unwrap_or_default()
    }

    /// Repositories' manifests the registry stores that name a blob it does not hold (must always be empty).
    pub fn manifests_with_missing_blobs(&self) -> Vec<String> {
        let blobs = self.data().join("docker/registry/v2/blobs/sha256");
        let has = |hex: &str| blobs.join(&hex[..2]).join(hex).join("data").is_file();
        let mut bad = Vec::new();
        let Ok(top) = std::fs::read_dir(&blobs) else {
            return bad;
        };
        for prefix in top.flatten() {
            for b in std::fs::read_dir(prefix.path())
                .into_iter()
                .flatten()
                .flatten()
            {
                let data = b.path().join("data");
                let Ok(bytes) = std::fs::read(&data) else {
                    continue;
                };
                let Ok(v) = serde_json_lite(&bytes) else {
                    continue;
                };
                for d in v {
                    if !has(&d) {
                        bad.push(format!("{} names {d}", b.path().display()));
                    }
                }
            }
        }
        bad
    }
}

/// The sha256 hex digests a manifest-shaped JSON blob names in `"digest"` fields (a tiny scan, not a parser:
/// enough for the registry's own files).
fn serde_json_lite(bytes: &[u8]) -> Result<Vec<String>, ()> {
    let text = std::str::from_utf8(bytes).map_err(|_| ())?;
    if !text.trim_start().starts_with('{') || !text.contains("\"schemaVersion\"") {
        return Err(());
    }
    Ok(text
        .match_indices("\"digest\":\"sha256:")
        .filter_map(|(i, m)| text.get(i + m.len()..i + m.len() + 64))
        .map(str::to_string)
        .collect())
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Reads one HTTP/1.1 request head from `s` (up to the blank line).
pub(crate) fn read_head(s: &mut TcpStream) -> Option<String> {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        if s.read(&mut byte).ok()? == 0 {
            return None;
        }
        head.push(byte[0]);
        if head.len() > 64 << 10 {
            return None;
        }
    }
    String::from_utf8(head).ok()
}

/// The value of header `name` in a request head.
pub(crate) fn header<'a>(head: &'a str, name: &str) -> Option<&'a str> {
    head.lines().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        k.trim().eq_ignore_ascii_case(name).then(|| v.trim())
    })
}

/// Writes a whole response and closes.
pub(crate) fn respond(s: &mut TcpStream, status: &str, headers: &[(&str, String)], body: &[u8]) {
    let mut out = format!(
        "HTTP/1.1 {status}\r\nContent-Length: {}\r\nConnection: close\r\n",
        body.len()
    );
    for (k, v) in headers {
        out.push_str(&format!("{k}: {v}\r\n"));
    }
    out.push_str("\r\n");
    let _ = s.write_all(out.as_bytes());
    let _ = s.write_all(body);
    let _ = s.flush();
}
