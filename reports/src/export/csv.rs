//! CSV tables, assembled as polars data frames (rows sorted, so output is deterministic).

use crate::analysis::TaskRow;
use crate::win_rate::Bin;
use anyhow::Result;
use beatmatch_core::Study;
use polars::prelude::*;
use std::path::Path;

fn write(df: &mut DataFrame, path: &Path) -> Result<()> {
    let mut f = std::fs::File::create(path)?;
    CsvWriter::new(&mut f).include_header(true).finish(df)?;
    Ok(())
}

fn fmt_speedup(s: Option<crate::metrics::Speedup>) -> Option<String> {
    s.map(|s| if s.at_cap { format!(">={}", s.value) } else { format!("{:.4}", s.value) })
}

/// Build the per-task data frame: params, steps, candidate loss, tuned loss and config,
/// outcome, speedup, then per arm its tuned loss, std, config, eval, divergences and speedup.
pub fn tasks_frame(study: &Study, rows: &[TaskRow]) -> Result<DataFrame> {
    let cand = study.arms.iter().position(|a| a.role == beatmatch_core::ArmRole::Candidate).unwrap_or(0);
    let mut cols: Vec<Column> = vec![
        Column::new("task".into(), rows.iter().map(|r| r.id.clone()).collect::<Vec<_>>()),
        Column::new("split".into(), rows.iter().map(|r| r.split.as_str()).collect::<Vec<_>>()),
        Column::new("params".into(), rows.iter().map(|r| r.params).collect::<Vec<_>>()),
        Column::new("steps".into(), rows.iter().map(|r| r.steps).collect::<Vec<_>>()),
        Column::new("candidate_loss".into(), rows.iter().map(|r| r.arms[cand].mean).collect::<Vec<_>>()),
        Column::new("tuned_loss".into(), rows.iter().map(|r| r.arms[r.best_baseline].mean).collect::<Vec<_>>()),
        Column::new(
            "tuned_config".into(),
            rows.iter().map(|r| study.arms[r.best_baseline].configs[r.arms[r.best_baseline].tuned_config].to_string()).collect::<Vec<_>>(),
        ),
        Column::new("tuned_protocol".into(), rows.iter().map(|r| study.arms[r.best_baseline].name.clone()).collect::<Vec<_>>()),
        Column::new("tolerance".into(), rows.iter().map(|r| r.tolerance).collect::<Vec<_>>()),
        Column::new("outcome".into(), rows.iter().map(|r| r.outcome.as_str()).collect::<Vec<_>>()),
        Column::new("speedup".into(), rows.iter().map(|r| fmt_speedup(r.arms[cand].speedup)).collect::<Vec<_>>()),
    ];
    for (ai, arm) in study.arms.iter().enumerate() {
        let n = &arm.name;
        cols.push(Column::new(format!("{n}.loss").into(), rows.iter().map(|r| r.arms[ai].mean).collect::<Vec<_>>()));
        cols.push(Column::new(format!("{n}.loss_std").into(), rows.iter().map(|r| r.arms[ai].std).collect::<Vec<_>>()));
        cols.push(Column::new(format!("{n}.config").into(), rows.iter().map(|r| arm.configs[r.arms[ai].tuned_config].to_string()).collect::<Vec<_>>()));
        cols.push(Column::new(format!("{n}.eval_loss").into(), rows.iter().map(|r| r.arms[ai].eval_loss).collect::<Vec<_>>()));
        cols.push(Column::new(format!("{n}.eval_accuracy").into(), rows.iter().map(|r| r.arms[ai].eval_accuracy).collect::<Vec<_>>()));
        cols.push(Column::new(format!("{n}.diverged_runs").into(), rows.iter().map(|r| r.arms[ai].diverged_runs as u64).collect::<Vec<_>>()));
        cols.push(Column::new(format!("{n}.runs").into(), rows.iter().map(|r| r.arms[ai].runs as u64).collect::<Vec<_>>()));
        cols.push(Column::new(format!("{n}.speedup").into(), rows.iter().map(|r| fmt_speedup(r.arms[ai].speedup)).collect::<Vec<_>>()));
        cols.push(Column::new(
            format!("{n}.records").into(),
            rows.iter().map(|r| r.arms[ai].records.iter().map(|h| &h[..12]).collect::<Vec<_>>().join(" ")).collect::<Vec<_>>(),
        ));
    }
    let df = DataFrame::new(rows.len(), cols)?;
    Ok(df.sort(["params", "steps", "task"], SortMultipleOptions::default())?)
}

/// Write a data frame as CSV.
pub fn write_frame(df: &mut DataFrame, path: &Path) -> Result<()> {
    write(df, path)
}

/// Write `wall_clock.csv`: per task the candidate's and the reference's seconds per step, the
/// relative cost and the wall-clock-adjusted speedup. Machine-dependent, so kept apart from the
/// deterministic tables.
pub fn write_wall_clock(rows: &[TaskRow], path: &Path) -> Result<()> {
    let get = |r: &TaskRow, a: Option<usize>| a.and_then(|a| r.arms[a].seconds_per_step);
    let mut df = DataFrame::new(
        rows.len(),
        vec![
            Column::new("task".into(), rows.iter().map(|r| r.id.clone()).collect::<Vec<_>>()),
            Column::new("candidate_seconds_per_step".into(), rows.iter().map(|r| get(r, Some(r.candidate))).collect::<Vec<_>>()),
            Column::new("adam_seconds_per_step".into(), rows.iter().map(|r| get(r, r.reference)).collect::<Vec<_>>()),
            Column::new("step_speedup".into(), rows.iter().map(|r| r.arms[r.candidate].speedup.map(|s| s.value)).collect::<Vec<_>>()),
            Column::new("wall_clock_speedup".into(), rows.iter().map(|r| r.wall_clock_speedup()).collect::<Vec<_>>()),
        ],
    )?;
    write(&mut df, path)
}

/// Write `protocols.csv`: per arm, AlgoPerf's profile score and, for each baseline protocol, the
/// candidate against it alone (region tasks, beat / match / lose, the rate and its 95% CI) and
/// the tasks it was the tuned best on, and those whose tuned configuration sat at an edge of its
/// grid (empty for protocols that are not grids).
pub fn write_protocols(study: &Study, extras: &crate::export::markdown::Extras, path: &Path) -> Result<()> {
    let arms = &study.arms;
    let find = |a: usize| extras.protocols.iter().find(|p| p.arm == a);
    let num = |a: usize, f: &dyn Fn(&crate::protocols::ProtocolResult) -> f64| find(a).map(f);
    let mut df = DataFrame::new(
        arms.len(),
        vec![
            Column::new("arm".into(), arms.iter().map(|a| a.name.clone()).collect::<Vec<_>>()),
            Column::new(
                "role".into(),
                arms.iter().map(|a| if a.role == beatmatch_core::ArmRole::Candidate { "candidate" } else { "baseline" }).collect::<Vec<_>>(),
            ),
            Column::new("algoperf_score".into(), extras.algoperf.clone()),
            Column::new("n".into(), (0..arms.len()).map(|a| find(a).map(|p| p.n as u64)).collect::<Vec<_>>()),
            Column::new("beat".into(), (0..arms.len()).map(|a| find(a).map(|p| p.beat as u64)).collect::<Vec<_>>()),
            Column::new("match".into(), (0..arms.len()).map(|a| find(a).map(|p| p.matched as u64)).collect::<Vec<_>>()),
            Column::new("win_rate".into(), (0..arms.len()).map(|a| num(a, &|p| p.rate.point)).collect::<Vec<_>>()),
            Column::new("win_rate_lower".into(), (0..arms.len()).map(|a| num(a, &|p| p.rate.lower)).collect::<Vec<_>>()),
            Column::new("win_rate_upper".into(), (0..arms.len()).map(|a| num(a, &|p| p.rate.upper)).collect::<Vec<_>>()),
            Column::new("tuned_best_tasks".into(), (0..arms.len()).map(|a| find(a).map(|p| p.tuned_best as u64)).collect::<Vec<_>>()),
            Column::new("tuned_at_grid_edge_tasks".into(), (0..arms.len()).map(|a| find(a).and_then(|p| p.at_grid_edge.map(|n| n as u64))).collect::<Vec<_>>()),
        ],
    )?;
    write(&mut df, path)
}

/// Write `win_rate_bins.csv`: bin bounds, n, wins, win rate.
pub fn write_bins(bins: &[Bin], path: &Path) -> Result<()> {
    let mut df = DataFrame::new(
        bins.len(),
        vec![
            Column::new("params_from".into(), bins.iter().map(|b| 10f64.powi(b.params_decade)).collect::<Vec<_>>()),
            Column::new("params_to".into(), bins.iter().map(|b| 10f64.powi(b.params_decade + 1)).collect::<Vec<_>>()),
            Column::new("steps_from".into(), bins.iter().map(|b| 10f64.powi(b.steps_decade)).collect::<Vec<_>>()),
            Column::new("steps_to".into(), bins.iter().map(|b| 10f64.powi(b.steps_decade + 1)).collect::<Vec<_>>()),
            Column::new("n".into(), bins.iter().map(|b| b.n as u64).collect::<Vec<_>>()),
            Column::new("wins".into(), bins.iter().map(|b| b.wins as u64).collect::<Vec<_>>()),
            Column::new("win_rate".into(), bins.iter().map(Bin::win_rate).collect::<Vec<_>>()),
        ],
    )?;
    write(&mut df, path)
}
