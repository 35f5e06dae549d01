//! Performance profiles: fraction of tasks within a factor τ of the best final loss, per
//! optimizer, τ ∈ [1, 4] (log2 x axis).

use super::{ensure_font, FAMILY, PALETTE};
use anyhow::{anyhow, Result};
use plotters::prelude::*;
use std::path::Path;

/// Draw `profile.png`: `curves[o]` = ρ at each of `taus`, labelled `labels[o]`.
pub fn draw(path: &Path, taus: &[f64], curves: &[Vec<f64>], labels: &[String]) -> Result<()> {
    ensure_font();
    let root = BitMapBackend::new(path, (960, 640)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| anyhow!("{e}"))?;
    let mut chart = ChartBuilder::on(&root)
        .caption("Performance profile (final train loss)", (FAMILY, 28))
        .margin(20)
        .x_label_area_size(55)
        .y_label_area_size(80)
        .build_cartesian_2d(0f64..2f64, 0f64..1.02f64)
        .map_err(|e| anyhow!("{e}"))?;
    chart
        .configure_mesh()
        .x_desc("τ: loss within this factor of the best optimizer on the task (log2 scale)")
        .y_desc("fraction of tasks")
        .x_labels(5)
        .x_label_formatter(&|v| format!("{:.2}", 2f64.powf(*v)))
        .y_label_formatter(&|v| format!("{v:.1}"))
        .label_style((FAMILY, 16))
        .axis_desc_style((FAMILY, 18))
        .draw()
        .map_err(|e| anyhow!("{e}"))?;
    for (i, (c, label)) in curves.iter().zip(labels).enumerate() {
        let color = PALETTE[i % PALETTE.len()];
        let pts: Vec<(f64, f64)> = taus.iter().map(|t| t.log2()).zip(c.iter().copied()).collect();
        chart
            .draw_series(LineSeries::new(pts, color.stroke_width(3)))
            .map_err(|e| anyhow!("{e}"))?
            .label(label.clone())
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 24, y)], color.stroke_width(3)));
    }
    chart
        .configure_series_labels()
        .label_font((FAMILY, 16))
        .background_style(WHITE.mix(0.9))
        .border_style(BLACK.mix(0.3))
        .position(SeriesLabelPosition::LowerRight)
        .draw()
        .map_err(|e| anyhow!("{e}"))?;
    root.present().map_err(|e| anyhow!("{e}"))?;
    Ok(())
}
