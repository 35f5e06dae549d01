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
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut theta = Theta::default();
    for (wname, bname, a, b) in layers {
        let std = 1.0 / (*a as f64).sqrt();
        let w: Vec<f32> = (0..a * b).map(|_| (truncated_normal(&mut rng) * std) as f32).collect();
        theta.tensors.insert(wname.clone(), Tensor { shape: vec![*a, *b], data: w });
        theta.tensors.insert(bname.clone(), Tensor { shape: vec![*b], data: vec![0.0; *b] });
    }
    theta
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
}
