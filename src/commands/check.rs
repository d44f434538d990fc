//! `kiln check`: BuildKit's build checks over a Dockerfile, honouring its `# check=` directive.

use crate::cli::RequestArgs;
use crate::request;
use crate::Failure;

/// Runs the command.
pub fn run(args: &RequestArgs) -> Result<(), Failure> {
    let loaded = request::load(args)?;
    let report = frontend::checks::run_checks(&loaded.dockerfile.parsed, &loaded.opts)
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
