//! Rendering the engine's events: build progress in BuildKit's plain format (`#N [stage i/n] INSTRUCTION`,
//! `#N CACHED`, `#N 0.532 output`, `#N DONE 1.2s`, `#N ERROR: ...`), plus kiln's cache-miss explanations; a live
//! tty display; BuildKit's rawjson stream (see [`rawjson`]); kiln's own JSON events; or nothing.

pub(crate) mod rawjson;

use std::collections::BTreeMap;
use std::io::{IsTerminal, Write};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use engine::{Event, Outcome};
use solver::cache::MissReason;
use solver::llb::VertexId;

/// How progress is shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// BuildKit's plain text.
    Plain,
    /// A live display: running steps with timers and their last output line; finished steps collapse to a line.
    Tty,
    /// BuildKit's stream: one `SolveStatus` JSON object per line.
    RawJson,
    /// kiln's own JSON events (`{"vertex": N, "event": "started", ...}`), one per line.
    KilnJson,
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
            "kiln-json" => Ok(Mode::KilnJson),
            "quiet" => Ok(Mode::Quiet),
            other => Err(format!(
                "--progress={other}: valid values are auto, tty, plain, rawjson, kiln-json, quiet"
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

#[derive(Default)]
struct State {
    /// Display numbers (`#N`) by vertex, in the order vertices were first shown.
    numbers: BTreeMap<VertexId, usize>,
    /// Step names by vertex, from their `Started` events (empty for internal vertices, which are not shown).
    names: BTreeMap<VertexId, String>,
    /// When each step started: its log lines are timed from there, as BuildKit's plain printer times them.
    started: BTreeMap<VertexId, Instant>,
    /// The steps already reported CACHED (a step is reported once, whatever tells of it again).
    cached: std::collections::BTreeSet<VertexId>,
    next: usize,
    running: BTreeMap<usize, Running>,
    /// Lines of the live area drawn last time (to move the cursor back over them).
    drawn: usize,
    /// Build check warnings as `- Rule: message (line N)`, listed after the build as buildx lists them.
    checks: Vec<String>,
}

/// The progress printer, shared by the scheduler's threads.
pub struct Progress {
    mode: Mode,
    start: Instant,
    state: Mutex<State>,
    /// Steps run and cached, for the summary.
    pub counts: Mutex<(usize, usize)>,
    /// The rawjson stream's view of the vertices.
    raw: rawjson::RawJson,
}

fn clip(s: &str, width: usize) -> String {
    if s.chars().count() <= width {
        return s.to_string();
    }
    let mut out: String = s.chars().take(width.saturating_sub(1)).collect();
    out.push('…');
    out
}

impl engine::Progress for Progress {
    fn event(&self, event: Event) {
        Progress::event(self, event)
    }
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
            raw: rawjson::RawJson::default(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn number(&self, vertex: VertexId) -> (usize, bool) {
        let mut st = self.lock();
        if let Some(n) = st.numbers.get(&vertex) {
            return (*n, false);
        }
        let n = st.next;
        st.next += 1;
        st.numbers.insert(vertex, n);
        (n, true)
    }

    /// The step name of `vertex` (empty for internal vertices).
    fn name(&self, vertex: VertexId) -> String {
        self.lock().names.get(&vertex).cloned().unwrap_or_default()
    }

    /// Renders one event of the engine. Internal vertices (no name) show only their errors and notes.
    pub fn event(&self, event: Event) {
        if self.mode == Mode::RawJson {
            if let Some(status) = self.raw.render(&event, std::time::SystemTime::now()) {
                let _ = writeln!(std::io::stderr().lock(), "{status}");
            }
            return;
        }
        let named = |v: VertexId| {
            let name = self.name(v);
            (!name.is_empty()).then_some(name)
        };
        match event {
            Event::Started { vertex, name, .. } => {
                {
                    let mut st = self.lock();
                    st.names.insert(vertex, name.clone());
                    st.started.insert(vertex, Instant::now());
                }
                if !name.is_empty() {
                    self.header(vertex, &name);
                }
            }
            Event::Cached { vertex } => {
                if let Some(name) = named(vertex) {
                    self.cached(vertex, &name)
                }
            }
            Event::Missed { vertex, reasons } => {
                if let Some(name) = named(vertex) {
                    self.missed(vertex, &name, &reasons)
                }
            }
            Event::Log { vertex, line } => self.line(vertex, &self.name(vertex), &line),
            Event::Progress { .. } => {}
            Event::Done {
                vertex,
                took,
                cached,
            } => {
                if let Some(name) = named(vertex) {
                    self.done(vertex, &name, took, cached)
                }
            }
            Event::Error { vertex, message } => self.failed(vertex, &self.name(vertex), &message),
            Event::Warning { message, .. } => eprintln!("warning: {message}"),
            Event::Message(line) => eprintln!("{line}"),
            Event::CheckWarning {
                rule,
                message,
                line,
            } => self.check_warning(&rule, &message, line),
            Event::Exported(Outcome::NoOutput) => self.summary("no output"),
            Event::Exported(Outcome::Files) => self.summary("exported"),
            Event::Exported(Outcome::Image(i)) => self.summary(&format!("image {}", i.digest)),
        }
    }

    /// Prints a finished line. In tty mode it goes above the live area, which is then drawn again.
    fn emit(&self, text: String, json: serde_json::Value) {
        match self.mode {
            Mode::Plain => {
                let _ = writeln!(std::io::stderr().lock(), "{text}");
            }
            Mode::KilnJson => {
                let _ = writeln!(std::io::stderr().lock(), "{json}");
            }
            // Rendered by `rawjson` before it gets here.
            Mode::RawJson => {}
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

    fn header(&self, vertex: VertexId, desc: &str) -> usize {
        let (n, new) = self.number(vertex);
        if new {
            if self.mode == Mode::Tty {
                let mut st = self.lock();
                st.running.insert(
                    n,
                    Running {
                        desc: desc.to_string(),
                        since: Instant::now(),
                        last_line: String::new(),
                    },
                );
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

    /// Takes step `n` off the live display.
    fn close(&self, n: usize) {
        self.lock().running.remove(&n);
    }

    /// A step came from the cache.
    fn cached(&self, vertex: VertexId, desc: &str) {
        if !self.lock().cached.insert(vertex) {
            return;
        }
        let n = self.header(vertex, desc);
        if let Ok(mut c) = self.counts.lock() {
            c.1 += 1;
        }
        self.close(n);
        let text = match self.mode {
            Mode::Tty => format!("#{n} {desc} CACHED"),
            _ => format!("#{n} CACHED"),
        };
        self.emit(text, serde_json::json!({"vertex": n, "event": "cached"}));
    }

    /// A step missed the cache, with the reasons when an earlier record of it exists.
    fn missed(&self, vertex: VertexId, desc: &str, reasons: &[MissReason]) {
        let n = self.header(vertex, desc);
        for r in reasons {
            self.emit(
                format!("#{n} cache miss: {r}"),
                serde_json::json!({"vertex": n, "event": "miss", "reason": r.to_string()}),
            );
        }
    }

    /// A line of a step's output.
    fn line(&self, vertex: VertexId, desc: &str, line: &str) {
        let n = self.header(vertex, desc);
        if self.mode == Mode::Tty {
            let mut st = self.lock();
            if let Some(r) = st.running.get_mut(&n) {
                r.last_line = line.to_string();
            }
            self.redraw(&mut st, None);
            return;
        }
        let since = self.lock().started.get(&vertex).copied();
        let t = since.unwrap_or(self.start).elapsed().as_secs_f64();
        self.emit(
            format!("#{n} {t:.3} {line}"),
            serde_json::json!({"vertex": n, "event": "log", "line": line}),
        );
    }

    /// A step finished.
    fn done(&self, vertex: VertexId, desc: &str, took: Duration, cached: bool) {
        let n = self.header(vertex, desc);
        if !cached {
            if let Ok(mut c) = self.counts.lock() {
                c.0 += 1;
            }
            self.close(n);
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
    fn failed(&self, vertex: VertexId, desc: &str, error: &str) {
        let n = self.header(vertex, desc);
        self.close(n);
        self.emit(
            format!("#{n} ERROR: {error}"),
            serde_json::json!({"vertex": n, "event": "error", "error": error}),
        );
    }

    /// A build check fired: one JSON event in kiln-json mode (its stream is the machine's record), kept for
    /// [`Progress::print_check_warnings`] otherwise, since buildx lists them once the build is over.
    fn check_warning(&self, rule: &str, message: &str, line: usize) {
        if self.mode == Mode::KilnJson {
            self.emit(
                String::new(),
                serde_json::json!({"event": "warning", "rule": rule, "message": message, "line": line}),
            );
            return;
        }
        self.lock()
            .checks
            .push(format!(" - {rule}: {message} (line {line})"));
    }

    /// Lists the build check warnings after the build, whether it succeeded or not, in buildx's words:
    /// `N warnings found (use docker --debug to expand):` then one `- Rule: message (line N)` each. Nothing
    /// when there were none (or in quiet mode), so builds without findings print exactly what they did before.
    pub fn print_check_warnings(&self) {
        if self.mode == Mode::Quiet {
            return;
        }
        let checks = std::mem::take(&mut self.lock().checks);
        if let Some(out) = check_warnings_text(&checks) {
            let _ = std::io::stderr().lock().write_all(out.as_bytes());
        }
    }

    /// A closing line after the build.
    fn summary(&self, what: &str) {
        let (ran, cached) = self.counts.lock().map(|c| *c).unwrap_or((0, 0));
        let t = self.start.elapsed().as_secs_f64();
        self.emit(
            format!("kiln: {ran} step(s) run, {cached} cached, {t:.1}s; {what}"),
            serde_json::json!({"event": "summary", "run": ran, "cached": cached, "seconds": t, "result": what}),
        );
    }
}

/// buildx's list of build check warnings (`- Rule: message (line N)` lines), counted; `None` for none.
fn check_warnings_text(checks: &[String]) -> Option<String> {
    let counted = match checks.len() {
        0 => return None,
        1 => "1 warning".to_string(),
        n => format!("{n} warnings"),
    };
    let mut out = format!("\n {counted} found (use docker --debug to expand):\n");
    for c in checks {
        out.push_str(c);
        out.push('\n');
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn check_warnings_are_counted_as_buildx_counts_them() {
        assert_eq!(check_warnings_text(&[]), None);
        let one = [
            " - FromAsCasing: 'as' and 'FROM' keywords' casing do not match (line 1)".to_string(),
        ];
        assert_eq!(
            check_warnings_text(&one).as_deref(),
            Some("\n 1 warning found (use docker --debug to expand):\n - FromAsCasing: 'as' and 'FROM' keywords' casing do not match (line 1)\n")
        );
        let two = [one[0].clone(), one[0].clone()];
        assert!(check_warnings_text(&two).is_some_and(
            |t| t.starts_with("\n 2 warnings found (use docker --debug to expand):\n")
        ));
    }

    #[test]
    fn clip_marks_what_it_cut() {
        assert_eq!(clip("abc", 5), "abc");
        assert_eq!(clip("abcdef", 4), "abc…");
    }
}
