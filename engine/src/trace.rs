//! A build's timeline, recorded from its events and written as Chrome trace-event JSON (`kiln build --trace`;
//! Perfetto and chrome://tracing open it): one complete ("X") event per step, on the lane (thread row) it ran
//! in, so parallel stages show side by side.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use solver::llb::VertexId;

use crate::events::Event;

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
    /// Step names by vertex (empty for internal vertices, which have no span unless they fail).
    names: BTreeMap<VertexId, String>,
    /// Open spans by vertex (start, lane), in the order they opened.
    open: BTreeMap<VertexId, (Duration, usize)>,
    /// Vertices that have had a span, so that each has one.
    seen: std::collections::BTreeSet<VertexId>,
    spans: Vec<Span>,
    lanes: Vec<bool>,
}

/// Records a build's timeline from its events; shared by the solver's threads.
pub struct Trace {
    start: Instant,
    state: Mutex<State>,
}

impl Default for Trace {
    fn default() -> Self {
        Trace::new()
    }
}

impl Trace {
    /// A timeline starting now.
    pub fn new() -> Trace {
        Trace {
            start: Instant::now(),
            state: Mutex::new(State::default()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Opens the span of `vertex` on the first free lane, if it has none yet.
    fn open(&self, st: &mut State, vertex: VertexId) {
        if !st.seen.insert(vertex) {
            return;
        }
        let lane = match st.lanes.iter().position(|busy| !busy) {
            Some(l) => l,
            None => {
                st.lanes.push(false);
                st.lanes.len() - 1
            }
        };
        st.lanes[lane] = true;
        st.open.insert(vertex, (self.start.elapsed(), lane));
    }

    fn close(&self, st: &mut State, vertex: VertexId, cached: bool) {
        self.open(st, vertex);
        let now = self.start.elapsed();
        if let Some((start, lane)) = st.open.remove(&vertex) {
            if let Some(l) = st.lanes.get_mut(lane) {
                *l = false;
            }
            st.spans.push(Span {
                name: st.names.get(&vertex).cloned().unwrap_or_default(),
                start,
                took: now.saturating_sub(start),
                lane,
                cached,
            });
        }
    }

    /// Takes one event into the timeline: named steps open when they start and close when they are cached, done
    /// or failed.
    pub fn record(&self, event: &Event) {
        let mut st = self.lock();
        let named = |st: &State, v: &VertexId| st.names.get(v).is_some_and(|n| !n.is_empty());
        match event {
            Event::Started { vertex, name, .. } => {
                st.names.insert(*vertex, name.clone());
                if !name.is_empty() {
                    self.open(&mut st, *vertex);
                }
            }
            Event::Cached { vertex } if named(&st, vertex) => self.close(&mut st, *vertex, true),
            Event::Done {
                vertex,
                cached: false,
                ..
            } if named(&st, vertex) => self.close(&mut st, *vertex, false),
            Event::Error { vertex, .. } => self.close(&mut st, *vertex, false),
            _ => {}
        }
    }

    /// Writes the timeline; steps still open (a failed build) end now.
    pub fn write(&self, path: &Path) -> std::io::Result<()> {
        let now = self.start.elapsed();
        let st = self.lock();
        let us = |d: Duration| d.as_micros() as u64;
        let mut events: Vec<serde_json::Value> = vec![serde_json::json!({
            "name": "process_name", "ph": "M", "pid": 1, "tid": 0, "args": {"name": "kiln build"}
        })];
        events.push(serde_json::json!({
            "name": "build", "cat": "build", "ph": "X", "pid": 1, "tid": 0, "ts": 0, "dur": us(now)
        }));
        let open: Vec<Span> = st
            .open
            .iter()
            .map(|(v, (start, lane))| Span {
                name: st.names.get(v).cloned().unwrap_or_default(),
                start: *start,
                took: now.saturating_sub(*start),
                lane: *lane,
                cached: false,
            })
            .collect();
        for s in st.spans.iter().chain(open.iter()) {
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
    use solver::llb::{Definition, LocalSource, Op, SourceOp};

    #[test]
    fn overlapping_steps_go_on_different_lanes() {
        let mut def = Definition::new();
        let ids: Vec<VertexId> = (0..4)
            .map(|i| {
                let op = Op::Source(SourceOp::Local(LocalSource {
                    name: i.to_string(),
                    include_patterns: vec![],
                    exclude_patterns: vec![],
                    follow_paths: vec![],
                }));
                def.add(op, vec![], Default::default())
            })
            .collect();
        let t = Trace::new();
        let started = |i: usize, name: &str| {
            t.record(&Event::Started {
                vertex: ids[i],
                name: name.to_string(),
                digest: oci::Digest::sha256_of(name.as_bytes()),
                inputs: Vec::new(),
            })
        };
        started(0, "[a 1/1] RUN sleep");
        started(1, "[b 1/1] RUN sleep");
        t.record(&Event::Done {
            vertex: ids[0],
            took: Duration::from_millis(1),
            cached: false,
        });
        started(2, "[c 1/1] RUN x");
        started(3, "[d 1/1] COPY y");
        t.record(&Event::Cached { vertex: ids[3] });
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("trace.json");
        t.write(&file).unwrap();
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
}
