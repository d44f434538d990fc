//! Helpers shared by the conformance tests: finding BuildKit's conformance data and reading
//! the known-failures list.
//!
//! The known-failures file (`tests/conformance-known-failures.txt`) holds one case per line,
//! `id<TAB>reason`; blank lines and lines starting with `#` are comments. Ids look like
//! `envVarTest:<line>`, `wordsTest:<line>` (1-based line numbers) or `parser/<dir>`.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// The directories the conformance data is looked for in, first found wins: `$KILN_SHARED_DIR/conformance` when
/// that variable is set (then alone: asking for a place that lacks it is an error), else `shared/conformance`
/// beside the checkout (what CI provides), else `conformance-data/conformance` inside it (what
/// `scripts/conformance-data.sh` fetches on a fresh clone).
pub fn conformance_dir_candidates() -> Vec<PathBuf> {
    if let Some(shared) = std::env::var_os("KILN_SHARED_DIR") {
        return vec![PathBuf::from(shared).join("conformance")];
    }
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    vec![
        workspace.join("../shared/conformance"),
        workspace.join("conformance-data/conformance"),
    ]
}

/// The first candidate (see [`conformance_dir_candidates`]).
pub fn conformance_dir_candidate() -> PathBuf {
    conformance_dir_candidates().remove(0)
}

/// The conformance directory; `None` when it is absent and no one asked for a particular place, after saying
/// so: `SKIPPED <test>: <reason>` on stderr and in `target/conformance-skipped.txt`, which `scripts/test.sh` lists
/// after the run, so a test without its data never passes silently. With `KILN_SHARED_DIR` set and no data there,
/// it panics (failing the test).
pub fn conformance_dir(test: &str) -> Option<PathBuf> {
    let candidates = conformance_dir_candidates();
    if let Some(found) = candidates.iter().find(|d| d.join("README.md").is_file()) {
        return Some(found.clone());
    }
    let looked: Vec<String> = candidates.iter().map(|d| d.display().to_string()).collect();
    if std::env::var_os("KILN_SHARED_DIR").is_some() {
        panic!(
            "conformance data not found at {} (expected its README.md there); \
             set KILN_SHARED_DIR to the directory that contains `conformance/`",
            looked.join(", ")
        );
    }
    let line = format!(
        "SKIPPED {test}: BuildKit's conformance data is not here (looked in {}); run scripts/conformance-data.sh \
         with network access, or set KILN_SHARED_DIR",
        looked.join(" and ")
    );
    eprintln!("{line}");
    let record = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/conformance-skipped.txt");
    if let Some(parent) = record.parent() {
        let _ = std::fs::create_dir_all(parent);
    }
    if let Ok(mut f) = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&record)
    {
        use std::io::Write as _;
        let _ = writeln!(f, "{line}");
    }
    None
}

/// The known-failures file of the frontend crate.
pub fn known_failures_path() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/conformance-known-failures.txt")
}

/// Parsed known-failures list: case id to the reason it is expected to fail.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct KnownFailures {
    /// Every listed id with its reason.
    pub entries: BTreeMap<String, String>,
}

impl KnownFailures {
    /// Parse the text of a known-failures file; errors name the offending line.
    pub fn parse(text: &str) -> Result<Self, String> {
        let mut entries = BTreeMap::new();
        for (idx, raw) in text.lines().enumerate() {
            let line = raw.trim_end_matches('\r');
            if line.trim().is_empty() || line.trim_start().starts_with('#') {
                continue;
            }
            let Some((id, reason)) = line.split_once('\t') else {
                return Err(format!(
                    "line {}: expected `id<TAB>reason`, got {line:?}",
                    idx + 1
                ));
            };
            let (id, reason) = (id.trim(), reason.trim());
            if id.is_empty() || reason.is_empty() {
                return Err(format!("line {}: empty id or reason in {line:?}", idx + 1));
            }
            if entries.insert(id.to_string(), reason.to_string()).is_some() {
                return Err(format!("line {}: duplicate id {id}", idx + 1));
            }
        }
        Ok(KnownFailures { entries })
    }

    /// Load and parse a known-failures file; panics with the reason if it is unreadable.
    pub fn load(path: &Path) -> Self {
        let text = std::fs::read_to_string(path)
            .unwrap_or_else(|e| panic!("cannot read known-failures file {}: {e}", path.display()));
        Self::parse(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
    }

    /// Whether `id` is listed.
    pub fn contains(&self, id: &str) -> bool {
        self.entries.contains_key(id)
    }

    /// The listed ids that start with `prefix` (e.g. `envVarTest:`).
    pub fn ids_with_prefix<'a>(&'a self, prefix: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.entries
            .keys()
            .filter(move |k| k.starts_with(prefix))
            .map(String::as_str)
    }
}

/// Outcome bookkeeping for one conformance run.
#[derive(Debug, Default)]
pub struct Tally {
    /// Cases that were run.
    pub run: usize,
    /// Cases that behaved as expected.
    pub passed: usize,
    /// Problems that make the test fail.
    pub problems: Vec<String>,
}

impl Tally {
    /// Record a case's outcome against the known-failures list: an unlisted failure and a
    /// listed case that passes are both problems.
    pub fn record(&mut self, known: &KnownFailures, id: &str, outcome: Result<(), String>) {
        self.run += 1;
        match (outcome, known.contains(id)) {
            (Ok(()), false) => self.passed += 1,
            (Ok(()), true) => {
                self.passed += 1;
                self.problems
                    .push(format!("{id}: listed as a known failure but passes"));
            }
            (Err(why), false) => self.problems.push(format!("{id}: {why}")),
            (Err(_), true) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_known_failures() {
        let k =
            KnownFailures::parse("# c\n\nenvVarTest:25\tWindows only\nparser/x\twhy\n").unwrap();
        assert!(k.contains("envVarTest:25"));
        assert_eq!(k.ids_with_prefix("parser/").count(), 1);
        assert!(KnownFailures::parse("no-tab-here\n").is_err());
        assert!(KnownFailures::parse("a\tx\na\ty\n").is_err());
    }
}
