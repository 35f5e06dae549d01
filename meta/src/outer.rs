//! The outer optimizer: Adam on the flat theta, its learning rate warmed up linearly and then
//! decayed on a cosine, the meta-gradient clipped first (element-wise to ±c, as
//! learned_optimization's `optax.clip`, or to a global norm). All in f32, in a fixed order.

use serde::{Deserialize, Serialize};

/// Gradient clipping before Adam; in YAML `{ elementwise: 3.0 }`, `{ global_norm: 1.0 }` or
/// `{}` (none).
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "ClipSpec", into = "ClipSpec")]
pub enum Clip {
    /// Each component to [−c, c].
    Elementwise(f32),
    /// The whole vector to norm at most c.
    GlobalNorm(f32),
    /// No clipping.
    None,
}

/// [`Clip`] as written in a recipe.
#[derive(Clone, Copy, Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClipSpec {
    /// Clip each component to ±this.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub elementwise: Option<f32>,
    /// Clip the vector's norm to this.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub global_norm: Option<f32>,
}

impl TryFrom<ClipSpec> for Clip {
    type Error = String;
    fn try_from(c: ClipSpec) -> Result<Self, String> {
        match (c.elementwise, c.global_norm) {
            (Some(_), Some(_)) => Err("clip: give elementwise or global_norm, not both".into()),
            (Some(x), None) | (None, Some(x)) if x.is_nan() || x <= 0.0 => Err(format!("clip: {x} must be positive")),
            (Some(x), None) => Ok(Clip::Elementwise(x)),
            (None, Some(x)) => Ok(Clip::GlobalNorm(x)),
            (None, None) => Ok(Clip::None),
        }
    }
}

impl From<Clip> for ClipSpec {
    fn from(c: Clip) -> Self {
        match c {
            Clip::Elementwise(x) => ClipSpec { elementwise: Some(x), global_norm: None },
            Clip::GlobalNorm(x) => ClipSpec { elementwise: None, global_norm: Some(x) },
            Clip::None => ClipSpec::default(),
        }
    }
}

/// Outer optimizer settings (the recipe's `outer:` block).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OuterConfig {
    /// Peak learning rate.
    pub lr: f32,
    /// Linear warm-up (outer steps).
    #[serde(default)]
    pub warmup: u64,
    /// Fraction of the peak the cosine decays to at the last outer step.
    #[serde(default = "default_final_fraction")]
    pub final_fraction: f32,
    /// Adam β₁.
    #[serde(default = "default_b1")]
    pub b1: f32,
    /// Adam β₂.
    #[serde(default = "default_b2")]
    pub b2: f32,
    /// Adam ε.
    #[serde(default = "default_eps")]
    pub eps: f32,
    /// Clipping of the meta-gradient.
    #[serde(default = "default_clip")]
    pub clip: Clip,
}

fn default_final_fraction() -> f32 {
    0.1
}
fn default_b1() -> f32 {
    0.9
}
fn default_b2() -> f32 {
    0.999
}
fn default_eps() -> f32 {
    1e-8
}
fn default_clip() -> Clip {
    Clip::Elementwise(3.0)
}

/// Adam's state.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Adam {
    /// First moments.
    pub m: Vec<f32>,
    /// Second moments.
    pub v: Vec<f32>,
    /// Updates taken.
    pub t: u64,
}

impl Adam {
    /// Zero state for `n` meta-parameters.
    pub fn new(n: usize) -> Self {
        Self { m: vec![0.0; n], v: vec![0.0; n], t: 0 }
    }

    /// Learning rate at outer step `t` of `total`.
    pub fn lr(cfg: &OuterConfig, t: u64, total: u64) -> f32 {
        let peak = cfg.lr as f64;
        if t < cfg.warmup {
            return (peak * (t + 1) as f64 / cfg.warmup as f64) as f32;
        }
        let span = total.saturating_sub(cfg.warmup).max(1) as f64;
        let frac = ((t - cfg.warmup) as f64 / span).min(1.0);
        let f = cfg.final_fraction as f64;
        (peak * (f + (1.0 - f) * 0.5 * (1.0 + (std::f64::consts::PI * frac).cos()))) as f32
    }

    /// Clip `grad` in place; returns its norm before clipping.
    pub fn clip(clip: Clip, grad: &mut [f32]) -> f32 {
        let norm = grad.iter().map(|&g| (g as f64).powi(2)).sum::<f64>().sqrt() as f32;
        match clip {
            Clip::Elementwise(c) => grad.iter_mut().for_each(|g| *g = g.clamp(-c, c)),
            Clip::GlobalNorm(c) if norm > c => {
                let s = c / norm;
                grad.iter_mut().for_each(|g| *g *= s);
            }
            _ => {}
        }
        norm
    }

    /// One descent step on `theta` with (already clipped) `grad` at learning rate `lr`.
    pub fn step(&mut self, cfg: &OuterConfig, theta: &mut [f32], grad: &[f32], lr: f32) {
        self.t += 1;
        let b1t = 1.0 - cfg.b1.powi(self.t as i32);
        let b2t = 1.0 - cfg.b2.powi(self.t as i32);
        for (((p, &g), m), v) in theta.iter_mut().zip(grad).zip(&mut self.m).zip(&mut self.v) {
            *m = cfg.b1 * *m + (1.0 - cfg.b1) * g;
            *v = cfg.b2 * *v + (1.0 - cfg.b2) * g * g;
            *p -= lr * (*m / b1t) / ((*v / b2t).sqrt() + cfg.eps);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg() -> OuterConfig {
        OuterConfig { lr: 1.0, warmup: 10, final_fraction: 0.1, b1: 0.9, b2: 0.999, eps: 1e-8, clip: Clip::Elementwise(3.0) }
    }

    #[test]
    fn schedule_warms_up_then_decays_on_a_cosine() {
        let c = cfg();
        assert!((Adam::lr(&c, 0, 110) - 0.1).abs() < 1e-6);
        assert!((Adam::lr(&c, 9, 110) - 1.0).abs() < 1e-6);
        assert!((Adam::lr(&c, 10, 110) - 1.0).abs() < 1e-6);
        assert!((Adam::lr(&c, 60, 110) - 0.55).abs() < 1e-6);
        assert!((Adam::lr(&c, 110, 110) - 0.1).abs() < 1e-6);
    }

    #[test]
    fn clipping_and_the_first_adam_step() {
        let mut g = vec![5.0, -0.5, -7.0];
        Adam::clip(Clip::Elementwise(3.0), &mut g);
        assert_eq!(g, vec![3.0, -0.5, -3.0]);
        let mut g = vec![3.0, 4.0];
        assert_eq!(Adam::clip(Clip::GlobalNorm(1.0), &mut g), 5.0);
        assert!((g[0] - 0.6).abs() < 1e-6 && (g[1] - 0.8).abs() < 1e-6);
        // Adam's first step moves every coordinate by lr in the gradient's sign.
        let mut theta = vec![0.0, 0.0];
        Adam::new(2).step(&cfg(), &mut theta, &[0.3, -2.0], 0.01);
        assert!((theta[0] + 0.01).abs() < 1e-6 && (theta[1] - 0.01).abs() < 1e-6);
    }
}
