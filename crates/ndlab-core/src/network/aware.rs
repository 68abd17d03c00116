//! Data-aware decoupling of a whole network, training-free: each conv's decomposition weighted by
//! the statistics of its input on calibration data ([`crate::decouple::data_aware`]), then the
//! pointwise weights of the decoupled convs refit by least squares, layer by layer from the input,
//! on the decoupled network's own activations against the original network's outputs
//! (asymmetric reconstruction, Zhang et al., arXiv 1505.06798).

use super::ops::Value;
use super::plan::{raw_merged, Candidate, NetworkPlan};
use super::{ConvImpl, Program, RunCache};
use crate::decouple::data_aware::{decouple, refit, AwareOptions, PatchStats, RefitOptions, StatsOptions};
use crate::decouple::Decomposition;
use crate::error::{Error, Result};
use crate::layer::{ConvLayer, FeatureMap, Order};

/// The images of a batch value (N × C × H × W) as feature maps.
fn images(v: &Value) -> Result<Vec<FeatureMap>> {
    let [n, c, h, w] = super::ops::dims4(&v.dims, "a conv's input")?;
    v.data.chunks_exact((c * h * w).max(1)).take(n).map(|d| FeatureMap::new(c, h, w, d.to_vec())).collect()
}

/// An empty accumulator for the input of conv `c` (its folded kernel, its geometry at its input
/// size).
fn stats_for(
    program: &Program,
    c: &Candidate,
    input: &[usize],
    targets: bool,
) -> Result<(PatchStats, ConvLayer)> {
    let info = &program.convs[c.conv];
    let shapes = program.shapes(input)?;
    let [_, _, h, w] = program
        .conv_input_dims(&shapes, c.conv)
        .ok_or_else(|| Error::Shape(format!("conv '{}' has no input size", c.name)))?;
    let folded = info.folded()?;
    let geometry = info.geometry(h, w)?;
    let opts = StatsOptions { targets, ..StatsOptions::default() };
    Ok((PatchStats::new(&folded.kernel, geometry, opts)?, folded))
}

/// The data-aware decomposition of every candidate with K > 1 in `order`, from the original
/// network's activations on the calibration batch `x`.
pub fn aware_decompositions(
    program: &Program,
    cands: &[Candidate],
    order: Order,
    x: &Value,
    opts: &AwareOptions,
) -> Result<Vec<Option<Decomposition>>> {
    let mut input = x.dims.clone();
    input[0] = 1;
    let mut acc: Vec<Option<(PatchStats, ConvLayer)>> = cands
        .iter()
        .map(|c| if c.dec.is_some() { stats_for(program, c, &input, false).map(Some) } else { Ok(None) })
        .collect::<Result<_>>()?;
    let mut failure = None;
    for batch in batches(x)? {
        program.run(&batch, &[], &mut |conv, xin, _| {
            if failure.is_some() {
                return;
            }
            if let Some(Some((stats, _))) =
                cands.iter().position(|c| c.conv == conv).and_then(|i| acc.get_mut(i))
            {
                let added = images(xin).and_then(|maps| maps.iter().try_for_each(|m| stats.add(m)));
                if let Err(e) = added {
                    failure = Some(e);
                }
            }
        })?;
    }
    if let Some(e) = failure {
        return Err(e);
    }
    acc.into_iter()
        .map(|a| a.map(|(stats, folded)| decouple(&folded.kernel, order, &stats, opts)).transpose())
        .collect()
}

/// The plan's decoupled convs with their pointwise weights refit, layer by layer from the input:
/// for each, its input on the decoupled network so far (earlier convs decoupled and refit) paired
/// with the original conv's (folded) output on the original network, on the calibration batch
/// `x`. Returns T-term decompositions for the decoupled convs, the others as given.
pub fn refit_plan(
    program: &Program,
    cands: &[Candidate],
    decs: &[Option<Decomposition>],
    plan: &NetworkPlan,
    x: &Value,
    opts: &RefitOptions,
) -> Result<Vec<Option<Decomposition>>> {
    if x.dims.first().copied().unwrap_or(0) == 0 {
        return Err(Error::Param("the refit needs calibration data".into()));
    }
    let mut input = x.dims.clone();
    input[0] = 1;
    // The original network's folded conv outputs (targets), per decoupled conv.
    let wanted: Vec<usize> =
        plan.layers.iter().zip(cands).filter(|(l, _)| l.decoupled).map(|(_, c)| c.conv).collect();
    let mut targets: Vec<Vec<FeatureMap>> = vec![Vec::new(); program.convs.len()];
    let mut failure = None;
    program.run(x, &[], &mut |conv, _, y| {
        if wanted.contains(&conv) && failure.is_none() {
            match images(y).and_then(|ys| fold_outputs(program, conv, ys)) {
                Ok(ys) => targets[conv] = ys,
                Err(e) => failure = Some(e),
            }
        }
    })?;
    if let Some(e) = failure {
        return Err(e);
    }
    let mut out: Vec<Option<Decomposition>> = decs.to_vec();
    let mut impls: Vec<ConvImpl> = vec![ConvImpl::Regular; program.convs.len()];
    let mut cache = RunCache::new(program, x.clone());
    for (i, (c, l)) in cands.iter().zip(&plan.layers).enumerate() {
        if !l.decoupled {
            continue;
        }
        let d = decs
            .get(i)
            .and_then(Option::as_ref)
            .ok_or_else(|| Error::Param(format!("conv '{}' has no decomposition", c.name)))?;
        let (mut stats, folded) = stats_for(program, c, &input, true)?;
        let mut xin: Option<Value> = None;
        program.run_cached(&mut cache, &impls, &mut |conv, v, _| {
            if conv == c.conv {
                xin = Some(v.clone());
            }
        })?;
        let xin = xin.ok_or_else(|| Error::Format(format!("conv '{}' did not run", c.name)))?;
        for (xm, ym) in images(&xin)?.iter().zip(&targets[c.conv]) {
            stats.add_pair(xm, ym, folded.bias.as_deref())?;
        }
        let t = l.t.min(d.full_rank);
        let r = refit(d, t, &stats, opts).map_err(|e| match e {
            Error::Numeric(m) => Error::Numeric(format!("refitting conv '{}': {m}", c.name)),
            other => other,
        })?;
        impls[c.conv] = ConvImpl::Decoupled {
            merged: raw_merged(c, &r, t)?,
            bias: program.convs[c.conv].layer.bias.clone(),
        };
        out[i] = Some(r);
    }
    Ok(out)
}

/// Conv outputs as the folded conv gives them (the following BatchNorm's scale and shift applied).
fn fold_outputs(program: &Program, conv: usize, ys: Vec<FeatureMap>) -> Result<Vec<FeatureMap>> {
    let Some((scale, shift)) = &program.convs[conv].bn else { return Ok(ys) };
    ys.into_iter()
        .map(|mut y| {
            let plane = y.h * y.w;
            for (ch, chunk) in y.data.chunks_mut(plane.max(1)).enumerate() {
                let (s, b) = (scale.get(ch).copied().unwrap_or(1.0), shift.get(ch).copied().unwrap_or(0.0));
                chunk.iter_mut().for_each(|v| *v = *v * s + b);
            }
            Ok(y)
        })
        .collect()
}

/// `x` in batches of [`super::study::BATCH`] items.
fn batches(x: &Value) -> Result<Vec<Value>> {
    let n = x.dims.first().copied().unwrap_or(0);
    let per: usize = x.dims.iter().skip(1).product();
    (0..n)
        .step_by(super::study::BATCH)
        .map(|s| {
            let e = (s + super::study::BATCH).min(n);
            let mut d = x.dims.clone();
            d[0] = e - s;
            Value::new(d, x.data[s * per..e * per].to_vec())
        })
        .collect()
}

/// The plan with each decoupled layer's relative weight error ‖W − Ŵ‖_F / ‖W‖_F and energy kept
/// (1 − error²) measured on the decompositions actually used (`decs`: data-aware or refit ones,
/// whose error is not their σ tail), W the folded kernel.
pub fn with_weight_errors(
    program: &Program,
    cands: &[Candidate],
    decs: &[Option<Decomposition>],
    plan: &NetworkPlan,
) -> Result<NetworkPlan> {
    let mut p = plan.clone();
    for ((c, l), d) in cands.iter().zip(p.layers.iter_mut()).zip(decs) {
        let (true, Some(d)) = (l.decoupled, d) else { continue };
        let w = program.convs[c.conv].folded()?.kernel;
        let approx = d.reconstruct(l.t.min(d.full_rank))?;
        let num: f64 = w.data.iter().zip(&approx.data).map(|(&a, &b)| (a as f64 - b as f64).powi(2)).sum();
        let den = w.norm_sq();
        let err = if den > 0.0 { (num / den).sqrt() } else { 0.0 };
        // The energy kept stays the per-slice SVD's at T: refit factors are no projection of W,
        // so 1 − error² would mean nothing (it goes negative once the refit moves away from W).
        l.rel_weight_error = err;
    }
    Ok(p)
}
