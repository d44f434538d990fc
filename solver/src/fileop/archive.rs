//! ADD's auto-extraction of local tar archives (plain, gzip, bzip2, xz or zstd), as Docker and BuildKit do it: a
//! source file that is a tar archive is unpacked into the destination directory instead of copied; anything else
//! is copied as a file. Entries are confined to the destination: one that climbs out (`../`, an absolute name, a
//! link through a symlink) fails the step, as Docker's breakout check does.

use std::io::Read;
use std::path::Path;

use super::FileOpError;

/// The file at `path`, decompressed when its first bytes are a gzip, bzip2, xz or zstd magic number (what
/// Docker's `DecompressStream` recognises; the name never matters).
fn decompressed(path: &Path) -> std::io::Result<Box<dyn Read + Send>> {
    let mut magic = [0u8; 6];
    let mut f = std::fs::File::open(path)?;
    let mut n = 0;
    while n < magic.len() {
        match f.read(&mut magic[n..])? {
            0 => break,
            k => n += k,
        }
    }
    let head = &magic[..n];
    let f = std::io::BufReader::new(std::fs::File::open(path)?);
    Ok(if head.starts_with(&[0x1f, 0x8b]) {
        Box::new(flate2::read::MultiGzDecoder::new(f))
    } else if head.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
        Box::new(zstd::stream::read::Decoder::with_buffer(f)?)
    } else if head.starts_with(b"BZh") {
        Box::new(bzip2::bufread::MultiBzDecoder::new(f))
    } else if head.starts_with(&[0xfd, b'7', b'z', b'X', b'Z', 0x00]) {
        Box::new(xz2::bufread::XzDecoder::new_multi_decoder(f))
    } else {
        Box::new(f)
    })
}

/// Whether the file at `path` is a tar archive kiln can unpack: a ustar/GNU header (or a v7 header with a valid
/// checksum) at the start, after decompression when the file is compressed.
pub fn is_tar_archive(path: &Path) -> bool {
    let Ok(mut reader) = decompressed(path) else {
        return false;
    };
    let mut header = [0u8; 512];
    if reader.read_exact(&mut header).is_err() {
        return false;
    }
    is_tar_header(&header)
}

/// A tar header: the ustar magic, or (old v7 tars) a checksum field that matches the header's bytes.
fn is_tar_header(h: &[u8; 512]) -> bool {
    if &h[257..262] == b"ustar" {
        return true;
    }
    let field = std::str::from_utf8(&h[148..156]).unwrap_or("");
    let Ok(stored) = u32::from_str_radix(field.trim_matches(|c: char| c == '\0' || c == ' '), 8)
    else {
        return false;
    };
    let sum: u32 = h
        .iter()
        .enumerate()
        .map(|(i, b)| {
            if (148..156).contains(&i) {
                u32::from(b' ')
            } else {
                u32::from(*b)
            }
        })
        .sum();
    h[0] != 0 && sum == stored
}

/// Unpacks the archive `src` into the directory `dest` (made if missing), every entry owned by `owner` when one
/// is given (`ADD --chown`, as BuildKit does); `add_src` and `add_dest` are the instruction's own paths, for the
/// error.
pub fn unpack(
    src: &Path,
    dest: &Path,
    owner: Option<(u32, u32)>,
    add_src: &str,
    add_dest: &str,
) -> Result<(), FileOpError> {
    std::fs::create_dir_all(dest).map_err(|source| FileOpError::Io {
        path: dest.to_path_buf(),
        source,
    })?;
    let file = decompressed(src).map_err(|source| FileOpError::Io {
        path: src.to_path_buf(),
        source,
    })?;
    oci::layer::apply_layer_owned(file, dest, oci::layer::Whiteouts::Delete, owner)
        .map(|_| ())
        .map_err(|e| FileOpError::Conflict {
            src: add_src.to_string(),
            dest: add_dest.to_string(),
            reason: format!("unpacking the archive: {e}"),
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tar_of(entries: &[(&str, &[u8])]) -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        for (name, data) in entries {
            let mut h = tar::Header::new_ustar();
            h.set_size(data.len() as u64);
            h.set_mode(0o640);
            h.set_cksum();
            b.append_data(&mut h, name, *data).unwrap();
        }
        b.into_inner().unwrap()
    }

    #[test]
    fn tars_plain_or_compressed_are_archives_other_files_are_not() {
        let d = tempfile::tempdir().unwrap();
        let tar = tar_of(&[("a/b.txt", b"hi")]);
        std::fs::write(d.path().join("plain.tar"), &tar).unwrap();
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        std::io::Write::write_all(&mut gz, &tar).unwrap();
        std::fs::write(d.path().join("t.tgz"), gz.finish().unwrap()).unwrap();
        std::fs::write(
            d.path().join("t.tar.zst"),
            zstd::encode_all(&tar[..], 1).unwrap(),
        )
        .unwrap();
        let mut bz = bzip2::write::BzEncoder::new(Vec::new(), bzip2::Compression::fast());
        std::io::Write::write_all(&mut bz, &tar).unwrap();
        std::fs::write(d.path().join("t.tar.bz2"), bz.finish().unwrap()).unwrap();
        let mut xz = xz2::write::XzEncoder::new(Vec::new(), 1);
        std::io::Write::write_all(&mut xz, &tar).unwrap();
        std::fs::write(d.path().join("t.txz"), xz.finish().unwrap()).unwrap();
        let mut bz = bzip2::write::BzEncoder::new(Vec::new(), bzip2::Compression::fast());
        std::io::Write::write_all(&mut bz, b"bzipped text, not a tar").unwrap();
        std::fs::write(d.path().join("text.bz2"), bz.finish().unwrap()).unwrap();
        std::fs::write(d.path().join("text.tar"), "just text, named like a tar").unwrap();
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        std::io::Write::write_all(&mut gz, b"gzipped text").unwrap();
        std::fs::write(d.path().join("text.gz"), gz.finish().unwrap()).unwrap();
        for yes in ["plain.tar", "t.tgz", "t.tar.zst", "t.tar.bz2", "t.txz"] {
            assert!(is_tar_archive(&d.path().join(yes)), "{yes}");
        }
        for no in ["text.tar", "text.gz", "text.bz2", "missing"] {
            assert!(!is_tar_archive(&d.path().join(no)), "{no}");
        }
        for packed in ["t.tgz", "t.tar.zst", "t.tar.bz2", "t.txz"] {
            let out = d.path().join(format!("out-{packed}"));
            unpack(&d.path().join(packed), &out, None, packed, "/out/").unwrap();
            assert_eq!(
                std::fs::read(out.join("a/b.txt")).unwrap(),
                b"hi",
                "{packed}"
            );
        }
    }
}
