//! Rules about the Dockerfile's text around its instructions: NoEmptyContinuation (from the parser's warnings).

use super::Finding;
use crate::parser::{Dockerfile, Span};

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
