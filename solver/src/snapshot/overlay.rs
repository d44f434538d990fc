//! Overlay mounts of snapshot chains, unmounted when their guard drops.

use std::ffi::CString;
use std::path::{Path, PathBuf};

use rustix::mount::{MountFlags, UnmountFlags};

use super::SnapshotError;

/// The kernel reads overlay options from one page; longer lowerdir lists must be flattened first.
pub const MAX_LOWER_DATA: usize = 4000;

/// A mounted overlay; dropping it unmounts (lazily, if something still holds it).
#[derive(Debug)]
pub struct Mounted {
    target: PathBuf,
    mounted: bool,
}

impl Mounted {
    /// Where it is mounted.
    pub fn path(&self) -> &Path {
        &self.target
    }

    /// Unmounts now, reporting failure (drop does the same silently).
    pub fn unmount(mut self) -> Result<(), SnapshotError> {
        self.mounted = false;
        rustix::mount::unmount(&self.target, UnmountFlags::empty()).map_err(|e| SnapshotError::Io {
            path: self.target.clone(),
            source: e.into(),
        })
    }
}

impl Drop for Mounted {
    fn drop(&mut self) {
        if self.mounted {
            let _ = rustix::mount::unmount(&self.target, UnmountFlags::DETACH);
        }
    }
}

fn escape(p: &Path) -> String {
    // Overlay option values use `,` and `:` as separators; escape them as the kernel expects.
    p.display()
        .to_string()
        .replace('\\', "\\\\")
        .replace(',', "\\,")
        .replace(':', "\\:")
}

fn do_mount(target: &Path, options: String) -> Result<Mounted, SnapshotError> {
    if options.len() > MAX_LOWER_DATA {
        return Err(SnapshotError::ChainTooDeep(
            options.matches(':').count() + 1,
        ));
    }
    let data = CString::new(options.clone()).map_err(|e| SnapshotError::Io {
        path: target.to_path_buf(),
        source: std::io::Error::other(e),
    })?;
    rustix::mount::mount(
        "overlay",
        target,
        "overlay",
        MountFlags::empty(),
        Some(data.as_c_str()),
    )
    .map_err(|e| SnapshotError::Mount {
        target: target.to_path_buf(),
        options,
        source: e.into(),
    })?;
    Ok(Mounted {
        target: target.to_path_buf(),
        mounted: true,
    })
}

/// Mounts `lowers` (top first) with a writable `upper`.
pub fn mount(
    lowers: &[PathBuf],
    upper: &Path,
    work: &Path,
    target: &Path,
) -> Result<Mounted, SnapshotError> {
    let lowerdir: Vec<String> = lowers.iter().map(|p| escape(p)).collect();
    let options = format!(
        "lowerdir={},upperdir={},workdir={}",
        lowerdir.join(":"),
        escape(upper),
        escape(work)
    );
    do_mount(target, options)
}

/// Mounts `lowers` (top first, at least two) read-only.
pub fn mount_lower_only(lowers: &[PathBuf], target: &Path) -> Result<Mounted, SnapshotError> {
    let lowerdir: Vec<String> = lowers.iter().map(|p| escape(p)).collect();
    do_mount(target, format!("lowerdir={}", lowerdir.join(":")))
}
