//! Byte-level LSTM language models (`models::lstm`) on host buffers: the embedding, stacked
//! LSTM layers unrolled over the window, the linear head on every position and the next-byte
//! cross-entropy, forward and backward (through time), for a population of K members (the
//! seam and its member rules: [`crate::native`]).
//!
//! Sequences are stored time-major, `[t][rows][width]`, so a time step's rows are one
//! contiguous matrix. Each layer's input contribution to every gate of every step is one
//! product (`[t·rows, hidden] · W_in`) before the recurrence; each step then adds its
//! recurrent product (`h_{s−1} · W_rec`, `[rows, hidden] · [hidden, 4·hidden]`) and runs one
//! fused pass of gate nonlinearities and the cell update. The backward pass mirrors it: a fused
//! cell pass and one recurrent product per step, then the weight gradients as two products over
//! all steps. Members run one at a time in one member's buffers.
//!
//! The math is candle's model's: gates in the order input, forget, cell, output; the forget
//! gate's pre-activation +1; `c = f·c + i·g`, `h = o·tanh(c)`; a loss that is the mean over
//! every predicted token. Sigmoid and tanh are the engine's own (a few ulps from exact), and
//! the sums run in other orders, so values agree with candle's to rounding, not bit for bit.

use crate::dense::{add_bias, cross_entropy, exp, tanh};
use crate::models::lstm::LstmLm;
use crate::models::{EvalSums, Model};
use crate::native::{column_sums, Batch, NativeNet};
use beatmatch_core::matmul::{matmul, Layout};
use beatmatch_core::optimizer::{member, member_mut};
use beatmatch_core::simd::{simd_dispatch, Kernel};
use beatmatch_core::ParamInfo;

/// The native engine's LSTM language model: the geometry of [`LstmLm`] and reused buffers.
pub struct LstmEngine {
    params: Vec<ParamInfo>,
    vocab: usize,
    hidden: usize,
    layers: usize,
    ws: Workspace,
}

/// One member's buffers, reused across steps. Sequences are `[t][rows][…]`.
#[derive(Default)]
struct Workspace {
    /// `seq[l]` is layer `l`'s input (`seq[0]` the embeddings), `seq[layers]` the last
    /// layer's output: `[t][rows][hidden]`.
    seq: Vec<Vec<f32>>,
    /// Per layer, the gates after their nonlinearities, `[t][rows][4·hidden]` (i, f, g, o).
    gates: Vec<Vec<f32>>,
    /// Per layer, the cell states `[t][rows][hidden]`.
    cells: Vec<Vec<f32>>,
    /// A step's recurrent product `[rows][4·hidden]`.
    rec: Vec<f32>,
    /// The cell state before the first step: `[rows][hidden]` zeros.
    zeros: Vec<f32>,
    /// Bias with the forget gate's +1, `[4·hidden]`.
    bias: Vec<f32>,
    /// The targets, time-major `[t][rows]`.
    targets: Vec<u32>,
    logits: Vec<f32>,
    /// Gradients: of the logits, of a layer's output sequence, of its gates' pre-activations
    /// (`[t][rows][4·hidden]`), and of the hidden and cell state flowing back a step.
    dlogits: Vec<f32>,
    dseq: Vec<f32>,
    dz: Vec<f32>,
    dh: Vec<f32>,
    dc: Vec<f32>,
}

impl LstmEngine {
    /// The engine of `net` (its geometry and parameter order).
    pub fn new(net: &LstmLm) -> Self {
        let (vocab, hidden, layers) = net.dims();
        Self { params: net.params().to_vec(), vocab, hidden, layers, ws: Workspace::default() }
    }

    /// The batch's targets `y` (`[rows][t]`) time-major into `ws.targets`, the logits' order:
    /// the same for every member.
    fn prepare(&mut self, y: &[u32], rows: usize) {
        let t = y.len() / rows;
        self.ws.targets.resize(t * rows, 0);
        for s in 0..t {
            for b in 0..rows {
                self.ws.targets[s * rows + b] = y[b * t + s];
            }
        }
    }

    /// Member `m`'s forward pass on `rows` windows of tokens `x` (`[rows][t]`, ids as floats):
    /// fills the sequences, gates, cells and the logits (`[t][rows][vocab]`, the order of
    /// [`LstmEngine::prepare`]'s targets).
    fn forward(&mut self, k: usize, m: usize, params: &[&[f32]], x: &[f32], rows: usize) {
        let (hd, layers) = (self.hidden, self.layers);
        let t = x.len() / rows;
        let ws = &mut self.ws;
        ws.seq.resize_with(layers + 1, Vec::new);
        ws.gates.resize_with(layers, Vec::new);
        ws.cells.resize_with(layers, Vec::new);
        let embed = member(params[0], k, m);
        let seq0 = &mut ws.seq[0];
        seq0.resize(t * rows * hd, 0.0);
        for s in 0..t {
            for b in 0..rows {
                let tok = x[b * t + s] as usize;
                seq0[(s * rows + b) * hd..][..hd].copy_from_slice(&embed[tok * hd..(tok + 1) * hd]);
            }
        }
        for l in 0..layers {
            let w = member(params[4 + 2 * l], k, m);
            let (w_in, w_rec) = w.split_at(hd * 4 * hd);
            ws.bias.clear();
            ws.bias.extend(member(params[3 + 2 * l], k, m).iter().enumerate().map(|(j, &b)| if (hd..2 * hd).contains(&j) { b + 1.0 } else { b }));
            let (below, above) = ws.seq.split_at_mut(l + 1);
            let (input, out) = (&below[l], &mut above[0]);
            let gates = &mut ws.gates[l];
            gates.resize(t * rows * 4 * hd, 0.0);
            matmul(t * rows, hd, 4 * hd, input, Layout::RowMajor, w_in, Layout::RowMajor, gates);
            let cells = &mut ws.cells[l];
            cells.resize(t * rows * hd, 0.0);
            out.resize(t * rows * hd, 0.0);
            ws.rec.resize(rows * 4 * hd, 0.0);
            let step = rows * hd;
            ws.zeros.resize(step, 0.0);
            for s in 0..t {
                let (h_prev, h) = out.split_at_mut(s * step);
                let (c_prev, c) = cells.split_at_mut(s * step);
                let first = s == 0;
                if !first {
                    matmul(rows, hd, 4 * hd, &h_prev[(s - 1) * step..], Layout::RowMajor, w_rec, Layout::RowMajor, &mut ws.rec);
                }
                simd_dispatch(&mut CellForward {
                    z: &mut gates[s * 4 * step..(s + 1) * 4 * step],
                    rec: (!first).then_some(&ws.rec[..]),
                    bias: &ws.bias,
                    c_prev: if first { &ws.zeros } else { &c_prev[(s - 1) * step..] },
                    c: &mut c[..step],
                    h: &mut h[..step],
                    hidden: hd,
                });
            }
        }
        ws.logits.resize(t * rows * self.vocab, 0.0);
        matmul(t * rows, hd, self.vocab, &ws.seq[layers], Layout::RowMajor, member(params[2], k, m), Layout::RowMajor, &mut ws.logits);
        add_bias(&mut ws.logits, member(params[1], k, m));
    }

    /// Member `m`'s backward pass from the mean cross-entropy's gradient (in `ws.dlogits`),
    /// after its [`LstmEngine::forward`] on tokens `x`: every gradient into `grads`.
    fn backward(&mut self, k: usize, m: usize, params: &[&[f32]], x: &[f32], rows: usize, grads: &mut [&mut [f32]]) {
        let (hd, layers, vocab) = (self.hidden, self.layers, self.vocab);
        let t = x.len() / rows;
        let n = t * rows;
        let ws = &mut self.ws;
        // The head: dW = seqᵀ·δ, db = Σ δ, δseq = δ·Wᵀ.
        matmul(hd, n, vocab, &ws.seq[layers], Layout::Transposed, &ws.dlogits, Layout::RowMajor, member_mut(grads[2], k, m));
        column_sums(&ws.dlogits, vocab, member_mut(grads[1], k, m));
        ws.dseq.resize(n * hd, 0.0);
        matmul(n, vocab, hd, &ws.dlogits, Layout::RowMajor, member(params[2], k, m), Layout::Transposed, &mut ws.dseq);
        let step = rows * hd;
        for l in (0..layers).rev() {
            let w = member(params[4 + 2 * l], k, m);
            let (w_in, w_rec) = w.split_at(hd * 4 * hd);
            ws.dz.resize(n * 4 * hd, 0.0);
            ws.dh.clear();
            ws.dh.resize(step, 0.0);
            ws.dc.clear();
            ws.dc.resize(step, 0.0);
            let (gates, cells) = (&ws.gates[l], &ws.cells[l]);
            for s in (0..t).rev() {
                simd_dispatch(&mut CellBackward {
                    dz: &mut ws.dz[s * 4 * step..(s + 1) * 4 * step],
                    dout: &ws.dseq[s * step..(s + 1) * step],
                    dh: &ws.dh,
                    dc: &mut ws.dc,
                    gates: &gates[s * 4 * step..(s + 1) * 4 * step],
                    c: &cells[s * step..(s + 1) * step],
                    c_prev: if s > 0 { &cells[(s - 1) * step..s * step] } else { &ws.zeros },
                    hidden: hd,
                });
                if s > 0 {
                    matmul(rows, 4 * hd, hd, &ws.dz[s * 4 * step..(s + 1) * 4 * step], Layout::RowMajor, w_rec, Layout::Transposed, &mut ws.dh);
                }
            }
            let gw = member_mut(grads[4 + 2 * l], k, m);
            let (gw_in, gw_rec) = gw.split_at_mut(hd * 4 * hd);
            matmul(hd, n, 4 * hd, &ws.seq[l], Layout::Transposed, &ws.dz, Layout::RowMajor, gw_in);
            if t > 1 {
                // Step s's recurrent input is the output of step s − 1.
                matmul(hd, n - rows, 4 * hd, &ws.seq[l + 1][..(n - rows) * hd], Layout::Transposed, &ws.dz[rows * 4 * hd..], Layout::RowMajor, gw_rec);
            } else {
                gw_rec.fill(0.0);
            }
            column_sums(&ws.dz, 4 * hd, member_mut(grads[3 + 2 * l], k, m));
            matmul(n, 4 * hd, hd, &ws.dz, Layout::RowMajor, w_in, Layout::Transposed, &mut ws.dseq);
        }
        // The embedding: each position's gradient onto its token's row, in (step, row) order.
        let g = member_mut(grads[0], k, m);
        g.fill(0.0);
        for s in 0..t {
            for b in 0..rows {
                let tok = x[b * t + s] as usize;
                for (gv, &d) in g[tok * hd..(tok + 1) * hd].iter_mut().zip(&ws.dseq[(s * rows + b) * hd..][..hd]) {
                    *gv += d;
                }
            }
        }
    }
}

impl NativeNet for LstmEngine {
    fn params(&self) -> &[ParamInfo] {
        &self.params
    }

    fn eval(&mut self, k: usize, who: &[bool], params: &[&[f32]], batch: &Batch<'_>) -> Vec<EvalSums> {
        let mut sums = vec![EvalSums::default(); k];
        self.prepare(batch.y, batch.rows);
        for m in (0..k).filter(|&m| who[m]) {
            self.forward(k, m, params, batch.x, batch.rows);
            let (loss_sum, correct) = cross_entropy(&self.ws.logits, &self.ws.targets, self.vocab, None);
            sums[m] = EvalSums { loss_sum, items: self.ws.targets.len() as u64, correct: Some(correct) };
        }
        sums
    }

    fn loss_and_grads(&mut self, k: usize, live: &[bool], params: &[&[f32]], batch: &Batch<'_>, grads: &mut [&mut [f32]]) -> Vec<f32> {
        let mut losses = vec![f32::NAN; k];
        self.prepare(batch.y, batch.rows);
        for m in (0..k).filter(|&m| live[m]) {
            self.forward(k, m, params, batch.x, batch.rows);
            let mut dlogits = std::mem::take(&mut self.ws.dlogits);
            dlogits.resize(self.ws.logits.len(), 0.0);
            let tokens = self.ws.targets.len();
            losses[m] = (cross_entropy(&self.ws.logits, &self.ws.targets, self.vocab, Some(&mut dlogits)).0 / tokens as f64) as f32;
            self.ws.dlogits = dlogits;
            self.backward(k, m, params, batch.x, batch.rows, grads);
        }
        losses
    }
}

/// σ(x) = 1 / (1 + e^−x), vectorisable.
#[inline(always)]
fn sigmoid(x: f32) -> f32 {
    1.0 / (1.0 + exp(-x))
}

/// One step of a layer, rows × hidden at once: the gates' pre-activations `z` (the input
/// product, plus `rec` after the first step, plus the bias) become the gates `(i, f, g, o)` in
/// place; `c = f·c_prev + i·g` (`c_prev` zeros at the first step) and `h = o·tanh(c)`.
struct CellForward<'a> {
    z: &'a mut [f32],
    rec: Option<&'a [f32]>,
    bias: &'a [f32],
    c_prev: &'a [f32],
    c: &'a mut [f32],
    h: &'a mut [f32],
    hidden: usize,
}

impl Kernel for CellForward<'_> {
    /// Row by row; within a row every loop runs over equal-length slices, so it is vector code.
    #[inline(always)]
    fn run(&mut self) {
        let hd = self.hidden;
        for (r, z) in self.z.chunks_exact_mut(4 * hd).enumerate() {
            if let Some(rec) = self.rec {
                for (v, &p) in z.iter_mut().zip(&rec[r * 4 * hd..(r + 1) * 4 * hd]) {
                    *v += p;
                }
            }
            for (v, &b) in z.iter_mut().zip(self.bias) {
                *v += b;
            }
            let (zi, rest) = z.split_at_mut(hd);
            let (zf, rest) = rest.split_at_mut(hd);
            let (zg, zo) = rest.split_at_mut(hd);
            let cp = &self.c_prev[r * hd..(r + 1) * hd];
            let c = &mut self.c[r * hd..(r + 1) * hd];
            let h = &mut self.h[r * hd..(r + 1) * hd];
            for j in 0..hd {
                let (i, f, g, o) = (sigmoid(zi[j]), sigmoid(zf[j]), tanh(zg[j]), sigmoid(zo[j]));
                let cv = f * cp[j] + i * g;
                (zi[j], zf[j], zg[j], zo[j]) = (i, f, g, o);
                c[j] = cv;
                h[j] = o * tanh(cv);
            }
        }
    }
}

/// One step back through a layer: from the gradient reaching the step's output (`dout`, from
/// above, plus `dh`, from the next step) and the cell's (`dc`, from the next step; updated to
/// what flows to the previous step), the gates' pre-activations' gradients `dz`.
struct CellBackward<'a> {
    dz: &'a mut [f32],
    dout: &'a [f32],
    dh: &'a [f32],
    dc: &'a mut [f32],
    gates: &'a [f32],
    c: &'a [f32],
    c_prev: &'a [f32],
    hidden: usize,
}

impl Kernel for CellBackward<'_> {
    #[inline(always)]
    fn run(&mut self) {
        let hd = self.hidden;
        for (r, dz) in self.dz.chunks_exact_mut(4 * hd).enumerate() {
            let row = r * hd..(r + 1) * hd;
            let gate = &self.gates[r * 4 * hd..(r + 1) * 4 * hd];
            let (i, rest) = gate.split_at(hd);
            let (f, rest) = rest.split_at(hd);
            let (g, o) = rest.split_at(hd);
            let (dzi, rest) = dz.split_at_mut(hd);
            let (dzf, rest) = rest.split_at_mut(hd);
            let (dzg, dzo) = rest.split_at_mut(hd);
            let (dout, dh, c, cp) = (&self.dout[row.clone()], &self.dh[row.clone()], &self.c[row.clone()], &self.c_prev[row.clone()]);
            let dcs = &mut self.dc[row];
            for j in 0..hd {
                let dh = dout[j] + dh[j];
                let tc = tanh(c[j]);
                let dc = dcs[j] + dh * o[j] * (1.0 - tc * tc);
                dzi[j] = dc * g[j] * i[j] * (1.0 - i[j]);
                dzf[j] = dc * cp[j] * f[j] * (1.0 - f[j]);
                dzg[j] = dc * i[j] * (1.0 - g[j] * g[j]);
                dzo[j] = dh * tc * o[j] * (1.0 - o[j]);
                dcs[j] = dc * f[j];
            }
        }
    }
}
