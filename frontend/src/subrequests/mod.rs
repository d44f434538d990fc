//! BuildKit's frontend subrequests, which `kiln build --call=outline|targets` answers without building:
//! [`outline`] (the build args, secrets and SSH ids a target uses) and [`targets`] (the stages to choose from).
//! Each result serializes to the JSON BuildKit's frontend returns as `result.json` and prints as its `result.txt`
//! (`PrintOutline`, `PrintTargets`), so tools written against `docker buildx build --call=...` read kiln's.

pub mod lint;
pub mod outline;
pub mod targets;

use serde::Serialize;

use crate::parser::{Dockerfile, Span};

pub use lint::LintResults;
pub use outline::{outline, Outline};
pub use targets::{targets, TargetList};

/// Where a definition sits: BuildKit's `pb.Location`, one range per line of the instruction (as its parser's
/// `Node.Location` makes them), lines counted from 1 and characters left 0, as BuildKit leaves them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Location {
    /// Which of the result's sources (always 0: the one Dockerfile); omitted when 0, as protobuf's JSON tags say.
    #[serde(rename = "sourceIndex", skip_serializing_if = "is_zero")]
    pub source_index: u32,
    /// One range per line.
    pub ranges: Vec<Range>,
}

/// One line range of a [`Location`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Range {
    /// Its start.
    pub start: Position,
    /// Its end.
    pub end: Position,
}

/// A position: a line (from 1) and a character, which BuildKit leaves 0 here (omitted in JSON).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Position {
    /// Line number, from 1.
    pub line: usize,
    /// Character in the line; always 0.
    #[serde(skip_serializing_if = "is_zero_usize")]
    pub character: usize,
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

fn is_zero_usize(n: &usize) -> bool {
    *n == 0
}

impl Location {
    /// The location of an instruction spanning `span`: a range for each of its lines.
    pub fn of(span: Span) -> Location {
        let end = span.end_line.max(span.start_line);
        let ranges = (span.start_line..=end)
            .map(|line| Range {
                start: Position { line, character: 0 },
                end: Position { line, character: 0 },
            })
            .collect();
        Location {
            source_index: 0,
            ranges,
        }
    }

    /// The first line, what BuildKit sorts outline entries by.
    pub fn line(&self) -> usize {
        self.ranges.first().map_or(0, |r| r.start.line)
    }
}

/// Serializes a source (the Dockerfile's bytes) as Go's `encoding/json` does a `[]byte`: standard base64.
fn base64_sources<S: serde::Serializer>(sources: &[Vec<u8>], s: S) -> Result<S::Ok, S::Error> {
    use base64::Engine as _;
    let encoded: Vec<String> = sources
        .iter()
        .map(|b| base64::engine::general_purpose::STANDARD.encode(b))
        .collect();
    encoded.serialize(s)
}

/// One source's bytes as Go's `encoding/json` writes a `[]byte`.
fn base64_bytes<S: serde::Serializer>(bytes: &[u8], s: S) -> Result<S::Ok, S::Error> {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD
        .encode(bytes)
        .serialize(s)
}

/// The Dockerfile lines around `location` as BuildKit's `errdefs.Source.Print` shows them: `file:line`, a rule,
/// the lines (those of the location marked `>>>`) with up to two lines of context (four in all for a one-line
/// location), and a rule. Empty when the location has no lines in the file.
pub fn print_source(filename: &str, data: &[u8], location: &Location) -> String {
    let text = String::from_utf8_lossy(data);
    let lines: Vec<&str> = text.split('\n').collect();
    let Some(mut start) = location.ranges.iter().map(|r| r.start.line).min() else {
        return String::new();
    };
    let mut end = location
        .ranges
        .iter()
        .map(|r| r.end.line.max(r.start.line))
        .max()
        .unwrap_or(start);
    if start > lines.len() || start < 1 {
        return String::new();
    }
    end = end.min(lines.len());
    let pad = if end == start { 4 } else { 2 };
    let first = start;
    let mut p = 0;
    while p < pad {
        if start > 1 {
            start -= 1;
            p += 1;
        }
        if end != lines.len() {
            end += 1;
            p += 1;
        }
        p += 1;
    }
    let marked = |l: usize| {
        location
            .ranges
            .iter()
            .any(|r| r.start.line <= l && r.end.line.max(r.start.line) >= l)
    };
    let mut out = format!("{filename}:{first}\n--------------------\n");
    for (i, line) in lines.iter().enumerate().take(end).skip(start - 1) {
        let n = i + 1;
        let pfx = if marked(n) { ">>>" } else { "   " };
        out.push_str(&format!(" {n:>3} | {pfx} {line}\n"));
    }
    out.push_str("--------------------\n");
    out
}

/// `value` as Go's `json.MarshalIndent(v, "", "  ")` writes it: two-space indents, and `<`, `>`, `&`, U+2028
/// and U+2029 escaped as `\u003c`... (Go escapes them for HTML; they can only occur inside strings, so replacing
/// them in the text is exact).
pub fn go_json<T: Serialize>(value: &T) -> Result<String, serde_json::Error> {
    let text = serde_json::to_string_pretty(value)?;
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '<' => out.push_str("\\u003c"),
            '>' => out.push_str("\\u003e"),
            '&' => out.push_str("\\u0026"),
            '\u{2028}' => out.push_str("\\u2028"),
            '\u{2029}' => out.push_str("\\u2029"),
            c => out.push(c),
        }
    }
    Ok(out)
}

/// Lays out rows as Go's `text/tabwriter` with `minwidth 0`, padding `padding` and spaces: every cell but the
/// last of a row is padded to its column's widest cell plus `padding` (trailing spaces included, as Go writes
/// them); the last cell of a row is written as it is. Widths count characters, as Go counts runes.
fn tabwrite(rows: &[Vec<String>], padding: usize) -> String {
    let mut widths: Vec<usize> = Vec::new();
    for row in rows {
        for (j, cell) in row.iter().enumerate().take(row.len().saturating_sub(1)) {
            let w = cell.chars().count() + padding;
            match widths.get_mut(j) {
                Some(x) => *x = (*x).max(w),
                None => widths.push(w),
            }
        }
    }
    let mut out = String::new();
    for row in rows {
        for (j, cell) in row.iter().enumerate() {
            out.push_str(cell);
            if j + 1 < row.len() {
                let pad = widths[j].saturating_sub(cell.chars().count());
                out.extend(std::iter::repeat_n(' ', pad));
            }
        }
        out.push('\n');
    }
    out
}

/// The comments BuildKit's parser keeps above each instruction, by the instruction's first line.
fn comments_by_line(df: &Dockerfile) -> std::collections::HashMap<usize, Vec<String>> {
    df.children
        .iter()
        .zip(crate::checks::preceding_comments(df))
        .map(|(n, c)| (n.span.start_line, c))
        .collect()
}

/// BuildKit's `getDocComment`: the rest of the first comment line that starts with `name` and a space; empty
/// for an unnamed definition or none.
fn doc_comment(comments: &[String], name: &str) -> String {
    if name.is_empty() {
        return String::new();
    }
    let prefix = format!("{name} ");
    comments
        .iter()
        .find_map(|c| c.strip_prefix(&prefix))
        .unwrap_or("")
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tabwrite_pads_every_cell_but_the_last_as_go_does() {
        let rows = vec![
            vec![
                "BUILD ARG".to_string(),
                "VALUE".into(),
                "DESCRIPTION".into(),
            ],
            vec!["FOO".to_string(), "".into(), "".into()],
        ];
        assert_eq!(
            tabwrite(&rows, 3),
            "BUILD ARG   VALUE   DESCRIPTION\nFOO                 \n"
        );
    }

    #[test]
    fn go_json_escapes_html_characters() {
        assert_eq!(
            go_json(&serde_json::json!({"a": "<b>&"})).unwrap(),
            "{\n  \"a\": \"\\u003cb\\u003e\\u0026\"\n}"
        );
    }
}
