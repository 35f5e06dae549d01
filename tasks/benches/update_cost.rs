//! What one optimizer update costs on the tensors of an MLP 784-256-256-10 (Fashion-MNIST's
//! shape; 269,322 parameters), next to what the model's forward and backward pass at batch
//! 128 costs on the same thread in the same run (the native dense engine): per optimizer, the
//! host rule and the device rule on candle's CPU device (handed device tensors, as training
//! does), in ms per update, ns per parameter, and as a ratio to the forward+backward and to
//! Adam's host update; and a population of four members against four single updates. One thread. Prints a markdown table and one JSON object per row;
//! `bench/peer/update_cost.sh` puts optax's and PyTorch's times beside it.
//!
//! `cargo bench -p beatmatch-tasks --bench update_cost [-- FILTER]`

use beatmatch_core::{Buffers, Optimizer, OptimizerSpec, ParamInfo, StepContext};
use beatmatch_device::DeviceTensors;
use beatmatch_tasks::dense::{Batch, DenseNet, Workspace};
use beatmatch_tasks::models::mlp::MlpConfig;
use beatmatch_tasks::models::{Activation, ModelConfig};
use candle_core::{Device, Tensor, Var};
use std::time::Instant;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Each optimizer at its reference defaults (the learning rate does not change the cost).
const SPECS: [&str; 8] = ["adam", "adamw", "sfadamw", "ademamix", "algoperf_nadamw", "muon", "muon:adam_io=1", "soap"];

/// Median seconds of one call of `f` over runs of at least `min_s` seconds each, after one
/// untimed call.
fn time(min_s: f64, mut f: impl FnMut()) -> f64 {
    f();
    let mut samples = Vec::new();
    for _ in 0..5 {
        let (start, mut n) = (Instant::now(), 0u32);
        while start.elapsed().as_secs_f64() < min_s / 5.0 || n < 3 {
            f();
            n += 1;
        }
        samples.push(start.elapsed().as_secs_f64() / f64::from(n));
    }
    samples.sort_by(f64::total_cmp);
    samples[2]
}

fn values(infos: &[ParamInfo], salt: usize) -> Vec<Vec<f32>> {
    infos.iter().enumerate().map(|(t, p)| (0..p.numel()).map(|i| (((i * 31 + t * 7 + salt) % 997) as f32 / 997.0 - 0.5) * 0.02).collect()).collect()
}

/// Seconds per host update of `spec` (after a few updates, so SOAP's first, preconditioner-only
/// step and its eigendecompositions are behind it; its periodic refreshes are in the average).
fn host(spec: &OptimizerSpec, infos: &[ParamInfo]) -> f64 {
    let mut opt = beatmatch_baselines::build(spec, infos).unwrap();
    let (mut w, g) = (values(infos, 0), values(infos, 5));
    let grads: Vec<&[f32]> = g.iter().map(Vec::as_slice).collect();
    let mut step = 0u64;
    let mut one = || {
        let mut p: Vec<&mut [f32]> = w.iter_mut().map(Vec::as_mut_slice).collect();
        opt.step(&mut p, &grads, &StepContext { step, num_steps: 1_000_000, losses: &[1.0] });
        step += 1;
    };
    for _ in 0..3 {
        one();
    }
    time(2.0, one)
}

/// Members in the population row: a study's four learning rates of one protocol.
const MEMBERS: usize = 4;

/// Seconds per host update of a population of [`MEMBERS`] members of `spec` (member `j` at
/// `lr × (j + 1)`, each buffer holding the members one after another): what the population
/// runner pays for a protocol's grid, against `MEMBERS` single updates.
fn population(spec: &OptimizerSpec, infos: &[ParamInfo]) -> f64 {
    let lr = spec.get("lr", 1e-3);
    let specs: Vec<OptimizerSpec> = (0..MEMBERS).map(|j| spec.clone().with("lr", lr * (j + 1) as f64)).collect();
    let mut opt = beatmatch_baselines::build_members(&specs, infos).unwrap();
    let stack = |salt: usize| -> Vec<Vec<f32>> { values(infos, salt).into_iter().map(|v| v.repeat(MEMBERS)).collect() };
    let (mut w, g) = (stack(0), stack(5));
    let grads: Vec<&[f32]> = g.iter().map(Vec::as_slice).collect();
    let mut step = 0u64;
    let losses = [1.0; MEMBERS];
    let mut one = || {
        let mut p: Vec<&mut [f32]> = w.iter_mut().map(Vec::as_mut_slice).collect();
        opt.step(&mut p, &grads, &StepContext { step, num_steps: 1_000_000, losses: &losses });
        step += 1;
    };
    for _ in 0..3 {
        one();
    }
    time(2.0, one)
}

/// Seconds per device update of `spec` on candle's CPU device.
fn device(spec: &OptimizerSpec, infos: &[ParamInfo]) -> Option<f64> {
    let dev = Device::Cpu;
    let mut opt = beatmatch_baselines::build_on(std::slice::from_ref(spec), infos, &dev).ok()?;
    let params: Vec<Var> = values(infos, 0).into_iter().zip(infos).map(|(v, p)| Var::from_vec(v, p.shape.clone(), &dev).unwrap()).collect();
    let grads: Vec<Tensor> = values(infos, 5).into_iter().zip(infos).map(|(v, p)| Tensor::from_vec(v, p.shape.clone(), &dev).unwrap()).collect();
    let mut tensors = DeviceTensors { params, grads };
    let mut step = 0u64;
    let mut one = |opt: &mut Box<dyn Optimizer>| {
        opt.update(Buffers::Device(&mut tensors), &StepContext { step, num_steps: 1_000_000, losses: &[1.0] }).unwrap();
        step += 1;
    };
    for _ in 0..3 {
        one(&mut opt);
    }
    Some(time(2.0, || one(&mut opt)))
}

/// Seconds per forward+backward pass of the MLP at batch 128, and its tensors.
fn model() -> (f64, Vec<ParamInfo>) {
    let config = ModelConfig::Mlp(MlpConfig { width: 256, depth: 2, activation: Activation::Relu });
    let model = config.build(&[784], 10);
    let infos = model.params().to_vec();
    let net = DenseNet::for_config(&config, 784, 10).unwrap();
    let rows = 128;
    let x: Vec<f32> = (0..rows * 784).map(|i| ((i * 2654435761usize) % 255) as f32 / 255.0 - 0.5).collect();
    let y: Vec<u32> = (0..rows as u32).map(|i| i % 10).collect();
    let w = values(&infos, 0);
    let params: Vec<&[f32]> = w.iter().map(Vec::as_slice).collect();
    let mut g: Vec<Vec<f32>> = infos.iter().map(|p| vec![0.0; p.numel()]).collect();
    let mut ws = Workspace::default();
    let s = time(2.0, || {
        let mut gs: Vec<&mut [f32]> = g.iter_mut().map(Vec::as_mut_slice).collect();
        net.loss_and_grads(1, &[true], &params, &Batch { x: &x, y: &y, rows }, &mut gs, &mut ws);
    });
    (s, infos)
}

/// This thread's sgemm rate at 512³ (FLOP/s): the machine's peak the matrix-heavy updates are
/// measured against.
fn sgemm_peak() -> f64 {
    let n = 512;
    let a: Vec<f32> = (0..n * n).map(|i| (i % 13) as f32 * 0.01).collect();
    let mut c = vec![0.0; n * n];
    let s = time(1.0, || beatmatch_core::matmul::sgemm(n, n, n, &a, &a, &mut c));
    2.0 * (n * n * n) as f64 / s
}

/// FLOPs of one Muon update's Newton–Schulz iterations (5, optax's default) over the 2-D tensors:
/// per iteration `X·Xᵀ`, `(c·A)·A` and `B·X`, with X wide (`r ≤ c`).
fn newton_schulz_flops(infos: &[ParamInfo]) -> f64 {
    let per = |r: f64, c: f64| 2.0 * r * r * c + 2.0 * r * r * r + 2.0 * r * r * c;
    5.0 * infos.iter().filter_map(|p| if let [a, b] = *p.shape.as_slice() { Some(per(a.min(b) as f64, a.max(b) as f64)) } else { None }).sum::<f64>()
}

fn main() {
    std::env::set_var("RAYON_NUM_THREADS", "1");
    let filter = std::env::args().skip(1).find(|a| !a.starts_with('-'));
    let (fwd_bwd, infos) = model();
    let n: usize = infos.iter().map(ParamInfo::numel).sum();
    println!("MLP 784-256-256-10 ({n} parameters), one thread, instruction set {}", beatmatch_core::simd::isa());
    println!("forward+backward at batch 128 (dense engine): {:.3} ms\n", fwd_bwd * 1e3);
    println!("| optimizer | host ms/update | ns/param | × fwd+bwd | × Adam (host) | {MEMBERS}-member population ms/update | ÷ ({MEMBERS} × host) | device-on-CPU ms/update | × host |");
    println!("|---|---:|---:|---:|---:|---:|---:|---:|---:|");
    let mut adam = None;
    let mut json = Vec::new();
    for text in SPECS.iter().filter(|s| filter.as_ref().is_none_or(|f| s.contains(f.as_str()))) {
        let spec = OptimizerSpec::parse(text).unwrap();
        let h = host(&spec, &infos);
        let adam_s = *adam.get_or_insert(h);
        let pop = population(&spec, &infos);
        let d = device(&spec, &infos);
        let dev_cols = d.map_or("–| –".to_string(), |d| format!("{:.3} | {:.2}", d * 1e3, d / h));
        let pop_ratio = pop / (MEMBERS as f64 * h);
        println!(
            "| `{text}` | {:.3} | {:.2} | {:.2} | {:.2} | {:.3} | {pop_ratio:.2} | {dev_cols} |",
            h * 1e3,
            h * 1e9 / n as f64,
            h / fwd_bwd,
            h / adam_s,
            pop * 1e3
        );
        json.push(format!(
            "{{\"optimizer\": \"{text}\", \"host_ms\": {:.4}, \"population_ms\": {:.4}, \"members\": {MEMBERS}, \"device_cpu_ms\": {}, \"fwd_bwd_ms\": {:.4}, \"isa\": \"{}\"}}",
            h * 1e3,
            pop * 1e3,
            d.map_or("null".into(), |d| format!("{:.4}", d * 1e3)),
            fwd_bwd * 1e3,
            beatmatch_core::simd::isa()
        ));
    }
    if filter.as_ref().is_none_or(|f| "muon".contains(f.as_str())) {
        let (peak, flops) = (sgemm_peak(), newton_schulz_flops(&infos));
        let muon = host(&OptimizerSpec::parse("muon").unwrap(), &infos);
        println!(
            "\nmuon: Newton–Schulz {:.2} GFLOP per update, {:.1} GFLOP/s achieved over the whole update = {:.0}% of this thread's sgemm peak measured now ({:.1} GFLOP/s at 512³)",
            flops / 1e9,
            flops / muon / 1e9,
            100.0 * flops / muon / peak,
            peak / 1e9
        );
    }
    println!();
    for j in json {
        println!("{j}");
    }
}
