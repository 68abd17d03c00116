//! The page's comparison over a pool of workers, as a pure state machine: the host
//! (`src/app/relatives.rs`) posts what it is told and feeds back the answers.
//!
//! A comparison is split into its units ([`session::units`]: one row or one Pareto series per
//! method, with a cost estimate). Rows go first, so that the table fills before the plot; within
//! rows and within series the costliest unit goes first (longest processing time first, which
//! keeps the last worker from finishing long after the others). A worker gets one unit at a time
//! — the next one when it answers — so a slow worker (a busy core) takes fewer. Each answer is a
//! partial report; the pool merges what has arrived ([`session::merge`]) and hands it over, so the
//! Pareto plot draws series as they come. The first error ends the comparison with its message.
//!
//! Every worker must have been given the layer and the input before the first unit (the host
//! sends those first; a worker handles its messages in order). Answers of a request the pool is
//! not waiting for (the loads, or a worker of an earlier comparison) are ignored; a failed load
//! shows up as the failure of the unit that follows it.

use crate::protocol::{Response, ResponseBody};
use ndlab_core::error::Result;
use ndlab_core::relatives::session::{self, CompareReport, CompareRequest, MethodRow, UnitKind, UnitPlan};
use ndlab_core::relatives::{Dims, Method};
use std::collections::VecDeque;

/// At most this many comparison workers (the units are 14 and the costliest two take about
/// half of the work: more workers than this would mostly wait).
pub const MAX_COMPARE_WORKERS: usize = 4;

/// How many comparison workers for a browser reporting `hardware_concurrency` logical cores.
/// Every core: the page's own worker (the layer view) is idle while nobody moves a control, and
/// the browser schedules the workers over the cores.
pub fn pool_size(hardware_concurrency: f64) -> usize {
    if hardware_concurrency.is_finite() && hardware_concurrency >= 1.0 {
        (hardware_concurrency as usize).clamp(1, MAX_COMPARE_WORKERS)
    } else {
        1
    }
}

/// What the host does.
#[derive(Debug, Clone, PartialEq)]
pub enum CompareAction {
    /// Post `req` (the comparison restricted to one unit) to worker `worker`, then tell the pool
    /// the request's id with [`ComparePool::sent`].
    Send {
        /// The worker.
        worker: usize,
        /// The request.
        req: CompareRequest,
    },
    /// The rows so far, in the table's order ([`Method::ALL`]).
    Rows(Vec<MethodRow>),
    /// A stage line and the whole comparison's fraction done (0..=1).
    Progress(String, f64),
    /// What has arrived so far, merged (for the Pareto plot).
    Partial(Box<CompareReport>),
    /// Every unit is done: the whole report.
    Done(Box<CompareReport>),
    /// A unit failed (or a worker died): the comparison stops with this message.
    Failed(String),
}

#[derive(Debug, Clone)]
struct InFlight {
    plan: UnitPlan,
    /// The request's id, once the host has said it.
    id: Option<u64>,
    /// Fraction of the unit done, from its progress messages.
    fraction: f64,
}

/// The pool (see the module's documentation).
#[derive(Debug, Clone)]
pub struct ComparePool {
    req: CompareRequest,
    queue: VecDeque<UnitPlan>,
    in_flight: Vec<Option<InFlight>>,
    parts: Vec<CompareReport>,
    total_cost: f64,
    done_cost: f64,
    finished: bool,
    /// A row unit that times the regular forward pass has been sent.
    forward_timed: bool,
}

/// A unit's weight in the progress fraction (closed forms count for something).
fn weight(p: &UnitPlan) -> f64 {
    p.cost_ms.max(1.0)
}

impl ComparePool {
    /// The comparison `req` of a layer of shape `d` over `workers` workers (at least one), and the
    /// first requests to post. Fails on a request the session refuses (a budget out of range).
    pub fn start(req: CompareRequest, d: Dims, workers: usize) -> Result<(Self, Vec<CompareAction>)> {
        let mut plan = session::units(&req, d)?;
        // Rows before series; the costliest first within each (a stable sort keeps the session's
        // order between equal costs).
        plan.sort_by(|a, b| {
            let kind = |p: &UnitPlan| u8::from(p.unit.kind == UnitKind::Series);
            kind(a).cmp(&kind(b)).then(b.cost_ms.total_cmp(&a.cost_ms))
        });
        let total_cost = plan.iter().map(weight).sum();
        let workers = workers.clamp(1, plan.len().max(1));
        let mut pool = ComparePool {
            req,
            queue: plan.into(),
            in_flight: vec![None; workers],
            parts: Vec::new(),
            total_cost,
            done_cost: 0.0,
            finished: false,
            forward_timed: false,
        };
        let mut actions = Vec::new();
        for w in 0..workers {
            pool.dispatch(w, &mut actions);
        }
        if pool.in_flight.iter().all(Option::is_none) {
            pool.finished = true;
            actions.push(CompareAction::Failed("nothing to compare".into()));
        }
        Ok((pool, actions))
    }

    /// The number of workers.
    pub fn workers(&self) -> usize {
        self.in_flight.len()
    }

    /// Whether the comparison has ended (done or failed).
    pub fn finished(&self) -> bool {
        self.finished
    }

    /// The id of the request the host posted for the unit now on `worker`.
    pub fn sent(&mut self, worker: usize, id: u64) {
        if let Some(Some(f)) = self.in_flight.get_mut(worker) {
            f.id = Some(id);
        }
    }

    fn dispatch(&mut self, worker: usize, actions: &mut Vec<CompareAction>) {
        let Some(plan) = self.queue.pop_front() else { return };
        // The first row unit times the regular layer's forward pass for the report; the others skip it.
        let skip_regular_forward = plan.unit.kind != UnitKind::Row || self.forward_timed;
        self.forward_timed |= plan.unit.kind == UnitKind::Row;
        let req =
            CompareRequest { units: Some(vec![plan.unit.clone()]), skip_regular_forward, ..self.req.clone() };
        if let Some(slot) = self.in_flight.get_mut(worker) {
            *slot = Some(InFlight { plan, id: None, fraction: 0.0 });
            actions.push(CompareAction::Send { worker, req });
        }
    }

    fn fraction(&self) -> f64 {
        let running: f64 = self.in_flight.iter().flatten().map(|f| weight(&f.plan) * f.fraction).sum();
        ((self.done_cost + running) / self.total_cost.max(1.0)).clamp(0.0, 1.0)
    }

    fn merged(&self) -> Result<CompareReport> {
        session::merge(self.parts.clone())
    }

    fn rows(&self) -> Vec<MethodRow> {
        let index = |id: &str| Method::ALL.iter().position(|m| m.id() == id).unwrap_or(usize::MAX);
        let mut rows: Vec<MethodRow> = self.parts.iter().flat_map(|p| p.rows.iter().cloned()).collect();
        rows.sort_by_key(|r| index(&r.method));
        rows
    }

    fn fail(&mut self, message: String) -> Vec<CompareAction> {
        self.finished = true;
        self.queue.clear();
        self.in_flight.iter_mut().for_each(|f| *f = None);
        vec![CompareAction::Failed(message)]
    }

    /// An answer of worker `worker`.
    pub fn on_response(&mut self, worker: usize, resp: Response) -> Vec<CompareAction> {
        if self.finished {
            return Vec::new();
        }
        let Some(Some(current)) = self.in_flight.get(worker) else { return Vec::new() };
        let ours = current.id.is_some_and(|id| id == resp.id);
        match resp.body {
            // Id 0: the worker itself failed (it died, or a message could not be read).
            ResponseBody::Error { message } if ours || resp.id == 0 => self.fail(message),
            _ if !ours => Vec::new(),
            ResponseBody::Progress { stage, fraction } => {
                if let Some(Some(f)) = self.in_flight.get_mut(worker) {
                    f.fraction = if fraction.is_finite() { fraction.clamp(0.0, 1.0) } else { 0.0 };
                }
                let busy = self.in_flight.iter().flatten().count();
                let line = if self.workers() > 1 { format!("{stage} · {busy} workers busy") } else { stage };
                vec![CompareAction::Progress(line, self.fraction())]
            }
            ResponseBody::Compare(report) => {
                let done = self.in_flight.get_mut(worker).and_then(Option::take);
                self.done_cost += done.as_ref().map_or(0.0, |f| weight(&f.plan));
                let had_rows = !report.rows.is_empty();
                self.parts.push(*report);
                let mut actions = Vec::new();
                if had_rows {
                    actions.push(CompareAction::Rows(self.rows()));
                }
                self.dispatch(worker, &mut actions);
                let merged = match self.merged() {
                    Ok(m) => m,
                    Err(e) => return self.fail(e.to_string()),
                };
                if self.queue.is_empty() && self.in_flight.iter().all(Option::is_none) {
                    self.finished = true;
                    actions.push(CompareAction::Done(Box::new(merged)));
                } else {
                    actions.push(CompareAction::Partial(Box::new(merged)));
                    actions.push(CompareAction::Progress(
                        format!("{} of {} parts done", self.parts.len(), self.parts.len() + self.remaining()),
                        self.fraction(),
                    ));
                }
                actions
            }
            _ => Vec::new(),
        }
    }

    /// Units not done yet (waiting or running).
    fn remaining(&self) -> usize {
        self.queue.len() + self.in_flight.iter().flatten().count()
    }
}

#[cfg(test)]
mod tests;
