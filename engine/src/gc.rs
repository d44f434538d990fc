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
    /// A percentage of kiln.toml's `[gc]` that is none (`what` names the key).
    #[error("{what} {value}: a percentage is a whole number from 0 to 100 followed by %")]
    Percent {
        /// Where it was given.
        what: String,
        /// What was given.
        value: String,
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
        matches!(
            self,
            GcError::Size { .. } | GcError::Percent { .. } | GcError::Filter(_)
        )
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
    /// The policy automatic GC keeps the root within, and where it comes from (`None`: turned off).
    pub policy: Option<(PrunePolicy, PolicySource)>,
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
    let policy = PrunePolicy::from_config(
        &crate::config::load().map(|c| c.gc).unwrap_or_default(),
        root,
    )
    .ok()
    .flatten();
    Ok(DiskUsage {
        records,
        rows,
        policy,
    })
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

    /// The policy automatic GC keeps `root` within: `kiln.toml`'s `[gc]` sizes (a percentage is of the root's
    /// filesystem), else BuildKit's default for that filesystem ([`PrunePolicy::default_for`]); `None` when
    /// `[gc] enabled = false`. The root's filesystem is measured only when a percentage or the default needs it.
    pub fn from_config(
        gc: &crate::config::GcConfig,
        root: &Root,
    ) -> Result<Option<(PrunePolicy, PolicySource)>, GcError> {
        if gc.enabled == Some(false) {
            return Ok(None);
        }
        let total = || total_bytes(root.path());
        let size = |name: &str, v: &Option<String>| -> Result<Option<u64>, GcError> {
            let what = format!("kiln.toml [gc] {name}");
            match v.as_deref().map(|s| (s, s.trim().strip_suffix('%'))) {
                Some((s, Some(pct))) => match pct.trim().parse::<u64>() {
                    Ok(p) if p <= 100 => Ok(Some(percent_of(total(), p))),
                    _ => Err(GcError::Percent {
                        what,
                        value: s.to_string(),
                    }),
                },
                _ => size_of(&what, v),
            }
        };
        let keep = size("keep-storage", &gc.keep_storage)?;
        let policy = PrunePolicy {
            reserved: size("reserved-space", &gc.reserved_space)?.or(keep),
            max_used: size("max-used-space", &gc.max_used_space)?,
            min_free: size("min-free-space", &gc.min_free_space)?,
            ..PrunePolicy::default()
        };
        let any =
            policy.reserved.is_some() || policy.max_used.is_some() || policy.min_free.is_some();
        Ok(Some(if any {
            (policy, PolicySource::Config)
        } else {
            (PrunePolicy::default_for(total()), PolicySource::Default)
        }))
    }

    /// BuildKit's default gc bounds for a filesystem of `total` bytes (`DetectDefaultGCCap` on Unix): reserved
    /// space 10% up to 10 GB, max used space 80% up to 100 GB, min free space 20%, each percentage rounded up
    /// as BuildKit rounds it (whole GiB of the share, plus one, in GB). Without it a root grows until the disk
    /// is full: fifty builds of a changing context filled a machine's disk.
    pub fn default_for(total: u64) -> PrunePolicy {
        PrunePolicy {
            reserved: Some(percent_of(total, 10).min(10_000_000_000)),
            max_used: Some(percent_of(total, 80).min(100_000_000_000)),
            min_free: Some(percent_of(total, 20)),
            ..PrunePolicy::default()
        }
    }
}

/// Where the policy automatic GC follows came from, for `kiln du` and messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PolicySource {
    /// `kiln.toml`'s `[gc]`.
    Config,
    /// BuildKit's default for the root's filesystem.
    Default,
}

/// `pct` percent of `total` as BuildKit's `DiskSpace.AsBytes` computes it: the share in whole GiB, plus one, in
/// GB (2 GB when the filesystem's size is unknown).
fn percent_of(total: u64, pct: u64) -> u64 {
    if pct == 0 {
        return 0;
    }
    if total == 0 {
        return 2_000_000_000;
    }
    let share = total / 100 * pct + total % 100 * pct / 100;
    (share / (1 << 30) + 1) * 1_000_000_000
}

/// Bytes of the filesystem holding `path` (0 when it cannot be told).
fn total_bytes(path: &Path) -> u64 {
    rustix::fs::statvfs(path).map_or(0, |s| s.f_blocks.saturating_mul(s.f_frsize))
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
    /// The build cache's size after the prune (snapshots records reach, and cache mounts unless removed).
    pub remaining: u64,
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
    let pruned = prune_locked(root, policy, false)?;
    // An exact measure: automatic GC starts from it (an older one would count what this removed).
    record_estimate(root, pruned.remaining);
    Ok(pruned)
}

/// Prunes `root` under `policy`; the caller holds the root's lock exclusively. With `only_if_over`, a root
/// within the policy is left exactly as it is (automatic GC: loose blobs, compressed copies kept for later
/// pushes, stay until the bound is crossed).
fn prune_locked(root: &Root, policy: &PrunePolicy, only_if_over: bool) -> Result<Pruned, GcError> {
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
    if only_if_over && target.is_none_or(|t| size_now <= t) {
        return Ok(Pruned {
            remaining: size_now,
            ..Pruned::default()
        });
    }
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
    out.remaining = u.snapshots_size(&reached) + mounts;
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

/// The last exact measure of the build cache, the free space beside it then, and when (seconds since the epoch).
#[derive(Debug, Clone, Copy, serde::Serialize, serde::Deserialize)]
struct Estimate {
    used: u64,
    free: u64,
    at: u64,
}

/// Whether the build cache may be over `policy`, told cheaply from the last exact measure (`gc-estimate.json`):
/// what it grew by since is the larger of what the filesystem lost (one statvfs: cache mounts grow without new
/// snapshots) and the size of the snapshots made since (only those are walked: another process freeing space on
/// the same disk cannot hide them). So a build within its bounds walks no old snapshot; the estimate errs high,
/// and a high one costs one exact measure, which becomes the new starting point. No measure yet: maybe over.
fn maybe_over(root: &Root, policy: &PrunePolicy) -> bool {
    let Some(e) = std::fs::read(root.gc_estimate())
        .ok()
        .and_then(|b| serde_json::from_slice::<Estimate>(&b).ok())
    else {
        return true;
    };
    let free = free_bytes(root.path());
    let since = SystemTime::UNIX_EPOCH + Duration::from_secs(e.at);
    let made: u64 = std::fs::read_dir(root.snapshots())
        .into_iter()
        .flatten()
        .flatten()
        .filter(|s| {
            s.metadata()
                .and_then(|m| m.modified())
                .is_ok_and(|t| t >= since)
        })
        .map(|s| dir_size(&s.path()))
        .sum();
    let used = e.used.saturating_add(e.free.saturating_sub(free).max(made));
    policy.target(used, free).is_some_and(|t| used > t)
}

/// Writes the measure in place, unsynced: it is a hint, and a torn or lost one only costs the next build one
/// exact measure (an unreadable file counts as none).
fn record_estimate(root: &Root, used: u64) {
    let at = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs().saturating_sub(1));
    let e = Estimate {
        used,
        free: free_bytes(root.path()),
        at,
    };
    if let Ok(text) = serde_json::to_vec(&e) {
        let _ = std::fs::write(root.gc_estimate(), text);
    }
}

/// Before and after a build: when the build cache may be over `policy` and no other build holds the root,
/// prunes the least recently used build cache down to it; what went (`None` when nothing ran: no policy, the
/// root within it, or another build holding the root).
pub fn auto_gc(root: &Root, policy: Option<&PrunePolicy>) -> Option<Result<Pruned, GcError>> {
    let policy = policy?;
    if !maybe_over(root, policy) {
        return None;
    }
    let _lock = root.try_lock_exclusive()?;
    let pruned = prune_locked(root, policy, true);
    if let Ok(p) = &pruned {
        record_estimate(root, p.remaining);
    }
    Some(pruned)
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
    fn kiln_toml_sets_the_policy_and_without_sizes_buildkits_default_applies() {
        let dir = tempfile::tempdir().unwrap();
        let root = Root::at(dir.path());
        let gc = crate::config::GcConfig {
            keep_storage: Some("2m".into()),
            ..Default::default()
        };
        let (p, source) = PrunePolicy::from_config(&gc, &root).unwrap().unwrap();
        assert_eq!((p.reserved, p.max_used), (Some(2 << 20), None));
        assert_eq!(source, PolicySource::Config);
        let (p, source) = PrunePolicy::from_config(&Default::default(), &root)
            .unwrap()
            .unwrap();
        assert_eq!(source, PolicySource::Default);
        assert!(p.reserved.is_some() && p.max_used.is_some() && p.min_free.is_some());
        let off = crate::config::GcConfig {
            enabled: Some(false),
            ..Default::default()
        };
        assert!(PrunePolicy::from_config(&off, &root).unwrap().is_none());
        let pct = crate::config::GcConfig {
            min_free_space: Some("20%".into()),
            ..Default::default()
        };
        let (p, _) = PrunePolicy::from_config(&pct, &root).unwrap().unwrap();
        assert_eq!(p.min_free, Some(percent_of(total_bytes(dir.path()), 20)));
        for bad in ["lots", "120%", "x%"] {
            let bad = crate::config::GcConfig {
                min_free_space: Some(bad.into()),
                ..Default::default()
            };
            assert!(PrunePolicy::from_config(&bad, &root).is_err(), "{bad:?}");
        }
    }

    /// The cheap check sees what builds made since the last exact measure even when another process freed more
    /// space on the same disk meanwhile (the free-space delta alone would hide the growth).
    #[test]
    fn growth_since_the_last_measure_is_seen_though_the_disk_gained_space() {
        let dir = tempfile::tempdir().unwrap();
        let root = Root::at(dir.path());
        let policy = PrunePolicy {
            max_used: Some(1 << 20),
            ..PrunePolicy::default()
        };
        let at = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap()
            .as_secs()
            - 1;
        // Measured when the disk had 10 GiB less free than now: another process freed that since.
        let gained = free_bytes(dir.path()).saturating_sub(10 << 30);
        let e = serde_json::json!({"used": 0, "free": gained, "at": at});
        std::fs::write(root.gc_estimate(), e.to_string()).unwrap();
        assert!(!maybe_over(&root, &policy), "nothing made yet");
        let diff = root.snapshots().join("abc").join("diff");
        std::fs::create_dir_all(&diff).unwrap();
        std::fs::write(diff.join("big"), vec![0u8; 2 << 20]).unwrap();
        assert!(maybe_over(&root, &policy), "a 2 MiB snapshot made since");
        std::fs::write(root.gc_estimate(), "{torn").unwrap();
        assert!(maybe_over(&root, &policy), "an unreadable measure is none");
    }

    /// BuildKit's `DetectDefaultGCCap` and `DiskSpace.AsBytes` (cmd/buildkitd/config/gcpolicy.go), for disks of
    /// 4 GiB, 252 GiB and 2 TB: a share is rounded up to whole GiB plus one, in GB; reserve and max are capped.
    #[test]
    fn the_default_policy_is_buildkits() {
        let gib = 1u64 << 30;
        let p = PrunePolicy::default_for(4 * gib);
        assert_eq!(
            (p.reserved, p.max_used, p.min_free),
            (
                Some(1_000_000_000),
                Some(4_000_000_000),
                Some(1_000_000_000)
            )
        );
        let p = PrunePolicy::default_for(252 * gib);
        assert_eq!(
            (p.reserved, p.max_used, p.min_free),
            (
                Some(10_000_000_000),
                Some(100_000_000_000),
                Some(51_000_000_000)
            )
        );
        let p = PrunePolicy::default_for(2_000_000_000_000);
        assert_eq!(p.min_free, Some(373_000_000_000));
        assert_eq!(percent_of(0, 10), 2_000_000_000, "unknown size: 2 GB");
    }
}
