use super::*;
use ndlab_core::layer::{ConvGeometry, ConvLayer, FeatureMap, Kernel};
use ndlab_core::random::Rng;
use ndlab_core::relatives::session::{run, CompareEvent, CompareInput, Unit};

fn zero_clock() -> f64 {
    0.0
}

fn layer() -> ConvLayer {
    let mut rng = Rng::new(17);
    let k = Kernel::new(10, 6, 3, 3, rng.signed_vec(10 * 6 * 9)).unwrap();
    ConvLayer::new(k, Some(rng.signed_vec(10)), ConvGeometry::new(1, 1, 1)).unwrap()
}

fn input(layer: &ConvLayer) -> (FeatureMap, FeatureMap) {
    let mut rng = Rng::new(3);
    let x = FeatureMap::new(6, 7, 8, rng.signed_vec(6 * 56)).unwrap();
    let y = ndlab_core::conv::layer_forward(&x, layer).unwrap();
    (x, y)
}

fn request() -> CompareRequest {
    CompareRequest { speedup: 2.0, max_sweeps: 30, sweep_max_sweeps: 6, ..CompareRequest::default() }
}

/// A worker: the session run on the request (restricted to its unit), as the engine answers.
fn answer(layer: &ConvLayer, act: &(FeatureMap, FeatureMap), id: u64, req: &CompareRequest) -> Response {
    let input = CompareInput { layer, nd: &[], activations: Some((&act.0, &act.1)), clock: zero_clock };
    let report = run(&input, req, &mut |_: CompareEvent| true).unwrap();
    Response { id, body: ResponseBody::Compare(Box::new(report)) }
}

/// Drives a pool to the end with every worker answering in turn (worker order: `order`, cycled),
/// and returns the actions seen and the units each worker ran.
fn drive(workers: usize, order: &[usize]) -> (Vec<CompareAction>, Vec<Vec<Unit>>) {
    let l = layer();
    let act = input(&l);
    let d = Dims::of(&l.kernel);
    let (mut pool, first) = ComparePool::start(request(), d, workers).unwrap();
    let mut next_id = 100;
    let mut pending: Vec<Option<(u64, CompareRequest)>> = vec![None; pool.workers()];
    let mut ran = vec![Vec::new(); pool.workers()];
    let mut seen = Vec::new();
    let mut todo = first;
    for turn in 0..200 {
        for a in todo.drain(..) {
            if let CompareAction::Send { worker, req } = &a {
                next_id += 1;
                pool.sent(*worker, next_id);
                ran[*worker].extend(req.units.clone().unwrap());
                pending[*worker] = Some((next_id, req.clone()));
            }
            seen.push(a);
        }
        if pool.finished() {
            break;
        }
        // The next worker in `order` with something to answer.
        let w = (0..order.len())
            .map(|i| order[(turn + i) % order.len()])
            .find(|&w| pending.get(w).is_some_and(Option::is_some))
            .expect("a worker has a request while the pool is not finished");
        let (id, req) = pending[w].take().unwrap();
        todo = pool.on_response(w, answer(&l, &act, id, &req));
    }
    (seen, ran)
}

/// Rows and series of a report (the clock reads 0: timing fields are 0 too).
fn content(r: &CompareReport) -> String {
    serde_json::to_string(&(&r.rows, &r.pareto)).unwrap()
}

fn done(seen: &[CompareAction]) -> &CompareReport {
    seen.iter()
        .find_map(|a| match a {
            CompareAction::Done(r) => Some(&**r),
            _ => None,
        })
        .expect("the comparison ends with its report")
}

#[test]
fn the_pool_gives_the_report_of_one_whole_run_whatever_the_number_of_workers() {
    // The oracle: the session's own run of the whole request in one go (as one worker did before).
    let l = layer();
    let act = input(&l);
    let whole = match answer(&l, &act, 1, &request()).body {
        ResponseBody::Compare(r) => *r,
        _ => unreachable!(),
    };
    assert_eq!(whole.rows.len(), 7);
    for workers in [1, 2, 3, 4] {
        let (seen, ran) = drive(workers, &(0..workers).collect::<Vec<_>>());
        let report = done(&seen);
        assert_eq!(content(report), content(&whole), "{workers} workers");
        assert_eq!(report.regular_macs, whole.regular_macs);
        assert_eq!(report.output_hw, whole.output_hw);
        // Every unit ran exactly once.
        let mut all: Vec<Unit> = ran.into_iter().flatten().collect();
        assert_eq!(all.len(), 14, "{workers} workers");
        all.sort_by(|a, b| format!("{a:?}").cmp(&format!("{b:?}")));
        all.dedup();
        assert_eq!(all.len(), 14);
        // Nothing after the end; exactly one Done.
        assert!(matches!(seen.last(), Some(CompareAction::Done(_))));
        assert_eq!(seen.iter().filter(|a| matches!(a, CompareAction::Done(_))).count(), 1);
    }
}

#[test]
fn rows_are_sent_before_series_and_the_costliest_first() {
    let l = layer();
    let d = Dims::of(&l.kernel);
    let (seen, _) = drive(2, &[0, 1]);
    let sent: Vec<Unit> = seen
        .iter()
        .filter_map(|a| match a {
            CompareAction::Send { req, .. } => req.units.as_ref().map(|u| u[0].clone()),
            _ => None,
        })
        .collect();
    // One unit times the regular forward pass (the first row sent); the others skip it.
    let timing: Vec<Unit> = seen
        .iter()
        .filter_map(|a| match a {
            CompareAction::Send { req, .. } if !req.skip_regular_forward => {
                req.units.as_ref().map(|u| u[0].clone())
            }
            _ => None,
        })
        .collect();
    assert_eq!(timing, vec![sent[0].clone()]);
    assert_eq!(sent[0].kind, UnitKind::Row);
    assert!(done(&seen).regular_forward_ms.is_some(), "the report has the regular layer's time");
    let first_series = sent.iter().position(|u| u.kind == UnitKind::Series).unwrap();
    assert_eq!(first_series, 7, "{sent:?}");
    assert!(sent[first_series..].iter().all(|u| u.kind == UnitKind::Series));
    // Costs (the session's estimates) non-increasing within each kind.
    let plan = session::units(&request(), d).unwrap();
    let cost = |u: &Unit| plan.iter().find(|p| &p.unit == u).unwrap().cost_ms;
    for part in [&sent[..7], &sent[7..]] {
        for pair in part.windows(2) {
            assert!(cost(&pair[0]) >= cost(&pair[1]), "{pair:?}");
        }
    }
}

#[test]
fn on_the_default_256_layer_the_two_cp_rows_go_first_one_per_worker() {
    // By hand: the two ALS rows (hundreds of sweeps at rank ≈ 284) dwarf the closed forms.
    let d = Dims { n: 256, c: 256, kh: 3, kw: 3 };
    let (pool, first) = ComparePool::start(CompareRequest::default(), d, 2).unwrap();
    assert_eq!(pool.workers(), 2);
    let sent: Vec<(usize, String)> = first
        .iter()
        .filter_map(|a| match a {
            CompareAction::Send { worker, req } => {
                Some((*worker, req.units.as_ref().unwrap()[0].method.clone()))
            }
            _ => None,
        })
        .collect();
    assert_eq!(sent, vec![(0, "cp".to_string()), (1, "cp-mobilenet".to_string())]);
}

#[test]
fn rows_arrive_in_the_tables_order_and_the_partial_reports_grow() {
    let (seen, _) = drive(3, &[2, 0, 1]);
    let mut last_rows = 0;
    let mut last_series = 0;
    for a in &seen {
        match a {
            CompareAction::Rows(rows) => {
                assert!(rows.len() > last_rows);
                last_rows = rows.len();
                let order: Vec<usize> = rows
                    .iter()
                    .map(|r| Method::ALL.iter().position(|m| m.id() == r.method).unwrap())
                    .collect();
                assert!(order.windows(2).all(|w| w[0] < w[1]), "{order:?}");
            }
            CompareAction::Partial(r) => {
                assert!(r.pareto.len() >= last_series);
                last_series = r.pareto.len();
            }
            _ => {}
        }
    }
    assert_eq!(last_rows, 7);
    assert_eq!(done(&seen).pareto.len(), 7);
}

#[test]
fn a_busy_worker_takes_fewer_units() {
    // Worker 1 answers only when worker 0 has nothing left: worker 0 runs all the others.
    let (_, ran) = drive(2, &[0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1]);
    assert_eq!(ran[1].len(), 1);
    assert_eq!(ran[0].len(), 13);
}

#[test]
fn an_error_ends_the_comparison_once_and_later_answers_are_ignored() {
    let l = layer();
    let act = input(&l);
    let (mut pool, first) = ComparePool::start(request(), Dims::of(&l.kernel), 2).unwrap();
    let reqs: Vec<(usize, CompareRequest)> = first
        .into_iter()
        .filter_map(|a| match a {
            CompareAction::Send { worker, req } => Some((worker, req)),
            _ => None,
        })
        .collect();
    assert_eq!(reqs.len(), 2);
    pool.sent(0, 11);
    pool.sent(1, 12);
    // Answers of other requests (the layer and image loads) are not the pool's business, errors
    // included: the unit that follows a failed load fails with its own message.
    let load_err = Response { id: 10, body: ResponseBody::Error { message: "no such image".into() } };
    assert!(pool.on_response(0, load_err).is_empty());
    let other = Response { id: 9, body: ResponseBody::Progress { stage: "x".into(), fraction: 0.5 } };
    assert!(pool.on_response(1, other).is_empty());
    let err = Response { id: 12, body: ResponseBody::Error { message: "no layer loaded".into() } };
    assert_eq!(pool.on_response(1, err), vec![CompareAction::Failed("no layer loaded".into())]);
    assert!(pool.finished());
    assert!(pool.on_response(0, answer(&l, &act, 11, &reqs[0].1)).is_empty());
}

#[test]
fn a_dead_worker_fails_the_comparison() {
    let l = layer();
    let (mut pool, _) = ComparePool::start(request(), Dims::of(&l.kernel), 2).unwrap();
    pool.sent(0, 5);
    let died = Response { id: 0, body: ResponseBody::Error { message: "worker: out of memory".into() } };
    assert_eq!(pool.on_response(0, died), vec![CompareAction::Failed("worker: out of memory".into())]);
}

#[test]
fn progress_counts_finished_and_running_units_by_their_cost() {
    let l = layer();
    let act = input(&l);
    let d = Dims::of(&l.kernel);
    let plan = session::units(&request(), d).unwrap();
    let total: f64 = plan.iter().map(|p| p.cost_ms.max(1.0)).sum();
    let (mut pool, first) = ComparePool::start(request(), d, 2).unwrap();
    let reqs: Vec<CompareRequest> = first
        .into_iter()
        .filter_map(|a| match a {
            CompareAction::Send { req, .. } => Some(req),
            _ => None,
        })
        .collect();
    pool.sent(0, 1);
    pool.sent(1, 2);
    let cost = |r: &CompareRequest| {
        let u = &r.units.as_ref().unwrap()[0];
        plan.iter().find(|p| &p.unit == u).unwrap().cost_ms.max(1.0)
    };
    let half =
        Response { id: 1, body: ResponseBody::Progress { stage: "cp: sweep 3".into(), fraction: 0.5 } };
    let a = pool.on_response(0, half);
    let want = 0.5 * cost(&reqs[0]) / total;
    match &a[..] {
        [CompareAction::Progress(line, f)] => {
            assert!((f - want).abs() < 1e-12, "{f} vs {want}");
            assert_eq!(line, "cp: sweep 3 · 2 workers busy");
        }
        other => panic!("{other:?}"),
    }
    // A finished unit counts whole, the running one by its fraction.
    let a = pool.on_response(1, answer(&l, &act, 2, &reqs[1]));
    let want = (cost(&reqs[1]) + 0.5 * cost(&reqs[0])) / total;
    let f = a
        .iter()
        .find_map(|a| match a {
            CompareAction::Progress(_, f) => Some(*f),
            _ => None,
        })
        .unwrap();
    assert!((f - want).abs() < 1e-12, "{f} vs {want}");
    // Absurd fractions from a worker stay within 0..=1.
    let nan = Response { id: 1, body: ResponseBody::Progress { stage: "s".into(), fraction: f64::NAN } };
    match &pool.on_response(0, nan)[..] {
        [CompareAction::Progress(_, f)] => assert!((0.0..=1.0).contains(f)),
        other => panic!("{other:?}"),
    }
}

#[test]
fn pool_size_follows_the_cores_within_bounds() {
    assert_eq!(pool_size(f64::NAN), 1);
    assert_eq!(pool_size(0.0), 1);
    assert_eq!(pool_size(-3.0), 1);
    assert_eq!(pool_size(1.0), 1);
    assert_eq!(pool_size(2.0), 2);
    assert_eq!(pool_size(16.0), MAX_COMPARE_WORKERS);
    assert_eq!(pool_size(f64::INFINITY), 1);
}

#[test]
fn a_refused_budget_is_an_error_not_a_pool() {
    let l = layer();
    let req = CompareRequest { speedup: f64::NAN, ..request() };
    assert!(ComparePool::start(req, Dims::of(&l.kernel), 2).is_err());
}
