//! Decoupling a whole network: which convs are decoupled, at which T, in which ordering, and
//! what each costs (METHOD.md's formulas at the network's input size, batch 1).
//!
//! Every conv with K > 1 is a candidate; 1×1 convs are already separable, and a conv whose
//! decoupled form is not cheaper at its T stays as it is (the plan says why). A conv followed by
//! a BatchNormalization is decoupled on its folded kernel (METHOD.md: fold first), and its
//! factors are scaled back so that the BatchNorm node stays as it is. Per-layer T comes from one
//! T for all, an energy threshold (mean or max rule), explicit per-layer values, or a MAC budget
//! allocated greedily by measured sensitivity ([`allocate_budget`]).

use super::{ConvImpl, Program, Shapes};
use crate::cost::CostModel;
use crate::decouple::{Decomposition, Merged, ThresholdRule};
use crate::error::{Error, Result};
use crate::layer::Order;
use serde::{Deserialize, Serialize};

/// How T is chosen per layer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Strategy {
    /// The same T everywhere (capped at each layer's full rank).
    Uniform(usize),
    /// The smallest T whose energy reaches τ, per layer, by the rule.
    Threshold(f64, ThresholdRule),
    /// Given per layer (in conv order; 0 keeps the layer as it is).
    PerLayer(Vec<usize>),
}

/// One conv of the network with what the plans need: its folded kernel's decomposition in one
/// ordering and its cost model at the network's input size.
#[derive(Debug, Clone)]
pub struct Candidate {
    /// Index in [`Program::convs`].
    pub conv: usize,
    /// The conv's label.
    pub name: String,
    /// N, C per group, Kh, Kw.
    pub shape: [usize; 4],
    /// Groups.
    pub groups: usize,
    /// Costs at the input size.
    pub cost: CostModel,
    /// The decomposition of the folded kernel (None for 1×1 convs).
    pub dec: Option<Decomposition>,
    /// Per output channel, the BatchNorm scale folded into the kernel (to undo on export).
    pub bn_scale: Option<Vec<f32>>,
}

impl Candidate {
    /// Full rank in the ordering (1 for a 1×1 conv).
    pub fn full_rank(&self) -> usize {
        self.dec.as_ref().map_or(1, |d| d.full_rank)
    }

    /// The largest T whose decoupled form is cheaper than the layer (0: none is).
    pub fn max_cheaper_t(&self, order: Order) -> usize {
        (1..=self.full_rank())
            .rev()
            .find(|&t| self.cost.decoupled_macs(order, t) < self.cost.regular_macs())
            .unwrap_or(0)
    }
}

/// Every conv's candidate for `order`, for an input of `input` dims (batch 1 is what the MACs
/// count).
pub fn candidates(program: &Program, input: &[usize], order: Order) -> Result<Vec<Candidate>> {
    let shapes: Shapes = program.shapes(input)?;
    program
        .convs
        .iter()
        .enumerate()
        .map(|(i, info)| {
            let [_, c, h, w] = program
                .conv_input_dims(&shapes, i)
                .ok_or_else(|| Error::Shape(format!("conv '{}' has no input size", info.name)))?;
            let k = &info.layer.kernel;
            let geom = info.geometry(h, w)?;
            let cost = CostModel::new(k.n, c, k.kh, k.kw, h, w, &geom)?;
            let folded = info.folded()?;
            let dec = if k.kh * k.kw > 1 {
                Some(
                    Decomposition::new(&folded.kernel, geom.groups, order)
                        .map_err(|e| in_conv(&info.name, e))?,
                )
            } else {
                None
            };
            Ok(Candidate {
                conv: i,
                name: info.name.clone(),
                shape: [k.n, k.c, k.kh, k.kw],
                groups: geom.groups,
                cost,
                dec,
                bn_scale: info.bn.as_ref().map(|(s, _)| s.clone()),
            })
        })
        .collect()
}

fn in_conv(name: &str, e: Error) -> Error {
    match e {
        Error::Numeric(m) => Error::Numeric(format!("conv '{name}': {m}")),
        Error::NonFinite(m) => Error::NonFinite(format!("conv '{name}': {m}")),
        other => other,
    }
}

/// What the plan does to one conv.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LayerPlan {
    /// The conv's label (node name, or its first output's name).
    pub name: String,
    /// [N, C per group, Kh, Kw].
    pub shape: [usize; 4],
    /// Groups.
    pub group: usize,
    /// Full rank in the plan's ordering.
    pub full_rank: usize,
    /// Terms kept (the full rank when not decoupled).
    pub t: usize,
    /// Whether the conv is decoupled.
    pub decoupled: bool,
    /// Why not, when it is not.
    pub note: String,
    /// Regular MACs at batch 1.
    pub macs: u64,
    /// MACs in the plan (the regular ones when not decoupled).
    pub macs_decoupled: u64,
    /// ‖W − W_T‖_F / ‖W‖_F of the folded kernel (0 when not decoupled).
    pub rel_weight_error: f64,
    /// Energy kept at T by the per-slice SVD (1 when not decoupled; with data-aware factors still
    /// the SVD's, while `rel_weight_error` is the refit factors' own).
    pub energy_kept: f64,
}

/// A whole network's plan.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NetworkPlan {
    /// The ordering of every decoupled conv.
    pub order: Order,
    /// One entry per conv, in graph order.
    pub layers: Vec<LayerPlan>,
    /// All convs' MACs, before.
    pub macs: u64,
    /// All convs' MACs, after.
    pub macs_decoupled: u64,
}

impl NetworkPlan {
    /// The T of every conv (0: kept as it is).
    pub fn ts(&self) -> Vec<usize> {
        self.layers.iter().map(|l| if l.decoupled { l.t } else { 0 }).collect()
    }

    /// Conv MACs before / after.
    pub fn speedup(&self) -> f64 {
        self.macs as f64 / self.macs_decoupled.max(1) as f64
    }
}

/// The T each layer would take under `strategy` (before the cheaper-or-not check).
pub fn choose_ts(cands: &[Candidate], strategy: &Strategy) -> Result<Vec<usize>> {
    match strategy {
        Strategy::Uniform(t) => {
            if *t == 0 {
                return Err(Error::Param("T must be at least 1".into()));
            }
            Ok(cands.iter().map(|c| (*t).min(c.full_rank())).collect())
        }
        Strategy::Threshold(tau, rule) => cands
            .iter()
            .map(|c| match &c.dec {
                Some(d) => d.threshold_t(*tau, *rule),
                None => Ok(1),
            })
            .collect(),
        Strategy::PerLayer(ts) => {
            if ts.len() != cands.len() {
                return Err(Error::Param(format!("{} values of T for {} convs", ts.len(), cands.len())));
            }
            Ok(ts.iter().zip(cands).map(|(&t, c)| t.min(c.full_rank())).collect())
        }
    }
}

/// The plan for per-layer `ts` (0 keeps a layer): each layer decoupled at its T when its
/// decoupled form is cheaper there.
pub fn plan(cands: &[Candidate], order: Order, ts: &[usize]) -> Result<NetworkPlan> {
    if ts.len() != cands.len() {
        return Err(Error::Param(format!("{} values of T for {} convs", ts.len(), cands.len())));
    }
    let mut layers = Vec::with_capacity(cands.len());
    for (c, &t) in cands.iter().zip(ts) {
        let macs = c.cost.regular_macs();
        let full = c.full_rank();
        let t = t.min(full);
        let (decoupled, note) = match &c.dec {
            None => (false, "1×1: already separable".to_string()),
            Some(_) if t == 0 => (false, "kept by choice".to_string()),
            Some(_) if c.cost.decoupled_macs(order, t) >= macs => (
                false,
                format!(
                    "not cheaper at T = {t} ({} MACs against {macs}; break-even T = {:.2})",
                    c.cost.decoupled_macs(order, t),
                    c.cost.break_even(order)
                ),
            ),
            Some(_) => (true, String::new()),
        };
        let (err, energy) = match (&c.dec, decoupled) {
            (Some(d), true) => (
                d.rel_weight_error().get(t - 1).copied().unwrap_or(0.0),
                d.energy_kept().get(t - 1).copied().unwrap_or(1.0),
            ),
            _ => (0.0, 1.0),
        };
        layers.push(LayerPlan {
            name: c.name.clone(),
            shape: c.shape,
            group: c.groups,
            full_rank: full,
            t: if decoupled { t } else { full },
            decoupled,
            note,
            macs,
            macs_decoupled: if decoupled { c.cost.decoupled_macs(order, t) } else { macs },
            rel_weight_error: err,
            energy_kept: energy,
        });
    }
    let macs = layers.iter().map(|l| l.macs).sum();
    let macs_decoupled = layers.iter().map(|l| l.macs_decoupled).sum();
    Ok(NetworkPlan { order, layers, macs, macs_decoupled })
}

/// Merged factors of a candidate at T, scaled back from the folded kernel to the raw one (the
/// BatchNorm that follows stays in the graph): output channel n's pointwise row (DW→PW) or
/// depthwise filters (PW→DW) divided by its scale (a zero scale zeroes the channel, whose
/// output the BatchNorm makes constant anyway).
pub fn raw_merged(c: &Candidate, dec: &Decomposition, t: usize) -> Result<Merged> {
    let mut m = dec.merged(t)?;
    if let Some(scale) = &c.bn_scale {
        let inv: Vec<f32> =
            scale.iter().map(|&s| if s != 0.0 && s.is_finite() { 1.0 / s } else { 0.0 }).collect();
        let (rows, per) = match m.order {
            Order::DwPw => (&mut m.pw, m.c_total / m.groups * t),
            Order::PwDw => (&mut m.dw, t * m.kh * m.kw),
        };
        for (row, &f) in rows.chunks_exact_mut(per.max(1)).zip(&inv) {
            row.iter_mut().for_each(|v| *v *= f);
        }
    }
    Ok(m)
}

/// How each conv runs under `plan` (decoupled ones from `decs`, the candidates' decompositions
/// or data-aware replacements of them).
pub fn conv_impls(
    program: &Program,
    cands: &[Candidate],
    decs: &[Option<Decomposition>],
    plan: &NetworkPlan,
) -> Result<Vec<ConvImpl>> {
    cands
        .iter()
        .zip(&plan.layers)
        .zip(decs)
        .map(|((c, l), d)| match (l.decoupled, d) {
            (true, Some(d)) => Ok(ConvImpl::Decoupled {
                merged: raw_merged(c, d, l.t.min(d.full_rank))?,
                bias: program.convs[c.conv].layer.bias.clone(),
            }),
            (true, None) => Err(Error::Param(format!("conv '{}' has no decomposition", c.name))),
            (false, _) => Ok(ConvImpl::Regular),
        })
        .collect()
}

/// Sensitivity of each layer: `loss[l][t − 1]` is the network's loss with layer `l` alone
/// decoupled at T = t (others as they are); `base` the loss with none. Greedy allocation
/// (as AIMET's SVD compression): from every layer as it is, repeatedly take the step that
/// saves MACs at the smallest loss increase per MAC saved (a layer moving to its largest
/// cheaper T, or one T down) until the conv MACs are at most `budget`. Returns per-layer T
/// (0: kept).
pub fn allocate_budget(
    cands: &[Candidate],
    order: Order,
    loss: &[Vec<f64>],
    base: f64,
    budget: u64,
) -> Result<Vec<usize>> {
    if loss.len() != cands.len() {
        return Err(Error::Param("one sensitivity row per conv is needed".into()));
    }
    let mut ts = vec![0usize; cands.len()];
    let macs_of = |c: &Candidate, t: usize| {
        if t == 0 {
            c.cost.regular_macs()
        } else {
            c.cost.decoupled_macs(order, t)
        }
    };
    let loss_of =
        |l: usize, t: usize| if t == 0 { base } else { loss[l].get(t - 1).copied().unwrap_or(f64::INFINITY) };
    let regular: u64 = cands.iter().map(|c| c.cost.regular_macs()).sum();
    let mut total = regular;
    while total > budget {
        let mut best: Option<(f64, usize, usize)> = None;
        for (l, c) in cands.iter().enumerate() {
            let next = match ts[l] {
                0 => c.max_cheaper_t(order),
                1 => 0,
                t => t - 1,
            };
            if next == 0 || c.dec.is_none() {
                continue;
            }
            let saved = macs_of(c, ts[l]).saturating_sub(macs_of(c, next));
            if saved == 0 {
                continue;
            }
            let cost = (loss_of(l, next) - loss_of(l, ts[l])).max(0.0) / saved as f64;
            if best.is_none_or(|(b, _, _)| cost < b) {
                best = Some((cost, l, next));
            }
        }
        let Some((_, l, next)) = best else {
            return Err(Error::Param(format!(
                "a budget of {budget} conv MACs is out of reach: T = 1 wherever it is cheaper gives {total} \
                 ({:.2}× fewer than {regular}, the most this network allows)",
                regular as f64 / total.max(1) as f64
            )));
        };
        total = total - macs_of(&cands[l], ts[l]) + macs_of(&cands[l], next);
        ts[l] = next;
    }
    Ok(ts)
}
