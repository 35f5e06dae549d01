//! Learned-optimizer update cost next to Adam's, in parameters per second at 1e4, 1e6 and 1e7
//! parameters, and the overhead per training step on MLP 784-256-256-10 (batch 128): each
//! optimizer's update time next to the forward+backward time of the same model, measured in
//! the same run, so overhead = update ÷ fwd+bwd.
//!
//! Before criterion's runs, a table: each learned update's µs, ratio to the forward+backward
//! pass (candle's, and the native dense engine's that `suite` trains MLPs with), Mparam/s, and
//! its achieved GFLOP/s and GB/s beside this machine's single-thread sgemm and memcpy peaks,
//! measured in the same run, on one thread and (VeLO, small_fc) two; and the device path's
//! rules on candle's CPU device (`*_device`).
//!
//! `cargo bench -p beatmatch-learned --bench lopt_update`

use beatmatch_core::{Optimizer, OptimizerSpec, ParamInfo, StepContext};
use beatmatch_learned::checkpoint;
use beatmatch_tasks::models::mlp::MlpConfig;
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
        ("celo", beatmatch_learned::build(&load("celo_case1.theta.msgpack"), params).unwrap()),
        ("celo_adam", beatmatch_learned::build(&load("celo_adam_case1.theta.msgpack"), params).unwrap()),
        ("celo2", beatmatch_learned::build(&load("celo2_case1.theta.pt"), params).unwrap()),
    ]
}

/// The device path's rules on candle's CPU device (MLP-LOpt's and small_fc's fused kernels from
/// `device/kernels/lopt.h`, the others compositions of candle ops), fed host slices as the
/// fixture harness feeds them (each update uploads and copies back, as the host rules' rows
/// do not).
fn on_device(params: &[ParamInfo]) -> Vec<(&'static str, Box<dyn Optimizer>)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../testdata/fixtures");
    let on = |f: &str| {
        let c = checkpoint::load(&dir.join(f), None).unwrap();
        beatmatch_learned::build_on(c.arch, &c.theta, &c.hyperparameters, 1, params, &Device::Cpu).unwrap()
    };
    vec![
        ("velo_device", on("velo_case1.theta.msgpack")),
        ("small_fc_device", on("adafac_case1.theta.msgpack")),
        ("mlp_lopt_device", on("mlp_lopt_case1.theta.msgpack")),
    ]
}

/// VeLO and small_fc on two threads.
fn threaded(params: &[ParamInfo]) -> Vec<(&'static str, Box<dyn Optimizer>)> {
    use beatmatch_core::Bound;
    use std::sync::Arc;
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../testdata/fixtures");
    let load = |f: &str| checkpoint::load(&dir.join(f), None).unwrap();
    let velo = beatmatch_learned::velo::VeloNet::bind(&load("velo_case1.theta.msgpack").theta, Default::default()).unwrap().with_threads(2);
    let small = beatmatch_learned::small_fc::SmallFcNet::bind(&load("adafac_case1.theta.msgpack").theta, Default::default()).unwrap().with_threads(2);
    vec![("velo_2threads", Box::new(Bound::new(Arc::new(velo), params))), ("small_fc_2threads", Box::new(Bound::new(Arc::new(small), params)))]
}

/// Approximate work per parameter per update (FLOPs, bytes moved), counted from the kernels:
/// two feature passes (~60 FLOPs each), the per-parameter MLP (2 × its multiply-adds; the
/// training-step embedding is folded into the first layer's bias once per step, so small_fc's
/// first layer reads 28 inputs and MLP-LOpt's 8), the accumulator updates; bytes: the nine
/// per-parameter streams read twice, the accumulators read and written once, the parameter
/// written. Celo's per-parameter work is VeLO's (its scheduler runs once per step); Celo-Adam's
/// is Adam's; Celo2's counts its features and 30 → 8 → 8 → 3 MLP but not Newton–Schulz (so its
/// GFLOP/s is a lower bound).
fn work_per_param(name: &str) -> (f64, f64) {
    match name.trim_end_matches("_2threads").trim_end_matches("_device") {
        "adam" | "celo_adam" => (10.0, 20.0),
        "celo2" => (2.0 * 60.0 + 2.0 * (30.0 * 8.0 + 64.0 + 24.0) + 40.0, 2.0 * 9.0 * 4.0 + 7.0 * 8.0 + 4.0),
        "velo" | "celo" => (2.0 * 60.0 + 2.0 * (30.0 * 4.0 + 16.0 + 12.0) + 40.0, 2.0 * 9.0 * 4.0 + 7.0 * 8.0 + 4.0),
        "small_fc" => (2.0 * 56.0 + 2.0 * (28.0 * 4.0 + 16.0 + 8.0) + 40.0, 2.0 * 9.0 * 4.0 + 7.0 * 8.0 + 4.0),
        _ => (2.0 * 16.0 + 2.0 * (8.0 * 32.0 + 32.0 * 32.0 + 64.0) + 12.0, 2.0 * 8.0 * 4.0 + 6.0 * 8.0 + 4.0),
    }
}

/// Median seconds of `f` over `reps` calls after `reps` warm-up calls.
fn median(reps: usize, mut f: impl FnMut()) -> f64 {
    for _ in 0..reps {
        f();
    }
    let mut t: Vec<f64> = (0..reps)
        .map(|_| {
            let s = std::time::Instant::now();
            f();
            s.elapsed().as_secs_f64()
        })
        .collect();
    t.sort_by(f64::total_cmp);
    t[reps / 2]
}

fn table(_: &mut Criterion) {
    std::env::set_var("RAYON_NUM_THREADS", "1");
    let _ftz = beatmatch_core::simd::FlushDenormals::new();
    let isa = beatmatch_core::simd::isa();
    let n = 512;
    let (a, b, mut c) = (vec![0.5f32; n * n], vec![0.25f32; n * n], vec![0.0f32; n * n]);
    let gemm_s = median(5, || beatmatch_tasks::dense::sgemm(n, n, n, &a, &b, &mut c));
    let peak_flops = 2.0 * (n * n * n) as f64 / gemm_s;
    let big = vec![1.0f32; 1 << 24];
    let mut dst = vec![0.0f32; 1 << 24];
    let copy_s = median(5, || dst.copy_from_slice(std::hint::black_box(&big)));
    let peak_bytes = 2.0 * 4.0 * (1 << 24) as f64 / copy_s;
    let model = ModelConfig::Mlp(MlpConfig { width: 256, depth: 2, activation: Activation::Relu }).build(&[784], 10);
    let infos = model.params().to_vec();
    let values = model.init(&mut rand_chacha::ChaCha8Rng::seed_from_u64(0));
    let dev = Device::Cpu;
    let xs: Vec<f32> = (0..128 * 784).map(|i| (i % 255) as f32 / 255.0).collect();
    let ys: Vec<u32> = (0..128u32).map(|i| i % 10).collect();
    let x = Tensor::from_vec(xs.clone(), (128, 784), &dev).unwrap();
    let y = Tensor::from_vec(ys.clone(), 128, &dev).unwrap();
    let fb_candle = median(15, || {
        let vars: Vec<Var> = values.iter().zip(&infos).map(|(v, p)| Var::from_slice(v, p.shape.clone(), &dev).unwrap()).collect();
        let ts: Vec<Tensor> = vars.iter().map(|v| v.as_tensor().clone()).collect();
        candle_nn::loss::cross_entropy(&model.forward(&ts, &x).unwrap(), &y).unwrap().backward().unwrap();
    });
    let net =
        beatmatch_tasks::dense::DenseNet::for_config(&ModelConfig::Mlp(MlpConfig { width: 256, depth: 2, activation: Activation::Relu }), 784, 10).unwrap();
    let mut grads: Vec<Vec<f32>> = values.iter().map(|v| vec![0.0; v.len()]).collect();
    let mut ws = beatmatch_tasks::dense::Workspace::default();
    let fb_native = median(15, || {
        let p: Vec<&[f32]> = values.iter().map(Vec::as_slice).collect();
        let mut g: Vec<&mut [f32]> = grads.iter_mut().map(Vec::as_mut_slice).collect();
        net.loss_and_grads(1, &[true], &p, &beatmatch_tasks::dense::Batch { x: &xs, y: &ys, rows: 128 }, &mut g, &mut ws);
    });
    let np: usize = infos.iter().map(ParamInfo::numel).sum();
    println!("\nlearned updates on MLP 784-256-256-10 ({np} parameters), batch 128; ISA {isa}; single-thread peaks measured now: sgemm {:.1} GFLOP/s, memcpy {:.1} GB/s", peak_flops / 1e9, peak_bytes / 1e9);
    println!("forward+backward: candle {:.0} µs, native dense engine {:.0} µs", fb_candle * 1e6, fb_native * 1e6);
    println!("| optimizer | µs per update | ÷ fwd+bwd (candle / native) | Mparam/s | ≈ GFLOP/s (% of sgemm) | ≈ GB/s (% of memcpy) |\n|---|---:|---:|---:|---:|---:|");
    let grads = grads_for(&infos);
    for (name, mut opt) in optimizers(&infos).into_iter().chain(threaded(&infos)).chain(on_device(&infos)) {
        let mut params = values.clone();
        let mut step = 0u64;
        let t = median(40, || {
            let mut p: Vec<&mut [f32]> = params.iter_mut().map(|v| v.as_mut_slice()).collect();
            let gs: Vec<&[f32]> = grads.iter().map(|v| v.as_slice()).collect();
            opt.step(&mut p, &gs, &StepContext { step, num_steps: 10_000, losses: &[1.0] });
            step += 1;
        });
        let (f, b) = work_per_param(name);
        let (flops, bytes) = (f * np as f64 / t, b * np as f64 / t);
        println!(
            "| {name} | {:.0} | {:.2} / {:.2} | {:.1} | {:.1} ({:.0}%) | {:.1} ({:.0}%) |",
            t * 1e6,
            t / fb_candle,
            t / fb_native,
            np as f64 / t / 1e6,
            flops / 1e9,
            100.0 * flops / peak_flops,
            bytes / 1e9,
            100.0 * bytes / peak_bytes
        );
    }
    println!();
}

fn grads_for(params: &[ParamInfo]) -> Vec<Vec<f32>> {
    params.iter().map(|p| (0..p.numel()).map(|i| ((i % 97) as f32 - 48.0) * 1e-3).collect()).collect()
}

fn update(c: &mut Criterion) {
    for &n in &[10_000usize, 1_000_000, 10_000_000] {
        let info = vec![ParamInfo::new("w", vec![n / 1000, 1000])];
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
    let model = ModelConfig::Mlp(MlpConfig { width: 256, depth: 2, activation: Activation::Relu }).build(&[784], 10);
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

criterion_group! { name = benches; config = Criterion::default().warm_up_time(Duration::from_secs(1)).measurement_time(Duration::from_secs(3)); targets = table, overhead, update }
criterion_main!(benches);
