//! Data-aware decoupling from the command line, for the NumPy oracle and for the figures.
//!
//! * `cargo run --release -p ndlab-core --example data_aware -- DIR`: the oracle's case
//!   (`tests/data_aware_check.py` writes DIR). Reads `case.json` (`stride`, `pad`, `dil`,
//!   `groups`, `ts`, `ridge`, `refit_ridge`, `images`), `kernel.npy`, `bias.npy`, and per image i
//!   `x{i}.npy` (the original network's activations) and `xd{i}.npy` (the decoupled network's).
//!   Statistics of the x's drive the data-aware decoupling; the refit pairs each `xd{i}` with
//!   the original layer's output on `x{i}`. Writes, for `o` in `dwpw`, `pwdw` and T in `ts`:
//!   `aware_o_T.npy` (W_T, f32), `refit_o_T.npy` (refit W_T, f32), `dw_o_T.npy`, `pw0_o_T.npy`,
//!   `pwfit_o_T.npy` (f64 factors: slices × T × K², slices × T × rows), and `expected_o.npy`
//!   (f64 rows per T: expected error ratio data-free, data-aware, residual before and after the refit).
//! * `... -- vgg layers SIDE [REFIT_RIDGE]`: figures on the VGG16-BN prefix (assets/models) with
//!   the built-in images at most SIDE pixels: per layer, relative output errors of data-free,
//!   data-aware and refit decouplings (calibration: three images; held out: the fourth).
//! * `... -- vgg chain SIDE T [REFIT_RIDGE...]`: the whole prefix decoupled layer by layer
//!   (DW→PW at T), data-free, data-aware, and data-aware with each layer refit on the decoupled
//!   prefix's activations (one run per ridge).

use ndlab_core::conv::{conv2d, decoupled_forward, reference_conv2d};
use ndlab_core::decouple::data_aware::{
    self, expected_error, expected_residual, AwareOptions, KronFactor, PatchStats, RefitOptions, StatsOptions,
};
use ndlab_core::decouple::{Decomposition, Slice};
use ndlab_core::{ConvGeometry, FeatureMap, Kernel, Order, Padding};
use ndlab_io::npy::{read_npy, write_npy_f32};
use std::path::Path;
use std::time::Instant;

type Res<T> = std::result::Result<T, Box<dyn std::error::Error>>;

fn main() -> Res<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("vgg") => vgg(&args[1..]),
        Some(dir) => oracle(Path::new(dir)),
        None => Err("usage: data_aware DIR | data_aware vgg layers|chain ...".into()),
    }
}

/// A little-endian f64 C-order `.npy`.
fn npy_f64(shape: &[usize], data: &[f64]) -> Vec<u8> {
    let dims = shape.iter().map(|d| d.to_string()).collect::<Vec<_>>().join(", ");
    let dims = if shape.len() == 1 { format!("({dims},)") } else { format!("({dims})") };
    let mut header = format!("{{'descr': '<f8', 'fortran_order': False, 'shape': {dims}, }}");
    header.push_str(&" ".repeat((64 - (10 + header.len() + 1) % 64) % 64));
    header.push('\n');
    let mut out = b"\x93NUMPY\x01\x00".to_vec();
    out.extend_from_slice(&(header.len() as u16).to_le_bytes());
    out.extend_from_slice(header.as_bytes());
    data.iter().for_each(|v| out.extend_from_slice(&v.to_le_bytes()));
    out
}

fn load(path: &Path) -> Res<ndlab_io::npy::NpyArray> {
    let bytes = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
    Ok(read_npy(&bytes)?)
}

fn oracle(dir: &Path) -> Res<()> {
    let case: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(dir.join("case.json"))?)?;
    let get = |k: &str| case[k].as_u64().map(|v| v as usize).ok_or(format!("case.json: no integer '{k}'"));
    let (s, p, d, groups, images) =
        (get("stride")?, get("pad")?, get("dil")?, get("groups")?, get("images")?);
    let ts: Vec<usize> = case["ts"]
        .as_array()
        .ok_or("case.json: no 'ts'")?
        .iter()
        .filter_map(|v| v.as_u64())
        .map(|v| v as usize)
        .collect();
    let ridge = case["ridge"].as_f64().ok_or("case.json: no 'ridge'")?;
    let refit_ridge = case["refit_ridge"].as_f64().ok_or("case.json: no 'refit_ridge'")?;
    let geom = ConvGeometry { stride: (s, s), padding: Padding::uniform(p), dilation: (d, d), groups };
    let kernel = load(&dir.join("kernel.npy"))?.into_kernel()?;
    let bias = load(&dir.join("bias.npy"))?.into_vector()?;
    let mut stats = PatchStats::new(&kernel, geom, StatsOptions::default())?;
    let mut pairs =
        PatchStats::new(&kernel, geom, StatsOptions { targets: true, ..StatsOptions::default() })?;
    for i in 0..images {
        let x = load(&dir.join(format!("x{i}.npy")))?.into_feature_map()?;
        let xd = load(&dir.join(format!("xd{i}.npy")))?.into_feature_map()?;
        stats.add(&x)?;
        pairs.add_pair(&xd, &reference_conv2d(&x, &kernel, Some(&bias), &geom)?, Some(&bias))?;
    }
    let opts = AwareOptions { ridge, ..AwareOptions::default() };
    for (order, tag) in [(Order::DwPw, "dwpw"), (Order::PwDw, "pwdw")] {
        let free = Decomposition::new(&kernel, groups, order)?;
        let aware = data_aware::decouple(&kernel, order, &stats, &opts)?;
        let mut expected = Vec::new();
        for &t in &ts {
            let wt = aware.reconstruct(t)?;
            let fit = data_aware::refit(&aware, t, &pairs, &RefitOptions { ridge: refit_ridge })?;
            let cut = data_aware::truncate(&aware, t)?;
            let shape = |k: &Kernel| [k.n, k.c, k.kh, k.kw];
            std::fs::write(dir.join(format!("aware_{tag}_{t}.npy")), write_npy_f32(&shape(&wt), &wt.data))?;
            let wf = fit.reconstruct(t)?;
            std::fs::write(dir.join(format!("refit_{tag}_{t}.npy")), write_npy_f32(&shape(&wf), &wf.data))?;
            let factors = |d: &Decomposition, f: fn(&Slice) -> &[f64], inner: usize| -> Vec<u8> {
                let data: Vec<f64> = d.slices.iter().flat_map(|s| f(s).iter().copied()).collect();
                npy_f64(&[d.slices.len(), t, inner], &data)
            };
            let (k2, rows) =
                (kernel.kh * kernel.kw, if order == Order::DwPw { kernel.n / groups } else { kernel.c });
            std::fs::write(dir.join(format!("dw_{tag}_{t}.npy")), factors(&cut, |s| &s.dw, k2))?;
            std::fs::write(dir.join(format!("pw0_{tag}_{t}.npy")), factors(&cut, |s| &s.pw, rows))?;
            std::fs::write(dir.join(format!("pwfit_{tag}_{t}.npy")), factors(&fit, |s| &s.pw, rows))?;
            expected.extend([
                expected_error(&stats, &kernel, &free.reconstruct(t)?)?.ratio(),
                expected_error(&stats, &kernel, &wt)?.ratio(),
                expected_residual(&pairs, &wt)?,
                expected_residual(&pairs, &wf)?,
            ]);
        }
        std::fs::write(dir.join(format!("expected_{tag}.npy")), npy_f64(&[ts.len(), 4], &expected))?;
    }
    println!("wrote {} orders × {} T to {}", 2, ts.len(), dir.display());
    Ok(())
}

// ---------------------------------------------------------------- VGG figures

use ndlab_io::picture::rgba_from_png;
use ndlab_io::vgg::{
    image_to_map, max_pool2x2, relu_inplace, vgg_geometry, Normalisation, VggLayer, VggPrefix,
};

const ROOT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../..");
const IMAGES: [&str; 4] = ["astronaut_256.png", "chelsea.png", "coffee_384x256.png", "camera.png"];

/// The decoupled layer `d` at `t` run on the calibration (first three) and held-out maps:
/// relative output errors against `ys`, bias excluded.
fn measure(xs: &[FeatureMap], ys: &[FeatureMap], b: &[f32], d: &Decomposition, t: usize) -> Res<(f64, f64)> {
    let merged = d.merged(t)?;
    let yh: Vec<FeatureMap> = xs
        .iter()
        .map(|x| decoupled_forward(x, &merged, Some(b), &vgg_geometry()))
        .collect::<Result<_, _>>()?;
    // The bias cancels in the difference; the reference is the bias-free output.
    let bias_free = |m: &[FeatureMap]| -> Vec<FeatureMap> {
        m.iter()
            .map(|f| {
                let mut g = f.clone();
                g.data
                    .chunks_exact_mut(f.h * f.w)
                    .zip(b)
                    .for_each(|(p, &v)| p.iter_mut().for_each(|o| *o -= v));
                g
            })
            .collect()
    };
    let (yb, yhb) = (bias_free(ys), bias_free(&yh));
    Ok((rel_maps(&yhb[..3], &yb[..3]), rel_maps(&yhb[3..], &yb[3..])))
}

/// Σ‖a − b‖² / Σ‖b‖² over pairs of maps, as a relative error (sqrt).
fn rel_maps(a: &[FeatureMap], b: &[FeatureMap]) -> f64 {
    let (mut num, mut den) = (0.0, 0.0);
    for (x, y) in a.iter().zip(b) {
        for (&u, &v) in x.data.iter().zip(&y.data) {
            num += (u as f64 - v as f64).powi(2);
            den += (v as f64).powi(2);
        }
    }
    (num / den).sqrt()
}

fn vgg(args: &[String]) -> Res<()> {
    let usage =
        "usage: data_aware vgg layers SIDE [REFIT_RIDGE] | data_aware vgg chain SIDE T [REFIT_RIDGE...]";
    let side: usize = args.get(1).ok_or(usage)?.parse()?;
    let prefix = VggPrefix::from_safetensors(&std::fs::read(format!(
        "{ROOT}/assets/models/vgg16bn_craft_conv1_1-conv3_3.safetensors"
    ))?)?;
    let mut inputs = Vec::new();
    for name in IMAGES {
        let img = rgba_from_png(&std::fs::read(format!("{ROOT}/assets/images/{name}"))?, side)?;
        inputs.push(image_to_map(&img.rgba, img.width, img.height, side, Normalisation::ImageNet)?);
    }
    println!("VGG16-BN prefix, images ≤ {side} px; calibration {:?}, held out {}", &IMAGES[..3], IMAGES[3]);
    match args.first().map(String::as_str) {
        Some("layers") => {
            let ridge = args.get(2).map_or(Ok(RefitOptions::default().ridge), |s| s.parse())?;
            layers(&prefix, &inputs, ridge)
        }
        Some("chain") => {
            let t: usize = args.get(2).ok_or(usage)?.parse()?;
            let ridges: Vec<f64> = args[3..].iter().map(|s| s.parse()).collect::<Result<_, _>>()?;
            chain(&prefix, &inputs, t, &ridges)
        }
        _ => Err(usage.into()),
    }
}

/// Per layer, each on the original network's activations (x_dec = x: the refit only re-solves
/// the pointwise weights for the data-aware depthwise filters).
fn layers(prefix: &VggPrefix, inputs: &[FeatureMap], ridge: f64) -> Res<()> {
    let geom = vgg_geometry();
    println!("relative output error (bias-free, sqrt of energy ratio): calib / held-out");
    println!("refit ridge {ridge:e}");
    for layer in [VggLayer::Conv1_2, VggLayer::Conv2_1, VggLayer::Conv2_2, VggLayer::Conv3_2] {
        let conv = prefix.conv(layer)?;
        let (w, b) = (&conv.folded_kernel, &conv.folded_bias);
        let xs: Vec<FeatureMap> =
            inputs.iter().map(|x| prefix.input_of(x, layer)).collect::<Result<_, _>>()?;
        let ys: Vec<FeatureMap> =
            xs.iter().map(|x| conv2d(x, w, Some(b), &geom)).collect::<Result<_, _>>()?;
        let clock = Instant::now();
        let mut stats = PatchStats::new(w, geom, StatsOptions { targets: true, ..StatsOptions::default() })?;
        for (x, y) in xs.iter().zip(&ys).take(3) {
            stats.add_pair(x, y, Some(b))?;
        }
        let t_stats = clock.elapsed().as_secs_f64();
        println!(
            "\n{} {}×{}×3×3, input {}×{} (statistics {t_stats:.1} s)",
            layer.name(),
            w.n,
            w.c,
            xs[0].h,
            xs[0].w
        );
        for order in [Order::DwPw, Order::PwDw] {
            let clock = Instant::now();
            let free = Decomposition::new(w, 1, order)?;
            let aware = data_aware::decouple(w, order, &stats, &AwareOptions::default())?;
            let t_dec = clock.elapsed().as_secs_f64();
            println!("  {} (data-aware decoupling {t_dec:.2} s)", order.label());
            println!("    T   data-free        data-aware       refit            (expected, calib)");
            for t in 1..=4 {
                let clock = Instant::now();
                let fit = data_aware::refit(&aware, t, &stats, &RefitOptions { ridge })?;
                let t_fit = clock.elapsed().as_secs_f64();
                let mut cells = Vec::new();
                let mut expect = Vec::new();
                for d in [&free, &aware, &fit] {
                    let (calib, held) = measure(&xs, &ys, b, d, t)?;
                    cells.push(format!("{calib:.4} / {held:.4}"));
                    expect.push(format!("{:.4}", expected_error(&stats, w, &d.reconstruct(t)?)?.relative()));
                }
                println!("    {t}   {}   ({}; refit {t_fit:.2} s)", cells.join("  "), expect.join(", "));
            }
            if order == Order::PwDw {
                let vlp = AwareOptions { kron: KronFactor::Nearest, ..AwareOptions::default() };
                let near = data_aware::decouple(w, order, &stats, &vlp)?;
                let cells: Vec<String> = (1..=4)
                    .map(|t| measure(&xs, &ys, b, &near, t).map(|(c, h)| format!("{c:.4} / {h:.4}")))
                    .collect::<Res<_>>()?;
                println!("    Van Loan–Pitsianis factors instead, T = 1..4: {}", cells.join(", "));
            }
        }
    }
    Ok(())
}

/// The whole prefix decoupled layer by layer (DW→PW at T; conv1_1, with 3 input channels, left
/// alone), each layer's data-aware statistics from the original network (computed once), and for
/// each refit ridge a refit of every layer on the decoupled prefix's own activations.
fn chain(prefix: &VggPrefix, inputs: &[FeatureMap], t: usize, ridges: &[f64]) -> Res<()> {
    let geom = vgg_geometry();
    let post = |layer: VggLayer, mut m: Vec<FeatureMap>| -> Res<Vec<FeatureMap>> {
        m.iter_mut().for_each(relu_inplace);
        if layer.pool_after() {
            m = m.iter().map(max_pool2x2).collect::<Result<_, _>>()?;
        }
        Ok(m)
    };
    // The original network: every layer's output (the refit's targets) and input statistics.
    let clock = Instant::now();
    let (mut xo, mut targets, mut stats) = (inputs.to_vec(), Vec::new(), Vec::new());
    for conv in &prefix.convs {
        let (w, b) = (&conv.folded_kernel, &conv.folded_bias);
        let mut s = PatchStats::new(w, geom, StatsOptions::default())?;
        if conv.layer != VggLayer::Conv1_1 {
            xo.iter().take(3).try_for_each(|x| s.add(x))?;
        }
        let yo: Vec<FeatureMap> =
            xo.iter().map(|x| conv2d(x, w, Some(b), &geom)).collect::<Result<_, _>>()?;
        stats.push(s);
        targets.push(yo.clone());
        xo = post(conv.layer, yo)?;
    }
    println!(
        "\nwhole prefix, conv1_2 … conv3_3 decoupled DW→PW at T = {t}: relative error of the conv3_3 activations \
         (after ReLU), calib / held-out (original statistics {:.0} s)",
        clock.elapsed().as_secs_f64()
    );
    let mut variants: Vec<(String, Option<f64>, bool)> =
        vec![("data-free".into(), None, false), ("data-aware".into(), None, true)];
    variants.extend(ridges.iter().map(|&r| (format!("data-aware + refit (ridge {r:e})"), Some(r), true)));
    for (name, ridge, aware) in variants {
        let clock = Instant::now();
        let mut xd = inputs.to_vec();
        for (i, conv) in prefix.convs.iter().enumerate() {
            let (w, b) = (&conv.folded_kernel, &conv.folded_bias);
            let yd: Vec<FeatureMap> = if conv.layer == VggLayer::Conv1_1 {
                xd.iter().map(|x| conv2d(x, w, Some(b), &geom)).collect::<Result<_, _>>()?
            } else {
                let mut d = if aware {
                    data_aware::decouple(w, Order::DwPw, &stats[i], &AwareOptions::default())?
                } else {
                    Decomposition::new(w, 1, Order::DwPw)?
                };
                if let Some(ridge) = ridge {
                    let mut s =
                        PatchStats::new(w, geom, StatsOptions { targets: true, ..StatsOptions::default() })?;
                    for (x, y) in xd.iter().zip(&targets[i]).take(3) {
                        s.add_pair(x, y, Some(b))?;
                    }
                    d = data_aware::refit(&d, t, &s, &RefitOptions { ridge })?;
                }
                let merged = d.merged(t)?;
                xd.iter().map(|x| decoupled_forward(x, &merged, Some(b), &geom)).collect::<Result<_, _>>()?
            };
            xd = post(conv.layer, yd)?;
        }
        println!(
            "  {name:34} {:.4} / {:.4}   ({:.0} s)",
            rel_maps(&xd[..3], &xo[..3]),
            rel_maps(&xd[3..], &xo[3..]),
            clock.elapsed().as_secs_f64()
        );
    }
    Ok(())
}
