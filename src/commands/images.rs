//! `kiln images`, `tag`, `rmi`, `inspect`, `import`, `load` and `save`: the images of the store.

use std::io::Read;

use engine::images;

use super::open_root;
use crate::cli::{
    ImportArgs, InspectArgs, LoadArgs, RmiArgs, RootArgs, SaveArgs, SaveFormat, TagArgs,
};
use crate::Failure;

/// Runs `kiln images`.
pub fn list(args: &RootArgs) -> Result<(), Failure> {
    let listed = images::list(&open_root(args))?;
    println!("{:<50} {:<20} {:>12}", "NAME", "MANIFEST", "SIZE");
    for i in listed {
        println!(
            "{:<50} {:<20} {:>12}",
            i.name,
            &i.manifest.hex()[..12],
            i.size
        );
    }
    Ok(())
}

/// Runs `kiln tag`.
pub fn tag(args: &TagArgs) -> Result<(), Failure> {
    Ok(images::tag(
        &open_root(&args.root),
        &args.source,
        &args.target,
    )?)
}

/// Runs `kiln rmi`.
pub fn rmi(args: &RmiArgs) -> Result<(), Failure> {
    for n in images::rmi(&open_root(&args.root), &args.names)? {
        println!("Untagged: {n}");
    }
    Ok(())
}

/// Runs `kiln inspect`.
pub fn inspect(args: &InspectArgs) -> Result<(), Failure> {
    let out = images::inspect_with(&open_root(&args.root), &args.name, args.attestations)?;
    let text = serde_json::to_string_pretty(&out).map_err(|e| Failure::Build(e.to_string()))?;
    println!("{text}");
    Ok(())
}

/// `-` for stdin, else the file (a usage error when it cannot be opened).
fn input(path: &std::path::Path) -> Result<Box<dyn Read>, Failure> {
    if path.as_os_str() == "-" {
        return Ok(Box::new(std::io::stdin().lock()));
    }
    let file = std::fs::File::open(path)
        .map_err(|e| Failure::Usage(format!("{}: {e}", path.display())))?;
    Ok(Box::new(file))
}

/// Runs `kiln import`.
pub fn import(args: &ImportArgs) -> Result<(), Failure> {
    images::full_name(&args.name)?;
    let platform = images::platform_or_host(args.platform.as_deref())?;
    let root = open_root(&args.root);
    let (name, digest) =
        engine::import::import(&root, input(&args.file)?, &args.file, &args.name, &platform)?;
    println!("{name} {digest}");
    Ok(())
}

/// Runs `kiln load`: every image of the archive into the store, under the names the archive gives it.
pub fn load(args: &LoadArgs) -> Result<(), Failure> {
    let platform = images::platform_or_host(args.platform.as_deref())?;
    let root = open_root(&args.root);
    let label = args.input.display().to_string();
    let loaded = images::load(&root, input(&args.input)?, &label, &platform)?;
    for name in &loaded.named {
        println!("Loaded image: {name}");
    }
    for d in &loaded.unnamed {
        println!("Loaded image ID: {d}");
    }
    Ok(())
}

/// Runs `kiln save`.
pub fn save(args: &SaveArgs) -> Result<(), Failure> {
    let format = match args.format {
        SaveFormat::Oci => exporter::ArchiveFormat::Oci,
        SaveFormat::Docker => exporter::ArchiveFormat::Docker,
    };
    let root = open_root(&args.root);
    Ok(images::save(&root, &args.names, format, &args.output)?)
}
