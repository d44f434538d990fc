//! Where each blob is known to live in a registry (recorded on pull and push), so that a push to another
//! repository of the same registry can mount the blob instead of uploading it again.

use crate::manifest::Descriptor;
use crate::store::Store;
use crate::Digest;

fn path(store: &Store, d: &Digest) -> std::path::PathBuf {
    store.root().join("sources").join(d.hex())
}

/// Records that `registry/repository` holds `blobs`. Best effort: a lost record only costs an upload.
pub(crate) fn record(store: &Store, registry: &str, repository: &str, blobs: &[Descriptor]) {
    let dir = store.root().join("sources");
    if std::fs::create_dir_all(&dir).is_err() {
        return;
    }
    let line = format!("{registry}/{repository}");
    for b in blobs {
        let p = path(store, &b.digest);
        let mut known: Vec<String> = std::fs::read_to_string(&p)
            .map(|s| s.lines().map(str::to_string).collect())
            .unwrap_or_default();
        if known.contains(&line) {
            continue;
        }
        known.push(line.clone());
        // Written whole through a rename, so a reader never sees half a list.
        let tmp = p.with_extension(format!("tmp-{}", std::process::id()));
        if std::fs::write(&tmp, known.join("\n") + "\n").is_ok() {
            let _ = std::fs::rename(&tmp, &p);
        }
    }
}

/// Repositories of `registry` other than `except` known to hold `d`.
pub(crate) fn repositories(store: &Store, d: &Digest, registry: &str, except: &str) -> Vec<String> {
    let prefix = format!("{registry}/");
    std::fs::read_to_string(path(store, d))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.strip_prefix(&prefix))
        .filter(|r| *r != except)
        .map(str::to_string)
        .collect()
}
