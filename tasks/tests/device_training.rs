//! Training through the device path on candle's CPU device against the host path: for every
//! model family candle trains (MLP, ConvNet, LSTM, Transformer) and several optimizers, the
//! whole run — curve, evaluations, final parameters — is the same bits; and a device run
//! snapshotted, continued and restored continues exactly as it did.

use beatmatch_core::{Optimizer, OptimizerSpec};
use beatmatch_tasks::inner::{InnerRun, RunSettings};
use beatmatch_tasks::models::conv::ConvConfig;
use beatmatch_tasks::models::lstm::LstmConfig;
use beatmatch_tasks::models::mlp::MlpConfig;
use beatmatch_tasks::models::transformer::TransformerConfig;
use beatmatch_tasks::models::{Activation, ModelConfig, Pooling};
use beatmatch_tasks::{DatasetName, Problem};
use candle_core::Device;

fn problems() -> Vec<Problem> {
    vec![
        Problem::new(ModelConfig::Mlp(MlpConfig { width: 16, depth: 1, activation: Activation::Tanh }), DatasetName::Mnist1d, 32, &[20]),
        Problem::new(ModelConfig::Conv(ConvConfig { channels: 4, depth: 1, pooling: Pooling::Max }), DatasetName::Digits, 16, &[20]),
        Problem::new(ModelConfig::Lstm(LstmConfig { hidden: 8, layers: 1, context: 8 }), DatasetName::MobyDick, 4, &[20]),
        Problem::new(ModelConfig::Transformer(TransformerConfig { d_model: 8, layers: 1, heads: 2, context: 8 }), DatasetName::MobyDick, 4, &[20]),
    ]
}

// Schedule-Free is measured at its evaluation point: the curve compares x, host and device.
const SPECS: [&str; 7] = [
    "adam:lr=1e-2",
    "sgdm:lr=0.1,momentum=0.9,nesterov=1",
    "lion:lr=1e-3,wd=0.1",
    "adafactor:lr=1e-2,min_dim_size_to_factor=8",
    "sfadamw:lr=1e-2,warmup_steps=3",
    "muon:lr=0.02,conv_matrix=1,adam_lr=1e-2",
    "soap:lr=3e-3,precondition_frequency=4,merge_dims=1,max_precond_dim=64",
];

fn settings(steps: u64) -> RunSettings<'static> {
    static CPU: Device = Device::Cpu;
    RunSettings { device: &CPU, seed: 5, steps, horizon: steps }
}

fn build(p: &Problem, spec: &str, device_path: bool) -> Box<dyn Optimizer> {
    let spec = OptimizerSpec::parse(spec).unwrap();
    let infos = p.build_model().params().to_vec();
    if device_path {
        beatmatch_baselines::build_on(std::slice::from_ref(&spec), &infos, &Device::Cpu).unwrap()
    } else {
        beatmatch_baselines::build(&spec, &infos).unwrap()
    }
}

#[test]
fn every_family_trains_to_the_same_bits_through_the_device_path() {
    for p in problems() {
        let data = p.dataset.load().unwrap();
        for spec in SPECS {
            let mut host = InnerRun::new(&p, &data, build(&p, spec, false), settings(20)).unwrap();
            let mut device = InnerRun::new(&p, &data, build(&p, spec, true), settings(20)).unwrap();
            assert!(device.optimizer().wants_device_tensors() && !host.optimizer().wants_device_tensors());
            host.advance(20).unwrap();
            device.advance(20).unwrap();
            let (hv, dv) = (host.param_values().unwrap(), device.param_values().unwrap());
            assert_ne!(hv, InnerRun::new(&p, &data, build(&p, spec, false), settings(20)).unwrap().param_values().unwrap(), "{}: {spec} did not train", p.id());
            assert_eq!(hv, dv, "{}: {spec}: parameters differ after 20 steps", p.id());
            assert_eq!(host.into_outcome(), device.into_outcome(), "{}: {spec}: curves differ", p.id());
        }
    }
}

#[test]
fn a_device_run_restored_from_a_snapshot_continues_exactly() {
    let p = &problems()[3];
    let data = p.dataset.load().unwrap();
    for spec in SPECS {
        let mut run = InnerRun::new(p, &data, build(p, spec, true), settings(30)).unwrap();
        run.advance(10).unwrap();
        let snap = run.snapshot().unwrap();
        run.advance(10).unwrap();
        let (at_20, curve_20) = (run.param_values().unwrap(), run.curve().to_vec());
        run.advance(10).unwrap();
        run.restore(&snap).unwrap();
        run.advance(10).unwrap();
        assert_eq!(run.param_values().unwrap(), at_20, "{spec}: restored run differs at step 20");
        assert_eq!(run.curve(), &curve_20[..], "{spec}: restored curve differs");
    }
}

/// The learned optimizers' device implementations train every family as their host rules do,
/// to float rounding (the host evaluates the per-parameter MLP with its own fused multiply-add
/// tiles and a vectorised `exp`, the device path with matrix products and candle's `exp`); and
/// a device run restored from a snapshot (VeLO's host-side LSTM state included) continues bit
/// for bit.
#[test]
fn learned_optimizers_on_the_device_path_follow_their_host_rules() {
    use beatmatch_learned::checkpoint;
    use beatmatch_learned::{mlp_lopt::MLP_LOPT, small_fc::SMALL_FC, velo::VELO};
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let fixtures = beatmatch_testkit::fixtures_dir();
    let checkpoints = [
        (VELO, fixtures.join("velo_case1.theta.msgpack")),
        (SMALL_FC, root.join("learned/checkpoints/small_fc_es_mnist1d.safetensors")),
        (MLP_LOPT, root.join("learned/checkpoints/mlp_lopt_es_mnist1d.safetensors")),
    ];
    for (arch, path) in checkpoints {
        let ckpt = checkpoint::load(&path, Some(arch)).unwrap();
        for p in problems() {
            let data = p.dataset.load().unwrap();
            let infos = p.build_model().params().to_vec();
            let device_opt = || beatmatch_learned::build_on(arch, &ckpt.theta, &ckpt.hyperparameters, 1, &infos, &Device::Cpu).unwrap();
            let host = InnerRun::new(&p, &data, beatmatch_learned::build(&ckpt, &infos).unwrap(), settings(20)).unwrap().finish().unwrap();
            let mut run = InnerRun::new(&p, &data, device_opt(), settings(20)).unwrap();
            run.advance(8).unwrap();
            let snap = run.snapshot().unwrap();
            run.advance(12).unwrap();
            let device = run.into_outcome();
            assert_eq!(host.status, device.status, "{}: {}", p.id(), arch.as_str());
            for (a, b) in host.curve.iter().zip(&device.curve) {
                let (a, b) = (a.train_loss.unwrap(), b.train_loss.unwrap());
                assert!((a - b).abs() <= 1e-5 * a.abs(), "{} {} step: host {a} vs device path {b}", p.id(), arch.as_str());
            }
            let mut again = InnerRun::new(&p, &data, device_opt(), settings(20)).unwrap();
            again.advance(3).unwrap();
            again.restore(&snap).unwrap();
            again.advance(12).unwrap();
            assert_eq!(again.into_outcome(), device, "{} {}: restored device run differs", p.id(), arch.as_str());
        }
    }
}
