//! Importing a root filesystem tar (plain or gzip) as a one-layer image of kiln's store, as `docker import` does.

use std::io::Read;

use oci::manifest::{Descriptor, Manifest, MEDIA_CONFIG, MEDIA_LAYER_GZIP, MEDIA_MANIFEST};
use oci::store::Store;
use oci::{History, Image};
use sha2::{Digest as _, Sha256};

use crate::images::{full_name, ImageError};
use crate::root::Root;

struct Hashing<R> {
    inner: R,
    hasher: Sha256,
}

impl<R: Read> Read for Hashing<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        Ok(n)
    }
}

/// A reader that copies what it reads into `copy`, counting it.
struct Tee<R, W> {
    inner: R,
    copy: W,
    seen: u64,
}

impl<R: Read, W: std::io::Write> Read for Tee<R, W> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.copy.write_all(&buf[..n])?;
        self.seen += n as u64;
        Ok(n)
    }
}

/// Reads `input` to the end of its tar archive, entry by entry: a header that does not parse (random bytes, a
/// truncated or foreign file) is an error.
fn check_tar(input: &mut dyn Read) -> std::io::Result<()> {
    let mut archive = tar::Archive::new(input);
    for entry in archive.entries()? {
        let mut entry = entry?;
        std::io::copy(&mut entry, &mut std::io::sink())?;
    }
    Ok(())
}

/// Makes the tar `input` (named `file` in errors and the image's history) a one-layer image named `name` for
/// `platform`; the full name and the manifest digest.
pub fn import(
    root: &Root,
    input: Box<dyn Read>,
    file: &std::path::Path,
    name: &str,
    platform: &oci::Platform,
) -> Result<(String, oci::Digest), ImageError> {
    let name = full_name(name)?;
    // Held shared, so a `kiln prune` cannot take blobs that are not named yet.
    let _lock = root.lock(false)?;
    let store = Store::open(&root.store())?;
    let io = |e: std::io::Error| ImageError::Archive(format!("{}: {e}", file.display()));
    let mut buffered = std::io::BufReader::new(input);
    let head = std::io::BufRead::fill_buf(&mut buffered)
        .map_err(|e| ImageError::Write(e.to_string()))?
        .to_vec();
    let raw: Box<dyn Read> = if head.starts_with(&[0x1f, 0x8b]) {
        Box::new(flate2::read::MultiGzDecoder::new(buffered))
    } else {
        Box::new(buffered)
    };
    // One pass: the uncompressed tar is read entry by entry (what is not a tar is refused before anything is
    // named), hashed (diffID) and gzipped into the store (digest) as it goes.
    let blob = store.writer()?;
    let gz = flate2::write::GzEncoder::new(blob, flate2::Compression::new(6));
    let mut tar = Hashing {
        inner: Tee {
            inner: raw,
            copy: gz,
            seen: 0,
        },
        hasher: Sha256::new(),
    };
    check_tar(&mut tar).map_err(|e| {
        // The tar reader quotes the bytes it choked on: shown only when they are text.
        let detail = e.to_string();
        let detail = if detail.chars().all(|c| c.is_ascii_graphic() || c == ' ') {
            format!(": {detail}")
        } else {
            String::new()
        };
        ImageError::Archive(format!(
            "{}: not a tar archive (a root filesystem tar, plain or gzip, is expected){detail}",
            file.display()
        ))
    })?;
    // What follows the end-of-archive blocks (padding to the record size) belongs to the layer as given.
    std::io::copy(&mut tar, &mut std::io::sink()).map_err(io)?;
    if tar.inner.seen == 0 {
        return Err(ImageError::Archive(format!(
            "{}: empty input: a root filesystem tar (plain or gzip) is expected",
            file.display()
        )));
    }
    let blob = tar
        .inner
        .copy
        .finish()
        .map_err(|e| ImageError::Write(e.to_string()))?;
    let (layer, size) = blob.commit(None)?;
    let diff_id = oci::Digest::from_sha256_bytes(&tar.hasher.finalize().into());
    let mut image = Image {
        architecture: platform.architecture.clone(),
        os: platform.os.clone(),
        variant: platform.variant.clone(),
        ..Default::default()
    };
    image.config.env =
        vec!["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".to_string()];
    image.rootfs.diff_ids = vec![diff_id];
    image.history = vec![History {
        created_by: format!(
            "kiln import {}",
            file.file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_else(|| "-".to_string())
        ),
        comment: "imported".to_string(),
        ..Default::default()
    }];
    let config_bytes = serde_json::to_vec(&image)?;
    let config = store.put_bytes(&config_bytes)?;
    let manifest = Manifest {
        schema_version: 2,
        media_type: Some(MEDIA_MANIFEST.to_string()),
        config: Descriptor::new(MEDIA_CONFIG, config, config_bytes.len() as u64),
        layers: vec![Descriptor::new(MEDIA_LAYER_GZIP, layer, size)],
        annotations: Default::default(),
    };
    let manifest_digest = store.put_bytes(&serde_json::to_vec(&manifest)?)?;
    store.set_image(&name, &manifest_digest)?;
    Ok((name, manifest_digest))
}
