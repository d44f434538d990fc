//! Shell patterns for `${VAR#p}`, `${VAR%p}` and `${VAR/p/r}`, matched the way BuildKit does.
//!
//! BuildKit turns these patterns into Go regular expressions; kiln has no regex crate, so this
//! module implements the same language directly:
//! - `*` matches any run of characters, `?` matches one character. Like Go's `.`, neither
//!   matches a newline.
//! - `\*`, `\?` and `\\` stand for the literal character. A `\` right before `}` or `/` is
//!   dropped (it only kept the character from ending the `${...}`). Any other `\x`, or a
//!   trailing `\`, makes the pattern invalid.
//! - Everything else is literal, including `[`, `]` and the other regex metacharacters
//!   (BuildKit does not support bracket expressions).
//!
//! Matching follows Go's leftmost-first semantics: the leftmost start wins, and at that start
//! each `*` prefers the longest (greedy) or shortest (lazy) run, earlier stars first. The
//! matcher is a dynamic programme over (pattern position, text position), so it takes
//! O(pattern × text) time, never recurses and never backtracks exponentially.

/// One element of a parsed pattern.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Tok {
    /// A character that must be present as is.
    Lit(char),
    /// `?`: any one character except a newline.
    Any,
    /// `*`: any run of characters without a newline.
    Star,
}

/// A parsed shell pattern, ready to match against values.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Glob {
    toks: Vec<Tok>,
}

impl Glob {
    /// Parse `pattern`; the error text is the reason, as BuildKit words it (`invalid escape '\x'`).
    pub fn parse(pattern: &str) -> Result<Self, String> {
        // Go's text/scanner, which BuildKit uses to read the pattern, skips a leading BOM.
        let pattern = pattern.strip_prefix('\u{feff}').unwrap_or(pattern);
        let mut toks = Vec::with_capacity(pattern.len());
        let mut chars = pattern.chars().peekable();
        while let Some(c) = chars.next() {
            match c {
                '*' => toks.push(Tok::Star),
                '?' => toks.push(Tok::Any),
                '\\' => match chars.peek().copied() {
                    // The escape only protected `}` or `/` inside `${...}`; the next round
                    // takes that character literally.
                    Some('}') | Some('/') => {}
                    Some(n @ ('*' | '?' | '\\')) => {
                        chars.next();
                        toks.push(Tok::Lit(n));
                    }
                    Some(n) => return Err(format!("invalid escape '\\{n}'")),
                    None => return Err("invalid escape '\\\u{fffd}'".to_string()),
                },
                c => toks.push(Tok::Lit(c)),
            }
        }
        Ok(Glob { toks })
    }

    /// For every start position in `text` (0..=len), where the match beginning there ends,
    /// or `None` when the pattern does not match there.
    fn match_ends(&self, text: &[char], greedy: bool) -> Vec<Option<usize>> {
        let len = text.len();
        // Row for "pattern exhausted": the match ends where it is.
        let mut next: Vec<Option<usize>> = (0..=len).map(Some).collect();
        let mut cur: Vec<Option<usize>> = vec![None; len + 1];
        for tok in self.toks.iter().rev() {
            match *tok {
                Tok::Lit(c) => {
                    for t in 0..=len {
                        cur[t] = if t < len && text[t] == c {
                            next[t + 1]
                        } else {
                            None
                        };
                    }
                }
                Tok::Any => {
                    for t in 0..=len {
                        cur[t] = if t < len && text[t] != '\n' {
                            next[t + 1]
                        } else {
                            None
                        };
                    }
                }
                Tok::Star => {
                    // `best` is the run length's end chosen for the star starting at `t`:
                    // the largest (greedy) or smallest (lazy) k in t..=L(t) where the rest
                    // matches, L(t) being the next newline or the end of the text.
                    let mut best: Option<usize> = None;
                    for t in (0..=len).rev() {
                        if t == len || text[t] == '\n' {
                            best = next[t].map(|_| t);
                        } else if next[t].is_some() && (!greedy || best.is_none()) {
                            best = Some(t);
                        }
                        cur[t] = best.and_then(|k| next[k]);
                    }
                }
            }
            std::mem::swap(&mut next, &mut cur);
        }
        next
    }

    /// Remove the shortest (`greedy == false`) or longest matching prefix from `value`.
    pub fn trim_prefix(&self, value: &str, greedy: bool) -> String {
        let text: Vec<char> = value.chars().collect();
        match self.match_ends(&text, greedy).first().copied().flatten() {
            Some(end) => text[end..].iter().collect(),
            None => value.to_string(),
        }
    }

    /// Every non-overlapping leftmost match as `(start, end)` char indices, in the order Go's
    /// `ReplaceAll` visits them (empty matches right after a match are still reported, with
    /// `replace` telling whether Go would substitute them).
    fn all_matches(&self, text: &[char]) -> Vec<(usize, usize, bool)> {
        let ends = self.match_ends(text, true);
        let mut out = Vec::new();
        let mut search = 0usize;
        let mut last_end = 0usize;
        while search <= text.len() {
            let Some((start, end)) = (search..=text.len()).find_map(|s| ends[s].map(|e| (s, e)))
            else {
                break;
            };
            let replace = end > last_end || start == 0;
            out.push((start, end, replace));
            last_end = end;
            // Always advance at least one character.
            search = if end <= search { search + 1 } else { end };
        }
        out
    }

    /// Replace the first match (or every match when `all`) in `value`.
    ///
    /// For a single replacement the text is inserted literally. For `all` it is a Go
    /// regexp template, as in BuildKit: `$$` is `$`, `$0`/`${0}` the matched text, any other
    /// `$name` nothing, and a `$` that starts no name stays literal.
    pub fn replace(&self, value: &str, replacement: &str, all: bool) -> String {
        let text: Vec<char> = value.chars().collect();
        if !all {
            let ends = self.match_ends(&text, true);
            return match (0..=text.len()).find_map(|s| ends[s].map(|e| (s, e))) {
                Some((s, e)) => {
                    let mut out: String = text[..s].iter().collect();
                    out.push_str(replacement);
                    out.extend(&text[e..]);
                    out
                }
                None => value.to_string(),
            };
        }
        let mut out = String::with_capacity(value.len());
        let mut last_end = 0usize;
        for (start, end, replace) in self.all_matches(&text) {
            out.extend(&text[last_end.min(start)..start]);
            if replace {
                let matched: String = text[start..end].iter().collect();
                expand_template(&mut out, replacement, &matched);
            }
            last_end = end;
        }
        out.extend(&text[last_end.min(text.len())..]);
        out
    }
}

/// Reverse a pattern but keep each `\x` pair in order (`a\*c` becomes `c\*a`), so a suffix
/// search can run as a prefix search on the reversed value, as BuildKit does.
pub fn reverse_pattern(pattern: &str) -> String {
    let chars: Vec<char> = pattern.chars().collect();
    let mut units: Vec<&[char]> = Vec::with_capacity(chars.len());
    let mut i = 0;
    while i < chars.len() {
        if chars[i] == '\\' && i + 1 < chars.len() {
            units.push(&chars[i..i + 2]);
            i += 2;
        } else {
            units.push(&chars[i..i + 1]);
            i += 1;
        }
    }
    units.iter().rev().flat_map(|u| u.iter()).collect()
}

/// Append Go's regexp template expansion of `template` for one match without groups.
fn expand_template(out: &mut String, template: &str, matched: &str) {
    let mut rest = template;
    while let Some(idx) = rest.find('$') {
        out.push_str(&rest[..idx]);
        rest = &rest[idx + 1..];
        if let Some(after) = rest.strip_prefix('$') {
            out.push('$');
            rest = after;
            continue;
        }
        match template_name(rest) {
            Some((name, after)) => {
                if name == "0" {
                    out.push_str(matched);
                }
                rest = after;
            }
            // Malformed: the `$` is kept as text.
            None => out.push('$'),
        }
    }
    out.push_str(rest);
}

/// Read `name` or `{name}` at the start of `s` (Go's rules); returns the name and the rest.
fn template_name(s: &str) -> Option<(&str, &str)> {
    let (brace, body) = match s.strip_prefix('{') {
        Some(b) => (true, b),
        None => (false, s),
    };
    let end = body
        .char_indices()
        .find(|&(_, c)| !(c.is_alphanumeric() || c == '_'))
        .map_or(body.len(), |(i, _)| i);
    if end == 0 {
        return None;
    }
    let name = &body[..end];
    if brace {
        body[end..].strip_prefix('}').map(|after| (name, after))
    } else {
        Some((name, &body[end..]))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn g(p: &str) -> Glob {
        Glob::parse(p).expect("valid pattern")
    }

    #[test]
    fn invalid_escapes_are_rejected() {
        for p in ["\\", "\\x", "\\\\\\", "a\\b"] {
            assert!(Glob::parse(p).is_err(), "{p:?} should be invalid");
        }
        assert_eq!(Glob::parse("\\x").unwrap_err(), "invalid escape '\\x'");
        for p in ["*", "?", "\\*", "(()[]{\\}^$.\\*\\?|\\\\", "\\/x", ""] {
            assert!(Glob::parse(p).is_ok(), "{p:?} should be valid");
        }
    }

    #[test]
    fn prefix_shortest_and_longest() {
        assert_eq!(g("*x*y").trim_prefix("xxyy", false), "y");
        assert_eq!(g("*x").trim_prefix("xxyy", true), "yy");
        assert_eq!(g("*x").trim_prefix("xxyy", false), "xyy");
        assert_eq!(g("*").trim_prefix("xxyy", false), "xxyy");
        assert_eq!(g("*").trim_prefix("xxyy", true), "");
        assert_eq!(g("").trim_prefix("xxyy", true), "xxyy");
        assert_eq!(g("?\\?").trim_prefix("???y", false), "?y");
        assert_eq!(g("z").trim_prefix("xxyy", false), "xxyy");
        assert_eq!(
            g("()[]{\\}^$.\\*\\?|\\\\").trim_prefix("()[]{}^$.*?|\\x", false),
            "x"
        );
    }

    #[test]
    fn wildcards_do_not_cross_newlines() {
        assert_eq!(g("*b").trim_prefix("a\nb", true), "a\nb");
        assert_eq!(g("a?b").trim_prefix("a\nb", true), "a\nb");
        assert_eq!(g("*").trim_prefix("ab\ncd", true), "\ncd");
    }

    #[test]
    fn multibyte_text() {
        assert_eq!(g("?").trim_prefix("한국어", false), "국어");
        assert_eq!(g("*국").trim_prefix("한국어국", true), "");
        let rev = Glob::parse(&reverse_pattern("어")).unwrap();
        let v: String = "한국어".chars().rev().collect();
        let out: String = rev.trim_prefix(&v, false).chars().rev().collect();
        assert_eq!(out, "한국");
    }

    #[test]
    fn reverse_keeps_escape_pairs() {
        assert_eq!(reverse_pattern("a\\*c"), "c\\*a");
        assert_eq!(reverse_pattern("\\\\\\ab"), "b\\a\\\\");
        assert_eq!(reverse_pattern("ab\\"), "\\ba");
        assert_eq!(reverse_pattern("\\\\b"), "b\\\\");
        assert_eq!(reverse_pattern("👽\\🚀🖖"), "🖖\\🚀👽");
    }

    #[test]
    fn replace_first_and_all() {
        let p = g("\\*/");
        assert_eq!(p.replace("/foo*/*/*.txt", ".", false), "/foo.*/*.txt");
        assert_eq!(p.replace("/foo*/*/*.txt", ".", true), "/foo..*.txt");
        assert_eq!(g("/?/").replace("/a/foo/b/c.txt", "/", true), "/foo/c.txt");
        assert_eq!(g("").replace("xxyy", "ww", false), "wwxxyy");
        assert_eq!(g("").replace("xxyy", "", true), "xxyy");
        assert_eq!(g("").replace("ab", "-", true), "-a-b-");
        assert_eq!(g("x*").replace("axxb", "-", true), "a-");
        assert_eq!(g("q").replace("ab", "-", true), "ab");
    }

    #[test]
    fn replace_all_expands_go_templates() {
        assert_eq!(g("b").replace("abc", "[$0]", true), "a[b]c");
        assert_eq!(g("b").replace("abc", "[${0}]", true), "a[b]c");
        assert_eq!(g("b").replace("abc", "$$", true), "a$c");
        assert_eq!(g("b").replace("abc", "$x.", true), "a.c");
        assert_eq!(g("b").replace("abc", "$", true), "a$c");
        assert_eq!(g("b").replace("abc", "${x", true), "a${xc");
        assert_eq!(g("b").replace("abc", "$0", false), "a$0c");
    }

    #[test]
    fn long_inputs_are_fast() {
        let value = "a".repeat(3000);
        let pattern = "*a".repeat(50) + "b";
        assert_eq!(g(&pattern).trim_prefix(&value, true), value);
    }
}
