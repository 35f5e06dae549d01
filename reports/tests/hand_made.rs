//! The analysis and every exporter on a hand-made two-task study, so what only the slow
//! end-to-end tests covered is checked here against numbers worked out by hand and against
//! golden files (`tests/golden/`; `BEATMATCH_UPDATE_GOLDEN=1` rewrites them — then read the
//! diff before committing).
//!
//! The study: two tasks of 10 steps, `a` on the meta_train side and `b` on meta_test. Arms:
//! the candidate (2 seeds), LR-tuned Adam (2 learning rates × 2 seeds, the speedup reference,
//! measured to 40 steps) and SGD (1 × 2 seeds).
//! * Adam's envelope: 2.0 at 0, 0.9 at 5, 0.7 at 10, 0.55 at 20, 0.4 at 40 (the minimum over
//!   both learning rates, made non-increasing); tuned Adam (lr 2) ends at 0.7 with zero seed
//!   spread, so the tolerance is 1e-4 × 0.7; SGD ends at 1.2.
//! * Task a: the candidate ends at 0.55 and 0.57 (mean 0.56): it beats 0.7, and the envelope
//!   first reaches 0.56 at step 20 — speedup 2.
//! * Task b: the candidate's second seed diverges at step 5: mean +∞, a loss, speedup 0.

use beatmatch_core::{Arm, ArmRole, Cell, CurvePoint, EvalPoint, OptimizerSpec, RunKey, RunRecord, RunStatus, Split, Store, Study, StudyTask, Timing};
use beatmatch_reports::analysis::{analyse, load};
use beatmatch_reports::ci::{self, Change};
use beatmatch_reports::compare::{compare_dirs, Winner};
use beatmatch_reports::metrics::Outcome;
use std::path::{Path, PathBuf};

fn curve(points: &[(u64, f32)]) -> Vec<CurvePoint> {
    points.iter().map(|&(step, l)| CurvePoint { step, train_loss: Some(l) }).collect()
}

fn record(problem: &str, spec: &OptimizerSpec, seed: u64, steps: u64, points: &[(u64, f32)], status: RunStatus) -> RunRecord {
    let key = RunKey {
        problem_id: problem.into(),
        problem_hash: format!("hash-{problem}"),
        optimizer: spec.clone(),
        optimizer_hash: beatmatch_core::content_hash(spec),
        seed,
        steps,
        horizon: steps,
        code_version: "beatmatch-test".into(),
        device: "cpu".into(),
    };
    let evals = vec![EvalPoint { step: 10, eval_loss: points.iter().find(|p| p.0 == 10).map(|p| p.1 + 0.1), eval_accuracy: Some(0.5) }];
    RunRecord {
        schema_version: beatmatch_core::RECORD_SCHEMA_VERSION,
        hash: key.hash(),
        key,
        params: 100,
        status,
        curve: curve(points),
        evals,
        worker_versions: Default::default(),
    }
}

/// Write the study into `dir`; `candidate_a` is the candidate's two final losses on task a.
fn write_study(dir: &Path, candidate: &str, candidate_a: [f32; 2]) {
    let store = Store::create(dir).unwrap();
    let cand = OptimizerSpec::parse(candidate).unwrap();
    let adam = [OptimizerSpec::parse("adam:lr=1").unwrap(), OptimizerSpec::parse("adam:lr=2").unwrap()];
    let sgd = OptimizerSpec::parse("sgdm:lr=1").unwrap();
    let arms = vec![
        Arm {
            name: "candidate".into(),
            legend: format!("{cand} (1 trial)"),
            role: ArmRole::Candidate,
            configs: vec![cand.clone()],
            seeds: 2,
            speedup_reference: false,
            provenance: None,
        },
        Arm {
            name: "adam-lr".into(),
            legend: "AdamLR (2 trials)".into(),
            role: ArmRole::Baseline,
            configs: adam.to_vec(),
            seeds: 2,
            speedup_reference: true,
            provenance: None,
        },
        Arm {
            name: "sgdm-lr".into(),
            legend: "SGDLR (1 trial)".into(),
            role: ArmRole::Baseline,
            configs: vec![sgd.clone()],
            seeds: 2,
            speedup_reference: false,
            provenance: None,
        },
    ];
    let tasks = vec![
        StudyTask { id: "a.s10".into(), problem_id: "a".into(), problem_hash: "hash-a".into(), params: 100, steps: 10, split: Split::MetaTrain },
        StudyTask { id: "b.s10".into(), problem_id: "b".into(), problem_hash: "hash-b".into(), params: 100, steps: 10, split: Split::MetaTest },
    ];
    let mut cells = Vec::new();
    for (ti, t) in tasks.iter().enumerate() {
        let p = t.problem_id.as_str();
        for seed in 0..2u64 {
            let cand_rec = if p == "a" {
                record(p, &cand, seed, 10, &[(0, 2.0), (5, 1.0), (10, candidate_a[seed as usize])], RunStatus::Finished)
            } else if seed == 0 {
                record(p, &cand, seed, 10, &[(0, 2.0), (5, 1.0), (10, 0.6)], RunStatus::Finished)
            } else {
                record(p, &cand, seed, 10, &[(0, 2.0)], RunStatus::Diverged { step: 5, reason: "non-finite train loss".into() })
            };
            let adam_recs = [
                record(p, &adam[0], seed, 40, &[(0, 2.0), (5, 1.0), (10, 0.8), (20, 0.6), (40, 0.4)], RunStatus::Finished),
                record(p, &adam[1], seed, 40, &[(0, 2.0), (5, 0.9), (10, 0.7), (20, 0.55), (40, 0.5)], RunStatus::Finished),
            ];
            let sgd_rec = record(p, &sgd, seed, 10, &[(0, 2.0), (5, 1.5), (10, 1.2)], RunStatus::Finished);
            for (arm, config, rec) in [(0, 0, cand_rec), (1, 0, adam_recs[0].clone()), (1, 1, adam_recs[1].clone()), (2, 0, sgd_rec)] {
                cells.push(Cell { task: ti, arm, config, seed, record: rec.hash.clone() });
                store.write_record(&rec).unwrap();
                // Adam takes 1 ms per step, the candidate 2 ms.
                let per_step = if arm == 0 { 2e-3 } else { 1e-3 };
                store.write_timing(&rec.hash, &Timing { seconds: per_step * rec.key.steps as f64, steps: rec.key.steps }).unwrap();
            }
        }
    }
    let study = Study {
        schema_version: beatmatch_core::STUDY_SCHEMA_VERSION,
        selection: "hand-made".into(),
        code_version: "beatmatch-test".into(),
        device: "cpu".into(),
        speedup_cap: 4,
        tasks,
        arms,
        cells,
        skipped: vec![("c.s10".into(), "data set `x` is missing".into())],
    };
    store.write_study(&study).unwrap();
}

fn golden(name: &str, actual: &str) {
    let path = PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").unwrap()).join("tests/golden").join(name);
    if std::env::var_os("BEATMATCH_UPDATE_GOLDEN").is_some() {
        std::fs::write(&path, actual).unwrap();
        return;
    }
    let expected = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e} (BEATMATCH_UPDATE_GOLDEN=1 writes it)", path.display()));
    assert_eq!(actual, expected, "{name} differs from {}", path.display());
}

#[test]
fn analysis_gives_the_hand_worked_outcomes_speedups_and_win_rates() {
    let tmp = tempfile::tempdir().unwrap();
    write_study(tmp.path(), "adam:lr=3", [0.55, 0.57]);
    let rows = analyse(&load(tmp.path()).unwrap()).unwrap();
    let (a, b) = (&rows[0], &rows[1]);
    assert_eq!((a.id.as_str(), a.split, b.id.as_str(), b.split), ("a.s10", Split::MetaTrain, "b.s10", Split::MetaTest));
    // Tuned baseline: Adam's second learning rate, 0.7, zero seed spread.
    assert_eq!(a.best_baseline, 1);
    assert_eq!(a.arms[1].tuned_config, 1);
    assert_eq!(a.arms[1].mean, f64::from(0.7f32));
    assert_eq!(a.arms[2].mean, f64::from(1.2f32));
    assert!((a.tolerance - 1e-4 * f64::from(0.7f32)).abs() < 1e-15);
    let cand_mean = (f64::from(0.55f32) + f64::from(0.57f32)) / 2.0;
    assert_eq!(a.arms[0].mean, cand_mean);
    assert_eq!(a.outcome, Outcome::Beat);
    let s = a.arms[0].speedup.unwrap();
    assert_eq!((s.value, s.at_cap), (2.0, false));
    // Tuned Adam itself reaches 0.7 on its envelope at step 10: speedup 1.
    assert_eq!(a.arms[1].speedup.unwrap().value, 1.0);
    // Wall clock: the candidate's steps cost twice Adam's, so speedup 2 becomes 1.
    assert!((a.wall_clock_speedup().unwrap() - 1.0).abs() < 1e-12);
    assert_eq!(b.arms[0].mean, f64::INFINITY);
    assert_eq!(b.outcome, Outcome::Lose);
    assert_eq!(b.arms[0].diverged_runs, 1);
    assert_eq!(b.arms[0].speedup.unwrap().value, 0.0);
    let region = beatmatch_reports::win_rate::Region::default();
    let (n, e) = beatmatch_reports::win_rate::headline(&rows, region, 0);
    assert_eq!((n, e.point), (2, 0.5));
    let by_split = beatmatch_reports::win_rate::headline_by_split(&rows, region, 0);
    assert_eq!(by_split.iter().map(|(s, n, e)| (*s, *n, e.point)).collect::<Vec<_>>(), vec![(Split::MetaTrain, 1, 1.0), (Split::MetaTest, 1, 0.0)]);
}

#[test]
fn exporters_write_the_golden_files() {
    let tmp = tempfile::tempdir().unwrap();
    write_study(tmp.path(), "adam:lr=3", [0.55, 0.57]);
    let r = beatmatch_reports::write_report(tmp.path(), &Default::default()).unwrap();
    assert!(r.headline.contains("50.0% of 2 tasks"), "{}", r.headline);
    for f in ["tasks.csv", "win_rate_bins.csv", "summary.md", "wall_clock.csv", "wall_clock.md", "records.txt"] {
        golden(f, &std::fs::read_to_string(tmp.path().join(f)).unwrap());
    }
    // The parquet table holds the CSV's rows and columns.
    let f = std::fs::File::open(tmp.path().join("tasks.parquet")).unwrap();
    use polars::prelude::SerReader;
    let df = polars::prelude::ParquetReader::new(f).finish().unwrap();
    assert_eq!(df.height(), 2);
    let header = std::fs::read_to_string(tmp.path().join("tasks.csv")).unwrap().lines().next().unwrap().to_string();
    assert_eq!(df.get_column_names().iter().map(|c| c.as_str()).collect::<Vec<_>>().join(","), header);
    // The page embeds every figure and the summary.
    let html = std::fs::read_to_string(tmp.path().join("report.html")).unwrap();
    let figures = beatmatch_reports::figures::names();
    assert_eq!(html.matches("<figure id=").count(), figures.len(), "every figure inline as SVG");
    assert_eq!(html.matches("@font-face").count(), 1, "the font carried once");
    for f in figures {
        let svg = std::fs::read_to_string(tmp.path().join(format!("{f}.svg"))).unwrap();
        assert!(svg.starts_with("<svg") && svg.contains("@font-face") && svg.contains("font-family=\"DejaVu Sans\""), "{f}.svg");
        assert!(tmp.path().join(format!("{f}.png")).exists(), "{f}.png");
        assert!(html.contains(&format!("<figure id=\"{f}\"")), "{f} on the page");
    }
    assert!(html.contains("meta_test: 0.0% of 1 tasks"));
}

/// Every figure drawn with long legends keeps its text inside the image: nothing is drawn in
/// its outermost pixel columns. (A caption wider than its figure is centred off both edges:
/// the heatmap's title lost its start with a checkpoint's legend.)
#[test]
fn every_figure_keeps_long_legends_inside_its_edges() {
    use beatmatch_reports::figures::{ReportData, FIGURES};
    use plotters::prelude::{BitMapBackend, IntoDrawingArea};
    let tmp = tempfile::tempdir().unwrap();
    write_study(tmp.path(), "adam:lr=3", [0.55, 0.57]);
    let mut loaded = load(tmp.path()).unwrap();
    for arm in &mut loaded.study.arms {
        arm.legend = format!("{} from the checkpoint learned/checkpoints/a_rather_long_file_name_es_mnist1d.safetensors, hyperparameter-free", arm.legend);
    }
    let rows = analyse(&loaded).unwrap();
    let bins = beatmatch_reports::win_rate::bins(&rows);
    let data = ReportData::new(&loaded, &rows, &bins);
    let mut drawn = 0;
    for figure in FIGURES.iter().filter(|f| f.applies(&data)) {
        let (w, h) = figure.size(&data);
        let mut buf = vec![0u8; (w * h * 3) as usize];
        figure.png(&data, BitMapBackend::with_buffer(&mut buf, (w, h)).into_drawing_area()).unwrap();
        let ink = |x: u32| (0..h).filter(|&y| buf[((y * w + x) * 3) as usize..][..3] != [255, 255, 255]).count();
        for x in [0, 1, w - 2, w - 1] {
            assert_eq!(ink(x), 0, "{}: {} pixels drawn in column {x} of {w}: text runs off the figure", figure.name(), ink(x));
        }
        drawn += 1;
    }
    assert_eq!(drawn, FIGURES.len(), "every figure applies to the hand-made study");
}

#[test]
fn html_page_golden_with_a_tiny_figure() {
    let tmp = tempfile::tempdir().unwrap();
    let png = tmp.path().join("f.png");
    std::fs::write(&png, [0x89, b'P', b'N', b'G']).unwrap();
    let page = beatmatch_reports::export::html::render(
        "title <&>",
        "# summary\n| a < b |",
        &[("Figure one", png.as_path()), ("missing", Path::new("/nonexistent.png"))],
    );
    golden("page.html", &page);
}

#[test]
fn ci_gate_verdicts_and_markdown() {
    let tmp = tempfile::tempdir().unwrap();
    write_study(tmp.path(), "adam:lr=3", [0.55, 0.57]);
    let rows = analyse(&load(tmp.path()).unwrap()).unwrap();
    let mut reference = ci::reference_from(&rows, "adam:lr=3", "hand-made", "cpu");
    reference.code_version = "beatmatch-test".into();
    // Same rows: nothing moves.
    let same = ci::check(&reference, &rows, 3.0);
    assert!(same.verdicts.iter().all(|v| v.status == Change::Unchanged), "{:?}", same.verdicts);
    // The reference remembers task a 0.1 better, and a task that is gone.
    let mut stricter = reference.clone();
    stricter.tasks[0].loss_mean = Some(0.46);
    stricter.tasks[0].loss_std = 0.0;
    let mut gone = stricter.tasks[0].clone();
    gone.task = "gone.s10".into();
    stricter.tasks.push(gone);
    let c = ci::check(&stricter, &rows, 3.0);
    assert_eq!(c.verdicts[0].status, Change::Regressed);
    // Tolerance: 3 × √(0 + σ²/2) with σ = the candidate's seed std (0.0141…).
    let sd = rows[0].arms[0].std;
    assert!((c.verdicts[0].tolerance - 3.0 * (sd * sd / 2.0).sqrt()).abs() < 1e-12);
    assert_eq!(c.verdicts[1].status, Change::Unchanged, "diverged on both sides");
    assert_eq!(c.missing, vec!["gone.s10".to_string()]);
    assert_eq!(c.regressed().len(), 1);
    golden("ci-report.md", &ci::markdown(&stricter, "adam:lr=3", &c, 3.0, &["r1".into(), "r2".into()]));
    // JUnit: the elements and attributes GitHub's and GitLab's report parsers read.
    let xml = ci::junit(&c, "adam:lr=3", false);
    check_junit(&xml, 3, 1, 1);
    check_junit(&ci::junit(&c, "adam:lr=3", true), 3, 2, 0);
    golden("ci-junit.xml", &xml);
    golden("ci-comment.md", &ci::pr_markdown(&stricter, "adam:lr=3", &c, 3.0));
    // An improvement.
    let mut looser = reference.clone();
    looser.tasks[0].loss_mean = Some(0.9);
    assert_eq!(ci::check(&looser, &rows, 3.0).verdicts[0].status, Change::Improved);
}

#[test]
fn compare_pairs_tasks_and_names_the_winner() {
    let tmp = tempfile::tempdir().unwrap();
    let (a, b) = (tmp.path().join("a"), tmp.path().join("b"));
    write_study(&a, "adam:lr=3", [0.55, 0.57]);
    write_study(&b, "adam:lr=4", [0.45, 0.47]);
    let c = compare_dirs(&a, &b).unwrap();
    assert_eq!(c.tasks.iter().map(|t| t.winner()).collect::<Vec<_>>(), vec![Winner::B, Winner::Tie]);
    assert_eq!(c.counts(), (0, 1, 1));
    assert!((c.tasks[0].delta - (f64::from(0.45f32) + f64::from(0.47f32) - f64::from(0.55f32) - f64::from(0.57f32)) / 2.0).abs() < 1e-12);
    golden("compare.md", &beatmatch_reports::compare::markdown(&c));
}

/// Parse JUnit XML and check it against the schema's shape (JUnit 10 XSD as CI systems read
/// it): `testsuites` ⊃ `testsuite` (name, tests, failures, errors, skipped) ⊃ `testcase`
/// (classname, name) with at most one of `failure` (message, type) / `skipped`; the counts
/// agree with the cases.
fn check_junit(xml: &str, tests: usize, failures: usize, skipped: usize) {
    use quick_xml::events::{BytesStart, Event};
    use std::collections::HashMap;
    let mut reader = quick_xml::Reader::from_str(xml);
    let mut stack: Vec<String> = Vec::new();
    let (mut cases, mut fails, mut skips) = (0, 0, 0);
    let mut suite: HashMap<String, String> = HashMap::new();
    let mut visit = |e: &BytesStart<'_>, parent: Option<&str>| -> String {
        let name = String::from_utf8(e.name().as_ref().to_vec()).unwrap();
        let attrs: HashMap<String, String> = e
            .attributes()
            .map(|a| a.unwrap())
            .map(|a| (String::from_utf8(a.key.as_ref().to_vec()).unwrap(), a.unescape_value().unwrap().to_string()))
            .collect();
        let has = |k: &str| assert!(attrs.contains_key(k), "{name} lacks {k}");
        match name.as_str() {
            "testsuites" => assert_eq!(parent, None),
            "testsuite" => {
                assert_eq!(parent, Some("testsuites"));
                ["name", "tests", "failures", "errors", "skipped"].iter().for_each(|k| has(k));
                suite = attrs.clone();
            }
            "testcase" => {
                assert_eq!(parent, Some("testsuite"));
                has("name");
                has("classname");
                cases += 1;
            }
            "failure" => {
                assert_eq!(parent, Some("testcase"));
                has("message");
                has("type");
                fails += 1;
            }
            "skipped" => {
                assert_eq!(parent, Some("testcase"));
                skips += 1;
            }
            "system-out" => assert_eq!(parent, Some("testcase")),
            other => panic!("element {other} is not in the JUnit schema"),
        }
        name
    };
    loop {
        match reader.read_event().expect("well-formed XML") {
            Event::Start(e) => {
                let name = visit(&e, stack.last().map(String::as_str));
                stack.push(name);
            }
            Event::Empty(e) => {
                visit(&e, stack.last().map(String::as_str));
            }
            Event::End(_) => {
                stack.pop();
            }
            Event::Eof => break,
            _ => {}
        }
    }
    assert!(stack.is_empty());
    assert_eq!((cases, fails, skips), (tests, failures, skipped), "{xml}");
    assert_eq!(suite["tests"], tests.to_string());
    assert_eq!(suite["failures"], failures.to_string());
    assert_eq!(suite["skipped"], skipped.to_string());
}
