//! Per-parameter features of the learned optimizers with Adafactor-style accumulators
//! (small_fc_lopt and VeLO), the second-moment normaliser, and the per-parameter MLP —
//! evaluated in blocks of [`B`] parameters laid out feature-major, so the compiler vectorises
//! across parameters (AVX-512 or AVX2 where the CPU has them, chosen at run time; no FMA
//! contraction, so every path gives the same bits).

// Lane loops index fixed-size `[f32; B]` rows by position on purpose: written so they compile
// to straight vector instructions (and give the same bits on every instruction set).
#![allow(clippy::needless_range_loop)]

use crate::accum::{factors, rsqrt, FactoredState};

/// Parameters per block.
pub const B: usize = 16;
/// Largest feature or hidden width a block holds.
pub const MAX_WIDTH: usize = 40;

/// A block of values, `[feature][lane]`.
pub type Block = [[f32; B]; MAX_WIDTH];

/// Which feature layout: the two architectures differ in three places.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Flavor {
    /// AdafacMLPLOpt: 28 features; unfactored `m·(v + 1e-6)^-½`.
    SmallFc,
    /// HyperV2 (VeLO): 30 features; adds clipped g and `g·rsqrt(rms)`; unfactored `m·v^-½`.
    Velo,
}

impl Flavor {
    /// Number of per-parameter features with 3 momenta, 1 second moment and 3 factored decays.
    pub fn width(self) -> usize {
        match self {
            Flavor::SmallFc => 28,
            Flavor::Velo => 30,
        }
    }
}

/// Everything one tensor's features read. `m` and `fac_g` are `[3][numel]`, `rms` `[1][numel]`.
pub struct TensorInputs<'a> {
    /// Gradient.
    pub g: &'a [f32],
    /// Parameter (before the update).
    pub p: &'a [f32],
    /// Momenta (3 decays).
    pub m: &'a [f32],
    /// Second moment (1 decay).
    pub rms: &'a [f32],
    /// Factored-preconditioned gradient (3 decays).
    pub fac_g: &'a [f32],
    /// Factored accumulator state (after this step's update).
    pub fac: &'a FactoredState,
}

/// Precomputed per-tensor quantities.
pub struct Prepared {
    row_factor: Vec<f32>,
    col_factor: Vec<f32>,
}

/// Precompute the factored row/column factors of a tensor.
pub fn prepare(t: &TensorInputs<'_>) -> Prepared {
    match t.fac {
        FactoredState::Factored { d1, d0, shape, row, col, .. } => {
            let (row_factor, col_factor) = factors(row, col, shape, *d1, *d0, 3);
            Prepared { row_factor, col_factor }
        }
        FactoredState::Diag(_) => Prepared { row_factor: vec![], col_factor: vec![] },
    }
}

/// Fill `x` with the features of parameters `start..start + len` (lanes ≥ len are zero), in
/// the reference's order.
/// Fill a block: `FULL` blocks index `start + e` directly (contiguous loads); the tail block
/// clamps lanes past `len` to the last live element and zeroes them.
#[inline(always)]
fn fill_block(flavor: Flavor, t: &TensorInputs<'_>, prep: &Prepared, start: usize, len: usize, x: &mut Block) {
    if len == B {
        fill::<true>(flavor, t, prep, start, len, x)
    } else {
        fill::<false>(flavor, t, prep, start, len, x)
    }
}

#[inline(always)]
fn fill<const FULL: bool>(flavor: Flavor, t: &TensorInputs<'_>, prep: &Prepared, start: usize, len: usize, x: &mut Block) {
    // Gather each input row of the block into a fixed-size array first (one bounds check per
    // lane, no aliasing questions), then every feature row is a straight loop over 16 lanes
    // the compiler vectorises.
    let n = t.g.len();
    let idx: [usize; B] = std::array::from_fn(|e| if FULL { start + e } else { start + e.min(len - 1) });
    let live: [f32; B] = std::array::from_fn(|e| if FULL || e < len { 1.0 } else { 0.0 });
    let load = |src: &[f32], off: usize| -> [f32; B] {
        if FULL {
            let s: &[f32; B] = src[off + start..off + start + B].try_into().unwrap();
            *s
        } else {
            std::array::from_fn(|e| src[off + idx[e]] * live[e])
        }
    };
    let g = load(t.g, 0);
    let p = load(t.p, 0);
    let rms = load(t.rms, 0);
    let m: [[f32; B]; 3] = std::array::from_fn(|j| load(t.m, j * n));
    let fg: [[f32; B]; 3] = std::array::from_fn(|j| load(t.fac_g, j * n));
    let mut f = 0;
    let mut put = |x: &mut Block, v: [f32; B]| {
        x[f] = v;
        f += 1;
    };
    let rs: [f32; B] = std::array::from_fn(|e| rsqrt(rms[e] + 1e-6) * live[e]);
    put(x, g);
    if flavor == Flavor::Velo {
        put(x, std::array::from_fn(|e| g[e].clamp(-0.1, 0.1)));
    }
    put(x, p);
    for mj in &m {
        put(x, *mj);
    }
    put(x, rms);
    for mj in &m {
        put(x, std::array::from_fn(|e| mj[e] * rs[e]));
    }
    put(x, rs);
    for fj in &fg {
        put(x, *fj);
    }
    if flavor == Flavor::Velo {
        put(x, std::array::from_fn(|e| g[e] * rs[e]));
    }
    match t.fac {
        FactoredState::Factored { row: vr, col: vc, rows, cols, .. } => {
            let r: [usize; B] = std::array::from_fn(|e| rows[idx[e]] as usize * 3);
            let c: [usize; B] = std::array::from_fn(|e| cols[idx[e]] as usize * 3);
            let row: [[f32; B]; 3] = std::array::from_fn(|j| std::array::from_fn(|e| vr[r[e] + j] * live[e]));
            let col: [[f32; B]; 3] = std::array::from_fn(|j| std::array::from_fn(|e| vc[c[e] + j] * live[e]));
            let rf: [[f32; B]; 3] = std::array::from_fn(|j| std::array::from_fn(|e| prep.row_factor[r[e] + j]));
            let cf: [[f32; B]; 3] = std::array::from_fn(|j| std::array::from_fn(|e| prep.col_factor[c[e] + j]));
            for v in &row {
                put(x, *v);
            }
            for v in &col {
                put(x, *v);
            }
            for v in &row {
                put(x, std::array::from_fn(|e| rsqrt(v[e] + 1e-8) * live[e]));
            }
            for v in &col {
                put(x, std::array::from_fn(|e| rsqrt(v[e] + 1e-8) * live[e]));
            }
            for j in 0..3 {
                put(x, std::array::from_fn(|e| m[j][e] * rf[j][e] * cf[j][e]));
            }
        }
        FactoredState::Diag(v) => {
            let vd: [[f32; B]; 3] = std::array::from_fn(|j| load(v, j * n));
            for _ in 0..2 {
                for vj in &vd {
                    put(x, *vj);
                }
            }
            for _ in 0..2 {
                for vj in &vd {
                    put(x, std::array::from_fn(|e| rsqrt(vj[e] + 1e-8) * live[e]));
                }
            }
            for j in 0..3 {
                put(
                    x,
                    match flavor {
                        Flavor::SmallFc => std::array::from_fn(|e| m[j][e] * rsqrt(vd[j][e] + 1e-6) * live[e]),
                        Flavor::Velo => std::array::from_fn(|e| if live[e] == 0.0 { 0.0 } else { m[j][e] * rsqrt(vd[j][e]) }),
                    },
                );
            }
        }
    }
    debug_assert_eq!(f, flavor.width());
}

/// A dense MLP with ReLU between layers and none after the last.
#[derive(Clone, Debug)]
pub struct Mlp {
    /// (weights `[in][out]` row-major, biases `[out]`, in, out) per layer.
    pub layers: Vec<(Vec<f32>, Vec<f32>, usize, usize)>,
}

impl Mlp {
    /// Evaluate on a block: `x` rows `0..n_in` in, output rows `0..n_out` of the last layer.
    #[inline(always)]
    pub fn eval_block(&self, x: &Block, out: &mut Block) {
        let mut cur: Block = *x;
        let last = self.layers.len() - 1;
        for (li, (w, b, n_in, n_out)) in self.layers.iter().enumerate() {
            for o in 0..*n_out {
                let mut acc = [b[o]; B];
                for i in 0..*n_in {
                    let wi = w[i * n_out + o];
                    let xi = &cur[i];
                    for e in 0..B {
                        acc[e] += xi[e] * wi;
                    }
                }
                if li != last {
                    for a in &mut acc {
                        *a = a.max(0.0);
                    }
                }
                out[o] = acc;
            }
            if li != last {
                cur[..*n_out].copy_from_slice(&out[..*n_out]);
            }
        }
    }
}

/// How the MLP's outputs (direction, magnitude) become a step.
#[derive(Clone, Copy, Debug)]
pub enum StepRule {
    /// `direction · exp(magnitude · exp_mult) · step_mult`, with the training-step embedding
    /// appended (unnormalised) after the features.
    Embedded {
        /// Scale inside the exponential.
        exp_mult: f32,
        /// Scale of the step.
        step_mult: f32,
        /// tanh embedding of the iteration.
        embedding: [f32; 11],
    },
    /// VeLO: `lr_mult · (direction · (param_scale · exp(magnitude · exp_mult)) · step_mult)`.
    Velo {
        /// Scale inside the exponential.
        exp_mult: f32,
        /// Scale of the step.
        step_mult: f32,
        /// The tensor's RMS, `√(mean p² + 1e-9)`.
        param_scale: f32,
        /// The LSTM's per-tensor multiplier.
        lr_mult: f32,
    },
}

#[inline(always)]
fn process_impl(flavor: Flavor, t: &TensorInputs<'_>, net: &Mlp, rule: StepRule, out: &mut [f32]) {
    let prep = prepare(t);
    let n = t.g.len();
    let width = flavor.width();
    let mut x: Block = [[0.0; B]; MAX_WIDTH];
    // Pass 1: second-moment normaliser per feature over the whole tensor.
    let mut sum = [0f64; MAX_WIDTH];
    for start in (0..n).step_by(B) {
        let len = B.min(n - start);
        fill_block(flavor, t, &prep, start, len, &mut x);
        for f in 0..width {
            let mut s = 0f32;
            for e in 0..B {
                s += x[f][e] * x[f][e];
            }
            sum[f] += f64::from(s);
        }
    }
    let norm: Vec<f32> = sum[..width].iter().map(|&s| rsqrt(1e-5 + (s / n as f64) as f32)).collect();
    // Pass 2: features again, normalised, through the MLP, into the step.
    let mut o: Block = [[0.0; B]; MAX_WIDTH];
    for start in (0..n).step_by(B) {
        let len = B.min(n - start);
        fill_block(flavor, t, &prep, start, len, &mut x);
        for f in 0..width {
            for e in 0..B {
                x[f][e] *= norm[f];
            }
        }
        if let StepRule::Embedded { embedding, .. } = rule {
            for (k, &v) in embedding.iter().enumerate() {
                x[width + k] = [v; B];
            }
        }
        net.eval_block(&x, &mut o);
        for e in 0..len {
            let (dir, mag) = (o[0][e], o[1][e]);
            let step = match rule {
                StepRule::Embedded { exp_mult, step_mult, .. } => dir * (mag * exp_mult).exp() * step_mult,
                StepRule::Velo { exp_mult, step_mult, param_scale, lr_mult } => lr_mult * (dir * (param_scale * (mag * exp_mult).exp()) * step_mult),
            };
            out[start + e] = t.p[start + e] - step;
        }
    }
}

pub use beatmatch_core::simd::{simd_dispatch, Kernel};

struct TensorKernel<'a, 'b> {
    flavor: Flavor,
    t: &'a TensorInputs<'b>,
    net: &'a Mlp,
    rule: StepRule,
    out: &'a mut [f32],
}

impl Kernel for TensorKernel<'_, '_> {
    #[inline(always)]
    fn run(&mut self) {
        process_impl(self.flavor, self.t, self.net, self.rule, self.out)
    }
}

/// Compute one tensor's new parameters into `out` (features, normaliser, MLP and step fused).
pub fn process_tensor(flavor: Flavor, t: &TensorInputs<'_>, net: &Mlp, rule: StepRule, out: &mut [f32]) {
    assert!(net.layers.iter().all(|l| l.2 <= MAX_WIDTH && l.3 <= MAX_WIDTH));
    simd_dispatch(&mut TensorKernel { flavor, t, net, rule, out });
}
