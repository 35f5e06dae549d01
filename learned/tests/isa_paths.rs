//! Every instruction-set path gives the same bits: AVX-512F, AVX2 + FMA and the baseline
//! (whichever this CPU has), forced in turn with `simd::limit`, for the learned updates, a
//! baseline's update and the dense engine's forward and backward pass (its own vectorised
//! passes; the `gemm` crate picks its instruction set itself). One test in its own binary,
//! since the limit is process-wide.

use beatmatch_core::{simd, Optimizer, OptimizerSpec, ParamInfo};
use beatmatch_learned::checkpoint;
use beatmatch_tasks::dense::{Batch, DenseNet, Workspace};
use beatmatch_tasks::models::mlp::MlpConfig;
use beatmatch_tasks::models::{Activation, ModelConfig};
use beatmatch_testkit::{fixtures_dir, synthetic_params, synthetic_trajectory};
use rand::SeedableRng;

/// Builds a fresh optimizer for the test's tensors.
type Builder = Box<dyn Fn() -> Box<dyn Optimizer>>;

#[test]
fn every_instruction_set_gives_the_same_bits() {
    let dir = fixtures_dir();
    // A bias with a tail block, a rank-2 tensor over several pass-1 chunks whose rows do not
    // align with blocks, and a rank-3 tensor (the gathered statistics path).
    let infos = vec![ParamInfo::new("b", vec![37]), ParamInfo::new("w", vec![70, 101]), ParamInfo::new("k", vec![3, 5, 7])];
    let mut isas = vec!["baseline"];
    let widest = simd::isa();
    if widest != "baseline" {
        isas.push("avx2");
    }
    if widest == "avx512f" {
        isas.push("avx512f");
    }
    let mut optimizers: Vec<(&str, Builder)> = Vec::new();
    for file in ["velo_case1.theta.msgpack", "adafac_case1.theta.msgpack", "mlp_lopt_case1.theta.msgpack"] {
        let ckpt = checkpoint::load(&dir.join(file), None).unwrap();
        let infos = infos.clone();
        optimizers.push((file, Box::new(move || beatmatch_learned::build(&ckpt, &infos).unwrap())));
    }
    for spec in ["adam:lr=1e-3", "sgdm:lr=1e-2,momentum=0.9,nesterov=1"] {
        let infos = infos.clone();
        optimizers.push((spec, Box::new(move || beatmatch_baselines::build(&OptimizerSpec::parse(spec).unwrap(), &infos).unwrap())));
    }
    for (file, build) in &optimizers {
        let mut results = Vec::new();
        for isa in &isas {
            simd::limit(isa).unwrap();
            assert_eq!(simd::isa(), *isa);
            results.push(synthetic_trajectory(&mut *build(), &infos));
        }
        simd::limit("avx512f").unwrap();
        assert_ne!(results[0], synthetic_params(&infos), "{file}: the update changed nothing");
        for (isa, r) in isas.iter().zip(&results).skip(1) {
            assert_eq!(r, &results[0], "{file}: {isa} differs from the baseline");
        }
    }
    // The dense engine: loss and gradients of a small MLP on one batch.
    let config = ModelConfig::Mlp(MlpConfig { width: 24, depth: 2, activation: Activation::Tanh });
    let net = DenseNet::for_config(&config, 40, 10).unwrap();
    let model = config.build(&[40], 10);
    let values = model.init(&mut rand_chacha::ChaCha8Rng::seed_from_u64(3));
    let xs: Vec<f32> = (0..33 * 40).map(|i| ((i * 37 % 101) as f32 / 101.0) - 0.5).collect();
    let ys: Vec<u32> = (0..33u32).map(|i| i % 10).collect();
    let mut outs = Vec::new();
    for isa in &isas {
        simd::limit(isa).unwrap();
        let mut grads: Vec<Vec<f32>> = values.iter().map(|v| vec![0.0; v.len()]).collect();
        let p: Vec<&[f32]> = values.iter().map(Vec::as_slice).collect();
        let mut g: Vec<&mut [f32]> = grads.iter_mut().map(Vec::as_mut_slice).collect();
        let loss = net.loss_and_grads(1, &[true], &p, &Batch { x: &xs, y: &ys, rows: 33 }, &mut g, &mut Workspace::default());
        outs.push((loss, grads));
    }
    simd::limit("avx512f").unwrap();
    assert!(outs[0].1.iter().flatten().any(|&v| v != 0.0), "the dense engine computed no gradient");
    for (isa, o) in isas.iter().zip(&outs).skip(1) {
        assert_eq!(o, &outs[0], "dense engine: {isa} differs from the baseline");
    }
    assert!(simd::limit("sse9").is_err());
}
