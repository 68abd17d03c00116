//! The whole-network view as a pure state machine: the opened network, the current choice (its
//! plan, evaluation and timing), the accuracy-against-MACs curve computed point by point, and
//! what to ask of the pool next. The page's host executes the [`NetAction`]s: plans are prepared
//! by worker 0, one at a time (the current choice first); evaluations go through the
//! [`EvalPool`]; a new choice wins over the one in progress.

use super::messages::{EvalResult, NetworkSummary, PlanRequest, PreparedPlan, TimeRequest, TimeResult};
use super::pool::{EvalPool, PointResult, PoolAction};
use super::Choice;
use crate::state::NetStrategy;
use ndlab_core::decouple::ThresholdRule;
use ndlab_core::layer::Order;
use ndlab_core::network::ConvImpl;
use std::collections::{BTreeMap, VecDeque};

/// Test items the browser times per run.
pub const TIME_ITEMS: usize = 100;
/// Timing rounds of the current choice (each one request: the original then the plan, once each);
/// the figures are the medians of the rounds so far. One round at a time, and only while worker 0
/// has nothing else to do: a new choice waits at most one round (a fraction of a second), not the
/// whole measurement.
pub const TIME_ROUNDS: usize = 5;

/// What the host does.
#[derive(Debug, Clone, PartialEq)]
pub enum NetAction {
    /// Ask worker 0 to prepare this plan.
    Prepare(PlanRequest),
    /// Post an evaluation to a worker (see [`PoolAction::Send`]).
    Evaluate(PoolAction),
    /// Ask worker 0 to time the network against this plan.
    Time(TimeRequest),
}

/// Which series of the curve a point belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SeriesKey {
    /// The strategy.
    pub strategy: usize,
    /// DW→PW (true) or PW→DW.
    pub dw_pw: bool,
    /// Data-aware.
    pub aware: bool,
}

/// A computed point of the curve.
#[derive(Debug, Clone, PartialEq)]
pub struct CurvePoint {
    /// Its series.
    pub series: SeriesKey,
    /// What was asked.
    pub request: PlanRequest,
    /// Conv MACs.
    pub macs: u64,
    /// Top-1 accuracy.
    pub accuracy: f64,
}

#[derive(Debug, Clone, PartialEq)]
enum Role {
    /// The original network (every conv as it is).
    Original,
    /// The current choice.
    Current,
    /// A point of the curve.
    Curve(SeriesKey),
}

/// The view (see the module's documentation).
#[derive(Debug, Clone)]
pub struct NetworkView {
    /// The opened network.
    pub summary: Option<NetworkSummary>,
    /// The current choice.
    pub choice: Option<PlanRequest>,
    /// Its plan, when prepared.
    pub prepared: Option<PreparedPlan>,
    /// Its evaluation on the test items, when done.
    pub result: Option<PointResult>,
    /// The original network's figures (every conv as it is).
    pub original: Option<PointResult>,
    /// The network timed against the current plan.
    pub timing: Option<TimeResult>,
    /// The timing rounds of the current choice so far.
    time_rounds: Vec<TimeResult>,
    /// The current choice's key and per-conv implementations, once evaluated (for timing rounds).
    evaluating_current: Option<(u64, Vec<ConvImpl>)>,
    /// The curve's points so far.
    pub curve: Vec<CurvePoint>,
    /// Curve points asked for in all.
    pub curve_total: usize,
    /// The last failure, for a person.
    pub error: Option<String>,
    /// Why the current choice has no figure (its preparation or evaluation failed, e.g. a MAC
    /// budget out of reach); cleared by a new choice or network.
    pub choice_failed: Option<String>,
    workers: usize,
    pool: Option<EvalPool>,
    next_key: u64,
    to_prepare: VecDeque<(PlanRequest, Role)>,
    preparing: Option<(PlanRequest, Role)>,
    evaluating: BTreeMap<u64, (Role, PreparedPlan)>,
    current_key: Option<u64>,
}

impl NetworkView {
    /// A view with a pool of `workers`.
    pub fn new(workers: usize) -> Self {
        NetworkView {
            summary: None,
            choice: None,
            prepared: None,
            result: None,
            original: None,
            timing: None,
            time_rounds: Vec::new(),
            evaluating_current: None,
            curve: Vec::new(),
            curve_total: 0,
            error: None,
            choice_failed: None,
            workers: workers.max(1),
            pool: None,
            next_key: 1,
            to_prepare: VecDeque::new(),
            preparing: None,
            evaluating: BTreeMap::new(),
            current_key: None,
        }
    }

    /// The network opened (or its data changed): everything computed before goes; the original
    /// network is evaluated, then the current choice.
    pub fn on_summary(&mut self, s: NetworkSummary) -> Vec<NetAction> {
        let items = s.data.as_ref().map_or(0, |d| d.n);
        self.pool = (items > 0).then(|| EvalPool::new(s.network_id, self.workers, items));
        self.summary = Some(s);
        self.choice_failed = None;
        self.prepared = None;
        self.result = None;
        self.original = None;
        self.timing = None;
        self.time_rounds.clear();
        self.evaluating_current = None;
        self.curve.clear();
        self.curve_total = 0;
        self.to_prepare.clear();
        self.preparing = None;
        self.evaluating.clear();
        self.current_key = None;
        let mut actions = Vec::new();
        if let Some(pool) = self.pool.as_mut() {
            let key = self.next_key;
            self.next_key += 1;
            // The original network is the first point.
            self.evaluating.insert(key, (Role::Original, original_plan()));
            actions.extend(pool.submit(key, Vec::new(), false, false).into_iter().map(NetAction::Evaluate));
        }
        if let Some(c) = self.choice.clone() {
            actions.extend(self.set_choice(c));
        }
        actions
    }

    /// A new current choice (newest wins).
    pub fn set_choice(&mut self, req: PlanRequest) -> Vec<NetAction> {
        self.choice = Some(req.clone());
        self.choice_failed = None;
        self.prepared = None;
        self.result = None;
        self.timing = None;
        self.time_rounds.clear();
        self.evaluating_current = None;
        if self.summary.is_none() {
            return Vec::new();
        }
        self.to_prepare.retain(|(_, r)| *r != Role::Current);
        self.to_prepare.push_front((req, Role::Current));
        self.next_prepare()
    }

    /// Queues the curve: every strategy in both orderings (data-aware or not), points not yet
    /// computed.
    pub fn start_curve(&mut self, aware: bool) -> Vec<NetAction> {
        let mut n = 0;
        for (si, strategy) in NetStrategy::ALL.into_iter().enumerate() {
            for order in [Order::DwPw, Order::PwDw] {
                let series = SeriesKey { strategy: si, dw_pw: order == Order::DwPw, aware };
                for choice in curve_choices(strategy) {
                    let req = PlanRequest { order, choice, data_aware: aware };
                    if self.curve.iter().any(|p| p.request == req) {
                        continue;
                    }
                    self.to_prepare.push_back((req, Role::Curve(series)));
                    n += 1;
                }
            }
        }
        self.curve_total = self.curve.iter().filter(|p| p.series.aware == aware).count() + n;
        self.next_prepare()
    }

    /// Drops the curve points not computed yet.
    pub fn cancel_curve(&mut self) -> Vec<NetAction> {
        self.to_prepare.retain(|(_, r)| *r == Role::Current);
        let curve_keys: Vec<u64> = self
            .evaluating
            .iter()
            .filter(|(_, (r, _))| matches!(r, Role::Curve(_)))
            .map(|(&k, _)| k)
            .collect();
        for k in &curve_keys {
            self.evaluating.remove(k);
        }
        self.curve_total = self.curve.len();
        match self.pool.as_mut() {
            Some(p) => p.cancel(|k| !curve_keys.contains(&k)).into_iter().map(NetAction::Evaluate).collect(),
            None => Vec::new(),
        }
    }

    /// Worker 0 prepared a plan.
    pub fn on_prepared(&mut self, p: PreparedPlan) -> Vec<NetAction> {
        let Some((req, role)) = self.preparing.take() else { return self.next_prepare() };
        if req != p.request || self.summary.as_ref().is_none_or(|s| s.network_id != p.network_id) {
            return self.next_prepare();
        }
        let mut actions = Vec::new();
        let current = role == Role::Current && self.choice.as_ref() == Some(&req);
        if current {
            self.prepared = Some(p.clone());
        }
        if role == Role::Current && !current {
            return self.next_prepare();
        }
        if let Some(pool) = self.pool.as_mut() {
            let key = self.next_key;
            self.next_key += 1;
            if current {
                self.current_key = Some(key);
            }
            let impls = p.impls.clone();
            self.evaluating.insert(key, (role.clone(), p));
            actions.extend(pool.submit(key, impls, current, current).into_iter().map(NetAction::Evaluate));
        }
        actions.extend(self.next_prepare());
        actions
    }

    /// Worker `worker` evaluated a shard.
    pub fn on_evaluated(&mut self, worker: usize, r: EvalResult) -> Vec<NetAction> {
        let Some(pool) = self.pool.as_mut() else { return Vec::new() };
        let mut out = Vec::new();
        for a in pool.on_result(worker, r) {
            match a {
                PoolAction::Done(res) => out.extend(self.point_done(res)),
                send => out.push(NetAction::Evaluate(send)),
            }
        }
        out
    }

    /// Worker 0 timed one round: the figures become the medians of the rounds so far, and the next
    /// round is asked for while worker 0 has nothing else to do (see [`TIME_ROUNDS`]).
    pub fn on_timed(&mut self, t: TimeResult) -> Vec<NetAction> {
        // Only the evaluated current choice's rounds (a newer choice clears it).
        if Some(t.key) != self.current_key || self.evaluating_current.as_ref().map(|(k, _)| *k) != Some(t.key)
        {
            return Vec::new();
        }
        let (key, items) = (t.key, t.items);
        self.time_rounds.push(t);
        let median = |f: fn(&TimeResult) -> f64| {
            let mut v: Vec<f64> = self.time_rounds.iter().map(f).collect();
            v.sort_by(f64::total_cmp);
            v[v.len() / 2]
        };
        self.timing = Some(TimeResult {
            key,
            original_ms: median(|r| r.original_ms),
            decoupled_ms: median(|r| r.decoupled_ms),
            items,
        });
        let idle = self.preparing.is_none()
            && self.to_prepare.is_empty()
            && self.pool.as_ref().is_none_or(EvalPool::idle);
        if self.time_rounds.len() < TIME_ROUNDS && idle {
            self.time_request(key).into_iter().collect()
        } else {
            Vec::new()
        }
    }

    /// Timing rounds measured for the current choice.
    pub fn time_rounds(&self) -> usize {
        self.time_rounds.len()
    }

    /// A timing round of the current choice's plan (key `key`), if there is one.
    fn time_request(&self, key: u64) -> Option<NetAction> {
        let s = self.summary.as_ref()?;
        let (_, plan) = self.evaluating_current.as_ref().filter(|(k, _)| *k == key)?;
        let n = self.result.as_ref().map_or(1, |r| r.n.max(1));
        Some(NetAction::Time(TimeRequest {
            network_id: s.network_id,
            key,
            impls: plan.clone(),
            items: TIME_ITEMS.min(n),
        }))
    }

    /// A request failed: `worker` is the pool worker whose evaluation failed (None: worker 0's
    /// preparation or timing).
    pub fn on_error(&mut self, worker: Option<usize>, message: String) -> Vec<NetAction> {
        let mut out = Vec::new();
        let mut current = false;
        match worker {
            Some(w) => {
                if let Some(pool) = self.pool.as_mut() {
                    let (key, next) = pool.on_error(w);
                    if let Some(k) = key {
                        self.evaluating.remove(&k);
                        current = Some(k) == self.current_key;
                    }
                    out.extend(next.into_iter().map(NetAction::Evaluate));
                }
            }
            None => {
                if let Some((req, Role::Current)) = self.preparing.take() {
                    current = self.choice.as_ref() == Some(&req);
                }
                out.extend(self.next_prepare());
            }
        }
        if current {
            self.choice_failed = Some(message.clone());
        }
        self.error = Some(message);
        out
    }

    /// Curve points computed and asked for.
    pub fn curve_progress(&self) -> (usize, usize) {
        (self.curve.len().min(self.curve_total), self.curve_total)
    }

    /// Whether curve points are waiting or running.
    pub fn curve_running(&self) -> bool {
        self.to_prepare.iter().any(|(_, r)| *r != Role::Current)
            || self.evaluating.values().any(|(r, _)| matches!(r, Role::Curve(_)))
            || self.preparing.as_ref().is_some_and(|(_, r)| *r != Role::Current)
    }

    fn point_done(&mut self, res: PointResult) -> Vec<NetAction> {
        let Some((role, plan)) = self.evaluating.remove(&res.key) else { return Vec::new() };
        let mut out = Vec::new();
        match role {
            Role::Current if Some(res.key) == self.current_key => {
                self.result = Some(res.clone());
                self.time_rounds.clear();
                self.evaluating_current = Some((res.key, plan.impls.clone()));
                out.extend(self.time_request(res.key));
            }
            Role::Current => {}
            Role::Original => self.original = Some(res),
            Role::Curve(series) => {
                let accuracy = if res.n > 0 { res.correct as f64 / res.n as f64 } else { 0.0 };
                self.curve.push(CurvePoint {
                    series,
                    request: plan.request.clone(),
                    macs: plan.plan.macs_decoupled,
                    accuracy,
                });
            }
        }
        out
    }

    fn next_prepare(&mut self) -> Vec<NetAction> {
        if self.preparing.is_some() || self.summary.is_none() {
            return Vec::new();
        }
        match self.to_prepare.pop_front() {
            Some((req, role)) => {
                self.preparing = Some((req.clone(), role));
                vec![NetAction::Prepare(req)]
            }
            None => Vec::new(),
        }
    }
}

/// A stand-in plan for the original network's point.
fn original_plan() -> PreparedPlan {
    PreparedPlan {
        network_id: 0,
        request: PlanRequest { order: Order::DwPw, choice: Choice::PerLayer(Vec::new()), data_aware: false },
        plan: ndlab_core::network::plan::NetworkPlan {
            order: Order::DwPw,
            layers: Vec::new(),
            macs: 0,
            macs_decoupled: 0,
        },
        impls: Vec::<ConvImpl>::new(),
        allocation: None,
    }
}

/// The curve's settings of a strategy: T = 1..=8 (one T for all), ten thresholds (both rules),
/// ten speed-ups (the budget).
pub fn curve_choices(strategy: NetStrategy) -> Vec<Choice> {
    const TAUS: [f64; 10] = [0.5, 0.6, 0.7, 0.8, 0.85, 0.9, 0.93, 0.95, 0.97, 0.99];
    const SPEEDUPS: [f64; 10] = [1.25, 1.5, 1.75, 2.0, 2.5, 3.0, 3.5, 4.0, 5.0, 6.0];
    match strategy {
        NetStrategy::Uniform => (1..=8).map(Choice::Uniform).collect(),
        NetStrategy::Mean => TAUS.iter().map(|&t| Choice::Threshold(t, ThresholdRule::Mean)).collect(),
        NetStrategy::Max => TAUS.iter().map(|&t| Choice::Threshold(t, ThresholdRule::Max)).collect(),
        NetStrategy::Budget => SPEEDUPS.iter().map(|&x| Choice::Speedup(x)).collect(),
    }
}

#[cfg(test)]
mod tests;
