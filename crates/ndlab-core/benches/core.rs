//! Core benchmarks (criterion, native only): decoupling a 512→512 3×3 layer, and the regular,
//! DW→PW and PW→DW forwards of a 256→256 3×3 layer at T = 2 on a 56×56 input.
//! Throughput is reported in FLOPs (2 per multiply-accumulate of the cost model), so criterion's
//! "elem/s" reads as FLOP/s. Peers: `bench/peers.py`; figures: `BENCHMARKS.md`.

#[cfg(not(target_arch = "wasm32"))]
mod native {
    use criterion::{criterion_group, BenchmarkId, Criterion, Throughput};
    use ndlab_core::conv::{conv2d, decoupled_forward};
    use ndlab_core::cost::CostModel;
    use ndlab_core::decouple::Decomposition;
    use ndlab_core::{ConvGeometry, FeatureMap, Kernel, Order};
    use std::hint::black_box;
    use std::time::Duration;

    /// Standard normal values from a fixed-seed LCG and Box–Muller (no extra dependency).
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

    fn kernel(n: usize, c: usize, seed: u64) -> Kernel {
        let scale = (2.0 / (c * 9) as f32).sqrt();
        let data = gaussian(n * c * 9, seed).into_iter().map(|v| v * scale).collect();
        Kernel::new(n, c, 3, 3, data).expect("valid kernel")
    }

    fn decouple(cr: &mut Criterion) {
        let k = kernel(512, 512, 1);
        let mut g = cr.benchmark_group("decouple_512x512x3x3");
        g.sample_size(10).measurement_time(Duration::from_secs(8));
        for order in [Order::DwPw, Order::PwDw] {
            g.bench_function(BenchmarkId::from_parameter(order.as_str()), |b| {
                b.iter(|| Decomposition::new(black_box(&k), 1, order).expect("decouples"))
            });
        }
        g.finish();
    }

    fn forward(cr: &mut Criterion) {
        let (c, h, w, t) = (256, 56, 56, 2);
        let k = kernel(256, c, 2);
        let x = FeatureMap::new(c, h, w, gaussian(c * h * w, 3)).expect("valid input");
        let bias = gaussian(256, 4);
        let geom = ConvGeometry::new(1, 1, 1);
        let model = CostModel::new(256, c, 3, 3, h, w, &geom).expect("valid geometry");
        let mut g = cr.benchmark_group("forward_256x256x3x3_56x56");
        g.sample_size(10).measurement_time(Duration::from_secs(5));
        g.throughput(Throughput::Elements(2 * model.regular_macs()));
        g.bench_function("regular", |b| {
            b.iter(|| conv2d(black_box(&x), &k, Some(&bias), &geom).expect("conv runs"))
        });
        for order in [Order::DwPw, Order::PwDw] {
            let merged = Decomposition::new(&k, 1, order).and_then(|d| d.merged(t)).expect("decouples");
            g.throughput(Throughput::Elements(2 * model.decoupled_macs(order, t)));
            g.bench_function(format!("{}_T{t}", order.as_str()), |b| {
                b.iter(|| {
                    decoupled_forward(black_box(&x), &merged, Some(&bias), &geom).expect("forward runs")
                })
            });
        }
        g.finish();
    }

    criterion_group!(benches, decouple, forward);
}

#[cfg(not(target_arch = "wasm32"))]
fn main() {
    native::benches();
    criterion::Criterion::default().configure_from_args().final_summary();
}

#[cfg(target_arch = "wasm32")]
fn main() {}
