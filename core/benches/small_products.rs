//! Narrow products through `core::matmul`'s own kernel against the `gemm` crate alone
//! (`matmul::set_small_products`), interleaved in one run, at the shapes the engine meets:
//! the registry's output layers (10 classes) and their weight gradients, narrow hidden
//! layers (8 and 16 units), and wider products the kernel leaves to `gemm` for comparison.
//! Prints one line per shape: microseconds per product each way, GFLOP/s, and the ratio
//! (gemm ÷ own; > 1: the own kernel is faster), with the instruction set. What
//! `matmul::small::WIDEST` is set from; both ways give the same bits (tested).
//!
//! `cargo bench -p beatmatch-core --bench small_products` (`BEATMATCH_SIMD=avx2` for the
//! AVX2 kernel on an AVX-512 machine).

use beatmatch_core::matmul::{matmul, set_small_products, Layout};
use std::time::Instant;

/// Seconds per product, the best of 3 rounds of about 0.05 s each after a warm-up.
fn seconds(f: &mut dyn FnMut(), calls: usize) -> f64 {
    (0..calls / 10 + 1).for_each(|_| f());
    let mut best = f64::INFINITY;
    for _ in 0..3 {
        let start = Instant::now();
        (0..calls).for_each(|_| f());
        best = best.min(start.elapsed().as_secs_f64() / calls as f64);
    }
    best
}

fn main() {
    use Layout::{RowMajor as R, Transposed as T};
    println!("isa: {}", beatmatch_core::simd::isa());
    let shapes = [
        ("logreg x·W, mnist1d b32", 32, 40, 10, R, R),
        ("logreg xᵀ·δ, mnist1d b32", 40, 32, 10, T, R),
        ("mlp output h·W, b128 w32", 128, 32, 10, R, R),
        ("mlp output hᵀ·δ, b128 w32", 32, 128, 10, T, R),
        ("mlp output h·W, b32 w256", 32, 256, 10, R, R),
        ("mlp output hᵀ·δ, b32 w256", 256, 32, 10, T, R),
        ("mlp output h·W, b256 w256", 256, 256, 10, R, R),
        ("mlp output hᵀ·δ, b256 w256", 256, 256, 10, T, R),
        ("logreg xᵀ·δ, fashion b128", 784, 128, 10, T, R),
        ("hidden x·W, b128 w8", 128, 40, 8, R, R),
        ("hidden x·W, b128 w16", 128, 40, 16, R, R),
        ("hidden xᵀ·δ, b128 w16", 40, 128, 16, T, R),
        ("hidden x·W, b128 w32", 128, 40, 32, R, R),
        ("hidden δ·Wᵀ, b128 w32", 128, 10, 32, R, T),
        ("lstm gates, b32 h32", 32, 32, 128, R, R),
    ];
    for (name, m, k, n, a_layout, b_layout) in shapes {
        let a: Vec<f32> = (0..m * k).map(|i| (i % 7) as f32 * 0.1 - 0.3).collect();
        let b: Vec<f32> = (0..k * n).map(|i| (i % 5) as f32 * 0.1 - 0.2).collect();
        let mut dst = vec![0f32; m * n];
        let calls = (25_000_000 / (m * k * n)).clamp(20, 20_000);
        let mut best = [f64::INFINITY; 2]; // [gemm only, own kernel]
                                           // A B B A A B: neither way comes first more often (a shared core drifts).
        for round in 0..3 {
            for i in 0..2 {
                let own = (i + round) % 2;
                set_small_products(own == 1);
                best[own] = best[own].min(seconds(&mut || matmul(m, k, n, &a, a_layout, &b, b_layout, &mut dst), calls));
            }
        }
        set_small_products(true);
        let gflops = |s: f64| 2.0 * (m * k * n) as f64 / s / 1e9;
        println!(
            "{name:30} {m:4}×{k:3}×{n:3}  gemm {:7.2} µs {:5.1} GF/s  own {:7.2} µs {:5.1} GF/s  gemm÷own {:.2}",
            best[0] * 1e6,
            gflops(best[0]),
            best[1] * 1e6,
            gflops(best[1]),
            best[0] / best[1]
        );
    }
}
