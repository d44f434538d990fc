//! Running a build step with an external OCI runtime (runc): kiln writes the bundle's config.json (Docker's
//! default sandbox), runs `runc run`, captures the output, and always deletes the container afterwards.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::process::{is_stale, Outcome, Process, StepResources};

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
    /// The step's spec could not be formed.
    #[error(transparent)]
    Spec(#[from] crate::spec::SpecError),
}

/// An OCI runtime binary and where its state lives.
#[derive(Debug, Clone)]
pub struct Runc {
    binary: PathBuf,
    state: PathBuf,
    bundles: PathBuf,
}

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
        let stale = is_stale;
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
        // A bundle written just before a kill -9 may have no container yet: it is removed by its own name.
        if let Ok(entries) = std::fs::read_dir(&self.bundles) {
            for e in entries.flatten() {
                if stale(&e.file_name().to_string_lossy()) {
                    let _ = std::fs::remove_dir_all(e.path());
                }
            }
        }
        StepResources::sweep_stale();
    }

    /// Runs `p` to completion, or until `cancelled` turns true (the container is then killed); `on_line` sees
    /// each output line as it comes.
    pub fn run(
        &self,
        p: &Process,
        on_line: &(dyn Fn(&str) + Sync),
        cancelled: &(dyn Fn() -> bool + Sync),
    ) -> Result<Outcome, RuncError> {
        let step: StepResources = StepResources::create::<RuncError>(p)?;
        let id = step.id.clone();
        let bundle = self.bundles.join(&id);
        let io = |path: &Path| {
            let path = path.to_path_buf();
            move |source| RuncError::Io {
                path: path.clone(),
                source,
            }
        };
        // config.json holds the step's environment, secrets given as env= among it: the bundles are the owner's
        // alone (0700 directories, a 0600 file), whatever the umask and the modes around them.
        private_dir(&self.bundles).map_err(io(&self.bundles))?;
        private_dir(&bundle).map_err(io(&bundle))?;
        private_dir(&self.state).map_err(io(&self.state))?;
        let cfg = crate::spec::config(
            p,
            step.cgroup.as_ref().map(|c| c.runtime_path()).as_deref(),
            step.netns().as_deref(),
        )?;
        let cfg_path = bundle.join("config.json");
        let text = serde_json::to_string(&cfg).map_err(crate::spec::SpecError::from)?;
        {
            use std::io::Write;
            use std::os::unix::fs::OpenOptionsExt;
            std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&cfg_path)
                .and_then(|mut f| f.write_all(text.as_bytes()))
                .map_err(io(&cfg_path))?;
        }
        let mut result = self.run_bundle(&id, &bundle, on_line, cancelled);
        // Always remove the container and bundle, whatever happened.
        let _ = Command::new(&self.binary)
            .arg("--root")
            .arg(&self.state)
            .args(["delete", "--force", &id])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        let _ = std::fs::remove_dir_all(&bundle);
        if let (Ok(o), Some(cg)) = (&mut result, &step.cgroup) {
            o.oom_killed = o.exit_code != 0 && cg.oom_killed(o.exit_code);
        }
        drop(step);
        result
    }

    fn run_bundle(
        &self,
        id: &str,
        bundle: &Path,
        on_line: &(dyn Fn(&str) + Sync),
        cancelled: &(dyn Fn() -> bool + Sync),
    ) -> Result<Outcome, RuncError> {
        let spawn_error = |source| RuncError::Spawn {
            binary: self.binary.clone(),
            source,
        };
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
            .map_err(spawn_error)?;
        // Killing `runc run` leaves the container running: a cancelled step's container is killed by name.
        let (output, exit) =
            crate::process::supervise(&mut child, on_line, cancelled, &|| self.kill(id));
        Ok(Outcome {
            exit_code: exit.map_err(spawn_error)?,
            output,
            oom_killed: false,
        })
    }

    fn kill(&self, id: &str) {
        let _ = Command::new(&self.binary)
            .arg("--root")
            .arg(&self.state)
            .args(["kill", "--all", id, "KILL"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

/// Makes `dir` (and its parents) and leaves it 0700: a directory that existed with a wider mode is tightened.
fn private_dir(dir: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)?;
    let md = std::fs::metadata(dir)?;
    if md.permissions().mode() & 0o077 != 0 {
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))?;
    }
    Ok(())
}
