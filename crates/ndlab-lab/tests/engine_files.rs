//! The engine with the user's model file: open (listing), load a layer (folded or not), run it on
//! an image; hostile files give one message and leave the loaded layer working. Values are checked
//! against tests/corpus/expected.json (written by numpy/PyTorch-format code in make_corpus.py).

use ndlab_core::Order;
use ndlab_io::formats::Layout;
use ndlab_lab::engine::Engine;
use ndlab_lab::protocol::{Request, RequestBody, Response, ResponseBody};
use serde_json::Value;

fn clock() -> f64 {
    0.0
}

fn corpus(name: &str) -> Vec<u8> {
    std::fs::read(format!("{}/tests/corpus/{name}", concat!(env!("CARGO_MANIFEST_DIR"), "/../.."))).unwrap()
}

fn expected(name: &str) -> Value {
    let all: Value = serde_json::from_slice(&corpus("expected.json")).unwrap();
    all[name].clone()
}

fn ask(e: &mut Engine, id: u64, body: RequestBody) -> (ResponseBody, Vec<Response>) {
    let mut progress = Vec::new();
    let r = e.handle(Request { id, body }, &mut |p| progress.push(p));
    assert_eq!(r.id, id);
    (r.body, progress)
}

fn open(e: &mut Engine, name: &str) -> ResponseBody {
    e.provide_file(Box::new(corpus(name)));
    ask(e, 1, RequestBody::OpenFile { name: name.into(), layout: Layout::Oihw }).0
}

fn image() -> RequestBody {
    let (w, h) = (36, 28);
    let rgba = (0..w * h).flat_map(|i| [(i * 5 % 256) as u8, (i / w * 9 % 256) as u8, 90, 255]).collect();
    RequestBody::LoadImage { rgba, width: w, height: h }
}

/// The slice matrix element of W[o, i, y, x] (DW→PW slice i holds rows o).
fn weight_via_slice(e: &mut Engine, idx: &[usize]) -> f64 {
    let (body, _) = ask(e, 5, RequestBody::Slice { order: Order::DwPw, slice: idx[1] });
    let ResponseBody::Slice(s) = body else { panic!("{body:?}") };
    s.matrix[idx[0] * s.k2 + idx[2] * s.kw + idx[3]]
}

#[test]
fn a_pytorch_file_layer_loads_folded_and_runs_on_the_image() {
    let mut e = Engine::new(clock);
    let ResponseBody::FileListing(l) = open(&mut e, "state_dict.pth") else { panic!() };
    assert_eq!(l.layers.len(), 2);
    assert_eq!(l.layers[0].bn.as_deref(), Some("model.features.1"));
    let spec = expected("state_dict.pth");
    for (fold, key) in [(false, "check"), (true, "check_folded")] {
        let c = &spec[key];
        let (body, _) = ask(
            &mut e,
            2,
            RequestBody::LoadFileLayer { layer: c["layer"].as_str().unwrap().into(), fold_bn: fold },
        );
        let ResponseBody::Layer(s) = body else { panic!("{body:?}") };
        assert_eq!((s.n, s.c, s.kh, s.kw), (4, 2, 3, 3));
        assert!(s.title.contains("state_dict.pth"));
        let idx: Vec<usize> =
            c["index"].as_array().unwrap().iter().map(|v| v.as_u64().unwrap() as usize).collect();
        let want = c["value"].as_f64().unwrap();
        let got = weight_via_slice(&mut e, &idx);
        assert!((got - want).abs() < 1e-5, "{key}: {got} vs {want}");
    }
    assert!(matches!(ask(&mut e, 3, image()).0, ResponseBody::Input(_)));
    let (body, _) = ask(&mut e, 4, RequestBody::Forward { t: 2, order: Order::PwDw, out_channel: 1 });
    let ResponseBody::Forward(f) = body else { panic!("{body:?}") };
    assert_eq!((f.maps.h, f.maps.w), (26, 34), "3×3, no padding in a state_dict: 28−2 × 36−2");
    // PW→DW full rank is C = 2: T = 2 is exact.
    assert!(f.rel_error < 1e-5, "{}", f.rel_error);
}

#[test]
fn hostile_files_give_their_message_and_the_loaded_layer_keeps_working() {
    let mut e = Engine::new(clock);
    assert!(matches!(open(&mut e, "good.npz"), ResponseBody::FileListing(_)));
    let (body, _) =
        ask(&mut e, 2, RequestBody::LoadFileLayer { layer: "conv1.weight".into(), fold_bn: false });
    assert!(matches!(body, ResponseBody::Layer(_)), "{body:?}");
    ask(&mut e, 3, image());
    let forward = RequestBody::Forward { t: 1, order: Order::DwPw, out_channel: 3 };
    let (before, _) = ask(&mut e, 4, forward.clone());
    let all: Value = serde_json::from_slice(&corpus("expected.json")).unwrap();
    let mut checked = 0;
    for (name, spec) in all.as_object().unwrap() {
        let Some(msg) = spec.get("error").and_then(Value::as_str) else { continue };
        let body = open(&mut e, name);
        let ResponseBody::Error { message } = body else { panic!("{name}: {body:?}") };
        assert!(message.contains(msg), "{name}: '{message}' lacks '{msg}'");
        checked += 1;
    }
    for (name, spec) in all.as_object().unwrap() {
        let Some(le) = spec.get("load_error") else { continue };
        assert!(matches!(open(&mut e, name), ResponseBody::FileListing(_)), "{name}");
        let layer = le["layer"].as_str().unwrap().to_string();
        let (body, _) = ask(&mut e, 6, RequestBody::LoadFileLayer { layer, fold_bn: false });
        let ResponseBody::Error { message } = body else { panic!("{name}: {body:?}") };
        assert!(message.contains(le["error"].as_str().unwrap()), "{name}: {message}");
        checked += 1;
    }
    assert!(checked >= 20, "{checked}");
    // The good layer is still loaded: same answer as before the hostile files.
    let (after, _) = ask(&mut e, 7, forward);
    // (The first answer for the channel also carried its term maps, sent once.)
    let strip = |b: ResponseBody| match b {
        ResponseBody::Forward(mut f) => {
            f.terms = None;
            format!("{f:?}")
        }
        other => format!("{other:?}"),
    };
    assert_eq!(strip(before), strip(after));
    let want = expected("good.npz")["check"]["value"].as_f64().unwrap();
    assert!((weight_via_slice(&mut e, &[1, 2, 0, 1]) - want).abs() < 1e-6);
}

#[test]
fn an_onnx_layer_keeps_its_geometry_and_no_file_means_a_message() {
    let mut e = Engine::new(clock);
    let (body, _) = ask(&mut e, 1, RequestBody::OpenFile { name: "x.onnx".into(), layout: Layout::Oihw });
    assert!(matches!(body, ResponseBody::Error { .. }));
    let (body, _) = ask(&mut e, 1, RequestBody::LoadFileLayer { layer: "a".into(), fold_bn: false });
    assert!(matches!(body, ResponseBody::Error { .. }));
    let ResponseBody::FileListing(l) = open(&mut e, "raw_pads.onnx") else { panic!() };
    let name = l.layers[0].name.clone();
    let (body, _) = ask(&mut e, 2, RequestBody::LoadFileLayer { layer: name, fold_bn: false });
    let ResponseBody::Layer(s) = body else { panic!("{body:?}") };
    assert_eq!(s.geometry.stride, (2, 2));
    assert_eq!(s.geometry.groups, 2);
    ask(&mut e, 3, image());
    let (body, _) = ask(&mut e, 4, RequestBody::Forward { t: 1, order: Order::DwPw, out_channel: 0 });
    let ResponseBody::Forward(f) = body else { panic!("{body:?}") };
    // H = (28 + 0 + 2 − 3)/2 + 1 = 14, W = (36 + 1 + 1 − 5)/2 + 1 = 17.
    assert_eq!((f.maps.h, f.maps.w), (14, 17));
}

/// A folded layer has a bias: the first forward answer for a channel carries it with the term
/// maps, and the maps plus the bias, summed as the page sums them, give the worker's decoupled
/// maps at every T (bit for bit) and, at full rank, the original layer's.
#[test]
fn the_term_maps_sent_to_the_page_carry_the_bias() {
    let mut e = Engine::new(clock);
    let ResponseBody::FileListing(l) = open(&mut e, "state_dict.pth") else { panic!() };
    let (body, _) =
        ask(&mut e, 2, RequestBody::LoadFileLayer { layer: l.layers[0].name.clone(), fold_bn: true });
    assert!(matches!(body, ResponseBody::Layer(_)), "{body:?}");
    ask(&mut e, 3, image());
    let forward = |e: &mut Engine, id, t| {
        let (body, _) = ask(e, id, RequestBody::Forward { t, order: Order::DwPw, out_channel: 1 });
        let ResponseBody::Forward(f) = body else { panic!("{body:?}") };
        *f
    };
    let first = forward(&mut e, 4, 1);
    let terms = first.terms.clone().expect("the first answer carries the term maps");
    assert!(terms.bias != 0.0, "folding BatchNorm gives a bias");
    let full = terms.maps.len();
    assert!(full >= 2, "{full} terms");
    for t in 1..=full {
        let f = forward(&mut e, 5 + t as u64, t);
        let sum = ndlab_core::decouple::terms::sum_terms(&terms.maps[..t], terms.bias);
        assert_eq!(sum, f.maps.decoupled, "T = {t}");
        if t == full {
            let worst = sum.iter().zip(&f.maps.original).map(|(a, b)| (a - b).abs()).fold(0.0f32, f32::max);
            assert!(worst < 1e-4, "full rank is the original layer ({worst})");
        }
    }
}
