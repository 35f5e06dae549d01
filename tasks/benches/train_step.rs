//! One training step of MLP 784-256-256-10, batch 128, Adam, on CPU, next to the same step's
//! matrix products alone (gemm, single thread) measured in the same run: the ratio says how
//! far the step is from its FLOP floor.
//!
//! `cargo bench -p beatmatch-tasks --bench train_step` (add `--features system-alloc` to measure
//! glibc's allocator instead of mimalloc).

use beatmatch_core::OptimizerSpec;
use beatmatch_tasks::datasets::{Dataset, Layout};
use beatmatch_tasks::models::mlp::MlpConfig;
use beatmatch_tasks::models::{Activation, ModelConfig};
use beatmatch_tasks::train::{train, RunSettings};
use beatmatch_tasks::{DatasetName, Problem};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};

#[cfg(not(feature = "system-alloc"))]
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn synthetic_fashion() -> Dataset {
    // Random pixels: the step's cost does not depend on the values.
    let n = 2048;
    Dataset {
        layout: Layout::Examples,
        example_shape: vec![28, 28],
        num_classes: 10,
        train_x: (0..n * 784).map(|i| ((i * 2654435761usize) % 256) as f32 / 255.0).collect(),
        train_y: (0..n).map(|i| (i % 10) as u32).collect(),
        test_x: vec![0.0; 784],
        test_y: vec![0],
    }
}

fn bench(c: &mut Criterion) {
    std::env::set_var("RAYON_NUM_THREADS", "1");
    let problem =
        Problem::new(ModelConfig::Mlp(MlpConfig { width: 256, depth: 2, activation: Activation::Relu }), DatasetName::FashionMnist, 128, &[1_000_000]);
    let data = synthetic_fashion();
    let infos = problem.build_model().params().to_vec();
    let mut g = c.benchmark_group("mlp784-256-256-10_b128");
    let steps = 200u64;
    g.throughput(Throughput::Elements(steps)); // thrpt = steps per second
    g.bench_function("adam_train_step_x200", |b| {
        b.iter(|| {
            let opt = beatmatch_baselines::build(&OptimizerSpec::parse("adam:lr=1e-3").unwrap(), &infos).unwrap();
            let settings = RunSettings { device: &candle_core::Device::Cpu, seed: 0, steps, horizon: steps };
            train(&problem, &data, opt, settings, &mut |_| {}).unwrap()
        })
    });
    // The FLOP floor: forward (3 GEMMs) + backward (5 GEMMs: dW for 3 layers, dX for 2) per step.
    let shapes: [(usize, usize, usize); 8] =
        [(128, 784, 256), (128, 256, 256), (128, 256, 10), (784, 128, 256), (256, 128, 256), (256, 128, 10), (128, 10, 256), (128, 256, 256)];
    let bufs: Vec<(Vec<f32>, Vec<f32>, Vec<f32>)> = shapes.iter().map(|&(m, k, n)| (vec![0.5; m * k], vec![0.25; k * n], vec![0.0; m * n])).collect();
    let mut bufs = bufs;
    g.bench_function("gemm_only_x200", |b| {
        b.iter(|| {
            for _ in 0..steps {
                for (&(m, k, n), (a, bb, cc)) in shapes.iter().zip(bufs.iter_mut()) {
                    beatmatch_tasks::dense::sgemm(m, k, n, a, bb, cc);
                }
            }
        })
    });
    g.finish();
}

criterion_group! { name = benches; config = Criterion::default().sample_size(10).measurement_time(std::time::Duration::from_secs(8)); targets = bench }
criterion_main!(benches);
