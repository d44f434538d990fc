//! One module per subcommand.

pub mod archive;
pub mod build;
pub mod check;
pub mod doctor;
pub mod gc;
pub mod graph;
pub mod images;
pub mod import;
pub mod registry;
