//! Build progress in BuildKit's plain format (`#N [stage i/n] INSTRUCTION`, `#N CACHED`, `#N 0.532 output`,
//! `#N DONE 1.2s`, `#N ERROR: ...`), plus kiln's cache-miss explanations; or JSON events, or nothing.

use std::collections::BTreeMap;
use std::io::Write;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use solver::cache::MissReason;

/// How progress is shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// BuildKit's plain text.
    Plain,
    /// One JSON object per event.
    RawJson,
    /// Nothing.
    Quiet,
}

impl Mode {
    /// Parses `--progress`.
    pub fn parse(s: &str) -> Result<Mode, String> {
        match s {
            "auto" | "tty" | "plain" => Ok(Mode::Plain),
            "rawjson" => Ok(Mode::RawJson),
            "quiet" => Ok(Mode::Quiet),
            other => Err(format!(
                "--progress={other}: valid values are auto, tty, plain, rawjson, quiet"
            )),
        }
    }
}

struct State {
    numbers: BTreeMap<String, usize>,
    next: usize,
}

/// The progress printer, shared by the scheduler's threads.
pub struct Progress {
    mode: Mode,
    start: Instant,
    state: Mutex<State>,
    /// Steps run and cached, for the summary.
    pub counts: Mutex<(usize, usize)>,
}

impl Progress {
    /// A printer in `mode`.
    pub fn new(mode: Mode) -> Progress {
        Progress {
            mode,
            start: Instant::now(),
            state: Mutex::new(State {
                numbers: BTreeMap::new(),
                next: 1,
            }),
            counts: Mutex::new((0, 0)),
        }
    }

    fn number(&self, desc: &str) -> (usize, bool) {
        let mut st = self.state.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(n) = st.numbers.get(desc) {
            return (*n, false);
        }
        let n = st.next;
        st.next += 1;
        st.numbers.insert(desc.to_string(), n);
        (n, true)
    }

    fn emit(&self, text: String, json: serde_json::Value) {
        let mut err = std::io::stderr().lock();
        match self.mode {
            Mode::Plain => {
                let _ = writeln!(err, "{text}");
            }
            Mode::RawJson => {
                let _ = writeln!(err, "{json}");
            }
            Mode::Quiet => {}
        }
    }

    fn header(&self, desc: &str) -> usize {
        let (n, new) = self.number(desc);
        if new {
            self.emit(
                format!("#{n} {desc}"),
                serde_json::json!({"vertex": n, "name": desc, "event": "started"}),
            );
        }
        n
    }

    /// A step started.
    pub fn started(&self, desc: &str) {
        self.header(desc);
    }

    /// A step came from the cache.
    pub fn cached(&self, desc: &str) {
        let n = self.header(desc);
        if let Ok(mut c) = self.counts.lock() {
            c.1 += 1;
        }
        self.emit(
            format!("#{n} CACHED"),
            serde_json::json!({"vertex": n, "event": "cached"}),
        );
    }

    /// A step missed the cache, with the reasons when an earlier record of it exists.
    pub fn missed(&self, desc: &str, reasons: &[MissReason]) {
        let n = self.header(desc);
        for r in reasons {
            self.emit(
                format!("#{n} cache miss: {r}"),
                serde_json::json!({"vertex": n, "event": "miss", "reason": r.to_string()}),
            );
        }
    }

    /// A line of a step's output.
    pub fn line(&self, desc: &str, line: &str) {
        let n = self.header(desc);
        let t = self.start.elapsed().as_secs_f64();
        self.emit(
            format!("#{n} {t:.3} {line}"),
            serde_json::json!({"vertex": n, "event": "log", "line": line}),
        );
    }

    /// A step finished.
    pub fn done(&self, desc: &str, took: Duration, cached: bool) {
        let n = self.header(desc);
        if !cached {
            if let Ok(mut c) = self.counts.lock() {
                c.0 += 1;
            }
            self.emit(
                format!("#{n} DONE {:.1}s", took.as_secs_f64()),
                serde_json::json!({"vertex": n, "event": "done", "seconds": took.as_secs_f64()}),
            );
        }
    }

    /// A step failed.
    pub fn failed(&self, desc: &str, error: &str) {
        let n = self.header(desc);
        self.emit(
            format!("#{n} ERROR: {error}"),
            serde_json::json!({"vertex": n, "event": "error", "error": error}),
        );
    }

    /// A closing line after the build.
    pub fn summary(&self, what: &str) {
        let (ran, cached) = self.counts.lock().map(|c| *c).unwrap_or((0, 0));
        let t = self.start.elapsed().as_secs_f64();
        self.emit(
            format!("kiln: {ran} step(s) run, {cached} cached, {t:.1}s; {what}"),
            serde_json::json!({"event": "summary", "run": ran, "cached": cached, "seconds": t, "result": what}),
        );
    }
}
