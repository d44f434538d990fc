//! The spec turned into a plan the child can carry out with raw system calls alone: between fork and exec in a
//! multi-threaded program nothing may allocate or take a lock, so every path, flag, argument vector and filter is
//! made here, in the parent, beforehand. Mount targets are resolved here too, inside the rootfs (a symlink in an
//! image never points a mount at the host).

use std::ffi::{CString, OsStr, OsString};
use std::os::fd::OwnedFd;
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};

use oci_spec::runtime::{LinuxNamespaceType, Spec};

use super::SandboxError;

/// One thing done to the new root before pivot_root, in order.
pub(super) enum Step {
    /// A mount onto a target inside the rootfs.
    Mount {
        /// Each path from the rootfs down to the target: each must be a directory or missing (then made), never a
        /// symlink; the last is the target.
        target: Vec<CString>,
        /// The target is a file (a bind of a file).
        file: bool,
        source: Option<CString>,
        fstype: Option<CString>,
        flags: libc::c_ulong,
        data: Option<CString>,
        /// Flags to apply with a second, remounting call (a bind's read-only and nosuid/nodev/noexec).
        remount: Option<libc::c_ulong>,
        /// Propagation to set afterwards (MS_PRIVATE, MS_SLAVE, ... with MS_REC).
        propagation: libc::c_ulong,
    },
    /// A symlink (`/dev/fd` and friends).
    Symlink { target: CString, link: CString },
}

/// Capability sets as capset(2) takes them (low and high 32 bits).
#[derive(Clone, Copy, Default)]
pub(super) struct CapSets {
    pub effective: u64,
    pub permitted: u64,
    pub inheritable: u64,
}

/// Everything the child does, prepared.
pub(super) struct Plan {
    /// kiln's pid: the first child stops if it was orphaned before it could arrange to die with kiln.
    pub parent: libc::pid_t,
    pub cgroup_procs: Vec<CString>,
    pub netns: Option<OwnedFd>,
    pub unshare: libc::c_int,
    pub loopback: bool,
    pub rootfs: CString,
    pub steps: Vec<Step>,
    pub masked: Vec<CString>,
    pub readonly: Vec<CString>,
    pub hostname: Option<CString>,
    pub rlimits: Vec<(u32, u64, u64)>,
    pub cwd: Vec<CString>,
    pub uid: libc::uid_t,
    pub gid: libc::gid_t,
    pub groups: Vec<libc::gid_t>,
    pub drop_bounding: Vec<libc::c_ulong>,
    pub caps: CapSets,
    pub no_new_privs: bool,
    pub seccomp: Vec<libc::sock_filter>,
    /// Owned here for `argv_ptrs` and `envp_ptrs`, which point into them.
    #[allow(dead_code)]
    pub argv: Vec<CString>,
    #[allow(dead_code)]
    pub envp: Vec<CString>,
    /// Where to look for argv\[0\]: itself when it holds a slash, else each `$PATH` entry joined with it.
    pub exec: Vec<CString>,
    /// Null-terminated pointer arrays into `argv` and `envp` (built here: the child may not allocate).
    pub argv_ptrs: Vec<*const libc::c_char>,
    pub envp_ptrs: Vec<*const libc::c_char>,
    /// Where the child reports a failed set-up step (closed on exec).
    pub report: OwnedFd,
}

// SAFETY: the raw pointers point into `argv` and `envp`, which the plan owns and never changes after building;
// they are only read, in the child.
unsafe impl Send for Plan {}
// SAFETY: as above.
unsafe impl Sync for Plan {}

fn cstring(s: impl AsRef<OsStr>) -> Result<CString, SandboxError> {
    CString::new(s.as_ref().as_bytes()).map_err(|_| {
        SandboxError::Spec(format!(
            "{:?} holds a NUL byte",
            s.as_ref().to_string_lossy()
        ))
    })
}

/// `/a/./b/../c` → `[a, c]`: a path inside the container, cleaned as BuildKit cleans mount targets.
fn clean(p: &Path) -> Vec<OsString> {
    let mut out: Vec<OsString> = Vec::new();
    for c in p.components() {
        match c {
            Component::Normal(n) => out.push(n.to_os_string()),
            Component::ParentDir => {
                out.pop();
            }
            _ => {}
        }
    }
    out
}

/// Where the container path `parts` is on the host, symlinks in the rootfs `root` followed as they would be
/// inside it (an absolute link restarts at `root`, `..` stops at it). Missing components are kept as they are.
fn resolve_in_root(root: &Path, parts: &[OsString]) -> Result<PathBuf, SandboxError> {
    let path: Vec<&str> = parts
        .iter()
        .map(|p| {
            p.to_str()
                .ok_or_else(|| SandboxError::Spec(format!("{p:?} is not UTF-8")))
        })
        .collect::<Result<_, _>>()?;
    scoped::resolve(root, &path.join("/"), true).map_err(|e| SandboxError::Spec(e.to_string()))
}

/// Each path from below `root` down to `target` (which is inside it).
fn prefixes(root: &Path, target: &Path) -> Result<Vec<CString>, SandboxError> {
    let rel = target.strip_prefix(root).unwrap_or(target);
    let mut cur = root.to_path_buf();
    let mut out = Vec::new();
    for c in rel.components() {
        cur.push(c);
        out.push(cstring(&cur)?);
    }
    if out.is_empty() {
        out.push(cstring(root)?);
    }
    Ok(out)
}

/// Splits OCI mount options into mount(2) flags, the flags a bind needs a remount for, propagation, and the
/// filesystem's own data string.
fn mount_options(
    options: &[String],
) -> (libc::c_ulong, libc::c_ulong, libc::c_ulong, Option<String>) {
    let (mut flags, mut propagation) = (0, 0);
    let mut data = Vec::new();
    for o in options {
        let (set, clear): (libc::c_ulong, libc::c_ulong) = match o.as_str() {
            "ro" => (libc::MS_RDONLY, 0),
            "rw" => (0, libc::MS_RDONLY),
            "nosuid" => (libc::MS_NOSUID, 0),
            "suid" => (0, libc::MS_NOSUID),
            "nodev" => (libc::MS_NODEV, 0),
            "dev" => (0, libc::MS_NODEV),
            "noexec" => (libc::MS_NOEXEC, 0),
            "exec" => (0, libc::MS_NOEXEC),
            "sync" => (libc::MS_SYNCHRONOUS, 0),
            "noatime" => (libc::MS_NOATIME, 0),
            "nodiratime" => (libc::MS_NODIRATIME, 0),
            "relatime" => (libc::MS_RELATIME, 0),
            "strictatime" => (libc::MS_STRICTATIME, 0),
            "bind" => (libc::MS_BIND, 0),
            "rbind" => (libc::MS_BIND | libc::MS_REC, 0),
            p @ ("private" | "rprivate" | "slave" | "rslave" | "shared" | "rshared"
            | "unbindable" | "runbindable") => {
                propagation = match p.trim_start_matches('r') {
                    "private" => libc::MS_PRIVATE,
                    "slave" => libc::MS_SLAVE,
                    "shared" => libc::MS_SHARED,
                    _ => libc::MS_UNBINDABLE,
                } | if p.starts_with('r') { libc::MS_REC } else { 0 };
                (0, 0)
            }
            other => {
                data.push(other.to_string());
                (0, 0)
            }
        };
        flags = (flags | set) & !clear;
    }
    let remount = flags & (libc::MS_RDONLY | libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC);
    let data = (!data.is_empty()).then(|| data.join(","));
    (flags, remount, propagation, data)
}

/// Capability numbers by the names the spec uses (without `CAP_`).
fn capability_number(name: &str) -> Option<u32> {
    const NAMES: [&str; 41] = [
        "CHOWN",
        "DAC_OVERRIDE",
        "DAC_READ_SEARCH",
        "FOWNER",
        "FSETID",
        "KILL",
        "SETGID",
        "SETUID",
        "SETPCAP",
        "LINUX_IMMUTABLE",
        "NET_BIND_SERVICE",
        "NET_BROADCAST",
        "NET_ADMIN",
        "NET_RAW",
        "IPC_LOCK",
        "IPC_OWNER",
        "SYS_MODULE",
        "SYS_RAWIO",
        "SYS_CHROOT",
        "SYS_PTRACE",
        "SYS_PACCT",
        "SYS_ADMIN",
        "SYS_BOOT",
        "SYS_NICE",
        "SYS_RESOURCE",
        "SYS_TIME",
        "SYS_TTY_CONFIG",
        "MKNOD",
        "LEASE",
        "AUDIT_WRITE",
        "AUDIT_CONTROL",
        "SETFCAP",
        "MAC_OVERRIDE",
        "MAC_ADMIN",
        "SYSLOG",
        "WAKE_ALARM",
        "BLOCK_SUSPEND",
        "AUDIT_READ",
        "PERFMON",
        "BPF",
        "CHECKPOINT_RESTORE",
    ];
    let name = name.strip_prefix("CAP_").unwrap_or(name);
    NAMES.iter().position(|n| *n == name).map(|i| i as u32)
}

fn cap_mask(set: &Option<oci_spec::runtime::Capabilities>) -> Result<u64, SandboxError> {
    let mut mask = 0u64;
    for c in set.iter().flatten() {
        let name = c.to_string();
        let n = capability_number(&name)
            .ok_or_else(|| SandboxError::Spec(format!("unknown capability {name}")))?;
        mask |= 1 << n;
    }
    Ok(mask)
}

fn rlimit_resource(typ: oci_spec::runtime::PosixRlimitType) -> Result<u32, SandboxError> {
    let name = serde_json::to_value(typ)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_default();
    Ok(match name.as_str() {
        "RLIMIT_CPU" => libc::RLIMIT_CPU,
        "RLIMIT_FSIZE" => libc::RLIMIT_FSIZE,
        "RLIMIT_DATA" => libc::RLIMIT_DATA,
        "RLIMIT_STACK" => libc::RLIMIT_STACK,
        "RLIMIT_CORE" => libc::RLIMIT_CORE,
        "RLIMIT_RSS" => libc::RLIMIT_RSS,
        "RLIMIT_NPROC" => libc::RLIMIT_NPROC,
        "RLIMIT_NOFILE" => libc::RLIMIT_NOFILE,
        "RLIMIT_MEMLOCK" => libc::RLIMIT_MEMLOCK,
        "RLIMIT_AS" => libc::RLIMIT_AS,
        "RLIMIT_LOCKS" => libc::RLIMIT_LOCKS,
        "RLIMIT_SIGPENDING" => libc::RLIMIT_SIGPENDING,
        "RLIMIT_MSGQUEUE" => libc::RLIMIT_MSGQUEUE,
        "RLIMIT_NICE" => libc::RLIMIT_NICE,
        "RLIMIT_RTPRIO" => libc::RLIMIT_RTPRIO,
        "RLIMIT_RTTIME" => libc::RLIMIT_RTTIME,
        _ => return Err(SandboxError::Spec(format!("unknown rlimit {name}"))),
    } as u32)
}

/// Whether group `gid` exists in this user namespace (`/proc/self/gid_map` maps it).
fn gid_mapped(gid: u32) -> bool {
    std::fs::read_to_string("/proc/self/gid_map").is_ok_and(|m| {
        m.lines().any(|l| {
            let f: Vec<u64> = l
                .split_whitespace()
                .filter_map(|n| n.parse().ok())
                .collect();
            f.len() == 3 && (f[0]..f[0] + f[2]).contains(&u64::from(gid))
        })
    })
}

/// The device nodes of a minimal /dev (runc's defaults), bound from the host's.
const DEVICES: [&str; 6] = ["null", "zero", "full", "random", "urandom", "tty"];

/// The links of a minimal /dev: name, target.
const DEV_LINKS: [(&str, &str); 5] = [
    ("fd", "/proc/self/fd"),
    ("stdin", "/proc/self/fd/0"),
    ("stdout", "/proc/self/fd/1"),
    ("stderr", "/proc/self/fd/2"),
    ("ptmx", "pts/ptmx"),
];

/// A host device node bound at `target`, remounted read-only: the node is the host's own inode, so a step that
/// could change its metadata (`chmod 000 /dev/null`, `chown`, `touch`) would change the host's. On a read-only
/// mount such calls fail with EROFS, while reading and writing a character or block device stays allowed (the
/// kernel's read-only check covers only regular files, directories and links). `nosuid` and `noexec` add
/// nothing a node needs; the flags the host's mount already has are repeated, since a user namespace may not
/// drop them (rootless).
fn device_bind(root: &Path, target: &Path, source: &Path) -> Result<Step, SandboxError> {
    use rustix::fs::StatVfsMountFlags as F;
    let locked = rustix::fs::statvfs(source).map_or(F::empty(), |v| v.f_flag);
    let mut remount = libc::MS_RDONLY | libc::MS_NOSUID | libc::MS_NOEXEC;
    for (has, flag) in [
        (F::NODEV, libc::MS_NODEV),
        (F::NOATIME, libc::MS_NOATIME),
        (F::NODIRATIME, libc::MS_NODIRATIME),
    ] {
        if locked.contains(has) {
            remount |= flag;
        }
    }
    Ok(Step::Mount {
        target: prefixes(root, target)?,
        file: true,
        source: Some(cstring(source)?),
        fstype: None,
        flags: libc::MS_BIND,
        data: None,
        remount: Some(remount),
        propagation: 0,
    })
}

fn last_cap() -> u32 {
    std::fs::read_to_string("/proc/sys/kernel/cap_last_cap")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(40)
}

/// What a plan depends on of the host kiln runs on. Read from `/proc` for a real step; the tests make up hosts
/// (rootless or not, any gid mapping) so that every difference is checked by an ordinary user, without namespaces.
#[derive(Clone, Copy)]
pub(super) struct Host {
    /// kiln runs in a user namespace (see [`crate::process::in_user_namespace`]).
    pub rootless: bool,
    /// The highest capability number the kernel knows (`/proc/sys/kernel/cap_last_cap`).
    pub last_cap: u32,
    /// Whether a group id is mapped in kiln's user namespace.
    pub gid_mapped: fn(u32) -> bool,
}

impl Host {
    /// The host this process runs on.
    pub(super) fn current() -> Host {
        Host {
            rootless: crate::process::in_user_namespace(),
            last_cap: last_cap(),
            gid_mapped,
        }
    }
}

impl Plan {
    /// Prepares `spec` to be run, the step entering the cgroups whose `cgroup.procs` files are `cgroup_procs`.
    pub(super) fn new(
        spec: &Spec,
        cgroup_procs: &[PathBuf],
        report: OwnedFd,
    ) -> Result<Plan, SandboxError> {
        Plan::for_host(spec, cgroup_procs, report, Host::current())
    }

    /// [`Plan::new`] on the given `machine` (the tests' made-up hosts).
    pub(super) fn for_host(
        spec: &Spec,
        cgroup_procs: &[PathBuf],
        report: OwnedFd,
        machine: Host,
    ) -> Result<Plan, SandboxError> {
        let missing = |what: &str| SandboxError::Spec(format!("the spec has no {what}"));
        let process = spec.process().as_ref().ok_or_else(|| missing("process"))?;
        let linux = spec
            .linux()
            .as_ref()
            .ok_or_else(|| missing("linux section"))?;
        let root = spec
            .root()
            .as_ref()
            .ok_or_else(|| missing("root"))?
            .path()
            .clone();

        let rootless = machine.rootless;
        let mut unshare = 0;
        let mut netns = None;
        let mut loopback = false;
        for ns in linux.namespaces().iter().flatten() {
            let flag = match ns.typ() {
                LinuxNamespaceType::Mount => libc::CLONE_NEWNS,
                LinuxNamespaceType::Pid => libc::CLONE_NEWPID,
                LinuxNamespaceType::Uts => libc::CLONE_NEWUTS,
                LinuxNamespaceType::Ipc => libc::CLONE_NEWIPC,
                LinuxNamespaceType::Network => libc::CLONE_NEWNET,
                LinuxNamespaceType::Cgroup => libc::CLONE_NEWCGROUP,
                other => {
                    return Err(SandboxError::Spec(format!(
                        "the {other:?} namespace is not supported by the built-in runtime"
                    )))
                }
            };
            match ns.path() {
                Some(path) if flag == libc::CLONE_NEWNET => {
                    let f = std::fs::File::open(path).map_err(|source| SandboxError::Io {
                        path: path.clone(),
                        source,
                    })?;
                    netns = Some(OwnedFd::from(f));
                }
                Some(path) => {
                    return Err(SandboxError::Spec(format!(
                        "joining {} is not supported by the built-in runtime",
                        path.display()
                    )))
                }
                None => {
                    unshare |= flag;
                    loopback |= flag == libc::CLONE_NEWNET;
                }
            }
        }
        if unshare & libc::CLONE_NEWNS == 0 {
            return Err(SandboxError::Spec(
                "the built-in runtime needs a mount namespace".into(),
            ));
        }

        // Mounts, each target resolved inside the rootfs, or below an earlier mount when it lies under one (a
        // fresh /dev tmpfs holds no symlinks; anything else there is checked in the child).
        let mut steps = Vec::new();
        let mut mounted: Vec<(Vec<OsString>, PathBuf)> = Vec::new();
        let mut dev_dir = None;
        for m in spec.mounts().iter().flatten() {
            let parts = clean(m.destination());
            let under = mounted
                .iter()
                .filter(|(dest, _)| parts.starts_with(dest) && parts.len() > dest.len())
                .max_by_key(|(dest, _)| dest.len());
            let host = match under {
                Some((dest, host)) => parts[dest.len()..]
                    .iter()
                    .fold(host.clone(), |p, c| p.join(c)),
                None => resolve_in_root(&root, &parts)?,
            };
            let (mut flags, mut remount, propagation, mut data) =
                mount_options(m.options().as_deref().unwrap_or_default());
            let mut source = m.source().clone();
            let mut typ = m.typ().clone();
            // Rootless with the host's network: sysfs may only be mounted by the network namespace's owner, so
            // the host's /sys is bound read-only instead (as runc does).
            if rootless && typ.as_deref() == Some("sysfs") && unshare & libc::CLONE_NEWNET == 0 {
                source = Some(PathBuf::from("/sys"));
                typ = Some("bind".into());
                flags = libc::MS_BIND | libc::MS_REC;
                remount = libc::MS_RDONLY | libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC;
                data = None;
            }
            let bind = flags & libc::MS_BIND != 0;
            // Rootless with a single-id mapping: devpts's gid=5 names a group the namespace does not have.
            if rootless && typ.as_deref() == Some("devpts") {
                data = data.map(|d| {
                    d.split(',')
                        .filter(|o| {
                            o.strip_prefix("gid=")
                                .and_then(|g| g.parse::<u32>().ok())
                                .is_none_or(machine.gid_mapped)
                        })
                        .collect::<Vec<_>>()
                        .join(",")
                });
            }
            let file = bind
                && source
                    .as_ref()
                    .is_some_and(|s| std::fs::metadata(s).is_ok_and(|md| !md.is_dir()));
            let fstype = typ.as_deref().filter(|t| !bind && *t != "bind");
            // Without a device cgroup, CAP_MKNOD would let a step make a node for any host device and open it:
            // every filesystem a step can write is mounted nodev instead (the rootfs, /dev, binds), and /dev's
            // few devices are the host's own nodes bound in (which also works in a user namespace).
            if m.destination() == Path::new("/dev") {
                dev_dir = Some(host.clone());
                flags |= libc::MS_NODEV;
            }
            if bind {
                remount |= libc::MS_NODEV;
            }
            steps.push(Step::Mount {
                target: prefixes(&root, &host)?,
                file,
                source: source.as_ref().map(cstring).transpose()?,
                fstype: fstype.map(cstring).transpose()?,
                // A bind takes its flags only through a remount.
                flags: if bind {
                    flags & (libc::MS_BIND | libc::MS_REC)
                } else {
                    flags
                },
                data: if bind {
                    None
                } else {
                    data.map(cstring).transpose()?
                },
                remount: (bind && remount != 0).then_some(remount),
                propagation,
            });
            mounted.push((parts, host));
        }
        if let Some(dev) = dev_dir {
            for name in DEVICES {
                steps.push(device_bind(
                    &root,
                    &dev.join(name),
                    &Path::new("/dev").join(name),
                )?);
            }
            // A privileged step's host devices (the spec lists them): bound like the defaults.
            let devices = spec.linux().as_ref().and_then(|l| l.devices().as_ref());
            // CDI device nodes are listed the same way, their host node named by an annotation when it lies
            // elsewhere; one outside /dev is resolved inside the rootfs.
            let annotations = spec.annotations().clone().unwrap_or_default();
            for d in devices.into_iter().flatten() {
                let source = annotations
                    .get(&format!(
                        "{}{}",
                        crate::spec::DEVICE_SOURCE_ANNOTATION,
                        d.path().display()
                    ))
                    .map_or_else(|| d.path().to_path_buf(), PathBuf::from);
                let target = match d.path().strip_prefix("/dev") {
                    Ok(rel) => dev.join(rel),
                    Err(_) => resolve_in_root(&root, &clean(d.path()))?,
                };
                steps.push(device_bind(&root, &target, &source)?);
            }
            for (name, target) in DEV_LINKS {
                steps.push(Step::Symlink {
                    target: cstring(target)?,
                    link: cstring(dev.join(name))?,
                });
            }
        }

        let caps = process.capabilities().as_ref();
        let bounding = caps.map_or(Ok(0), |c| cap_mask(c.bounding()))?;
        let drop_bounding = (0..=machine.last_cap)
            .filter(|n| bounding & (1 << n) == 0)
            .map(libc::c_ulong::from)
            .collect();
        let caps = CapSets {
            effective: caps.map_or(Ok(0), |c| cap_mask(c.effective()))?,
            permitted: caps.map_or(Ok(0), |c| cap_mask(c.permitted()))?,
            inheritable: caps.map_or(Ok(0), |c| cap_mask(c.inheritable()))?,
        };
        let seccomp = match linux.seccomp() {
            Some(s) => super::seccomp::compile(s)?,
            None => Vec::new(),
        };

        let args = process.args().clone().unwrap_or_default();
        let program = args.first().ok_or_else(|| missing("command"))?;
        let env = process.env().clone().unwrap_or_default();
        let exec = if program.contains('/') {
            vec![cstring(program)?]
        } else {
            let path = env
                .iter()
                .find_map(|e| e.strip_prefix("PATH="))
                .unwrap_or("/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin");
            path.split(':')
                .map(|d| if d.is_empty() { "." } else { d })
                .map(|d| cstring(format!("{}/{program}", d.trim_end_matches('/'))))
                .collect::<Result<_, _>>()?
        };
        let argv: Vec<CString> = args.iter().map(cstring).collect::<Result<_, _>>()?;
        let envp: Vec<CString> = env.iter().map(cstring).collect::<Result<_, _>>()?;
        let ptrs = |v: &[CString]| {
            v.iter()
                .map(|c| c.as_ptr())
                .chain(std::iter::once(std::ptr::null()))
                .collect::<Vec<_>>()
        };
        let cwd_parts = clean(process.cwd());
        let mut cwd = Vec::new();
        let mut cur = PathBuf::from("/");
        for c in &cwd_parts {
            cur.push(c);
            cwd.push(cstring(&cur)?);
        }
        if cwd.is_empty() {
            cwd.push(cstring("/")?);
        }
        let user = process.user();

        Ok(Plan {
            parent: std::process::id() as libc::pid_t,
            cgroup_procs: cgroup_procs.iter().map(cstring).collect::<Result<_, _>>()?,
            netns,
            unshare,
            loopback,
            rootfs: cstring(&root)?,
            steps,
            masked: linux
                .masked_paths()
                .iter()
                .flatten()
                .map(cstring)
                .collect::<Result<_, _>>()?,
            readonly: linux
                .readonly_paths()
                .iter()
                .flatten()
                .map(cstring)
                .collect::<Result<_, _>>()?,
            hostname: spec.hostname().as_ref().map(cstring).transpose()?,
            rlimits: process
                .rlimits()
                .iter()
                .flatten()
                .map(|r| Ok((rlimit_resource(r.typ())?, r.soft(), r.hard())))
                .collect::<Result<_, SandboxError>>()?,
            cwd,
            uid: user.uid(),
            gid: user.gid(),
            groups: user.additional_gids().clone().unwrap_or_default(),
            drop_bounding,
            caps,
            no_new_privs: process.no_new_privileges().unwrap_or(false),
            seccomp,
            argv_ptrs: ptrs(&argv),
            envp_ptrs: ptrs(&envp),
            argv,
            envp,
            exec,
            report,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_resolve_inside_the_rootfs() {
        let root = tempfile::tempdir().unwrap();
        let r = root.path();
        std::fs::create_dir_all(r.join("usr/etc")).unwrap();
        std::os::unix::fs::symlink("/usr/etc", r.join("etc")).unwrap();
        std::os::unix::fs::symlink("../../../../..", r.join("up")).unwrap();
        std::os::unix::fs::symlink("/etc/passwd", r.join("usr/pw")).unwrap();
        let go = |p: &str| resolve_in_root(r, &clean(Path::new(p))).unwrap();
        assert_eq!(go("/etc/hosts"), r.join("usr/etc/hosts"), "absolute link");
        assert_eq!(go("/up/x"), r.join("x"), "`..` stops at the root");
        assert_eq!(go("/../../x"), r.join("x"));
        assert_eq!(go("/usr/pw"), r.join("usr/etc/passwd"), "link to a link");
        let loop_root = tempfile::tempdir().unwrap();
        std::os::unix::fs::symlink("b", loop_root.path().join("a")).unwrap();
        std::os::unix::fs::symlink("a", loop_root.path().join("b")).unwrap();
        assert!(resolve_in_root(loop_root.path(), &clean(Path::new("/a/x"))).is_err());
    }

    #[test]
    fn options_split_into_flags_remounts_propagation_and_data() {
        let o = |v: &[&str]| mount_options(&v.iter().map(|s| s.to_string()).collect::<Vec<_>>());
        let (flags, remount, prop, data) = o(&["rbind", "rprivate", "ro"]);
        assert_eq!(
            flags & (libc::MS_BIND | libc::MS_REC),
            libc::MS_BIND | libc::MS_REC
        );
        assert_eq!(remount, libc::MS_RDONLY);
        assert_eq!(prop, libc::MS_PRIVATE | libc::MS_REC);
        assert_eq!(data, None);
        let (flags, _, prop, data) = o(&["nosuid", "strictatime", "mode=755", "size=65536k"]);
        assert_eq!(flags, libc::MS_NOSUID | libc::MS_STRICTATIME);
        assert_eq!(prop, 0);
        assert_eq!(data.as_deref(), Some("mode=755,size=65536k"));
        assert_eq!(capability_number("CAP_CHOWN"), Some(0));
        assert_eq!(capability_number("AUDIT_WRITE"), Some(29));
        assert_eq!(capability_number("SETFCAP"), Some(31));
    }

    // Table tests of the whole spec → plan step, on made-up hosts: no namespace, mount or root needed.

    use crate::process::{Mount, Network, Process};
    use crate::spec::{DEFAULT_CAPABILITIES, MASKED_PATHS, READONLY_PATHS};

    fn all_mapped(_: u32) -> bool {
        true
    }

    fn none_mapped(_: u32) -> bool {
        false
    }

    const ROOTFUL: Host = Host {
        rootless: false,
        last_cap: 40,
        gid_mapped: all_mapped,
    };

    fn process(rootfs: &Path) -> Process {
        Process {
            args: vec!["sh".into(), "-c".into(), "true".into()],
            env: vec!["PATH=/usr/bin:/bin".into()],
            cwd: "/".into(),
            uid: 0,
            gid: 0,
            additional_gids: vec![],
            hostname: crate::process::SANDBOX_HOSTNAME.into(),
            rootfs: rootfs.to_path_buf(),
            mounts: vec![],
            network: Network::Isolated,
            limits: Default::default(),
            privileged: false,
            rlimits: vec![],
            devices: vec![],
        }
    }

    fn spec_of(p: &Process, netns: Option<&Path>) -> Spec {
        crate::spec::config(p, None, netns).unwrap()
    }

    fn plan_of(spec: &Spec, host: Host) -> Result<Plan, SandboxError> {
        let report = OwnedFd::from(std::fs::File::open("/dev/null").unwrap());
        Plan::for_host(spec, &[], report, host)
    }

    fn text(c: &CString) -> String {
        c.to_str().unwrap().to_string()
    }

    /// One mount step as the tables spell it: the target relative to the rootfs, then what mount(2) gets.
    #[derive(Debug, PartialEq)]
    struct Row {
        target: String,
        source: Option<String>,
        fstype: Option<&'static str>,
        flags: libc::c_ulong,
        remount: Option<libc::c_ulong>,
        data: Option<&'static str>,
        file: bool,
        propagation: libc::c_ulong,
    }

    fn row(
        target: &str,
        source: Option<&str>,
        fstype: Option<&'static str>,
        flags: libc::c_ulong,
    ) -> Row {
        Row {
            target: target.to_string(),
            source: source.map(str::to_string),
            fstype,
            flags,
            remount: None,
            data: None,
            file: false,
            propagation: 0,
        }
    }

    fn rows(plan: &Plan, root: &Path) -> Vec<Row> {
        let known = |s: Option<String>| -> Option<&'static str> {
            let s = s?;
            ["proc", "tmpfs", "devpts", "mqueue", "sysfs"]
                .into_iter()
                .find(|k| *k == s)
                .or_else(|| {
                    ["mode=755,size=65536k", "mode=1777,size=65536k", "size=1024"]
                        .into_iter()
                        .chain([
                            "newinstance,ptmxmode=0666,mode=0620,gid=5",
                            "newinstance,ptmxmode=0666,mode=0620",
                        ])
                        .find(|k| *k == s)
                })
                .or(Some("?"))
        };
        plan.steps
            .iter()
            .filter_map(|s| match s {
                Step::Mount {
                    target,
                    file,
                    source,
                    fstype,
                    flags,
                    data,
                    remount,
                    propagation,
                } => {
                    let last = PathBuf::from(text(target.last().unwrap()));
                    Some(Row {
                        target: format!("/{}", last.strip_prefix(root).unwrap().display()),
                        source: source.as_ref().map(text),
                        fstype: known(fstype.as_ref().map(text)),
                        flags: *flags,
                        remount: *remount,
                        data: known(data.as_ref().map(text)),
                        file: *file,
                        propagation: *propagation,
                    })
                }
                Step::Symlink { .. } => None,
            })
            .collect()
    }

    #[test]
    fn mounts_table() {
        use libc::{
            MS_BIND, MS_NODEV, MS_NOEXEC, MS_NOSUID, MS_PRIVATE, MS_RDONLY, MS_REC, MS_STRICTATIME,
        };
        let root = tempfile::tempdir().unwrap();
        let r = root.path();
        // A symlink in the image: the mount below it lands where it points, inside the rootfs.
        std::fs::create_dir_all(r.join("var/run")).unwrap();
        std::os::unix::fs::symlink("/var/run", r.join("run")).unwrap();
        let host = tempfile::tempdir().unwrap();
        let secret = host.path().join("secret");
        std::fs::write(&secret, "x").unwrap();
        let mut p = process(r);
        p.mounts = vec![
            Mount::Bind {
                source: secret.clone(),
                target: "/run/secrets/token".into(),
                readonly: true,
            },
            Mount::Bind {
                source: host.path().to_path_buf(),
                target: "/src/./a/../b".into(),
                readonly: false,
            },
            Mount::Tmpfs {
                target: "/tmp".into(),
                size: Some(1024),
            },
        ];
        let plan = plan_of(&spec_of(&p, None), ROOTFUL).unwrap();
        let host_dir = host.path().to_str().unwrap();
        let mut expected = vec![
            row(
                "/proc",
                Some("proc"),
                Some("proc"),
                MS_NOSUID | MS_NOEXEC | MS_NODEV,
            ),
            Row {
                data: Some("mode=755,size=65536k"),
                ..row(
                    "/dev",
                    Some("tmpfs"),
                    Some("tmpfs"),
                    MS_NOSUID | MS_STRICTATIME | MS_NODEV,
                )
            },
            Row {
                data: Some("newinstance,ptmxmode=0666,mode=0620,gid=5"),
                ..row(
                    "/dev/pts",
                    Some("devpts"),
                    Some("devpts"),
                    MS_NOSUID | MS_NOEXEC,
                )
            },
            Row {
                data: Some("mode=1777,size=65536k"),
                ..row(
                    "/dev/shm",
                    Some("shm"),
                    Some("tmpfs"),
                    MS_NOSUID | MS_NOEXEC | MS_NODEV,
                )
            },
            row(
                "/dev/mqueue",
                Some("mqueue"),
                Some("mqueue"),
                MS_NOSUID | MS_NOEXEC | MS_NODEV,
            ),
            row(
                "/sys",
                Some("sysfs"),
                Some("sysfs"),
                MS_NOSUID | MS_NOEXEC | MS_NODEV | MS_RDONLY,
            ),
            Row {
                remount: Some(MS_RDONLY | MS_NODEV),
                file: true,
                propagation: MS_PRIVATE | MS_REC,
                ..row(
                    "/var/run/secrets/token",
                    secret.to_str(),
                    None,
                    MS_BIND | MS_REC,
                )
            },
            Row {
                remount: Some(MS_NODEV),
                propagation: MS_PRIVATE | MS_REC,
                ..row("/src/b", Some(host_dir), None, MS_BIND | MS_REC)
            },
            Row {
                data: Some("size=1024"),
                ..row("/tmp", Some("tmpfs"), Some("tmpfs"), MS_NOSUID | MS_NODEV)
            },
        ];
        for d in ["null", "zero", "full", "random", "urandom", "tty"] {
            // The host's nodes, bound read-only (metadata changes would reach the host's inodes), keeping the
            // flags the host's /dev mount already has (a user namespace may not drop them).
            let host = rustix::fs::statvfs(format!("/dev/{d}").as_str())
                .map_or(rustix::fs::StatVfsMountFlags::empty(), |v| v.f_flag);
            let kept = [
                (rustix::fs::StatVfsMountFlags::NODEV, libc::MS_NODEV),
                (rustix::fs::StatVfsMountFlags::NOATIME, libc::MS_NOATIME),
                (
                    rustix::fs::StatVfsMountFlags::NODIRATIME,
                    libc::MS_NODIRATIME,
                ),
            ]
            .into_iter()
            .filter(|(has, _)| host.contains(*has))
            .fold(0, |acc, (_, flag)| acc | flag);
            expected.push(Row {
                file: true,
                remount: Some(libc::MS_RDONLY | libc::MS_NOSUID | libc::MS_NOEXEC | kept),
                ..row(
                    &format!("/dev/{d}"),
                    Some(&format!("/dev/{d}")),
                    None,
                    MS_BIND,
                )
            });
        }
        let got = rows(&plan, r);
        assert_eq!(got.len(), expected.len(), "{got:#?}");
        for (g, e) in got.iter().zip(&expected) {
            assert_eq!(g, e);
        }
        let links: Vec<(String, String)> = plan
            .steps
            .iter()
            .filter_map(|s| match s {
                Step::Symlink { target, link } => Some((text(link), text(target))),
                Step::Mount { .. } => None,
            })
            .collect();
        let dev = r.join("dev");
        let want: Vec<(String, String)> = DEV_LINKS
            .iter()
            .map(|(name, target)| (dev.join(name).display().to_string(), target.to_string()))
            .collect();
        assert_eq!(links, want);
        // Every mount target is made from the rootfs down, one path at a time.
        let Step::Mount { target, .. } = &plan.steps[6] else {
            panic!("the secret's bind is the seventh step")
        };
        let chain: Vec<String> = target.iter().map(text).collect();
        let base = r.display();
        assert_eq!(
            chain,
            [
                format!("{base}/var"),
                format!("{base}/var/run"),
                format!("{base}/var/run/secrets"),
                format!("{base}/var/run/secrets/token"),
            ]
        );
    }

    #[test]
    fn masks_readonly_paths_and_seccomp_table() {
        let root = tempfile::tempdir().unwrap();
        // (privileged, masked paths, read-only paths, has a seccomp filter, /sys writable)
        type Case = (
            bool,
            &'static [&'static str],
            &'static [&'static str],
            bool,
            bool,
        );
        let table: [Case; 2] = [
            (false, &MASKED_PATHS, &READONLY_PATHS, true, false),
            (true, &[], &[], false, true),
        ];
        for (privileged, masked, readonly, filtered, sys_rw) in table {
            let mut p = process(root.path());
            p.privileged = privileged;
            let plan = plan_of(&spec_of(&p, None), ROOTFUL).unwrap();
            let names = |v: &[CString]| v.iter().map(text).collect::<Vec<_>>();
            assert_eq!(names(&plan.masked), masked, "privileged={privileged}");
            assert_eq!(names(&plan.readonly), readonly, "privileged={privileged}");
            assert_eq!(
                !plan.seccomp.is_empty(),
                filtered,
                "privileged={privileged}"
            );
            assert!(plan.no_new_privs, "privileged={privileged}");
            let sys = rows(&plan, root.path())
                .into_iter()
                .find(|m| m.target == "/sys")
                .unwrap();
            assert_eq!(
                sys.flags & libc::MS_RDONLY == 0,
                sys_rw,
                "privileged={privileged}"
            );
        }
    }

    #[test]
    fn capabilities_table() {
        let root = tempfile::tempdir().unwrap();
        let mask = |names: &[&str]| {
            names
                .iter()
                .map(|n| 1u64 << capability_number(n).unwrap())
                .fold(0, |a, b| a | b)
        };
        let default = mask(&DEFAULT_CAPABILITIES);
        assert_eq!(default.count_ones(), 14);
        let own = crate::spec::own_bounding_set() & ((1u64 << 41) - 1);
        // (privileged, the kernel's last capability, the step's sets)
        let table = [(false, 40, default), (false, 37, default), (true, 40, own)];
        for (privileged, last_cap, want) in table {
            let mut p = process(root.path());
            p.privileged = privileged;
            let host = Host {
                last_cap,
                ..ROOTFUL
            };
            let plan = plan_of(&spec_of(&p, None), host).unwrap();
            let what = format!("privileged={privileged} last_cap={last_cap}");
            assert_eq!(plan.caps.effective, want, "{what}");
            assert_eq!(plan.caps.permitted, want, "{what}");
            assert_eq!(plan.caps.inheritable, 0, "{what}");
            let dropped: Vec<libc::c_ulong> = (0..=last_cap)
                .filter(|n| want & (1 << n) == 0)
                .map(libc::c_ulong::from)
                .collect();
            assert_eq!(plan.drop_bounding, dropped, "{what}");
        }
        assert_eq!(capability_number("CAP_NOPE"), None);
    }

    #[test]
    fn user_groups_cwd_and_command_table() {
        let root = tempfile::tempdir().unwrap();
        struct Case {
            uid: u32,
            gid: u32,
            groups: Vec<u32>,
            cwd: &'static str,
            args: &'static [&'static str],
            env: &'static [&'static str],
            want_cwd: &'static [&'static str],
            want_exec: &'static [&'static str],
        }
        let table = [
            Case {
                uid: 0,
                gid: 0,
                groups: vec![],
                cwd: "/",
                args: &["sh", "-c", "true"],
                env: &["PATH=/usr/bin:/bin"],
                want_cwd: &["/"],
                want_exec: &["/usr/bin/sh", "/bin/sh"],
            },
            Case {
                uid: 1000,
                gid: 1000,
                groups: vec![1000, 27],
                cwd: "/a/./b/../c",
                args: &["/bin/true"],
                env: &[],
                want_cwd: &["/a", "/a/c"],
                want_exec: &["/bin/true"],
            },
            Case {
                uid: 65534,
                gid: 65534,
                groups: vec![65534],
                cwd: "/build/",
                args: &["make", "all"],
                env: &["A=1", "PATH=:/opt/bin/"],
                want_cwd: &["/build"],
                want_exec: &["./make", "/opt/bin/make"],
            },
            Case {
                uid: 0,
                gid: 0,
                groups: vec![],
                cwd: "/",
                args: &["ls"],
                env: &[],
                want_cwd: &["/"],
                want_exec: &[
                    "/usr/local/sbin/ls",
                    "/usr/local/bin/ls",
                    "/usr/sbin/ls",
                    "/usr/bin/ls",
                    "/sbin/ls",
                    "/bin/ls",
                ],
            },
        ];
        for c in table {
            let mut p = process(root.path());
            p.uid = c.uid;
            p.gid = c.gid;
            p.additional_gids = c.groups.clone();
            p.cwd = c.cwd.into();
            p.args = c.args.iter().map(|s| s.to_string()).collect();
            p.env = c.env.iter().map(|s| s.to_string()).collect();
            let plan = plan_of(&spec_of(&p, None), ROOTFUL).unwrap();
            assert_eq!((plan.uid, plan.gid), (c.uid, c.gid));
            assert_eq!(plan.groups, c.groups);
            assert_eq!(plan.cwd.iter().map(text).collect::<Vec<_>>(), c.want_cwd);
            assert_eq!(plan.exec.iter().map(text).collect::<Vec<_>>(), c.want_exec);
            assert_eq!(plan.argv.iter().map(text).collect::<Vec<_>>(), c.args);
            assert_eq!(plan.envp.iter().map(text).collect::<Vec<_>>(), c.env);
            // NULL-terminated pointer arrays into the owned strings.
            assert_eq!(plan.argv_ptrs.len(), c.args.len() + 1);
            assert!(plan.argv_ptrs.last().unwrap().is_null());
            assert_eq!(plan.argv_ptrs[0], plan.argv[0].as_ptr());
            assert_eq!(plan.envp_ptrs.len(), c.env.len() + 1);
            assert_eq!(
                plan.hostname.as_ref().map(text).as_deref(),
                Some("buildkitsandbox")
            );
            assert_eq!(plan.rlimits.len(), 1);
            assert_eq!(i64::from(plan.rlimits[0].0), libc::RLIMIT_NOFILE as i64);
        }
    }

    #[test]
    fn rootless_and_network_table() {
        use libc::{MS_BIND, MS_NODEV, MS_NOEXEC, MS_NOSUID, MS_RDONLY, MS_REC};
        let root = tempfile::tempdir().unwrap();
        let sysfs = row(
            "/sys",
            Some("sysfs"),
            Some("sysfs"),
            MS_NOSUID | MS_NOEXEC | MS_NODEV | MS_RDONLY,
        );
        let sys_bind = Row {
            remount: Some(MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC),
            ..row("/sys", Some("/sys"), None, MS_BIND | MS_REC)
        };
        let with_gid = Some("newinstance,ptmxmode=0666,mode=0620,gid=5");
        let without_gid = Some("newinstance,ptmxmode=0666,mode=0620");
        // (rootless, gid 5 mapped, network, /sys, devpts data, own network namespace)
        let table = [
            (false, true, Network::Host, &sysfs, with_gid, false),
            (false, false, Network::Isolated, &sysfs, with_gid, true),
            (true, true, Network::Host, &sys_bind, with_gid, false),
            (true, false, Network::Host, &sys_bind, without_gid, false),
            (true, false, Network::Isolated, &sysfs, without_gid, true),
            (true, true, Network::Outbound, &sysfs, with_gid, true),
        ];
        for (rootless, mapped, network, sys, devpts, own_net) in table {
            let mut p = process(root.path());
            p.network = network;
            let host = Host {
                rootless,
                gid_mapped: if mapped { all_mapped } else { none_mapped },
                ..ROOTFUL
            };
            let plan = plan_of(&spec_of(&p, None), host).unwrap();
            let what = format!("rootless={rootless} gid mapped={mapped} {network:?}");
            let rows = rows(&plan, root.path());
            assert_eq!(
                rows.iter().find(|m| m.target == "/sys"),
                Some(sys),
                "{what}"
            );
            let pts = rows.iter().find(|m| m.target == "/dev/pts").unwrap();
            assert_eq!(pts.data, devpts, "{what}");
            assert_eq!(plan.unshare & libc::CLONE_NEWNET != 0, own_net, "{what}");
            assert_eq!(plan.loopback, own_net, "{what}");
            assert!(plan.netns.is_none(), "{what}");
            let always =
                libc::CLONE_NEWNS | libc::CLONE_NEWPID | libc::CLONE_NEWUTS | libc::CLONE_NEWIPC;
            assert_eq!(plan.unshare & always, always, "{what}");
        }
        // A network namespace made beforehand is joined, not unshared, and brings its own loopback.
        let mut p = process(root.path());
        p.network = Network::Outbound;
        let plan = plan_of(&spec_of(&p, Some(Path::new("/proc/self/ns/net"))), ROOTFUL).unwrap();
        assert!(plan.netns.is_some());
        assert_eq!(plan.unshare & libc::CLONE_NEWNET, 0);
        assert!(!plan.loopback);
    }

    #[test]
    fn specs_the_builtin_runtime_cannot_run_are_refused() {
        let root = tempfile::tempdir().unwrap();
        let base = serde_json::to_value(spec_of(&process(root.path()), None)).unwrap();
        type Edit = fn(&mut serde_json::Value);
        let edited = |edit: Edit| {
            let mut v = base.clone();
            edit(&mut v);
            let spec: Spec = serde_json::from_value(v).unwrap();
            match plan_of(&spec, ROOTFUL) {
                Ok(_) => String::from("accepted"),
                Err(e) => e.to_string(),
            }
        };
        let table: [(&str, Edit); 4] = [
            ("the built-in runtime needs a mount namespace", |v| {
                v["linux"]["namespaces"] = serde_json::json!([{"type": "pid"}])
            }),
            (
                "the User namespace is not supported by the built-in runtime",
                |v| {
                    v["linux"]["namespaces"] =
                        serde_json::json!([{"type": "mount"}, {"type": "user"}])
                },
            ),
            (
                "joining /proc/self/ns/uts is not supported by the built-in runtime",
                |v| v["linux"]["namespaces"] = serde_json::json!([{"type": "mount"}, {"type": "uts", "path": "/proc/self/ns/uts"}]),
            ),
            ("the spec has no command", |v| {
                v["process"]["args"] = serde_json::json!([])
            }),
        ];
        for (want, edit) in table {
            assert_eq!(edited(edit), want);
        }
    }
}
