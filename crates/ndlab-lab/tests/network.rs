//! The whole-network requests through the engine, as the page's pool makes them, against figures
//! computed independently: onnxruntime's accuracy of the built-in network on its test subset
//! (training/train_fmnist.log: 955 of 1000) and numpy + onnxruntime's for PW→DW at T = 4 with
//! conv1 kept (training/EXPLORATION.md: 93.1 %, 15,328,768 conv MACs).

use ndlab_core::layer::Order;
use ndlab_lab::engine::{DirAssets, Engine};
use ndlab_lab::network::messages::{EvalRequest, NetworkSource, PlanRequest};
use ndlab_lab::network::pool::{EvalPool, PointResult, PoolAction};
use ndlab_lab::network::Choice;
use ndlab_lab::protocol::{Request, RequestBody, ResponseBody};
use std::path::Path;

fn clock() -> f64 {
    0.0
}

fn ask(e: &mut Engine, id: u64, body: RequestBody) -> ResponseBody {
    let repo = DirAssets(Path::new(env!("CARGO_MANIFEST_DIR")).join("../.."));
    e.handle_with(&repo, Request { id, body }, &mut |_| {}).body
}

/// Runs a point through a pool of `engines`, answering every job at once.
fn point(
    engines: &mut [Engine],
    pool: &mut EvalPool,
    key: u64,
    impls: Vec<ndlab_core::network::ConvImpl>,
) -> PointResult {
    let mut todo = pool.submit(key, impls, true, true);
    loop {
        let mut next = Vec::new();
        for a in todo {
            match a {
                PoolAction::Done(r) => return r,
                PoolAction::Send { worker, req } => {
                    let ResponseBody::Evaluated(res) =
                        ask(&mut engines[worker], 9, RequestBody::Evaluate(Box::new(req)))
                    else {
                        panic!("evaluation failed")
                    };
                    next.extend(pool.on_result(worker, *res));
                }
            }
        }
        todo = next;
    }
}

#[test]
fn the_built_in_network_through_a_pool_of_two_engines_matches_onnxruntime() {
    let mut engines = vec![Engine::new(clock), Engine::new(clock)];
    let mut summaries = Vec::new();
    for e in &mut engines {
        let ResponseBody::Network(s) =
            ask(e, 1, RequestBody::OpenNetwork { source: NetworkSource::BuiltIn, network_id: 7 })
        else {
            panic!("the built-in network did not open")
        };
        summaries.push(*s);
    }
    let s = &summaries[0];
    assert_eq!(s.convs.len(), 6);
    assert_eq!(s.macs, 29_127_168, "conv MACs of training/train_fmnist.log");
    assert_eq!(s.input, vec![1, 1, 28, 28]);
    assert_eq!(s.data.as_ref().map(|d| (d.n, d.labelled)), Some((1000, true)));
    assert_eq!(s.calibration, 256);
    assert_eq!(s.classes[9], "Ankle boot");
    // Every opening names its network: the pool's engines agree on the plan's factors only because
    // they are computed from the same file.
    let mut pool = EvalPool::new(s.network_id, 2, 1000);
    let original = point(&mut engines, &mut pool, 1, vec![]);
    assert_eq!((original.n, original.correct, original.correct_original), (1000, 955, 955));
    assert!(original.changed.is_empty() && original.output_error == 0.0);

    let req = PlanRequest { order: Order::PwDw, choice: Choice::Uniform(4), data_aware: false };
    let ResponseBody::Plan(p) = ask(&mut engines[0], 2, RequestBody::PreparePlan(req.clone())) else {
        panic!()
    };
    assert_eq!(p.plan.macs_decoupled, 15_328_768);
    assert!(!p.plan.layers[0].decoupled && p.plan.layers[0].note.contains("not cheaper"));
    let r = point(&mut engines, &mut pool, 2, p.impls.clone());
    assert_eq!(r.correct, 931, "numpy + onnxruntime: 93.1 %");
    assert!(!r.changed.is_empty());
    assert!(r.output_error > 0.0);
    // Layer errors for the table: zero where a conv is kept, positive where decoupled.
    pool.submit(3, p.impls.clone(), true, true);
    let ResponseBody::Evaluated(one) = ask(
        &mut engines[1],
        3,
        RequestBody::Evaluate(Box::new(EvalRequest {
            network_id: s.network_id,
            key: 3,
            impls: p.impls.clone(),
            range: (0, 50),
            layer_errors: true,
        })),
    ) else {
        panic!()
    };
    assert_eq!(one.layer_errors[0], (0.0, 0.0));
    assert!(one.layer_errors[1].0 > 0.0 && one.layer_errors[1].1 > one.layer_errors[1].0);

    // The export is a valid model of the same plan (bytes checked against onnxruntime end to end).
    let ResponseBody::Exported { name, base64 } = ask(&mut engines[0], 4, RequestBody::ExportNetwork(req))
    else {
        panic!()
    };
    assert!(name.ends_with(".decoupled.pw-dw.onnx") && base64.len() > 1000, "{name}");

    // An evaluation for another network, and a plan before any network: errors, not panics.
    let ResponseBody::Error { .. } = ask(
        &mut engines[0],
        5,
        RequestBody::Evaluate(Box::new(EvalRequest {
            network_id: 999,
            key: 5,
            impls: vec![],
            range: (0, 10),
            layer_errors: false,
        })),
    ) else {
        panic!()
    };
    let mut fresh = Engine::new(clock);
    let ResponseBody::Error { message } = ask(
        &mut fresh,
        6,
        RequestBody::PreparePlan(PlanRequest {
            order: Order::DwPw,
            choice: Choice::Uniform(2),
            data_aware: false,
        }),
    ) else {
        panic!()
    };
    assert!(message.contains("no network is open"), "{message}");
}

#[test]
fn a_hostile_network_file_is_one_message_and_the_open_network_stays() {
    let mut e = Engine::new(clock);
    let ResponseBody::Network(s) =
        ask(&mut e, 1, RequestBody::OpenNetwork { source: NetworkSource::BuiltIn, network_id: 7 })
    else {
        panic!()
    };
    for bytes in [b"not onnx at all".to_vec(), vec![0x0a, 0xff, 0xff, 0xff, 0xff, 0x0f], Vec::new()] {
        e.provide_files(vec![Box::new(bytes)]);
        let ResponseBody::Error { message } = ask(
            &mut e,
            2,
            RequestBody::OpenNetwork { source: NetworkSource::File { name: "x.onnx".into() }, network_id: 8 },
        ) else {
            panic!()
        };
        assert!(!message.is_empty() && !message.contains("panicked"), "{message}");
    }
    let ResponseBody::Plan(p) = ask(
        &mut e,
        3,
        RequestBody::PreparePlan(PlanRequest {
            order: Order::DwPw,
            choice: Choice::Uniform(3),
            data_aware: false,
        }),
    ) else {
        panic!()
    };
    assert_eq!(p.network_id, s.network_id);
}

#[test]
fn a_conv_opens_in_the_lab_with_what_feeds_it_in_the_network() {
    let mut net = Engine::new(clock);
    let ResponseBody::Network(s) =
        ask(&mut net, 1, RequestBody::OpenNetwork { source: NetworkSource::BuiltIn, network_id: 7 })
    else {
        panic!("the built-in network did not open")
    };
    let conv = s.convs.iter().position(|c| c.name == "conv4").expect("conv4");
    let ResponseBody::NetworkLayer(d) = ask(&mut net, 2, RequestBody::NetworkLayer { conv, item: 7 }) else {
        panic!("no layer")
    };
    // onnxruntime's value of conv4's input on the same item (tests/data/make_network_layer_input.py).
    let want = ndlab_io::npy::read_npy(include_bytes!("../../../tests/data/fmnist_conv4_input_item7.npy"))
        .expect("fixture");
    assert_eq!(want.shape, vec![64, 14, 14]);
    assert_eq!((d.input.c, d.input.h, d.input.w), (64, 14, 14));
    let worst = want.data.iter().zip(&d.input.data).map(|(a, b)| (a - b).abs()).fold(0.0f32, f32::max);
    assert!(worst < 1e-4, "largest difference from onnxruntime {worst}");
    assert_eq!(d.item, 7);
    assert!(d.label.is_some());
    assert_eq!(d.layer.kernel.c, 64);

    // The lab takes it, with that input in place of the image's.
    let mut lab = Engine::new(clock);
    let ResponseBody::Layer(l) = ask(&mut lab, 3, RequestBody::LoadLayerData(d.clone())) else {
        panic!("the lab did not take the layer")
    };
    let input = l.input.expect("its input comes with it");
    assert_eq!((input.c, input.h, input.w), (64, 14, 14));
    assert!(input.description.contains("conv4") && input.description.contains("#7"), "{}", input.description);
    // At full rank the decoupled layer is the layer (METHOD.md, exactness).
    let full = l.orders[0].spectra.energy_kept().len();
    let ResponseBody::Forward(f) =
        ask(&mut lab, 4, RequestBody::Forward { t: full, order: Order::DwPw, out_channel: 0 })
    else {
        panic!("no forward")
    };
    assert!(f.rel_error < 1e-5, "relative error at full rank {}", f.rel_error);
    let ResponseBody::Forward(f1) =
        ask(&mut lab, 5, RequestBody::Forward { t: 1, order: Order::DwPw, out_channel: 0 })
    else {
        panic!("no forward")
    };
    assert!(f1.rel_error > 1e-3, "T = 1 should lose something: {}", f1.rel_error);

    // A hostile one: wrong channel count, NaN weights.
    let mut bad = (*d).clone();
    bad.input.c = 3;
    assert!(matches!(
        ask(&mut lab, 6, RequestBody::LoadLayerData(Box::new(bad))),
        ResponseBody::Error { .. }
    ));
    let mut nan = (*d).clone();
    nan.layer.kernel.data[0] = f32::NAN;
    let ResponseBody::Error { message } = ask(&mut lab, 7, RequestBody::LoadLayerData(Box::new(nan))) else {
        panic!()
    };
    assert!(message.contains("NaN"), "{message}");
    assert!(matches!(
        ask(&mut net, 8, RequestBody::NetworkLayer { conv: 99, item: 0 }),
        ResponseBody::Error { .. }
    ));
}
