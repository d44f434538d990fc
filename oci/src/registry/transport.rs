//! The HTTP side of the client: scheme per host (HTTPS, or plain HTTP for loopback and `--insecure-registry`
//! hosts when they do not speak TLS), authentication with per-scope token caching, and retries with backoff.

use std::collections::HashMap;
use std::io::Read;
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use base64::Engine as _;
use reqwest::blocking::{Body, Response};
use reqwest::header::{HeaderMap, AUTHORIZATION, LOCATION, RETRY_AFTER, WWW_AUTHENTICATE};
use reqwest::{Method, StatusCode};

use super::auth::{parse_challenge, Challenge, TokenResponse};
use super::credentials::{Credential, DockerConfig};
use super::RegistryError;

/// How a client reaches registries.
#[derive(Debug, Clone)]
pub struct ClientOptions {
    /// Hosts (`host[:port]`) that may be reached over plain HTTP, as Docker's `insecure-registries`. Loopback hosts
    /// always may, as Docker allows.
    pub insecure: Vec<String>,
    /// Extra PEM certificates to trust, beside the system's roots.
    pub ca_files: Vec<PathBuf>,
    /// Where credentials are read.
    pub docker_config: DockerConfig,
    /// Attempts after the first on connection errors, 5xx and 429.
    pub retries: u32,
    /// The first wait between attempts; doubled on each retry.
    pub backoff: Duration,
    /// Blobs moved at once.
    pub concurrency: usize,
    /// Uploads up to this size go in one PUT; larger ones in PATCH chunks of this size.
    pub chunk_size: u64,
    /// Registry mirrors for pulls: registry host → mirror hosts, tried in order before the registry itself.
    pub mirrors: HashMap<String, Vec<String>>,
}

impl Default for ClientOptions {
    fn default() -> Self {
        ClientOptions {
            insecure: Vec::new(),
            ca_files: Vec::new(),
            docker_config: DockerConfig::locate(),
            retries: 4,
            backoff: Duration::from_millis(250),
            concurrency: 3,
            chunk_size: 16 << 20,
            mirrors: HashMap::new(),
        }
    }
}

/// A registry client: one per kiln command, shared by the threads that move blobs.
pub struct Client {
    /// Built on first use: loading the system's CA roots costs tens of milliseconds, which a build whose images
    /// are all local (every warm rebuild) should not pay.
    http: std::sync::OnceLock<reqwest::blocking::Client>,
    /// For plain-HTTP URLs (see [`Client::plain`]).
    plain: std::sync::OnceLock<reqwest::blocking::Client>,
    roots: Vec<reqwest::Certificate>,
    pub(crate) opts: ClientOptions,
    schemes: Mutex<HashMap<String, &'static str>>,
    challenges: Mutex<HashMap<String, Challenge>>,
    tokens: Mutex<HashMap<(String, String), (String, Instant)>>,
    token_fetch: Mutex<()>,
    creds: Mutex<HashMap<String, Option<Credential>>>,
}

/// A request body that can be made again for a retry.
pub(crate) type BodyFn<'a> = &'a (dyn Fn() -> std::io::Result<Body> + Sync);

/// One request: method, URL, the scopes its token must carry, headers, body.
pub(crate) struct Req<'a> {
    pub method: Method,
    pub url: String,
    pub host: &'a str,
    pub scopes: &'a [String],
    pub headers: Vec<(&'static str, String)>,
    pub body: Option<BodyFn<'a>>,
}

fn is_loopback(host: &str) -> bool {
    let h = host
        .rsplit_once(':')
        .filter(|(_, p)| p.chars().all(|c| c.is_ascii_digit()))
        .map_or(host, |(h, _)| h);
    h == "localhost" || h.starts_with("127.") || h == "[::1]" || h == "::1"
}

/// Reads the registry's error body (`{"errors":[{"code","message"}]}`) into one short line.
pub(crate) fn error_detail(resp: Response) -> Option<String> {
    let mut body = String::new();
    resp.take(64 << 10).read_to_string(&mut body).ok()?;
    #[derive(serde::Deserialize)]
    struct E {
        #[serde(default)]
        code: String,
        #[serde(default)]
        message: String,
    }
    #[derive(serde::Deserialize)]
    struct Errors {
        errors: Vec<E>,
    }
    match serde_json::from_str::<Errors>(&body) {
        Ok(e) if !e.errors.is_empty() => Some(
            e.errors
                .iter()
                .map(|e| format!("{}: {}", e.code, e.message))
                .collect::<Vec<_>>()
                .join("; "),
        ),
        _ => {
            let t = body.trim();
            (!t.is_empty() && t.len() < 300 && !t.starts_with('<')).then(|| t.to_string())
        }
    }
}

/// The status line of a response, e.g. `404 Not Found`.
pub(crate) fn status_line(s: StatusCode) -> String {
    format!("{} {}", s.as_u16(), s.canonical_reason().unwrap_or(""))
        .trim()
        .to_string()
}

/// Turns an unexpected response into the error naming method, URL, status and the registry's message.
pub(crate) fn unexpected(method: &Method, url: &str, resp: Response) -> RegistryError {
    let status = status_line(resp.status());
    RegistryError::Status {
        method: method.to_string(),
        url: url.to_string(),
        status,
        detail: error_detail(resp),
    }
}

fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let v = headers.get(RETRY_AFTER)?.to_str().ok()?;
    v.trim()
        .parse::<u64>()
        .ok()
        .map(|s| Duration::from_secs(s.min(60)))
}

impl Client {
    /// The HTTP client, made on first use with the system's roots plus `--registry-ca`. A build failure (no
    /// usable TLS backend) is a connection error of the first request.
    fn http(&self) -> Result<&reqwest::blocking::Client, RegistryError> {
        if let Some(c) = self.http.get() {
            return Ok(c);
        }
        let mut b = self.builder();
        for c in &self.roots {
            b = b.add_root_certificate(c.clone());
        }
        let built = b.build().map_err(|e| RegistryError::Connection {
            url: String::new(),
            reason: e.to_string(),
        })?;
        Ok(self.http.get_or_init(|| built))
    }

    /// The client for plain-HTTP URLs (a loopback or insecure registry) and for the HTTPS probe of such a host. It
    /// trusts no certificate at all, so loading the system's roots (~14 ms of a 65 ms push of a small image here)
    /// is skipped; any TLS it meets fails as untrusted, which is all the probe needs to know. A redirect to an
    /// HTTPS URL (a registry's blob storage) is not followed by it but handed back, for [`Client::send`] to make
    /// the request again with the verifying client.
    fn plain(&self) -> Result<&reqwest::blocking::Client, RegistryError> {
        if let Some(c) = self.plain.get() {
            return Ok(c);
        }
        let built = self
            .builder()
            .tls_built_in_root_certs(false)
            .redirect(reqwest::redirect::Policy::custom(|a| {
                if a.url().scheme() == "https" {
                    a.stop()
                } else if a.previous().len() >= 10 {
                    a.error("too many redirects")
                } else {
                    a.follow()
                }
            }))
            .build()
            .map_err(|e| RegistryError::Connection {
                url: String::new(),
                reason: e.to_string(),
            })?;
        Ok(self.plain.get_or_init(|| built))
    }

    /// What both clients share.
    fn builder(&self) -> reqwest::blocking::ClientBuilder {
        reqwest::blocking::Client::builder()
            .user_agent(concat!("kiln/", env!("CARGO_PKG_VERSION")))
            .connect_timeout(Duration::from_secs(15))
            // Applied to each read of a body, so it bounds a stalled transfer, not a long one.
            .timeout(Duration::from_secs(120))
            .tcp_keepalive(Duration::from_secs(30))
            .pool_max_idle_per_host(self.opts.concurrency.max(1) * 2)
    }

    /// A client with `opts`; fails only when a CA file cannot be read.
    pub fn new(opts: ClientOptions) -> Result<Client, RegistryError> {
        let mut roots = Vec::new();
        for f in &opts.ca_files {
            let pem = std::fs::read(f).map_err(|e| {
                RegistryError::Credentials(format!("--registry-ca {}: {e}", f.display()))
            })?;
            let certs = reqwest::Certificate::from_pem_bundle(&pem).map_err(|e| {
                RegistryError::Credentials(format!("--registry-ca {}: {e}", f.display()))
            })?;
            roots.extend(certs);
        }
        Ok(Client {
            http: std::sync::OnceLock::new(),
            plain: std::sync::OnceLock::new(),
            roots,
            opts,
            schemes: Mutex::new(HashMap::new()),
            challenges: Mutex::new(HashMap::new()),
            tokens: Mutex::new(HashMap::new()),
            token_fetch: Mutex::new(()),
            creds: Mutex::new(HashMap::new()),
        })
    }

    fn may_use_http(&self, host: &str) -> bool {
        is_loopback(host) || self.opts.insecure.iter().any(|h| h == host)
    }

    /// `scheme://host/v2/...`: HTTPS, or HTTP for a host allowed it whose HTTPS does not answer.
    pub(crate) fn url(&self, host: &str, path: &str) -> Result<String, RegistryError> {
        let known = self.schemes.lock().ok().and_then(|m| m.get(host).copied());
        let scheme = match known {
            Some(s) => s,
            None if !self.may_use_http(host) => "https",
            None => {
                // Docker's rule for insecure registries: HTTPS first, plain HTTP if HTTPS cannot even connect.
                let probe = format!("https://{host}/v2/");
                let s = match self.plain()?.get(&probe).send() {
                    Ok(_) => "https",
                    // A server that speaks TLS with a certificate we do not trust stays on HTTPS, so the
                    // error the user sees is the certificate's, not a confusing plain-HTTP one.
                    Err(e) if transport_reason(&e).contains("certificate") => "https",
                    Err(e) if e.is_connect() || e.is_request() => "http",
                    Err(_) => "https",
                };
                if let Ok(mut m) = self.schemes.lock() {
                    m.insert(host.to_string(), s);
                }
                s
            }
        };
        Ok(format!("{scheme}://{host}{path}"))
    }

    /// The credential for `registry`, read once per client.
    pub(crate) fn credential(&self, registry: &str) -> Result<Option<Credential>, RegistryError> {
        if let Some(c) = self
            .creds
            .lock()
            .ok()
            .and_then(|m| m.get(registry).cloned())
        {
            return Ok(c);
        }
        let c = self.opts.docker_config.get(registry)?;
        if let Ok(mut m) = self.creds.lock() {
            m.insert(registry.to_string(), c.clone());
        }
        Ok(c)
    }

    /// Uses `c` for `registry` instead of what config.json holds (for `kiln login`, before it is saved).
    pub fn set_credential(&self, registry: &str, c: Credential) {
        if let Ok(mut m) = self.creds.lock() {
            m.insert(registry.to_string(), Some(c));
        }
    }

    fn basic(c: &Credential) -> String {
        let raw = format!("{}:{}", c.username, c.secret);
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(raw)
        )
    }

    /// The registry name whose credentials serve `host` (Docker Hub's API host files under docker.io).
    fn registry_of(host: &str) -> &str {
        if host == crate::reference::DOCKER_HUB_ENDPOINT {
            crate::reference::DOCKER_HUB
        } else {
            host
        }
    }

    fn cached_token(&self, key: &(String, String)) -> Option<String> {
        let (t, until) = self.tokens.lock().ok()?.get(key).cloned()?;
        (Instant::now() < until).then_some(t)
    }

    fn fetch_token(
        &self,
        host: &str,
        realm: &str,
        service: Option<&str>,
        scopes: &[String],
    ) -> Result<String, RegistryError> {
        let key = (host.to_string(), scopes.join(" "));
        if let Some(t) = self.cached_token(&key) {
            return Ok(t);
        }
        // One fetch at a time: threads that were challenged together share the token the first one gets.
        let _one = self.token_fetch.lock();
        if let Some(t) = self.cached_token(&key) {
            return Ok(t);
        }
        let mut url = reqwest::Url::parse(realm).map_err(|e| RegistryError::Invalid {
            url: realm.to_string(),
            reason: format!("token realm is not a URL: {e}"),
        })?;
        {
            let mut q = url.query_pairs_mut();
            if let Some(s) = service {
                q.append_pair("service", s);
            }
            for s in scopes {
                q.append_pair("scope", s);
            }
        }
        let cred = self.credential(Self::registry_of(host))?;
        let mut attempt = 0;
        let resp = loop {
            let mut rb = self.http()?.get(url.clone());
            if let Some(c) = &cred {
                rb = rb.header(AUTHORIZATION, Self::basic(c));
            }
            match rb.send() {
                Ok(r)
                    if (r.status().is_server_error()
                        || r.status() == StatusCode::TOO_MANY_REQUESTS)
                        && attempt < self.opts.retries =>
                {
                    self.pause(attempt, r.headers());
                }
                Ok(r) => break r,
                Err(e) if attempt >= self.opts.retries => {
                    return Err(RegistryError::Connection {
                        url: url.to_string(),
                        reason: transport_reason(&e),
                    })
                }
                Err(_) => self.pause(attempt, &HeaderMap::new()),
            }
            attempt += 1;
        };
        let status = resp.status();
        if status == StatusCode::UNAUTHORIZED || status == StatusCode::FORBIDDEN {
            return Err(RegistryError::Unauthorized {
                url: url.to_string(),
                status: status_line(status),
                reason: match cred {
                    Some(c) => format!(
                        "the token service refused the credentials of {:?} (wrong user name or password?)",
                        c.username
                    ),
                    None => format!(
                        "authentication required: run `kiln login {}`",
                        Self::registry_of(host)
                    ),
                },
            });
        }
        if !status.is_success() {
            return Err(unexpected(&Method::GET, url.as_str(), resp));
        }
        let parsed: TokenResponse =
            serde_json::from_reader(resp.take(1 << 20)).map_err(|e| RegistryError::Invalid {
                url: url.to_string(),
                reason: format!("token response: {e}"),
            })?;
        let (token, secs) = parsed.into_parts().ok_or_else(|| RegistryError::Invalid {
            url: url.to_string(),
            reason: "token response holds no token".to_string(),
        })?;
        // Refreshed a little early, so a token never expires in flight.
        let until = Instant::now() + Duration::from_secs(secs.saturating_sub(secs / 10 + 1).max(1));
        if let Ok(mut m) = self.tokens.lock() {
            m.insert(key, (token.clone(), until));
        }
        Ok(token)
    }

    fn authorization(
        &self,
        host: &str,
        scopes: &[String],
    ) -> Result<Option<String>, RegistryError> {
        let challenge = self
            .challenges
            .lock()
            .ok()
            .and_then(|m| m.get(host).cloned());
        match challenge {
            None => Ok(None),
            Some(Challenge::Basic) => Ok(self
                .credential(Self::registry_of(host))?
                .map(|c| Self::basic(&c))),
            Some(Challenge::Bearer { realm, service, .. }) => {
                let t = self.fetch_token(host, &realm, service.as_deref(), scopes)?;
                Ok(Some(format!("Bearer {t}")))
            }
        }
    }

    fn pause(&self, attempt: u32, headers: &HeaderMap) {
        let backoff = self
            .opts
            .backoff
            .saturating_mul(1u32 << attempt.min(6))
            .min(Duration::from_secs(10));
        std::thread::sleep(retry_after(headers).unwrap_or(backoff));
    }

    /// Sends `req`: authenticates when challenged, retries on connection errors, 5xx and 429, and returns the
    /// final response whatever its status (callers decide what they expect).
    pub(crate) fn send(&self, req: &Req<'_>) -> Result<Response, RegistryError> {
        let mut attempt = 0u32;
        let mut reauthed = false;
        // Plain HTTP goes through the client without TLS roots until it meets a redirect to HTTPS.
        let mut verifying = !req.url.starts_with("http://");
        loop {
            let http = if verifying {
                self.http()?
            } else {
                self.plain()?
            };
            let mut rb = http.request(req.method.clone(), &req.url);
            for (k, v) in &req.headers {
                rb = rb.header(*k, v);
            }
            if let Some(a) = self.authorization(req.host, req.scopes)? {
                rb = rb.header(AUTHORIZATION, a);
            }
            if let Some(body) = req.body {
                // An upload may take long (a streamed layer goes at compression speed): its own, longer limit.
                rb = rb.timeout(Duration::from_secs(30 * 60));
                let b = body().map_err(|e| RegistryError::Connection {
                    url: req.url.clone(),
                    reason: format!("reading the upload: {e}"),
                })?;
                rb = rb.body(b);
            }
            let resp = match rb.send() {
                Ok(r) => r,
                Err(e) => {
                    if attempt >= self.opts.retries {
                        return Err(RegistryError::Connection {
                            url: req.url.clone(),
                            reason: transport_reason(&e),
                        });
                    }
                    self.pause(attempt, &HeaderMap::new());
                    attempt += 1;
                    continue;
                }
            };
            let status = resp.status();
            if !verifying && status.is_redirection() && resp.headers().contains_key(LOCATION) {
                verifying = true;
                continue;
            }
            if status == StatusCode::UNAUTHORIZED {
                let challenge = resp
                    .headers()
                    .get(WWW_AUTHENTICATE)
                    .and_then(|v| v.to_str().ok())
                    .and_then(parse_challenge);
                let cred = self.credential(Self::registry_of(req.host))?;
                let first_time = match (&challenge, self.challenges.lock()) {
                    (Some(c), Ok(mut m)) => m.insert(req.host.to_string(), c.clone()).is_none(),
                    _ => false,
                };
                let can_retry = challenge.is_some()
                    && !reauthed
                    && (first_time
                        || matches!(challenge, Some(Challenge::Bearer { .. }))
                        || cred.is_some());
                if can_retry {
                    reauthed = true;
                    // A stale token is dropped so that the retry fetches a fresh one.
                    if let Ok(mut m) = self.tokens.lock() {
                        m.remove(&(req.host.to_string(), req.scopes.join(" ")));
                    }
                    continue;
                }
                return Err(RegistryError::Unauthorized {
                    url: req.url.clone(),
                    status: status_line(status),
                    reason: match cred {
                        Some(c) => format!(
                            "the registry refused the credentials of {:?} (wrong user name or password?)",
                            c.username
                        ),
                        None => format!(
                            "authentication required: run `kiln login {}`",
                            Self::registry_of(req.host)
                        ),
                    },
                });
            }
            if (status.is_server_error() || status == StatusCode::TOO_MANY_REQUESTS)
                && attempt < self.opts.retries
            {
                self.pause(attempt, resp.headers());
                attempt += 1;
                continue;
            }
            return Ok(resp);
        }
    }

    /// Checks that `registry` answers its API root with the client's credentials (what `kiln login` verifies
    /// before saving them): Ok, or the error naming URL and status.
    pub fn ping(&self, registry: &str) -> Result<(), RegistryError> {
        let host = if registry == crate::reference::DOCKER_HUB {
            crate::reference::DOCKER_HUB_ENDPOINT
        } else {
            registry
        };
        let url = self.url(host, "/v2/")?;
        let resp = self.send(&Req {
            method: Method::GET,
            url: url.clone(),
            host,
            scopes: &[],
            headers: vec![],
            body: None,
        })?;
        if resp.status().is_success() {
            Ok(())
        } else {
            Err(unexpected(&Method::GET, &url, resp))
        }
    }
}

/// The innermost cause of a transport error: "connection refused" says more than reqwest's wrapper.
pub(crate) fn transport_reason(e: &reqwest::Error) -> String {
    let mut msg = e.to_string();
    let mut src: Option<&dyn std::error::Error> = std::error::Error::source(e);
    while let Some(s) = src {
        msg = s.to_string();
        src = s.source();
    }
    msg
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_hosts() {
        for h in [
            "localhost:5000",
            "127.0.0.1:41234",
            "127.1.2.3",
            "[::1]:5000",
        ] {
            assert!(is_loopback(h), "{h}");
        }
        for h in ["registry.example:5000", "10.0.0.1", "docker.io"] {
            assert!(!is_loopback(h), "{h}");
        }
    }

    /// A plain-HTTP registry whose answer is a redirect to HTTPS (its blob storage): the request is made again by
    /// the verifying client, which trusts `--registry-ca` and nothing it was not given.
    #[test]
    fn a_redirect_from_plain_http_to_https_is_followed_with_verification() {
        let dir = tempfile::tempdir().unwrap();
        let (cert, key) = (dir.path().join("c.pem"), dir.path().join("k.pem"));
        let made = std::process::Command::new("openssl")
            .args([
                "req",
                "-x509",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:P-256",
                "-nodes",
            ])
            .args([
                "-days",
                "1",
                "-subj",
                "/CN=127.0.0.1",
                "-addext",
                "subjectAltName=IP:127.0.0.1",
            ])
            // A server certificate that is its own anchor, not a CA (which webpki refuses as a server's).
            .args(["-addext", "basicConstraints=critical,CA:FALSE"])
            .args(["-addext", "extendedKeyUsage=serverAuth"])
            .arg("-keyout")
            .arg(&key)
            .arg("-out")
            .arg(&cert)
            .output()
            .expect("openssl is installed");
        assert!(
            made.status.success(),
            "{}",
            String::from_utf8_lossy(&made.stderr)
        );
        let free = || std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let tls_port = free().local_addr().unwrap().port();
        // `-www` answers every GET with 200 and a status page.
        let mut server = std::process::Command::new("openssl")
            .args([
                "s_server",
                "-quiet",
                "-www",
                "-accept",
                &tls_port.to_string(),
            ])
            .arg("-cert")
            .arg(&cert)
            .arg("-key")
            .arg(&key)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("openssl s_server");
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", tls_port)).is_err() {
            assert!(Instant::now() < deadline, "s_server did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
        let redirector = free();
        let host = redirector.local_addr().unwrap().to_string();
        std::thread::spawn(move || {
            for conn in redirector.incoming() {
                let Ok(mut c) = conn else { return };
                let mut buf = [0u8; 4096];
                let _ = std::io::Read::read(&mut c, &mut buf);
                let answer = format!(
                    "HTTP/1.1 307 Temporary Redirect\r\nLocation: https://127.0.0.1:{tls_port}/\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                );
                let _ = std::io::Write::write_all(&mut c, answer.as_bytes());
            }
        });
        let get = |ca_files: Vec<PathBuf>| {
            let client = Client::new(ClientOptions {
                ca_files,
                retries: 0,
                ..ClientOptions::default()
            })
            .unwrap();
            client.send(&Req {
                method: Method::GET,
                url: format!("http://{host}/v2/"),
                host: &host,
                scopes: &[],
                headers: vec![],
                body: None,
            })
        };
        let trusted = get(vec![cert.clone()]).map(|r| r.status());
        let untrusted = get(vec![]).map(|r| r.status());
        let _ = server.kill();
        let _ = server.wait();
        assert_eq!(trusted.unwrap(), StatusCode::OK);
        match untrusted {
            Err(RegistryError::Connection { reason, .. }) => {
                assert!(
                    reason.contains("certificate") || reason.contains("UnknownIssuer"),
                    "{reason}"
                )
            }
            other => panic!("a certificate nobody vouched for was accepted: {other:?}"),
        }
    }

    #[test]
    fn retry_after_is_read_in_seconds_and_capped() {
        let mut h = HeaderMap::new();
        h.insert(RETRY_AFTER, "2".parse().unwrap());
        assert_eq!(retry_after(&h), Some(Duration::from_secs(2)));
        h.insert(RETRY_AFTER, "99999".parse().unwrap());
        assert_eq!(retry_after(&h), Some(Duration::from_secs(60)));
    }
}
