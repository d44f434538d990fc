//! Parser directives (`# syntax=`, `# escape=`, `# check=`): recognised only in the leading block of comment
//! lines, which the first line that is not a directive ends.

use super::ParseError;

/// The directives a Dockerfile set, with defaults.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Directives {
    /// `# syntax=` (the frontend image a BuildKit user asked for; kiln records it).
    pub syntax: Option<String>,
    /// The escape character: `\` (default) or a backtick.
    pub escape: char,
    /// `# check=` (build-check configuration).
    pub check: Option<String>,
}

impl Default for Directives {
    fn default() -> Self {
        Directives {
            syntax: None,
            escape: '\\',
            check: None,
        }
    }
}

impl Directives {
    /// The `# syntax=` frontend when it is not one kiln's built-in frontend stands for: BuildKit would run that
    /// image as the frontend, kiln cannot, so a build says it uses its own instead. `docker/dockerfile` (and
    /// `-upstream`) at `1`, `1.N`, `1.N.M`, with or without `-labs`, a `docker.io/` prefix or a digest, and no tag
    /// at all, are what kiln covers.
    pub fn foreign_syntax(&self) -> Option<&str> {
        let syntax = self.syntax.as_deref()?.trim();
        if syntax.is_empty() || is_covered_syntax(syntax) {
            return None;
        }
        Some(syntax)
    }
}

fn is_covered_syntax(syntax: &str) -> bool {
    let name = syntax.split_once('@').map_or(syntax, |(n, _)| n);
    let name = name
        .strip_prefix("docker.io/")
        .or_else(|| name.strip_prefix("index.docker.io/"))
        .unwrap_or(name);
    let (repo, tag) = match name.rsplit_once(':') {
        Some((r, t)) => (r, Some(t)),
        None => (name, None),
    };
    if repo != "docker/dockerfile" && repo != "docker/dockerfile-upstream" {
        return false;
    }
    let Some(tag) = tag else {
        return true;
    };
    let version = tag.strip_suffix("-labs").unwrap_or(tag);
    let parts: Vec<&str> = version.split('.').collect();
    parts.first() == Some(&"1")
        && parts.len() <= 3
        && parts
            .iter()
            .all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()))
}

/// Reads directives line by line until the block ends.
#[derive(Debug, Default)]
pub(super) struct DirectiveReader {
    line: usize,
    done: bool,
    seen: Vec<String>,
}

/// Matches `#[ \t]*name[ \t]*=[ \t]*value[ \t]*` and returns (lower-cased name, value).
pub(crate) fn match_directive(line: &str) -> Option<(String, String)> {
    let rest = line.strip_prefix('#')?.trim_start_matches([' ', '\t']);
    let name_len = rest
        .char_indices()
        .find(|(i, c)| !(c.is_ascii_alphabetic() || (*i > 0 && c.is_ascii_digit())))
        .map_or(rest.len(), |(i, _)| i);
    if name_len == 0 {
        return None;
    }
    let (name, after) = rest.split_at(name_len);
    let after = after.trim_start_matches([' ', '\t']).strip_prefix('=')?;
    let value = after.trim_matches([' ', '\t']);
    if value.is_empty() {
        return None;
    }
    Some((name.to_ascii_lowercase(), value.to_string()))
}

/// The 1-based numbers of the lines that hold parser directives (lines of the leading block, as
/// [`DirectiveReader`] reads it): BuildKit leaves them out of the comments it keeps above an instruction.
pub(crate) fn directive_lines(lines: &[String]) -> Vec<usize> {
    let mut out = Vec::new();
    for (i, line) in lines.iter().enumerate() {
        let line = line.trim_start();
        if i == 0 && line.starts_with("#!") {
            continue;
        }
        match match_directive(line) {
            Some((name, _)) if matches!(name.as_str(), "syntax" | "escape" | "check") => {
                out.push(i + 1)
            }
            _ => break,
        }
    }
    out
}

impl DirectiveReader {
    /// Feeds one physical line (newline and leading whitespace already removed) and applies a directive it holds.
    pub fn feed(
        &mut self,
        line: &str,
        directives: &mut Directives,
        line_no: usize,
    ) -> Result<(), ParseError> {
        self.line += 1;
        if self.done {
            return Ok(());
        }
        if self.line == 1 && line.starts_with("#!") {
            return Ok(());
        }
        let Some((name, value)) = match_directive(line) else {
            self.done = true;
            return Ok(());
        };
        if !matches!(name.as_str(), "syntax" | "escape" | "check") {
            self.done = true;
            return Ok(());
        }
        if self.seen.contains(&name) {
            return Err(ParseError::at_line(
                line_no,
                format!("only one {name} parser directive can be used"),
            ));
        }
        self.seen.push(name.clone());
        match name.as_str() {
            "escape" => {
                directives.escape = match value.as_str() {
                    "\\" => '\\',
                    "`" => '`',
                    other => {
                        return Err(ParseError::at_line(
                            line_no,
                            format!("invalid escape token '{other}' does not match ` or \\"),
                        ))
                    }
                }
            }
            "syntax" => directives.syntax = Some(value),
            _ => directives.check = Some(value),
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(lines: &[&str]) -> Result<Directives, ParseError> {
        let mut d = Directives::default();
        let mut r = DirectiveReader::default();
        for (i, l) in lines.iter().enumerate() {
            r.feed(l, &mut d, i + 1)?;
        }
        Ok(d)
    }

    #[test]
    fn directives_only_in_the_leading_block() {
        let d = read(&[
            "# syntax=docker/dockerfile:1",
            "# ESCAPE = `",
            "# check=skip=all",
        ])
        .unwrap();
        assert_eq!(d.escape, '`');
        assert_eq!(d.syntax.as_deref(), Some("docker/dockerfile:1"));
        assert_eq!(d.foreign_syntax(), None);
        assert_eq!(d.check.as_deref(), Some("skip=all"));
        let late = read(&["# a comment", "# escape=`"]).unwrap();
        assert_eq!(late.escape, '\\');
        let shebang = read(&["#!/usr/bin/env kiln", "# escape=`"]).unwrap();
        assert_eq!(shebang.escape, '`');
        let blank = read(&["", "# escape=`"]).unwrap();
        assert_eq!(blank.escape, '\\');
        let unknown = read(&["# foo=bar", "# escape=`"]).unwrap();
        assert_eq!(unknown.escape, '\\');
    }

    #[test]
    fn errors() {
        assert!(read(&["# escape=x"]).is_err());
        assert!(read(&["# escape=`", "# escape=\\"]).is_err());
    }

    #[test]
    fn syntax_kiln_covers_is_told_from_a_foreign_frontend() {
        let d = |s: &str| Directives {
            syntax: Some(s.to_string()),
            ..Directives::default()
        };
        for covered in [
            "docker/dockerfile:1",
            "docker/dockerfile:1.7",
            "docker/dockerfile:1.7.1-labs",
            "docker.io/docker/dockerfile:1@sha256:ac85f380a63b13dfcefa89046420e1781752bab202122f8f50032edf31be0021",
            "docker/dockerfile",
            "docker/dockerfile-upstream:1-labs",
        ] {
            assert_eq!(d(covered).foreign_syntax(), None, "{covered}");
        }
        for foreign in [
            "example.com/custom/frontend:v9",
            "docker/dockerfile:2",
            "tonistiigi/dockerfile:master",
        ] {
            assert_eq!(d(foreign).foreign_syntax(), Some(foreign), "{foreign}");
        }
    }
}
