//! What every runtime is asked to run and what it reports back: one build step's process, its mounts and
//! network, and how it ended. The built-in runtime and an external OCI runtime take the same [`Process`] (turned
//! into the same OCI spec by [`crate::spec`]), so a build behaves the same under either.

use std::io::{BufRead, BufReader, Read};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};

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
    /// `RUN --security=insecure`: every capability, no seccomp filter, no masked or read-only /proc paths, a
    /// writable /sys (BuildKit's privileged mode).
    pub privileged: bool,
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

static SEQ: AtomicU64 = AtomicU64::new(0);

/// Whether kiln runs inside a user namespace (rootless): it is root only there, so the host's cgroups, device
/// numbers and network plumbing are out of its reach and the sandbox uses what a user may (see
/// [`crate::slirp`]).
pub fn in_user_namespace() -> bool {
    static ANSWER: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *ANSWER.get_or_init(|| {
        std::fs::read_to_string("/proc/self/uid_map")
            .map(|m| {
                let first: Vec<&str> = m.split_whitespace().take(3).collect();
                first != ["0", "0", "4294967295"]
            })
            .unwrap_or(false)
    })
}

static OWNER: std::sync::OnceLock<String> = std::sync::OnceLock::new();

/// Tags every step id this process makes with `tag` (kiln derives it from its root), so that what a dead kiln
/// left on the host can be told apart by root: `kiln doctor` reports its own root's, and no other's.
pub fn set_owner_tag(tag: &str) {
    let _ = OWNER.set(tag.to_string());
}

/// A fresh step id, `kiln-<pid>-<n>[-<tag>]`: it names the step's cgroup, network namespace and runtime state,
/// and lets a later kiln process tell that the step's owner is gone ([`is_stale`]).
pub fn next_step_id() -> String {
    let (pid, n) = (std::process::id(), SEQ.fetch_add(1, Ordering::Relaxed));
    match OWNER.get() {
        Some(tag) => format!("kiln-{pid}-{n}-{tag}"),
        None => format!("kiln-{pid}-{n}"),
    }
}

/// Whether `name` is the id of a step whose kiln process no longer runs (killed with -9, crashed): what it left
/// behind may be removed.
pub fn is_stale(name: &str) -> bool {
    let Some(pid) = name
        .strip_prefix("kiln-")
        .and_then(|r| r.split('-').next())
        .and_then(|p| p.parse::<u32>().ok())
    else {
        return false;
    };
    pid != std::process::id() && !std::path::Path::new("/proc").join(pid.to_string()).exists()
}

/// What steps of dead kiln processes left on the host (cgroup directories, network namespaces), described
/// for `kiln doctor`: only those tagged `tag` when one is given (see [`set_owner_tag`]); [`sweep_stale`] removes
/// them all.
pub fn stale_leftovers(tag: Option<&str>) -> Vec<String> {
    let suffix = tag.map(|t| format!("-{t}"));
    let ours =
        |name: &str| is_stale(name) && suffix.as_ref().is_none_or(|s| name.ends_with(s.as_str()));
    let mut out: Vec<String> =
        crate::cgroup::stale_dirs(std::path::Path::new("/sys/fs/cgroup"), &ours)
            .into_iter()
            .map(|d| format!("cgroup {}", d.display()))
            .collect();
    out.extend(
        crate::network::StepNetwork::stale(std::path::Path::new(crate::network::CLAIMS), &ours)
            .into_iter()
            .map(|n| format!("network namespace {n}")),
    );
    out
}

/// Removes what steps of dead kiln processes left on the host (see [`stale_leftovers`]).
pub fn sweep_stale() {
    StepResources::sweep_stale();
}

/// What a step owns on the host besides its processes: its cgroup and its network, both removed when dropped.
pub(crate) struct StepResources {
    /// The step's id ([`next_step_id`]).
    pub id: String,
    pub cgroup: Option<crate::cgroup::StepCgroup>,
    pub network: Option<StepNet>,
}

/// A step's own network with outbound access.
pub(crate) enum StepNet {
    /// veth and NAT, made as root.
    Bridge(crate::network::StepNetwork),
    /// slirp4netns, for a rootless kiln.
    Slirp(crate::slirp::SlirpNetwork),
}

impl StepResources {
    /// Makes the cgroup (with `p.limits`) and, for [`Network::Outbound`], the network of a new step.
    pub fn create<E>(p: &Process) -> Result<StepResources, E>
    where
        E: From<crate::cgroup::CgroupError> + From<crate::network::NetworkError>,
    {
        let id = next_step_id();
        let rootless = in_user_namespace();
        // Rootless: the host's cgroups are not kiln's to write (no delegation), so steps run without one unless
        // limits were asked for, which then cannot be had.
        let layout = if rootless && p.limits == crate::cgroup::Limits::default() {
            crate::cgroup::Layout::Unavailable
        } else {
            crate::cgroup::detect(std::path::Path::new("/sys/fs/cgroup"))
        };
        let cgroup = crate::cgroup::StepCgroup::create(&layout, &id, &p.limits)?;
        let network = match p.network {
            Network::Outbound if rootless => {
                Some(StepNet::Slirp(crate::slirp::SlirpNetwork::create()?))
            }
            Network::Outbound => Some(StepNet::Bridge(crate::network::StepNetwork::acquire(
                &id,
                std::path::Path::new(crate::network::CLAIMS),
            )?)),
            Network::Isolated | Network::Host => None,
        };
        Ok(StepResources {
            id,
            cgroup,
            network,
        })
    }

    /// The network namespace to run in, if the step has its own.
    pub fn netns(&self) -> Option<PathBuf> {
        self.network.as_ref().map(|n| match n {
            StepNet::Bridge(b) => b.netns_path(),
            StepNet::Slirp(s) => s.netns_path(),
        })
    }

    /// Removes the cgroups and networks of steps whose kiln process died (see [`is_stale`]).
    pub fn sweep_stale() {
        crate::cgroup::sweep(std::path::Path::new("/sys/fs/cgroup"), &is_stale);
        crate::network::StepNetwork::sweep(std::path::Path::new(crate::network::CLAIMS), &is_stale);
    }
}

impl Drop for StepResources {
    fn drop(&mut self) {
        // The cgroup goes with the step; the network waits for the next one.
        self.cgroup = None;
        if let Some(StepNet::Bridge(n)) = self.network.take() {
            n.release();
        }
    }
}

/// Runs a spawned child to its end: its output lines collected (see [`collect_lines`]) while it is waited for
/// (see [`wait_or_kill`]). Returns the lines and the exit code.
pub(crate) fn supervise(
    child: &mut std::process::Child,
    on_line: &(dyn Fn(&str) + Sync),
    cancelled: &(dyn Fn() -> bool + Sync),
    on_cancel: &(dyn Fn() + Sync),
) -> (Vec<String>, std::io::Result<i32>) {
    let mut streams: Vec<Box<dyn Read + Send>> = Vec::new();
    if let Some(o) = child.stdout.take() {
        streams.push(Box::new(o));
    }
    if let Some(e) = child.stderr.take() {
        streams.push(Box::new(e));
    }
    std::thread::scope(|s| {
        let reader = s.spawn(|| collect_lines(streams, on_line));
        let exit = wait_or_kill(child, cancelled, on_cancel);
        (reader.join().unwrap_or_default(), exit)
    })
}

/// Reads a child's stdout and stderr to their ends, handing each line to `on_line` as it comes and keeping them
/// all, interleaved in the order they arrived.
fn collect_lines(
    streams: Vec<Box<dyn Read + Send>>,
    on_line: &(dyn Fn(&str) + Sync),
) -> Vec<String> {
    let lines = std::sync::Mutex::new(Vec::new());
    std::thread::scope(|s| {
        for r in streams {
            let lines = &lines;
            s.spawn(move || {
                for line in BufReader::new(r).lines().map_while(Result::ok) {
                    on_line(&line);
                    if let Ok(mut l) = lines.lock() {
                        l.push(line);
                    }
                }
            });
        }
    });
    lines.into_inner().unwrap_or_default()
}

/// Waits for `child` while polling `cancelled`: when it turns true the child is killed (and with it, through
/// the runtime's own means, everything it started). The child is reaped only after the watcher has stopped, so
/// a kill never reaches a recycled pid.
fn wait_or_kill(
    child: &mut std::process::Child,
    cancelled: &(dyn Fn() -> bool + Sync),
    on_cancel: &(dyn Fn() + Sync),
) -> std::io::Result<i32> {
    let pid = child.id() as libc::pid_t;
    let done = std::sync::Mutex::new(false);
    let wake = std::sync::Condvar::new();
    std::thread::scope(|s| {
        s.spawn(|| {
            // SAFETY: waitid with WNOWAIT only observes the exit; the zombie stays until `child.wait` below.
            unsafe {
                let mut info: libc::siginfo_t = std::mem::zeroed();
                while libc::waitid(
                    libc::P_PID,
                    pid as libc::id_t,
                    &mut info,
                    libc::WEXITED | libc::WNOWAIT,
                ) == -1
                    && std::io::Error::last_os_error().raw_os_error() == Some(libc::EINTR)
                {
                }
            }
            if let Ok(mut d) = done.lock() {
                *d = true;
            }
            wake.notify_all();
        });
        let Ok(mut d) = done.lock() else { return };
        let mut killed = false;
        while !*d {
            if !killed && cancelled() {
                killed = true;
                // SAFETY: the child is not reaped yet (see above), so `pid` is still ours.
                unsafe { libc::kill(pid, libc::SIGKILL) };
                on_cancel();
            }
            d = match wake.wait_timeout(d, std::time::Duration::from_millis(50)) {
                Ok((g, _)) => g,
                Err(_) => return,
            };
        }
    });
    let status = child.wait()?;
    use std::os::unix::process::ExitStatusExt;
    Ok(status
        .code()
        .unwrap_or_else(|| 128 + status.signal().unwrap_or(0)))
}
