//! Tests of the matcher as a whole, from the behaviours moby/patternmatcher's
//! test tables cover (written afresh from their description).

use super::*;

/// Decides `path` the three ways a caller can: all at once, incrementally
/// with every parent's result passed down, and incrementally without context.
fn three_ways(matcher: &PatternMatcher, path: &str) -> [bool; 3] {
    let direct = matcher.matches_or_parent_matches(path);
    let cleaned = clean_path(path);
    let mut info = MatchInfo::default();
    for dir in parent_dirs(&cleaned) {
        info = matcher.matches_using_parent_result(dir, info);
    }
    let chained = matcher.matches_using_parent_result(path, info).matched;
    let no_context = matcher
        .matches_using_parent_result(path, MatchInfo::default())
        .matched;
    [direct, chained, no_context]
}

fn check(patterns: &[&str], path: &str, expected: bool) {
    let matcher = PatternMatcher::new(patterns).expect("patterns compile");
    assert_eq!(
        three_ways(&matcher, path),
        [expected; 3],
        "patterns {patterns:?}, path {path:?}"
    );
}

const WHEEL: &str = "dist/proxy.py-2.4.0rc3.dev36+g08acad9-py3-none-any.whl";

/// One pattern against one path: `**` in every position, classes, `?`,
/// dot-files, regex metacharacters taken literally, and `abc/**` not matching
/// `abc` itself.
#[test]
fn single_pattern_table() {
    let table: &[(&str, &str, bool)] = &[
        ("**", "file", true),
        ("**", "file/", true),
        ("**/", "file", true),
        ("**/", "file/", true),
        ("**", "/", true),
        ("**/", "/", true),
        ("**", "dir/file", true),
        ("**/", "dir/file", true),
        ("**", "dir/file/", true),
        ("**/", "dir/file/", true),
        ("**/**", "dir/file", true),
        ("**/**", "dir/file/", true),
        ("dir/**", "dir/file", true),
        ("dir/**", "dir/file/", true),
        ("dir/**", "dir/dir2/file", true),
        ("dir/**", "dir/dir2/file/", true),
        ("**/dir", "dir", true),
        ("**/dir", "dir/file", true),
        ("**/dir2/*", "dir/dir2/file", true),
        ("**/dir2/*", "dir/dir2/file/", true),
        ("**/dir2/**", "dir/dir2/dir3/file", true),
        ("**/dir2/**", "dir/dir2/dir3/file/", true),
        ("**file", "file", true),
        ("**file", "dir/file", true),
        ("**/file", "dir/file", true),
        ("**file", "dir/dir/file", true),
        ("**/file", "dir/dir/file", true),
        ("**/file*", "dir/dir/file", true),
        ("**/file*", "dir/dir/file.txt", true),
        ("**/file*txt", "dir/dir/file.txt", true),
        ("**/file*.txt", "dir/dir/file.txt", true),
        ("**/file*.txt*", "dir/dir/file.txt", true),
        ("**/**/*.txt", "dir/dir/file.txt", true),
        ("**/**/*.txt2", "dir/dir/file.txt", false),
        ("**/*.txt", "file.txt", true),
        ("**/**/*.txt", "file.txt", true),
        ("a**/*.txt", "a/file.txt", true),
        ("a**/*.txt", "a/dir/file.txt", true),
        ("a**/*.txt", "a/dir/dir/file.txt", true),
        ("a/*.txt", "a/dir/file.txt", false),
        ("a/*.txt", "a/file.txt", true),
        ("a/*.txt**", "a/file.txt", true),
        ("a[b-d]e", "ae", false),
        ("a[b-d]e", "ace", true),
        ("a[b-d]e", "aae", false),
        ("a[^b-d]e", "aze", true),
        (".*", ".foo", true),
        (".*", "foo", false),
        ("abc.def", "abcdef", false),
        ("abc.def", "abc.def", true),
        ("abc.def", "abcZdef", false),
        ("abc?def", "abcZdef", true),
        ("abc?def", "abcdef", false),
        ("a\\\\", "a\\", true),
        ("**/foo/bar", "foo/bar", true),
        ("**/foo/bar", "dir/foo/bar", true),
        ("**/foo/bar", "dir/dir2/foo/bar", true),
        ("abc/**", "abc", false),
        ("abc/**", "abc/def", true),
        ("abc/**", "abc/def/ghi", true),
        ("**/.foo", ".foo", true),
        ("**/.foo", "bar.foo", false),
        ("a(b)c/def", "a(b)c/def", true),
        ("a(b)c/def", "a(b)c/xyz", false),
        ("a.|)$(}+{bc", "a.|)$(}+{bc", true),
        (WHEEL, WHEEL, true),
        ("dist/*.whl", WHEEL, true),
        // Unix only in Docker: `\` escapes.
        ("a\\*b", "a*b", true),
    ];
    assert_eq!(table.len(), 68);
    for &(pattern, path, expected) in table {
        check(&[pattern], path, expected);
    }
}

/// `!` re-inclusion with several patterns: the last matching pattern wins,
/// and a parent's match counts for its children.
#[test]
fn multi_pattern_table() {
    let table: &[(&[&str], &str, bool)] = &[
        (&["**", "!util/docker/web"], "util/docker/web/foo", false),
        (
            &["**", "!util/docker/web", "util/docker/web/foo"],
            "util/docker/web/foo",
            true,
        ),
        (&["**", &format!("!{WHEEL}")], WHEEL, false),
        (&["**", "!dist/*.whl"], WHEEL, false),
        (&["*.go", "!fileutils.go"], "fileutils.go", false),
        (&["!fileutils.go", "*.go"], "fileutils.go", true),
        (&["docs", "!docs/README.md"], "docs/README.md", false),
        (&["docs/", "!docs/README.md"], "docs/README.md", false),
        (&["docs/*", "!docs/README.md"], "docs/README.md", false),
        (&["docs", "!docs/README.md"], "docs/other.md", true),
        (&["*"], "fileutils.go", true),
        (&["*.go"], "fileutils.go", true),
        // Re-included directory, then an inner path ignored again.
        (&["a", "!a/b", "a/b/c"], "a/b/c/d", true),
        (&["a", "!a/b", "a/b/c"], "a/b/x", false),
        // A pattern that matched a parent keeps counting after a later exclusion
        // matched the path (Docker's own incremental variant gets this wrong).
        (&["a", "!a/b", "*"], "a/b", true),
        (&["a", "!a/b", "a"], "a/b/c", true),
    ];
    for &(patterns, path, expected) in table {
        check(patterns, path, expected);
    }
}

/// Cases adapted from Go's `filepath.Match` tests, run through the matcher (so
/// a parent directory matching counts: `a*` matches `ab/c` through `ab`).
#[test]
fn filepath_match_table() {
    let table: &[(&str, &str, bool)] = &[
        ("abc", "abc", true),
        ("*", "abc", true),
        ("*c", "abc", true),
        ("a*", "a", true),
        ("a*", "abc", true),
        ("a*", "ab/c", true),
        ("a*/b", "abc/b", true),
        ("a*/b", "a/c/b", false),
        ("a*b*c*d*e*/f", "axbxcxdxe/f", true),
        ("a*b*c*d*e*/f", "axbxcxdxexxx/f", true),
        ("a*b*c*d*e*/f", "axbxcxdxe/xxx/f", false),
        ("a*b*c*d*e*/f", "axbxcxdxexxx/fff", false),
        ("a*b?c*x", "abxbbxdbxebxczzx", true),
        ("a*b?c*x", "abxbbxdbxebxczzy", false),
        ("ab[c]", "abc", true),
        ("ab[b-d]", "abc", true),
        ("ab[e-g]", "abc", false),
        ("ab[^c]", "abc", false),
        ("ab[^b-d]", "abc", false),
        ("ab[^e-g]", "abc", true),
        ("a\\*b", "a*b", true),
        ("a\\*b", "ab", false),
        ("a?b", "a☺b", true),
        ("a[^a]b", "a☺b", true),
        ("a???b", "a☺b", false),
        ("a[^a][^a][^a]b", "a☺b", false),
        ("[a-ζ]*", "α", true),
        ("*[a-ζ]", "A", false),
        ("a?b", "a/b", false),
        ("a*b", "a/b", false),
        ("[\\]a]", "]", true),
        ("[\\-]", "-", true),
        ("[x\\-]", "x", true),
        ("[x\\-]", "-", true),
        ("[x\\-]", "z", false),
        ("[\\-x]", "x", true),
        ("[\\-x]", "-", true),
        ("[\\-x]", "a", false),
        ("*x", "xxx", true),
    ];
    for &(pattern, path, expected) in table {
        check(&[pattern], path, expected);
    }
    let bad = [
        "[]a]", "[-]", "[x-]", "[x-]", "[x-]", "[-x]", "[-x]", "[-x]", "\\", "[a-b-c]", "[", "[^",
        "[^bc", "a[", "a[",
    ];
    assert_eq!(table.len() + bad.len(), 54);
    for pattern in bad {
        match PatternMatcher::new(&[pattern]) {
            Err(PatternError::Bad { pattern: p, .. }) => assert_eq!(p, pattern),
            other => panic!("{pattern:?}: expected a syntax error, got {other:?}"),
        }
    }
}

#[test]
fn lone_exclamation_is_an_error() {
    // `!/` cleans to `!` before the `!` is looked at.
    for patterns in [&["!"][..], &["a", " ! "], &["!/"], &["b", "!", "c"]] {
        let err = PatternMatcher::new(patterns).unwrap_err();
        assert_eq!(err, PatternError::LoneExclamation, "{patterns:?}");
        assert_eq!(err.to_string(), "illegal exclusion pattern: \"!\"");
    }
    assert_eq!(
        Pattern::new("!").unwrap_err(),
        PatternError::LoneExclamation
    );
}

#[test]
fn exclusion_flag_and_trimming() {
    let matcher =
        PatternMatcher::new(&["docs", "  !docs/README.md", "!docs/x.md  ", " tmp\t"]).unwrap();
    assert!(matcher.has_exclusions());
    let summary: Vec<(&str, bool)> = matcher
        .patterns()
        .iter()
        .map(|p| (p.text(), p.is_exclusion()))
        .collect();
    assert_eq!(
        summary,
        [
            ("docs", false),
            ("docs/README.md", true),
            ("docs/x.md", true),
            ("tmp", false)
        ]
    );
    assert!(!PatternMatcher::new(&["docs", "config"])
        .unwrap()
        .has_exclusions());
    // Cleaning happens before `!` is split off, exactly as in Docker.
    let odd = Pattern::new("!a/../b").unwrap();
    assert_eq!((odd.text(), odd.is_exclusion()), ("b", false));
    let excl = Pattern::new("!./a//b/").unwrap();
    assert_eq!((excl.text(), excl.is_exclusion()), ("./a/b", true));
}

#[test]
fn empty_patterns_are_dropped() {
    let matcher = PatternMatcher::new(&["docs", "config", "", "   ", "\t"]).unwrap();
    assert_eq!(matcher.patterns().len(), 2);
    let none = PatternMatcher::new(&["", " "]).unwrap();
    assert!(none.is_empty());
    assert!(Pattern::new("  ").is_err());
}

#[test]
fn nothing_matches_without_patterns() {
    let empty: [&str; 0] = [];
    for matcher in [
        PatternMatcher::new(&empty).unwrap(),
        PatternMatcher::default(),
    ] {
        assert!(matcher.is_empty());
        assert!(!matcher.has_exclusions());
        for path in ["/any/path/there", "a", "a/b", ".", ""] {
            assert_eq!(three_ways(&matcher, path), [false; 3], "{path:?}");
        }
    }
}

#[test]
fn dot_never_matches() {
    // A `.` pattern never matches, and the context root `.` is never matched.
    let dot = PatternMatcher::new(&["."]).unwrap();
    let everything = PatternMatcher::new(&["**", "*", "*.go"]).unwrap();
    for path in [".", "./", "", "a/..", "./."] {
        assert_eq!(three_ways(&dot, path), [false; 3], "{path:?}");
        assert_eq!(three_ways(&everything, path), [false; 3], "{path:?}");
        assert!(!everything.patterns()[0].matches(path));
    }
    for path in ["a", "a/b", ".a", "..", "../x"] {
        assert_eq!(three_ways(&dot, path), [false; 3], "{path:?}");
    }
}

#[test]
fn paths_are_cleaned_before_matching() {
    let matcher = PatternMatcher::new(&["a/b", "c/*.txt"]).unwrap();
    for path in [
        "a/b", "./a/b", "a//b", "a/b/", "a/./b", "x/../a/b", "./a/b/c",
    ] {
        assert_eq!(three_ways(&matcher, path), [true; 3], "{path:?}");
    }
    assert!(matcher.patterns()[1].matches("./c/x.txt"));
    assert!(!matcher.patterns()[1].matches("c/d/x.txt"));
    // Paths are relative to the context root: a leading `/` is not removed.
    assert!(!matcher.matches_or_parent_matches("/a/b"));
}

#[test]
fn malformed_patterns_fail_at_construction() {
    for patterns in [&["["][..], &["**/["], &["ok", "a[b"], &["!x[^"]] {
        let err = PatternMatcher::new(patterns).unwrap_err();
        assert!(
            matches!(err, PatternError::Bad { .. }),
            "{patterns:?}: {err:?}"
        );
    }
    let err = PatternMatcher::new(&["  a/[  "]).unwrap_err();
    assert_eq!(
        err.to_string(),
        "syntax error in pattern \"a/[\": unterminated character class"
    );
}

#[test]
fn clean_path_is_go_filepath_clean() {
    for (input, expected) in [
        ("", "."),
        (".", "."),
        ("./", "."),
        ("a", "a"),
        ("a/", "a"),
        ("./a", "a"),
        ("a//b", "a/b"),
        ("a/./b/.", "a/b"),
        ("a/b/..", "a"),
        ("a/../..", ".."),
        ("../a/../../b", "../../b"),
        ("/", "/"),
        ("//", "/"),
        ("/..", "/"),
        ("/../a", "/a"),
        ("/a/b/", "/a/b"),
        ("!a/..", "."),
        ("**/", "**"),
    ] {
        assert_eq!(clean_path(input), expected, "{input:?}");
    }
}

/// No input may make construction or matching panic.
#[test]
fn arbitrary_patterns_never_panic() {
    let alphabet: Vec<char> = "*?[]^!-\\/a.b:é☺ {}()|$+\n".chars().collect();
    let paths = [
        "",
        ".",
        "a",
        "a/b",
        "a*b",
        "[",
        "\\",
        "a/b/c/é☺",
        "/",
        "-",
        "\n",
    ];
    let mut rng = XorShift(0x9e37_79b9_7f4a_7c15);
    for _ in 0..20_000 {
        let len = rng.below(9);
        let pattern: String = (0..len)
            .map(|_| alphabet[rng.below(alphabet.len())])
            .collect();
        if let Ok(matcher) = PatternMatcher::new(&[pattern.as_str(), "!x*"]) {
            for path in paths {
                let [a, b, c] = three_ways(&matcher, path);
                assert!(a == b && b == c, "{pattern:?} {path:?}");
            }
        }
    }
}

/// A tiny deterministic generator, so the generated tests need no crates.
struct XorShift(u64);

impl XorShift {
    fn below(&mut self, n: usize) -> usize {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 % n as u64) as usize
    }
}

/// Walks every path of a generated tree, passing each directory's result to
/// its children, and compares with the all-at-once rule at every node.
#[test]
fn incremental_results_agree_over_a_generated_tree() {
    let names = ["a", "b", "dir", "file.txt", ".foo", "x y"];
    let pattern_pool = [
        "**",
        "a",
        "!a",
        "a/**",
        "!a/b",
        "**/b",
        "!**/b",
        "*.txt",
        "!*.txt",
        "**/*.txt",
        "!**/file.txt",
        "dir",
        "!dir/**",
        "a/*/c",
        "d?r",
        "!?",
        "[a-b]",
        "![^a]*",
        "**/.foo",
        "dir/b",
        "!dir/b/a",
        "x y",
        "a**",
        "**b",
        "dir/a/dir",
        "!*/*/*",
        "a/b/a",
        "**/dir/**",
        "!.foo",
    ];
    let mut rng = XorShift(42);
    let mut lists: Vec<Vec<&str>> = vec![
        vec!["**", "!util/docker/web", "util/docker/web/foo"],
        vec!["a", "!a/b", "*"],
        vec!["a", "!a/b", "a"],
    ];
    for _ in 0..100 {
        let count = 1 + rng.below(6);
        lists.push(
            (0..count)
                .map(|_| pattern_pool[rng.below(pattern_pool.len())])
                .collect(),
        );
    }
    for patterns in &lists {
        let matcher = PatternMatcher::new(patterns).unwrap();
        let mut stack = vec![(String::new(), MatchInfo::default(), 0usize)];
        let mut visited = 0;
        while let Some((dir, info, depth)) = stack.pop() {
            if depth == 4 {
                continue;
            }
            for name in names {
                let path = if dir.is_empty() {
                    name.to_owned()
                } else {
                    format!("{dir}/{name}")
                };
                let child = matcher.matches_using_parent_result(&path, info);
                let expected = matcher.matches_or_parent_matches(&path);
                assert_eq!(
                    child.matched, expected,
                    "patterns {patterns:?}, path {path:?}"
                );
                let fresh = matcher.matches_using_parent_result(&path, MatchInfo::default());
                assert_eq!(fresh, child, "patterns {patterns:?}, path {path:?}");
                visited += 1;
                stack.push((path, child, depth + 1));
            }
        }
        assert_eq!(visited, 6 + 36 + 216 + 1296);
    }
}

/// Patterns that make a backtracking matcher exponential. Each of these
/// would take a naive matcher minutes or more; here it must simply finish.
#[test]
fn hostile_patterns_finish() {
    let deep = format!("{}b", "x/".repeat(120));
    let stars = "**/".repeat(24) + "a";
    let many_stars = format!("{}b", "a*".repeat(40));
    let long_a = "a".repeat(3000);
    let mixed = format!("{}c", "**/x*".repeat(20));
    let cases: [(&str, &str); 4] = [
        (&stars, &deep),
        (&many_stars, &long_a),
        (&mixed, &deep),
        ("**/**/**/**/**/**/**/**/**/**/**/**/**/**/**/**/a", &deep),
    ];
    for (pattern, path) in cases {
        let matcher = PatternMatcher::new(&[pattern]).unwrap();
        assert_eq!(three_ways(&matcher, path), [false; 3]);
    }
    // The same shapes do match when they should.
    let deep_a = format!("{}a", "x/".repeat(120));
    let matcher = PatternMatcher::new(&[stars.as_str()]).unwrap();
    assert!(matcher.matches_or_parent_matches(&deep_a));
    let matcher = PatternMatcher::new(&[many_stars.as_str()]).unwrap();
    assert!(matcher.matches_or_parent_matches(&format!("{long_a}b")));
}

/// fsutil's filtered walk, the case found beside a real BuildKit: exceptions
/// below an excluded directory keep it walked; others do not.
#[test]
fn excluded_dirs_are_walked_only_for_exceptions_below_them() {
    let m = PatternMatcher::new(&[
        "**/*.md",
        "!README.md",
        "build/",
        "!build/keep/",
        "docs",
        "!docs/api.md",
        ".git",
    ])
    .expect("patterns");
    for dir in ["build", "docs", "build/keep", "./build/"] {
        assert!(m.must_walk_excluded_dir(dir), "{dir}");
    }
    for dir in [".git", "pkg", "buil", "build/out", "docs/api.md/x"] {
        assert!(!m.must_walk_excluded_dir(dir), "{dir}");
    }
    // `docs/api.md` is re-included; `docs/guide.txt` is not; both are reached.
    assert!(!m.matches_or_parent_matches("docs/api.md"));
    assert!(m.matches_or_parent_matches("docs/guide.txt"));
    assert!(m.walk_reaches("docs/api.md"));
    assert!(m.walk_reaches("build/keep/x"));
    assert!(!m.walk_reaches(".git/HEAD"));
    assert!(m.walk_reaches("main.go"));
}

#[test]
fn a_trailing_glob_is_taken_off_before_comparing() {
    // `!a/b/**` and `!a/b/*` re-include what is under a/b: walk a and a/b.
    for exception in ["!a/b/**", "!a/b/*", "!a/b"] {
        let m = PatternMatcher::new(&["a", exception]).expect("patterns");
        assert!(m.must_walk_excluded_dir("a"), "{exception}");
        assert!(m.must_walk_excluded_dir("a/b"), "{exception}");
        assert!(!m.must_walk_excluded_dir("c"), "{exception}");
        assert!(!m.must_walk_excluded_dir("a/c"), "{exception}");
    }
    // Only one of each is taken off, `/**` first: `a/*/**` leaves `a`.
    let m = PatternMatcher::new(&["a", "!a/*/**"]).expect("patterns");
    assert!(m.must_walk_excluded_dir("a"));
    assert!(!m.must_walk_excluded_dir("b"));
    let m = PatternMatcher::new(&["a", "!a/**/*"]).expect("patterns");
    assert!(
        m.must_walk_excluded_dir("b"),
        "a/** still holds a pattern character"
    );
}

#[test]
fn an_exception_with_a_pattern_character_walks_every_excluded_dir() {
    for exception in ["!*.keep", "!x/[ab]", "!x/?", "!x/\\*", "!**/keep"] {
        let m = PatternMatcher::new(&["node_modules", exception]).expect("patterns");
        assert!(m.must_walk_excluded_dir("node_modules"), "{exception}");
        assert!(m.must_walk_excluded_dir("far/away"), "{exception}");
    }
}

#[test]
fn without_exceptions_no_excluded_dir_is_walked() {
    let m = PatternMatcher::new(&["a", "b/**", "*.md"]).expect("patterns");
    for dir in ["a", "b", "b/c", "x.md"] {
        assert!(!m.must_walk_excluded_dir(dir), "{dir}");
    }
    assert!(!m.walk_reaches("a/x"));
    assert!(m.walk_reaches("c/x"));
    assert!(!PatternMatcher::default().must_walk_excluded_dir("a"));
}

#[test]
fn an_exception_above_the_dir_does_not_walk_it() {
    // `!a` is no prefix of `a/b/`: fsutil skips a/b once a later `a/b` excludes it.
    let m = PatternMatcher::new(&["!a", "a/b"]).expect("patterns");
    assert!(!m.must_walk_excluded_dir("a/b"));
    assert!(!m.walk_reaches("a/b/c"));
}
