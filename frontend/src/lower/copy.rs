//! COPY and ADD: file ops that copy from the context, a stage, an image, a URL, a git repository or an inline
//! heredoc into the stage's filesystem; `--link` copies onto an empty layer merged on top.

use llb::{
    Chown, CopyAction, FileAction, FileMode, FileOp, GitSource, HttpSource, MergeOp, Op, SourceOp,
    UserRef, VertexId, VertexMeta,
};

use super::history::history;
use super::paths;
use super::stage::{Lowerer, StageState};
use crate::error::FrontendError;
use crate::finding::Finding;
use crate::instructions::{AddCommand, CopyCommand, SourceFile};
use crate::parser::{chomp_heredoc, Node};
use crate::shell::Lexer;

/// Parses `--chown=user[:group]`: numbers become ids, anything else a name resolved in the rootfs later.
pub(super) fn parse_chown(s: &str) -> Chown {
    let one = |p: &str| match p.parse::<u32>() {
        Ok(n) => UserRef::Id(n),
        Err(_) => UserRef::Name(p.to_string()),
    };
    match s.split_once(':') {
        Some((u, g)) => Chown {
            user: one(u),
            group: Some(one(g)),
        },
        None => Chown {
            user: one(s),
            group: None,
        },
    }
}

/// Parses `--chmod`: octal (`0755`, `644`) or symbolic (`u+x,g-w`), as BuildKit 1.14 accepts.
pub(super) fn parse_chmod(s: &str) -> Result<FileMode, String> {
    if !s.is_empty() && s.chars().all(|c| c.is_ascii_digit()) {
        return match u32::from_str_radix(s, 8) {
            Ok(m) if m <= 0o7777 => Ok(FileMode::Octal(m)),
            _ => Err(format!(
                "invalid chmod parameter: '{s}'. it should be octal string and between 0 and 07777"
            )),
        };
    }
    let valid_clause = |c: &str| {
        let ops_at = c.find(['+', '-', '=']);
        let Some(i) = ops_at else { return false };
        let (who, rest) = c.split_at(i);
        who.chars().all(|w| "ugoa".contains(w))
            && rest.split(['+', '-', '=']).skip(1).all(|perm| {
                perm.chars().all(|p| "rwxXst".contains(p)) || matches!(perm, "u" | "g" | "o")
            })
    };
    if !s.is_empty() && s.split(',').all(valid_clause) {
        Ok(FileMode::Symbolic(s.to_string()))
    } else {
        // BuildKit's wording (its testCopyInvalidChmod), and what else kiln accepts.
        Err(format!("invalid chmod parameter: '{s}'. it should be octal string and between 0 and 07777 (or symbolic, such as u+x)"))
    }
}

/// BuildKit's test for a git source in ADD.
pub(super) fn is_git_url(s: &str) -> bool {
    let base = s.split('#').next().unwrap_or(s);
    s.starts_with("git://")
        || s.starts_with("git@")
        || s.starts_with("github.com/")
        || ((base.starts_with("https://")
            || base.starts_with("http://")
            || base.starts_with("ssh://"))
            && base.ends_with(".git"))
}

fn is_http_url(s: &str) -> bool {
    s.starts_with("http://") || s.starts_with("https://")
}

/// The name an ADD of a URL saves it under: the path's last segment, or BuildKit's `__unnamed__` when the path has
/// none (dispatchCopy; its testDockerfileADDFromURL adds `http://host/`).
fn url_filename(url: &str) -> String {
    let no_query = url.split(['?', '#']).next().unwrap_or(url);
    let after_scheme = no_query.split_once("://").map_or(no_query, |(_, r)| r);
    match after_scheme.split_once('/') {
        Some((_, path)) => path
            .rsplit('/')
            .find(|s| !s.is_empty())
            .unwrap_or("__unnamed__")
            .to_string(),
        None => "__unnamed__".to_string(),
    }
}

/// What one COPY/ADD needs, once flags are expanded.
struct CopyPlan {
    keyword: &'static str,
    sources: Vec<SourceFile>,
    dest: String,
    chown: Option<String>,
    chmod: Option<String>,
    link: bool,
    parents: bool,
    exclude: Vec<String>,
    from: Option<VertexId>,
    add: Option<AddCommand>,
}

impl Lowerer<'_> {
    pub(super) fn dispatch_copy(
        &mut self,
        st: &mut StageState,
        c: &CopyCommand,
        node: &Node,
    ) -> Result<(), FrontendError> {
        let from = match &c.from {
            Some(f) => {
                let name = self.expand_in(st, f, node)?;
                Some(self.source_named(&name, st, node)?)
            }
            None => None,
        };
        self.lower_copy(
            st,
            node,
            CopyPlan {
                keyword: "COPY",
                sources: c.sources.clone(),
                dest: c.dest.clone(),
                chown: c.chown.clone(),
                chmod: c.chmod.clone(),
                link: c.link,
                parents: c.parents,
                exclude: c.exclude.clone(),
                from,
                add: None,
            },
        )
    }

    pub(super) fn dispatch_add(
        &mut self,
        st: &mut StageState,
        a: &AddCommand,
        node: &Node,
    ) -> Result<(), FrontendError> {
        self.lower_copy(
            st,
            node,
            CopyPlan {
                keyword: "ADD",
                sources: a.sources.clone(),
                dest: a.dest.clone(),
                chown: a.chown.clone(),
                chmod: a.chmod.clone(),
                link: a.link,
                parents: false,
                exclude: a.exclude.clone(),
                from: None,
                add: Some(a.clone()),
            },
        )
    }

    fn lower_copy(
        &mut self,
        st: &mut StageState,
        node: &Node,
        plan: CopyPlan,
    ) -> Result<(), FrontendError> {
        let kw = plan.keyword;
        let at = |m: String| FrontendError::at(node.span, format!("{kw} {m}"));
        let dest_raw = self.expand_in(st, &plan.dest, node)?;
        let dest = paths::resolve(&st.image.config.working_dir, &dest_raw, true);
        let mut sources = Vec::new();
        for s in &plan.sources {
            sources.push(match s {
                SourceFile::Path(p) => SourceFile::Path(self.expand_in(st, p, node)?),
                SourceFile::Heredoc(h) => SourceFile::Heredoc(h.clone()),
            });
        }
        // Several sources need no trailing `/`: BuildKit has no such error. The destination is a directory only
        // when it ends in `/` or `/.`, is `.` or empty, or exists as one; else each source is written to it in turn.
        let chown_text = match &plan.chown {
            Some(c) => Some(self.expand_in(st, c, node)?),
            None => None,
        };
        let chmod_text = match &plan.chmod {
            Some(c) => Some(self.expand_in(st, c, node)?),
            None => None,
        };
        let chown = chown_text.as_deref().map(parse_chown);
        let mode = match &chmod_text {
            Some(c) => Some(parse_chmod(c).map_err(at)?),
            None => None,
        };
        let mut exclude = Vec::new();
        for e in &plan.exclude {
            exclude.push(self.expand_in(st, e, node)?);
        }
        let checksum = match plan.add.as_ref().and_then(|a| a.checksum.clone()) {
            Some(c) => Some(self.expand_in(st, &c, node)?),
            None => None,
        };

        // Inputs: the base (unless --link), then each distinct source vertex.
        let mut inputs: Vec<VertexId> = Vec::new();
        let base_index = match (plan.link, st.root) {
            (false, Some(r)) => {
                inputs.push(r);
                Some(0)
            }
            _ => None,
        };
        let index_of =
            |v: VertexId, inputs: &mut Vec<VertexId>| match inputs.iter().position(|x| *x == v) {
                Some(i) => i,
                None => {
                    inputs.push(v);
                    inputs.len() - 1
                }
            };
        let mut actions = Vec::new();
        let mut shown = Vec::new();
        for s in &sources {
            let base_action = |source: usize, src: String| CopyAction {
                source,
                src,
                dest: dest.clone(),
                chown: chown.clone(),
                mode: mode.clone(),
                follow_symlinks: true,
                copy_dir_contents: true,
                unpack_archive: false,
                create_dest_path: true,
                allow_wildcard: true,
                allow_empty_wildcard: true,
                include_patterns: vec![],
                exclude_patterns: exclude.clone(),
                parents: plan.parents,
            };
            match s {
                SourceFile::Heredoc(h) => {
                    shown.push(format!("<<{}", h.name));
                    let mut data = if h.chomp {
                        chomp_heredoc(&h.content)
                    } else {
                        h.content.clone()
                    };
                    if h.expand {
                        // Quotes are ordinary characters here and an escape keeps only what it escapes, as
                        // BuildKit expands an unquoted heredoc (its testHeredocVarSubstitution: `'${name}'` is
                        // `'world'`; testCopyHeredocSpecialSymbols: `\\` is `\`, `\$` is `$`).
                        let mut lexer = Lexer::new(self.df.directives.escape);
                        lexer.skip_process_quotes = true;
                        data = lexer
                            .process_word(&data, &st.scope())
                            .map_err(|e| at(format!("heredoc <<{}: {e}", h.name)))?;
                    }
                    let v = self.inline_document(&h.name, data, 0o644);
                    let i = index_of(v, &mut inputs);
                    let mut a = base_action(i, format!("/{}", h.name));
                    a.allow_wildcard = false;
                    actions.push(FileAction::Copy(a));
                }
                SourceFile::Path(p) if plan.add.is_some() && is_git_url(p) => {
                    shown.push(p.clone());
                    let keep_git_dir = plan.add.as_ref().is_some_and(|a| a.keep_git_dir);
                    let (remote, fragment) = p
                        .split_once('#')
                        .map_or((p.as_str(), None), |(r, f)| (r, Some(f)));
                    let (reference, subdir) = match fragment {
                        Some(f) => match f.split_once(':') {
                            Some((r, s)) => (Some(r.to_string()), Some(s.to_string())),
                            None => (Some(f.to_string()), None),
                        },
                        None => (None, None),
                    };
                    let src_meta = VertexMeta {
                        description: format!("[internal] load git source {p}"),
                        ..Default::default()
                    };
                    let v = self.def.add(
                        Op::Source(SourceOp::Git(GitSource {
                            remote: remote.to_string(),
                            reference: reference.filter(|r| !r.is_empty()),
                            subdir: subdir.filter(|s| !s.is_empty()),
                            keep_git_dir,
                            checksum: checksum.clone(),
                        })),
                        vec![],
                        src_meta,
                    );
                    let i = index_of(v, &mut inputs);
                    let mut a = base_action(i, "/".to_string());
                    a.allow_wildcard = false;
                    actions.push(FileAction::Copy(a));
                }
                SourceFile::Path(p) if plan.add.is_some() && is_http_url(p) => {
                    shown.push(p.clone());
                    let filename = url_filename(p);
                    let src_meta = VertexMeta {
                        description: format!("[internal] load remote file {p}"),
                        ..Default::default()
                    };
                    let v = self.def.add(
                        Op::Source(SourceOp::Http(HttpSource {
                            url: p.clone(),
                            checksum: checksum.clone(),
                            filename: filename.clone(),
                            mode: None,
                        })),
                        vec![],
                        src_meta,
                    );
                    let i = index_of(v, &mut inputs);
                    let mut a = base_action(i, format!("/{filename}"));
                    a.allow_wildcard = false;
                    a.unpack_archive = plan.add.as_ref().and_then(|a| a.unpack).unwrap_or(false);
                    // A URL copied to a path without a trailing slash names the file itself.
                    actions.push(FileAction::Copy(a));
                }
                SourceFile::Path(p) => {
                    shown.push(p.clone());
                    if plan.add.is_some() && checksum.is_some() {
                        return Err(at(
                            "--checksum can only be used with HTTP(S) and git sources".to_string(),
                        ));
                    }
                    let src_vertex = match plan.from {
                        Some(v) => v,
                        None => {
                            self.check_ignored(p, node);
                            self.context_source()
                        }
                    };
                    let i = index_of(src_vertex, &mut inputs);
                    let mut a = base_action(i, source_path(p, plan.parents));
                    if p.ends_with('/') && a.src != "/" {
                        a.src.push('/');
                    }
                    a.unpack_archive = plan
                        .add
                        .as_ref()
                        .map(|a| a.unpack.unwrap_or(true))
                        .unwrap_or(false);
                    actions.push(FileAction::Copy(a));
                }
            }
        }
        // As BuildKit names the step: the instruction with its flags as written, then the paths.
        let flags: String = node.flags.iter().map(|f| format!("{f} ")).collect();
        let text = format!("{kw} {flags}{} {dest_raw}", shown.join(" "));
        let mut meta = st.describe(&text);
        meta.lines = Some((node.span.start_line, node.span.end_line));
        let op = Op::File(FileOp {
            base: base_index,
            actions,
        });
        let copied = self.def.add(op, inputs, meta.clone());
        st.root = Some(match (plan.link, st.root) {
            (true, Some(root)) => {
                let merge = Op::Merge(MergeOp { layers: vec![0, 1] });
                self.def.add(merge, vec![root, copied], meta)
            }
            _ => copied,
        });
        // The history names fewer flags than the step: BuildKit's dispatchCopy writes the instruction, then
        // `--parents`, `--chown=` and `--chmod=` as expanded, then the paths (never `--from`, `--link` or
        // `--exclude`).
        let mut created_by = kw.to_string();
        if plan.parents {
            created_by.push_str(" --parents");
        }
        if let Some(c) = chown_text.filter(|c| !c.is_empty()) {
            created_by.push_str(&format!(" --chown={c}"));
        }
        if let Some(c) = chmod_text.filter(|c| !c.is_empty()) {
            created_by.push_str(&format!(" --chmod={c}"));
        }
        history(
            st,
            format!("{created_by} {} {dest_raw} # buildkit", shown.join(" ")),
            false,
        );
        Ok(())
    }

    /// The CopyIgnoredFile check: a COPY source from the main context that .dockerignore excludes.
    ///
    /// Not made when .dockerignore has exceptions (`!pattern`), as BuildKit's validateCopySourcePath does not: an
    /// excluded directory is still copied when an exception re-includes something below it (`build/` with
    /// `!build/keep/` makes `COPY build /b` copy build/keep), which no check of the path alone can tell.
    fn check_ignored(&mut self, src: &str, node: &Node) {
        if self.opts.ignore_patterns.is_empty() {
            return;
        }
        let Ok(m) = llb::patterns::PatternMatcher::new(&self.opts.ignore_patterns) else {
            return;
        };
        if m.has_exclusions() {
            return;
        }
        let path = paths::clean(src.trim_start_matches('/'));
        // The context root is flagged only when a pattern excludes everything in it (testCopyIgnoredFileContextRoot).
        let ignored = if path == "." {
            m.patterns()
                .iter()
                .any(|p| matches!(p.text(), "*" | "**" | "**/*"))
        } else {
            !path.contains(['*', '?', '[']) && m.matches_or_parent_matches(&path)
        };
        if ignored {
            let cmd = if node.keyword == "add" { "Add" } else { "Copy" };
            let shown = paths::clean(src);
            self.findings.push(Finding::new(
                "CopyIgnoredFile",
                node.span,
                format!("Attempting to {cmd} file {shown:?} that is excluded by .dockerignore"),
            ));
        }
    }
}

/// A COPY/ADD source as an absolute, cleaned path. With `--parents`, the first `/./` is kept: it is the pivot
/// below which the source's parents are recreated (BuildKit's testCopyRelativeParents: `/test/a/b/./c/d` copies
/// to `/out/c/d`, `/test/a/./b/./c` to `/out/b/c`).
fn source_path(p: &str, parents: bool) -> String {
    let abs = format!("/{p}");
    match abs.split_once("/./") {
        Some((before, after)) if parents && !after.is_empty() => {
            let before = paths::clean(&format!("/{before}"));
            let after = paths::clean(&format!("/{after}"));
            format!("{}/.{after}", before.trim_end_matches('/'))
        }
        _ => paths::clean(&abs),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chmod_forms() {
        assert_eq!(parse_chmod("755").unwrap(), FileMode::Octal(0o755));
        assert_eq!(parse_chmod("0644").unwrap(), FileMode::Octal(0o644));
        assert_eq!(
            parse_chmod("u+x,g-w").unwrap(),
            FileMode::Symbolic("u+x,g-w".into())
        );
        assert_eq!(
            parse_chmod("a=rX").unwrap(),
            FileMode::Symbolic("a=rX".into())
        );
        for bad in ["", "99999", "888", "u*x", "z+x", "rwx"] {
            assert!(parse_chmod(bad).is_err(), "{bad}");
        }
        // BuildKit's wording (testCopyInvalidChmod).
        for bad in ["64a", "10000"] {
            let e = parse_chmod(bad).unwrap_err();
            assert!(
                e.contains(&format!("invalid chmod parameter: '{bad}'. it should be octal string and between 0 and 07777")),
                "{e}"
            );
        }
    }

    #[test]
    fn git_and_http_urls() {
        assert!(is_git_url(
            "https://github.com/moby/buildkit.git#v0.13:docs"
        ));
        assert!(is_git_url("git@github.com:moby/buildkit.git"));
        assert!(is_git_url("git://example.com/x"));
        assert!(!is_git_url("https://example.com/file.tar.gz"));
        assert_eq!(url_filename("https://example.com/a/b.tgz?x=1"), "b.tgz");
        assert_eq!(url_filename("https://example.com"), "__unnamed__");
        assert_eq!(url_filename("https://example.com/"), "__unnamed__");
        assert_eq!(url_filename("https://example.com/dir/"), "dir");
    }

    #[test]
    fn chown_ids_and_names() {
        assert_eq!(parse_chown("1000:1000").user, UserRef::Id(1000));
        assert_eq!(parse_chown("app").user, UserRef::Name("app".into()));
        assert_eq!(
            parse_chown("app:staff").group,
            Some(UserRef::Name("staff".into()))
        );
    }
}
