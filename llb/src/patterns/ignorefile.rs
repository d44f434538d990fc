//! Reading a `.dockerignore` file into patterns, as Docker's
//! `ignorefile.ReadAll` does, so that kiln and Docker ignore the same files for
//! the same file.
//!
//! Line by line: a UTF-8 byte-order mark is dropped from the first line; a
//! line whose very first character is `#` is a comment (the test happens before
//! trimming, so `  # x` is the pattern `# x`); surrounding whitespace is
//! trimmed and blank lines are dropped; a leading `!` is split off and the rest
//! trimmed again (so `! /x` is `!x`); the rest is cleaned like `filepath.Clean`
//! and one leading `/` is removed, because patterns are relative to the
//! context root. A lone `!` stays `!` here; `PatternMatcher::new` then rejects
//! it, as Docker does.

use super::clean_path;

/// .dockerignore reading as Docker's ignorefile.ReadAll: comments (#) and blank lines dropped, whitespace trimmed, leading '/' removed, "! /x" → "!x", a lone "!" kept (the matcher then rejects it), paths cleaned.
///
/// Lines end at `\n`; a `\r` before it is whitespace and trimmed with the rest.
pub fn read_ignore_file(text: &str) -> Vec<String> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut patterns = Vec::new();
    for line in text.split('\n') {
        if line.starts_with('#') {
            continue;
        }
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        let (invert, rest) = match line.strip_prefix('!') {
            Some(rest) => (true, rest.trim()),
            None => (false, line),
        };
        let mut pattern = String::new();
        if invert {
            pattern.push('!');
        }
        if !rest.is_empty() {
            let cleaned = clean_path(rest);
            let relative = match cleaned.strip_prefix('/') {
                Some(stripped) if !stripped.is_empty() => stripped,
                _ => cleaned.as_str(),
            };
            pattern.push_str(relative);
        }
        patterns.push(pattern);
    }
    patterns
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::patterns::{PatternError, PatternMatcher};

    #[test]
    fn docker_read_all_example() {
        let content = "test1\n/test2\n/a/file/here\n\nlastfile\n# this is a comment\n! /inverted/abs/path\n!\n! ";
        assert_eq!(
            read_ignore_file(content),
            [
                "test1",
                "test2",
                "a/file/here",
                "lastfile",
                "!inverted/abs/path",
                "!",
                "!"
            ]
        );
    }

    #[test]
    fn empty_input_gives_no_patterns() {
        assert!(read_ignore_file("").is_empty());
        assert!(read_ignore_file("\n\n   \n\t\r\n# only a comment\n").is_empty());
    }

    #[test]
    fn comments_are_only_lines_starting_with_hash() {
        assert_eq!(
            read_ignore_file("#x\n  # not a comment\na#b"),
            ["# not a comment", "a#b"]
        );
        // `!#x` is an exclusion of the pattern `#x`, not a comment.
        assert_eq!(read_ignore_file("!#x"), ["!#x"]);
    }

    #[test]
    fn whitespace_and_line_endings() {
        assert_eq!(read_ignore_file("  a  \r\n\tb\t\r\nc"), ["a", "b", "c"]);
        assert_eq!(read_ignore_file("!   spaced/out  "), ["!spaced/out"]);
        // Inner spaces are part of the pattern.
        assert_eq!(read_ignore_file("my file.txt"), ["my file.txt"]);
    }

    #[test]
    fn byte_order_mark_only_on_first_line() {
        assert_eq!(read_ignore_file("\u{feff}a\nb"), ["a", "b"]);
        assert_eq!(read_ignore_file("\u{feff}#comment\nb"), ["b"]);
        // U+FEFF is not whitespace, so later on it stays part of a pattern.
        assert_eq!(read_ignore_file("a\n\u{feff}b"), ["a", "\u{feff}b"]);
    }

    #[test]
    fn patterns_are_cleaned_and_made_relative() {
        assert_eq!(
            read_ignore_file("./a\na/\na//b/./c/..\n/\n//x\n/../y\n!./z/\n../up\n.\n!/"),
            ["a", "a", "a/b", "/", "x", "y", "!z", "../up", ".", "!/"]
        );
    }

    #[test]
    fn output_feeds_the_matcher() {
        let patterns = read_ignore_file("# deps\nnode_modules\n*.log\n!important.log\n/build/\n");
        assert_eq!(
            patterns,
            ["node_modules", "*.log", "!important.log", "build"]
        );
        let matcher = PatternMatcher::new(&patterns).unwrap();
        assert!(matcher.matches_or_parent_matches("node_modules/x/index.js"));
        assert!(matcher.matches_or_parent_matches("debug.log"));
        assert!(!matcher.matches_or_parent_matches("important.log"));
        assert!(matcher.matches_or_parent_matches("build/out.bin"));
        assert!(!matcher.matches_or_parent_matches("src/main.rs"));
        // A lone `!` survives reading and is rejected by the matcher.
        let lone = read_ignore_file("a\n!\n");
        assert_eq!(
            PatternMatcher::new(&lone).unwrap_err(),
            PatternError::LoneExclamation
        );
    }
}
