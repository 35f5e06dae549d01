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
use beatmatch_core::simd::simd_dispatch;
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
    let c = b.c_out;
    out.resize(rows * h2 * w2 * c, 0.0);
    for (r, o) in out.chunks_exact_mut(h2 * w2 * c).enumerate() {
        let a = &act[r * b.h * b.w * c..(r + 1) * b.h * b.w * c];
        for y in 0..h2 {
            for x in 0..w2 {
                let at = |dy: usize, dx: usize| ((2 * y + dy) * b.w + 2 * x + dx) * c;
                let (p00, p01, p10, p11) = (at(0, 0), at(0, 1), at(1, 0), at(1, 1));
                let dst = &mut o[(y * w2 + x) * c..][..c];
                for (j, v) in dst.iter_mut().enumerate() {
                    let (a, b_, c_, d) = (a[p00 + j], a[p01 + j], a[p10 + j], a[p11 + j]);
                    *v = match pooling {
                        Pooling::Max => a.max(b_).max(c_.max(d)),
                        Pooling::Avg => 0.25 * (a + b_ + c_ + d),
                        Pooling::None => unreachable!("a pooling block pools"),
                    };
                }
            }
        }
    }
}

/// The gradient of [`pool_forward`]'s input from its output's (`dout`): a window's maximum
/// gets it (the first one on a tie), or each of the four a quarter; dropped rows and columns
/// get 0. Fills `din` (`[rows][h][w][c]`).
fn pool_backward(dout: &[f32], act: &[f32], rows: usize, b: &Block, pooling: Pooling, din: &mut Vec<f32>) {
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
                let g = &dout[((r * h2 + y) * w2 + x) * c..][..c];
                for (j, &g) in g.iter().enumerate() {
                    match pooling {
                        Pooling::Max => {
                            let mut best = window[0];
                            for &p in &window[1..] {
                                if a[p + j] > a[best + j] {
                                    best = p;
                                }
                            }
                            d[best + j] = g;
                        }
                        Pooling::Avg => window.iter().for_each(|&p| d[p + j] = 0.25 * g),
                        Pooling::None => unreachable!("a pooling block pools"),
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
