//! Adam (Kingma & Ba 2015) as optax's `adam`: bias-corrected moments, `eps` outside the root.

use beatmatch_core::{ParamInfo, StepContext, UpdateRule};

/// Hyperparameters and defaults (optax's).
pub const HPARAMS: &[(&str, f64)] = &[("lr", 1e-3), ("b1", 0.9), ("b2", 0.999), ("eps", 1e-8)];

/// One member's moment constants, rounded as optax rounds them: the EMA weights `1 − β` are
/// computed in f64 (Python floats) and then rounded to f32, while the bias corrections `1 − βᵗ`
/// are computed in f32 at each step.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct MomentHp {
    /// First-moment decay β₁.
    pub b1: f32,
    /// Second-moment decay β₂.
    pub b2: f32,
    /// EMA weight 1 − β₁ (rounded from f64).
    pub one_minus_b1: f32,
    /// EMA weight 1 − β₂ (rounded from f64).
    pub one_minus_b2: f32,
    /// Added outside the root.
    pub eps: f32,
}

impl MomentHp {
    /// Constants for decays `b1`, `b2` and `eps`.
    pub fn new(b1: f64, b2: f64, eps: f64) -> Self {
        Self { b1: b1 as f32, b2: b2 as f32, one_minus_b1: (1.0 - b1) as f32, one_minus_b2: (1.0 - b2) as f32, eps: eps as f32 }
    }

    /// The bias corrections (1 − β₁ᵗ, 1 − β₂ᵗ) of step `t` (1-based), in f32 as every
    /// implementation (host, device) divides by them.
    pub fn bias_corrections(&self, t: i32) -> (f32, f32) {
        (1.0 - self.b1.powi(t), 1.0 - self.b2.powi(t))
    }
}

/// Adam's bias-corrected moment estimates, shared by Adam and AdamW: the run state.
#[derive(Clone, Debug)]
pub struct Moments {
    /// First moments per tensor (`members × numel`).
    pub m: Vec<Vec<f32>>,
    /// Second moments per tensor.
    pub v: Vec<Vec<f32>>,
    /// Steps taken.
    pub count: i32,
}

/// Zero buffers of `members × numel` per tensor.
pub(crate) fn zeros(params: &[ParamInfo], members: usize) -> Vec<Vec<f32>> {
    params.iter().map(|i| vec![0.0; i.numel() * members]).collect()
}

impl Moments {
    /// Zero moments for `members` members of `params`.
    pub fn zeros(params: &[ParamInfo], members: usize) -> Self {
        Self { m: zeros(params, members), v: zeros(params, members), count: 0 }
    }

    /// Update the moments with `grads` and apply, per element of member `k`, `apply(k)(param,
    /// direction)` where the direction is m̂ / (√v̂ + eps) (optax's order of operations).
    #[inline]
    pub fn step<F: Fn(&mut f32, f32)>(&mut self, hp: &[MomentHp], params: &mut [&mut [f32]], grads: &[&[f32]], apply: impl Fn(usize) -> F) {
        self.count += 1;
        for (((w, g), m), v) in params.iter_mut().zip(grads).zip(&mut self.m).zip(&mut self.v) {
            let n = g.len() / hp.len();
            if n == 0 {
                continue;
            }
            let members = w.chunks_exact_mut(n).zip(g.chunks_exact(n)).zip(m.chunks_exact_mut(n)).zip(v.chunks_exact_mut(n));
            for (k, (((w, g), m), v)) in members.enumerate() {
                let MomentHp { b1, b2, one_minus_b1: w1, one_minus_b2: w2, eps } = hp[k];
                let (c1, c2) = hp[k].bias_corrections(self.count);
                let apply = apply(k);
                for (((w, &g), m), v) in w.iter_mut().zip(g.iter()).zip(m.iter_mut()).zip(v.iter_mut()) {
                    *m = w1 * g + b1 * *m;
                    *v = w2 * (g * g) + b2 * *v;
                    apply(w, (*m / c1) / ((*v / c2).sqrt() + eps));
                }
            }
        }
    }
}

/// One Adam member's hyperparameters.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct AdamHp {
    /// Learning rate.
    pub lr: f64,
    /// First-moment decay.
    pub b1: f64,
    /// Second-moment decay.
    pub b2: f64,
    /// Added outside the root.
    pub eps: f64,
}

/// Adam over one or more members.
pub struct Adam {
    moments: Vec<MomentHp>,
    lr: Vec<f32>,
}

impl Adam {
    /// One member per entry of `members`.
    pub fn new(members: &[AdamHp]) -> Self {
        Self { moments: members.iter().map(|h| MomentHp::new(h.b1, h.b2, h.eps)).collect(), lr: members.iter().map(|h| h.lr as f32).collect() }
    }
}

impl UpdateRule for Adam {
    type State = Moments;
    fn name(&self) -> &'static str {
        "adam"
    }
    fn members(&self) -> usize {
        self.lr.len()
    }
    fn init(&self, params: &[ParamInfo]) -> Moments {
        Moments::zeros(params, self.members())
    }
    fn update(&self, state: &mut Moments, params: &mut [&mut [f32]], grads: &[&[f32]], _ctx: &StepContext<'_>) {
        state.step(&self.moments, params, grads, |k| {
            let lr = self.lr[k];
            move |w: &mut f32, u: f32| *w += -lr * u
        });
    }
}
