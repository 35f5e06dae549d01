//! The per-tensor recurrent core VeLO and Celo share (learned_optimization's `HyperV2`
//! `_rnn_forward`): two mix layers over the batch of tensors — the first computed and
//! discarded upstream, so only checked here — a ReLU'd max over the batch added to a projection,
//! then haiku's LSTM (gates `i, g, f, o`, forget gate +1) with one state row per tensor.

use crate::dense::Dense;
use crate::theta::{Theta, ThetaError};

/// The mix layers and LSTM bound from theta's `rnn_params/{linear, linear_1, linear_2,
/// rnn/linear}`.
pub(crate) struct MixLstm {
    mix: Dense,
    proj: Dense,
    lstm: Dense,
    /// LSTM width.
    hidden: usize,
}

impl MixLstm {
    /// Bind for `n_in` inputs per tensor and an LSTM `hidden` wide; `arch` names the
    /// architecture in errors.
    pub(crate) fn bind(theta: &Theta, arch: &'static str, n_in: usize, hidden: usize) -> Result<Self, ThetaError> {
        // The discarded first mix layer must still be in a valid checkpoint.
        Dense::load(theta, arch, "rnn_params/linear", n_in, hidden)?;
        Ok(Self {
            mix: Dense::load(theta, arch, "rnn_params/linear_1", n_in, hidden)?,
            proj: Dense::load(theta, arch, "rnn_params/linear_2", n_in, hidden)?,
            lstm: Dense::load(theta, arch, "rnn_params/rnn/linear", 2 * hidden, 4 * hidden)?,
            hidden,
        })
    }

    /// One step over `n` tensors whose inputs are the rows of `x` (`[n][n_in]`): advances
    /// `hidden` and `cell` (one row per tensor) and returns the new hidden rows, concatenated.
    pub(crate) fn step(&self, hidden: &mut [Vec<f32>], cell: &mut [Vec<f32>], x: &[f32], n: usize) -> Vec<f32> {
        let h = self.hidden;
        let mut mixed = self.mix.batch(x, n);
        mixed.iter_mut().for_each(|v| *v = v.max(0.0));
        let v: Vec<f32> = (0..h).map(|j| (0..n).map(|t| mixed[t * h + j]).fold(f32::NEG_INFINITY, f32::max)).collect();
        let proj = self.proj.batch(x, n);
        let mut xh = vec![0f32; n * 2 * h];
        for t in 0..n {
            for j in 0..h {
                xh[t * 2 * h + j] = proj[t * h + j] + v[j];
            }
            xh[t * 2 * h + h..(t + 1) * 2 * h].copy_from_slice(&hidden[t]);
        }
        let gates = self.lstm.batch(&xh, n);
        let sigmoid = |x: f32| 1.0 / (1.0 + (-x).exp());
        for t in 0..n {
            let g = &gates[t * 4 * h..(t + 1) * 4 * h];
            let (i_g, rest) = g.split_at(h);
            let (g_g, rest) = rest.split_at(h);
            let (f_g, o_g) = rest.split_at(h);
            for j in 0..h {
                let c = sigmoid(f_g[j] + 1.0) * cell[t][j] + sigmoid(i_g[j]) * g_g[j].tanh();
                cell[t][j] = c;
                hidden[t][j] = sigmoid(o_g[j]) * c.tanh();
            }
        }
        hidden.concat()
    }
}
