//! Overlay mounts of snapshot chains, unmounted when their guard drops.

use std::ffi::CString;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

use rustix::mount::{MountFlags, UnmountFlags};

use super::SnapshotError;

/// The kernel reads overlay options from one page; a chain whose paths do not fit is mounted through short
/// descriptor paths (see [`lowerdir`]), and only past that must be flattened first.
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

    /// Unmounts now, reporting failure (drop does the same silently). A busy mount is retried for up to ~2 s:
    /// CI once saw EBUSY unmounting a COPY's overlay while RUN steps of other stages were starting. The likely
    /// cause: a sandbox process forked at the moment the copy had a file of that overlay open holds a duplicate
    /// of the descriptor until its first instruction closes it, which on two busy cores can be milliseconds later
    /// (the same window once gave ETXTBSY, see the sandbox's `close_all_but`).
    pub fn unmount(mut self) -> Result<(), SnapshotError> {
        self.mounted = false;
        let mut pause = std::time::Duration::from_millis(1);
        let mut waited = std::time::Duration::ZERO;
        loop {
            match rustix::mount::unmount(&self.target, UnmountFlags::empty()) {
                Err(rustix::io::Errno::BUSY) if waited < std::time::Duration::from_secs(2) => {
                    std::thread::sleep(pause);
                    waited += pause;
                    pause = (pause * 2).min(std::time::Duration::from_millis(50));
                }
                other => {
                    return other.map_err(|e| SnapshotError::Io {
                        path: self.target.clone(),
                        source: e.into(),
                    })
                }
            }
        }
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

/// The `lowerdir=` value for `lowers`: their paths when that fits the page the kernel reads options from, else
/// `/proc/self/fd/N` for each, through descriptors held in `held` until the mount is made (about 18 bytes a
/// layer instead of a hundred: deep chains, up to overlayfs's own limit of 500 layers, fit one mount).
fn lowerdir(
    lowers: &[PathBuf],
    budget: usize,
    held: &mut Vec<std::fs::File>,
) -> Result<String, SnapshotError> {
    let plain: Vec<String> = lowers.iter().map(|p| escape(p)).collect();
    let plain = plain.join(":");
    if plain.len() <= budget {
        return Ok(plain);
    }
    let mut short = Vec::with_capacity(lowers.len());
    for l in lowers {
        use std::os::fd::AsRawFd;
        use std::os::unix::fs::OpenOptionsExt;
        let f = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_PATH | libc::O_DIRECTORY)
            .open(l)
            .map_err(|source| SnapshotError::Io {
                path: l.clone(),
                source,
            })?;
        short.push(format!("/proc/self/fd/{}", f.as_raw_fd()));
        held.push(f);
    }
    Ok(short.join(":"))
}

/// Mounts `lowers` (top first) with a writable `upper`.
pub fn mount(
    lowers: &[PathBuf],
    upper: &Path,
    work: &Path,
    target: &Path,
) -> Result<Mounted, SnapshotError> {
    let rest = format!(",upperdir={},workdir={}", escape(upper), escape(work));
    let mut held = Vec::new();
    let lower = lowerdir(
        lowers,
        MAX_LOWER_DATA.saturating_sub(rest.len() + ",volatile".len() + "lowerdir=".len()),
        &mut held,
    )?;
    let options = format!("lowerdir={lower}{rest}");
    if VOLATILE_REFUSED.load(Ordering::Relaxed) {
        return do_mount(target, options);
    }
    match do_mount(target, format!("{options},volatile")) {
        Err(SnapshotError::Mount { source, .. })
            if source.raw_os_error() == Some(rustix::io::Errno::INVAL.raw_os_error()) =>
        {
            VOLATILE_REFUSED.store(true, Ordering::Relaxed);
            do_mount(target, options)
        }
        other => other,
    }
}

/// Writable overlays are mounted `volatile` (Linux 5.10+; buildah's `fsync=volatile`): a step's own fsyncs and the
/// sync of the whole upper filesystem at unmount are skipped. A step's result becomes durable only when its
/// snapshot is committed (`sync_tree` of its diff, then `meta.json` and the renames), and a step cut short is
/// thrown away, so nothing a crash could leave behind depends on those syncs; what they cost did count — an
/// `apt-get install` fsyncs every file it unpacks, and each unmount flushed the disk. Set once a kernel refuses
/// the option (EINVAL), so later mounts do not try it again.
pub(super) static VOLATILE_REFUSED: AtomicBool = AtomicBool::new(false);

/// Mounts `lowers` (top first, at least two) read-only.
pub fn mount_lower_only(lowers: &[PathBuf], target: &Path) -> Result<Mounted, SnapshotError> {
    let mut held = Vec::new();
    let lower = lowerdir(lowers, MAX_LOWER_DATA - "lowerdir=".len(), &mut held)?;
    do_mount(target, format!("lowerdir={lower}"))
}
