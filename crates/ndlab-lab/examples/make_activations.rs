//! Writes the layer inputs that ship precomputed (`ndlab_lab::engine::PRECOMPUTED_INPUTS`: the page's
//! default view) into `assets/activations/`, computed by the engine's own code from the built-in
//! image and the VGG16-BN prefix. Run after changing the prefix, the image decoding or
//! `WORKING_SIDE` (`tests/precomputed.rs` fails until then):
//! `cargo run --release --example make_activations`.

use ndlab_io::npy::write_npy_f32;
use ndlab_lab::engine::{compute_vgg_input, precomputed_input_asset, MODEL_ASSET, PRECOMPUTED_INPUTS};
use ndlab_lab::examples::IMAGES;
use std::error::Error;

fn main() -> Result<(), Box<dyn Error>> {
    let model = std::fs::read(MODEL_ASSET)?;
    for &(image, example) in PRECOMPUTED_INPUTS {
        let info = IMAGES.iter().find(|i| i.id == image).ok_or(format!("no built-in image '{image}'"))?;
        let png = std::fs::read(info.path)?;
        let x = compute_vgg_input(example, &png, &model)?;
        let path = precomputed_input_asset(image, example).ok_or("not a precomputed pair")?;
        std::fs::write(&path, write_npy_f32(&[x.c, x.h, x.w], &x.data))?;
        println!("{path}: {}×{}×{}", x.c, x.h, x.w);
    }
    Ok(())
}
