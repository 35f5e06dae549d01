//! Per-task training curves as small multiples: the candidate against each baseline's tuned
//! configuration (seed means), log y axis.

use super::{Format, FAMILY, PALETTE};
use anyhow::{anyhow, Result};
use plotters::coord::Shift;
use plotters::prelude::*;
use std::path::Path;

/// One panel: title and (label, points) per optimizer.
pub struct Panel {
    /// Task id.
    pub title: String,
    /// Budget in steps (the x range).
    pub steps: u64,
    /// Curves: (legend index, points (step, loss)).
    pub curves: Vec<(usize, Vec<(f64, f64)>)>,
}

/// Draw `curves.png`: a grid of panels with a shared legend on top.
pub fn draw(path: &Path, formats: &[Format], panels: &[Panel], labels: &[String]) -> Result<()> {
    let cols = 6usize;
    let rows = panels.len().div_ceil(cols).max(1);
    let (pw, ph) = (300u32, 230u32);
    let legend_h = 60u32;
    let size = (pw * cols as u32, ph * rows as u32 + legend_h);
    super::render(path, formats, size, |root| plot(root, panels, labels), |root| plot(root, panels, labels))
}

fn plot<DB: DrawingBackend>(root: DrawingArea<DB, Shift>, panels: &[Panel], labels: &[String]) -> Result<()>
where
    DB::ErrorType: 'static,
{
    let cols = 6usize;
    let rows = panels.len().div_ceil(cols).max(1);
    let legend_h = 60u32;
    root.fill(&WHITE).map_err(|e| anyhow!("{e}"))?;
    let (top, body) = root.split_vertically(legend_h);
    // Shared legend.
    let mut x = 20;
    for (i, l) in labels.iter().enumerate() {
        let color = PALETTE[i % PALETTE.len()];
        top.draw(&PathElement::new(vec![(x, 30), (x + 28, 30)], color.stroke_width(3))).map_err(|e| anyhow!("{e}"))?;
        top.draw(&Text::new(l.clone(), (x + 34, 22), (FAMILY, 17).into_font())).map_err(|e| anyhow!("{e}"))?;
        x += 60 + 9 * l.chars().count() as i32;
    }
    for (area, panel) in body.split_evenly((rows, cols)).into_iter().zip(panels) {
        let ys: Vec<f64> = panel.curves.iter().flat_map(|(_, p)| p.iter().map(|q| q.1)).filter(|y| y.is_finite() && *y > 0.0).collect();
        if ys.is_empty() {
            continue;
        }
        let (lo, hi) = ys.iter().fold((f64::INFINITY, 0f64), |(a, b), &y| (a.min(y), b.max(y)));
        let (lo, hi) = (lo.log10() - 0.05, hi.log10() + 0.05);
        let title: String =
            if panel.title.chars().count() > 38 { format!("{}…", panel.title.chars().take(37).collect::<String>()) } else { panel.title.clone() };
        let mut chart = ChartBuilder::on(&area)
            .caption(title, (FAMILY, 13))
            .margin(6)
            .x_label_area_size(22)
            .y_label_area_size(44)
            .build_cartesian_2d(0f64..panel.steps as f64, lo..hi)
            .map_err(|e| anyhow!("{e}"))?;
        chart
            .configure_mesh()
            .x_labels(3)
            .y_labels(3)
            .x_label_formatter(&|v| format!("{v:.0}"))
            .y_label_formatter(&|v| format!("{:.2}", 10f64.powf(*v)))
            .label_style((FAMILY, 11))
            .light_line_style(WHITE)
            .draw()
            .map_err(|e| anyhow!("{e}"))?;
        for (li, pts) in &panel.curves {
            let pts: Vec<(f64, f64)> = pts.iter().filter(|p| p.1.is_finite() && p.1 > 0.0 && p.0 <= panel.steps as f64).map(|&(x, y)| (x, y.log10())).collect();
            chart.draw_series(LineSeries::new(pts, PALETTE[li % PALETTE.len()].stroke_width(2))).map_err(|e| anyhow!("{e}"))?;
        }
    }
    root.present().map_err(|e| anyhow!("{e}"))?;
    Ok(())
}
