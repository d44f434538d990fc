//! The instructions layer's rules, as BuildKit's instruction tests describe them: argument counts, flags,
//! forms, and what ONBUILD and HEALTHCHECK accept.

use frontend::instructions::{Command, HealthcheckCommand, Instruction};

fn inst(line: &str) -> Result<Instruction, String> {
    let df = frontend::parser::parse(line).map_err(|e| e.to_string())?;
    Instruction::from_node(&df.children[0]).map_err(|e| e.message)
}

#[test]
fn argument_counts() {
    for ok in [
        "MAINTAINER me",
        "WORKDIR /x",
        "USER app",
        "STOPSIGNAL SIGTERM",
        "EXPOSE 80",
        "VOLUME /v",
        "ENV a=b",
        "LABEL a=b",
    ] {
        assert!(inst(ok).is_ok(), "{ok}");
    }
    for (bad, needle) in [
        ("MAINTAINER", "exactly one argument"),
        ("WORKDIR", "exactly one argument"),
        ("USER", "exactly one argument"),
        ("STOPSIGNAL", "exactly one argument"),
        ("EXPOSE", "at least one argument"),
        ("VOLUME", "at least one argument"),
        ("ENV", "at least one argument"),
        ("LABEL", "at least one argument"),
        ("COPY onlyone", "at least two arguments"),
        ("ADD onlyone", "at least two arguments"),
        ("ENV =x", "can not be blank"),
        ("ARG =x", "can not be blank"),
        ("SHELL /bin/sh -c", "JSON form"),
        ("FROM a b", "one or three arguments"),
        ("FROM a AS 1x", "invalid name for build stage"),
        ("FROBNICATE x", "unknown instruction: FROBNICATE"),
        ("COPY --nope=1 a b", "unknown flag: --nope"),
        ("COPY --from a b", "missing a value"),
        ("COPY --link=maybe a b", "expecting boolean"),
        (
            "RUN --network=bridge true",
            "valid values are default, none, host",
        ),
        (
            "RUN --security=root true",
            "valid values are sandbox, insecure",
        ),
        ("ONBUILD ONBUILD RUN x", "isn't allowed"),
        ("ONBUILD FROM x", "isn't allowed as an ONBUILD trigger"),
        (
            "ONBUILD MAINTAINER x",
            "isn't allowed as an ONBUILD trigger",
        ),
        ("HEALTHCHECK CONNECT x", "unknown type"),
        ("HEALTHCHECK NONE x", "takes no arguments"),
        ("HEALTHCHECK --interval=500us CMD true", "less than 1ms"),
        ("HEALTHCHECK --retries=-1 CMD true", "negative"),
        ("HEALTHCHECK --timeout=soon CMD true", "invalid duration"),
    ] {
        let e = inst(bad).expect_err(bad);
        assert!(e.contains(needle), "{bad}: {e}");
    }
}

#[test]
fn copy_heredoc_destination_is_refused() {
    let e = inst("COPY a <<EOF\nx\nEOF\n").expect_err("heredoc destination");
    assert!(e.contains("heredoc as its destination"), "{e}");
}

#[test]
fn healthcheck_forms() {
    let Command::Healthcheck(HealthcheckCommand::Check { test, interval, .. }) =
        inst("HEALTHCHECK --interval=0 CMD curl -f x")
            .expect("ok")
            .command
    else {
        panic!("expected a check")
    };
    assert_eq!(test, ["CMD-SHELL", "curl -f x"]);
    assert_eq!(interval, 0);
    let Command::Healthcheck(HealthcheckCommand::Check { test, .. }) =
        inst("HEALTHCHECK CMD [\"curl\", \"-f\"]")
            .expect("ok")
            .command
    else {
        panic!("expected a check")
    };
    assert_eq!(test, ["CMD", "curl", "-f"]);
    assert_eq!(
        inst("HEALTHCHECK NONE").expect("ok").command,
        Command::Healthcheck(HealthcheckCommand::None)
    );
}

#[test]
fn flags_and_forms_are_typed() {
    let Command::Copy(c) = inst("COPY --from=build --chown=1:2 --chmod=0755 --link --parents --exclude=*.md --exclude=x a b /d/")
        .expect("ok")
        .command
    else {
        panic!("COPY")
    };
    assert_eq!(c.from.as_deref(), Some("build"));
    assert!(c.link && c.parents);
    assert_eq!(c.exclude, ["*.md", "x"]);
    assert_eq!(c.sources.len(), 2);
    let Command::Add(a) = inst(
        "ADD --checksum=sha256:abc --keep-git-dir --unpack=false --chmod=644 https://x/y.tgz /d",
    )
    .expect("ok")
    .command
    else {
        panic!("ADD")
    };
    assert_eq!((a.keep_git_dir, a.unpack), (true, Some(false)));
    let Command::Run(r) = inst("RUN --mount=type=cache,target=/c --mount=type=tmpfs,target=/t --network=none [\"a\", \"b\"]")
        .expect("ok")
        .command
    else {
        panic!("RUN")
    };
    assert_eq!(r.mounts.len(), 2);
    assert!(!r.cmd.prepend_shell);
    let Command::Arg(decls) = inst("ARG A=1 B C=\"x y\"").expect("ok").command else {
        panic!("ARG")
    };
    assert_eq!(decls.len(), 3);
    assert_eq!(decls[2].default.as_deref(), Some("\"x y\""));
    let Command::Onbuild(expr) = inst("ONBUILD   RUN echo hi").expect("ok").command else {
        panic!("ONBUILD")
    };
    assert_eq!(expr, "RUN echo hi");
}
