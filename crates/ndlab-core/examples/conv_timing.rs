//! Quick single-thread timing of the conv kernels on a 256→256 3×3 layer at 56×56
//! (not a benchmark: `cargo run --release --example conv_timing [reps] [side]`).

use ndlab_core::conv::{conv2d, decoupled_forward, depthwise, pointwise};
use ndlab_core::decouple::Merged;
use ndlab_core::{ConvGeometry, FeatureMap, Kernel, Order};
use std::time::Instant;

/// Deterministic values in [-1, 1).
fn noise(len: usize, seed: u64) -> Vec<f32> {
    let mut s = seed.wrapping_mul(6364136223846793005) | 1;
    (0..len)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            ((s >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
        })
        .collect()
}

/// This thread's CPU time in ns (Linux `/proc/thread-self/schedstat`), so a loaded machine does not
/// inflate the figures; falls back to wall time elsewhere.
fn cpu_ns() -> Option<f64> {
    let s = std::fs::read_to_string("/proc/thread-self/schedstat").ok()?;
    s.split_whitespace().next()?.parse().ok()
}

/// Best of `reps` runs, in milliseconds (CPU time where available).
fn best_ms(reps: usize, mut f: impl FnMut()) -> f64 {
    (0..reps)
        .map(|_| {
            let (t, c) = (Instant::now(), cpu_ns());
            f();
            match (c, cpu_ns()) {
                (Some(a), Some(b)) => (b - a) / 1e6,
                _ => t.elapsed().as_secs_f64() * 1e3,
            }
        })
        .fold(f64::INFINITY, f64::min)
}

fn report(name: &str, ms: f64, macs: f64) {
    println!("{name:<28} {ms:8.2} ms  {:6.2} G MACs  {:6.1} GFLOP/s", macs / 1e9, 2.0 * macs / ms / 1e6);
}

fn main() -> ndlab_core::Result<()> {
    // `conv_timing [reps] [side]`: the input is side × side (56 by default; the page's default
    // view runs conv3_2 on 40 × 40).
    let side = std::env::args().nth(2).and_then(|s| s.parse().ok()).unwrap_or(56usize);
    let (c, n, h, w, k, t) = (256usize, 256usize, side, side, 3usize, 2usize);
    let reps = std::env::args().nth(1).and_then(|s| s.parse().ok()).unwrap_or(5);
    let x = FeatureMap::new(c, h, w, noise(c * h * w, 1))?;
    let kernel = Kernel::new(n, c, k, k, noise(n * c * k * k, 2))?;
    let bias = noise(n, 3);
    let geom = ConvGeometry::new(1, 1, 1);
    let hw = (h * w) as f64;
    let ms = best_ms(reps, || drop(conv2d(&x, &kernel, Some(&bias), &geom)));
    report("conv2d 256→256 3×3", ms, (n * c * k * k) as f64 * hw);

    let (dwf, pwf) = (noise(c * t * 9, 4), noise(n * c * t, 6));
    let ms = best_ms(reps, || drop(depthwise(&x, &dwf, t, 3, 3, &geom)));
    report("depthwise 256 ×2", ms, (c * t * 9) as f64 * hw);
    let mid = FeatureMap::new(c * t, h, w, noise(c * t * h * w, 5))?;
    let ms = best_ms(reps, || drop(pointwise(&mid, &pwf, n, 1, Some(&bias))));
    report("pointwise 512→256", ms, (n * c * t) as f64 * hw);
    let ms = best_ms(reps, || {
        let _ = depthwise(&x, &dwf, t, 3, 3, &geom).and_then(|m| pointwise(&m, &pwf, n, 1, Some(&bias)));
    });
    report("DW then PW (unfused) T=2", ms, ((c * t * 9) + (c * t * n)) as f64 * hw);

    let dwpw = Merged {
        order: Order::DwPw,
        t,
        n,
        c_total: c,
        kh: k,
        kw: k,
        groups: 1,
        dw: noise(c * t * 9, 7),
        pw: noise(n * c * t, 8),
    };
    let ms = best_ms(reps, || drop(decoupled_forward(&x, &dwpw, Some(&bias), &geom)));
    report("DW→PW T=2 (fused)", ms, ((c * t * 9) + (c * t * n)) as f64 * hw);
    let pwdw = Merged { order: Order::PwDw, dw: noise(n * t * 9, 9), pw: noise(n * t * c, 10), ..dwpw };
    let ms = best_ms(reps, || drop(decoupled_forward(&x, &pwdw, Some(&bias), &geom)));
    report("PW→DW T=2", ms, ((n * t * c) + (n * t * 9)) as f64 * hw);
    Ok(())
}
