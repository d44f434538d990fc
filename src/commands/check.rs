//! `kiln check`: BuildKit's build checks over a Dockerfile, honouring its `# check=` directive.

use crate::cli::{RequestArgs, RootArgs};
use crate::request;
use crate::Failure;

/// Runs the command. Base images are resolved from the root's store as `kiln build` finds them (pulling
/// nothing), so InvalidBaseImagePlatform sees the platforms of those it has.
pub fn run(args: &RequestArgs, root: &RootArgs) -> Result<(), Failure> {
    let loaded = request::load(args)?;
    let root = super::open_root(root);
    // A store that cannot be opened (a root this user cannot read) leaves the images unknown, as a check of a
    // Dockerfile does not need them: only InvalidBaseImagePlatform goes unjudged.
    let resolver = oci::store::Store::open(&root.store())
        .ok()
        .map(engine::resolver::Resolver::for_checks);
    let resolver: &dyn frontend::lower::ImageResolver = match &resolver {
        Some(r) => r,
        None => &frontend::lower::NoResolver,
    };
    let report =
        frontend::checks::run_checks_with(&loaded.dockerfile.parsed, &loaded.opts, resolver)
            .map_err(|e| loaded.fail(&e))?;
    for f in &report.findings {
        let rendered = frontend::error::render_located(
            &loaded.dockerfile.display_name,
            &loaded.dockerfile.parsed.lines,
            Some(f.span),
            &format!("{}: {}", f.rule, f.message),
        );
        println!("{rendered}");
    }
    for e in &report.errors {
        eprintln!(
            "error: {}",
            e.render(
                &loaded.dockerfile.display_name,
                &loaded.dockerfile.parsed.lines
            )
        );
    }
    let n = report.findings.len();
    match n {
        0 => println!("Check complete, no warnings found."),
        1 => println!("Check complete, 1 warning has been found!"),
        n => println!("Check complete, {n} warnings have been found!"),
    }
    if !report.errors.is_empty() {
        return Err(Failure::Usage(format!(
            "{} stage(s) of the Dockerfile cannot be built (see above)",
            report.errors.len()
        )));
    }
    if n > 0 && report.config.error {
        return Err(Failure::Build(format!(
            "{n} build check violation(s), and the Dockerfile's check directive sets error=true"
        )));
    }
    Ok(())
}
