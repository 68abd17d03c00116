//! The worker's engine, natively: load an example from its bytes, decouple, run forward, and
//! check its answers against the core (and METHOD.md's identities); bad input gives an error
//! response, never a panic.

use ndlab_core::decouple::terms::KeepTerms;
use ndlab_core::decouple::Decomposition;
use ndlab_core::Order;
use ndlab_lab::engine::{DirAssets, Engine};
use ndlab_lab::examples::{self, KernelSource};
use ndlab_lab::protocol::{from_json, to_json, Request, RequestBody, Response, ResponseBody};
use std::path::Path;

fn clock() -> f64 {
    use std::sync::OnceLock;
    use std::time::Instant;
    static START: OnceLock<Instant> = OnceLock::new();
    START.get_or_init(Instant::now).elapsed().as_secs_f64() * 1e3
}

/// The repository's top folder (the app's files are under `assets/`).
fn repo() -> DirAssets {
    DirAssets(Path::new(env!("CARGO_MANIFEST_DIR")).join("../.."))
}

/// Runs one request through the engine, providing the files it asks for from the repository.
fn ask(engine: &mut Engine, id: u64, body: RequestBody) -> (Response, Vec<Response>) {
    let mut progress = Vec::new();
    let resp = engine.handle_with(&repo(), Request { id, body }, &mut |p| progress.push(p));
    if let ResponseBody::Error { message } = &resp.body {
        assert!(!message.starts_with("could not load"), "{message}");
    }
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

fn kernel_of(example: &str) -> ndlab_core::Kernel {
    let ex = examples::find(example).expect("example");
    let KernelSource::Asset(p) = ex.kernel else { panic!("{example} is generated") };
    let bytes =
        std::fs::read(Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../..")).join(p)).expect("read");
    ndlab_io::npy::read_npy(&bytes).expect("npy").into_kernel().expect("kernel")
}

#[test]
fn load_decouple_and_forward_agree_with_the_core() {
    let mut e = Engine::new(clock);
    let (resp, _) =
        ask(&mut e, 1, RequestBody::LoadExample { example: "vgg16bn_conv1_1".into(), slice: None });
    assert_eq!(resp.id, 1);
    let ResponseBody::Layer(summary) = resp.body else { panic!("expected a layer, got {:?}", resp.body) };
    assert_eq!((summary.n, summary.c, summary.kh, summary.kw), (64, 3, 3, 3));
    // Summaries carry σ only, and the same curves as a decomposition computed here.
    let kernel = kernel_of("vgg16bn_conv1_1");
    for order in [Order::DwPw, Order::PwDw] {
        let mine = Decomposition::new(&kernel, 1, order).expect("decouple");
        let theirs = &summary.order(order).expect("order").spectra;
        assert_eq!(theirs.full_rank, mine.full_rank);
        assert_eq!(theirs.slices.len(), mine.slices.len());
        for (a, b) in theirs.slices.iter().zip(&mine.slices) {
            assert_eq!((&a.sigma, a.energy), (&b.sigma, b.energy));
        }
        for (a, b) in theirs.rel_weight_error().iter().zip(mine.rel_weight_error()) {
            assert!((a - b).abs() <= 1e-12, "{a} vs {b}");
        }
        // METHOD.md check 3: the energy kept complements the squared error; full rank is exact.
        let err = theirs.rel_weight_error();
        assert!(err.last().copied().unwrap_or(1.0) < 1e-6);
    }
    assert!(matches!(ask(&mut e, 2, image(40, 32)).0.body, ResponseBody::Input(_)));
    // The maps against the core's direct convs on the same input (the page's RGBA, normalised as
    // the engine does for a 3-channel layer): the first forward (T = 4 here) computes both as sums
    // of the layer's terms and keeps each term's output; the later ones sum the first T of those.
    let layer = ndlab_core::layer::ConvLayer::new(
        kernel.clone(),
        None,
        ndlab_core::layer::ConvGeometry::new(1, 1, 1),
    )
    .expect("layer");
    let x = page_input(40, 32);
    let direct = ndlab_core::conv::layer_forward(&x, &layer).expect("direct");
    // Both orderings (PW→DW's first forward runs its own terms), two output channels.
    for order in [Order::DwPw, Order::PwDw] {
        let dec = Decomposition::new(&kernel, 1, order).expect("decouple");
        for (i, t) in [dec.full_rank.min(4)].into_iter().chain(1..=dec.full_rank).enumerate() {
            let ch = if i % 2 == 0 { 5 } else { 17 };
            let id = 10 + 20 * order as u64 + i as u64;
            let (resp, _) = ask(&mut e, id, RequestBody::Forward { t, order, out_channel: ch });
            let ResponseBody::Forward(f) = resp.body else { panic!("expected forward, got {:?}", resp.body) };
            assert_eq!(f.weight_error, dec.rel_weight_error()[t - 1]);
            assert_eq!((f.maps.h, f.maps.w), (32, 40), "padding 1 keeps the size");
            assert!(rel_diff(&f.maps.original, direct.channel(ch)) <= 1e-5, "{order:?} T={t}: original map");
            let y = ndlab_core::conv::decoupled_forward(
                &x,
                &dec.merged(t).expect("merged"),
                None,
                &layer.geometry,
            )
            .expect("decoupled");
            assert!(rel_diff(&f.maps.decoupled, y.channel(ch)) <= 1e-5, "{order:?} T={t}: decoupled map");
            let want = y.rel_error(&direct).expect("error");
            // (At full rank the curve says exactly 0; the direct measure leaves f32 rounding, ≈ 1e-7.)
            let got = f.rel_error;
            assert!((got - want).abs() <= 1e-4 * want.max(1e-2), "{order:?} T={t}: {got} vs {want}");
            if t == dec.full_rank {
                assert!(f.rel_error < 1e-4, "full rank reproduces the layer: {}", f.rel_error);
            }
        }
    }
}

/// The 3-channel input the engine makes of [`image`]`(w, h)`: its RGBA at the working size,
/// normalised with the ImageNet statistics.
fn page_input(w: usize, h: usize) -> ndlab_core::layer::FeatureMap {
    let RequestBody::LoadImage { rgba, width, height } = image(w, h) else { unreachable!() };
    ndlab_io::vgg::image_to_map(
        &rgba,
        width,
        height,
        ndlab_lab::engine::WORKING_SIDE,
        ndlab_io::vgg::Normalisation::ImageNet,
    )
    .expect("input")
}

#[test]
fn output_error_curve_ends_at_zero_and_slices_rebuild_the_kernel() {
    let mut e = Engine::new(clock);
    ask(&mut e, 1, image(24, 24));
    ask(&mut e, 2, RequestBody::LoadExample { example: "mtcnn_onet_conv1".into(), slice: None });
    let (resp, progress) = ask(&mut e, 3, RequestBody::OutputErrorCurve { order: Order::PwDw });
    let ResponseBody::OutputErrorCurve(curve) = resp.body else { panic!("{:?}", resp.body) };
    assert_eq!(curve.errors.len(), 3, "PW→DW full rank of a 3-input layer is 3");
    assert!(curve.errors[2] < 1e-4);
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
    assert!(is_error(ask(&mut e, 2, RequestBody::LoadExample { example: "nope".into(), slice: None }).0));
    assert!(is_error(ask(&mut e, 3, RequestBody::LoadImage { rgba: vec![1, 2, 3], width: 7, height: 9 }).0));
    assert!(is_error(ask(&mut e, 4, RequestBody::LoadImage { rgba: vec![], width: 0, height: 0 }).0));
    ask(&mut e, 5, RequestBody::LoadExample { example: "vgg16bn_conv1_1".into(), slice: None });
    ask(&mut e, 6, image(8, 8));
    for (t, out) in [(0, 0), (10, 0), (usize::MAX, 0), (1, 64), (1, usize::MAX)] {
        let r = ask(&mut e, 7, RequestBody::Forward { t, order: Order::DwPw, out_channel: out }).0;
        assert!(is_error(r), "T={t} out={out}");
    }
    assert!(is_error(ask(&mut e, 8, RequestBody::Slice { order: Order::PwDw, slice: 64 }).0));
    // A weights file that is not a .npy.
    let mut e = Engine::new(clock);
    let body = RequestBody::LoadExample { example: "vgg16bn_conv1_1".into(), slice: None };
    for path in e.assets_needed(&body) {
        e.provide(&path, b"not a numpy file".to_vec());
    }
    let resp = e.handle(Request { id: 9, body }, &mut |_| {});
    assert_eq!(resp.id, 9);
    assert!(is_error(resp));
    // Garbage JSON is a readable error, not a panic.
    assert!(from_json::<Request>("{\"id\":1,\"body\":{\"Forward\":{\"t\":-1}}}").is_err());
}

/// The layer comes with the view of the slice the page shows (clamped), equal to what a Slice
/// request answers; with an image already set, the layer is sent first as a partial answer and
/// the input (network prefix + original layer) follows as the final one.
#[test]
fn layer_comes_first_with_its_slice_then_the_input() {
    let mut e = Engine::new(clock);
    let body =
        RequestBody::LoadExample { example: "mtcnn_onet_conv1".into(), slice: Some((Order::PwDw, 10_000)) };
    let (resp, progress) = ask(&mut e, 1, body);
    assert!(progress.iter().all(|p| matches!(p.body, ResponseBody::Progress { .. })), "no image: no partial");
    let ResponseBody::Layer(summary) = resp.body else { panic!("{:?}", resp.body) };
    let view = summary.slice.clone().expect("the asked-for slice");
    let last = summary.order(Order::PwDw).expect("order").spectra.slices.len() - 1;
    assert_eq!((view.order, view.index), (Order::PwDw, last), "index clamped to the last slice");
    let (resp, _) = ask(&mut e, 2, RequestBody::Slice { order: Order::PwDw, slice: last });
    assert_eq!(resp.body, ResponseBody::Slice(Box::new(view)));

    ask(&mut e, 3, image(24, 20));
    let body = RequestBody::LoadExample { example: "mtcnn_onet_conv1".into(), slice: Some((Order::DwPw, 1)) };
    let (resp, progress) = ask(&mut e, 4, body);
    let partial: Vec<_> = progress
        .iter()
        .filter_map(|p| match &p.body {
            ResponseBody::Partial(inner) => Some(inner.as_ref()),
            _ => None,
        })
        .collect();
    assert_eq!(partial.len(), 1, "one partial answer");
    let ResponseBody::Layer(summary) = partial[0] else { panic!("partial is {:?}", partial[0]) };
    assert!(summary.input.is_none(), "the layer goes out before its input is computed");
    assert_eq!(summary.slice.as_ref().map(|s| (s.order, s.index)), Some((Order::DwPw, 1)));
    let ResponseBody::Input(input) = resp.body else { panic!("final answer {:?}", resp.body) };
    assert_eq!((input.c, input.h, input.w), (summary.c, 20, 24));
}

/// The output error curve of the terms pass (single-term convs and suffix sums) equals the
/// direct measure ‖conv(x, W − W_T)‖ / ‖conv(x, W) + b‖ with W − W_T rebuilt and run through the
/// regular conv.
#[test]
fn terms_pass_error_curve_matches_the_direct_measure() {
    use ndlab_charts::OutputErrorData;
    use ndlab_core::layer::{ConvGeometry, ConvLayer, FeatureMap};
    let kernel = kernel_of("vgg16bn_conv1_2");
    let (n, c) = (kernel.n, kernel.c);
    let bias: Vec<f32> = (0..n).map(|i| (i as f32 * 0.37).sin()).collect();
    let layer = ConvLayer::new(kernel, Some(bias), ConvGeometry::new(1, 1, 1)).expect("layer");
    // A smooth, non-negative input like post-ReLU activations.
    let (h, w) = (9, 11);
    let data: Vec<f32> = (0..c * h * w)
        .map(|i| ((i % 97) as f32 * 0.13).sin().max(0.0) + (i / (h * w)) as f32 * 0.01)
        .collect();
    let x = FeatureMap::new(c, h, w, data).expect("input");
    for order in [Order::DwPw, Order::PwDw] {
        let dec = Decomposition::new(&layer.kernel, 1, order).expect("decouple");
        let bias = layer.bias.as_deref();
        let fast = ndlab_core::decouple::terms::decoupled_by_terms(
            &dec,
            &x,
            bias,
            &layer.geometry,
            None,
            KeepTerms::NONE,
            &mut |_, _| {},
        )
        .expect("by terms")
        .errors;
        let direct =
            OutputErrorData::measure(&x, &layer, &[&dec], 1, order, "").expect("direct").series[0].1.clone();
        assert_eq!(fast.len(), direct.len());
        for (t, (a, b)) in fast.iter().zip(&direct).enumerate() {
            assert!((a - b).abs() <= 1e-4 * b.max(1e-3), "{order:?} T={}: {a} vs {b}", t + 1);
        }
        assert_eq!(*fast.last().expect("full rank"), 0.0);
        assert!(fast[0] > 0.05, "T = 1 loses a visible part of the output: {}", fast[0]);
    }
}

/// One pass over the terms gives the original layer's output (with its bias), the decoupled
/// layer's at T and the error curve: each against the core's direct convs, on a real layer with
/// a bias, both orderings, plain and strided + dilated + grouped geometry.
#[test]
fn decoupled_by_terms_matches_the_direct_convs() {
    use ndlab_core::layer::{ConvGeometry, ConvLayer, FeatureMap};
    let full = kernel_of("vgg16bn_conv1_2");
    // Two groups: the first 32 outputs see the first 32 inputs' filters, the rest the others'.
    let grouped = {
        let (n, c) = (full.n, full.c / 2);
        let full = &full;
        let data = (0..n)
            .flat_map(|o| (0..c).flat_map(move |i| full.filter(o, i + (o / 32) * c).to_vec()))
            .collect();
        ndlab_core::Kernel::new(n, c, 3, 3, data).expect("grouped kernel")
    };
    let strided = ConvGeometry { stride: (2, 1), dilation: (1, 2), groups: 2, ..ConvGeometry::new(1, 2, 1) };
    for (kernel, geometry) in [(full.clone(), ConvGeometry::new(1, 1, 1)), (grouped, strided)] {
        let (n, c) = (kernel.n, kernel.c * geometry.groups);
        let bias: Vec<f32> = (0..n).map(|i| (i as f32 * 0.37).sin()).collect();
        let layer = ConvLayer::new(kernel, Some(bias.clone()), geometry).expect("layer");
        let (h, w) = (9, 11);
        let data: Vec<f32> = (0..c * h * w).map(|i| ((i % 97) as f32 * 0.13).sin().max(0.0)).collect();
        let x = FeatureMap::new(c, h, w, data).expect("input");
        let y = ndlab_core::conv::layer_forward(&x, &layer).expect("forward");
        for order in [Order::DwPw, Order::PwDw] {
            let dec = Decomposition::new(&layer.kernel, geometry.groups, order).expect("decouple");
            for t in [1, 2, dec.full_rank] {
                let pass = ndlab_core::decouple::terms::decoupled_by_terms(
                    &dec,
                    &x,
                    Some(&bias),
                    &geometry,
                    Some(t),
                    // The terms' outputs are kept when they fit: all channels at T = 1, one
                    // channel at T = 2, none at full rank.
                    KeepTerms {
                        max_floats: if t == 1 {
                            y.data.len() * dec.full_rank
                        } else {
                            y.data.len() * dec.full_rank - 1
                        },
                        channel: (t == 2).then_some(3),
                    },
                    &mut |_, _| {},
                )
                .expect("pass");
                let what = format!("{order:?} groups={} T={t}", geometry.groups);
                let plane = y.h * y.w;
                let want_channels = match t {
                    1 => 0..n,
                    2 => 3..4,
                    _ => 0..0,
                };
                assert_eq!(pass.terms_channels, want_channels, "{what}: kept channels");
                assert_eq!(
                    pass.terms.len(),
                    if want_channels.is_empty() { 0 } else { dec.full_rank },
                    "{what}"
                );
                for (k, term) in pass.terms.iter().enumerate() {
                    let one = dec.term(k).and_then(|d| d.merged(1)).expect("term");
                    let direct =
                        ndlab_core::conv::decoupled_forward(&x, &one, None, &geometry).expect("term conv");
                    let range = want_channels.start * plane..want_channels.end * plane;
                    assert_eq!(term.as_slice(), &direct.data[range], "{what}: term {k}");
                }
                assert!(rel_diff(&pass.original.data, &y.data) <= 1e-5, "{what}: original");
                let direct = ndlab_core::conv::decoupled_forward(
                    &x,
                    &dec.merged(t).expect("merged"),
                    Some(&bias),
                    &geometry,
                )
                .expect("decoupled");
                let at_t = pass.at_t.expect("output at T");
                assert_eq!((at_t.c, at_t.h, at_t.w), (direct.c, direct.h, direct.w));
                assert!(rel_diff(&at_t.data, &direct.data) <= 1e-5, "{what}: decoupled");
                // The curve at T against the direct measure ‖y_T − y‖ / ‖y‖ (at full rank the
                // curve says exactly 0, the direct measure leaves f32 rounding).
                assert_eq!(pass.errors.len(), dec.full_rank);
                let (got, want) = (pass.errors[t - 1], direct.rel_error(&y).expect("error"));
                assert!((got - want).abs() <= 1e-4 * want.max(1e-2), "{what}: {got} vs {want}");
                assert_eq!(*pass.errors.last().expect("full rank"), 0.0);
            }
        }
    }
}

/// The warm-up runs every heavy path on tiny inputs without error and returns a finite sum.
#[test]
fn warm_up_runs_the_heavy_paths() {
    let sum = ndlab_lab::engine::warm_up().expect("warm-up");
    assert!(sum.is_finite());
}

/// True when any progress message says the network input is being computed.
fn computed_input(progress: &[Response]) -> bool {
    progress
        .iter()
        .any(|p| matches!(&p.body, ResponseBody::Progress { stage, .. } if stage.contains("input")))
}

/// The worker loads the address's example and image on its own at start-up; when the page then
/// asks for the same layer, image, forward pass and curve, the engine answers from what it holds
/// (no second decoupling or network run), and a built-in image decoded in the worker gives the
/// same input as the same pixels sent by the page.
#[test]
fn repeated_requests_are_answered_from_what_the_engine_holds() {
    let mut e = Engine::new(clock);
    let load =
        || RequestBody::LoadExample { example: "vgg16bn_conv1_2".into(), slice: Some((Order::DwPw, 3)) };
    let (first, _) = ask(&mut e, 0, load());
    let ResponseBody::Layer(layer) = first.body else { panic!("{:?}", first.body) };
    let astronaut = RequestBody::LoadBuiltinImage { image: "astronaut".into() };
    let needed = e.assets_needed(&astronaut);
    assert!(needed.contains(&"assets/images/astronaut_256.png".to_string()), "{needed:?}");
    let (resp, progress) = ask(&mut e, 0, astronaut.clone());
    assert!(computed_input(&progress));
    let ResponseBody::Input(input) = resp.body else { panic!("{:?}", resp.body) };
    assert_eq!((input.c, input.h, input.w), (64, 160, 160));
    let forward = RequestBody::Forward { t: 2, order: Order::DwPw, out_channel: 5 };
    let (f0, _) = ask(&mut e, 0, forward.clone());

    // The page's requests: the layer comes again (same decoupling times: not redone), then the
    // input without recomputing it, then the forward pass as it was.
    let (again, progress) = ask(&mut e, 1, load());
    assert!(!computed_input(&progress) && !progress.iter().any(|p| format!("{p:?}").contains("decoupling")));
    let ResponseBody::Input(same) = again.body else { panic!("{:?}", again.body) };
    assert_eq!(same, input);
    let partial = progress.iter().find_map(|p| match &p.body {
        ResponseBody::Partial(inner) => Some(inner.as_ref().clone()),
        _ => None,
    });
    let Some(ResponseBody::Layer(l2)) = partial else { panic!("no partial layer") };
    assert_eq!(l2.orders, layer.orders);
    assert!(e.assets_needed(&astronaut).is_empty(), "already decoded");
    let (resp, progress) = ask(&mut e, 2, astronaut);
    assert!(!computed_input(&progress));
    assert_eq!(resp.body, ResponseBody::Input(input.clone()));
    let (f1, _) = ask(&mut e, 3, forward);
    assert_eq!(f1.body, f0.body);

    // The same pixels sent by the page (RGBA) give the same input and maps.
    let bytes = std::fs::read(
        Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../..")).join("assets/images/astronaut_256.png"),
    )
    .expect("png");
    let img = ndlab_io::picture::rgba_from_png(&bytes, ndlab_io::picture::PAGE_SIDE).expect("decode");
    let (resp, progress) =
        ask(&mut e, 4, RequestBody::LoadImage { rgba: img.rgba, width: img.width, height: img.height });
    assert!(computed_input(&progress));
    let ResponseBody::Input(by_page) = resp.body else { panic!("{:?}", resp.body) };
    assert_eq!((by_page.c, by_page.h, by_page.w), (input.c, input.h, input.w));
    let (f2, _) = ask(&mut e, 5, RequestBody::Forward { t: 2, order: Order::DwPw, out_channel: 5 });
    let (ResponseBody::Forward(a), ResponseBody::Forward(b)) = (&f0.body, &f2.body) else { panic!() };
    assert_eq!(
        (&a.maps.original, &a.maps.decoupled, a.rel_error),
        (&b.maps.original, &b.maps.decoupled, b.rel_error)
    );

    // Another image is decoded and run; an unknown one is an error and changes nothing.
    let (resp, progress) = ask(&mut e, 6, RequestBody::LoadBuiltinImage { image: "chelsea".into() });
    assert!(computed_input(&progress));
    let ResponseBody::Input(cat) = resp.body else { panic!("{:?}", resp.body) };
    assert_eq!((cat.h, cat.w), (106, 160), "451×300 → 256×170 in the worker → 160×106 working size");
    let (resp, _) = ask(&mut e, 7, RequestBody::LoadBuiltinImage { image: "../../etc/passwd".into() });
    let ResponseBody::Error { message } = resp.body else { panic!("{:?}", resp.body) };
    assert!(message.contains("unknown image"), "{message}");
    let (resp, _) = ask(&mut e, 8, RequestBody::LoadBuiltinImage { image: "chelsea".into() });
    assert_eq!(resp.body, ResponseBody::Input(cat));
}

/// Max |a − b| / max |b| over two equally long slices.
fn rel_diff(a: &[f32], b: &[f32]) -> f64 {
    assert_eq!(a.len(), b.len());
    let scale = b.iter().fold(0.0f64, |m, v| m.max(v.abs() as f64)).max(f64::MIN_POSITIVE);
    a.iter().zip(b).fold(0.0f64, |m, (x, y)| m.max((*x as f64 - *y as f64).abs())) / scale
}

/// The default view's input ships precomputed: the engine asks for that file instead of the
/// VGG16-BN prefix, and what it then computes equals what the prefix computes live from the
/// same pixels (sent as a user image, which always runs the prefix). The file itself equals
/// the prefix's output (stale files fail here: regenerate with `--example make_activations`),
/// and a file of the wrong shape is an error, not a wrong input.
#[test]
fn the_default_views_input_ships_precomputed_and_equals_the_prefix() {
    use ndlab_lab::engine::{compute_vgg_input, precomputed_input_asset, MODEL_ASSET, PRECOMPUTED_INPUTS};
    let root = Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../.."));
    let model = std::fs::read(root.join(MODEL_ASSET)).expect("model");
    for &(image, example) in PRECOMPUTED_INPUTS {
        let info = examples::IMAGES.iter().find(|i| i.id == image).expect("image");
        let png = std::fs::read(root.join(info.path)).expect("png");
        let live = compute_vgg_input(example, &png, &model).expect("prefix");
        let path = precomputed_input_asset(image, example).expect("asset");
        let shipped =
            ndlab_io::npy::read_npy(&std::fs::read(root.join(&path)).expect("shipped file")).expect("npy");
        assert_eq!(shipped.shape, [live.c, live.h, live.w], "{path}");
        let d = rel_diff(&shipped.data, &live.data);
        assert!(d <= 1e-5, "{path} differs from the prefix by {d:e}: run the make_activations example");
    }

    let load = || RequestBody::LoadExample { example: "vgg16bn_conv3_2".into(), slice: None };
    let forward = RequestBody::Forward { t: 2, order: Order::DwPw, out_channel: 5 };
    let shipped_path = precomputed_input_asset("astronaut", "vgg16bn_conv3_2").expect("default view ships");
    let mut e = Engine::new(clock);
    ask(&mut e, 1, load());
    let astronaut = RequestBody::LoadBuiltinImage { image: "astronaut".into() };
    let needed = e.assets_needed(&astronaut);
    assert!(needed.contains(&shipped_path) && !needed.contains(&MODEL_ASSET.to_string()), "{needed:?}");
    let (resp, _) = ask(&mut e, 2, astronaut);
    let ResponseBody::Input(input) = resp.body else { panic!("{:?}", resp.body) };
    assert_eq!((input.c, input.h, input.w), (256, 40, 40));
    assert!(input.description.contains("precomputed"), "{}", input.description);
    // The page repeats the boot's requests: nothing is downloaded again.
    for repeat in [load(), RequestBody::LoadBuiltinImage { image: "astronaut".into() }] {
        assert!(!e.assets_needed(&repeat).contains(&shipped_path), "{repeat:?} downloads the input again");
    }
    let (fa, _) = ask(&mut e, 3, forward.clone());

    // The same pixels as a user image: the prefix runs (the model is asked for).
    let mut live = Engine::new(clock);
    ask(&mut live, 1, load());
    let png = std::fs::read(root.join("assets/images/astronaut_256.png")).expect("png");
    let img = ndlab_io::picture::rgba_from_png(&png, ndlab_io::picture::PAGE_SIDE).expect("decode");
    let user = RequestBody::LoadImage { rgba: img.rgba, width: img.width, height: img.height };
    assert!(live.assets_needed(&user).contains(&MODEL_ASSET.to_string()));
    let (resp, _) = ask(&mut live, 2, user);
    let ResponseBody::Input(by_prefix) = resp.body else { panic!("{:?}", resp.body) };
    assert!(!by_prefix.description.contains("precomputed"));
    let (fb, _) = ask(&mut live, 3, forward);
    let (ResponseBody::Forward(a), ResponseBody::Forward(b)) = (&fa.body, &fb.body) else { panic!() };
    assert!(
        rel_diff(&a.maps.original, &b.maps.original) <= 1e-5
            && rel_diff(&a.maps.decoupled, &b.maps.decoupled) <= 1e-5
    );
    assert!(
        (a.rel_error - b.rel_error).abs() <= 1e-5 * b.rel_error.abs().max(1e-12),
        "{} vs {}",
        a.rel_error,
        b.rel_error
    );

    // A shipped file of the wrong shape is reported.
    let mut bad = Engine::new(clock);
    ask(&mut bad, 1, load());
    bad.provide(&shipped_path, ndlab_io::npy::write_npy_f32(&[256, 39, 40], &vec![0.0; 256 * 39 * 40]));
    let (resp, _) = ask(&mut bad, 2, RequestBody::LoadBuiltinImage { image: "astronaut".into() });
    let ResponseBody::Error { message } = resp.body else { panic!("{:?}", resp.body) };
    assert!(message.contains("precomputed input has shape"), "{message}");
}

thread_local! {
    /// Calls of the test clocks below (per test thread).
    static TICKS: std::cell::Cell<u32> = const { std::cell::Cell::new(0) };
}

/// A clock whose steps shrink (each call advances half as much as the one before, from 512 ms):
/// a run timed later measures shorter, as warm code does.
fn speeding_clock() -> f64 {
    let n = TICKS.with(|t| t.replace(t.get() + 1));
    1024.0 * (1.0 - 0.5f64.powi(n as i32))
}

/// A clock whose steps grow: a run timed later measures longer (noise on a busy machine).
fn slowing_clock() -> f64 {
    let n = TICKS.with(|t| t.replace(t.get() + 1)) as f64;
    n * n
}

/// Runs an image, an example and a forward at T = 2 through a fresh engine on `clock`.
fn first_forward(clock: fn() -> f64) -> (Engine, ndlab_lab::protocol::ForwardResult) {
    // (From tick 0: the speeding clock's steps vanish in f64 after ≈ 50 ticks.)
    TICKS.with(|t| t.set(0));
    let mut e = Engine::new(clock);
    assert!(!e.timings_unsettled(), "nothing has run yet");
    ask(&mut e, 1, image(24, 20));
    ask(&mut e, 2, RequestBody::LoadExample { example: "mtcnn_onet_conv1".into(), slice: None });
    let (resp, _) = ask(&mut e, 3, RequestBody::Forward { t: 2, order: Order::DwPw, out_channel: 1 });
    let ResponseBody::Forward(f) = resp.body else { panic!("{:?}", resp.body) };
    (e, *f)
}

/// Steps [`Engine::settle_timings`] until it returns the settled result (one run per step: a few).
fn settle(e: &mut Engine) -> ndlab_lab::protocol::ForwardResult {
    for step in 1..=10 {
        assert!(e.timings_unsettled());
        if let Some(f) = e.settle_timings().expect("settle") {
            assert!(step >= 2, "at least one run of each layer");
            return f;
        }
    }
    panic!("re-timing did not finish in 10 steps");
}

/// A forward at T = `t` (DW→PW, output channel 1) through `e`.
fn forward_at(e: &mut Engine, id: u64, t: usize) -> ndlab_lab::protocol::ForwardResult {
    let (resp, _) = ask(e, id, RequestBody::Forward { t, order: Order::DwPw, out_channel: 1 });
    let ResponseBody::Forward(f) = resp.body else { panic!("{:?}", resp.body) };
    *f
}

/// The first forward on an input runs the layer term by term, untimed (0 ms) and unsettled;
/// settling then times both layers in turn (the same maps, view and error) and keeps the
/// shorter time; a forward at another T is answered from the kept terms without running a
/// conv, and settling it times only the decoupled layer; a T timed before is settled at once;
/// a new input starts over.
#[test]
fn settling_times_both_layers_and_keeps_the_shorter_times() {
    let (mut e, f) = first_forward(speeding_clock);
    assert_eq!((f.timings.original_ms, f.timings.decoupled_ms), (0.0, 0.0), "the first forward is not timed");
    assert!(!f.timings.settled && e.timings_unsettled());
    // One step times the original layer once (the same forward asked again shows it).
    assert!(e.settle_timings().expect("settle").is_none());
    let once = forward_at(&mut e, 4, 2);
    assert!(
        once.timings.original_ms > 0.0 && once.timings.decoupled_ms == 0.0 && !once.timings.settled,
        "{once:?}"
    );
    let g = settle(&mut e);
    assert!(g.timings.settled && g.timings.original_ms > 0.0 && g.timings.decoupled_ms > 0.0, "{g:?}");
    assert!(
        g.timings.original_ms < once.timings.original_ms,
        "a speeding clock: the later, shorter run is kept"
    );
    assert_eq!((g.t, g.order, g.out_channel), (f.t, f.order, f.out_channel));
    assert_eq!(
        (&g.maps.original, &g.maps.decoupled, g.rel_error),
        (&f.maps.original, &f.maps.decoupled, f.rel_error)
    );
    assert!(!e.timings_unsettled());
    assert!(e.settle_timings().expect("settle").is_none());

    // T = 3: from the kept terms, no conv run (the clock is not read), the original's time kept.
    let ticks = TICKS.with(|t| t.get());
    let h = forward_at(&mut e, 5, 3);
    assert_eq!(TICKS.with(|t| t.get()), ticks, "a forward from the kept terms runs nothing timed");
    assert!(
        !h.timings.settled && h.timings.decoupled_ms == 0.0 && h.timings.original_ms == g.timings.original_ms,
        "{h:?}"
    );
    assert!(e.timings_unsettled());
    for _ in 1..3 {
        assert!(e.settle_timings().expect("settle").is_none());
    }
    let h = e.settle_timings().expect("settle").expect("three runs of the decoupled layer settle T = 3");
    assert!(
        h.timings.settled && h.timings.decoupled_ms > 0.0 && h.timings.original_ms == g.timings.original_ms,
        "{h:?}"
    );
    // Back to T = 2: settled at once, with its own times.
    let back = forward_at(&mut e, 6, 2);
    assert!(
        back.timings.settled
            && (back.timings.original_ms, back.timings.decoupled_ms)
                == (g.timings.original_ms, g.timings.decoupled_ms)
    );
    assert!(!e.timings_unsettled());

    // A new input starts unsettled again.
    ask(&mut e, 7, image(20, 24));
    let k = forward_at(&mut e, 8, 3);
    assert!(!k.timings.settled && k.timings.original_ms == 0.0 && e.timings_unsettled());

    // The two layers are timed in turn: on a clock that slows down each keeps its first run, and
    // the decoupled layer's first run came right after the original's (on the clock n², runs at
    // ticks (a, a + 1) and (a + 2, a + 3) measure 2a + 1 and 2a + 5; one layer's three runs before
    // the other's would give 12 between them).
    let (mut e, _) = first_forward(slowing_clock);
    assert!(e.settle_timings().expect("settle").is_none());
    let once = forward_at(&mut e, 4, 2);
    let g = settle(&mut e);
    assert_eq!(g.timings.decoupled_ms - g.timings.original_ms, 4.0, "{g:?}");
    assert_eq!(
        g.timings.original_ms, once.timings.original_ms,
        "a slowing clock: the first, shorter run is kept"
    );
}

/// A layer whose term outputs do not all fit keeps the shown output channel's: a T change on it
/// is a sum of kept maps (no run: the clock is not read), another channel runs the decoupled
/// layer at T (its first timed run); both agree with an engine that kept every channel.
#[test]
fn past_the_cache_cap_the_shown_channel_is_kept() {
    let run = |e: &mut Engine, id: u64, t: usize, ch: usize| {
        let (resp, _) = ask(e, id, RequestBody::Forward { t, order: Order::DwPw, out_channel: ch });
        let ResponseBody::Forward(f) = resp.body else { panic!("{:?}", resp.body) };
        *f
    };
    let (mut full, f) = first_forward(speeding_clock);
    let r = ndlab_core::decouple::Decomposition::new(&kernel_of("mtcnn_onet_conv1"), 1, Order::DwPw)
        .expect("decouple")
        .full_rank;
    // Room for one channel's terms, not for all 32.
    TICKS.with(|t| t.set(0));
    let mut e = Engine::new(speeding_clock).with_term_cache_max(2 * r * f.maps.h * f.maps.w);
    ask(&mut e, 1, image(24, 20));
    ask(&mut e, 2, RequestBody::LoadExample { example: "mtcnn_onet_conv1".into(), slice: None });
    let first = run(&mut e, 3, 2, 1);
    assert_eq!((&first.maps.original, &first.maps.decoupled), (&f.maps.original, &f.maps.decoupled));
    let ticks = TICKS.with(|t| t.get());
    let kept = run(&mut e, 4, 3, 1);
    assert_eq!(TICKS.with(|t| t.get()), ticks, "T = 3 on the kept channel runs nothing");
    assert!(kept.timings.decoupled_ms == 0.0 && !kept.timings.settled);
    let want = run(&mut full, 10, 3, 1);
    assert!(rel_diff(&kept.maps.decoupled, &want.maps.decoupled) <= 1e-6 && kept.rel_error == want.rel_error);
    let other = run(&mut e, 5, 3, 2);
    assert!(
        TICKS.with(|t| t.get()) > ticks && other.timings.decoupled_ms > 0.0,
        "another channel is run and timed"
    );
    let want = run(&mut full, 11, 3, 2);
    assert!(rel_diff(&other.maps.decoupled, &want.maps.decoupled) <= 1e-5);
    assert!(rel_diff(&other.maps.original, &want.maps.original) <= 1e-6);
    assert!(
        (other.rel_error - want.rel_error).abs() <= 1e-4 * want.rel_error,
        "{} vs {}",
        other.rel_error,
        want.rel_error
    );
}

/// A forward answer as the page gets it: through the JSON the worker posts.
fn forward_json(
    e: &mut Engine,
    id: u64,
    t: usize,
    order: Order,
    ch: usize,
) -> ndlab_lab::protocol::ForwardResult {
    let (resp, _) = ask(e, id, RequestBody::Forward { t, order, out_channel: ch });
    let back: Response = from_json(&to_json(&resp)).expect("round trip");
    let ResponseBody::Forward(f) = back.body else { panic!("{:?}", back.body) };
    *f
}

/// The first forward answer for an ordering and output channel on an input carries the
/// channel's map of every term and its bias; summed on the page (`engine::sum_terms`, after the
/// JSON the message travels as), the first T give exactly the worker's maps at every T, and all
/// of them the original map to the decomposition's precision. Later answers for that channel
/// carry none; another channel's or ordering's first answer carries its own; a new input starts
/// over.
#[test]
fn the_first_answer_for_a_channel_carries_its_term_maps() {
    let mut e = Engine::new(clock);
    ask(&mut e, 1, image(24, 20));
    ask(&mut e, 2, RequestBody::LoadExample { example: "mtcnn_onet_conv1".into(), slice: None });
    let mut id = 3;
    let mut next = || {
        id += 1;
        id
    };
    let first_input = forward_json(&mut e, next(), 1, Order::DwPw, 0).input_id;
    for order in [Order::DwPw, Order::PwDw] {
        let first = forward_json(&mut e, next(), 2, order, 1);
        // 3 → 32 channels, 3×3: DW→PW slices are 32 × 9 (rank 9), PW→DW slices 3 × 9 (rank 3).
        let full = if order == Order::DwPw { 9 } else { 3 };
        let terms = first.terms.clone().expect("the first answer carries the term maps");
        assert_eq!(terms.maps.len(), full, "{order:?}: every term's map");
        assert!(terms.maps.iter().all(|m| m.len() == first.maps.h * first.maps.w));
        assert_eq!(terms.bias, 0.0, "the example has no bias (tests/engine_files.rs has one)");
        for t in 1..=full {
            let f = forward_json(&mut e, next(), t, order, 1);
            assert!(f.terms.is_none(), "{order:?} T = {t}: sent once");
            let sum = ndlab_core::decouple::terms::sum_terms(&terms.maps[..t], terms.bias);
            assert_eq!(
                sum.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
                f.maps.decoupled.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
                "{order:?} T = {t}: the page's sum differs from the worker's maps"
            );
            if t == full {
                assert!(
                    rel_diff(&sum, &f.maps.original) < 1e-5,
                    "{order:?}: all terms are the original layer"
                );
            }
        }
        // Another channel brings its own maps; back to channel 1, they come again (the page
        // keeps one channel's).
        let other = forward_json(&mut e, next(), 2, order, 2);
        let other_terms = other.terms.clone().expect("another channel's maps");
        assert_eq!(other_terms.maps.len(), full);
        assert_eq!(
            ndlab_core::decouple::terms::sum_terms(&other_terms.maps[..2], other_terms.bias),
            other.maps.decoupled
        );
        let again = forward_json(&mut e, next(), 2, order, 1);
        assert_eq!(again.terms.map(|m| m.maps.len()), Some(full));
    }
    // A new input: its first answer carries the maps again, with the new input's id.
    ask(&mut e, next(), image(20, 24));
    let f = forward_json(&mut e, next(), 4, Order::DwPw, 1);
    assert_ne!(f.input_id, first_input);
    let terms = f.terms.clone().expect("the maps again");
    assert_eq!(terms.maps.len(), 9);
    assert_eq!(ndlab_core::decouple::terms::sum_terms(&terms.maps[..4], terms.bias), f.maps.decoupled);
}
