//! Meta-training learned optimizers — learned_optimization's `outer_trainers/` in Rust.
//!
//! * [`recipe`]: what to train, from a YAML file validated like the registry.
//! * [`inner`]: the inner problems an estimator unrolls ([`inner::InnerTasks`]): registry
//!   tasks trained as small populations (the ± members of a pair share task, initialisation
//!   and batches), or any other implementation (the tests use a quadratic).
//! * [`full_es`] and [`truncated_pes`]: the two gradient estimators.
//! * [`outer`]: the outer optimizer (Adam, warm-up + cosine, clipping).
//! * [`trainer`]: the outer loop — checkpoints, resumption after a crash, validation, best
//!   checkpoint, `meta_loss.csv`.
//!
//! Theta is one flat f32 vector throughout, mapped to the architecture's named tensors only by
//! [`beatmatch_learned::theta::Theta::flatten`] / [`beatmatch_learned::theta::Theta::with_flat`].
//!
//! Determinism: every random draw of outer step `t`, pair `i` comes from a ChaCha8 stream named
//! by (recipe seed, t, i, purpose), pairs are reduced in pair order, and an inner member's
//! arithmetic never depends on its companions, so the result is the same bytes for any number
//! of worker threads.

pub mod full_es;
pub mod inner;
pub mod outer;
pub mod recipe;
pub mod trainer;
pub mod truncated_pes;

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

/// What a random stream is for (the stream id's low bits).
#[derive(Clone, Copy, Debug)]
#[repr(u64)]
pub enum Purpose {
    /// The perturbation ε.
    Epsilon = 1,
    /// Task, unroll length and inner seed of a new episode.
    Episode = 2,
    /// Fresh batches for `last_recompute`.
    Recompute = 3,
}

/// The ChaCha8 stream for outer step `t`, pair `i` and `purpose` of a recipe seeded `seed`.
pub fn stream(seed: u64, t: u64, i: u64, purpose: Purpose) -> ChaCha8Rng {
    let mut r = ChaCha8Rng::seed_from_u64(seed ^ t.wrapping_mul(0x9E37_79B9_7F4A_7C15));
    r.set_stream((i << 8) | purpose as u64);
    r
}

/// A perturbation: `n` draws from N(0, σ²).
pub fn epsilon(seed: u64, t: u64, i: u64, n: usize, sigma: f32) -> Vec<f32> {
    epsilon_frozen(seed, t, i, n, sigma, &[])
}

/// [`epsilon`] with the entries `frozen` marks set to 0 (drawn all the same, so the other
/// entries are those of an unfrozen run); `frozen` empty freezes nothing.
pub fn epsilon_frozen(seed: u64, t: u64, i: u64, n: usize, sigma: f32, frozen: &[bool]) -> Vec<f32> {
    let mut eps = epsilon_all(seed, t, i, n, sigma);
    for (e, _) in eps.iter_mut().zip(frozen).filter(|(_, &f)| f) {
        *e = 0.0;
    }
    eps
}

fn epsilon_all(seed: u64, t: u64, i: u64, n: usize, sigma: f32) -> Vec<f32> {
    use rand_distr::{Distribution, StandardNormal};
    let mut r = stream(seed, t, i, Purpose::Epsilon);
    (0..n)
        .map(|_| {
            let z: f32 = StandardNormal.sample(&mut r);
            z * sigma
        })
        .collect()
}

/// `theta + sign · eps`.
pub fn perturbed(theta: &[f32], eps: &[f32], sign: f32) -> Vec<f32> {
    theta.iter().zip(eps).map(|(t, e)| t + sign * e).collect()
}

/// Run `f(i, &mut items[i])` for every item on `jobs` threads (items taken in turn by whichever
/// thread is free); the results in item order, so reductions over them do not depend on `jobs`.
pub fn parallel_map<S: Send, R: Send>(items: &mut [S], jobs: usize, f: impl Fn(usize, &mut S) -> R + Sync) -> Vec<R> {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Mutex;
    let n = items.len();
    if jobs <= 1 || n <= 1 {
        return items.iter_mut().enumerate().map(|(i, s)| f(i, s)).collect();
    }
    let slots: Vec<Mutex<(&mut S, Option<R>)>> = items.iter_mut().map(|s| Mutex::new((s, None))).collect();
    let next = AtomicUsize::new(0);
    std::thread::scope(|scope| {
        for _ in 0..jobs.min(n) {
            scope.spawn(|| loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some(slot) = slots.get(i) else { break };
                let mut g = slot.lock().unwrap();
                let r = f(i, g.0);
                g.1 = Some(r);
            });
        }
    });
    slots.into_iter().map(|m| m.into_inner().unwrap().1.expect("every item was run")).collect()
}

/// The mean of `v` in f64 (0 for an empty slice).
pub fn mean(v: &[f32]) -> f64 {
    if v.is_empty() {
        0.0
    } else {
        v.iter().map(|&x| x as f64).sum::<f64>() / v.len() as f64
    }
}

/// A loss difference as the estimators use it: NaN or ±∞ → 0 (the pair contributes nothing).
pub fn finite_delta(plus: f64, minus: f64) -> f64 {
    let d = plus - minus;
    if d.is_finite() {
        d
    } else {
        0.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parallel_map_keeps_item_order_for_any_job_count() {
        let mut items: Vec<u64> = (0..37).collect();
        let one = parallel_map(&mut items.clone(), 1, |i, x| (i as u64) * 1000 + *x);
        let three = parallel_map(&mut items, 3, |i, x| (i as u64) * 1000 + *x);
        assert_eq!(one, three);
        assert_eq!(one[5], 5005);
    }

    #[test]
    fn epsilon_streams_are_seeded_and_distinct() {
        let a = epsilon(0, 3, 1, 1000, 0.01);
        assert_eq!(a, epsilon(0, 3, 1, 1000, 0.01));
        assert_ne!(a, epsilon(0, 3, 2, 1000, 0.01));
        assert_ne!(a, epsilon(0, 4, 1, 1000, 0.01));
        let var = a.iter().map(|&x| (x as f64).powi(2)).sum::<f64>() / 1000.0;
        assert!((var.sqrt() - 0.01).abs() < 0.001, "std {}", var.sqrt());
        assert_eq!(finite_delta(f64::NAN, 1.0), 0.0);
        assert_eq!(finite_delta(f64::INFINITY, 1.0), 0.0);
    }
}
