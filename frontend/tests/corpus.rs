//! Dockerfiles written in the style of popular public images (multi-stage Go, Python, Node with heredocs,
//! nginx with ADD of URLs and git): each lowers, lowers identically twice, and passes the checks it should.

use frontend::{lower, BuildOpts, NoResolver};
use llb::{Op, SourceOp};

fn corpus() -> Vec<(String, String)> {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/corpus");
    let mut out: Vec<(String, String)> = std::fs::read_dir(&dir)
        .expect("corpus directory")
        .map(|e| {
            let p = e.expect("entry").path();
            let name = p
                .file_name()
                .and_then(|n| n.to_str())
                .unwrap_or("?")
                .to_string();
            (name, std::fs::read_to_string(&p).expect("corpus file"))
        })
        .collect();
    out.sort();
    out
}

#[test]
fn every_corpus_dockerfile_lowers_stably() {
    let files = corpus();
    assert_eq!(files.len(), 4);
    for (name, text) in files {
        let df = frontend::parser::parse(&text).unwrap_or_else(|e| panic!("{name}: {e}"));
        let a = lower(&df, &BuildOpts::default(), &NoResolver)
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        let b = lower(&df, &BuildOpts::default(), &NoResolver).expect("second lowering");
        let ra: Vec<_> = a.target.root.into_iter().collect();
        let rb: Vec<_> = b.target.root.into_iter().collect();
        assert_eq!(
            a.definition.to_json(&ra).expect("json"),
            b.definition.to_json(&rb).expect("json"),
            "{name}"
        );
        let report = frontend::checks::run_checks(&df, &BuildOpts::default()).expect("checks");
        assert!(report.errors.is_empty(), "{name}: {:?}", report.errors);
    }
}

fn sources(text: &str) -> Vec<SourceOp> {
    let df = frontend::parser::parse(text).expect("parses");
    let l = lower(&df, &BuildOpts::default(), &NoResolver).expect("lowers");
    l.definition
        .ids()
        .filter_map(|id| match &l.definition.vertex(id).op {
            Op::Source(s) => Some(s.clone()),
            _ => None,
        })
        .collect()
}

#[test]
fn nginx_style_sources_are_typed() {
    let text = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/corpus/nginx-static.Dockerfile"),
    )
    .expect("corpus file");
    let s = sources(&text);
    assert!(s.iter().any(|x| matches!(x, SourceOp::Http(h) if h.url == "https://nginx.org/download/nginx-1.25.4.tar.gz" && h.checksum.is_some())));
    assert!(s.iter().any(|x| matches!(x, SourceOp::Git(g) if g.remote == "https://github.com/example/site.git" && g.reference.as_deref() == Some("main") && g.subdir.as_deref() == Some("public"))));
    assert!(s
        .iter()
        .any(|x| matches!(x, SourceOp::Image(i) if i.reference == "docker.io/library/nginx:1.25")));
}
