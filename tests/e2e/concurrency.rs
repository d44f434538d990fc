//! Builds at once on one root: four builds sharing steps and a cache mount all succeed, each shared step is made
//! by one of them and reused by the others, and every image is identical to the one a serial build makes.

use kiln_tests::{Context, Root};

use crate::KILN;

// The shared step comes before `ARG V`: from there on V is in every RUN's environment, and so in its cache key.
const DOCKERFILE: &str = "FROM busybox
RUN echo shared > /shared && sleep 1
ARG V
RUN --mount=type=cache,target=/var/cache/app,sharing=shared echo $V >> /var/cache/app/seen && echo $V > /v
COPY f$V /f
RUN cat /shared /v /f > /all
";

fn build_args(ctx: &Context, v: usize) -> Vec<String> {
    [
        "build",
        "--progress=plain",
        "--build-arg",
        &format!("V={v}"),
        "--build-arg",
        "SOURCE_DATE_EPOCH=1700000000",
        "-t",
        &format!("conc:{v}"),
        ctx.path().to_str().expect("utf-8"),
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

/// The manifest digest of `image` in `root`.
fn digest(root: &Root, image: &str) -> String {
    let out = root.kiln(KILN, &["inspect", image]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let v: serde_json::Value = serde_json::from_str(&out.stdout).expect("json");
    v["Digest"].as_str().expect("digest").to_string()
}

/// Whether plain progress shows the step named `needle` as run (not CACHED).
fn ran(stderr: &str, needle: &str) -> bool {
    let Some(id) = stderr
        .lines()
        .find(|l| l.starts_with('#') && l.contains(needle))
        .and_then(|l| l.split(' ').next())
    else {
        return false;
    };
    !stderr.lines().any(|l| l == format!("{id} CACHED"))
}

#[test]
fn four_builds_at_once_share_steps_and_match_serial_builds() {
    let together = Root::with_busybox(KILN);
    let serial = Root::with_busybox(KILN);
    let mut ctx = Context::new().file("Dockerfile", DOCKERFILE);
    for v in 1..=4 {
        ctx = ctx.file(&format!("f{v}"), format!("file {v}\n"));
    }
    let children: Vec<_> = (1..=4)
        .map(|v| {
            let args = build_args(&ctx, v);
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            together
                .command(KILN, &args)
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .expect("start kiln")
        })
        .collect();
    let outputs: Vec<String> = children
        .into_iter()
        .map(|c| {
            let o = c.wait_with_output().expect("wait");
            let err = String::from_utf8_lossy(&o.stderr).into_owned();
            assert!(o.status.success(), "{err}");
            err
        })
        .collect();
    assert!(
        outputs
            .iter()
            .all(|e| !e.contains("SOURCE_DATE_EPOCH was not consumed")),
        "SOURCE_DATE_EPOCH is the builder's own build arg"
    );
    let makers = outputs.iter().filter(|e| ran(e, "RUN echo shared")).count();
    assert_eq!(
        makers,
        1,
        "one build makes the shared step:\n{}",
        outputs.join("\n")
    );

    for v in 1..=4 {
        let args = build_args(&ctx, v);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let r = serial.kiln(KILN, &args);
        assert_eq!(r.code, 0, "{}", r.stderr);
    }
    for v in 1..=4 {
        let image = format!("conc:{v}");
        assert_eq!(
            digest(&together, &image),
            digest(&serial, &image),
            "{image} built alongside three others is the image a serial build makes"
        );
    }
    // Every build wrote to the one cache mount.
    let mounts = std::fs::read_dir(together.path().join("cachemounts")).expect("cachemounts");
    let mut seen = String::new();
    for m in mounts.flatten() {
        let p = m.path().join("seen");
        if let Ok(s) = std::fs::read_to_string(&p) {
            seen.push_str(&s);
        }
    }
    let mut lines: Vec<&str> = seen.lines().collect();
    lines.sort();
    assert_eq!(lines, ["1", "2", "3", "4"], "{seen}");
    let doctor = together.kiln(KILN, &["doctor"]);
    assert_eq!(doctor.code, 0, "{}{}", doctor.stdout, doctor.stderr);
}
