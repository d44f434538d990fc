//! One module per subcommand (or family of them): each turns its arguments into calls of the engine and prints
//! what comes back.

pub mod build;
pub mod call;
pub mod check;
pub mod doctor;
pub mod gc;
pub mod graph;
pub mod images;
pub mod registry;

use crate::cli::RootArgs;

/// The root `args` name, opened (and made private to its owner, saying so when it was not).
pub fn open_root(args: &RootArgs) -> engine::Root {
    let (root, tightened) = engine::Root::open(engine::Root::locate(args.root.as_deref()));
    if let Some(t) = tightened {
        eprintln!("{t}");
    }
    root
}
