//! The OCI runtime spec of a build step: Docker's default sandbox (namespaces, default capabilities, masked and
//! read-only /proc paths, a minimal /dev, read-only /sys, no_new_privs, a seccomp filter). Both runtimes run
//! from this one description: runc reads it as config.json, the built-in runtime ([`crate::sandbox`]) interprets
//! it field by field, so the sandbox is defined once.

use oci_spec::runtime::Spec;
use serde_json::{json, Value};

use std::path::Path;

use crate::process::{Mount, Network, Process};

/// The spec could not be formed (a value kiln put in it does not fit the OCI types).
#[derive(Debug, thiserror::Error)]
#[error("the OCI runtime spec of the step is invalid: {0}")]
pub struct SpecError(#[from] serde_json::Error);

/// Docker's default capability set: what a RUN may do as root inside its sandbox.
pub const DEFAULT_CAPABILITIES: [&str; 14] = [
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_FSETID",
    "CAP_FOWNER",
    "CAP_MKNOD",
    "CAP_NET_RAW",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETFCAP",
    "CAP_SETPCAP",
    "CAP_NET_BIND_SERVICE",
    "CAP_SYS_CHROOT",
    "CAP_KILL",
    "CAP_AUDIT_WRITE",
];

/// Every capability the kernel knows (to 6.x), for privileged steps.
pub const ALL_CAPABILITIES: [&str; 41] = [
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_DAC_READ_SEARCH",
    "CAP_FOWNER",
    "CAP_FSETID",
    "CAP_KILL",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETPCAP",
    "CAP_LINUX_IMMUTABLE",
    "CAP_NET_BIND_SERVICE",
    "CAP_NET_BROADCAST",
    "CAP_NET_ADMIN",
    "CAP_NET_RAW",
    "CAP_IPC_LOCK",
    "CAP_IPC_OWNER",
    "CAP_SYS_MODULE",
    "CAP_SYS_RAWIO",
    "CAP_SYS_CHROOT",
    "CAP_SYS_PTRACE",
    "CAP_SYS_PACCT",
    "CAP_SYS_ADMIN",
    "CAP_SYS_BOOT",
    "CAP_SYS_NICE",
    "CAP_SYS_RESOURCE",
    "CAP_SYS_TIME",
    "CAP_SYS_TTY_CONFIG",
    "CAP_MKNOD",
    "CAP_LEASE",
    "CAP_AUDIT_WRITE",
    "CAP_AUDIT_CONTROL",
    "CAP_SETFCAP",
    "CAP_MAC_OVERRIDE",
    "CAP_MAC_ADMIN",
    "CAP_SYSLOG",
    "CAP_WAKE_ALARM",
    "CAP_BLOCK_SUSPEND",
    "CAP_AUDIT_READ",
    "CAP_PERFMON",
    "CAP_BPF",
    "CAP_CHECKPOINT_RESTORE",
];

/// kiln's own capability bounding set (`CapBnd` of /proc/self/status); all bits when it cannot be read.
pub fn own_bounding_set() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|t| {
            t.lines()
                .find_map(|l| l.strip_prefix("CapBnd:"))
                .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
        })
        .unwrap_or(u64::MAX)
}

/// /proc and /sys paths hidden from the process (runc's and Docker's defaults).
pub const MASKED_PATHS: [&str; 11] = [
    "/proc/asound",
    "/proc/acpi",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/proc/sched_debug",
    "/proc/scsi",
    "/sys/firmware",
    "/sys/devices/virtual/powercap",
];

/// /proc paths the process may read but not write.
pub const READONLY_PATHS: [&str; 5] = [
    "/proc/bus",
    "/proc/fs",
    "/proc/irq",
    "/proc/sys",
    "/proc/sysrq-trigger",
];

/// System calls a RUN step may never make: the ones Docker's default seccomp profile leaves out that matter on a
/// build host (kernel modules and kexec, keyrings, bpf and perf, reboot, swap, clock and time, mounts through the new
/// mount API, handle-based opens that bypass path checks, userfaultfd, io_uring (whose rings make I/O no filter sees;
/// Docker 25 denies it too), namespace creation and joining, obsolete
/// calls). kiln writes them as a deny list over an allow-by-default filter: shorter than Docker's allow list, and
/// a syscall added to the kernel later is not broken for builds. They fail with EPERM, as under Docker.
pub const DENIED_SYSCALLS: [&str; 43] = [
    "acct",
    "add_key",
    "adjtimex",
    "bpf",
    "clock_adjtime",
    "clock_settime",
    "create_module",
    "delete_module",
    "finit_module",
    "fsconfig",
    "fsmount",
    "fsopen",
    "fspick",
    "get_kernel_syms",
    "init_module",
    "ioperm",
    "io_uring_enter",
    "io_uring_register",
    "io_uring_setup",
    "iopl",
    "kexec_file_load",
    "kexec_load",
    "keyctl",
    "lookup_dcookie",
    "mount_setattr",
    "move_mount",
    "name_to_handle_at",
    "nfsservctl",
    "open_by_handle_at",
    "open_tree",
    "perf_event_open",
    "quotactl",
    "reboot",
    "request_key",
    "setns",
    "settimeofday",
    "stime",
    "swapoff",
    "swapon",
    "unshare",
    "uselib",
    "userfaultfd",
    "vm86",
];

/// The namespace flags of clone(2) (`CLONE_NEWNS | CLONE_NEWCGROUP | CLONE_NEWUTS | CLONE_NEWIPC | CLONE_NEWUSER |
/// CLONE_NEWPID | CLONE_NEWNET`): a clone asking for any of them is refused, as Docker's profile does for steps
/// without CAP_SYS_ADMIN, since the denied `unshare` would otherwise be one clone away.
pub const CLONE_NAMESPACE_FLAGS: u64 = 0x7E02_0000;

/// The personality(2) values Docker's profile allows: PER_LINUX, PER_LINUX32, each with UNAME26, and the query
/// 0xffffffff. Others (ADDR_NO_RANDOMIZE turns off ASLR, READ_IMPLIES_EXEC makes data executable) are denied.
pub const PERSONALITIES_ALLOWED: [u32; 5] = [0, 0x8, 0x2_0000, 0x2_0008, 0xffff_ffff];

/// `personality`'s denials as masked tests on its argument, each one comparison (libseccomp takes one test of an
/// argument per rule, and kiln's filter is a deny list): a value with bit 31 set and any other bit clear (bit 31
/// set is the query only when every bit is), and a value with bit 31 clear and any bit set that PER_LINUX32 and
/// UNAME26 (bits 3 and 17) do not name. What passes is exactly [`PERSONALITIES_ALLOWED`]. The kernel reads the
/// argument as 32 bits, so the upper half is not tested.
fn personality_denied() -> Vec<(u64, u64)> {
    const QUERY_BIT: u64 = 1 << 31;
    let allowed_bits: u64 = 0x2_0008;
    let other_bits = (0..31).map(|b| 1u64 << b);
    other_bits
        .clone()
        .map(|b| (QUERY_BIT | b, QUERY_BIT))
        .chain(
            other_bits
                .filter(|b| b & allowed_bits == 0)
                .map(|b| (QUERY_BIT | b, b)),
        )
        .collect()
}

fn seccomp() -> Value {
    let mut syscalls = vec![
        json!({"names": DENIED_SYSCALLS.as_slice(), "action": "SCMP_ACT_ERRNO", "errnoRet": 1}),
    ];
    // One rule per flag: a filter can test `arg & mask == value`, so "any of these bits" is seven tests.
    for bit in (0..32)
        .map(|b| 1u64 << b)
        .filter(|b| CLONE_NAMESPACE_FLAGS & b != 0)
    {
        syscalls.push(
            json!({"names": ["clone"], "action": "SCMP_ACT_ERRNO", "errnoRet": 1,
            "args": [{"index": 0, "value": bit, "valueTwo": bit, "op": "SCMP_CMP_MASKED_EQ"}]}),
        );
    }
    for (mask, value) in personality_denied() {
        syscalls.push(
            json!({"names": ["personality"], "action": "SCMP_ACT_ERRNO", "errnoRet": 1,
            "args": [{"index": 0, "value": mask, "valueTwo": value, "op": "SCMP_CMP_MASKED_EQ"}]}),
        );
    }
    // clone3 passes its flags in memory a filter cannot read: ENOSYS makes libc fall back to clone.
    syscalls.push(json!({"names": ["clone3"], "action": "SCMP_ACT_ERRNO", "errnoRet": 38}));
    json!({
        "defaultAction": "SCMP_ACT_ALLOW",
        "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32", "SCMP_ARCH_AARCH64", "SCMP_ARCH_ARM"],
        "syscalls": syscalls
    })
}

/// The open-files limit a step gets: Docker's 1048576, or kiln's own hard limit when that is lower (a step
/// cannot be given more than its parent may).
fn nofile_limit() -> u64 {
    let own = std::fs::read_to_string("/proc/self/limits")
        .ok()
        .and_then(|t| {
            t.lines()
                .find(|l| l.starts_with("Max open files"))
                .and_then(|l| {
                    l.split_whitespace()
                        .nth(4)
                        .and_then(|h| h.parse::<u64>().ok())
                })
        });
    own.map_or(1_048_576, |h| h.min(1_048_576))
}

/// The annotation prefix (followed by the node's path inside the step) that names the host node a device of the
/// spec is bound from when that differs from its path (a CDI `hostPath`): the OCI device entry has no field for
/// it, and runc needs none (it makes the node from its numbers).
pub const DEVICE_SOURCE_ANNOTATION: &str = "org.kiln.device.source:";

/// Nodes of a minimal /dev that every step gets anyway (runc makes them itself).
const DEFAULT_DEVICES: [&str; 6] = ["null", "zero", "full", "random", "urandom", "tty"];

/// The host's device nodes under `dev` (and one level of sub-directories, for /dev/net/tun and the like), as
/// `linux.devices` entries: what a privileged step gets, as BuildKit's insecure mode gives it the host's devices.
/// The terminal and pseudo-terminal nodes are left out (a step has its own devpts and no console).
fn host_devices(dev: &Path) -> Vec<Value> {
    use std::os::unix::fs::{FileTypeExt, MetadataExt};
    let mut out = Vec::new();
    let mut dirs = vec![(dev.to_path_buf(), 0)];
    while let Some((dir, depth)) = dirs.pop() {
        for e in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
            let path = e.path();
            let name = e.file_name().to_string_lossy().into_owned();
            let Ok(m) = std::fs::symlink_metadata(&path) else {
                continue;
            };
            let t = m.file_type();
            if t.is_dir() && depth == 0 && !["pts", "shm", "mqueue", "fd"].contains(&name.as_str())
            {
                dirs.push((path, 1));
                continue;
            }
            let kind = if t.is_char_device() {
                "c"
            } else if t.is_block_device() {
                "b"
            } else {
                continue;
            };
            let skip = (depth == 0 && DEFAULT_DEVICES.contains(&name.as_str()))
                || name == "console"
                || name == "ptmx"
                || name.starts_with("tty");
            if skip {
                continue;
            }
            let rdev = m.rdev();
            let inside = Path::new("/dev").join(path.strip_prefix(dev).unwrap_or(&path));
            out.push(json!({
                "path": inside,
                "type": kind,
                "major": libc::major(rdev),
                "minor": libc::minor(rdev),
                "fileMode": m.mode() & 0o7777,
                "uid": m.uid(),
                "gid": m.gid(),
            }));
        }
    }
    out.sort_by(|a, b| a["path"].as_str().cmp(&b["path"].as_str()));
    out
}

/// The whole spec for one process; `cgroups_path` places it below kiln's own cgroup for the step, `netns` is the
/// network namespace made for it (`Network::Outbound`).
pub fn config(
    p: &Process,
    cgroups_path: Option<&str>,
    netns: Option<&Path>,
) -> Result<Spec, SpecError> {
    Ok(serde_json::from_value(config_json(p, cgroups_path, netns))?)
}

/// The spec as JSON, written the way the OCI runtime spec documents it (and checked against its types by
/// [`config`]).
fn config_json(p: &Process, cgroups_path: Option<&str>, netns: Option<&Path>) -> Value {
    let caps: Vec<&str> = if p.privileged {
        // Every capability kiln itself may pass on: a step cannot be given one outside kiln's bounding set.
        let own = own_bounding_set();
        ALL_CAPABILITIES
            .iter()
            .enumerate()
            .filter(|(bit, _)| own & (1u64 << bit) != 0)
            .map(|(_, name)| *name)
            .collect()
    } else {
        DEFAULT_CAPABILITIES.to_vec()
    };
    let mut namespaces = vec![
        json!({"type": "pid"}),
        json!({"type": "ipc"}),
        json!({"type": "uts"}),
        json!({"type": "mount"}),
    ];
    match (p.network, netns) {
        (Network::Host, _) => {}
        (_, Some(path)) => namespaces.push(json!({"type": "network", "path": path})),
        (_, None) => namespaces.push(json!({"type": "network"})),
    }
    let mut mounts = vec![
        json!({"destination": "/proc", "type": "proc", "source": "proc", "options": ["nosuid", "noexec", "nodev"]}),
        json!({"destination": "/dev", "type": "tmpfs", "source": "tmpfs", "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]}),
        json!({"destination": "/dev/pts", "type": "devpts", "source": "devpts", "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"]}),
        json!({"destination": "/dev/shm", "type": "tmpfs", "source": "shm", "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"]}),
        json!({"destination": "/dev/mqueue", "type": "mqueue", "source": "mqueue", "options": ["nosuid", "noexec", "nodev"]}),
        json!({"destination": "/sys", "type": "sysfs", "source": "sysfs",
               "options": ["nosuid", "noexec", "nodev", if p.privileged { "rw" } else { "ro" }]}),
    ];
    // A step's own mount at a default one's place replaces it (BuildKit's dedupMounts): `--shm-size`'s tmpfs at
    // /dev/shm.
    mounts.retain(|d| {
        !p.mounts.iter().any(|m| match m {
            Mount::Bind { target, .. } | Mount::Tmpfs { target, .. } => {
                d["destination"].as_str() == Some(target.as_str())
            }
        })
    });
    for m in &p.mounts {
        mounts.push(match m {
            Mount::Bind {
                source,
                target,
                readonly,
            } => {
                let mut opts = vec!["rbind", "rprivate"];
                if *readonly {
                    opts.push("ro");
                }
                json!({"destination": target, "type": "bind", "source": source, "options": opts})
            }
            Mount::Tmpfs { target, size } => {
                let mut opts = vec!["nosuid".to_string(), "nodev".to_string()];
                if let Some(s) = size {
                    opts.push(format!("size={s}"));
                }
                json!({"destination": target, "type": "tmpfs", "source": "tmpfs", "options": opts})
            }
        });
    }
    let mut resources = json!({"devices": [{"allow": false, "access": "rwm"}]});
    if let Some(n) = p.limits.pids {
        resources["pids"] = json!({"limit": n});
    }
    if let Some(c) = p.limits.cpus {
        let period: u64 = 100_000;
        resources["cpu"] = json!({"quota": (c * period as f64).round() as i64, "period": period});
    }
    let mut linux = json!({
        "namespaces": namespaces,
        "maskedPaths": MASKED_PATHS,
        "readonlyPaths": READONLY_PATHS,
        "resources": resources,
        "seccomp": seccomp(),
    });
    if p.privileged {
        linux["maskedPaths"] = json!([]);
        linux["readonlyPaths"] = json!([]);
        linux["devices"] = json!(host_devices(Path::new("/dev")));
        linux["resources"]["devices"] = json!([{"allow": true, "access": "rwm"}]);
        if let Some(l) = linux.as_object_mut() {
            l.remove("seccomp");
        }
    }
    // CDI device nodes: made by runc from their numbers, allowed in the device cgroup; the built-in runtime binds
    // the host's node, which it finds through the annotation when the host's path differs.
    let mut annotations = serde_json::Map::new();
    if !p.devices.is_empty() {
        let mut listed: Vec<Value> = linux["devices"].as_array().cloned().unwrap_or_default();
        for d in &p.devices {
            listed.retain(|x| x["path"].as_str() != Some(d.path.as_str()));
            let mut entry =
                json!({"path": d.path, "type": d.kind, "major": d.major, "minor": d.minor});
            if let Some(m) = d.file_mode {
                entry["fileMode"] = json!(m);
            }
            if let Some(u) = d.uid {
                entry["uid"] = json!(u);
            }
            if let Some(g) = d.gid {
                entry["gid"] = json!(g);
            }
            listed.push(entry);
            if d.kind == "b" || d.kind == "c" {
                if let Some(rules) = linux["resources"]["devices"].as_array_mut() {
                    rules.push(json!({"allow": true, "type": d.kind, "major": d.major, "minor": d.minor, "access": d.permissions}));
                }
            }
            if d.host_path != Path::new(&d.path) {
                annotations.insert(
                    format!("{DEVICE_SOURCE_ANNOTATION}{}", d.path),
                    json!(d.host_path),
                );
            }
        }
        linux["devices"] = json!(listed);
    }
    if let Some(path) = cgroups_path {
        linux["cgroupsPath"] = json!(path);
    }
    let mut rlimits =
        vec![json!({"type": "RLIMIT_NOFILE", "hard": nofile_limit(), "soft": nofile_limit()})];
    for r in &p.rlimits {
        rlimits.retain(|x| x["type"].as_str() != Some(r.resource.as_str()));
        rlimits.push(json!({"type": r.resource, "hard": r.hard, "soft": r.soft}));
    }
    json!({
        "ociVersion": "1.0.2",
        "process": {
            "terminal": false,
            "user": {"uid": p.uid, "gid": p.gid, "additionalGids": p.additional_gids},
            "args": p.args,
            "env": p.env,
            "cwd": p.cwd,
            "capabilities": {"bounding": caps, "effective": caps, "permitted": caps},
            "rlimits": rlimits,
            "noNewPrivileges": true
        },
        "root": {"path": p.rootfs, "readonly": false},
        "hostname": p.hostname,
        "mounts": mounts,
        "linux": linux,
        "annotations": annotations
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::process::{DeviceNode, Rlimit};

    #[test]
    fn ulimits_devices_and_a_sized_shm_land_in_the_spec() {
        let mut p = Process {
            args: vec!["true".into()],
            env: vec![],
            cwd: "/".into(),
            uid: 0,
            gid: 0,
            additional_gids: vec![],
            hostname: "h".into(),
            rootfs: "/tmp/rootfs".into(),
            mounts: vec![Mount::Tmpfs {
                target: "/dev/shm".into(),
                size: Some(128 << 20),
            }],
            network: Network::Isolated,
            limits: Default::default(),
            privileged: false,
            rlimits: vec![
                Rlimit {
                    resource: "RLIMIT_NOFILE".into(),
                    soft: 1024,
                    hard: 2048,
                },
                Rlimit {
                    resource: "RLIMIT_NPROC".into(),
                    soft: 300,
                    hard: 300,
                },
            ],
            devices: vec![DeviceNode {
                path: "/dev/fake0".into(),
                host_path: "/dev/null".into(),
                kind: "c".into(),
                major: 1,
                minor: 3,
                file_mode: Some(0o666),
                permissions: "rw".into(),
                uid: None,
                gid: None,
            }],
        };
        let spec = config_json(&p, None, None);
        assert_eq!(
            spec["process"]["rlimits"],
            json!([{"type": "RLIMIT_NOFILE", "hard": 2048, "soft": 1024},
                   {"type": "RLIMIT_NPROC", "hard": 300, "soft": 300}]),
            "a --ulimit replaces the default of its resource"
        );
        let shm: Vec<&Value> = spec["mounts"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|m| m["destination"] == "/dev/shm")
            .collect();
        assert_eq!(shm.len(), 1, "the step's /dev/shm replaces the default one");
        assert_eq!(
            shm[0]["options"],
            json!(["nosuid", "nodev", "size=134217728"])
        );
        assert_eq!(
            spec["linux"]["devices"],
            json!([{"path": "/dev/fake0", "type": "c", "major": 1, "minor": 3, "fileMode": 0o666}])
        );
        assert_eq!(
            spec["linux"]["resources"]["devices"][1],
            json!({"allow": true, "type": "c", "major": 1, "minor": 3, "access": "rw"})
        );
        assert_eq!(
            spec["annotations"][format!("{DEVICE_SOURCE_ANNOTATION}/dev/fake0")],
            "/dev/null"
        );
        assert!(
            config(&p, None, None).is_ok(),
            "the spec fits the OCI types"
        );
        p.rlimits.clear();
        p.devices.clear();
        let spec = config_json(&p, None, None);
        assert_eq!(spec["process"]["rlimits"].as_array().unwrap().len(), 1);
        assert!(spec["linux"].get("devices").is_none());
    }
}
