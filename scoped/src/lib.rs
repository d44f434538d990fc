//! Path resolution confined to a root: symlinks are followed as if the root were `/`, and `..` never climbs
//! above it, so a COPY destination that is a symlink to `/etc` lands inside the rootfs, never on the host.

use std::path::{Component, Path, PathBuf};

const MAX_HOPS: usize = 255;

/// Why a path could not be resolved inside its root.
#[derive(Debug, thiserror::Error)]
pub enum ScopedError {
    /// Reading a symlink failed.
    #[error("{path}: {source}")]
    Io {
        /// The symlink.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// A symlink chain never ends.
    #[error("{0:?}: too many levels of symbolic links")]
    SymlinkLoop(String),
}

/// Resolves `path` (absolute or relative, interpreted from `/` of the root) inside `root`. Every symlink met on
/// the way is followed within the root; the last component is followed only when `follow_last`. The result
/// always lies inside `root` (it may not exist yet).
pub fn resolve(root: &Path, path: &str, follow_last: bool) -> Result<PathBuf, ScopedError> {
    let mut done: Vec<String> = Vec::new();
    let mut todo: Vec<String> = components(path);
    todo.reverse();
    let mut hops = 0;
    while let Some(part) = todo.pop() {
        match part.as_str() {
            "." | "" => continue,
            ".." => {
                done.pop();
                continue;
            }
            _ => {}
        }
        let candidate = join(root, &done).join(&part);
        let is_last = todo.is_empty();
        let meta = std::fs::symlink_metadata(&candidate);
        match meta {
            Ok(m) if m.file_type().is_symlink() && (!is_last || follow_last) => {
                hops += 1;
                if hops > MAX_HOPS {
                    return Err(ScopedError::SymlinkLoop(path.to_string()));
                }
                let target = std::fs::read_link(&candidate).map_err(|source| ScopedError::Io {
                    path: candidate.clone(),
                    source,
                })?;
                let target = target.to_string_lossy().into_owned();
                if target.starts_with('/') {
                    done.clear();
                }
                let mut more = components(&target);
                more.reverse();
                todo.extend(more);
            }
            _ => done.push(part),
        }
    }
    Ok(join(root, &done))
}

fn components(p: &str) -> Vec<String> {
    Path::new(p)
        .components()
        .filter_map(|c| match c {
            Component::Normal(s) => Some(s.to_string_lossy().into_owned()),
            Component::ParentDir => Some("..".to_string()),
            _ => None,
        })
        .collect()
}

fn join(root: &Path, parts: &[String]) -> PathBuf {
    let mut p = root.to_path_buf();
    for part in parts {
        p.push(part);
    }
    p
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn symlinks_and_dotdot_stay_inside() {
        let d = tempfile::tempdir().unwrap();
        let root = d.path();
        std::fs::create_dir_all(root.join("real/etc")).unwrap();
        std::os::unix::fs::symlink("/etc", root.join("etc-link")).unwrap();
        std::os::unix::fs::symlink("../../../../..", root.join("real/up")).unwrap();
        std::os::unix::fs::symlink("real/etc", root.join("rel")).unwrap();
        assert_eq!(
            resolve(root, "/etc-link/passwd", true).unwrap(),
            root.join("etc/passwd")
        );
        assert_eq!(resolve(root, "real/up/x", true).unwrap(), root.join("x"));
        assert_eq!(resolve(root, "../../x", true).unwrap(), root.join("x"));
        assert_eq!(resolve(root, "/rel/", true).unwrap(), root.join("real/etc"));
        assert_eq!(
            resolve(root, "/etc-link", false).unwrap(),
            root.join("etc-link")
        );
        std::os::unix::fs::symlink("loop", root.join("loop")).unwrap();
        assert!(matches!(
            resolve(root, "/loop/x", true),
            Err(ScopedError::SymlinkLoop(_))
        ));
    }
}
