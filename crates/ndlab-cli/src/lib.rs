//! The logic of the `ndlab` command line, kept pure: it takes the arguments and a [`Host`] that
//! reads and writes files, and returns the text to print or an [`Error`]. The binary
//! (`src/main.rs`) only does the I/O and the exit code.

use ndlab_core::conv::{conv2d, decoupled_forward};
use ndlab_core::decouple::Decomposition;
use ndlab_core::error::{Error, Result};
use ndlab_core::layer::{ConvGeometry, ConvLayer, Order};
use ndlab_io::npy::{read_npy, write_npy_f32};
use std::fmt::Write as _;

pub mod compare;
pub mod model;
mod network;
mod report;
#[cfg(not(target_arch = "wasm32"))]
mod runtime;
pub use model::{ListOpts, Source};
pub use network::{DecoupleOpts, EvaluateOpts};
pub use report::{build_report, render_table, report, CostRow, Report, ThresholdT};

/// What the command line needs from its surroundings.
pub trait Host {
    /// The whole content of the file at `path`.
    fn read(&mut self, path: &str) -> Result<Vec<u8>>;
    /// Writes `bytes` to `path`, replacing it.
    fn write(&mut self, path: &str, bytes: &[u8]) -> Result<()>;
    /// Seconds since some fixed instant, if a clock is available (used to print timings).
    fn now(&self) -> Option<f64> {
        None
    }
}

/// The help text of `ndlab --help`.
pub const USAGE: &str = "\
ndlab: network decoupling of conv layers (regular conv = sum of depthwise-separable convs)

USAGE:
  ndlab report KERNEL.npy [--order dw-pw|pw-dw] [--threshold TAU] [--groups G]
                          [--size HxW [--stride S] [--padding P] [--dilation D]] [--json]
  ndlab apply KERNEL.npy --input X.npy --t T --out Y.npy [--order dw-pw|pw-dw]
                          [--stride S] [--padding P] [--dilation D] [--groups G] [--bias B.npy]
  ndlab list MODEL [--layout oihw|hwio]
  ndlab compare MODEL [--layer NAME] [--fold-bn] --speedup X [--json]
  ndlab decouple-model MODEL.onnx --out OUT.onnx [--order dw-pw|pw-dw]
                          (--t T | --threshold TAU [--rule mean|max] | --speedup X)
                          [--calibration DATA.npz [--data-free]] [--json]
  ndlab evaluate MODEL.onnx --data DATA.npz [--json]
  ndlab --help

MODEL/KERNEL files: .npy, .npz, .safetensors, .onnx, PyTorch .pt/.pth (zip format). With a model file,
report and apply take --layer NAME (from ndlab list), --fold-bn (fold the following BatchNorm) and
--layout oihw|hwio (raw arrays; ONNX and PyTorch are OIHW). The file's stride/padding/dilation/groups
are used unless given on the command line.

report  per-slice SVDs of an OIHW float .npy kernel: for T = 1..full rank, the energy kept, the
        relative weight error, MACs, parameters and speed-up of the decoupled layer. MACs are per
        output pixel at stride 1 unless --size gives the input size. --threshold TAU (0 < TAU <= 1)
        also prints the T chosen by the mean rule (official code) and the max rule (TRP code).
apply   runs the T-term decoupled layer on a C×H×W (or 1×C×H×W) input, writes its output, and
        prints the output's relative error against the original layer.
compare every related decomposition (nd-dw-pw, nd-pw-dw, channel, spatial, cp, cp-mobilenet,
        tucker2) at its largest rank whose MACs per output pixel (stride 1) fit regular MACs / X:
        rank, MACs, params, relative weight error (--json: an array of objects).
decouple-model  decouples every conv with K > 1 of an ONNX network (BatchNorm folded first, kept as
        a node) and writes the decoupled network as ONNX: one T for all (capped at each layer's
        full rank), the energy threshold with the mean or max rule, or a budget of conv MACs / X
        allocated by each layer's measured sensitivity on --calibration data (by its weight
        error without data). With --calibration the decoupling is data-aware (factors weighted
        by the data's statistics, pointwise weights refit; --data-free keeps the paper's
        factors). 1×1 convs and convs not cheaper at their T stay as they are. MACs at the
        model's input with batch 1 (symbolic input dims from the calibration data).
evaluate  top-1 accuracy of the network's first output on DATA.npz (x: the input with batch N
        first, y: integer labels; or an IDX images file), run by tract (a real ONNX runtime).
";

/// A parsed command line.
#[derive(Debug, Clone, PartialEq)]
pub enum Command {
    /// Print [`USAGE`].
    Help,
    /// `ndlab report ...`
    Report(ReportOpts),
    /// `ndlab apply ...`
    Apply(ApplyOpts),
    /// `ndlab list ...`
    List(ListOpts),
    /// `ndlab compare ...` (the arguments after `compare`; see [`compare`]).
    Compare(Vec<String>),
    /// `ndlab decouple-model ...`
    DecoupleModel(DecoupleOpts),
    /// `ndlab evaluate ...`
    Evaluate(EvaluateOpts),
}

/// Options of `ndlab report`.
#[derive(Debug, Clone, PartialEq)]
pub struct ReportOpts {
    /// The kernel file.
    pub kernel: String,
    /// Decoupling order.
    pub order: Order,
    /// Energy threshold τ for the two T-choosing rules.
    pub threshold: Option<f64>,
    /// JSON instead of a table.
    pub json: bool,
    /// Input size for whole-layer MACs (else per output pixel at stride 1).
    pub size: Option<(usize, usize)>,
    /// Stride/padding/dilation (used with `size`) and groups.
    pub geometry: ConvGeometry,
    /// Which layer of a model file, layout, BatchNorm folding.
    pub source: Source,
}

/// Options of `ndlab apply`.
#[derive(Debug, Clone, PartialEq)]
pub struct ApplyOpts {
    /// The kernel file.
    pub kernel: String,
    /// The input feature map file.
    pub input: String,
    /// Optional bias file (1-D, N values).
    pub bias: Option<String>,
    /// The output file.
    pub out: String,
    /// Decoupling order.
    pub order: Order,
    /// Number of terms kept.
    pub t: usize,
    /// Stride, padding, dilation, groups of the layer.
    pub geometry: ConvGeometry,
    /// Which layer of a model file, layout, BatchNorm folding.
    pub source: Source,
}

/// Parses, runs and returns what to print on standard output.
pub fn run(args: &[String], host: &mut dyn Host) -> Result<String> {
    match parse_args(args)? {
        Command::Help => Ok(USAGE.to_string()),
        Command::Report(o) => report(&o, host),
        Command::Apply(o) => apply(&o, host),
        Command::List(o) => model::list(&o, host),
        Command::Compare(a) => compare(&a, host),
        Command::DecoupleModel(o) => network::decouple_model(&o, host),
        Command::Evaluate(o) => network::evaluate(&o, host),
    }
}

// ---------------------------------------------------------------------------------------------
// Argument parsing
// ---------------------------------------------------------------------------------------------

fn usage_err(msg: impl Into<String>) -> Error {
    Error::Param(format!("{} (see ndlab --help)", msg.into()))
}

/// Splits `--flag=value` / `--flag value` pairs, switches and positionals.
struct ArgList {
    positional: Vec<String>,
    values: Vec<(String, String)>,
    switches: Vec<String>,
}

fn split_args(args: &[String], switches: &[&str], valued: &[&str]) -> Result<ArgList> {
    let mut list = ArgList { positional: vec![], values: vec![], switches: vec![] };
    let mut it = args.iter();
    while let Some(a) = it.next() {
        if !a.starts_with("--") || a == "--" {
            list.positional.push(a.clone());
            continue;
        }
        let (name, inline) = match a.split_once('=') {
            Some((n, v)) => (n.to_string(), Some(v.to_string())),
            None => (a.clone(), None),
        };
        if switches.contains(&name.as_str()) && inline.is_none() {
            list.switches.push(name);
        } else if valued.contains(&name.as_str()) {
            let v = match inline {
                Some(v) => v,
                None => it.next().cloned().ok_or_else(|| usage_err(format!("{name} needs a value")))?,
            };
            if list.values.iter().any(|(n, _)| *n == name) {
                return Err(usage_err(format!("{name} given twice")));
            }
            list.values.push((name, v));
        } else {
            return Err(usage_err(format!("unknown option '{a}'")));
        }
    }
    Ok(list)
}

impl ArgList {
    fn get(&self, name: &str) -> Option<&str> {
        self.values.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
    }

    fn one_file(&self, what: &str) -> Result<String> {
        match &self.positional[..] {
            [f] => Ok(f.clone()),
            [] => Err(usage_err(format!("missing the {what} file"))),
            [_, extra, ..] => Err(usage_err(format!("unexpected argument '{extra}'"))),
        }
    }

    fn count(&self, name: &str, default: usize, min: usize) -> Result<usize> {
        match self.get(name) {
            None => Ok(default),
            Some(v) => parse_count(name, v, min),
        }
    }

    fn order(&self) -> Result<Order> {
        self.get("--order").map_or(Ok(Order::DwPw), |v| v.parse().map_err(|e: Error| usage_err(strip(&e))))
    }

    fn geometry(&self) -> Result<ConvGeometry> {
        let mut g = ConvGeometry::new(
            self.count("--stride", 1, 1)?,
            self.count("--padding", 0, 0)?,
            self.count("--dilation", 1, 1)?,
        );
        g.groups = self.count("--groups", 1, 1)?;
        Ok(g)
    }
}

/// The message of an error without its category prefix.
fn strip(e: &Error) -> String {
    match e {
        Error::Shape(m) | Error::Param(m) | Error::Format(m) | Error::NonFinite(m) | Error::TooLarge(m) => {
            m.clone()
        }
        Error::Numeric(m) => m.clone(),
    }
}

fn parse_count(name: &str, v: &str, min: usize) -> Result<usize> {
    match v.parse::<usize>() {
        Ok(n) if n >= min && n <= 1 << 20 => Ok(n),
        _ => Err(usage_err(format!(
            "bad value '{v}' for {name}: expected an integer from {min} to {}",
            1 << 20
        ))),
    }
}

fn parse_size(v: &str) -> Result<(usize, usize)> {
    let bad = || usage_err(format!("bad value '{v}' for --size: expected HxW, e.g. 56x56"));
    let (h, w) = v.split_once(['x', 'X', '×', ',']).ok_or_else(bad)?;
    let (h, w) =
        (h.trim().parse::<usize>().map_err(|_| bad())?, w.trim().parse::<usize>().map_err(|_| bad())?);
    if h == 0 || w == 0 || h > 1 << 16 || w > 1 << 16 {
        return Err(bad());
    }
    Ok((h, w))
}

fn parse_threshold(v: &str) -> Result<f64> {
    match v.parse::<f64>() {
        Ok(t) if t > 0.0 && t <= 1.0 => Ok(t),
        _ => Err(usage_err(format!("bad value '{v}' for --threshold: expected a number in (0, 1]"))),
    }
}

/// Turns the arguments (without the program name) into a [`Command`].
pub fn parse_args(args: &[String]) -> Result<Command> {
    let Some((cmd, rest)) = args.split_first() else {
        return Err(usage_err("missing command: report, apply, list, compare, decouple-model or evaluate"));
    };
    if rest.iter().any(|a| a == "--help" || a == "-h") {
        return Ok(Command::Help);
    }
    match cmd.as_str() {
        "--help" | "-h" | "help" => Ok(Command::Help),
        "report" => parse_report(rest).map(Command::Report),
        "apply" => parse_apply(rest).map(Command::Apply),
        "list" => model::parse_list(rest).map(Command::List),
        "compare" => Ok(Command::Compare(rest.to_vec())),
        "decouple-model" => network::parse_decouple(rest).map(Command::DecoupleModel),
        "evaluate" => network::parse_evaluate(rest).map(Command::Evaluate),
        other => Err(usage_err(format!(
            "unknown command '{other}' (expected report, apply, list, compare, decouple-model or evaluate)"
        ))),
    }
}

fn parse_report(args: &[String]) -> Result<ReportOpts> {
    let geo = [
        "--order",
        "--threshold",
        "--groups",
        "--size",
        "--stride",
        "--padding",
        "--dilation",
        "--layer",
        "--layout",
    ];
    let a = split_args(args, &["--json", "--fold-bn"], &geo)?;
    let size = a.get("--size").map(parse_size).transpose()?;
    if size.is_none() && ["--stride", "--padding", "--dilation"].iter().any(|f| a.get(f).is_some()) {
        return Err(usage_err("--stride/--padding/--dilation need --size HxW in report"));
    }
    Ok(ReportOpts {
        kernel: a.one_file("kernel")?,
        order: a.order()?,
        threshold: a.get("--threshold").map(parse_threshold).transpose()?,
        json: a.switches.iter().any(|s| s == "--json"),
        size,
        geometry: a.geometry()?,
        source: Source::from_args(&a)?,
    })
}

fn parse_apply(args: &[String]) -> Result<ApplyOpts> {
    let valued = [
        "--input",
        "--order",
        "--t",
        "--stride",
        "--padding",
        "--dilation",
        "--groups",
        "--bias",
        "--out",
        "--layer",
        "--layout",
    ];
    let a = split_args(args, &["--fold-bn"], &valued)?;
    let need =
        |name: &str| a.get(name).map(str::to_string).ok_or_else(|| usage_err(format!("apply needs {name}")));
    Ok(ApplyOpts {
        kernel: a.one_file("kernel")?,
        input: need("--input")?,
        out: need("--out")?,
        t: parse_count("--t", &need("--t")?, 1)?,
        bias: a.get("--bias").map(str::to_string),
        order: a.order()?,
        geometry: a.geometry()?,
        source: Source::from_args(&a)?,
    })
}

// ---------------------------------------------------------------------------------------------
// Loading
// ---------------------------------------------------------------------------------------------

/// Prefixes an error's message with the file it is about, keeping its kind.
fn in_file(path: &str, e: Error) -> Error {
    let m = |s: String| format!("{path}: {s}");
    match e {
        Error::Shape(s) => Error::Shape(m(s)),
        Error::Param(s) => Error::Param(m(s)),
        Error::Format(s) => Error::Format(m(s)),
        Error::NonFinite(s) => Error::NonFinite(m(s)),
        Error::TooLarge(s) => Error::TooLarge(m(s)),
        Error::Numeric(s) => Error::Numeric(m(s)),
    }
}

/// `ndlab compare`: reads the file named in the arguments and runs the equal-cost comparison.
fn compare(args: &[String], host: &mut dyn Host) -> Result<String> {
    let parsed = crate::compare::parse_compare(args)?;
    let layout = match &parsed.layout {
        None => ndlab_io::formats::Layout::Oihw,
        Some(v) => v.parse().map_err(|e: Error| usage_err(strip(&e)))?,
    };
    let src = model::Source {
        layer: parsed.layer.clone(),
        layout,
        fold_bn: parsed.fold_bn,
        explicit_geometry: false,
    };
    let loaded = model::load(host, &parsed.file, &src)?;
    crate::compare::run_compare_kernel(&parsed, &loaded.kernel).map_err(|e| in_file(&parsed.file, e))
}

// ---------------------------------------------------------------------------------------------
// apply
// ---------------------------------------------------------------------------------------------

/// `ndlab apply`: decoupled forward, output written, relative error vs the original layer.
pub fn apply(o: &ApplyOpts, host: &mut dyn Host) -> Result<String> {
    let loaded = model::load(host, &o.kernel, &o.source)?;
    let mut o = o.clone();
    if let (Some(g), false) = (loaded.geometry, o.source.explicit_geometry) {
        o.geometry = g;
    }
    let o = &o;
    let kernel = loaded.kernel;
    let input = read_npy(&host.read(&o.input)?).map_err(|e| in_file(&o.input, e))?;
    let four_d = input.shape.len() == 4;
    let x = input.into_feature_map().map_err(|e| in_file(&o.input, e))?;
    let bias = match &o.bias {
        None => loaded.bias,
        Some(p) => Some(read_npy(&host.read(p)?).and_then(|a| a.into_vector()).map_err(|e| in_file(p, e))?),
    };
    let layer = ConvLayer::new(kernel, bias, o.geometry)?;
    if x.c != layer.in_channels() {
        return Err(Error::Shape(format!(
            "the input has {} channels, the kernel expects {} ({} per group × {} groups)",
            x.c,
            layer.in_channels(),
            layer.kernel.c,
            o.geometry.groups
        )));
    }
    let t0 = host.now();
    let d = Decomposition::new(&layer.kernel, o.geometry.groups, o.order)?;
    if o.t > d.full_rank {
        return Err(Error::Param(format!(
            "T = {} is out of range: this kernel decouples exactly with {} terms in {} order (use 1..={})",
            o.t,
            d.full_rank,
            o.order.as_str(),
            d.full_rank
        )));
    }
    let merged = d.merged(o.t)?;
    let t1 = host.now();
    let y = decoupled_forward(&x, &merged, layer.bias.as_deref(), &o.geometry)?;
    let t2 = host.now();
    let y0 = conv2d(&x, &layer.kernel, layer.bias.as_deref(), &o.geometry)?;
    let t3 = host.now();
    let err = y.rel_error(&y0)?;
    let shape: Vec<usize> = if four_d { vec![1, y.c, y.h, y.w] } else { vec![y.c, y.h, y.w] };
    host.write(&o.out, &write_npy_f32(&shape, &y.data))?;
    let mut s = format!(
        "wrote {} ({}×{}×{}), {} T = {}: output relative error vs the original layer = {:.6e}\n",
        o.out,
        y.c,
        y.h,
        y.w,
        o.order.label(),
        o.t,
        err
    );
    if let (Some(t0), Some(t1), Some(t2), Some(t3)) = (t0, t1, t2, t3) {
        let ms = |a: f64, b: f64| (b - a) * 1e3;
        let _ = writeln!(
            s,
            "time: decoupling {:.2} ms, decoupled forward {:.2} ms, original forward {:.2} ms",
            ms(t0, t1),
            ms(t1, t2),
            ms(t2, t3)
        );
    }
    Ok(s)
}

#[cfg(test)]
mod tests;
