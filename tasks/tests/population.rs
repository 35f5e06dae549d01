//! The native dense engine against candle's models, and a population against its members alone.

mod common;

use beatmatch_core::RunStatus;
use beatmatch_tasks::dense::{Batch, DenseNet, Workspace};
use beatmatch_tasks::models::autoencoder::AutoencoderConfig;
use beatmatch_tasks::models::logreg::Logreg;
use beatmatch_tasks::models::mlp::MlpConfig;
use beatmatch_tasks::models::{self, Activation, ModelConfig};
use beatmatch_tasks::population::{Members, Population};
use beatmatch_tasks::{DatasetName, Problem};
use candle_core::{Device, Tensor, Var};
use rand::SeedableRng;

/// DenseNet's loss and every gradient against candle's on the same values.
#[test]
fn dense_gradients_equal_candles_backward() {
    let dev = Device::Cpu;
    let (rows, input, classes) = (5, 6, 3);
    let x: Vec<f32> = (0..rows * input).map(|i| ((i * 37 % 11) as f32 - 5.0) / 4.0).collect();
    let y: Vec<u32> = (0..rows as u32).map(|i| i % classes as u32).collect();
    let configs = [
        ModelConfig::Logreg(Logreg {}),
        ModelConfig::Mlp(MlpConfig { width: 7, depth: 1, activation: Activation::Relu }),
        ModelConfig::Mlp(MlpConfig { width: 7, depth: 2, activation: Activation::Tanh }),
        ModelConfig::Mlp(MlpConfig { width: 4, depth: 2, activation: Activation::Gelu }),
        ModelConfig::Autoencoder(AutoencoderConfig { width: 5, depth: 1, code: 2, activation: Activation::Tanh }),
        ModelConfig::Autoencoder(AutoencoderConfig { width: 4, depth: 0, code: 3, activation: Activation::Gelu }),
    ];
    for config in configs {
        let out = if matches!(config, ModelConfig::Autoencoder(AutoencoderConfig { .. })) { input } else { classes };
        let model = config.build(&[input], out);
        let net = DenseNet::for_config(&config, input, out).unwrap();
        assert_eq!(net.params(), model.params());
        let mut values = model.init(&mut rand_chacha::ChaCha8Rng::seed_from_u64(1));
        for (j, v) in values.iter_mut().flatten().enumerate() {
            *v += 0.05 * (j as f32 * 1.7).sin();
        }
        let vars: Vec<Var> = values.iter().zip(model.params()).map(|(v, p)| Var::from_slice(v, p.shape.clone(), &dev).unwrap()).collect();
        let ts: Vec<Tensor> = vars.iter().map(|v| v.as_tensor().clone()).collect();
        let xt = Tensor::from_vec(x.clone(), (rows, input), &dev).unwrap();
        let yt = Tensor::from_vec(y.clone(), rows, &dev).unwrap();
        let loss = models::loss(model.as_ref(), &ts, &xt, &yt).unwrap();
        let candle_loss = loss.to_scalar::<f32>().unwrap();
        let candle_grads = loss.backward().unwrap();

        let params: Vec<&[f32]> = values.iter().map(Vec::as_slice).collect();
        let mut grads: Vec<Vec<f32>> = values.iter().map(|v| vec![0.0; v.len()]).collect();
        let mut g: Vec<&mut [f32]> = grads.iter_mut().map(Vec::as_mut_slice).collect();
        let batch = Batch { x: &x, y: &y, rows };
        let losses = net.loss_and_grads(1, &[true], &params, &batch, &mut g, &mut Workspace::default());
        assert!((losses[0] - candle_loss).abs() <= 2e-6 * candle_loss.abs().max(1.0), "{config:?}: loss {} vs candle {candle_loss}", losses[0]);
        for (i, (var, info)) in vars.iter().zip(model.params()).enumerate() {
            let want: Vec<f32> = candle_grads.get(var).unwrap().flatten_all().unwrap().to_vec1().unwrap();
            for (j, (&a, &b)) in grads[i].iter().zip(&want).enumerate() {
                assert!((a - b).abs() <= 1e-6 + 1e-4 * b.abs(), "{config:?} {}[{j}]: dense {a} vs candle {b}", info.name);
            }
        }
    }
}

/// The dense engine's loss and gradients of a member among 30 (its first layer's products run
/// side by side with the others') are the bits of the member alone, at the registry's input
/// widths: 40 (MNIST-1D) and 784 (MNIST and Fashion-MNIST, deeper than the `gemm` crate's
/// 512-deep blocks, where 32 rows run six or eight members at a time and 128 rows all of them),
/// members that are not live among them.
#[test]
fn a_dense_member_among_30_computes_its_bits_alone() {
    let configs = [
        ModelConfig::Logreg(Logreg {}),
        ModelConfig::Mlp(MlpConfig { width: 8, depth: 2, activation: Activation::Gelu }),
        ModelConfig::Mlp(MlpConfig { width: 32, depth: 1, activation: Activation::Relu }),
        ModelConfig::Autoencoder(AutoencoderConfig { width: 16, depth: 1, code: 4, activation: Activation::Tanh }),
    ];
    let k = 30;
    for config in configs {
        for (input, rows) in [(40, 32), (784, 32), (784, 128)] {
            let out = if matches!(config, ModelConfig::Autoencoder(_)) { input } else { 10 };
            let net = DenseNet::for_config(&config, input, out).unwrap();
            let x: Vec<f32> = (0..rows * input).map(|i| ((i * 37 % 101) as f32 - 50.0) / 60.0).collect();
            let y: Vec<u32> = (0..rows as u32).map(|i| i % 10).collect();
            let batch = Batch { x: &x, y: &y, rows };
            // Every member's values differ: one sine along the member-major buffers.
            let values: Vec<Vec<f32>> = net.params().iter().map(|p| (0..k * p.numel()).map(|i| 0.1 * (i as f32 * 0.37).sin()).collect()).collect();
            let params: Vec<&[f32]> = values.iter().map(Vec::as_slice).collect();
            let mut grads: Vec<Vec<f32>> = values.iter().map(|v| vec![f32::NAN; v.len()]).collect();
            let mut g: Vec<&mut [f32]> = grads.iter_mut().map(Vec::as_mut_slice).collect();
            let live: Vec<bool> = (0..k).map(|m| m % 7 != 3).collect();
            let losses = net.loss_and_grads(k, &live, &params, &batch, &mut g, &mut Workspace::default());
            for m in (0..k).filter(|&m| live[m]) {
                let own: Vec<&[f32]> = net.params().iter().zip(&values).map(|(p, v)| &v[m * p.numel()..][..p.numel()]).collect();
                let mut alone: Vec<Vec<f32>> = net.params().iter().map(|p| vec![f32::NAN; p.numel()]).collect();
                let mut ga: Vec<&mut [f32]> = alone.iter_mut().map(Vec::as_mut_slice).collect();
                let loss = net.loss_and_grads(1, &[true], &own, &batch, &mut ga, &mut Workspace::default())[0];
                assert_eq!(loss.to_bits(), losses[m].to_bits(), "{config:?} {input}×{rows}: member {m}'s loss");
                for ((p, a), g) in net.params().iter().zip(&alone).zip(&grads) {
                    let among = &g[m * p.numel()..][..p.numel()];
                    assert!(a.iter().zip(among).all(|(a, b)| a.to_bits() == b.to_bits()), "{config:?} {input}×{rows}: member {m}'s {}", p.name);
                }
            }
        }
    }
}

fn problem() -> Problem {
    Problem::new(ModelConfig::Mlp(MlpConfig { width: 16, depth: 2, activation: Activation::Tanh }), DatasetName::Mnist1d, 32, &[30, 60])
}

fn population<'d>(p: &'d Problem, data: &'d beatmatch_tasks::Dataset, members: &[(&str, u64)]) -> Population<'d> {
    common::population(p, data, 5, members)
}

fn alone(p: &Problem, data: &beatmatch_tasks::Dataset, spec: &str, steps: u64) -> beatmatch_tasks::TrainOutcome {
    common::alone(p, data, 5, spec, steps)
}

#[test]
fn a_member_gives_the_same_bytes_in_populations_of_1_3_and_30() {
    let p = problem();
    let data = p.dataset.load().unwrap();
    // Each of the thirty alone too (a population of one, through `train`).
    common::members_equal_alone_and_among_3_and_30(&p, &data, 5, (60, 30), 1.0, &(0..30).collect::<Vec<_>>());
}

#[test]
fn a_diverging_member_leaves_the_others_unchanged_and_shorter_budgets_end_early() {
    let p = problem();
    let data = p.dataset.load().unwrap();
    let members = [("sgdm:lr=0.1", 60), ("sgdm:lr=1000", 60), ("sgdm:lr=0.05", 60)];
    let mut pop = population(&p, &data, &members);
    pop.advance(10).unwrap();
    assert!(matches!(pop.ended(1), Some(RunStatus::Diverged { .. })), "lr 1000 diverges within 10 steps: {:?}", pop.ended(1));
    assert!(pop.ended(0).is_none() && pop.ended(2).is_none());
    let out = pop.finish().unwrap();
    assert_eq!(out[0], alone(&p, &data, "sgdm:lr=0.1", 60));
    assert_eq!(out[2], alone(&p, &data, "sgdm:lr=0.05", 60));
    let short = population(&p, &data, &[("adam:lr=1e-2", 30), ("adam:lr=1e-3", 60)]).finish().unwrap();
    assert_eq!(short[0].curve.last().unwrap().step, 30);
    assert_eq!(short[1].curve.last().unwrap().step, 60);
    assert_eq!(short[0], alone(&p, &data, "adam:lr=1e-2", 30));
}

#[test]
fn a_population_advanced_in_pieces_or_restored_equals_one_run() {
    let p = problem();
    let data = p.dataset.load().unwrap();
    let members = [("adam:lr=1e-2", 60), ("adam:lr=3e-3", 60), ("lion:lr=1e-3", 45)];
    let whole = population(&p, &data, &members).finish().unwrap();
    let mut pop = population(&p, &data, &members);
    assert_eq!(pop.advance(17).unwrap(), 17);
    let snap = pop.snapshot();
    pop.advance(20).unwrap();
    pop.restore(&snap).unwrap();
    assert_eq!(pop.step(), 17);
    pop.advance(13).unwrap();
    assert_eq!(pop.finish().unwrap(), whole);
}

/// The 2026 baselines in one population, several members per kind with their own
/// hyperparameters and budgets, Schedule-Free (measured at its evaluation point) among
/// evaluated-in-place kinds: every member's record is the bytes of its run alone.
#[test]
fn the_2026_kinds_give_each_member_its_bytes_alone() {
    let p = problem();
    let data = p.dataset.load().unwrap();
    let members = [
        ("sfadamw:lr=1e-2,warmup_steps=5", 60),
        ("sfadamw:lr=3e-3,b1=0.8,wd=1e-3", 60),
        ("muon:lr=0.02", 60),
        ("muon:lr=0.05,nesterov=0,adam_lr=3e-3,adam_io=1", 60),
        ("muon:lr=0.01,ns_steps=3,eps=1e-6", 45),
        ("ademamix:lr=1e-3", 45),
        ("ademamix:lr=3e-3,alpha=8", 45),
        ("algoperf_nadamw:lr=2e-3", 60),
        ("algoperf_nadamw:lr=1e-3", 30),
        ("sfadamw:lr=1e-3", 30),
        ("soap:lr=3e-3,precondition_frequency=5", 60),
        // The same factors as the member above (one batch), refreshing on other steps.
        ("soap:lr=1e-2,precondition_frequency=3,wd=0", 60),
        ("soap:lr=1e-3,b1=0.9,merge_dims=1,precondition_1d=1,max_precond_dim=64,precondition_frequency=7", 45),
    ];
    let all = population(&p, &data, &members).finish().unwrap();
    assert!(all.iter().all(|o| o.status == RunStatus::Finished), "every member should finish: {:?}", all.iter().map(|o| &o.status).collect::<Vec<_>>());
    for (&(spec, steps), out) in members.iter().zip(&all) {
        assert_eq!(&alone(&p, &data, spec, steps), out, "{spec} alone differs from its record in the population");
    }
}
