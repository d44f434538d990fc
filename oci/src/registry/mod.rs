//! A client of the distribution API v2 (what Docker Hub, GHCR, ECR, Harbor and the CNCF registry serve): resolve a
//! tag, pull an image into the store, push an image from it. Blobs stream between the network and the store's
//! verified ingest, so memory stays bounded whatever a layer's size; every request is retried on connection errors,
//! 5xx and 429 (honouring Retry-After); a manifest is put only once all its blobs exist.

mod auth;
pub mod credentials;
mod error;
mod pull;
mod push;
mod resume;
mod sources;
mod transport;

pub use auth::{parse_challenge, Challenge};
pub use error::RegistryError;
pub use pull::{fetch_blob_into, fetch_manifest_bytes, pull, resolve, Pulled};
pub use push::{
    held_at, push, push_after, push_blobs, upload_stream, BlobsSent, ChunkWriter, Held, Pushed,
    Streamed, STREAM_CHUNK,
};
pub use transport::{Client, ClientOptions};

/// Manifest media types a pull accepts, best first.
pub(crate) const ACCEPT_MANIFESTS: &str = "application/vnd.oci.image.index.v1+json, \
application/vnd.docker.distribution.manifest.list.v2+json, \
application/vnd.oci.image.manifest.v1+json, \
application/vnd.docker.distribution.manifest.v2+json, \
application/vnd.docker.distribution.manifest.v1+prettyjws;q=0.1, \
application/vnd.docker.distribution.manifest.v1+json;q=0.1";

/// The largest manifest or config read into memory (the distribution registry's own limit is 4 MiB).
pub(crate) const MAX_MANIFEST: u64 = 4 << 20;
