//! The page's pool of workers evaluating plans of a whole network, as a pure state machine: the
//! host (`src/app/network.rs`) posts what it is told and feeds back the answers.
//!
//! The test items are split into one contiguous shard per worker, and worker i always evaluates
//! shard i (it keeps that shard's activations, so a change to one layer recomputes only from that
//! layer on). A point (a plan to evaluate) is one job per worker; it is done when every shard has
//! answered, and its figures are the sums over shards. The current choice goes first and a newer
//! one replaces it where it has not started yet (newest wins); curve points run behind it in the
//! order they were submitted and can be cancelled.

use super::messages::{EvalRequest, EvalResult, NetworkId};
use ndlab_core::network::ConvImpl;
use std::collections::{BTreeMap, VecDeque};

/// What the host does.
#[derive(Debug, Clone, PartialEq)]
pub enum PoolAction {
    /// Post this evaluation to worker `worker`.
    Send {
        /// The worker.
        worker: usize,
        /// The request.
        req: EvalRequest,
    },
    /// A point is done.
    Done(PointResult),
}

/// A point's figures over all shards.
#[derive(Debug, Clone, PartialEq)]
pub struct PointResult {
    /// The point's key.
    pub key: u64,
    /// Items evaluated.
    pub n: usize,
    /// Right predictions.
    pub correct: usize,
    /// Right predictions of the original network.
    pub correct_original: usize,
    /// Items whose prediction changed: (index, original, decoupled), by index.
    pub changed: Vec<(usize, usize, usize)>,
    /// Per conv, its own relative output error (when asked).
    pub layer_errors: Vec<f64>,
    /// The network's relative output error against the original's.
    pub output_error: f64,
    /// Pictures of some changed items.
    pub thumbs: Vec<super::messages::Thumb>,
}

#[derive(Debug, Clone)]
struct Point {
    impls: Vec<ConvImpl>,
    layer_errors: bool,
    urgent: bool,
    /// Answers so far, by worker.
    results: BTreeMap<usize, EvalResult>,
}

/// The pool (see the module's documentation).
#[derive(Debug, Clone)]
pub struct EvalPool {
    network_id: NetworkId,
    shards: Vec<(usize, usize)>,
    /// Per worker: the key in flight.
    busy: Vec<Option<u64>>,
    /// Per worker: the keys waiting, in the order they run.
    queues: Vec<VecDeque<u64>>,
    points: BTreeMap<u64, Point>,
}

impl EvalPool {
    /// A pool of `workers` over `items` test items of network `network_id`.
    pub fn new(network_id: NetworkId, workers: usize, items: usize) -> Self {
        let w = workers.clamp(1, items.max(1));
        let shards = (0..w).map(|i| (i * items / w, (i + 1) * items / w)).collect();
        EvalPool {
            network_id,
            shards,
            busy: vec![None; w],
            queues: vec![VecDeque::new(); w],
            points: BTreeMap::new(),
        }
    }

    /// Workers.
    pub fn workers(&self) -> usize {
        self.shards.len()
    }

    /// Worker `w`'s shard.
    pub fn shard(&self, w: usize) -> Option<(usize, usize)> {
        self.shards.get(w).copied()
    }

    /// A point to evaluate. An `urgent` one (the current choice) runs first and replaces the
    /// urgent points that have not started on a worker; others queue behind.
    pub fn submit(
        &mut self,
        key: u64,
        impls: Vec<ConvImpl>,
        layer_errors: bool,
        urgent: bool,
    ) -> Vec<PoolAction> {
        if self.points.contains_key(&key) {
            return self.dispatch();
        }
        if urgent {
            let stale: Vec<u64> = self.points.iter().filter(|(_, p)| p.urgent).map(|(&k, _)| k).collect();
            for k in stale {
                self.drop_where_not_started(k);
            }
        }
        self.points.insert(key, Point { impls, layer_errors, urgent, results: BTreeMap::new() });
        for q in &mut self.queues {
            if urgent {
                q.push_front(key);
            } else {
                q.push_back(key);
            }
        }
        self.dispatch()
    }

    /// Drops the waiting points `keep` says no to (started shards finish; their answers are
    /// ignored).
    pub fn cancel(&mut self, keep: impl Fn(u64) -> bool) -> Vec<PoolAction> {
        let gone: Vec<u64> = self.points.keys().copied().filter(|&k| !keep(k)).collect();
        for k in gone {
            self.points.remove(&k);
            for q in &mut self.queues {
                q.retain(|&x| x != k);
            }
        }
        self.dispatch()
    }

    /// Worker `worker` answered.
    pub fn on_result(&mut self, worker: usize, res: EvalResult) -> Vec<PoolAction> {
        if self.busy.get(worker).copied().flatten() == Some(res.key) {
            self.busy[worker] = None;
        }
        let mut actions = Vec::new();
        let n_workers = self.shards.len();
        if let Some(p) = self.points.get_mut(&res.key) {
            p.results.insert(worker, res.clone());
            if p.results.len() == n_workers {
                let p = self.points.remove(&res.key).map(|p| p.results);
                if let Some(results) = p {
                    actions.push(PoolAction::Done(merge(res.key, results.into_values().collect())));
                }
            }
        }
        actions.extend(self.dispatch());
        actions
    }

    /// Worker `worker` failed on its job: the point is dropped (its key is returned).
    pub fn on_error(&mut self, worker: usize) -> (Option<u64>, Vec<PoolAction>) {
        let key = self.busy.get_mut(worker).and_then(Option::take);
        if let Some(k) = key {
            self.points.remove(&k);
            for q in &mut self.queues {
                q.retain(|&x| x != k);
            }
        }
        (key, self.dispatch())
    }

    /// Shards answered and shards in all, of the points not done.
    pub fn progress(&self) -> (usize, usize) {
        let done = self.points.values().map(|p| p.results.len()).sum();
        (done, self.points.len() * self.shards.len())
    }

    /// Whether nothing is waiting or running.
    pub fn idle(&self) -> bool {
        self.points.is_empty()
    }

    fn drop_where_not_started(&mut self, key: u64) {
        let started =
            self.busy.contains(&Some(key)) || self.points.get(&key).is_some_and(|p| !p.results.is_empty());
        if !started {
            self.points.remove(&key);
            for q in &mut self.queues {
                q.retain(|&x| x != key);
            }
        }
    }

    /// Gives every idle worker its next job.
    fn dispatch(&mut self) -> Vec<PoolAction> {
        let mut actions = Vec::new();
        for w in 0..self.shards.len() {
            if self.busy[w].is_some() {
                continue;
            }
            while let Some(k) = self.queues[w].pop_front() {
                let Some(p) = self.points.get(&k) else { continue };
                if p.results.contains_key(&w) {
                    continue;
                }
                self.busy[w] = Some(k);
                let req = EvalRequest {
                    network_id: self.network_id,
                    key: k,
                    impls: p.impls.clone(),
                    range: self.shards[w],
                    layer_errors: p.layer_errors,
                };
                actions.push(PoolAction::Send { worker: w, req });
                break;
            }
        }
        actions
    }
}

/// A point's figures from its shards' answers.
fn merge(key: u64, results: Vec<EvalResult>) -> PointResult {
    let n = results.iter().map(|r| r.range.1 - r.range.0).sum();
    let correct = results.iter().map(|r| r.correct).sum();
    let correct_original = results.iter().map(|r| r.correct_original).sum();
    let mut changed: Vec<_> = results.iter().flat_map(|r| r.changed.iter().copied()).collect();
    changed.sort_unstable();
    let convs = results.iter().map(|r| r.layer_errors.len()).max().unwrap_or(0);
    let layer_errors = (0..convs)
        .map(|i| {
            let (num, den) = results
                .iter()
                .filter_map(|r| r.layer_errors.get(i))
                .fold((0.0, 0.0), |a, b| (a.0 + b.0, a.1 + b.1));
            if den > 0.0 {
                (num / den).sqrt()
            } else {
                0.0
            }
        })
        .collect();
    let (num, den) = results.iter().fold((0.0, 0.0), |a, r| (a.0 + r.output_error.0, a.1 + r.output_error.1));
    let thumbs = results.iter().flat_map(|r| r.thumbs.iter().cloned()).collect();
    PointResult {
        key,
        thumbs,
        n,
        correct,
        correct_original,
        changed,
        layer_errors,
        output_error: if den > 0.0 { (num / den).sqrt() } else { 0.0 },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(req: &EvalRequest, correct: usize) -> EvalResult {
        EvalResult {
            network_id: req.network_id,
            key: req.key,
            range: req.range,
            correct,
            correct_original: req.range.1 - req.range.0,
            changed: vec![(req.range.0, 1, 2)],
            layer_errors: vec![(1.0, 4.0)],
            output_error: (1.0, 100.0),
            thumbs: vec![],
        }
    }

    fn sends(actions: &[PoolAction]) -> Vec<(usize, u64, (usize, usize))> {
        actions
            .iter()
            .filter_map(|a| match a {
                PoolAction::Send { worker, req } => Some((*worker, req.key, req.range)),
                PoolAction::Done(_) => None,
            })
            .collect()
    }

    #[test]
    fn a_point_is_one_shard_per_worker_and_done_when_all_answer() {
        let mut p = EvalPool::new(7, 3, 1000);
        let a = p.submit(1, vec![], true, true);
        assert_eq!(sends(&a), vec![(0, 1, (0, 333)), (1, 1, (333, 666)), (2, 1, (666, 1000))]);
        let reqs: Vec<EvalRequest> = a
            .into_iter()
            .filter_map(|a| match a {
                PoolAction::Send { req, .. } => Some(req),
                _ => None,
            })
            .collect();
        assert!(p.on_result(0, answer(&reqs[0], 300)).is_empty());
        assert!(p.on_result(2, answer(&reqs[2], 300)).is_empty());
        let done = p.on_result(1, answer(&reqs[1], 300));
        let PoolAction::Done(r) = &done[0] else { panic!("{done:?}") };
        assert_eq!((r.key, r.n, r.correct, r.correct_original), (1, 1000, 900, 1000));
        assert_eq!(r.changed, vec![(0, 1, 2), (333, 1, 2), (666, 1, 2)]);
        assert!((r.layer_errors[0] - 0.5).abs() < 1e-12 && (r.output_error - 0.1).abs() < 1e-12);
        assert!(p.idle());
    }

    #[test]
    fn the_newest_current_choice_wins_and_curve_points_wait_behind_it() {
        let mut p = EvalPool::new(7, 2, 100);
        p.submit(10, vec![], false, false); // a curve point starts on both workers
        p.submit(1, vec![], false, true); // waits
        p.submit(2, vec![], false, true); // replaces 1, which had not started
        p.submit(11, vec![], false, false);
        let r0 = EvalRequest { network_id: 7, key: 10, impls: vec![], range: (0, 50), layer_errors: false };
        let next = p.on_result(0, answer(&r0, 1));
        assert_eq!(sends(&next), vec![(0, 2, (0, 50))], "the current choice next, 1 gone");
        // Cancelling the curve drops 11; 10 is half done and is dropped too.
        p.cancel(|k| k < 10);
        let r1 = EvalRequest { key: 10, range: (50, 100), ..r0.clone() };
        let next = p.on_result(1, answer(&r1, 1));
        assert_eq!(sends(&next), vec![(1, 2, (50, 100))]);
        assert!(
            !next.iter().any(|a| matches!(a, PoolAction::Done(_))),
            "the cancelled point reports nothing"
        );
        assert_eq!(p.progress(), (0, 2));
    }

    #[test]
    fn a_failed_job_drops_its_point_and_the_worker_moves_on() {
        let mut p = EvalPool::new(7, 1, 10);
        p.submit(1, vec![], false, false);
        p.submit(2, vec![], false, false);
        let (key, next) = p.on_error(0);
        assert_eq!(key, Some(1));
        assert_eq!(sends(&next), vec![(0, 2, (0, 10))]);
    }
}
