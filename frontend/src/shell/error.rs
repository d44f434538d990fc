//! Typed errors of shell-word expansion.
//!
//! The message texts follow BuildKit's shell lexer where its wording is known, so that
//! build output reads the same as with `docker build`.

/// Everything that can go wrong while expanding a shell word.
///
/// The public entry points of [`crate::shell::Lexer`] always return [`ShellError::Failed`],
/// which names the word being processed (as BuildKit does) and wraps the precise cause;
/// use [`ShellError::cause`] to match on the cause.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ShellError {
    /// The word being expanded and what went wrong in it (BuildKit: `failed to process "…": …`).
    #[error("failed to process {}: {cause}", go_quote(&clip(.word)))]
    Failed {
        /// The word as given to the lexer.
        word: String,
        /// The underlying error.
        cause: Box<ShellError>,
    },
    /// `${` without its closing brace, e.g. `${FOO` or `${FOO:-bar`.
    #[error("syntax error: missing '}}'")]
    MissingBrace,
    /// `${}`, `${{x}`, `${:x}` and similar.
    #[error("syntax error: bad substitution")]
    BadSubstitution,
    /// `${FOO/pattern` without the `/` that starts the replacement.
    #[error("syntax error: missing '/' in ${{}}")]
    MissingSlash,
    /// An operator BuildKit does not support, e.g. `:=`, `=`, `:#`, `${x:YYY}` or `${.}`.
    #[error("unsupported modifier ({0}) in substitution")]
    UnsupportedModifier(String),
    /// A single-quoted string that is never closed.
    #[error("unexpected end of statement while looking for matching single-quote")]
    UnterminatedSingleQuote,
    /// A double-quoted string that is never closed.
    #[error("unexpected end of statement while looking for matching double-quote")]
    UnterminatedDoubleQuote,
    /// The input ended while looking for the given stop character.
    #[error("unexpected end of statement while looking for matching {0}")]
    UnexpectedEnd(char),
    /// `${NAME?msg}` / `${NAME:?msg}` on an unset (or empty) variable; `message` is already expanded.
    #[error("{name}: {message}")]
    Required {
        /// The variable's name.
        name: String,
        /// The user's message, or BuildKit's default text.
        message: String,
    },
    /// A `#`, `%` or `/` pattern that cannot be used, e.g. one containing `\x`.
    #[error("invalid pattern ({pattern}) in substitution: {reason}")]
    InvalidPattern {
        /// The pattern after expansion.
        pattern: String,
        /// Why it was rejected.
        reason: String,
    },
    /// `${` nested more deeply than the lexer allows; guards the stack against hostile input.
    #[error("syntax error: substitutions nested deeper than {0} levels")]
    TooDeep(usize),
}

impl ShellError {
    /// The innermost error, looking through [`ShellError::Failed`]; convenient for matching.
    pub fn cause(&self) -> &ShellError {
        match self {
            ShellError::Failed { cause, .. } => cause.cause(),
            other => other,
        }
    }
}

/// Quote a string the way Go's `%q` does, so error texts match BuildKit's.
///
/// Printable characters stay as they are; `"` and `\` are escaped; control characters use
/// Go's short escapes, `\xNN` or `\uNNNN`/`\UNNNNNNNN`.
/// A word cut to its first 200 characters for a message (a hostile Dockerfile's word can be megabytes long).
fn clip(word: &str) -> String {
    const MAX: usize = 200;
    match word.char_indices().nth(MAX) {
        None => word.to_string(),
        Some((at, _)) => format!("{}… ({} more bytes)", &word[..at], word.len() - at),
    }
}

pub fn go_quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\u{7}' => out.push_str("\\a"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{b}' => out.push_str("\\v"),
            c if (c as u32) < 0x20 || c as u32 == 0x7f => {
                out.push_str(&format!("\\x{:02x}", c as u32));
            }
            c if c.is_control() || (c != ' ' && c.is_whitespace()) => {
                if (c as u32) > 0xffff {
                    out.push_str(&format!("\\U{:08x}", c as u32));
                } else {
                    out.push_str(&format!("\\u{:04x}", c as u32));
                }
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_match_buildkit_wording() {
        assert_eq!(
            ShellError::BadSubstitution.to_string(),
            "syntax error: bad substitution"
        );
        assert_eq!(
            ShellError::MissingBrace.to_string(),
            "syntax error: missing '}'"
        );
        assert_eq!(
            ShellError::MissingSlash.to_string(),
            "syntax error: missing '/' in ${}"
        );
        assert_eq!(
            ShellError::UnsupportedModifier(":=".into()).to_string(),
            "unsupported modifier (:=) in substitution"
        );
        let e = ShellError::Failed {
            word: "${X:?oops}".into(),
            cause: Box::new(ShellError::Required {
                name: "X".into(),
                message: "oops".into(),
            }),
        };
        assert_eq!(e.to_string(), "failed to process \"${X:?oops}\": X: oops");
        assert!(matches!(e.cause(), ShellError::Required { .. }));
    }

    #[test]
    fn a_long_word_is_clipped_in_messages() {
        let e = ShellError::Failed {
            word: "x".repeat(10_000),
            cause: Box::new(ShellError::MissingBrace),
        };
        let text = e.to_string();
        assert!(text.len() < 300, "{text}");
        assert!(text.contains("(9800 more bytes)"), "{text}");
    }

    #[test]
    fn go_quote_escapes_like_go() {
        assert_eq!(go_quote("a\"b\\c"), r#""a\"b\\c""#);
        assert_eq!(go_quote("\0\t\u{7f}"), r#""\x00\t\x7f""#);
        assert_eq!(go_quote("한국어 ♥"), "\"한국어 ♥\"");
        assert_eq!(go_quote("\u{a0}"), r#""\u00a0""#);
    }
}
