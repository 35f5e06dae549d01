//! small_fc_lopt: learned_optimization's `AdafacMLPLOpt` — a 39 → 4 → 4 → 2 per-parameter MLP
//! over momenta, second moments and Adafactor-style factored statistics (28 features,
//! normalised over the tensor) plus an 11-wide training-step embedding; the accumulator decays
//! are themselves meta-learned.

use crate::accum::{learned_decays, tanh_embedding, Factored, Momentum, SecondMoment};
use crate::features::{element_features, normalizer, prepare, Flavor, Mlp, TensorInputs};
use crate::theta::{Theta, ThetaError};
use beatmatch_core::{Optimizer, ParamInfo, StepContext};

/// Architecture name.
pub const ARCH: &str = "small_fc";
const MOM: [f64; 3] = [0.9, 0.99, 0.999];
const RMS: [f64; 1] = [0.999];
const FAC: [f64; 3] = [0.9, 0.99, 0.999];

/// Hyperparameters (the reference's constructor defaults: hidden 4, 2 layers).
#[derive(Clone, Copy, Debug)]
pub struct SmallFcConfig {
    /// Scale inside the exponential.
    pub exp_mult: f32,
    /// Scale of the step.
    pub step_mult: f32,
}

impl Default for SmallFcConfig {
    fn default() -> Self {
        Self { exp_mult: 0.001, step_mult: 0.001 }
    }
}

/// small_fc_lopt bound to its meta-parameters.
pub struct SmallFc {
    cfg: SmallFcConfig,
    net: Mlp,
    mom: Momentum,
    rms: SecondMoment,
    fac: Factored,
    iteration: u32,
}

impl SmallFc {
    /// Fresh state for `params`.
    pub fn new(theta: &Theta, cfg: SmallFcConfig, params: &[ParamInfo]) -> Result<Self, ThetaError> {
        let width = Flavor::SmallFc.width(3, 1, 3) + 11;
        let dims = [(width, 4), (4, 4), (4, 2)];
        let mut layers = Vec::new();
        for (i, &(a, b)) in dims.iter().enumerate() {
            layers.push((theta.get(ARCH, &format!("nn/~/w{i}"), &[a, b])?.to_vec(), theta.get(ARCH, &format!("nn/~/b{i}"), &[b])?.to_vec(), a, b));
        }
        let mom = learned_decays(&MOM, Some(theta.get(ARCH, "momentum_decays", &[3])?));
        let rms = learned_decays(&RMS, Some(theta.get(ARCH, "rms_decays", &[1])?));
        let fac = learned_decays(&FAC, Some(theta.get(ARCH, "adafactor_decays", &[3])?));
        Ok(Self {
            cfg,
            net: Mlp { layers },
            mom: Momentum::new(mom, params),
            rms: SecondMoment::new(rms, params),
            fac: Factored::new(fac, params),
            iteration: 0,
        })
    }
}

impl Optimizer for SmallFc {
    fn step(&mut self, params: &mut [&mut [f32]], grads: &[&[f32]], _ctx: &StepContext) {
        self.mom.update(grads);
        self.rms.update(grads);
        let fac_g = self.fac.update(grads);
        let emb = tanh_embedding(self.iteration as f32);
        let width = Flavor::SmallFc.width(3, 1, 3);
        for (i, p) in params.iter_mut().enumerate() {
            let t = TensorInputs { g: grads[i], p, m: &self.mom.m[i], rms: &self.rms.v[i], fac_g: &fac_g[i], fac: &self.fac.state[i], km: 3, kr: 1, kf: 3 };
            let prep = prepare(&t);
            let n = t.g.len();
            let norm = normalizer(n, width, |e, out| element_features(Flavor::SmallFc, &t, &prep, e, out));
            let mut x = vec![0f32; width + 11];
            let mut o = [0f32; 2];
            let mut new = Vec::with_capacity(n);
            for e in 0..n {
                element_features(Flavor::SmallFc, &t, &prep, e, &mut x[..width]);
                for (v, s) in x[..width].iter_mut().zip(&norm) {
                    *v *= s;
                }
                x[width..].copy_from_slice(&emb);
                self.net.eval(&x, &mut o);
                new.push(t.p[e] - o[0] * (o[1] * self.cfg.exp_mult).exp() * self.cfg.step_mult);
            }
            p.copy_from_slice(&new);
        }
        self.iteration += 1;
    }
}
