//! One instruction at a time: each updates the stage's filesystem (new vertices) and/or its image config, and
//! records a history entry worded as BuildKit words it.

use llb::{FileAction, FileOp, Op};
use oci::Healthcheck;

use super::history::{go_healthcheck, go_quoted_list, history, shell_of};
use super::paths;
use super::stage::{Lowerer, StageState};
use crate::error::FrontendError;
use crate::finding::Finding;
use crate::instructions::{Command, HealthcheckCommand, Instruction};
use crate::parser::Node;

impl Lowerer<'_> {
    /// Expands `word` in the stage's scope, flagging undefined variables.
    pub(super) fn expand_in(
        &mut self,
        st: &StageState,
        word: &str,
        node: &Node,
    ) -> Result<String, FrontendError> {
        if !word.contains(['$', '\\', '\'', '"', '`']) {
            return Ok(word.to_string());
        }
        let cached = st.cached_scope();
        self.expand(word, &cached.0, &cached.1, node, "UndefinedVar")
    }

    pub(super) fn dispatch(
        &mut self,
        st: &mut StageState,
        inst: &Instruction,
    ) -> Result<(), FrontendError> {
        let node = &inst.node;
        match &inst.command {
            Command::From(_) => {
                return Err(FrontendError::at(
                    node.span,
                    "FROM inside a stage: this is a bug in stage splitting",
                ))
            }
            Command::Run(run) => self.dispatch_run(st, run, node)?,
            Command::Copy(c) => self.dispatch_copy(st, c, node)?,
            Command::Add(a) => self.dispatch_add(st, a, node)?,
            Command::Env(kvs) => {
                // Every key and value is expanded against the environment as it was before this ENV, then all
                // are set: BuildKit expands the whole instruction before dispatchEnv adds any pair, so after
                // `ENV a=one`, `ENV a=two b=$a` gives b=one.
                let mut pairs = Vec::with_capacity(kvs.len());
                for kv in kvs {
                    let k = self.expand_in(st, &kv.key, node)?;
                    let v = self.expand_in(st, &kv.value, node)?;
                    if k.is_empty() {
                        return Err(FrontendError::at(node.span, "ENV names can not be blank"));
                    }
                    pairs.push((k, v));
                }
                let mut parts = Vec::with_capacity(pairs.len());
                for (k, v) in pairs {
                    st.set_env(&k, &v);
                    parts.push(format!("{k}={v}"));
                }
                history(st, format!("ENV {}", parts.join(" ")), true);
            }
            Command::Label(kvs) => {
                let mut parts = Vec::new();
                for kv in kvs {
                    let k = self.expand_in(st, &kv.key, node)?;
                    let v = self.expand_in(st, &kv.value, node)?;
                    if k.is_empty() {
                        return Err(FrontendError::at(node.span, "LABEL names can not be blank"));
                    }
                    st.image.config.labels.insert(k.clone(), v.clone());
                    parts.push(format!("{k}={v}"));
                }
                history(st, format!("LABEL {}", parts.join(" ")), true);
            }
            Command::Maintainer(m) => {
                // The image's top-level author, no label (BuildKit's dispatchMaintainer).
                st.image.author = Some(m.clone());
                history(st, format!("MAINTAINER {m}"), true);
            }
            Command::Cmd(c) => {
                let args = self.command_args(st, &c.args, c.prepend_shell);
                history(st, format!("CMD {}", go_quoted_list(&args)), true);
                st.image.config.cmd = Some(args);
                st.cmd_set = true;
            }
            Command::Entrypoint(c) => {
                let args = self.command_args(st, &c.args, c.prepend_shell);
                history(st, format!("ENTRYPOINT {}", go_quoted_list(&args)), true);
                st.image.config.entrypoint = Some(args);
                if !st.cmd_set {
                    st.image.config.cmd = None;
                }
            }
            Command::Shell(s) => {
                st.image.config.shell = s.clone();
                history(st, format!("SHELL [{}]", s.join(" ")), true);
            }
            Command::Expose(ports) => {
                // BuildKit's parseExpose sorts the words as written (before expansion); dispatchExpose's
                // history lists this instruction's ports in that order, ranges spread, duplicates kept:
                // `EXPOSE 2375 5000 1234/udp` is `EXPOSE [1234/udp 2375/tcp 5000/tcp]` (testExportedHistory).
                let mut words = ports.clone();
                words.sort();
                let mut listed = Vec::new();
                for p in &words {
                    let cached = st.cached_scope();
                    for word in self.expand_words(p, &cached.0, node)? {
                        let spec = crate::ports::parse_port_spec(&word, node.span);
                        self.findings.extend(spec.findings);
                        for port in spec.ports.map_err(|e| FrontendError::at(node.span, e))? {
                            st.image
                                .config
                                .exposed_ports
                                .insert(port.clone(), Default::default());
                            listed.push(port);
                        }
                    }
                }
                history(st, format!("EXPOSE [{}]", listed.join(" ")), true);
            }
            Command::Volume(vols) => {
                let mut out = Vec::new();
                for v in vols {
                    let e = self.expand_in(st, v, node)?;
                    if e.trim().is_empty() {
                        return Err(FrontendError::at(
                            node.span,
                            "VOLUME specified can not be an empty string",
                        ));
                    }
                    st.image
                        .config
                        .volumes
                        .insert(e.clone(), Default::default());
                    out.push(e);
                }
                history(st, format!("VOLUME [{}]", out.join(" ")), true);
            }
            Command::User(u) => {
                let e = self.expand_in(st, u, node)?;
                st.image.config.user = e.clone();
                history(st, format!("USER {e}"), true);
            }
            Command::StopSignal(s) => {
                let e = self.expand_in(st, s, node)?;
                validate_signal(&e).map_err(|m| FrontendError::at(node.span, m))?;
                st.image.config.stop_signal = e.clone();
                history(st, format!("STOPSIGNAL {e}"), true);
            }
            Command::Workdir(w) => self.dispatch_workdir(st, w, node)?,
            Command::Arg(decls) => {
                let mut parts = Vec::new();
                for (position, d) in decls.iter().enumerate() {
                    let value = if let Some(v) = self.opts.build_args.get(&d.name) {
                        self.used_build_args.insert(d.name.clone());
                        Some(v.clone())
                    } else if let Some(def) = &d.default {
                        Some(self.expand_in(st, def, node)?)
                    } else {
                        self.global.value(&d.name).map(str::to_string)
                    };
                    if self.outline.is_some() {
                        // A bare ARG taking a global ARG's value keeps that ARG's description, as BuildKit's
                        // dispatchArg skips its own info then.
                        let inherited = d.default.is_none()
                            && !self.opts.build_args.contains_key(&d.name)
                            && value.is_some();
                        if let Some(c) = &mut self.outline {
                            c.stage_arg(st.index, d, position, node, value.as_deref(), inherited);
                        }
                    }
                    // A redeclared ARG keeps its place (BuildKit's testExportedHistoryFlattenArgs:
                    // `ARG foo=bar`, `ARG bar=123`, `ARG foo=bar2` give `RUN |2 foo=bar2 bar=123`). A bare
                    // `ARG NAME` with no value anywhere keeps the value NAME already has (one inherited from a base
                    // stage included): BuildKit's dispatchArg then sets nothing, and the old value stays in the
                    // environment.
                    match st.args.iter_mut().find(|(k, _)| k == &d.name) {
                        Some(slot) => {
                            if value.is_some() {
                                slot.1 = value.clone();
                            }
                        }
                        None => st.args.push((d.name.clone(), value.clone())),
                    }
                    st.invalidate_scope();
                    parts.push(match &value {
                        Some(v) => format!("{}={v}", d.name),
                        None => d.name.clone(),
                    });
                }
                history(st, format!("ARG {}", parts.join(" ")), true);
            }
            Command::Onbuild(expr) => {
                // BuildKit's dispatchOnbuild records the trigger and commits no history entry.
                st.image.config.on_build.push(expr.clone());
            }
            Command::Healthcheck(h) => {
                let hc = match h {
                    HealthcheckCommand::None => Healthcheck {
                        test: vec!["NONE".to_string()],
                        ..Default::default()
                    },
                    HealthcheckCommand::Check {
                        test,
                        interval,
                        timeout,
                        start_period,
                        start_interval,
                        retries,
                    } => Healthcheck {
                        test: test.clone(),
                        interval: *interval,
                        timeout: *timeout,
                        start_period: *start_period,
                        start_interval: *start_interval,
                        retries: *retries,
                    },
                };
                history(st, format!("HEALTHCHECK {}", go_healthcheck(&hc)), true);
                st.image.config.healthcheck = Some(hc);
            }
        }
        Ok(())
    }

    /// CMD/ENTRYPOINT argv: shell form goes through the stage's SHELL (default `/bin/sh -c`).
    fn command_args(&self, st: &StageState, args: &[String], prepend_shell: bool) -> Vec<String> {
        if prepend_shell {
            let mut v = shell_of(st);
            v.push(args.join(" "));
            v
        } else {
            args.to_vec()
        }
    }

    fn dispatch_workdir(
        &mut self,
        st: &mut StageState,
        w: &str,
        node: &Node,
    ) -> Result<(), FrontendError> {
        let e = self.expand_in(st, w, node)?;
        if !e.starts_with('/') && !st.workdir_set {
            self.findings.push(Finding::new(
                "WorkdirRelativePath",
                node.span,
                format!("Relative workdir \"{e}\" can have unexpected results if the base image changes"),
            ));
        }
        let wd = paths::resolve(&st.image.config.working_dir, &e, false);
        st.image.config.working_dir = wd.clone();
        st.workdir_set = true;
        if wd == "/" {
            // Nothing to make: no step and no layer, as in BuildKit (its testExportedHistory).
            history(st, format!("WORKDIR {wd}"), true);
            return Ok(());
        }
        let chown = if st.image.config.user.is_empty() {
            None
        } else {
            Some(super::copy::parse_chown(&st.image.config.user))
        };
        let meta = st.describe(&format!("WORKDIR {wd}"));
        let inputs: Vec<_> = st.root.into_iter().collect();
        let op = Op::File(FileOp {
            base: st.root.map(|_| 0),
            actions: vec![FileAction::Mkdir {
                path: wd.clone(),
                mode: 0o755,
                make_parents: true,
                chown,
            }],
        });
        st.root = Some(self.def.add(op, inputs, meta));
        history(st, format!("WORKDIR {wd}"), false);
        Ok(())
    }
}

fn validate_signal(s: &str) -> Result<(), String> {
    if s.parse::<u32>().is_ok_and(|n| n > 0 && n < 65) {
        return Ok(());
    }
    let name = s.strip_prefix("SIG").unwrap_or(s);
    const SIGNALS: [&str; 33] = [
        "ABRT", "ALRM", "BUS", "CHLD", "CLD", "CONT", "FPE", "HUP", "ILL", "INT", "IO", "IOT",
        "KILL", "PIPE", "POLL", "PROF", "PWR", "QUIT", "SEGV", "STKFLT", "STOP", "SYS", "TERM",
        "TRAP", "TSTP", "TTIN", "TTOU", "URG", "USR1", "USR2", "VTALRM", "WINCH", "XCPU",
    ];
    let rt = name
        .strip_prefix("RTMIN")
        .or_else(|| name.strip_prefix("RTMAX"))
        .is_some_and(|r| r.is_empty() || r.trim_start_matches(['+', '-']).parse::<u32>().is_ok());
    if SIGNALS.contains(&name) || name == "XFSZ" || rt {
        Ok(())
    } else {
        Err(format!(
            "STOPSIGNAL: invalid signal {s:?} (e.g. SIGTERM, SIGQUIT or a number)"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signals() {
        for ok in ["SIGTERM", "TERM", "9", "SIGRTMIN+3"] {
            assert!(validate_signal(ok).is_ok(), "{ok}");
        }
        for bad in ["SIGNOPE", "0", "99", ""] {
            assert!(validate_signal(bad).is_err(), "{bad}");
        }
    }
}
