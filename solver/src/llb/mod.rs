//! LLB: kiln's low-level build graph. Every vertex is one operation (a source, a process to run, or file
//! operations) over the outputs of its input vertices, and is named by the digest of its canonical serialization,
//! so equal digests mean the same work wherever and whenever they appear.

mod definition;
mod op;
mod render;

pub use definition::{Definition, Vertex, VertexId, VertexMeta};
pub use op::{
    CacheSharing, Chown, CopyAction, ExecOp, FileAction, FileMode, FileOp, GitSource, HttpSource,
    ImageSource, LocalSource, MergeOp, Mount, MountKind, NetworkMode, OciLayoutSource, Op,
    ResolveMode, SecurityMode, SourceOp, UserRef,
};
pub use render::RenderError;
