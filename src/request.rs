//! Turning request flags into the frontend's inputs: the Dockerfile, the ignore patterns, and
//! [`frontend::BuildOpts`].

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use engine::request::{default_dockerfile, Dockerfile};
use frontend::{BuildOpts, NamedContext};

use crate::cli::RequestArgs;
use crate::Failure;

/// A Dockerfile read for a request.
pub struct Loaded {
    /// The Dockerfile, parsed.
    pub dockerfile: Dockerfile,
    /// The options it is lowered with (for the first target platform).
    pub opts: BuildOpts,
    /// Every target platform of `--platform a,b` in order, without repeats; empty for this machine's.
    pub platforms: Vec<oci::Platform>,
}

impl Loaded {
    /// Renders a frontend error against this Dockerfile.
    pub fn fail(&self, e: &frontend::FrontendError) -> Failure {
        Failure::Usage(self.dockerfile.render(e))
    }
}

/// Reads the Dockerfile and ignore file and builds the options. Every failure is a usage error (exit 2).
pub fn load(args: &RequestArgs) -> Result<Loaded, Failure> {
    if !args.context.is_dir() {
        return Err(Failure::Usage(format!(
            "build context {} is not a directory",
            args.context.display()
        )));
    }
    let path: Option<PathBuf> = match &args.file {
        Some(f) if f.as_os_str() == "-" => None,
        Some(f) => Some(f.clone()),
        None => Some(default_dockerfile(&args.context)),
    };
    let dockerfile = Dockerfile::read(path.as_deref()).map_err(usage)?;
    let ignore_patterns = frontend::dockerignore::read_patterns(&args.context, path.as_deref())
        .map_err(|e| Failure::Usage(format!("cannot read .dockerignore: {e}")))?;
    let platforms = parse_platforms(args.platform.as_deref())?;
    let mut opts = build_opts(args, ignore_patterns)?;
    opts.target_platform = platforms.first().cloned();
    Ok(Loaded {
        dockerfile,
        opts,
        platforms,
    })
}

fn usage(e: impl std::fmt::Display) -> Failure {
    Failure::Usage(e.to_string())
}

fn build_opts(args: &RequestArgs, ignore_patterns: Vec<String>) -> Result<BuildOpts, Failure> {
    let mut build_args = BTreeMap::new();
    for a in &args.build_args {
        match a.split_once('=') {
            Some((k, v)) if !k.is_empty() => {
                build_args.insert(k.to_string(), v.to_string());
            }
            Some(_) => return Err(usage(format!("--build-arg {a:?}: the name is empty"))),
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
            return Err(usage(format!("--build-context {c:?}: expected NAME=VALUE")));
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
        // buildx's `local`: this machine's platform.
        if part == "local" {
            let host = oci::Platform::host();
            if !out.contains(&host) {
                out.push(host);
            }
            continue;
        }
        let p: oci::Platform = part
            .parse()
            .map_err(|e: oci::PlatformError| usage(format!("--platform {part}: {e}")))?;
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
