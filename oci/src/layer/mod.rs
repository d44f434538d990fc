//! Layers: applying a layer tar onto a snapshot directory (OCI whiteouts to overlay whiteouts, or deletions when
//! flattening), with every entry confined to the target; and the reverse, a snapshot's upper directory written as a
//! layer tar (here, not in the exporter, because the store renders lazily kept layers from it).

mod apply;
pub mod diff;
pub mod split;

pub use apply::{apply_layer, apply_layer_owned, ApplyStats, LayerError, Whiteouts};
