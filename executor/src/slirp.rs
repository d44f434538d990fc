//! A rootless step's network with outbound access: a network namespace of kiln's own (made by a thread, as
//! network namespaces belong to threads) served by slirp4netns, a user-space TCP/IP stack that needs no
//! privilege. Its `--disable-host-loopback` keeps the host's loopback services out of reach, as the root
//! network does; DNS goes through slirp4netns's resolver at 10.0.2.3.

use std::io::Read;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};

use crate::network::NetworkError;

/// The resolver slirp4netns answers on inside the namespace.
pub const DNS: &str = "10.0.2.3";

/// A network namespace with slirp4netns attached; both go when this is dropped.
#[derive(Debug)]
pub struct SlirpNetwork {
    ns: OwnedFd,
    child: Child,
}

fn fail(what: &str, detail: impl std::fmt::Display) -> NetworkError {
    NetworkError::Slirp(format!("{what}: {detail}"))
}

impl SlirpNetwork {
    /// Makes the namespace, brings its loopback up, and starts slirp4netns on it; returns once it is ready.
    pub fn create() -> Result<SlirpNetwork, NetworkError> {
        let ns = std::thread::spawn(|| -> Result<OwnedFd, String> {
            // SAFETY: unshare on this thread only, which ends right after.
            if unsafe { libc::unshare(libc::CLONE_NEWNET) } != 0 {
                return Err(format!("unshare: {}", std::io::Error::last_os_error()));
            }
            crate::network::loopback_up()
                .map_err(|e| format!("loopback: {}", std::io::Error::from_raw_os_error(e)))?;
            let f = std::fs::File::open("/proc/thread-self/ns/net").map_err(|e| e.to_string())?;
            Ok(OwnedFd::from(f))
        })
        .join()
        .map_err(|_| fail("network namespace", "the thread making it panicked"))?
        .map_err(|e| fail("network namespace", e))?;
        let mut fds = [0; 2];
        // SAFETY: pipe2 fills both descriptors; they are owned from here on.
        let (ready_r, ready_w) = unsafe {
            if libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) != 0 {
                return Err(fail("pipe", std::io::Error::last_os_error()));
            }
            (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1]))
        };
        let path = format!("/proc/{}/fd/{}", std::process::id(), ns.as_raw_fd());
        let mut command = Command::new("slirp4netns");
        command
            .args([
                "--configure",
                "--mtu=65520",
                "--disable-host-loopback",
                "--ready-fd=3",
                "--netns-type=path",
                &path,
                "tap0",
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        let w = ready_w.as_raw_fd();
        // SAFETY: only dup2/fcntl on descriptors, between fork and exec.
        unsafe {
            command.pre_exec(move || {
                if w == 3 {
                    libc::fcntl(3, libc::F_SETFD, 0);
                } else {
                    libc::dup2(w, 3);
                }
                Ok(())
            });
        }
        let mut child = command.spawn().map_err(|e| fail("cannot start it", e))?;
        drop(command);
        drop(ready_w);
        let mut byte = [0u8; 1];
        let mut ready = std::fs::File::from(ready_r);
        if !matches!(ready.read(&mut byte), Ok(1)) {
            let _ = child.kill();
            let mut err = String::new();
            if let Some(mut e) = child.stderr.take() {
                let _ = e.read_to_string(&mut err);
            }
            let _ = child.wait();
            return Err(fail("it did not come up", err.trim()));
        }
        Ok(SlirpNetwork { ns, child })
    }

    /// The namespace, as a path the sandbox can open.
    pub fn netns_path(&self) -> PathBuf {
        PathBuf::from(format!(
            "/proc/{}/fd/{}",
            std::process::id(),
            self.ns.as_raw_fd()
        ))
    }
}

impl Drop for SlirpNetwork {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
