//! Unit tests of the command-line logic with an in-memory host.

use super::*;
use ndlab_core::conv::reference_conv2d;
use ndlab_core::layer::{FeatureMap, Kernel};
use std::collections::HashMap;

#[derive(Default)]
struct MemHost {
    files: HashMap<String, Vec<u8>>,
}

impl Host for MemHost {
    fn read(&mut self, path: &str) -> Result<Vec<u8>> {
        self.files.get(path).cloned().ok_or_else(|| Error::Format(format!("{path}: no such file")))
    }
    fn write(&mut self, path: &str, bytes: &[u8]) -> Result<()> {
        self.files.insert(path.to_string(), bytes.to_vec());
        Ok(())
    }
}

fn args(s: &str) -> Vec<String> {
    s.split_whitespace().map(str::to_string).collect()
}

fn param_err(s: &str) -> String {
    match parse_args(&args(s)) {
        Err(Error::Param(m)) => m,
        other => panic!("{s}: expected a usage error, got {other:?}"),
    }
}

/// N = 2, C = 1, 1×2 kernel with W[0,0] = [3, 0], W[1,0] = [0, 4]: the DW→PW slice is
/// diag(3, 4), σ = (4, 3); the PW→DW slices are [3, 0] and [0, 4], σ = 3 and 4.
fn diag_host() -> MemHost {
    let mut h = MemHost::default();
    h.files.insert("k.npy".into(), write_npy_f32(&[2, 1, 1, 2], &[3.0, 0.0, 0.0, 4.0]));
    h
}

#[test]
fn help_and_usage_errors() {
    for s in ["--help", "-h", "help", "report --help", "apply k.npy -h"] {
        assert_eq!(parse_args(&args(s)).unwrap(), Command::Help, "{s}");
    }
    assert!(param_err("").contains("missing command"));
    assert!(param_err("frobnicate").contains("unknown command"));
    assert!(param_err("report k.npy --frob").contains("unknown option '--frob'"));
    assert!(param_err("report").contains("missing the kernel"));
    assert!(param_err("report a.npy b.npy").contains("unexpected argument 'b.npy'"));
    assert!(param_err("report k.npy --order sideways").contains("unknown order"));
    assert!(param_err("report k.npy --threshold 1.5").contains("--threshold"));
    assert!(param_err("report k.npy --threshold abc").contains("--threshold"));
    assert!(param_err("report k.npy --size 5").contains("--size"));
    assert!(param_err("report k.npy --stride 2").contains("--size"));
    assert!(param_err("report k.npy --groups 0").contains("--groups"));
    assert!(param_err("report k.npy --order").contains("needs a value"));
    assert!(param_err("apply k.npy --input x.npy --out y.npy").contains("--t"));
    assert!(param_err("apply k.npy --input x.npy --out y.npy --t 0").contains("--t"));
    assert!(param_err("apply k.npy --input x.npy --out y.npy --t -3").contains("--t"));
    assert!(param_err("apply k.npy --input x.npy --out y.npy --t 2 --t 3").contains("twice"));
    assert!(param_err("apply k.npy --t 2 --out y.npy").contains("--input"));
    for s in ["report k.npy --order sideways", "apply k.npy --t x --input a --out b"] {
        assert!(!param_err(s).contains('\n'), "one line");
    }
}

#[test]
fn parses_full_option_sets() {
    let c = parse_args(&args(
        "report k.npy --order=pw-dw --threshold 0.9 --json --size 56x28 --stride 2 --padding 1",
    ))
    .unwrap();
    let Command::Report(r) = c else { panic!("{c:?}") };
    assert_eq!((r.order, r.threshold, r.json, r.size), (Order::PwDw, Some(0.9), true, Some((56, 28))));
    assert_eq!((r.geometry.stride, r.geometry.padding.left), ((2, 2), 1));
    let c =
        parse_args(&args("apply k.npy --input x.npy --t 3 --out y.npy --dilation 2 --bias b.npy")).unwrap();
    let Command::Apply(a) = c else { panic!("{c:?}") };
    assert_eq!(
        (a.t, a.order, a.geometry.dilation, a.bias.as_deref()),
        (3, Order::DwPw, (2, 2), Some("b.npy"))
    );
}

#[test]
fn decouple_model_keeps_the_data_free_switch_apart_from_the_calibration_data() {
    let parse = |s: &str| match parse_args(&args(s)) {
        Ok(Command::DecoupleModel(d)) => d,
        other => panic!("{s}: {other:?}"),
    };
    let d = parse("decouple-model m.onnx --out o.onnx --t 2 --calibration c.npz --data-free --json");
    assert_eq!((d.calibration.as_deref(), d.data_free, d.json), (Some("c.npz"), true, true));
    let d = parse("decouple-model m.onnx --out o.onnx --t 2 --calibration c.npz");
    assert_eq!((d.calibration.as_deref(), d.data_free), (Some("c.npz"), false));
}

#[test]
fn report_json_on_a_hand_computed_kernel() {
    let mut h = diag_host();
    let out = run(&args("report k.npy --json --threshold 0.6"), &mut h).unwrap();
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["shape"], serde_json::json!([2, 1, 1, 2]));
    assert_eq!(v["order"], "dw-pw");
    assert_eq!(v["full_rank"], 2);
    let sv: Vec<f64> = serde_json::from_value(v["singular_values"][0].clone()).unwrap();
    assert!((sv[0] - 4.0).abs() < 1e-12 && (sv[1] - 3.0).abs() < 1e-12, "{sv:?}");
    let e: Vec<f64> = serde_json::from_value(v["energy_kept"].clone()).unwrap();
    let r: Vec<f64> = serde_json::from_value(v["rel_weight_error"].clone()).unwrap();
    assert!((e[0] - 16.0 / 25.0).abs() < 1e-12 && (e[1] - 1.0).abs() < 1e-12, "{e:?}");
    assert!((r[0] - 0.6).abs() < 1e-12 && r[1].abs() < 1e-12, "{r:?}");
    // Per output pixel, DW→PW: regular N·C·K² = 4; decoupled T·(C·K² + N·C) = 4T.
    assert_eq!(v["macs"]["regular"], 4);
    assert_eq!(v["macs"]["decoupled"], serde_json::json!([4, 8]));
    assert_eq!(v["threshold_t"]["mean_rule"], 1);
    assert_eq!(v["threshold_t"]["max_rule"], 1);

    let out = run(&args("report k.npy --json --order pw-dw"), &mut h).unwrap();
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["full_rank"], 1);
    assert_eq!(v["singular_values"], serde_json::json!([[3.0], [4.0]]));
    assert!(v.get("threshold_t").is_none());
}

#[test]
fn report_table_is_readable() {
    let mut h = diag_host();
    let out = run(&args("report k.npy --threshold 0.7"), &mut h).unwrap();
    assert!(out.starts_with("k.npy: kernel 2×1×1×2"), "{out}");
    assert!(out.contains("full rank 2"), "{out}");
    assert!(out.contains("0.640000") && out.contains("0.600000"), "{out}");
    assert!(out.contains("T = 2 (mean rule"), "{out}");
    h.files.insert("pw.npy".into(), write_npy_f32(&[4, 3, 1, 1], &[1.0; 12]));
    let out = run(&args("report pw.npy"), &mut h).unwrap();
    assert!(out.contains("already separable"), "{out}");
}

#[test]
fn report_file_errors_name_the_file() {
    let mut h = MemHost::default();
    h.files.insert("bad.npy".into(), b"\x89PNG\r\n\x1a\n0000000000".to_vec());
    h.files.insert("x3.npy".into(), write_npy_f32(&[2, 3, 4], &[0.0; 24]));
    let e = run(&args("report bad.npy"), &mut h).unwrap_err().to_string();
    assert!(e.contains("bad.npy") && e.contains("not a .npy"), "{e}");
    let e = run(&args("report x3.npy"), &mut h).unwrap_err().to_string();
    assert!(e.contains("4-D"), "{e}");
    assert!(run(&args("report missing.npy"), &mut h).is_err());
}

/// A deterministic pseudo-random sequence in [-1, 1).
fn values(n: usize, seed: u64) -> Vec<f32> {
    let mut s = seed;
    (0..n)
        .map(|_| {
            s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            ((s >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
        })
        .collect()
}

#[test]
fn apply_writes_the_decoupled_output() {
    let (n, c, k) = (4, 3, 3);
    let kernel = Kernel::new(n, c, k, k, values(n * c * k * k, 1)).unwrap();
    let x = FeatureMap::new(c, 7, 6, values(c * 42, 2)).unwrap();
    let bias = vec![0.5f32, -1.0, 0.25, 2.0];
    let mut h = MemHost::default();
    h.files.insert("k.npy".into(), write_npy_f32(&[n, c, k, k], &kernel.data));
    h.files.insert("x.npy".into(), write_npy_f32(&[1, c, 7, 6], &x.data));
    h.files.insert("b.npy".into(), write_npy_f32(&[n], &bias));
    let geom = ConvGeometry::new(2, 1, 1);
    for (order, t) in [(Order::DwPw, 2), (Order::PwDw, 1), (Order::DwPw, 4), (Order::PwDw, 3)] {
        let cmd = format!(
            "apply k.npy --input x.npy --bias b.npy --order {} --t {t} --stride 2 --padding 1 --out y.npy",
            order.as_str()
        );
        let out = run(&args(&cmd), &mut h).unwrap();
        assert!(out.contains("relative error"), "{out}");
        let y = read_npy(&h.files["y.npy"]).unwrap();
        // Oracle: the direct scalar conv of the reconstructed kernel W_T, plus the bias.
        let wt = Decomposition::new(&kernel, 1, order).unwrap().reconstruct(t).unwrap();
        let want = reference_conv2d(&x, &wt, Some(&bias), &geom).unwrap();
        assert_eq!(y.shape, vec![1, n, want.h, want.w]);
        let got = FeatureMap::new(n, want.h, want.w, y.data).unwrap();
        let err = got.rel_error(&want).unwrap();
        assert!(err < 1e-5, "{order:?} T={t}: {err}");
    }
}

#[test]
fn apply_errors() {
    let mut h = MemHost::default();
    h.files.insert("k.npy".into(), write_npy_f32(&[4, 3, 3, 3], &values(108, 3)));
    h.files.insert("x.npy".into(), write_npy_f32(&[3, 5, 5], &values(75, 4)));
    h.files.insert("x2.npy".into(), write_npy_f32(&[2, 5, 5], &values(50, 4)));
    h.files.insert("b.npy".into(), write_npy_f32(&[3], &[0.0; 3]));
    let e = run(&args("apply k.npy --input x.npy --t 5 --out y.npy"), &mut h).unwrap_err();
    assert!(matches!(&e, Error::Param(m) if m.contains("out of range")), "{e}");
    let e = run(&args("apply k.npy --input x2.npy --t 1 --out y.npy"), &mut h).unwrap_err();
    assert!(e.to_string().contains("channels"), "{e}");
    let e = run(&args("apply k.npy --input x.npy --t 1 --bias b.npy --out y.npy"), &mut h).unwrap_err();
    assert!(e.to_string().contains("bias"), "{e}");
    assert!(run(&args("apply k.npy --input nope.npy --t 1 --out y.npy"), &mut h).is_err());
    assert!(!h.files.contains_key("y.npy"), "nothing written on error");
}

#[test]
fn report_macs_for_a_given_input_size() {
    // 2×1×1×2 kernel on a 1×4×5 input, no padding: output 2×4×4 (16 pixels, 20 input pixels).
    let mut h = diag_host();
    let v: serde_json::Value =
        serde_json::from_str(&run(&args("report k.npy --json --order pw-dw --size 4x5"), &mut h).unwrap())
            .unwrap();
    assert_eq!(v["macs"]["regular"], 2 * 2 * 16);
    // PW→DW, T = 1: N·T·c·H·W (input resolution) + N·T·K²·Ho·Wo.
    assert_eq!(v["macs"]["decoupled"], serde_json::json!([2 * 20 + 2 * 2 * 16]));
    assert_eq!(v["params"]["decoupled"], serde_json::json!([2 + 2 * 2]));
    assert!(v["macs_basis"].as_str().unwrap_or("").contains("4×4"), "{}", v["macs_basis"]);
}
