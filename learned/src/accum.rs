//! Gradient accumulators shared by the learned optimizers (learned_optimization's
//! `learned_optimizers/common.py`): momenta, second moments and Adafactor-style factored
//! second moments, each at several decays. Per-element values are stored decay-major,
//! `[k][numel]` (index `j * numel + e`), so one decay's values are contiguous for the
//! vectorised feature kernels; the small factored row/column statistics are `[len][k]`.

use beatmatch_core::ParamInfo;
use std::sync::Arc;

/// `1/√max(x, 1e-9)` (the reference's `safe_rsqrt`).
#[inline]
pub fn safe_rsqrt(x: f32) -> f32 {
    1.0 / x.max(1e-9).sqrt()
}

/// `1/√x` (`lax.rsqrt`).
#[inline]
pub fn rsqrt(x: f32) -> f32 {
    1.0 / x.sqrt()
}

/// `x ← β x + (1 − β) f(g)` for every decay β, per tensor stored decay-major (`[k][numel]`).
#[inline(always)]
fn fold_ema(state: &mut [Vec<f32>], decays: &[f32], grads: &[&[f32]], f: impl Fn(f32) -> f32) {
    for (s, g) in state.iter_mut().zip(grads) {
        for (sj, &d) in s.chunks_exact_mut(g.len().max(1)).zip(decays) {
            for (x, &gi) in sj.iter_mut().zip(g.iter()) {
                *x = d * *x + (1.0 - d) * f(gi);
            }
        }
    }
}

/// Momenta `m ← β m + (1 − β) g` at `k` decays (the decays belong to the rule, the momenta
/// to the run).
#[derive(Clone, Debug)]
pub struct Momentum {
    /// Per tensor, `[k][numel]`.
    pub m: Vec<Vec<f32>>,
}

impl Momentum {
    /// Zeros for `params` at `k` decays.
    pub fn new(k: usize, params: &[ParamInfo]) -> Self {
        Self { m: params.iter().map(|p| vec![0.0; p.numel() * k]).collect() }
    }

    /// Fold in gradients.
    #[inline(always)]
    pub fn update(&mut self, decays: &[f32], grads: &[&[f32]]) {
        fold_ema(&mut self.m, decays, grads, |g| g);
    }
}

/// Second moments `v ← β v + (1 − β) g²` at `k` decays.
#[derive(Clone, Debug)]
pub struct SecondMoment {
    /// Per tensor, `[k][numel]`.
    pub v: Vec<Vec<f32>>,
}

impl SecondMoment {
    /// Zeros for `params` at `k` decays.
    pub fn new(k: usize, params: &[ParamInfo]) -> Self {
        Self { v: params.iter().map(|p| vec![0.0; p.numel() * k]).collect() }
    }

    /// Fold in gradients (`decays` already clipped to [0, 1], see [`clip_decays`]).
    #[inline(always)]
    pub fn update(&mut self, decays: &[f32], grads: &[&[f32]]) {
        fold_ema(&mut self.v, decays, grads, |g| g * g);
    }
}

/// One step's momenta, second moments and factored second moments (the accumulators VeLO and
/// small_fc share), folded in one kernel compiled per instruction set.
pub struct Accumulators<'a> {
    /// Momenta and their decays.
    pub mom: (&'a mut Momentum, &'a [f32]),
    /// Second moments and their decays.
    pub rms: (&'a mut SecondMoment, &'a [f32]),
    /// Factored second moments and their decays.
    pub fac: (&'a mut Factored, &'a [f32]),
    /// This step's gradients.
    pub grads: &'a [&'a [f32]],
    /// The factored-preconditioned gradients written (see [`Factored::update`]).
    pub fac_g: &'a mut Vec<Vec<f32>>,
}

impl beatmatch_core::simd::Kernel for Accumulators<'_> {
    #[inline(always)]
    fn run(&mut self) {
        self.mom.0.update(self.mom.1, self.grads);
        self.rms.0.update(self.rms.1, self.grads);
        self.fac.0.update(self.fac.1, self.grads, self.fac_g);
    }
}

/// Decays clipped to [0, 1], as the reference clips second-moment and factored decays.
pub fn clip_decays(decays: Vec<f32>) -> Vec<f32> {
    decays.into_iter().map(|d| d.clamp(0.0, 1.0)).collect()
}

pub use beatmatch_core::shape::{drop_axis, without};

/// (d1, d0) = (second largest, largest) axis; the learned optimizers factor every tensor of
/// rank ≥ 2, whatever its size.
pub fn factored_dims(shape: &[usize]) -> Option<(usize, usize)> {
    beatmatch_core::shape::largest_two_axes(shape)
}

/// Factored (Adafactor-style) second moments of one tensor at `k` decays.
// One per tensor, a handful per run: the size difference of the variants costs nothing worth a box.
#[allow(clippy::large_enum_variant)]
#[derive(Clone, Debug)]
pub enum FactoredState {
    /// Rank ≥ 2: row statistic (mean over d0) and column statistic (mean over d1), `[len][k]`.
    Factored {
        /// Second largest axis.
        d1: usize,
        /// Largest axis.
        d0: usize,
        /// Tensor shape.
        shape: Vec<usize>,
        /// Row statistic, shape `without(shape, d0)` × k.
        row: Vec<f32>,
        /// Column statistic, shape `without(shape, d1)` × k.
        col: Vec<f32>,
        /// Per element, its index into the row statistic (precomputed: shapes are fixed; shared
        /// by snapshots).
        rows: Arc<[u32]>,
        /// Per element, its index into the column statistic.
        cols: Arc<[u32]>,
        /// What the feature kernels read of the row statistic, computed once per step.
        row_planes: Planes,
        /// Likewise of the column statistic.
        col_planes: Planes,
    },
    /// Rank < 2: full second moment `[k][numel]`.
    Diag(Vec<f32>),
}

/// A factored statistic as the feature kernels read it, decay-major (`[k][len]`, so a run
/// of elements along one axis reads contiguous values): the statistic, `rsqrt(stat + 1e-8)`
/// and the [`factors`] — all functions of the statistic alone, so taken once per entry per
/// step rather than once per element.
#[derive(Clone, Debug, Default)]
pub struct Planes {
    /// Entries per decay.
    pub len: usize,
    /// The statistic.
    pub value: Vec<f32>,
    /// `rsqrt(value + 1e-8)`.
    pub rsqrt: Vec<f32>,
    /// The row or column factor.
    pub factor: Vec<f32>,
}

impl Planes {
    /// From a statistic and its factor, both `[len][k]`.
    #[inline(always)]
    fn set(&mut self, stat: &[f32], factor: &[f32], k: usize) {
        let len = stat.len() / k;
        self.len = len;
        for v in [&mut self.value, &mut self.rsqrt, &mut self.factor] {
            v.resize(len * k, 0.0);
        }
        for e in 0..len {
            for j in 0..k {
                let x = stat[e * k + j];
                self.value[j * len + e] = x;
                self.rsqrt[j * len + e] = rsqrt(x + 1e-8);
                self.factor[j * len + e] = factor[e * k + j];
            }
        }
    }
}

/// Factored second moments of every tensor, returning the preconditioned gradient `fac_g`.
#[derive(Clone, Debug)]
pub struct Factored {
    /// Per tensor.
    pub state: Vec<FactoredState>,
}

impl Factored {
    /// Zeros for `params` at `k` decays.
    pub fn new(k: usize, params: &[ParamInfo]) -> Self {
        let state = params
            .iter()
            .map(|p| match factored_dims(&p.shape) {
                Some((d1, d0)) => FactoredState::Factored {
                    d1,
                    d0,
                    shape: p.shape.clone(),
                    row: vec![0.0; without(&p.shape, d0).iter().product::<usize>() * k],
                    col: vec![0.0; without(&p.shape, d1).iter().product::<usize>() * k],
                    rows: (0..p.numel()).map(|i| drop_axis(i, &p.shape, d0) as u32).collect(),
                    cols: (0..p.numel()).map(|i| drop_axis(i, &p.shape, d1) as u32).collect(),
                    row_planes: Planes::default(),
                    col_planes: Planes::default(),
                },
                None => FactoredState::Diag(vec![0.0; p.numel() * k]),
            })
            .collect();
        Self { state }
    }

    /// Fold in gradients at `decays` (clipped to [0, 1]); writes `fac_g` per tensor,
    /// `[k][numel]`, into `out` (reused across steps: fresh multi-megabyte buffers every step
    /// cost more in page faults than the math).
    #[inline(always)]
    pub fn update(&mut self, decays: &[f32], grads: &[&[f32]], out: &mut Vec<Vec<f32>>) {
        let k = decays.len();
        let eps = 1e-30f32;
        out.resize_with(grads.len(), Vec::new);
        for ((st, g), y) in self.state.iter_mut().zip(grads).zip(out.iter_mut()) {
            y.resize(g.len() * k, 0.0);
            match st {
                FactoredState::Diag(v) => {
                    let n = g.len();
                    for (j, &d) in decays.iter().enumerate() {
                        for (i, &gi) in g.iter().enumerate() {
                            let x = &mut v[j * n + i];
                            *x = d * *x + (1.0 - d) * (gi * gi + eps);
                            y[j * n + i] = gi * safe_rsqrt(*x + 1e-9);
                        }
                    }
                }
                FactoredState::Factored { d1, d0, shape, row, col, rows, cols, row_planes, col_planes } => {
                    let (d1, d0) = (*d1, *d0);
                    let (n0, n1) = (shape[d0] as f64, shape[d1] as f64);
                    // Σ (g² + eps) per row-statistic and per column-statistic index, each sum
                    // taken in element order (so the same bits as summing element by element).
                    let (per_row, per_col) = if shape.len() == 2 {
                        // Rank 2 without the index tables: sums along both axes in one sweep.
                        let (nr, nc) = (shape[0], shape[1]);
                        let (mut sum_r, mut sum_c) = (vec![0f64; nr], vec![0f64; nc]);
                        for (r, gr) in g.chunks_exact(nc).enumerate() {
                            let mut acc = 0f64;
                            for (sc, &gi) in sum_c.iter_mut().zip(gr) {
                                let sq = f64::from(gi * gi + eps);
                                acc += sq;
                                *sc += sq;
                            }
                            sum_r[r] = acc;
                        }
                        // The row statistic drops the largest axis d0.
                        if d0 == 1 {
                            (sum_r, sum_c)
                        } else {
                            (sum_c, sum_r)
                        }
                    } else {
                        let (mut per_row, mut per_col) = (vec![0f64; row.len() / k], vec![0f64; col.len() / k]);
                        for (i, &gi) in g.iter().enumerate() {
                            let sq = f64::from(gi * gi + eps);
                            per_row[rows[i] as usize] += sq;
                            per_col[cols[i] as usize] += sq;
                        }
                        (per_row, per_col)
                    };
                    for (idx, x) in row.iter_mut().enumerate() {
                        let d = decays[idx % k];
                        *x = d * *x + (1.0 - d) * (per_row[idx / k] / n0) as f32;
                    }
                    for (idx, x) in col.iter_mut().enumerate() {
                        let d = decays[idx % k];
                        *x = d * *x + (1.0 - d) * (per_col[idx / k] / n1) as f32;
                    }
                    let (row_factor, col_factor) = factors(row, col, shape, d1, d0, k);
                    row_planes.set(row, &row_factor, k);
                    col_planes.set(col, &col_factor, k);
                    let n = g.len();
                    if shape.len() == 2 {
                        let nc = shape[1];
                        for j in 0..k {
                            let yj = &mut y[j * n..(j + 1) * n];
                            for (r, (gr, yr)) in g.chunks_exact(nc).zip(yj.chunks_exact_mut(nc)).enumerate() {
                                if d0 == 1 {
                                    let rf = row_factor[r * k + j];
                                    for (c, (yv, &gi)) in yr.iter_mut().zip(gr).enumerate() {
                                        *yv = gi * rf * col_factor[c * k + j];
                                    }
                                } else {
                                    let cf = col_factor[r * k + j];
                                    for (c, (yv, &gi)) in yr.iter_mut().zip(gr).enumerate() {
                                        *yv = gi * row_factor[c * k + j] * cf;
                                    }
                                }
                            }
                        }
                    } else {
                        for (i, &gi) in g.iter().enumerate() {
                            let (r, c) = (rows[i] as usize, cols[i] as usize);
                            for j in 0..k {
                                y[j * n + i] = gi * row_factor[r * k + j] * col_factor[c * k + j];
                            }
                        }
                    }
                }
            }
        }
    }
}

/// Row factor `safe_rsqrt(row / (mean_{reduced d1}(row) + 1e-9))` and column factor
/// `safe_rsqrt(col)`, both `[len][k]`.
#[inline(always)]
pub fn factors(row: &[f32], col: &[f32], shape: &[usize], d1: usize, d0: usize, k: usize) -> (Vec<f32>, Vec<f32>) {
    let row_shape = without(shape, d0);
    let reduced_d1 = if d1 > d0 { d1 - 1 } else { d1 };
    let nr = row_shape[reduced_d1];
    let mut mean = vec![0f64; row.len() / nr];
    for (idx, &x) in row.iter().enumerate() {
        let (e, j) = (idx / k, idx % k);
        mean[drop_axis(e, &row_shape, reduced_d1) * k + j] += f64::from(x);
    }
    let row_factor = row
        .iter()
        .enumerate()
        .map(|(idx, &x)| {
            let (e, j) = (idx / k, idx % k);
            let m = (mean[drop_axis(e, &row_shape, reduced_d1) * k + j] / nr as f64) as f32;
            safe_rsqrt(x / (m + 1e-9))
        })
        .collect();
    let col_factor = col.iter().map(|&x| safe_rsqrt(x)).collect();
    (row_factor, col_factor)
}

/// `log(1 − x) / 10` and back, in f32 (learned decays are parameterised this way).
pub fn learned_decays(initial: &[f64], offset: Option<&[f32]>) -> Vec<f32> {
    initial
        .iter()
        .enumerate()
        .map(|(i, &x)| {
            let x = x as f32;
            match offset {
                None => x,
                Some(o) => 1.0 - (((1.0 - x).ln() / 10.0 + o[i]) * 10.0).exp(),
            }
        })
        .collect()
}

/// `tanh(x / ts − 1)` for the 11 timescales 1…1e5 (the training-step embedding).
pub fn tanh_embedding(iteration: f32) -> [f32; 11] {
    const TS: [f32; 11] = [1.0, 3.0, 10.0, 30.0, 100.0, 300.0, 1000.0, 3000.0, 10000.0, 30000.0, 100000.0];
    TS.map(|ts| (iteration / ts - 1.0).tanh())
}
