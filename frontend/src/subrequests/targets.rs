//! The targets subrequest (BuildKit's `frontend.targets`, `dockerfile2llb.ListTargets`): every stage with its
//! name, the comment describing it, its base and platform as written, and which one is built by default.

use serde::Serialize;

use super::{base64_sources, comments_by_line, doc_comment, tabwrite, Location};
use crate::error::FrontendError;
use crate::instructions::parse_dockerfile_for_checks;
use crate::parser::Dockerfile;

/// The stages of a Dockerfile: BuildKit's `targets.List`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TargetList {
    /// The stages in order.
    pub targets: Vec<Target>,
    /// The Dockerfile's bytes (base64 in JSON, as Go writes `[]byte`).
    #[serde(serialize_with = "base64_sources")]
    pub sources: Vec<Vec<u8>>,
}

/// One stage: BuildKit's `targets.Target` (empty fields are left out of the JSON, as its `omitempty` tags say).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Target {
    /// The stage name (lower-cased, as BuildKit keeps it); empty for an unnamed stage.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub name: String,
    /// The last stage, built when no `--target` is given.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub default: bool,
    /// The comment above its FROM that starts with the stage's name (`# build compiles the binary`), without it.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub description: String,
    /// The FROM's image or stage, as written (variables unexpanded).
    #[serde(skip_serializing_if = "String::is_empty")]
    pub base: String,
    /// The FROM's `--platform`, as written.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub platform: String,
    /// The FROM's lines.
    pub location: Location,
}

/// Lists the stages of `df`, whose bytes are `source`. Stage names used twice are listed twice, as BuildKit's
/// parser (which only warns of them) lists them.
pub fn targets(df: &Dockerfile, source: &[u8]) -> Result<TargetList, FrontendError> {
    let (stages, _duplicates) = parse_dockerfile_for_checks(df)?;
    let comments = comments_by_line(df);
    let last = stages.stages.len().saturating_sub(1);
    let targets = stages
        .stages
        .iter()
        .map(|s| {
            let name = s.name.clone().unwrap_or_default();
            let description = comments
                .get(&s.from_node.span.start_line)
                .map(|c| doc_comment(c, &name))
                .unwrap_or_default();
            Target {
                description,
                default: s.index == last,
                base: s.from.base.clone(),
                platform: s.from.platform.clone().unwrap_or_default(),
                location: Location::of(s.from_node.span),
                name,
            }
        })
        .collect();
    Ok(TargetList {
        targets,
        sources: vec![source.to_vec()],
    })
}

impl TargetList {
    /// The list as buildx prints it (BuildKit's `PrintTargets`): a `TARGET  DESCRIPTION` table, the default
    /// stage marked `(default)`.
    pub fn to_text(&self) -> String {
        let mut rows = vec![vec!["TARGET".to_string(), "DESCRIPTION".to_string()]];
        for t in &self.targets {
            let name = match (t.name.is_empty(), t.default) {
                (true, true) => "(default)".to_string(),
                (false, true) => format!("{} (default)", t.name),
                _ => t.name.clone(),
            };
            rows.push(vec![name, t.description.clone()]);
        }
        tabwrite(&rows, 1)
    }
}
