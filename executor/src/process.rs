//! What every runtime is asked to run and what it reports back: one build step's process, its mounts and
//! network, and how it ended. The built-in runtime and an external OCI runtime take the same [`Process`] (turned
//! into the same OCI spec by [`crate::spec`]), so a build behaves the same under either.

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
    /// Resource limits (`kiln build --ulimit`), each replacing the default of its resource (the spec's
    /// `RLIMIT_NOFILE` 1048576) or added to it.
    pub rlimits: Vec<Rlimit>,
    /// Device nodes beyond the minimal /dev (`RUN --device`'s CDI device nodes).
    pub devices: Vec<DeviceNode>,
}

/// A resource limit of the process (the OCI spec's `process.rlimits` entry).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rlimit {
    /// `RLIMIT_NOFILE`, `RLIMIT_NPROC`, ...
    pub resource: String,
    /// Soft limit (`u64::MAX` is unlimited).
    pub soft: u64,
    /// Hard limit.
    pub hard: u64,
}

/// A host device node the step sees at `path`: in the spec's `linux.devices` (runc makes the node with its
/// numbers) and its device cgroup; the built-in runtime binds the host's node `host_path` there, read-only as
/// the minimal /dev's nodes are (so the step cannot change the host node's owner or mode).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceNode {
    /// Path inside the step.
    pub path: String,
    /// The host's node.
    pub host_path: PathBuf,
    /// `c`, `b` or `p`.
    pub kind: String,
    /// Major number.
    pub major: i64,
    /// Minor number.
    pub minor: i64,
    /// Mode bits of the node runc makes.
    pub file_mode: Option<u32>,
    /// Device cgroup access (`rwm` or part of it).
    pub permissions: String,
    /// Owner of the node runc makes.
    pub uid: Option<u32>,
    /// Group of the node runc makes.
    pub gid: Option<u32>,
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
    /// Whether the network may go back to the pool when the step ends: not after a privileged step, which held
    /// CAP_NET_ADMIN and could have changed routes, sysctls (route_localnet) or firewall rules that later,
    /// ordinary steps would inherit.
    reusable: bool,
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
            reusable: !p.privileged,
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
        // The cgroup goes with the step; the network waits for the next one, unless a privileged step had it.
        self.cgroup = None;
        if let Some(StepNet::Bridge(n)) = self.network.take() {
            if self.reusable {
                n.release();
            }
        }
    }
}

/// Runs a spawned child to its end on the calling thread: its stdout and stderr read as they come (each line handed
/// to `on_line` and kept, interleaved in the order they arrived), its exit watched through a pidfd, and
/// `cancelled` checked every 50 ms — when it turns true the child is killed and `on_cancel` takes the rest of the
/// step. One `poll` loop instead of a thread per stream and one per wait: a RUN step used to start and stop four
/// threads. The child is reaped only at the end, so a kill never reaches a recycled pid. Returns the lines and
/// the exit code (128+signal when killed).
pub(crate) fn supervise(
    child: &mut std::process::Child,
    on_line: &(dyn Fn(&str) + Sync),
    cancelled: &(dyn Fn() -> bool + Sync),
    on_cancel: &(dyn Fn() + Sync),
) -> (Vec<String>, std::io::Result<i32>) {
    use std::os::fd::{AsRawFd, OwnedFd};
    let pid = child.id() as libc::pid_t;
    let mut streams: Vec<LineSplitter> = Vec::new();
    if let Some(o) = child.stdout.take() {
        streams.push(LineSplitter::new(OwnedFd::from(o)));
    }
    if let Some(e) = child.stderr.take() {
        streams.push(LineSplitter::new(OwnedFd::from(e)));
    }
    // SAFETY: pidfd_open takes a pid and flags and returns a new descriptor (owned from here on) or -1.
    let pidfd = unsafe {
        let fd = libc::syscall(libc::SYS_pidfd_open, pid, 0);
        (fd >= 0).then(|| <OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(fd as i32))
    };
    let mut lines = Vec::new();
    let mut exited = false;
    let mut killed = false;
    let mut kill_if_cancelled = || {
        if !killed && cancelled() {
            killed = true;
            // SAFETY: the child is reaped only at the very end, so `pid` is still ours.
            unsafe { libc::kill(pid, libc::SIGKILL) };
            on_cancel();
        }
    };
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        kill_if_cancelled();
        let open: Vec<usize> = (0..streams.len()).filter(|&i| !streams[i].closed).collect();
        // Without a pidfd (kernels before 5.3) the exit is seen by `try_wait` once the output has ended.
        let watch_exit = !exited && pidfd.is_some();
        if open.is_empty() && !watch_exit {
            break;
        }
        let mut fds: Vec<libc::pollfd> = open
            .iter()
            .map(|&i| libc::pollfd {
                fd: streams[i].fd.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            })
            .collect();
        if let (true, Some(p)) = (watch_exit, &pidfd) {
            fds.push(libc::pollfd {
                fd: p.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            });
        }
        // SAFETY: `fds` is a live array of `fds.len()` pollfd structures.
        let n = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, 50) };
        if n < 0 {
            let e = std::io::Error::last_os_error();
            if e.raw_os_error() == Some(libc::EINTR) {
                continue;
            }
            return (lines, Err(e));
        }
        for (k, &i) in open.iter().enumerate() {
            if fds[k].revents != 0 {
                streams[i].read_some(&mut buf, &mut |line| {
                    on_line(&line);
                    lines.push(line);
                });
            }
        }
        if watch_exit && fds.last().is_some_and(|f| f.revents != 0) {
            exited = true;
        }
    }
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) => {
                kill_if_cancelled();
                std::thread::sleep(std::time::Duration::from_millis(2));
            }
            Err(e) => return (lines, Err(e)),
        }
    };
    use std::os::unix::process::ExitStatusExt;
    let code = status
        .code()
        .unwrap_or_else(|| 128 + status.signal().unwrap_or(0));
    (lines, Ok(code))
}

/// One output stream of a child, cut into lines (a last line without a newline counts; bytes that are not UTF-8
/// are replaced, never a reason to stop reading).
struct LineSplitter {
    fd: std::os::fd::OwnedFd,
    pending: Vec<u8>,
    closed: bool,
}

impl LineSplitter {
    fn new(fd: std::os::fd::OwnedFd) -> LineSplitter {
        LineSplitter {
            fd,
            pending: Vec::new(),
            closed: false,
        }
    }

    /// One read (the stream was reported ready): each completed line goes to `emit`; at the end of the stream the
    /// unfinished one does too.
    fn read_some(&mut self, buf: &mut [u8], emit: &mut dyn FnMut(String)) {
        use std::os::fd::AsRawFd;
        // SAFETY: reads into `buf`, which is valid for `buf.len()` bytes.
        let n = unsafe { libc::read(self.fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
        if n < 0 {
            let e = std::io::Error::last_os_error();
            if matches!(e.raw_os_error(), Some(libc::EINTR) | Some(libc::EAGAIN)) {
                return;
            }
        }
        if n <= 0 {
            self.closed = true;
            if !self.pending.is_empty() {
                let rest = std::mem::take(&mut self.pending);
                emit(line_text(&rest));
            }
            return;
        }
        self.pending.extend_from_slice(&buf[..n as usize]);
        let mut start = 0;
        while let Some(at) = self.pending[start..].iter().position(|&b| b == b'\n') {
            emit(line_text(&self.pending[start..start + at]));
            start += at + 1;
        }
        self.pending.drain(..start);
    }
}

/// A line's text without its newline (and carriage return, as `BufRead::lines` drops it).
fn line_text(bytes: &[u8]) -> String {
    let bytes = bytes.strip_suffix(b"\r").unwrap_or(bytes);
    String::from_utf8_lossy(bytes).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `sh -c script` with both output streams piped.
    fn sh(script: &str) -> std::process::Child {
        std::process::Command::new("/bin/sh")
            .args(["-c", script])
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap()
    }

    #[test]
    fn lines_are_cut_across_reads_and_nothing_stops_the_reading() {
        use std::io::Write;
        let (r, mut w) = std::io::pipe().unwrap();
        let mut s = LineSplitter::new(std::os::fd::OwnedFd::from(r));
        let mut got = Vec::new();
        let mut buf = [0u8; 4];
        // Read 4 bytes at a time, so lines end mid-read: a CRLF line, bytes that are not UTF-8, an empty line and
        // a last line with no newline.
        w.write_all(b"one\ntwo\r\nbad \xff byte\n\nlast").unwrap();
        drop(w);
        while !s.closed {
            s.read_some(&mut buf, &mut |l| got.push(l));
        }
        assert_eq!(got, ["one", "two", "bad \u{fffd} byte", "", "last"]);
    }

    #[test]
    fn supervise_keeps_every_line_of_both_streams_and_the_exit_code() {
        let mut child = sh(
            "i=0; while [ $i -lt 3000 ]; do echo out $i; echo err $i >&2; i=$((i+1)); done; exit 3",
        );
        let seen = std::sync::Mutex::new(0usize);
        let (lines, code) = supervise(
            &mut child,
            &|_| *seen.lock().unwrap() += 1,
            &|| false,
            &|| {},
        );
        assert_eq!(code.unwrap(), 3);
        assert_eq!(lines.len(), 6000);
        assert_eq!(*seen.lock().unwrap(), 6000);
        let outs: Vec<&String> = lines.iter().filter(|l| l.starts_with("out ")).collect();
        assert_eq!(outs.first().map(|s| s.as_str()), Some("out 0"));
        assert_eq!(outs.last().map(|s| s.as_str()), Some("out 2999"));
    }

    #[test]
    fn supervise_kills_the_child_once_cancelled() {
        let mut child = sh("echo started; exec sleep 30");
        let started = std::time::Instant::now();
        let cancelled = std::sync::atomic::AtomicBool::new(false);
        let called = std::sync::atomic::AtomicBool::new(false);
        let (lines, code) = supervise(
            &mut child,
            &|_| cancelled.store(true, std::sync::atomic::Ordering::SeqCst),
            &|| cancelled.load(std::sync::atomic::Ordering::SeqCst),
            &|| called.store(true, std::sync::atomic::Ordering::SeqCst),
        );
        assert_eq!(lines, ["started"]);
        assert_eq!(code.unwrap(), 128 + libc::SIGKILL);
        assert!(called.load(std::sync::atomic::Ordering::SeqCst));
        assert!(started.elapsed() < std::time::Duration::from_secs(10));
    }
}
