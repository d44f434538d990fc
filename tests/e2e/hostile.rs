//! Hostile inputs through the real binary: Dockerfiles of hostile size and shape end in a graph or in a clear,
//! short, located error, never a panic or a hang; contexts and images full of escapes (symlinked destinations,
//! escaping symlinks, devices, sockets, fifos, .dockerignore re-includes of outside paths) stay confined to the
//! build. The layer-level corpus is `tests/corpus/hostile-layers` (oci's `hostile_layers` test and `store::`).

use kiln_tests::{Context, Root};

use crate::KILN;

/// `kiln graph` over `dockerfile`, stopped by `timeout` if it ever hangs.
fn graph(dockerfile: &str) -> kiln_tests::Run {
    let ctx = Context::new().file("Dockerfile", dockerfile);
    let path = ctx.path().to_str().expect("utf-8").to_string();
    kiln_tests::run(
        "timeout",
        &["300", KILN, "graph", "--format", "json", &path],
        None,
    )
}

fn clear_error(r: &kiln_tests::Run, what: &str, needle: &str) {
    assert_eq!(
        r.code,
        2,
        "{what}: {}",
        &r.stderr[..r.stderr.len().min(2000)]
    );
    assert!(
        r.stderr.len() < 2048,
        "{what}: a short error, not {} bytes",
        r.stderr.len()
    );
    assert!(r.stderr.contains(needle), "{what}: {}", r.stderr);
    assert!(!r.stderr.contains("panicked"), "{what}: {}", r.stderr);
}

#[test]
fn dockerfiles_of_hostile_size_and_shape_end_in_a_graph_or_a_short_located_error() {
    let mut stages = String::from("FROM busybox AS s0\n");
    for i in 1..1000 {
        stages.push_str(&format!("FROM s{} AS s{i}\nRUN echo {i}\n", i - 1));
    }
    let r = graph(&stages);
    assert_eq!(r.code, 0, "1,000 chained stages: {}", r.stderr);

    // 10,000 instructions; then 20,000 ENV lines, each costing the same as the first. (Every RUN carries the
    // whole environment, as BuildKit's ExecOp does, so thousands of ENV *and* thousands of RUN multiply.)
    let mut many = String::from("FROM busybox\nARG B=1\n");
    for i in 0..100 {
        many.push_str(&format!("ENV V{i}=$B\n"));
    }
    for i in 100..10_000 {
        many.push_str(&format!("RUN echo {i}\n"));
    }
    let r = graph(&many);
    assert_eq!(r.code, 0, "10,000 instructions: {}", r.stderr);
    let mut envs = String::from("FROM busybox\nARG B=1\n");
    for i in 0..20_000 {
        envs.push_str(&format!("ENV V{i}=$B\n"));
    }
    envs.push_str("RUN env\n");
    let r = graph(&envs);
    assert_eq!(r.code, 0, "20,000 ENV: {}", r.stderr);
    assert!(
        r.stdout.contains("V19999=1"),
        "the last ENV reaches the RUN"
    );

    let comments = format!(
        "FROM busybox\n{}RUN echo done\n",
        format!("# {}\n", "c".repeat(98)).repeat(500_000)
    );
    assert!(comments.len() > 50_000_000);
    let r = graph(&comments);
    assert_eq!(r.code, 0, "a 50 MB Dockerfile: {}", r.stderr);

    let long = format!("FROM busybox\nRUN echo {}\n", "a".repeat(50 << 20));
    clear_error(
        &graph(&long),
        "a 50 MB line",
        "Dockerfile:2:1: dockerfile line greater than max allowed size",
    );

    let nested = format!(
        "FROM busybox\nARG A\nENV B={}x{}\n",
        "${A:-".repeat(5000),
        "}".repeat(5000)
    );
    clear_error(
        &graph(&nested),
        "5,000 nested expansions",
        "Dockerfile:3:1:",
    );

    clear_error(
        &graph("FROM busybox\nRUN [\"echo\", 1]\n"),
        "a JSON form with a number",
        "Dockerfile:2:1:",
    );
    // Malformed JSON is the shell form, as BuildKit reads it.
    let r = graph("FROM busybox\nCMD [\"unterminated\nENTRYPOINT [\n");
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(r.stdout.contains("[\\\"unterminated"), "{}", r.stdout);
}

#[test]
fn contexts_and_images_full_of_escapes_stay_inside_the_build() {
    let root = Root::with_busybox(KILN);
    let tag = format!("kiln-hostile-{}", std::process::id());
    let ctx = Context::new()
        .file(
            "Dockerfile",
            format!(
                "FROM busybox\n\
                 RUN ln -s /etc /app && ln -s ../../../../tmp /up\n\
                 COPY f /app/{tag}\n\
                 COPY f /up/{tag}\n\
                 COPY . /ctx/\n"
            ),
        )
        .file("f", "data")
        .file(".dockerignore", "Dockerfile\n!../*\n!/etc/passwd\n");
    let c = ctx.path();
    std::os::unix::fs::symlink("/etc/hostname", c.join("abs-link")).expect("symlink");
    std::os::unix::fs::symlink("../../../../../../etc/passwd", c.join("rel-link"))
        .expect("symlink");
    let mk = kiln_tests::run(
        "mknod",
        &[c.join("null-dev").to_str().expect("utf-8"), "c", "1", "3"],
        None,
    );
    assert_eq!(mk.code, 0, "{}", mk.stderr);
    let ff = kiln_tests::run("mkfifo", &[c.join("fifo").to_str().expect("utf-8")], None);
    assert_eq!(ff.code, 0, "{}", ff.stderr);
    let _sock = std::os::unix::net::UnixListener::bind(c.join("sock")).expect("socket");

    let out = tempfile::tempdir().expect("tempdir");
    let dest = format!("type=local,dest={}", out.path().display());
    let r = root.kiln(
        KILN,
        &[
            "build",
            "--progress=plain",
            "-o",
            &dest,
            c.to_str().expect("utf-8"),
        ],
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
    // Destinations through symlinks to /etc and up out of the root land inside the image.
    assert!(
        !std::path::Path::new("/etc").join(&tag).exists(),
        "written to the host's /etc"
    );
    assert!(
        !std::path::Path::new("/tmp").join(&tag).exists(),
        "written to the host's /tmp"
    );
    let o = out.path();
    assert_eq!(
        std::fs::read_to_string(o.join("etc").join(&tag)).expect("inside /etc"),
        "data"
    );
    assert_eq!(
        std::fs::read_to_string(o.join("tmp").join(&tag)).expect("inside /tmp"),
        "data"
    );
    // Symlinks travel as symlinks (their targets are never read); a fifo as a fifo (never opened); a device node
    // as an entry; a socket as an empty regular file, as BuildKit's context transfer makes it (never connected
    // to); .dockerignore re-includes of outside paths re-include nothing.
    use std::os::unix::fs::FileTypeExt;
    let ctx_out = o.join("ctx");
    assert_eq!(
        std::fs::read_link(ctx_out.join("abs-link")).expect("link"),
        std::path::Path::new("/etc/hostname")
    );
    assert!(std::fs::read_link(ctx_out.join("rel-link")).is_ok());
    let meta = |n: &str| std::fs::symlink_metadata(ctx_out.join(n)).map(|m| m.file_type());
    assert!(meta("fifo").expect("fifo").is_fifo());
    assert!(meta("null-dev").expect("device").is_char_device());
    assert!(
        meta("sock").expect("socket").is_file(),
        "a socket becomes a file"
    );
    assert_eq!(
        std::fs::metadata(ctx_out.join("sock")).expect("sock").len(),
        0
    );
    assert!(meta("Dockerfile").is_err(), ".dockerignore holds");
    assert!(!ctx_out.join("passwd").exists() && !ctx_out.join("etc").exists());

    // A COPY source that is a symlink out of the context resolves inside it: not found, never the host's file.
    let escape = Context::new()
        .file("Dockerfile", "FROM busybox\nCOPY rel-link /got\n")
        .file("x", "x");
    std::os::unix::fs::symlink(
        "../../../../../../etc/passwd",
        escape.path().join("rel-link"),
    )
    .expect("symlink");
    let r = root.kiln(
        KILN,
        &[
            "build",
            "--progress=plain",
            escape.path().to_str().expect("utf-8"),
        ],
    );
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert!(
        r.stderr.contains("not found in the build context"),
        "{}",
        r.stderr
    );
}

#[test]
fn add_of_a_hostile_archive_fails_naming_the_entry_and_writes_nothing_outside() {
    let root = Root::with_busybox(KILN);
    let corpus = kiln_tests::repo_root().join("tests/corpus/hostile-layers");
    for (archive, why) in [
        ("traversal.tar", "may not contain '..'"),
        ("absolute.tar", "absolute names are not allowed"),
        ("hardlink-out.tar", "hardlink target"),
    ] {
        let ctx = Context::new()
            .file("Dockerfile", format!("FROM busybox\nADD {archive} /x/\n"))
            .file(
                archive,
                std::fs::read(corpus.join(archive)).expect("corpus"),
            );
        let r = root.kiln(
            KILN,
            &[
                "build",
                "--progress=plain",
                ctx.path().to_str().expect("utf-8"),
            ],
        );
        assert_eq!(r.code, 1, "{archive}: {}", r.stderr);
        assert!(
            r.stderr.contains(why)
                && r.stderr.contains("\"/x/\"")
                && !r
                    .stderr
                    .contains(&root.path().join("work").display().to_string()),
            "{archive}: {}",
            r.stderr
        );
    }
    for escaped in ["/kiln-hostile-escape", "/tmp/kiln-hostile-escape"] {
        assert!(!std::path::Path::new(escaped).exists(), "{escaped}");
    }
}
