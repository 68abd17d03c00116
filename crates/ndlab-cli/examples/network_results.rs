//! The whole-network results of the README: the built-in Fashion-MNIST CNN's top-1 accuracy on
//! the 10,000 test images against its conv MACs, for one T for all, both threshold rules and the
//! MAC budget allocated by sensitivity, both orderings, data-free and data-aware, at 1.5×, 2×,
//! 3× and 4× fewer conv MACs; and the whole network's measured time, original against
//! decoupled, on ndlab's kernels (one thread) and in tract.
//!
//! `bash scripts/bench-network.sh` (installs the dataset) or
//! `cargo run --release -p ndlab-cli --example network_results -- MODEL CALIB.npz TEST-IMAGES-IDX[.gz] [OUT.json]`
//! (the labels file sits beside the images, as the datasets ship).

use ndlab_core::decouple::{Decomposition, ThresholdRule};
use ndlab_core::layer::Order;
use ndlab_core::network::plan::NetworkPlan;
use ndlab_core::network::study::{accuracy, outputs, predictions};
use ndlab_io::dataset::{read_idx_pair, read_npz, Dataset};
use ndlab_lab::network::{Choice, NetworkSession};
use serde::Serialize;
use std::time::Instant;

type Res<T> = Result<T, Box<dyn std::error::Error>>;

/// Conv-MAC reductions the table reports.
const TARGETS: [f64; 4] = [1.5, 2.0, 3.0, 4.0];

#[derive(Serialize, Clone)]
struct Point {
    strategy: String,
    order: &'static str,
    data_aware: bool,
    target: f64,
    /// What the strategy was given (T, τ, or the speed-up).
    setting: String,
    macs: u64,
    speedup: f64,
    accuracy: f64,
    ts: Vec<usize>,
}

struct Bench {
    s: NetworkSession,
    test: Dataset,
    calib: Dataset,
    labels: Vec<usize>,
}

impl Bench {
    fn accuracy(&mut self, plan: &NetworkPlan, decs: Option<&[Option<Decomposition>]>) -> Res<f64> {
        let cands = self.s.candidates(plan.order)?.to_vec();
        let own: Vec<_> = cands.iter().map(|c| c.dec.clone()).collect();
        let impls =
            ndlab_core::network::plan::conv_impls(self.s.program(), &cands, decs.unwrap_or(&own), plan)?;
        let x = self.s.input_value(&self.test)?;
        let out = outputs(self.s.program(), &x, &impls)?;
        Ok(accuracy(&predictions(&out), &self.labels))
    }

    /// The plan for a choice, with its decompositions (data-aware ones refit).
    fn planned(
        &mut self,
        order: Order,
        choice: &Choice,
        data_aware: bool,
    ) -> Res<(NetworkPlan, Option<Vec<Option<Decomposition>>>)> {
        let calib = self.calib.clone();
        let d = self.s.decouple(order, choice, data_aware, Some(&calib), &mut |_, _| true)?;
        Ok((d.plan, Some(d.decs)))
    }
}

fn order_str(o: Order) -> &'static str {
    o.as_str()
}

fn main() -> Res<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [model, calib, images, rest @ ..] = args.as_slice() else {
        return Err("usage: network_results MODEL CALIB.npz TEST-IMAGES-IDX[.gz] [OUT.json]".into());
    };
    let test = read_idx_pair(
        &std::fs::read(images)?,
        Some(&std::fs::read(images.replace("images-idx3", "labels-idx1"))?),
    )?;
    let calib = read_npz(&std::fs::read(calib)?)?;
    let labels = test.y.clone().ok_or("the test data has no labels")?;
    let s = NetworkSession::open(std::fs::read(model)?, Some(&test.dims))?;
    let mut b = Bench { s, test, calib, labels };
    let none: Vec<usize> = vec![0; b.s.program().convs.len()];
    let (p0, _) = b.s.plan(Order::DwPw, &Choice::PerLayer(none), None, None, &mut |_, _| true)?;
    let original = b.accuracy(&p0, None)?;
    eprintln!("original: {:.2} % on {} images, {} conv MACs", original * 100.0, b.test.len(), p0.macs);
    let mut points = Vec::new();
    for order in [Order::DwPw, Order::PwDw] {
        for data_aware in [false, true] {
            let calib = b.calib.clone();
            let aware = if data_aware { Some(b.s.aware(order, &calib)?) } else { None };
            let aw = aware.as_deref();
            for &x in &TARGETS {
                let budget = (p0.macs as f64 / x).floor() as u64;
                // One T for all: the largest T within the budget.
                let mut uniform = None;
                for t in (1..=9).rev() {
                    let (p, _) = b.s.plan(order, &Choice::Uniform(t), aw, None, &mut |_, _| true)?;
                    if p.macs_decoupled <= budget {
                        uniform = Some((t, p));
                        break;
                    }
                }
                let mut candidates: Vec<(String, String, Choice)> = Vec::new();
                if let Some((t, _)) = uniform {
                    candidates.push(("one T for all".into(), format!("T = {t}"), Choice::Uniform(t)));
                }
                // Thresholds: the largest τ (on a 0.001 grid) within the budget, per rule.
                for (rule, name) in [
                    (ThresholdRule::Mean, "threshold, mean rule"),
                    (ThresholdRule::Max, "threshold, max rule"),
                ] {
                    let mut best = None;
                    let (mut lo, mut hi) = (1usize, 1000usize);
                    while lo <= hi {
                        let mid = (lo + hi) / 2;
                        let tau = mid as f64 / 1000.0;
                        let (p, _) =
                            b.s.plan(order, &Choice::Threshold(tau, rule), aw, None, &mut |_, _| true)?;
                        if p.macs_decoupled <= budget {
                            best = Some(tau);
                            lo = mid + 1;
                        } else {
                            hi = mid - 1;
                        }
                    }
                    if let Some(tau) = best {
                        candidates.push((name.into(), format!("τ = {tau:.3}"), Choice::Threshold(tau, rule)));
                    }
                }
                candidates.push((
                    "MAC budget, sensitivity".into(),
                    format!("{x}× fewer"),
                    Choice::Speedup(x),
                ));
                for (strategy, setting, choice) in candidates {
                    let started = Instant::now();
                    let (plan, decs) = b.planned(order, &choice, data_aware)?;
                    let acc = b.accuracy(&plan, decs.as_deref())?;
                    let p = Point {
                        strategy: strategy.clone(),
                        order: order_str(order),
                        data_aware,
                        target: x,
                        setting: setting.clone(),
                        macs: plan.macs_decoupled,
                        speedup: plan.speedup(),
                        accuracy: acc,
                        ts: plan.ts(),
                    };
                    eprintln!(
                        "{} {} {} {x}×: {setting}: {:.2}× {:.2} % ({:.1} s)",
                        order_str(order),
                        if data_aware { "data-aware" } else { "data-free" },
                        strategy,
                        p.speedup,
                        acc * 100.0,
                        started.elapsed().as_secs_f64()
                    );
                    points.push(p);
                }
            }
        }
    }
    // Measured time of the whole network, original against the 2× budget plans (ndlab's kernels,
    // one thread, 1000 test images), best of three.
    let sub = b.test.slice(0..1000)?;
    let x = b.s.input_value(&sub)?;
    let mut timing = Vec::new();
    let time = |f: &mut dyn FnMut() -> Res<()>| -> Res<f64> {
        let mut best = f64::INFINITY;
        for _ in 0..3 {
            let t0 = Instant::now();
            f()?;
            best = best.min(t0.elapsed().as_secs_f64() * 1e3);
        }
        Ok(best)
    };
    let program = b.s.program().clone();
    let original_ms = time(&mut || {
        outputs(&program, &x, &[])?;
        Ok(())
    })?;
    for order in [Order::DwPw, Order::PwDw] {
        let (plan, _) = b.s.plan(order, &Choice::Uniform(4), None, None, &mut |_, _| true)?;
        let cands = b.s.candidates(order)?.to_vec();
        let decs: Vec<_> = cands.iter().map(|c| c.dec.clone()).collect();
        let impls = ndlab_core::network::plan::conv_impls(&program, &cands, &decs, &plan)?;
        let ms = time(&mut || {
            outputs(&program, &x, &impls)?;
            Ok(())
        })?;
        timing.push(serde_json::json!({
            "order": order_str(order), "t": 4, "conv_macs": plan.macs_decoupled, "theoretical_speedup": plan.speedup(),
            "ms_1000_images": ms, "original_ms_1000_images": original_ms, "measured_speedup": original_ms / ms,
        }));
        eprintln!("time, 1000 images: original {original_ms:.0} ms, {} T = 4 {ms:.0} ms ({:.2}× measured, {:.2}× in conv MACs)", order_str(order), original_ms / ms, plan.speedup());
    }
    let json = serde_json::json!({
        "model": model, "test_images": b.test.len(), "original_accuracy": original, "conv_macs": p0.macs,
        "points": points, "timing": timing, "kernels": ndlab_core::conv::kernels(),
    });
    let text = serde_json::to_string_pretty(&json)?;
    if let Some(out) = rest.first() {
        std::fs::write(out, &text)?;
    }
    println!("{text}");
    Ok(())
}
