//! BuildKit as the reference: the differential cases (and more real-world shapes) built by kiln and by the
//! BuildKit inside a real dockerd (Debian's docker.io, started here with its own data root, no bridge and no
//! iptables; RUN steps use the host's network there). Both must give the same filesystem (paths, types, modes,
//! owners, contents, link targets) and the same image config: runtime fields, author, os, architecture,
//! variant and history (what made each entry, which are empty). That BuildKit is 20.10's: where it departs
//! from current BuildKit, the case is listed in `OLD_REFERENCE` with the current code that says otherwise,
//! never taken as kiln's expectation.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

use kiln_tests::dockerd::Dockerd;
use kiln_tests::{Context, Root};

use crate::differential::{compare_trees, config_fields, tree, verdict, Case, ARCHIVES, CASES};
use crate::KILN;

/// Real-world shapes beyond the buildah cases: ARGs across stages, wildcards, .dockerignore exceptions,
/// --chown into new and existing directories, ENV/ARG/LABEL expansion, USER and WORKDIR, ONBUILD, VOLUME, and
/// the rules of issue #28 that kiln used to break.
const MORE: &[Case] = &[
    Case {
        name: "env-atomic",
        dockerfile: "FROM busybox\nENV a=one\nENV a=two b=$a\nARG x=1\nARG x=2 y=$x\nRUN echo \"$a $b $x $y\" > /out\n",
        files: &[],
    },
    Case {
        name: "maintainer",
        dockerfile: "FROM busybox\nMAINTAINER Jane Doe <jane@example.com>\nLABEL other=1\n",
        files: &[],
    },
    Case {
        name: "made-dirs",
        dockerfile: "FROM busybox
RUN mkdir -m 700 /exists && chown 5:5 /exists
COPY --chown=1000:1000 a.txt /new/deep/a.txt
COPY --chown=7:7 a.txt /exists/
COPY private /fresh
COPY --chown=9:9 private /fresh-owned
COPY private /exists/inner/
",
        files: &[("a.txt", "a\n"), ("private/f", "f\n"), ("private/sub/g", "g\n")],
    },
    Case {
        name: "ignore-wildcard",
        dockerfile: "FROM busybox\nCOPY *.txt /one\nCOPY dir/* /two\n",
        files: &[
            (".dockerignore", "b.txt\ndir/skip\n"),
            ("a.txt", "a\n"),
            ("b.txt", "b\n"),
            ("dir/keep", "k\n"),
            ("dir/skip", "s\n"),
        ],
    },
    Case {
        name: "dest-file",
        dockerfile: "FROM busybox\nCOPY dir/* /foo\nCOPY nomatch* a.txt /bar/\n",
        files: &[("dir/only", "o\n"), ("a.txt", "a\n")],
    },
    Case {
        name: "stage-args",
        dockerfile: "ARG VERSION=1.0
FROM busybox AS base
ARG VERSION
ARG FLAVOR=plain
ENV BASE_VERSION=$VERSION
FROM base AS child
ARG FLAVOR
RUN echo \"$VERSION $FLAVOR $BASE_VERSION\" > /seen
FROM busybox
COPY --from=child /seen /seen
",
        files: &[],
    },
    Case {
        name: "chown-names",
        dockerfile: "FROM busybox
COPY --chown=nobody a.txt /by-name
COPY --chown=nobody:root a.txt /by-names
COPY --chown=1234 a.txt /by-uid
USER nobody
WORKDIR /home/nobody/w
USER root
WORKDIR /root-made
",
        files: &[("a.txt", "a\n")],
    },
    Case {
        name: "bind-default-target",
        dockerfile: "FROM busybox
WORKDIR /w
RUN --mount=type=bind,source=sub cat /w/x > /out && ls /w > /listed
",
        files: &[("sub/x", "from the context\n")],
    },
    Case {
        name: "multi-stage-app",
        dockerfile: "ARG APP=demo
FROM busybox AS deps
WORKDIR /src
COPY deps.txt ./
RUN sort deps.txt > deps.sorted
FROM deps AS build
ARG APP
COPY src/ ./src/
RUN cat src/*.c > $APP.bin && chmod 755 $APP.bin
FROM busybox
ARG APP
LABEL org.opencontainers.image.title=$APP
COPY --from=build /src/$APP.bin /usr/local/bin/
COPY --from=deps /src/deps.sorted /usr/share/deps
USER 65534:65534
ENTRYPOINT [\"/usr/local/bin/demo.bin\"]
",
        files: &[
            ("deps.txt", "zlib\nbusybox\n"),
            ("src/main.c", "int main(void){return 0;}\n"),
            ("src/util.c", "int util;\n"),
        ],
    },
    Case {
        name: "ignore-exceptions",
        dockerfile: "FROM busybox\nCOPY . /ctx\n",
        files: &[
            (
                ".dockerignore",
                "**/*.md\n!README.md\nbuild/\n!build/keep/\ndocs\n!docs/api.md\n.git\n",
            ),
            ("README.md", "r"),
            ("CHANGES.md", "c"),
            ("pkg/notes.md", "n"),
            ("build/out.o", "o"),
            ("build/keep/x", "x"),
            ("docs/api.md", "a"),
            ("docs/guide.txt", "g"),
            (".git/HEAD", "h"),
            ("main.go", "package main\n"),
        ],
    },
    Case {
        name: "expansion-more",
        dockerfile: "FROM busybox
ARG NAME=world
ARG EMPTY=
ENV GREETING=\"hello ${NAME}\" ALT=${EMPTY:-alt} PLUS=${NAME:+set} SUFFIX=${NAME%ld}
LABEL greeting=\"$GREETING\" \"multi word\"=\"${ALT} ${PLUS}\"
WORKDIR /opt/$NAME
RUN echo \"$GREETING|$ALT|$PLUS|$SUFFIX\" > out && pwd >> out
EXPOSE 8000/tcp 9000
",
        files: &[],
    },
    Case {
        name: "user-workdir",
        dockerfile: "FROM busybox
RUN adduser -D -u 1500 app
USER app
WORKDIR /home/app/data
RUN touch made-by-app && id > id
USER root
WORKDIR relative
RUN id -u > uid
",
        files: &[],
    },
    Case {
        name: "onbuild-volume",
        dockerfile: "FROM busybox
ONBUILD COPY . /app
ONBUILD RUN echo built > /app/marker
VOLUME /var/lib/data /cache
VOLUME [\"/json\"]
RUN mkdir -p /var/lib/data && echo before > /var/lib/data/f
",
        files: &[],
    },
    Case {
        name: "copy-links",
        dockerfile: "FROM busybox
RUN mkdir -p /target/real && ln -s /target/real /target/link
COPY a.txt /target/link/
COPY dir/ /target/link/dir/
RUN ln -s /nowhere /dangling
COPY a.txt /dangling-dir/
",
        files: &[("a.txt", "a\n"), ("dir/b", "b\n")],
    },
    Case {
        name: "env-path",
        dockerfile: "FROM busybox
ENV PATH=/opt/bin:$PATH
ENV HOME=/srv
RUN echo $PATH > /p && echo $HOME > /h
USER 1000
RUN echo $HOME > /tmp/h2
",
        files: &[],
    },
    Case {
        name: "shell-json",
        dockerfile: "FROM busybox
CMD [\"sh\", \"-c\", \"echo $HOME\"]
ENTRYPOINT [\"/bin/sh\", \"-c\", \"exec \\\"$@\\\"\", \"--\"]
STOPSIGNAL 9
HEALTHCHECK NONE
",
        files: &[],
    },
    Case {
        name: "workdir-user",
        dockerfile: "FROM busybox\nUSER 1000:1000\nWORKDIR /made/by/user\nUSER root\nWORKDIR /made/by/root\n",
        files: &[],
    },
    Case {
        name: "copy-chmod-dirs",
        dockerfile: "FROM busybox\nCOPY --chmod=750 dir /cd\nCOPY --chmod=640 dir/sub/ /nested/deeper/\n",
        files: &[("dir/top", "t\n"), ("dir/sub/deep", "d\n")],
    },
    Case {
        name: "arg-in-from",
        dockerfile: "ARG TAG=latest\nARG IMG=busybox\nFROM ${IMG}:${TAG} AS base\nARG TAG\nRUN echo $TAG > /tag\n",
        files: &[],
    },
    Case {
        name: "env-dest",
        dockerfile: "FROM busybox\nENV D=/data SUB=inner\nCOPY a.txt $D/\nCOPY a.txt ${D}/${SUB}/b.txt\nWORKDIR $D/$SUB\n",
        files: &[("a.txt", "a\n")],
    },
    Case {
        name: "arg-env-precedence",
        dockerfile: "FROM busybox\nARG X=from-arg\nENV X=from-env\nARG Y=y-arg\nRUN echo \"$X $Y\" > /seen\nENV Y=y-env\nRUN echo \"$X $Y\" >> /seen\n",
        files: &[],
    },
    Case {
        name: "stage-inherits",
        dockerfile: "FROM busybox AS base\nENV APP_HOME=/srv/app\nWORKDIR $APP_HOME\nLABEL tier=base\nUSER nobody\nFROM base\nLABEL tier=child\nRUN pwd > /tmp/pwd && id -u >> /tmp/pwd\n",
        files: &[],
    },
    Case {
        name: "user-group",
        dockerfile: "FROM busybox\nUSER nobody:nogroup\nRUN id -u > /tmp/ids && id -g >> /tmp/ids && id -G >> /tmp/ids\n",
        files: &[],
    },
    Case {
        name: "add-into-existing",
        dockerfile: "FROM busybox\nRUN mkdir -m 711 /e && chown 3:3 /e\nADD --chown=5:5 plain.tar /e/\nADD --chown=6:6 notatar.tar /e/\n",
        files: &[("notatar.tar", "not a tar\n")],
    },
    Case {
        name: "context-links",
        dockerfile: "FROM busybox\nCOPY ./ /copied/\nCOPY link-to-dir /via-link\n",
        files: &[("real/a", "a\n"), ("real/sub/b", "b\n")],
    },
    Case {
        name: "expose-forms",
        dockerfile: "FROM busybox\nARG P=8443\nEXPOSE 80 80/tcp 53/udp ${P}\nEXPOSE 7000-7001\n",
        files: &[],
    },
];

/// Where dockerd's BuildKit (20.10) departs from current BuildKit: (case, what, the current behaviour and the
/// code that has it). kiln follows current BuildKit; each entry must still be seen.
const OLD_REFERENCE: &[(&str, &str, &str)] = &[
    (
        "copy",
        "image",
        "20.10 leaves --chown/--chmod out of COPY's history; current dispatchCopy (convert_copy.go) writes \
         `--parents`, `--chown=` and `--chmod=` before the paths",
    ),
    ("overwrite", "image", "COPY --chown in history, as in `copy`"),
    ("legacy", "image", "COPY/ADD --chown in history, as in `copy`"),
    ("made-dirs", "image", "COPY --chown in history, as in `copy`"),
    ("chown-names", "image", "COPY --chown in history, as in `copy`"),
    (
        "expansion",
        "image",
        "20.10 writes `ARG GLOBAL` for an ARG that takes its value from the global scope; current dispatchArg \
         (convert.go) sets the value from globalArgs first and writes `ARG GLOBAL=g1`",
    ),
    ("multi-stage-app", "image", "`ARG APP` from the global scope, as in `expansion`"),
    (
        "env-atomic",
        "/out",
        "20.10 expands every pair of one ARG against the environment before it (y=1); current dispatchArg \
         (convert.go) adds each pair to the state before it expands the next (y=2), as kiln does",
    ),
    (
        "env-atomic",
        "image",
        "the same ARG: 20.10 also lists `x` twice in the RUN's `|3 x=2 x=2 y=1` history",
    ),
    (
        "metadata",
        "image",
        "20.10 writes HEALTHCHECK history as Go's %q of a pointer to its older struct (`&{[...] \"5s\" ...}`); \
         current dispatchHealthcheck (convert.go) writes `HEALTHCHECK %+v` of the value, with StartInterval",
    ),
    ("shell-json", "image", "HEALTHCHECK NONE's history, as in `metadata`"),
    (
        "copy-chmod-dirs",
        "/cd",
        "20.10 makes a COPY's new destination directory 0755 whatever --chmod says; current fsutil copy.go \
         (Copy, MkdirAll with ci.Mode) makes it with the numeric --chmod",
    ),
    ("copy-chmod-dirs", "/nested", "--chmod on created parents, as for /cd"),
    ("copy-chmod-dirs", "image", "COPY --chmod in history, as in `copy`"),
    ("arg-in-from", "image", "`ARG TAG` from the global scope, as in `expansion`"),
    (
        "add-into-existing",
        "/e/tree",
        "20.10 unpacks an ADDed archive with the tar's owners; current unpack.go (solver/llbsolver/file) passes \
         --chown to the untar as ChownOpts",
    ),
    ("add-into-existing", "image", "ADD --chown in history, as in `copy`"),
    (
        "expose-forms",
        "image",
        "20.10 writes `EXPOSE map[...]` of every port so far; current dispatchExpose (convert_expose.go) lists \
         this instruction's ports, words sorted as parseExpose sorts them (`EXPOSE [80/tcp 7000/tcp]`)",
    ),
    ("config", "image", "EXPOSE's history, as in `expose-forms`"),
    (
        "expansion-more",
        "build: only BuildKit fails",
        "20.10's shell lexer has no `${var%word}`; current processDollar (frontend/dockerfile/shell/lex.go) has \
         `#`, `##`, `%`, `%%` and `/`",
    ),
];

/// The image config fields beyond the runtime config that both must write alike.
fn image_fields(image: &serde_json::Value) -> BTreeMap<String, serde_json::Value> {
    let mut out = BTreeMap::new();
    for key in ["author", "os", "architecture", "variant"] {
        if let Some(v) = image
            .get(key)
            .filter(|v| !v.is_null() && v.as_str() != Some(""))
        {
            out.insert(key.to_string(), v.clone());
        }
    }
    let history: Vec<serde_json::Value> = image["history"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|h| {
            serde_json::json!({
                "created_by": h["created_by"],
                "comment": h["comment"],
                "empty_layer": h["empty_layer"].as_bool().unwrap_or(false),
            })
        })
        .collect();
    out.insert("history".into(), serde_json::Value::Array(history));
    out
}

/// The image config in a docker archive (`manifest.json` names it).
fn archive_config(tar: &Path) -> serde_json::Value {
    let read = |name: &str| {
        let out = Command::new("tar")
            .arg("-xOf")
            .arg(tar)
            .arg(name)
            .output()
            .expect("tar");
        assert!(out.status.success(), "{name} in {}", tar.display());
        out.stdout
    };
    let manifest: serde_json::Value =
        serde_json::from_slice(&read("manifest.json")).expect("manifest.json");
    let config = manifest[0]["Config"].as_str().expect("Config").to_string();
    serde_json::from_slice(&read(&config)).expect("config")
}

#[test]
fn kiln_and_buildkit_build_the_same_filesystems_and_configs() {
    let root = Root::with_busybox(KILN);
    let dockerd = Dockerd::start();
    let work = tempfile::tempdir().expect("tempdir");
    let base = work.path().join("busybox.docker.tar");
    let made = root.kiln(
        KILN,
        &[
            "build",
            "--progress=quiet",
            "-t",
            "busybox:latest",
            "-o",
            &format!("type=docker,dest={}", base.display()),
            Context::new()
                .file("Dockerfile", "FROM busybox\n")
                .path()
                .to_str()
                .expect("utf-8"),
        ],
    );
    assert_eq!(made.code, 0, "{}", made.stderr);
    dockerd
        .run(&["load", "-i", base.to_str().expect("utf-8")])
        .expect("docker load of kiln's busybox");

    let mut problems = Vec::new();
    let (mut cases, mut identical) = (0, 0);
    for case in CASES.iter().chain(MORE) {
        cases += 1;
        let before = problems.len();
        let mut ctx = Context::new().file("Dockerfile", case.dockerfile);
        for (p, c) in case.files {
            ctx = ctx.file(p, c);
        }
        let c = ctx.path().to_str().expect("utf-8");
        if case.name == "context-links" {
            std::os::unix::fs::symlink("real", ctx.path().join("link-to-dir")).expect("symlink");
            std::os::unix::fs::symlink("real/a", ctx.path().join("link-to-file")).expect("symlink");
        }
        if case.dockerfile.contains(".tar") {
            let made = Command::new("sh")
                .args(["-c", ARCHIVES])
                .current_dir(ctx.path())
                .status()
                .expect("sh");
            assert!(made.success());
        }
        let out = work.path().join(case.name);
        let (k_dir, b_dir) = (out.join("kiln"), out.join("buildkit"));
        std::fs::create_dir_all(&b_dir).expect("mkdir");
        let tag = format!("bk-{}", case.name);
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
        let fs_tar = out.join("fs.tar");
        let img_tar = out.join("image.tar");
        let b = dockerd
            .run(&[
                "build",
                "-q",
                "--network=host",
                "-o",
                &format!("type=tar,dest={}", fs_tar.display()),
                c,
            ])
            .and_then(|_| dockerd.run(&["build", "-q", "--network=host", "-t", &tag, c]))
            .and_then(|_| dockerd.run(&["save", "-o", img_tar.to_str().expect("utf-8"), &tag]));
        match (k.code, b) {
            (0, Ok(_)) => {}
            (0, Err(e)) => {
                problems.push(format!(
                    "{}: build: only BuildKit fails: {}",
                    case.name,
                    last_line(&e)
                ));
                continue;
            }
            (_, Ok(_)) => {
                problems.push(format!(
                    "{}: build: only kiln fails: {}",
                    case.name,
                    last_line(&k.stderr)
                ));
                continue;
            }
            (_, Err(_)) => {
                identical += 1;
                continue;
            }
        }
        let untar = Command::new("tar")
            .args(["--numeric-owner", "--warning=no-timestamp", "-xpf"])
            .arg(&fs_tar)
            .arg("-C")
            .arg(&b_dir)
            .status()
            .expect("tar");
        assert!(untar.success());

        compare_trees(
            case.name,
            "BuildKit",
            &tree(&k_dir),
            &tree(&b_dir),
            &mut problems,
        );

        let inspect = root.kiln(KILN, &["inspect", &tag]);
        let kv: serde_json::Value = serde_json::from_str(&inspect.stdout).expect("inspect");
        let bv = archive_config(&img_tar);
        let (kc, bc) = (
            config_fields(&kv["Config"]["config"]),
            config_fields(&bv["config"]),
        );
        if kc != bc {
            problems.push(format!(
                "{}: config: kiln {kc:?}\n  BuildKit {bc:?}",
                case.name
            ));
        }
        let (ki, bi) = (image_fields(&kv["Config"]), image_fields(&bv));
        if ki != bi {
            problems.push(format!(
                "{}: image: kiln {ki:?}\n  BuildKit {bi:?}",
                case.name
            ));
        }
        if problems.len() == before {
            identical += 1;
        }
    }
    eprintln!("{cases} cases, {identical} identical to BuildKit's");
    verdict(&problems, OLD_REFERENCE);
}

fn last_line(s: &str) -> &str {
    s.lines().rev().find(|l| !l.trim().is_empty()).unwrap_or("")
}

/// The `[N/M] RUN …` line of a plain progress stream, from the step's bracket on.
fn run_step_line(progress: &str) -> Option<String> {
    progress
        .lines()
        .filter_map(|l| l.find("] RUN ").map(|i| (l, i)))
        .filter_map(|(l, i)| l[..i].rfind('[').map(|b| l[b..].trim_end().to_string()))
        .next()
}

#[test]
fn run_steps_are_named_with_env_expanded_as_buildkit_names_them() {
    // dockerfile2llb's dispatchRun names the vertex processCmdEnv(shlex{RawQuotes, SkipUnsetEnv}, cmd, env): the
    // stage's ENV expanded, quotes and unset variables kept. (Its secret masking, withSecretEnvMask, is newer than
    // this BuildKit: checklist::secret_as_environ covers it.)
    let root = Root::with_busybox(KILN);
    let dockerd = Dockerd::start();
    let work = tempfile::tempdir().expect("tempdir");
    let base = work.path().join("busybox.docker.tar");
    let made = root.kiln(
        KILN,
        &[
            "build",
            "--progress=quiet",
            "-t",
            "busybox:latest",
            "-o",
            &format!("type=docker,dest={}", base.display()),
            Context::new()
                .file("Dockerfile", "FROM busybox\n")
                .path()
                .to_str()
                .expect("utf-8"),
        ],
    );
    assert_eq!(made.code, 0, "{}", made.stderr);
    dockerd
        .run(&["load", "-i", base.to_str().expect("utf-8")])
        .expect("docker load of kiln's busybox");
    let ctx = Context::new().file(
        "Dockerfile",
        "FROM busybox\nENV GREETING=hello DIR=/tmp\nRUN echo \"$GREETING\" '$GREETING' $UNSET ${DIR}/x > /dev/null\n",
    );
    let c = ctx.path().to_str().expect("utf-8");
    let k = root.kiln(KILN, &["build", "--progress=plain", c]);
    assert_eq!(k.code, 0, "{}", k.stderr);
    let b = dockerd
        .command(&["build", "--progress=plain", "--network=host", c])
        .output()
        .expect("docker build");
    let b_err = String::from_utf8_lossy(&b.stderr).into_owned();
    assert!(b.status.success(), "{b_err}");
    let (kiln_line, buildkit_line) = (run_step_line(&k.stderr), run_step_line(&b_err));
    assert!(kiln_line.is_some(), "{}", k.stderr);
    assert_eq!(
        kiln_line, buildkit_line,
        "kiln:\n{}\nBuildKit:\n{b_err}",
        k.stderr
    );
}
