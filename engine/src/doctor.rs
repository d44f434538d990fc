//! Doctor's checks (`kiln doctor`): a whole root — every blob against its digest, every image, cache record and memo against
//! what it points at, and the leftovers an interrupted kiln leaves (ingest files, `tmp-` snapshots, work
//! directories, mounts, cgroups, network namespaces, runtime state) — and with `--repair` removes what is damaged
//! or dangles. It holds the root's lock exclusively, so it waits for running builds and what it calls a leftover
//! really belongs to no one.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use oci::manifest::Manifest;
use oci::store::{BlobFile, Store, Stored};
use oci::Digest;
use solver::cache::CacheIndex;
use solver::snapshot::{SnapshotState, Snapshotter};

use crate::root::Root;

/// Why a root could not be checked.
#[derive(Debug, thiserror::Error)]
pub enum DoctorError {
    /// The content store could not be opened or listed.
    #[error(transparent)]
    Store(#[from] oci::store::StoreError),
    /// The snapshots could not be listed.
    #[error(transparent)]
    Snapshot(#[from] solver::snapshot::SnapshotError),
    /// The cache index could not be read.
    #[error(transparent)]
    Index(#[from] solver::cache::IndexError),
    /// A repair failed (what, and why).
    #[error("{0}")]
    Repair(String),
}

/// How bad a finding is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Severity {
    /// Something kiln wrote is not what it should be (a blob whose content changed, a record whose snapshot is
    /// gone): a crash-safe store never shows one, so each is a bug, a disk fault or a hand edit.
    Damaged,
    /// What an interrupted kiln left (kill -9, power loss): costs space, never a wrong result.
    Leftover,
}

/// What `--repair` does about a finding.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Fix {
    /// Detach a mount (lazily: nothing may use it once no kiln runs).
    Unmount(PathBuf),
    /// Remove a file or a directory tree.
    Remove(PathBuf),
    /// Forget an image name whose content is incomplete.
    ForgetImage(String),
    /// Remove a dead step's container state with the OCI runtime, then its directory.
    RuncState(PathBuf),
    /// Remove the cgroups and network namespaces of dead kiln processes.
    SweepHost,
}

/// One thing `kiln doctor` found.
#[derive(Debug, Clone)]
pub struct Finding {
    /// How bad it is.
    pub severity: Severity,
    /// What it is, in a sentence naming the path.
    pub what: String,
    fix: Fix,
}

impl Finding {
    fn damaged(what: String, fix: Fix) -> Finding {
        Finding {
            severity: Severity::Damaged,
            what,
            fix,
        }
    }

    fn leftover(what: String, fix: Fix) -> Finding {
        Finding {
            severity: Severity::Leftover,
            what,
            fix,
        }
    }

    /// Whether its repair forgets an image name (the image must be pulled or built again).
    pub fn forgets_image(&self) -> bool {
        matches!(self.fix, Fix::ForgetImage(_))
    }
}

fn entries(dir: &Path) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path())
        .collect();
    out.sort();
    out
}

/// The `digest` a memo file (`store/layers/*.json`) names, if it parses, and whether it says the store keeps that
/// blob (a push's memo of a layer it only streamed says not: `exporter::Keep`).
fn memo_digest(path: &Path) -> Option<(Digest, bool)> {
    let bytes = std::fs::read(path).ok()?;
    let v: serde_json::Value = serde_json::from_slice(&bytes).ok()?;
    let kept = v.get("kept").and_then(|k| k.as_bool()).unwrap_or(true);
    Some((v.get("digest")?.as_str()?.parse().ok()?, kept))
}

/// Everything wrong with the root, in the order `--repair` must fix it (mounts before the directories under them,
/// images and records before what they point at goes).
pub fn check(root: &Root, verify_blobs: bool) -> Result<Vec<Finding>, DoctorError> {
    let mut out = Vec::new();
    // kiln mounts only under work/ (step root filesystems, scratch views); anything else is the user's.
    for m in solver::worker::sweep::mounts_under(&root.work()) {
        out.push(Finding::leftover(
            format!("mount {} of an interrupted step", m.display()),
            Fix::Unmount(m),
        ));
    }
    for p in entries(&root.work()) {
        out.push(Finding::leftover(
            format!("work directory {} of an interrupted step", p.display()),
            Fix::Remove(p),
        ));
    }
    let runtime = root.runtime();
    for p in entries(&runtime.join("runc-state")) {
        out.push(Finding::leftover(
            format!("runtime state {} of an interrupted step", p.display()),
            Fix::RuncState(p),
        ));
    }
    for (sub, what) in [
        ("bundles", "runtime bundle"),
        ("secrets", "secrets directory"),
    ] {
        for p in entries(&runtime.join(sub)) {
            out.push(Finding::leftover(
                format!("{what} {} of an interrupted step", p.display()),
                Fix::Remove(p),
            ));
        }
    }
    for what in executor::process::stale_leftovers(Some(&root.owner_tag())) {
        out.push(Finding::leftover(
            format!("{what} of a kiln process that died"),
            Fix::SweepHost,
        ));
    }

    let store = Store::open_as_is(&root.store())?;
    for p in store.ingest_files()? {
        out.push(Finding::leftover(
            format!(
                "ingest file {} (a blob write that never finished)",
                p.display()
            ),
            Fix::Remove(p),
        ));
    }
    let mut blobs = BTreeSet::new();
    for f in store.blob_files()? {
        match f {
            BlobFile::Foreign(p) => out.push(Finding::leftover(
                format!("{} is not a blob (its name is no digest)", p.display()),
                Fix::Remove(p),
            )),
            BlobFile::Blob(d) => {
                let actual = if verify_blobs {
                    store.verify_blob(&d)?
                } else {
                    d.clone()
                };
                if actual == d {
                    blobs.insert(d);
                } else {
                    out.push(Finding::damaged(
                        format!("blob {d}: its content hashes to {actual}"),
                        Fix::Remove(store.blob_path(&d)),
                    ));
                }
            }
        }
    }
    // Lazy layers (the tar is rendered from a snapshot when read): the snapshot must still be there and still
    // render the recorded digest.
    for (d, dir) in store.lazy_blobs() {
        let recipe = store.root().join("lazy").join(format!("{}.json", d.hex()));
        if blobs.contains(&d) {
            out.push(Finding::leftover(
                format!("lazy layer {d} is also stored"),
                Fix::Remove(recipe),
            ));
        } else if !dir.is_dir() {
            out.push(Finding::leftover(
                format!("lazy layer {d} names {}, which is gone", dir.display()),
                Fix::Remove(recipe),
            ));
        } else {
            let actual = if verify_blobs {
                store.verify_lazy(&d).map_err(|e| e.to_string())
            } else {
                Ok(d.clone())
            };
            match actual {
                Ok(a) if a == d => {
                    blobs.insert(d);
                }
                Ok(a) => out.push(Finding::damaged(
                    format!("lazy layer {d}: {} now renders {a}", dir.display()),
                    Fix::Remove(recipe),
                )),
                Err(e) => out.push(Finding::damaged(
                    format!("lazy layer {d}: {e}"),
                    Fix::Remove(recipe),
                )),
            }
        }
    }
    for p in store.stale_lazy_notes() {
        out.push(Finding::leftover(
            format!("lazy layer note {} names no lazy layer", p.display()),
            Fix::Remove(p),
        ));
    }
    for p in entries(&store.root().join("lazy")) {
        let name = file_name(&p);
        if name.starts_with(".tmp-") {
            out.push(Finding::leftover(
                format!("lazy layer record {} was never finished", p.display()),
                Fix::Remove(p),
            ));
        }
    }
    match store.list_images() {
        Err(e) => out.push(Finding::damaged(
            format!("the image index cannot be read: {e}"),
            Fix::Remove(root.store().join("index/images.json")),
        )),
        Ok(images) => {
            for entry in images {
                if let Some(problem) = image_problem(&store, &blobs, &entry.manifest) {
                    out.push(Finding::damaged(
                        format!("image {}: {problem}", entry.name),
                        Fix::ForgetImage(entry.name),
                    ));
                }
            }
        }
    }
    for p in entries(&root.store().join("layers")) {
        if !memo_digest(&p).is_some_and(|(d, kept)| !kept || blobs.contains(&d)) {
            out.push(Finding::leftover(
                format!("layer memo {} names no blob of the store", p.display()),
                Fix::Remove(p),
            ));
        }
    }

    let snaps = Snapshotter::open(&root.snapshots())?;
    let mut parents: BTreeMap<String, Option<String>> = BTreeMap::new();
    for e in snaps.entries()? {
        match e.state {
            SnapshotState::Stray => out.push(Finding::leftover(
                format!(
                    "snapshot directory {} (work of an interrupted step)",
                    e.path.display()
                ),
                Fix::Remove(e.path),
            )),
            SnapshotState::Damaged(why) => out.push(Finding::damaged(
                format!("snapshot {}: {why}", e.id),
                Fix::Remove(e.path),
            )),
            SnapshotState::Committed { parent } => {
                parents.insert(e.id, parent);
            }
        }
    }
    // A snapshot is whole when its parent is: children of a missing or damaged snapshot are damaged too.
    let mut known: BTreeMap<String, bool> = BTreeMap::new();
    for id in parents.keys() {
        // Walk up to a snapshot whose state is known (or to a base, or to a missing parent), then mark the path.
        let mut path = Vec::new();
        let mut cur = Some(id.clone());
        let ok = loop {
            let Some(c) = cur else { break true };
            if let Some(k) = known.get(&c) {
                break *k;
            }
            let Some(parent) = parents.get(&c) else {
                break false;
            };
            if path.len() > parents.len() {
                break false; // a cycle: no chain kiln writes has one
            }
            path.push(c);
            cur = parent.clone();
        };
        for p in path {
            known.insert(p, ok);
        }
    }
    let whole: BTreeSet<String> = known
        .into_iter()
        .filter(|(_, ok)| *ok)
        .map(|(id, _)| id)
        .collect();
    for (id, parent) in &parents {
        if !whole.contains(id) {
            out.push(Finding::damaged(
                format!(
                    "snapshot {id}: its parent {} is missing or damaged",
                    parent.as_deref().unwrap_or("?")
                ),
                Fix::Remove(root.snapshots().join(id)),
            ));
        }
    }

    let index = CacheIndex::open(&root.cache())?;
    let files = index.files()?;
    let mut records = BTreeSet::new();
    for (path, read) in files.records {
        match read {
            Err(why) => out.push(Finding::damaged(
                format!("cache record {}: {why}", path.display()),
                Fix::Remove(path),
            )),
            Ok(r) if !whole.contains(&r.snapshot) => out.push(Finding::damaged(
                format!(
                    "cache record of {:?}: its snapshot {} is missing or damaged",
                    r.description, r.snapshot
                ),
                Fix::Remove(path),
            )),
            Ok(r) => {
                records.insert(r.key);
            }
        }
    }
    for path in files.temporary {
        out.push(Finding::leftover(
            format!(
                "temporary file {} of an unfinished index write",
                path.display()
            ),
            Fix::Remove(path),
        ));
    }
    for (path, key) in files.slots {
        if !key.is_some_and(|k| records.contains(&k)) {
            out.push(Finding::leftover(
                format!("slot pointer {} names no cache record", path.display()),
                Fix::Remove(path),
            ));
        }
    }
    for p in entries(&root.cache().join("locks")) {
        out.push(Finding::leftover(
            format!("step lock {} of a build that was killed", p.display()),
            Fix::Remove(p),
        ));
    }
    for p in entries(&root.cache().join("imported")) {
        let id = std::fs::read_to_string(&p).unwrap_or_default();
        if !whole.contains(id.trim()) {
            out.push(Finding::leftover(
                format!("imported-layer memo {} names no snapshot", p.display()),
                Fix::Remove(p),
            ));
        }
    }
    for p in entries(&root.stat_caches()) {
        let parses = std::fs::read(&p)
            .ok()
            .is_some_and(|b| solver::contenthash::StatCache::parse(&b).is_some());
        if !parses {
            out.push(Finding::leftover(
                format!("stat cache {} does not parse", p.display()),
                Fix::Remove(p),
            ));
        }
    }
    for p in entries(&root.store().join("sources")) {
        let name = p.file_name().map(|n| n.to_string_lossy().into_owned());
        if name.is_some_and(|n| n.contains(".tmp-")) {
            out.push(Finding::leftover(
                format!("registry source list {} was never finished", p.display()),
                Fix::Remove(p),
            ));
        }
    }
    for p in entries(&root.cache_mounts()) {
        let name = p.file_name().map(|n| n.to_string_lossy().into_owned());
        if name.is_some_and(|n| n.contains(".tmp-")) {
            out.push(Finding::leftover(
                format!("cache mount {} was never finished", p.display()),
                Fix::Remove(p),
            ));
        }
    }
    // Kept `ADD <url>` downloads: a 304 from the server trusts these bytes, so each must hash to its name.
    for p in entries(&root.downloads()) {
        let name = file_name(&p);
        if name.starts_with(".tmp-") {
            out.push(Finding::leftover(
                format!("download {} was never finished", p.display()),
                Fix::Remove(p),
            ));
        } else if verify_blobs && !name.ends_with(".json") && !hashes_to(&p, &name) {
            out.push(Finding::damaged(
                format!("kept download {} does not hash to its name", p.display()),
                Fix::Remove(p),
            ));
        }
    }
    Ok(out)
}

/// The last component of `p`, as text (empty for none).
fn file_name(p: &Path) -> String {
    p.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// Whether the file at `p` has the sha256 `hex`.
fn hashes_to(p: &Path, hex: &str) -> bool {
    use sha2::Digest as _;
    let Ok(mut f) = std::fs::File::open(p) else {
        return false;
    };
    let mut h = sha2::Sha256::new();
    std::io::copy(&mut f, &mut h).is_ok() && format!("{:x}", h.finalize()) == hex
}

/// Why the image `manifest` cannot be used as it is, if it cannot: a blob it needs is missing or damaged.
fn image_problem(store: &Store, blobs: &BTreeSet<Digest>, manifest: &Digest) -> Option<String> {
    if !blobs.contains(manifest) {
        return Some(format!("its manifest {manifest} is missing"));
    }
    let children = match store.manifest_kind(manifest) {
        Err(e) => return Some(format!("its manifest {manifest} does not parse: {e}")),
        Ok(Stored::Manifest) => vec![manifest.clone()],
        // A pulled index keeps only the platforms that were pulled; one is enough.
        Ok(Stored::Index(index)) => {
            let held: Vec<Digest> = index
                .manifests
                .into_iter()
                .map(|m| m.digest)
                .filter(|d| blobs.contains(d))
                .collect();
            if held.is_empty() {
                return Some(format!("no manifest its index {manifest} lists is held"));
            }
            held
        }
    };
    for m in children {
        let parsed: Manifest = match store.read_json(&m) {
            Ok(p) => p,
            Err(e) => return Some(format!("manifest {m} does not parse: {e}")),
        };
        if !blobs.contains(&parsed.config.digest) {
            return Some(format!("its config {} is missing", parsed.config.digest));
        }
        if let Some(l) = parsed.layers.iter().find(|l| !blobs.contains(&l.digest)) {
            return Some(format!("its layer {} is missing", l.digest));
        }
    }
    None
}

fn remove(p: &Path) -> std::io::Result<()> {
    match std::fs::symlink_metadata(p) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
        Ok(m) if m.is_dir() => std::fs::remove_dir_all(p),
        Ok(_) => std::fs::remove_file(p),
    }
}

/// Carries out the fixes of `findings` in order; returns what could not be done.
pub fn repair(root: &Root, findings: &[Finding]) -> Vec<String> {
    let mut failed = Vec::new();
    let mut swept = false;
    let store = Store::open_as_is(&root.store());
    for f in findings {
        let result: Result<(), String> = match &f.fix {
            Fix::Unmount(p) => rustix::mount::unmount(p, rustix::mount::UnmountFlags::DETACH)
                .map_err(|e| format!("unmounting {}: {e}", p.display())),
            Fix::Remove(p) => remove(p).map_err(|e| format!("removing {}: {e}", p.display())),
            Fix::ForgetImage(name) => match &store {
                Ok(s) => s.remove_image(name).map(|_| ()).map_err(|e| e.to_string()),
                Err(e) => Err(e.to_string()),
            },
            Fix::RuncState(p) => {
                if let (Some(state), Some(name)) = (p.parent(), p.file_name()) {
                    let _ = std::process::Command::new("runc")
                        .arg("--root")
                        .arg(state)
                        .args(["delete", "--force"])
                        .arg(name)
                        .stdout(std::process::Stdio::null())
                        .stderr(std::process::Stdio::null())
                        .status();
                }
                remove(p).map_err(|e| format!("removing {}: {e}", p.display()))
            }
            Fix::SweepHost => {
                if !swept {
                    executor::process::sweep_stale();
                    swept = true;
                }
                Ok(())
            }
        };
        if let Err(e) = result {
            failed.push(e);
        }
    }
    failed
}

/// Repairs `findings`, then what the repair itself uncovers (a lazy layer or memo whose snapshot a repair just
/// removed as damaged), up to three passes; returns what could not be done and what is still wrong.
pub fn repair_until_consistent(
    root: &Root,
    findings: &[Finding],
) -> Result<(Vec<String>, Vec<Finding>), DoctorError> {
    let mut failed = repair(root, findings);
    let mut remaining = check(root, false)?;
    for _ in 0..2 {
        if remaining.is_empty() || !failed.is_empty() {
            break;
        }
        failed = repair(root, &remaining);
        remaining = check(root, false)?;
    }
    Ok((failed, remaining))
}

/// Removes the pointers that name what a prune took away (slot pointers, layer and imported-layer memos): they
/// would only be found dangling by the next `kiln doctor`. The caller holds the root's lock exclusively.
pub fn remove_dangling_pointers(root: &Root) -> Result<(), DoctorError> {
    let dangling: Vec<Finding> = check(root, false)?
        .into_iter()
        .filter(|f| {
            f.severity == Severity::Leftover
                && matches!(&f.fix, Fix::Remove(p) if p.starts_with(root.cache().join("slots"))
                    || p.starts_with(root.cache().join("imported"))
                    || p.starts_with(root.store().join("layers")))
        })
        .collect();
    let failed = repair(root, &dangling);
    match failed.first() {
        Some(e) => Err(DoctorError::Repair(e.clone())),
        None => Ok(()),
    }
}
