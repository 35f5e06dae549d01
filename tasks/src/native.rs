//! The native engine's seam: a network whose forward and backward passes are written out on
//! host buffers for K members at once, which is what a [`crate::population::Population`]
//! trains. Dense networks ([`crate::dense`]) and ConvNets ([`crate::convnet`]) implement it; a
//! family names its engine in [`crate::models::Family::native`].
//!
//! **Members.** Parameters and gradients are member-major buffers (`K × numel` per tensor, in
//! the candle model's canonical order). Every member sees the same input batch, and a member's
//! arithmetic never reads another member's values (the products are one call per member, of
//! the same shape whatever K is), so a member computes the same bits in a population of 1, 3
//! or 30. Members not `live` are skipped.

use crate::models::EvalSums;
use beatmatch_core::ParamInfo;

/// Where a population's batch comes from: `x` is `[rows][input]` (an image's values channels
/// first, as the datasets store them); `y` the labels (classifiers).
pub struct Batch<'a> {
    /// Inputs, row-major.
    pub x: &'a [f32],
    /// Class labels, one per row (ignored by autoencoders).
    pub y: &'a [u32],
    /// Rows.
    pub rows: usize,
}

/// A network the native engine trains K members at a time. It keeps its own reused buffers
/// (nothing allocates after the first step), hence `&mut self`.
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

/// Member `m`'s part of a member-major buffer of `k` members.
pub(crate) fn part(v: &[f32], k: usize, m: usize) -> &[f32] {
    let n = v.len() / k;
    &v[m * n..(m + 1) * n]
}

/// Member `m`'s part of a member-major buffer of `k` members, to write.
pub(crate) fn part_mut(v: &mut [f32], k: usize, m: usize) -> &mut [f32] {
    let n = v.len() / k;
    &mut v[m * n..(m + 1) * n]
}
