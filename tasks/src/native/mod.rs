//! The native engine's seam: a network whose forward and backward passes are written out on
//! host buffers for K members at once, which is what a [`crate::population::Population`]
//! trains. Dense networks ([`crate::dense`]), ConvNets ([`convnet`]), LSTM language models
//! ([`lstm`]) and Transformers ([`transformer`]) implement it; a family names its engine in
//! [`crate::models::Family::native`].
//!
//! **Members.** Parameters and gradients are member-major buffers (`K × numel` per tensor, in
//! the candle model's canonical order). Every member sees the same input batch, and a member's
//! arithmetic never reads another member's values (the products are one call per member, of
//! the same shape whatever K is, or, for a dense network's narrow first layer, one product over
//! the members side by side that sums each member's values in the order its own would), so a
//! member computes the same bits in a population of 1, 3 or 30. Members not `live` are
//! skipped.

pub mod convnet;
pub mod lstm;
pub mod transformer;

use crate::models::EvalSums;
use beatmatch_core::ParamInfo;

/// A population's batch: `rows` examples (`x` `[rows][input]`, an image's values channels
/// first as the datasets store them; `y` one label each, ignored by autoencoders) or `rows`
/// token windows (`x` the input tokens' ids as floats `[rows][t]`, `y` the targets
/// `[rows][t]`: the inputs shifted by one).
pub struct Batch<'a> {
    /// Inputs, row-major.
    pub x: &'a [f32],
    /// Labels or target tokens, row-major.
    pub y: &'a [u32],
    /// Examples or windows.
    pub rows: usize,
}

/// A network the native engine trains K members at a time. It keeps its own reused buffers
/// (no buffer is allocated after the first step), hence `&mut self`.
pub trait NativeNet: Send {
    /// Parameter tensors of one member, in the candle model's canonical order.
    fn params(&self) -> &[ParamInfo];

    /// Summed loss (and correct predictions) of every `who` member on `batch` at `params`
    /// (member-major), as `models::evaluate` reports them; members not in `who` get
    /// [`EvalSums::default`].
    fn eval(&mut self, k: usize, who: &[bool], params: &[&[f32]], batch: &Batch<'_>) -> Vec<EvalSums>;

    /// Mean mini-batch loss and gradients (into `grads`, member-major like `params`) of every
    /// live member; returns the losses (NaN for members not live).
    fn loss_and_grads(&mut self, k: usize, live: &[bool], params: &[&[f32]], batch: &Batch<'_>, grads: &mut [&mut [f32]]) -> Vec<f32>;
}

/// `sums[j] = Σ_r m[r][j]` over the rows of the row-major `m` (`cols` wide), rows in order.
pub(crate) fn column_sums(m: &[f32], cols: usize, sums: &mut [f32]) {
    sums.fill(0.0);
    for row in m.chunks_exact(cols) {
        for (s, &v) in sums.iter_mut().zip(row) {
            *s += v;
        }
    }
}
