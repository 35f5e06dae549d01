//! Schedule-Free AdamW (Defazio et al. 2024, AlgoPerf's self-tuning winner) as optax 0.2.8's
//! `optax.contrib.schedule_free_adamw`. It trains at one point, `y`, and is evaluated at
//! another, `x`: a base step `u = −lr_t·(g/(√ν̂ + eps) + wd·y)` (RMS scaling with bias
//! correction, no momentum) moves `z ← z + u`; `x` is the `c_t`-weighted average of the `z`s
//! (`c_t = max_lr_t^p / Σ max_lr^p`), and `y = β₁·x + (1 − β₁)·z`. Every measurement of a run is
//! taken at `x = (y − (1 − β₁)·z)/β₁` ([`UpdateRule::eval_params`]). The learning rate warms up
//! linearly from 0 over `warmup_steps` (0: constant), as optax's `warmup_constant_schedule`
//! — evaluated, as optax does, at step `t + 1` for the weights and at step `t` for the base
//! step. The host rule, the device rule ([`device`]) and the kind's descriptor.

pub mod device;

use crate::kind::{bound, Hparam, Kind, ReferenceArgs, Values};
use anyhow::Result;
use beatmatch_core::{Optimizer, OptimizerSpec, ParamInfo, StepContext, UpdateRule};
use candle_core::Device;

/// The kind's name.
pub const NAME: &str = "sfadamw";

crate::hyperparameters! {
    /// One Schedule-Free AdamW member's hyperparameters (defaults: optax's).
    pub struct SfAdamwHp {
        /// Peak learning rate.
        lr: f64 = 0.0025, Positive;
        /// Steps of linear warm-up from 0 (0: a constant learning rate).
        warmup_steps: usize = 0.0, Steps;
        /// Interpolation between the average `x` and the base iterate `z` (the momentum).
        b1: f64 = 0.9, OpenFraction;
        /// Second-moment decay.
        b2: f64 = 0.999, Decay;
        /// Added outside the square root.
        eps: f64 = 1e-8, Epsilon;
        /// Weight decay at `y`, inside the base step.
        wd: f64 = 0.0, Off;
        /// Power of the peak learning rate that weights each iterate in the average.
        weight_lr_power: f64 = 2.0, Off;
    }
}

/// One member's constants.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Member {
    lr: f64,
    warmup: u64,
    b1: f32,
    one_minus_b1: f32,
    b2: f32,
    one_minus_b2: f32,
    eps: f32,
    wd: f32,
    power: f32,
}

impl Member {
    pub(crate) fn new(h: &SfAdamwHp) -> Self {
        Self {
            lr: h.lr,
            warmup: h.warmup_steps as u64,
            b1: h.b1 as f32,
            one_minus_b1: (1.0 - h.b1) as f32,
            b2: h.b2 as f32,
            one_minus_b2: (1.0 - h.b2) as f32,
            eps: h.eps as f32,
            wd: h.wd as f32,
            power: h.weight_lr_power as f32,
        }
    }

    /// The schedule at `count`: optax's `warmup_constant_schedule(0, lr, warmup)` in f32 (a
    /// constant `lr` without warm-up).
    fn lr_at(&self, count: u64) -> f32 {
        if self.warmup == 0 {
            return self.lr as f32;
        }
        let frac = 1.0 - count.min(self.warmup) as f32 / self.warmup as f32;
        (-self.lr) as f32 * frac + self.lr as f32
    }

    /// The step's scalars from the member's running `max_lr` and `weight_sum` after `t` steps:
    /// `(c_t, −lr of the base step, 1 − β₂ᵗ⁺¹)`, updating the running pair.
    pub(crate) fn scalars(&self, t: u64, max_lr: &mut f32, weight_sum: &mut f32) -> (f32, f32, f32) {
        *max_lr = max_lr.max(self.lr_at(t + 1));
        let weight = max_lr.powf(self.power);
        let total = *weight_sum + weight;
        let ck = if weight.is_nan() || total.is_nan() {
            f32::NAN
        } else {
            let r = weight / total;
            if r.is_nan() {
                0.0
            } else {
                r
            }
        };
        *weight_sum = total;
        (ck, -self.lr_at(t), 1.0 - self.b2.powi(t as i32 + 1))
    }

    /// One element's step: `(y, z, ν)` updated in place from gradient `g`.
    #[inline]
    fn step(&self, (ck, neg_lr, c2): (f32, f32, f32), y: &mut f32, z: &mut f32, nu: &mut f32, g: f32) {
        *nu = self.one_minus_b2 * (g * g) + self.b2 * *nu;
        let scaling = 1.0 / ((*nu / c2).sqrt() + self.eps);
        let u = (scaling * g + self.wd * *y) * neg_lr;
        let z_new = *z + u;
        let prev_x = (*y - self.one_minus_b1 * *z) / self.b1;
        let x = (1.0 - ck) * prev_x + ck * z_new;
        let y_new = self.b1 * x + self.one_minus_b1 * z_new;
        *y += y_new - *y;
        *z = z_new;
    }

    /// The point `y` is evaluated at: `x = (y − (1 − β₁)·z)/β₁`, with `1 − β₁` in f32 as optax
    /// computes it from the state's β₁.
    #[inline]
    fn eval(&self, y: f32, z: f32) -> f32 {
        (y - (1.0 - self.b1) * z) / self.b1
    }
}

/// Schedule-Free AdamW over one or more members.
pub struct SfAdamw {
    members: Vec<Member>,
}

impl SfAdamw {
    /// One member per entry of `members`.
    pub fn new(members: &[SfAdamwHp]) -> Self {
        Self { members: members.iter().map(Member::new).collect() }
    }
}

/// The run state.
#[derive(Clone, Debug, Default)]
pub struct SfAdamwState {
    /// The base iterate `z` per tensor (`members × numel`; empty before the first step, which
    /// starts it at the parameters).
    pub z: Vec<Vec<f32>>,
    /// Second moment per tensor.
    pub nu: Vec<Vec<f32>>,
    /// Each member's running peak learning rate.
    pub max_lr: Vec<f32>,
    /// Each member's running sum of weights.
    pub weight_sum: Vec<f32>,
    /// Steps taken.
    pub steps: u64,
}

impl UpdateRule for SfAdamw {
    type State = SfAdamwState;
    fn name(&self) -> &'static str {
        NAME
    }
    fn members(&self) -> usize {
        self.members.len()
    }
    fn init(&self, params: &[ParamInfo]) -> SfAdamwState {
        let k = self.members();
        SfAdamwState { z: Vec::new(), nu: crate::adam::zeros(params, k), max_lr: vec![0.0; k], weight_sum: vec![0.0; k], steps: 0 }
    }
    fn update(&self, s: &mut SfAdamwState, params: &mut [&mut [f32]], grads: &[&[f32]], _ctx: &StepContext<'_>) {
        if s.z.is_empty() {
            s.z = params.iter().map(|p| p.to_vec()).collect();
        }
        let k = self.members.len();
        let scalars: Vec<(f32, f32, f32)> = self.members.iter().enumerate().map(|(m, c)| c.scalars(s.steps, &mut s.max_lr[m], &mut s.weight_sum[m])).collect();
        for (((y, g), z), nu) in params.iter_mut().zip(grads).zip(&mut s.z).zip(&mut s.nu) {
            let n = g.len() / k;
            if n == 0 {
                continue;
            }
            let members = y.chunks_exact_mut(n).zip(g.chunks_exact(n)).zip(z.chunks_exact_mut(n)).zip(nu.chunks_exact_mut(n));
            for (m, (((y, g), z), nu)) in members.enumerate() {
                let c = self.members[m];
                for (((y, &g), z), nu) in y.iter_mut().zip(g).zip(z.iter_mut()).zip(nu.iter_mut()) {
                    c.step(scalars[m], y, z, nu, g);
                }
            }
        }
        s.steps += 1;
    }
    fn evaluates_elsewhere(&self) -> bool {
        true
    }
    fn eval_params(&self, s: &SfAdamwState, params: &[&[f32]]) -> Option<Vec<Vec<f32>>> {
        if s.z.is_empty() {
            return None;
        }
        let k = self.members.len();
        Some(
            params
                .iter()
                .zip(&s.z)
                .map(|(y, z)| {
                    let n = (y.len() / k).max(1);
                    y.iter().zip(z).enumerate().map(|(i, (&y, &z))| self.members[i / n].eval(y, z)).collect()
                })
                .collect(),
        )
    }
}

/// The kind.
pub struct SfAdamwKind;

impl Kind for SfAdamwKind {
    fn name(&self) -> &'static str {
        NAME
    }
    fn about(&self) -> &'static str {
        "Schedule-Free AdamW (Defazio et al. 2024), measured at its average x, as optax.contrib.schedule_free_adamw"
    }
    fn hparams(&self) -> &'static [Hparam] {
        SfAdamwHp::HPARAMS
    }
    fn host(&self, members: &[Values], params: &[ParamInfo]) -> Box<dyn Optimizer> {
        bound(SfAdamw::new(&members.iter().map(SfAdamwHp::from_values).collect::<Vec<_>>()), params)
    }
    fn device(&self, member: &Values, params: &[ParamInfo], dev: &Device) -> Option<Box<dyn Optimizer>> {
        Some(beatmatch_device::on(device::SfAdamwOnDevice(Member::new(&SfAdamwHp::from_values(member))), params, dev))
    }
    fn reference_spec(&self, name: &str, meta: &serde_json::Value) -> Option<Result<OptimizerSpec>> {
        (meta["optimizer"] == "optax.contrib.schedule_free_adamw").then(|| {
            let r = ReferenceArgs::of(name, meta);
            r.require_null("state_dtype")?;
            Ok(OptimizerSpec::new(NAME)
                .with("lr", r.num("learning_rate")?)
                .with("warmup_steps", r.num_or("warmup_steps", 0.0))
                .with("b1", r.num("b1")?)
                .with("b2", r.num("b2")?)
                .with("eps", r.num("eps")?)
                .with("wd", r.num("weight_decay")?)
                .with("weight_lr_power", r.num("weight_lr_power")?))
        })
    }
}
