//! A build's end, however it comes — success, a failed step, Ctrl-C — leaves nothing behind: no process of a
//! step, no mount, no cgroup, no network namespace, no unfinished snapshot. Under both runtimes.

use std::io::BufRead;
use std::time::{Duration, Instant};

use kiln_tests::{run, Context, Root};

use crate::KILN;

/// What a build of kiln process `pid` could have left behind, described; empty when nothing is. `sleeper` is
/// the command line of the build's long-running step (each test has its own, as tests run at once).
fn leftovers(root: &Root, pid: u32, sleeper: &str) -> Vec<String> {
    let prefix = format!("kiln-{pid}-");
    let mut found = Vec::new();
    let mounts = std::fs::read_to_string("/proc/self/mounts").unwrap_or_default();
    let root_path = root.path().to_string_lossy().into_owned();
    found.extend(
        mounts
            .lines()
            .filter(|l| l.contains(&root_path))
            .map(|l| format!("mount: {l}")),
    );
    for c in ["memory", "pids", "cpu"] {
        if let Ok(d) = std::fs::read_dir(format!("/sys/fs/cgroup/{c}/kiln")) {
            found.extend(
                d.flatten()
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .filter(|n| n.starts_with(&prefix))
                    .map(|n| format!("cgroup {c}/kiln/{n}")),
            );
        }
    }
    let netns = run("ip", &["netns", "list"], None).stdout;
    found.extend(
        netns
            .lines()
            .filter(|l| l.starts_with(&prefix))
            .map(|l| format!("netns {l}")),
    );
    if let Ok(d) = std::fs::read_dir(root.path().join("snapshots")) {
        found.extend(
            d.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.starts_with("tmp-"))
                .map(|n| format!("unfinished snapshot {n}")),
        );
    }
    let ps = run("ps", &["-eo", "args"], None).stdout;
    found.extend(
        ps.lines()
            .filter(|l| *l == sleeper)
            .map(|l| format!("process {l}")),
    );
    found
}

/// Starts a build of `dockerfile`, waits for a RUN to print `started`, sends `signal` and waits for kiln.
fn interrupt(runtime: &str, signal: &str, sleeper: &str) {
    let root = Root::with_busybox(KILN);
    let ctx = Context::new().file(
        "Dockerfile",
        format!(
            "FROM busybox AS a\nRUN echo started; {sleeper} & {sleeper}\n\
             FROM busybox AS b\nRUN --network=none {sleeper}\n\
             FROM busybox\nCOPY --from=a /bin/sh /a\nCOPY --from=b /bin/sh /b\n"
        ),
    );
    let mut child = root
        .command(
            KILN,
            &[
                "build",
                "--progress=plain",
                "--runtime",
                runtime,
                ctx.path().to_str().expect("utf-8"),
            ],
        )
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("start kiln");
    let stderr = child.stderr.take().expect("stderr");
    let mut lines = std::io::BufReader::new(stderr).lines();
    for line in lines.by_ref() {
        if line.expect("line").ends_with(" started") {
            break;
        }
    }
    // Let the sibling stage get going too.
    std::thread::sleep(Duration::from_millis(500));
    let t0 = Instant::now();
    let pid = child.id();
    assert_eq!(run("kill", &[signal, &pid.to_string()], None).code, 0);
    let rest: Vec<String> = lines.map_while(Result::ok).collect();
    let status = child.wait().expect("reap");
    let took = t0.elapsed();
    let rest = rest.join("\n");
    let want = if signal == "-INT" { 130 } else { 143 };
    assert_eq!(status.code(), Some(want), "{rest}");
    assert!(rest.contains("stopped by signal"), "{rest}");
    assert!(took < Duration::from_secs(15), "took {took:?}: {rest}");
    let left = leftovers(&root, pid, sleeper);
    assert!(left.is_empty(), "{runtime}: {left:#?}");
}

#[test]
fn ctrl_c_kills_every_running_step_and_leaves_nothing_behind() {
    interrupt("builtin", "-INT", "sleep 3601");
}

#[test]
fn sigterm_does_the_same_under_runc() {
    interrupt("runc", "-TERM", "sleep 3602");
}

#[test]
fn a_failed_step_stops_its_running_siblings_and_leaves_nothing_behind() {
    let root = Root::with_busybox(KILN);
    let ctx = Context::new().file(
        "Dockerfile",
        "FROM busybox AS slow\nRUN sleep 3603\n\
         FROM busybox AS bad\nRUN sleep 1; echo giving up; exit 3\n\
         FROM busybox\nCOPY --from=slow /bin/sh /a\nCOPY --from=bad /bin/sh /b\n",
    );
    let t0 = Instant::now();
    let child = root
        .command(
            KILN,
            &[
                "build",
                "--progress=plain",
                ctx.path().to_str().expect("utf-8"),
            ],
        )
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("run kiln");
    let pid = child.id();
    let out = child.wait_with_output().expect("wait");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("exit code: 3"), "{stderr}");
    assert!(t0.elapsed() < Duration::from_secs(20), "{stderr}");
    let left = leftovers(&root, pid, "sleep 3603");
    assert!(left.is_empty(), "{left:#?}");
}
