//! `--layer-max-size`: a step's result larger than the limit leaves as several layers cut along directory
//! boundaries, the image's filesystem unchanged (umoci unpacks both forms and every file is compared), pushed to a
//! real registry and read back by skopeo; and a registry that refuses a blob as too large (413, from a proxy in
//! front of the real registry) gets an error that names the layer, its size and the option.

use std::collections::BTreeMap;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use kiln_tests::proxy::{FaultyProxy, Plan};
use kiln_tests::registry::{Auth, Registry};
use kiln_tests::{run, Context, Root};

use crate::KILN;

/// A step making ~4.9 MB of incompressible files in three subtrees, a hard link, a symlink, an opaque directory
/// (a directory removed and made again) and a deleted base file (a whiteout).
fn context() -> Context {
    Context::new().file(
        "Dockerfile",
        "FROM busybox\n\
         RUN mkdir -p /venv/nvidia/a /venv/nvidia/b /venv/torch /venv/cfg \
         && head -c 1800000 /dev/urandom > /venv/nvidia/a/lib.so \
         && head -c 1600000 /dev/urandom > /venv/nvidia/b/lib.so \
         && head -c 1500000 /dev/urandom > /venv/torch/core.so \
         && echo readme > /venv/readme && ln /venv/readme /venv/readme2 && ln -s torch /venv/link \
         && chmod 0750 /venv/torch && chown 12:34 /venv/nvidia/b/lib.so \
         && rm -rf /usr && mkdir -p /usr/share && echo fresh > /usr/share/only \
         && rm /bin/vi\n",
    )
}

/// Every entry under `root`: kind, mode, owner, size, link target and content digest (mtimes too, for files and
/// links: directories' may move when a layer adds to them).
fn listing(root: &Path) -> BTreeMap<String, String> {
    fn walk(dir: &Path, rel: &str, out: &mut BTreeMap<String, String>) {
        let mut names: Vec<_> = std::fs::read_dir(dir)
            .expect("read_dir")
            .map(|e| e.expect("entry").file_name())
            .collect();
        names.sort();
        for n in names {
            let path = dir.join(&n);
            let name = format!("{rel}/{}", n.to_string_lossy());
            let m = std::fs::symlink_metadata(&path).expect("stat");
            let what = if m.is_dir() {
                walk(&path, &name, out);
                format!("dir {:o} {}:{} {}", m.mode(), m.uid(), m.gid(), m.mtime())
            } else if m.file_type().is_symlink() {
                let to = std::fs::read_link(&path).expect("readlink");
                format!("link {} {}", to.display(), m.mtime())
            } else {
                let bytes = std::fs::read(&path).expect("read");
                let sum: u64 = bytes.iter().fold(0xcbf29ce484222325u64, |h, b| {
                    (h ^ u64::from(*b)).wrapping_mul(0x100000001b3)
                });
                format!(
                    "file {:o} {}:{} {} {sum:x} nlink={} {}",
                    m.mode(),
                    m.uid(),
                    m.gid(),
                    m.len(),
                    m.nlink(),
                    m.mtime()
                )
            };
            out.insert(name, what);
        }
    }
    let mut out = BTreeMap::new();
    walk(root, "", &mut out);
    out
}

fn unpack(archive: &Path, dir: &Path) -> BTreeMap<String, String> {
    let layout = dir.join("layout");
    std::fs::create_dir_all(&layout).expect("mkdir");
    let x = run(
        "tar",
        &[
            "-C",
            layout.to_str().expect("utf-8"),
            "-xf",
            archive.to_str().expect("utf-8"),
        ],
        None,
    );
    assert_eq!(x.code, 0, "{}", x.stderr);
    let bundle = dir.join("bundle");
    let image = format!("{}:1", layout.display());
    let u = run(
        "umoci",
        &["unpack", "--image", &image, bundle.to_str().expect("utf-8")],
        None,
    );
    assert_eq!(u.code, 0, "umoci unpack: {}", u.stderr);
    listing(&bundle.join("rootfs"))
}

fn build(root: &Root, ctx: &Context, tag: &str, dest: &Path, extra: &[&str]) {
    let mut args = vec!["build", "--progress=plain", "-t", tag, "-o"];
    let out = format!("type=oci,dest={}", dest.display());
    args.push(&out);
    args.extend_from_slice(extra);
    args.push(ctx.path().to_str().expect("utf-8"));
    let r = root.kiln(KILN, &args);
    assert_eq!(r.code, 0, "{}", r.stderr);
}

#[test]
fn a_large_step_is_split_into_layers_that_fit_and_the_filesystem_is_the_same() {
    let root = Root::with_busybox(KILN);
    let ctx = context();
    let out = tempfile::tempdir().expect("tempdir");
    let (whole, split) = (out.path().join("whole.tar"), out.path().join("split.tar"));
    build(&root, &ctx, "whole:1", &whole, &[]);
    build(&root, &ctx, "split:1", &split, &["--layer-max-size", "2m"]);

    let inspect = |name: &str| -> serde_json::Value {
        let r = root.kiln(KILN, &["inspect", name]);
        assert_eq!(r.code, 0, "{}", r.stderr);
        serde_json::from_str(&r.stdout).expect("inspect json")
    };
    let (w, s) = (inspect("whole:1"), inspect("split:1"));
    let layers = |v: &serde_json::Value| {
        v["Manifest"]["layers"]
            .as_array()
            .cloned()
            .unwrap_or_default()
    };
    // nvidia/a (1.8 MB), nvidia/b (1.6 MB) and torch/ (1.5 MB) each fit 2 MiB, no two together (the small /usr
    // joins the first): the step's one layer becomes four, the directories, links and whiteouts first.
    assert_eq!(layers(&s).len(), layers(&w).len() + 3, "{s}");
    for l in layers(&s) {
        let size = l["size"].as_u64().expect("size");
        assert!(size < 2_097_152, "every part below the limit: {l}");
    }
    let history = s["Config"]["history"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let parts: Vec<String> = history
        .iter()
        .filter_map(|h| h["comment"].as_str())
        .filter(|c| c.starts_with("kiln layer split"))
        .map(str::to_string)
        .collect();
    assert_eq!(
        parts,
        [
            "kiln layer split, part 2 of 4: /usr … /venv/nvidia/a",
            "kiln layer split, part 3 of 4: /venv/nvidia/b",
            "kiln layer split, part 4 of 4: /venv/torch",
        ],
        "{s}"
    );
    let non_empty = history.iter().filter(|h| h["empty_layer"] != true).count();
    assert_eq!(
        non_empty,
        layers(&s).len(),
        "one history entry per layer: {s}"
    );

    let a = unpack(&whole, &out.path().join("w"));
    let b = unpack(&split, &out.path().join("s"));
    assert!(a.contains_key("/venv/nvidia/b/lib.so") && a.contains_key("/usr/share/only"));
    // The opaque /usr hid the base's files, the whiteout removed /bin/vi: in both forms (compared below).
    assert!(
        !a.contains_key("/usr/bin") && !a.contains_key("/bin/vi"),
        "{a:#?}"
    );
    let differ: Vec<_> = a
        .iter()
        .filter(|(k, v)| b.get(*k) != Some(*v))
        .map(|(k, v)| format!("{k}: {v} / {:?}", b.get(k)))
        .chain(
            b.keys()
                .filter(|k| !a.contains_key(*k))
                .map(|k| format!("{k}: only split")),
        )
        .collect();
    assert!(differ.is_empty(), "the trees differ: {differ:#?}");

    // The same build again: the same parts, the same bytes.
    let again = out.path().join("again.tar");
    build(&root, &ctx, "split:2", &again, &["--layer-max-size", "2m"]);
    assert_eq!(
        inspect("split:2")["Manifest"]["layers"],
        s["Manifest"]["layers"]
    );
}

#[test]
fn split_layers_push_and_a_registry_refusing_a_large_blob_is_named() {
    let reg = Registry::start(Auth::Anonymous);
    let root = Root::with_busybox(KILN);
    let ctx = context();
    let r = root.kiln(
        KILN,
        &[
            "build",
            "--progress=plain",
            "--layer-max-size",
            "2m",
            "-t",
            &format!("{}/split/app:1", reg.host),
            "--provenance=false",
            "--push",
            ctx.path().to_str().expect("utf-8"),
        ],
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
    let raw = run(
        "skopeo",
        &[
            "inspect",
            "--raw",
            "--tls-verify=false",
            &format!("docker://{}/split/app:1", reg.host),
        ],
        None,
    );
    assert_eq!(raw.code, 0, "{}", raw.stderr);
    let m: serde_json::Value = serde_json::from_str(&raw.stdout).expect("manifest");
    let pushed = m["layers"].as_array().map(Vec::len).unwrap_or(0);
    assert!(pushed >= 5, "base + four parts: {m}");

    // A registry that takes at most 2.5 MB per blob: the unsplit image's 4.9 MB layer is refused by name.
    let proxy = FaultyProxy::start(
        &reg.host,
        Plan {
            max_upload: Some(2_500_000),
            ..Plan::default()
        },
    );
    let r = root.kiln_with(
        KILN,
        &[
            "build",
            "--progress=plain",
            "-t",
            &format!("{}/limited/app:1", proxy.host),
            "--push",
            ctx.path().to_str().expect("utf-8"),
        ],
        &[
            ("KILN_REGISTRY_CHUNK", "1m"),
            ("KILN_REGISTRY_BACKOFF_MS", "10"),
        ],
        None,
    );
    assert_ne!(r.code, 0, "the push must fail: {}", r.stderr);
    assert!(
        r.stderr.contains("413")
            && r.stderr.contains("--layer-max-size")
            && r.stderr.contains("sha256:"),
        "{}",
        r.stderr
    );
    // Split below the limit, the same push goes through.
    let r = root.kiln_with(
        KILN,
        &[
            "build",
            "--progress=plain",
            "--layer-max-size",
            "2m",
            "-t",
            &format!("{}/limited/app:2", proxy.host),
            "--push",
            ctx.path().to_str().expect("utf-8"),
        ],
        &[("KILN_REGISTRY_CHUNK", "1m")],
        None,
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
}
