//! The store under cluster conditions, through the `suite` binary: SIGKILL at random moments,
//! several processes and shards on one directory at once, a full or read-only disk, results of
//! mixed code versions, garbage collection, and the shipped Slurm and Kubernetes files run with
//! the environment those schedulers set.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Instant;

fn suite() -> Command {
    Command::new(env!("CARGO_BIN_EXE_suite"))
}

/// The study every test runs: the smoke tier, the default candidate and baselines, one seed,
/// runs one by one (many records, many moments to be killed at).
const STUDY: [&str; 12] = ["run", "--tier", "smoke", "--baselines", "adam-lr15,sgdm-lr15", "--seeds", "1", "--population", "1", "--jobs", "1", "-q"];

fn run(out: &Path, extra: &[&str]) -> Command {
    let mut c = suite();
    c.args(STUDY).arg("--out").arg(out).args(extra).arg("--no-report");
    c
}

fn ok(o: Output) -> String {
    let stderr = String::from_utf8_lossy(&o.stderr).to_string();
    assert!(o.status.success(), "suite failed ({}): {stderr}", o.status);
    stderr
}

/// Every record file's bytes by name (timing sidecars and temporaries excluded).
fn records(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    let Ok(entries) = std::fs::read_dir(dir.join("runs")) else { return BTreeMap::new() };
    entries
        .map(|e| e.unwrap().path())
        .filter(|p| {
            let n = p.file_name().unwrap().to_string_lossy();
            n.ends_with(".json") && !n.ends_with(".timing.json") && !n.starts_with('.')
        })
        .map(|p| (p.file_name().unwrap().to_string_lossy().to_string(), std::fs::read(&p).unwrap()))
        .collect()
}

/// Each record's (hash in the file name) count of `record` lines over every process's log.
fn trainings(dir: &Path) -> BTreeMap<String, usize> {
    let mut n = BTreeMap::new();
    for (hash, _) in beatmatch_suite::run_log::records_written(dir) {
        *n.entry(hash).or_insert(0) += 1;
    }
    n
}

/// The report files that depend on records only (wall-clock files excluded by design).
const REPORT: [&str; 5] = ["tasks.csv", "win_rate_bins.csv", "summary.md", "records.txt", "profile.svg"];

fn report(dir: &Path, extra: &[&str]) -> Output {
    suite().arg("report").arg(dir).args(extra).output().unwrap()
}

fn report_bytes(dir: &Path) -> Vec<(String, Vec<u8>)> {
    ok(report(dir, &[]));
    REPORT.iter().map(|f| (f.to_string(), std::fs::read(dir.join(f)).unwrap())).collect()
}

/// A small deterministic generator (the test needs no crate for 20 numbers).
fn uniform(state: &mut u64) -> f64 {
    *state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
    (*state >> 11) as f64 / (1u64 << 53) as f64
}

#[test]
fn slow_sigkill_at_20_random_moments_loses_and_duplicates_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let (whole, killed) = (tmp.path().join("whole"), tmp.path().join("killed"));
    let t0 = Instant::now();
    ok(run(&whole, &[]).output().unwrap());
    let span = t0.elapsed();
    let reference = records(&whole);
    assert!(reference.len() > 20, "{} records", reference.len());
    let store = beatmatch_core::Store::at(&whole);
    let seconds: BTreeMap<String, f64> = reference.keys().map(|n| (n.clone(), store.read_timing(n.trim_end_matches(".json")).unwrap().seconds)).collect();
    let total: f64 = seconds.values().sum();

    let seed = 20261202;
    let mut rng = seed;
    let mut kills_mid_run = 0;
    let mut moments = Vec::new();
    // Twenty kills that land while the process runs (one that finds it already ended does not
    // count; at most 40 tries).
    for k in 0..40 {
        if kills_mid_run == 20 {
            break;
        }
        // A moment within what is left of the study (each rerun resumes, so the time left
        // shrinks: the share of the uninterrupted run's training time still to do): early ones
        // hit start-up and the manifest, later ones training and record writes.
        let done = records(&killed);
        let left: f64 = reference.keys().filter(|n| !done.contains_key(*n)).map(|n| seconds[n]).sum();
        let at = span.mul_f64(uniform(&mut rng) * left / total);
        let mut child = run(&killed, &[]).stderr(Stdio::null()).spawn().unwrap();
        std::thread::sleep(at);
        let mid_run = child.try_wait().unwrap().is_none();
        kills_mid_run += usize::from(mid_run);
        moments.push(format!("{:.3} s of {:.3} left: {}", at.as_secs_f64(), left / total * span.as_secs_f64(), if mid_run { "killed" } else { "had ended" }));
        child.kill().unwrap();
        child.wait().unwrap();
        // Nothing on disk is ever torn: every record parses and is its own key's.
        for (name, bytes) in records(&killed) {
            let r: beatmatch_core::RunRecord = serde_json::from_slice(&bytes).unwrap_or_else(|e| panic!("kill {k} (seed {seed}): {name} corrupt: {e}"));
            assert_eq!(format!("{}.json", r.hash), name);
        }
    }
    assert_eq!(kills_mid_run, 20, "kills that landed before the run ended: {moments:#?}");
    eprintln!("seed {seed}: {moments:#?}");
    ok(run(&killed, &[]).output().unwrap());
    assert_eq!(records(&killed), reference, "records differ from an uninterrupted run's");
    let n = trainings(&killed);
    assert!(n.values().all(|&c| c == 1), "records written twice: {:?}", n.iter().filter(|(_, &c)| c > 1).collect::<Vec<_>>());
    assert_eq!(report_bytes(&killed), report_bytes(&whole));
}

#[test]
fn slow_three_processes_and_two_shards_at_once_train_each_run_once() {
    let tmp = tempfile::tempdir().unwrap();
    let (single, shared) = (tmp.path().join("single"), tmp.path().join("shared"));
    ok(run(&single, &[]).output().unwrap());
    let children: Vec<_> =
        [&[][..], &[], &[], &["--shard", "1/2"], &["--shard", "2/2"]].iter().map(|extra| run(&shared, extra).stderr(Stdio::piped()).spawn().unwrap()).collect();
    let logs: Vec<String> = children.into_iter().map(|c| ok(c.wait_with_output().unwrap())).collect();
    assert_eq!(records(&shared), records(&single), "records differ from one process's");
    let n = trainings(&shared);
    assert_eq!(n.keys().map(|h| format!("{h}.json")).collect::<BTreeSet<_>>(), records(&single).into_keys().collect());
    assert!(n.values().all(|&c| c == 1), "runs trained twice: {:?}", n.iter().filter(|(_, &c)| c > 1).collect::<Vec<_>>());
    // The work was shared: more than one process trained something.
    let trained_by: BTreeSet<PathBuf> = beatmatch_suite::run_log::records_written(&shared).into_iter().map(|(_, log)| log).collect();
    assert!(trained_by.len() >= 2, "one process did everything: {logs:?}");
    // The two shards' assignments split the study.
    let shards = beatmatch_core::Store::at(&shared).shard_files();
    assert_eq!(shards.len(), 2);
    let (a, b): (BTreeSet<_>, BTreeSet<_>) = (shards[0].records.iter().collect(), shards[1].records.iter().collect());
    assert!(a.is_disjoint(&b) && !a.is_empty() && !b.is_empty());
    assert_eq!(a.len() + b.len(), records(&single).len());
    assert_eq!(report_bytes(&shared), report_bytes(&single));
    let status = ok_stdout(suite().arg("status").arg(&shared).output().unwrap());
    assert!(status.contains("shard 1/2") && status.contains("shard 2/2") && status.contains("0 pending, 0 failed"), "{status}");
}

fn ok_stdout(o: Output) -> String {
    let out = String::from_utf8_lossy(&o.stdout).to_string();
    assert!(o.status.success(), "{out}{}", String::from_utf8_lossy(&o.stderr));
    out
}

#[test]
fn slow_a_full_or_read_only_disk_is_a_clear_error_that_loses_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("store");
    for (fault, says) in [("enospc", "no space left on the device holding"), ("erofs", "is not writable")] {
        let _ = std::fs::remove_dir_all(&dir);
        // The manifest and a few records get through, then the disk "fills".
        let o = run(&dir, &[]).env("BEATMATCH_INJECT_WRITE_FAULT", format!("{fault}:9")).output().unwrap();
        let stderr = String::from_utf8_lossy(&o.stderr).to_string();
        assert_eq!(o.status.code(), Some(2), "{stderr}");
        assert!(stderr.contains(says) && stderr.contains(&format!("{}", dir.join("runs").display())), "{stderr}");
        let before = records(&dir);
        assert!(!before.is_empty(), "no record got through before the fault");
        for (name, bytes) in &before {
            serde_json::from_slice::<beatmatch_core::RunRecord>(bytes).unwrap_or_else(|e| panic!("{name}: {e}"));
        }
        // No temporary is left behind, and the rerun on a healthy disk keeps every earlier record.
        let temps = std::fs::read_dir(dir.join("runs")).unwrap().filter(|e| e.as_ref().unwrap().file_name().to_string_lossy().ends_with(".tmp")).count();
        assert_eq!(temps, 0);
        ok(run(&dir, &[]).output().unwrap());
        let after = records(&dir);
        assert!(before.iter().all(|(k, v)| after.get(k) == Some(v)));
    }
    // A manifest that cannot be written fails before any training.
    let _ = std::fs::remove_dir_all(&dir);
    let o = run(&dir, &[]).env("BEATMATCH_INJECT_WRITE_FAULT", "erofs:0").output().unwrap();
    let stderr = String::from_utf8_lossy(&o.stderr).to_string();
    assert!(!o.status.success() && stderr.contains("is not writable") && stderr.contains("study.json"), "{stderr}");
}

/// Rewrite the study in `dir` as if an older code version had planned and run it.
fn age(dir: &Path, version: &str) {
    let store = beatmatch_core::Store::at(dir);
    let mut study = store.read_study().unwrap();
    let mut renamed = BTreeMap::new();
    for hash in study.cells.iter().map(|c| c.record.clone()).collect::<BTreeSet<_>>() {
        let mut r = store.read_record(&hash).unwrap().unwrap();
        r.key.code_version = version.into();
        r.hash = r.key.hash();
        store.write_record(&r).unwrap();
        std::fs::remove_file(store.record_path(&hash)).unwrap();
        renamed.insert(hash, r.hash);
    }
    study.cells.iter_mut().for_each(|c| c.record = renamed[&c.record].clone());
    study.code_version = version.into();
    store.write_study(&study).unwrap();
}

#[test]
fn slow_mixed_code_versions_are_refused_unless_allowed_and_gc_lists_the_unreferenced() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("store");
    ok(run(&dir, &[]).output().unwrap());
    age(&dir, "beatmatch-0.0.1+sem1");
    // Half the older records are lost: those runs are retrained under this version.
    let old = records(&dir);
    for name in old.keys().step_by(2) {
        std::fs::remove_file(dir.join("runs").join(name)).unwrap();
    }
    let o = run(&dir, &[]).output().unwrap();
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(
        !o.status.success() && stderr.contains("beatmatch-0.0.1+sem1") && stderr.contains(&beatmatch_core::code_version()) && stderr.contains("--allow-mixed"),
        "{stderr}"
    );
    ok(run(&dir, &["--allow-mixed"]).output().unwrap());
    let o = report(&dir, &[]);
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success() && stderr.contains("2 code versions") && stderr.contains("beatmatch-0.0.1+sem1"), "{stderr}");
    ok(report(&dir, &["--allow-mixed"]));
    let summary = std::fs::read_to_string(dir.join("summary.md")).unwrap();
    assert!(summary.contains("Mixed code versions"), "{summary}");
    let status = ok_stdout(suite().arg("status").arg(&dir).output().unwrap());
    assert!(status.contains("mixed: records of 2 code versions") && status.contains("0 pending"), "{status}");

    // gc: a stray record of no study is listed, then removed; the study's records stay.
    let stray = dir.join("runs/0000stray.json");
    std::fs::write(&stray, b"{}").unwrap();
    let listed = ok_stdout(suite().arg("gc").arg(&dir).output().unwrap());
    assert!(listed.contains("1 unreferenced record files") && listed.contains("0000stray.json"), "{listed}");
    assert!(stray.exists());
    let kept = records(&dir).len() - 1;
    ok(suite().arg("gc").arg(&dir).arg("--delete").output().unwrap());
    assert!(!stray.exists() && records(&dir).len() == kept);
    ok(report(&dir, &["--allow-mixed"]));

    // A record of a schema this build cannot read is an error naming the file and both versions.
    let (name, bytes) = records(&dir).into_iter().next().unwrap();
    let text = String::from_utf8(bytes).unwrap().replacen("\"schema_version\": 1", "\"schema_version\": 7", 1);
    std::fs::write(dir.join("runs").join(&name), text).unwrap();
    let o = report(&dir, &["--allow-mixed"]);
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success() && stderr.contains(&name) && stderr.contains("schema version 7") && stderr.contains("reads version 1"), "{stderr}");
}

/// Run `script` (a shipped deploy file) with a scheduler's environment and `suite` on PATH.
fn with_path(c: &mut Command) -> &mut Command {
    let bin = Path::new(env!("CARGO_BIN_EXE_suite")).parent().unwrap().to_path_buf();
    c.env("PATH", format!("{}:{}", bin.display(), std::env::var("PATH").unwrap_or_default()))
}

#[test]
fn slow_the_shipped_slurm_and_kubernetes_files_shard_a_study() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let tmp = tempfile::tempdir().unwrap();
    let single = tmp.path().join("single");
    let mut c = suite();
    ok(c.args(["run", "--tier", "smoke", "-q", "--no-report", "--out"]).arg(&single).output().unwrap());

    // Slurm: the array script, once per array task, as sbatch would start them (ids 1..=3).
    let slurm = tmp.path().join("slurm");
    for id in 1..=3 {
        let mut c = Command::new("bash");
        with_path(&mut c)
            .arg(root.join("deploy/slurm/suite-array.sbatch"))
            .arg("smoke")
            .env("BEATMATCH_STORE", &slurm)
            .env("SLURM_ARRAY_TASK_ID", id.to_string())
            .env("SLURM_ARRAY_TASK_MIN", "1")
            .env("SLURM_ARRAY_TASK_COUNT", "3")
            .env("SLURM_CPUS_PER_TASK", "1");
        ok(c.output().unwrap());
    }
    assert_eq!(records(&slurm.join("smoke")), records(&single));
    assert_eq!(beatmatch_core::Store::at(&slurm.join("smoke")).shard_files().len(), 3);

    // Kubernetes: the Indexed Job's container command, with the index the Job controller sets.
    let yaml: serde_yaml::Value = serde_yaml::from_str(&std::fs::read_to_string(root.join("deploy/k8s/suite-indexed-job.yaml")).unwrap()).unwrap();
    let spec = &yaml["spec"];
    assert_eq!(spec["completionMode"].as_str(), Some("Indexed"));
    let completions = spec["completions"].as_u64().unwrap();
    let container = &spec["template"]["spec"]["containers"][0];
    let mount = container["volumeMounts"][0]["mountPath"].as_str().unwrap();
    let args: Vec<String> = container["args"].as_sequence().unwrap().iter().map(|a| a.as_str().unwrap().to_string()).collect();
    let k8s = tmp.path().join("k8s");
    let args: Vec<String> = args.iter().map(|a| a.replace(mount, &k8s.display().to_string()).replace("--tier=cpu", "--tier=smoke")).collect();
    assert!(args.iter().any(|a| a == &format!("--shards={completions}")), "{args:?}");
    for index in 0..completions {
        let mut c = suite();
        ok(c.args(&args).env("JOB_COMPLETION_INDEX", index.to_string()).output().unwrap());
    }
    let out = k8s.join("cpu");
    assert_eq!(records(&out), records(&single));
    assert_eq!(beatmatch_core::Store::at(&out).shard_files().len() as u64, completions);
}

#[test]
fn a_shard_index_without_its_count_is_an_error() {
    let tmp = tempfile::tempdir().unwrap();
    let o = run(tmp.path(), &[]).env("JOB_COMPLETION_INDEX", "2").output().unwrap();
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success() && stderr.contains("JOB_COMPLETION_INDEX") && stderr.contains("--shards"), "{stderr}");
    let o = run(tmp.path(), &["--shard", "3/2"]).output().unwrap();
    assert!(!o.status.success() && String::from_utf8_lossy(&o.stderr).contains("numbered 1 to N"));
}

#[test]
fn slow_a_stopped_holder_is_taken_over_and_trains_at_most_its_one_claimed_run_twice() {
    // The bound of the claims' guarantee: a live process that misses its heartbeats for a whole
    // TTL (here SIGSTOP) loses its claim; with one worker and populations of one it holds one
    // run at a time, so at most that run is trained twice — with the same bytes.
    let tmp = tempfile::tempdir().unwrap();
    let (single, shared) = (tmp.path().join("single"), tmp.path().join("shared"));
    ok(run(&single, &[]).output().unwrap());
    let ttl = [("BEATMATCH_CLAIM_TTL_SECS", "2")];
    let mut a = run(&shared, &[]).envs(ttl).stderr(Stdio::null()).spawn().unwrap();
    let signal = |sig: &str| assert!(Command::new("kill").args([sig, &a.id().to_string()]).status().unwrap().success());
    // A run group claim of A's (not the manifest lock), once A has recorded something.
    let pid = format!("\"pid\":{}", a.id());
    let held = || -> Option<PathBuf> {
        std::fs::read_dir(shared.join("claims")).ok()?.map(|e| e.unwrap().path()).find(|p| {
            let name = p.file_name().unwrap().to_string_lossy().to_string();
            name.ends_with(".claim") && !name.starts_with("study.") && std::fs::read_to_string(p).is_ok_and(|t| t.contains(&pid))
        })
    };
    let t0 = Instant::now();
    loop {
        assert!(t0.elapsed().as_secs() < 60, "A never held a claim while stopped");
        match held() {
            Some(claim) if !records(&shared).is_empty() => {
                signal("-STOP");
                if claim.exists() {
                    break;
                }
                signal("-CONT");
            }
            _ => std::thread::sleep(std::time::Duration::from_millis(1)),
        }
    }
    let b = ok(run(&shared, &[]).envs(ttl).output().unwrap());
    signal("-CONT");
    assert!(a.wait().unwrap().success());
    assert_eq!(records(&shared), records(&single), "records differ from one process's: {b}");
    let twice: Vec<String> = trainings(&shared).into_iter().filter(|(_, c)| *c > 1).map(|(h, _)| h).collect();
    assert!(twice.len() <= 1, "trained twice: {twice:?}");
    eprintln!("runs trained twice after the takeover: {}", twice.len());
    let logs: String = std::fs::read_dir(shared.join("logs")).unwrap().map(|e| std::fs::read_to_string(e.unwrap().path()).unwrap()).collect();
    assert!(logs.contains("taken over from"), "no takeover logged:\n{logs}");
}
