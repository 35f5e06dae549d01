//! Byte-level decoder-only Transformer language model (GPT-2 layout, pre-LayerNorm): token and
//! learned position embeddings, `layers` blocks of causal multi-head self-attention and a 4×
//! GELU MLP, a final LayerNorm and an untied output head.
//!
//! Parameters (sorted by name in [`Model::params`]): `embed/tok` `[vocab, d]`, `embed/pos`
//! `[context, d]`, per block `block{ii}/{ln1,ln2}/{g,b}` `[d]`, `block{ii}/attn/qkv` `[d, 3d]`,
//! `block{ii}/attn/out` `[d, d]`, `block{ii}/mlp/{w1 [d,4d], b1 [4d], w2 [4d,d], b2 [d]}`,
//! `final_ln/{g,b}`, `head/w` `[d, vocab]`, `head/b` `[vocab]`. Embeddings N(0, 0.02²),
//! matrices N(0, 1/fan_in) (residual outputs scaled by 1/√(2·layers), as GPT-2), gains 1,
//! biases 0.

use super::family::{Bounded, Family, FamilyGrid};
use super::{layer_norm, normal, sorted_params, Model, Objective};
use crate::native::transformer::TransformerEngine;
use crate::native::NativeNet;
use beatmatch_core::{ParamInfo, Role};
use candle_core::{Result, Tensor, D};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

/// Per-block parameter slots (indices into the declared order).
const PER_BLOCK: usize = 10;

/// A Transformer LM.
pub struct Transformer {
    params: Vec<ParamInfo>,
    /// Declared position → sorted position.
    slot: Vec<usize>,
    vocab: usize,
    d: usize,
    layers: usize,
    heads: usize,
    context: usize,
}

impl Transformer {
    /// A model over `vocab` tokens with the given sizes; `heads` must divide `d_model`.
    pub fn new(vocab: usize, d_model: usize, layers: usize, heads: usize, context: usize) -> Self {
        assert!(heads > 0 && d_model.is_multiple_of(heads), "heads ({heads}) must divide d_model ({d_model})");
        assert!(layers <= 100, "block names must sort numerically");
        let d = d_model;
        let p = |name: String, shape: Vec<usize>| ParamInfo::new(name, shape);
        let mut declared = vec![p("embed/tok".into(), vec![vocab, d]).with_role(Role::Input), p("embed/pos".into(), vec![context, d]).with_role(Role::Input)];
        for i in 0..layers {
            let b = format!("block{i:02}");
            declared.extend([
                p(format!("{b}/ln1/g"), vec![d]),
                p(format!("{b}/ln1/b"), vec![d]),
                p(format!("{b}/attn/qkv"), vec![d, 3 * d]),
                p(format!("{b}/attn/out"), vec![d, d]),
                p(format!("{b}/ln2/g"), vec![d]),
                p(format!("{b}/ln2/b"), vec![d]),
                p(format!("{b}/mlp/w1"), vec![d, 4 * d]),
                p(format!("{b}/mlp/b1"), vec![4 * d]),
                p(format!("{b}/mlp/w2"), vec![4 * d, d]),
                p(format!("{b}/mlp/b2"), vec![d]),
            ]);
        }
        declared.extend([
            p("final_ln/g".into(), vec![d]),
            p("final_ln/b".into(), vec![d]),
            p("head/w".into(), vec![d, vocab]).with_role(Role::Output),
            p("head/b".into(), vec![vocab]),
        ]);
        let (params, slot) = sorted_params(declared);
        Self { params, slot, vocab, d, layers, heads, context }
    }

    /// (vocabulary, d_model, layers, heads, context).
    pub fn dims(&self) -> (usize, usize, usize, usize, usize) {
        (self.vocab, self.d, self.layers, self.heads, self.context)
    }

    /// The canonical (sorted) position of the parameter declared `declared`-th: `embed/tok`,
    /// `embed/pos`, then per block `ln1/g`, `ln1/b`, `attn/qkv`, `attn/out`, `ln2/g`, `ln2/b`,
    /// `mlp/w1`, `mlp/b1`, `mlp/w2`, `mlp/b2`, then `final_ln/g`, `final_ln/b`, `head/w`,
    /// `head/b`.
    pub fn slot(&self, declared: usize) -> usize {
        self.slot[declared]
    }

    /// Declared index of block `i`'s `k`-th parameter.
    fn block(&self, i: usize, k: usize) -> usize {
        2 + i * PER_BLOCK + k
    }
}

impl Model for Transformer {
    fn params(&self) -> &[ParamInfo] {
        &self.params
    }

    fn init(&self, rng: &mut ChaCha8Rng) -> Vec<Vec<f32>> {
        let d = self.d;
        let resid = 1.0 / (2.0 * self.layers.max(1) as f32).sqrt();
        let mut declared: Vec<Vec<f32>> = vec![normal(rng, self.vocab * d, 0.02), normal(rng, self.context * d, 0.02)];
        let std = |fan_in: usize| (1.0 / fan_in as f32).sqrt();
        for _ in 0..self.layers {
            declared.push(vec![1.0; d]);
            declared.push(vec![0.0; d]);
            declared.push(normal(rng, d * 3 * d, std(d)));
            declared.push(normal(rng, d * d, std(d) * resid));
            declared.push(vec![1.0; d]);
            declared.push(vec![0.0; d]);
            declared.push(normal(rng, d * 4 * d, std(d)));
            declared.push(vec![0.0; 4 * d]);
            declared.push(normal(rng, 4 * d * d, std(4 * d) * resid));
            declared.push(vec![0.0; d]);
        }
        declared.extend([vec![1.0; d], vec![0.0; d], normal(rng, d * self.vocab, std(d)), vec![0.0; self.vocab]]);
        let mut out = vec![Vec::new(); declared.len()];
        for (i, v) in declared.into_iter().enumerate() {
            out[self.slot[i]] = v;
        }
        out
    }

    /// Logits `[batch·t, vocab]` for token ids `x` `[batch, t]`, `t ≤ context`: a population of
    /// one.
    fn forward(&self, params: &[Tensor], x: &Tensor) -> Result<Tensor> {
        super::forward_one(self, params, x)
    }

    fn batches_members(&self) -> bool {
        true
    }

    /// Logits `[K, batch·t, vocab]`: every weight product one batched product over the members,
    /// attention over `[K·batch, heads]` windows.
    fn forward_members(&self, params: &[Tensor], x: &Tensor) -> Result<Tensor> {
        let p = |declared: usize| &params[self.slot[declared]];
        let k = p(0).dim(0)?;
        let (batch, t) = x.dims2()?;
        let (d, heads) = (self.d, self.heads);
        let dh = d / heads;
        let dtype = p(0).dtype();
        // A member's gain or bias `[K, n]` against activations `[K, rows…, n]`.
        let rows = |v: &Tensor| v.reshape((k, 1, v.dim(1)?));
        let norm = |h: &Tensor, gain: &Tensor, bias: &Tensor| -> Result<Tensor> {
            let g = |v: &Tensor| v.reshape((k, 1, 1, d));
            layer_norm(h, &g(gain)?, &g(bias)?)?.reshape((k, batch * t, d))
        };
        let pos = p(1).narrow(1, 0, t)?.unsqueeze(1)?;
        let mut h = p(0).index_select(&x.flatten_all()?, 1)?.reshape((k, batch, t, d))?.broadcast_add(&pos)?;
        // Additive causal mask: 0 on and below the diagonal, a large negative number above (not
        // -inf, so no inf − inf can reach the backward pass).
        let mask: Vec<f32> = (0..t * t).map(|k| if k % t > k / t { -1e9 } else { 0.0 }).collect();
        let mask = Tensor::from_vec(mask, (t, t), x.device())?.to_dtype(dtype)?;
        let scale = 1.0 / (dh as f64).sqrt();
        for i in 0..self.layers {
            let b = |j| p(self.block(i, j));
            let a = norm(&h, b(0), b(1))?;
            let qkv = a.matmul(b(2))?.reshape((k * batch, t, 3, heads, dh))?;
            let split = |j: usize| qkv.narrow(2, j, 1)?.squeeze(2)?.transpose(1, 2)?.contiguous();
            let (q, key, v) = (split(0)?, split(1)?, split(2)?);
            let scores = (q.matmul(&key.transpose(2, 3)?.contiguous()?)? * scale)?.broadcast_add(&mask)?;
            let att = candle_nn::ops::softmax(&scores, D::Minus1)?;
            let y = att.matmul(&v)?.transpose(1, 2)?.contiguous()?.reshape((k, batch * t, d))?;
            h = (h + y.matmul(b(3))?.reshape((k, batch, t, d))?)?;
            let m = norm(&h, b(4), b(5))?;
            let m = m.matmul(b(6))?.broadcast_add(&rows(b(7))?)?.gelu_erf()?.matmul(b(8))?.broadcast_add(&rows(b(9))?)?;
            h = (h + m.reshape((k, batch, t, d))?)?;
        }
        let n = 2 + self.layers * PER_BLOCK;
        norm(&h, p(n), p(n + 1))?.matmul(p(n + 2))?.broadcast_add(&rows(p(n + 3))?)
    }

    fn objective(&self) -> Objective {
        Objective::NextToken
    }
}

/// The `transformer` family: a byte-level decoder-only Transformer language model,
/// pre-LayerNorm.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct TransformerConfig {
    /// Residual stream width.
    pub d_model: usize,
    /// Number of blocks.
    pub layers: usize,
    /// Attention heads (divides `d_model`).
    pub heads: usize,
    /// Context length (tokens per training sequence).
    pub context: usize,
}

/// The registry's `transformer: { d_model, layers, heads, context }`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TransformerGrid {
    d_model: Vec<Bounded<1, 16384>>,
    layers: Vec<Bounded<1, 96>>,
    heads: Vec<Bounded<1, 128>>,
    context: Vec<Bounded<2, 4096>>,
}

impl FamilyGrid for TransformerConfig {
    type Grid = TransformerGrid;
    fn expand(g: &TransformerGrid) -> Vec<Self> {
        g.d_model
            .iter()
            .flat_map(|d| {
                g.layers.iter().flat_map(move |l| {
                    g.heads.iter().flat_map(move |h| {
                        g.context.iter().map(move |t| TransformerConfig { d_model: d.get(), layers: l.get(), heads: h.get(), context: t.get() })
                    })
                })
            })
            .collect()
    }
}

impl Family for TransformerConfig {
    fn id(&self) -> String {
        format!("transformer-d{}-l{}-h{}-t{}", self.d_model, self.layers, self.heads, self.context)
    }
    fn text(&self) -> bool {
        true
    }
    fn check(&self) -> std::result::Result<(), String> {
        if !self.d_model.is_multiple_of(self.heads) {
            return Err(format!("heads {} do not divide d_model {}", self.heads, self.d_model));
        }
        Ok(())
    }
    fn context(&self) -> Option<usize> {
        Some(self.context)
    }
    fn build(&self, _shape: &[usize], classes: usize) -> Box<dyn Model> {
        Box::new(Transformer::new(classes, self.d_model, self.layers, self.heads, self.context))
    }
    fn native(&self, _shape: &[usize], classes: usize) -> Option<Box<dyn NativeNet>> {
        Some(Box::new(TransformerEngine::new(&Transformer::new(classes, self.d_model, self.layers, self.heads, self.context))))
    }
    /// Per block: LayerNorms, q/k/v, attention output, the 4× MLP and residuals (about 16
    /// widths per token) plus per-head attention scores and probabilities; then the logits.
    fn activation_floats(&self, _shape: &[usize], classes: usize) -> u64 {
        let (d, t) = (self.d_model as u64, self.context as u64);
        t * d + self.layers as u64 * (16 * t * d + 2 * self.heads as u64 * t * t) + 3 * t * classes as u64
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::models::gradcheck;
    use candle_core::Device;

    fn tokens(batch: usize, t: usize, vocab: u32, salt: u32) -> Tensor {
        let v: Vec<u32> = (0..(batch * t) as u32).map(|i| (i * 7 + salt * 3 + i * i) % vocab).collect();
        Tensor::from_vec(v, (batch, t), &Device::Cpu).unwrap()
    }

    #[test]
    fn gradients_match_finite_differences() {
        for (layers, heads) in [(1, 1), (2, 2)] {
            let m = Transformer::new(7, 8, layers, heads, 5);
            gradcheck::check(&m, &tokens(2, 5, 7, 0), &tokens(2, 5, 7, 1), 7, 1e-6);
        }
        // Shorter sequences than the context use the first positions.
        gradcheck::check(&Transformer::new(5, 4, 1, 2, 6), &tokens(3, 4, 5, 2), &tokens(3, 4, 5, 3), 3, 1e-6);
    }

    #[test]
    fn attention_is_causal() {
        let m = Transformer::new(9, 8, 2, 2, 6);
        let values = m.init(&mut <ChaCha8Rng as rand::SeedableRng>::seed_from_u64(1));
        let ts: Vec<Tensor> = values.iter().zip(m.params()).map(|(v, p)| Tensor::from_slice(v, p.shape.clone(), &Device::Cpu).unwrap()).collect();
        let a = Tensor::from_vec(vec![1u32, 2, 3, 4, 5, 6], (1, 6), &Device::Cpu).unwrap();
        let b = Tensor::from_vec(vec![1u32, 2, 3, 8, 0, 7], (1, 6), &Device::Cpu).unwrap();
        let (la, lb) = (m.forward(&ts, &a).unwrap(), m.forward(&ts, &b).unwrap());
        let diff: Vec<f32> = (la - lb).unwrap().abs().unwrap().max(1).unwrap().to_vec1().unwrap();
        assert!(diff[..3].iter().all(|&d| d == 0.0), "earlier positions saw later tokens: {diff:?}");
        assert!(diff[3..].iter().all(|&d| d > 0.0), "{diff:?}");
    }

    #[test]
    fn parameter_count_is_exact() {
        let (v, d, l, t) = (256, 64, 2, 32);
        let m = Transformer::new(v, d, l, 4, t);
        let block = 4 * d + 3 * d * d + d * d + 4 * d * d + 4 * d + 4 * d * d + d;
        assert_eq!(m.param_count(), (v * d + t * d + l * block + 2 * d + d * v + v) as u64);
        let names: Vec<_> = m.params().iter().map(|p| p.name.clone()).collect();
        assert!(names.windows(2).all(|w| w[0] < w[1]));
    }
}
