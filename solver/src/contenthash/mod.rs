//! Content checksums of a local context: what a COPY or ADD selects, hashed from file contents, modes, owners and
//! symlink targets, never from times, so touching a file without changing it keeps the cache and changing one
//! file changes exactly the checksums that cover it. Files are hashed in parallel; a [`StatCache`] lets an
//! unchanged rebuild skip re-reading files whose stat did not change.

mod statcache;

use std::fs::Metadata;
use std::io::Read;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, SystemTime};

use oci::Digest;
use rayon::prelude::*;
use sha2::{Digest as _, Sha256};

pub use statcache::{StatCache, StatKey};

use crate::fileop::scoped::ScopedError;
use crate::fileop::sources::{select_parents, SourceError};
use crate::patterns::{clean_path, PatternError, PatternMatcher};

/// Why a checksum could not be computed.
#[derive(Debug, thiserror::Error)]
pub enum HashError {
    /// Reading the context failed.
    #[error("{path}: {source}")]
    Io {
        /// The path being read.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// A .dockerignore or source pattern is malformed.
    #[error(transparent)]
    Pattern(#[from] PatternError),
    /// The source names nothing in the context (or only ignored files).
    #[error("{0:?} not found in the build context (or excluded by .dockerignore)")]
    NotFound(String),
    /// The source path leaves the context (`../x`).
    #[error("{0:?} is outside the build context")]
    OutsideContext(String),
}

impl From<SourceError> for HashError {
    fn from(e: SourceError) -> Self {
        match e {
            SourceError::Io { path, source } => HashError::Io { path, source },
            SourceError::Pattern(e) => HashError::Pattern(e),
            SourceError::Dangling(name) => HashError::NotFound(name),
            SourceError::Scoped(ScopedError::Io { path, source }) => HashError::Io { path, source },
            SourceError::Scoped(ScopedError::SymlinkLoop(src)) => {
                HashError::NotFound(format!("{src} (too many levels of symbolic links)"))
            }
        }
    }
}

/// Hashes paths of one context directory.
pub struct ContextHasher {
    root: PathBuf,
    ignore: PatternMatcher,
    /// What the previous build remembered: only read while hashing, so threads share it without a lock.
    cache: StatCache,
    /// Files hashed by this build, merged into the cache at the end.
    learned: Mutex<Vec<(PathBuf, StatKey, Digest)>>,
    files_read: AtomicUsize,
    racy_window: Duration,
}

/// How recently a file may have changed and still have its digest remembered by stat: twice the coarsest
/// timestamp tick of common Linux filesystems (one second), so a same-size rewrite right after a build hashed the
/// file is never taken for unchanged. Such files are simply re-read by the next build.
pub const RACY_WINDOW: Duration = Duration::from_secs(2);

/// Per-file checksums of a selection, by path relative to the context root.
pub type Files = std::collections::BTreeMap<String, Digest>;

/// Per-file checksums as a subtree yields them: gathered up the tree without a lock, sorted once at the end.
type Listed = Vec<(String, Digest)>;

/// An entry's checksum (`None` when absent or ignored) with its files' checksums when they were asked for.
type Hashed = (Option<Digest>, Listed);

impl ContextHasher {
    /// A hasher over `root`, skipping what `ignore_patterns` (Docker's .dockerignore syntax) exclude.
    pub fn new<S: AsRef<str>>(
        root: &Path,
        ignore_patterns: &[S],
        cache: StatCache,
    ) -> Result<Self, HashError> {
        Ok(ContextHasher {
            root: root.to_path_buf(),
            ignore: PatternMatcher::new(ignore_patterns)?,
            cache,
            learned: Mutex::new(Vec::new()),
            files_read: AtomicUsize::new(0),
            racy_window: RACY_WINDOW,
        })
    }

    /// Sets how recently changed files are not remembered (tests shorten it rather than sleep two seconds).
    #[cfg(test)]
    pub(crate) fn with_racy_window(mut self, window: Duration) -> Self {
        self.racy_window = window;
        self
    }

    /// How many files had their content read (the rest came from the stat cache).
    pub fn files_read(&self) -> usize {
        self.files_read.load(Ordering::Relaxed)
    }

    /// The stat cache, with what this hasher learned, to save for the next build.
    pub fn into_stat_cache(self) -> StatCache {
        let mut cache = self.cache;
        for (path, key, digest) in self.learned.into_inner().unwrap_or_else(|p| p.into_inner()) {
            cache.insert(path, key, digest);
        }
        cache
    }

    /// The checksum of what `COPY <src>` selects: a path (a symlink named directly is followed, inside the context)
    /// or a wildcard pattern, whose matches are hashed with their paths.
    pub fn checksum(&self, src: &str) -> Result<Digest, HashError> {
        Ok(self.checksum_inner(src, false, false)?.0)
    }

    /// As [`ContextHasher::checksum`], also listing the checksum of every file and symlink selected, so a later
    /// miss can name the exact file that changed.
    pub fn checksum_with_files(&self, src: &str) -> Result<(Digest, Files), HashError> {
        self.checksum_of_copy(src, false)
    }

    /// [`ContextHasher::checksum_with_files`] of a COPY source, selected as a `--parents` copy selects it when
    /// `parents` (see [`crate::fileop::sources::select_parents`]).
    pub fn checksum_of_copy(&self, src: &str, parents: bool) -> Result<(Digest, Files), HashError> {
        let (d, listed) = self.checksum_inner(src, true, parents)?;
        Ok((d, listed.into_iter().collect()))
    }

    fn checksum_inner(
        &self,
        src: &str,
        list: bool,
        parents: bool,
    ) -> Result<(Digest, Listed), HashError> {
        let cleaned = clean_path(src.trim_start_matches('/'));
        if cleaned == ".." || cleaned.starts_with("../") {
            return Err(HashError::OutsideContext(src.to_string()));
        }
        // The copy selects with the same function, so the key covers the entries it reads: each followed when a
        // symlink, and each in the context by its own path and its real one.
        let wildcard = cleaned.contains(['*', '?', '[']);
        let sources = select_parents(&self.root, &self.ignore, &cleaned, wildcard, true, parents)?;
        if !wildcard {
            let Some(source) = sources.first() else {
                return Err(HashError::NotFound(src.to_string()));
            };
            let (d, listed) = self.entry(&source.real, list)?;
            return Ok((
                d.ok_or_else(|| HashError::NotFound(src.to_string()))?,
                listed,
            ));
        }
        if sources.is_empty() {
            return Err(HashError::NotFound(src.to_string()));
        }
        // A match is hashed under its own name (the copy names its destination after it) with the checksum of
        // what it resolves to.
        let parts: Vec<(String, Hashed)> = sources
            .into_par_iter()
            .map(|s| Ok((s.name, self.entry(&s.real, list)?)))
            .collect::<Result<_, HashError>>()?;
        let mut h = Sha256::new();
        let mut all = Listed::new();
        for (path, (digest, mut listed)) in parts {
            if let Some(d) = digest {
                named(&mut h, &path, &d);
            }
            all.append(&mut listed);
        }
        Ok((finish(h), all))
    }

    fn ignored(&self, rel: &str) -> bool {
        !rel.is_empty() && !self.ignore.is_empty() && self.ignore.matches_or_parent_matches(rel)
    }

    /// Whether `rel`, when an ignored directory, is still walked because an exception may re-include something
    /// below it (see [`PatternMatcher::must_walk_excluded_dir`]); it then counts only if something does.
    fn walked_though_ignored(&self, rel: &str) -> bool {
        !rel.is_empty() && self.ignore.must_walk_excluded_dir(rel)
    }

    /// Whether the context walk reaches `rel` at all: no parent of it is an ignored directory left unwalked.
    fn reached(&self, rel: &str) -> bool {
        rel.is_empty() || self.ignore.is_empty() || self.ignore.walk_reaches(rel)
    }

    fn abs(&self, rel: &str) -> PathBuf {
        if rel.is_empty() {
            self.root.clone()
        } else {
            self.root.join(rel)
        }
    }

    fn meta(&self, rel: &str) -> Result<Option<Metadata>, HashError> {
        match std::fs::symlink_metadata(self.abs(rel)) {
            Ok(m) => Ok(Some(m)),
            // A path through a file names nothing (`sub/*/dir2` where `*` matched a plain file).
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::NotFound | std::io::ErrorKind::NotADirectory
                ) =>
            {
                Ok(None)
            }
            Err(source) => Err(HashError::Io {
                path: self.abs(rel),
                source,
            }),
        }
    }

    /// The checksum of one entry, or `None` when it is absent or ignored (an ignored directory walked for its
    /// exceptions has one only when something under it is re-included); with `list`, also its files' checksums.
    fn entry(&self, rel: &str, list: bool) -> Result<Hashed, HashError> {
        let ignored = self.ignored(rel);
        if !self.reached(rel) || (ignored && !self.walked_though_ignored(rel)) {
            return Ok((None, Listed::new()));
        }
        let Some(m) = self.meta(rel)? else {
            return Ok((None, Listed::new()));
        };
        if ignored && !m.is_dir() {
            return Ok((None, Listed::new()));
        }
        self.entry_of(rel, &m, list, ignored)
    }

    /// The checksum of an entry whose metadata is known. A directory's children are stat'ed through the
    /// directory's own descriptor (`fstatat`), not by walking their whole path again: on a context of 20,000
    /// files that is most of what an unchanged rebuild costs.
    ///
    /// `walked` marks an ignored directory walked for its exceptions: as BuildKit's context transfer emits such a
    /// directory (with its own metadata) only once something under it is emitted, it is `None` unless a child is
    /// there: a child not ignored (even one hashed as nothing, such as a socket, since the copy makes a file of
    /// it) or such a directory that is itself there. The copy decides with the same rule.
    fn entry_of(
        &self,
        rel: &str,
        m: &Metadata,
        list: bool,
        walked: bool,
    ) -> Result<Hashed, HashError> {
        let ft = m.file_type();
        let mut listed = Listed::new();
        let header = format!("{:o} {} {}", m.mode(), m.uid(), m.gid());
        let mut h = Sha256::new();
        if ft.is_dir() {
            let dir = self.abs(rel);
            let rd = std::fs::read_dir(&dir).map_err(|source| HashError::Io {
                path: dir.clone(),
                source,
            })?;
            let mut entries: Vec<(String, std::fs::DirEntry)> = Vec::new();
            for e in rd {
                let e = e.map_err(|source| HashError::Io {
                    path: dir.clone(),
                    source,
                })?;
                entries.push((e.file_name().to_string_lossy().into_owned(), e));
            }
            entries.sort_by(|a, b| a.0.cmp(&b.0));
            // Each child with whether it is there (see `walked` above).
            let children: Result<Vec<(String, Hashed, bool)>, HashError> = entries
                .into_par_iter()
                .map(|(n, e)| {
                    let child = join(rel, &n);
                    let ignored = self.ignored(&child);
                    if ignored && !self.walked_though_ignored(&child) {
                        return Ok((n, (None, Listed::new()), false));
                    }
                    let m = match e.metadata() {
                        Ok(m) => m,
                        // Removed since the directory was read: absent, as a fresh walk would find it.
                        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                            return Ok((n, (None, Listed::new()), false))
                        }
                        Err(source) => {
                            return Err(HashError::Io {
                                path: self.abs(&child),
                                source,
                            })
                        }
                    };
                    if ignored && !m.is_dir() {
                        return Ok((n, (None, Listed::new()), false));
                    }
                    let hashed = self.entry_of(&child, &m, list, ignored)?;
                    let there = !ignored || hashed.0.is_some();
                    Ok((n, hashed, there))
                })
                .collect();
            let children = children?;
            if walked && !children.iter().any(|(_, _, there)| *there) {
                return Ok((None, Listed::new()));
            }
            h.update(format!("dir {header}\n"));
            for (name, (digest, mut sub), _) in children {
                if let Some(d) = digest {
                    named(&mut h, &name, &d);
                }
                listed.append(&mut sub);
            }
        } else if ft.is_symlink() {
            let target = std::fs::read_link(self.abs(rel)).map_err(|source| HashError::Io {
                path: self.abs(rel),
                source,
            })?;
            h.update(format!("symlink {header}\0{}", target.to_string_lossy()));
        } else if ft.is_file() {
            let content = self.file_digest(rel, m)?;
            h.update(format!("file {header} {}\0{content}", m.size()));
        } else if ft.is_socket() {
            // Docker's context transfer drops sockets.
            return Ok((None, Listed::new()));
        } else {
            h.update(format!("special {header} {}", m.rdev()));
        }
        let digest = finish(h);
        if list {
            if !ft.is_dir() {
                listed.push((rel.to_string(), digest.clone()));
            } else if !rel.is_empty() {
                // A directory is listed as `rel/` by its own metadata only, so the listing says which
                // directories exist (a COPY re-run from its previous result needs the same ones) without a
                // directory standing for every file changed under it.
                listed.push((format!("{rel}/"), Digest::sha256_of(header.as_bytes())));
            }
        }
        Ok((Some(digest), listed))
    }

    fn file_digest(&self, rel: &str, m: &Metadata) -> Result<Digest, HashError> {
        let key = StatKey::of(m);
        let path = self.abs(rel);
        if let Some(d) = self.cache.get(&path, &key) {
            return Ok(d);
        }
        let hashed_at = SystemTime::now();
        let io = |source| HashError::Io {
            path: path.clone(),
            source,
        };
        let mut f = std::fs::File::open(&path).map_err(io)?;
        let mut h = Sha256::new();
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let n = f.read(&mut buf).map_err(io)?;
            if n == 0 {
                break;
            }
            h.update(&buf[..n]);
        }
        self.files_read.fetch_add(1, Ordering::Relaxed);
        let d = finish(h);
        if !key.is_racy(hashed_at, self.racy_window) {
            if let Ok(mut l) = self.learned.lock() {
                l.push((path.clone(), key, d.clone()));
            }
        }
        Ok(d)
    }
}

fn join(base: &str, name: &str) -> String {
    if base.is_empty() {
        name.to_string()
    } else {
        format!("{base}/{name}")
    }
}

/// Feeds `name\0digest\n` (a child or match under its name) without formatting a string for it.
fn named(h: &mut Sha256, name: &str, d: &Digest) {
    h.update(name.as_bytes());
    h.update(b"\0");
    h.update(d.algorithm().as_bytes());
    h.update(b":");
    h.update(d.hex().as_bytes());
    h.update(b"\n");
}

fn finish(h: Sha256) -> Digest {
    Digest::from_sha256_bytes(&h.finalize().into())
}

#[cfg(test)]
mod tests;
