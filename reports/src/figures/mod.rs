//! Figures: one module per plot. Text is drawn with the embedded DejaVu Sans (no system fonts).

pub mod curves;
pub mod delta;
pub mod heatmap;
pub mod profile;
pub mod speedup;

use anyhow::{anyhow, Result};
use plotters::coord::types::RangedCoordf64;
use plotters::prelude::*;
use plotters::style::{register_font, FontStyle, RGBColor};
use std::sync::Once;

/// DejaVu Sans (Bitstream Vera licence, see `assets/DejaVuSans.LICENSE`).
static FONT: &[u8] = include_bytes!("../../assets/DejaVuSans.ttf");

/// Font family name to use in every figure.
pub const FAMILY: &str = "sans-serif";

/// Register the embedded font under [`FAMILY`] (idempotent).
pub fn ensure_font() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        if register_font(FAMILY, FontStyle::Normal, FONT).is_err() {
            panic!("embedded DejaVuSans.ttf failed to load");
        }
    });
}

/// A colour-blind-safe qualitative palette (Okabe & Ito 2008).
pub const PALETTE: [RGBColor; 7] = [
    RGBColor(0, 114, 178),
    RGBColor(213, 94, 0),
    RGBColor(0, 158, 115),
    RGBColor(204, 121, 167),
    RGBColor(230, 159, 0),
    RGBColor(86, 180, 233),
    RGBColor(0, 0, 0),
];

/// A chart with f64 axes on a bitmap.
pub type Chart<'a, 'b> = ChartContext<'a, BitMapBackend<'b>, Cartesian2d<RangedCoordf64, RangedCoordf64>>;

/// Draw one thick line per series in palette order, with a framed legend at `position`.
pub fn lines_with_legend<'a, 'b: 'a>(chart: &mut Chart<'a, 'b>, series: Vec<(String, Vec<(f64, f64)>)>, position: SeriesLabelPosition) -> Result<()> {
    for (i, (label, pts)) in series.into_iter().enumerate() {
        let color = PALETTE[i % PALETTE.len()];
        chart
            .draw_series(LineSeries::new(pts, color.stroke_width(3)))
            .map_err(|e| anyhow!("{e}"))?
            .label(label)
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 24, y)], color.stroke_width(3)));
    }
    chart
        .configure_series_labels()
        .label_font((FAMILY, 16))
        .background_style(WHITE.mix(0.9))
        .border_style(BLACK.mix(0.3))
        .position(position)
        .draw()
        .map_err(|e| anyhow!("{e}"))?;
    Ok(())
}
