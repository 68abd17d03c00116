//! Prints the related decompositions' numbers as JSON, for the TensorLy oracle
//! (`tests/tensorly_check.py`) and for RELATIVES.md.
//!
//! * `cargo run --release --example relatives -- errors FILE.npy R_CP R3 R4 RESTARTS`:
//!   `{"cp": e, "cp_mobilenet": e, "tucker2": e, "tucker2_hosvd": e}` (CP at rank R_CP, best of RESTARTS).
//! * `cargo run --release --example relatives -- figures`: the equal-cost table on the built-in real
//!   layers at ND DW→PW T = 1, 2, 3 budgets, and CP-ALS / HOOI timings on the 256 layer.

use ndlab_core::layer::Kernel;
use ndlab_core::relatives::{
    compare, no_progress, AlsOptions, CompareOptions, Cp4, CpMobile, Dims, Method, Rank, Relative, Tucker2,
    TuckerOptions,
};
use ndlab_io::npy::read_npy;
use std::time::Instant;

fn load(path: &str) -> Result<Kernel, Box<dyn std::error::Error>> {
    Ok(read_npy(&std::fs::read(path)?)?.into_kernel()?)
}

fn errors(args: &[String]) -> Result<(), Box<dyn std::error::Error>> {
    let [file, rcp, r3, r4, restarts] = args else {
        return Err("usage: errors FILE R_CP R3 R4 RESTARTS".into());
    };
    let w = load(file)?;
    let (rcp, r3, r4, restarts): (usize, usize, usize, usize) =
        (rcp.parse()?, r3.parse()?, r4.parse()?, restarts.parse()?);
    let opts = AlsOptions { max_iter: 500, tol: 1e-8, ..AlsOptions::default() };
    let cp = Cp4::best_of(&w, rcp, &opts, restarts, &mut no_progress())?;
    let mb = CpMobile::best_of(&w, rcp, &opts, restarts, &mut no_progress())?;
    let tk = Tucker2::new(&w, r3, r4, &TuckerOptions { max_iter: 100, tol: 1e-10 }, &mut no_progress())?;
    let hosvd = Tucker2::new(&w, r3, r4, &TuckerOptions { max_iter: 0, tol: 0.0 }, &mut no_progress())?;
    println!(
        "{{\"cp\": {}, \"cp_mobilenet\": {}, \"tucker2\": {}, \"tucker2_hosvd\": {}}}",
        cp.rel_weight_error(),
        mb.rel_weight_error(),
        tk.rel_weight_error(),
        hosvd.rel_weight_error()
    );
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

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let res = match args.first().map(String::as_str) {
        Some("errors") => errors(&args[1..]),
        Some("figures") => figures(args.get(1).map_or("assets/layers", String::as_str)),
        Some("timings") => timings(args.get(1).map_or("assets/layers", String::as_str)),
        _ => Err("usage: relatives errors FILE R_CP R3 R4 RESTARTS | relatives figures [DIR]".into()),
    };
    if let Err(e) = res {
        eprintln!("error: {e}");
        std::process::exit(1);
    }
}
