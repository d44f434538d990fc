//! `ADD <git url>`: the git source. The ref (branch, tag or commit; the remote's HEAD when none is named) is
//! resolved with `git ls-remote` when the step's cache key is computed — the commit is the key, as BuildKit keys a
//! git source — and `ADD --checksum` must name that commit. The step then fetches that one commit (depth 1) into
//! scratch space and copies its tree, or the fragment's sub-directory, into a snapshot; `.git` only with
//! `--keep-git-dir`. The `git` program does the talking, so its credential helpers and proxies apply.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::llb::GitSource;

/// Why a git source could not be resolved, checked or checked out; every message starts with the remote, so
/// the user sees which `ADD` failed.
#[derive(Debug, thiserror::Error)]
pub enum GitError {
    /// The `git` program could not be started.
    #[error("{remote}: running git (is it installed?): {source}")]
    Spawn {
        /// The remote the source names.
        remote: String,
        /// The cause.
        source: std::io::Error,
    },
    /// git ran and failed; `message` is the last line it printed on stderr.
    #[error("{remote}: git {command}: {message}")]
    Failed {
        /// The remote the source names.
        remote: String,
        /// The git subcommand (`ls-remote`, `fetch`, ...).
        command: String,
        /// git's last line of complaint.
        message: String,
    },
    /// The remote has no ref of that name.
    #[error("{remote}: no ref {wanted:?} on the remote")]
    NoRef {
        /// The remote the source names.
        remote: String,
        /// The ref asked for.
        wanted: String,
    },
    /// `ADD --checksum` named another commit than the ref resolves to.
    #[error("{remote}: checksum mismatch: --checksum={want}, {reference} is commit {commit}")]
    Checksum {
        /// The remote the source names.
        remote: String,
        /// The checksum given.
        want: String,
        /// The ref resolved (`HEAD` when none was named).
        reference: String,
        /// The commit it resolved to.
        commit: String,
    },
    /// Reading or writing the scratch checkout failed.
    #[error("{remote}: {source}")]
    Io {
        /// The remote the source names.
        remote: String,
        /// The cause.
        source: std::io::Error,
    },
    /// The fragment's sub-directory could not be resolved inside the checkout.
    #[error("{remote}: {source}")]
    Subdir {
        /// The remote the source names.
        remote: String,
        /// The cause.
        source: oci::scoped::ScopedError,
    },
    /// The fragment's sub-directory does not exist at that commit.
    #[error("{remote}: no directory {subdir:?} at {commit}")]
    NoSubdir {
        /// The remote the source names.
        remote: String,
        /// The sub-directory asked for.
        subdir: Option<String>,
        /// The commit checked out.
        commit: String,
    },
    /// Copying a checked-out entry into the snapshot failed.
    #[error("{remote}: copying {} failed", path.display())]
    Copy {
        /// The remote the source names.
        remote: String,
        /// The entry that was not copied.
        path: PathBuf,
    },
}

/// Runs git with no prompt (a build must never wait for a password) and returns its stdout; errors name `remote`.
fn git(remote: &str, args: &[&str], cwd: Option<&Path>) -> Result<String, GitError> {
    let mut c = Command::new("git");
    c.args(args)
        .env("GIT_TERMINAL_PROMPT", "0")
        .stdin(Stdio::null());
    if let Some(d) = cwd {
        c.current_dir(d);
    }
    let out = c.output().map_err(|source| GitError::Spawn {
        remote: remote.to_string(),
        source,
    })?;
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr);
        let last = err.lines().rfind(|l| !l.trim().is_empty()).unwrap_or("");
        return Err(GitError::Failed {
            remote: remote.to_string(),
            command: args.first().unwrap_or(&"").to_string(),
            message: last.trim().to_string(),
        });
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

fn is_commit(r: &str) -> bool {
    r.len() == 40 && r.bytes().all(|b| b.is_ascii_hexdigit())
}

/// The commit `src`'s ref names now (the checksum is [`check`]'s business: several sources share one ref).
pub fn resolve(src: &GitSource) -> Result<String, GitError> {
    let wanted = src.reference.as_deref().unwrap_or("HEAD");
    let commit = if is_commit(wanted) {
        wanted.to_lowercase()
    } else {
        let listed = git(&src.remote, &["ls-remote", &src.remote, wanted], None)?;
        // A tag's peeled line (`refs/tags/v1^{}`) names the commit; prefer it over the tag object.
        let lines: Vec<(&str, &str)> = listed.lines().filter_map(|l| l.split_once('\t')).collect();
        let pick = lines
            .iter()
            .find(|(_, name)| name.ends_with("^{}"))
            .or_else(|| lines.first())
            .map(|(sha, _)| sha.to_string());
        pick.ok_or_else(|| GitError::NoRef {
            remote: src.remote.clone(),
            wanted: wanted.to_string(),
        })?
    };
    Ok(commit)
}

/// `ADD --checksum` on a git source names the commit (or its prefix) the ref must resolve to.
pub fn check(src: &GitSource, commit: &str) -> Result<(), GitError> {
    match &src.checksum {
        Some(want) if !commit.starts_with(&want.to_lowercase()) => Err(GitError::Checksum {
            remote: src.remote.clone(),
            want: want.clone(),
            reference: src.reference.as_deref().unwrap_or("HEAD").to_string(),
            commit: commit.to_string(),
        }),
        _ => Ok(()),
    }
}

/// Fetches `commit` of `src` into `scratch` and copies its tree (or sub-directory) into `diff`.
pub fn checkout(
    src: &GitSource,
    commit: &str,
    scratch: &Path,
    diff: &Path,
) -> Result<(), GitError> {
    let remote = src.remote.as_str();
    let io = |source: std::io::Error| GitError::Io {
        remote: remote.to_string(),
        source,
    };
    let repo = scratch.join("repo");
    std::fs::create_dir_all(&repo).map_err(io)?;
    git(remote, &["init", "-q"], Some(&repo))?;
    let wanted = src.reference.as_deref().unwrap_or("HEAD");
    // By name first (every server allows it), by commit when a commit was named.
    let fetched = git(
        remote,
        &["fetch", "-q", "--depth", "1", &src.remote, wanted],
        Some(&repo),
    );
    if fetched.is_err() || is_commit(wanted) {
        git(
            remote,
            &["fetch", "-q", "--depth", "1", &src.remote, commit],
            Some(&repo),
        )?;
    }
    git(
        remote,
        &["-c", "advice.detachedHead=false", "checkout", "-q", commit],
        Some(&repo),
    )?;
    let from = match &src.subdir {
        Some(s) => oci::scoped::resolve(&repo, s, true).map_err(|source| GitError::Subdir {
            remote: remote.to_string(),
            source,
        })?,
        None => repo.clone(),
    };
    if !from.is_dir() {
        return Err(GitError::NoSubdir {
            remote: remote.to_string(),
            subdir: src.subdir.clone(),
            commit: commit.to_string(),
        });
    }
    let keep = src.keep_git_dir && src.subdir.is_none();
    for e in std::fs::read_dir(&from).map_err(io)? {
        let e = e.map_err(io)?;
        if e.file_name() == ".git" && !keep {
            continue;
        }
        let status = Command::new("cp")
            .arg("-a")
            .arg(e.path())
            .arg(diff)
            .status()
            .map_err(io)?;
        if !status.success() {
            return Err(GitError::Copy {
                remote: remote.to_string(),
                path: e.path(),
            });
        }
    }
    Ok(())
}
