//! `ADD <url>` against a small HTTP server in the test: the file lands with mode 0600 and the server's
//! Last-Modified as its time; an unchanged file keeps the build cached, a changed one re-runs what depends on it;
//! `--checksum` is enforced; a 404 fails in one line naming the URL and the status.

use std::io::{Read, Write};
use std::sync::{Arc, Mutex};

use kiln_tests::{Context, Root};

use crate::KILN;

/// Serves `body` at `/files/hello.txt` (Last-Modified: 6 Nov 1994), 404 elsewhere; counts the GETs.
struct Server {
    port: u16,
    body: Arc<Mutex<Vec<u8>>>,
    gets: Arc<Mutex<usize>>,
}

impl Server {
    fn start(body: &[u8]) -> Server {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let body = Arc::new(Mutex::new(body.to_vec()));
        let gets = Arc::new(Mutex::new(0));
        let (b, g) = (body.clone(), gets.clone());
        std::thread::spawn(move || {
            for mut conn in listener.incoming().flatten() {
                let mut req = Vec::new();
                let mut buf = [0u8; 1024];
                while !req.windows(4).any(|w| w == b"\r\n\r\n") {
                    match conn.read(&mut buf) {
                        Ok(0) | Err(_) => break,
                        Ok(n) => req.extend_from_slice(&buf[..n]),
                    }
                }
                let text = String::from_utf8_lossy(&req);
                let reply = if text.starts_with("GET /files/hello.txt ") {
                    *g.lock().expect("count") += 1;
                    let body = b.lock().expect("body").clone();
                    let mut r = format!(
                        "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nLast-Modified: Sun, 06 Nov 1994 08:49:37 GMT\r\nConnection: close\r\n\r\n",
                        body.len()
                    )
                    .into_bytes();
                    r.extend_from_slice(&body);
                    r
                } else {
                    b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                        .to_vec()
                };
                let _ = conn.write_all(&reply);
            }
        });
        Server { port, body, gets }
    }

    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }
}

fn sha256(bytes: &[u8]) -> String {
    oci::Digest::sha256_of(bytes).to_string()
}

#[test]
fn add_of_a_url_downloads_keys_by_content_and_checks_checksums() {
    let root = Root::with_busybox(KILN);
    let server = Server::start(b"hello over http\n");
    let url = server.url("/files/hello.txt");
    let ctx = Context::new().file(
        "Dockerfile",
        format!(
            "FROM busybox\nADD {url} /got/\nADD --checksum={} {url} /checked\n\
             RUN stat -c '%a %Y' /got/hello.txt > /meta && cat /got/hello.txt > /copy\n",
            sha256(b"hello over http\n")
        ),
    );
    let out = tempfile::tempdir().expect("tempdir");
    let build = |dest: &std::path::Path| {
        root.kiln(
            KILN,
            &[
                "build",
                "--progress=plain",
                "-o",
                &format!("type=local,dest={}", dest.display()),
                ctx.path().to_str().expect("utf-8"),
            ],
        )
    };
    let first = build(out.path());
    assert_eq!(first.code, 0, "{}", first.stderr);
    let read = |p: &str| std::fs::read_to_string(out.path().join(p)).expect(p);
    assert_eq!(read("got/hello.txt"), "hello over http\n");
    assert_eq!(read("checked"), "hello over http\n");
    assert_eq!(
        read("meta"),
        "600 784111777\n",
        "mode 0600, Last-Modified as mtime"
    );
    assert_eq!(
        *server.gets.lock().expect("gets"),
        1,
        "one URL is fetched once per build"
    );

    // Unchanged: fetched again (its content is the key) and every step cached.
    let again = build(out.path());
    assert_eq!(again.code, 0, "{}", again.stderr);
    assert!(
        again.stderr.contains("kiln: 0 step(s) run"),
        "every step cached:\n{}",
        again.stderr
    );
    assert_eq!(*server.gets.lock().expect("gets"), 2);

    // Changed on the server: the checksum no longer holds, and the step fails naming the URL.
    *server.body.lock().expect("body") = b"changed\n".to_vec();
    let changed = build(out.path());
    assert_eq!(changed.code, 1, "{}", changed.stderr);
    assert!(
        changed.stderr.contains(&url) && changed.stderr.contains("checksum mismatch"),
        "{}",
        changed.stderr
    );

    // A URL that is not there: one line with the URL and the status.
    let missing = server.url("/files/nope.txt");
    let ctx404 = Context::new().file("Dockerfile", format!("FROM busybox\nADD {missing} /\n"));
    let r = root.kiln(
        KILN,
        &[
            "build",
            "--progress=quiet",
            ctx404.path().to_str().expect("utf-8"),
        ],
    );
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert!(
        r.stderr.contains(&missing) && r.stderr.contains("404"),
        "{}",
        r.stderr
    );

    // Without a checksum, a changed file re-runs the steps that use it.
    let plain = Context::new().file(
        "Dockerfile",
        format!("FROM busybox\nADD {url} /got/\nRUN cat /got/hello.txt > /copy\n"),
    );
    let out2 = tempfile::tempdir().expect("tempdir");
    let dest = format!("type=local,dest={}", out2.path().display());
    let p = plain.path().to_str().expect("utf-8");
    let r = root.kiln(KILN, &["build", "--progress=plain", "-o", &dest, p]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(
        std::fs::read_to_string(out2.path().join("copy")).expect("copy"),
        "changed\n"
    );
    *server.body.lock().expect("body") = b"changed again\n".to_vec();
    let r = root.kiln(KILN, &["build", "--progress=plain", "-o", &dest, p]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(
        std::fs::read_to_string(out2.path().join("copy")).expect("copy"),
        "changed again\n"
    );
}
