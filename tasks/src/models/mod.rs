//! Model families, sized at run time from the registry. One module per family.

pub mod conv;
pub mod mlp;

use beatmatch_core::ParamInfo;
use candle_core::{Result, Tensor};
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
}

impl ModelConfig {
    /// The readable id fragment, e.g. `logreg` or `mlp-w128-d2-relu`.
    pub fn id(&self) -> String {
        match self {
            ModelConfig::Logreg => "logreg".into(),
            ModelConfig::Mlp { width, depth, activation } => format!("mlp-w{width}-d{depth}-{}", activation.as_str()),
            ModelConfig::Conv { channels, depth, pooling } => format!("conv-c{channels}-d{depth}-{}", pooling.as_str()),
        }
    }

    /// The network this configuration builds for inputs of `shape` (e.g. `[28, 28]` or `[40]`)
    /// and `classes` outputs.
    pub fn build(&self, shape: &[usize], classes: usize) -> Box<dyn Model> {
        let input_len = shape.iter().product();
        match *self {
            ModelConfig::Conv { channels, depth, pooling } => {
                let hw = match shape {
                    [h, w] => (*h, *w),
                    other => (1, other.iter().product()),
                };
                Box::new(conv::ConvNet::new(hw, channels, depth, pooling, classes))
            }
            ModelConfig::Logreg => Box::new(mlp::Mlp::new(input_len, &[], classes, Activation::Relu)),
            ModelConfig::Mlp { width, depth, activation } => {
                Box::new(mlp::Mlp::new(input_len, &vec![width; depth], classes, activation))
            }
        }
    }
}

/// A differentiable model: parameter layout, initialisation and forward pass.
pub trait Model: Send + Sync {
    /// Parameter tensors in canonical order (sorted by name).
    fn params(&self) -> &[ParamInfo];
    /// Freshly initialised parameter values, one flat buffer per tensor, from `rng`.
    fn init(&self, rng: &mut ChaCha8Rng) -> Vec<Vec<f32>>;
    /// Logits `[batch, classes]` for inputs `x` `[batch, input_len]`.
    fn forward(&self, params: &[Tensor], x: &Tensor) -> Result<Tensor>;
    /// Total trainable parameters.
    fn param_count(&self) -> u64 {
        self.params().iter().map(|p| p.numel() as u64).sum()
    }
}
