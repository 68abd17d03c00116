//! The page's comparison, natively: runs the worker's engine on a built-in example with a built-in
//! image (the VGG16-BN prefix computes the layer's real input) and prints the equal-cost table with
//! weight and output errors as Markdown (README / RELATIVES.md figures).
//!
//! `cargo run --release --example relatives_page -- EXAMPLE [T] [IMAGE]`: the budget is ND DW→PW's
//! MACs at T (default 2); no Pareto sweep.
//!
//! `cargo run --release --example relatives_page -- --full [EXAMPLE] [IMAGE]`: the page's whole job as
//! it sends it (`CompareRequest::default()`: 4× budget, then the Pareto sweep), with the time at
//! which every row and every Pareto series arrived, and the CPU time of the process.
//!
//! `cargo run --release --example relatives_page -- --units [EXAMPLE]`: the same job unit by unit
//! (`session::units`, `session::run_unit`, `session::assemble`) on the layer's real input for the
//! built-in astronaut image (the precomputed activation the page uses), with every unit's
//! estimated cost, its measured CPU time, and a greedy schedule of the units over 1 and 2 workers
//! (biggest estimate first), as a host with a worker pool would run them.

use ndlab_core::relatives::session::CompareRequest;
use ndlab_core::relatives::{Dims, Method, Rank};
use ndlab_lab::engine::{DirAssets, Engine};
use ndlab_lab::examples::{self, IMAGES};
use ndlab_lab::protocol::{Request, RequestBody, ResponseBody};
use std::path::Path;

/// The repository's root (the built-in assets and images live there).
fn repo_root() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn clock() -> f64 {
    use std::sync::OnceLock;
    use std::time::Instant;
    static START: OnceLock<Instant> = OnceLock::new();
    START.get_or_init(Instant::now).elapsed().as_secs_f64() * 1e3
}

fn rgba(path: &str) -> Result<(Vec<u8>, usize, usize), Box<dyn std::error::Error>> {
    let dec = png::Decoder::new(std::io::BufReader::new(std::fs::File::open(path)?));
    let mut reader = dec.read_info()?;
    let mut buf = vec![0; reader.output_buffer_size().ok_or("png too large")?];
    let info = reader.next_frame(&mut buf)?;
    let (w, h) = (info.width as usize, info.height as usize);
    let px = &buf[..info.buffer_size()];
    let out = match info.color_type {
        png::ColorType::Rgba => px.to_vec(),
        png::ColorType::Rgb => px.chunks(3).flat_map(|c| [c[0], c[1], c[2], 255]).collect(),
        png::ColorType::Grayscale => px.iter().flat_map(|&g| [g, g, g, 255]).collect(),
        other => return Err(format!("unsupported PNG colour type {other:?}").into()),
    };
    Ok((out, w, h))
}

fn ask(e: &mut Engine, id: u64, body: RequestBody) -> Result<ResponseBody, Box<dyn std::error::Error>> {
    let repo = DirAssets(repo_root());
    match e.handle_with(&repo, Request { id, body }, &mut |_| {}).body {
        ResponseBody::Error { message } => Err(message.into()),
        b => Ok(b),
    }
}

/// CPU time of this process (user + system), seconds, from /proc (Linux), or NaN.
fn cpu_seconds() -> f64 {
    let Ok(stat) = std::fs::read_to_string("/proc/self/stat") else { return f64::NAN };
    // Fields after the command name (which is in parentheses): utime is the 14th, stime the 15th.
    let Some(rest) = stat.rsplit_once(')').map(|(_, r)| r) else { return f64::NAN };
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(f64::NAN);
    (ticks(11) + ticks(12)) / 100.0
}

/// The page's whole comparison (default request, Pareto sweep included) through the engine.
fn full(args: &[String]) -> Result<(), Box<dyn std::error::Error>> {
    let example = args.first().map_or("vgg16bn_conv3_2", String::as_str);
    let image = args.get(1).map_or("astronaut", String::as_str);
    let info = IMAGES.iter().find(|i| i.id == image).ok_or("unknown image")?;
    let mut e = Engine::new(clock);
    ask(&mut e, 1, RequestBody::LoadExample { example: example.into(), slice: None })?;
    let (px, w, h) = rgba(&repo_root().join(info.path).to_string_lossy())?;
    ask(&mut e, 2, RequestBody::LoadImage { rgba: px, width: w, height: h })?;
    let body = RequestBody::Compare(CompareRequest::default());
    for path in e.assets_needed(&body) {
        let bytes = std::fs::read(repo_root().join(&path))?;
        e.provide(&path, bytes);
    }
    let (t0, cpu0) = (clock(), cpu_seconds());
    let mut stamps: Vec<(String, f64, f64)> = Vec::new();
    let mut last_stage = String::new();
    let resp = e.handle(Request { id: 3, body }, &mut |r| match r.body {
        ResponseBody::CompareRow(row) => {
            stamps.push((format!("row {}", row.method), clock() - t0, cpu_seconds() - cpu0))
        }
        ResponseBody::Progress { stage, .. } if stage.starts_with("Pareto sweep") && stage != last_stage => {
            stamps.push((format!("start of {stage}"), clock() - t0, cpu_seconds() - cpu0));
            last_stage = stage;
        }
        _ => {}
    });
    let (wall, cpu) = (clock() - t0, cpu_seconds() - cpu0);
    let ResponseBody::Compare(r) = resp.body else {
        return Err(format!("no report: {:?}", resp.body).into());
    };
    let (oh, ow) = r.output_hw.unwrap_or((0, 0));
    println!(
        "{example} on {image} ({oh}×{ow} output), default request (speed-up {}, budget {} MACs/px), regular forward {:.1} ms",
        r.speedup,
        r.budget,
        r.regular_forward_ms.unwrap_or(f64::NAN)
    );
    println!("| method | rank | MACs/px | weight error | output error | decompose ms | forward ms | sweeps | note |");
    println!("|---|---|---|---|---|---|---|---|---|");
    for row in &r.rows {
        println!(
            "| {} | {} | {} | {:.4} | {:.4} | {:.0} | {:.1} | {} | {} |",
            row.method,
            row.rank.map(|k| k.to_string()).unwrap_or_default(),
            row.macs,
            row.weight_error,
            row.output_error.unwrap_or(f64::NAN),
            row.decompose_ms,
            row.forward_ms.unwrap_or(f64::NAN),
            row.sweeps,
            row.note
        );
    }
    println!("\nPareto series (rank: weight error):");
    for s in &r.pareto {
        let pts: Vec<String> = if s.points.len() > 12 {
            vec![format!(
                "{} points, {:.4} .. {:.4}",
                s.points.len(),
                s.points[0].error,
                s.points[s.points.len() - 1].error
            )]
        } else {
            s.points.iter().map(|p| format!("{}: {:.4}", p.rank, p.error)).collect()
        };
        println!("- {}: {}", s.method, pts.join(", "));
    }
    println!("\n| event | wall s | CPU s |");
    println!("|---|---|---|");
    for (what, t, c) in &stamps {
        println!("| {what} | {:.2} | {:.2} |", t / 1e3, c);
    }
    println!("| report | {:.2} | {:.2} |", wall / 1e3, cpu);
    Ok(())
}

/// The job unit by unit on the precomputed input of the astronaut image.
fn by_units(args: &[String]) -> Result<(), Box<dyn std::error::Error>> {
    use ndlab_core::relatives::session::{assemble, run_unit, units, CompareInput, UnitOutput};
    let example = args.first().map_or("vgg16bn_conv3_2", String::as_str);
    let ex = examples::find(example).ok_or("unknown example")?;
    let root = repo_root();
    let ndlab_lab::examples::KernelSource::Asset(asset) = ex.kernel else {
        return Err("not an asset example".into());
    };
    let layer = ex.layer(Some(&std::fs::read(root.join(asset))?))?;
    let act =
        ndlab_lab::engine::precomputed_input_asset("astronaut", example).ok_or("no precomputed input")?;
    let x = ndlab_io::npy::read_npy(&std::fs::read(root.join(act))?)?.into_feature_map()?;
    let y = ndlab_core::conv::layer_forward(&x, &layer)?;
    let input = CompareInput { layer: &layer, nd: &[], activations: Some((&x, &y)), clock };
    let req = CompareRequest::default();
    let d = Dims::of(&layer.kernel);
    let plan = units(&req, d)?;
    let mut measured = Vec::new();
    let mut outputs = Vec::new();
    println!("{example}, default request, {}×{} input", x.h, x.w);
    println!("| unit | estimated ms | measured CPU ms | result |");
    println!("|---|---|---|---|");
    for p in &plan {
        let c0 = cpu_seconds();
        let out = run_unit(&input, &req, &p.unit, &mut |_| true)?;
        let ms = (cpu_seconds() - c0) * 1e3;
        let what = match &out {
            UnitOutput::Row(r) => format!(
                "rank {}, weight error {:.4}, output error {:.4}, {} sweeps",
                r.rank.map(|k| k.to_string()).unwrap_or_default(),
                r.weight_error,
                r.output_error.unwrap_or(f64::NAN),
                r.sweeps
            ),
            UnitOutput::Series(s) => format!("{} points", s.points.len()),
        };
        println!("| {:?} {} | {:.0} | {:.0} | {what} |", p.unit.kind, p.unit.method, p.cost_ms, ms);
        measured.push((p.clone(), ms));
        outputs.push(out);
    }
    let report = assemble(d, &req, Some((y.h, y.w)), None, outputs)?;
    let rows: f64 =
        measured.iter().filter(|(p, _)| format!("{:?}", p.unit.kind) == "Row").map(|(_, m)| m).sum();
    let total: f64 = measured.iter().map(|(_, m)| m).sum();
    println!(
        "\nrows {:.2} s CPU, Pareto series {:.2} s CPU, total {:.2} s",
        rows / 1e3,
        (total - rows) / 1e3,
        total / 1e3
    );
    // Greedy schedules, each unit to the worker that frees first: biggest estimate first, or the
    // rows first (biggest first) and then the series (biggest first).
    let is_row = |p: &ndlab_core::relatives::session::UnitPlan| format!("{:?}", p.unit.kind) == "Row";
    for (workers, rows_first) in [(1usize, false), (2, false), (2, true)] {
        let mut order = measured.clone();
        order.sort_by(|a, b| {
            let phase =
                |p: &ndlab_core::relatives::session::UnitPlan| if rows_first && !is_row(p) { 1 } else { 0 };
            phase(&a.0).cmp(&phase(&b.0)).then(b.0.cost_ms.total_cmp(&a.0.cost_ms))
        });
        let mut free = vec![0.0f64; workers];
        let (mut rows_done, mut all_done) = (0.0f64, 0.0f64);
        for (p, ms) in &order {
            let w = (0..workers).min_by(|&a, &b| free[a].total_cmp(&free[b])).unwrap_or(0);
            free[w] += ms;
            all_done = all_done.max(free[w]);
            if is_row(p) {
                rows_done = rows_done.max(free[w]);
            }
        }
        println!(
            "{workers} worker(s), {}: last row after {:.2} s, everything after {:.2} s",
            if rows_first {
                "rows first, biggest estimate first in each phase"
            } else {
                "biggest estimate first"
            },
            rows_done / 1e3,
            all_done / 1e3
        );
    }
    println!("{} series assembled", report.pareto.len());
    Ok(())
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("--full") {
        return full(&args[1..]);
    }
    if args.first().map(String::as_str) == Some("--units") {
        return by_units(&args[1..]);
    }
    let example = args.first().map_or("vgg16bn_conv3_2", String::as_str);
    let t: usize = args.get(1).map_or(Ok(2), |s| s.parse())?;
    let image = args.get(2).map_or("astronaut", String::as_str);
    let info = IMAGES.iter().find(|i| i.id == image).ok_or("unknown image")?;
    let ex = examples::find(example).ok_or("unknown example")?;
    let (n, c, kh, kw) = ex.shape;
    let d = Dims { n, c, kh, kw };
    let budget = d.macs(Method::NdDwPw, Rank::One(t));
    // The largest two-decimal speed-up whose budget still holds ND DW→PW at T.
    let speedup = (d.regular_macs() as f64 / budget as f64 * 100.0).floor() / 100.0;
    let mut e = Engine::new(clock);
    ask(&mut e, 1, RequestBody::LoadExample { example: example.into(), slice: None })?;
    let (px, w, h) =
        rgba(&Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../..")).join(info.path).to_string_lossy())?;
    ask(&mut e, 2, RequestBody::LoadImage { rgba: px, width: w, height: h })?;
    let req = CompareRequest { speedup, sweep_speedups: vec![], ..CompareRequest::default() };
    let ResponseBody::Compare(r) = ask(&mut e, 3, RequestBody::Compare(req))? else {
        return Err("no report".into());
    };
    let (oh, ow) = r.output_hw.unwrap_or((0, 0));
    println!(
        "{example} on {image} ({oh}×{ow} output), ND T = {t} budget {} MACs/px (speed-up {speedup}), regular forward {:.1} ms",
        r.budget,
        r.regular_forward_ms.unwrap_or(f64::NAN)
    );
    println!(
        "| method | rank | MACs/px | weight error | output error | decompose ms | forward ms | sweeps |"
    );
    println!("|---|---|---|---|---|---|---|---|");
    for row in &r.rows {
        println!(
            "| {} | {} | {} | {:.4} | {:.4} | {:.0} | {:.1} | {} |",
            row.method,
            row.rank.map(|k| k.to_string()).unwrap_or_default(),
            row.macs,
            row.weight_error,
            row.output_error.unwrap_or(f64::NAN),
            row.decompose_ms,
            row.forward_ms.unwrap_or(f64::NAN),
            row.sweeps
        );
    }
    Ok(())
}
