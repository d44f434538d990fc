//! What both ends of kiln need of OCI: content digests, platforms and kiln's own Docker-compatible image config.
//!
//! It also holds the content store, layouts and archives, layer apply and the registry client. It knows nothing of
//! the solver, so the frontend and the exporter can both speak its types; the registry client sits behind the
//! default `registry` feature, so the frontend, which turns it off, builds no network client.

pub mod archive;
mod hashing;
pub mod image;
pub mod layer;
pub mod manifest;
mod offload;
mod readahead;
pub mod reference;
#[cfg(feature = "registry")]
pub mod registry;
pub mod store;
pub mod writeback;

pub use digest::{Digest, DigestError};
pub use hashing::HashingWriter;
pub use image::{ContainerConfig, Healthcheck, History, Image, RootFs};
/// Digests and platforms are plain values the LLB definition names too, so they live in the light `llb` crate;
/// re-exported so `oci::Digest`, `oci::digest::X` and `oci::platform::X` keep naming them.
pub use llb::{digest, platform};
pub use offload::{HashedAside, Offloaded};
pub use platform::{Platform, PlatformError};
/// Confined path resolution is its own leaf crate (the executor needs it and no image format); re-exported so
/// `oci::scoped::resolve` keeps working.
pub use scoped;
