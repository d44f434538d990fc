//! The lowering driver: resolves which stages the target needs, lowers each once (recursively, on first use), and
//! keeps the state shared across stages (the graph, the global ARG scope, shared source vertices).

use std::collections::{BTreeMap, BTreeSet};

use llb::{
    Definition, FileOp, ImageSource, LocalSource, OciLayoutSource, Op, ResolveMode, SourceOp,
    VertexId, VertexMeta,
};
use oci::{ContainerConfig, Image, Platform};

use super::args::{platform_values, Scope};
use super::{BuildOpts, ImageResolver, NamedContext, StageResult};
use crate::error::FrontendError;
use crate::finding::Finding;
use crate::instructions::{Command, Instruction, Stage, Stages};
use crate::parser::{Dockerfile, Node};
use crate::shell::Lexer;
use crate::subrequests::outline::Capture;

/// Docker's default PATH, set in the config of images built FROM scratch and given to RUN when the image has none.
pub(super) const DEFAULT_PATH: &str =
    "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// A stage's expansion scope with the names that count as defined (ARGs without a value included).
pub(super) type ScopeAndNames = (Scope, BTreeSet<String>);

/// What a stage looks like while its instructions are dispatched.
pub(super) struct StageState {
    pub index: usize,
    pub name: String,
    /// Progress prefix: `name ` or empty for an unnamed target stage.
    pub prefix: String,
    pub root: Option<VertexId>,
    pub image: Image,
    pub platform: Platform,
    /// ARGs declared in this stage, with their values when they have one.
    pub args: Vec<(String, Option<String>)>,
    pub cmd_set: bool,
    /// An absolute WORKDIR was set in this stage (WorkdirRelativePath only fires before one).
    pub workdir_set: bool,
    pub step: usize,
    pub total: usize,
    pub ignore_cache: bool,
    /// The expansion scope and defined names, built on first use after ARG last changed them (ENV updates it).
    scope_cache: std::cell::RefCell<Option<std::rc::Rc<ScopeAndNames>>>,
    /// Where each ENV name sits in the image's env list, so that ENV costs the same on the ten-thousandth line as
    /// on the first (built on first use; checked against the list before each use).
    env_index: Option<std::collections::HashMap<String, usize>>,
}

impl StageState {
    /// The expansion scope and the names defined for the UndefinedVar check, cached until
    /// [`StageState::invalidate_scope`].
    pub fn cached_scope(&self) -> std::rc::Rc<ScopeAndNames> {
        let mut cache = self.scope_cache.borrow_mut();
        cache
            .get_or_insert_with(|| std::rc::Rc::new((self.scope(), self.defined())))
            .clone()
    }

    /// Sets an ENV variable in the image and in the expansion scope, in time independent of how many are set.
    pub fn set_env(&mut self, key: &str, value: &str) {
        let env = &mut self.image.config.env;
        let entry = format!("{key}={value}");
        let named = |kv: &str| kv.split_once('=').map_or(kv, |(k, _)| k) == key;
        let stale = self.env_index.as_ref().is_none_or(|i| i.len() != env.len());
        if stale {
            let mut index = std::collections::HashMap::with_capacity(env.len());
            for (i, kv) in env.iter().enumerate() {
                index
                    .entry(
                        kv.split_once('=')
                            .map_or(kv.as_str(), |(k, _)| k)
                            .to_string(),
                    )
                    .or_insert(i);
            }
            if index.len() != env.len() {
                // Duplicate names in a base image's env: nothing to index, the list is searched instead.
                self.image.config.set_env(key, value);
                self.env_index = None;
                self.invalidate_scope();
                return;
            }
            self.env_index = Some(index);
        }
        let index = self.env_index.get_or_insert_with(Default::default);
        match index.get(key).copied() {
            Some(i) if env.get(i).is_some_and(|kv| named(kv)) => env[i] = entry,
            _ => {
                index.insert(key.to_string(), env.len());
                env.push(entry);
            }
        }
        // ENV overrides an ARG of the same name: the cached scope takes the value as it is.
        if let Some(cache) = self.scope_cache.get_mut() {
            let (scope, names) = std::rc::Rc::make_mut(cache);
            scope.set(key, value);
            names.insert(key.to_string());
        }
    }

    /// Called whenever ARG changes what words expand to.
    pub fn invalidate_scope(&mut self) {
        *self.scope_cache.get_mut() = None;
    }

    /// The expansion scope: declared ARGs with values, overlaid by ENV.
    pub fn scope(&self) -> Scope {
        let mut s = Scope::default();
        for (k, v) in &self.args {
            if let Some(v) = v {
                s.set(k, v);
            }
        }
        for kv in &self.image.config.env {
            let (k, v) = kv.split_once('=').unwrap_or((kv.as_str(), ""));
            s.set(k, v);
        }
        s
    }

    /// Names that count as defined for the UndefinedVar check (ARGs without value included).
    pub fn defined(&self) -> BTreeSet<String> {
        let mut d: BTreeSet<String> = self.args.iter().map(|(k, _)| k.clone()).collect();
        for kv in &self.image.config.env {
            d.insert(
                kv.split_once('=')
                    .map_or(kv.as_str(), |(k, _)| k)
                    .to_string(),
            );
        }
        d
    }

    /// The next step's description, BuildKit style.
    pub fn describe(&mut self, text: &str) -> VertexMeta {
        self.step += 1;
        VertexMeta {
            description: format!("[{}{}/{}] {}", self.prefix, self.step, self.total, text),
            stage: Some(self.name.clone()),
            lines: None,
            ignore_cache: self.ignore_cache,
            slot: Some(format!("{}#{}", self.name, self.step)),
        }
    }
}

pub(super) struct Lowerer<'a> {
    pub df: &'a Dockerfile,
    pub stages: &'a Stages,
    pub opts: &'a BuildOpts,
    pub resolver: &'a dyn ImageResolver,
    pub def: Definition,
    pub global: Scope,
    pub global_declared: BTreeSet<String>,
    pub target_platform: Platform,
    pub done: BTreeMap<usize, StageResult>,
    /// The ARGs (with their values) each lowered stage ended with: a stage built FROM it starts with them, as
    /// BuildKit's `dispatchState.init` copies the base stage's build args and environment.
    stage_args: BTreeMap<usize, Vec<(String, Option<String>)>>,
    /// The lowered stages that set a WORKDIR (or were built on one that did): a relative WORKDIR in a stage built
    /// FROM them is no WorkdirRelativePath finding, as BuildKit's `dispatchState.init` copies `workdirSet`.
    workdir_set: BTreeSet<usize>,
    in_progress: BTreeSet<usize>,
    pub findings: Vec<Finding>,
    pub used_build_args: BTreeSet<String>,
    pub target: usize,
    /// What `--call=outline` needs, recorded only when asked for (see [`Lowerer::with_outline`]).
    pub outline: Option<Capture>,
}

impl<'a> Lowerer<'a> {
    pub fn new(
        df: &'a Dockerfile,
        stages: &'a Stages,
        opts: &'a BuildOpts,
        resolver: &'a dyn ImageResolver,
    ) -> Result<Self, FrontendError> {
        Self::with_outline(df, stages, opts, resolver, None)
    }

    /// [`Lowerer::new`], recording what an outline needs into `outline` when it is given.
    pub fn with_outline(
        df: &'a Dockerfile,
        stages: &'a Stages,
        opts: &'a BuildOpts,
        resolver: &'a dyn ImageResolver,
        outline: Option<Capture>,
    ) -> Result<Self, FrontendError> {
        let target_platform = opts
            .target_platform
            .clone()
            .unwrap_or_else(|| opts.build_platform.clone());
        let mut me = Lowerer {
            df,
            stages,
            opts,
            resolver,
            def: Definition::new(),
            global: Scope::default(),
            global_declared: BTreeSet::new(),
            target_platform,
            done: BTreeMap::new(),
            stage_args: BTreeMap::new(),
            workdir_set: BTreeSet::new(),
            in_progress: BTreeSet::new(),
            findings: Vec::new(),
            used_build_args: BTreeSet::new(),
            target: 0,
            outline,
        };
        for (k, v) in platform_values(&me.target_platform, &opts.build_platform) {
            me.global.set(&k, &v);
        }
        me.target = me.find_target()?;
        // The target's own name; `default` for an unnamed last stage, as in BuildKit (testTargetStageNameArg).
        let target_name = stages.stages[me.target]
            .name
            .clone()
            .unwrap_or_else(|| "default".to_string());
        me.global.set("TARGETSTAGE", &target_name);
        for inst in &stages.meta_args {
            let Command::Arg(decls) = &inst.command else {
                continue;
            };
            for (position, d) in decls.iter().enumerate() {
                me.global_declared.insert(d.name.clone());
                let mut read = None;
                let value = if let Some(v) = opts.build_args.get(&d.name) {
                    me.used_build_args.insert(d.name.clone());
                    Some(v.clone())
                } else if let Some(default) = &d.default {
                    let scope = me.global.clone();
                    let declared = me.global_declared.clone();
                    if me.outline.is_some() {
                        read = Some(me.reads(default, &scope));
                    }
                    Some(me.expand(default, &scope, &declared, &inst.node, "UndefinedArgInFrom")?)
                } else {
                    None
                };
                if let Some(c) = &mut me.outline {
                    c.global_arg(d, position, &inst.node, value.as_deref(), read);
                }
                if let Some(v) = value {
                    me.global.set(&d.name, &v);
                }
            }
        }
        Ok(me)
    }

    fn find_target(&self) -> Result<usize, FrontendError> {
        match &self.opts.target {
            None => Ok(self.stages.stages.len() - 1),
            Some(t) => self.stages.find(t).map(|s| s.index).ok_or_else(|| {
                let names: Vec<String> = self
                    .stages
                    .stages
                    .iter()
                    .filter_map(|s| s.name.clone())
                    .collect();
                let hint = crate::suggest::nearest(t, names.iter().map(String::as_str));
                FrontendError::request(match hint {
                    Some(n) => format!("target stage {t:?} could not be found (did you mean {n}?)"),
                    None => format!(
                        "target stage {t:?} could not be found (stages: {})",
                        if names.is_empty() {
                            "none named".to_string()
                        } else {
                            names.join(", ")
                        }
                    ),
                })
            }),
        }
    }

    pub fn target_index(&self) -> Result<usize, FrontendError> {
        Ok(self.target)
    }

    /// Expands `word` against `scope`, recording a finding of `rule` for each variable not in `declared`.
    pub fn expand(
        &mut self,
        word: &str,
        scope: &Scope,
        declared: &BTreeSet<String>,
        node: &Node,
        rule: &'static str,
    ) -> Result<String, FrontendError> {
        let lexer = Lexer::new(self.df.directives.escape);
        let exp = lexer.process_word_with_matches(word, scope).map_err(|e| {
            FrontendError::at(node.span, format!("{}: {e}", node.keyword.to_uppercase()))
        })?;
        for name in &exp.unset {
            if !declared.contains(name) && !is_env_builtin(name) {
                let message = undefined_message(rule, name, scope, declared);
                self.findings.push(Finding::new(rule, node.span, message));
            }
        }
        Ok(exp.result)
    }

    /// The variables `word` reads that `scope` sets (BuildKit's `ProcessWordWithMatches(...).Matched`), for the
    /// outline; empty when the word does not expand (lowering reports that).
    pub fn reads(&self, word: &str, scope: &Scope) -> BTreeSet<String> {
        Lexer::new(self.df.directives.escape)
            .process_word_with_matches(word, scope)
            .map(|e| e.used)
            .unwrap_or_default()
    }

    /// Splitting variant of [`Lowerer::expand`] (EXPOSE).
    pub fn expand_words(
        &mut self,
        word: &str,
        scope: &Scope,
        node: &Node,
    ) -> Result<Vec<String>, FrontendError> {
        let lexer = Lexer::new(self.df.directives.escape);
        lexer.process_words(word, scope).map_err(|e| {
            FrontendError::at(node.span, format!("{}: {e}", node.keyword.to_uppercase()))
        })
    }

    /// The stage a `FROM`/`--from` name refers to, seen from stage `from_index`: an earlier stage by name, or by
    /// index. Later stages are not visible, as in BuildKit (the name is then an image reference).
    pub fn stage_ref(
        &self,
        name: &str,
        from_index: usize,
        node: &Node,
    ) -> Result<Option<usize>, FrontendError> {
        if let Ok(n) = name.parse::<usize>() {
            if n >= from_index {
                return Err(FrontendError::at(
                    node.span,
                    format!("invalid stage index {n}: only earlier stages (0..{from_index}) can be referenced"),
                ));
            }
            return Ok(Some(n));
        }
        Ok(self
            .stages
            .find(name)
            .map(|s| s.index)
            .filter(|i| *i < from_index))
    }

    /// The earlier stage a FROM names. Stage names are kept lower-cased and FROM compares its word to them exactly,
    /// with no numeric index (BuildKit's `dispatchStates.addState` looks the base name up as written), so
    /// `FROM Foo` after `AS Foo` names an image.
    fn base_stage(&self, name: &str, from_index: usize) -> Option<usize> {
        self.stages.stages[..from_index]
            .iter()
            .rev()
            .find(|s| s.name.as_deref() == Some(name))
            .map(|s| s.index)
    }

    /// Lowers stage `index` (once) and returns its result.
    pub fn lower_stage(&mut self, index: usize) -> Result<StageResult, FrontendError> {
        if let Some(done) = self.done.get(&index) {
            return Ok(done.clone());
        }
        let stage: &'a Stage = &self.stages.stages[index];
        if !self.in_progress.insert(index) {
            return Err(FrontendError::at(
                stage.from_node.span,
                "circular dependency between stages",
            ));
        }
        let result = self.lower_stage_body(stage);
        self.in_progress.remove(&index);
        let result = result?;
        self.done.insert(index, result.clone());
        Ok(result)
    }

    fn lower_stage_body(&mut self, stage: &'a Stage) -> Result<StageResult, FrontendError> {
        let mut st = self.base_state(stage)?;
        let triggers = std::mem::take(&mut st.image.config.on_build);
        let mut trigger_insts = Vec::new();
        for t in &triggers {
            let parsed = crate::parser::parse(t).map_err(|e| {
                FrontendError::at(
                    stage.from_node.span,
                    format!("ONBUILD trigger {t:?} of the base image: {}", e.message),
                )
            })?;
            for n in &parsed.children {
                let mut node = n.clone();
                node.span = stage.from_node.span;
                trigger_insts.push(Instruction::from_node(&node)?);
            }
        }
        st.total += trigger_insts.len();
        for inst in trigger_insts.iter().chain(stage.instructions.iter()) {
            self.dispatch(&mut st, inst)?;
        }
        self.stage_args.insert(stage.index, st.args.clone());
        if st.workdir_set {
            self.workdir_set.insert(stage.index);
        }
        Ok(StageResult {
            index: stage.index,
            name: st.name.clone(),
            root: st.root,
            image: st.image,
            platform: st.platform,
        })
    }

    fn base_state(&mut self, stage: &'a Stage) -> Result<StageState, FrontendError> {
        let node = &stage.from_node;
        let scope = self.global.clone();
        let declared = self.global_declared.clone();
        if self.outline.is_some() {
            let mut read = self.reads(&stage.from.base, &scope);
            if let Some(p) = &stage.from.platform {
                read.extend(self.reads(p, &scope));
            }
            if let Some(c) = &mut self.outline {
                c.stage_from_reads(stage.index, read);
            }
        }
        let base = self.expand(
            &stage.from.base,
            &scope,
            &declared,
            node,
            "UndefinedArgInFrom",
        )?;
        if base.is_empty() {
            return Err(FrontendError::at(
                node.span,
                format!("FROM {:?} expands to an empty image name", stage.from.base),
            ));
        }
        let platform = match &stage.from.platform {
            Some(p) => {
                let v = self.expand(p, &scope, &declared, node, "UndefinedArgInFrom")?;
                v.parse::<Platform>()
                    .map_err(|e| FrontendError::at(node.span, format!("FROM --platform: {e}")))?
            }
            None => self.target_platform.clone(),
        };
        let ignore_cache = self.opts.no_cache
            || stage.name.as_ref().is_some_and(|n| {
                self.opts
                    .no_cache_filter
                    .iter()
                    .any(|f| f.eq_ignore_ascii_case(n))
            });
        let name = stage.display_name();
        // As BuildKit names steps (its testStepNames): with several stages every step carries its stage's name,
        // unnamed ones `stage-N`; a single-stage Dockerfile's do not.
        let prefix = if self.stages.stages.len() == 1 {
            String::new()
        } else {
            format!("{name} ")
        };
        let mut st = StageState {
            index: stage.index,
            name,
            prefix,
            root: None,
            image: Image::default(),
            platform: platform.clone(),
            args: Vec::new(),
            cmd_set: false,
            workdir_set: false,
            step: 0,
            // BuildKit's cmdTotal: the ADD, COPY, RUN and WORKDIR instructions (the others change only the config);
            // the FROM counts only where it makes a step (an image or a named context): `FROM scratch` and `FROM
            // <stage>` are no step of their own.
            total: stage
                .instructions
                .iter()
                .filter(|i| {
                    matches!(
                        i.command,
                        Command::Add(_) | Command::Copy(_) | Command::Run(_) | Command::Workdir(_)
                    )
                })
                .count(),
            ignore_cache,
            scope_cache: Default::default(),
            env_index: None,
        };
        let from_text = format!("FROM {base}");
        if let Some(ctx) = self.opts.build_contexts.get(&base).cloned() {
            st.total += 1;
            let meta = st.describe(&from_text);
            let (root, image) = self.named_context_source(&base, &ctx, &platform, meta, node)?;
            st.root = root;
            st.image = image;
        } else if let Some(dep) = self.base_stage(&base, stage.index) {
            if let Some(c) = &mut self.outline {
                c.base(stage.index, dep);
            }
            let r = self.lower_stage(dep)?;
            st.root = r.root;
            st.image = r.image;
            st.platform = r.platform;
            st.args = self.stage_args.get(&dep).cloned().unwrap_or_default();
            st.workdir_set = self.workdir_set.contains(&dep);
        } else if base == "scratch" {
            // Only the lower-case word: `FROM SCRATCH` is an image name, as BuildKit compares it.
            st.image = empty_image(&platform);
        } else {
            if let Err(e) = normalize_reference(&base) {
                // BuildKit's wording: `FROM Foo` after `AS Foo` is an image reference, and an invalid one.
                return Err(FrontendError::at(
                    node.span,
                    format!("failed to parse stage name {base:?}: {e}"),
                ));
            }
            st.total += 1;
            let meta = st.describe(&from_text);
            let (root, image) = self.image_source(&base, &platform, meta, node)?;
            st.root = Some(root);
            st.image = image;
        }
        st.image.architecture = st.platform.architecture.clone();
        st.image.os = st.platform.os.clone();
        st.image.variant = st.platform.variant.clone();
        Ok(st)
    }

    /// An image source vertex and the image's config (empty when the resolver does not know it).
    pub fn image_source(
        &mut self,
        reference: &str,
        platform: &Platform,
        meta: VertexMeta,
        node: &Node,
    ) -> Result<(VertexId, Image), FrontendError> {
        let normalized = normalize_reference(reference).map_err(|e| {
            FrontendError::at(
                node.span,
                format!("invalid image reference {reference:?}: {e}"),
            )
        })?;
        let resolved = self.resolver.resolve(&normalized, platform).map_err(|e| {
            FrontendError::at(node.span, format!("cannot resolve image {normalized}: {e}"))
        })?;
        let (pinned, image) = match resolved {
            Some(r) => {
                self.findings.extend(base_image_platform(
                    reference, platform, &r.image, node.span,
                ));
                // Pinned to the platform's manifest, even when the Dockerfile names an index digest.
                let pinned = match &r.digest {
                    Some(d) => {
                        let name = normalized.split('@').next().unwrap_or(&normalized);
                        format!("{name}@{d}")
                    }
                    None => normalized.clone(),
                };
                (pinned, r.image)
            }
            None => (normalized.clone(), Image::default()),
        };
        let op = Op::Source(SourceOp::Image(ImageSource {
            reference: pinned,
            platform: platform.clone(),
            resolve_mode: if self.opts.pull {
                ResolveMode::ForcePull
            } else {
                ResolveMode::Default
            },
        }));
        Ok((self.def.add(op, vec![], meta), image))
    }

    fn named_context_source(
        &mut self,
        name: &str,
        ctx: &NamedContext,
        platform: &Platform,
        meta: VertexMeta,
        node: &Node,
    ) -> Result<(Option<VertexId>, Image), FrontendError> {
        match ctx {
            // BuildKit's dockerui named contexts: `docker-image://scratch` is the empty filesystem, no image.
            NamedContext::Image(r) if r == "scratch" => Ok((None, empty_image(platform))),
            NamedContext::Image(r) => {
                let (v, img) = self.image_source(r, platform, meta, node)?;
                Ok((Some(v), img))
            }
            NamedContext::Local(_) => {
                let op = Op::Source(SourceOp::Local(LocalSource {
                    name: name.to_string(),
                    include_patterns: vec![],
                    exclude_patterns: vec![],
                    follow_paths: vec![],
                }));
                Ok((Some(self.def.add(op, vec![], meta)), empty_image(platform)))
            }
            NamedContext::OciLayout { path, reference } => {
                let op = Op::Source(SourceOp::OciLayout(OciLayoutSource {
                    path: path.clone(),
                    reference: reference.clone(),
                    platform: platform.clone(),
                }));
                Ok((Some(self.def.add(op, vec![], meta)), Image::default()))
            }
        }
    }

    /// The main build context as a source vertex (shared by every COPY and bind mount).
    pub fn context_source(&mut self) -> VertexId {
        let op = Op::Source(SourceOp::Local(LocalSource {
            name: "context".to_string(),
            include_patterns: vec![],
            exclude_patterns: self.opts.ignore_patterns.clone(),
            follow_paths: vec![],
        }));
        let meta = VertexMeta {
            description: "[internal] load build context".to_string(),
            ..Default::default()
        };
        self.def.add(op, vec![], meta)
    }

    /// A filesystem holding one inline document (a heredoc) at `/<name>`: what COPY heredocs copy from and a
    /// RUN heredoc with a shebang is mounted from.
    pub fn inline_document(&mut self, name: &str, data: String, mode: u32) -> VertexId {
        let file = Op::File(FileOp {
            base: None,
            actions: vec![llb::FileAction::Mkfile {
                path: format!("/{name}"),
                mode,
                data,
                chown: None,
            }],
        });
        let meta = VertexMeta {
            description: "[internal] preparing inline document".to_string(),
            ..Default::default()
        };
        self.def.add(file, vec![], meta)
    }

    /// An empty filesystem, for copies out of scratch stages.
    pub fn scratch(&mut self) -> VertexId {
        let op = Op::File(FileOp {
            base: None,
            actions: vec![],
        });
        self.def.add(op, vec![], VertexMeta::default())
    }

    /// What `--from=NAME` (COPY, RUN --mount) names, seen from `st`: a named context, an earlier stage, or an image.
    pub fn source_named(
        &mut self,
        name: &str,
        st: &StageState,
        node: &Node,
    ) -> Result<VertexId, FrontendError> {
        if let Some(ctx) = self.opts.build_contexts.get(name).cloned() {
            let meta = VertexMeta {
                description: format!("[context {name}] load"),
                ..Default::default()
            };
            let (root, _) = self.named_context_source(name, &ctx, &st.platform, meta, node)?;
            return Ok(match root {
                Some(r) => r,
                None => self.scratch(),
            });
        }
        if let Some(dep) = self.stage_ref(name, st.index, node)? {
            if let Some(c) = &mut self.outline {
                c.dep(st.index, dep);
            }
            let r = self.lower_stage(dep)?;
            return Ok(match r.root {
                Some(r) => r,
                None => self.scratch(),
            });
        }
        // A stage defined further down is no image of that name: BuildKit refuses it (testOutOfOrderStage).
        if let Some(later) = self.stages.find(name).filter(|s| s.index >= st.index) {
            let current = self.stages.stages[st.index].display_name();
            return Err(FrontendError::at(
                node.span,
                format!(
                    "cannot copy from stage {:?}, it needs to be defined before current stage {current:?}",
                    later.display_name()
                ),
            ));
        }
        let meta = VertexMeta {
            description: format!("FROM {name}"),
            ..Default::default()
        };
        let platform = st.platform.clone();
        Ok(self.image_source(name, &platform, meta, node)?.0)
    }
}

/// The config of an image built FROM scratch: Docker's default PATH and `/` as the working directory, as
/// BuildKit's empty image has (its testDockerfileScratchConfig wants a working directory set).
pub(super) fn empty_image(platform: &Platform) -> Image {
    Image {
        architecture: platform.architecture.clone(),
        os: platform.os.clone(),
        variant: platform.variant.clone(),
        config: ContainerConfig {
            env: vec![format!("PATH={DEFAULT_PATH}")],
            working_dir: "/".to_string(),
            ..Default::default()
        },
        ..Default::default()
    }
}

fn is_env_builtin(_name: &str) -> bool {
    false
}

/// BuildKit's messages, with its suggestion: for a FROM, among the declared global ARGs and the values in scope;
/// elsewhere among the names with a value (the stage's ENV and valued ARGs).
fn undefined_message(rule: &str, name: &str, scope: &Scope, declared: &BTreeSet<String>) -> String {
    let keys = crate::shell::Env::keys(scope);
    match rule {
        "UndefinedArgInFrom" => {
            let mut options: BTreeSet<&str> = declared.iter().map(String::as_str).collect();
            options.extend(keys.iter().map(String::as_str));
            let hint = crate::suggest::search(name, options)
                .map(|s| format!(" (did you mean {s}?)"))
                .unwrap_or_default();
            format!("FROM argument '{name}' is not declared{hint}")
        }
        _ => {
            let hint = crate::suggest::search(name, keys.iter().map(String::as_str))
                .map(|s| format!(" (did you mean ${s}?)"))
                .unwrap_or_default();
            format!("Usage of undefined variable '${name}'{hint}")
        }
    }
}

/// InvalidBaseImagePlatform: the resolver's config for base image `image` is for another OS or architecture
/// than the build asked for (BuildKit's validateBaseImagePlatform). It lives with lowering, not with the other
/// checks, because only a FROM lowered against a resolver has a config to judge: `kiln check` and `kiln build`
/// judge the images kiln's store holds. A config that names no architecture is not judged.
fn base_image_platform(
    image: &str,
    expected: &Platform,
    actual: &Image,
    span: crate::parser::Span,
) -> Option<Finding> {
    if actual.architecture.is_empty()
        || (actual.os == expected.os && actual.architecture == expected.architecture)
    {
        return None;
    }
    let written = match &actual.variant {
        Some(v) => format!("{}/{}/{v}", actual.os, actual.architecture),
        None => format!("{}/{}", actual.os, actual.architecture),
    };
    let actual = written
        .parse::<Platform>()
        .map_or(written, |p| p.to_string());
    Some(Finding::new(
        "InvalidBaseImagePlatform",
        span,
        format!("Base image {image} was pulled with platform \"{actual}\", expected \"{expected}\" for current build"),
    ))
}

/// Docker's reference normalisation (`python` → `docker.io/library/python:latest`); it lives in `oci`, beside the
/// registry client that resolves the names it makes.
pub use oci::reference::normalize as normalize_reference;

#[cfg(test)]
mod tests {
    use super::normalize_reference as n;

    #[test]
    fn references_normalise_like_docker() {
        assert_eq!(n("python").unwrap(), "docker.io/library/python:latest");
        assert_eq!(
            n("python:3.12-slim").unwrap(),
            "docker.io/library/python:3.12-slim"
        );
        assert_eq!(n("me/app").unwrap(), "docker.io/me/app:latest");
        assert_eq!(
            n("localhost:5000/app").unwrap(),
            "localhost:5000/app:latest"
        );
        assert_eq!(n("ghcr.io/o/r:v1").unwrap(), "ghcr.io/o/r:v1");
        let d = format!("sha256:{}", "a".repeat(64));
        assert_eq!(
            n(&format!("alpine@{d}")).unwrap(),
            format!("docker.io/library/alpine@{d}")
        );
        for bad in ["", "Upper", "a b", "x:", "x:-bad", "alpine@sha256:zz", "/x"] {
            assert!(n(bad).is_err(), "{bad}");
        }
    }
}
