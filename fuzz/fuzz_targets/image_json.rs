//! Manifests, indexes, image configs and references from arbitrary bytes, as a registry or an archive may hand
//! them over: parsing may fail, never panic; what parses serialises again and parses to the same value.
#![no_main]

use libfuzzer_sys::fuzz_target;
use oci::image::Image;
use oci::manifest::{Index, Manifest};

fn round_trip<T>(data: &[u8])
where
    T: serde::de::DeserializeOwned + serde::Serialize + PartialEq + std::fmt::Debug,
{
    if let Ok(v) = serde_json::from_slice::<T>(data) {
        let again = serde_json::to_vec(&v).expect("a parsed value serialises");
        let back: T = serde_json::from_slice(&again).expect("what kiln writes it reads");
        assert_eq!(v, back);
    }
}

fuzz_target!(|data: &[u8]| {
    round_trip::<Manifest>(data);
    round_trip::<Index>(data);
    round_trip::<Image>(data);
    if let Ok(text) = std::str::from_utf8(data) {
        if let Ok(r) = oci::reference::Reference::parse(text) {
            // What a reference prints, it parses back to.
            let again = oci::reference::Reference::parse(&r.to_string()).expect("a printed reference parses");
            assert_eq!(again.to_string(), r.to_string());
        }
        let _ = oci::reference::normalize(text);
        let _ = text.parse::<oci::Digest>();
        let _ = text.parse::<oci::Platform>();
    }
});
