//! ADD's auto-extraction of local tar archives (plain, gzip or zstd), as BuildKit does it: a source file that is
//! a tar archive is unpacked into the destination directory instead of copied; anything else is copied as a file.
//! Entries are confined to the destination: one that climbs out (`../`, an absolute name, a link through a
//! symlink) fails the step, as Docker's breakout check does.

use std::io::Read;
use std::path::Path;

use super::FileOpError;

/// Whether the file at `path` is a tar archive kiln can unpack: a ustar/GNU header (or a v7 header with a valid
/// checksum) at the start, after gzip or zstd decompression when the file is compressed.
pub fn is_tar_archive(path: &Path) -> bool {
    let Ok(mut f) = std::fs::File::open(path) else {
        return false;
    };
    let mut magic = [0u8; 4];
    let Ok(n) = f.read(&mut magic) else {
        return false;
    };
    let Ok(f) = std::fs::File::open(path) else {
        return false;
    };
    let mut reader: Box<dyn Read> = if n >= 2 && magic[..2] == [0x1f, 0x8b] {
        Box::new(flate2::read::MultiGzDecoder::new(f))
    } else if n == 4 && magic == [0x28, 0xb5, 0x2f, 0xfd] {
        match zstd::stream::read::Decoder::new(f) {
            Ok(d) => Box::new(d),
            Err(_) => return false,
        }
    } else {
        Box::new(f)
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

/// Unpacks the archive `src` into the directory `dest` (made if missing); `add_src` and `add_dest` are the
/// instruction's own paths, for the error.
pub fn unpack(src: &Path, dest: &Path, add_src: &str, add_dest: &str) -> Result<(), FileOpError> {
    std::fs::create_dir_all(dest).map_err(|source| FileOpError::Io {
        path: dest.to_path_buf(),
        source,
    })?;
    let file = std::fs::File::open(src).map_err(|source| FileOpError::Io {
        path: src.to_path_buf(),
        source,
    })?;
    oci::layer::apply_layer(file, dest, oci::layer::Whiteouts::Delete)
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
    fn tars_plain_gzip_and_zstd_are_archives_other_files_are_not() {
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
        std::fs::write(d.path().join("text.tar"), "just text, named like a tar").unwrap();
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        std::io::Write::write_all(&mut gz, b"gzipped text").unwrap();
        std::fs::write(d.path().join("text.gz"), gz.finish().unwrap()).unwrap();
        for yes in ["plain.tar", "t.tgz", "t.tar.zst"] {
            assert!(is_tar_archive(&d.path().join(yes)), "{yes}");
        }
        for no in ["text.tar", "text.gz", "missing"] {
            assert!(!is_tar_archive(&d.path().join(no)), "{no}");
        }
        let out = d.path().join("out");
        unpack(&d.path().join("t.tgz"), &out, "t.tgz", "/out/").unwrap();
        assert_eq!(std::fs::read(out.join("a/b.txt")).unwrap(), b"hi");
    }
}
