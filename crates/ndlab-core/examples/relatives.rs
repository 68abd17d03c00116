//! Prints the related decompositions' numbers as JSON, for the TensorLy oracle
//! (`tests/tensorly_check.py`) and for RELATIVES.md.
//!
//! * `cargo run --release --example relatives -- errors FILE.npy R_CP R3 R4 RESTARTS`:
//!   `{"cp": e, "cp_mobilenet": e, "tucker2": e, "tucker2_hosvd": e, …}` (CP at rank R_CP, best of
//!   RESTARTS, plain ALS), the same with extrapolated sweeps (`cp_accel`, `cp_mobilenet_accel`, as the
//!   page runs them) and their factors (`*_accel_factors`), for an independent check of their errors.
//! * `cargo run --release --example relatives -- figures`: the equal-cost table on the built-in real
//!   layers at ND DW→PW T = 1, 2, 3 budgets, and CP-ALS / HOOI timings on the 256 layer.
//! * `cargo run --release --example relatives -- table [SPEEDUP] [DIR] [--json]`: the page's rows
//!   (session, default sweep caps, no input, no Pareto sweep) on all eight built-in layers at the
//!   speed-up (default 4): method, rank, weight error, sweeps, stop note, decomposition time.
//! * `cargo run --release --example relatives -- curves FILE [SPEEDUP] [SWEEPS]`: the error after every
//!   sweep of CP, MobileNet CP and Tucker-2 at the budget's rank (default 4×, 200 sweeps, tol 0).

use ndlab_core::layer::Kernel;
use ndlab_core::layer::{ConvGeometry, ConvLayer};
use ndlab_core::relatives::session::{run, CompareEvent, CompareInput, CompareRequest};
use ndlab_core::relatives::{
    compare, no_progress, AlsOptions, CompareOptions, Cp4, CpMobile, Dims, Method, Rank, Relative, Tucker2,
    TuckerOptions,
};
use ndlab_io::npy::read_npy;
use std::time::Instant;

fn load(path: &str) -> Result<Kernel, Box<dyn std::error::Error>> {
    Ok(read_npy(&std::fs::read(path)?)?.into_kernel()?)
}

/// A matrix as nested rows (JSON).
fn rows(m: &nalgebra::DMatrix<f64>) -> Vec<Vec<f64>> {
    (0..m.nrows()).map(|i| m.row(i).iter().copied().collect()).collect()
}

fn errors(args: &[String]) -> Result<(), Box<dyn std::error::Error>> {
    let [file, rcp, r3, r4, restarts] = args else {
        return Err("usage: errors FILE R_CP R3 R4 RESTARTS".into());
    };
    let w = load(file)?;
    let (rcp, r3, r4, restarts): (usize, usize, usize, usize) =
        (rcp.parse()?, r3.parse()?, r4.parse()?, restarts.parse()?);
    // Plain ALS (the algorithm TensorLy's parafac runs) and the page's ALS (extrapolated sweeps).
    let plain = AlsOptions { max_iter: 500, tol: 1e-8, extrapolate: false, ..AlsOptions::default() };
    let accel = AlsOptions { extrapolate: true, ..plain };
    let cp = Cp4::best_of(&w, rcp, &plain, restarts, &mut no_progress())?;
    let mb = CpMobile::best_of(&w, rcp, &plain, restarts, &mut no_progress())?;
    let cpx = Cp4::best_of(&w, rcp, &accel, restarts, &mut no_progress())?;
    let mbx = CpMobile::best_of(&w, rcp, &accel, restarts, &mut no_progress())?;
    let tk = Tucker2::new(&w, r3, r4, &TuckerOptions { max_iter: 100, tol: 1e-10 }, &mut no_progress())?;
    let hosvd = Tucker2::new(&w, r3, r4, &TuckerOptions { max_iter: 0, tol: 0.0 }, &mut no_progress())?;
    let out = serde_json::json!({
        "cp": cp.rel_weight_error(),
        "cp_mobilenet": mb.rel_weight_error(),
        "cp_accel": cpx.rel_weight_error(),
        "cp_mobilenet_accel": mbx.rel_weight_error(),
        "cp_accel_sweeps": cpx.report.iterations,
        "cp_mobilenet_accel_sweeps": mbx.report.iterations,
        "cp_sweeps": cp.report.iterations,
        "cp_mobilenet_sweeps": mb.report.iterations,
        "tucker2": tk.rel_weight_error(),
        "tucker2_hosvd": hosvd.rel_weight_error(),
        "cp_accel_factors": {"a": rows(&cpx.a), "b": rows(&cpx.b), "ky": rows(&cpx.ky), "kx": rows(&cpx.kx)},
        "cp_mobilenet_accel_factors": {"a": rows(&mbx.a), "b": rows(&mbx.b), "d": rows(&mbx.d)},
    });
    println!("{out}");
    Ok(())
}

const LAYERS: [&str; 4] = [
    "craft_vgg16bn_conv1_2_64x64x3x3.npy",
    "craft_vgg16bn_conv2_2_128x128x3x3.npy",
    "craft_vgg16bn_conv3_2_256x256x3x3.npy",
    "dlib_resnet_conv256_1_conv1_256x256x3x3.npy",
];

fn figures(dir: &str) -> Result<(), Box<dyn std::error::Error>> {
    println!("| layer | ND T (speed-up) | budget MACs/px | nd-dw-pw | nd-pw-dw | channel | spatial | cp | cp-mobilenet | tucker2 |");
    println!("|---|---|---|---|---|---|---|---|---|---|");
    for name in LAYERS {
        let w = load(&format!("{dir}/{name}"))?;
        let d = Dims::of(&w);
        for t in 1..=3 {
            let budget = d.macs(Method::NdDwPw, Rank::One(t));
            let rows = compare(&w, budget, &CompareOptions::default())?;
            let cells: Vec<String> =
                rows.iter().map(|r| format!("{:.4} ({})", r.rel_weight_error, r.rank)).collect();
            println!(
                "| {} | {t} ({:.2}×) | {budget} | {} |",
                name.trim_end_matches(".npy"),
                d.regular_macs() as f64 / budget as f64,
                cells.join(" | ")
            );
        }
    }
    timings(dir)
}

fn timings(dir: &str) -> Result<(), Box<dyn std::error::Error>> {
    let w = load(&format!("{dir}/{}", LAYERS[2]))?;
    let d = Dims::of(&w);
    let budget = d.macs(Method::NdDwPw, Rank::One(2));
    let rank = |m| ndlab_core::relatives::largest_rank(d, m, budget).unwrap_or(1);
    println!("\nTimings on {} at the ND T = 2 budget ({budget} MACs/px), native --release:", LAYERS[2]);
    let opts = AlsOptions::default();
    let t0 = Instant::now();
    let cp = Cp4::new(&w, rank(Method::Cp), &opts, &mut no_progress())?;
    print_run("cp", rank(Method::Cp), t0, cp.report.iterations, cp.rel_weight_error(), &cp.report.degeneracy);
    let t0 = Instant::now();
    let mb = CpMobile::new(&w, rank(Method::CpMobilenet), &opts, &mut no_progress())?;
    print_run(
        "cp-mobilenet",
        rank(Method::CpMobilenet),
        t0,
        mb.report.iterations,
        mb.rel_weight_error(),
        &mb.report.degeneracy,
    );
    let r = rank(Method::Tucker2);
    let t0 = Instant::now();
    let tk = Tucker2::new(&w, r, r, &TuckerOptions::default(), &mut no_progress())?;
    print_run("tucker2", r, t0, tk.report.iterations, tk.rel_weight_error(), &None);
    Ok(())
}

fn print_run(
    name: &str,
    r: usize,
    t0: Instant,
    iters: usize,
    err: f64,
    deg: &Option<ndlab_core::relatives::Degeneracy>,
) {
    let s = t0.elapsed().as_secs_f64();
    let deg = deg.as_ref().map_or("none".to_string(), |d| d.message.clone());
    println!(
        "- {name} R = {r}: {s:.2} s, {iters} sweeps ({:.1} ms/sweep), error {err:.4}, degeneracy: {deg}",
        1e3 * s / iters.max(1) as f64
    );
}

/// Every built-in layer (assets/layers), small to large.
const ALL_LAYERS: [&str; 8] = [
    "mtcnn_onet_conv1_32x3x3x3.npy",
    "craft_vgg16bn_conv1_1_64x3x3x3.npy",
    "craft_vgg16bn_conv1_2_64x64x3x3.npy",
    "dlib_resnet_conv64_1_conv1_64x64x3x3.npy",
    "craft_vgg16bn_conv2_2_128x128x3x3.npy",
    "dlib_resnet_conv128_1_conv1_128x128x3x3.npy",
    "craft_vgg16bn_conv3_2_256x256x3x3.npy",
    "dlib_resnet_conv256_1_conv1_256x256x3x3.npy",
];

fn clock() -> f64 {
    use std::sync::OnceLock;
    static START: OnceLock<Instant> = OnceLock::new();
    START.get_or_init(Instant::now).elapsed().as_secs_f64() * 1e3
}

fn table(args: &[String]) -> Result<(), Box<dyn std::error::Error>> {
    let json = args.iter().any(|a| a == "--json");
    let rest: Vec<&String> = args.iter().filter(|a| *a != "--json").collect();
    let speedup: f64 = rest.first().map_or(Ok(4.0), |s| s.parse())?;
    let dir = rest.get(1).map_or("assets/layers", |s| s.as_str());
    let req = CompareRequest { speedup, sweep_speedups: vec![], ..CompareRequest::default() };
    let mut out = Vec::new();
    // Today's 200-sweep rows (recorded before the speed work) at the default 4× budget.
    let base: Vec<serde_json::Value> =
        std::fs::read(concat!(env!("CARGO_MANIFEST_DIR"), "/benches/relatives_baseline_200sweeps.json"))
            .ok()
            .filter(|_| speedup == 4.0)
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or_default();
    let before = |layer: &str, method: &str| {
        base.iter().find(|v| v["layer"] == layer && v["method"] == method).and_then(|v| {
            Some((v["weight_error"].as_f64()?, v["sweeps"].as_u64()?, v["decompose_ms"].as_f64()?))
        })
    };
    if !json {
        println!("| layer | method | rank | weight error | sweeps | note | decompose ms | 200-sweep error (sweeps, ms) | change |");
        println!("|---|---|---|---|---|---|---|---|---|");
    }
    let mut total = 0.0;
    for name in ALL_LAYERS {
        let w = load(&format!("{dir}/{name}"))?;
        let layer = ConvLayer::new(w, None, ConvGeometry::new(1, 1, 1))?;
        let input = CompareInput { layer: &layer, nd: &[], activations: None, clock };
        let report = run(&input, &req, &mut |_: CompareEvent| true)?;
        for r in &report.rows {
            total += r.decompose_ms;
            let layer = name.trim_end_matches(".npy");
            if json {
                out.push(serde_json::json!({
                    "layer": layer, "method": r.method, "rank": r.rank, "weight_error": r.weight_error,
                    "sweeps": r.sweeps, "note": r.note, "decompose_ms": r.decompose_ms,
                }));
            } else {
                let (was, change) = match before(layer, &r.method) {
                    Some((e, s, ms)) => (
                        format!("{e:.6} ({s}, {ms:.0})"),
                        format!("{:+.2} %", 100.0 * (r.weight_error / e.max(f64::MIN_POSITIVE) - 1.0)),
                    ),
                    None => (String::new(), String::new()),
                };
                println!(
                    "| {layer} | {} | {} | {:.6} | {} | {} | {:.0} | {was} | {change} |",
                    r.method,
                    r.rank.map(|k| k.to_string()).unwrap_or_default(),
                    r.weight_error,
                    r.sweeps,
                    r.note,
                    r.decompose_ms
                );
            }
        }
    }
    if json {
        println!("{}", serde_json::to_string_pretty(&out)?);
    } else {
        println!("\ntotal decomposition time {:.1} s", total / 1e3);
    }
    Ok(())
}

/// CPU time of this thread, milliseconds (Linux /proc; wall-clock elsewhere).
fn cpu_ms() -> f64 {
    std::fs::read_to_string("/proc/thread-self/schedstat")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse::<f64>().ok())
        .map_or_else(clock, |ns| ns / 1e6)
}

fn curves(args: &[String]) -> Result<(), Box<dyn std::error::Error>> {
    let file = args.first().ok_or("usage: curves FILE [SPEEDUP] [SWEEPS] [METHOD]")?;
    let speedup: f64 = args.get(1).map_or(Ok(4.0), |s| s.parse())?;
    let sweeps: usize = args.get(2).map_or(Ok(200), |s| s.parse())?;
    let w = load(file)?;
    let d = Dims::of(&w);
    let budget = (d.regular_macs() as f64 / speedup).floor() as u64;
    let rank = |m| ndlab_core::relatives::largest_rank(d, m, budget).unwrap_or(1);
    let opts = AlsOptions { max_iter: sweeps, tol: 0.0, ..AlsOptions::default() };
    let only = args.get(3).map(String::as_str);
    let show = |name: &str, r: usize, t0: f64, rep: &ndlab_core::relatives::AlsReport| {
        let s: Vec<String> = rep.curve.iter().map(|e| format!("{e:.6}")).collect();
        println!(
            "{name} R={r} {:.3}s CPU {} rejected: {}",
            (cpu_ms() - t0) / 1e3,
            rep.rejected_steps,
            s.join(" ")
        );
    };
    if only.is_none_or(|m| m == "cp") {
        let t0 = cpu_ms();
        let cp = Cp4::new(&w, rank(Method::Cp), &opts, &mut no_progress())?;
        show("cp", rank(Method::Cp), t0, &cp.report);
    }
    if only.is_none_or(|m| m == "cp-mobilenet") {
        let t0 = cpu_ms();
        let mb = CpMobile::new(&w, rank(Method::CpMobilenet), &opts, &mut no_progress())?;
        show("cp-mobilenet", rank(Method::CpMobilenet), t0, &mb.report);
    }
    if only.is_none_or(|m| m == "tucker2") {
        let r = rank(Method::Tucker2).min(d.c).min(d.n);
        let t0 = cpu_ms();
        let tk = Tucker2::new(&w, r, r, &TuckerOptions { max_iter: sweeps, tol: 0.0 }, &mut no_progress())?;
        show("tucker2", r, t0, &tk.report);
    }
    Ok(())
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let res = match args.first().map(String::as_str) {
        Some("errors") => errors(&args[1..]),
        Some("figures") => figures(args.get(1).map_or("assets/layers", String::as_str)),
        Some("timings") => timings(args.get(1).map_or("assets/layers", String::as_str)),
        Some("table") => table(&args[1..]),
        Some("curves") => curves(&args[1..]),
        _ => Err("usage: relatives errors FILE R_CP R3 R4 RESTARTS | figures [DIR] | timings [DIR] | \
                  table [SPEEDUP] [DIR] [--json] | curves FILE [SPEEDUP] [SWEEPS] [METHOD]"
            .into()),
    };
    if let Err(e) = res {
        eprintln!("error: {e}");
        std::process::exit(1);
    }
}
