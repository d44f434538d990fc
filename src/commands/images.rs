//! `kiln images`: what kiln's store holds.

use oci::manifest::Manifest;
use oci::store::Store;

use crate::cli::{InspectArgs, RmiArgs, RootArgs, TagArgs};
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

fn open(args: &RootArgs) -> Result<Store, Failure> {
    Store::open(&root::root_dir(args).join("store")).map_err(|e| Failure::Build(e.to_string()))
}

fn full_name(n: &str) -> Result<String, Failure> {
    frontend::lower::normalize_reference(n).map_err(|e| Failure::Usage(format!("{n}: {e}")))
}

fn lookup(store: &Store, n: &str) -> Result<oci::store::ImageEntry, Failure> {
    store
        .get_image(&full_name(n)?)
        .map_err(|e| Failure::Build(e.to_string()))?
        .ok_or_else(|| {
            Failure::Build(oci::store::StoreError::UnknownImage(n.to_string()).to_string())
        })
}

/// Runs `kiln tag`.
pub fn tag(args: &TagArgs) -> Result<(), Failure> {
    let store = open(&args.root)?;
    let entry = lookup(&store, &args.source)?;
    store
        .set_image(&full_name(&args.target)?, &entry.manifest)
        .map_err(|e| Failure::Build(e.to_string()))
}

/// Runs `kiln rmi`: every name is checked before any is removed, so a typo removes nothing.
pub fn rmi(args: &RmiArgs) -> Result<(), Failure> {
    let store = open(&args.root)?;
    let mut names = Vec::new();
    for n in &args.names {
        lookup(&store, n)?;
        names.push(full_name(n)?);
    }
    for n in names {
        store
            .remove_image(&n)
            .map_err(|e| Failure::Build(e.to_string()))?;
        println!("Untagged: {n}");
    }
    Ok(())
}

/// Runs `kiln inspect`.
pub fn inspect(args: &InspectArgs) -> Result<(), Failure> {
    let store = open(&args.root)?;
    let entry = lookup(&store, &args.name)?;
    let fail = |e: &dyn std::fmt::Display| Failure::Build(e.to_string());
    let manifest: serde_json::Value = store.read_json(&entry.manifest).map_err(|e| fail(&e))?;
    let config_digest: oci::Digest = manifest["config"]["digest"]
        .as_str()
        .and_then(|d| d.parse().ok())
        .ok_or_else(|| Failure::Build(format!("{}: manifest has no config", entry.manifest)))?;
    let config: serde_json::Value = store.read_json(&config_digest).map_err(|e| fail(&e))?;
    let out = serde_json::json!({
        "Name": entry.name,
        "Digest": entry.manifest.to_string(),
        "Id": config_digest.to_string(),
        "Manifest": manifest,
        "Config": config,
    });
    println!(
        "{}",
        serde_json::to_string_pretty(&out).map_err(|e| fail(&e))?
    );
    Ok(())
}
