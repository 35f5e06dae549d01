//! MLP autoencoder: `input → width×depth → code → width×depth → input`, every hidden layer (the
//! code included) followed by the activation, the output linear. Trained on the mean squared
//! reconstruction error. Parameters and initialisation are the MLP's (`layer{i}/w`, `layer{i}/b`).

use super::family::{Bounded, Family, FamilyGrid, Normalizer};
use super::mlp::{Activation, Mlp};
use super::{Model, Objective};
use crate::dense::DenseShape;
use beatmatch_core::ParamInfo;
use candle_core::{Result, Tensor};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

/// An MLP autoencoder.
pub struct Autoencoder {
    mlp: Mlp,
}

impl Autoencoder {
    /// Mirrored encoder/decoder of `depth` layers of `width` around a `code`-unit bottleneck.
    pub fn new(input: usize, width: usize, depth: usize, code: usize, activation: Activation) -> Self {
        let mut hidden = vec![width; depth];
        hidden.push(code);
        hidden.extend(std::iter::repeat_n(width, depth));
        Self { mlp: Mlp::new(input, &hidden, input, activation) }
    }
}

impl Model for Autoencoder {
    fn params(&self) -> &[ParamInfo] {
        self.mlp.params()
    }
    fn init(&self, rng: &mut ChaCha8Rng) -> Vec<Vec<f32>> {
        self.mlp.init(rng)
    }
    fn forward(&self, params: &[Tensor], x: &Tensor) -> Result<Tensor> {
        self.mlp.forward(params, x)
    }
    fn objective(&self) -> Objective {
        Objective::Reconstruct
    }
    fn batches_members(&self) -> bool {
        true
    }
    fn forward_members(&self, params: &[Tensor], x: &Tensor) -> Result<Tensor> {
        self.mlp.forward_members(params, x)
    }
}

/// The `autoencoder` family: `depth` layers of `width` units down to a `code`-unit bottleneck
/// and back (mirrored), trained on the mean squared reconstruction error.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct AutoencoderConfig {
    /// Hidden units per encoder/decoder layer.
    pub width: usize,
    /// Hidden layers on each side of the code.
    pub depth: usize,
    /// Bottleneck units.
    pub code: usize,
    /// Hidden activation (the code layer included; the output is linear).
    pub activation: Activation,
}

/// The registry's `autoencoder: { width, depth, code, activation }`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AutoencoderGrid {
    width: Vec<Bounded<1, 65536>>,
    depth: Vec<Bounded<0, 4>>,
    code: Vec<Bounded<1, 4096>>,
    activation: Vec<Activation>,
}

impl FamilyGrid for AutoencoderConfig {
    type Grid = AutoencoderGrid;
    fn expand(g: &AutoencoderGrid) -> Vec<Self> {
        g.width
            .iter()
            .flat_map(|w| {
                g.depth.iter().flat_map(move |d| {
                    g.code.iter().flat_map(move |c| {
                        g.activation.iter().map(move |&activation| AutoencoderConfig { width: w.get(), depth: d.get(), code: c.get(), activation })
                    })
                })
            })
            .collect()
    }
}

impl Family for AutoencoderConfig {
    fn id(&self) -> String {
        format!("ae-w{}-d{}-c{}-{}", self.width, self.depth, self.code, self.activation.as_str())
    }
    fn build(&self, shape: &[usize], _classes: usize) -> Box<dyn Model> {
        Box::new(Autoencoder::new(shape.iter().product(), self.width, self.depth, self.code, self.activation))
    }
    fn activation_floats(&self, shape: &[usize], _classes: usize) -> u64 {
        3 * shape.iter().product::<usize>() as u64 + 2 * (2 * self.width * self.depth + self.code) as u64
    }
    fn dense(&self, input: usize, _classes: usize) -> Option<DenseShape> {
        let mut hidden = vec![self.width; self.depth];
        hidden.push(self.code);
        hidden.extend(std::iter::repeat_n(self.width, self.depth));
        Some(DenseShape { hidden, out: input, activation: self.activation, objective: Objective::Reconstruct })
    }
    /// Reconstruction losses have the data's scale, not ln C.
    fn normalizer(&self) -> Normalizer {
        Normalizer::InitialLoss
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::models::gradcheck;
    use candle_core::Device;

    #[test]
    fn gradients_match_finite_differences() {
        let x = Tensor::from_vec((0..24).map(|i| ((i * 37 % 11) as f32) / 10.0).collect::<Vec<_>>(), (4, 6), &Device::Cpu).unwrap();
        let unused = Tensor::zeros(4, candle_core::DType::U32, &Device::Cpu).unwrap();
        for act in [Activation::Tanh, Activation::Relu, Activation::Gelu] {
            gradcheck::check(&Autoencoder::new(6, 5, 1, 2, act), &x, &unused, 2, 1e-6);
        }
        gradcheck::check(&Autoencoder::new(6, 4, 0, 3, Activation::Tanh), &x, &unused, 1, 1e-6);
    }

    #[test]
    fn parameter_count_is_exact() {
        let m = Autoencoder::new(784, 128, 1, 32, Activation::Relu);
        let layers = [(784, 128), (128, 32), (32, 128), (128, 784)];
        assert_eq!(m.param_count(), layers.iter().map(|(i, o)| (i * o + o) as u64).sum::<u64>());
    }
}
