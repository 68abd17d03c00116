//! The ndlab side of the browser benchmark (`scripts/bench-browser.sh`): compiled to wasm32 (with
//! the project's `+simd128`) and bound with wasm-bindgen (`--target web`); the page
//! `bench/web/index.html` times these calls and the same graphs in onnxruntime-web and
//! TensorFlow.js (wasm backend), and this machine's arithmetic peak ([`peak_simd128`],
//! [`peak_fma`]). Natively it only says how to run it.

#[cfg(target_arch = "wasm32")]
mod web {
    use ndlab_core::conv::{conv2d, decoupled_forward};
    use ndlab_core::decouple::{Decomposition, Merged};
    use ndlab_core::{ConvGeometry, FeatureMap, Kernel, Order};
    use ndlab_io::npy::read_npy;
    use wasm_bindgen::prelude::*;

    /// Turns a core error into a JS exception message.
    fn js(e: ndlab_core::Error) -> JsValue {
        JsValue::from_str(&e.to_string())
    }

    /// "dw-pw" / "pw-dw" → [`Order`].
    fn order(name: &str) -> Result<Order, JsValue> {
        match name {
            "dw-pw" => Ok(Order::DwPw),
            "pw-dw" => Ok(Order::PwDw),
            other => Err(JsValue::from_str(&format!("unknown order {other}"))),
        }
    }

    /// One layer and one input, held in wasm memory between timed calls.
    #[wasm_bindgen]
    pub struct Bench {
        kernel: Kernel,
        x: FeatureMap,
        geom: ConvGeometry,
        decs: Vec<Decomposition>,
        merged: Option<Merged>,
        out: Vec<f32>,
    }

    #[wasm_bindgen]
    impl Bench {
        /// A layer (OIHW `.npy`) and an input (CHW `.npy`), stride 1, padding 1.
        #[wasm_bindgen(constructor)]
        pub fn new(kernel_npy: &[u8], x_npy: &[u8]) -> Result<Bench, JsValue> {
            let kernel = read_npy(kernel_npy).and_then(|a| a.into_kernel()).map_err(js)?;
            let x = read_npy(x_npy).and_then(|a| a.into_feature_map()).map_err(js)?;
            Ok(Bench {
                kernel,
                x,
                geom: ConvGeometry::new(1, 1, 1),
                decs: Vec::new(),
                merged: None,
                out: Vec::new(),
            })
        }

        /// Decouples the layer in both orders (kept for [`Bench::prepare`]).
        pub fn decouple(&mut self) -> Result<(), JsValue> {
            self.decs = [Order::DwPw, Order::PwDw]
                .iter()
                .map(|&o| Decomposition::new(&self.kernel, 1, o))
                .collect::<ndlab_core::Result<_>>()
                .map_err(js)?;
            Ok(())
        }

        /// Truncates the decomposition of `order` to `t` terms (merged form) for [`Bench::decoupled`].
        pub fn prepare(&mut self, order_name: &str, t: usize) -> Result<(), JsValue> {
            let o = order(order_name)?;
            let d = self.decs.iter().find(|d| d.order == o).ok_or("decouple first")?;
            self.merged = Some(d.merged(t).map_err(js)?);
            Ok(())
        }

        /// The regular conv (output kept for [`Bench::output`]).
        pub fn regular(&mut self) -> Result<(), JsValue> {
            self.out = conv2d(&self.x, &self.kernel, None, &self.geom).map_err(js)?.data;
            Ok(())
        }

        /// The prepared decoupled forward (output kept for [`Bench::output`]).
        pub fn decoupled(&mut self) -> Result<(), JsValue> {
            let m = self.merged.as_ref().ok_or("prepare first")?;
            self.out = decoupled_forward(&self.x, m, None, &self.geom).map_err(js)?.data;
            Ok(())
        }

        /// The last output (N·Ho·Wo values).
        pub fn output(&self) -> Vec<f32> {
            self.out.clone()
        }
    }

    /// The GEMM kernels of this build ("wasm SIMD128" or, with `--features relaxed-simd`,
    /// "wasm SIMD128 + FMA (relaxed)").
    #[wasm_bindgen]
    pub fn kernels() -> String {
        ndlab_core::conv::kernels().to_string()
    }

    /// Independent f32x4 accumulator chains in the peak loops: enough to cover the latency of a
    /// multiply-add on the FP ports (4 cycles × 2 FMA ports), few enough to stay in V8's SIMD
    /// registers with the operands (no spills).
    const CHAINS: usize = 10;
    /// Rows of the L1-resident operand buffer of the `l1` form (CHAINS v128 per row: 3 KB).
    const ROWS: usize = 16;

    /// Multiply-adds per call of [`peak_simd128`] / [`peak_fma`] with `iters`: each iteration is
    /// one step of every chain (form 0) or `ROWS` steps (form 1), 4 lanes each.
    #[wasm_bindgen]
    pub fn peak_macs(form: u32, iters: u32) -> f64 {
        let steps = if form == 0 { 1 } else { ROWS };
        iters as f64 * (CHAINS * steps * 4) as f64
    }

    /// Operands of the `l1` form: ±1e-3 (the sums stay far from overflow and from subnormals).
    fn operands() -> Vec<std::arch::wasm32::v128> {
        use std::arch::wasm32::*;
        (0..ROWS * CHAINS)
            .map(|i| f32x4_splat(if i % 2 == 0 { 1e-3 } else { -1e-3 } * (1.0 + i as f32 / 64.0)))
            .collect()
    }

    /// The sum of every lane of every accumulator (returned, so that nothing is optimised away).
    fn lanes_sum(acc: &[std::arch::wasm32::v128]) -> f32 {
        use std::arch::wasm32::*;
        acc.iter()
            .map(|&a| {
                f32x4_extract_lane::<0>(a)
                    + f32x4_extract_lane::<1>(a)
                    + f32x4_extract_lane::<2>(a)
                    + f32x4_extract_lane::<3>(a)
            })
            .sum()
    }

    /// The peak loops of one multiply-add (`$mac(x, y, acc)` = x·y + acc) in both forms:
    /// form 0 (`registers`): `acc = mac(acc, m, c)` on every chain, one step per loop iteration
    /// (no memory traffic; each chain's step waits for its previous one); form 1 (`l1`):
    /// `acc = mac(v, m, acc)` with `v` loaded from a 3 KB buffer (the GEMM's pattern: the
    /// multiplication does not wait for the accumulator, only the add does).
    macro_rules! peak_loops {
        ($(#[$attr:meta])* [$($q:tt)*] $name:ident, $mac:expr) => {
            $(#[$attr])*
            $($q)* fn $name(form: u32, iters: u32, m: f32, c: f32) -> f32 {
                use std::arch::wasm32::*;
                let (mv, cv) = (f32x4_splat(m), f32x4_splat(c));
                let mut acc: [v128; CHAINS] = std::array::from_fn(|i| f32x4_splat(i as f32 / CHAINS as f32));
                if form == 0 {
                    for _ in 0..iters {
                        for a in acc.iter_mut() {
                            *a = $mac(*a, mv, cv);
                        }
                    }
                } else {
                    let buf = operands();
                    for _ in 0..iters {
                        for row in buf.chunks_exact(CHAINS) {
                            for (a, v) in acc.iter_mut().zip(row) {
                                *a = $mac(*v, mv, *a);
                            }
                        }
                    }
                }
                lanes_sum(&acc)
            }
        };
    }

    peak_loops!(
        /// SIMD128: `f32x4.add(f32x4.mul(x, y), acc)`, what a GEMM issues per multiply-add without
        /// a fused op.
        [] simd128_loops,
        |x, y, acc| f32x4_add(f32x4_mul(x, y), acc)
    );

    /// The SIMD128 arithmetic peak ([`simd128_loops`]): `iters` iterations of `form` (0: registers,
    /// 1: L1 operands); time it from JavaScript, MACs = [`peak_macs`]. Returns a checksum.
    #[wasm_bindgen]
    pub fn peak_simd128(form: u32, iters: u32, m: f32, c: f32) -> f32 {
        simd128_loops(form, iters, m, c)
    }

    #[cfg(feature = "relaxed-simd")]
    peak_loops!(
        /// Relaxed SIMD: `f32x4.relaxed_madd(x, y, acc)`, the FMA micro-kernel's instruction.
        ///
        /// # Safety
        /// The engine must support relaxed SIMD.
        #[target_feature(enable = "relaxed-simd")]
        [unsafe] fma_loops,
        |x, y, acc| f32x4_relaxed_madd(x, y, acc)
    );

    /// The relaxed-SIMD FMA peak (the `relaxed-simd` build only): as [`peak_simd128`] with
    /// `f32x4.relaxed_madd`, one fused op per step.
    #[cfg(feature = "relaxed-simd")]
    #[wasm_bindgen]
    pub fn peak_fma(form: u32, iters: u32, m: f32, c: f32) -> f32 {
        // SAFETY: this build is loaded only where the engine validated a relaxed-SIMD module.
        unsafe { fma_loops(form, iters, m, c) }
    }

    /// A kernel alone, for timing its decoupling (the `.npy` parsing is not timed).
    #[wasm_bindgen]
    pub struct Layer {
        kernel: Kernel,
    }

    #[wasm_bindgen]
    impl Layer {
        /// An OIHW `.npy` kernel.
        #[wasm_bindgen(constructor)]
        pub fn new(kernel_npy: &[u8]) -> Result<Layer, JsValue> {
            Ok(Layer { kernel: read_npy(kernel_npy).and_then(|a| a.into_kernel()).map_err(js)? })
        }

        /// Decouples every slice in `order` ("dw-pw" / "pw-dw"); returns the number of slices.
        pub fn decouple(&self, order_name: &str) -> Result<usize, JsValue> {
            Ok(Decomposition::new(&self.kernel, 1, order(order_name)?).map_err(js)?.slices.len())
        }
    }
}

#[cfg(not(target_arch = "wasm32"))]
fn main() {
    println!("browser benchmark: run `bash scripts/bench-browser.sh`");
}

#[cfg(target_arch = "wasm32")]
fn main() {}
