//! The scheduler with a fake runner: ordering, parallelism, exactly-once, failure and cancellation.

use std::sync::atomic::AtomicUsize;
use std::sync::Mutex;

use super::*;
use crate::llb::{FileAction, FileOp, Op, VertexMeta};

/// A distinct op per name: a mkdir of `/name`, on top of its inputs.
fn op(name: &str, has_input: bool) -> Op {
    Op::File(FileOp {
        base: has_input.then_some(0),
        actions: vec![FileAction::Mkdir {
            path: format!("/{name}"),
            mode: 0o755,
            make_parents: true,
            chown: None,
        }],
    })
}

fn add(def: &mut Definition, name: &str, inputs: Vec<VertexId>) -> VertexId {
    let has_input = !inputs.is_empty();
    def.add(
        op(name, has_input),
        inputs,
        VertexMeta {
            description: name.to_string(),
            ..Default::default()
        },
    )
}

/// Sleeps `sleep:<ms>` vertices, fails `fail` ones, records the order and concurrency.
#[derive(Default)]
struct Fake {
    order: Mutex<Vec<String>>,
    running: AtomicUsize,
    max_running: AtomicUsize,
    runs: AtomicUsize,
    cancelled: Mutex<Vec<String>>,
}

impl OpRunner for Fake {
    type Output = String;
    type Error = String;

    fn run(
        &self,
        _id: VertexId,
        v: &Vertex,
        inputs: &[String],
        cancel: &CancelToken,
    ) -> Result<String, String> {
        let now = self.running.fetch_add(1, Ordering::SeqCst) + 1;
        self.max_running.fetch_max(now, Ordering::SeqCst);
        self.runs.fetch_add(1, Ordering::SeqCst);
        let name = v.meta.description.clone();
        let result = if let Some(ms) = name.strip_prefix("sleep:") {
            let ms: u64 = ms
                .split('-')
                .next()
                .and_then(|m| m.parse().ok())
                .unwrap_or(0);
            let until = Instant::now() + Duration::from_millis(ms);
            while Instant::now() < until && !cancel.is_cancelled() {
                std::thread::sleep(Duration::from_millis(5));
            }
            if cancel.is_cancelled() {
                self.cancelled.lock().unwrap().push(name.clone());
                Err(format!("{name} cancelled"))
            } else {
                Ok(name.clone())
            }
        } else if name == "fail" {
            Err("boom".to_string())
        } else {
            Ok(format!("{name}({})", inputs.join(",")))
        };
        self.order.lock().unwrap().push(name);
        self.running.fetch_sub(1, Ordering::SeqCst);
        result
    }
}

#[test]
fn inputs_come_first_and_each_vertex_runs_once() {
    let mut d = Definition::new();
    let a = add(&mut d, "a", vec![]);
    let b = add(&mut d, "b", vec![a]);
    let c = add(&mut d, "c", vec![a]);
    let top = add(&mut d, "top", vec![b, c]);
    let _unused = add(&mut d, "unused", vec![]);
    let fake = Fake::default();
    let out = Scheduler::new(4)
        .solve(&d, &[top], &fake, &CancelToken::default(), &|_| {})
        .unwrap_or_else(|_| panic!("solve failed"));
    assert_eq!(out[&top], "top(b(a()),c(a()))");
    assert_eq!(
        fake.runs.load(Ordering::SeqCst),
        4,
        "a runs once, unused never"
    );
    let order = fake.order.lock().unwrap().clone();
    assert_eq!(order.first().map(String::as_str), Some("a"));
    assert_eq!(order.last().map(String::as_str), Some("top"));
}

#[test]
fn independent_vertices_run_in_parallel_up_to_the_bound() {
    let mut d = Definition::new();
    let leaves: Vec<VertexId> = (0..4)
        .map(|i| add(&mut d, &format!("sleep:200-{i}"), vec![]))
        .collect();
    let top = add(&mut d, "top", leaves.clone());
    let fake = Fake::default();
    Scheduler::new(2)
        .solve(&d, &[top], &fake, &CancelToken::default(), &|_| {})
        .unwrap_or_else(|_| panic!("solve failed"));
    assert_eq!(
        fake.max_running.load(Ordering::SeqCst),
        2,
        "at most two at a time"
    );
    let fake4 = Fake::default();
    Scheduler::new(4)
        .solve(&d, &[top], &fake4, &CancelToken::default(), &|_| {})
        .unwrap_or_else(|_| panic!("solve failed"));
    assert_eq!(
        fake4.max_running.load(Ordering::SeqCst),
        4,
        "four independent vertices overlap"
    );
}

#[test]
fn the_first_failure_cancels_the_rest_and_is_reported() {
    let mut d = Definition::new();
    let slow = add(&mut d, "sleep:5000", vec![]);
    let fail = add(&mut d, "fail", vec![]);
    let after = add(&mut d, "after", vec![fail]);
    let top = add(&mut d, "top", vec![slow, after]);
    let fake = Fake::default();
    let events = Mutex::new(Vec::new());
    let err = Scheduler::new(2)
        .solve(&d, &[top], &fake, &CancelToken::default(), &|e| {
            events.lock().unwrap().push(e)
        })
        .expect_err("must fail");
    assert_eq!(
        *fake.cancelled.lock().unwrap(),
        ["sleep:5000"],
        "the slow sibling was cancelled"
    );
    match err {
        SolveError::Op(id, e) => {
            assert_eq!(id, fail);
            assert_eq!(e, "boom");
        }
        SolveError::Cancelled => panic!("expected the op error"),
    }
    let order = fake.order.lock().unwrap().clone();
    assert!(!order.contains(&"after".to_string()) && !order.contains(&"top".to_string()));
    assert!(events.lock().unwrap().contains(&Event::Failed(fail)));
}

#[test]
fn an_outside_cancel_stops_the_build() {
    let mut d = Definition::new();
    let a = add(&mut d, "sleep:3000", vec![]);
    let top = add(&mut d, "top", vec![a]);
    let fake = Fake::default();
    let cancel = CancelToken::default();
    let result = std::thread::scope(|s| {
        s.spawn(|| {
            std::thread::sleep(Duration::from_millis(100));
            cancel.cancel();
        });
        Scheduler::new(2).solve(&d, &[top], &fake, &cancel, &|_| {})
    });
    assert!(result.is_err());
    assert_eq!(*fake.cancelled.lock().unwrap(), ["sleep:3000"]);
    assert!(!fake.order.lock().unwrap().contains(&"top".to_string()));
}
