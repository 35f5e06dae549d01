//! Truncated persistent evolution strategies (learned_optimization's
//! `outer_trainers/truncated_pes.py` with `lopt_truncated_step.py`).
//!
//! Each antithetic pair keeps its ± inner runs across outer steps, with an accumulator A_i of
//! the perturbations applied since its episode began. An outer step draws a fresh ε_i, binds
//! θ ± ε_i to the running members (optimizer state kept) and unrolls K steps; their mean
//! loss difference Δ_i is credited to A_i + ε_i, so ĝ = (1/N) Σ_i Δ_i (A_i + ε_i) / (2σ²). Then
//! A_i ← A_i + ε_i, or 0 when the episode ended at the truncation's end. Episodes are a whole
//! number of truncations (checked), so a truncation never straddles a reset and the term
//! learned_optimization credits to ε_i alone (steps of a new episode begun inside the
//! truncation) does not arise.
//!
//! **One deliberate difference**: learned_optimization credits the *last* step of an ending
//! episode to ε_i alone (its `is_done` flag arrives with the step's loss, so the step is
//! treated as after the reset). That step was taken by the running episode, with the
//! accumulated perturbation, so here it is credited to A_i + ε_i. With one truncation spanning a
//! whole episode (K = episode length, A = 0) the estimate is exactly FullES's `avg` (a test
//! checks this bit for bit).
//!
//! Episodes are aligned: every pair's episodes have the recipe's fixed length and begin together, so between episodes no inner state is in flight and a checkpoint taken
//! there resumes exactly (see [`crate::trainer`]). learned_optimization staggers episodes
//! instead; aligned episodes make the truncation position the same across pairs.

use crate::full_es::{draw_episode, reduce, Episode, Estimate, PairResult};
use crate::inner::InnerTasks;
use crate::{epsilon_frozen, mean, parallel_map, perturbed};
use anyhow::{bail, Result};

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
    /// Entries of theta held fixed (not perturbed); empty: none.
    pub frozen: Vec<bool>,
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

/// One PES estimate at `theta`, outer step `t`, pairs on `jobs` threads; advances `state`.
pub fn estimate<'a, T: InnerTasks>(tasks: &'a T, state: &mut PesState<'a, T>, theta: &[f32], cfg: &PesConfig, t: u64, jobs: usize) -> Result<Estimate> {
    if cfg.truncation == 0 || !cfg.episode.is_multiple_of(cfg.truncation) {
        bail!("PES episode of {} steps is not a whole number of {}-step truncations (episodes are aligned)", cfg.episode, cfg.truncation);
    }
    let n = theta.len();
    // Per pair: (L⁺, L⁻) of the truncation, inner steps, A + ε.
    let results = parallel_map(&mut state.pairs, jobs, |i, pair| -> PairResult {
        let eps = epsilon_frozen(cfg.seed, t, i as u64, n, cfg.sigma, &cfg.frozen);
        let thetas = [perturbed(theta, &eps, 1.0), perturbed(theta, &eps, -1.0)];
        match &mut pair.run {
            Some(run) => tasks.rebind(run, &thetas)?,
            None => {
                let Episode { task, seed, .. } = draw_episode(cfg.seed, t, i as u64, tasks.len(), (cfg.episode, cfg.episode));
                pair.run = Some(tasks.start(task, seed, cfg.episode, &thetas)?);
                pair.done = 0;
            }
        }
        let losses = tasks.advance(pair.run.as_mut().expect("started above"), cfg.truncation)?;
        pair.done += cfg.truncation;
        // Every step of the truncation belongs to the running episode, the last step of an
        // ending one included: all are credited to A + ε.
        let credit: Vec<f32> = pair.accumulator.iter().zip(&eps).map(|(a, e)| a + e).collect();
        if pair.done >= cfg.episode {
            pair.run = None;
            pair.accumulator = vec![0.0; n];
        } else {
            pair.accumulator.clone_from(&credit);
        }
        Ok((mean(&losses[0]), mean(&losses[1]), losses[0].len() as u64 * 2, credit))
    });
    reduce(results, n, cfg.sigma)
}
