//! Where kiln's images used to differ from BuildKit's (issue #28): each test builds a small Dockerfile and checks
//! the exact modes, owners, contents and config fields BuildKit's code gives, naming the BuildKit function or
//! test it follows.

use std::path::Path;

use kiln_tests::{Context, Root};

use crate::KILN;

fn build(root: &Root, ctx: &Context, extra: &[&str]) -> kiln_tests::Run {
    let mut args = vec!["build", "--progress=plain"];
    args.extend_from_slice(extra);
    args.push(ctx.path().to_str().expect("utf-8"));
    root.kiln(KILN, &args)
}

/// Builds `ctx` into a local directory and returns it.
fn build_local(root: &Root, ctx: &Context, extra: &[&str]) -> tempfile::TempDir {
    let out = tempfile::tempdir().expect("tempdir");
    let dest = format!("type=local,dest={}", out.path().display());
    let mut args = vec!["-o", dest.as_str()];
    args.extend_from_slice(extra);
    let r = build(root, ctx, &args);
    assert_eq!(r.code, 0, "{}", r.stderr);
    out
}

/// Builds `ctx` as `tag` and returns the image config `kiln inspect` shows.
fn build_config(root: &Root, ctx: &Context, tag: &str) -> serde_json::Value {
    let r = build(root, ctx, &["-t", tag]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let inspect = root.kiln(KILN, &["inspect", tag]);
    assert_eq!(inspect.code, 0, "{}", inspect.stderr);
    let v: serde_json::Value = serde_json::from_str(&inspect.stdout).expect("inspect json");
    v["Config"].clone()
}

fn read(p: &Path) -> String {
    std::fs::read_to_string(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

fn env_has(config: &serde_json::Value, kv: &str) -> bool {
    config["config"]["Env"]
        .as_array()
        .is_some_and(|e| e.iter().any(|x| x.as_str() == Some(kv)))
}

#[test]
fn an_env_with_several_pairs_is_expanded_against_the_environment_before_it() {
    // BuildKit's dispatch expands every word of an ENV before dispatchEnv sets any pair.
    let root = Root::empty();
    let ctx = Context::new().file("Dockerfile", "FROM scratch\nENV a=one\nENV a=two b=$a\n");
    let config = build_config(&root, &ctx, "env:1");
    assert!(env_has(&config, "a=two"), "{config}");
    assert!(env_has(&config, "b=one"), "{config}");
}

#[test]
fn maintainer_sets_the_author_and_adds_no_label() {
    // BuildKit's dispatchMaintainer: image.Author, history `MAINTAINER x`.
    let root = Root::empty();
    let ctx = Context::new().file("Dockerfile", "FROM scratch\nMAINTAINER Jane Doe\n");
    let config = build_config(&root, &ctx, "maint:1");
    assert_eq!(config["author"], "Jane Doe", "{config}");
    assert!(
        config["config"]["Labels"]
            .as_object()
            .is_none_or(|l| l.is_empty()),
        "{config}"
    );
    let history = config["history"].as_array().expect("history");
    assert!(
        history
            .iter()
            .any(|h| h["created_by"] == "MAINTAINER Jane Doe"),
        "{config}"
    );
}

#[test]
fn a_stage_built_from_a_stage_inherits_its_arg_values() {
    // BuildKit's dispatchState.init copies the base stage's state (whose environment holds its ARG values) and
    // its build args; a bare `ARG W` in the child keeps the inherited value.
    let root = Root::with_busybox(KILN);
    let ctx = Context::new().file(
        "Dockerfile",
        "FROM busybox AS base\nARG V=one\nARG W=two\nFROM base\nARG W\nRUN echo \"$V-$W\" > /v\nENV E=$V\n",
    );
    let out = build_local(&root, &ctx, &[]);
    assert_eq!(read(&out.path().join("v")), "one-two\n");
    let config = build_config(&root, &ctx, "args:1");
    assert!(env_has(&config, "E=one"), "{config}");
}

#[test]
fn from_compares_stage_names_exactly_while_copy_from_and_target_ignore_case() {
    // BuildKit's dispatchStates.addState looks FROM's word up as written among the lower-cased stage names;
    // findStateByName (COPY --from, --target) lower-cases it. Only `scratch` in lower case is scratch.
    let root = Root::empty();
    let ctx = Context::new().file("Dockerfile", "FROM scratch AS Foo\nFROM Foo\n");
    let r = build(&root, &ctx, &[]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(
        r.stderr.contains(
            "failed to parse stage name \"Foo\": invalid reference format: repository name (library/Foo) must be lowercase"
        ),
        "{}",
        r.stderr
    );
    let ctx = Context::new().file("Dockerfile", "FROM SCRATCH\n");
    let r = build(&root, &ctx, &[]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(
        r.stderr
            .contains("repository name (library/SCRATCH) must be lowercase"),
        "{}",
        r.stderr
    );
    let ctx = Context::new()
        .file(
            "Dockerfile",
            "FROM scratch AS Build\nCOPY a /a\nFROM scratch AS Out\nCOPY --from=BUILD /a /b\nFROM scratch\nCOPY a /c\n",
        )
        .file("a", "a\n");
    let out = build_local(&root, &ctx, &["--target", "OUT"]);
    assert_eq!(read(&out.path().join("b")), "a\n");
    assert!(!out.path().join("c").exists());
}

#[test]
fn a_bind_mount_without_a_target_mounts_at_the_working_directory() {
    // BuildKit's dispatchRunMounts joins the target to the working directory; an empty one is the directory.
    let root = Root::with_busybox(KILN);
    let ctx = Context::new()
        .file(
            "Dockerfile",
            "FROM busybox\nWORKDIR /w\nRUN --mount=type=bind,source=sub cat /w/f > /out\n",
        )
        .file("sub/f", "from the context\n");
    let out = build_local(&root, &ctx, &[]);
    assert_eq!(read(&out.path().join("out")), "from the context\n");
    assert!(out.path().join("w").is_dir());
    assert!(!out.path().join("w/f").exists(), "the mount is not kept");
    let ctx = Context::new().file("Dockerfile", "FROM busybox\nRUN --mount=type=bind true\n");
    let r = build(&root, &ctx, &[]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(
        r.stderr.contains("invalid mount target \"/\""),
        "{}",
        r.stderr
    );
}
