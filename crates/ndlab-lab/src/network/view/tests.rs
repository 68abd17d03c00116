//! The view's policies: the original first, the current choice before the curve, newest wins.

use super::*;
use crate::network::messages::{ConvSummary, DataSummary, EvalRequest, NetworkSummary};
use ndlab_core::network::plan::NetworkPlan;

fn summary(id: u64, n: usize) -> NetworkSummary {
    NetworkSummary {
        network_id: id,
        name: "net".into(),
        source: String::new(),
        input: vec![1, 1, 8, 8],
        convs: Vec::<ConvSummary>::new(),
        macs: 1000,
        runs_here: true,
        classes: vec![],
        data: Some(DataSummary { name: "d".into(), n, labelled: true }),
        calibration: 10,
    }
}

fn prepared(id: u64, req: &PlanRequest, macs: u64) -> PreparedPlan {
    PreparedPlan {
        network_id: id,
        request: req.clone(),
        plan: NetworkPlan { order: req.order, layers: vec![], macs: 1000, macs_decoupled: macs },
        impls: vec![],
        allocation: None,
    }
}

fn evals(actions: &[NetAction]) -> Vec<(usize, EvalRequest)> {
    actions
        .iter()
        .filter_map(|a| match a {
            NetAction::Evaluate(PoolAction::Send { worker, req }) => Some((*worker, req.clone())),
            _ => None,
        })
        .collect()
}

fn prepares(actions: &[NetAction]) -> Vec<PlanRequest> {
    actions
        .iter()
        .filter_map(|a| match a {
            NetAction::Prepare(r) => Some(r.clone()),
            _ => None,
        })
        .collect()
}

fn answer(req: &EvalRequest, correct: usize) -> EvalResult {
    EvalResult {
        network_id: req.network_id,
        key: req.key,
        range: req.range,
        correct,
        correct_original: 45,
        changed: vec![],
        layer_errors: vec![],
        output_error: (0.0, 1.0),
        thumbs: vec![],
    }
}

fn choice(t: usize) -> PlanRequest {
    PlanRequest { order: Order::PwDw, choice: Choice::Uniform(t), data_aware: false }
}

#[test]
fn the_original_is_evaluated_first_then_the_current_choice_and_its_timing() {
    let mut v = NetworkView::new(2);
    assert!(v.set_choice(choice(4)).is_empty(), "nothing before a network");
    let a = v.on_summary(summary(5, 100));
    let orig = evals(&a);
    assert_eq!(orig.len(), 2, "the original on both shards");
    assert_eq!(prepares(&a), vec![choice(4)]);
    let a = v.on_prepared(prepared(5, &choice(4), 500));
    assert!(evals(&a).is_empty(), "both workers busy with the original");
    assert!(v.prepared.is_some());
    // The original's shards answer; each worker moves on to the current choice.
    let a0 = v.on_evaluated(orig[0].0, answer(&orig[0].1, 45));
    let a1 = v.on_evaluated(orig[1].0, answer(&orig[1].1, 45));
    assert_eq!(v.original.as_ref().map(|r| (r.n, r.correct)), Some((100, 90)));
    let cur: Vec<_> = evals(&a0).into_iter().chain(evals(&a1)).collect();
    assert_eq!(cur.len(), 2);
    let _ = v.on_evaluated(cur[0].0, answer(&cur[0].1, 40));
    let done = v.on_evaluated(cur[1].0, answer(&cur[1].1, 40));
    assert_eq!(v.result.as_ref().map(|r| r.correct), Some(80));
    let NetAction::Time(t) = &done[0] else { panic!("{done:?}") };
    let t = t.clone();
    assert_eq!(t.items, TIME_ITEMS.min(100));
    // Rounds one at a time while worker 0 is idle; the figures are the medians so far.
    let rounds = [(10.0, 5.0), (30.0, 4.0), (12.0, 9.0), (11.0, 6.0), (50.0, 1.0)];
    for (i, &(o, d)) in rounds.iter().enumerate() {
        let next = v.on_timed(TimeResult { key: t.key, original_ms: o, decoupled_ms: d, items: t.items });
        assert_eq!(v.time_rounds(), i + 1);
        if i + 1 < TIME_ROUNDS {
            assert_eq!(next, vec![NetAction::Time(t.clone())], "round {}", i + 2);
        } else {
            assert!(next.is_empty(), "{TIME_ROUNDS} rounds and no more");
        }
    }
    // Medians of (10, 30, 12, 11, 50) and (5, 4, 9, 6, 1), by hand.
    assert_eq!(v.timing.as_ref().map(|t| (t.original_ms, t.decoupled_ms)), Some((12.0, 5.0)));
    // A timing for an older choice is ignored.
    assert!(v.on_timed(TimeResult { key: 999, original_ms: 1.0, decoupled_ms: 1.0, items: 1 }).is_empty());
    assert_eq!(v.timing.as_ref().map(|t| t.original_ms), Some(12.0));
}

#[test]
fn a_new_choice_does_not_wait_behind_the_timing_rounds() {
    let mut v = NetworkView::new(1);
    let _ = v.set_choice(choice(4));
    let a = v.on_summary(summary(5, 100));
    let orig = evals(&a);
    let _ = v.on_prepared(prepared(5, &choice(4), 500));
    let a = v.on_evaluated(orig[0].0, answer(&orig[0].1, 90));
    let cur = evals(&a);
    let done = v.on_evaluated(cur[0].0, answer(&cur[0].1, 80));
    let NetAction::Time(t) = &done[0] else { panic!("{done:?}") };
    let t = t.clone();
    // A new choice arrives while worker 0 times the first round: it is prepared next, and the
    // old choice's round, when it answers, asks for no more.
    assert_eq!(prepares(&v.set_choice(choice(2))), vec![choice(2)]);
    assert!(v
        .on_timed(TimeResult { key: t.key, original_ms: 1.0, decoupled_ms: 1.0, items: t.items })
        .is_empty());
    assert!(v.timing.is_none(), "the old choice's time is not the new one's");
}

#[test]
fn a_newer_choice_wins_and_the_curve_waits_behind_it_and_can_be_cancelled() {
    let mut v = NetworkView::new(1);
    v.on_summary(summary(5, 10));
    let a = v.set_choice(choice(2));
    assert_eq!(prepares(&a), vec![choice(2)]);
    // The curve queues behind; a newer choice goes before it.
    assert!(prepares(&v.start_curve(false)).is_empty(), "one preparation at a time");
    assert!(v.curve_running());
    assert!(prepares(&v.set_choice(choice(3))).is_empty());
    // The answer for T = 2 is not the current choice any more: nothing to evaluate; T = 3 next.
    let a = v.on_prepared(prepared(5, &choice(2), 300));
    assert!(evals(&a).is_empty() && v.prepared.is_none());
    assert_eq!(prepares(&a), vec![choice(3)]);
    let a = v.on_prepared(prepared(5, &choice(3), 400));
    assert_eq!(v.prepared.as_ref().map(|p| p.plan.macs_decoupled), Some(400));
    // Then the curve's first point (one T for all, DW→PW, T = 1).
    let next = prepares(&a);
    assert_eq!(next, vec![PlanRequest { order: Order::DwPw, choice: Choice::Uniform(1), data_aware: false }]);
    let (_, total) = v.curve_progress();
    assert_eq!(total, 2 * (8 + 10 + 10 + 10));
    v.cancel_curve();
    assert_eq!(v.curve_progress(), (0, 0));
    // The one being prepared finishes but nothing more is asked.
    let a = v.on_prepared(prepared(5, &next[0], 100));
    assert!(prepares(&a).is_empty());
}

#[test]
fn a_plan_for_another_network_is_dropped_and_failures_are_shown() {
    let mut v = NetworkView::new(1);
    v.on_summary(summary(5, 10));
    v.set_choice(choice(2));
    assert!(evals(&v.on_prepared(prepared(6, &choice(2), 300))).is_empty());
    assert!(v.prepared.is_none());
    v.set_choice(choice(2));
    let a = v.on_error(None, "no calibration data".into());
    assert_eq!(v.error.as_deref(), Some("no calibration data"));
    assert_eq!(v.choice_failed.as_deref(), Some("no calibration data"), "the current choice says why");
    assert!(prepares(&a).is_empty());
    // A new choice clears it and is prepared.
    assert_eq!(prepares(&v.set_choice(choice(3))), vec![choice(3)]);
    assert!(v.choice_failed.is_none());
}

#[test]
fn a_failed_curve_point_does_not_mark_the_current_choice() {
    let mut v = NetworkView::new(1);
    v.on_summary(summary(5, 10));
    v.set_choice(choice(2));
    v.on_prepared(prepared(5, &choice(2), 300));
    // The curve's first point is prepared once the current choice is; its failure is shown, but
    // the current choice keeps waiting for its figure.
    let a = v.start_curve(false);
    assert_eq!(prepares(&a).len(), 1, "{a:?}");
    let a = v.on_error(None, "a budget of 1 conv MACs is out of reach".into());
    assert!(v.choice_failed.is_none() && v.error.is_some());
    assert_eq!(prepares(&a).len(), 1, "the next curve point");
}
