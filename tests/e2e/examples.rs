//! The examples users start from build and their images run: `compiled` (a toolchain from apt in a builder stage
//! on a Debian base bootstrapped here, only the binary in the final image), checked by running the exported image
//! with runc through `scripts/run-image.sh`, as README tells users to.

use kiln_tests::{repo_root, run, Root};

use crate::KILN;

#[test]
fn the_compiled_example_builds_on_debian_and_its_image_runs() {
    let root = Root::with_debian(KILN);
    let out = tempfile::tempdir().expect("tempdir");
    let archive = out.path().join("compiled.oci.tar");
    let dir = repo_root().join("examples/compiled");
    let r = root.kiln(
        KILN,
        &[
            "build",
            "--progress=plain",
            "-t",
            "compiled:latest",
            "-o",
            &format!("type=oci,dest={}", archive.display()),
            dir.to_str().expect("utf-8"),
        ],
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
    let ran = run(
        "bash",
        &[
            repo_root()
                .join("scripts/run-image.sh")
                .to_str()
                .expect("utf-8"),
            archive.to_str().expect("utf-8"),
            "latest",
        ],
        None,
    );
    assert_eq!(ran.code, 0, "{}", ran.stderr);
    assert_eq!(
        ran.stdout,
        "2 3 5 7 11 13 17 19 23 29 31 37 41 43 47 53 59 61 67 71\n"
    );
    // The final image is the binary alone (one layer): no toolchain, no shell, nothing of the Debian base.
    let inspect = root.kiln(KILN, &["inspect", "compiled:latest"]);
    assert_eq!(inspect.code, 0, "{}", inspect.stderr);
    let v: serde_json::Value = serde_json::from_str(&inspect.stdout).expect("inspect json");
    assert_eq!(
        v["Manifest"]["layers"].as_array().map(Vec::len),
        Some(1),
        "{}",
        inspect.stdout
    );
}
