//! Adam's host update before and after its first bias correction has rounded to 1 (step 165 at
//! β₁ = 0.9), from which on the update skips that division: microseconds per update of steps
//! 1–150 and of steps 201–350 of the same optimizer in one run, and their ratio, for a
//! population's parameters as the cpu tier meets them. Best of 5 fresh optimizers, with
//! subnormals flushed as in training.
//!
//! `cargo bench -p beatmatch-baselines --bench adam_late_steps`

use beatmatch_core::{OptimizerSpec, ParamInfo, StepContext};
use std::time::Instant;

/// Seconds per step of steps `steps` (0-based).
fn time_steps(opt: &mut dyn beatmatch_core::Optimizer, w: &mut [f32], g: &[f32], losses: &[f32], steps: std::ops::Range<u64>) -> f64 {
    let n = steps.end - steps.start;
    let start = Instant::now();
    for step in steps {
        opt.step(&mut [&mut *w], &[g], &StepContext { step, num_steps: 1_000_000, losses });
    }
    start.elapsed().as_secs_f64() / n as f64
}

fn main() {
    let _flush = beatmatch_core::simd::FlushDenormals::new();
    // (parameters a member, members): a 30-member sweep of a 32-wide MLP, 15 members of a
    // 128-wide two-layer MLP, one and three members of the 256-wide three-layer MLP.
    for (numel, members) in [(1_642usize, 30usize), (23_050, 15), (145_000, 1), (145_000, 3)] {
        let infos = vec![ParamInfo::new("w", vec![numel])];
        let specs: Vec<OptimizerSpec> = (0..members).map(|_| OptimizerSpec::new("adam").with("lr", 1e-3)).collect();
        let g: Vec<f32> = (0..numel * members).map(|i| (i % 13) as f32 * 0.01 - 0.05).collect();
        let losses = vec![1.0f32; members];
        let (mut early, mut late) = (f64::INFINITY, f64::INFINITY);
        for _ in 0..5 {
            let mut opt = beatmatch_baselines::build_members(&specs, &infos).unwrap();
            let mut w = vec![0.1f32; numel * members];
            early = early.min(time_steps(opt.as_mut(), &mut w, &g, &losses, 0..150));
            time_steps(opt.as_mut(), &mut w, &g, &losses, 150..200);
            late = late.min(time_steps(opt.as_mut(), &mut w, &g, &losses, 200..350));
        }
        println!(
            "{members:2} members × {numel:7} params: steps 1–150 {:8.1} µs, steps 201–350 {:8.1} µs, ratio {:.2} ({})",
            early * 1e6,
            late * 1e6,
            early / late,
            beatmatch_core::simd::isa()
        );
    }
}
