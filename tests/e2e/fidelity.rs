//! Where kiln's images used to differ from BuildKit's (issue #28): each test builds a small Dockerfile and checks
//! the exact modes, owners, contents and config fields BuildKit's code gives, naming the BuildKit function or
//! test it follows.

use std::os::unix::fs::MetadataExt;
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

/// Mode bits (`0o7777`), uid and gid of `p`, not following a link.
fn attrs(p: &Path) -> (u32, u32, u32) {
    let m = std::fs::symlink_metadata(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
    (m.mode() & 0o7777, m.uid(), m.gid())
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

#[test]
fn several_sources_to_a_destination_without_a_slash_overwrite_it_in_turn() {
    // BuildKit has no "more than one source needs a trailing /" error: fsutil's Copy writes each source to the
    // destination in turn (sources in order, wildcard matches in lexical order).
    let root = Root::empty();
    let ctx = Context::new()
        .file(
            "Dockerfile",
            "FROM scratch\nCOPY a b /ab\nCOPY d/* /star\nCOPY one/* /single\n",
        )
        .file("a", "a\n")
        .file("b", "b\n")
        .file("d/x", "x\n")
        .file("d/y", "y\n")
        .file("one/only", "only\n");
    let out = build_local(&root, &ctx, &[]);
    assert_eq!(read(&out.path().join("ab")), "b\n");
    assert_eq!(read(&out.path().join("star")), "y\n");
    assert_eq!(read(&out.path().join("single")), "only\n");
}

#[test]
fn dockerignored_files_are_invisible_to_wildcards_and_not_counted() {
    // BuildKit filters the context before any wildcard is matched: with a.txt excluded, `*.txt` matches one
    // file, so `/dest` is that file, not a directory holding it.
    let root = Root::empty();
    let ctx = Context::new()
        .file(
            "Dockerfile",
            "FROM scratch\nCOPY *.txt /dest\nCOPY ign* /none/\n",
        )
        .file(".dockerignore", "a.txt\nignored\n")
        .file("a.txt", "a\n")
        .file("b.txt", "b\n")
        .file("ignored", "i\n");
    let out = build_local(&root, &ctx, &[]);
    assert_eq!(read(&out.path().join("dest")), "b\n");
    assert!(!out.path().join("none/ignored").exists());
}

/// Every path under `root`, relative to it, directories with a trailing `/`.
fn tree(root: &Path) -> std::collections::BTreeSet<String> {
    fn walk(dir: &Path, rel: &str, out: &mut std::collections::BTreeSet<String>) {
        for e in std::fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
            let e = e.expect("dir entry");
            let child = format!("{rel}{}", e.file_name().to_string_lossy());
            if e.file_type().expect("file type").is_dir() {
                out.insert(format!("{child}/"));
                walk(&e.path(), &format!("{child}/"), out);
            } else {
                out.insert(child);
            }
        }
    }
    let mut out = std::collections::BTreeSet::new();
    walk(root, "", &mut out);
    out
}

#[test]
fn dockerignore_exceptions_re_include_paths_below_an_excluded_directory() {
    // fsutil's filtered walk (BuildKit's context transfer) still descends into an excluded directory when an
    // exception lies below it, and emits that directory only when something under it is re-included: the
    // result below is what BuildKit builds from this context, side by side.
    let root = Root::empty();
    let ctx = Context::new()
        .file("Dockerfile", "FROM scratch\nCOPY . /ctx\nCOPY build /b\n")
        .file(
            ".dockerignore",
            "**/*.md\n!README.md\nbuild/\n!build/keep/\ndocs\n!docs/api.md\n.git\n",
        )
        .file("README.md", "readme\n")
        .file("CHANGES.md", "changes\n")
        .file("pkg/notes.md", "notes\n")
        .file("build/out.o", "object\n")
        .file("build/keep/x", "x\n")
        .file("docs/api.md", "api\n")
        .file("docs/guide.txt", "guide\n")
        .file(".git/HEAD", "ref: refs/heads/main\n")
        .file("main.go", "package main\n");
    let out = build_local(&root, &ctx, &[]);
    let want: std::collections::BTreeSet<String> = [
        "b/",
        "b/keep/",
        "b/keep/x",
        "ctx/",
        "ctx/.dockerignore",
        "ctx/Dockerfile",
        "ctx/README.md",
        "ctx/build/",
        "ctx/build/keep/",
        "ctx/build/keep/x",
        "ctx/docs/",
        "ctx/docs/api.md",
        "ctx/main.go",
        "ctx/pkg/",
    ]
    .map(String::from)
    .into();
    assert_eq!(tree(out.path()), want);
    assert_eq!(read(&out.path().join("b/keep/x")), "x\n");
    assert_eq!(read(&out.path().join("ctx/docs/api.md")), "api\n");
}

#[test]
fn directories_a_copy_creates_get_0755_or_the_numeric_chmod_and_the_chown_owner() {
    // fsutil's MkdirAll and prepareTargetDir (BuildKit's testCopyChmod, testCopyChownExistingDir): missing
    // parents and a new destination receiving a directory's contents get 0755 (or the numeric --chmod) and the
    // --chown owner, never the source directory's mode; an existing destination keeps its mode and owner;
    // subdirectories keep their own mode unless --chmod is given.
    let root = Root::with_busybox(KILN);
    let ctx = Context::new()
        .file(
            "Dockerfile",
            "FROM busybox\n\
             RUN mkdir -p /existing && chmod 0700 /existing && chown 7:8 /existing\n\
             COPY src /new/dest\n\
             COPY --chown=1000:1000 src /owned/p/dest\n\
             COPY --chmod=0711 src /moded/dest\n\
             COPY --chown=1000:1000 src /existing\n",
        )
        .file("src/f", "f\n")
        .file("src/sub/g", "g\n");
    std::fs::set_permissions(
        ctx.path().join("src"),
        std::os::unix::fs::PermissionsExt::from_mode(0o700),
    )
    .expect("chmod src");
    std::fs::set_permissions(
        ctx.path().join("src/sub"),
        std::os::unix::fs::PermissionsExt::from_mode(0o750),
    )
    .expect("chmod src/sub");
    let out = build_local(&root, &ctx, &[]);
    let at = |p: &str| attrs(&out.path().join(p));
    assert_eq!(at("new"), (0o755, 0, 0));
    assert_eq!(at("new/dest"), (0o755, 0, 0));
    assert_eq!(at("new/dest/sub"), (0o750, 0, 0));
    assert_eq!(at("owned"), (0o755, 1000, 1000));
    assert_eq!(at("owned/p/dest"), (0o755, 1000, 1000));
    assert_eq!(at("owned/p/dest/sub"), (0o750, 1000, 1000));
    assert_eq!(at("moded"), (0o711, 0, 0));
    assert_eq!(at("moded/dest"), (0o711, 0, 0));
    assert_eq!(at("moded/dest/sub"), (0o711, 0, 0));
    assert_eq!(at("existing"), (0o700, 7, 8));
    assert_eq!(at("existing/f"), (0o644, 1000, 1000));
    assert_eq!(read(&out.path().join("existing/sub/g")), "g\n");
}

#[test]
fn an_unknown_user_or_group_in_a_file_op_is_root_or_keeps_the_user_s_gid() {
    // BuildKit's readUser: a user name missing from /etc/passwd, or no /etc/passwd at all, is 0:0; a group not
    // found leaves the gid the user part gave. WORKDIR under USER resolves its owner the same way.
    let root = Root::with_busybox(KILN);
    let ctx = Context::new()
        .file(
            "Dockerfile",
            "FROM busybox AS base\n\
             RUN echo 'app:x:1000:1001::/home/app:/bin/sh' >> /etc/passwd\n\
             COPY --chown=ghost f /ghost\n\
             COPY --chown=app:nogroup f /app-nogroup\n\
             COPY --chown=app:nosuch f /app-nosuch\n\
             COPY --chown=1234:nosuch f /num-nosuch\n\
             USER ghost\n\
             WORKDIR /ghostdir\n\
             USER root\n\
             RUN stat -c %u:%g:%a /ghostdir > /ghostdir.owner\n\
             FROM scratch\n\
             COPY --from=base /ghost /app-nogroup /app-nosuch /num-nosuch /ghostdir.owner /out/\n\
             COPY --chown=app:app f /scratch-owned\n",
        )
        .file("f", "f\n");
    let out = build_local(&root, &ctx, &[]);
    let at = |p: &str| attrs(&out.path().join(p));
    assert_eq!(at("out/ghost"), (0o644, 0, 0));
    assert_eq!(at("out/app-nogroup"), (0o644, 1000, 65534));
    assert_eq!(at("out/app-nosuch"), (0o644, 1000, 1001));
    assert_eq!(at("out/num-nosuch"), (0o644, 1234, 1234));
    assert_eq!(read(&out.path().join("out/ghostdir.owner")), "0:0:755\n");
    assert_eq!(at("scratch-owned"), (0o644, 0, 0), "no /etc/passwd at all");
}

#[test]
fn a_copy_from_a_stage_creates_its_destination_as_root_and_keeps_existing_owners() {
    // BuildKit's testCopyChownExistingDir: a destination made to receive a directory's contents is root's (or
    // the --chown owner's), not the source directory's; an existing one keeps its owner; what is copied into it
    // keeps the source's owners unless --chown is given.
    let root = Root::with_busybox(KILN);
    let ctx = Context::new().file(
        "Dockerfile",
        "FROM busybox AS source\n\
         RUN touch /file && chown 100:200 /file && mkdir -p /dir/subdir && touch /dir/subdir/nestedfile \
         && chown 100:200 /dir && chown 101:201 /dir/subdir && chown 102:202 /dir/subdir/nestedfile\n\
         FROM busybox AS test_base\n\
         RUN mkdir -p /existingdir/existingsubdir && touch /existingdir/existingfile \
         && chown 500:600 /existingdir && chown 501:601 /existingdir/existingsubdir \
         && chown 501:601 /existingdir/existingfile\n\
         FROM test_base AS copy_from\n\
         COPY --from=source /file .\n\
         COPY --from=source /dir /dir\n\
         COPY --from=source /dir/. /existingdir\n\
         FROM test_base AS copy_from_chowned\n\
         COPY --from=source --chown=300:400 /file .\n\
         COPY --from=source --chown=300:400 /dir /dir\n\
         COPY --from=source --chown=300:400 /dir/. /existingdir\n",
    );
    let owner = |out: &Path, p: &str| {
        let (_, uid, gid) = attrs(&out.join(p));
        format!("{uid}:{gid}")
    };
    let plain = build_local(&root, &ctx, &["--target", "copy_from"]);
    let chowned = build_local(&root, &ctx, &["--target", "copy_from_chowned"]);
    for (p, want_plain, want_chowned) in [
        ("file", "100:200", "300:400"),
        ("dir", "0:0", "300:400"),
        ("dir/subdir", "101:201", "300:400"),
        ("dir/subdir/nestedfile", "102:202", "300:400"),
        ("existingdir", "500:600", "500:600"),
        ("existingdir/existingsubdir", "501:601", "501:601"),
        ("existingdir/existingfile", "501:601", "501:601"),
        ("existingdir/subdir", "101:201", "300:400"),
        ("existingdir/subdir/nestedfile", "102:202", "300:400"),
    ] {
        assert_eq!(owner(plain.path(), p), want_plain, "{p}");
        assert_eq!(owner(chowned.path(), p), want_chowned, "{p} (--chown)");
    }
}
