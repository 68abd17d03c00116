//! End-to-end tests of `ndlab list` and `--layer` on model files (real data and the corpus).

use ndlab_io::formats::{load_layer, Layout};
use std::process::{Command, Output};

const BIN: &str = env!("CARGO_BIN_EXE_ndlab");

/// A file of the repository, by its path from the top.
fn repo(p: &str) -> String {
    format!("{}/{p}", concat!(env!("CARGO_MANIFEST_DIR"), "/../.."))
}

fn corpus(p: &str) -> String {
    format!("{}/tests/corpus/{p}", concat!(env!("CARGO_MANIFEST_DIR"), "/../.."))
}

fn ndlab(args: &[&str]) -> Output {
    Command::new(BIN).args(args).output().expect("the ndlab binary runs")
}

fn ok(args: &[&str]) -> String {
    let out = ndlab(args);
    assert!(out.status.success(), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap()
}

fn fails(args: &[&str]) -> String {
    let out = ndlab(args);
    assert!(!out.status.success(), "{args:?} should fail");
    let err = String::from_utf8_lossy(&out.stderr).to_string();
    assert_eq!(err.trim_end().lines().count(), 1, "{err}");
    assert!(!err.contains("panicked") && !err.contains("internal error"), "{err}");
    err
}

#[test]
fn list_prints_one_line_per_conv_with_geometry() {
    let s = ok(&["list", &repo("tests/data/mtcnn_pnet.onnx")]);
    let convs: Vec<&str> = s.lines().filter(|l| l.starts_with("conv2d")).collect();
    assert_eq!(convs.len(), 5, "{s}");
    assert!(
        s.contains("conv2d_1  16×10×3×3 float32  stride 1×1  padding t0 l0 b0 r0  dilation 1×1  groups 1"),
        "{s}"
    );
    let s = ok(&["list", &corpus("raw_pads.onnx")]);
    assert!(s.contains("stride 2×2  padding t0 l1 b2 r1  dilation 1×2  groups 2"), "{s}");
    assert!(s.contains("<b>conv_a</b>"), "names are printed verbatim: {s}");
    let s = ok(&["list", &repo("assets/models/vgg16bn_craft_conv1_1-conv3_3.safetensors")]);
    assert_eq!(s.lines().filter(|l| l.contains("BN features.")).count(), 7, "{s}");
}

#[test]
fn report_takes_a_layer_of_a_model_file() {
    let vgg = repo("assets/models/vgg16bn_craft_conv1_1-conv3_3.safetensors");
    let s = ok(&["report", &vgg, "--layer", "features.3.weight", "--json"]);
    let v: serde_json::Value = serde_json::from_str(&s).unwrap();
    assert_eq!(v["shape"], serde_json::json!([64, 64, 3, 3]));
    // The same layer from the .npy copy gives the same singular values.
    let npy = ok(&["report", &repo("assets/layers/craft_vgg16bn_conv1_2_64x64x3x3.npy"), "--json"]);
    let w: serde_json::Value = serde_json::from_str(&npy).unwrap();
    assert_eq!(v["singular_values"], w["singular_values"]);
    // A multi-layer file without --layer says how to pick one.
    let e = fails(&["report", &vgg]);
    assert!(e.contains("pick one with --layer NAME"), "{e}");
}

#[test]
fn apply_with_fold_bn_runs_the_folded_layer() {
    let vgg = repo("assets/models/vgg16bn_craft_conv1_1-conv3_3.safetensors");
    let dir = std::path::PathBuf::from(env!("CARGO_TARGET_TMPDIR"));
    let x = dir.join(format!("clif-{}-x.npy", std::process::id()));
    let y = dir.join(format!("clif-{}-y.npy", std::process::id()));
    let data: Vec<f32> = (0..3 * 8 * 8).map(|i| ((i * 37 % 11) as f32 - 5.0) / 5.0).collect();
    std::fs::write(&x, ndlab_io::npy::write_npy_f32(&[3, 8, 8], &data)).unwrap();
    let (xs, ys) = (x.to_str().unwrap(), y.to_str().unwrap());
    let s = ok(&[
        "apply",
        &vgg,
        "--layer",
        "features.0.weight",
        "--fold-bn",
        "--input",
        xs,
        "--t",
        "3",
        "--out",
        ys,
        "--padding",
        "1",
    ]);
    assert!(s.contains("relative error"), "{s}");
    // Full rank reproduces the folded layer: compare against conv2d with the library-loaded folded layer.
    ok(&[
        "apply",
        &vgg,
        "--layer",
        "features.0.weight",
        "--fold-bn",
        "--input",
        xs,
        "--t",
        "9",
        "--out",
        ys,
        "--padding",
        "1",
    ]);
    let got = ndlab_io::npy::read_npy(&std::fs::read(&y).unwrap()).unwrap();
    let bytes = std::fs::read(&vgg).unwrap();
    let layer = load_layer(&bytes, "vgg.safetensors", "features.0.weight", Layout::Oihw, true).unwrap();
    let xm = ndlab_core::FeatureMap::new(3, 8, 8, data).unwrap();
    let want = ndlab_core::conv::reference_conv2d(
        &xm,
        &layer.kernel,
        layer.bias.as_deref(),
        &ndlab_core::ConvGeometry::new(1, 1, 1),
    )
    .unwrap();
    let gm = ndlab_core::FeatureMap::new(want.c, want.h, want.w, got.data).unwrap();
    assert!(gm.rel_error(&want).unwrap() < 1e-4);
    let _ = std::fs::remove_file(&x);
    let _ = std::fs::remove_file(&y);
}

#[test]
fn bad_files_give_one_line() {
    for (f, msg) in [
        ("evil_global.pth", "refused global 'os.system'"),
        ("legacy.pth", "legacy PyTorch format"),
        ("camera_renamed.npy", "is a PNG image"),
        ("garbage_json.safetensors", "not valid JSON"),
    ] {
        let e = fails(&["list", &corpus(f)]);
        assert!(e.contains(msg), "{f}: {e}");
    }
    let e = fails(&["report", &corpus("nan.npy"), "--layer", "nan"]);
    assert!(e.contains("non-finite"), "{e}");
}
