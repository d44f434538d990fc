//! Helpers for kiln's end-to-end tests (`tests/e2e/`), which drive the real `kiln` binary as users do: a build
//! context in a temporary directory, the binary run as a process, its exit code and output checked.

pub mod dockerd;
pub mod proxy;
pub mod registry;
pub mod token;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

/// A build context in a temporary directory, removed on drop.
pub struct Context {
    dir: tempfile::TempDir,
}

impl Context {
    /// An empty context.
    pub fn new() -> Context {
        Context {
            dir: tempfile::tempdir().expect("create a temporary build context"),
        }
    }

    /// Writes `path` (relative, parents created) with `content`.
    pub fn file(self, path: &str, content: impl AsRef<[u8]>) -> Context {
        let full = self.dir.path().join(path);
        if let Some(parent) = full.parent() {
            std::fs::create_dir_all(parent).expect("create parent directories");
        }
        std::fs::write(&full, content).expect("write a context file");
        self
    }

    /// The context directory.
    pub fn path(&self) -> &Path {
        self.dir.path()
    }
}

impl Default for Context {
    fn default() -> Self {
        Context::new()
    }
}

/// The result of one kiln run.
pub struct Run {
    /// Exit code (-1 if killed by a signal).
    pub code: i32,
    /// Standard output.
    pub stdout: String,
    /// Standard error.
    pub stderr: String,
}

impl From<Output> for Run {
    fn from(o: Output) -> Run {
        Run {
            code: o.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
        }
    }
}

/// Runs `bin` with `args` (and optional stdin), never inheriting the terminal.
pub fn run(bin: &str, args: &[&str], stdin: Option<&[u8]>) -> Run {
    let mut cmd = Command::new(bin);
    cmd.args(args);
    run_command(cmd, stdin)
}

/// Runs a prepared command with captured output and optional stdin.
fn run_command(mut cmd: Command, stdin: Option<&[u8]>) -> Run {
    cmd.stdin(if stdin.is_some() {
        Stdio::piped()
    } else {
        Stdio::null()
    })
    .stdout(Stdio::piped())
    .stderr(Stdio::piped());
    let mut child = cmd.spawn().expect("spawn the program under test");
    if let Some(input) = stdin {
        let mut pipe = child.stdin.take().expect("stdin pipe");
        pipe.write_all(input).expect("write stdin");
    }
    child
        .wait_with_output()
        .expect("wait for the program")
        .into()
}

/// A kiln root in a temporary directory with the busybox base image imported (made offline by
/// `scripts/base-images.sh` from Debian's busybox-static).
pub struct Root {
    dir: tempfile::TempDir,
}

impl Root {
    /// A fresh root holding `busybox:latest`.
    pub fn with_busybox(bin: &str) -> Root {
        Root::with_bases(bin, &[])
    }

    /// A root holding busybox and a Debian base (`debian:bookworm`, bootstrapped from the Debian mirror with
    /// mmdebstrap): what the compiled and ml-env examples build on.
    pub fn with_debian(bin: &str) -> Root {
        Root::with_bases(bin, &["--debian"])
    }

    fn with_bases(bin: &str, extra: &[&str]) -> Root {
        let dir = private_dir();
        let out = Command::new("bash")
            .arg(repo_root().join("scripts/base-images.sh"))
            .arg(bin)
            .args(extra)
            .env("KILN_ROOT", dir.path())
            .output()
            .expect("run scripts/base-images.sh");
        assert!(
            out.status.success(),
            "making the busybox base image failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Root { dir }
    }

    /// The root directory.
    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// A fresh, empty root (a second machine, say, that has pulled nothing yet).
    pub fn empty() -> Root {
        Root { dir: private_dir() }
    }

    /// Runs kiln with `KILN_ROOT` set to this root, extra environment variables and optional stdin.
    pub fn kiln_with(
        &self,
        bin: &str,
        args: &[&str],
        env: &[(&str, &str)],
        stdin: Option<&[u8]>,
    ) -> Run {
        let mut cmd = self.command(bin, args);
        cmd.envs(env.iter().copied());
        run_command(cmd, stdin)
    }

    /// A kiln command on this root, not started: for tests that run kiln in the background.
    pub fn command(&self, bin: &str, args: &[&str]) -> Command {
        let mut cmd = Command::new(bin);
        cmd.args(args)
            .env("KILN_ROOT", self.dir.path())
            .env("PATH", path_with_sbin())
            .stdin(Stdio::null());
        cmd
    }

    /// Runs kiln with `KILN_ROOT` set to this root.
    pub fn kiln(&self, bin: &str, args: &[&str]) -> Run {
        self.kiln_with(bin, args, &[], None)
    }
}

/// A temporary directory for a kiln root, 0700 as kiln keeps its roots (a wider one is tightened, and kiln says
/// so on stderr, which tests of exact output would then see).
pub fn private_dir() -> tempfile::TempDir {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().expect("create a kiln root");
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o700)).expect("chmod");
    dir
}

/// $PATH with the system directories root's tools live in (runc, ip, iptables), for the programs tests start.
pub fn path_with_sbin() -> String {
    format!(
        "{}:/usr/sbin:/sbin",
        std::env::var("PATH").unwrap_or_default()
    )
}

/// The repository's root (the workspace).
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ has a parent")
        .to_path_buf()
}

/// A web server on the host's loopback that answers every request with `secret`.
pub fn loopback_service() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    std::thread::spawn(move || {
        for mut conn in listener.incoming().flatten() {
            let mut buf = [0u8; 1024];
            let _ = std::io::Read::read(&mut conn, &mut buf);
            let _ = std::io::Write::write_all(
                &mut conn,
                b"HTTP/1.0 200 OK\r\nContent-Length: 6\r\n\r\nsecret",
            );
        }
    });
    port
}
