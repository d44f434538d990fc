//! kiln's built-in runtime: runs a step's OCI spec itself, with no runtime binary to install. New mount, PID,
//! UTS, IPC and network namespaces; the spec's mounts and a minimal /dev; pivot_root; runc's masked and read-only
//! paths; the hostname; rlimits; Docker's capability set; no_new_privs; the seccomp filter; the step's own
//! cgroup. It does in one fork what `runc run` does in several processes and a state directory, which is where
//! its lower cost per RUN comes from.

mod child;
mod plan;
mod seccomp;

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Command, Stdio};

use crate::process::{Outcome, Process, StepResources};
use child::Stage;

pub use seccomp::SeccompError;

/// Why a step could not be run by the built-in runtime (a non-zero exit is not an error: see [`Outcome`]).
#[derive(Debug, thiserror::Error)]
pub enum SandboxError {
    /// The spec asks for something the built-in runtime cannot do.
    #[error("{0}")]
    Spec(String),
    /// The seccomp filter could not be compiled.
    #[error(transparent)]
    Seccomp(#[from] SeccompError),
    /// The spec itself could not be formed.
    #[error(transparent)]
    SpecForm(#[from] crate::spec::SpecError),
    /// I/O on a path the step needs.
    #[error("{path}: {source}")]
    Io {
        /// The path.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// The sandbox's processes could not be started or waited for.
    #[error("cannot start the sandbox: {0}")]
    Spawn(std::io::Error),
    /// A step of building the sandbox failed inside it.
    #[error("setting up the sandbox failed at {stage}: {source}")]
    Setup {
        /// Which step, in words.
        stage: String,
        /// The cause.
        source: std::io::Error,
    },
    /// The command could not be executed.
    #[error("cannot run {program}: {}", exec_reason(.source))]
    Exec {
        /// argv\[0\].
        program: String,
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

fn exec_reason(e: &std::io::Error) -> String {
    match e.raw_os_error() {
        Some(libc::ENOENT) => {
            "executable file not found in $PATH (or the file does not exist)".into()
        }
        _ => e.to_string(),
    }
}

/// The built-in runtime.
#[derive(Debug, Clone, Default)]
pub struct Sandbox {
    _private: (),
}

impl Sandbox {
    /// The built-in runtime; it keeps no state on disk.
    pub fn new() -> Sandbox {
        Sandbox::default()
    }

    /// Cleans up after kiln processes that died mid-step: their cgroups (and what still runs in them) and
    /// networks. Their mounts lived in namespaces that died with them.
    pub fn sweep_stale(&self) {
        StepResources::sweep_stale();
    }

    /// Runs `p` to completion, or until `cancelled` turns true (every process of the step is then killed);
    /// `on_line` sees each output line as it comes.
    pub fn run(
        &self,
        p: &Process,
        on_line: &(dyn Fn(&str) + Sync),
        cancelled: &(dyn Fn() -> bool + Sync),
    ) -> Result<Outcome, SandboxError> {
        let step: StepResources = StepResources::create::<SandboxError>(p)?;
        let cgroup = &step.cgroup;
        let spec = crate::spec::config(p, None, step.netns().as_deref())?;
        let (report_read, report_write) = pipe()?;
        let procs = cgroup.as_ref().map(|c| c.procs_files()).unwrap_or_default();
        let plan = plan::Plan::new(&spec, &procs, report_write)?;
        let mut command = Command::new("/");
        command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        // SAFETY: `first` makes only raw system calls over data prepared beforehand, and never returns (the
        // program named above is never executed: the step's own command is, two processes down).
        unsafe {
            command.pre_exec(move || child::first(&plan));
        }
        let mut child = command.spawn().map_err(SandboxError::Spawn)?;
        // The plan (and with it kiln's end of the report pipe) goes with the command.
        drop(command);
        let kill_cgroup = || {
            if let Some(cg) = cgroup {
                cg.kill_all();
            }
        };
        let (output, exit) =
            crate::process::supervise(&mut child, on_line, cancelled, &kill_cgroup);
        let exit_code = exit.map_err(SandboxError::Spawn)?;
        if exit_code == child::SETUP_FAILED {
            if let Some((stage, index, err)) = read_report(&report_read) {
                return Err(describe(stage, index, err, p, &spec));
            }
        }
        let oom_killed = exit_code != 0 && cgroup.as_ref().is_some_and(|c| c.oom_killed(exit_code));
        drop(step);
        Ok(Outcome {
            exit_code,
            output,
            oom_killed,
        })
    }
}

fn pipe() -> Result<(OwnedFd, OwnedFd), SandboxError> {
    let mut fds = [0; 2];
    // SAFETY: pipe2 fills both descriptors on success; they are owned from here on.
    unsafe {
        if libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC | libc::O_NONBLOCK) != 0 {
            return Err(SandboxError::Spawn(std::io::Error::last_os_error()));
        }
        Ok((OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])))
    }
}

/// The report of a failed set-up, if the child wrote one. Non-blocking: by now the child has exited, and
/// another step's child may briefly hold a copy of the write end.
fn read_report(fd: &OwnedFd) -> Option<(Stage, usize, i32)> {
    let mut msg = [0u8; 12];
    // SAFETY: reads into a local buffer of the given length.
    let n = unsafe { libc::read(fd.as_raw_fd(), msg.as_mut_ptr().cast(), msg.len()) };
    if n != 12 {
        return None;
    }
    let word = |i: usize| u32::from_le_bytes([msg[i], msg[i + 1], msg[i + 2], msg[i + 3]]);
    Some((Stage::from_u32(word(0))?, word(4) as usize, word(8) as i32))
}

fn describe(
    stage: Stage,
    index: usize,
    err: i32,
    p: &Process,
    spec: &oci_spec::runtime::Spec,
) -> SandboxError {
    let source = std::io::Error::from_raw_os_error(err);
    let mount = |i: usize| {
        spec.mounts()
            .iter()
            .flatten()
            .nth(i)
            .map(|m| {
                format!(
                    "{} ({})",
                    m.destination().display(),
                    m.typ().as_deref().unwrap_or("bind")
                )
            })
            .unwrap_or_else(|| "/dev".into())
    };
    let stage = match stage {
        Stage::Exec => {
            return SandboxError::Exec {
                program: p.args.first().cloned().unwrap_or_default(),
                source,
            }
        }
        Stage::MountTarget => format!("making the mount point {}", mount(index)),
        Stage::Mount => format!("mounting {}", mount(index)),
        Stage::Device => "making /dev".into(),
        Stage::Cwd => format!("entering the working directory {}", p.cwd),
        Stage::Ids => format!("switching to uid {} gid {}", p.uid, p.gid),
        Stage::Groups => format!("setting the groups {:?}", p.additional_gids),
        other => format!("{other:?}").to_lowercase(),
    };
    SandboxError::Setup { stage, source }
}
