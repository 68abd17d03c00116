//! Unit tests on real files shipped in the repository (`assets/`, `tests/data/`; sources and
//! licences in ATTRIBUTION.md).

use super::*;
use crate::vgg::VggPrefix;
use ndlab_core::layer::Padding;

/// A file of the repository, by its path from the top (a missing file fails the test, naming it).
fn data(path: &str) -> Vec<u8> {
    let p = format!("{}/{path}", concat!(env!("CARGO_MANIFEST_DIR"), "/../.."));
    std::fs::read(&p).unwrap_or_else(|e| panic!("{p}: {e}"))
}

#[test]
fn conv_layers_safetensors_lists_eight_kernels_with_biases() {
    let b = data("tests/data/conv_layers.safetensors");
    assert_eq!(detect(&b, "x.safetensors").unwrap(), Format::Safetensors);
    let layers = list_layers(&b, "conv_layers.safetensors", Layout::Oihw).unwrap();
    assert_eq!(layers.len(), 8);
    assert!(layers.iter().all(|l| l.bias.is_some()), "{layers:?}");
    let l = layers.iter().find(|l| l.name == "onet.pt/conv1.weight").unwrap();
    assert_eq!(l.shape, [32, 3, 3, 3]);
    let d = layers
        .iter()
        .find(|l| l.name == "dlib_face_recognition_resnet_model_v1.dat/conv64_1/conv1/conv")
        .unwrap();
    assert_eq!(d.bias.as_deref(), Some("dlib_face_recognition_resnet_model_v1.dat/conv64_1/conv1/conv:bias"));
}

#[test]
fn safetensors_layer_equals_the_npy_copy() {
    let b = data("tests/data/conv_layers.safetensors");
    let layer = load_layer(
        &b,
        "c.safetensors",
        "craft_mlt_25k.pth/module.basenet.slice1.3.weight",
        Layout::Oihw,
        false,
    )
    .unwrap();
    let npy = crate::npy::read_npy(&data("assets/layers/craft_vgg16bn_conv1_2_64x64x3x3.npy")).unwrap();
    assert_eq!(layer.kernel.data, npy.data);
    assert_eq!(layer.bias.as_ref().map(Vec::len), Some(64));
}

#[test]
fn vgg_prefix_bn_is_found_and_folded_like_fold_bn() {
    let b = data("assets/models/vgg16bn_craft_conv1_1-conv3_3.safetensors");
    let layers = list_layers(&b, "vgg.safetensors", Layout::Oihw).unwrap();
    let names: Vec<&str> = layers.iter().map(|l| l.name.as_str()).collect();
    assert_eq!(names.len(), 7, "{names:?}");
    for l in &layers {
        let bn = l.bn.as_ref().expect("every conv has a BN");
        let idx: usize = l.name.trim_start_matches("features.").trim_end_matches(".weight").parse().unwrap();
        assert_eq!(bn.mean, format!("features.{}.running_mean", idx + 1));
    }
    let folded = load_layer(&b, "vgg.safetensors", "features.0.weight", Layout::Oihw, true).unwrap();
    let raw = load_layer(&b, "vgg.safetensors", "features.0.weight", Layout::Oihw, false).unwrap();
    // Hand-computed fold of output channel 5, from the raw tensors read independently by VggPrefix.
    let p = VggPrefix::from_safetensors(&b).unwrap();
    let c = &p.convs[0];
    let o = 5;
    let s = c.gamma[o] as f64 / (c.var[o] as f64 + 1e-5).sqrt();
    let want_b = s * (c.bias[o] as f64 - c.mean[o] as f64) + c.beta[o] as f64;
    let got_b = folded.bias.as_ref().unwrap()[o] as f64;
    assert!((got_b - want_b).abs() <= 1e-5 * want_b.abs().max(1.0), "{got_b} vs {want_b}");
    for j in 0..27 {
        let want = raw.kernel.data[o * 27 + j] as f64 * s;
        let got = folded.kernel.data[o * 27 + j] as f64;
        assert!((got - want).abs() <= 1e-6 * want.abs().max(1e-6), "{got} vs {want}");
    }
    assert_eq!(folded.kernel, c.folded_kernel);
}

#[test]
fn mtcnn_pnet_onnx_lists_its_five_convs() {
    let b = data("tests/data/mtcnn_pnet.onnx");
    assert_eq!(detect(&b, "pnet.bin").unwrap(), Format::Onnx);
    let layers = list_layers(&b, "mtcnn_pnet.onnx", Layout::Oihw).unwrap();
    let mut shapes: Vec<[usize; 4]> = layers.iter().map(|l| l.shape).collect();
    shapes.sort();
    assert_eq!(shapes, vec![[2, 32, 1, 1], [4, 32, 1, 1], [10, 3, 3, 3], [16, 10, 3, 3], [32, 16, 3, 3]]);
    for l in &layers {
        let g = l.geometry.unwrap();
        assert_eq!((g.stride, g.dilation, g.groups, g.padding), ((1, 1), (1, 1), 1, Padding::default()));
        assert!(l.bias.is_some());
        assert_eq!(l.auto_pad.as_deref(), Some("VALID"));
    }
    let first = load_layer(&b, "mtcnn_pnet.onnx", &layers[0].name, Layout::Oihw, false).unwrap();
    assert_eq!(first.kernel.data.len(), 270);
    assert!(first.kernel.norm_sq() > 0.0);
}

#[test]
fn images_are_refused_with_a_clear_message() {
    let b = data("assets/images/camera.png");
    let e = detect(&b, "camera.npy").unwrap_err().to_string();
    assert!(e.contains("is a PNG image, not a weights file"), "{e}");
}

#[test]
fn pickle_nesting_and_size_are_bounded() {
    // 100 000 nested one-tuples: refused by depth, no stack overflow.
    let mut p = vec![0x80, 2, b')'];
    p.extend(std::iter::repeat_n(0x85u8, 100_000));
    p.push(b'.');
    let e = pickle::load(&p).unwrap_err().to_string();
    assert!(e.contains("nested deeper than 64"), "{e}");
    // A list doubled by memo gets (billion laughs): refused by the value budget.
    let mut p = vec![0x80, 2, b']', b'K', 1, b'a', b'q', 0];
    for _ in 0..40 {
        p.extend([b'h', 0, b'h', 0, 0x86, b'q', 0]);
    }
    p.push(b'.');
    let e = pickle::load(&p).unwrap_err().to_string();
    assert!(e.contains("more than 5000000 values"), "{e}");
}

#[test]
fn pickle_builds_a_plain_state_dict() {
    // {"a": 1, "b": [True, None, 2.5]} with protocol 2 opcodes, as Python's pickle writes it.
    let p = b"\x80\x02}q\x00(X\x01\x00\x00\x00aq\x01K\x01X\x01\x00\x00\x00bq\x02]q\x03(\x88NG@\x04\x00\x00\x00\x00\x00\x00eu.";
    let v = pickle::load(p).unwrap();
    let want = pickle::Value::Dict(vec![
        (pickle::Value::Str("a".into()), pickle::Value::Int(1)),
        (
            pickle::Value::Str("b".into()),
            pickle::Value::List(vec![
                pickle::Value::Bool(true),
                pickle::Value::None,
                pickle::Value::Float(2.5),
            ]),
        ),
    ]);
    assert_eq!(v, want);
}

#[test]
fn safetensors_with_a_header_length_starting_with_0x80_is_not_a_pickle() {
    let mut header = br#"{"w":{"dtype":"F32","shape":[1,1,1,2],"data_offsets":[0,8]}}"#.to_vec();
    header.resize(384, b' ');
    let mut b = (384u64).to_le_bytes().to_vec();
    assert_eq!(b[0], 0x80);
    b.extend(&header);
    b.extend(1.5f32.to_le_bytes());
    b.extend((-2.0f32).to_le_bytes());
    assert_eq!(detect(&b, "x.safetensors").unwrap(), Format::Safetensors);
    let l = load_layer(&b, "x.safetensors", "w", Layout::Oihw, false).unwrap();
    assert_eq!(l.kernel.data, vec![1.5, -2.0]);
}
