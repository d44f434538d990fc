//! Parse + expand + lower + check over arbitrary bytes: none of it may panic, hang or overflow the stack.
#![no_main]

use frontend::shell::Lexer;
use frontend::{BuildOpts, NoResolver};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(df) = frontend::parse_bytes(data) {
        let _ = frontend::parser::dump(&df);
        let opts = BuildOpts::default();
        if let Ok(lowered) = frontend::lower(&df, &opts, &NoResolver) {
            let roots: Vec<_> = lowered.target.root.into_iter().collect();
            let _ = lowered.definition.to_json(&roots);
            let _ = lowered.definition.to_dot(&roots);
        }
        let _ = frontend::checks::run_checks(&df, &opts);
    }
    if let Ok(text) = std::str::from_utf8(data) {
        let env = frontend::lower::Scope::default();
        let lexer = Lexer::new('\\');
        let _ = lexer.process_word(text, &env);
        let _ = lexer.process_words(text, &env);
        let _ = llb::patterns::PatternMatcher::new(&text.lines().collect::<Vec<_>>())
            .map(|m| m.matches_or_parent_matches(text));
    }
});
