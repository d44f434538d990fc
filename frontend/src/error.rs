//! The frontend's error: what went wrong and where, rendered as `file:line:column` with the offending line and a
//! caret, so a user can fix a Dockerfile without guessing.

use crate::parser::Span;

/// A frontend failure. Every variant that comes from the Dockerfile's text carries the span of the instruction
/// (or the exact token) at fault.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct FrontendError {
    /// One sentence saying what is wrong and, where possible, what would be valid.
    pub message: String,
    /// Where in the Dockerfile; `None` for errors about build options rather than text.
    pub span: Option<Span>,
}

impl FrontendError {
    /// An error located at `span`.
    pub fn at(span: Span, message: impl Into<String>) -> Self {
        FrontendError {
            message: message.into(),
            span: Some(span),
        }
    }

    /// An error about the build request (flags, build args), not about a line.
    pub fn request(message: impl Into<String>) -> Self {
        FrontendError {
            message: message.into(),
            span: None,
        }
    }

    /// Renders `file:line:column: message`, then the source line and a caret under the column, as compilers do.
    /// `lines` are the Dockerfile's physical lines ([`crate::parser::Dockerfile::lines`]).
    pub fn render(&self, file: &str, lines: &[String]) -> String {
        render_located(file, lines, self.span, &self.message)
    }
}

/// Shared by errors and check warnings: one located message with its source line and caret.
pub fn render_located(file: &str, lines: &[String], span: Option<Span>, message: &str) -> String {
    let Some(span) = span else {
        return format!("{file}: {message}");
    };
    let line_no = span.start_line.max(1);
    let col = span.start_col.max(1);
    let mut out = format!("{file}:{line_no}:{col}: {message}");
    if let Some(line) = lines.get(line_no - 1) {
        // A window of the line around the column: a hostile line can be megabytes long.
        let chars: Vec<char> = line
            .chars()
            .map(|c| if c == '\t' { ' ' } else { c })
            .collect();
        let first = (col - 1).saturating_sub(WINDOW / 2).min(chars.len());
        let last = (first + WINDOW).min(chars.len());
        let mut shown: String = chars[first..last].iter().collect();
        let lead = if first > 0 { "…" } else { "" };
        if last < chars.len() {
            shown.push('…');
        }
        let gutter = format!("{line_no}");
        out.push_str(&format!(
            "\n {gutter} | {lead}{shown}\n {} | {}",
            " ".repeat(gutter.len()),
            " ".repeat(lead.chars().count())
        ));
        out.push_str(&" ".repeat((col - 1).saturating_sub(first)));
        let width = if span.end_line == span.start_line && span.end_col > span.start_col {
            span.end_col - span.start_col
        } else {
            chars.len().saturating_sub(col - 1).max(1)
        };
        out.push('^');
        out.push_str(&"~".repeat(width.saturating_sub(1).min(last.saturating_sub(col))));
    }
    out
}

/// How many characters of a source line an error shows.
const WINDOW: usize = 160;

impl From<crate::parser::ParseError> for FrontendError {
    fn from(e: crate::parser::ParseError) -> Self {
        FrontendError {
            message: e.message,
            span: e.span,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_file_line_column_and_caret() {
        let lines = vec!["FROM alpine".to_string(), "RUN --bogus=1 true".to_string()];
        let span = Span {
            start_line: 2,
            start_col: 5,
            end_line: 2,
            end_col: 14,
        };
        let e = FrontendError::at(span, "unknown flag: bogus");
        let text = e.render("Dockerfile", &lines);
        let expected = format!(
            "Dockerfile:2:5: unknown flag: bogus\n 2 | RUN --bogus=1 true\n   |     ^{}",
            "~".repeat(8)
        );
        assert_eq!(text, expected, "the caret spans the 9 chars of --bogus=1");
    }

    #[test]
    fn a_huge_line_is_shown_as_a_window_around_the_column() {
        let long = format!("RUN echo {}", "a".repeat(1_000_000));
        let lines = vec!["FROM busybox".to_string(), long];
        let span = Span {
            start_line: 2,
            start_col: 1,
            end_line: 2,
            end_col: 1,
        };
        let text = FrontendError::at(span, "too long").render("Dockerfile", &lines);
        assert!(text.len() < 600, "{}", text.len());
        assert!(
            text.contains(" 2 | RUN echo aaa") && text.contains("a…\n"),
            "{text}"
        );
        // A column far along the line: the window moves there, and the caret stays under it.
        let mid = Span {
            start_line: 2,
            start_col: 500_000,
            end_line: 2,
            end_col: 500_003,
        };
        let text = FrontendError::at(mid, "here").render("Dockerfile", &lines);
        let rows: Vec<&str> = text.lines().collect();
        assert!(rows[1].starts_with(" 2 | …aaa"), "{text}");
        let caret = rows[2].find('^').expect("caret");
        assert_eq!(rows[2][caret..].trim_end(), "^~~");
        // " 2 | " is five characters, then the lead "…", then 80 characters of the window before the column.
        assert_eq!(rows[2].chars().position(|c| c == '^'), Some(5 + 1 + 80));
    }

    #[test]
    fn request_errors_have_no_location() {
        let e = FrontendError::request("target stage \"x\" could not be found");
        assert_eq!(
            e.render("Dockerfile", &[]),
            "Dockerfile: target stage \"x\" could not be found"
        );
    }
}
