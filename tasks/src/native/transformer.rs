//! Byte-level Transformer language models (`models::transformer`: GPT-2 layout, pre-LayerNorm)
//! on host buffers: token and position embeddings, blocks of causal multi-head attention and a
//! 4× GELU MLP, the final LayerNorm, the head and the next-byte cross-entropy, forward and
//! backward, for a population of K members (the seam and its member rules: [`crate::native`]).
//!
//! Activations are `[rows·t][width]`, a window's tokens consecutive. Every weight product is
//! one call over all tokens of the batch; attention gathers each (window, head)'s queries, keys
//! and values into contiguous `[t][d_head]` blocks and runs its three products there, the
//! causal softmax over the first `s + 1` keys of query `s` (candle masks the rest with −1e9,
//! whose exponentials are exactly 0: the same sum). Members run one at a time in one member's
//! buffers.
//!
//! The math is candle's model's (LayerNorm ε = 1e-5 over the biased variance, GELU's erf
//! form, scores scaled by 1/√d_head); `exp` and `erf` are the engine's own and the sums run
//! in other orders, so values agree with candle's to rounding, not bit for bit.

use crate::dense::{add_bias, cross_entropy, exp, ActivationBackward, BiasActivate};
use crate::models::transformer::Transformer;
use crate::models::{Activation, EvalSums, Model};
use crate::native::{column_sums, Batch, NativeNet};
use beatmatch_core::matmul::{matmul, Layout};
use beatmatch_core::optimizer::{member, member_mut};
use beatmatch_core::simd::{simd_dispatch, Kernel};
use beatmatch_core::ParamInfo;

/// LayerNorm's ε (candle's model's).
const LN_EPS: f32 = 1e-5;

/// Where each parameter sits in the canonical (sorted) order.
#[derive(Clone, Copy, Debug)]
struct Slots {
    tok: usize,
    pos: usize,
    final_g: usize,
    final_b: usize,
    head_w: usize,
    head_b: usize,
}

/// One block's parameter positions (canonical order).
#[derive(Clone, Copy, Debug)]
struct BlockSlots {
    ln1_g: usize,
    ln1_b: usize,
    qkv: usize,
    out: usize,
    ln2_g: usize,
    ln2_b: usize,
    w1: usize,
    b1: usize,
    w2: usize,
    b2: usize,
}

/// The native engine's Transformer: the geometry of [`Transformer`] and reused buffers.
pub struct TransformerEngine {
    params: Vec<ParamInfo>,
    slots: Slots,
    blocks: Vec<BlockSlots>,
    vocab: usize,
    d: usize,
    heads: usize,
    ws: Workspace,
}

/// A LayerNorm's saved values: the normalised input `[n][d]` and each row's 1/σ.
#[derive(Default)]
struct Norm {
    xhat: Vec<f32>,
    rstd: Vec<f32>,
}

/// One block's saved activations (one member's).
#[derive(Default)]
struct BlockActs {
    /// The block's input (the residual stream) `[n][d]`.
    h_in: Vec<f32>,
    ln1: Norm,
    /// LayerNorm 1's output `[n][d]`.
    a: Vec<f32>,
    /// Queries, keys, values per (window, head): `[rows][heads][t][d_head]` each.
    q: Vec<f32>,
    k: Vec<f32>,
    v: Vec<f32>,
    /// Attention weights `[rows][heads][t][t]` (0 above the diagonal).
    p: Vec<f32>,
    /// The heads' outputs, concatenated `[n][d]`.
    y: Vec<f32>,
    /// The residual stream after attention `[n][d]`.
    h_mid: Vec<f32>,
    ln2: Norm,
    /// LayerNorm 2's output `[n][d]`.
    m: Vec<f32>,
    /// The MLP's pre-activation `[n][4d]` followed by its `1 + erf(u/√2)` (GELU's shared
    /// factor, kept for the backward pass), and its GELU `[n][4d]`.
    u: Vec<f32>,
    gu: Vec<f32>,
}

/// One member's buffers, reused across steps.
#[derive(Default)]
struct Workspace {
    acts: Vec<BlockActs>,
    /// The residual stream after the last block `[n][d]`.
    h: Vec<f32>,
    final_ln: Norm,
    /// The final LayerNorm's output `[n][d]`.
    hf: Vec<f32>,
    logits: Vec<f32>,
    /// Scratch: the qkv product's output `[n][3d]`.
    tmp: Vec<f32>,
    /// Gradients on the way back: the logits', the stream's, a branch's `[n][d]`, and a wide
    /// product's `[n][3d or 4d]`.
    dlogits: Vec<f32>,
    dh: Vec<f32>,
    dx: Vec<f32>,
    dwide: Vec<f32>,
    attn: AttnScratch,
}

/// One (window, head)'s blocks: its output, and the gradients of its output, queries, keys,
/// values (`[t][d_head]`) and weights (`[t][t]`).
#[derive(Default)]
struct AttnScratch {
    y: Vec<f32>,
    dy: Vec<f32>,
    dq: Vec<f32>,
    dk: Vec<f32>,
    dv: Vec<f32>,
    dp: Vec<f32>,
}

impl TransformerEngine {
    /// The engine of `net` (its geometry and parameter order).
    pub fn new(net: &Transformer) -> Self {
        let (vocab, d, layers, heads, _context) = net.dims();
        let slot = |declared: usize| net.slot(declared);
        let blocks = (0..layers)
            .map(|i| {
                let b = |k: usize| slot(2 + i * 10 + k);
                BlockSlots { ln1_g: b(0), ln1_b: b(1), qkv: b(2), out: b(3), ln2_g: b(4), ln2_b: b(5), w1: b(6), b1: b(7), w2: b(8), b2: b(9) }
            })
            .collect();
        let n = 2 + layers * 10;
        let slots = Slots { tok: slot(0), pos: slot(1), final_g: slot(n), final_b: slot(n + 1), head_w: slot(n + 2), head_b: slot(n + 3) };
        Self { params: net.params().to_vec(), slots, blocks, vocab, d, heads, ws: Workspace::default() }
    }

    /// Member `m`'s forward pass on `rows` windows of tokens `x` (`[rows][t]`, ids as
    /// floats): fills the saved activations and the logits `[rows·t][vocab]`.
    fn forward(&mut self, k: usize, m: usize, params: &[&[f32]], x: &[f32], rows: usize) {
        let (d, heads, vocab) = (self.d, self.heads, self.vocab);
        let t = x.len() / rows;
        let n = rows * t;
        let p = |slot: usize| member(params[slot], k, m);
        let ws = &mut self.ws;
        ws.acts.resize_with(self.blocks.len(), BlockActs::default);
        // The stream: token embedding + position embedding.
        let (tok, pos) = (p(self.slots.tok), p(self.slots.pos));
        ws.h.resize(n * d, 0.0);
        for (i, row) in ws.h.chunks_exact_mut(d).enumerate() {
            let id = x[i] as usize;
            let s = i % t;
            for ((v, &a), &b) in row.iter_mut().zip(&tok[id * d..(id + 1) * d]).zip(&pos[s * d..(s + 1) * d]) {
                *v = a + b;
            }
        }
        for (bs, acts) in self.blocks.iter().zip(ws.acts.iter_mut()) {
            std::mem::swap(&mut acts.h_in, &mut ws.h);
            acts.a.resize(n * d, 0.0);
            layer_norm(&acts.h_in, d, p(bs.ln1_g), p(bs.ln1_b), &mut acts.ln1, &mut acts.a);
            ws.tmp.resize(n * 3 * d, 0.0);
            matmul(n, d, 3 * d, &acts.a, Layout::RowMajor, p(bs.qkv), Layout::RowMajor, &mut ws.tmp);
            attention_forward(&ws.tmp, (rows, t, d, heads), acts, &mut ws.attn);
            // h_mid = h_in + y·W_out
            acts.h_mid.resize(n * d, 0.0);
            matmul(n, d, d, &acts.y, Layout::RowMajor, p(bs.out), Layout::RowMajor, &mut acts.h_mid);
            for (v, &h) in acts.h_mid.iter_mut().zip(&acts.h_in) {
                *v += h;
            }
            acts.m.resize(n * d, 0.0);
            layer_norm(&acts.h_mid, d, p(bs.ln2_g), p(bs.ln2_b), &mut acts.ln2, &mut acts.m);
            // u = m·W1 + b1 (kept), gu = gelu(u)
            acts.u.resize(2 * n * 4 * d, 0.0);
            acts.gu.resize(n * 4 * d, 0.0);
            matmul(n, d, 4 * d, &acts.m, Layout::RowMajor, p(bs.w1), Layout::RowMajor, &mut acts.gu);
            simd_dispatch(&mut BiasActivate { out: &mut acts.gu, src: None, bias: p(bs.b1), act: Some(Activation::Gelu), pre: Some(&mut acts.u) });
            // h = h_mid + gelu(u)·W2 + b2
            ws.h.resize(n * d, 0.0);
            matmul(n, 4 * d, d, &acts.gu, Layout::RowMajor, p(bs.w2), Layout::RowMajor, &mut ws.h);
            add_bias(&mut ws.h, p(bs.b2));
            for (v, &h) in ws.h.iter_mut().zip(&acts.h_mid) {
                *v += h;
            }
        }
        ws.hf.resize(n * d, 0.0);
        layer_norm(&ws.h, d, p(self.slots.final_g), p(self.slots.final_b), &mut ws.final_ln, &mut ws.hf);
        ws.logits.resize(n * vocab, 0.0);
        matmul(n, d, vocab, &ws.hf, Layout::RowMajor, p(self.slots.head_w), Layout::RowMajor, &mut ws.logits);
        add_bias(&mut ws.logits, p(self.slots.head_b));
    }

    /// Member `m`'s backward pass from the mean cross-entropy's gradient (in `ws.dlogits`),
    /// after its [`TransformerEngine::forward`] on tokens `x`: every gradient into `grads`.
    fn backward(&mut self, k: usize, m: usize, params: &[&[f32]], x: &[f32], rows: usize, grads: &mut [&mut [f32]]) {
        let (d, heads, vocab) = (self.d, self.heads, self.vocab);
        let t = x.len() / rows;
        let n = rows * t;
        let p = |slot: usize| member(params[slot], k, m);
        let ws = &mut self.ws;
        let sl = self.slots;
        // The head, then the final LayerNorm: dh (the stream's gradient).
        matmul(d, n, vocab, &ws.hf, Layout::Transposed, &ws.dlogits, Layout::RowMajor, member_mut(grads[sl.head_w], k, m));
        column_sums(&ws.dlogits, vocab, member_mut(grads[sl.head_b], k, m));
        ws.dx.resize(n * d, 0.0);
        matmul(n, vocab, d, &ws.dlogits, Layout::RowMajor, p(sl.head_w), Layout::Transposed, &mut ws.dx);
        ws.dh.resize(n * d, 0.0);
        ws.dh.fill(0.0);
        gain_grad(&ws.dx, d, &ws.final_ln, member_mut(grads[sl.final_g], k, m));
        column_sums(&ws.dx, d, member_mut(grads[sl.final_b], k, m));
        layer_norm_backward(&ws.dx, d, p(sl.final_g), &ws.final_ln, &mut ws.dh);
        for (bs, acts) in self.blocks.iter().zip(ws.acts.iter()).rev() {
            // The MLP branch: h = h_mid + gelu(u)·W2 + b2.
            column_sums(&ws.dh, d, member_mut(grads[bs.b2], k, m));
            matmul(4 * d, n, d, &acts.gu, Layout::Transposed, &ws.dh, Layout::RowMajor, member_mut(grads[bs.w2], k, m));
            ws.dwide.resize(n * 4 * d, 0.0);
            matmul(n, d, 4 * d, &ws.dh, Layout::RowMajor, p(bs.w2), Layout::Transposed, &mut ws.dwide);
            simd_dispatch(&mut ActivationBackward { delta: &mut ws.dwide, h: &acts.gu, pre: Some(&acts.u), act: Activation::Gelu });
            column_sums(&ws.dwide, 4 * d, member_mut(grads[bs.b1], k, m));
            matmul(d, n, 4 * d, &acts.m, Layout::Transposed, &ws.dwide, Layout::RowMajor, member_mut(grads[bs.w1], k, m));
            matmul(n, 4 * d, d, &ws.dwide, Layout::RowMajor, p(bs.w1), Layout::Transposed, &mut ws.dx);
            // dh now reaches h_mid: straight through plus LayerNorm 2's branch.
            gain_grad(&ws.dx, d, &acts.ln2, member_mut(grads[bs.ln2_g], k, m));
            column_sums(&ws.dx, d, member_mut(grads[bs.ln2_b], k, m));
            layer_norm_backward(&ws.dx, d, p(bs.ln2_g), &acts.ln2, &mut ws.dh);
            // The attention branch: h_mid = h_in + y·W_out.
            matmul(d, n, d, &acts.y, Layout::Transposed, &ws.dh, Layout::RowMajor, member_mut(grads[bs.out], k, m));
            matmul(n, d, d, &ws.dh, Layout::RowMajor, p(bs.out), Layout::Transposed, &mut ws.dx);
            ws.dwide.resize(n * 3 * d, 0.0);
            attention_backward(&ws.dx, (rows, t, d, heads), acts, &mut ws.attn, &mut ws.dwide);
            matmul(d, n, 3 * d, &acts.a, Layout::Transposed, &ws.dwide, Layout::RowMajor, member_mut(grads[bs.qkv], k, m));
            matmul(n, 3 * d, d, &ws.dwide, Layout::RowMajor, p(bs.qkv), Layout::Transposed, &mut ws.dx);
            gain_grad(&ws.dx, d, &acts.ln1, member_mut(grads[bs.ln1_g], k, m));
            column_sums(&ws.dx, d, member_mut(grads[bs.ln1_b], k, m));
            layer_norm_backward(&ws.dx, d, p(bs.ln1_g), &acts.ln1, &mut ws.dh);
        }
        // The embeddings: each token's row, and each position summed over the windows.
        let g_tok = member_mut(grads[sl.tok], k, m);
        g_tok.fill(0.0);
        for (i, row) in ws.dh.chunks_exact(d).enumerate() {
            let id = x[i] as usize;
            for (g, &v) in g_tok[id * d..(id + 1) * d].iter_mut().zip(row) {
                *g += v;
            }
        }
        let g_pos = member_mut(grads[sl.pos], k, m);
        g_pos.fill(0.0);
        for (i, row) in ws.dh.chunks_exact(d).enumerate() {
            let s = i % t;
            for (g, &v) in g_pos[s * d..(s + 1) * d].iter_mut().zip(row) {
                *g += v;
            }
        }
    }
}

impl NativeNet for TransformerEngine {
    fn params(&self) -> &[ParamInfo] {
        &self.params
    }

    fn eval(&mut self, k: usize, who: &[bool], params: &[&[f32]], batch: &Batch<'_>) -> Vec<EvalSums> {
        let mut sums = vec![EvalSums::default(); k];
        for m in (0..k).filter(|&m| who[m]) {
            self.forward(k, m, params, batch.x, batch.rows);
            let (loss_sum, correct) = cross_entropy(&self.ws.logits, batch.y, self.vocab, None);
            sums[m] = EvalSums { loss_sum, items: batch.y.len() as u64, correct: Some(correct) };
        }
        sums
    }

    fn loss_and_grads(&mut self, k: usize, live: &[bool], params: &[&[f32]], batch: &Batch<'_>, grads: &mut [&mut [f32]]) -> Vec<f32> {
        let mut losses = vec![f32::NAN; k];
        for m in (0..k).filter(|&m| live[m]) {
            self.forward(k, m, params, batch.x, batch.rows);
            let mut dlogits = std::mem::take(&mut self.ws.dlogits);
            dlogits.resize(self.ws.logits.len(), 0.0);
            losses[m] = (cross_entropy(&self.ws.logits, batch.y, self.vocab, Some(&mut dlogits)).0 / batch.y.len() as f64) as f32;
            self.ws.dlogits = dlogits;
            self.backward(k, m, params, batch.x, batch.rows, grads);
        }
        losses
    }
}

/// LayerNorm of each `d`-wide row of `x` into `out` (`(x − mean)/√(var + ε)·g + b`, the
/// variance biased), saving what the backward pass needs in `norm`.
fn layer_norm(x: &[f32], d: usize, g: &[f32], b: &[f32], norm: &mut Norm, out: &mut [f32]) {
    norm.xhat.resize(x.len(), 0.0);
    norm.rstd.resize(x.len() / d, 0.0);
    for (((row, xh), o), rstd) in x.chunks_exact(d).zip(norm.xhat.chunks_exact_mut(d)).zip(out.chunks_exact_mut(d)).zip(norm.rstd.iter_mut()) {
        let mean = row.iter().sum::<f32>() / d as f32;
        let var = row.iter().map(|&v| (v - mean) * (v - mean)).sum::<f32>() / d as f32;
        *rstd = 1.0 / (var + LN_EPS).sqrt();
        for ((xh, o), (&v, (&g, &b))) in xh.iter_mut().zip(o.iter_mut()).zip(row.iter().zip(g.iter().zip(b))) {
            *xh = (v - mean) * *rstd;
            *o = *xh * g + b;
        }
    }
}

/// The gradient of a LayerNorm's gain from its output's gradient `dy`: `Σ_rows dy ⊙ x̂` (the
/// bias's is the column sums of `dy`).
fn gain_grad(dy: &[f32], d: usize, norm: &Norm, dg: &mut [f32]) {
    dg.fill(0.0);
    for (row, xh) in dy.chunks_exact(d).zip(norm.xhat.chunks_exact(d)) {
        for ((s, &v), &x) in dg.iter_mut().zip(row).zip(xh) {
            *s += v * x;
        }
    }
}

/// LayerNorm's backward pass to its input: from the output's gradient `dy` and the gain `g`,
/// `rstd·(dx̂ − mean(dx̂) − x̂·mean(dx̂·x̂))` with `dx̂ = dy·g`, *added* to `dx`.
fn layer_norm_backward(dy: &[f32], d: usize, g: &[f32], norm: &Norm, dx: &mut [f32]) {
    for (((row, xh), out), &rstd) in dy.chunks_exact(d).zip(norm.xhat.chunks_exact(d)).zip(dx.chunks_exact_mut(d)).zip(&norm.rstd) {
        let (mut mean_d, mut mean_dx) = (0f32, 0f32);
        for ((&v, &gv), &x) in row.iter().zip(g).zip(xh) {
            mean_d += v * gv;
            mean_dx += v * gv * x;
        }
        mean_d /= d as f32;
        mean_dx /= d as f32;
        for ((o, (&v, &gv)), &x) in out.iter_mut().zip(row.iter().zip(g)).zip(xh) {
            *o += rstd * (v * gv - mean_d - x * mean_dx);
        }
    }
}

/// Causal multi-head attention of the qkv product `qkv` (`[n][3d]`: queries, keys, values,
/// head-major within each) for `(rows, t, d, heads)`: gathers `q`, `k`, `v` per (window,
/// head), the weights `p` and the concatenated heads' outputs `y`.
fn attention_forward(qkv: &[f32], (rows, t, d, heads): (usize, usize, usize, usize), acts: &mut BlockActs, scratch: &mut AttnScratch) {
    let dh = d / heads;
    let scale = 1.0 / (dh as f32).sqrt();
    let blk = t * dh;
    for buf in [&mut acts.q, &mut acts.k, &mut acts.v] {
        buf.resize(rows * heads * blk, 0.0);
    }
    acts.p.resize(rows * heads * t * t, 0.0);
    acts.y.resize(rows * t * d, 0.0);
    for r in 0..rows {
        for hd in 0..heads {
            let at = (r * heads + hd) * blk;
            for s in 0..t {
                let src = &qkv[(r * t + s) * 3 * d..][..3 * d];
                acts.q[at + s * dh..][..dh].copy_from_slice(&src[hd * dh..(hd + 1) * dh]);
                acts.k[at + s * dh..][..dh].copy_from_slice(&src[d + hd * dh..d + (hd + 1) * dh]);
                acts.v[at + s * dh..][..dh].copy_from_slice(&src[2 * d + hd * dh..2 * d + (hd + 1) * dh]);
            }
            let (q, kk, v) = (&acts.q[at..at + blk], &acts.k[at..at + blk], &acts.v[at..at + blk]);
            let p = &mut acts.p[(r * heads + hd) * t * t..][..t * t];
            // Scores Q·Kᵀ, then each query's softmax over the keys up to it.
            matmul(t, dh, t, q, Layout::RowMajor, kk, Layout::Transposed, p);
            simd_dispatch(&mut CausalSoftmax { p, t, scale });
            // Y = P·V, into the head's columns of y.
            scratch.y.resize(blk, 0.0);
            matmul(t, t, dh, p, Layout::RowMajor, v, Layout::RowMajor, &mut scratch.y);
            for s in 0..t {
                acts.y[(r * t + s) * d + hd * dh..][..dh].copy_from_slice(&scratch.y[s * dh..(s + 1) * dh]);
            }
        }
    }
}

/// Attention's backward pass: from the gradient of the heads' concatenated outputs `dy`
/// (`[n][d]`), the gradient of the qkv product's output into `dqkv` (`[n][3d]`).
fn attention_backward(dy: &[f32], (rows, t, d, heads): (usize, usize, usize, usize), acts: &BlockActs, ws: &mut AttnScratch, dqkv: &mut [f32]) {
    let dh = d / heads;
    let scale = 1.0 / (dh as f32).sqrt();
    let blk = t * dh;
    ws.dq.resize(blk, 0.0);
    ws.dk.resize(blk, 0.0);
    ws.dv.resize(blk, 0.0);
    ws.dp.resize(t * t, 0.0);
    ws.dy.resize(blk, 0.0);
    let dyh = &mut ws.dy;
    for r in 0..rows {
        for hd in 0..heads {
            let at = (r * heads + hd) * blk;
            let (q, kk, v) = (&acts.q[at..at + blk], &acts.k[at..at + blk], &acts.v[at..at + blk]);
            let p = &acts.p[(r * heads + hd) * t * t..][..t * t];
            for s in 0..t {
                dyh[s * dh..(s + 1) * dh].copy_from_slice(&dy[(r * t + s) * d + hd * dh..][..dh]);
            }
            // dV = Pᵀ·dY; dP = dY·Vᵀ; dS = P ⊙ (dP − Σ_j dP·P) · scale.
            matmul(t, t, dh, p, Layout::Transposed, dyh, Layout::RowMajor, &mut ws.dv);
            matmul(t, dh, t, dyh, Layout::RowMajor, v, Layout::Transposed, &mut ws.dp);
            for (prow, dprow) in p.chunks_exact(t).zip(ws.dp.chunks_exact_mut(t)) {
                let dot: f32 = prow.iter().zip(dprow.iter()).map(|(&a, &b)| a * b).sum();
                for (g, &pv) in dprow.iter_mut().zip(prow) {
                    *g = pv * (*g - dot) * scale;
                }
            }
            // dQ = dS·K; dK = dSᵀ·Q.
            matmul(t, t, dh, &ws.dp, Layout::RowMajor, kk, Layout::RowMajor, &mut ws.dq);
            matmul(t, t, dh, &ws.dp, Layout::Transposed, q, Layout::RowMajor, &mut ws.dk);
            for s in 0..t {
                let dst = &mut dqkv[(r * t + s) * 3 * d..][..3 * d];
                dst[hd * dh..(hd + 1) * dh].copy_from_slice(&ws.dq[s * dh..(s + 1) * dh]);
                dst[d + hd * dh..d + (hd + 1) * dh].copy_from_slice(&ws.dk[s * dh..(s + 1) * dh]);
                dst[2 * d + hd * dh..2 * d + (hd + 1) * dh].copy_from_slice(&ws.dv[s * dh..(s + 1) * dh]);
            }
        }
    }
}

/// Scores `p` (`[t][t]`, unscaled) → attention weights in place: query `s`'s softmax of the
/// scaled scores of keys `0..=s`, zeros after.
struct CausalSoftmax<'a> {
    p: &'a mut [f32],
    t: usize,
    scale: f32,
}

impl Kernel for CausalSoftmax<'_> {
    #[inline(always)]
    fn run(&mut self) {
        let scale = self.scale;
        for (s, row) in self.p.chunks_exact_mut(self.t).enumerate() {
            let (live, masked) = row.split_at_mut(s + 1);
            let max = live.iter().fold(f32::NEG_INFINITY, |a, &v| a.max(v * scale));
            let mut sum = 0f32;
            for v in live.iter_mut() {
                *v = exp(*v * scale - max);
                sum += *v;
            }
            let inv = 1.0 / sum;
            live.iter_mut().for_each(|v| *v *= inv);
            masked.fill(0.0);
        }
    }
}
