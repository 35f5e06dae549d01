//! Newton–Schulz orthogonalisation as optax computes it (`optax.contrib.muon`'s
//! `orthogonalize_via_newton_schulz`, and Celo2's copy of it): Muon's and Celo2's, on the host.

use crate::matmul::{members, members_mut, transpose, Product};

/// Newton–Schulz coefficients (a, b, c): optax's `standard` preset, Keller Jordan's.
pub const NS_COEFFS: [f32; 3] = [3.4445, -4.7750, 2.0315];

/// Scratch of one Newton–Schulz run over a batch of members: the iterates and the products
/// (`members ×` each matrix), reused across steps.
#[derive(Clone, Debug, Default)]
pub struct Scratch {
    x: Vec<f32>,
    a: Vec<f32>,
    scaled: Vec<f32>,
    b: Vec<f32>,
    y: Vec<f32>,
}

/// Orthogonalise `eps.len()` members' `rows × cols` row-major matrices, stored one after
/// another in `g`, into `out` as optax does: each transposed to be wide, divided by its
/// Frobenius norm + its member's `eps`, `steps` Newton–Schulz iterations, transposed back.
/// Every iteration's three products run batched over the members ([`Product::batched`]);
/// a member's products are `core::matmul`'s for its shapes, so its bits do not depend on the
/// other members.
pub fn newton_schulz(g: &[f32], rows: usize, cols: usize, steps: usize, eps: &[f32], s: &mut Scratch, out: &mut [f32]) {
    let size = rows * cols;
    let transposed = rows > cols;
    let (r, c) = if transposed { (cols, rows) } else { (rows, cols) };
    s.x.resize(eps.len() * size, 0.0);
    for ((g, x), &eps) in g.chunks_exact(size).zip(s.x.chunks_exact_mut(size)).zip(eps) {
        if transposed {
            transpose(g, rows, cols, x);
        } else {
            x.copy_from_slice(g);
        }
        let norm = (x.iter().map(|&v| f64::from(v) * f64::from(v)).sum::<f64>().sqrt() as f32) + eps;
        x.iter_mut().for_each(|v| *v /= norm);
    }
    let [ca, cb, cc] = NS_COEFFS;
    let square = eps.len() * r * r;
    s.a.resize(square, 0.0);
    s.scaled.resize(square, 0.0);
    s.b.resize(square, 0.0);
    s.y.resize(s.x.len(), 0.0);
    let (gram, squared, apply) = (Product::times_transposed(r, c, r), Product::new(r, r, r), Product::new(r, r, c));
    for _ in 0..steps {
        // A = X·Xᵀ; B = b·A + (c·A)·A (Python's `c * a @ a`); X = a·X + B·X.
        gram.batched(&members(&s.x, size), &members(&s.x, size), &mut members_mut(&mut s.a, r * r));
        for (scaled, &a) in s.scaled.iter_mut().zip(&s.a) {
            *scaled = cc * a;
        }
        squared.batched(&members(&s.scaled, r * r), &members(&s.a, r * r), &mut members_mut(&mut s.b, r * r));
        for (b, &a) in s.b.iter_mut().zip(&s.a) {
            *b += cb * a;
        }
        apply.batched(&members(&s.b, r * r), &members(&s.x, size), &mut members_mut(&mut s.y, size));
        for (x, &y) in s.x.iter_mut().zip(&s.y) {
            *x = ca * *x + y;
        }
    }
    for (x, out) in s.x.chunks_exact(size).zip(out.chunks_exact_mut(size)) {
        if transposed {
            transpose(x, cols, rows, out);
        } else {
            out.copy_from_slice(x);
        }
    }
}
