//! How much device memory one training run of a problem needs: parameters, gradients, optimizer
//! state and the activations a training step keeps for its backward pass. An estimate from the
//! model's shape (floats per example, counted per layer and doubled for the backward pass's
//! temporaries), for deciding up front whether a task fits a GPU; the calibration on the GPU
//! measures what a step really used.

use crate::task::Problem;

/// Bytes per f32.
const F32: u64 = 4;

/// One run's device memory, in bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Memory {
    /// Parameters.
    pub params: u64,
    /// Gradients (one per parameter).
    pub grads: u64,
    /// Optimizer state.
    pub state: u64,
    /// Activations kept for the backward pass, and its temporaries.
    pub activations: u64,
}

impl Memory {
    /// Everything together.
    pub fn total(&self) -> u64 {
        self.params + self.grads + self.state + self.activations
    }
}

/// The estimate for one run of `problem` whose optimizer keeps `state_per_param` floats of
/// state per parameter (Adam 2, SGD with momentum 1; 0 when the state lives on the host).
pub fn estimate(problem: &Problem, state_per_param: f64) -> Memory {
    let (shape, classes) = problem.dataset.signature();
    let n = problem.build_model().param_count();
    let per_example = problem.model.activation_floats(&shape, classes);
    Memory {
        params: n * F32,
        grads: n * F32,
        state: (n as f64 * state_per_param).ceil() as u64 * F32,
        activations: 2 * per_example * problem.batch_size as u64 * F32,
    }
}

/// `1.5 GiB`, `320 MiB`, `12 KiB`.
pub fn human_bytes(bytes: u64) -> String {
    let b = bytes as f64;
    let (v, unit) = if b >= 1024f64.powi(3) {
        (b / 1024f64.powi(3), "GiB")
    } else if b >= 1024f64.powi(2) {
        (b / 1024f64.powi(2), "MiB")
    } else {
        (b / 1024.0, "KiB")
    };
    format!("{v:.1} {unit}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::datasets::DatasetName;

    #[test]
    fn an_mlp_needs_its_parameters_four_times_with_adam_plus_its_activations() {
        let model = crate::models::ModelConfig::Mlp(crate::models::mlp::MlpConfig { width: 256, depth: 2, activation: crate::models::Activation::Relu });
        let p = Problem::new(model.clone(), DatasetName::Mnist1d, 128, &[100]);
        let n = p.build_model().param_count();
        let m = estimate(&p, 2.0);
        assert_eq!((m.params, m.grads, m.state), (4 * n, 4 * n, 8 * n));
        let (shape, classes) = p.dataset.signature();
        let per_example = shape.iter().product::<usize>() as u64 + 2 * 512 + 2 * classes as u64;
        assert_eq!(m.activations, 2 * per_example * 128 * 4);
        assert_eq!(m.total(), m.params + m.grads + m.state + m.activations);
        // Twice the batch, twice the activations; the rest unchanged.
        let m2 = estimate(&Problem::new(model, DatasetName::Mnist1d, 256, &[100]), 2.0);
        assert_eq!((m2.activations, m2.params), (2 * m.activations, m.params));
    }

    #[test]
    fn bytes_read_in_binary_units() {
        assert_eq!(human_bytes(1536), "1.5 KiB");
        assert_eq!(human_bytes(3 * 1024 * 1024 * 1024 / 2), "1.5 GiB");
    }
}
