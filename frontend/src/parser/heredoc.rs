//! Heredocs (`<<EOF`) in RUN, COPY and ADD: which words of a line open one, and how their bodies end.

use crate::shell::Lexer;

/// One heredoc: its terminator name, body and options.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Heredoc {
    /// The terminator word, quotes removed.
    pub name: String,
    /// The body: every line up to the terminator, each with its newline.
    pub content: String,
    /// Variables are expanded in the body (the delimiter was not quoted).
    pub expand: bool,
    /// `<<-`: leading tabs are stripped from the body (and when matching the terminator).
    pub chomp: bool,
    /// `N<<`: the file descriptor the body is fed to.
    pub file_descriptor: u32,
}

/// Parses one word as a heredoc opener (`[N]<<[-]NAME`); `Ok(None)` when it is not one.
pub(crate) fn parse_heredoc_word(word: &str) -> Result<Option<Heredoc>, String> {
    let digits = word.chars().take_while(|c| c.is_ascii_digit()).count();
    let (fd, rest) = word.split_at(digits);
    let Some(rest) = rest.strip_prefix("<<") else {
        return Ok(None);
    };
    let (chomp, rest) = match rest.strip_prefix('-') {
        Some(r) => (true, r),
        None => (false, rest),
    };
    if rest.is_empty() || rest.contains('<') {
        return Ok(None);
    }
    let mut lexer = Lexer::new('\\');
    lexer.skip_unset_env = true;
    let empty: [(&str, &str); 0] = [];
    let words = lexer
        .process_words(rest, &empty)
        .map_err(|e| e.to_string())?;
    if words.len() != 1 {
        return Ok(None);
    }
    lexer.raw_quotes = true;
    let raw = lexer
        .process_words(rest, &empty)
        .map_err(|e| e.to_string())?;
    if raw.len() != 1 {
        return Err(format!(
            "internal lexing of heredoc produced inconsistent results: {rest}"
        ));
    }
    let quotes = |s: &str| s.matches(['\'', '"']).count();
    Ok(Some(Heredoc {
        name: words[0].clone(),
        content: String::new(),
        expand: quotes(&words[0]) == quotes(&raw[0]),
        chomp,
        file_descriptor: fd.parse().unwrap_or(0),
    }))
}

/// Every heredoc a logical line opens, in order.
pub(super) fn heredocs_in_line(line: &str) -> Result<Vec<Heredoc>, String> {
    let mut lexer = Lexer::new('\\');
    lexer.raw_quotes = true;
    lexer.raw_escapes = true;
    let empty: [(&str, &str); 0] = [];
    let words = lexer.process_words(line, &empty).unwrap_or_default();
    let mut out = Vec::new();
    for w in words {
        if let Some(h) = parse_heredoc_word(&w)? {
            out.push(h);
        }
    }
    Ok(out)
}

/// Strips leading tabs from every line of a `<<-` body.
pub fn chomp_heredoc(content: &str) -> String {
    content
        .split_inclusive('\n')
        .map(|l| l.trim_start_matches('\t'))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(word: &str) -> Option<Heredoc> {
        parse_heredoc_word(word).unwrap()
    }

    #[test]
    fn valid_openers() {
        let e = h("<<EOF").unwrap();
        assert_eq!(
            (e.name.as_str(), e.expand, e.chomp, e.file_descriptor),
            ("EOF", true, false, 0)
        );
        let c = h("<<-EOF").unwrap();
        assert!(c.chomp);
        assert!(!h("<<'EOF'").unwrap().expand);
        assert!(!h("<<\"EOF\"").unwrap().expand);
        let partly = h("<<eo'f'").unwrap();
        assert_eq!(partly.name, "eof");
        assert!(!partly.expand);
        assert!(
            h("<<E\\\"OF").unwrap().expand,
            "an escaped quote keeps expansion on"
        );
        assert_eq!(h("3<<EOF").unwrap().file_descriptor, 3);
        assert_eq!(h("<<EOF.txt").unwrap().name, "EOF.txt");
        assert_eq!(h("<<$EOF").unwrap().name, "$EOF");
        assert_eq!(h("<<'E O F'").unwrap().name, "E O F");
    }

    #[test]
    fn not_heredocs() {
        for w in ["<<", "<<-", "EOF", "a<<EOF", "<<<EOF", "\"<<EOF\""] {
            assert!(h(w).is_none(), "{w}");
        }
        assert!(parse_heredoc_word("<<'EOF").is_err() || h("<<'EOF").is_none());
    }

    #[test]
    fn several_per_line_and_quoted_markers_ignored() {
        let docs = heredocs_in_line("RUN cat <<A <<-\"B\" > out").unwrap();
        assert_eq!(docs.len(), 2);
        assert_eq!(docs[1].name, "B");
        assert!(!docs[1].expand && docs[1].chomp);
        assert!(heredocs_in_line("RUN echo \"<<EOF\"").unwrap().is_empty());
    }

    #[test]
    fn chomp_strips_leading_tabs_only() {
        assert_eq!(chomp_heredoc("\t\ta\n\tb \t\n c\n"), "a\nb \t\n c\n");
    }
}
