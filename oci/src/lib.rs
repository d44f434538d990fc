//! What both ends of kiln need of OCI: content digests, platforms and kiln's own Docker-compatible image config.
//!
//! The content store, layout I/O and the registry client arrive with their own issues; this crate stays a leaf that
//! knows nothing of the solver, so the frontend and the exporter can both speak its types.

pub mod archive;
pub mod digest;
mod hashing;
pub mod image;
pub mod layer;
pub mod manifest;
mod offload;
pub mod platform;
mod readahead;
pub mod reference;
pub mod registry;
pub mod scoped;
pub mod store;
pub mod writeback;

pub use digest::{Digest, DigestError};
pub use hashing::HashingWriter;
pub use image::{ContainerConfig, Healthcheck, History, Image, RootFs};
pub use offload::{HashedAside, Offloaded};
pub use platform::{Platform, PlatformError};
