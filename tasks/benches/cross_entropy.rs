//! The dense engine's cross-entropy with its gradient (the loss of every classifier and
//! language model the native engine trains) at the registry's shapes, next to the same
//! arithmetic one row at a time, a scalar loop over each row's classes, measured in the same
//! run: nanoseconds per logit and the kernel's speed-up. Prints one JSON object per line.
//!
//! `cargo bench -p beatmatch-tasks --bench cross_entropy`

use beatmatch_tasks::dense::{cross_entropy, exp};
use std::hint::black_box;
use std::time::Instant;

/// The loss sum and gradient of one row at a time: what the kernel computes, written plainly.
fn by_row(logits: &[f32], y: &[u32], c: usize, grad: &mut [f32]) -> f64 {
    let rows = logits.len() / c;
    let mut loss = 0f64;
    for (r, (z, g)) in logits.chunks_exact(c).zip(grad.chunks_exact_mut(c)).enumerate() {
        let label = y[r] as usize;
        let max = z.iter().fold(f32::NEG_INFINITY, |m, &v| if v > m { v } else { m });
        let sum: f32 = z.iter().fold(0.0, |s, &v| s + exp(v - max));
        loss += f64::from(max + sum.ln() - z[label]);
        for (j, (g, &v)) in g.iter_mut().zip(z).enumerate() {
            *g = (exp(v - max) * (1.0 / sum) - if j == label { 1.0 } else { 0.0 }) * (1.0 / rows as f32);
        }
    }
    loss
}

/// Best seconds per call of `f` over 5 rounds of `reps` calls.
fn best(reps: usize, mut f: impl FnMut()) -> f64 {
    (0..5)
        .map(|_| {
            let start = Instant::now();
            for _ in 0..reps {
                f();
            }
            start.elapsed().as_secs_f64() / reps as f64
        })
        .fold(f64::MAX, f64::min)
}

fn main() {
    // Rows × classes: a classifier's batch of 32 and 128 (10 classes), and a language model's
    // 32 sequences of 32 bytes (256 classes).
    for (rows, c) in [(32usize, 10usize), (128, 10), (1024, 256)] {
        let logits: Vec<f32> = (0..rows * c).map(|i| (((i * 2654435761usize) >> 9) % 2001) as f32 / 100.0 - 10.0).collect();
        let y: Vec<u32> = (0..rows).map(|r| ((r * 7) % c) as u32).collect();
        let (mut grad, mut grad_by_row) = (vec![0f32; rows * c], vec![0f32; rows * c]);
        let reps = 20_000_000 / (rows * c);
        let (mut kernel, mut plain) = (f64::MAX, f64::MAX);
        // Rounds in the order A B B A A B, so neither comes first more often.
        for round in 0..6 {
            if [0, 3, 4].contains(&round) {
                kernel = kernel.min(best(reps, || {
                    black_box(cross_entropy(black_box(&logits), &y, c, Some(&mut grad)));
                }));
            } else {
                plain = plain.min(best(reps, || {
                    black_box(by_row(black_box(&logits), &y, c, &mut grad_by_row));
                }));
            }
        }
        assert!(grad.iter().zip(&grad_by_row).all(|(a, b)| a.to_bits() == b.to_bits()), "the kernel and the plain loop disagree");
        let per_logit = |s: f64| s * 1e9 / (rows * c) as f64;
        println!(
            "{{\"logits\": \"{rows}x{c}\", \"ns_per_logit\": {:.3}, \"by_row_ns_per_logit\": {:.3}, \"speedup\": {:.2}, \"isa\": \"{}\"}}",
            per_logit(kernel),
            per_logit(plain),
            plain / kernel,
            beatmatch_core::simd::isa()
        );
    }
}
