//! Figures: one module per plot. Text is drawn with the embedded DejaVu Sans (no system fonts).

pub mod curves;
pub mod delta;
pub mod heatmap;
pub mod meta_loss;
pub mod profile;
pub mod speedup;

use anyhow::{anyhow, Result};
use plotters::coord::types::RangedCoordf64;
use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::{register_font, FontStyle, RGBColor};
use std::path::Path;
use std::sync::Once;

/// DejaVu Sans (Bitstream Vera licence, see `assets/DejaVuSans.LICENSE`).
static FONT: &[u8] = include_bytes!("../../assets/DejaVuSans.ttf");

/// Font family name to use in every figure (the embedded font is registered under it, and SVGs
/// name it with the font embedded).
pub const FAMILY: &str = "DejaVu Sans";

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

/// A chart with f64 axes.
pub type Chart<'a, DB> = ChartContext<'a, DB, Cartesian2d<RangedCoordf64, RangedCoordf64>>;

/// An image format figures are written in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// `NAME.png`, a bitmap.
    Png,
    /// `NAME.svg`, vector graphics with the embedded font inside (for papers).
    Svg,
}

impl Format {
    /// Parse `png` or `svg`.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "png" => Some(Format::Png),
            "svg" => Some(Format::Svg),
            _ => None,
        }
    }
}

/// Write a figure of `size` pixels in each of `formats`: `png` drawn at `path`, `svg` at
/// `path` with the extension `svg` (then given the font, see [`embed_font`]).
pub fn render(
    path: &Path,
    formats: &[Format],
    size: (u32, u32),
    png: impl FnOnce(DrawingArea<BitMapBackend<'_>, Shift>) -> Result<()>,
    svg: impl FnOnce(DrawingArea<SVGBackend<'_>, Shift>) -> Result<()>,
) -> Result<()> {
    ensure_font();
    if formats.contains(&Format::Png) {
        png(BitMapBackend::new(path, size).into_drawing_area())?;
    }
    if formats.contains(&Format::Svg) {
        let svg_path = path.with_extension("svg");
        svg(SVGBackend::new(&svg_path, size).into_drawing_area())?;
        embed_font(&svg_path)?;
    }
    Ok(())
}

/// Put the embedded DejaVu Sans into an SVG plotters wrote (as a base64 `@font-face`), so the
/// text renders in the figure's own font wherever the file goes.
pub fn embed_font(path: &Path) -> Result<()> {
    let svg = std::fs::read_to_string(path).map_err(|e| anyhow!("reading {}: {e}", path.display()))?;
    let Some(open) = svg.find("<svg").and_then(|i| svg[i..].find('>').map(|j| i + j + 1)) else { return Err(anyhow!("{}: no <svg> element", path.display())) };
    let out = format!("{}<defs><style>{}</style></defs>{}", &svg[..open], font_face_css(), &svg[open..]);
    std::fs::write(path, out).map_err(|e| anyhow!("writing {}: {e}", path.display()))
}

/// The `@font-face` rule carrying the embedded font (base64), as SVGs and the HTML page use it.
pub fn font_face_css() -> String {
    use base64::Engine;
    format!(
        "@font-face{{font-family:\"{FAMILY}\";src:url(data:font/ttf;base64,{})format(\"truetype\");}}",
        base64::engine::general_purpose::STANDARD.encode(FONT)
    )
}

/// An SVG written by [`render`] without its copy of the font (for a page that carries it once).
pub fn without_font(svg: &str) -> String {
    svg.replacen(&format!("<defs><style>{}</style></defs>", font_face_css()), "", 1)
}

/// Draw one thick line per series in palette order, with a framed legend at `position`.
pub fn lines_with_legend<'a, DB: DrawingBackend + 'a>(
    chart: &mut Chart<'a, DB>,
    series: Vec<(String, Vec<(f64, f64)>)>,
    position: SeriesLabelPosition,
) -> Result<()>
where
    DB::ErrorType: 'static,
{
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
