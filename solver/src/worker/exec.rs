//! Exec ops: the rootfs (an overlay of the input snapshot with a fresh upper dir) and the other mounts made
//! ready, then the process handed to the [`ProcessRunner`] (the executor's sandbox).

use std::path::{Path, PathBuf};

use super::{Fs, StepOutput, Worker, WorkerError};
use crate::fileop::FileOpError;
use crate::llb::{ExecOp, MountKind, Vertex, VertexId};
use crate::scheduler::CancelToken;

/// A mount ready for the sandbox: host paths resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResolvedMount {
    /// Mount point inside the rootfs.
    pub target: String,
    /// What to mount.
    pub kind: ResolvedMountKind,
}

/// The kinds of resolved mounts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ResolvedMountKind {
    /// Bind a host directory or file.
    Bind {
        /// Host path.
        source: PathBuf,
        /// Read-only.
        readonly: bool,
    },
    /// A fresh tmpfs.
    Tmpfs {
        /// Size limit.
        size: Option<u64>,
    },
    /// A secret (the runner provides its value).
    Secret {
        /// Secret id.
        id: String,
        /// Env variable to expose it as.
        env: Option<String>,
        /// Must exist.
        required: bool,
        /// Mode, uid, gid.
        mode: u32,
        /// Owner.
        uid: u32,
        /// Group.
        gid: u32,
    },
    /// An SSH agent socket (the runner provides it).
    Ssh {
        /// Agent id.
        id: String,
        /// Must exist.
        required: bool,
    },
}

/// One process to run.
#[derive(Debug)]
pub struct ProcessRequest<'a> {
    /// argv, env, cwd, user, network, security.
    pub op: &'a ExecOp,
    /// The prepared rootfs (a writable overlay mount).
    pub rootfs: &'a Path,
    /// The other mounts.
    pub mounts: Vec<ResolvedMount>,
    /// What the step is, for messages.
    pub description: &'a str,
    /// The step's vertex, which its output lines are reported under.
    pub vertex: VertexId,
}

/// How a process ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProcessOutcome {
    /// Exit code (128+signal when killed).
    pub exit_code: i32,
    /// The last lines it printed.
    pub output_tail: Vec<String>,
    /// The kernel's OOM killer ended it (the step's memory limit was reached).
    pub oom_killed: bool,
}

/// Runs processes: the executor behind a seam the solver can test without a kernel sandbox.
pub trait ProcessRunner: Sync {
    /// Runs `req` to completion (or until `cancel`).
    fn run(
        &self,
        req: &ProcessRequest<'_>,
        cancel: &CancelToken,
    ) -> Result<ProcessOutcome, ProcessError>;

    /// Mount points the runner adds to the step beyond `req.mounts` (a CDI device's mounts), so that the stubs
    /// the runtime makes for them are removed from the step's result as the others' are.
    fn extra_targets(&self, _op: &ExecOp) -> Vec<String> {
        Vec::new()
    }
}

/// Why a step's process could not be run at all (a process that ran and exited non-zero is a [`ProcessOutcome`],
/// not an error): its user, secrets or SSH agents could not be set up, or the runtime failed.
#[derive(Debug, thiserror::Error)]
pub enum ProcessError {
    /// The step's `USER` names no user or group of the rootfs.
    #[error("USER {user}: {source}")]
    User {
        /// The user as the step names it.
        user: String,
        /// Why it could not be resolved.
        source: crate::fileop::FileOpError,
    },
    /// A secret's file could not be read or written.
    #[error("secret {id}: {}: {source}", path.display())]
    SecretFile {
        /// The secret's id.
        id: String,
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// A secret's mount file could not be given its mode or owner.
    #[error("secret {id}: {source}")]
    SecretAttrs {
        /// The secret's id.
        id: String,
        /// The cause.
        source: std::io::Error,
    },
    /// A secret the step requires was not given to the build.
    #[error(
        "secret {id}: not found (it is required; pass it with kiln build --secret id={id},src=FILE)"
    )]
    SecretMissing {
        /// The secret's id.
        id: String,
    },
    /// An SSH agent the step requires was not given to the build.
    #[error("ssh agent {id} is required but was not given (kiln build --ssh {id}=SOCKET)")]
    SshMissing {
        /// The agent's id.
        id: String,
    },
    /// The runner's scratch directory could not be made.
    #[error("{0}")]
    Scratch(std::io::Error),
    /// The runtime could not run the process.
    #[error(transparent)]
    Runtime(#[from] executor::runtime::RunError),
    /// Another runner's reason, as it put it (runners outside this crate, test fakes).
    #[error("{0}")]
    Other(String),
}

impl From<String> for ProcessError {
    fn from(reason: String) -> ProcessError {
        ProcessError::Other(reason)
    }
}

/// Removes from the upper directory `upper` the directories in `dirs` (relative, with their mode, uid and gid
/// before the step) that are there only because a mount stub was made below them: empty, not opaque, and with
/// the owner and mode they had.
fn drop_untouched_copy_ups(upper: &Path, dirs: &mut [(PathBuf, (u32, u32, u32))]) {
    use std::os::unix::fs::MetadataExt;
    // Deepest first, so a parent is looked at once its children are gone.
    dirs.sort_by_key(|(d, _)| std::cmp::Reverse(d.components().count()));
    for (rel, before) in dirs.iter() {
        let dir = upper.join(rel);
        let Ok(meta) = std::fs::symlink_metadata(&dir) else {
            continue;
        };
        let empty = std::fs::read_dir(&dir).is_ok_and(|mut d| d.next().is_none());
        let opaque = ["trusted.overlay.opaque", "user.overlay.opaque"]
            .iter()
            .any(|n| rustix::fs::lgetxattr(&dir, *n, &mut [0u8; 4]).is_ok());
        if meta.is_dir() && empty && !opaque && (meta.mode(), meta.uid(), meta.gid()) == *before {
            let _ = std::fs::remove_dir(&dir);
        }
    }
}

/// The contents of a step's `/etc/hosts` and `/etc/resolv.conf`: BuildKit's hosts file with the `--add-host`
/// entries after it (`IP<tab>name`, as its makeHostsFile writes them), and the host's resolver (without loopback
/// servers unless the step shares the host's network).
fn network_files(e: &ExecOp) -> [(&'static str, String); 2] {
    let network = e.network;
    let read = |p: &str| std::fs::read_to_string(p).ok();
    let resolv =
        if network == crate::llb::NetworkMode::Default && executor::process::in_user_namespace() {
            // Rootless: slirp4netns's own resolver forwards to the host's, loopback ones included.
            format!("nameserver {}\n", executor::slirp::DNS)
        } else {
            executor::network::resolv_conf(
                &read("/etc/resolv.conf").unwrap_or_default(),
                read("/run/systemd/resolve/resolv.conf").as_deref(),
                network == crate::llb::NetworkMode::Host,
            )
        };
    [
        ("hosts", {
            let mut hosts = executor::network::hosts(executor::process::SANDBOX_HOSTNAME);
            for h in &e.extra_hosts {
                hosts.push_str(&format!("{}\t{}\n", h.ip, h.host));
            }
            hosts
        }),
        ("resolv.conf", resolv),
    ]
}

pub(super) fn run(
    w: &Worker<'_>,
    id: VertexId,
    e: &ExecOp,
    v: &Vertex,
    inputs: &[StepOutput],
    cancel: &CancelToken,
) -> Result<String, WorkerError> {
    let root_mount = e.mounts.iter().find(|m| m.output);
    let parent = root_mount
        .and_then(|m| m.input)
        .and_then(|i| inputs.get(i))
        .and_then(|o| match &o.fs {
            Fs::Snapshot(id) => Some(id.clone()),
            _ => None,
        });
    let active = w.snapshots.prepare(parent.as_deref())?;
    let merged = w.scratch_dir("rootfs")?;
    let mut keep = Vec::new();
    let mut guards = Vec::new();
    // Cache directories held for the step (their sharing mode's turn ends when it does).
    let mut leases = Vec::new();
    let mut mounts = Vec::new();
    // /etc/hosts and /etc/resolv.conf of the step's network, bound read-only as BuildKit does (so neither ends up
    // in the step's result).
    let etc = w.scratch_dir("etc")?;
    for (name, text) in network_files(e) {
        let path = etc.path().join(name);
        std::fs::write(&path, text).map_err(|source| WorkerError::Io {
            path: path.clone(),
            source,
        })?;
        mounts.push(ResolvedMount {
            target: format!("/etc/{name}"),
            kind: ResolvedMountKind::Bind {
                source: path,
                readonly: true,
            },
        });
    }
    for m in e.mounts.iter().filter(|m| !m.output) {
        let kind = match &m.kind {
            MountKind::Bind => {
                let input = m.input.and_then(|i| inputs.get(i));
                let source = match input {
                    Some(o) => {
                        let view = w.input_view(&o.fs, &mut guards, &mut keep)?;
                        crate::fileop::scoped::resolve(&view.root, &m.selector, true)
                            .map_err(FileOpError::from)?
                    }
                    None => {
                        let d = w.scratch_dir("empty")?;
                        let p = d.path().to_path_buf();
                        keep.push(d);
                        p
                    }
                };
                if m.readonly {
                    ResolvedMountKind::Bind {
                        source,
                        readonly: true,
                    }
                } else {
                    // rw: the step writes into a throw-away layer over the source, as BuildKit discards them.
                    ResolvedMountKind::Bind {
                        source: w.scratch_copy(&source, &mut guards, &mut keep)?,
                        readonly: false,
                    }
                }
            }
            MountKind::Cache {
                id,
                sharing,
                uid,
                gid,
                mode,
                settings,
            } => {
                let base = w
                    .cache_mounts
                    .join(oci::Digest::sha256_of(id.as_bytes()).hex());
                // As BuildKit: a step ignoring the cache rebuilds the cache's base (its settings or `from=`
                // stage), and a new base is a new cache; later steps use it.
                if v.meta.ignore_cache && (*settings || m.input.is_some()) {
                    super::cachemount::start_afresh(&base)?;
                }
                // With `from=`, a fresh cache starts as a copy of `source` in that stage.
                let seed = match m.input.and_then(|i| inputs.get(i)) {
                    Some(o) => Some(w.input_view(&o.fs, &mut guards, &mut keep)?),
                    None => None,
                };
                let init = |dir: &Path| -> Result<(), WorkerError> {
                    if let Some(input) = &seed {
                        let copy = crate::llb::CopyAction {
                            src: m.selector.clone(),
                            follow_symlinks: true,
                            ..crate::llb::CopyAction::whole_tree(0)
                        };
                        crate::fileop::apply(
                            dir,
                            &[crate::llb::FileAction::Copy(copy)],
                            std::slice::from_ref(input),
                        )?;
                    }
                    let _ = std::os::unix::fs::chown(dir, Some(*uid), Some(*gid));
                    use std::os::unix::fs::PermissionsExt;
                    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(*mode)).map_err(
                        |source| WorkerError::Io {
                            path: dir.to_path_buf(),
                            source,
                        },
                    )
                };
                let lease = super::cachemount::acquire(&base, *sharing, cancel, &init)?;
                let source = lease.dir.clone();
                leases.push(lease);
                ResolvedMountKind::Bind {
                    source,
                    readonly: m.readonly,
                }
            }
            MountKind::Tmpfs { size } => ResolvedMountKind::Tmpfs { size: *size },
            MountKind::Secret {
                id,
                env,
                uid,
                gid,
                mode,
                required,
            } => ResolvedMountKind::Secret {
                id: id.clone(),
                env: env.clone(),
                required: *required,
                mode: *mode,
                uid: *uid,
                gid: *gid,
            },
            MountKind::Ssh { id, required, .. } => ResolvedMountKind::Ssh {
                id: id.clone(),
                required: *required,
            },
        };
        mounts.push(ResolvedMount {
            target: m.target.clone(),
            kind,
        });
    }
    let outcome = {
        let rootfs = w.snapshots.mount(&active, merged.path())?;
        // WORKDIR is created if missing, as BuildKit does.
        let cwd = crate::fileop::scoped::resolve(rootfs.path(), &e.cwd, true)
            .map_err(FileOpError::from)?;
        std::fs::create_dir_all(&cwd).map_err(|source| WorkerError::Io {
            path: cwd.clone(),
            source,
        })?;
        // Mount points the runtime will create for this step are not part of its result: note the first missing
        // component of each target and remove what was created once the process is done.
        let mut stubs = Vec::new();
        // The directories above each stub: creating the stub copies them up into the step's upper directory,
        // which would make them part of the step's layer (an `etc/` entry in every RUN's layer).
        let mut above: Vec<(PathBuf, (u32, u32, u32))> = Vec::new();
        let targets = mounts
            .iter()
            .map(|m| m.target.clone())
            .chain(w.runner.extra_targets(e));
        for target in targets {
            let mut cur = rootfs.path().to_path_buf();
            let mut rel = PathBuf::new();
            for part in target.split('/').filter(|p| !p.is_empty()) {
                cur.push(part);
                match std::fs::symlink_metadata(&cur) {
                    Err(_) => {
                        stubs.push(cur.clone());
                        for dir in rel.ancestors().filter(|d| !d.as_os_str().is_empty()) {
                            if let Ok(meta) = std::fs::symlink_metadata(rootfs.path().join(dir)) {
                                use std::os::unix::fs::MetadataExt;
                                above.push((
                                    dir.to_path_buf(),
                                    (meta.mode(), meta.uid(), meta.gid()),
                                ));
                            }
                        }
                        break;
                    }
                    Ok(_) => rel.push(part),
                }
            }
        }
        let req = ProcessRequest {
            op: e,
            rootfs: rootfs.path(),
            mounts,
            description: &v.meta.description,
            vertex: id,
        };
        let outcome = w.runner.run(&req, cancel);
        for stub in stubs.iter().rev() {
            let _ = match std::fs::symlink_metadata(stub) {
                Ok(m) if m.is_dir() => std::fs::remove_dir_all(stub),
                Ok(_) => std::fs::remove_file(stub),
                Err(_) => Ok(()),
            };
        }
        rootfs.unmount()?;
        drop_untouched_copy_ups(&active.diff_dir(), &mut above);
        outcome
    };
    drop(guards);
    drop(leases);
    // The emptied mount point and the /etc files go behind the steps that follow.
    w.behind.later(move || {
        drop((merged, etc));
        Ok(())
    });
    let command = e.args.join(" ");
    match outcome {
        Ok(o) if o.exit_code == 0 => Ok(w.snapshots.commit_unsynced(active)?),
        Ok(o) => Err(WorkerError::Process {
            command,
            reason: if o.oom_killed {
                format!(
                    "exit code: {}: killed by the kernel's OOM killer (the --memory limit was reached)",
                    o.exit_code
                )
            } else {
                format!("exit code: {}", o.exit_code)
            },
            output_tail: o.output_tail,
        }),
        Err(_) if cancel.is_cancelled() => Err(WorkerError::Cancelled),
        Err(reason) => Err(WorkerError::Process {
            command,
            reason: reason.to_string(),
            output_tail: Vec::new(),
        }),
    }
}
