//! `kiln build -`: as with `docker build -`, standard input holds either a build context as a tar (plain, gzip or
//! zstd; `-f` then names a file inside it) or a lone Dockerfile with an empty context. Either is staged in a
//! directory under kiln's root for the build and removed afterwards.

use std::io::Read;
use std::path::{Path, PathBuf};

use crate::cli::RequestArgs;
use crate::Failure;

/// A context staged from stdin; the directory goes when this is dropped.
pub struct Staged {
    /// The request with its context (and Dockerfile) pointing into the staged directory.
    pub request: RequestArgs,
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

/// Stages stdin when the context is `-`; `None` otherwise.
pub fn stage(request: &RequestArgs, root: &Path) -> Result<Option<Staged>, Failure> {
    if request.context.as_os_str() != "-" {
        return Ok(None);
    }
    if request
        .file
        .as_deref()
        .is_some_and(|f| f.as_os_str() == "-")
    {
        return Err(Failure::Usage(
            "the context and the Dockerfile cannot both come from stdin".to_string(),
        ));
    }
    let mut input = Vec::new();
    std::io::stdin()
        .read_to_end(&mut input)
        .map_err(|e| Failure::Usage(format!("reading the build context from stdin: {e}")))?;
    stage_bytes(request, root, input).map(Some)
}

fn stage_bytes(request: &RequestArgs, root: &Path, input: Vec<u8>) -> Result<Staged, Failure> {
    let fail = |e: &dyn std::fmt::Display| Failure::Usage(format!("build context from stdin: {e}"));
    let plain = if input.starts_with(&[0x1f, 0x8b]) {
        let mut out = Vec::new();
        flate2::read::MultiGzDecoder::new(&input[..])
            .read_to_end(&mut out)
            .map_err(|e| fail(&e))?;
        out
    } else if input.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
        zstd::decode_all(&input[..]).map_err(|e| fail(&e))?
    } else {
        input
    };
    let dir = root
        .join("work")
        .join(format!("stdin-context-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).map_err(|e| fail(&e))?;
    // Owned from here on, so a failure below removes the directory.
    let mut staged = Staged {
        request: request.clone(),
        dir: dir.clone(),
    };
    let request = &mut staged.request;
    if is_tar(&plain) {
        // `unpack` refuses names with `..` and writes nothing through symlinks that leave the directory.
        tar::Archive::new(&plain[..])
            .unpack(&dir)
            .map_err(|e| fail(&e))?;
        request.file = request.file.take().map(|f| dir.join(f));
    } else {
        if request.file.is_some() {
            return Err(Failure::Usage(
                "-f with a Dockerfile on stdin: give either the Dockerfile on stdin or a tar context".to_string(),
            ));
        }
        std::fs::write(dir.join("Dockerfile"), &plain).map_err(|e| fail(&e))?;
    }
    request.context = dir;
    Ok(staged)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(file: Option<&str>) -> RequestArgs {
        RequestArgs {
            file: file.map(PathBuf::from),
            target: None,
            build_args: vec![],
            build_contexts: vec![],
            platform: None,
            context: PathBuf::from("-"),
        }
    }

    #[test]
    fn a_lone_dockerfile_gets_an_empty_context() {
        let root = tempfile::tempdir().unwrap();
        let s = stage_bytes(&request(None), root.path(), b"FROM scratch\n".to_vec()).unwrap();
        let dir = s.request.context.clone();
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
        let s = stage_bytes(
            &request(Some("sub/Build.df")),
            root.path(),
            gz.finish().unwrap(),
        )
        .unwrap();
        assert_eq!(
            std::fs::read(s.request.context.join("a.txt")).unwrap(),
            b"a"
        );
        assert_eq!(
            s.request.file.as_deref(),
            Some(s.request.context.join("sub/Build.df").as_path())
        );
    }
}
