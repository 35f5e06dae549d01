//! Per-parameter features of the learned optimizers with Adafactor-style accumulators
//! (small_fc_lopt and VeLO), the second-moment normaliser, and a small dense MLP evaluator.

use crate::accum::{drop_axis, factors, rsqrt, FactoredState};

/// Which feature layout: the two architectures differ in three places.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Flavor {
    /// AdafacMLPLOpt: 28 features; unfactored `m·(v + 1e-6)^-½`.
    SmallFc,
    /// HyperV2 (VeLO): 30 features; adds clipped g and `g·rsqrt(rms)`; unfactored `m·v^-½`.
    Velo,
}

impl Flavor {
    /// Number of per-parameter features (before any global ones).
    pub fn width(self, km: usize, kr: usize, kf: usize) -> usize {
        let base = 2 + km + kr + km * kr.min(1) + kr + kf + 5 * kf;
        match self {
            Flavor::SmallFc => base,
            Flavor::Velo => base + 2,
        }
    }
}

/// Everything one tensor's features read. `m`, `rms`, `fac_g` are `[numel][k]`.
pub struct TensorInputs<'a> {
    /// Gradient.
    pub g: &'a [f32],
    /// Parameter.
    pub p: &'a [f32],
    /// Momenta.
    pub m: &'a [f32],
    /// Second moments.
    pub rms: &'a [f32],
    /// Factored-preconditioned gradient.
    pub fac_g: &'a [f32],
    /// Factored accumulator state (after this step's update).
    pub fac: &'a FactoredState,
    /// Number of momentum decays.
    pub km: usize,
    /// Number of second-moment decays.
    pub kr: usize,
    /// Number of factored decays.
    pub kf: usize,
}

/// Precomputed per-tensor quantities for [`element_features`].
pub struct Prepared {
    row_factor: Vec<f32>,
    col_factor: Vec<f32>,
}

/// Precompute the factored row/column factors of a tensor.
pub fn prepare(t: &TensorInputs<'_>) -> Prepared {
    match t.fac {
        FactoredState::Factored { d1, d0, shape, row, col } => {
            let (row_factor, col_factor) = factors(row, col, shape, *d1, *d0, t.kf);
            Prepared { row_factor, col_factor }
        }
        FactoredState::Diag(_) => Prepared { row_factor: vec![], col_factor: vec![] },
    }
}

/// Write element `e`'s features into `out` (length `flavor.width(..)`), in the reference order.
#[inline]
pub fn element_features(flavor: Flavor, t: &TensorInputs<'_>, prep: &Prepared, e: usize, out: &mut [f32]) {
    let (km, kr, kf) = (t.km, t.kr, t.kf);
    let g = t.g[e];
    let m = &t.m[e * km..(e + 1) * km];
    let rms = &t.rms[e * kr..(e + 1) * kr];
    let mut o = 0;
    let mut push = |x: f32| {
        out[o] = x;
        o += 1;
    };
    push(g);
    if flavor == Flavor::Velo {
        push(g.clamp(-0.1, 0.1));
    }
    push(t.p[e]);
    m.iter().for_each(|&x| push(x));
    rms.iter().for_each(|&x| push(x));
    // rsqrt(rms + 1e-6); with one rms decay (both architectures) m · rsqrt broadcasts over m.
    debug_assert_eq!(kr, 1, "one second-moment decay");
    let rs = rsqrt(rms[0] + 1e-6);
    m.iter().for_each(|&x| push(x * rs));
    push(rs);
    t.fac_g[e * kf..(e + 1) * kf].iter().for_each(|&x| push(x));
    if flavor == Flavor::Velo {
        push(g * rs);
    }
    match t.fac {
        FactoredState::Factored { d1, d0, shape, row, col } => {
            let (r, c) = (drop_axis(e, shape, *d0), drop_axis(e, shape, *d1));
            let rowv = &row[r * kf..(r + 1) * kf];
            let colv = &col[c * kf..(c + 1) * kf];
            rowv.iter().for_each(|&x| push(x));
            colv.iter().for_each(|&x| push(x));
            rowv.iter().for_each(|&x| push(rsqrt(x + 1e-8)));
            colv.iter().for_each(|&x| push(rsqrt(x + 1e-8)));
            for j in 0..kf {
                push(m[j] * prep.row_factor[r * kf + j] * prep.col_factor[c * kf + j]);
            }
        }
        FactoredState::Diag(v) => {
            let v = &v[e * kf..(e + 1) * kf];
            v.iter().for_each(|&x| push(x));
            v.iter().for_each(|&x| push(x));
            v.iter().for_each(|&x| push(rsqrt(x + 1e-8)));
            v.iter().for_each(|&x| push(rsqrt(x + 1e-8)));
            for j in 0..kf {
                push(match flavor {
                    Flavor::SmallFc => m[j] * (v[j] + 1e-6).powf(-0.5),
                    Flavor::Velo => m[j] * v[j].powf(-0.5),
                });
            }
        }
    }
}

/// Second-moment normaliser factors: `rsqrt(1e-5 + mean(x_f²))` per feature column `f`,
/// computed by evaluating `features(e, buf)` for every element (a first pass; the second pass
/// recomputes the features instead of materialising `[numel][width]`).
pub fn normalizer(n: usize, width: usize, mut features: impl FnMut(usize, &mut [f32])) -> Vec<f32> {
    let mut sum = vec![0f64; width];
    let mut buf = vec![0f32; width];
    for e in 0..n {
        features(e, &mut buf);
        for (s, &x) in sum.iter_mut().zip(&buf) {
            *s += f64::from(x * x);
        }
    }
    sum.iter().map(|&s| rsqrt(1e-5 + (s / n as f64) as f32)).collect()
}

/// A dense MLP with ReLU between layers and none after the last.
#[derive(Clone, Debug)]
pub struct Mlp {
    /// (weights `[in][out]` row-major, biases `[out]`, in, out) per layer.
    pub layers: Vec<(Vec<f32>, Vec<f32>, usize, usize)>,
}

impl Mlp {
    /// Evaluate on `x`, writing the last layer's outputs to `out`.
    #[inline]
    pub fn eval(&self, x: &[f32], out: &mut [f32]) {
        let mut cur: [f32; 64] = [0.0; 64];
        let mut next: [f32; 64] = [0.0; 64];
        cur[..x.len()].copy_from_slice(x);
        let last = self.layers.len() - 1;
        for (li, (w, b, n_in, n_out)) in self.layers.iter().enumerate() {
            next[..*n_out].copy_from_slice(b);
            for i in 0..*n_in {
                let xi = cur[i];
                let row = &w[i * n_out..(i + 1) * n_out];
                for (acc, &wij) in next[..*n_out].iter_mut().zip(row) {
                    *acc += xi * wij;
                }
            }
            if li != last {
                for v in &mut next[..*n_out] {
                    *v = v.max(0.0);
                }
            }
            std::mem::swap(&mut cur, &mut next);
        }
        out.copy_from_slice(&cur[..out.len()]);
    }
}
