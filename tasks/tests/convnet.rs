//! The native engine's ConvNets against candle's model, and a ConvNet population against its
//! members alone.

use beatmatch_core::{Optimizer, OptimizerSpec, RunStatus};
use beatmatch_tasks::models::conv::{ConvConfig, Pooling};
use beatmatch_tasks::models::{self, ModelConfig};
use beatmatch_tasks::native::Batch;
use beatmatch_tasks::population::{MemberPlan, OptimizerGroup, Population};
use beatmatch_tasks::train::{train, RunSettings};
use beatmatch_tasks::{DatasetName, Problem};
use candle_core::{Device, Tensor, Var};
use rand::SeedableRng;

/// The engine's loss and every gradient against candle's autograd on the same values: each
/// pooling, one and two blocks (6×6 → 3×3 → 1×1 pools an odd map), three input channels,
/// a non-square odd image, and a batch of one. Tolerance: 2e-6 relative on the loss, 1e-6 +
/// 1e-4 relative per gradient value (the two sum in different orders).
#[test]
fn conv_gradients_equal_candles_backward() {
    let dev = Device::Cpu;
    let cases: [(&[usize], usize, usize, Pooling, usize); 10] = [
        (&[6, 6], 3, 1, Pooling::None, 5),
        (&[6, 6], 3, 2, Pooling::None, 5),
        (&[6, 6], 3, 1, Pooling::Max, 5),
        (&[6, 6], 3, 2, Pooling::Max, 5),
        (&[6, 6], 3, 1, Pooling::Avg, 5),
        (&[6, 6], 3, 2, Pooling::Avg, 5),
        (&[3, 4, 4], 2, 1, Pooling::Max, 5),
        (&[3, 5, 7], 4, 2, Pooling::Avg, 3),
        (&[5, 7], 2, 3, Pooling::Max, 4),
        (&[8, 8], 4, 2, Pooling::Max, 1),
    ];
    let classes = 4;
    for (shape, channels, depth, pooling, rows) in cases {
        let config = ModelConfig::Conv(ConvConfig { channels, depth, pooling });
        let what = format!("{} on {shape:?}, {rows} rows", config.id());
        let input: usize = shape.iter().product();
        let x: Vec<f32> = (0..rows * input).map(|i| (((i * 7919) % 23) as f32 - 11.0) / 7.0 + 0.01 * (i as f32).sin()).collect();
        let y: Vec<u32> = (0..rows as u32).map(|i| (i * 3 + 1) % classes as u32).collect();
        let model = config.build(shape, classes);
        let mut net = config.native(shape, classes).unwrap();
        assert_eq!(net.params(), model.params(), "{what}");
        let mut values = model.init(&mut rand_chacha::ChaCha8Rng::seed_from_u64(1));
        // Biases away from 0, so no pre-activation is exactly 0 (where the two differ).
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
        let mut grads: Vec<Vec<f32>> = values.iter().map(|v| vec![f32::NAN; v.len()]).collect();
        let mut g: Vec<&mut [f32]> = grads.iter_mut().map(Vec::as_mut_slice).collect();
        let batch = Batch { x: &x, y: &y, rows };
        let losses = net.loss_and_grads(1, &[true], &params, &batch, &mut g);
        assert!((losses[0] - candle_loss).abs() <= 2e-6 * candle_loss.abs().max(1.0), "{what}: loss {} vs candle {candle_loss}", losses[0]);
        let sums = net.eval(1, &[true], &params, &batch);
        assert_eq!(sums[0].items, rows as u64);
        assert!((sums[0].mean_loss() - candle_loss).abs() <= 2e-6 * candle_loss.abs().max(1.0), "{what}: evaluated loss");
        for (i, (var, info)) in vars.iter().zip(model.params()).enumerate() {
            let want: Vec<f32> = candle_grads.get(var).unwrap().flatten_all().unwrap().to_vec1().unwrap();
            assert_eq!(grads[i].len(), want.len());
            for (j, (&a, &b)) in grads[i].iter().zip(&want).enumerate() {
                assert!((a - b).abs() <= 1e-6 + 1e-4 * b.abs(), "{what} {}[{j}]: native {a} vs candle {b}", info.name);
            }
        }
    }
}

fn problem(pooling: Pooling) -> Problem {
    Problem::new(ModelConfig::Conv(ConvConfig { channels: 4, depth: 2, pooling }), DatasetName::Digits, 16, &[20, 40])
}

fn opt(p: &Problem, specs: &[&str]) -> Box<dyn Optimizer> {
    let specs: Vec<OptimizerSpec> = specs.iter().map(|s| OptimizerSpec::parse(s).unwrap()).collect();
    beatmatch_baselines::build_members(&specs, p.build_model().params()).unwrap()
}

/// Members of one kind and budget per group, in the order given.
fn population<'d>(p: &'d Problem, data: &'d beatmatch_tasks::Dataset, members: &[(&str, u64)]) -> Population<'d> {
    let mut groups = Vec::new();
    let mut start = 0;
    while start < members.len() {
        let kind = |s: &str| s.split(':').next().unwrap().to_string();
        let mut end = start + 1;
        while end < members.len() && kind(members[end].0) == kind(members[start].0) && members[end].1 == members[start].1 {
            end += 1;
        }
        let specs: Vec<&str> = members[start..end].iter().map(|m| m.0).collect();
        groups.push(OptimizerGroup { optimizer: opt(p, &specs), members: start..end });
        start = end;
    }
    let plans: Vec<MemberPlan> = members.iter().map(|&(_, steps)| MemberPlan { steps, horizon: steps }).collect();
    Population::new(p, data, 3, &plans, groups).unwrap()
}

fn alone(p: &Problem, data: &beatmatch_tasks::Dataset, spec: &str, steps: u64) -> beatmatch_tasks::TrainOutcome {
    train(p, data, opt(p, &[spec]), RunSettings { device: &Device::Cpu, seed: 3, steps, horizon: steps }, &mut |_| {}).unwrap()
}

/// A ConvNet member's record is the same bytes alone, among 3 and among 30 (diverging members
/// among them), with max and average pooling.
#[test]
fn a_conv_member_gives_the_same_bytes_in_populations_of_1_3_and_30() {
    for pooling in [Pooling::Max, Pooling::Avg] {
        let p = problem(pooling);
        let data = p.dataset.load().unwrap();
        let lrs = [1e-4, 3e-4, 1e-3, 3e-3, 1e-2, 3e-2, 1e-1, 3e-1, 1.0, 3.0, 10.0, 1e-5, 3e-5, 0.03, 0.5];
        let mut specs: Vec<(String, u64)> = lrs.iter().map(|lr| (format!("adam:lr={lr}"), 40)).collect();
        specs.extend(lrs.iter().map(|lr| (format!("sgdm:lr={lr}"), 20)));
        let thirty: Vec<(&str, u64)> = specs.iter().map(|(s, n)| (s.as_str(), *n)).collect();
        let all = population(&p, &data, &thirty).finish().unwrap();
        assert!(all.iter().any(|o| matches!(o.status, RunStatus::Diverged { .. })), "the grid should hold diverging members");
        assert!(all.iter().filter(|o| o.status == RunStatus::Finished).count() > 10);
        let first = all[2].curve.first().unwrap().train_loss.unwrap();
        assert!(all[2].curve.last().unwrap().train_loss.unwrap() < first, "adam 1e-3 should learn: {:?}", all[2].curve);
        let three = [thirty[20], thirty[2], thirty[9]];
        let some = population(&p, &data, &three).finish().unwrap();
        for (i, &j) in [20usize, 2, 9].iter().enumerate() {
            assert_eq!(some[i], all[j], "{pooling:?}: member {} differs between populations of 3 and 30", thirty[j].0);
        }
        for &j in &[0usize, 2, 9, 17, 20, 29] {
            let (spec, steps) = thirty[j];
            assert_eq!(alone(&p, &data, spec, steps), all[j], "{pooling:?}: {spec} alone differs from its record in the population of 30");
        }
    }
}

/// Advanced in pieces with a snapshot restored in between, a ConvNet population gives the
/// bytes of one uninterrupted run.
#[test]
fn a_conv_population_resumed_equals_one_run() {
    let p = problem(Pooling::Max);
    let data = p.dataset.load().unwrap();
    let members = [("adam:lr=1e-2", 40), ("muon:lr=0.02", 40), ("sgdm:lr=0.1", 30)];
    let whole = population(&p, &data, &members).finish().unwrap();
    let mut pop = population(&p, &data, &members);
    pop.advance(11).unwrap();
    let snap = pop.snapshot();
    pop.advance(9).unwrap();
    pop.restore(&snap).unwrap();
    pop.advance(7).unwrap();
    assert_eq!(pop.finish().unwrap(), whole);
}
