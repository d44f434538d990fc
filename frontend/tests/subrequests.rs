//! The outline and targets subrequests (`kiln build --call=outline|targets`), against BuildKit's own
//! expectations: the Dockerfiles and expected values of its `dockerfile_outline_test.go` (testOutlineArgs,
//! testOutlineSecrets, testOutlineRecursiveArgs) and `dockerfile_targets_test.go` (testTargetsList).

use frontend::subrequests::{outline, targets, Outline};
use frontend::{BuildOpts, NoResolver};

fn outline_of(src: &str, build_args: &[(&str, &str)], target: Option<&str>) -> Outline {
    let df = frontend::parser::parse(src).expect("parses");
    let mut opts = BuildOpts {
        target: target.map(str::to_string),
        ..BuildOpts::default()
    };
    for (k, v) in build_args {
        opts.build_args.insert(k.to_string(), v.to_string());
    }
    outline(&df, src.as_bytes(), &opts, &NoResolver).unwrap_or_else(|e| panic!("outline: {e}"))
}

/// BuildKit's testOutlineArgs (its Unix Dockerfile), `--build-arg BAR=678 --target target`.
pub const OUTLINE_ARGS: &str = r#"
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

#[test]
fn outline_args() {
    let o = outline_of(OUTLINE_ARGS, &[("BAR", "678")], Some("target"));
    assert_eq!(o.name, "target");
    assert_eq!(o.description, "defines build target");
    assert_eq!(o.sources, vec![OUTLINE_ARGS.as_bytes().to_vec()]);
    let args: Vec<(&str, &str, &str, usize)> = o
        .args
        .iter()
        .map(|a| {
            (
                a.name.as_str(),
                a.value.as_str(),
                a.description.as_str(),
                a.location.line(),
            )
        })
        .collect();
    assert_eq!(
        args,
        vec![
            ("inherited", "box", "", 2),
            ("sfx", "usybox", "is a suffix", 6),
            ("FOO", "123", "", 10),
            ("BAR", "678", "is a number", 12),
            ("ABC", "a", "", 20),
            ("password", "", "", 22),
            ("alternate_password", "", "will show up in the outline", 25),
        ]
    );
    assert_eq!(o.args[0].location.source_index, 0);
}

/// BuildKit's testOutlineSecrets (its Unix Dockerfile), `--build-arg BAR=678 --target target`.
pub const OUTLINE_SECRETS: &str = r#"
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

#[test]
fn outline_secrets() {
    let o = outline_of(OUTLINE_SECRETS, &[("BAR", "678")], Some("target"));
    assert_eq!(o.sources, vec![OUTLINE_SECRETS.as_bytes().to_vec()]);
    let secrets: Vec<(&str, bool, usize)> = o
        .secrets
        .iter()
        .map(|m| (m.name.as_str(), m.required, m.location.line()))
        .collect();
    assert_eq!(secrets, vec![("passwd", true, 3), ("second678", false, 10)]);
    let ssh: Vec<(&str, bool, usize)> = o
        .ssh
        .iter()
        .map(|m| (m.name.as_str(), m.required, m.location.line()))
        .collect();
    assert_eq!(ssh, vec![("default", false, 3), ("ssh3", true, 14)]);
}

/// BuildKit's testOutlineRecursiveArgs: a global ARG whose default reads others makes them used too.
#[test]
fn outline_recursive_args() {
    let src = r#"
ARG FOO=123
ARG ABC=abc
ARG DEF=def
ARG FOO=${FOO}${ABC}
ARG BAR=${FOO}456
ARG FOO=${FOO}456${BAR}
FROM scratch
ARG FOO
ARG INFOO=123
ARG INBAR=${INFOO}456
ARG INFOO=${INFOO}456${INBAR}
"#;
    let o = outline_of(src, &[], None);
    let args: Vec<(&str, &str)> = o
        .args
        .iter()
        .map(|a| (a.name.as_str(), a.value.as_str()))
        .collect();
    assert_eq!(
        args,
        vec![
            ("ABC", "abc"),
            ("BAR", "123abc456"),
            ("FOO", "123abc456123abc456"),
            ("INBAR", "123456"),
            ("INFOO", "123456123456"),
        ]
    );
    // An unnamed target without a description prints no TARGET block.
    assert!(o.to_text().starts_with("BUILD ARG"), "{}", o.to_text());
}

/// BuildKit's testTargetsList.
pub const TARGETS: &str = r#"
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

#[test]
fn targets_list() {
    let df = frontend::parser::parse(TARGETS).expect("parses");
    let l = targets(&df, TARGETS.as_bytes()).expect("targets");
    assert_eq!(l.sources, vec![TARGETS.as_bytes().to_vec()]);
    let got: Vec<(&str, &str, &str, bool, usize)> = l
        .targets
        .iter()
        .map(|t| {
            (
                t.name.as_str(),
                t.base.as_str(),
                t.description.as_str(),
                t.default,
                t.location.line(),
            )
        })
        .collect();
    assert_eq!(
        got,
        vec![
            (
                "build",
                "alpine",
                "defines stage for compiling the binary",
                false,
                3
            ),
            ("second", "busybox", "", false, 6),
            ("", "alpine", "", false, 9),
            ("binary", "second", "returns the compiled binary", true, 13),
        ]
    );
    assert_eq!(
        l.to_text(),
        "TARGET           DESCRIPTION\n\
         build            defines stage for compiling the binary\n\
         second           \n\
         \x20                \n\
         binary (default) returns the compiled binary\n"
    );
}

#[test]
fn outline_text_is_buildkits_print_outline() {
    let o = outline_of(OUTLINE_SECRETS, &[("BAR", "678")], Some("target"));
    assert_eq!(
        o.to_text(),
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
}

#[test]
fn json_has_buildkits_field_names() {
    let o = outline_of(OUTLINE_ARGS, &[("BAR", "678")], Some("target"));
    let v: serde_json::Value =
        serde_json::from_str(&frontend::subrequests::go_json(&o).expect("json")).expect("parses");
    assert_eq!(v["name"], "target");
    assert_eq!(v["args"][1]["name"], "sfx");
    assert_eq!(v["args"][1]["value"], "usybox");
    assert_eq!(v["args"][1]["description"], "is a suffix");
    assert_eq!(v["args"][1]["location"]["ranges"][0]["start"]["line"], 6);
    assert!(v["args"][0].get("description").is_none());
    assert!(v["args"][0]["location"].get("sourceIndex").is_none());
    assert!(v["sources"][0].is_string());
}
