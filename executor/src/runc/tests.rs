//! runc running real steps in a busybox rootfs (needs root, runc and busybox-static, which `.ci/run` installs).

use std::sync::Mutex;

use super::*;

fn busybox_rootfs(dir: &Path) {
    let bin = dir.join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    std::fs::copy("/bin/busybox", bin.join("busybox")).expect("busybox-static is installed");
    for tool in [
        "sh", "cat", "echo", "id", "hostname", "ls", "mount", "grep", "touch", "ip",
    ] {
        std::os::unix::fs::symlink("busybox", bin.join(tool)).unwrap();
    }
    for d in ["proc", "sys", "dev", "etc", "tmp"] {
        std::fs::create_dir_all(dir.join(d)).unwrap();
    }
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
    }
}

#[test]
fn runs_in_a_sandbox_and_reports_exit_codes() {
    let work = tempfile::tempdir().unwrap();
    let rootfs = work.path().join("rootfs");
    busybox_rootfs(&rootfs);
    let runc = Runc::new("runc", work.path());
    let seen = Mutex::new(Vec::new());
    let out = runc
        .run(
            &process(&rootfs, "hostname; echo hi > /tmp/x; cat /tmp/x; grep -E 'CapEff|NoNewPrivs|Seccomp:' /proc/self/status; ls /proc | grep -cE '^[0-9]+$'"),
            &|l| seen.lock().unwrap().push(l.to_string()),
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

    let fail = runc
        .run(&process(&rootfs, "echo bye; exit 7"), &|_| {})
        .unwrap();
    assert_eq!(fail.exit_code, 7);
    let denied = runc
        .run(&process(&rootfs, "mount -t tmpfs none /tmp"), &|_| {})
        .unwrap();
    assert_ne!(denied.exit_code, 0, "mounting is not allowed");
    let net = runc
        .run(&process(&rootfs, "ls /sys/class/net"), &|_| {})
        .unwrap();
    assert_eq!(net.output, ["lo"], "an isolated step has loopback only");
    assert!(
        std::fs::read_dir(work.path().join("bundles"))
            .unwrap()
            .next()
            .is_none(),
        "bundles are removed"
    );
}

#[test]
fn bind_and_tmpfs_mounts() {
    let work = tempfile::tempdir().unwrap();
    let rootfs = work.path().join("rootfs");
    busybox_rootfs(&rootfs);
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
    let out = Runc::new("runc", work.path()).run(&p, &|_| {}).unwrap();
    assert_eq!(out.output, ["from host", "ro", "tmpfs"]);
    assert!(!host.join("new").exists());
}

/// The cgroup tests look at the whole kiln tree, so they take turns.
static CGROUP_TESTS: std::sync::Mutex<()> = std::sync::Mutex::new(());

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

#[test]
fn a_memory_hog_is_oom_killed_and_reported_as_such() {
    let _turn = CGROUP_TESTS.lock().unwrap_or_else(|p| p.into_inner());
    let work = tempfile::tempdir().unwrap();
    let rootfs = work.path().join("rootfs");
    busybox_rootfs(&rootfs);
    let runc = Runc::new("runc", work.path());
    // 200 MiB into a shell variable, under a 64 MiB limit.
    let mut p = process(
        &rootfs,
        "x=$(head -c 209715200 /dev/zero | tr '\\0' a); echo ${#x}",
    );
    p.limits.memory = Some(64 << 20);
    let o = runc.run(&p, &|_| {}).unwrap();
    assert_ne!(o.exit_code, 0, "{o:?}");
    assert!(o.oom_killed, "{o:?}");
    // The same step without a limit is not reported as OOM.
    let mut small = process(&rootfs, "exit 3");
    small.limits.memory = Some(64 << 20);
    let o = runc.run(&small, &|_| {}).unwrap();
    assert_eq!((o.exit_code, o.oom_killed), (3, false));
    no_kiln_cgroups_left();
}

#[test]
fn a_fork_bomb_stops_at_the_pids_limit() {
    let _turn = CGROUP_TESTS.lock().unwrap_or_else(|p| p.into_inner());
    let work = tempfile::tempdir().unwrap();
    let rootfs = work.path().join("rootfs");
    busybox_rootfs(&rootfs);
    let runc = Runc::new("runc", work.path());
    let mut p = process(
        &rootfs,
        "i=0; while [ $i -lt 200 ]; do sleep 30 & i=$((i+1)); done; echo started all",
    );
    p.limits.pids = Some(32);
    let lines = std::sync::Mutex::new(Vec::new());
    let o = runc
        .run(&p, &|l| lines.lock().unwrap().push(l.to_string()))
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
    let cfg = super::spec::config(&p, Some("/kiln/x/step"), None);
    assert_eq!(cfg["linux"]["resources"]["cpu"]["quota"], 150_000);
    assert_eq!(cfg["linux"]["resources"]["pids"]["limit"], 10);
    assert_eq!(cfg["linux"]["cgroupsPath"], "/kiln/x/step");
}

#[test]
fn denied_syscalls_fail_with_eperm() {
    let work = tempfile::tempdir().unwrap();
    let rootfs = work.path().join("rootfs");
    busybox_rootfs(&rootfs);
    let runc = Runc::new("runc", work.path());
    // A user namespace needs no capability, so only the seccomp filter refuses `unshare -U`; swapoff is refused
    // twice over (no CAP_SYS_ADMIN, and denied).
    let o = runc
        .run(
            &process(
                &rootfs,
                "unshare -U true; echo unshare=$?; swapoff -a; echo swapoff=$?",
            ),
            &|_| {},
        )
        .unwrap();
    let out = o.output.join("\n");
    assert!(out.contains("unshare=1"), "{out}");
    assert!(!out.contains("swapoff=0"), "{out}");
    assert!(out.contains("Operation not permitted"), "{out}");
}
