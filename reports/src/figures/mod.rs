//! Figures: one module per plot. Text is drawn with the embedded DejaVu Sans (no system fonts).
//!
//! The report's figures are [`Figure`]s, listed once in [`FIGURES`]: the report writer draws
//! each, `report.html` shows each under its title, and the tests and `ci/browser-check.sh`
//! (through `suite kinds`) expect each. A new figure is its module plus one line there. The
//! other plots (`delta` for `compare`, `meta_loss` for meta-training) belong to other outputs.

pub mod curves;
pub mod delta;
pub mod heatmap;
pub mod meta_loss;
pub mod profile;
pub mod speedup;

use crate::analysis::{Loaded, TaskRow};
use crate::win_rate::Bin;
use anyhow::{anyhow, Result};
use beatmatch_core::ArmRole;
use plotters::coord::types::RangedCoordf64;
use plotters::coord::{CoordTranslate, Shift};
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

/// Everything a report figure is drawn from, computed once per report.
pub struct ReportData<'a> {
    /// The study and its records.
    pub loaded: &'a Loaded,
    /// Per-task analysis.
    pub rows: &'a [TaskRow],
    /// Win rates by parameter and step bins.
    pub bins: &'a [Bin],
    /// Each arm's legend (the candidate's prefixed `candidate: `).
    pub labels: Vec<String>,
    /// The τ grid of the performance profiles.
    pub taus: Vec<f64>,
    /// ρ(τ) per arm at each of `taus`.
    pub profiles: Vec<Vec<f64>>,
}

impl<'a> ReportData<'a> {
    /// The figures' data for a loaded study's analysis.
    pub fn new(loaded: &'a Loaded, rows: &'a [TaskRow], bins: &'a [Bin]) -> Self {
        let labels =
            loaded.study.arms.iter().map(|a| if a.role == ArmRole::Candidate { format!("candidate: {}", a.legend) } else { a.legend.clone() }).collect();
        let taus = crate::profile_taus();
        let losses: Vec<Vec<f64>> = rows.iter().map(|r| r.arms.iter().map(|a| a.mean).collect()).collect();
        let profiles = crate::stats::profile::performance_profile(&losses, &taus);
        Self { loaded, rows, bins, labels, taus, profiles }
    }
}

/// One figure of the report.
pub trait Figure: Sync {
    /// The file stem: `NAME.png`, `NAME.svg`.
    fn name(&self) -> &'static str;
    /// Its heading in `report.html`.
    fn title(&self) -> &'static str;
    /// Whether the study has what the figure shows (the speedup figure needs a reference arm).
    fn applies(&self, _data: &ReportData<'_>) -> bool {
        true
    }
    /// Its size in pixels.
    fn size(&self, data: &ReportData<'_>) -> (u32, u32);
    /// Draw it on a bitmap.
    fn png(&self, data: &ReportData<'_>, root: DrawingArea<BitMapBackend<'_>, Shift>) -> Result<()>;
    /// Draw it as vector graphics.
    fn svg(&self, data: &ReportData<'_>, root: DrawingArea<SVGBackend<'_>, Shift>) -> Result<()>;
}

/// The report's figures, in the order `report.html` shows them: the one list.
pub static FIGURES: &[&dyn Figure] = &[&heatmap::Heatmap, &speedup::Speedup, &profile::Profile, &curves::Curves];

/// Every figure's name, in [`FIGURES`] order.
pub fn names() -> Vec<&'static str> {
    FIGURES.iter().map(|f| f.name()).collect()
}

/// Draw `figure` into `dir` in each of `formats` (`NAME.png`, `NAME.svg`); its PNG path.
pub fn draw(figure: &dyn Figure, data: &ReportData<'_>, dir: &Path, formats: &[Format]) -> Result<std::path::PathBuf> {
    let path = dir.join(format!("{}.png", figure.name()));
    render(&path, formats, figure.size(data), |root| figure.png(data, root), |root| figure.svg(data, root))?;
    Ok(path)
}

/// `text` at the largest font size from `size` down to 60% of it whose width fits `width`
/// pixels; below that, at 60% and cut with an ellipsis until it fits ([`cut_text`]). A caption
/// drawn wider than its figure is centred off both edges, so its ends are lost.
pub fn fit_text<DB: DrawingBackend>(area: &DrawingArea<DB, Shift>, text: &str, size: f64, width: u32) -> (String, f64) {
    let mut s = size;
    while s > 0.6 * size {
        if text_width(area, text, s) <= width {
            return (text.to_string(), s);
        }
        s -= 1.0;
    }
    (cut_text(area, text, s, width), s)
}

/// `text` at font size `size`, cut with an ellipsis until it fits `width` pixels (empty when
/// not even the ellipsis does).
pub fn cut_text<DB: DrawingBackend, CT: CoordTranslate>(area: &DrawingArea<DB, CT>, text: &str, size: f64, width: u32) -> String {
    if text_width(area, text, size) <= width {
        return text.to_string();
    }
    let mut chars: Vec<char> = text.chars().collect();
    while !chars.is_empty() {
        chars.pop();
        let cut = format!("{}…", chars.iter().collect::<String>());
        if text_width(area, &cut, size) <= width {
            return cut;
        }
    }
    String::new()
}

/// Width in pixels of `text` in the figures' font at `size` (unmeasurable text counts as too
/// wide for any figure).
fn text_width<DB: DrawingBackend, CT: CoordTranslate>(area: &DrawingArea<DB, CT>, text: &str, size: f64) -> u32 {
    ensure_font();
    area.estimate_text_size(text, &TextStyle::from((FAMILY, size).into_font())).map_or(u32::MAX, |(w, _)| w)
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

/// Font size of the legends (pixels).
const LEGEND_SIZE: f64 = 16.0;
/// What a legend box takes besides its labels: the margins, the line sample and its gap.
const LEGEND_CHROME: u32 = 90;

/// Draw one thick line per series in palette order, with a framed legend at `position`.
pub fn lines_with_legend<'a, DB: DrawingBackend + 'a>(
    chart: &mut Chart<'a, DB>,
    series: Vec<(String, Vec<(f64, f64)>)>,
    position: SeriesLabelPosition,
) -> Result<()>
where
    DB::ErrorType: 'static,
{
    // A label longer than the plot is cut: the legend box is drawn inside the plotting area,
    // and a box wider than the area runs off the figure's edge.
    let room = chart.plotting_area().dim_in_pixel().0.saturating_sub(LEGEND_CHROME);
    for (i, (label, pts)) in series.into_iter().enumerate() {
        let label = cut_text(chart.plotting_area(), &label, LEGEND_SIZE, room);
        let color = PALETTE[i % PALETTE.len()];
        chart
            .draw_series(LineSeries::new(pts, color.stroke_width(3)))
            .map_err(|e| anyhow!("{e}"))?
            .label(label)
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 24, y)], color.stroke_width(3)));
    }
    chart
        .configure_series_labels()
        .label_font((FAMILY, LEGEND_SIZE))
        .background_style(WHITE.mix(0.9))
        .border_style(BLACK.mix(0.3))
        .position(position)
        .draw()
        .map_err(|e| anyhow!("{e}"))?;
    Ok(())
}
