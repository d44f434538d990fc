//! Layers: applying a layer tar onto a snapshot directory (OCI whiteouts to overlay whiteouts, or deletions when
//! flattening), with every entry confined to the target.

mod apply;

pub use apply::{apply_layer, ApplyStats, LayerError, Whiteouts};
