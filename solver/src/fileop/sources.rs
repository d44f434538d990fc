//! What a COPY source selects in an input: its wildcard expanded once, each match resolved and kept only when it is
//! in the context. The copy and the context checksum both call [`select`], so the cache key covers exactly the
//! entries the copy reads; written twice, the two could (and did) pick different files.
//!
//! An input with a `.dockerignore` is seen as BuildKit's context transfer makes it: the client's walk sends an
//! entry only when its own path is not excluded (an excluded directory is walked when an exception may re-include
//! something below it, and sent only when something is), and the copy then follows symlinks in what arrived. So a
//! symlink is there only when its own path is, and what it points at only when the target's real path is: both
//! are checked, and a directory reached through a link has its children matched by their real paths.

use std::path::{Path, PathBuf};

use super::scoped::{self, ScopedError};
use crate::patterns::{clean_path, Pattern, PatternError, PatternMatcher};

/// How many symlinks one source may pass through, as [`scoped::resolve`] allows.
const MAX_HOPS: usize = 255;

/// Why a source could not be expanded.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    /// Reading the input failed.
    #[error("{path}: {source}")]
    Io {
        /// The path being read.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// A wildcard is malformed.
    #[error(transparent)]
    Pattern(#[from] PatternError),
    /// A path could not be resolved inside the input (a symlink chain that never ends).
    #[error(transparent)]
    Scoped(#[from] ScopedError),
    /// A wildcard matched a symlink that is in the context but points at nothing there (its target is absent or
    /// excluded): BuildKit's copy fails on such a match rather than skip it.
    #[error("{0:?}: not found (a symlink whose target is not in the context)")]
    Dangling(String),
}

/// One entry a source selects.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Source {
    /// The path as the source named it or a wildcard matched it, relative to the input root: a copy names its
    /// destination after it (a symlinked source keeps its own name) and matches `--exclude` and `--parents`
    /// against it.
    pub name: String,
    /// The same entry with every symlink on the way followed (the last only when asked), relative to the input
    /// root: `.dockerignore` is matched against it and against its children's paths under it, as BuildKit matches
    /// real paths. Empty for the root itself.
    pub real: String,
    /// `real` under the input root; it passes no symlink but possibly the last.
    pub path: PathBuf,
}

fn is_glob(s: &str) -> bool {
    s.contains(['*', '?', '['])
}

fn join(base: &str, name: &str) -> String {
    if base.is_empty() {
        name.to_string()
    } else {
        format!("{base}/{name}")
    }
}

/// The entries `src` selects under `root` with `ignore` applied, in order (a wildcard's matches sorted directory by
/// directory). `wildcard` says whether `*`, `?` and `[` are wildcards; `follow_last` whether a source (or match)
/// that is a symlink stands for what it points at. Empty when nothing is selected: whether that is an error is the
/// caller's to say.
pub fn select(
    root: &Path,
    ignore: &PatternMatcher,
    src: &str,
    wildcard: bool,
    follow_last: bool,
) -> Result<Vec<Source>, SourceError> {
    select_parents(root, ignore, src, wildcard, follow_last, false)
}

/// As [`select`]; with `parents` (`COPY --parents`) a `**` segment stands for any number of directories, as
/// BuildKit matches a `--parents` source as an include pattern (its testCopyRelativeParents: `/test/a/b*/./c/**/bar`
/// finds `c/d/e/bar`). Elsewhere `**` is a `*`, as a plain COPY's wildcard.
pub fn select_parents(
    root: &Path,
    ignore: &PatternMatcher,
    src: &str,
    wildcard: bool,
    follow_last: bool,
    parents: bool,
) -> Result<Vec<Source>, SourceError> {
    let globbed = wildcard && is_glob(src);
    let names = if globbed {
        glob_with(root, src, parents)?
    } else {
        vec![clean_path(&format!("/{src}"))
            .trim_start_matches('/')
            .to_string()]
    };
    let mut out = Vec::with_capacity(names.len());
    for name in names {
        let real = match resolve_in_context(root, ignore, &name, follow_last)? {
            Resolved::Real(real) => real,
            Resolved::Absent => continue,
            // Named directly, a dangling link is simply not found; a wildcard's match is there and fails.
            Resolved::Dangling if !globbed => continue,
            Resolved::Dangling => return Err(SourceError::Dangling(name)),
        };
        let path = if real.is_empty() {
            root.to_path_buf()
        } else {
            root.join(&real)
        };
        out.push(Source { name, real, path });
    }
    Ok(out)
}

/// The paths under `root` a wildcard pattern matches, relative to it and sorted directory by directory, with no
/// `.dockerignore` applied: segment by segment (`*`, `?` and classes never cross `/`), a directory named on the way
/// followed inside the root when it is a symlink.
pub fn glob(root: &Path, pattern: &str) -> Result<Vec<String>, SourceError> {
    glob_with(root, pattern, false)
}

/// Every path below `base` (relative to `root`), directory by directory in name order, without entering symlinks.
fn descendants(root: &Path, base: &str, out: &mut Vec<String>) -> Result<(), SourceError> {
    let dir = scoped::resolve(root, base, true)?;
    let Ok(rd) = std::fs::read_dir(&dir) else {
        return Ok(());
    };
    let mut entries: Vec<(String, bool)> = rd
        .filter_map(|e| e.ok())
        .map(|e| {
            let is_dir = e.file_type().is_ok_and(|t| t.is_dir());
            (e.file_name().to_string_lossy().into_owned(), is_dir)
        })
        .collect();
    entries.sort();
    for (name, is_dir) in entries {
        let rel = join(base, &name);
        out.push(rel.clone());
        if is_dir {
            descendants(root, &rel, out)?;
        }
    }
    Ok(())
}

/// [`glob`]; with `globstar` a `**` segment matches any number (zero included) of path segments.
fn glob_with(root: &Path, pattern: &str, globstar: bool) -> Result<Vec<String>, SourceError> {
    let cleaned = clean_path(&format!("/{pattern}"));
    let mut current: Vec<String> = vec![String::new()];
    for seg in cleaned.split('/').filter(|s| !s.is_empty()) {
        let mut next = Vec::new();
        if globstar && seg == "**" {
            for base in &current {
                next.push(base.clone());
                descendants(root, base, &mut next)?;
            }
            let mut seen = std::collections::HashSet::new();
            next.retain(|p| seen.insert(p.clone()));
        } else if is_glob(seg) {
            let m = Pattern::new(seg)?;
            for base in &current {
                let dir = scoped::resolve(root, base, true)?;
                let Ok(rd) = std::fs::read_dir(&dir) else {
                    continue;
                };
                let mut names: Vec<String> = rd
                    .filter_map(|e| e.ok())
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .filter(|n| m.matches(n))
                    .collect();
                names.sort();
                next.extend(names.into_iter().map(|n| join(base, &n)));
            }
        } else {
            for base in &current {
                let rel = join(base, seg);
                if exists_under(root, &rel)? {
                    next.push(rel);
                }
            }
        }
        current = next;
    }
    current.retain(|r| !r.is_empty());
    Ok(current)
}

/// Whether `rel` names something under `root`. A path through a file (`sub/*/dir2` where `*` matched a plain
/// file) names nothing, as a shell's glob finds nothing there; other errors are errors.
fn exists_under(root: &Path, rel: &str) -> Result<bool, SourceError> {
    match scoped::resolve(root, rel, false) {
        Ok(p) => Ok(std::fs::symlink_metadata(p).is_ok()),
        Err(ScopedError::Io { source, .. }) if is_absent(&source) => Ok(false),
        Err(e) => Err(e.into()),
    }
}

fn is_absent(e: &std::io::Error) -> bool {
    matches!(
        e.kind(),
        std::io::ErrorKind::NotFound | std::io::ErrorKind::NotADirectory
    )
}

/// Where a name leads in the context.
enum Resolved {
    /// To this real path, relative to the root.
    Real(String),
    /// Nowhere: the name itself, or a directory on its way, is not in the context.
    Absent,
    /// The name is in the context, a symlink (followed as the last component) whose target is not.
    Dangling,
}

/// Resolves `rel` under `root` component by component, following symlinks inside the root (the last only when
/// `follow_last`), to its real path relative to the root. It is not in the context when it is absent, or any entry
/// on the way (a symlink passed through, a directory, the end) is excluded by `ignore` and not a directory walked
/// for its exceptions, or the end is such a directory with nothing under it re-included; once the last component is
/// a symlink being followed, that makes it [`Resolved::Dangling`] rather than absent.
fn resolve_in_context(
    root: &Path,
    ignore: &PatternMatcher,
    rel: &str,
    follow_last: bool,
) -> Result<Resolved, SourceError> {
    let mut done: Vec<String> = Vec::new();
    let mut todo: Vec<String> = components(rel);
    todo.reverse();
    let mut hops = 0;
    // Set once the name itself is found in the context and is a symlink being followed.
    let mut following_last = false;
    let missing = |following_last: bool| {
        Ok(if following_last {
            Resolved::Dangling
        } else {
            Resolved::Absent
        })
    };
    while let Some(part) = todo.pop() {
        match part.as_str() {
            "" | "." => continue,
            ".." => {
                done.pop();
                continue;
            }
            _ => {}
        }
        let candidate = join(&done.join("/"), &part);
        let abs = root.join(&candidate);
        let meta = match std::fs::symlink_metadata(&abs) {
            Ok(m) => m,
            Err(e) if is_absent(&e) => return missing(following_last),
            Err(source) => return Err(SourceError::Io { path: abs, source }),
        };
        if !ignore.is_empty()
            && ignore.matches_or_parent_matches(&candidate)
            && !(meta.is_dir() && ignore.must_walk_excluded_dir(&candidate))
        {
            return missing(following_last);
        }
        if meta.file_type().is_symlink() && (follow_last || !todo.is_empty()) {
            following_last |= todo.is_empty();
            hops += 1;
            if hops > MAX_HOPS {
                return Err(ScopedError::SymlinkLoop(rel.to_string()).into());
            }
            let target = std::fs::read_link(&abs).map_err(|source| SourceError::Io {
                path: abs.clone(),
                source,
            })?;
            let target = target.to_string_lossy();
            if target.starts_with('/') {
                done.clear();
            }
            todo.extend(components(&target).into_iter().rev());
            continue;
        }
        done.push(part);
    }
    let real = done.join("/");
    if in_context(ignore, root, &real)? {
        Ok(Resolved::Real(real))
    } else {
        missing(following_last)
    }
}

fn components(path: &str) -> Vec<String> {
    path.split('/')
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect()
}

/// Whether `real`, a path under `root` with no symlink on the way, is in the context BuildKit's transfer makes of
/// it: reached by the walk, and either not excluded or a real directory walked for its exceptions with something
/// under it re-included (see [`PatternMatcher::must_walk_excluded_dir`]).
fn in_context(ignore: &PatternMatcher, root: &Path, real: &str) -> Result<bool, SourceError> {
    if ignore.is_empty() || real.is_empty() {
        return Ok(true);
    }
    if !ignore.walk_reaches(real) {
        return Ok(false);
    }
    if !ignore.matches_or_parent_matches(real) {
        return Ok(true);
    }
    if !ignore.must_walk_excluded_dir(real) {
        return Ok(false);
    }
    let dir = root.join(real);
    match std::fs::symlink_metadata(&dir) {
        Ok(m) if m.is_dir() => walked_dir_emits(ignore, &dir, real),
        _ => Ok(false),
    }
}

/// Whether anything under `dir` (at `rel` in the input), an excluded directory walked for its exceptions, is in the
/// context: a child not excluded, or a child directory of the same kind with something in it. BuildKit's walk
/// sends such a directory only then; the context checksum's directory walk applies the same rule, so the cache key
/// covers exactly the directories the copy makes.
pub fn walked_dir_emits(
    ignore: &PatternMatcher,
    dir: &Path,
    rel: &str,
) -> Result<bool, SourceError> {
    let io = |source| SourceError::Io {
        path: dir.to_path_buf(),
        source,
    };
    for e in std::fs::read_dir(dir).map_err(io)? {
        let e = e.map_err(io)?;
        let child = join(rel, &e.file_name().to_string_lossy());
        if !ignore.matches_or_parent_matches(&child) {
            return Ok(true);
        }
        if ignore.must_walk_excluded_dir(&child)
            && e.file_type().map_err(io)?.is_dir()
            && walked_dir_emits(ignore, &e.path(), &child)?
        {
            return Ok(true);
        }
    }
    Ok(false)
}
