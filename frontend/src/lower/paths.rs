//! Path rules of Dockerfile instructions: WORKDIR-relative destinations, trailing slashes, clean joins.

/// `path.Clean` of Go for slash paths (shared with the pattern matcher, which needs the same cleaning).
pub use llb::patterns::clean_path as clean;

/// Resolves `p` against the working directory `cwd` as BuildKit does for WORKDIR, COPY destinations and mount
/// targets; a trailing `/` (meaning "a directory") is kept when `keep_slash`.
pub fn resolve(cwd: &str, p: &str, keep_slash: bool) -> String {
    let joined = if p.starts_with('/') {
        clean(p)
    } else {
        clean(&format!("/{cwd}/{p}"))
    };
    // An empty destination is the working directory itself, as `.` is (BuildKit's testEmptyDestDir and, with
    // `--link`, testCopyLinkEmptyDestDir).
    if keep_slash
        && (p.ends_with('/') || p.ends_with("/.") || p == "." || p.is_empty())
        && joined != "/"
    {
        format!("{joined}/")
    } else {
        joined
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clean_like_go() {
        assert_eq!(clean("/a/./b/../c//"), "/a/c");
        assert_eq!(clean("/../x"), "/x");
        assert_eq!(clean("a/../.."), "..");
        assert_eq!(clean(""), ".");
    }

    #[test]
    fn resolve_relative_to_workdir() {
        assert_eq!(resolve("/app", "bin", false), "/app/bin");
        assert_eq!(resolve("/app", "bin/", true), "/app/bin/");
        assert_eq!(resolve("/app", ".", true), "/app/");
        assert_eq!(resolve("", "x", false), "/x");
        assert_eq!(resolve("/app", "/abs/", true), "/abs/");
        assert_eq!(resolve("/", "/", true), "/");
        assert_eq!(
            resolve("/foo", "", true),
            "/foo/",
            "an empty destination is the workdir"
        );
    }
}
