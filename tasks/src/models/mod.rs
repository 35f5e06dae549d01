//! Model families, sized at run time from the registry. One module per family, each holding
//! its descriptor (a [`Family`]: configuration, grid, network, memory, context, dense shape,
//! normaliser) and its network; [`crate::with_families!`] is the one list. The training objective
//! each network is trained on lives here, shared by all.

pub mod autoencoder;
pub mod conv;
pub mod family;
pub mod logreg;
pub mod lstm;
pub mod mlp;
pub mod transformer;

use crate::dense::DenseShape;
use beatmatch_core::ParamInfo;
use candle_core::{DType, Result, Tensor, D};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

pub use conv::Pooling;
pub use family::{Family, FamilyGrid, Normalizer};
pub use mlp::Activation;

/// The model families: the one list. Each entry is `registry key: ModelConfig variant(config
/// type)`; a new family is its module plus one line here. `with_families!(m)` expands to
/// `m! { list }`, so each consumer (the [`ModelConfig`] enum here, the registry's block
/// struct) is generated from it.
#[macro_export]
macro_rules! with_families {
    ($m:ident) => {
        $m! {
            logreg: Logreg($crate::models::logreg::Logreg),
            mlp: Mlp($crate::models::mlp::MlpConfig),
            conv: Conv($crate::models::conv::ConvConfig),
            autoencoder: Autoencoder($crate::models::autoencoder::AutoencoderConfig),
            transformer: Transformer($crate::models::transformer::TransformerConfig),
            lstm: Lstm($crate::models::lstm::LstmConfig),
        }
    };
}

/// [`ModelConfig`] and its dispatch to each family's [`Family`].
macro_rules! model_config {
    ($($key:ident: $variant:ident($config:ty),)*) => {
        /// A resolved model configuration: one family's configuration, serialised with its
        /// fields under the tag `family` (the registry key), as it always was, so content
        /// hashes do not move.
        #[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
        #[serde(tag = "family", rename_all = "snake_case")]
        pub enum ModelConfig {
            $(
                #[doc = concat!("The `", stringify!($key), "` family.")]
                $variant($config),
            )*
        }

        /// Every family's registry key, in list order.
        pub const FAMILIES: &[&str] = &[$(stringify!($key)),*];

        impl ModelConfig {
            /// The family's registry key, e.g. `mlp`.
            pub fn family(&self) -> &'static str {
                match self {
                    $(ModelConfig::$variant(_) => stringify!($key),)*
                }
            }

            /// Apply `f` to the family's descriptor.
            fn with<T>(&self, f: impl Fn(&dyn Family) -> T) -> T {
                match self {
                    $(ModelConfig::$variant(c) => f(c),)*
                }
            }
        }
    };
}

with_families!(model_config);

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
        self.with(|f| f.id())
    }

    /// Whether the family trains on a text dataset.
    pub fn is_text(&self) -> bool {
        self.with(|f| f.text())
    }

    /// What the configuration must satisfy beyond its axes' ranges: `Err(why)`.
    pub fn check(&self) -> std::result::Result<(), String> {
        self.with(|f| f.check())
    }

    /// Tokens per training sequence, for language models.
    pub fn context(&self) -> Option<usize> {
        self.with(|f| f.context())
    }

    /// The network this configuration builds for inputs of `shape` (e.g. `[28, 28]` or `[40]`)
    /// and `classes` outputs (the vocabulary size for language models).
    pub fn build(&self, shape: &[usize], classes: usize) -> Box<dyn Model> {
        self.with(|f| f.build(shape, classes))
    }

    /// Floats one example's forward pass keeps for its backward pass.
    pub fn activation_floats(&self, shape: &[usize], classes: usize) -> u64 {
        self.with(|f| f.activation_floats(shape, classes))
    }

    /// The native dense engine's layer widths, where the family trains there.
    pub fn dense(&self, input: usize, classes: usize) -> Option<DenseShape> {
        self.with(|f| f.dense(input, classes))
    }

    /// The native engine's network for inputs of `shape` and `classes` outputs, where the
    /// family trains there (as populations).
    pub fn native(&self, shape: &[usize], classes: usize) -> Option<Box<dyn crate::native::NativeNet>> {
        self.with(|f| f.native(shape, classes))
    }

    /// How meta-training normalises the family's losses.
    pub fn normalizer(&self) -> Normalizer {
        self.with(|f| f.normalizer())
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
    /// Whether [`Model::forward_members`] computes several members at once (a device
    /// population); otherwise the family trains one member at a time on a device.
    fn batches_members(&self) -> bool {
        false
    }
    /// The outputs of K members for the shared inputs `x`: each of `params` is `[K, …]`, member
    /// k's tensor at index k, and the result is `[K, …]`, member k's [`Model::forward`] at
    /// index k. A member's arithmetic must not depend on K (on the CPU its bits are its
    /// [`Model::forward`]'s).
    fn forward_members(&self, _params: &[Tensor], _x: &Tensor) -> Result<Tensor> {
        candle_core::bail!("this family trains one member at a time on a device")
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

/// [`Model::forward`] of a family whose one implementation is [`Model::forward_members`]: a
/// population of one, each parameter `[1, …]`, the output's member axis dropped.
pub(crate) fn forward_one(model: &dyn Model, params: &[Tensor], x: &Tensor) -> Result<Tensor> {
    let params = params.iter().map(|p| p.unsqueeze(0)).collect::<Result<Vec<_>>>()?;
    model.forward_members(&params, x)?.squeeze(0)
}

/// [`loss`] of K members at once: `params` each `[K, …]` (see [`Model::forward_members`]);
/// the result is `[K]`, member k's mean training loss at index k, computed as [`loss`]
/// computes one member's.
pub fn member_losses(model: &dyn Model, params: &[Tensor], x: &Tensor, y: &Tensor) -> Result<Tensor> {
    let out = model.forward_members(params, x)?;
    match model.objective() {
        Objective::Classify => member_cross_entropy(&out, y),
        Objective::NextToken => member_cross_entropy(&out, &y.flatten_all()?),
        Objective::Reconstruct => out.broadcast_sub(x)?.sqr()?.mean((1, 2)),
    }
}

/// Each member's mean cross-entropy of logits `out` `[K, n, classes]` against `targets` `[n]`:
/// candle-nn's `cross_entropy` (log-softmax, gather, sum, scale by −1/n) per member.
fn member_cross_entropy(out: &Tensor, targets: &Tensor) -> Result<Tensor> {
    let (k, n, _) = out.dims3()?;
    let t = targets.reshape((1, n, 1))?.broadcast_as((k, n, 1))?.contiguous()?;
    candle_nn::ops::log_softmax(out, D::Minus1)?.gather(&t, 2)?.sum((1, 2))?.affine(-1.0 / n as f64, 0.0)
}

/// [`evaluate`] of K members at once (`params` as [`member_losses`] takes them): each
/// member's sums, computed as [`evaluate`] computes one member's.
pub fn evaluate_members(model: &dyn Model, params: &[Tensor], x: &Tensor, y: &Tensor) -> Result<Vec<EvalSums>> {
    let out = model.forward_members(params, x)?;
    let (targets, items) = match model.objective() {
        Objective::Reconstruct => {
            let per_example = out.broadcast_sub(x)?.sqr()?.mean(D::Minus1)?;
            let items = per_example.dim(1)? as u64;
            let sums = per_example.to_dtype(DType::F64)?.sum(1)?.to_vec1::<f64>()?;
            return Ok(sums.into_iter().map(|loss_sum| EvalSums { loss_sum, items, correct: None }).collect());
        }
        Objective::Classify => (y.clone(), y.dim(0)? as u64),
        Objective::NextToken => (y.flatten_all()?, y.elem_count() as u64),
    };
    let means = member_cross_entropy(&out, &targets)?.to_dtype(DType::F64)?.to_vec1::<f64>()?;
    let pred = out.argmax(D::Minus1)?.to_dtype(DType::U32)?;
    let correct = pred.broadcast_eq(&targets.unsqueeze(0)?)?.to_dtype(DType::U32)?.sum(1)?.to_vec1::<u32>()?;
    Ok(means.into_iter().zip(correct).map(|(mean, c)| EvalSums { loss_sum: mean * items as f64, items, correct: Some(u64::from(c)) }).collect())
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
