//! Runs BuildKit's shell-lexer conformance files (`envVarTest`, `wordsTest`) against
//! `frontend::shell`, as described in sections 2, 3 and 6 of the conformance README.

mod common;

use common::{conformance_dir, known_failures_path, KnownFailures, Tally};
use frontend::shell::Lexer;

/// The fixed environment every envVarTest line is expanded against.
const ENV_VAR_TEST_ENV: [(&str, &str); 4] = [
    ("PWD", "/home"),
    ("SHELL", "bash"),
    ("KOREAN", "한국어"),
    ("NULL", ""),
];

#[test]
fn shell_conformance() {
    let Some(data) = conformance_dir("conformance_shell::shell_conformance") else {
        return;
    };
    let dir = data.join("buildkit/frontend/dockerfile/shell");
    let known = KnownFailures::load(&known_failures_path());
    let mut tally = Tally::default();
    let mut listed_ok: Vec<String> = Vec::new();

    // envVarTest: single-word mode, fixed environment.
    let text = read(&dir.join("envVarTest"));
    let lexer = Lexer::new('\\');
    let mut windows_only = Vec::new();
    for (idx, raw) in text.lines().enumerate() {
        let id = format!("envVarTest:{}", idx + 1);
        if raw.starts_with('#') || raw.trim().is_empty() {
            continue;
        }
        let fields: Vec<&str> = raw.split('|').map(str::trim).collect();
        assert_eq!(
            fields.len(),
            3,
            "{id}: expected exactly 3 fields in {raw:?}"
        );
        let (tag, input, expected) = (fields[0], fields[1], fields[2]);
        match tag {
            "W" => {
                windows_only.push(id);
                continue;
            }
            "A" | "U" => {}
            other => panic!("{id}: invalid tag {other:?}, must be A, U or W"),
        }
        let outcome = match (lexer.process_word(input, &ENV_VAR_TEST_ENV), expected) {
            (Err(_), "error") => Ok(()),
            (Ok(got), "error") => Err(format!("{input:?}: expected an error, got {got:?}")),
            (Ok(got), want) if got == want => Ok(()),
            (Ok(got), want) => Err(format!("{input:?}: expected {want:?}, got {got:?}")),
            (Err(e), want) => Err(format!("{input:?}: expected {want:?}, got error: {e}")),
        };
        if known.contains(&id) {
            listed_ok.push(id.clone());
        }
        tally.record(&known, &id, outcome);
    }
    for id in &windows_only {
        if !known.contains(id) {
            tally.problems.push(format!(
                "{id}: Windows-only case must be listed in the known-failures file"
            ));
        }
    }

    // wordsTest: split mode, environment built up from the ENV lines above each case.
    let text = read(&dir.join("wordsTest"));
    let mut env: Vec<(String, String)> = Vec::new();
    for (idx, raw) in text.lines().enumerate() {
        let id = format!("wordsTest:{}", idx + 1);
        let line = raw.strip_suffix('\r').unwrap_or(raw);
        if line.starts_with('#') {
            continue;
        }
        if let Some(rest) = line.strip_prefix("ENV ") {
            let rest = rest.trim_start_matches(' ');
            let (k, v) = rest.split_once('=').unwrap_or((rest, ""));
            env.push((k.to_string(), v.to_string()));
            continue;
        }
        let fields: Vec<&str> = line.split('|').collect();
        assert_eq!(fields.len(), 2, "{id}: expected exactly one | in {line:?}");
        let input = fields[0].trim();
        let expected: Vec<&str> = fields[1].trim_start_matches(' ').split(',').collect();
        let outcome = match lexer.process_words(input, &env) {
            Err(_) if expected == ["error"] => Ok(()),
            Err(e) => Err(format!("{input:?}: expected {expected:?}, got error: {e}")),
            Ok(got) if got == expected => Ok(()),
            Ok(got) => Err(format!("{input:?}: expected {expected:?}, got {got:?}")),
        };
        if known.contains(&id) {
            listed_ok.push(id.clone());
        }
        tally.record(&known, &id, outcome);
    }

    // Only Windows-only cases may be listed, and every listed shell id must exist.
    for id in known
        .ids_with_prefix("envVarTest:")
        .chain(known.ids_with_prefix("wordsTest:"))
    {
        if listed_ok.iter().any(|l| l == id) {
            tally
                .problems
                .push(format!("{id}: only Windows-only (W) cases may be listed"));
        } else if !windows_only.iter().any(|w| w == id) {
            tally
                .problems
                .push(format!("{id}: listed, but there is no such case"));
        }
    }

    println!(
        "shell conformance: {}/{} passed ({} Windows-only cases skipped)",
        tally.passed,
        tally.run,
        windows_only.len()
    );
    assert!(
        tally.problems.is_empty(),
        "shell conformance problems:\n  {}",
        tally.problems.join("\n  ")
    );
    assert_eq!(tally.passed, tally.run);
}

fn read(path: &std::path::Path) -> String {
    std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("cannot read conformance file {}: {e}", path.display()))
}
