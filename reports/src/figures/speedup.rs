//! VeLO Fig. 1 layout: per optimizer, speedup over LR-tuned Adam on each task, sorted, against
//! task percentile; log2 y axis.

use super::{lines_with_legend, Figure, ReportData, FAMILY};
use anyhow::{anyhow, Result};
use plotters::coord::Shift;
use plotters::prelude::*;

/// One line: legend label and per-task speedups (values ≥ 0; capped values included).
pub struct Series {
    /// Legend text, e.g. `AdamLR (15 trials)`.
    pub label: String,
    /// Speedups, any order.
    pub speedups: Vec<f64>,
}

/// Lowest drawn speedup (log2 = −6); smaller values (e.g. 0 for diverged) are drawn here.
pub const FLOOR_LOG2: f64 = -6.0;

fn tick(v: &f64) -> String {
    let k = v.round() as i32;
    if k >= 0 {
        format!("{}×", 1u64 << k)
    } else {
        format!("1/{}×", 1u64 << (-k))
    }
}

/// `speedup`: every optimizer's speedup, the reference arm's own line included; drawn when
/// every task has a reference.
pub struct Speedup;

/// Each arm's per-task speedups.
fn series(data: &ReportData<'_>) -> Vec<Series> {
    (0..data.labels.len())
        .map(|ai| Series { label: data.labels[ai].clone(), speedups: data.rows.iter().filter_map(|r| r.arms[ai].speedup.map(|s| s.value)).collect() })
        .collect()
}

impl Figure for Speedup {
    fn name(&self) -> &'static str {
        "speedup"
    }
    fn title(&self) -> &'static str {
        "Speedup over learning-rate-tuned Adam"
    }
    fn applies(&self, data: &ReportData<'_>) -> bool {
        data.rows.iter().all(|r| r.reference.is_some())
    }
    fn size(&self, _: &ReportData<'_>) -> (u32, u32) {
        (960, 640)
    }
    fn png(&self, data: &ReportData<'_>, root: DrawingArea<BitMapBackend<'_>, Shift>) -> Result<()> {
        plot(root, &series(data), data.loaded.study.speedup_cap as f64)
    }
    fn svg(&self, data: &ReportData<'_>, root: DrawingArea<SVGBackend<'_>, Shift>) -> Result<()> {
        plot(root, &series(data), data.loaded.study.speedup_cap as f64)
    }
}

fn plot<DB: DrawingBackend>(root: DrawingArea<DB, Shift>, series: &[Series], cap: f64) -> Result<()>
where
    DB::ErrorType: 'static,
{
    root.fill(&WHITE).map_err(|e| anyhow!("{e}"))?;
    let top = cap.log2().ceil();
    let mut chart = ChartBuilder::on(&root)
        .caption("Speedup over learning-rate-tuned Adam", (FAMILY, 28))
        .margin(20)
        .x_label_area_size(55)
        .y_label_area_size(80)
        .build_cartesian_2d(0f64..100f64, FLOOR_LOG2..top + 0.25)
        .map_err(|e| anyhow!("{e}"))?;
    chart
        .configure_mesh()
        .x_desc("task percentile (tasks sorted by speedup, descending)")
        .y_desc("speedup (log2 scale)")
        .y_labels((top - FLOOR_LOG2) as usize + 1)
        .y_label_formatter(&tick)
        .x_label_formatter(&|x| format!("{x:.0}"))
        .label_style((FAMILY, 16))
        .axis_desc_style((FAMILY, 18))
        .draw()
        .map_err(|e| anyhow!("{e}"))?;
    chart.draw_series(LineSeries::new([(0.0, 0.0), (100.0, 0.0)], BLACK.mix(0.4).stroke_width(1))).map_err(|e| anyhow!("{e}"))?;
    let lines = series
        .iter()
        .map(|s| {
            let mut v: Vec<f64> = s.speedups.iter().map(|&x| if x > 0.0 { x.log2().max(FLOOR_LOG2) } else { FLOOR_LOG2 }).collect();
            v.sort_by(|a, b| b.total_cmp(a));
            let n = v.len().max(1) as f64;
            (s.label.clone(), v.iter().enumerate().map(|(k, &y)| (100.0 * (k as f64 + 0.5) / n, y)).collect())
        })
        .collect();
    lines_with_legend(&mut chart, lines, SeriesLabelPosition::UpperRight)?;
    root.present().map_err(|e| anyhow!("{e}"))?;
    Ok(())
}
