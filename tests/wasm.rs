//! The core and the worker's engine compiled to wasm and run in headless Chromium
//! (`wasm-bindgen-test-runner` + chromedriver; see scripts/test-all.sh): METHOD.md's identities
//! must hold in the browser build too.
#![cfg(target_arch = "wasm32")]

use ndlab::conv::{conv2d, decoupled_forward};
use ndlab::decouple::Decomposition;
use ndlab::engine::Engine;
use ndlab::protocol::{Request, RequestBody, ResponseBody};
use ndlab::{ConvGeometry, FeatureMap, Kernel, Order};
use wasm_bindgen_test::*;

wasm_bindgen_test_configure!(run_in_browser);

/// Deterministic values in [-1, 1) (a small LCG; no RNG crate needed).
fn values(n: usize, seed: u64) -> Vec<f32> {
    let mut s = seed;
    (0..n)
        .map(|_| {
            s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            ((s >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
        })
        .collect()
}

fn norm(v: &[f32]) -> f64 {
    v.iter().map(|&x| (x as f64) * (x as f64)).sum::<f64>().sqrt()
}

#[wasm_bindgen_test]
fn method_identities_hold_in_the_browser() {
    // N = 6 < K² = 9 and C = 4 < K²: both orderings have a full rank below K².
    let kernel = Kernel::new(6, 4, 3, 3, values(6 * 4 * 9, 7)).expect("kernel");
    let x = FeatureMap::new(4, 7, 6, values(4 * 7 * 6, 11)).expect("input");
    let geom = ConvGeometry::new(1, 1, 1);
    let bias = [0.5f32, -0.25, 0.0, 1.0, 2.0, -1.0];
    let full = conv2d(&x, &kernel, Some(&bias), &geom).expect("conv");
    for order in [Order::DwPw, Order::PwDw] {
        let d = Decomposition::new(&kernel, 1, order).expect("decouple");
        let errors = d.rel_weight_error();
        for t in 1..=d.full_rank {
            // Check 3: the weight error is the σ-tail formula, i.e. ‖W − W_T‖ / ‖W‖.
            let wt = d.reconstruct(t).expect("reconstruct");
            let diff: Vec<f32> = kernel.data.iter().zip(&wt.data).map(|(a, b)| a - b).collect();
            let direct = norm(&diff) / norm(&kernel.data);
            assert!((direct - errors[t - 1]).abs() < 1e-5, "{order:?} T={t}: {direct} vs {}", errors[t - 1]);
            // Check 1: the decoupled forward equals conv(x, W_T) + b.
            let y =
                decoupled_forward(&x, &d.merged(t).expect("merged"), Some(&bias), &geom).expect("forward");
            let want = conv2d(&x, &wt, Some(&bias), &geom).expect("conv W_T");
            assert!(y.rel_error(&want).expect("compare") < 1e-4, "{order:?} T={t}");
        }
        // Check 2: exact at full rank.
        let y = decoupled_forward(&x, &d.merged(d.full_rank).expect("merged"), Some(&bias), &geom)
            .expect("forward");
        assert!(y.rel_error(&full).expect("compare") < 1e-4);
        assert!(errors[d.full_rank - 1] < 1e-6);
    }
}

/// A little-endian f32 `.npy` file.
fn npy(shape: &[usize], data: &[f32]) -> Vec<u8> {
    let dims: Vec<String> = shape.iter().map(|d| d.to_string()).collect();
    let mut header = format!("{{'descr': '<f4', 'fortran_order': False, 'shape': ({}), }}", dims.join(", "));
    while (10 + header.len() + 1) % 64 != 0 {
        header.push(' ');
    }
    header.push('\n');
    let mut out = b"\x93NUMPY\x01\x00".to_vec();
    out.extend((header.len() as u16).to_le_bytes());
    out.extend(header.as_bytes());
    for v in data {
        out.extend(v.to_le_bytes());
    }
    out
}

#[wasm_bindgen_test]
fn the_engine_answers_in_the_browser() {
    let mut engine = Engine::new(|| 0.0);
    let body = RequestBody::LoadExample { example: "mtcnn_onet_conv1".into(), slice: None };
    let kernel = values(32 * 3 * 9, 3);
    for path in engine.assets_needed(&body) {
        engine.provide(&path, npy(&[32, 3, 3, 3], &kernel));
    }
    let resp = engine.handle(Request { id: 1, body }, &mut |_| {});
    let ResponseBody::Layer(summary) = resp.body else { panic!("{:?}", resp.body) };
    assert_eq!(summary.order(Order::PwDw).map(|o| o.spectra.full_rank), Some(3));
    let rgba: Vec<u8> = (0..16 * 12 * 4).map(|i| (i * 37 % 256) as u8).collect();
    let resp = engine
        .handle(Request { id: 2, body: RequestBody::LoadImage { rgba, width: 16, height: 12 } }, &mut |_| {});
    assert!(matches!(resp.body, ResponseBody::Input(_)), "{:?}", resp.body);
    let resp = engine.handle(
        Request { id: 3, body: RequestBody::Forward { t: 3, order: Order::PwDw, out_channel: 31 } },
        &mut |_| {},
    );
    let ResponseBody::Forward(f) = resp.body else { panic!("{:?}", resp.body) };
    assert!(f.rel_error < 1e-4, "full rank is exact: {}", f.rel_error);
    assert_eq!((f.h, f.w), (10, 14), "O-Net conv1 has no padding");
}
