//! The executor seam filled with a real runtime (the built-in one, or an OCI runtime binary): a step's request
//! turned into the runtime's process description, with USER resolved in the step's rootfs (supplementary groups
//! included) and secrets bound from their sources.

use std::collections::BTreeMap;
use std::path::PathBuf;

use executor::process::{Mount, Network, Process};
use executor::runtime::Runtime;

use super::exec::{ProcessError, ProcessOutcome, ProcessRequest, ProcessRunner, ResolvedMountKind};
use crate::fileop::{resolve_run_user, run_user_home};
use crate::llb::NetworkMode;
use crate::scheduler::CancelToken;

/// Where a `--secret` comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SecretSource {
    /// A file on the client.
    File(PathBuf),
    /// The value of an environment variable of the client.
    Env(String),
}

/// Receives each output line of a step: `(the step's vertex, line)`.
pub type LineSink<'a> = Box<dyn Fn(crate::llb::VertexId, &str) + Sync + 'a>;

/// Runs steps with a runtime.
pub struct SandboxRunner<'a> {
    runtime: Runtime,
    secrets: BTreeMap<String, SecretSource>,
    scratch: PathBuf,
    on_line: LineSink<'a>,
    limits: executor::cgroup::Limits,
    ssh: BTreeMap<String, PathBuf>,
    cdi: executor::cdi::Registry,
}

impl<'a> SandboxRunner<'a> {
    /// A runner using the runtime named `runtime` (`builtin`, or an OCI runtime binary), keeping state under
    /// `work`; `on_line(step, line)` sees each output line.
    pub fn new(
        runtime: &str,
        work: &std::path::Path,
        secrets: BTreeMap<String, SecretSource>,
        on_line: LineSink<'a>,
    ) -> SandboxRunner<'a> {
        SandboxRunner {
            runtime: Runtime::named(runtime, work),
            secrets,
            scratch: work.join("secrets"),
            on_line,
            limits: Default::default(),
            ssh: BTreeMap::new(),
            cdi: Default::default(),
        }
    }

    /// SSH agent sockets by id, bound into the steps that mount them (`kiln build --ssh`).
    pub fn with_ssh(mut self, agents: BTreeMap<String, PathBuf>) -> Self {
        self.ssh = agents;
        self
    }

    /// The CDI devices steps may ask for (`RUN --device`), read from the build's spec directories.
    pub fn with_cdi(mut self, registry: executor::cdi::Registry) -> Self {
        self.cdi = registry;
        self
    }

    /// Removes what kiln processes killed mid-step left behind (containers, processes, cgroups).
    pub fn sweep_stale(&self) {
        self.runtime.sweep_stale();
    }

    /// Every RUN step gets these cgroup limits (`kiln build --memory`, `--cpus`, `--pids-limit`).
    pub fn with_limits(mut self, limits: executor::cgroup::Limits) -> Self {
        self.limits = limits;
        self
    }
}

impl Drop for SandboxRunner<'_> {
    fn drop(&mut self) {
        self.runtime.finish();
    }
}

impl SandboxRunner<'_> {
    /// The edits of the CDI devices `op` asks for (an optional one that is missing was warned of when the build
    /// started).
    fn device_edits(&self, op: &crate::llb::ExecOp) -> Result<executor::cdi::Edits, ProcessError> {
        let mut names = Vec::new();
        for d in &op.cdi_devices {
            let found = self
                .cdi
                .find(&d.name, d.optional)
                .map_err(|e| ProcessError::Other(e.to_string()))?;
            for f in found {
                if !names.contains(&f) {
                    names.push(f);
                }
            }
        }
        Ok(self.cdi.edits(&names))
    }
}

impl ProcessRunner for SandboxRunner<'_> {
    fn extra_targets(&self, op: &crate::llb::ExecOp) -> Vec<String> {
        let mut out = Vec::new();
        for d in &op.cdi_devices {
            for name in self.cdi.find(&d.name, true).unwrap_or_default() {
                let edits = self.cdi.edits(&[name]);
                out.extend(edits.mounts.iter().map(|m| m.container_path.clone()));
                let outside_dev = edits.device_nodes.iter().map(|n| n.path.clone());
                out.extend(outside_dev.filter(|p| !p.starts_with("/dev/")));
            }
        }
        out
    }

    fn run(
        &self,
        req: &ProcessRequest<'_>,
        cancel: &CancelToken,
    ) -> Result<ProcessOutcome, ProcessError> {
        // No USER is uid 0, with root's groups from the rootfs (BuildKit: `groups=0(root),10(wheel)` on busybox).
        let (uid, gid, additional_gids) = if req.op.user.is_empty() {
            resolve_run_user(req.rootfs, "0").unwrap_or((0, 0, vec![0]))
        } else {
            resolve_run_user(req.rootfs, &req.op.user).map_err(|source| ProcessError::User {
                user: req.op.user.clone(),
                source,
            })?
        };
        let mut env = req.op.env.clone();
        env.extend(req.op.proxy_env.iter().cloned());
        // As runc does at start-up (so both runtimes agree): HOME from the user's passwd entry unless set.
        if !env.iter().any(|e| e.starts_with("HOME=")) {
            env.push(format!("HOME={}", run_user_home(req.rootfs, uid)));
        }
        let mut mounts = Vec::new();
        let mut secret_files = Vec::new();
        let mut ssh_count = 0usize;
        for m in &req.mounts {
            match &m.kind {
                ResolvedMountKind::Bind { source, readonly } => mounts.push(Mount::Bind {
                    source: source.clone(),
                    target: m.target.clone(),
                    readonly: *readonly,
                }),
                ResolvedMountKind::Tmpfs { size } => mounts.push(Mount::Tmpfs {
                    target: m.target.clone(),
                    size: *size,
                }),
                ResolvedMountKind::Secret {
                    id,
                    env: as_env,
                    required,
                    mode,
                    uid,
                    gid,
                } => {
                    let value = match self.secrets.get(id) {
                        Some(SecretSource::File(p)) => {
                            Some(std::fs::read(p).map_err(|source| ProcessError::SecretFile {
                                id: id.clone(),
                                path: p.clone(),
                                source,
                            })?)
                        }
                        Some(SecretSource::Env(var)) => {
                            std::env::var(var).ok().map(String::into_bytes)
                        }
                        None => None,
                    };
                    let Some(value) = value else {
                        if *required {
                            return Err(ProcessError::SecretMissing { id: id.clone() });
                        }
                        continue;
                    };
                    if let Some(var) = as_env {
                        env.push(format!("{var}={}", String::from_utf8_lossy(&value)));
                    }
                    if !m.target.is_empty() {
                        std::fs::create_dir_all(&self.scratch).map_err(ProcessError::Scratch)?;
                        // Unique across the steps running at once in this process.
                        static SEQ: std::sync::atomic::AtomicU64 =
                            std::sync::atomic::AtomicU64::new(0);
                        let file = self.scratch.join(format!(
                            "{}-{}",
                            std::process::id(),
                            SEQ.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
                        ));
                        {
                            use std::io::Write;
                            use std::os::unix::fs::OpenOptionsExt;
                            // Made with the mount's mode from the start: the value is never readable more widely.
                            let mut f = std::fs::OpenOptions::new()
                                .write(true)
                                .create_new(true)
                                .mode(*mode)
                                .open(&file)
                                .map_err(|source| ProcessError::SecretFile {
                                    id: id.clone(),
                                    path: file.clone(),
                                    source,
                                })?;
                            f.write_all(&value)
                                .map_err(|source| ProcessError::SecretFile {
                                    id: id.clone(),
                                    path: file.clone(),
                                    source,
                                })?;
                        }
                        use std::os::unix::fs::PermissionsExt;
                        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(*mode))
                            .map_err(|source| ProcessError::SecretAttrs {
                                id: id.clone(),
                                source,
                            })?;
                        std::os::unix::fs::chown(&file, Some(*uid), Some(*gid)).map_err(
                            |source| ProcessError::SecretAttrs {
                                id: id.clone(),
                                source,
                            },
                        )?;
                        mounts.push(Mount::Bind {
                            source: file.clone(),
                            target: m.target.clone(),
                            readonly: true,
                        });
                        secret_files.push(file);
                    }
                }
                ResolvedMountKind::Ssh { id, required } => {
                    let Some(sock) = self.ssh.get(id) else {
                        if *required {
                            return Err(ProcessError::SshMissing { id: id.clone() });
                        }
                        continue;
                    };
                    let target = if m.target.is_empty() {
                        format!("/run/buildkit/ssh_agent.{ssh_count}")
                    } else {
                        m.target.clone()
                    };
                    if ssh_count == 0 {
                        env.push(format!("SSH_AUTH_SOCK={target}"));
                    }
                    ssh_count += 1;
                    mounts.push(Mount::Bind {
                        source: sock.clone(),
                        target,
                        readonly: false,
                    });
                }
            }
        }
        let network = match req.op.network {
            NetworkMode::Host => Network::Host,
            NetworkMode::None => Network::Isolated,
            NetworkMode::Default => Network::Outbound,
        };
        let mut process = Process {
            args: req.op.args.clone(),
            env,
            cwd: req.op.cwd.clone(),
            uid,
            gid,
            additional_gids,
            hostname: executor::process::SANDBOX_HOSTNAME.to_string(),
            rootfs: req.rootfs.to_path_buf(),
            mounts,
            network,
            limits: self.limits,
            // `RUN --security=insecure` (allowed by `--allow security.insecure`): BuildKit's privileged step.
            privileged: req.op.security == crate::llb::SecurityMode::Insecure,
            // `--ulimit`: as BuildKit's generateRlimitOpts, `RLIMIT_<NAME>` with -1 as unlimited.
            rlimits: req
                .op
                .ulimits
                .iter()
                .map(|u| executor::process::Rlimit {
                    resource: format!("RLIMIT_{}", u.name.to_ascii_uppercase()),
                    soft: u.soft as u64,
                    hard: u.hard as u64,
                })
                .collect(),
            devices: Vec::new(),
        };
        let step = req.vertex;
        if !req.op.cdi_devices.is_empty() {
            let ignored = self
                .device_edits(req.op)?
                .apply(&mut process)
                .map_err(|e| ProcessError::Other(e.to_string()))?;
            for line in ignored {
                (self.on_line)(step, &line);
            }
        }
        let result = self
            .runtime
            .run(&process, &|line| (self.on_line)(step, line), &|| {
                cancel.is_cancelled()
            });
        for f in secret_files {
            let _ = std::fs::remove_file(f);
        }
        let outcome = result?;
        let tail_from = outcome.output.len().saturating_sub(20);
        Ok(ProcessOutcome {
            exit_code: outcome.exit_code,
            output_tail: outcome.output[tail_from..].to_vec(),
            oom_killed: outcome.oom_killed,
        })
    }
}
