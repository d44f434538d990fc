//! What each step leaves in the image: history entries worded as BuildKit words them, and the shell that
//! shell-form commands run through.

use oci::History;

use super::stage::StageState;

/// The history comment BuildKit gives Dockerfile steps.
pub(super) const HISTORY_COMMENT: &str = "buildkit.dockerfile.v0";

pub(super) fn history(st: &mut StageState, created_by: String, empty_layer: bool) {
    st.image.history.push(History {
        created: None,
        created_by,
        comment: HISTORY_COMMENT.to_string(),
        empty_layer,
    });
}

/// Go's `%q` of a string slice: `["a" "b"]`, as BuildKit writes CMD and ENTRYPOINT history.
pub(super) fn go_quoted_list(items: &[String]) -> String {
    let quoted: Vec<String> = items.iter().map(|s| crate::parser::quote_go(s)).collect();
    format!("[{}]", quoted.join(" "))
}

/// The stage's shell for shell-form commands.
pub(super) fn shell_of(st: &StageState) -> Vec<String> {
    if st.image.config.shell.is_empty() {
        vec!["/bin/sh".to_string(), "-c".to_string()]
    } else {
        st.image.config.shell.clone()
    }
}
