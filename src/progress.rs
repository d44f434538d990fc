//! Build progress in BuildKit's plain format (`#N [stage i/n] INSTRUCTION`, `#N CACHED`, `#N 0.532 output`,
//! `#N DONE 1.2s`, `#N ERROR: ...`), plus kiln's cache-miss explanations; a live tty display; JSON events; or
//! nothing. Every mode also records a timeline that `--trace` writes as Chrome trace-event JSON (Perfetto opens it).

use std::collections::BTreeMap;
use std::io::{IsTerminal, Write};
use std::path::Path;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use solver::cache::MissReason;

/// How progress is shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// BuildKit's plain text.
    Plain,
    /// A live display: running steps with timers and their last output line; finished steps collapse to a line.
    Tty,
    /// One JSON object per event.
    RawJson,
    /// Nothing.
    Quiet,
}

impl Mode {
    /// Parses `--progress`; `auto` is tty when stderr is a terminal, else plain.
    pub fn parse(s: &str) -> Result<Mode, String> {
        match s {
            "auto" if std::io::stderr().is_terminal() => Ok(Mode::Tty),
            "auto" | "plain" => Ok(Mode::Plain),
            "tty" => Ok(Mode::Tty),
            "rawjson" => Ok(Mode::RawJson),
            "quiet" => Ok(Mode::Quiet),
            other => Err(format!(
                "--progress={other}: valid values are auto, tty, plain, rawjson, quiet"
            )),
        }
    }
}

/// A step on the live display.
struct Running {
    desc: String,
    since: Instant,
    last_line: String,
}

/// One finished span of the timeline.
struct Span {
    name: String,
    start: Duration,
    took: Duration,
    lane: usize,
    cached: bool,
}

#[derive(Default)]
struct State {
    numbers: BTreeMap<String, usize>,
    next: usize,
    running: BTreeMap<usize, Running>,
    /// Lines of the live area drawn last time (to move the cursor back over them).
    drawn: usize,
    /// Timeline: open spans by step number (start, lane), finished spans, and busy lanes.
    open: BTreeMap<usize, (Duration, usize)>,
    spans: Vec<Span>,
    lanes: Vec<bool>,
}

/// The progress printer, shared by the scheduler's threads.
pub struct Progress {
    mode: Mode,
    start: Instant,
    state: Mutex<State>,
    /// Steps run and cached, for the summary.
    pub counts: Mutex<(usize, usize)>,
}

fn clip(s: &str, width: usize) -> String {
    if s.chars().count() <= width {
        return s.to_string();
    }
    let mut out: String = s.chars().take(width.saturating_sub(1)).collect();
    out.push('…');
    out
}

impl Progress {
    /// A printer in `mode`.
    pub fn new(mode: Mode) -> Progress {
        Progress {
            mode,
            start: Instant::now(),
            state: Mutex::new(State {
                next: 1,
                ..Default::default()
            }),
            counts: Mutex::new((0, 0)),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn number(&self, desc: &str) -> (usize, bool) {
        let mut st = self.lock();
        if let Some(n) = st.numbers.get(desc) {
            return (*n, false);
        }
        let n = st.next;
        st.next += 1;
        st.numbers.insert(desc.to_string(), n);
        (n, true)
    }

    /// Prints a finished line. In tty mode it goes above the live area, which is then drawn again.
    fn emit(&self, text: String, json: serde_json::Value) {
        match self.mode {
            Mode::Plain => {
                let _ = writeln!(std::io::stderr().lock(), "{text}");
            }
            Mode::RawJson => {
                let _ = writeln!(std::io::stderr().lock(), "{json}");
            }
            Mode::Tty => {
                let mut st = self.lock();
                self.redraw(&mut st, Some(&text));
            }
            Mode::Quiet => {}
        }
    }

    /// Clears the live area, prints `above` (if any) and draws the running steps again.
    fn redraw(&self, st: &mut State, above: Option<&str>) {
        let mut err = std::io::stderr().lock();
        let mut out = String::new();
        if st.drawn > 0 {
            out.push_str(&format!("\x1b[{}F\x1b[J", st.drawn));
        }
        if let Some(a) = above {
            out.push_str(a);
            out.push('\n');
        }
        let width = 100;
        let mut lines = 0;
        for (n, r) in &st.running {
            out.push_str(&clip(
                &format!("#{n} {} {:.1}s", r.desc, r.since.elapsed().as_secs_f64()),
                width,
            ));
            out.push('\n');
            lines += 1;
            if !r.last_line.is_empty() {
                out.push_str(&clip(&format!("   > {}", r.last_line), width));
                out.push('\n');
                lines += 1;
            }
        }
        st.drawn = lines;
        let _ = err.write_all(out.as_bytes());
        let _ = err.flush();
    }

    /// Redraws the live display so its timers move; a no-op in other modes.
    pub fn tick(&self) {
        if self.mode == Mode::Tty {
            let mut st = self.lock();
            if !st.running.is_empty() {
                self.redraw(&mut st, None);
            }
        }
    }

    fn header(&self, desc: &str) -> usize {
        let (n, new) = self.number(desc);
        if new {
            let now = self.start.elapsed();
            {
                let mut st = self.lock();
                let lane = match st.lanes.iter().position(|busy| !busy) {
                    Some(l) => l,
                    None => {
                        st.lanes.push(false);
                        st.lanes.len() - 1
                    }
                };
                st.lanes[lane] = true;
                st.open.insert(n, (now, lane));
                if self.mode == Mode::Tty {
                    st.running.insert(
                        n,
                        Running {
                            desc: desc.to_string(),
                            since: Instant::now(),
                            last_line: String::new(),
                        },
                    );
                }
            }
            if self.mode == Mode::Tty {
                let mut st = self.lock();
                self.redraw(&mut st, None);
            } else {
                self.emit(
                    format!("#{n} {desc}"),
                    serde_json::json!({"vertex": n, "name": desc, "event": "started"}),
                );
            }
        }
        n
    }

    /// Closes step `n` on the timeline and the live display.
    fn close(&self, n: usize, desc: &str, cached: bool) {
        let now = self.start.elapsed();
        let mut st = self.lock();
        st.running.remove(&n);
        if let Some((start, lane)) = st.open.remove(&n) {
            if let Some(l) = st.lanes.get_mut(lane) {
                *l = false;
            }
            st.spans.push(Span {
                name: desc.to_string(),
                start,
                took: now.saturating_sub(start),
                lane,
                cached,
            });
        }
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
        self.close(n, desc, true);
        let text = match self.mode {
            Mode::Tty => format!("#{n} {desc} CACHED"),
            _ => format!("#{n} CACHED"),
        };
        self.emit(text, serde_json::json!({"vertex": n, "event": "cached"}));
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
        if self.mode == Mode::Tty {
            let mut st = self.lock();
            if let Some(r) = st.running.get_mut(&n) {
                r.last_line = line.to_string();
            }
            self.redraw(&mut st, None);
            return;
        }
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
            self.close(n, desc, false);
            let text = match self.mode {
                Mode::Tty => format!("#{n} {desc} DONE {:.1}s", took.as_secs_f64()),
                _ => format!("#{n} DONE {:.1}s", took.as_secs_f64()),
            };
            self.emit(
                text,
                serde_json::json!({"vertex": n, "event": "done", "seconds": took.as_secs_f64()}),
            );
        }
    }

    /// A step failed.
    pub fn failed(&self, desc: &str, error: &str) {
        let n = self.header(desc);
        self.close(n, desc, false);
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

    /// Writes the build's timeline as Chrome trace-event JSON: one complete ("X") event per step, on the lane
    /// (thread row) it ran in, so parallel stages show side by side; steps still open (a failed build) end now.
    pub fn write_trace(&self, path: &Path) -> std::io::Result<()> {
        let now = self.start.elapsed();
        let st = self.lock();
        let us = |d: Duration| d.as_micros() as u64;
        let mut events: Vec<serde_json::Value> = vec![serde_json::json!({
            "name": "process_name", "ph": "M", "pid": 1, "tid": 0, "args": {"name": "kiln build"}
        })];
        events.push(serde_json::json!({
            "name": "build", "cat": "build", "ph": "X", "pid": 1, "tid": 0, "ts": 0, "dur": us(now)
        }));
        let open = st.open.iter().map(|(n, (start, lane))| Span {
            name: st
                .numbers
                .iter()
                .find(|(_, v)| *v == n)
                .map(|(k, _)| k.clone())
                .unwrap_or_default(),
            start: *start,
            took: now.saturating_sub(*start),
            lane: *lane,
            cached: false,
        });
        let all: Vec<Span> = open.collect();
        for s in st.spans.iter().chain(all.iter()) {
            events.push(serde_json::json!({
                "name": s.name,
                "cat": if s.cached { "cached" } else { "step" },
                "ph": "X",
                "pid": 1,
                "tid": s.lane + 1,
                "ts": us(s.start),
                "dur": us(s.took),
                "args": {"cached": s.cached},
            }));
        }
        let doc = serde_json::json!({"traceEvents": events, "displayTimeUnit": "ms"});
        std::fs::write(path, serde_json::to_vec_pretty(&doc)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trace_puts_overlapping_steps_on_different_lanes() {
        let p = Progress::new(Mode::Quiet);
        p.started("[a 1/1] RUN sleep");
        p.started("[b 1/1] RUN sleep");
        p.done("[a 1/1] RUN sleep", Duration::from_millis(1), false);
        p.started("[c 1/1] RUN x");
        p.cached("[d 1/1] COPY y");
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("trace.json");
        p.write_trace(&file).unwrap();
        let v: serde_json::Value = serde_json::from_slice(&std::fs::read(&file).unwrap()).unwrap();
        let ev = v["traceEvents"].as_array().unwrap();
        let lane = |name: &str| {
            ev.iter()
                .find(|e| e["name"] == name)
                .map(|e| e["tid"].as_u64().unwrap())
                .unwrap()
        };
        assert_ne!(lane("[a 1/1] RUN sleep"), lane("[b 1/1] RUN sleep"));
        assert_eq!(
            lane("[c 1/1] RUN x"),
            lane("[a 1/1] RUN sleep"),
            "a freed lane is reused"
        );
        let d = ev.iter().find(|e| e["name"] == "[d 1/1] COPY y").unwrap();
        assert_eq!(d["args"]["cached"], true);
        assert!(ev.iter().all(|e| e["ph"] == "X" || e["ph"] == "M"));
    }

    #[test]
    fn clip_marks_what_it_cut() {
        assert_eq!(clip("abc", 5), "abc");
        assert_eq!(clip("abcdef", 4), "abc…");
    }
}
