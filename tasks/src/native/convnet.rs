//! ConvNets (`models::conv`) on host buffers: the forward and backward passes of 3×3
//! convolutions (padding 1, stride 1), ReLU, 2×2 pooling and the linear head, for a population
//! of K members at once (the seam and its member rules: [`crate::native`]).
//!
//! A convolution is im2col + one product: the `rows·h·w × c_in·9` matrix of every pixel's 3×3
//! neighbourhood (zeros beyond the border) times the `c_in·9 × c_out` weights (candle's
//! `[c_out, c_in, 3, 3]`, read transposed), with maps stored `[rows][h][w][c]` so the product's
//! output is the next map. The first block's im2col reads only the batch, which every member
//! shares: it is built once per batch and serves every member's forward pass and weight
//! gradient. The rest is one member at a time, in buffers sized for one member (a population
//! of 30 needs one member's activations, not 30), so a member's bits cannot depend on K.
//!
//! The math is candle's model's but for two choices at measure-zero points, the usual ones:
//! ReLU's derivative at exactly 0 is 0 (candle: 1), and a 2×2 max-pooling window whose maximum
//! is tied sends the gradient to the first of them in row-major order (candle: to each).
//! Both show up on real images (blank regions give pre-activations of exactly 0 while the
//! biases are 0); the gradient checks use inputs without ties.

use crate::dense::{add_bias, cross_entropy, BiasActivate};
use crate::models::conv::{ConvNet, Pooling};
use crate::models::{Activation, EvalSums, Model};
use crate::native::{column_sums, Batch, NativeNet};
use beatmatch_core::matmul::{matmul, transpose, Layout};
use beatmatch_core::optimizer::{member, member_mut};
use beatmatch_core::simd::{simd_dispatch, Kernel};
use beatmatch_core::ParamInfo;

/// Rows an evaluation pass takes at a time, to bound the im2col buffers (a held-out chunk is
/// 1000 rows: 225 MB of im2col at MNIST's second block).
const EVAL_ROWS: usize = 128;

/// One block: a 3×3 convolution of an `h × w × c_in` map to `h × w × c_out`, ReLU, then 2×2
/// pooling (odd trailing rows and columns dropped) when `pool`.
#[derive(Clone, Copy, Debug, PartialEq)]
struct Block {
    c_in: usize,
    c_out: usize,
    h: usize,
    w: usize,
    pool: bool,
}

impl Block {
    /// The block's output map's height and width.
    fn out_hw(&self) -> (usize, usize) {
        if self.pool {
            (self.h / 2, self.w / 2)
        } else {
            (self.h, self.w)
        }
    }

    /// Columns of the block's im2col (weights per output channel).
    fn taps(&self) -> usize {
        self.c_in * 9
    }
}

/// The native engine's ConvNet: the geometry of [`ConvNet`] and reused buffers.
pub struct ConvEngine {
    params: Vec<ParamInfo>,
    blocks: Vec<Block>,
    pooling: Pooling,
    classes: usize,
    ws: Workspace,
}

/// Buffers of one member's pass (and the shared first im2col), reused across steps.
#[derive(Default)]
struct Workspace {
    /// The first block's im2col of the batch (every member's).
    col0: Vec<f32>,
    /// A later block's im2col (one member's; rebuilt where the backward pass needs it).
    col: Vec<f32>,
    /// Per block, its output after ReLU, `[rows][h][w][c_out]`.
    act: Vec<Vec<f32>>,
    /// Per block that pools, the pooled map `[rows][h/2][w/2][c_out]`.
    pooled: Vec<Vec<f32>>,
    /// The head's input `[rows][features]`, channels first (as candle flattens NCHW).
    feat: Vec<f32>,
    logits: Vec<f32>,
    /// Gradients on the way back: the logits', the head's input's, a block's output map's, its
    /// pre-activation's (`[rows][h][w][c_out]`), and its im2col's.
    dlogits: Vec<f32>,
    dfeat: Vec<f32>,
    dmap: Vec<f32>,
    dz: Vec<f32>,
    dcol: Vec<f32>,
}

impl ConvEngine {
    /// The engine of `net` (its geometry and parameter order).
    pub fn new(net: &ConvNet) -> Self {
        let (mut h, mut w) = (net.chw().1, net.chw().2);
        let mut blocks = Vec::new();
        for (c_in, c_out, pool) in net.blocks() {
            blocks.push(Block { c_in, c_out, h, w, pool });
            if pool {
                (h, w) = (h / 2, w / 2);
            }
        }
        Self { params: net.params().to_vec(), blocks, pooling: net.pooling(), classes: net.classes(), ws: Workspace::default() }
    }

    /// Values of the head's input per example.
    fn features(&self) -> usize {
        let last = self.blocks.last().expect("a ConvNet has a block");
        let (h, w) = last.out_hw();
        last.c_out * h * w
    }

    /// The first block's im2col of `x` (rows of channels-first images), shared by the members.
    fn prepare(&mut self, x: &[f32], rows: usize) {
        let b = self.blocks[0];
        im2col(x, rows, (b.h, b.w, b.c_in), (1, b.h * b.w), &mut self.ws.col0);
    }

    /// Member `m`'s forward pass on `rows` rows (after [`ConvEngine::prepare`]): fills the
    /// activations, the head's input and the logits.
    fn forward(&mut self, k: usize, m: usize, params: &[&[f32]], rows: usize) {
        let n = self.blocks.len();
        let ws = &mut self.ws;
        ws.act.resize_with(n, Vec::new);
        ws.pooled.resize_with(n, Vec::new);
        for (i, b) in self.blocks.iter().enumerate() {
            if i > 0 {
                let input = block_output(&self.blocks[i - 1], &ws.act[i - 1], &ws.pooled[i - 1]);
                im2col(input, rows, (b.h, b.w, b.c_in), (b.c_in, 1), &mut ws.col);
            }
            let col = if i == 0 { &ws.col0 } else { &ws.col };
            let pixels = rows * b.h * b.w;
            let act = &mut ws.act[i];
            act.resize(pixels * b.c_out, 0.0);
            matmul(pixels, b.taps(), b.c_out, col, Layout::RowMajor, member(params[2 * i + 1], k, m), Layout::Transposed, act);
            simd_dispatch(&mut BiasActivate { out: act, src: None, bias: member(params[2 * i], k, m), act: Some(Activation::Relu), pre: None });
            if b.pool {
                pool_forward(act, rows, b, self.pooling, &mut ws.pooled[i]);
            }
        }
        let last = &self.blocks[n - 1];
        let map = block_output(last, &ws.act[n - 1], &ws.pooled[n - 1]);
        let (h, w) = last.out_hw();
        let features = last.c_out * h * w;
        ws.feat.resize(rows * features, 0.0);
        for (f, src) in ws.feat.chunks_exact_mut(features).zip(map.chunks_exact(features)) {
            transpose(src, h * w, last.c_out, f);
        }
        ws.logits.resize(rows * self.classes, 0.0);
        matmul(rows, features, self.classes, &ws.feat, Layout::RowMajor, member(params[2 * n + 1], k, m), Layout::RowMajor, &mut ws.logits);
        add_bias(&mut ws.logits, member(params[2 * n], k, m));
    }

    /// Member `m`'s backward pass from the mean cross-entropy's gradient (in `ws.dlogits`),
    /// after its [`ConvEngine::forward`] on `x`: every gradient into `grads` (member `m`'s part).
    fn backward(&mut self, k: usize, m: usize, params: &[&[f32]], rows: usize, grads: &mut [&mut [f32]]) {
        let n = self.blocks.len();
        let features = self.features();
        let ws = &mut self.ws;
        // The head: dW = featᵀ·δ, db = Σ_rows δ, δfeat = δ·Wᵀ.
        matmul(features, rows, self.classes, &ws.feat, Layout::Transposed, &ws.dlogits, Layout::RowMajor, member_mut(grads[2 * n + 1], k, m));
        column_sums(&ws.dlogits, self.classes, member_mut(grads[2 * n], k, m));
        ws.dfeat.resize(rows * features, 0.0);
        matmul(rows, self.classes, features, &ws.dlogits, Layout::RowMajor, member(params[2 * n + 1], k, m), Layout::Transposed, &mut ws.dfeat);
        let last = &self.blocks[n - 1];
        let (h, w) = last.out_hw();
        ws.dmap.resize(rows * features, 0.0);
        for (d, src) in ws.dmap.chunks_exact_mut(features).zip(ws.dfeat.chunks_exact(features)) {
            transpose(src, last.c_out, h * w, d);
        }
        let mut dz = std::mem::take(&mut ws.dz);
        for i in (0..n).rev() {
            let b = self.blocks[i];
            let pixels = rows * b.h * b.w;
            if b.pool {
                pool_backward(&ws.dmap, &ws.act[i], rows, &b, self.pooling, &mut dz);
            } else {
                std::mem::swap(&mut dz, &mut ws.dmap);
            }
            for (d, &a) in dz.iter_mut().zip(&ws.act[i]) {
                *d = if a > 0.0 { *d } else { 0.0 };
            }
            column_sums(&dz[..pixels * b.c_out], b.c_out, member_mut(grads[2 * i], k, m));
            if i > 0 && i + 1 < n {
                // The forward pass left the last block's im2col in `col`; rebuild this one's.
                let input = block_output(&self.blocks[i - 1], &ws.act[i - 1], &ws.pooled[i - 1]);
                im2col(input, rows, (b.h, b.w, b.c_in), (b.c_in, 1), &mut ws.col);
            }
            let col = if i == 0 { &ws.col0 } else { &ws.col };
            matmul(b.c_out, pixels, b.taps(), &dz, Layout::Transposed, col, Layout::RowMajor, member_mut(grads[2 * i + 1], k, m));
            if i > 0 {
                ws.dcol.resize(pixels * b.taps(), 0.0);
                matmul(pixels, b.c_out, b.taps(), &dz, Layout::RowMajor, member(params[2 * i + 1], k, m), Layout::RowMajor, &mut ws.dcol);
                col2im(&ws.dcol, rows, (b.h, b.w, b.c_in), &mut ws.dmap);
            }
        }
        ws.dz = dz;
    }
}

impl NativeNet for ConvEngine {
    fn params(&self) -> &[ParamInfo] {
        &self.params
    }

    fn eval(&mut self, k: usize, who: &[bool], params: &[&[f32]], batch: &Batch<'_>) -> Vec<EvalSums> {
        let width = batch.x.len() / batch.rows.max(1);
        let mut sums = vec![EvalSums::default(); k];
        for (piece, start) in (0..batch.rows).step_by(EVAL_ROWS).enumerate() {
            let rows = EVAL_ROWS.min(batch.rows - start);
            self.prepare(&batch.x[start * width..(start + rows) * width], rows);
            let y = &batch.y[start..start + rows];
            for m in (0..k).filter(|&m| who[m]) {
                self.forward(k, m, params, rows);
                let (loss_sum, correct) = cross_entropy(&self.ws.logits, y, self.classes, None);
                let s = EvalSums { loss_sum, items: rows as u64, correct: Some(correct) };
                sums[m] = if piece == 0 { s } else { sums[m].merge(s) };
            }
        }
        sums
    }

    fn loss_and_grads(&mut self, k: usize, live: &[bool], params: &[&[f32]], batch: &Batch<'_>, grads: &mut [&mut [f32]]) -> Vec<f32> {
        let rows = batch.rows;
        let mut losses = vec![f32::NAN; k];
        self.prepare(batch.x, rows);
        for m in (0..k).filter(|&m| live[m]) {
            self.forward(k, m, params, rows);
            let mut dlogits = std::mem::take(&mut self.ws.dlogits);
            dlogits.resize(rows * self.classes, 0.0);
            losses[m] = (cross_entropy(&self.ws.logits, batch.y, self.classes, Some(&mut dlogits)).0 / rows as f64) as f32;
            self.ws.dlogits = dlogits;
            self.backward(k, m, params, rows, grads);
        }
        losses
    }
}

/// The map a block hands on: its pooled map, or its activation when it does not pool.
fn block_output<'a>(b: &Block, act: &'a [f32], pooled: &'a [f32]) -> &'a [f32] {
    if b.pool {
        pooled
    } else {
        act
    }
}

/// `col[(r, y, x)][(c, ky, kx)]` = the input at `(r, y + ky − 1, x + kx − 1, c)`, zero outside:
/// a 3×3 convolution with padding 1 as one product. `src` holds `rows` maps of `h × w × c`
/// values, a value's offset within its map `pixel·px + channel·ch`: `(c, 1)` for `[h][w][c]`
/// maps, `(1, h·w)` for the datasets' channels-first rows.
fn im2col(src: &[f32], rows: usize, (h, w, c): (usize, usize, usize), (px, ch): (usize, usize), col: &mut Vec<f32>) {
    let taps = c * 9;
    col.resize(rows * h * w * taps, 0.0);
    let map = h * w * c;
    for (r, cols) in col.chunks_exact_mut(h * w * taps).enumerate() {
        let s = &src[r * map..(r + 1) * map];
        for (p, dst) in cols.chunks_exact_mut(taps).enumerate() {
            let (y, x) = (p / w, p % w);
            for ci in 0..c {
                for ky in 0..3 {
                    let yy = (y + ky).wrapping_sub(1);
                    for kx in 0..3 {
                        let xx = (x + kx).wrapping_sub(1);
                        dst[ci * 9 + ky * 3 + kx] = if yy < h && xx < w { s[(yy * w + xx) * px + ci * ch] } else { 0.0 };
                    }
                }
            }
        }
    }
}

/// The adjoint of [`im2col`] on `[h][w][c]` maps: `dmap` (resized, overwritten) gathers every
/// tap's gradient from `dcol` back onto the pixel it read, in a fixed order.
fn col2im(dcol: &[f32], rows: usize, (h, w, c): (usize, usize, usize), dmap: &mut Vec<f32>) {
    let taps = c * 9;
    dmap.clear();
    dmap.resize(rows * h * w * c, 0.0);
    for (r, d) in dmap.chunks_exact_mut(h * w * c).enumerate() {
        let cols = &dcol[r * h * w * taps..(r + 1) * h * w * taps];
        for (p, src) in cols.chunks_exact(taps).enumerate() {
            let (y, x) = (p / w, p % w);
            for ci in 0..c {
                for ky in 0..3 {
                    let yy = (y + ky).wrapping_sub(1);
                    for kx in 0..3 {
                        let xx = (x + kx).wrapping_sub(1);
                        if yy < h && xx < w {
                            d[(yy * w + xx) * c + ci] += src[ci * 9 + ky * 3 + kx];
                        }
                    }
                }
            }
        }
    }
}

/// 2×2 pooling with stride 2 of `[rows][h][w][c]` maps into `out` (`[rows][h/2][w/2][c]`).
fn pool_forward(act: &[f32], rows: usize, b: &Block, pooling: Pooling, out: &mut Vec<f32>) {
    let (h2, w2) = b.out_hw();
    out.resize(rows * h2 * w2 * b.c_out, 0.0);
    simd_dispatch(&mut Pool { map: act, out, rows, b: *b, pooling, backward: None });
}

/// The gradient of [`pool_forward`]'s input from its output's (`dout`): a window's maximum
/// gets it (the first one on a tie), or each of the four a quarter; dropped rows and columns
/// get 0. Fills `din` (`[rows][h][w][c]`).
fn pool_backward(dout: &[f32], act: &[f32], rows: usize, b: &Block, pooling: Pooling, din: &mut Vec<f32>) {
    din.clear();
    din.resize(rows * b.h * b.w * b.c_out, 0.0);
    simd_dispatch(&mut Pool { map: act, out: din, rows, b: *b, pooling, backward: Some(dout) });
}

/// 2×2 pooling of a block's activations `map` (`[rows][h][w][c]`): forward, the pooled map
/// into `out`; or, given the pooled map's gradient (`backward`), the activations' gradient into
/// `out` (zeroed by the caller). Vector code over a pixel's channels: the
/// maximum is chosen by selects, not branches (a window's first maximum, as before: `perf`
/// had the branch on it at a sixth of a ConvNet's step), and each of a window's four values
/// is written, the gradient or 0.
struct Pool<'a> {
    map: &'a [f32],
    out: &'a mut [f32],
    rows: usize,
    b: Block,
    pooling: Pooling,
    backward: Option<&'a [f32]>,
}

impl Kernel for Pool<'_> {
    #[inline(always)]
    fn run(&mut self) {
        // The registry's channel counts as constants: a window's channels become whole
        // vectors, without a loop around them.
        match self.b.c_out {
            8 => self.windows(8),
            16 => self.windows(16),
            32 => self.windows(32),
            64 => self.windows(64),
            c => self.windows(c),
        }
    }
}

impl Pool<'_> {
    /// Every window of every row, `c` (the block's `c_out`) channels each.
    #[inline(always)]
    fn windows(&mut self, c: usize) {
        let b = self.b;
        let (h2, w2) = b.out_hw();
        for r in 0..self.rows {
            let a = &self.map[r * b.h * b.w * c..(r + 1) * b.h * b.w * c];
            for y in 0..h2 {
                for x in 0..w2 {
                    let at = |dy: usize, dx: usize| ((2 * y + dy) * b.w + 2 * x + dx) * c;
                    let window = [at(0, 0), at(0, 1), at(1, 0), at(1, 1)];
                    let o = ((r * h2 + y) * w2 + x) * c;
                    match self.backward {
                        None => pool_window(a, window, self.pooling, &mut self.out[o..o + c]),
                        Some(dout) => pool_window_back(a, window, self.pooling, &dout[o..o + c], &mut self.out[r * b.h * b.w * c..]),
                    }
                }
            }
        }
    }
}

/// One window's pooled channels.
#[inline(always)]
fn pool_window(a: &[f32], [p00, p01, p10, p11]: [usize; 4], pooling: Pooling, dst: &mut [f32]) {
    let c = dst.len();
    let (a0, a1, a2, a3) = (&a[p00..p00 + c], &a[p01..p01 + c], &a[p10..p10 + c], &a[p11..p11 + c]);
    for (j, v) in dst.iter_mut().enumerate() {
        let (a, b_, c_, d) = (a0[j], a1[j], a2[j], a3[j]);
        *v = match pooling {
            Pooling::Max => a.max(b_).max(c_.max(d)),
            Pooling::Avg => 0.25 * (a + b_ + c_ + d),
            Pooling::None => unreachable!("a pooling block pools"),
        };
    }
}

/// One window's gradient into its four pixels of `d` (the row's map gradient): the window's
/// top-left and top-right pixels are adjacent, and so are its bottom two.
#[inline(always)]
fn pool_window_back(a: &[f32], [p0, p1, p2, p3]: [usize; 4], pooling: Pooling, g: &[f32], d: &mut [f32]) {
    let c = g.len();
    debug_assert!(p1 == p0 + c && p3 == p2 + c && p2 >= p1 + c);
    let (top, bottom) = d.split_at_mut(p2);
    let (d0, d1) = top[p0..p0 + 2 * c].split_at_mut(c);
    let (d2, d3) = bottom[..2 * c].split_at_mut(c);
    match pooling {
        Pooling::Max => {
            let (a0, a1, a2, a3) = (&a[p0..p0 + c], &a[p1..p1 + c], &a[p2..p2 + c], &a[p3..p3 + c]);
            for j in 0..c {
                // The first maximum in the window's order: each later value must beat the best.
                let over1 = a1[j] > a0[j];
                let best = if over1 { a1[j] } else { a0[j] };
                let over2 = a2[j] > best;
                let over3 = a3[j] > if over2 { a2[j] } else { best };
                let g = g[j];
                d3[j] = if over3 { g } else { 0.0 };
                d2[j] = if over2 && !over3 { g } else { 0.0 };
                d1[j] = if over1 && !over2 && !over3 { g } else { 0.0 };
                d0[j] = if !over1 && !over2 && !over3 { g } else { 0.0 };
            }
        }
        Pooling::Avg => {
            for dst in [d0, d1, d2, d3] {
                dst.iter_mut().zip(g).for_each(|(dst, &g)| *dst = 0.25 * g);
            }
        }
        Pooling::None => unreachable!("a pooling block pools"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// [`pool_backward`] one value at a time, as written before it was vector code: the first
    /// maximum of a window by branches.
    fn pool_backward_by_value(dout: &[f32], act: &[f32], rows: usize, b: &Block, pooling: Pooling, din: &mut Vec<f32>) {
        let (h2, w2) = b.out_hw();
        let c = b.c_out;
        din.clear();
        din.resize(rows * b.h * b.w * c, 0.0);
        for r in 0..rows {
            let a = &act[r * b.h * b.w * c..(r + 1) * b.h * b.w * c];
            let d = &mut din[r * b.h * b.w * c..(r + 1) * b.h * b.w * c];
            for y in 0..h2 {
                for x in 0..w2 {
                    let at = |dy: usize, dx: usize| ((2 * y + dy) * b.w + 2 * x + dx) * c;
                    let window = [at(0, 0), at(0, 1), at(1, 0), at(1, 1)];
                    for (j, &g) in dout[((r * h2 + y) * w2 + x) * c..][..c].iter().enumerate() {
                        if pooling == Pooling::Avg {
                            window.iter().for_each(|&p| d[p + j] = 0.25 * g);
                            continue;
                        }
                        let mut best = window[0];
                        for &p in &window[1..] {
                            if a[p + j] > a[best + j] {
                                best = p;
                            }
                        }
                        d[best + j] = g;
                    }
                }
            }
        }
    }

    /// The pooling passes give the bits of one value at a time: ties (zeros after ReLU, equal
    /// values), NaNs, odd heights and widths (a dropped row and column), and channel counts
    /// the kernel takes as constants (8) and as they come (1, 3, 70).
    #[test]
    fn pooling_gives_the_bits_of_one_value_at_a_time() {
        for (h, w, c) in [(8, 8, 8), (5, 7, 3), (4, 4, 70), (2, 2, 1)] {
            let b = Block { c_in: 1, c_out: c, h, w, pool: true };
            let rows = 3;
            let act: Vec<f32> = (0..rows * h * w * c)
                .map(|i| match i % 11 {
                    0..=2 => 0.0,
                    3 => f32::NAN,
                    _ => ((i * 37 % 7) as f32 - 3.0).max(0.0),
                })
                .collect();
            let (h2, w2) = b.out_hw();
            let dout: Vec<f32> = (0..rows * h2 * w2 * c).map(|i| (i as f32 - 5.0) * 0.37).collect();
            for pooling in [Pooling::Max, Pooling::Avg] {
                let mut din = vec![f32::NAN; 1];
                pool_backward(&dout, &act, rows, &b, pooling, &mut din);
                let mut want = Vec::new();
                pool_backward_by_value(&dout, &act, rows, &b, pooling, &mut want);
                assert!(din.iter().zip(&want).all(|(x, y)| x.to_bits() == y.to_bits()), "{h}×{w}×{c}, {pooling:?}: gradients differ");
                assert_eq!(din.len(), want.len());
                let mut out = Vec::new();
                pool_forward(&act, rows, &b, pooling, &mut out);
                for (o, (r, y, x, j)) in
                    out.iter().zip((0..rows).flat_map(|r| (0..h2).flat_map(move |y| (0..w2).flat_map(move |x| (0..c).map(move |j| (r, y, x, j))))))
                {
                    let v = |dy: usize, dx: usize| act[((r * h + 2 * y + dy) * w + 2 * x + dx) * c + j];
                    let want = match pooling {
                        Pooling::Max => v(0, 0).max(v(0, 1)).max(v(1, 0).max(v(1, 1))),
                        _ => 0.25 * (v(0, 0) + v(0, 1) + v(1, 0) + v(1, 1)),
                    };
                    assert!(o.to_bits() == want.to_bits() || (o.is_nan() && want.is_nan()), "{h}×{w}×{c}, {pooling:?}: pooled ({r}, {y}, {x}, {j})");
                }
            }
        }
    }

    /// im2col then col2im is the adjoint pair: ⟨im2col(x), y⟩ = ⟨x, col2im(y)⟩.
    #[test]
    fn col2im_is_the_adjoint_of_im2col() {
        let (rows, h, w, c) = (2, 3, 5, 2);
        let x: Vec<f32> = (0..rows * h * w * c).map(|i| ((i * 37 % 17) as f32 - 8.0) / 8.0).collect();
        let mut col = Vec::new();
        im2col(&x, rows, (h, w, c), (c, 1), &mut col);
        let y: Vec<f32> = (0..col.len()).map(|i| ((i * 53 % 13) as f32 - 6.0) / 6.0).collect();
        let mut back = Vec::new();
        col2im(&y, rows, (h, w, c), &mut back);
        let lhs: f64 = col.iter().zip(&y).map(|(&a, &b)| f64::from(a) * f64::from(b)).sum();
        let rhs: f64 = x.iter().zip(&back).map(|(&a, &b)| f64::from(a) * f64::from(b)).sum();
        // col2im sums in f32; the rest in f64.
        assert!((lhs - rhs).abs() < 1e-6 * lhs.abs().max(1.0), "{lhs} vs {rhs}");
        // The centre tap of pixel (0, 0, 0) of row 0 is x there; its top-left tap the padding.
        assert_eq!(col[4], x[0]);
        assert_eq!(col[0], 0.0);
    }
}
