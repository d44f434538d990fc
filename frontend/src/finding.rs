//! One check result.

use serde::Serialize;

use crate::parser::Span;

/// A rule that fired, where, and why: what `kiln check` prints as `file:line:col: Rule: message`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Finding {
    /// BuildKit's rule name, e.g. `UndefinedVar`.
    pub rule: &'static str,
    /// What is wrong, in BuildKit's words where it has them.
    pub message: String,
    /// The instruction (or token) at fault.
    pub span: Span,
}

impl Finding {
    /// A finding of `rule` at `span`.
    pub fn new(rule: &'static str, span: Span, message: impl Into<String>) -> Self {
        Finding {
            rule,
            message: message.into(),
            span,
        }
    }
}
