//! Native tests: render each chart to SVG and check its content.

use super::*;
use ndlab_core::decouple::{Decomposition, Slice};
use ndlab_core::layer::{ConvGeometry, ConvLayer, FeatureMap, Kernel, Order};

/// (stroke colour, points) of every `<polyline>` in an SVG document.
fn polylines(svg: &str) -> Vec<(String, Vec<(f64, f64)>)> {
    svg.split("<polyline")
        .skip(1)
        .map(|tag| {
            let attr = |name: &str| {
                let key = format!("{name}=\"");
                tag.find(&key).map(|i| {
                    let rest = &tag[i + key.len()..];
                    rest[..rest.find('"').unwrap_or(rest.len())].to_string()
                })
            };
            let pts = attr("points")
                .unwrap_or_default()
                .split_whitespace()
                .filter_map(|p| {
                    let (x, y) = p.split_once(',')?;
                    Some((x.parse().ok()?, y.parse().ok()?))
                })
                .collect();
            (attr("stroke").unwrap_or_default(), pts)
        })
        .collect()
}

fn hex(c: RGBColor) -> String {
    format!("#{:02X}{:02X}{:02X}", c.0, c.1, c.2)
}

/// Lines of colour `c` (longest first).
fn lines_of(svg: &str, c: RGBColor) -> Vec<Vec<(f64, f64)>> {
    let mut v: Vec<_> =
        polylines(svg).into_iter().filter(|(s, _)| s.eq_ignore_ascii_case(&hex(c))).map(|(_, p)| p).collect();
    v.sort_by_key(|p| std::cmp::Reverse(p.len()));
    v
}

/// The x of the (vertical, 2-point) marker line in colour `c`.
fn marker_x(svg: &str, c: RGBColor) -> f64 {
    let m = lines_of(svg, c).into_iter().find(|p| p.len() == 2 && p[0].0 == p[1].0);
    m.expect("a vertical marker line")[0].0
}

fn assert_clean(svg: &str) {
    assert!(svg.starts_with("<svg"), "not an SVG document");
    for bad in ["NaN", "inf"] {
        assert!(!svg.contains(bad), "SVG contains {bad}");
    }
}

fn spectrum_svg(data: &SpectrumData) -> String {
    to_svg(640, 400, |a| draw_spectrum(a, data, &ChartStyle::default())).unwrap()
}

#[test]
fn spectrum_statistics_by_hand() {
    // Slice norms: 5, 0 (left out), 1.
    let d = SpectrumData::from_sigmas(Order::DwPw, &[vec![3.0, 4.0], vec![0.0, 0.0], vec![1.0, 0.0]], 1);
    assert_eq!((d.full_rank, d.n_slices, d.zero_slices), (2, 3, 1));
    assert!((d.median[0] - 0.8).abs() < 1e-12); // mean of 0.6 and 1.0
    assert!((d.min[0] - 0.6).abs() < 1e-12 && (d.max[0] - 1.0).abs() < 1e-12);
    assert!((d.p10[1] - 0.08).abs() < 1e-12); // 0 + 0.1·(0.8 − 0)
    assert!((d.p90[1] - 0.72).abs() < 1e-12);
}

#[test]
fn spectrum_draws_one_point_per_k_and_moves_the_cut() {
    let sig: Vec<Vec<f64>> =
        (0..20).map(|s| (0..9).map(|k| (9 - k) as f64 + s as f64 * 0.1).collect()).collect();
    let style = ChartStyle::default();
    let mut d = SpectrumData::from_sigmas(Order::DwPw, &sig, 3);
    d.show_min_max = true;
    let svg = spectrum_svg(&d);
    assert_clean(&svg);
    assert_eq!(lines_of(&svg, style.dw_pw)[0].len(), 9);
    assert!(svg.contains("T = 3") && svg.contains("median") && svg.contains("10–90 %"));
    let x3 = marker_x(&svg, style.marker);
    d.t = 5;
    let x5 = marker_x(&spectrum_svg(&d), style.marker);
    assert!(x5 > x3 + 10.0, "cut did not move right: {x3} → {x5}");
}

fn curves(order: Order, n: usize) -> OrderCurves {
    let energy: Vec<f64> = (1..=n).map(|t| 1.0 - (1.0 - t as f64 / n as f64).powi(2)).collect();
    let error = energy.iter().map(|e| (1.0 - e).max(0.0).sqrt()).collect();
    OrderCurves { order, energy, error }
}

#[test]
fn energy_error_has_four_lines_and_a_legend() {
    let style = ChartStyle::default();
    let data = EnergyErrorData {
        curves: vec![curves(Order::DwPw, 9), curves(Order::PwDw, 3)],
        t: 2,
        order: Order::DwPw,
    };
    let svg = to_svg(700, 420, |a| draw_energy_error(a, &data, &style)).unwrap();
    assert_clean(&svg);
    for label in ["energy DW→PW", "energy PW→DW", "error DW→PW", "error PW→DW"] {
        assert!(svg.contains(label), "legend misses {label}");
    }
    assert_eq!(lines_of(&svg, style.dw_pw)[0].len(), 9);
    assert_eq!(lines_of(&svg, style.dw_pw_light)[0].len(), 9);
    assert_eq!(lines_of(&svg, style.pw_dw)[0].len(), 3);
    assert_eq!(lines_of(&svg, style.pw_dw_light)[0].len(), 3);
    // Energy increases with T: y (pixels, downwards) decreases along the line.
    let e = &lines_of(&svg, style.dw_pw)[0];
    assert!(e.windows(2).all(|w| w[1].1 <= w[0].1 && w[1].0 > w[0].0));
    let x2 = marker_x(&svg, style.marker);
    let data4 = EnergyErrorData { t: 4, ..data };
    let x4 = marker_x(&to_svg(700, 420, |a| draw_energy_error(a, &data4, &style)).unwrap(), style.marker);
    // The marker sits on the data's x grid: T = 2 and T = 4 are two steps apart.
    let step = e[1].0 - e[0].0;
    assert!(((x4 - x2) - 2.0 * step).abs() <= 2.0, "marker {x2} → {x4}, step {step}");
    assert!((x2 - e[1].0).abs() <= 1.0);
}

#[test]
fn output_error_is_drawn_as_given() {
    let style = ChartStyle::default();
    let v = vec![0.5, 0.2, 0.3, 0.05, 0.0];
    let data = OutputErrorData {
        series: vec![(Order::PwDw, v.clone())],
        t: 3,
        order: Order::PwDw,
        input_label: "astronaut".into(),
    };
    let svg = to_svg(600, 400, |a| draw_output_error(a, &data, &style)).unwrap();
    assert_clean(&svg);
    let line = &lines_of(&svg, style.pw_dw)[0];
    assert_eq!(line.len(), v.len());
    // Not monotone: T = 3 is above T = 2 (smaller y in pixels means larger value).
    assert!(line[2].1 < line[1].1);
    assert!(svg.contains("astronaut") && svg.contains("T = 3"));
}

fn layer(n: usize, c: usize, k: usize) -> ConvLayer {
    let kernel = Kernel::new(n, c, k, k, vec![0.5; n * c * k * k]).unwrap();
    ConvLayer::new(kernel, None, ConvGeometry::new(1, k / 2, 1)).unwrap()
}

#[test]
fn costs_match_method_worked_numbers() {
    // METHOD.md: N = C = 256, K = 3, s = 1: break-even 8.69; speed-ups 8.69, 4.35, 2.90, 2.17, 1.74; T = 9: 0.97.
    let d = CostData::for_layer(&layer(256, 256, 3), 32, 32, 2, Order::DwPw).unwrap();
    let dw = &d.series[0];
    assert_eq!(dw.order, Order::DwPw);
    assert!((dw.break_even_t - 256.0 * 9.0 / 265.0).abs() < 1e-9);
    let speed: Vec<f64> = dw.macs.iter().map(|m| d.original_macs / m).collect();
    for (got, want) in speed.iter().zip([8.69, 4.35, 2.90, 2.17, 1.74]) {
        assert!((got - want).abs() < 0.006, "{got} vs {want}");
    }
    assert!((speed[8] - 0.97).abs() < 0.006);
    assert_eq!(d.original_macs, 256.0 * 256.0 * 9.0 * 1024.0);
    assert_eq!(dw.params[0], 256.0 * 9.0 + 256.0 * 256.0);
    // PW→DW at stride 1: C·K² / (T·(C + K²)), the same numbers for C = N.
    assert!((d.series[1].break_even_t - dw.break_even_t).abs() < 1e-9);
    assert_eq!(d.series[1].macs.len(), 9);
}

#[test]
fn cost_chart_marks_original_and_break_even() {
    let style = ChartStyle::default();
    let d = CostData::for_layer(&layer(256, 256, 3), 32, 32, 2, Order::DwPw).unwrap();
    let svg = to_svg(900, 400, |a| draw_costs(a, &d, &style)).unwrap();
    assert_clean(&svg);
    for s in [
        "original layer",
        "break-even DW→PW T = 8.69",
        "DW→PW at T = 2 is 4.35× fewer (theoretical)",
        "params",
        "T = 2",
    ] {
        assert!(svg.contains(s), "missing {s}");
    }
    // One MACs and one params line per ordering, 9 points each.
    assert_eq!(lines_of(&svg, style.dw_pw).iter().filter(|p| p.len() == 9).count(), 2);
    // A PW→DW layer with C = 3 (first layer): rank 3.
    let d3 = CostData::for_layer(&layer(64, 3, 3), 64, 64, 1, Order::PwDw).unwrap();
    assert_eq!(d3.series[1].macs.len(), 3);
    assert_clean(&to_svg(900, 400, |a| draw_costs(a, &d3, &style)).unwrap());
}

/// DW→PW, N = 2, C = 1, 3×3: M = 3·e1 e0ᵀ... rows: W[0,0] = 3·δ0, W[1,0] = 2·δ1 (σ = 3, 2).
fn hand_decomposition() -> (Kernel, Decomposition) {
    let mut data = vec![0.0f32; 18];
    data[0] = 3.0;
    data[9 + 1] = 2.0;
    let kernel = Kernel::new(2, 1, 3, 3, data).unwrap();
    let mut dw = vec![0.0; 18];
    dw[0] = 1.0;
    dw[9 + 1] = 1.0;
    let slice = Slice { sigma: vec![3.0, 2.0], dw, pw: vec![3.0, 0.0, 0.0, 2.0], energy: 13.0 };
    let d = Decomposition {
        order: Order::DwPw,
        n: 2,
        c: 1,
        kh: 3,
        kw: 3,
        groups: 1,
        full_rank: 2,
        slices: vec![slice],
    };
    (kernel, d)
}

#[test]
fn filter_data_rebuilds_by_hand() {
    let (k, d) = hand_decomposition();
    let f1 = FilterGridData::from_decomposition(&k, &d, 0, 1).unwrap();
    assert_eq!(f1.rows, vec![0, 1]);
    assert_eq!(f1.reconstructed[0][0], 3.0);
    assert_eq!(f1.reconstructed[1], vec![0.0; 9]);
    assert_eq!(f1.difference[1][1], 2.0);
    assert_eq!(f1.pw, vec![vec![3.0], vec![0.0]]);
    let f2 = FilterGridData::from_decomposition(&k, &d, 0, 2).unwrap();
    assert!(f2.difference.iter().flatten().all(|&v| v == 0.0));
    assert!(FilterGridData::from_decomposition(&k, &d, 1, 1).is_err());
    assert!(FilterGridData::from_decomposition(&k, &d, 0, 3).is_err());
    assert!(FilterGridData::from_decomposition(&k, &d, 0, 0).is_err());
}

#[test]
fn filter_chart_draws_cells_with_symmetric_colours() {
    let (k, d) = hand_decomposition();
    let f = FilterGridData::from_decomposition(&k, &d, 0, 1).unwrap();
    let svg = to_svg(800, 500, |a| draw_filters(a, &f, &ChartStyle::default())).unwrap();
    assert_clean(&svg);
    // The strongest positive weight (3) is the full red end of the colour map.
    assert!(svg.contains(&hex(diverging_color(3.0, 3.0))));
    assert!(svg.contains("difference, max |Δ| = 2.000"));
    // 3 grids × 2 filters × 9 cells + 1 DW filter × 9 + 2 PW cells + colour bars (4 × 32).
    let rects = svg.matches("<rect").count();
    assert!(rects >= 54 + 9 + 2 + 4 * 32, "{rects} rectangles");
}

#[test]
fn diverging_colours_are_symmetric() {
    assert_eq!(diverging_color(0.0, 1.0), RGBColor(255, 255, 255));
    assert_eq!(diverging_color(f64::NAN, 1.0), RGBColor(255, 255, 255));
    assert_eq!(diverging_color(1.0, 0.0), RGBColor(255, 255, 255));
    let (p, n) = (diverging_color(0.5, 1.0), diverging_color(-0.5, 1.0));
    assert!(p.0 > p.2 && n.2 > n.0, "{p:?} {n:?}");
    assert_eq!(diverging_color(5.0, 1.0), diverging_color(1.0, 1.0));
}

#[test]
fn feature_maps_downsample_and_measure() {
    let (h, w) = (100, 130);
    let a: Vec<f32> = (0..h * w).map(|i| (i % w) as f32 - 50.0).collect();
    let b: Vec<f32> = a.iter().map(|v| v * 0.9).collect();
    let fa = FeatureMap::new(1, h, w, a).unwrap();
    let fb = FeatureMap::new(1, h, w, b).unwrap();
    let d = FeatureTripleData::new(&fa, &fb, 0, MAX_MAP_SIDE, "T = 2, DW→PW").unwrap();
    assert!(d.original.w <= 64 && d.original.h <= 64 && d.original.w > 32);
    assert!((d.rel_error - 0.1).abs() < 1e-6);
    assert!(FeatureTripleData::new(&fa, &fb, 1, 64, "").is_err());
    let svg = to_svg(900, 360, |a| draw_feature_maps(a, &d, &ChartStyle::default())).unwrap();
    assert_clean(&svg);
    assert!(svg.contains("relative error 0.100"));
    assert!(svg.matches("<rect").count() >= 3 * d.original.w * d.original.h);
}

#[test]
fn block_average_by_hand() {
    let m = HeatMap::downsampled(&[1.0, 3.0, 5.0, 7.0], 2, 2, 1);
    assert_eq!((m.w, m.h, m.values.clone()), (1, 1, vec![4.0]));
    let m = HeatMap::downsampled(&[1.0, 3.0, 5.0], 3, 1, 2);
    assert_eq!((m.w, m.h, m.values.clone()), (2, 1, vec![2.0, 5.0]));
}

#[test]
fn degenerate_inputs_draw_without_error() {
    let style = ChartStyle::dark();
    // One all-zero slice, full rank 1.
    let zero = Slice { sigma: vec![0.0], dw: vec![0.0; 9], pw: vec![0.0], energy: 0.0 };
    let d = Decomposition {
        order: Order::PwDw,
        n: 1,
        c: 1,
        kh: 3,
        kw: 3,
        groups: 1,
        full_rank: 1,
        slices: vec![zero],
    };
    let k = Kernel::new(1, 1, 3, 3, vec![0.0; 9]).unwrap();
    let spec = SpectrumData::from_spectra(&d.spectra(), 1);
    assert_eq!(spec.zero_slices, 1);
    let f = FilterGridData::from_decomposition(&k, &d, 0, 1).unwrap();
    let c = EnergyErrorData {
        curves: vec![OrderCurves { order: Order::PwDw, energy: vec![f64::NAN], error: vec![] }],
        t: 1,
        order: Order::PwDw,
    };
    let o = OutputErrorData { series: vec![], t: 1, order: Order::DwPw, input_label: String::new() };
    let z = FeatureMap::zeros(1, 1, 1);
    let m = FeatureTripleData::new(&z, &z, 0, 64, "").unwrap();
    let cost = CostData::for_layer(
        &ConvLayer::new(k.clone(), None, ConvGeometry::new(1, 1, 1)).unwrap(),
        1,
        1,
        1,
        Order::PwDw,
    )
    .unwrap();
    let svgs = [
        to_svg(300, 200, |a| draw_spectrum(a, &spec, &style)),
        to_svg(300, 200, |a| draw_filters(a, &f, &style)),
        to_svg(300, 200, |a| draw_energy_error(a, &c, &style)),
        to_svg(300, 200, |a| draw_output_error(a, &o, &style)),
        to_svg(300, 200, |a| draw_feature_maps(a, &m, &style)),
        to_svg(300, 200, |a| draw_costs(a, &cost, &style)),
        to_svg(10, 10, |a| draw_filters(a, &f, &style)),
    ];
    for s in svgs {
        assert_clean(&s.unwrap());
    }
}

/// A test-only DW→PW / PW→DW decomposition via nalgebra (independent of `decouple`).
fn nalgebra_decomposition(k: &Kernel, order: Order) -> Decomposition {
    use nalgebra::DMatrix;
    let k2 = k.k2();
    let (slices, rows) = if order == Order::DwPw { (k.c, k.n) } else { (k.n, k.c) };
    let r = rows.min(k2);
    let slices = (0..slices)
        .map(|s| {
            let m = DMatrix::from_fn(rows, k2, |i, p| {
                let (o, c) = if order == Order::DwPw { (i, s) } else { (s, i) };
                k.filter(o, c)[p] as f64
            });
            let svd = m.clone().svd(true, true);
            let (u, vt) = (svd.u.unwrap(), svd.v_t.unwrap());
            let mut idx: Vec<usize> = (0..svd.singular_values.len()).collect();
            idx.sort_by(|a, b| svd.singular_values[*b].total_cmp(&svd.singular_values[*a]));
            let idx = &idx[..r];
            Slice {
                sigma: idx.iter().map(|&j| svd.singular_values[j]).collect(),
                dw: idx.iter().flat_map(|&j| (0..k2).map(|p| vt[(j, p)]).collect::<Vec<_>>()).collect(),
                pw: idx
                    .iter()
                    .flat_map(|&j| (0..rows).map(|i| svd.singular_values[j] * u[(i, j)]).collect::<Vec<_>>())
                    .collect(),
                energy: m.norm_squared(),
            }
        })
        .collect();
    Decomposition { order, n: k.n, c: k.c, kh: k.kh, kw: k.kw, groups: 1, full_rank: r, slices }
}

/// Reads an OIHW float32 `.npy` (v1.0 header) for tests.
pub(crate) fn read_npy_f32(path: &str) -> Vec<f32> {
    let b = std::fs::read(std::path::Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../..")).join(path))
        .unwrap();
    let hl = u16::from_le_bytes([b[8], b[9]]) as usize;
    b[10 + hl..].chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect()
}

#[test]
fn filter_data_from_a_real_layer_rebuilds_w() {
    // conv1_2 of VGG16-BN: at full rank the reconstruction equals W (both orders).
    let k =
        Kernel::new(64, 64, 3, 3, read_npy_f32("assets/layers/craft_vgg16bn_conv1_2_64x64x3x3.npy")).unwrap();
    for order in [Order::DwPw, Order::PwDw] {
        let d = nalgebra_decomposition(&k, order);
        let f = FilterGridData::from_decomposition(&k, &d, 5, 9).unwrap();
        assert_eq!(f.rows.len(), MAX_FILTERS);
        let scale = max_abs_of(&f.original);
        assert!(max_abs_of(&f.difference) < 1e-5 * scale, "{order:?}");
        let f1 = FilterGridData::from_decomposition(&k, &d, 5, 1).unwrap();
        assert!(max_abs_of(&f1.difference) > 1e-3 * scale);
    }
}

fn max_abs_of(v: &[Vec<f32>]) -> f32 {
    v.iter().flatten().fold(0.0f32, |m, x| m.max(x.abs()))
}

#[test]
fn charts_from_the_real_decomposition() {
    // The filter data built from `decouple` matches the one from an independent nalgebra SVD
    // (compare reconstructions, never raw singular vectors), and the spectra agree.
    let k =
        Kernel::new(64, 64, 3, 3, read_npy_f32("assets/layers/craft_vgg16bn_conv1_2_64x64x3x3.npy")).unwrap();
    let style = ChartStyle::default();
    for order in [Order::DwPw, Order::PwDw] {
        let d = Decomposition::new(&k, 1, order).unwrap();
        let oracle = nalgebra_decomposition(&k, order);
        for t in [1, 2, 5] {
            let a = FilterGridData::from_decomposition(&k, &d, 7, t).unwrap();
            let b = FilterGridData::from_decomposition(&k, &oracle, 7, t).unwrap();
            let scale = max_abs_of(&a.original);
            for (x, y) in a.reconstructed.iter().flatten().zip(b.reconstructed.iter().flatten()) {
                assert!((x - y).abs() < 1e-5 * scale, "{order:?} T={t}");
            }
            // The reconstruction equals `Decomposition::reconstruct` too.
            let wt = d.reconstruct(t).unwrap();
            for (r, &row) in a.rows.iter().enumerate() {
                let (n, c) = if order == Order::DwPw { (row, 7) } else { (7, row) };
                for (x, y) in a.reconstructed[r].iter().zip(wt.filter(n, c)) {
                    assert!((x - y).abs() < 1e-5 * scale);
                }
            }
        }
        let (sa, sb) =
            (SpectrumData::from_spectra(&d.spectra(), 2), SpectrumData::from_spectra(&oracle.spectra(), 2));
        for (x, y) in sa.median.iter().zip(&sb.median) {
            assert!((x - y).abs() < 1e-9);
        }
        let ee = EnergyErrorData::from_spectra(&[&d.spectra()], 2, order);
        let svg = to_svg(600, 400, |a| draw_energy_error(a, &ee, &style)).unwrap();
        assert_clean(&svg);
        assert_eq!(lines_of(&svg, style.order_color(order))[0].len(), 9);
        // Energy + error² = 1 at every T (METHOD.md).
        for (e, r) in ee.curves[0].energy.iter().zip(&ee.curves[0].error) {
            assert!((e + r * r - 1.0).abs() < 1e-9);
        }
    }
}

#[test]
fn measured_output_error_matches_the_decoupled_forward() {
    use ndlab_core::conv::{decoupled_forward, layer_forward};
    use ndlab_core::random::{low_rank_kernel, random_input};
    // The "lowrank2_64" teaching example's kernel: rank 2 per slice.
    let k = low_rank_kernel(64, 64, 3, 2, 2).unwrap();
    let bias: Vec<f32> = (0..64).map(|i| i as f32 * 0.01).collect();
    let layer = ConvLayer::new(k.clone(), Some(bias.clone()), ConvGeometry::new(1, 1, 1)).unwrap();
    let x = random_input(64, 12, 10, 3).unwrap();
    let ds: Vec<Decomposition> =
        [Order::DwPw, Order::PwDw].map(|o| Decomposition::new(&k, 1, o).unwrap()).into();
    let data = OutputErrorData::measure(&x, &layer, &[&ds[0], &ds[1]], 1, Order::DwPw, "noise").unwrap();
    let y = layer_forward(&x, &layer).unwrap();
    for (d, (order, errs)) in ds.iter().zip(&data.series) {
        assert_eq!((*order, errs.len()), (d.order, 9));
        // Independent path: the merged decoupled layer's output against the original's.
        for t in [1, 2, 5] {
            let yt = decoupled_forward(&x, &d.merged(t).unwrap(), Some(&bias), &layer.geometry).unwrap();
            let want = yt.rel_error(&y).unwrap();
            assert!((errs[t - 1] - want).abs() < 1e-4, "{order:?} T={t}: {} vs {want}", errs[t - 1]);
        }
        assert!(errs[0] > 0.05 && errs[1] < 1e-5, "{errs:?}");
    }
}

#[test]
fn malformed_hand_made_inputs_are_errors_or_drawn_safely() {
    let (k, mut d) = hand_decomposition();
    d.c = 0;
    assert!(FilterGridData::from_decomposition(&k, &d, 0, 1).is_err());
    let (k, d) = hand_decomposition();
    let mut f = FilterGridData::from_decomposition(&k, &d, 0, 2).unwrap();
    f.pw = vec![vec![1.0], vec![], vec![f32::NAN, 2.0, 3.0]];
    f.t = usize::MAX;
    f.dw.push(vec![f32::INFINITY; 2]);
    assert_clean(&to_svg(500, 300, |a| draw_filters(a, &f, &ChartStyle::default())).unwrap());
    let m = FeatureTripleData {
        channel: 0,
        full_size: (0, 0),
        original: HeatMap::new(3, 2, vec![1.0]),
        decoupled: HeatMap::new(0, 0, vec![]),
        difference: HeatMap::new(1, 1, vec![f32::NAN]),
        rel_error: f64::NAN,
        label: "<b>".into(),
    };
    let svg = to_svg(400, 200, |a| draw_feature_maps(a, &m, &ChartStyle::default())).unwrap();
    assert!(svg.contains("&lt;b&gt;") && !svg.contains("<b>"), "text is escaped");
    assert!(svg.contains("relative error n/a"));
}

#[test]
fn pareto_draws_every_method_at_its_costs_with_the_budget() {
    let style = ChartStyle::default();
    // Hand-made series: channel's point at x = 500 sits exactly on the budget marker.
    let data = ParetoData {
        series: vec![
            ("nd-dw-pw".into(), vec![(250.0, 0.8), (500.0, 0.6), (750.0, 0.4)]),
            ("channel".into(), vec![(100.0, 0.9), (500.0, 0.5), (900.0, 0.1), (5000.0, 0.0)]),
            ("tucker2".into(), vec![(300.0, 0.7)]),
        ],
        budget: 500.0,
        regular: 1000.0,
        y_label: "relative weight error".into(),
    };
    let svg = to_svg(700, 420, |a| draw_pareto(a, &data, &style)).unwrap();
    assert_clean(&svg);
    let nd = &lines_of(&svg, style.dw_pw)[0];
    assert_eq!(nd.len(), 3);
    // Lower error is drawn lower on the page: larger pixel y.
    assert!(nd[0].1 < nd[1].1 && nd[1].1 < nd[2].1);
    // Equal MAC steps are equal pixel steps (linear axis).
    assert!(((nd[1].0 - nd[0].0) - (nd[2].0 - nd[1].0)).abs() <= 1.0);
    // The point beyond the regular layer's cost is left out.
    let ch = &lines_of(&svg, method_color("channel", &style))[0];
    assert_eq!(ch.len(), 3);
    let bx = marker_x(&svg, style.marker);
    assert!((bx - ch[1].0).abs() <= 1.0, "budget marker at {bx}, point at {}", ch[1].0);
    assert!((bx - nd[1].0).abs() <= 1.0);
    // The regular marker is right of every kept point.
    assert!(marker_x(&svg, style.reference) > ch[2].0);
    for name in ["nd-dw-pw", "channel", "tucker2", "budget 500", "regular"] {
        assert!(svg.contains(name), "{name} missing");
    }
}

/// A visible-or-not `<text>` element with its estimated box (0.6 em per character).
#[derive(Debug, Clone)]
struct TextBox {
    content: String,
    visible: bool,
    /// (left, top, right, bottom) in pixels.
    rect: (f64, f64, f64, f64),
}

/// Every `<text>` element of an SVG document.
fn texts(svg: &str) -> Vec<TextBox> {
    svg.split("<text")
        .skip(1)
        .filter_map(|tag| {
            let (attrs, rest) = tag.split_once('>')?;
            let content = rest.split("</text>").next()?.trim().to_string();
            let attr = |name: &str| -> Option<String> {
                let key = format!(" {name}=\"");
                let i = attrs.find(&key)?;
                let v = &attrs[i + key.len()..];
                Some(v[..v.find('"')?].to_string())
            };
            let num = |name: &str| attr(name).and_then(|v| v.trim_end_matches("px").parse::<f64>().ok());
            let (x, y, f) = (num("x")?, num("y")?, num("font-size").unwrap_or(13.0));
            let visible = attr("opacity").map(|o| o.parse::<f64>().unwrap_or(1.0) > 0.0).unwrap_or(true);
            let w = 0.6 * f * content.chars().count() as f64;
            let left = match attr("text-anchor").as_deref() {
                Some("middle") => x - w / 2.0,
                Some("end") => x - w,
                _ => x,
            };
            let top = match attr("dy").as_deref() {
                Some("0.76em") => y,
                Some("-0.5ex") => y - f,
                Some("0.5ex") => y - f / 2.0,
                _ => y - 0.8 * f,
            };
            Some(TextBox { content, visible, rect: (left, top, left + w, top + f) })
        })
        .collect()
}

/// The layered charts: Base + Marks show what All shows; the marker and T-naming text are only
/// in Marks, the series only in Base, and both place the marker at the same x.
#[test]
fn base_and_marks_layers_split_the_chart() {
    let sig: Vec<Vec<f64>> =
        (0..20).map(|s| (0..9).map(|k| (9 - k) as f64 + s as f64 * 0.1).collect()).collect();
    let spec = SpectrumData::from_sigmas(Order::DwPw, &sig, 3);
    let cost = CostData::for_layer(&layer(256, 256, 3), 32, 32, 2, Order::DwPw).unwrap();
    let out = OutputErrorData {
        series: vec![(Order::DwPw, vec![0.5, 0.3, 0.2]), (Order::PwDw, vec![0.4, 0.35, 0.1])],
        t: 2,
        order: Order::DwPw,
        input_label: "40×40 input".into(),
    };
    let energy = EnergyErrorData {
        curves: vec![curves(Order::DwPw, 9), curves(Order::PwDw, 9)],
        t: 3,
        order: Order::DwPw,
    };
    type Draw<'a> = Box<dyn Fn(ChartLayer) -> String + 'a>;
    let with = |layer| ChartStyle { layer, ..ChartStyle::default() };
    let charts: Vec<(&str, Draw, &str)> = vec![
        ("spectrum", Box::new(|l| to_svg(640, 400, |a| draw_spectrum(a, &spec, &with(l))).unwrap()), "T = 3"),
        (
            "energy",
            Box::new(|l| to_svg(640, 400, |a| draw_energy_error(a, &energy, &with(l))).unwrap()),
            "T = 3",
        ),
        ("cost", Box::new(|l| to_svg(900, 400, |a| draw_costs(a, &cost, &with(l))).unwrap()), "4.35× fewer"),
        (
            "output",
            Box::new(|l| to_svg(640, 400, |a| draw_output_error(a, &out, &with(l))).unwrap()),
            "T = 2",
        ),
    ];
    let style = ChartStyle::default();
    for (name, draw, t_text) in &charts {
        let (all, base, marks) = (draw(ChartLayer::All), draw(ChartLayer::Base), draw(ChartLayer::Marks));
        for svg in [&all, &base, &marks] {
            assert_clean(svg);
        }
        let shows = |svg: &str, s: &str| texts(svg).iter().any(|t| t.visible && t.content.contains(s));
        assert!(shows(&all, t_text) && shows(&marks, t_text), "{name}: '{t_text}' missing from All or Marks");
        assert!(!shows(&base, t_text), "{name}: base shows '{t_text}'");
        assert_eq!(marker_x(&all, style.marker), marker_x(&marks, style.marker), "{name}: marker moved");
        assert!(lines_of(&base, style.marker).is_empty(), "{name}: base has a marker line");
        assert!(lines_of(&marks, style.dw_pw).is_empty(), "{name}: marks repeat the series");
        assert_eq!(lines_of(&base, style.dw_pw), lines_of(&all, style.dw_pw), "{name}: series differ");
        // Every visible text of All is visible in exactly one of the layers, at the same place.
        let visible = |svg: &str| {
            texts(svg)
                .into_iter()
                .filter(|t| t.visible)
                .map(|t| (t.content, t.rect.0 as i64, t.rect.1 as i64))
                .collect::<Vec<_>>()
        };
        let mut split = visible(&base);
        split.extend(visible(&marks));
        split.sort();
        let mut whole = visible(&all);
        whole.sort();
        assert_eq!(split, whole, "{name}: texts of Base + Marks differ from All");
    }
}

/// The cost chart's labels never overlap: "original layer", the T label and the break-even
/// labels, for every T of a 256→256 and a 3→64 layer (text boxes estimated at 0.6 em per char).
#[test]
fn cost_chart_labels_do_not_overlap() {
    let style = ChartStyle::default();
    for (n, c) in [(256, 256), (64, 3), (64, 64)] {
        for t in 1..=9 {
            let d = CostData::for_layer(&layer(n, c, 3), 56, 56, t, Order::DwPw).unwrap();
            let svg = to_svg(900, 400, |a| draw_costs(a, &d, &style)).unwrap();
            let boxes: Vec<TextBox> = texts(&svg)
                .into_iter()
                .filter(|t| t.visible)
                .filter(|t| {
                    let s = t.content.as_str();
                    s == "original layer" || s.starts_with("T = ") || s.starts_with("break-even")
                })
                .collect();
            assert!(boxes.iter().any(|b| b.content == "original layer"), "{n}←{c} T={t}: no original label");
            for (i, a) in boxes.iter().enumerate() {
                for b in &boxes[i + 1..] {
                    let (p, q) = (a.rect, b.rect);
                    let apart = p.2 <= q.0 || q.2 <= p.0 || p.3 <= q.1 || q.3 <= p.1;
                    assert!(apart, "{n}←{c} T={t}: '{}' {:?} overlaps '{}' {:?}", a.content, p, b.content, q);
                }
            }
        }
    }
}

/// No two visible texts of the line charts overlap (legend strips, markers, captions, ticks),
/// at the sizes the page uses for narrow and wide cards.
#[test]
fn line_chart_texts_do_not_overlap() {
    let style = ChartStyle { font_size: 14.0, ..ChartStyle::default() };
    let energy = EnergyErrorData {
        curves: vec![curves(Order::DwPw, 9), curves(Order::PwDw, 9)],
        t: 4,
        order: Order::PwDw,
    };
    let cost = CostData::for_layer(&layer(256, 256, 3), 56, 56, 4, Order::DwPw).unwrap();
    let svgs = [
        ("energy 340", to_svg(340, 300, |a| draw_energy_error(a, &energy, &style)).unwrap()),
        ("energy 600", to_svg(600, 300, |a| draw_energy_error(a, &energy, &style)).unwrap()),
        ("cost 640", to_svg(640, 300, |a| draw_costs(a, &cost, &style)).unwrap()),
        ("cost 900", to_svg(900, 360, |a| draw_costs(a, &cost, &style)).unwrap()),
    ];
    for (name, svg) in &svgs {
        let boxes: Vec<TextBox> =
            texts(svg).into_iter().filter(|t| t.visible && !t.content.is_empty()).collect();
        for (i, a) in boxes.iter().enumerate() {
            for b in &boxes[i + 1..] {
                let (p, q) = (a.rect, b.rect);
                let apart = p.2 <= q.0 + 1.0 || q.2 <= p.0 + 1.0 || p.3 <= q.1 + 1.0 || q.3 <= p.1 + 1.0;
                assert!(apart, "{name}: '{}' {:?} overlaps '{}' {:?}", a.content, p, b.content, q);
            }
        }
    }
}

/// A backend that records filled rectangles and bitmaps (and measures text crudely), to compare
/// a heat map drawn as cells with the same heat map drawn as one bitmap.
#[derive(Default, Clone)]
struct Recorder {
    rects: Shared<Vec<FilledRect>>,
    /// Stroked (unfilled) rectangles: the heat maps' frames.
    frames: Shared<Vec<FilledRect>>,
    blits: Shared<Vec<Blit>>,
}

type Shared<T> = std::rc::Rc<std::cell::RefCell<T>>;
/// Corners and colour of a filled rectangle.
type FilledRect = ((i32, i32), (i32, i32), (u8, u8, u8));
/// Position, size and RGB pixels of a bitmap.
type Blit = ((i32, i32), (u32, u32), Vec<u8>);

impl plotters_backend::DrawingBackend for Recorder {
    type ErrorType = std::io::Error;
    fn get_size(&self) -> (u32, u32) {
        (900, 360)
    }
    fn ensure_prepared(&mut self) -> Result<(), plotters_backend::DrawingErrorKind<std::io::Error>> {
        Ok(())
    }
    fn present(&mut self) -> Result<(), plotters_backend::DrawingErrorKind<std::io::Error>> {
        Ok(())
    }
    fn draw_pixel(
        &mut self,
        _: plotters_backend::BackendCoord,
        _: plotters_backend::BackendColor,
    ) -> Result<(), plotters_backend::DrawingErrorKind<std::io::Error>> {
        Ok(())
    }
    fn draw_rect<S: plotters_backend::BackendStyle>(
        &mut self,
        a: plotters_backend::BackendCoord,
        b: plotters_backend::BackendCoord,
        s: &S,
        fill: bool,
    ) -> Result<(), plotters_backend::DrawingErrorKind<std::io::Error>> {
        if fill {
            self.rects.borrow_mut().push((a, b, s.color().rgb));
        } else {
            self.frames.borrow_mut().push((a, b, s.color().rgb));
        }
        Ok(())
    }
    fn blit_bitmap(
        &mut self,
        pos: plotters_backend::BackendCoord,
        size: (u32, u32),
        src: &[u8],
    ) -> Result<(), plotters_backend::DrawingErrorKind<std::io::Error>> {
        self.blits.borrow_mut().push((pos, size, src.to_vec()));
        Ok(())
    }
    fn estimate_text_size<T: plotters_backend::BackendTextStyle>(
        &self,
        text: &str,
        s: &T,
    ) -> Result<(u32, u32), plotters_backend::DrawingErrorKind<std::io::Error>> {
        Ok(((text.chars().count() as f64 * s.size() * 0.6) as u32, s.size() as u32))
    }
    fn draw_text<T: plotters_backend::BackendTextStyle>(
        &mut self,
        _: &str,
        _: &T,
        _: plotters_backend::BackendCoord,
    ) -> Result<(), plotters_backend::DrawingErrorKind<std::io::Error>> {
        Ok(())
    }
}

/// A pixel's position on the area and its RGB colour.
type Pixel = ((i32, i32), (u8, u8, u8));

/// Every pixel of the recorded bitmaps.
fn blit_pixels(blits: &[Blit]) -> Vec<Pixel> {
    let mut out = Vec::new();
    for ((x, y), (bw, bh), rgb) in blits {
        assert_eq!(rgb.len(), (*bw * *bh * 3) as usize);
        for (i, px) in rgb.chunks_exact(3).enumerate() {
            let (dx, dy) = ((i % *bw as usize) as i32, (i / *bw as usize) as i32);
            out.push(((x + dx, y + dy), (px[0], px[1], px[2])));
        }
    }
    out
}

/// The raster path (the page's canvases) paints exactly the cells the rectangle path (SVG)
/// paints: every pixel of every bitmap has the colour of the cell rectangle covering it, and the
/// bitmaps cover the same pixels as the cells.
#[test]
fn heat_maps_as_bitmaps_match_the_cells() {
    let (h, w) = (23, 37);
    let a: Vec<f32> = (0..h * w).map(|i| ((i * 7919) % 101) as f32 - 50.0).collect();
    let b: Vec<f32> = a.iter().enumerate().map(|(i, v)| v * 0.8 + (i % 5) as f32).collect();
    let fa = FeatureMap::new(1, h, w, a).unwrap();
    let fb = FeatureMap::new(1, h, w, b).unwrap();
    let d = FeatureTripleData::new(&fa, &fb, 0, MAX_MAP_SIDE, "T = 2, DW→PW").unwrap();
    let draw = |raster: bool| {
        let rec = Recorder::default();
        let area = plotters::prelude::IntoDrawingArea::into_drawing_area(rec.clone());
        let style = ChartStyle { raster, ..ChartStyle::default() };
        draw_feature_maps(&area, &d, &style).unwrap();
        let rects = rec.rects.borrow().clone();
        let blits = rec.blits.borrow().clone();
        (rects, blits)
    };
    let (cell_rects, _) = draw(false);
    let (raster_rects, blits) = draw(true);
    // Three maps plus the colour bars, one bitmap each; no cell rectangles left.
    assert!(blits.len() >= 3, "{} bitmaps", blits.len());
    assert!(raster_rects.len() + 3 * w * h / 2 < cell_rects.len());
    let mut painted = std::collections::HashMap::new();
    for ((x0, y0), (x1, y1), c) in &cell_rects {
        for y in *y0..=*y1 {
            for x in *x0..=*x1 {
                painted.insert((x, y), *c);
            }
        }
    }
    let mut checked = 0;
    for (p, got) in blit_pixels(&blits) {
        assert_eq!(Some(got), painted.get(&p).copied(), "pixel {p:?}");
        checked += 1;
    }
    assert!(checked > 3 * w * h, "{checked} pixels compared");
}

/// The filter chart on the page's canvases paints each grid (its filters, frames, colour bar and
/// the background between them) as one bitmap whose pixels are those of the rectangle path: a
/// cell's colour inside each cell, the frame colour (foreground at 40 % over what lies below) on
/// each frame's outline, the background elsewhere.
#[test]
fn filter_grids_as_one_bitmap_match_the_rectangles() {
    let k =
        Kernel::new(64, 64, 3, 3, read_npy_f32("assets/layers/craft_vgg16bn_conv1_2_64x64x3x3.npy")).unwrap();
    let d = nalgebra_decomposition(&k, Order::DwPw);
    let f = FilterGridData::from_decomposition(&k, &d, 7, 3).unwrap();
    let draw = |raster: bool| {
        let rec = Recorder::default();
        let area = plotters::prelude::IntoDrawingArea::into_drawing_area(rec.clone());
        let style = ChartStyle { raster, ..ChartStyle::default() };
        draw_filters(&area, &f, &style).unwrap();
        let (rects, frames, blits) =
            (rec.rects.borrow().clone(), rec.frames.borrow().clone(), rec.blits.borrow().clone());
        (rects, frames, blits)
    };
    let (cells, frames, _) = draw(false);
    let (raster_rects, _, blits) = draw(true);
    // Three grids of 16 filters, the 3 depthwise filters, the pointwise matrix: one bitmap each,
    // and only the background fill left as a rectangle.
    assert_eq!(blits.len(), 5);
    assert!(raster_rects.len() <= 1, "{} rectangles", raster_rects.len());
    assert!(cells.len() > 3 * 16 * 9 + 3 * 9 + 16 * 3, "{} cells", cells.len());
    let bg = ChartStyle::default().background;
    let fg = ChartStyle::default().foreground;
    // The rectangle path's picture (a filled rectangle covers x0..x1 × y0..y1, as a canvas fills
    // it), without the first filled rectangle: the background.
    let mut painted = std::collections::HashMap::new();
    for ((x0, y0), (x1, y1), c) in &cells[1..] {
        for y in *y0..*y1 {
            for x in *x0..*x1 {
                painted.insert((x, y), *c);
            }
        }
    }
    let mut outline = std::collections::HashSet::new();
    for ((x0, y0), (x1, y1), _) in &frames {
        for x in *x0..=*x1 {
            outline.insert((x, *y0));
            outline.insert((x, *y1));
        }
        for y in *y0..=*y1 {
            outline.insert((*x0, y));
            outline.insert((*x1, y));
        }
    }
    let blend = |c: (u8, u8, u8)| {
        let m = |f: u8, v: u8| (0.4 * f as f64 + 0.6 * v as f64).round() as u8;
        (m(fg.0, c.0), m(fg.1, c.1), m(fg.2, c.2))
    };
    let (mut on_cells, mut on_frames) = (0, 0);
    for (p, got) in blit_pixels(&blits) {
        let below = painted.get(&p).copied().unwrap_or((bg.0, bg.1, bg.2));
        let want = if outline.contains(&p) {
            on_frames += 1;
            blend(below)
        } else {
            on_cells += painted.contains_key(&p) as usize;
            below
        };
        assert_eq!(got, want, "pixel {p:?}");
    }
    assert!(on_cells > 1000 && on_frames > 500, "{on_cells} cell and {on_frames} frame pixels compared");
}

/// The filter chart's texts do not overlap at the page's sizes, even at full rank (the σ list of
/// the depthwise title is shortened to its half of the chart).
#[test]
fn filter_chart_texts_do_not_overlap() {
    let k =
        Kernel::new(64, 64, 3, 3, read_npy_f32("assets/layers/craft_vgg16bn_conv1_2_64x64x3x3.npy")).unwrap();
    let d = nalgebra_decomposition(&k, Order::DwPw);
    let style = ChartStyle { font_size: 14.0, ..ChartStyle::default() };
    for (w, h) in [(640, 420), (900, 420)] {
        for t in [1, 3, 9] {
            let f = FilterGridData::from_decomposition(&k, &d, 7, t).unwrap();
            let svg = to_svg(w, h, |a| draw_filters(a, &f, &style)).unwrap();
            let boxes: Vec<TextBox> =
                texts(&svg).into_iter().filter(|t| t.visible && !t.content.is_empty()).collect();
            assert!(boxes.iter().any(|b| b.content.starts_with("depthwise filters")));
            for (i, a) in boxes.iter().enumerate() {
                for b in &boxes[i + 1..] {
                    let (p, q) = (a.rect, b.rect);
                    let apart = p.2 <= q.0 + 1.0 || q.2 <= p.0 + 1.0 || p.3 <= q.1 + 1.0 || q.3 <= p.1 + 1.0;
                    assert!(apart, "{w}×{h} T={t}: '{}' {:?} overlaps '{}' {:?}", a.content, p, b.content, q);
                }
            }
        }
    }
}

#[test]
fn accuracy_draws_each_strategy_sorted_by_macs_with_the_original_and_the_choice() {
    let style = ChartStyle::default();
    let data = AccuracyData {
        series: vec![
            AccuracySeries {
                label: "one T for all, DW→PW".into(),
                strategy: 0,
                dw_pw: true,
                points: vec![(20e6, 0.90), (10e6, 0.50), (15e6, 0.80)],
            },
            AccuracySeries {
                label: "MAC budget, PW→DW".into(),
                strategy: 3,
                dw_pw: false,
                points: vec![(12e6, 0.93)],
            },
        ],
        original: 0.95,
        original_macs: 29e6,
        current: Some((15e6, 0.80)),
        items: 1000,
    };
    let svg = to_svg(700, 420, |a| draw_accuracy(a, &data, &style)).unwrap();
    assert_clean(&svg);
    let line = &lines_of(&svg, RGBColor(31, 119, 180))[0];
    assert_eq!(line.len(), 3);
    // Sorted by MACs (left to right), higher accuracy higher on the page (smaller y).
    assert!(line[0].0 < line[1].0 && line[1].0 < line[2].0);
    assert!(line[0].1 > line[1].1 && line[1].1 > line[2].1);
    // The original's MACs are right of every point; the choice's marker sits on its point.
    assert!(marker_x(&svg, style.reference) > line[2].0);
    assert!((marker_x(&svg, style.marker) - line[1].0).abs() <= 1.0);
    for text in ["original 95.0 %", "1000 test images", "MAC budget, PW→DW", "your choice"] {
        assert!(svg.contains(text), "{text} missing");
    }
}
