//! Compiling one cleaned pattern into the matching strategy Docker would use.
//!
//! Docker's matcher (moby/patternmatcher) first validates a pattern with Go's
//! `filepath.Match` syntax rules, then picks one of four strategies:
//!
//! * **exact** – the pattern has no wildcard at all: string equality;
//! * **prefix** – literal text followed by a final `**` (`dir/**`): `starts_with`;
//! * **suffix** – a leading `**` followed only by literal text (`**/dir`, `**file`):
//!   `ends_with`, plus `**/x` also matching `x` itself;
//! * otherwise a regular expression, in which `*` and `?` never match `/`, a
//!   `**` that is not last means "any number of leading directories", a final
//!   `**` means "anything", and `[...]` classes may match any character,
//!   including `/`.
//!
//! The strategies are not just optimisations: they decide real behaviour (for
//! example `**file` matches `myfile`, because the suffix strategy is a plain
//! `ends_with`). We reproduce the choice exactly and, instead of a regex engine,
//! run the last strategy on a small Thompson NFA. Simulating the NFA keeps a set
//! of states, so matching costs `O(path length × pattern length)` whatever the
//! pattern: hostile inputs like `**/**/**/**/a` cannot blow up.
//!
//! Where Docker's regex translation gives a pattern a meaning `filepath.Match`
//! never had (a backslash before a letter, `*` or `?` inside `[...]`, POSIX
//! `[[:alpha:]]` classes, a reversed range such as `[z-a]`) we refuse the
//! pattern at construction time rather than silently match differently.

/// How one pattern decides a match; chosen exactly as Docker chooses it, because
/// the choice changes results (see the module documentation).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Strategy {
    /// The whole pattern is literal text: the path must equal it.
    Exact(String),
    /// Literal text before a trailing `**`: the path must start with it.
    Prefix(String),
    /// Literal text after a leading `**`: the path must end with it (and
    /// `**/x` also matches `x`).
    Suffix(String),
    /// Anything else, run on an automaton.
    Automaton(Nfa),
}

/// The strategy kinds, tracked while scanning a pattern (and checked by tests).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    Exact,
    Prefix,
    Suffix,
    Automaton,
}

impl Strategy {
    /// Which kind of strategy this is (tests compare it with Docker's choice).
    #[cfg(test)]
    pub(crate) fn kind(&self) -> Kind {
        match self {
            Strategy::Exact(_) => Kind::Exact,
            Strategy::Prefix(_) => Kind::Prefix,
            Strategy::Suffix(_) => Kind::Suffix,
            Strategy::Automaton(_) => Kind::Automaton,
        }
    }

    /// Whether `path` (already cleaned, slash-separated) matches by itself,
    /// without looking at its parents.
    pub(crate) fn matches(&self, path: &str) -> bool {
        match self {
            Strategy::Exact(text) => path == text,
            Strategy::Prefix(prefix) => path.starts_with(prefix.as_str()),
            Strategy::Suffix(suffix) => {
                path.ends_with(suffix.as_str())
                    || suffix.strip_prefix('/').is_some_and(|rest| path == rest)
            }
            Strategy::Automaton(nfa) => nfa.is_match(path),
        }
    }
}

/// One character class such as `[a-z]` or `[^0-9]`.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Class {
    negated: bool,
    ranges: Vec<(char, char)>,
}

impl Class {
    fn contains(&self, c: char) -> bool {
        self.ranges.iter().any(|&(lo, hi)| lo <= c && c <= hi) != self.negated
    }
}

/// What one pattern element means, before it becomes automaton states.
#[derive(Debug)]
enum Token {
    /// One literal character.
    Lit(char),
    /// `?`: one character other than `/`.
    AnyButSlash,
    /// `*`: any run of characters other than `/`.
    StarButSlash,
    /// `[...]`: one character in (or not in) the class; `/` included.
    Class(Class),
    /// A `**` that is not last: Go's `(.*/)?`, i.e. nothing, or any text
    /// without a newline followed by `/`.
    AnyDirs,
    /// A final `**`: Go's `.*`, any text without a newline.
    Rest,
    /// A `^` outside a class: in Go's regexp it asserts the start of the
    /// path, so it only passes when nothing has been consumed yet.
    Start,
}

/// The character test on an automaton edge.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Test {
    Char(char),
    NotSlash,
    NotNewline,
    Class(Class),
}

impl Test {
    fn accepts(&self, c: char) -> bool {
        match self {
            Test::Char(x) => *x == c,
            Test::NotSlash => c != '/',
            Test::NotNewline => c != '\n',
            Test::Class(class) => class.contains(c),
        }
    }
}

/// An automaton state.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Node {
    /// Consume one character passing the test, then go to the state.
    Step(Test, usize),
    /// Go to either state without consuming anything.
    Split(usize, usize),
    /// Go on only at the start of the path.
    AtStart(usize),
    /// The path matches if it ends here.
    Accept,
}

/// A Thompson NFA for one pattern; simulated as a state set so that matching
/// never backtracks (the reason we do not need a regex crate).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Nfa {
    nodes: Vec<Node>,
    start: usize,
}

impl Nfa {
    fn build(tokens: Vec<Token>) -> Nfa {
        let mut nodes = vec![Node::Accept];
        let mut next = 0usize;
        // Built back to front so that every state already knows its successor.
        for token in tokens.into_iter().rev() {
            next = match token {
                Token::Lit(c) => push(&mut nodes, Node::Step(Test::Char(c), next)),
                Token::AnyButSlash => push(&mut nodes, Node::Step(Test::NotSlash, next)),
                Token::Class(class) => push(&mut nodes, Node::Step(Test::Class(class), next)),
                Token::Start => push(&mut nodes, Node::AtStart(next)),
                Token::StarButSlash => push_loop(&mut nodes, Test::NotSlash, next),
                Token::Rest => push_loop(&mut nodes, Test::NotNewline, next),
                Token::AnyDirs => {
                    let slash = push(&mut nodes, Node::Step(Test::Char('/'), next));
                    let body = push_loop(&mut nodes, Test::NotNewline, slash);
                    push(&mut nodes, Node::Split(body, next))
                }
            };
        }
        Nfa { nodes, start: next }
    }

    /// Runs the automaton over the whole path.
    fn is_match(&self, path: &str) -> bool {
        // A walk matches every path against every pattern: reuse the buffers.
        thread_local! {
            static SCRATCH: std::cell::RefCell<Scratch> = std::cell::RefCell::default();
        }
        SCRATCH.with(|scratch| match scratch.try_borrow_mut() {
            Ok(mut scratch) => self.run(path, &mut scratch),
            Err(_) => self.run(path, &mut Scratch::default()),
        })
    }

    fn run(&self, path: &str, scratch: &mut Scratch) -> bool {
        let Scratch {
            seen,
            current,
            following,
            stack,
        } = scratch;
        seen.clear();
        seen.resize(self.nodes.len(), usize::MAX);
        current.clear();
        following.clear();
        stack.clear();
        self.close(self.start, 0, true, seen, current, stack);
        for (index, c) in path.chars().enumerate() {
            if current.is_empty() {
                return false;
            }
            let generation = index + 1;
            for &state in current.iter() {
                if let Node::Step(test, to) = &self.nodes[state] {
                    if test.accepts(c) {
                        self.close(*to, generation, false, seen, following, stack);
                    }
                }
            }
            std::mem::swap(current, following);
            following.clear();
        }
        current
            .iter()
            .any(|&state| self.nodes[state] == Node::Accept)
    }

    /// Adds `from` and every state reachable from it without consuming input.
    fn close(
        &self,
        from: usize,
        generation: usize,
        at_start: bool,
        seen: &mut [usize],
        list: &mut Vec<usize>,
        stack: &mut Vec<usize>,
    ) {
        stack.push(from);
        while let Some(state) = stack.pop() {
            if seen[state] == generation {
                continue;
            }
            seen[state] = generation;
            match &self.nodes[state] {
                Node::Split(a, b) => {
                    stack.push(*b);
                    stack.push(*a);
                }
                Node::AtStart(next) => {
                    if at_start {
                        stack.push(*next);
                    }
                }
                Node::Step(..) | Node::Accept => list.push(state),
            }
        }
    }
}

/// Buffers for one automaton run, kept per thread between runs.
#[derive(Debug, Default)]
struct Scratch {
    /// For each state, the step at which it was last added (dedupes the sets).
    seen: Vec<usize>,
    current: Vec<usize>,
    following: Vec<usize>,
    stack: Vec<usize>,
}

fn push(nodes: &mut Vec<Node>, node: Node) -> usize {
    nodes.push(node);
    nodes.len() - 1
}

/// `test*` followed by `next`; returns the loop's entry state.
fn push_loop(nodes: &mut Vec<Node>, test: Test, next: usize) -> usize {
    let entry = push(nodes, Node::Split(next, next));
    let body = push(nodes, Node::Step(test, entry));
    nodes[entry] = Node::Split(body, next);
    entry
}

/// Compiles a cleaned pattern (without its `!`) into Docker's strategy, or
/// explains why the pattern is malformed.
pub(crate) fn compile(pattern: &str) -> Result<Strategy, String> {
    let chars: Vec<char> = pattern.chars().collect();
    let mut tokens = Vec::new();
    let mut kind = Kind::Exact;
    let mut i = 0;
    let mut first = true;
    while i < chars.len() {
        let ch = chars[i];
        i += 1;
        match ch {
            '*' if chars.get(i) == Some(&'*') => {
                i += 1;
                // `**/` is treated as `**`.
                if chars.get(i) == Some(&'/') {
                    i += 1;
                }
                if i >= chars.len() {
                    if kind == Kind::Exact {
                        kind = Kind::Prefix;
                    } else {
                        tokens.push(Token::Rest);
                        kind = Kind::Automaton;
                    }
                } else {
                    tokens.push(Token::AnyDirs);
                    kind = Kind::Automaton;
                }
                if first {
                    kind = Kind::Suffix;
                }
            }
            '*' => {
                tokens.push(Token::StarButSlash);
                kind = Kind::Automaton;
            }
            '?' => {
                tokens.push(Token::AnyButSlash);
                kind = Kind::Automaton;
            }
            '\\' => {
                let escaped = escaped_char(&chars, i)?;
                i += 1;
                tokens.push(Token::Lit(escaped));
                kind = Kind::Automaton;
            }
            '[' => {
                let (class, next) = parse_class(&chars, i)?;
                i = next;
                tokens.push(Token::Class(class));
                kind = Kind::Automaton;
            }
            ']' => {
                tokens.push(Token::Lit(']'));
                kind = Kind::Automaton;
            }
            '^' => tokens.push(Token::Start),
            c => tokens.push(Token::Lit(c)),
        }
        first = false;
    }
    Ok(match kind {
        Kind::Exact => Strategy::Exact(pattern.to_owned()),
        Kind::Prefix => Strategy::Prefix(
            pattern
                .strip_suffix("**")
                .or_else(|| pattern.strip_suffix("**/"))
                .unwrap_or(pattern)
                .to_owned(),
        ),
        Kind::Suffix => Strategy::Suffix(pattern.strip_prefix("**").unwrap_or(pattern).to_owned()),
        Kind::Automaton => Strategy::Automaton(Nfa::build(tokens)),
    })
}

/// The character after a `\` at `chars[i]`, if it is one we can take literally.
fn escaped_char(chars: &[char], i: usize) -> Result<char, String> {
    let c = *chars.get(i).ok_or("trailing backslash escapes nothing")?;
    // Docker hands `\c` to Go's regexp, which takes it literally only for ASCII
    // punctuation; `\d`, `\b`, `\x41`, `\é`... mean something else or fail there.
    if c.is_ascii() && !c.is_ascii_alphanumeric() {
        Ok(c)
    } else {
        Err(format!(
            "escape \\{c} is not supported (Docker's matcher gives it a regular-expression meaning)"
        ))
    }
}

/// Parses a class whose `[` has been consumed; `i` is the first character inside.
/// Returns the class and the index after its `]`. Follows `filepath.Match`:
/// `^` negates, ranges are `lo-hi`, `-` and `]` must be escaped except that `]`
/// closes a non-empty class, and an unterminated class is an error.
fn parse_class(chars: &[char], mut i: usize) -> Result<(Class, usize), String> {
    let mut negated = false;
    if chars.get(i) == Some(&'^') {
        negated = true;
        i += 1;
    }
    let mut ranges = Vec::new();
    loop {
        if chars.get(i) == Some(&']') && !ranges.is_empty() {
            return Ok((Class { negated, ranges }, i + 1));
        }
        let (lo, next) = class_char(chars, i)?;
        i = next;
        let mut hi = lo;
        if chars.get(i) == Some(&'-') {
            let (h, next) = class_char(chars, i + 1)?;
            hi = h;
            i = next;
        }
        if lo > hi {
            return Err(format!("invalid character class range {lo}-{hi}"));
        }
        ranges.push((lo, hi));
    }
}

/// One (possibly escaped) character inside a class, like Go's `getEsc`; it
/// must be followed by more pattern text (at least the closing `]`).
fn class_char(chars: &[char], i: usize) -> Result<(char, usize), String> {
    let c = match chars.get(i) {
        None => return Err("unterminated character class".to_owned()),
        Some('-') => return Err("unescaped '-' in character class".to_owned()),
        Some(']') => return Err("unescaped ']' in character class".to_owned()),
        Some(&c) => c,
    };
    let (c, next) = match c {
        '\\' => {
            if i + 1 >= chars.len() {
                return Err("unterminated character class".to_owned());
            }
            (escaped_char(chars, i + 1)?, i + 2)
        }
        '*' | '?' => {
            return Err(format!(
                "unescaped '{c}' inside a character class is not supported (Docker's matcher mistranslates it)"
            ))
        }
        '[' if chars.get(i + 1) == Some(&':') => {
            return Err("POSIX character classes ([:name:]) are not supported".to_owned())
        }
        c => (c, i + 1),
    };
    if next >= chars.len() {
        return Err("unterminated character class".to_owned());
    }
    Ok((c, next))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn glob_match(pattern: &str, path: &str) -> bool {
        compile(pattern).expect(pattern).matches(path)
    }

    /// Docker's compile table: the strategy it picks for each pattern.
    #[test]
    fn strategy_choice_matches_docker() {
        let table = [
            ("*", Kind::Automaton),
            ("file*", Kind::Automaton),
            ("*file", Kind::Automaton),
            ("a*/b", Kind::Automaton),
            ("**", Kind::Suffix),
            ("**/**", Kind::Automaton),
            ("dir/**", Kind::Prefix),
            ("**/dir", Kind::Suffix),
            ("**/dir2/*", Kind::Automaton),
            ("**/dir2/**", Kind::Automaton),
            ("**file", Kind::Suffix),
            ("**/file*txt", Kind::Automaton),
            ("**/**/*.txt", Kind::Automaton),
            ("a[b-d]e", Kind::Automaton),
            (".*", Kind::Automaton),
            ("abc.def", Kind::Exact),
            ("abc?def", Kind::Automaton),
            ("**/foo/bar", Kind::Suffix),
            ("a(b)c/def", Kind::Exact),
            ("a.|)$(}+{bc", Kind::Exact),
            (
                "dist/proxy.py-2.4.0rc3.dev36+g08acad9-py3-none-any.whl",
                Kind::Exact,
            ),
        ];
        assert_eq!(table.len(), 21);
        for (pattern, kind) in table {
            assert_eq!(
                compile(pattern).unwrap().kind(),
                kind,
                "pattern {pattern:?}"
            );
        }
    }

    #[test]
    fn strategy_texts() {
        assert_eq!(compile("dir/**").unwrap(), Strategy::Prefix("dir/".into()));
        assert_eq!(compile("abc**").unwrap(), Strategy::Prefix("abc".into()));
        assert_eq!(compile("**/dir").unwrap(), Strategy::Suffix("/dir".into()));
        assert_eq!(compile("**").unwrap(), Strategy::Suffix(String::new()));
        assert_eq!(compile("a^b").unwrap(), Strategy::Exact("a^b".into()));
    }

    #[test]
    fn suffix_strategy_is_plain_ends_with() {
        // Docker's suffix strategy: `**file` matches `myfile`, `**.log` any `.log`.
        assert!(glob_match("**file", "myfile"));
        assert!(glob_match("**file", "dir/myfile"));
        assert!(glob_match("**.log", "a/b.log"));
        assert!(glob_match("**/dir", "dir"));
        assert!(glob_match("**/dir", "a/dir"));
        assert!(!glob_match("**/dir", "adir"));
        assert!(glob_match("**", ""));
    }

    #[test]
    fn automaton_semantics() {
        // `*` and `?` never cross `/`.
        assert!(glob_match("a*", "abc"));
        assert!(!glob_match("a*", "a/c"));
        assert!(!glob_match("a?c", "a/c"));
        // Classes, unlike `?`, may match `/` (Go's `[^x]` does).
        assert!(glob_match("a[^x]c", "a/c"));
        assert!(glob_match("a[/]c", "a/c"));
        // A middle `**` is "nothing, or anything ending in /".
        assert!(glob_match("a/**/b*", "a/b"));
        assert!(glob_match("a/**/b*", "a/x/y/bz"));
        assert!(!glob_match("a/**/b*", "a/xb"));
        assert!(glob_match("x**y?", "xzz/yq"));
        // `.` in Go's regexp does not match a newline: neither does `**`.
        assert!(!glob_match("**/a?", "x\ny/ab"));
        assert!(glob_match("**/a?", "x/y/ab"));
        // ...but a prefix pattern is a plain `starts_with`.
        assert!(glob_match("a/**", "a/\n"));
        assert!(!glob_match("a*/**", "ab/\n"));
        // `?` and classes do match a newline.
        assert!(glob_match("a?", "a\n"));
        // Unicode is matched per character.
        assert!(glob_match("a?b", "a☺b"));
        assert!(!glob_match("a??b", "a☺b"));
        assert!(glob_match("[α-ω]*", "λx"));
    }

    #[test]
    fn caret_outside_class_anchors_in_automaton_patterns() {
        // Docker leaves `^` unescaped in its regex, where it means "start of text".
        assert!(glob_match("^a*", "ab"));
        assert!(!glob_match("^a*", "^ab"));
        assert!(!glob_match("a^b*", "a^bc"));
        // In exact, prefix and suffix patterns it is just a character.
        assert!(glob_match("a^b", "a^b"));
        assert!(glob_match("^a/**", "^a/b"));
        assert!(glob_match("**/^a", "x/^a"));
        // Inside a class it is literal unless first.
        assert!(glob_match("a[x^]", "a^"));
    }

    #[test]
    fn escapes() {
        assert!(glob_match("a\\*b", "a*b"));
        assert!(!glob_match("a\\*b", "axb"));
        assert!(glob_match("a\\\\", "a\\"));
        assert!(glob_match("\\[x\\]", "[x]"));
        assert!(glob_match("a\\ b", "a b"));
        assert!(glob_match("a\\.b", "a.b"));
        assert!(!glob_match("a\\.b", "axb"));
    }

    #[test]
    fn refused_patterns_explain_why() {
        for (pattern, fragment) in [
            ("a\\", "trailing backslash"),
            ("a\\d", "escape \\d"),
            ("\\é", "escape \\é"),
            ("[\\d]", "escape \\d"),
            ("[*]", "inside a character class"),
            ("a[?]", "inside a character class"),
            ("[[:alpha:]]", "POSIX"),
            ("[z-a]", "invalid character class range z-a"),
            ("[", "unterminated"),
            ("[a", "unterminated"),
            ("[a-", "unterminated"),
            ("[a-b", "unterminated"),
            ("[\\", "unterminated"),
            ("[]", "unescaped ']'"),
            ("[-a]", "unescaped '-'"),
            ("[a-b-c]", "unescaped '-'"),
        ] {
            let reason = compile(pattern).expect_err(pattern);
            assert!(reason.contains(fragment), "{pattern:?}: {reason}");
        }
    }

    #[test]
    fn class_details() {
        assert!(glob_match("[\\]a]", "]"));
        assert!(glob_match("[\\-]", "-"));
        assert!(glob_match("[x\\-]", "-"));
        assert!(!glob_match("[x\\-]", "z"));
        // `!` does not negate in Go's syntax: it is an ordinary member.
        assert!(glob_match("[!a]", "!"));
        assert!(glob_match("[!a]", "a"));
        assert!(!glob_match("[!a]", "b"));
        // `[` inside a class is literal, and `]` right after `[^` is an error.
        assert!(glob_match("[[]", "["));
        assert!(compile("[^]a]").is_err());
        // Several ranges and single characters.
        assert!(glob_match("[a-cx-z_]", "_"));
        assert!(glob_match("[a-cx-z_]", "y"));
        assert!(!glob_match("[a-cx-z_]", "m"));
        assert!(glob_match("[^a-cx-z_]", "m"));
    }
}
