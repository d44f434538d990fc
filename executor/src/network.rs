//! A step's own network with outbound access (`--network=default`): a named network namespace joined to the host
//! by a veth pair on a /30 of its own, routed out through NAT, as Docker's bridge network and BuildKit's CNI
//! setup give a RUN. The step sees the internet and the host's non-loopback addresses, never the host's loopback
//! services (127.0.0.1 inside is its own). Made with iproute2's `ip` and `iptables`, which every Debian-like host
//! running containers has; rootless hosts cannot do this and are told to use `--network=none` or `host`.

use std::io::Write;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// Where the subnets in use are claimed, one file per subnet naming its step: host-wide (every kiln root on the
/// host shares the pool and the interface names), and gone at reboot with the namespaces themselves.
pub const CLAIMS: &str = "/run/kiln/net";

/// Where step subnets are taken from: 10.213.0.0/16, cut into /30s (16,384 steps at once).
const POOL: (Ipv4Addr, u8) = (Ipv4Addr::new(10, 213, 0, 0), 16);
const SLOTS: u32 = 1 << (32 - POOL.1 - 2);

/// Why a step's network could not be made.
#[derive(Debug, thiserror::Error)]
pub enum NetworkError {
    /// A command failed.
    #[error("{command}: {detail} (a RUN's default network needs root, iproute2 and iptables; RUN --network=none or --network=host avoids it)")]
    Command {
        /// What was run.
        command: String,
        /// Its error output or why it could not start.
        detail: String,
    },
    /// Bookkeeping under the state directory.
    #[error("{path}: {source}")]
    Io {
        /// The path.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// The host's NAT and forwarding rules could not be put in place (remembered for the rest of the process).
    #[error("{0}")]
    Rules(String),
    /// slirp4netns, a rootless step's network, could not be started.
    #[error("slirp4netns: {0} (a rootless RUN's default network needs slirp4netns and a /dev/net/tun the user may open, mode 0666 as Debian's udev rules make it; RUN --network=none avoids it)")]
    Slirp(String),
    /// Every subnet of the pool is taken.
    #[error("all {SLOTS} step networks of 10.213.0.0/16 are in use")]
    Exhausted,
}

/// Runs `ip`/`iptables` with `args`, feeding `batch` on stdin when given.
fn run(program: &str, args: &[&str], batch: Option<&str>) -> Result<(), NetworkError> {
    let command = format!("{program} {}", args.join(" "));
    let fail = |detail: String| NetworkError::Command {
        command: command.clone(),
        detail,
    };
    let mut child = Command::new(program)
        .args(args)
        .stdin(if batch.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| fail(e.to_string()))?;
    if let (Some(text), Some(mut stdin)) = (batch, child.stdin.take()) {
        stdin
            .write_all(text.as_bytes())
            .map_err(|e| fail(e.to_string()))?;
    }
    let out = child.wait_with_output().map_err(|e| fail(e.to_string()))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(fail(
            String::from_utf8_lossy(&out.stderr).trim().to_string(),
        ))
    }
}

/// The host and step addresses of slot `n` (a /30: network, host, step, broadcast).
fn addresses(n: u32) -> (Ipv4Addr, Ipv4Addr) {
    let base = u32::from(POOL.0) + n * 4;
    (Ipv4Addr::from(base + 1), Ipv4Addr::from(base + 2))
}

/// The rules every step network relies on, installed once and left in place (as Docker leaves its own): NAT for
/// what leaves the pool, and forwarding for it even when the host's FORWARD policy drops (Docker sets it so).
fn ensure_rules() -> Result<(), NetworkError> {
    let pool = format!("{}/{}", POOL.0, POOL.1);
    let rules: [(&str, Vec<&str>); 3] = [
        (
            "nat",
            vec![
                "POSTROUTING",
                "-s",
                &pool,
                "!",
                "-d",
                &pool,
                "-j",
                "MASQUERADE",
            ],
        ),
        ("filter", vec!["FORWARD", "-s", &pool, "-j", "ACCEPT"]),
        (
            "filter",
            vec![
                "FORWARD",
                "-d",
                &pool,
                "-m",
                "conntrack",
                "--ctstate",
                "RELATED,ESTABLISHED",
                "-j",
                "ACCEPT",
            ],
        ),
    ];
    for (table, rule) in rules {
        let mut check = vec!["-w", "-t", table, "-C"];
        check.extend(&rule);
        if run("iptables", &check, None).is_ok() {
            continue;
        }
        let mut insert = vec!["-w", "-t", table, "-I"];
        insert.extend(&rule);
        run("iptables", &insert, None)?;
    }
    let forward = Path::new("/proc/sys/net/ipv4/ip_forward");
    if std::fs::read_to_string(forward).is_ok_and(|v| v.trim() != "1") {
        std::fs::write(forward, "1").map_err(|source| NetworkError::Io {
            path: forward.to_path_buf(),
            source,
        })?;
    }
    Ok(())
}

/// Networks of finished steps waiting for the next step of this process.
static POOLED: std::sync::Mutex<Vec<StepNetwork>> = std::sync::Mutex::new(Vec::new());

/// At most this many idle networks are kept.
const POOL_LIMIT: usize = 16;

/// One step's network namespace, veth pair and subnet; all of it goes when this is dropped.
#[derive(Debug)]
pub struct StepNetwork {
    name: String,
    slot: u32,
    claim: PathBuf,
}

impl StepNetwork {
    /// Makes the network of step `id` (`kiln-<pid>-<n>`), claiming a free subnet in the directory `claims`
    /// ([`CLAIMS`]).
    pub fn create(id: &str, claims: &Path) -> Result<StepNetwork, NetworkError> {
        // The rules are checked once per kiln process, not once per step.
        static RULES: std::sync::OnceLock<Result<(), String>> = std::sync::OnceLock::new();
        RULES
            .get_or_init(|| ensure_rules().map_err(|e| e.to_string()))
            .clone()
            .map_err(NetworkError::Rules)?;
        let claims = claims.to_path_buf();
        std::fs::create_dir_all(&claims).map_err(|source| NetworkError::Io {
            path: claims.clone(),
            source,
        })?;
        let start = id
            .bytes()
            .fold(0u32, |h, b| h.wrapping_mul(31).wrapping_add(u32::from(b)));
        let mut found = None;
        for i in 0..SLOTS {
            let slot = (start + i) % SLOTS;
            let claim = claims.join(slot.to_string());
            match std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(&claim)
            {
                Ok(mut f) => {
                    let _ = f.write_all(id.as_bytes());
                    found = Some((slot, claim));
                    break;
                }
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
                Err(source) => {
                    return Err(NetworkError::Io {
                        path: claim,
                        source,
                    })
                }
            }
        }
        let (slot, claim) = found.ok_or(NetworkError::Exhausted)?;
        let net = StepNetwork {
            name: id.to_string(),
            slot,
            claim,
        };
        net.setup()?;
        Ok(net)
    }

    fn veth(&self) -> (String, String) {
        (format!("kv{}h", self.slot), format!("kv{}c", self.slot))
    }

    fn setup(&self) -> Result<(), NetworkError> {
        let (host_if, step_if) = self.veth();
        let (host_ip, step_ip) = addresses(self.slot);
        run(
            "ip",
            &["-batch", "-"],
            Some(&format!(
                "netns add {name}\n\
                 link add {host_if} type veth peer name {step_if} netns {name}\n\
                 addr add {host_ip}/30 dev {host_if}\n\
                 link set {host_if} up\n",
                name = self.name
            )),
        )?;
        // Inside, the step's end is `eth0`, as CNI names it under BuildKit (its testRunDefaultNetwork runs
        // `ip link show eth0`); names only need to be unique within their namespace.
        run(
            "ip",
            &["-n", &self.name, "-batch", "-"],
            Some(&format!(
                "link set lo up\n\
                 link set {step_if} name eth0\n\
                 addr add {step_ip}/30 dev eth0\n\
                 link set eth0 up\n\
                 route add default via {host_ip}\n"
            )),
        )
    }

    /// A network for step `id`: one a finished step of this process gave back ([`StepNetwork::release`]), else a
    /// new one. Making one costs tens of milliseconds of `ip` and kernel work, most of a short RUN's cost, and a
    /// step cannot change its network's configuration (it has no CAP_NET_ADMIN), so, as BuildKit pools its CNI
    /// namespaces, finished steps' networks are reused; every process of the step that used one is dead by then.
    pub fn acquire(id: &str, claims: &Path) -> Result<StepNetwork, NetworkError> {
        let reused = POOLED.lock().ok().and_then(|mut p| p.pop());
        match reused {
            Some(n) => Ok(n),
            None => StepNetwork::create(id, claims),
        }
    }

    /// Gives a finished step's network back for the next step of this process (see [`StepNetwork::acquire`]).
    pub fn release(self) {
        if let Ok(mut p) = POOLED.lock() {
            if p.len() < POOL_LIMIT {
                p.push(self);
            }
        }
    }

    /// Removes every pooled network: called when the process is done running steps. (A process that dies
    /// first leaves them to [`StepNetwork::sweep`], which knows them by the dead pid in their names.)
    pub fn drain_pool() {
        let drained: Vec<StepNetwork> = POOLED
            .lock()
            .map(|mut p| std::mem::take(&mut *p))
            .unwrap_or_default();
        drop(drained);
    }

    /// The namespace to give the runtime (`linux.namespaces[].path`).
    pub fn netns_path(&self) -> PathBuf {
        Path::new("/run/netns").join(&self.name)
    }

    /// The networks of steps whose kiln process died (their namespace names): what [`StepNetwork::sweep`] removes.
    pub fn stale(claims: &Path, stale: &dyn Fn(&str) -> bool) -> Vec<String> {
        let mut out: Vec<String> = std::fs::read_dir(claims)
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|e| std::fs::read_to_string(e.path()).ok())
            .filter(|owner| stale(owner))
            .collect();
        out.sort();
        out
    }

    /// Removes what a step of a kiln process that died left behind (its namespace, veth and subnet claim).
    pub fn sweep(claims: &Path, stale: &dyn Fn(&str) -> bool) {
        let Ok(entries) = std::fs::read_dir(claims) else {
            return;
        };
        for e in entries.flatten() {
            let Ok(owner) = std::fs::read_to_string(e.path()) else {
                continue;
            };
            let Ok(slot) = e.file_name().to_string_lossy().parse::<u32>() else {
                continue;
            };
            if stale(&owner) {
                drop(StepNetwork {
                    name: owner,
                    slot,
                    claim: e.path(),
                });
            }
        }
    }
}

impl Drop for StepNetwork {
    fn drop(&mut self) {
        let (host_if, _) = self.veth();
        // Deleting one end of a veth deletes both; the namespace goes once nothing runs in it.
        let _ = run(
            "ip",
            &["-force", "-batch", "-"],
            Some(&format!("link del {host_if}\nnetns del {}\n", self.name)),
        );
        let _ = std::fs::remove_file(&self.claim);
    }
}

/// Brings `lo` up in the calling thread's network namespace (a new one has it down; runc brings it up too).
/// Only raw system calls and no allocation: the sandbox calls it between fork and exec. Returns the errno.
pub(crate) fn loopback_up() -> Result<(), i32> {
    let errno = || std::io::Error::last_os_error().raw_os_error().unwrap_or(0);
    // SAFETY: a socket used for two ioctls on a zeroed, NUL-terminated ifreq, then closed.
    unsafe {
        let s = libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0);
        if s < 0 {
            return Err(errno());
        }
        let mut req: libc::ifreq = std::mem::zeroed();
        for (d, b) in req.ifr_name.iter_mut().zip(b"lo\0") {
            *d = *b as libc::c_char;
        }
        let mut r = libc::ioctl(s, libc::SIOCGIFFLAGS, &mut req);
        if r == 0 {
            req.ifr_ifru.ifru_flags |= (libc::IFF_UP | libc::IFF_RUNNING) as libc::c_short;
            r = libc::ioctl(s, libc::SIOCSIFFLAGS, &req);
        }
        let e = errno();
        libc::close(s);
        if r != 0 {
            return Err(e);
        }
    }
    Ok(())
}

/// The `/etc/resolv.conf` a step gets: the host's, without loopback name servers (a step's 127.0.0.1 is its own),
/// falling back to systemd-resolved's upstream list and then to public resolvers, as Docker does.
pub fn resolv_conf(host: &str, upstream: Option<&str>, keep_loopback: bool) -> String {
    let usable = |text: &str| -> Vec<String> {
        text.lines()
            .filter(|l| {
                let mut w = l.split_whitespace();
                match (w.next(), w.next()) {
                    (Some("nameserver"), Some(ip)) => {
                        keep_loopback
                            || !ip
                                .parse::<std::net::IpAddr>()
                                .is_ok_and(|a| a.is_loopback())
                    }
                    _ => true,
                }
            })
            .map(str::to_string)
            .collect()
    };
    let has_server = |lines: &[String]| lines.iter().any(|l| l.starts_with("nameserver"));
    let mut lines = usable(host);
    if !has_server(&lines) {
        if let Some(u) = upstream {
            let up = usable(u);
            if has_server(&up) {
                lines = up;
            }
        }
    }
    if !has_server(&lines) {
        lines.retain(|l| !l.starts_with("nameserver"));
        lines.push("nameserver 8.8.8.8".to_string());
        lines.push("nameserver 8.8.4.4".to_string());
    }
    let mut out = lines.join("\n");
    out.push('\n');
    out
}

/// The `/etc/hosts` a step gets (BuildKit's: localhost and the sandbox's hostname).
pub fn hosts(hostname: &str) -> String {
    format!("127.0.0.1\tlocalhost {hostname}\n::1\tlocalhost ip6-localhost ip6-loopback\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subnets_are_disjoint_slash_30s_of_the_pool() {
        assert_eq!(
            addresses(0),
            (Ipv4Addr::new(10, 213, 0, 1), Ipv4Addr::new(10, 213, 0, 2))
        );
        assert_eq!(
            addresses(SLOTS - 1),
            (
                Ipv4Addr::new(10, 213, 255, 253),
                Ipv4Addr::new(10, 213, 255, 254)
            )
        );
        assert_eq!(addresses(1).0, Ipv4Addr::new(10, 213, 0, 5));
    }

    #[test]
    fn resolv_conf_drops_loopback_servers_and_falls_back_like_docker() {
        let host = "search corp\nnameserver 127.0.0.53\noptions edns0\n";
        let upstream = "nameserver 10.0.0.2\n";
        assert_eq!(
            resolv_conf(host, Some(upstream), false),
            "nameserver 10.0.0.2\n"
        );
        assert_eq!(
            resolv_conf(host, None, false),
            "search corp\noptions edns0\nnameserver 8.8.8.8\nnameserver 8.8.4.4\n"
        );
        assert_eq!(
            resolv_conf("nameserver 10.1.1.1\nnameserver ::1\n", None, false),
            "nameserver 10.1.1.1\n"
        );
        // The host's network keeps the host's resolver as it is.
        assert_eq!(resolv_conf(host, None, true), host);
    }
}
