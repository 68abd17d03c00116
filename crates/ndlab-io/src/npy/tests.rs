//! Tests of the `.npy` reader: hand-built files (independent of the writer), broken files, real layers.

use super::*;

/// Builds a `.npy` file by hand: magic, version, header length, header text, data.
fn build(major: u8, header: &str, data: &[u8]) -> Vec<u8> {
    let mut out = b"\x93NUMPY".to_vec();
    out.push(major);
    out.push(0);
    if major == 1 {
        out.extend_from_slice(&(header.len() as u16).to_le_bytes());
    } else {
        out.extend_from_slice(&(header.len() as u32).to_le_bytes());
    }
    out.extend_from_slice(header.as_bytes());
    out.extend_from_slice(data);
    out
}

fn header(descr: &str, fortran: bool, shape: &str) -> String {
    let f = if fortran { "True" } else { "False" };
    format!("{{'descr': '{descr}', 'fortran_order': {f}, 'shape': {shape}, }}\n")
}

fn f32_bytes(v: &[f32], little: bool) -> Vec<u8> {
    v.iter().flat_map(|x| if little { x.to_le_bytes() } else { x.to_be_bytes() }).collect()
}

fn f64_bytes(v: &[f64], little: bool) -> Vec<u8> {
    v.iter().flat_map(|x| if little { x.to_le_bytes() } else { x.to_be_bytes() }).collect()
}

fn is_format(r: Result<NpyArray>) -> bool {
    matches!(r, Err(Error::Format(_)))
}

#[test]
fn round_trip_through_writer() {
    let data: Vec<f32> = (0..24).map(|i| i as f32 * 0.5 - 3.0).collect();
    for shape in [vec![24], vec![2, 3, 4], vec![1, 2, 3, 4]] {
        let bytes = write_npy_f32(&shape, &data);
        assert_eq!(bytes.len() % 64, (24 * 4) % 64, "header padded to 64 bytes");
        let a = read_npy(&bytes).unwrap();
        assert_eq!(a.shape, shape);
        assert_eq!(a.data, data);
    }
}

#[test]
fn writer_falls_back_to_flat_shape_on_mismatch() {
    let bytes = write_npy_f32(&[2, 2], &[1.0, 2.0, 3.0]);
    let a = read_npy(&bytes).unwrap();
    assert_eq!(a.shape, vec![3]);
}

#[test]
fn f32_both_endians_all_versions() {
    let v = [1.5f32, -2.25, 3.0e-8, 1.0e30, 0.0, -7.0];
    for little in [true, false] {
        let descr = if little { "<f4" } else { ">f4" };
        for major in [1u8, 2, 3] {
            let bytes = build(major, &header(descr, false, "(2, 3)"), &f32_bytes(&v, little));
            let a = read_npy(&bytes).unwrap();
            assert_eq!(a.shape, vec![2, 3]);
            assert_eq!(a.data, v.to_vec(), "{descr} v{major}");
        }
    }
}

#[test]
fn f64_both_endians_converted() {
    let v = [0.1f64, -1.0e-3, 123456.789, 2.0];
    for little in [true, false] {
        let descr = if little { "<f8" } else { ">f8" };
        let a = read_npy(&build(1, &header(descr, false, "(4,)"), &f64_bytes(&v, little))).unwrap();
        let want: Vec<f32> = v.iter().map(|&x| x as f32).collect();
        assert_eq!(a.data, want);
    }
}

#[test]
fn f16_values_by_hand() {
    // (bits, exact value) from the IEEE 754 binary16 definition.
    let cases: [(u16, f32); 10] = [
        (0x3C00, 1.0),
        (0xC000, -2.0),
        (0x7BFF, 65504.0),
        (0x0001, 5.960_464_5e-8), // smallest subnormal 2^-24
        (0x03FF, 6.097_555e-5),   // largest subnormal 1023·2^-24
        (0x0400, 6.103_515_6e-5), // smallest normal 2^-14
        (0x3555, 0.333_251_95),   // 1365/4096
        (0x8000, -0.0),
        (0x7C00, f32::INFINITY),
        (0xFC00, f32::NEG_INFINITY),
    ];
    for (bits, want) in cases {
        assert_eq!(f16_to_f32(bits), want, "0x{bits:04x}");
    }
    assert!(f16_to_f32(0x8000).is_sign_negative());
    assert!(f16_to_f32(0x7E00).is_nan());
    assert!(f16_to_f32(0xFD01).is_nan());
    for little in [true, false] {
        let descr = if little { "<f2" } else { ">f2" };
        let bits = [0x3C00u16, 0x0001, 0xC000];
        let raw: Vec<u8> =
            bits.iter().flat_map(|b| if little { b.to_le_bytes() } else { b.to_be_bytes() }).collect();
        let a = read_npy(&build(1, &header(descr, false, "(3,)"), &raw)).unwrap();
        assert_eq!(a.data, vec![1.0, 2.0f32.powi(-24), -2.0]);
    }
}

#[test]
fn fortran_order_is_transposed_to_c() {
    // A 2×3×4 array a[i,j,k] = 100i + 10j + k, stored column-major (first index fastest).
    let (d0, d1, d2) = (2, 3, 4);
    let mut col_major = Vec::new();
    for k in 0..d2 {
        for j in 0..d1 {
            for i in 0..d0 {
                col_major.push((100 * i + 10 * j + k) as f64);
            }
        }
    }
    let bytes = build(1, &header(">f8", true, "(2, 3, 4)"), &f64_bytes(&col_major, false));
    let a = read_npy(&bytes).unwrap();
    assert_eq!(a.shape, vec![2, 3, 4]);
    for i in 0..d0 {
        for j in 0..d1 {
            for k in 0..d2 {
                assert_eq!(a.data[(i * d1 + j) * d2 + k], (100 * i + 10 * j + k) as f32);
            }
        }
    }
}

#[test]
fn header_spacing_and_trailing_commas_tolerated() {
    let data = f32_bytes(&[1.0, 2.0], true);
    for h in [
        "{'descr':'<f4','fortran_order':False,'shape':(2,)}",
        "{ \"shape\" : ( 1 , 2 , ) , 'descr' : '<f4' , 'fortran_order' : False , }   \n",
        "{'descr': '<f4', 'fortran_order': False, 'shape': (2L,), }",
    ] {
        let a = read_npy(&build(1, h, &data)).unwrap_or_else(|e| panic!("{h}: {e}"));
        assert_eq!(a.data, vec![1.0, 2.0]);
    }
}

#[test]
fn scalar_and_zero_size_shapes() {
    let a = read_npy(&build(1, &header("<f4", false, "()"), &f32_bytes(&[4.5], true))).unwrap();
    assert_eq!((a.shape.clone(), a.data.clone()), (vec![], vec![4.5]));
    let z = read_npy(&build(1, &header("<f4", false, "(0, 3, 3, 3)"), &[])).unwrap();
    assert!(z.data.is_empty());
    assert!(matches!(z.into_kernel(), Err(Error::Shape(_))));
}

#[test]
fn truncated_file_refused() {
    let full = build(1, &header("<f4", false, "(2, 3)"), &f32_bytes(&[0.0; 6], true));
    assert!(is_format(read_npy(&full[..full.len() - 1])));
    assert!(is_format(read_npy(&full[..5])));
    let mut extra = full.clone();
    extra.push(0);
    assert!(is_format(read_npy(&extra)));
}

#[test]
fn bad_magic_and_version_refused() {
    let mut bytes = build(1, &header("<f4", false, "(1,)"), &f32_bytes(&[1.0], true));
    bytes[1] = b'X';
    assert!(is_format(read_npy(&bytes)));
    let mut v9 = build(1, &header("<f4", false, "(1,)"), &f32_bytes(&[1.0], true));
    v9[6] = 9;
    let err = read_npy(&v9).unwrap_err().to_string();
    assert!(err.contains("version 9"), "{err}");
}

#[test]
fn header_length_past_eof_refused() {
    let mut bytes = build(1, &header("<f4", false, "(1,)"), &f32_bytes(&[1.0], true));
    bytes[8] = 0xff;
    bytes[9] = 0xff;
    let err = read_npy(&bytes).unwrap_err().to_string();
    assert!(err.contains("past the end"), "{err}");
    let mut v2 = build(2, &header("<f4", false, "(1,)"), &f32_bytes(&[1.0], true));
    v2[8..12].copy_from_slice(&u32::MAX.to_le_bytes());
    assert!(is_format(read_npy(&v2)));
}

#[test]
fn garbage_headers_refused() {
    let data = f32_bytes(&[1.0], true);
    for h in [
        "hello world",
        "{'descr': '<f4', 'fortran_order': False}",
        "{'descr': '<f4', 'fortran_order': Maybe, 'shape': (1,)}",
        "{'descr': '<f4', 'fortran_order': False, 'shape': (-1,)}",
        "{'descr': '<f4', 'fortran_order': False, 'shape': (1.5,)}",
        "{'descr': '<f4', 'fortran_order': False, 'shape': (1,), 'extra': 3}",
        "{'descr': '<f4', 'fortran_order': False, 'shape': (1,)} trailing",
        "{'descr: '<f4'",
        "{'descr': '<f4' 'fortran_order': False, 'shape': (1,)}",
        "{'descr': '<f4', 'fortran_order': False, 'shape': [1]}",
        "",
    ] {
        let r = read_npy(&build(1, h, &data));
        assert!(is_format(r.clone()), "{h:?} gave {r:?}");
    }
}

#[test]
fn unsupported_dtypes_refused() {
    for d in ["<i4", "|O", "<c8", "|u1", "f4", "<f16", "<U8"] {
        let err = read_npy(&build(1, &header(d, false, "(1,)"), &[0; 4])).unwrap_err().to_string();
        assert!(err.contains("unsupported dtype"), "{d}: {err}");
    }
}

#[test]
fn png_bytes_refused() {
    let path = concat!(concat!(env!("CARGO_MANIFEST_DIR"), "/../.."), "/assets/images/camera.png");
    let bytes = std::fs::read(path).unwrap();
    assert!(bytes.starts_with(b"\x89PNG"));
    let err = read_npy(&bytes).unwrap_err().to_string();
    assert!(err.contains("not a .npy"), "{err}");
}

#[test]
fn absurd_shapes_refused_before_allocating() {
    // 10^11 elements with 4 bytes of data: refused as too large, no 400 GB allocation.
    let r = read_npy(&build(1, &header("<f4", false, "(100000, 100000, 10)"), &[0; 4]));
    assert!(matches!(r, Err(Error::TooLarge(_))), "{r:?}");
    // Product overflowing usize.
    let r = read_npy(&build(1, &header("<f4", false, "(18446744073709551615, 2)"), &[0; 4]));
    assert!(matches!(r, Err(Error::TooLarge(_))), "{r:?}");
    // Under the limit but more elements than the data holds.
    let r = read_npy(&build(1, &header("<f4", false, "(1000, 1000)"), &[0; 16]));
    assert!(is_format(r));
    // Just over the limit.
    let shape = format!("({},)", MAX_ELEMENTS + 1);
    let r = read_npy(&build(1, &header("<f4", false, &shape), &[0; 4]));
    assert!(matches!(r, Err(Error::TooLarge(_))));
}

#[test]
fn nan_weights_and_inputs_refused() {
    let mut v = vec![0.5f32; 2 * 3 * 3 * 3];
    v[7] = f32::NAN;
    let k = read_npy(&write_npy_f32(&[2, 3, 3, 3], &v)).unwrap().into_kernel();
    assert!(matches!(k, Err(Error::NonFinite(_))), "{k:?}");
    v[7] = f32::INFINITY;
    let x = read_npy(&write_npy_f32(&[1, 2, 3, 9], &v)).unwrap().into_feature_map();
    assert!(matches!(x, Err(Error::NonFinite(_))), "{x:?}");
}

#[test]
fn kernel_and_feature_map_shapes() {
    let v: Vec<f32> = (0..54).map(|i| i as f32).collect();
    let k = read_npy(&write_npy_f32(&[2, 3, 3, 3], &v)).unwrap().into_kernel().unwrap();
    assert_eq!((k.n, k.c, k.kh, k.kw), (2, 3, 3, 3));
    assert_eq!(k.filter(1, 2)[0], 45.0);
    let x = read_npy(&write_npy_f32(&[1, 6, 3, 3], &v)).unwrap().into_feature_map().unwrap();
    assert_eq!((x.c, x.h, x.w), (6, 3, 3));
    let x = read_npy(&write_npy_f32(&[6, 3, 3], &v)).unwrap().into_feature_map().unwrap();
    assert_eq!((x.c, x.h, x.w), (6, 3, 3));
    assert!(read_npy(&write_npy_f32(&[2, 6, 3, 3], &v)).unwrap().into_feature_map().is_err());
    assert!(read_npy(&write_npy_f32(&[6, 9], &v)).unwrap().into_kernel().is_err());
}

/// Parses `..._64x3x3x3.npy` → [64, 3, 3, 3].
fn shape_from_name(name: &str) -> Option<Vec<usize>> {
    let stem = name.strip_suffix(".npy")?;
    let dims = stem.rsplit('_').next()?;
    dims.split('x').map(|d| d.parse().ok()).collect()
}

#[test]
fn every_real_layer_reads_with_the_shape_in_its_name() {
    // The real layers shipped in the repository (copies of /work/shared/data/layers).
    let dir = concat!(concat!(env!("CARGO_MANIFEST_DIR"), "/../.."), "/assets/layers");
    let entries = std::fs::read_dir(dir).unwrap_or_else(|e| panic!("{dir}: {e}"));
    let mut seen = 0;
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().to_string();
        let Some(want) = shape_from_name(&name) else { continue };
        let bytes = std::fs::read(entry.path()).unwrap();
        let a = read_npy(&bytes).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(a.shape, want, "{name}");
        let norm: f64 = a.data.iter().map(|&v| (v as f64).powi(2)).sum();
        assert!(norm > 0.0, "{name} is all zero");
        let k = a.into_kernel().unwrap();
        assert_eq!(vec![k.n, k.c, k.kh, k.kw], want);
        seen += 1;
    }
    assert_eq!(seen, 8, "expected the eight shipped layers");
}
