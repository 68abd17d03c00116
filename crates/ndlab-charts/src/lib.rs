//! Charts of a decoupled layer, each written once and generic over plotters' [`DrawingBackend`]:
//! the same function draws live on a `<canvas>` (plotters-canvas), to an SVG string for export
//! (see [`to_svg`]) and to an SVG string in native tests.
//!
//! Every chart takes a plain data struct (built from a [`ndlab_core::decouple::Decomposition`] or from
//! feature maps by the builder functions next to it) and a [`ChartStyle`]; charts do no maths
//! beyond mapping values to pixels. Drawing errors come back as `Err(String)`.
//!
//! | chart | data | function |
//! |---|---|---|
//! | singular-value spectra of all slices | [`SpectrumData`] | [`draw_spectrum`] |
//! | energy kept and weight error vs T | [`EnergyErrorData`] | [`draw_energy_error`] |
//! | MACs and params vs T | [`CostData`] | [`draw_costs`] |
//! | original/reconstructed/difference filters and their factors | [`FilterGridData`] | [`draw_filters`] |
//! | original/decoupled/difference feature maps | [`FeatureTripleData`] | [`draw_feature_maps`] |
//! | output relative error vs T | [`OutputErrorData`] | [`draw_output_error`] |
//! | error vs MACs of ND and its relatives | [`ParetoData`] | [`draw_pareto`] |

mod accuracy;
mod costs;
mod curves;
mod filters;
mod heatmap;
mod lines;
mod maps;
mod pareto;
mod spectrum;
#[cfg(test)]
mod tests;

pub use accuracy::{draw_accuracy, AccuracyData, AccuracySeries};
pub use costs::{draw_costs, CostData, CostSeries};
pub use curves::{draw_energy_error, draw_output_error, EnergyErrorData, OrderCurves, OutputErrorData};
pub use filters::{draw_filters, FilterGridData, MAX_FILTERS};
pub use heatmap::{diverging_color, HeatMap};
pub use maps::{draw_feature_maps, FeatureTripleData, MAX_MAP_SIDE};
pub use pareto::{draw_pareto, method_color, ParetoData};
pub use spectrum::{draw_spectrum, SpectrumData};

use ndlab_core::layer::Order;
use plotters::coord::Shift;
use plotters::prelude::*;

/// Result of drawing a chart: a drawing error becomes a readable message.
pub type DrawResult = std::result::Result<(), String>;

/// Colours and fonts shared by every chart.
#[derive(Debug, Clone, PartialEq)]
pub struct ChartStyle {
    /// CSS font family for all text.
    pub font: String,
    /// Base font size in pixels (captions are 1.3× this).
    pub font_size: f64,
    /// Fill of the whole drawing area.
    pub background: RGBColor,
    /// Text, axes and frames.
    pub foreground: RGBColor,
    /// Main colour of DW→PW series.
    pub dw_pw: RGBColor,
    /// Main colour of PW→DW series.
    pub pw_dw: RGBColor,
    /// Secondary colour of DW→PW series (e.g. the weight error next to the energy).
    pub dw_pw_light: RGBColor,
    /// Secondary colour of PW→DW series.
    pub pw_dw_light: RGBColor,
    /// The current-T marker (vertical line) and its label.
    pub marker: RGBColor,
    /// Reference lines (the original layer's cost, break-even marks).
    pub reference: RGBColor,
    /// Line width in pixels.
    pub stroke: u32,
    /// Which layer of the chart to draw (everything, by default).
    pub layer: ChartLayer,
    /// Heat maps of more than `heatmap::RASTER_MIN_CELLS` cells as one bitmap
    /// (`DrawingBackend::blit_bitmap`) instead of a rectangle per
    /// cell: for backends that blit fast (the page's canvases). Off by default: SVG keeps cells
    /// as rectangles (plotters' SVG backend would write every pixel as one).
    pub raster: bool,
}

/// The part of a chart to draw. A page that redraws on every change of T draws the
/// [`ChartLayer::Base`] (axes, curves, legend: nothing that depends on T) once per layer,
/// ordering and size, and only the [`ChartLayer::Marks`] (the current-T marker and any text that
/// names T) on a transparent canvas stacked on it. Both layers lay out the chart identically, so
/// together they show exactly what [`ChartLayer::All`] shows. Charts without a T marker (filters,
/// feature maps) draw everything for `All` and `Base`, and nothing for `Marks`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ChartLayer {
    /// The whole chart (export, tests).
    #[default]
    All,
    /// Everything that does not depend on the current T, on the background.
    Base,
    /// Only what depends on the current T, on a transparent area.
    Marks,
}

impl Default for ChartStyle {
    fn default() -> Self {
        ChartStyle {
            font: "sans-serif".into(),
            font_size: 13.0,
            background: RGBColor(255, 255, 255),
            foreground: RGBColor(34, 34, 34),
            dw_pw: RGBColor(31, 119, 180),
            pw_dw: RGBColor(214, 95, 14),
            dw_pw_light: RGBColor(116, 173, 209),
            pw_dw_light: RGBColor(244, 165, 96),
            marker: RGBColor(200, 30, 60),
            reference: RGBColor(110, 110, 110),
            stroke: 2,
            layer: ChartLayer::All,
            raster: false,
        }
    }
}

impl ChartStyle {
    /// Light text on a dark background.
    pub fn dark() -> Self {
        ChartStyle {
            background: RGBColor(24, 26, 30),
            foreground: RGBColor(225, 225, 225),
            reference: RGBColor(160, 160, 160),
            marker: RGBColor(255, 90, 110),
            ..ChartStyle::default()
        }
    }

    /// Main colour of an ordering.
    pub fn order_color(&self, order: Order) -> RGBColor {
        match order {
            Order::DwPw => self.dw_pw,
            Order::PwDw => self.pw_dw,
        }
    }

    /// Secondary colour of an ordering.
    pub fn order_color_light(&self, order: Order) -> RGBColor {
        match order {
            Order::DwPw => self.dw_pw_light,
            Order::PwDw => self.pw_dw_light,
        }
    }

    /// Text style at `scale` × the base font size.
    pub(crate) fn text(&self, scale: f64) -> TextStyle<'_> {
        (self.font.as_str(), self.font_size * scale).into_font().color(&self.foreground)
    }
}

/// Renders `draw` into a `width` × `height` SVG document and returns it as a string.
pub fn to_svg<F>(width: u32, height: u32, draw: F) -> std::result::Result<String, String>
where
    F: FnOnce(&DrawingArea<SVGBackend<'_>, Shift>) -> DrawResult,
{
    let mut out = String::new();
    {
        let root = SVGBackend::with_string(&mut out, (width.max(1), height.max(1))).into_drawing_area();
        draw(&root)?;
        root.present().map_err(err)?;
    }
    Ok(out)
}

/// A drawing error as a message.
pub(crate) fn err<E: std::fmt::Debug>(e: E) -> String {
    format!("drawing failed: {e:?}")
}

/// Fills the area with the style's background (not for the transparent [`ChartLayer::Marks`]).
pub(crate) fn clear<DB: DrawingBackend>(area: &DrawingArea<DB, Shift>, style: &ChartStyle) -> DrawResult {
    if style.layer == ChartLayer::Marks {
        return Ok(());
    }
    area.fill(&style.background).map_err(err)
}
