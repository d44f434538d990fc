//! BuildKit's Dockerfile integration tests (`frontend/dockerfile/*_test.go`), ported one for one: each test here
//! builds the Dockerfile of the BuildKit test it names and checks the same result. `CONFORMANCE.md` maps every
//! BuildKit test to the kiln test that covers it. Where BuildKit pulls `alpine` or pushes to a registry, these use
//! the busybox base and the local store instead; the scenario is otherwise the same.

use std::path::Path;

use kiln_tests::{Context, Root};

use crate::KILN;

fn build(root: &Root, ctx: &Context, extra: &[&str]) -> kiln_tests::Run {
    let mut args = vec!["build", "--progress=plain"];
    args.extend_from_slice(extra);
    args.push(ctx.path().to_str().expect("utf-8"));
    root.kiln(KILN, &args)
}

/// Builds `ctx`, which must succeed.
fn build_ok(root: &Root, ctx: &Context, extra: &[&str]) {
    let r = build(root, ctx, extra);
    assert_eq!(r.code, 0, "{}", r.stderr);
}

/// Builds `ctx` into a local directory, which must succeed, and returns it.
fn build_local(root: &Root, ctx: &Context, extra: &[&str]) -> tempfile::TempDir {
    let out = tempfile::tempdir().expect("tempdir");
    let dest = format!("type=local,dest={}", out.path().display());
    let mut args = vec!["-o", dest.as_str()];
    args.extend_from_slice(extra);
    build_ok(root, ctx, &args);
    out
}

/// Builds `ctx`, which must fail, and returns its stderr.
fn build_err(root: &Root, ctx: &Context, extra: &[&str]) -> String {
    let r = build(root, ctx, extra);
    assert_ne!(r.code, 0, "the build should have failed:\n{}", r.stderr);
    r.stderr
}

/// Builds `ctx` as `tag` and returns its OCI image config.
fn build_image(root: &Root, ctx: &Context, tag: &str, extra: &[&str]) -> serde_json::Value {
    let mut args = vec!["-t", tag];
    args.extend_from_slice(extra);
    build_ok(root, ctx, &args);
    let inspect = root.kiln(KILN, &["inspect", tag]);
    assert_eq!(inspect.code, 0, "{}", inspect.stderr);
    let v: serde_json::Value = serde_json::from_str(&inspect.stdout).expect("inspect json");
    v["Config"].clone()
}

/// Builds `ctx` as `tag` and returns the runtime part (`config`) of its image config.
fn build_config(root: &Root, ctx: &Context, tag: &str, extra: &[&str]) -> serde_json::Value {
    build_image(root, ctx, tag, extra)["config"].clone()
}

fn read(p: &Path) -> String {
    std::fs::read_to_string(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

fn dockerfile(text: &str) -> Context {
    Context::new().file("Dockerfile", text)
}

/// `dockerfile(text)` with `{ADDUSER}` and `{ADDUSER01}` standing for `RUN adduser -D user` and
/// `RUN adduser -D user01` of BuildKit's tests: Debian's busybox has no `adduser`, so these write the lines it would
/// (the next free uid, a group of the same name and id, the home directory).
fn with_adduser(text: &str) -> Context {
    let add = |name: &str, id: u32| {
        format!(
            "RUN echo '{name}:x:{id}:{id}:Linux User,,,:/home/{name}:/bin/sh' >> /etc/passwd && \
             echo '{name}:x:{id}:' >> /etc/group && mkdir -p /home/{name} && chown {id}:{id} /home/{name}\n"
        )
    };
    dockerfile(
        &text
            .replace("{ADDUSER}", &add("user", 1000))
            .replace("{ADDUSER01}", &add("user01", 1001)),
    )
}

// Parsing, core instructions, errors.

#[test]
fn symlinked_dockerfile() {
    // testSymlinkedDockerfile
    let root = Root::empty();
    let ctx = Context::new().file("Dockerfile.web", "FROM scratch\nENV foo bar\n");
    std::os::unix::fs::symlink("Dockerfile.web", ctx.path().join("Dockerfile")).expect("symlink");
    build_ok(&root, &ctx, &[]);
}

#[test]
fn expose_expansion() {
    // testExposeExpansion
    let root = Root::empty();
    let ctx = dockerfile("FROM scratch\nARG PORTS=\"3000 4000/udp\"\nEXPOSE $PORTS\nEXPOSE 5000\n");
    let config = build_config(&root, &ctx, "expose:test", &[]);
    let mut ports: Vec<&String> = config["ExposedPorts"]
        .as_object()
        .unwrap_or_else(|| panic!("{config}"))
        .keys()
        .collect();
    ports.sort();
    assert_eq!(ports, ["3000/tcp", "4000/udp", "5000/tcp"], "{config}");
}

#[test]
fn labels() {
    // testLabels
    let root = Root::empty();
    let ctx = dockerfile("FROM scratch\nLABEL foo=bar\n");
    let config = build_config(&root, &ctx, "labels:test", &["--label", "bar=baz"]);
    assert_eq!(config["Labels"]["foo"], "bar", "{config}");
    assert_eq!(config["Labels"]["bar"], "baz", "{config}");
}

#[test]
fn target_mistype() {
    // testTargetMistype
    let root = Root::empty();
    let ctx = dockerfile(
        "FROM scratch AS build\nCOPY Dockerfile /out\nFROM scratch\nCOPY --from=build /out /\n",
    );
    let err = build_err(&root, &ctx, &["--target", "bulid"]);
    assert!(
        err.contains("target stage \"bulid\" could not be found (did you mean build?)"),
        "{err}"
    );
}

#[test]
fn cmd_shell() {
    // testCmdShell: a shell-form ENTRYPOINT is wrapped in the current SHELL and drops the base image's CMD.
    let root = Root::empty();
    build_config(
        &root,
        &dockerfile("FROM scratch\nCMD [\"test\"]\n"),
        "cmdoverridetest:latest",
        &[],
    );
    let ctx = dockerfile("FROM cmdoverridetest:latest\nSHELL [\"ls\"]\nENTRYPOINT my entrypoint\n");
    let config = build_config(&root, &ctx, "cmdoverridetest2:latest", &[]);
    assert!(config["Cmd"].is_null(), "{config}");
    assert_eq!(
        config["Entrypoint"],
        serde_json::json!(["ls", "my entrypoint"]),
        "{config}"
    );
}

#[test]
fn ignore_entrypoint() {
    // testIgnoreEntrypoint
    let root = Root::with_busybox(KILN);
    let ctx = dockerfile("FROM busybox\nENTRYPOINT [\"/nosuchcmd\"]\nRUN [\"ls\"]\n");
    build_ok(&root, &ctx, &[]);
}

#[test]
fn invalid_json_commands() {
    // testInvalidJSONCommands (on busybox rather than alpine)
    let root = Root::with_busybox(KILN);
    let ctx = dockerfile("FROM busybox\nRUN [\"echo\", \"hello\"]this is invalid\n");
    let err = build_err(&root, &ctx, &[]);
    assert!(err.contains("this is invalid"), "{err}");
    let ctx = dockerfile("FROM busybox\nENTRYPOINT []random string\n");
    let config = build_config(&root, &ctx, "testexportdf:multi", &[]);
    assert_eq!(
        config["Entrypoint"],
        serde_json::json!(["/bin/sh", "-c", "[]random string"]),
        "{config}"
    );
}

#[test]
fn dockerfile_invalid_command() {
    // testDockerfileInvalidCommand
    let root = Root::with_busybox(KILN);
    let ctx = dockerfile("\tFROM busybox\n\tRUN invalidcmd\n");
    let err = build_err(&root, &ctx, &[]);
    assert!(err.contains("/bin/sh -c invalidcmd"), "{err}");
    assert!(err.contains("did not complete successfully"), "{err}");
}

#[test]
fn dockerfile_invalid_instruction() {
    // testDockerfileInvalidInstruction
    let root = Root::empty();
    let ctx =
        dockerfile("FROM scratch\nFNTRYPOINT [\"/bin/sh\", \"-c\", \"echo invalidinstruction\"]\n");
    let err = build_err(&root, &ctx, &[]);
    assert!(err.contains("unknown instruction: FNTRYPOINT"), "{err}");
    assert!(err.contains("did you mean ENTRYPOINT?"), "{err}");
}

// ARG / ENV / variable expansion.

#[test]
fn global_arg_errors() {
    // testGlobalArgErrors
    let root = Root::with_busybox(KILN);
    let ctx = dockerfile("ARG FOO=${FOO:?\"custom error\"}\nFROM busybox\n");
    let err = build_err(&root, &ctx, &[]);
    assert!(err.contains("FOO: custom error"), "{err}");
    build_ok(&root, &ctx, &["--build-arg", "FOO=bar"]);
}

#[test]
fn arg_default_expansion() {
    // testArgDefaultExpansion
    let root = Root::empty();
    let ctx = dockerfile("FROM scratch\nARG FOO\nARG BAR=${FOO:?\"foo missing\"}\n");
    let err = build_err(&root, &ctx, &[]);
    assert!(err.contains("FOO: foo missing"), "{err}");
    build_ok(&root, &ctx, &["--build-arg", "FOO=123"]);
    build_ok(&root, &ctx, &["--build-arg", "BAR=123"]);
}

#[test]
fn multi_args() {
    // testMultiArgs
    let root = Root::with_busybox(KILN);
    let ctx = dockerfile(
        "ARG a1=\"foo bar\" a2=box\nARG a3=\"$a2-foo\"\nFROM busy$a2 AS build\nARG a3 a4=\"123 456\" a1\n\
         RUN echo -n \"$a1:$a3:$a4\" > /out\nFROM scratch\nCOPY --from=build /out .\n",
    );
    let out = build_local(&root, &ctx, &[]);
    assert_eq!(read(&out.path().join("out")), "foo bar:box-foo:123 456");
}

#[test]
fn quoted_meta_args() {
    // testQuotedMetaArgs
    let root = Root::with_busybox(KILN);
    let ctx = dockerfile(
        "ARG a1=\"box\"\nARG a2=\"$a1-foo\"\nFROM busy$a1 AS build\nARG a2\nARG a3=\"bar-$a2\"\n\
         RUN echo -n $a3 > /out\nFROM scratch\nCOPY --from=build /out .\n",
    );
    let out = build_local(&root, &ctx, &[]);
    assert_eq!(read(&out.path().join("out")), "bar-box-foo");
}

#[test]
fn default_env_with_args() {
    // testDefaultEnvWithArgs
    use std::os::unix::fs::PermissionsExt;
    let root = Root::with_busybox(KILN);
    let ctx = dockerfile(
        "ARG image=idlebox\nFROM busy${image#idle} AS build\nARG my_arg\n\
         ENV my_arg \"my_arg=${my_arg:-def_val}\"\nENV my_trimmed_arg \"${my_arg%%e*}\"\n\
         COPY myscript.sh myscript.sh\nRUN ./myscript.sh $my_arg $my_trimmed_arg\n\
         FROM scratch\nCOPY --from=build /out /out\n",
    )
    .file(
        "myscript.sh",
        "\n#!/usr/bin/env sh\necho -n $my_arg $* > /out\n",
    );
    std::fs::set_permissions(
        ctx.path().join("myscript.sh"),
        std::fs::Permissions::from_mode(0o700),
    )
    .expect("chmod");
    for (args, expected) in [
        (&[][..], "my_arg=def_val my_arg=def_val my_arg=d"),
        (
            &["--build-arg", "my_arg="][..],
            "my_arg=def_val my_arg=def_val my_arg=d",
        ),
        (
            &["--build-arg", "my_arg=override"][..],
            "my_arg=override my_arg=override my_arg=ov",
        ),
    ] {
        let out = build_local(&root, &ctx, args);
        assert_eq!(read(&out.path().join("out")), expected, "{args:?}");
    }
}

#[test]
fn empty_string_arg_in_env() {
    // testEmptyStringArgInEnv
    let root = Root::with_busybox(KILN);
    let ctx = dockerfile(
        "FROM busybox AS build\nARG FOO\nARG BAR=\nRUN env > env.txt\n\nFROM scratch\nCOPY --from=build env.txt .\n",
    );
    let out = build_local(&root, &ctx, &[]);
    let env = read(&out.path().join("env.txt"));
    assert!(env.contains("BAR="), "{env}");
    assert!(!env.contains("FOO="), "{env}");
}

#[test]
fn env_empty_formatting() {
    // testEnvEmptyFormatting
    let root = Root::with_busybox(KILN);
    let ctx =
        dockerfile("FROM busybox AS build\nENV myenv foo%sbar\nRUN [ \"$myenv\" = 'foo%sbar' ]\n");
    build_local(&root, &ctx, &[]);
}

// COPY.

#[test]
fn empty_dest_dir() {
    // testEmptyDestDir
    let root = Root::with_busybox(KILN);
    let ctx = dockerfile(
        "FROM busybox\nENV empty=\"\"\nCOPY testfile $empty\nRUN [ \"$(cat testfile)\" == \"contents0\" ]\n",
    )
    .file("testfile", "contents0");
    build_ok(&root, &ctx, &[]);
}

#[test]
fn preserve_dest_dir_slash() {
    // testPreserveDestDirSlash
    let root = Root::with_busybox(KILN);
    let ctx = dockerfile(
        "FROM busybox\nCOPY testfile /sample/\nRUN [ \"$(cat /sample/testfile)\" == \"contents0\" ]\n",
    )
    .file("testfile", "contents0");
    build_ok(&root, &ctx, &[]);
}

#[test]
fn copy_link_dot_dest_dir() {
    // testCopyLinkDotDestDir
    let root = Root::with_busybox(KILN);
    let ctx = dockerfile(
        "FROM busybox\nWORKDIR /var/www\nCOPY --link testfile .\nRUN [ \"$(cat testfile)\" == \"contents0\" ]\n",
    )
    .file("testfile", "contents0");
    build_ok(&root, &ctx, &[]);
}

#[test]
fn copy_link_empty_dest_dir() {
    // testCopyLinkEmptyDestDir
    let root = Root::with_busybox(KILN);
    let ctx = dockerfile(
        "FROM busybox\nWORKDIR /var/www\nENV empty=\"\"\nCOPY --link testfile $empty\n\
         RUN [ \"$(cat testfile)\" == \"contents0\" ]\n",
    )
    .file("testfile", "contents0");
    build_ok(&root, &ctx, &[]);
}

#[test]
fn copy_chown_create_dest() {
    // testCopyChownCreateDest
    let root = Root::with_busybox(KILN);
    let ctx = with_adduser(
        "FROM busybox\nARG group\nENV owner user01\n{ADDUSER}{ADDUSER01}\
         COPY --chown=user:user . /dest\nCOPY --chown=${owner}:${group} . /dest01\n\
         RUN [ \"$(stat -c \"%U %G\" /dest)\" == \"user user\" ]\n\
         RUN [ \"$(stat -c \"%U %G\" /dest01)\" == \"user01 user\" ]\n",
    );
    build_ok(&root, &ctx, &["--build-arg", "group=user"]);
}

#[test]
fn copy_through_symlink_context() {
    // testCopyThroughSymlinkContext
    let root = Root::empty();
    let ctx = dockerfile("FROM scratch\nCOPY link/foo .\n").file("sub/foo", "contents");
    std::os::unix::fs::symlink("sub", ctx.path().join("link")).expect("symlink");
    let out = build_local(&root, &ctx, &[]);
    assert_eq!(read(&out.path().join("foo")), "contents");
}

#[test]
fn copy_override_files() {
    // testCopyOverrideFiles
    let root = Root::empty();
    let ctx = dockerfile(
        "FROM scratch AS base\nCOPY sub sub\nCOPY sub sub\nCOPY files/foo.go dest/foo.go\n\
         COPY files/foo.go dest/foo.go\nCOPY files dest\n",
    )
    .file("sub/dir1/dir2/foo", "foo-contents")
    .file("files/foo.go", "foo.go-contents");
    let out = build_local(&root, &ctx, &[]);
    assert_eq!(read(&out.path().join("sub/dir1/dir2/foo")), "foo-contents");
    assert_eq!(read(&out.path().join("dest/foo.go")), "foo.go-contents");
}

#[test]
fn copy_var_substitution() {
    // testCopyVarSubstitution
    let root = Root::empty();
    let ctx = dockerfile("FROM scratch AS base\nENV FOO bar\nCOPY $FOO baz\n")
        .file("bar", "bar-contents");
    let out = build_local(&root, &ctx, &[]);
    assert_eq!(read(&out.path().join("baz")), "bar-contents");
}

#[test]
fn copy_relative() {
    // testCopyRelative
    let root = Root::with_busybox(KILN);
    let ctx = dockerfile(
        "FROM busybox\nWORKDIR /test1\nWORKDIR test2\nRUN sh -c \"[ \"$PWD\" = '/test1/test2' ]\"\n\
         COPY foo ./\nRUN sh -c \"[ $(cat /test1/test2/foo) = 'hello' ]\"\n\
         ADD foo ./bar/baz\nRUN sh -c \"[ $(cat /test1/test2/bar/baz) = 'hello' ]\"\n\
         COPY foo ./bar/baz2\nRUN sh -c \"[ $(cat /test1/test2/bar/baz2) = 'hello' ]\"\n\
         WORKDIR ..\nCOPY foo ./\nRUN sh -c \"[ $(cat /test1/foo) = 'hello' ]\"\n\
         COPY foo /test3/\nRUN sh -c \"[ $(cat /test3/foo) = 'hello' ]\"\n\
         WORKDIR /test4\nCOPY . .\nRUN sh -c \"[ $(cat /test4/foo) = 'hello' ]\"\n\
         WORKDIR /test5/test6\nCOPY foo ../\nRUN sh -c \"[ $(cat /test5/foo) = 'hello' ]\"\n",
    )
    .file("foo", "hello");
    build_ok(&root, &ctx, &[]);
}

#[test]
fn copy_unicode_path() {
    // testCopyUnicodePath (FROM busybox rather than alpine)
    let root = Root::with_busybox(KILN);
    let ctx = dockerfile(
        "FROM busybox\nCOPY test-äöü.txt /\nCOPY test-%C3%A4%C3%B6%C3%BC.txt /\nCOPY test+aou.txt /\n",
    )
    .file("test-äöü.txt", "foo")
    .file("test-%C3%A4%C3%B6%C3%BC.txt", "bar")
    .file("test+aou.txt", "baz");
    let out = build_local(&root, &ctx, &[]);
    assert_eq!(read(&out.path().join("test-äöü.txt")), "foo");
    assert_eq!(read(&out.path().join("test-%C3%A4%C3%B6%C3%BC.txt")), "bar");
    assert_eq!(read(&out.path().join("test+aou.txt")), "baz");
}

// RUN mounts.

#[test]
fn mount_context() {
    // testMountContext
    let root = Root::with_busybox(KILN);
    let ctx = dockerfile(
        "FROM busybox\nRUN --mount=target=/context [ \"$(cat /context/testfile)\" == \"contents0\" ]\n",
    )
    .file("testfile", "contents0");
    build_ok(&root, &ctx, &[]);
}

#[test]
fn mount_tmpfs() {
    // testMountTmpfs
    let root = Root::with_busybox(KILN);
    let ctx = dockerfile(
        "FROM busybox\nRUN --mount=target=/mytmp,type=tmpfs touch /mytmp/foo\nRUN [ ! -f /mytmp/foo ]\n",
    );
    build_ok(&root, &ctx, &[]);
}

#[test]
fn mount_tmpfs_size() {
    // testMountTmpfsSize
    let root = Root::with_busybox(KILN);
    let ctx = dockerfile(
        "FROM busybox AS base\nRUN --mount=type=tmpfs,target=/dev/shm,size=128m mount | grep /dev/shm > /tmpfssize\n\
         FROM scratch\nCOPY --from=base /tmpfssize /\n",
    );
    let out = build_local(&root, &ctx, &[]);
    let line = read(&out.path().join("tmpfssize"));
    assert!(line.contains("size=131072k"), "{line}");
}

#[test]
fn cache_mount_user() {
    // testCacheMountUser
    let root = Root::with_busybox(KILN);
    let ctx = dockerfile(
        "FROM busybox\nRUN --mount=type=cache,target=/mycache,uid=1001,gid=1002,mode=0751 \
         [ \"$(stat -c \"%u %g %f\" /mycache)\" == \"1001 1002 41e9\" ]\n",
    );
    build_ok(&root, &ctx, &[]);
}

#[test]
fn cache_mount_default_id() {
    // testCacheMountDefaultID
    let root = Root::with_busybox(KILN);
    let ctx = dockerfile(
        "FROM busybox\nRUN --mount=type=cache,target=/mycache touch /mycache/foo\n\
         RUN --mount=type=cache,target=/mycache2 [ ! -f /mycache2/foo ]\n\
         RUN --mount=type=cache,target=/mycache [ -f /mycache/foo ]\n",
    );
    build_ok(&root, &ctx, &[]);
}

#[test]
fn cache_mount_mode_no_cache() {
    // testCacheMountModeNoCache: a `mode=` cache mount starts afresh under --no-cache, and later builds use it
    let root = Root::with_busybox(KILN);
    let ctx = dockerfile(
        "\nFROM busybox AS base\nARG FOO=abc\n\
         RUN --mount=type=cache,target=/cache,mode=0773 touch /cache/$FOO && ls -l /cache | wc -l > /out\n\n\
         FROM scratch\nCOPY --from=base /out /\n",
    );
    let out = build_local(&root, &ctx, &[]);
    assert_eq!(read(&out.path().join("out")), "2\n");
    let out = build_local(&root, &ctx, &["--no-cache", "--build-arg", "FOO=def"]);
    assert_eq!(read(&out.path().join("out")), "2\n");
    // without --no-cache the cache the last build made is used
    let out = build_local(&root, &ctx, &["--build-arg", "FOO=ghi"]);
    assert_eq!(read(&out.path().join("out")), "3\n");
}

#[test]
fn mount_env_var() {
    // testMountEnvVar
    let root = Root::with_busybox(KILN);
    let ctx = dockerfile(
        "FROM busybox\nENV SOME_PATH=/mycache\nRUN --mount=type=cache,target=/mycache touch /mycache/foo\n\
         RUN --mount=type=cache,target=$SOME_PATH [ -f $SOME_PATH/foo ]\n",
    );
    build_ok(&root, &ctx, &[]);
}

#[test]
fn secret_file_params() {
    // testSecretFileParams
    let root = Root::with_busybox(KILN);
    let secret = tempfile::NamedTempFile::new().expect("secret file");
    std::fs::write(secret.path(), "pw").expect("write secret");
    let spec = format!("id=mysecret,src={}", secret.path().display());
    let ctx = dockerfile(
        "FROM busybox\nRUN --mount=type=secret,required=false,mode=741,uid=100,gid=102,target=/mysecret \
         [ \"$(stat -c \"%u %g %f\" /mysecret)\" = \"100 102 81e1\" ]\n\
         RUN [ ! -f /mysecret ] # check no stub left behind\n",
    );
    build_ok(&root, &ctx, &["--secret", &spec]);
}

// Heredocs.

#[test]
fn copy_heredoc() {
    // testCopyHeredoc
    let root = Root::with_busybox(KILN);
    let ctx = with_adduser(
        "FROM busybox AS build\n{ADDUSER}WORKDIR /dest\nCOPY <<EOF single\nsingle file\nEOF\n\
         COPY <<EOF <<EOF2 double/\nfirst file\nEOF\nsecond file\nEOF2\nRUN mkdir -p /permfiles\n\
         COPY --chmod=777 <<EOF /permfiles/all\ndummy content\nEOF\n\
         COPY --chmod=0644 <<EOF /permfiles/rw\ndummy content\nEOF\n\
         COPY --chown=user:user <<EOF /permfiles/owned\ndummy content\nEOF\n\
         RUN stat -c \"%04a\" /permfiles/all >> perms && \\\n\
         \tstat -c \"%04a\" /permfiles/rw >> perms && \\\n\
         \tstat -c \"%U:%G\" /permfiles/owned >> perms\nFROM scratch\nCOPY --from=build /dest /\n",
    );
    let out = build_local(&root, &ctx, &[]);
    for (name, content) in [
        ("single", "single file\n"),
        ("double/EOF", "first file\n"),
        ("double/EOF2", "second file\n"),
        ("perms", "0777\n0644\nuser:user\n"),
    ] {
        assert_eq!(read(&out.path().join(name)), content, "{name}");
    }
}

#[test]
fn run_basic_heredoc() {
    // testRunBasicHeredoc
    let root = Root::with_busybox(KILN);
    let ctx = dockerfile(
        "FROM busybox AS build\nRUN <<EOF\necho \"i am\" >> /dest\nwhoami >> /dest\nEOF\n\
         FROM scratch\nCOPY --from=build /dest /dest\n",
    );
    let out = build_local(&root, &ctx, &[]);
    assert_eq!(read(&out.path().join("dest")), "i am\nroot\n");
}

#[test]
fn run_fake_heredoc() {
    // testRunFakeHeredoc
    let root = Root::with_busybox(KILN);
    let ctx = dockerfile(
        "FROM busybox AS build\nSHELL [\"/bin/awk\"]\nRUN <<EOF\nBEGIN {\n\tprint \"foo\" > \"/dest\"\n}\nEOF\n\
         FROM scratch\nCOPY --from=build /dest /dest\n",
    );
    let out = build_local(&root, &ctx, &[]);
    assert_eq!(read(&out.path().join("dest")), "foo\n");
}

#[test]
fn run_shebang_heredoc() {
    // testRunShebangHeredoc
    let root = Root::with_busybox(KILN);
    let ctx = dockerfile(
        "FROM busybox AS build\n\nWORKDIR /dest\n\n\
         RUN <<EOF\n#!/bin/awk -f\nBEGIN {\n\tprint \"hello\" >> \"./out1\"\n\tprint \"world\" >> \"./out1\"\n}\nEOF\n\n\
         RUN <<-EOF\n\t#!/bin/awk -f\n\tBEGIN {\n\t\tprint \"hello\" >> \"./out2\"\n\t\tprint \"world\" >> \"./out2\"\n\t}\nEOF\n\n\
         FROM scratch\nCOPY --from=build /dest /\n",
    );
    let out = build_local(&root, &ctx, &[]);
    assert_eq!(read(&out.path().join("out1")), "hello\nworld\n");
    assert_eq!(read(&out.path().join("out2")), "hello\nworld\n");
}

#[test]
fn run_complex_heredoc() {
    // testRunComplexHeredoc
    let root = Root::with_busybox(KILN);
    let ctx = dockerfile(
        "FROM busybox AS build\n\nWORKDIR /dest\n\n\
         RUN cat <<EOF1 | tr '[:upper:]' '[:lower:]' > ./out1; \\\n\
         \tcat <<EOF2 | tr '[:lower:]' '[:upper:]' > ./out2\nhello WORLD\nEOF1\nHELLO world\nEOF2\n\n\
         RUN <<EOF 3<<IN1 4<<IN2 awk -f -\nBEGIN {\n\
         \twhile ((getline line < \"/proc/self/fd/3\") > 0)\n\t\tprint tolower(line) > \"./fd3\"\n\
         \twhile ((getline line < \"/proc/self/fd/4\") > 0)\n\t\tprint toupper(line) > \"./fd4\"\n}\nEOF\n\
         hello WORLD\nIN1\nHELLO world\nIN2\n\nFROM scratch\nCOPY --from=build /dest /\n",
    );
    let out = build_local(&root, &ctx, &[]);
    for (name, content) in [
        ("out1", "hello world\n"),
        ("out2", "HELLO WORLD\n"),
        ("fd3", "hello world\n"),
        ("fd4", "HELLO WORLD\n"),
    ] {
        assert_eq!(read(&out.path().join(name)), content, "{name}");
    }
}

#[test]
fn heredoc_indent() {
    // testHeredocIndent
    let root = Root::with_busybox(KILN);
    let ctx = dockerfile(
        "FROM busybox AS build\n\nCOPY <<EOF /dest/foo-copy\n\tfoo\nEOF\n\nCOPY <<-EOF /dest/bar-copy\n\tbar\nEOF\n\n\
         RUN <<EOF\necho \"\n\tfoo\" > /dest/foo-run\nEOF\n\nRUN <<-EOF\necho \"\n\tbar\" > /dest/bar-run\nEOF\n\n\
         RUN <<EOF\n#!/bin/sh\necho \"\n\tfoo\" > /dest/foo2-run\nEOF\n\n\
         RUN <<-EOF\n#!/bin/sh\necho \"\n\tbar\" > /dest/bar2-run\nEOF\n\n\
         RUN <<EOF sh > /dest/foo3-run\necho \"\n\tfoo\"\nEOF\n\nRUN <<-EOF sh > /dest/bar3-run\necho \"\n\tbar\"\nEOF\n\n\
         FROM scratch\nCOPY --from=build /dest /\n",
    );
    let out = build_local(&root, &ctx, &[]);
    for (name, content) in [
        ("foo-copy", "\tfoo\n"),
        ("foo-run", "\n\tfoo\n"),
        ("foo2-run", "\n\tfoo\n"),
        ("foo3-run", "\n\tfoo\n"),
        ("bar-copy", "bar\n"),
        ("bar-run", "\nbar\n"),
        ("bar2-run", "\nbar\n"),
        ("bar3-run", "\nbar\n"),
    ] {
        assert_eq!(read(&out.path().join(name)), content, "{name}");
    }
}

// Multi-stage, ONBUILD.

#[test]
fn multi_stage_implicit_from() {
    // testMultiStageImplicitFrom
    let root = Root::with_busybox(KILN);
    let ctx = dockerfile("FROM scratch\nCOPY --from=busybox /etc/passwd test\n");
    let out = build_local(&root, &ctx, &[]);
    assert!(read(&out.path().join("test")).contains("root"));
    let ctx = dockerfile(
        "FROM busybox AS golang\nRUN mkdir -p /usr/bin && echo -n foo > /usr/bin/go\n\
         FROM scratch\nCOPY --from=golang /usr/bin/go go\n",
    );
    let out = build_local(&root, &ctx, &[]);
    assert!(read(&out.path().join("go")).contains("foo"));
}

#[test]
fn onbuild_cleared() {
    // testOnBuildCleared (through the local store rather than a registry)
    let root = Root::with_busybox(KILN);
    let base = dockerfile("FROM busybox\nONBUILD RUN mkdir -p /out && echo -n 11 >> /out/foo\n");
    build_ok(&root, &base, &["-t", "testonbuild:base"]);
    build_ok(
        &root,
        &dockerfile("\tFROM testonbuild:base\n\t"),
        &["-t", "testonbuild:child"],
    );
    let ctx = dockerfile(
        "\tFROM testonbuild:child AS base\n\tFROM scratch\n\tCOPY --from=base /out /\n\t",
    );
    let out = build_local(&root, &ctx, &[]);
    assert_eq!(read(&out.path().join("foo")), "11");
}

#[test]
fn onbuild_inherited_stage_run() {
    // testOnBuildInheritedStageRun
    let root = Root::with_busybox(KILN);
    let ctx = dockerfile(
        "FROM busybox AS base\nONBUILD RUN mkdir -p /out && echo -n 11 >> /out/foo\n\
         FROM base AS mid\nRUN cp /out/foo /out/bar\nFROM scratch\nCOPY --from=mid /out/bar /\n",
    );
    let out = build_local(&root, &ctx, &[]);
    assert_eq!(read(&out.path().join("bar")), "11");
}

// WORKDIR.

#[test]
fn workdir_creates_dir() {
    // testWorkdirCreatesDir
    let root = Root::empty();
    let out = build_local(
        &root,
        &dockerfile("FROM scratch\nWORKDIR /foo\nWORKDIR /\n"),
        &[],
    );
    assert!(std::fs::symlink_metadata(out.path().join("foo"))
        .expect("foo")
        .is_dir());
}

#[test]
fn workdir_user() {
    // testWorkdirUser
    let root = Root::with_busybox(KILN);
    let ctx = with_adduser(
        "FROM busybox\n{ADDUSER}USER user\nWORKDIR /mydir\n\
         RUN [ \"$(stat -c \"%U %G\" /mydir)\" == \"user user\" ]\n",
    );
    build_ok(&root, &ctx, &[]);
}

#[test]
fn workdir_copy_ignore_relative() {
    // testWorkdirCopyIgnoreRelative
    let root = Root::empty();
    let ctx = dockerfile(
        "FROM scratch AS base\nWORKDIR /foo\nCOPY Dockerfile /\nFROM scratch\n\
         # relative path still loaded as absolute\nCOPY --from=base Dockerfile .\n",
    );
    build_ok(&root, &ctx, &[]);
}

#[test]
fn workdir_exists() {
    // testWorkdirExists
    let root = Root::with_busybox(KILN);
    let ctx = with_adduser(
        "FROM busybox\n{ADDUSER}RUN mkdir /mydir && chown user:user /mydir\nWORKDIR /mydir\n\
         RUN [ \"$(stat -c \"%U %G\" /mydir)\" == \"user user\" ]\n",
    );
    build_ok(&root, &ctx, &[]);
}

// .dockerignore.

#[test]
fn dockerignore() {
    // testDockerignore
    let root = Root::empty();
    let ctx = dockerfile("FROM scratch\nCOPY . .\n")
        .file("foo", "foo-contents")
        .file("bar", "bar-contents")
        .file("baz", "baz-contents")
        .file("bay", "bay-contents")
        .file(".dockerignore", "\nba*\nDockerfile\n!bay\n.dockerignore\n");
    let out = build_local(&root, &ctx, &[]);
    assert_eq!(read(&out.path().join("foo")), "foo-contents");
    for gone in [".dockerignore", "Dockerfile", "bar", "baz"] {
        assert!(!out.path().join(gone).exists(), "{gone}");
    }
    assert_eq!(read(&out.path().join("bay")), "bay-contents");
}

#[test]
fn dockerignore_invalid() {
    // testDockerignoreInvalid
    let root = Root::empty();
    let ctx = dockerfile("FROM scratch\nCOPY . .\n").file(".dockerignore", "!\n");
    build_err(&root, &ctx, &[]);
}

#[test]
fn dockerignore_override() {
    // testDockerignoreOverride
    let root = Root::with_busybox(KILN);
    let ctx = dockerfile("FROM busybox\nCOPY . .\nRUN [ -f foo ] && [ ! -f bar ]\n")
        .file("Dockerfile.dockerignore", "\nbar\n")
        .file(
            "Dockerfile2",
            "FROM busybox\nCOPY . .\nRUN [ ! -f foo ] && [ -f bar ]\n",
        )
        .file("Dockerfile2.dockerignore", "\nfoo\n")
        .file("foo", "contents0")
        .file("bar", "contents0");
    build_ok(&root, &ctx, &[]);
    let file2 = ctx.path().join("Dockerfile2");
    build_ok(&root, &ctx, &["-f", file2.to_str().expect("utf-8")]);
}

// RUN network and security modes.

#[test]
fn run_no_network() {
    // testRunNoNetwork (as root, so with the second step)
    let root = Root::with_busybox(KILN);
    let ctx =
        dockerfile("\nFROM busybox\nRUN --network=none ! ip link show eth0\nRUN ip link show eth0");
    build_ok(&root, &ctx, &[]);
}

#[test]
fn run_global_network() {
    // testRunGlobalNetwork: the build-wide host network (kiln's `--network host`), which needs the entitlement,
    // and `--network=none` overriding it for one step.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    std::thread::spawn(move || {
        for mut conn in listener.incoming().flatten() {
            let _ = std::io::Write::write_all(&mut conn, b"foo\n");
        }
    });
    let root = Root::with_busybox(KILN);
    let ctx = dockerfile(&format!(
        "\nFROM busybox\nRUN nc 127.0.0.1 {port} | grep foo\nRUN --network=none ! nc -z 127.0.0.1 {port}\n"
    ));
    build_ok(
        &root,
        &ctx,
        &["--network", "host", "--allow", "network.host"],
    );
    let err = build_err(&root, &ctx, &["--network", "host", "--no-cache"]);
    assert!(
        err.contains("entitlement network.host is not allowed"),
        "{err}"
    );
}

const SANDBOX_CAPS: &str =
    "[ \"$(cat /proc/self/status | grep CapBnd)\" == \"CapBnd:\t00000000a80425fb\" ]";

#[test]
fn run_security_insecure() {
    // testRunSecurityInsecure, entitlement granted and denied. BuildKit expects every capability up to bit 37
    // (`3fffffffff`); a sandbox can grant only what its own bounding set holds, so the expected value is that set
    // (the test machine's lacks CAP_SYS_RESOURCE).
    let status = std::fs::read_to_string("/proc/self/status").expect("status");
    let own = status
        .lines()
        .find_map(|l| l.strip_prefix("CapBnd:"))
        .map(|v| u64::from_str_radix(v.trim(), 16).expect("hex"))
        .expect("CapBnd");
    let full = format!("{:x}", own & 0x3f_ffff_ffff);
    let root = Root::with_busybox(KILN);
    let ctx = dockerfile(&format!(
        "\nFROM busybox\nRUN --security=insecure [ \"$(printf '%x' $(( $(cat /proc/self/status | grep CapBnd | cut -f 2 | sed s#^#0x#) & 0x3fffffffff)))\" == \"{full}\" ]\nRUN {SANDBOX_CAPS}\n"
    ));
    build_ok(&root, &ctx, &["--allow", "security.insecure"]);
    let err = build_err(&root, &ctx, &["--no-cache"]);
    assert!(
        err.contains("entitlement security.insecure is not allowed"),
        "{err}"
    );
}

#[test]
fn run_security_sandbox() {
    // testRunSecuritySandbox
    let root = Root::with_busybox(KILN);
    build_ok(
        &root,
        &dockerfile(&format!(
            "\nFROM busybox\nRUN --security=sandbox {SANDBOX_CAPS}\n"
        )),
        &[],
    );
}

#[test]
fn run_security_default() {
    // testRunSecurityDefault
    let root = Root::with_busybox(KILN);
    build_ok(
        &root,
        &dockerfile(&format!("\nFROM busybox\nRUN {SANDBOX_CAPS}\n")),
        &[],
    );
}

/// Writes a tar of `entries` (made in a scratch directory by `make`) to `dest`, with GNU tar.
fn tar_of(dest: &Path, names: &[&str], make: impl FnOnce(&Path)) {
    let dir = tempfile::tempdir().expect("tempdir");
    make(dir.path());
    let mut args = vec![
        "--numeric-owner".to_string(),
        "-cf".to_string(),
        dest.display().to_string(),
        "-C".to_string(),
        dir.path().display().to_string(),
    ];
    args.extend(names.iter().map(|n| n.to_string()));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let r = kiln_tests::run("tar", &args, None);
    assert_eq!(r.code, 0, "{}", r.stderr);
}

#[test]
fn symlink_destination() {
    // testSymlinkDestination
    let root = Root::empty();
    let ctx =
        dockerfile("\nFROM scratch\nADD t.tar /\nCOPY foo /symlink/\n").file("foo", "content0");
    tar_of(&ctx.path().join("t.tar"), &["symlink"], |d| {
        std::os::unix::fs::symlink("../tmp/symlink-target", d.join("symlink")).expect("symlink")
    });
    let out = build_local(&root, &ctx, &[]);
    assert_eq!(read(&out.path().join("tmp/symlink-target/foo")), "content0");
}

#[test]
fn dockerfile_add_archive_wildcard() {
    // testDockerfileAddArchiveWildcard
    let root = Root::empty();
    let ctx = dockerfile("\nFROM scratch\nADD *.tar /dest\n");
    tar_of(&ctx.path().join("t.tar"), &["foo"], |d| {
        std::fs::write(d.join("foo"), "content0").expect("foo")
    });
    tar_of(&ctx.path().join("b.tar"), &["bar"], |d| {
        std::fs::write(d.join("bar"), "content1").expect("bar")
    });
    let out = build_local(&root, &ctx, &[]);
    assert_eq!(read(&out.path().join("dest/foo")), "content0");
    assert_eq!(read(&out.path().join("dest/bar")), "content1");
}

#[test]
fn copy_and_add_invalid_chmod() {
    // testCopyInvalidChmod and testAddInvalidChmod
    let root = Root::empty();
    for inst in ["COPY", "ADD"] {
        for mode in ["64a", "10000"] {
            let ctx = dockerfile(&format!("\nFROM scratch\n{inst} --chmod={mode} foo /\n"))
                .file("foo", "foo-contents");
            let err = build_err(&root, &ctx, &[]);
            let want = format!(
                "invalid chmod parameter: '{mode}'. it should be octal string and between 0 and 07777"
            );
            assert!(err.contains(&want), "{inst} {mode}: {err}");
        }
    }
}

#[test]
fn dockerfile_dirs() {
    // testDockerfileDirs: absolute paths, `.` from inside the context, and separate context and Dockerfile
    // directories.
    let root = Root::with_busybox(KILN);
    let text =
        "\nFROM busybox\nCOPY foo /foo2\nCOPY foo /\nRUN echo -n bar > foo3\nRUN test -f foo\n\
                RUN cmp -s foo foo2\nRUN cmp -s foo foo3\n";
    let ctx = dockerfile(text).file("foo", "bar");
    build_ok(&root, &ctx, &[]);
    let mut cmd = root.command(
        KILN,
        &["build", "--progress=plain", "-f", "Dockerfile", "."],
    );
    let r: kiln_tests::Run = cmd.current_dir(ctx.path()).output().expect("kiln").into();
    assert_eq!(r.code, 0, "{}", r.stderr);
    let dockerfile_dir = dockerfile(text);
    let context_dir = Context::new().file("foo", "bar");
    let file = dockerfile_dir.path().join("Dockerfile");
    build_ok(&root, &context_dir, &["-f", file.to_str().expect("utf-8")]);
}

#[test]
fn global_arg() {
    // testGlobalArg
    let root = Root::with_busybox(KILN);
    let ctx = dockerfile("\nARG tag=nosuchtag\nFROM busybox:${tag}\n");
    build_ok(&root, &ctx, &["--build-arg", "tag=latest"]);
}

#[test]
fn copy_through_symlink_multi_stage() {
    // testCopyThroughSymlinkMultiStage
    let root = Root::with_busybox(KILN);
    let ctx = dockerfile(
        "\nFROM busybox AS build\nRUN mkdir -p /out/sub && ln -s /out/sub /sub && ln -s out/sub /sub2 && echo -n \"data\" > /sub/foo\n\
         FROM scratch\nCOPY --from=build /sub/foo .\nCOPY --from=build /sub2/foo bar\n\t",
    );
    let out = build_local(&root, &ctx, &[]);
    assert_eq!(read(&out.path().join("foo")), "data");
}

#[test]
fn copy_follow_all_symlinks() {
    // testCopyFollowAllSymlinks
    let root = Root::empty();
    let ctx =
        dockerfile("\nFROM scratch\nCOPY foo /\nCOPY foo/sub bar\n").file("bar", "bar-contents");
    std::fs::create_dir(ctx.path().join("foo")).expect("mkdir");
    std::os::unix::fs::symlink("../bar", ctx.path().join("foo/sub")).expect("symlink");
    build_local(&root, &ctx, &[]);
}

#[test]
fn copy_wildcards() {
    // testCopyWildcards
    let root = Root::empty();
    let ctx = dockerfile(
        "\nFROM scratch AS base\nCOPY *.go /gofiles/\nCOPY f*.go foo2.go\nCOPY sub/* /subdest/\n\
         COPY sub/*/dir2/foo /subdest2/\nCOPY sub/*/dir2/foo /subdest3/bar\nCOPY . all/\n\
         COPY sub/dir1/ subdest4\nCOPY sub/dir1/. subdest5\nCOPY sub/dir1 subdest6\n",
    )
    .file("foo.go", "foo-contents")
    .file("bar.go", "bar-contents")
    .file("sub/dir1/dir2/foo", "foo-contents");
    let out = build_local(&root, &ctx, &[]);
    for (name, content) in [
        ("gofiles/foo.go", "foo-contents"),
        ("gofiles/bar.go", "bar-contents"),
        ("foo2.go", "foo-contents"),
        ("subdest/dir2/foo", "foo-contents"),
        ("subdest2/foo", "foo-contents"),
        ("subdest3/bar", "foo-contents"),
        ("all/foo.go", "foo-contents"),
        ("subdest4/dir2/foo", "foo-contents"),
        ("subdest5/dir2/foo", "foo-contents"),
        ("subdest6/dir2/foo", "foo-contents"),
    ] {
        assert_eq!(read(&out.path().join(name)), content, "{name}");
    }
}

#[test]
fn chmod_non_octal() {
    // testChmodNonOctal: the Dockerfile BuildKit's test generates from its cases (on busybox rather than
    // alpine; both chmods are busybox's).
    let cases = [
        ("file", "f1", "go-w", false),
        ("file", "f2", "u=rw,g=r,o=r", false),
        ("file", "f3", "a+X", false),
        ("dir", "d1", "go-w", true),
        ("dir", "d2", "u+rw,g+r,o-x,o+w", true),
        ("dir", "d3", "a+X", true),
    ];
    let (mut expected, mut copies, mut verify) = (String::new(), String::new(), String::new());
    for (src, dst, mode, is_dir) in cases {
        if is_dir {
            expected += &format!(
                "RUN mkdir -p /input/dirs/{dst} && cp -a /input/{src} /input/dirs/{dst}/{dst}\n"
            );
            expected += &format!(
                "RUN cp -a /input/dirs/{dst}/. /expected/ && chmod {mode} /expected/{dst}\n"
            );
            copies += &format!("COPY --from=base --chmod={mode} /input/dirs/{dst} /\n");
        } else {
            expected += &format!(
                "RUN cp -a /input/{src} /expected/{dst} && chmod {mode} /expected/{dst}\n"
            );
            copies += &format!("COPY --from=base --chmod={mode} /input/{src} /{dst}\n");
        }
        verify += &format!(
            "RUN [ \"$(stat -c %A /actual/{dst})\" = \"$(stat -c %A /expected/{dst})\" ]\n"
        );
    }
    let text = format!(
        "\nFROM busybox as base\nRUN <<eot\n\tset -ex\n\tmkdir /input\n\ttouch /input/file\n\tchmod 666 /input/file\n\
         \tmkdir /input/dir\n\tchmod 124 /input/dir\n\tmkdir /expected\neot\n{expected}\nFROM scratch as result\n{copies}\n\
         FROM base\nCOPY --from=result / /actual/\n{verify}\n"
    );
    let root = Root::with_busybox(KILN);
    build_ok(&root, &dockerfile(&text), &[]);
}

#[test]
fn copy_parents() {
    // testCopyParents
    let root = Root::empty();
    let ctx = dockerfile("\nFROM scratch\nCOPY --parents foo1/foo2/bar /\nWORKDIR /test\nCOPY --parents foo1/foo2/ba* .\n")
        .file("foo1/foo2/bar", "testing")
        .file("foo1/foo2/baz", "testing2");
    let out = build_local(&root, &ctx, &[]);
    assert_eq!(read(&out.path().join("foo1/foo2/bar")), "testing");
    assert_eq!(read(&out.path().join("test/foo1/foo2/bar")), "testing");
    assert_eq!(read(&out.path().join("test/foo1/foo2/baz")), "testing2");
}

/// The base stage of testCopyRelativeParents and testCopyParentsMissingDirectory built to each target in turn
/// (busybox for alpine).
fn build_targets(dockerfile_text: &str, targets: &[&str]) -> Vec<(String, kiln_tests::Run)> {
    let root = Root::with_busybox(KILN);
    let ctx = dockerfile(dockerfile_text);
    targets
        .iter()
        .map(|t| (t.to_string(), build(&root, &ctx, &["--target", t])))
        .collect()
}

#[test]
fn copy_relative_parents() {
    // testCopyRelativeParents
    let text = "\nFROM busybox AS base\nWORKDIR /test\nRUN <<eot\n\tset -ex\n\tmkdir -p a/b/c/d/e\n\tmkdir -p a/b2/c/d/e\n\tmkdir -p a/b/c2/d/e\n\tmkdir -p a/b/c2/d/e2\n\ttouch a/b/c/d/foo\n\ttouch a/b/c/d/e/bay\n\ttouch a/b2/c/d/e/bar\n\ttouch a/b/c2/d/e/baz\n\ttouch a/b/c2/d/e2/baz\neot\n\nFROM busybox AS middle\nCOPY --from=base --parents /test/a/b/./c/d /out/\nRUN <<eot\n\tset -ex\n\t[ -d /out/c/d/e ]\n\t[ -f /out/c/d/foo ]\n\t[ ! -d /out/a ]\n\t[ ! -d /out/e ]\neot\n\nFROM busybox AS end\nCOPY --from=base --parents /test/a/b/c/d/. /out/\nRUN <<eot\n\tset -ex\n\t[ -d /out/test/a/b/c/d/e ]\n\t[ -f /out/test/a/b/c/d/foo ]\neot\n\nFROM busybox AS start\nCOPY --from=base --parents ./test/a/b/c/d /out/\nRUN <<eot\n\tset -ex\n\t[ -d /out/test/a/b/c/d/e ]\n\t[ -f /out/test/a/b/c/d/foo ]\neot\n\nFROM busybox AS double\nCOPY --from=base --parents /test/a/./b/./c /out/\nRUN <<eot\n\tset -ex\n\t[ -d /out/b/c/d/e ]\n\t[ -f /out/b/c/d/foo ]\neot\n\nFROM busybox AS wildcard\nCOPY --from=base --parents /test/a/./*/c /out/\nRUN <<eot\n\tset -ex\n\t[ -d /out/b/c/d/e ]\n\t[ -f /out/b2/c/d/e/bar ]\neot\n\nFROM busybox AS doublewildcard\nCOPY --from=base --parents /test/a/b*/./c/**/e /out/\nRUN <<eot\n\tset -ex\n\t[ -d /out/c/d/e ]\n\t[ -f /out/c/d/e/bay ] # via b\n\t[ -f /out/c/d/e/bar ] # via b2\neot\n\nFROM busybox AS doubleinputs\nCOPY --from=base --parents /test/a/b/c*/./d/**/baz /test/a/b*/./c/**/bar /out/\nRUN <<eot\n\tset -ex\n\t[ -f /out/d/e/baz ]\n\t[ ! -f /out/d/e/bay ]\n\t[ -f /out/d/e2/baz ]\n\t[ -f /out/c/d/e/bar ] # via b2\neot\n";
    let targets = [
        "middle",
        "end",
        "start",
        "double",
        "wildcard",
        "doublewildcard",
        "doubleinputs",
    ];
    for (t, r) in build_targets(text, &targets) {
        assert_eq!(r.code, 0, "target {t}: {}", r.stderr);
    }
}

#[test]
fn copy_parents_missing_directory() {
    // testCopyParentsMissingDirectory
    let text = "\nFROM busybox AS base\nWORKDIR /test\nRUN <<eot\n\tset -ex\n\tmkdir -p a/b/c/d/e\n\ttouch a/b/c/d/foo\n\ttouch a/b/c/d/e/bay\neot\n\nFROM busybox AS normal\nCOPY --from=base --parents /test/a/b/c/d /out/\nRUN <<eot\n\tset -ex\n\t[ -d /out/test/a/b/c/d/e ]\n\t[ -f /out/test/a/b/c/d/e/bay ]\n\t[ ! -d /out/e ]\n\t[ ! -d /out/a ]\neot\n\nFROM busybox AS withpivot\nCOPY --from=base --parents /test/a/b/./c/d /out/\nRUN <<eot\n\tset -ex\n\t[ -d /out/c/d/e ]\n\t[ -f /out/c/d/foo ]\n\t[ ! -d /out/a ]\n\t[ ! -d /out/e ]\neot\n\nFROM busybox AS nonexistentfile\nCOPY --from=base --parents /test/nonexistent-file /out/\n\nFROM busybox AS wildcard-nonexistent\nCOPY --from=base --parents /test/a/b2*/c /out/\nRUN <<eot\n\tset -ex\n\t[ -d /out ]\n\t[ ! -d /out/a ]\neot\n\nFROM busybox AS wildcard-afterpivot\nCOPY --from=base --parents /test/a/b/./c2* /out/\nRUN <<eot\n\tset -ex\n\t[ -d /out ]\n\t[ ! -d /out/a ]\n\t[ ! -d /out/c* ]\neot\n";
    let targets = [
        "normal",
        "withpivot",
        "nonexistentfile",
        "wildcard-nonexistent",
        "wildcard-afterpivot",
    ];
    for (t, r) in build_targets(text, &targets) {
        if t == "nonexistentfile" {
            assert_ne!(r.code, 0, "target {t} should fail");
            assert!(
                r.stderr.contains("\"/test/nonexistent-file\": not found"),
                "{}",
                r.stderr
            );
        } else {
            assert_eq!(r.code, 0, "target {t}: {}", r.stderr);
        }
    }
}

#[test]
fn mount_duplicate() {
    // testMountDuplicate: run twice, the second time with a.txt changed
    let root = Root::with_busybox(KILN);
    for text in ["foo\n", "updated\n"] {
        let ctx = dockerfile(
            "\nFROM busybox AS base\nRUN --mount=source=.,target=/tmp/test \\\n  --mount=source=b.txt,target=/tmp/b.txt \\\n  \
             cat /tmp/test/a.txt /tmp/b.txt > /combined.txt\nFROM scratch\nCOPY --from=base /combined.txt /\n",
        )
        .file("a.txt", text)
        .file("b.txt", "bar\n");
        let out = build_local(&root, &ctx, &[]);
        assert_eq!(
            read(&out.path().join("combined.txt")),
            format!("{text}bar\n")
        );
    }
}

#[test]
fn secret_as_environ() {
    // testSecretAsEnviron: the secret reaches $SECRET_ENV (over the ENV of the same name), no file is made, and the
    // step's name shows the variable masked as BuildKit names it.
    let root = Root::with_busybox(KILN);
    let secret = tempfile::NamedTempFile::new().expect("secret file");
    std::fs::write(secret.path(), "pw").expect("write secret");
    let spec = format!("id=mysecret,src={}", secret.path().display());
    let ctx = dockerfile(
        "\nFROM busybox\nENV SECRET_ENV=foo\nRUN --mount=type=secret,id=mysecret,env=SECRET_ENV \
         [ \"$SECRET_ENV\" == \"pw\" ] && [ ! -f /run/secrets/mysecret ] || false\n",
    );
    let r = build(&root, &ctx, &["--secret", &spec]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let named = r
        .stderr
        .lines()
        .find(|l| l.contains("/run/secrets/mysecret") && l.contains("RUN"))
        .unwrap_or_else(|| panic!("no step line names the RUN: {}", r.stderr));
    assert!(named.contains(r#"[ "****" == "pw" ] && "#), "{named}");
    assert!(
        !named.contains("foo") && !named.contains("$SECRET_ENV"),
        "{named}"
    );
}

#[test]
fn secret_as_environ_with_file_mount() {
    // testSecretAsEnvironWithFileMount
    let root = Root::with_busybox(KILN);
    let secret = tempfile::NamedTempFile::new().expect("secret file");
    std::fs::write(secret.path(), "pw").expect("write secret");
    let spec = format!("id=mysecret,src={}", secret.path().display());
    let ctx = dockerfile(
        "\nFROM busybox\nRUN --mount=type=secret,id=mysecret,target=/run/secrets/secret,env=SECRET_ENV \
         [ \"$SECRET_ENV\" == \"pw\" ] && [ -f /run/secrets/secret ] || false\n",
    );
    build_ok(&root, &ctx, &["--secret", &spec]);
}

#[test]
fn onbuild_with_child_stage() {
    // testOnBuildWithChildStage (through the local store rather than a registry)
    let root = Root::with_busybox(KILN);
    let base =
        dockerfile("\nFROM busybox\nONBUILD RUN mkdir -p /out && echo -n yes >> /out/didrun\n");
    build_ok(&root, &base, &["-t", "testonbuildstage:base"]);
    let ctx = dockerfile(
        "\nFROM testonbuildstage:base AS base\nRUN [ -f /out/didrun ] && touch /step1\nRUN rm /out/didrun\n\
         RUN [ ! -f /out/didrun ] && touch /step2\nFROM base AS child\nRUN [ ! -f /out/didrun ] && touch /step3\n\
         FROM scratch\nCOPY --from=child /step* /\n",
    );
    let out = build_local(&root, &ctx, &[]);
    for step in ["step1", "step2", "step3"] {
        assert!(out.path().join(step).exists(), "{step}");
    }
}

#[test]
fn onbuild_inherited_stage_with_from() {
    // testOnBuildInheritedStageWithFrom (the source stage on busybox rather than alpine)
    let root = Root::with_busybox(KILN);
    let ctx = dockerfile(
        "\nFROM busybox AS src\nRUN mkdir -p /in && echo -n 12 > /in/file\nFROM busybox AS base\n\
         ONBUILD COPY --from=src /in/file /out/foo\nFROM base AS mid\nRUN cp /out/foo /out/bar\n\
         FROM scratch\nCOPY --from=mid /out/bar /\n",
    );
    let out = build_local(&root, &ctx, &[]);
    assert_eq!(read(&out.path().join("bar")), "12");
}

#[test]
fn onbuild_with_cache_mount() {
    // testOnBuildWithCacheMount (through the local store rather than a registry)
    let root = Root::with_busybox(KILN);
    let base = dockerfile(
        "\nFROM busybox\nONBUILD RUN --mount=type=cache,target=/cache echo -n 42 >> /cache/foo && echo -n 11 >> /bar\n",
    );
    build_ok(&root, &base, &["-t", "testonbuild:base"]);
    let ctx = dockerfile(
        "FROM testonbuild:base\nRUN --mount=type=cache,target=/cache [ \"$(cat /cache/foo)\" = \"42\" ] && [ \"$(cat /bar)\" = \"11\" ]\n",
    );
    build_ok(&root, &ctx, &[]);
}

#[test]
fn mount_env_across_stages() {
    // testMountEnvAcrossStages
    let root = Root::with_busybox(KILN);
    let ctx = dockerfile(
        "\nFROM busybox as stage1\nENV MNT_ID=mycache\nENV MNT_TYPE2=cache\n\
         RUN --mount=type=cache,id=mycache,target=/abcabc touch /abcabc/foo\n\
         RUN --mount=type=$MNT_TYPE2,id=$MNT_ID,target=/cbacba [ -f /cbacba/foo ]\n\
         FROM stage1\nRUN --mount=type=$MNT_TYPE2,id=$MNT_ID,target=/whatever [ -f /whatever/foo ]\n",
    );
    build_ok(&root, &ctx, &[]);
}

#[test]
fn mount_meta_arg() {
    // testMountMetaArg
    let root = Root::with_busybox(KILN);
    let ctx = dockerfile(
        "\nARG META_PATH=/tmp/meta\nFROM busybox\nARG META_PATH\n\
         RUN --mount=type=cache,id=mycache,target=/tmp/meta touch /tmp/meta/foo\n\
         RUN --mount=type=cache,id=mycache,target=$META_PATH [ -f /tmp/meta/foo ]\n",
    );
    build_ok(&root, &ctx, &[]);
}

#[test]
fn platform_args_implicit() {
    // testPlatformArgsImplicit
    let root = Root::empty();
    let ctx = dockerfile(
        "\nFROM scratch AS build-linux\nCOPY foo bar\nFROM build-${TARGETOS}\nCOPY foo2 bar2\n",
    )
    .file("foo", "d0")
    .file("foo2", "d1");
    let out = build_local(&root, &ctx, &[]);
    assert_eq!(read(&out.path().join("bar")), "d0");
    assert_eq!(read(&out.path().join("bar2")), "d1");
}

#[test]
fn pull_scratch() {
    // testPullScratch (the Dockerfile part; the low-level mount of the image is not a Dockerfile's)
    let root = Root::empty();
    build_ok(
        &root,
        &dockerfile("\nFROM scratch\nLABEL foo=bar\n"),
        &["-t", "testpullscratch:latest"],
    );
    let ctx = dockerfile("\nFROM testpullscratch:latest\nLABEL bar=baz\nCOPY foo .\n")
        .file("foo", "foo-contents");
    let image = build_image(&root, &ctx, "testpullscratch2:latest", &[]);
    assert_eq!(image["rootfs"]["type"], "layers", "{image}");
    assert_eq!(
        image["rootfs"]["diff_ids"].as_array().map(Vec::len),
        Some(1),
        "{image}"
    );
    assert_eq!(image["config"]["Labels"]["foo"], "bar", "{image}");
    assert_eq!(image["config"]["Labels"]["bar"], "baz", "{image}");
}

// Cache.

#[test]
fn reproducible_ids() {
    // testReproducibleIDs: two names, one image
    let root = Root::with_busybox(KILN);
    let ctx = dockerfile("\nFROM busybox\nENV foo=bar\nCOPY foo /\nRUN echo bar > bar\n")
        .file("foo", "foo-contents");
    let ids = tempfile::tempdir().expect("tempdir");
    let (a, b) = (ids.path().join("a"), ids.path().join("b"));
    build_ok(
        &root,
        &ctx,
        &[
            "-t",
            "dockerfileids:test",
            "--iidfile",
            a.to_str().expect("utf-8"),
        ],
    );
    // A second later, so a time taken at export (not from the cached layers) would show as another ID.
    std::thread::sleep(std::time::Duration::from_millis(1100));
    build_ok(
        &root,
        &ctx,
        &[
            "-t",
            "dockerfileids2:test",
            "--iidfile",
            b.to_str().expect("utf-8"),
        ],
    );
    assert_eq!(read(&a), read(&b));
}

#[test]
fn no_cache() {
    // testNoCache: `--no-cache` re-runs every stage, `--no-cache-filter s1` only s1's steps
    let root = Root::with_busybox(KILN);
    let ctx = dockerfile(
        "\nFROM busybox AS s0\nRUN cat /dev/urandom | head -c 100 | sha256sum | tee unique\n\
         FROM busybox AS s1\nRUN cat /dev/urandom | head -c 100 | sha256sum | tee unique2\n\
         FROM scratch\nCOPY --from=s0 unique /\nCOPY --from=s1 unique2 /\n",
    );
    let one = build_local(&root, &ctx, &[]);
    let two = build_local(&root, &ctx, &["--no-cache"]);
    let three = build_local(&root, &ctx, &["--no-cache-filter", "s1"]);
    let get = |d: &tempfile::TempDir, f: &str| read(&d.path().join(f));
    assert_ne!(get(&one, "unique"), get(&two, "unique"));
    assert_ne!(get(&one, "unique2"), get(&two, "unique2"));
    assert_eq!(get(&two, "unique"), get(&three, "unique"));
    assert_ne!(get(&one, "unique2"), get(&three, "unique2"));
}

#[test]
fn wildcard_rename_cache() {
    // testWildcardRenameCache (#2008; on busybox rather than alpine)
    let root = Root::with_busybox(KILN);
    let ctx = dockerfile("\nFROM busybox\nCOPY file* /files/\nRUN ls /files/file1\n")
        .file("file1", "foo");
    build_ok(&root, &ctx, &[]);
    std::fs::rename(ctx.path().join("file1"), ctx.path().join("file2")).expect("rename");
    build_err(&root, &ctx, &[]);
}

#[test]
fn copy_wildcard_cache() {
    // testCopyWildcardCache
    let root = Root::with_busybox(KILN);
    let ctx = dockerfile(
        "\nFROM busybox AS base\nCOPY foo* files/\nRUN cat /dev/urandom | head -c 100 | sha256sum > unique\n\
         COPY bar files/\nFROM scratch\nCOPY --from=base unique /\n",
    )
    .file("foo1", "foo1-data")
    .file("foo2", "foo2-data")
    .file("bar", "bar-data");
    let first = read(&build_local(&root, &ctx, &[]).path().join("unique"));
    std::fs::write(ctx.path().join("bar"), "bar-data-mod").expect("write");
    assert_eq!(
        read(&build_local(&root, &ctx, &[]).path().join("unique")),
        first
    );
    std::fs::write(ctx.path().join("foo2"), "foo2-data-mod").expect("write");
    assert_ne!(
        read(&build_local(&root, &ctx, &[]).path().join("unique")),
        first
    );
}

#[test]
fn context_change_dir_to_file() {
    // testContextChangeDirToFile
    let root = Root::empty();
    let ctx = dockerfile("\nFROM scratch\nCOPY foo /\n").file("foo/bar", "contents");
    build_local(&root, &ctx, &[]);
    std::fs::remove_dir_all(ctx.path().join("foo")).expect("rm foo");
    let ctx = ctx.file("foo", "contents2");
    let out = build_local(&root, &ctx, &[]);
    assert_eq!(read(&out.path().join("foo")), "contents2");
}

// Users, resources, exporters, SOURCE_DATE_EPOCH.

#[test]
fn user() {
    // testUser, on a busybox given the `daemon` user and the `daemon` and `wheel` groups of BuildKit's busybox
    let root = Root::with_busybox(KILN);
    let ids = "\"$(id -u):$(id -g)/$(id -un):$(id -gn)/$(id -G):$(id -Gn)\"";
    let ctx = dockerfile(&format!(
        "\nFROM busybox AS base\n\
         RUN echo 'daemon:x:1:1:daemon:/usr/sbin:/bin/false' >> /etc/passwd && echo 'daemon:x:1:' >> /etc/group && echo 'wheel:x:10:root' >> /etc/group\n\
         RUN mkdir -m 0777 /out\nRUN id -un > /out/rootuser\n\
         RUN [ \"$(id -u):$(id -g)/$(id -un):$(id -gn)\" = '0:0/root:root' ]\n\
         USER root\nRUN [ \"$(id -G):$(id -Gn)\" = '0 10:root wheel' ]\n\
         RUN echo 'dockerio:x:1001:1001::/bin:/bin/false' >> /etc/passwd && \\\n\techo 'dockerio:x:1001:' >> /etc/group\n\
         USER dockerio\nRUN [ {ids} = '1001:1001/dockerio:dockerio/1001:dockerio' ]\n\
         USER root\nRUN [ {ids} = '0:0/root:root/0 10:root wheel' ] && \\\n\techo 'supplementary:x:1002:dockerio' >> /etc/group\n\
         USER dockerio\nRUN [ {ids} = '1001:1001/dockerio:dockerio/1001 1002:dockerio supplementary' ]\n\
         USER 1001\nRUN [ {ids} = '1001:1001/dockerio:dockerio/1001 1002:dockerio supplementary' ]\n\
         USER dockerio:dockerio\nRUN [ {ids} = '1001:1001/dockerio:dockerio/1001:dockerio' ]\n\
         USER 1001:dockerio\nRUN [ {ids} = '1001:1001/dockerio:dockerio/1001:dockerio' ]\n\
         USER dockerio:1001\nRUN [ {ids} = '1001:1001/dockerio:dockerio/1001:dockerio' ]\n\
         USER 1001:1001\nRUN [ {ids} = '1001:1001/dockerio:dockerio/1001:dockerio' ]\n\
         USER dockerio:supplementary\nRUN [ {ids} = '1001:1002/dockerio:supplementary/1002:supplementary' ]\n\
         USER dockerio:1002\nRUN [ {ids} = '1001:1002/dockerio:supplementary/1002:supplementary' ]\n\
         USER 1001:supplementary\nRUN [ {ids} = '1001:1002/dockerio:supplementary/1002:supplementary' ]\n\
         USER 1001:1002\nRUN [ {ids} = '1001:1002/dockerio:supplementary/1002:supplementary' ]\n\
         USER 1042:1043\nRUN [ {ids} = '1042:1043/1042:1043/1043:1043' ]\n\
         USER daemon\nRUN id -un > /out/daemonuser\nFROM scratch\nCOPY --from=base /out /\nUSER nobody\n"
    ));
    let out = build_local(&root, &ctx, &[]);
    assert_eq!(read(&out.path().join("rootuser")), "root\n");
    assert_eq!(read(&out.path().join("daemonuser")), "daemon\n");
    let config = build_config(&root, &ctx, "dockerfileuser:test", &[]);
    assert_eq!(config["User"], "nobody", "{config}");
}

#[test]
fn tar_exporter_basic() {
    // testTarExporterBasic
    let root = Root::empty();
    let ctx = dockerfile("\nFROM scratch\nCOPY foo foo\n").file("foo", "data");
    let dir = tempfile::tempdir().expect("tempdir");
    let tar = dir.path().join("out.tar");
    build_ok(
        &root,
        &ctx,
        &["-o", &format!("type=tar,dest={}", tar.display())],
    );
    let r = kiln_tests::run("tar", &["-xOf", tar.to_str().expect("utf-8"), "foo"], None);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(r.stdout, "data");
}

#[test]
fn dockerfile_scratch_config() {
    // testDockerfileScratchConfig
    let root = Root::empty();
    let image = build_image(
        &root,
        &dockerfile("\nFROM scratch\nENV foo=bar\n"),
        "dockerfilescratch:test",
        &[],
    );
    assert_ne!(image["os"], "", "{image}");
    assert!(
        image["os"].is_string() && image["architecture"].is_string(),
        "{image}"
    );
    assert_ne!(image["architecture"], "", "{image}");
    let workdir = image["config"]["WorkingDir"].as_str().unwrap_or("");
    assert_ne!(workdir, "", "{image}");
    assert_eq!(image["rootfs"]["type"], "layers", "{image}");
    assert_eq!(
        image["rootfs"]["diff_ids"].as_array().map(Vec::len),
        Some(0),
        "{image}"
    );
    let history = image["history"].as_array().expect("history");
    assert_eq!(history.len(), 1, "{image}");
    assert!(
        history[0]["created_by"]
            .as_str()
            .unwrap_or("")
            .contains("ENV foo=bar"),
        "{image}"
    );
    assert_eq!(history[0]["empty_layer"], true, "{image}");
    let env: Vec<&str> = image["config"]["Env"]
        .as_array()
        .expect("Env")
        .iter()
        .filter_map(|e| e.as_str())
        .collect();
    assert!(env.contains(&"foo=bar"), "{image}");
    assert!(env.iter().any(|e| e.starts_with("PATH=")), "{image}");
}

#[test]
fn source_date_epoch_without_exporter() {
    // testSourceDateEpochWithoutExporter: the epoch as a build arg sets the created time and every history time
    let root = Root::empty();
    let ctx = dockerfile("\nFROM scratch\nENTRYPOINT foo bar\nCOPY Dockerfile .\n");
    let image = build_image(
        &root,
        &ctx,
        "sde:test",
        &["--build-arg", "SOURCE_DATE_EPOCH=1700000001"],
    );
    // 1700000001 in RFC 3339 (BuildKit compares the Unix seconds).
    let at_epoch = |v: &serde_json::Value| {
        v.as_str().is_some_and(|t| {
            t.strip_prefix("2023-11-14T22:13:21")
                .is_some_and(|rest| rest.trim_start_matches(['.', '0']) == "Z")
        })
    };
    assert!(at_epoch(&image["created"]), "{image}");
    let history = image["history"].as_array().expect("history");
    assert!(!history.is_empty());
    for h in history {
        assert!(at_epoch(&h["created"]), "{image}");
    }
}

/// The layers of the image in the OCI archive `-o type=oci,dest=…<attrs>` makes of `ctx` (BuildKit's
/// readOCIManifest); the build's stderr when it fails.
fn oci_layers(
    ctx: &Context,
    attrs: &str,
    extra: &[&str],
) -> Result<Vec<serde_json::Value>, String> {
    let root = Root::empty();
    let dir = tempfile::tempdir().expect("tempdir");
    let tar = dir.path().join("out.tar");
    let tar_s = tar.to_str().expect("utf-8");
    let dest = format!("type=oci,dest={tar_s}{attrs}");
    let mut args = vec!["-o", dest.as_str()];
    args.extend_from_slice(extra);
    let r = build(&root, ctx, &args);
    if r.code != 0 {
        return Err(r.stderr);
    }
    let json = |name: &str| -> serde_json::Value {
        let r = kiln_tests::run("tar", &["-xOf", tar_s, name], None);
        assert_eq!(r.code, 0, "{name}: {}", r.stderr);
        serde_json::from_str(&r.stdout).expect("json")
    };
    let blob = |d: &serde_json::Value| {
        let hex = d.as_str().expect("digest").trim_start_matches("sha256:");
        json(&format!("blobs/sha256/{hex}"))
    };
    let mut m = blob(&json("index.json")["manifests"][0]["digest"]);
    while m["manifests"].is_array() {
        m = blob(&m["manifests"][0]["digest"]);
    }
    Ok(m["layers"].as_array().expect("layers").clone())
}

fn epoch_default_dockerfile(epoch: &str) -> Context {
    dockerfile(&format!(
        "\nARG SOURCE_DATE_EPOCH={epoch}\nFROM scratch\nCOPY Dockerfile .\n"
    ))
}

#[test]
fn source_date_epoch_dockerfile_default() {
    // testSourceDateEpochDockerfileDefault: 2015-10-21 07:28 UTC as the Dockerfile's default
    let layers = oci_layers(
        &epoch_default_dockerfile("1445412480"),
        ",rewrite-timestamp=true",
        &[],
    )
    .expect("build");
    assert_eq!(layers.len(), 1);
    assert_eq!(
        layers[0]["annotations"]["buildkit/rewritten-timestamp"],
        "1445412480"
    );
}

#[test]
fn source_date_epoch_dockerfile_default_override() {
    // testSourceDateEpochDockerfileDefaultOverride
    let layers = oci_layers(
        &epoch_default_dockerfile("1700000001"),
        ",rewrite-timestamp=true",
        &["--build-arg", "SOURCE_DATE_EPOCH=1700000002"],
    )
    .expect("build");
    assert_eq!(layers.len(), 1);
    assert_eq!(
        layers[0]["annotations"]["buildkit/rewritten-timestamp"],
        "1700000002"
    );
}

#[test]
fn source_date_epoch_dockerfile_default_reset() {
    // testSourceDateEpochDockerfileDefaultReset: the exporter's empty source-date-epoch sets none
    let layers = oci_layers(
        &epoch_default_dockerfile("1445412480"),
        ",source-date-epoch=,rewrite-timestamp=true",
        &[],
    )
    .expect("build");
    assert_eq!(layers.len(), 1);
    assert!(
        layers[0]["annotations"]["buildkit/rewritten-timestamp"].is_null(),
        "{}",
        layers[0]
    );
}

#[test]
fn source_date_epoch_dockerfile_default_invalid() {
    // testSourceDateEpochDockerfileDefaultInvalid
    let err = oci_layers(&epoch_default_dockerfile("not-a-timestamp"), "", &[])
        .expect_err("the build should fail");
    assert!(
        err.contains("invalid SOURCE_DATE_EPOCH: not-a-timestamp"),
        "{err}"
    );
}

#[test]
fn copy_symlinks() {
    // testCopySymlinks
    let root = Root::empty();
    let ctx = dockerfile("\nFROM scratch\nCOPY foo /\nCOPY sub/l* alllinks/\n")
        .file("bar", "bar-contents")
        .file("sub/lfile", "lfile-contents")
        .file("sub/subfile", "subfile-contents")
        .file("sub/baz", "baz-contents");
    for (target, link) in [
        ("bar", "foo"),
        ("subfile", "sub/l0"),
        ("second", "sub/l1"),
        ("baz", "sub/second"),
    ] {
        std::os::unix::fs::symlink(target, ctx.path().join(link)).expect("symlink");
    }
    let out = build_local(&root, &ctx, &[]);
    for (name, content) in [
        ("foo", "bar-contents"),
        ("alllinks/l0", "subfile-contents"),
        ("alllinks/lfile", "lfile-contents"),
        ("alllinks/l1", "baz-contents"),
    ] {
        assert_eq!(read(&out.path().join(name)), content, "{name}");
    }
}

#[test]
fn dockerfile_add_archive_with_implied_parent_dir() {
    // testDockerfileAddArchiveWithImpliedParentDir: a gzip tar listing `etc/dnf/` but not `etc/`
    let root = Root::empty();
    let ctx = dockerfile("\nFROM scratch\nADD t.tar.gz /\n");
    let src = tempfile::tempdir().expect("tempdir");
    std::fs::create_dir_all(src.path().join("etc/dnf")).expect("mkdir");
    std::fs::write(src.path().join("etc/dnf/dnf.conf"), "content0").expect("write");
    let tar = ctx.path().join("t.tar.gz");
    let r = kiln_tests::run(
        "tar",
        &[
            "--no-recursion",
            "-czf",
            tar.to_str().expect("utf-8"),
            "-C",
            src.path().to_str().expect("utf-8"),
            "etc/dnf/",
            "etc/dnf/dnf.conf",
        ],
        None,
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
    let out = build_local(&root, &ctx, &[]);
    assert_eq!(read(&out.path().join("etc/dnf/dnf.conf")), "content0");
}

#[test]
fn mount_invalid() {
    // testMountInvalid
    let root = Root::empty();
    for (text, wants) in [
        (
            "\nFROM scratch\nRUN --mont=target=/mytmp,type=tmpfs /bin/true\n",
            ["unknown flag: --mont", "did you mean mount?"],
        ),
        (
            "\n\tFROM scratch\n\tRUN --mount=typ=tmpfs /bin/true\n\t",
            ["unexpected key 'typ'", "did you mean type?"],
        ),
        (
            "\n\tFROM scratch\n\tRUN --mount=type=tmp /bin/true\n\t",
            ["unsupported mount type \"tmp\"", "did you mean tmpfs?"],
        ),
    ] {
        let err = build_err(&root, &dockerfile(text), &[]);
        for want in wants {
            assert!(err.contains(want), "{want}: {err}");
        }
    }
}

#[test]
fn mount_arg() {
    // testMountArg
    let root = Root::with_busybox(KILN);
    let ctx = dockerfile(
        "\nFROM busybox\nARG MNT_TYPE=cache\nRUN --mount=type=$MNT_TYPE,target=/mycache2 touch /mycache2/foo\n\
         RUN --mount=type=cache,target=/mycache2 [ -f /mycache2/foo ]\n",
    );
    build_ok(&root, &ctx, &[]);
}

#[test]
fn cache_mount_parallel() {
    // testCacheMountParallel (#5566), 20 uncached builds; on busybox rather than alpine
    let root = Root::with_busybox(KILN);
    let ctx = dockerfile(
        "\nFROM busybox AS b1\nRUN --mount=type=cache,target=/foo/bar --mount=type=cache,target=/foo/bar/baz echo 1\n\
         FROM busybox AS b2\nRUN --mount=type=cache,target=/foo/bar --mount=type=cache,target=/foo/bar/baz echo 2\n\
         FROM scratch\nCOPY --from=b1 /etc/passwd p1\nCOPY --from=b2 /etc/passwd p2\n",
    );
    for _ in 0..20 {
        build_ok(&root, &ctx, &["--no-cache"]);
    }
}

#[test]
fn cache_mount_source_escape() {
    // testCacheMountSourceEscape: a cache `source=` through a symlink planted in the cache must fail
    let root = Root::with_busybox(KILN);
    let ctx = dockerfile(
        "\nFROM busybox AS init\n\
         RUN --mount=type=cache,id=sourceescape,target=/cache mkdir -p /cache/sel && echo benign > /cache/sel/benign.txt\n\
         FROM init AS link\nRUN --mount=type=cache,id=sourceescape,target=/cache rm -rf /cache/sel && ln -s /etc /cache/sel\n\
         FROM link AS victim\nRUN --mount=type=cache,id=sourceescape,source=sel,target=/victim cat /victim/hostname\n\
         FROM scratch\nCOPY --from=victim /etc/hostname /hostname\n",
    );
    build_err(&root, &ctx, &["--no-cache"]);
}

#[test]
fn onbuild_heredoc() {
    // testOnBuildHeredoc (through the local store rather than a registry)
    let root = Root::with_busybox(KILN);
    let base =
        dockerfile("\nFROM busybox\nONBUILD RUN <<EOF\necho \"hello world\" >> /dest\nEOF\n");
    build_ok(&root, &base, &["-t", "testonbuildheredoc:base"]);
    let ctx = dockerfile("\n\tFROM testonbuildheredoc:base AS base\n\tFROM scratch\n\tCOPY --from=base /dest /dest\n\t");
    let out = build_local(&root, &ctx, &[]);
    assert_eq!(read(&out.path().join("dest")), "hello world\n");
}

#[test]
fn copy_heredoc_special_symbols() {
    // testCopyHeredocSpecialSymbols
    let root = Root::empty();
    let ctx = dockerfile(
        "\nFROM scratch\n\nCOPY <<EOF quotefile\n\"quotes in file\"\nEOF\n\n\
         COPY <<EOF slashfile1\n\\\nEOF\nCOPY <<EOF slashfile2\n\\\\\nEOF\nCOPY <<EOF slashfile3\n\\$\nEOF\n\n\
         COPY <<\"EOF\" rawslashfile1\n\\\nEOF\nCOPY <<\"EOF\" rawslashfile2\n\\\\\nEOF\nCOPY <<\"EOF\" rawslashfile3\n\\$\nEOF\n",
    );
    let out = build_local(&root, &ctx, &[]);
    for (name, content) in [
        ("quotefile", "\"quotes in file\"\n"),
        ("slashfile1", "\n"),
        ("slashfile2", "\\\n"),
        ("slashfile3", "$\n"),
        ("rawslashfile1", "\\\n"),
        ("rawslashfile2", "\\\\\n"),
        ("rawslashfile3", "\\$\n"),
    ] {
        assert_eq!(read(&out.path().join(name)), content, "{name}");
    }
}

#[test]
fn heredoc_var_substitution() {
    // testHeredocVarSubstitution
    let root = Root::with_busybox(KILN);
    let ctx = dockerfile(
        "\nFROM busybox as build\nARG name=world\nCOPY <<EOF /dest/c1\nHello ${name}!\nEOF\n\
         COPY <<'EOF' /dest/c2\nHello ${name}!\nEOF\nCOPY <<\"EOF\" /dest/c3\nHello ${name}!\nEOF\n\
         COPY <<EOF /dest/q1\nHello '${name}'!\nEOF\nCOPY <<EOF /dest/q2\nHello \"${name}\"!\nEOF\n\
         COPY <<'EOF' /dest/qsingle1\nHello '${name}'!\nEOF\nCOPY <<'EOF' /dest/qsingle2\nHello \"${name}\"!\nEOF\n\
         COPY <<\"EOF\" /dest/qdouble1\nHello '${name}'!\nEOF\nCOPY <<\"EOF\" /dest/qdouble2\nHello \"${name}\"!\nEOF\n\
         RUN <<EOF\ngreeting=\"Hello\"\necho \"${greeting} ${name}!\" > /dest/r1\nEOF\n\
         RUN <<EOF\nname=\"new world\"\necho \"Hello ${name}!\" > /dest/r2\nEOF\nFROM scratch\nCOPY --from=build /dest /\n",
    );
    let out = build_local(&root, &ctx, &[]);
    for (name, content) in [
        ("c1", "Hello world!\n"),
        ("c2", "Hello ${name}!\n"),
        ("c3", "Hello ${name}!\n"),
        ("q1", "Hello 'world'!\n"),
        ("q2", "Hello \"world\"!\n"),
        ("qsingle1", "Hello '${name}'!\n"),
        ("qsingle2", "Hello \"${name}\"!\n"),
        ("qdouble1", "Hello '${name}'!\n"),
        ("qdouble2", "Hello \"${name}\"!\n"),
        ("r1", "Hello world!\n"),
        ("r2", "Hello new world!\n"),
    ] {
        assert_eq!(read(&out.path().join(name)), content, "{name}");
    }
}

#[test]
fn onbuild_new_deps() {
    // testOnBuildNewDeps, through the local store rather than a registry, with busybox's /etc/passwd standing in
    // for alpine's /etc/alpine-release (any file of another image)
    let root = Root::with_busybox(KILN);
    let base = dockerfile(
        "\nFROM busybox\nONBUILD COPY --from=busybox /etc/passwd /out/alpine-release2\n",
    );
    build_ok(&root, &base, &["-t", "testonbuilddeps:base"]);
    let ctx = dockerfile(
        "\n\tFROM testonbuilddeps:base AS base\n\tRUN cat /out/alpine-release2 > /out/alpine-release3\n\
         \tFROM scratch\n\tCOPY --from=base /out /\n\t",
    );
    let out = build_local(&root, &ctx, &[]);
    assert!(read(&out.path().join("alpine-release3")).len() > 5);
    let base2 = dockerfile(
        "\nFROM busybox\nONBUILD RUN --mount=type=bind,target=/in,from=inputstage mkdir /out && cat /in/foo > /out/bar && cat /in/out/alpine-release2 > /out/bar2\n",
    );
    build_ok(&root, &base2, &["-t", "testonbuilddeps:base2"]);
    let ctx = dockerfile(
        "\n\tFROM testonbuilddeps:base AS inputstage\n\tRUN cat /out/alpine-release2 > /out/alpine-release4\n\
         \tRUN echo -n foo > /foo\n\tFROM testonbuilddeps:base2 AS base\n\tRUN echo -n bar3 > /out/bar3\n\
         \tFROM scratch\n\tCOPY --from=base /out /\n\t",
    );
    let out = build_local(&root, &ctx, &[]);
    assert_eq!(read(&out.path().join("bar")), "foo");
    assert!(read(&out.path().join("bar2")).len() > 5);
    assert_eq!(read(&out.path().join("bar3")), "bar3");
}

#[test]
fn workdir_source_date_epoch_reproducible() {
    // testWorkdirSourceDateEpochReproducible: the second build in an empty root (BuildKit prunes its cache)
    let ctx = dockerfile("\nFROM busybox\nWORKDIR /mydir\n");
    let index = |root: &Root| {
        let dir = tempfile::tempdir().expect("tempdir");
        let dest = format!("type=oci,dest={},tar=false", dir.path().display());
        build_ok(
            root,
            &ctx,
            &["--build-arg", "SOURCE_DATE_EPOCH=1673364896", "-o", &dest],
        );
        std::fs::read(dir.path().join("index.json")).expect("index.json")
    };
    let one = index(&Root::with_busybox(KILN));
    std::thread::sleep(std::time::Duration::from_secs(3));
    let two = index(&Root::with_busybox(KILN));
    assert_eq!(one, two);
}

#[test]
fn oci_layout_multiname() {
    // testOCILayoutMultiname: two names of one image in a layout directory and in a tar of it
    let root = Root::empty();
    let ctx = dockerfile("\nFROM scratch\nCOPY <<EOF /foo\nhello\nEOF\n");
    let validate = |idx: &serde_json::Value| {
        let m = idx["manifests"].as_array().expect("manifests");
        assert_eq!(m.len(), 2, "{idx}");
        for key in ["digest", "platform", "mediaType", "size"] {
            assert_eq!(m[0][key], m[1][key], "{key}: {idx}");
        }
        let ann = |i: usize, k: &str| m[i]["annotations"][k].clone();
        assert_eq!(
            ann(0, "io.containerd.image.name"),
            "docker.io/org/repo:tag1"
        );
        assert_eq!(
            ann(1, "io.containerd.image.name"),
            "docker.io/org/repo:tag2"
        );
        assert_eq!(ann(0, "org.opencontainers.image.ref.name"), "tag1");
        assert_eq!(ann(1, "org.opencontainers.image.ref.name"), "tag2");
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let dest = format!(
        "type=oci,dest={},tar=false,\"name=org/repo:tag1,org/repo:tag2\"",
        dir.path().display()
    );
    build_ok(&root, &ctx, &["-o", &dest]);
    validate(&serde_json::from_str(&read(&dir.path().join("index.json"))).expect("json"));

    // The tar variant matches.
    let tar = dir.path().join("out.tar");
    let tar_s = tar.to_str().expect("utf-8");
    let dest = format!("type=oci,dest={tar_s},\"name=org/repo:tag1,org/repo:tag2\"");
    build_ok(&root, &ctx, &["-o", &dest]);
    let r = kiln_tests::run("tar", &["-xOf", tar_s, "index.json"], None);
    assert_eq!(r.code, 0, "{}", r.stderr);
    validate(&serde_json::from_str(&r.stdout).expect("json"));
}

#[test]
fn platform_args_explicit() {
    // testPlatformArgsExplicit
    let root = Root::with_busybox(KILN);
    let ctx = dockerfile(
        "\nFROM --platform=$BUILDPLATFORM busybox AS build\nARG TARGETPLATFORM\nARG TARGETOS\n\
         RUN mkdir /out && echo -n $TARGETPLATFORM > /out/platform && echo -n $TARGETOS > /out/os\n\
         FROM scratch\nCOPY --from=build out .\n",
    );
    let out = build_local(
        &root,
        &ctx,
        &[
            "--platform",
            "darwin/ppc64le",
            "--build-arg",
            "TARGETOS=freebsd",
        ],
    );
    assert_eq!(read(&out.path().join("platform")), "darwin/ppc64le");
    assert_eq!(read(&out.path().join("os")), "freebsd");
}

#[test]
fn dockerfile_add_chown_archive() {
    // testDockerfileAddChownArchive: owners as the tar exporter writes them
    let root = Root::empty();
    let ctx = dockerfile("\nFROM scratch\nADD --chown=100:200 t.tar /out/\n");
    tar_of(&ctx.path().join("t.tar"), &["foo"], |d| {
        std::fs::write(d.join("foo"), "content0").expect("foo")
    });
    let dir = tempfile::tempdir().expect("tempdir");
    let tar = dir.path().join("out.tar");
    build_ok(
        &root,
        &ctx,
        &["-o", &format!("type=tar,dest={}", tar.display())],
    );
    let tar = tar.to_str().expect("utf-8");
    let r = kiln_tests::run("tar", &["-xOf", tar, "out/foo"], None);
    assert_eq!(r.stdout, "content0", "{}", r.stderr);
    let list = kiln_tests::run("tar", &["--numeric-owner", "-tvf", tar], None).stdout;
    for name in ["out/foo", "out/"] {
        let line = list
            .lines()
            .find(|l| l.ends_with(&format!(" {name}")) || l.ends_with(&format!(" ./{name}")))
            .unwrap_or_else(|| panic!("{name} in {list}"));
        assert_eq!(line.split_whitespace().nth(1), Some("100/200"), "{list}");
    }
}

/// A RUN line giving kiln's busybox base the `daemon` user and group and the `nobody` group name of the busybox
/// image BuildKit's tests use.
const BUSYBOX_ACCOUNTS: &str =
    "RUN echo 'daemon:x:1:1:daemon:/usr/sbin:/bin/false' >> /etc/passwd && \
     echo 'daemon:x:1:' >> /etc/group && sed -i 's/^nogroup:/nobody:/' /etc/group\n";

#[test]
fn copy_chown() {
    // testCopyChown
    let root = Root::with_busybox(KILN);
    let ctx = dockerfile(&format!(
        "\nFROM busybox AS base\n{BUSYBOX_ACCOUNTS}ENV owner 1000\nRUN mkdir -m 0777 /out\nCOPY --chown=daemon foo /\n\
         COPY --chown=1000:nobody bar /baz\nARG group\nCOPY --chown=${{owner}}:${{group}} foo /foobis\n\
         RUN stat -c \"%U %G\" /foo  > /out/fooowner\nRUN stat -c \"%u %G\" /baz/sub  > /out/subowner\n\
         RUN stat -c \"%u %G\" /foobis  > /out/foobisowner\nFROM scratch\nCOPY --from=base /out /\n"
    ))
    .file("foo", "foo-contents")
    .file("bar/sub", "");
    let out = build_local(&root, &ctx, &["--build-arg", "group=nobody"]);
    assert_eq!(read(&out.path().join("fooowner")), "daemon daemon\n");
    assert_eq!(read(&out.path().join("subowner")), "1000 nobody\n");
    assert_eq!(read(&out.path().join("foobisowner")), "1000 nobody\n");
}

#[test]
fn dockerfile_add_chown_expand() {
    // testDockerfileAddChownExpand
    let root = Root::with_busybox(KILN);
    let ctx = dockerfile(&format!(
        "\nFROM busybox\n{BUSYBOX_ACCOUNTS}ARG group\nENV owner 1000\nADD --chown=${{owner}}:${{group}} foo /\n\
         RUN [ \"$(stat -c \"%u %G\" /foo)\" == \"1000 nobody\" ]\n"
    ))
    .file("foo", "foo-contents");
    build_ok(&root, &ctx, &["--build-arg", "group=nobody"]);
}

// Named contexts (ext; kiln has `--build-context`).

/// Tags an `alpine:latest` in `root`: busybox with an /etc/alpine-release, standing in for the alpine image
/// BuildKit's tests pull.
fn fake_alpine(root: &Root) {
    let ctx = dockerfile("FROM busybox\nRUN echo 3.21.0 > /etc/alpine-release\n");
    build_ok(root, &ctx, &["-t", "alpine:latest"]);
}

#[test]
fn named_image_context() {
    // testNamedImageContext (local store for the registry, a busybox with /etc/alpine-release for alpine)
    let root = Root::with_busybox(KILN);
    fake_alpine(&root);
    let ctx = dockerfile("\nFROM busybox AS base\nRUN cat /etc/alpine-release > /out\nFROM scratch\nCOPY --from=base /out /\n");
    let out = build_local(
        &root,
        &ctx,
        &["--build-context", "busybox=docker-image://alpine"],
    );
    assert!(!read(&out.path().join("out")).is_empty());

    let env = dockerfile("\nFROM alpine:latest\nENV PATH=/foobar:$PATH\nENV FOOBAR=foobar\n");
    build_ok(&root, &env, &["-t", "testnamedimagecontext:latest"]);
    let ctx = dockerfile(
        "\nFROM busybox AS base\nRUN cat /etc/alpine-release > /out\nRUN env | grep PATH > /env_path\n\
         RUN env | grep FOOBAR > /env_foobar\nFROM scratch\nCOPY --from=base /out /\nCOPY --from=base /env_path /\n\
         COPY --from=base /env_foobar /\n\t",
    );
    let named = "busybox=docker-image://testnamedimagecontext:latest";
    let out = build_local(&root, &ctx, &["--build-context", named]);
    assert!(!read(&out.path().join("out")).is_empty());
    assert_eq!(read(&out.path().join("env_foobar")).trim(), "FOOBAR=foobar");
    assert!(read(&out.path().join("env_path")).contains("/foobar:"));

    // A replaced stage that is itself based on another stage (moby/buildkit#5578).
    let ctx = dockerfile(
        "\nFROM busybox AS parent\nFROM parent AS base\nRUN echo base > /out\nFROM base\n\
         RUN [ -f /etc/alpine-release ]\nRUN [ ! -f /out ]\n",
    );
    build_ok(
        &root,
        &ctx,
        &[
            "--build-context",
            "base=docker-image://testnamedimagecontext:latest",
        ],
    );
}

#[test]
fn named_local_context() {
    // testNamedLocalContext: a directory replaces a stage, with its own .dockerignore
    let root = Root::empty();
    let ctx = dockerfile("\nFROM busybox AS base\nRUN cat /etc/alpine-release > /out\nFROM scratch\nCOPY --from=base /o* /\n");
    let dir2 = Context::new()
        .file("out", "dummy-result")
        .file("out2", "dummy-result")
        .file(".dockerignore", "out2\n");
    let named = format!("base={}", dir2.path().display());
    let out = build_local(&root, &ctx, &["--build-context", &named]);
    assert!(!read(&out.path().join("out")).is_empty());
    assert!(!out.path().join("out2").exists());
}

#[test]
fn named_image_context_scratch() {
    // testNamedImageContextScratch
    let root = Root::empty();
    let ctx = dockerfile("\nFROM busybox AS build\nCOPY <<EOF /out\nhello world!\nEOF\n");
    let out = build_local(
        &root,
        &ctx,
        &["--build-context", "busybox=docker-image://scratch"],
    );
    assert_eq!(read(&out.path().join("out")), "hello world!\n");
}

#[test]
fn eager_named_context_lookup() {
    // testEagerNamedContextLookup: contexts of stages the target does not need are never resolved
    let root = Root::with_busybox(KILN);
    fake_alpine(&root);
    let ctx = dockerfile(
        "\nFROM broken AS notused\nFROM alpine AS base\nRUN echo \"base\" > /foo\nFROM busybox AS otherstage\n\
         FROM scratch\nCOPY --from=base /foo /foo\n\t",
    );
    let out = build_local(
        &root,
        &ctx,
        &[
            "--build-context",
            "notused=docker-image://docker.io/library/nosuchimage:latest",
            "--build-context",
            "busybox=docker-image://docker.io/library/dontexist:latest",
        ],
    );
    assert_eq!(read(&out.path().join("foo")), "base\n");
}

#[test]
fn excluded_files_on_copy() {
    // testExcludedFilesOnCopy, its plain-directory half (the Dockerfile outside the context, as there)
    let root = Root::empty();
    let src = Context::new()
        .file("dir1/file-101.png", "2")
        .file("dir1/file-102.txt", "3")
        .file("dir1/file-103.jpeg", "4")
        .file("dir2/file-201.pdf", "6")
        .file("dir2/file-202.jpeg", "7")
        .file("dir2/file-203.png", "8")
        .file("dir3/file-301.mp3", "9")
        .file("dir3/file-302.mpeg", "10")
        .file("dir4/file-401.txt", "11");
    std::os::unix::fs::symlink("file-401.txt", src.path().join("dir4/file-402.txt"))
        .expect("symlink");
    std::os::unix::fs::symlink("file-404.txt", src.path().join("dir4/file-403.txt"))
        .expect("symlink");
    let df = dockerfile(
        "\n# ignore all the image files\nFROM scratch as builder1\nCOPY --exclude=*/*.png --exclude=*/*.jpeg . /1\n\n\
         # ignore all document files\nFROM scratch as builder2\nCOPY --exclude=*/*.pdf --exclude=*/*.txt . /2\n\n\
         # ignore all mp3 files\nFROM scratch as builder3\nADD --exclude=*.mp3 dir3/ /3/\n\n\
         # Ignore everything, keeping only .mpeg files, using src as a wildcard.\nFROM scratch as builder4\n\
         COPY --exclude=*.mp3 --exclude=*.jpeg --exclude=*.png --exclude=*.pdf --exclude=*.txt dir* /4/\n\n\
         # Ignore everything, keeping only txt files.\nFROM scratch as builder5\n\
         ADD --exclude=*.mp* --exclude=*.jpeg --exclude=*.png --exclude=*.pdf dir* /5\n\n\
         # Exclude all files.\nFROM scratch as builder6\nADD --exclude=* dir* /6\n\n\
         FROM scratch\nCOPY --from=builder1 / /builder1\nCOPY --from=builder2 / /builder2\n\
         COPY --from=builder3 / /builder3\nCOPY --from=builder4 / /builder4\nCOPY --from=builder5 / /builder5\n\
         COPY --from=builder6 / /builder6\n",
    );
    let file = df.path().join("Dockerfile");
    let out = build_local(&root, &src, &["-f", file.to_str().expect("utf-8")]);
    let kept = [
        ("builder1/1/dir1/file-102.txt", "3"),
        ("builder1/1/dir2/file-201.pdf", "6"),
        ("builder1/1/dir3/file-301.mp3", "9"),
        ("builder1/1/dir3/file-302.mpeg", "10"),
        ("builder1/1/dir4/file-401.txt", "11"),
        ("builder1/1/dir4/file-402.txt", "file-401.txt"),
        ("builder1/1/dir4/file-403.txt", "file-404.txt"),
        ("builder2/2/dir1/file-101.png", "2"),
        ("builder2/2/dir1/file-103.jpeg", "4"),
        ("builder2/2/dir2/file-202.jpeg", "7"),
        ("builder2/2/dir2/file-203.png", "8"),
        ("builder2/2/dir3/file-301.mp3", "9"),
        ("builder2/2/dir3/file-302.mpeg", "10"),
        ("builder3/3/file-302.mpeg", "10"),
        ("builder4/4/file-302.mpeg", "10"),
        ("builder5/5/file-102.txt", "3"),
        ("builder5/5/file-401.txt", "11"),
        ("builder5/5/file-402.txt", "file-401.txt"),
        ("builder5/5/file-403.txt", "file-404.txt"),
    ];
    let excluded = [
        "builder1/1/dir1/file-101.png",
        "builder1/1/dir1/file-103.jpeg",
        "builder1/1/dir2/file-202.jpeg",
        "builder1/1/dir2/file-203.png",
        "builder2/2/dir1/file-102.txt",
        "builder2/2/dir2/file-201.pdf",
        "builder2/2/dir4/file-401.txt",
        "builder2/2/dir4/file-402.txt",
        "builder2/2/dir4/file-403.txt",
        "builder3/3/file-301.mp3",
        "builder4/4/file-101.png",
        "builder4/4/file-102.txt",
        "builder4/4/file-103.jpeg",
        "builder4/4/file-201.pdf",
        "builder4/4/file-202.jpeg",
        "builder4/4/file-203.png",
        "builder4/4/file-301.mp3",
        "builder4/4/dir4/file-401.txt",
        "builder4/4/dir4/file-402.txt",
        "builder4/4/dir4/file-403.txt",
        "builder5/5/file-101.png",
        "builder5/5/file-103.jpeg",
        "builder5/5/file-201.pdf",
        "builder5/5/file-202.jpeg",
        "builder5/5/file-203.png",
        "builder5/5/file-301.mp3",
        "builder5/5/file-302.mpeg",
    ];
    for (name, content) in kept {
        let p = out.path().join(name);
        let meta = std::fs::symlink_metadata(&p).unwrap_or_else(|e| panic!("{name}: {e}"));
        let got = if meta.file_type().is_symlink() {
            std::fs::read_link(&p).expect("link").display().to_string()
        } else {
            read(&p)
        };
        assert_eq!(got, content, "{name}");
    }
    for name in excluded {
        assert!(
            std::fs::symlink_metadata(out.path().join(name)).is_err(),
            "{name} should be excluded"
        );
    }
    let six: Vec<_> = std::fs::read_dir(out.path().join("builder6/6"))
        .expect("builder6/6")
        .collect();
    assert!(six.is_empty(), "{six:?}");
}

#[test]
fn no_snapshot_leak() {
    // testNoSnapshotLeak: a repeated build adds no cache record or snapshot (`kiln du` counts)
    let root = Root::empty();
    let ctx = dockerfile("\nFROM scratch\nCOPY foo /\n").file("foo", "contents");
    let counts = || {
        let du = root.kiln(KILN, &["du"]);
        assert_eq!(du.code, 0, "{}", du.stderr);
        du.stdout
            .lines()
            .filter(|l| l.starts_with("cache records") || l.starts_with("snapshots"))
            .map(|l| {
                // The COUNT column: the first number after the kind's name.
                l.split_whitespace()
                    .find(|w| w.parse::<u64>().is_ok())
                    .unwrap_or("")
                    .to_string()
            })
            .collect::<Vec<_>>()
    };
    build_local(&root, &ctx, &[]);
    let first = counts();
    assert_eq!(first.len(), 2, "{first:?}");
    build_local(&root, &ctx, &[]);
    assert_eq!(counts(), first);
}

#[test]
fn cache_released() {
    // testCacheReleased: nothing a finished build made is held, so pruning everything leaves no cache record
    let root = Root::with_busybox(KILN);
    build_ok(&root, &dockerfile("\nFROM busybox\n"), &[]);
    let prune = root.kiln(KILN, &["prune", "--all", "--force"]);
    assert_eq!(prune.code, 0, "{}", prune.stderr);
    let du = root.kiln(KILN, &["du"]);
    let records = du
        .stdout
        .lines()
        .find(|l| l.starts_with("cache records"))
        .unwrap_or_else(|| panic!("{}", du.stdout));
    assert_eq!(
        records.split_whitespace().nth(2),
        Some("0"),
        "{}",
        du.stdout
    );
}

/// An HTTP server on the host's loopback answering every GET (or HEAD) with `body` and a fixed ETag; its URL.
fn serve(body: Vec<u8>) -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    std::thread::spawn(move || {
        for mut conn in listener.incoming().flatten() {
            let mut request = Vec::new();
            let mut byte = [0u8; 1];
            while !request.ends_with(b"\r\n\r\n") {
                match std::io::Read::read(&mut conn, &mut byte) {
                    Ok(1) => request.push(byte[0]),
                    _ => break,
                }
            }
            let head = format!(
                "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nETag: \"kiln-checklist\"\r\nConnection: close\r\n\r\n",
                body.len()
            );
            let _ = std::io::Write::write_all(&mut conn, head.as_bytes());
            if !request.starts_with(b"HEAD") {
                let _ = std::io::Write::write_all(&mut conn, &body);
            }
        }
    });
    format!("http://127.0.0.1:{port}")
}

#[test]
fn dockerfile_add_archive() {
    // testDockerfileAddArchive
    let root = Root::empty();
    let files = Context::new();
    let tar = files.path().join("t.tar");
    tar_of(&tar, &["foo"], |d| {
        std::fs::write(d.join("foo"), "content0").expect("foo")
    });
    let r = kiln_tests::run("gzip", &["-k", "-n", tar.to_str().expect("utf-8")], None);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let (tar_bytes, gz) = (
        std::fs::read(&tar).expect("tar"),
        std::fs::read(files.path().join("t.tar.gz")).expect("gz"),
    );
    let with = |text: &str, name: &str, bytes: &[u8]| dockerfile(text).file(name, bytes);

    let out = build_local(
        &root,
        &with("\nFROM scratch\nADD t.tar /\n", "t.tar", &tar_bytes),
        &[],
    );
    assert_eq!(read(&out.path().join("foo")), "content0");
    let out = build_local(
        &root,
        &with("\nFROM scratch\nADD t.tar.gz /\n", "t.tar.gz", &gz),
        &[],
    );
    assert_eq!(read(&out.path().join("foo")), "content0");
    let ctx = with(
        "\n\tFROM scratch\n\tADD --unpack=false t.tar.gz /\n\t",
        "t.tar.gz",
        &gz,
    );
    let out = build_local(&root, &ctx, &[]);
    assert!(!out.path().join("foo").exists());
    assert_eq!(
        std::fs::read(out.path().join("t.tar.gz")).expect("t.tar.gz"),
        gz
    );
    let out = build_local(
        &root,
        &with("\nFROM scratch\nCOPY t.tar.gz /\n", "t.tar.gz", &gz),
        &[],
    );
    assert_eq!(
        std::fs::read(out.path().join("t.tar.gz")).expect("t.tar.gz"),
        gz
    );

    let url = format!("{}/t.tar.gz", serve(gz.clone()));
    let out = build_local(
        &root,
        &dockerfile(&format!("\nFROM scratch\nADD {url} /\n")),
        &[],
    );
    assert_eq!(
        std::fs::read(out.path().join("t.tar.gz")).expect("t.tar.gz"),
        gz
    );
    let out = build_local(
        &root,
        &dockerfile(&format!("\nFROM scratch\nADD --unpack=true {url} /dest/\n")),
        &[],
    );
    assert_eq!(read(&out.path().join("dest/foo")), "content0");
    let out = build_local(
        &root,
        &dockerfile(&format!("\nFROM scratch\nADD {url} /newname.tar.gz\n")),
        &[],
    );
    assert_eq!(
        std::fs::read(out.path().join("newname.tar.gz")).expect("newname.tar.gz"),
        gz
    );
}

#[test]
fn dockerfile_add_archive_through_absolute_symlink() {
    // testDockerfileAddArchiveThroughAbsoluteSymlink: var/run -> /run from one layer, then a tar through it
    let root = Root::empty();
    let ctx = dockerfile("\nFROM scratch\nADD rootfs.tar /\nADD payload.tar /\n");
    let tar = |dest: &str, names: &[&str], make: &dyn Fn(&Path)| {
        let dir = tempfile::tempdir().expect("tempdir");
        make(dir.path());
        let out = ctx.path().join(dest);
        let mut args = vec![
            "--numeric-owner",
            "--no-recursion",
            "-cf",
            out.to_str().expect("utf-8"),
        ];
        args.extend(["-C", dir.path().to_str().expect("utf-8")]);
        args.extend(names);
        let r = kiln_tests::run("tar", &args, None);
        assert_eq!(r.code, 0, "{}", r.stderr);
    };
    tar("rootfs.tar", &["run/", "var/", "var/run"], &|d| {
        std::fs::create_dir_all(d.join("run")).expect("mkdir");
        std::fs::create_dir_all(d.join("var")).expect("mkdir");
        std::os::unix::fs::symlink("/run", d.join("var/run")).expect("symlink");
    });
    let git = "var/run/act/actions/broad/.git";
    tar(
        "payload.tar",
        &[
            "var/run/act/",
            "var/run/act/actions/",
            "var/run/act/actions/broad/",
            "var/run/act/actions/broad/.git/",
            "var/run/act/actions/broad/.git/HEAD",
            "var/run/act/actions/broad/.git/HEAD.link",
        ],
        &|d| {
            std::fs::create_dir_all(d.join(git)).expect("mkdir");
            std::fs::write(d.join(git).join("HEAD"), "ref: refs/heads/main\n").expect("HEAD");
            std::fs::hard_link(d.join(git).join("HEAD"), d.join(git).join("HEAD.link"))
                .expect("link");
        },
    );
    let out = build_local(&root, &ctx, &[]);
    let head = out.path().join("run/act/actions/broad/.git/HEAD");
    let link = out.path().join("run/act/actions/broad/.git/HEAD.link");
    assert_eq!(read(&head), "ref: refs/heads/main\n");
    assert_eq!(read(&link), "ref: refs/heads/main\n");
    use std::os::unix::fs::MetadataExt;
    let (a, b) = (
        std::fs::metadata(&head).expect("HEAD"),
        std::fs::metadata(&link).expect("HEAD.link"),
    );
    assert_eq!((a.dev(), a.ino()), (b.dev(), b.ino()), "one file");
}

#[test]
fn add_url_chmod() {
    // testAddURLChmod
    let root = Root::with_busybox(KILN);
    let url = format!("{}/foo", serve(b"content1".to_vec()));
    let ctx = dockerfile(&format!(
        "\nFROM busybox AS build\nADD --chmod=644 {url} /tmp/foo1\nADD --chmod=755 {url} /tmp/foo2\n\
         ADD --chmod=0413 {url} /tmp/foo3\nARG mode\nADD --chmod=${{mode}} {url} /tmp/foo4\n\
         RUN stat -c \"%04a\" /tmp/foo1 >> /dest && \\\n\tstat -c \"%04a\" /tmp/foo2 >> /dest && \\\n\
         \tstat -c \"%04a\" /tmp/foo3 >> /dest && \\\n\tstat -c \"%04a\" /tmp/foo4 >> /dest\n\
         FROM scratch\nCOPY --from=build /dest /dest\n"
    ));
    let out = build_local(&root, &ctx, &["--build-arg", "mode=400"]);
    assert_eq!(read(&out.path().join("dest")), "0644\n0755\n0413\n0400\n");
}

#[test]
fn add_checksum() {
    // testAddChecksum (BuildKit requires only that each bad case fails)
    let root = Root::empty();
    let url = format!("{}/foo", serve(b"content1".to_vec()));
    let hex_of = |bytes: &[u8]| {
        let r = kiln_tests::run("sha256sum", &[], Some(bytes));
        r.stdout
            .split_whitespace()
            .next()
            .expect("sha256sum")
            .to_string()
    };
    let (good, empty) = (hex_of(b"content1"), hex_of(b""));
    build_ok(
        &root,
        &dockerfile(&format!(
            "\nFROM scratch\nADD --checksum=sha256:{good} {url} /tmp/foo\n"
        )),
        &[],
    );
    let env = format!("\nFROM scratch\nENV DIGEST=sha256:{good}\nENV LINK={url}\nADD --checksum=${{DIGEST}} ${{LINK}} /tmp/foo\n");
    build_ok(&root, &dockerfile(&env), &[]);
    for bad in [
        format!("sha256:{empty}"),
        "md5:7e55db001d319a94b0b713529a756623".to_string(),
        format!("unknown:{good}"),
        good.clone(),
    ] {
        build_err(
            &root,
            &dockerfile(&format!(
                "\nFROM scratch\nADD --checksum={bad} {url} /tmp/foo\n"
            )),
            &[],
        );
    }
    let local = dockerfile(&format!(
        "\nFROM scratch\nADD --checksum=sha256:{} foo /tmp/foo\n",
        hex_of(b"local file")
    ))
    .file("foo", "local file");
    build_err(&root, &local, &[]);
}

#[test]
fn export_multi_platform() {
    // testExportMultiPlatform: per-platform directories from the local exporter, then an OCI index of three
    let root = Root::empty();
    let ctx = dockerfile(
        "\nFROM scratch\nARG TARGETARCH\nARG TARGETPLATFORM\nLABEL target=$TARGETPLATFORM\nCOPY arch-$TARGETARCH whoami\n",
    )
    .file("arch-arm", "i am arm")
    .file("arch-amd64", "i am amd64")
    .file("arch-s390x", "i am s390x")
    .file("arch-ppc64le", "i am ppc64le");
    let out = build_local(
        &root,
        &ctx,
        &["--platform", "windows/amd64,linux/arm,linux/s390x"],
    );
    assert_eq!(read(&out.path().join("windows_amd64/whoami")), "i am amd64");
    assert_eq!(read(&out.path().join("linux_arm_v7/whoami")), "i am arm");
    assert_eq!(read(&out.path().join("linux_s390x/whoami")), "i am s390x");

    let tar = out.path().join("out.tar");
    let tar_s = tar.to_str().expect("utf-8").to_string();
    let spec = format!("type=oci,dest={tar_s}");
    build_ok(
        &root,
        &ctx,
        &[
            "--platform",
            "windows/amd64,linux/arm/v6,linux/ppc64le",
            "-o",
            &spec,
        ],
    );
    let member = |name: &str| {
        let r = kiln_tests::run("tar", &["-xOf", &tar_s, name], None);
        assert_eq!(r.code, 0, "{name}: {}", r.stderr);
        r.stdout
    };
    let json =
        |name: &str| -> serde_json::Value { serde_json::from_str(&member(name)).expect("json") };
    let blob = |digest: &serde_json::Value| {
        format!(
            "blobs/sha256/{}",
            digest
                .as_str()
                .expect("digest")
                .trim_start_matches("sha256:")
        )
    };
    let top = json("index.json");
    let idx = json(&blob(&top["manifests"][0]["digest"]));
    let manifests = idx["manifests"].as_array().expect("manifests");
    assert_eq!(manifests.len(), 3, "{idx}");
    let layers = tempfile::tempdir().expect("tempdir");
    for (i, (p, os, arch, data)) in [
        ("windows/amd64", "windows", "amd64", "i am amd64"),
        ("linux/arm/v6", "linux", "arm", "i am arm"),
        ("linux/ppc64le", "linux", "ppc64le", "i am ppc64le"),
    ]
    .into_iter()
    .enumerate()
    {
        let plat = &manifests[i]["platform"];
        let mut formatted = format!(
            "{}/{}",
            plat["os"].as_str().unwrap_or(""),
            plat["architecture"].as_str().unwrap_or("")
        );
        if let Some(v) = plat["variant"].as_str() {
            formatted = format!("{formatted}/{v}");
        }
        assert_eq!(formatted, p, "{idx}");
        let mfst = json(&blob(&manifests[i]["digest"]));
        let mlayers = mfst["layers"].as_array().expect("layers");
        assert_eq!(mlayers.len(), 1, "{mfst}");
        // The layer, possibly compressed: GNU tar reads either from a file.
        let layer_file = layers.path().join(format!("layer{i}"));
        let r = kiln_tests::run(
            "tar",
            &[
                "-xf",
                &tar_s,
                "-C",
                layers.path().to_str().expect("utf-8"),
                &blob(&mlayers[0]["digest"]),
            ],
            None,
        );
        assert_eq!(r.code, 0, "{}", r.stderr);
        std::fs::rename(layers.path().join(blob(&mlayers[0]["digest"])), &layer_file)
            .expect("rename");
        let r = kiln_tests::run(
            "tar",
            &["-xOf", layer_file.to_str().expect("utf-8"), "whoami"],
            None,
        );
        assert_eq!(r.stdout, data, "{}", r.stderr);
        let img = json(&blob(&mfst["config"]["digest"]));
        assert_eq!(img["os"], os, "{img}");
        assert_eq!(img["architecture"], arch, "{img}");
        assert_eq!(img["config"]["Labels"]["target"], p, "{img}");
    }
}

#[test]
fn tar_exporter_multi() {
    // testTarExporterMulti: one platform at the tar's root, several in per-platform directories
    let root = Root::empty();
    let ctx = dockerfile(
        "\nFROM scratch AS stage-linux\nCOPY foo forlinux\nFROM scratch AS stage-darwin\nCOPY bar fordarwin\nFROM stage-$TARGETOS\n",
    )
    .file("foo", "data")
    .file("bar", "data2");
    let dir = tempfile::tempdir().expect("tempdir");
    let member = |tar: &Path, name: &str| {
        let r = kiln_tests::run("tar", &["-xOf", tar.to_str().expect("utf-8"), name], None);
        assert_eq!(r.code, 0, "{name}: {}", r.stderr);
        r.stdout
    };
    let one = dir.path().join("one.tar");
    build_ok(
        &root,
        &ctx,
        &["-o", &format!("type=tar,dest={}", one.display())],
    );
    assert_eq!(member(&one, "forlinux"), "data");
    let multi = dir.path().join("multi.tar");
    let spec = format!("type=tar,dest={}", multi.display());
    build_ok(
        &root,
        &ctx,
        &["--platform", "linux/amd64,darwin/amd64", "-o", &spec],
    );
    assert_eq!(member(&multi, "linux_amd64/forlinux"), "data");
    assert_eq!(member(&multi, "darwin_amd64/fordarwin"), "data2");
}

// Registry cache (ext; kiln has `--cache-to`/`--cache-from`).

/// Two roots holding the same `busybox:latest` (the second pulls what the first pushes to `reg`): a first machine,
/// and a second that has only what a registry gives it, as BuildKit's pruned worker re-pulls its base.
fn two_roots_one_busybox(reg: &kiln_tests::registry::Registry) -> (Root, Root) {
    let a = Root::with_busybox(KILN);
    let base = format!("{}/library/busybox:latest", reg.host);
    let p = a.kiln(KILN, &["push", "busybox:latest", &base]);
    assert_eq!(p.code, 0, "{}", p.stderr);
    let b = Root::empty();
    let pull = b.kiln(KILN, &["pull", &base]);
    assert_eq!(pull.code, 0, "{}", pull.stderr);
    let tag = b.kiln(KILN, &["tag", &base, "busybox:latest"]);
    assert_eq!(tag.code, 0, "{}", tag.stderr);
    (a, b)
}

#[test]
fn cache_import_export() {
    // testCacheImportExport: a registry cache made the random RUN output come back in a second root (BuildKit
    // prunes everything instead)
    let reg = kiln_tests::registry::Registry::start(kiln_tests::registry::Auth::Anonymous);
    let (a, b) = two_roots_one_busybox(&reg);
    let cache = format!("{}/buildkit/testexportdf:latest", reg.host);
    let ctx = dockerfile(
        "\nFROM busybox AS base\nCOPY foo const\n#RUN echo -n foobar > const\n\
         RUN cat /dev/urandom | head -c 100 | sha256sum > unique\nFROM scratch\nCOPY --from=base const /\n\
         COPY --from=base unique /\n",
    )
    .file("foo", "foobar");
    let cache_to = format!("type=registry,ref={cache}");
    let one = build_local(&a, &ctx, &["--cache-to", &cache_to]);
    assert_eq!(read(&one.path().join("const")), "foobar");
    let two = build_local(&b, &ctx, &["--cache-from", &cache]);
    assert_eq!(read(&two.path().join("const")), "foobar");
    assert_eq!(
        read(&two.path().join("unique")),
        read(&one.path().join("unique"))
    );
}

#[test]
fn named_image_context_timestamps() {
    // testNamedImageContextTimestamps: an image built on a named image context gets its own created time
    // (the local store for the registry, a busybox with /etc/alpine-release for alpine)
    let root = Root::with_busybox(KILN);
    fake_alpine(&root);
    let ctx = dockerfile("\nFROM alpine\nRUN echo foo >> /test\n");
    let base = build_image(&root, &ctx, "testnamedimagecontexttimestamps:latest", &[]);
    std::thread::sleep(std::time::Duration::from_millis(1100));
    let named = "alpine=docker-image://testnamedimagecontexttimestamps:latest";
    let derived = build_image(
        &root,
        &ctx,
        "testnamedimagecontexttimestampsderived:latest",
        &["--build-context", named],
    );
    let secs = |v: &serde_json::Value| {
        let t = v["created"].as_str().unwrap_or_else(|| panic!("{v}"));
        let r = kiln_tests::run("date", &["-u", "-d", t, "+%s"], None);
        r.stdout
            .trim()
            .parse::<i64>()
            .unwrap_or_else(|_| panic!("{t}: {}", r.stderr))
    };
    let diff = secs(&derived) - secs(&base);
    assert!(diff > 0 && diff < 600, "{diff}: {base} / {derived}");
}
