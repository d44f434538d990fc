//! Multi-platform builds: `--platform linux/amd64,linux/arm64` lowers once per platform and solves one graph (a
//! builder stage on the build platform shared, the rest run side by side), and every output carries both: an
//! index in the store, in an OCI archive and on a registry; one directory per platform for local and tar outputs.
//! skopeo and umoci read what kiln wrote; `FROM` of the stored index picks the platform asked for.

use kiln_tests::registry::{Auth, Registry};
use kiln_tests::{run, Context, Root};

use crate::KILN;

/// The cross-compilation pattern: a builder on the build platform writes one file per target platform, copied
/// into an empty final stage (nothing of another architecture ever runs).
fn cross_context() -> Context {
    Context::new().file(
        "Dockerfile",
        "FROM --platform=$BUILDPLATFORM busybox AS build\n\
         ARG TARGETPLATFORM\n\
         RUN echo \"made for $TARGETPLATFORM\" > /out\n\
         FROM scratch\n\
         COPY --from=build /out /out\n",
    )
}

fn json(text: &str) -> serde_json::Value {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("{e}: {text}"))
}

/// `sha256:HEX` of some bytes, by coreutils (what a registry names a manifest by).
fn sha256(bytes: &[u8]) -> String {
    let r = run("sha256sum", &[], Some(bytes));
    format!(
        "sha256:{}",
        r.stdout.split_whitespace().next().unwrap_or("")
    )
}

fn platforms_of(index: &serde_json::Value) -> Vec<String> {
    index["manifests"]
        .as_array()
        .expect("an index")
        .iter()
        .map(|m| {
            format!(
                "{}/{}",
                m["platform"]["os"].as_str().unwrap_or(""),
                m["platform"]["architecture"].as_str().unwrap_or("")
            )
        })
        .collect()
}

#[test]
fn two_platforms_give_an_index_everywhere_and_share_the_build_platform_stage() {
    let root = Root::with_busybox(KILN);
    let ctx = cross_context();
    let out = tempfile::tempdir().unwrap();
    let archive = out.path().join("multi.tar");
    let local = out.path().join("local");
    let meta = out.path().join("meta.json");
    let r = root.kiln(
        KILN,
        &[
            "build",
            "--progress",
            "plain",
            "--platform",
            "linux/amd64,linux/arm64",
            "-t",
            "multi:1",
            "-o",
            &format!("type=oci,dest={}", archive.display()),
            "-o",
            &format!("type=local,dest={}", local.display()),
            "--metadata-file",
            meta.to_str().unwrap(),
            ctx.path().to_str().unwrap(),
        ],
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
    // Each platform's steps are named with it; the base image both builder stages start from is one step.
    for p in ["linux/amd64", "linux/arm64"] {
        assert!(
            r.stderr.contains(&format!("[{p} build 2/2] RUN")),
            "{}",
            r.stderr
        );
    }
    let from_steps = r
        .stderr
        .lines()
        .filter(|l| l.starts_with('#') && l.ends_with("FROM busybox"))
        .count();
    assert_eq!(from_steps, 1, "{}", r.stderr);

    // The OCI archive holds an index naming both platforms; skopeo picks each one's image.
    let oci = format!("oci-archive:{}", archive.display());
    let index = json(&run("skopeo", &["inspect", "--raw", &oci], None).stdout);
    assert_eq!(
        index["mediaType"],
        "application/vnd.oci.image.index.v1+json"
    );
    assert_eq!(platforms_of(&index), ["linux/amd64", "linux/arm64"]);
    let digest = json(&std::fs::read_to_string(&meta).unwrap())["containerimage.digest"]
        .as_str()
        .unwrap()
        .to_string();
    let raw = run("skopeo", &["inspect", "--raw", &oci], None).stdout;
    assert_eq!(
        digest,
        sha256(raw.as_bytes()),
        "the metadata names the index"
    );
    let arm = json(
        &run(
            "skopeo",
            &["inspect", "--override-arch", "arm64", &oci],
            None,
        )
        .stdout,
    );
    assert_eq!(arm["Architecture"], "arm64");
    // umoci (which refuses to choose a platform itself) unpacks the arm64 image once skopeo has picked it.
    let picked = out.path().join("picked");
    let c = run(
        "skopeo",
        &[
            "copy",
            "--override-arch",
            "arm64",
            &oci,
            &format!("oci:{}:arm", picked.display()),
        ],
        None,
    );
    assert_eq!(c.code, 0, "{}", c.stderr);
    let bundle = out.path().join("bundle");
    let u = run(
        "umoci",
        &[
            "unpack",
            "--image",
            &format!("{}:arm", picked.display()),
            bundle.to_str().unwrap(),
        ],
        None,
    );
    assert_eq!(u.code, 0, "{}", u.stderr);
    assert_eq!(
        std::fs::read_to_string(bundle.join("rootfs/out")).unwrap(),
        "made for linux/arm64\n"
    );

    // -o type=local: one directory per platform.
    for (dir, p) in [
        ("linux_amd64", "linux/amd64"),
        ("linux_arm64", "linux/arm64"),
    ] {
        assert_eq!(
            std::fs::read_to_string(local.join(dir).join("out")).unwrap(),
            format!("made for {p}\n")
        );
    }

    // The store holds the index under the name; FROM takes the platform asked for, and names what it has.
    let from = Context::new().file("Dockerfile", "FROM multi:1\nCOPY Dockerfile /again\n");
    let picked_local = out.path().join("from-arm");
    let r = root.kiln(
        KILN,
        &[
            "build",
            "--platform",
            "linux/arm64",
            "-o",
            &format!("type=local,dest={}", picked_local.display()),
            from.path().to_str().unwrap(),
        ],
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(
        std::fs::read_to_string(picked_local.join("out")).unwrap(),
        "made for linux/arm64\n"
    );
    let r = root.kiln(
        KILN,
        &[
            "build",
            "--platform",
            "linux/s390x",
            from.path().to_str().unwrap(),
        ],
    );
    assert_ne!(r.code, 0);
    assert!(
        r.stderr.contains("no image for linux/s390x")
            && r.stderr.contains("linux/amd64, linux/arm64"),
        "{}",
        r.stderr
    );
    let inspect = json(&root.kiln(KILN, &["inspect", "multi:1"]).stdout);
    assert_eq!(inspect["Platforms"][1]["Config"]["architecture"], "arm64");

    // A docker archive holds one platform per image: refused before anything runs.
    let r = root.kiln(
        KILN,
        &[
            "build",
            "--platform",
            "linux/amd64,linux/arm64",
            "-o",
            &format!("type=docker,dest={}", out.path().join("d.tar").display()),
            ctx.path().to_str().unwrap(),
        ],
    );
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(r.stderr.contains("type=oci"), "{}", r.stderr);
    assert!(!out.path().join("d.tar").exists());
}

#[test]
fn a_multi_platform_push_puts_the_index_and_every_platform_image() {
    let reg = Registry::start(Auth::Anonymous);
    let root = Root::with_busybox(KILN);
    let ctx = cross_context();
    let target = format!("{}/team/multi:1", reg.host);
    let meta = tempfile::NamedTempFile::new().unwrap();
    let r = root.kiln(
        KILN,
        &[
            "build",
            "--platform",
            "linux/amd64,linux/arm64",
            "-t",
            &target,
            "--provenance=false",
            "--push",
            "--metadata-file",
            meta.path().to_str().unwrap(),
            ctx.path().to_str().unwrap(),
        ],
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
    let remote = format!("docker://{target}");
    let raw = run(
        "skopeo",
        &["inspect", "--raw", "--tls-verify=false", &remote],
        None,
    );
    assert_eq!(raw.code, 0, "{}", raw.stderr);
    let index = json(&raw.stdout);
    assert_eq!(platforms_of(&index), ["linux/amd64", "linux/arm64"]);
    let pushed = json(&std::fs::read_to_string(meta.path()).unwrap());
    assert_eq!(
        pushed["containerimage.digest"].as_str().unwrap(),
        sha256(raw.stdout.as_bytes())
    );
    // Every platform's image is complete on the registry: skopeo copies it, checking each digest.
    let dest = tempfile::tempdir().unwrap();
    let c = run(
        "skopeo",
        &[
            "copy",
            "--all",
            "--src-tls-verify=false",
            &remote,
            &format!("oci:{}:all", dest.path().join("all").display()),
        ],
        None,
    );
    assert_eq!(c.code, 0, "{}", c.stderr);
    // Another root pulls its platform's image from the index.
    let other = Root::empty();
    let p = other.kiln(KILN, &["pull", "--platform", "linux/arm64", &target]);
    assert_eq!(p.code, 0, "{}", p.stderr);
    let inspect = json(&other.kiln(KILN, &["inspect", &target]).stdout);
    assert_eq!(inspect["Config"]["architecture"], "arm64");
}
