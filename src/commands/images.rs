//! `kiln images`: what kiln's store holds.

use oci::manifest::Manifest;
use oci::store::Store;

use crate::cli::RootArgs;
use crate::{root, Failure};

/// Runs `kiln images`.
pub fn run(args: &RootArgs) -> Result<(), Failure> {
    let fail = |e: &dyn std::fmt::Display| Failure::Build(e.to_string());
    let store = Store::open(&root::root_dir(args).join("store")).map_err(|e| fail(&e))?;
    println!("{:<50} {:<20} {:>12}", "NAME", "MANIFEST", "SIZE");
    for entry in store.list_images().map_err(|e| fail(&e))? {
        let size = store
            .read_json::<Manifest>(&entry.manifest)
            .map(|m| m.config.size + m.layers.iter().map(|l| l.size).sum::<u64>())
            .unwrap_or(0);
        println!(
            "{:<50} {:<20} {:>12}",
            entry.name,
            &entry.manifest.hex()[..12],
            size
        );
    }
    Ok(())
}
