//! ConvNet: `depth` blocks of 3×3 convolution (padding 1) + ReLU + optional 2×2 pooling, then
//! a linear head on the flattened feature map. Sized at run time for any H×W input.
//!
//! Parameters: `conv{i}/w` `[c_out, c_in, 3, 3]`, `conv{i}/b` `[c_out]`, `head/w`
//! `[features, classes]`, `head/b` `[classes]`; weights N(0, 1/fan_in), biases zero.

use super::Model;
use beatmatch_core::ParamInfo;
use candle_core::{Result, Tensor};
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, Normal};
use serde::{Deserialize, Serialize};

/// Pooling after each convolution.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Pooling {
    /// 2×2 max pooling (skipped once the map is smaller than 2×2).
    Max,
    /// 2×2 average pooling (likewise).
    Avg,
    /// No pooling.
    None,
}

impl Pooling {
    /// Registry name.
    pub fn as_str(self) -> &'static str {
        match self {
            Pooling::Max => "max",
            Pooling::Avg => "avg",
            Pooling::None => "none",
        }
    }
}

/// A ConvNet for `h × w` single-channel inputs.
pub struct ConvNet {
    params: Vec<ParamInfo>,
    /// (c_in, c_out, pool after) per block.
    blocks: Vec<(usize, usize, bool)>,
    pooling: Pooling,
    hw: (usize, usize),
    features: usize,
    classes: usize,
}

impl ConvNet {
    /// `depth` blocks of `channels` channels.
    pub fn new(hw: (usize, usize), channels: usize, depth: usize, pooling: Pooling, classes: usize) -> Self {
        assert!(depth <= 10, "block names must sort numerically");
        let (mut h, mut w) = hw;
        let mut blocks = Vec::new();
        let mut params = Vec::new();
        let mut c_in = 1;
        for i in 0..depth {
            let pool = pooling != Pooling::None && h >= 2 && w >= 2;
            blocks.push((c_in, channels, pool));
            params.push(ParamInfo { name: format!("conv{i}/b"), shape: vec![channels] });
            params.push(ParamInfo { name: format!("conv{i}/w"), shape: vec![channels, c_in, 3, 3] });
            if pool {
                h /= 2;
                w /= 2;
            }
            c_in = channels;
        }
        let features = c_in * h * w;
        params.push(ParamInfo { name: "head/b".into(), shape: vec![classes] });
        params.push(ParamInfo { name: "head/w".into(), shape: vec![features, classes] });
        Self { params, blocks, pooling, hw, features, classes }
    }
}

impl Model for ConvNet {
    fn params(&self) -> &[ParamInfo] {
        &self.params
    }

    fn init(&self, rng: &mut ChaCha8Rng) -> Vec<Vec<f32>> {
        let mut out = Vec::with_capacity(self.params.len());
        let mut normal = |fan_in: usize, n: usize| -> Vec<f32> {
            let d = Normal::new(0.0f32, (1.0 / fan_in as f32).sqrt()).unwrap();
            (0..n).map(|_| d.sample(rng)).collect()
        };
        for &(c_in, c_out, _) in &self.blocks {
            out.push(vec![0.0; c_out]);
            out.push(normal(c_in * 9, c_out * c_in * 9));
        }
        out.push(vec![0.0; self.classes]);
        out.push(normal(self.features, self.features * self.classes));
        out
    }

    fn forward(&self, params: &[Tensor], x: &Tensor) -> Result<Tensor> {
        let batch = x.dim(0)?;
        let mut h = x.reshape((batch, 1, self.hw.0, self.hw.1))?;
        for (i, &(_, c_out, pool)) in self.blocks.iter().enumerate() {
            let (b, w) = (&params[2 * i], &params[2 * i + 1]);
            h = h.conv2d(w, 1, 1, 1, 1)?.broadcast_add(&b.reshape((1, c_out, 1, 1))?)?.relu()?;
            if pool {
                h = pool2(&h, self.pooling)?;
            }
        }
        let n = self.blocks.len();
        h.flatten_from(1)?.matmul(&params[2 * n + 1])?.broadcast_add(&params[2 * n])
    }
}

/// 2×2 pooling with stride 2 (odd trailing rows/columns dropped, as `max_pool2d` does), built
/// from narrow + reshape + max/mean so the backward pass is correct: candle 0.11's own
/// `max_pool2d` backward scales the gradient by 1/4 instead of routing it to the maximum, and
/// both its pooling backwards misroute gradients when H or W is odd (both shown by this
/// module's gradient check).
fn pool2(x: &Tensor, pooling: Pooling) -> Result<Tensor> {
    let (b, c, h, w) = x.dims4()?;
    let (h2, w2) = (h / 2, w / 2);
    let x = x.narrow(2, 0, 2 * h2)?.narrow(3, 0, 2 * w2)?.reshape((b, c, h2, 2, w2, 2))?;
    match pooling {
        Pooling::Max => x.max(5)?.max(3),
        Pooling::Avg => x.mean(5)?.mean(3),
        Pooling::None => unreachable!("no pooling requested"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{DType, Device, Var};
    use rand::SeedableRng;

    /// Central finite differences in f64 (step 1e-6: a larger step crosses ReLU kinks when a
    /// bias moves a whole channel) against candle's backward pass in f32.
    fn gradient_check(pooling: Pooling, depth: usize) {
        let model = ConvNet::new((6, 6), 3, depth, pooling, 4);
        let values = model.init(&mut ChaCha8Rng::seed_from_u64(3));
        let dev = Device::Cpu;
        let x: Vec<f32> = (0..2 * 36).map(|i| (((i * 7919) % 23) as f32 - 11.0) / 7.0).collect();
        let y = Tensor::from_vec(vec![1u32, 3], 2, &dev).unwrap();
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
            let xt = Tensor::from_slice(&x, (2, 36), &dev).unwrap().to_dtype(DType::F64).unwrap();
            candle_nn::loss::cross_entropy(&model.forward(&ts, &xt).unwrap(), &y).unwrap().to_scalar::<f64>().unwrap()
        };
        let vars: Vec<Var> = values.iter().zip(model.params()).map(|(v, p)| Var::from_slice(v, p.shape.clone(), &dev).unwrap()).collect();
        let ts: Vec<Tensor> = vars.iter().map(|v| v.as_tensor().clone()).collect();
        let xt = Tensor::from_slice(&x, (2, 36), &dev).unwrap();
        let grads = candle_nn::loss::cross_entropy(&model.forward(&ts, &xt).unwrap(), &y).unwrap().backward().unwrap();
        for (i, var) in vars.iter().enumerate() {
            let g: Vec<f32> = grads.get(var).unwrap().flatten_all().unwrap().to_vec1().unwrap();
            for j in (0..g.len()).step_by(5) {
                let h = 1e-6;
                let fd = (loss_f64(i, j, h) - loss_f64(i, j, -h)) / (2.0 * h);
                assert!((fd - f64::from(g[j])).abs() <= 1e-4 + 1e-3 * fd.abs(), "{:?} {}[{j}]: fd {fd} vs backprop {}", pooling, model.params()[i].name, g[j]);
            }
        }
    }

    #[test]
    fn gradients_match_finite_differences() {
        // Depth 2 pools 6×6 → 3×3 → 1×1: the odd case.
        for (p, d) in [(Pooling::None, 1), (Pooling::None, 2), (Pooling::Avg, 1), (Pooling::Avg, 2), (Pooling::Max, 1), (Pooling::Max, 2)] {
            gradient_check(p, d);
        }
    }

    #[test]
    fn pooling_matches_candles_forward() {
        let dev = Device::Cpu;
        let x = Tensor::from_vec((0..2 * 3 * 7 * 6).map(|i| ((i * 37) % 19) as f32).collect::<Vec<_>>(), (2, 3, 7, 6), &dev).unwrap();
        for (p, reference) in [(Pooling::Max, x.max_pool2d(2).unwrap()), (Pooling::Avg, x.avg_pool2d(2).unwrap())] {
            let ours = pool2(&x, p).unwrap();
            assert_eq!(ours.dims(), reference.dims());
            let d = (ours - reference).unwrap().abs().unwrap().max_all().unwrap().to_scalar::<f32>().unwrap();
            assert!(d < 1e-6, "{p:?}: {d}");
        }
    }

    #[test]
    fn parameter_count_is_exact() {
        // 28×28, 16 channels, 2 blocks with pooling: 28 → 14 → 7.
        let m = ConvNet::new((28, 28), 16, 2, Pooling::Max, 10);
        let conv = (16 * 9 + 16) + (16 * 16 * 9 + 16);
        assert_eq!(m.param_count(), (conv + 16 * 7 * 7 * 10 + 10) as u64);
    }
}
