//! `ndlab compare FILE [--layer NAME] --speedup X [--json]`: the equal-cost comparison of a layer's
//! decompositions. Pure: arguments and the file's bytes in, the text to print out.

use ndlab_core::error::{Error, Result};
use ndlab_core::layer::Kernel;
use ndlab_core::relatives::{compare, CompareOptions, ComparisonRow, Dims};
use ndlab_io::npy::read_npy;

/// Usage of the subcommand.
pub const COMPARE_USAGE: &str =
    "ndlab compare FILE [--layer NAME] [--fold-bn] [--layout oihw|hwio] --speedup X [--json]
  Every related decomposition (nd-dw-pw, nd-pw-dw, channel, spatial, cp, cp-mobilenet, tucker2)
  at its largest rank whose MACs per output pixel (stride 1) fit regular MACs / X.
  FILE: an OIHW .npy kernel, or a model file (.npz, .safetensors, .onnx, PyTorch .pt/.pth) with
  --layer NAME (from ndlab list; not needed when the file has one conv layer).";

/// Parsed arguments of `compare`.
#[derive(Debug, Clone, PartialEq)]
pub struct CompareArgs {
    /// The kernel file.
    pub file: String,
    /// A layer name inside a multi-layer file.
    pub layer: Option<String>,
    /// `--fold-bn`: fold the following BatchNorm into the kernel.
    pub fold_bn: bool,
    /// `--layout`, as given (parsed by the loader).
    pub layout: Option<String>,
    /// The speed-up X (> 0).
    pub speedup: f64,
    /// JSON output.
    pub json: bool,
}

fn usage(msg: &str) -> Error {
    Error::Param(format!("{msg}\nusage: {COMPARE_USAGE}"))
}

/// Parses the arguments after `compare`.
pub fn parse_compare(args: &[String]) -> Result<CompareArgs> {
    let (mut file, mut layer, mut speedup, mut json) = (None, None, None, false);
    let (mut fold_bn, mut layout) = (false, None);
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--json" => json = true,
            "--fold-bn" => fold_bn = true,
            "--layout" => {
                layout = Some(it.next().ok_or_else(|| usage("--layout needs oihw or hwio"))?.clone())
            }
            "--layer" => layer = Some(it.next().ok_or_else(|| usage("--layer needs a name"))?.clone()),
            "--speedup" => {
                let v = it.next().ok_or_else(|| usage("--speedup needs a value"))?;
                let x: f64 = v.parse().map_err(|_| usage(&format!("--speedup '{v}' is not a number")))?;
                if !(x.is_finite() && x > 0.0) {
                    return Err(usage("--speedup must be a positive number"));
                }
                speedup = Some(x);
            }
            s if s.starts_with("--") => return Err(usage(&format!("unknown option {s}"))),
            s if file.is_none() => file = Some(s.to_string()),
            s => return Err(usage(&format!("unexpected argument '{s}'"))),
        }
    }
    Ok(CompareArgs {
        file: file.ok_or_else(|| usage("compare needs a FILE"))?,
        layer,
        fold_bn,
        layout,
        speedup: speedup.ok_or_else(|| usage("compare needs --speedup X"))?,
        json,
    })
}

/// The budget in MACs per output pixel: regular MACs / X, rounded down.
pub fn budget(d: Dims, speedup: f64) -> u64 {
    (d.regular_macs() as f64 / speedup).floor() as u64
}

/// Runs `compare` on a loaded kernel and returns the text to print (arguments already parsed).
pub fn run_compare_kernel(a: &CompareArgs, kernel: &Kernel) -> Result<String> {
    let d = Dims::of(kernel);
    let b = budget(d, a.speedup);
    let rows = compare(kernel, b, &CompareOptions::default())?;
    if a.json {
        return serde_json::to_string_pretty(&rows).map_err(|e| Error::Param(format!("JSON: {e}")));
    }
    Ok(render(a, d, b, &rows))
}

/// Runs `compare` on the bytes of a single-kernel OIHW `.npy` file (model files and `--layer`
/// go through `ndlab compare`, which loads them with `formats::load_layer`).
pub fn run_compare(args: &[String], bytes: &[u8]) -> Result<String> {
    let a = parse_compare(args)?;
    if let Some(name) = &a.layer {
        return Err(Error::Param(format!("--layer {name}: {} is read as a single-kernel .npy file", a.file)));
    }
    let kernel = read_npy(bytes)
        .and_then(|x| x.into_kernel())
        .map_err(|e| Error::Format(format!("{}: {e}", a.file)))?;
    run_compare_kernel(&a, &kernel)
}

/// The comparison as a text table.
pub fn render(a: &CompareArgs, d: Dims, budget: u64, rows: &[ComparisonRow]) -> String {
    let mut s = format!(
        "{}{}: {}×{}×{}×{}, regular {} MACs/pixel, budget {} (speed-up {})\n",
        a.file,
        a.layer.as_ref().map(|l| format!(" [{l}]")).unwrap_or_default(),
        d.n,
        d.c,
        d.kh,
        d.kw,
        d.regular_macs(),
        budget,
        a.speedup
    );
    s.push_str(&format!(
        "{:<13} {:>12} {:>10} {:>10} {:>9}\n",
        "method", "rank", "MACs", "params", "rel err"
    ));
    for r in rows {
        s.push_str(&format!(
            "{:<13} {:>12} {:>10} {:>10} {:>9.5}\n",
            r.method,
            r.rank.to_string(),
            r.macs,
            r.params,
            r.rel_weight_error
        ));
    }
    s
}
