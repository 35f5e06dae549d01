//! Per-parameter features of the learned optimizers with Adafactor-style accumulators
//! (small_fc_lopt and VeLO), the second-moment normaliser, and the per-parameter MLP —
//! evaluated in blocks of [`B`] parameters laid out feature-major, so the compiler vectorises
//! across parameters (AVX-512 or AVX2 + FMA where the CPU has them, chosen at run time). The
//! MLP's multiply-adds are explicit fused multiply-adds and nothing else is contracted, so
//! every path gives the same bits.

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

/// Where [`fill`] puts each feature row of a block.
trait Sink {
    /// Feature `f`'s 16 lane values.
    fn put(&mut self, f: usize, v: [f32; B]);
}

/// Pass 1's sink: lane-wise f64 sums of squares (`[feature][lane]`), so the sums add 16
/// independent chains per feature instead of one 16-long dependent chain per block.
struct Squares<'a>(&'a mut [[f64; B]; MAX_WIDTH]);

impl Sink for Squares<'_> {
    #[inline(always)]
    fn put(&mut self, f: usize, v: [f32; B]) {
        let row = &mut self.0[f];
        for e in 0..B {
            row[e] += f64::from(v[e] * v[e]);
        }
    }
}

/// Pass 2's sink: the features times the tensor's normaliser, into the block the MLP reads
/// (fused: the block is written once, never reloaded and rescaled).
struct Normalised<'a> {
    x: &'a mut Block,
    norm: &'a [f32; MAX_WIDTH],
}

impl Sink for Normalised<'_> {
    #[inline(always)]
    fn put(&mut self, f: usize, v: [f32; B]) {
        let s = self.norm[f];
        let row = &mut self.x[f];
        for e in 0..B {
            row[e] = v[e] * s;
        }
    }
}

/// Put the features of parameters `start..start + len` (lanes ≥ len are zero) into `sink`, in
/// the reference's order: `FULL` blocks index `start + e` directly (contiguous loads); the
/// tail block clamps lanes past `len` to the last live element and zeroes them.
#[inline(always)]
fn fill_block(flavor: Flavor, t: &TensorInputs<'_>, prep: &Prepared, start: usize, len: usize, sink: &mut impl Sink) {
    if len == B {
        fill::<true>(flavor, t, prep, start, len, sink)
    } else {
        fill::<false>(flavor, t, prep, start, len, sink)
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
fn fill<const FULL: bool>(flavor: Flavor, t: &TensorInputs<'_>, prep: &Prepared, start: usize, len: usize, sink: &mut impl Sink) {
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
            sink.put(f, $v);
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

/// What [`Mlp::eval_block`] works in, made once per pass: two blocks the layers write in turn
/// (reused across blocks: zeroing fresh ones per block and copying layer outputs between them
/// cost more than the layers), and the output tile width for this pass's instruction set.
pub struct Scratch {
    blocks: [Block; 2],
    /// 8 outputs per tile (AVX-512's 32 vector registers) rather than 4.
    wide: bool,
}

/// A zeroed [`Scratch`] for the instruction set kernels run with now.
pub fn scratch() -> Scratch {
    Scratch { blocks: [[[0.0; B]; MAX_WIDTH]; 2], wide: beatmatch_core::simd::isa() == "avx512f" }
}

impl Mlp {
    /// The same network with the last `tail.len()` inputs of the first layer fixed to `tail`
    /// (the training-step embedding, the same for every parameter of a step): their products
    /// are folded into the first layer's bias once, `b + Σ_j tail_j · w_j` (fused multiply-adds
    /// in input order), instead of once per parameter.
    pub fn with_constant_tail(&self, tail: &[f32]) -> Mlp {
        let mut layers = self.layers.clone();
        let (w, b, n_in, n_out) = &mut layers[0];
        let keep = *n_in - tail.len();
        for (o, bo) in b.iter_mut().enumerate() {
            for (j, &t) in tail.iter().enumerate() {
                *bo = t.mul_add(w[(keep + j) * *n_out + o], *bo);
            }
        }
        w.truncate(keep * *n_out);
        *n_in = keep;
        Mlp { layers }
    }

    /// Evaluate on a block: `x` rows `0..n_in` in; returns the last layer's output rows
    /// (`0..n_out` are valid), which live in `scratch`.
    ///
    /// Each output is its bias plus its inputs' products in input order, one fused
    /// multiply-add each ([`f32::mul_add`]: one rounding, the same on every instruction set).
    /// Outputs are computed `T` at a time with their accumulators in registers across the
    /// input loop, so `T` independent add chains hide the FMA latency: 8 with AVX-512's 32
    /// vector registers, 4 (two 8-lane halves each) with AVX2's 16.
    #[inline(always)]
    pub fn eval_block<'s>(&self, x: &Block, scratch: &'s mut Scratch) -> &'s Block {
        let wide = scratch.wide;
        let last = self.layers.len() - 1;
        for (li, (w, b, n_in, n_out)) in self.layers.iter().enumerate() {
            let (n_in, n_out) = (*n_in, *n_out);
            let relu = li != last;
            // Layer li writes scratch[li % 2]; it reads `x` (layer 0) or the other half.
            let (lo, hi) = scratch.blocks.split_at_mut(1);
            let (input, result): (&Block, &mut Block) = match (li, li % 2) {
                (0, _) => (x, &mut lo[0]),
                (_, 0) => (&hi[0], &mut lo[0]),
                _ => (&lo[0], &mut hi[0]),
            };
            let mut o0 = 0;
            while o0 < n_out {
                o0 += match n_out - o0 {
                    8.. if wide => {
                        tile::<8>(input, w, b, n_in, n_out, o0, relu, result);
                        8
                    }
                    4.. => {
                        tile::<4>(input, w, b, n_in, n_out, o0, relu, result);
                        4
                    }
                    _ => {
                        tile::<1>(input, w, b, n_in, n_out, o0, relu, result);
                        1
                    }
                };
            }
        }
        &scratch.blocks[last % 2]
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
        let wrow: &[f32; T] = w[i * n_out + o0..i * n_out + o0 + T].try_into().unwrap();
        for (a, &wi) in acc.iter_mut().zip(wrow) {
            fma_row(a, xi, wi);
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

/// `Σ f(xs[i])` in f64 over a fixed tree: element `i` goes to lane `i mod 16` (each lane's
/// values added in element order), then the 16 lanes are added in lane order. Vectorises (16
/// independent chains, no gathers); the same bits on every instruction set.
#[inline(always)]
pub fn lane_sum(xs: &[f32], f: impl Fn(f32) -> f32) -> f64 {
    let mut lanes = [0f64; B];
    let mut chunks = xs.chunks_exact(B);
    for c in &mut chunks {
        let c: &[f32; B] = c.try_into().unwrap();
        for e in 0..B {
            lanes[e] += f64::from(f(c[e]));
        }
    }
    for (l, &v) in lanes.iter_mut().zip(chunks.remainder()) {
        *l += f64::from(f(v));
    }
    lanes.iter().sum()
}

/// `Σ xs[i]²` over [`lane_sum`]'s tree.
#[inline(always)]
pub fn sum_squares(xs: &[f32]) -> f64 {
    lane_sum(xs, |x| x * x)
}

/// `acc ← x · w + acc`, lane by lane, one rounding each.
#[inline(always)]
fn fma_row(acc: &mut [f32; B], x: &[f32; B], w: f32) {
    for e in 0..B {
        acc[e] = x[e].mul_add(w, acc[e]);
    }
}

/// How the MLP's outputs (direction, magnitude) become a step.
#[derive(Clone, Copy, Debug)]
pub enum StepRule {
    /// `direction · exp(magnitude · exp_mult) · step_mult` (the training-step embedding the
    /// network also reads is folded into its first layer: [`Mlp::with_constant_tail`]).
    Embedded {
        /// Scale inside the exponential.
        exp_mult: f32,
        /// Scale of the step.
        step_mult: f32,
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

/// Blocks per partial sum of pass 1. Each chunk's squares are summed lane-wise, its lanes then
/// added in lane order, and the chunks' sums added in chunk order: a fixed tree, so the
/// normaliser has the same bits whatever the thread split (threads take whole chunks).
pub const CHUNK: usize = 256;

/// Pass 1 over chunks `chunks`: per chunk, each feature's sum of squares, handed to
/// `emit(chunk, sums)` in chunk order.
#[inline(always)]
fn pass1(flavor: Flavor, t: &TensorInputs<'_>, prep: &Prepared, chunks: Range<usize>, mut emit: impl FnMut(usize, &[f64; MAX_WIDTH])) {
    let n = t.g.len();
    let nb = n.div_ceil(B);
    let width = flavor.width();
    let mut acc = [[0f64; B]; MAX_WIDTH];
    for chunk in chunks {
        for row in &mut acc[..width] {
            *row = [0.0; B];
        }
        for block in chunk * CHUNK..((chunk + 1) * CHUNK).min(nb) {
            let start = block * B;
            fill_block(flavor, t, prep, start, B.min(n - start), &mut Squares(&mut acc));
        }
        let mut s = [0f64; MAX_WIDTH];
        for f in 0..width {
            for e in 0..B {
                s[f] += acc[f][e];
            }
        }
        emit(chunk, &s);
    }
}

/// Pass 2 over blocks `blocks`: features again, normalised, through the MLP, into the new
/// parameters `out` (which starts at the first block's first element).
#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn pass2(flavor: Flavor, t: &TensorInputs<'_>, prep: &Prepared, net: &Mlp, rule: StepRule, norm: &[f32; MAX_WIDTH], blocks: Range<usize>, out: &mut [f32]) {
    let n = t.g.len();
    let base = blocks.start * B;
    let mut x: Block = [[0.0; B]; MAX_WIDTH];
    let mut scratch = scratch();
    for block in blocks {
        let start = block * B;
        let len = B.min(n - start);
        fill_block(flavor, t, prep, start, len, &mut Normalised { x: &mut x, norm });
        let o = net.eval_block(&x, &mut scratch);
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

/// Pass 1 of a chunk range into `sums` (one row per chunk).
struct Pass1Kernel<'a, 'b> {
    prep: Prepared,
    flavor: Flavor,
    t: &'a TensorInputs<'b>,
    chunks: Range<usize>,
    sums: &'a mut [[f64; MAX_WIDTH]],
}

impl Kernel for Pass1Kernel<'_, '_> {
    #[inline(always)]
    fn run(&mut self) {
        let first = self.chunks.start;
        let sums = &mut *self.sums;
        pass1(self.flavor, self.t, &self.prep, self.chunks.clone(), |c, s| sums[c - first] = *s);
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

/// `sum += s` for the first `width` features: how chunk sums are added, in chunk order, on one
/// thread or after many.
#[inline(always)]
fn add_chunk(sum: &mut [f64; MAX_WIDTH], s: &[f64; MAX_WIDTH], width: usize) {
    for f in 0..width {
        sum[f] += s[f];
    }
}

impl Kernel for TensorKernel<'_, '_> {
    #[inline(always)]
    fn run(&mut self) {
        // One thread: the chunk sums are accumulated as they come (in chunk order).
        let (n, width) = (self.t.g.len(), self.flavor.width());
        let mut sum = [0f64; MAX_WIDTH];
        pass1(self.flavor, self.t, &self.prep, 0..n.div_ceil(B * CHUNK), |_, s| add_chunk(&mut sum, s, width));
        let norm = normaliser(&sum, width, n);
        pass2(self.flavor, self.t, &self.prep, self.net, self.rule, &norm, 0..n.div_ceil(B), self.out)
    }
}

/// Compute one tensor's new parameters into `out` (features, normaliser, MLP and step fused).
pub fn process_tensor(flavor: Flavor, t: &TensorInputs<'_>, net: &Mlp, rule: StepRule, out: &mut [f32]) {
    process_tensor_threads(flavor, t, net, rule, out, 1)
}

/// Tensors below this many parameters are not split across threads (the spawn would cost
/// more than it saves).
pub const THREADED_MIN: usize = 1 << 16;

/// [`process_tensor`] on up to `threads` threads, each a contiguous run of chunks (pass 1) or
/// blocks (pass 2); the same bits for any `threads` (pass 1's chunk sums are added in chunk
/// order either way, pass 2 is elementwise). Worker threads take the caller's floating-point
/// mode (subnormal flushing included).
pub fn process_tensor_threads(flavor: Flavor, t: &TensorInputs<'_>, net: &Mlp, rule: StepRule, out: &mut [f32], threads: usize) {
    assert!(net.layers.iter().all(|l| l.2 <= MAX_WIDTH && l.3 <= MAX_WIDTH));
    let prep = prepare(t);
    let n = t.g.len();
    let threads = if n >= THREADED_MIN { threads.clamp(1, 8) } else { 1 };
    if threads == 1 {
        return simd_dispatch(&mut TensorKernel { prep, flavor, t, net, rule, out });
    }
    let split = |count: usize| -> Vec<Range<usize>> { (0..threads).map(|i| count * i / threads..count * (i + 1) / threads).collect() };
    let mode = beatmatch_core::simd::FpMode::current();
    let nc = n.div_ceil(B * CHUNK);
    let mut sums = vec![[0f64; MAX_WIDTH]; nc];
    fan_out(&split(nc), &mut sums, |r| r.len(), mode, |r, part| simd_dispatch(&mut Pass1Kernel { prep, flavor, t, chunks: r, sums: part }));
    let width = flavor.width();
    let mut sum = [0f64; MAX_WIDTH];
    for s in &sums {
        add_chunk(&mut sum, s, width);
    }
    let norm = normaliser(&sum, width, n);
    fan_out(
        &split(n.div_ceil(B)),
        out,
        |r| (r.end * B).min(n) - r.start * B,
        mode,
        |r, part| simd_dispatch(&mut Pass2Kernel { prep, flavor, t, net, rule, norm, blocks: r, out: part }),
    );
}

/// Split `buf` into consecutive parts of `len(range)` items, one per range, and run
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
            let info = [ParamInfo::new("w", shape.clone())];
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
