//! Bridge from the worker's messages to the `ndlab_charts` functions: builds each chart's data
//! struct from the summaries the UI thread holds (σ only for the whole layer, full factors for
//! the chosen slice, one output channel of the feature maps) and draws it on any backend.

use super::model::cost_data;
use ndlab_charts::{
    draw_costs, draw_energy_error, draw_feature_maps, draw_filters, draw_output_error, draw_spectrum,
    ChartLayer, ChartStyle, EnergyErrorData, FeatureTripleData, FilterGridData, OutputErrorData,
    SpectrumData, MAX_MAP_SIDE,
};
use ndlab_core::decouple::{Decomposition, Spectra};
use ndlab_core::layer::{FeatureMap, Kernel, Order};
use ndlab_lab::protocol::{ForwardResult, LayerSummary, SliceView};
use plotters::coord::Shift;
use plotters::prelude::*;
use std::cell::RefCell;

/// Result of drawing: errors as text.
pub type Drawn = Result<(), String>;

/// The page's chart style (slightly larger text than the default, for projectors), drawing
/// `layer` of the chart.
pub fn style(layer: ChartLayer) -> ChartStyle {
    ChartStyle { font_size: 14.0, layer, raster: true, ..ChartStyle::default() }
}

/// The chart data computed from the last spectra drawn (a T change reuses them).
#[derive(Default)]
pub struct Cache {
    /// The spectrum statistics of the last spectra drawn.
    spectrum: RefCell<Option<(u64, SpectrumData)>>,
    /// The energy and error curves of the last spectra drawn.
    energy: RefCell<Option<(u64, EnergyErrorData)>>,
}

/// Singular-value spectra of all slices of the current ordering, cut at T.
pub fn spectrum<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    cache: &Cache,
    dec: &Spectra,
    t: usize,
    style: &ChartStyle,
) -> Drawn {
    let mut data = cached(&cache.spectrum, spectra_key(&[dec]), || SpectrumData::from_spectra(dec, t));
    data.t = t;
    draw_spectrum(area, &data, style)
}

/// The value cached in `cell` under `key`, or `make()` (then cached).
fn cached<V: Clone>(cell: &RefCell<Option<(u64, V)>>, key: u64, make: impl FnOnce() -> V) -> V {
    let mut c = cell.borrow_mut();
    match c.as_ref() {
        Some((k, v)) if *k == key => v.clone(),
        _ => {
            let v = make();
            *c = Some((key, v.clone()));
            v
        }
    }
}

/// A hash of the decompositions' orderings, shapes and every singular value (FNV-1a over the
/// bits): what the spectrum and curve data are computed from.
fn spectra_key(decs: &[&Spectra]) -> u64 {
    let mut h = 0xcbf2_9ce4_8422_2325u64;
    let mut mix = |v: u64| h = (h ^ v).wrapping_mul(0x0100_0000_01b3);
    for d in decs {
        for v in [d.order as u64, d.n as u64, d.c as u64, d.kh as u64, d.kw as u64, d.full_rank as u64] {
            mix(v);
        }
        for s in &d.slices {
            mix(s.sigma.len() as u64);
            s.sigma.iter().for_each(|v| mix(v.to_bits()));
        }
    }
    h
}

/// Energy kept and relative weight error against T, both orderings.
pub fn errors<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    cache: &Cache,
    layer: &LayerSummary,
    t: usize,
    order: Order,
    style: &ChartStyle,
) -> Drawn {
    let decs: Vec<&Spectra> = layer.orders.iter().map(|o| &o.spectra).collect();
    let mut data =
        cached(&cache.energy, spectra_key(&decs), || EnergyErrorData::from_spectra(&decs, t, order));
    (data.t, data.order) = (t, order);
    draw_energy_error(area, &data, style)
}

/// MACs and parameters against T, both orderings, on an `hw` input.
pub fn cost<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    layer: &LayerSummary,
    t: usize,
    order: Order,
    hw: (usize, usize),
    style: &ChartStyle,
) -> Drawn {
    let data = cost_data(layer, hw, t, order).map_err(|e| e.to_string())?;
    draw_costs(area, &data, style)
}

/// Filters of the chosen slice: the slice alone is rebuilt as a one-slice kernel and
/// decomposition, so the chart's own builder does the truncation.
pub fn filters<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    s: &SliceView,
    t: usize,
    style: &ChartStyle,
) -> Drawn {
    let data = filter_data(s, t).map_err(|e| e.to_string())?;
    draw_filters(area, &data, style)
}

/// [`FilterGridData`] of a slice view at T.
pub fn filter_data(s: &SliceView, t: usize) -> ndlab_core::Result<FilterGridData> {
    let matrix: Vec<f32> = s.matrix.iter().map(|&v| v as f32).collect();
    let (n, c) = match s.order {
        Order::DwPw => (s.rows, 1),
        Order::PwDw => (1, s.rows),
    };
    let kernel = Kernel::new(n, c, s.kh, s.kw, matrix)?;
    let full_rank = s.factors.sigma.len();
    let dec = Decomposition {
        order: s.order,
        n,
        c,
        kh: s.kh,
        kw: s.kw,
        groups: 1,
        full_rank,
        slices: vec![s.factors.clone()],
    };
    let mut data = FilterGridData::from_decomposition(&kernel, &dec, 0, t.clamp(1, full_rank.max(1)))?;
    data.slice = s.index;
    Ok(data)
}

/// The chosen output channel: original, decoupled and difference maps.
pub fn feature_maps<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    f: &ForwardResult,
    style: &ChartStyle,
) -> Drawn {
    let one = |v: &[f32]| FeatureMap::new(1, f.maps.h, f.maps.w, v.to_vec());
    let label = format!("T = {}, {}", f.t, f.order.label());
    let mut data = one(&f.maps.original)
        .and_then(|a| {
            one(&f.maps.decoupled).and_then(|b| FeatureTripleData::new(&a, &b, 0, MAX_MAP_SIDE, &label))
        })
        .map_err(|e| e.to_string())?;
    data.channel = f.out_channel;
    draw_feature_maps(area, &data, style)
}

/// Output relative error against T (as measured: not always monotone).
pub fn output_error<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    curves: &[(Order, Vec<f64>)],
    t: usize,
    order: Order,
    input_label: &str,
    style: &ChartStyle,
) -> Drawn {
    let data = OutputErrorData { series: curves.to_vec(), t, order, input_label: input_label.to_string() };
    draw_output_error(area, &data, style)
}
