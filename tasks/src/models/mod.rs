//! Model families, sized at run time from the registry. One module per family; the training
//! objective each one is trained on lives here, shared by all.

pub mod autoencoder;
pub mod conv;
pub mod lstm;
pub mod mlp;
pub mod transformer;

use beatmatch_core::ParamInfo;
use candle_core::{DType, Result, Tensor, D};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

pub use conv::Pooling;
pub use mlp::Activation;

/// A resolved model configuration.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(tag = "family", rename_all = "snake_case")]
pub enum ModelConfig {
    /// Multinomial logistic regression (a linear layer + softmax).
    Logreg,
    /// Multi-layer perceptron with `depth` hidden layers of `width` units.
    Mlp {
        /// Hidden units per layer.
        width: usize,
        /// Number of hidden layers.
        depth: usize,
        /// Hidden activation.
        activation: Activation,
    },
    /// ConvNet: `depth` blocks of 3×3 conv + ReLU + pooling, then a linear head.
    Conv {
        /// Channels per block.
        channels: usize,
        /// Number of conv blocks.
        depth: usize,
        /// Pooling after each block.
        pooling: Pooling,
    },
    /// MLP autoencoder: `depth` layers of `width` units down to a `code`-unit bottleneck and back
    /// (mirrored), trained on the mean squared reconstruction error.
    Autoencoder {
        /// Hidden units per encoder/decoder layer.
        width: usize,
        /// Hidden layers on each side of the code.
        depth: usize,
        /// Bottleneck units.
        code: usize,
        /// Hidden activation (the code layer included; the output is linear).
        activation: Activation,
    },
    /// Character (byte) level decoder-only Transformer language model, pre-LayerNorm.
    Transformer {
        /// Residual stream width.
        d_model: usize,
        /// Number of blocks.
        layers: usize,
        /// Attention heads (divides `d_model`).
        heads: usize,
        /// Context length (tokens per training sequence).
        context: usize,
    },
    /// Character (byte) level LSTM language model.
    Lstm {
        /// Hidden (and embedding) units.
        hidden: usize,
        /// Stacked LSTM layers.
        layers: usize,
        /// Context length (tokens per training sequence, unrolled).
        context: usize,
    },
}

/// What a model is trained to minimise.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Objective {
    /// Cross-entropy of logits `[batch, classes]` against labels `[batch]`; accuracy reported.
    Classify,
    /// Next-token cross-entropy (nats per token) of logits `[batch·context, vocab]` against the
    /// inputs shifted by one; next-token accuracy reported.
    NextToken,
    /// Mean squared error of the output `[batch, input_len]` against the input; no accuracy.
    Reconstruct,
}

impl ModelConfig {
    /// The readable id fragment, e.g. `logreg` or `mlp-w128-d2-relu`.
    pub fn id(&self) -> String {
        match self {
            ModelConfig::Logreg => "logreg".into(),
            ModelConfig::Mlp { width, depth, activation } => format!("mlp-w{width}-d{depth}-{}", activation.as_str()),
            ModelConfig::Conv { channels, depth, pooling } => format!("conv-c{channels}-d{depth}-{}", pooling.as_str()),
            ModelConfig::Autoencoder { width, depth, code, activation } => format!("ae-w{width}-d{depth}-c{code}-{}", activation.as_str()),
            ModelConfig::Transformer { d_model, layers, heads, context } => format!("transformer-d{d_model}-l{layers}-h{heads}-t{context}"),
            ModelConfig::Lstm { hidden, layers, context } => format!("lstm-h{hidden}-l{layers}-t{context}"),
        }
    }

    /// Tokens per training sequence, for language models.
    pub fn context(&self) -> Option<usize> {
        match *self {
            ModelConfig::Transformer { context, .. } | ModelConfig::Lstm { context, .. } => Some(context),
            _ => None,
        }
    }

    /// The network this configuration builds for inputs of `shape` (e.g. `[28, 28]` or `[40]`)
    /// and `classes` outputs (the vocabulary size for language models).
    pub fn build(&self, shape: &[usize], classes: usize) -> Box<dyn Model> {
        let input_len = shape.iter().product();
        match *self {
            ModelConfig::Conv { channels, depth, pooling } => {
                let chw = match shape {
                    [c, h, w] => (*c, *h, *w),
                    [h, w] => (1, *h, *w),
                    other => (1, 1, other.iter().product()),
                };
                Box::new(conv::ConvNet::new(chw, channels, depth, pooling, classes))
            }
            ModelConfig::Logreg => Box::new(mlp::Mlp::new(input_len, &[], classes, Activation::Relu)),
            ModelConfig::Mlp { width, depth, activation } => Box::new(mlp::Mlp::new(input_len, &vec![width; depth], classes, activation)),
            ModelConfig::Autoencoder { width, depth, code, activation } => Box::new(autoencoder::Autoencoder::new(input_len, width, depth, code, activation)),
            ModelConfig::Transformer { d_model, layers, heads, context } => Box::new(transformer::Transformer::new(classes, d_model, layers, heads, context)),
            ModelConfig::Lstm { hidden, layers, context: _ } => Box::new(lstm::LstmLm::new(classes, hidden, layers)),
        }
    }
}

/// A differentiable model: parameter layout, initialisation and forward pass.
pub trait Model: Send + Sync {
    /// Parameter tensors in canonical order (sorted by name).
    fn params(&self) -> &[ParamInfo];
    /// Freshly initialised parameter values, one flat buffer per tensor, from `rng`.
    fn init(&self, rng: &mut ChaCha8Rng) -> Vec<Vec<f32>>;
    /// The model's output for inputs `x`: logits `[batch, classes]` (classifiers), logits
    /// `[batch·context, vocab]` for token ids `[batch, context]` (language models), or the
    /// reconstruction `[batch, input_len]` (autoencoders). Works in the dtype of `params`.
    fn forward(&self, params: &[Tensor], x: &Tensor) -> Result<Tensor>;
    /// What the output is trained to minimise.
    fn objective(&self) -> Objective {
        Objective::Classify
    }
    /// Total trainable parameters.
    fn param_count(&self) -> u64 {
        self.params().iter().map(|p| p.numel() as u64).sum()
    }
}

/// The mean training loss of `model` on a batch: `x` the inputs, `y` the labels (classifiers)
/// or next tokens `[batch, context]` (language models; ignored by autoencoders).
pub fn loss(model: &dyn Model, params: &[Tensor], x: &Tensor, y: &Tensor) -> Result<Tensor> {
    let out = model.forward(params, x)?;
    match model.objective() {
        Objective::Classify => candle_nn::loss::cross_entropy(&out, y),
        Objective::NextToken => candle_nn::loss::cross_entropy(&out, &y.flatten_all()?),
        Objective::Reconstruct => (out - x)?.sqr()?.mean_all(),
    }
}

/// Summed loss over a batch, for averaging over a whole split.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct EvalSums {
    /// Sum of per-item losses (items: examples, or tokens for language models).
    pub loss_sum: f64,
    /// Items counted.
    pub items: u64,
    /// Items predicted right (`None` for objectives without an accuracy).
    pub correct: Option<u64>,
}

impl EvalSums {
    /// The sums of two batches.
    pub fn merge(self, o: EvalSums) -> EvalSums {
        let correct = match (self.correct, o.correct) {
            (Some(a), Some(b)) => Some(a + b),
            _ => None,
        };
        EvalSums { loss_sum: self.loss_sum + o.loss_sum, items: self.items + o.items, correct }
    }
    /// Mean loss per item.
    pub fn mean_loss(&self) -> f32 {
        (self.loss_sum / self.items.max(1) as f64) as f32
    }
    /// Fraction of items predicted right.
    pub fn accuracy(&self) -> Option<f32> {
        self.correct.map(|c| c as f32 / self.items.max(1) as f32)
    }
}

/// Loss (and accuracy where defined) of `model` on one batch, as sums.
pub fn evaluate(model: &dyn Model, params: &[Tensor], x: &Tensor, y: &Tensor) -> Result<EvalSums> {
    let out = model.forward(params, x)?;
    let (targets, items) = match model.objective() {
        Objective::Reconstruct => {
            let per_example = (out - x)?.sqr()?.mean(D::Minus1)?;
            let items = per_example.dim(0)? as u64;
            let loss_sum = per_example.to_dtype(DType::F64)?.sum_all()?.to_scalar::<f64>()?;
            return Ok(EvalSums { loss_sum, items, correct: None });
        }
        Objective::Classify => (y.clone(), y.dim(0)? as u64),
        Objective::NextToken => (y.flatten_all()?, y.elem_count() as u64),
    };
    let mean = candle_nn::loss::cross_entropy(&out, &targets)?.to_dtype(DType::F64)?.to_scalar::<f64>()?;
    let pred = out.argmax(D::Minus1)?.to_dtype(DType::U32)?;
    let correct = pred.eq(&targets)?.to_dtype(DType::U32)?.sum_all()?.to_scalar::<u32>()? as u64;
    Ok(EvalSums { loss_sum: mean * items as f64, items, correct: Some(correct) })
}

/// Layer normalisation over the last dimension (ε = 1e-5), written with differentiable
/// primitives: candle-nn's fused `layer_norm` has no backward pass.
pub(crate) fn layer_norm(x: &Tensor, gain: &Tensor, bias: &Tensor) -> Result<Tensor> {
    let mean = x.mean_keepdim(D::Minus1)?;
    let centred = x.broadcast_sub(&mean)?;
    let var = centred.sqr()?.mean_keepdim(D::Minus1)?;
    centred.broadcast_div(&(var + 1e-5)?.sqrt()?)?.broadcast_mul(gain)?.broadcast_add(bias)
}

/// Parameter infos sorted by name, and each original position's index in the sorted list, so
/// models can declare parameters in a readable order and still expose the canonical one.
pub(crate) fn sorted_params(declared: Vec<ParamInfo>) -> (Vec<ParamInfo>, Vec<usize>) {
    let mut order: Vec<usize> = (0..declared.len()).collect();
    order.sort_by(|&a, &b| declared[a].name.cmp(&declared[b].name));
    let mut slot = vec![0; declared.len()];
    for (sorted_pos, &orig) in order.iter().enumerate() {
        slot[orig] = sorted_pos;
    }
    (order.iter().map(|&i| declared[i].clone()).collect(), slot)
}

/// N(0, σ²) values.
pub(crate) fn normal(rng: &mut ChaCha8Rng, n: usize, std: f32) -> Vec<f32> {
    use rand_distr::{Distribution, Normal};
    let d = Normal::new(0.0f32, std).expect("finite std");
    (0..n).map(|_| d.sample(rng)).collect()
}

/// Finite-difference gradient check shared by every family's tests.
#[cfg(test)]
pub(crate) mod gradcheck {
    use super::*;
    use candle_core::{Device, Var};
    use rand::SeedableRng;

    /// Compares candle's backward pass (f32) on `loss` with central differences of the same loss
    /// computed in f64, at every `stride`-th coordinate of every tensor. `x` is f32 inputs (or
    /// u32 token ids), `y` labels or next tokens.
    pub fn check(model: &dyn Model, x: &Tensor, y: &Tensor, stride: usize, tol: f64) {
        let dev = Device::Cpu;
        // Jitter every value (zero-initialised biases included) off the initialisation, so no
        // ReLU/max input sits exactly on its kink, where a central difference halves the slope.
        let mut values = model.init(&mut ChaCha8Rng::seed_from_u64(3));
        for (k, v) in values.iter_mut().flatten().enumerate() {
            *v += 0.05 * (k as f32 * 1.7).sin();
        }
        let x64 = if x.dtype() == DType::F32 { x.to_dtype(DType::F64).unwrap() } else { x.clone() };
        let loss_f64 = |i: usize, j: usize, delta: f64| -> f64 {
            let ts: Vec<Tensor> = values
                .iter()
                .zip(model.params())
                .enumerate()
                .map(|(k, (v, p))| {
                    let mut v: Vec<f64> = v.iter().map(|&a| f64::from(a)).collect();
                    if k == i {
                        v[j] += delta;
                    }
                    Tensor::from_vec(v, p.shape.clone(), &dev).unwrap()
                })
                .collect();
            loss(model, &ts, &x64, y).unwrap().to_scalar::<f64>().unwrap()
        };
        let vars: Vec<Var> = values.iter().zip(model.params()).map(|(v, p)| Var::from_slice(v, p.shape.clone(), &dev).unwrap()).collect();
        let ts: Vec<Tensor> = vars.iter().map(|v| v.as_tensor().clone()).collect();
        let grads = loss(model, &ts, x, y).unwrap().backward().unwrap();
        let mut checked = 0;
        for (i, var) in vars.iter().enumerate() {
            let g: Vec<f32> = grads.get(var).unwrap_or_else(|| panic!("no gradient for {}", model.params()[i].name)).flatten_all().unwrap().to_vec1().unwrap();
            for j in (i % stride..g.len()).step_by(stride) {
                // A small step: a larger one crosses ReLU/max kinks.
                let h = 1e-6;
                let fd = (loss_f64(i, j, h) - loss_f64(i, j, -h)) / (2.0 * h);
                assert!((fd - f64::from(g[j])).abs() <= tol + 1e-3 * fd.abs(), "{}[{j}]: finite difference {fd} vs backprop {}", model.params()[i].name, g[j]);
                checked += 1;
            }
        }
        assert!(checked >= model.params().len(), "checked only {checked} coordinates");
    }
}
