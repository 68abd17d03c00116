//! The ndlab side of the browser benchmark (`scripts/bench-browser.sh`): compiled to wasm32 (with
//! the project's `+simd128`) and bound with wasm-bindgen (`--target web`); the page
//! `bench/web/index.html` times these calls and the same graphs in onnxruntime-web.
//! Natively it only says how to run it.

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
