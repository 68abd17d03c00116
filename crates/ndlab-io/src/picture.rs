//! The built-in images, decoded in the core: PNG bytes → RGBA, downscaled by exact area
//! averaging. The worker decodes them itself (it can start before the page has loaded, and the
//! page's thread decodes nothing), and the numbers on a built-in image do not depend on a
//! browser's resampling. The user's own images are still decoded by the browser (any format it
//! reads) and arrive as RGBA.

use ndlab_core::error::{Error, Result};

/// Largest image side accepted (the page downscales before sending).
pub const MAX_IMAGE_SIDE: usize = 1024;

/// An RGBA image as the page decoded it.
#[derive(Debug, Clone, PartialEq)]
pub struct RgbaImage {
    /// RGBA bytes, row-major.
    pub rgba: Vec<u8>,
    /// Width in pixels.
    pub width: usize,
    /// Height in pixels.
    pub height: usize,
}

impl RgbaImage {
    /// Checks the size limits and that the byte count matches.
    pub fn new(rgba: Vec<u8>, width: usize, height: usize) -> Result<Self> {
        if width == 0 || height == 0 || width > MAX_IMAGE_SIDE || height > MAX_IMAGE_SIDE {
            return Err(Error::Param(format!(
                "image {width}×{height}: each side must be 1..={MAX_IMAGE_SIDE} pixels"
            )));
        }
        if rgba.len() != width * height * 4 {
            return Err(Error::Shape(format!(
                "image {width}×{height} needs {} RGBA bytes, got {}",
                width * height * 4,
                rgba.len()
            )));
        }
        Ok(RgbaImage { rgba, width, height })
    }
}

/// Largest width or height a PNG may declare (checked before any pixel is allocated).
pub const MAX_PNG_SIDE: u32 = 4096;

/// Longest side the page's own decoding downscales to (`app::image::MAX_SIDE`): built-in
/// images are brought to the same size.
pub const PAGE_SIDE: usize = 256;

/// Decodes a PNG (any colour type and bit depth) to RGBA and downscales it so that its longer
/// side is at most `max_side` (aspect kept, sizes rounded as [`crate::vgg::working_size`]).
pub fn rgba_from_png(bytes: &[u8], max_side: usize) -> Result<RgbaImage> {
    let (rgba, w, h) = decode_png(bytes)?;
    let (th, tw) = crate::vgg::working_size(w, h, max_side.max(1));
    let rgba = if (th, tw) == (h, w) { rgba } else { downscale_area(&rgba, w, h, tw, th)? };
    RgbaImage::new(rgba, tw, th)
}

/// PNG bytes → (RGBA bytes, width, height), 8 bits per channel.
pub fn decode_png(bytes: &[u8]) -> Result<(Vec<u8>, usize, usize)> {
    let bad = |e: png::DecodingError| Error::Format(format!("not a readable PNG image: {e}"));
    let mut decoder = png::Decoder::new(std::io::Cursor::new(bytes));
    decoder.set_transformations(png::Transformations::EXPAND | png::Transformations::STRIP_16);
    let mut reader = decoder.read_info().map_err(bad)?;
    let (w, h) = (reader.info().width, reader.info().height);
    if w == 0 || h == 0 || w > MAX_PNG_SIDE || h > MAX_PNG_SIDE {
        return Err(Error::Format(format!("PNG image {w}×{h}: each side must be 1..={MAX_PNG_SIDE} pixels")));
    }
    let size = reader.output_buffer_size().ok_or_else(|| Error::Format("PNG image too large".into()))?;
    let mut buf = vec![0u8; size];
    let info = reader.next_frame(&mut buf).map_err(bad)?;
    let (w, h) = (info.width as usize, info.height as usize);
    if info.bit_depth != png::BitDepth::Eight {
        return Err(Error::Format(format!("PNG bit depth {:?} after expansion", info.bit_depth)));
    }
    let channels = match info.color_type {
        png::ColorType::Grayscale => 1,
        png::ColorType::GrayscaleAlpha => 2,
        png::ColorType::Rgb => 3,
        png::ColorType::Rgba => 4,
        png::ColorType::Indexed => {
            return Err(Error::Format("PNG palette was not expanded".into()));
        }
    };
    let mut rgba = Vec::with_capacity(w * h * 4);
    for row in buf.chunks(info.line_size).take(h) {
        let row = row.get(..w * channels).ok_or_else(|| Error::Format("PNG row too short".into()))?;
        for px in row.chunks_exact(channels) {
            let p = match *px {
                [g] => [g, g, g, 255],
                [g, a] => [g, g, g, a],
                [r, g, b] => [r, g, b, 255],
                [r, g, b, a] => [r, g, b, a],
                _ => [0, 0, 0, 0],
            };
            rgba.extend_from_slice(&p);
        }
    }
    Ok((rgba, w, h))
}

/// Shrinks a `w` × `h` RGBA image to `tw` × `th` (each no larger) by exact area averaging:
/// every output pixel is the mean of the input area it covers, partial pixels weighted by the
/// fraction covered. Rounded to the nearest byte.
pub fn downscale_area(rgba: &[u8], w: usize, h: usize, tw: usize, th: usize) -> Result<Vec<u8>> {
    if rgba.len() != w * h * 4 || tw == 0 || th == 0 || tw > w || th > h {
        return Err(Error::Shape(format!("cannot shrink a {w}×{h} RGBA image to {tw}×{th}")));
    }
    let wx = area_weights(w, tw);
    let wy = area_weights(h, th);
    // Rows first: h × tw × 4 in f32.
    let mut rows = vec![0f32; h * tw * 4];
    for y in 0..h {
        for (j, taps) in wx.iter().enumerate() {
            for &(x, f) in taps {
                for c in 0..4 {
                    rows[(y * tw + j) * 4 + c] += f * rgba[(y * w + x) * 4 + c] as f32;
                }
            }
        }
    }
    let mut out = vec![0u8; th * tw * 4];
    for (i, taps) in wy.iter().enumerate() {
        for j in 0..tw * 4 {
            let v: f32 = taps.iter().map(|&(y, f)| f * rows[y * tw * 4 + j]).sum();
            out[i * tw * 4 + j] = v.round().clamp(0.0, 255.0) as u8;
        }
    }
    Ok(out)
}

/// For each of `n_out` output cells spanning `n_in / n_out` input cells: the input cells it
/// overlaps and the overlap as a fraction of the output cell (the fractions sum to 1).
fn area_weights(n_in: usize, n_out: usize) -> Vec<Vec<(usize, f32)>> {
    let scale = n_in as f64 / n_out as f64;
    (0..n_out)
        .map(|j| {
            let (lo, hi) = (j as f64 * scale, (j + 1) as f64 * scale);
            let first = lo.floor() as usize;
            let last = (hi.ceil() as usize).min(n_in);
            (first..last)
                .filter_map(|x| {
                    let overlap = (hi.min(x as f64 + 1.0) - lo.max(x as f64)).max(0.0);
                    (overlap > 1e-12).then_some((x, (overlap / scale) as f32))
                })
                .collect()
        })
        .collect()
}
