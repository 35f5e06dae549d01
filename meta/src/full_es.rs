//! Antithetic full-episode evolution strategies (learned_optimization's
//! `outer_trainers/full_es.py`).
//!
//! Per pair i a fresh ε_i ~ N(0, σ²I); runs with θ + ε_i and θ − ε_i share the task, the
//! initialisation and every batch, and are unrolled for a whole episode; Δ_i = L⁺ − L⁻ (NaN or
//! ±∞ → 0) and ĝ = (1/N) Σ_i Δ_i ε_i / (2σ²). The meta-loss L is `avg` (the mean normalised
//! pre-update mini-batch loss over the unroll) or `last_recompute` (the normalised train loss
//! after the unroll over K fresh batches, the same batches for + and −).

use crate::inner::{unroll_length, InnerTasks};
use crate::recipe::MetaLoss;
use crate::{epsilon_frozen, finite_delta, mean, parallel_map, perturbed, stream, Purpose};
use anyhow::Result;
use rand::Rng;

/// The settings FullES reads.
#[derive(Clone, Debug)]
pub struct FullEsConfig {
    /// Antithetic pairs per outer step.
    pub pairs: usize,
    /// Standard deviation of the perturbation.
    pub sigma: f32,
    /// Unroll length bounds (steps); equal for a fixed length, else log-uniform.
    pub unroll: (u64, u64),
    /// Meta-loss.
    pub meta_loss: MetaLoss,
    /// Fresh batches for `last_recompute`.
    pub recompute_batches: usize,
    /// Seed of every random stream.
    pub seed: u64,
    /// Entries of theta held fixed (not perturbed); empty: none.
    pub frozen: Vec<bool>,
}

/// One pair's episode: which task, from which inner seed, for how many steps.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Episode {
    /// Task index.
    pub task: usize,
    /// Inner seed (initialisation and batches).
    pub seed: u64,
    /// Steps.
    pub steps: u64,
}

/// A new episode for pair `i` at outer step `t` (task uniform over `tasks`).
pub fn draw_episode(seed: u64, t: u64, i: u64, tasks: usize, unroll: (u64, u64)) -> Episode {
    let mut r = stream(seed, t, i, Purpose::Episode);
    let task = r.random_range(0..tasks.max(1));
    // Inner seeds far above the evaluation seeds (0, 1, 2, …) so meta-training never sees the
    // exact runs a report scores.
    let inner_seed = (1u64 << 40) | r.random_range(0..1u64 << 32);
    Episode { task, seed: inner_seed, steps: unroll_length(&mut r, unroll.0, unroll.1) }
}

/// What one outer step's estimate is.
#[derive(Clone, Debug, PartialEq)]
pub struct Estimate {
    /// ĝ, the meta-gradient estimate (length of theta).
    pub grad: Vec<f32>,
    /// Mean over pairs of (L⁺ + L⁻)/2: the meta-loss the step saw.
    pub meta_loss: f64,
    /// Inner steps taken (all members).
    pub inner_steps: u64,
    /// Δ_i per pair.
    pub deltas: Vec<f64>,
}

/// One pair's outcome: mean losses of the + and − members, inner steps taken, and the vector
/// its Δ multiplies (ε for full ES, the accumulated credit for PES).
pub type PairResult = Result<(f64, f64, u64, Vec<f32>)>;

/// The estimate from every pair's outcome, in pair order: ĝ = Σ Δ_i·v_i / (N · 2σ²), summed in
/// f64, the mean of the pairs' mean losses as the meta-loss.
pub fn reduce(results: Vec<PairResult>, n: usize, sigma: f32) -> Result<Estimate> {
    let pairs = results.len();
    let mut acc = vec![0f64; n];
    let mut deltas = Vec::with_capacity(pairs);
    let (mut loss_sum, mut inner_steps) = (0.0, 0);
    for r in results {
        let (lp, lm, taken, v) = r?;
        let d = finite_delta(lp, lm);
        for (a, &x) in acc.iter_mut().zip(&v) {
            *a += d * x as f64;
        }
        deltas.push(d);
        loss_sum += (lp + lm) / 2.0;
        inner_steps += taken;
    }
    let scale = 1.0 / (pairs.max(1) as f64 * 2.0 * (sigma as f64).powi(2));
    let grad = acc.into_iter().map(|a| (a * scale) as f32).collect();
    Ok(Estimate { grad, meta_loss: loss_sum / pairs.max(1) as f64, inner_steps, deltas })
}

/// One FullES estimate at `theta`, outer step `t`, pairs run on `jobs` threads.
pub fn estimate<T: InnerTasks>(tasks: &T, theta: &[f32], cfg: &FullEsConfig, t: u64, jobs: usize) -> Result<Estimate> {
    let n = theta.len();
    let mut pairs: Vec<u64> = (0..cfg.pairs as u64).collect();
    let results = parallel_map(&mut pairs, jobs, |_, &mut i| -> PairResult {
        let eps = epsilon_frozen(cfg.seed, t, i, n, cfg.sigma, &cfg.frozen);
        let ep = draw_episode(cfg.seed, t, i, tasks.len(), cfg.unroll);
        let thetas = [perturbed(theta, &eps, 1.0), perturbed(theta, &eps, -1.0)];
        let mut run = tasks.start(ep.task, ep.seed, ep.steps, &thetas)?;
        let losses = tasks.advance(&mut run, ep.steps)?;
        let taken = losses[0].len() as u64 * 2;
        let (lp, lm) = match cfg.meta_loss {
            MetaLoss::Avg => (mean(&losses[0]), mean(&losses[1])),
            MetaLoss::LastRecompute => {
                let r = tasks.recompute(&mut run, cfg.recompute_batches, ep.seed ^ 0x5eed)?;
                (r[0] as f64, r[1] as f64)
            }
        };
        Ok((lp, lm, taken, eps))
    });
    reduce(results, n, cfg.sigma)
}
