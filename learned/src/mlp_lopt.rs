//! MLP-LOpt: learned_optimization's `MLPLOpt` (Metz et al. 2019, "Understanding and correcting
//! pathologies in the training of learned optimizers"; also LOLv2): per parameter, the
//! gradient, the parameter and six momenta, each normalised by its second moment over the
//! tensor, plus an 11-wide training-step embedding, go through a 19 → 32 → 32 → 2 MLP; the step
//! is `direction · exp(magnitude · exp_mult) · step_mult`.

use crate::accum::{tanh_embedding, Momentum};
use crate::features::{normalizer, Mlp};
use crate::theta::{Theta, ThetaError};
use beatmatch_core::{Optimizer, ParamInfo, StepContext};

/// Architecture name.
pub const ARCH: &str = "mlp_lopt";
const DECAYS: [f32; 6] = [0.1, 0.5, 0.9, 0.99, 0.999, 0.9999];
const HIDDEN: usize = 32;

/// Hyperparameters (the reference's constructor defaults).
#[derive(Clone, Copy, Debug)]
pub struct MlpLoptConfig {
    /// Scale inside the exponential.
    pub exp_mult: f32,
    /// Scale of the step.
    pub step_mult: f32,
}

impl Default for MlpLoptConfig {
    fn default() -> Self {
        Self { exp_mult: 0.001, step_mult: 0.001 }
    }
}

/// The meta-parameters MLP-LOpt needs, checked.
pub fn net(theta: &Theta) -> Result<Mlp, ThetaError> {
    let dims = [(19, HIDDEN), (HIDDEN, HIDDEN), (HIDDEN, 2)];
    let mut layers = Vec::new();
    for (i, &(a, b)) in dims.iter().enumerate() {
        let w = theta.get(ARCH, &format!("mlp/~/linear_{i}/w"), &[a, b])?.to_vec();
        let bias = theta.get(ARCH, &format!("mlp/~/linear_{i}/b"), &[b])?.to_vec();
        layers.push((w, bias, a, b));
    }
    Ok(Mlp { layers })
}

/// MLP-LOpt bound to its meta-parameters.
pub struct MlpLopt {
    cfg: MlpLoptConfig,
    net: Mlp,
    mom: Momentum,
    iteration: u32,
}

impl MlpLopt {
    /// Fresh state for `params`.
    pub fn new(theta: &Theta, cfg: MlpLoptConfig, params: &[ParamInfo]) -> Result<Self, ThetaError> {
        Ok(Self { cfg, net: net(theta)?, mom: Momentum::new(DECAYS.to_vec(), params), iteration: 0 })
    }
}

impl Optimizer for MlpLopt {
    fn step(&mut self, params: &mut [&mut [f32]], grads: &[&[f32]], _ctx: &StepContext) {
        self.mom.update(grads);
        let emb = tanh_embedding(self.iteration as f32);
        let k = DECAYS.len();
        for ((p, g), m) in params.iter_mut().zip(grads).zip(&self.mom.m) {
            let n = p.len();
            let feats = |e: usize, out: &mut [f32]| {
                out[0] = g[e];
                out[1] = p[e];
                out[2..2 + k].copy_from_slice(&m[e * k..(e + 1) * k]);
            };
            let norm = normalizer(n, 2 + k, feats);
            let mut x = [0f32; 19];
            let mut o = [0f32; 2];
            for e in 0..n {
                x[0] = g[e];
                x[1] = p[e];
                x[2..2 + k].copy_from_slice(&m[e * k..(e + 1) * k]);
                for (v, s) in x[..2 + k].iter_mut().zip(&norm) {
                    *v *= s;
                }
                x[2 + k..].copy_from_slice(&emb);
                self.net.eval(&x, &mut o);
                p[e] -= o[0] * (o[1] * self.cfg.exp_mult).exp() * self.cfg.step_mult;
            }
        }
        self.iteration += 1;
    }
}
