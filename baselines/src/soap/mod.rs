//! SOAP (Vyas et al. 2024, "SOAP: Improving and Stabilizing Shampoo using Adam") as
//! nikhilvyas/SOAP's `soap.py` (commit a1e5535) computes it: each preconditioned axis of a
//! tensor keeps Shampoo's factor `GG[i]` (an EMA, decay `shampoo_beta`, of the gradient's
//! outer product over the other axes) and its eigenbasis `Q[i]` (`eigh` at the first step,
//! then one power iteration + QR every `precondition_frequency` steps); Adam runs in that
//! basis — the gradient is projected in, the first moment lives there, `m/(√v + eps)` is
//! projected back — with the step size `lr·√(1−β₂ᵗ)/(1−β₁ᵗ)` and decoupled weight decay
//! `p ← p − lr·wd·p` after the step. The first step only builds the preconditioner (the
//! parameters do not move). `merge_dims`, `precondition_1d`, `max_precond_dim`,
//! `normalize_grads` and `correct_bias` are the reference's options (channels-first kernels).
//!
//! The host rule, the device rule ([`device`]: the projections as candle matrix products, the
//! eigendecompositions on the host) and the kind's descriptor. The algebra is in [`basis`].

pub mod basis;
pub mod device;

use crate::kind::{bound, Hparam, Kind, ReferenceArgs, Values};
use anyhow::Result;
use basis::{Factors, Scratch};
use beatmatch_core::matmul::{members, members_mut};
use beatmatch_core::{Optimizer, OptimizerSpec, ParamInfo, StepContext, UpdateRule};
use candle_core::Device;

/// The kind's name.
pub const NAME: &str = "soap";

crate::hyperparameters! {
    /// One SOAP member's hyperparameters (defaults: soap.py's).
    pub struct SoapHp {
        /// Learning rate.
        lr: f64 = 3e-3, Positive;
        /// Adam's first-moment decay.
        b1: f64 = 0.95, Decay;
        /// Adam's second-moment decay.
        b2: f64 = 0.95, Decay;
        /// Decay of the factors' EMA (-1: the same as `b2`).
        shampoo_beta: f64 = -1.0, DecayOrUnset;
        /// Added outside the square root.
        eps: f64 = 1e-8, Epsilon;
        /// Decoupled weight decay (times the learning rate), applied after the step.
        wd: f64 = 0.01, Off;
        /// Steps between eigenbasis refreshes (power iteration + QR).
        precondition_frequency: usize = 10.0, Count;
        /// Widest dimension that gets a preconditioner.
        max_precond_dim: usize = 10000.0, Count;
        /// Merge consecutive dimensions while their product stays within `max_precond_dim` (0 or 1).
        merge_dims: bool = 0.0, Flag;
        /// Precondition 1-D tensors too (0 or 1).
        precondition_1d: bool = 0.0, Flag;
        /// Divide each tensor's update by its RMS (0 or 1).
        normalize_grads: bool = 0.0, Flag;
        /// Adam's bias correction in the step size (0 or 1).
        correct_bias: bool = 1.0, Flag;
    }
}

/// One member's constants.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Member {
    lr: f64,
    b1: f64,
    b2: f64,
    shampoo_beta: f64,
    eps: f32,
    wd: f64,
    frequency: u32,
    max_precond_dim: usize,
    merge_dims: bool,
    precondition_1d: bool,
    normalize: bool,
    correct_bias: bool,
}

impl Member {
    pub(crate) fn new(h: &SoapHp) -> Self {
        Self {
            lr: h.lr,
            b1: h.b1,
            b2: h.b2,
            shampoo_beta: if h.shampoo_beta >= 0.0 { h.shampoo_beta } else { h.b2 },
            eps: h.eps as f32,
            wd: h.wd,
            frequency: h.precondition_frequency as u32,
            max_precond_dim: h.max_precond_dim,
            merge_dims: h.merge_dims,
            precondition_1d: h.precondition_1d,
            normalize: h.normalize_grads,
            correct_bias: h.correct_bias,
        }
    }

    /// How this member preconditions a tensor.
    pub fn factors(&self, p: &ParamInfo) -> Factors {
        Factors::of(&p.shape, self.max_precond_dim, self.merge_dims, self.precondition_1d)
    }

    /// The step size at update `t` (from 1): `lr·√(1−β₂ᵗ)/(1−β₁ᵗ)` in f64, as Python computes it.
    fn step_size(&self, t: u32) -> f32 {
        if self.correct_bias {
            let (c1, c2) = (1.0 - self.b1.powi(t as i32), 1.0 - self.b2.powi(t as i32));
            (self.lr * c2.sqrt() / c1) as f32
        } else {
            self.lr as f32
        }
    }

    /// The factors' EMA weight, `1 − shampoo_beta`, as torch's `lerp_` takes it.
    fn lerp_weight(&self) -> f32 {
        (1.0 - self.shampoo_beta) as f32
    }

    /// Whether update `t` (from 1) ends with an eigenbasis refresh.
    fn refreshes(&self, t: u32) -> bool {
        t > 0 && t.is_multiple_of(self.frequency)
    }
}

/// One member's state for one tensor.
#[derive(Clone, Debug)]
pub struct TensorState {
    /// Adam's first moment, in the eigenbasis.
    pub m: Vec<f32>,
    /// Adam's second moment, in the eigenbasis.
    pub v: Vec<f32>,
    /// Shampoo's factor per axis (`None`: not preconditioned), `d × d` row-major.
    pub gg: Vec<Option<Vec<f32>>>,
    /// The eigenbasis per axis, columns by decreasing eigenvalue.
    pub q: Vec<Option<Vec<f32>>>,
}

impl TensorState {
    fn new(f: &Factors) -> Self {
        let n = f.numel();
        let gg = f.dims.iter().zip(&f.preconditioned).map(|(&d, &p)| p.then(|| vec![0.0; d * d])).collect();
        Self { m: vec![0.0; n], v: vec![0.0; n], gg, q: Vec::new() }
    }
}

/// The members of one tensor that share its factors, stepped together: every projection and
/// outer product of theirs is one batched product ([`basis::project_batch`],
/// [`basis::accumulate_batch`]); the eigendecompositions and QRs stay one per member.
struct Group<'a> {
    /// The members' constants.
    c: Vec<&'a Member>,
    /// Their state for this tensor.
    st: Vec<&'a mut TensorState>,
    /// Their gradients.
    g: Vec<&'a [f32]>,
    /// The factors they share.
    f: &'a Factors,
}

impl Group<'_> {
    fn bases(&self) -> Vec<&[Option<Vec<f32>>]> {
        self.st.iter().map(|st| st.q.as_slice()).collect()
    }

    /// `GG ← lerp(GG, outer(g), 1 − shampoo_beta)` for every member.
    fn accumulate(&mut self, s: &mut Scratch) {
        let w: Vec<f32> = self.c.iter().map(|c| c.lerp_weight()).collect();
        let mut gg: Vec<&mut [Option<Vec<f32>>]> = self.st.iter_mut().map(|st| st.gg.as_mut_slice()).collect();
        basis::accumulate_batch(&self.g, self.f, &mut gg, &w, s);
    }

    /// The first step: build the factors from the gradients and their eigenbases; nothing moves.
    fn start(&mut self, s: &mut Scratch) {
        self.accumulate(s);
        for st in &mut self.st {
            st.q = st.gg.iter().zip(&self.f.dims).map(|(gg, &d)| gg.as_ref().map(|gg| basis::eigenbasis(gg, d))).collect();
        }
    }

    /// Update `t` (from 1) of the members' weights `w`, then the preconditioner (soap.py's
    /// `step` after the first, and `update_preconditioner`).
    fn update(&mut self, t: u32, w: &mut [&mut [f32]], work: &mut Work) {
        let n = self.f.numel();
        let Work { scratch: s, tmp, direction } = work;
        tmp.resize(self.st.len() * n, 0.0);
        direction.resize(tmp.len(), 0.0);
        basis::project_batch(&self.g, self.f, &self.bases(), false, s, &mut members_mut(tmp, n));
        for (((st, c), gp), d) in self.st.iter_mut().zip(&self.c).zip(tmp.chunks_exact(n)).zip(direction.chunks_exact_mut(n)) {
            let (b1, w1, b2, w2) = (c.b1 as f32, (1.0 - c.b1) as f32, c.b2 as f32, (1.0 - c.b2) as f32);
            for ((m, v), &gp) in st.m.iter_mut().zip(st.v.iter_mut()).zip(gp) {
                *m = *m * b1 + gp * w1;
                *v = *v * b2 + gp * gp * w2;
            }
            // m/(√v + eps), projected back below.
            for ((d, &m), &v) in d.iter_mut().zip(&st.m).zip(&st.v) {
                *d = m / (v.sqrt() + c.eps);
            }
        }
        basis::project_batch(&members(direction, n), self.f, &self.bases(), true, s, &mut members_mut(tmp, n));
        for ((w, c), u) in w.iter_mut().zip(&self.c).zip(tmp.chunks_exact_mut(n)) {
            if c.normalize {
                let mean_sq = u.iter().map(|&x| f64::from(x) * f64::from(x)).sum::<f64>() / u.len().max(1) as f64;
                let scale = (1e-30 + mean_sq.sqrt()) as f32;
                u.iter_mut().for_each(|x| *x /= scale);
            }
            let neg_step = -c.step_size(t);
            for (w, &u) in w.iter_mut().zip(u.iter()) {
                *w += u * neg_step;
            }
            if c.wd > 0.0 {
                let decay = (-c.lr * c.wd) as f32;
                w.iter_mut().for_each(|w| *w += *w * decay);
            }
        }
        self.precondition(t, s, tmp);
    }

    /// soap.py's `update_preconditioner` after update `t`: the factors' EMA and, for each
    /// member refreshing at `t` (every `precondition_frequency` updates), a refresh of the
    /// eigenbases (permuting the second moment with them) with the first moment carried from
    /// the old basis to the new. soap.py carries the first moment out of the basis and back in
    /// after every update; where the basis does not change that is the identity up to float
    /// rounding (`Q` is orthogonal), so it is done only at refreshes: two of the update's four
    /// projections, ~40% of its cost.
    fn precondition(&mut self, t: u32, s: &mut Scratch, tmp: &mut Vec<f32>) {
        self.accumulate(s);
        let (f, n) = (self.f, self.f.numel());
        let mut refreshing: Vec<&mut TensorState> = self.st.iter_mut().zip(&self.c).filter(|(_, c)| c.refreshes(t)).map(|(st, _)| &mut **st).collect();
        if refreshing.is_empty() {
            return;
        }
        let carry = |refreshing: &mut [&mut TensorState], back: bool, s: &mut Scratch, tmp: &mut Vec<f32>| {
            tmp.resize(refreshing.len() * n, 0.0);
            let m: Vec<&[f32]> = refreshing.iter().map(|st| st.m.as_slice()).collect();
            let q: Vec<&[Option<Vec<f32>>]> = refreshing.iter().map(|st| st.q.as_slice()).collect();
            basis::project_batch(&m, f, &q, back, s, &mut members_mut(tmp, n));
            for (st, m) in refreshing.iter_mut().zip(tmp.chunks_exact(n)) {
                st.m.copy_from_slice(m);
            }
        };
        carry(&mut refreshing, true, s, tmp);
        for st in &mut refreshing {
            for axis in 0..f.dims.len() {
                if let (Some(gg), Some(o)) = (&st.gg[axis], &st.q[axis]) {
                    let q = basis::refresh(gg, o, f, axis, &mut st.v, s);
                    st.q[axis] = Some(q);
                }
            }
        }
        carry(&mut refreshing, false, s, tmp);
    }
}

/// Buffers reused across tensors and steps (`members ×` a tensor).
#[derive(Clone, Debug, Default)]
struct Work {
    scratch: Scratch,
    tmp: Vec<f32>,
    direction: Vec<f32>,
}

/// SOAP over one or more members.
pub struct Soap {
    members: Vec<Member>,
    /// `factors[tensor][member]`.
    factors: Vec<Vec<Factors>>,
    /// `groups[tensor]`: the members with the same factors, stepped together.
    groups: Vec<Vec<Vec<usize>>>,
}

impl Soap {
    /// One member per entry of `members`, over tensors `params`.
    pub fn new(members: &[SoapHp], params: &[ParamInfo]) -> Self {
        let members: Vec<Member> = members.iter().map(Member::new).collect();
        let factors: Vec<Vec<Factors>> = params.iter().map(|p| members.iter().map(|m| m.factors(p)).collect()).collect();
        let groups = factors.iter().map(|fs| groups(fs)).collect();
        Self { members, factors, groups }
    }
}

/// The members (indices into `factors`) grouped by equal factors, in member order.
fn groups(factors: &[Factors]) -> Vec<Vec<usize>> {
    let mut out: Vec<Vec<usize>> = Vec::new();
    for (j, f) in factors.iter().enumerate() {
        match out.iter_mut().find(|g| factors[g[0]] == *f) {
            Some(g) => g.push(j),
            None => out.push(vec![j]),
        }
    }
    out
}

/// SOAP's run state.
#[derive(Clone, Debug)]
pub struct SoapState {
    /// `tensors[tensor][member]`.
    pub tensors: Vec<Vec<TensorState>>,
    /// Calls so far; the first only builds the preconditioner, so updates taken = calls − 1.
    pub calls: u32,
    work: Work,
}

impl UpdateRule for Soap {
    type State = SoapState;
    fn name(&self) -> &'static str {
        NAME
    }
    fn members(&self) -> usize {
        self.members.len()
    }
    fn init(&self, _params: &[ParamInfo]) -> SoapState {
        let tensors = self.factors.iter().map(|fs| fs.iter().map(TensorState::new).collect()).collect();
        SoapState { tensors, calls: 0, work: Work::default() }
    }
    fn update(&self, s: &mut SoapState, params: &mut [&mut [f32]], grads: &[&[f32]], _ctx: &StepContext<'_>) {
        let t = s.calls;
        s.calls += 1;
        let k = self.members.len();
        for (i, ((w, g), states)) in params.iter_mut().zip(grads).zip(&mut s.tensors).enumerate() {
            let n = g.len() / k;
            if n == 0 {
                continue;
            }
            let (mut states, mut ws): (Vec<Option<&mut TensorState>>, Vec<Option<&mut [f32]>>) =
                (states.iter_mut().map(Some).collect(), w.chunks_exact_mut(n).map(Some).collect());
            for members in &self.groups[i] {
                let mut group = Group {
                    c: members.iter().map(|&j| &self.members[j]).collect(),
                    st: members.iter().map(|&j| states[j].take().expect("a member is in one group")).collect(),
                    g: members.iter().map(|&j| &g[j * n..(j + 1) * n]).collect(),
                    f: &self.factors[i][members[0]],
                };
                if t == 0 {
                    group.start(&mut s.work.scratch);
                } else {
                    let mut w: Vec<&mut [f32]> = members.iter().map(|&j| ws[j].take().expect("a member is in one group")).collect();
                    group.update(t, &mut w, &mut s.work);
                }
            }
        }
    }
}

/// The kind.
pub struct SoapKind;

impl Kind for SoapKind {
    fn name(&self) -> &'static str {
        NAME
    }
    fn about(&self) -> &'static str {
        "SOAP (Vyas et al. 2024; Adam in the eigenbasis of Shampoo's factors) as nikhilvyas/SOAP soap.py"
    }
    fn hparams(&self) -> &'static [Hparam] {
        SoapHp::HPARAMS
    }
    fn host(&self, members: &[Values], params: &[ParamInfo]) -> Box<dyn Optimizer> {
        bound(Soap::new(&members.iter().map(SoapHp::from_values).collect::<Vec<_>>(), params), params)
    }
    fn device(&self, member: &Values, params: &[ParamInfo], dev: &Device) -> Option<Box<dyn Optimizer>> {
        let c = Member::new(&SoapHp::from_values(member));
        let factors = params.iter().map(|p| c.factors(p)).collect();
        Some(beatmatch_device::on(device::SoapOnDevice { member: c, factors }, params, dev))
    }
    fn reference_spec(&self, name: &str, meta: &serde_json::Value) -> Option<Result<OptimizerSpec>> {
        (meta["optimizer"] == "soap.SOAP").then(|| {
            let r = ReferenceArgs::of(name, meta);
            r.require("data_format", |v| v.is_null() || v == "channels_first")?;
            let betas = &r.args["betas"];
            let beta = |i: usize, default: f64| {
                if betas.is_null() {
                    Ok(default)
                } else {
                    betas[i].as_f64().ok_or_else(|| anyhow::anyhow!("{name}: constructor_args.betas[{i}] is not a number"))
                }
            };
            let flag_or = |k: &str, default: bool| f64::from(u8::from(r.args[k].as_bool().unwrap_or(default)));
            Ok(OptimizerSpec::new(NAME)
                .with("lr", r.num_or("lr", 3e-3))
                .with("b1", beta(0, 0.95)?)
                .with("b2", beta(1, 0.95)?)
                .with("shampoo_beta", r.num_or("shampoo_beta", -1.0))
                .with("eps", r.num_or("eps", 1e-8))
                .with("wd", r.num_or("weight_decay", 0.01))
                .with("precondition_frequency", r.num_or("precondition_frequency", 10.0))
                .with("max_precond_dim", r.num_or("max_precond_dim", 10000.0))
                .with("merge_dims", flag_or("merge_dims", false))
                .with("precondition_1d", flag_or("precondition_1d", false))
                .with("normalize_grads", flag_or("normalize_grads", false))
                .with("correct_bias", flag_or("correct_bias", true)))
        })
    }
}
