//! Reference initialisation of meta-parameters, for meta-training from scratch: what
//! learned_optimization's `init(key)` gives, in distribution (haiku's defaults: every linear
//! layer's weights truncated-normal with standard deviation 1/√fan_in cut at two standard
//! deviations, biases zero). Each architecture's [`crate::LearnedOptimizer::reference_init`]
//! names its layers; the same seed gives the same theta bit for bit; the draws are beatmatch's
//! own (ChaCha8), not JAX's.

use crate::theta::{Tensor, Theta};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// A theta of linear layers `(weight name, bias name, fan_in, fan_out)` drawn from `seed`, in
/// order.
pub fn linear_layers(seed: u64, layers: &[(String, String, usize, usize)]) -> Theta {
    let mut draws = Draws::new(seed);
    let mut theta = Theta::default();
    for (wname, bname, a, b) in layers {
        draws.linear(&mut theta, wname, bname, *a, *b);
    }
    theta
}

/// One seeded stream of draws, for thetas whose layers are not plain `[fan_in, fan_out]`
/// matrices (Celo's bank: a leading `param_inits` axis, the first layer split by feature group).
pub struct Draws(ChaCha8Rng);

impl Draws {
    /// The stream of `seed`.
    pub fn new(seed: u64) -> Self {
        Self(ChaCha8Rng::seed_from_u64(seed))
    }

    /// A tensor of `shape` drawn truncated-normal with standard deviation `std`.
    pub fn truncated(&mut self, shape: Vec<usize>, std: f64) -> Tensor {
        let n = shape.iter().product();
        Tensor { shape, data: (0..n).map(|_| (truncated_normal(&mut self.0) * std) as f32).collect() }
    }

    /// haiku's `Linear(fan_out)` over `fan_in` inputs into `theta`: weights `[fan_in, fan_out]`
    /// with σ = 1/√fan_in, biases zero.
    pub fn linear(&mut self, theta: &mut Theta, wname: &str, bname: &str, fan_in: usize, fan_out: usize) {
        theta.tensors.insert(wname.to_string(), self.truncated(vec![fan_in, fan_out], 1.0 / (fan_in as f64).sqrt()));
        theta.tensors.insert(bname.to_string(), zeros(vec![fan_out]));
    }
}

/// A tensor of zeros.
pub fn zeros(shape: Vec<usize>) -> Tensor {
    Tensor { data: vec![0.0; shape.iter().product()], shape }
}

/// A standard normal draw conditioned on |x| < 2 (rejection; Box–Muller in f64).
fn truncated_normal(rng: &mut ChaCha8Rng) -> f64 {
    loop {
        let u1: f64 = rng.random::<f64>().max(f64::MIN_POSITIVE);
        let u2: f64 = rng.random();
        let x = (-2.0f64 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos();
        if x.abs() < 2.0 {
            return x;
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::{mlp_lopt::MLP_LOPT, small_fc::SMALL_FC, velo::VELO};
    use beatmatch_core::ParamInfo;

    #[test]
    fn reference_thetas_bind_have_the_published_sizes_and_are_seeded() {
        let params = [ParamInfo::new("w", vec![3, 5])];
        let small = SMALL_FC.reference_init(1).unwrap();
        assert_eq!(small.count(), 39 * 4 + 4 + 4 * 4 + 4 + 4 * 2 + 2 + 7);
        crate::build_members(SMALL_FC, &small, 1, &params).unwrap();
        let mlp = MLP_LOPT.reference_init(1).unwrap();
        assert_eq!(mlp.count(), 1762);
        crate::build_members(MLP_LOPT, &mlp, 1, &params).unwrap();
        assert_eq!(SMALL_FC.reference_init(1), Some(small.clone()));
        assert_ne!(SMALL_FC.reference_init(2), Some(small.clone()));
        assert!(VELO.reference_init(1).is_none());
        assert!(SMALL_FC.meta_trainable() && MLP_LOPT.meta_trainable() && !VELO.meta_trainable());
        // Weights within two standard deviations, spread like 1/sqrt(fan_in).
        let w0 = &small.tensors["nn/~/w0"].data;
        let bound = 2.0 / 39f32.sqrt();
        assert!(w0.iter().all(|w| w.abs() < bound));
        let var = w0.iter().map(|w| (w * w) as f64).sum::<f64>() / w0.len() as f64;
        assert!((var * 39.0 - 0.77).abs() < 0.25, "variance × fan_in {}", var * 39.0);
    }

    #[test]
    fn celos_reference_theta_has_the_published_tensors_and_binds() {
        let published = crate::checkpoint::load(
            &std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(crate::celo::CELO.published().unwrap()),
            Some(crate::celo::CELO),
        )
        .unwrap()
        .theta;
        let init = crate::celo::CELO.reference_init(3).unwrap();
        let shapes = |t: &crate::theta::Theta| t.tensors.iter().map(|(k, v)| (k.clone(), v.shape.clone())).collect::<Vec<_>>();
        assert_eq!(shapes(&init), shapes(&published));
        assert!(crate::celo::CELO.meta_trainable());
        assert_eq!(crate::Architecture::detect(&init).map(|a| a.as_str()), Some("celo"));
        crate::build_members(crate::celo::CELO, &init, 1, &[ParamInfo::new("w", vec![3, 5])]).unwrap();
        // σ of the first layer is 1/√30 over every group, 1/√18 for the scheduler's inputs.
        let w0: Vec<f32> = (0..14).flat_map(|g| init.tensors[&format!("ff_mod_stack/~/w0__{g}")].data.clone()).collect();
        let var = w0.iter().map(|w| f64::from(w * w)).sum::<f64>() / w0.len() as f64;
        assert!((var * 30.0 - 0.77).abs() < 0.3, "variance × 30 = {}", var * 30.0);
        assert!(init.tensors["rnn_params/linear/w"].data.iter().all(|w| w.abs() < 2.0 / 18f32.sqrt()));
        assert!(init.tensors["lstm_init_state/cell"].data.iter().all(|&c| c == 0.0));
        assert_ne!(crate::celo::CELO.reference_init(4), Some(init));
    }
}
