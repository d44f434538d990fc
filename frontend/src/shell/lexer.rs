//! The word processor: walks a word once, removing quotes and escapes and expanding `$`.
//!
//! It mirrors the structure of BuildKit's lexer: one routine reads until a stop character
//! (end of input, `}` or `/`), with helpers for single quotes, double quotes, `$` and names.
//! Reading `${NAME:-word}` re-enters the routine for `word`, so nesting is capped at
//! [`MAX_DEPTH`] to keep hostile input from exhausting the stack.
//!
//! While it works it builds both the single-word result and the split word list, and notes
//! which variables were found (`used`) and which were referenced but unset (`unset`).

use std::collections::BTreeSet;

use super::error::ShellError;
use super::{params, Env, Lexer};

/// How deeply `${...}` may nest before the input is rejected.
pub const MAX_DEPTH: usize = 100;

/// Everything one run over a word produces.
pub(super) struct Output {
    pub result: String,
    pub words: Vec<String>,
    pub used: BTreeSet<String>,
    pub unset: BTreeSet<String>,
}

/// Run the lexer over `word` with `env`.
pub(super) fn run(lexer: &Lexer, word: &str, env: &dyn Env) -> Result<Output, ShellError> {
    // Go's text/scanner, which BuildKit reads the word with, skips a leading BOM.
    let text = word.strip_prefix('\u{feff}').unwrap_or(word);
    let mut p = Processor {
        lexer,
        env,
        chars: text.chars().collect(),
        pos: 0,
        raw_escapes: lexer.raw_escapes,
        depth: 0,
        used: BTreeSet::new(),
        unset: BTreeSet::new(),
    };
    match p.process_stop_on(None, lexer.raw_escapes) {
        Ok((result, words)) => Ok(Output {
            result,
            words,
            used: p.used,
            unset: p.unset,
        }),
        Err(cause) => Err(ShellError::Failed {
            word: word.to_string(),
            cause: Box::new(cause),
        }),
    }
}

/// The split-mode word list under construction.
#[derive(Default)]
struct Words {
    buf: String,
    words: Vec<String>,
    in_word: bool,
}

impl Words {
    /// An unquoted character: whitespace ends the current word.
    fn add_char(&mut self, c: char) {
        if c.is_whitespace() {
            if self.in_word && !self.buf.is_empty() {
                self.words.push(std::mem::take(&mut self.buf));
                self.in_word = false;
            }
        } else {
            self.add_raw_char(c);
        }
    }

    /// A quoted or escaped character: always part of the word.
    fn add_raw_char(&mut self, c: char) {
        self.buf.push(c);
        self.in_word = true;
    }

    /// Unquoted expansion text: split on its whitespace.
    fn add_string(&mut self, s: &str) {
        s.chars().for_each(|c| self.add_char(c));
    }

    /// Quoted text: kept whole.
    fn add_raw_string(&mut self, s: &str) {
        self.buf.push_str(s);
        self.in_word = true;
    }

    /// The finished list; empty words are dropped.
    fn finish(mut self) -> Vec<String> {
        if !self.buf.is_empty() {
            self.words.push(std::mem::take(&mut self.buf));
        }
        self.words
    }
}

/// The state of one run over a word.
struct Processor<'a> {
    lexer: &'a Lexer,
    env: &'a dyn Env,
    chars: Vec<char>,
    pos: usize,
    raw_escapes: bool,
    depth: usize,
    used: BTreeSet<String>,
    unset: BTreeSet<String>,
}

impl Processor<'_> {
    fn peek(&self) -> Option<char> {
        self.chars.get(self.pos).copied()
    }

    fn next(&mut self) -> Option<char> {
        let c = self.peek();
        if c.is_some() {
            self.pos += 1;
        }
        c
    }

    /// Read until `stop` (or the end of input when `stop` is `None`), with escapes kept in
    /// the output when `raw_escapes` (as the `#`, `%` and `/` operators need).
    fn process_stop_on(
        &mut self,
        stop: Option<char>,
        raw_escapes: bool,
    ) -> Result<(String, Vec<String>), ShellError> {
        let saved = std::mem::replace(&mut self.raw_escapes, raw_escapes);
        let out = self.stop_on_inner(stop);
        self.raw_escapes = saved;
        out
    }

    fn stop_on_inner(&mut self, stop: Option<char>) -> Result<(String, Vec<String>), ShellError> {
        let mut result = String::new();
        let mut words = Words::default();
        let quotes = !self.lexer.skip_process_quotes;
        while let Some(ch) = self.peek() {
            if Some(ch) == stop {
                self.next();
                return Ok((result, words.finish()));
            }
            if ch == '$' {
                let s = self.process_dollar()?;
                result.push_str(&s);
                words.add_string(&s);
            } else if quotes && (ch == '\'' || ch == '"') {
                let s = if ch == '\'' {
                    self.single_quote()?
                } else {
                    self.double_quote()?
                };
                result.push_str(&s);
                words.add_raw_string(&s);
            } else {
                self.next();
                if ch == self.lexer.escape {
                    if self.raw_escapes {
                        words.add_raw_char(ch);
                        result.push(ch);
                    }
                    // A trailing escape is dropped.
                    let Some(escaped) = self.next() else { break };
                    words.add_raw_char(escaped);
                    result.push(escaped);
                } else {
                    words.add_char(ch);
                    result.push(ch);
                }
            }
        }
        match stop {
            Some(c) => Err(ShellError::UnexpectedEnd(c)),
            None => Ok((result, words.finish())),
        }
    }

    /// `'...'`: everything literal, no escapes at all.
    fn single_quote(&mut self) -> Result<String, ShellError> {
        let mut result = String::new();
        let open = self.next();
        if self.lexer.raw_quotes {
            result.extend(open);
        }
        loop {
            match self.next() {
                None => return Err(ShellError::UnterminatedSingleQuote),
                Some('\'') => {
                    if self.lexer.raw_quotes {
                        result.push('\'');
                    }
                    return Ok(result);
                }
                Some(c) => result.push(c),
            }
        }
    }

    /// `"..."`: `$` expands; the escape character escapes only `"`, `$` and itself.
    fn double_quote(&mut self) -> Result<String, ShellError> {
        let mut result = String::new();
        let open = self.next();
        if self.lexer.raw_quotes {
            result.extend(open);
        }
        loop {
            match self.peek() {
                None => return Err(ShellError::UnterminatedDoubleQuote),
                Some('"') => {
                    self.next();
                    if self.lexer.raw_quotes {
                        result.push('"');
                    }
                    return Ok(result);
                }
                Some('$') => {
                    let s = self.process_dollar()?;
                    result.push_str(&s);
                }
                Some(mut ch) => {
                    self.next();
                    if ch == self.lexer.escape {
                        if self.raw_escapes {
                            result.push(ch);
                        }
                        match self.peek() {
                            // Loops round to the unterminated-quote error.
                            None => continue,
                            Some(n) if n == '"' || n == '$' || n == self.lexer.escape => {
                                self.next();
                                ch = n;
                            }
                            Some(_) => {}
                        }
                    }
                    result.push(ch);
                }
            }
        }
    }

    /// Look a variable up, noting it as used or unset.
    fn get_env(&mut self, name: &str) -> Option<String> {
        let value = self.env.get(name);
        if value.is_some() {
            self.used.insert(name.to_string());
        } else {
            self.unset.insert(name.to_string());
        }
        value
    }

    /// `$name`, `${name}` and `${name<op>...}`; the scanner is at the `$`.
    fn process_dollar(&mut self) -> Result<String, ShellError> {
        self.next();
        if self.peek() != Some('{') {
            let name = self.process_name();
            if name.is_empty() {
                return Ok("$".to_string());
            }
            return Ok(match self.get_env(&name) {
                Some(v) => v,
                None if self.lexer.skip_unset_env => format!("${name}"),
                None => String::new(),
            });
        }
        self.next();
        match self.peek() {
            None => return Err(ShellError::MissingBrace),
            Some('{' | '}' | ':') => return Err(ShellError::BadSubstitution),
            Some(_) => {}
        }
        if self.depth >= MAX_DEPTH {
            return Err(ShellError::TooDeep(MAX_DEPTH));
        }
        self.depth += 1;
        let out = self.braced();
        self.depth -= 1;
        out
    }

    /// The part of `${...}` after the `{`.
    fn braced(&mut self) -> Result<String, ShellError> {
        let name = self.process_name();
        match self.next() {
            // BuildKit reports "unsupported modifier (\u{fffd})" here; the cause is the brace.
            None => Err(ShellError::MissingBrace),
            Some('}') => Ok(match self.get_env(&name) {
                Some(v) => v,
                None if self.lexer.skip_unset_env => format!("${{{name}}}"),
                None => String::new(),
            }),
            Some(first @ (':' | '+' | '-' | '?' | '#' | '%')) => {
                let colon = first == ':';
                let op = if colon {
                    // `${name:` at the end of input.
                    self.next().ok_or(ShellError::MissingBrace)?
                } else {
                    first
                };
                let chs = if colon {
                    format!(":{op}")
                } else {
                    op.to_string()
                };
                let pattern_op = op == '#' || op == '%';
                if colon && pattern_op {
                    return Err(ShellError::UnsupportedModifier(chs));
                }
                let (word, _) = self
                    .process_stop_on(Some('}'), pattern_op)
                    .map_err(|e| self.at_end(e, ShellError::MissingBrace))?;
                let value = self.get_env(&name);
                if value.is_none() && self.lexer.skip_unset_env {
                    return Ok(format!("${{{name}{chs}{word}}}"));
                }
                params::apply(&name, op, colon, value, word)
            }
            Some('/') => {
                let all = self.peek() == Some('/');
                if all {
                    self.next();
                }
                let (pattern, _) = self
                    .process_stop_on(Some('/'), true)
                    .map_err(|e| self.at_end(e, ShellError::MissingSlash))?;
                let (replacement, _) = self
                    .process_stop_on(Some('}'), true)
                    .map_err(|e| self.at_end(e, ShellError::MissingBrace))?;
                let Some(value) = self.get_env(&name) else {
                    if self.lexer.skip_unset_env {
                        // BuildKit writes a single `/` back even for `//`.
                        return Ok(format!("${{{name}/{pattern}/{replacement}}}"));
                    }
                    return params::substitute("", &pattern, &replacement, all);
                };
                params::substitute(&value, &pattern, &replacement, all)
            }
            Some(other) => Err(ShellError::UnsupportedModifier(other.to_string())),
        }
    }

    /// BuildKit reports any failure inside `${...}` that ran into the end of input as the
    /// missing terminator; other failures pass through.
    fn at_end(&self, err: ShellError, missing: ShellError) -> ShellError {
        if self.peek().is_none() {
            missing
        } else {
            err
        }
    }

    /// A name: a run of letters, digits and `_`; or one run of digits (positional); or one
    /// special parameter character.
    fn process_name(&mut self) -> String {
        let mut name = String::new();
        while let Some(c) = self.peek() {
            if name.is_empty() && is_digit(c) {
                while let Some(d) = self.peek().filter(|&d| is_digit(d)) {
                    self.next();
                    name.push(d);
                }
                return name;
            }
            if name.is_empty() && is_special_param(c) {
                self.next();
                return c.to_string();
            }
            if !(is_letter(c) || is_digit(c) || c == '_') {
                break;
            }
            self.next();
            name.push(c);
        }
        name
    }
}

/// Go's `unicode.IsDigit`, approximated outside ASCII by Rust's numeric property.
fn is_digit(c: char) -> bool {
    c.is_ascii_digit() || (!c.is_ascii() && c.is_numeric())
}

/// Go's `unicode.IsLetter`, approximated outside ASCII by Rust's alphabetic property.
fn is_letter(c: char) -> bool {
    c.is_ascii_alphabetic() || (!c.is_ascii() && c.is_alphabetic())
}

/// POSIX special parameters (`$@`, `$*`, `$#`, `$?`, `$-`, `$$`, `$!`, `$0`); never set.
fn is_special_param(c: char) -> bool {
    matches!(c, '@' | '*' | '#' | '?' | '-' | '$' | '!' | '0')
}
