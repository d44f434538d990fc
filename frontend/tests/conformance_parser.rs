//! BuildKit's parser fixtures: every `testfiles/*` case must dump to its `result` byte for byte, every
//! `testfiles-negative/*` case must fail, and `testfile-line` must give BuildKit's line ranges.

mod common;

use std::fs;

use common::{conformance_dir, known_failures_path, KnownFailures, Tally};

fn first_difference(got: &str, want: &str) -> String {
    for (i, (g, w)) in got.lines().zip(want.lines()).enumerate() {
        if g != w {
            return format!("line {}:\n  got:  {g}\n  want: {w}", i + 1);
        }
    }
    format!(
        "line counts differ: got {}, want {}",
        got.lines().count(),
        want.lines().count()
    )
}

#[test]
fn parser_fixtures() {
    let Some(data) = conformance_dir("conformance_parser::parser_fixtures") else {
        return;
    };
    let root = data.join("buildkit/frontend/dockerfile/parser");
    let known = KnownFailures::load(&known_failures_path());
    let mut tally = Tally::default();

    let mut cases: Vec<_> = fs::read_dir(root.join("testfiles"))
        .expect("testfiles directory")
        .map(|e| e.expect("dir entry").path())
        .collect();
    cases.sort();
    assert_eq!(cases.len(), 33, "BuildKit's fixture set has 33 parse cases");
    for dir in &cases {
        let id = format!(
            "parser/{}",
            dir.file_name().and_then(|n| n.to_str()).unwrap_or("?")
        );
        let text = fs::read_to_string(dir.join("Dockerfile")).expect("fixture Dockerfile");
        let want = fs::read_to_string(dir.join("result")).expect("fixture result");
        let outcome = match frontend::parser::parse(&text) {
            Ok(df) => {
                let got = frontend::parser::dump(&df) + "\n";
                if got == want {
                    Ok(())
                } else {
                    Err(first_difference(&got, &want))
                }
            }
            Err(e) => Err(format!("parse failed: {e}")),
        };
        tally.record(&known, &id, outcome);
    }

    let mut negatives: Vec<_> = fs::read_dir(root.join("testfiles-negative"))
        .expect("testfiles-negative directory")
        .map(|e| e.expect("dir entry").path())
        .collect();
    negatives.sort();
    assert_eq!(negatives.len(), 4);
    for dir in &negatives {
        let id = format!(
            "parser-negative/{}",
            dir.file_name().and_then(|n| n.to_str()).unwrap_or("?")
        );
        let text = fs::read_to_string(dir.join("Dockerfile")).expect("negative fixture");
        let outcome = match frontend::parser::parse(&text) {
            Ok(df) => Err(format!(
                "parsed without error: {}",
                frontend::parser::dump(&df)
            )),
            Err(_) => Ok(()),
        };
        tally.record(&known, &id, outcome);
    }

    let text = fs::read_to_string(root.join("testfile-line/Dockerfile")).expect("line fixture");
    let outcome = match frontend::parser::parse(&text) {
        Ok(df) => {
            let got: Vec<(usize, usize)> = std::iter::once((df.span.start_line, df.span.end_line))
                .chain(
                    df.children
                        .iter()
                        .map(|c| (c.span.start_line, c.span.end_line)),
                )
                .collect();
            let want = vec![(5, 31), (5, 5), (11, 12), (17, 31)];
            if got == want {
                Ok(())
            } else {
                Err(format!("ranges {got:?}, want {want:?}"))
            }
        }
        Err(e) => Err(format!("parse failed: {e}")),
    };
    tally.record(&known, "parser/testfile-line", outcome);

    println!("parser conformance: {}/{} passed", tally.passed, tally.run);
    assert!(
        tally.problems.is_empty(),
        "parser conformance problems:\n{}",
        tally.problems.join("\n")
    );
    assert_eq!(tally.passed, tally.run);
}
