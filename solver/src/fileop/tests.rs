//! File ops on real directories: BuildKit's COPY rules, ownership, modes, confinement.

use std::os::unix::fs::{MetadataExt, PermissionsExt};

use super::*;
use crate::llb::{Chown, CopyAction, FileMode, UserRef};

fn copy_action(src: &str, dest: &str) -> CopyAction {
    CopyAction {
        source: 0,
        src: src.to_string(),
        dest: dest.to_string(),
        chown: None,
        mode: None,
        follow_symlinks: true,
        copy_dir_contents: true,
        unpack_archive: false,
        create_dest_path: true,
        allow_wildcard: true,
        allow_empty_wildcard: true,
        include_patterns: vec![],
        exclude_patterns: vec![],
        parents: false,
    }
}

struct Fixture {
    _dirs: (tempfile::TempDir, tempfile::TempDir),
    ctx: PathBuf,
    root: PathBuf,
}

fn fixture() -> Fixture {
    let a = tempfile::tempdir().unwrap();
    let b = tempfile::tempdir().unwrap();
    let ctx = a.path().to_path_buf();
    std::fs::create_dir_all(ctx.join("dir/sub")).unwrap();
    std::fs::write(ctx.join("dir/one.txt"), "1").unwrap();
    std::fs::write(ctx.join("dir/sub/two.txt"), "2").unwrap();
    std::fs::write(ctx.join("a.txt"), "a").unwrap();
    std::fs::write(ctx.join("b.txt"), "b").unwrap();
    std::fs::write(ctx.join("notes.md"), "n").unwrap();
    let root = b.path().to_path_buf();
    std::fs::create_dir_all(root.join("etc")).unwrap();
    std::fs::write(
        root.join("etc/passwd"),
        "root:x:0:0::/root:/bin/sh\napp:x:1000:1000::/home/app:/bin/sh\n",
    )
    .unwrap();
    std::fs::write(root.join("etc/group"), "root:x:0:\napp:x:1000:\n").unwrap();
    Fixture {
        _dirs: (a, b),
        ctx,
        root,
    }
}

fn run(f: &Fixture, c: CopyAction) -> Result<(), FileOpError> {
    let input = Input {
        root: f.ctx.clone(),
        default_owner: Some((0, 0)),
        ignore: vec!["*.secret".to_string(), "dir/sub/ignored".to_string()],
        reused: None,
    };
    apply(&f.root, &[FileAction::Copy(c)], &[input])
}

fn read(p: PathBuf) -> String {
    std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

#[test]
fn file_to_path_and_into_directory() {
    let f = fixture();
    run(&f, copy_action("a.txt", "/x")).unwrap();
    assert_eq!(
        read(f.root.join("x")),
        "a",
        "no trailing slash, missing dest: the file becomes it"
    );
    run(&f, copy_action("a.txt", "/y/")).unwrap();
    assert_eq!(read(f.root.join("y/a.txt")), "a");
    run(&f, copy_action("b.txt", "/y")).unwrap();
    assert_eq!(
        read(f.root.join("y/b.txt")),
        "b",
        "an existing directory receives the file"
    );
}

#[test]
fn a_directory_copies_its_contents() {
    let f = fixture();
    run(&f, copy_action("dir", "/app")).unwrap();
    assert_eq!(read(f.root.join("app/one.txt")), "1");
    assert_eq!(read(f.root.join("app/sub/two.txt")), "2");
    assert!(!f.root.join("app/dir").exists());
    run(&f, copy_action(".", "/all/")).unwrap();
    assert_eq!(read(f.root.join("all/dir/sub/two.txt")), "2");
}

#[test]
fn wildcards_parents_and_excludes() {
    let f = fixture();
    run(&f, copy_action("*.txt", "/w/")).unwrap();
    assert!(f.root.join("w/a.txt").exists() && f.root.join("w/b.txt").exists());
    assert!(!f.root.join("w/notes.md").exists());
    run(&f, copy_action("*.none", "/empty/")).unwrap();
    let mut p = copy_action("dir/sub/two.txt", "/p/");
    p.parents = true;
    run(&f, p).unwrap();
    assert_eq!(read(f.root.join("p/dir/sub/two.txt")), "2");
    let mut pivot = copy_action("dir/./sub/two.txt", "/q/");
    pivot.parents = true;
    run(&f, pivot).unwrap();
    assert_eq!(read(f.root.join("q/sub/two.txt")), "2");
    let mut ex = copy_action(".", "/e/");
    ex.exclude_patterns = vec!["*.md".to_string(), "dir/sub".to_string()];
    run(&f, ex).unwrap();
    assert!(f.root.join("e/a.txt").exists());
    assert!(!f.root.join("e/notes.md").exists());
    assert!(f.root.join("e/dir/one.txt").exists() && !f.root.join("e/dir/sub").exists());
    // A directory source is matched only below itself: excluding everything leaves an empty destination
    // (BuildKit's testExcludedFilesOnCopy, `ADD --exclude=* dir* /6`).
    let mut all = copy_action("di*", "/none/");
    all.exclude_patterns = vec!["*".to_string()];
    run(&f, all).unwrap();
    assert_eq!(std::fs::read_dir(f.root.join("none")).unwrap().count(), 0);
}

#[test]
fn owners_and_modes() {
    let f = fixture();
    let mut c = copy_action("a.txt", "/owned/");
    c.chown = Some(Chown {
        user: UserRef::Name("app".into()),
        group: None,
    });
    c.mode = Some(FileMode::Octal(0o640));
    run(&f, c).unwrap();
    let m = std::fs::metadata(f.root.join("owned/a.txt")).unwrap();
    assert_eq!((m.uid(), m.gid(), m.mode() & 0o7777), (1000, 1000, 0o640));
    let m = std::fs::metadata(f.root.join("owned")).unwrap();
    assert_eq!(
        (m.uid(), m.gid()),
        (1000, 1000),
        "directories created for --chown get the owner too"
    );
    std::fs::set_permissions(f.ctx.join("b.txt"), std::fs::Permissions::from_mode(0o600)).unwrap();
    let mut s = copy_action("b.txt", "/sym/");
    s.mode = Some(FileMode::Symbolic("go+r".into()));
    run(&f, s).unwrap();
    assert_eq!(
        std::fs::metadata(f.root.join("sym/b.txt")).unwrap().mode() & 0o777,
        0o644
    );
    // A user the rootfs does not know is root, as BuildKit's readUser takes it.
    let mut ghost = copy_action("a.txt", "/x");
    ghost.chown = Some(Chown {
        user: UserRef::Name("ghost".into()),
        group: None,
    });
    run(&f, ghost).unwrap();
    let m = std::fs::metadata(f.root.join("x")).unwrap();
    assert_eq!((m.uid(), m.gid()), (0, 0));
}

#[test]
fn destinations_stay_inside_the_root() {
    let f = fixture();
    let outside = tempfile::tempdir().unwrap();
    std::os::unix::fs::symlink(outside.path(), f.root.join("escape")).unwrap();
    run(&f, copy_action("a.txt", "/escape/")).unwrap();
    assert!(
        std::fs::read_dir(outside.path()).unwrap().next().is_none(),
        "nothing written outside the root"
    );
    let landed = f
        .root
        .join(outside.path().strip_prefix("/").unwrap())
        .join("a.txt");
    assert_eq!(
        read(landed),
        "a",
        "an absolute symlink is resolved inside the root"
    );
    std::os::unix::fs::symlink("/etc/hostname", f.ctx.join("hostlink")).unwrap();
    assert!(
        matches!(
            run(&f, copy_action("hostlink", "/h")),
            Err(FileOpError::NotFound(_))
        ),
        "source symlinks stay in the context"
    );
    assert!(matches!(
        run(&f, copy_action("missing", "/m")),
        Err(FileOpError::NotFound(_))
    ));
}

#[test]
fn symlinks_hardlinks_and_times_are_kept() {
    let f = fixture();
    std::fs::hard_link(f.ctx.join("dir/one.txt"), f.ctx.join("dir/one-again.txt")).unwrap();
    std::os::unix::fs::symlink("one.txt", f.ctx.join("dir/link")).unwrap();
    let old = std::time::UNIX_EPOCH + std::time::Duration::from_secs(1_000_000);
    std::fs::File::options()
        .write(true)
        .open(f.ctx.join("dir/one.txt"))
        .unwrap()
        .set_modified(old)
        .unwrap();
    run(&f, copy_action("dir", "/d")).unwrap();
    let a = std::fs::metadata(f.root.join("d/one.txt")).unwrap();
    let b = std::fs::metadata(f.root.join("d/one-again.txt")).unwrap();
    assert_eq!(a.ino(), b.ino(), "hardlinks stay hardlinks");
    assert_eq!(
        std::fs::read_link(f.root.join("d/link")).unwrap(),
        PathBuf::from("one.txt")
    );
    assert_eq!(a.mtime(), 1_000_000);
}

#[test]
fn dockerignored_paths_do_not_exist_for_copies() {
    let f = fixture();
    std::fs::write(f.ctx.join("key.secret"), "s").unwrap();
    std::fs::create_dir_all(f.ctx.join("dir/sub/ignored")).unwrap();
    std::fs::write(f.ctx.join("dir/sub/ignored/x"), "x").unwrap();
    run(&f, copy_action(".", "/all/")).unwrap();
    assert!(!f.root.join("all/key.secret").exists());
    assert!(!f.root.join("all/dir/sub/ignored").exists());
    assert!(f.root.join("all/dir/sub/two.txt").exists());
    assert!(matches!(
        run(&f, copy_action("key.secret", "/k")),
        Err(FileOpError::NotFound(_))
    ));
}

#[test]
fn mkfile_mkdir_and_rm() {
    let f = fixture();
    let actions = vec![
        FileAction::Mkdir {
            path: "/srv/deep".into(),
            mode: 0o750,
            make_parents: true,
            chown: Some(Chown {
                user: UserRef::Id(1000),
                group: None,
            }),
        },
        FileAction::Mkfile {
            path: "/srv/deep/f".into(),
            mode: 0o600,
            data: "hi".into(),
            chown: None,
        },
        FileAction::Rm {
            path: "/etc/group".into(),
            allow_not_found: false,
            allow_wildcard: false,
        },
        FileAction::Rm {
            path: "/nope*".into(),
            allow_not_found: true,
            allow_wildcard: true,
        },
    ];
    apply(&f.root, &actions, &[]).unwrap();
    let m = std::fs::metadata(f.root.join("srv/deep")).unwrap();
    assert_eq!((m.uid(), m.mode() & 0o777), (1000, 0o750));
    assert_eq!(read(f.root.join("srv/deep/f")), "hi");
    assert!(!f.root.join("etc/group").exists());
    let strict = FileAction::Rm {
        path: "/gone".into(),
        allow_not_found: false,
        allow_wildcard: false,
    };
    assert!(matches!(
        apply(&f.root, &[strict], &[]),
        Err(FileOpError::NotFound(_))
    ));
    let no_parents = FileAction::Mkdir {
        path: "/a/b/c".into(),
        mode: 0o755,
        make_parents: false,
        chown: None,
    };
    assert!(apply(&f.root, &[no_parents], &[]).is_err());
}

/// A gzip tar in the fixture's context: a directory, a file and a symlink, owned by 1234:2345.
fn owned_archive(f: &Fixture) {
    let mut b = tar::Builder::new(Vec::new());
    for (name, kind, data) in [
        ("pkg/", tar::EntryType::Directory, &b""[..]),
        ("pkg/bin", tar::EntryType::Regular, &b"#!/bin/sh\n"[..]),
        ("pkg/link", tar::EntryType::Symlink, &b""[..]),
    ] {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(kind);
        h.set_mode(if kind.is_dir() { 0o755 } else { 0o4755 });
        h.set_uid(1234);
        h.set_gid(2345);
        h.set_size(data.len() as u64);
        if kind == tar::EntryType::Symlink {
            h.set_link_name("bin").unwrap();
        }
        b.append_data(&mut h, name, data).unwrap();
    }
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    std::io::Write::write_all(&mut gz, &b.into_inner().unwrap()).unwrap();
    std::fs::write(f.ctx.join("pkg.tgz"), gz.finish().unwrap()).unwrap();
}

#[test]
fn add_of_an_archive_keeps_its_owners_unless_chown_names_one_for_every_entry() {
    let owners = |root: &Path| -> Vec<(u32, u32)> {
        ["pkg", "pkg/bin", "pkg/link"]
            .iter()
            .map(|p| {
                let m = std::fs::symlink_metadata(root.join("out").join(p)).unwrap();
                (m.uid(), m.gid())
            })
            .collect()
    };
    let f = fixture();
    owned_archive(&f);
    let mut add = copy_action("pkg.tgz", "/out/");
    add.unpack_archive = true;
    run(&f, add.clone()).unwrap();
    assert_eq!(
        owners(&f.root),
        vec![(1234, 2345); 3],
        "the archive's own owners"
    );

    // `ADD --chown=app` (BuildKit's testDockerfileAddChownArchive): every unpacked entry is app's, and the
    // set-user-ID bit of the file survives the change of owner.
    let f = fixture();
    owned_archive(&f);
    add.chown = Some(Chown {
        user: UserRef::Name("app".into()),
        group: None,
    });
    run(&f, add).unwrap();
    assert_eq!(owners(&f.root), vec![(1000, 1000); 3]);
    let bin = std::fs::metadata(f.root.join("out/pkg/bin")).unwrap();
    assert_eq!(bin.mode() & 0o7777, 0o4755);
}

#[test]
fn a_wildcard_matching_one_file_copies_it_to_the_destination_name() {
    // BuildKit's testCopyWildcards: `COPY f*.go foo2.go` and `COPY sub/*/dir2/foo /subdest3/bar` make files,
    // and a plain file where the pattern wants a directory (sub/top) is simply no match.
    let f = fixture();
    std::fs::write(f.ctx.join("foo.go"), "package foo").unwrap();
    std::fs::create_dir_all(f.ctx.join("sub/dir1/dir2")).unwrap();
    std::fs::write(f.ctx.join("sub/dir1/dir2/foo"), "deep").unwrap();
    std::fs::write(f.ctx.join("sub/top"), "a file").unwrap();
    run(&f, copy_action("f*.go", "foo2.go")).unwrap();
    assert_eq!(read(f.root.join("foo2.go")), "package foo");
    run(&f, copy_action("sub/*/dir2/foo", "/subdest3/bar")).unwrap();
    assert_eq!(read(f.root.join("subdest3/bar")), "deep");
    // Several matches to a destination that is no directory overwrite it in turn, in lexical order (fsutil's
    // Copy: the number of matches never makes a directory).
    run(&f, copy_action("*.txt", "/several")).unwrap();
    assert_eq!(read(f.root.join("several")), "b");
}

#[test]
fn directories_a_copy_creates_get_0755_or_the_numeric_chmod_and_the_chown_owner() {
    // fsutil's MkdirAll and prepareTargetDir (BuildKit's testCopyChmod, testCopyChownExistingDir): created
    // directories never take the source directory's mode or owner, only its times; an existing destination keeps
    // its mode and owner; subdirectories keep their own mode unless --chmod is given.
    let f = fixture();
    std::fs::set_permissions(f.ctx.join("dir"), std::fs::Permissions::from_mode(0o700)).unwrap();
    std::fs::set_permissions(
        f.ctx.join("dir/sub"),
        std::fs::Permissions::from_mode(0o750),
    )
    .unwrap();
    let attrs = |p: &str| {
        let m = std::fs::symlink_metadata(f.root.join(p)).unwrap();
        (m.mode() & 0o7777, m.uid(), m.gid())
    };
    run(&f, copy_action("dir", "/plain")).unwrap();
    assert_eq!(attrs("plain"), (0o755, 0, 0));
    assert_eq!(attrs("plain/sub"), (0o750, 0, 0));
    let src_mtime = std::fs::metadata(f.ctx.join("dir")).unwrap().mtime();
    assert_eq!(
        std::fs::metadata(f.root.join("plain")).unwrap().mtime(),
        src_mtime
    );

    let mut chown = copy_action("dir", "/p1/p2/owned");
    chown.chown = Some(Chown {
        user: UserRef::Name("app".into()),
        group: None,
    });
    run(&f, chown).unwrap();
    for d in ["p1", "p1/p2", "p1/p2/owned"] {
        assert_eq!(attrs(d), (0o755, 1000, 1000), "{d}");
    }
    assert_eq!(attrs("p1/p2/owned/sub"), (0o750, 1000, 1000));

    let mut chmod = copy_action("dir", "/m1/moded");
    chmod.mode = Some(FileMode::Octal(0o711));
    run(&f, chmod).unwrap();
    assert_eq!(attrs("m1"), (0o711, 0, 0));
    assert_eq!(attrs("m1/moded"), (0o711, 0, 0));
    assert_eq!(attrs("m1/moded/sub"), (0o711, 0, 0));
    assert_eq!(attrs("m1/moded/one.txt"), (0o711, 0, 0));

    let mut file = copy_action("a.txt", "/fm/sub/");
    file.mode = Some(FileMode::Symbolic("u+x".into()));
    run(&f, file).unwrap();
    assert_eq!(attrs("fm"), (0o755, 0, 0), "a symbolic --chmod leaves 0755");

    // An existing destination keeps its mode and owner.
    std::fs::create_dir(f.root.join("existing")).unwrap();
    std::fs::set_permissions(
        f.root.join("existing"),
        std::fs::Permissions::from_mode(0o700),
    )
    .unwrap();
    std::os::unix::fs::chown(f.root.join("existing"), Some(7), Some(8)).unwrap();
    let mut into = copy_action("dir", "/existing");
    into.chown = Some(Chown {
        user: UserRef::Id(1000),
        group: None,
    });
    run(&f, into).unwrap();
    assert_eq!(attrs("existing"), (0o700, 7, 8));
    assert_eq!(attrs("existing/one.txt").1, 1000);
}

#[test]
fn the_destination_is_a_directory_only_when_named_so_or_when_it_is_one() {
    // fsutil's prepareTargetDir looks at the destination for each source in turn.
    let f = fixture();
    let two = |a: &str, b: &str, dest: &str| {
        let mut first = copy_action(a, dest);
        first.allow_wildcard = false;
        let mut second = copy_action(b, dest);
        second.allow_wildcard = false;
        apply(
            &f.root,
            &[FileAction::Copy(first), FileAction::Copy(second)],
            &[Input {
                root: f.ctx.clone(),
                default_owner: Some((0, 0)),
                ignore: vec![],
                reused: None,
            }],
        )
    };
    two("a.txt", "b.txt", "/ab").unwrap();
    assert_eq!(read(f.root.join("ab")), "b");
    // A directory's contents make the destination a directory; a file after it goes inside.
    two("dir", "a.txt", "/mixed").unwrap();
    assert_eq!(read(f.root.join("mixed/one.txt")), "1");
    assert_eq!(read(f.root.join("mixed/a.txt")), "a");
    run(&f, copy_action("a.txt", "/dot/.")).unwrap();
    assert_eq!(read(f.root.join("dot/a.txt")), "a");
    // A .dockerignored file is no match: `*.secret` and `a.*` together match only a.txt.
    std::fs::write(f.ctx.join("a.secret"), "s").unwrap();
    run(&f, copy_action("a.*", "/one")).unwrap();
    assert_eq!(read(f.root.join("one")), "a");
}

#[test]
fn a_socket_in_the_source_becomes_an_empty_regular_file() {
    // BuildKit's testCopySocket.
    let f = fixture();
    let sock = f.ctx.join("dir/socket.sock");
    let _listener = std::os::unix::net::UnixListener::bind(&sock).unwrap();
    std::fs::set_permissions(&sock, std::fs::Permissions::from_mode(0o600)).unwrap();
    run(&f, copy_action("dir", "/copied")).unwrap();
    let m = std::fs::symlink_metadata(f.root.join("copied/socket.sock")).unwrap();
    assert!(m.is_file(), "{:?}", m.file_type());
    assert_eq!((m.len(), m.mode() & 0o777), (0, 0o600));
}

#[test]
fn a_symlinked_source_keeps_its_name_and_wildcard_matches_are_followed() {
    // BuildKit's testCopySymlinks.
    let f = fixture();
    std::fs::write(f.ctx.join("bar"), "bar-contents").unwrap();
    std::os::unix::fs::symlink("bar", f.ctx.join("foo")).unwrap();
    std::fs::create_dir_all(f.ctx.join("sub")).unwrap();
    std::fs::write(f.ctx.join("sub/lfile"), "lfile-contents").unwrap();
    std::os::unix::fs::symlink("subfile", f.ctx.join("sub/l0")).unwrap();
    std::fs::write(f.ctx.join("sub/subfile"), "subfile-contents").unwrap();
    std::os::unix::fs::symlink("second", f.ctx.join("sub/l1")).unwrap();
    std::os::unix::fs::symlink("baz", f.ctx.join("sub/second")).unwrap();
    std::fs::write(f.ctx.join("sub/baz"), "baz-contents").unwrap();
    run(&f, copy_action("foo", "/")).unwrap();
    assert_eq!(read(f.root.join("foo")), "bar-contents");
    assert!(
        !f.root.join("bar").exists(),
        "the link's name, not its target's"
    );
    run(&f, copy_action("sub/l*", "alllinks/")).unwrap();
    for (name, want) in [
        ("l0", "subfile-contents"),
        ("l1", "baz-contents"),
        ("lfile", "lfile-contents"),
    ] {
        let p = f.root.join("alllinks").join(name);
        assert!(std::fs::symlink_metadata(&p).unwrap().is_file(), "{name}");
        assert_eq!(read(p), want);
    }
}

/// A context where `.dockerignore` exceptions re-include paths below excluded directories: the case found
/// beside a real BuildKit, and one whose exception is a glob (so every excluded directory is walked).
fn reinclude_context() -> tempfile::TempDir {
    let d = tempfile::tempdir().unwrap();
    let p = d.path();
    for dir in [
        "pkg",
        "build/keep",
        "docs",
        ".git",
        "cache/a",
        "cache/d",
        "cache/f",
    ] {
        std::fs::create_dir_all(p.join(dir)).unwrap();
    }
    for file in [
        "README.md",
        "CHANGES.md",
        "pkg/notes.md",
        "build/out.o",
        "build/keep/x",
        "docs/api.md",
        "docs/guide.txt",
        ".git/HEAD",
        "main.go",
        "cache/a/b.keep",
        "cache/a/c.txt",
        "cache/d/e.txt",
    ] {
        std::fs::write(p.join(file), file).unwrap();
    }
    std::fs::set_permissions(p.join("build"), std::fs::Permissions::from_mode(0o750)).unwrap();
    d
}

const REINCLUDE_IGNORE: [&str; 7] = [
    "**/*.md",
    "!README.md",
    "build/",
    "!build/keep/",
    "docs",
    "!docs/api.md",
    ".git",
];

/// Every path under `root`, directories with a trailing `/`.
fn tree(root: &Path) -> std::collections::BTreeSet<String> {
    fn walk(dir: &Path, rel: &str, out: &mut std::collections::BTreeSet<String>) {
        for e in std::fs::read_dir(dir).unwrap() {
            let e = e.unwrap();
            let name = e.file_name().to_string_lossy().into_owned();
            let child = if rel.is_empty() {
                name
            } else {
                format!("{rel}/{name}")
            };
            if e.file_type().unwrap().is_dir() {
                out.insert(format!("{child}/"));
                walk(&e.path(), &child, out);
            } else {
                out.insert(child);
            }
        }
    }
    let mut out = std::collections::BTreeSet::new();
    walk(root, "", &mut out);
    out
}

/// Copies `src` of the context (with `ignore`) into a fresh target's `/out/` and lists what arrived.
fn copied(
    ctx: &Path,
    ignore: &[&str],
    src: &str,
) -> Result<std::collections::BTreeSet<String>, FileOpError> {
    let target = tempfile::tempdir().unwrap();
    let input = Input {
        root: ctx.to_path_buf(),
        default_owner: Some((0, 0)),
        ignore: ignore.iter().map(|s| s.to_string()).collect(),
        reused: None,
    };
    apply(
        target.path(),
        &[FileAction::Copy(copy_action(src, "/out/"))],
        &[input],
    )?;
    Ok(tree(&target.path().join("out")))
}

/// What the context checksum of `src` covers, as paths under the copy's destination.
fn hashed(ctx: &Path, ignore: &[&str], src: &str) -> std::collections::BTreeSet<String> {
    let hasher = crate::contenthash::ContextHasher::new(ctx, ignore, Default::default()).unwrap();
    let (_, files) = hasher.checksum_with_files(src).unwrap();
    let prefix = if src == "." {
        String::new()
    } else {
        format!("{src}/")
    };
    files
        .into_keys()
        .filter_map(|k| k.strip_prefix(&prefix).map(str::to_string))
        .filter(|k| !k.is_empty())
        .collect()
}

#[test]
fn dockerignore_exceptions_below_excluded_dirs_are_copied_and_hashed_alike() {
    let d = reinclude_context();
    let ctx = d.path();
    let all = copied(ctx, &REINCLUDE_IGNORE, ".").unwrap();
    for want in [
        "README.md",
        "main.go",
        "pkg/",
        "build/",
        "build/keep/",
        "build/keep/x",
        "docs/",
        "docs/api.md",
    ] {
        assert!(all.contains(want), "{want} missing from {all:?}");
    }
    for gone in [
        "CHANGES.md",
        "pkg/notes.md",
        "build/out.o",
        "docs/guide.txt",
        ".git/",
    ] {
        assert!(!all.contains(gone), "{gone} in {all:?}");
    }
    for src in [".", "build", "docs", "build/keep"] {
        assert_eq!(
            copied(ctx, &REINCLUDE_IGNORE, src).unwrap(),
            hashed(ctx, &REINCLUDE_IGNORE, src),
            "{src}"
        );
    }
    assert_eq!(
        copied(ctx, &REINCLUDE_IGNORE, "build").unwrap(),
        ["keep/", "keep/x"].map(String::from).into()
    );
    // A directory made because something under it was re-included has its own metadata.
    let target = tempfile::tempdir().unwrap();
    let input = Input {
        root: ctx.to_path_buf(),
        default_owner: Some((0, 0)),
        ignore: REINCLUDE_IGNORE.iter().map(|s| s.to_string()).collect(),
        reused: None,
    };
    apply(
        target.path(),
        &[FileAction::Copy(copy_action(".", "/ctx/"))],
        &[input],
    )
    .unwrap();
    let mode = std::fs::metadata(target.path().join("ctx/build"))
        .unwrap()
        .mode()
        & 0o7777;
    assert_eq!(mode, 0o750);

    // A glob exception walks every excluded directory; only those with something re-included appear.
    let glob = ["cache", "!**/*.keep"];
    let all = copied(ctx, &glob, "cache").unwrap();
    assert_eq!(all, ["a/", "a/b.keep"].map(String::from).into());
    assert_eq!(all, hashed(ctx, &glob, "cache"));
    assert_eq!(copied(ctx, &glob, ".").unwrap(), hashed(ctx, &glob, "."));
    assert_eq!(copied(ctx, &glob, "cach*").unwrap(), all);
}

#[test]
fn an_excluded_dir_with_nothing_re_included_is_not_found_by_copy_or_hash() {
    let d = reinclude_context();
    let ctx = d.path();
    let glob = ["cache", "!**/*.keep"];
    assert!(matches!(
        copied(ctx, &glob, "cache/d"),
        Err(FileOpError::NotFound(_))
    ));
    let hasher = crate::contenthash::ContextHasher::new(ctx, &glob, Default::default()).unwrap();
    assert!(matches!(
        hasher.checksum("cache/d"),
        Err(crate::contenthash::HashError::NotFound(_))
    ));
    assert!(matches!(
        hasher.checksum("cache/[df]"),
        Err(crate::contenthash::HashError::NotFound(_))
    ));
    // What an unwalked excluded directory holds is never seen, even named.
    let hasher =
        crate::contenthash::ContextHasher::new(ctx, &REINCLUDE_IGNORE, Default::default()).unwrap();
    assert!(matches!(
        hasher.checksum(".git/HEAD"),
        Err(crate::contenthash::HashError::NotFound(_))
    ));
    assert!(matches!(
        copied(ctx, &REINCLUDE_IGNORE, ".git/HEAD"),
        Err(FileOpError::NotFound(_))
    ));
}

#[test]
fn the_checksum_covers_re_included_files_only() {
    let d = reinclude_context();
    let ctx = d.path();
    let sum = || {
        crate::contenthash::ContextHasher::new(ctx, &REINCLUDE_IGNORE, Default::default())
            .unwrap()
            .checksum(".")
            .unwrap()
    };
    let before = sum();
    std::fs::write(ctx.join("build/out.o"), "changed").unwrap();
    assert_eq!(
        sum(),
        before,
        "an excluded file under a walked directory does not count"
    );
    std::fs::write(ctx.join("build/keep/x"), "changed").unwrap();
    let changed = sum();
    assert_ne!(changed, before, "a re-included file counts");
    std::fs::set_permissions(ctx.join("docs"), std::fs::Permissions::from_mode(0o700)).unwrap();
    assert_ne!(
        sum(),
        changed,
        "so does the walked directory's own metadata"
    );
}

/// A context for the cases where the copy and the checksum used to select differently: wildcards matching
/// nothing, a directory among files, ignored files, paths re-included under an excluded directory, and symlinks
/// whose own name or whose target is ignored.
fn selection_context() -> tempfile::TempDir {
    let d = tempfile::tempdir().unwrap();
    let p = d.path();
    for dir in ["dir", "secret", "build/keep"] {
        std::fs::create_dir_all(p.join(dir)).unwrap();
    }
    for file in [
        "a.txt",
        "b.txt",
        "c.log",
        "dir/x.txt",
        "dir/y.log",
        "secret/s.txt",
        "build/out.o",
        "build/keep/k.txt",
    ] {
        std::fs::write(p.join(file), file).unwrap();
    }
    for (link, target) in [
        ("to-secret", "secret/s.txt"),
        ("named.lnk", "a.txt"),
        ("dirlink", "dir"),
        ("keeplink", "build/keep"),
        ("buildlink", "build"),
        ("abs", "/a.txt"),
        ("dangling", "nowhere"),
    ] {
        std::os::unix::fs::symlink(target, p.join(link)).unwrap();
    }
    d
}

const SELECTION_IGNORE: [&str; 5] = ["**/*.log", "*.lnk", "secret", "build", "!build/keep"];

/// What copying `src` into `/out/` makes, each path with what it holds, or `None` when the copy finds nothing.
fn copy_outcome(
    ctx: &Path,
    ignore: &[&str],
    src: &str,
) -> Option<std::collections::BTreeMap<String, String>> {
    let target = tempfile::tempdir().unwrap();
    let input = Input {
        root: ctx.to_path_buf(),
        default_owner: Some((0, 0)),
        ignore: ignore.iter().map(|s| s.to_string()).collect(),
        reused: None,
    };
    let mut action = copy_action(src, "/out/");
    action.allow_empty_wildcard = false;
    match apply(target.path(), &[FileAction::Copy(action)], &[input]) {
        Ok(()) => {}
        Err(FileOpError::NotFound(_)) => return None,
        Err(e) => panic!("{src}: {e}"),
    }
    let out = target.path().join("out");
    Some(
        tree(&out)
            .into_iter()
            .map(|rel| {
                let p = out.join(rel.trim_end_matches('/'));
                let m = std::fs::symlink_metadata(&p).unwrap();
                let held = if m.is_symlink() {
                    format!("-> {}", std::fs::read_link(&p).unwrap().display())
                } else if m.is_dir() {
                    "dir".to_string()
                } else {
                    std::fs::read_to_string(&p).unwrap()
                };
                (rel, held)
            })
            .collect(),
    )
}

#[test]
fn the_copy_and_the_checksum_select_the_same_entries() {
    let d = selection_context();
    let ctx = d.path();
    let files: Vec<String> = tree(ctx)
        .into_iter()
        .filter(|rel| {
            std::fs::symlink_metadata(ctx.join(rel))
                .unwrap()
                .file_type()
                .is_file()
        })
        .collect();
    let sum = |src: &str| {
        crate::contenthash::ContextHasher::new(ctx, &SELECTION_IGNORE, Default::default())
            .unwrap()
            .checksum(src)
    };
    for src in [
        "*.none",
        "*.txt",
        "*.log",
        "dir",
        "d*",
        "build",
        "build/*",
        "b*",
        "to-secret",
        "named.lnk",
        "*.lnk",
        "dirlink",
        "*link*",
        "keeplink",
        "buildlink",
        "buildlink/keep",
        "abs",
        "dangling",
        "secret/s.txt",
        "dirlink/*",
        ".",
    ] {
        let copied = copy_outcome(ctx, &SELECTION_IGNORE, src);
        let before = match sum(src) {
            Ok(d) => Some(d),
            Err(crate::contenthash::HashError::NotFound(_)) => None,
            Err(e) => panic!("{src}: {e}"),
        };
        assert_eq!(
            copied.is_some(),
            before.is_some(),
            "{src}: the copy found {copied:?}, the checksum {before:?}"
        );
        let (Some(copied), Some(before)) = (copied, before) else {
            continue;
        };
        // The key covers what the copy reads: a file changes the copy exactly when it changes the checksum.
        for f in &files {
            let was = std::fs::read(ctx.join(f)).unwrap();
            std::fs::write(ctx.join(f), b"changed").unwrap();
            let copy_changed = copy_outcome(ctx, &SELECTION_IGNORE, src).as_ref() != Some(&copied);
            let key_changed = sum(src).unwrap() != before;
            std::fs::write(ctx.join(f), was).unwrap();
            assert_eq!(
                copy_changed, key_changed,
                "{src} with {f} changed: the copy changed {copy_changed}, the key {key_changed}"
            );
        }
    }
}

#[test]
fn a_symlinked_source_is_there_only_when_its_name_and_its_target_are() {
    let d = selection_context();
    let ctx = d.path();
    let ignore = crate::patterns::PatternMatcher::new(&SELECTION_IGNORE).unwrap();
    let select = |src: &str| sources::select(ctx, &ignore, src, true, true).unwrap();
    // Its target ignored, or its own name: not in the context BuildKit transfers.
    assert!(select("to-secret").is_empty());
    assert!(select("named.lnk").is_empty());
    // A wildcard matching a link whose target is not there fails, as BuildKit's copy does; named, it is not found.
    for src in ["dang*", "*secret"] {
        assert!(
            matches!(
                sources::select(ctx, &ignore, src, true, true),
                Err(sources::SourceError::Dangling(_))
            ),
            "{src}"
        );
    }
    assert!(select("dangling").is_empty());
    // A directory reached through a link keeps its name and is filtered by its real paths.
    let s = select("dirlink");
    assert_eq!((s[0].name.as_str(), s[0].real.as_str()), ("dirlink", "dir"));
    assert_eq!(
        copy_outcome(ctx, &SELECTION_IGNORE, "dirlink").unwrap(),
        [("x.txt".to_string(), "dir/x.txt".to_string())].into()
    );
    // An absolute target is taken inside the input; a path re-included under an excluded directory is there.
    assert_eq!(select("abs")[0].real, "a.txt");
    assert_eq!(select("buildlink/keep")[0].real, "build/keep");
    assert!(select("buildlink/out.o").is_empty());
    // Without following the last link, the link itself is the source.
    let s = sources::select(ctx, &ignore, "abs", true, false).unwrap();
    assert_eq!(s[0].real, "abs");
    assert!(sources::select(ctx, &ignore, "named.lnk", true, false)
        .unwrap()
        .is_empty());
}

#[test]
fn a_parents_source_matches_any_depth_with_a_double_star() {
    let d = tempfile::tempdir().unwrap();
    for f in ["a/b/c/d/e/bay", "a/b2/c/d/e/bar", "a/b2/c/bar"] {
        let p = d.path().join(f);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(&p, "").unwrap();
    }
    let ignore = crate::patterns::PatternMatcher::new(&Vec::<String>::new()).unwrap();
    let names = |parents: bool| -> Vec<String> {
        sources::select_parents(d.path(), &ignore, "a/b*/c/**/bar", true, true, parents)
            .unwrap()
            .into_iter()
            .map(|s| s.name)
            .collect()
    };
    assert_eq!(names(true), ["a/b2/c/bar", "a/b2/c/d/e/bar"]);
    // A plain COPY's `**` is a `*`: one level.
    assert!(names(false).is_empty());
}

#[test]
fn a_parents_wildcard_matching_nothing_still_makes_the_destination() {
    let ctx = tempfile::tempdir().unwrap();
    let out = tempfile::tempdir().unwrap();
    let mut c = copy_action("/nothing*/c", "/out/");
    c.parents = true;
    let input = Input {
        root: ctx.path().to_path_buf(),
        default_owner: None,
        ignore: vec![],
        reused: None,
    };
    apply(out.path(), &[FileAction::Copy(c)], &[input]).unwrap();
    assert!(out.path().join("out").is_dir());
}

#[test]
fn a_copied_file_keeps_its_capabilities_through_chown() {
    // BuildKit's copy (fsutil `copier.copy`) sets xattrs after the owner (`copyFileInfo`, then `copyXAttrs`), so a
    // file's capabilities survive `COPY --chown`.
    // `setcap cap_net_raw+ep`: VFS_CAP_REVISION_2 with the effective flag, CAP_NET_RAW (13) permitted.
    let mut cap = Vec::new();
    for word in [0x0200_0001u32, 1 << 13, 0, 0, 0] {
        cap.extend_from_slice(&word.to_le_bytes());
    }
    let f = fixture();
    for file in ["a.txt", "dir/one.txt"] {
        rustix::fs::setxattr(
            f.ctx.join(file),
            "security.capability",
            &cap,
            rustix::fs::XattrFlags::empty(),
        )
        .expect("set a file capability (the tests run as root)");
    }
    // A second link sends dir/one.txt through the copy of linked files, a.txt through that of plain ones.
    std::fs::hard_link(f.ctx.join("dir/one.txt"), f.ctx.join("dir/one-link.txt")).unwrap();
    for (action, dst) in [
        (copy_action("a.txt", "/plain"), "plain"),
        (copy_action("dir", "/linked"), "linked/one.txt"),
    ] {
        let mut c = action;
        c.chown = Some(Chown {
            user: UserRef::Id(1000),
            group: Some(UserRef::Id(1000)),
        });
        run(&f, c).unwrap();
        let mut v = [0u8; 64];
        let n = rustix::fs::getxattr(f.root.join(dst), "security.capability", &mut v)
            .unwrap_or_else(|e| panic!("{dst} lost its capability: {e}"));
        assert_eq!(&v[..n], &cap[..], "{dst}");
    }
}

#[test]
fn a_copied_file_replaces_what_stands_in_its_way_and_carries_its_metadata() {
    let f = fixture();
    let src = f.ctx.join("a.txt");
    std::fs::set_permissions(&src, std::fs::Permissions::from_mode(0o751)).unwrap();
    let old = std::time::UNIX_EPOCH + std::time::Duration::from_secs(2_000_000);
    std::fs::File::options()
        .write(true)
        .open(&src)
        .unwrap()
        .set_modified(old)
        .unwrap();
    let has_xattr = rustix::fs::setxattr(
        &src,
        "user.kiln.test",
        b"v",
        rustix::fs::XattrFlags::empty(),
    )
    .is_ok();

    // A file in the way is replaced, never written in place: a hardlink to it keeps the old contents.
    std::fs::write(f.root.join("x"), "old contents").unwrap();
    std::fs::hard_link(f.root.join("x"), f.root.join("x-link")).unwrap();
    let mut c = copy_action("a.txt", "/x");
    c.chown = Some(Chown {
        user: UserRef::Id(1000),
        group: Some(UserRef::Id(1000)),
    });
    run(&f, c).unwrap();
    assert_eq!(read(f.root.join("x")), "a");
    assert_eq!(read(f.root.join("x-link")), "old contents");
    let m = std::fs::symlink_metadata(f.root.join("x")).unwrap();
    assert_eq!(m.mode() & 0o7777, 0o751, "the source's mode");
    assert_eq!((m.uid(), m.gid()), (1000, 1000), "the --chown owner");
    assert_eq!(m.mtime(), 2_000_000, "the source's time");
    if has_xattr {
        let mut v = [0u8; 8];
        let n = rustix::fs::getxattr(f.root.join("x"), "user.kiln.test", &mut v).unwrap();
        assert_eq!(&v[..n], b"v", "the source's xattrs");
    }

    // Inside a copied directory, a symlink in the way is replaced itself; what it points at is untouched.
    std::fs::create_dir_all(f.root.join("d")).unwrap();
    std::fs::write(f.root.join("pointed.txt"), "keep").unwrap();
    std::os::unix::fs::symlink("../pointed.txt", f.root.join("d/one.txt")).unwrap();
    run(&f, copy_action("dir", "/d")).unwrap();
    assert!(std::fs::symlink_metadata(f.root.join("d/one.txt"))
        .unwrap()
        .is_file());
    assert_eq!(read(f.root.join("d/one.txt")), "1");
    assert_eq!(read(f.root.join("pointed.txt")), "keep");

    // A directory in the way is refused.
    std::fs::create_dir_all(f.root.join("e/a.txt")).unwrap();
    assert!(matches!(
        run(&f, copy_action("a.txt", "/e/")),
        Err(FileOpError::Conflict { .. })
    ));
}
