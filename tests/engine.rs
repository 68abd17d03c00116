//! The worker's engine, natively: load an example from its bytes, decouple, run forward, and
//! check its answers against the core (and METHOD.md's identities); bad input gives an error
//! response, never a panic.

use ndlab::decouple::Decomposition;
use ndlab::engine::Engine;
use ndlab::examples::{self, KernelSource};
use ndlab::protocol::{from_json, to_json, Request, RequestBody, Response, ResponseBody};
use ndlab::Order;
use std::path::Path;

fn clock() -> f64 {
    use std::sync::OnceLock;
    use std::time::Instant;
    static START: OnceLock<Instant> = OnceLock::new();
    START.get_or_init(Instant::now).elapsed().as_secs_f64() * 1e3
}

/// Runs one request through the engine, providing the files it asks for from the repository.
fn ask(engine: &mut Engine, id: u64, body: RequestBody) -> (Response, Vec<Response>) {
    for path in engine.assets_needed(&body) {
        let bytes = std::fs::read(Path::new(env!("CARGO_MANIFEST_DIR")).join(&path)).expect("asset file");
        engine.provide(&path, bytes);
    }
    let mut progress = Vec::new();
    let resp = engine.handle(Request { id, body }, &mut |p| progress.push(p));
    // Every message survives the JSON round trip the worker uses (floats to within JSON's
    // decimal rounding, so compare the id and the kind of answer, not bits).
    let back: Response = from_json(&to_json(&resp)).expect("round trip");
    assert!(back.id == resp.id && std::mem::discriminant(&back.body) == std::mem::discriminant(&resp.body));
    (resp, progress)
}

/// A smooth synthetic RGBA image (w × h).
fn image(w: usize, h: usize) -> RequestBody {
    let mut rgba = Vec::with_capacity(w * h * 4);
    for y in 0..h {
        for x in 0..w {
            rgba.extend([(x * 255 / w) as u8, (y * 255 / h) as u8, ((x + y) * 127 / (w + h)) as u8, 255]);
        }
    }
    RequestBody::LoadImage { rgba, width: w, height: h }
}

fn kernel_of(example: &str) -> ndlab::Kernel {
    let ex = examples::find(example).expect("example");
    let KernelSource::Asset(p) = ex.kernel else { panic!("{example} is generated") };
    let bytes = std::fs::read(Path::new(env!("CARGO_MANIFEST_DIR")).join(p)).expect("read");
    ndlab::npy::read_npy(&bytes).expect("npy").into_kernel().expect("kernel")
}

#[test]
fn load_decouple_and_forward_agree_with_the_core() {
    let mut e = Engine::new(clock);
    let (resp, _) = ask(&mut e, 1, RequestBody::LoadExample { example: "vgg16bn_conv1_1".into() });
    assert_eq!(resp.id, 1);
    let ResponseBody::Layer(summary) = resp.body else { panic!("expected a layer, got {:?}", resp.body) };
    assert_eq!((summary.n, summary.c, summary.kh, summary.kw), (64, 3, 3, 3));
    // Summaries carry σ only, and the same curves as a decomposition computed here.
    let kernel = kernel_of("vgg16bn_conv1_1");
    for order in [Order::DwPw, Order::PwDw] {
        let mine = Decomposition::new(&kernel, 1, order).expect("decouple");
        let theirs = &summary.order(order).expect("order").spectra;
        assert_eq!(theirs.full_rank, mine.full_rank);
        assert!(theirs.slices.iter().all(|s| s.dw.is_empty() && s.pw.is_empty()));
        for (a, b) in theirs.rel_weight_error().iter().zip(mine.rel_weight_error()) {
            assert!((a - b).abs() <= 1e-12, "{a} vs {b}");
        }
        // METHOD.md check 3: the energy kept complements the squared error; full rank is exact.
        let err = theirs.rel_weight_error();
        assert!(err.last().copied().unwrap_or(1.0) < 1e-6);
    }
    assert!(matches!(ask(&mut e, 2, image(40, 32)).0.body, ResponseBody::Input(_)));
    let dec = Decomposition::new(&kernel, 1, Order::DwPw).expect("decouple");
    for t in 1..=dec.full_rank {
        let (resp, _) =
            ask(&mut e, 10 + t as u64, RequestBody::Forward { t, order: Order::DwPw, out_channel: 5 });
        let ResponseBody::Forward(f) = resp.body else { panic!("expected forward, got {:?}", resp.body) };
        assert_eq!(f.weight_error, dec.rel_weight_error()[t - 1]);
        assert_eq!((f.h, f.w), (32, 40), "padding 1 keeps the size");
        assert_eq!(f.original.len(), 32 * 40);
        if t == dec.full_rank {
            assert!(f.rel_error < 1e-4, "full rank reproduces the layer: {}", f.rel_error);
        }
    }
}

#[test]
fn output_error_curve_ends_at_zero_and_slices_rebuild_the_kernel() {
    let mut e = Engine::new(clock);
    ask(&mut e, 1, image(24, 24));
    ask(&mut e, 2, RequestBody::LoadExample { example: "mtcnn_onet_conv1".into() });
    let (resp, progress) = ask(&mut e, 3, RequestBody::OutputErrorCurve { order: Order::PwDw });
    let ResponseBody::OutputErrorCurve { errors, .. } = resp.body else { panic!("{:?}", resp.body) };
    assert_eq!(errors.len(), 3, "PW→DW full rank of a 3-input layer is 3");
    assert!(errors[2] < 1e-4);
    assert!(progress.iter().all(|p| p.id == 3));
    // The slice view: Σ_k pw_k ⊗ dw_k rebuilds the slice matrix (METHOD.md check 5: compare
    // reconstructions, not raw vectors).
    let (resp, _) = ask(&mut e, 4, RequestBody::Slice { order: Order::DwPw, slice: 2 });
    let ResponseBody::Slice(s) = resp.body else { panic!("{:?}", resp.body) };
    let kernel = kernel_of("mtcnn_onet_conv1");
    for r in 0..s.rows {
        for j in 0..s.k2 {
            let rebuilt: f64 = (0..s.factors.sigma.len())
                .map(|k| s.factors.pw[k * s.rows + r] * s.factors.dw[k * s.k2 + j])
                .sum();
            let original = kernel.filter(r, 2)[j] as f64;
            assert!((rebuilt - original).abs() < 1e-5, "row {r} col {j}: {rebuilt} vs {original}");
            assert_eq!(s.matrix[r * s.k2 + j], original);
        }
    }
}

#[test]
fn bad_requests_give_error_responses() {
    let mut e = Engine::new(clock);
    let is_error = |r: Response| matches!(r.body, ResponseBody::Error { .. });
    assert!(is_error(ask(&mut e, 1, RequestBody::Forward { t: 1, order: Order::DwPw, out_channel: 0 }).0));
    assert!(is_error(ask(&mut e, 2, RequestBody::LoadExample { example: "nope".into() }).0));
    assert!(is_error(ask(&mut e, 3, RequestBody::LoadImage { rgba: vec![1, 2, 3], width: 7, height: 9 }).0));
    assert!(is_error(ask(&mut e, 4, RequestBody::LoadImage { rgba: vec![], width: 0, height: 0 }).0));
    ask(&mut e, 5, RequestBody::LoadExample { example: "vgg16bn_conv1_1".into() });
    ask(&mut e, 6, image(8, 8));
    for (t, out) in [(0, 0), (10, 0), (usize::MAX, 0), (1, 64), (1, usize::MAX)] {
        let r = ask(&mut e, 7, RequestBody::Forward { t, order: Order::DwPw, out_channel: out }).0;
        assert!(is_error(r), "T={t} out={out}");
    }
    assert!(is_error(ask(&mut e, 8, RequestBody::Slice { order: Order::PwDw, slice: 64 }).0));
    // A weights file that is not a .npy.
    let mut e = Engine::new(clock);
    let body = RequestBody::LoadExample { example: "vgg16bn_conv1_1".into() };
    for path in e.assets_needed(&body) {
        e.provide(&path, b"not a numpy file".to_vec());
    }
    let resp = e.handle(Request { id: 9, body }, &mut |_| {});
    assert_eq!(resp.id, 9);
    assert!(is_error(resp));
    // Garbage JSON is a readable error, not a panic.
    assert!(from_json::<Request>("{\"id\":1,\"body\":{\"Forward\":{\"t\":-1}}}").is_err());
}
