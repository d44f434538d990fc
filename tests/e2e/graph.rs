//! `kiln graph`: lowering real Dockerfiles without running anything.

use kiln_tests::{repo_root, run, Context};
use serde_json::Value;

use crate::KILN;

fn graph_json(args: &[&str]) -> Value {
    let r = run(KILN, args, None);
    assert_eq!(r.code, 0, "kiln {args:?} failed: {}", r.stderr);
    serde_json::from_str(&r.stdout).expect("graph --format json prints JSON")
}

fn descriptions(v: &Value) -> Vec<String> {
    v["graph"]["vertices"]
        .as_array()
        .expect("vertices")
        .iter()
        .map(|x| x["meta"]["description"].as_str().unwrap_or("").to_string())
        .collect()
}

#[test]
fn hello_example_lowers_to_a_stable_graph_with_a_run_step() {
    let hello = repo_root().join("examples/hello");
    let ctx = hello.to_str().expect("utf-8 path");
    let first = graph_json(&["graph", "--format", "json", ctx]);
    let second = graph_json(&["graph", "--format", "json", ctx]);
    assert_eq!(first, second, "lowering must be deterministic");
    let vertices = first["graph"]["vertices"].as_array().expect("vertices");
    let exec = vertices
        .iter()
        .find(|v| v["op"]["op"] == "exec")
        .expect("the RUN step is an exec op");
    assert_eq!(exec["op"]["args"][0], "/bin/sh");
    assert_eq!(exec["op"]["args"][1], "-c");
    assert!(exec["op"]["env"]
        .as_array()
        .expect("env")
        .iter()
        .any(|e| e == "GREETING=hello"));
    assert_eq!(exec["op"]["cwd"], "/app");
    let image = vertices
        .iter()
        .find(|v| v["op"]["source"] == "image")
        .expect("FROM busybox");
    assert_eq!(image["op"]["reference"], "docker.io/library/busybox:latest");
    assert_eq!(first["image"]["config"]["Cmd"][0], "cat");
    assert_eq!(first["image"]["config"]["WorkingDir"], "/app");
}

#[test]
fn dot_output_renders_with_graphviz() {
    let hello = repo_root().join("examples/hello");
    let r = run(KILN, &["graph", hello.to_str().expect("utf-8")], None);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(r.stdout.starts_with("digraph llb {"));
    let dot = run("dot", &["-Tsvg"], Some(r.stdout.as_bytes()));
    assert_eq!(
        dot.code, 0,
        "Graphviz rejected kiln's dot output: {}",
        dot.stderr
    );
    assert!(dot.stdout.contains("<svg"));
}

const MULTI: &str = "\
ARG VERSION=1
FROM busybox AS a
ARG VERSION
RUN echo a $VERSION > /a

FROM busybox AS b
RUN echo b > /b

FROM busybox AS broken
RUN exit 1

FROM busybox
COPY --from=a /a /a
COPY --from=b /b /b
";

#[test]
fn only_stages_the_target_needs_are_lowered() {
    let ctx = Context::new().file("Dockerfile", MULTI);
    let p = ctx.path().to_str().expect("utf-8");
    let all = descriptions(&graph_json(&["graph", "--format", "json", p]));
    assert!(all.iter().any(|d| d.contains("echo a")));
    assert!(all.iter().any(|d| d.contains("echo b")));
    assert!(
        !all.iter().any(|d| d.contains("exit 1")),
        "the unused stage was lowered: {all:?}"
    );
    let only_b = descriptions(&graph_json(&[
        "graph", "--format", "json", "--target", "b", p,
    ]));
    assert!(!only_b.iter().any(|d| d.contains("echo a")), "{only_b:?}");
}

fn digest_of(v: &Value, needle: &str) -> String {
    v["graph"]["vertices"]
        .as_array()
        .expect("vertices")
        .iter()
        .find(|x| {
            x["meta"]["description"]
                .as_str()
                .unwrap_or("")
                .contains(needle)
        })
        .unwrap_or_else(|| panic!("no vertex described with {needle:?}"))["digest"]
        .as_str()
        .expect("digest")
        .to_string()
}

#[test]
fn a_build_arg_changes_only_the_steps_that_see_it() {
    let ctx = Context::new().file("Dockerfile", MULTI);
    let p = ctx.path().to_str().expect("utf-8");
    let v1 = graph_json(&["graph", "--format", "json", p]);
    let v2 = graph_json(&["graph", "--format", "json", "--build-arg", "VERSION=2", p]);
    assert_ne!(digest_of(&v1, "echo a"), digest_of(&v2, "echo a"));
    assert_eq!(digest_of(&v1, "echo b"), digest_of(&v2, "echo b"));
}

#[test]
fn named_context_overrides_a_stage_and_stdin_dockerfile_works() {
    let ctx = Context::new();
    let other = Context::new().file("x", "x");
    let p = ctx.path().to_str().expect("utf-8");
    let arg = format!("b={}", other.path().display());
    let r = run(
        KILN,
        &[
            "graph",
            "--format",
            "json",
            "-f",
            "-",
            "--build-context",
            &arg,
            p,
        ],
        Some(MULTI.as_bytes()),
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
    let v: Value = serde_json::from_str(&r.stdout).expect("json");
    let d = descriptions(&v);
    assert!(
        !d.iter().any(|x| x.contains("echo b")),
        "stage b should be replaced: {d:?}"
    );
    assert!(v["graph"]["vertices"]
        .as_array()
        .expect("vertices")
        .iter()
        .any(|x| x["op"]["source"] == "local" && x["op"]["name"] == "b"));
}
