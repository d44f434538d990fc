//! kiln's Dockerfile frontend: reads a Dockerfile exactly as BuildKit does and lowers it to the LLB graph.
//!
//! Three layers, as in BuildKit: [`parser`] (text to nodes), [`instructions`] (typed, validated commands) and
//! [`lower`] (stages, build args and the image config each stage accumulates), with [`shell`] expansion between
//! and [`checks`] beside them.

pub mod checks;
pub mod dockerignore;
pub mod error;
pub mod finding;
pub mod instructions;
pub mod lower;
pub mod parser;
mod ports;
pub mod shell;
pub mod subrequests;
mod suggest;

pub use error::FrontendError;
pub use lower::{
    lower, BuildOpts, ImageResolver, Lowered, NamedContext, NoResolver, ResolveError,
    ResolvedImage, StageResult,
};

/// Parses Dockerfile bytes: rejects invalid UTF-8 with the line and column of the first bad byte, then parses.
pub fn parse_bytes(bytes: &[u8]) -> Result<parser::Dockerfile, FrontendError> {
    let text = std::str::from_utf8(bytes).map_err(|e| {
        let good = &bytes[..e.valid_up_to()];
        let line = good.iter().filter(|b| **b == b'\n').count() + 1;
        let line_start = good.iter().rposition(|b| *b == b'\n').map_or(0, |p| p + 1);
        let col = String::from_utf8_lossy(&good[line_start..]).chars().count() + 1;
        FrontendError::at(
            parser::Span {
                start_line: line,
                start_col: col,
                end_line: line,
                end_col: col + 1,
            },
            "the Dockerfile is not valid UTF-8",
        )
    })?;
    Ok(parser::parse(text)?)
}
