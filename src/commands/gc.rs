//! `kiln du` and `kiln prune`: what a root holds, and taking its build cache back down.

use std::time::SystemTime;

use engine::gc::{self, human, size_of, PrunePolicy};

use super::open_root;
use crate::cli::{DuArgs, PruneArgs};
use crate::Failure;

fn age(t: SystemTime) -> String {
    let secs = SystemTime::now()
        .duration_since(t)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    match secs {
        s if s < 120 => format!("{s}s ago"),
        s if s < 7200 => format!("{}m ago", s / 60),
        s if s < 172_800 => format!("{}h ago", s / 3600),
        s => format!("{}d ago", s / 86_400),
    }
}

/// Runs `kiln du`.
pub fn du(args: &DuArgs) -> Result<(), Failure> {
    let u = gc::disk_usage(&open_root(&args.root))?;
    if args.verbose {
        println!("{:<12} {:>10}  STEP", "LAST USED", "SIZE");
        for r in &u.records {
            println!(
                "{:<12} {:>10}  {}",
                age(r.last_used),
                human(r.size),
                r.description
            );
        }
        println!();
    }
    println!("{:<16} {:>8} {:>12}", "KIND", "COUNT", "SIZE");
    let mut total = 0;
    for row in &u.rows {
        total += row.size;
        println!("{:<16} {:>8} {:>12}", row.kind, row.count, human(row.size));
    }
    println!("{:<16} {:>8} {:>12}", "total", "", human(total));
    let show = |v: Option<u64>| v.map_or_else(|| "-".to_string(), human);
    match &u.policy {
        Some((p, source)) => println!(
            "gc policy ({}): reserved {}, max used {}, min free {}",
            match source {
                gc::PolicySource::Config => "kiln.toml [gc]",
                gc::PolicySource::Default => "default, BuildKit's for this filesystem",
            },
            show(p.reserved),
            show(p.max_used),
            show(p.min_free)
        ),
        None => println!("gc policy: off (kiln.toml [gc] enabled = false)"),
    }
    Ok(())
}

/// Runs `kiln prune`.
pub fn prune(args: &PruneArgs) -> Result<(), Failure> {
    let size = |flag: &str, v: &Option<String>| size_of(&format!("--{flag}"), v);
    let policy = PrunePolicy {
        all: args.all,
        reserved: size("reserved-space", &args.reserved_space)?
            .or(size("keep-storage", &args.keep_storage)?),
        max_used: size("max-used-space", &args.max_used_space)?,
        min_free: size("min-free-space", &args.min_free_space)?,
        until: args.filter.as_deref().map(gc::parse_filter).transpose()?,
    };
    if !args.force {
        return Err(Failure::Usage(
            "kiln prune removes build cache: give --force (-f) to go ahead".to_string(),
        ));
    }
    let p = gc::prune(&open_root(&args.root), &policy)?;
    println!(
        "Removed {} cache records, {} snapshots, {} cache mounts, {} blobs: {} reclaimed",
        p.records,
        p.snapshots,
        p.mounts,
        p.blobs,
        human(p.bytes)
    );
    Ok(())
}
