//! File operations without a sandbox: COPY/ADD copies, heredoc files, WORKDIR's mkdir and removals, applied to a
//! directory that holds the base filesystem, with BuildKit's semantics (wildcards, a directory's contents versus
//! the directory, trailing slashes, --chown/--chmod, --parents, --exclude) and every path confined to its root.

mod archive;
mod attrs;
mod copy;
mod mode;
pub mod sources;
mod users;

/// Path resolution confined to a root (shared with layer extraction).
pub use oci::scoped;

use std::path::{Path, PathBuf};

pub use attrs::{copy_xattrs, set_mode, set_owner, set_times_from};
pub use mode::apply_mode;
pub use users::{resolve_chown, resolve_run_user, run_user_home};

use crate::llb::FileAction;
use crate::patterns::PatternError;

/// Why a file operation failed.
#[derive(Debug, thiserror::Error)]
pub enum FileOpError {
    /// An I/O failure, with the path.
    #[error("{path}: {source}")]
    Io {
        /// The path.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// A source path names nothing.
    #[error("{0:?}: not found")]
    NotFound(String),
    /// A path could not be resolved inside its root.
    #[error(transparent)]
    Scoped(#[from] oci::scoped::ScopedError),
    /// A RUN step's USER names a user the rootfs does not know (file ops take an unknown name as root, as
    /// BuildKit's readUser does).
    #[error("unable to find user {0}: no matching entries in passwd file")]
    UnknownUser(String),
    /// A RUN step's USER names a group the rootfs does not know.
    #[error("unable to find group {0}: no matching entries in group file")]
    UnknownGroup(String),
    /// A copy would put a file where a directory is, or the reverse.
    #[error("cannot copy {src:?} to {dest:?}: {reason}")]
    Conflict {
        /// Source path.
        src: String,
        /// Destination path.
        dest: String,
        /// What collides.
        reason: String,
    },
    /// An action refers to an input the op does not have.
    #[error("file action refers to input {0}, which the op does not have")]
    NoSuchInput(usize),
    /// A malformed wildcard or exclude pattern.
    #[error(transparent)]
    Pattern(#[from] PatternError),
}

impl From<sources::SourceError> for FileOpError {
    fn from(e: sources::SourceError) -> Self {
        match e {
            sources::SourceError::Io { path, source } => FileOpError::Io { path, source },
            sources::SourceError::Pattern(e) => FileOpError::Pattern(e),
            sources::SourceError::Scoped(e) => FileOpError::Scoped(e),
            sources::SourceError::Dangling(name) => FileOpError::NotFound(name),
        }
    }
}

/// One input filesystem a copy can read from.
#[derive(Debug, Clone)]
pub struct Input {
    /// Its root directory.
    pub root: PathBuf,
    /// Owner given to copied files when no `--chown` is set: `Some((0, 0))` for the build context (Docker's rule),
    /// `None` to keep the source's owners (copies from stages and images).
    pub default_owner: Option<(u32, u32)>,
    /// Paths of this input that do not exist for copies (the context's .dockerignore), relative to its root.
    pub ignore: Vec<String>,
    /// Set when the target was cloned from the previous result of this same copy (see [`Reused`]).
    pub reused: Option<std::sync::Arc<Reused>>,
}

/// A copy into a target cloned from its own previous result.
#[derive(Debug)]
pub struct Reused {
    /// Files of the input (relative to its root) whose content is what the target already holds at their
    /// destination: a destination file with the metadata the copy would give it is left as it is.
    pub unchanged: std::collections::HashSet<String>,
    /// The files the clone linked, by path relative to the target, with their (and so the destinations')
    /// metadata.
    pub cloned: std::collections::HashMap<String, ClonedFile>,
}

/// What the copy's skip check compares of a destination file the clone linked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClonedFile {
    /// Bytes.
    pub size: u64,
    /// Owner.
    pub uid: u32,
    /// Group.
    pub gid: u32,
    /// Permission bits (`0o7777`).
    pub mode: u32,
    /// Modification time, seconds and nanoseconds.
    pub mtime: (i64, i64),
}

impl ClonedFile {
    /// The parts of `m` the skip check compares.
    pub fn of(m: &std::fs::Metadata) -> ClonedFile {
        use std::os::unix::fs::MetadataExt;
        ClonedFile {
            size: m.size(),
            uid: m.uid(),
            gid: m.gid(),
            mode: m.mode() & 0o7777,
            mtime: (m.mtime(), m.mtime_nsec()),
        }
    }
}

/// Applies `actions` in order to `target` (a directory holding the base filesystem, written in place).
pub fn apply(target: &Path, actions: &[FileAction], inputs: &[Input]) -> Result<(), FileOpError> {
    for action in actions {
        match action {
            FileAction::Copy(c) => {
                let input = inputs
                    .get(c.source)
                    .ok_or(FileOpError::NoSuchInput(c.source))?;
                copy::copy(target, c, input)?;
            }
            FileAction::Mkfile {
                path,
                mode,
                data,
                chown,
            } => {
                let dest = scoped::resolve(target, path, false)?;
                if let Some(parent) = dest.parent() {
                    std::fs::create_dir_all(parent).map_err(|source| FileOpError::Io {
                        path: parent.to_path_buf(),
                        source,
                    })?;
                }
                std::fs::write(&dest, data).map_err(|source| FileOpError::Io {
                    path: dest.clone(),
                    source,
                })?;
                attrs::set_mode(&dest, *mode)?;
                if let Some(c) = chown {
                    let (uid, gid) = resolve_chown(target, c)?;
                    attrs::set_owner(&dest, uid, gid)?;
                }
            }
            FileAction::Mkdir {
                path,
                mode,
                make_parents,
                chown,
            } => {
                let owner = match chown {
                    Some(c) => Some(resolve_chown(target, c)?),
                    None => None,
                };
                copy::mkdir(target, path, *mode, *make_parents, owner)?;
            }
            FileAction::Rm {
                path,
                allow_not_found,
                allow_wildcard,
            } => {
                let victims = if *allow_wildcard && path.contains(['*', '?', '[']) {
                    sources::glob(target, path)?
                        .iter()
                        .map(|rel| scoped::resolve(target, rel, false))
                        .collect::<Result<Vec<_>, _>>()?
                } else {
                    vec![scoped::resolve(target, path, false)?]
                };
                if victims.is_empty() && !allow_not_found {
                    return Err(FileOpError::NotFound(path.clone()));
                }
                for v in victims {
                    let result = match std::fs::symlink_metadata(&v) {
                        Ok(m) if m.is_dir() => std::fs::remove_dir_all(&v),
                        Ok(_) => std::fs::remove_file(&v),
                        Err(e) => Err(e),
                    };
                    match result {
                        Ok(()) => {}
                        Err(e) if e.kind() == std::io::ErrorKind::NotFound && *allow_not_found => {}
                        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                            return Err(FileOpError::NotFound(path.clone()))
                        }
                        Err(source) => return Err(FileOpError::Io { path: v, source }),
                    }
                }
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests;
