//! The device path on candle's CPU device: a sweep of 30 Adam members (30 learning rates, one
//! seed; MNIST-1D's dense shapes and the peer's smallest ConvNet, LSTM and Transformer) trained
//! one run at a time (what the device path did before device populations) and
//! as one device population (one forward and backward pass, Adam's fused kernel over all 30),
//! back to back in one run; run-steps per second and their ratio.
//! On a GPU the same comparison is `ci/gpu/verify.sh`'s smoke rows.
//!
//! `cargo bench -p beatmatch-tasks --bench device_population [-- SHAPE_FILTER]`; pin it to one
//! core (`taskset -c 0`) to compare with the host engine's `population` bench.

use beatmatch_core::OptimizerSpec;
use beatmatch_tasks::device_population::DevicePopulation;
use beatmatch_tasks::models::conv::ConvConfig;
use beatmatch_tasks::models::logreg::Logreg;
use beatmatch_tasks::models::lstm::LstmConfig;
use beatmatch_tasks::models::mlp::MlpConfig;
use beatmatch_tasks::models::transformer::TransformerConfig;
use beatmatch_tasks::models::{Activation, ModelConfig, Pooling};
use beatmatch_tasks::population::{MemberPlan, Members, OptimizerGroup};
use beatmatch_tasks::{DatasetName, InnerRun, Problem, RunSettings};
use candle_core::Device;
use std::time::Instant;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn adam(lr: f64, problem: &Problem) -> Box<dyn beatmatch_core::Optimizer> {
    let infos = problem.build_model().params().to_vec();
    beatmatch_baselines::build_on(&[OptimizerSpec::new("adam").with("lr", lr)], &infos, &Device::Cpu).unwrap()
}

fn main() {
    // One thread, as the suite runs candle (candle's elementwise ops would otherwise spin a
    // second thread on large tensors: populations', not single runs').
    std::env::set_var("RAYON_NUM_THREADS", "1");
    let filter = std::env::args().skip(1).find(|a| !a.starts_with('-'));
    println!("{{\"isa\": \"{}\", \"threads\": 1}}", beatmatch_core::simd::isa());
    let mlp = |width, depth| ModelConfig::Mlp(MlpConfig { width, depth, activation: Activation::Relu });
    let lstm = ModelConfig::Lstm(LstmConfig { hidden: 32, layers: 1, context: 32 });
    let transformer = ModelConfig::Transformer(TransformerConfig { d_model: 32, layers: 1, heads: 2, context: 32 });
    // (shape, model, dataset, batch, steps per run)
    let shapes = [
        ("logreg.mnist1d.b32", ModelConfig::Logreg(Logreg {}), DatasetName::Mnist1d, 32, 200),
        ("mlp-w32-d1-relu.mnist1d.b128", mlp(32, 1), DatasetName::Mnist1d, 128, 200),
        ("mlp-w128-d2-relu.mnist1d.b128", mlp(128, 2), DatasetName::Mnist1d, 128, 200),
        ("lstm-h32-l1-t32.moby_dick.b32", lstm, DatasetName::MobyDick, 32, 20),
        ("transformer-d32-l1-h2-t32.moby_dick.b32", transformer, DatasetName::MobyDick, 32, 20),
        ("conv-c8-d1-max.digits.b64", ModelConfig::Conv(ConvConfig { channels: 8, depth: 1, pooling: Pooling::Max }), DatasetName::Digits, 64, 50),
    ];
    let lrs: Vec<f64> = (0..30).map(|i| 1e-4 * 1.3f64.powi(i)).collect();
    for (name, model, dataset, batch, steps) in shapes {
        if filter.as_deref().is_some_and(|f| !name.contains(f)) {
            continue;
        }
        let problem = Problem::new(model, dataset, batch, &[1_000_000]);
        let data = problem.dataset.load().unwrap();
        // One by one: each member's run alone on the device path (measurements only at the start).
        let start = Instant::now();
        for &lr in &lrs {
            let mut run = InnerRun::new(&problem, &data, adam(lr, &problem), RunSettings { device: &Device::Cpu, seed: 0, steps, horizon: steps }).unwrap();
            run.advance(steps - 1).unwrap();
        }
        let one_by_one = 30.0 * (steps - 1) as f64 / start.elapsed().as_secs_f64();
        let start = Instant::now();
        let infos = problem.build_model().params().to_vec();
        let specs: Vec<OptimizerSpec> = lrs.iter().map(|&lr| OptimizerSpec::new("adam").with("lr", lr)).collect();
        let optimizer = beatmatch_baselines::build_on(&specs, &infos, &Device::Cpu).unwrap();
        let plans = vec![MemberPlan { steps, horizon: steps }; 30];
        let mut pop = DevicePopulation::new(&problem, &data, 0, &Device::Cpu, &plans, vec![OptimizerGroup { optimizer, members: 0..30 }]).unwrap();
        pop.advance(steps - 1).unwrap();
        let population = 30.0 * (steps - 1) as f64 / start.elapsed().as_secs_f64();
        println!(
            "{{\"shape\": \"{name}\", \"one_by_one_run_steps_per_s\": {one_by_one:.0}, \"population_run_steps_per_s\": {population:.0}, \"ratio\": {:.2}}}",
            population / one_by_one
        );
    }
}
