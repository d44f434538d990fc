//! Bad input: every Dockerfile error names file:line:column, shows the line with a caret, exits 2.

use kiln_tests::{run, Context};

use crate::KILN;

fn graph_of(dockerfile: &[u8]) -> kiln_tests::Run {
    let ctx = Context::new().file("Dockerfile", dockerfile);
    run(KILN, &["graph", ctx.path().to_str().expect("utf-8")], None)
}

#[test]
fn unknown_instruction_points_at_its_line() {
    let r = graph_of(b"FROM busybox\n\nFROBNICATE now\n");
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(r.stderr.contains("Dockerfile:3:1:"), "{}", r.stderr);
    assert!(
        r.stderr.contains("unknown instruction: FROBNICATE"),
        "{}",
        r.stderr
    );
    assert!(r.stderr.contains(" 3 | FROBNICATE now"), "{}", r.stderr);
    assert!(r.stderr.contains('^'), "{}", r.stderr);
}

#[test]
fn unknown_flag_names_the_valid_ones() {
    let r = graph_of(b"FROM busybox\nCOPY --bogus=1 a /b\n");
    assert_eq!(r.code, 2);
    assert!(r.stderr.contains("Dockerfile:2:"), "{}", r.stderr);
    assert!(r.stderr.contains("unknown flag: --bogus"), "{}", r.stderr);
    assert!(r.stderr.contains("--from"), "{}", r.stderr);
}

#[test]
fn invalid_utf8_is_located() {
    let r = graph_of(b"FROM busybox\nRUN echo \xff\n");
    assert_eq!(r.code, 2);
    assert!(r.stderr.contains("Dockerfile:2:10:"), "{}", r.stderr);
    assert!(r.stderr.contains("not valid UTF-8"), "{}", r.stderr);
}

#[test]
fn missing_target_and_bad_platform_are_usage_errors() {
    let ctx = Context::new().file("Dockerfile", "FROM busybox AS one\n");
    let p = ctx.path().to_str().expect("utf-8");
    let r = run(KILN, &["graph", "--target", "two", p], None);
    assert_eq!(r.code, 2);
    assert!(
        r.stderr.contains("target stage \"two\" could not be found"),
        "{}",
        r.stderr
    );
    let r = run(KILN, &["graph", "--platform", "linux//x", p], None);
    assert_eq!(r.code, 2);
    assert!(r.stderr.contains("--platform"), "{}", r.stderr);
}

#[test]
fn no_input_panics() {
    let cases: &[&[u8]] = &[
        b"",
        b"# only a comment\n",
        b"FROM",
        b"RUN echo before from\n",
        b"FROM busybox\nRUN <<EOF\nunterminated\n",
        b"FROM busybox\nCOPY [\"a\", 1] /x\n",
        b"FROM busybox\nENV\n",
        b"FROM ${UNSET:?must be set}\n",
        b"FROM busybox AS 1bad\n",
        b"FROM busybox\nCOPY --from=5 /a /b\n",
        b"\xef\xbb\xbf# escape=`\nFROM busybox\nRUN echo `\n  hi\n",
    ];
    for case in cases {
        let r = graph_of(case);
        assert!(
            r.code == 0 || r.code == 2,
            "{:?} exited {}: {}",
            String::from_utf8_lossy(case),
            r.code,
            r.stderr
        );
        assert!(
            !r.stderr.contains("panicked"),
            "{:?} panicked: {}",
            String::from_utf8_lossy(case),
            r.stderr
        );
    }
}

#[test]
fn a_reader_that_goes_away_ends_the_output_without_a_panic_report() {
    let root = kiln_tests::private_dir();
    // The read end is closed before kiln starts, so its first line meets a broken pipe.
    let (reader, writer) = std::io::pipe().expect("pipe");
    drop(reader);
    let out = std::process::Command::new(KILN)
        .arg("images")
        .env("KILN_ROOT", root.path())
        .stdout(writer)
        .output()
        .expect("run kiln");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(141), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert!(stderr.is_empty(), "{stderr}");
}
