//! One logical line to keyword, flags and arguments, with BuildKit's per-instruction rules: JSON or shell form,
//! whitespace lists, quote-aware words, ENV/LABEL key-value triples, HEALTHCHECK and ONBUILD.

/// BuildKit's `[\t\v\f\r ]` separator (newlines are not separators).
pub(super) fn is_sep(c: char) -> bool {
    matches!(c, '\t' | '\u{0b}' | '\u{0c}' | '\r' | ' ')
}

/// What an instruction's text parses to.
#[derive(Debug, Default)]
pub(super) struct Parsed {
    pub args: Vec<String>,
    pub json: bool,
    pub next: Option<(String, String)>,
}

/// Why an argument list is refused.
pub(super) type ArgError = String;

/// Splits `line` into (keyword as written, flags, rest).
pub(super) fn split_command(line: &str, escape: char) -> (String, Vec<String>, String) {
    let trimmed = line.trim_matches(|c: char| c.is_whitespace());
    let (cmd, rest) = match trimmed.find(is_sep) {
        Some(i) => {
            let rest = trimmed[i..].trim_start_matches(is_sep);
            (&trimmed[..i], rest)
        }
        None => (trimmed, ""),
    };
    if rest.is_empty() {
        return (cmd.to_string(), Vec::new(), String::new());
    }
    let (rest, flags) = extract_flags(rest, escape);
    (cmd.to_string(), flags, rest.trim().to_string())
}

/// Collects the leading `--flag` words (quotes removed, escapes applied); stops at the first other word or `--`.
fn extract_flags(line: &str, escape: char) -> (String, Vec<String>) {
    #[derive(PartialEq)]
    enum Phase {
        Spaces,
        Word,
        Quote,
    }
    let chars: Vec<(usize, char)> = line.char_indices().collect();
    let mut words = Vec::new();
    let mut phase = Phase::Spaces;
    let mut word = String::new();
    let mut quote = '\0';
    let mut blank_ok = false;
    let mut pos = 0;
    while pos <= chars.len() {
        let at_end = pos == chars.len();
        let ch = if at_end { '\0' } else { chars[pos].1 };
        if phase == Phase::Spaces {
            if at_end {
                break;
            }
            if ch.is_whitespace() {
                pos += 1;
                continue;
            }
            let next_is_dash = chars.get(pos + 1).is_some_and(|(_, c)| *c == '-');
            if ch != '-' || !next_is_dash {
                return (line[chars[pos].0..].to_string(), words);
            }
            phase = Phase::Word;
        }
        if at_end {
            if word != "--" && (blank_ok || !word.is_empty()) {
                words.push(word);
            }
            break;
        }
        if phase == Phase::Word {
            if ch.is_whitespace() {
                phase = Phase::Spaces;
                if word == "--" {
                    return (line[chars[pos].0..].to_string(), words);
                }
                if blank_ok || !word.is_empty() {
                    words.push(std::mem::take(&mut word));
                }
                word.clear();
                blank_ok = false;
                pos += 1;
                continue;
            }
            if ch == '\'' || ch == '"' {
                quote = ch;
                blank_ok = true;
                phase = Phase::Quote;
                pos += 1;
                continue;
            }
            let mut c = ch;
            if ch == escape {
                if pos + 1 == chars.len() {
                    pos += 1;
                    continue;
                }
                pos += 1;
                c = chars[pos].1;
            }
            word.push(c);
            pos += 1;
            continue;
        }
        // In a quote.
        if ch == quote {
            phase = Phase::Word;
            pos += 1;
            continue;
        }
        let mut c = ch;
        if ch == escape {
            if pos + 1 == chars.len() {
                phase = Phase::Word;
                pos += 1;
                continue;
            }
            pos += 1;
            c = chars[pos].1;
        }
        word.push(c);
        pos += 1;
    }
    (String::new(), words)
}

/// BuildKit's quote-aware word splitter: whitespace outside quotes separates words; quotes and escape characters
/// stay in the words verbatim (they are removed later, by expansion).
pub fn split_words(text: &str, escape: char) -> Vec<String> {
    let chars: Vec<char> = text.chars().collect();
    let mut words = Vec::new();
    let mut word = String::new();
    let mut in_word = false;
    let mut quote: Option<char> = None;
    let mut blank_ok = false;
    let mut i = 0;
    while i < chars.len() {
        let ch = chars[i];
        match quote {
            None => {
                if ch.is_whitespace() {
                    if in_word && (blank_ok || !word.is_empty()) {
                        words.push(std::mem::take(&mut word));
                    }
                    word.clear();
                    in_word = false;
                    blank_ok = false;
                    i += 1;
                    continue;
                }
                in_word = true;
                if ch == '\'' || ch == '"' {
                    quote = Some(ch);
                    blank_ok = true;
                }
                if ch == escape {
                    if i + 1 == chars.len() {
                        i += 1;
                        continue;
                    }
                    word.push(ch);
                    i += 1;
                }
                word.push(chars[i]);
                i += 1;
            }
            Some(q) => {
                let mut c = ch;
                if ch == q {
                    quote = None;
                } else if ch == escape && q != '\'' {
                    if i + 1 == chars.len() {
                        quote = None;
                        i += 1;
                        continue;
                    }
                    word.push(ch);
                    i += 1;
                    c = chars[i];
                }
                word.push(c);
                i += 1;
            }
        }
    }
    if in_word && (blank_ok || !word.is_empty()) {
        words.push(word);
    }
    words
}

fn whitespace_list(rest: &str) -> Vec<String> {
    if rest.is_empty() {
        return Vec::new();
    }
    rest.split(is_sep)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect()
}

/// `Some(Ok(list))` for a JSON array of strings, `Some(Err)` for a JSON array with a non-string element, `None`
/// when the text is not JSON (it is then shell form). Text after the array makes it shell form too, as in
/// BuildKit (`testInvalidJSONCommands`: `ENTRYPOINT []random string` is `/bin/sh -c "[]random string"`).
fn parse_json(rest: &str) -> Option<Result<Vec<String>, ArgError>> {
    let rest = rest.trim_start();
    if !rest.starts_with('[') {
        return None;
    }
    let mut stream = serde_json::Deserializer::from_str(rest).into_iter::<serde_json::Value>();
    let value = stream.next()?.ok()?;
    if !rest[stream.byte_offset()..].trim().is_empty() {
        return None;
    }
    let items = value.as_array()?;
    let mut out = Vec::with_capacity(items.len());
    for item in items {
        match item.as_str() {
            Some(s) => out.push(s.to_string()),
            None => {
                return Some(Err(
                    "dockerfile json arguments must be an array of strings".to_string()
                ))
            }
        }
    }
    Some(Ok(out))
}

fn maybe_json(rest: &str) -> Result<Parsed, ArgError> {
    if rest.is_empty() {
        return Ok(Parsed::default());
    }
    match parse_json(rest) {
        Some(Ok(args)) => Ok(Parsed {
            args,
            json: true,
            next: None,
        }),
        Some(Err(e)) => Err(e),
        None => Ok(Parsed {
            args: vec![rest.to_string()],
            ..Parsed::default()
        }),
    }
}

fn maybe_json_list(rest: &str) -> Result<Parsed, ArgError> {
    match parse_json(rest) {
        Some(Ok(args)) => Ok(Parsed {
            args,
            json: true,
            next: None,
        }),
        Some(Err(e)) => Err(e),
        None => Ok(Parsed {
            args: whitespace_list(rest),
            ..Parsed::default()
        }),
    }
}

fn name_val(rest: &str, key: &str, escape: char) -> Result<Parsed, ArgError> {
    let words = split_words(rest, escape);
    if words.is_empty() {
        return Ok(Parsed::default());
    }
    if !words[0].contains('=') {
        let Some(i) = rest.find(is_sep) else {
            return Err(format!("{key} must have two arguments"));
        };
        let (k, v) = (&rest[..i], rest[i..].trim_start_matches(is_sep));
        return Ok(Parsed {
            args: vec![k.to_string(), v.to_string(), String::new()],
            ..Parsed::default()
        });
    }
    let mut args = Vec::new();
    for w in words {
        let Some((k, v)) = w.split_once('=') else {
            return Err(format!(
                "Syntax error - can't find = in {w:?}. Must be of the form: name=value"
            ));
        };
        args.extend([k.to_string(), v.to_string(), "=".to_string()]);
    }
    Ok(Parsed {
        args,
        ..Parsed::default()
    })
}

fn healthcheck(rest: &str) -> Result<Parsed, ArgError> {
    let sep = rest.find(char::is_whitespace).unwrap_or(rest.len());
    if sep == 0 {
        return Ok(Parsed::default());
    }
    let kind = &rest[..sep];
    let cmd = maybe_json(rest[sep..].trim_start())?;
    let mut args = vec![kind.to_string()];
    args.extend(cmd.args);
    Ok(Parsed {
        args,
        json: cmd.json,
        next: None,
    })
}

/// Parses the argument text of instruction `keyword` (lower-cased).
pub(super) fn parse_args(keyword: &str, rest: &str, escape: char) -> Result<Parsed, ArgError> {
    match keyword {
        "add" | "copy" | "volume" => maybe_json_list(rest),
        "run" | "cmd" | "entrypoint" | "shell" => maybe_json(rest),
        "arg" => Ok(Parsed {
            args: split_words(rest, escape),
            ..Parsed::default()
        }),
        "env" => name_val(rest, "ENV", escape),
        "label" => name_val(rest, "LABEL", escape),
        "from" | "expose" => Ok(Parsed {
            args: whitespace_list(rest),
            ..Parsed::default()
        }),
        "healthcheck" => healthcheck(rest),
        "maintainer" | "user" | "workdir" | "stopsignal" => Ok(Parsed {
            args: if rest.is_empty() {
                vec![]
            } else {
                vec![rest.to_string()]
            },
            ..Parsed::default()
        }),
        "onbuild" => Ok(Parsed {
            next: (!rest.is_empty()).then(|| (rest.to_string(), String::new())),
            ..Parsed::default()
        }),
        _ => Ok(Parsed {
            args: vec![String::new()],
            ..Parsed::default()
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_stop_at_first_plain_word_and_at_double_dash() {
        let (c, f, r) = split_command("COPY --from=build --chown=\"a b\" src /dst", '\\');
        assert_eq!((c.as_str(), r.as_str()), ("COPY", "src /dst"));
        assert_eq!(f, ["--from=build", "--chown=a b"]);
        let (_, f, r) = split_command("COPY -- --weird /dst", '\\');
        assert!(f.is_empty());
        assert_eq!(r, "--weird /dst");
        let (_, f, r) = split_command("CMD --doit [ \"a\", \"b\" ]", '\\');
        assert_eq!(f, ["--doit"]);
        assert_eq!(r, "[ \"a\", \"b\" ]");
    }

    #[test]
    fn words_keep_quotes_and_escapes() {
        assert_eq!(
            split_words("abc=\"123 456\" def", '\\'),
            ["abc=\"123 456\"", "def"]
        );
        assert_eq!(split_words("a\\ b c", '\\'), ["a\\ b", "c"]);
        assert_eq!(split_words("'x\\' y", '\\'), ["'x\\'", "y"]);
        assert_eq!(split_words("", '\\'), Vec::<String>::new());
        assert_eq!(split_words("\"\"", '\\'), ["\"\""]);
    }

    #[test]
    fn json_forms() {
        assert_eq!(maybe_json("[\"a\", \"b\"]").unwrap().args, ["a", "b"]);
        assert!(maybe_json("[\"a\", \"b\"]").unwrap().json);
        assert!(maybe_json("[]").unwrap().args.is_empty());
        assert_eq!(maybe_json("['a']").unwrap().args, ["['a']"]);
        assert_eq!(maybe_json("[\"a\"").unwrap().args, ["[\"a\""]);
        // Anything after the array makes the whole text shell form (BuildKit's testInvalidJSONCommands).
        let trailing = maybe_json("[\"echo\", \"hello\"]this is invalid").unwrap();
        assert_eq!(
            (trailing.args, trailing.json),
            (
                vec!["[\"echo\", \"hello\"]this is invalid".to_string()],
                false
            )
        );
        assert_eq!(
            maybe_json("[]random string").unwrap().args,
            ["[]random string"]
        );
        assert!(
            maybe_json("[\"a\"]  ").unwrap().json,
            "trailing blanks are not text"
        );
        for bad in ["[1]", "[{}]", "[[\"a\"]]", "[true]", "[null]"] {
            assert!(maybe_json(bad).is_err(), "{bad}");
        }
        assert_eq!(maybe_json_list("a  b\tc").unwrap().args, ["a", "b", "c"]);
    }

    #[test]
    fn env_forms() {
        assert_eq!(
            name_val("GOPATH /go", "ENV", '\\').unwrap().args,
            ["GOPATH", "/go", ""]
        );
        assert_eq!(
            name_val("a=1 b=\"2 3\"", "ENV", '\\').unwrap().args,
            ["a", "1", "=", "b", "\"2 3\"", "="]
        );
        assert!(name_val("PATH", "ENV", '\\').is_err());
        assert!(name_val("a=1 b", "ENV", '\\').is_err());
    }
}
