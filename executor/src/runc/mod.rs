//! Running a build step with an external OCI runtime (runc): kiln writes the bundle's config.json (Docker's
//! default sandbox), runs `runc run`, captures the output, and always deletes the container afterwards.

mod spec;

use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};

pub use spec::{config, DEFAULT_CAPABILITIES, MASKED_PATHS, READONLY_PATHS};

/// Why a step could not be run (a non-zero exit is not an error: see [`Outcome`]).
#[derive(Debug, thiserror::Error)]
pub enum RuncError {
    /// I/O on a bundle path.
    #[error("{path}: {source}")]
    Io {
        /// The path.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// The runtime binary could not be started.
    #[error("cannot run the OCI runtime {binary}: {source}")]
    Spawn {
        /// The runtime.
        binary: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// The step's cgroup could not be made.
    #[error(transparent)]
    Cgroup(#[from] crate::cgroup::CgroupError),
    /// The step's network could not be made.
    #[error(transparent)]
    Network(#[from] crate::network::NetworkError),
}

/// The hostname of every step, BuildKit's.
pub const SANDBOX_HOSTNAME: &str = "buildkitsandbox";

/// Network of a step.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Network {
    /// Its own network namespace with loopback only (`--network=none`).
    Isolated,
    /// Its own network namespace with outbound access through NAT (`--network=default`): see
    /// [`crate::network`].
    Outbound,
    /// The host's network.
    Host,
}

/// An extra mount.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mount {
    /// A bind mount of a host path.
    Bind {
        /// Host path.
        source: PathBuf,
        /// Where inside.
        target: String,
        /// Read-only.
        readonly: bool,
    },
    /// A tmpfs.
    Tmpfs {
        /// Where inside.
        target: String,
        /// Size limit in bytes.
        size: Option<u64>,
    },
}

/// One process to run.
#[derive(Debug, Clone)]
pub struct Process {
    /// argv.
    pub args: Vec<String>,
    /// `KEY=value`.
    pub env: Vec<String>,
    /// Working directory inside the rootfs.
    pub cwd: String,
    /// User id.
    pub uid: u32,
    /// Group id.
    pub gid: u32,
    /// Supplementary groups.
    pub additional_gids: Vec<u32>,
    /// Hostname.
    pub hostname: String,
    /// The prepared root filesystem (absolute).
    pub rootfs: PathBuf,
    /// Extra mounts.
    pub mounts: Vec<Mount>,
    /// Network.
    pub network: Network,
    /// cgroup limits.
    pub limits: crate::cgroup::Limits,
}

/// How the process ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    /// Exit code (128 + signal when killed).
    pub exit_code: i32,
    /// Everything it wrote to stdout and stderr, interleaved by line.
    pub output: Vec<String>,
    /// The kernel's OOM killer killed a process of the step (its memory limit was reached).
    pub oom_killed: bool,
}

/// An OCI runtime binary and where its state lives.
#[derive(Debug, Clone)]
pub struct Runc {
    binary: PathBuf,
    state: PathBuf,
    bundles: PathBuf,
}

static SEQ: AtomicU64 = AtomicU64::new(0);

impl Runc {
    /// A runtime `binary` (e.g. `runc`) keeping its state and bundles under `work`.
    pub fn new(binary: impl Into<PathBuf>, work: &Path) -> Runc {
        Runc {
            binary: binary.into(),
            state: work.join("runc-state"),
            bundles: work.join("bundles"),
        }
    }

    /// Cleans up after kiln processes that died without cleaning up (kill -9, a crash): their containers are
    /// deleted (which kills what still runs in them) and their cgroups removed. A step's id names its kiln
    /// process (`kiln-<pid>-<n>`), so a step whose process is gone is known to be stale.
    pub fn sweep_stale(&self) {
        let stale = |name: &str| -> bool {
            let Some(pid) = name
                .strip_prefix("kiln-")
                .and_then(|r| r.split('-').next())
                .and_then(|p| p.parse::<u32>().ok())
            else {
                return false;
            };
            pid != std::process::id() && !Path::new("/proc").join(pid.to_string()).exists()
        };
        if let Ok(entries) = std::fs::read_dir(&self.state) {
            for e in entries.flatten() {
                let name = e.file_name().to_string_lossy().into_owned();
                if stale(&name) {
                    let _ = Command::new(&self.binary)
                        .arg("--root")
                        .arg(&self.state)
                        .args(["delete", "--force", &name])
                        .stdout(Stdio::null())
                        .stderr(Stdio::null())
                        .status();
                    let _ = std::fs::remove_dir_all(self.bundles.join(&name));
                }
            }
        }
        crate::cgroup::sweep(Path::new("/sys/fs/cgroup"), &stale);
        crate::network::StepNetwork::sweep(Path::new(crate::network::CLAIMS), &stale);
    }

    /// Runs `p` to completion; `on_line` sees each output line as it comes.
    pub fn run(&self, p: &Process, on_line: &(dyn Fn(&str) + Sync)) -> Result<Outcome, RuncError> {
        let id = format!(
            "kiln-{}-{}",
            std::process::id(),
            SEQ.fetch_add(1, Ordering::Relaxed)
        );
        let bundle = self.bundles.join(&id);
        let io = |path: &Path| {
            let path = path.to_path_buf();
            move |source| RuncError::Io {
                path: path.clone(),
                source,
            }
        };
        std::fs::create_dir_all(&bundle).map_err(io(&bundle))?;
        std::fs::create_dir_all(&self.state).map_err(io(&self.state))?;
        let cgroup = crate::cgroup::StepCgroup::create(
            &crate::cgroup::detect(Path::new("/sys/fs/cgroup")),
            &id,
            &p.limits,
        )?;
        let network = match p.network {
            Network::Outbound => Some(crate::network::StepNetwork::create(
                &id,
                Path::new(crate::network::CLAIMS),
            )?),
            Network::Isolated | Network::Host => None,
        };
        let cfg = config(
            p,
            cgroup.as_ref().map(|c| c.runtime_path()).as_deref(),
            network.as_ref().map(|n| n.netns_path()).as_deref(),
        );
        let cfg_path = bundle.join("config.json");
        std::fs::write(&cfg_path, cfg.to_string()).map_err(io(&cfg_path))?;
        let mut result = self.run_bundle(&id, &bundle, on_line);
        // Always remove the container and bundle, whatever happened.
        let _ = Command::new(&self.binary)
            .arg("--root")
            .arg(&self.state)
            .args(["delete", "--force", &id])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        let _ = std::fs::remove_dir_all(&bundle);
        if let (Ok(o), Some(cg)) = (&mut result, &cgroup) {
            o.oom_killed = o.exit_code != 0 && cg.oom_killed(o.exit_code);
        }
        drop(cgroup);
        drop(network);
        result
    }

    fn run_bundle(
        &self,
        id: &str,
        bundle: &Path,
        on_line: &(dyn Fn(&str) + Sync),
    ) -> Result<Outcome, RuncError> {
        let mut child = Command::new(&self.binary)
            .arg("--root")
            .arg(&self.state)
            .args(["run", "--bundle"])
            .arg(bundle)
            .arg(id)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|source| RuncError::Spawn {
                binary: self.binary.clone(),
                source,
            })?;
        let stdout = child.stdout.take();
        let stderr = child.stderr.take();
        let lines = std::sync::Mutex::new(Vec::new());
        std::thread::scope(|s| {
            let pump = |r: Box<dyn Read + Send>| {
                let lines = &lines;
                move || {
                    for line in BufReader::new(r).lines().map_while(Result::ok) {
                        on_line(&line);
                        if let Ok(mut l) = lines.lock() {
                            l.push(line);
                        }
                    }
                }
            };
            if let Some(o) = stdout {
                s.spawn(pump(Box::new(o)));
            }
            if let Some(e) = stderr {
                s.spawn(pump(Box::new(e)));
            }
        });
        let status = child.wait().map_err(|source| RuncError::Spawn {
            binary: self.binary.clone(),
            source,
        })?;
        use std::os::unix::process::ExitStatusExt;
        let exit_code = status
            .code()
            .unwrap_or_else(|| 128 + status.signal().unwrap_or(0));
        Ok(Outcome {
            exit_code,
            output: lines.into_inner().unwrap_or_default(),
            oom_killed: false,
        })
    }
}

#[cfg(test)]
mod tests;
