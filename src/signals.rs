//! Ctrl-C and SIGTERM during a build: instead of dying with steps running (their processes, mounts, cgroups and
//! half-written upper directories left behind), kiln turns the first signal into a cancellation of the build,
//! which kills every running step and cleans up after it; a second signal ends kiln at once, as the default
//! action would have.

use std::sync::atomic::{AtomicI32, Ordering};

static RECEIVED: AtomicI32 = AtomicI32::new(0);

extern "C" fn note(signal: libc::c_int) {
    RECEIVED.store(signal, Ordering::SeqCst);
}

/// While this lives, SIGINT and SIGTERM are noted instead of ending kiln (once each: the handler resets itself).
pub struct Guard(());

impl Guard {
    /// Starts noting signals.
    pub fn install() -> Guard {
        RECEIVED.store(0, Ordering::SeqCst);
        for s in [libc::SIGINT, libc::SIGTERM] {
            // SAFETY: the handler only stores to an atomic, which is async-signal-safe.
            unsafe {
                let mut action: libc::sigaction = std::mem::zeroed();
                action.sa_sigaction = note as *const () as libc::sighandler_t;
                action.sa_flags = libc::SA_RESETHAND | libc::SA_RESTART;
                libc::sigemptyset(&mut action.sa_mask);
                libc::sigaction(s, &action, std::ptr::null_mut());
            }
        }
        Guard(())
    }

    /// The signal received since [`Guard::install`], if any.
    pub fn received(&self) -> Option<i32> {
        match RECEIVED.load(Ordering::SeqCst) {
            0 => None,
            s => Some(s),
        }
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        for s in [libc::SIGINT, libc::SIGTERM] {
            // SAFETY: restores the default disposition.
            unsafe {
                libc::signal(s, libc::SIG_DFL);
            }
        }
    }
}
