//! kiln's exporter: snapshots to layers ([`diff`]: the upper directory walked, never two trees compared), layer
//! blobs with their diffID and digest from one pass, and images assembled in the store ([`image`]) or written out
//! as OCI layouts ([`layout`]).

mod compression;
pub mod convert;
/// A snapshot's upper directory as a layer tar (it lives in `oci::layer`, which the store renders lazy layers with).
pub use oci::layer::diff;
pub mod attestation;
mod error;
pub mod image;
pub mod index;
pub mod layout;
pub mod pgzip;
pub mod speculate;
mod tarcut;

pub use compression::Compression;
pub use convert::{compressed_manifest, compressed_manifest_teeing, Keep};
pub use error::ExportError;
pub use image::{
    dir_blob, export_annotated_image, export_image, export_image_into, layer_blob, precompress,
    ExportOptions, ExportedImage, LayerSource,
};
pub use index::export_index;
pub use layout::{
    write_archive, write_layout_dir, ArchiveFormat, ArchiveOut, ArchiveStream, NewBlob, Tagged,
};
