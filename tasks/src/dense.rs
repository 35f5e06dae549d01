//! Dense networks — logistic regression, MLPs and MLP autoencoders — with their forward and
//! backward passes written out on host buffers, for a population of K members at once.
//!
//! Why not candle here: these models are a few small matrix products and elementwise ops, and
//! through candle each op allocates a tensor and runs a scalar loop (tanh alone was 2.8× a
//! ReLU network's whole step). Here every matrix product is one call of `core::matmul` (the
//! `gemm` crate, single-threaded, AVX-512 or AVX2 picked at run time; an output layer's narrow
//! products take `core::matmul`'s own kernel, to the same bits), every elementwise pass is one
//! fused, vectorised loop (`core::simd`: AVX-512F, AVX2 or baseline, the same bits on each:
//! Rust never contracts into FMAs), and no buffer is allocated after the first step (a step
//! allocates only short lists: the members' losses, and the member slices of a product side by
//! side).
//!
//! **Members.** Parameters and gradients are member-major buffers (`K × numel` per tensor),
//! activations `[K][batch][width]`. All members see the same input batch, so where the first
//! layer is narrow (logistic regression's 10 classes, MLPs of up to 16 units: the widths
//! where it pays, [`beatmatch_core::matmul::SIDE_BY_SIDE_WIDEST`]) its forward product and its
//! weight gradient are one product over every member's weights (or deltas) side by side, cut
//! where the `gemm` crate would otherwise sum a member's values in another order
//! ([`beatmatch_core::matmul::side_by_side`]). Every other product is one per member, and a
//! member's arithmetic never reads another member's values, so a member computes exactly the
//! same bits in a population of 1, 3 or 30. Members not `live` are skipped (a diverged member
//! costs nothing after it diverged).
//!
//! The math is the candle models' (`models::mlp`, `models::autoencoder`): `h = act(x·W + b)`,
//! linear output, mean cross-entropy or mean squared reconstruction error; `tanh`, `exp` and
//! `erf` are polynomial approximations accurate to a few float32 ulps (tested against f64).

use crate::models::{Activation, EvalSums, ModelConfig, Objective};

/// A dense network's layer widths as a family gives them ([`crate::models::Family::dense`]):
/// the hidden widths, the output width, the hidden activation and the objective.
#[derive(Clone, Debug, PartialEq)]
pub struct DenseShape {
    /// Hidden layer widths, input side first.
    pub hidden: Vec<usize>,
    /// Output units.
    pub out: usize,
    /// Hidden activation.
    pub activation: Activation,
    /// What the output is trained to minimise.
    pub objective: Objective,
}

impl DenseShape {
    /// A classifier: `hidden` layers then `classes` logits.
    pub fn classifier(hidden: Vec<usize>, classes: usize, activation: Activation) -> Self {
        Self { hidden, out: classes, activation, objective: Objective::Classify }
    }
}
use beatmatch_core::matmul::{matmul, Layout, Product, Rows, SideBySide};
use beatmatch_core::simd::{simd_dispatch, Avx2, Kernel};
use beatmatch_core::ParamInfo;

/// A dense network's shape: layer widths `[input, hidden…, output]`.
#[derive(Clone, Debug, PartialEq)]
pub struct DenseNet {
    dims: Vec<usize>,
    activation: Activation,
    objective: Objective,
    params: Vec<ParamInfo>,
}

pub use crate::native::Batch;
use crate::native::{column_sums, NativeNet};

/// Reused buffers of one population's steps (no allocation after the first).
#[derive(Default, Clone, Debug)]
pub struct Workspace {
    /// Per layer, the layer's output `[K][rows][width]` (after the activation, logits last).
    out: Vec<Vec<f32>>,
    /// Per hidden layer, its pre-activation (GELU's backward needs it).
    pre: Vec<Vec<f32>>,
    /// Backward deltas, `[rows][width]` of one member.
    delta: Vec<f32>,
    delta_prev: Vec<f32>,
    /// The first layer's deltas `[K][rows][width]`, for its weight gradients side by side.
    delta_first: Vec<f32>,
    /// The first layer's products, side by side over members.
    side: SideBySide,
}

impl DenseNet {
    /// The dense network `config` builds for inputs of `input` values and `classes` outputs, or
    /// `None` for the families candle trains.
    pub fn for_config(config: &ModelConfig, input: usize, classes: usize) -> Option<Self> {
        Some(Self::new(input, config.dense(input, classes)?))
    }

    /// The dense network of `shape` for inputs of `input` values.
    pub fn new(input: usize, shape: DenseShape) -> Self {
        let DenseShape { hidden, out, activation, objective } = shape;
        let mut dims = vec![input];
        dims.extend(hidden);
        dims.push(out);
        // The candle models' parameters, in the same canonical order (`layer{i}/b`, `layer{i}/w`).
        let params = crate::models::Model::params(&crate::models::mlp::Mlp::new(input, &dims[1..dims.len() - 1], out, activation)).to_vec();
        Self { dims, activation, objective, params }
    }

    /// Parameter tensors in canonical order (of one member).
    pub fn params(&self) -> &[ParamInfo] {
        &self.params
    }

    /// Layers.
    fn layers(&self) -> usize {
        self.dims.len() - 1
    }

    /// Forward pass of every live member on `batch`; fills `ws.out` (and `ws.pre`).
    pub fn forward(&self, k: usize, live: &[bool], params: &[&[f32]], batch: &Batch<'_>, ws: &mut Workspace) {
        let rows = batch.rows;
        let layers = self.layers();
        ws.out.resize_with(layers, Vec::new);
        ws.pre.resize_with(layers, Vec::new);
        for l in 0..layers {
            let (fan_in, fan_out) = (self.dims[l], self.dims[l + 1]);
            let (b_all, w_all) = (params[2 * l], params[2 * l + 1]);
            let (before, rest) = ws.out.split_at_mut(l);
            let out = &mut rest[0];
            out.resize(k * rows * fan_out, 0.0);
            let hidden = l + 1 < layers;
            let keep_pre = hidden && self.activation == Activation::Gelu;
            if keep_pre {
                ws.pre[l].resize(2 * k * rows * fan_out, 0.0);
            }
            // Every member reads the same batch: where it pays, one product over the members'
            // weights side by side, which the bias pass gathers from.
            let product = Product::new(rows, fan_in, fan_out);
            let side_by_side = l == 0 && product.side_by_side_pays(live.iter().filter(|&&l| l).count());
            if side_by_side {
                product.shared_left(batch.x, &members(w_all, fan_in * fan_out, live), &mut ws.side);
            }
            for (i, m) in (0..k).filter(|&m| live[m]).enumerate() {
                let o = &mut out[m * rows * fan_out..(m + 1) * rows * fan_out];
                let src = if side_by_side {
                    Some(ws.side.member(i))
                } else {
                    let input = if l == 0 { batch.x } else { &before[l - 1][m * rows * fan_in..(m + 1) * rows * fan_in] };
                    let w = &w_all[m * fan_in * fan_out..(m + 1) * fan_in * fan_out];
                    matmul(rows, fan_in, fan_out, input, Layout::RowMajor, w, Layout::RowMajor, o);
                    None
                };
                let b = &b_all[m * fan_out..(m + 1) * fan_out];
                let act = if hidden { Some(self.activation) } else { None };
                let pre = if keep_pre { Some(&mut ws.pre[l][2 * m * rows * fan_out..2 * (m + 1) * rows * fan_out]) } else { None };
                simd_dispatch(&mut BiasActivate { out: o, src, bias: b, act, pre });
            }
        }
    }

    /// Mean loss of member `m` after [`DenseNet::forward`] (nats, or squared error).
    pub fn loss(&self, m: usize, batch: &Batch<'_>, ws: &Workspace) -> f32 {
        self.sums(m, batch, ws).mean_loss()
    }

    /// Summed loss (and correct predictions) of member `m` after [`DenseNet::forward`], as
    /// `models::evaluate` reports them.
    pub fn sums(&self, m: usize, batch: &Batch<'_>, ws: &Workspace) -> EvalSums {
        let rows = batch.rows;
        let out_dim = self.dims[self.layers()];
        let out = &ws.out[self.layers() - 1][m * rows * out_dim..(m + 1) * rows * out_dim];
        match self.objective {
            Objective::Classify => {
                let (loss_sum, correct) = cross_entropy(out, batch.y, out_dim, None);
                EvalSums { loss_sum, items: rows as u64, correct: Some(correct) }
            }
            Objective::Reconstruct => {
                // Per example, the mean over its values; summed over examples.
                let mut loss_sum = 0f64;
                for r in 0..rows {
                    let (o, x) = (&out[r * out_dim..(r + 1) * out_dim], &batch.x[r * out_dim..(r + 1) * out_dim]);
                    let s: f32 = o.iter().zip(x).map(|(a, b)| (a - b) * (a - b)).sum();
                    loss_sum += f64::from(s / out_dim as f32);
                }
                EvalSums { loss_sum, items: rows as u64, correct: None }
            }
            Objective::NextToken => unreachable!("dense networks are not language models"),
        }
    }

    /// Mean mini-batch loss and gradients (into `grads`, member-major like `params`) of every
    /// live member; returns the losses (NaN for members not live).
    pub fn loss_and_grads(&self, k: usize, live: &[bool], params: &[&[f32]], batch: &Batch<'_>, grads: &mut [&mut [f32]], ws: &mut Workspace) -> Vec<f32> {
        self.forward(k, live, params, batch, ws);
        let rows = batch.rows;
        let layers = self.layers();
        let mut losses = vec![f32::NAN; k];
        let first = Product::transposed_times(self.dims[0], rows, self.dims[1]);
        let first_side_by_side = first.side_by_side_pays(live.iter().filter(|&&l| l).count());
        for m in (0..k).filter(|&m| live[m]) {
            let out_dim = self.dims[layers];
            ws.delta.resize(rows * out_dim, 0.0);
            let out = &ws.out[layers - 1][m * rows * out_dim..(m + 1) * rows * out_dim];
            losses[m] = match self.objective {
                Objective::Classify => (cross_entropy(out, batch.y, out_dim, Some(&mut ws.delta)).0 / rows as f64) as f32,
                Objective::Reconstruct => {
                    let n = (rows * out_dim) as f32;
                    let mut sum = 0f32;
                    for ((d, &o), &x) in ws.delta.iter_mut().zip(out).zip(batch.x) {
                        let e = o - x;
                        sum += e * e;
                        *d = 2.0 * e / n;
                    }
                    sum / n
                }
                Objective::NextToken => unreachable!(),
            };
            for l in (0..layers).rev() {
                let (fan_in, fan_out) = (self.dims[l], self.dims[l + 1]);
                let input: &[f32] = if l == 0 { batch.x } else { &ws.out[l - 1][m * rows * fan_in..(m + 1) * rows * fan_in] };
                let (gb_all, gw_all) = {
                    let (a, b) = grads.split_at_mut(2 * l + 1);
                    (&mut a[2 * l], &mut b[0])
                };
                // db = Σ_rows δ
                column_sums(&ws.delta[..rows * fan_out], fan_out, &mut gb_all[m * fan_out..(m + 1) * fan_out]);
                if l == 0 && first_side_by_side {
                    // The first layer's dW, every member's at once below.
                    ws.delta_first.resize(k * rows * fan_out, 0.0);
                    ws.delta_first[m * rows * fan_out..(m + 1) * rows * fan_out].copy_from_slice(&ws.delta[..rows * fan_out]);
                    break;
                }
                // dW = inputᵀ · δ
                let gw = &mut gw_all[m * fan_in * fan_out..(m + 1) * fan_in * fan_out];
                matmul(fan_in, rows, fan_out, input, Layout::Transposed, &ws.delta, Layout::RowMajor, gw);
                if l == 0 {
                    break;
                }
                // δ_prev = (δ · Wᵀ) ⊙ act'(z)
                let w = &params[2 * l + 1][m * fan_in * fan_out..(m + 1) * fan_in * fan_out];
                ws.delta_prev.resize(rows * fan_in, 0.0);
                matmul(rows, fan_out, fan_in, &ws.delta, Layout::RowMajor, w, Layout::Transposed, &mut ws.delta_prev);
                let h = &ws.out[l - 1][m * rows * fan_in..(m + 1) * rows * fan_in];
                let pre = (self.activation == Activation::Gelu).then(|| &ws.pre[l - 1][2 * m * rows * fan_in..2 * (m + 1) * rows * fan_in]);
                simd_dispatch(&mut ActivationBackward { delta: &mut ws.delta_prev, h, pre, act: self.activation });
                std::mem::swap(&mut ws.delta, &mut ws.delta_prev);
            }
        }
        if first_side_by_side {
            // dW of the first layer = xᵀ · δ, with the members' δ side by side.
            first.shared_left(batch.x, &members(&ws.delta_first, rows * self.dims[1], live), &mut ws.side);
            for (i, gw) in members_mut(grads[1], first.m * first.n, live).into_iter().enumerate() {
                ws.side.copy_member(i, gw);
            }
        }
        losses
    }
}

/// The `live` members' blocks of a member-major buffer (`size` values each).
fn members<'a>(buf: &'a [f32], size: usize, live: &[bool]) -> Vec<&'a [f32]> {
    buf.chunks_exact(size).zip(live).filter(|&(_, &l)| l).map(|(b, _)| b).collect()
}

/// [`members`], mutable.
fn members_mut<'a>(buf: &'a mut [f32], size: usize, live: &[bool]) -> Vec<&'a mut [f32]> {
    buf.chunks_exact_mut(size).zip(live).filter(|&(_, &l)| l).map(|(b, _)| b).collect()
}

pub use beatmatch_core::matmul::sgemm;

/// A [`DenseNet`] with its reused buffers: the native engine's dense networks.
pub struct DenseEngine {
    net: DenseNet,
    ws: Workspace,
}

impl DenseEngine {
    /// The engine of `net`.
    pub fn new(net: DenseNet) -> Self {
        Self { net, ws: Workspace::default() }
    }
}

impl NativeNet for DenseEngine {
    fn params(&self) -> &[ParamInfo] {
        self.net.params()
    }

    fn eval(&mut self, k: usize, who: &[bool], params: &[&[f32]], batch: &Batch<'_>) -> Vec<EvalSums> {
        self.net.forward(k, who, params, batch, &mut self.ws);
        (0..k).map(|m| if who[m] { self.net.sums(m, batch, &self.ws) } else { EvalSums::default() }).collect()
    }

    fn loss_and_grads(&mut self, k: usize, live: &[bool], params: &[&[f32]], batch: &Batch<'_>, grads: &mut [&mut [f32]]) -> Vec<f32> {
        self.net.loss_and_grads(k, live, params, batch, grads, &mut self.ws)
    }
}

/// Summed cross-entropy (nats) of `logits` (`[rows][classes]`) against `y`, and the rows whose
/// arg-max is the label; the gradient of the *mean* into `grad` (resized to `logits`' length
/// by the caller) where asked. Each row's bits are those of the row alone (classes summed in
/// order, [`exp`], `f32::ln`), however many rows there are.
pub fn cross_entropy(logits: &[f32], y: &[u32], classes: usize, grad: Option<&mut Vec<f32>>) -> (f64, u64) {
    let mut k = CrossEntropy { logits, y, classes, grad, loss_sum: 0.0, correct: 0 };
    simd_dispatch(&mut k);
    (k.loss_sum, k.correct)
}

/// `out[r][j] += bias[j]` for every row of `out`.
pub(crate) fn add_bias(out: &mut [f32], bias: &[f32]) {
    simd_dispatch(&mut BiasActivate { out, src: None, bias, act: None, pre: None });
}

/// `out[r][j] += bias[j]`, then the activation (kept pre-activation in `pre` where asked).
///
/// GELU's `pre` is twice `out`'s length: the pre-activations `z`, then `1 + erf(z/√2)`, which
/// the backward pass would otherwise compute again (a division and an `exp` per element).
pub(crate) struct BiasActivate<'a> {
    pub(crate) out: &'a mut [f32],
    /// Where `out`'s values are read from instead, if not in place (a product side by side).
    pub(crate) src: Option<Rows<'a>>,
    pub(crate) bias: &'a [f32],
    pub(crate) act: Option<Activation>,
    pub(crate) pre: Option<&'a mut [f32]>,
}

impl Kernel for BiasActivate<'_> {
    /// GELU's only: on a Sapphire Rapids core the AVX-512 build took 0.65× the AVX2 build's
    /// time with GELU, but 1.1–1.6× with the bias alone, 1.4–2.1× with ReLU and 2.0–2.1× with
    /// tanh (`bench/results/2026-12-06-xeon-spr-avx512.md`).
    fn avx512(&self) -> bool {
        self.act == Some(Activation::Gelu)
    }

    #[inline(always)]
    fn run(&mut self) {
        let n = self.bias.len();
        let len = self.out.len();
        for (r, row) in self.out.chunks_exact_mut(n).enumerate() {
            match self.src {
                Some(src) => row.iter_mut().zip(src.row(r)).zip(self.bias).for_each(|((v, &s), &b)| *v = s + b),
                None => row.iter_mut().zip(self.bias).for_each(|(v, &b)| *v += b),
            }
            if let Some(pre) = self.pre.as_deref_mut() {
                pre[r * n..(r + 1) * n].copy_from_slice(row);
            }
            match self.act {
                None => {}
                Some(Activation::Relu) => row.iter_mut().for_each(|v| *v = v.max(0.0)),
                Some(Activation::Tanh) => row.iter_mut().for_each(|v| *v = tanh(*v)),
                Some(Activation::Gelu) => match self.pre.as_deref_mut() {
                    Some(pre) => {
                        for (v, e) in row.iter_mut().zip(&mut pre[len + r * n..len + (r + 1) * n]) {
                            *e = gelu_one_plus_erf(*v);
                            *v = 0.5 * *v * *e;
                        }
                    }
                    None => row.iter_mut().for_each(|v| *v = gelu(*v)),
                },
            }
        }
    }
}

/// `delta ← delta ⊙ act'(z)`, from the activation's output `h` (ReLU, tanh) or its input (GELU).
pub(crate) struct ActivationBackward<'a> {
    pub(crate) delta: &'a mut [f32],
    pub(crate) h: &'a [f32],
    pub(crate) pre: Option<&'a [f32]>,
    pub(crate) act: Activation,
}

impl Kernel for ActivationBackward<'_> {
    #[inline(always)]
    fn run(&mut self) {
        match self.act {
            Activation::Relu => {
                for (d, &h) in self.delta.iter_mut().zip(self.h) {
                    *d = if h > 0.0 { *d } else { 0.0 };
                }
            }
            Activation::Tanh => {
                for (d, &h) in self.delta.iter_mut().zip(self.h) {
                    *d *= 1.0 - h * h;
                }
            }
            Activation::Gelu => {
                let pre = self.pre.expect("GELU keeps its pre-activation");
                let (z, e) = pre.split_at(self.delta.len());
                for ((d, &z), &e) in self.delta.iter_mut().zip(z).zip(e) {
                    *d *= gelu_grad_from(z, e);
                }
            }
        }
    }
}

/// Per row: log-sum-exp cross-entropy against the label, its gradient `(softmax − onehot)/rows`
/// where asked, and whether the arg-max is the label.
struct CrossEntropy<'a> {
    logits: &'a [f32],
    y: &'a [u32],
    classes: usize,
    grad: Option<&'a mut Vec<f32>>,
    loss_sum: f64,
    correct: u64,
}

/// Rows one pass of [`CrossEntropy`] handles side by side: one vector lane each.
const CE_LANES: usize = 8;
/// Classes [`CrossEntropy`] transposes at a time: up to 32 (a classifier's few classes: a
/// small block to clear), else up to 256 (a byte vocabulary in one block); with more classes
/// the blocks are transposed again for each pass. The block size changes no bits.
const CE_BLOCKS: [usize; 2] = [32, 256];

impl CrossEntropy<'_> {
    /// Classes `j0..j0 + w` of the block's `lanes` rows (`z`, from its first row), class-major:
    /// `zt[j * CE_LANES + l]` is class `j0 + j` of row `l`; lanes past the rows are 0. With
    /// [`Avx2`], eight full rows and eight classes or more, by 8 × 8 tiles (the last one
    /// overlapping its neighbour where `w` is no multiple of 8).
    #[inline(always)]
    fn load<const N: usize>(&self, avx: Option<Avx2>, z: &[f32], lanes: usize, j0: usize, w: usize, zt: &mut [f32; N]) {
        let c = self.classes;
        if let (Some(avx), CE_LANES, 8..) = (avx, lanes, w) {
            for j in tiles8(w) {
                avx.transpose8(&z[j0 + j..], c, &mut zt[j * CE_LANES..], CE_LANES);
            }
            return;
        }
        for j in 0..w {
            for l in 0..CE_LANES {
                zt[j * CE_LANES + l] = if l < lanes { z[l * c + j0 + j] } else { 0.0 };
            }
        }
    }
}

/// Where the 8 × 8 tiles of `w ≥ 8` columns start: every 8th, the last at `w − 8`.
fn tiles8(w: usize) -> impl Iterator<Item = usize> {
    (0..w - 8).step_by(8).chain([w - 8])
}

impl Kernel for CrossEntropy<'_> {
    /// With a byte vocabulary only. On a Sapphire Rapids core, with 8 × 8 tiles moving the
    /// logits in and the gradient out, the AVX-512 build took 1.05–1.12× the AVX2 build's time
    /// at 10 classes but 0.92× at 256 (`bench/results/2026-12-06-xeon-spr-avx512.md`): its
    /// rows are 8 lanes, one AVX2 vector, so wider registers have no more rows to take.
    fn avx512(&self) -> bool {
        self.classes > CE_BLOCKS[0]
    }

    #[inline(always)]
    fn run(&mut self) {
        if self.classes <= CE_BLOCKS[0] {
            self.run_blocks::<{ CE_BLOCKS[0] }, { CE_LANES * CE_BLOCKS[0] }>();
        } else {
            self.run_blocks::<{ CE_BLOCKS[1] }, { CE_LANES * CE_BLOCKS[1] }>();
        }
    }
}

impl CrossEntropy<'_> {
    /// Rows in blocks of [`CE_LANES`], each row in its own lane: its maximum, sum of
    /// exponentials and gradient are computed exactly as row by row (classes in order, the
    /// same `exp`), so the bits are those of one row at a time — but the `exp`s of eight rows
    /// run as one vector instead of a scalar loop over a row's classes. Classes are taken
    /// `BLOCK` at a time (`N` = `CE_LANES × BLOCK`), transposed class-major (eight lanes always: rows past the end
    /// are zeros whose results are dropped), so the loops are plain vector code; with one
    /// block the exponentials are kept for the gradient, with more they are computed again
    /// (the same bits). The gradient is computed class-major too, then moved to its rows; both
    /// moves go by 8 × 8 tiles where [`Avx2`] allows (the compiler turns the plain loops into
    /// 64 scalar moves a tile).
    #[inline(always)]
    fn run_blocks<const BLOCK: usize, const N: usize>(&mut self) {
        let c = self.classes;
        let rows = self.logits.len() / c;
        let scale = 1.0 / rows as f32;
        let blocks = c.div_ceil(BLOCK);
        let avx = Avx2::get();
        let (mut zt, mut e) = ([0f32; N], [0f32; N]);
        for r0 in (0..rows).step_by(CE_LANES) {
            let lanes = CE_LANES.min(rows - r0);
            let z = &self.logits[r0 * c..(r0 + lanes) * c];
            let (mut max, mut arg) = ([f32::NEG_INFINITY; CE_LANES], [0u32; CE_LANES]);
            let mut sum = [0f32; CE_LANES];
            for b in 0..blocks {
                let (j0, w) = (b * BLOCK, BLOCK.min(c - b * BLOCK));
                self.load(avx, z, lanes, j0, w, &mut zt);
                for j in 0..w {
                    let col = &zt[j * CE_LANES..][..CE_LANES];
                    for l in 0..CE_LANES {
                        let gt = col[l] > max[l];
                        max[l] = if gt { col[l] } else { max[l] };
                        arg[l] = if gt { (j0 + j) as u32 } else { arg[l] };
                    }
                }
            }
            for b in 0..blocks {
                let (j0, w) = (b * BLOCK, BLOCK.min(c - b * BLOCK));
                if blocks > 1 {
                    self.load(avx, z, lanes, j0, w, &mut zt);
                }
                for j in 0..w {
                    for l in 0..CE_LANES {
                        let x = exp(zt[j * CE_LANES + l] - max[l]);
                        e[j * CE_LANES + l] = x;
                        sum[l] += x;
                    }
                }
            }
            let mut label = [usize::MAX; CE_LANES];
            for l in 0..lanes {
                label[l] = self.y[r0 + l] as usize;
                let lse = max[l] + sum[l].ln();
                self.loss_sum += f64::from(lse - z[l * c + label[l]]);
                self.correct += u64::from(arg[l] as usize == label[l]);
            }
            if self.grad.is_none() {
                continue;
            }
            let inv: [f32; CE_LANES] = std::array::from_fn(|l| 1.0 / sum[l]);
            for b in 0..blocks {
                let (j0, w) = (b * BLOCK, BLOCK.min(c - b * BLOCK));
                if blocks > 1 {
                    self.load(avx, z, lanes, j0, w, &mut zt);
                    for j in 0..w {
                        for l in 0..CE_LANES {
                            e[j * CE_LANES + l] = exp(zt[j * CE_LANES + l] - max[l]);
                        }
                    }
                }
                // The gradient class-major (into `zt`, read no more), then to its rows.
                for j in 0..w {
                    for l in 0..CE_LANES {
                        let p = e[j * CE_LANES + l] * inv[l];
                        zt[j * CE_LANES + l] = (p - if j0 + j == label[l] { 1.0 } else { 0.0 }) * scale;
                    }
                }
                let g = &mut self.grad.as_deref_mut().expect("checked above")[r0 * c..(r0 + lanes) * c];
                match (avx, lanes, w) {
                    (Some(avx), CE_LANES, 8..) => {
                        for j in tiles8(w) {
                            avx.transpose8(&zt[j * CE_LANES..], CE_LANES, &mut g[j0 + j..], c);
                        }
                    }
                    _ => {
                        for l in 0..lanes {
                            for (j, g) in g[l * c + j0..][..w].iter_mut().enumerate() {
                                *g = zt[j * CE_LANES + l];
                            }
                        }
                    }
                }
            }
        }
    }
}

pub use beatmatch_core::simd::exp;

/// `tanh` for f32: an odd rational approximation on [−9, 9] (±1 beyond), vectorisable;
/// within a few ulp (tested against f64).
#[inline(always)]
pub fn tanh(x: f32) -> f32 {
    let x = x.clamp(-7.905_311, 7.905_311);
    let x2 = x * x;
    let p = ((((((-2.760_768_5e-16 * x2 + 2.000_188e-13) * x2 + -8.604_672e-11) * x2 + 5.122_297e-8) * x2 + 1.485_722_4e-5) * x2 + 6.372_619_3e-4) * x2
        + 4.893_524_6e-3)
        * x;
    let q = ((1.198_258_4e-6 * x2 + 1.185_347e-4) * x2 + 2.268_434_6e-3) * x2 + 4.893_525e-3;
    if x.abs() < 4e-4 {
        x
    } else {
        p / q
    }
}

/// `erf` for f32 (Abramowitz & Stegun 7.1.26 with `exp` above), vectorisable; absolute error
/// below 6e-7 in f32 (1.5e-7 in exact arithmetic), tested against f64.
#[inline(always)]
pub fn erf(x: f32) -> f32 {
    let a = x.abs();
    let t = 1.0 / (1.0 + 0.327_591_1 * a);
    let poly = t * (0.254_829_6 + t * (-0.284_496_74 + t * (1.421_413_7 + t * (-1.453_152 + t * 1.061_405_4))));
    let y = 1.0 - poly * exp(-a * a);
    if x < 0.0 {
        -y
    } else {
        y
    }
}

/// GELU, erf form: `x·Φ(x)`.
#[inline(always)]
pub fn gelu(x: f32) -> f32 {
    0.5 * x * gelu_one_plus_erf(x)
}

/// `1 + erf(x/√2)` (= 2Φ(x)), the factor GELU's value and its derivative share.
#[inline(always)]
fn gelu_one_plus_erf(x: f32) -> f32 {
    1.0 + erf(x * std::f32::consts::FRAC_1_SQRT_2)
}

/// `d gelu / dx = Φ(x) + x·φ(x)`.
#[inline(always)]
pub fn gelu_grad(x: f32) -> f32 {
    gelu_grad_from(x, gelu_one_plus_erf(x))
}

/// [`gelu_grad`] given `e = 1 + erf(x/√2)` (the same bits).
#[inline(always)]
fn gelu_grad_from(x: f32, e: f32) -> f32 {
    const INV_SQRT_2PI: f32 = 0.398_942_3;
    0.5 * e + x * INV_SQRT_2PI * exp(-0.5 * x * x)
}

#[cfg(test)]
mod tests {
    /// The cross-entropy one row at a time, as it was written before its rows shared vector
    /// lanes: (loss sum, correct, gradient).
    fn cross_entropy_by_row(logits: &[f32], y: &[u32], c: usize) -> (f64, u64, Vec<f32>) {
        let rows = logits.len() / c;
        let (mut loss, mut correct, mut grad) = (0f64, 0u64, vec![0f32; logits.len()]);
        for r in 0..rows {
            let z = &logits[r * c..(r + 1) * c];
            let label = y[r] as usize;
            let (mut max, mut arg) = (f32::NEG_INFINITY, 0);
            for (j, &v) in z.iter().enumerate() {
                if v > max {
                    max = v;
                    arg = j;
                }
            }
            let mut sum = 0f32;
            for &v in z {
                sum += super::exp(v - max);
            }
            loss += f64::from(max + sum.ln() - z[label]);
            correct += u64::from(arg == label);
            for (j, (g, &v)) in grad[r * c..(r + 1) * c].iter_mut().zip(z).enumerate() {
                *g = (super::exp(v - max) * (1.0 / sum) - if j == label { 1.0 } else { 0.0 }) * (1.0 / rows as f32);
            }
        }
        (loss, correct, grad)
    }

    #[test]
    fn cross_entropy_in_lanes_gives_the_bits_of_one_row_at_a_time() {
        let special = [f32::NAN, f32::INFINITY, f32::NEG_INFINITY, 0.0, -0.0, 3.0, 3.0];
        // Whole 8 × 8 tiles of rows and classes, overlapping tiles, partial blocks of rows, fewer
        // than 8 classes, more classes than one block.
        let shapes = [(32, 10), (16, 8), (8, 9), (13, 10), (7, 3), (20, 40), (1, 1), (9, 256), (17, 65), (35, 300), (3, 5000), (40, 7)];
        for ((rows, c), odd) in shapes.into_iter().flat_map(|s| [(s, false), (s, true)]) {
            let mut logits: Vec<f32> = (0..rows * c).map(|i| (((i * 2654435761usize) >> 9) % 2001) as f32 / 100.0 - 10.0).collect();
            if odd {
                // Ties, zeros of both signs, infinities and NaNs (a diverged member's logits):
                // scattered among ordinary values, and the last row made of them alone.
                for (i, v) in logits.iter_mut().enumerate().filter(|(i, _)| (i * 7919) % 23 == 0) {
                    *v = special[(i / 23) % special.len()];
                }
                for (i, v) in logits[(rows - 1) * c..].iter_mut().enumerate() {
                    *v = special[i % special.len()];
                }
            }
            let y: Vec<u32> = (0..rows).map(|r| ((r * 7) % c) as u32).collect();
            let mut grad = vec![0f32; rows * c];
            let (loss, correct) = super::cross_entropy(&logits, &y, c, Some(&mut grad));
            let (want_loss, want_correct, want_grad) = cross_entropy_by_row(&logits, &y, c);
            // Equal bits, or both NaN: Rust leaves a NaN's sign and payload unspecified (LLVM may
            // swap a product's operands), and a NaN loss ends a member as diverged either way.
            let same = |a: f32, b: f32| a.to_bits() == b.to_bits() || (a.is_nan() && b.is_nan());
            let same_loss = |a: f64, b: f64| a.to_bits() == b.to_bits() || (a.is_nan() && b.is_nan());
            assert!(
                same_loss(loss, want_loss) && correct == want_correct,
                "rows {rows}, classes {c}, odd values {odd}: {loss} {correct} vs {want_loss} {want_correct}"
            );
            assert!(grad.iter().zip(&want_grad).all(|(&a, &b)| same(a, b)), "rows {rows}, classes {c}, odd values {odd}: gradients differ");
            // Without a gradient buffer (evaluation), the same loss and count.
            let (loss, correct) = super::cross_entropy(&logits, &y, c, None);
            assert!(same_loss(loss, want_loss) && correct == want_correct, "rows {rows}, classes {c}, odd values {odd}, no gradient");
        }
    }

    use super::*;

    fn grid() -> impl Iterator<Item = f32> {
        (-40000..=40000).map(|i| i as f32 * 3e-4).chain([1e-6, -1e-6, 1e-3, 30.0, -30.0, 80.0, -100.0])
    }

    #[test]
    fn elementary_functions_match_f64_within_a_few_ulp() {
        let rel = |a: f32, b: f64| ((f64::from(a) - b) / b.abs().max(1e-30)).abs();
        let (mut e_exp, mut e_tanh, mut e_erf) = (0f64, 0f64, 0f64);
        let mut e_gelu = 0f64;
        for x in grid() {
            if x.abs() < 87.0 {
                e_exp = e_exp.max(rel(exp(x), f64::from(x).exp()));
            }
            let x64 = f64::from(x);
            let g = 0.5 * x64 * (1.0 + libm_erf(x64 / std::f64::consts::SQRT_2));
            e_gelu = e_gelu.max((f64::from(gelu(x)) - g).abs() / x64.abs().max(1.0));
            e_tanh = e_tanh.max(rel(tanh(x), f64::from(x).tanh()));
            e_erf = e_erf.max((f64::from(erf(x)) - libm_erf(f64::from(x))).abs());
        }
        assert!(e_exp < 3e-7, "exp relative error {e_exp:e}");
        assert!(e_tanh < 1e-6, "tanh relative error {e_tanh:e}");
        assert!(e_erf < 6e-7, "erf absolute error {e_erf:e}");
        assert!(e_gelu < 1e-6, "gelu error {e_gelu:e}");
        assert_eq!(exp(-200.0), 0.0);
        assert!(exp(100.0).is_infinite());
    }

    /// erf in f64: its Taylor series below 2.5, 1 − erfc by erfc's continued fraction above.
    fn libm_erf(x: f64) -> f64 {
        if x.abs() >= 2.5 {
            let a = x.abs();
            let mut t = a;
            for n in (1..=80).rev() {
                t = a + (n as f64 / 2.0) / t;
            }
            let erfc = (-a * a).exp() / std::f64::consts::PI.sqrt() / t;
            return x.signum() * (1.0 - erfc);
        }
        let (mut term, mut sum, mut n) = (x, x, 0);
        while term.abs() > 1e-17 * sum.abs().max(1e-300) && n < 200 {
            n += 1;
            term *= -x * x / n as f64;
            sum += term / (2 * n + 1) as f64;
        }
        2.0 / std::f64::consts::PI.sqrt() * sum
    }
}
