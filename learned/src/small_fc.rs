//! small_fc_lopt: learned_optimization's `AdafacMLPLOpt` — a 39 → 4 → 4 → 2 per-parameter MLP
//! over momenta, second moments and Adafactor-style factored statistics (28 features,
//! normalised over the tensor) plus an 11-wide training-step embedding; the accumulator decays
//! are themselves meta-learned.

use crate::accum::{learned_decays, tanh_embedding, Factored, Momentum, SecondMoment};
use crate::features::{process_tensor, Flavor, Mlp, StepRule, TensorInputs};
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
    /// Reused per-step buffers.
    fac_g: Vec<Vec<f32>>,
    scratch: Vec<f32>,
}

impl SmallFc {
    /// Fresh state for `params`.
    pub fn new(theta: &Theta, cfg: SmallFcConfig, params: &[ParamInfo]) -> Result<Self, ThetaError> {
        let width = Flavor::SmallFc.width() + 11;
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
            fac_g: Vec::new(),
            scratch: Vec::new(),
        })
    }
}

impl Optimizer for SmallFc {
    fn step(&mut self, params: &mut [&mut [f32]], grads: &[&[f32]], _ctx: &StepContext) {
        self.mom.update(grads);
        self.rms.update(grads);
        self.fac.update(grads, &mut self.fac_g);
        let fac_g = &self.fac_g;
        let rule = StepRule::Embedded { exp_mult: self.cfg.exp_mult, step_mult: self.cfg.step_mult, embedding: tanh_embedding(self.iteration as f32) };
        for (i, p) in params.iter_mut().enumerate() {
            let new = &mut self.scratch;
            new.resize(p.len(), 0.0);
            let t = TensorInputs { g: grads[i], p, m: &self.mom.m[i], rms: &self.rms.v[i], fac_g: &fac_g[i], fac: &self.fac.state[i] };
            process_tensor(Flavor::SmallFc, &t, &self.net, rule, new);
            p.copy_from_slice(new);
        }
        self.iteration += 1;
    }
}
