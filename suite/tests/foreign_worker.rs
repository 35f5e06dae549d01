//! The step protocol end to end (draft): the Python worker in `python/` runs a numpy Adam on
//! the `optax_adam` fixture through `foreign::worker`, two members, and matches the reference
//! after every step; the members stay bit-identical. Needs a Python with numpy
//! (`BEATMATCH_PYTHON`, else `python3`); without one the test says so and checks nothing.

use beatmatch_suite::foreign::worker::{Spec, Worker};
use beatmatch_testkit::{fixtures_dir, Case};
use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

fn python() -> Option<String> {
    let py = std::env::var("BEATMATCH_PYTHON").unwrap_or_else(|_| "python3".into());
    let ok = Command::new(&py).args(["-c", "import numpy"]).output().is_ok_and(|o| o.status.success());
    ok.then_some(py)
}

#[test]
fn numpy_adam_through_the_protocol_matches_optax() {
    let Some(py) = python() else {
        eprintln!("SKIPPED: no Python with numpy (set BEATMATCH_PYTHON)");
        return;
    };
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let case = Case::load(&fixtures_dir(), "optax_adam");
    let infos = case.params();
    let tmp = tempfile::tempdir().unwrap();
    let hyper: BTreeMap<String, f64> = [("lr".to_string(), 1e-3)].into();
    let file = root.join("python/examples/adam_numpy.py");
    let mut cmd = Command::new(py);
    cmd.args(["-m", "beatmatch_worker"]).env("PYTHONPATH", root.join("python"));
    let spec = Spec {
        file: &file,
        factory: "make",
        hyperparameters: &hyper,
        horizon: case.steps() as u64,
        members: 2,
        tensors: &infos,
        shm: tmp.path().join("w.shm"),
        timeout: Duration::from_secs(30),
    };
    let mut w = Worker::start(cmd, &spec).unwrap();
    assert!(w.ready["versions"]["numpy"].is_string(), "{}", w.ready);
    let mut values: Vec<Vec<Vec<f32>>> = (0..2).map(|_| infos.iter().map(|p| case.tensor(&format!("params/init/{}", p.name)).to_vec()).collect()).collect();
    for t in 0..case.steps() {
        let grads: Vec<Vec<&[f32]>> = (0..2).map(|_| infos.iter().map(|p| case.tensor(&format!("grads/{t}/{}", p.name))).collect()).collect();
        let mut params: Vec<Vec<&mut [f32]>> = values.iter_mut().map(|m| m.iter_mut().map(|v| v.as_mut_slice()).collect()).collect();
        w.step(t as u64, &[1.0, 1.0], &mut params, &grads).unwrap();
        for (p, got) in infos.iter().zip(&values[0]) {
            let want = case.tensor(&format!("params/after/{t}/{}", p.name));
            let scale = want.iter().fold(1e-30f32, |m, x| m.max(x.abs()));
            let err = got.iter().zip(want).fold(0f32, |m, (a, b)| m.max((a - b).abs())) / scale;
            assert!(err <= 1e-5, "step {t} {}: {err}", p.name);
        }
        assert_eq!(values[0], values[1], "step {t}: members differ");
    }
}

#[test]
fn a_missing_file_and_a_missing_factory_are_the_workers_clear_errors() {
    let Some(py) = python() else {
        eprintln!("SKIPPED: no Python with numpy (set BEATMATCH_PYTHON)");
        return;
    };
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let infos = [beatmatch_core::ParamInfo::new("w", vec![2, 2])];
    let tmp = tempfile::tempdir().unwrap();
    let hyper = BTreeMap::new();
    for (file, factory, expect) in [("nope.py", "make", "no such file"), ("python/examples/adam_numpy.py", "build", "no callable `build`")] {
        let mut cmd = Command::new(&py);
        cmd.args(["-m", "beatmatch_worker"]).env("PYTHONPATH", root.join("python"));
        let file = root.join(file);
        let spec = Spec {
            file: &file,
            factory,
            hyperparameters: &hyper,
            horizon: 1,
            members: 1,
            tensors: &infos,
            shm: tmp.path().join("e.shm"),
            timeout: Duration::from_secs(30),
        };
        let e = Worker::start(cmd, &spec).err().expect("refused").to_string();
        assert!(e.contains(expect) && e.contains("hello"), "{e}");
    }
}
