//! The flags that shape every RUN step as `docker build` has them (`--add-host`, `--shm-size`, `--ulimit`) and
//! CDI devices (`RUN --device`, gated by `--allow device`), each seen from inside a real step. Run with
//! `KILN_RUNTIME=runc` too: both runtimes take the same spec.

use std::path::Path;

use kiln_tests::{Context, Root};

use crate::KILN;

/// Builds `ctx` with `extra` flags into a fresh directory and returns the run and a reader of the files there.
fn build_to_dir(
    root: &Root,
    ctx: &Context,
    extra: &[&str],
    env: &[(&str, &str)],
) -> (kiln_tests::Run, tempfile::TempDir) {
    let out = tempfile::tempdir().expect("tempdir");
    let dest = format!("type=local,dest={}", out.path().display());
    let mut args = vec!["build", "--progress=plain", "-o", &dest];
    args.extend_from_slice(extra);
    args.push(ctx.path().to_str().expect("utf-8"));
    (root.kiln_with(KILN, &args, env, None), out)
}

fn read(dir: &Path, f: &str) -> String {
    std::fs::read_to_string(dir.join(f)).unwrap_or_else(|e| panic!("{f}: {e}"))
}

#[test]
fn add_host_shm_size_and_ulimit_reach_every_run_step() {
    let root = Root::with_busybox(KILN);
    let ctx = Context::new().file(
        "Dockerfile",
        "FROM busybox\n\
         RUN cat /etc/hosts > /hosts && df -k /dev/shm | tail -n 1 > /shm \
         && ulimit -Sn > /nofile && ulimit -Hn >> /nofile && ulimit -Su > /nproc\n",
    );
    let flags = [
        "--add-host",
        "db.internal:10.1.2.3",
        "--add-host",
        "Cache=[2001:db8::1]",
        "--shm-size",
        "128m",
        "--ulimit",
        "nofile=1024:2048",
        "--ulimit",
        "nproc=300",
    ];
    let (r, out) = build_to_dir(&root, &ctx, &flags, &[]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let hosts = read(out.path(), "hosts");
    assert!(
        hosts.starts_with("127.0.0.1\tlocalhost buildkitsandbox\n")
            && hosts.ends_with("10.1.2.3\tdb.internal\n2001:db8::1\tcache\n"),
        "BuildKit's hosts file, then the --add-host lines: {hosts:?}"
    );
    let shm: Vec<String> = read(out.path(), "shm")
        .split_whitespace()
        .map(str::to_string)
        .collect();
    assert_eq!(
        shm.get(1).map(String::as_str),
        Some("131072"),
        "/dev/shm is 128m: {shm:?}"
    );
    assert_eq!(read(out.path(), "nofile"), "1024\n2048\n");
    assert_eq!(read(out.path(), "nproc"), "300\n");
    assert!(!out.path().join("etc/hosts").exists() || read(out.path(), "etc/hosts") != hosts);

    // Without --shm-size the runtime's 64m stays; a different size is a different step.
    let (r, out) = build_to_dir(&root, &ctx, &flags[..4], &[]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let shm = read(out.path(), "shm");
    assert_eq!(shm.split_whitespace().nth(1), Some("65536"), "{shm}");
    assert_eq!(read(out.path(), "nofile").lines().count(), 2);
    assert_ne!(
        read(out.path(), "nofile"),
        "1024\n2048\n",
        "no --ulimit: the default limit"
    );

    // As in BuildKit, a host's address is no part of the step's cache key; its name is.
    let mut moved = flags;
    moved[1] = "db.internal:10.9.9.9";
    let (r, _out) = build_to_dir(&root, &ctx, &moved, &[]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(
        r.stderr.contains("CACHED"),
        "a moved host reruns nothing: {}",
        r.stderr
    );
    let mut renamed = flags;
    renamed[1] = "db2.internal:10.1.2.3";
    let (r, out) = build_to_dir(&root, &ctx, &renamed, &[]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(read(out.path(), "hosts").contains("10.1.2.3\tdb2.internal\n"));

    // Bad values are refused up front, in go-units' and buildx's words.
    for (flag, value, said) in [
        (
            "--ulimit",
            "nofile=4096:1024",
            "ulimit soft limit must be less than or equal to hard limit: 4096 > 1024",
        ),
        ("--ulimit", "bogus=1", "invalid ulimit type: bogus"),
        ("--add-host", "nohost", "invalid host nohost"),
        ("--shm-size", "lots", "invalid size: 'lots'"),
    ] {
        let (r, _) = build_to_dir(&root, &ctx, &[flag, value], &[]);
        assert_eq!(r.code, 2, "{flag} {value}: {}", r.stderr);
        assert!(r.stderr.contains(said), "{flag} {value}: {}", r.stderr);
    }
}

/// A CDI spec directory exposing the host's /dev/null as `/dev/fake0`, a file mounted at /opt/fake/payload.txt
/// and a variable, and a kiln.toml that reads specs from it.
fn cdi_setup(dir: &Path) -> std::path::PathBuf {
    let specs = dir.join("cdi");
    std::fs::create_dir_all(&specs).expect("mkdir");
    let payload = dir.join("payload.txt");
    std::fs::write(&payload, "from the host\n").expect("write");
    let spec = serde_json::json!({
        "cdiVersion": "0.6.0",
        "kind": "kiln.test/fake",
        "devices": [{
            "name": "null0",
            "containerEdits": {
                "deviceNodes": [{"path": "/dev/fake0", "hostPath": "/dev/null"}],
                "mounts": [{"hostPath": payload, "containerPath": "/opt/fake/payload.txt", "options": ["ro", "bind"]}]
            }
        }],
        "containerEdits": {"env": ["FAKE_DEVICE=on"]}
    });
    std::fs::write(specs.join("fake.json"), spec.to_string()).expect("write spec");
    let config = dir.join("kiln.toml");
    std::fs::write(
        &config,
        format!("[cdi]\nspec-dirs = [{:?}]\n", specs.display().to_string()),
    )
    .expect("write kiln.toml");
    config
}

#[test]
fn a_cdi_device_brings_its_node_mount_and_env_with_allow_device() {
    let root = Root::with_busybox(KILN);
    let setup = tempfile::tempdir().expect("tempdir");
    let config = cdi_setup(setup.path());
    let env = [("KILN_CONFIG", config.to_str().expect("utf-8"))];
    let ctx = Context::new().file(
        "Dockerfile",
        "FROM busybox\n\
         RUN --device=kiln.test/fake=null0,required \
         test -c /dev/fake0 && echo gone > /dev/fake0 && cat /opt/fake/payload.txt > /seen \
         && echo \"$FAKE_DEVICE\" >> /seen && (chmod 600 /dev/fake0 2>/dev/null || echo ro >> /seen)\n",
    );
    let (r, _) = build_to_dir(&root, &ctx, &[], &env);
    assert_eq!(r.code, 2, "refused without --allow device: {}", r.stderr);
    assert!(
        r.stderr
            .contains("device kiln.test/fake=null0 is requested by the build but not allowed"),
        "{}",
        r.stderr
    );
    assert!(
        !r.stderr.contains("#2 DONE"),
        "refused before any step ran: {}",
        r.stderr
    );

    let (r, out) = build_to_dir(&root, &ctx, &["--allow", "device"], &env);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let seen = read(out.path(), "seen");
    let builtin = std::env::var("KILN_RUNTIME").map_or(true, |r| r == "builtin");
    assert!(seen.starts_with("from the host\non\n"), "{seen:?}");
    if builtin {
        // The host's node is bound read-only, as the minimal /dev's are: its mode cannot be changed from inside.
        assert_eq!(seen, "from the host\non\nro\n");
    }
    assert!(
        !out.path().join("opt").exists(),
        "the mount's stub is no part of the result"
    );
    assert!(!out.path().join("dev/fake0").exists());
    let host_null = std::fs::metadata("/dev/null").expect("stat");
    assert_eq!(
        std::os::unix::fs::PermissionsExt::mode(&host_null.permissions()) & 0o777,
        0o666,
        "the host's node is untouched"
    );

    // Granted by name, the same; an unknown required device is BuildKit's error; an optional one a warning.
    let (r, _) = build_to_dir(
        &root,
        &ctx,
        &["--allow", "device=kiln.test/fake=null0"],
        &env,
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
    let unknown = Context::new().file(
        "Dockerfile",
        "FROM busybox\nRUN --device=kiln.test/fake=gpu9,required true\n",
    );
    let (r, _) = build_to_dir(&root, &unknown, &["--allow", "device"], &env);
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(
        r.stderr
            .contains("required device \"kiln.test/fake=gpu9\" is not registered"),
        "{}",
        r.stderr
    );
    let optional = Context::new().file(
        "Dockerfile",
        "FROM busybox\nRUN --device=kiln.test/fake=gpu9 touch /ran\n",
    );
    let (r, out) = build_to_dir(&root, &optional, &["--allow", "device"], &env);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(
        r.stderr
            .contains("Optional device \"kiln.test/fake=gpu9\" is not registered"),
        "{}",
        r.stderr
    );
    assert!(out.path().join("ran").exists());
}
