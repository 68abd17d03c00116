//! Decoding images in the page (built-in PNGs and the user's files) to RGBA bytes, downscaled so
//! that the longer side is at most [`MAX_SIDE`] pixels.

use wasm_bindgen::JsCast;
use wasm_bindgen_futures::JsFuture;
use web_sys::{CanvasRenderingContext2d, HtmlCanvasElement, HtmlImageElement};

/// Longest side of the image sent to the worker (which resizes it further to its working size).
pub const MAX_SIDE: u32 = 256;

/// Decoded pixels.
pub struct Pixels {
    /// RGBA bytes.
    pub rgba: Vec<u8>,
    /// Width.
    pub width: usize,
    /// Height.
    pub height: usize,
}

/// Loads `url` in an `<img>` and returns its pixels, downscaled.
async fn decode_url(url: &str) -> Result<Pixels, String> {
    let img = HtmlImageElement::new().map_err(|e| format!("{e:?}"))?;
    let loaded = js_sys::Promise::new(&mut |resolve, reject| {
        img.set_onload(Some(&resolve));
        img.set_onerror(Some(&reject));
    });
    img.set_src(url);
    JsFuture::from(loaded).await.map_err(|_| format!("could not decode the image {url}"))?;
    let (w, h) = (img.natural_width(), img.natural_height());
    if w == 0 || h == 0 {
        return Err("the image is empty".into());
    }
    let scale = (MAX_SIDE as f64 / w.max(h) as f64).min(1.0);
    let (tw, th) = (((w as f64 * scale).round() as u32).max(1), ((h as f64 * scale).round() as u32).max(1));
    let doc = web_sys::window().and_then(|w| w.document()).ok_or("no document")?;
    let canvas: HtmlCanvasElement =
        doc.create_element("canvas").map_err(|e| format!("{e:?}"))?.dyn_into().map_err(|_| "no canvas")?;
    canvas.set_width(tw);
    canvas.set_height(th);
    let ctx: CanvasRenderingContext2d = canvas
        .get_context("2d")
        .map_err(|e| format!("{e:?}"))?
        .ok_or("no 2-D context")?
        .dyn_into()
        .map_err(|_| "no 2-D context")?;
    ctx.draw_image_with_html_image_element_and_dw_and_dh(&img, 0.0, 0.0, tw as f64, th as f64)
        .map_err(|e| format!("{e:?}"))?;
    let data = ctx.get_image_data(0.0, 0.0, tw as f64, th as f64).map_err(|e| format!("{e:?}"))?;
    Ok(Pixels { rgba: data.data().0, width: tw as usize, height: th as usize })
}

/// Decodes a user's file through an object URL.
pub async fn decode_file(file: &web_sys::File) -> Result<Pixels, String> {
    let url = web_sys::Url::create_object_url_with_blob(file).map_err(|e| format!("{e:?}"))?;
    let out = decode_url(&url).await;
    let _ = web_sys::Url::revoke_object_url(&url);
    out
}
