//! Learned-optimizer update cost next to Adam's, in parameters per second at 1e4, 1e6 and 1e7
//! parameters, and the overhead per training step on MLP 784-256-256-10 (batch 128): each
//! optimizer's update time next to the forward+backward time of the same model, measured in
//! the same run, so overhead = update ÷ fwd+bwd.
//!
//! `cargo bench -p beatmatch-learned --bench lopt_update`

use beatmatch_core::{Optimizer, OptimizerSpec, ParamInfo, StepContext};
use beatmatch_learned::checkpoint;
use beatmatch_tasks::models::{Activation, ModelConfig};
use candle_core::{Device, Tensor, Var};
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use rand::SeedableRng;
use std::path::Path;
use std::time::Duration;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn optimizers(params: &[ParamInfo]) -> Vec<(&'static str, Box<dyn Optimizer>)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../testdata/fixtures");
    let load = |f: &str| checkpoint::load(&dir.join(f), None).unwrap();
    vec![
        ("adam", beatmatch_baselines::build(&OptimizerSpec::parse("adam:lr=1e-3").unwrap(), params).unwrap()),
        ("velo", beatmatch_learned::build(&load("velo_case1.theta.msgpack"), params).unwrap()),
        ("small_fc", beatmatch_learned::build(&load("adafac_case1.theta.msgpack"), params).unwrap()),
        ("mlp_lopt", beatmatch_learned::build(&load("mlp_lopt_case1.theta.msgpack"), params).unwrap()),
    ]
}

fn grads_for(params: &[ParamInfo]) -> Vec<Vec<f32>> {
    params.iter().map(|p| (0..p.numel()).map(|i| ((i % 97) as f32 - 48.0) * 1e-3).collect()).collect()
}

fn update(c: &mut Criterion) {
    for &n in &[10_000usize, 1_000_000, 10_000_000] {
        let info = vec![ParamInfo { name: "w".into(), shape: vec![n / 1000, 1000] }];
        let grads = grads_for(&info);
        let mut values = [vec![0.1f32; n]];
        let mut g = c.benchmark_group(format!("lopt_update_{n}"));
        g.throughput(Throughput::Elements(n as u64));
        if n >= 1_000_000 {
            g.sample_size(10).warm_up_time(Duration::from_millis(500)).measurement_time(Duration::from_secs(if n >= 10_000_000 { 20 } else { 5 }));
        }
        for (name, mut opt) in optimizers(&info) {
            let mut step = 0u64;
            g.bench_with_input(BenchmarkId::from_parameter(name), &(), |b, _| {
                b.iter(|| {
                    let mut p: Vec<&mut [f32]> = values.iter_mut().map(|v| v.as_mut_slice()).collect();
                    let gs: Vec<&[f32]> = grads.iter().map(|v| v.as_slice()).collect();
                    opt.step(&mut p, &gs, &StepContext { step, num_steps: 10_000, losses: &[1.0] });
                    step += 1;
                })
            });
        }
        g.finish();
    }
}

fn overhead(c: &mut Criterion) {
    std::env::set_var("RAYON_NUM_THREADS", "1");
    let model = ModelConfig::Mlp { width: 256, depth: 2, activation: Activation::Relu }.build(&[784], 10);
    let infos = model.params().to_vec();
    let values = model.init(&mut rand_chacha::ChaCha8Rng::seed_from_u64(0));
    let dev = Device::Cpu;
    let x = Tensor::from_vec((0..128 * 784).map(|i| (i % 255) as f32 / 255.0).collect::<Vec<_>>(), (128, 784), &dev).unwrap();
    let y = Tensor::from_vec((0..128u32).map(|i| i % 10).collect::<Vec<_>>(), 128, &dev).unwrap();
    let mut g = c.benchmark_group("mlp784-256-256-10_b128");
    g.sample_size(20).measurement_time(Duration::from_secs(5));
    g.bench_function("forward_backward", |b| {
        b.iter(|| {
            let vars: Vec<Var> = values.iter().zip(&infos).map(|(v, p)| Var::from_slice(v, p.shape.clone(), &dev).unwrap()).collect();
            let ts: Vec<Tensor> = vars.iter().map(|v| v.as_tensor().clone()).collect();
            let loss = candle_nn::loss::cross_entropy(&model.forward(&ts, &x).unwrap(), &y).unwrap();
            loss.backward().unwrap()
        })
    });
    let grads = grads_for(&infos);
    let mut params = values.clone();
    for (name, mut opt) in optimizers(&infos) {
        let mut step = 0u64;
        g.bench_function(format!("update_{name}"), |b| {
            b.iter(|| {
                let mut p: Vec<&mut [f32]> = params.iter_mut().map(|v| v.as_mut_slice()).collect();
                let gs: Vec<&[f32]> = grads.iter().map(|v| v.as_slice()).collect();
                opt.step(&mut p, &gs, &StepContext { step, num_steps: 10_000, losses: &[1.0] });
                step += 1;
            })
        });
    }
    g.finish();
}

criterion_group! { name = benches; config = Criterion::default().warm_up_time(Duration::from_secs(1)).measurement_time(Duration::from_secs(3)); targets = overhead, update }
criterion_main!(benches);
