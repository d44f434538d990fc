//! RUN: an exec op over the stage's filesystem, with its mounts, environment, user and network; heredoc
//! commands handled as BuildKit does (a lone heredoc runs as the script, one with a shebang as a file).

use llb::{CacheSharing, ExecOp, Mount, MountKind, NetworkMode, Op, SecurityMode, VertexId};

use std::collections::BTreeMap;

use super::args::is_proxy_arg;
use super::history::{history, shell_of};
use super::paths;
use super::stage::{Lowerer, StageState, DEFAULT_PATH};
use crate::error::FrontendError;
use crate::instructions::{mount_spec, mounts::MountType, RunCommand};
use crate::parser::{chomp_heredoc, Heredoc, Node};
use crate::subrequests::outline::MountKind as OutlineMount;

/// Whether the RUN command line is exactly the first heredoc's marker (`<<EOF`, `<<-'EOF'`, ...).
fn is_lone_heredoc(cmd: &str, h: &Heredoc) -> bool {
    let Some(rest) = cmd.trim().strip_prefix("<<") else {
        return false;
    };
    let rest = rest.strip_prefix('-').unwrap_or(rest);
    let name: String = rest.chars().filter(|c| *c != '\'' && *c != '"').collect();
    name == h.name
}

/// A RUN step's name as BuildKit shows it: the instruction with the stage's ENV expanded, quotes and unset
/// variables kept as written, and the variable a secret mount sets (`env=`) shown as `****`, so a step name never
/// carries a secret (dockerfile2llb's `processCmdEnv` with `withSecretEnvMask`). Text the shell lexer cannot read is
/// kept as written, as BuildKit keeps it.
fn step_name(original: &str, env: &[String], secret_envs: &[String], escape: char) -> String {
    let mut vars: Vec<(String, String)> = env
        .iter()
        .map(|kv| match kv.split_once('=') {
            Some((k, v)) => (k.to_string(), v.to_string()),
            None => (kv.clone(), String::new()),
        })
        .collect();
    for name in secret_envs {
        vars.push((name.clone(), "****".to_string()));
    }
    let mut lexer = crate::shell::Lexer::new(escape);
    lexer.raw_quotes = true;
    lexer.skip_unset_env = true;
    lexer
        .process_word(original, &vars)
        .unwrap_or_else(|_| original.to_string())
}

/// Collects the inputs of an exec op while mounts are added, so mount indexes stay consistent.
struct Inputs(Vec<VertexId>);

impl Inputs {
    fn index_of(&mut self, v: VertexId) -> usize {
        if let Some(i) = self.0.iter().position(|x| *x == v) {
            return i;
        }
        self.0.push(v);
        self.0.len() - 1
    }
}

impl Lowerer<'_> {
    pub(super) fn dispatch_run(
        &mut self,
        st: &mut StageState,
        run: &RunCommand,
        node: &Node,
    ) -> Result<(), FrontendError> {
        let mut inputs = Inputs(Vec::new());
        let mut mounts = vec![Mount {
            input: st.root.map(|r| inputs.index_of(r)),
            selector: "/".to_string(),
            target: "/".to_string(),
            readonly: false,
            output: true,
            kind: MountKind::Bind,
        }];
        let mut args = run.cmd.args.clone();
        if run.cmd.prepend_shell && !run.heredocs.is_empty() {
            let cmdline = args.first().cloned().unwrap_or_default();
            let first = &run.heredocs[0];
            if run.heredocs.len() == 1 && is_lone_heredoc(&cmdline, first) {
                let data = if first.chomp {
                    chomp_heredoc(&first.content)
                } else {
                    first.content.clone()
                };
                if data.starts_with("#!") {
                    let v = self.inline_document(&first.name, data, 0o755);
                    mounts.push(Mount {
                        input: Some(inputs.index_of(v)),
                        selector: "/".to_string(),
                        target: "/dev/pipes/".to_string(),
                        readonly: true,
                        output: false,
                        kind: MountKind::Bind,
                    });
                    args = vec![format!("/dev/pipes/{}", first.name)];
                } else {
                    args = vec![data];
                }
            } else {
                let mut full = cmdline;
                for h in &run.heredocs {
                    full.push('\n');
                    full.push_str(&h.content);
                    full.push_str(&h.name);
                }
                args = vec![full];
            }
        }
        if run.cmd.prepend_shell {
            let mut with_shell = shell_of(st);
            with_shell.push(args.join(" "));
            args = with_shell;
        }
        for raw in &run.mounts {
            let m = self.lower_mount(st, raw, node, &mut inputs)?;
            mounts.push(m);
        }
        // `--shm-size`: a tmpfs of that size at /dev/shm, after the step's own mounts (BuildKit's dispatchRun).
        if let Some(size) = self.opts.shm_size.filter(|s| *s > 0) {
            mounts.push(Mount {
                input: None,
                selector: "/".to_string(),
                target: "/dev/shm".to_string(),
                readonly: false,
                output: false,
                kind: MountKind::Tmpfs { size: Some(size) },
            });
        }
        let env = self.run_env(st);
        let proxy_env = self.proxy_env(&env);
        let network = match run.network.as_deref() {
            Some("none") => NetworkMode::None,
            Some("host") => NetworkMode::Host,
            Some(_) => NetworkMode::Default,
            None => self.opts.network,
        };
        let security = match run.security.as_deref() {
            Some("insecure") => SecurityMode::Insecure,
            _ => SecurityMode::Sandbox,
        };
        let cwd = if st.image.config.working_dir.is_empty() {
            "/".to_string()
        } else {
            st.image.config.working_dir.clone()
        };
        // BuildKit's runCommandString: every build arg the stage declared, with the value the step's
        // environment gives it (an ENV of the same name wins), else its own value, else empty.
        let in_env = |k: &str| {
            env.iter().find_map(|kv| {
                kv.split_once('=')
                    .filter(|(name, _)| *name == k)
                    .map(|(_, v)| v.to_string())
            })
        };
        let used: Vec<String> = st
            .args
            .iter()
            .filter(|(k, _)| !is_proxy_arg(k))
            .map(|(k, v)| {
                let v = in_env(k).or_else(|| v.clone()).unwrap_or_default();
                format!("{k}={v}")
            })
            .collect();
        let secret_envs: Vec<String> = mounts
            .iter()
            .filter_map(|m| match &m.kind {
                MountKind::Secret { env: Some(e), .. } => Some(e.clone()),
                _ => None,
            })
            .collect();
        let name = step_name(
            node.original.trim(),
            &st.image.config.env,
            &secret_envs,
            self.df.directives.escape,
        );
        let op = Op::Exec(ExecOp {
            args: args.clone(),
            env,
            cwd,
            user: st.image.config.user.clone(),
            mounts,
            network,
            security,
            proxy_env,
            extra_hosts: self.opts.extra_hosts.clone(),
            ulimits: self.opts.ulimits.clone(),
            cdi_devices: run.devices.clone(),
        });
        let mut meta = st.describe(&name);
        meta.lines = Some((node.span.start_line, node.span.end_line));
        st.root = Some(self.def.add(op, inputs.0, meta));
        let prefix = if used.is_empty() {
            String::new()
        } else {
            format!("|{} {} ", used.len(), used.join(" "))
        };
        history(
            st,
            format!("RUN {prefix}{} # buildkit", args.join(" ")),
            false,
        );
        Ok(())
    }

    /// The proxy variables a RUN gets besides `env` (see `ExecOp::proxy_env`): each proxy build arg, which needs
    /// no declaration, under both its lower- and upper-case name as BuildKit sets them, unless `env` sets that
    /// name itself. A name given as a build arg in its own case keeps that value.
    fn proxy_env(&self, env: &[String]) -> Vec<String> {
        let has = |k: &str| {
            env.iter()
                .any(|kv| kv.split_once('=').map_or(kv.as_str(), |(a, _)| a) == k)
        };
        let mut out: BTreeMap<String, String> = BTreeMap::new();
        for (k, v) in &self.opts.build_args {
            if !is_proxy_arg(k) {
                continue;
            }
            for name in [k.to_ascii_lowercase(), k.to_ascii_uppercase()] {
                let exact = name == *k;
                if !has(&name) && (exact || !out.contains_key(&name)) {
                    out.insert(name, v.clone());
                }
            }
        }
        // The names exactly as given win over the other case's copy, whatever the order of the build args.
        for (k, v) in &self.opts.build_args {
            if is_proxy_arg(k) && !has(k) {
                out.insert(k.clone(), v.clone());
            }
        }
        out.into_iter().map(|(k, v)| format!("{k}={v}")).collect()
    }

    /// The environment of a RUN: the image's ENV (with Docker's default PATH when it has none), then the stage's
    /// ARGs that ENV does not override. Proxy build args come apart (`proxy_env`).
    fn run_env(&self, st: &StageState) -> Vec<String> {
        let mut env = st.image.config.env.clone();
        let has = |env: &[String], k: &str| {
            env.iter()
                .any(|kv| kv.split_once('=').map_or(kv.as_str(), |(a, _)| a) == k)
        };
        if !has(&env, "PATH") {
            env.push(format!("PATH={DEFAULT_PATH}"));
        }
        for (k, v) in &st.args {
            if let Some(v) = v {
                if !has(&env, k) {
                    env.push(format!("{k}={v}"));
                }
            }
        }
        env
    }

    fn lower_mount(
        &mut self,
        st: &StageState,
        raw: &str,
        node: &Node,
        inputs: &mut Inputs,
    ) -> Result<Mount, FrontendError> {
        // Every field's value is expanded before it is read (`type=$MNT_TYPE`, `uid=$UID`), as BuildKit does.
        let spec = mount_spec(node, raw, |v| self.expand_in(st, v, node))?;
        if let Some(c) = &mut self.outline {
            let kind = match spec.kind {
                MountType::Secret => Some(OutlineMount::Secret),
                MountType::Ssh => Some(OutlineMount::Ssh),
                _ => None,
            };
            if let (Some(kind), Some(id)) = (kind, &spec.id) {
                c.mount(st.index, kind, id, spec.required, node);
            }
        }
        let cwd = st.image.config.working_dir.clone();
        // A relative target is joined to the working directory, an empty one is the working directory itself
        // (a bind mount may leave it out); only `/` is refused, in BuildKit's words (dispatchRunMounts).
        let target = if spec.target.is_empty() && spec.kind != MountType::Bind {
            String::new()
        } else {
            paths::resolve(&cwd, &spec.target, false)
        };
        if target == "/" {
            return Err(FrontendError::at(
                node.span,
                format!("invalid mount target \"/\" (RUN --mount={raw})"),
            ));
        }
        let selector = paths::clean(&format!("/{}", spec.source.clone().unwrap_or_default()));
        let source_input =
            |me: &mut Self, inputs: &mut Inputs| -> Result<Option<usize>, FrontendError> {
                Ok(match &spec.from {
                    Some(f) => Some(inputs.index_of(me.source_named(f, st, node)?)),
                    None => None,
                })
            };
        let (input, kind) = match spec.kind {
            MountType::Bind => {
                let input = match source_input(self, inputs)? {
                    Some(i) => i,
                    None => {
                        let ctx = self.context_source();
                        inputs.index_of(ctx)
                    }
                };
                (Some(input), MountKind::Bind)
            }
            MountType::Cache => {
                let sharing = match spec.sharing.as_deref() {
                    Some("private") => CacheSharing::Private,
                    Some("locked") => CacheSharing::Locked,
                    _ => CacheSharing::Shared,
                };
                let input = source_input(self, inputs)?;
                let id = spec.id.clone().unwrap_or_else(|| target.clone());
                (
                    input,
                    MountKind::Cache {
                        id,
                        sharing,
                        uid: spec.uid.unwrap_or(0),
                        gid: spec.gid.unwrap_or(0),
                        mode: spec.mode.unwrap_or(0o755),
                        settings: spec.uid.is_some() || spec.gid.is_some() || spec.mode.is_some(),
                    },
                )
            }
            MountType::Tmpfs => (None, MountKind::Tmpfs { size: spec.size }),
            MountType::Secret => (
                None,
                MountKind::Secret {
                    id: spec.id.clone().unwrap_or_default(),
                    env: spec.env.clone(),
                    uid: spec.uid.unwrap_or(0),
                    gid: spec.gid.unwrap_or(0),
                    mode: spec.mode.unwrap_or(0o400),
                    required: spec.required,
                },
            ),
            MountType::Ssh => (
                None,
                MountKind::Ssh {
                    id: spec.id.clone().unwrap_or_else(|| "default".to_string()),
                    uid: spec.uid.unwrap_or(0),
                    gid: spec.gid.unwrap_or(0),
                    mode: spec.mode.unwrap_or(0o600),
                    required: spec.required,
                },
            ),
        };
        Ok(Mount {
            input,
            selector,
            target,
            readonly: spec.readonly,
            output: false,
            kind,
        })
    }
}

#[cfg(test)]
mod step_name_tests {
    use super::step_name;

    #[test]
    fn env_is_expanded_quotes_and_unset_variables_kept_secrets_masked() {
        let env = vec!["HOME=/root".to_string(), "TOKEN=plain".to_string()];
        assert_eq!(
            step_name(
                r#"RUN echo "$HOME" '$HOME' $UNSET ${TOKEN}"#,
                &env,
                &[],
                '\\'
            ),
            r#"RUN echo "/root" '$HOME' $UNSET plain"#
        );
        let secret = vec!["TOKEN".to_string()];
        assert_eq!(
            step_name(
                "RUN --mount=type=secret,id=t,env=TOKEN use $TOKEN",
                &env,
                &secret,
                '\\'
            ),
            "RUN --mount=type=secret,id=t,env=TOKEN use ****"
        );
        // What the lexer cannot read stays as written.
        assert_eq!(step_name("RUN echo ${", &env, &[], '\\'), "RUN echo ${");
    }
}
