//! A COPY from the build context that runs again because some of its files changed starts from its previous
//! result instead of from nothing: that snapshot's tree is cloned into the new one (directories made, files
//! hard-linked — no data is written), and the copy then replaces only the files whose content changed. On a
//! 20,000-file context with one file changed this turns a full rewrite of the context into one file's.
//!
//! It is safe because snapshots are immutable once committed and the copy never writes a destination file in
//! place (it unlinks, then creates), so the linked inodes are only ever read. It applies only when the previous
//! record is the same op over the same inputs and selects the same paths (only contents changed), and when the
//! previous tree holds nothing but directories, regular files and symlinks without overlay markers (no
//! whiteouts, no opaque directories): anything else is copied the ordinary way.

use std::collections::{HashMap, HashSet};
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use crate::cache::KeyParts;
use crate::fileop::{self, ClonedFile, FileOpError};
use crate::llb::{FileAction, FileOp};
use rayon::prelude::*;
use rustix::fs::{AtFlags, Mode, OFlags};

/// What a re-run COPY can start from.
pub(super) struct Reuse {
    /// The previous result's tree (its snapshot's diff directory).
    pub from: PathBuf,
    /// Context paths whose content is unchanged since that result.
    pub unchanged: HashSet<String>,
}

/// The reuse open to `f` (with key parts `now`) given the slot's previous record (`prev`, its listing filled in)
/// whose result is the tree `prev_diff`.
pub(super) fn plan(f: &FileOp, now: &KeyParts, prev: &KeyParts, prev_diff: &Path) -> Option<Reuse> {
    let [FileAction::Copy(_)] = f.actions.as_slice() else {
        return None;
    };
    if prev.op != now.op || prev.inputs != now.inputs || now.files.is_empty() {
        return None;
    }
    if prev.files.len() != now.files.len() || !prev.files.keys().eq(now.files.keys()) {
        return None;
    }
    // The same paths, directories included (`dir/`): a removed file or directory would otherwise survive in the
    // clone.
    let unchanged: HashSet<String> = now
        .files
        .iter()
        .filter(|(k, d)| !k.ends_with('/') && prev.files.get(*k) == Some(*d))
        .map(|(k, _)| k.clone())
        .collect();
    if unchanged.is_empty() || !prev_diff.is_dir() {
        return None;
    }
    Some(Reuse {
        from: prev_diff.to_path_buf(),
        unchanged,
    })
}

/// Whether `dir` holds only what [`clone_tree`] can reproduce exactly.
pub(super) fn clonable(dir: &Path) -> bool {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return false;
    };
    if has_overlay_marker(dir) {
        return false;
    }
    for e in rd {
        let Ok(e) = e else { return false };
        let Ok(ft) = e.file_type() else { return false };
        if ft.is_dir() {
            if !clonable(&e.path()) {
                return false;
            }
        } else if !(ft.is_file() || ft.is_symlink()) || ft.is_char_device() {
            return false;
        }
    }
    true
}

fn has_overlay_marker(dir: &Path) -> bool {
    let mut v = [0u8; 8];
    [
        "trusted.overlay.opaque",
        "user.overlay.opaque",
        "trusted.overlay.redirect",
    ]
    .iter()
    .any(|n| rustix::fs::lgetxattr(dir, *n, &mut v[..]).is_ok())
}

/// Recreates `from` (a previous result of the same copy) under `to`: directories made with their metadata,
/// symlinks remade, regular files hard-linked (the snapshot they come from is immutable, and the copy replaces a
/// file it changes rather than writing into it). Returns the linked files' metadata by path relative to `to`,
/// which is the destinations' metadata too (a link shares the inode), so the copy's skip check need not stat
/// each destination again through the overlay. Links are made relative to open directories, and sibling
/// directories are cloned in parallel: on 20,000 files this is most of what re-running the copy costs.
pub(super) fn clone_tree(
    from: &Path,
    to: &Path,
) -> Result<HashMap<String, ClonedFile>, FileOpError> {
    Ok(clone_dir(from, to, "")?.into_iter().collect())
}

fn clone_dir(from: &Path, to: &Path, rel: &str) -> Result<Vec<(String, ClonedFile)>, FileOpError> {
    let io = |p: &Path| {
        let p = p.to_path_buf();
        move |source: std::io::Error| FileOpError::Io { path: p, source }
    };
    let open = |p: &Path| {
        rustix::fs::open(
            p,
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC | OFlags::NOFOLLOW,
            Mode::empty(),
        )
        .map_err(|e| io(p)(e.into()))
    };
    let (src_fd, dst_fd) = (open(from)?, open(to)?);
    let mut files = Vec::new();
    let mut dirs = Vec::new();
    for e in std::fs::read_dir(from).map_err(io(from))? {
        let e = e.map_err(io(from))?;
        let name = e.file_name();
        let meta = e.metadata().map_err(io(&from.join(&name)))?;
        let child = match rel {
            "" => name.to_string_lossy().into_owned(),
            _ => format!("{rel}/{}", name.to_string_lossy()),
        };
        if meta.is_dir() {
            rustix::fs::mkdirat(&dst_fd, &name, Mode::from_raw_mode(0o700))
                .map_err(|e| io(&to.join(&name))(e.into()))?;
            dirs.push((name, meta, child));
        } else if meta.file_type().is_symlink() {
            let target = rustix::fs::readlinkat(&src_fd, &name, Vec::new())
                .map_err(|e| io(&from.join(&name))(e.into()))?;
            rustix::fs::symlinkat(target.as_c_str(), &dst_fd, &name)
                .map_err(|e| io(&to.join(&name))(e.into()))?;
            let dst = to.join(&name);
            fileop::set_owner(&dst, meta.uid(), meta.gid())?;
            fileop::set_times_from(&dst, &meta)?;
        } else {
            rustix::fs::linkat(&src_fd, &name, &dst_fd, &name, AtFlags::empty())
                .map_err(|e| io(&to.join(&name))(e.into()))?;
            files.push((child, ClonedFile::of(&meta)));
        }
    }
    let nested: Result<Vec<Vec<(String, ClonedFile)>>, FileOpError> = dirs
        .into_par_iter()
        .map(|(name, meta, child)| {
            let (src, dst) = (from.join(&name), to.join(&name));
            let inner = clone_dir(&src, &dst, &child)?;
            fileop::copy_xattrs(&src, &dst)?;
            fileop::set_owner(&dst, meta.uid(), meta.gid())?;
            fileop::set_mode(&dst, meta.mode())?;
            fileop::set_times_from(&dst, &meta)?;
            Ok(inner)
        })
        .collect();
    for mut n in nested? {
        files.append(&mut n);
    }
    Ok(files)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cloned_tree_links_files_and_keeps_directory_metadata() {
        let d = tempfile::tempdir().unwrap();
        let from = d.path().join("from");
        std::fs::create_dir_all(from.join("app/sub")).unwrap();
        std::fs::write(from.join("app/sub/f"), "data").unwrap();
        std::os::unix::fs::symlink("sub/f", from.join("app/link")).unwrap();
        std::fs::set_permissions(
            from.join("app/sub"),
            std::os::unix::fs::PermissionsExt::from_mode(0o700),
        )
        .unwrap();
        assert!(clonable(&from));
        let to = d.path().join("to");
        std::fs::create_dir(&to).unwrap();
        let cloned = clone_tree(&from, &to).unwrap();
        assert_eq!(
            cloned.keys().map(String::as_str).collect::<Vec<_>>(),
            ["app/sub/f"],
            "only regular files are listed"
        );
        assert_eq!(cloned["app/sub/f"].size, 4);
        let a = std::fs::metadata(from.join("app/sub/f")).unwrap();
        let b = std::fs::metadata(to.join("app/sub/f")).unwrap();
        assert_eq!((a.dev(), a.ino()), (b.dev(), b.ino()), "a link, not a copy");
        assert_eq!(
            std::fs::read_link(to.join("app/link")).unwrap(),
            PathBuf::from("sub/f")
        );
        let m = std::fs::metadata(to.join("app/sub")).unwrap();
        assert_eq!(m.mode() & 0o7777, 0o700);
        assert_eq!(
            m.mtime(),
            std::fs::metadata(from.join("app/sub")).unwrap().mtime()
        );

        // A tree with overlay markers is not cloned.
        let fifo = d.path().join("fifo-tree");
        std::fs::create_dir(&fifo).unwrap();
        rustix::fs::mknodat(
            rustix::fs::CWD,
            fifo.join("p"),
            rustix::fs::FileType::Fifo,
            rustix::fs::Mode::from_raw_mode(0o644),
            0,
        )
        .unwrap();
        assert!(!clonable(&fifo));
    }
}
