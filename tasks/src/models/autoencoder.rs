//! MLP autoencoder: `input → width×depth → code → width×depth → input`, every hidden layer (the
//! code included) followed by the activation, the output linear. Trained on the mean squared
//! reconstruction error. Parameters and initialisation are the MLP's (`layer{i}/w`, `layer{i}/b`).

use super::mlp::{Activation, Mlp};
use super::{Model, Objective};
use beatmatch_core::ParamInfo;
use candle_core::{Result, Tensor};
use rand_chacha::ChaCha8Rng;

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
