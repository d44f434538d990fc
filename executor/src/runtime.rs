//! The runtime a build uses, chosen by `kiln build --runtime`: the built-in one unless an OCI runtime binary is
//! named. Both take the same [`Process`] and the same spec, and report the same [`Outcome`].

use std::path::Path;

use crate::process::{Outcome, Process};
use crate::runc::{Runc, RuncError};
use crate::sandbox::{Sandbox, SandboxError};

/// The name that picks the built-in runtime.
pub const BUILTIN: &str = "builtin";

/// A runtime.
#[derive(Debug, Clone)]
pub enum Runtime {
    /// kiln's own ([`crate::sandbox`]).
    Builtin(Sandbox),
    /// An OCI runtime binary (runc or one that takes the same command line).
    Oci(Runc),
}

/// Why a step could not be run.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// By the built-in runtime.
    #[error(transparent)]
    Builtin(#[from] SandboxError),
    /// By an OCI runtime binary.
    #[error(transparent)]
    Oci(#[from] RuncError),
}

impl Runtime {
    /// `builtin`, or an OCI runtime binary (a name looked up in PATH, or a path) keeping its state under `work`.
    pub fn named(name: &str, work: &Path) -> Runtime {
        if name == BUILTIN {
            Runtime::Builtin(Sandbox::new())
        } else {
            Runtime::Oci(Runc::new(name, work))
        }
    }

    /// Runs `p` to completion, or until `cancelled` turns true (every process of the step is then killed).
    pub fn run(
        &self,
        p: &Process,
        on_line: &(dyn Fn(&str) + Sync),
        cancelled: &(dyn Fn() -> bool + Sync),
    ) -> Result<Outcome, RunError> {
        Ok(match self {
            Runtime::Builtin(s) => s.run(p, on_line, cancelled)?,
            Runtime::Oci(r) => r.run(p, on_line, cancelled)?,
        })
    }

    /// Removes the networks kept for reuse between steps: call once no more steps will run.
    pub fn finish(&self) {
        crate::network::StepNetwork::drain_pool();
    }

    /// Removes what kiln processes killed mid-step left behind.
    pub fn sweep_stale(&self) {
        match self {
            Runtime::Builtin(s) => s.sweep_stale(),
            Runtime::Oci(r) => r.sweep_stale(),
        }
    }
}
