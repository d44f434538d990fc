//! Registry errors: each names the URL and, when the registry answered, the HTTP status and its error code, so one
//! line tells a CI log what went wrong where.

use crate::store::StoreError;
use crate::Digest;

/// Why a registry operation failed.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    /// The registry answered with an unexpected status.
    #[error("{method} {url}: {status}{}", detail.as_deref().map(|d| format!(" ({d})")).unwrap_or_default())]
    Status {
        /// Request method.
        method: String,
        /// Request URL.
        url: String,
        /// Status line, e.g. `404 Not Found`.
        status: String,
        /// The registry's error codes and messages, when it sent any.
        detail: Option<String>,
    },
    /// The registry refused a blob as too large (413): a layer above its per-blob limit.
    #[error("{url}: {status}: the registry refused layer {digest} ({size} bytes) as too large; `kiln build --layer-max-size SIZE` splits a step's result into layers below SIZE")]
    BlobTooLarge {
        /// The upload URL that answered.
        url: String,
        /// Status line.
        status: String,
        /// The blob.
        digest: Digest,
        /// Its size in bytes.
        size: u64,
    },
    /// Credentials were refused (or needed and absent).
    #[error("{url}: {status}: {reason}")]
    Unauthorized {
        /// The URL that refused them.
        url: String,
        /// Status line.
        status: String,
        /// What to do about it.
        reason: String,
    },
    /// The registry could not be reached, or the connection broke, after every retry.
    #[error("{url}: {reason}")]
    Connection {
        /// The URL.
        url: String,
        /// The transport's explanation.
        reason: String,
    },
    /// A manifest or blob is not what the registry claims it is.
    #[error("{url}: {reason}")]
    Invalid {
        /// Where it came from.
        url: String,
        /// What is wrong.
        reason: String,
    },
    /// The registry serves only the retired schema 1 manifest for this image.
    #[error("{reference}: the registry serves a Docker schema 1 manifest, which kiln (like Docker 28 and BuildKit) does not accept; re-push the image with a current client")]
    Schema1 {
        /// The image.
        reference: String,
    },
    /// An index holds no image for the requested platform.
    #[error("{reference}: no image for {platform} (the index offers {offered})")]
    NoPlatform {
        /// The image.
        reference: String,
        /// The platform asked for.
        platform: String,
        /// What the index offers.
        offered: String,
    },
    /// An image to push is incomplete in the store.
    #[error("cannot push {reference}: {digest} is not in the store")]
    MissingLocal {
        /// The image.
        reference: String,
        /// The missing blob.
        digest: Digest,
    },
    /// Reading or writing credentials failed.
    #[error("credentials: {0}")]
    Credentials(String),
    /// The store failed (a blob that does not match its digest lands here).
    #[error(transparent)]
    Store(#[from] StoreError),
}
