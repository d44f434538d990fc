//! Why a step missed the cache: the parts of its key compared with the last record of the same step, turned
//! into sentences a user can act on (which file changed, which build arg, which base image, which parent).

use std::collections::BTreeSet;

use super::key::KeyParts;
use crate::llb::{Op, SourceOp};

/// One reason a key differs from the previous record's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MissReason {
    /// A file (or directory) the step reads from the context changed, appeared or disappeared.
    FileChanged(String),
    /// An environment variable or build arg visible to the step changed.
    EnvChanged {
        /// Variable name.
        name: String,
        /// Old value (`None` when it was not set).
        old: Option<String>,
        /// New value (`None` when it is no longer set).
        new: Option<String>,
    },
    /// The base image's tag now resolves to another manifest.
    ImageChanged {
        /// The reference.
        reference: String,
    },
    /// An input step produced something else (it re-ran or changed).
    ParentChanged(usize),
    /// The instruction itself changed.
    InstructionChanged,
}

impl std::fmt::Display for MissReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            MissReason::FileChanged(p) => write!(f, "file changed: {p}"),
            MissReason::EnvChanged { name, old, new } => write!(
                f,
                "{name} changed: {} -> {}",
                old.as_deref()
                    .map_or("(unset)".to_string(), |v| format!("{v:?}")),
                new.as_deref()
                    .map_or("(unset)".to_string(), |v| format!("{v:?}"))
            ),
            MissReason::ImageChanged { reference } => {
                write!(f, "base image {reference} resolves to a new digest")
            }
            MissReason::ParentChanged(i) => write!(f, "input {i} changed (a parent step re-ran)"),
            MissReason::InstructionChanged => write!(f, "the instruction changed"),
        }
    }
}

fn env_map(env: &[String]) -> std::collections::BTreeMap<&str, &str> {
    env.iter()
        .map(|kv| kv.split_once('=').unwrap_or((kv.as_str(), "")))
        .collect()
}

/// Why `now` misses where `prev` (the same step's last record) was cached. Empty when they are equal.
pub fn explain(prev: &KeyParts, now: &KeyParts) -> Vec<MissReason> {
    let mut out = Vec::new();
    let paths: BTreeSet<&String> = prev.content.keys().chain(now.content.keys()).collect();
    // Directories are listed as `dir/` (by their own metadata); a miss names files.
    let listed: BTreeSet<&String> = prev
        .files
        .keys()
        .chain(now.files.keys())
        .filter(|k| !k.ends_with('/'))
        .collect();
    for p in paths {
        if prev.content.get(p) != now.content.get(p) {
            let shown = p.split_once(':').map_or(p.as_str(), |(_, path)| path);
            let prefix = shown.trim_start_matches('/').trim_end_matches('/');
            // Name the files themselves when both records list them.
            let changed: Vec<&&String> = listed
                .iter()
                .filter(|f| {
                    prefix.is_empty()
                        || f.as_str() == prefix
                        || f.starts_with(&format!("{prefix}/"))
                })
                .filter(|f| prev.files.get(**f) != now.files.get(**f))
                .collect();
            if !changed.is_empty() && !prev.files.is_empty() && !now.files.is_empty() {
                for f in changed.into_iter().take(10) {
                    out.push(MissReason::FileChanged((*f).clone()));
                }
            } else {
                out.push(MissReason::FileChanged(
                    shown.trim_start_matches('/').to_string(),
                ));
            }
        }
    }
    if prev.resolved != now.resolved {
        if let Op::Source(SourceOp::Image(i)) = &now.op {
            out.push(MissReason::ImageChanged {
                reference: i.reference.clone(),
            });
        }
    }
    if prev.op != now.op {
        match (&prev.op, &now.op) {
            (Op::Exec(a), Op::Exec(b)) if a.args == b.args && a.env != b.env => {
                let (ea, eb) = (env_map(&a.env), env_map(&b.env));
                let names: BTreeSet<&str> = ea.keys().chain(eb.keys()).copied().collect();
                for n in names {
                    if ea.get(n) != eb.get(n) {
                        out.push(MissReason::EnvChanged {
                            name: n.to_string(),
                            old: ea.get(n).map(|v| v.to_string()),
                            new: eb.get(n).map(|v| v.to_string()),
                        });
                    }
                }
                let mut a2 = a.clone();
                a2.env = b.env.clone();
                if &a2 != b {
                    out.push(MissReason::InstructionChanged);
                }
            }
            _ => out.push(MissReason::InstructionChanged),
        }
    }
    for (i, (a, b)) in prev.inputs.iter().zip(now.inputs.iter()).enumerate() {
        if a != b {
            out.push(MissReason::ParentChanged(i));
        }
    }
    if prev.inputs.len() != now.inputs.len() && !out.contains(&MissReason::InstructionChanged) {
        out.push(MissReason::InstructionChanged);
    }
    out
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use oci::Digest;

    use super::*;
    use crate::llb::{
        ExecOp, ImageSource, Mount, MountKind, NetworkMode, ResolveMode, SecurityMode,
    };

    fn exec(cmd: &str, env: &[&str]) -> Op {
        Op::Exec(ExecOp {
            args: vec!["/bin/sh".into(), "-c".into(), cmd.into()],
            env: env.iter().map(|s| s.to_string()).collect(),
            cwd: "/".into(),
            user: String::new(),
            mounts: vec![Mount {
                input: Some(0),
                selector: "/".into(),
                target: "/".into(),
                readonly: false,
                output: true,
                kind: MountKind::Bind,
            }],
            network: NetworkMode::Default,
            security: SecurityMode::Sandbox,
            proxy_env: Vec::new(),
            extra_hosts: Vec::new(),
            ulimits: Vec::new(),
            cdi_devices: Vec::new(),
        })
    }

    fn parts(op: Op, input: &str, files: &[(&str, &str)]) -> KeyParts {
        KeyParts {
            op,
            inputs: vec![Digest::sha256_of(input.as_bytes())],
            content: files
                .iter()
                .map(|(p, c)| (format!("1:{p}"), Digest::sha256_of(c.as_bytes())))
                .collect::<BTreeMap<_, _>>(),
            resolved: None,
            files: BTreeMap::new(),
            listing: None,
        }
    }

    #[test]
    fn names_the_changed_file_arg_parent_and_image() {
        let a = parts(
            exec("make", &["PATH=/bin", "V=1"]),
            "base",
            &[("/src/a.c", "1"), ("/src/b.c", "1")],
        );
        let b = parts(
            exec("make", &["PATH=/bin", "V=2"]),
            "base",
            &[("/src/a.c", "1"), ("/src/b.c", "2")],
        );
        let r = explain(&a, &b);
        assert!(
            r.contains(&MissReason::FileChanged("src/b.c".into())),
            "{r:?}"
        );
        assert!(r.contains(&MissReason::EnvChanged {
            name: "V".into(),
            old: Some("1".into()),
            new: Some("2".into())
        }));
        assert!(!r.contains(&MissReason::InstructionChanged));
        assert_eq!(
            r.iter().map(|x| x.to_string()).collect::<Vec<_>>()[0],
            "file changed: src/b.c"
        );

        let c = parts(
            exec("make", &["PATH=/bin", "V=1"]),
            "new base",
            &[("/src/a.c", "1"), ("/src/b.c", "1")],
        );
        assert_eq!(explain(&a, &c), [MissReason::ParentChanged(0)]);

        let d = parts(
            exec("make all", &["PATH=/bin", "V=1"]),
            "base",
            &[("/src/a.c", "1"), ("/src/b.c", "1")],
        );
        assert_eq!(explain(&a, &d), [MissReason::InstructionChanged]);
        assert!(explain(&a, &a).is_empty());

        let img = |resolved: &str| KeyParts {
            op: Op::Source(SourceOp::Image(ImageSource {
                reference: "docker.io/library/busybox:latest".into(),
                platform: "linux/amd64".parse().unwrap(),
                resolve_mode: ResolveMode::Default,
            })),
            inputs: vec![],
            content: BTreeMap::new(),
            resolved: Some(Digest::sha256_of(resolved.as_bytes())),
            files: BTreeMap::new(),
            listing: None,
        };
        assert_eq!(
            explain(&img("m1"), &img("m2")),
            [MissReason::ImageChanged {
                reference: "docker.io/library/busybox:latest".into()
            }]
        );
    }
}
