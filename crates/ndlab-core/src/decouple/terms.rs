//! The decoupled layer is linear in its terms (METHOD.md): conv(x, W) = Σ_k conv(x, term k), and
//! the decoupled layer at T is the sum of the first T. One single-term conv per term, summed from
//! the last, gives the original output, the decoupled output at T and the output error for every
//! T, for about the cost of one regular conv; each term's output can be kept, so that a forward at
//! another T is a sum of maps.

use super::Decomposition;
use crate::error::{Error, Result};
use crate::layer::{ConvGeometry, FeatureMap};

/// Which term outputs a terms pass keeps (see [`decoupled_by_terms`]).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct KeepTerms {
    /// Most floats they may hold (0: none are kept).
    pub max_floats: usize,
    /// The output channel to keep when all channels would not fit.
    pub channel: Option<usize>,
}

impl KeepTerms {
    /// Keep nothing.
    pub const NONE: KeepTerms = KeepTerms { max_floats: 0, channel: None };
}

/// The sum of term maps plus a bias, in f64 from the last term down, rounded once to f32: how
/// the worker sums its kept terms for a forward at T (the first T maps), and how the page sums
/// the term maps it was sent ([`ForwardResult::terms`]), so that both give the same bits.
pub fn sum_terms<T: AsRef<[f32]>>(maps: &[T], bias: f32) -> Vec<f32> {
    let plane = maps.first().map_or(0, |m| m.as_ref().len());
    let mut acc = vec![0.0f64; plane];
    for term in maps.iter().rev() {
        for (a, &v) in acc.iter_mut().zip(term.as_ref()) {
            *a += v as f64;
        }
    }
    acc.into_iter().map(|v| (v + bias as f64) as f32).collect()
}

/// What [`decoupled_by_terms`] computes.
#[derive(Debug, Clone)]
pub struct TermsPass {
    /// The sum of all terms plus the bias: the original layer's output (to f32 rounding: the
    /// decomposition at full rank is exact).
    pub original: FeatureMap,
    /// ‖y_T − y‖ / ‖y‖ for T = 1..=r: y_T differs from y by −Σ_{k ≥ T} conv(x, term k) (the bias
    /// cancels), so the running sums give every T (exact zero at full rank).
    pub errors: Vec<f64>,
    /// The decoupled layer's output at the T asked for (with the bias).
    pub at_t: Option<FeatureMap>,
    /// Term k's output (no bias) at index k, on the channels `terms_channels`: all of them when
    /// they fit in the floats allowed, else the one channel asked for when it fits, else none
    /// (empty).
    pub terms: Vec<Vec<f32>>,
    /// The output channels [`TermsPass::terms`] hold.
    pub terms_channels: std::ops::Range<usize>,
}

/// The decoupled layer on `x` term by term: one single-term decoupled conv per term, from the
/// last, summed in f64. Their sum (with the bias) is the original layer's output, the sum of the
/// first T the decoupled layer's at T, and the running sums give the output error for every T:
/// all three for about the cost of one regular conv. Each term's output is kept too, as `keep`
/// allows.
pub fn decoupled_by_terms(
    dec: &Decomposition,
    x: &FeatureMap,
    bias: Option<&[f32]>,
    geometry: &ConvGeometry,
    t: Option<usize>,
    keep: KeepTerms,
    report: &mut dyn FnMut(&str, f64),
) -> Result<TermsPass> {
    let r = dec.full_rank;
    if let Some(t) = t {
        dec.check_t(t)?;
    }
    let mut tails = tail_sums(dec, x, geometry, t.filter(|&t| t < r), keep, report)?;
    let terms = std::mem::take(&mut tails.terms);
    let terms_channels = tails.terms_channels.clone();
    let (c, h, w) = tails.shape;
    let plane = h * w;
    let bias_of = |i: usize| match bias {
        Some(b) => b.get(i / plane.max(1)).copied().unwrap_or(0.0) as f64,
        None => 0.0,
    };
    let acc = &tails.sum;
    let original: Vec<f32> = acc.iter().enumerate().map(|(i, &v)| (v + bias_of(i)) as f32).collect();
    let den: f64 = original.iter().map(|&v| (v as f64) * (v as f64)).sum();
    let at_t = match (t, &tails.kept) {
        (None, _) => None,
        (Some(_), None) => Some(FeatureMap::new(c, h, w, original.clone())?),
        (Some(_), Some(tail)) => {
            let y =
                acc.iter().zip(tail).enumerate().map(|(i, (&a, &b))| (a - b + bias_of(i)) as f32).collect();
            Some(FeatureMap::new(c, h, w, y)?)
        }
    };
    Ok(TermsPass {
        original: FeatureMap::new(c, h, w, original)?,
        errors: tails.errors(den),
        at_t,
        terms,
        terms_channels,
    })
}

/// Running sums of the terms' outputs, from the last term down (see [`tail_sums`]).
struct Tails {
    /// Σ_j conv(x, term j), in f64 (empty when no term was run).
    sum: Vec<f64>,
    /// (c, h, w) of a term's output.
    shape: (usize, usize, usize),
    /// ‖Σ_{j ≥ T} conv(x, term j)‖² for T = 1..r (index T − 1; 0 at T = r).
    norms: Vec<f64>,
    /// Σ_{j ≥ keep} conv(x, term j), when asked for.
    kept: Option<Vec<f64>>,
    /// conv(x, term j) at index j on the channels `terms_channels` (see [`KeepTerms`]).
    terms: Vec<Vec<f32>>,
    terms_channels: std::ops::Range<usize>,
}

impl Tails {
    /// ‖y_T − y‖ / ‖y‖ for T = 1..=r from the tail norms and ‖y‖² = `den` (exact zero at r).
    fn errors(&self, den: f64) -> Vec<f64> {
        let r = self.norms.len();
        self.norms
            .iter()
            .enumerate()
            .map(|(i, &num)| {
                if i + 1 >= r {
                    0.0
                } else if den == 0.0 {
                    num.sqrt()
                } else {
                    (num / den).sqrt()
                }
            })
            .collect()
    }
}

/// One single-term decoupled conv per term k = r−1 down to 0, summed in f64 as they come (the
/// sum kept at k = `keep`, and the terms' outputs as `keep_terms` allows: all channels, or the
/// one asked for).
fn tail_sums(
    dec: &Decomposition,
    x: &FeatureMap,
    geometry: &ConvGeometry,
    keep: Option<usize>,
    keep_terms: KeepTerms,
    report: &mut dyn FnMut(&str, f64),
) -> Result<Tails> {
    let r = dec.full_rank;
    let mut tails = Tails {
        sum: Vec::new(),
        shape: (0, 0, 0),
        norms: vec![0.0; r],
        kept: None,
        terms: Vec::new(),
        terms_channels: 0..0,
    };
    for k in (0..r).rev() {
        report(&format!("decoupled layer, term {} of {r}", r - k), (r - k) as f64 / (r + 1) as f64);
        let d = crate::conv::decoupled_forward(x, &dec.term(k)?.merged(1)?, None, geometry)?;
        if tails.sum.is_empty() {
            tails.sum = vec![0.0; d.data.len()];
            tails.shape = (d.c, d.h, d.w);
            let plane = d.h * d.w;
            tails.terms_channels = if d.data.len().saturating_mul(r) <= keep_terms.max_floats {
                0..d.c
            } else {
                match keep_terms.channel {
                    Some(ch) if ch < d.c && plane.saturating_mul(r) <= keep_terms.max_floats => ch..ch + 1,
                    _ => 0..0,
                }
            };
        } else if d.data.len() != tails.sum.len() {
            return Err(Error::Shape("a term's output differs in size from the layer's".into()));
        }
        for (a, &v) in tails.sum.iter_mut().zip(&d.data) {
            *a += v as f64;
        }
        if k >= 1 {
            tails.norms[k - 1] = tails.sum.iter().map(|v| v * v).sum();
        }
        if keep == Some(k) {
            tails.kept = Some(tails.sum.clone());
        }
        if !tails.terms_channels.is_empty() {
            let plane = d.h * d.w;
            let range = tails.terms_channels.start * plane..tails.terms_channels.end * plane;
            let part = d.data.get(range).ok_or_else(|| Error::Shape("a term's output is short".into()))?;
            tails.terms.push(part.to_vec());
        }
    }
    // (Run from the last term down.)
    tails.terms.reverse();
    Ok(tails)
}
