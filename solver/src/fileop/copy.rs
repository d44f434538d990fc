//! COPY's semantics on real directories: where each source that [`super::sources::select`] picks lands (a
//! directory's contents go into the destination; a file goes into a destination that is or will be a directory,
//! else becomes it), and how each entry is recreated with its owner, mode, xattrs, times and hardlinks.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};

use rayon::prelude::*;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use super::sources::{self, walked_dir_emits};
use super::{attrs, mode::apply_mode, resolve_chown, scoped, FileOpError, Input};
use crate::llb::{CopyAction, FileMode};
use crate::patterns::{clean_path, PatternMatcher};

fn io(path: &Path) -> impl Fn(std::io::Error) -> FileOpError + '_ {
    move |source| FileOpError::Io {
        path: path.to_path_buf(),
        source,
    }
}

fn join_rel(base: &str, name: &str) -> String {
    if base.is_empty() {
        name.to_string()
    } else {
        format!("{base}/{name}")
    }
}

/// Creates `path` (and its parents when asked) inside `target`; newly created directories get `mode` and, when
/// given, `owner`. An existing directory is left as it is.
pub(super) fn mkdir(
    target: &Path,
    path: &str,
    mode: u32,
    make_parents: bool,
    owner: Option<(u32, u32)>,
) -> Result<(), FileOpError> {
    let dest = scoped::resolve(target, path, true)?;
    create_dirs(target, &dest, mode, make_parents, owner)
}

fn create_dirs(
    target: &Path,
    dest: &Path,
    mode: u32,
    make_parents: bool,
    owner: Option<(u32, u32)>,
) -> Result<(), FileOpError> {
    let mut missing = Vec::new();
    let mut cur = dest.to_path_buf();
    while cur.starts_with(target) && std::fs::symlink_metadata(&cur).is_err() {
        missing.push(cur.clone());
        if !cur.pop() {
            break;
        }
    }
    if missing.len() > 1 && !make_parents {
        return Err(FileOpError::NotFound(
            dest.parent()
                .map(|p| p.display().to_string())
                .unwrap_or_default(),
        ));
    }
    for dir in missing.iter().rev() {
        std::fs::create_dir(dir).map_err(io(dir))?;
        attrs::set_mode(dir, mode)?;
        if let Some((uid, gid)) = owner {
            attrs::set_owner(dir, uid, gid)?;
        }
    }
    match std::fs::metadata(dest) {
        Ok(m) if m.is_dir() => Ok(()),
        Ok(_) => Err(FileOpError::Conflict {
            src: String::new(),
            dest: dest.display().to_string(),
            reason: "a file is in the way of a directory".to_string(),
        }),
        Err(e) => Err(io(dest)(e)),
    }
}

/// Makes way for a file at `dst`: an existing file goes (unlinked, never written in place); a directory there is
/// an error naming the source as the instruction gave it.
fn clear_for_file(dst: &Path, shown: &str) -> Result<(), FileOpError> {
    match std::fs::symlink_metadata(dst) {
        Ok(m) if m.is_dir() => Err(FileOpError::Conflict {
            src: shown.to_string(),
            dest: dst.display().to_string(),
            reason: "cannot replace a directory with a file".to_string(),
        }),
        Ok(_) => std::fs::remove_file(dst).map_err(io(dst)),
        Err(_) => Ok(()),
    }
}

/// Opens a regular file of the source for reading, never through a symlink in its last component (the walk saw
/// a regular file there).
fn open_source(src: &Path) -> std::io::Result<std::fs::File> {
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW)
        .open(src)
}

/// Makes the regular file `dst` with `O_CREAT|O_EXCL` (which never follows a symlink in the last component),
/// owner-only until its mode is set. When something is there already, [`clear_for_file`] removes it (or refuses a
/// directory) and the file is made again: the probe before every file is paid only where something collides.
fn create_fresh(dst: &Path, shown: &str) -> Result<std::fs::File, FileOpError> {
    use std::os::unix::fs::OpenOptionsExt;
    let open = || {
        std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(dst)
    };
    match open() {
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            clear_for_file(dst, shown)?;
            open().map_err(io(dst))
        }
        other => other.map_err(io(dst)),
    }
}

/// Copies all of `from` (to its end, as it is now) into the empty `to` inside the kernel: `copy_file_range`,
/// else `sendfile` (a source on another filesystem than an overlay's upper directory on older kernels), else
/// through a buffer.
/// `no_range` remembers, for the files after, that `copy_file_range` cannot join these two trees.
fn copy_contents(
    from: &std::fs::File,
    to: &std::fs::File,
    no_range: &AtomicBool,
) -> std::io::Result<()> {
    const CHUNK: usize = 1 << 30;
    let mut use_range = !no_range.load(Ordering::Relaxed);
    loop {
        if use_range {
            match rustix::fs::copy_file_range(from, None, to, None, CHUNK) {
                Ok(0) => return Ok(()),
                Ok(_) => continue,
                Err(e)
                    if e == rustix::io::Errno::XDEV
                        || e == rustix::io::Errno::INVAL
                        || e == rustix::io::Errno::NOSYS
                        || e == rustix::io::Errno::OPNOTSUPP =>
                {
                    use_range = false;
                    no_range.store(true, Ordering::Relaxed);
                }
                Err(e) => return Err(e.into()),
            }
        }
        match rustix::fs::sendfile(to, from, None, CHUNK) {
            Ok(0) => return Ok(()),
            Ok(_) => {}
            Err(e) if e == rustix::io::Errno::INVAL || e == rustix::io::Errno::NOSYS => {
                let (mut r, mut w) = (from, to);
                return std::io::copy(&mut r, &mut w).map(|_| ());
            }
            Err(e) => return Err(e.into()),
        }
    }
}

struct Copier<'a> {
    /// The input's .dockerignore, matched against paths relative to the input root.
    ignore: PatternMatcher,
    /// The current source's real path relative to the input root (see [`sources::Source::real`]).
    source_rel: String,
    owner: Option<(u32, u32)>,
    mode: Option<&'a FileMode>,
    exclude: PatternMatcher,
    links: HashMap<(u64, u64), PathBuf>,
    /// The input's files already in place at their destination, and what the clone linked (see
    /// [`super::Reused`]).
    reused: Option<&'a super::Reused>,
    /// The copy's target, against which destinations are looked up among the cloned files.
    target: &'a Path,
    /// Set once `copy_file_range` failed between the source and the target (another filesystem): the files
    /// after go straight to `sendfile`.
    no_range: AtomicBool,
}

/// Runs one copy action into `target`.
pub(super) fn copy(target: &Path, c: &CopyAction, input: &Input) -> Result<(), FileOpError> {
    let src_root = &input.root;
    let wildcard = c.allow_wildcard && c.src.contains(['*', '?', '[']);
    // What .dockerignore excludes is not in the context BuildKit transfers, so no pattern ever sees it and no
    // symlink reaches it: `select` drops it before anything is counted or copied, as it does for the context
    // checksum. Each wildcard match is followed when it is a symlink, as a source named directly is (BuildKit's
    // testCopySymlinks: `COPY sub/l* alllinks/` copies what each link points at, under the link's name).
    let ignore = PatternMatcher::new(&input.ignore)?;
    let sources = sources::select_parents(
        src_root,
        &ignore,
        &c.src,
        wildcard,
        c.follow_symlinks,
        c.parents,
    )?;
    // Directories the copy creates (missing parents, a destination receiving a directory's contents) get mode
    // 0755, or the numeric --chmod's permission bits, and the --chown owner (else the builder's, root); never
    // the source directory's mode or owner (fsutil's MkdirAll, called by Copy and prepareTargetDir).
    let created_mode = match &c.mode {
        Some(FileMode::Octal(m)) => m & 0o777,
        _ => 0o755,
    };
    if sources.is_empty() {
        if wildcard && c.allow_empty_wildcard {
            // A --parents copy is BuildKit's copy of a directory's contents filtered by an include pattern: its
            // destination is made even when nothing matches (testCopyParentsMissingDirectory).
            if c.parents {
                let dest = scoped::resolve(target, &c.dest, true)?;
                let created_owner = match &c.chown {
                    Some(ch) => Some(resolve_chown(target, ch)?),
                    None => None,
                };
                create_dirs(target, &dest, created_mode, true, created_owner)?;
            }
            return Ok(());
        }
        return Err(FileOpError::NotFound(c.src.clone()));
    }
    let dest = scoped::resolve(target, &c.dest, true)?;
    // The destination is a directory when it says so (a trailing `/` or `/.`) or already is one; how many
    // sources or matches there are never changes that (fsutil's Copy, prepareTargetDir): `COPY f*.go foo2.go`
    // makes the file foo2.go (BuildKit's testCopyWildcards) and several files to a non-directory destination
    // overwrite it in turn.
    let dest_named_dir = c.dest.ends_with('/') || c.dest.ends_with("/.");
    let owner = match &c.chown {
        Some(ch) => Some(resolve_chown(target, ch)?),
        None => input.default_owner,
    };
    let mut copier = Copier {
        ignore,
        source_rel: String::new(),
        owner,
        mode: c.mode.as_ref(),
        exclude: PatternMatcher::new(&c.exclude_patterns)?,
        links: HashMap::new(),
        reused: input.reused.as_deref(),
        target,
        no_range: AtomicBool::new(false),
    };
    let created_owner = c.chown.as_ref().map(|_| owner).unwrap_or(None);
    for source in &sources {
        // The name as given (or matched) places the copy and meets --exclude and --parents; the real path meets
        // .dockerignore, as BuildKit filters real paths, and names the files the context checksum listed.
        let (rel, abs) = (&source.name, &source.path);
        copier.source_rel = source.real.clone();
        let meta = std::fs::symlink_metadata(abs).map_err(io(abs))?;
        // With --parents the source's path (after a `/./` pivot, if any) is kept under the destination.
        let kept = if c.parents {
            let skip = c.src.split_once("/./").map_or(0, |(before, _)| {
                clean_path(&format!("/{before}"))
                    .split('/')
                    .filter(|s| !s.is_empty())
                    .count()
            });
            Some(rel.split('/').skip(skip).collect::<Vec<_>>().join("/"))
        } else {
            None
        };
        // The name the source was given, not its symlink target's: `COPY foo /` with foo -> bar makes /foo.
        let name = Path::new(rel.as_str())
            .file_name()
            .or_else(|| abs.file_name())
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        // A directory whose contents are copied is never matched itself: fsutil's Copy prepares the destination
        // and matches the patterns only below the source (BuildKit's testExcludedFilesOnCopy: `ADD --exclude=*
        // dir* /6` makes an empty /6).
        let whole_dir = meta.is_dir() && c.copy_dir_contents;
        if !whole_dir
            && !c.exclude_patterns.is_empty()
            && copier.exclude.matches_or_parent_matches(rel)
        {
            continue;
        }
        if meta.is_dir() && c.copy_dir_contents {
            let into = match &kept {
                Some(k) if !k.is_empty() => dest.join(k),
                _ => dest.clone(),
            };
            // A destination that exists keeps its mode and owner; one made here gets the created directories'.
            // Either way it ends with the source directory's times, as fsutil restores them once the contents
            // are in (copy's restoreFileTimestamp). In a target cloned from this copy's previous result the
            // destination is already what that result made of it, so the same rule gives the same tree.
            create_dirs(
                target,
                &into,
                created_mode,
                c.create_dest_path || kept.is_some(),
                created_owner,
            )?;
            copier.copy_children(abs, &into, "")?;
            attrs::set_times_from(&into, &meta)?;
        } else if c.unpack_archive && meta.is_file() && super::archive::is_tar_archive(abs) {
            // ADD of a local archive: its contents go into the destination, which is a directory.
            let into = match &kept {
                Some(k) if !k.is_empty() => dest.join(k),
                _ => dest.clone(),
            };
            // 0755 whatever --chmod says, as BuildKit's unpack makes the destination.
            create_dirs(target, &into, 0o755, true, created_owner)?;
            super::archive::unpack(abs, &into, created_owner, &c.src, &c.dest)?;
        } else {
            // Looked at for each source in turn: an earlier source may have made the destination a directory.
            let dest_is_dir = dest_named_dir
                || std::fs::metadata(&dest)
                    .map(|m| m.is_dir())
                    .unwrap_or(false);
            let file_dest = match &kept {
                Some(k) => dest.join(k),
                None if dest_is_dir => dest.join(&name),
                None => dest.clone(),
            };
            if let Some(parent) = file_dest.parent() {
                if c.create_dest_path || kept.is_some() || dest_is_dir {
                    create_dirs(target, parent, created_mode, true, created_owner)?;
                }
            }
            copier.copy_entry(abs, &file_dest, &meta, &c.src, &source.real)?;
        }
    }
    Ok(())
}

impl Copier<'_> {
    fn copy_children(
        &mut self,
        src_dir: &Path,
        dst_dir: &Path,
        rel: &str,
    ) -> Result<(), FileOpError> {
        let rd = std::fs::read_dir(src_dir).map_err(io(src_dir))?;
        let mut names: Vec<std::ffi::OsString> = Vec::new();
        for e in rd {
            names.push(e.map_err(io(src_dir))?.file_name());
        }
        names.sort();
        // Plain files (the bulk of a context) are copied in parallel once the rest of the directory is done; their
        // order does not matter (a layer lists entries sorted) and the first error in name order is reported.
        let mut plain: Vec<(PathBuf, PathBuf, std::fs::Metadata, String, String)> = Vec::new();
        for n in names {
            let child_rel = join_rel(rel, &n.to_string_lossy());
            if !self.exclude.is_empty() && self.exclude.matches_or_parent_matches(&child_rel) {
                continue;
            }
            let input_rel = join_rel(&self.source_rel, &child_rel);
            let ignored =
                !self.ignore.is_empty() && self.ignore.matches_or_parent_matches(&input_rel);
            if ignored && !self.ignore.must_walk_excluded_dir(&input_rel) {
                continue;
            }
            let src = src_dir.join(&n);
            let dst = dst_dir.join(&n);
            let meta = std::fs::symlink_metadata(&src).map_err(io(&src))?;
            // An ignored directory walked for its exceptions is made, with its own metadata as any directory
            // copied, only when something under it is re-included.
            if ignored && !(meta.is_dir() && walked_dir_emits(&self.ignore, &src, &input_rel)?) {
                continue;
            }
            if meta.is_dir() {
                self.copy_dir(&src, &dst, &meta, &child_rel)?;
            } else if meta.is_file() && meta.nlink() <= 1 {
                plain.push((src, dst, meta, child_rel, input_rel));
            } else {
                self.copy_entry(&src, &dst, &meta, &child_rel, &input_rel)?;
            }
        }
        let this = &*self;
        let results: Vec<Result<(), FileOpError>> = plain
            .par_iter()
            .map(|(src, dst, meta, shown, input_rel)| {
                this.copy_plain_file(src, dst, meta, shown, input_rel)
            })
            .collect();
        results.into_iter().collect()
    }

    fn copy_dir(
        &mut self,
        src: &Path,
        dst: &Path,
        meta: &std::fs::Metadata,
        rel: &str,
    ) -> Result<(), FileOpError> {
        match std::fs::symlink_metadata(dst) {
            Ok(m) if m.is_dir() => {}
            Ok(_) => {
                std::fs::remove_file(dst).map_err(io(dst))?;
                std::fs::create_dir(dst).map_err(io(dst))?;
            }
            Err(_) => std::fs::create_dir(dst).map_err(io(dst))?,
        }
        self.copy_children(src, dst, rel)?;
        self.finish(src, dst, meta, true)
    }

    fn copy_entry(
        &mut self,
        src: &Path,
        dst: &Path,
        meta: &std::fs::Metadata,
        shown: &str,
        input_rel: &str,
    ) -> Result<(), FileOpError> {
        if meta.is_dir() {
            return self.copy_dir(src, dst, meta, "");
        }
        if meta.is_file() && meta.nlink() <= 1 {
            return self.copy_plain_file(src, dst, meta, shown, input_rel);
        }
        clear_for_file(dst, shown)?;
        let ft = meta.file_type();
        if ft.is_symlink() {
            let link = std::fs::read_link(src).map_err(io(src))?;
            std::os::unix::fs::symlink(&link, dst).map_err(io(dst))?;
            let (uid, gid) = self.owner.unwrap_or((meta.uid(), meta.gid()));
            attrs::set_owner(dst, uid, gid)?;
            return attrs::set_times_from(dst, meta);
        }
        if ft.is_socket() {
            // A socket becomes an empty regular file with its mode, owner and time, as BuildKit's context transfer
            // makes it (its testCopySocket).
            std::fs::File::create(dst).map_err(io(dst))?;
            return self.finish(src, dst, meta, false);
        }
        if ft.is_file() {
            if meta.nlink() > 1 {
                if let Some(first) = self.links.get(&(meta.dev(), meta.ino())) {
                    std::fs::hard_link(first, dst).map_err(io(dst))?;
                    return Ok(());
                }
                self.links
                    .insert((meta.dev(), meta.ino()), dst.to_path_buf());
            }
            std::fs::copy(src, dst).map_err(io(dst))?;
        } else {
            let kind = if ft.is_fifo() {
                rustix::fs::FileType::Fifo
            } else if ft.is_char_device() {
                rustix::fs::FileType::CharacterDevice
            } else {
                rustix::fs::FileType::BlockDevice
            };
            rustix::fs::mknodat(
                rustix::fs::CWD,
                dst,
                kind,
                rustix::fs::Mode::from_raw_mode(meta.mode() & 0o7777),
                meta.rdev(),
            )
            .map_err(|e| io(dst)(e.into()))?;
        }
        self.finish(src, dst, meta, false)
    }

    /// Copies a regular file with no other links: needs only `&self`, so a directory's files go in parallel.
    fn copy_plain_file(
        &self,
        src: &Path,
        dst: &Path,
        meta: &std::fs::Metadata,
        shown: &str,
        input_rel: &str,
    ) -> Result<(), FileOpError> {
        if self.already_in_place(src, dst, meta, input_rel) {
            return Ok(());
        }
        // Everything after the two opens goes through their descriptors: one lookup of each name instead of one
        // walk of the whole destination path (through the overlay) for every attribute set, and no probe of the
        // destination before it is made: `O_EXCL` finds what stands in the way (see `create_fresh`).
        let from = open_source(src).map_err(io(src))?;
        let to = create_fresh(dst, shown)?;
        copy_contents(&from, &to, &self.no_range).map_err(io(dst))?;
        let ((uid, gid), mode) = self.owner_and_mode(meta, false);
        rustix::fs::fchown(
            &to,
            Some(rustix::fs::Uid::from_raw(uid)),
            Some(rustix::fs::Gid::from_raw(gid)),
        )
        .map_err(|e| io(dst)(e.into()))?;
        rustix::fs::fchmod(&to, rustix::fs::Mode::from_raw_mode(mode & 0o7777))
            .map_err(|e| io(dst)(e.into()))?;
        // After the owner: a chown drops a file's `security.capability` (the kernel's killpriv), so xattrs set
        // before it would lose the file's capabilities. BuildKit's copy (fsutil `copier.copy`) runs
        // `copyFileInfo` (owner, mode, times), then `copyXAttrs`.
        attrs::copy_xattrs_fd(&from, &to, src, dst)?;
        attrs::set_times_fd(&to, meta).map_err(io(dst))
    }

    /// Whether `dst` already is what copying `src` would make: the source is among the input's unchanged files
    /// and `dst` is a regular file with the size, owner, mode and time the copy would give it. Only ever true in a
    /// target cloned from the previous result of this copy, whose files are links to that result's (immutable)
    /// files: those are never written in place, only replaced.
    fn already_in_place(
        &self,
        src: &Path,
        dst: &Path,
        meta: &std::fs::Metadata,
        input_rel: &str,
    ) -> bool {
        let Some(reused) = self.reused else {
            return false;
        };
        if !meta.is_file() || meta.nlink() > 1 || !reused.unchanged.contains(input_rel) {
            return false;
        }
        // The clone's record of the destination stands for a stat of it: the file is a link the clone made,
        // and nothing else in this copy writes that path before this check.
        let Some(d) = dst
            .strip_prefix(self.target)
            .ok()
            .and_then(|rel| rel.to_str())
            .and_then(|rel| reused.cloned.get(rel))
        else {
            return false;
        };
        let ((uid, gid), mode) = self.owner_and_mode(meta, false);
        d.size == meta.len()
            && (d.uid, d.gid) == (uid, gid)
            && d.mode == mode
            && d.mtime == (meta.mtime(), meta.mtime_nsec())
            && !attrs::has_xattrs(src)
    }

    /// The owner and mode the copy gives an entry with source metadata `meta` (`--chown`, `--chmod`, else the
    /// source's own).
    fn owner_and_mode(&self, meta: &std::fs::Metadata, is_dir: bool) -> ((u32, u32), u32) {
        let owner = self.owner.unwrap_or((meta.uid(), meta.gid()));
        let mode = match self.mode {
            Some(m) => apply_mode(m, meta.mode(), is_dir),
            None => meta.mode() & 0o7777,
        };
        (owner, mode)
    }

    fn finish(
        &self,
        src: &Path,
        dst: &Path,
        meta: &std::fs::Metadata,
        is_dir: bool,
    ) -> Result<(), FileOpError> {
        let ((uid, gid), mode) = self.owner_and_mode(meta, is_dir);
        attrs::set_owner(dst, uid, gid)?;
        attrs::set_mode(dst, mode)?;
        // After the owner, as in `copy_plain_file`: a chown drops `security.capability`.
        attrs::copy_xattrs(src, dst)?;
        attrs::set_times_from(dst, meta)
    }
}
