//! kiln's executor: runs one process of a build in a sandbox. Today through an external OCI runtime ([`runc`]),
//! fed Docker's default sandbox config, in a cgroup ([`cgroup`]) and a network ([`network`]) of its own; the
//! built-in runtime arrives with the executor issue.

pub mod cgroup;
pub mod network;
pub mod runc;
