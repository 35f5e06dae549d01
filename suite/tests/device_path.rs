//! The device path (`--device cpu-device`: the device optimizers and candle's models on the
//! CPU, device populations where the family batches members) against the host path (`--device
//! cpu`: the native dense engine and populations) on the whole smoke tier: every run ends the
//! same way, every curve agrees to float rounding until chaotic runs amplify it, and the
//! report reaches the same verdicts; and on the device path whole-group populations write the
//! same record bytes as `--population 1`.

use serde_json::Value;
use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

fn run_smoke(out: &Path, device: &str, extra: &[&str]) {
    let o = Command::new(env!("CARGO_BIN_EXE_suite"))
        .args(["run", "--tier", "smoke", "-q", "--device", device])
        .args(extra)
        .arg("--out")
        .arg(out)
        .output()
        .unwrap();
    assert!(o.status.success(), "suite run --device {device} failed: {}", String::from_utf8_lossy(&o.stderr));
}

/// Records by everything in their key but the device.
fn records(dir: &Path) -> BTreeMap<String, Value> {
    let mut out = BTreeMap::new();
    for e in std::fs::read_dir(dir.join("runs")).unwrap() {
        let p = e.unwrap().path();
        if p.extension().is_none_or(|x| x != "json") || p.to_string_lossy().ends_with(".timing.json") {
            continue;
        }
        let r: Value = serde_json::from_slice(&std::fs::read(&p).unwrap()).unwrap();
        let k = &r["key"];
        let id = format!("{} {} seed {} steps {} horizon {}", k["problem_id"], k["optimizer"], k["seed"], k["steps"], k["horizon"]);
        out.insert(id, r);
    }
    out
}

fn csv(dir: &Path) -> Vec<BTreeMap<String, String>> {
    let text = std::fs::read_to_string(dir.join("tasks.csv")).unwrap();
    let mut lines = text.lines();
    let header: Vec<&str> = lines.next().unwrap().split(',').collect();
    // Quoted fields hold commas; the columns compared here come before any of them or are
    // unquoted, so split the quoted ones out first.
    lines
        .map(|l| {
            let mut fields = Vec::new();
            let (mut cur, mut quoted) = (String::new(), false);
            for c in l.chars() {
                match c {
                    '"' => quoted = !quoted,
                    ',' if !quoted => fields.push(std::mem::take(&mut cur)),
                    c => cur.push(c),
                }
            }
            fields.push(cur);
            header.iter().map(|h| h.to_string()).zip(fields).collect()
        })
        .collect()
}

#[test]
fn slow_the_device_path_on_the_cpu_agrees_with_the_host_path_on_the_smoke_tier() {
    let tmp = tempfile::tempdir().unwrap();
    let (host, device) = (tmp.path().join("cpu"), tmp.path().join("cpu-device"));
    run_smoke(&host, "cpu", &[]);
    run_smoke(&device, "cpu-device", &[]);
    let one_by_one = tmp.path().join("cpu-device-1");
    run_smoke(&one_by_one, "cpu-device", &["--population", "1"]);
    let (a, b) = (records(&host), records(&device));
    let pop1 = records(&one_by_one);
    assert_eq!(pop1.keys().collect::<Vec<_>>(), b.keys().collect::<Vec<_>>());
    for (id, r) in &pop1 {
        assert_eq!(r, &b[id], "{id}: the device population's record differs from --population 1's");
    }
    assert_eq!(a.keys().collect::<Vec<_>>(), b.keys().collect::<Vec<_>>(), "the two paths planned different runs");
    assert!(a.len() >= 100, "only {} runs", a.len());
    for (id, x) in &a {
        let y = &b[id];
        assert_eq!(y["key"]["device"], "cpu-device");
        assert_eq!(x["status"]["kind"], y["status"]["kind"], "{id}: ended differently");
        // The native engine and candle sum their matrix products in different orders; runs at
        // the grid's largest learning rates amplify that rounding chaotically after a few
        // dozen steps, so the curves are compared tightly over the first 20 steps.
        for (p, q) in x["curve"].as_array().unwrap().iter().zip(y["curve"].as_array().unwrap()) {
            let (Some(l1), Some(l2)) = (p["train_loss"].as_f64(), q["train_loss"].as_f64()) else { continue };
            if p["step"].as_u64().unwrap() <= 20 {
                assert!((l1 - l2).abs() <= 1e-5 * l1.abs(), "{id} step {}: host {l1} vs device path {l2}", p["step"]);
            }
        }
    }
    let (ra, rb) = (csv(&host), csv(&device));
    assert_eq!(ra.len(), rb.len());
    for (x, y) in ra.iter().zip(&rb) {
        for col in ["task", "outcome", "tuned_config", "candidate.diverged_runs", "adam-lr15.diverged_runs", "sgdm-lr15.diverged_runs"] {
            assert_eq!(x[col], y[col], "{}: {col} differs", x["task"]);
        }
        let (l1, l2): (f64, f64) = (x["candidate_loss"].parse().unwrap(), y["candidate_loss"].parse().unwrap());
        assert!((l1 - l2).abs() <= 1e-5 * l1.abs(), "{}: candidate loss {l1} vs {l2}", x["task"]);
    }
}
