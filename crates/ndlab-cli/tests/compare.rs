//! `ndlab compare`: the equal-cost comparison with the relatives (CD, SD, CP, Tucker-2), from the
//! library call and through the binary, on a real layer; bad arguments end with one line.

use ndlab_cli::compare::run_compare;

/// A file of the repository, by its path from the top.
fn repo(path: &str) -> String {
    format!("{}/../../{path}", env!("CARGO_MANIFEST_DIR"))
}

const ONET: &str = "assets/layers/mtcnn_onet_conv1_32x3x3x3.npy";

#[test]
fn cli_compare_json_and_errors() {
    let bytes = std::fs::read(repo(ONET)).unwrap();
    let args: Vec<String> = ["f.npy", "--speedup", "2", "--json"].iter().map(|s| s.to_string()).collect();
    let out = run_compare(&args, &bytes).unwrap();
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    let arr = v.as_array().unwrap();
    assert_eq!(arr.len(), 7);
    for o in arr {
        for key in ["method", "rank", "macs", "params", "rel_weight_error"] {
            assert!(o.get(key).is_some(), "missing {key}");
        }
    }
    assert!(arr[6]["rank"].is_array() && arr[0]["rank"].is_u64());
    let text = run_compare(&args[..3], &bytes).unwrap();
    assert!(text.contains("tucker2") && text.contains("nd-dw-pw"));
    for bad in [
        vec!["f.npy"],
        vec!["f.npy", "--speedup", "0"],
        vec!["f.npy", "--speedup", "x"],
        vec!["--speedup", "2"],
        vec!["f.npy", "--speedup", "2", "--layer", "conv1"],
    ] {
        let a: Vec<String> = bad.iter().map(|s| s.to_string()).collect();
        assert!(run_compare(&a, &bytes).is_err(), "{bad:?}");
    }
    assert!(run_compare(&args, b"not npy").is_err());
}

#[test]
fn ndlab_compare_end_to_end() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_ndlab"))
        .args(["compare", &repo(ONET), "--speedup", "2", "--json"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let methods: Vec<&str> = v.as_array().unwrap().iter().map(|o| o["method"].as_str().unwrap()).collect();
    assert_eq!(methods, ["nd-dw-pw", "nd-pw-dw", "channel", "spatial", "cp", "cp-mobilenet", "tucker2"]);
    for o in v.as_array().unwrap() {
        assert!(o["macs"].as_u64().unwrap() <= 432);
    }
    let bad = std::process::Command::new(env!("CARGO_BIN_EXE_ndlab"))
        .args(["compare", &repo(ONET)])
        .output()
        .unwrap();
    assert!(!bad.status.success());
}

fn ndlab_out(args: &[&str]) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_ndlab")).args(args).output().unwrap()
}

#[test]
fn ndlab_compare_takes_a_layer_of_a_model_file() {
    // The same MTCNN kernel, read from the shared safetensors file by name and from its own .npy.
    let model = &repo("tests/data/conv_layers.safetensors");
    let from_model =
        ndlab_out(&["compare", model, "--layer", "onet.pt/conv1.weight", "--speedup", "2", "--json"]);
    assert!(from_model.status.success(), "{}", String::from_utf8_lossy(&from_model.stderr));
    let from_npy = ndlab_out(&["compare", &repo(ONET), "--speedup", "2", "--json"]);
    assert!(from_npy.status.success());
    assert_eq!(String::from_utf8_lossy(&from_model.stdout), String::from_utf8_lossy(&from_npy.stdout));
    // The text table names the layer.
    let text = ndlab_out(&["compare", model, "--layer", "onet.pt/conv1.weight", "--speedup", "2"]);
    assert!(String::from_utf8_lossy(&text.stdout).contains("[onet.pt/conv1.weight]: 32×3×3×3"));
    // Several conv layers and no --layer; an unknown layer: one line on stderr, exit ≠ 0.
    for args in [
        vec!["compare", model, "--speedup", "2"],
        vec!["compare", model, "--layer", "no/such/layer", "--speedup", "2"],
    ] {
        let out = ndlab_out(&args);
        assert!(!out.status.success(), "{args:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(err.trim_end().lines().count(), 1, "{err}");
        assert!(!err.contains("panicked"), "{err}");
    }
    let err = String::from_utf8_lossy(&ndlab_out(&["compare", model, "--speedup", "2"]).stderr).to_string();
    assert!(err.contains("--layer"), "{err}");
}
