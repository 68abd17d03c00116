//! What the statistics say about an approximation without running a conv: the expected output
//! error and residual (quadratic forms in the joint patch moment), and the least-squares refit of
//! the pointwise weights (asymmetric reconstruction, Zhang et al., arXiv 1505.06798).

use super::linalg::{cholesky_solve, dot, matvec};
use super::{check_stats, truncate, PatchStats};
use crate::decouple::Decomposition;
use crate::error::{Error, Result};
use crate::layer::{Kernel, Order};
use serde::{Deserialize, Serialize};

/// The expected squared output error of an approximation and the expected squared output, per
/// output position (sums over the output channels, no bias: it cancels in the error).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct ExpectedError {
    /// E‖(W − Ŵ) p‖².
    pub error: f64,
    /// E‖W p‖².
    pub reference: f64,
}

impl ExpectedError {
    /// E‖(W − Ŵ)p‖² / E‖Wp‖² (0 when both are 0).
    pub fn ratio(&self) -> f64 {
        if self.reference > 0.0 {
            self.error / self.reference
        } else {
            self.error
        }
    }

    /// sqrt of [`Self::ratio`]: what `FeatureMap::rel_error` measures (without the bias) on the
    /// calibration data.
    pub fn relative(&self) -> f64 {
        self.ratio().max(0.0).sqrt()
    }
}

/// Checks that `k` has the statistics' layer shape.
fn check_kernel(k: &Kernel, stats: &PatchStats) -> Result<()> {
    check_stats((k.n, k.c, k.kh, k.kw), stats)?;
    if k.data.len() != k.n * k.c * k.kh * k.kw {
        return Err(Error::Shape("kernel data does not match its shape".into()));
    }
    if let Some(i) = k.data.iter().position(|v| !v.is_finite()) {
        return Err(Error::NonFinite(format!("kernel value #{i} is {}", k.data[i])));
    }
    Ok(())
}

/// The layer's expected output error with `approx` in place of `original`, from the statistics
/// alone: `E‖(W − Ŵ)p‖²` and `E‖Wp‖²` over the calibration patches (exactly what running both
/// convs on the calibration images and comparing outputs measures, bias excluded). Needs the full
/// joint moment (c·K² ≤ the cap). Cost N·(c·K²)² multiply-adds.
pub fn expected_error(stats: &PatchStats, original: &Kernel, approx: &Kernel) -> Result<ExpectedError> {
    check_kernel(original, stats)?;
    check_kernel(approx, stats)?;
    let d = stats.c * stats.k2();
    let nper = stats.n / stats.groups();
    let (mut error, mut reference) = (0.0, 0.0);
    let mut delta = vec![0.0; d];
    for g in 0..stats.groups() {
        let s = stats.joint_moment(g)?;
        for n in g * nper..(g + 1) * nper {
            let (w, wh) = (&original.data[n * d..(n + 1) * d], &approx.data[n * d..(n + 1) * d]);
            let wf: Vec<f64> = w.iter().map(|&v| v as f64).collect();
            for ((o, &a), &b) in delta.iter_mut().zip(w).zip(wh) {
                *o = a as f64 - b as f64;
            }
            error += dot(&delta, &matvec(&s, &delta));
            reference += dot(&wf, &matvec(&s, &wf));
        }
    }
    Ok(ExpectedError { error, reference })
}

/// `E‖y − Ŵp‖²` (per position, summed over outputs) for targets y collected with
/// [`PatchStats::add_pair`]: the refit's least-squares objective, from the statistics alone.
pub fn expected_residual(stats: &PatchStats, approx: &Kernel) -> Result<f64> {
    check_kernel(approx, stats)?;
    let d = stats.c * stats.k2();
    let nper = stats.n / stats.groups();
    let yy = stats.target_moment()?;
    let mut total = 0.0;
    for g in 0..stats.groups() {
        let (s, r) = (stats.joint_moment(g)?, stats.cross_moment(g)?);
        for nl in 0..nper {
            let n = g * nper + nl;
            let w: Vec<f64> = approx.data[n * d..(n + 1) * d].iter().map(|&v| v as f64).collect();
            total += yy[n] - 2.0 * dot(&w, &r[nl * d..(nl + 1) * d]) + dot(&w, &matvec(&s, &w));
        }
    }
    Ok(total)
}

/// Options of [`refit`].
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct RefitOptions {
    /// Ridge λ of the normal equations, relative: `G + λ·mean(diag G)·I`, centred on the
    /// pointwise weights given (see [`refit`]). 0 is allowed (then a singular G is an error).
    pub ridge: f64,
}

/// Default refit ridge. The refit has c·T unknowns per output and overfits when the calibration
/// patches are few: on VGG16-BN conv3_2 (c·T = 256·T) with three images at 128 px (3072
/// patches) the held-out error after the refit was *above* the data-free one at λ = 1e-6.
/// Along the whole prefix (DW→PW, T = 2, three 256-px images) the held-out error of the conv3_3
/// activations went 0.624, 0.616, 0.598, 0.579 for λ = 1e-6, 1e-3, 1e-2, 1e-1 (calibration
/// 0.407 → 0.435); per layer, 1e-1 cost at most a few per cent on the calibration data.
/// 1e-2 is the compromise kept; with plenty of patches per unknown a smaller λ fits closer.
pub const DEFAULT_REFIT_RIDGE: f64 = 1e-2;

impl Default for RefitOptions {
    fn default() -> Self {
        RefitOptions { ridge: DEFAULT_REFIT_RIDGE }
    }
}

/// The least-squares refit of the pointwise weights of the first `t` terms of `d`, depthwise
/// filters fixed, returned as a `t`-term decomposition (same `dw`, `sigma` and `energy`, new `pw`).
///
/// `stats` must hold the joint moment S of the **decoupled** network's input to this layer and
/// the cross moment R with the **original** layer's bias-free output on the **original**
/// network's activations (fed as pairs of the same image with [`PatchStats::add_pair`]). The
/// features are the depthwise outputs z, linear in the patch:
/// * DW→PW, per group: z_(c,t) = D_{c,t}·p_c, Gram `G[(c,t),(c',t')] = D_{c,t}ᵀ S_cc' D_{c',t'}`,
///   cross `Y[n,(c,t)] = R_{n,c}·D_{c,t}`; one (c·T)-dimensional system for the group's outputs;
/// * PW→DW, per output n: z_(t,c) = D_{n,t}·p_c, `G[(t,c),(t',c')] = D_{n,t}ᵀ S_cc' D_{n,t'}`,
///   `Y[(t,c)] = R_{n,c}·D_{n,t}`; one (T·c)-dimensional system per output (cost N·(c·T)³/3).
///
/// Each system `P (G + μI) = Y + μ P₀` (μ = ridge·mean(diag G), P₀ the pointwise weights given)
/// is solved by Cholesky in f64. Centring the ridge on P₀ instead of 0 makes the refit never
/// worse than P₀ on its own objective (J(P) + μ‖P − P₀‖² ≤ J(P₀)), leaves features that never
/// fire at their weights instead of zeroing them, and returns P₀ unchanged where it is already
/// optimal (full rank on undisturbed inputs: the original layer). A group without any activity
/// keeps P₀; a singular system (ridge 0) is an [`Error::Numeric`], never NaN.
pub fn refit(d: &Decomposition, t: usize, stats: &PatchStats, opts: &RefitOptions) -> Result<Decomposition> {
    check_stats((d.n, d.c, d.kh, d.kw), stats)?;
    if d.groups != stats.groups() {
        return Err(Error::Shape(format!(
            "decomposition of {} groups, statistics of {}",
            d.groups,
            stats.groups()
        )));
    }
    if !(opts.ridge >= 0.0 && opts.ridge.is_finite()) {
        return Err(Error::Param(format!("ridge must be finite and ≥ 0, got {}", opts.ridge)));
    }
    let mut out = truncate(d, t)?;
    let (c, k2, groups) = (d.c, d.kh * d.kw, d.groups);
    let nper = d.n / groups;
    let f = c * t;
    for g in 0..groups {
        let (s, r) = (stats.joint_moment(g)?, stats.cross_moment(g)?);
        match d.order {
            Order::DwPw => {
                let filters: Vec<&[f64]> = (0..c).map(|cl| &out.slices[g * c + cl].dw[..]).collect();
                let mut gram = block_gram(&s, c, k2, t, &filters);
                // Right-hand sides: one row per output of the group, feature index cl·T + tt.
                let mut rhs = vec![0.0; nper * f];
                let mut p0 = vec![0.0; nper * f];
                for nl in 0..nper {
                    for cl in 0..c {
                        let slice = &out.slices[g * c + cl];
                        for tt in 0..t {
                            let i = nl * f + cl * t + tt;
                            rhs[i] =
                                dot(&r[nl * c * k2 + cl * k2..][..k2], &slice.dw[tt * k2..(tt + 1) * k2]);
                            p0[i] = slice.pw[tt * nper + nl];
                        }
                    }
                }
                if solve(&mut gram, f, &mut rhs, &p0, nper, opts.ridge)? {
                    for nl in 0..nper {
                        for cl in 0..c {
                            for tt in 0..t {
                                out.slices[g * c + cl].pw[tt * nper + nl] = rhs[nl * f + cl * t + tt];
                            }
                        }
                    }
                }
            }
            Order::PwDw => {
                for nl in 0..nper {
                    let slice = &out.slices[g * nper + nl];
                    let filters: Vec<&[f64]> = vec![&slice.dw[..]; c];
                    let mut gram = block_gram(&s, c, k2, t, &filters);
                    let mut rhs = vec![0.0; f];
                    let mut p0 = vec![0.0; f];
                    for cl in 0..c {
                        for tt in 0..t {
                            rhs[cl * t + tt] =
                                dot(&r[nl * c * k2 + cl * k2..][..k2], &slice.dw[tt * k2..(tt + 1) * k2]);
                            p0[cl * t + tt] = slice.pw[tt * c + cl];
                        }
                    }
                    if solve(&mut gram, f, &mut rhs, &p0, 1, opts.ridge)? {
                        let slice = &mut out.slices[g * nper + nl];
                        for cl in 0..c {
                            for tt in 0..t {
                                slice.pw[tt * c + cl] = rhs[cl * t + tt];
                            }
                        }
                    }
                }
            }
        }
    }
    Ok(out)
}

/// `G = Dᵀ S D` for the block-diagonal D (c·K² × c·T) whose block cl holds the first `t` rows of
/// `filters[cl]` (each K² long) as columns: `G[(cl,tt),(cl',tt')] = D_{cl,tt}ᵀ S_{cl,cl'} D_{cl',tt'}`,
/// index cl·t + tt.
fn block_gram(s: &[f64], c: usize, k2: usize, t: usize, filters: &[&[f64]]) -> Vec<f64> {
    let (d, f) = (c * k2, c * t);
    // SD = S D (d × f).
    let mut sd = vec![0.0; d * f];
    for (srow, out) in s.chunks_exact(d).zip(sd.chunks_exact_mut(f)) {
        for (cl, filt) in filters.iter().enumerate() {
            let seg = &srow[cl * k2..(cl + 1) * k2];
            for tt in 0..t {
                out[cl * t + tt] = dot(seg, &filt[tt * k2..(tt + 1) * k2]);
            }
        }
    }
    let mut gram = vec![0.0; f * f];
    for (cl, filt) in filters.iter().enumerate() {
        for tt in 0..t {
            let row = &mut gram[(cl * t + tt) * f..(cl * t + tt + 1) * f];
            for (i, &dv) in filt[tt * k2..(tt + 1) * k2].iter().enumerate() {
                if dv != 0.0 {
                    for (o, &x) in row.iter_mut().zip(&sd[(cl * k2 + i) * f..(cl * k2 + i + 1) * f]) {
                        *o += dv * x;
                    }
                }
            }
        }
    }
    gram
}

/// Solves `P (G + μI) = Y + μ P₀` in place (`rhs` holds the `nrhs` rows of Y, then of P) with
/// μ = ridge·mean(diag G). Returns false (and leaves P₀ to the caller) when G is all zero: no data.
fn solve(gram: &mut [f64], f: usize, rhs: &mut [f64], p0: &[f64], nrhs: usize, ridge: f64) -> Result<bool> {
    let mean_diag = (0..f).map(|i| gram[i * f + i]).sum::<f64>() / f as f64;
    if !mean_diag.is_finite() {
        return Err(Error::NonFinite("the refit's normal equations hold NaN or infinity".into()));
    }
    if mean_diag <= 0.0 {
        return Ok(false);
    }
    let mu = ridge * mean_diag;
    for i in 0..f {
        gram[i * f + i] += mu;
    }
    for (y, &p) in rhs.iter_mut().zip(p0) {
        *y += mu * p;
    }
    cholesky_solve(gram, f, rhs, nrhs)?;
    Ok(true)
}
