//! The core's PNG decoding and area downscaling (used for the built-in images), against pixels
//! written by `tests/corpus/png/make_png.py` with the standard library and hand-computed means.

use ndlab_io::picture::{decode_png, downscale_area, rgba_from_png};

fn fixture(name: &str) -> Vec<u8> {
    std::fs::read(format!("{}/tests/corpus/png/{name}", concat!(env!("CARGO_MANIFEST_DIR"), "/../..")))
        .expect("fixture")
}

#[test]
fn rgb_grey_alpha_and_palette_pngs_decode_to_the_written_pixels() {
    let (px, w, h) = decode_png(&fixture("rgb_3x2.png")).expect("rgb");
    assert_eq!((w, h), (3, 2));
    for y in 0..2 {
        for x in 0..3 {
            let i = (y * 3 + x) * 4;
            assert_eq!(&px[i..i + 4], &[(10 * x + y) as u8, (100 + x) as u8, (200 - y) as u8, 255]);
        }
    }
    let (px, w, h) = decode_png(&fixture("ga_2x2.png")).expect("grey + alpha");
    assert_eq!((w, h), (2, 2));
    for y in 0..2 {
        for x in 0..2 {
            let (g, a) = ((60 * x + 120 * y) as u8, (255 - 50 * x) as u8);
            assert_eq!(&px[(y * 2 + x) * 4..][..4], &[g, g, g, a]);
        }
    }
    let (px, w, h) = decode_png(&fixture("pal2_4x1.png")).expect("palette");
    assert_eq!((w, h), (4, 1));
    assert_eq!(px, [0, 0, 0, 255, 255, 0, 0, 255, 0, 255, 0, 255, 0, 0, 255, 255]);
}

#[test]
fn hostile_pngs_are_refused_with_a_message() {
    let e = decode_png(&fixture("huge_dims.png")).unwrap_err().to_string();
    assert!(e.contains("100000") && e.contains("4096"), "{e}");
    let good = fixture("rgb_3x2.png");
    for cut in [0, 8, 20, 33, good.len() - 13] {
        let e = decode_png(&good[..cut]).unwrap_err().to_string();
        assert!(e.contains("PNG"), "cut at {cut}: {e}");
    }
    assert!(decode_png(b"GIF89a not a png at all").is_err());
}

#[test]
fn area_downscale_averages_the_covered_pixels() {
    // 4×2 → 2×1: each output is the mean of a 2×2 block.
    let src: Vec<u8> = (0..8u8).flat_map(|i| [i * 10, 200 - i * 10, 7, 255]).collect();
    let out = downscale_area(&src, 4, 2, 2, 1).expect("shrink");
    // Block 0 holds pixels 0, 1, 4, 5 (values ×10): mean 25 → 25; block 1: 2, 3, 6, 7 → 45.
    assert_eq!(out, [25, 175, 7, 255, 45, 155, 7, 255]);
    // 3×1 → 2×1: cells of 1.5 pixels: (p0 + p1/2)/1.5 and (p1/2 + p2)/1.5.
    let src = [0u8, 0, 0, 0, 90, 0, 0, 0, 180, 0, 0, 0];
    let out = downscale_area(&src, 3, 1, 2, 1).expect("shrink");
    assert_eq!((out[0], out[4]), (30, 150));
    // A constant image stays constant at any ratio; growing is refused.
    let flat = vec![77u8; 13 * 7 * 4];
    assert!(downscale_area(&flat, 13, 7, 5, 3).expect("shrink").iter().all(|&v| v == 77));
    assert!(downscale_area(&flat, 13, 7, 14, 7).is_err());
    assert!(downscale_area(&flat[1..], 13, 7, 5, 3).is_err());
}

#[test]
fn built_in_images_come_out_at_the_page_size() {
    let (px, w, h) = decode_png(&fixture("rgb_3x2.png")).expect("rgb");
    let img = rgba_from_png(&fixture("rgb_3x2.png"), 2).expect("shrunk");
    assert_eq!((img.width, img.height), (2, 1));
    let direct = downscale_area(&px, w, h, 2, 1).expect("shrink");
    assert_eq!(img.rgba, direct);
    for (id, path, size) in [
        ("chelsea", "assets/images/chelsea.png", (256, 170)),
        ("astronaut", "assets/images/astronaut_256.png", (256, 256)),
        ("camera", "assets/images/camera.png", (256, 256)),
    ] {
        let bytes =
            std::fs::read(format!("{}/{path}", concat!(env!("CARGO_MANIFEST_DIR"), "/../.."))).expect(id);
        let img = rgba_from_png(&bytes, ndlab_io::picture::PAGE_SIDE).expect(id);
        assert_eq!((img.width, img.height), size, "{id}");
        // Not blank: the pixels vary.
        let lo = img.rgba.chunks(4).map(|p| p[0]).min();
        let hi = img.rgba.chunks(4).map(|p| p[0]).max();
        assert!(hi.unwrap_or(0) as i32 - lo.unwrap_or(0) as i32 > 100, "{id}");
    }
}
