//! kiln run by an ordinary user: it enters a user namespace of its own (the user's /etc/subuid range through
//! newuidmap), keeps its state in a directory the user owns, and runs RUN steps with the same semantics as root —
//! root inside the step, USER switching, `--network=none`, and the default network through slirp4netns with the
//! host's loopback out of reach. The test makes the user (`useradd`) and, as Debian's udev rules do on a normal
//! host, lets users open /dev/net/tun.

use std::os::unix::fs::MetadataExt;
use std::process::Command;

use kiln_tests::{loopback_service, repo_root, run};

use crate::KILN;

const USER: &str = "kiln-rootless";

fn uid_of(user: &str) -> u32 {
    let out = run("id", &["-u", user], None);
    if out.code != 0 {
        let made = run("useradd", &["--create-home", user], None);
        assert_eq!(made.code, 0, "useradd: {}", made.stderr);
    }
    // useradd gives the user a subordinate id range where /etc/subuid exists; a fresh machine may have none.
    for file in ["/etc/subuid", "/etc/subgid"] {
        let text = std::fs::read_to_string(file).unwrap_or_default();
        if !text.lines().any(|l| l.starts_with(&format!("{user}:"))) {
            let mut f = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(file)
                .expect(file);
            std::io::Write::write_all(&mut f, format!("{user}:300000:65536\n").as_bytes())
                .expect(file);
        }
    }
    run("id", &["-u", user], None)
        .stdout
        .trim()
        .parse()
        .expect("a uid")
}

/// Runs `args` as the user, with the sbin directories on PATH.
fn as_user(args: &[&str]) -> kiln_tests::Run {
    let path = kiln_tests::path_with_sbin();
    let mut cmd = Command::new("runuser");
    cmd.args(["-u", USER, "--", "env", &format!("PATH={path}")])
        .args(args);
    let out = cmd.output().expect("runuser");
    kiln_tests::Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

#[test]
fn an_ordinary_user_builds_with_the_same_run_semantics() {
    let uid = uid_of(USER);
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions("/dev/net/tun", std::fs::Permissions::from_mode(0o666))
        .expect("chmod /dev/net/tun");
    let port = loopback_service();
    let home = tempfile::tempdir().expect("tempdir");
    let dir = home.path();
    for d in ["root", "ctx", "out"] {
        std::fs::create_dir(dir.join(d)).expect("mkdir");
    }
    std::fs::write(
        dir.join("ctx/Dockerfile"),
        format!(
            "FROM busybox\n\
             RUN id -u > /as-root && echo made > /made\n\
             RUN --network=none ls /sys/class/net > /net-none\n\
             RUN wget -q -T 5 -O /loopback http://10.0.2.2:{port}/ || echo unreachable > /loopback\n\
             USER 1000:1000\n\
             RUN id -u > /tmp/as-user && id -g >> /tmp/as-user\n\
             USER root\n\
             RUN cp /tmp/as-user /as-user\n"
        ),
    )
    .expect("Dockerfile");
    run(
        "chown",
        &["-R", &format!("{uid}:{uid}"), dir.to_str().expect("utf-8")],
        None,
    );
    run("chmod", &["755", dir.to_str().expect("utf-8")], None);
    let root_env = format!("KILN_ROOT={}", dir.join("root").display());
    let script = repo_root().join("scripts/base-images.sh");
    let bases = as_user(&[&root_env, "bash", script.to_str().expect("utf-8"), KILN]);
    assert_eq!(bases.code, 0, "{}", bases.stderr);
    let dest = format!("type=local,dest={}", dir.join("out").display());
    let built = as_user(&[
        &root_env,
        KILN,
        "build",
        "--progress=plain",
        "-o",
        &dest,
        dir.join("ctx").to_str().expect("utf-8"),
    ]);
    assert_eq!(built.code, 0, "{}", built.stderr);
    let read = |f: &str| std::fs::read_to_string(dir.join("out").join(f)).expect(f);
    assert_eq!(read("as-root"), "0\n", "root inside the step");
    assert_eq!(read("as-user"), "1000\n1000\n", "USER switches inside it");
    assert_eq!(read("net-none"), "lo\n");
    assert_eq!(
        read("loopback"),
        "unreachable\n",
        "the host's loopback is out of reach"
    );
    // On the host everything belongs to the user: nothing was made as root.
    let made = std::fs::metadata(dir.join("root/snapshots")).expect("snapshots");
    assert_eq!(made.uid(), uid);
    assert_eq!(
        std::fs::metadata(dir.join("out/made")).expect("made").uid(),
        uid
    );
    let mounts = std::fs::read_to_string("/proc/self/mounts").unwrap_or_default();
    assert!(
        !mounts.contains(dir.to_str().expect("utf-8")),
        "no mount reached the host's table"
    );
}

#[test]
fn an_ordinary_user_is_told_up_front_that_limits_need_root() {
    let uid = uid_of(USER);
    let home = tempfile::tempdir().expect("tempdir");
    let dir = home.path();
    for d in ["root", "ctx"] {
        std::fs::create_dir(dir.join(d)).expect("mkdir");
    }
    // No RUN at all: without the check up front this build succeeds and the limits are silently not applied.
    std::fs::write(dir.join("ctx/Dockerfile"), "FROM scratch\nCOPY a /a\n").expect("Dockerfile");
    std::fs::write(dir.join("ctx/a"), "a\n").expect("a");
    run(
        "chown",
        &["-R", &format!("{uid}:{uid}"), dir.to_str().expect("utf-8")],
        None,
    );
    run("chmod", &["755", dir.to_str().expect("utf-8")], None);
    let root_env = format!("KILN_ROOT={}", dir.join("root").display());
    let ctx = dir.join("ctx");
    for (flags, named) in [
        (&["--memory", "64m"][..], "--memory"),
        (&["--cpus", "0.5"][..], "--cpus"),
        (&["--pids-limit", "50"][..], "--pids-limit"),
    ] {
        let mut args = vec![
            root_env.as_str(),
            KILN,
            "build",
            "--progress=plain",
            "-t",
            "lim",
        ];
        args.extend(flags);
        args.push(ctx.to_str().expect("utf-8"));
        let r = as_user(&args);
        assert_eq!(r.code, 2, "{flags:?}: {}", r.stderr);
        assert!(
            r.stderr
                .contains(&format!("{named} cannot be used by a rootless kiln")),
            "{flags:?}: {}",
            r.stderr
        );
        assert!(!r.stderr.contains("Permission denied"), "{}", r.stderr);
        assert!(!r.stderr.contains("#1 "), "no step ran: {}", r.stderr);
    }
    let fine = as_user(&[
        root_env.as_str(),
        KILN,
        "build",
        "-t",
        "lim",
        ctx.to_str().expect("utf-8"),
    ]);
    assert_eq!(fine.code, 0, "{}", fine.stderr);
}
