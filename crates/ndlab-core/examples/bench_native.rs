//! The native side of `scripts/bench-native.sh`: ndlab (one thread) on the layer, input and graphs
//! of `bench/web/make_graphs.py`, against the onnxruntime (native) times and outputs that
//! `bench/web/native_peers.py` wrote and numpy's decoupling times; prints JSON.
//! `cargo run --release --example bench_native -- DATA_DIR [REPEAT]`

use ndlab_core::conv::{conv2d, decoupled_forward};
use ndlab_core::decouple::Decomposition;
use ndlab_core::{ConvGeometry, FeatureMap, Kernel, Order};
use ndlab_io::npy::read_npy;
use serde_json::{json, Value};
use std::path::Path;
use std::time::Instant;

const LAYER: &str = "assets/layers/craft_vgg16bn_conv3_2_256x256x3x3.npy";

/// (median, min) wall time of `reps` runs after one warm-up, in ms.
fn times_ms(reps: usize, mut f: impl FnMut()) -> (f64, f64) {
    f();
    let mut ts: Vec<f64> = (0..reps)
        .map(|_| {
            let t = Instant::now();
            f();
            t.elapsed().as_secs_f64() * 1e3
        })
        .collect();
    ts.sort_by(f64::total_cmp);
    (ts[ts.len() / 2], ts[0])
}

/// max |a − b| / max |b|.
fn max_rel_diff(a: &[f32], b: &[f32]) -> f64 {
    let d = a.iter().zip(b).fold(0.0f32, |m, (x, y)| m.max((x - y).abs()));
    let m = b.iter().fold(0.0f32, |m, y| m.max(y.abs()));
    if a.len() == b.len() {
        (d / m) as f64
    } else {
        f64::INFINITY
    }
}

fn load(path: &Path) -> ndlab_core::Result<ndlab_io::npy::NpyArray> {
    let bytes =
        std::fs::read(path).map_err(|e| ndlab_core::Error::Format(format!("{}: {e}", path.display())))?;
    read_npy(&bytes)
}

fn json_file(path: &Path) -> Value {
    std::fs::read_to_string(path).ok().and_then(|s| serde_json::from_str(&s).ok()).unwrap_or(Value::Null)
}

/// Decoupling times of one kernel in both orders, against numpy's.
fn decouple_rows(k: &Kernel, numpy: &Value, name: &str, reps: usize) -> ndlab_core::Result<Value> {
    let mut row = serde_json::Map::new();
    for o in [Order::DwPw, Order::PwDw] {
        Decomposition::new(k, 1, o)?;
        let (ms, min) = times_ms(reps, || drop(Decomposition::new(k, 1, o)));
        let np = numpy["svd_ms"][name][o.as_str()].as_f64().unwrap_or(f64::NAN);
        let np_min = numpy["svd_min_ms"][name][o.as_str()].as_f64().unwrap_or(f64::NAN);
        row.insert(
            o.as_str().into(),
            json!({"ndlab_ms": ms, "numpy_ms": np, "ratio_vs_numpy": ms / np,
                   "min": {"ndlab_ms": min, "numpy_ms": np_min, "ratio_vs_numpy": min / np_min}}),
        );
    }
    Ok(Value::Object(row))
}

fn main() -> ndlab_core::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let data = Path::new(args.get(1).map_or("target/bench-web/data", String::as_str)).to_path_buf();
    let reps: usize = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(9);
    let kernel = load(Path::new(LAYER))?.into_kernel()?;
    let x: FeatureMap = load(&data.join("x.npy"))?.into_feature_map()?;
    let geom = ConvGeometry::new(1, 1, 1);
    let numpy = json_file(&data.join("numpy.json"));
    let ort = json_file(&data.join("ort-native.json"));
    let k512 = load(&data.join("w512.npy"))?.into_kernel()?;
    let decouple = json!({
        "256": decouple_rows(&kernel, &numpy, "256", reps)?,
        "512": decouple_rows(&k512, &numpy, "512", reps)?,
    });
    let hw = (x.h * x.w) as f64;
    let (n, c) = (kernel.n as f64, kernel.c as f64);
    let mut rows = Vec::new();
    let (regular_ms, regular_min) = times_ms(reps, || drop(conv2d(&x, &kernel, None, &geom)));
    let y = conv2d(&x, &kernel, None, &geom)?;
    rows.push(("regular".to_string(), n * c * 9.0 * hw, (regular_ms, regular_min), y.data));
    let decs = [Decomposition::new(&kernel, 1, Order::DwPw)?, Decomposition::new(&kernel, 1, Order::PwDw)?];
    for t in [1usize, 2, 4] {
        for d in &decs {
            let m = d.merged(t)?;
            let ms = times_ms(reps, || drop(decoupled_forward(&x, &m, None, &geom)));
            let y = decoupled_forward(&x, &m, None, &geom)?;
            let tf = t as f64;
            let macs = match d.order {
                Order::DwPw => c * tf * 9.0 * hw + c * tf * n * hw,
                Order::PwDw => n * tf * c * hw + n * tf * 9.0 * hw,
            };
            rows.push((format!("{}_T{t}", d.order.as_str()), macs, ms, y.data));
        }
    }
    let regular_macs = n * c * 9.0 * hw;
    let ort_regular = ort["ms"]["regular"].as_f64().unwrap_or(f64::NAN);
    let forward: Vec<Value> = rows
        .into_iter()
        .map(|(name, macs, (ms, min), y)| {
            let ort_ms = ort["ms"][&name].as_f64().unwrap_or(f64::NAN);
            let ort_min = ort["min_ms"][&name].as_f64().unwrap_or(f64::NAN);
            let diff = load(&data.join(format!("y_{name}.npy")))
                .and_then(|a| a.into_feature_map())
                .map_or(f64::NAN, |r| max_rel_diff(&y, &r.data));
            json!({
                "graph": name, "macs": macs, "ndlab_ms": ms, "ort_ms": ort_ms,
                "throughput_vs_ort": ort_ms / ms, "ndlab_gmacs": macs / ms / 1e6, "ort_gmacs": macs / ort_ms / 1e6,
                "max_rel_diff": diff, "theoretical_speedup": regular_macs / macs,
                "ndlab_measured_speedup": regular_ms / ms, "ort_measured_speedup": ort_regular / ort_ms,
                "min": {"ndlab_ms": min, "ndlab_gmacs": macs / min / 1e6, "ort_ms": ort_min,
                        "ndlab_measured_speedup": regular_min / min},
            })
        })
        .collect();
    let out = json!({
        "threads": 1, "repeat": reps, "onnxruntime": ort["onnxruntime"], "numpy": numpy["numpy"],
        "layer": "VGG16-BN conv3_2 256→256 3×3, stride 1, padding 1", "input": [1, x.c, x.h, x.w],
        "decouple": decouple, "forward": forward,
    });
    println!("{}", serde_json::to_string_pretty(&out).unwrap_or_default());
    Ok(())
}
