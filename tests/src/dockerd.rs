//! A dockerd of the test's own (Debian's docker.io): its data root, exec root and API socket in a temporary
//! directory, no bridge and no iptables (RUN steps of its builds use the host's network), stopped on drop with
//! whatever it left mounted. The reference BuildKit of the differential tests and the engine `--load` loads into.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Debian's docker CLI (20.10): its `docker build` speaks to the daemon's BuildKit without the buildx plugin.
pub const DOCKER: &str = "/usr/bin/docker";

/// A dockerd of the test's own: data root, exec root and socket in a temporary directory.
pub struct Dockerd {
    dir: tempfile::TempDir,
    child: Child,
}

impl Dockerd {
    /// The API socket (for `DOCKER_HOST=unix://...`).
    pub fn socket(&self) -> PathBuf {
        self.dir.path().join("docker.sock")
    }

    /// Starts a dockerd, waiting until it answers.
    pub fn start() -> Dockerd {
        let dir = tempfile::tempdir().expect("tempdir");
        let d = dir.path();
        let child = Command::new("dockerd")
            .args(["--bridge=none", "--iptables=false", "--ip-masq=false"])
            .arg("--data-root")
            .arg(d.join("data"))
            .arg("--exec-root")
            .arg(d.join("exec"))
            .arg("--pidfile")
            .arg(d.join("dockerd.pid"))
            .arg("-H")
            .arg(format!("unix://{}", d.join("docker.sock").display()))
            .env("PATH", crate::path_with_sbin())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(d.join("dockerd.log")).expect("log"))
            .spawn()
            .expect("start dockerd (apt-get install docker.io)");
        let dockerd = Dockerd { dir, child };
        let start = Instant::now();
        loop {
            if dockerd
                .command(&["version"])
                .output()
                .is_ok_and(|o| o.status.success())
            {
                return dockerd;
            }
            assert!(
                start.elapsed() < Duration::from_secs(60),
                "dockerd did not answer: {}",
                std::fs::read_to_string(dockerd.dir.path().join("dockerd.log")).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// A docker CLI command speaking to this dockerd.
    pub fn command(&self, args: &[&str]) -> Command {
        let mut c = Command::new(DOCKER);
        c.args(args)
            .env("DOCKER_HOST", format!("unix://{}", self.socket().display()))
            .env("DOCKER_BUILDKIT", "1")
            .env("DOCKER_CONFIG", self.dir.path().join("client"))
            .env("PATH", crate::path_with_sbin());
        c
    }

    /// Runs docker; its stderr when it fails.
    pub fn run(&self, args: &[&str]) -> Result<String, String> {
        let out = self.command(args).output().expect("run docker");
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).into_owned())
        } else {
            Err(String::from_utf8_lossy(&out.stderr).into_owned())
        }
    }
}

impl Drop for Dockerd {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status();
        let start = Instant::now();
        while self.child.try_wait().ok().flatten().is_none() {
            if start.elapsed() > Duration::from_secs(20) {
                let _ = self.child.kill();
                let _ = self.child.wait();
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        // Whatever dockerd left mounted under its data root goes before the directory does.
        let _ = Command::new("sh")
            .arg("-c")
            .arg(format!(
                "grep -o ' {0}[^ ]*' /proc/self/mountinfo | sort -r | xargs -r -n1 umount -l",
                self.dir.path().display()
            ))
            .status();
    }
}
