//! Reference initialisation of meta-parameters, for meta-training from scratch: what
//! learned_optimization's `init(key)` gives, in distribution (haiku's defaults: every linear
//! layer's weights truncated-normal with standard deviation 1/√fan_in cut at two standard
//! deviations, biases zero; small_fc's learned decay offsets zero, so its decays start at the
//! reference constants). The same seed gives the same theta bit for bit; the draws are
//! beatmatch's own (ChaCha8), not JAX's.

use crate::checkpoint::Architecture;
use crate::theta::{Tensor, Theta};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// Layer widths of the per-parameter MLP of each meta-trainable architecture: (tensor prefix,
/// [(fan_in, fan_out)]), or `None` for VeLO (its 4.4e5 meta-parameters are not meta-trained
/// here).
fn layers(arch: Architecture) -> Option<(&'static str, Vec<(usize, usize)>)> {
    match arch {
        Architecture::SmallFc => Some(("nn/~/w", vec![(39, 4), (4, 4), (4, 2)])),
        Architecture::MlpLopt => Some(("mlp/~/linear_", vec![(19, 32), (32, 32), (32, 2)])),
        Architecture::Velo => None,
    }
}

/// A fresh theta for `arch` from `seed`; `None` for an architecture without a reference
/// initialisation here (VeLO).
pub fn reference(arch: Architecture, seed: u64) -> Option<Theta> {
    let (prefix, dims) = layers(arch)?;
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut theta = Theta::default();
    for (i, &(a, b)) in dims.iter().enumerate() {
        let std = 1.0 / (a as f64).sqrt();
        let w: Vec<f32> = (0..a * b).map(|_| (truncated_normal(&mut rng) * std) as f32).collect();
        let (wname, bname) = match arch {
            Architecture::SmallFc => (format!("nn/~/w{i}"), format!("nn/~/b{i}")),
            _ => (format!("{prefix}{i}/w"), format!("{prefix}{i}/b")),
        };
        theta.tensors.insert(wname, Tensor { shape: vec![a, b], data: w });
        theta.tensors.insert(bname, Tensor { shape: vec![b], data: vec![0.0; b] });
    }
    if arch == Architecture::SmallFc {
        for (name, n) in [("momentum_decays", 3), ("rms_decays", 1), ("adafactor_decays", 3)] {
            theta.tensors.insert(name.into(), Tensor { shape: vec![n], data: vec![0.0; n] });
        }
    }
    Some(theta)
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
    use super::*;
    use beatmatch_core::ParamInfo;

    #[test]
    fn reference_thetas_bind_have_the_published_sizes_and_are_seeded() {
        let params = [ParamInfo { name: "w".into(), shape: vec![3, 5] }];
        let small = reference(Architecture::SmallFc, 1).unwrap();
        assert_eq!(small.count(), 39 * 4 + 4 + 4 * 4 + 4 + 4 * 2 + 2 + 7);
        crate::build_members(Architecture::SmallFc, &small, 1, &params).unwrap();
        let mlp = reference(Architecture::MlpLopt, 1).unwrap();
        assert_eq!(mlp.count(), 1762);
        crate::build_members(Architecture::MlpLopt, &mlp, 1, &params).unwrap();
        assert_eq!(reference(Architecture::SmallFc, 1), Some(small.clone()));
        assert_ne!(reference(Architecture::SmallFc, 2), Some(small.clone()));
        assert!(reference(Architecture::Velo, 1).is_none());
        // Weights within two standard deviations, spread like 1/sqrt(fan_in).
        let w0 = &small.tensors["nn/~/w0"].data;
        let bound = 2.0 / 39f32.sqrt();
        assert!(w0.iter().all(|w| w.abs() < bound));
        let var = w0.iter().map(|w| (w * w) as f64).sum::<f64>() / w0.len() as f64;
        assert!((var * 39.0 - 0.77).abs() < 0.25, "variance × fan_in {}", var * 39.0);
    }
}
