//! kiln's solver: the LLB op graph and its digests, and Docker's path patterns for context selection; the
//! scheduler, cache keys and snapshots arrive with the solver issue.
//!
//! The graph is the contract between the frontend and everything after it: the frontend only ever produces an
//! [`llb::Definition`], and nothing downstream reads a Dockerfile.

pub mod llb;
pub mod patterns;
