//! `ADD <git url>`: the git source. The ref (branch, tag or commit; the remote's HEAD when none is named) is
//! resolved with `git ls-remote` when the step's cache key is computed — the commit is the key, as BuildKit keys a
//! git source — and `ADD --checksum` must name that commit. The step then fetches that one commit (depth 1) into
//! scratch space and copies its tree, or the fragment's sub-directory, into a snapshot; `.git` only with
//! `--keep-git-dir`. The `git` program does the talking, so its credential helpers and proxies apply.

use std::path::Path;
use std::process::{Command, Stdio};

use crate::llb::GitSource;

/// Runs git with no prompt (a build must never wait for a password) and returns its stdout.
fn git(args: &[&str], cwd: Option<&Path>) -> Result<String, String> {
    let mut c = Command::new("git");
    c.args(args)
        .env("GIT_TERMINAL_PROMPT", "0")
        .stdin(Stdio::null());
    if let Some(d) = cwd {
        c.current_dir(d);
    }
    let out = c
        .output()
        .map_err(|e| format!("running git (is it installed?): {e}"))?;
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr);
        let last = err.lines().rfind(|l| !l.trim().is_empty()).unwrap_or("");
        return Err(format!(
            "git {}: {}",
            args.first().unwrap_or(&""),
            last.trim()
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

fn is_commit(r: &str) -> bool {
    r.len() == 40 && r.bytes().all(|b| b.is_ascii_hexdigit())
}

/// The commit `src`'s ref names now (the checksum is [`check`]'s business: several sources share one ref).
pub fn resolve(src: &GitSource) -> Result<String, String> {
    let wanted = src.reference.as_deref().unwrap_or("HEAD");
    let commit = if is_commit(wanted) {
        wanted.to_lowercase()
    } else {
        let listed = git(&["ls-remote", &src.remote, wanted], None)
            .map_err(|e| format!("{}: {e}", src.remote))?;
        // A tag's peeled line (`refs/tags/v1^{}`) names the commit; prefer it over the tag object.
        let lines: Vec<(&str, &str)> = listed.lines().filter_map(|l| l.split_once('\t')).collect();
        let pick = lines
            .iter()
            .find(|(_, name)| name.ends_with("^{}"))
            .or_else(|| lines.first())
            .map(|(sha, _)| sha.to_string());
        pick.ok_or_else(|| format!("{}: no ref {wanted:?} on the remote", src.remote))?
    };
    Ok(commit)
}

/// `ADD --checksum` on a git source names the commit (or its prefix) the ref must resolve to.
pub fn check(src: &GitSource, commit: &str) -> Result<(), String> {
    match &src.checksum {
        Some(want) if !commit.starts_with(&want.to_lowercase()) => Err(format!(
            "{}: checksum mismatch: --checksum={want}, {} is commit {commit}",
            src.remote,
            src.reference.as_deref().unwrap_or("HEAD")
        )),
        _ => Ok(()),
    }
}

/// Fetches `commit` of `src` into `scratch` and copies its tree (or sub-directory) into `diff`.
pub fn checkout(src: &GitSource, commit: &str, scratch: &Path, diff: &Path) -> Result<(), String> {
    let fail = |e: String| format!("{}: {e}", src.remote);
    let repo = scratch.join("repo");
    std::fs::create_dir_all(&repo).map_err(|e| fail(e.to_string()))?;
    git(&["init", "-q"], Some(&repo)).map_err(fail)?;
    let wanted = src.reference.as_deref().unwrap_or("HEAD");
    // By name first (every server allows it), by commit when a commit was named.
    let fetched = git(
        &["fetch", "-q", "--depth", "1", &src.remote, wanted],
        Some(&repo),
    );
    if fetched.is_err() || is_commit(wanted) {
        git(
            &["fetch", "-q", "--depth", "1", &src.remote, commit],
            Some(&repo),
        )
        .map_err(fail)?;
    }
    git(
        &["-c", "advice.detachedHead=false", "checkout", "-q", commit],
        Some(&repo),
    )
    .map_err(fail)?;
    let from = match &src.subdir {
        Some(s) => oci::scoped::resolve(&repo, s, true).map_err(|e| fail(e.to_string()))?,
        None => repo.clone(),
    };
    if !from.is_dir() {
        return Err(fail(format!("no directory {:?} at {commit}", src.subdir)));
    }
    let keep = src.keep_git_dir && src.subdir.is_none();
    for e in std::fs::read_dir(&from).map_err(|e| fail(e.to_string()))? {
        let e = e.map_err(|e| fail(e.to_string()))?;
        if e.file_name() == ".git" && !keep {
            continue;
        }
        let status = Command::new("cp")
            .arg("-a")
            .arg(e.path())
            .arg(diff)
            .status()
            .map_err(|e| fail(e.to_string()))?;
        if !status.success() {
            return Err(fail(format!("copying {} failed", e.path().display())));
        }
    }
    Ok(())
}
