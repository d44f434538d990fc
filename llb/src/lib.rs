//! LLB: kiln's low-level build graph. Every vertex is one operation (a source, a process to run, or file
//! operations) over the outputs of its input vertices, and is named by the digest of its canonical serialization,
//! so equal digests mean the same work wherever and whenever they appear.
//!
//! This crate is the contract between the frontend and everything after it, so it stays light: plain data types
//! with serde, the digests and platforms they name, and Docker's path patterns (which both the frontend and the
//! solver's context walk need). It knows nothing of how an op runs, of filesystems beyond reading an ignore file's
//! text, or of the network.

mod definition;
pub mod digest;
mod op;
pub mod patterns;
pub mod platform;
mod render;

pub use definition::{Definition, Vertex, VertexId, VertexMeta};
pub use digest::{Digest, DigestError};
pub use op::{
    CacheSharing, CdiDevice, Chown, CopyAction, ExecOp, FileAction, FileMode, FileOp, GitSource,
    HostIp, HttpSource, ImageSource, LocalSource, MergeOp, Mount, MountKind, NetworkMode,
    OciLayoutSource, Op, ResolveMode, SecurityMode, SourceOp, Ulimit, UserRef,
};
pub use platform::{Platform, PlatformError};
pub use render::RenderError;
