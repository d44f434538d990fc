//! End-to-end tests of the `kiln` binary. Each module covers one command as a user meets it.

mod attest;
mod badinput;
mod build;
mod buildkit;
mod cache;
mod call;
mod check;
mod checklist;
mod concurrency;
mod crash;
mod differential;
mod doctor;
mod early;
mod errors;
mod examples;
mod fidelity;
mod graph;
mod hostile;
mod lifecycle;
mod load;
mod mounts;
mod network;
mod platforms;
mod progress;
mod registry;
mod remote;
mod resume;
mod rootless;
mod runopts;
mod security;
mod split;
mod store;

/// The binary under test, built by cargo for this test target.
pub const KILN: &str = env!("CARGO_BIN_EXE_kiln");
