//! Unit tests of the public API, including kiln's own versions of BuildKit's "with matches"
//! behaviours (used/unset sets, `#`/`%` trimming, `/` substitution) and robustness checks.

use super::*;

/// One "with matches" case: input, environment, expected result (`None`: must fail), used, unset.
type Case = (
    &'static str,
    &'static [(&'static str, &'static str)],
    Option<&'static str>,
    &'static [&'static str],
    &'static [&'static str],
);

const XB: &[(&str, &str)] = &[("FOO", "xxx"), ("BAR", "")];

const CASES: &[Case] = &[
    ("x", &[("DUMMY", "dummy")], Some("x"), &[], &[]),
    (
        "x ${UNUSED}",
        &[("DUMMY", "dummy")],
        Some("x "),
        &[],
        &["UNUSED"],
    ),
    ("x ${FOO}", &[("FOO", "y")], Some("x y"), &["FOO"], &[]),
    // `-` and `:-`: only the colon form treats an empty value as missing.
    (
        "${FOO-aaa} ${BAR-bbb} ${BAZ-ccc}",
        XB,
        Some("xxx  ccc"),
        &["BAR", "FOO"],
        &["BAZ"],
    ),
    (
        "${FOO:-aaa} ${BAR:-bbb} ${BAZ:-ccc}",
        XB,
        Some("xxx bbb ccc"),
        &["BAR", "FOO"],
        &["BAZ"],
    ),
    ("${FOO:-}", XB, Some("xxx"), &["FOO"], &[]),
    ("${FOO:-}", &[], Some(""), &[], &["FOO"]),
    // `+` and `:+`.
    (
        "${FOO+aaa} ${BAR+bbb} ${BAZ+ccc}",
        XB,
        Some("aaa bbb "),
        &["BAR", "FOO"],
        &["BAZ"],
    ),
    (
        "${FOO:+aaa} ${BAR:+bbb} ${BAZ:+ccc}",
        XB,
        Some("aaa  "),
        &["BAR", "FOO"],
        &["BAZ"],
    ),
    // `?` and `:?`.
    ("${FOO?aaa}", XB, Some("xxx"), &["FOO"], &[]),
    ("${BAR?bbb}", XB, Some(""), &["BAR"], &[]),
    ("${BAZ?ccc}", XB, None, &[], &[]),
    ("${FOO:?aaa}", XB, Some("xxx"), &["FOO"], &[]),
    ("${BAR:?bbb}", XB, None, &[], &[]),
    ("${BAZ:?ccc}", XB, None, &[], &[]),
    ("${BAZ:?}", XB, None, &[], &[]),
    // Assignment forms are not supported.
    ("${FOO=aaa}", XB, None, &[], &[]),
    ("${FOO=:aaa}", XB, None, &[], &[]),
    ("${FOO=}", &[], None, &[], &[]),
    // Prefix and suffix removal; regex metacharacters are literal, `\}` protects the brace.
    (
        r"${FOO#()[]{\}^$.\*\?|\\}",
        &[("FOO", r"()[]{}^$.*?|\x")],
        Some("x"),
        &["FOO"],
        &[],
    ),
    (
        r"${FOO%%\**}",
        &[("FOO", "xx**")],
        Some("xx"),
        &["FOO"],
        &[],
    ),
    ("${FOO#*x*y}", &[("FOO", "xxyy")], Some("y"), &["FOO"], &[]),
    ("${FOO#*}", &[("FOO", "xxyy")], Some("xxyy"), &["FOO"], &[]),
    (
        "${FOO#$BAR}",
        &[("FOO", "xxyy"), ("BAR", "x")],
        Some("xyy"),
        &["BAR", "FOO"],
        &[],
    ),
    (
        "${FOO#$BAR}",
        &[("FOO", "xxyy"), ("BAR", "")],
        Some("xxyy"),
        &["BAR", "FOO"],
        &[],
    ),
    ("${FOO#}", &[("FOO", "xxyy")], Some("xxyy"), &["FOO"], &[]),
    ("${FOO##*x}", &[("FOO", "xxyy")], Some("yy"), &["FOO"], &[]),
    ("${FOO##}", &[("FOO", "xxyy")], Some("xxyy"), &["FOO"], &[]),
    (r"${FOO#?\?}", &[("FOO", "???y")], Some("?y"), &["FOO"], &[]),
    (
        "${ABC:-.}${FOO%x}${ABC:-.}",
        &[("FOO", "xxyy")],
        Some(".xxyy."),
        &["FOO"],
        &["ABC"],
    ),
    (
        r"${FOO%%\**\*}",
        &[("FOO", "a***yy*")],
        Some("a"),
        &["FOO"],
        &[],
    ),
    ("${FOO%}", &[("FOO", "xxyy")], Some("xxyy"), &["FOO"], &[]),
    (
        "${FOO%%$BAR}",
        &[("FOO", "xxyy"), ("BAR", "")],
        Some("xxyy"),
        &["BAR", "FOO"],
        &[],
    ),
    // The colon forms of `#` and `%` are rejected.
    ("${FOO:#}", &[], None, &[], &[]),
    ("${FOO:##}", &[], None, &[], &[]),
    ("${FOO:%}", &[], None, &[], &[]),
    ("${FOO:%%}", &[], None, &[], &[]),
    // Substitution with variables in pattern and replacement.
    (
        "${FOO/$NEEDLE/.} - ${FOO//$NEEDLE/.}",
        &[("FOO", "/foo*/*/*.txt"), ("NEEDLE", r"\*/")],
        Some("/foo.*/*.txt - /foo..*.txt"),
        &["FOO", "NEEDLE"],
        &[],
    ),
    (
        "${FOO/$NEEDLE/} - ${FOO//$NEEDLE/}",
        &[("FOO", "/tmp/tmp/bar.txt"), ("NEEDLE", "/tmp")],
        Some("/tmp/bar.txt - /bar.txt"),
        &["FOO", "NEEDLE"],
        &[],
    ),
    (
        "${FOO/$NEEDLE/$REPLACEMENT} - ${FOO//$NEEDLE/$REPLACEMENT}",
        &[
            ("FOO", "/a/foo/b/c.txt"),
            ("NEEDLE", "/?/"),
            ("REPLACEMENT", "/"),
        ],
        Some("/foo/b/c.txt - /foo/c.txt"),
        &["FOO", "NEEDLE", "REPLACEMENT"],
        &[],
    ),
    (
        "${FOO/$NEEDLE/$REPLACEMENT}",
        &[
            ("FOO", "http://google.de"),
            ("NEEDLE", "http://"),
            ("REPLACEMENT", "https://"),
        ],
        Some("https://google.de"),
        &["FOO", "NEEDLE", "REPLACEMENT"],
        &[],
    ),
    // Escaped separators.
    (
        r"${FOO//\//\/}",
        &[("FOO", "/tmp/foo.txt")],
        Some(r"\/tmp\/foo.txt"),
        &["FOO"],
        &[],
    ),
    // Empty and partial forms.
    (
        "${FOO/$BAR/ww}",
        &[("FOO", "xxyy"), ("BAR", "")],
        Some("wwxxyy"),
        &["BAR", "FOO"],
        &[],
    ),
    ("${FOO//ww}", &[("FOO", "xxyy")], None, &[], &[]),
    ("${FOO//}", &[("FOO", "xxyy")], None, &[], &[]),
    ("${FOO///}", &[("FOO", "xxyy")], Some("xxyy"), &["FOO"], &[]),
    ("${FOO///}", &[], Some(""), &[], &["FOO"]),
];

fn env_of(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn set(names: &[&str]) -> BTreeSet<String> {
    names.iter().map(|s| s.to_string()).collect()
}

#[test]
fn with_matches_cases() {
    assert_eq!(CASES.len(), 47);
    assert_eq!(CASES.iter().filter(|c| c.2.is_none()).count(), 13);
    let lexer = Lexer::new('\\');
    for (input, env, expected, used, unset) in CASES {
        let got = lexer.process_word_with_matches(input, &env_of(env));
        match expected {
            None => assert!(got.is_err(), "{input:?} should fail, got {got:?}"),
            Some(want) => {
                let got = got.unwrap_or_else(|e| panic!("{input:?} failed: {e}"));
                assert_eq!(got.result, *want, "result of {input:?}");
                assert_eq!(got.used, set(used), "used of {input:?}");
                assert_eq!(got.unset, set(unset), "unset of {input:?}");
            }
        }
    }
}

#[test]
fn platform_triple_with_nested_alternative() {
    let word =
        "something-${VERSION}.${TARGETOS}-${TARGETARCH}${TARGETVARIANT:+-${TARGETVARIANT}}.tar.gz";
    let mut env = BTreeMap::new();
    for (k, v) in [
        ("VERSION", "v1.2.3"),
        ("TARGETOS", "linux"),
        ("TARGETARCH", "arm"),
        ("TARGETVARIANT", "v7"),
    ] {
        env.insert(k.to_string(), v.to_string());
    }
    let got = Lexer::new('\\')
        .process_word_with_matches(word, &env)
        .unwrap();
    assert_eq!(got.result, "something-v1.2.3.linux-arm-v7.tar.gz");
    assert_eq!(
        got.used,
        set(&["TARGETARCH", "TARGETOS", "TARGETVARIANT", "VERSION"])
    );
    assert!(got.unset.is_empty());

    env.remove("TARGETVARIANT");
    let got = Lexer::new('\\')
        .process_word_with_matches(word, &env)
        .unwrap();
    assert_eq!(got.result, "something-v1.2.3.linux-arm.tar.gz");
    assert_eq!(got.unset, set(&["TARGETVARIANT"]));
}

#[test]
fn required_message_is_expanded() {
    let lexer = Lexer::default();
    let word = "${VAR:?message here$ARG}";
    assert_eq!(
        lexer
            .process_word(word, &[("VAR", "plain"), ("ARG", "x")])
            .unwrap(),
        "plain"
    );
    for env in [vec![("VAR", ""), ("ARG", "x")], vec![("ARG", "x")]] {
        let err = lexer.process_word(word, &env).unwrap_err();
        assert_eq!(
            err.to_string(),
            r#"failed to process "${VAR:?message here$ARG}": VAR: message herex"#
        );
        assert_eq!(
            err.cause(),
            &ShellError::Required {
                name: "VAR".into(),
                message: "message herex".into()
            }
        );
    }
    let word = "${VAR?message here$ARG}";
    assert_eq!(
        lexer
            .process_word(word, &[("VAR", ""), ("ARG", "x")])
            .unwrap(),
        ""
    );
    let err = lexer.process_word(word, &[("ARG", "x")]).unwrap_err();
    assert!(err.to_string().contains("message herex"));
    let err = lexer.process_word("${V:?}", &[("V", "")]).unwrap_err();
    assert_eq!(err.cause().to_string(), "V: is not allowed to be empty");
    let err = lexer
        .process_word("${V?}", &Vec::<(String, String)>::new())
        .unwrap_err();
    assert_eq!(err.cause().to_string(), "V: is not allowed to be unset");
}

#[test]
fn error_kinds() {
    let lexer = Lexer::default();
    let none: &[(&str, &str)] = &[];
    let cause = |w: &str| {
        lexer
            .process_word(w, &none.to_vec())
            .unwrap_err()
            .cause()
            .clone()
    };
    assert_eq!(cause("${}"), ShellError::BadSubstitution);
    assert_eq!(cause("${:-x}"), ShellError::BadSubstitution);
    assert_eq!(cause("${"), ShellError::MissingBrace);
    assert_eq!(cause("${a"), ShellError::MissingBrace);
    assert_eq!(cause("${a:-b"), ShellError::MissingBrace);
    assert_eq!(cause("${a:"), ShellError::MissingBrace);
    assert_eq!(cause("${a/b"), ShellError::MissingSlash);
    assert_eq!(cause("${a/b/c"), ShellError::MissingBrace);
    assert_eq!(cause("${.}"), ShellError::UnsupportedModifier(".".into()));
    assert_eq!(
        cause("${a:=b}"),
        ShellError::UnsupportedModifier(":=".into())
    );
    assert_eq!(
        cause("${a:YYY}"),
        ShellError::UnsupportedModifier(":Y".into())
    );
    assert_eq!(
        cause("${a:#b}"),
        ShellError::UnsupportedModifier(":#".into())
    );
    assert_eq!(cause("'a"), ShellError::UnterminatedSingleQuote);
    assert_eq!(cause("\"a"), ShellError::UnterminatedDoubleQuote);
    assert!(matches!(
        cause(r"${a#\q}"),
        ShellError::InvalidPattern { .. }
    ));
}

#[test]
fn quotes_escapes_and_specials() {
    let env = vec![("PWD", "/home"), ("E", "")];
    let l = Lexer::default();
    let w = |s: &str| l.process_word(s, &env).unwrap();
    assert_eq!(w(r#""a\tb\"\$\\""#), r#"a\tb"$\"#);
    assert_eq!(w(r"'a\'"), r"a\");
    assert_eq!(w(r"a\ b\"), "a b");
    assert_eq!(
        w("~/x $ $. $@@@ $1x $999a ${0:-d} $$"),
        "~/x $ $. @@ x a d "
    );
    assert_eq!(w("${PWD:+${PWD}:}"), "/home:");
    assert_eq!(w(r"${X:-\${PWD}z}"), "${PWDz}");

    let tick = Lexer::new('`');
    assert_eq!(tick.process_word(r"a`$PWD\x``", &env).unwrap(), r"a$PWD\x`");
    assert_eq!(tick.process_word(r#""`"`$`x""#, &env).unwrap(), r#""$`x"#);
}

#[test]
fn lexer_options() {
    let env = vec![("SET", "v")];
    let l = Lexer {
        skip_unset_env: true,
        ..Lexer::default()
    };
    assert_eq!(
        l.process_word("$X ${X} ${X:-$SET} ${X//a/b} ${SET:-n}", &env)
            .unwrap(),
        "$X ${X} ${X:-v} ${X/a/b} v"
    );
    assert_eq!(l.process_word("${X:?boom}", &env).unwrap(), "${X:?boom}");

    let l = Lexer {
        skip_process_quotes: true,
        ..Lexer::default()
    };
    assert_eq!(
        l.process_word(r#"'$SET' "a b""#, &env).unwrap(),
        r#"'v' "a b""#
    );
    assert_eq!(l.process_words(r#""a b""#, &env).unwrap(), ["\"a", "b\""]);

    let l = Lexer {
        raw_quotes: true,
        ..Lexer::default()
    };
    assert_eq!(
        l.process_word(r#"'$SET' "$SET""#, &env).unwrap(),
        r#"'$SET' "v""#
    );

    let l = Lexer {
        raw_escapes: true,
        ..Lexer::default()
    };
    assert_eq!(l.process_word(r"a\ b\$SET", &env).unwrap(), r"a\ b\$SET");
}

#[test]
fn splitting() {
    let env = vec![("S", " a  b "), ("E", "")];
    let l = Lexer::default();
    let ws = |s: &str| l.process_words(s, &env).unwrap();
    assert_eq!(ws("x${S}y"), ["x", "a", "b", "y"]);
    assert_eq!(ws("x\"${S}\"y"), ["x a  b y"]);
    assert_eq!(ws("  p   q  "), ["p", "q"]);
    assert_eq!(ws("\"\" '' $E"), Vec::<String>::new());
    assert_eq!(ws("hello${X:-a b}"), ["helloa", "b"]);
    assert_eq!(ws(r"a\ b"), ["a b"]);
}

#[test]
fn env_impls_later_entries_win() {
    let list = vec![
        ("K".to_string(), "1".to_string()),
        ("K".to_string(), "2".to_string()),
    ];
    assert_eq!(Env::get(&list, "K").as_deref(), Some("2"));
    assert_eq!(Env::keys(&list), ["K"]);
    let arr = [("A", "1")];
    assert_eq!(Env::get(&arr, "A").as_deref(), Some("1"));
    assert_eq!(Env::get(&arr, "a"), None);
    let mut hm: HashMap<String, String> = HashMap::new();
    hm.insert("B".into(), "".into());
    assert_eq!(
        Lexer::default().process_word("[${B-x}]", &hm).unwrap(),
        "[]"
    );
}

#[test]
fn deep_nesting_is_an_error_not_a_crash() {
    let l = Lexer::default();
    let env: Vec<(String, String)> = Vec::new();
    let nested = |n: usize| "${a:-".repeat(n) + "x" + &"}".repeat(n);
    assert_eq!(l.process_word(&nested(MAX_DEPTH), &env).unwrap(), "x");
    let err = l.process_word(&nested(MAX_DEPTH + 1), &env).unwrap_err();
    assert_eq!(err.cause(), &ShellError::TooDeep(MAX_DEPTH));
    // Hostile input far beyond the limit, also through double quotes.
    assert!(l.process_word(&nested(100_000), &env).is_err());
    let quoted = "\"${a:-".repeat(50_000) + &"}\"".repeat(50_000);
    assert!(l.process_word(&quoted, &env).is_err());
}

#[test]
fn odd_inputs_never_panic() {
    let env = vec![("A", "한국어"), ("E", ""), ("S", "a b")];
    let fixed = [
        "",
        "$",
        "${",
        "\\",
        "$\\",
        "${\\",
        "${A",
        "${A:",
        "${A/",
        "${A//",
        "${A#",
        "${A%%",
        "'",
        "\"",
        "\"\\",
        "${A:-\"",
        "한$",
        "한\\",
        "${한}",
        "${A#한}",
        "${A%어}",
        "${A/국/}",
        "${A#\\한}",
        "${A%\\}",
        "\u{feff}$A",
        "\0$A\0",
        "${A//}",
        "${A///}",
        "$$$$",
        "${#}",
        "${A:-${A:-${A",
        "${A/?/\\}",
        "${A//*/$0}",
    ];
    let alphabet = [
        '$', '{', '}', ':', '-', '?', '#', '%', '/', '\\', '\'', '"', 'A', '한',
    ];
    let mut inputs: Vec<String> = fixed.iter().map(|s| s.to_string()).collect();
    let mut frontier = vec![String::new()];
    for _ in 0..4 {
        let mut grown = Vec::new();
        for s in &frontier {
            for c in alphabet {
                let mut t = s.clone();
                t.push(c);
                grown.push(t);
            }
        }
        inputs.extend(grown.iter().cloned());
        frontier = grown;
    }
    let mut lexers = vec![Lexer::default(), Lexer::new('`')];
    let all_on = Lexer {
        skip_unset_env: true,
        raw_quotes: true,
        raw_escapes: true,
        ..Lexer::default()
    };
    lexers.push(all_on);
    for input in &inputs {
        for l in &lexers {
            let a = l.process_word(input, &env);
            let b = l.process_words(input, &env);
            let c = l.process_word_with_matches(input, &env);
            assert_eq!(a.is_ok(), b.is_ok(), "{input:?}");
            assert_eq!(a, c.map(|e| e.result), "{input:?}");
        }
    }
}
