//! What the native engine's integration tests share: the check of a network against candle's
//! autograd, and populations of members built from optimizer specs.

#![allow(dead_code)] // each test binary uses its part

use beatmatch_core::{Optimizer, OptimizerSpec, RunStatus};
use beatmatch_tasks::models::{self, ModelConfig};
use beatmatch_tasks::native::Batch;
use beatmatch_tasks::population::{MemberPlan, Members, OptimizerGroup, Population};
use beatmatch_tasks::train::{train, RunSettings};
use beatmatch_tasks::{Dataset, Problem, TrainOutcome};
use candle_core::{Device, Tensor, Var};
use rand::SeedableRng;

/// A language model's batch: windows `[rows][t]` of token ids (as floats) and their targets,
/// cut from one sequence with repeats (the embedding's scattered sum).
pub fn windows(vocab: usize, rows: usize, t: usize) -> (Vec<f32>, Vec<u32>) {
    let tokens: Vec<u32> = (0..rows * (t + 1)).map(|i| ((i * 5 + i * i / 3) % vocab) as u32).collect();
    let (mut x, mut y) = (Vec::new(), Vec::new());
    for r in 0..rows {
        let w = &tokens[r * (t + 1)..(r + 1) * (t + 1)];
        x.extend(w[..t].iter().map(|&v| v as f32));
        y.extend_from_slice(&w[1..]);
    }
    (x, y)
}

/// One network on one batch: `x` `[rows][input]` (token ids as floats for language models,
/// whose `y` is then `[rows][t]` targets).
pub struct Case<'a> {
    pub config: ModelConfig,
    pub shape: &'a [usize],
    pub classes: usize,
    pub x: &'a [f32],
    pub y: &'a [u32],
    pub rows: usize,
    /// Initialisation seed, and the amplitude and frequency of the sine added to every value
    /// (biases away from 0).
    pub seed: u64,
    pub nudge: (f32, f32),
}

/// The native engine's loss, evaluated sums and every gradient against candle's on the same
/// values. Tolerance: 2e-6 relative on the loss; per gradient value 1e-6 + 1e-4 relative, plus
/// 2e-6 of the tensor's largest gradient (the two sum in different orders, and a sum's rounding
/// scales with its terms, not its result: an embedding row that sums gradients of 3.8 to 0.035
/// differs by 5e-6 under candle's AVX-512 products); a parameter candle gives no gradient must
/// get zeros.
pub fn gradients_equal_candles(case: &Case<'_>, what: &str) {
    let dev = Device::Cpu;
    let Case { config, shape, classes, x, y, rows, seed, nudge } = case;
    let model = config.build(shape, *classes);
    let mut net = config.native(shape, *classes).unwrap();
    assert_eq!(net.params(), model.params(), "{what}");
    let mut values = model.init(&mut rand_chacha::ChaCha8Rng::seed_from_u64(*seed));
    for (j, v) in values.iter_mut().flatten().enumerate() {
        *v += nudge.0 * (j as f32 * nudge.1).sin();
    }
    let vars: Vec<Var> = values.iter().zip(model.params()).map(|(v, p)| Var::from_slice(v, p.shape.clone(), &dev).unwrap()).collect();
    let ts: Vec<Tensor> = vars.iter().map(|v| v.as_tensor().clone()).collect();
    let width = x.len() / rows;
    let (xt, yt) = if config.is_text() {
        let tokens: Vec<u32> = x.iter().map(|&v| v as u32).collect();
        (Tensor::from_vec(tokens, (*rows, width), &dev).unwrap(), Tensor::from_vec(y.to_vec(), (*rows, width), &dev).unwrap())
    } else {
        (Tensor::from_vec(x.to_vec(), (*rows, width), &dev).unwrap(), Tensor::from_vec(y.to_vec(), *rows, &dev).unwrap())
    };
    let loss = models::loss(model.as_ref(), &ts, &xt, &yt).unwrap();
    let candle_loss = loss.to_scalar::<f32>().unwrap();
    let candle_grads = loss.backward().unwrap();

    let params: Vec<&[f32]> = values.iter().map(Vec::as_slice).collect();
    let mut grads: Vec<Vec<f32>> = values.iter().map(|v| vec![f32::NAN; v.len()]).collect();
    let mut g: Vec<&mut [f32]> = grads.iter_mut().map(Vec::as_mut_slice).collect();
    let batch = Batch { x, y, rows: *rows };
    let losses = net.loss_and_grads(1, &[true], &params, &batch, &mut g);
    assert!((losses[0] - candle_loss).abs() <= 2e-6 * candle_loss.abs().max(1.0), "{what}: loss {} vs candle {candle_loss}", losses[0]);
    let sums = net.eval(1, &[true], &params, &batch);
    let want = models::evaluate(model.as_ref(), &ts, &xt, &yt).unwrap();
    assert_eq!(sums[0].items, want.items, "{what}: items counted");
    assert!((sums[0].mean_loss() - candle_loss).abs() <= 2e-6 * candle_loss.abs().max(1.0), "{what}: evaluated loss");
    assert_eq!(sums[0].correct, want.correct, "{what}: correct predictions");
    for (i, (var, info)) in vars.iter().zip(model.params()).enumerate() {
        let want: Vec<f32> = candle_grads.get(var).map(|g| g.flatten_all().unwrap().to_vec1().unwrap()).unwrap_or_else(|| vec![0.0; grads[i].len()]);
        assert_eq!(grads[i].len(), want.len());
        let largest = want.iter().fold(0f32, |m, v| m.max(v.abs()));
        for (j, (&a, &b)) in grads[i].iter().zip(&want).enumerate() {
            assert!((a - b).abs() <= 1e-6 + 1e-4 * b.abs() + 2e-6 * largest, "{what} {}[{j}]: native {a} vs candle {b}", info.name);
        }
    }
}

/// One optimizer over `specs`' members.
pub fn opt(p: &Problem, specs: &[&str]) -> Box<dyn Optimizer> {
    let specs: Vec<OptimizerSpec> = specs.iter().map(|s| OptimizerSpec::parse(s).unwrap()).collect();
    beatmatch_baselines::build_members(&specs, p.build_model().params()).unwrap()
}

/// A population of the given (spec, steps) members from `seed`, one optimizer group per run
/// of consecutive members sharing kind and budget.
pub fn population<'d>(p: &'d Problem, data: &'d Dataset, seed: u64, members: &[(&str, u64)]) -> Population<'d> {
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
    Population::new(p, data, seed, &plans, groups).unwrap()
}

/// One run alone from `seed`, through `train` (a population of one on the CPU).
pub fn alone(p: &Problem, data: &Dataset, seed: u64, spec: &str, steps: u64) -> TrainOutcome {
    train(p, data, opt(p, &[spec]), RunSettings { device: &Device::Cpu, seed, steps, horizon: steps }, &mut |_| {}).unwrap()
}

/// Thirty members — Adam at 15 learning rates for `steps.0` steps, SGD-momentum at the same
/// rates × `sgdm_scale` for `steps.1` — with diverging ones among them and more than 10
/// finishing; three of them in another order and company give the same records, and so does
/// each member of `alone_idx` trained alone. Returns the thirty outcomes.
pub fn members_equal_alone_and_among_3_and_30(
    p: &Problem,
    data: &Dataset,
    seed: u64,
    steps: (u64, u64),
    sgdm_scale: f64,
    alone_idx: &[usize],
) -> Vec<TrainOutcome> {
    let lrs = [1e-4, 3e-4, 1e-3, 3e-3, 1e-2, 3e-2, 1e-1, 3e-1, 1.0, 3.0, 10.0, 1e-5, 3e-5, 0.03, 0.5];
    let mut specs: Vec<(String, u64)> = lrs.iter().map(|lr| (format!("adam:lr={lr}"), steps.0)).collect();
    specs.extend(lrs.iter().map(|lr| (format!("sgdm:lr={}", lr * sgdm_scale), steps.1)));
    let thirty: Vec<(&str, u64)> = specs.iter().map(|(s, n)| (s.as_str(), *n)).collect();
    let all = population(p, data, seed, &thirty).finish().unwrap();
    assert!(all.iter().any(|o| matches!(o.status, RunStatus::Diverged { .. })), "the grid should hold diverging members");
    assert!(all.iter().filter(|o| o.status == RunStatus::Finished).count() > 10);
    let three = [thirty[20], thirty[2], thirty[9]];
    let some = population(p, data, seed, &three).finish().unwrap();
    for (i, &j) in [20usize, 2, 9].iter().enumerate() {
        assert_eq!(some[i], all[j], "member {} differs between populations of 3 and 30", thirty[j].0);
    }
    for &j in alone_idx {
        let (spec, steps) = thirty[j];
        assert_eq!(alone(p, data, seed, spec, steps), all[j], "{spec} alone differs from its record in the population of 30");
    }
    all
}
