//! `--chmod` applied to one file: octal replaces the permission bits; symbolic (`u+x,g-w,o=r`, `a+X`) edits
//! them relative to the file's own mode, as chmod(1) does.

use crate::llb::FileMode;

/// The new mode of a file whose mode is `current` (permission and special bits only).
pub fn apply_mode(mode: &FileMode, current: u32, is_dir: bool) -> u32 {
    match mode {
        FileMode::Octal(m) => *m & 0o7777,
        FileMode::Symbolic(s) => {
            let mut cur = current & 0o7777;
            for clause in s.split(',') {
                let who_end = clause.find(['+', '-', '=']).unwrap_or(clause.len());
                let who = &clause[..who_end];
                let mut mask = 0u32;
                for w in who.chars() {
                    mask |= match w {
                        'u' => 0o4700,
                        'g' => 0o2070,
                        'o' => 0o1007,
                        _ => 0o7777,
                    };
                }
                if who.is_empty() {
                    mask = 0o7777;
                }
                let mut rest = &clause[who_end..];
                while let Some(op) = rest.chars().next() {
                    let perms_end = rest[1..]
                        .find(['+', '-', '='])
                        .map_or(rest.len(), |i| i + 1);
                    let perms = &rest[1..perms_end];
                    rest = &rest[perms_end..];
                    let mut bits = 0u32;
                    for p in perms.chars() {
                        bits |= match p {
                            'r' => 0o444,
                            'w' => 0o222,
                            'x' => 0o111,
                            'X' if is_dir || cur & 0o111 != 0 => 0o111,
                            's' => 0o6000,
                            't' => 0o1000,
                            'u' => copy_class(cur >> 6),
                            'g' => copy_class(cur >> 3),
                            'o' => copy_class(cur),
                            _ => 0,
                        };
                    }
                    let bits = bits & mask;
                    match op {
                        '+' => cur |= bits,
                        '-' => cur &= !bits,
                        _ => cur = (cur & !(mask & 0o777)) | bits,
                    }
                }
            }
            cur
        }
    }
}

fn copy_class(three: u32) -> u32 {
    let b = three & 0o7;
    b | (b << 3) | (b << 6)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sym(s: &str, cur: u32, dir: bool) -> u32 {
        apply_mode(&FileMode::Symbolic(s.to_string()), cur, dir)
    }

    #[test]
    fn chmod_semantics() {
        assert_eq!(apply_mode(&FileMode::Octal(0o640), 0o777, false), 0o640);
        assert_eq!(sym("u+x", 0o644, false), 0o744);
        assert_eq!(sym("g-w,o-r", 0o664, false), 0o640);
        assert_eq!(sym("a=r", 0o777, false), 0o444);
        assert_eq!(sym("a+X", 0o644, false), 0o644);
        assert_eq!(sym("a+X", 0o644, true), 0o755);
        assert_eq!(sym("a+X", 0o744, false), 0o755);
        assert_eq!(sym("+x", 0o600, false), 0o711);
        assert_eq!(sym("u=rw,go=", 0o777, false), 0o600);
    }
}
