//! The content-addressed cache: how keys are made ([`key`]), where records live ([`index`]), and how a miss is
//! explained ([`explain`]), which no other builder does.

pub mod explain;
pub mod imported;
pub mod index;
pub mod key;

pub use explain::{explain, MissReason};
pub use imported::{BlobError, BlobSource, ImportedCache, PortableRecord};
pub use index::{CacheIndex, CacheRecord, IndexError, IndexFiles, RecordFault, INLINE_FILES};
pub use key::KeyParts;
