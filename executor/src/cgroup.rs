//! One cgroup per RUN, whatever the host's layout: cgroup v1 (a hierarchy per controller), v2 (one unified
//! hierarchy) or hybrid (v1 controllers beside a v2 mount holding none — the layout crun refuses). The layout is
//! read from the host at run time. kiln makes the step's cgroup itself and puts the memory limit on it, so that
//! after the step it can read whether the kernel's OOM killer struck there — the runtime removes its own cgroup
//! when the process exits, taking that evidence with it. The runtime's cgroup nests below kiln's.

use std::path::{Path, PathBuf};

/// Resource limits of a RUN step (`kiln build --memory`, `--cpus`, `--pids-limit`).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Limits {
    /// Memory in bytes (no swap beyond it).
    pub memory: Option<u64>,
    /// CPUs, as a fraction (1.5 = one and a half cores of time per period).
    pub cpus: Option<f64>,
    /// Most processes and threads at once.
    pub pids: Option<i64>,
}

/// The cgroup layout of a host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Layout {
    /// cgroup v1 (or hybrid): the memory controller's own hierarchy.
    V1 {
        /// The memory controller's mount.
        memory: PathBuf,
    },
    /// cgroup v2 with the memory controller available.
    V2 {
        /// The unified mount.
        root: PathBuf,
    },
    /// No usable memory controller (e.g. rootless without delegation).
    Unavailable,
}

/// Reads the layout under `sys` (`/sys/fs/cgroup` on a host). v1's memory controller wins when both exist, as
/// on hybrid hosts the v2 mount holds no controllers.
pub fn detect(sys: &Path) -> Layout {
    let v1 = sys.join("memory");
    if v1.join("memory.limit_in_bytes").exists() {
        return Layout::V1 { memory: v1 };
    }
    let controllers = std::fs::read_to_string(sys.join("cgroup.controllers")).unwrap_or_default();
    if controllers.split_whitespace().any(|c| c == "memory") {
        return Layout::V2 {
            root: sys.to_path_buf(),
        };
    }
    Layout::Unavailable
}

/// Why a step's cgroup could not be made.
#[derive(Debug, thiserror::Error)]
pub enum CgroupError {
    /// Limits were asked for but the host offers no memory controller.
    #[error("resource limits need a cgroup memory controller kiln may write, and this host offers none (cgroup v1 memory or v2 with memory delegated; a rootless kiln has no delegation here)")]
    Unavailable,
    /// A limit was asked for whose controller the host does not offer.
    #[error("--{flag} needs the cgroup {controller} controller, and this host does not offer it")]
    MissingController {
        /// The controller.
        controller: &'static str,
        /// The kiln build flag that asked for it.
        flag: &'static str,
    },
    /// Writing the cgroup tree failed.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
}

/// The cgroup of one RUN step, removed when dropped.
#[derive(Debug)]
pub struct StepCgroup {
    layout: Layout,
    /// The memory controller's directory (v1) or the one directory (v2).
    dir: PathBuf,
    /// Every directory made for the step: one per v1 controller, or the one v2 directory.
    dirs: Vec<PathBuf>,
    name: String,
}

/// Removes `<controller>/kiln/<name>` and what the runtime left inside it, in every v1 controller: the runtime
/// creates the intermediate levels of its cgroupsPath and removes only its own leaf.
fn remove_v1_tree(sys: &Path, name: &str) {
    let Ok(controllers) = std::fs::read_dir(sys) else {
        return;
    };
    for c in controllers.flatten() {
        let dir = c.path().join("kiln").join(name);
        if let Ok(entries) = std::fs::read_dir(&dir) {
            for e in entries.flatten() {
                if e.file_type().is_ok_and(|t| t.is_dir()) {
                    let _ = std::fs::remove_dir(e.path());
                }
            }
            let _ = std::fs::remove_dir(&dir);
        }
    }
}

fn write(path: PathBuf, value: &str) -> Result<(), CgroupError> {
    std::fs::write(&path, value).map_err(|source| CgroupError::Io { path, source })
}

fn mkdir(path: &Path) -> Result<(), CgroupError> {
    std::fs::create_dir_all(path).map_err(|source| CgroupError::Io {
        path: path.to_path_buf(),
        source,
    })
}

impl StepCgroup {
    /// Makes `kiln/<name>` in `layout` with `limits.memory` on it. Returns `None` when the host has no memory
    /// controller and no memory limit was asked for (the step then runs in the runtime's default cgroup).
    pub fn create(
        layout: &Layout,
        name: &str,
        limits: &Limits,
    ) -> Result<Option<StepCgroup>, CgroupError> {
        let mut dirs = Vec::new();
        let dir = match layout {
            Layout::V1 { memory } => {
                // pids and cpu have hierarchies of their own beside memory's (the step's own cgroup is always
                // the memory controller's, which tells an OOM kill apart).
                let sys = memory.parent().unwrap_or(memory);
                for (controller, wanted) in [
                    ("pids", limits.pids.is_some()),
                    ("cpu", limits.cpus.is_some()),
                ] {
                    // Only where a limit is asked for: entering a v1 cgroup costs a grace period of the
                    // kernel's, per controller, per step.
                    if !wanted {
                        continue;
                    }
                    let base = sys.join(controller);
                    if base.join("cgroup.procs").exists() {
                        dirs.push(base.join("kiln").join(name));
                    } else {
                        return Err(CgroupError::MissingController {
                            controller,
                            flag: if controller == "pids" {
                                "pids-limit"
                            } else {
                                "cpus"
                            },
                        });
                    }
                }
                memory.join("kiln").join(name)
            }
            Layout::V2 { root } => {
                // Controllers must be enabled on every level above the step's cgroup.
                mkdir(&root.join("kiln"))?;
                for level in [root.clone(), root.join("kiln")] {
                    let available = std::fs::read_to_string(level.join("cgroup.controllers"))
                        .unwrap_or_default();
                    let wanted: Vec<String> = ["memory", "pids", "cpu"]
                        .iter()
                        .filter(|c| available.split_whitespace().any(|a| a == **c))
                        .map(|c| format!("+{c}"))
                        .collect();
                    if !wanted.is_empty() {
                        write(level.join("cgroup.subtree_control"), &wanted.join(" "))?;
                    }
                }
                root.join("kiln").join(name)
            }
            Layout::Unavailable if *limits != Limits::default() => {
                return Err(CgroupError::Unavailable)
            }
            Layout::Unavailable => return Ok(None),
        };
        dirs.insert(0, dir.clone());
        // Dropping removes whatever was made so far if a later step fails.
        let cg = StepCgroup {
            layout: layout.clone(),
            dir,
            dirs,
            name: name.to_string(),
        };
        for d in &cg.dirs {
            mkdir(d)?;
        }
        cg.set_limits(limits)?;
        Ok(Some(cg))
    }

    fn set_limits(&self, limits: &Limits) -> Result<(), CgroupError> {
        const PERIOD: u64 = 100_000;
        let quota = |c: f64| ((c * PERIOD as f64).round() as u64).max(1000);
        let v1_dir = |controller: &str| {
            self.dirs
                .iter()
                .find(|d| {
                    d.parent()
                        .and_then(Path::parent)
                        .is_some_and(|p| p.ends_with(controller))
                })
                .cloned()
        };
        match &self.layout {
            Layout::V1 { .. } => {
                if let (Some(n), Some(d)) = (limits.pids, v1_dir("pids")) {
                    write(d.join("pids.max"), &n.to_string())?;
                }
                if let (Some(c), Some(d)) = (limits.cpus, v1_dir("cpu")) {
                    write(d.join("cpu.cfs_period_us"), &PERIOD.to_string())?;
                    write(d.join("cpu.cfs_quota_us"), &quota(c).to_string())?;
                }
            }
            Layout::V2 { .. } => {
                if let Some(n) = limits.pids {
                    write(self.dir.join("pids.max"), &n.to_string())?;
                }
                if let Some(c) = limits.cpus {
                    write(self.dir.join("cpu.max"), &format!("{} {PERIOD}", quota(c)))?;
                }
            }
            Layout::Unavailable => {}
        }
        let cg = self;
        if let Some(bytes) = limits.memory {
            match &cg.layout {
                Layout::V1 { .. } => {
                    write(cg.dir.join("memory.limit_in_bytes"), &bytes.to_string())?;
                    // With swap accounting, forbid swap beyond the limit too (Docker's --memory default).
                    let memsw = cg.dir.join("memory.memsw.limit_in_bytes");
                    if memsw.exists() {
                        write(memsw, &bytes.to_string())?;
                    }
                }
                Layout::V2 { .. } => {
                    write(cg.dir.join("memory.max"), &bytes.to_string())?;
                    let swap = cg.dir.join("memory.swap.max");
                    if swap.exists() {
                        write(swap, "0")?;
                    }
                }
                Layout::Unavailable => {}
            }
        }
        Ok(())
    }

    /// Kills every process in the step's cgroup (a cancelled step's, wherever its namespaces put them).
    pub fn kill_all(&self) {
        for d in &self.dirs {
            kill_procs(d);
        }
    }

    /// The files a process writes `0` into to enter the step's cgroup (one per v1 controller). On v1 that is
    /// `tasks`: moving only the calling thread lets the kernel skip its global threadgroup lock, whose write side
    /// waits for an RCU grace period whenever it has been idle — through `cgroup.procs` one RUN in three spent
    /// 10–20 ms there. The process entering is single-threaded (just forked), so its thread is all of it. v2
    /// has no such file outside threaded subtrees, so there it is `cgroup.procs`.
    pub fn procs_files(&self) -> Vec<PathBuf> {
        let file = match self.layout {
            Layout::V1 { .. } => "tasks",
            _ => "cgroup.procs",
        };
        self.dirs.iter().map(|d| d.join(file)).collect()
    }

    /// The `cgroupsPath` to give the runtime: a child of this cgroup, so the limit above it holds.
    pub fn runtime_path(&self) -> String {
        format!("/kiln/{}/step", self.name)
    }

    /// Whether the OOM killer ended the step, given how its process exited. v2 counts OOM kills up the tree, so
    /// kiln's cgroup sees the kill in the runtime's child. v1 counts them only in the victim's own cgroup, which
    /// the runtime has removed by now: there a SIGKILL after usage reached the limit is the sign.
    pub fn oom_killed(&self, exit_code: i32) -> bool {
        let read = |file: &str, key: &str| -> u64 {
            std::fs::read_to_string(self.dir.join(file))
                .ok()
                .and_then(|s| {
                    s.lines().find_map(|l| {
                        if key.is_empty() {
                            l.trim().parse::<u64>().ok()
                        } else {
                            l.strip_prefix(key)?.trim().parse::<u64>().ok()
                        }
                    })
                })
                .unwrap_or(0)
        };
        match self.layout {
            Layout::V2 { .. } => read("memory.events", "oom_kill ") > 0,
            Layout::V1 { .. } => {
                read("memory.oom_control", "oom_kill ") > 0
                    || exit_code == 128 + 9
                        && read("memory.max_usage_in_bytes", "")
                            >= read("memory.limit_in_bytes", "").max(1)
            }
            Layout::Unavailable => false,
        }
    }
}

impl Drop for StepCgroup {
    fn drop(&mut self) {
        if let Layout::V1 { memory } = &self.layout {
            if let Some(sys) = memory.parent() {
                remove_v1_tree(sys, &self.name);
            }
        }
        // Children first (the runtime normally removes its own); rmdir is how cgroups are removed. A process
        // of the step that outlived it (the kernel is still tearing its PID namespace down) is killed, and the
        // removal retried while the kernel empties the cgroup.
        for dir in &self.dirs {
            if let Ok(entries) = std::fs::read_dir(dir) {
                for e in entries.flatten() {
                    if e.file_type().is_ok_and(|t| t.is_dir()) {
                        let _ = std::fs::remove_dir(e.path());
                    }
                }
            }
            for attempt in 0..100 {
                match std::fs::remove_dir(dir) {
                    Err(e) if e.raw_os_error() == Some(libc::EBUSY) && attempt < 99 => {
                        kill_procs(dir);
                        std::thread::sleep(std::time::Duration::from_millis(5));
                    }
                    _ => break,
                }
            }
        }
    }
}

/// Kills every process in the cgroup `dir`.
fn kill_procs(dir: &Path) {
    let procs = std::fs::read_to_string(dir.join("cgroup.procs")).unwrap_or_default();
    for pid in procs.lines().filter_map(|p| p.trim().parse::<i32>().ok()) {
        if let Some(pid) = rustix::process::Pid::from_raw(pid) {
            let _ = rustix::process::kill_process(pid, rustix::process::Signal::KILL);
        }
    }
}

/// The step cgroups under `kiln/` whose names `stale` picks, in every controller (v1) or the unified tree (v2):
/// what [`sweep`] would remove.
pub fn stale_dirs(sys: &Path, stale: &dyn Fn(&str) -> bool) -> Vec<PathBuf> {
    let mut bases: Vec<PathBuf> = vec![sys.join("kiln")];
    if let Ok(controllers) = std::fs::read_dir(sys) {
        bases.extend(controllers.flatten().map(|c| c.path().join("kiln")));
    }
    let mut out = Vec::new();
    for base in bases {
        for e in std::fs::read_dir(&base).into_iter().flatten().flatten() {
            if stale(&e.file_name().to_string_lossy()) && e.path().is_dir() {
                out.push(e.path());
            }
        }
    }
    out.sort();
    out
}

/// Removes the step cgroups under `kiln/` whose names `stale` picks, in every controller (v1) or the unified tree
/// (v2), killing any process left in them first.
pub fn sweep(sys: &Path, stale: &dyn Fn(&str) -> bool) {
    let mut bases: Vec<PathBuf> = vec![sys.join("kiln")];
    if let Ok(controllers) = std::fs::read_dir(sys) {
        bases.extend(controllers.flatten().map(|c| c.path().join("kiln")));
    }
    for base in bases {
        let Ok(entries) = std::fs::read_dir(&base) else {
            continue;
        };
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if !stale(&name) || !e.path().is_dir() {
                continue;
            }
            for dir in [e.path().join("step"), e.path()] {
                kill_procs(&dir);
            }
            // The kernel takes a moment to empty a cgroup of killed processes.
            for _ in 0..50 {
                let _ = std::fs::remove_dir(e.path().join("step"));
                if std::fs::remove_dir(e.path()).is_ok() || !e.path().exists() {
                    break;
                }
                std::thread::sleep(std::time::Duration::from_millis(10));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A fake v2 mount: plain files stand in for the kernel's (the kernel would create the interface files).
    fn fake_v2() -> tempfile::TempDir {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(
            d.path().join("cgroup.controllers"),
            "cpuset cpu io memory pids\n",
        )
        .unwrap();
        std::fs::write(d.path().join("cgroup.subtree_control"), "").unwrap();
        std::fs::create_dir(d.path().join("kiln")).unwrap();
        std::fs::write(
            d.path().join("kiln/cgroup.controllers"),
            "cpu memory pids\n",
        )
        .unwrap();
        d
    }

    #[test]
    fn layouts_are_told_apart() {
        let v2 = fake_v2();
        assert_eq!(
            detect(v2.path()),
            Layout::V2 {
                root: v2.path().to_path_buf()
            }
        );
        let hybrid = fake_v2();
        std::fs::create_dir(hybrid.path().join("memory")).unwrap();
        std::fs::write(hybrid.path().join("memory/memory.limit_in_bytes"), "").unwrap();
        assert!(
            matches!(detect(hybrid.path()), Layout::V1 { .. }),
            "hybrid uses v1's memory"
        );
        let empty_v2 = tempfile::tempdir().unwrap();
        std::fs::write(empty_v2.path().join("cgroup.controllers"), "hugetlb\n").unwrap();
        assert_eq!(detect(empty_v2.path()), Layout::Unavailable);
    }

    #[test]
    fn v2_enables_controllers_sets_the_limit_and_reads_oom_kills() {
        let v2 = fake_v2();
        let layout = detect(v2.path());
        let limits = Limits {
            memory: Some(64 << 20),
            cpus: Some(1.5),
            pids: Some(100),
        };
        let cg = StepCgroup::create(&layout, "s1", &limits).unwrap().unwrap();
        let dir = v2.path().join("kiln/s1");
        let read = |f: &str| std::fs::read_to_string(dir.join(f)).unwrap();
        assert_eq!(read("memory.max"), "67108864");
        assert_eq!(read("pids.max"), "100");
        assert_eq!(read("cpu.max"), "150000 100000");
        assert_eq!(
            cg.procs_files(),
            [dir.join("cgroup.procs")],
            "one directory to enter"
        );
        assert_eq!(
            std::fs::read_to_string(v2.path().join("cgroup.subtree_control")).unwrap(),
            "+memory +pids +cpu"
        );
        assert_eq!(cg.runtime_path(), "/kiln/s1/step");
        assert!(!cg.oom_killed(137));
        std::fs::write(
            dir.join("memory.events"),
            "low 0\nhigh 0\nmax 3\noom 1\noom_kill 1\n",
        )
        .unwrap();
        assert!(cg.oom_killed(137));
        // Files stand in for the kernel's here, so removal is left to the kernel's rules in real use.
        for f in ["memory.max", "memory.events", "pids.max", "cpu.max"] {
            std::fs::remove_file(dir.join(f)).unwrap();
        }
        drop(cg);
        assert!(!dir.exists(), "removed after the step");
    }

    #[test]
    fn no_controller_is_an_error_only_when_limits_are_asked_for() {
        let limits = Limits {
            memory: Some(1),
            ..Default::default()
        };
        assert!(matches!(
            StepCgroup::create(&Layout::Unavailable, "x", &limits),
            Err(CgroupError::Unavailable)
        ));
        assert!(
            StepCgroup::create(&Layout::Unavailable, "x", &Limits::default())
                .unwrap()
                .is_none()
        );
    }

    #[test]
    fn v1_puts_each_limit_in_its_controller_and_enters_them_all() {
        let d = tempfile::tempdir().unwrap();
        for c in ["memory", "pids", "cpu"] {
            std::fs::create_dir(d.path().join(c)).unwrap();
            std::fs::write(d.path().join(c).join("cgroup.procs"), "").unwrap();
        }
        std::fs::write(d.path().join("memory/memory.limit_in_bytes"), "").unwrap();
        let limits = Limits {
            memory: Some(1 << 20),
            cpus: Some(0.5),
            pids: Some(7),
        };
        let cg = StepCgroup::create(&detect(d.path()), "s", &limits)
            .unwrap()
            .unwrap();
        let read = |f: &str| std::fs::read_to_string(d.path().join(f)).unwrap();
        assert_eq!(read("memory/kiln/s/memory.limit_in_bytes"), "1048576");
        assert_eq!(read("pids/kiln/s/pids.max"), "7");
        assert_eq!(read("cpu/kiln/s/cpu.cfs_quota_us"), "50000");
        assert_eq!(read("cpu/kiln/s/cpu.cfs_period_us"), "100000");
        // v1: the calling thread enters through `tasks` (no global lock), one file per controller.
        assert_eq!(
            cg.procs_files(),
            ["memory", "pids", "cpu"].map(|c| d.path().join(c).join("kiln/s/tasks"))
        );
        let no_cpu = tempfile::tempdir().unwrap();
        std::fs::create_dir(no_cpu.path().join("memory")).unwrap();
        std::fs::write(no_cpu.path().join("memory/memory.limit_in_bytes"), "").unwrap();
        assert!(matches!(
            StepCgroup::create(&detect(no_cpu.path()), "s", &limits),
            Err(CgroupError::MissingController { .. })
        ));
        // Plain files stand in for the kernel's: leave removal to the tempdir.
        std::mem::forget(cg);
    }

    #[test]
    fn v1_reads_oom_control() {
        let d = tempfile::tempdir().unwrap();
        std::fs::create_dir(d.path().join("memory")).unwrap();
        std::fs::write(d.path().join("memory/memory.limit_in_bytes"), "").unwrap();
        let layout = detect(d.path());
        let cg = StepCgroup::create(&layout, "s", &Limits::default())
            .unwrap()
            .unwrap();
        let dir = d.path().join("memory/kiln/s");
        std::fs::write(
            dir.join("memory.oom_control"),
            "oom_kill_disable 0\nunder_oom 0\noom_kill 0\n",
        )
        .unwrap();
        std::fs::write(dir.join("memory.max_usage_in_bytes"), "4096\n").unwrap();
        std::fs::write(dir.join("memory.limit_in_bytes"), "4096\n").unwrap();
        assert!(cg.oom_killed(137), "SIGKILL after hitting the limit");
        assert!(!cg.oom_killed(1), "a plain failure after hitting the limit");
        std::fs::write(
            dir.join("memory.oom_control"),
            "oom_kill_disable 0\nunder_oom 0\noom_kill 2\n",
        )
        .unwrap();
        assert!(cg.oom_killed(1));
        for f in [
            "memory.oom_control",
            "memory.max_usage_in_bytes",
            "memory.limit_in_bytes",
        ] {
            std::fs::remove_file(dir.join(f)).unwrap();
        }
    }
}
