//! The page's charts, each a function generic over the plotters backend (canvas on screen, SVG
//! for export). Thin bridge: the data comes from the worker's messages, the maths from the core.

use super::model::cost_row;
use crate::decouple::Decomposition;
use crate::protocol::{ForwardResult, LayerSummary, SliceView};
use crate::Order;
use plotters::coord::Shift;
use plotters::prelude::*;

/// Result of drawing: errors as text.
pub type Drawn = Result<(), String>;

fn err<E: std::fmt::Display>(e: E) -> String {
    e.to_string()
}

const BLUE: RGBColor = RGBColor(31, 119, 180);
const ORANGE: RGBColor = RGBColor(230, 110, 20);
const GREY: RGBColor = RGBColor(120, 120, 120);
const CUT: RGBColor = RGBColor(200, 30, 30);

fn order_color(o: Order) -> RGBColor {
    match o {
        Order::DwPw => BLUE,
        Order::PwDw => ORANGE,
    }
}

/// Singular-value spectra of all slices: median and 10–90 % band of σ_k / σ_1, cut at T.
pub fn spectrum<DB: DrawingBackend>(area: &DrawingArea<DB, Shift>, dec: &Decomposition, t: usize) -> Drawn {
    let r = dec.full_rank.max(1);
    let mut cols: Vec<Vec<f64>> = vec![Vec::new(); r];
    for s in &dec.slices {
        let top = s.sigma.first().copied().unwrap_or(0.0);
        if top > 0.0 {
            for (k, v) in s.sigma.iter().enumerate().take(r) {
                cols[k].push(v / top);
            }
        }
    }
    let q = |v: &mut Vec<f64>, p: f64| -> f64 {
        if v.is_empty() {
            return 0.0;
        }
        v.sort_by(|a, b| a.total_cmp(b));
        v[((v.len() - 1) as f64 * p).round() as usize]
    };
    let stats: Vec<(f64, f64, f64)> = cols.iter_mut().map(|c| (q(c, 0.1), q(c, 0.5), q(c, 0.9))).collect();
    let mut chart = ChartBuilder::on(area)
        .margin(10)
        .x_label_area_size(36)
        .y_label_area_size(50)
        .build_cartesian_2d(0.5f64..r as f64 + 0.5, 0f64..1.05f64)
        .map_err(err)?;
    chart
        .configure_mesh()
        .x_desc("index k")
        .y_desc("σ_k / σ_1")
        .x_labels(r.min(12))
        .disable_x_mesh()
        .draw()
        .map_err(err)?;
    let band: Vec<(f64, f64)> = stats
        .iter()
        .enumerate()
        .map(|(k, s)| (k as f64 + 1.0, s.2))
        .chain(stats.iter().enumerate().rev().map(|(k, s)| (k as f64 + 1.0, s.0)))
        .collect();
    chart.draw_series(std::iter::once(Polygon::new(band, order_color(dec.order).mix(0.2)))).map_err(err)?;
    chart
        .draw_series(LineSeries::new(
            stats.iter().enumerate().map(|(k, s)| (k as f64 + 1.0, s.1)),
            order_color(dec.order).stroke_width(3),
        ))
        .map_err(err)?
        .label(format!("median over {} slices ({}), band 10–90 %", dec.slices.len(), dec.order.label()))
        .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 16, y)], BLUE.stroke_width(3)));
    cut_line(&mut chart, t as f64 + 0.5, 1.05)?;
    legend(&mut chart)
}

fn cut_line<'a, DB: DrawingBackend + 'a>(
    chart: &mut ChartContext<
        'a,
        DB,
        Cartesian2d<plotters::coord::types::RangedCoordf64, plotters::coord::types::RangedCoordf64>,
    >,
    x: f64,
    top: f64,
) -> Drawn {
    chart
        .draw_series(std::iter::once(PathElement::new(vec![(x, 0.0), (x, top)], CUT.stroke_width(2))))
        .map_err(err)?;
    Ok(())
}

fn legend<'a, DB: DrawingBackend + 'a, CT: CoordTranslate>(chart: &mut ChartContext<'a, DB, CT>) -> Drawn {
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.85))
        .border_style(GREY)
        .position(SeriesLabelPosition::UpperRight)
        .draw()
        .map_err(err)
}

/// Energy kept and relative weight error against T, both orderings, T marked.
pub fn errors<DB: DrawingBackend>(area: &DrawingArea<DB, Shift>, layer: &LayerSummary, t: usize) -> Drawn {
    let rmax = layer.orders.iter().map(|o| o.spectra.full_rank).max().unwrap_or(1).max(1);
    let mut chart = ChartBuilder::on(area)
        .margin(10)
        .x_label_area_size(36)
        .y_label_area_size(50)
        .build_cartesian_2d(0.5f64..rmax as f64 + 0.5, 0f64..1.05f64)
        .map_err(err)?;
    chart
        .configure_mesh()
        .x_desc("T (terms kept)")
        .x_labels(rmax.min(12))
        .disable_x_mesh()
        .draw()
        .map_err(err)?;
    for o in &layer.orders {
        let c = order_color(o.spectra.order);
        let e = o.spectra.rel_weight_error();
        let k = o.spectra.energy_kept();
        chart
            .draw_series(LineSeries::new(
                e.iter().enumerate().map(|(i, v)| (i as f64 + 1.0, *v)),
                c.stroke_width(3),
            ))
            .map_err(err)?
            .label(format!("weight error {}", o.spectra.order.label()))
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 16, y)], c.stroke_width(3)));
        chart
            .draw_series(DashedLineSeries::new(
                k.iter().enumerate().map(|(i, v)| (i as f64 + 1.0, *v)),
                6,
                4,
                c.stroke_width(2),
            ))
            .map_err(err)?
            .label(format!("energy kept {}", o.spectra.order.label()))
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 16, y)], c.stroke_width(1)));
    }
    cut_line(&mut chart, t as f64, 1.05)?;
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.85))
        .border_style(GREY)
        .position(SeriesLabelPosition::MiddleRight)
        .draw()
        .map_err(err)
}

/// MACs against T for both orderings, with the original layer's line; T marked.
pub fn cost<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    layer: &LayerSummary,
    t: usize,
    hw: (usize, usize),
) -> Drawn {
    let rmax = layer.orders.iter().map(|o| o.spectra.full_rank).max().unwrap_or(1).max(1);
    let original = cost_row(layer, Order::DwPw, 1, hw).original_macs;
    let mut top = original;
    for o in &layer.orders {
        for tt in 1..=o.spectra.full_rank {
            top = top.max(cost_row(layer, o.spectra.order, tt, hw).macs);
        }
    }
    let g = 1e6;
    let mut chart = ChartBuilder::on(area)
        .margin(10)
        .x_label_area_size(36)
        .y_label_area_size(60)
        .build_cartesian_2d(0.5f64..rmax as f64 + 0.5, 0f64..top / g * 1.1)
        .map_err(err)?;
    chart
        .configure_mesh()
        .x_desc("T (terms kept)")
        .y_desc(format!("M MACs ({}×{} output)", hw.0, hw.1))
        .x_labels(rmax.min(12))
        .disable_x_mesh()
        .draw()
        .map_err(err)?;
    chart
        .draw_series(LineSeries::new(
            vec![(0.5, original / g), (rmax as f64 + 0.5, original / g)],
            BLACK.stroke_width(2),
        ))
        .map_err(err)?
        .label("original layer")
        .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 16, y)], BLACK.stroke_width(2)));
    for o in &layer.orders {
        let c = order_color(o.spectra.order);
        let ord = o.spectra.order;
        chart
            .draw_series(LineSeries::new(
                (1..=o.spectra.full_rank).map(|tt| (tt as f64, cost_row(layer, ord, tt, hw).macs / g)),
                c.stroke_width(3),
            ))
            .map_err(err)?
            .label(format!("decoupled {}", ord.label()))
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 16, y)], c.stroke_width(3)));
    }
    cut_line(&mut chart, t as f64, top / g * 1.1)?;
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.85))
        .border_style(GREY)
        .position(SeriesLabelPosition::UpperLeft)
        .draw()
        .map_err(err)
}

/// A diverging colour for v in [-1, 1] (blue – white – red).
fn diverging(v: f64) -> RGBColor {
    let v = v.clamp(-1.0, 1.0);
    if v >= 0.0 {
        let a = (255.0 * (1.0 - v)) as u8;
        RGBColor(255, a, a)
    } else {
        let a = (255.0 * (1.0 + v)) as u8;
        RGBColor(a, a, 255)
    }
}

/// Draws a grid of `rows` × `cols` cells from `vals` (row-major) into `area`, scaled by `scale`.
fn heat<DB: DrawingBackend>(area: &DrawingArea<DB, Shift>, vals: &[f64], cols: usize, scale: f64) -> Drawn {
    let (w, h) = area.dim_in_pixel();
    let rows = vals.len().div_ceil(cols.max(1)).max(1);
    let cw = w as f64 / cols.max(1) as f64;
    let ch = h as f64 / rows as f64;
    for (i, v) in vals.iter().enumerate() {
        let (r, c) = (i / cols.max(1), i % cols.max(1));
        let x0 = (c as f64 * cw) as i32;
        let y0 = (r as f64 * ch) as i32;
        let x1 = ((c + 1) as f64 * cw) as i32;
        let y1 = ((r + 1) as f64 * ch) as i32;
        let color = if scale > 0.0 { diverging(v / scale) } else { WHITE };
        area.draw(&Rectangle::new([(x0, y0), (x1, y1)], color.filled())).map_err(err)?;
    }
    Ok(())
}

/// Filters of one slice: original, reconstructed at T and difference (first filters), then the
/// depthwise filters and pointwise weights of the first T terms.
pub fn filters<DB: DrawingBackend>(area: &DrawingArea<DB, Shift>, s: &SliceView, t: usize) -> Drawn {
    let t = t.min(s.factors.sigma.len());
    let shown = s.rows.min(8);
    let recon = super::model::reconstruct_slice(s, t);
    let scale = s.matrix.iter().fold(0.0f64, |m, v| m.max(v.abs()));
    let (top, bottom) = area.split_vertically((area.dim_in_pixel().1 as f64 * 0.58) as u32);
    let panels = top.split_evenly((3, shown.max(1)));
    let titles = ["original", "rebuilt", "difference"];
    for row in 0..3 {
        for f in 0..shown {
            let Some(p) = panels.get(row * shown + f) else { continue };
            let p = p.margin(14, 2, 2, 2);
            let vals: Vec<f64> = (0..s.k2)
                .map(|j| {
                    let o = s.matrix[f * s.k2 + j];
                    let r = recon[f * s.k2 + j];
                    [o, r, o - r][row]
                })
                .collect();
            heat(&p, &vals, s.kw, scale)?;
            if f == 0 {
                p.titled(titles[row], ("sans-serif", 12)).map_err(err)?;
            }
        }
    }
    let terms = bottom.split_evenly((2, t.clamp(1, 9)));
    let pw_scale = s.factors.pw.iter().fold(0.0f64, |m, v| m.max(v.abs()));
    for k in 0..t.min(9) {
        if let Some(p) = terms.get(k) {
            let p = p.margin(14, 2, 2, 2);
            let dw = &s.factors.dw[k * s.k2..(k + 1) * s.k2];
            let dmax = dw.iter().fold(0.0f64, |m, v| m.max(v.abs()));
            heat(&p, dw, s.kw, dmax)?;
            p.titled(&format!("DW {}", k + 1), ("sans-serif", 12)).map_err(err)?;
        }
        if let Some(p) = terms.get(t.min(9) + k) {
            let p = p.margin(14, 2, 2, 2);
            let pw = &s.factors.pw[k * s.rows..(k + 1) * s.rows];
            let cols = (pw.len() as f64).sqrt().ceil() as usize;
            heat(&p, pw, cols.max(1), pw_scale)?;
            p.titled(&format!("PW {} (σ={:.2})", k + 1, s.factors.sigma[k]), ("sans-serif", 12))
                .map_err(err)?;
        }
    }
    Ok(())
}

/// The chosen output channel: original, decoupled and difference maps.
pub fn feature_maps<DB: DrawingBackend>(area: &DrawingArea<DB, Shift>, f: &ForwardResult) -> Drawn {
    let panels = area.split_evenly((1, 3));
    let scale = f.original.iter().fold(0.0f32, |m, v| m.max(v.abs())) as f64;
    let diff: Vec<f64> = f.original.iter().zip(&f.decoupled).map(|(a, b)| (*a - *b) as f64).collect();
    let orig: Vec<f64> = f.original.iter().map(|&v| v as f64).collect();
    let dec: Vec<f64> = f.decoupled.iter().map(|&v| v as f64).collect();
    let titles = ["original output", &format!("decoupled, T = {}", f.t), "difference (same scale)"];
    for (i, vals) in [orig, dec, diff].iter().enumerate() {
        let p = panels[i].margin(20, 4, 4, 4);
        let (pw, ph) = p.dim_in_pixel();
        let cell = (pw as f64 / f.w.max(1) as f64).min(ph as f64 / f.h.max(1) as f64);
        let sub = p.shrink((0, 0), ((cell * f.w as f64) as u32, (cell * f.h as f64) as u32));
        image_map(&sub, vals, f.w, f.h, scale)?;
        panels[i].titled(titles[i], ("sans-serif", 14)).map_err(err)?;
    }
    Ok(())
}

fn image_map<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    vals: &[f64],
    w: usize,
    h: usize,
    scale: f64,
) -> Drawn {
    let (pw, ph) = area.dim_in_pixel();
    // Sample the map at most once per pixel.
    let step_x = (w as f64 / pw.max(1) as f64).max(1.0);
    let step_y = (h as f64 / ph.max(1) as f64).max(1.0);
    let cols = (w as f64 / step_x) as usize;
    let rows = (h as f64 / step_y) as usize;
    let mut sampled = Vec::with_capacity(cols * rows);
    for r in 0..rows {
        for c in 0..cols {
            let y = ((r as f64 * step_y) as usize).min(h - 1);
            let x = ((c as f64 * step_x) as usize).min(w - 1);
            sampled.push(vals[y * w + x]);
        }
    }
    heat(area, &sampled, cols.max(1), scale)
}

/// Output relative error against T (as measured: not always monotone), with the weight error.
pub fn output_error<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    layer: &LayerSummary,
    curves: &[(Order, Vec<f64>)],
    t: usize,
) -> Drawn {
    let rmax = layer.orders.iter().map(|o| o.spectra.full_rank).max().unwrap_or(1).max(1);
    let top = curves.iter().flat_map(|(_, c)| c.iter().copied()).fold(1.0f64, f64::max).min(10.0);
    let mut chart = ChartBuilder::on(area)
        .margin(10)
        .x_label_area_size(36)
        .y_label_area_size(50)
        .build_cartesian_2d(0.5f64..rmax as f64 + 0.5, 0f64..top * 1.05)
        .map_err(err)?;
    chart
        .configure_mesh()
        .x_desc("T (terms kept)")
        .x_labels(rmax.min(12))
        .disable_x_mesh()
        .draw()
        .map_err(err)?;
    for (o, c) in curves {
        let col = order_color(*o);
        chart
            .draw_series(LineSeries::new(
                c.iter().enumerate().map(|(i, v)| (i as f64 + 1.0, *v)),
                col.stroke_width(3),
            ))
            .map_err(err)?
            .label(format!("output error {}", o.label()))
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 16, y)], col.stroke_width(3)));
        chart
            .draw_series(
                c.iter().enumerate().map(|(i, v)| Circle::new((i as f64 + 1.0, *v), 3, col.filled())),
            )
            .map_err(err)?;
    }
    cut_line(&mut chart, t as f64, top * 1.05)?;
    legend(&mut chart)
}
