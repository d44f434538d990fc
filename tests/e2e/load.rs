//! Getting the image where CI needs it, as `docker buildx build` users type it: `--load` into a real dockerd
//! started here (its image ID checked with `docker image inspect`), its refusals (no engine, several platforms),
//! `-o type=registry` pushing to a real registry, `--annotation` and `annotation.*` read back from a pushed
//! manifest and index (skopeo) and from an OCI layout, and `-q` printing only the image ID.

use kiln_tests::dockerd::Dockerd;
use kiln_tests::registry::{Auth, Registry};
use kiln_tests::{run, Context, Root};

use crate::KILN;

fn json(s: &str) -> serde_json::Value {
    serde_json::from_str(s).unwrap_or_else(|e| panic!("not JSON ({e}): {s}"))
}

fn skopeo_raw(reference: &str) -> serde_json::Value {
    let r = run(
        "skopeo",
        &["inspect", "--raw", "--tls-verify=false", reference],
        None,
    );
    assert_eq!(r.code, 0, "skopeo inspect {reference}: {}", r.stderr);
    json(&r.stdout)
}

fn app() -> Context {
    Context::new().file(
        "Dockerfile",
        "FROM busybox\nRUN echo loaded > /hello && head -c 300k /dev/urandom > /blob\nLABEL kiln.test=load\n",
    )
}

#[test]
fn load_puts_the_image_into_a_real_dockerd_under_its_id_and_q_prints_only_that_id() {
    let dockerd = Dockerd::start();
    let root = Root::with_busybox(KILN);
    let ctx = app();
    let host = format!("unix://{}", dockerd.socket().display());
    let r = root.kiln_with(
        KILN,
        &[
            "build",
            "-q",
            "--load",
            "-t",
            "app:loaded",
            ctx.path().to_str().unwrap(),
        ],
        &[("DOCKER_HOST", &host)],
        None,
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
    // -q: the image ID alone on stdout, no progress on stderr.
    let id = r.stdout.trim_end_matches('\n');
    assert_eq!(r.stdout, format!("{id}\n"));
    assert!(
        id.starts_with("sha256:") && id.len() == 71,
        "{:?}",
        r.stdout
    );
    assert!(!r.stderr.contains("RUN echo"), "{}", r.stderr);

    let inspect = dockerd
        .run(&["image", "inspect", "app:loaded"])
        .expect("docker image inspect");
    let image = &json(&inspect)[0];
    assert_eq!(image["Id"], id, "docker gives the image kiln's ID");
    assert_eq!(image["RepoTags"][0], "app:loaded");
    assert_eq!(image["Config"]["Labels"]["kiln.test"], "load");
    // busybox's layer and the RUN's.
    assert_eq!(image["RootFS"]["Layers"].as_array().map(Vec::len), Some(2));

    // kiln's own store names the same image.
    let mine = json(&root.kiln(KILN, &["inspect", "app:loaded"]).stdout);
    assert_eq!(mine["Id"], id, "{mine}");

    // Loaded again under another name (`-o type=docker` without dest is --load, as in buildx): the same ID.
    let r = root.kiln_with(
        KILN,
        &[
            "build",
            "--progress=plain",
            "-o",
            "type=docker,name=app:again",
            ctx.path().to_str().unwrap(),
        ],
        &[("DOCKER_HOST", &host)],
        None,
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(r.stderr.contains("Loaded image: app:again"), "{}", r.stderr);
    let again = json(&dockerd.run(&["image", "inspect", "app:again"]).unwrap());
    assert_eq!(again[0]["Id"], id);
}

#[test]
fn load_without_an_engine_names_the_socket_and_builds_nothing() {
    let root = Root::with_busybox(KILN);
    let ctx = app();
    let gone = tempfile::tempdir().unwrap();
    let sock = gone.path().join("docker.sock");
    let r = root.kiln_with(
        KILN,
        &[
            "build",
            "--progress=plain",
            "--load",
            "-t",
            "app:none",
            ctx.path().to_str().unwrap(),
        ],
        &[("DOCKER_HOST", &format!("unix://{}", sock.display()))],
        None,
    );
    assert_ne!(r.code, 0, "{}", r.stderr);
    assert!(
        r.stderr.contains(&format!(
            "cannot connect to the Docker daemon at unix://{}",
            sock.display()
        )),
        "{}",
        r.stderr
    );
    assert!(!r.stderr.contains("RUN echo"), "no step ran: {}", r.stderr);
    assert_ne!(root.kiln(KILN, &["inspect", "app:none"]).code, 0);

    // Podman's socket, by CONTAINER_HOST.
    let psock = gone.path().join("podman.sock");
    let r = root.kiln_with(
        KILN,
        &["build", "--load=podman", ctx.path().to_str().unwrap()],
        &[("CONTAINER_HOST", &format!("unix://{}", psock.display()))],
        None,
    );
    assert_ne!(r.code, 0);
    assert!(
        r.stderr.contains(&format!(
            "cannot connect to the Podman daemon at unix://{}",
            psock.display()
        )),
        "{}",
        r.stderr
    );
    // Something else than a unix socket, or an engine kiln does not know.
    let r = root.kiln_with(
        KILN,
        &["build", "--load", ctx.path().to_str().unwrap()],
        &[("DOCKER_HOST", "tcp://127.0.0.1:2375")],
        None,
    );
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(
        r.stderr.contains("DOCKER_HOST=tcp://127.0.0.1:2375"),
        "{}",
        r.stderr
    );
    let r = root.kiln(KILN, &["build", "--load=lxd", ctx.path().to_str().unwrap()]);
    assert_eq!(r.code, 2, "{}", r.stderr);
}

#[test]
fn load_of_several_platforms_is_refused_with_buildkits_message() {
    let root = Root::empty();
    let ctx = Context::new().file("Dockerfile", "FROM scratch\nCOPY Dockerfile /d\n");
    let r = root.kiln(
        KILN,
        &[
            "build",
            "--platform",
            "linux/amd64,linux/arm64",
            "--load",
            ctx.path().to_str().unwrap(),
        ],
    );
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(
        r.stderr
            .contains("docker exporter does not currently support exporting manifest lists"),
        "{}",
        r.stderr
    );
}

#[test]
fn quiet_refuses_other_progress_and_stdout_outputs() {
    let root = Root::empty();
    let ctx = Context::new().file("Dockerfile", "FROM scratch\nCOPY Dockerfile /d\n");
    let c = ctx.path().to_str().unwrap();
    let r = root.kiln(KILN, &["build", "-q", "--progress=plain", c]);
    assert_eq!(r.code, 2);
    assert!(
        r.stderr
            .contains("progress=plain and quiet cannot be used together"),
        "{}",
        r.stderr
    );
    let r = root.kiln(KILN, &["build", "-q", "-o", "type=oci,dest=-", c]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    // An image in the store: only its ID on stdout.
    let r = root.kiln(KILN, &["build", "--quiet", "-t", "q:1", c]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let inspect = json(&root.kiln(KILN, &["inspect", "q:1"]).stdout);
    assert_eq!(r.stdout, format!("{}\n", inspect["Id"].as_str().unwrap()));
    assert!(r.stderr.is_empty(), "{}", r.stderr);
}

#[test]
fn registry_output_pushes_with_annotations_on_manifests_and_index() {
    let reg = Registry::start(Auth::Anonymous);
    let root = Root::with_busybox(KILN);
    let ctx = app();
    let target = format!("{}/team/app:reg", reg.host);
    let r = root.kiln(
        KILN,
        &[
            "build",
            "--progress=plain",
            "--provenance=false",
            "-o",
            &format!("type=registry,name={target},annotation.org.opencontainers.image.vendor=kiln"),
            "--annotation",
            "org.opencontainers.image.title=Loaded",
            ctx.path().to_str().unwrap(),
        ],
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
    let m = skopeo_raw(&format!("docker://{target}"));
    assert_eq!(m["annotations"]["org.opencontainers.image.title"], "Loaded");
    assert_eq!(m["annotations"]["org.opencontainers.image.vendor"], "kiln");
    assert_eq!(
        m["layers"][1]["mediaType"],
        "application/vnd.oci.image.layer.v1.tar+gzip"
    );

    // Several platforms: index annotations on the index, a platform's on its manifest only.
    let multi = Context::new().file(
        "Dockerfile",
        "FROM scratch\nARG TARGETARCH\nCOPY Dockerfile /$TARGETARCH\n",
    );
    let target = format!("{}/team/multi:reg", reg.host);
    let r = root.kiln(
        KILN,
        &[
            "build",
            "--progress=plain",
            "--provenance=false",
            "--platform",
            "linux/amd64,linux/arm64",
            "-o",
            &format!("type=registry,name={target}"),
            "--annotation",
            "index:org.opencontainers.image.description=both",
            "--annotation",
            "manifest[linux/arm64]:arch.note=arm only",
            "--annotation",
            "manifest-descriptor:kiln.descriptor=yes",
            multi.path().to_str().unwrap(),
        ],
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
    let index = skopeo_raw(&format!("docker://{target}"));
    assert_eq!(
        index["annotations"]["org.opencontainers.image.description"],
        "both"
    );
    let entries = index["manifests"].as_array().expect("an index");
    assert_eq!(entries.len(), 2);
    for e in entries {
        assert_eq!(e["annotations"]["kiln.descriptor"], "yes", "{e}");
        let arch = e["platform"]["architecture"].as_str().unwrap();
        let digest = e["digest"].as_str().unwrap();
        let m = skopeo_raw(&format!("docker://{}/team/multi@{digest}", reg.host));
        let note = &m["annotations"]["arch.note"];
        match arch {
            "arm64" => assert_eq!(note, "arm only"),
            _ => assert!(note.is_null(), "{m}"),
        }
    }
}

#[test]
fn annotations_land_in_an_oci_layout_and_are_refused_where_buildkit_refuses_them() {
    let root = Root::empty();
    let ctx = Context::new().file("Dockerfile", "FROM scratch\nCOPY Dockerfile /d\n");
    let c = ctx.path().to_str().unwrap();
    let out = tempfile::tempdir().unwrap();
    let layout = out.path().join("layout");
    let r = root.kiln(
        KILN,
        &[
            "build",
            "--progress=plain",
            "-o",
            &format!(
                "type=oci,dest={},tar=false,annotation.kiln.m=1,annotation-manifest-descriptor.kiln.d=2",
                layout.display()
            ),
            "--annotation",
            "manifest:kiln.flag=3",
            c,
        ],
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
    let index = json(&std::fs::read_to_string(layout.join("index.json")).unwrap());
    let entry = &index["manifests"][0];
    assert_eq!(entry["annotations"]["kiln.d"], "2", "{index}");
    let digest = entry["digest"].as_str().unwrap();
    let blob = layout
        .join("blobs/sha256")
        .join(digest.trim_start_matches("sha256:"));
    let m = json(&std::fs::read_to_string(blob).unwrap());
    assert_eq!(m["annotations"]["kiln.m"], "1", "{m}");
    assert_eq!(m["annotations"]["kiln.flag"], "3", "{m}");
    // skopeo reads the layout the same way.
    let raw = skopeo_raw(&format!("oci:{}", layout.display()));
    assert_eq!(raw["annotations"]["kiln.m"], "1");

    // Several platforms: the index's own descriptor in index.json.
    let multi = out.path().join("multi");
    let r = root.kiln(
        KILN,
        &[
            "build",
            "--progress=plain",
            "--platform",
            "linux/amd64,linux/arm64",
            "-o",
            &format!("type=oci,dest={},tar=false", multi.display()),
            "--annotation",
            "index-descriptor:kiln.id=4",
            "--annotation",
            "index:kiln.i=5",
            c,
        ],
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
    let index = json(&std::fs::read_to_string(multi.join("index.json")).unwrap());
    let entry = &index["manifests"][0];
    assert_eq!(entry["annotations"]["kiln.id"], "4", "{index}");
    let digest = entry["digest"].as_str().unwrap();
    let blob = multi
        .join("blobs/sha256")
        .join(digest.trim_start_matches("sha256:"));
    let inner = json(&std::fs::read_to_string(blob).unwrap());
    assert_eq!(inner["annotations"]["kiln.i"], "5", "{inner}");

    // BuildKit's refusals, before anything is built.
    for (args, says) in [
        (
            vec!["--annotation", "index:k=v", "-o", "type=oci,dest=-"],
            "index annotations not supported for single platform export",
        ),
        (
            vec![
                "--annotation",
                "manifest[linux/arm64]:k=v",
                "-o",
                "type=oci,dest=-",
            ],
            "no platform linux/arm64 found in source",
        ),
        (
            vec![
                "--annotation",
                "manifest-descriptor:k=v",
                "-o",
                "type=docker,dest=-",
            ],
            "cannot export annotations with \"oci-mediatypes=false\"",
        ),
        (
            vec!["--annotation", "bogus:k=v"],
            "unknown annotation type \"bogus\"",
        ),
        (vec!["--annotation", "novalue"], "expected key=value"),
    ] {
        let mut all = vec!["build", "--platform", "linux/amd64"];
        all.extend(args);
        all.push(c);
        let r = root.kiln(KILN, &all);
        assert_eq!(r.code, 2, "{all:?}: {}", r.stderr);
        assert!(r.stderr.contains(says), "{all:?}: {}", r.stderr);
        assert!(r.stdout.is_empty(), "nothing written to stdout");
    }
}

/// Podman's API service (`podman system service`) on a socket and storage of its own, stopped on drop.
struct Podman {
    dir: tempfile::TempDir,
    child: std::process::Child,
}

impl Podman {
    fn start() -> Podman {
        let dir = tempfile::tempdir().expect("tempdir");
        let child = std::process::Command::new("podman")
            .args(Podman::storage_args(dir.path()))
            .args(["system", "service", "--time=0"])
            .arg(format!(
                "unix://{}",
                dir.path().join("podman.sock").display()
            ))
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("podman system service (apt-get install podman)");
        let sock = dir.path().join("podman.sock");
        for _ in 0..100 {
            if sock.exists() {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        assert!(sock.exists(), "podman's socket did not appear");
        Podman { dir, child }
    }

    fn storage_args(dir: &std::path::Path) -> Vec<String> {
        vec![
            "--root".into(),
            dir.join("root").display().to_string(),
            "--runroot".into(),
            dir.join("run").display().to_string(),
            "--storage-driver".into(),
            "vfs".into(),
        ]
    }

    fn podman(&self, args: &[&str]) -> kiln_tests::Run {
        let mut all: Vec<String> = Podman::storage_args(self.dir.path());
        all.extend(args.iter().map(|a| a.to_string()));
        let refs: Vec<&str> = all.iter().map(String::as_str).collect();
        run("podman", &refs, None)
    }
}

impl Drop for Podman {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn load_podman_puts_the_image_into_podmans_engine_under_its_id() {
    let podman = Podman::start();
    let root = Root::with_busybox(KILN);
    let ctx = app();
    let host = format!("unix://{}", podman.dir.path().join("podman.sock").display());
    let r = root.kiln_with(
        KILN,
        &[
            "build",
            "-q",
            "--load=podman",
            "-t",
            "app:podman",
            ctx.path().to_str().unwrap(),
        ],
        &[("CONTAINER_HOST", &host)],
        None,
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
    let id = r.stdout.trim();
    let inspect = podman.podman(&["image", "inspect", "app:podman"]);
    assert_eq!(inspect.code, 0, "{}", inspect.stderr);
    let image = &json(&inspect.stdout)[0];
    assert_eq!(
        format!("sha256:{}", image["Id"].as_str().unwrap_or_default()),
        id,
        "podman gives the image kiln's ID: {image}"
    );
    assert_eq!(image["RepoTags"][0], "docker.io/library/app:podman");
    assert_eq!(image["Config"]["Labels"]["kiln.test"], "load");
}
