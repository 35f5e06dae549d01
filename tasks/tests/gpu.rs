//! CPU against GPU, run by `ci/gpu/verify.sh` on a machine with one (ignored elsewhere: they
//! need `BEATMATCH_TEST_DEVICE=cuda` in a build with `--features cuda`). TF32 is off, so
//! the GPU's f32 products round as f32; what differs is the summation order of cuBLAS and of
//! candle's reductions, hence tolerances instead of bits.

use beatmatch_core::OptimizerSpec;
use beatmatch_tasks::data::{rng, BatchStream, View, STREAM_INIT};
use beatmatch_tasks::inner::{loss_and_grads, InnerRun, RunSettings};
use beatmatch_tasks::models::mlp::MlpConfig;
use beatmatch_tasks::models::transformer::TransformerConfig;
use beatmatch_tasks::models::{Activation, ModelConfig};
use beatmatch_tasks::{DatasetName, Problem};
use candle_core::{Device, Tensor};

fn gpu() -> Device {
    let name = std::env::var("BEATMATCH_TEST_DEVICE").expect("set BEATMATCH_TEST_DEVICE=cuda (or cuda:N) to run the GPU checks");
    #[cfg(feature = "cuda")]
    candle_core::cuda_backend::set_gemm_reduced_precision_f32(false);
    let d = beatmatch_device::parse_device(&name).unwrap();
    assert!(!d.is_cpu(), "BEATMATCH_TEST_DEVICE={name} is not a GPU");
    d
}

fn problems() -> Vec<Problem> {
    vec![
        Problem::new(ModelConfig::Mlp(MlpConfig { width: 256, depth: 2, activation: Activation::Relu }), DatasetName::Mnist1d, 128, &[50]),
        Problem::new(ModelConfig::Transformer(TransformerConfig { d_model: 64, layers: 2, heads: 4, context: 32 }), DatasetName::MobyDick, 16, &[50]),
    ]
}

fn close(a: &[f32], b: &[f32], rtol: f32, what: &str) {
    let scale = a.iter().fold(0f32, |m, v| m.max(v.abs())).max(1e-30);
    let worst = a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0f32, f32::max);
    assert!(worst <= rtol * scale, "{what}: largest |cpu − gpu| {worst:e} > {rtol:e} × max |cpu| {scale:e}");
}

#[test]
#[ignore = "needs a GPU: BEATMATCH_TEST_DEVICE=cuda, --features cuda (ci/gpu/verify.sh)"]
fn forward_and_backward_agree_between_cpu_and_gpu() {
    let gpu = gpu();
    for p in problems() {
        let data = p.dataset.load().unwrap();
        let model = p.build_model();
        let view = View::new(&p, &data, false).unwrap();
        let values = model.init(&mut rng(0, STREAM_INIT));
        let mut idx = Vec::new();
        BatchStream::new(view.len(), 0).next_indices(p.batch_size, &mut idx);
        let mut out = Vec::new();
        for dev in [&Device::Cpu, &gpu] {
            let params: Vec<Tensor> = values.iter().zip(model.params()).map(|(v, i)| Tensor::from_slice(v, i.shape.clone(), dev).unwrap()).collect();
            let (xb, yb) = view.batch(&idx, dev).unwrap();
            let (loss, grads) = loss_and_grads(model.as_ref(), &params, &xb, &yb).unwrap().expect("finite loss");
            let grads: Vec<Vec<f32>> = grads.iter().map(|g| g.flatten_all().unwrap().to_vec1().unwrap()).collect();
            out.push((loss, grads));
        }
        let ((l1, g1), (l2, g2)) = (&out[0], &out[1]);
        assert!((l1 - l2).abs() <= 1e-5 * l1.abs(), "{}: loss cpu {l1} vs gpu {l2}", p.id());
        for ((a, b), info) in g1.iter().zip(g2).zip(model.params()) {
            close(a, b, 1e-4, &format!("{} gradient {}", p.id(), info.name));
        }
    }
}

#[test]
#[ignore = "needs a GPU: BEATMATCH_TEST_DEVICE=cuda, --features cuda (ci/gpu/verify.sh)"]
fn fifty_steps_on_the_gpu_follow_the_cpu() {
    let gpu = gpu();
    for p in problems() {
        let data = p.dataset.load().unwrap();
        let infos = p.build_model().params().to_vec();
        let spec = OptimizerSpec::parse("adam:lr=1e-3").unwrap();
        let mut curves = Vec::new();
        for dev in [&Device::Cpu, &gpu] {
            let opt = beatmatch_baselines::build_on(std::slice::from_ref(&spec), &infos, &Device::Cpu).unwrap();
            let run = InnerRun::new(&p, &data, opt, RunSettings { device: dev, seed: 1, steps: 50, horizon: 50 }).unwrap();
            curves.push(run.finish().unwrap());
        }
        assert_eq!(curves[0].status, curves[1].status, "{}", p.id());
        for (a, b) in curves[0].curve.iter().zip(&curves[1].curve) {
            let (a, b) = (a.train_loss.unwrap(), b.train_loss.unwrap());
            assert!((a - b).abs() <= 1e-3 * a.abs(), "{} step: cpu {a} vs gpu {b}", p.id());
        }
    }
}

#[test]
#[ignore = "needs a GPU: BEATMATCH_TEST_DEVICE=cuda, --features cuda (ci/gpu/verify.sh)"]
fn a_device_population_on_the_gpu_follows_the_cpu() {
    // Three Adam members stepped by one fused launch per tensor and an SGD member alone (one
    // forward and backward pass, cuBLAS strided-batched products) against the same population
    // on the CPU device, to the tolerance of `fifty_steps_…`; and each member against itself
    // alone on the GPU, whose bits may differ where cuBLAS picks another kernel for another
    // batch count (printed, not asserted).
    use beatmatch_tasks::device_population::DevicePopulation;
    use beatmatch_tasks::population::{MemberPlan, Members, OptimizerGroup};
    let gpu = gpu();
    let p = &problems()[0];
    let data = p.dataset.load().unwrap();
    let infos = p.build_model().params().to_vec();
    let specs = ["adam:lr=1e-3", "adam:lr=3e-4", "adam:lr=1e-4", "sgdm:lr=0.05,momentum=0.9"];
    let parse = |s: &[&str]| s.iter().map(|s| OptimizerSpec::parse(s).unwrap()).collect::<Vec<_>>();
    let run = |dev: &Device, groups: &[&[&str]]| {
        let mut at = 0;
        let groups: Vec<OptimizerGroup> = groups
            .iter()
            .map(|g| {
                at += g.len();
                OptimizerGroup { optimizer: beatmatch_baselines::build_on(&parse(g), &infos, dev).unwrap(), members: at - g.len()..at }
            })
            .collect();
        let plans = vec![MemberPlan { steps: 50, horizon: 50 }; at];
        DevicePopulation::new(p, &data, 1, dev, &plans, groups).unwrap().finish().unwrap()
    };
    let groups: [&[&str]; 2] = [&specs[..3], &specs[3..]];
    let (cpu, on_gpu) = (run(&Device::Cpu, &groups), run(&gpu, &groups));
    for (m, spec) in specs.iter().enumerate() {
        assert_eq!(cpu[m].status, on_gpu[m].status, "{spec}");
        for (a, b) in cpu[m].curve.iter().zip(&on_gpu[m].curve) {
            let (a, b) = (a.train_loss.unwrap(), b.train_loss.unwrap());
            assert!((a - b).abs() <= 1e-3 * a.abs(), "{spec} step: cpu {a} vs gpu {b}");
        }
        let alone = run(&gpu, &[&specs[m..m + 1]]);
        println!("{spec}: member of 4 on the GPU {} its run alone there", if alone[0] == on_gpu[m] { "has the bits of" } else { "differs in bits from" });
    }
}

#[test]
#[ignore = "needs a GPU: BEATMATCH_TEST_DEVICE=cuda, --features cuda (ci/gpu/verify.sh)"]
fn the_fused_kernels_give_the_cpu_bits_on_the_gpu() {
    // The PTX keeps every product and sum a separate IEEE operation (--fmad=false) and nvcc's
    // division and square root are correctly rounded, so the GPU should reproduce the CPU
    // compilation exactly; a difference here is a compilation that does not round as written.
    let gpu = gpu();
    let infos: Vec<beatmatch_core::ParamInfo> =
        [("a/w", vec![130, 140]), ("b/b", vec![140]), ("c/s", vec![])].into_iter().map(|(n, s)| beatmatch_core::ParamInfo::new(n, s)).collect();
    for text in [
        "sgdm:lr=0.1,momentum=0.9",
        "sgdm:lr=0.1,momentum=0.9,nesterov=1",
        "adam:lr=0.01",
        "adamw:lr=0.01,wd=0.1",
        "nadamw:lr=0.01,warmup_fraction=0.1,adamw_wd=0.01,l2_wd=0.001",
        "rmsprop:lr=0.01,decay=0.9",
        "lion:lr=0.001,wd=0.1",
    ] {
        let spec = OptimizerSpec::parse(text).unwrap();
        let one = std::slice::from_ref(&spec);
        let cpu = beatmatch_testkit::synthetic_trajectory(beatmatch_baselines::build_on(one, &infos, &Device::Cpu).unwrap().as_mut(), &infos);
        let on_gpu = beatmatch_testkit::synthetic_trajectory(beatmatch_baselines::build_on(one, &infos, &gpu).unwrap().as_mut(), &infos);
        for ((c, g), info) in cpu.iter().zip(&on_gpu).zip(&infos) {
            let differing = c.iter().zip(g).filter(|(a, b)| a.to_bits() != b.to_bits()).count();
            assert_eq!(differing, 0, "{text}: {} has {differing} of {} values differing between CPU and GPU", info.name, c.len());
        }
    }
}

#[test]
#[ignore = "needs a GPU: BEATMATCH_TEST_DEVICE=cuda, --features cuda (ci/gpu/verify.sh)"]
fn the_fused_learned_steps_on_the_gpu_follow_the_cpu() {
    // The fused learned kernels (device/kernels/lopt.cu: MLP-LOpt's, small_fc's, and VeLO's for
    // VeLO and Celo): everything per element rounds as on the CPU, but the f64 sums (pass 1's
    // squares, pass 0's row and column statistics, VeLO's per-tensor statistics) arrive in
    // atomics' or another order, so a normaliser or a statistic can differ in
    // its last bit; the updates (not the parameters, which dwarf them) are compared, to 1e-4
    // of the largest. Factored tensors with the largest axis first, last and in the middle.
    let gpu = gpu();
    let infos: Vec<beatmatch_core::ParamInfo> =
        [("a/w", vec![130, 140]), ("b/b", vec![141]), ("c/s", vec![]), ("d/w", vec![70, 9]), ("e/k", vec![2, 3, 5, 4]), ("f/k", vec![4, 6, 3])]
            .into_iter()
            .map(|(n, s)| beatmatch_core::ParamInfo::new(n, s))
            .collect();
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    for (arch, file) in [
        (beatmatch_learned::mlp_lopt::MLP_LOPT, "learned/checkpoints/mlp_lopt_es_mnist1d.safetensors"),
        (beatmatch_learned::small_fc::SMALL_FC, "learned/checkpoints/small_fc_es_mnist1d.safetensors"),
        (beatmatch_learned::velo::VELO, "testdata/fixtures/velo_case1.theta.msgpack"),
        (beatmatch_learned::celo::CELO, "learned/checkpoints/celo_phase2_mnist1d.safetensors"),
    ] {
        let ckpt = beatmatch_learned::checkpoint::load(&root.join(file), Some(arch)).unwrap();
        let on = |dev: &Device| {
            let mut opt = beatmatch_learned::build_on(ckpt.arch, &ckpt.theta, &ckpt.hyperparameters, 1, &infos, dev).unwrap();
            beatmatch_testkit::synthetic_trajectory(opt.as_mut(), &infos)
        };
        let (cpu, on_gpu, start) = (on(&Device::Cpu), on(&gpu), beatmatch_testkit::synthetic_params(&infos));
        for (((c, g), s), info) in cpu.iter().zip(&on_gpu).zip(&start).zip(&infos) {
            let dc: Vec<f32> = c.iter().zip(s).map(|(a, b)| a - b).collect();
            let dg: Vec<f32> = g.iter().zip(s).map(|(a, b)| a - b).collect();
            assert!(dc.iter().any(|&d| d != 0.0), "{}: the CPU step did not move it", info.name);
            close(&dc, &dg, 1e-4, &format!("{} update of {}", arch.as_str(), info.name));
        }
    }
}
