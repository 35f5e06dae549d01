//! Slow end-to-end tests of `suite run` with a Python candidate on the smoke tier: judged like
//! any optimizer, its records carrying the worker's versions; a worker that raises or produces
//! NaNs is a failed or diverged run and the study goes on; `kill -9` of the suite leaves no
//! worker running and the rerun resumes. Need a Python with numpy (see `foreign_worker.rs`).

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn python() -> Option<String> {
    let py = std::env::var("BEATMATCH_PYTHON").unwrap_or_else(|_| "python3".into());
    let ok = Command::new(&py).args(["-c", "import numpy"]).output().is_ok_and(|o| o.status.success());
    if !ok && std::env::var("BEATMATCH_PYTHON_REQUIRE").unwrap_or_default().split(',').any(|m| m.trim() == "numpy") {
        panic!("{py} cannot import numpy, which BEATMATCH_PYTHON_REQUIRE requires");
    }
    if !ok {
        eprintln!("SKIPPED: {py} cannot import numpy (set BEATMATCH_PYTHON)");
    }
    ok.then_some(py)
}

fn suite(py: &str) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_suite"));
    c.env("BEATMATCH_PYTHON", py);
    c
}

/// `suite run` on the smoke tier; its stderr. It exits 0, or 1 when `failures` (the report is
/// written either way).
fn run_smoke_with(py: &str, out: &Path, candidate: &str, failures: bool) -> String {
    let o = suite(py).args(["run", "--tier", "smoke", "--candidate", candidate, "--out"]).arg(out).output().unwrap();
    let stderr = String::from_utf8_lossy(&o.stderr).to_string();
    assert_eq!(o.status.code(), Some(i32::from(failures)), "suite run: {stderr}");
    assert!(out.join("summary.md").is_file(), "no report: {stderr}");
    stderr
}

fn run_smoke(py: &str, out: &Path, candidate: &str) -> String {
    run_smoke_with(py, out, candidate, false)
}

fn records(out: &Path) -> Vec<serde_json::Value> {
    let Ok(dir) = std::fs::read_dir(out.join("runs")) else { return vec![] };
    let mut v: Vec<PathBuf> =
        dir.map(|e| e.unwrap().path()).filter(|p| p.extension().is_some_and(|x| x == "json") && !p.to_string_lossy().ends_with(".timing.json")).collect();
    v.sort();
    v.iter().map(|p| serde_json::from_slice(&std::fs::read(p).unwrap()).unwrap_or_else(|e| panic!("{} is torn: {e}", p.display()))).collect()
}

fn kind(r: &serde_json::Value) -> &str {
    r["key"]["optimizer"]["kind"].as_str().unwrap()
}

fn step_file(dir: &Path, name: &str, body: &str) -> String {
    let file = dir.join(format!("{name}.py"));
    std::fs::write(
        &file,
        format!("import time\nimport numpy as np\n\n\ndef make(lr=1e-2):\n    def step(p, g, t, loss):\n        {body}\n\n    return step\n"),
    )
    .unwrap();
    format!("python:{}", file.display())
}

#[test]
fn slow_a_python_adam_is_judged_like_the_native_one_and_its_records_carry_its_versions() {
    let Some(py) = python() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("r");
    let adam = Path::new(env!("CARGO_MANIFEST_DIR")).join("../python/examples/adam_numpy.py");
    let log = run_smoke(&py, &out, &format!("python:{}:lr=1e-3", adam.display()));
    assert!(log.contains("python:adam_numpy.py:make, lr=1e-3 (1 trial)"), "{log}");
    let all = records(&out);
    let ours: Vec<_> = all.iter().filter(|r| kind(r) == "python").collect();
    assert!(!ours.is_empty());
    // Against the baselines' native Adam at lr=1e-3 on the same problem and seed, step by step.
    let mut compared = 0;
    for r in &ours {
        assert_eq!(r["status"]["kind"], "finished", "{}", r["status"]);
        assert!(r["worker_versions"]["numpy"].is_string(), "{}", r["worker_versions"]);
        let native = all
            .iter()
            .find(|n| {
                kind(n) == "adam"
                    && n["key"]["optimizer"]["hparams"]["lr"] == 1e-3
                    && n["key"]["problem_hash"] == r["key"]["problem_hash"]
                    && n["key"]["seed"] == r["key"]["seed"]
            })
            .expect("the native Adam lr=1e-3 run");
        assert!(native.get("worker_versions").is_none(), "a native record names no worker");
        for p in r["curve"].as_array().unwrap() {
            let q = native["curve"].as_array().unwrap().iter().find(|q| q["step"] == p["step"]).unwrap();
            let (a, b) = (p["train_loss"].as_f64().unwrap(), q["train_loss"].as_f64().unwrap());
            // numpy's order of float32 operations is not the native kernel's: close, not equal.
            assert!((a - b).abs() <= 1e-4 * b.abs(), "step {}: python {a}, native {b}", p["step"]);
            compared += 1;
        }
    }
    assert!(compared > 20, "{compared} points compared");
    let study = std::fs::read_to_string(out.join("study.json")).unwrap();
    assert!(study.contains("run by a step-protocol worker"), "the candidate's provenance");
    let summary = std::fs::read_to_string(out.join("summary.md")).unwrap();
    assert!(summary.contains("Worker versions of `python@") && summary.contains("numpy "), "{summary}");

    // One record made under another numpy (as a rerun after an upgrade would): the report says so.
    let path = std::fs::read_dir(out.join("runs"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| std::fs::read_to_string(p).is_ok_and(|t| t.contains("worker_versions")))
        .unwrap();
    let mut r: serde_json::Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    r["worker_versions"]["numpy"] = "0.0.1".into();
    std::fs::write(&path, serde_json::to_vec_pretty(&r).unwrap()).unwrap();
    let o = suite(&py).arg("report").arg(&out).output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let summary = std::fs::read_to_string(out.join("summary.md")).unwrap();
    assert!(summary.contains("**Mixed worker versions**") && summary.contains("numpy 0.0.1") && summary.contains("(1 records)"), "{summary}");
}

#[test]
fn slow_a_worker_that_raises_or_returns_nan_is_a_failed_or_diverged_run_and_the_study_goes_on() {
    let Some(py) = python() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let raises = step_file(
        tmp.path(),
        "raises",
        "if t == 5:\n            raise RuntimeError('broke at step five')\n        for x, y in zip(p, g):\n            x -= lr * y",
    );
    let out = tmp.path().join("raises");
    let log = run_smoke_with(&py, &out, &raises, true);
    assert!(log.contains("8 failed"), "{log}");
    for r in records(&out) {
        if kind(&r) == "python" {
            let e = r["status"]["error"].as_str().unwrap_or_else(|| panic!("{}", r["status"]));
            assert!(e.contains("failed at step 5") && e.contains("RuntimeError: broke at step five"), "{e}");
            assert!(!e.contains("panic"), "{e}");
        } else {
            assert_ne!(r["status"]["kind"], "failed", "a baseline failed beside the worker: {}", r["status"]);
        }
    }
    let nan = step_file(tmp.path(), "nan", "for x in p:\n            x[...] = np.nan if t == 3 else x");
    let out = tmp.path().join("nan");
    run_smoke(&py, &out, &nan);
    let ours: Vec<_> = records(&out).into_iter().filter(|r| kind(r) == "python").collect();
    assert!(!ours.is_empty());
    for r in ours {
        assert_eq!(r["status"]["kind"], "diverged", "{}", r["status"]);
    }
}

/// Processes that map a file under `dir` (a worker maps its shared file there).
fn mapping(dir: &Path) -> Vec<String> {
    let needle = dir.to_string_lossy().to_string();
    std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().chars().all(|c| c.is_ascii_digit()))
        .filter(|e| std::fs::read_to_string(e.path().join("maps")).is_ok_and(|m| m.contains(&needle)))
        .map(|e| e.file_name().to_string_lossy().to_string())
        .collect()
}

#[test]
fn slow_kill_9_of_the_suite_leaves_no_worker_and_the_rerun_resumes() {
    let Some(py) = python() else { return };
    let tmp = tempfile::tempdir().unwrap();
    // Hangs at step 10 while the marker exists: killed then, the workers are asleep, not
    // reading their stdin, and only the parent-death signal (or the process group) ends them.
    let marker = tmp.path().join("hang");
    std::fs::write(&marker, "").unwrap();
    let body = format!(
        "if t == 10 and __import__('os').path.exists({:?}):\n            time.sleep(600)\n        for x, y in zip(p, g):\n            x -= lr * y",
        marker.display().to_string()
    );
    let slow = step_file(tmp.path(), "slow", &body);
    let out = tmp.path().join("killed");
    let workers = out.join("workers");
    let mut child = suite(&py)
        .args(["run", "--tier", "smoke", "--jobs", "2", "--no-report", "--candidate", &slow, "--out"])
        .arg(&out)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let start = Instant::now();
    // Past the probe and into training: some records written, a worker running.
    while (records(&out).len() < 20 || mapping(&workers).is_empty()) && start.elapsed() < Duration::from_secs(60) {
        std::thread::sleep(Duration::from_millis(10));
    }
    assert!(!mapping(&workers).is_empty(), "no worker running within 60 s");
    std::thread::sleep(Duration::from_millis(500));
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    let until = Instant::now() + Duration::from_secs(5);
    while !mapping(&workers).is_empty() && Instant::now() < until {
        std::thread::sleep(Duration::from_millis(10));
    }
    assert_eq!(mapping(&workers), Vec::<String>::new(), "workers outlived the suite");
    let before = records(&out).len();
    assert!(before < 320, "the suite finished before it was killed");
    std::fs::remove_file(&marker).unwrap();
    let log = run_smoke(&py, &out, &slow);
    assert!(log.contains(&format!("{before} already done")), "{log}");
    let after = records(&out);
    assert_eq!(after.len(), 320);
    assert!(after.iter().all(|r| r["status"]["kind"] != "failed"), "a run failed after the resume");
}

#[test]
fn slow_a_python_optimizer_tuned_as_a_protocol_is_labelled_with_its_trials() {
    let Some(py) = python() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let adam = Path::new(env!("CARGO_MANIFEST_DIR")).join("../python/examples/adam_numpy.py");
    let proto = tmp.path().join("numpy-adam-lr.yaml");
    std::fs::write(
        &proto,
        format!("name: numpy-adam-lr\nlabel: numpy Adam LR\nsource: python/examples/adam_numpy.py\noptimizer: python:{}\ngrid:\n  lr: [1.0e-3, 1.0e-2]\nseeds: 1\nselection: lowest_mean_final_train_loss\n", adam.display()),
    )
    .unwrap();
    let out = tmp.path().join("r");
    let log = run_smoke(&py, &out, proto.to_str().unwrap());
    assert!(log.contains("numpy Adam LR (2 trials)"), "{log}");
    let lrs: std::collections::BTreeSet<String> =
        records(&out).iter().filter(|r| kind(r) == "python").map(|r| r["key"]["optimizer"]["hparams"]["lr"].to_string()).collect();
    assert_eq!(lrs.into_iter().collect::<Vec<_>>(), ["0.001", "0.01"]);
    let summary = std::fs::read_to_string(out.join("summary.md")).unwrap();
    assert!(summary.contains("The candidate was tuned as the baselines are: 2 configurations"), "{summary}");
}
