//! `kiln build --call=check|outline|targets` (and `--check`): BuildKit's frontend subrequests, answered from the
//! Dockerfile without building, printed as `docker buildx build --call=...` prints them (text, or the
//! frontend's JSON with `,format=json`), with buildx's exit status.

use crate::cli::BuildArgs;
use crate::{request, Failure};

/// Which subrequest `--call` asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Subrequest {
    /// The build checks (BuildKit's `frontend.lint`; buildx's `check`).
    Check,
    /// The args, secrets and SSH ids of the target (`frontend.outline`).
    Outline,
    /// The stages (`frontend.targets`).
    Targets,
}

/// A parsed `--call` value: buildx's `CallFunc`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Call {
    /// The subrequest.
    pub what: Subrequest,
    /// `format=json`: print the frontend's JSON instead of text.
    pub json: bool,
    /// `ignorestatus=true`: exit 0 even when the checks found something.
    pub ignore_status: bool,
}

/// Parses `--call NAME[,format=json|text][,ignorestatus=BOOL]` as buildx does; `build` (a build, no
/// subrequest) is `None`.
pub fn parse(value: &str) -> Result<Option<Call>, Failure> {
    let usage = |m: String| Failure::Usage(format!("--call={value}: {m}"));
    let mut name: Option<&str> = None;
    let (mut json, mut ignore_status) = (false, false);
    for field in value.split(',').map(str::trim) {
        match field.split_once('=') {
            Some(("format", "json")) => json = true,
            Some(("format", "text")) => json = false,
            Some(("format", f)) => {
                return Err(usage(format!("format {f:?}: valid values are json, text")))
            }
            Some(("ignorestatus", v)) => {
                ignore_status = match v {
                    "true" | "1" => true,
                    "false" | "0" => false,
                    _ => return Err(usage(format!("ignorestatus {v:?} is not a boolean"))),
                }
            }
            Some(_) => {
                return Err(usage(format!(
                    "invalid field {field:?} (valid: format=, ignorestatus=)"
                )))
            }
            None if name.is_some() => return Err(usage("more than one method named".to_string())),
            None => name = Some(field),
        }
    }
    let what = match name.unwrap_or("build") {
        "build" | "" => return Ok(None),
        "check" | "lint" => Subrequest::Check,
        "outline" => Subrequest::Outline,
        "targets" => Subrequest::Targets,
        other => {
            return Err(usage(format!(
                "unknown method {other:?} (valid: build, check, outline, targets)"
            )))
        }
    };
    Ok(Some(Call {
        what,
        json,
        ignore_status,
    }))
}

/// Answers `call` for the Dockerfile and request of `args`, printing to stdout.
pub fn run(args: &BuildArgs, call: Call) -> Result<(), Failure> {
    let loaded = request::load(&args.request)?;
    let df = &loaded.dockerfile;
    let json = |v: Result<String, serde_json::Error>| {
        v.map_err(|e| Failure::Build(format!("cannot write the result as JSON: {e}")))
    };
    // Base images are judged from the root's store, pulling nothing, as `kiln check` does; a store that cannot be
    // opened leaves them unknown (their ENV then cannot reach an ARG default).
    let resolver = (call.what != Subrequest::Targets)
        .then(|| oci::store::Store::open(&super::open_root(&args.root).store()).ok())
        .flatten()
        .map(engine::resolver::Resolver::for_checks);
    let resolver: &dyn frontend::ImageResolver = match &resolver {
        Some(r) => r,
        None => &frontend::NoResolver,
    };
    match call.what {
        Subrequest::Targets => {
            let list = frontend::subrequests::targets(&df.parsed, &df.bytes)
                .map_err(|e| loaded.fail(&e))?;
            match call.json {
                true => println!("{}", json(frontend::subrequests::go_json(&list))?),
                false => print!("{}", list.to_text()),
            }
        }
        Subrequest::Outline => {
            let outline =
                frontend::subrequests::outline(&df.parsed, &df.bytes, &loaded.opts, resolver)
                    .map_err(|e| loaded.fail(&e))?;
            match call.json {
                true => println!("{}", json(frontend::subrequests::go_json(&outline))?),
                false => print!("{}", outline.to_text()),
            }
        }
        Subrequest::Check => {
            let report = frontend::checks::run_checks_with(&df.parsed, &loaded.opts, resolver)
                .map_err(|e| loaded.fail(&e))?;
            let filename = df
                .path
                .as_deref()
                .and_then(|p| p.file_name())
                .map_or("Dockerfile".to_string(), |n| {
                    n.to_string_lossy().into_owned()
                });
            let results = frontend::subrequests::LintResults::new(&report, &filename, &df.bytes);
            if call.json {
                println!("{}", json(frontend::subrequests::go_json(&results))?);
            } else {
                print!("{}", results.to_text());
            }
            // As buildx, a Dockerfile that cannot be built fails after its warnings, whatever ignorestatus says.
            if let Some(e) = results.error_text() {
                if !call.json && !results.warnings.is_empty() {
                    println!();
                }
                return Err(Failure::Build(e.trim_end().to_string()));
            }
            if results.status() != 0 && !call.ignore_status {
                return Err(Failure::Exit(1));
            }
        }
    }
    Ok(())
}
