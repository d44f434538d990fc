//! The graph itself: vertices in insertion order (which is topological, since a vertex's inputs must exist
//! before it), deduplicated by digest as they are added. Plain vectors rather than a graph library keep this
//! crate light; the scheduler builds whatever structure it needs from `ids`, `inputs` and `dependents`.

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;

use crate::op::Op;
use crate::Digest;

/// A handle to a vertex of one [`Definition`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct VertexId(usize);

impl VertexId {
    /// Position in insertion order, which is also a topological order.
    pub fn index(self) -> usize {
        self.0
    }
}

/// What a vertex is for the user: never part of its digest, so a renamed stage or a moved line does not change
/// which work is shared.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct VertexMeta {
    /// Progress name, BuildKit style: `[build 2/4] RUN make`.
    pub description: String,
    /// The stage that produced it (first one, if several share it).
    pub stage: Option<String>,
    /// 1-based Dockerfile line range of the instruction, when it came from one.
    pub lines: Option<(usize, usize)>,
    /// `--no-cache` / `--no-cache-filter` asked to re-run it.
    pub ignore_cache: bool,
    /// The step's place in the Dockerfile (`stage#step`): stable while the instruction is edited, so a cache miss
    /// is explained against the last record of the same place.
    pub slot: Option<String>,
}

/// One operation with its ordered inputs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Vertex {
    /// The operation.
    pub op: Op,
    /// Inputs, in the order the op's indexes refer to.
    pub inputs: Vec<VertexId>,
    /// Description for humans.
    pub meta: VertexMeta,
}

#[derive(Serialize)]
struct DigestInput<'a> {
    op: &'a Op,
    inputs: Vec<&'a Digest>,
}

/// A content-addressed DAG of ops. Adding an op whose digest already exists returns the existing vertex, so
/// identical work in several stages is one vertex.
#[derive(Debug, Clone, Default)]
pub struct Definition {
    vertices: Vec<Vertex>,
    /// By vertex index: the vertices that take its output as an input, in insertion order (with repeats when
    /// one vertex uses the same input twice).
    users: Vec<Vec<VertexId>>,
    digests: Vec<Digest>,
    by_digest: BTreeMap<Digest, VertexId>,
}

impl Definition {
    /// An empty graph.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds `op` over `inputs` (all from this definition) and returns its vertex. A vertex with the same digest is
    /// reused: its metadata is kept, except that `ignore_cache` is or-ed in.
    ///
    /// # Panics
    /// Never on user input; an input id from another definition is a programming error and panics.
    pub fn add(&mut self, op: Op, inputs: Vec<VertexId>, meta: VertexMeta) -> VertexId {
        let digest = {
            let input_digests = inputs.iter().map(|i| &self.digests[i.index()]).collect();
            let body = DigestInput {
                op: &op,
                inputs: input_digests,
            };
            // Serializing plain data with string keys cannot fail.
            Digest::of_canonical_json(&body).unwrap_or_else(|_| Digest::sha256_of(b""))
        };
        if let Some(&existing) = self.by_digest.get(&digest) {
            if meta.ignore_cache {
                self.vertices[existing.0].meta.ignore_cache = true;
            }
            return existing;
        }
        let id = VertexId(self.vertices.len());
        for input in &inputs {
            self.users[input.0].push(id);
        }
        self.vertices.push(Vertex { op, inputs, meta });
        self.users.push(Vec::new());
        self.digests.push(digest.clone());
        self.by_digest.insert(digest, id);
        id
    }

    /// The vertex behind `id`.
    pub fn vertex(&self, id: VertexId) -> &Vertex {
        &self.vertices[id.0]
    }

    /// Mutable metadata of a vertex (descriptions are not part of the digest).
    pub fn meta_mut(&mut self, id: VertexId) -> &mut VertexMeta {
        &mut self.vertices[id.0].meta
    }

    /// The digest naming `id`'s work: its op and, recursively, its inputs.
    pub fn digest(&self, id: VertexId) -> &Digest {
        &self.digests[id.index()]
    }

    /// Looks a vertex up by digest.
    pub fn find(&self, digest: &Digest) -> Option<VertexId> {
        self.by_digest.get(digest).copied()
    }

    /// Number of vertices.
    pub fn len(&self) -> usize {
        self.vertices.len()
    }

    /// True when no vertex was added.
    pub fn is_empty(&self) -> bool {
        self.vertices.is_empty()
    }

    /// All vertices in insertion order, which is topological (inputs before users).
    pub fn ids(&self) -> impl Iterator<Item = VertexId> + '_ {
        (0..self.vertices.len()).map(VertexId)
    }

    /// The vertices that use `id`'s output.
    pub fn dependents(&self, id: VertexId) -> Vec<VertexId> {
        let mut out = self.users[id.0].clone();
        out.sort();
        out.dedup();
        out
    }

    /// Every vertex `roots` need, roots included, in topological order: what a solve of those roots runs.
    pub fn closure(&self, roots: &[VertexId]) -> Vec<VertexId> {
        let mut seen = BTreeSet::new();
        let mut stack: Vec<VertexId> = roots.to_vec();
        while let Some(v) = stack.pop() {
            if seen.insert(v) {
                stack.extend(self.vertex(v).inputs.iter().copied());
            }
        }
        seen.into_iter().collect()
    }

    /// Adds every vertex of `other` to this graph (a multi-platform build lowers once per platform and solves the
    /// union): work both graphs hold, such as a builder stage on the build platform, stays one vertex. `meta` may
    /// rename what is new (a platform in its description). Returns, by `other`'s index, the vertex each became.
    pub fn absorb(
        &mut self,
        other: &Definition,
        meta: impl Fn(&VertexMeta) -> VertexMeta,
    ) -> Vec<VertexId> {
        let mut map: Vec<VertexId> = Vec::with_capacity(other.len());
        for id in other.ids() {
            let v = other.vertex(id);
            // Insertion order is topological, so every input is already mapped.
            let inputs = v.inputs.iter().map(|i| map[i.index()]).collect();
            map.push(self.add(v.op.clone(), inputs, meta(&v.meta)));
        }
        map
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::op::{FileAction, FileOp, ImageSource, ResolveMode, SourceOp};

    fn image(name: &str) -> Op {
        Op::Source(SourceOp::Image(ImageSource {
            reference: name.to_string(),
            platform: "linux/amd64".parse().unwrap(),
            resolve_mode: ResolveMode::Default,
        }))
    }

    fn mkdir(path: &str) -> Op {
        Op::File(FileOp {
            base: Some(0),
            actions: vec![FileAction::Mkdir {
                path: path.to_string(),
                mode: 0o755,
                make_parents: true,
                chown: None,
            }],
        })
    }

    #[test]
    fn identical_ops_are_one_vertex_and_descriptions_do_not_matter() {
        let mut d = Definition::new();
        let a = d.add(image("alpine"), vec![], VertexMeta::default());
        let meta = VertexMeta {
            description: "other".into(),
            ..Default::default()
        };
        let b = d.add(image("alpine"), vec![], meta);
        assert_eq!(a, b);
        let m1 = d.add(mkdir("/x"), vec![a], VertexMeta::default());
        let m2 = d.add(mkdir("/x"), vec![b], VertexMeta::default());
        assert_eq!(m1, m2);
        assert_eq!(d.len(), 2);
    }

    #[test]
    fn digest_covers_inputs() {
        let mut d = Definition::new();
        let a = d.add(image("alpine"), vec![], VertexMeta::default());
        let b = d.add(image("debian"), vec![], VertexMeta::default());
        let on_a = d.add(mkdir("/x"), vec![a], VertexMeta::default());
        let on_b = d.add(mkdir("/x"), vec![b], VertexMeta::default());
        assert_ne!(d.digest(on_a), d.digest(on_b));
        assert_eq!(d.closure(&[on_b]), vec![b, on_b]);
        assert_eq!(d.dependents(a), vec![on_a]);
    }

    #[test]
    fn absorbing_a_graph_shares_common_work_and_renames_only_new_vertices() {
        let mut a = Definition::new();
        let base = a.add(image("alpine"), vec![], VertexMeta::default());
        a.add(mkdir("/x"), vec![base], VertexMeta::default());
        let mut b = Definition::new();
        let b_base = b.add(image("alpine"), vec![], VertexMeta::default());
        let b_y = b.add(mkdir("/y"), vec![b_base], VertexMeta::default());
        let map = a.absorb(&b, |m| VertexMeta {
            description: format!("arm64 {}", m.description),
            ..m.clone()
        });
        assert_eq!(map[b_base.index()], base, "the shared source is one vertex");
        assert_eq!(a.len(), 3);
        assert_eq!(a.vertex(base).meta.description, "", "kept its first name");
        assert_eq!(a.vertex(map[b_y.index()]).meta.description, "arm64 ");
        assert_eq!(a.digest(map[b_y.index()]), b.digest(b_y));
    }

    #[test]
    fn digests_are_stable_across_runs() {
        let mut d = Definition::new();
        let a = d.add(image("alpine"), vec![], VertexMeta::default());
        // A fixed value: changing the canonical form of ops changes every cache key, and must be deliberate.
        assert_eq!(
            d.digest(a).to_string(),
            Digest::sha256_of(
                br#"{"op":{"op":"source","source":"image","reference":"alpine","platform":{"os":"linux","architecture":"amd64"},"resolve_mode":"default"},"inputs":[]}"#
            )
            .to_string()
        );
    }
}
