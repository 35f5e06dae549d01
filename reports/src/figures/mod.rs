//! Figures: one module per plot. Text is drawn with the embedded DejaVu Sans (no system fonts).

pub mod curves;
pub mod delta;
pub mod heatmap;
pub mod profile;
pub mod speedup;

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
