//! Layer apply: a gzip or plain layer tar (recognised by its first bytes) streamed onto a directory. Names that
//! are absolute or climb with `..` are refused, parents are resolved inside the target (a symlinked parent can
//! never lead outside), hardlinks must point inside; owners, modes, times, xattrs and device nodes are kept.

use std::io::{BufRead, BufReader, Read};
use std::os::unix::fs::PermissionsExt;
use std::path::{Component, Path, PathBuf};

use crate::readahead::read_ahead;
use crate::scoped::{self, ScopedError};
use crate::writeback;

/// How OCI whiteouts are applied.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Whiteouts {
    /// As overlayfs expects in an upper/lower directory: `.wh.NAME` → a 0/0 character device, `.wh..wh..opq` → the
    /// `trusted.overlay.opaque=y` xattr. For layers kept as snapshot layers.
    Overlay,
    /// By deleting what they hide: for flattening layers onto one plain directory.
    Delete,
}

/// Why a layer could not be applied.
#[derive(Debug, thiserror::Error)]
pub enum LayerError {
    /// The tar stream is malformed (bad checksum, truncated, bad gzip).
    #[error("layer tar is unreadable: {0}")]
    Malformed(std::io::Error),
    /// An entry would write outside the target.
    #[error("layer entry {entry:?} is refused: {reason}")]
    Unsafe {
        /// The entry's name.
        entry: String,
        /// Why.
        reason: String,
    },
    /// Writing an entry failed.
    #[error("layer entry {entry:?}: {source}")]
    Write {
        /// The entry's name.
        entry: String,
        /// The cause.
        source: std::io::Error,
    },
    /// Resolution inside the target failed.
    #[error(transparent)]
    Scoped(#[from] ScopedError),
}

/// What was applied.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ApplyStats {
    /// Tar entries processed.
    pub entries: u64,
    /// Bytes of file content written.
    pub bytes: u64,
}

fn clean_name(raw: &Path) -> Result<Option<PathBuf>, String> {
    let mut out = PathBuf::new();
    for c in raw.components() {
        match c {
            Component::Normal(s) => out.push(s),
            Component::CurDir => {}
            Component::RootDir | Component::Prefix(_) => {
                return Err("absolute names are not allowed".to_string())
            }
            Component::ParentDir => return Err("names may not contain '..'".to_string()),
        }
    }
    Ok(if out.as_os_str().is_empty() {
        None
    } else {
        Some(out)
    })
}

/// Applies one layer read from `input` onto `target`. A compressed layer is decompressed on a second thread, ahead
/// of the files being made: the two stages then cost about the larger, not their sum (a Debian base's 62 MB gzip
/// layer: ~0.3 s of inflating beside ~0.5 s of making files).
pub fn apply_layer(
    input: impl Read + Send,
    target: &Path,
    whiteouts: Whiteouts,
) -> Result<ApplyStats, LayerError> {
    apply_layer_owned(input, target, whiteouts, None)
}

/// As [`apply_layer`], every entry given the owner `owner` (uid, gid) instead of its own when one is named:
/// `ADD --chown` of a local archive, which BuildKit applies to the unpacked entries (its
/// `testDockerfileAddChownArchive`). Directories the archive only implies keep being made as root's.
pub fn apply_layer_owned(
    input: impl Read + Send,
    target: &Path,
    whiteouts: Whiteouts,
    owner: Option<(u32, u32)>,
) -> Result<ApplyStats, LayerError> {
    let mut buffered = BufReader::with_capacity(256 * 1024, input);
    let head = buffered.fill_buf().map_err(LayerError::Malformed)?;
    if head.starts_with(&[0x1f, 0x8b]) {
        let inflated = flate2::read::MultiGzDecoder::new(buffered);
        read_ahead(inflated, |r| apply_tar(r, target, whiteouts, owner))
    } else if head.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
        let inflated =
            zstd::stream::read::Decoder::with_buffer(buffered).map_err(LayerError::Malformed)?;
        read_ahead(inflated, |r| apply_tar(r, target, whiteouts, owner))
    } else {
        apply_tar(buffered, target, whiteouts, owner)
    }
}

/// Applies the entries of an uncompressed layer tar.
fn apply_tar(
    reader: impl Read,
    target: &Path,
    whiteouts: Whiteouts,
    over: Option<(u32, u32)>,
) -> Result<ApplyStats, LayerError> {
    let mut archive = tar::Archive::new(reader);
    let mut stats = ApplyStats::default();
    let mut dir_times: Vec<(PathBuf, u64)> = Vec::new();
    let mut last_parent: Option<(String, PathBuf)> = None;
    for entry in archive.entries().map_err(LayerError::Malformed)? {
        let mut entry = entry.map_err(LayerError::Malformed)?;
        stats.entries += 1;
        let raw = entry.path().map_err(LayerError::Malformed)?.into_owned();
        let shown = raw.display().to_string();
        let unsafe_entry = |reason: String| LayerError::Unsafe {
            entry: shown.clone(),
            reason,
        };
        let Some(name) = clean_name(&raw).map_err(unsafe_entry)? else {
            continue;
        };
        let file_name = name
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let parent_rel = name
            .parent()
            .map(|p| p.to_string_lossy().into_owned())
            .unwrap_or_default();
        let write_err = |source: std::io::Error| LayerError::Write {
            entry: shown.clone(),
            source,
        };
        // A layer lists a directory's entries one after another: its parent is resolved (a symlink check of
        // every component, each a walk from the root) and made once for the run, not for every entry. Nothing an
        // entry does inside the directory changes where the directory itself resolves.
        let parent = match &last_parent {
            Some((rel, resolved)) if *rel == parent_rel => resolved.clone(),
            _ => {
                let resolved = scoped::resolve(target, &parent_rel, true)?;
                std::fs::create_dir_all(&resolved).map_err(write_err)?;
                last_parent = Some((parent_rel.clone(), resolved.clone()));
                resolved
            }
        };
        if file_name == ".wh..wh..opq" {
            match whiteouts {
                Whiteouts::Overlay => rustix::fs::setxattr(
                    &parent,
                    "trusted.overlay.opaque",
                    b"y",
                    rustix::fs::XattrFlags::empty(),
                )
                .map_err(|e| write_err(e.into()))?,
                Whiteouts::Delete => {
                    for child in std::fs::read_dir(&parent).map_err(write_err)? {
                        let p = child.map_err(write_err)?.path();
                        remove_any(&p).map_err(write_err)?;
                    }
                }
            }
            continue;
        }
        if let Some(hidden) = file_name.strip_prefix(".wh.") {
            // `.wh.` alone, `.wh..` and `.wh...` would hide the directory itself or its parent: refused, as
            // containerd refuses them, so that no whiteout reaches outside the directory that holds it.
            if matches!(hidden, "" | "." | "..") || hidden.contains('/') {
                return Err(unsafe_entry(format!(
                    "the whiteout hides {hidden:?}, which is not a name inside its directory"
                )));
            }
            let victim = parent.join(hidden);
            match whiteouts {
                Whiteouts::Overlay => {
                    let _ = remove_any(&victim);
                    rustix::fs::mknodat(
                        rustix::fs::CWD,
                        &victim,
                        rustix::fs::FileType::CharacterDevice,
                        rustix::fs::Mode::empty(),
                        0,
                    )
                    .map_err(|e| write_err(e.into()))?;
                }
                Whiteouts::Delete => match remove_any(&victim) {
                    Ok(()) => {}
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                    Err(e) => return Err(write_err(e)),
                },
            }
            continue;
        }
        let dest = parent.join(&file_name);
        let header = entry.header().clone();
        let kind = header.entry_type();
        let mode = header.mode().map_err(LayerError::Malformed)? & 0o7777;
        let regular = matches!(kind, tar::EntryType::Regular | tar::EntryType::Continuous);
        // A regular file is made with O_EXCL, which finds what stands in its way itself (see `create_fresh`).
        if !kind.is_dir() && !regular && std::fs::symlink_metadata(&dest).is_ok() {
            remove_any(&dest).map_err(write_err)?;
        }
        match kind {
            tar::EntryType::Directory => {
                match std::fs::symlink_metadata(&dest) {
                    Ok(m) if m.is_dir() => {}
                    Ok(_) => {
                        std::fs::remove_file(&dest).map_err(write_err)?;
                        std::fs::create_dir(&dest).map_err(write_err)?;
                    }
                    Err(_) => std::fs::create_dir(&dest).map_err(write_err)?,
                }
                dir_times.push((dest.clone(), header.mtime().unwrap_or(0)));
            }
            tar::EntryType::Regular | tar::EntryType::Continuous => {
                let mut f = create_fresh(&dest).map_err(write_err)?;
                let size = entry.size();
                writeback::copy_through(&mut entry, &mut f, size).map_err(LayerError::Malformed)?;
                stats.bytes += size;
                // Owner, mode, attributes and time through the open file: no path walk for each.
                for (name, value) in xattrs(&mut entry) {
                    let _ =
                        rustix::fs::fsetxattr(&f, &name, &value, rustix::fs::XattrFlags::empty());
                }
                let (uid, gid) = owner(&header, over);
                let _ = rustix::fs::fchown(&f, Some(uid), Some(gid));
                rustix::fs::fchmod(&f, rustix::fs::Mode::from_raw_mode(mode))
                    .map_err(|e| write_err(e.into()))?;
                let _ = rustix::fs::futimens(&f, &timestamps(header.mtime().unwrap_or(0)));
                continue;
            }
            tar::EntryType::Symlink => {
                let link = header
                    .link_name()
                    .map_err(LayerError::Malformed)?
                    .ok_or_else(|| unsafe_entry("symlink without a target".to_string()))?;
                std::os::unix::fs::symlink(&*link, &dest).map_err(write_err)?;
            }
            tar::EntryType::Link => {
                let link = header
                    .link_name()
                    .map_err(LayerError::Malformed)?
                    .ok_or_else(|| unsafe_entry("hardlink without a target".to_string()))?;
                let link_rel =
                    clean_name(&link).map_err(|r| unsafe_entry(format!("hardlink target: {r}")))?;
                let Some(link_rel) = link_rel else {
                    return Err(unsafe_entry("hardlink to the root".to_string()));
                };
                let source = scoped::resolve(target, &link_rel.to_string_lossy(), false)?;
                if !source.starts_with(target) {
                    return Err(unsafe_entry(
                        "hardlink target outside the layer".to_string(),
                    ));
                }
                std::fs::hard_link(&source, &dest).map_err(write_err)?;
                continue;
            }
            tar::EntryType::Char | tar::EntryType::Block | tar::EntryType::Fifo => {
                let ft = match kind {
                    tar::EntryType::Char => rustix::fs::FileType::CharacterDevice,
                    tar::EntryType::Block => rustix::fs::FileType::BlockDevice,
                    _ => rustix::fs::FileType::Fifo,
                };
                let major = header.device_major().ok().flatten().unwrap_or(0);
                let minor = header.device_minor().ok().flatten().unwrap_or(0);
                let dev = rustix::fs::makedev(major, minor);
                rustix::fs::mknodat(
                    rustix::fs::CWD,
                    &dest,
                    ft,
                    rustix::fs::Mode::from_raw_mode(mode),
                    dev,
                )
                .map_err(|e| write_err(e.into()))?;
            }
            tar::EntryType::XGlobalHeader | tar::EntryType::XHeader => continue,
            other => return Err(unsafe_entry(format!("unsupported entry type {other:?}"))),
        }
        for (name, value) in xattrs(&mut entry) {
            let _ = rustix::fs::lsetxattr(&dest, &name, &value, rustix::fs::XattrFlags::empty());
        }
        let (uid, gid) = owner(&header, over);
        let _ = rustix::fs::chownat(
            rustix::fs::CWD,
            &dest,
            Some(uid),
            Some(gid),
            rustix::fs::AtFlags::SYMLINK_NOFOLLOW,
        );
        if kind != tar::EntryType::Symlink {
            std::fs::set_permissions(&dest, std::fs::Permissions::from_mode(mode))
                .map_err(write_err)?;
        }
        if !kind.is_dir() {
            set_mtime(&dest, header.mtime().unwrap_or(0));
        }
    }
    // Directory times last: creating their contents changed them.
    for (dir, mtime) in dir_times.into_iter().rev() {
        set_mtime(&dir, mtime);
    }
    Ok(stats)
}

/// Makes a regular file where nothing may stand: `O_CREAT|O_EXCL` (which never follows a symlink in the last
/// component) and, when something is there already — a file of a lower layer, a symlink, a directory — that is
/// removed and the file made again. Owner-only until its mode is set.
fn create_fresh(dest: &Path) -> std::io::Result<std::fs::File> {
    use std::os::unix::fs::OpenOptionsExt;
    let open = || {
        std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(dest)
    };
    match open() {
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            remove_any(dest)?;
            open()
        }
        other => other,
    }
}

/// The entry's extended attributes (PAX `SCHILY.xattr.*` records).
fn xattrs<R: Read>(entry: &mut tar::Entry<'_, R>) -> Vec<(String, Vec<u8>)> {
    let Ok(Some(exts)) = entry.pax_extensions() else {
        return Vec::new();
    };
    exts.flatten()
        .filter_map(|ext| {
            let name = ext.key().ok()?.strip_prefix("SCHILY.xattr.")?.to_string();
            Some((name, ext.value_bytes().to_vec()))
        })
        .collect()
}

/// The entry's owner, or `over` when one is imposed.
fn owner(header: &tar::Header, over: Option<(u32, u32)>) -> (rustix::fs::Uid, rustix::fs::Gid) {
    let (uid, gid) = over.unwrap_or((
        header.uid().unwrap_or(0) as u32,
        header.gid().unwrap_or(0) as u32,
    ));
    (
        rustix::fs::Uid::from_raw(uid),
        rustix::fs::Gid::from_raw(gid),
    )
}

fn timestamps(mtime: u64) -> rustix::fs::Timestamps {
    let t = rustix::fs::Timespec {
        tv_sec: mtime as i64,
        tv_nsec: 0,
    };
    rustix::fs::Timestamps {
        last_access: t,
        last_modification: t,
    }
}

fn set_mtime(path: &Path, mtime: u64) {
    let _ = rustix::fs::utimensat(
        rustix::fs::CWD,
        path,
        &timestamps(mtime),
        rustix::fs::AtFlags::SYMLINK_NOFOLLOW,
    );
}

/// Removes `p`, a whole tree when it is a directory, without ever crossing a mount point: a layer applied onto a
/// directory that holds mounts (a snapshot of a running build, a cache mount) must not empty what is mounted
/// there. A mount point met on the way is an error, and what lies beyond it stays.
fn remove_any(p: &Path) -> std::io::Result<()> {
    let md = std::fs::symlink_metadata(p)?;
    if !md.is_dir() {
        return std::fs::remove_file(p);
    }
    let parent = p.parent().unwrap_or(Path::new("/"));
    let mount = mount_of(parent)?;
    remove_dir_within(p, mount)
}

/// The mount a path lies on: its device and, where the kernel tells it (statx, Linux 5.8), its mount id, which
/// also tells apart bind mounts of one filesystem.
fn mount_of(p: &Path) -> std::io::Result<(u32, u32, Option<u64>)> {
    use rustix::fs::{AtFlags, StatxFlags};
    let st = rustix::fs::statx(
        rustix::fs::CWD,
        p,
        AtFlags::SYMLINK_NOFOLLOW,
        StatxFlags::BASIC_STATS | StatxFlags::MNT_ID,
    )?;
    let id = (st.stx_mask & StatxFlags::MNT_ID.bits() != 0).then_some(st.stx_mnt_id);
    Ok((st.stx_dev_major, st.stx_dev_minor, id))
}

fn remove_dir_within(dir: &Path, mount: (u32, u32, Option<u64>)) -> std::io::Result<()> {
    if mount_of(dir)? != mount {
        return Err(std::io::Error::other(format!(
            "{} is a mount point: nothing is removed across one",
            dir.display()
        )));
    }
    for child in std::fs::read_dir(dir)? {
        let path = child?.path();
        if std::fs::symlink_metadata(&path)?.is_dir() {
            remove_dir_within(&path, mount)?;
        } else {
            std::fs::remove_file(&path)?;
        }
    }
    std::fs::remove_dir(dir)
}

#[cfg(test)]
#[path = "tests.rs"]
mod tests;
