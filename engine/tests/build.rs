//! A build through the library alone: a busybox base image made in memory and imported, a Dockerfile built by
//! `engine::build`, its events read and its image found in the store under the digest the build reported. Needs
//! root (the sandbox) and busybox-static; skips with a message otherwise.

use std::io::Cursor;
use std::path::Path;
use std::sync::Mutex;

use engine::{BuildRequest, Dockerfile, Event, Outcome, Root};

/// A one-layer busybox root filesystem as a tar: the binary, the applets the Dockerfile uses, /etc/passwd.
fn busybox_tar(busybox: &Path) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    let mut dir = |path: &str, mode: u32| {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(tar::EntryType::Directory);
        h.set_mode(mode);
        h.set_size(0);
        b.append_data(&mut h, path, std::io::empty())
            .expect("append a directory");
    };
    for d in ["bin", "etc", "tmp", "root"] {
        dir(d, if d == "tmp" { 0o1777 } else { 0o755 });
    }
    let mut file = |path: &str, mode: u32, data: &[u8]| {
        let mut h = tar::Header::new_gnu();
        h.set_mode(mode);
        h.set_size(data.len() as u64);
        b.append_data(&mut h, path, data).expect("append a file");
    };
    file(
        "bin/busybox",
        0o755,
        &std::fs::read(busybox).expect("read busybox"),
    );
    file("etc/passwd", 0o644, b"root:x:0:0:root:/root:/bin/sh\n");
    file("etc/group", 0o644, b"root:x:0:\n");
    for applet in ["sh", "echo", "cat"] {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(tar::EntryType::Symlink);
        h.set_mode(0o777);
        h.set_size(0);
        b.append_link(&mut h, format!("bin/{applet}"), "busybox")
            .expect("append a link");
    }
    b.into_inner().expect("finish the tar")
}

#[test]
fn a_dockerfile_builds_through_the_library_and_reports_its_image() {
    let busybox = Path::new("/bin/busybox");
    // SAFETY: a plain id query.
    if unsafe { libc::geteuid() } != 0 || !busybox.exists() {
        eprintln!("skipped: building needs root and busybox-static (/bin/busybox)");
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let (root, _) = Root::open(dir.path().join("root"));
    let platform = oci::Platform::host();
    engine::import::import(
        &root,
        Box::new(Cursor::new(busybox_tar(busybox))),
        Path::new("busybox.tar"),
        "busybox:latest",
        &platform,
    )
    .expect("import busybox");

    let context = dir.path().join("context");
    std::fs::create_dir(&context).expect("context");
    std::fs::write(context.join("a.txt"), "from the context\n").expect("a.txt");
    let text = "FROM busybox\nCOPY a.txt /a.txt\nRUN echo built && cat /a.txt > /copy.txt\n";
    let dockerfile = Dockerfile::parse("Dockerfile".into(), None, text.as_bytes()).expect("parse");
    let mut request = BuildRequest::new(dockerfile, &context);
    request.tags = vec!["engine-test:1".to_string()];
    // Reproducible: the second build below must give the same digest.
    request.source_date_epoch = Some(0);

    let events = Mutex::new(Vec::new());
    let record = |e: Event| events.lock().expect("events").push(e);
    let result = engine::build(&root, request, &record).expect("the build succeeds");

    let events = events.into_inner().expect("events");
    let image = match &result.outcome {
        Outcome::Image(i) => i.clone(),
        other => panic!("an image was expected, got {other:?}"),
    };
    assert!(
        events.contains(&Event::Exported(result.outcome.clone())),
        "the outcome is an event too"
    );
    let run = events
        .iter()
        .find_map(|e| match e {
            Event::Started { vertex, name, .. } if name.contains("RUN echo built") => Some(*vertex),
            _ => None,
        })
        .expect("the RUN step started");
    let said = |line: &str| {
        events
            .iter()
            .any(|e| matches!(e, Event::Log { vertex, line: l } if *vertex == run && l == line))
    };
    assert!(
        said("built"),
        "the step's output is a Log event of its vertex: {events:?}"
    );
    assert!(events
        .iter()
        .any(|e| matches!(e, Event::Done { vertex, cached: false, .. } if *vertex == run)));

    let listed = engine::images::list(&root).expect("list");
    let tagged = listed
        .iter()
        .find(|i| i.name == "docker.io/library/engine-test:1")
        .expect("the image is named in the store");
    assert_eq!(tagged.manifest, image.digest);
    assert_eq!(image.names, ["docker.io/library/engine-test:1"]);

    // The same build again comes from the cache, with the same digest.
    let again = Dockerfile::parse("Dockerfile".into(), None, text.as_bytes()).expect("parse");
    let mut request = BuildRequest::new(again, &context);
    request.tags = vec!["engine-test:1".to_string()];
    request.source_date_epoch = Some(0);
    let cached = Mutex::new(0);
    let count = |e: Event| {
        if matches!(e, Event::Cached { .. }) {
            *cached.lock().expect("count") += 1;
        }
    };
    let second = engine::build(&root, request, &count).expect("the second build succeeds");
    assert_eq!(second.outcome, result.outcome);
    assert!(
        *cached.lock().expect("count") >= 2,
        "COPY and RUN were cached"
    );
}
