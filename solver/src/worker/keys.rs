//! The key parts of a vertex: its op, its inputs' keys, the content checksums of what it reads from local
//! directories, and an image source's resolved manifest digest.

use std::collections::BTreeMap;

use super::{Fs, StepOutput, Worker, WorkerError};
use crate::cache::KeyParts;
use crate::llb::{FileAction, MountKind, Op, SourceOp, Vertex};

impl Worker<'_> {
    /// The content checksum of `path` (a file, directory or wildcard) in the local directory `fs`. A wildcard that
    /// matches nothing is an error unless `allow_empty`: then it checksums as an empty selection (COPY's sources,
    /// BuildKit's AllowEmptyWildcard: `COPY foo nomatch* /` copies foo, its testEmptyWildcard).
    fn local_checksum(
        &self,
        fs: &Fs,
        path: &str,
        allow_empty: bool,
        parents: bool,
        files: &mut BTreeMap<String, oci::Digest>,
    ) -> Result<Option<oci::Digest>, WorkerError> {
        let Fs::Local(dir, _) = fs else {
            return Ok(None);
        };
        let Some((_, hasher)) = self
            .locals
            .iter()
            .find(|(_, l)| &l.path == dir)
            .and_then(|(name, _)| self.hashers.get_key_value(name))
        else {
            return Ok(None);
        };
        let (digest, listed) = match hasher.checksum_of_copy(path, parents) {
            Err(crate::contenthash::HashError::NotFound(_))
                if allow_empty && path.contains(['*', '?', '[']) =>
            {
                return Ok(Some(oci::Digest::sha256_of(
                    b"kiln: a wildcard matching nothing",
                )));
            }
            other => other?,
        };
        if files.is_empty() {
            *files = listed;
        } else {
            files.extend(listed);
        }
        Ok(Some(digest))
    }

    pub(super) fn key_parts(
        &self,
        v: &Vertex,
        inputs: &[StepOutput],
    ) -> Result<KeyParts, WorkerError> {
        let mut content = BTreeMap::new();
        let mut files = BTreeMap::new();
        let mut resolved = None;
        match &v.op {
            Op::File(f) => {
                for a in &f.actions {
                    if let FileAction::Copy(c) = a {
                        if let Some(input) = inputs.get(c.source) {
                            if let Some(d) = self.local_checksum(
                                &input.fs,
                                &c.src,
                                c.allow_empty_wildcard,
                                c.parents,
                                &mut files,
                            )? {
                                content.insert(format!("{}:{}", c.source, c.src), d);
                            }
                        }
                    }
                }
            }
            Op::Exec(e) => {
                for m in &e.mounts {
                    if let (Some(i), MountKind::Bind) = (m.input, &m.kind) {
                        if let Some(input) = inputs.get(i) {
                            if let Some(d) = self.local_checksum(
                                &input.fs,
                                &m.selector,
                                false,
                                false,
                                &mut files,
                            )? {
                                content.insert(format!("{i}:{}", m.selector), d);
                            }
                        }
                    }
                }
            }
            Op::Source(SourceOp::Image(img)) => {
                let d = self
                    .images
                    .resolve(&img.reference, &img.platform, img.resolve_mode)
                    .map_err(|reason| WorkerError::Image {
                        reference: img.reference.clone(),
                        reason: Box::new(reason),
                    })?;
                resolved = Some(d);
            }
            // What the URL serves now is part of the key: fetched here, kept for the step.
            Op::Source(SourceOp::Http(h)) => resolved = Some(self.fetch(h)?.digest),
            // A git source is the commit its ref names now.
            Op::Source(SourceOp::Git(g)) => {
                resolved = Some(oci::Digest::sha256_of(self.git_commit(g)?.as_bytes()))
            }
            _ => {}
        }
        Ok(KeyParts {
            op: key_op(&v.op),
            inputs: inputs.iter().map(|o| o.key.clone()).collect(),
            content,
            resolved,
            files,
            listing: None,
        })
    }
}

/// The op as its key sees it: `--add-host` names without their addresses, as BuildKit's exec CacheMap clears
/// each ExtraHost's IP (a host that moved reruns nothing).
fn key_op(op: &Op) -> Op {
    let mut op = op.clone();
    if let Op::Exec(e) = &mut op {
        for h in &mut e.extra_hosts {
            h.ip.clear();
        }
    }
    op
}
