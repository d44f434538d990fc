//! Docker's path patterns: the `.dockerignore` matcher and its file reader.
//!
//! Docker decides which context files are ignored with moby/patternmatcher, and
//! the `ignore`/`globset` crates disagree with it on real paths, so kiln carries
//! its own implementation of the same rules:
//!
//! * each pattern is trimmed, cleaned like Go's `filepath.Clean`, and a leading
//!   `!` turns it into an exclusion (a re-inclusion of otherwise ignored paths);
//! * a pattern matches as the `glob` module describes (`*` and `?` stay within
//!   one path segment, `**` spans segments, `[...]` classes, `\` escapes);
//! * a path is ignored when it **or any of its parent directories** matches a
//!   pattern, and the **last** pattern that matches decides.
//!
//! Paths are slash-separated and relative to the context root; they are
//! cleaned before matching (so `./a//b/` is `a/b`), and the root itself (`.`)
//! never matches anything.

mod glob;
mod ignorefile;

pub use ignorefile::read_ignore_file;

/// Why a list of patterns was refused; the frontend reports it to the user, so
/// it names the offending pattern.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PatternError {
    /// A pattern consisting of `!` alone: an exclusion of nothing, which Docker
    /// rejects rather than guess.
    #[error("illegal exclusion pattern: \"!\"")]
    LoneExclamation,
    /// A pattern with a syntax error (such as an unterminated `[`), or one whose
    /// meaning in Docker is not a glob at all and that kiln therefore refuses.
    #[error("syntax error in pattern {pattern:?}: {reason}")]
    Bad {
        /// The pattern as written (trimmed).
        pattern: String,
        /// What is wrong with it.
        reason: String,
    },
}

/// One compiled pattern; kept compiled so a context walk matches thousands of
/// paths without re-parsing.
#[derive(Debug, Clone)]
pub struct Pattern {
    text: String,
    exclusion: bool,
    strategy: glob::Strategy,
}

impl Pattern {
    /// Compiles one pattern as Docker does: trims surrounding whitespace,
    /// cleans it like `filepath.Clean` (before looking at `!`, as Docker does, so
    /// `!a/../b` cleans to the plain pattern `b`), and takes a leading `!` as
    /// the exclusion marker. Fails on an empty pattern, on `!` alone and on
    /// syntax errors, so a bad `.dockerignore` is reported before any walk.
    pub fn new(text: &str) -> Result<Pattern, PatternError> {
        let trimmed = text.trim();
        if trimmed.is_empty() {
            return Err(PatternError::Bad {
                pattern: trimmed.to_owned(),
                reason: "empty pattern".to_owned(),
            });
        }
        let cleaned = clean_path(trimmed);
        let (exclusion, body) = match cleaned.strip_prefix('!') {
            Some("") => return Err(PatternError::LoneExclamation),
            Some(rest) => (true, rest),
            None => (false, cleaned.as_str()),
        };
        let strategy = glob::compile(body).map_err(|reason| PatternError::Bad {
            pattern: trimmed.to_owned(),
            reason,
        })?;
        Ok(Pattern {
            text: body.to_owned(),
            exclusion,
            strategy,
        })
    }

    /// The cleaned pattern without its `!`, for messages and for checks such
    /// as the frontend's CopyIgnoredFile lint.
    pub fn text(&self) -> &str {
        &self.text
    }

    /// Whether this pattern re-includes paths (it was written with a leading `!`).
    pub fn is_exclusion(&self) -> bool {
        self.exclusion
    }

    /// Whether the path itself matches this pattern, ignoring its parents and
    /// the exclusion flag; the building block of the matcher's rules.
    pub fn matches(&self, path: &str) -> bool {
        let path = clean_path(path);
        path != "." && self.strategy.matches(&path)
    }

    /// Whether the cleaned path or one of its parent directories matches.
    fn matches_self_or_parent(&self, path: &str) -> bool {
        self.strategy.matches(path) || parent_dirs(path).any(|dir| self.strategy.matches(dir))
    }
}

/// What a tree walk remembers about a directory so its children are decided
/// without re-checking all their parents. Start a walk with
/// `MatchInfo::default()`, which means "nothing known" (the matcher then checks
/// every parent itself), and pass each directory's result to its children.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MatchInfo {
    /// Whether the path is matched (ignored) under Docker's rules.
    pub matched: bool,
    /// One more than the index of the last pattern matched by the path or one of
    /// its parents; 0 when none matched. Only this pattern decides the result,
    /// and only later patterns can override it further down the tree.
    last: usize,
    /// Whether this value came from a match (as opposed to `Default`).
    known: bool,
}

/// An ordered list of patterns with Docker's rule for applying them.
#[derive(Debug, Clone, Default)]
pub struct PatternMatcher {
    patterns: Vec<Pattern>,
}

impl PatternMatcher {
    /// Trims spaces, drops empty patterns, cleans (filepath.Clean), '!' marks
    /// exclusion, lone '!' errors; a "." pattern never matches. Every pattern is
    /// validated here, so matching itself cannot fail.
    pub fn new<S: AsRef<str>>(patterns: &[S]) -> Result<Self, PatternError> {
        let patterns = patterns
            .iter()
            .map(AsRef::as_ref)
            .filter(|p| !p.trim().is_empty())
            .map(Pattern::new)
            .collect::<Result<Vec<_>, _>>()?;
        Ok(PatternMatcher { patterns })
    }

    /// Whether there are no patterns (then nothing matches, and a walker can skip
    /// matching altogether).
    pub fn is_empty(&self) -> bool {
        self.patterns.is_empty()
    }

    /// Whether any pattern starts with `!`; a walker must then descend into
    /// ignored directories, since something inside may be re-included.
    pub fn has_exclusions(&self) -> bool {
        self.patterns.iter().any(Pattern::is_exclusion)
    }

    /// Whether a context walk must still descend into `dir`, a directory this
    /// matcher excludes, because an exception (`!pattern`) may re-include
    /// something below it. BuildKit's context transfer (fsutil's filtered walk)
    /// never emits an excluded entry itself, but it walks an excluded directory
    /// when an exception, with a trailing `/**` or `/*` taken off, either still
    /// holds a pattern character (then it cannot tell statically, and every
    /// excluded directory is walked) or, followed by `/`, lies under `dir/`.
    /// Without this, `build/` + `!build/keep/` could never bring `build/keep`
    /// back. Says nothing about whether `dir` is excluded; ask
    /// [`PatternMatcher::matches_or_parent_matches`] for that.
    pub fn must_walk_excluded_dir(&self, dir: &str) -> bool {
        let dir = clean_path(dir);
        let dir_slash = format!("{dir}/");
        self.patterns.iter().filter(|p| p.exclusion).any(|p| {
            let stem = without_trailing_glob(&p.text);
            stem.contains(PATTERN_CHARS) || format!("{stem}/").starts_with(&dir_slash)
        })
    }

    /// Whether a walk of the context from its root reaches `path`: every parent
    /// directory of it is either not excluded or must be walked though excluded
    /// ([`PatternMatcher::must_walk_excluded_dir`]). A path under an excluded
    /// directory that is not walked is never seen, whatever the patterns say
    /// about the path itself.
    pub fn walk_reaches(&self, path: &str) -> bool {
        let path = clean_path(path);
        let reached = parent_dirs(&path)
            .all(|dir| !self.matches_or_parent_matches(dir) || self.must_walk_excluded_dir(dir));
        reached
    }

    /// Docker's rule: the path or any of its parents matches; the last matching pattern wins.
    pub fn matches_or_parent_matches(&self, path: &str) -> bool {
        let path = clean_path(path);
        if path == "." {
            return false;
        }
        // Docker's loop: skipping an inclusion once matched (or an exclusion
        // while unmatched) cannot change the outcome, only save work.
        let mut matched = false;
        for pattern in &self.patterns {
            if pattern.exclusion != matched {
                continue;
            }
            if pattern.matches_self_or_parent(&path) {
                matched = !pattern.exclusion;
            }
        }
        matched
    }

    /// Incremental variant for tree walks: given the parent directory's result, decide for this path without re-checking all parents.
    ///
    /// Pass `MatchInfo::default()` for entries at the top of the context (or
    /// when the parent's result is unknown: every parent is then checked).
    /// Agrees with [`PatternMatcher::matches_or_parent_matches`] on every path
    /// when each directory's result is passed to its children. (Docker's own
    /// incremental function can disagree with its non-incremental one when it
    /// skipped a pattern for the parent; this one records enough not to.)
    pub fn matches_using_parent_result(&self, path: &str, parent: MatchInfo) -> MatchInfo {
        let path = clean_path(path);
        if path == "." {
            return MatchInfo {
                matched: false,
                last: 0,
                known: true,
            };
        }
        let count = self.patterns.len();
        let last = if parent.known {
            // The parents' verdict stands unless a later pattern matches this path.
            let floor = parent.last.min(count);
            (floor..count)
                .rev()
                .find(|&i| self.patterns[i].strategy.matches(&path))
                .map_or(floor, |i| i + 1)
        } else {
            (0..count)
                .rev()
                .find(|&i| self.patterns[i].matches_self_or_parent(&path))
                .map_or(0, |i| i + 1)
        };
        let matched = last
            .checked_sub(1)
            .and_then(|i| self.patterns.get(i))
            .is_some_and(|p| !p.exclusion);
        MatchInfo {
            matched,
            last,
            known: true,
        }
    }

    /// The compiled patterns in order, e.g. to report which one ignored a file.
    pub fn patterns(&self) -> &[Pattern] {
        &self.patterns
    }
}

/// The characters that make an exception a pattern rather than a literal path
/// for [`PatternMatcher::must_walk_excluded_dir`] (fsutil's `patternChars` on a
/// system whose separator is `/`, where a backslash escapes).
const PATTERN_CHARS: [char; 6] = ['*', '[', ']', '?', '^', '\\'];

/// A pattern's text with one trailing `/**` and then one trailing `/*` taken
/// off, as fsutil compares exceptions with directories (`keep/**` re-includes
/// what is under `keep`, so it says to walk down to `keep` like `keep` does).
fn without_trailing_glob(text: &str) -> &str {
    let text = text.strip_suffix("/**").unwrap_or(text);
    text.strip_suffix("/*").unwrap_or(text)
}

/// Cleans a slash-separated path like Go's `filepath.Clean` (Docker cleans
/// both patterns and paths this way): repeated `/` collapse, `.` elements go,
/// `x/..` pairs cancel, `..` at the root of an absolute path is dropped, a
/// trailing `/` is removed, and an empty result becomes `.`.
pub fn clean_path(path: &str) -> String {
    let rooted = path.starts_with('/');
    let mut parts: Vec<&str> = Vec::new();
    for part in path.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                if parts.last().is_some_and(|last| *last != "..") {
                    parts.pop();
                } else if !rooted {
                    parts.push("..");
                }
            }
            other => parts.push(other),
        }
    }
    let joined = parts.join("/");
    match (rooted, joined.is_empty()) {
        (true, _) => format!("/{joined}"),
        (false, true) => ".".to_owned(),
        (false, false) => joined,
    }
}

/// The parent directories Docker checks for a cleaned path: every prefix of
/// its `filepath.Dir` ending before a `/`, then the whole `Dir` (nothing when
/// `Dir` is `.`). For an absolute path Docker would also try the empty string
/// before the leading `/`; we skip it, as it is no directory (and `*` matches
/// it, which would make `*` match every absolute path).
fn parent_dirs(path: &str) -> impl Iterator<Item = &str> {
    let dir = match path.rfind('/') {
        None => "",
        Some(0) => "/",
        Some(i) => &path[..i],
    };
    dir.match_indices('/')
        .filter(|&(i, _)| i > 0)
        .map(move |(i, _)| &dir[..i])
        .chain((!dir.is_empty()).then_some(dir))
}

#[cfg(test)]
mod tests;
