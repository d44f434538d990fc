//! Shell-word expansion with BuildKit's semantics (`frontend/dockerfile/shell` in BuildKit).
//!
//! Dockerfile instructions expand `$VAR`, `${VAR}` and the `${VAR<op>word}` operators against
//! the build's ARG/ENV values, remove quotes and escapes, and sometimes split the result into
//! words. kiln must produce exactly the strings BuildKit produces, so this module follows its
//! lexer rule for rule (see `lexer` for the walk, `params` for the operators and `glob` for
//! the `#`, `%` and `/` patterns).
//!
//! ```
//! use frontend::shell::Lexer;
//! let env = vec![("NAME".to_string(), "kiln".to_string())];
//! let lexer = Lexer::new('\\');
//! assert_eq!(lexer.process_word("hello-${NAME:-x}", &env).unwrap(), "hello-kiln");
//! assert_eq!(lexer.process_words("a \"b c\" $NAME", &env).unwrap(), ["a", "b c", "kiln"]);
//! ```

mod error;
mod glob;
mod lexer;
mod params;

use std::collections::{BTreeMap, BTreeSet, HashMap};

pub use error::{go_quote, ShellError};
pub use lexer::MAX_DEPTH;

/// The environment a word is expanded against.
///
/// Abstracted so callers can pass whatever they hold (the ENV list of a stage, a map of build
/// args, ...) without copying. For list-shaped environments later entries win for duplicate
/// keys, as in BuildKit's env list. Keys are case-sensitive (BuildKit on Unix).
pub trait Env {
    /// The value of `key`, or `None` if it is unset (an empty value is set).
    fn get(&self, key: &str) -> Option<String>;
    /// All keys, for diagnostics such as "did you mean" suggestions.
    fn keys(&self) -> Vec<String>;
}

impl<K: AsRef<str>, V: AsRef<str>> Env for [(K, V)] {
    fn get(&self, key: &str) -> Option<String> {
        self.iter()
            .rev()
            .find(|(k, _)| k.as_ref() == key)
            .map(|(_, v)| v.as_ref().to_string())
    }
    fn keys(&self) -> Vec<String> {
        let mut seen = BTreeSet::new();
        self.iter()
            .filter(|(k, _)| seen.insert(k.as_ref()))
            .map(|(k, _)| k.as_ref().to_string())
            .collect()
    }
}

impl<K: AsRef<str>, V: AsRef<str>> Env for Vec<(K, V)> {
    fn get(&self, key: &str) -> Option<String> {
        Env::get(self.as_slice(), key)
    }
    fn keys(&self) -> Vec<String> {
        Env::keys(self.as_slice())
    }
}

impl<K: AsRef<str>, V: AsRef<str>, const N: usize> Env for [(K, V); N] {
    fn get(&self, key: &str) -> Option<String> {
        Env::get(self.as_slice(), key)
    }
    fn keys(&self) -> Vec<String> {
        Env::keys(self.as_slice())
    }
}

impl Env for BTreeMap<String, String> {
    fn get(&self, key: &str) -> Option<String> {
        BTreeMap::get(self, key).cloned()
    }
    fn keys(&self) -> Vec<String> {
        BTreeMap::keys(self).cloned().collect()
    }
}

impl<S: std::hash::BuildHasher> Env for HashMap<String, String, S> {
    fn get(&self, key: &str) -> Option<String> {
        HashMap::get(self, key).cloned()
    }
    fn keys(&self) -> Vec<String> {
        let mut keys: Vec<String> = HashMap::keys(self).cloned().collect();
        keys.sort();
        keys
    }
}

/// A configured shell lexer (BuildKit's `shell.Lex`).
///
/// The options exist because different instructions need different treatment; all are off
/// by default, which is how BuildKit expands most instruction arguments.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lexer {
    /// The escape character: `\` by default, or `` ` `` after `# escape=``.
    pub escape: char,
    /// Keep `$unset` / `${unset...}` verbatim instead of expanding to "" (used where a later
    /// stage, e.g. a shell, still has to see the reference).
    pub skip_unset_env: bool,
    /// Treat quotes as ordinary characters (they are kept and do not group).
    pub skip_process_quotes: bool,
    /// Process quotes (grouping, no expansion in `'...'`) but keep the quote characters.
    pub raw_quotes: bool,
    /// Keep escape characters in the output while still honouring what they escape.
    pub raw_escapes: bool,
}

impl Lexer {
    /// A lexer with the given escape character and every option off.
    pub fn new(escape: char) -> Self {
        Lexer {
            escape,
            skip_unset_env: false,
            skip_process_quotes: false,
            raw_quotes: false,
            raw_escapes: false,
        }
    }

    /// Single-word mode: expand, remove quotes/escapes, no splitting.
    ///
    /// This is what most instructions (ENV values, WORKDIR, USER, ...) use.
    pub fn process_word(&self, word: &str, env: &dyn Env) -> Result<String, ShellError> {
        lexer::run(self, word, env).map(|o| o.result)
    }

    /// Split mode: expand then split on unquoted whitespace; empty words dropped.
    ///
    /// Whitespace that comes from an unquoted variable's value splits too, as in a shell;
    /// used for instructions that take lists (e.g. `EXPOSE $PORTS`).
    pub fn process_words(&self, word: &str, env: &dyn Env) -> Result<Vec<String>, ShellError> {
        lexer::run(self, word, env).map(|o| o.words)
    }

    /// Single-word mode that also reports which variables were used / unset (for the
    /// UndefinedVar build check).
    pub fn process_word_with_matches(
        &self,
        word: &str,
        env: &dyn Env,
    ) -> Result<Expansion, ShellError> {
        lexer::run(self, word, env).map(|o| Expansion {
            result: o.result,
            words: o.words,
            used: o.used,
            unset: o.unset,
        })
    }
}

impl Default for Lexer {
    /// The lexer BuildKit uses when no `# escape=` directive is present.
    fn default() -> Self {
        Lexer::new('\\')
    }
}

/// The full outcome of expanding a word, for callers that lint as well as expand.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Expansion {
    /// The single-word result (as [`Lexer::process_word`]).
    pub result: String,
    /// The split words (as [`Lexer::process_words`]).
    pub words: Vec<String>,
    /// Names referenced and set (even if set to "").
    pub used: BTreeSet<String>,
    /// Names referenced but unset, including positional and special parameters.
    pub unset: BTreeSet<String>,
}

#[cfg(test)]
mod tests;
