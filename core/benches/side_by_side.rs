//! Products with a shared left operand over 15 members (a population's first layer: the batch
//! times each member's weights, and the batch transposed times each member's deltas): one
//! product per member against [`Product::shared_left`]'s products side by side, back to back
//! in one run, at the registry's batch sizes and input widths and member widths of 8 to 128
//! columns. Prints one line per shape with the ratio (per member ÷ side by side; > 1: side
//! by side is faster) and whether `Product::side_by_side_pays` takes it, and the instruction
//! set `gemm` used. What `SIDE_BY_SIDE_WIDEST` is set from.
//!
//! `cargo bench -p beatmatch-core --bench side_by_side`

use beatmatch_core::matmul::{members, Product, SideBySide};
use std::time::Instant;

const MEMBERS: usize = 15;

/// Seconds per call of `f`, the best of 5 rounds of 400 calls after a warm-up.
fn seconds(f: &mut dyn FnMut()) -> f64 {
    (0..50).for_each(|_| f());
    let mut best = f64::INFINITY;
    for _ in 0..5 {
        let start = Instant::now();
        (0..400).for_each(|_| f());
        best = best.min(start.elapsed().as_secs_f64() / 400.0);
    }
    best
}

fn main() {
    println!("isa: {}", beatmatch_core::simd::isa());
    for (rows, input) in [(32, 40), (128, 40), (32, 784), (128, 784)] {
        for n in [8, 10, 16, 32, 64, 128] {
            let forward = Product::new(rows, input, n);
            let weight_gradient = Product::transposed_times(input, rows, n);
            for (what, p) in [("x·W", forward), ("xᵀ·δ", weight_gradient)] {
                let (m, k) = (p.m, p.k);
                let a: Vec<f32> = (0..m * k).map(|i| (i % 7) as f32 * 0.1).collect();
                let b: Vec<f32> = (0..MEMBERS * k * n).map(|i| (i % 5) as f32 * 0.1).collect();
                let mut dst = vec![0f32; MEMBERS * m * n];
                let each = seconds(&mut || {
                    for (b, dst) in b.chunks_exact(k * n).zip(dst.chunks_exact_mut(m * n)) {
                        p.run(&a, b, dst);
                    }
                });
                let mut scratch = SideBySide::default();
                let bs = members(&b, k * n);
                let side = seconds(&mut || p.shared_left(&a, &bs, &mut scratch));
                println!(
                    "{what:>5} {rows:>3} rows, {input:>3} inputs, {n:>3} columns: per member {:>8.1} µs, side by side {:>8.1} µs, ratio {:.2}, taken: {}",
                    each * 1e6,
                    side * 1e6,
                    each / side,
                    p.side_by_side_pays(MEMBERS)
                );
            }
        }
    }
}
