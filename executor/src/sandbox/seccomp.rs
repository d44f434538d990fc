//! The spec's seccomp section compiled into a classic BPF program, without libseccomp: the built-in runtime must
//! be one static binary with nothing to install. Only what kiln's own spec uses is supported (an allow-by-default
//! filter, ERRNO/KILL/TRAP/LOG actions, `==`, `!=` and masked-`==` argument tests); anything else is refused
//! with an error rather than silently dropped. System calls of another ABI than the native one (i386 or x32 calls
//! on x86_64) fail with ENOSYS, so the deny list cannot be bypassed through them.

use oci_spec::runtime::{LinuxSeccomp, LinuxSeccompAction, LinuxSeccompOperator};

/// Why the filter could not be compiled.
#[derive(Debug, thiserror::Error)]
pub enum SeccompError {
    /// The machine's architecture has no system call table here.
    #[error("the built-in runtime's seccomp filter knows the system calls of x86_64 only; use --runtime=runc on this machine")]
    Architecture,
    /// The spec asks for something the compiler does not do.
    #[error("seccomp: {0} is not supported by the built-in runtime")]
    Unsupported(String),
}

const LD_W_ABS: u16 = 0x20;
const JEQ_K: u16 = 0x15;
const JGE_K: u16 = 0x35;
const AND_K: u16 = 0x54;
const RET_K: u16 = 0x06;
const JA: u16 = 0x05;

const RET_ALLOW: u32 = 0x7fff_0000;
const RET_ERRNO: u32 = 0x0005_0000;
const RET_KILL_THREAD: u32 = 0;
const RET_KILL_PROCESS: u32 = 0x8000_0000;
const RET_TRAP: u32 = 0x0003_0000;
const RET_LOG: u32 = 0x7ffc_0000;

/// Offsets in `struct seccomp_data`.
const NR: u32 = 0;
const ARCH: u32 = 4;
const ARGS: u32 = 16;

#[cfg(target_arch = "x86_64")]
mod table {
    /// AUDIT_ARCH_X86_64.
    pub const ARCH: u32 = 0xc000_003e;
    /// x32 system calls are native numbers with this bit set.
    pub const X32_BIT: Option<u32> = Some(0x4000_0000);

    /// The x86_64 number of a system call; `None` for names this architecture does not have (as libseccomp
    /// skips them).
    pub fn number(name: &str) -> Option<u32> {
        Some(match name {
            "acct" => 163,
            "add_key" => 248,
            "adjtimex" => 159,
            "bpf" => 321,
            "clock_adjtime" => 305,
            "clock_settime" => 227,
            "clone" => 56,
            "clone3" => 435,
            "create_module" => 174,
            "delete_module" => 176,
            "finit_module" => 313,
            "fsconfig" => 431,
            "fsmount" => 432,
            "fsopen" => 430,
            "fspick" => 433,
            "get_kernel_syms" => 177,
            "init_module" => 175,
            "io_uring_enter" => 426,
            "io_uring_register" => 427,
            "io_uring_setup" => 425,
            "ioperm" => 173,
            "iopl" => 172,
            "kexec_file_load" => 320,
            "kexec_load" => 246,
            "keyctl" => 250,
            "lookup_dcookie" => 212,
            "mount" => 165,
            "mount_setattr" => 442,
            "move_mount" => 429,
            "name_to_handle_at" => 303,
            "nfsservctl" => 180,
            "open_by_handle_at" => 304,
            "open_tree" => 428,
            "perf_event_open" => 298,
            "personality" => 135,
            "pivot_root" => 155,
            "ptrace" => 101,
            "quotactl" => 179,
            "reboot" => 169,
            "request_key" => 249,
            "setns" => 308,
            "settimeofday" => 164,
            "swapoff" => 168,
            "swapon" => 167,
            "umount2" => 166,
            "unshare" => 272,
            "uselib" => 134,
            "userfaultfd" => 323,
            _ => return None,
        })
    }
}

fn stmt(code: u16, k: u32) -> libc::sock_filter {
    libc::sock_filter {
        code,
        jt: 0,
        jf: 0,
        k,
    }
}

fn jump(code: u16, k: u32, jt: u8, jf: u8) -> libc::sock_filter {
    libc::sock_filter { code, jt, jf, k }
}

fn action(a: LinuxSeccompAction, errno: Option<u32>) -> Result<u32, SeccompError> {
    Ok(match a {
        LinuxSeccompAction::ScmpActAllow => RET_ALLOW,
        LinuxSeccompAction::ScmpActErrno => RET_ERRNO | (errno.unwrap_or(1) & 0xffff),
        LinuxSeccompAction::ScmpActKill | LinuxSeccompAction::ScmpActKillThread => RET_KILL_THREAD,
        LinuxSeccompAction::ScmpActKillProcess => RET_KILL_PROCESS,
        LinuxSeccompAction::ScmpActTrap => RET_TRAP,
        LinuxSeccompAction::ScmpActLog => RET_LOG,
        other => return Err(SeccompError::Unsupported(format!("the action {other}"))),
    })
}

/// One rule's instructions, to run with the call's number already matched: each argument test (the 32-bit halves
/// under their masks; a half that the mask leaves out is not tested), then the rule's return. A mismatch jumps
/// to the end of the block, where the next rule of the same call, or the number's reload, begins.
fn rule_block<'a>(
    args: impl Iterator<Item = &'a oci_spec::runtime::LinuxSeccompArg>,
    ret: u32,
) -> Result<Vec<libc::sock_filter>, SeccompError> {
    let mut tests = Vec::new();
    for arg in args {
        if arg.index() > 5 {
            return Err(SeccompError::Unsupported(format!(
                "argument index {}",
                arg.index()
            )));
        }
        let (mask, want) = match arg.op() {
            LinuxSeccompOperator::ScmpCmpEq => (u64::MAX, arg.value(), true),
            LinuxSeccompOperator::ScmpCmpNe => (u64::MAX, arg.value(), false),
            LinuxSeccompOperator::ScmpCmpMaskedEq => {
                (arg.value(), arg.value_two().unwrap_or(0), true)
            }
            other => return Err(SeccompError::Unsupported(format!("the operator {other}"))),
        }
        .into_parts();
        tests.push((ARGS + 8 * arg.index() as u32, mask, want));
    }
    // Instructions first, with `END` standing for the end of the block; offsets are filled in once it is known.
    const END: u8 = u8::MAX;
    let mut block: Vec<libc::sock_filter> = Vec::new();
    for (arg_off, mask, (value, equal)) in tests {
        let (lo_mask, hi_mask) = (mask as u32, (mask >> 32) as u32);
        let (lo, hi) = (value as u32, (value >> 32) as u32);
        if equal {
            for (off, m, v) in [(arg_off, lo_mask, lo), (arg_off + 4, hi_mask, hi)] {
                if m == 0 && v == 0 {
                    continue;
                }
                block.push(stmt(LD_W_ABS, off));
                block.push(stmt(AND_K, m));
                block.push(jump(JEQ_K, v, 0, END));
            }
        } else {
            // `!=` holds when either half differs: a differing low half matches at once (skips the high test).
            block.push(stmt(LD_W_ABS, arg_off));
            block.push(stmt(AND_K, lo_mask));
            block.push(jump(JEQ_K, lo, 0, 3));
            block.push(stmt(LD_W_ABS, arg_off + 4));
            block.push(stmt(AND_K, hi_mask));
            block.push(jump(JEQ_K, hi, END, 0));
        }
    }
    block.push(stmt(RET_K, ret));
    let len = block.len();
    if len > 250 {
        return Err(SeccompError::Unsupported("a rule this long".into()));
    }
    for (i, ins) in block.iter_mut().enumerate() {
        let to_end = (len - i - 1) as u8;
        if ins.code == JEQ_K {
            if ins.jt == END {
                ins.jt = to_end;
            }
            if ins.jf == END {
                ins.jf = to_end;
            }
        }
    }
    Ok(block)
}

/// Compiles `s` for this machine.
#[cfg(target_arch = "x86_64")]
pub fn compile(s: &LinuxSeccomp) -> Result<Vec<libc::sock_filter>, SeccompError> {
    let enosys = RET_ERRNO | libc::ENOSYS as u32;
    let mut prog = vec![
        stmt(LD_W_ABS, ARCH),
        jump(JEQ_K, table::ARCH, 1, 0),
        stmt(RET_K, enosys),
        stmt(LD_W_ABS, NR),
    ];
    if let Some(bit) = table::X32_BIT {
        prog.push(jump(JGE_K, bit, 0, 1));
        prog.push(stmt(RET_K, enosys));
    }
    // Rules by system call number, each number's rules in the order the spec gives them: a call is tested only
    // against its own rules, so grouping keeps the meaning, and every other call passes a whole group with one
    // comparison (personality alone has 60 rules).
    let mut groups: Vec<(u32, Vec<libc::sock_filter>)> = Vec::new();
    for rule in s.syscalls().iter().flatten() {
        let ret = action(rule.action(), rule.errno_ret())?;
        let block = rule_block(rule.args().iter().flatten(), ret)?;
        for nr in rule.names().iter().filter_map(|n| table::number(n)) {
            match groups.iter_mut().find(|(n, _)| *n == nr) {
                Some((_, body)) => body.extend_from_slice(&block),
                None => groups.push((nr, block.clone())),
            }
        }
    }
    for (nr, body) in groups {
        // A body that tested arguments leaves one in the accumulator: the number is loaded again after it.
        let reload = body.iter().any(|i| i.code == LD_W_ABS);
        let skip = body.len() + usize::from(reload);
        match u8::try_from(skip) {
            Ok(skip) => prog.push(jump(JEQ_K, nr, 0, skip)),
            Err(_) => {
                prog.push(jump(JEQ_K, nr, 1, 0));
                prog.push(stmt(JA, skip as u32));
            }
        }
        prog.extend(body);
        if reload {
            prog.push(stmt(LD_W_ABS, NR));
        }
    }
    prog.push(stmt(
        RET_K,
        action(s.default_action(), s.default_errno_ret())?,
    ));
    if prog.len() > 4096 {
        return Err(SeccompError::Unsupported("a filter this long".into()));
    }
    Ok(prog)
}

/// Compiles `s` for this machine.
#[cfg(not(target_arch = "x86_64"))]
pub fn compile(_: &LinuxSeccomp) -> Result<Vec<libc::sock_filter>, SeccompError> {
    Err(SeccompError::Architecture)
}

trait IntoParts {
    fn into_parts(self) -> (u64, (u64, bool));
}

impl IntoParts for (u64, u64, bool) {
    fn into_parts(self) -> (u64, (u64, bool)) {
        (self.0, (self.1, self.2))
    }
}

#[cfg(all(test, target_arch = "x86_64"))]
mod tests {
    use super::*;

    /// Runs the program on one `seccomp_data` the way the kernel's interpreter would (the subset used here).
    fn eval(prog: &[libc::sock_filter], arch: u32, nr: u32, args: [u64; 6]) -> u32 {
        let mut data = [0u8; 64];
        data[0..4].copy_from_slice(&nr.to_le_bytes());
        data[4..8].copy_from_slice(&arch.to_le_bytes());
        for (i, a) in args.iter().enumerate() {
            data[16 + 8 * i..24 + 8 * i].copy_from_slice(&a.to_le_bytes());
        }
        let (mut a, mut pc) = (0u32, 0usize);
        loop {
            let ins = prog[pc];
            pc += 1;
            match ins.code {
                LD_W_ABS => {
                    let o = ins.k as usize;
                    a = u32::from_le_bytes(data[o..o + 4].try_into().unwrap());
                }
                AND_K => a &= ins.k,
                RET_K => return ins.k,
                JEQ_K => pc += usize::from(if a == ins.k { ins.jt } else { ins.jf }),
                JGE_K => pc += usize::from(if a >= ins.k { ins.jt } else { ins.jf }),
                JA => pc += ins.k as usize,
                c => panic!("unexpected opcode {c:#x}"),
            }
        }
    }

    fn kiln_filter() -> Vec<libc::sock_filter> {
        let p = crate::process::Process {
            args: vec!["true".into()],
            env: vec![],
            cwd: "/".into(),
            uid: 0,
            gid: 0,
            additional_gids: vec![],
            hostname: "h".into(),
            rootfs: "/r".into(),
            mounts: vec![],
            network: crate::process::Network::Isolated,
            limits: Default::default(),
            privileged: false,
            rlimits: vec![],
            devices: vec![],
        };
        let spec = crate::spec::config(&p, None, None).unwrap();
        let s = spec.linux().as_ref().unwrap().seccomp().clone().unwrap();
        compile(&s).unwrap()
    }

    #[test]
    fn kiln_s_filter_denies_its_list_and_namespace_clones_only() {
        let prog = kiln_filter();
        let x86_64 = table::ARCH;
        let eperm = RET_ERRNO | 1;
        assert_eq!(eval(&prog, x86_64, 272, [0; 6]), eperm, "unshare");
        assert_eq!(eval(&prog, x86_64, 167, [0; 6]), eperm, "swapon");
        // personality: exactly Docker's five values pass, whatever the upper half of the register holds.
        for v in [0u64, 0x8, 0x2_0000, 0x2_0008, 0xffff_ffff, 0x1_0000_0008] {
            assert_eq!(
                eval(&prog, x86_64, 135, [v, 0, 0, 0, 0, 0]),
                RET_ALLOW,
                "personality({v:#x})"
            );
        }
        for v in [
            0x4_0000u64,
            0x40_0000,
            0x8004_0000,
            0x7fff_ffff,
            0xffff_fffe,
            0x1,
            0x8000_0000,
        ] {
            assert_eq!(
                eval(&prog, x86_64, 135, [v, 0, 0, 0, 0, 0]),
                eperm,
                "personality({v:#x})"
            );
        }
        let allowed: Vec<u64> = (0..=u32::MAX)
            .step_by(40_009)
            .chain(crate::spec::PERSONALITIES_ALLOWED)
            .filter(|v| eval(&prog, x86_64, 135, [u64::from(*v), 0, 0, 0, 0, 0]) == RET_ALLOW)
            .map(u64::from)
            .collect();
        assert!(
            allowed
                .iter()
                .all(|v| crate::spec::PERSONALITIES_ALLOWED.contains(&(*v as u32))),
            "{allowed:x?}"
        );
        // Docker 25 and later deny io_uring: its rings run I/O that no seccomp filter sees.
        for (nr, name) in [
            (425, "io_uring_setup"),
            (426, "io_uring_enter"),
            (427, "io_uring_register"),
        ] {
            assert_eq!(eval(&prog, x86_64, nr, [0; 6]), eperm, "{name}");
        }
        assert_eq!(eval(&prog, x86_64, 0, [0; 6]), RET_ALLOW, "read");
        assert_eq!(eval(&prog, x86_64, 59, [0; 6]), RET_ALLOW, "execve");
        // fork-like clone (SIGCHLD | CLONE_CHILD_SETTID ...) passes; a clone asking for a namespace does not.
        assert_eq!(
            eval(&prog, x86_64, 56, [0x0120_0011, 0, 0, 0, 0, 0]),
            RET_ALLOW
        );
        assert_eq!(
            eval(&prog, x86_64, 56, [0x1000_0011, 0, 0, 0, 0, 0]),
            eperm,
            "CLONE_NEWUSER"
        );
        assert_eq!(
            eval(&prog, x86_64, 56, [0x0002_0000, 0, 0, 0, 0, 0]),
            eperm,
            "CLONE_NEWNS"
        );
        assert_eq!(eval(&prog, x86_64, 435, [0; 6]), RET_ERRNO | 38, "clone3");
        assert_eq!(
            eval(&prog, 0x4000_0003, 0, [0; 6]),
            RET_ERRNO | 38,
            "i386 calls"
        );
        assert_eq!(
            eval(&prog, x86_64, 0x4000_0000, [0; 6]),
            RET_ERRNO | 38,
            "x32 calls"
        );
    }

    #[test]
    fn not_equal_tests_both_halves() {
        let s: LinuxSeccomp = serde_json::from_value(serde_json::json!({
            "defaultAction": "SCMP_ACT_ALLOW",
            "syscalls": [{"names": ["ptrace"], "action": "SCMP_ACT_ERRNO", "errnoRet": 13,
                "args": [{"index": 1, "value": 0x1_0000_0005u64, "op": "SCMP_CMP_NE"}]}]
        }))
        .unwrap();
        let prog = compile(&s).unwrap();
        let arch = table::ARCH;
        assert_eq!(
            eval(&prog, arch, 101, [0, 0x1_0000_0005, 0, 0, 0, 0]),
            RET_ALLOW
        );
        assert_eq!(eval(&prog, arch, 101, [0, 5, 0, 0, 0, 0]), RET_ERRNO | 13);
        assert_eq!(
            eval(&prog, arch, 101, [0, 0x1_0000_0006, 0, 0, 0, 0]),
            RET_ERRNO | 13
        );
    }

    #[test]
    fn unsupported_parts_are_refused() {
        let s: LinuxSeccomp = serde_json::from_value(serde_json::json!({
            "defaultAction": "SCMP_ACT_ALLOW",
            "syscalls": [{"names": ["ptrace"], "action": "SCMP_ACT_ERRNO",
                "args": [{"index": 0, "value": 1, "op": "SCMP_CMP_GT"}]}]
        }))
        .unwrap();
        assert!(matches!(compile(&s), Err(SeccompError::Unsupported(_))));
    }
}
