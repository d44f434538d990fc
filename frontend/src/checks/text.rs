//! Rules about the Dockerfile's text around its instructions: NoEmptyContinuation (from the parser's warnings)
//! and the experimental InvalidDefinitionDescription (the comments above a FROM or ARG).

use super::Finding;
use crate::instructions::{Command, Instruction};
use crate::parser::{directive_lines, Dockerfile, Span};

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

/// InvalidDefinitionDescription: the comment right above a named FROM or an ARG should start with the stage's
/// or an argument's name (what `--call=outline` shows as its description).
///
/// The comments an instruction keeps are BuildKit's: the comment lines since the previous instruction, a bare
/// `#` dropping those above it, directive lines left out. As in BuildKit's parser an empty line drops nothing,
/// though the rule's documentation suggests one to separate an unrelated comment.
pub fn invalid_definition_descriptions(df: &Dockerfile) -> Vec<Finding> {
    let directives = directive_lines(&df.lines);
    let mut out = Vec::new();
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
