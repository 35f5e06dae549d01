//! What the learned optimizers' device implementations share: a per-parameter network laid
//! out for the fused kernels (`beatmatch_device::lopt`: VeLO, Celo, small_fc, MLP-LOpt), and
//! the accumulator fold of the rules still written as candle ops (Celo2, Celo-Adam).

use crate::accum::tanh_embedding;
use crate::features::Mlp;
use beatmatch_device::times;
use candle_core::Tensor;

/// `net` as fused kernel `kernel` reads it (`beatmatch_device::lopt::Net`): at training step
/// `iteration`, the step embedding folded into the first bias as the host rule folds it
/// ([`Mlp::with_constant_tail`]; `None` for networks that read no embedding: VeLO's, Celo's);
/// then every layer's weights and biases, the last layer cut to its first two outputs
/// (direction and magnitude: VeLO's third is never read).
pub fn fused_net(kernel: beatmatch_device::lopt::LoptKernel, net: &Mlp, iteration: Option<u32>) -> candle_core::Result<beatmatch_device::lopt::Net> {
    let folded;
    let net = match iteration {
        Some(t) => {
            folded = net.with_constant_tail(&tanh_embedding(t as f32));
            &folded
        }
        None => net,
    };
    let last = net.layers.len() - 1;
    let mut values = Vec::new();
    for (l, (w, b, _, n_out)) in net.layers.iter().enumerate() {
        let keep = if l == last { 2.min(*n_out) } else { *n_out };
        values.extend(w.chunks(*n_out).flat_map(|row| &row[..keep]));
        values.extend(&b[..keep]);
    }
    beatmatch_device::lopt::Net::new(kernel, net.layers[0].3, values)
}

/// `x ← d·x + (1 − d)·f` for each decay's trace, as the host's accumulators fold them.
pub fn fold(traces: &mut [Tensor], decays: &[f32], f: &Tensor) -> candle_core::Result<()> {
    for (x, &d) in traces.iter_mut().zip(decays) {
        *x = (times(x, d)? + times(f, 1.0 - d)?)?;
    }
    Ok(())
}
