//! `kiln graph`: lower a Dockerfile and print its graph (dot or JSON) without running anything.

use crate::cli::{GraphArgs, GraphFormat};
use crate::request;
use crate::Failure;

/// Runs the command.
pub fn run(args: &GraphArgs) -> Result<(), Failure> {
    let loaded = request::load(&args.request)?;
    let lowered = frontend::lower(
        &loaded.dockerfile.parsed,
        &loaded.opts,
        &frontend::NoResolver,
    )
    .map_err(|e| loaded.fail(&e))?;
    let roots: Vec<_> = lowered.target.root.into_iter().collect();
    let text = match args.format {
        GraphFormat::Dot => lowered.definition.to_dot(&roots),
        GraphFormat::Json => {
            let graph: serde_json::Value = serde_json::from_str(
                &lowered
                    .definition
                    .to_json(&roots)
                    .map_err(|e| Failure::Build(e.to_string()))?,
            )
            .map_err(|e| Failure::Build(e.to_string()))?;
            let doc = serde_json::json!({
                "target": lowered.target.name,
                "graph": graph,
                "image": lowered.target.image,
            });
            serde_json::to_string_pretty(&doc).map_err(|e| Failure::Build(e.to_string()))?
        }
    };
    println!("{}", text.trim_end());
    for name in &lowered.unused_build_args {
        eprintln!("warning: build-arg {name} was not consumed by any stage");
    }
    Ok(())
}
