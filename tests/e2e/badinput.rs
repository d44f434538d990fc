//! Bad input to `kiln build` and `kiln import` is refused before anything is built or stored, with an error naming
//! what is wrong (the file, the path, the platform); one build's outputs all hold the same image; a `# syntax=`
//! kiln cannot honour is said once.

use std::io::Read;
use std::path::Path;

use kiln_tests::{run, Context, Root};

use crate::KILN;

fn ctx() -> Context {
    Context::new()
        .file("Dockerfile", "FROM scratch\nCOPY a /a\n")
        .file("a", "a\n")
}

/// The names `kiln images` lists.
fn images(root: &Root) -> String {
    let listed = root.kiln(KILN, &["images"]);
    assert_eq!(listed.code, 0, "{}", listed.stderr);
    listed.stdout
}

#[test]
fn import_refuses_what_is_not_a_tar_naming_the_file() {
    let root = Root::empty();
    let dir = tempfile::tempdir().expect("tempdir");
    let noise = dir.path().join("noise.bin");
    // Bytes no tar header checks out in (a fixed pattern, so the test never depends on chance).
    let bytes: Vec<u8> = (0..4096u32).map(|i| (i * 7919 % 251) as u8 + 1).collect();
    std::fs::write(&noise, bytes).expect("write");
    let r = root.kiln(
        KILN,
        &[
            "import",
            noise.to_str().expect("utf-8"),
            "example.com/noise:1",
        ],
    );
    assert_ne!(r.code, 0, "{}", r.stdout);
    assert!(r.stderr.contains("noise.bin"), "{}", r.stderr);
    assert!(r.stderr.contains("not a tar archive"), "{}", r.stderr);
    assert!(!images(&root).contains("noise"), "nothing was named");
    let empty = dir.path().join("empty.tar");
    std::fs::write(&empty, b"").expect("write");
    let r = root.kiln(
        KILN,
        &[
            "import",
            empty.to_str().expect("utf-8"),
            "example.com/noise:1",
        ],
    );
    assert_ne!(r.code, 0, "{}", r.stdout);
    assert!(r.stderr.contains("empty.tar"), "{}", r.stderr);
    // A real tar still imports.
    let mut tar = tar::Builder::new(Vec::new());
    let mut h = tar::Header::new_gnu();
    h.set_size(3);
    h.set_mode(0o644);
    h.set_cksum();
    tar.append_data(&mut h, "hello", &b"hi\n"[..]).expect("tar");
    let good = dir.path().join("good.tar");
    std::fs::write(&good, tar.into_inner().expect("tar")).expect("write");
    let r = root.kiln(
        KILN,
        &[
            "import",
            good.to_str().expect("utf-8"),
            "example.com/good:1",
        ],
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
}

#[test]
fn output_paths_are_checked_before_the_build_and_named() {
    let root = Root::empty();
    let c = ctx();
    let p = c.path().to_str().expect("utf-8");
    let missing = tempfile::tempdir().expect("tempdir");
    let gone = missing.path().join("gone");
    let in_gone = gone.join("x");
    let in_gone = in_gone.to_str().expect("utf-8");
    for args in [
        vec!["--iidfile", in_gone, "-t", "q"],
        vec!["--metadata-file", in_gone, "-t", "q"],
        vec!["-t", "q", "-o", &format!("type=tar,dest={in_gone}")],
        vec!["-t", "q", "-o", &format!("type=oci,dest={in_gone}")],
    ] {
        let mut all = vec!["build", "--progress=plain"];
        all.extend(args.iter().copied());
        all.push(p);
        let r = root.kiln(KILN, &all);
        assert_ne!(r.code, 0, "{args:?}: {}", r.stderr);
        assert!(
            r.stderr
                .contains(&format!("directory {} does not exist", gone.display())),
            "{args:?}: {}",
            r.stderr
        );
        assert!(!r.stderr.contains("#1 "), "no step ran: {}", r.stderr);
        assert!(
            !images(&root).contains("q:latest"),
            "{args:?}: nothing stored"
        );
    }
}

#[test]
fn empty_outputs_unknown_platforms_and_missing_build_contexts_are_refused() {
    let root = Root::empty();
    let c = ctx();
    let p = c.path().to_str().expect("utf-8");
    let r = root.kiln(KILN, &["build", "-o", "", p]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(r.stderr.contains("the output is empty"), "{}", r.stderr);
    let r = root.kiln(KILN, &["build", "--platform", "bogus", p]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(
        r.stderr
            .contains("\"bogus\": unknown operating system or architecture"),
        "{}",
        r.stderr
    );
    // A lone architecture or OS is still one, as containerd reads them.
    let r = root.kiln(KILN, &["build", "--platform", "amd64", p]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let missing = tempfile::tempdir().expect("tempdir");
    let gone = missing.path().join("nonexistent");
    let c2 = Context::new().file("Dockerfile", "FROM scratch\nCOPY --from=name /out /out\n");
    let r = root.kiln(
        KILN,
        &[
            "build",
            "--build-context",
            &format!("name={}", gone.display()),
            c2.path().to_str().expect("utf-8"),
        ],
    );
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(
        r.stderr
            .contains(&format!("directory {} does not exist", gone.display())),
        "{}",
        r.stderr
    );
}

/// The config digest of the one image in an OCI layout tar or a docker archive.
fn config_in_archive(file: &Path) -> String {
    let mut entries = std::collections::BTreeMap::new();
    let mut archive = tar::Archive::new(std::fs::File::open(file).expect("archive"));
    for e in archive.entries().expect("entries") {
        let mut e = e.expect("entry");
        let name = e.path().expect("path").to_string_lossy().into_owned();
        let mut body = Vec::new();
        e.read_to_end(&mut body).expect("read");
        entries.insert(name, body);
    }
    let json = |name: &str| -> serde_json::Value {
        serde_json::from_slice(entries.get(name).unwrap_or_else(|| panic!("{name}"))).expect("json")
    };
    if entries.contains_key("manifest.json") && !entries.contains_key("index.json") {
        let config = json("manifest.json")[0]["Config"]
            .as_str()
            .expect("Config")
            .to_string();
        return format!("sha256:{}", config.trim_start_matches("blobs/sha256/"));
    }
    let manifest = json("index.json")["manifests"][0]["digest"]
        .as_str()
        .expect("digest")
        .replace("sha256:", "blobs/sha256/");
    json(&manifest)["config"]["digest"]
        .as_str()
        .expect("config")
        .to_string()
}

#[test]
fn every_output_of_one_build_holds_the_same_config() {
    // No layer is made here, so the image's time is the build's own: taken once, not once per output. A tar
    // output into a pipe opened only after a pause holds the outputs a second and more apart.
    let root = Root::empty();
    let c = Context::new().file("Dockerfile", "FROM scratch\nLABEL made=here\n");
    let out = tempfile::tempdir().expect("tempdir");
    let fifo = out.path().join("pipe");
    assert_eq!(
        run("mkfifo", &[fifo.to_str().expect("utf-8")], None).code,
        0
    );
    let reader = {
        let fifo = fifo.clone();
        std::thread::spawn(move || {
            // kiln's open of the pipe waits for this one.
            std::thread::sleep(std::time::Duration::from_millis(1500));
            let mut f = std::fs::File::open(&fifo).expect("open the pipe");
            let mut all = Vec::new();
            f.read_to_end(&mut all).expect("read the pipe");
        })
    };
    let oci = out.path().join("a.tar");
    let docker = out.path().join("b.tar");
    let r = root.kiln(
        KILN,
        &[
            "build",
            "-t",
            "q",
            "-o",
            &format!("type=oci,dest={}", oci.display()),
            "-o",
            &format!("type=tar,dest={}", fifo.display()),
            "-o",
            &format!("type=docker,dest={}", docker.display()),
            c.path().to_str().expect("utf-8"),
        ],
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
    reader.join().expect("the pipe's reader");
    let inspected = root.kiln(KILN, &["inspect", "q"]);
    assert_eq!(inspected.code, 0, "{}", inspected.stderr);
    let stored: serde_json::Value = serde_json::from_str(&inspected.stdout).expect("json");
    let stored = stored["Id"].as_str().expect("Id").to_string();
    assert_eq!(config_in_archive(&oci), stored, "the OCI layout's config");
    assert_eq!(
        config_in_archive(&docker),
        stored,
        "the docker archive's config"
    );
}

#[test]
fn a_foreign_syntax_is_said_once_and_dockerfile_1_silently_covered() {
    let root = Root::empty();
    let foreign = Context::new()
        .file(
            "Dockerfile",
            "# syntax=example.com/custom/frontend:v9\nFROM scratch\nCOPY a /a\n",
        )
        .file("a", "a\n");
    let r = root.kiln(
        KILN,
        &[
            "build",
            "--progress=plain",
            foreign.path().to_str().expect("utf-8"),
        ],
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(
        r.stderr
            .matches("# syntax=example.com/custom/frontend:v9: kiln does not run frontend images")
            .count(),
        1,
        "{}",
        r.stderr
    );
    let covered = Context::new()
        .file(
            "Dockerfile",
            "# syntax=docker/dockerfile:1.7\nFROM scratch\nCOPY a /a\n",
        )
        .file("a", "a\n");
    let r = root.kiln(
        KILN,
        &[
            "build",
            "--progress=plain",
            covered.path().to_str().expect("utf-8"),
        ],
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(!r.stderr.contains("syntax="), "{}", r.stderr);
}
