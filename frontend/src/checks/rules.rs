//! The rules that need only the Dockerfile's text and instruction list (the others fire during lowering, where
//! variables have values).

use std::collections::BTreeMap;

use super::{looks_secret, Finding};
use crate::instructions::{Command, Instruction};
use crate::parser::Node;

fn is_upper(s: &str) -> bool {
    s.chars().all(|c| !c.is_ascii_lowercase())
}

fn is_lower(s: &str) -> bool {
    s.chars().all(|c| !c.is_ascii_uppercase())
}

/// Runs every text-level rule over the Dockerfile's nodes (instructions that fail to type are skipped; lowering
/// reports them as errors).
pub fn static_findings(nodes: &[Node]) -> Vec<Finding> {
    let mut out = Vec::new();
    let insts: Vec<Instruction> = nodes
        .iter()
        .filter_map(|n| Instruction::from_node(n).ok())
        .collect();
    consistent_casing(nodes, &mut out);
    let mut stage_names: BTreeMap<String, usize> = BTreeMap::new();
    // (keyword, stage ordinal) → spans, for MultipleInstructionsDisallowed.
    let mut singles: BTreeMap<(&'static str, usize), Vec<&Node>> = BTreeMap::new();
    let mut stage = 0usize;
    // Whether each stage (by ordinal) has a SHELL of its own or from the stage it is built on: JSONArgsRecommended
    // is not reported under a custom shell, as BuildKit checks the image config's shell.
    let mut shell_set: Vec<bool> = vec![false];
    let mut stage_ordinals: BTreeMap<String, usize> = BTreeMap::new();
    for inst in &insts {
        let node = &inst.node;
        match &inst.command {
            Command::From(f) => {
                stage += 1;
                let inherited = stage_ordinals.get(&f.base).is_some_and(|&i| shell_set[i]);
                shell_set.push(inherited);
                if let Some(name) = &f.stage_name {
                    stage_ordinals.insert(name.clone(), stage);
                }
                if let (Some(as_kw), Some(name)) = (&f.as_keyword, &f.stage_name_as_written) {
                    let kw = &node.keyword_as_written;
                    if (is_upper(kw) && !is_upper(as_kw)) || (is_lower(kw) && !is_lower(as_kw)) {
                        out.push(Finding::new(
                            "FromAsCasing",
                            node.span,
                            format!("'{as_kw}' and '{kw}' keywords' casing do not match"),
                        ));
                    }
                    if name.chars().any(|c| c.is_ascii_uppercase()) {
                        out.push(Finding::new(
                            "StageNameCasing",
                            node.span,
                            format!("Stage name '{name}' should be lowercase"),
                        ));
                    }
                    let lower = name.to_ascii_lowercase();
                    if lower == "scratch" || lower == "context" {
                        out.push(Finding::new(
                            "ReservedStageName",
                            node.span,
                            format!("Stage name should not use the same name as reserved stage {lower:?}"),
                        ));
                    }
                    if stage_names
                        .insert(lower.clone(), node.span.start_line)
                        .is_some()
                    {
                        out.push(Finding::new(
                            "DuplicateStageName",
                            node.span,
                            format!("Duplicate stage name {lower:?}, stage names should be unique"),
                        ));
                    }
                }
                if let Some(p) = &f.platform {
                    let bare = p.trim_matches(|c| c == '{' || c == '}' || c == '$');
                    if p.contains('$') && bare == "TARGETPLATFORM" {
                        out.push(Finding::new(
                            "RedundantTargetPlatform",
                            node.span,
                            format!("Setting platform to predefined {p} in FROM is redundant as this is the default behavior"),
                        ));
                    } else if !p.contains('$') && !names_platform(p, f.stage_name.as_deref()) {
                        out.push(Finding::new(
                            "FromPlatformFlagConstDisallowed",
                            node.span,
                            format!("FROM --platform flag should not use constant value \"{p}\""),
                        ));
                    }
                }
            }
            Command::Cmd(c) | Command::Entrypoint(c) => {
                let kw = if matches!(inst.command, Command::Cmd(_)) {
                    "CMD"
                } else {
                    "ENTRYPOINT"
                };
                if c.prepend_shell && !shell_set[stage] {
                    out.push(Finding::new(
                        "JSONArgsRecommended",
                        node.span,
                        format!("JSON arguments recommended for {kw} to prevent unintended behavior related to OS signals"),
                    ));
                }
                singles.entry((kw, stage)).or_default().push(node);
            }
            Command::Shell(_) => shell_set[stage] = true,
            Command::Healthcheck(_) => singles
                .entry(("HEALTHCHECK", stage))
                .or_default()
                .push(node),
            Command::Maintainer(_) => out.push(Finding::new(
                "MaintainerDeprecated",
                node.span,
                "Maintainer instruction is deprecated in favor of using label",
            )),
            Command::Env(_) | Command::Label(_) => {
                let kw = node.keyword.to_uppercase();
                if node.args.len() == 3 && node.args[2].is_empty() {
                    out.push(Finding::new(
                        "LegacyKeyValueFormat",
                        node.span,
                        format!("\"{kw} key=value\" should be used instead of legacy \"{kw} key value\" format"),
                    ));
                }
                if let Command::Env(kvs) = &inst.command {
                    for kv in kvs.iter().filter(|kv| looks_secret(&kv.key)) {
                        out.push(secret(node, "ENV", &kv.key));
                    }
                }
            }
            Command::Arg(decls) => {
                for d in decls.iter().filter(|d| looks_secret(&d.name)) {
                    out.push(secret(node, "ARG", &d.name));
                }
            }
            _ => {}
        }
    }
    for ((kw, _), nodes) in singles {
        for n in &nodes[..nodes.len().saturating_sub(1)] {
            out.push(Finding::new(
                "MultipleInstructionsDisallowed",
                n.span,
                format!("Multiple {kw} instructions should not be used in the same stage because only the last one will be used"),
            ));
        }
    }
    out
}

/// FromPlatformFlagConstDisallowed's exemptions: a constant platform that does not parse (the build fails on it
/// instead), or whose OS or architecture the stage's name contains (`AS my_amd64_stage`), as BuildKit's
/// reportConstPlatformDisallowed has them.
fn names_platform(platform: &str, stage_name: Option<&str>) -> bool {
    let Ok(p) = platform.parse::<oci::Platform>() else {
        return true;
    };
    stage_name.is_some_and(|n| n.contains(&p.os) || n.contains(&p.architecture))
}

fn secret(node: &Node, kw: &str, name: &str) -> Finding {
    Finding::new(
        "SecretsUsedInArgOrEnv",
        node.span,
        format!("Do not use ARG or ENV instructions for sensitive data ({kw} \"{name}\")"),
    )
}

/// ConsistentInstructionCasing: every keyword should follow the majority's case (all upper or all lower).
fn consistent_casing(nodes: &[Node], out: &mut Vec<Finding>) {
    let (mut upper, mut lower) = (0, 0);
    for n in nodes {
        if is_upper(&n.keyword_as_written) {
            upper += 1;
        } else if is_lower(&n.keyword_as_written) {
            lower += 1;
        }
    }
    let majority_upper = upper >= lower;
    for n in nodes {
        let kw = &n.keyword_as_written;
        let ok = if majority_upper {
            is_upper(kw)
        } else {
            is_lower(kw)
        };
        if !ok {
            out.push(Finding::new(
                "ConsistentInstructionCasing",
                n.span,
                format!(
                    "Command '{kw}' should match the case of the command majority ({})",
                    if majority_upper {
                        "uppercase"
                    } else {
                        "lowercase"
                    }
                ),
            ));
        }
    }
}
