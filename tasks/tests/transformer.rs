//! The native engine's Transformer language models against candle's model, and a Transformer
//! population against its members alone.

use beatmatch_core::{Optimizer, OptimizerSpec, RunStatus};
use beatmatch_tasks::models::transformer::TransformerConfig;
use beatmatch_tasks::models::{self, ModelConfig};
use beatmatch_tasks::native::Batch;
use beatmatch_tasks::population::{MemberPlan, OptimizerGroup, Population};
use beatmatch_tasks::train::{train, RunSettings};
use beatmatch_tasks::{DatasetName, Problem};
use candle_core::{Device, Tensor, Var};
use rand::SeedableRng;

/// The engine's loss and every gradient against candle's autograd on the same values: one and
/// two blocks, one to four heads, windows of one token and of several (shorter than the
/// context: the position table's unused rows get no gradient), a batch of one, tokens that
/// repeat within a window (the embedding's scattered sum). Tolerance: 2e-6 relative on
/// the loss, 1e-6 + 1e-4 relative per gradient value.
#[test]
fn transformer_gradients_equal_candles_backward() {
    let dev = Device::Cpu;
    // (vocabulary, d_model, layers, heads, context, windows, tokens per window)
    let cases = [(6, 4, 1, 2, 4, 2, 4), (7, 8, 2, 2, 5, 2, 5), (5, 6, 1, 3, 4, 3, 1), (9, 8, 2, 4, 6, 1, 6), (6, 4, 1, 1, 7, 2, 3)];
    for (vocab, d_model, layers, heads, context, rows, t) in cases {
        let config = ModelConfig::Transformer(TransformerConfig { d_model, layers, heads, context });
        let what = format!("{} (vocabulary {vocab}), {rows} windows", config.id());
        let tokens: Vec<u32> = (0..rows * (t + 1)).map(|i| ((i * 5 + i * i / 3) % vocab) as u32).collect();
        let (mut x, mut y) = (Vec::new(), Vec::new());
        for r in 0..rows {
            let w = &tokens[r * (t + 1)..(r + 1) * (t + 1)];
            x.extend(w[..t].iter().map(|&v| v as f32));
            y.extend_from_slice(&w[1..]);
        }
        let model = config.build(&[1], vocab);
        let mut net = config.native(&[1], vocab).unwrap();
        assert_eq!(net.params(), model.params(), "{what}");
        let mut values = model.init(&mut rand_chacha::ChaCha8Rng::seed_from_u64(2));
        for (j, v) in values.iter_mut().flatten().enumerate() {
            *v += 0.1 * (j as f32 * 1.3).sin();
        }
        let vars: Vec<Var> = values.iter().zip(model.params()).map(|(v, p)| Var::from_slice(v, p.shape.clone(), &dev).unwrap()).collect();
        let ts: Vec<Tensor> = vars.iter().map(|v| v.as_tensor().clone()).collect();
        let xt = Tensor::from_vec(x.iter().map(|&v| v as u32).collect::<Vec<_>>(), (rows, t), &dev).unwrap();
        let yt = Tensor::from_vec(y.clone(), (rows, t), &dev).unwrap();
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
        assert_eq!(sums[0].items, (rows * t) as u64, "{what}: tokens counted");
        assert!((sums[0].mean_loss() - candle_loss).abs() <= 2e-6 * candle_loss.abs().max(1.0), "{what}: evaluated loss");
        let want = models::evaluate(model.as_ref(), &ts, &xt, &yt).unwrap();
        assert_eq!(sums[0].correct, want.correct, "{what}: correct predictions");
        for (i, (var, info)) in vars.iter().zip(model.params()).enumerate() {
            let want: Vec<f32> = candle_grads.get(var).map(|g| g.flatten_all().unwrap().to_vec1().unwrap()).unwrap_or_else(|| vec![0.0; grads[i].len()]);
            assert_eq!(grads[i].len(), want.len());
            for (j, (&a, &b)) in grads[i].iter().zip(&want).enumerate() {
                assert!((a - b).abs() <= 1e-6 + 1e-4 * b.abs(), "{what} {}[{j}]: native {a} vs candle {b}", info.name);
            }
        }
    }
}

fn problem() -> Problem {
    Problem::new(ModelConfig::Transformer(TransformerConfig { d_model: 8, layers: 2, heads: 2, context: 6 }), DatasetName::MobyDick, 4, &[15, 30])
}

fn opt(p: &Problem, specs: &[&str]) -> Box<dyn Optimizer> {
    let specs: Vec<OptimizerSpec> = specs.iter().map(|s| OptimizerSpec::parse(s).unwrap()).collect();
    beatmatch_baselines::build_members(&specs, p.build_model().params()).unwrap()
}

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
    Population::new(p, data, 7, &plans, groups).unwrap()
}

fn alone(p: &Problem, data: &beatmatch_tasks::Dataset, spec: &str, steps: u64) -> beatmatch_tasks::TrainOutcome {
    train(p, data, opt(p, &[spec]), RunSettings { device: &Device::Cpu, seed: 7, steps, horizon: steps }, &mut |_| {}).unwrap()
}

/// A Transformer member's record (held-out next-byte loss included) is the same bytes alone, among
/// 3 and among 30, diverging members among them; a population resumed from a snapshot is one
/// uninterrupted run.
#[test]
fn a_transformer_member_gives_the_same_bytes_in_populations_of_1_3_and_30() {
    let p = problem();
    let data = p.dataset.load().unwrap();
    let lrs = [1e-4, 3e-4, 1e-3, 3e-3, 1e-2, 3e-2, 1e-1, 3e-1, 1.0, 3.0, 10.0, 1e-5, 3e-5, 0.03, 0.5];
    let mut specs: Vec<(String, u64)> = lrs.iter().map(|lr| (format!("adam:lr={lr}"), 30)).collect();
    specs.extend(lrs.iter().map(|lr| (format!("sgdm:lr={}", lr * 1000.0), 15)));
    let thirty: Vec<(&str, u64)> = specs.iter().map(|(s, n)| (s.as_str(), *n)).collect();
    let all = population(&p, &data, &thirty).finish().unwrap();
    assert!(all.iter().any(|o| matches!(o.status, RunStatus::Diverged { .. })), "the grid should hold diverging members");
    assert!(all.iter().filter(|o| o.status == RunStatus::Finished).count() > 10);
    let three = [thirty[20], thirty[2], thirty[9]];
    let some = population(&p, &data, &three).finish().unwrap();
    for (i, &j) in [20usize, 2, 9].iter().enumerate() {
        assert_eq!(some[i], all[j], "member {} differs between populations of 3 and 30", thirty[j].0);
    }
    for &j in &[0usize, 4, 9, 17, 20, 29] {
        let (spec, steps) = thirty[j];
        assert_eq!(alone(&p, &data, spec, steps), all[j], "{spec} alone differs from its record in the population of 30");
    }
    let members = [thirty[4], thirty[17]];
    let whole = population(&p, &data, &members).finish().unwrap();
    let mut pop = population(&p, &data, &members);
    pop.advance(8).unwrap();
    let snap = pop.snapshot();
    pop.advance(5).unwrap();
    pop.restore(&snap).unwrap();
    assert_eq!(pop.finish().unwrap(), whole);
}
