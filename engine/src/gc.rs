//! What a root holds (`kiln du`), and taking the build cache back down, least recently used first (`kiln prune`
//! and the automatic GC after builds). A prune holds the root's lock exclusively, so it waits for running builds (which hold it shared) and
//! never removes a snapshot one of them is using. Images are never pruned: `kiln rmi` removes them, and prune then
//! frees their blobs.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use std::time::{Duration, SystemTime};

use oci::manifest::Manifest;
use oci::store::Store;
use oci::Digest;
use solver::cache::{CacheIndex, CacheRecord};
use solver::snapshot::Snapshotter;

use crate::root::{Root, RootError};
use crate::size::{parse_bytes, SizeError};

/// Why a usage count or a prune failed.
#[derive(Debug, thiserror::Error)]
pub enum GcError {
    /// The content store failed.
    #[error(transparent)]
    Store(#[from] oci::store::StoreError),
    /// The cache index failed.
    #[error(transparent)]
    Index(#[from] solver::cache::IndexError),
    /// A snapshot could not be read or removed.
    #[error(transparent)]
    Snapshot(#[from] solver::snapshot::SnapshotError),
    /// A cache mount could not be removed.
    #[error("{path}: {source}")]
    Io {
        /// The directory.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// A size of the policy is not one (`what` names where it was written: a flag, kiln.toml's key).
    #[error("{what} {value}: {source}")]
    Size {
        /// Where the size was given.
        what: String,
        /// What was given.
        value: String,
        /// Why it is no size.
        source: SizeError,
    },
    /// `--filter` other than until=DURATION, or a duration that is none.
    #[error("{0}")]
    Filter(String),
    /// The root's lock.
    #[error(transparent)]
    Lock(#[from] RootError),
    /// Removing the pointers a prune left dangling.
    #[error("{0}")]
    Dangling(String),
}

impl GcError {
    /// Whether the request was at fault (a size or filter that is none), not the root.
    pub fn is_usage(&self) -> bool {
        matches!(self, GcError::Size { .. } | GcError::Filter(_))
    }
}

/// Bytes under a directory (file sizes; directories and links count nothing).
fn dir_size(dir: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    let mut total = 0;
    for e in entries.flatten() {
        match e.file_type() {
            Ok(t) if t.is_dir() => total += dir_size(&e.path()),
            Ok(t) if t.is_file() => total += e.metadata().map(|m| m.len()).unwrap_or(0),
            _ => {}
        }
    }
    total
}

/// Renders bytes as `du -h` does, in binary units.
pub fn human(bytes: u64) -> String {
    let units = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = bytes as f64;
    let mut u = 0;
    while v >= 1024.0 && u + 1 < units.len() {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{bytes} B")
    } else {
        format!("{v:.1} {}", units[u])
    }
}

/// A duration as BuildKit's `until=` takes it: `90s`, `30m`, `24h`, `7d`, or a sum such as `1h30m`.
fn parse_duration(s: &str) -> Result<Duration, String> {
    let mut total = 0u64;
    let mut num = String::new();
    for c in s.trim().chars() {
        if c.is_ascii_digit() {
            num.push(c);
            continue;
        }
        let n: u64 = num
            .parse()
            .map_err(|_| format!("{s:?}: expected a duration such as 24h or 30m"))?;
        num.clear();
        total += n * match c {
            's' => 1,
            'm' => 60,
            'h' => 3600,
            'd' => 86_400,
            _ => return Err(format!("{s:?}: unknown unit {c:?} (s, m, h, d)")),
        };
    }
    if !num.is_empty() {
        return Err(format!("{s:?}: a unit is required (s, m, h, d)"));
    }
    if total == 0 {
        return Err(format!("{s:?}: must be more than zero"));
    }
    Ok(Duration::from_secs(total))
}

/// Everything GC needs to know about a root, read once.
struct Usage {
    records: Vec<(CacheRecord, SystemTime)>,
    parents: BTreeMap<String, Option<String>>,
    snapshot_sizes: BTreeMap<String, u64>,
    mounts: Vec<(std::path::PathBuf, u64)>,
    image_blobs: BTreeSet<Digest>,
    blobs: BTreeMap<Digest, u64>,
}

impl Usage {
    fn read(
        root: &Root,
        store: &Store,
        index: &CacheIndex,
        snaps: &Snapshotter,
    ) -> Result<Usage, GcError> {
        let mut records = Vec::new();
        for r in index.list()? {
            let used = index.last_used(&r.key).unwrap_or(SystemTime::UNIX_EPOCH);
            records.push((r, used));
        }
        records.sort_by_key(|r| r.1);
        let mut parents = BTreeMap::new();
        let mut snapshot_sizes = BTreeMap::new();
        if let Ok(entries) = std::fs::read_dir(root.snapshots()) {
            for e in entries.flatten() {
                let id = e.file_name().to_string_lossy().into_owned();
                if !snaps.exists(&id) {
                    continue;
                }
                let chain = snaps.chain_ids(&id)?;
                parents.insert(id.clone(), chain.get(chain.len().wrapping_sub(2)).cloned());
                snapshot_sizes.insert(id.clone(), dir_size(&snaps.diff_dir(&id)));
            }
        }
        let mut mounts = Vec::new();
        if let Ok(entries) = std::fs::read_dir(root.cache_mounts()) {
            for e in entries.flatten() {
                mounts.push((e.path(), dir_size(&e.path())));
            }
        }
        let mut image_blobs = BTreeSet::new();
        for entry in store.list_images()? {
            image_blobs.insert(entry.manifest.clone());
            for d in store.image_manifests(&entry.manifest)? {
                image_blobs.insert(d.clone());
                if let Ok(m) = store.read_json::<Manifest>(&d) {
                    image_blobs.insert(m.config.digest);
                    image_blobs.extend(m.layers.into_iter().map(|l| l.digest));
                }
            }
        }
        let mut blobs = BTreeMap::new();
        let blob_dir = store.root().join("blobs/sha256");
        if let Ok(entries) = std::fs::read_dir(&blob_dir) {
            for e in entries.flatten() {
                if let Ok(d) =
                    format!("sha256:{}", e.file_name().to_string_lossy()).parse::<Digest>()
                {
                    blobs.insert(d, e.metadata().map(|m| m.len()).unwrap_or(0));
                }
            }
        }
        Ok(Usage {
            records,
            parents,
            snapshot_sizes,
            mounts,
            image_blobs,
            blobs,
        })
    }

    /// The snapshots the given records reach (each record's snapshot and its ancestors).
    fn reachable<'a>(&self, records: impl Iterator<Item = &'a CacheRecord>) -> BTreeSet<String> {
        let mut out = BTreeSet::new();
        for r in records {
            let mut cur = Some(r.snapshot.clone());
            while let Some(c) = cur {
                if !out.insert(c.clone()) {
                    break;
                }
                cur = self.parents.get(&c).cloned().flatten();
            }
        }
        out
    }

    fn snapshots_size(&self, set: &BTreeSet<String>) -> u64 {
        set.iter().filter_map(|s| self.snapshot_sizes.get(s)).sum()
    }

    fn mounts_size(&self) -> u64 {
        self.mounts.iter().map(|(_, s)| s).sum()
    }

    fn loose_blobs(&self) -> Vec<(&Digest, u64)> {
        self.blobs
            .iter()
            .filter(|(d, _)| !self.image_blobs.contains(d))
            .map(|(d, s)| (d, *s))
            .collect()
    }
}

fn open_all(root: &Root) -> Result<(Store, CacheIndex, Snapshotter), GcError> {
    Ok((
        Store::open(&root.store())?,
        CacheIndex::open(&root.cache())?,
        Snapshotter::open(&root.snapshots())?,
    ))
}

/// One cache record as `kiln du -v` lists it.
#[derive(Debug, Clone)]
pub struct RecordUsage {
    /// When a build last used it.
    pub last_used: SystemTime,
    /// The bytes of its own snapshot.
    pub size: u64,
    /// The step it is.
    pub description: String,
}

/// One kind of thing a root holds: how many and how many bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UsageRow {
    /// `images`, `cache records`, `snapshots`, `cache mounts` or `loose blobs`.
    pub kind: &'static str,
    /// How many.
    pub count: usize,
    /// Their bytes.
    pub size: u64,
}

/// What a root holds, for `kiln du`.
#[derive(Debug, Clone)]
pub struct DiskUsage {
    /// Every cache record, most recently used first.
    pub records: Vec<RecordUsage>,
    /// The totals by kind.
    pub rows: Vec<UsageRow>,
}

/// Counts what `root` holds.
pub fn disk_usage(root: &Root) -> Result<DiskUsage, GcError> {
    let (store, index, snaps) = open_all(root)?;
    let u = Usage::read(root, &store, &index, &snaps)?;
    let all_snaps: BTreeSet<String> = u.snapshot_sizes.keys().cloned().collect();
    let image_size: u64 = u
        .blobs
        .iter()
        .filter(|(d, _)| u.image_blobs.contains(d))
        .map(|(_, s)| s)
        .sum();
    let loose = u.loose_blobs();
    let records = u
        .records
        .iter()
        .rev()
        .map(|(r, used)| RecordUsage {
            last_used: *used,
            size: u.snapshot_sizes.get(&r.snapshot).copied().unwrap_or(0),
            description: r.description.clone(),
        })
        .collect();
    let row = |kind, count, size| UsageRow { kind, count, size };
    let rows = vec![
        row("images", store.list_images()?.len(), image_size),
        row("cache records", u.records.len(), 0),
        row("snapshots", all_snaps.len(), u.snapshots_size(&all_snaps)),
        row("cache mounts", u.mounts.len(), u.mounts_size()),
        row(
            "loose blobs",
            loose.len(),
            loose.iter().map(|(_, s)| s).sum(),
        ),
    ];
    Ok(DiskUsage { records, rows })
}

/// What a prune is asked to do: BuildKit's gc policy (reserved space, max used space, min free space).
#[derive(Debug, Clone, Default)]
pub struct PrunePolicy {
    /// Also cache mounts and stat caches.
    pub all: bool,
    /// Never prune the build cache below this many bytes (`keep-storage`, BuildKit's older name, is the same);
    /// alone, the cache is pruned down to it.
    pub reserved: Option<u64>,
    /// Prune while the build cache is over this many bytes.
    pub max_used: Option<u64>,
    /// Prune while the root's filesystem has less than this many bytes free.
    pub min_free: Option<u64>,
    /// Only records unused for this long.
    pub until: Option<Duration>,
}

impl PrunePolicy {
    /// The size the build cache is pruned down to, given its size now and the bytes free on its filesystem;
    /// `None` when nothing bounds it (remove everything the other filters allow).
    fn target(&self, used: u64, free: u64) -> Option<u64> {
        if self.max_used.is_none() && self.min_free.is_none() {
            return self.reserved;
        }
        let mut target = used;
        if let Some(max) = self.max_used {
            target = target.min(max);
        }
        if let Some(min_free) = self.min_free {
            target = target.min(used.saturating_sub(min_free.saturating_sub(free)));
        }
        Some(target.max(self.reserved.unwrap_or(0)))
    }

    /// Reads the sizes of `kiln.toml`'s `[gc]`; `None` when it sets none (no automatic gc).
    pub fn from_config(gc: &crate::config::GcConfig) -> Result<Option<PrunePolicy>, GcError> {
        let size = |name: &str, v: &Option<String>| size_of(&format!("kiln.toml [gc] {name}"), v);
        let keep = size("keep-storage", &gc.keep_storage)?;
        let policy = PrunePolicy {
            reserved: size("reserved-space", &gc.reserved_space)?.or(keep),
            max_used: size("max-used-space", &gc.max_used_space)?,
            min_free: size("min-free-space", &gc.min_free_space)?,
            ..PrunePolicy::default()
        };
        let any =
            policy.reserved.is_some() || policy.max_used.is_some() || policy.min_free.is_some();
        Ok(any.then_some(policy))
    }
}

/// A size as users write it (`10g`), if given; `what` names where it was written.
pub fn size_of(what: &str, v: &Option<String>) -> Result<Option<u64>, GcError> {
    v.as_deref()
        .map(|s| {
            parse_bytes(s).map_err(|source| GcError::Size {
                what: what.to_string(),
                value: s.to_string(),
                source,
            })
        })
        .transpose()
}

/// Bytes free (to unprivileged users, as `df` shows) on the filesystem holding `path`.
fn free_bytes(path: &Path) -> u64 {
    rustix::fs::statvfs(path).map_or(u64::MAX, |s| s.f_bavail.saturating_mul(s.f_frsize))
}

/// What a prune removed.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Pruned {
    /// Cache records.
    pub records: usize,
    /// Snapshots.
    pub snapshots: usize,
    /// Cache mounts.
    pub mounts: usize,
    /// Blobs no image names.
    pub blobs: usize,
    /// Bytes freed.
    pub bytes: u64,
}

/// Prunes `root` under `policy`, holding its lock exclusively (waiting for running builds).
pub fn prune(root: &Root, policy: &PrunePolicy) -> Result<Pruned, GcError> {
    let _lock = root.lock(true)?;
    prune_locked(root, policy)
}

/// Prunes `root` under `policy`; the caller holds the root's lock exclusively.
fn prune_locked(root: &Root, policy: &PrunePolicy) -> Result<Pruned, GcError> {
    let (store, index, snaps) = open_all(root)?;
    let u = Usage::read(root, &store, &index, &snaps)?;
    let now = SystemTime::now();
    let old_enough = |used: SystemTime| match policy.until {
        Some(d) => now.duration_since(used).is_ok_and(|age| age >= d),
        None => true,
    };
    // Least recently used first: drop records until what the rest reach fits.
    let mut keep: Vec<&CacheRecord> = u.records.iter().map(|(r, _)| r).collect();
    let mut remove: Vec<&CacheRecord> = Vec::new();
    let mounts = if policy.all { 0 } else { u.mounts_size() };
    let size_now = u.snapshots_size(&u.reachable(keep.iter().copied())) + mounts;
    let target = policy.target(size_now, free_bytes(root.path()));
    for (r, used) in &u.records {
        if !old_enough(*used) {
            continue;
        }
        if let Some(limit) = target {
            let size = u.snapshots_size(&u.reachable(keep.iter().copied())) + mounts;
            if size <= limit {
                break;
            }
        }
        keep.retain(|k| k.key != r.key);
        remove.push(r);
    }
    let mut out = Pruned::default();
    for r in &remove {
        index.remove(&r.key)?;
        out.records += 1;
    }
    index.remove_unused_listings(keep.iter().copied());
    // Every snapshot no remaining record reaches goes, children before parents.
    let reached = u.reachable(keep.iter().copied());
    let mut doomed: Vec<&String> = u
        .snapshot_sizes
        .keys()
        .filter(|s| !reached.contains(*s))
        .collect();
    let depth = |s: &String| {
        let mut n = 0;
        let mut cur = u.parents.get(s).cloned().flatten();
        while let Some(c) = cur {
            n += 1;
            cur = u.parents.get(&c).cloned().flatten();
        }
        n
    };
    doomed.sort_by_key(|s| std::cmp::Reverse(depth(s)));
    for s in doomed {
        // An image whose layer is this snapshot (a lazy layer) gets its bytes written before the snapshot goes.
        store.materialize_under(&snaps.diff_dir(s), &|d| u.image_blobs.contains(d))?;
        snaps.remove(s)?;
        out.snapshots += 1;
        out.bytes += u.snapshot_sizes.get(s).copied().unwrap_or(0);
    }
    if policy.all {
        for (dir, size) in &u.mounts {
            std::fs::remove_dir_all(dir).map_err(|source| GcError::Io {
                path: dir.display().to_string(),
                source,
            })?;
            out.mounts += 1;
            out.bytes += size;
        }
        let _ = std::fs::remove_dir_all(root.stat_caches());
        let _ = std::fs::remove_dir_all(root.downloads());
    }
    // Blobs no image names: compressed copies, exported caches, layers of removed images. All can be made again.
    for (d, size) in u.loose_blobs() {
        if std::fs::remove_file(store.blob_path(d)).is_ok() {
            out.blobs += 1;
            out.bytes += size;
        }
    }
    for (d, _) in store.lazy_blobs() {
        if !u.image_blobs.contains(&d) {
            store.remove_lazy(&d)?;
        }
    }
    crate::doctor::remove_dangling_pointers(root).map_err(|e| GcError::Dangling(e.to_string()))?;
    Ok(out)
}

/// The `until=DURATION` of `kiln prune --filter`.
pub fn parse_filter(f: &str) -> Result<Duration, GcError> {
    match f.split_once('=') {
        Some(("until", d)) => parse_duration(d).map_err(GcError::Filter),
        _ => Err(GcError::Filter(format!(
            "--filter {f}: only until=DURATION is supported"
        ))),
    }
}

/// After a build: when a policy is set and no other build holds the root, prunes the least recently used build
/// cache as the policy says; what went (`None` when nothing could run).
pub fn auto_gc(root: &Root, policy: Option<&PrunePolicy>) -> Option<Result<Pruned, GcError>> {
    let policy = policy?;
    let _lock = root.try_lock_exclusive()?;
    Some(prune_locked(root, policy))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_and_sizes_as_users_write_them() {
        assert_eq!(parse_duration("24h"), Ok(Duration::from_secs(86_400)));
        assert_eq!(parse_duration("1h30m"), Ok(Duration::from_secs(5400)));
        assert_eq!(parse_duration("7d"), Ok(Duration::from_secs(604_800)));
        assert!(parse_duration("10").is_err());
        assert!(parse_duration("5w").is_err());
        assert!(parse_duration("0s").is_err());
        assert_eq!(human(512), "512 B");
        assert_eq!(human(3 << 20), "3.0 MiB");
    }

    #[test]
    fn gc_targets_follow_buildkits_reserved_max_used_and_min_free_space() {
        let p = |reserved, max_used, min_free| PrunePolicy {
            reserved,
            max_used,
            min_free,
            ..PrunePolicy::default()
        };
        // Nothing set: no bound. Reserved (keep-storage) alone: pruned down to it.
        assert_eq!(p(None, None, None).target(100, 0), None);
        assert_eq!(p(Some(30), None, None).target(100, 1000), Some(30));
        // Max used space: down to it, never below the reserved space.
        assert_eq!(p(None, Some(60), None).target(100, 1000), Some(60));
        assert_eq!(p(None, Some(60), None).target(40, 1000), Some(40));
        assert_eq!(p(Some(80), Some(60), None).target(100, 1000), Some(80));
        // Min free space: free 10 of the wanted 50, so 40 bytes go; enough free means nothing goes.
        assert_eq!(p(None, None, Some(50)).target(100, 10), Some(60));
        assert_eq!(p(None, None, Some(50)).target(100, 500), Some(100));
        assert_eq!(p(Some(90), None, Some(50)).target(100, 10), Some(90));
        // Both: the stricter wins; a disk too full to help empties the cache down to the reserve.
        assert_eq!(p(None, Some(70), Some(50)).target(100, 10), Some(60));
        assert_eq!(p(Some(5), None, Some(500)).target(100, 0), Some(5));
    }

    #[test]
    fn kiln_toml_keep_storage_is_the_reserved_space_and_no_sizes_mean_no_gc() {
        let gc = crate::config::GcConfig {
            keep_storage: Some("2m".into()),
            ..Default::default()
        };
        let p = PrunePolicy::from_config(&gc).unwrap().unwrap();
        assert_eq!((p.reserved, p.max_used), (Some(2 << 20), None));
        assert!(PrunePolicy::from_config(&Default::default())
            .unwrap()
            .is_none());
        let bad = crate::config::GcConfig {
            min_free_space: Some("lots".into()),
            ..Default::default()
        };
        assert!(PrunePolicy::from_config(&bad).is_err());
    }
}
