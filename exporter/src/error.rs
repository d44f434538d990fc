//! Why an export failed: one error for image assembly, re-compression, indexes and layouts, which call one another,
//! so it lives apart from each of them.

use std::path::PathBuf;

use oci::store::StoreError;

use crate::diff::DiffError;

/// Why an export failed.
#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Reading a snapshot failed.
    #[error(transparent)]
    Diff(#[from] DiffError),
    /// The output cannot hold what was asked of it.
    #[error("{0}")]
    Unsupported(String),
    /// A compression begun ahead of its export was stopped by its caller (see `image::precompress`).
    #[error("the compression was stopped")]
    Stopped,
    /// Writing an output failed.
    #[error("{path}: {source}")]
    Io {
        /// The path.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
}
