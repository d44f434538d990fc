//! Rootless kiln: run by an ordinary user, kiln first moves itself into a user namespace of its own (and a mount
//! namespace owned by it) in which it is root: overlay mounts, chown inside the store and the sandbox's
//! namespaces then work as they do for root, while the host sees only the user. The mapping is the user's
//! `/etc/subuid` and `/etc/subgid` ranges through `newuidmap`/`newgidmap` when both exist (ids 1..=N inside map
//! to the range, so images with several owners unpack), else the user's own id alone (mapped to 0; files owned by
//! others in an image then cannot be given their owners). This must happen while kiln is single-threaded.

use std::io::Write;
use std::process::{Command, Stdio};

const MARK: &str = "KILN_ROOTLESS";

/// Whether this kiln runs rootless (it entered its user namespace, or was started inside one by a rootless kiln).
pub fn active() -> bool {
    std::env::var_os(MARK).is_some()
}

/// `name:start:count` (or `uid:start:count`) of the user in `file`.
fn subordinate(file: &str, name: &str, id: u32) -> Option<(u32, u32)> {
    let text = std::fs::read_to_string(file).ok()?;
    text.lines().find_map(|l| {
        let mut f = l.split(':');
        let who = f.next()?;
        if who != name && who.parse::<u32>().ok() != Some(id) {
            return None;
        }
        Some((
            f.next()?.trim().parse().ok()?,
            f.next()?.trim().parse().ok()?,
        ))
    })
}

fn user_name(uid: u32) -> String {
    std::fs::read_to_string("/etc/passwd")
        .ok()
        .and_then(|t| {
            t.lines().find_map(|l| {
                let f: Vec<&str> = l.split(':').collect();
                (f.len() > 2 && f[2].parse::<u32>().ok() == Some(uid)).then(|| f[0].to_string())
            })
        })
        .unwrap_or_default()
}

fn on_path(tool: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|p| std::env::split_paths(&p).any(|d| d.join(tool).is_file()))
}

fn unshare() -> Result<(), String> {
    // SAFETY: unshare on the calling (only) thread.
    if unsafe { libc::unshare(libc::CLONE_NEWUSER | libc::CLONE_NEWNS) } != 0 {
        return Err(format!(
            "cannot make a user namespace ({}); rootless kiln needs unprivileged user namespaces (sysctl kernel.unprivileged_userns_clone=1 or user.max_user_namespaces > 0)",
            std::io::Error::last_os_error()
        ));
    }
    Ok(())
}

/// Why kiln could not enter a user namespace of its own (what failed, in words).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct RootlessError(String);

/// Moves an ordinary user's kiln into a user namespace of its own where it is root (see the module); a no-op for
/// root and inside a rootless kiln. Must run while the process is single-threaded.
pub fn enter() -> Result<(), RootlessError> {
    enter_namespace().map_err(RootlessError)
}

fn enter_namespace() -> Result<(), String> {
    // SAFETY: plain id queries.
    let (uid, gid) = unsafe { (libc::geteuid(), libc::getegid()) };
    if uid == 0 || active() {
        return Ok(());
    }
    let name = user_name(uid);
    let ranges = match (
        subordinate("/etc/subuid", &name, uid),
        subordinate("/etc/subgid", &name, uid),
    ) {
        (Some(u), Some(g)) if on_path("newuidmap") && on_path("newgidmap") => Some((u, g)),
        _ => None,
    };
    match ranges {
        Some(((us, uc), (gs, gc))) => {
            // The mapping must be written from outside the new namespace: a helper started before it waits for
            // the word, then maps this process.
            let script = r#"read _ && newuidmap "$0" 0 "$1" 1 1 "$2" "$3" && newgidmap "$0" 0 "$4" 1 1 "$5" "$6""#;
            let mut helper = Command::new("sh")
                .arg("-c")
                .arg(script)
                .args([std::process::id(), uid, us, uc, gid, gs, gc].map(|n| n.to_string()))
                .stdin(Stdio::piped())
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .spawn()
                .map_err(|e| format!("cannot start newuidmap: {e}"))?;
            unshare()?;
            if let Some(mut w) = helper.stdin.take() {
                let _ = w.write_all(b"go\n");
            }
            let out = helper
                .wait_with_output()
                .map_err(|e| format!("newuidmap: {e}"))?;
            if !out.status.success() {
                return Err(format!(
                    "mapping the ids of /etc/subuid and /etc/subgid failed: {}",
                    String::from_utf8_lossy(&out.stderr).trim()
                ));
            }
        }
        None => {
            unshare()?;
            for (file, text) in [
                ("/proc/self/setgroups", "deny".to_string()),
                ("/proc/self/uid_map", format!("0 {uid} 1")),
                ("/proc/self/gid_map", format!("0 {gid} 1")),
            ] {
                std::fs::write(file, text).map_err(|e| format!("{file}: {e}"))?;
            }
        }
    }
    // SAFETY: makes every mount of the new namespace private, so nothing kiln mounts reaches the host.
    let r = unsafe {
        libc::mount(
            std::ptr::null(),
            c"/".as_ptr(),
            std::ptr::null(),
            libc::MS_REC | libc::MS_PRIVATE,
            std::ptr::null(),
        )
    };
    if r != 0 {
        return Err(format!(
            "cannot make the mounts of kiln's namespace private: {}",
            std::io::Error::last_os_error()
        ));
    }
    std::env::set_var(MARK, "1");
    Ok(())
}
