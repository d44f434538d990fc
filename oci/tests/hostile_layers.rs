//! The hostile layer corpus (tests/corpus/hostile-layers, written by its make.py): every layer either fails with
//! an error or stays inside its target, and nothing is ever written beside the target or on the host.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use oci::layer::{apply_layer, Whiteouts};

fn corpus() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/corpus/hostile-layers")
}

fn host_escapes() -> Vec<PathBuf> {
    ["/kiln-hostile-escape", "/tmp/kiln-hostile-escape"]
        .iter()
        .map(PathBuf::from)
        .chain(std::iter::once(
            std::env::temp_dir().join("kiln-hostile-escape"),
        ))
        .collect()
}

#[test]
fn every_hostile_layer_fails_or_stays_inside() {
    let expected = std::fs::read_to_string(corpus().join("expected.txt")).expect("expected.txt");
    let passwd_links = std::fs::metadata("/etc/passwd").map(|m| m.nlink()).ok();
    let mut seen = 0;
    for line in expected
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
    {
        let (name, outcome) = line.split_once(' ').expect("name outcome");
        let bytes = std::fs::read(corpus().join(name)).expect("corpus file");
        for whiteouts in [Whiteouts::Delete, Whiteouts::Overlay] {
            let sandbox = tempfile::tempdir().expect("tempdir");
            let target = sandbox.path().join("deep/er/root");
            std::fs::create_dir_all(&target).expect("mkdir");
            let result = apply_layer(&bytes[..], &target, whiteouts);
            match (outcome, &result) {
                ("error", Err(e)) => assert!(!e.to_string().is_empty(), "{name}"),
                ("confined", Ok(_)) => assert!(
                    target.join("tmp/kiln-hostile-escape").exists(),
                    "{name}: the file lands in the target's own /tmp"
                ),
                _ => panic!("{name}: expected {outcome}, got {result:?}"),
            }
            // Nothing beside the target, nothing on the host.
            let beside: Vec<_> = std::fs::read_dir(sandbox.path().join("deep/er"))
                .expect("read")
                .map(|e| e.expect("entry").file_name())
                .collect();
            assert_eq!(beside, ["root"], "{name}: written beside the target");
            for p in host_escapes() {
                assert!(!p.exists(), "{name}: wrote {}", p.display());
            }
            assert_eq!(
                std::fs::metadata("/etc/passwd").map(|m| m.nlink()).ok(),
                passwd_links,
                "{name}: linked the host's /etc/passwd"
            );
        }
        seen += 1;
    }
    assert!(seen >= 16, "the corpus is all there ({seen} files)");
}

#[test]
fn errors_name_the_entry() {
    for (file, entry) in [
        ("traversal.tar", "kiln-hostile-escape"),
        ("absolute.tar", "kiln-hostile-escape"),
        ("hardlink-out.tar", "\"h\""),
    ] {
        let bytes = std::fs::read(corpus().join(file)).expect("corpus file");
        let target = tempfile::tempdir().expect("tempdir");
        let err = apply_layer(&bytes[..], target.path(), Whiteouts::Delete)
            .expect_err("hostile")
            .to_string();
        assert!(err.contains(entry), "{file}: {err}");
    }
}
