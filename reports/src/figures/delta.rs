//! `suite compare`'s figure: per-task loss difference (B − A) against parameter count.

use super::{Format, FAMILY, PALETTE};
use anyhow::{anyhow, Result};
use plotters::coord::Shift;
use plotters::prelude::*;
use std::path::Path;

/// Draw `delta_vs_params.png` from (params, delta) points; negative delta = B better.
pub fn draw(path: &Path, formats: &[Format], points: &[(u64, f64)], title: &str) -> Result<()> {
    let size = (900, 600);
    super::render(path, formats, size, |root| plot(root, points, title), |root| plot(root, points, title))
}

fn plot<DB: DrawingBackend>(root: DrawingArea<DB, Shift>, points: &[(u64, f64)], title: &str) -> Result<()>
where
    DB::ErrorType: 'static,
{
    root.fill(&WHITE).map_err(|e| anyhow!("{e}"))?;
    let finite: Vec<(f64, f64)> = points.iter().filter(|p| p.1.is_finite()).map(|&(p, d)| ((p.max(1) as f64).log10(), d)).collect();
    let (xlo, xhi) = finite.iter().fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), p| (a.min(p.0), b.max(p.0)));
    let m = finite.iter().fold(1e-6f64, |a, p| a.max(p.1.abs())) * 1.1;
    let (xlo, xhi) = if finite.is_empty() { (0.0, 1.0) } else { (xlo.floor(), xhi.ceil().max(xlo.floor() + 1.0)) };
    let mut chart = ChartBuilder::on(&root)
        .caption(title, (FAMILY, 24))
        .margin(20)
        .x_label_area_size(55)
        .y_label_area_size(90)
        .build_cartesian_2d(xlo..xhi, -m..m)
        .map_err(|e| anyhow!("{e}"))?;
    chart
        .configure_mesh()
        .x_desc("parameters (log10 scale)")
        .y_desc("final train loss, B − A (below 0: B better)")
        .x_label_formatter(&|v| format!("1e{v:.0}"))
        .y_label_formatter(&|v| format!("{v:.3}"))
        .label_style((FAMILY, 16))
        .axis_desc_style((FAMILY, 18))
        .draw()
        .map_err(|e| anyhow!("{e}"))?;
    chart.draw_series(LineSeries::new([(xlo, 0.0), (xhi, 0.0)], BLACK.mix(0.5))).map_err(|e| anyhow!("{e}"))?;
    chart
        .draw_series(finite.iter().map(|&(x, y)| Circle::new((x, y), 5, if y < 0.0 { PALETTE[2].filled() } else { PALETTE[1].filled() })))
        .map_err(|e| anyhow!("{e}"))?;
    root.present().map_err(|e| anyhow!("{e}"))?;
    Ok(())
}
