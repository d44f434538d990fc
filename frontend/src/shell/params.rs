//! The `${NAME<op>word}` operators, applied once the lexer has read the name and the word.
//!
//! Kept apart from the scanner so each operator's rule (unset versus empty, which message,
//! shortest versus longest match) can be read and tested on its own.

use super::error::ShellError;
use super::glob::{reverse_pattern, Glob};

/// The text BuildKit uses for `${NAME?}` on an unset variable.
const UNSET_MESSAGE: &str = "is not allowed to be unset";
/// The text BuildKit uses for `${NAME:?}` on an empty variable.
const EMPTY_MESSAGE: &str = "is not allowed to be empty";

/// Apply `-`, `+`, `?`, `#` or `%` (with `colon` for the `:` forms) to a variable.
///
/// `value` is `None` when the variable is unset. `word` is the already expanded text after
/// the operator; for `#` and `%` it still holds its escapes and a doubled operator character.
pub(super) fn apply(
    name: &str,
    op: char,
    colon: bool,
    value: Option<String>,
    word: String,
) -> Result<String, ShellError> {
    // With the colon, an empty value counts as unset.
    let missing = match &value {
        None => true,
        Some(v) => colon && v.is_empty(),
    };
    match op {
        '-' => Ok(if missing {
            word
        } else {
            value.unwrap_or_default()
        }),
        '+' => Ok(if missing { String::new() } else { word }),
        '?' => {
            if missing {
                let default = if value.is_none() {
                    UNSET_MESSAGE
                } else {
                    EMPTY_MESSAGE
                };
                let message = if word.is_empty() {
                    default.to_string()
                } else {
                    word
                };
                return Err(ShellError::Required {
                    name: name.to_string(),
                    message,
                });
            }
            Ok(value.unwrap_or_default())
        }
        '#' | '%' => {
            // `##` and `%%` ask for the longest match; the word starts with the second one.
            let (greedy, pattern) = match word.strip_prefix(op) {
                Some(rest) => (true, rest),
                None => (false, word.as_str()),
            };
            let value = value.unwrap_or_default();
            if op == '#' {
                trim_prefix(pattern, &value, greedy)
            } else {
                trim_suffix(pattern, &value, greedy)
            }
        }
        other => {
            let chs = if colon {
                format!(":{other}")
            } else {
                other.to_string()
            };
            Err(ShellError::UnsupportedModifier(chs))
        }
    }
}

/// `${NAME#pattern}` / `${NAME##pattern}`.
fn trim_prefix(pattern: &str, value: &str, greedy: bool) -> Result<String, ShellError> {
    let glob = parse(pattern, pattern)?;
    Ok(glob.trim_prefix(value, greedy))
}

/// `${NAME%pattern}` / `${NAME%%pattern}`: a prefix search on the reversed value, as BuildKit.
fn trim_suffix(pattern: &str, value: &str, greedy: bool) -> Result<String, ShellError> {
    let glob = parse(&reverse_pattern(pattern), pattern)?;
    let reversed: String = value.chars().rev().collect();
    Ok(glob.trim_prefix(&reversed, greedy).chars().rev().collect())
}

/// `${NAME/pattern/replacement}` and, with `all`, `${NAME//pattern/replacement}`.
pub(super) fn substitute(
    value: &str,
    pattern: &str,
    replacement: &str,
    all: bool,
) -> Result<String, ShellError> {
    let glob = parse(pattern, pattern)?;
    Ok(glob.replace(value, replacement, all))
}

/// Parse `text` as a pattern, reporting errors against the pattern as the user wrote it.
fn parse(text: &str, shown: &str) -> Result<Glob, ShellError> {
    Glob::parse(text).map_err(|reason| ShellError::InvalidPattern {
        pattern: shown.to_string(),
        reason,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(v: &str) -> Option<String> {
        Some(v.to_string())
    }

    #[test]
    fn default_and_alternative() {
        assert_eq!(apply("X", '-', false, set(""), "w".into()).unwrap(), "");
        assert_eq!(apply("X", '-', true, set(""), "w".into()).unwrap(), "w");
        assert_eq!(apply("X", '-', false, None, "w".into()).unwrap(), "w");
        assert_eq!(apply("X", '+', false, set(""), "w".into()).unwrap(), "w");
        assert_eq!(apply("X", '+', true, set(""), "w".into()).unwrap(), "");
        assert_eq!(apply("X", '+', true, None, "w".into()).unwrap(), "");
    }

    #[test]
    fn required_messages() {
        let err = apply("X", '?', false, None, String::new()).unwrap_err();
        assert_eq!(err.to_string(), "X: is not allowed to be unset");
        let err = apply("X", '?', true, set(""), String::new()).unwrap_err();
        assert_eq!(err.to_string(), "X: is not allowed to be empty");
        let err = apply("X", '?', true, None, "custom".into()).unwrap_err();
        assert_eq!(err.to_string(), "X: custom");
        assert_eq!(apply("X", '?', false, set(""), "m".into()).unwrap(), "");
    }

    #[test]
    fn trims_and_unsupported() {
        assert_eq!(
            apply("X", '%', false, set("a***yy*"), "%\\**\\*".into()).unwrap(),
            "a"
        );
        assert_eq!(
            apply("X", '%', false, set("xx**"), "%\\**".into()).unwrap(),
            "xx"
        );
        assert_eq!(
            apply("X", '%', false, set("xxyy"), "x".into()).unwrap(),
            "xxyy"
        );
        assert_eq!(
            apply("X", '%', false, set("xxyy"), "y*".into()).unwrap(),
            "xxy"
        );
        assert_eq!(
            apply("X", '%', false, set("xxyy"), "%y*".into()).unwrap(),
            "xx"
        );
        assert_eq!(
            apply("X", '=', true, set("v"), String::new()).unwrap_err(),
            ShellError::UnsupportedModifier(":=".into())
        );
        assert!(matches!(
            apply("X", '#', false, set("v"), "\\q".into()),
            Err(ShellError::InvalidPattern { .. })
        ));
    }
}
