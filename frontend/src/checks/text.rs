//! Rules about the Dockerfile's text around its instructions: NoEmptyContinuation (from the parser's warnings)
//! and the experimental InvalidDefinitionDescription (the comments above a FROM or ARG); and the `# check=`
//! comments that configure the checks for one instruction.

use super::{CheckConfig, Finding};
use crate::instructions::{Command, Instruction};
use crate::parser::{directive_lines, match_directive, Dockerfile, Span};

/// NoEmptyContinuation: an instruction continued over an empty line, reported at its last line as BuildKit
/// reports the parser's warning.
pub fn empty_continuations(df: &Dockerfile) -> Vec<Finding> {
    df.warnings
        .iter()
        .map(|w| {
            let line = w.span.end_line;
            let span = Span {
                start_line: line,
                start_col: 1,
                end_line: line,
                end_col: w.span.end_col,
            };
            Finding::new("NoEmptyContinuation", span, "Empty continuation line")
        })
        .collect()
}

/// The comments BuildKit's parser keeps above each instruction (its PrevComment), in order: the comment lines
/// since the previous instruction, each without its first character and trimmed, a bare `#` dropping those above
/// it, directive lines left out. As in BuildKit's parser an empty line drops nothing.
pub fn preceding_comments(df: &Dockerfile) -> Vec<Vec<String>> {
    let directives = directive_lines(&df.lines);
    let mut out = Vec::with_capacity(df.children.len());
    let mut after = 0;
    for node in &df.children {
        let mut comments: Vec<String> = Vec::new();
        for n in after + 1..node.span.start_line {
            let Some(line) = df.lines.get(n - 1) else {
                break;
            };
            if directives.contains(&n) || !line.trim_start().starts_with('#') {
                continue;
            }
            // BuildKit drops the line's first byte (the `#` unless the line is indented), then trims.
            let comment: String = line.chars().skip(1).collect::<String>().trim().to_string();
            if comment.is_empty() {
                comments.clear();
            } else {
                comments.push(comment);
            }
        }
        after = node.span.end_line;
        out.push(comments);
    }
    out
}

/// InvalidDefinitionDescription: the comment right above a named FROM or an ARG should start with the stage's
/// or an argument's name (what `--call=outline` shows as its description). `comments` is
/// [`preceding_comments`]. (The rule's documentation suggests an empty line to separate an unrelated comment,
/// but BuildKit's parser keeps comments across empty lines, and so does this.)
pub fn invalid_definition_descriptions(df: &Dockerfile, comments: &[Vec<String>]) -> Vec<Finding> {
    let mut out = Vec::new();
    for (node, comments) in df.children.iter().zip(comments) {
        let Some(last) = comments.last() else {
            continue;
        };
        let Ok(inst) = Instruction::from_node(node) else {
            continue;
        };
        let (kw, names): (&str, Vec<&str>) = match &inst.command {
            Command::From(f) => match &f.stage_name {
                Some(name) => ("FROM", vec![name.as_str()]),
                None => continue,
            },
            Command::Arg(decls) => ("ARG", decls.iter().map(|d| d.name.as_str()).collect()),
            _ => continue,
        };
        let first_word = last.split(' ').next().unwrap_or("");
        if names.is_empty() || names.contains(&first_word) {
            continue;
        }
        let example = if names.len() > 1 {
            "<arg_key>"
        } else {
            names[0]
        };
        out.push(Finding::new(
            "InvalidDefinitionDescription",
            node.span,
            format!("Comment for {kw} should follow the format: `# {example} <description>`"),
        ));
    }
    out
}

/// The check configuration of each instruction: `global` merged with the first `check=` comment above it (its
/// value up to the first space, so `# check=skip=all // why` works), as BuildKit's linter merges an instruction's
/// comments; `None` where no such comment parses.
pub fn instruction_configs(
    global: &CheckConfig,
    comments: &[Vec<String>],
) -> Vec<Option<CheckConfig>> {
    comments
        .iter()
        .map(|comments| {
            let value = comments
                .iter()
                .find_map(|c| match match_directive(&format!("#{c}")) {
                    Some((name, value)) if name == "check" => Some(value),
                    _ => None,
                })?;
            let value = value.split(' ').next().unwrap_or("");
            CheckConfig::parse(Some(value))
                .ok()
                .map(|local| global.merged(&local))
        })
        .collect()
}
