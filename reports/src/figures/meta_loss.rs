//! `suite meta-train`'s figure: the meta-loss per outer step, its moving average, and the
//! validation score where it was evaluated (all normalised losses: ~1 at initialisation).

use super::{lines_with_legend, Format, FAMILY, PALETTE};
use anyhow::{anyhow, Result};
use plotters::coord::Shift;
use plotters::prelude::*;
use std::path::Path;

/// One outer step: (step, meta-loss, smoothed, validation if evaluated).
pub type Point = (u64, f64, f64, Option<f64>);

/// Draw `meta_loss.png` (and/or `.svg`) at `path`.
pub fn draw(path: &Path, formats: &[Format], points: &[Point], title: &str) -> Result<()> {
    super::render(path, formats, (900, 560), |root| plot(root, points, title), |root| plot(root, points, title))
}

fn plot<DB: DrawingBackend>(root: DrawingArea<DB, Shift>, points: &[Point], title: &str) -> Result<()>
where
    DB::ErrorType: 'static,
{
    root.fill(&WHITE).map_err(|e| anyhow!("{e}"))?;
    let xmax = points.last().map_or(1, |p| p.0).max(1) as f64;
    let ys = points.iter().flat_map(|p| [p.1, p.2].into_iter().chain(p.3)).filter(|y| y.is_finite());
    let (lo, hi) = ys.fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), y| (a.min(y), b.max(y)));
    let (lo, hi) = if lo.is_finite() { (lo - 0.05 * (hi - lo).max(1e-3), hi + 0.05 * (hi - lo).max(1e-3)) } else { (0.0, 1.5) };
    let mut chart = ChartBuilder::on(&root)
        .caption(title, (FAMILY, 22))
        .margin(20)
        .x_label_area_size(50)
        .y_label_area_size(80)
        .build_cartesian_2d(0.0..xmax, lo..hi)
        .map_err(|e| anyhow!("{e}"))?;
    chart
        .configure_mesh()
        .x_desc("outer step")
        .y_desc("normalised loss (1 ≈ at initialisation)")
        .x_label_formatter(&|v| format!("{v:.0}"))
        .y_label_formatter(&|v| format!("{v:.3}"))
        .label_style((FAMILY, 15))
        .axis_desc_style((FAMILY, 17))
        .draw()
        .map_err(|e| anyhow!("{e}"))?;
    chart.draw_series(LineSeries::new(points.iter().map(|p| (p.0 as f64, p.1)), PALETTE[0].mix(0.3).stroke_width(1))).map_err(|e| anyhow!("{e}"))?;
    let smoothed = points.iter().map(|p| (p.0 as f64, p.2)).collect();
    let validation: Vec<(f64, f64)> = points.iter().filter_map(|p| p.3.map(|v| (p.0 as f64, v))).collect();
    chart.draw_series(validation.iter().map(|&(x, y)| Circle::new((x, y), 5, PALETTE[1].filled()))).map_err(|e| anyhow!("{e}"))?;
    lines_with_legend(
        &mut chart,
        vec![("meta-loss (moving average; thin: per step)".into(), smoothed), ("validation score (dots)".into(), validation)],
        SeriesLabelPosition::UpperRight,
    )?;
    root.present().map_err(|e| anyhow!("{e}"))?;
    Ok(())
}
