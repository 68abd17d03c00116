//! Measured times: the worker times the original and the decoupled layer when idle, a run per
//! step, in turn, keeping the shortest of three; and the warm-up that lets wasm optimise the heavy
//! paths before the first real request.

use super::input::Prepared;
use super::{no_layer, Engine};
use crate::protocol::{ForwardResult, Timings};
use ndlab_core::decouple::terms::{decoupled_by_terms, KeepTerms};
use ndlab_core::decouple::Decomposition;
use ndlab_core::error::Result;
use ndlab_core::layer::Order;

/// The shortest of a layer's timed runs on one input.
#[derive(Clone, Copy, Default, Debug)]
pub(super) struct Timing {
    /// The shortest run (ms; 0 before the first).
    best_ms: f64,
    runs: usize,
}

impl Timing {
    /// Counts a run; its time (None: the run failed) is kept if it is the shortest.
    pub(super) fn add(&mut self, ms: Option<f64>) {
        if let Some(ms) = ms {
            self.best_ms = shorter(self.best_ms, ms);
        }
        self.runs += 1;
    }
}

impl Prepared {
    /// The timing of the decoupled layer at (`order`, `t`) so far.
    pub(super) fn decoupled_timing(&self, order: Order, t: usize) -> Timing {
        self.decoupled.get(&(order, t)).copied().unwrap_or_default()
    }

    /// Whether both layers of a forward at (`order`, `t`) have been timed [`SETTLE_RUNS`] times.
    pub(super) fn settled(&self, order: Order, t: usize) -> bool {
        self.original.runs >= SETTLE_RUNS && self.decoupled_timing(order, t).runs >= SETTLE_RUNS
    }

    /// The times so far of a forward at (`order`, `t`).
    pub(super) fn timings(&self, order: Order, t: usize) -> Timings {
        Timings {
            original_ms: self.original.best_ms,
            decoupled_ms: self.decoupled_timing(order, t).best_ms,
            kernels: ndlab_core::conv::kernels().to_string(),
            settled: self.settled(order, t),
        }
    }
}

impl Engine {
    /// Whether [`Engine::settle_timings`] has work to do: a forward result on this input whose
    /// layers have not both been timed [`SETTLE_RUNS`] times.
    pub fn timings_unsettled(&self) -> bool {
        self.prepared.as_ref().is_some_and(|p| p.forward.as_ref().is_some_and(|f| !p.settled(f.order, f.t)))
    }

    /// One timed run, the shorter time kept: of the original layer and of the last forward's
    /// decoupled layer in turn, until each has [`SETTLE_RUNS`] runs (in turn, so that both see
    /// the same conditions: timing one layer's runs before the other's skewed their ratio by up
    /// to 1.5× while the page was drawing). The original layer's runs count for every T on the
    /// input, the decoupled layer's for its ordering and T. The step that completes both returns
    /// the last forward result with its times, marked settled. In a browser the first runs on
    /// an input execute code that may still be in the engine's baseline tier, so a single run
    /// can be several times too long and the measured speed-up off by as much. The worker calls
    /// this while it is idle, one step per task, so that a request never waits for more than
    /// one run. None while steps remain (or when there is nothing to settle).
    pub fn settle_timings(&mut self) -> Result<Option<ForwardResult>> {
        if !self.timings_unsettled() {
            return Ok(None);
        }
        let l = self.loaded.as_ref().ok_or_else(no_layer)?;
        let p = self.prepared.as_mut().ok_or_else(no_layer)?;
        let Some((order, t)) = p.forward.as_ref().map(|f| (f.order, f.t)) else { return Ok(None) };
        // (A run that fails, which the forward did not, counts with no time: each layer is tried
        // SETTLE_RUNS times, and the last step still hands back the result.)
        let start = (self.clock)();
        if p.original.runs < SETTLE_RUNS && p.original.runs <= p.decoupled_timing(order, t).runs {
            let ok = ndlab_core::conv::layer_forward(&p.input, &l.layer).is_ok();
            let ms = (self.clock)() - start;
            p.original.add(ok.then_some(ms));
        } else {
            let run = l.dec(order).and_then(|d| d.merged(t)).and_then(|merged| {
                ndlab_core::conv::decoupled_forward(
                    &p.input,
                    &merged,
                    l.layer.bias.as_deref(),
                    &l.layer.geometry,
                )
            });
            let ms = (self.clock)() - start;
            p.decoupled.entry((order, t)).or_default().add(run.is_ok().then_some(ms));
        }
        let timings = p.timings(order, t);
        let Some(f) = p.forward.as_mut() else { return Ok(None) };
        let settled = timings.settled;
        f.timings = timings;
        Ok(settled.then(|| f.clone()))
    }
}

/// The shorter of a time kept so far (0: none yet) and a new one.
fn shorter(kept: f64, new: f64) -> f64 {
    if kept > 0.0 {
        kept.min(new)
    } else {
        new
    }
}

/// Runs the heavy code paths (decoupling in both orderings, regular, depthwise, pointwise and
/// decoupled convs, the output error by terms) once on tiny inputs, in a few milliseconds.
/// In a browser, wasm starts in a baseline tier and a long call never switches tiers midway:
/// calling these paths first lets the engine optimise them before the first real request.
/// Returns the sum of the outputs (so nothing is optimised away).
pub fn warm_up() -> Result<f64> {
    let geometry = ndlab_core::layer::ConvGeometry::new(1, 1, 1);
    let layer = ndlab_core::layer::ConvLayer::new(
        ndlab_core::random::gaussian_kernel(24, 16, 3, 0.1, 7)?,
        None,
        geometry,
    )?;
    let x = ndlab_core::random::random_input(16, 14, 14, 8)?;
    let y = ndlab_core::conv::layer_forward(&x, &layer)?;
    let mut sum = y.data.iter().map(|&v| v as f64).sum::<f64>();
    for order in [Order::DwPw, Order::PwDw] {
        let dec = Decomposition::new(&layer.kernel, 1, order)?;
        let out = ndlab_core::conv::decoupled_forward(&x, &dec.merged(2)?, None, &geometry)?;
        sum += out.data.iter().map(|&v| v as f64).sum::<f64>();
        let keep = KeepTerms { max_floats: usize::MAX, channel: None };
        let pass = decoupled_by_terms(&dec, &x, None, &geometry, Some(2), keep, &mut |_, _| {})?;
        sum += pass.errors.iter().sum::<f64>();
    }
    Ok(sum)
}
/// Runs of each layer in [`Engine::settle_timings`].
pub(super) const SETTLE_RUNS: usize = 3;
