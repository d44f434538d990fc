//! Typed commands, one per Dockerfile instruction, and their construction from parser nodes.

use super::duration::parse_go_duration;
use super::flags::{FlagKind, Flags};
use super::mounts::{parse_mount, MountSpec};
use crate::error::FrontendError;
use crate::parser::{Heredoc, Node, Span};

/// A key and its raw (unexpanded) value, from ENV, LABEL or ARG.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyValue {
    /// Key, unexpanded.
    pub key: String,
    /// Value, unexpanded, quotes still in place.
    pub value: String,
}

/// One name declared by ARG, with its optional default (raw, unexpanded).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArgDecl {
    /// Name.
    pub name: String,
    /// Default value, if `name=value` was written.
    pub default: Option<String>,
}

/// The command of RUN, CMD or ENTRYPOINT: exec form (`prepend_shell == false`) or shell form.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CmdLine {
    /// The JSON elements, or the one shell command string.
    pub args: Vec<String>,
    /// Shell form: run through the stage's SHELL.
    pub prepend_shell: bool,
}

/// A file given inline by a heredoc (`COPY <<EOF /dest`) or a source path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SourceFile {
    /// A path or URL, unexpanded.
    Path(String),
    /// An inline document.
    Heredoc(Heredoc),
}

/// FROM.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FromCommand {
    /// Image reference or stage name, unexpanded.
    pub base: String,
    /// `AS name`, lower-cased.
    pub stage_name: Option<String>,
    /// `AS name` as written (for StageNameCasing).
    pub stage_name_as_written: Option<String>,
    /// `AS` as written (for FromAsCasing).
    pub as_keyword: Option<String>,
    /// `--platform`, unexpanded.
    pub platform: Option<String>,
}

/// RUN.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunCommand {
    /// The command.
    pub cmd: CmdLine,
    /// Heredoc bodies of the command line.
    pub heredocs: Vec<Heredoc>,
    /// `--mount` values, raw (expanded and parsed again at lowering).
    pub mounts: Vec<String>,
    /// `--network`.
    pub network: Option<String>,
    /// `--security`.
    pub security: Option<String>,
    /// `--device`: CDI devices the step asks for.
    pub devices: Vec<llb::CdiDevice>,
}

/// COPY.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CopyCommand {
    /// Sources.
    pub sources: Vec<SourceFile>,
    /// Destination, unexpanded.
    pub dest: String,
    /// `--from`.
    pub from: Option<String>,
    /// `--chown`.
    pub chown: Option<String>,
    /// `--chmod`.
    pub chmod: Option<String>,
    /// `--link`.
    pub link: bool,
    /// `--parents`.
    pub parents: bool,
    /// `--exclude`.
    pub exclude: Vec<String>,
}

/// ADD.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AddCommand {
    /// Sources: paths, URLs, git URLs or heredocs.
    pub sources: Vec<SourceFile>,
    /// Destination, unexpanded.
    pub dest: String,
    /// `--chown`.
    pub chown: Option<String>,
    /// `--chmod`.
    pub chmod: Option<String>,
    /// `--link`.
    pub link: bool,
    /// `--checksum`.
    pub checksum: Option<String>,
    /// `--keep-git-dir`.
    pub keep_git_dir: bool,
    /// `--exclude`.
    pub exclude: Vec<String>,
    /// `--unpack`: `None` means the default (unpack local archives, not remote ones).
    pub unpack: Option<bool>,
}

/// HEALTHCHECK.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HealthcheckCommand {
    /// `HEALTHCHECK NONE`: disable the base image's check.
    None,
    /// `HEALTHCHECK [flags] CMD ...`.
    Check {
        /// `["CMD", ...]` or `["CMD-SHELL", cmd]`.
        test: Vec<String>,
        /// Nanoseconds; 0 = inherit.
        interval: i64,
        /// Nanoseconds.
        timeout: i64,
        /// Nanoseconds.
        start_period: i64,
        /// Nanoseconds.
        start_interval: i64,
        /// Retries.
        retries: i64,
    },
}

/// One typed instruction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// FROM.
    From(FromCommand),
    /// RUN.
    Run(RunCommand),
    /// CMD.
    Cmd(CmdLine),
    /// ENTRYPOINT.
    Entrypoint(CmdLine),
    /// SHELL.
    Shell(Vec<String>),
    /// LABEL.
    Label(Vec<KeyValue>),
    /// MAINTAINER (deprecated; becomes a label).
    Maintainer(String),
    /// EXPOSE, unexpanded ports.
    Expose(Vec<String>),
    /// ENV.
    Env(Vec<KeyValue>),
    /// ADD.
    Add(AddCommand),
    /// COPY.
    Copy(CopyCommand),
    /// VOLUME.
    Volume(Vec<String>),
    /// USER.
    User(String),
    /// WORKDIR.
    Workdir(String),
    /// ARG.
    Arg(Vec<ArgDecl>),
    /// ONBUILD: the trigger's text, stored in the image for later builds.
    Onbuild(String),
    /// STOPSIGNAL.
    StopSignal(String),
    /// HEALTHCHECK.
    Healthcheck(HealthcheckCommand),
}

/// A command with the node it came from (for spans, original text and checks).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Instruction {
    /// The typed command.
    pub command: Command,
    /// The parser node.
    pub node: Node,
}

fn err(node: &Node, msg: impl Into<String>) -> FrontendError {
    FrontendError::at(node.span, msg)
}

fn flags(node: &Node, declared: &[(&str, FlagKind)]) -> Result<Flags, FrontendError> {
    Flags::parse(&node.flags, declared).map_err(|m| {
        let mut span: Span = node.span;
        span.start_col += node.keyword_as_written.chars().count() + 1;
        FrontendError::at(span, format!("{} {}", node.keyword.to_uppercase(), m))
    })
}

fn exactly_one(node: &Node) -> Result<String, FrontendError> {
    match node.args.as_slice() {
        [one] if !one.trim().is_empty() => Ok(one.clone()),
        _ => Err(err(
            node,
            format!(
                "{} requires exactly one argument",
                node.keyword.to_uppercase()
            ),
        )),
    }
}

fn at_least_one(node: &Node) -> Result<(), FrontendError> {
    if node.args.is_empty() || node.args.iter().all(|a| a.is_empty()) {
        return Err(err(
            node,
            format!(
                "{} requires at least one argument",
                node.keyword.to_uppercase()
            ),
        ));
    }
    Ok(())
}

fn no_flags(node: &Node) -> Result<(), FrontendError> {
    flags(node, &[]).map(|_| ())
}

fn key_values(node: &Node) -> Result<Vec<KeyValue>, FrontendError> {
    at_least_one(node)?;
    if !node.args.len().is_multiple_of(3) {
        return Err(err(
            node,
            format!(
                "{} has too many arguments: expected key=value pairs",
                node.keyword.to_uppercase()
            ),
        ));
    }
    node.args
        .chunks(3)
        .map(|c| {
            if c[0].is_empty() {
                return Err(err(
                    node,
                    format!("{} names can not be blank", node.keyword.to_uppercase()),
                ));
            }
            Ok(KeyValue {
                key: c[0].clone(),
                value: c[1].clone(),
            })
        })
        .collect()
}

fn cmd_line(node: &Node) -> CmdLine {
    CmdLine {
        args: node.args.clone(),
        prepend_shell: !node.json,
    }
}

fn sources(node: &Node, mut args: Vec<String>) -> Result<(Vec<SourceFile>, String), FrontendError> {
    let name = node.keyword.to_uppercase();
    if args.len() < 2 {
        return Err(err(
            node,
            format!("{name} requires at least two arguments, but only {} provided: the destination could not be determined", args.len()),
        ));
    }
    let dest = args.pop().unwrap_or_default();
    if heredoc_for(node, &dest).is_some() {
        return Err(err(
            node,
            format!("{name} cannot take a heredoc as its destination"),
        ));
    }
    let sources = args
        .into_iter()
        .map(|a| match heredoc_for(node, &a) {
            Some(h) => SourceFile::Heredoc(h.clone()),
            None => SourceFile::Path(a),
        })
        .collect();
    Ok((sources, dest))
}

/// The heredoc a source word like `<<EOF` or `<<-"EOF"` refers to, if any.
fn heredoc_for<'a>(node: &'a Node, word: &str) -> Option<&'a Heredoc> {
    if node.json {
        return None;
    }
    let rest = word.strip_prefix("<<")?;
    let rest = rest.strip_prefix('-').unwrap_or(rest);
    let name: String = rest.chars().filter(|c| *c != '\'' && *c != '"').collect();
    node.heredocs.iter().find(|h| h.name == name)
}

fn healthcheck(node: &Node) -> Result<HealthcheckCommand, FrontendError> {
    let f = flags(
        node,
        &[
            ("interval", FlagKind::String),
            ("timeout", FlagKind::String),
            ("start-period", FlagKind::String),
            ("start-interval", FlagKind::String),
            ("retries", FlagKind::String),
        ],
    )?;
    let Some(kind) = node.args.first() else {
        return Err(err(node, "HEALTHCHECK requires an argument: NONE or CMD"));
    };
    match kind.to_ascii_uppercase().as_str() {
        "NONE" => {
            if node.args.len() > 1 {
                return Err(err(node, "HEALTHCHECK NONE takes no arguments"));
            }
            if !f.used().is_empty() {
                return Err(err(node, "HEALTHCHECK NONE takes no flags"));
            }
            Ok(HealthcheckCommand::None)
        }
        "CMD" => {
            let rest = &node.args[1..];
            if rest.is_empty() || rest.iter().all(|a| a.is_empty()) {
                return Err(err(node, "HEALTHCHECK CMD requires a command"));
            }
            let test = if node.json {
                std::iter::once("CMD".to_string())
                    .chain(rest.iter().cloned())
                    .collect()
            } else {
                vec!["CMD-SHELL".to_string(), rest.join(" ")]
            };
            let duration = |name: &str| -> Result<i64, FrontendError> {
                let Some(v) = f.string(name) else {
                    return Ok(0);
                };
                let d = parse_go_duration(v)
                    .map_err(|e| err(node, format!("HEALTHCHECK --{name}: {e}")))?;
                if d != 0 && d < 1_000_000 {
                    return Err(err(
                        node,
                        format!("HEALTHCHECK --{name} cannot be less than 1ms"),
                    ));
                }
                if d < 0 {
                    return Err(err(
                        node,
                        format!("HEALTHCHECK --{name} cannot be negative"),
                    ));
                }
                Ok(d)
            };
            let retries = match f.string("retries") {
                None => 0,
                Some(v) => {
                    let r: i64 = v.parse().map_err(|_| {
                        err(node, format!("HEALTHCHECK --retries: invalid number {v:?}"))
                    })?;
                    if r < 0 {
                        return Err(err(node, "HEALTHCHECK --retries cannot be negative"));
                    }
                    r
                }
            };
            Ok(HealthcheckCommand::Check {
                test,
                interval: duration("interval")?,
                timeout: duration("timeout")?,
                start_period: duration("start-period")?,
                start_interval: duration("start-interval")?,
                retries,
            })
        }
        other => Err(err(
            node,
            format!("unknown type {other:?} in HEALTHCHECK (try CMD)"),
        )),
    }
}

fn from_command(node: &Node) -> Result<FromCommand, FrontendError> {
    let f = flags(node, &[("platform", FlagKind::String)])?;
    let (base, stage, as_kw) = match node.args.as_slice() {
        [base] => (base.clone(), None, None),
        [base, as_kw, name] if as_kw.eq_ignore_ascii_case("as") => {
            (base.clone(), Some(name.clone()), Some(as_kw.clone()))
        }
        _ => {
            return Err(err(
                node,
                "FROM requires either one or three arguments: FROM <image> [AS <name>]",
            ))
        }
    };
    if let Some(name) = &stage {
        let lower = name.to_ascii_lowercase();
        let mut chars = lower.chars();
        let valid = chars.next().is_some_and(|c| c.is_ascii_lowercase())
            && chars.all(|c| {
                c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '-' | '_' | '.')
            });
        if !valid {
            return Err(err(node, format!("invalid name for build stage: {name:?}, name can't start with a number or contain symbols")));
        }
    }
    Ok(FromCommand {
        base,
        stage_name: stage.as_ref().map(|s| s.to_ascii_lowercase()),
        stage_name_as_written: stage,
        as_keyword: as_kw,
        platform: f.string("platform").map(str::to_string),
    })
}

impl Instruction {
    /// Checks `node` and builds its typed command.
    pub fn from_node(node: &Node) -> Result<Instruction, FrontendError> {
        let command = match node.keyword.as_str() {
            "from" => Command::From(from_command(node)?),
            "run" => {
                let f = flags(
                    node,
                    &[
                        ("mount", FlagKind::List),
                        ("network", FlagKind::String),
                        ("security", FlagKind::String),
                        ("device", FlagKind::List),
                    ],
                )?;
                let devices = f
                    .list("device")
                    .iter()
                    .map(|d| {
                        super::device::parse_device(d)
                            .map_err(|e| err(node, format!("RUN --device={d}: {e}")))
                    })
                    .collect::<Result<Vec<_>, _>>()?;
                for m in f.list("mount") {
                    check_mount(&m).map_err(|e| err(node, format!("RUN --mount={m}: {e}")))?;
                }
                if let Some(n) = f.string("network") {
                    if !matches!(n, "default" | "none" | "host") {
                        return Err(err(
                            node,
                            format!("RUN --network={n}: valid values are default, none, host"),
                        ));
                    }
                }
                if let Some(s) = f.string("security") {
                    if !matches!(s, "sandbox" | "insecure") {
                        return Err(err(
                            node,
                            format!("RUN --security={s}: valid values are sandbox, insecure"),
                        ));
                    }
                }
                if node.args.is_empty()
                    || (!node.json && node.args.iter().all(|a| a.trim().is_empty()))
                {
                    return Err(err(node, "RUN requires a command"));
                }
                Command::Run(RunCommand {
                    cmd: cmd_line(node),
                    heredocs: node.heredocs.clone(),
                    mounts: f.list("mount"),
                    network: f.string("network").map(str::to_string),
                    security: f.string("security").map(str::to_string),
                    devices,
                })
            }
            "cmd" => {
                no_flags(node)?;
                Command::Cmd(cmd_line(node))
            }
            "entrypoint" => {
                no_flags(node)?;
                Command::Entrypoint(cmd_line(node))
            }
            "shell" => {
                no_flags(node)?;
                if !node.json {
                    return Err(err(node, "SHELL requires the arguments to be in JSON form, e.g. SHELL [\"/bin/bash\", \"-c\"]"));
                }
                if node.args.is_empty() {
                    return Err(err(node, "SHELL requires at least one argument"));
                }
                Command::Shell(node.args.clone())
            }
            "label" => {
                no_flags(node)?;
                Command::Label(key_values(node)?)
            }
            "env" => {
                no_flags(node)?;
                Command::Env(key_values(node)?)
            }
            "maintainer" => {
                no_flags(node)?;
                Command::Maintainer(exactly_one(node)?)
            }
            "expose" => {
                no_flags(node)?;
                at_least_one(node)?;
                Command::Expose(node.args.clone())
            }
            "volume" => {
                no_flags(node)?;
                at_least_one(node)?;
                if node.args.iter().any(|v| v.trim().is_empty()) {
                    return Err(err(node, "VOLUME specified can not be an empty string"));
                }
                Command::Volume(node.args.clone())
            }
            "user" => {
                no_flags(node)?;
                Command::User(exactly_one(node)?)
            }
            "workdir" => {
                no_flags(node)?;
                Command::Workdir(exactly_one(node)?)
            }
            "stopsignal" => {
                no_flags(node)?;
                Command::StopSignal(exactly_one(node)?)
            }
            "arg" => {
                no_flags(node)?;
                at_least_one(node)?;
                let decls = node
                    .args
                    .iter()
                    .map(|a| {
                        let (name, default) = match a.split_once('=') {
                            Some((n, v)) => (n.to_string(), Some(v.to_string())),
                            None => (a.clone(), None),
                        };
                        if name.is_empty() {
                            return Err(err(node, "ARG names can not be blank"));
                        }
                        Ok(ArgDecl { name, default })
                    })
                    .collect::<Result<Vec<_>, _>>()?;
                Command::Arg(decls)
            }
            "onbuild" => {
                no_flags(node)?;
                let Some(next) = &node.next else {
                    return Err(err(node, "ONBUILD requires an instruction to run later"));
                };
                match next.keyword.as_str() {
                    "onbuild" => {
                        return Err(err(
                            node,
                            "chaining ONBUILD via `ONBUILD ONBUILD` isn't allowed",
                        ))
                    }
                    "from" | "maintainer" => {
                        return Err(err(
                            node,
                            format!(
                                "{} isn't allowed as an ONBUILD trigger",
                                next.keyword.to_uppercase()
                            ),
                        ))
                    }
                    _ => {}
                }
                Instruction::from_node(next)?;
                let text = node.original.trim_start();
                let mut expr = text
                    .get(node.keyword_as_written.len()..)
                    .unwrap_or("")
                    .trim()
                    .to_string();
                // A trigger's heredocs travel with it, body and terminator, so the child's parse finds them
                // (BuildKit's testOnBuildHeredoc: `ONBUILD RUN <<EOF` kept only its first line here).
                for h in node.heredocs.iter().chain(&next.heredocs) {
                    expr.push('\n');
                    expr.push_str(&h.content);
                    expr.push_str(&h.name);
                }
                Command::Onbuild(expr)
            }
            "healthcheck" => Command::Healthcheck(healthcheck(node)?),
            "copy" => {
                let f = flags(
                    node,
                    &[
                        ("from", FlagKind::String),
                        ("chown", FlagKind::String),
                        ("chmod", FlagKind::String),
                        ("link", FlagKind::Bool),
                        ("parents", FlagKind::Bool),
                        ("exclude", FlagKind::List),
                    ],
                )?;
                let (sources, dest) = sources(node, node.args.clone())?;
                Command::Copy(CopyCommand {
                    sources,
                    dest,
                    from: copy_from(node, f.string("from"))?,
                    chown: f.string("chown").map(str::to_string),
                    chmod: f.string("chmod").map(str::to_string),
                    link: f.bool("link").unwrap_or(false),
                    parents: f.bool("parents").unwrap_or(false),
                    exclude: f.list("exclude"),
                })
            }
            "add" => {
                let f = flags(
                    node,
                    &[
                        ("chown", FlagKind::String),
                        ("chmod", FlagKind::String),
                        ("link", FlagKind::Bool),
                        ("checksum", FlagKind::String),
                        ("keep-git-dir", FlagKind::Bool),
                        ("exclude", FlagKind::List),
                        ("unpack", FlagKind::Bool),
                    ],
                )?;
                let (sources, dest) = sources(node, node.args.clone())?;
                Command::Add(AddCommand {
                    sources,
                    dest,
                    chown: f.string("chown").map(str::to_string),
                    chmod: f.string("chmod").map(str::to_string),
                    link: f.bool("link").unwrap_or(false),
                    checksum: f.string("checksum").map(str::to_string),
                    keep_git_dir: f.bool("keep-git-dir").unwrap_or(false),
                    exclude: f.list("exclude"),
                    unpack: f.bool("unpack"),
                })
            }
            other => {
                const KEYWORDS: [&str; 18] = [
                    "FROM",
                    "RUN",
                    "CMD",
                    "LABEL",
                    "MAINTAINER",
                    "EXPOSE",
                    "ENV",
                    "ADD",
                    "COPY",
                    "ENTRYPOINT",
                    "VOLUME",
                    "USER",
                    "WORKDIR",
                    "ARG",
                    "ONBUILD",
                    "STOPSIGNAL",
                    "HEALTHCHECK",
                    "SHELL",
                ];
                let hint = crate::suggest::hint_or_list(other, &KEYWORDS);
                return Err(err(
                    node,
                    format!("unknown instruction: {} ({hint})", other.to_uppercase()),
                ));
            }
        };
        Ok(Instruction {
            command,
            node: node.clone(),
        })
    }
}

/// `COPY --from`, which BuildKit never expands (its testDockerfileCopyFromArgs): a value naming a variable is refused
/// with BuildKit's advice.
fn copy_from(node: &Node, from: Option<&str>) -> Result<Option<String>, FrontendError> {
    match from {
        Some(v) if crate::instructions::mounts::asks_expansion(v) => Err(err(
            node,
            "variable expansion is not supported for --from, define a new stage with FROM using ARG from global scope as a workaround",
        )),
        other => Ok(other.map(str::to_string)),
    }
}

/// Checks a `--mount` value as written. One with variables is parsed once they are expanded (at lowering:
/// `type=$MNT_TYPE` is BuildKit's testMountArg), but its `from` may not use them, as in BuildKit (its
/// testMountFromError): a stage to mount from is named as written.
fn check_mount(value: &str) -> Result<(), String> {
    if !value.contains('$') {
        return parse_mount(value).map(|_| ());
    }
    // Expanded to itself here: only `from`'s refusal can be told before lowering.
    let fields: Result<_, std::convert::Infallible> =
        crate::instructions::mounts::expanded_mount_fields(value, |v| Ok(v.to_string()));
    fields.unwrap_or_else(|never| match never {}).map(|_| ())
}

/// Parses a `--mount` value at lowering, each field's value expanded by `expand` (see
/// [`crate::instructions::mounts::expanded_mount_fields`]).
pub fn mount_spec(
    node: &Node,
    value: &str,
    expand: impl FnMut(&str) -> Result<String, FrontendError>,
) -> Result<MountSpec, FrontendError> {
    crate::instructions::mounts::expanded_mount_fields(value, expand)?
        .and_then(|fields| crate::instructions::mounts::parse_mount_fields(&fields))
        .map_err(|e| err(node, format!("RUN --mount={value}: {e}")))
}
