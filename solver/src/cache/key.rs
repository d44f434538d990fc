//! Cache keys: a vertex's key is the sha256 of its op (inputs removed), its inputs' keys, the content checksums
//! of exactly the paths its file actions select from local sources, and, for an image source, the manifest
//! digest the tag resolved to. Never a time: the same work has the same key on every run and machine.

use std::collections::BTreeMap;

use oci::Digest;
use serde::{Deserialize, Serialize};

use crate::llb::Op;

/// Everything a key is made of, kept beside the record so that a later miss can say which part changed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyParts {
    /// The op itself, without its inputs (their identity comes through `inputs`).
    pub op: Op,
    /// The cache keys of the inputs, in order.
    pub inputs: Vec<Digest>,
    /// Content checksums of what the op selects from local sources: `"<input index>:<path>"` → checksum.
    pub content: BTreeMap<String, Digest>,
    /// For an image source: the manifest digest its reference resolved to.
    pub resolved: Option<Digest>,
    /// Per-file checksums of the selected paths (not part of the key): what lets a miss name the file.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub files: BTreeMap<String, Digest>,
    /// A stored record lists `files` here, in a file of its own, when there are too many to keep in the record
    /// (see [`crate::cache::CacheIndex::put`]); not part of the key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub listing: Option<Digest>,
}

/// Bumped when what a file op makes from the same inputs changes, so a record an older kiln made is never taken for
/// the new result. 2 (2026-12): a symlinked source keeps its own name and wildcard matches are followed, a wildcard
/// matching one file takes the destination's name, sockets arrive as empty files, `ADD --chown` owns archive entries.
/// 3 (2026-12): directories a copy creates get 0755 (or a numeric --chmod) and the --chown owner, never the source
/// directory's; the destination is a directory only when it ends in `/` or exists as one, whatever the number of
/// sources; an unknown --chown user is root and an unknown group keeps the user's gid.
/// 4 (2026-12): a `.dockerignore` exception re-includes paths below an excluded directory, which is then copied
/// (with its own metadata) when something under it is, and the context checksum covers them.
/// 5 (2026-12): a directory source whose contents are copied is never excluded itself, so its destination is
/// made even when `--exclude` drops every file.
/// 6 (2026-12): the copy and the context checksum select a source's entries with one function: a symlinked source
/// (or one passing through a symlinked directory) is there only when both its own path and its target's real path
/// are in the context, and `.dockerignore` is matched against real paths below it, as BuildKit's transfer filters
/// them; a wildcard matching a symlink whose target is not there fails for both.
/// 7 (2026-12): in a `--parents` source `**` matches any number of directories (for the copy and the context
/// checksum), and a `--parents` wildcard matching nothing still makes the destination.
const FILE_OP_SEMANTICS: u32 = 7;

#[derive(Serialize)]
struct Canonical<'a> {
    op: &'a Op,
    inputs: &'a [Digest],
    content: &'a BTreeMap<String, Digest>,
    resolved: &'a Option<Digest>,
    /// [`FILE_OP_SEMANTICS`] for a file op; absent (and so no change to their keys) for the others.
    #[serde(skip_serializing_if = "Option::is_none")]
    semantics: Option<u32>,
}

impl KeyParts {
    /// The cache key.
    pub fn key(&self) -> Digest {
        let c = Canonical {
            op: &self.op,
            inputs: &self.inputs,
            content: &self.content,
            resolved: &self.resolved,
            semantics: matches!(self.op, Op::File(_)).then_some(FILE_OP_SEMANTICS),
        };
        // Plain data with string keys always serializes.
        Digest::of_canonical_json(&c).unwrap_or_else(|_| Digest::sha256_of(b""))
    }
}

/// The key parts of a `mkdir PATH` over nothing: a small, distinct step for the cache's tests.
#[cfg(test)]
pub(crate) fn mkdir_parts(path: &str) -> KeyParts {
    use crate::llb::{FileAction, FileOp};
    KeyParts {
        op: Op::File(FileOp {
            base: None,
            actions: vec![FileAction::Mkdir {
                path: path.into(),
                mode: 0o755,
                make_parents: true,
                chown: None,
            }],
        }),
        inputs: vec![],
        content: BTreeMap::new(),
        resolved: None,
        files: BTreeMap::new(),
        listing: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::llb::{FileAction, FileOp};

    fn parts(path: &str, content: &str) -> KeyParts {
        KeyParts {
            op: Op::File(FileOp {
                base: Some(0),
                actions: vec![FileAction::Mkdir {
                    path: path.into(),
                    mode: 0o755,
                    make_parents: true,
                    chown: None,
                }],
            }),
            inputs: vec![Digest::sha256_of(b"base")],
            content: BTreeMap::from([("1:/a".to_string(), Digest::sha256_of(content.as_bytes()))]),
            resolved: None,
            files: BTreeMap::new(),
            listing: None,
        }
    }

    #[test]
    fn a_file_op_key_carries_the_file_op_semantics_and_other_keys_do_not() {
        let without = |p: &KeyParts| {
            Digest::of_canonical_json(&Canonical {
                op: &p.op,
                inputs: &p.inputs,
                content: &p.content,
                resolved: &p.resolved,
                semantics: None,
            })
            .unwrap()
        };
        let file = parts("/x", "a");
        assert_ne!(
            file.key(),
            without(&file),
            "a record of an older kiln's file op is not taken"
        );
        let mut image = parts("/x", "a");
        image.op = Op::Source(crate::llb::SourceOp::Image(crate::llb::ImageSource {
            reference: "docker.io/library/busybox:latest".into(),
            platform: "linux/amd64".parse().unwrap(),
            resolve_mode: Default::default(),
        }));
        assert_eq!(
            image.key(),
            without(&image),
            "other ops' keys are unchanged"
        );
    }

    #[test]
    fn every_part_counts() {
        assert_eq!(parts("/x", "a").key(), parts("/x", "a").key());
        assert_ne!(parts("/x", "a").key(), parts("/y", "a").key());
        assert_ne!(parts("/x", "a").key(), parts("/x", "b").key());
        let mut p = parts("/x", "a");
        p.inputs = vec![Digest::sha256_of(b"other base")];
        assert_ne!(p.key(), parts("/x", "a").key());
        let mut r = parts("/x", "a");
        r.resolved = Some(Digest::sha256_of(b"m"));
        assert_ne!(r.key(), parts("/x", "a").key());
    }
}
