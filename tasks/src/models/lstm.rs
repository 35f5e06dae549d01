//! Byte-level LSTM language model: an embedding, `layers` stacked LSTMs unrolled over the
//! sequence, and a linear head on every position.
//!
//! Parameters: `embed` `[vocab, hidden]`, `lstm{i}/w` `[2·hidden, 4·hidden]` (input and
//! recurrent weights stacked, gates in the order input, forget, cell, output), `lstm{i}/b`
//! `[4·hidden]`, `head/w` `[hidden, vocab]`, `head/b` `[vocab]`. The forget gate's
//! pre-activation gets +1 (as haiku's LSTM), weights N(0, 1/fan_in), biases 0.

use super::family::{Bounded, Family, FamilyGrid};
use super::{normal, Model, Objective};
use crate::native::lstm::LstmEngine;
use crate::native::NativeNet;
use beatmatch_core::{ParamInfo, Role};
use candle_core::{Result, Tensor};
use candle_nn::ops::sigmoid;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

/// An LSTM LM.
pub struct LstmLm {
    params: Vec<ParamInfo>,
    vocab: usize,
    hidden: usize,
    layers: usize,
}

impl LstmLm {
    /// A model over `vocab` tokens.
    pub fn new(vocab: usize, hidden: usize, layers: usize) -> Self {
        assert!(layers <= 10, "layer names must sort numerically");
        let mut params = vec![ParamInfo::new("embed", vec![vocab, hidden]).with_role(Role::Input)];
        params.extend([ParamInfo::new("head/b", vec![vocab]), ParamInfo::new("head/w", vec![hidden, vocab]).with_role(Role::Output)]);
        for i in 0..layers {
            params.push(ParamInfo::new(format!("lstm{i}/b"), vec![4 * hidden]));
            params.push(ParamInfo::new(format!("lstm{i}/w"), vec![2 * hidden, 4 * hidden]));
        }
        Self { params, vocab, hidden, layers }
    }
}

impl LstmLm {
    /// (vocabulary, hidden units, layers).
    pub fn dims(&self) -> (usize, usize, usize) {
        (self.vocab, self.hidden, self.layers)
    }
}

impl Model for LstmLm {
    fn params(&self) -> &[ParamInfo] {
        &self.params
    }

    fn init(&self, rng: &mut ChaCha8Rng) -> Vec<Vec<f32>> {
        let h = self.hidden;
        let mut out = vec![normal(rng, self.vocab * h, 1.0), vec![0.0; self.vocab], normal(rng, h * self.vocab, (1.0 / h as f32).sqrt())];
        for _ in 0..self.layers {
            out.push(vec![0.0; 4 * h]);
            out.push(normal(rng, 2 * h * 4 * h, (1.0 / (2 * h) as f32).sqrt()));
        }
        out
    }

    /// Logits `[batch·t, vocab]` for token ids `x` `[batch, t]`: a population of one.
    fn forward(&self, params: &[Tensor], x: &Tensor) -> Result<Tensor> {
        super::forward_one(self, params, x)
    }

    fn batches_members(&self) -> bool {
        true
    }

    /// Logits `[K, batch·t, vocab]`: each member's embedding lookup, and per time step one
    /// batched product `[K, batch, 2·hidden]·[K, 2·hidden, 4·hidden]`.
    fn forward_members(&self, params: &[Tensor], x: &Tensor) -> Result<Tensor> {
        let k = params[0].dim(0)?;
        let (batch, t) = x.dims2()?;
        let hd = self.hidden;
        let mut seq = params[0].index_select(&x.flatten_all()?, 1)?.reshape((k, batch, t, hd))?;
        let forget_bias = {
            let v: Vec<f32> = (0..4 * hd).map(|g| if (hd..2 * hd).contains(&g) { 1.0 } else { 0.0 }).collect();
            Tensor::from_vec(v, 4 * hd, x.device())?.to_dtype(params[0].dtype())?
        };
        for l in 0..self.layers {
            let (b, w) = (&params[3 + 2 * l], &params[4 + 2 * l]);
            let bias = b.broadcast_add(&forget_bias)?.unsqueeze(1)?;
            let mut h = Tensor::zeros((k, batch, hd), params[0].dtype(), x.device())?;
            let mut c = h.clone();
            let mut outs = Vec::with_capacity(t);
            for s in 0..t {
                let z = Tensor::cat(&[&seq.narrow(2, s, 1)?.squeeze(2)?, &h], 2)?.matmul(w)?.broadcast_add(&bias)?;
                let gate = |g: usize| z.narrow(2, g * hd, hd);
                c = ((sigmoid(&gate(1)?)? * &c)? + (sigmoid(&gate(0)?)? * gate(2)?.tanh()?)?)?;
                h = (sigmoid(&gate(3)?)? * c.tanh()?)?;
                outs.push(h.clone());
            }
            seq = Tensor::stack(&outs, 2)?;
        }
        seq.reshape((k, batch * t, hd))?.matmul(&params[2])?.broadcast_add(&params[1].unsqueeze(1)?)
    }

    fn objective(&self) -> Objective {
        Objective::NextToken
    }
}

/// The `lstm` family: a byte-level LSTM language model.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct LstmConfig {
    /// Hidden (and embedding) units.
    pub hidden: usize,
    /// Stacked LSTM layers.
    pub layers: usize,
    /// Context length (tokens per training sequence, unrolled).
    pub context: usize,
}

/// The registry's `lstm: { hidden, layers, context }`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LstmGrid {
    hidden: Vec<Bounded<1, 8192>>,
    layers: Vec<Bounded<1, 8>>,
    context: Vec<Bounded<2, 4096>>,
}

impl FamilyGrid for LstmConfig {
    type Grid = LstmGrid;
    fn expand(g: &LstmGrid) -> Vec<Self> {
        g.hidden
            .iter()
            .flat_map(|h| g.layers.iter().flat_map(move |l| g.context.iter().map(move |t| LstmConfig { hidden: h.get(), layers: l.get(), context: t.get() })))
            .collect()
    }
}

impl Family for LstmConfig {
    fn id(&self) -> String {
        format!("lstm-h{}-l{}-t{}", self.hidden, self.layers, self.context)
    }
    fn text(&self) -> bool {
        true
    }
    fn context(&self) -> Option<usize> {
        Some(self.context)
    }
    fn build(&self, _shape: &[usize], classes: usize) -> Box<dyn Model> {
        Box::new(LstmLm::new(classes, self.hidden, self.layers))
    }
    fn native(&self, _shape: &[usize], classes: usize) -> Option<Box<dyn NativeNet>> {
        Some(Box::new(LstmEngine::new(&LstmLm::new(classes, self.hidden, self.layers))))
    }
    /// Per layer and token: four gates, cell and hidden state and their nonlinearities.
    fn activation_floats(&self, _shape: &[usize], classes: usize) -> u64 {
        let (h, t) = (self.hidden as u64, self.context as u64);
        t * h + self.layers as u64 * 10 * t * h + 3 * t * classes as u64
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::models::gradcheck;
    use candle_core::Device;

    #[test]
    fn gradients_match_finite_differences() {
        let tok = |salt: u32| Tensor::from_vec((0..8u32).map(|i| (i * 5 + salt + i * i) % 6).collect::<Vec<_>>(), (2, 4), &Device::Cpu).unwrap();
        gradcheck::check(&LstmLm::new(6, 3, 1), &tok(0), &tok(1), 2, 1e-6);
        gradcheck::check(&LstmLm::new(6, 4, 2), &tok(2), &tok(3), 3, 1e-6);
    }

    #[test]
    fn parameter_count_is_exact() {
        let m = LstmLm::new(256, 128, 2);
        let (v, h) = (256u64, 128u64);
        assert_eq!(m.param_count(), v * h + v + h * v + 2 * (4 * h + 2 * h * 4 * h));
        let names: Vec<_> = m.params().iter().map(|p| p.name.clone()).collect();
        assert!(names.windows(2).all(|w| w[0] < w[1]), "{names:?}");
    }
}
