//! Slow end-to-end tests of the `suite` binary on the smoke tier (a few seconds each):
//! files written, bit-identical reruns, resume after `kill -9`, and registry errors.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn suite() -> Command {
    Command::new(env!("CARGO_BIN_EXE_suite"))
}

fn run_smoke(out: &Path, extra: &[&str]) -> String {
    let o = suite().args(["run", "--tier", "smoke", "--out"]).arg(out).args(extra).output().unwrap();
    let stderr = String::from_utf8_lossy(&o.stderr).to_string();
    assert!(o.status.success(), "suite run failed: {stderr}");
    stderr
}

/// Every file in `dir` but the timing sidecars (wall-clock times differ run to run by design).
fn dir_bytes(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut v: Vec<(String, Vec<u8>)> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_file() && !p.to_string_lossy().ends_with(".timing.json"))
        .map(|p| (p.file_name().unwrap().to_string_lossy().to_string(), std::fs::read(&p).unwrap()))
        .collect();
    v.sort();
    v
}

const REPORT_FILES: [&str; 6] = ["tasks.csv", "win_rate_bins.csv", "summary.md", "records.txt", "speedup.png", "win_rate_heatmap.png"];

#[test]
fn slow_smoke_run_writes_report_and_reruns_bit_identically() {
    let tmp = tempfile::tempdir().unwrap();
    let (a, b) = (tmp.path().join("a"), tmp.path().join("b"));
    let log = run_smoke(&a, &["--jobs", "2"]);
    assert!(log.contains("4 tasks"), "{log}");
    for f in REPORT_FILES {
        assert!(a.join(f).metadata().unwrap().len() > 0, "{f} missing or empty");
    }
    let csv = std::fs::read_to_string(a.join("tasks.csv")).unwrap();
    assert_eq!(csv.lines().count(), 1 + 4, "{csv}");
    assert!(csv.lines().skip(1).all(|l| l.contains(",beat,") || l.contains(",match,") || l.contains(",lose,")), "{csv}");
    let summary = std::fs::read_to_string(a.join("summary.md")).unwrap();
    assert!(summary.contains("95% bootstrap CI"), "{summary}");

    // A second, independent run (different worker interleaving) gives the same bytes.
    run_smoke(&b, &["--jobs", "1"]); // a different worker interleaving
    assert_eq!(dir_bytes(&a.join("runs")), dir_bytes(&b.join("runs")));
    for f in ["tasks.csv", "win_rate_bins.csv", "summary.md", "records.txt"] {
        assert_eq!(std::fs::read(a.join(f)).unwrap(), std::fs::read(b.join(f)).unwrap(), "{f} differs");
    }

    // Re-running skips every finished run.
    let log = run_smoke(&a, &[]);
    assert!(log.contains("0 trained") && log.contains("320 already done"), "{log}");
}

#[test]
fn slow_kill_9_then_rerun_loses_nothing_and_reports_the_same() {
    let tmp = tempfile::tempdir().unwrap();
    let (clean, killed) = (tmp.path().join("clean"), tmp.path().join("killed"));
    run_smoke(&clean, &[]);

    let runs = killed.join("runs");
    let mut child = suite()
        .args(["run", "--tier", "smoke", "--jobs", "2", "--no-report", "--out"])
        .arg(&killed)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let start = Instant::now();
    let count = |d: &PathBuf| {
        std::fs::read_dir(d)
            .map(|r| {
                r.filter(|e| {
                    let p = e.as_ref().unwrap().path();
                    p.extension().is_some_and(|x| x == "json") && !p.to_string_lossy().ends_with(".timing.json")
                })
                .count()
            })
            .unwrap_or(0)
    };
    while count(&runs) < 20 && start.elapsed() < Duration::from_secs(60) {
        std::thread::sleep(Duration::from_millis(5));
    }
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    let before = dir_bytes(&runs);
    let finished_before = before.iter().filter(|(n, _)| n.ends_with(".json")).count();
    assert!((20..320).contains(&finished_before), "killed after {finished_before} records; the test wants a partial run");
    // Every record on disk is whole: it parses.
    for (name, bytes) in &before {
        if name.ends_with(".json") {
            serde_json::from_slice::<serde_json::Value>(bytes).unwrap_or_else(|e| panic!("{name} is corrupt: {e}"));
        }
    }
    let log = run_smoke(&killed, &[]);
    assert!(log.contains(&format!("{} already done", finished_before)), "{log}");
    let after = dir_bytes(&runs);
    for (name, bytes) in before.iter().filter(|(n, _)| n.ends_with(".json")) {
        assert_eq!(after.iter().find(|(n, _)| n == name).map(|(_, b)| b), Some(bytes), "{name} was rewritten");
    }
    let json = |d: &[(String, Vec<u8>)]| d.iter().filter(|(n, _)| n.ends_with(".json")).cloned().collect::<Vec<_>>();
    assert_eq!(json(&after), json(&dir_bytes(&clean.join("runs"))));
    for f in ["tasks.csv", "win_rate_bins.csv", "summary.md"] {
        assert_eq!(std::fs::read(clean.join(f)).unwrap(), std::fs::read(killed.join(f)).unwrap(), "{f} differs");
    }
}

#[test]
fn bad_registry_fails_with_file_line_and_expectation() {
    let tmp = tempfile::tempdir().unwrap();
    std::fs::write(
        tmp.path().join("bad.yaml"),
        "families:\n  - tier: smoke\n    logreg: {}\n    datasets: [mnist1d]\n    batch_sizes: [128]\n    steps: [100]\n    learning_rate: 3\n",
    )
    .unwrap();
    let o = suite().args(["list", "--registry"]).arg(tmp.path()).output().unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(err.contains("bad.yaml:7:") && err.contains("unknown field `learning_rate`") && err.contains("expected one of"), "{err}");
}

/// `suite list --tier tier`: the whole output and its task rows (the header skipped).
fn list(tier: &str) -> (String, Vec<String>) {
    let o = suite().args(["list", "--tier", tier]).output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let out = String::from_utf8_lossy(&o.stdout).to_string();
    let rows = out.lines().skip(1).map(str::to_string).collect();
    (out, rows)
}

#[test]
fn quick_tier_lists_at_least_40_tasks_with_parameter_counts() {
    let (out, rows) = list("quick");
    assert!(rows.len() >= 40, "{out}");
    assert!(rows.iter().any(|r| r.starts_with("mlp-w128-d1-relu.fashion_mnist.b128.s1000") && r.contains("101770")), "{out}");
}

fn fixture(name: &str) -> PathBuf {
    // The runtime CARGO_MANIFEST_DIR: a shared target dir may hold a binary built elsewhere.
    let crate_dir = std::env::var_os("CARGO_MANIFEST_DIR").map(PathBuf::from).unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")));
    crate_dir.join("../testdata/fixtures").join(name)
}

#[test]
fn lopt_inspect_and_convert_round_trip() {
    let tmp = tempfile::tempdir().unwrap();
    let src = fixture("adafac_case1.theta.msgpack");
    let inspect = |p: &Path| {
        let o = suite().args(["lopt", "inspect"]).arg(p).output().unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        String::from_utf8_lossy(&o.stdout).to_string()
    };
    let a = inspect(&src);
    assert!(a.contains("architecture:    small_fc") && a.contains("complete"), "{a}");
    let count = |s: &str| s.lines().find(|l| l.starts_with("meta-parameters")).unwrap().to_string();
    let native = tmp.path().join("x.safetensors");
    assert!(suite().args(["lopt", "convert"]).arg(&src).arg(&native).status().unwrap().success());
    assert!(native.with_extension("yaml").is_file());
    let b = inspect(&native);
    assert_eq!(count(&a), count(&b));
    // A corrupted file is an error with a message, exit code 2, no panic.
    let bad = tmp.path().join("bad.msgpack");
    std::fs::write(&bad, &std::fs::read(&src).unwrap()[..100]).unwrap();
    let o = suite().args(["lopt", "inspect"]).arg(&bad).output().unwrap();
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("truncated or corrupt"));
    // Asking for the wrong architecture names both.
    let o = suite().args(["lopt", "inspect", "--arch", "velo"]).arg(&src).output().unwrap();
    assert!(String::from_utf8_lossy(&o.stderr).contains("expected a velo checkpoint, but the file holds small_fc"));
}

#[test]
fn slow_smoke_run_with_a_learned_candidate() {
    let tmp = tempfile::tempdir().unwrap();
    let ckpt = fixture("velo_case2.theta.msgpack");
    let log = run_smoke(&tmp.path().join("r"), &["--candidate", &format!("velo:{}", ckpt.display())]);
    assert!(log.contains("VeLO") && log.contains("hyperparameter-free (1 trial)"), "{log}");
    let csv = std::fs::read_to_string(tmp.path().join("r/tasks.csv")).unwrap();
    assert_eq!(csv.lines().count(), 5, "{csv}");
    // A checkpoint of the wrong architecture is refused before anything trains.
    let o = suite()
        .args(["run", "--tier", "smoke", "--out"])
        .arg(tmp.path().join("bad"))
        .arg("--candidate")
        .arg(format!("mlp_lopt:{}", ckpt.display()))
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("expected a mlp_lopt checkpoint, but the file holds velo"));
}

#[test]
fn slow_a_published_learned_optimizer_tuned_as_a_protocol_is_labelled_with_its_trials() {
    let tmp = tempfile::tempdir().unwrap();
    let reg = tmp.path().join("reg");
    std::fs::create_dir(&reg).unwrap();
    std::fs::write(
        reg.join("r.yaml"),
        "families:\n  - tier: smoke\n    mlp: { width: [8], depth: [2], activation: [relu] }\n    datasets: [mnist1d]\n    batch_sizes: [32]\n    steps: [30]\n",
    )
    .unwrap();
    let out = tmp.path().join("r");
    let common = ["--registry", reg.to_str().unwrap(), "--baselines", "adam-lr15", "--seeds", "1"];
    let log = run_smoke(&out, &[&common[..], &["--candidate", "celo2-lr"]].concat());
    assert!(log.contains("Celo2 LR (5 trials)"), "{log}");
    let summary = std::fs::read_to_string(out.join("summary.md")).unwrap();
    assert!(summary.contains("Celo2 LR (5 trials)") && summary.contains("held out"), "{summary}");
    assert!(summary.contains("The candidate was tuned as the baselines are: 5 configurations") && summary.contains("edge of its grid on"), "{summary}");
    let csv = std::fs::read_to_string(out.join("tasks.csv")).unwrap();
    let (head, row) = (csv.lines().next().unwrap(), csv.lines().nth(1).unwrap());
    let col = head.split(',').position(|c| c == "candidate.config").expect("candidate.config column");
    let tuned = row.split(',').nth(col).unwrap();
    assert!(tuned.starts_with("celo2@") && tuned.contains(":lr="), "{tuned}");
    // The tuned trial is the run `--candidate celo2:lr=…` alone makes: the same record.
    let lr = tuned.split("lr=").nth(1).unwrap();
    let alone = tmp.path().join("alone");
    run_smoke(&alone, &[&common[..], &["--candidate", &format!("celo2:lr={lr}")]].concat());
    let cand = |dir: &Path| {
        let csv = std::fs::read_to_string(dir.join("tasks.csv")).unwrap();
        let head: Vec<&str> = csv.lines().next().unwrap().split(',').collect();
        let row: Vec<String> = csv.lines().nth(1).unwrap().split(',').map(str::to_string).collect();
        row[head.iter().position(|c| *c == "candidate_loss").unwrap()].clone()
    };
    assert_eq!(cand(&out), cand(&alone));
}

#[test]
fn slow_ci_gate_passes_on_rerun_and_fails_when_the_candidate_is_worse() {
    let tmp = tempfile::tempdir().unwrap();
    let reference = tmp.path().join("reference.json");
    let ci =
        |out: &str, extra: &[&str]| suite().args(["ci", "--reference"]).arg(&reference).arg("--out").arg(tmp.path().join(out)).args(extra).output().unwrap();
    let adam = ["--candidate", "adam:lr=1e-3"];
    let o = ci("make", &["--update-reference", adam[0], adam[1]]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let o = ci("rerun", &["--strict", adam[0], adam[1]]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let md = std::fs::read_to_string(tmp.path().join("rerun/ci-report.md")).unwrap();
    assert!(md.contains("**PASS**: 0 of 4 tasks regressed"), "{md}");
    // A deliberately worse candidate (10× smaller learning rate) fails, naming tasks and amounts.
    let o = ci("worse", &["--candidate", "adam:lr=1e-4"]);
    assert_eq!(o.status.code(), Some(1), "{}", String::from_utf8_lossy(&o.stderr));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("REGRESSION logreg.mnist1d.b128.s300"), "{err}");
    let md = std::fs::read_to_string(tmp.path().join("worse/ci-report.md")).unwrap();
    assert!(md.contains("**FAIL**") && md.contains("## Regressions"), "{md}");
    // --strict: a reference task that was not run is an error.
    let mut r: serde_json::Value = serde_json::from_slice(&std::fs::read(&reference).unwrap()).unwrap();
    let mut extra = r["tasks"][0].clone();
    extra["task"] = "mlp-w999-d1-relu.mnist1d.b128.s100".into();
    r["tasks"].as_array_mut().unwrap().push(extra);
    std::fs::write(&reference, serde_json::to_vec(&r).unwrap()).unwrap();
    assert_eq!(ci("strict", &["--strict", adam[0], adam[1]]).status.code(), Some(1));
    assert_eq!(ci("lenient", &adam).status.code(), Some(0));
}

#[test]
fn slow_compare_two_candidates_on_the_same_tasks() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("cmp");
    let o = suite().args(["compare", "adam:lr=1e-3", "adam:lr=1e-2", "--out"]).arg(&out).output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let md = std::fs::read_to_string(out.join("compare.md")).unwrap();
    assert!(md.contains("sign test") && md.contains("Wilcoxon") && md.contains("On 4 paired tasks"), "{md}");
    assert!(out.join("delta_vs_params.png").metadata().unwrap().len() > 0);
    // Two existing directories compare without rerunning.
    let o = suite().args(["compare"]).arg(out.join("a")).arg(out.join("b")).arg("--out").arg(tmp.path().join("again")).output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(std::fs::read_to_string(tmp.path().join("again/compare.md")).unwrap(), md);
}

#[test]
fn data_status_lists_every_data_set() {
    let o = suite().args(["data", "status"]).output().unwrap();
    let out = String::from_utf8_lossy(&o.stdout);
    for name in ["mnist1d ", "fashion_mnist", "digits", "mnist1d_large", "mnist ", "cifar10", "moby_dick"] {
        assert!(out.contains(name), "{out}");
    }
    assert!(out.contains("embedded in the binary") && out.contains("generated on first use") && out.contains("byte stream"), "{out}");
    // Fashion-MNIST is either found or explained, and the exit code says which.
    assert_eq!(out.contains("MISSING"), o.status.code() == Some(1), "{out}");
}

#[test]
fn full_tier_lists_at_least_300_tasks_with_split_and_device() {
    let (out, rows) = list("full");
    assert!(rows.len() >= 300, "{} tasks", rows.len());
    assert!(rows.iter().any(|r| r.contains(" cuda ")) && rows.iter().any(|r| r.contains("meta_test")), "{out}");
    for family in ["transformer-", "lstm-", "ae-", "conv-"] {
        assert!(rows.iter().any(|r| r.starts_with(family)), "no {family} task");
    }
}

/// A registry with a task on data this machine lacks, a GPU-only task and a tiny runnable one.
fn mixed_registry(dir: &Path) {
    std::fs::write(
        dir.join("mixed.yaml"),
        "families:
  - tier: smoke
    logreg: {}
    datasets: [mnist1d]
    batch_sizes: [128]
    steps: [50]
  - tier: smoke
    mlp: { width: [16], depth: [1], activation: [relu] }
    datasets: [mnist, cifar10]
    batch_sizes: [128]
    steps: [50, 100]
  - tier: smoke
    device: cuda
    transformer: { d_model: [2048], layers: [16], heads: [16], context: [256] }
    datasets: [moby_dick]
    batch_sizes: [64]
    steps: [100000]
",
    )
    .unwrap();
}

#[test]
fn slow_missing_data_and_gpu_tasks_are_skipped_with_one_line_each() {
    let tmp = tempfile::tempdir().unwrap();
    let reg = tmp.path().join("reg");
    std::fs::create_dir(&reg).unwrap();
    mixed_registry(&reg);
    let out = tmp.path().join("out");
    let o = suite()
        .args(["run", "--tier", "smoke", "--jobs", "2", "--registry"])
        .arg(&reg)
        .arg("--out")
        .arg(&out)
        .env("BEATMATCH_DATA", tmp.path().join("no-data-here"))
        .env("HOME", tmp.path())
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{err}");
    assert_eq!(err.matches("skipping tasks on mnist:").count(), 1, "{err}");
    assert_eq!(err.matches("skipping tasks on cifar10:").count(), 1, "{err}");
    assert!(err.contains("suite data fetch mnist") && err.contains("1 tasks that need a CUDA GPU"), "{err}");
    let study: serde_json::Value = serde_json::from_slice(&std::fs::read(out.join("study.json")).unwrap()).unwrap();
    assert_eq!(study["tasks"].as_array().unwrap().len(), 1);
    assert_eq!(study["skipped"].as_array().unwrap().len(), 5, "4 missing-data tasks and 1 GPU task are recorded as skipped");
}

#[test]
fn slow_plan_counts_cached_runs_and_estimates_time() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("out");
    let plan = || {
        let o = suite().args(["plan", "--tier", "smoke", "--out"]).arg(&out).env("HOME", tmp.path()).output().unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        String::from_utf8_lossy(&o.stdout).to_string()
    };
    let before = plan();
    assert!(before.contains("runs: 320 planned, 0 already in") && before.contains("320 to run"), "{before}");
    assert!(before.contains("cpu: ") && before.contains("2 problems measured now, 0 cached"), "{before}");
    assert!(tmp.path().join(".cache/beatmatch/calibration.json").is_file());
    run_smoke(&out, &[]);
    let after = plan();
    assert!(after.contains("320 already in") && after.contains(", 0 to run"), "{after}");
}

#[test]
fn slow_validate_mnist1d_matches_the_published_accuracies() {
    let o = suite().args(["validate", "--only", "mnist1d_logreg,mnist1d_mlp"]).output().unwrap();
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success(), "{out}\n{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(out.matches("| ok |").count(), 2, "{out}");
}

#[test]
fn data_fetch_names_what_it_can_fetch() {
    let o = suite().args(["data", "fetch", "imagenet"]).output().unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2));
    assert!(err.contains("unknown data set `imagenet`") && err.contains("cifar10"), "{err}");
    let o = suite().args(["data", "fetch", "moby_dick"]).output().unwrap();
    assert!(String::from_utf8_lossy(&o.stderr).contains("needs no download"));
}

/// Under `nohup … > log 2>&1` (stderr not a terminal) the bar gives way to progress lines.
#[test]
fn slow_progress_lines_in_a_log_and_quiet_silences_them() {
    let tmp = tempfile::tempdir().unwrap();
    let o = suite().args(["run", "--tier", "smoke", "--no-report", "--out"]).arg(tmp.path().join("a")).env("BEATMATCH_PROGRESS_SECS", "0.2").output().unwrap();
    let log = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{log}");
    let lines: Vec<&str> = log.lines().filter(|l| l.starts_with("progress: ")).collect();
    assert!(!lines.is_empty(), "no progress line in:\n{log}");
    assert!(lines.iter().all(|l| l.contains("/320 runs") && l.contains("diverged") && l.contains("ETA")), "{lines:?}");
    let o = suite()
        .args(["run", "--tier", "smoke", "--no-report", "--quiet", "--out"])
        .arg(tmp.path().join("b"))
        .env("BEATMATCH_PROGRESS_SECS", "0.2")
        .output()
        .unwrap();
    assert!(!String::from_utf8_lossy(&o.stderr).contains("progress: "));
}

#[test]
fn bad_hyperparameters_are_refused_before_training() {
    let tmp = tempfile::tempdir().unwrap();
    for (spec, range) in [
        ("adam:lr=-1", "lr must be a finite number > 0"),
        ("adam:b1=1", "b1 must be in [0, 1)"),
        ("adam:eps=0", "eps must be > 0"),
        ("adam:lr=nan", "lr must be"),
    ] {
        let o = suite().args(["run", "--tier", "smoke", "--candidate", spec, "--out"]).arg(tmp.path()).output().unwrap();
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(2), "{spec}: {err}");
        assert!(err.contains(range), "{spec}: {err}");
    }
    assert!(!tmp.path().join("runs").exists(), "nothing was trained");
}

#[test]
fn slow_compare_takes_a_registry_and_a_task_filter() {
    let tmp = tempfile::tempdir().unwrap();
    std::fs::write(
        tmp.path().join("r.yaml"),
        "families:\n  - tier: smoke\n    logreg: {}\n    datasets: [mnist1d]\n    batch_sizes: [64]\n    steps: [30, 60]\n",
    )
    .unwrap();
    let o = suite()
        .args(["compare", "adam:lr=1e-2", "adam:lr=1e-3", "--registry"])
        .arg(tmp.path())
        .args(["--only", "s60$", "--out"])
        .arg(tmp.path().join("cmp"))
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{err}");
    let md = std::fs::read_to_string(tmp.path().join("cmp/compare.md")).unwrap();
    assert!(md.contains("logreg.mnist1d.b64.s60") && !md.contains("logreg.mnist1d.b64.s30"), "{md}");
}
