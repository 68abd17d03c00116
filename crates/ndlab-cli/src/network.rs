//! `ndlab decouple-model` and `ndlab evaluate`: whole ONNX networks.

use super::{split_args, usage_err, Host};
use ndlab_core::decouple::ThresholdRule;
use ndlab_core::error::{Error, Result};
use ndlab_core::layer::Order;
use ndlab_core::network::plan::NetworkPlan;
use ndlab_io::dataset::{read_dataset, read_idx_pair, Dataset};
use ndlab_lab::network::{Allocation, Choice, NetworkSession};
use serde::Serialize;
use std::fmt::Write as _;

/// Options of `ndlab decouple-model`.
#[derive(Debug, Clone, PartialEq)]
pub struct DecoupleOpts {
    /// The model.
    pub model: String,
    /// Where the decoupled model goes.
    pub out: String,
    /// The ordering of every decoupled conv.
    pub order: Order,
    /// How T is chosen.
    pub choice: Choice,
    /// Calibration data (`.npz` with `x` and optional `y`, or IDX images).
    pub calibration: Option<String>,
    /// With calibration data, keep the data-free factors (the data only measures sensitivity).
    pub data_free: bool,
    /// JSON on standard output.
    pub json: bool,
}

/// Options of `ndlab evaluate`.
#[derive(Debug, Clone, PartialEq)]
pub struct EvaluateOpts {
    /// The model.
    pub model: String,
    /// Labelled data.
    pub data: String,
    /// JSON on standard output.
    pub json: bool,
}

pub(crate) fn parse_decouple(args: &[String]) -> Result<DecoupleOpts> {
    let a = split_args(
        args,
        &["--json", "--data-free"],
        &["--out", "--order", "--t", "--threshold", "--rule", "--speedup", "--calibration"],
    )?;
    let model = a.one_file("model")?;
    let out = a.get("--out").ok_or_else(|| usage_err("decouple-model needs --out OUT.onnx"))?.to_string();
    let given: Vec<&str> =
        ["--t", "--threshold", "--speedup"].into_iter().filter(|f| a.get(f).is_some()).collect();
    if given.len() != 1 {
        return Err(usage_err("decouple-model needs exactly one of --t T, --threshold TAU, --speedup X"));
    }
    if a.get("--rule").is_some() && a.get("--threshold").is_none() {
        return Err(usage_err("--rule goes with --threshold"));
    }
    let choice = if let Some(t) = a.get("--t") {
        let t: usize =
            t.parse().map_err(|_| usage_err(format!("--t must be a whole number ≥ 1, got '{t}'")))?;
        if t == 0 {
            return Err(usage_err("--t must be at least 1"));
        }
        Choice::Uniform(t)
    } else if let Some(tau) = a.get("--threshold") {
        let tau = super::parse_threshold(tau)?;
        let rule = match a.get("--rule").unwrap_or("mean") {
            "mean" => ThresholdRule::Mean,
            "max" => ThresholdRule::Max,
            other => return Err(usage_err(format!("--rule must be mean or max, got '{other}'"))),
        };
        Choice::Threshold(tau, rule)
    } else {
        let x = a.get("--speedup").unwrap_or_default();
        let x: f64 =
            x.parse().map_err(|_| usage_err(format!("--speedup must be a number ≥ 1, got '{x}'")))?;
        if !(x.is_finite() && x >= 1.0) {
            return Err(usage_err(format!("--speedup must be a number ≥ 1, got {x}")));
        }
        Choice::Speedup(x)
    };
    Ok(DecoupleOpts {
        model,
        out,
        order: a.order()?,
        choice,
        calibration: a.get("--calibration").map(str::to_string),
        data_free: a.switches.iter().any(|s| s == "--data-free"),
        json: a.switches.iter().any(|s| s == "--json"),
    })
}

pub(crate) fn parse_evaluate(args: &[String]) -> Result<EvaluateOpts> {
    let a = split_args(args, &["--json"], &["--data"])?;
    Ok(EvaluateOpts {
        model: a.one_file("model")?,
        data: a.get("--data").ok_or_else(|| usage_err("evaluate needs --data DATA.npz"))?.to_string(),
        json: a.switches.iter().any(|s| s == "--json"),
    })
}

/// Labelled data: an `.npz` (x, y), or an IDX images file whose labels file sits beside it
/// (`…images-idx3-ubyte[.gz]` → `…labels-idx1-ubyte[.gz]`, as MNIST and Fashion-MNIST ship).
fn data(host: &mut dyn Host, path: &str) -> Result<Dataset> {
    let bytes = host.read(path)?;
    if !bytes.starts_with(b"PK") && path.contains("images-idx3") {
        let labels = host.read(&path.replace("images-idx3", "labels-idx1"))?;
        return read_idx_pair(&bytes, Some(&labels)).map_err(|e| super::in_file(path, e));
    }
    read_dataset(&bytes).map_err(|e| super::in_file(path, e))
}

/// One layer of the report (the keys the command line promises).
#[derive(Serialize)]
struct LayerJson<'a> {
    name: &'a str,
    shape: [usize; 4],
    group: usize,
    t: usize,
    decoupled: bool,
    macs: u64,
    macs_decoupled: u64,
    rel_weight_error: f64,
    full_rank: usize,
    note: &'a str,
}

#[derive(Serialize)]
struct ReportJson<'a> {
    layers: Vec<LayerJson<'a>>,
    macs: u64,
    macs_decoupled: u64,
    order: &'static str,
    speedup: f64,
    allocation: Option<&'a str>,
    data_aware: bool,
}

fn report(
    plan: &NetworkPlan,
    alloc: Option<&Allocation>,
    data_aware: bool,
    json: bool,
    out: &str,
) -> Result<String> {
    if json {
        let r = ReportJson {
            layers: plan
                .layers
                .iter()
                .map(|l| LayerJson {
                    name: &l.name,
                    shape: l.shape,
                    group: l.group,
                    t: l.t,
                    decoupled: l.decoupled,
                    macs: l.macs,
                    macs_decoupled: l.macs_decoupled,
                    rel_weight_error: l.rel_weight_error,
                    full_rank: l.full_rank,
                    note: &l.note,
                })
                .collect(),
            macs: plan.macs,
            macs_decoupled: plan.macs_decoupled,
            order: plan.order.as_str(),
            speedup: plan.speedup(),
            allocation: alloc.map(|a| a.measure.as_str()),
            data_aware,
        };
        return serde_json::to_string_pretty(&r).map_err(|e| Error::Format(format!("json: {e}")));
    }
    let mut s = String::new();
    let _ = writeln!(
        s,
        "{:<24} {:>16} {:>5} {:>4} {:>12} {:>12} {:>9}  note",
        "conv", "shape", "group", "T", "MACs", "after", "w. error"
    );
    for l in &plan.layers {
        let shape = format!("{}×{}×{}×{}", l.shape[0], l.shape[1], l.shape[2], l.shape[3]);
        let t = if l.decoupled { l.t.to_string() } else { "–".into() };
        let _ = writeln!(
            s,
            "{:<24} {:>16} {:>5} {:>4} {:>12} {:>12} {:>9.4}  {}",
            l.name, shape, l.group, t, l.macs, l.macs_decoupled, l.rel_weight_error, l.note
        );
    }
    let _ = writeln!(
        s,
        "conv MACs {} → {} ({:.2}× fewer, {}); written to {out}",
        plan.macs,
        plan.macs_decoupled,
        plan.speedup(),
        plan.order.label()
    );
    if let Some(a) = alloc {
        let _ = writeln!(s, "budget allocated by {}", a.measure);
    }
    if data_aware {
        let _ = writeln!(
            s,
            "data-aware: factors weighted by the calibration data's statistics, pointwise weights refit"
        );
    }
    Ok(s)
}

/// `ndlab decouple-model`.
pub(crate) fn decouple_model(o: &DecoupleOpts, host: &mut dyn Host) -> Result<String> {
    let calib = o.calibration.as_deref().map(|p| data(host, p)).transpose()?;
    let bytes = host.read(&o.model)?;
    let mut s = NetworkSession::open(bytes, calib.as_ref().map(|d| d.dims.as_slice()))
        .map_err(|e| super::in_file(&o.model, e))?;
    // With calibration data: data-aware decompositions, the plan on them, then the refit.
    let aware = calib.is_some() && !o.data_free;
    let d = s.decouple(o.order, &o.choice, aware, calib.as_ref(), &mut |_, _| true)?;
    let out = s.export(&d.plan, Some(&d.decs))?;
    host.write(&o.out, &out)?;
    report(&d.plan, d.allocation.as_ref(), aware, o.json, &o.out)
}

/// `ndlab evaluate`: top-1 accuracy of the model's first output in a real ONNX runtime.
pub(crate) fn evaluate(o: &EvaluateOpts, host: &mut dyn Host) -> Result<String> {
    let d = data(host, &o.data)?;
    let labels =
        d.y.clone().ok_or_else(|| Error::Format(format!("{}: the data has no labels (y)", o.data)))?;
    let model = host.read(&o.model)?;
    let (dims, out) = run_model(&model, &d).map_err(|e| super::in_file(&o.model, e))?;
    let n = d.len();
    let per = out.len().checked_div(n).unwrap_or(0);
    if per == 0 || dims.first() != Some(&n) {
        return Err(Error::Shape(format!("the model's first output has dims {dims:?} for {n} items")));
    }
    let pred = ndlab_core::network::study::predictions(&ndlab_core::network::ops::Value::new(dims, out)?);
    let acc = ndlab_core::network::study::accuracy(&pred, &labels);
    if o.json {
        return Ok(serde_json::json!({ "n": n, "accuracy": acc }).to_string());
    }
    Ok(format!("top-1 accuracy {:.4} on {n} items ({} right)\n", acc, (acc * n as f64).round()))
}

#[cfg(not(target_arch = "wasm32"))]
fn run_model(model: &[u8], d: &Dataset) -> Result<(Vec<usize>, Vec<f32>)> {
    super::runtime::first_output(model, &d.dims, &d.x)
}

#[cfg(target_arch = "wasm32")]
fn run_model(_: &[u8], _: &Dataset) -> Result<(Vec<usize>, Vec<f32>)> {
    Err(Error::Param("evaluate runs natively only".into()))
}
