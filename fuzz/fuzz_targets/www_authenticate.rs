//! `WWW-Authenticate` headers from arbitrary text, as any server on the path may send: parsed or refused, never a
//! panic; a Bearer challenge always names its realm.
#![no_main]

use libfuzzer_sys::fuzz_target;
use oci::registry::{parse_challenge, Challenge};

fuzz_target!(|data: &[u8]| {
    let Ok(header) = std::str::from_utf8(data) else {
        return;
    };
    if let Some(Challenge::Bearer { realm, .. }) = parse_challenge(header) {
        assert!(header.to_ascii_lowercase().contains("realm"), "{realm}");
    }
});
