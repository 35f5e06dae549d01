//! Learning-rate schedules.

/// learned_optimization's `CosineLearningRateSchedule`, evaluated in f32 as the reference is.
///
/// Linear warm-up from 0, constant at `lr` until `constant_fraction × max_steps`, then a half
/// cosine down to `min_lr_mult × lr`. Reference quirk kept: when `warmup_fraction > 0` the
/// warm-up lasts `max(warmup_fraction, constant_fraction) × max_steps` steps.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Cosine {
    /// Peak learning rate.
    pub lr: f64,
    /// Final learning rate as a multiple of `lr`.
    pub min_lr_mult: f64,
    /// Fraction of the horizon before the decay starts (warm-up included).
    pub constant_fraction: f64,
    /// Fraction of the horizon spent warming up.
    pub warmup_fraction: f64,
}

impl Cosine {
    /// Learning rate at `step` (0 = first update) of a `max_steps`-step run.
    pub fn at(&self, step: u64, max_steps: u64) -> f32 {
        let lr = self.lr as f32;
        let (cf, wf) = (self.constant_fraction as f32, self.warmup_fraction as f32);
        let total = max_steps as f32;
        let g = (step as f32).min(total);
        let constant_steps = total * cf;
        let x = g.max(constant_steps);
        let min_lr = self.min_lr_mult as f32 * lr;
        let (is_warmup, warmup_lr) = if wf > 0.0 {
            let warmup_steps = total * wf.max(cf);
            (if warmup_steps > g { 1.0f32 } else { 0.0 }, (g / warmup_steps) * lr)
        } else {
            (0.0, lr)
        };
        let s = x - constant_steps;
        let decayed = (lr - min_lr) * ((s * std::f32::consts::PI / (total - constant_steps)).cos() / 2.0 + 0.5) + min_lr;
        decayed * (1.0 - is_warmup) + is_warmup * warmup_lr
    }
}

/// A linear warm-up from 0 over `w = int(warmup_fraction · step_hint)` steps, then, with
/// `decay`, a half cosine from `lr` to 0 at `step_hint` (else constant at `lr`): the learning rate
/// at 0-based step `count`, in f32 as XLA evaluates optax's `join_schedules([linear_schedule(0,
/// lr, w), cosine_decay_schedule(lr, max(step_hint − w, 1))], [w])` — which is optax's
/// `warmup_cosine_decay_schedule(0, lr, w, step_hint)` and AlgoPerf's NAdamW baseline schedule.
pub fn warmup_cosine(lr: f64, warmup_fraction: f64, decay: bool, step_hint: u64, count: u64) -> f32 {
    let warmup = (warmup_fraction * step_hint as f64) as u64;
    if count < warmup {
        // polynomial_schedule(init 0, end lr, power 1): (0 − lr)·(1 − count/w) + lr.
        let frac = 1.0 - count as f32 / warmup as f32;
        return (-lr) as f32 * frac + lr as f32;
    }
    if !decay {
        return lr as f32;
    }
    let decay_steps = step_hint.saturating_sub(warmup).max(1) as f32;
    let count = ((count - warmup) as f32).min(decay_steps);
    let cosine = 0.5 * (1.0 + (std::f32::consts::PI * count / decay_steps).cos());
    lr as f32 * cosine
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shape_of_the_schedule() {
        let s = Cosine { lr: 1.0, min_lr_mult: 0.1, constant_fraction: 0.5, warmup_fraction: 0.0 };
        assert_eq!(s.at(0, 100), 1.0);
        assert_eq!(s.at(50, 100), 1.0);
        assert!((s.at(75, 100) - 0.55).abs() < 1e-6);
        assert!((s.at(100, 100) - 0.1).abs() < 1e-6);
        assert!((s.at(500, 100) - 0.1).abs() < 1e-6, "clamped past the horizon");
        // Warm-up stretches to the constant fraction (the reference's quirk).
        let w = Cosine { lr: 1.0, min_lr_mult: 0.0, constant_fraction: 0.5, warmup_fraction: 0.1 };
        assert_eq!(w.at(0, 100), 0.0);
        assert!((w.at(25, 100) - 0.5).abs() < 1e-6);
        assert_eq!(w.at(50, 100), 1.0);
    }
}
