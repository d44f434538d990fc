//! kiln's solver: the scheduler, cache keys and the persistent cache, content checksums of local contexts,
//! snapshots and the op implementations.
//!
//! The graph is the contract between the frontend and everything after it: the frontend only ever produces an
//! [`llb::Definition`] (defined in the light `llb` crate), and nothing downstream reads a Dockerfile.

pub mod cache;
pub mod contenthash;
pub mod fileop;
pub mod scheduler;
pub mod snapshot;
pub mod worker;

/// The LLB definition lives in its own light crate (the frontend depends on it, not on the solver); re-exported so
/// `solver::llb::X` keeps naming the same types.
pub use llb;
/// Docker's path patterns, which moved with the LLB definition; re-exported so `solver::patterns::X` keeps working.
pub use llb::patterns;
