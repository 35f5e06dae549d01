//! The step protocol's per-step overhead (draft): a worker that does nothing, on the quick
//! tier's largest MLP shapes (784-256-256-10) and on one 4-float tensor, against the native
//! Adam step on the same shapes, in the same run.
//!
//! `BEATMATCH_PYTHON=PY cargo run --release --example protocol_overhead`

use beatmatch_core::{OptimizerSpec, ParamInfo};
use beatmatch_suite::foreign::worker::{Spec, Worker};
use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

fn main() {
    let py = std::env::var("BEATMATCH_PYTHON").unwrap_or_else(|_| "python3".into());
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let mlp = vec![
        ParamInfo::new("w0", vec![784, 256]),
        ParamInfo::new("b0", vec![256]),
        ParamInfo::new("w1", vec![256, 256]),
        ParamInfo::new("b1", vec![256]),
        ParamInfo::new("w2", vec![256, 10]),
        ParamInfo::new("b2", vec![10]),
    ];
    let tiny = vec![ParamInfo::new("w", vec![2, 2])];
    println!("ISA {}", beatmatch_core::simd::isa());
    for (label, infos) in [("784-256-256-10", &mlp), ("one 2×2 tensor", &tiny)] {
        let mut values: Vec<Vec<f32>> = infos.iter().map(|p| vec![0.1; p.numel()]).collect();
        let grads: Vec<Vec<f32>> = infos.iter().map(|p| vec![0.01; p.numel()]).collect();
        let tmp = tempfile::tempdir().unwrap();
        let file = root.join("python/examples/noop.py");
        let hyper = BTreeMap::new();
        let mut cmd = Command::new(&py);
        cmd.args(["-m", "beatmatch_worker"]).env("PYTHONPATH", root.join("python"));
        let spec = Spec {
            file: &file,
            factory: "make",
            hyperparameters: &hyper,
            horizon: 1000,
            members: 1,
            tensors: infos,
            shm: tmp.path().join("o.shm"),
            timeout: Duration::from_secs(30),
        };
        let mut w = Worker::start(cmd, &spec).unwrap();
        let n = 2000;
        let t0 = Instant::now();
        for step in 0..n {
            let mut p: Vec<Vec<&mut [f32]>> = vec![values.iter_mut().map(|v| v.as_mut_slice()).collect()];
            let g: Vec<Vec<&[f32]>> = vec![grads.iter().map(|v| v.as_slice()).collect()];
            w.step(step, &[1.0], &mut p, &g).unwrap();
        }
        let proto = t0.elapsed().as_secs_f64() / n as f64;
        let mut adam = beatmatch_baselines::build(&OptimizerSpec::parse("adam:lr=1e-3").unwrap(), infos).unwrap();
        let t0 = Instant::now();
        for step in 0..n {
            let mut p: Vec<&mut [f32]> = values.iter_mut().map(|v| v.as_mut_slice()).collect();
            let g: Vec<&[f32]> = grads.iter().map(|v| v.as_slice()).collect();
            adam.step(&mut p, &g, &beatmatch_core::StepContext { step, num_steps: 1000, losses: &[1.0] });
        }
        let native = t0.elapsed().as_secs_f64() / n as f64;
        println!("{label}: no-op worker {:.1} µs per step, native Adam {:.1} µs ({:.2}×)", proto * 1e6, native * 1e6, proto / native);
    }
}
