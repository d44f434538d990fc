//! Progress as tools read it: `--progress=rawjson` is BuildKit's `SolveStatus` stream (one JSON object a line,
//! buildx's field names, base64 log data, stable vertex digests); plain progress times log lines from the start of
//! their step and reports a cached step once.

use base64::Engine as _;
use kiln_tests::{Context, Root};

use crate::KILN;

fn statuses(stderr: &str) -> Vec<serde_json::Value> {
    stderr
        .lines()
        .map(|l| {
            serde_json::from_str(l)
                .unwrap_or_else(|e| panic!("not one JSON object a line: {l:?}: {e}"))
        })
        .collect()
}

/// Every vertex record of the stream.
fn vertexes(stream: &[serde_json::Value]) -> Vec<&serde_json::Value> {
    stream
        .iter()
        .filter_map(|s| s["vertexes"].as_array())
        .flatten()
        .collect()
}

#[test]
fn rawjson_is_buildkits_solve_status_stream() {
    let root = Root::with_busybox(KILN);
    let ctx = Context::new().file(
        "Dockerfile",
        "FROM busybox\nRUN echo first-line && echo second-line\nRUN echo after\n",
    );
    let p = ctx.path().to_str().expect("utf-8");
    let r = root.kiln(KILN, &["build", "--progress=rawjson", "-t", "raw", p]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let stream = statuses(&r.stderr);
    for s in &stream {
        let keys: Vec<&String> = s.as_object().expect("an object").keys().collect();
        assert!(
            keys.iter()
                .all(|k| ["vertexes", "statuses", "logs", "warnings"].contains(&k.as_str())),
            "only SolveStatus fields: {s}"
        );
    }
    let vs = vertexes(&stream);
    let run = vs
        .iter()
        .find(|v| {
            v["name"] == "[2/3] RUN echo first-line && echo second-line"
                && v["completed"].is_string()
        })
        .unwrap_or_else(|| panic!("the RUN completed: {}", r.stderr));
    let digest = run["digest"].as_str().expect("digest").to_string();
    assert!(
        digest.starts_with("sha256:") && digest.len() == 71,
        "{digest}"
    );
    assert!(run["started"].is_string(), "{run}");
    assert!(run["cached"].is_null(), "ran, not cached: {run}");
    let from = vs
        .iter()
        .find(|v| v["name"] == "[1/3] FROM busybox")
        .expect("the FROM vertex");
    assert_eq!(
        run["inputs"][0], from["digest"],
        "inputs name the vertices read"
    );
    let logs: String = stream
        .iter()
        .filter_map(|s| s["logs"].as_array())
        .flatten()
        .filter(|l| l["vertex"] == digest.as_str())
        .map(|l| {
            assert!(l["timestamp"].is_string(), "{l}");
            let data = l["data"].as_str().expect("data");
            String::from_utf8(
                base64::engine::general_purpose::STANDARD
                    .decode(data)
                    .expect("base64"),
            )
            .expect("utf-8")
        })
        .collect();
    assert_eq!(logs, "first-line\nsecond-line\n");
    // The same step is the same vertex in the next build, which takes it from the cache.
    let again = root.kiln(KILN, &["build", "--progress=rawjson", "-t", "raw", p]);
    assert_eq!(again.code, 0, "{}", again.stderr);
    let stream = statuses(&again.stderr);
    assert!(
        vertexes(&stream)
            .iter()
            .any(|v| v["digest"] == digest.as_str() && v["cached"] == true),
        "{}",
        again.stderr
    );
}

#[test]
fn plain_log_times_count_from_the_start_of_their_step() {
    let root = Root::with_busybox(KILN);
    let ctx = Context::new().file(
        "Dockerfile",
        "FROM busybox\nRUN sleep 2\nRUN echo late-line\n",
    );
    let r = root.kiln(
        KILN,
        &[
            "build",
            "--progress=plain",
            ctx.path().to_str().expect("utf-8"),
        ],
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
    let line = r
        .stderr
        .lines()
        .find(|l| l.ends_with(" late-line") && !l.contains(" RUN "))
        .unwrap_or_else(|| panic!("{}", r.stderr));
    let t: f64 = line
        .split(' ')
        .nth(1)
        .and_then(|t| t.parse().ok())
        .unwrap_or_else(|| panic!("#N SECONDS line: {line}"));
    assert!(
        t < 1.5,
        "timed from its own step, not the build (2s sleep before): {line}"
    );
}

#[test]
fn a_cached_step_is_reported_once() {
    let root = Root::with_busybox(KILN);
    let ctx = Context::new().file(
        "Dockerfile",
        "FROM busybox AS base\nRUN echo base > /b\nFROM base AS one\nRUN echo one > /1\n\
         FROM base AS two\nRUN echo two > /2\nFROM busybox\nCOPY --from=one /1 /1\nCOPY --from=two /2 /2\n",
    );
    let p = ctx.path().to_str().expect("utf-8");
    assert_eq!(root.kiln(KILN, &["build", p]).code, 0);
    let r = root.kiln(KILN, &["build", "--progress=plain", p]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let cached: Vec<&str> = r
        .stderr
        .lines()
        .filter(|l| l.ends_with(" CACHED"))
        .collect();
    let mut unique = cached.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(cached.len(), unique.len(), "{}", r.stderr);
    let headers: Vec<&str> = r
        .stderr
        .lines()
        .filter(|l| l.starts_with('#') && l.contains(" ["))
        .collect();
    assert_eq!(
        cached.len(),
        headers.len(),
        "every step cached, once: {}",
        r.stderr
    );
}
