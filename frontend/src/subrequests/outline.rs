//! The outline subrequest (BuildKit's `frontend.outline`, `dockerfile2llb/outline.go`): the build args, secrets
//! and SSH ids the target stage and the stages it builds on use, with the values and descriptions BuildKit shows.
//!
//! Lowering records what it sees into a [`Capture`] (only when asked): the global ARGs with the variables their
//! defaults read, and per stage the ARGs it declares, the ARGs its FROM reads, the secret and SSH mounts of its
//! RUNs, its base stage and the stages it copies or mounts from. [`outline`] then walks from the target as
//! BuildKit's `dispatchState.args/secrets/ssh` do.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use serde::Serialize;

use super::{base64_sources, comments_by_line, doc_comment, tabwrite, Location};
use crate::error::FrontendError;
use crate::instructions::ArgDecl;
use crate::lower::{BuildOpts, ImageResolver};
use crate::parser::{Dockerfile, Node};

/// What a target needs: BuildKit's `outline.Outline`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Outline {
    /// The target stage's name; empty for an unnamed one.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub name: String,
    /// The comment above its FROM that starts with its name, without the name.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub description: String,
    /// The build args the target uses, by line.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub args: Vec<Arg>,
    /// The secrets its RUN steps mount, by line.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub secrets: Vec<Mount>,
    /// The SSH agents its RUN steps mount, by line.
    #[serde(rename = "ssh", skip_serializing_if = "Vec::is_empty")]
    pub ssh: Vec<Mount>,
    /// The Dockerfile's bytes (base64 in JSON).
    #[serde(
        serialize_with = "base64_sources",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub sources: Vec<Vec<u8>>,
}

/// One build arg: BuildKit's `outline.Arg`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Arg {
    /// Its name.
    pub name: String,
    /// The comment above its ARG that starts with its name, without the name.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub description: String,
    /// Its value for this build: the `--build-arg`, else the expanded default; empty when it has none.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub value: String,
    /// The ARG that declares it.
    pub location: Location,
}

/// One secret or SSH id: BuildKit's `outline.Secret` and `outline.SSH`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Mount {
    /// The id (`default` for an SSH mount without one).
    pub name: String,
    /// The first RUN mounting it in its stage says `required`.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub required: bool,
    /// That RUN.
    pub location: Location,
}

/// A build arg as a stage sees it: BuildKit's `argInfo`.
#[derive(Debug, Clone)]
struct ArgInfo {
    name: String,
    value: String,
    description: String,
    location: Location,
    /// Its place in its ARG instruction, to order `ARG a b` as written.
    position: usize,
    /// The variables a global ARG's default read (BuildKit counts them used when the ARG is).
    deps: BTreeSet<String>,
}

/// What lowering saw of one stage.
#[derive(Debug, Clone, Default)]
struct StageCapture {
    /// Names its FROM read and its ARGs declare.
    used: BTreeSet<String>,
    /// Its own ARGs' infos (over the global ones).
    args: HashMap<String, ArgInfo>,
    secrets: Vec<(String, Mount)>,
    ssh: Vec<(String, Mount)>,
    base: Option<usize>,
    deps: BTreeSet<usize>,
}

/// What lowering records for an outline (see the module's comment).
#[derive(Debug, Clone, Default)]
pub(crate) struct Capture {
    comments: HashMap<usize, Vec<String>>,
    global: HashMap<String, ArgInfo>,
    stages: BTreeMap<usize, StageCapture>,
}

/// The kind of a mount an outline lists.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum MountKind {
    Secret,
    Ssh,
}

impl Capture {
    /// An empty capture for `df`, whose comments give the descriptions.
    pub(crate) fn new(df: &Dockerfile) -> Capture {
        Capture {
            comments: comments_by_line(df),
            ..Capture::default()
        }
    }

    fn info(&self, decl: &ArgDecl, position: usize, node: &Node, value: Option<&str>) -> ArgInfo {
        let description = self
            .comments
            .get(&node.span.start_line)
            .map(|c| doc_comment(c, &decl.name))
            .unwrap_or_default();
        ArgInfo {
            name: decl.name.clone(),
            value: value.unwrap_or_default().to_string(),
            description,
            location: Location::of(node.span),
            position,
            deps: BTreeSet::new(),
        }
    }

    /// A global ARG (before the first FROM) with its value and the variables its default read (`None` when a
    /// build arg gave the value). As BuildKit's `buildMetaArgs`, an ARG reading itself keeps what its earlier
    /// declaration read instead.
    pub(crate) fn global_arg(
        &mut self,
        decl: &ArgDecl,
        position: usize,
        node: &Node,
        value: Option<&str>,
        read: Option<BTreeSet<String>>,
    ) {
        let mut info = self.info(decl, position, node, value);
        if let Some(mut deps) = read {
            if deps.remove(&decl.name) {
                if let Some(old) = self.global.get(&decl.name) {
                    deps.extend(old.deps.iter().cloned());
                }
            }
            info.deps = deps;
        }
        self.global.insert(decl.name.clone(), info);
    }

    /// Names stage `stage`'s FROM (image or platform) read.
    pub(crate) fn stage_from_reads(
        &mut self,
        stage: usize,
        names: impl IntoIterator<Item = String>,
    ) {
        let st = self.stages.entry(stage).or_default();
        st.used.extend(names);
    }

    /// An ARG of stage `stage` with the value BuildKit's `dispatchArg` gives it. `inherited` (no default, no
    /// build arg, a global value) keeps the global ARG's info, as BuildKit skips its own then.
    pub(crate) fn stage_arg(
        &mut self,
        stage: usize,
        decl: &ArgDecl,
        position: usize,
        node: &Node,
        value: Option<&str>,
        inherited: bool,
    ) {
        let info = self.info(decl, position, node, value);
        let st = self.stages.entry(stage).or_default();
        if !inherited {
            st.args.insert(decl.name.clone(), info);
        }
        st.used.insert(decl.name.clone());
    }

    /// A secret or SSH mount of a RUN in stage `stage`; the first of an id in a stage is kept.
    pub(crate) fn mount(
        &mut self,
        stage: usize,
        kind: MountKind,
        id: &str,
        required: bool,
        node: &Node,
    ) {
        let st = self.stages.entry(stage).or_default();
        let list = match kind {
            MountKind::Secret => &mut st.secrets,
            MountKind::Ssh => &mut st.ssh,
        };
        if list.iter().any(|(k, _)| k == id) {
            return;
        }
        list.push((
            id.to_string(),
            Mount {
                name: id.to_string(),
                required,
                location: Location::of(node.span),
            },
        ));
    }

    /// Stage `stage` is built FROM stage `base`.
    pub(crate) fn base(&mut self, stage: usize, base: usize) {
        self.stages.entry(stage).or_default().base = Some(base);
    }

    /// Stage `stage` copies or mounts from stage `dep`.
    pub(crate) fn dep(&mut self, stage: usize, dep: usize) {
        self.stages.entry(stage).or_default().deps.insert(dep);
    }

    fn lookup<'a>(&'a self, st: &'a StageCapture, name: &str) -> Option<&'a ArgInfo> {
        st.args.get(name).or_else(|| self.global.get(name))
    }

    /// The stages reachable from `target` (itself first, then its base, then what it copies from), each once.
    fn walk(&self, target: usize) -> Vec<usize> {
        let mut order = Vec::new();
        let mut seen = BTreeSet::new();
        let mut stack = vec![target];
        while let Some(i) = stack.pop() {
            if !seen.insert(i) {
                continue;
            }
            order.push(i);
            if let Some(st) = self.stages.get(&i) {
                stack.extend(st.deps.iter().rev().copied());
                stack.extend(st.base);
            }
        }
        order
    }

    /// The args of stage `st`: its used names, with what the global ARGs among them read (BuildKit's
    /// `markAllUsed`), that have an info.
    fn stage_args<'a>(&'a self, st: &'a StageCapture) -> Vec<&'a ArgInfo> {
        let mut used = st.used.clone();
        let mut todo: Vec<String> = used.iter().cloned().collect();
        while let Some(k) = todo.pop() {
            if let Some(info) = self.lookup(st, &k) {
                for d in &info.deps {
                    if used.insert(d.clone()) {
                        todo.push(d.clone());
                    }
                }
            }
        }
        used.iter().filter_map(|k| self.lookup(st, k)).collect()
    }

    fn into_outline(self, target: usize, name: String, description: String) -> Outline {
        let empty = StageCapture::default();
        let mut args: Vec<&ArgInfo> = Vec::new();
        let mut secrets: Vec<Mount> = Vec::new();
        let mut ssh: Vec<Mount> = Vec::new();
        let (mut seen_args, mut seen_secrets, mut seen_ssh) =
            (BTreeSet::new(), BTreeSet::new(), BTreeSet::new());
        for i in self.walk(target) {
            let st = self.stages.get(&i).unwrap_or(&empty);
            for a in self.stage_args(st) {
                if seen_args.insert(a.name.clone()) {
                    args.push(a);
                }
            }
            for (id, m) in &st.secrets {
                if seen_secrets.insert(id.clone()) {
                    secrets.push(m.clone());
                }
            }
            for (id, m) in &st.ssh {
                if seen_ssh.insert(id.clone()) {
                    ssh.push(m.clone());
                }
            }
        }
        args.sort_by_key(|a| (a.location.line(), a.position));
        secrets.sort_by_key(|m| m.location.line());
        ssh.sort_by_key(|m| m.location.line());
        Outline {
            name,
            description,
            args: args
                .into_iter()
                .map(|a| Arg {
                    name: a.name.clone(),
                    description: a.description.clone(),
                    value: a.value.clone(),
                    location: a.location.clone(),
                })
                .collect(),
            secrets,
            ssh,
            sources: Vec::new(),
        }
    }
}

/// The outline of the target `opts` names (the last stage by default) of `df`, whose bytes are `source`. The
/// target and the stages it needs are lowered, as for a build, with `resolver` answering for base images (their
/// ENV can matter to an ARG's default).
pub fn outline(
    df: &Dockerfile,
    source: &[u8],
    opts: &BuildOpts,
    resolver: &dyn ImageResolver,
) -> Result<Outline, FrontendError> {
    let (capture, stages, target) = crate::lower::capture_outline(df, opts, resolver)?;
    let stage = &stages.stages[target];
    let name = stage.name.clone().unwrap_or_default();
    let description = capture
        .comments
        .get(&stage.from_node.span.start_line)
        .map(|c| doc_comment(c, &name))
        .unwrap_or_default();
    let mut out = capture.into_outline(target, name, description);
    out.sources = vec![source.to_vec()];
    Ok(out)
}

impl Outline {
    /// The outline as buildx prints it (BuildKit's `PrintOutline`): the target and its description, then tables
    /// of build args, secrets and SSH ids, each followed by an empty line; a table with no rows is left out.
    pub fn to_text(&self) -> String {
        let mut out = String::new();
        if !self.name.is_empty() || !self.description.is_empty() {
            let name = if self.name.is_empty() {
                "(default)".to_string()
            } else {
                self.name.clone()
            };
            let mut rows = vec![vec!["TARGET:".to_string(), name]];
            if !self.description.is_empty() {
                rows.push(vec!["DESCRIPTION:".to_string(), self.description.clone()]);
            }
            out.push_str(&tabwrite(&rows, 1));
            out.push('\n');
        }
        if !self.args.is_empty() {
            let mut rows = vec![vec![
                "BUILD ARG".to_string(),
                "VALUE".to_string(),
                "DESCRIPTION".to_string(),
            ]];
            for a in &self.args {
                rows.push(vec![a.name.clone(), a.value.clone(), a.description.clone()]);
            }
            out.push_str(&tabwrite(&rows, 3));
            out.push('\n');
        }
        for (title, list) in [("SECRET", &self.secrets), ("SSH", &self.ssh)] {
            if list.is_empty() {
                continue;
            }
            let mut rows = vec![vec![title.to_string(), "REQUIRED".to_string()]];
            for m in list {
                let required = if m.required { "true" } else { "" };
                rows.push(vec![m.name.clone(), required.to_string()]);
            }
            out.push_str(&tabwrite(&rows, 3));
            out.push('\n');
        }
        out
    }
}
