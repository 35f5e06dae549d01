//! Muon (Jordan et al. 2024, the modded-nanogpt baseline) as optax 0.2.8's
//! `optax.contrib.muon` computes it. Every 2-D tensor takes Muon: a bias-corrected EMA of the
//! gradient (Nesterov by default), orthogonalised by Newton–Schulz — the matrix, transposed to
//! be wide, divided by its Frobenius norm + eps, then `ns_steps` iterations of
//! `X ← a·X + (b·A + (c·A)·A)·X` with `A = X·Xᵀ` and (a, b, c) = (3.4445, −4.7750, 2.0315) —
//! scaled by `√max(1, fan_out/fan_in)`, plus decoupled weight decay, times `−lr`. Every other
//! rank takes optax's AdamW with the same Nesterov flag and eps (`adam_*` hyperparameters).
//! Two options follow Keller Jordan's reference instead (both off by default, as in optax):
//! `adam_io` sends the model's input and output matrices (their [`Role`]) to AdamW, and
//! `conv_matrix` orthogonalises a convolution kernel as an `[out, in·kh·kw]` matrix.
//! The host rule, the device rule ([`device`]: the same steps as candle operations) and the
//! kind's descriptor.

pub mod device;

use crate::adam::{zeros, MomentHp};
use crate::kind::{bound, Hparam, Kind, ReferenceArgs, Values};
use anyhow::Result;
use beatmatch_core::{Optimizer, OptimizerSpec, ParamInfo, Role, StepContext, UpdateRule};
use candle_core::Device;

/// The kind's name.
pub const NAME: &str = "muon";

pub use beatmatch_core::newton_schulz::{newton_schulz, Scratch, NS_COEFFS};

crate::hyperparameters! {
    /// One Muon member's hyperparameters (defaults: optax's `muon`, the learning rate Keller
    /// Jordan's).
    pub struct MuonHp {
        /// Learning rate of the 2-D tensors.
        lr: f64 = 0.02, Positive;
        /// Momentum decay of the 2-D tensors.
        beta: f64 = 0.95, Decay;
        /// Newton–Schulz iterations.
        ns_steps: usize = 5.0, Count;
        /// Added to the Frobenius norm, and outside AdamW's square root.
        eps: f64 = 1e-8, Epsilon;
        /// Decoupled weight decay of the 2-D tensors (times the learning rate).
        wd: f64 = 0.0, Off;
        /// Nesterov momentum, for both parts (0 or 1).
        nesterov: bool = 1.0, Flag;
        /// AdamW's learning rate for the other tensors (0: the same as `lr`).
        adam_lr: f64 = 0.0, Off;
        /// AdamW's first-moment decay.
        adam_b1: f64 = 0.9, Decay;
        /// AdamW's second-moment decay.
        adam_b2: f64 = 0.999, Decay;
        /// AdamW's decoupled weight decay.
        adam_wd: f64 = 0.0, Off;
        /// Send the model's input and output matrices (first layer, embeddings, head) to AdamW, as Keller Jordan's reference does (0 or 1).
        adam_io: bool = 0.0, Flag;
        /// Orthogonalise a convolution kernel [out, in, kh, kw] as an [out, in·kh·kw] matrix, as Keller Jordan's reference does (0 or 1).
        conv_matrix: bool = 0.0, Flag;
    }
}

/// How one member updates one tensor.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Plan {
    /// AdamW.
    Adam,
    /// Muon on the tensor's values as a row-major `rows × cols` matrix, the update scaled by
    /// `scale`.
    Matrix {
        /// Rows.
        rows: usize,
        /// Columns.
        cols: usize,
        /// `√max(1, fan_out/fan_in)`, in f32 as XLA takes it.
        scale: f32,
    },
}

/// `√max(1, fan_out/fan_in)`, in f32 as XLA takes optax's `scale_by_shape`.
fn shape_scale(fan_in: usize, fan_out: usize) -> f32 {
    ((fan_out as f64 / fan_in as f64) as f32).max(1.0).sqrt()
}

/// One member's constants.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Member {
    beta: f32,
    one_minus_beta: f32,
    ns_steps: usize,
    eps: f32,
    wd: f32,
    lr: f32,
    nesterov: bool,
    adam: MomentHp,
    adam_wd: f32,
    adam_lr: f32,
    adam_io: bool,
    conv_matrix: bool,
}

impl Member {
    pub(crate) fn new(h: &MuonHp) -> Self {
        let adam_lr = if h.adam_lr > 0.0 { h.adam_lr } else { h.lr };
        Self {
            beta: h.beta as f32,
            one_minus_beta: (1.0 - h.beta) as f32,
            ns_steps: h.ns_steps,
            eps: h.eps as f32,
            wd: h.wd as f32,
            lr: h.lr as f32,
            nesterov: h.nesterov,
            adam: MomentHp::new(h.adam_b1, h.adam_b2, h.eps),
            adam_wd: h.adam_wd as f32,
            adam_lr: adam_lr as f32,
            adam_io: h.adam_io,
            conv_matrix: h.conv_matrix,
        }
    }

    /// How this member updates `tensor`: a 2-D tensor `[fan_in, fan_out]` (optax's convention)
    /// takes Muon; with `conv_matrix` a kernel `[out, in, kh, kw]` takes it as the `[out,
    /// in·kh·kw]` matrix its values already are (fan_in `in·kh·kw`); with `adam_io` the
    /// model's input and output matrices take AdamW; everything else takes AdamW.
    pub fn plan(&self, tensor: &ParamInfo) -> Plan {
        if self.adam_io && tensor.role != Role::Hidden {
            return Plan::Adam;
        }
        match *tensor.shape.as_slice() {
            [rows, cols] => Plan::Matrix { rows, cols, scale: shape_scale(rows, cols) },
            [out, c, kh, kw] if self.conv_matrix => Plan::Matrix { rows: out, cols: c * kh * kw, scale: shape_scale(c * kh * kw, out) },
            _ => Plan::Adam,
        }
    }

    /// The bias corrections `1 − βᵗ` and `1 − βᵗ⁺¹` of decay `beta` at step `t`, in f32.
    fn corrections(beta: f32, t: i32) -> (f32, f32) {
        (1.0 - beta.powi(t), 1.0 - beta.powi(t + 1))
    }

    /// The momentum estimate Muon orthogonalises: `β·m/(1−βᵗ⁺¹) + (1−β)·g/(1−βᵗ)` (Nesterov) or
    /// `m/(1−βᵗ)`, after `m ← (1−β)g + βm`.
    fn muon_moment(&self, t: i32, g: &[f32], m: &mut [f32], out: &mut [f32]) {
        let (c, c_next) = Self::corrections(self.beta, t);
        for ((o, &g), m) in out.iter_mut().zip(g).zip(m.iter_mut()) {
            *m = self.one_minus_beta * g + self.beta * *m;
            *o = if self.nesterov { self.beta * (*m / c_next) + self.one_minus_beta * (g / c) } else { *m / c };
        }
    }

    /// One member's AdamW step of a tensor that is not 2-D.
    fn adamw(&self, t: i32, w: &mut [f32], g: &[f32], m: &mut [f32], v: &mut [f32]) {
        let MomentHp { b1, b2, one_minus_b1: w1, one_minus_b2: w2, eps } = self.adam;
        let (c1, c2) = self.adam.bias_corrections(t);
        let c1_next = 1.0 - b1.powi(t + 1);
        let neg_lr = -self.adam_lr;
        for (((w, &g), m), v) in w.iter_mut().zip(g).zip(m.iter_mut()).zip(v.iter_mut()) {
            *m = w1 * g + b1 * *m;
            *v = w2 * (g * g) + b2 * *v;
            let m_hat = if self.nesterov { b1 * (*m / c1_next) + w1 * (g / c1) } else { *m / c1 };
            let u = m_hat / ((*v / c2).sqrt() + eps) + self.adam_wd * *w;
            *w += u * neg_lr;
        }
    }
}

/// The members of one tensor that Newton–Schulz orthogonalises together: those with the same
/// plan and iteration count.
#[derive(Clone, Debug, PartialEq)]
struct Batch {
    rows: usize,
    cols: usize,
    scale: f32,
    ns_steps: usize,
    members: Vec<usize>,
    /// Each member's eps, in `members`' order.
    eps: Vec<f32>,
}

/// Group the members taking Muon on a tensor into batches (`plans[member]`).
fn batches(members: &[Member], plans: &[Plan]) -> Vec<Batch> {
    let mut out: Vec<Batch> = Vec::new();
    for (j, (c, plan)) in members.iter().zip(plans).enumerate() {
        let Plan::Matrix { rows, cols, scale } = *plan else { continue };
        match out.iter_mut().find(|b| (b.rows, b.cols, b.scale, b.ns_steps) == (rows, cols, scale, c.ns_steps)) {
            Some(b) => {
                b.members.push(j);
                b.eps.push(c.eps);
            }
            None => out.push(Batch { rows, cols, scale, ns_steps: c.ns_steps, members: vec![j], eps: vec![c.eps] }),
        }
    }
    out
}

/// Muon over one or more members.
pub struct Muon {
    members: Vec<Member>,
    /// `plans[tensor][member]`.
    plans: Vec<Vec<Plan>>,
    /// `batches[tensor]`: the members orthogonalised together.
    batches: Vec<Vec<Batch>>,
}

impl Muon {
    /// One member per entry of `members`, over tensors `params`.
    pub fn new(members: &[MuonHp], params: &[ParamInfo]) -> Self {
        let members: Vec<Member> = members.iter().map(Member::new).collect();
        let plans: Vec<Vec<Plan>> = params.iter().map(|p| members.iter().map(|m| m.plan(p)).collect()).collect();
        let batches = plans.iter().map(|plans| batches(&members, plans)).collect();
        Self { members, plans, batches }
    }
}

/// Muon's run state.
#[derive(Clone, Debug)]
pub struct MuonState {
    /// Momentum per tensor (`members × numel`).
    pub mu: Vec<Vec<f32>>,
    /// AdamW's second moment per tensor (empty for the 2-D tensors).
    pub nu: Vec<Vec<f32>>,
    /// Steps taken.
    pub count: i32,
    scratch: Scratch,
    estimate: Vec<f32>,
    orthogonal: Vec<f32>,
}

impl UpdateRule for Muon {
    type State = MuonState;
    fn name(&self) -> &'static str {
        NAME
    }
    fn members(&self) -> usize {
        self.members.len()
    }
    fn init(&self, params: &[ParamInfo]) -> MuonState {
        let k = self.members();
        // Second moments where some member takes AdamW.
        let nu = params.iter().zip(&self.plans).map(|(p, plans)| if plans.contains(&Plan::Adam) { vec![0.0; p.numel() * k] } else { Vec::new() }).collect();
        MuonState { mu: zeros(params, k), nu, count: 0, scratch: Scratch::default(), estimate: Vec::new(), orthogonal: Vec::new() }
    }
    fn update(&self, s: &mut MuonState, params: &mut [&mut [f32]], grads: &[&[f32]], _ctx: &StepContext<'_>) {
        s.count += 1;
        let t = s.count;
        let k = self.members.len();
        for (i, ((w, g), plans)) in params.iter_mut().zip(grads).zip(&self.plans).enumerate() {
            let n = g.len() / k;
            if n == 0 {
                continue;
            }
            for (member, (c, plan)) in self.members.iter().zip(plans).enumerate() {
                if *plan == Plan::Adam {
                    let range = member * n..(member + 1) * n;
                    c.adamw(t, &mut w[range.clone()], &g[range.clone()], &mut s.mu[i][range.clone()], &mut s.nu[i][range]);
                }
            }
            for b in &self.batches[i] {
                s.estimate.resize(b.members.len() * n, 0.0);
                s.orthogonal.resize(b.members.len() * n, 0.0);
                for (&member, estimate) in b.members.iter().zip(s.estimate.chunks_exact_mut(n)) {
                    let range = member * n..(member + 1) * n;
                    self.members[member].muon_moment(t, &g[range.clone()], &mut s.mu[i][range], estimate);
                }
                newton_schulz(&s.estimate, b.rows, b.cols, b.ns_steps, &b.eps, &mut s.scratch, &mut s.orthogonal);
                for (&member, u) in b.members.iter().zip(s.orthogonal.chunks_exact(n)) {
                    let c = &self.members[member];
                    let neg_lr = -c.lr;
                    for (w, &u) in w[member * n..(member + 1) * n].iter_mut().zip(u) {
                        *w += (b.scale * u + c.wd * *w) * neg_lr;
                    }
                }
            }
        }
    }
}

/// The kind.
pub struct MuonKind;

impl Kind for MuonKind {
    fn name(&self) -> &'static str {
        NAME
    }
    fn about(&self) -> &'static str {
        "Muon (Jordan et al. 2024; Newton-Schulz on 2-D tensors, AdamW on the rest) as optax.contrib.muon"
    }
    fn hparams(&self) -> &'static [Hparam] {
        MuonHp::HPARAMS
    }
    fn host(&self, members: &[Values], params: &[ParamInfo]) -> Box<dyn Optimizer> {
        bound(Muon::new(&members.iter().map(MuonHp::from_values).collect::<Vec<_>>(), params), params)
    }
    fn device(&self, member: &Values, params: &[ParamInfo], dev: &Device) -> Option<Box<dyn Optimizer>> {
        let m = Member::new(&MuonHp::from_values(member));
        let plans = params.iter().map(|p| m.plan(p)).collect();
        Some(beatmatch_device::on(device::MuonOnDevice { member: m, plans }, params, dev))
    }
    fn reference_spec(&self, name: &str, meta: &serde_json::Value) -> Option<Result<OptimizerSpec>> {
        (meta["optimizer"] == "optax.contrib.muon").then(|| {
            let r = ReferenceArgs::of(name, meta);
            // Options beatmatch does not implement must be absent or at optax's defaults.
            for key in ["ns_coeffs", "consistent_rms", "muon_weight_dimension_numbers", "mu_dtype", "weight_decay_mask"] {
                r.require_null(key)?;
            }
            r.require("preconditioning", |v| v.is_null() || v == "frobenius")?;
            r.require("adaptive", |v| v.is_null() || v == &serde_json::Value::Bool(false))?;
            r.require("adam_eps_root", |v| v.is_null() || v.as_f64() == Some(0.0))?;
            let mut spec = OptimizerSpec::new(NAME).with("lr", r.num("learning_rate")?);
            for (ours, theirs) in [
                ("beta", "beta"),
                ("ns_steps", "ns_steps"),
                ("eps", "eps"),
                ("wd", "weight_decay"),
                ("adam_lr", "adam_learning_rate"),
                ("adam_b1", "adam_b1"),
                ("adam_b2", "adam_b2"),
                ("adam_wd", "adam_weight_decay"),
            ] {
                if let Some(v) = r.args[theirs].as_f64() {
                    spec = spec.with(ours, v);
                }
            }
            if let Some(b) = r.args["nesterov"].as_bool() {
                spec = spec.with("nesterov", f64::from(u8::from(b)));
            }
            Ok(spec)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn member(spec: &str) -> Member {
        let spec = OptimizerSpec::parse(spec).unwrap();
        let (_, values) = crate::configure(std::slice::from_ref(&spec)).unwrap();
        Member::new(&MuonHp::from_values(&values[0]))
    }

    #[test]
    fn plans_follow_rank_role_and_options() {
        let first = ParamInfo::new("conv0/w", vec![8, 1, 3, 3]).with_role(Role::Input);
        let hidden_conv = ParamInfo::new("conv1/w", vec![8, 8, 3, 3]);
        let head = ParamInfo::new("head/w", vec![72, 10]).with_role(Role::Output);
        let hidden = ParamInfo::new("layer1/w", vec![32, 64]);
        let bias = ParamInfo::new("layer1/b", vec![64]);
        let optax = member("muon");
        assert_eq!(optax.plan(&hidden), Plan::Matrix { rows: 32, cols: 64, scale: 2f32.sqrt() });
        assert_eq!(optax.plan(&head), Plan::Matrix { rows: 72, cols: 10, scale: 1.0 });
        assert_eq!(optax.plan(&hidden_conv), Plan::Adam);
        assert_eq!(optax.plan(&bias), Plan::Adam);
        let keller = member("muon:adam_io=1,conv_matrix=1");
        assert_eq!(keller.plan(&first), Plan::Adam);
        assert_eq!(keller.plan(&head), Plan::Adam);
        assert_eq!(keller.plan(&hidden_conv), Plan::Matrix { rows: 8, cols: 72, scale: 1.0 });
        assert_eq!(keller.plan(&hidden), optax.plan(&hidden));
        assert_eq!(member("muon:conv_matrix=1").plan(&ParamInfo::new("k", vec![64, 2, 2, 2])), Plan::Matrix { rows: 64, cols: 8, scale: 8f32.sqrt() });
    }

    /// A kernel `[o, i, kh, kw]` with `conv_matrix` is updated as the `[o, i·kh·kw]` matrix its
    /// values are (square here, so both conventions' shape scales are 1): the same bits.
    #[test]
    fn a_kernel_as_a_matrix_is_updated_as_that_matrix() {
        let kernel = [ParamInfo::new("k", vec![18, 2, 3, 3])];
        let matrix = [ParamInfo::new("m", vec![18, 18])];
        let run = |infos: &[ParamInfo]| {
            let mut opt = crate::build(&OptimizerSpec::parse("muon:conv_matrix=1,lr=0.1").unwrap(), infos).unwrap();
            let mut w: Vec<f32> = (0..324).map(|i| ((i * 37 % 101) as f32 - 50.0) * 0.01).collect();
            for step in 0..3u64 {
                let g: Vec<f32> = (0..324).map(|i| ((i * 53 + step as usize * 7) % 97) as f32 * 0.02 - 0.9).collect();
                opt.step(&mut [&mut w], &[&g], &StepContext { step, num_steps: 3, losses: &[1.0] });
            }
            w
        };
        assert_eq!(run(&kernel), run(&matrix));
    }
}
