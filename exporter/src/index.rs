//! Multi-platform images: one image per target platform, gathered under an index whose entries carry their
//! platform — what `kiln build --platform linux/amd64,linux/arm64` stores, archives and pushes, as BuildKit does.

use std::collections::BTreeMap;

use oci::manifest::{Descriptor, Index, MEDIA_DOCKER_INDEX, MEDIA_INDEX};
use oci::store::Store;
use oci::Platform;

use crate::error::ExportError;
use crate::image::ExportedImage;

/// Stores an index of `images` (one per platform, in the order given, each entry with the annotations its
/// descriptor carries), in the OCI or the Docker vocabulary, with `annotations` on the index itself (BuildKit's
/// `annotation-index.*`), tags it with `names` and returns its descriptor. `attestations` (attestation manifests'
/// entries, see [`crate::attestation`]) follow the images, as BuildKit lists them.
pub fn export_index(
    store: &Store,
    images: &[(Platform, ExportedImage)],
    attestations: &[Descriptor],
    oci_media_types: bool,
    annotations: &BTreeMap<String, String>,
    names: &[String],
) -> Result<Descriptor, ExportError> {
    let media = if oci_media_types {
        MEDIA_INDEX
    } else {
        MEDIA_DOCKER_INDEX
    };
    let manifests = images
        .iter()
        .map(|(platform, image)| {
            let mut d = image.manifest.clone();
            d.platform = Some(platform.clone());
            d
        })
        .chain(attestations.iter().cloned())
        .collect();
    let index = Index {
        schema_version: 2,
        media_type: Some(media.to_string()),
        manifests,
        annotations: annotations.clone(),
    };
    let bytes = serde_json::to_vec(&index).map_err(|e| ExportError::Io {
        path: store.root().to_path_buf(),
        source: std::io::Error::other(e),
    })?;
    let digest = store.put_bytes(&bytes)?;
    for n in names {
        store.set_image(n, &digest)?;
    }
    Ok(Descriptor::new(media, digest, bytes.len() as u64))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{export_image, Compression, ExportOptions, LayerSource};

    fn image_for(store: &Store, arch: &str) -> (Platform, ExportedImage) {
        let snap = tempfile::tempdir().unwrap();
        std::fs::write(snap.path().join("arch"), arch).unwrap();
        let layers = vec![LayerSource {
            id: arch.to_string(),
            diff: snap.path().to_path_buf(),
            unpacked_from: None,
            created: None,
        }];
        let image = oci::Image {
            architecture: arch.into(),
            os: "linux".into(),
            ..Default::default()
        };
        let exported = export_image(
            store,
            &layers,
            image,
            &ExportOptions::new(Compression::Gzip(6), Some(0)),
            &[],
        )
        .unwrap();
        (format!("linux/{arch}").parse().unwrap(), exported)
    }

    #[test]
    fn the_index_names_each_platform_and_the_store_serves_each_its_image() {
        let root = tempfile::tempdir().unwrap();
        let store = Store::open(root.path()).unwrap();
        let images = vec![image_for(&store, "amd64"), image_for(&store, "arm64")];
        let d = export_index(
            &store,
            &images,
            &[],
            true,
            &BTreeMap::new(),
            &["app:multi".to_string()],
        )
        .unwrap();
        assert_eq!(d.media_type, MEDIA_INDEX);
        assert_eq!(
            store.get_image("app:multi").unwrap().unwrap().manifest,
            d.digest
        );
        let index: Index = store.read_json(&d.digest).unwrap();
        assert_eq!(index.manifests.len(), 2);
        assert_eq!(
            index.manifests[1].platform.as_ref().map(|p| p.to_string()),
            Some("linux/arm64".to_string())
        );
        let arm = store
            .platform_manifest(&d.digest, &"linux/arm64".parse().unwrap())
            .unwrap();
        assert_eq!(arm, images[1].1.manifest.digest);
        let again = export_index(&store, &images, &[], true, &BTreeMap::new(), &[]).unwrap();
        assert_eq!(again, d, "the same images give the same index");
        let docker = export_index(&store, &images, &[], false, &BTreeMap::new(), &[]).unwrap();
        assert_eq!(docker.media_type, MEDIA_DOCKER_INDEX);
    }
}
