//! beatmatch reports: from a result directory (`study.json` + `runs/*.json`) to tables,
//! figures and markdown. Reads records only; never links candle.
//!
//! Outputs: `tasks.csv` / `tasks.parquet`, `win_rate_bins.csv`, `summary.md`, `report.html`,
//! `speedup.png`, `win_rate_heatmap.png`, `profile.png`, `curves.png`, and `records.txt` (the
//! record hashes every number came from) — all deterministic given the records — plus the
//! machine-dependent `wall_clock.csv` / `wall_clock.md` from the runs' timing sidecars.

pub mod analysis;
pub mod ci;
pub mod compare;
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
    /// Seed of the bootstraps.
    pub bootstrap_seed: u64,
    /// Formats every figure is written in (`report.html` embeds the SVGs when written).
    pub figures: &'static [figures::Format],
    /// Report records of several code versions together (otherwise an error).
    pub allow_mixed: bool,
}

impl Default for ReportOptions {
    fn default() -> Self {
        Self { region: Region::default(), bootstrap_seed: 0, figures: &[figures::Format::Png, figures::Format::Svg], allow_mixed: false }
    }
}

/// What the report found.
pub struct ReportResult {
    /// The headline sentence.
    pub headline: String,
    /// The headline within each side of the meta split, one line each.
    pub by_split: Vec<String>,
    /// Per-task rows.
    pub rows: Vec<analysis::TaskRow>,
}

/// τ grid of the performance profiles.
pub fn profile_taus() -> Vec<f64> {
    (0..=40).map(|i| 2f64.powf(i as f64 / 20.0)).collect()
}

/// Write every report file into `dir`, each replaced atomically: the report is drawn in a
/// staging folder inside `dir`, then each file is renamed into place, so processes finishing
/// at once (shards, concurrent runs) never leave a torn file.
pub fn write_report(dir: &Path, opts: &ReportOptions) -> Result<ReportResult> {
    let staging = dir.join(format!(".report.{}", beatmatch_core::store::unique_suffix()));
    std::fs::create_dir_all(&staging).map_err(|e| beatmatch_core::StoreError::io("creating", &staging, e))?;
    let result = write_report_into(dir, &staging, opts).and_then(|r| {
        for e in std::fs::read_dir(&staging)? {
            let e = e?;
            let to = dir.join(e.file_name());
            std::fs::rename(e.path(), &to).map_err(|err| beatmatch_core::StoreError::io("renaming into", &to, err))?;
        }
        Ok(r)
    });
    let _ = std::fs::remove_dir_all(&staging);
    result
}

/// Read the study in `dir` and write its report files into `out`.
fn write_report_into(dir: &Path, out: &Path, opts: &ReportOptions) -> Result<ReportResult> {
    let loaded = analysis::load(dir)?;
    let versions = loaded.code_versions();
    if versions.len() > 1 && !opts.allow_mixed {
        anyhow::bail!(
            "{}: the study's records come from {} code versions ({}); rerun under one version, or pass --allow-mixed to report them together",
            dir.display(),
            versions.len(),
            export::markdown::versions_line(&versions)
        );
    }
    let rows = analysis::analyse(&loaded)?;
    let study = &loaded.study;
    let bins = win_rate::bins(&rows);
    let (n, est) = win_rate::headline(&rows, opts.region, opts.bootstrap_seed);
    let headline = export::markdown::headline(study, opts.region, n, &est);

    let mut frame = export::csv::tasks_frame(study, &rows)?;
    export::csv::write_frame(&mut frame, &out.join("tasks.csv"))?;
    export::parquet::write(&mut frame, &out.join("tasks.parquet"))?;
    export::csv::write_bins(&bins, &out.join("win_rate_bins.csv"))?;
    let mut hashes: Vec<&str> = study.cells.iter().map(|c| c.record.as_str()).collect();
    hashes.sort_unstable();
    hashes.dedup();
    std::fs::write(out.join("records.txt"), hashes.join("\n") + "\n")?;

    let labels: Vec<String> =
        study.arms.iter().map(|a| if a.role == ArmRole::Candidate { format!("candidate: {}", a.legend) } else { a.legend.clone() }).collect();
    // Speedup figure (VeLO Fig. 1): every optimizer, the reference arm's own line included.
    let has_speedups = rows.iter().all(|r| r.reference.is_some());
    if has_speedups {
        let series: Vec<figures::speedup::Series> = (0..study.arms.len())
            .map(|ai| figures::speedup::Series {
                label: labels[ai].clone(),
                speedups: rows.iter().filter_map(|r| r.arms[ai].speedup.map(|s| s.value)).collect(),
            })
            .collect();
        figures::speedup::draw(&out.join("speedup.png"), opts.figures, &series, study.speedup_cap as f64)?;
    }
    let cand = study.arms.iter().find(|a| a.role == ArmRole::Candidate).map_or(String::new(), |a| a.legend.clone());
    figures::heatmap::draw(&out.join("win_rate_heatmap.png"), opts.figures, &bins, &format!("Win rate (beat or match) of {cand}"))?;
    let losses: Vec<Vec<f64>> = rows.iter().map(|r| r.arms.iter().map(|a| a.mean).collect()).collect();
    let taus = profile_taus();
    let profiles = stats::profile::performance_profile(&losses, &taus);
    figures::profile::draw(&out.join("profile.png"), opts.figures, &taus, &profiles, &labels)?;
    let panels = curve_panels(&loaded, &rows);
    figures::curves::draw(&out.join("curves.png"), opts.figures, &panels, &labels)?;

    let extras = export::markdown::Extras::compute(&rows, &profiles, &taus, opts);
    let mut summary = export::markdown::summary(study, &rows, &bins, &headline, &extras);
    if versions.len() > 1 {
        summary.push_str(&format!(
            "\n**Mixed code versions** (reported with --allow-mixed): the records come from {}.\n",
            export::markdown::versions_line(&versions)
        ));
    }
    std::fs::write(out.join("summary.md"), &summary)?;
    let wall = export::markdown::wall_clock(&extras, &rows);
    std::fs::write(out.join("wall_clock.md"), &wall)?;
    export::csv::write_wall_clock(&rows, &out.join("wall_clock.csv"))?;
    let mut figs: Vec<(&str, std::path::PathBuf)> = vec![("Win rate by parameters and steps", out.join("win_rate_heatmap.png"))];
    if has_speedups {
        figs.push(("Speedup over learning-rate-tuned Adam", out.join("speedup.png")));
    }
    figs.push(("Performance profile", out.join("profile.png")));
    figs.push(("Training curves", out.join("curves.png")));
    // The page shows the vector figures when they were written.
    if opts.figures.contains(&figures::Format::Svg) {
        figs.iter_mut().for_each(|(_, p)| *p = p.with_extension("svg"));
    }
    let figs_ref: Vec<(&str, &Path)> = figs.iter().map(|(t, p)| (*t, p.as_path())).collect();
    std::fs::write(
        out.join("report.html"),
        export::html::render(&format!("beatmatch report — {}", study.selection), &format!("{summary}\n{wall}"), &figs_ref),
    )?;
    let by_split = extras
        .by_split
        .iter()
        .map(|(split, n, e)| format!("  {}: {:.1}% of {n} tasks (95% CI {:.1}%–{:.1}%)", split.as_str(), 100.0 * e.point, 100.0 * e.lower, 100.0 * e.upper))
        .collect();
    Ok(ReportResult { headline, by_split, rows })
}

/// Seed-mean training curves of each arm's tuned configuration, per task.
fn curve_panels(l: &analysis::Loaded, rows: &[analysis::TaskRow]) -> Vec<figures::curves::Panel> {
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
            figures::curves::Panel { title: r.id.clone(), steps: r.steps, curves }
        })
        .collect()
}
