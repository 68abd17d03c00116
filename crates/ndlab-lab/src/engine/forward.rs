//! Forward passes on the prepared input: the original and the decoupled layer's outputs at T, the
//! output error for every T, and the term outputs kept so that a T change is a sum of maps.

use super::{no_layer, Engine};
use crate::protocol::{ErrorCurve, ForwardResult, OutputMaps, TermMaps};
use ndlab_core::decouple::terms::{decoupled_by_terms, sum_terms, KeepTerms};
use ndlab_core::error::{Error, Result};
use ndlab_core::layer::Order;

/// Most floats the per-term outputs of one ordering may hold (32 MB): the default view holds
/// 9 × 256 × 40 × 40 ≈ 3.7 M, VGG's conv1_1 on a 160 × 106 image 3 × 64 × 160 × 106 ≈ 3.3 M.
/// Larger layers keep the shown output channel's only.
pub const TERM_CACHE_MAX: usize = 8 << 20;

/// Each term's output of one ordering on one input
/// (see [`ndlab_core::decouple::terms::TermsPass::terms`]).
pub(super) struct TermCache {
    pub(super) plane: usize,
    /// The output channels held: all of them, or only the one shown when all would not fit.
    pub(super) channels: std::ops::Range<usize>,
    /// Term k's output on those channels (channels × h × w).
    pub(super) terms: Vec<Vec<f32>>,
}

impl TermCache {
    /// Output channel `ch` of the decoupled layer at T: Σ_{k<T} term k + bias, in f64 from the
    /// last term down (as [`decoupled_by_terms`] sums).
    pub(super) fn channel_at(&self, t: usize, ch: usize, bias: Option<&[f32]>) -> Result<Vec<f32>> {
        if t == 0 || t > self.terms.len() {
            return Err(Error::Param(format!("no cached term outputs for T = {t}")));
        }
        let maps = self.channel_terms(ch)?;
        let b = bias.and_then(|b| b.get(ch)).copied().unwrap_or(0.0);
        Ok(sum_terms(&maps[..t], b))
    }

    /// Output channel `ch`'s map of every kept term.
    pub(super) fn channel_terms(&self, ch: usize) -> Result<Vec<&[f32]>> {
        if !self.channels.contains(&ch) {
            return Err(Error::Param(format!("no cached term outputs for channel {ch}")));
        }
        let at = ch - self.channels.start;
        let range = at * self.plane..(at + 1) * self.plane;
        self.terms
            .iter()
            .map(|term| term.get(range.clone()).ok_or_else(|| Error::Shape("a cached term is short".into())))
            .collect()
    }
}

/// Largest term maps sent to the page with a forward answer (floats: full rank × h·w of one
/// output channel; 9 × 40 × 40 = 14 400 on the default view). Past it the page waits for the
/// worker's maps at each T.
pub const PAGE_TERMS_MAX: usize = 1 << 16;

impl Engine {
    /// Original vs decoupled output at T for one output channel, with the timings so far.
    ///
    /// The first forward (or curve) on an input in an ordering runs the decoupled layer term by
    /// term ([`decoupled_by_terms`]): the sum of all terms is the original output, the sum of the
    /// first T the decoupled one, and the running sums give the output error for every T, all for
    /// about the cost of one regular conv (running the original layer, the decoupled one and the
    /// curve's terms separately costs twice that). Each term's output is kept (up to
    /// [`TERM_CACHE_MAX`] floats, see [`Engine::with_term_cache_max`]; past that, the output
    /// channel asked for only), so a later forward at another T (or output channel) is a sum of
    /// a few maps: a T change costs the worker microseconds, not a conv that would compete with
    /// the page's redraw for the CPU. No forward is timed: [`Engine::settle_timings`] times both
    /// layers once the worker is idle, and the result carries the times measured so far for its
    /// T (0: not yet). (A forward on a channel whose terms were not kept runs the decoupled layer
    /// at T, which counts as its first timed run.)
    pub fn forward(
        &mut self,
        t: usize,
        order: Order,
        out_channel: usize,
        report: &mut dyn FnMut(&str, f64),
    ) -> Result<ForwardResult> {
        let mut result = self.forward_maps(t, order, out_channel, report)?;
        // The first answer for this ordering and channel on this input carries the channel's
        // term maps, if they are kept and small.
        if let Some(p) = self.prepared.as_mut() {
            if p.terms_sent != Some((order, out_channel)) {
                let maps = p.terms.get(&order).and_then(|c| c.channel_terms(out_channel).ok());
                if let Some(maps) =
                    maps.filter(|m| m.iter().map(|t| t.len()).sum::<usize>() <= PAGE_TERMS_MAX)
                {
                    let maps = maps.into_iter().map(<[f32]>::to_vec).collect();
                    let bias = self
                        .loaded
                        .as_ref()
                        .and_then(|l| l.layer.bias.as_ref())
                        .and_then(|b| b.get(out_channel))
                        .copied()
                        .unwrap_or(0.0);
                    result.terms = Some(TermMaps { maps, bias });
                    p.terms_sent = Some((order, out_channel));
                }
            }
        }
        Ok(result)
    }

    /// [`Engine::forward`] without the term maps (what the prepared input keeps as its last).
    fn forward_maps(
        &mut self,
        t: usize,
        order: Order,
        out_channel: usize,
        report: &mut dyn FnMut(&str, f64),
    ) -> Result<ForwardResult> {
        if self.prepared.is_none() {
            self.prepare(report)?;
        }
        let l = self.loaded.as_ref().ok_or_else(no_layer)?;
        let p = self.prepared.as_mut().ok_or_else(no_layer)?;
        let dec = l.dec(order)?;
        dec.check_t(t)?;
        if out_channel >= l.layer.kernel.n {
            return Err(Error::Param(format!(
                "output channel {out_channel} out of range (0..{})",
                l.layer.kernel.n
            )));
        }
        if let Some(f) =
            p.forward.as_ref().filter(|f| (f.t, f.order, f.out_channel) == (t, order, out_channel))
        {
            return Ok(f.clone());
        }
        let bias = l.layer.bias.as_deref();
        let cached =
            p.terms.get(&order).filter(|c| c.channels.contains(&out_channel)).zip(p.curves.get(&order));
        let (decoupled, rel_error) = match (cached, &p.reference) {
            (Some((terms, curve)), Some(_)) => {
                let rel_error = curve.get(t - 1).copied().ok_or_else(no_layer)?;
                (terms.channel_at(t, out_channel, bias)?, rel_error)
            }
            // The terms of this ordering ran, and this channel's were not kept.
            (None, Some(reference)) if p.curves.contains_key(&order) => {
                let merged = dec.merged(t)?;
                let start = (self.clock)();
                let y = ndlab_core::conv::decoupled_forward(&p.input, &merged, bias, &l.layer.geometry)?;
                let ms = (self.clock)() - start;
                p.decoupled.entry((order, t)).or_default().add(Some(ms));
                (y.channel(out_channel).to_vec(), y.rel_error(reference)?)
            }
            _ => {
                let pass = decoupled_by_terms(
                    dec,
                    &p.input,
                    bias,
                    &l.layer.geometry,
                    Some(t),
                    KeepTerms { max_floats: self.term_cache_max, channel: Some(out_channel) },
                    report,
                )?;
                let rel_error = pass.errors[t - 1];
                let y = p
                    .keep_pass(order, pass)
                    .ok_or_else(|| Error::Param("the decoupled output at T is missing".into()))?;
                (y.channel(out_channel).to_vec(), rel_error)
            }
        };
        let reference = p.reference.as_ref().ok_or_else(no_layer)?;
        let weight_error = dec.rel_weight_error().get(t - 1).copied().unwrap_or(f64::NAN);
        let result = ForwardResult {
            layer_id: l.id,
            input_id: p.id,
            t,
            order,
            out_channel,
            maps: OutputMaps {
                h: reference.h,
                w: reference.w,
                original: reference.channel(out_channel).to_vec(),
                decoupled,
            },
            rel_error,
            weight_error,
            timings: p.timings(order, t),
            terms: None,
        };
        p.forward = Some(result.clone());
        Ok(result)
    }

    /// Output relative error for T = 1..=full rank (cached per ordering and input; the pass that
    /// computes it keeps the terms' outputs for later forwards, see [`Engine::forward`]).
    pub fn output_error_curve(
        &mut self,
        order: Order,
        report: &mut dyn FnMut(&str, f64),
    ) -> Result<ErrorCurve> {
        if self.prepared.is_none() {
            self.prepare(report)?;
        }
        let l = self.loaded.as_ref().ok_or_else(no_layer)?;
        let p = self.prepared.as_mut().ok_or_else(no_layer)?;
        let curve = |errors: Vec<f64>| ErrorCurve { layer_id: l.id, input_id: p.id, order, errors };
        if let Some(c) = p.curves.get(&order) {
            return Ok(curve(c.clone()));
        }
        let dec = l.dec(order)?;
        let bias = l.layer.bias.as_deref();
        // (Past the cap, the terms of the last forward's output channel are kept.)
        let keep = KeepTerms {
            max_floats: self.term_cache_max,
            channel: Some(p.forward.as_ref().map_or(0, |f| f.out_channel)),
        };
        let pass = decoupled_by_terms(dec, &p.input, bias, &l.layer.geometry, None, keep, report)?;
        let errors = pass.errors.clone();
        p.keep_pass(order, pass);
        Ok(ErrorCurve { layer_id: l.id, input_id: p.id, order, errors })
    }
}

#[cfg(test)]
mod term_cache_tests {
    use super::TermCache;

    /// Hand-computed sums: two terms, two channels of two pixels, with and without a bias.
    #[test]
    fn channel_at_sums_the_first_t_terms_and_adds_the_bias() {
        let cache = TermCache {
            plane: 2,
            channels: 0..2,
            terms: vec![vec![1.0, 2.0, 3.0, 4.0], vec![10.0, 20.0, 30.0, 40.0]],
        };
        let bias = [0.5f32, -1.0];
        assert_eq!(cache.channel_at(1, 1, Some(&bias)).expect("T = 1"), vec![2.0, 3.0]);
        assert_eq!(cache.channel_at(2, 0, Some(&bias)).expect("T = 2"), vec![11.5, 22.5]);
        assert_eq!(cache.channel_at(2, 1, None).expect("no bias"), vec![33.0, 44.0]);
        for (t, ch) in [(0, 0), (3, 0), (1, 2)] {
            assert!(cache.channel_at(t, ch, None).is_err(), "T = {t}, channel {ch}");
        }
        // Channel 1 only (a layer whose terms do not all fit).
        let one = TermCache { plane: 2, channels: 1..2, terms: vec![vec![3.0, 4.0], vec![30.0, 40.0]] };
        assert_eq!(one.channel_at(2, 1, Some(&bias)).expect("channel 1"), vec![32.0, 43.0]);
        assert!(one.channel_at(1, 0, None).is_err(), "channel 0 is not held");
    }
}
