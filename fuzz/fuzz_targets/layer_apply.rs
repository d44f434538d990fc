//! A layer tar (plain, gzip or zstd) from arbitrary bytes, applied both ways (overlay whiteouts and deleting
//! ones): it may fail, but never panic, and never write beside the directory it is applied to.
#![no_main]

use libfuzzer_sys::fuzz_target;
use oci::layer::{apply_layer, Whiteouts};

fuzz_target!(|data: &[u8]| {
    let Ok(outer) = tempfile::tempdir() else {
        return;
    };
    let target = outer.path().join("rootfs");
    if std::fs::create_dir(&target).is_err() {
        return;
    }
    for whiteouts in [Whiteouts::Overlay, Whiteouts::Delete] {
        let _ = apply_layer(data, &target, whiteouts);
        let beside: Vec<_> = std::fs::read_dir(outer.path())
            .map(|d| d.flatten().map(|e| e.file_name()).collect())
            .unwrap_or_default();
        assert_eq!(beside, ["rootfs"], "a layer wrote outside its target");
    }
});
