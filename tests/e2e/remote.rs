//! `ADD <url>` against a small HTTP server in the test: the file lands with mode 0600 and the server's
//! Last-Modified as its time; an unchanged file keeps the build cached (asked with If-None-Match, answered 304, no
//! transfer), a changed one re-runs what depends on it; `--checksum` is enforced; a 404 fails in one line naming
//! the URL and the status.

use std::io::{Read, Write};
use std::sync::{Arc, Mutex};

use kiln_tests::{Context, Root};

use crate::KILN;

/// Serves `body` at `/files/hello.txt` (Last-Modified: 6 Nov 1994, an ETag of its content; 304 to a matching
/// If-None-Match), 404 elsewhere; counts the bodies sent and the 304s.
struct Server {
    port: u16,
    body: Arc<Mutex<Vec<u8>>>,
    gets: Arc<Mutex<usize>>,
    not_modified: Arc<Mutex<usize>>,
}

impl Server {
    fn start(body: &[u8]) -> Server {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let body = Arc::new(Mutex::new(body.to_vec()));
        let gets = Arc::new(Mutex::new(0));
        let not_modified = Arc::new(Mutex::new(0));
        let (b, g, nm) = (body.clone(), gets.clone(), not_modified.clone());
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
                let asked = text
                    .lines()
                    .find_map(|l| {
                        let (k, v) = l.split_once(':')?;
                        k.eq_ignore_ascii_case("if-none-match")
                            .then(|| v.trim().to_string())
                    })
                    .unwrap_or_default();
                let reply = if text.starts_with("GET /files/hello.txt ") {
                    let body = b.lock().expect("body").clone();
                    let etag = format!("\"{}\"", &sha256(&body)[7..23]);
                    if asked == etag {
                        *nm.lock().expect("count") += 1;
                        format!("HTTP/1.1 304 Not Modified\r\nETag: {etag}\r\nConnection: close\r\n\r\n")
                            .into_bytes()
                    } else {
                        *g.lock().expect("count") += 1;
                        let mut r = format!(
                            "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nETag: {etag}\r\nLast-Modified: Sun, 06 Nov 1994 08:49:37 GMT\r\nConnection: close\r\n\r\n",
                            body.len()
                        )
                        .into_bytes();
                        r.extend_from_slice(&body);
                        r
                    }
                } else {
                    b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                        .to_vec()
                };
                let _ = conn.write_all(&reply);
            }
        });
        Server {
            port,
            body,
            gets,
            not_modified,
        }
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

    // Unchanged: asked again with If-None-Match, answered 304 (nothing sent), and every step cached.
    let again = build(out.path());
    assert_eq!(again.code, 0, "{}", again.stderr);
    assert!(
        again.stderr.contains("kiln: 0 step(s) run"),
        "every step cached:\n{}",
        again.stderr
    );
    assert_eq!(*server.gets.lock().expect("gets"), 1, "no second transfer");
    assert_eq!(*server.not_modified.lock().expect("304s"), 1);

    // A 304 while the step itself must run again (its parent changed): the kept bytes are what lands.
    let after_run = Context::new().file(
        "Dockerfile",
        format!("FROM busybox\nARG N\nRUN echo $N > /n\nADD {url} /got/\n"),
    );
    let out3 = tempfile::tempdir().expect("tempdir");
    for n in ["1", "2"] {
        let r = root.kiln(
            KILN,
            &[
                "build",
                "--progress=plain",
                "--build-arg",
                &format!("N={n}"),
                "-o",
                &format!("type=local,dest={}", out3.path().display()),
                after_run.path().to_str().expect("utf-8"),
            ],
        );
        assert_eq!(r.code, 0, "{}", r.stderr);
        assert_eq!(
            std::fs::read_to_string(out3.path().join("got/hello.txt")).expect("got"),
            "hello over http\n"
        );
    }
    assert_eq!(*server.gets.lock().expect("gets"), 1, "no second transfer");
    assert_eq!(*server.not_modified.lock().expect("304s"), 3);
    // Kept bytes are checked by doctor: damaged ones are reported (a 304 would trust them).
    let kept: Vec<_> = std::fs::read_dir(root.path().join("downloads"))
        .expect("downloads kept in the root")
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_none())
        .collect();
    assert_eq!(kept.len(), 1, "{kept:?}");
    let doctor = root.kiln(KILN, &["doctor"]);
    assert_eq!(doctor.code, 0, "{}{}", doctor.stdout, doctor.stderr);
    let good = std::fs::read(&kept[0]).expect("kept");
    std::fs::write(&kept[0], b"tampered\n").expect("tamper");
    let doctor = root.kiln(KILN, &["doctor"]);
    assert_eq!(doctor.code, 1, "{}{}", doctor.stdout, doctor.stderr);
    assert!(
        doctor.stdout.contains("does not hash to its name"),
        "{}",
        doctor.stdout
    );
    std::fs::write(&kept[0], good).expect("restore");

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

/// `git daemon` serving `base` on a loopback port, stopped on drop.
struct GitDaemon {
    child: std::process::Child,
    pid_file: std::path::PathBuf,
}

impl Drop for GitDaemon {
    fn drop(&mut self) {
        // `git daemon` runs the daemon as a child of its own: stop that one by its pid file too.
        if let Ok(pid) = std::fs::read_to_string(&self.pid_file) {
            let _ = std::process::Command::new("kill").arg(pid.trim()).status();
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn git(dir: &std::path::Path, args: &[&str]) -> String {
    let out = std::process::Command::new("git")
        .args(args)
        .current_dir(dir)
        .env("GIT_AUTHOR_NAME", "kiln")
        .env("GIT_AUTHOR_EMAIL", "kiln@example.invalid")
        .env("GIT_COMMITTER_NAME", "kiln")
        .env("GIT_COMMITTER_EMAIL", "kiln@example.invalid")
        .output()
        .expect("git");
    assert!(
        out.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

#[test]
fn add_of_a_git_url_checks_out_the_ref_its_subdirectory_and_keys_by_commit() {
    let base = tempfile::tempdir().expect("tempdir");
    let repo = base.path().join("repo.git");
    std::fs::create_dir_all(repo.join("sub")).expect("mkdir");
    std::fs::write(repo.join("top.txt"), "top v1\n").expect("write");
    std::fs::write(repo.join("sub/inner.txt"), "inner v1\n").expect("write");
    git(&repo, &["init", "-q", "-b", "main"]);
    git(&repo, &["add", "."]);
    git(&repo, &["commit", "-q", "-m", "one"]);
    git(&repo, &["tag", "-a", "v1", "-m", "v1"]);
    let first = git(&repo, &["rev-parse", "HEAD"]);
    let port = kiln_tests::registry::free_port();
    let pid_file = base.path().join("daemon.pid");
    let child = std::process::Command::new("git")
        .args([
            "daemon",
            "--reuseaddr",
            "--export-all",
            "--listen=127.0.0.1",
            &format!("--port={port}"),
            &format!("--pid-file={}", pid_file.display()),
            &format!("--base-path={}", base.path().display()),
        ])
        .arg(base.path())
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("git daemon");
    let _daemon = GitDaemon { child, pid_file };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            std::time::Instant::now() < deadline,
            "git daemon did not start"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let remote = format!("git://127.0.0.1:{port}/repo.git");

    let root = Root::with_busybox(KILN);
    let ctx = Context::new().file(
        "Dockerfile",
        format!(
            "FROM busybox\nADD {remote}#main /whole\nADD {remote}#v1:sub /sub\n\
             ADD --keep-git-dir=true {remote} /kept\nADD --checksum={first} {remote}#main /pinned\n"
        ),
    );
    let out = tempfile::tempdir().expect("tempdir");
    let dest = format!("type=local,dest={}", out.path().display());
    let c = ctx.path().to_str().expect("utf-8");
    let r = root.kiln(KILN, &["build", "--progress=plain", "-o", &dest, c]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let read = |p: &str| std::fs::read_to_string(out.path().join(p)).expect(p);
    assert_eq!(read("whole/top.txt"), "top v1\n");
    assert_eq!(read("whole/sub/inner.txt"), "inner v1\n");
    assert!(
        !out.path().join("whole/.git").exists(),
        "no .git without --keep-git-dir"
    );
    assert_eq!(
        read("sub/inner.txt"),
        "inner v1\n",
        "the fragment's sub-directory"
    );
    assert!(
        out.path().join("kept/.git").is_dir(),
        "--keep-git-dir keeps it"
    );
    assert_eq!(read("pinned/top.txt"), "top v1\n");

    // Unchanged remote: every step cached.
    let again = root.kiln(KILN, &["build", "--progress=plain", "-o", &dest, c]);
    assert!(
        again.stderr.contains("kiln: 0 step(s) run"),
        "{}",
        again.stderr
    );

    // A new commit on main: `#main` moves, the tag stays, and the pinned checksum no longer matches.
    std::fs::write(repo.join("top.txt"), "top v2\n").expect("write");
    git(&repo, &["commit", "-q", "-am", "two"]);
    let moved = root.kiln(KILN, &["build", "--progress=plain", "-o", &dest, c]);
    assert_eq!(moved.code, 1, "{}", moved.stderr);
    assert!(
        moved.stderr.contains("checksum mismatch"),
        "{}",
        moved.stderr
    );
    let unpinned = Context::new().file(
        "Dockerfile",
        format!("FROM busybox\nADD {remote}#main /whole\nADD {remote}#v1:sub /sub\n"),
    );
    let u = unpinned.path().to_str().expect("utf-8");
    let r = root.kiln(KILN, &["build", "--progress=plain", "-o", &dest, u]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(read("whole/top.txt"), "top v2\n");
    let missing = Context::new().file(
        "Dockerfile",
        format!("FROM busybox\nADD {remote}#nope /x\n"),
    );
    let r = root.kiln(
        KILN,
        &[
            "build",
            "--progress=quiet",
            missing.path().to_str().expect("utf-8"),
        ],
    );
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert!(
        r.stderr.contains(&remote) && r.stderr.contains("nope"),
        "{}",
        r.stderr
    );
}
