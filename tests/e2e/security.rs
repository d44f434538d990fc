//! The holes a hostile-build audit found around the sandbox, each closed and checked through the real binary:
//! a root that other local users could enter (and run a step's setuid-root binary from), and a layer tar whose
//! whiteout reached outside its target. (The device nodes, runc bundles, io_uring and network-pool checks are
//! the executor's own tests, under both runtimes.) SECURITY.md lists each promise with its test.

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use kiln_tests::{run, Context, Root};

use crate::KILN;

fn mode(p: &Path) -> u32 {
    std::fs::metadata(p).expect("stat").permissions().mode() & 0o7777
}

/// Runs `args` as `nobody` (uid and gid 65534, no supplementary groups).
fn as_nobody(args: &[&str]) -> kiln_tests::Run {
    let mut all = vec![
        "--reuid=65534",
        "--regid=65534",
        "--clear-groups",
        "--inh-caps=-all",
    ];
    all.extend_from_slice(args);
    run("setpriv", &all, None)
}

fn setuid_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let Ok(md) = std::fs::symlink_metadata(e.path()) else {
            continue;
        };
        if md.is_dir() {
            setuid_files(&e.path(), out);
        } else if md.is_file() && md.mode() & 0o4000 != 0 && e.file_name() == "probe" {
            out.push(e.path());
        }
    }
}

#[test]
fn no_other_user_can_enter_the_root_or_run_what_a_step_made() {
    let root = Root::with_busybox(KILN);
    // A root an earlier kiln left open, as every root was before.
    std::fs::set_permissions(root.path(), std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let ctx = Context::new().file(
        "Dockerfile",
        "FROM busybox\nRUN cp /bin/busybox /probe && chmod 4755 /probe\n",
    );
    let b = root.kiln(
        KILN,
        &[
            "build",
            "--progress=plain",
            ctx.path().to_str().expect("utf-8"),
        ],
    );
    assert_eq!(b.code, 0, "{}", b.stderr);
    assert_eq!(mode(root.path()), 0o700, "an open root is tightened");
    assert!(
        b.stderr.contains("was open to other users"),
        "tightening is said: {}",
        b.stderr
    );
    let again = root.kiln(KILN, &["du"]);
    assert!(
        !again.stderr.contains("was open to other users"),
        "said once: {}",
        again.stderr
    );

    let mut probes = Vec::new();
    setuid_files(root.path(), &mut probes);
    assert!(
        !probes.is_empty(),
        "the step's setuid binary is in the root"
    );
    for p in &probes {
        let r = as_nobody(&[p.to_str().expect("utf-8"), "id", "-u"]);
        assert_ne!(r.code, 0, "nobody ran {}: {}", p.display(), r.stdout);
        assert!(!r.stdout.contains('0'), "euid 0 reached: {}", r.stdout);
    }
    let root_path = root.path().to_str().expect("utf-8");
    let ls = as_nobody(&["ls", root_path]);
    assert_ne!(ls.code, 0, "nobody lists the root: {}", ls.stdout);

    // A new root, under a directory others may enter and with a umask that keeps nothing private.
    let parent = tempfile::tempdir().expect("tempdir");
    std::fs::set_permissions(parent.path(), std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let fresh = parent.path().join("lib/kiln");
    let made = run(
        "sh",
        &[
            "-c",
            &format!(
                "umask 000; KILN_ROOT={} exec {KILN} du",
                fresh.to_str().expect("utf-8")
            ),
        ],
        None,
    );
    assert_eq!(made.code, 0, "{}", made.stderr);
    assert_eq!(
        mode(&fresh),
        0o700,
        "a new root is private whatever the umask"
    );
}

#[test]
fn a_whiteout_that_names_its_own_directory_is_refused_and_nothing_outside_changes() {
    let root = Root::with_busybox(KILN);
    let ctx = Context::new().file(
        "Dockerfile",
        "FROM busybox\nRUN mkdir -p /out && echo kept > /out/keep\nADD wh.tar /out/\nRUN ls /bin/sh\n",
    );
    // `.wh...` is an ordinary name on disk; in a layer it would hide `..`.
    let staging = tempfile::tempdir().expect("tempdir");
    std::fs::write(staging.path().join(".wh..."), "").expect("write");
    let tar = run(
        "tar",
        &[
            "-cf",
            ctx.path().join("wh.tar").to_str().expect("utf-8"),
            "-C",
            staging.path().to_str().expect("utf-8"),
            ".wh...",
        ],
        None,
    );
    assert_eq!(tar.code, 0, "{}", tar.stderr);
    let canary = root.path().join("work/canary");
    std::fs::create_dir_all(canary.parent().expect("parent")).expect("mkdir");
    std::fs::write(&canary, "c").expect("write");
    let before: Vec<_> = std::fs::read_dir(root.path())
        .expect("read root")
        .flatten()
        .map(|e| e.file_name())
        .collect();

    let b = root.kiln(
        KILN,
        &[
            "build",
            "--progress=plain",
            ctx.path().to_str().expect("utf-8"),
        ],
    );
    assert_ne!(b.code, 0, "the hostile ADD must fail: {}", b.stderr);
    assert!(
        b.stderr.contains("whiteout"),
        "the error says why: {}",
        b.stderr
    );
    assert!(!b.stderr.contains("panicked"), "{}", b.stderr);
    for name in &before {
        assert!(
            root.path().join(name).exists(),
            "{name:?} is still in the root"
        );
    }
    assert!(canary.exists(), "nothing in work/ was removed");
    let ok = root.kiln(
        KILN,
        &[
            "build",
            "--progress=plain",
            Context::new()
                .file("Dockerfile", "FROM busybox\nRUN ls /bin/sh\n")
                .path()
                .to_str()
                .expect("utf-8"),
        ],
    );
    assert_eq!(ok.code, 0, "the root still builds: {}", ok.stderr);
}

/// Unmounts the test's filesystem whatever happens.
struct Mounted(PathBuf);

impl Drop for Mounted {
    fn drop(&mut self) {
        let _ = run("umount", &["-l", self.0.to_str().expect("utf-8")], None);
    }
}

/// The disk fills by default no more (#30): a root on a 4 GiB filesystem with no kiln.toml takes thirteen builds
/// of 350 MB layers each (4.5 GB in all, more than the filesystem holds) because BuildKit's default policy
/// prunes the least recently used build cache once free space falls under 20%; the tagged image stays, and
/// `kiln du` shows the policy. Without the default policy the last builds fail with ENOSPC.
#[test]
fn the_default_gc_policy_keeps_a_root_on_a_small_filesystem_from_filling_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mnt = dir.path().join("fs");
    std::fs::create_dir(&mnt).expect("mkdir");
    let mounted = run(
        "mount",
        &[
            "-t",
            "tmpfs",
            "-o",
            "size=4g",
            "kiln-gc-test",
            mnt.to_str().expect("utf-8"),
        ],
        None,
    );
    assert_eq!(mounted.code, 0, "{}", mounted.stderr);
    let _unmount = Mounted(mnt.clone());
    let root = mnt.join("root");
    let config = dir.path().join("no-kiln.toml");
    let kiln = |args: &[&str]| {
        let mut c = std::process::Command::new(KILN);
        c.args(args)
            .env("KILN_ROOT", &root)
            .env("KILN_CONFIG", &config)
            .env("PATH", kiln_tests::path_with_sbin());
        let out = c.output().expect("run kiln");
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let base = std::process::Command::new("bash")
        .arg(kiln_tests::repo_root().join("scripts/base-images.sh"))
        .arg(KILN)
        .env("KILN_ROOT", &root)
        .env("KILN_CONFIG", &config)
        .output()
        .expect("base-images.sh");
    assert!(
        base.status.success(),
        "{}",
        String::from_utf8_lossy(&base.stderr)
    );
    let ctx = Context::new().file(
        "Dockerfile",
        "FROM busybox\nARG N\nRUN head -c 350000000 /dev/urandom > /blob.$N\n",
    );
    let c = ctx.path().to_str().expect("utf-8");
    let mut said = String::new();
    for n in 0..13 {
        let arg = format!("N={n}");
        let mut args = vec!["build", "--progress=plain", "--build-arg", &arg];
        if n == 0 {
            args.extend(["-t", "keep:1"]);
        }
        args.push(c);
        let (code, _, stderr) = kiln(&args);
        assert_eq!(code, 0, "build {n} on a 4 GiB root: {stderr}");
        said.push_str(&stderr);
    }
    assert!(
        said.contains("default gc policy"),
        "the prune is said: {said}"
    );
    let (code, images, _) = kiln(&["images"]);
    assert_eq!(code, 0);
    assert!(images.contains("keep"), "the tagged image stays: {images}");
    let (code, du, stderr) = kiln(&["du"]);
    assert_eq!(code, 0, "{stderr}");
    assert!(du.contains("gc policy (default"), "{du}");
}

/// A root step's chmod, chown and touch of /dev/full (the built-in runtime binds the host's node in) leave the
/// host's node as it was, under whichever runtime `KILN_RUNTIME` picks (scripts/test.sh runs this module under
/// runc too); reading and writing the devices still work. Were the check to fail, the node is put back first.
#[test]
fn a_step_cannot_change_the_hosts_device_nodes() {
    use std::os::unix::fs::MetadataExt;
    let root = Root::with_busybox(KILN);
    let full = Path::new("/dev/full");
    let seen = |m: &std::fs::Metadata| (m.mode(), m.uid(), m.gid(), m.mtime(), m.mtime_nsec());
    let before = std::fs::metadata(full).expect("stat /dev/full");
    let ctx = Context::new().file(
        "Dockerfile",
        "FROM busybox\nRUN chmod 600 /dev/full; chown 65534:65534 /dev/full; touch -d 2001-01-01 /dev/full; \
         echo x > /dev/null && head -c 4 /dev/urandom | wc -c > /count\n",
    );
    let dest = tempfile::tempdir().expect("tempdir");
    let out = format!("type=local,dest={}", dest.path().display());
    let b = root.kiln(
        KILN,
        &[
            "build",
            "--progress=plain",
            "-o",
            &out,
            ctx.path().to_str().expect("utf-8"),
        ],
    );
    let after = std::fs::metadata(full).expect("stat /dev/full");
    if seen(&after) != seen(&before) {
        let _ = std::fs::set_permissions(
            full,
            std::fs::Permissions::from_mode(before.mode() & 0o7777),
        );
        let _ = std::os::unix::fs::chown(full, Some(before.uid()), Some(before.gid()));
        let _ = run("touch", &["/dev/full"], None);
    }
    assert_eq!(
        seen(&after),
        seen(&before),
        "the host's /dev/full: {}",
        b.stderr
    );
    assert_eq!(b.code, 0, "{}", b.stderr);
    assert_eq!(
        std::fs::read_to_string(dest.path().join("count"))
            .expect("count")
            .trim(),
        "4"
    );
}
