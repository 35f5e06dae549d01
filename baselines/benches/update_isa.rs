//! The host update of the rules whose inner loop is a `core::simd` kernel, compiled for the
//! widest instruction set the CPU has against the baseline x86-64 build, interleaved in one
//! run (`core::simd::limit`): microseconds per update of a population and the ratio (baseline
//! ÷ widest; > 1: the wide build is faster). Both builds give the same bits (the fixtures'
//! tests run on each with `BEATMATCH_SIMD`). Shapes: a population's parameters as the cpu
//! tier meets them (30 members of a 1,642- and a 10,000-parameter model, 3 of a 145,000-one).
//!
//! `cargo bench -p beatmatch-baselines --bench update_isa`

use beatmatch_core::{OptimizerSpec, ParamInfo, StepContext};
use std::time::Instant;

const RULES: [&str; 2] = ["adam", "adamw"];

fn main() {
    let widest = beatmatch_core::simd::isa();
    println!("isa: {widest} against baseline");
    for rule in RULES {
        for (numel, members) in [(1_642usize, 30usize), (10_000, 30), (145_000, 3)] {
            let infos = vec![ParamInfo::new("w", vec![numel])];
            let specs: Vec<OptimizerSpec> = (0..members).map(|_| OptimizerSpec::new(rule).with("lr", 1e-3)).collect();
            let mut opt = beatmatch_baselines::build_members(&specs, &infos).unwrap();
            let mut w = vec![0.1f32; numel * members];
            let g: Vec<f32> = (0..numel * members).map(|i| (i % 13) as f32 * 0.01 - 0.05).collect();
            let losses = vec![1.0f32; members];
            let calls = 20_000_000 / (numel * members);
            let mut best = [f64::INFINITY; 2]; // [baseline, widest]
                                               // A B B A A B: neither build comes first more often (a shared core drifts).
            for round in 0..6 {
                let wide = (round + round / 2) % 2;
                beatmatch_core::simd::limit(if wide == 1 { widest } else { "baseline" }).unwrap();
                let start = Instant::now();
                for step in 0..calls {
                    opt.step(&mut [&mut w], &[&g], &StepContext { step: step as u64, num_steps: 1_000_000, losses: &losses });
                }
                best[wide] = best[wide].min(start.elapsed().as_secs_f64() / calls as f64);
            }
            beatmatch_core::simd::limit(widest).unwrap();
            println!(
                "{rule:6} {members:2} members × {numel:7} params: baseline {:8.1} µs, {widest} {:8.1} µs, ratio {:.2}",
                best[0] * 1e6,
                best[1] * 1e6,
                best[0] / best[1]
            );
        }
    }
}
