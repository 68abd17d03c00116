//! The engine's whole-network room: the opened network ([`NetworkSession`]), its test and
//! calibration data, and the answers to the network requests (open, data, prepare a plan,
//! evaluate a range of test items, time, export). Every worker of the page's pool holds one.

use super::Engine;
use crate::network::messages::{
    ConvSummary, DataSummary, EvalRequest, EvalResult, NetworkId, NetworkLayerData, NetworkSource,
    NetworkSummary, PlanRequest, PreparedPlan, Thumb, TimeRequest, TimeResult,
};
use crate::network::NetworkSession;
use ndlab_core::error::{Error, Result};
use ndlab_core::layer::{ConvLayer, FeatureMap, Order};
use ndlab_core::network::ops::Value;
use ndlab_core::network::plan::conv_impls;
use ndlab_core::network::study::{outputs, predictions};
use ndlab_core::network::{ConvImpl, RunCache};
use ndlab_io::dataset::{read_dataset, read_idx_pair, read_npz, Dataset};

/// The built-in network and its data, relative to the app's root.
pub const NETWORK_ASSET: &str = "assets/networks/fmnist_vgg.onnx";
/// The built-in network's test subset (100 test images per class).
pub const NETWORK_TEST_ASSET: &str = "assets/networks/fmnist_test_1000.npz";
/// The built-in network's calibration images (from the training set).
pub const NETWORK_CALIB_ASSET: &str = "assets/networks/fmnist_calib_256.npz";

/// Fashion-MNIST's classes.
pub const FASHION_CLASSES: [&str; 10] = [
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
];

/// Calibration items taken from the user's own data (the rest is the test set).
pub const USER_CALIBRATION: usize = 128;

/// Largest network or data file read whole (bytes).
pub const MAX_NETWORK_FILE: u64 = 512 << 20;

/// Changed items pictured per shard.
const THUMBS_PER_SHARD: usize = 4;

fn changed_list(changed: &[(usize, usize, usize)]) -> impl Iterator<Item = usize> + '_ {
    changed.iter().map(|c| c.0)
}

/// Test item `i` as a grey picture: its first channel (NCHW, or the last axis of NHWC with 1 or 3
/// channels), scaled to 0–255.
fn thumb(data: &Dataset, i: usize) -> Option<Thumb> {
    let (h, w, plane_of) = match *data.dims.as_slice() {
        [_, c, h, w] if c <= 4 => (h, w, 1usize),
        [_, h, w, c] if c <= 4 => (h, w, c),
        [_, h, w] => (h, w, 1),
        _ => return None,
    };
    let per = data.item_len();
    let item = data.x.get(i * per..(i + 1) * per)?;
    let px: Vec<f32> = (0..h * w).map(|k| item.get(k * plane_of).copied().unwrap_or(0.0)).collect();
    let (lo, hi) = px.iter().fold((f32::INFINITY, f32::NEG_INFINITY), |(a, b), &v| (a.min(v), b.max(v)));
    let span = (hi - lo).max(1e-12);
    let grey = px.iter().map(|&v| ((v - lo) / span * 255.0).round().clamp(0.0, 255.0) as u8).collect();
    Some(Thumb { index: i, h, w, grey })
}

/// An opened network in the engine.
pub(super) struct NetworkHost {
    id: NetworkId,
    name: String,
    source: String,
    classes: Vec<String>,
    session: NetworkSession,
    test: Option<Dataset>,
    calib: Option<Dataset>,
    data_name: Option<String>,
    /// The test range last evaluated, its run cache and the original network's outputs on it.
    shard: Option<Shard>,
}

struct Shard {
    range: (usize, usize),
    cache: RunCache,
    original: Value,
    original_pred: Vec<usize>,
}

impl Engine {
    /// Files an open request needs (the built-in network's).
    pub(super) fn network_assets(source: &NetworkSource) -> Vec<String> {
        match source {
            NetworkSource::BuiltIn => {
                vec![NETWORK_ASSET.into(), NETWORK_TEST_ASSET.into(), NETWORK_CALIB_ASSET.into()]
            }
            NetworkSource::File { .. } => Vec::new(),
        }
    }

    fn net(&mut self) -> Result<&mut NetworkHost> {
        self.network.as_mut().ok_or_else(|| Error::Param("no network is open".into()))
    }

    /// The bytes of a file handed over with the request (whole; size checked).
    fn take_whole_file(&mut self, what: &str) -> Result<Vec<u8>> {
        let src = self
            .pending_files
            .pop_front()
            .ok_or_else(|| Error::Param(format!("{what} did not reach the worker")))?;
        if src.len() > MAX_NETWORK_FILE {
            return Err(Error::TooLarge(format!(
                "{what} is {} bytes; ndlab reads networks and data up to {MAX_NETWORK_FILE}",
                src.len()
            )));
        }
        src.read_at(0, src.len() as usize)
    }

    /// Opens a network (the previous one stays if this fails).
    pub(super) fn open_network(&mut self, source: &NetworkSource, id: NetworkId) -> Result<NetworkSummary> {
        let (bytes, name, src, classes, test, calib, data_name) = match source {
            NetworkSource::BuiltIn => {
                let take = |e: &mut Engine, p: &str| {
                    e.assets.remove(p).ok_or_else(|| Error::Param(format!("file {p} was not provided")))
                };
                let bytes = take(self, NETWORK_ASSET)?;
                let test = read_npz(&take(self, NETWORK_TEST_ASSET)?)?;
                let calib = read_npz(&take(self, NETWORK_CALIB_ASSET)?)?;
                (
                    bytes,
                    "Fashion-MNIST CNN (built in)".to_string(),
                    "trained for ndlab on the full Fashion-MNIST training set (training/README.md); data: Fashion-MNIST, Zalando SE, MIT".to_string(),
                    FASHION_CLASSES.iter().map(|s| s.to_string()).collect(),
                    Some(test),
                    Some(calib),
                    Some("Fashion-MNIST test subset (100 per class)".to_string()),
                )
            }
            NetworkSource::File { name } => (
                self.take_whole_file(name)?,
                name.clone(),
                format!("your file {name} (read in this browser, never uploaded)"),
                Vec::new(),
                None,
                None,
                None,
            ),
        };
        let dims = test.as_ref().map(|d| d.dims.clone());
        let session = NetworkSession::open(bytes, dims.as_deref())?;
        self.network = Some(NetworkHost {
            id,
            name,
            source: src,
            classes,
            session,
            test,
            calib,
            data_name,
            shard: None,
        });
        self.network_summary()
    }

    /// The user's test data for the opened network: an `.npz`, or IDX images and labels. The
    /// first [`USER_CALIBRATION`] items become the calibration data, the rest the test set.
    pub(super) fn network_data(&mut self, names: &[String]) -> Result<NetworkSummary> {
        let first = self.take_whole_file(names.first().map_or("the data", String::as_str))?;
        let data = if names.len() >= 2 {
            let labels = self.take_whole_file(&names[1])?;
            read_idx_pair(&first, Some(&labels))?
        } else {
            read_dataset(&first)?
        };
        let net = self.net()?;
        let _ = net.session.input_value(&data.slice(0..1)?)?;
        let n = data.len();
        let k = USER_CALIBRATION.min(n / 4);
        net.calib = (k > 0).then(|| data.slice(0..k)).transpose()?;
        net.test = Some(data.slice(k..n)?);
        net.data_name = Some(names.join(" + "));
        net.session.forget_data();
        net.shard = None;
        self.network_summary()
    }

    fn network_summary(&mut self) -> Result<NetworkSummary> {
        let net = self.net()?;
        let mut convs = Vec::new();
        let (dw, pw) =
            (net.session.candidates(Order::DwPw)?.to_vec(), net.session.candidates(Order::PwDw)?.to_vec());
        let program = net.session.program().clone();
        let shapes = program.shapes(net.session.input_dims())?;
        for (i, (a, b)) in dw.iter().zip(&pw).enumerate() {
            let [_, _, h, w] = program.conv_input_dims(&shapes, i).unwrap_or([1, 1, 1, 1]);
            let per = |c: &ndlab_core::network::plan::Candidate, o: Order| {
                let full = c.full_rank();
                let macs = (1..=full).map(|t| c.cost.decoupled_macs(o, t)).collect();
                let (energy, err) = match &c.dec {
                    Some(d) => (d.energy_kept(), d.rel_weight_error()),
                    None => (vec![1.0], vec![0.0]),
                };
                (full, macs, energy, err)
            };
            let (fa, ma, ea, wa) = per(a, Order::DwPw);
            let (fb, mb, eb, wb) = per(b, Order::PwDw);
            convs.push(ConvSummary {
                name: a.name.clone(),
                shape: a.shape,
                group: a.groups,
                in_hw: (h, w),
                out_hw: (a.cost.ho, a.cost.wo),
                macs: a.cost.regular_macs(),
                full_rank: [fa, fb],
                macs_at_t: [ma, mb],
                energy: [ea, eb],
                weight_error: [wa, wb],
            });
        }
        let data = net.test.as_ref().map(|d| DataSummary {
            name: net.data_name.clone().unwrap_or_default(),
            n: d.len(),
            labelled: d.y.is_some(),
        });
        Ok(NetworkSummary {
            network_id: net.id,
            name: net.name.clone(),
            source: net.source.clone(),
            input: net.session.input_dims().to_vec(),
            macs: convs.iter().map(|c| c.macs).sum(),
            convs,
            runs_here: true,
            classes: net.classes.clone(),
            data,
            calibration: net.calib.as_ref().map_or(0, Dataset::len),
        })
    }

    /// A plan's per-layer T and factors (data-aware ones weighted and refit on the calibration
    /// data; a speed-up's sensitivity measured on it), as [`NetworkSession::decouple`] makes them.
    fn decoupled(
        &mut self,
        req: &PlanRequest,
        progress: &mut dyn FnMut(&str, f64),
    ) -> Result<crate::network::Decoupled> {
        let net = self.net()?;
        let calib = net.calib.clone();
        net.session.decouple(req.order, &req.choice, req.data_aware, calib.as_ref(), &mut |stage, f| {
            progress(stage, f);
            true
        })
    }

    /// A prepared plan: per-layer T and how each conv runs.
    pub(super) fn prepare_plan(
        &mut self,
        req: &PlanRequest,
        progress: &mut dyn FnMut(&str, f64),
    ) -> Result<PreparedPlan> {
        let d = self.decoupled(req, progress)?;
        let net = self.net()?;
        let cands = net.session.candidates(req.order)?.to_vec();
        let impls = conv_impls(net.session.program(), &cands, &d.decs, &d.plan)?;
        Ok(PreparedPlan {
            network_id: net.id,
            request: req.clone(),
            plan: d.plan,
            impls,
            allocation: d.allocation.map(|a| a.measure),
        })
    }

    /// A plan on test items `range`: right predictions, changed ones, output and layer errors.
    pub(super) fn evaluate_network(&mut self, req: &EvalRequest) -> Result<EvalResult> {
        let net = self.net()?;
        if req.network_id != net.id {
            return Err(Error::Param("the evaluation is for another network".into()));
        }
        let test = net.test.as_ref().ok_or_else(|| Error::Param("the network has no test data".into()))?;
        let (a, b) = (req.range.0.min(test.len()), req.range.1.min(test.len()));
        if net.shard.as_ref().is_none_or(|s| s.range != (a, b)) {
            let x = net.session.input_value(&test.slice(a..b)?)?;
            let program = net.session.program();
            let original = outputs(program, &x, &[])?;
            let original_pred = predictions(&original);
            let cache = RunCache::new(program, x);
            net.shard = Some(Shard { range: (a, b), cache, original, original_pred });
        }
        let labels = test.y.as_ref().map(|y| y[a..b].to_vec());
        let program = net.session.program().clone();
        let shard = net.shard.as_mut().ok_or_else(|| Error::Param("no shard".into()))?;
        let mut layer_acc: Vec<(f64, f64)> = vec![(0.0, 0.0); program.convs.len()];
        let mut tap = |conv: usize, x: &Value, y: &Value| {
            if !req.layer_errors || !matches!(req.impls.get(conv), Some(ConvImpl::Decoupled { .. })) {
                return;
            }
            // The conv as it was, on the same input.
            if let Ok(want) = program.conv_value(conv, x, &ConvImpl::Regular) {
                let (num, den) = want.data.iter().zip(&y.data).fold((0.0, 0.0), |(n, d), (&w, &g)| {
                    (n + ((g - w) as f64).powi(2), d + (w as f64).powi(2))
                });
                layer_acc[conv].0 += num;
                layer_acc[conv].1 += den;
            }
        };
        let out = if req.layer_errors {
            let x = net.session.input_value(&test.slice(a..b)?)?;
            program.run(&x, &req.impls, &mut tap)?.into_iter().next()
        } else {
            program.run_cached(&mut shard.cache, &req.impls, &mut |_, _, _| {})?.into_iter().next()
        }
        .ok_or_else(|| Error::Format("the network has no output".into()))?;
        let pred = predictions(&out);
        let changed: Vec<(usize, usize, usize)> = pred
            .iter()
            .zip(&shard.original_pred)
            .enumerate()
            .filter(|(_, (p, o))| p != o)
            .map(|(i, (p, o))| (a + i, *o, *p))
            .collect();
        let (correct, correct_original) = match &labels {
            Some(y) => (
                pred.iter().zip(y).filter(|(p, l)| p == l).count(),
                shard.original_pred.iter().zip(y).filter(|(p, l)| p == l).count(),
            ),
            None => (0, 0),
        };
        let output_error = out
            .data
            .iter()
            .zip(&shard.original.data)
            .fold((0.0, 0.0), |(n, d), (&p, &q)| (n + ((p - q) as f64).powi(2), d + (q as f64).powi(2)));
        let thumbs = if req.layer_errors {
            changed_list(&changed).take(THUMBS_PER_SHARD).filter_map(|i| thumb(test, i)).collect()
        } else {
            Vec::new()
        };
        Ok(EvalResult {
            network_id: net.id,
            key: req.key,
            range: (a, b),
            correct,
            correct_original,
            changed,
            layer_errors: if req.layer_errors { layer_acc } else { Vec::new() },
            output_error,
            thumbs,
        })
    }

    /// One timing round of the whole network on test items: the original, then the plan (the
    /// view asks for several rounds, one at a time, and keeps the medians).
    pub(super) fn time_network(&mut self, req: &TimeRequest) -> Result<TimeResult> {
        let clock = self.clock;
        let net = self.net()?;
        let test = net.test.as_ref().ok_or_else(|| Error::Param("the network has no test data".into()))?;
        let n = req.items.clamp(1, test.len().max(1));
        let x = net.session.input_value(&test.slice(0..n)?)?;
        let program = net.session.program();
        let t0 = clock();
        outputs(program, &x, &[])?;
        let t1 = clock();
        outputs(program, &x, &req.impls)?;
        let t2 = clock();
        Ok(TimeResult { key: req.key, original_ms: t1 - t0, decoupled_ms: t2 - t1, items: n })
    }

    /// The decoupled network of a plan as ONNX (the same bytes `ndlab decouple-model` writes for
    /// the same choices and calibration data).
    pub(super) fn export_network(
        &mut self,
        req: &PlanRequest,
        progress: &mut dyn FnMut(&str, f64),
    ) -> Result<(String, Vec<u8>)> {
        let d = self.decoupled(req, progress)?;
        let net = self.net()?;
        let bytes = net.session.export(&d.plan, Some(&d.decs))?;
        let stem = net.name.trim_end_matches(".onnx").replace([' ', '/'], "_");
        Ok((format!("{stem}.decoupled.{}.onnx", req.order.as_str()), bytes))
    }

    /// Conv `conv` with what feeds it when the original network runs on test item `item` (the
    /// calibration items when there is no test data).
    pub(super) fn network_layer(&mut self, conv: usize, item: usize) -> Result<NetworkLayerData> {
        let net = self.net()?;
        let data = net.test.as_ref().or(net.calib.as_ref()).ok_or_else(|| {
            Error::Param("the network's real activations need its data: give test data".into())
        })?;
        if data.is_empty() {
            return Err(Error::Param("the network's data holds no item".into()));
        }
        let item = item.min(data.len() - 1);
        let program = net.session.program();
        let info = program
            .convs
            .get(conv)
            .ok_or_else(|| Error::Param(format!("the network has no conv #{conv}")))?;
        let x = net.session.input_value(&data.slice(item..item + 1)?)?;
        let mut seen: Option<Value> = None;
        program.run(&x, &[], &mut |c, input, _| {
            if c == conv && seen.is_none() {
                seen = Some(input.clone());
            }
        })?;
        let v = seen.ok_or_else(|| Error::Param(format!("conv '{}' did not run", info.name)))?;
        let [_, c, h, w] = ndlab_core::network::ops::dims4(&v.dims, &info.name)?;
        let input = FeatureMap::new(c, h, w, v.data)?;
        let layer = ConvLayer::new(info.layer.kernel.clone(), info.layer.bias.clone(), info.geometry(h, w)?)?;
        let label = data
            .y
            .as_ref()
            .and_then(|y| y.get(item))
            .map(|&k| net.classes.get(k).cloned().unwrap_or_else(|| format!("class {k}")));
        Ok(NetworkLayerData { name: info.name.clone(), network: net.name.clone(), layer, input, item, label })
    }
}
