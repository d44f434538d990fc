//! Differential builds: the same Dockerfiles built by kiln and by buildah (Debian's, runc, overlay storage) must
//! give the same filesystem (paths, types, modes, owners, contents, link targets) and the same image config. Where
//! buildah departs from BuildKit — the reference — the difference is listed with its reason, never silently
//! skipped. (Debian's buildah 1.28 predates heredocs: those are checked by kiln's own build tests.)

use std::collections::BTreeMap;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use kiln_tests::{Context, Root};

use crate::KILN;

/// A buildah with storage of its own holding kiln's busybox base image.
struct Buildah {
    dir: tempfile::TempDir,
}

impl Buildah {
    fn new(root: &Root) -> Buildah {
        let dir = tempfile::tempdir().expect("tempdir");
        let base = Context::new().file("Dockerfile", "FROM busybox\n");
        let archive = dir.path().join("busybox.oci.tar");
        let out = root.kiln(
            KILN,
            &[
                "build",
                "--progress=quiet",
                "-o",
                &format!("type=oci,dest={}", archive.display()),
                base.path().to_str().expect("utf-8"),
            ],
        );
        assert_eq!(out.code, 0, "{}", out.stderr);
        let b = Buildah { dir };
        let pulled = b.run(&["pull", "-q", &format!("oci-archive:{}", archive.display())]);
        let id = pulled.trim().to_string();
        b.run(&["tag", &id, "docker.io/library/busybox:latest"]);
        b
    }

    fn command(&self) -> Command {
        let mut c = Command::new("buildah");
        c.arg("--root")
            .arg(self.dir.path().join("root"))
            .arg("--runroot")
            .arg(self.dir.path().join("run"))
            .args(["--storage-driver", "overlay"])
            .env("PATH", kiln_tests::path_with_sbin());
        c
    }

    fn run(&self, args: &[&str]) -> String {
        let out = self
            .command()
            .args(args)
            .output()
            .expect("run buildah (apt-get install buildah)");
        assert!(
            out.status.success(),
            "buildah {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
}

impl Drop for Buildah {
    fn drop(&mut self) {
        let _ = self.command().args(["rm", "--all"]).output();
        let _ = self.command().args(["umount", "--all"]).output();
    }
}

/// One entry of a built filesystem, as both builders must agree on it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Entry {
    kind: char,
    mode: u32,
    uid: u32,
    gid: u32,
    content: String,
}

/// Directories runtimes make as mount points or fill themselves: their presence and contents are the runtime's.
pub(crate) const RUNTIME_OWNED: &[&str] = &[
    "proc",
    "sys",
    "dev",
    "run",
    "etc/hosts",
    "etc/resolv.conf",
    "etc/hostname",
];

fn walk(root: &Path, dir: &Path, out: &mut BTreeMap<String, Entry>) {
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .expect("read dir")
        .flatten()
        .collect();
    entries.sort_by_key(|e| e.file_name());
    for e in entries {
        let path = e.path();
        let rel = path
            .strip_prefix(root)
            .expect("inside")
            .to_string_lossy()
            .into_owned();
        if RUNTIME_OWNED
            .iter()
            .any(|o| rel == *o || rel.starts_with(&format!("{o}/")))
        {
            continue;
        }
        let m = std::fs::symlink_metadata(&path).expect("lstat");
        let t = m.file_type();
        let (kind, content) = if t.is_symlink() {
            (
                'l',
                std::fs::read_link(&path)
                    .expect("readlink")
                    .to_string_lossy()
                    .into_owned(),
            )
        } else if t.is_dir() {
            ('d', String::new())
        } else if t.is_file() {
            let bytes = std::fs::read(&path).expect("read");
            (
                'f',
                format!(
                    "{} bytes, sha256 {}",
                    bytes.len(),
                    oci::Digest::sha256_of(&bytes)
                ),
            )
        } else {
            ('o', format!("{:o}", m.mode() & 0o170000))
        };
        out.insert(
            rel,
            Entry {
                kind,
                mode: m.mode() & 0o7777,
                uid: m.uid(),
                gid: m.gid(),
                content,
            },
        );
        if t.is_dir() {
            walk(root, &path, out);
        }
    }
}

pub(crate) fn tree(dir: &Path) -> BTreeMap<String, Entry> {
    let mut out = BTreeMap::new();
    walk(dir, dir, &mut out);
    out
}

/// The config fields both builders write, from kiln's `inspect` or buildah's docker-format config.
pub(crate) fn config_fields(config: &serde_json::Value) -> BTreeMap<String, serde_json::Value> {
    let mut out = BTreeMap::new();
    for key in [
        "Env",
        "Cmd",
        "Entrypoint",
        "WorkingDir",
        "User",
        "ExposedPorts",
        "Volumes",
        "StopSignal",
        "Labels",
        "Healthcheck",
        "OnBuild",
        "Shell",
    ] {
        let mut v = config.get(key).cloned().unwrap_or(serde_json::Value::Null);
        if let Some(labels) = v.as_object_mut() {
            labels.remove("io.buildah.version");
        }
        // Empty and absent are the same thing to a runtime.
        let empty = v.is_null()
            || v.as_str() == Some("")
            || v.as_array().is_some_and(|a| a.is_empty())
            || v.as_object().is_some_and(|o| o.is_empty());
        if !empty {
            out.insert(key.to_string(), v);
        }
    }
    out
}

/// Where buildah departs from BuildKit (the reference kiln follows): (case, path or `config`, why). Each must
/// still be seen, so the list cannot outlive what it excuses.
const KNOWN: &[(&str, &str, &str)] = &[
    (
        "config",
        "/app",
        "BuildKit's WORKDIR makes its directory (a mkdir in the graph); buildah makes it only for a later step",
    ),
    (
        "shell",
        "config",
        "BuildKit runs a shell-form ENTRYPOINT/CMD through the stage's SHELL; buildah always uses /bin/sh -c",
    ),
];

pub(crate) struct Case {
    pub(crate) name: &'static str,
    pub(crate) dockerfile: &'static str,
    pub(crate) files: &'static [(&'static str, &'static str)],
}

/// Archives some cases ADD: made in the context by the system's tar, so their bytes are not kiln's.
pub(crate) const ARCHIVES: &str =
    "mkdir -p tree/sub && echo one > tree/one && echo two > tree/sub/two && chmod 700 tree/sub \
     && ln -s one tree/link && tar cf plain.tar tree && tar czf packed.tgz tree && tar cjf packed.tbz2 tree \
     && tar cJf packed.txz tree && rm -rf tree";

pub(crate) const CASES: &[Case] = &[
    Case {
        name: "config",
        dockerfile: "FROM busybox
ARG A=x
ENV B=${A}-y C=\"quoted value\" D=$A
WORKDIR /app
WORKDIR sub
LABEL a=b \"c d\"=e
EXPOSE 80 443/udp
VOLUME [\"/data\"]
STOPSIGNAL SIGTERM
USER 1000:1000
ENTRYPOINT [\"/bin/sh\", \"-c\"]
CMD [\"echo $B\"]
",
        files: &[],
    },
    Case {
        name: "copy",
        dockerfile: "FROM busybox
COPY *.txt /w/
COPY dir /d1
COPY dir/ /d2/
COPY a.txt /renamed
COPY a.txt b.txt /multi/
COPY --chown=1000:100 a.txt /owned
COPY --chmod=0751 b.txt /moded
WORKDIR /rel
COPY a.txt .
COPY dir/sub ./sub
",
        files: &[
            ("a.txt", "a\n"),
            ("b.txt", "bb\n"),
            ("dir/top", "t\n"),
            ("dir/sub/deep", "d\n"),
        ],
    },
    Case {
        name: "run",
        dockerfile: "FROM busybox
RUN mkdir -p /a/b && ln -s /a/b /link && echo f > /a/b/f && chmod 600 /a/b/f && touch /gone
RUN rm /gone && mkdir /empty && chown 1000:1000 /empty
ARG V=1
RUN echo \"v=$V\" > /v && env | grep -E '^(V|PATH|HOME)=' | sort > /env
USER 1000
RUN id -u > /tmp/id && id -g >> /tmp/id && echo $HOME >> /tmp/id
",
        files: &[],
    },
    Case {
        name: "stages",
        dockerfile: "FROM busybox AS build
RUN mkdir /out && echo built > /out/artifact
FROM busybox AS unused
RUN exit 1
FROM busybox
COPY --from=build /out /out
COPY --from=0 /out/artifact /again
",
        files: &[],
    },
    Case {
        name: "shell",
        dockerfile: "FROM busybox
SHELL [\"/bin/sh\", \"-ec\"]
RUN echo $0 $- > /flags
ENTRYPOINT echo hi
",
        files: &[],
    },
    Case {
        name: "expansion",
        dockerfile: "ARG BASE=busybox
ARG GLOBAL=g1
FROM $BASE
ARG GLOBAL
ARG LOCAL=l1
ENV DIR=/opt/${LOCAL} NAME=${GLOBAL:-none}-${UNSET:-dflt} LIT='$NOT'
WORKDIR $DIR
COPY a.txt ${DIR}/${NAME}.txt
RUN echo \"$GLOBAL $LOCAL $NAME $LIT ${DIR#/opt/}\" > out
LABEL dir=$DIR name=\"${NAME}\"
",
        files: &[("a.txt", "a\n")],
    },
    Case {
        name: "ignore",
        dockerfile: "FROM busybox
COPY . /ctx/
",
        files: &[
            (".dockerignore", "*.log\n**/tmp\n!keep.log\nsecret/\n"),
            ("a.log", "x"),
            ("keep.log", "k"),
            ("src/tmp/x", "x"),
            ("src/main.c", "int main;\n"),
            ("secret/key", "k"),
        ],
    },
    Case {
        name: "metadata",
        dockerfile: "FROM busybox
HEALTHCHECK --interval=5s --timeout=2s --retries=4 CMD wget -q localhost || exit 1
ONBUILD RUN echo child
ENTRYPOINT [\"/bin/echo\"]
CMD hello world
EXPOSE 8080/tcp
USER nobody
",
        files: &[],
    },
    Case {
        name: "overwrite",
        dockerfile: "FROM busybox
RUN mkdir -p /d/sub && echo old > /d/sub/f && echo keep > /d/k && ln -s sub /d/link
COPY d/ /d/
RUN rm -rf /d/sub && mkdir /d/sub && echo new > /d/sub/g
COPY --chown=1:1 d/sub/f /d/link/
",
        files: &[("d/sub/f", "from context\n"), ("d/n", "n\n")],
    },
    Case {
        name: "add",
        dockerfile: "FROM busybox
ADD plain.tar /p/
ADD packed.tgz /z
ADD packed.tbz2 /bz/
ADD packed.txz /xz/
ADD notatar.tar /files/
",
        files: &[("notatar.tar", "text named like a tar\n")],
    },
    Case {
        name: "legacy",
        dockerfile: "FROM busybox
ENV LEGACY a b  c
ENV PORT=8080
EXPOSE $PORT
USER nobody
WORKDIR /home/nobody/work
COPY --chown=nobody:nogroup a.txt ./
ADD --chown=65534 a.txt /added
USER root
RUN ls -ln /home/nobody/work > /listing && ls -ld /home/nobody/work | cut -c1-10 >> /listing
",
        files: &[("a.txt", "a\n")],
    },
    Case {
        name: "copyedge",
        dockerfile: "FROM busybox
COPY dir /newdir
COPY dir/* /star/
COPY d* /dstar/
COPY dir/sub/ /sub-contents
COPY empty /empty-into
COPY a.txt /a/b/c/
COPY a.txt /nodir
RUN mkdir /exists
COPY dir /exists
",
        files: &[
            ("dir/top", "t\n"),
            ("dir/sub/deep", "d\n"),
            ("dir/sub/more/x", "x\n"),
            ("empty/.keep", ""),
            ("a.txt", "a\n"),
        ],
    },
];

#[test]
fn kiln_and_buildah_build_the_same_filesystems_and_configs() {
    let root = Root::with_busybox(KILN);
    let buildah = Buildah::new(&root);
    let mut problems = Vec::new();
    for case in CASES {
        let mut ctx = Context::new().file("Dockerfile", case.dockerfile);
        for (p, c) in case.files {
            ctx = ctx.file(p, c);
        }
        let c = ctx.path().to_str().expect("utf-8");
        if case.dockerfile.contains(".tar") {
            let made = Command::new("sh")
                .args(["-c", ARCHIVES])
                .current_dir(ctx.path())
                .status()
                .expect("sh");
            assert!(made.success());
        }
        let out = tempfile::tempdir().expect("tempdir");
        let (k_dir, b_dir) = (out.path().join("kiln"), out.path().join("buildah"));
        let tag = format!("diff-{}", case.name);
        let k = root.kiln(
            KILN,
            &[
                "build",
                "--progress=quiet",
                "-t",
                &tag,
                "-o",
                &format!("type=local,dest={}", k_dir.display()),
                c,
            ],
        );
        assert_eq!(k.code, 0, "{}: kiln: {}", case.name, k.stderr);
        // Default (OCI) format loses Healthcheck, OnBuild and Shell: ask buildah for Docker's. No step needs a
        // network, so buildah sets none up.
        buildah.run(&[
            "build",
            "-q",
            "--layers",
            "--network",
            "host",
            "--format",
            "docker",
            "-t",
            &tag,
            c,
        ]);
        let from = buildah.run(&["from", "-q", &tag]);
        let mnt = PathBuf::from(buildah.run(&["mount", from.trim()]).trim());
        let copied = Command::new("cp")
            .arg("-a")
            .arg(&mnt)
            .arg(&b_dir)
            .status()
            .expect("cp");
        assert!(copied.success());
        buildah.run(&["rm", from.trim()]);

        compare_trees(
            case.name,
            "buildah",
            &tree(&k_dir),
            &tree(&b_dir),
            &mut problems,
        );

        let inspect = root.kiln(KILN, &["inspect", &tag]);
        let kv: serde_json::Value = serde_json::from_str(&inspect.stdout).expect("inspect");
        let bv: serde_json::Value =
            serde_json::from_str(&buildah.run(&["inspect", "--type", "image", &tag]))
                .expect("buildah inspect");
        let bv = bv["Docker"]["config"].clone();
        let (kc, bc) = (config_fields(&kv["Config"]["config"]), config_fields(&bv));
        if kc != bc {
            problems.push(format!(
                "{}: config: kiln {kc:?}\n  buildah {bc:?}",
                case.name
            ));
        }
    }
    verdict(&problems, KNOWN);
}

/// Every difference in `problems` (each `case: what ...`) is explained by `known` (case, what, why), and every
/// explanation is still needed, so the list cannot outlive what it excuses.
pub(crate) fn verdict(problems: &[String], known: &[(&str, &str, &str)]) {
    let explained = |p: &String| {
        known
            .iter()
            .any(|(case, what, _)| p.starts_with(&format!("{case}: {what}")))
    };
    for (case, what, why) in known {
        assert!(
            problems
                .iter()
                .any(|p| p.starts_with(&format!("{case}: {what}"))),
            "the known difference {case}: {what} ({why}) is no longer seen: drop it"
        );
    }
    let unexpected: Vec<&str> = problems
        .iter()
        .filter(|p| !explained(p))
        .map(String::as_str)
        .collect();
    assert!(
        unexpected.is_empty(),
        "{} differences:\n{}",
        unexpected.len(),
        unexpected.join("\n")
    );
}

/// The differences between kiln's tree and `other`'s, as `case: /path ...` lines.
pub(crate) fn compare_trees(
    case: &str,
    other: &str,
    kt: &BTreeMap<String, Entry>,
    ot: &BTreeMap<String, Entry>,
    problems: &mut Vec<String>,
) {
    for (path, o) in ot {
        match kt.get(path) {
            None => problems.push(format!("{case}: /{path} only in {other}'s: {o:?}")),
            Some(k) if k != o => {
                problems.push(format!("{case}: /{path}: kiln {k:?}, {other} {o:?}"))
            }
            _ => {}
        }
    }
    for path in kt.keys().filter(|p| !ot.contains_key(*p)) {
        problems.push(format!("{case}: /{path} only in kiln's"));
    }
}
