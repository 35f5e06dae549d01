//! What the learned optimizers' device implementations share: the per-parameter MLP as
//! matrix products over a tensor's `[n, features]` matrix, the per-feature normaliser, and the
//! step. These materialise the feature matrix the host kernels never build (n × 28 floats for
//! small_fc), which is what matrix products on a GPU want.

use crate::accum::tanh_embedding;
use crate::features::{Mlp, StepRule};
use beatmatch_device::{times, value};
use candle_core::{DType, Device, Tensor, Var};

/// `net` at training step `iteration` as a fused kernel reads it
/// (`beatmatch_device::lopt::Net`): the step embedding folded into the first bias as the host
/// rule folds it ([`Mlp::with_constant_tail`]), then every layer's weights and biases.
pub fn fused_net(kernel: beatmatch_device::lopt::LoptKernel, net: &Mlp, iteration: u32) -> candle_core::Result<beatmatch_device::lopt::Net> {
    let net = net.with_constant_tail(&tanh_embedding(iteration as f32));
    let values = net.layers.iter().flat_map(|(w, b, _, _)| w.iter().chain(b)).copied().collect();
    beatmatch_device::lopt::Net::new(kernel, net.layers[0].3, values)
}

/// Inputs of the step embedding, the last inputs of small_fc's and MLP-LOpt's first layer.
pub const EMBEDDING: usize = 11;

/// A per-parameter network on the device. small_fc's and MLP-LOpt's are uploaded once but for
/// the first layer's bias, into which each step folds its embedding (on the host: `out`
/// numbers); VeLO's, interpolated per tensor and step, are uploaded whole each step.
#[derive(Clone, Debug)]
pub struct DeviceNet {
    host: Mlp,
    /// Weights `[in, out]` per layer (the first without the embedding's rows).
    w: Vec<Tensor>,
    /// Biases `[1, out]` per layer (the first is replaced per step).
    b: Vec<Tensor>,
}

impl DeviceNet {
    /// `net` on `dev`, whose first layer reads the features and then `tail` more inputs (the
    /// step embedding, folded into the bias by [`DeviceNet::first_bias`]; 0 for none).
    pub fn upload(net: &Mlp, tail: usize, dev: &Device) -> candle_core::Result<Self> {
        let mut w = Vec::new();
        let mut b = Vec::new();
        for (i, (wl, bl, n_in, n_out)) in net.layers.iter().enumerate() {
            let rows = if i == 0 { n_in - tail } else { *n_in };
            w.push(Tensor::from_slice(&wl[..rows * n_out], (rows, *n_out), dev)?);
            b.push(Tensor::from_slice(bl, (1, *n_out), dev)?);
        }
        Ok(Self { host: net.clone(), w, b })
    }

    /// Features the network reads (the first layer's inputs before the embedding).
    pub fn features(&self) -> usize {
        self.w[0].dims()[0]
    }

    /// The first layer's bias at training step `iteration` (the embedding folded in as the
    /// host folds it: [`Mlp::with_constant_tail`]).
    pub fn first_bias(&self, iteration: u32) -> candle_core::Result<Tensor> {
        let folded = self.host.with_constant_tail(&tanh_embedding(iteration as f32));
        Tensor::from_slice(&folded.layers[0].1, (1, folded.layers[0].3), self.b[0].device())
    }

    /// The network on normalised features `x` `[n, features]`, with first-layer bias `b0`
    /// (the uploaded one when `None`).
    fn eval(&self, x: &Tensor, b0: Option<&Tensor>) -> candle_core::Result<Tensor> {
        let last = self.w.len() - 1;
        let mut h = x.clone();
        for (i, w) in self.w.iter().enumerate() {
            let b = if i == 0 { b0.unwrap_or(&self.b[0]) } else { &self.b[i] };
            h = h.matmul(w)?.broadcast_add(b)?;
            if i != last {
                h = h.relu()?;
            }
        }
        Ok(h)
    }
}

/// One tensor's update from its features (each shaped like the parameter): normalise each
/// feature by √(mean of its squares + 1e-5) over the tensor (squares in f32, summed in f64, as
/// on the host), run the network (first-layer bias `b0`, or its own), and step `p ← p − s`
/// with `s` as `rule` makes it from the direction and magnitude outputs (as the host's
/// `features::pass2` does).
pub fn step(w: &Var, features: &[Tensor], net: &DeviceNet, b0: Option<&Tensor>, rule: StepRule) -> candle_core::Result<()> {
    let n = w.elem_count();
    if n == 0 {
        return Ok(());
    }
    let cols: Vec<Tensor> = features.iter().map(|f| f.flatten_all()).collect::<candle_core::Result<_>>()?;
    let x = Tensor::stack(&cols, 1)?;
    let count = Tensor::new(n as f64, x.device())?;
    let mean_sq = x.sqr()?.to_dtype(DType::F64)?.sum_keepdim(0)?.broadcast_div(&count)?.to_dtype(DType::F32)?;
    let norm = mean_sq.affine(1.0, 1e-5)?.sqrt()?.recip()?;
    let o = net.eval(&x.broadcast_mul(&norm)?, b0)?;
    let direction = o.narrow(1, 0, 1)?.squeeze(1)?;
    let magnitude = o.narrow(1, 1, 1)?.squeeze(1)?;
    let update = match rule {
        StepRule::Embedded { exp_mult, step_mult } => times(&(direction * times(&magnitude, exp_mult)?.exp()?)?, step_mult)?,
        StepRule::Velo { exp_mult, step_mult, param_scale, lr_mult } => {
            let scaled = times(&times(&magnitude, exp_mult)?.exp()?, param_scale)?;
            times(&times(&(direction * scaled)?, step_mult)?, lr_mult)?
        }
    };
    w.set(&(value(w).flatten_all()? - update)?.reshape(w.shape())?)
}

/// `x ← d·x + (1 − d)·f` for each decay's trace, as the host's accumulators fold them.
pub fn fold(traces: &mut [Tensor], decays: &[f32], f: &Tensor) -> candle_core::Result<()> {
    for (x, &d) in traces.iter_mut().zip(decays) {
        *x = (times(x, d)? + times(f, 1.0 - d)?)?;
    }
    Ok(())
}
