//! The scheduler: runs the vertices a build needs as soon as their inputs are done, at most `max_parallel` at a
//! time, each exactly once; the first failure cancels the rest and is the error reported. It never names a
//! concrete operation: an [`OpRunner`] does the work (BuildKit's `jobs.go`/`scheduler.go` split).

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Condvar, Mutex};
use std::time::{Duration, Instant};

use crate::llb::{Definition, Vertex, VertexId};

/// Shared cancellation flag: long-running ops poll it (or a runtime kills its processes when it flips).
#[derive(Debug, Default)]
pub struct CancelToken(AtomicBool);

impl CancelToken {
    /// Asks every running op to stop.
    pub fn cancel(&self) {
        self.0.store(true, Ordering::SeqCst);
    }

    /// Whether the build was cancelled.
    pub fn is_cancelled(&self) -> bool {
        self.0.load(Ordering::SeqCst)
    }
}

/// Does the work of one vertex given its inputs' results.
pub trait OpRunner: Sync {
    /// What a vertex produces (a snapshot reference, a cache key, ...).
    type Output: Clone + Send + Sync;
    /// Why a vertex failed.
    type Error: Send;

    /// Runs `vertex`; `inputs` are the outputs of `vertex.inputs`, in order.
    fn run(
        &self,
        id: VertexId,
        vertex: &Vertex,
        inputs: &[Self::Output],
        cancel: &CancelToken,
    ) -> Result<Self::Output, Self::Error>;
}

/// What the scheduler reports as it goes, for progress displays and traces.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// A vertex started.
    Started(VertexId),
    /// A vertex finished, after this long.
    Finished(VertexId, Duration),
    /// A vertex failed.
    Failed(VertexId),
}

/// How a solve failed.
#[derive(Debug)]
pub enum SolveError<E> {
    /// The first vertex that failed, and why.
    Op(VertexId, E),
    /// The build was cancelled from outside before it finished.
    Cancelled,
}

struct State<O> {
    ready: VecDeque<VertexId>,
    waiting_on: BTreeMap<VertexId, usize>,
    outputs: BTreeMap<VertexId, O>,
    running: usize,
    remaining: usize,
    failed: bool,
}

/// Runs a definition's vertices.
#[derive(Debug, Clone, Copy)]
pub struct Scheduler {
    max_parallel: usize,
}

impl Scheduler {
    /// A scheduler running at most `max_parallel` vertices at once (at least one).
    pub fn new(max_parallel: usize) -> Scheduler {
        Scheduler {
            max_parallel: max_parallel.max(1),
        }
    }

    /// Solves what `roots` need and returns every needed vertex's output. Vertices the roots do not need never
    /// run. `on_event` is called from worker threads.
    pub fn solve<R: OpRunner>(
        &self,
        def: &Definition,
        roots: &[VertexId],
        runner: &R,
        cancel: &CancelToken,
        on_event: &(dyn Fn(Event) + Sync),
    ) -> Result<BTreeMap<VertexId, R::Output>, SolveError<R::Error>> {
        let needed: BTreeSet<VertexId> = def.closure(roots).into_iter().collect();
        let mut waiting_on = BTreeMap::new();
        let mut ready = VecDeque::new();
        for &v in &needed {
            let distinct: BTreeSet<VertexId> = def.vertex(v).inputs.iter().copied().collect();
            if distinct.is_empty() {
                ready.push_back(v);
            } else {
                waiting_on.insert(v, distinct.len());
            }
        }
        let state = Mutex::new(State {
            ready,
            waiting_on,
            outputs: BTreeMap::new(),
            running: 0,
            remaining: needed.len(),
            failed: false,
        });
        let wake = Condvar::new();
        let first_error: Mutex<Option<(VertexId, R::Error)>> = Mutex::new(None);
        let workers = self.max_parallel.min(needed.len().max(1));
        std::thread::scope(|scope| {
            for _ in 0..workers {
                scope.spawn(|| loop {
                    let (id, inputs) = {
                        let mut st = lock(&state);
                        loop {
                            if st.remaining == 0
                                || (st.failed && st.running == 0)
                                || cancel.is_cancelled() && st.running == 0
                            {
                                wake.notify_all();
                                return;
                            }
                            if !st.failed && !cancel.is_cancelled() {
                                if let Some(id) = st.ready.pop_front() {
                                    let inputs: Vec<R::Output> = def
                                        .vertex(id)
                                        .inputs
                                        .iter()
                                        .filter_map(|i| st.outputs.get(i).cloned())
                                        .collect();
                                    st.running += 1;
                                    break (id, inputs);
                                }
                            }
                            st = wake.wait(st).unwrap_or_else(|p| p.into_inner());
                        }
                    };
                    on_event(Event::Started(id));
                    let start = Instant::now();
                    let result = runner.run(id, def.vertex(id), &inputs, cancel);
                    let mut st = lock(&state);
                    st.running -= 1;
                    match result {
                        Ok(out) => {
                            on_event(Event::Finished(id, start.elapsed()));
                            st.outputs.insert(id, out);
                            st.remaining -= 1;
                            for user in def.dependents(id) {
                                if let Some(n) = st.waiting_on.get_mut(&user) {
                                    *n -= 1;
                                    if *n == 0 {
                                        st.waiting_on.remove(&user);
                                        st.ready.push_back(user);
                                    }
                                }
                            }
                        }
                        Err(e) => {
                            on_event(Event::Failed(id));
                            if !st.failed {
                                st.failed = true;
                                cancel.cancel();
                                *lock(&first_error) = Some((id, e));
                            }
                        }
                    }
                    wake.notify_all();
                });
            }
        });
        if let Some((id, e)) = first_error.into_inner().unwrap_or_else(|p| p.into_inner()) {
            return Err(SolveError::Op(id, e));
        }
        let st = state.into_inner().unwrap_or_else(|p| p.into_inner());
        if st.remaining > 0 {
            return Err(SolveError::Cancelled);
        }
        Ok(st.outputs)
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

#[cfg(test)]
#[path = "scheduler/tests.rs"]
mod tests;
