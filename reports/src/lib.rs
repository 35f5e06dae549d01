//! beatmatch reports: from a result directory (`study.json` + `runs/*.json`) to tables,
//! figures and markdown. Reads records only; never links candle.
//!
//! Outputs: `tasks.csv` / `tasks.parquet`, `win_rate_bins.csv`, `summary.md`, `report.html`,
//! every figure of [`figures::FIGURES`] (`NAME.png`, `NAME.svg`), and `records.txt` (the
//! record hashes every number came from) — all deterministic given the records — plus the
//! machine-dependent `wall_clock.csv` / `wall_clock.md` from the runs' timing sidecars.

pub mod analysis;
pub mod ci;
pub mod compare;
pub mod export;
pub mod figures;
pub mod metrics;
pub mod protocols;
pub mod stats;
pub mod win_rate;

use anyhow::Result;
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

    let data = figures::ReportData::new(&loaded, &rows, &bins);
    let mut figs: Vec<(&str, std::path::PathBuf)> = Vec::new();
    for figure in figures::FIGURES.iter().filter(|f| f.applies(&data)) {
        let png = figures::draw(*figure, &data, out, opts.figures)?;
        // The page shows the vector figures when they were written.
        let shown = if opts.figures.contains(&figures::Format::Svg) { png.with_extension("svg") } else { png };
        figs.push((figure.title(), shown));
    }

    let extras = export::markdown::Extras::compute(study, &rows, &data.profiles, &data.taus, opts);
    export::csv::write_protocols(study, &extras, &out.join("protocols.csv"))?;
    let mut summary = export::markdown::summary(study, &rows, &bins, &headline, &extras);
    if versions.len() > 1 {
        summary.push_str(&format!(
            "\n**Mixed code versions** (reported with --allow-mixed): the records come from {}.\n",
            export::markdown::versions_line(&versions)
        ));
    }
    summary.push_str(&export::markdown::worker_versions(&loaded.worker_versions()));
    std::fs::write(out.join("summary.md"), &summary)?;
    let wall = export::markdown::wall_clock(&extras, &rows);
    std::fs::write(out.join("wall_clock.md"), &wall)?;
    export::csv::write_wall_clock(&rows, &out.join("wall_clock.csv"))?;
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
