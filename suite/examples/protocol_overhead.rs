//! The step protocol's per-step overhead: what the suite spends on a worker that does nothing
//! (`python/examples/noop.py`), through the same `Optimizer` the training loop drives, on every
//! model shape of the quick tier, against the native Adam step on the same shapes in the same
//! run.
//!
//! `BEATMATCH_PYTHON=PY cargo run --release --example protocol_overhead`

use beatmatch_core::{Buffers, Optimizer, OptimizerSpec, ParamInfo, StepContext};
use beatmatch_suite::factory::OptimizerFactory;
use beatmatch_tasks::registry::{embedded, select};
use beatmatch_tasks::Tier;
use std::collections::BTreeMap;
use std::path::Path;
use std::time::Instant;

/// Seconds per step of `opt` over `n` steps.
fn per_step(opt: &mut dyn Optimizer, infos: &[ParamInfo], n: u64) -> f64 {
    let mut values: Vec<Vec<f32>> = infos.iter().map(|p| vec![0.1; p.numel()]).collect();
    let grads: Vec<Vec<f32>> = infos.iter().map(|p| vec![0.01; p.numel()]).collect();
    let g: Vec<&[f32]> = grads.iter().map(Vec::as_slice).collect();
    let mut step = |t: u64| {
        let mut p: Vec<&mut [f32]> = values.iter_mut().map(Vec::as_mut_slice).collect();
        opt.update(Buffers::Host { params: &mut p, grads: &g }, &StepContext { step: t, num_steps: n + 10, losses: &[1.0] }).unwrap();
    };
    // The first step starts the worker; it is not the protocol's cost.
    step(0);
    let t0 = Instant::now();
    for t in 1..=n {
        step(t);
    }
    t0.elapsed().as_secs_f64() / n as f64
}

fn main() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let mut factory = OptimizerFactory::default();
    factory.worker_dir = Some(dir.path().to_path_buf());
    let noop = Path::new(env!("CARGO_MANIFEST_DIR")).join("../python/examples/noop.py");
    let spec = factory.parse_candidate(&format!("python:{}", noop.display()))?;
    let adam = OptimizerSpec::parse("adam:lr=1e-3")?;
    // The quick tier's distinct shapes, by model.
    let mut shapes: BTreeMap<String, Vec<ParamInfo>> = BTreeMap::new();
    for t in select(&embedded()?, Tier::Quick) {
        let infos = t.problem.build_model().params().to_vec();
        shapes.entry(format!("{}.{}", t.problem.model.id(), t.problem.dataset)).or_insert(infos);
    }
    shapes.insert("one 2×2 tensor".into(), vec![ParamInfo::new("w", vec![2, 2])]);
    println!("ISA {}; {} with a no-op worker against native Adam, per step", beatmatch_core::simd::isa(), noop.display());
    println!("| model | params | no-op worker (µs) | native Adam (µs) | worker / Adam |");
    println!("|---|---:|---:|---:|---:|");
    for (model, infos) in &shapes {
        let params: usize = infos.iter().map(ParamInfo::numel).sum();
        let n = if params > 100_000 { 1000 } else { 3000 };
        factory.check(&spec, infos)?;
        let proto = per_step(factory.build(&spec, infos)?.as_mut(), infos, n);
        let native = per_step(factory.build(&adam, infos)?.as_mut(), infos, n);
        println!("| {model} | {params} | {:.1} | {:.1} | {:.2} |", proto * 1e6, native * 1e6, proto / native);
    }
    Ok(())
}
