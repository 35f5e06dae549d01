//! `suite validate`: train reference configurations and compare with published numbers, so a
//! user can see the models and data behave like everyone else's before trusting a win rate.
//!
//! | check | configuration | published |
//! |---|---|---|
//! | `mnist1d_logreg` | logistic regression, Adam 1e-2, batch 100, 6000 steps | 32% test accuracy (Greydanus 2020, MNIST-1D paper) |
//! | `mnist1d_mlp` | MLP 100-100 ReLU, Adam 1e-2, batch 100, 6000 steps | 68% (same) |
//! | `fashion_conv` | 2 × (3×3 conv 32 + ReLU + 2×2 max pool), Adam 1e-3, batch 128, 3000 steps | ≥ 0.87 (the data set's benchmark table: 2 conv + pooling 0.876–0.916) |
//! | `moby_transformer` | byte Transformer d 128, 2 layers, 4 heads, context 64, Adam 2e-3, batch 32, 3000 steps | < 2.0 nats/char held out (the plausibility bar) |
//!
//! The MNIST-1D configurations follow the paper's notebook (hidden 100, lr 1e-2, batch 100,
//! 6000 steps); the bands around "≈" are ±8 points, wide enough for seed noise and small enough
//! to catch a broken model or data set.

use crate::factory::OptimizerFactory;
use anyhow::{bail, Result};
use beatmatch_core::OptimizerSpec;
use beatmatch_tasks::models::conv::ConvConfig;
use beatmatch_tasks::models::logreg::Logreg;
use beatmatch_tasks::models::mlp::MlpConfig;
use beatmatch_tasks::models::transformer::TransformerConfig;
use beatmatch_tasks::models::{Activation, ModelConfig, Pooling};
use beatmatch_tasks::train::{train, RunSettings};
use beatmatch_tasks::{DatasetName, Problem};
use std::process::ExitCode;
use std::time::Instant;

/// What a check measures and the published band it must fall in.
#[derive(Clone, Copy)]
enum Bar {
    /// Held-out accuracy within `[lo, hi]`.
    Accuracy { lo: f32, hi: f32 },
    /// Held-out loss below this (nats per item).
    LossBelow(f32),
}

struct Check {
    name: &'static str,
    model: ModelConfig,
    dataset: DatasetName,
    batch: usize,
    steps: u64,
    optimizer: &'static str,
    bar: Bar,
    published: &'static str,
}

fn checks() -> Vec<Check> {
    vec![
        Check {
            name: "mnist1d_logreg",
            model: ModelConfig::Logreg(Logreg {}),
            dataset: DatasetName::Mnist1d,
            batch: 100,
            steps: 6000,
            optimizer: "adam:lr=1e-2",
            bar: Bar::Accuracy { lo: 0.24, hi: 0.40 },
            published: "≈ 32% (Greydanus 2020)",
        },
        Check {
            name: "mnist1d_mlp",
            model: ModelConfig::Mlp(MlpConfig { width: 100, depth: 2, activation: Activation::Relu }),
            dataset: DatasetName::Mnist1d,
            batch: 100,
            steps: 6000,
            optimizer: "adam:lr=1e-2",
            bar: Bar::Accuracy { lo: 0.60, hi: 0.76 },
            published: "≈ 68% (Greydanus 2020)",
        },
        Check {
            name: "fashion_conv",
            model: ModelConfig::Conv(ConvConfig { channels: 32, depth: 2, pooling: Pooling::Max }),
            dataset: DatasetName::FashionMnist,
            batch: 128,
            steps: 3000,
            optimizer: "adam:lr=1e-3",
            bar: Bar::Accuracy { lo: 0.87, hi: 1.0 },
            published: "≥ 0.87 (Fashion-MNIST benchmark: 2 conv + pooling 0.876–0.916)",
        },
        Check {
            name: "moby_transformer",
            model: ModelConfig::Transformer(TransformerConfig { d_model: 128, layers: 2, heads: 4, context: 64 }),
            dataset: DatasetName::MobyDick,
            batch: 32,
            steps: 3000,
            optimizer: "adam:lr=2e-3",
            bar: Bar::LossBelow(2.0),
            published: "< 2.0 nats/char held out",
        },
    ]
}

/// The names of every check.
pub fn names() -> Vec<&'static str> {
    checks().iter().map(|c| c.name).collect()
}

/// Run the checks named in `only` (all when empty) in parallel, one thread each, from `seed`;
/// exit code 1 if any misses its band or cannot run.
pub fn run(only: &[String], seed: u64) -> Result<ExitCode> {
    let all = checks();
    for o in only {
        if !all.iter().any(|c| c.name == o) {
            bail!("unknown check `{o}`; expected one of: {}", all.iter().map(|c| c.name).collect::<Vec<_>>().join(", "));
        }
    }
    let selected: Vec<&Check> = all.iter().filter(|c| only.is_empty() || only.iter().any(|o| o == c.name)).collect();
    let bars = indicatif::MultiProgress::new();
    let style = indicatif::ProgressStyle::with_template("{prefix:<18} {wide_bar} {pos}/{len} steps ETA {eta}").expect("valid template");
    let results: Vec<(String, bool)> = std::thread::scope(|s| {
        let handles: Vec<_> = selected
            .iter()
            .map(|c| {
                let bar = bars.add(indicatif::ProgressBar::new(c.steps).with_style(style.clone()).with_prefix(c.name));
                s.spawn(move || {
                    let r = run_check(c, seed, &mut |step| bar.set_position(step));
                    bar.finish_and_clear();
                    r
                })
            })
            .collect();
        handles.into_iter().zip(&selected).map(|(h, c)| h.join().unwrap_or_else(|_| (format!("{}: panicked", c.name), false))).collect()
    });
    println!("| check | task | published | measured | verdict |\n|---|---|---|---|---|");
    let mut ok = true;
    for (line, pass) in &results {
        println!("{line}");
        ok &= pass;
    }
    Ok(if ok { ExitCode::SUCCESS } else { ExitCode::from(1) })
}

fn run_check(c: &Check, seed: u64, on_progress: &mut dyn FnMut(u64)) -> (String, bool) {
    let problem = Problem::new(c.model.clone(), c.dataset, c.batch, &[c.steps]);
    let row = |measured: String, verdict: &str| {
        format!("| {} | {} ({}, {} steps) | {} | {measured} | {verdict} |", c.name, problem.id(), c.optimizer, c.steps, c.published)
    };
    let data = match c.dataset.load() {
        Ok(d) => d,
        Err(e) => return (row(format!("not run: {e:#}"), "SKIPPED (no data)"), c.dataset.locate().is_err()),
    };
    let started = Instant::now();
    let outcome = (|| -> Result<_> {
        let spec = OptimizerSpec::parse(c.optimizer)?;
        let opt = OptimizerFactory::default().build(&spec, problem.build_model().params())?;
        let settings = RunSettings { device: &candle_core::Device::Cpu, seed, steps: c.steps, horizon: c.steps };
        train(&problem, &data, opt, settings, on_progress)
    })();
    let secs = started.elapsed().as_secs_f64();
    let last = match outcome {
        Ok(o) => o.evals.last().copied(),
        Err(e) => return (row(format!("error: {e:#}"), "FAIL"), false),
    };
    let Some(eval) = last else { return (row("no held-out evaluation (diverged)".into(), "FAIL"), false) };
    let (measured, pass) = match c.bar {
        Bar::Accuracy { lo, hi } => {
            let acc = eval.eval_accuracy.unwrap_or(f32::NAN);
            (format!("{:.1}% accuracy ({:.0} s)", 100.0 * acc, secs), (lo..=hi).contains(&acc))
        }
        Bar::LossBelow(max) => {
            let loss = eval.eval_loss.unwrap_or(f32::NAN);
            (format!("{loss:.3} nats/char ({secs:.0} s)"), loss < max)
        }
    };
    (row(measured, if pass { "ok" } else { "FAIL" }), pass)
}
