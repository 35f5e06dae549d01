//! VeLO (Metz et al. 2022, arXiv 2211.09760): learned_optimization's `HyperV2` with
//! lstm_hidden_size 512 and param_inits 256, non-bugged loss features and LSTM state.
//!
//! Per step: (1) loss-buffer features; (2) gradients clipped to ±1000; (3) per tensor, 30 LSTM
//! input features from the old parameters, clipped gradients and old accumulators; (4) mix
//! layers and an LSTM over the batch of tensors give 256 controls and an LR multiplier per
//! tensor; (5) accumulators are updated; (6) each tensor's per-parameter MLP (30 → 4 → 4 → 3)
//! has weights `100 · mean_k(control_k · bank_k)` from a bank of 256; its direction and
//! magnitude, scaled by the tensor's RMS and the LR multiplier, make the step.
//!
//! Reference quirks kept (see the fixtures README): the first mix layer is computed and
//! discarded upstream (skipped here: it has no effect); `var_rms` subtracts the momentum mean;
//! the LSTM forget gate adds +1; the step is scaled by the tensor's RMS; the unfactored
//! `m·v^-½` has no epsilon.
//!
//! The descriptor ([`VELO`]), the host rule ([`VeloNet`]) and the device rule ([`device`]).

pub mod device;

use crate::accum::{clip_decays, learned_decays, Factored, Momentum, SecondMoment};
use crate::arch::{Architecture, LearnedOptimizer};
use crate::dense::Dense;
use crate::features::{lane_sum, process_tensor_threads, simd_dispatch, sum_squares, Flavor, Kernel, Mlp, StepRule, TensorInputs};
use crate::lstm::MixLstm;
use crate::theta::{Theta, ThetaError};
use crate::Hyperparameters;
use beatmatch_core::{Bound, Optimizer, ParamInfo, StepContext, UpdateRule};
use candle_core::Device;
use std::sync::Arc;

/// Architecture name.
pub const ARCH: &str = "velo";

/// VeLO.
pub const VELO: Architecture = Architecture::new(&Velo);

/// VeLO's descriptor.
pub struct Velo;

impl LearnedOptimizer for Velo {
    fn name(&self) -> &'static str {
        ARCH
    }
    fn label(&self) -> &'static str {
        "VeLO"
    }
    fn reference_kind(&self) -> &'static str {
        ARCH
    }
    /// VeLO's mix layers read 30 per-tensor inputs (Celo's read 18).
    fn detect(&self, theta: &Theta) -> bool {
        theta.tensors.contains_key("rnn_params/rnn/linear/w") && theta.tensors.get("rnn_params/linear_1/w").is_none_or(|t| t.shape.first() == Some(&RNN_INPUTS))
    }
    fn host(&self, theta: &Theta, _hyper: &Hyperparameters, members: usize, threads: usize, params: &[ParamInfo]) -> Result<Box<dyn Optimizer>, ThetaError> {
        Ok(Box::new(Bound::new(Arc::new(VeloNet::bind(theta, VeloConfig::default())?.with_members(members).with_threads(threads)), params)))
    }
    fn device(&self, theta: &Theta, _hyper: &Hyperparameters, params: &[ParamInfo], dev: &Device) -> anyhow::Result<Box<dyn Optimizer>> {
        Ok(beatmatch_device::on(device::VeloOnDevice(VeloNet::bind(theta, VeloConfig::default())?), params, dev))
    }
    /// VeLO reads the horizon: the fraction of training done, the loss buffer's half-lives.
    fn is_horizon_free(&self) -> bool {
        false
    }
}
const MOM: [f64; 3] = [0.9, 0.99, 0.999];
const RMS: [f64; 1] = [0.999];
const FAC: [f64; 3] = [0.9, 0.99, 0.999];
/// Per-tensor LSTM input width.
pub const RNN_INPUTS: usize = 30;
/// Per-parameter feature width.
pub const FF_INPUTS: usize = 30;
/// Widths of the 14 per-parameter feature groups (`w0__0` … `w0__13`): VeLO's, Celo's and
/// Celo2's first layer, and PyLO's files of them.
pub(crate) const GROUPS: [usize; 14] = [1, 1, 1, 3, 1, 3, 1, 3, 1, 3, 3, 3, 3, 3];

/// Hyperparameters of the published VeLO.
#[derive(Clone, Copy, Debug)]
pub struct VeloConfig {
    /// LSTM width.
    pub lstm_hidden: usize,
    /// Size of the per-parameter MLP bank.
    pub param_inits: usize,
    /// Scale inside the exponential.
    pub exp_mult: f32,
    /// Scale of the step.
    pub step_mult: f32,
}

impl Default for VeloConfig {
    fn default() -> Self {
        Self { lstm_hidden: 512, param_inits: 256, exp_mult: 0.001, step_mult: 0.001 }
    }
}

/// A bank of `k` per-parameter MLPs (30 → 4 → 4 → 3) from theta's `ff_mod_stack/~/…`: per
/// layer, weights `[k][in][out]` and biases `[k][out]`. VeLO and Celo interpolate a tensor's
/// MLP from it with that tensor's controls.
pub(crate) struct Bank {
    layers: Vec<(Vec<f32>, Vec<f32>, usize, usize)>,
    k: usize,
}

impl Bank {
    /// Bind a bank of `k`; `arch` names the architecture in errors.
    pub(crate) fn load(theta: &Theta, arch: &'static str, k: usize) -> Result<Self, ThetaError> {
        // First layer: the 14 group matrices stacked along the input axis → [k][30][4].
        let mut w0 = vec![0f32; k * FF_INPUTS * 4];
        let mut row = 0;
        for (gi, &width) in GROUPS.iter().enumerate() {
            let wg = theta.get(arch, &format!("ff_mod_stack/~/w0__{gi}"), &[k, width, 4])?;
            for kk in 0..k {
                for r in 0..width {
                    for c in 0..4 {
                        w0[(kk * FF_INPUTS + row + r) * 4 + c] = wg[(kk * width + r) * 4 + c];
                    }
                }
            }
            row += width;
        }
        let layers = vec![
            (w0, theta.get(arch, "ff_mod_stack/~/b0", &[k, 4])?.to_vec(), FF_INPUTS, 4),
            (theta.get(arch, "ff_mod_stack/~/w1", &[k, 4, 4])?.to_vec(), theta.get(arch, "ff_mod_stack/~/b1", &[k, 4])?.to_vec(), 4, 4),
            (theta.get(arch, "ff_mod_stack/~/w2", &[k, 4, 3])?.to_vec(), theta.get(arch, "ff_mod_stack/~/b2", &[k, 3])?.to_vec(), 4, 3),
        ];
        Ok(Self { layers, k })
    }

    /// The MLP `mult · mean_k(control_k · bank_k)` (VeLO: `mult` 100; Celo: 1).
    pub(crate) fn interpolate(&self, control: &[f32], mult: f64) -> Mlp {
        let k = self.k;
        let layers = self
            .layers
            .iter()
            .map(|(w, b, n_in, n_out)| {
                let mix = |stack: &[f32], len: usize| -> Vec<f32> {
                    (0..len).map(|i| (mult * (0..k).map(|kk| f64::from(stack[kk * len + i] * control[kk])).sum::<f64>() / k as f64) as f32).collect()
                };
                (mix(w, n_in * n_out), mix(b, *n_out), *n_in, *n_out)
            })
            .collect();
        Mlp { layers }
    }
}

/// Loss-buffer features (`BufferLossAccumulators`): 10 EMAs of the loss with half-lives
/// log-spaced from 10 to the horizon.
#[derive(Clone, Debug)]
pub struct LossBuffer {
    decays: [f32; 10],
    means: [f32; 10],
    running_min: [f32; 10],
    iteration: i32,
}

impl LossBuffer {
    /// Empty buffer for a `num_steps` horizon.
    pub fn new(num_steps: u64) -> Self {
        // jnp.logspace(1, log10(num_steps), 10) in f32: jax's linspace interpolates
        // start·(1 − i/9) + stop·(i/9) and pins the last point to `stop`.
        let stop = (num_steps as f32).log10();
        let decays = std::array::from_fn(|i| {
            let s = i as f32 / 9.0;
            let x = if i == 9 { stop } else { 1.0 * (1.0 - s) + stop * s };
            (-1.0 / 10f32.powf(x)).exp()
        });
        Self { decays, means: [0.0; 10], running_min: [999_999_999_999.0; 10], iteration: 0 }
    }

    /// Fold in one loss (clipped to twice the largest corrected mean).
    pub fn update(&mut self, loss: f32) {
        let t = (self.iteration + 1) as f32;
        let cor = |means: &[f32; 10], d: &[f32; 10]| -> [f32; 10] { std::array::from_fn(|i| means[i] / (1.0 - d[i].powf(t))) };
        let approx_max = if self.iteration == 0 { loss } else { cor(&self.means, &self.decays).into_iter().fold(f32::NEG_INFINITY, f32::max) };
        let loss = (approx_max.abs() * 2.0).min(loss);
        for i in 0..10 {
            self.means[i] = self.means[i] * self.decays[i] + loss * (1.0 - self.decays[i]);
        }
        let c = cor(&self.means, &self.decays);
        for (m, c) in self.running_min.iter_mut().zip(c) {
            *m = m.min(c);
        }
        self.iteration += 1;
    }

    /// The 9 features.
    pub fn features(&self) -> [f32; 9] {
        let t = self.iteration as f32;
        let cor: [f32; 10] = std::array::from_fn(|i| self.means[i] / (1.0 - self.decays[i].powf(t)));
        std::array::from_fn(|i| {
            let den = (cor[i + 1] - self.running_min[i]).max(1e-8);
            let f = ((cor[i] - self.running_min[i]) / den - 1.0).clamp(-1.0, 1.0);
            if self.iteration <= 2 {
                f * 0.0
            } else {
                f
            }
        })
    }
}

fn clip_log_abs(v: f32, scale: f32) -> f32 {
    (1e-8 + (v * scale).abs()).ln().clamp(-5.0, 5.0) * 0.5
}

/// Every tensor's mean square and LSTM inputs, compiled per instruction set.
struct RnnInputs<'a> {
    params: &'a [&'a [f32]],
    grads: &'a [&'a [f32]],
    st: &'a VeloMember,
    fraction_trained: f32,
    loss_features: &'a [f32; 9],
    /// Per tensor, `mean p²` (f32): the LSTM inputs' normaliser and the step's scale both read it.
    mean_sq: &'a mut Vec<f32>,
    out: &'a mut Vec<[f32; RNN_INPUTS]>,
}

impl Kernel for RnnInputs<'_> {
    #[inline(always)]
    fn run(&mut self) {
        let st = self.st;
        for (i, p) in self.params.iter().enumerate() {
            let mean_sq = (sum_squares(p) / p.len() as f64) as f32;
            self.mean_sq.push(mean_sq);
            self.out.push(rnn_features(mean_sq, self.grads[i], &st.mom.m[i], &st.rms.v[i], &st.shapes[i], self.fraction_trained, self.loss_features));
        }
    }
}

/// A tensor's reduced statistics the LSTM inputs read, each an f64 sum over the tensor divided
/// by its length and rounded to f32 (as [`rnn_features`] computes them; a device computes them
/// where the tensors live and hands them here).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct TensorStats {
    /// Mean of the second moment times the normaliser `1 / √max(mean p², 1e-9)`.
    pub mean_rms: f32,
    /// Mean of `(m_j · norm − mean(m_j · norm))²` per momentum `j`.
    pub var_m: [f32; 3],
    /// Mean of `(rms · norm − mean(m_j · norm))²` (the reference subtracts the momentum's mean).
    pub var_rms: [f32; 3],
}

/// The 30 LSTM inputs of one tensor (reference order: keys sorted), from its parameters' mean
/// square `mean_sq`.
#[allow(clippy::too_many_arguments)]
#[inline(always)]
pub fn rnn_features(mean_sq: f32, g: &[f32], m: &[f32], rms: &[f32], shape: &[usize], fraction_trained: f32, loss_features: &[f32; 9]) -> [f32; RNN_INPUTS] {
    let _ = g; // the gradient enters only through the normalisation in the reference, which it does not use
    rnn_features_from(&tensor_stats(mean_sq, m, rms), shape, fraction_trained, loss_features)
}

/// One tensor's [`TensorStats`] from its parameters' mean square, its momenta `m` (`[3][n]`) and
/// its second moment `rms` (`[n]`). The means and variances are f64 sums over the fixed tree of
/// `lane_sum` (16 independent chains, not one chain as long as the tensor).
#[inline(always)]
pub fn tensor_stats(mean_sq: f32, m: &[f32], rms: &[f32]) -> TensorStats {
    let n = rms.len();
    let norm = 1.0 / mean_sq.max(1e-9).sqrt();
    let (m0, m1, m2) = (&m[..n], &m[n..2 * n], &m[2 * n..3 * n]);
    let acc = [lane_sum(m0, |x| x * norm), lane_sum(m1, |x| x * norm), lane_sum(m2, |x| x * norm), lane_sum(rms, |x| x * norm)];
    let mean_m: [f32; 3] = std::array::from_fn(|j| (acc[j] / n as f64) as f32);
    let mut stats = TensorStats { mean_rms: (acc[3] / n as f64) as f32, var_m: [0.0; 3], var_rms: [0.0; 3] };
    for (j, mj) in [m0, m1, m2].iter().enumerate() {
        let mu = mean_m[j];
        stats.var_m[j] = (lane_sum(mj, |x| (x * norm - mu).powi(2)) / n as f64) as f32;
        stats.var_rms[j] = (lane_sum(rms, |x| (x * norm - mu).powi(2)) / n as f64) as f32;
    }
    stats
}

/// The 30 LSTM inputs of a tensor of `shape` from its reduced statistics.
pub fn rnn_features_from(stats: &TensorStats, shape: &[usize], fraction_trained: f32, loss_features: &[f32; 9]) -> [f32; RNN_INPUTS] {
    let mut out = [0f32; RNN_INPUTS];
    let ts = [0.03f32, 0.1, 0.2, 0.4, 0.6, 0.8, 0.9, 1.0, 1.1];
    for (i, t) in ts.iter().enumerate() {
        out[i] = ((fraction_trained - t) * 10.0).tanh();
    }
    out[9..18].copy_from_slice(loss_features);
    out[18] = clip_log_abs(stats.mean_rms, 10.0);
    let rank = shape.iter().filter(|&&d| d > 1).count();
    if rank < 5 {
        out[19 + rank] = 1.0;
    }
    for j in 0..3 {
        out[24 + j] = clip_log_abs(stats.var_m[j], 10.0);
        out[27 + j] = clip_log_abs(stats.var_rms[j], 10.0);
    }
    out
}

/// Intermediates of the last step, for conformance tests against the reference's debug tensors.
#[derive(Clone, Debug, Default)]
pub struct VeloDebug {
    /// `[n_tensors][30]` LSTM inputs.
    pub rnn_inputs: Vec<[f32; RNN_INPUTS]>,
    /// `[n_tensors][param_inits]` controls.
    pub controls: Vec<Vec<f32>>,
    /// `[n_tensors]` LR multipliers.
    pub lr_mult: Vec<f32>,
    /// Loss features after folding in this step's loss.
    pub loss_features: [f32; 9],
    /// iteration / num_steps.
    pub fraction_trained: f32,
    /// `[n_tensors][lstm_hidden]` after the step.
    pub lstm_hidden: Vec<Vec<f32>>,
    /// `[n_tensors][lstm_hidden]` after the step.
    pub lstm_cell: Vec<Vec<f32>>,
}

/// VeLO's meta-parameters bound into its layers: the update rule, shared by every run.
pub struct VeloNet {
    cfg: VeloConfig,
    core: MixLstm,
    to_controls: Dense,
    step_size: Dense,
    /// Bank of per-parameter MLPs.
    bank: Bank,
    init_h: Vec<f32>,
    init_c: Vec<f32>,
    mom: Vec<f32>,
    rms: Vec<f32>,
    fac: Vec<f32>,
    members: usize,
    threads: usize,
    record_debug: bool,
}

/// One member's run state.
#[derive(Clone, Debug)]
pub struct VeloMember {
    mom: Momentum,
    rms: SecondMoment,
    fac: Factored,
    /// LSTM state per tensor; empty until the first step takes the rule's initial state (so a
    /// rule rebound before the first step starts from its own initial state).
    hidden: Vec<Vec<f32>>,
    cell: Vec<Vec<f32>>,
    loss_buffer: Option<LossBuffer>,
    iteration: u32,
    /// Reused per-step buffers.
    fac_g: Vec<Vec<f32>>,
    scratch: Vec<f32>,
    clipped: Vec<Vec<f32>>,
    shapes: Vec<Vec<usize>>,
    /// Intermediates of the last step, when the rule records them ([`VeloNet::with_debug`]).
    pub debug: Option<VeloDebug>,
}

impl VeloNet {
    /// Bind `theta`, checking every meta-parameter's presence and shape; one member.
    pub fn bind(theta: &Theta, cfg: VeloConfig) -> Result<Self, ThetaError> {
        let (h, k) = (cfg.lstm_hidden, cfg.param_inits);
        let core = MixLstm::bind(theta, ARCH, RNN_INPUTS, h)?;
        let to_controls = Dense::load(theta, ARCH, "rnn_params/rnn_to_controls", h, k)?;
        let step_size = Dense::load(theta, ARCH, "rnn_params/step_size", h, 1)?;
        let init_h = theta.get(ARCH, "lstm_init_state/hidden", &[1, h])?.to_vec();
        let init_c = theta.get(ARCH, "lstm_init_state/cell", &[1, h])?.to_vec();
        let bank = Bank::load(theta, ARCH, k)?;
        Ok(Self {
            cfg,
            core,
            to_controls,
            step_size,
            bank,
            init_h,
            init_c,
            mom: learned_decays(&MOM, None),
            rms: clip_decays(learned_decays(&RMS, None)),
            fac: clip_decays(learned_decays(&FAC, None)),
            members: 1,
            threads: 1,
            record_debug: false,
        })
    }

    /// The same rule over `members` members (each its own state, all with this theta).
    pub fn with_members(mut self, members: usize) -> Self {
        self.members = members.max(1);
        self
    }

    /// Split each large tensor's update over `threads` threads (for a run that has the
    /// machine to itself; a sweep keeps one single-threaded run per core). The same bits for
    /// any count.
    pub fn with_threads(mut self, threads: usize) -> Self {
        self.threads = threads.max(1);
        self
    }

    /// Record each step's intermediates in the state (for conformance tests; off by default,
    /// since it clones the LSTM state every step).
    pub fn with_debug(mut self, on: bool) -> Self {
        self.record_debug = on;
        self
    }

    /// The momentum, second-moment and factored decays, as bound.
    pub fn decays(&self) -> (&[f32], &[f32], &[f32]) {
        (&self.mom, &self.rms, &self.fac)
    }

    /// The hyperparameters.
    pub fn config(&self) -> VeloConfig {
        self.cfg
    }

    /// The LSTM's initial (hidden, cell) state of every tensor.
    pub fn initial_state(&self) -> (&[f32], &[f32]) {
        (&self.init_h, &self.init_c)
    }

    /// Mix layers + LSTM over the batch of tensors whose LSTM inputs are `inputs`; returns
    /// (controls, lr_mult) and advances the LSTM state `hidden`, `cell` (one row per tensor).
    /// Each weight matrix is streamed once for all tensors.
    pub fn lstm(&self, hidden: &mut [Vec<f32>], cell: &mut [Vec<f32>], inputs: &[[f32; RNN_INPUTS]]) -> (Vec<Vec<f32>>, Vec<f32>) {
        let n = inputs.len();
        let x: Vec<f32> = inputs.iter().flat_map(|r| r.iter().copied()).collect();
        let hidden = self.core.step(hidden, cell, &x, n);
        let ctrl = self.to_controls.batch(&hidden, n);
        let lr = self.step_size.batch(&hidden, n);
        let k = self.cfg.param_inits;
        ((0..n).map(|t| ctrl[t * k..(t + 1) * k].to_vec()).collect(), lr)
    }

    /// The per-parameter MLP for one tensor: `100 · mean_k(control_k · bank_k)`.
    pub fn interpolate(&self, control: &[f32]) -> Mlp {
        self.bank.interpolate(control, 100.0)
    }

    fn update_member(&self, st: &mut VeloMember, params: &mut [&mut [f32]], grads: &[&[f32]], loss: f32, num_steps: u64) {
        let num_steps = num_steps.max(1);
        if st.hidden.is_empty() {
            st.hidden = vec![self.init_h.clone(); params.len()];
            st.cell = vec![self.init_c.clone(); params.len()];
        }
        let buffer = st.loss_buffer.get_or_insert_with(|| LossBuffer::new(num_steps));
        buffer.update(loss);
        let loss_features = buffer.features();
        let mut clipped = std::mem::take(&mut st.clipped);
        crate::clip_gradients(&mut clipped, grads.iter().copied());
        let grads: Vec<&[f32]> = clipped.iter().map(Vec::as_slice).collect();
        let fraction_trained = st.iteration as f32 / num_steps as f32;
        let (mut inputs, mut mean_sq) = (Vec::with_capacity(params.len()), Vec::with_capacity(params.len()));
        let params_ro: Vec<&[f32]> = params.iter().map(|p| &**p).collect();
        simd_dispatch(&mut RnnInputs {
            params: &params_ro,
            grads: &grads,
            st,
            fraction_trained,
            loss_features: &loss_features,
            mean_sq: &mut mean_sq,
            out: &mut inputs,
        });
        let (controls, lr_mult) = self.lstm(&mut st.hidden, &mut st.cell, &inputs);

        simd_dispatch(&mut crate::accum::Accumulators {
            mom: (&mut st.mom, &self.mom),
            rms: (&mut st.rms, &self.rms),
            fac: (&mut st.fac, &self.fac),
            grads: &grads,
            fac_g: &mut st.fac_g,
        });
        for (i, p) in params.iter_mut().enumerate() {
            let net = self.interpolate(&controls[i]);
            let n = p.len();
            let param_scale = (mean_sq[i] + 1e-9).sqrt();
            let rule = StepRule::Velo { exp_mult: self.cfg.exp_mult, step_mult: self.cfg.step_mult, param_scale, lr_mult: lr_mult[i] };
            let new = &mut st.scratch;
            new.resize(n, 0.0);
            let t = TensorInputs { g: grads[i], p, m: &st.mom.m[i], rms: &st.rms.v[i], fac_g: &st.fac_g[i], fac: &st.fac.state[i] };
            process_tensor_threads(Flavor::Velo, &t, &net, rule, new, self.threads);
            p.copy_from_slice(new);
        }
        st.iteration += 1;
        drop(grads);
        st.clipped = clipped;
        if self.record_debug {
            st.debug = Some(VeloDebug {
                rnn_inputs: inputs,
                controls,
                lr_mult,
                loss_features,
                fraction_trained,
                lstm_hidden: st.hidden.clone(),
                lstm_cell: st.cell.clone(),
            });
        }
    }
}

impl UpdateRule for VeloNet {
    type State = Vec<VeloMember>;
    fn name(&self) -> &'static str {
        ARCH
    }
    fn members(&self) -> usize {
        self.members
    }
    fn init(&self, params: &[ParamInfo]) -> Self::State {
        let one = VeloMember {
            mom: Momentum::new(MOM.len(), params),
            rms: SecondMoment::new(RMS.len(), params),
            fac: Factored::new(FAC.len(), params),
            hidden: Vec::new(),
            cell: Vec::new(),
            loss_buffer: None,
            iteration: 0,
            fac_g: Vec::new(),
            scratch: Vec::new(),
            clipped: Vec::new(),
            shapes: params.iter().map(|p| p.shape.clone()).collect(),
            debug: None,
        };
        vec![one; self.members]
    }
    fn update(&self, state: &mut Self::State, params: &mut [&mut [f32]], grads: &[&[f32]], ctx: &StepContext<'_>) {
        crate::for_each_member(state, params, grads, |k, st, p, g| self.update_member(st, p, g, ctx.loss(k), ctx.num_steps));
    }
}
