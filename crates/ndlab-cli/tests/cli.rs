//! End-to-end tests of the `ndlab` binary on the real layers shipped in `assets/layers`.

use ndlab_core::conv::reference_conv2d;
use ndlab_core::decouple::Decomposition;
use ndlab_core::{ConvGeometry, FeatureMap, Order};
use ndlab_io::npy::{read_npy, write_npy_f32};
use std::path::PathBuf;
use std::process::{Command, Output};

const BIN: &str = env!("CARGO_BIN_EXE_ndlab");

fn layer(name: &str) -> String {
    format!("{}/assets/layers/{name}", concat!(env!("CARGO_MANIFEST_DIR"), "/../.."))
}

fn tmp(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("cli-test-{}-{name}", std::process::id()))
}

fn ndlab(args: &[&str]) -> Output {
    Command::new(BIN).args(args).output().expect("the ndlab binary runs")
}

fn json(args: &[&str]) -> serde_json::Value {
    let out = ndlab(args);
    assert!(out.status.success(), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).expect("valid JSON")
}

fn floats(v: &serde_json::Value) -> Vec<f64> {
    serde_json::from_value(v.clone()).expect("a list of numbers")
}

/// Asserts a failed run: non-zero exit, exactly one line on stderr, no panic trace.
fn assert_clean_failure(args: &[&str]) -> String {
    let out = ndlab(args);
    let err = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(!out.status.success(), "{args:?} should fail");
    assert_eq!(err.trim_end().lines().count(), 1, "{args:?}: stderr {err:?}");
    assert!(err.starts_with("ndlab: "), "{err}");
    assert!(!err.contains("panicked") && !err.contains("internal error"), "{err}");
    err
}

#[test]
fn report_json_on_the_256_layer_matches_method() {
    let path = layer("craft_vgg16bn_conv3_2_256x256x3x3.npy");
    let v = json(&["report", &path, "--json", "--threshold", "0.9"]);
    for key in [
        "shape",
        "order",
        "full_rank",
        "singular_values",
        "energy_kept",
        "rel_weight_error",
        "macs",
        "params",
    ] {
        assert!(v.get(key).is_some(), "missing {key}");
    }
    assert_eq!(v["shape"], serde_json::json!([256, 256, 3, 3]));
    assert_eq!(v["order"], "dw-pw");
    assert_eq!(v["full_rank"], 9);
    assert_eq!(v["singular_values"].as_array().map(Vec::len), Some(256));
    assert_eq!(v["macs"]["decoupled"].as_array().map(Vec::len), Some(9));
    assert_eq!(v["params"]["decoupled"].as_array().map(Vec::len), Some(9));
    // METHOD.md: N = C = 256, K = 3, s = 1, DW→PW speed-ups.
    let speed: Vec<f64> = floats(&v["speedup"]).iter().map(|s| (s * 100.0).round() / 100.0).collect();
    assert_eq!(speed[..5], [8.69, 4.35, 2.90, 2.17, 1.74]);
    assert_eq!(speed[8], 0.97);
    let err = floats(&v["rel_weight_error"]);
    let energy = floats(&v["energy_kept"]);
    assert!(err[8] < 1e-6, "full-rank error {}", err[8]);
    assert!((energy[8] - 1.0).abs() < 1e-9);
    for t in 0..9 {
        assert!((energy[t] - (1.0 - err[t] * err[t])).abs() < 1e-9, "energy = 1 − error² at T={}", t + 1);
        if t > 0 {
            assert!(err[t] <= err[t - 1] + 1e-12, "error non-increasing");
        }
    }
    let mean = v["threshold_t"]["mean_rule"].as_u64().unwrap_or(0);
    let max = v["threshold_t"]["max_rule"].as_u64().unwrap_or(0);
    let (want_mean, want_max) = threshold_rules(&v["singular_values"], 0.9);
    assert_eq!((mean as usize, max as usize), (want_mean, want_max));
}

/// Both T-choosing rules of METHOD.md recomputed from the reported singular values.
fn threshold_rules(sv: &serde_json::Value, tau: f64) -> (usize, usize) {
    let slices: Vec<Vec<f64>> = serde_json::from_value(sv.clone()).unwrap();
    let full = slices[0].len();
    let fractions: Vec<Vec<f64>> = slices
        .iter()
        .filter_map(|s| {
            let total: f64 = s.iter().map(|x| x * x).sum();
            (total > 0.0)
                .then(|| (1..=full).map(|t| s[..t].iter().map(|x| x * x).sum::<f64>() / total).collect())
        })
        .collect();
    let mean_t = (1..=full)
        .find(|&t| fractions.iter().map(|e| e[t - 1]).sum::<f64>() / fractions.len() as f64 >= tau - 1e-12)
        .unwrap_or(full);
    let max_t = fractions
        .iter()
        .map(|e| (1..=full).find(|&t| e[t - 1] >= tau - 1e-12).unwrap_or(full))
        .max()
        .unwrap_or(1);
    (mean_t, max_t)
}

#[test]
fn singular_values_carry_each_slices_energy() {
    // Independent of any SVD: Σσ² of slice c must equal ‖W[:, c]‖²_F (DW→PW) or ‖W[n]‖²_F (PW→DW).
    let path = layer("mtcnn_onet_conv1_32x3x3x3.npy");
    let w = read_npy(&std::fs::read(&path).unwrap()).unwrap();
    let (n, c, k2) = (32, 3, 9);
    let at = |o: usize, i: usize, j: usize| w.data[(o * c + i) * k2 + j] as f64;
    for order in ["dw-pw", "pw-dw"] {
        let v = json(&["report", &path, "--json", "--order", order]);
        let sv = v["singular_values"].as_array().cloned().unwrap_or_default();
        let full = if order == "dw-pw" { 9 } else { 3 };
        assert_eq!(v["full_rank"], full);
        assert_eq!(sv.len(), if order == "dw-pw" { c } else { n });
        for (s, sigma) in sv.iter().enumerate() {
            let sigma = floats(sigma);
            assert_eq!(sigma.len(), full);
            assert!(sigma.windows(2).all(|p| p[0] >= p[1]) && sigma.iter().all(|&x| x >= 0.0));
            let e: f64 = sigma.iter().map(|x| x * x).sum();
            let norm: f64 = if order == "dw-pw" {
                (0..n).flat_map(|o| (0..k2).map(move |j| (o, j))).map(|(o, j)| at(o, s, j).powi(2)).sum()
            } else {
                (0..c).flat_map(|i| (0..k2).map(move |j| (i, j))).map(|(i, j)| at(s, i, j).powi(2)).sum()
            };
            assert!((e - norm).abs() <= 1e-5 * norm, "{order} slice {s}: {e} vs {norm}");
        }
    }
}

#[test]
fn report_table_and_help() {
    let out = ndlab(&["report", &layer("craft_vgg16bn_conv1_2_64x64x3x3.npy")]);
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("64×64×3×3") && text.contains("full rank 9"), "{text}");
    assert_eq!(text.lines().filter(|l| l.trim_start().starts_with(char::is_numeric)).count(), 9, "{text}");
    let help = ndlab(&["--help"]);
    assert!(help.status.success());
    assert!(String::from_utf8_lossy(&help.stdout).contains("ndlab report"));
}

#[test]
fn apply_equals_conv_of_the_reconstructed_kernel() {
    let kpath = layer("craft_vgg16bn_conv1_2_64x64x3x3.npy");
    let kernel = read_npy(&std::fs::read(&kpath).unwrap()).unwrap().into_kernel().unwrap();
    let (c, h, w) = (64, 9, 11);
    let x: Vec<f32> = (0..c * h * w).map(|i| ((i * 7919 % 1000) as f32 / 500.0) - 1.0).collect();
    let bias: Vec<f32> = (0..64).map(|i| i as f32 * 0.01 - 0.3).collect();
    let (xp, bp) = (tmp("x.npy"), tmp("b.npy"));
    std::fs::write(&xp, write_npy_f32(&[c, h, w], &x)).unwrap();
    std::fs::write(&bp, write_npy_f32(&[64], &bias)).unwrap();
    let x = FeatureMap::new(c, h, w, x).unwrap();
    for (order, t, s, p, d) in
        [(Order::DwPw, 2, 1, 1, 1), (Order::PwDw, 3, 2, 2, 2), (Order::DwPw, 9, 2, 0, 1)]
    {
        let yp = tmp(&format!("y-{}-{t}.npy", order.as_str()));
        let (ts, ss, ps, ds) = (t.to_string(), s.to_string(), p.to_string(), d.to_string());
        let args = [
            "apply",
            &kpath,
            "--input",
            xp.to_str().unwrap(),
            "--bias",
            bp.to_str().unwrap(),
            "--order",
            order.as_str(),
            "--t",
            &ts,
            "--stride",
            &ss,
            "--padding",
            &ps,
            "--dilation",
            &ds,
            "--out",
            yp.to_str().unwrap(),
        ];
        let out = ndlab(&args);
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        assert!(String::from_utf8_lossy(&out.stdout).contains("relative error"));
        let y = read_npy(&std::fs::read(&yp).unwrap()).unwrap();
        let wt = Decomposition::new(&kernel, 1, order).unwrap().reconstruct(t).unwrap();
        let want = reference_conv2d(&x, &wt, Some(&bias), &ConvGeometry::new(s, p, d)).unwrap();
        assert_eq!(y.shape, vec![64, want.h, want.w]);
        let got = FeatureMap::new(64, want.h, want.w, y.data).unwrap();
        let err = got.rel_error(&want).unwrap();
        assert!(err < 1e-4, "{order:?} T={t}: {err}");
        let _ = std::fs::remove_file(&yp);
    }
}

#[test]
fn bad_inputs_fail_cleanly() {
    let k = layer("mtcnn_onet_conv1_32x3x3x3.npy");
    let png = format!("{}/assets/images/camera.png", concat!(env!("CARGO_MANIFEST_DIR"), "/../.."));
    let trunc = tmp("truncated.npy");
    let bytes = std::fs::read(&k).unwrap();
    std::fs::write(&trunc, &bytes[..bytes.len() - 10]).unwrap();
    let x = tmp("x3.npy");
    std::fs::write(&x, write_npy_f32(&[3, 8, 8], &[0.5; 192])).unwrap();
    let (xs, ts) = (x.to_str().unwrap(), trunc.to_str().unwrap());
    let out = tmp("never.npy");
    let os = out.to_str().unwrap();
    let cases: Vec<Vec<&str>> = vec![
        vec![],
        vec!["report"],
        vec!["report", "/no/such/file.npy"],
        vec!["report", &png],
        vec!["report", ts],
        vec!["report", &k, "--frobnicate"],
        vec!["report", &k, "--threshold", "2"],
        vec!["report", &k, "--order", "up-down"],
        vec!["apply", &k, "--input", xs, "--t", "10", "--out", os],
        vec!["apply", &k, "--input", xs, "--t", "two", "--out", os],
        vec!["apply", &k, "--input", xs, "--t", "1", "--out", os, "--stride", "0"],
        vec!["apply", &k, "--input", ts, "--t", "1", "--out", os],
        vec!["apply", &k, "--input", xs, "--t", "1", "--out", os, "--padding", "0", "--dilation", "5"],
        vec!["launch"],
    ];
    for args in &cases {
        assert_clean_failure(args);
    }
    assert!(!out.exists(), "no output written on failure");
    let e = assert_clean_failure(&["report", &png]);
    assert!(e.contains("camera.png") && e.contains("not a .npy"), "{e}");
}
