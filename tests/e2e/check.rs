//! `kiln check`: BuildKit's build checks with file:line locations and the `# check=` directive.

use kiln_tests::{run, Context};

use base64::Engine as _;

use crate::KILN;

#[test]
fn reports_rules_with_locations() {
    let ctx = Context::new().file(
        "Dockerfile",
        "FROM busybox as Builder\nMAINTAINER me\nRUN echo $NOPE_UNDEFINED\nCMD echo hi\nCMD echo twice\n",
    );
    let r = run(KILN, &["check", ctx.path().to_str().expect("utf-8")], None);
    assert_eq!(r.code, 0, "{}", r.stderr);
    for rule in [
        "FromAsCasing",
        "StageNameCasing",
        "MaintainerDeprecated",
        "JSONArgsRecommended",
        "MultipleInstructionsDisallowed",
    ] {
        assert!(
            r.stdout.contains(rule),
            "{rule} missing from:\n{}",
            r.stdout
        );
    }
    assert!(
        r.stdout.contains("Dockerfile:2:1: MaintainerDeprecated"),
        "{}",
        r.stdout
    );
}

#[test]
fn check_directive_skips_rules_and_turns_findings_into_errors() {
    let ctx = Context::new().file(
        "Dockerfile",
        "# check=skip=JSONArgsRecommended;error=true\nFROM busybox\nMAINTAINER me\nCMD echo hi\n",
    );
    let r = run(KILN, &["check", ctx.path().to_str().expect("utf-8")], None);
    assert_eq!(r.code, 1, "{}\n{}", r.stdout, r.stderr);
    assert!(r.stdout.contains("MaintainerDeprecated"));
    assert!(!r.stdout.contains("JSONArgsRecommended"));
    let via_build = run(
        KILN,
        &["build", "--check", ctx.path().to_str().expect("utf-8")],
        None,
    );
    assert_eq!(
        via_build.code, 1,
        "kiln build --check reports the same: {}",
        via_build.stdout
    );
    assert!(via_build.stdout.contains("MaintainerDeprecated"));
    let clean = Context::new().file(
        "Dockerfile",
        "# check=error=true\nFROM busybox\nCMD [\"true\"]\n",
    );
    let r = run(
        KILN,
        &["check", clean.path().to_str().expect("utf-8")],
        None,
    );
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
}

#[test]
fn a_duplicate_stage_name_fails_the_check_and_hides_no_finding() {
    // BuildKit's lint reports every warning beside the build error; kiln's build refuses a repeated stage name,
    // so `kiln check` reports it as an error, exits non-zero, and still reports the later stages' findings.
    let ctx = Context::new().file(
        "Dockerfile",
        "FROM busybox AS a\nFROM busybox AS a\nWORKDIR app\nFROM busybox${TAG}\nCOPY $NOPE /x\n",
    );
    let dir = ctx.path().to_str().expect("utf-8");
    let r = run(KILN, &["check", dir], None);
    assert_ne!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    for rule in [
        "Dockerfile:2:1: DuplicateStageName",
        "Dockerfile:3:1: WorkdirRelativePath",
        "Dockerfile:4:1: UndefinedArgInFrom",
        "Dockerfile:5:1: UndefinedVar",
    ] {
        assert!(
            r.stdout.contains(rule),
            "{rule} missing from:\n{}",
            r.stdout
        );
    }
    assert!(
        r.stderr.contains("duplicate stage name \"a\""),
        "{}",
        r.stderr
    );
    let build = run(KILN, &["build", dir], None);
    assert_ne!(build.code, 0, "kiln build refuses it too: {}", build.stderr);
}

/// A Dockerfile BuildKit's FromAsCasing flags, whose RUN prints a marker and writes one into the image.
const LOWER_AS: &str = "FROM busybox as base\nRUN echo MARKER-RAN && echo ran > /marker\n";

fn build(root: &kiln_tests::Root, ctx: &Context, extra: &[&str]) -> kiln_tests::Run {
    let mut args = vec!["build", "--progress=plain"];
    args.extend_from_slice(extra);
    args.push(ctx.path().to_str().expect("utf-8"));
    root.kiln(KILN, &args)
}

#[test]
fn a_build_lists_check_warnings_after_it_as_buildx_does() {
    let root = kiln_tests::Root::with_busybox(KILN);
    let ctx = Context::new().file("Dockerfile", LOWER_AS);
    let out = kiln_tests::private_dir();
    let dest = format!("type=local,dest={}", out.path().join("o").display());
    let meta = out.path().join("meta.json");
    let r = build(
        &root,
        &ctx,
        &[
            "-o",
            &dest,
            "--metadata-file",
            meta.to_str().expect("utf-8"),
        ],
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(out.path().join("o/marker").exists(), "{}", r.stderr);
    assert!(
        r.stderr.contains(
            "\n 1 warning found (use docker --debug to expand):\n - FromAsCasing: 'as' and 'FROM' keywords' casing do not match (line 1)\n"
        ),
        "{}",
        r.stderr
    );
    let doc: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&meta).expect("metadata file"))
            .expect("json");
    // As buildx records them: BuildKit's VertexWarning, the short text and the rule's description in base64,
    // its documentation page, the line as the range.
    let w = &doc["buildx.build.warnings"][0];
    let decode = |v: &serde_json::Value| {
        let b = base64::engine::general_purpose::STANDARD
            .decode(v.as_str().unwrap_or_default())
            .unwrap_or_default();
        String::from_utf8_lossy(&b).into_owned()
    };
    assert_eq!(
        decode(&w["short"]),
        "FromAsCasing: 'as' and 'FROM' keywords' casing do not match (line 1)",
        "{doc}"
    );
    assert_eq!(
        decode(&w["detail"][0]),
        "The 'as' keyword should match the case of the 'from' keyword",
        "{doc}"
    );
    assert_eq!(
        w["url"], "https://docs.docker.com/go/dockerfile/rule/from-as-casing/",
        "{doc}"
    );
    assert_eq!(w["range"][0]["start"]["line"], 1, "{doc}");
    // The event stream carries them too.
    let raw = root.kiln(
        KILN,
        &[
            "build",
            "--progress=rawjson",
            ctx.path().to_str().expect("utf-8"),
        ],
    );
    assert_eq!(raw.code, 0, "{}", raw.stderr);
    // BuildKit's SolveStatus: a `warnings` entry whose base64 `short` is `Rule: message (line N)`.
    let shorts: Vec<String> = raw
        .stderr
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter_map(|v| v["warnings"][0]["short"].as_str().map(str::to_string))
        .filter_map(|s| base64::engine::general_purpose::STANDARD.decode(s).ok())
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .collect();
    assert!(
        shorts
            .iter()
            .any(|s| s.starts_with("FromAsCasing: ") && s.ends_with("(line 1)")),
        "{}",
        raw.stderr
    );
    // kiln's own event schema keeps them too.
    let kiln_json = root.kiln(
        KILN,
        &[
            "build",
            "--progress=kiln-json",
            ctx.path().to_str().expect("utf-8"),
        ],
    );
    assert!(
        kiln_json
            .stderr
            .lines()
            .any(|l| l.contains("\"event\":\"warning\"")
                && l.contains("\"rule\":\"FromAsCasing\"")
                && l.contains("\"line\":1")),
        "{}",
        kiln_json.stderr
    );
}

#[test]
fn check_error_true_fails_the_build_before_any_step_runs() {
    let root = kiln_tests::Root::with_busybox(KILN);
    let ctx = Context::new().file("Dockerfile", format!("# check=error=true\n{LOWER_AS}"));
    let out = kiln_tests::private_dir();
    let dest = format!("type=local,dest={}", out.path().join("o").display());
    let r = build(&root, &ctx, &["-o", &dest]);
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert!(
        r.stderr
            .contains("lint violation found for rules: FromAsCasing"),
        "{}",
        r.stderr
    );
    assert!(
        r.stderr
            .contains(" - FromAsCasing: 'as' and 'FROM' keywords' casing do not match (line 2)"),
        "{}",
        r.stderr
    );
    assert!(
        !r.stderr.contains("MARKER-RAN"),
        "the RUN ran:\n{}",
        r.stderr
    );
    assert!(!out.path().join("o").exists(), "{}", r.stderr);
    // The build arg sets the configuration as BuildKit's dockerui reads it.
    let plain = Context::new().file("Dockerfile", LOWER_AS);
    let r = build(
        &root,
        &plain,
        &["--build-arg", "BUILDKIT_DOCKERFILE_CHECK=error=true"],
    );
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert!(
        !r.stderr.contains("MARKER-RAN"),
        "the RUN ran:\n{}",
        r.stderr
    );
}

#[test]
fn check_skip_silences_a_rule_in_the_build() {
    // The rule not skipped still warns; the build arg replaces the directive, as in BuildKit.
    let root = kiln_tests::Root::with_busybox(KILN);
    let ctx = Context::new().file(
        "Dockerfile",
        format!("# check=skip=FromAsCasing\n{LOWER_AS}MAINTAINER me\n"),
    );
    let r = build(&root, &ctx, &[]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(!r.stderr.contains("FromAsCasing"), "{}", r.stderr);
    assert!(
        r.stderr.contains(
            "\n 1 warning found (use docker --debug to expand):\n - MaintainerDeprecated: "
        ),
        "{}",
        r.stderr
    );
    let skip_all = build(
        &root,
        &ctx,
        &[
            "--build-arg",
            "BUILDKIT_DOCKERFILE_CHECK=skip=all;error=true",
        ],
    );
    assert_eq!(skip_all.code, 0, "{}", skip_all.stderr);
    assert!(
        !skip_all
            .stderr
            .contains("found (use docker --debug to expand)"),
        "{}",
        skip_all.stderr
    );
}

#[test]
fn kiln_check_judges_the_platform_of_base_images_in_the_store() {
    // The store's busybox is this machine's; a check for another platform flags it, as BuildKit does.
    let root = kiln_tests::Root::with_busybox(KILN);
    let other = if cfg!(target_arch = "aarch64") {
        "linux/amd64"
    } else {
        "linux/arm64"
    };
    let ctx = Context::new().file("Dockerfile", "FROM busybox\nCMD [\"true\"]\n");
    let r = root.kiln(
        KILN,
        &[
            "check",
            "--platform",
            other,
            ctx.path().to_str().expect("utf-8"),
        ],
    );
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    assert!(
        r.stdout.contains(
            "Dockerfile:1:1: InvalidBaseImagePlatform: Base image busybox was pulled with platform"
        ) && r
            .stdout
            .contains(&format!("expected \"{other}\" for current build")),
        "{}",
        r.stdout
    );
}
