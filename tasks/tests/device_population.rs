//! Device populations on candle's CPU device: a member's record is the same bits alone, in a
//! population of 3 and of 30, and the device path's run alone ([`InnerRun`]) — for every
//! family (logistic regression, MLPs, autoencoders, ConvNets with max and average pooling, LSTM
//! and Transformer language models), members of one fused
//! kernel stepped together and rules stepped one member at a time, learned optimizers,
//! Schedule-Free measured at its evaluation point, members that diverge (alone and within a
//! fused group) and budgets that end early; and a population advanced in pieces is one
//! advanced at once.

use beatmatch_core::{Optimizer, OptimizerSpec, RunStatus};
use beatmatch_tasks::device_population::DevicePopulation;
use beatmatch_tasks::inner::{InnerRun, RunSettings};
use beatmatch_tasks::models::autoencoder::AutoencoderConfig;
use beatmatch_tasks::models::conv::ConvConfig;
use beatmatch_tasks::models::logreg::Logreg;
use beatmatch_tasks::models::lstm::LstmConfig;
use beatmatch_tasks::models::mlp::MlpConfig;
use beatmatch_tasks::models::transformer::TransformerConfig;
use beatmatch_tasks::models::{Activation, ModelConfig, Pooling};
use beatmatch_tasks::population::{MemberPlan, Members, OptimizerGroup};
use beatmatch_tasks::{Dataset, DatasetName, Problem, TrainOutcome};
use candle_core::Device;

const SEED: u64 = 5;

fn mlp() -> Problem {
    Problem::new(ModelConfig::Mlp(MlpConfig { width: 16, depth: 2, activation: Activation::Gelu }), DatasetName::Mnist1d, 32, &[20, 40])
}

fn build(p: &Problem, spec: &str) -> Box<dyn Optimizer> {
    build_members(p, &[spec])
}

/// One device rule over `specs` (several members of one fused kind, or one member).
fn build_members(p: &Problem, specs: &[&str]) -> Box<dyn Optimizer> {
    let infos = p.build_model().params().to_vec();
    let specs: Vec<OptimizerSpec> = specs.iter().map(|s| OptimizerSpec::parse(s).unwrap()).collect();
    beatmatch_baselines::build_on(&specs, &infos, &Device::Cpu).unwrap()
}

/// A population of `members` (spec, steps): runs of one fused kind stepped as one group,
/// every other member a group of its own.
fn population<'d>(p: &'d Problem, data: &'d Dataset, members: &[(&str, u64)]) -> DevicePopulation<'d> {
    let plans: Vec<MemberPlan> = members.iter().map(|&(_, steps)| MemberPlan { steps, horizon: steps }).collect();
    let kind = |m: usize| members[m].0.split(':').next().unwrap();
    let mut groups = Vec::new();
    let mut start = 0;
    while start < members.len() {
        let fused = beatmatch_baselines::steps_members_on_device(&OptimizerSpec::parse(members[start].0).unwrap());
        let mut end = start + 1;
        while fused && end < members.len() && kind(end) == kind(start) && plans[end].horizon == plans[start].horizon {
            end += 1;
        }
        let specs: Vec<&str> = members[start..end].iter().map(|m| m.0).collect();
        groups.push(OptimizerGroup { optimizer: build_members(p, &specs), members: start..end });
        start = end;
    }
    DevicePopulation::new(p, data, SEED, &Device::Cpu, &plans, groups).unwrap()
}

/// The device path's run alone (candle's single-member forward, one run at a time).
fn alone(p: &Problem, data: &Dataset, optimizer: Box<dyn Optimizer>, steps: u64) -> TrainOutcome {
    let settings = RunSettings { device: &Device::Cpu, seed: SEED, steps, horizon: steps };
    InnerRun::new(p, data, optimizer, settings).unwrap().finish().unwrap()
}

#[test]
fn a_member_gives_the_same_bits_alone_among_3_and_30_and_as_a_run_alone() {
    let autoencoder = ModelConfig::Autoencoder(AutoencoderConfig { width: 12, depth: 1, code: 4, activation: Activation::Tanh });
    let lstm = ModelConfig::Lstm(LstmConfig { hidden: 8, layers: 2, context: 8 });
    let transformer = ModelConfig::Transformer(TransformerConfig { d_model: 8, layers: 2, heads: 2, context: 8 });
    let problems = [
        mlp(),
        Problem::new(ModelConfig::Logreg(Logreg {}), DatasetName::Mnist1d, 16, &[40]),
        Problem::new(autoencoder, DatasetName::Mnist1d, 8, &[40]),
        Problem::new(lstm, DatasetName::MobyDick, 4, &[40]),
        Problem::new(transformer, DatasetName::MobyDick, 4, &[40]),
        Problem::new(ModelConfig::Conv(ConvConfig { channels: 4, depth: 2, pooling: Pooling::Max }), DatasetName::Digits, 8, &[40]),
        Problem::new(ModelConfig::Conv(ConvConfig { channels: 3, depth: 1, pooling: Pooling::Avg }), DatasetName::Digits, 8, &[40]),
    ];
    let lrs: Vec<String> = (0..30).map(|i| format!("adam:lr={}", 1e-3 * 1.2f64.powi(i))).collect();
    for p in &problems {
        let data = p.dataset.load().unwrap();
        let thirty: Vec<(&str, u64)> = lrs.iter().map(|s| (s.as_str(), 40)).collect();
        let all = population(p, &data, &thirty).finish().unwrap();
        let three = population(p, &data, &thirty[9..12]).finish().unwrap();
        for (j, m) in [9, 10, 11].into_iter().enumerate() {
            let one = population(p, &data, &thirty[m..m + 1]).finish().unwrap();
            assert_eq!(all[m], one[0], "{}: member {m} among 30 vs alone", p.id());
            assert_eq!(three[j], one[0], "{}: member {m} among 3 vs alone", p.id());
            assert_eq!(one[0], alone(p, &data, build(p, thirty[m].0), 40), "{}: member {m} vs the device path's run", p.id());
        }
        assert_ne!(all[0].curve, all[29].curve, "{}: the members trained differently", p.id());
    }
}

/// Several kinds side by side, Schedule-Free among them (measured at its evaluation point), a
/// learned optimizer's device rule, a member that diverges and budgets that end early.
#[test]
fn mixed_optimizers_divergence_and_short_budgets_give_each_member_its_run_alone() {
    let p = mlp();
    let data = p.dataset.load().unwrap();
    // Groups: sfadamw alone; sgdm's three (one diverging) as one fused group; lion alone (its
    // own horizon); muon alone; adam's two as one fused group; soap alone, diverging.
    let members = [
        ("sfadamw:lr=1e-2,warmup_steps=3", 40),
        ("sgdm:lr=0.05", 40),
        ("sgdm:lr=1000", 40),
        ("sgdm:lr=0.1,momentum=0.5,nesterov=1", 40),
        ("lion:lr=1e-3,wd=0.1", 20),
        ("muon:lr=0.02,adam_lr=1e-2", 40),
        ("adam:lr=3e-3", 30),
        ("adam:lr=1e-2", 30),
        ("soap:lr=1000", 40),
    ];
    let mut pop = population(&p, &data, &members);
    pop.advance(10).unwrap();
    assert!(matches!(pop.ended(2), Some(RunStatus::Diverged { .. })), "lr 1000 diverges within 10 steps: {:?}", pop.ended(2));
    let out = pop.finish().unwrap();
    assert!(matches!(out[8].status, RunStatus::Diverged { .. }), "soap at lr 1000 diverges: {:?}", out[8].status);
    for (m, &(spec, steps)) in members.iter().enumerate() {
        assert_eq!(out[m], alone(&p, &data, build(&p, spec), steps), "{spec}");
        if ![2, 8].contains(&m) {
            assert_eq!(out[m].curve.last().unwrap().step, steps, "{spec} ends at its budget");
        }
    }
    // Learned optimizers' device rules (small_fc's fused kernel; VeLO's with its per-tensor
    // LSTM on the host) beside a baseline.
    use beatmatch_learned::{checkpoint, small_fc::SMALL_FC, velo::VELO};
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let infos = p.build_model().params().to_vec();
    for (arch, path) in [
        (SMALL_FC, root.join("learned/checkpoints/small_fc_es_mnist1d.safetensors")),
        (VELO, beatmatch_testkit::fixtures_dir().join("velo_case1.theta.msgpack")),
    ] {
        let ckpt = checkpoint::load(&path, Some(arch)).unwrap();
        let learned = || beatmatch_learned::build_on(arch, &ckpt.theta, &ckpt.hyperparameters, 1, &infos, &Device::Cpu).unwrap();
        let plans = [MemberPlan { steps: 20, horizon: 20 }; 3];
        let groups =
            [build(&p, "adam:lr=1e-2"), learned(), learned()].into_iter().enumerate().map(|(m, optimizer)| OptimizerGroup { optimizer, members: m..m + 1 });
        let out = DevicePopulation::new(&p, &data, SEED, &Device::Cpu, &plans, groups.collect()).unwrap().finish().unwrap();
        let one = alone(&p, &data, learned(), 20);
        assert_eq!((&out[1], &out[2]), (&one, &one), "{}", arch.as_str());
    }
}

#[test]
fn a_population_advanced_in_pieces_equals_one_advanced_at_once() {
    let p = mlp();
    let data = p.dataset.load().unwrap();
    let members = [("adam:lr=1e-2", 40), ("adam:lr=3e-3", 40), ("lion:lr=1e-3", 25)];
    let whole = population(&p, &data, &members).finish().unwrap();
    let mut pop = population(&p, &data, &members);
    assert_eq!(pop.advance(17).unwrap(), 17);
    assert_eq!(pop.batch_losses(0).len(), 17);
    pop.advance(13).unwrap();
    assert_eq!(pop.step(), 30);
    assert_eq!(pop.finish().unwrap(), whole);
}
