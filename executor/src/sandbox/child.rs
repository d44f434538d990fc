//! What runs between fork and exec: raw system calls over the prepared [`Plan`], nothing that allocates or
//! locks. Two processes: the first (the `Command`'s child) enters the cgroup and the new namespaces, forks the
//! second — PID 1 of the new PID namespace — closes every inherited descriptor, waits, and exits with its status.
//! The second builds the root filesystem, pivots into it, drops privileges and execs the step's command.
//! A failed set-up step is written to the report pipe as (stage, index, errno) and the process exits 127.

use std::os::fd::AsRawFd;

use super::plan::{Plan, Step};

/// Set-up stages, as reported through the pipe.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u32)]
pub(super) enum Stage {
    Orphaned = 1,
    Cgroup,
    JoinNetwork,
    Unshare,
    Loopback,
    Fork,
    Propagation,
    RootBind,
    MountTarget,
    Mount,
    Device,
    PivotRoot,
    Mask,
    Readonly,
    Hostname,
    Rlimit,
    Cwd,
    Bounding,
    Groups,
    Ids,
    Capabilities,
    NoNewPrivs,
    Seccomp,
    Exec,
}

impl Stage {
    pub(super) fn from_u32(n: u32) -> Option<Stage> {
        // Every stage lies between the first and the last, numbered in order.
        if (Stage::Orphaned as u32..=Stage::Exec as u32).contains(&n) {
            // SAFETY: `Stage` is `repr(u32)` with consecutive values from `Orphaned` to `Exec`.
            Some(unsafe { std::mem::transmute::<u32, Stage>(n) })
        } else {
            None
        }
    }
}

/// The exit status of a process whose set-up failed (its reason is in the report pipe).
pub(super) const SETUP_FAILED: i32 = 127;

fn errno() -> i32 {
    std::io::Error::last_os_error().raw_os_error().unwrap_or(0)
}

/// Reports a failure and exits.
unsafe fn fail(plan: &Plan, stage: Stage, index: usize, err: i32) -> ! {
    // SAFETY: writes a local 12-byte buffer to the report pipe the plan owns (open until exec), then exits
    // without running any destructor of the forked copy of kiln.
    unsafe {
        let mut msg = [0u8; 12];
        msg[0..4].copy_from_slice(&(stage as u32).to_le_bytes());
        msg[4..8].copy_from_slice(&(index as u32).to_le_bytes());
        msg[8..12].copy_from_slice(&err.to_le_bytes());
        libc::write(plan.report.as_raw_fd(), msg.as_ptr().cast(), msg.len());
        libc::_exit(SETUP_FAILED)
    }
}

/// `check(plan, stage, index, result)`: fails the stage when a call returned -1.
unsafe fn check(plan: &Plan, stage: Stage, index: usize, r: libc::c_long) {
    // SAFETY: `fail` is only reached after a failed call, in the forked child every caller runs in.
    unsafe {
        if r == -1 {
            fail(plan, stage, index, errno());
        }
    }
}

/// Closes every descriptor from 3 up except `keep` (ascending). Right after fork: a copy of a descriptor another
/// thread has open for writing (a binary being copied into a rootfs) would make exec of that file fail with
/// ETXTBSY for as long as this process held it.
unsafe fn close_all_but(keep: &[i32]) {
    // SAFETY: runs right after fork in a child with a single thread; closing descriptors it does not use (every
    // one but `keep`) cannot invalidate memory, and nothing in this process reads them afterwards.
    unsafe {
        let mut from = 3u32;
        for &k in keep.iter().chain(std::iter::once(&i32::MAX)) {
            let k = k as u32;
            if k > from {
                let to = k - 1;
                if libc::syscall(libc::SYS_close_range, from, to, 0u32) == -1 {
                    for fd in from..=to.min(4095) {
                        libc::close(fd as i32);
                    }
                }
            }
            from = from.max(k.saturating_add(1));
        }
    }
}

/// The first child: runs in the `Command`'s pre_exec and never returns.
///
/// # Safety
/// Only in a freshly forked child; `plan` was built by [`Plan::new`].
pub(super) unsafe fn first(plan: &Plan) -> ! {
    // SAFETY: the caller guarantees a freshly forked, single-threaded child and a plan built by `Plan::new`:
    // every pointer passed below is a NUL-terminated C string or a buffer the plan owns and keeps unchanged, or a
    // local; nothing allocates or takes a lock, and the process ends in `second`'s exec or in `_exit`.
    unsafe {
        // Keep only the report pipe and the network namespace to join.
        let report = plan.report.as_raw_fd();
        let netns = plan.netns.as_ref().map_or(report, |n| n.as_raw_fd());
        close_all_but(&[report.min(netns), report.max(netns)]);
        // Die with kiln; if kiln is already gone, stop here.
        libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL, 0, 0, 0);
        if libc::getppid() != plan.parent {
            fail(plan, Stage::Orphaned, 0, libc::ESRCH);
        }
        for (i, procs) in plan.cgroup_procs.iter().enumerate() {
            let fd = libc::open(procs.as_ptr(), libc::O_WRONLY | libc::O_CLOEXEC);
            check(plan, Stage::Cgroup, i, fd.into());
            let r = libc::write(fd, b"0".as_ptr().cast(), 1);
            check(plan, Stage::Cgroup, i, r as libc::c_long);
            libc::close(fd);
        }
        if let Some(ns) = &plan.netns {
            check(
                plan,
                Stage::JoinNetwork,
                0,
                libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET).into(),
            );
        }
        check(plan, Stage::Unshare, 0, libc::unshare(plan.unshare).into());
        if plan.loopback {
            loopback_up(plan);
        }
        let pid = libc::syscall(libc::SYS_clone, libc::SIGCHLD as libc::c_ulong, 0, 0, 0, 0);
        check(plan, Stage::Fork, 0, pid);
        if pid == 0 {
            second(plan);
        }
        // Hold nothing open while waiting: an inherited pipe end would keep another step's reader waiting.
        close_all_but(&[]);
        let mut status = 0;
        loop {
            let r = libc::waitpid(pid as libc::pid_t, &mut status, 0);
            if r == -1 && errno() == libc::EINTR {
                continue;
            }
            break;
        }
        let code = if libc::WIFEXITED(status) {
            libc::WEXITSTATUS(status)
        } else if libc::WIFSIGNALED(status) {
            128 + libc::WTERMSIG(status)
        } else {
            SETUP_FAILED
        };
        libc::_exit(code)
    }
}

/// Brings `lo` up in a new network namespace (runc does the same), so `--network=none` still has loopback.
unsafe fn loopback_up(plan: &Plan) {
    // SAFETY: called in the forked child only; `fail` writes to the plan's report pipe and exits.
    unsafe {
        if let Err(e) = crate::network::loopback_up() {
            fail(plan, Stage::Loopback, 0, e);
        }
    }
}

/// Makes each missing path of `target` (directories, and the last a file when `file`), refusing symlinks.
unsafe fn make_target(plan: &Plan, index: usize, target: &[std::ffi::CString], file: bool) {
    // SAFETY: in the forked child only; `st` is a zeroed plain C struct (all-zero is a valid `stat`) that lstat
    // fills, and every path is a NUL-terminated C string of the plan.
    unsafe {
        for (i, p) in target.iter().enumerate() {
            let last = i + 1 == target.len();
            let mut st: libc::stat = std::mem::zeroed();
            if libc::lstat(p.as_ptr(), &mut st) == 0 {
                if st.st_mode & libc::S_IFMT == libc::S_IFLNK {
                    fail(plan, Stage::MountTarget, index, libc::ELOOP);
                }
                continue;
            }
            if errno() != libc::ENOENT {
                fail(plan, Stage::MountTarget, index, errno());
            }
            // Another step sharing this directory (a cache mount two steps hold at once, with a mount nested in
            // it) may make the same point between the lstat and here: what it made is taken when it is what
            // this step would have made, never a link.
            let made = if last && file {
                let fd = libc::open(
                    p.as_ptr(),
                    libc::O_CREAT
                        | libc::O_EXCL
                        | libc::O_WRONLY
                        | libc::O_CLOEXEC
                        | libc::O_NOFOLLOW,
                    0o644,
                );
                if fd >= 0 {
                    libc::close(fd);
                }
                fd
            } else {
                libc::mkdir(p.as_ptr(), 0o755)
            };
            if made < 0 && errno() == libc::EEXIST {
                let want = if last && file {
                    libc::S_IFREG
                } else {
                    libc::S_IFDIR
                };
                if libc::lstat(p.as_ptr(), &mut st) == 0 && st.st_mode & libc::S_IFMT == want {
                    continue;
                }
                fail(plan, Stage::MountTarget, index, libc::EEXIST);
            }
            check(plan, Stage::MountTarget, index, made.into());
        }
    }
}

fn opt(c: &Option<std::ffi::CString>) -> *const libc::c_char {
    c.as_ref().map_or(std::ptr::null(), |c| c.as_ptr())
}

/// PID 1 of the step: builds its root, drops privileges, execs.
unsafe fn second(plan: &Plan) -> ! {
    // SAFETY: in the second forked child (PID 1 of the step), single-threaded: every pointer handed to the kernel
    // is a NUL-terminated C string, pointer array or buffer the plan owns and never changes after building, or a
    // local that outlives the call (`stat`/`statvfs` are zeroed plain C structs, valid when all-zero); nothing
    // allocates or takes a lock, and the process ends in exec or in `fail`'s `_exit`.
    unsafe {
        libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL, 0, 0, 0);
        // Only the report pipe is left (close-on-exec, so its end tells kiln the exec happened).
        close_all_but(&[plan.report.as_raw_fd()]);
        libc::umask(0);
        let root = plan.rootfs.as_ptr();
        check(
            plan,
            Stage::Propagation,
            0,
            libc::mount(
                std::ptr::null(),
                c"/".as_ptr(),
                std::ptr::null(),
                libc::MS_REC | libc::MS_PRIVATE,
                std::ptr::null(),
            )
            .into(),
        );
        check(
            plan,
            Stage::RootBind,
            0,
            libc::mount(
                root,
                root,
                std::ptr::null(),
                libc::MS_BIND | libc::MS_REC,
                std::ptr::null(),
            )
            .into(),
        );
        // The rootfs is nodev: a device node a step makes there cannot be opened (see plan.rs).
        check(
            plan,
            Stage::RootBind,
            1,
            libc::mount(
                std::ptr::null(),
                root,
                std::ptr::null(),
                libc::MS_BIND | libc::MS_REMOUNT | libc::MS_NODEV,
                std::ptr::null(),
            )
            .into(),
        );
        for (i, step) in plan.steps.iter().enumerate() {
            match step {
                Step::Mount {
                    target,
                    file,
                    source,
                    fstype,
                    flags,
                    data,
                    remount,
                    propagation,
                } => {
                    make_target(plan, i, target, *file);
                    let Some(t) = target.last() else { continue };
                    check(
                        plan,
                        Stage::Mount,
                        i,
                        libc::mount(
                            opt(source),
                            t.as_ptr(),
                            opt(fstype),
                            *flags,
                            opt(data).cast(),
                        )
                        .into(),
                    );
                    if let Some(extra) = remount {
                        check(
                            plan,
                            Stage::Mount,
                            i,
                            libc::mount(
                                std::ptr::null(),
                                t.as_ptr(),
                                std::ptr::null(),
                                libc::MS_BIND | libc::MS_REMOUNT | extra,
                                std::ptr::null(),
                            )
                            .into(),
                        );
                    }
                    if *propagation != 0 {
                        check(
                            plan,
                            Stage::Mount,
                            i,
                            libc::mount(
                                std::ptr::null(),
                                t.as_ptr(),
                                std::ptr::null(),
                                *propagation,
                                std::ptr::null(),
                            )
                            .into(),
                        );
                    }
                }
                Step::Symlink { target, link } => {
                    check(
                        plan,
                        Stage::Device,
                        i,
                        libc::symlink(target.as_ptr(), link.as_ptr()).into(),
                    );
                }
            }
        }
        check(plan, Stage::PivotRoot, 0, libc::chdir(root).into());
        // pivot_root(".", "."): the old root ends up stacked on the new one, and is lazily detached at once.
        check(
            plan,
            Stage::PivotRoot,
            0,
            libc::syscall(libc::SYS_pivot_root, c".".as_ptr(), c".".as_ptr()),
        );
        check(
            plan,
            Stage::PivotRoot,
            1,
            libc::umount2(c".".as_ptr(), libc::MNT_DETACH).into(),
        );
        check(plan, Stage::PivotRoot, 2, libc::chdir(c"/".as_ptr()).into());
        for (i, p) in plan.masked.iter().enumerate() {
            let mut st: libc::stat = std::mem::zeroed();
            if libc::stat(p.as_ptr(), &mut st) != 0 {
                continue;
            }
            let r = if st.st_mode & libc::S_IFMT == libc::S_IFDIR {
                libc::mount(
                    c"tmpfs".as_ptr(),
                    p.as_ptr(),
                    c"tmpfs".as_ptr(),
                    libc::MS_RDONLY,
                    std::ptr::null(),
                )
            } else {
                libc::mount(
                    c"/dev/null".as_ptr(),
                    p.as_ptr(),
                    std::ptr::null(),
                    libc::MS_BIND,
                    std::ptr::null(),
                )
            };
            check(plan, Stage::Mask, i, r.into());
        }
        for (i, p) in plan.readonly.iter().enumerate() {
            let r = libc::mount(
                p.as_ptr(),
                p.as_ptr(),
                std::ptr::null(),
                libc::MS_BIND | libc::MS_REC,
                std::ptr::null(),
            );
            if r != 0 && errno() == libc::ENOENT {
                continue;
            }
            check(plan, Stage::Readonly, i, r.into());
            // A remount must repeat the flags the mount already has (locked ones cannot be dropped).
            let mut vfs: libc::statvfs = std::mem::zeroed();
            libc::statvfs(p.as_ptr(), &mut vfs);
            let keep =
                vfs.f_flag as libc::c_ulong & (libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC);
            check(
                plan,
                Stage::Readonly,
                i,
                libc::mount(
                    p.as_ptr(),
                    p.as_ptr(),
                    std::ptr::null(),
                    libc::MS_BIND | libc::MS_REMOUNT | libc::MS_RDONLY | libc::MS_REC | keep,
                    std::ptr::null(),
                )
                .into(),
            );
        }
        if let Some(h) = &plan.hostname {
            check(
                plan,
                Stage::Hostname,
                0,
                libc::sethostname(h.as_ptr(), h.as_bytes().len()).into(),
            );
        }
        for (i, (resource, soft, hard)) in plan.rlimits.iter().enumerate() {
            let lim = libc::rlimit64 {
                rlim_cur: *soft,
                rlim_max: *hard,
            };
            check(
                plan,
                Stage::Rlimit,
                i,
                libc::syscall(
                    libc::SYS_prlimit64,
                    0,
                    *resource as libc::c_long,
                    &lim as *const libc::rlimit64,
                    std::ptr::null::<libc::rlimit64>(),
                ),
            );
        }
        // WORKDIR is made if missing, as root, before the user changes.
        for (i, p) in plan.cwd.iter().enumerate() {
            if libc::mkdir(p.as_ptr(), 0o755) != 0 && errno() != libc::EEXIST {
                fail(plan, Stage::Cwd, i, errno());
            }
        }
        if let Some(cwd) = plan.cwd.last() {
            check(plan, Stage::Cwd, 0, libc::chdir(cwd.as_ptr()).into());
        }
        for cap in &plan.drop_bounding {
            let r = libc::prctl(libc::PR_CAPBSET_DROP, *cap, 0, 0, 0);
            if r != 0 && errno() != libc::EINVAL {
                fail(plan, Stage::Bounding, *cap as usize, errno());
            }
        }
        if plan.uid != 0 {
            libc::prctl(libc::PR_SET_KEEPCAPS, 1, 0, 0, 0);
        }
        let r = libc::syscall(libc::SYS_setgroups, plan.groups.len(), plan.groups.as_ptr());
        // A user namespace with a single-id mapping forbids setgroups; with no groups to set, none are lost.
        if r != 0 && !(plan.groups.is_empty() && errno() == libc::EPERM) {
            fail(plan, Stage::Groups, 0, errno());
        }
        // Raw calls: glibc's wrappers would signal other threads to change theirs too, and there are none here.
        check(
            plan,
            Stage::Ids,
            0,
            libc::syscall(libc::SYS_setresgid, plan.gid, plan.gid, plan.gid),
        );
        check(
            plan,
            Stage::Ids,
            1,
            libc::syscall(libc::SYS_setresuid, plan.uid, plan.uid, plan.uid),
        );
        #[repr(C)]
        struct Header {
            version: u32,
            pid: i32,
        }
        #[repr(C)]
        #[derive(Clone, Copy)]
        struct Data {
            effective: u32,
            permitted: u32,
            inheritable: u32,
        }
        let header = Header {
            version: 0x2008_0522,
            pid: 0,
        };
        let c = plan.caps;
        let data = [
            Data {
                effective: c.effective as u32,
                permitted: c.permitted as u32,
                inheritable: c.inheritable as u32,
            },
            Data {
                effective: (c.effective >> 32) as u32,
                permitted: (c.permitted >> 32) as u32,
                inheritable: (c.inheritable >> 32) as u32,
            },
        ];
        check(
            plan,
            Stage::Capabilities,
            0,
            libc::syscall(libc::SYS_capset, &header, data.as_ptr()),
        );
        libc::prctl(
            libc::PR_CAP_AMBIENT,
            libc::PR_CAP_AMBIENT_CLEAR_ALL,
            0,
            0,
            0,
        );
        if plan.no_new_privs {
            check(
                plan,
                Stage::NoNewPrivs,
                0,
                libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0).into(),
            );
        }
        libc::umask(0o022);
        if !plan.seccomp.is_empty() {
            let prog = libc::sock_fprog {
                len: plan.seccomp.len() as u16,
                filter: plan.seccomp.as_ptr().cast_mut(),
            };
            check(
                plan,
                Stage::Seccomp,
                0,
                libc::prctl(
                    libc::PR_SET_SECCOMP,
                    libc::SECCOMP_MODE_FILTER,
                    &prog as *const libc::sock_fprog,
                    0,
                    0,
                )
                .into(),
            );
        }
        // execvp's search: the first candidate that runs wins; EACCES is remembered over a later ENOENT.
        let mut err = libc::ENOENT;
        for p in &plan.exec {
            libc::execve(p.as_ptr(), plan.argv_ptrs.as_ptr(), plan.envp_ptrs.as_ptr());
            match errno() {
                libc::ENOENT | libc::ENOTDIR => {}
                libc::EACCES => err = libc::EACCES,
                e => {
                    err = e;
                    break;
                }
            }
        }
        fail(plan, Stage::Exec, 0, err)
    }
}
