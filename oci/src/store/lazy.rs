//! Lazy layers: an uncompressed layer of a built image kept as a recipe — the snapshot directory it is the diff
//! of, and the diff options — instead of a second copy of its bytes. Its digest was computed when the image was
//! made, by rendering the directory once into a hash; the bytes are written into the store only when something
//! reads them (push, save, a build on the image), and checked against that digest then. Snapshots never change
//! once committed and the diff is deterministic, so the render gives the same bytes every time; a snapshot that
//! is about to be pruned has its image's lazy layers written first ([`Store::materialize_under`]).
//!
//! This is what buildah's storage does (the layer is the diff directory; the tar is made when needed) and saves a
//! build one full write of every layer it makes.

use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::{io, Store, StoreError};
use crate::layer::diff::{write_diff, DiffOptions};
use crate::{Digest, HashedAside, HashingWriter, Offloaded};

/// How to make a lazy blob again: `<store>/lazy/<hex>.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Recipe {
    /// The snapshot directory, relative to the store's root (the root may move as a whole).
    dir: PathBuf,
    /// The diff's SOURCE_DATE_EPOCH clamp.
    source_date_epoch: Option<i64>,
    /// The tar's size in bytes.
    size: u64,
}

/// The digest, size and entry count of `dir`'s layer tar, computed without writing it.
pub fn digest_of_diff(dir: &Path, opts: DiffOptions) -> Result<(Digest, u64, u64), StoreError> {
    // Hashed on a thread of its own, so reading the snapshot and hashing the tar overlap.
    let sink = Offloaded::new(HashingWriter::new(std::io::sink()));
    let (sink, entries) = write_diff(dir, sink, opts).map_err(|e| StoreError::Io {
        path: e.path,
        source: e.source,
    })?;
    let sink = sink.finish().map_err(|source| StoreError::Io {
        path: dir.to_path_buf(),
        source,
    })?;
    let (_, digest, size) = sink.finish();
    Ok((digest, size, entries))
}

impl Store {
    fn recipe_path(&self, d: &Digest) -> PathBuf {
        self.root.join("lazy").join(format!("{}.json", d.hex()))
    }

    /// A recipe's directory, with its `..` resolved against the store's root (lexically: nothing is a symlink).
    fn dir_of(&self, r: &Recipe) -> PathBuf {
        let mut out = self.root.clone();
        for c in r.dir.components() {
            match c {
                std::path::Component::ParentDir => {
                    out.pop();
                }
                std::path::Component::Normal(n) => out.push(n),
                _ => {}
            }
        }
        out
    }

    /// Writes a recipe's layer tar into `out`.
    fn render<W: Write>(&self, r: &Recipe, out: W) -> Result<W, StoreError> {
        let opts = DiffOptions {
            source_date_epoch: r.source_date_epoch,
        };
        write_diff(&self.dir_of(r), out, opts)
            .map(|(w, _)| w)
            .map_err(|e| StoreError::Io {
                path: e.path,
                source: e.source,
            })
    }

    /// Where the digest of `dir`'s lazy layer under `epoch` is noted: `<store>/lazy/dirs/<hash of the two>`.
    fn dir_note_path(&self, rel: &Path, epoch: Option<i64>) -> PathBuf {
        let key = format!("{}|{epoch:?}", rel.display());
        self.root
            .join("lazy/dirs")
            .join(Digest::sha256_of(key.as_bytes()).hex())
    }

    /// The digest of `dir`'s layer tar under `opts` when a lazy blob records it: what an export compressing the
    /// snapshot needs as its diffID, known without hashing the tar again (BuildKit keeps it as the layer's
    /// uncompressed digest, buildah as its `UncompressedDigest`). Only a note that a live recipe confirms counts.
    pub fn lazy_digest_of(&self, dir: &Path, opts: DiffOptions) -> Option<Digest> {
        let rel = relative_to(dir, &self.root)?;
        let note =
            std::fs::read_to_string(self.dir_note_path(&rel, opts.source_date_epoch)).ok()?;
        let d: Digest = note.trim().parse().ok()?;
        let r = self.recipe(&d)?;
        (r.dir == rel && r.source_date_epoch == opts.source_date_epoch).then_some(d)
    }

    /// The recipe of `d`, whether or not its directory is still there.
    fn read_recipe(&self, d: &Digest) -> Option<Recipe> {
        serde_json::from_slice(&std::fs::read(self.recipe_path(d)).ok()?).ok()
    }

    fn recipe(&self, d: &Digest) -> Option<Recipe> {
        let r = self.read_recipe(d)?;
        self.dir_of(&r).is_dir().then_some(r)
    }

    /// Notes under `lazy/dirs/` that no recorded lazy layer stands behind (its recipe is gone, or names another
    /// directory): what a crash between the two writes leaves, and what `remove_lazy` left behind before it read
    /// recipes whose snapshot was already gone. Harmless, since a lookup checks the recipe; `kiln doctor` lists
    /// them for removal.
    pub fn stale_lazy_notes(&self) -> Vec<PathBuf> {
        let dir = self.root.join("lazy/dirs");
        let mut out: Vec<PathBuf> = std::fs::read_dir(&dir)
            .into_iter()
            .flatten()
            .flatten()
            .map(|e| e.path())
            .filter(|note| {
                let backed = std::fs::read_to_string(note)
                    .ok()
                    .and_then(|s| s.trim().parse::<Digest>().ok())
                    .and_then(|d| self.read_recipe(&d))
                    .is_some_and(|r| self.dir_note_path(&r.dir, r.source_date_epoch) == *note);
                !backed
            })
            .collect();
        out.sort();
        out
    }

    /// Records that blob `d` (`size` bytes) is the layer tar of snapshot directory `dir` under `opts`, without
    /// writing it; `d` must be what [`digest_of_diff`] gave. Durable before it returns, like a committed blob.
    pub fn keep_lazy(
        &self,
        d: &Digest,
        size: u64,
        dir: &Path,
        opts: DiffOptions,
    ) -> Result<(), StoreError> {
        if self.blob_path(d).is_file() {
            return Ok(());
        }
        if let Some(r) = self.recipe(d) {
            // A recipe from before notes were kept gets its note now.
            self.note_dir(&r, d);
            return Ok(());
        }
        let rel = relative_to(dir, &self.root).ok_or_else(|| StoreError::Corrupt {
            path: dir.to_path_buf(),
            reason: "a lazy layer's directory must be under the kiln root".to_string(),
        })?;
        let recipe = Recipe {
            dir: rel,
            source_date_epoch: opts.source_date_epoch,
            size,
        };
        let lazy = self.root.join("lazy");
        std::fs::create_dir_all(&lazy).map_err(io(&lazy))?;
        let bytes = serde_json::to_vec(&recipe).map_err(|e| StoreError::Corrupt {
            path: self.recipe_path(d),
            reason: e.to_string(),
        })?;
        let tmp = lazy.join(format!(".tmp-{}-{}", std::process::id(), d.hex()));
        let written = (|| {
            let mut f = std::fs::File::create(&tmp)?;
            f.write_all(&bytes)?;
            f.sync_all()?;
            std::fs::rename(&tmp, self.recipe_path(d))?;
            std::fs::File::open(&lazy)?.sync_all()
        })();
        if written.is_err() {
            let _ = std::fs::remove_file(&tmp);
        }
        written.map_err(io(&self.recipe_path(d)))?;
        self.note_dir(&recipe, d);
        Ok(())
    }

    /// Notes `d` under its recipe's directory. A hint, checked against the recipe when read: it needs no sync,
    /// and failing to write it costs only a hash later.
    fn note_dir(&self, r: &Recipe, d: &Digest) {
        let note = self.dir_note_path(&r.dir, r.source_date_epoch);
        if let Some(parent) = note.parent() {
            let _ =
                std::fs::create_dir_all(parent).and_then(|()| std::fs::write(&note, d.to_string()));
        }
    }

    /// Whether `d` is a lazy blob whose directory is still there.
    pub fn is_lazy(&self, d: &Digest) -> bool {
        !self.blob_path(d).is_file() && self.recipe(d).is_some()
    }

    /// The size of lazy blob `d`, without writing it.
    pub(super) fn lazy_size(&self, d: &Digest) -> Option<u64> {
        self.recipe(d).map(|r| r.size)
    }

    /// Writes lazy blob `d` into the store (verified against its digest) if it is not there yet; a blob that is
    /// neither stored nor lazy is missing.
    pub fn materialize(&self, d: &Digest) -> Result<(), StoreError> {
        if self.blob_path(d).is_file() {
            return Ok(());
        }
        let Some(r) = self.recipe(d) else {
            return Err(StoreError::MissingBlob(d.clone()));
        };
        let mut w = self.writer()?;
        self.render(&r, &mut w)?;
        w.commit(Some(d))?;
        let _ = self.remove_lazy(d);
        Ok(())
    }

    /// Writes lazy blob `d`'s bytes into `out` without storing them (a push compresses them on the way), checking
    /// they hash to `d`; `Ok(false)` when `d` is not lazy. A mismatch is an error once everything was written, so
    /// the caller must not keep what it made of them.
    pub fn render_lazy(&self, d: &Digest, out: &mut dyn Write) -> Result<bool, StoreError> {
        if self.blob_path(d).is_file() {
            return Ok(false);
        }
        let Some(r) = self.recipe(d) else {
            return Ok(false);
        };
        // The check's hash runs on a thread of its own beside the render and whatever consumes `out` (a
        // compressor): on one thread it would cost as much as the render itself.
        let teed = self.render(&r, HashedAside::new(out))?;
        let (_, actual, _) = teed.finish().map_err(|source| StoreError::Io {
            path: self.dir_of(&r),
            source,
        })?;
        if &actual != d {
            return Err(StoreError::DigestMismatch {
                expected: d.clone(),
                actual,
            });
        }
        Ok(true)
    }

    /// Every lazy blob, with the directory it renders (whether or not that still exists).
    pub fn lazy_blobs(&self) -> Vec<(Digest, PathBuf)> {
        let mut out = Vec::new();
        for e in std::fs::read_dir(self.root.join("lazy"))
            .into_iter()
            .flatten()
            .flatten()
        {
            let name = e.file_name().to_string_lossy().into_owned();
            let Some(hex) = name.strip_suffix(".json") else {
                continue;
            };
            let Ok(d) = format!("sha256:{hex}").parse::<Digest>() else {
                continue;
            };
            if let Ok(r) = std::fs::read(e.path())
                .map_err(|e| e.to_string())
                .and_then(|b| serde_json::from_slice::<Recipe>(&b).map_err(|e| e.to_string()))
            {
                out.push((d, self.dir_of(&r)));
            }
        }
        out.sort();
        out
    }

    /// Forgets lazy blob `d` (its image is gone, or its bytes were written).
    pub fn remove_lazy(&self, d: &Digest) -> Result<(), StoreError> {
        // The note goes too, whether or not the snapshot is still there (prune removes snapshots first).
        if let Some(r) = self.read_recipe(d) {
            let _ = std::fs::remove_file(self.dir_note_path(&r.dir, r.source_date_epoch));
        }
        let p = self.recipe_path(d);
        match std::fs::remove_file(&p) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(io(&p)(e)),
        }
    }

    /// Writes every lazy blob in `keep` whose directory is under `dir` (a snapshot about to be removed) and
    /// forgets those not in `keep`: afterwards nothing in the store needs `dir`.
    pub fn materialize_under(
        &self,
        dir: &Path,
        keep: &dyn Fn(&Digest) -> bool,
    ) -> Result<(), StoreError> {
        for (d, from) in self.lazy_blobs() {
            if from.starts_with(dir) {
                if keep(&d) {
                    self.materialize(&d)?;
                } else {
                    self.remove_lazy(&d)?;
                }
            }
        }
        Ok(())
    }

    /// Renders lazy blob `d` again into a hash (nothing written) and returns that digest: `d` itself when its
    /// directory still gives the bytes it was recorded with.
    pub fn verify_lazy(&self, d: &Digest) -> Result<Digest, StoreError> {
        let r = self
            .recipe(d)
            .ok_or_else(|| StoreError::MissingBlob(d.clone()))?;
        let (got, _, _) = digest_of_diff(
            &self.dir_of(&r),
            DiffOptions {
                source_date_epoch: r.source_date_epoch,
            },
        )?;
        Ok(got)
    }
}

/// `path` relative to `base` (both absolute), climbing with `..` where needed.
fn relative_to(path: &Path, base: &Path) -> Option<PathBuf> {
    let path = std::path::absolute(path).ok()?;
    let base = std::path::absolute(base).ok()?;
    let p: Vec<_> = path.components().collect();
    let b: Vec<_> = base.components().collect();
    let common = p.iter().zip(&b).take_while(|(x, y)| x == y).count();
    if common == 0 {
        return None;
    }
    let mut out = PathBuf::new();
    for _ in common..b.len() {
        out.push("..");
    }
    for c in &p[common..] {
        out.push(c);
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lazy_layer_is_written_when_read_and_matches_a_direct_render() {
        let root = tempfile::tempdir().unwrap();
        let store = Store::open(&root.path().join("store")).unwrap();
        let snap = root.path().join("snapshots/abc/diff");
        std::fs::create_dir_all(snap.join("app")).unwrap();
        std::fs::write(snap.join("app/f"), "content").unwrap();
        let opts = DiffOptions {
            source_date_epoch: Some(1),
        };
        let (d, size, entries) = digest_of_diff(&snap, opts).unwrap();
        assert_eq!(entries, 2);
        store.keep_lazy(&d, size, &snap, opts).unwrap();
        assert!(store.has(&d) && store.is_lazy(&d));
        assert!(!store.blob_path(&d).exists(), "nothing written yet");
        assert_eq!(store.lazy_digest_of(&snap, opts), Some(d.clone()));
        let other_epoch = DiffOptions {
            source_date_epoch: Some(2),
        };
        assert_eq!(store.lazy_digest_of(&snap, other_epoch), None);
        assert_eq!(store.blob_size(&d).unwrap(), size);
        assert_eq!(store.verify_lazy(&d).unwrap(), d);
        let mut rendered = Vec::new();
        assert!(store.render_lazy(&d, &mut rendered).unwrap());
        assert!(!store.blob_path(&d).exists(), "rendering stores nothing");
        let bytes = store.read_blob(&d).unwrap();
        assert_eq!(bytes, rendered);
        assert!(store.blob_path(&d).is_file() && !store.is_lazy(&d));
        assert_eq!(
            store.lazy_digest_of(&snap, opts),
            None,
            "the note went with the recipe"
        );
        let mut direct = Vec::new();
        write_diff(&snap, &mut direct, opts).unwrap();
        assert_eq!(bytes, direct);

        // A directory that no longer renders what was recorded is refused, never served.
        let snap2 = root.path().join("snapshots/def/diff");
        std::fs::create_dir_all(&snap2).unwrap();
        std::fs::write(snap2.join("g"), "one").unwrap();
        let (d2, size2, _) = digest_of_diff(&snap2, opts).unwrap();
        store.keep_lazy(&d2, size2, &snap2, opts).unwrap();
        std::fs::write(snap2.join("g"), "two").unwrap();
        assert_ne!(store.verify_lazy(&d2).unwrap(), d2);
        assert!(matches!(
            store.render_lazy(&d2, &mut Vec::new()),
            Err(StoreError::DigestMismatch { .. })
        ));
        assert!(matches!(
            store.open_blob(&d2),
            Err(StoreError::DigestMismatch { .. })
        ));
        assert!(!store.blob_path(&d2).exists());

        // A snapshot about to go: kept images' lazy blobs are written, the rest forgotten.
        let snap3 = root.path().join("snapshots/ghi/diff");
        std::fs::create_dir_all(&snap3).unwrap();
        std::fs::write(snap3.join("h"), "x").unwrap();
        let (d3, size3, _) = digest_of_diff(&snap3, opts).unwrap();
        store.keep_lazy(&d3, size3, &snap3, opts).unwrap();
        store
            .materialize_under(&root.path().join("snapshots/ghi"), &|d| *d == d3)
            .unwrap();
        assert!(store.blob_path(&d3).is_file());
        store
            .materialize_under(&root.path().join("snapshots/def"), &|_| false)
            .unwrap();
        assert!(!store.has(&d2));
        assert_eq!(store.stale_lazy_notes(), Vec::<PathBuf>::new());
    }

    #[test]
    fn a_lazy_layer_forgotten_after_its_snapshot_went_takes_its_note_and_stray_notes_are_listed() {
        let root = tempfile::tempdir().unwrap();
        let store = Store::open(&root.path().join("store")).unwrap();
        let opts = DiffOptions {
            source_date_epoch: None,
        };
        let snap = root.path().join("snapshots/abc/diff");
        std::fs::create_dir_all(&snap).unwrap();
        std::fs::write(snap.join("f"), "x").unwrap();
        let (d, size, _) = digest_of_diff(&snap, opts).unwrap();
        store.keep_lazy(&d, size, &snap, opts).unwrap();
        let notes = || {
            std::fs::read_dir(root.path().join("store/lazy/dirs"))
                .map(|r| r.count())
                .unwrap_or(0)
        };
        assert_eq!((notes(), store.stale_lazy_notes().len()), (1, 0));
        // `kiln prune` removes the snapshot first, then forgets the layer: the note must go with it.
        std::fs::remove_dir_all(root.path().join("snapshots/abc")).unwrap();
        store.remove_lazy(&d).unwrap();
        assert_eq!(notes(), 0);

        // A note whose recipe is gone (a crash between the two writes) is stale; so is one under the wrong name.
        let stray = root.path().join("store/lazy/dirs/0123");
        std::fs::write(&stray, d.to_string()).unwrap();
        std::fs::create_dir_all(&snap).unwrap();
        std::fs::write(snap.join("f"), "x").unwrap();
        store.keep_lazy(&d, size, &snap, opts).unwrap();
        assert_eq!(store.stale_lazy_notes(), vec![stray.clone()]);
        std::fs::remove_file(store.recipe_path(&d)).unwrap();
        assert_eq!(store.stale_lazy_notes().len(), 2);
    }

    #[test]
    fn relative_paths_climb_out_of_the_store() {
        assert_eq!(
            relative_to(Path::new("/r/snapshots/a/diff"), Path::new("/r/store")),
            Some(PathBuf::from("../snapshots/a/diff"))
        );
    }
}
