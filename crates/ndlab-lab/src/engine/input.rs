//! The layer's input for the current image: the image itself, the real activations of the VGG16-BN
//! prefix (or their precomputed copy for the default view), stand-in activations for a file's
//! layer, or seeded noise; and what the engine keeps per input ([`Prepared`]).

use super::assets::{needs_model, precomputed_input_asset, MODEL_ASSET};
use super::forward::TermCache;
use super::timing::Timing;
use super::{no_layer, Engine};
use crate::examples::{self, Example, InputSpec};
use crate::protocol::{ForwardResult, InputId, InputSummary};
use ndlab_core::decouple::terms::TermsPass;
use ndlab_core::error::{Error, Result};
use ndlab_core::layer::{FeatureMap, Order};
use ndlab_io::picture::RgbaImage;
use ndlab_io::vgg::{image_to_map, Normalisation, VggLayer, VggPrefix};
use std::collections::HashMap;

/// Longer side of the image the layers are run on (it is resized, aspect kept).
pub const WORKING_SIDE: usize = 160;

/// Input activations and what was computed on them (all dropped when the layer or image changes).
pub(super) struct Prepared {
    pub(super) id: InputId,
    pub(super) summary: InputSummary,
    pub(super) input: FeatureMap,
    /// The original layer's output on the input: None until the first forward or curve on it,
    /// which computes it as the sum of the layer's depthwise-separable terms (see
    /// [`ndlab_core::decouple::terms::decoupled_by_terms`]).
    pub(super) reference: Option<FeatureMap>,
    /// The original layer's timing on this input ([`Engine::settle_timings`]).
    pub(super) original: Timing,
    /// The decoupled layer's timings on this input, by ordering and T.
    pub(super) decoupled: HashMap<(Order, usize), Timing>,
    pub(super) curves: HashMap<Order, Vec<f64>>,
    /// Each term's output on this input, by ordering (from the terms pass; not kept when
    /// larger than [`super::TERM_CACHE_MAX`]): a later forward at any T or output channel is a sum of
    /// them, with no conv run.
    pub(super) terms: HashMap<Order, TermCache>,
    /// The last forward result (asked again when the page repeats a request the worker already
    /// answered on its own at start-up).
    pub(super) forward: Option<ForwardResult>,
    /// The (ordering, output channel) whose term maps went out with a forward answer on this
    /// input ([`ForwardResult::terms`]).
    pub(super) terms_sent: Option<(Order, usize)>,
}

impl Prepared {
    /// Keeps what a terms pass in `order` computed (its curve, its term outputs, and the original
    /// output if none is held yet); returns its output at T, if it computed one.
    pub(super) fn keep_pass(&mut self, order: Order, pass: TermsPass) -> Option<FeatureMap> {
        self.curves.insert(order, pass.errors);
        if !pass.terms.is_empty() {
            let plane = pass.original.h * pass.original.w;
            self.terms.insert(order, TermCache { plane, channels: pass.terms_channels, terms: pass.terms });
        }
        self.reference.get_or_insert(pass.original);
        pass.at_t
    }
}

impl Engine {
    /// Decodes the built-in image `id` (provided with [`Engine::provide`]) and makes it the
    /// current image, unless it already is.
    pub(super) fn load_builtin_image(&mut self, id: &str) -> Result<()> {
        if self.image.is_some() && self.image_key.as_deref() == Some(id) {
            return Ok(());
        }
        let info = examples::IMAGES
            .iter()
            .find(|i| i.id == id)
            .ok_or_else(|| Error::Param(format!("unknown image '{id}'")))?;
        let bytes = self
            .assets
            .remove(info.path)
            .ok_or_else(|| Error::Param(format!("file {} was not provided", info.path)))?;
        self.image = Some(ndlab_io::picture::rgba_from_png(&bytes, ndlab_io::picture::PAGE_SIDE)?);
        self.image_key = Some(id.to_string());
        self.prepared = None;
        Ok(())
    }

    /// The prepared input's summary, preparing it first if the layer or image changed.
    pub(super) fn ensure_prepared(&mut self, report: &mut dyn FnMut(&str, f64)) -> Result<InputSummary> {
        match &self.prepared {
            Some(p) => Ok(p.summary.clone()),
            None => self.prepare(report),
        }
    }

    /// Computes the input activations for the current layer and image, and the original output.
    pub(super) fn prepare(&mut self, report: &mut dyn FnMut(&str, f64)) -> Result<InputSummary> {
        let info = self.loaded.as_ref().ok_or_else(no_layer)?.example();
        let shipped = match (info, self.image_key.as_deref()) {
            (Some(ex), Some(image)) if self.vgg.is_none() => {
                // Kept (1.6 MB): the page's repeats of the boot requests, and a return to this
                // view, find it here instead of downloading it again.
                precomputed_input_asset(image, ex.id).and_then(|p| self.assets.get(&p).cloned())
            }
            _ => None,
        };
        if shipped.is_none() && info.is_some_and(needs_model) && self.vgg.is_none() {
            report("reading the VGG16-BN prefix", 0.5);
            let bytes = self
                .assets
                .remove(MODEL_ASSET)
                .ok_or_else(|| Error::Param(format!("file {MODEL_ASSET} was not provided")))?;
            self.vgg = Some(VggPrefix::from_safetensors(&bytes)?);
        }
        let l = self.loaded.as_ref().ok_or_else(no_layer)?;
        report("computing the layer's input", 0.6);
        let start = (self.clock)();
        let (input, description) = match l.fixed_input() {
            Some((x, d)) => (x.clone(), d.clone()),
            None => {
                let image = self.image.as_ref().ok_or_else(|| Error::Param("no image loaded yet".into()))?;
                match (info, shipped) {
                    (Some(info), Some(bytes)) => shipped_input(info, image, &bytes)?,
                    (Some(info), None) => layer_input(info, image, self.vgg.as_ref())?,
                    (None, _) => crate::files::file_layer_input(
                        &l.layer,
                        &image.rgba,
                        image.width,
                        image.height,
                        WORKING_SIDE,
                    )?,
                }
            }
        };
        let prefix_ms = (self.clock)() - start;
        if input.c != l.layer.in_channels() {
            return Err(Error::Shape(format!(
                "the layer takes {} channels, its input has {}",
                l.layer.in_channels(),
                input.c
            )));
        }
        let layer_id = l.id;
        let id = self.fresh_id();
        let summary = InputSummary {
            input_id: id,
            layer_id,
            c: input.c,
            h: input.h,
            w: input.w,
            description,
            prefix_ms,
        };
        self.prepared = Some(Prepared {
            id,
            summary: summary.clone(),
            input,
            reference: None,
            original: Timing::default(),
            decoupled: HashMap::new(),
            curves: HashMap::new(),
            terms: HashMap::new(),
            forward: None,
            terms_sent: None,
        });
        Ok(summary)
    }
}

/// What the VGG16-BN prefix (`model`: its safetensors bytes) feeds `example`'s layer for the
/// built-in image `png`, computed as the engine computes it (same decoding, resizing and prefix):
/// the contents of the example's precomputed input file, if it ships one.
pub fn compute_vgg_input(example: &str, png: &[u8], model: &[u8]) -> Result<FeatureMap> {
    let ex = examples::find(example).ok_or_else(|| Error::Param(format!("unknown example '{example}'")))?;
    if !needs_model(ex) {
        return Err(Error::Param(format!("{example} does not take VGG16-BN activations")));
    }
    let image = ndlab_io::picture::rgba_from_png(png, ndlab_io::picture::PAGE_SIDE)?;
    let vgg = VggPrefix::from_safetensors(model)?;
    Ok(layer_input(ex, &image, Some(&vgg))?.0)
}

/// The precomputed input of `ex`'s VGG layer (a `.npy` of shape C × H × W or 1 × C × H × W),
/// checked against the shape the prefix gives for `image`.
fn shipped_input(ex: &Example, image: &RgbaImage, bytes: &[u8]) -> Result<(FeatureMap, String)> {
    let InputSpec::Vgg(layer) = ex.input else {
        return Err(Error::Param(format!("{} takes no VGG16-BN activations", ex.id)));
    };
    let a = ndlab_io::npy::read_npy(bytes)?;
    let (mut h, mut w) = ndlab_io::vgg::working_size(image.width, image.height, WORKING_SIDE);
    for l in VggLayer::ALL.iter().take(layer.position()) {
        if l.pool_after() {
            (h, w) = (h / 2, w / 2);
        }
    }
    let c = layer.channels().1;
    if a.shape != [c, h, w] && a.shape != [1, c, h, w] {
        return Err(Error::Shape(format!(
            "the precomputed input has shape {:?}, the prefix gives {c}×{h}×{w}",
            a.shape
        )));
    }
    let x = FeatureMap::new(c, h, w, a.data)?;
    Ok((
        x,
        format!(
            "the real VGG16-BN activations that feed {} for this image (shipped precomputed)",
            layer.name()
        ),
    ))
}

/// The input of `ex`'s layer for `image`, and a sentence saying what it is.
fn layer_input(ex: &Example, image: &RgbaImage, vgg: Option<&VggPrefix>) -> Result<(FeatureMap, String)> {
    let rgb = |norm| image_to_map(&image.rgba, image.width, image.height, WORKING_SIDE, norm);
    match ex.input {
        InputSpec::Vgg(VggLayer::Conv1_1) => Ok((
            rgb(Normalisation::ImageNet)?,
            "the image, normalised as in ImageNet training (VGG16-BN's input)".into(),
        )),
        InputSpec::Vgg(layer) => {
            let vgg = vgg.ok_or_else(|| Error::Param("the VGG16-BN prefix is not loaded".into()))?;
            let x = vgg.input_of(&rgb(Normalisation::ImageNet)?, layer)?;
            Ok((x, format!("the real VGG16-BN activations that feed {} for this image", layer.name())))
        }
        InputSpec::Image(norm) => Ok((rgb(norm)?, "the image itself, normalised".to_string())),
        InputSpec::Random { seed } => {
            let (h, w) = ndlab_io::vgg::working_size(image.width, image.height, WORKING_SIDE);
            let x = ndlab_core::random::random_input(ex.shape.1, h, w, seed)?;
            Ok((
                x,
                "Gaussian noise: this network's activations are not shipped, so the output error is \
                 measured on noise"
                    .to_string(),
            ))
        }
    }
}
