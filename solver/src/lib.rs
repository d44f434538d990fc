//! kiln's solver: the LLB op graph and its digests, content checksums of local contexts, and Docker's path
//! patterns; the scheduler and the persistent cache arrive with the solver issue.
//!
//! The graph is the contract between the frontend and everything after it: the frontend only ever produces an
//! [`llb::Definition`], and nothing downstream reads a Dockerfile.

pub mod cache;
pub mod contenthash;
pub mod fileop;
pub mod llb;
pub mod patterns;
pub mod scheduler;
pub mod snapshot;
pub mod worker;
