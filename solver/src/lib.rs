//! kiln's solver: the LLB op graph, its digests, and (later) the scheduler and the content-addressed cache.
pub mod patterns;
