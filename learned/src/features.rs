//! Per-parameter features of the learned optimizers with Adafactor-style accumulators
//! (small_fc_lopt and VeLO), the second-moment normaliser, and the per-parameter MLP —
//! evaluated in blocks of [`B`] parameters laid out feature-major, so the compiler vectorises
//! across parameters (AVX-512 or AVX2 where the CPU has them, chosen at run time; no FMA
//! contraction, so every path gives the same bits).

// Lane loops index fixed-size `[f32; B]` rows by position on purpose: written so they compile
// to straight vector instructions (and give the same bits on every instruction set).
#![allow(clippy::needless_range_loop)]

use crate::accum::{rsqrt, FactoredState};
use std::ops::Range;

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

/// How a block of a factored tensor finds its row and column statistics.
#[derive(Clone, Copy)]
pub struct Prepared {
    /// Columns of a rank-2 tensor (0 otherwise): a block inside one row reads its statistics
    /// as one broadcast value and one contiguous run instead of 16 gathers each.
    cols: usize,
    /// Whether the row statistic drops axis 1 (then it is indexed by the row, the column
    /// statistic by the column; the other way round otherwise).
    row_by_row: bool,
}

/// The block layout of a tensor's factored statistics.
pub fn prepare(t: &TensorInputs<'_>) -> Prepared {
    match t.fac {
        FactoredState::Factored { shape, d0, .. } if shape.len() == 2 => Prepared { cols: shape[1], row_by_row: *d0 == 1 },
        _ => Prepared { cols: 0, row_by_row: false },
    }
}

/// Where a block's statistic values come from.
#[derive(Clone, Copy)]
enum Source {
    /// One entry for every lane.
    Broadcast(usize),
    /// Entries `at..at + B`.
    Run(usize),
}

/// Lane values of plane `j` of `plane` (`[k][len]`) for a block reading `src`.
#[inline(always)]
fn plane_lanes(plane: &[f32], len: usize, j: usize, src: Source) -> [f32; B] {
    match src {
        Source::Broadcast(i) => [plane[j * len + i]; B],
        Source::Run(at) => {
            let s: &[f32; B] = plane[j * len + at..j * len + at + B].try_into().unwrap();
            *s
        }
    }
}

/// `[f(0), …, f(B−1)]`. Not `std::array::from_fn`: its closure call is not inlined into the
/// AVX-512/AVX2 kernels and so runs as baseline scalar code (a fifth of small_fc's update).
#[inline(always)]
fn lanes<T: Copy + Default>(f: impl Fn(usize) -> T) -> [T; B] {
    let mut a = [T::default(); B];
    for (e, v) in a.iter_mut().enumerate() {
        *v = f(e);
    }
    a
}

/// `[f(0), f(1), f(2)]`, inlined like [`lanes`].
#[inline(always)]
fn three<T: Copy + Default>(f: impl Fn(usize) -> T) -> [T; 3] {
    [f(0), f(1), f(2)]
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

/// The block's values of `src[off + start ..]`: a straight 16-wide load for a full block,
/// clamped and masked lanes for the tail.
#[inline(always)]
fn load<const FULL: bool>(src: &[f32], off: usize, start: usize, idx: &[usize; B], live: &[f32; B]) -> [f32; B] {
    if FULL {
        let s: &[f32; B] = src[off + start..off + start + B].try_into().unwrap();
        *s
    } else {
        lanes(|e| src[off + idx[e]] * live[e])
    }
}

#[inline(always)]
fn fill<const FULL: bool>(flavor: Flavor, t: &TensorInputs<'_>, prep: &Prepared, start: usize, len: usize, x: &mut Block) {
    // Gather each input row of the block into a fixed-size array first (one bounds check per
    // lane, no aliasing questions), then every feature row is a straight loop over 16 lanes
    // the compiler vectorises. No closures here: one not inlined runs as baseline code.
    let n = t.g.len();
    let idx: [usize; B] = lanes(|e| if FULL { start + e } else { start + e.min(len - 1) });
    let live: [f32; B] = lanes(|e| if FULL || e < len { 1.0 } else { 0.0 });
    let g = load::<FULL>(t.g, 0, start, &idx, &live);
    let p = load::<FULL>(t.p, 0, start, &idx, &live);
    let rms = load::<FULL>(t.rms, 0, start, &idx, &live);
    let m: [[f32; B]; 3] = three(|j| load::<FULL>(t.m, j * n, start, &idx, &live));
    let fg: [[f32; B]; 3] = three(|j| load::<FULL>(t.fac_g, j * n, start, &idx, &live));
    let mut f = 0;
    macro_rules! put {
        ($v:expr) => {{
            x[f] = $v;
            f += 1;
        }};
    }
    let rs: [f32; B] = lanes(|e| rsqrt(rms[e] + 1e-6) * live[e]);
    put!(g);
    if flavor == Flavor::Velo {
        put!(lanes(|e| g[e].clamp(-0.1, 0.1)));
    }
    put!(p);
    for mj in &m {
        put!(*mj);
    }
    put!(rms);
    for mj in &m {
        put!(lanes(|e| mj[e] * rs[e]));
    }
    put!(rs);
    for fj in &fg {
        put!(*fj);
    }
    if flavor == Flavor::Velo {
        put!(lanes(|e| g[e] * rs[e]));
    }
    match t.fac {
        FactoredState::Factored { rows, cols, row_planes: rp, col_planes: cp, .. } => {
            let in_one_row = FULL && prep.cols > 0 && start % prep.cols + B <= prep.cols;
            if in_one_row {
                let (r, c) = (start / prep.cols, start % prep.cols);
                let (rs, cs) = if prep.row_by_row { (Source::Broadcast(r), Source::Run(c)) } else { (Source::Run(c), Source::Broadcast(r)) };
                for j in 0..3 {
                    put!(plane_lanes(&rp.value, rp.len, j, rs));
                }
                for j in 0..3 {
                    put!(plane_lanes(&cp.value, cp.len, j, cs));
                }
                for j in 0..3 {
                    put!(plane_lanes(&rp.rsqrt, rp.len, j, rs));
                }
                for j in 0..3 {
                    put!(plane_lanes(&cp.rsqrt, cp.len, j, cs));
                }
                for (j, mj) in m.iter().enumerate() {
                    let (rf, cf) = (plane_lanes(&rp.factor, rp.len, j, rs), plane_lanes(&cp.factor, cp.len, j, cs));
                    put!(lanes(|e| mj[e] * rf[e] * cf[e]));
                }
            } else {
                let r: [usize; B] = lanes(|e| rows[idx[e]] as usize);
                let c: [usize; B] = lanes(|e| cols[idx[e]] as usize);
                for j in 0..3 {
                    put!(lanes(|e| rp.value[j * rp.len + r[e]] * live[e]));
                }
                for j in 0..3 {
                    put!(lanes(|e| cp.value[j * cp.len + c[e]] * live[e]));
                }
                for j in 0..3 {
                    put!(lanes(|e| rp.rsqrt[j * rp.len + r[e]] * live[e]));
                }
                for j in 0..3 {
                    put!(lanes(|e| cp.rsqrt[j * cp.len + c[e]] * live[e]));
                }
                for (j, mj) in m.iter().enumerate() {
                    put!(lanes(|e| mj[e] * rp.factor[j * rp.len + r[e]] * cp.factor[j * cp.len + c[e]]));
                }
            }
        }
        FactoredState::Diag(v) => {
            let vd: [[f32; B]; 3] = three(|j| load::<FULL>(v, j * n, start, &idx, &live));
            for _ in 0..2 {
                for vj in &vd {
                    put!(*vj);
                }
            }
            let vr: [[f32; B]; 3] = three(|j| lanes(|e| rsqrt(vd[j][e] + 1e-8) * live[e]));
            for _ in 0..2 {
                for vj in &vr {
                    put!(*vj);
                }
            }
            for j in 0..3 {
                match flavor {
                    Flavor::SmallFc => put!(lanes(|e| m[j][e] * rsqrt(vd[j][e] + 1e-6) * live[e])),
                    Flavor::Velo => put!(lanes(|e| if live[e] == 0.0 { 0.0 } else { m[j][e] * rsqrt(vd[j][e]) })),
                }
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
    ///
    /// Outputs are computed 4 (or 1) at a time, each tile's accumulators in registers (8 at a
    /// time was measured 8× slower: the accumulators no longer fit and spill)
    /// across the input loop: one dependent add chain per output (the previous form) was
    /// bound by the adder's latency. Every output still sums its inputs in order, from its
    /// bias, so the bits are the same.
    #[inline(always)]
    pub fn eval_block(&self, x: &Block, out: &mut Block) {
        let mut buf: Block = [[0.0; B]; MAX_WIDTH];
        let last = self.layers.len() - 1;
        for (li, (w, b, n_in, n_out)) in self.layers.iter().enumerate() {
            let (n_in, n_out) = (*n_in, *n_out);
            let relu = li != last;
            // Layer 0 reads `x`; later layers read the previous layer's output, kept in `buf`.
            let input: &Block = if li == 0 { x } else { &buf };
            let mut result: Block = [[0.0; B]; MAX_WIDTH];
            let mut o0 = 0;
            while o0 < n_out {
                let t = match n_out - o0 {
                    4.. => {
                        tile::<4>(input, w, b, n_in, n_out, o0, relu, &mut result);
                        4
                    }
                    _ => {
                        tile::<1>(input, w, b, n_in, n_out, o0, relu, &mut result);
                        1
                    }
                };
                o0 += t;
            }
            if li == last {
                out[..n_out].copy_from_slice(&result[..n_out]);
            } else {
                buf[..n_out].copy_from_slice(&result[..n_out]);
            }
        }
    }
}

/// Outputs `o0..o0 + T` of one dense layer on a block.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn tile<const T: usize>(input: &Block, w: &[f32], b: &[f32], n_in: usize, n_out: usize, o0: usize, relu: bool, result: &mut Block) {
    let mut acc: [[f32; B]; T] = [[0.0; B]; T];
    for (t, a) in acc.iter_mut().enumerate() {
        *a = [b[o0 + t]; B];
    }
    let w = &w[..n_in * n_out];
    for (i, xi) in input[..n_in].iter().enumerate() {
        let wrow = &w[i * n_out + o0..i * n_out + o0 + T];
        for t in 0..T {
            let wi = wrow[t];
            for e in 0..B {
                acc[t][e] += xi[e] * wi;
            }
        }
    }
    for (t, a) in acc.iter_mut().enumerate() {
        if relu {
            for v in a.iter_mut() {
                *v = v.max(0.0);
            }
        }
        result[o0 + t] = *a;
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

/// Pass 1 over blocks `blocks`: per block, each feature's f32 sum of squares over its lanes,
/// handed to `emit(block, sums)` in block order.
#[inline(always)]
fn pass1(flavor: Flavor, t: &TensorInputs<'_>, prep: &Prepared, blocks: Range<usize>, mut emit: impl FnMut(usize, &[f32; MAX_WIDTH])) {
    let n = t.g.len();
    let width = flavor.width();
    let mut x: Block = [[0.0; B]; MAX_WIDTH];
    let mut s = [0f32; MAX_WIDTH];
    for block in blocks {
        let start = block * B;
        let len = B.min(n - start);
        fill_block(flavor, t, prep, start, len, &mut x);
        for f in 0..width {
            let mut acc = 0f32;
            for e in 0..B {
                acc += x[f][e] * x[f][e];
            }
            s[f] = acc;
        }
        emit(block, &s);
    }
}

/// Pass 2 over blocks `blocks`: features again, normalised, through the MLP, into the new
/// parameters `out` (which starts at the first block's first element).
#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn pass2(flavor: Flavor, t: &TensorInputs<'_>, prep: &Prepared, net: &Mlp, rule: StepRule, norm: &[f32; MAX_WIDTH], blocks: Range<usize>, out: &mut [f32]) {
    let n = t.g.len();
    let width = flavor.width();
    let base = blocks.start * B;
    let mut x: Block = [[0.0; B]; MAX_WIDTH];
    let mut o: Block = [[0.0; B]; MAX_WIDTH];
    for block in blocks {
        let start = block * B;
        let len = B.min(n - start);
        fill_block(flavor, t, prep, start, len, &mut x);
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
        // All 16 lanes through the vectorised `exp` (libm's scalar `expf` was ~5% of the update).
        let exp_mult = match rule {
            StepRule::Embedded { exp_mult, .. } | StepRule::Velo { exp_mult, .. } => exp_mult,
        };
        let ex: [f32; B] = lanes(|e| exp(o[1][e] * exp_mult));
        for e in 0..len {
            let dir = o[0][e];
            let step = match rule {
                StepRule::Embedded { step_mult, .. } => dir * ex[e] * step_mult,
                StepRule::Velo { step_mult, param_scale, lr_mult, .. } => lr_mult * (dir * (param_scale * ex[e]) * step_mult),
            };
            out[start - base + e] = t.p[start + e] - step;
        }
    }
}

/// The per-feature normaliser from the summed squares.
fn normaliser(sum: &[f64; MAX_WIDTH], width: usize, n: usize) -> [f32; MAX_WIDTH] {
    let mut norm = [0f32; MAX_WIDTH];
    for f in 0..width {
        norm[f] = rsqrt(1e-5 + (sum[f] / n as f64) as f32);
    }
    norm
}

pub use beatmatch_core::simd::{exp, simd_dispatch, Kernel};

struct TensorKernel<'a, 'b> {
    prep: Prepared,
    flavor: Flavor,
    t: &'a TensorInputs<'b>,
    net: &'a Mlp,
    rule: StepRule,
    out: &'a mut [f32],
}

/// Pass 1 of a block range into `sums` (one row per block).
struct Pass1Kernel<'a, 'b> {
    prep: Prepared,
    flavor: Flavor,
    t: &'a TensorInputs<'b>,
    blocks: Range<usize>,
    sums: &'a mut [[f32; MAX_WIDTH]],
}

impl Kernel for Pass1Kernel<'_, '_> {
    #[inline(always)]
    fn run(&mut self) {
        let first = self.blocks.start;
        let sums = &mut *self.sums;
        pass1(self.flavor, self.t, &self.prep, self.blocks.clone(), |b, s| sums[b - first] = *s);
    }
}

/// Pass 2 of a block range.
struct Pass2Kernel<'a, 'b> {
    prep: Prepared,
    flavor: Flavor,
    t: &'a TensorInputs<'b>,
    net: &'a Mlp,
    rule: StepRule,
    norm: [f32; MAX_WIDTH],
    blocks: Range<usize>,
    out: &'a mut [f32],
}

impl Kernel for Pass2Kernel<'_, '_> {
    #[inline(always)]
    fn run(&mut self) {
        pass2(self.flavor, self.t, &self.prep, self.net, self.rule, &self.norm, self.blocks.clone(), self.out)
    }
}

impl Kernel for TensorKernel<'_, '_> {
    #[inline(always)]
    fn run(&mut self) {
        // One thread: the block sums are accumulated as they come (in block order).
        let (n, width) = (self.t.g.len(), self.flavor.width());
        let mut sum = [0f64; MAX_WIDTH];
        pass1(self.flavor, self.t, &self.prep, 0..n.div_ceil(B), |_, s| {
            for f in 0..width {
                sum[f] += f64::from(s[f]);
            }
        });
        let norm = normaliser(&sum, width, n);
        pass2(self.flavor, self.t, &self.prep, self.net, self.rule, &norm, 0..n.div_ceil(B), self.out)
    }
}

/// Compute one tensor's new parameters into `out` (features, normaliser, MLP and step fused).
pub fn process_tensor(flavor: Flavor, t: &TensorInputs<'_>, net: &Mlp, rule: StepRule, out: &mut [f32]) {
    assert!(net.layers.iter().all(|l| l.2 <= MAX_WIDTH && l.3 <= MAX_WIDTH));
    process_tensor_threads(flavor, t, net, rule, out, 1)
}

/// Tensors below this many parameters are not split across threads (the spawn would cost
/// more than it saves).
pub const THREADED_MIN: usize = 1 << 16;

/// [`process_tensor`] on up to `threads` threads, each a contiguous run of blocks; the same
/// bits for any `threads` (pass 1's per-block sums are accumulated in block order either way,
/// pass 2 is elementwise). Worker threads take the caller's floating-point mode (subnormal
/// flushing included).
pub fn process_tensor_threads(flavor: Flavor, t: &TensorInputs<'_>, net: &Mlp, rule: StepRule, out: &mut [f32], threads: usize) {
    assert!(net.layers.iter().all(|l| l.2 <= MAX_WIDTH && l.3 <= MAX_WIDTH));
    let prep = prepare(t);
    let n = t.g.len();
    let threads = if n >= THREADED_MIN { threads.clamp(1, 8) } else { 1 };
    if threads == 1 {
        return simd_dispatch(&mut TensorKernel { prep, flavor, t, net, rule, out });
    }
    let nb = n.div_ceil(B);
    let ranges: Vec<Range<usize>> = (0..threads).map(|i| nb * i / threads..nb * (i + 1) / threads).collect();
    let mode = beatmatch_core::simd::FpMode::current();
    let mut sums = vec![[0f32; MAX_WIDTH]; nb];
    fan_out(&ranges, &mut sums, |r| r.len(), mode, |r, part| simd_dispatch(&mut Pass1Kernel { prep, flavor, t, blocks: r, sums: part }));
    let width = flavor.width();
    let mut sum = [0f64; MAX_WIDTH];
    for s in &sums {
        for f in 0..width {
            sum[f] += f64::from(s[f]);
        }
    }
    let norm = normaliser(&sum, width, n);
    fan_out(
        &ranges,
        out,
        |r| (r.end * B).min(n) - r.start * B,
        mode,
        |r, part| simd_dispatch(&mut Pass2Kernel { prep, flavor, t, net, rule, norm, blocks: r, out: part }),
    );
}

/// Split `buf` into consecutive parts of `len(range)` items, one per block range, and run
/// `f(range, part)` for each: the first on this thread, the others on scoped threads that take
/// this thread's floating-point mode (`mode`), so every part computes the same bits as alone.
fn fan_out<T: Send>(
    ranges: &[Range<usize>],
    buf: &mut [T],
    len: impl Fn(&Range<usize>) -> usize,
    mode: beatmatch_core::simd::FpMode,
    f: impl Fn(Range<usize>, &mut [T]) + Sync,
) {
    let mut rest = buf;
    let mut parts = Vec::with_capacity(ranges.len());
    for r in ranges {
        let (part, tail) = rest.split_at_mut(len(r));
        rest = tail;
        parts.push((r.clone(), part));
    }
    let mut parts = parts.into_iter();
    let Some((first_range, first_part)) = parts.next() else { return };
    let f = &f;
    std::thread::scope(|s| {
        for (r, part) in parts {
            s.spawn(move || {
                let _mode = mode.apply();
                f(r, part)
            });
        }
        f(first_range, first_part);
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::accum::{Factored, Momentum, SecondMoment};
    use beatmatch_core::ParamInfo;

    /// The blocks that read their statistics as a broadcast and a contiguous run give the same
    /// bits as the gathers every block can take.
    #[test]
    fn row_blocks_equal_gathered_blocks() {
        for shape in [vec![4, 48], vec![64, 32], vec![3, 40]] {
            let info = [ParamInfo { name: "w".into(), shape: shape.clone() }];
            let n = info[0].numel();
            let v = |seed: usize| -> Vec<f32> { (0..n).map(|i| (((i * 7919 + seed * 104729) % 1000) as f32 / 1000.0 - 0.5) * 0.1).collect() };
            let (g, p) = (v(1), v(2));
            let mut mom = Momentum::new(3, &info);
            let mut rms = SecondMoment::new(1, &info);
            let mut fac = Factored::new(3, &info);
            let mut fac_g = Vec::new();
            for step in 0..3 {
                let gs = v(10 + step);
                mom.update(&[0.9, 0.99, 0.999], &[&gs]);
                rms.update(&[0.999], &[&gs]);
                fac.update(&[0.9, 0.99, 0.999], &[&gs], &mut fac_g);
            }
            let net = Mlp {
                layers: vec![
                    (v(3)[..30 * 4].to_vec(), vec![0.1; 4], 30, 4),
                    (v(4)[..4 * 4].to_vec(), vec![0.0; 4], 4, 4),
                    (v(5)[..12].to_vec(), vec![0.2; 3], 4, 3),
                ],
            };
            let rule = StepRule::Velo { exp_mult: 0.001, step_mult: 0.001, param_scale: 0.5, lr_mult: 1.0 };
            let t = TensorInputs { g: &g, p: &p, m: &mom.m[0], rms: &rms.v[0], fac_g: &fac_g[0], fac: &fac.state[0] };
            let (mut fast, mut gathered) = (vec![0.0; n], vec![0.0; n]);
            simd_dispatch(&mut TensorKernel { prep: prepare(&t), flavor: Flavor::Velo, t: &t, net: &net, rule, out: &mut fast });
            simd_dispatch(&mut TensorKernel {
                prep: Prepared { cols: 0, row_by_row: false },
                flavor: Flavor::Velo,
                t: &t,
                net: &net,
                rule,
                out: &mut gathered,
            });
            assert_eq!(fast, gathered, "{shape:?}");
            assert!(fast.iter().zip(&p).any(|(a, b)| a != b));
        }
    }
}
