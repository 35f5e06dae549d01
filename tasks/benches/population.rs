//! Training throughput of the quick tier's MLP shapes and the cpu tier's ConvNets, LSTMs and Transformers: one run
//! alone (steps/s) and a sweep of 30 members — 15 learning rates × 2 seeds, as two populations
//! of 15 (one per seed) — (run-steps/s), Adam, one thread; and the achieved GFLOP/s next to
//! this machine's single-thread sgemm peak measured in the same run. the last three print one
//! run's rate through candle (`candle_steps_per_s`: how they trained before the native engine
//! had them, and how the device path still trains them). Prints one JSON object per line;
//! `bench/peer/run.sh` puts them beside JAX's.
//!
//! `cargo bench -p beatmatch-tasks --bench population [-- SHAPE_FILTER]`
//!
//! With `POP_SIZES=1,4,8,20,60` it prints instead, per shape, the run-steps/s of 60 members
//! trained in populations of each of those sizes (best of 3 interleaved rounds) and each
//! size's ratio to the first: the measurement behind the suite's default population cap
//! (`suite::runner::HOST_POPULATION_BYTES`). With `SMALL_PRODUCTS=compare` it prints, per
//! shape, one run's and the sweep's rates with narrow products through `core::matmul`'s own
//! kernel and through the `gemm` crate alone, interleaved. With `FLOOR=1` it prints, per shape,
//! one run's step time next to the floor of a member's own work in a sweep — its products at
//! the sgemm peak measured in the same run, its cross-entropy with gradient and its Adam
//! update, timed alone — and their ratio: the most a sweep of any size could gain over one
//! run, since every member computes these itself.

use beatmatch_core::OptimizerSpec;
use beatmatch_tasks::datasets::{Dataset, Layout};
use beatmatch_tasks::models::conv::{ConvConfig, Pooling};
use beatmatch_tasks::models::logreg::Logreg;
use beatmatch_tasks::models::lstm::LstmConfig;
use beatmatch_tasks::models::mlp::MlpConfig;
use beatmatch_tasks::models::transformer::TransformerConfig;
use beatmatch_tasks::models::{Activation, ModelConfig};
use beatmatch_tasks::population::{MemberPlan, Members, OptimizerGroup, Population};
use beatmatch_tasks::{DatasetName, InnerRun, Problem, RunSettings};
use std::time::Instant;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

const LRS: [f64; 15] = [1e-7, 3e-7, 1e-6, 3e-6, 1e-5, 3e-5, 1e-4, 3e-4, 1e-3, 3e-3, 1e-2, 3e-2, 1e-1, 3e-1, 1.0];

fn synthetic(shape: &[usize], n: usize) -> Dataset {
    let width: usize = shape.iter().product();
    Dataset {
        layout: Layout::Examples,
        example_shape: shape.to_vec(),
        num_classes: 10,
        train_x: (0..n * width).map(|i| ((i * 2654435761usize) % 255) as f32 / 255.0 - 0.5).collect(),
        train_y: (0..n).map(|i| (i % 10) as u32).collect(),
        test_x: vec![0.0; width],
        test_y: vec![0],
    }
}

/// Steps per second of a population of `lrs.len()` Adam members from `seed` over `steps`
/// steps (measurements only at the start and end).
fn population_rate(problem: &Problem, data: &Dataset, lrs: &[f64], seed: u64, steps: u64) -> f64 {
    let infos = problem.build_model().params().to_vec();
    let specs: Vec<OptimizerSpec> = lrs.iter().map(|&lr| OptimizerSpec::new("adam").with("lr", lr)).collect();
    let opt = beatmatch_baselines::build_members(&specs, &infos).unwrap();
    let plans = vec![MemberPlan { steps, horizon: steps }; lrs.len()];
    let mut pop = Population::new(problem, data, seed, &plans, vec![OptimizerGroup { optimizer: opt, members: 0..lrs.len() }]).unwrap();
    pop.advance(2).unwrap(); // warm-up: buffers sized
    let start = Instant::now();
    pop.advance(steps - 4).unwrap();
    (steps - 4) as f64 / start.elapsed().as_secs_f64()
}

/// Steps per second of one Adam run through candle (the device path's engine, on the CPU).
fn candle_rate(problem: &Problem, data: &Dataset, steps: u64) -> f64 {
    let infos = problem.build_model().params().to_vec();
    let opt = beatmatch_baselines::build(&OptimizerSpec::new("adam").with("lr", 1e-3), &infos).unwrap();
    let settings = RunSettings { device: &candle_core::Device::Cpu, seed: 0, steps, horizon: steps };
    let mut run = InnerRun::new(problem, data, opt, settings).unwrap();
    run.advance(2).unwrap();
    let start = Instant::now();
    run.advance(steps - 4).unwrap();
    (steps - 4) as f64 / start.elapsed().as_secs_f64()
}

/// Multiply-adds of one example's forward pass, per layer.
fn layer_macs(model: &ModelConfig, shape: &[usize], classes: usize) -> Vec<f64> {
    match model {
        ModelConfig::Conv(c) => {
            let (mut ch, mut h, mut w) = match shape {
                [h, w] => (1, *h, *w),
                [c, h, w] => (*c, *h, *w),
                _ => unreachable!("images"),
            };
            let mut macs = Vec::new();
            for _ in 0..c.depth {
                macs.push((h * w * ch * 9 * c.channels) as f64);
                ch = c.channels;
                if c.pooling != Pooling::None && h >= 2 && w >= 2 {
                    (h, w) = (h / 2, w / 2);
                }
            }
            macs.push((ch * h * w * classes) as f64);
            macs
        }
        // Per token: the weight products of each block (qkv, out, the MLP's two) and attention's
        // two (scores and P·V, over half the window on average under the causal mask).
        ModelConfig::Transformer(c) => {
            let d = c.d_model;
            let mut macs = vec![0.0];
            macs.extend(std::iter::repeat_n((3 * d * d + d * d + 8 * d * d + d * c.context) as f64, c.layers));
            macs.push((d * classes) as f64);
            macs
        }
        // Per token: the embedding (no products), each layer's [input, h]·W, the head.
        ModelConfig::Lstm(c) => {
            let mut macs = vec![0.0];
            macs.extend(std::iter::repeat_n((2 * c.hidden * 4 * c.hidden) as f64, c.layers));
            macs.push((c.hidden * classes) as f64);
            macs
        }
        _ => {
            let mut dims = vec![shape.iter().product::<usize>()];
            if let ModelConfig::Mlp(MlpConfig { width, depth, .. }) = model {
                dims.extend(std::iter::repeat_n(*width, *depth));
            }
            dims.push(classes);
            dims.windows(2).map(|w| (w[0] * w[1]) as f64).collect()
        }
    }
}

/// `POP_SIZES` mode: 60 Adam members (the 15 learning rates four times over, one seed) trained
/// in populations of each size of `sizes` in turn, three rounds; prints each size's best
/// run-steps/s and its ratio to the first size's. The rounds interleave the sizes, so a
/// machine whose speed drifts (a shared cloud core) shifts them alike.
fn by_population_size(name: &str, problem: &Problem, data: &Dataset, sizes: &[usize], steps: u64) {
    let lrs: Vec<f64> = LRS.iter().cycle().take(60).copied().collect();
    let mut best = vec![0f64; sizes.len()];
    for _ in 0..3 {
        for (b, &size) in best.iter_mut().zip(sizes) {
            let secs_per_step: f64 = lrs.chunks(size).map(|part| 1.0 / population_rate(problem, data, part, 0, steps)).sum();
            *b = b.max(lrs.len() as f64 / secs_per_step);
        }
    }
    let cells: Vec<String> = sizes.iter().zip(&best).map(|(s, b)| format!("K={s}: {b:.0} ({:.2})", b / best[0])).collect();
    println!("{{\"shape\": \"{name}\", \"by_population_size\": \"{}\", \"isa\": \"{}\"}}", cells.join(", "), beatmatch_core::simd::isa());
}

/// One Adam run's steps/s over `steps` steps, and the 30-member sweep's run-steps/s (two
/// populations of 15, one per seed, `steps / 2` steps each).
fn single_and_sweep(problem: &Problem, data: &Dataset, steps: u64) -> (f64, f64) {
    let single = population_rate(problem, data, &[1e-3], 0, steps);
    let sweep_time = (0..2u64).map(|seed| 1.0 / population_rate(problem, data, &LRS, seed, steps / 2)).sum::<f64>();
    (single, 30.0 / sweep_time)
}

/// `SMALL_PRODUCTS=compare`: one run and the 30-member sweep with narrow products through
/// `core::matmul`'s own kernel and through the `gemm` crate alone, interleaved, best of 3
/// rounds of each; prints each rate and the kernel's speed-up (the records are the same bits).
fn by_product_kernel(name: &str, problem: &Problem, data: &Dataset, steps: u64) {
    // [gemm only, own kernel][single, sweep]
    let mut best = [[0f64; 2]; 2];
    // Rounds in the order A B B A A B, so neither comes first more often: on a shared core
    // the first of a pair ran up to 1.2× faster than the second.
    for round in 0..3 {
        for i in 0..2 {
            let own = (i + round) % 2;
            beatmatch_core::matmul::set_small_products(own == 1);
            let (single, sweep) = single_and_sweep(problem, data, steps);
            best[own] = [best[own][0].max(single), best[own][1].max(sweep)];
        }
    }
    beatmatch_core::matmul::set_small_products(true);
    let [gemm, own] = best;
    println!(
        "{{\"shape\": \"{name}\", \"single_gemm_only\": {:.0}, \"single\": {:.0}, \"single_speedup\": {:.2}, \"population_gemm_only\": {:.0}, \"population\": {:.0}, \"population_speedup\": {:.2}, \"isa\": \"{}\"}}",
        gemm[0],
        own[0],
        own[0] / gemm[0],
        gemm[1],
        own[1],
        own[1] / gemm[1],
        beatmatch_core::simd::isa()
    );
}

/// Best seconds per call of `f` over 3 rounds of `calls` calls.
fn best_secs(calls: usize, mut f: impl FnMut()) -> f64 {
    (0..3)
        .map(|_| {
            let start = Instant::now();
            (0..calls).for_each(|_| f());
            start.elapsed().as_secs_f64() / calls as f64
        })
        .fold(f64::MAX, f64::min)
}

/// `FLOOR=1` mode: one run's step time against the floor of a member's own work in a sweep:
/// its products' `flops` at `peak` GFLOP/s, its cross-entropy with gradient over `rows × classes`
/// logits, and Adam over its parameters (steps 200–400, past the first bias correction's skip).
fn member_floor(name: &str, problem: &Problem, data: &Dataset, steps: u64, (flops, peak): (f64, f64), (rows, classes): (usize, usize)) {
    let (mut single, mut sweep) = (0f64, 0f64);
    for _ in 0..3 {
        let (a, b) = single_and_sweep(problem, data, steps);
        (single, sweep) = (single.max(a), sweep.max(b));
    }
    let logits: Vec<f32> = (0..rows * classes).map(|i| ((i * 2654435761usize) >> 9) as f32 % 2001.0 / 100.0 - 10.0).collect();
    let y: Vec<u32> = (0..rows).map(|r| (r % classes) as u32).collect();
    let mut grad = vec![0f32; rows * classes];
    let ce = best_secs(200, || {
        std::hint::black_box(beatmatch_tasks::dense::cross_entropy(std::hint::black_box(&logits), &y, classes, Some(&mut grad)));
    });
    let infos = problem.build_model().params().to_vec();
    let mut adam = beatmatch_baselines::build(&OptimizerSpec::new("adam").with("lr", 1e-3), &infos).unwrap();
    let mut params: Vec<Vec<f32>> = infos.iter().map(|i| vec![0.1; i.numel()]).collect();
    let grads: Vec<Vec<f32>> = infos.iter().map(|i| (0..i.numel()).map(|j| (j % 13) as f32 * 0.01 - 0.05).collect()).collect();
    let _flush = beatmatch_core::simd::FlushDenormals::new();
    let mut step = 0u64;
    let mut update = || {
        let mut p: Vec<&mut [f32]> = params.iter_mut().map(|v| v.as_mut_slice()).collect();
        let g: Vec<&[f32]> = grads.iter().map(|v| v.as_slice()).collect();
        adam.step(&mut p, &g, &beatmatch_core::StepContext { step, num_steps: 1_000_000, losses: &[1.0] });
        step += 1;
    };
    (0..200).for_each(|_| update());
    let adam_secs = best_secs(60, update);
    let products = flops / (peak * 1e9);
    let floor = products + ce + adam_secs;
    println!(
        "{{\"shape\": \"{name}\", \"single_us\": {:.2}, \"sweep_us_per_member\": {:.2}, \"sweep_ratio\": {:.2}, \"floor_us\": {:.2}, \"products_at_peak_us\": {:.2}, \"cross_entropy_us\": {:.2}, \"adam_us\": {:.2}, \"bound\": {:.2}, \"isa\": \"{}\"}}",
        1e6 / single,
        1e6 / sweep,
        sweep / single,
        floor * 1e6,
        products * 1e6,
        ce * 1e6,
        adam_secs * 1e6,
        1.0 / single / floor,
        beatmatch_core::simd::isa()
    );
}

fn sgemm_peak() -> f64 {
    let n = 512;
    let (a, b, mut c) = (vec![0.5f32; n * n], vec![0.25f32; n * n], vec![0.0f32; n * n]);
    let mut best = 0f64;
    for _ in 0..5 {
        let start = Instant::now();
        for _ in 0..4 {
            beatmatch_tasks::dense::sgemm(n, n, n, &a, &b, &mut c);
        }
        best = best.max(4.0 * 2.0 * (n * n * n) as f64 / start.elapsed().as_secs_f64() / 1e9);
    }
    best
}

fn main() {
    std::env::set_var("RAYON_NUM_THREADS", "1");
    let filter = std::env::args().skip(1).find(|a| !a.starts_with('-'));
    let sizes: Option<Vec<usize>> = std::env::var("POP_SIZES")
        .ok()
        .map(|v| v.split(',').map(|s| s.trim().parse().expect("POP_SIZES: comma-separated population sizes, e.g. 1,4,8,20,60")).collect());
    let compare_products = std::env::var("SMALL_PRODUCTS").is_ok_and(|v| v == "compare");
    let floor = std::env::var("FLOOR").is_ok_and(|v| v == "1");
    let peak = sgemm_peak();
    println!("{{\"sgemm_gflops\": {peak:.1}, \"isa\": \"{}\"}}", beatmatch_core::simd::isa());
    let mnist1d = DatasetName::Mnist1d.load().unwrap();
    let fashion = synthetic(&[28, 28], 4096);
    let digits = DatasetName::Digits.load().unwrap();
    let moby_dick = DatasetName::MobyDick.load().unwrap();
    let conv = |channels, depth, pooling| ModelConfig::Conv(ConvConfig { channels, depth, pooling });
    let shapes: Vec<(&str, ModelConfig, DatasetName, usize)> = vec![
        ("mlp-w32-d1-relu.mnist1d.b128", ModelConfig::Mlp(MlpConfig { width: 32, depth: 1, activation: Activation::Relu }), DatasetName::Mnist1d, 128),
        ("mlp-w32-d2-tanh.mnist1d.b128", ModelConfig::Mlp(MlpConfig { width: 32, depth: 2, activation: Activation::Tanh }), DatasetName::Mnist1d, 128),
        ("mlp-w64-d2-gelu.mnist1d.b128", ModelConfig::Mlp(MlpConfig { width: 64, depth: 2, activation: Activation::Gelu }), DatasetName::Mnist1d, 128),
        ("mlp-w128-d1-relu.mnist1d.b128", ModelConfig::Mlp(MlpConfig { width: 128, depth: 1, activation: Activation::Relu }), DatasetName::Mnist1d, 128),
        ("mlp-w128-d2-relu.mnist1d.b128", ModelConfig::Mlp(MlpConfig { width: 128, depth: 2, activation: Activation::Relu }), DatasetName::Mnist1d, 128),
        ("mlp-w128-d2-tanh.mnist1d.b128", ModelConfig::Mlp(MlpConfig { width: 128, depth: 2, activation: Activation::Tanh }), DatasetName::Mnist1d, 128),
        // The cpu tier's costliest MLPs (most of its MLP time on MNIST-1D).
        ("mlp-w256-d3-gelu.mnist1d.b256", ModelConfig::Mlp(MlpConfig { width: 256, depth: 3, activation: Activation::Gelu }), DatasetName::Mnist1d, 256),
        ("mlp-w256-d3-relu.mnist1d.b32", ModelConfig::Mlp(MlpConfig { width: 256, depth: 3, activation: Activation::Relu }), DatasetName::Mnist1d, 32),
        ("logreg.mnist1d.b32", ModelConfig::Logreg(Logreg {}), DatasetName::Mnist1d, 32),
        ("logreg.fashion_mnist.b128", ModelConfig::Logreg(Logreg {}), DatasetName::FashionMnist, 128),
        (
            "mlp-w32-d1-relu.fashion_mnist.b128",
            ModelConfig::Mlp(MlpConfig { width: 32, depth: 1, activation: Activation::Relu }),
            DatasetName::FashionMnist,
            128,
        ),
        (
            "mlp-w128-d1-relu.fashion_mnist.b128",
            ModelConfig::Mlp(MlpConfig { width: 128, depth: 1, activation: Activation::Relu }),
            DatasetName::FashionMnist,
            128,
        ),
        ("conv-c8-d1-max.digits.b64", conv(8, 1, Pooling::Max), DatasetName::Digits, 64),
        ("conv-c16-d2-avg.digits.b64", conv(16, 2, Pooling::Avg), DatasetName::Digits, 64),
        ("conv-c16-d2-max.mnist.b128", conv(16, 2, Pooling::Max), DatasetName::Mnist, 128),
        ("lstm-h32-l1-t32.moby_dick.b32", ModelConfig::Lstm(LstmConfig { hidden: 32, layers: 1, context: 32 }), DatasetName::MobyDick, 32),
        ("lstm-h64-l1-t32.moby_dick.b32", ModelConfig::Lstm(LstmConfig { hidden: 64, layers: 1, context: 32 }), DatasetName::MobyDick, 32),
        (
            "transformer-d32-l1-h2-t32.moby_dick.b32",
            ModelConfig::Transformer(TransformerConfig { d_model: 32, layers: 1, heads: 2, context: 32 }),
            DatasetName::MobyDick,
            32,
        ),
        (
            "transformer-d64-l1-h2-t32.moby_dick.b32",
            ModelConfig::Transformer(TransformerConfig { d_model: 64, layers: 1, heads: 2, context: 32 }),
            DatasetName::MobyDick,
            32,
        ),
    ];
    for (name, model, dataset, batch) in shapes {
        if filter.as_deref().is_some_and(|f| !name.contains(f)) {
            continue;
        }
        let on_candle_too = matches!(model, ModelConfig::Conv(_) | ModelConfig::Lstm(_) | ModelConfig::Transformer(_));
        let problem = Problem::new(model, dataset, batch, &[1_000_000]);
        let data = match dataset {
            DatasetName::FashionMnist | DatasetName::Mnist => &fashion,
            DatasetName::Digits => &*digits,
            DatasetName::MobyDick => &*moby_dick,
            _ => &*mnist1d,
        };
        let steps = if on_candle_too { 400 } else { 2000 };
        if compare_products {
            by_product_kernel(name, &problem, data, steps / 2);
            continue;
        }
        if let Some(sizes) = &sizes {
            by_population_size(name, &problem, data, sizes, steps / 4);
            continue;
        }
        // FLOPs per run-step: forward 2·b·Σ macs, weight gradients as much again, input
        // gradients for every layer but the first.
        let (shape, classes) = dataset.signature();
        let macs = layer_macs(&problem.model, &shape, classes);
        let flops = 2.0 * batch as f64 * (2.0 * macs.iter().sum::<f64>() + macs[1..].iter().sum::<f64>());
        let (flops, rows) = match &problem.model {
            ModelConfig::Lstm(c) => (flops * c.context as f64, batch * c.context),
            ModelConfig::Transformer(c) => (flops * c.context as f64, batch * c.context),
            _ => (flops, batch),
        };
        if floor {
            member_floor(name, &problem, data, steps, (flops, peak), (rows, classes));
            continue;
        }
        let (single, sweep) = single_and_sweep(&problem, data, steps);
        let candle = if on_candle_too { format!(", \"candle_steps_per_s\": {:.1}", candle_rate(&problem, data, 60)) } else { String::new() };
        println!(
            "{{\"shape\": \"{name}\", \"single_steps_per_s\": {single:.1}, \"population_run_steps_per_s\": {sweep:.1}{candle}, \"single_gflops\": {:.2}, \"population_gflops\": {:.2}, \"sgemm_gflops\": {peak:.1}, \"isa\": \"{}\"}}",
            single * flops / 1e9,
            sweep * flops / 1e9,
            beatmatch_core::simd::isa()
        );
    }
}
