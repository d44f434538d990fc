//! RUN networks as BuildKit defines them: `default` (a namespace of the step's own, outbound access through NAT,
//! the host's loopback services out of reach), `none` (loopback only), `host` (only with `--allow network.host`);
//! /etc/hosts and /etc/resolv.conf provided and left out of the result.

use kiln_tests::{loopback_service, run, Context, Root};

use crate::KILN;

/// Whether a step printed `word` as a line of its own output (not merely in its echoed command line).
fn said(stderr: &str, word: &str) -> bool {
    stderr
        .lines()
        .any(|l| !l.contains(" RUN ") && l.split_whitespace().last() == Some(word))
}

fn build(root: &Root, dockerfile: &str, extra: &[&str]) -> kiln_tests::Run {
    let ctx = Context::new().file("Dockerfile", dockerfile);
    let out = tempfile::tempdir().expect("tempdir");
    let mut args = vec!["build", "--progress=plain", "--no-cache"];
    args.extend_from_slice(extra);
    let dest = format!("type=local,dest={}", out.path().display());
    args.extend_from_slice(&["-o", &dest, ctx.path().to_str().expect("utf-8")]);
    let r = root.kiln(KILN, &args);
    assert_eq!(r.code, 0, "{}", r.stderr);
    for f in ["hosts", "resolv.conf"] {
        assert!(
            !out.path().join("etc").join(f).exists(),
            "/etc/{f} is the sandbox's, not the result's"
        );
    }
    r
}

#[test]
fn the_default_network_reaches_out_but_never_the_hosts_loopback() {
    let port = loopback_service();
    // The host itself reaches its service (so a failure below is the sandbox's doing).
    let host = run(
        "wget",
        &["-q", "-O", "-", &format!("http://127.0.0.1:{port}/")],
        None,
    );
    assert_eq!(host.stdout, "secret", "{}", host.stderr);
    let root = Root::with_busybox(KILN);
    let probe = format!(
        "FROM busybox\n\
         RUN ip link show eth0 >/dev/null && echo HAS-ETH0; \
         gw=$(ip route | awk '/default/ {{print $3}}'); echo gateway=$gw; \
         cat /etc/hosts /etc/resolv.conf; \
         for a in 127.0.0.1 $gw; do \
           if wget -q -T 3 -O - http://$a:{port}/ 2>/dev/null; then echo REACHED-$a; else echo refused-$a; fi; \
         done; \
         wget -q -O /dev/null http://deb.debian.org/debian/dists/bookworm/Release && echo OUTBOUND-OK\n"
    );
    let r = build(&root, &probe, &[]);
    assert!(said(&r.stderr, "OUTBOUND-OK"), "{}", r.stderr);
    // The step's interface is eth0, as under BuildKit's CNI network (its testRunDefaultNetwork).
    assert!(said(&r.stderr, "HAS-ETH0"), "{}", r.stderr);
    assert!(!r.stderr.contains("REACHED-1"), "{}", r.stderr);
    assert!(said(&r.stderr, "refused-127.0.0.1"), "{}", r.stderr);
    assert!(r.stderr.contains("gateway=10.213."), "{}", r.stderr);
    assert!(
        r.stderr.contains("localhost buildkitsandbox"),
        "{}",
        r.stderr
    );
    assert!(r.stderr.contains("nameserver"), "{}", r.stderr);

    // none: loopback only.
    let r = build(
        &root,
        "FROM busybox\n\
         RUN --network=none ip route; \
         if wget -q -O /dev/null http://deb.debian.org/; then echo OUT; else echo no-way-out; fi\n",
        &[],
    );
    assert!(said(&r.stderr, "no-way-out"), "{}", r.stderr);

    // host: the host's loopback is the step's, once allowed.
    let hostnet =
        format!("FROM busybox\nRUN --network=host wget -q -O - http://127.0.0.1:{port}/\n");
    let ctx = Context::new().file("Dockerfile", &hostnet);
    let denied = root.kiln(
        KILN,
        &[
            "build",
            "--progress=plain",
            ctx.path().to_str().expect("utf-8"),
        ],
    );
    assert_ne!(denied.code, 0);
    assert!(
        denied
            .stderr
            .contains("entitlement network.host is not allowed")
            && denied.stderr.contains("--allow network.host"),
        "{}",
        denied.stderr
    );
    let r = build(&root, &hostnet, &["--allow", "network.host"]);
    assert!(said(&r.stderr, "secret"), "{}", r.stderr);

    // Nothing is left behind: no namespace, veth or subnet claim of this test's builds.
    let netns = run("ip", &["netns", "list"], None).stdout;
    let kiln_pids: Vec<&str> = netns
        .lines()
        .filter_map(|l| l.strip_prefix("kiln-"))
        .filter_map(|l| l.split('-').next())
        .collect();
    for pid in kiln_pids {
        assert!(
            std::path::Path::new("/proc").join(pid).exists(),
            "a finished build left its namespace: {netns}"
        );
    }
}
