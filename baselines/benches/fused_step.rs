//! The device steps against what they replaced, measured in the same run: each kind's device
//! rule (one fused kernel per tensor where the kind has one) beside the candle-op composition the device
//! path used before (Adam, as it was: one candle kernel per op), the host rule on the same
//! values, and a plain copy of the parameters (the memory-bandwidth reference). On candle's
//! CPU device, with the suite's allocator (mimalloc: each step's fresh state buffer is a
//! large allocation); prints the instruction set the kernels ran with.
//!
//! `cargo bench -p beatmatch-baselines --bench fused_step`

use beatmatch_baselines::adam::AdamHp;
use beatmatch_core::{Buffers, OptimizerSpec, ParamInfo, StepContext};
use beatmatch_device::DeviceTensors;
use candle_core::{Device, Tensor, Var};
use criterion::{criterion_group, criterion_main, Bencher, BenchmarkId, Criterion, Throughput};
use std::hint::black_box;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Adam as the device path composed it before the fused kernels (the same bits, one candle
/// op per arithmetic step).
fn adam_composed(hp: &AdamHp, t: i32, w: &Var, g: &Tensor, m: &mut Tensor, v: &mut Tensor) -> candle_core::Result<()> {
    let (b1, b2) = (hp.b1 as f32, hp.b2 as f32);
    let c1 = Tensor::new(1.0 - b1.powi(t), w.device())?;
    let c2 = Tensor::new(1.0 - b2.powi(t), w.device())?;
    *m = (g.affine(f64::from(1.0 - b1), 0.0)? + m.affine(f64::from(b1), 0.0)?)?;
    *v = (g.sqr()?.affine(f64::from(1.0 - b2), 0.0)? + v.affine(f64::from(b2), 0.0)?)?;
    let denom = v.broadcast_div(&c2)?.sqrt()?.affine(1.0, hp.eps)?;
    let u = m.broadcast_div(&c1)?.div(&denom)?;
    w.set(&(w.as_tensor().detach() + u.affine(-hp.lr, 0.0)?)?)
}

/// The kind's device rule stepping `w` in place (its state on the device, as in training).
fn run(b: &mut Bencher<'_>, spec: &OptimizerSpec, info: &[ParamInfo], w: &Var, g: &Tensor, ctx: &StepContext<'_>) {
    let mut opt = beatmatch_baselines::build_on(std::slice::from_ref(spec), info, w.device()).unwrap();
    let mut tensors = DeviceTensors { params: vec![w.clone()], grads: vec![g.clone()] };
    b.iter(|| opt.update(Buffers::Device(&mut tensors), ctx).unwrap());
}

fn bench(c: &mut Criterion) {
    println!("instruction set: {}", beatmatch_core::simd::isa());
    let dev = Device::Cpu;
    let ctx = StepContext { step: 0, num_steps: 1_000_000, losses: &[1.0] };
    for &n in &[10_000usize, 1_000_000, 10_000_000] {
        let shape = (n / 1000, 1000);
        let info = [ParamInfo::new("w", vec![shape.0, shape.1])];
        let grads: Vec<f32> = (0..n).map(|i| ((i % 97) as f32 - 48.0) * 1e-3).collect();
        let w = Var::from_vec(vec![0.1f32; n], shape, &dev).unwrap();
        let g = Tensor::from_slice(&grads, shape, &dev).unwrap();
        let mut group = c.benchmark_group(format!("device_step_{n}"));
        group.throughput(Throughput::Elements(n as u64));
        if n >= 10_000_000 {
            group.sample_size(10);
        }
        let (mut copy, host_w) = (vec![0f32; n], vec![0.1f32; n]);
        group.bench_function("memcpy", |b| b.iter(|| copy.copy_from_slice(black_box(&host_w))));

        let hp = AdamHp { lr: 1e-3, b1: 0.9, b2: 0.999, eps: 1e-8 };
        let (mut m, mut v) = (g.zeros_like().unwrap(), g.zeros_like().unwrap());
        let mut t = 0;
        group.bench_function("composed/adam:lr=1e-3", |b| {
            b.iter(|| {
                t += 1;
                adam_composed(&hp, t, &w, &g, &mut m, &mut v).unwrap()
            })
        });

        // Every kind's device rule (fused where the kind has a kernel), at its defaults.
        for kind in beatmatch_baselines::kinds() {
            let spec = OptimizerSpec::new(kind.name());
            let text = spec.to_string();
            if beatmatch_baselines::build_on(std::slice::from_ref(&spec), &info, &dev).is_err() {
                continue;
            }
            group.bench_with_input(BenchmarkId::new("device", &text), &(), |b, _| run(b, &spec, &info, &w, &g, &ctx));
            let mut host = beatmatch_baselines::build(&spec, &info).unwrap();
            let mut params = vec![0.1f32; n];
            group.bench_with_input(BenchmarkId::new("host", &text), &(), |b, _| {
                b.iter(|| {
                    let mut p = [params.as_mut_slice()];
                    host.step(&mut p, &[grads.as_slice()], &ctx);
                })
            });
        }
        group.finish();
    }
}

criterion_group! { name = benches; config = Criterion::default().measurement_time(std::time::Duration::from_secs(3)).warm_up_time(std::time::Duration::from_secs(1)); targets = bench }
criterion_main!(benches);
