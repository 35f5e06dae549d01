//! Win-rate heatmap: log10 parameters (rows) × log10 step budget (columns), each cell showing
//! the win rate and the number of tasks.

use super::{fit_text, Figure, ReportData, FAMILY};
use crate::win_rate::Bin;
use anyhow::{anyhow, Result};
use beatmatch_core::ArmRole;
use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

fn color(rate: f64) -> RGBColor {
    // Diverging red (0) → light yellow (0.5) → blue (1), readable for red-green colour blindness.
    let lerp =
        |a: (f64, f64, f64), b: (f64, f64, f64), t: f64| RGBColor((a.0 + (b.0 - a.0) * t) as u8, (a.1 + (b.1 - a.1) * t) as u8, (a.2 + (b.2 - a.2) * t) as u8);
    let (lo, mid, hi) = ((202.0, 0.0, 32.0), (247.0, 247.0, 210.0), (5.0, 113.0, 176.0));
    if rate < 0.5 {
        lerp(lo, mid, rate * 2.0)
    } else {
        lerp(mid, hi, (rate - 0.5) * 2.0)
    }
}

/// `win_rate_heatmap`: the candidate's win rate per (parameters, steps) bin.
pub struct Heatmap;

/// Margin around the chart, pixels.
const MARGIN: u32 = 20;

impl Figure for Heatmap {
    fn name(&self) -> &'static str {
        "win_rate_heatmap"
    }
    fn title(&self) -> &'static str {
        "Win rate by parameters and steps"
    }
    fn size(&self, _: &ReportData<'_>) -> (u32, u32) {
        (900, 640)
    }
    fn png(&self, data: &ReportData<'_>, root: DrawingArea<BitMapBackend<'_>, Shift>) -> Result<()> {
        plot(root, data.bins, &caption(data))
    }
    fn svg(&self, data: &ReportData<'_>, root: DrawingArea<SVGBackend<'_>, Shift>) -> Result<()> {
        plot(root, data.bins, &caption(data))
    }
}

/// "Win rate (beat or match) of <the candidate's legend>".
fn caption(data: &ReportData<'_>) -> String {
    let cand = data.loaded.study.arms.iter().find(|a| a.role == ArmRole::Candidate).map_or(String::new(), |a| a.legend.clone());
    format!("Win rate (beat or match) of {cand}")
}

fn plot<DB: DrawingBackend>(root: DrawingArea<DB, Shift>, bins: &[Bin], title: &str) -> Result<()>
where
    DB::ErrorType: 'static,
{
    root.fill(&WHITE).map_err(|e| anyhow!("{e}"))?;
    // A long legend (a checkpoint's hash, a spec) shrinks the caption to fit, then is cut.
    let (title, size) = fit_text(&root, title, 26.0, root.dim_in_pixel().0.saturating_sub(2 * MARGIN));
    let (pmin, pmax) = bins.iter().fold((i32::MAX, i32::MIN), |(a, b), x| (a.min(x.params_decade), b.max(x.params_decade)));
    let (smin, smax) = bins.iter().fold((i32::MAX, i32::MIN), |(a, b), x| (a.min(x.steps_decade), b.max(x.steps_decade)));
    if bins.is_empty() {
        return Err(anyhow!("no tasks to draw"));
    }
    let mut chart = ChartBuilder::on(&root)
        .caption(title, (FAMILY, size))
        .margin(MARGIN)
        .x_label_area_size(55)
        .y_label_area_size(110)
        .build_cartesian_2d(smin as f64..(smax + 1) as f64, pmin as f64..(pmax + 1) as f64)
        .map_err(|e| anyhow!("{e}"))?;
    chart
        .configure_mesh()
        .disable_mesh()
        .x_desc("step budget (log10 bins)")
        .y_desc("parameters (log10 bins)")
        .x_labels((smax - smin + 2) as usize)
        .y_labels((pmax - pmin + 2) as usize)
        .x_label_formatter(&|v| format!("1e{}", v.round() as i32))
        .y_label_formatter(&|v| format!("1e{}", v.round() as i32))
        .label_style((FAMILY, 16))
        .axis_desc_style((FAMILY, 18))
        .draw()
        .map_err(|e| anyhow!("{e}"))?;
    for b in bins {
        let (x, y) = (b.steps_decade as f64, b.params_decade as f64);
        chart.draw_series(std::iter::once(Rectangle::new([(x, y), (x + 1.0, y + 1.0)], color(b.win_rate()).filled()))).map_err(|e| anyhow!("{e}"))?;
        chart.draw_series(std::iter::once(Rectangle::new([(x, y), (x + 1.0, y + 1.0)], WHITE.stroke_width(2)))).map_err(|e| anyhow!("{e}"))?;
        let text_color = if (0.2..0.8).contains(&b.win_rate()) { BLACK } else { WHITE };
        let centred = |size: f64| TextStyle::from((FAMILY, size).into_font()).color(&text_color).pos(Pos::new(HPos::Center, VPos::Center));
        chart
            .draw_series([
                Text::new(format!("{:.0}%", 100.0 * b.win_rate()), (x + 0.5, y + 0.58), centred(22.0)),
                Text::new(format!("n = {}", b.n), (x + 0.5, y + 0.38), centred(16.0)),
            ])
            .map_err(|e| anyhow!("{e}"))?;
    }
    root.present().map_err(|e| anyhow!("{e}"))?;
    Ok(())
}
