//! Singular-value spectra of all slices: median and 10–90 % band of σ_k / ‖M_s‖_F vs k.

use super::lines::{draw_legend_strip, draw_panel, t_range, Band, LegendItem, Line, Panel, VMark};
use super::{clear, ChartStyle, DrawResult};
use ndlab_core::decouple::Spectra;
use ndlab_core::layer::Order;
use plotters::coord::Shift;
use plotters::prelude::*;

/// Per-k statistics of the normalised singular values σ_{s,k} / ‖M_s‖_F over all slices with
/// non-zero energy. All vectors have length `full_rank` (index k − 1).
#[derive(Debug, Clone, PartialEq)]
pub struct SpectrumData {
    /// The ordering the slices belong to.
    pub order: Order,
    /// Number of singular values per slice.
    pub full_rank: usize,
    /// Slices in total.
    pub n_slices: usize,
    /// Slices left out because they are all zero.
    pub zero_slices: usize,
    /// Median over slices.
    pub median: Vec<f64>,
    /// 10th percentile.
    pub p10: Vec<f64>,
    /// 90th percentile.
    pub p90: Vec<f64>,
    /// Minimum over slices.
    pub min: Vec<f64>,
    /// Maximum over slices.
    pub max: Vec<f64>,
    /// The current T (the cut), drawn as a vertical line.
    pub t: usize,
    /// Also draw the min/max envelope.
    pub show_min_max: bool,
}

impl SpectrumData {
    /// Statistics from each slice's singular values (descending, any lengths; missing values
    /// count as 0). Slices whose σ are all zero (or not finite) are left out and counted.
    pub fn from_sigmas(order: Order, sigmas: &[Vec<f64>], t: usize) -> Self {
        let full_rank = sigmas.iter().map(Vec::len).max().unwrap_or(0);
        let mut columns: Vec<Vec<f64>> = vec![Vec::with_capacity(sigmas.len()); full_rank];
        let mut zero_slices = 0;
        for s in sigmas {
            let norm = s.iter().map(|v| v * v).sum::<f64>().sqrt();
            if !(norm > 0.0 && norm.is_finite()) {
                zero_slices += 1;
                continue;
            }
            for (k, col) in columns.iter_mut().enumerate() {
                col.push(s.get(k).copied().unwrap_or(0.0) / norm);
            }
        }
        for col in &mut columns {
            col.sort_by(f64::total_cmp);
        }
        let stat = |q: f64| columns.iter().map(|c| quantile(c, q)).collect::<Vec<_>>();
        SpectrumData {
            order,
            full_rank,
            n_slices: sigmas.len(),
            zero_slices,
            median: stat(0.5),
            p10: stat(0.1),
            p90: stat(0.9),
            min: stat(0.0),
            max: stat(1.0),
            t,
            show_min_max: false,
        }
    }

    /// Statistics of one ordering's slices, cut at `t`.
    pub fn from_spectra(d: &Spectra, t: usize) -> Self {
        let sigmas: Vec<Vec<f64>> = d.slices.iter().map(|s| s.sigma.clone()).collect();
        let mut data = Self::from_sigmas(d.order, &sigmas, t);
        data.full_rank = d.full_rank.max(data.full_rank);
        data
    }
}

/// Linear-interpolation quantile of sorted values (NaN if empty).
pub(crate) fn quantile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let pos = q.clamp(0.0, 1.0) * (sorted.len() - 1) as f64;
    let (i, f) = (pos.floor() as usize, pos.fract());
    let a = sorted[i];
    let b = sorted[(i + 1).min(sorted.len() - 1)];
    a + (b - a) * f
}

/// Draws the spectra chart.
pub fn draw_spectrum<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    data: &SpectrumData,
    style: &ChartStyle,
) -> DrawResult {
    clear(area, style)?;
    let color = style.order_color(data.order);
    let ks = |v: &[f64]| v.iter().enumerate().map(|(k, &y)| ((k + 1) as f64, y)).collect::<Vec<_>>();
    let band = |lo: &[f64], hi: &[f64]| {
        lo.iter().zip(hi).enumerate().map(|(k, (&l, &h))| ((k + 1) as f64, l, h)).collect::<Vec<_>>()
    };
    let mut bands = vec![];
    if data.show_min_max {
        bands.push(Band {
            label: "min–max".into(),
            points: band(&data.min, &data.max),
            color,
            opacity: 0.12,
        });
    }
    bands.push(Band { label: "10–90 %".into(), points: band(&data.p10, &data.p90), color, opacity: 0.3 });
    let used = data.n_slices - data.zero_slices.min(data.n_slices);
    let caption = format!(
        "Singular values of {} {} slices{}",
        used,
        data.order.label(),
        if data.zero_slices > 0 {
            format!(" ({} all-zero left out)", data.zero_slices)
        } else {
            String::new()
        }
    );
    let panel = Panel {
        caption,
        caption_moves: false,
        x_label: "k (term)".into(),
        y_label: "σ_k / ‖slice‖_F".into(),
        x_range: t_range(data.full_rank),
        y_range: (0.0, 1.02),
        bands,
        lines: vec![Line { label: "median".into(), points: ks(&data.median), color, dots: true }],
        vmarks: vec![VMark {
            x: data.t as f64 + 0.5,
            label: format!("T = {}", data.t),
            color: style.marker,
            row: 0,
            label_left: false,
            moves: true,
            in_legend: false,
        }],
        hmarks: vec![],
        legend: None,
    };
    // The legend goes below the plot: the T marker moves across the whole plot.
    let mut items: Vec<LegendItem> = panel.bands.iter().map(LegendItem::band).collect();
    items.extend(panel.lines.iter().map(LegendItem::line));
    let plot = draw_legend_strip(area, &items, style)?;
    draw_panel(&plot, &panel, style)
}
