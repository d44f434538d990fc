//! Turning request flags into the frontend's inputs: the Dockerfile's bytes and name, the ignore patterns, and
//! [`frontend::BuildOpts`].

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};

use frontend::{BuildOpts, NamedContext};

use crate::cli::RequestArgs;
use crate::Failure;

/// A Dockerfile read for a request.
pub struct Loaded {
    /// The name errors are reported under.
    pub display_name: String,
    /// Its parse.
    pub dockerfile: frontend::parser::Dockerfile,
    /// The options it is lowered with (for the first target platform).
    pub opts: BuildOpts,
    /// Every target platform of `--platform a,b` in order, without repeats; empty for this machine's.
    pub platforms: Vec<oci::Platform>,
}

impl Loaded {
    /// Renders a frontend error against this Dockerfile.
    pub fn fail(&self, e: &frontend::FrontendError) -> Failure {
        Failure::Usage(e.render(&self.display_name, &self.dockerfile.lines))
    }
}

fn dockerfile_path(args: &RequestArgs) -> Option<PathBuf> {
    match &args.file {
        Some(f) if f.as_os_str() == "-" => None,
        Some(f) => Some(f.clone()),
        None => Some(default_dockerfile(&args.context)),
    }
}

/// `CONTEXT/Dockerfile`, or `CONTEXT/dockerfile` when only that exists, as BuildKit falls back to the lower-case
/// name (its testDockerfileLowercase).
fn default_dockerfile(context: &std::path::Path) -> PathBuf {
    let upper = context.join("Dockerfile");
    let lower = context.join("dockerfile");
    if !upper.exists() && lower.is_file() {
        return lower;
    }
    upper
}

/// Reads the Dockerfile and ignore file and builds the options. Every failure is a usage error (exit 2).
pub fn load(args: &RequestArgs) -> Result<Loaded, Failure> {
    if !args.context.is_dir() {
        return Err(Failure::Usage(format!(
            "build context {} is not a directory",
            args.context.display()
        )));
    }
    let path = dockerfile_path(args);
    let (display_name, bytes) = match &path {
        Some(p) => {
            let bytes = std::fs::read(p).map_err(|e| {
                Failure::Usage(format!("cannot read Dockerfile {}: {e}", p.display()))
            })?;
            (p.display().to_string(), bytes)
        }
        None => {
            let mut bytes = Vec::new();
            std::io::stdin().read_to_end(&mut bytes).map_err(|e| {
                Failure::Usage(format!("cannot read the Dockerfile from stdin: {e}"))
            })?;
            ("<stdin>".to_string(), bytes)
        }
    };
    let dockerfile = frontend::parse_bytes(&bytes).map_err(|e| {
        let lines: Vec<String> = String::from_utf8_lossy(&bytes)
            .lines()
            .map(str::to_string)
            .collect();
        Failure::Usage(e.render(&display_name, &lines))
    })?;
    let ignore_patterns = frontend::dockerignore::read_patterns(&args.context, path.as_deref())
        .map_err(|e| Failure::Usage(format!("cannot read .dockerignore: {e}")))?;
    let platforms = parse_platforms(args.platform.as_deref())?;
    let mut opts = build_opts(args, ignore_patterns)?;
    opts.target_platform = platforms.first().cloned();
    Ok(Loaded {
        display_name,
        dockerfile,
        opts,
        platforms,
    })
}

fn build_opts(args: &RequestArgs, ignore_patterns: Vec<String>) -> Result<BuildOpts, Failure> {
    let mut build_args = BTreeMap::new();
    for a in &args.build_args {
        match a.split_once('=') {
            Some((k, v)) if !k.is_empty() => {
                build_args.insert(k.to_string(), v.to_string());
            }
            Some(_) => {
                return Err(Failure::Usage(format!(
                    "--build-arg {a:?}: the name is empty"
                )))
            }
            None => {
                // Docker's rule: a bare KEY takes the client's environment value, and is dropped when unset.
                if let Ok(v) = std::env::var(a) {
                    build_args.insert(a.clone(), v);
                }
            }
        }
    }
    let mut build_contexts = BTreeMap::new();
    for c in &args.build_contexts {
        let Some((name, value)) = c.split_once('=') else {
            return Err(Failure::Usage(format!(
                "--build-context {c:?}: expected NAME=VALUE"
            )));
        };
        let ctx = NamedContext::parse(value).map_err(|e| Failure::Usage(e.message))?;
        let ctx = match ctx {
            NamedContext::Local(dir) => NamedContext::Local(absolute(Path::new(&dir))),
            other => other,
        };
        build_contexts.insert(name.to_string(), ctx);
    }
    Ok(BuildOpts {
        target: args.target.clone(),
        build_args,
        build_contexts,
        ignore_patterns,
        ..BuildOpts::default()
    })
}

/// `--platform linux/amd64,linux/arm64`: BuildKit's comma-separated list; a repeat is dropped.
fn parse_platforms(arg: Option<&str>) -> Result<Vec<oci::Platform>, Failure> {
    let mut out: Vec<oci::Platform> = Vec::new();
    for part in arg.unwrap_or("").split(',').map(str::trim) {
        if part.is_empty() {
            continue;
        }
        let p: oci::Platform = part
            .parse()
            .map_err(|e: oci::PlatformError| Failure::Usage(format!("--platform {part}: {e}")))?;
        if !out.contains(&p) {
            out.push(p);
        }
    }
    Ok(out)
}

fn absolute(p: &Path) -> String {
    std::path::absolute(p)
        .unwrap_or_else(|_| p.to_path_buf())
        .display()
        .to_string()
}
