//! Multi-layer perceptron (and, with no hidden layers, logistic regression).
//!
//! Layer `i` holds `layer{i}/w` `[fan_in, fan_out]` (so the forward pass is `x @ w`, no transpose)
//! and `layer{i}/b` `[fan_out]`. Weights are drawn N(0, 1/fan_in) (LeCun normal, haiku's default
//! scale), biases start at zero.

use super::family::{Bounded, Family, FamilyGrid};
use super::Model;
use crate::dense::DenseShape;
use beatmatch_core::{ParamInfo, Role};
use candle_core::{Result, Tensor};
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, Normal};
use serde::{Deserialize, Serialize};

/// Hidden-layer nonlinearity.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Activation {
    /// max(0, x)
    Relu,
    /// tanh(x)
    Tanh,
    /// x·Φ(x) (exact, erf form)
    Gelu,
}

impl Activation {
    /// Registry name.
    pub fn as_str(self) -> &'static str {
        match self {
            Activation::Relu => "relu",
            Activation::Tanh => "tanh",
            Activation::Gelu => "gelu",
        }
    }

    fn apply(self, x: &Tensor) -> Result<Tensor> {
        match self {
            Activation::Relu => x.relu(),
            Activation::Tanh => x.tanh(),
            Activation::Gelu => x.gelu_erf(),
        }
    }
}

/// An MLP with the given layer widths.
pub struct Mlp {
    params: Vec<ParamInfo>,
    /// (fan_in, fan_out) per layer.
    layers: Vec<(usize, usize)>,
    activation: Activation,
}

impl Mlp {
    /// `input → hidden[0] → … → classes`.
    pub fn new(input: usize, hidden: &[usize], classes: usize, activation: Activation) -> Self {
        let mut dims = vec![input];
        dims.extend_from_slice(hidden);
        dims.push(classes);
        let layers: Vec<(usize, usize)> = dims.windows(2).map(|w| (w[0], w[1])).collect();
        assert!(layers.len() <= 10, "layer names must sort numerically");
        let params = layers
            .iter()
            .enumerate()
            .flat_map(|(i, &(fan_in, fan_out))| {
                // The first layer reads the input, the last writes the output.
                let role = if i == 0 {
                    Role::Input
                } else if i + 1 == layers.len() {
                    Role::Output
                } else {
                    Role::Hidden
                };
                [ParamInfo::new(format!("layer{i}/b"), vec![fan_out]), ParamInfo::new(format!("layer{i}/w"), vec![fan_in, fan_out]).with_role(role)]
            })
            .collect();
        Self { params, layers, activation }
    }
}

impl Model for Mlp {
    fn params(&self) -> &[ParamInfo] {
        &self.params
    }

    fn init(&self, rng: &mut ChaCha8Rng) -> Vec<Vec<f32>> {
        let mut out = Vec::with_capacity(self.params.len());
        for &(fan_in, fan_out) in &self.layers {
            let normal = Normal::new(0.0f32, (1.0 / fan_in as f32).sqrt()).unwrap();
            out.push(vec![0.0; fan_out]);
            out.push((0..fan_in * fan_out).map(|_| normal.sample(rng)).collect());
        }
        out
    }

    fn forward(&self, params: &[Tensor], x: &Tensor) -> Result<Tensor> {
        self.layers_from(params, x.clone(), &|b| Ok(b.clone()))
    }

    fn batches_members(&self) -> bool {
        true
    }

    /// Every member reads the same `x` (a stride-0 view, not K copies); its biases are
    /// `[K, 1, fan_out]` to broadcast over the batch. Each member's product is its own
    /// matrix product of the shapes [`Model::forward`] multiplies.
    fn forward_members(&self, params: &[Tensor], x: &Tensor) -> Result<Tensor> {
        let k = params[0].dim(0)?;
        let (rows, width) = x.dims2()?;
        self.layers_from(params, x.unsqueeze(0)?.broadcast_as((k, rows, width))?, &|b| b.unsqueeze(1))
    }
}

impl Mlp {
    /// The layers applied to `h`, each bias shaped by `bias` before it is added.
    fn layers_from(&self, params: &[Tensor], mut h: Tensor, bias: &dyn Fn(&Tensor) -> Result<Tensor>) -> Result<Tensor> {
        let last = self.layers.len() - 1;
        for i in 0..self.layers.len() {
            let (b, w) = (&params[2 * i], &params[2 * i + 1]);
            h = h.matmul(w)?.broadcast_add(&bias(b)?)?;
            if i != last {
                h = self.activation.apply(&h)?;
            }
        }
        Ok(h)
    }
}

/// The `mlp` family: `depth` hidden layers of `width` units.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct MlpConfig {
    /// Hidden units per layer.
    pub width: usize,
    /// Number of hidden layers.
    pub depth: usize,
    /// Hidden activation.
    pub activation: Activation,
}

/// The registry's `mlp: { width, depth, activation }`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MlpGrid {
    width: Vec<Bounded<1, 65536>>,
    depth: Vec<Bounded<0, 8>>,
    activation: Vec<Activation>,
}

impl FamilyGrid for MlpConfig {
    type Grid = MlpGrid;
    fn expand(g: &MlpGrid) -> Vec<Self> {
        g.width
            .iter()
            .flat_map(|w| {
                g.depth.iter().flat_map(move |d| g.activation.iter().map(move |&activation| MlpConfig { width: w.get(), depth: d.get(), activation }))
            })
            .collect()
    }
}

impl Family for MlpConfig {
    fn id(&self) -> String {
        format!("mlp-w{}-d{}-{}", self.width, self.depth, self.activation.as_str())
    }
    fn build(&self, shape: &[usize], classes: usize) -> Box<dyn Model> {
        Box::new(Mlp::new(shape.iter().product(), &vec![self.width; self.depth], classes, self.activation))
    }
    fn activation_floats(&self, shape: &[usize], classes: usize) -> u64 {
        shape.iter().product::<usize>() as u64 + 2 * (self.width * self.depth) as u64 + 2 * classes as u64
    }
    fn dense(&self, _input: usize, classes: usize) -> Option<DenseShape> {
        Some(DenseShape::classifier(vec![self.width; self.depth], classes, self.activation))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::models::gradcheck;
    use candle_core::Device;

    #[test]
    fn gradients_match_finite_differences() {
        let dev = Device::Cpu;
        let x = Tensor::from_vec((0..20).map(|i| ((i * 37 % 11) as f32 - 5.0) / 4.0).collect::<Vec<_>>(), (4, 5), &dev).unwrap();
        let y = Tensor::from_vec(vec![0u32, 2, 1, 2], 4, &dev).unwrap();
        for (activation, hidden) in [(Activation::Relu, &[][..]), (Activation::Tanh, &[6, 4]), (Activation::Gelu, &[6]), (Activation::Relu, &[7])] {
            gradcheck::check(&Mlp::new(5, hidden, 3, activation), &x, &y, 3, 1e-5);
        }
    }

    #[test]
    fn parameter_count_is_exact() {
        let m = Mlp::new(784, &[256, 256], 10, Activation::Relu);
        assert_eq!(m.param_count(), 784 * 256 + 256 + 256 * 256 + 256 + 256 * 10 + 10);
        let names: Vec<_> = m.params().iter().map(|p| p.name.clone()).collect();
        let mut sorted = names.clone();
        sorted.sort();
        assert_eq!(names, sorted);
    }
}
