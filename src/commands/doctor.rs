//! `kiln doctor`: prints the engine's findings about a root and, with `--repair`, what its repair left.

use engine::doctor::{self, Severity};

use super::open_root;
use crate::cli::DoctorArgs;
use crate::Failure;

/// Runs `kiln doctor`.
pub fn run(args: &DoctorArgs) -> Result<(), Failure> {
    // A root that is not there is not made (doctor checks what is).
    let dir = engine::Root::locate(args.root.root.as_deref());
    if !dir.is_dir() {
        return Err(Failure::Usage(format!(
            "{}: no kiln root here (give --root or KILN_ROOT)",
            dir.display()
        )));
    }
    let root = open_root(&args.root);
    let dir = root.path().display();
    let _lock = root.lock(true)?;
    let findings = doctor::check(&root, !args.quick)?;
    for f in &findings {
        let tag = match f.severity {
            Severity::Damaged => "damaged",
            Severity::Leftover => "leftover",
        };
        println!("{tag:<9} {}", f.what);
    }
    let damaged = findings
        .iter()
        .filter(|f| f.severity == Severity::Damaged)
        .count();
    let leftovers = findings.len() - damaged;
    if findings.is_empty() {
        println!("kiln doctor: {dir} is consistent");
        return Ok(());
    }
    if !args.repair {
        return Err(Failure::Build(format!(
            "{damaged} damaged, {leftovers} leftover in {dir}; `kiln doctor --repair` removes them"
        )));
    }
    let (failed, remaining) = doctor::repair_until_consistent(&root, &findings)?;
    for f in &remaining {
        println!("remains   {}", f.what);
    }
    if !remaining.is_empty() {
        return Err(Failure::Build(match failed.first() {
            Some(e) => format!("repair left {} problems: {e}", remaining.len()),
            None => format!("repair left {} problems", remaining.len()),
        }));
    }
    let forgotten = findings.iter().filter(|f| f.forgets_image()).count();
    println!(
        "kiln doctor: repaired {damaged} damaged, removed {leftovers} leftover{}",
        if forgotten > 0 {
            format!("; {forgotten} image names were forgotten (pull or build them again)")
        } else {
            String::new()
        }
    );
    Ok(())
}
