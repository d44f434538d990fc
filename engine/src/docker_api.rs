//! The little of the Docker Engine API `--load` needs, spoken over the engine's unix socket with plain HTTP/1.1:
//! `GET /_ping` (is anyone there, asked before a build starts) and `POST /images/load` with a docker archive as a
//! chunked request body, written as it is made (no file of the whole image anywhere), its JSON-lines answer read
//! for an error. Podman's socket answers the same Docker-compatible calls. No HTTP library: the two calls are a
//! few lines each, and a blob goes from the store to the socket by `sendfile`.

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};

/// Which engine an [`Endpoint`] is, for its default socket and for messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EngineKind {
    /// dockerd: `DOCKER_HOST`, else `/var/run/docker.sock`.
    Docker,
    /// Podman's API service: `CONTAINER_HOST`, else `/run/podman/podman.sock` (root) or
    /// `$XDG_RUNTIME_DIR/podman/podman.sock` (a user).
    Podman,
}

impl std::fmt::Display for EngineKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            EngineKind::Docker => "Docker",
            EngineKind::Podman => "Podman",
        })
    }
}

/// A container engine's API socket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    /// Which engine.
    pub kind: EngineKind,
    /// The unix socket it listens on.
    pub socket: PathBuf,
}

/// Why the engine could not be reached, or did not take the image.
#[derive(Debug, thiserror::Error)]
pub enum DockerApiError {
    /// `DOCKER_HOST`/`CONTAINER_HOST` names something other than a unix socket.
    #[error("{var}={value}: kiln reaches the engine through a unix socket only (unix:///path/to/socket)")]
    UnsupportedHost {
        /// The variable.
        var: &'static str,
        /// Its value.
        value: String,
    },
    /// `--load=VALUE` names no engine kiln knows.
    #[error("--load={0}: valid values are docker and podman")]
    UnknownEngine(String),
    /// Nothing answers on the socket.
    #[error("cannot connect to the {kind} daemon at unix://{}: {source}. Is the {} daemon running? ({hint})", socket.display(), kind.to_string().to_lowercase())]
    Connect {
        /// Which engine.
        kind: EngineKind,
        /// The socket.
        socket: PathBuf,
        /// Why.
        source: std::io::Error,
        /// Which variable points elsewhere.
        hint: &'static str,
    },
    /// The conversation broke off.
    #[error("the {kind} daemon at unix://{}: {what}: {source}", socket.display())]
    Io {
        /// Which engine.
        kind: EngineKind,
        /// The socket.
        socket: PathBuf,
        /// What was being done.
        what: &'static str,
        /// Why.
        source: std::io::Error,
    },
    /// The answer is not HTTP as expected.
    #[error("the {kind} daemon at unix://{}: malformed answer: {detail}", socket.display())]
    Protocol {
        /// Which engine.
        kind: EngineKind,
        /// The socket.
        socket: PathBuf,
        /// What was wrong.
        detail: String,
    },
    /// The engine refused the request or reported an error while loading.
    #[error("the {kind} daemon at unix://{} could not load the image: {message}", socket.display())]
    Refused {
        /// Which engine.
        kind: EngineKind,
        /// The socket.
        socket: PathBuf,
        /// The engine's message (or the HTTP status when it gave none).
        message: String,
    },
    /// Making the archive failed while it was being sent.
    #[error("{0}")]
    Archive(String),
}

/// `unix:///path` → `/path`; anything else is refused.
fn unix_socket(var: &'static str, value: &str) -> Result<PathBuf, DockerApiError> {
    match value.strip_prefix("unix://") {
        Some(p) if !p.is_empty() => Ok(PathBuf::from(p)),
        _ => Err(DockerApiError::UnsupportedHost {
            var,
            value: value.to_string(),
        }),
    }
}

impl Endpoint {
    /// dockerd's socket, as the docker CLI finds it (a context other than the default is not read).
    pub fn docker() -> Result<Endpoint, DockerApiError> {
        let socket = match std::env::var("DOCKER_HOST") {
            Ok(v) if !v.is_empty() => unix_socket("DOCKER_HOST", &v)?,
            _ => PathBuf::from("/var/run/docker.sock"),
        };
        Ok(Endpoint {
            kind: EngineKind::Docker,
            socket,
        })
    }

    /// Podman's API socket, as podman-remote finds it.
    pub fn podman() -> Result<Endpoint, DockerApiError> {
        let socket = match std::env::var("CONTAINER_HOST") {
            Ok(v) if !v.is_empty() => unix_socket("CONTAINER_HOST", &v)?,
            _ => match std::env::var_os("XDG_RUNTIME_DIR") {
                // A user's Podman listens in its runtime directory.
                // SAFETY: geteuid has no preconditions and cannot fail.
                Some(dir) if unsafe { libc::geteuid() } != 0 => {
                    Path::new(&dir).join("podman/podman.sock")
                }
                _ => PathBuf::from("/run/podman/podman.sock"),
            },
        };
        Ok(Endpoint {
            kind: EngineKind::Podman,
            socket,
        })
    }

    /// The engine `--load[=VALUE]` names: `docker` (or nothing) or `podman`.
    pub fn for_load(value: &str) -> Result<Endpoint, DockerApiError> {
        match value {
            "" | "docker" | "true" => Endpoint::docker(),
            "podman" => Endpoint::podman(),
            other => Err(DockerApiError::UnknownEngine(other.to_string())),
        }
    }

    fn hint(&self) -> &'static str {
        match self.kind {
            EngineKind::Docker => "DOCKER_HOST=unix:///path selects another socket",
            EngineKind::Podman => "start it with `podman system service`; CONTAINER_HOST=unix:///path selects another socket",
        }
    }

    fn connect(&self) -> Result<UnixStream, DockerApiError> {
        UnixStream::connect(&self.socket).map_err(|source| DockerApiError::Connect {
            kind: self.kind,
            socket: self.socket.clone(),
            source,
            hint: self.hint(),
        })
    }

    fn io(&self, what: &'static str) -> impl Fn(std::io::Error) -> DockerApiError + '_ {
        move |source| DockerApiError::Io {
            kind: self.kind,
            socket: self.socket.clone(),
            what,
            source,
        }
    }

    fn protocol(&self, detail: impl Into<String>) -> DockerApiError {
        DockerApiError::Protocol {
            kind: self.kind,
            socket: self.socket.clone(),
            detail: detail.into(),
        }
    }

    fn refused(&self, message: impl Into<String>) -> DockerApiError {
        DockerApiError::Refused {
            kind: self.kind,
            socket: self.socket.clone(),
            message: message.into(),
        }
    }

    /// `GET /_ping`: whether the engine answers, asked before a build so a `--load` with no engine fails before
    /// any step runs.
    pub fn ping(&self) -> Result<(), DockerApiError> {
        let mut s = self.connect()?;
        s.write_all(b"GET /_ping HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
            .map_err(self.io("sending GET /_ping"))?;
        let (status, body) = self.response(&mut s)?;
        if status != 200 {
            return Err(self.refused(error_message(status, &body)));
        }
        Ok(())
    }

    /// `POST /images/load`: `write` writes a docker archive into the request body as it makes it; the engine's
    /// answer is then read, and any error in it (or `write`'s own) returned. On success, what the engine said
    /// (`Loaded image: app:1`).
    pub fn load(
        &self,
        write: impl FnOnce(&mut dyn exporter::ArchiveOut) -> Result<(), String>,
    ) -> Result<String, DockerApiError> {
        let mut s = self.connect()?;
        s.write_all(
            b"POST /images/load?quiet=1 HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/x-tar\r\n\
              Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n",
        )
        .map_err(self.io("sending POST /images/load"))?;
        let sent = {
            let mut body = ChunkedBody::new(&mut s);
            write(&mut body).and_then(|()| body.finish().map_err(|e| e.to_string()))
        };
        if sent.is_err() {
            // The body stops here unfinished: the engine sees it end and answers (or hangs up) instead of waiting
            // for the rest, and is given a while to do so.
            let _ = s.shutdown(std::net::Shutdown::Write);
            let _ = s.set_read_timeout(Some(std::time::Duration::from_secs(30)));
        }
        // The engine may have stopped reading to answer with an error: its answer says more than a broken pipe.
        let answer = self.response(&mut s);
        let (status, text) = match (sent, answer) {
            (Err(_), Ok((status, text))) if status != 200 || stream_error(&text).is_some() => {
                (status, text)
            }
            (Err(e), _) => return Err(DockerApiError::Archive(e)),
            (Ok(()), answer) => answer?,
        };
        if status != 200 {
            return Err(self.refused(error_message(status, &text)));
        }
        if let Some(e) = stream_error(&text) {
            return Err(self.refused(e));
        }
        Ok(stream_text(&text))
    }

    /// Reads one HTTP response to the end (the request said `Connection: close`): its status and body, a chunked
    /// body decoded.
    fn response(&self, s: &mut UnixStream) -> Result<(u16, String), DockerApiError> {
        let read = self.io("reading the answer");
        let mut r = BufReader::new(s);
        let mut line = String::new();
        r.read_line(&mut line).map_err(&read)?;
        let status: u16 = line
            .split_whitespace()
            .nth(1)
            .and_then(|c| c.parse().ok())
            .ok_or_else(|| self.protocol(format!("status line {:?}", line.trim_end())))?;
        let mut chunked = false;
        let mut length: Option<usize> = None;
        loop {
            line.clear();
            if r.read_line(&mut line).map_err(&read)? == 0 {
                return Err(self.protocol("the headers never ended"));
            }
            let h = line.trim_end();
            if h.is_empty() {
                break;
            }
            if let Some((name, value)) = h.split_once(':') {
                let value = value.trim();
                if name.eq_ignore_ascii_case("transfer-encoding") {
                    chunked = value.eq_ignore_ascii_case("chunked");
                } else if name.eq_ignore_ascii_case("content-length") {
                    length = value.parse().ok();
                }
            }
        }
        let mut body = Vec::new();
        if chunked {
            loop {
                line.clear();
                r.read_line(&mut line).map_err(&read)?;
                let size = line.trim_end().split(';').next().unwrap_or("");
                let size = usize::from_str_radix(size, 16)
                    .map_err(|_| self.protocol(format!("chunk size {:?}", line.trim_end())))?;
                if size == 0 {
                    break;
                }
                let at = body.len();
                body.resize(at + size, 0);
                r.read_exact(&mut body[at..]).map_err(&read)?;
                line.clear();
                r.read_line(&mut line).map_err(&read)?;
            }
        } else if let Some(n) = length {
            body.resize(n, 0);
            r.read_exact(&mut body).map_err(&read)?;
        } else {
            r.read_to_end(&mut body).map_err(&read)?;
        }
        Ok((status, String::from_utf8_lossy(&body).into_owned()))
    }
}

/// An error body's message: Docker's `{"message": "..."}`, else the body itself, else the status.
fn error_message(status: u16, body: &str) -> String {
    let parsed: Option<serde_json::Value> = serde_json::from_str(body.trim()).ok();
    match parsed.as_ref().and_then(|v| v["message"].as_str()) {
        Some(m) => m.to_string(),
        None if !body.trim().is_empty() => format!("HTTP {status}: {}", body.trim()),
        None => format!("HTTP {status}"),
    }
}

/// The first error of a JSON-lines progress stream (`{"errorDetail": {"message": ...}, "error": ...}`).
fn stream_error(text: &str) -> Option<String> {
    json_lines(text).find_map(|v| {
        v["errorDetail"]["message"]
            .as_str()
            .or_else(|| v["error"].as_str())
            .map(str::to_string)
    })
}

/// What a JSON-lines progress stream said (its `stream` texts), trimmed.
fn stream_text(text: &str) -> String {
    json_lines(text)
        .filter_map(|v| v["stream"].as_str().map(str::to_string))
        .collect::<String>()
        .trim()
        .to_string()
}

fn json_lines(text: &str) -> impl Iterator<Item = serde_json::Value> + '_ {
    // Objects may follow each other on one line, as Docker's stream writes them.
    serde_json::Deserializer::from_str(text)
        .into_iter::<serde_json::Value>()
        .map_while(Result::ok)
}

/// A request body in HTTP/1.1 chunked transfer encoding: small writes gathered into chunks of [`CHUNK`], a blob
/// of the store sent as one chunk straight from its file (`sendfile`).
struct ChunkedBody<'a> {
    out: &'a mut UnixStream,
    buf: Vec<u8>,
}

/// The size of a chunk made of small writes.
const CHUNK: usize = 1 << 20;

impl<'a> ChunkedBody<'a> {
    fn new(out: &'a mut UnixStream) -> ChunkedBody<'a> {
        ChunkedBody {
            out,
            buf: Vec::with_capacity(CHUNK),
        }
    }

    fn chunk(&mut self, data: &[u8]) -> std::io::Result<()> {
        if data.is_empty() {
            return Ok(());
        }
        self.out
            .write_all(format!("{:x}\r\n", data.len()).as_bytes())?;
        self.out.write_all(data)?;
        self.out.write_all(b"\r\n")
    }

    fn flush_buf(&mut self) -> std::io::Result<()> {
        let buf = std::mem::take(&mut self.buf);
        let r = self.chunk(&buf);
        self.buf = buf;
        self.buf.clear();
        r
    }

    /// Ends the body (the zero-length chunk).
    fn finish(mut self) -> std::io::Result<()> {
        self.flush_buf()?;
        self.out.write_all(b"0\r\n\r\n")?;
        self.out.flush()
    }
}

impl Write for ChunkedBody<'_> {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        if self.buf.is_empty() && data.len() >= CHUNK {
            self.chunk(data)?;
            return Ok(data.len());
        }
        let n = data.len().min(CHUNK - self.buf.len());
        self.buf.extend_from_slice(&data[..n]);
        if self.buf.len() == CHUNK {
            self.flush_buf()?;
        }
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.flush_buf()?;
        self.out.flush()
    }
}

impl exporter::ArchiveOut for ChunkedBody<'_> {
    fn append_blob(&mut self, blob: &mut std::fs::File, len: u64) -> std::io::Result<()> {
        self.flush_buf()?;
        if len == 0 {
            return Ok(());
        }
        self.out.write_all(format!("{len:x}\r\n").as_bytes())?;
        let mut left = len;
        while left > 0 {
            let want = usize::try_from(left.min(1 << 30)).unwrap_or(1 << 30);
            match rustix::fs::sendfile(&*self.out, &*blob, None, want) {
                Ok(0) => {
                    return Err(std::io::Error::new(
                        std::io::ErrorKind::UnexpectedEof,
                        "the blob is shorter than its size",
                    ))
                }
                Ok(n) => left -= n as u64,
                Err(rustix::io::Errno::INTR) => {}
                // No sendfile from this file (an unusual filesystem): the bytes go through this process.
                Err(rustix::io::Errno::INVAL | rustix::io::Errno::NOSYS) if left == len => {
                    oci::writeback::copy_through(blob, &mut *self.out, len)?;
                    left = 0;
                }
                Err(e) => return Err(e.into()),
            }
        }
        self.out.write_all(b"\r\n")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::net::UnixListener;

    #[test]
    fn hosts_other_than_unix_sockets_are_refused_by_name() {
        assert_eq!(
            unix_socket("DOCKER_HOST", "unix:///run/x.sock").unwrap(),
            PathBuf::from("/run/x.sock")
        );
        let e = unix_socket("DOCKER_HOST", "tcp://1.2.3.4:2375").unwrap_err();
        assert!(
            e.to_string().contains("DOCKER_HOST=tcp://1.2.3.4:2375"),
            "{e}"
        );
        assert!(Endpoint::for_load("lxd").is_err());
    }

    #[test]
    fn no_socket_is_an_error_naming_the_path() {
        let d = tempfile::tempdir().unwrap();
        let e = Endpoint {
            kind: EngineKind::Docker,
            socket: d.path().join("docker.sock"),
        };
        let msg = e.ping().unwrap_err().to_string();
        assert!(
            msg.contains(&format!("unix://{}", e.socket.display())),
            "{msg}"
        );
        assert!(msg.contains("Is the docker daemon running?"), "{msg}");
    }

    /// A one-request server answering `answer` after reading the whole request; the request it read.
    fn serve(sock: &Path, answer: String) -> std::thread::JoinHandle<Vec<u8>> {
        let l = UnixListener::bind(sock).unwrap();
        std::thread::spawn(move || {
            let (mut c, _) = l.accept().unwrap();
            let mut req = Vec::new();
            let mut buf = [0u8; 65536];
            while !req.ends_with(b"0\r\n\r\n") {
                let n = c.read(&mut buf).unwrap();
                if n == 0 {
                    break;
                }
                req.extend_from_slice(&buf[..n]);
            }
            c.write_all(answer.as_bytes()).unwrap();
            req
        })
    }

    fn dechunk(body: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        let mut rest = body;
        loop {
            let eol = rest.windows(2).position(|w| w == b"\r\n").unwrap();
            let n = usize::from_str_radix(std::str::from_utf8(&rest[..eol]).unwrap(), 16).unwrap();
            rest = &rest[eol + 2..];
            if n == 0 {
                return out;
            }
            out.extend_from_slice(&rest[..n]);
            rest = &rest[n + 2..];
        }
    }

    #[test]
    fn a_load_sends_a_chunked_body_and_reads_the_stream_for_errors() {
        let d = tempfile::tempdir().unwrap();
        let sock = d.path().join("d.sock");
        let e = Endpoint {
            kind: EngineKind::Docker,
            socket: sock.clone(),
        };
        let blob_path = d.path().join("blob");
        let blob: Vec<u8> = (0..3_000_000u32).map(|i| (i % 253) as u8).collect();
        std::fs::write(&blob_path, &blob).unwrap();
        let line = "{\"stream\":\"Loaded image: app:1\\n\"}\n";
        let server = serve(
            &sock,
            format!(
                "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n\
                 {:x}\r\n{line}\r\n0\r\n\r\n",
                line.len()
            ),
        );
        let said = e
            .load(|out| {
                out.write_all(b"head").map_err(|x| x.to_string())?;
                let mut f = std::fs::File::open(&blob_path).map_err(|x| x.to_string())?;
                out.append_blob(&mut f, blob.len() as u64)
                    .map_err(|x| x.to_string())?;
                out.write_all(b"tail").map_err(|x| x.to_string())
            })
            .unwrap();
        assert_eq!(said, "Loaded image: app:1");
        let req = server.join().unwrap();
        let split = req.windows(4).position(|w| w == b"\r\n\r\n").unwrap();
        let head = String::from_utf8_lossy(&req[..split]);
        assert!(
            head.starts_with("POST /images/load?quiet=1 HTTP/1.1"),
            "{head}"
        );
        assert!(head.contains("Transfer-Encoding: chunked"), "{head}");
        let body = dechunk(&req[split + 4..]);
        assert_eq!(body.len(), blob.len() + 8);
        assert_eq!(&body[..4], b"head");
        assert!(body[4..4 + blob.len()] == blob[..]);
        assert_eq!(&body[4 + blob.len()..], b"tail");

        std::fs::remove_file(&sock).unwrap();
        let server = serve(
            &sock,
            "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n\r\n\
             {\"errorDetail\":{\"message\":\"unexpected EOF\"},\"error\":\"unexpected EOF\"}\r\n"
                .to_string(),
        );
        let err = e.load(|out| out.write_all(b"x").map_err(|x| x.to_string()));
        server.join().unwrap();
        let msg = err.unwrap_err().to_string();
        assert!(
            msg.ends_with("could not load the image: unexpected EOF"),
            "{msg}"
        );
    }
}
