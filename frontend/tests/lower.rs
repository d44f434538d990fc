//! Lowering semantics: build-arg scoping, stages, config accumulation, history and digests, checked on the
//! graph the frontend produces.

use std::collections::BTreeMap;

use frontend::{lower, BuildOpts, ImageResolver, Lowered, NoResolver, ResolveError, ResolvedImage};
use llb::{FileAction, MountKind, Op, SourceOp};
use oci::{Digest, Image, Platform};

fn lower_with(src: &str, opts: &BuildOpts, resolver: &dyn ImageResolver) -> Lowered {
    let df = frontend::parser::parse(src).expect("parses");
    lower(&df, opts, resolver).unwrap_or_else(|e| panic!("lowering failed: {e}"))
}

fn lower_str(src: &str) -> Lowered {
    lower_with(src, &BuildOpts::default(), &NoResolver)
}

/// The progress names of every vertex.
fn step_names(l: &Lowered) -> Vec<String> {
    l.definition
        .ids()
        .map(|id| l.definition.vertex(id).meta.description.clone())
        .collect()
}

/// The error lowering `src` must give.
fn lower_err(src: &str) -> String {
    let df = frontend::parser::parse(src).expect("parses");
    match lower(&df, &BuildOpts::default(), &NoResolver) {
        Err(e) => e.to_string(),
        Ok(_) => panic!("{src}: lowering must fail"),
    }
}

fn opts_with_args(args: &[(&str, &str)]) -> BuildOpts {
    BuildOpts {
        build_args: args
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        ..BuildOpts::default()
    }
}

/// Every exec op reachable from the target, in topological order.
fn execs(l: &Lowered) -> Vec<llb::ExecOp> {
    let roots: Vec<_> = l.target.root.into_iter().collect();
    l.definition
        .closure(&roots)
        .into_iter()
        .filter_map(|id| match &l.definition.vertex(id).op {
            Op::Exec(e) => Some(e.clone()),
            _ => None,
        })
        .collect()
}

fn env_of(e: &llb::ExecOp, key: &str) -> Option<String> {
    e.env.iter().rev().find_map(|kv| {
        let (k, v) = kv.split_once('=')?;
        (k == key).then(|| v.to_string())
    })
}

#[test]
fn global_args_reach_from_but_a_stage_must_redeclare_them() {
    let l = lower_str("ARG TAG=3.20\nFROM alpine:${TAG}\nRUN echo $TAG\nARG TAG\nRUN echo $TAG\n");
    let e = execs(&l);
    assert_eq!(env_of(&e[0], "TAG"), None, "not redeclared yet");
    assert_eq!(env_of(&e[1], "TAG").as_deref(), Some("3.20"));
    let roots: Vec<_> = l.target.root.into_iter().collect();
    let image = l
        .definition
        .closure(&roots)
        .into_iter()
        .find_map(|id| match &l.definition.vertex(id).op {
            Op::Source(SourceOp::Image(i)) => Some(i.reference.clone()),
            _ => None,
        })
        .expect("image source");
    assert_eq!(image, "docker.io/library/alpine:3.20");
}

#[test]
fn build_args_override_defaults_and_env_overrides_args() {
    let src = "FROM busybox\nARG A=default\nARG B=b\nENV B=from-env\nRUN true\n";
    let l = lower_with(src, &opts_with_args(&[("A", "given")]), &NoResolver);
    let e = &execs(&l)[0];
    assert_eq!(env_of(e, "A").as_deref(), Some("given"));
    assert_eq!(env_of(e, "B").as_deref(), Some("from-env"));
    assert!(l
        .target
        .image
        .config
        .env
        .contains(&"B=from-env".to_string()));
    assert!(
        !l.target
            .image
            .config
            .env
            .iter()
            .any(|kv| kv.starts_with("A=")),
        "ARGs never persist in the config"
    );
}

#[test]
fn predefined_platform_args_and_proxy_args() {
    let src = "FROM --platform=$BUILDPLATFORM busybox\nARG TARGETARCH\nRUN echo $TARGETARCH\n";
    let opts = BuildOpts {
        target_platform: Some("linux/arm64".parse().expect("platform")),
        build_args: BTreeMap::from([("HTTP_PROXY".to_string(), "http://proxy:3128".to_string())]),
        ..BuildOpts::default()
    };
    let l = lower_with(src, &opts, &NoResolver);
    let e = &execs(&l)[0];
    assert_eq!(env_of(e, "TARGETARCH").as_deref(), Some("arm64"));
    // Proxies reach the process under both names (BuildKit's testBuiltinArgs reads $HTTP_PROXY after
    // `--build-arg http_proxy=…`), but apart from the environment that names the step.
    assert_eq!(env_of(e, "HTTP_PROXY"), None);
    assert_eq!(
        e.proxy_env,
        [
            "HTTP_PROXY=http://proxy:3128",
            "http_proxy=http://proxy:3128"
        ]
    );
    // …so another proxy is the same step: same vertex digests, same cache keys.
    let other = BuildOpts {
        build_args: BTreeMap::from([(
            "http_proxy".to_string(),
            "http://elsewhere:8080".to_string(),
        )]),
        ..opts.clone()
    };
    let l2 = lower_with(src, &other, &NoResolver);
    let root_digest = |l: &Lowered| l.definition.digest(l.target.root.expect("a root")).clone();
    assert_eq!(
        root_digest(&l2),
        root_digest(&l),
        "a changed proxy changes no digest"
    );
    assert_eq!(
        execs(&l2)[0].proxy_env,
        [
            "HTTP_PROXY=http://elsewhere:8080",
            "http_proxy=http://elsewhere:8080"
        ]
    );
    let run_history = l
        .target
        .image
        .history
        .iter()
        .find(|h| h.created_by.starts_with("RUN"))
        .expect("RUN history");
    assert!(
        !run_history.created_by.contains("proxy"),
        "{}",
        run_history.created_by
    );
    assert_eq!(
        run_history.created_by,
        "RUN |1 TARGETARCH=arm64 /bin/sh -c echo $TARGETARCH # buildkit"
    );
    assert_eq!(
        l.target.platform,
        Platform::host(),
        "FROM --platform=$BUILDPLATFORM builds for the build platform"
    );
    assert!(
        l.unused_build_args.is_empty(),
        "proxy args are never reported unused"
    );
}

#[test]
fn stages_by_name_and_index_inherit_config() {
    let src = "FROM busybox AS base\nENV X=1\nWORKDIR /w\nFROM base AS second\nRUN pwd\nFROM scratch\nCOPY --from=1 /w /w\nCOPY --from=base /etc /etc\n";
    let l = lower_str(src);
    let e = execs(&l);
    assert_eq!(e.len(), 1);
    assert_eq!(e[0].cwd, "/w");
    assert_eq!(env_of(&e[0], "X").as_deref(), Some("1"));
    assert_eq!(l.stages.len(), 3);
    assert_eq!(
        l.target.image.config.env,
        ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"]
    );
}

struct FakeResolver;

impl ImageResolver for FakeResolver {
    fn resolve(
        &self,
        reference: &str,
        _p: &Platform,
    ) -> Result<Option<ResolvedImage>, ResolveError> {
        if reference != "docker.io/library/base:latest" {
            return Ok(None);
        }
        let mut image = Image::default();
        image.config.env = vec!["PATH=/bin".to_string(), "FROM_BASE=yes".to_string()];
        image.config.on_build = vec!["RUN echo triggered".to_string()];
        image.config.cmd = Some(vec!["sh".to_string()]);
        Ok(Some(ResolvedImage {
            digest: Some(Digest::sha256_of(b"base manifest")),
            image,
        }))
    }
}

#[test]
fn onbuild_triggers_of_a_resolved_base_run_first_and_the_source_is_pinned() {
    let l = lower_with(
        "FROM base\nRUN echo mine\n",
        &BuildOpts::default(),
        &FakeResolver,
    );
    let e = execs(&l);
    assert_eq!(e.len(), 2);
    assert_eq!(e[0].args[2], "echo triggered");
    assert_eq!(env_of(&e[1], "FROM_BASE").as_deref(), Some("yes"));
    assert!(
        l.target.image.config.on_build.is_empty(),
        "triggers are consumed"
    );
    let pinned = l
        .definition
        .ids()
        .find_map(|id| match &l.definition.vertex(id).op {
            Op::Source(SourceOp::Image(i)) => Some(i.reference.clone()),
            _ => None,
        })
        .expect("image");
    assert_eq!(
        pinned,
        format!(
            "docker.io/library/base:latest@{}",
            Digest::sha256_of(b"base manifest")
        )
    );
    let l2 = lower_with(
        "FROM base\nENTRYPOINT [\"/x\"]\n",
        &BuildOpts::default(),
        &FakeResolver,
    );
    assert_eq!(
        l2.target.image.config.cmd, None,
        "ENTRYPOINT resets a CMD inherited from the base"
    );
}

#[test]
fn heredoc_runs_as_buildkit_runs_them() {
    let l = lower_str("FROM busybox\nRUN <<EOF\necho hi\nEOF\nRUN <<EOF\n#!/usr/bin/env python3\nprint(1)\nEOF\nRUN cat <<A <<B\na\nA\nb\nB\n");
    let e = execs(&l);
    assert_eq!(e[0].args, ["/bin/sh", "-c", "echo hi\n"]);
    assert_eq!(e[1].args, ["/bin/sh", "-c", "/dev/pipes/EOF"]);
    assert!(e[1]
        .mounts
        .iter()
        .any(|m| m.target == "/dev/pipes/" && m.readonly));
    assert_eq!(e[2].args[2], "cat <<A <<B\na\nA\nb\nB");
}

#[test]
fn copy_heredoc_link_chown_and_mounts() {
    let src = "FROM busybox\nWORKDIR /app\nCOPY --chown=1000:app --chmod=0640 <<EOF conf.txt\nv=$HOME\nEOF\nCOPY --link a.txt /dst/\nRUN --mount=type=cache,target=.cache --mount=type=secret,id=tok,required true\n";
    let l = lower_str(src);
    let ops: Vec<Op> = l
        .definition
        .ids()
        .map(|id| l.definition.vertex(id).op.clone())
        .collect();
    assert!(ops.iter().any(|o| matches!(o, Op::File(f) if f.actions.iter().any(|a| matches!(a, FileAction::Mkfile { path, .. } if path == "/EOF")))));
    assert!(
        ops.iter().any(|o| matches!(o, Op::Merge(_))),
        "--link merges a separate layer"
    );
    let copy = ops
        .iter()
        .find_map(|o| match o {
            Op::File(f) => f.actions.iter().find_map(|a| match a {
                FileAction::Copy(c) if c.dest == "/app/conf.txt" => Some(c.clone()),
                _ => None,
            }),
            _ => None,
        })
        .expect("heredoc copy");
    assert_eq!(copy.mode, Some(llb::FileMode::Octal(0o640)));
    let e = &execs(&l)[0];
    let cache = e
        .mounts
        .iter()
        .find(|m| matches!(m.kind, MountKind::Cache { .. }))
        .expect("cache mount");
    assert_eq!(cache.target, "/app/.cache");
    assert!(matches!(&cache.kind, MountKind::Cache { id, .. } if id == "/app/.cache"));
    assert!(e.mounts.iter().any(
        |m| matches!(&m.kind, MountKind::Secret { id, required: true, .. } if id == "tok")
            && m.target == "/run/secrets/tok"
    ));
}

#[test]
fn digests_are_stable_and_independent_stages_unaffected_by_edits() {
    let a = "FROM busybox AS one\nRUN echo one\nFROM busybox AS two\nRUN echo two\nFROM scratch\nCOPY --from=one /a /a\nCOPY --from=two /b /b\n";
    let b = a.replace("echo two", "echo TWO");
    let d = |src: &str| {
        let l = lower_str(src);
        l.definition
            .ids()
            .map(|id| {
                (
                    l.definition.vertex(id).meta.description.clone(),
                    l.definition.digest(id).to_string(),
                )
            })
            .collect::<BTreeMap<_, _>>()
    };
    assert_eq!(d(a), d(a));
    let (da, db) = (d(a), d(&b));
    assert_eq!(da["[one 2/2] RUN echo one"], db["[one 2/2] RUN echo one"]);
    assert!(!db.contains_key("[two 2/2] RUN echo two"));
}

#[test]
fn copy_steps_are_named_with_their_flags_as_buildkit_names_them() {
    let l =
        lower_str("FROM busybox AS b\nRUN true\nFROM busybox\nCOPY --from=b --chown=1:1 /o /o\n");
    let names = step_names(&l);
    assert!(
        names
            .iter()
            .any(|n| n == "[stage-1 2/2] COPY --from=b --chown=1:1 /o /o"),
        "{names:?}"
    );
}

#[test]
fn no_cache_filter_marks_only_that_stage() {
    let src = "FROM busybox AS dep\nRUN echo dep\nFROM dep\nRUN echo final\n";
    let opts = BuildOpts {
        no_cache_filter: vec!["dep".to_string()],
        ..BuildOpts::default()
    };
    let l = lower_with(src, &opts, &NoResolver);
    for id in l.definition.ids() {
        let m = &l.definition.vertex(id).meta;
        if m.description.contains("echo dep") {
            assert!(m.ignore_cache);
        }
        if m.description.contains("echo final") {
            assert!(!m.ignore_cache);
        }
    }
}

#[test]
fn config_instructions_and_their_history() {
    let src = "FROM busybox\nSHELL [\"/bin/bash\", \"-c\"]\nCMD echo hi\nEXPOSE 80 53/udp\nVOLUME /data\nLABEL a=b \"c d\"=e\nUSER app\nSTOPSIGNAL SIGQUIT\nHEALTHCHECK --interval=5s --retries=3 CMD curl -f localhost\nWORKDIR sub\n";
    let l = lower_str(src);
    let c = &l.target.image.config;
    assert_eq!(
        c.cmd.as_deref(),
        Some(
            &[
                "/bin/bash".to_string(),
                "-c".to_string(),
                "echo hi".to_string()
            ][..]
        )
    );
    assert!(c.exposed_ports.contains_key("80/tcp") && c.exposed_ports.contains_key("53/udp"));
    assert!(c.volumes.contains_key("/data"));
    assert_eq!(c.labels.get("c d").map(String::as_str), Some("e"));
    assert_eq!(c.user, "app");
    assert_eq!(c.stop_signal, "SIGQUIT");
    let hc = c.healthcheck.as_ref().expect("healthcheck");
    assert_eq!(hc.test, ["CMD-SHELL", "curl -f localhost"]);
    assert_eq!(hc.interval, 5_000_000_000);
    assert_eq!(hc.retries, 3);
    assert_eq!(c.working_dir, "/sub");
    let created: Vec<&str> = l
        .target
        .image
        .history
        .iter()
        .map(|h| h.created_by.as_str())
        .collect();
    assert!(
        created.contains(&"CMD [\"/bin/bash\" \"-c\" \"echo hi\"]"),
        "{created:?}"
    );
    assert!(created.contains(&"EXPOSE [53/udp 80/tcp]"), "{created:?}");
    assert!(l
        .target
        .image
        .history
        .iter()
        .all(|h| h.comment == "buildkit.dockerfile.v0"));
    assert!(l.findings.iter().any(|f| f.rule == "WorkdirRelativePath"));
    // dispatchHealthcheck: Go's %+v of the config value.
    assert!(
        created.contains(
            &"HEALTHCHECK {Test:[CMD-SHELL curl -f localhost] Interval:5s Timeout:0s StartPeriod:0s \
              StartInterval:0s Retries:3}"
        ),
        "{created:?}"
    );
}

/// The history of COPY/ADD, ONBUILD as current BuildKit writes it (dispatchCopy's commit message: `--parents`,
/// `--chown`, `--chmod` expanded, never `--from` or `--link`; dispatchOnbuild commits nothing). Found by the
/// BuildKit differential.
#[test]
fn copy_and_onbuild_history_is_worded_as_buildkit_words_it() {
    let l = lower_str(
        "FROM busybox AS b\nFROM busybox\nARG U=7\nONBUILD RUN echo x\n\
         COPY --from=b --link --chown=$U:$U --chmod=0640 /x /y\nADD --chown=1 a /z\n",
    );
    let created: Vec<&str> = l
        .target
        .image
        .history
        .iter()
        .map(|h| h.created_by.as_str())
        .collect();
    assert!(
        created.contains(&"COPY --chown=7:7 --chmod=0640 /x /y # buildkit"),
        "{created:?}"
    );
    assert!(
        created.contains(&"ADD --chown=1 a /z # buildkit"),
        "{created:?}"
    );
    assert!(
        !created.iter().any(|c| c.starts_with("ONBUILD")),
        "{created:?}"
    );
}

#[test]
fn unused_build_args_are_reported() {
    let l = lower_with(
        "FROM busybox\nARG USED\n",
        &opts_with_args(&[("USED", "1"), ("UNUSED", "2")]),
        &NoResolver,
    );
    assert_eq!(l.unused_build_args, ["UNUSED"]);
    // The builder's own build args are consumed by it, never reported.
    let l = lower_with(
        "FROM busybox\n",
        &opts_with_args(&[("SOURCE_DATE_EPOCH", "0"), ("BUILDKIT_INLINE_CACHE", "1")]),
        &NoResolver,
    );
    assert!(l.unused_build_args.is_empty(), "{:?}", l.unused_build_args);
}

#[test]
fn errors_point_at_the_instruction() {
    let cases = [
        ("FROM busybox\nRUN --mount=type=cache true\n", 2, "target"),
        ("FROM busybox\nCOPY --chmod=999 a /b\n", 2, "chmod"),
        ("FROM busybox\nEXPOSE http\n", 2, "invalid port"),
        ("FROM ${NOPE:?required}\n", 1, "required"),
        (
            "FROM busybox AS a\nFROM busybox\nCOPY --from=1 /x /y\n",
            3,
            "invalid stage index",
        ),
    ];
    for (src, line, needle) in cases {
        let df = frontend::parser::parse(src).expect("parses");
        let e = lower(&df, &BuildOpts::default(), &NoResolver).expect_err(src);
        assert_eq!(e.span.map(|s| s.start_line), Some(line), "{src}: {e}");
        assert!(e.message.contains(needle), "{src}: {}", e.message);
    }
}

#[test]
fn mount_values_are_expanded_before_they_are_read_but_from_is_named_as_written() {
    // BuildKit's testMountArg: the type itself may come from an ARG.
    let l = lower_str(
        "FROM busybox\nARG MNT_TYPE=cache\nARG MNT_TARGET=/cache\nRUN --mount=type=$MNT_TYPE,target=$MNT_TARGET,uid=${UID:-7} true\n",
    );
    let e = &execs(&l)[0];
    let cache = e
        .mounts
        .iter()
        .find(|m| matches!(m.kind, MountKind::Cache { .. }))
        .expect("a cache mount from type=$MNT_TYPE");
    assert_eq!(cache.target, "/cache");
    // testMountFromError: `from` is refused when it names a variable.
    let err = lower_err("FROM busybox\nARG S=x\nRUN --mount=from=$S,type=cache,target=/t ls\n");
    assert!(
        err.contains("'from' doesn't support variable expansion"),
        "{err}"
    );
}

#[test]
fn targetstage_names_the_target_or_default() {
    // BuildKit's testTargetStageNameArg: the ARG must be declared; an unnamed last stage is `default`.
    let src = "FROM busybox AS base\nARG TARGETSTAGE\nRUN echo $TARGETSTAGE\nFROM scratch\nCOPY --from=base /x /x\n";
    let value = |src: &str, target: Option<&str>| {
        let opts = BuildOpts {
            target: target.map(str::to_string),
            ..BuildOpts::default()
        };
        env_of(
            &execs(&lower_with(src, &opts, &NoResolver))[0],
            "TARGETSTAGE",
        )
    };
    assert_eq!(value(src, None).as_deref(), Some("default"));
    assert_eq!(value(src, Some("base")).as_deref(), Some("base"));
    let named = format!("{src}FROM scratch AS final\nCOPY --from=base /x /x\n");
    assert_eq!(value(&named, None).as_deref(), Some("final"));
}

#[test]
fn an_image_from_scratch_has_path_and_a_working_directory() {
    // BuildKit's testDockerfileScratchConfig.
    let l = lower_str("FROM scratch\nENV foo=bar\n");
    let c = &l.target.image.config;
    assert_eq!(c.working_dir, "/");
    assert!(c.env.iter().any(|e| e.starts_with("PATH=")) && c.env.contains(&"foo=bar".to_string()));
    assert_eq!(l.target.image.history.len(), 1);
    assert!(l.target.image.history[0].empty_layer);
}

#[test]
fn a_redeclared_arg_keeps_its_place_in_the_run_history() {
    // BuildKit's testExportedHistoryFlattenArgs.
    let l = lower_str("FROM busybox\nARG foo=bar\nARG bar=123\nARG foo=bar2\nRUN ls /etc/\n");
    let run = l
        .target
        .image
        .history
        .iter()
        .find(|h| h.created_by.starts_with("RUN"))
        .expect("RUN history");
    assert!(
        run.created_by.starts_with("RUN |2 foo=bar2 bar=123 "),
        "{}",
        run.created_by
    );
}

#[test]
fn copying_from_a_stage_defined_later_is_refused() {
    // BuildKit's testOutOfOrderStage: not an image of that name.
    for src in [
        "FROM busybox AS target\nCOPY --from=build / /out\nFROM busybox AS build\nCOPY /Dockerfile /d2\nFROM target\n",
        "FROM scratch AS build\nCOPY --from=build foo bar\n",
    ] {
        let err = lower_err(src);
        assert!(
            err.contains("cannot copy from stage")
                && err.contains("needs to be defined before current stage"),
            "{err}"
        );
    }
}

#[test]
fn an_unquoted_heredoc_expands_variables_even_inside_quotes_and_keeps_what_escapes_escape() {
    // BuildKit's testHeredocVarSubstitution and testCopyHeredocSpecialSymbols.
    let data_of = |src: &str| -> String {
        let l = lower_str(src);
        let data = l
            .definition
            .ids()
            .find_map(|id| match &l.definition.vertex(id).op {
                Op::File(f) => f.actions.iter().find_map(|a| match a {
                    FileAction::Mkfile { data, .. } => Some(data.clone()),
                    _ => None,
                }),
                _ => None,
            })
            .expect("an inline document");
        data
    };
    let df = |delim: &str, body: &str| {
        format!("FROM scratch\nARG name=world\nCOPY <<{delim} /f\n{body}\nEOF\n")
    };
    assert_eq!(data_of(&df("EOF", "Hello '${name}'!")), "Hello 'world'!\n");
    assert_eq!(
        data_of(&df("EOF", "Hello \"${name}\"!")),
        "Hello \"world\"!\n"
    );
    assert_eq!(data_of(&df("EOF", "\\\\")), "\\\n");
    assert_eq!(data_of(&df("EOF", "\\$")), "$\n");
    assert_eq!(data_of(&df("EOF", "\\")), "\n");
    assert_eq!(
        data_of(&df("'EOF'", "Hello '${name}'!")),
        "Hello '${name}'!\n"
    );
    assert_eq!(data_of(&df("\"EOF\"", "\\$")), "\\$\n");
}

#[test]
fn an_onbuild_trigger_keeps_its_heredoc() {
    // BuildKit's testOnBuildHeredoc.
    let l = lower_str("FROM busybox\nONBUILD RUN <<EOF\necho \"hello world\" >> /dest\nEOF\n");
    let trigger = &l.target.image.config.on_build;
    assert_eq!(
        trigger,
        &["RUN <<EOF\necho \"hello world\" >> /dest\nEOF".to_string()]
    );
    // The child's parse of the trigger finds the body again.
    let child = lower_str(&format!("FROM busybox\n{}\n", trigger[0]));
    assert_eq!(
        execs(&child)[0].args,
        ["/bin/sh", "-c", "echo \"hello world\" >> /dest\n"]
    );
}

#[test]
fn a_parents_copy_keeps_its_pivot() {
    // BuildKit's testCopyRelativeParents: the first `/./` marks where the recreated parents start.
    let srcs = |line: &str| -> Vec<String> {
        let l = lower_str(&format!("FROM busybox AS base\nFROM scratch\n{line}\n"));
        let ids: Vec<_> = l.definition.ids().collect();
        ids.into_iter()
            .flat_map(|id| match &l.definition.vertex(id).op {
                Op::File(f) => f
                    .actions
                    .iter()
                    .filter_map(|a| match a {
                        FileAction::Copy(c) => Some(c.src.clone()),
                        _ => None,
                    })
                    .collect(),
                _ => Vec::new(),
            })
            .collect()
    };
    assert_eq!(
        srcs("COPY --from=base --parents /test/a/b/./c/d /out/"),
        ["/test/a/b/./c/d"]
    );
    assert_eq!(
        srcs("COPY --from=base --parents /test/a/./b/./c /out/"),
        ["/test/a/./b/c"]
    );
    assert_eq!(srcs("COPY --from=base /test/a/./b /out/"), ["/test/a/b"]);
}

#[test]
fn copy_from_a_variable_is_refused_with_buildkits_advice() {
    // BuildKit's testDockerfileCopyFromArgs.
    let err = lower_err("FROM scratch\nCOPY --from=$FOO . .\n");
    assert!(
        err.contains("variable expansion is not supported for --from"),
        "{err}"
    );
}

#[test]
fn a_dockerfile_without_from_says_it_has_no_stages() {
    // BuildKit's testEmptyStages.
    let err = lower_err("ARG foo=bar\n");
    assert!(
        err.contains("dockerfile contains no stages to build"),
        "{err}"
    );
}

#[test]
fn steps_are_numbered_per_stage_and_carry_the_stage_name_as_buildkit_names_them() {
    // BuildKit's testStepNames: FROM scratch is no step; every stage of a multi-stage file is named.
    let l = lower_str(
        "FROM busybox AS base\nWORKDIR /out\nRUN echo \"base\" > base\nFROM scratch\nCOPY --from=base --chmod=0644 /out /out\n",
    );
    let names = step_names(&l);
    for want in [
        "[base 3/3] RUN echo \"base\" > base",
        "[stage-1 1/1] COPY --from=base --chmod=0644 /out /out",
    ] {
        assert!(names.iter().any(|n| n == want), "{want}: {names:?}");
    }
    // One stage: no name, and its FROM is step 1.
    let single = lower_str("FROM busybox\nRUN true\n");
    let names = step_names(&single);
    assert!(names.iter().any(|n| n == "[2/2] RUN true"), "{names:?}");
}

#[test]
fn an_env_with_several_pairs_expands_them_all_against_the_environment_before_it() {
    // BuildKit expands every word of an ENV before dispatchEnv sets any pair.
    let l = lower_str("FROM busybox\nENV a=one\nENV a=two b=$a\nARG x=1\nARG x=2 y=$x\nRUN true\n");
    let env = &l.target.image.config.env;
    assert!(env.contains(&"a=two".to_string()), "{env:?}");
    assert!(env.contains(&"b=one".to_string()), "{env:?}");
    // ARG with several pairs stays sequential.
    assert_eq!(env_of(&execs(&l)[0], "y").as_deref(), Some("2"));
}

#[test]
fn maintainer_sets_the_author_and_no_label() {
    // BuildKit's dispatchMaintainer.
    let l = lower_str("FROM busybox\nMAINTAINER Jane <j@example.com>\n");
    assert_eq!(
        l.target.image.author.as_deref(),
        Some("Jane <j@example.com>")
    );
    assert!(l.target.image.config.labels.is_empty());
    assert!(l
        .target
        .image
        .history
        .iter()
        .any(|h| h.created_by == "MAINTAINER Jane <j@example.com>"));
}

#[test]
fn a_stage_built_from_a_stage_inherits_its_arg_values() {
    // BuildKit's dispatchState.init copies the base stage's state (its environment holds the ARG values) and
    // build args; a bare ARG does not clear an inherited value.
    let l = lower_str(
        "FROM busybox AS base\nARG V=one\nARG W=two\nFROM base\nARG W\nRUN echo $V-$W\nCOPY $V /x\n",
    );
    let e = &execs(&l)[0];
    assert_eq!(env_of(e, "V").as_deref(), Some("one"));
    assert_eq!(env_of(e, "W").as_deref(), Some("two"));
    assert!(
        step_names(&l).iter().any(|n| n.ends_with("COPY one /x")),
        "{:?}",
        step_names(&l)
    );
    // An ARG of the same stage keeps its value when declared again without one.
    let l = lower_str("FROM busybox\nARG V=one\nARG V\nRUN true\n");
    assert_eq!(env_of(&execs(&l)[0], "V").as_deref(), Some("one"));
}

#[test]
fn from_names_a_stage_exactly_and_copy_from_and_target_ignore_case() {
    // BuildKit's dispatchStates: stage names are lower-cased, FROM looks its word up as written.
    let err = lower_err("FROM busybox AS Foo\nFROM Foo\n");
    assert!(
        err.contains("failed to parse stage name \"Foo\": invalid reference format: repository name (library/Foo) must be lowercase"),
        "{err}"
    );
    let err = lower_err("FROM SCRATCH\n");
    assert!(
        err.contains("repository name (library/SCRATCH) must be lowercase"),
        "{err}"
    );
    // FROM takes no stage index: `FROM 0` is the image `0`.
    let l = lower_str("FROM busybox AS a\nRUN true\nFROM 0\n");
    let roots: Vec<_> = l.target.root.into_iter().collect();
    let images: Vec<String> = l
        .definition
        .closure(&roots)
        .into_iter()
        .filter_map(|id| match &l.definition.vertex(id).op {
            Op::Source(SourceOp::Image(i)) => Some(i.reference.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(images, ["docker.io/library/0:latest"]);
    // COPY --from and --target match whatever the case.
    let opts = BuildOpts {
        target: Some("BUILD".to_string()),
        ..BuildOpts::default()
    };
    let l = lower_with(
        "FROM busybox AS Build\nRUN true\nFROM scratch\nCOPY --from=BUILD /a /a\nFROM busybox\n",
        &opts,
        &NoResolver,
    );
    assert_eq!(l.target.name, "build");
    let l = lower_str("FROM busybox AS Build\nRUN true\nFROM scratch\nCOPY --from=BUILD /a /a\n");
    assert_eq!(l.stages.len(), 2);
}

#[test]
fn a_bind_mount_without_a_target_mounts_at_the_working_directory() {
    // BuildKit's dispatchRunMounts: an empty target is the working directory; only `/` is refused.
    let l = lower_str("FROM busybox\nWORKDIR /w\nRUN --mount=type=bind,source=sub true\nRUN --mount=type=bind,target=rel true\n");
    let e = execs(&l);
    assert!(e[0]
        .mounts
        .iter()
        .any(|m| m.target == "/w" && m.selector == "/sub"));
    assert!(e[1].mounts.iter().any(|m| m.target == "/w/rel"));
    let err = lower_err("FROM busybox\nRUN --mount=type=bind true\n");
    assert!(err.contains("invalid mount target \"/\""), "{err}");
}

#[test]
fn several_sources_need_no_trailing_slash() {
    // BuildKit has no such error; the file op writes each source to the destination in turn.
    let l = lower_str("FROM busybox\nCOPY a b c\n");
    assert!(step_names(&l).iter().any(|n| n.ends_with("COPY a b c")));
}

/// BuildKit's runCommandString: a RUN's `|N k=v` history gives each declared build arg the value the step's
/// environment has (an ENV of the same name wins), else its own, else empty (found by the BuildKit differential).
#[test]
fn run_history_gives_build_args_the_values_the_step_sees() {
    let l = lower_str(
        "FROM busybox\nARG X=from-arg\nENV X=from-env\nARG Y=y-arg\nARG NOVALUE\nRUN one\nENV Y=y-env\nRUN two\n",
    );
    let runs: Vec<&str> = l
        .target
        .image
        .history
        .iter()
        .map(|h| h.created_by.as_str())
        .filter(|c| c.starts_with("RUN"))
        .collect();
    assert_eq!(
        runs,
        [
            "RUN |3 X=from-env Y=y-arg NOVALUE= /bin/sh -c one # buildkit",
            "RUN |3 X=from-env Y=y-env NOVALUE= /bin/sh -c two # buildkit"
        ]
    );
}

/// `--add-host`, `--shm-size` and `--ulimit` reach every RUN as BuildKit's dispatchRun adds them (the shm size as
/// a tmpfs at /dev/shm after the step's own mounts), and `RUN --device` only its own step.
#[test]
fn run_options_and_devices_reach_the_exec_ops() {
    let opts = BuildOpts {
        extra_hosts: vec![llb::HostIp {
            host: "db".into(),
            ip: "10.0.0.5".into(),
        }],
        shm_size: Some(128 << 20),
        ulimits: vec![llb::Ulimit {
            name: "nofile".into(),
            soft: 1024,
            hard: 2048,
        }],
        ..BuildOpts::default()
    };
    let l = lower_with(
        "FROM scratch\nRUN --mount=type=tmpfs,target=/t --device=a.com/gpu=0,required x\nRUN y\n",
        &opts,
        &NoResolver,
    );
    let e = execs(&l);
    assert_eq!(e.len(), 2);
    for x in &e {
        assert_eq!(x.extra_hosts, opts.extra_hosts);
        assert_eq!(x.ulimits, opts.ulimits);
        let last = x.mounts.last().expect("mounts");
        assert_eq!(
            (last.target.as_str(), &last.kind),
            (
                "/dev/shm",
                &MountKind::Tmpfs {
                    size: Some(128 << 20)
                }
            )
        );
    }
    assert_eq!(
        e[0].cdi_devices,
        [llb::CdiDevice {
            name: "a.com/gpu=0".into(),
            optional: false
        }]
    );
    assert!(e[1].cdi_devices.is_empty());
    // Nothing set, nothing added: the ops (and so every digest) stay as before.
    let plain = lower_str("FROM scratch\nRUN y\n");
    assert_eq!(execs(&plain)[0].mounts.len(), 1);
}

#[test]
fn a_bad_device_flag_names_the_line_and_the_key() {
    let df = frontend::parser::parse("FROM scratch\nRUN --device=a.com/gpu=0,requird=true y\n")
        .expect("parses");
    let e = match lower(&df, &BuildOpts::default(), &NoResolver) {
        Err(e) => e.to_string(),
        Ok(_) => panic!("must fail"),
    };
    assert!(
        e.contains("RUN --device=a.com/gpu=0,requird=true: unexpected key 'requird' in 'requird=true' (did you mean required?)"),
        "{e}"
    );
}
