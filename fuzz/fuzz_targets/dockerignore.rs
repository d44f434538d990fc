//! .dockerignore patterns and paths from arbitrary text: compiling and matching may reject a pattern, never panic
//! or hang (patterns are globs with `**`, `!` and character classes).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let (patterns, paths) = text.split_once('\0').unwrap_or((text, "a/b/c"));
    let lines: Vec<&str> = patterns.lines().collect();
    if let Ok(m) = llb::patterns::PatternMatcher::new(&lines) {
        for p in paths.split('\n') {
            let _ = m.matches_or_parent_matches(p);
        }
    }
});
