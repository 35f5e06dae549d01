//! Update throughput of every optimizer in parameters per second at 1e4, 1e6 and 1e7
//! parameters, next to a plain copy of the same parameter buffer (`memcpy`) measured in the
//! same run, so each optimizer's distance from the memory-bandwidth bound is a ratio.
//!
//! `cargo bench -p beatmatch-baselines --bench update_throughput`

use beatmatch_baselines::build;
use beatmatch_core::{OptimizerSpec, ParamInfo, StepContext};
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use std::hint::black_box;

const OPTIMIZERS: [&str; 8] = [
    "sgdm:lr=1e-2",
    "adam:lr=1e-3",
    "adamw:lr=1e-3",
    "nadamw:lr=1e-3,constant_fraction=0.5,warmup_fraction=0.1",
    "rmsprop:lr=1e-3",
    "adafactor:lr=1e-2",
    "lion:lr=1e-4",
    "sgdm:lr=1e-2,momentum=0",
];

fn bench(c: &mut Criterion) {
    for &n in &[10_000usize, 1_000_000, 10_000_000] {
        // One [n/1000, 1000] matrix: Adafactor factors it from 1e6 parameters up.
        let info = [ParamInfo::new("w", vec![n / 1000, 1000])];
        let mut params = vec![0.1f32; n];
        let grads: Vec<f32> = (0..n).map(|i| ((i % 97) as f32 - 48.0) * 1e-3).collect();
        let mut g = c.benchmark_group(format!("update_{n}"));
        g.throughput(Throughput::Elements(n as u64));
        if n >= 10_000_000 {
            g.sample_size(10);
        }
        let mut copy = vec![0f32; n];
        g.bench_function("memcpy", |b| b.iter(|| copy.copy_from_slice(black_box(&params))));
        for text in OPTIMIZERS {
            let spec = OptimizerSpec::parse(text).unwrap();
            let mut opt = build(&spec, &info).unwrap();
            let mut step = 0u64;
            g.bench_with_input(BenchmarkId::from_parameter(text), &(), |b, _| {
                b.iter(|| {
                    let mut p = [params.as_mut_slice()];
                    opt.step(&mut p, &[grads.as_slice()], &StepContext { step, num_steps: 1_000_000, losses: &[1.0] });
                    step += 1;
                })
            });
        }
        g.finish();
    }
}

criterion_group! { name = benches; config = Criterion::default().measurement_time(std::time::Duration::from_secs(3)).warm_up_time(std::time::Duration::from_secs(1)); targets = bench }
criterion_main!(benches);
