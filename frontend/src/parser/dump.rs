//! BuildKit's AST dump, the format of its parser fixtures: `(keyword ["flags"] "arg" ...)`, one line per
//! instruction.

use super::{Dockerfile, Node};

/// Go's `strconv.Quote`.
pub fn quote_go(s: &str) -> String {
    crate::shell::go_quote(s)
}

/// One instruction as BuildKit's `Node.Dump` prints it.
pub fn dump_node(n: &Node) -> String {
    let mut out = n.keyword.clone();
    if !n.flags.is_empty() {
        let flags: Vec<String> = n.flags.iter().map(|f| quote_go(f)).collect();
        out.push_str(&format!(" [{}]", flags.join(" ")));
    }
    if let Some(next) = &n.next {
        out.push_str(&format!(" ({})", dump_node(next)));
    }
    for a in &n.args {
        out.push(' ');
        out.push_str(&quote_go(a));
    }
    out
}

/// The whole file, one `(…)` line per instruction, without a final newline.
pub fn dump(df: &Dockerfile) -> String {
    df.children
        .iter()
        .map(|n| format!("({})", dump_node(n)))
        .collect::<Vec<_>>()
        .join("\n")
}
