//! kiln's engine: a build as a library function, and everything else a kiln root is asked to do.
//!
//! ```text
//! engine::build(&Root, BuildRequest, &dyn Progress) -> Result<BuildResult, BuildError>
//!    lower (frontend, with the one base-image Resolver) -> solve (solver, same Resolver) -> export (outputs,
//!    pushes) -> remote caches -> automatic GC; progress as one stream of Events keyed by vertex
//! ```
//!
//! The other operations on a root are plain functions of their modules: [`images`] (list, tag, rmi, inspect,
//! load, save), [`import`], [`registry`] (pull, push, login), [`gc`] (du, prune), [`doctor`] (check, repair).
//! The engine never parses a command line and never prints: it returns typed errors and reports [`Event`]s.

#![warn(missing_docs)]

pub mod annotations;
pub mod attest;
pub mod build;
pub mod config;
pub mod docker_api;
pub mod doctor;
mod early;
pub mod error;
pub mod events;
mod export;
pub mod gc;
pub mod images;
pub mod import;
pub mod output;
pub mod registry;
pub mod remotecache;
pub mod request;
pub mod resolver;
pub mod root;
pub mod rootless;
pub mod runopts;
pub mod size;
pub mod stdin_context;
pub mod trace;

pub use build::{build, BuildResult};
pub use error::BuildError;
pub use events::{Event, ImageResult, Outcome, Progress, Silent};
pub use request::{BuildRequest, Dockerfile};
pub use root::Root;
