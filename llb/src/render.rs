//! Renderings of a definition for `kiln graph`: Graphviz dot for eyes, JSON for tools.

use serde::Serialize;

use super::definition::{Definition, VertexId, VertexMeta};
use super::op::Op;

/// Why a rendering failed.
#[derive(Debug, thiserror::Error)]
pub enum RenderError {
    /// JSON serialization failed.
    #[error("cannot render the graph as JSON: {0}")]
    Json(#[from] serde_json::Error),
}

#[derive(Serialize)]
struct JsonVertex<'a> {
    digest: String,
    inputs: Vec<String>,
    op: &'a Op,
    meta: &'a VertexMeta,
}

#[derive(Serialize)]
struct JsonGraph<'a> {
    vertices: Vec<JsonVertex<'a>>,
    outputs: Vec<String>,
}

impl Definition {
    /// Everything `roots` need as pretty JSON: vertices in topological order, each with its digest, its inputs'
    /// digests, its op and its description.
    pub fn to_json(&self, roots: &[VertexId]) -> Result<String, RenderError> {
        let vertices = self
            .closure(roots)
            .into_iter()
            .map(|id| {
                let v = self.vertex(id);
                JsonVertex {
                    digest: self.digest(id).to_string(),
                    inputs: v
                        .inputs
                        .iter()
                        .map(|i| self.digest(*i).to_string())
                        .collect(),
                    op: &v.op,
                    meta: &v.meta,
                }
            })
            .collect();
        let graph = JsonGraph {
            vertices,
            outputs: roots.iter().map(|r| self.digest(*r).to_string()).collect(),
        };
        Ok(serde_json::to_string_pretty(&graph)?)
    }

    /// Everything `roots` need as a Graphviz digraph; edges point from an input to its user.
    pub fn to_dot(&self, roots: &[VertexId]) -> String {
        let mut out = String::from(
            "digraph llb {\n  rankdir=TB;\n  node [shape=box, fontname=\"monospace\"];\n",
        );
        for id in self.closure(roots) {
            let v = self.vertex(id);
            let short = &self.digest(id).hex()[..12];
            let label = if v.meta.description.is_empty() {
                v.op.kind().to_string()
            } else {
                v.meta.description.clone()
            };
            let shape = match v.op {
                Op::Source(_) => ", shape=ellipse",
                Op::Exec(_) => ", style=bold",
                _ => "",
            };
            out.push_str(&format!(
                "  \"{short}\" [label=\"{}\\n{}:{short}\"{shape}];\n",
                dot_escape(&label),
                v.op.kind()
            ));
            for input in &v.inputs {
                out.push_str(&format!(
                    "  \"{}\" -> \"{short}\";\n",
                    &self.digest(*input).hex()[..12]
                ));
            }
        }
        out.push_str("}\n");
        out
    }
}

fn dot_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            c if c.is_control() => {}
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::op::{ImageSource, ResolveMode, SourceOp};

    #[test]
    fn dot_escapes_quotes_and_lists_edges() {
        let mut d = Definition::new();
        let a = d.add(
            Op::Source(SourceOp::Image(ImageSource {
                reference: "alpine".into(),
                platform: "linux/amd64".parse().unwrap(),
                resolve_mode: ResolveMode::Default,
            })),
            vec![],
            VertexMeta {
                description: "FROM \"alpine\"".into(),
                ..Default::default()
            },
        );
        let dot = d.to_dot(&[a]);
        assert!(dot.contains("FROM \\\"alpine\\\""));
        assert!(dot.starts_with("digraph llb {"));
        let json: serde_json::Value = serde_json::from_str(&d.to_json(&[a]).unwrap()).unwrap();
        assert_eq!(json["vertices"][0]["op"]["reference"], "alpine");
    }
}
