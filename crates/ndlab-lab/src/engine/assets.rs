//! The engine's world: the files a request needs. A host works in two phases: it asks
//! [`Engine::assets_needed`] what is missing, fetches it (asynchronously in the browser) and
//! hands it over with [`Engine::provide`]; then [`Engine::handle`] runs. A native host with the
//! files at hand uses [`Engine::handle_with`] and an [`AssetSource`], which does both.

use super::{input::WORKING_SIDE, Engine};
use crate::examples::{self, Example, InputSpec, KernelSource};
use crate::protocol::{Request, RequestBody, Response, ResponseBody};
use ndlab_io::vgg::VggLayer;

/// The VGG16-BN prefix weights, relative to the page.
pub const MODEL_ASSET: &str = "assets/models/vgg16bn_craft_conv1_1-conv3_3.safetensors";

/// (built-in image, example) pairs whose layer input ships precomputed: the page's default view,
/// which most visitors see and never change. The file holds exactly what the VGG16-BN prefix
/// computes for that image (written by `cargo run --release --example make_activations`; a test
/// recomputes it), so the first view needs neither the 7 MB prefix nor its 2.9 GMAC. Every other
/// image or layer runs the prefix in the browser.
pub const PRECOMPUTED_INPUTS: &[(&str, &str)] = &[("astronaut", "vgg16bn_conv3_2")];

/// Path of the precomputed input of `example` for the built-in `image`, if it ships one. The
/// working side is in the name: changing [`WORKING_SIDE`] leaves no stale file in use.
pub fn precomputed_input_asset(image: &str, example: &str) -> Option<String> {
    PRECOMPUTED_INPUTS
        .iter()
        .any(|&(i, e)| i == image && e == example)
        .then(|| format!("assets/activations/{image}.{example}.{WORKING_SIDE}.npy"))
}

impl Engine {
    /// Files (paths relative to the page) that `body` needs and the engine does not hold yet.
    pub fn assets_needed(&self, body: &RequestBody) -> Vec<String> {
        let mut paths = Vec::new();
        let (example, image_set, image_key) = match body {
            RequestBody::LoadExample { example, .. } => {
                (examples::find(example), self.image.is_some(), self.image_key.as_deref())
            }
            RequestBody::LoadImage { .. } => (self.loaded.as_ref().and_then(|l| l.example()), true, None),
            RequestBody::LoadBuiltinImage { image } => {
                if let Some(info) = self.image_to_decode(image) {
                    paths.push(info.path.to_string());
                }
                (self.loaded.as_ref().and_then(|l| l.example()), true, Some(image.as_str()))
            }
            RequestBody::OpenNetwork { source, .. } => {
                paths.extend(Engine::network_assets(source));
                (None, false, None)
            }
            _ => (None, false, None),
        };
        if let Some(ex) = example {
            if let (RequestBody::LoadExample { .. }, KernelSource::Asset(p)) = (body, ex.kernel) {
                paths.push(p.to_string());
            }
            if image_set && needs_model(ex) && self.vgg.is_none() {
                match image_key.and_then(|i| precomputed_input_asset(i, ex.id)) {
                    Some(p) => paths.push(p),
                    None => paths.push(MODEL_ASSET.to_string()),
                }
            }
        }
        paths.retain(|p| !self.assets.contains_key(p));
        paths
    }

    /// Files that `body` makes likely to be needed soon (the network prefix of a VGG example,
    /// before any image is set): a host may start downloading them while the engine works.
    pub fn assets_to_prefetch(&self, body: &RequestBody) -> Vec<String> {
        let mut paths = Vec::new();
        match body {
            RequestBody::LoadExample { example, .. }
                if examples::find(example).is_some_and(needs_model) && self.vgg.is_none() =>
            {
                paths.push(MODEL_ASSET.to_string());
            }
            RequestBody::LoadBuiltinImage { image } => {
                if let Some(info) = self.image_to_decode(image) {
                    paths.push(info.path.to_string());
                }
            }
            _ => {}
        }
        paths.retain(|p| !self.assets.contains_key(p));
        paths
    }

    /// The built-in image `id` when it is not the current image already (None when it is, or
    /// when no such image exists: the request then fails with a message).
    fn image_to_decode(&self, id: &str) -> Option<&'static examples::ImageInfo> {
        if self.image.is_some() && self.image_key.as_deref() == Some(id) {
            return None;
        }
        examples::IMAGES.iter().find(|i| i.id == id)
    }

    /// Hands over the bytes of a file listed by [`Engine::assets_needed`].
    pub fn provide(&mut self, path: &str, bytes: Vec<u8>) {
        self.assets.insert(path.to_string(), bytes);
    }

    /// Answers `req` with the files it needs read from `source` first (the two phases in one
    /// call, for native hosts: tests, examples, the command line). A file that cannot be read is
    /// the answer's error, as in the worker.
    pub fn handle_with(
        &mut self,
        source: &dyn AssetSource,
        req: Request,
        progress: &mut dyn FnMut(Response),
    ) -> Response {
        for path in self.assets_needed(&req.body) {
            match source.read(&path) {
                Ok(bytes) => self.provide(&path, bytes),
                Err(message) => {
                    let message = format!("could not load {path}: {message}");
                    return Response { id: req.id, body: ResponseBody::Error { message } };
                }
            }
        }
        self.handle(req, progress)
    }
}

/// Where a native host reads the engine's files from.
pub trait AssetSource {
    /// The bytes of `path` (relative to the app's root), or why not.
    fn read(&self, path: &str) -> Result<Vec<u8>, String>;
}

/// The files of a directory laid out as the app (`assets/...`): the repository itself.
#[cfg(not(target_arch = "wasm32"))]
pub struct DirAssets(pub std::path::PathBuf);

#[cfg(not(target_arch = "wasm32"))]
impl AssetSource for DirAssets {
    fn read(&self, path: &str) -> Result<Vec<u8>, String> {
        let full = self.0.join(path);
        std::fs::read(&full).map_err(|e| format!("{}: {e}", full.display()))
    }
}

/// True when the example's input comes from the VGG16-BN prefix.
pub(super) fn needs_model(ex: &Example) -> bool {
    matches!(ex.input, InputSpec::Vgg(l) if l != VggLayer::Conv1_1)
}
