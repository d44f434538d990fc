//! Finding and reading the ignore file of a build: `<Dockerfile name>.dockerignore` beside the Dockerfile wins
//! over `.dockerignore` at the context root, as BuildKit decides.

use std::io;
use std::path::{Path, PathBuf};

/// Which ignore file applies to a build, if any.
pub fn ignore_file_for(context: &Path, dockerfile: Option<&Path>) -> Option<PathBuf> {
    if let Some(df) = dockerfile {
        if let Some(name) = df.file_name() {
            let mut specific = name.to_os_string();
            specific.push(".dockerignore");
            let candidate = df.with_file_name(specific);
            if candidate.is_file() {
                return Some(candidate);
            }
        }
    }
    let root = context.join(".dockerignore");
    root.is_file().then_some(root)
}

/// The patterns of the build's ignore file (empty when there is none), read as Docker's `ignorefile.ReadAll`.
pub fn read_patterns(context: &Path, dockerfile: Option<&Path>) -> io::Result<Vec<String>> {
    match ignore_file_for(context, dockerfile) {
        Some(path) => {
            let bytes = std::fs::read(&path)?;
            let text = String::from_utf8_lossy(&bytes);
            Ok(llb::patterns::read_ignore_file(&text))
        }
        None => Ok(Vec::new()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dockerfile_specific_ignore_file_wins() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(".dockerignore"), "root\n").unwrap();
        std::fs::create_dir(dir.path().join("sub")).unwrap();
        let df = dir.path().join("sub/app.Dockerfile");
        std::fs::write(&df, "FROM scratch\n").unwrap();
        assert_eq!(read_patterns(dir.path(), Some(&df)).unwrap(), ["root"]);
        std::fs::write(
            dir.path().join("sub/app.Dockerfile.dockerignore"),
            "# c\n/specific\n",
        )
        .unwrap();
        assert_eq!(read_patterns(dir.path(), Some(&df)).unwrap(), ["specific"]);
        let empty = tempfile::tempdir().unwrap();
        assert!(read_patterns(empty.path(), None).unwrap().is_empty());
    }
}
