//! The tests' fault-injecting proxy as a program, for benchmark scripts (bench/flaky.sh): a request-buffering
//! proxy on loopback in front of a registry that breaks uploads as its plan says.
//!
//! Usage: `fault-proxy UPSTREAM PLAN [LISTEN]` — UPSTREAM is the registry's `host:port`; PLAN is `none` or a
//! comma-separated list of `cut-at=SIZE:SIZE:…` (cut the request under way when the upload bytes received, all
//! requests together, pass each SIZE), `cut-patches=N:N:…`, `cut-every=N`, `cut-after=SIZE` (body bytes read of a
//! cut PATCH), `lose=N:N:…` (forward those PATCHes, lose their answers); SIZE takes k, m or g. LISTEN defaults to
//! `127.0.0.1:0`. Prints the proxy's `host:port` on a line, then serves until killed; on standard error it says
//! the faults injected and the upload bytes received each time they change.

use kiln_tests::proxy::{FaultyProxy, Plan, UploadFaults};

fn size(s: &str) -> Result<u64, String> {
    let s = s.trim().to_ascii_lowercase();
    let (num, shift) = match s.chars().last() {
        Some('k') => (&s[..s.len() - 1], 10),
        Some('m') => (&s[..s.len() - 1], 20),
        Some('g') => (&s[..s.len() - 1], 30),
        _ => (&s[..], 0),
    };
    num.parse::<u64>()
        .map(|n| n << shift)
        .map_err(|e| format!("bad size {s:?}: {e}"))
}

fn list<T>(s: &str, f: impl Fn(&str) -> Result<T, String>) -> Result<Vec<T>, String> {
    s.split(':').map(f).collect()
}

fn count(s: &str) -> Result<usize, String> {
    s.parse().map_err(|e| format!("bad number {s:?}: {e}"))
}

fn plan(text: &str) -> Result<UploadFaults, String> {
    let mut u = UploadFaults {
        cut_after: 64 << 10,
        ..UploadFaults::default()
    };
    for item in text.split(',').filter(|i| !i.is_empty() && *i != "none") {
        let (k, v) = item
            .split_once('=')
            .ok_or_else(|| format!("{item:?} is not KEY=VALUE"))?;
        match k {
            "cut-at" => u.cut_at_bytes = list(v, size)?,
            "cut-patches" => u.cut_patches = list(v, count)?,
            "cut-every" => u.cut_every = Some(count(v)?),
            "cut-after" => u.cut_after = size(v)? as usize,
            "lose" => u.lose_answers = list(v, count)?,
            _ => return Err(format!("unknown plan item {k:?}")),
        }
    }
    Ok(u)
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.len() < 3 {
        eprintln!("usage: fault-proxy UPSTREAM PLAN [LISTEN]");
        std::process::exit(2);
    }
    let uploads = match plan(&args[2]) {
        Ok(u) => u,
        Err(e) => {
            eprintln!("fault-proxy: {e}");
            std::process::exit(2);
        }
    };
    let listen = args.get(3).map_or("127.0.0.1:0", String::as_str);
    let proxy = FaultyProxy::start_with(&args[1], Plan::default(), Some(uploads), listen);
    println!("{}", proxy.host);
    let mut last = (usize::MAX, u64::MAX);
    loop {
        std::thread::sleep(std::time::Duration::from_millis(500));
        let now = (proxy.faults(), proxy.upload_bytes());
        if now != last {
            eprintln!("faults {} upload-bytes {}", now.0, now.1);
            last = now;
        }
    }
}
