//! ConvNet: `depth` blocks of 3×3 convolution (padding 1) + ReLU + optional 2×2 pooling, then
//! a linear head on the flattened feature map. Sized at run time for any C×H×W input.
//!
//! Parameters: `conv{i}/w` `[c_out, c_in, 3, 3]`, `conv{i}/b` `[c_out]`, `head/w`
//! `[features, classes]`, `head/b` `[classes]`; weights N(0, 1/fan_in), biases zero.

use super::family::{Bounded, Family, FamilyGrid};
use super::Model;
use crate::native::convnet::ConvEngine;
use crate::native::NativeNet;
use beatmatch_core::{ParamInfo, Role};
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

/// A ConvNet for `c × h × w` inputs (channels first).
pub struct ConvNet {
    params: Vec<ParamInfo>,
    /// (c_in, c_out, pool after) per block.
    blocks: Vec<(usize, usize, bool)>,
    pooling: Pooling,
    /// Input (channels, height, width).
    chw: (usize, usize, usize),
    features: usize,
    classes: usize,
}

impl ConvNet {
    /// `depth` blocks of `channels` channels.
    pub fn new(chw: (usize, usize, usize), channels: usize, depth: usize, pooling: Pooling, classes: usize) -> Self {
        assert!(depth <= 10, "block names must sort numerically");
        let (mut c_in, mut h, mut w) = chw;
        let mut blocks = Vec::new();
        let mut params = Vec::new();
        for i in 0..depth {
            let pool = pooling != Pooling::None && h >= 2 && w >= 2;
            blocks.push((c_in, channels, pool));
            params.push(ParamInfo::new(format!("conv{i}/b"), vec![channels]));
            let role = if i == 0 { Role::Input } else { Role::Hidden };
            params.push(ParamInfo::new(format!("conv{i}/w"), vec![channels, c_in, 3, 3]).with_role(role));
            if pool {
                h /= 2;
                w /= 2;
            }
            c_in = channels;
        }
        let features = c_in * h * w;
        params.push(ParamInfo::new("head/b", vec![classes]));
        params.push(ParamInfo::new("head/w", vec![features, classes]).with_role(Role::Output));
        Self { params, blocks, pooling, chw, features, classes }
    }
}

impl ConvNet {
    /// Input (channels, height, width).
    pub fn chw(&self) -> (usize, usize, usize) {
        self.chw
    }

    /// Each block's (input channels, output channels, whether it pools), input side first.
    pub fn blocks(&self) -> impl Iterator<Item = (usize, usize, bool)> + '_ {
        self.blocks.iter().copied()
    }

    /// The pooling after each block that pools.
    pub fn pooling(&self) -> Pooling {
        self.pooling
    }

    /// Output classes.
    pub fn classes(&self) -> usize {
        self.classes
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

    /// Logits `[batch, classes]`: a population of one.
    fn forward(&self, params: &[Tensor], x: &Tensor) -> Result<Tensor> {
        super::forward_one(self, params, x)
    }

    fn batches_members(&self) -> bool {
        true
    }

    /// Logits `[K, batch, classes]`. The members' maps sit side by side on the channel axis
    /// (`[batch, K·channels, h, w]`, the batch copied once per member for the first block) and
    /// each block is one grouped convolution, a group per member (candle runs one convolution
    /// per group); bias, ReLU and pooling are one op each for all members, the head one batched
    /// product.
    fn forward_members(&self, params: &[Tensor], x: &Tensor) -> Result<Tensor> {
        let k = params[0].dim(0)?;
        let batch = x.dim(0)?;
        let (c, hh, ww) = self.chw;
        let mut h = x.reshape((batch, 1, c * hh * ww))?.broadcast_as((batch, k, c * hh * ww))?.contiguous()?.reshape((batch, k * c, hh, ww))?;
        for (i, &(c_in, c_out, pool)) in self.blocks.iter().enumerate() {
            let (b, w) = (&params[2 * i], &params[2 * i + 1]);
            let w = w.reshape((k * c_out, c_in, 3, 3))?;
            h = h.conv2d(&w, 1, 1, 1, k)?.broadcast_add(&b.reshape((1, k * c_out, 1, 1))?)?.relu()?;
            if pool {
                h = pool2(&h, self.pooling)?;
            }
        }
        let n = self.blocks.len();
        let features = h.reshape((batch, k, self.features))?.transpose(0, 1)?.contiguous()?;
        features.matmul(&params[2 * n + 1])?.broadcast_add(&params[2 * n].unsqueeze(1)?)
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

/// The `conv` family: `depth` blocks of 3×3 convolution + ReLU + pooling, then a linear head.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ConvConfig {
    /// Channels per block.
    pub channels: usize,
    /// Number of conv blocks.
    pub depth: usize,
    /// Pooling after each block.
    pub pooling: Pooling,
}

/// The registry's `conv: { channels, depth, pooling }`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConvGrid {
    channels: Vec<Bounded<1, 1024>>,
    depth: Vec<Bounded<1, 8>>,
    pooling: Vec<Pooling>,
}

impl ConvConfig {
    /// The network for inputs of `shape` (`[c, h, w]`, `[h, w]`, or a vector as one row).
    fn net(&self, shape: &[usize], classes: usize) -> ConvNet {
        let chw = match shape {
            [c, h, w] => (*c, *h, *w),
            [h, w] => (1, *h, *w),
            other => (1, 1, other.iter().product()),
        };
        ConvNet::new(chw, self.channels, self.depth, self.pooling, classes)
    }
}

impl FamilyGrid for ConvConfig {
    type Grid = ConvGrid;
    fn expand(g: &ConvGrid) -> Vec<Self> {
        g.channels
            .iter()
            .flat_map(|c| g.depth.iter().flat_map(move |d| g.pooling.iter().map(move |&pooling| ConvConfig { channels: c.get(), depth: d.get(), pooling })))
            .collect()
    }
}

impl Family for ConvConfig {
    fn id(&self) -> String {
        format!("conv-c{}-d{}-{}", self.channels, self.depth, self.pooling.as_str())
    }
    fn build(&self, shape: &[usize], classes: usize) -> Box<dyn Model> {
        Box::new(self.net(shape, classes))
    }
    fn native(&self, shape: &[usize], classes: usize) -> Option<Box<dyn NativeNet>> {
        Some(Box::new(ConvEngine::new(&self.net(shape, classes))))
    }
    /// Each block's conv output, its activation and the pooled map, at full resolution (an
    /// upper bound: pooling shrinks later blocks).
    fn activation_floats(&self, shape: &[usize], classes: usize) -> u64 {
        let input = shape.iter().product::<usize>() as u64;
        let hw = match shape {
            [_, h, w] | [h, w] => (h * w) as u64,
            other => other.iter().product::<usize>() as u64,
        };
        input + 3 * (self.channels * self.depth) as u64 * hw + 2 * classes as u64
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
        let x = Tensor::from_vec((0..2 * 36).map(|i| (((i * 7919) % 23) as f32 - 11.0) / 7.0).collect::<Vec<_>>(), (2, 36), &dev).unwrap();
        let y = Tensor::from_vec(vec![1u32, 3], 2, &dev).unwrap();
        // Depth 2 pools 6×6 → 3×3 → 1×1: the odd case.
        for (p, d) in [(Pooling::None, 1), (Pooling::None, 2), (Pooling::Avg, 1), (Pooling::Avg, 2), (Pooling::Max, 1), (Pooling::Max, 2)] {
            gradcheck::check(&ConvNet::new((1, 6, 6), 3, d, p, 4), &x, &y, 5, 1e-5);
        }
        // Three input channels (CIFAR-10's layout).
        let x3 = Tensor::from_vec((0..2 * 48).map(|i| (((i * 7919) % 23) as f32 - 11.0) / 7.0).collect::<Vec<_>>(), (2, 48), &dev).unwrap();
        gradcheck::check(&ConvNet::new((3, 4, 4), 2, 1, Pooling::Max, 4), &x3, &y, 2, 1e-5);
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
        let m = ConvNet::new((1, 28, 28), 16, 2, Pooling::Max, 10);
        let conv = (16 * 9 + 16) + (16 * 16 * 9 + 16);
        assert_eq!(m.param_count(), (conv + 16 * 7 * 7 * 10 + 10) as u64);
    }
}
