//! What the singular values alone tell: energy kept, relative weight error and the threshold
//! rules (METHOD.md, "Truncation to T terms" and "Choosing T"). [`Spectra`] is a decomposition
//! without its factors: what the page draws, what a whole-network plan reads.

use super::ThresholdRule;
use crate::error::{Error, Result};
use crate::layer::Order;
use serde::{Deserialize, Serialize};

/// One slice's singular values (descending) and its energy ‖M‖²_F.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SliceSpectrum {
    /// Singular values, descending, ≥ 0, length `full_rank`.
    pub sigma: Vec<f64>,
    /// ‖M‖²_F of the slice (Σσ² up to rounding).
    pub energy: f64,
}

/// Every slice's spectrum of a kernel decoupled in one ordering
/// ([`super::Decomposition::spectra`]): shapes as in [`super::Decomposition`], no factors.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Spectra {
    /// The ordering.
    pub order: Order,
    /// Output channels.
    pub n: usize,
    /// Input channels per group.
    pub c: usize,
    /// Kernel height.
    pub kh: usize,
    /// Kernel width.
    pub kw: usize,
    /// Groups of the original kernel.
    pub groups: usize,
    /// Terms of an exact decoupling.
    pub full_rank: usize,
    /// DW→PW: one per input channel; PW→DW: one per output channel.
    pub slices: Vec<SliceSpectrum>,
}

impl Spectra {
    /// Energy kept for T = 1..=full_rank (index T−1): 1 − Σ_{k>T}σ² / Σσ² over all slices.
    /// An all-zero kernel keeps all of its (zero) energy: every entry is 1.
    pub fn energy_kept(&self) -> Vec<f64> {
        energy_kept(self.full_rank, self.sigmas())
    }

    /// Relative weight error ‖W − W_T‖_F / ‖W‖_F for T = 1..=full_rank (index T−1), from the σ
    /// tails. An all-zero kernel has zero error at every T.
    pub fn rel_weight_error(&self) -> Vec<f64> {
        rel_weight_error(self.full_rank, self.sigmas())
    }

    /// Per-slice energy fractions e_s(t) for t = 1..=full_rank. An all-zero slice gives 1.0
    /// everywhere (nothing to lose); an out-of-range `slice` gives an empty vector.
    pub fn slice_energy(&self, slice: usize) -> Vec<f64> {
        self.slices.get(slice).map_or_else(Vec::new, |s| energy_fractions(&s.sigma))
    }

    /// Smallest T whose energy reaches τ ∈ (0, 1] under `rule` (METHOD.md, "Choosing T"):
    /// `Mean`: smallest t with mean over slices of e_s(t) ≥ τ; `Max`: max over slices of
    /// min{t : e_s(t) ≥ τ}. All-zero slices are left out of both; an all-zero kernel gives T = 1.
    pub fn threshold_t(&self, tau: f64, rule: ThresholdRule) -> Result<usize> {
        threshold_t(self.full_rank, self.sigmas(), tau, rule)
    }

    /// 1 ≤ t ≤ full_rank, or an error naming the range.
    pub fn check_t(&self, t: usize) -> Result<()> {
        check_t(t, self.full_rank, self.order)
    }

    fn sigmas(&self) -> impl Iterator<Item = &[f64]> + Clone {
        self.slices.iter().map(|s| s.sigma.as_slice())
    }
}

/// Σ_s Σ_{k ≥ t} σ²_{s,k} (0-based k) for t = 0..=r; entry 0 is the total energy.
fn tail_sums<'a>(r: usize, sigmas: impl Iterator<Item = &'a [f64]>) -> Vec<f64> {
    let mut tails = vec![0.0; r + 1];
    for sigma in sigmas {
        let mut acc = 0.0;
        for t in (0..r).rev() {
            acc += sigma.get(t).map_or(0.0, |s| s * s);
            tails[t] += acc;
        }
    }
    tails
}

pub(super) fn energy_kept<'a>(r: usize, sigmas: impl Iterator<Item = &'a [f64]>) -> Vec<f64> {
    let tails = tail_sums(r, sigmas);
    let total = tails[0];
    (1..=r).map(|t| if total > 0.0 { 1.0 - tails[t] / total } else { 1.0 }).collect()
}

pub(super) fn rel_weight_error<'a>(r: usize, sigmas: impl Iterator<Item = &'a [f64]>) -> Vec<f64> {
    let tails = tail_sums(r, sigmas);
    let total = tails[0];
    (1..=r).map(|t| if total > 0.0 { (tails[t] / total).sqrt() } else { 0.0 }).collect()
}

pub(super) fn threshold_t<'a>(
    r: usize,
    sigmas: impl Iterator<Item = &'a [f64]>,
    tau: f64,
    rule: ThresholdRule,
) -> Result<usize> {
    if !(tau > 0.0 && tau <= 1.0) {
        return Err(Error::Param(format!("energy threshold must be in (0, 1], got {tau}")));
    }
    let curves: Vec<Vec<f64>> = sigmas.filter(|s| s.iter().any(|&x| x > 0.0)).map(energy_fractions).collect();
    if curves.is_empty() {
        return Ok(1);
    }
    let first_reaching = |e: &[f64]| e.iter().position(|&x| x >= tau).map_or(r, |i| i + 1);
    Ok(match rule {
        ThresholdRule::Max => curves.iter().map(|e| first_reaching(e)).max().unwrap_or(1),
        ThresholdRule::Mean => {
            let count = curves.len() as f64;
            let mean: Vec<f64> = (0..r)
                .map(|t| curves.iter().map(|e| e.get(t).copied().unwrap_or(1.0)).sum::<f64>() / count)
                .collect();
            first_reaching(&mean)
        }
    })
}

pub(super) fn check_t(t: usize, full_rank: usize, order: Order) -> Result<()> {
    if t == 0 || t > full_rank {
        return Err(Error::Param(format!(
            "T must be between 1 and {full_rank} (full rank of {}), got {t}",
            order.label()
        )));
    }
    Ok(())
}

/// e(t) = 1 − Σ_{k≥t}σ² / Σσ² for t = 1..=len (0-based k); all ones for a zero slice.
pub(super) fn energy_fractions(sigma: &[f64]) -> Vec<f64> {
    let r = sigma.len();
    let mut tails = vec![0.0; r + 1];
    for t in (0..r).rev() {
        tails[t] = tails[t + 1] + sigma[t] * sigma[t];
    }
    let total = tails[0];
    (1..=r).map(|t| if total > 0.0 { 1.0 - tails[t] / total } else { 1.0 }).collect()
}
