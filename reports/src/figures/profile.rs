//! Performance profiles: fraction of tasks within a factor τ of the best final loss, per
//! optimizer, τ ∈ [1, 4] (log2 x axis).

use super::{lines_with_legend, Figure, ReportData, FAMILY};
use anyhow::{anyhow, Result};
use plotters::coord::Shift;
use plotters::prelude::*;

/// `profile`: ρ(τ) of each arm, labelled with its legend.
pub struct Profile;

impl Figure for Profile {
    fn name(&self) -> &'static str {
        "profile"
    }
    fn title(&self) -> &'static str {
        "Performance profile"
    }
    fn size(&self, _: &ReportData<'_>) -> (u32, u32) {
        (960, 640)
    }
    fn png(&self, d: &ReportData<'_>, root: DrawingArea<BitMapBackend<'_>, Shift>) -> Result<()> {
        plot(root, &d.taus, &d.profiles, &d.labels)
    }
    fn svg(&self, d: &ReportData<'_>, root: DrawingArea<SVGBackend<'_>, Shift>) -> Result<()> {
        plot(root, &d.taus, &d.profiles, &d.labels)
    }
}

fn plot<DB: DrawingBackend>(root: DrawingArea<DB, Shift>, taus: &[f64], curves: &[Vec<f64>], labels: &[String]) -> Result<()>
where
    DB::ErrorType: 'static,
{
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
    let lines = curves.iter().zip(labels).map(|(c, label)| (label.clone(), taus.iter().map(|t| t.log2()).zip(c.iter().copied()).collect())).collect();
    lines_with_legend(&mut chart, lines, SeriesLabelPosition::LowerRight)?;
    root.present().map_err(|e| anyhow!("{e}"))?;
    Ok(())
}
