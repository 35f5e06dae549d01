//! Truncated persistent evolution strategies (learned_optimization's
//! `outer_trainers/truncated_pes.py` with `lopt_truncated_step.py`).
//!
//! Each antithetic pair keeps its ± inner runs across outer steps, with an accumulator A_i of
//! the perturbations applied since its episode began. An outer step draws a fresh ε_i, binds
//! θ ± ε_i to the running members (optimizer state kept) and unrolls K steps. Losses of steps in
//! the running episode are credited to A_i + ε_i, losses after a reset (the episode ended inside
//! the truncation and a new one began) to ε_i; each part's Δ is its mean loss difference over
//! the truncation's K steps (unmasked steps), so
//! ĝ = (1/N) Σ_i [Δ_run,i (A_i + ε_i) + Δ_new,i ε_i] / (2σ²). Then A_i ← A_i + ε_i, or ε_i
//! when a new episode began in the truncation (it has seen only ε_i), or 0 when the episode
//! ended exactly at the truncation's end.
//!
//! **One deliberate difference**: learned_optimization credits the *last* step of an ending
//! episode to ε_i alone (its `is_done` flag arrives with the step's loss, so the step is
//! treated as after the reset). That step was taken by the running episode, with the
//! accumulated perturbation, so here it is credited to A_i + ε_i. With one truncation spanning a
//! whole episode (K = episode length, A = 0) the estimate is exactly FullES's `avg` (a test
//! checks this bit for bit).
//!
//! Episodes are aligned: every pair's episodes have the recipe's fixed length (a multiple of K)
//! and begin together, so between episodes no inner state is in flight and a checkpoint taken
//! there resumes exactly (see [`crate::trainer`]). learned_optimization staggers episodes
//! instead; aligned episodes make the truncation position the same across pairs.

use crate::full_es::{accumulate, draw_episode, finish, Episode, Estimate};
use crate::inner::InnerTasks;
use crate::{epsilon, finite_delta, mean, parallel_map, perturbed};
use anyhow::Result;

/// The settings PES reads.
#[derive(Clone, Debug)]
pub struct PesConfig {
    /// Antithetic pairs.
    pub pairs: usize,
    /// Standard deviation of the perturbation.
    pub sigma: f32,
    /// Episode length (steps); a multiple of `truncation`.
    pub episode: u64,
    /// Steps per truncation (K).
    pub truncation: u64,
    /// Seed of every random stream.
    pub seed: u64,
}

/// One pair's persistent state.
pub struct Pair<'a, T: InnerTasks + 'a> {
    run: Option<T::Run<'a>>,
    /// Steps of the running episode taken (a diverged episode runs out its length at the
    /// maximum loss, so episodes stay aligned).
    done: u64,
    accumulator: Vec<f32>,
}

/// Every pair's state between outer steps.
pub struct PesState<'a, T: InnerTasks + 'a> {
    pairs: Vec<Pair<'a, T>>,
}

impl<'a, T: InnerTasks + 'a> PesState<'a, T> {
    /// No episode in flight (the state at the start, and at every episode boundary).
    pub fn fresh(cfg: &PesConfig, theta_len: usize) -> Self {
        Self { pairs: (0..cfg.pairs).map(|_| Pair { run: None, done: 0, accumulator: vec![0.0; theta_len] }).collect() }
    }

    /// Whether no pair has an episode in flight (so nothing but theta need be saved).
    pub fn between_episodes(&self) -> bool {
        self.pairs.iter().all(|p| p.run.is_none())
    }
}

/// What one pair's truncation produced.
struct PairOut {
    /// Mean losses (+, −) of the running episode's steps, weighted by their share of the truncation.
    running: (f64, f64),
    /// The same for the steps after a reset.
    after: (f64, f64),
    /// Inner steps taken (both members).
    taken: u64,
    /// A + ε, what the running part is credited to.
    credit: Vec<f32>,
    /// ε.
    eps: Vec<f32>,
}

/// One PES estimate at `theta`, outer step `t`, pairs on `jobs` threads; advances `state`.
pub fn estimate<'a, T: InnerTasks>(tasks: &'a T, state: &mut PesState<'a, T>, theta: &[f32], cfg: &PesConfig, t: u64, jobs: usize) -> Result<Estimate> {
    let n = theta.len();
    let results = parallel_map(&mut state.pairs, jobs, |i, pair| -> Result<PairOut> {
        let i = i as u64;
        let eps = epsilon(cfg.seed, t, i, n, cfg.sigma);
        let thetas = [perturbed(theta, &eps, 1.0), perturbed(theta, &eps, -1.0)];
        let start = |t_start: u64| -> Result<T::Run<'a>> {
            let Episode { task, seed, .. } = draw_episode(cfg.seed, t_start, i, tasks.len(), (cfg.episode, cfg.episode));
            tasks.start(task, seed, cfg.episode, &thetas)
        };
        match &mut pair.run {
            Some(run) => tasks.rebind(run, &thetas)?,
            None => {
                pair.run = Some(start(t)?);
                pair.done = 0;
            }
        }
        let run = pair.run.as_mut().expect("started above");
        let running = tasks.advance(run, cfg.truncation.min(cfg.episode - pair.done))?;
        let mut taken = running[0].len() as u64;
        pair.done += taken;
        let mut after: Option<Vec<Vec<f32>>> = None;
        if pair.done >= cfg.episode {
            pair.run = None;
            if taken < cfg.truncation {
                // The episode ended inside the truncation: a new one takes the remaining steps.
                let mut fresh = start(t ^ (1 << 63))?;
                let rest = tasks.advance(&mut fresh, cfg.truncation - taken)?;
                taken += rest[0].len() as u64;
                pair.done = rest[0].len() as u64;
                after = Some(rest);
                pair.run = if pair.done >= cfg.episode { None } else { Some(fresh) };
            }
        }
        let k = taken.max(1) as f64;
        let part = |l: &[Vec<f32>]| (mean(&l[0]) * l[0].len() as f64 / k, mean(&l[1]) * l[1].len() as f64 / k);
        let (rp, rm) = if running[0].len() as u64 == taken { (mean(&running[0]), mean(&running[1])) } else { part(&running) };
        let (np, nm) = after.as_deref().map(part).unwrap_or((0.0, 0.0));
        let credit: Vec<f32> = pair.accumulator.iter().zip(&eps).map(|(a, e)| a + e).collect();
        pair.accumulator = match (&after, &pair.run) {
            (Some(_), Some(_)) => eps.clone(),
            (_, None) => vec![0.0; n],
            (None, Some(_)) => credit.clone(),
        };
        Ok(PairOut { running: (rp, rm), after: (np, nm), taken: taken * 2, credit, eps })
    });
    let mut acc = vec![0f64; n];
    let mut deltas = Vec::with_capacity(cfg.pairs);
    let (mut loss_sum, mut inner_steps) = (0.0, 0);
    for r in results {
        let PairOut { running: (rp, rm), after: (np, nm), taken, credit, eps } = r?;
        let d_run = finite_delta(rp, rm);
        accumulate(&mut acc, d_run, &credit);
        let d_new = finite_delta(np, nm);
        if d_new != 0.0 {
            accumulate(&mut acc, d_new, &eps);
        }
        deltas.push(d_run + d_new);
        loss_sum += (rp + rm + np + nm) / 2.0;
        inner_steps += taken;
    }
    Ok(Estimate { grad: finish(acc, cfg.pairs, cfg.sigma), meta_loss: loss_sum / cfg.pairs.max(1) as f64, inner_steps, deltas })
}
