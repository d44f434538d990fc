//! `kiln build -`: as with `docker build -`, standard input holds either a build context as a tar (plain, gzip or
//! zstd; `-f` then names a file inside it) or a lone Dockerfile with an empty context. Either is staged in a
//! directory under kiln's root for the build and removed afterwards.

use std::io::Read;
use std::path::{Path, PathBuf};

use crate::root::Root;

/// Why a context from stdin could not be staged.
#[derive(Debug, thiserror::Error)]
pub enum StageError {
    /// The bytes could not be decompressed, unpacked or written.
    #[error("build context from stdin: {0}")]
    Unpack(std::io::Error),
    /// `-f` was given with a lone Dockerfile.
    #[error("-f with a Dockerfile on stdin: give either the Dockerfile on stdin or a tar context")]
    FileWithDockerfile,
}

/// A context staged from stdin; the directory goes when this is dropped.
pub struct Staged {
    /// The staged context directory.
    pub context: PathBuf,
    /// The Dockerfile `-f` named inside a tar context, now a path into the staged directory.
    pub file: Option<PathBuf>,
    dir: PathBuf,
}

impl Drop for Staged {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn is_tar(bytes: &[u8]) -> bool {
    bytes.len() >= 262 && &bytes[257..262] == b"ustar"
}

/// Stages `input` (a tar context, plain, gzip or zstd, or a lone Dockerfile) in the root's scratch space; `file`
/// is the `-f` given, a path inside the tar.
pub fn stage(root: &Root, file: Option<&Path>, input: Vec<u8>) -> Result<Staged, StageError> {
    let plain = if input.starts_with(&[0x1f, 0x8b]) {
        let mut out = Vec::new();
        flate2::read::MultiGzDecoder::new(&input[..])
            .read_to_end(&mut out)
            .map_err(StageError::Unpack)?;
        out
    } else if input.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
        zstd::decode_all(&input[..]).map_err(StageError::Unpack)?
    } else {
        input
    };
    let dir = root
        .work()
        .join(format!("stdin-context-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).map_err(StageError::Unpack)?;
    // Owned from here on, so a failure below removes the directory.
    let mut staged = Staged {
        context: dir.clone(),
        file: None,
        dir: dir.clone(),
    };
    if is_tar(&plain) {
        // `unpack` refuses names with `..` and writes nothing through symlinks that leave the directory.
        tar::Archive::new(&plain[..])
            .unpack(&dir)
            .map_err(StageError::Unpack)?;
        staged.file = file.map(|f| dir.join(f));
    } else {
        if file.is_some() {
            return Err(StageError::FileWithDockerfile);
        }
        std::fs::write(dir.join("Dockerfile"), &plain).map_err(StageError::Unpack)?;
    }
    Ok(staged)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lone_dockerfile_gets_an_empty_context() {
        let root = tempfile::tempdir().unwrap();
        let root = Root::at(root.path());
        let s = stage(&root, None, b"FROM scratch\n".to_vec()).unwrap();
        let dir = s.context.clone();
        assert_eq!(
            std::fs::read(dir.join("Dockerfile")).unwrap(),
            b"FROM scratch\n"
        );
        assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 1);
        drop(s);
        assert!(!dir.exists(), "removed after the build");
    }

    #[test]
    fn a_gzipped_tar_is_a_context_and_f_names_a_file_in_it() {
        let mut b = tar::Builder::new(Vec::new());
        for (p, d) in [("sub/Build.df", &b"FROM scratch\n"[..]), ("a.txt", b"a")] {
            let mut h = tar::Header::new_ustar();
            h.set_size(d.len() as u64);
            h.set_mode(0o644);
            b.append_data(&mut h, p, d).unwrap();
        }
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        std::io::Write::write_all(&mut gz, &b.into_inner().unwrap()).unwrap();
        let root = tempfile::tempdir().unwrap();
        let root = Root::at(root.path());
        let s = stage(&root, Some(Path::new("sub/Build.df")), gz.finish().unwrap()).unwrap();
        assert_eq!(std::fs::read(s.context.join("a.txt")).unwrap(), b"a");
        assert_eq!(
            s.file.as_deref(),
            Some(s.context.join("sub/Build.df").as_path())
        );
    }
}
