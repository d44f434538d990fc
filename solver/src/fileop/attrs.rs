//! Carrying a file's metadata over to its copy: owner, mode, xattrs and times (set last, so writing contents
//! does not disturb them).

use std::os::unix::fs::MetadataExt;
use std::path::Path;

use rustix::fs::{AtFlags, Timestamps, XattrFlags, CWD};

use super::FileOpError;

fn io(path: &Path) -> impl Fn(std::io::Error) -> FileOpError + '_ {
    move |source| FileOpError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Whether `path` carries extended attributes other than overlay's own (unknown counts as yes).
pub fn has_xattrs(path: &Path) -> bool {
    let mut names = vec![0u8; 4096];
    match rustix::fs::llistxattr(path, &mut names[..]) {
        Ok(n) => names[..n].split(|b| *b == 0).any(|n| {
            !n.is_empty() && !n.starts_with(b"trusted.overlay.") && !n.starts_with(b"user.overlay.")
        }),
        Err(rustix::io::Errno::NOTSUP) => false,
        Err(_) => true,
    }
}

/// Copies extended attributes (security.capability among them), except overlay's own.
pub fn copy_xattrs(src: &Path, dst: &Path) -> Result<(), FileOpError> {
    copy_xattrs_with(
        &|names| rustix::fs::llistxattr(src, names),
        &|name, value| rustix::fs::lgetxattr(src, name, value),
        &|name, value| rustix::fs::lsetxattr(dst, name, value, XattrFlags::empty()),
        src,
        dst,
    )
}

/// As [`copy_xattrs`], between two open files (`src` and `dst` name them in errors).
pub fn copy_xattrs_fd(
    from: &std::fs::File,
    to: &std::fs::File,
    src: &Path,
    dst: &Path,
) -> Result<(), FileOpError> {
    copy_xattrs_with(
        &|names| rustix::fs::flistxattr(from, names),
        &|name, value| rustix::fs::fgetxattr(from, name, value),
        &|name, value| rustix::fs::fsetxattr(to, name, value, XattrFlags::empty()),
        src,
        dst,
    )
}

/// The one loop of [`copy_xattrs`] and [`copy_xattrs_fd`], over how each lists, reads and sets an attribute.
fn copy_xattrs_with(
    list: &dyn Fn(&mut [u8]) -> rustix::io::Result<usize>,
    get: &dyn Fn(&str, &mut [u8]) -> rustix::io::Result<usize>,
    set: &dyn Fn(&str, &[u8]) -> rustix::io::Result<()>,
    src: &Path,
    dst: &Path,
) -> Result<(), FileOpError> {
    let mut names = vec![0u8; 4096];
    let n = match list(&mut names[..]) {
        Ok(n) => n,
        Err(rustix::io::Errno::NOTSUP) => return Ok(()),
        Err(e) => return Err(io(src)(e.into())),
    };
    for name in names[..n].split(|b| *b == 0).filter(|n| !n.is_empty()) {
        if name.starts_with(b"trusted.overlay.") || name.starts_with(b"user.overlay.") {
            continue;
        }
        let name = String::from_utf8_lossy(name).into_owned();
        let mut value = vec![0u8; 65536];
        let len = get(name.as_str(), &mut value[..]).map_err(|e| io(src)(e.into()))?;
        match set(name.as_str(), &value[..len]) {
            Ok(()) | Err(rustix::io::Errno::NOTSUP) => {}
            Err(e) => return Err(io(dst)(e.into())),
        }
    }
    Ok(())
}

/// Sets an open file's access and modification times from `meta`.
pub fn set_times_fd(to: &std::fs::File, meta: &std::fs::Metadata) -> std::io::Result<()> {
    let ts = Timestamps {
        last_access: rustix::fs::Timespec {
            tv_sec: meta.atime(),
            tv_nsec: meta.atime_nsec() as _,
        },
        last_modification: rustix::fs::Timespec {
            tv_sec: meta.mtime(),
            tv_nsec: meta.mtime_nsec() as _,
        },
    };
    rustix::fs::futimens(to, &ts).map_err(Into::into)
}

/// Sets owner (without following symlinks).
pub fn set_owner(path: &Path, uid: u32, gid: u32) -> Result<(), FileOpError> {
    std::os::unix::fs::lchown(path, Some(uid), Some(gid)).map_err(io(path))
}

/// Sets permission bits (never on symlinks, whose mode is meaningless on Linux).
pub fn set_mode(path: &Path, mode: u32) -> Result<(), FileOpError> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode & 0o7777)).map_err(io(path))
}

/// Sets access and modification times from `meta` (without following symlinks).
pub fn set_times_from(path: &Path, meta: &std::fs::Metadata) -> Result<(), FileOpError> {
    set_times(
        path,
        meta.atime(),
        meta.atime_nsec(),
        meta.mtime(),
        meta.mtime_nsec(),
    )
}

/// Sets access and modification times (without following symlinks).
pub fn set_times(
    path: &Path,
    atime: i64,
    atime_ns: i64,
    mtime: i64,
    mtime_ns: i64,
) -> Result<(), FileOpError> {
    let ts = Timestamps {
        last_access: rustix::fs::Timespec {
            tv_sec: atime,
            tv_nsec: atime_ns as _,
        },
        last_modification: rustix::fs::Timespec {
            tv_sec: mtime,
            tv_nsec: mtime_ns as _,
        },
    };
    rustix::fs::utimensat(CWD, path, &ts, AtFlags::SYMLINK_NOFOLLOW).map_err(|e| io(path)(e.into()))
}
