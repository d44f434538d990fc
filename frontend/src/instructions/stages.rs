//! Splitting a Dockerfile's instructions into the global ARGs and the build stages.

use super::command::{Command, FromCommand, Instruction};
use crate::error::FrontendError;
use crate::parser::{Dockerfile, Node};

/// One build stage: its FROM and the instructions under it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stage {
    /// Position among the stages (what `COPY --from=0` names).
    pub index: usize,
    /// `AS name`, lower-cased.
    pub name: Option<String>,
    /// The FROM.
    pub from: FromCommand,
    /// The FROM's node.
    pub from_node: Node,
    /// Everything after FROM, up to the next FROM.
    pub instructions: Vec<Instruction>,
}

impl Stage {
    /// The name progress output uses: the stage name, or its index.
    pub fn display_name(&self) -> String {
        self.name
            .clone()
            .unwrap_or_else(|| format!("stage-{}", self.index))
    }
}

/// A Dockerfile as stages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stages {
    /// ARG instructions before the first FROM (usable in FROM lines).
    pub meta_args: Vec<Instruction>,
    /// The stages in order.
    pub stages: Vec<Stage>,
}

impl Stages {
    /// The stage called `name` (case-insensitive) or with index `name`.
    pub fn find(&self, name: &str) -> Option<&Stage> {
        let lower = name.to_ascii_lowercase();
        self.stages
            .iter()
            .find(|s| s.name.as_deref() == Some(lower.as_str()))
    }
}

/// Types every instruction and groups them into stages.
pub fn parse_dockerfile(df: &Dockerfile) -> Result<Stages, FrontendError> {
    group_stages(df, true).map(|(stages, _)| stages)
}

/// [`parse_dockerfile`] for build checks: a repeated stage name is returned as an error beside the stages
/// (the repeat is kept, and a name refers to its first stage) so that every other rule can still run.
pub fn parse_dockerfile_for_checks(
    df: &Dockerfile,
) -> Result<(Stages, Vec<FrontendError>), FrontendError> {
    group_stages(df, false)
}

/// Groups the instructions; a repeated stage name fails at once when `strict`, else it is collected.
fn group_stages(
    df: &Dockerfile,
    strict: bool,
) -> Result<(Stages, Vec<FrontendError>), FrontendError> {
    let mut duplicates = Vec::new();
    let mut meta_args = Vec::new();
    let mut stages: Vec<Stage> = Vec::new();
    for node in &df.children {
        let inst = Instruction::from_node(node)?;
        match (&inst.command, stages.last_mut()) {
            (Command::From(from), _) => {
                if let Some(name) = &from.stage_name {
                    if stages.iter().any(|s| s.name.as_ref() == Some(name)) {
                        let e = FrontendError::at(
                            node.span,
                            format!("duplicate stage name {name:?}: stage names must be unique"),
                        );
                        if strict {
                            return Err(e);
                        }
                        duplicates.push(e);
                    }
                }
                stages.push(Stage {
                    index: stages.len(),
                    name: from.stage_name.clone(),
                    from: from.clone(),
                    from_node: node.clone(),
                    instructions: Vec::new(),
                });
            }
            (_, Some(stage)) => stage.instructions.push(inst),
            (Command::Arg(_), None) => meta_args.push(inst),
            (_, None) => {
                return Err(FrontendError::at(
                    node.span,
                    format!(
                        "{} before the first FROM: only ARG may come before FROM",
                        node.keyword.to_uppercase()
                    ),
                ))
            }
        }
    }
    if stages.is_empty() {
        let span = df.children.last().map(|n| n.span).unwrap_or_default();
        return Err(FrontendError::at(
            span,
            "dockerfile contains no stages to build (it has no FROM instruction)",
        ));
    }
    Ok((Stages { meta_args, stages }, duplicates))
}
