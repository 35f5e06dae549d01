//! Per-task training curves as small multiples: the candidate against each baseline's tuned
//! configuration (seed means), log y axis.

use super::{Figure, ReportData, FAMILY, PALETTE};
use crate::analysis::{Loaded, TaskRow};
use crate::metrics;
use anyhow::{anyhow, Result};
use plotters::coord::Shift;
use plotters::prelude::*;

/// One panel: title and (label, points) per optimizer.
pub struct Panel {
    /// Task id.
    pub title: String,
    /// Budget in steps (the x range).
    pub steps: u64,
    /// Curves: (legend index, points (step, loss)).
    pub curves: Vec<(usize, Vec<(f64, f64)>)>,
}

/// `curves`: a grid of per-task panels with a shared legend on top.
pub struct Curves;

impl Figure for Curves {
    fn name(&self) -> &'static str {
        "curves"
    }
    fn title(&self) -> &'static str {
        "Training curves"
    }
    fn size(&self, d: &ReportData<'_>) -> (u32, u32) {
        let rows = d.rows.len().div_ceil(COLS).max(1);
        let (pw, ph) = (300u32, 230u32);
        (pw * COLS as u32, ph * rows as u32 + LEGEND_H)
    }
    fn png(&self, d: &ReportData<'_>, root: DrawingArea<BitMapBackend<'_>, Shift>) -> Result<()> {
        plot(root, &panels(d.loaded, d.rows), &d.labels)
    }
    fn svg(&self, d: &ReportData<'_>, root: DrawingArea<SVGBackend<'_>, Shift>) -> Result<()> {
        plot(root, &panels(d.loaded, d.rows), &d.labels)
    }
}

/// Panels per row.
const COLS: usize = 6;
/// Height of the shared legend, pixels.
const LEGEND_H: u32 = 60;

/// Seed-mean training curves of each arm's tuned configuration, per task.
pub fn panels(l: &Loaded, rows: &[TaskRow]) -> Vec<Panel> {
    let s = &l.study;
    rows.iter()
        .enumerate()
        .map(|(ti, r)| {
            let curves = (0..s.arms.len())
                .map(|ai| {
                    let recs: Vec<&beatmatch_core::RunRecord> =
                        s.cells.iter().filter(|c| c.task == ti && c.arm == ai && c.config == r.arms[ai].tuned_config).map(|c| &l.records[&c.record]).collect();
                    let pts = recs
                        .first()
                        .map(|first| {
                            first
                                .curve
                                .iter()
                                .filter(|p| p.step <= r.steps)
                                .map(|p| {
                                    let ls: Vec<f64> = recs.iter().map(|rec| rec.train_loss_at(p.step).unwrap_or(f64::INFINITY)).collect();
                                    (p.step as f64, metrics::seed_stats(&ls).0)
                                })
                                .collect()
                        })
                        .unwrap_or_default();
                    (ai, pts)
                })
                .collect();
            Panel { title: r.id.clone(), steps: r.steps, curves }
        })
        .collect()
}

fn plot<DB: DrawingBackend>(root: DrawingArea<DB, Shift>, panels: &[Panel], labels: &[String]) -> Result<()>
where
    DB::ErrorType: 'static,
{
    let cols = COLS;
    let rows = panels.len().div_ceil(cols).max(1);
    root.fill(&WHITE).map_err(|e| anyhow!("{e}"))?;
    let (top, body) = root.split_vertically(LEGEND_H);
    // Shared legend, each label fitted into the width left (a long one shrinks, then is cut).
    let width = top.dim_in_pixel().0 as i32;
    let mut x = 20;
    for (i, l) in labels.iter().enumerate() {
        let room = (width - 20 - (x + 34)).max(0) as u32;
        let (text, size) = super::fit_text(&top, l, 17.0, room);
        if text.is_empty() {
            break;
        }
        let color = PALETTE[i % PALETTE.len()];
        top.draw(&PathElement::new(vec![(x, 30), (x + 28, 30)], color.stroke_width(3))).map_err(|e| anyhow!("{e}"))?;
        let w = top.estimate_text_size(&text, &TextStyle::from((FAMILY, size).into_font())).map_or(0, |(w, _)| w as i32);
        top.draw(&Text::new(text, (x + 34, 22), (FAMILY, size).into_font())).map_err(|e| anyhow!("{e}"))?;
        x += 34 + w + 26;
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
