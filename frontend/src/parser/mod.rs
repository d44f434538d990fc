//! The Dockerfile parser: text to a list of instruction nodes, as BuildKit's `parser` package reads it
//! (directives, continuations, comments, heredocs, flags, JSON versus shell form), with every node's span.
//! It checks no instruction's meaning; that is the instructions layer's job.

mod args;
mod directives;
mod dump;
mod heredoc;

pub use args::split_words;
pub use directives::Directives;
pub use dump::{dump, dump_node, quote_go};
pub use heredoc::{chomp_heredoc, Heredoc};

use directives::DirectiveReader;
pub(crate) use directives::{directive_lines, match_directive};

/// BuildKit's (bufio.Scanner's) limit on one physical line.
pub const MAX_LINE: usize = 65_535;

/// A source range: 1-based lines, 1-based columns counted in chars.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize)]
pub struct Span {
    /// First line.
    pub start_line: usize,
    /// Column of the first char on the first line.
    pub start_col: usize,
    /// Last line.
    pub end_line: usize,
    /// Column just past the last char on the last line.
    pub end_col: usize,
}

/// One instruction.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Node {
    /// Lower-cased instruction word.
    pub keyword: String,
    /// The instruction word as written (for the ConsistentInstructionCasing check).
    pub keyword_as_written: String,
    /// `--flag` words, quotes removed.
    pub flags: Vec<String>,
    /// The arguments, as BuildKit's dump prints them.
    pub args: Vec<String>,
    /// The arguments came from a JSON array (exec form).
    pub json: bool,
    /// Heredoc bodies, in order.
    pub heredocs: Vec<Heredoc>,
    /// ONBUILD's trigger instruction.
    pub next: Option<Box<Node>>,
    /// The logical line as written, continuations joined, without heredoc bodies.
    pub original: String,
    /// Where it is.
    pub span: Span,
}

/// A non-fatal remark about the text.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Warning {
    /// What is odd.
    pub message: String,
    /// Where.
    pub span: Span,
}

/// A parsed Dockerfile.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Dockerfile {
    /// Parser directives.
    pub directives: Directives,
    /// Instructions in order.
    pub children: Vec<Node>,
    /// First to last instruction line.
    pub span: Span,
    /// Warnings (empty continuation lines).
    pub warnings: Vec<Warning>,
    /// Physical lines (newline, CR and BOM removed), for error carets.
    pub lines: Vec<String>,
}

/// A parse failure, located when the text is at fault.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct ParseError {
    /// What is wrong.
    pub message: String,
    /// Where.
    pub span: Option<Span>,
}

impl ParseError {
    pub(crate) fn at_line(line: usize, message: impl Into<String>) -> ParseError {
        ParseError {
            message: message.into(),
            span: Some(Span {
                start_line: line,
                start_col: 1,
                end_line: line,
                end_col: 1,
            }),
        }
    }

    fn between(start: usize, end: usize, message: impl Into<String>) -> ParseError {
        ParseError {
            message: message.into(),
            span: Some(Span {
                start_line: start,
                start_col: 1,
                end_line: end,
                end_col: 1,
            }),
        }
    }
}

fn is_comment(line: &str) -> bool {
    line.trim_start().starts_with('#')
}

/// Removes a trailing continuation escape: `Some(rest)` when the line continues.
fn trim_continuation(line: &str, escape: char) -> Option<String> {
    let trimmed = line.trim_end_matches([' ', '\t']);
    let body = trimmed.strip_suffix(escape)?;
    if body.is_empty() {
        return Some(String::new());
    }
    if body.ends_with(escape) {
        return None;
    }
    Some(body.to_string())
}

/// How deep ONBUILD may nest while parsing (the instructions layer then rejects any ONBUILD ONBUILD); a bound
/// keeps hostile input from exhausting the stack.
const MAX_NESTING: usize = 16;

/// Builds a node from a logical line.
fn node_from_line(line: &str, escape: char, span: Span) -> Result<Node, String> {
    node_at_depth(line, escape, span, 0)
}

fn node_at_depth(line: &str, escape: char, span: Span, depth: usize) -> Result<Node, String> {
    if depth > MAX_NESTING {
        return Err(format!(
            "ONBUILD nested more than {MAX_NESTING} levels deep"
        ));
    }
    let (cmd, flags, rest) = args::split_command(line, escape);
    let keyword = cmd.to_lowercase();
    let parsed = args::parse_args(&keyword, &rest, escape)?;
    let next = match parsed.next {
        Some((text, _)) => Some(Box::new(node_at_depth(&text, escape, span, depth + 1)?)),
        None => None,
    };
    Ok(Node {
        keyword,
        keyword_as_written: cmd,
        flags,
        args: parsed.args,
        json: parsed.json,
        heredocs: Vec::new(),
        next,
        original: line.to_string(),
        span,
    })
}

fn can_contain_heredoc(node: &Node) -> bool {
    let n = match (&node.keyword[..], &node.next) {
        ("onbuild", Some(next)) => next,
        _ => node,
    };
    matches!(n.keyword.as_str(), "run" | "copy" | "add") && !n.json
}

/// Parses a Dockerfile's text.
pub fn parse(text: &str) -> Result<Dockerfile, ParseError> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    // Physical lines keep their newline (heredoc bodies need it); `lines` is the display form.
    let raw: Vec<&str> = text.split_inclusive('\n').collect();
    let strip = |l: &str| l.trim_end_matches(['\n', '\r']).to_string();
    let lines: Vec<String> = raw.iter().map(|l| strip(l)).collect();
    if let Some(i) = raw.iter().position(|l| l.len() > MAX_LINE + 1) {
        return Err(ParseError::at_line(
            i + 1,
            format!("dockerfile line greater than max allowed size of {MAX_LINE}"),
        ));
    }
    let mut directives = Directives::default();
    let mut reader = DirectiveReader::default();
    let mut children: Vec<Node> = Vec::new();
    let mut warnings = Vec::new();
    let mut i = 0;
    while i < lines.len() {
        let first = lines[i].trim_start();
        reader.feed(first, &mut directives, i + 1)?;
        let escape = directives.escape;
        let start_line = i + 1;
        let start_col = lines[i].chars().count() - first.chars().count() + 1;
        i += 1;
        let first = if is_comment(first) { "" } else { first };
        let (mut line, mut continues) = match trim_continuation(first, escape) {
            Some(l) => (l, true),
            None => (first.to_string(), false),
        };
        if !continues && line.is_empty() {
            continue;
        }
        let mut empty_continuation = false;
        while continues && i < lines.len() {
            let phys = &lines[i];
            reader.feed(phys, &mut directives, i + 1)?;
            i += 1;
            if is_comment(phys) {
                continue;
            }
            if phys.trim_start().is_empty() {
                empty_continuation = true;
                continue;
            }
            match trim_continuation(phys, escape) {
                Some(l) => line.push_str(&l),
                None => {
                    line.push_str(phys);
                    continues = false;
                }
            }
        }
        let end_line = i;
        let mut span = Span {
            start_line,
            start_col,
            end_line,
            end_col: lines[end_line - 1].chars().count() + 1,
        };
        if empty_continuation {
            warnings.push(Warning {
                message: format!("Empty continuation line found in: {line}"),
                span,
            });
        }
        let mut node = node_from_line(&line, escape, span)
            .map_err(|m| ParseError::between(start_line, end_line, m))?;
        if can_contain_heredoc(&node) && line.contains("<<") {
            let docs = heredoc::heredocs_in_line(&line)
                .map_err(|m| ParseError::between(start_line, end_line, m))?;
            for mut doc in docs {
                let mut terminated = false;
                while i < raw.len() {
                    let body_line = raw[i];
                    i += 1;
                    let mut candidate = body_line.trim_end_matches(['\n', '\r']);
                    if doc.chomp {
                        candidate = candidate.trim_start_matches('\t');
                    }
                    if candidate == doc.name {
                        terminated = true;
                        break;
                    }
                    doc.content.push_str(body_line);
                }
                if !terminated {
                    return Err(ParseError::between(
                        start_line,
                        i,
                        format!(
                            "unterminated heredoc <<{}: no line holds only its terminator",
                            doc.name
                        ),
                    ));
                }
                node.heredocs.push(doc);
            }
            span.end_line = i;
            span.end_col = lines[i - 1].chars().count() + 1;
            node.span = span;
            if let Some(next) = node.next.as_mut() {
                next.span = span;
                next.heredocs = std::mem::take(&mut node.heredocs);
            }
        }
        children.push(node);
    }
    let (Some(first), Some(last)) = (children.first(), children.last()) else {
        return Err(ParseError::at_line(
            lines.len().max(1),
            "file with no instructions",
        ));
    };
    let span = Span {
        start_line: first.span.start_line,
        start_col: first.span.start_col,
        end_line: last.span.end_line,
        end_col: last.span.end_col,
    };
    Ok(Dockerfile {
        directives,
        children,
        span,
        warnings,
        lines,
    })
}

#[cfg(test)]
mod tests;
