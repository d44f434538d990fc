//! Parser unit tests: the table-driven behaviours BuildKit tests in Go code, rewritten as kiln's own cases.

use super::*;

fn one(src: &str) -> Node {
    let df = parse(src).unwrap_or_else(|e| panic!("{src:?}: {e}"));
    df.children.into_iter().next().expect("one instruction")
}

#[test]
fn heredocs_in_run_copy_add_and_onbuild() {
    let n = one("RUN <<EOF\necho hi\nEOF\n");
    assert_eq!(n.args, ["<<EOF"]);
    assert_eq!(n.heredocs[0].content, "echo hi\n");
    assert_eq!((n.span.start_line, n.span.end_line), (1, 3));

    let n = one("COPY <<A <<B /dst/\nfile a\nA\nfile b\nB\n");
    assert_eq!(n.args, ["<<A", "<<B", "/dst/"]);
    assert_eq!(
        n.heredocs
            .iter()
            .map(|h| h.content.as_str())
            .collect::<Vec<_>>(),
        ["file a\n", "file b\n"]
    );

    let n = one("RUN <<-EOF\n\techo tab\n\tEOF\n");
    assert!(n.heredocs[0].chomp);
    assert_eq!(
        n.heredocs[0].content, "\techo tab\n",
        "the node keeps the tabs; chomping happens later"
    );

    let n = one("RUN python3 <<'EOF'\nprint($HOME)\nEOF\n");
    assert_eq!(n.args, ["python3 <<'EOF'"]);
    assert!(!n.heredocs[0].expand);

    let n = one("ONBUILD RUN <<EOF\necho later\nEOF\n");
    let next = n.next.as_ref().expect("trigger");
    assert_eq!(next.heredocs[0].content, "echo later\n");

    let n = one("RUN <<EOF\nEOF\n");
    assert_eq!(n.heredocs[0].content, "");

    let n = one("RUN 3<<EOF cat /proc/self/fd/3\nx\nEOF\n");
    assert_eq!(n.heredocs[0].file_descriptor, 3);
}

#[test]
fn heredocs_not_where_they_do_not_belong() {
    assert!(one("USER <<EOF\n").heredocs.is_empty());
    assert!(one("RUN [\"echo\", \"<<EOF\"]\n").heredocs.is_empty());
    assert!(one("RUN echo \"<<EOF\"\n").heredocs.is_empty());
    let n = one("RUN <<EOF\nEOF2\nxEOF\nEOF\n");
    assert_eq!(
        n.heredocs[0].content, "EOF2\nxEOF\n",
        "terminators must match the whole line"
    );
}

#[test]
fn unterminated_heredoc_is_an_error() {
    let e = parse("FROM x\nRUN <<EOF\nno end\n").unwrap_err();
    assert!(e.message.contains("unterminated heredoc"), "{e}");
    assert_eq!(e.span.map(|s| s.start_line), Some(2));
}

#[test]
fn crlf_bom_and_escape_directive() {
    let df = parse("\u{feff}# escape=`\r\nFROM x\r\nRUN echo a `\r\n  b\r\n").unwrap();
    assert_eq!(df.directives.escape, '`');
    assert_eq!(dump(&df), "(from \"x\")\n(run \"echo a   b\")");
    assert_eq!(df.lines[1], "FROM x");
}

#[test]
fn continuation_warnings() {
    let df = parse("FROM x\nRUN a \\\n\n  b\nRUN c \\\n# comment\n  d\n").unwrap();
    assert_eq!(df.warnings.len(), 1);
    assert!(df.warnings[0].message.contains("Empty continuation line"));
    assert_eq!(df.children[2].args, ["c   d"]);
}

#[test]
fn line_length_limit() {
    let long = format!("FROM x\nRUN echo {}\n", "a".repeat(70_000));
    let e = parse(&long).unwrap_err();
    assert!(e.message.contains("max allowed size of 65535"));
    assert_eq!(e.span.map(|s| s.start_line), Some(2));
}

#[test]
fn empty_and_comment_only_files_fail() {
    assert!(parse("").is_err());
    assert!(parse("# just a comment\n\n").is_err());
    assert!(parse("ENV PATH\n").is_err());
}

#[test]
fn spans_have_columns() {
    let df = parse("FROM x\n   RUN   echo hi\n").unwrap();
    let s = df.children[1].span;
    assert_eq!((s.start_line, s.start_col, s.end_col), (2, 4, 17));
    assert_eq!(df.children[1].keyword_as_written, "RUN");
    assert_eq!(df.children[1].original, "RUN   echo hi");
}

#[test]
fn quote_like_go() {
    assert_eq!(quote_go("a\"b\\c"), "\"a\\\"b\\\\c\"");
    assert_eq!(quote_go("\t\n\u{0}"), "\"\\t\\n\\x00\"");
    assert_eq!(quote_go("♥한"), "\"♥한\"");
}

#[test]
fn never_panics_on_odd_input() {
    let odd = [
        "\\",
        "`",
        "[",
        "RUN [",
        "RUN [\"a\"",
        "FROM \u{0}",
        "RUN \\\n",
        "# escape=`\n`",
        "ONBUILD",
        "ONBUILD ONBUILD",
        "HEALTHCHECK",
        "HEALTHCHECK CMD",
        "ENV a=",
        "ENV =",
        "LABEL \"",
        "ARG \"a b",
        "COPY --",
        "COPY --x=\"a",
        "RUN <<",
        "RUN <<-",
        "RUN <<''",
        "RUN <<\"",
        "FROM é\\",
        "RUN é \\\n\\",
        "\r\r\r",
        "RUN 99999999999<<EOF\nEOF",
    ];
    for src in odd {
        let _ = parse(src);
        let _ = parse(&format!("FROM x\n{src}\n"));
    }
    let deep = format!("{}RUN x\n", "ONBUILD ".repeat(5000));
    let _ = parse(&deep);
}
