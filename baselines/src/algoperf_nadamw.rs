//! AlgoPerf's NAdamW baseline as `jax_nadamw_full_budget.py` computes it
//! (mlcommons/algorithmic-efficiency, `algorithms/baselines/external_tuning/`): its own
//! `scale_by_nadam` — Nesterov's look-ahead `(1−β₁)g + β₁m` bias-corrected by `1−β₁ᵗ`, over
//! `√(ν/(1−β₂ᵗ)) + eps` — then weight decay added to the update *before* the learning rate
//! (`u + wd·p`, so the decay scales with the schedule), then `p ← p − lr_t·u`. The schedule
//! warms up linearly from 0 over `int(warmup_factor · step_hint)` steps, then follows a cosine
//! to 0 over the rest of `step_hint`, which beatmatch sets to the task's budget. The host rule,
//! the fused device step (`bm_algoperf_nadamw`) and the kind's descriptor.

use crate::adam::{zeros, MomentHp};
use crate::kind::{bound, Hparam, Kind, ReferenceArgs, Values};
use crate::schedule::warmup_cosine;
use anyhow::{bail, Result};
use beatmatch_core::{Optimizer, OptimizerSpec, ParamInfo, StepContext, UpdateRule};
use beatmatch_device::fused::{Consts, Fused, FusedRule, Kernel};
use candle_core::Device;

/// The kind's name.
pub const NAME: &str = "algoperf_nadamw";

crate::hyperparameters! {
    /// One member's hyperparameters (defaults: AlgoPerf's self-tuning point, the `HPARAMS` of
    /// `algorithms/baselines/self_tuning/jax_nadamw_full_budget.py`; its dropout rate has no
    /// counterpart in beatmatch's tasks).
    pub struct AlgoperfNadamwHp {
        /// Peak learning rate.
        lr: f64 = 0.0017486387539278373, Positive;
        /// First-moment decay (AlgoPerf tunes `one_minus_beta1 = 1 − b1`).
        b1: f64 = 1.0 - 0.06733926164, Decay;
        /// Second-moment decay.
        b2: f64 = 0.9955159689799007, Decay;
        /// Added outside the square root (AlgoPerf fixes 1e-8).
        eps: f64 = 1e-8, Epsilon;
        /// Weight decay, added to the update before the learning rate.
        wd: f64 = 0.08121616522670176, Off;
        /// Fraction of the budget (`step_hint`) spent warming up linearly from 0.
        warmup_factor: f64 = 0.02, Fraction;
    }
}

/// One member's constants.
#[derive(Clone, Copy, Debug)]
struct Member {
    moments: MomentHp,
    wd: f32,
    lr: f64,
    warmup_factor: f64,
}

impl Member {
    fn new(h: &AlgoperfNadamwHp) -> Self {
        Self { moments: MomentHp::new(h.b1, h.b2, h.eps), wd: h.wd as f32, lr: h.lr, warmup_factor: h.warmup_factor }
    }

    /// `-lr_t` of 0-based step `count` for a budget of `step_hint` steps.
    fn neg_lr(&self, step_hint: u64, count: u64) -> f32 {
        -warmup_cosine(self.lr, self.warmup_factor, true, step_hint, count)
    }
}

/// AlgoPerf's NAdamW over one or more members.
pub struct AlgoperfNadamw {
    members: Vec<Member>,
}

impl AlgoperfNadamw {
    /// One member per entry of `members`.
    pub fn new(members: &[AlgoperfNadamwHp]) -> Self {
        Self { members: members.iter().map(Member::new).collect() }
    }
}

/// The run state: Adam's moments and the steps taken.
#[derive(Clone, Debug)]
pub struct AlgoperfNadamwState {
    /// First moments per tensor (`members × numel`).
    pub m: Vec<Vec<f32>>,
    /// Second moments per tensor.
    pub v: Vec<Vec<f32>>,
    /// Steps taken.
    pub count: u64,
}

impl UpdateRule for AlgoperfNadamw {
    type State = AlgoperfNadamwState;
    fn name(&self) -> &'static str {
        NAME
    }
    fn members(&self) -> usize {
        self.members.len()
    }
    fn init(&self, params: &[ParamInfo]) -> Self::State {
        AlgoperfNadamwState { m: zeros(params, self.members()), v: zeros(params, self.members()), count: 0 }
    }
    fn update(&self, s: &mut Self::State, params: &mut [&mut [f32]], grads: &[&[f32]], ctx: &StepContext<'_>) {
        let t = (s.count + 1) as i32;
        for (((w, g), m), v) in params.iter_mut().zip(grads).zip(&mut s.m).zip(&mut s.v) {
            let n = g.len() / self.members.len();
            if n == 0 {
                continue;
            }
            let members = w.chunks_exact_mut(n).zip(g.chunks_exact(n)).zip(m.chunks_exact_mut(n)).zip(v.chunks_exact_mut(n));
            for (k, (((w, g), m), v)) in members.enumerate() {
                let c = self.members[k];
                let MomentHp { b1, b2, one_minus_b1: w1, one_minus_b2: w2, eps } = c.moments;
                let (c1, c2) = c.moments.bias_corrections(t);
                let neg_lr = c.neg_lr(ctx.num_steps, s.count);
                for (((w, &g), m), v) in w.iter_mut().zip(g.iter()).zip(m.iter_mut()).zip(v.iter_mut()) {
                    *m = w1 * g + b1 * *m;
                    *v = w2 * (g * g) + b2 * *v;
                    let m_hat = (w1 * g + b1 * *m) / c1;
                    let u = m_hat / ((*v / c2).sqrt() + eps);
                    *w += (u + c.wd * *w) * neg_lr;
                }
            }
        }
        s.count += 1;
    }
}

/// AlgoPerf's NAdamW as a fused device step (one member).
pub struct AlgoperfNadamwStep(Member);

impl FusedRule for AlgoperfNadamwStep {
    const KERNEL: Kernel = Kernel::AlgoperfNadamw;
    const NAME: &'static str = NAME;
    fn consts(&self, steps: u64, ctx: &StepContext<'_>) -> Consts {
        let c = self.0;
        let m = c.moments;
        let (c1, c2) = m.bias_corrections((steps + 1) as i32);
        Consts::of(&[m.one_minus_b1, m.b1, m.one_minus_b2, m.b2, c1, c2, m.eps, c.wd, c.neg_lr(ctx.num_steps, steps)])
    }
}

/// The kind.
pub struct AlgoperfNadamwKind;

impl Kind for AlgoperfNadamwKind {
    fn name(&self) -> &'static str {
        NAME
    }
    fn about(&self) -> &'static str {
        "AlgoPerf's NAdamW baseline (warm-up + cosine over the budget) as jax_nadamw_full_budget.py"
    }
    fn hparams(&self) -> &'static [Hparam] {
        AlgoperfNadamwHp::HPARAMS
    }
    fn host(&self, members: &[Values], params: &[ParamInfo]) -> Box<dyn Optimizer> {
        bound(AlgoperfNadamw::new(&members.iter().map(AlgoperfNadamwHp::from_values).collect::<Vec<_>>()), params)
    }
    fn device_members(&self, members: &[Values], params: &[ParamInfo], device: &Device) -> Option<Box<dyn Optimizer>> {
        Some(beatmatch_device::on(
            Fused(members.iter().map(|member| AlgoperfNadamwStep(Member::new(&AlgoperfNadamwHp::from_values(member)))).collect()),
            params,
            device,
        ))
    }
    /// The schedule spans the budget.
    fn is_horizon_free(&self, _member: &Values) -> bool {
        false
    }
    fn reference_spec(&self, name: &str, meta: &serde_json::Value) -> Option<Result<OptimizerSpec>> {
        let optimizer = meta["optimizer"].as_str()?;
        optimizer.ends_with("jax_nadamw_full_budget.nadamw").then(|| {
            let r = ReferenceArgs::of(name, meta);
            // beatmatch gives the schedule the run's horizon as step_hint: the case must too.
            let horizon = meta["num_steps"].as_f64().or(meta["T"].as_f64()).unwrap_or(f64::NAN);
            if r.num("step_hint")? != horizon {
                bail!("{name}: step_hint {} is not the horizon {horizon} the case runs with", r.args["step_hint"]);
            }
            Ok(OptimizerSpec::new(NAME)
                .with("lr", r.num("learning_rate")?)
                .with("b1", 1.0 - r.num("one_minus_beta1")?)
                .with("b2", r.num("beta2")?)
                .with("wd", r.num("weight_decay")?)
                .with("warmup_factor", r.num("warmup_factor")?))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_schedule_warms_up_from_zero_then_decays_to_zero_over_the_budget() {
        // 10% of 100 steps: 0, 0.1·lr, … up to lr at step 10, then a cosine to 0 at step 100.
        let at = |t| warmup_cosine(2.0, 0.1, true, 100, t);
        assert_eq!(at(0), 0.0);
        assert!((at(5) - 1.0).abs() < 1e-6);
        assert_eq!(at(10), 2.0);
        assert!((at(55) - 1.0).abs() < 1e-6, "half way through the cosine: {}", at(55));
        assert!(at(100).abs() < 1e-6 && at(200).abs() < 1e-6);
        // No warm-up: the cosine starts at step 0.
        assert_eq!(warmup_cosine(2.0, 0.0, true, 100, 0), 2.0);
    }
}
