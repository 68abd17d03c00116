//! The program against hand-computed results and the scalar reference conv; the plan against
//! METHOD.md's costs and the exactness of full-rank decoupling (BatchNorm folded and unfolded).

use super::ops::Value;
use super::plan::{allocate_budget, candidates, choose_ts, conv_impls, plan, Strategy};
use super::*;
use crate::conv::reference_conv2d;
use crate::graph::{Attr, Graph, Node, Tensor, ValueInfo};
use crate::layer::{Kernel, Order};
use crate::random::Rng;
use std::collections::BTreeMap;

fn node(op: &str, inputs: &[&str], output: &str, attrs: &[(&str, Attr)]) -> Node {
    Node {
        name: format!("{op}_{output}"),
        op: op.into(),
        inputs: inputs.iter().map(|s| s.to_string()).collect(),
        outputs: vec![output.to_string()],
        attrs: attrs.iter().map(|(k, v)| (k.to_string(), v.clone())).collect(),
    }
}

fn rand_tensor(dims: &[usize], seed: u64) -> Tensor {
    let n = dims.iter().product();
    Tensor::f32(dims.to_vec(), Rng::new(seed).signed_vec(n)).unwrap()
}

/// x [N,3,8,8] → Conv 3→6 3×3 pad 1 → BN → Relu → MaxPool 2 → Conv 6→4 3×3 (SAME_UPPER, stride 2)
/// → Relu → Flatten → Gemm (4·2·2 → 5, transB) → Softmax.
fn small_cnn() -> Graph {
    let mut init = BTreeMap::new();
    init.insert("w1".into(), rand_tensor(&[6, 3, 3, 3], 1));
    init.insert("b1".into(), rand_tensor(&[6], 2));
    init.insert("gamma".into(), Tensor::f32(vec![6], vec![1.5, 0.5, 2.0, 1.0, 0.8, 1.2]).unwrap());
    init.insert("beta".into(), rand_tensor(&[6], 3));
    init.insert("mean".into(), rand_tensor(&[6], 4));
    init.insert("var".into(), Tensor::f32(vec![6], vec![1.0, 0.5, 2.0, 0.3, 1.1, 0.9]).unwrap());
    init.insert("w2".into(), rand_tensor(&[4, 6, 3, 3], 5));
    init.insert("fc".into(), rand_tensor(&[5, 16], 6));
    init.insert("fcb".into(), rand_tensor(&[5], 7));
    Graph {
        inputs: vec![ValueInfo { name: "x".into(), dims: vec![None, Some(3), Some(8), Some(8)] }],
        outputs: vec![ValueInfo { name: "p".into(), dims: vec![] }],
        nodes: vec![
            node("Conv", &["x", "w1", "b1"], "c1", &[("pads", Attr::Ints(vec![1, 1, 1, 1]))]),
            node(
                "BatchNormalization",
                &["c1", "gamma", "beta", "mean", "var"],
                "n1",
                &[("epsilon", Attr::Float(1e-3))],
            ),
            node("Relu", &["n1"], "r1", &[]),
            node(
                "MaxPool",
                &["r1"],
                "m1",
                &[("kernel_shape", Attr::Ints(vec![2, 2])), ("strides", Attr::Ints(vec![2, 2]))],
            ),
            node(
                "Conv",
                &["m1", "w2"],
                "c2",
                &[("auto_pad", Attr::Str("SAME_UPPER".into())), ("strides", Attr::Ints(vec![2, 2]))],
            ),
            node("Relu", &["c2"], "r2", &[]),
            node("Flatten", &["r2"], "f", &[]),
            node("Gemm", &["f", "fc", "fcb"], "z", &[("transB", Attr::Int(1))]),
            node("Softmax", &["z"], "p", &[("axis", Attr::Int(1))]),
        ],
        initializers: init,
    }
}

fn input(n: usize, seed: u64) -> Value {
    Value::new(vec![n, 3, 8, 8], Rng::new(seed).signed_vec(n * 192)).unwrap()
}

/// The small CNN computed by hand for image `i`: reference convs, explicit loops.
fn by_hand(g: &Graph, x: &Value, i: usize) -> Vec<f32> {
    let t = |n: &str| g.initializers[n].as_f32(n).unwrap().to_vec();
    let img = FeatureMap::new(3, 8, 8, x.data[i * 192..(i + 1) * 192].to_vec()).unwrap();
    let k1 = Kernel::new(6, 3, 3, 3, t("w1")).unwrap();
    let y = reference_conv2d(&img, &k1, Some(&t("b1")), &ConvGeometry::new(1, 1, 1)).unwrap();
    let (gm, bt, mn, vr) = (t("gamma"), t("beta"), t("mean"), t("var"));
    let mut r = y.data.clone();
    for (j, v) in r.iter_mut().enumerate() {
        let c = j / 64;
        *v = ((*v - mn[c]) / (vr[c] + 1e-3).sqrt() * gm[c] + bt[c]).max(0.0);
    }
    let mut m = vec![0.0f32; 6 * 16];
    for c in 0..6 {
        for oy in 0..4 {
            for ox in 0..4 {
                let at = |dy: usize, dx: usize| r[c * 64 + (2 * oy + dy) * 8 + 2 * ox + dx];
                m[c * 16 + oy * 4 + ox] = at(0, 0).max(at(0, 1)).max(at(1, 0)).max(at(1, 1));
            }
        }
    }
    // SAME_UPPER, stride 2 on 4×4 with a 3×3 kernel: total pad 1, none on top/left.
    let k2 = Kernel::new(4, 6, 3, 3, t("w2")).unwrap();
    let mut geom = ConvGeometry::new(2, 0, 1);
    geom.padding = Padding { top: 0, left: 0, bottom: 1, right: 1 };
    let y2 = reference_conv2d(&FeatureMap::new(6, 4, 4, m).unwrap(), &k2, None, &geom).unwrap();
    assert_eq!((y2.h, y2.w), (2, 2));
    let f: Vec<f32> = y2.data.iter().map(|v| v.max(0.0)).collect();
    let (fc, fcb) = (t("fc"), t("fcb"));
    let z: Vec<f64> = (0..5)
        .map(|o| fcb[o] as f64 + (0..16).map(|k| (fc[o * 16 + k] * f[k]) as f64).sum::<f64>())
        .collect();
    let max = z.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
    let sum: f64 = z.iter().map(|v| (v - max).exp()).sum();
    z.iter().map(|v| ((v - max).exp() / sum) as f32).collect()
}

fn close(a: &[f32], b: &[f32], tol: f32) -> bool {
    a.len() == b.len() && a.iter().zip(b).all(|(x, y)| (x - y).abs() <= tol * (1.0 + y.abs()))
}

#[test]
fn the_program_computes_what_the_graph_says() {
    let g = small_cnn();
    let p = compile(&g, 13).unwrap();
    assert_eq!(p.convs.len(), 2);
    assert!(p.convs[0].bn.is_some() && p.convs[1].bn.is_none());
    let x = input(3, 9);
    let out = p.run(&x, &[], &mut |_, _, _| {}).unwrap();
    assert_eq!(out[0].dims, vec![3, 5]);
    for i in 0..3 {
        let want = by_hand(&g, &x, i);
        assert!(
            close(&out[0].data[i * 5..(i + 1) * 5], &want, 1e-5),
            "image {i}: {:?} vs {want:?}",
            &out[0].data[i * 5..i * 5 + 5]
        );
    }
    // Shapes without running: conv inputs at batch 1.
    let shapes = p.shapes(&[1, 3, 8, 8]).unwrap();
    assert_eq!(p.conv_input_dims(&shapes, 0), Some([1, 3, 8, 8]));
    assert_eq!(p.conv_input_dims(&shapes, 1), Some([1, 6, 4, 4]));
    // The tap sees each conv's input and output.
    let mut seen = Vec::new();
    p.run(&input(1, 1), &[], &mut |c, i, o| seen.push((c, i.dims.clone(), o.dims.clone()))).unwrap();
    assert_eq!(seen, vec![(0, vec![1, 3, 8, 8], vec![1, 6, 8, 8]), (1, vec![1, 6, 4, 4], vec![1, 4, 2, 2])]);
}

#[test]
fn full_rank_decoupling_is_exact_in_both_orderings_with_the_batchnorm_kept() {
    let mut g = small_cnn();
    // The logits (the softmax saturates on random weights).
    g.outputs[0].name = "z".into();
    g.nodes.pop();
    let p = compile(&g, 13).unwrap();
    let x = input(2, 5);
    let want = p.run(&x, &[], &mut |_, _, _| {}).unwrap();
    for order in [Order::DwPw, Order::PwDw] {
        let cands = candidates(&p, &[1, 3, 8, 8], order).unwrap();
        let full: Vec<usize> = cands.iter().map(|c| c.full_rank()).collect();
        let pl = plan(&cands, order, &full).unwrap();
        let decs: Vec<_> = cands.iter().map(|c| c.dec.clone()).collect();
        // Force decoupling even where it is not cheaper, to check exactness.
        let forced = super::plan::NetworkPlan {
            layers: pl
                .layers
                .iter()
                .map(|l| super::plan::LayerPlan { decoupled: true, ..l.clone() })
                .collect(),
            ..pl
        };
        let impls = conv_impls(&p, &cands, &decs, &forced).unwrap();
        let got = p.run(&x, &impls, &mut |_, _, _| {}).unwrap();
        assert!(close(&got[0].data, &want[0].data, 1e-4), "{order:?}");
        // At T = 1 the network differs.
        let one = plan(&cands, order, &vec![1; cands.len()]).unwrap();
        let forced = super::plan::NetworkPlan {
            layers: one
                .layers
                .iter()
                .map(|l| super::plan::LayerPlan { decoupled: true, t: 1, ..l.clone() })
                .collect(),
            ..one
        };
        let impls = conv_impls(&p, &cands, &decs, &forced).unwrap();
        let t1 = p.run(&x, &impls, &mut |_, _, _| {}).unwrap();
        let diff = t1[0].data.iter().zip(&want[0].data).map(|(a, b)| (a - b).abs()).fold(0.0f32, f32::max);
        assert!(diff > 1e-4, "{order:?}: T = 1 should change the output ({diff})");
    }
}

#[test]
fn plans_follow_methods_costs_and_keep_what_is_not_cheaper() {
    let p = compile(&small_cnn(), 13).unwrap();
    let cands = candidates(&p, &[1, 3, 8, 8], Order::DwPw).unwrap();
    // conv1: 6×3×3×3 on 8×8 → 8×8; conv2: 4×6×3×3 on 4×4 → 2×2 (stride 2).
    assert_eq!(cands[0].cost.regular_macs(), 6 * 3 * 9 * 64);
    assert_eq!(cands[1].cost.regular_macs(), 4 * 6 * 9 * 4);
    let pl = plan(&cands, Order::DwPw, &[1, 1]).unwrap();
    // DW→PW at T = 1: C·T·K²·Ho·Wo + N·C·T·Ho·Wo.
    assert_eq!(pl.layers[0].macs_decoupled, 3 * 9 * 64 + 6 * 3 * 64);
    assert!(pl.layers[0].decoupled);
    assert_eq!(pl.macs, cands.iter().map(|c| c.cost.regular_macs()).sum::<u64>());
    // T = 6 on conv1 (full rank min(6, 9) = 6) is not cheaper: kept, and the plan says why.
    let pl = plan(&cands, Order::DwPw, &[6, 0]).unwrap();
    assert!(!pl.layers[0].decoupled && pl.layers[0].note.contains("not cheaper"), "{:?}", pl.layers[0]);
    assert_eq!(pl.macs_decoupled, pl.macs);
    assert_eq!(choose_ts(&cands, &Strategy::Uniform(100)).unwrap(), vec![6, 4], "capped at the full rank");
    let tau = choose_ts(&cands, &Strategy::Threshold(0.999999, crate::decouple::ThresholdRule::Max)).unwrap();
    assert_eq!(tau, vec![6, 4]);
}

#[test]
fn the_budget_allocation_meets_the_budget_and_spends_loss_where_it_is_cheap() {
    let p = compile(&small_cnn(), 13).unwrap();
    let cands = candidates(&p, &[1, 3, 8, 8], Order::DwPw).unwrap();
    let total: u64 = cands.iter().map(|c| c.cost.regular_macs()).sum();
    // Layer 0 is insensitive, layer 1 very sensitive.
    let loss = vec![vec![0.01; 6], vec![10.0; 4]];
    let budget = total * 3 / 4;
    let ts = allocate_budget(&cands, Order::DwPw, &loss, 0.0, budget).unwrap();
    let pl = plan(&cands, Order::DwPw, &ts).unwrap();
    assert!(pl.macs_decoupled <= budget, "{} > {budget}", pl.macs_decoupled);
    assert!(ts[0] > 0 && ts[1] == 0, "{ts:?}");
    assert!(allocate_budget(&cands, Order::DwPw, &loss, 0.0, 1).is_err(), "out of reach");
}

#[test]
fn unsupported_operators_and_computed_weights_are_refused_by_name() {
    let mut g = small_cnn();
    g.nodes[2].op = "Gelu".into();
    let e = compile(&g, 13).unwrap_err().to_string();
    assert!(e.contains("unsupported operator Gelu") && e.contains("'Relu_r1'"), "{e}");
    let mut g = small_cnn();
    // conv2's weight computed by a node.
    g.nodes.insert(4, node("Relu", &["m1"], "w2r", &[]));
    g.nodes[5].inputs[1] = "w2r".into();
    let e = compile(&g, 13).unwrap_err().to_string();
    assert!(e.contains("comes from another node's output"), "{e}");
}

#[test]
fn the_exported_graph_computes_what_the_decoupled_program_does() {
    use super::study::{outputs, replaced_graph, replacements};
    let mut g = small_cnn();
    g.outputs[0].name = "z".into();
    g.nodes.pop();
    let p = compile(&g, 13).unwrap();
    let x = input(3, 11);
    let original = outputs(&p, &x, &[]).unwrap();
    for order in [Order::DwPw, Order::PwDw] {
        let cands = candidates(&p, &[1, 3, 8, 8], order).unwrap();
        let decs: Vec<_> = cands.iter().map(|c| c.dec.clone()).collect();
        for ts in [vec![1, 1], vec![2, 0], cands.iter().map(|c| c.full_rank()).collect::<Vec<_>>()] {
            let pl = plan(&cands, order, &ts).unwrap();
            let forced = super::plan::NetworkPlan {
                layers: pl
                    .layers
                    .iter()
                    .zip(&ts)
                    .map(|(l, &t)| super::plan::LayerPlan { decoupled: t > 0, t: t.max(1), ..l.clone() })
                    .collect(),
                ..pl
            };
            let impls = conv_impls(&p, &cands, &decs, &forced).unwrap();
            let want = outputs(&p, &x, &impls).unwrap();
            let reps = replacements(&g, &p, &cands, &decs, &forced).unwrap();
            assert_eq!(reps.len(), ts.iter().filter(|&&t| t > 0).count());
            let exported = replaced_graph(&g, &reps).unwrap();
            // The BatchNorm node is still there; the first conv's weight is gone when replaced.
            assert!(exported.nodes.iter().any(|n| n.op == "BatchNormalization"));
            assert_eq!(exported.initializers.contains_key("w1"), ts[0] == 0);
            let q = compile(&exported, 13).unwrap();
            let got = outputs(&q, &x, &[]).unwrap();
            assert!(close(&got.data, &want.data, 1e-4), "{order:?} {ts:?}");
            if ts.iter().zip(&cands).all(|(&t, c)| t == c.full_rank()) {
                assert!(
                    close(&got.data, &original.data, 1e-4),
                    "{order:?}: full rank is the original network"
                );
            }
        }
    }
}

#[test]
fn a_cached_run_recomputes_from_the_first_changed_conv_and_agrees_with_a_full_run() {
    let mut g = small_cnn();
    g.outputs[0].name = "z".into();
    g.nodes.pop();
    let p = compile(&g, 13).unwrap();
    let x = input(2, 4);
    let cands = candidates(&p, &[1, 3, 8, 8], Order::PwDw).unwrap();
    let decs: Vec<_> = cands.iter().map(|c| c.dec.clone()).collect();
    let force = |ts: &[usize]| {
        let pl = plan(&cands, Order::PwDw, ts).unwrap();
        let forced = super::plan::NetworkPlan {
            layers: pl
                .layers
                .iter()
                .zip(ts)
                .map(|(l, &t)| super::plan::LayerPlan { decoupled: t > 0, t: t.max(1), ..l.clone() })
                .collect(),
            ..pl
        };
        conv_impls(&p, &cands, &decs, &forced).unwrap()
    };
    let mut cache = RunCache::new(&p, x.clone());
    for ts in [[0, 0], [1, 0], [1, 2], [1, 1], [0, 1], [0, 1]] {
        let impls = force(&ts);
        let mut convs_run = Vec::new();
        let got = p.run_cached(&mut cache, &impls, &mut |c, _, _| convs_run.push(c)).unwrap();
        let want = p.run(&x, &impls, &mut |_, _, _| {}).unwrap();
        assert_eq!(got[0].data, want[0].data, "{ts:?}: bit for bit");
        // Only the convs from the first changed one on ran (all of them the first time).
        convs_run.dedup();
        match ts {
            [1, 2] | [1, 1] => assert_eq!(convs_run, vec![1], "{ts:?}"),
            [0, 1] if convs_run.is_empty() => {}
            _ => assert!(convs_run.first() == Some(&0), "{ts:?}: {convs_run:?}"),
        }
    }
}
