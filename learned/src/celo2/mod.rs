//! Celo2 (Moudgil et al., "Celo2: Towards Learned Optimization Free Lunch", ICLR 2026, arXiv
//! 2602.19142). The learned rule is the JAX reference's — amoudgl/celo @ 66d9761,
//! `celo/optimizers/celo2_optax.py` `Celo2Transformation` with `celo/factory.py`'s "celo2"
//! configuration — applied as `celo2.Celo2` applies it, `p − lr·step − wd·p·lr`; which tensors
//! take it, and the AdamW the others take, are PyLO's `Celo2_naive` (Belilovsky-Lab/pylo branch
//! `celo2`), whose weights these are.
//!
//! Per learned tensor and step: gradients clipped to ±1000; momenta (0.9, 0.99, 0.999), a second
//! moment (0.95) and factored statistics (0.9, 0.99, 0.999); VeLO's 30 per-parameter features
//! (with `rsqrt(v + 1e-8)`), each normalised by its RMS over the tensor's last two axes; an MLP
//! 30 → 8 → 8 → 3 (ReLU) whose first output is the direction (`exp_mult` 0: no magnitude);
//! Newton–Schulz (optax's five `standard` iterations) on each matrix of the last two axes; the
//! result normalised to unit RMS per matrix.
//!
//! Routing (PyLO's `_classify_params_list`): tensors of rank ≤ 1, those whose name contains
//! "embed", and the first and last tensor of rank ≥ 2 in parameter order take AdamW (β 0.9,
//! 0.95, ε 1e-8, bias-corrected, decoupled decay, the same `lr`), as optax.adamw computes it.
//!
//! The descriptor ([`CELO2`]), the host rule ([`Celo2Net`]) and the device rule ([`device`]).

pub mod device;

use crate::accum::{clip_decays, learned_decays, rsqrt, Factored, FactoredState, Momentum, SecondMoment};
use crate::arch::{Architecture, LearnedOptimizer};
use crate::theta::{Theta, ThetaError};
use crate::velo::GROUPS;
use crate::Hyperparameters;
use beatmatch_core::newton_schulz::{newton_schulz, Scratch};
use beatmatch_core::{Bound, Optimizer, ParamInfo, StepContext, UpdateRule};
use candle_core::Device;
use std::sync::Arc;

/// Architecture name.
pub const ARCH: &str = "celo2";

/// Celo2.
pub const CELO2: Architecture = Architecture::new(&Celo2);

/// Celo2's descriptor.
pub struct Celo2;

/// The hyperparameters a checkpoint or a candidate may set: the learning rate and the decoupled
/// weight decay (both parts).
pub const SETTABLE: &[&str] = &["lr", "wd"];

impl LearnedOptimizer for Celo2 {
    fn name(&self) -> &'static str {
        ARCH
    }
    fn label(&self) -> &'static str {
        "Celo2"
    }
    fn reference_kind(&self) -> &'static str {
        ARCH
    }
    /// Celo2's MLP and no scheduler (Celo's bank has a leading `param_inits` axis).
    fn detect(&self, theta: &Theta) -> bool {
        theta.tensors.get("ff_mod_stack/~/b0").is_some_and(|t| t.shape.len() == 1) && !theta.tensors.keys().any(|k| k.starts_with("rnn_params/"))
    }
    fn settable(&self) -> &'static [&'static str] {
        SETTABLE
    }
    fn host(&self, theta: &Theta, hyper: &Hyperparameters, members: usize, _threads: usize, params: &[ParamInfo]) -> Result<Box<dyn Optimizer>, ThetaError> {
        Ok(Box::new(Bound::new(Arc::new(Celo2Net::bind(theta, Celo2Config::from(hyper))?.with_members(members)), params)))
    }
    fn device(&self, theta: &Theta, hyper: &Hyperparameters, params: &[ParamInfo], dev: &Device) -> anyhow::Result<Box<dyn Optimizer>> {
        Ok(beatmatch_device::on(device::Celo2OnDevice(Celo2Net::bind(theta, Celo2Config::from(hyper))?, routes(params)), params, dev))
    }
    /// Celo2 reads no horizon: one run serves every budget.
    fn is_horizon_free(&self) -> bool {
        true
    }
    fn provenance(&self) -> Option<&'static str> {
        Some("Celo2 with its authors' published weights (Moudgil et al., ICLR 2026; Belilovsky-Lab/pylo branch celo2 @ 78c0e00), meta-trained by its authors on tasks none of which is beatmatch's: every task here is held out from its meta-training")
    }
    fn published(&self) -> Option<&'static str> {
        Some("learned/checkpoints/published/celo2/celo2_weights.pt")
    }
}

const MOM: [f64; 3] = [0.9, 0.99, 0.999];
const RMS: [f64; 1] = [0.95];
const FAC: [f64; 3] = [0.9, 0.99, 0.999];
/// Per-parameter feature width.
pub const FEATURES: usize = 30;

/// Celo2's hyperparameters (PyLO's `Celo2_naive` defaults; the learned rule's are
/// `factory.py`'s "celo2").
#[derive(Clone, Copy, Debug)]
pub struct Celo2Config {
    /// Learning rate of both parts.
    pub lr: f32,
    /// Decoupled weight decay of both parts.
    pub wd: f32,
    /// Scale inside the magnitude's exponential (0: no magnitude).
    pub exp_mult: f32,
    /// Scale of the normalised step.
    pub rmsmult: f32,
    /// AdamW's β₁, β₂.
    pub adam_betas: (f32, f32),
    /// AdamW's ε.
    pub adam_eps: f32,
    /// Newton–Schulz iterations and the ε added to the Frobenius norm.
    pub ns: (usize, f32),
}

impl Default for Celo2Config {
    fn default() -> Self {
        Self { lr: 1e-3, wd: 0.0, exp_mult: 0.0, rmsmult: 1.0, adam_betas: (0.9, 0.95), adam_eps: 1e-8, ns: (5, 1e-8) }
    }
}

impl From<&Hyperparameters> for Celo2Config {
    fn from(h: &Hyperparameters) -> Self {
        let mut c = Self::default();
        if let Some(&lr) = h.get(SETTABLE[0]) {
            c.lr = lr as f32;
        }
        if let Some(&wd) = h.get(SETTABLE[1]) {
            c.wd = wd as f32;
        }
        c
    }
}

/// The per-parameter MLP, weights `[in][out]`.
#[derive(Clone, Debug)]
pub struct Celo2Mlp {
    /// Hidden width (8 published).
    pub hidden: usize,
    /// `[30][H]`, the 14 input groups stacked.
    pub w0: Vec<f32>,
    /// `[H]`.
    pub b0: Vec<f32>,
    /// `[H][H]`.
    pub w1: Vec<f32>,
    /// `[H]`.
    pub b1: Vec<f32>,
    /// `[H][3]`.
    pub w2: Vec<f32>,
    /// `[3]`.
    pub b2: Vec<f32>,
}

impl Celo2Mlp {
    fn bind(theta: &Theta) -> Result<Self, ThetaError> {
        let h = match theta.tensors.get("ff_mod_stack/~/b0") {
            Some(t) if t.shape.len() == 1 => t.shape[0],
            Some(t) => return Err(ThetaError::Shape { arch: ARCH, name: "ff_mod_stack/~/b0".into(), expected: vec![8], actual: t.shape.clone() }),
            None => return Err(ThetaError::Missing { arch: ARCH, name: "ff_mod_stack/~/b0".into(), expected: vec![8] }),
        };
        let mut w0 = Vec::with_capacity(FEATURES * h);
        for (i, &g) in GROUPS.iter().enumerate() {
            w0.extend_from_slice(theta.get(ARCH, &format!("ff_mod_stack/~/w0__{i}"), &[g, h])?);
        }
        let get = |name: &str, shape: &[usize]| theta.get(ARCH, &format!("ff_mod_stack/~/{name}"), shape).map(<[f32]>::to_vec);
        Ok(Self { hidden: h, w0, b0: get("b0", &[h])?, w1: get("w1", &[h, h])?, b1: get("b1", &[h])?, w2: get("w2", &[h, 3])?, b2: get("b2", &[3])? })
    }

    /// The (direction, magnitude) outputs for one row of normalised features.
    #[inline]
    pub fn eval(&self, x: &[f32; FEATURES], h1: &mut [f32], h2: &mut [f32]) -> (f32, f32) {
        let h = self.hidden;
        h1.fill(0.0);
        for (k, &xk) in x.iter().enumerate() {
            for (a, &w) in h1.iter_mut().zip(&self.w0[k * h..(k + 1) * h]) {
                *a += xk * w;
            }
        }
        for (a, &b) in h1.iter_mut().zip(&self.b0) {
            *a = (*a + b).max(0.0);
        }
        for (j, a) in h2.iter_mut().enumerate() {
            *a = (0..h).fold(0f32, |s, k| s + h1[k] * self.w1[k * h + j]);
            *a = (*a + self.b1[j]).max(0.0);
        }
        let out = |j: usize| (0..h).fold(0f32, |s, k| s + h2[k] * self.w2[k * 3 + j]) + self.b2[j];
        (out(0), out(1))
    }
}

/// Which rule a tensor takes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Route {
    /// The learned rule.
    Learned,
    /// AdamW.
    AdamW,
}

/// PyLO's `_classify_params_list`: rank ≤ 1, "embed" in the name, and the first and last tensor
/// of rank ≥ 2 take AdamW.
pub fn routes(params: &[ParamInfo]) -> Vec<Route> {
    let two_d: Vec<usize> = (0..params.len()).filter(|&i| params[i].shape.len() >= 2).collect();
    params
        .iter()
        .enumerate()
        .map(|(i, p)| {
            let adamw = p.shape.len() <= 1 || p.name.to_lowercase().contains("embed") || two_d.first() == Some(&i) || two_d.last() == Some(&i);
            if adamw {
                Route::AdamW
            } else {
                Route::Learned
            }
        })
        .collect()
}

/// Celo2 bound to its weights: the update rule, shared by every run.
pub struct Celo2Net {
    cfg: Celo2Config,
    mlp: Celo2Mlp,
    mom: Vec<f32>,
    rms: Vec<f32>,
    fac: Vec<f32>,
    members: usize,
}

/// One member's run state.
#[derive(Clone, Debug)]
pub struct Celo2Member {
    routes: Vec<Route>,
    /// Accumulators of the learned tensors (in their order among the learned ones).
    mom: Momentum,
    rms: SecondMoment,
    fac: Factored,
    /// AdamW's moments of the other tensors (by tensor index; empty for learned ones).
    adam_m: Vec<Vec<f32>>,
    adam_v: Vec<Vec<f32>>,
    /// Steps taken.
    pub count: u32,
    fac_g: Vec<Vec<f32>>,
    clipped: Vec<Vec<f32>>,
    ns: Scratch,
}

impl Celo2Net {
    /// Bind `theta`, checking every weight's presence and shape; one member.
    pub fn bind(theta: &Theta, cfg: Celo2Config) -> Result<Self, ThetaError> {
        Ok(Self {
            cfg,
            mlp: Celo2Mlp::bind(theta)?,
            mom: learned_decays(&MOM, None),
            rms: clip_decays(learned_decays(&RMS, None)),
            fac: clip_decays(learned_decays(&FAC, None)),
            members: 1,
        })
    }

    /// The same rule over `members` members (each its own state).
    pub fn with_members(mut self, members: usize) -> Self {
        self.members = members.max(1);
        self
    }

    /// The hyperparameters.
    pub fn config(&self) -> Celo2Config {
        self.cfg
    }

    /// The MLP.
    pub fn mlp(&self) -> &Celo2Mlp {
        &self.mlp
    }

    /// The momentum, second-moment and factored decays.
    pub fn decays(&self) -> (&[f32], &[f32], &[f32]) {
        (&self.mom, &self.rms, &self.fac)
    }

    /// AdamW (optax.adamw) on one tensor at step `count` (1-based).
    fn adamw(&self, p: &mut [f32], g: &[f32], m: &mut [f32], v: &mut [f32], count: u32) {
        let (b1, b2) = self.cfg.adam_betas;
        let (c1, c2) = (1.0 - b1.powf(count as f32), 1.0 - b2.powf(count as f32));
        let (lr, wd, eps) = (self.cfg.lr, self.cfg.wd, self.cfg.adam_eps);
        for (((x, &gi), mi), vi) in p.iter_mut().zip(g).zip(m.iter_mut()).zip(v.iter_mut()) {
            *mi = (1.0 - b1) * gi + b1 * *mi;
            *vi = (1.0 - b2) * (gi * gi) + b2 * *vi;
            let u = (*mi / c1) / ((*vi / c2).sqrt() + eps) + wd * *x;
            *x += -lr * u;
        }
    }

    fn update_member(&self, st: &mut Celo2Member, params: &mut [&mut [f32]], grads: &[&[f32]]) {
        st.count += 1;
        let learned: Vec<usize> = (0..params.len()).filter(|&i| st.routes[i] == Route::Learned).collect();
        crate::clip_gradients(&mut st.clipped, learned.iter().map(|&i| grads[i]));
        let g: Vec<&[f32]> = st.clipped.iter().map(Vec::as_slice).collect();
        st.mom.update(&self.mom, &g);
        st.rms.update(&self.rms, &g);
        st.fac.update(&self.fac, &g, &mut st.fac_g);
        for (j, &i) in learned.iter().enumerate() {
            let step = self.learned_step(params[i], g[j], &st.mom.m[j], &st.rms.v[j], &st.fac_g[j], &st.fac.state[j], &mut st.ns);
            let (lr, wd) = (self.cfg.lr, self.cfg.wd);
            for (x, s) in params[i].iter_mut().zip(step) {
                *x = *x - lr * s - wd * *x * lr;
            }
        }
        for i in 0..params.len() {
            if st.routes[i] == Route::AdamW {
                self.adamw(params[i], grads[i], &mut st.adam_m[i], &mut st.adam_v[i], st.count);
            }
        }
    }

    /// The learned step of one tensor (rank ≥ 2) from its old parameters, clipped gradient and
    /// updated accumulators: features, per-matrix normalisation, the MLP, Newton–Schulz, RMS
    /// normalisation.
    #[allow(clippy::too_many_arguments)]
    fn learned_step(&self, p: &[f32], g: &[f32], m: &[f32], v: &[f32], fac_g: &[f32], fac: &FactoredState, ns: &mut Scratch) -> Vec<f32> {
        let n = p.len();
        let FactoredState::Factored { shape, rows, cols, row_planes: rp, col_planes: cp, .. } = fac else {
            unreachable!("Celo2's learned tensors have rank ≥ 2, and those are factored")
        };
        let (r, c) = (shape[shape.len() - 2], shape[shape.len() - 1]);
        let block = r * c;
        let mut x = vec![[0f32; FEATURES]; n];
        for (e, xe) in x.iter_mut().enumerate() {
            let rs = rsqrt(v[e] + 1e-8);
            let (ri, ci) = (rows[e] as usize, cols[e] as usize);
            let mut f = [0f32; FEATURES];
            f[0] = g[e];
            f[1] = g[e].clamp(-0.1, 0.1);
            f[2] = p[e];
            for j in 0..3 {
                let mj = m[j * n + e];
                f[3 + j] = mj;
                f[7 + j] = mj * rs;
                f[11 + j] = fac_g[j * n + e];
                f[15 + j] = rp.value[j * rp.len + ri];
                f[18 + j] = cp.value[j * cp.len + ci];
                f[21 + j] = rp.rsqrt[j * rp.len + ri];
                f[24 + j] = cp.rsqrt[j * cp.len + ci];
                f[27 + j] = mj * rp.factor[j * rp.len + ri] * cp.factor[j * cp.len + ci];
            }
            f[6] = v[e];
            f[10] = rs;
            f[14] = g[e] * rs;
            *xe = f;
        }
        for chunk in x.chunks_mut(block) {
            let mut sums = [0f64; FEATURES];
            for row in chunk.iter() {
                for (s, &v) in sums.iter_mut().zip(row) {
                    *s += f64::from(v * v);
                }
            }
            let scale: [f32; FEATURES] = std::array::from_fn(|k| rsqrt(1e-9 + (sums[k] / block as f64) as f32));
            for row in chunk.iter_mut() {
                for (v, s) in row.iter_mut().zip(scale) {
                    *v *= s;
                }
            }
        }
        let (mut h1, mut h2) = (vec![0f32; self.mlp.hidden], vec![0f32; self.mlp.hidden]);
        let raw: Vec<f32> = x
            .iter()
            .map(|row| {
                let (dir, mag) = self.mlp.eval(row, &mut h1, &mut h2);
                dir * (mag * self.cfg.exp_mult).exp()
            })
            .collect();
        let mut step = vec![0f32; n];
        newton_schulz(&raw, r, c, self.cfg.ns.0, &vec![self.cfg.ns.1; n / block], ns, &mut step);
        for chunk in step.chunks_mut(block) {
            let ms = (chunk.iter().map(|&s| f64::from(s * s)).sum::<f64>() / block as f64) as f32;
            let scale = rsqrt(1e-9 + ms);
            chunk.iter_mut().for_each(|s| *s = *s * scale * self.cfg.rmsmult);
        }
        step
    }
}

impl UpdateRule for Celo2Net {
    type State = Vec<Celo2Member>;
    fn name(&self) -> &'static str {
        ARCH
    }
    fn members(&self) -> usize {
        self.members
    }
    fn init(&self, params: &[ParamInfo]) -> Self::State {
        let routes = routes(params);
        let learned: Vec<ParamInfo> = params.iter().zip(&routes).filter(|(_, r)| **r == Route::Learned).map(|(p, _)| p.clone()).collect();
        let adam = |p: &ParamInfo, r: &Route| if *r == Route::AdamW { vec![0.0; p.numel()] } else { Vec::new() };
        let one = Celo2Member {
            mom: Momentum::new(MOM.len(), &learned),
            rms: SecondMoment::new(RMS.len(), &learned),
            fac: Factored::new(FAC.len(), &learned),
            adam_m: params.iter().zip(&routes).map(|(p, r)| adam(p, r)).collect(),
            adam_v: params.iter().zip(&routes).map(|(p, r)| adam(p, r)).collect(),
            routes,
            count: 0,
            fac_g: Vec::new(),
            clipped: Vec::new(),
            ns: Scratch::default(),
        };
        vec![one; self.members]
    }
    fn update(&self, state: &mut Self::State, params: &mut [&mut [f32]], grads: &[&[f32]], _ctx: &StepContext<'_>) {
        crate::for_each_member(state, params, grads, |_, st, p, g| self.update_member(st, p, g));
    }
}
