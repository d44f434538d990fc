//! OCI image layouts: an image of the store written as a directory (`oci-layout`, `index.json`, `blobs/`) or as
//! a tar of one (`-o type=oci`), which skopeo, umoci, podman and containerd read.

use std::io::Write;
use std::path::{Path, PathBuf};

use oci::manifest::{Descriptor, Index, Manifest, MEDIA_INDEX};
use oci::store::Store;

use crate::ExportError;

fn io(path: &Path) -> impl Fn(std::io::Error) -> ExportError + '_ {
    move |source| ExportError::Io {
        path: path.to_path_buf(),
        source,
    }
}

fn blobs_of(store: &Store, manifest: &Descriptor) -> Result<Vec<Descriptor>, ExportError> {
    let m: Manifest = store.read_json(&manifest.digest)?;
    let mut out = vec![manifest.clone(), m.config.clone()];
    out.extend(m.layers);
    Ok(out)
}

fn index_json(manifest: &Descriptor, name: Option<&str>) -> Vec<u8> {
    let mut d = manifest.clone();
    if let Some(n) = name {
        d.annotations.insert(
            "org.opencontainers.image.ref.name".to_string(),
            n.to_string(),
        );
    }
    let index = Index {
        schema_version: 2,
        media_type: Some(MEDIA_INDEX.to_string()),
        manifests: vec![d],
    };
    serde_json::to_vec(&index).unwrap_or_default()
}

/// Writes the image `manifest` as an OCI layout directory at `dir` (tagged `name` when given).
pub fn write_layout_dir(
    store: &Store,
    manifest: &Descriptor,
    name: Option<&str>,
    dir: &Path,
) -> Result<(), ExportError> {
    let blobs_dir = dir.join("blobs/sha256");
    std::fs::create_dir_all(&blobs_dir).map_err(io(&blobs_dir))?;
    for b in blobs_of(store, manifest)? {
        let dest = blobs_dir.join(b.digest.hex());
        if !dest.exists() {
            std::fs::copy(store.blob_path(&b.digest), &dest).map_err(io(&dest))?;
        }
    }
    let layout = dir.join("oci-layout");
    std::fs::write(&layout, br#"{"imageLayoutVersion":"1.0.0"}"#).map_err(io(&layout))?;
    let index = dir.join("index.json");
    std::fs::write(&index, index_json(manifest, name)).map_err(io(&index))
}

/// Writes the image as an OCI layout tar to `out` (entries in a fixed order, times zero, so it is reproducible).
pub fn write_layout_tar<W: Write>(
    store: &Store,
    manifest: &Descriptor,
    name: Option<&str>,
    out: W,
) -> Result<W, ExportError> {
    let root = PathBuf::from("<oci archive>");
    let mut tar = tar::Builder::new(out);
    let add = |tar: &mut tar::Builder<W>,
               path: &str,
               size: u64,
               data: &mut dyn std::io::Read|
     -> Result<(), ExportError> {
        let mut h = tar::Header::new_ustar();
        h.set_mode(0o644);
        h.set_mtime(0);
        h.set_size(size);
        h.set_entry_type(tar::EntryType::Regular);
        tar.append_data(&mut h, path, data).map_err(io(&root))
    };
    let layout = br#"{"imageLayoutVersion":"1.0.0"}"#;
    add(
        &mut tar,
        "oci-layout",
        layout.len() as u64,
        &mut &layout[..],
    )?;
    let index = index_json(manifest, name);
    add(&mut tar, "index.json", index.len() as u64, &mut &index[..])?;
    let mut seen = std::collections::BTreeSet::new();
    for b in blobs_of(store, manifest)? {
        if !seen.insert(b.digest.clone()) {
            continue;
        }
        let mut f = store.open_blob(&b.digest)?;
        let size = f.metadata().map_err(io(&store.blob_path(&b.digest)))?.len();
        add(
            &mut tar,
            &format!("blobs/sha256/{}", b.digest.hex()),
            size,
            &mut f,
        )?;
    }
    tar.into_inner().map_err(io(&root))
}
