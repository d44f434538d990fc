//! Exec ops: the rootfs (an overlay of the input snapshot with a fresh upper dir) and the other mounts made
//! ready, then the process handed to the [`ProcessRunner`] (the executor's sandbox).

use std::path::{Path, PathBuf};

use super::{Fs, StepOutput, Worker, WorkerError};
use crate::fileop::FileOpError;
use crate::llb::{ExecOp, MountKind, Vertex};
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
    fn run(&self, req: &ProcessRequest<'_>, cancel: &CancelToken)
        -> Result<ProcessOutcome, String>;
}

pub(super) fn run(
    w: &Worker<'_>,
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
    let mut mounts = Vec::new();
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
                ResolvedMountKind::Bind {
                    source,
                    readonly: m.readonly,
                }
            }
            MountKind::Cache {
                id, uid, gid, mode, ..
            } => {
                let dir = w
                    .cache_mounts
                    .join(oci::Digest::sha256_of(id.as_bytes()).hex());
                if !dir.exists() {
                    std::fs::create_dir_all(&dir).map_err(|source| WorkerError::Io {
                        path: dir.clone(),
                        source,
                    })?;
                    let _ = std::os::unix::fs::chown(&dir, Some(*uid), Some(*gid));
                    use std::os::unix::fs::PermissionsExt;
                    let _ = std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(*mode));
                }
                // Every sharing mode uses the one directory for now; `private` and `locked` are not yet isolated.
                ResolvedMountKind::Bind {
                    source: dir,
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
        for m in &mounts {
            let mut cur = rootfs.path().to_path_buf();
            for part in m.target.split('/').filter(|p| !p.is_empty()) {
                cur.push(part);
                if std::fs::symlink_metadata(&cur).is_err() {
                    stubs.push(cur.clone());
                    break;
                }
            }
        }
        let req = ProcessRequest {
            op: e,
            rootfs: rootfs.path(),
            mounts,
            description: &v.meta.description,
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
        outcome
    };
    drop(guards);
    let command = e.args.join(" ");
    match outcome {
        Ok(o) if o.exit_code == 0 => Ok(w.snapshots.commit(active)?),
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
            reason,
            output_tail: Vec::new(),
        }),
    }
}
