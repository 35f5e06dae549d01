//! `suite meta-train` as a user runs it: killed with SIGKILL mid-run and started again, it
//! ends with the same bytes as a run never interrupted.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

fn suite() -> Command {
    Command::new(env!("CARGO_BIN_EXE_suite"))
}

/// The meta crate's tiny test registry (MNIST-1D only).
const REGISTRY: &str = include_str!("../../meta/tests/common/registry.yaml");

const RECIPE: &str = "name: killed
architecture: small_fc
init: { seed: 1 }
estimator: full_es
pairs: 4
outer_steps: 40
unroll: { min: 20, max: 60 }
tasks: { ids: [logreg.mnist1d.b32.s40] }
validation: { tasks: [mlp-w8-d1-relu.mnist1d.b32.s30], every: 5 }
outer: { lr: 0.01, warmup: 5 }
checkpoint_every: 4
seed: 2
";

fn meta_train(dir: &Path, out: &Path) -> Command {
    let mut c = suite();
    c.args(["meta-train", "--progress", "lines", "--jobs", "2", "--recipe"])
        .arg(dir.join("recipe.yaml"))
        .arg("--out")
        .arg(out)
        .arg("--registry")
        .arg(dir.join("registry"));
    c
}

#[test]
fn meta_train_killed_with_sigkill_resumes_to_the_same_bytes() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("registry")).unwrap();
    std::fs::write(dir.path().join("registry/r.yaml"), REGISTRY).unwrap();
    std::fs::write(dir.path().join("recipe.yaml"), RECIPE).unwrap();
    let (whole, killed) = (dir.path().join("whole"), dir.path().join("killed"));
    let o = meta_train(dir.path(), &whole).output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let log = std::fs::read_to_string(whole.join("meta-train.log")).unwrap();
    assert!(log.contains("outer step 40/40") && log.contains("inner steps/s"), "{log}");
    assert!(whole.join("meta_loss.png").exists());

    // Kill once a few checkpoints exist but before the end.
    let mut child = meta_train(dir.path(), &killed).stderr(std::process::Stdio::null()).spawn().unwrap();
    let t0 = Instant::now();
    while !killed.join("checkpoints/step-000012.safetensors").exists() {
        assert!(t0.elapsed() < Duration::from_secs(120), "no checkpoint after two minutes");
        std::thread::sleep(Duration::from_millis(5));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(!killed.join("final.safetensors").exists(), "killed too late to test anything");
    let o = meta_train(dir.path(), &killed).output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(String::from_utf8_lossy(&o.stderr).contains("resuming after outer step"));
    for f in ["final.safetensors", "final.yaml", "best.safetensors", "best.yaml", "meta_loss.csv", "state.json", "checkpoints/step-000040.safetensors"] {
        assert_eq!(std::fs::read(whole.join(f)).unwrap(), std::fs::read(killed.join(f)).unwrap(), "{f}");
    }
}
