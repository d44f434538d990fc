//! kiln's executor: runs one process of a build in a sandbox. A step is described once, as an OCI runtime spec
//! ([`spec`]) over a [`process::Process`]; the built-in runtime ([`sandbox`], the default) or an external OCI
//! runtime such as runc ([`runc`]) runs it, in a cgroup ([`cgroup`]) and a network ([`network`]) of its own, with
//! the CDI devices ([`cdi`]) it asks for.

pub mod cdi;
pub mod cgroup;
pub mod network;
pub mod process;
pub mod runc;
pub mod runtime;
pub mod sandbox;
pub mod slirp;
pub mod spec;

#[cfg(test)]
mod tests;
