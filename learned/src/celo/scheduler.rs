//! Celo's learned scheduler (Moudgil et al. 2025, arXiv 2501.12670), shared by Celo and
//! Celo-Adam: the 18 global inputs — the fraction of training done embedded by 9 tanh steps,
//! then the 9 loss-buffer features (keys sorted, as the reference concatenates them) — through
//! VeLO's mix layers and a 64-wide LSTM, giving a learning-rate multiplier
//! `0.1 · exp(step_size(h))` and (Celo) the softmaxed controls over its bank of MLPs.
//!
//! The reference runs the LSTM on a batch of one identical row per tensor, from one initial
//! state tiled per tensor: every row stays identical, so this runs it once.

use crate::dense::Dense;
use crate::lstm::MixLstm;
use crate::theta::{Theta, ThetaError};
use crate::velo::LossBuffer;

/// Width of the scheduler's input (fraction embedding 9 + loss features 9).
pub const INPUTS: usize = 18;

/// The scheduler bound from theta's `rnn_params/…` and `lstm_init_state/…`.
pub struct Scheduler {
    core: MixLstm,
    step_size: Dense,
    /// `rnn_to_controls` and its width (Celo's `param_inits`); Celo-Adam has none.
    to_controls: Option<(Dense, usize)>,
    init_h: Vec<f32>,
    init_c: Vec<f32>,
}

/// One run's scheduler state: the LSTM state (one row), the loss buffer and the steps taken.
#[derive(Clone, Debug, Default)]
pub struct SchedulerState {
    hidden: Vec<f32>,
    cell: Vec<f32>,
    loss_buffer: Option<LossBuffer>,
    /// Steps taken.
    pub iteration: u32,
}

/// What the scheduler gives one step.
#[derive(Clone, Debug, PartialEq)]
pub struct Schedule {
    /// Softmaxed controls over the bank (empty without `rnn_to_controls`).
    pub controls: Vec<f32>,
    /// `0.1 · exp(step_size(h))`.
    pub lr_mult: f32,
    /// Steps taken before this one ÷ the horizon.
    pub fraction_trained: f32,
    /// Loss-buffer features after this step's loss.
    pub loss_features: [f32; 9],
    /// LSTM hidden state after the step (one row; every tensor's).
    pub hidden: Vec<f32>,
    /// LSTM cell state after the step.
    pub cell: Vec<f32>,
}

impl Scheduler {
    /// Bind for `arch` (named in errors); `controls` is the width of `rnn_to_controls`, or
    /// `None` for an architecture without it. The LSTM width is read off
    /// `lstm_init_state/hidden` (`[1, H]`; the published checkpoints have 64).
    pub fn bind(theta: &Theta, arch: &'static str, controls: Option<usize>) -> Result<Self, ThetaError> {
        let h = match theta.tensors.get("lstm_init_state/hidden") {
            Some(t) if t.shape.len() == 2 && t.shape[0] == 1 => t.shape[1],
            Some(t) => return Err(ThetaError::Shape { arch, name: "lstm_init_state/hidden".into(), expected: vec![1, 64], actual: t.shape.clone() }),
            None => return Err(ThetaError::Missing { arch, name: "lstm_init_state/hidden".into(), expected: vec![1, 64] }),
        };
        Ok(Self {
            core: MixLstm::bind(theta, arch, INPUTS, h)?,
            step_size: Dense::load(theta, arch, "rnn_params/step_size", h, 1)?,
            to_controls: controls.map(|k| Dense::load(theta, arch, "rnn_params/rnn_to_controls", h, k).map(|d| (d, k))).transpose()?,
            init_h: theta.get(arch, "lstm_init_state/hidden", &[1, h])?.to_vec(),
            init_c: theta.get(arch, "lstm_init_state/cell", &[1, h])?.to_vec(),
        })
    }

    /// Fold in this step's `loss` and advance one step of a run with horizon `num_steps`.
    pub fn step(&self, st: &mut SchedulerState, loss: f32, num_steps: u64) -> Schedule {
        let num_steps = num_steps.max(1);
        if st.hidden.is_empty() {
            st.hidden = self.init_h.clone();
            st.cell = self.init_c.clone();
        }
        let buffer = st.loss_buffer.get_or_insert_with(|| LossBuffer::new(num_steps));
        buffer.update(loss);
        let loss_features = buffer.features();
        let fraction_trained = st.iteration as f32 / num_steps as f32;
        let mut x = [0f32; INPUTS];
        for (i, t) in [0.03f32, 0.1, 0.2, 0.4, 0.6, 0.8, 0.9, 1.0, 1.1].iter().enumerate() {
            x[i] = ((fraction_trained - t) * 10.0).tanh();
        }
        x[9..].copy_from_slice(&loss_features);
        let hidden = self.core.step(std::slice::from_mut(&mut st.hidden), std::slice::from_mut(&mut st.cell), &x, 1);
        let lr_mult = self.step_size.batch(&hidden, 1)[0].exp() * 0.1;
        let controls = self.to_controls.as_ref().map_or_else(Vec::new, |(d, _)| softmax(&d.batch(&hidden, 1)));
        st.iteration += 1;
        Schedule { controls, lr_mult, fraction_trained, loss_features, hidden, cell: st.cell.clone() }
    }
}

/// `jax.nn.softmax`: `exp(x − max) / Σ exp(x − max)`.
fn softmax(x: &[f32]) -> Vec<f32> {
    let max = x.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let e: Vec<f32> = x.iter().map(|v| (v - max).exp()).collect();
    let sum: f32 = e.iter().sum();
    e.iter().map(|v| v / sum).collect()
}

/// Whether `theta` holds a Celo-family scheduler: mix layers over [`INPUTS`] inputs (VeLO's
/// take 30).
pub(crate) fn has_scheduler(theta: &Theta) -> bool {
    theta.tensors.get("rnn_params/linear_1/w").is_some_and(|t| t.shape.first() == Some(&INPUTS)) && theta.tensors.contains_key("rnn_params/step_size/w")
}

#[cfg(test)]
mod tests {
    use super::softmax;

    #[test]
    fn softmax_of_one_control_is_exactly_one() {
        assert_eq!(softmax(&[3.7]), vec![1.0]);
        let s = softmax(&[0.0, 1.0]);
        assert!((s[0] + s[1] - 1.0).abs() < 1e-7 && s[1] > s[0]);
    }
}
