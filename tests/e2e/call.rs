//! `kiln build --call=check|outline|targets` (and `--check`): BuildKit's frontend subrequests, answered without
//! building and printed as `docker buildx build --call=...` prints them. The Dockerfiles and expected values are
//! those of BuildKit's testOutlineArgs, testOutlineSecrets and testTargetsList.

use base64::Engine as _;
use kiln_tests::{Context, Root};

use crate::KILN;

/// BuildKit's testOutlineArgs Dockerfile (Unix), asked with `--build-arg BAR=678 --target target`.
const OUTLINE_ARGS: &str = r#"
ARG inherited=box
ARG inherited2=box2
ARG unused=abc${inherited2}
# sfx is a suffix
ARG sfx="usy${inherited}"

FROM b${sfx} AS first
# this is not assigned to anything
ARG FOO=123
# BAR is a number
ARG BAR=456
RUN true

FROM alpine${unused} AS second
ARG BAZ
RUN true

FROM scratch AS third
ARG ABC=a
# check=skip=all
ARG password
# alternate_password will show up in the outline
# check=skip=all
ARG alternate_password

# target defines build target
FROM third AS target
COPY --from=first /etc/passwd /

FROM second
"#;

/// BuildKit's testOutlineSecrets Dockerfile (Unix), asked with `--build-arg BAR=678 --target target`.
const OUTLINE_SECRETS: &str = r#"
FROM busybox AS first
RUN --mount=type=secret,target=/etc/passwd,required=true --mount=type=ssh true

FROM alpine AS second
RUN --mount=type=secret,id=unused --mount=type=ssh,id=ssh2 true

FROM scratch AS third
ARG BAR
RUN --mount=type=secret,id=second${BAR} true

FROM third AS target
COPY --from=first /foo /
RUN --mount=type=ssh,id=ssh3,required true

FROM second
"#;

/// BuildKit's testTargetsList Dockerfile.
const TARGETS: &str = r#"
# build defines stage for compiling the binary
FROM alpine AS build
RUN true

FROM busybox as second
RUN false

FROM alpine
RUN false

# binary returns the compiled binary
FROM second AS binary
"#;

fn call(root: &Root, ctx: &Context, extra: &[&str]) -> kiln_tests::Run {
    let mut args = vec!["build"];
    args.extend_from_slice(extra);
    args.push(ctx.path().to_str().expect("utf-8"));
    root.kiln(KILN, &args)
}

fn json(r: &kiln_tests::Run) -> serde_json::Value {
    assert_eq!(r.code, 0, "{}", r.stderr);
    serde_json::from_str(&r.stdout).unwrap_or_else(|e| panic!("{e}: {}", r.stdout))
}

fn source(v: &serde_json::Value) -> String {
    let b64 = v.as_str().expect("a base64 source");
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(b64)
        .expect("base64");
    String::from_utf8(bytes).expect("utf-8")
}

#[test]
fn outline_prints_the_targets_args_with_values_and_descriptions() {
    let root = Root::empty();
    let ctx = Context::new().file("Dockerfile", OUTLINE_ARGS);
    let r = call(
        &root,
        &ctx,
        &[
            "--call=outline",
            "--build-arg",
            "BAR=678",
            "--target",
            "target",
        ],
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(
        r.stdout,
        "TARGET:      target\n\
         DESCRIPTION: defines build target\n\
         \n\
         BUILD ARG            VALUE    DESCRIPTION\n\
         inherited            box      \n\
         sfx                  usybox   is a suffix\n\
         FOO                  123      \n\
         BAR                  678      is a number\n\
         ABC                  a        \n\
         password                      \n\
         alternate_password            will show up in the outline\n\
         \n"
    );
    // Nothing was built: the outline only reads the Dockerfile.
    let images = root.kiln(KILN, &["images"]);
    assert!(!images.stdout.contains("target"), "{}", images.stdout);
}

#[test]
fn outline_json_is_buildkits_outline() {
    let root = Root::empty();
    let ctx = Context::new().file("Dockerfile", OUTLINE_ARGS);
    let v = json(&call(
        &root,
        &ctx,
        &[
            "--call=outline,format=json",
            "--build-arg",
            "BAR=678",
            "--target",
            "target",
        ],
    ));
    assert_eq!(v["name"], "target");
    assert_eq!(v["description"], "defines build target");
    assert_eq!(source(&v["sources"][0]), OUTLINE_ARGS);
    let args = v["args"].as_array().expect("args");
    let got: Vec<(String, String, String, u64)> = args
        .iter()
        .map(|a| {
            (
                a["name"].as_str().unwrap_or("").to_string(),
                a["value"].as_str().unwrap_or("").to_string(),
                a["description"].as_str().unwrap_or("").to_string(),
                a["location"]["ranges"][0]["start"]["line"]
                    .as_u64()
                    .unwrap_or(0),
            )
        })
        .collect();
    let want = [
        ("inherited", "box", "", 2),
        ("sfx", "usybox", "is a suffix", 6),
        ("FOO", "123", "", 10),
        ("BAR", "678", "is a number", 12),
        ("ABC", "a", "", 20),
        ("password", "", "", 22),
        ("alternate_password", "", "will show up in the outline", 25),
    ];
    let want: Vec<(String, String, String, u64)> = want
        .iter()
        .map(|(n, v, d, l)| (n.to_string(), v.to_string(), d.to_string(), *l))
        .collect();
    assert_eq!(got, want);
    // Empty fields are left out, as Go's omitempty leaves them; source index 0 too.
    assert!(args[0].get("description").is_none(), "{}", args[0]);
    assert!(args[0]["location"].get("sourceIndex").is_none());
    assert!(v.get("secrets").is_none() && v.get("ssh").is_none());
}

#[test]
fn outline_lists_the_secrets_and_ssh_ids_the_target_mounts() {
    let root = Root::empty();
    let ctx = Context::new().file("Dockerfile", OUTLINE_SECRETS);
    let base = ["--build-arg", "BAR=678", "--target", "target"];
    let mut args = vec!["--call=outline"];
    args.extend_from_slice(&base);
    let r = call(&root, &ctx, &args);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(
        r.stdout,
        "TARGET: target\n\
         \n\
         BUILD ARG   VALUE   DESCRIPTION\n\
         BAR         678     \n\
         \n\
         SECRET      REQUIRED\n\
         passwd      true\n\
         second678   \n\
         \n\
         SSH       REQUIRED\n\
         default   \n\
         ssh3      true\n\
         \n"
    );
    let mut args = vec!["--call", "outline,format=json"];
    args.extend_from_slice(&base);
    let v = json(&call(&root, &ctx, &args));
    let list = |key: &str| -> Vec<(String, bool, u64)> {
        v[key]
            .as_array()
            .expect("a list")
            .iter()
            .map(|m| {
                (
                    m["name"].as_str().unwrap_or("").to_string(),
                    m["required"].as_bool().unwrap_or(false),
                    m["location"]["ranges"][0]["start"]["line"]
                        .as_u64()
                        .unwrap_or(0),
                )
            })
            .collect()
    };
    assert_eq!(
        list("secrets"),
        vec![("passwd".into(), true, 3), ("second678".into(), false, 10)]
    );
    assert_eq!(
        list("ssh"),
        vec![("default".into(), false, 3), ("ssh3".into(), true, 14)]
    );
}

#[test]
fn targets_lists_the_stages_with_descriptions_and_the_default() {
    let root = Root::empty();
    let ctx = Context::new().file("Dockerfile", TARGETS);
    let r = call(&root, &ctx, &["--call=targets"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(
        r.stdout,
        "TARGET           DESCRIPTION\n\
         build            defines stage for compiling the binary\n\
         second           \n\
         \x20                \n\
         binary (default) returns the compiled binary\n"
    );
    let v = json(&call(&root, &ctx, &["--call=targets,format=json"]));
    assert_eq!(source(&v["sources"][0]), TARGETS);
    let t = v["targets"].as_array().expect("targets");
    assert_eq!(t.len(), 4);
    assert_eq!(t[0]["name"], "build");
    assert_eq!(t[0]["base"], "alpine");
    assert_eq!(
        t[0]["description"],
        "defines stage for compiling the binary"
    );
    assert!(t[0].get("default").is_none());
    assert_eq!(t[0]["location"]["ranges"][0]["start"]["line"], 3);
    assert_eq!(t[1]["name"], "second");
    assert_eq!(t[1]["base"], "busybox");
    assert_eq!(t[1]["location"]["ranges"][0]["start"]["line"], 6);
    assert!(t[2].get("name").is_none());
    assert_eq!(t[2]["location"]["ranges"][0]["start"]["line"], 9);
    assert_eq!(t[3]["name"], "binary");
    assert_eq!(t[3]["default"], true);
    assert_eq!(t[3]["description"], "returns the compiled binary");
    assert_eq!(t[3]["location"]["ranges"][0]["start"]["line"], 13);
}

#[test]
fn check_prints_buildx_warnings_and_fails_when_it_finds_any() {
    let root = Root::empty();
    let ctx = Context::new().file("Dockerfile", "FROM busybox as base\nCMD echo hi\n");
    let r = call(&root, &ctx, &["--call=check"]);
    assert_eq!(r.code, 1, "buildx exits 1 on findings: {}", r.stderr);
    assert_eq!(
        r.stdout,
        "Check complete, 2 warnings have been found!\n\
         \n\
         WARNING: FromAsCasing - https://docs.docker.com/go/dockerfile/rule/from-as-casing/\n\
         'as' and 'FROM' keywords' casing do not match\n\
         Dockerfile:1\n\
         --------------------\n\
         \x20  1 | >>> FROM busybox as base\n\
         \x20  2 |     CMD echo hi\n\
         \x20  3 |     \n\
         --------------------\n\
         \n\
         WARNING: JSONArgsRecommended - https://docs.docker.com/go/dockerfile/rule/json-args-recommended/\n\
         JSON arguments recommended for CMD to prevent unintended behavior related to OS signals\n\
         Dockerfile:2\n\
         --------------------\n\
         \x20  1 |     FROM busybox as base\n\
         \x20  2 | >>> CMD echo hi\n\
         \x20  3 |     \n\
         --------------------\n"
    );
    // `--check` is `--call=check`; ignorestatus=true keeps the report and exits 0.
    let alias = call(&root, &ctx, &["--check"]);
    assert_eq!((alias.code, &alias.stdout), (1, &r.stdout));
    let ignored = call(&root, &ctx, &["--call=check,ignorestatus=true"]);
    assert_eq!((ignored.code, &ignored.stdout), (0, &r.stdout));
    let v: serde_json::Value = {
        let j = call(&root, &ctx, &["--call=check,format=json"]);
        assert_eq!(j.code, 1, "{}", j.stderr);
        serde_json::from_str(&j.stdout).unwrap_or_else(|e| panic!("{e}: {}", j.stdout))
    };
    assert_eq!(v["warnings"][0]["ruleName"], "FromAsCasing");
    assert_eq!(
        v["warnings"][0]["description"],
        "The 'as' keyword should match the case of the 'from' keyword"
    );
    assert_eq!(
        v["warnings"][0]["url"],
        "https://docs.docker.com/go/dockerfile/rule/from-as-casing/"
    );
    assert_eq!(
        v["warnings"][0]["detail"],
        "'as' and 'FROM' keywords' casing do not match"
    );
    assert_eq!(
        v["warnings"][1]["location"]["ranges"][0]["start"]["line"],
        2
    );
    assert_eq!(v["sources"][0]["filename"], "Dockerfile");
    assert_eq!(v["sources"][0]["language"], "Dockerfile");
    assert_eq!(
        source(&v["sources"][0]["data"]),
        "FROM busybox as base\nCMD echo hi\n"
    );
    let clean = Context::new().file("Dockerfile", "FROM busybox\nCMD [\"true\"]\n");
    let r = call(&root, &clean, &["--call=check"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(r.stdout, "Check complete, no warnings found.\n");
}

#[test]
fn a_dockerfile_that_cannot_build_fails_the_check_after_its_warnings() {
    let root = Root::empty();
    let ctx = Context::new().file(
        "Dockerfile",
        "FROM busybox AS a\nFROM busybox AS a\nfrom busybox\n",
    );
    let r = call(&root, &ctx, &["--call=check,ignorestatus=true"]);
    assert_eq!(r.code, 1, "{}\n{}", r.stdout, r.stderr);
    assert!(
        r.stdout.contains("WARNING: DuplicateStageName"),
        "{}",
        r.stdout
    );
    assert!(
        r.stderr.contains("duplicate stage name \"a\""),
        "{}",
        r.stderr
    );
    assert!(
        r.stderr.contains(" 2 | >>> FROM busybox AS a"),
        "{}",
        r.stderr
    );
    let v: serde_json::Value = {
        let j = call(&root, &ctx, &["--call=check,format=json"]);
        assert_eq!(j.code, 1, "{}", j.stderr);
        serde_json::from_str(&j.stdout).unwrap_or_else(|e| panic!("{e}: {}", j.stdout))
    };
    assert_eq!(v["buildError"]["location"]["ranges"][0]["start"]["line"], 2);
}

#[test]
fn bad_call_values_and_targets_are_usage_errors() {
    let root = Root::empty();
    let ctx = Context::new().file("Dockerfile", TARGETS);
    for (arg, says) in [
        ("--call=bogus", "unknown method \"bogus\""),
        ("--call=outline,format=yaml", "format \"yaml\""),
        ("--call=outline,colour=red", "invalid field \"colour=red\""),
    ] {
        let r = call(&root, &ctx, &[arg]);
        assert_eq!(r.code, 2, "{arg}: {}", r.stderr);
        assert!(r.stderr.contains(says), "{arg}: {}", r.stderr);
    }
    let r = call(&root, &ctx, &["--call=outline", "--target", "binry"]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(
        r.stderr
            .contains("target stage \"binry\" could not be found (did you mean binary?)"),
        "{}",
        r.stderr
    );
}
