//! Adam (Kingma & Ba 2015) as optax's `adam`: bias-corrected moments, `eps` outside the root.

use beatmatch_core::{Optimizer, ParamInfo, StepContext};

/// Hyperparameters and defaults (optax's).
pub const HPARAMS: &[(&str, f64)] = &[("lr", 1e-3), ("b1", 0.9), ("b2", 0.999), ("eps", 1e-8)];

/// Adam's bias-corrected moment estimates, shared by Adam and AdamW.
///
/// Rounding follows optax: the EMA weights `1 − β` are computed in f64 (Python floats) and
/// then rounded to f32, while the bias corrections `1 − βᵗ` are computed in f32.
pub struct Moments {
    b1: f32,
    b2: f32,
    one_minus_b1: f32,
    one_minus_b2: f32,
    eps: f32,
    m: Vec<Vec<f32>>,
    v: Vec<Vec<f32>>,
    count: i32,
}

impl Moments {
    /// Zero moments for `params`.
    pub fn new(b1: f64, b2: f64, eps: f64, params: &[ParamInfo]) -> Self {
        let zeros = || params.iter().map(|i| vec![0.0; i.numel()]).collect();
        Self {
            b1: b1 as f32,
            b2: b2 as f32,
            one_minus_b1: (1.0 - b1) as f32,
            one_minus_b2: (1.0 - b2) as f32,
            eps: eps as f32,
            m: zeros(),
            v: zeros(),
            count: 0,
        }
    }

    /// Update the moments with `grads` and call `apply(param, adam_direction)` per element,
    /// where the direction is m̂ / (√v̂ + eps) (optax's order of operations).
    #[inline]
    pub fn step(&mut self, params: &mut [&mut [f32]], grads: &[&[f32]], apply: impl Fn(&mut f32, f32)) {
        self.count += 1;
        let (b1, b2, eps) = (self.b1, self.b2, self.eps);
        let (w1, w2) = (self.one_minus_b1, self.one_minus_b2);
        let c1 = 1.0 - b1.powi(self.count);
        let c2 = 1.0 - b2.powi(self.count);
        for (((w, g), m), v) in params.iter_mut().zip(grads).zip(&mut self.m).zip(&mut self.v) {
            for (((w, &g), m), v) in w.iter_mut().zip(g.iter()).zip(m.iter_mut()).zip(v.iter_mut()) {
                *m = w1 * g + b1 * *m;
                *v = w2 * (g * g) + b2 * *v;
                apply(w, (*m / c1) / ((*v / c2).sqrt() + eps));
            }
        }
    }
}

/// Adam.
pub struct Adam {
    moments: Moments,
    lr: f32,
}

impl Adam {
    /// Zero moments for `params`.
    pub fn new(lr: f64, b1: f64, b2: f64, eps: f64, params: &[ParamInfo]) -> Self {
        Self { moments: Moments::new(b1, b2, eps, params), lr: lr as f32 }
    }
}

impl Optimizer for Adam {
    fn step(&mut self, params: &mut [&mut [f32]], grads: &[&[f32]], _ctx: &StepContext) {
        let lr = self.lr;
        self.moments.step(params, grads, |w, u| *w += -lr * u);
    }
}
