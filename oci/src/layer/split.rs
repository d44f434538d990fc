//! A step's result too large for one layer, cut into several along directory boundaries: registries cap the size
//! of one blob (10 GB on some hosted ones), and a CUDA-sized `pip install` makes one layer larger than that. The
//! first part holds every directory, symlink, whiteout and opaque mark of the layer; each later part carries
//! whole subtrees and single files ("units") plus, again, the directories above them (so their times come out as
//! recorded). Applied in order, the parts give exactly the tree the single layer gives.
//!
//! Units are found from the top: a directory whose files exceed the limit is entered and its subdirectories and
//! files judged one by one; a directory within the limit is one unit. Units are then packed, in path order, into
//! parts of at most the limit (a single file larger than the limit is a part of its own). The same tree always
//! gives the same parts, so the same bytes; and a change inside one subtree changes only the parts from it on.

use std::collections::{BTreeSet, HashMap};
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use super::diff::{err, write_selected, DiffError, DiffOptions, Selection};

/// One layer of a split step result.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Part {
    /// What the part holds, for its history entry: `directories, links and whiteouts` or the first and last unit.
    pub label: String,
    /// The bytes of regular files it carries (tar headers not counted).
    pub bytes: u64,
    select: Selection,
}

impl Part {
    /// Writes this part's layer tar of `upper` into `out`; returns the writer and the number of entries.
    pub fn write<W: std::io::Write>(
        &self,
        upper: &Path,
        out: W,
        opts: DiffOptions,
    ) -> Result<(W, u64), DiffError> {
        write_selected(upper, &self.select, out, opts)
    }
}

/// Regular-file bytes below each directory (by path relative to the root, "" the root itself).
fn sizes(dir: &Path, rel: &str, out: &mut HashMap<String, u64>) -> Result<u64, DiffError> {
    let mut total = 0u64;
    for e in std::fs::read_dir(dir).map_err(err(dir))? {
        let e = e.map_err(err(dir))?;
        let path = e.path();
        let meta = std::fs::symlink_metadata(&path).map_err(err(&path))?;
        let name = join(rel, &e.file_name().to_string_lossy());
        if meta.is_dir() {
            total = total.saturating_add(sizes(&path, &name, out)?);
        } else if meta.is_file() {
            total = total.saturating_add(meta.len());
        }
    }
    out.insert(rel.to_string(), total);
    Ok(total)
}

fn join(rel: &str, name: &str) -> String {
    if rel.is_empty() {
        name.to_string()
    } else {
        format!("{rel}/{name}")
    }
}

/// The units below `dir` (which exceeds `max`), in path order, with their sizes.
fn units(
    dir: &Path,
    rel: &str,
    max: u64,
    sizes: &HashMap<String, u64>,
    out: &mut Vec<(String, u64)>,
) -> Result<(), DiffError> {
    let mut names: Vec<std::ffi::OsString> = Vec::new();
    for e in std::fs::read_dir(dir).map_err(err(dir))? {
        names.push(e.map_err(err(dir))?.file_name());
    }
    names.sort();
    for n in names {
        let path = dir.join(&n);
        let name = join(rel, &n.to_string_lossy());
        let meta = std::fs::symlink_metadata(&path).map_err(err(&path))?;
        if meta.is_dir() {
            let size = sizes.get(&name).copied().unwrap_or(0);
            if size > max {
                units(&path, &name, max, sizes, out)?;
            } else if size > 0 {
                out.push((name, size));
            }
        } else if meta.is_file() && meta.nlink() == 1 && meta.len() > 0 {
            // A file with other names stays in the first part with them, so the link survives.
            out.push((name, meta.len()));
        }
    }
    Ok(())
}

/// The parts of the layer `upper` when its files exceed `max` bytes; `None` when it fits in one layer.
pub fn plan(upper: &Path, max: u64) -> Result<Option<Vec<Part>>, DiffError> {
    let mut dir_sizes = HashMap::new();
    let total = sizes(upper, "", &mut dir_sizes)?;
    if total <= max || max == 0 {
        return Ok(None);
    }
    let mut found = Vec::new();
    units(upper, "", max, &dir_sizes, &mut found)?;
    // Next fit, in path order: deterministic, and a part ends where adding the next unit would pass the limit.
    let mut groups: Vec<Vec<(String, u64)>> = Vec::new();
    let mut filled = 0u64;
    for (name, size) in found {
        match groups.last_mut() {
            Some(g) if filled.saturating_add(size) <= max => {
                filled += size;
                g.push((name, size));
            }
            _ => {
                filled = size;
                groups.push(vec![(name, size)]);
            }
        }
    }
    let carried: BTreeSet<String> = groups.iter().flatten().map(|(n, _)| n.clone()).collect();
    let carried_bytes: u64 = groups.iter().flatten().map(|(_, s)| *s).sum();
    let count = groups.len() + 1;
    let mut parts = vec![Part {
        label: format!("part 1 of {count}: directories, links, whiteouts and files not split off"),
        bytes: total.saturating_sub(carried_bytes),
        select: Selection::Rest { units: carried },
    }];
    for (i, g) in groups.into_iter().enumerate() {
        let first = g.first().map(|(n, _)| n.clone()).unwrap_or_default();
        let last = g.last().map(|(n, _)| n.clone()).unwrap_or_default();
        let label = if g.len() == 1 {
            format!("part {} of {count}: /{first}", i + 2)
        } else {
            format!("part {} of {count}: /{first} … /{last}", i + 2)
        };
        let mut ancestors = BTreeSet::new();
        for (n, _) in &g {
            let mut p = n.as_str();
            while let Some((parent, _)) = p.rsplit_once('/') {
                ancestors.insert(parent.to_string());
                p = parent;
            }
        }
        parts.push(Part {
            label,
            bytes: g.iter().map(|(_, s)| *s).sum(),
            select: Selection::Units {
                units: g.into_iter().map(|(n, _)| n).collect(),
                ancestors,
            },
        });
    }
    Ok(Some(parts))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(bytes: &[u8]) -> Vec<String> {
        let mut a = tar::Archive::new(bytes);
        a.entries()
            .unwrap()
            .map(|e| e.unwrap().path().unwrap().display().to_string())
            .collect()
    }

    fn tree() -> tempfile::TempDir {
        let d = tempfile::tempdir().unwrap();
        let up = d.path();
        for (dir, files) in [
            ("venv/nvidia/cublas", 3usize),
            ("venv/nvidia/cudnn", 4),
            ("venv/torch", 2),
            ("etc", 1),
        ] {
            std::fs::create_dir_all(up.join(dir)).unwrap();
            for i in 0..files {
                std::fs::write(up.join(dir).join(format!("f{i}")), vec![b'x'; 100]).unwrap();
            }
        }
        std::os::unix::fs::symlink("torch", up.join("venv/link")).unwrap();
        d
    }

    #[test]
    fn a_layer_within_the_limit_is_not_split() {
        let d = tree();
        assert_eq!(plan(d.path(), 1000).unwrap(), None);
    }

    #[test]
    fn large_subtrees_become_parts_and_every_entry_is_in_exactly_one_but_ancestors() {
        let d = tree();
        let parts = plan(d.path(), 400).unwrap().expect("split");
        let labels: Vec<_> = parts.iter().map(|p| p.label.clone()).collect();
        // 1000 bytes: cublas 300, cudnn 400, torch 200, etc 100 — etc (100) and cublas (300) fit one part.
        assert_eq!(
            labels,
            [
                "part 1 of 4: directories, links, whiteouts and files not split off",
                "part 2 of 4: /etc … /venv/nvidia/cublas",
                "part 3 of 4: /venv/nvidia/cudnn",
                "part 4 of 4: /venv/torch",
            ]
        );
        let written: Vec<Vec<String>> = parts
            .iter()
            .map(|p| {
                names(
                    &p.write(d.path(), Vec::new(), DiffOptions::default())
                        .unwrap()
                        .0,
                )
            })
            .collect();
        assert_eq!(written[0], ["venv/", "venv/link", "venv/nvidia/"]);
        assert_eq!(
            written[2],
            [
                "venv/",
                "venv/nvidia/",
                "venv/nvidia/cudnn/",
                "venv/nvidia/cudnn/f0",
                "venv/nvidia/cudnn/f1",
                "venv/nvidia/cudnn/f2",
                "venv/nvidia/cudnn/f3"
            ]
        );
        // Every file is in exactly one part.
        let files: Vec<&String> = written
            .iter()
            .flatten()
            .filter(|n| !n.ends_with('/'))
            .collect();
        let unique: BTreeSet<&String> = files.iter().copied().collect();
        assert_eq!(files.len(), unique.len());
        assert_eq!(files.len(), 11);
        assert!(parts.iter().skip(1).all(|p| p.bytes <= 400));
        // The same tree, the same parts and bytes.
        let again = plan(d.path(), 400).unwrap().unwrap();
        assert_eq!(again, parts);
    }

    #[test]
    fn an_opaque_directory_is_marked_only_in_the_first_part() {
        let d = tree();
        rustix::fs::setxattr(
            d.path().join("venv"),
            "trusted.overlay.opaque",
            b"y",
            rustix::fs::XattrFlags::empty(),
        )
        .unwrap();
        let parts = plan(d.path(), 400).unwrap().unwrap();
        let first = names(
            &parts[0]
                .write(d.path(), Vec::new(), DiffOptions::default())
                .unwrap()
                .0,
        );
        assert!(
            first.contains(&"venv/.wh..wh..opq".to_string()),
            "{first:?}"
        );
        for p in &parts[1..] {
            let n = names(
                &p.write(d.path(), Vec::new(), DiffOptions::default())
                    .unwrap()
                    .0,
            );
            assert!(!n.iter().any(|n| n.contains(".wh.")), "{n:?}");
        }
    }
}
