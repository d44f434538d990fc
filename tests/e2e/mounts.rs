//! `RUN --mount=type=cache` as BuildKit defines it: `sharing=locked` steps take turns, `sharing=private` steps
//! running at once get directories of their own, and `from=`/`source=` seed a fresh cache from a stage.

use kiln_tests::{Context, Root};

use crate::KILN;

/// Builds `ctx` with `extra` flags into a fresh directory and returns a reader of the files there.
fn build_to_dir(root: &Root, ctx: &Context, extra: &[&str]) -> impl Fn(&str) -> String {
    let out = tempfile::tempdir().expect("tempdir");
    let dest = format!("type=local,dest={}", out.path().display());
    let mut args = vec!["build", "--progress=plain", "-o", &dest];
    args.extend_from_slice(extra);
    args.push(ctx.path().to_str().expect("utf-8"));
    let r = root.kiln(KILN, &args);
    assert_eq!(r.code, 0, "{}", r.stderr);
    move |f: &str| std::fs::read_to_string(out.path().join(f)).expect(f)
}

#[test]
fn cache_mounts_share_lock_or_stay_private_and_start_from_a_stage() {
    let root = Root::with_busybox(KILN);
    let ctx = Context::new().file(
        "Dockerfile",
        "FROM busybox AS seed\nRUN mkdir -p /s && echo seeded > /s/file\n\
         FROM busybox AS a\n\
         RUN --mount=type=cache,id=L,target=/c,sharing=locked sh -c 'echo a-in >> /c/log; sleep 1; echo a-out >> /c/log'\n\
         FROM busybox AS b\n\
         RUN --mount=type=cache,id=L,target=/c,sharing=locked sh -c 'echo b-in >> /c/log; sleep 1; echo b-out >> /c/log'\n\
         FROM busybox AS p1\n\
         RUN --mount=type=cache,id=P,target=/c,sharing=private sh -c 'touch /c/p1; sleep 2; ls /c > /seen'\n\
         FROM busybox AS p2\n\
         RUN --mount=type=cache,id=P,target=/c,sharing=private sh -c 'touch /c/p2; sleep 2; ls /c > /seen'\n\
         FROM busybox AS f\n\
         RUN --mount=type=cache,id=F,target=/c,from=seed,source=/s cat /c/file > /got\n\
         FROM busybox\n\
         COPY --from=a /bin/sh /a\nCOPY --from=b /bin/sh /b\n\
         RUN --mount=type=cache,id=L,target=/c cat /c/log > /log\n\
         COPY --from=p1 /seen /p1\nCOPY --from=p2 /seen /p2\nCOPY --from=f /got /got\n",
    );
    let read = build_to_dir(&root, &ctx, &["--max-parallelism", "8"]);
    let log: Vec<String> = read("log").lines().map(str::to_string).collect();
    assert_eq!(log.len(), 4, "{log:?}");
    assert!(
        log[0].ends_with("-in") && log[1] == log[0].replace("-in", "-out"),
        "locked steps took turns: {log:?}"
    );
    assert_eq!(
        read("p1").trim(),
        "p1",
        "private steps at once see only their own"
    );
    assert_eq!(read("p2").trim(), "p2");
    assert_eq!(read("got"), "seeded\n", "from= seeds a fresh cache");
}

#[test]
fn a_rw_bind_mount_takes_writes_and_throws_them_away() {
    let root = Root::with_busybox(KILN);
    let ctx = Context::new().file("Dockerfile", "FROM busybox AS stage\nRUN mkdir /d && echo kept > /d/f\n\
         FROM busybox\n\
         RUN --mount=type=bind,rw,target=/src sh -c 'echo new > /src/new && rm /src/Dockerfile && ls /src > /seen-context'\n\
         RUN --mount=type=bind,from=stage,source=/d,target=/d,rw sh -c 'echo changed > /d/f && cat /d/f > /seen-stage'\n\
         COPY --from=stage /d/f /after\n")
        .file("data.txt", "data\n");
    let read = build_to_dir(&root, &ctx, &[]);
    assert_eq!(
        read("seen-context"),
        "data.txt\nnew\n",
        "the step saw its own writes"
    );
    assert!(
        ctx.path().join("Dockerfile").exists(),
        "the context is untouched"
    );
    assert!(!ctx.path().join("new").exists(), "the context is untouched");
    assert_eq!(read("seen-stage"), "changed\n");
    assert_eq!(read("after"), "kept\n", "the stage is untouched");
}

#[test]
fn security_insecure_needs_its_entitlement_and_then_runs_privileged() {
    let root = Root::with_busybox(KILN);
    let ctx = Context::new().file(
        "Dockerfile",
        "FROM busybox\nRUN --security=insecure sh -c 'grep Seccomp: /proc/self/status > /seccomp; mkdir -p /m && mount -t tmpfs none /m && echo yes > /mounted'\n",
    );
    let path = ctx.path().to_str().expect("utf-8");
    let denied = root.kiln(KILN, &["build", "--progress=plain", path]);
    assert_ne!(denied.code, 0);
    assert!(
        denied.stderr.contains("security.insecure"),
        "{}",
        denied.stderr
    );
    let read = build_to_dir(&root, &ctx, &["--allow", "security.insecure"]);
    assert_eq!(read("seccomp"), "Seccomp:\t0\n");
    assert_eq!(read("mounted"), "yes\n");
}

/// Every file under `dir` whose bytes hold `needle`.
fn files_holding(dir: &std::path::Path, needle: &[u8]) -> Vec<std::path::PathBuf> {
    let mut found = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return found;
    };
    for e in entries.flatten() {
        let p = e.path();
        match e.file_type() {
            Ok(t) if t.is_dir() => found.extend(files_holding(&p, needle)),
            Ok(t)
                if t.is_file()
                    && std::fs::read(&p)
                        .is_ok_and(|b| b.windows(needle.len()).any(|w| w == needle)) =>
            {
                found.push(p)
            }
            _ => {}
        }
    }
    found
}

#[test]
fn a_secret_is_readable_in_its_step_only_and_kept_nowhere() {
    let root = Root::with_busybox(KILN);
    let secret = "s3cr3t-value-9f2c";
    let ctx = Context::new().file(
        "Dockerfile",
        "FROM busybox\n\
         RUN --mount=type=secret,id=tok,mode=0440,uid=1000,gid=100 \
             stat -c '%a %u %g' /run/secrets/tok > /perm && cat /run/secrets/tok | wc -c > /len\n\
         RUN --mount=type=secret,id=envtok,env=TOKEN sh -c 'echo ${#TOKEN} > /envlen'\n\
         RUN ls /run/secrets 2>/dev/null | wc -l > /left\n",
    );
    let holder = tempfile::tempdir().expect("tempdir");
    let src = holder.path().join("tok");
    std::fs::write(&src, secret).expect("secret file");
    let secret_arg = format!("id=tok,src={}", src.display());
    let out = tempfile::tempdir().expect("tempdir");
    let archive = out.path().join("image.tar");
    let oci = format!(
        "type=oci,dest={},compression=uncompressed",
        archive.display()
    );
    let r = root.kiln_with(
        KILN,
        &[
            "build",
            "--progress=plain",
            "--secret",
            &secret_arg,
            "--secret",
            "id=envtok,env=KILN_TEST_TOKEN",
            // A secret-looking build arg the Dockerfile never declares: its value must go nowhere either.
            "--build-arg",
            "AWS_SECRET_ACCESS_KEY=argval-77e1d0",
            "-t",
            "secrets:1",
            "-o",
            &oci,
            ctx.path().to_str().expect("utf-8"),
        ],
        &[("KILN_TEST_TOKEN", secret)],
        None,
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(!r.stderr.contains(secret), "not in the progress log");
    let read = build_to_dir(
        &root,
        &ctx,
        &[
            "--secret",
            &secret_arg,
            "--secret",
            "id=envtok,env=KILN_TEST_TOKEN",
        ],
    );
    assert_eq!(
        read("perm"),
        "440 1000 100\n",
        "mode, uid and gid of the mount"
    );
    assert_eq!(read("len").trim(), secret.len().to_string());
    assert_eq!(read("left").trim(), "0", "a later step has no secret");
    // Nowhere in the store, snapshots, cache records or the exported image (layers, config, history).
    let held = files_holding(root.path(), secret.as_bytes());
    assert!(held.is_empty(), "{held:?}");
    assert!(files_holding(out.path(), secret.as_bytes()).is_empty());
    assert!(!r.stderr.contains("argval-77e1d0"), "{}", r.stderr);
    assert!(files_holding(root.path(), b"argval-77e1d0").is_empty());
    assert!(files_holding(out.path(), b"argval-77e1d0").is_empty());

    // A required secret nobody passed fails the step in BuildKit's words (testSecretRequiredWithoutValue).
    let needs = Context::new().file(
        "Dockerfile",
        "FROM busybox
RUN --mount=type=secret,id=mysecret,required true
",
    );
    let r = root.kiln(
        KILN,
        &[
            "build",
            "--progress=plain",
            needs.path().to_str().expect("utf-8"),
        ],
    );
    assert_ne!(r.code, 0);
    assert!(
        r.stderr.contains("secret mysecret: not found"),
        "{}",
        r.stderr
    );
}
