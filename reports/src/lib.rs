//! beatmatch reports: from a result directory (`study.json` + `runs/*.json`) to tables,
//! figures and markdown. Reads records only; never links candle.
//!
//! Outputs: `tasks.csv`, `win_rate_bins.csv`, `summary.md`, `speedup.png`,
//! `win_rate_heatmap.png`, `records.txt` (the record hashes every number came from).

pub mod analysis;
pub mod export;
pub mod figures;
pub mod metrics;
pub mod stats;
pub mod win_rate;

use anyhow::Result;
use beatmatch_core::ArmRole;
use std::path::Path;
use win_rate::Region;

/// Report settings.
#[derive(Clone, Copy, Debug)]
pub struct ReportOptions {
    /// The headline region.
    pub region: Region,
    /// Seed of the bootstrap.
    pub bootstrap_seed: u64,
}

impl Default for ReportOptions {
    fn default() -> Self {
        Self { region: Region::default(), bootstrap_seed: 0 }
    }
}

/// What the report found.
pub struct ReportResult {
    /// The headline sentence.
    pub headline: String,
    /// Per-task rows.
    pub rows: Vec<analysis::TaskRow>,
}

/// Write every report file into `dir`.
pub fn write_report(dir: &Path, opts: &ReportOptions) -> Result<ReportResult> {
    let loaded = analysis::load(dir)?;
    let rows = analysis::analyse(&loaded)?;
    let study = &loaded.study;
    let bins = win_rate::bins(&rows);
    let (n, est) = win_rate::headline(&rows, opts.region, opts.bootstrap_seed);
    let headline = export::markdown::headline(study, opts.region, n, &est);

    export::csv::write_tasks(study, &rows, &dir.join("tasks.csv"))?;
    export::csv::write_bins(&bins, &dir.join("win_rate_bins.csv"))?;
    std::fs::write(dir.join("summary.md"), export::markdown::summary(study, &rows, &bins, &headline))?;
    let mut hashes: Vec<&str> = study.cells.iter().map(|c| c.record.as_str()).collect();
    hashes.sort_unstable();
    hashes.dedup();
    std::fs::write(dir.join("records.txt"), hashes.join("\n") + "\n")?;

    // The reference arm's own line is ~1 by construction; it is drawn too, as VeLO's Fig. 1 does.
    let series: Vec<figures::speedup::Series> = study
        .arms
        .iter()
        .enumerate()
        .filter(|_| rows.iter().all(|r| r.arms[0].speedup.is_some()))
        .map(|(ai, a)| figures::speedup::Series {
            label: if a.role == ArmRole::Candidate { format!("candidate: {}", a.legend) } else { a.legend.clone() },
            speedups: rows.iter().filter_map(|r| r.arms[ai].speedup.map(|s| s.value)).collect(),
        })
        .collect();
    if !series.is_empty() {
        figures::speedup::draw(&dir.join("speedup.png"), &series, analysis::SPEEDUP_CAP)?;
    }
    let cand = study.arms.iter().find(|a| a.role == ArmRole::Candidate).map_or(String::new(), |a| a.legend.clone());
    figures::heatmap::draw(&dir.join("win_rate_heatmap.png"), &bins, &format!("Win rate (beat or match) of {cand}"))?;
    Ok(ReportResult { headline, rows })
}
