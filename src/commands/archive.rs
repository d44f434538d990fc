//! `kiln load` and `kiln save`: images in and out of the store as OCI layout tars or docker archives.

use oci::store::Store;
use oci::Platform;

use crate::cli::{LoadArgs, SaveArgs, SaveFormat};
use crate::{outputs, root, Failure};

fn fail(e: &dyn std::fmt::Display) -> Failure {
    Failure::Build(e.to_string())
}

/// The platform a `--platform` flag names, or this machine's.
pub fn platform_or_host(flag: Option<&str>) -> Result<Platform, Failure> {
    match flag {
        Some(p) => p
            .parse()
            .map_err(|e: oci::PlatformError| Failure::Usage(e.to_string())),
        None => Ok(Platform::host()),
    }
}

/// Runs `kiln load`: every image of the archive into the store, under the names the archive gives it.
pub fn load(args: &LoadArgs) -> Result<(), Failure> {
    let platform = platform_or_host(args.platform.as_deref())?;
    // Held shared, so a `kiln prune` cannot take blobs that are not named yet.
    let _lock = root::lock(&root::root_dir(&args.root), false).map_err(Failure::Build)?;
    let store = Store::open(&root::root_dir(&args.root).join("store")).map_err(|e| fail(&e))?;
    let input: Box<dyn std::io::Read> = if args.input.as_os_str() == "-" {
        Box::new(std::io::stdin().lock())
    } else {
        Box::new(
            std::fs::File::open(&args.input)
                .map_err(|e| Failure::Usage(format!("{}: {e}", args.input.display())))?,
        )
    };
    let images = oci::archive::load_archive(&store, input, &platform)
        .map_err(|e| Failure::Build(format!("{}: {e}", args.input.display())))?;
    // Names are checked before any is set, so a bad one leaves the index as it was.
    let mut named = Vec::new();
    for image in &images {
        for n in &image.names {
            let full = frontend::lower::normalize_reference(n)
                .map_err(|e| Failure::Build(format!("the archive names {n:?}: {e}")))?;
            named.push((full, image.manifest.clone()));
        }
    }
    for (name, manifest) in &named {
        store.set_image(name, manifest).map_err(|e| fail(&e))?;
        println!("Loaded image: {name}");
    }
    for image in images.iter().filter(|i| i.names.is_empty()) {
        println!("Loaded image ID: {}", image.manifest);
    }
    Ok(())
}

/// Runs `kiln save`.
pub fn save(args: &SaveArgs) -> Result<(), Failure> {
    // Held shared, so a `kiln prune` cannot take blobs that are not named yet.
    let _lock = root::lock(&root::root_dir(&args.root), false).map_err(Failure::Build)?;
    let store = Store::open(&root::root_dir(&args.root).join("store")).map_err(|e| fail(&e))?;
    let mut images: Vec<exporter::Tagged> = Vec::new();
    for n in &args.names {
        let full = frontend::lower::normalize_reference(n)
            .map_err(|e| Failure::Usage(format!("{n}: {e}")))?;
        let entry = store
            .get_image(&full)
            .map_err(|e| fail(&e))?
            .ok_or_else(|| fail(&oci::store::StoreError::UnknownImage(n.clone())))?;
        let desc = crate::commands::images::descriptor_of(&store, &entry.manifest)?;
        match images.iter_mut().find(|t| t.manifest.digest == desc.digest) {
            Some(t) => t.names.push(full),
            None => images.push(exporter::Tagged {
                manifest: desc,
                names: vec![full],
            }),
        }
    }
    let format = match args.format {
        SaveFormat::Oci => exporter::ArchiveFormat::Oci,
        SaveFormat::Docker => exporter::ArchiveFormat::Docker,
    };
    outputs::write_to(&args.output, |w| {
        exporter::write_archive(&store, &images, format, w)
            .map(|_| ())
            .map_err(|e| e.to_string())
    })
}
