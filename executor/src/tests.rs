//! Both runtimes running real steps in a busybox rootfs (needs root, runc and busybox-static, which `.ci/run`
//! installs). Every check is written once and run under the built-in runtime and under runc.

use std::path::Path;
use std::sync::Mutex;

use crate::process::{Mount, Network, Outcome, Process};
use crate::runtime::Runtime;

type Make = fn(&Path) -> Runtime;

fn builtin(work: &Path) -> Runtime {
    Runtime::named(crate::runtime::BUILTIN, work)
}

fn runc(work: &Path) -> Runtime {
    Runtime::named("runc", work)
}

fn run(rt: &Runtime, p: &Process) -> Outcome {
    rt.run(p, &|_| {}, &|| false).unwrap()
}

fn busybox_rootfs(dir: &Path) {
    let bin = dir.join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    std::fs::copy("/bin/busybox", bin.join("busybox")).expect("busybox-static is installed");
    for tool in [
        "sh", "cat", "echo", "id", "hostname", "ls", "mount", "grep", "touch", "ip", "unshare",
        "swapoff", "head", "tr", "wc", "pgrep", "mknod", "dd", "sleep", "true", "wget", "nc",
        "kill", "ps", "linux32", "uname",
    ] {
        std::os::unix::fs::symlink("busybox", bin.join(tool)).unwrap();
    }
    for d in ["proc", "sys", "dev", "etc", "tmp"] {
        std::fs::create_dir_all(dir.join(d)).unwrap();
    }
}

/// A work directory holding a busybox rootfs, and that rootfs.
fn sandbox_dir() -> (tempfile::TempDir, std::path::PathBuf) {
    let work = tempfile::tempdir().unwrap();
    let rootfs = work.path().join("rootfs");
    busybox_rootfs(&rootfs);
    (work, rootfs)
}

fn process(rootfs: &Path, cmd: &str) -> Process {
    Process {
        args: vec!["/bin/sh".into(), "-c".into(), cmd.into()],
        env: vec!["PATH=/bin".into()],
        cwd: "/".into(),
        uid: 0,
        gid: 0,
        additional_gids: vec![],
        hostname: "kiln-test".into(),
        rootfs: rootfs.to_path_buf(),
        mounts: vec![],
        network: Network::Isolated,
        limits: Default::default(),
        privileged: false,
        rlimits: vec![],
        devices: vec![],
    }
}

fn runs_in_a_sandbox_and_reports_exit_codes(make: Make) {
    let _turn = shared_turn();
    let (work, rootfs) = sandbox_dir();
    let runc = make(work.path());
    let seen = Mutex::new(Vec::new());
    let out = runc
        .run(
            &process(&rootfs, "hostname; echo hi > /tmp/x; cat /tmp/x; grep -E 'CapEff|NoNewPrivs|Seccomp:' /proc/self/status; ls /proc | grep -cE '^[0-9]+$'"),
            &|l| seen.lock().unwrap().push(l.to_string()),
            &|| false,
        )
        .unwrap();
    assert_eq!(out.exit_code, 0, "{:?}", out.output);
    assert_eq!(out.output[0], "kiln-test");
    assert_eq!(out.output[1], "hi");
    assert!(
        out.output
            .iter()
            .any(|l| l.contains("CapEff:") && l.ends_with("00000000a80425fb")),
        "{:?}",
        out.output
    );
    assert!(out
        .output
        .iter()
        .any(|l| l.starts_with("NoNewPrivs:") && l.ends_with('1')));
    assert!(
        out.output
            .iter()
            .any(|l| l.starts_with("Seccomp:") && l.ends_with('2')),
        "a seccomp filter is in force: {:?}",
        out.output
    );
    assert!(
        out.output
            .last()
            .and_then(|n| n.parse::<u32>().ok())
            .is_some_and(|n| n <= 3),
        "only the step's own processes are visible: {:?}",
        out.output
    );
    assert_eq!(
        std::fs::read_to_string(rootfs.join("tmp/x")).unwrap(),
        "hi\n",
        "writes land in the rootfs"
    );
    assert_eq!(seen.lock().unwrap().len(), out.output.len());

    let fail = run(&runc, &process(&rootfs, "echo bye; exit 7"));
    assert_eq!(fail.exit_code, 7);
    let denied = run(&runc, &process(&rootfs, "mount -t tmpfs none /tmp"));
    assert_ne!(denied.exit_code, 0, "mounting is not allowed");
    let net = run(
        &runc,
        &process(
            &rootfs,
            "ls /sys/class/net; cat /sys/class/net/lo/operstate",
        ),
    );
    assert_eq!(net.output[0], "lo", "an isolated step has loopback only");
    assert_eq!(net.output.len(), 2, "{:?}", net.output);
    assert!(
        std::fs::read_dir(work.path().join("bundles"))
            .map(|mut d| d.next().is_none())
            .unwrap_or(true),
        "bundles are removed"
    );
}

fn bind_and_tmpfs_mounts(make: Make) {
    let _turn = shared_turn();
    let (work, rootfs) = sandbox_dir();
    let host = work.path().join("host");
    std::fs::create_dir_all(&host).unwrap();
    std::fs::write(host.join("data"), "from host\n").unwrap();
    let mut p = process(
        &rootfs,
        "cat /src/data; touch /src/new 2>/dev/null || echo ro; touch /scratch/ok && echo tmpfs",
    );
    p.mounts = vec![
        Mount::Bind {
            source: host.clone(),
            target: "/src".into(),
            readonly: true,
        },
        Mount::Tmpfs {
            target: "/scratch".into(),
            size: Some(1 << 20),
        },
    ];
    let out = run(&make(work.path()), &p);
    assert_eq!(out.output, ["from host", "ro", "tmpfs"]);
    assert!(!host.join("new").exists());
}

/// The cgroup tests look at the whole kiln tree, so they run alone (write); every other test's steps make
/// cgroups too, so they hold it shared (read) while they run.
static CGROUP_TESTS: std::sync::RwLock<()> = std::sync::RwLock::new(());

fn shared_turn() -> std::sync::RwLockReadGuard<'static, ()> {
    CGROUP_TESTS.read().unwrap_or_else(|p| p.into_inner())
}

fn no_kiln_cgroups_left() {
    for c in ["memory", "pids", "cpu"] {
        let dir = Path::new("/sys/fs/cgroup").join(c).join("kiln");
        let left: Vec<_> = std::fs::read_dir(&dir)
            .map(|d| {
                d.flatten()
                    .filter(|e| e.path().is_dir())
                    .map(|e| e.file_name())
                    .collect()
            })
            .unwrap_or_default();
        assert!(left.is_empty(), "{c}: cgroups left behind: {left:?}");
    }
}

fn a_memory_hog_is_oom_killed_and_reported_as_such(make: Make) {
    let _turn = CGROUP_TESTS.write().unwrap_or_else(|p| p.into_inner());
    let (work, rootfs) = sandbox_dir();
    let runc = make(work.path());
    // 200 MiB into a shell variable, under a 64 MiB limit.
    let mut p = process(
        &rootfs,
        "x=$(head -c 209715200 /dev/zero | tr '\\0' a); echo ${#x}",
    );
    p.limits.memory = Some(64 << 20);
    let o = run(&runc, &p);
    assert_ne!(o.exit_code, 0, "{o:?}");
    assert!(o.oom_killed, "{o:?}");
    // The same step without a limit is not reported as OOM.
    let mut small = process(&rootfs, "exit 3");
    small.limits.memory = Some(64 << 20);
    let o = run(&runc, &small);
    assert_eq!((o.exit_code, o.oom_killed), (3, false));
    no_kiln_cgroups_left();
}

fn a_fork_bomb_stops_at_the_pids_limit(make: Make) {
    let _turn = CGROUP_TESTS.write().unwrap_or_else(|p| p.into_inner());
    let (work, rootfs) = sandbox_dir();
    let runc = make(work.path());
    let mut p = process(
        &rootfs,
        "i=0; while [ $i -lt 200 ]; do sleep 30 & i=$((i+1)); done; echo started all",
    );
    p.limits.pids = Some(32);
    let lines = std::sync::Mutex::new(Vec::new());
    let o = runc
        .run(&p, &|l| lines.lock().unwrap().push(l.to_string()), &|| {
            false
        })
        .unwrap();
    let out = lines.into_inner().unwrap().join("\n");
    assert!(!out.contains("started all"), "{out}");
    assert_ne!(o.exit_code, 0, "{out}");
    no_kiln_cgroups_left();
}

#[test]
fn cpu_and_pids_limits_reach_the_spec() {
    let mut p = process(Path::new("/r"), "true");
    p.limits.cpus = Some(1.5);
    p.limits.pids = Some(10);
    let cfg =
        serde_json::to_value(crate::spec::config(&p, Some("/kiln/x/step"), None).unwrap()).unwrap();
    assert_eq!(cfg["linux"]["resources"]["cpu"]["quota"], 150_000);
    assert_eq!(cfg["linux"]["resources"]["pids"]["limit"], 10);
    assert_eq!(cfg["linux"]["cgroupsPath"], "/kiln/x/step");
}

fn denied_syscalls_fail_with_eperm(make: Make) {
    let _turn = shared_turn();
    let (work, rootfs) = sandbox_dir();
    let runc = make(work.path());
    // A user namespace needs no capability, so only the seccomp filter refuses `unshare -U`; swapoff is refused
    // twice over (no CAP_SYS_ADMIN, and denied).
    let o = run(
        &runc,
        &process(
            &rootfs,
            "unshare -U true; echo unshare=$?; swapoff -a; echo swapoff=$?; linux32 uname -m",
        ),
    );
    let out = o.output.join("\n");
    // PER_LINUX32 is among the personalities Docker's profile allows (the rest are denied).
    assert!(o.output.iter().any(|l| l == "i686"), "{out}");
    assert!(out.contains("unshare=1"), "{out}");
    assert!(!out.contains("swapoff=0"), "{out}");
    assert!(out.contains("Operation not permitted"), "{out}");
}

fn users_groups_and_working_directory(make: Make) {
    let _turn = shared_turn();
    let (work, rootfs) = sandbox_dir();
    let mut p = process(
        &rootfs,
        "id -u; id -g; id -G; pwd; grep CapEff /proc/self/status; touch /etc/x 2>/dev/null || echo denied",
    );
    p.uid = 1000;
    p.gid = 1000;
    p.additional_gids = vec![27, 100];
    p.cwd = "/app/dir".into();
    let o = run(&make(work.path()), &p);
    assert_eq!(o.exit_code, 0, "{o:?}");
    assert_eq!(
        o.output,
        [
            "1000",
            "1000",
            "1000 27 100",
            "/app/dir",
            "CapEff:\t0000000000000000",
            "denied"
        ]
    );
    assert!(
        rootfs.join("app/dir").is_dir(),
        "the working directory is made"
    );
}

fn the_host_is_out_of_sight(make: Make) {
    let _turn = shared_turn();
    let (work, rootfs) = sandbox_dir();
    let o = run(
        &make(work.path()),
        &process(
            &rootfs,
            "cat /proc/keys /proc/timer_list 2>&1 | grep -c . ; \
             { echo 1 > /proc/sys/kernel/domainname; } 2>/dev/null || echo sys-ro; \
             { touch /sys/kernel/x; } 2>/dev/null || echo sysfs-ro; \
             hostname other 2>/dev/null || echo no-hostname; \
             ls /dev; ls -d /proc/1/root/bin",
        ),
    );
    let out = o.output.join("\n");
    assert!(
        o.output[0] == "0",
        "masked /proc files read as empty: {out}"
    );
    for want in [
        "sys-ro",
        "sysfs-ro",
        "no-hostname",
        "null",
        "urandom",
        "pts",
        "shm",
        "ptmx",
        "stdout",
        "/proc/1/root/bin",
    ] {
        assert!(o.output.iter().any(|l| l == want), "{want}: {out}");
    }
}

fn a_missing_command_is_an_error_that_names_it(make: Make) {
    let _turn = shared_turn();
    let (work, rootfs) = sandbox_dir();
    let mut p = process(&rootfs, "");
    p.args = vec!["no-such-tool".into(), "x".into()];
    match make(work.path()).run(&p, &|_| {}, &|| false) {
        Err(e) => assert!(e.to_string().contains("no-such-tool"), "{e}"),
        Ok(o) => {
            // runc reports it on stderr with a non-zero exit.
            assert_ne!(o.exit_code, 0);
            assert!(o.output.join("\n").contains("no-such-tool"), "{o:?}");
        }
    }
}

fn a_cancelled_step_is_killed_with_everything_it_started(make: Make) {
    let _turn = CGROUP_TESTS.write().unwrap_or_else(|p| p.into_inner());
    let (work, rootfs) = sandbox_dir();
    // A duration nothing else on the machine sleeps for, so only this step's sleepers match below.
    let mut p = process(&rootfs, "sleep 2718 & sleep 2718 & echo started; wait");
    p.limits.pids = Some(100);
    let started = std::sync::atomic::AtomicBool::new(false);
    let t0 = std::time::Instant::now();
    let o = make(work.path())
        .run(
            &p,
            &|l| {
                if l == "started" {
                    started.store(true, std::sync::atomic::Ordering::SeqCst)
                }
            },
            &|| started.load(std::sync::atomic::Ordering::SeqCst),
        )
        .unwrap();
    assert!(t0.elapsed() < std::time::Duration::from_secs(20), "{o:?}");
    assert_eq!(o.exit_code, 137, "{o:?}");
    let sleepers = std::process::Command::new("pgrep")
        .args(["-f", "^sleep 2718$"])
        .output()
        .unwrap();
    assert!(sleepers.stdout.is_empty(), "left running: {sleepers:?}");
    no_kiln_cgroups_left();
}

fn a_privileged_step_has_every_capability_and_no_filter(make: Make) {
    let _turn = shared_turn();
    let (work, rootfs) = sandbox_dir();
    let mut p = process(
        &rootfs,
        "grep -E '^(CapEff|Seccomp):' /proc/self/status; mount -t tmpfs none /tmp && echo mounted; \
         { head -c 0 /dev/fuse && echo fuse-opens; } 2>/dev/null; wc -c < /proc/timer_list",
    );
    p.privileged = true;
    let o = run(&make(work.path()), &p);
    assert_eq!(o.exit_code, 0, "{o:?}");
    let want_caps = format!(
        "CapEff:\t{:016x}",
        ((1u64 << (crate::spec::ALL_CAPABILITIES.len())) - 1) & crate::spec::own_bounding_set()
    );
    assert!(o.output.contains(&want_caps), "{o:?}");
    assert!(o.output.iter().any(|l| l == "Seccomp:\t0"), "{o:?}");
    assert!(o.output.iter().any(|l| l == "mounted"), "{o:?}");
    // The host's devices, as BuildKit's insecure mode gives them (an ordinary step has none of these).
    if std::path::Path::new("/dev/fuse").exists() {
        assert!(o.output.iter().any(|l| l == "fuse-opens"), "{o:?}");
    }
    assert_ne!(
        o.output.last().map(String::as_str),
        Some("0"),
        "nothing masked: {o:?}"
    );
}

fn a_device_node_a_step_makes_cannot_be_opened(make: Make) {
    let _turn = shared_turn();
    let (work, rootfs) = sandbox_dir();
    let host = work.path().join("host");
    std::fs::create_dir_all(&host).unwrap();
    // /dev/fuse (c 10:229) opens for root without any capability and is not among a step's devices: a node for it
    // made inside the step (CAP_MKNOD allows that) must not open, wherever the step makes it.
    let mut p = process(
        &rootfs,
        "for d in /tmp /dev /src; do mknod $d/fuse c 10 229 && \
         { head -c 0 $d/fuse 2>/dev/null && echo $d:opened || echo $d:denied; }; done; \
         echo x > /dev/null && echo null-works",
    );
    p.mounts = vec![Mount::Bind {
        source: host.clone(),
        target: "/src".into(),
        readonly: false,
    }];
    let o = run(&make(work.path()), &p);
    assert_eq!(
        o.output,
        ["/tmp:denied", "/dev:denied", "/src:denied", "null-works"],
        "{o:?}"
    );
}

/// What a hostile step tries, each denied: mounting, loading a kernel module, setting the clock, reaching the host
/// through /proc (its processes, its root, its sysctls, sysrq, kcore), joining the host's namespaces.
fn escapes_are_denied(make: Make) {
    let _turn = shared_turn();
    let (work, rootfs) = sandbox_dir();
    for tool in ["insmod", "date", "nsenter", "sysctl", "chroot"] {
        std::os::unix::fs::symlink("busybox", rootfs.join("bin").join(tool)).unwrap();
    }
    let marker = work.path().join("host-only-marker");
    std::fs::write(&marker, "host").unwrap();
    let cmd = format!(
        "mount -t tmpfs none /tmp 2>/dev/null && echo mount:allowed || echo mount:denied; \
         head -c 64 /dev/zero > /tmp/m.ko; insmod /tmp/m.ko 2>&1 | grep -q 'not permitted' && echo insmod:denied; \
         date -s 2001-01-01 2>&1 | grep -q 'not permitted' && echo date:denied; echo year:$(date +%Y); \
         kill -0 {host_pid} 2>/dev/null && echo host-pid:visible || echo host-pid:invisible; \
         nsenter -t 1 -m -n true 2>/dev/null && echo nsenter:allowed || echo nsenter:denied; \
         cat /proc/1/root{marker} 2>/dev/null || echo proc-root:confined; \
         sysctl -w kernel.domainname=x >/dev/null 2>&1 && echo sysctl:allowed || echo sysctl:denied; \
         {{ echo h > /proc/sysrq-trigger; }} 2>/dev/null && echo sysrq:allowed || echo sysrq:denied; \
         echo kcore:$(head -c 16 /proc/kcore 2>/dev/null | wc -c); \
         ls /proc | grep -c '^[0-9]'",
        host_pid = std::process::id(),
        marker = marker.display(),
    );
    let o = run(&make(work.path()), &process(&rootfs, &cmd));
    let out = o.output.join("\n");
    for want in [
        "mount:denied",
        "insmod:denied",
        "date:denied",
        "host-pid:invisible",
        "nsenter:denied",
        "proc-root:confined",
        "sysctl:denied",
        "sysrq:denied",
        "kcore:0",
    ] {
        // (busybox's date exits 0 when it cannot set the clock: its message and the year say what happened)
        assert!(o.output.iter().any(|l| l == want), "{want}: {out}");
    }
    assert!(!out.contains("year:2001"), "{out}");
    let pids: usize = o.output.last().and_then(|l| l.parse().ok()).unwrap_or(999);
    assert!(
        pids < 10,
        "only the step's own processes are in /proc: {out}"
    );
    assert_eq!(std::fs::read_to_string(&marker).unwrap(), "host");
}

/// A root step's chmod, chown and touch of its /dev nodes must not reach the host's nodes (the built-in runtime
/// binds the host's inodes in, read-only; runc makes its own), while reading and writing the devices works. Only
/// /dev/full is attacked: were the check to fail, the test puts the node back before it reports.
fn the_hosts_device_nodes_keep_their_metadata(make: Make) {
    use std::os::unix::fs::MetadataExt;
    let _turn = shared_turn();
    let (work, rootfs) = sandbox_dir();
    for tool in ["chmod", "chown"] {
        std::os::unix::fs::symlink("busybox", rootfs.join("bin").join(tool)).unwrap();
    }
    let full = Path::new("/dev/full");
    let seen = |m: &std::fs::Metadata| (m.mode(), m.uid(), m.gid(), m.mtime(), m.mtime_nsec());
    let before = std::fs::metadata(full).unwrap();
    let o = run(
        &make(work.path()),
        &process(
            &rootfs,
            "chmod 600 /dev/full; chown 65534:65534 /dev/full; touch -d 2001-01-01 /dev/full; \
             echo x > /dev/null && echo null-works; head -c 4 /dev/urandom | wc -c; \
             echo x > /dev/full 2>/dev/null || echo full-is-full",
        ),
    );
    let after = std::fs::metadata(full).unwrap();
    if seen(&after) != seen(&before) {
        let _ = rustix::fs::chmod(
            full,
            rustix::fs::Mode::from_raw_mode(before.mode() & 0o7777),
        );
        let _ = std::os::unix::fs::chown(full, Some(before.uid()), Some(before.gid()));
        let at = |s: i64, ns: i64| rustix::fs::Timespec {
            tv_sec: s,
            tv_nsec: ns as _,
        };
        let _ = rustix::fs::utimensat(
            rustix::fs::CWD,
            full,
            &rustix::fs::Timestamps {
                last_access: at(before.atime(), before.atime_nsec()),
                last_modification: at(before.mtime(), before.mtime_nsec()),
            },
            rustix::fs::AtFlags::empty(),
        );
    }
    assert_eq!(seen(&after), seen(&before), "the host's /dev/full: {o:?}");
    assert_eq!(
        o.output
            .iter()
            .filter(|l| !l.contains("chmod") && !l.contains("chown") && !l.contains("touch"))
            .map(|l| l.trim())
            .collect::<Vec<_>>(),
        ["null-works", "4", "full-is-full"],
        "{o:?}"
    );
}

/// A privileged step holds CAP_NET_ADMIN in its network namespace: what it changes there (here the
/// route_localnet sysctl that lets 127.0.0.0/8 be routed) must not reach a later, ordinary step through the pool
/// of reused namespaces.
fn a_privileged_steps_network_is_not_reused(make: Make) {
    let _turn = shared_turn();
    let (work, rootfs) = sandbox_dir();
    let rt = make(work.path());
    let knob = "/proc/sys/net/ipv4/conf/all/route_localnet";
    let mut insecure = process(&rootfs, &format!("echo 1 > {knob} && cat {knob}"));
    insecure.network = Network::Outbound;
    insecure.privileged = true;
    let o = run(&rt, &insecure);
    assert_eq!(
        o.output,
        ["1"],
        "the privileged step changed its namespace: {o:?}"
    );
    for _ in 0..3 {
        let mut plain = process(&rootfs, &format!("cat {knob}"));
        plain.network = Network::Outbound;
        let o = run(&rt, &plain);
        assert_eq!(o.output, ["0"], "a later step's network: {o:?}");
    }
}

/// Instantiates every check above for each runtime.
macro_rules! under {
    ($runtime:ident: $($check:ident),* $(,)?) => {
        mod $runtime {
            $(
                #[test]
                fn $check() {
                    super::$check(super::$runtime)
                }
            )*
        }
    };
    ($($runtime:ident),*) => {
        $(under!($runtime:
            runs_in_a_sandbox_and_reports_exit_codes,
            bind_and_tmpfs_mounts,
            a_memory_hog_is_oom_killed_and_reported_as_such,
            a_fork_bomb_stops_at_the_pids_limit,
            denied_syscalls_fail_with_eperm,
            users_groups_and_working_directory,
            the_host_is_out_of_sight,
            a_missing_command_is_an_error_that_names_it,
            a_cancelled_step_is_killed_with_everything_it_started,
            a_privileged_step_has_every_capability_and_no_filter,
            a_device_node_a_step_makes_cannot_be_opened,
            escapes_are_denied,
            the_hosts_device_nodes_keep_their_metadata,
            a_privileged_steps_network_is_not_reused,
        );)*
    };
}

under!(builtin, runc);

/// runc's bundle holds the step's environment (secrets given as `env=` among it): while the step runs, its
/// config.json is 0600 in 0700 directories, and a bundle left by a kiln process that died is swept.
#[test]
fn a_runc_bundle_is_its_owners_alone_and_swept_after_a_kill() {
    use std::os::unix::fs::PermissionsExt;
    let _turn = shared_turn();
    let (work, rootfs) = sandbox_dir();
    let rt = runc(work.path());
    let mut p = process(&rootfs, "sleep 2");
    p.env.push("TOKEN=s3cret".into());
    let bundles = work.path().join("bundles");
    let mode = |p: &Path| std::fs::metadata(p).map(|m| m.permissions().mode() & 0o777);
    let modes = std::thread::scope(|s| {
        let step = s.spawn(|| run(&rt, &p));
        let mut found = None;
        for _ in 0..200 {
            let cfg = std::fs::read_dir(&bundles)
                .into_iter()
                .flatten()
                .flatten()
                .map(|e| e.path().join("config.json"))
                .find(|c| c.exists());
            if let Some(cfg) = cfg {
                let dir = cfg.parent().unwrap().to_path_buf();
                found = Some((mode(&bundles), mode(&dir), mode(&cfg)));
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        assert_eq!(step.join().unwrap().exit_code, 0);
        found
    });
    let (outer, dir, cfg) = modes.expect("the bundle was seen while the step ran");
    assert_eq!(
        (outer.unwrap(), dir.unwrap(), cfg.unwrap()),
        (0o700, 0o700, 0o600)
    );

    let dead = std::process::Command::new("true").spawn().unwrap();
    let pid = dead.id();
    let _ = { dead }.wait();
    let left = bundles.join(format!("kiln-{pid}-0"));
    std::fs::create_dir_all(&left).unwrap();
    std::fs::write(left.join("config.json"), "{}").unwrap();
    rt.sweep_stale();
    assert!(!left.exists(), "a dead process's bundle is swept");
}
