//! A whole network in the lab: an ONNX model read once, compiled for ndlab's own kernels, its
//! convs' decompositions per ordering (data-free, or data-aware from calibration data), plans by
//! every strategy, their measurements, and the decoupled model written back as ONNX. The command
//! line (`ndlab decouple-model`) and the page's workers both go through this.

use ndlab_core::decouple::data_aware::{AwareOptions, RefitOptions};
use ndlab_core::decouple::{Decomposition, ThresholdRule};
use ndlab_core::error::{Error, Result};
use ndlab_core::layer::Order;
use ndlab_core::network::aware::{aware_decompositions, refit_plan, with_weight_errors};
use ndlab_core::network::ops::Value;
use ndlab_core::network::plan::{
    self, allocate_budget, candidates, choose_ts, Candidate, NetworkPlan, Strategy,
};
use ndlab_core::network::study::{outputs, rel_error, replacements, sensitivity};
use ndlab_core::network::{compile, Program};
use ndlab_io::dataset::Dataset;
use ndlab_io::onnx_graph::{read_model, rewrite, GraphEdit, NodeRef, OnnxModel};
use serde::{Deserialize, Serialize};
use std::collections::HashSet;

pub mod messages;
pub mod pool;
pub mod view;

/// Calibration items used to measure each layer's sensitivity (the first ones).
pub const SENSITIVITY_ITEMS: usize = 64;

/// How the per-layer T is chosen (the command line's `--t`, `--threshold`/`--rule`, `--speedup`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Choice {
    /// One T for every layer.
    Uniform(usize),
    /// The energy threshold τ and its rule.
    Threshold(f64, ThresholdRule),
    /// Conv MACs divided by this, allocated by measured sensitivity.
    Speedup(f64),
    /// Given per layer (0 keeps a layer).
    PerLayer(Vec<usize>),
}

/// How the budget was allocated, for the report.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Allocation {
    /// What the sensitivity was measured as.
    pub measure: String,
    /// The network's output error with each layer alone decoupled, per T (index T − 1;
    /// infinite where T is not a choice).
    pub loss: Vec<Vec<f64>>,
}

/// A decoupled network: the plan and the decompositions it uses (data-free, or data-aware and
/// refit), and how a budget was allocated.
#[derive(Debug, Clone)]
pub struct Decoupled {
    /// The plan.
    pub plan: NetworkPlan,
    /// Per conv, the decomposition its decoupled form takes its factors from.
    pub decs: Vec<Option<Decomposition>>,
    /// How a budget was allocated.
    pub allocation: Option<Allocation>,
}

/// An opened network.
pub struct NetworkSession {
    bytes: Vec<u8>,
    model: OnnxModel,
    program: Program,
    /// The input's dims at batch 1 (symbolic dims fixed from the data).
    input: Vec<usize>,
    /// Candidates (data-free decompositions) by ordering, computed on first use.
    cands: Vec<(Order, Vec<Candidate>)>,
    /// Data-aware decompositions by ordering, computed on first use (for the calibration data
    /// given then; [`NetworkSession::forget_data`] drops them).
    aware: Vec<(Order, Vec<Option<Decomposition>>)>,
    /// Measured sensitivities by (ordering, data-aware), for the calibration data given then.
    sensitivity: Vec<((Order, bool), Allocation)>,
}

impl NetworkSession {
    /// Reads and compiles a model; `data_dims` (the data's dims, N first) fix symbolic input
    /// dims other than the batch.
    pub fn open(bytes: Vec<u8>, data_dims: Option<&[usize]>) -> Result<Self> {
        let model = read_model(&bytes)?;
        let program = compile(&model.graph, model.opset)?;
        if program.convs.is_empty() {
            return Err(Error::Format("the model has no Conv node".into()));
        }
        let input = program.concrete_input(data_dims, 1)?;
        // Every shape must resolve (this also refuses graphs whose shapes do not match).
        program.shapes(&input)?;
        Ok(NetworkSession {
            bytes,
            model,
            program,
            input,
            cands: Vec::new(),
            aware: Vec::new(),
            sensitivity: Vec::new(),
        })
    }

    /// The compiled program.
    pub fn program(&self) -> &Program {
        &self.program
    }

    /// The model as read.
    pub fn model(&self) -> &OnnxModel {
        &self.model
    }

    /// The input's dims at batch 1.
    pub fn input_dims(&self) -> &[usize] {
        &self.input
    }

    /// The candidates of `order` (data-free decompositions of the folded kernels).
    pub fn candidates(&mut self, order: Order) -> Result<&[Candidate]> {
        if !self.cands.iter().any(|(o, _)| *o == order) {
            let c = candidates(&self.program, &self.input, order)?;
            self.cands.push((order, c));
        }
        self.cands
            .iter()
            .find(|(o, _)| *o == order)
            .map(|(_, c)| c.as_slice())
            .ok_or_else(|| Error::Param("no candidates".into()))
    }

    /// The data as the program's input value (checked against the model's input).
    pub fn input_value(&self, data: &Dataset) -> Result<Value> {
        let want: Vec<usize> = self.input.iter().skip(1).copied().collect();
        let have: Vec<usize> = data.dims.iter().skip(1).copied().collect();
        if want != have {
            return Err(Error::Shape(format!(
                "the data's items are {have:?}; the model's input takes {want:?} (batch first)"
            )));
        }
        Value::new(data.dims.clone(), data.x.clone())
    }

    /// The data-aware decompositions of every conv in `order` (weighted by the statistics of
    /// its input on the calibration data through the original network), computed once.
    pub fn aware(&mut self, order: Order, calibration: &Dataset) -> Result<Vec<Option<Decomposition>>> {
        if let Some((_, a)) = self.aware.iter().find(|(o, _)| *o == order) {
            return Ok(a.clone());
        }
        let cands = self.candidates(order)?.to_vec();
        let x = self.input_value(calibration)?;
        let a = aware_decompositions(&self.program, &cands, order, &x, &AwareOptions::default())?;
        self.aware.push((order, a.clone()));
        Ok(a)
    }

    /// Forgets what was computed from calibration data (new data).
    pub fn forget_data(&mut self) {
        self.aware.clear();
        self.sensitivity.clear();
    }

    /// Decouples the network: the plan for `choice` in `order`, on the data-free decompositions
    /// or (`data_aware`) on the data-aware ones, then refit; a speed-up's sensitivity measured on
    /// the calibration data when there is some. What `ndlab decouple-model` writes and the page
    /// evaluates and exports.
    pub fn decouple(
        &mut self,
        order: Order,
        choice: &Choice,
        data_aware: bool,
        calibration: Option<&Dataset>,
        progress: &mut dyn FnMut(&str, f64) -> bool,
    ) -> Result<Decoupled> {
        let aware = match (data_aware, calibration) {
            (true, Some(c)) => {
                progress("weighting the factors by the calibration data", 0.1);
                Some(self.aware(order, c)?)
            }
            (true, None) => return Err(Error::Param("data-aware decoupling needs calibration data".into())),
            (false, _) => None,
        };
        let (plan, allocation) = self.plan(order, choice, aware.as_deref(), calibration, &mut |i, n| {
            progress("measuring each layer's sensitivity", 0.2 + 0.5 * i as f64 / n.max(1) as f64)
        })?;
        match (aware, calibration) {
            (Some(a), Some(c)) => {
                progress("refitting the pointwise weights", 0.8);
                let (plan, decs) = self.refit(&plan, &a, c)?;
                Ok(Decoupled { plan, decs, allocation })
            }
            _ => {
                let decs = self.candidates(order)?.iter().map(|c| c.dec.clone()).collect();
                Ok(Decoupled { plan, decs, allocation })
            }
        }
    }

    /// The plan's decoupled convs refit layer by layer on the calibration data (see
    /// [`refit_plan`]), and the plan with the weight errors of what it now uses.
    pub fn refit(
        &mut self,
        plan: &NetworkPlan,
        decs: &[Option<Decomposition>],
        calibration: &Dataset,
    ) -> Result<(NetworkPlan, Vec<Option<Decomposition>>)> {
        let cands = self.candidates(plan.order)?.to_vec();
        let x = self.input_value(calibration)?;
        let refit = refit_plan(&self.program, &cands, decs, plan, &x, &RefitOptions::default())?;
        let plan = with_weight_errors(&self.program, &cands, &refit, plan)?;
        Ok((plan, refit))
    }

    /// The plan for `choice` in `order` with the decompositions `decs` (the candidates' own
    /// when None). A speed-up measures each layer's sensitivity on `calibration` (the network's
    /// output error with that layer alone decoupled; its first [`SENSITIVITY_ITEMS`] items),
    /// or without data uses each layer's relative weight error as its loss.
    pub fn plan(
        &mut self,
        order: Order,
        choice: &Choice,
        decs: Option<&[Option<Decomposition>]>,
        calibration: Option<&Dataset>,
        progress: &mut dyn FnMut(usize, usize) -> bool,
    ) -> Result<(NetworkPlan, Option<Allocation>)> {
        let cands = self.candidates(order)?.to_vec();
        let own: Vec<Option<Decomposition>> = cands.iter().map(|c| c.dec.clone()).collect();
        let given = decs.is_some();
        let decs = decs.unwrap_or(&own);
        let strategy = match choice {
            Choice::Uniform(t) => Strategy::Uniform(*t),
            Choice::Threshold(tau, rule) => Strategy::Threshold(*tau, *rule),
            Choice::PerLayer(ts) => Strategy::PerLayer(ts.clone()),
            Choice::Speedup(x) => {
                if !(x.is_finite() && *x >= 1.0) {
                    return Err(Error::Param(format!("the speed-up must be at least 1, got {x}")));
                }
                let total: u64 = cands.iter().map(|c| c.cost.regular_macs()).sum();
                let budget = (total as f64 / x).floor() as u64;
                let key = (order, given);
                let cached = self
                    .sensitivity
                    .iter()
                    .find(|(k, _)| *k == key)
                    .map(|(_, a)| (a.loss.clone(), a.measure.clone()));
                let (loss, measure) = match (cached, calibration) {
                    (Some(c), Some(_)) => c,
                    (_, Some(data)) => {
                        let x = self.input_value(&data.slice(0..SENSITIVITY_ITEMS)?)?;
                        let reference = outputs(&self.program, &x, &[])?;
                        let loss = sensitivity(&self.program, &cands, decs, order, &x, &reference, progress)?;
                        (loss, format!("output error on {} calibration items", x.dims[0]))
                    }
                    (_, None) => {
                        let loss = decs
                            .iter()
                            .zip(&cands)
                            .map(|(d, c)| {
                                d.as_ref().map_or_else(
                                    || vec![f64::INFINITY; c.full_rank()],
                                    |d| d.rel_weight_error(),
                                )
                            })
                            .collect();
                        (loss, "relative weight error (no calibration data)".to_string())
                    }
                };
                let ts = allocate_budget(&cands, order, &loss, 0.0, budget)?;
                let p = plan::plan(&cands, order, &ts)?;
                let alloc = Allocation { measure, loss };
                if calibration.is_some() && !self.sensitivity.iter().any(|(k, _)| *k == key) {
                    self.sensitivity.push((key, alloc.clone()));
                }
                return Ok((p, Some(alloc)));
            }
        };
        let ts = choose_ts(&cands, &strategy)?;
        Ok((plan::plan(&cands, order, &ts)?, None))
    }

    /// The decoupled model as ONNX: the original file with each decoupled conv replaced by its
    /// two convs (and weights), everything else byte for byte.
    pub fn export(&mut self, plan: &NetworkPlan, decs: Option<&[Option<Decomposition>]>) -> Result<Vec<u8>> {
        let cands = self.candidates(plan.order)?.to_vec();
        let own: Vec<Option<Decomposition>> = cands.iter().map(|c| c.dec.clone()).collect();
        let decs = decs.unwrap_or(&own);
        let reps = replacements(&self.model.graph, &self.program, &cands, decs, plan)?;
        let graph = &self.model.graph;
        let mut edit = GraphEdit::default();
        let mut replaced: HashSet<usize> = HashSet::new();
        for r in reps {
            let node = &graph.nodes[r.node];
            let out =
                node.outputs.first().cloned().ok_or_else(|| Error::Format("a conv without output".into()))?;
            edit.replace.push((NodeRef::Output(out), r.nodes));
            edit.add_initializers.extend(r.initializers);
            replaced.insert(r.node);
        }
        // Weights only the replaced convs read.
        let still_read: HashSet<&str> = graph
            .nodes
            .iter()
            .enumerate()
            .filter(|(i, _)| !replaced.contains(i))
            .flat_map(|(_, n)| n.inputs.iter().map(String::as_str))
            .collect();
        for &i in &replaced {
            if let Some(w) = graph.nodes[i].inputs.get(1) {
                if !still_read.contains(w.as_str()) && graph.initializers.contains_key(w) {
                    edit.remove_initializers.push(w.clone());
                }
            }
        }
        edit.remove_initializers.sort();
        edit.remove_initializers.dedup();
        rewrite(&self.bytes, &edit)
    }

    /// The network's first output on `data` with the plan's convs decoupled (`decs`: the
    /// candidates' own when None), and its relative error against the original network's.
    pub fn run(
        &mut self,
        plan: &NetworkPlan,
        decs: Option<&[Option<Decomposition>]>,
        data: &Dataset,
    ) -> Result<(Value, f64)> {
        let cands = self.candidates(plan.order)?.to_vec();
        let own: Vec<Option<Decomposition>> = cands.iter().map(|c| c.dec.clone()).collect();
        let decs = decs.unwrap_or(&own);
        let x = self.input_value(data)?;
        let impls = plan::conv_impls(&self.program, &cands, decs, plan)?;
        let out = outputs(&self.program, &x, &impls)?;
        let reference = outputs(&self.program, &x, &[])?;
        let err = rel_error(&out, &reference);
        Ok((out, err))
    }
}
