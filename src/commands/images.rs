//! `kiln images`: what kiln's store holds.

use oci::manifest::{Descriptor, Manifest, MEDIA_INDEX, MEDIA_MANIFEST};
use oci::store::{Store, Stored};

use crate::cli::{InspectArgs, RmiArgs, RootArgs, TagArgs};
use crate::{root, Failure};

/// Runs `kiln images`.
pub fn run(args: &RootArgs) -> Result<(), Failure> {
    let fail = |e: &dyn std::fmt::Display| Failure::Build(e.to_string());
    let store = Store::open(&root::root_dir(args).join("store")).map_err(|e| fail(&e))?;
    println!("{:<50} {:<20} {:>12}", "NAME", "MANIFEST", "SIZE");
    for entry in store.list_images().map_err(|e| fail(&e))? {
        let size = image_size(&store, &entry.manifest);
        println!(
            "{:<50} {:<20} {:>12}",
            entry.name,
            &entry.manifest.hex()[..12],
            size
        );
    }
    Ok(())
}

/// Config plus layers; for a multi-platform image, of every platform (blobs they share counted once).
fn image_size(store: &Store, digest: &oci::Digest) -> u64 {
    let manifests = store.image_manifests(digest).unwrap_or_default();
    let mut blobs = std::collections::BTreeMap::new();
    for d in manifests {
        if let Ok(m) = store.read_json::<Manifest>(&d) {
            for b in std::iter::once(m.config).chain(m.layers) {
                blobs.insert(b.digest, b.size);
            }
        }
    }
    blobs.values().sum()
}

/// A stored manifest or index as a descriptor, with the media type it declares.
pub(crate) fn descriptor_of(store: &Store, digest: &oci::Digest) -> Result<Descriptor, Failure> {
    let fail = |e: &dyn std::fmt::Display| Failure::Build(e.to_string());
    let bytes = store.read_blob(digest).map_err(|e| fail(&e))?;
    let media = match store.manifest_kind(digest).map_err(|e| fail(&e))? {
        Stored::Index(i) => i.media_type.unwrap_or_else(|| MEDIA_INDEX.to_string()),
        Stored::Manifest => serde_json::from_slice::<serde_json::Value>(&bytes)
            .ok()
            .and_then(|v| v["mediaType"].as_str().map(str::to_string))
            .unwrap_or_else(|| MEDIA_MANIFEST.to_string()),
    };
    Ok(Descriptor::new(&media, digest.clone(), bytes.len() as u64))
}

/// One image's digest, id, manifest and config, as `kiln inspect` prints them.
fn inspect_manifest(store: &Store, digest: &oci::Digest) -> Result<serde_json::Value, Failure> {
    let fail = |e: &dyn std::fmt::Display| Failure::Build(e.to_string());
    let manifest: serde_json::Value = store.read_json(digest).map_err(|e| fail(&e))?;
    let config_digest: oci::Digest = manifest["config"]["digest"]
        .as_str()
        .and_then(|d| d.parse().ok())
        .ok_or_else(|| Failure::Build(format!("{digest}: manifest has no config")))?;
    let config: serde_json::Value = store.read_json(&config_digest).map_err(|e| fail(&e))?;
    Ok(serde_json::json!({
        "Digest": digest.to_string(),
        "Id": config_digest.to_string(),
        "Manifest": manifest,
        "Config": config,
    }))
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
    let out = match store.manifest_kind(&entry.manifest).map_err(|e| fail(&e))? {
        Stored::Manifest => {
            let mut one = inspect_manifest(&store, &entry.manifest)?;
            one["Name"] = entry.name.clone().into();
            one
        }
        // A multi-platform image: the index, then each platform's manifest and config.
        Stored::Index(index) => {
            let mut platforms = Vec::new();
            for m in &index.manifests {
                let mut one = inspect_manifest(&store, &m.digest)?;
                one["Platform"] = serde_json::to_value(&m.platform).map_err(|e| fail(&e))?;
                platforms.push(one);
            }
            serde_json::json!({
                "Name": entry.name,
                "Digest": entry.manifest.to_string(),
                "Index": index,
                "Platforms": platforms,
            })
        }
    };
    println!(
        "{}",
        serde_json::to_string_pretty(&out).map_err(|e| fail(&e))?
    );
    Ok(())
}
