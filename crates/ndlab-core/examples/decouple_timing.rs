//! Native timing of `Decomposition::new` on the 256 layer and a 512→512 3×3 Gaussian kernel,
//! next to the per-slice checked SVD loop it replaced (`svd::svd_with` on every slice), with the
//! routes taken, in thread CPU time. Not a test (no assertions); figures go to BENCHMARKS.md.
//!   cargo run --release --example decouple_timing [-- REPEAT]

use ndlab_core::decouple::{slice_matrix, slice_shape, Decomposition};
use ndlab_core::{svd, Kernel, Order};
use std::time::Instant;

/// Standard normal values from a fixed-seed LCG and Box–Muller (as `benches/core.rs`).
fn gaussian(len: usize, seed: u64) -> Vec<f32> {
    let mut s = seed;
    let mut uniform = move || {
        s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        ((s >> 11) as f64 + 0.5) / (1u64 << 53) as f64
    };
    (0..len)
        .map(|_| {
            let (u1, u2) = (uniform(), uniform());
            ((-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()) as f32
        })
        .collect()
}

/// This thread's CPU time in ns (Linux), if readable: robust to other load on the machine.
fn thread_cpu_ns() -> Option<u64> {
    let s = std::fs::read_to_string("/proc/thread-self/schedstat").ok()?;
    s.split_whitespace().next()?.parse().ok()
}

/// Median and minimum of `repeat` runs of `f`, in ms (thread CPU time where available, else wall).
fn time(repeat: usize, mut f: impl FnMut()) -> (f64, f64) {
    let mut ts: Vec<f64> = (0..repeat)
        .map(|_| {
            let (t0, c0) = (Instant::now(), thread_cpu_ns());
            f();
            match (thread_cpu_ns(), c0) {
                (Some(c1), Some(c0)) => (c1 - c0) as f64 / 1e6,
                _ => t0.elapsed().as_secs_f64() * 1e3,
            }
        })
        .collect();
    ts.sort_by(f64::total_cmp);
    (ts[ts.len() / 2], ts[0])
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let repeat: usize = std::env::args().nth(1).map_or(Ok(9), |a| a.parse())?;
    let bytes = std::fs::read("assets/layers/craft_vgg16bn_conv3_2_256x256x3x3.npy")?;
    let k256 = ndlab_io::npy::read_npy(&bytes)?.into_kernel()?;
    let scale = (2.0 / (512.0 * 9.0)) as f32;
    let k512 =
        Kernel::new(512, 512, 3, 3, gaussian(512 * 512 * 9, 1).iter().map(|v| v * scale.sqrt()).collect())?;
    for (label, k) in [("256", &k256), ("512", &k512)] {
        for order in [Order::DwPw, Order::PwDw] {
            let (_, routes) = Decomposition::new_counting(k, 1, order)?;
            let (med, min) = time(repeat, || {
                let _ = std::hint::black_box(Decomposition::new(k, 1, order));
            });
            let (count, rows, cols) = slice_shape(k, 1, order)?;
            let mats: Vec<Vec<f64>> =
                (0..count).map(|s| slice_matrix(k, 1, order, s)).collect::<Result<_, _>>()?;
            let old_repeat = if std::env::var_os("NEW_ONLY").is_some() { 1 } else { repeat.min(5) };
            let (omed, omin) = time(old_repeat, || {
                let mut ws = svd::Workspace::default();
                for m in &mats {
                    let _ = std::hint::black_box(svd::svd_with(&mut ws, m, rows, cols));
                }
            });
            println!(
                "{label} {}: new {med:.1} ms (min {min:.1}), fast {} / checked {} slices; \
                 per-slice svd_with loop {omed:.1} ms (min {omin:.1})",
                order.as_str(),
                routes.fast,
                routes.checked
            );
        }
    }
    Ok(())
}
