//! SOAP's linear algebra on flat row-major buffers: which axes of a tensor are preconditioned,
//! projection into (and back out of) the eigenbases of the per-axis factors, the factors'
//! outer products, their eigenbases (`eigh`, once) and the power-iteration + QR refresh.
//! Matrix products are `core::matmul`'s (the `gemm` crate's, fixed summation order);
//! eigendecompositions and QR are `faer`'s: a maintained pure-Rust linear-algebra crate with
//! blocked, SIMD factorizations (nalgebra's are unblocked, several times slower at the
//! 784-wide factors of an MNIST MLP), built single-threaded without its `rayon` feature.

use beatmatch_core::matmul::{matmul, members, members_mut, transpose, Layout, Product};
use faer::{Mat, Side};

/// How SOAP sees one tensor: its dimensions (merged, with `merge_dims`) and which of them
/// carry a preconditioner.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Factors {
    /// The dimensions SOAP works on, in order; their product is the tensor's size.
    pub dims: Vec<usize>,
    /// Whether dimension `i` has a factor `GG[i]` and an eigenbasis `Q[i]` (at most
    /// `max_precond_dim` wide; a 1-D tensor only with `precondition_1d`).
    pub preconditioned: Vec<bool>,
}

impl Factors {
    /// The factors of a tensor of `shape`, as soap.py's `init_preconditioner` builds them
    /// (channels-first kernels, the layout of beatmatch's convolutions).
    pub fn of(shape: &[usize], max_precond_dim: usize, merge_dims: bool, precondition_1d: bool) -> Self {
        if let [n] = *shape {
            return Self { dims: vec![n], preconditioned: vec![precondition_1d && n <= max_precond_dim] };
        }
        let dims = if merge_dims { merge(shape, max_precond_dim) } else { shape.to_vec() };
        let preconditioned = dims.iter().map(|&d| d <= max_precond_dim).collect();
        Self { dims, preconditioned }
    }

    /// Values in the tensor.
    pub fn numel(&self) -> usize {
        self.dims.iter().product()
    }

    /// Whether an eigenbasis built from the factors of `gradients` gradients is not
    /// determined by them: some factor keeps a null space of 2 or more dimensions (a
    /// dimension `d` with `d ≥ 2 + gradients · n/d`, as a 1-D preconditioned tensor of 3 or more
    /// values is at the start). Within that null space any orthonormal basis is an eigenbasis
    /// (and a QR refresh orthonormalises noise), the reference's LAPACK picks one from rounding
    /// noise, and the updates depend on the pick (see `docs/methodology.md`). The first
    /// eigenbasis sees 1 gradient; the refresh after update `t`, `t + 1`.
    pub fn underdetermined(&self, gradients: usize) -> bool {
        let n = self.numel();
        self.dims.iter().zip(&self.preconditioned).any(|(&d, &p)| p && d >= 2 + gradients * (n / d.max(1)))
    }
}

/// soap.py's `merge_dims`: consecutive dimensions multiplied together while the product stays
/// within `max`.
fn merge(shape: &[usize], max: usize) -> Vec<usize> {
    let (mut out, mut cur) = (Vec::new(), 1);
    for &d in shape {
        if cur * d > max {
            if cur > 1 {
                out.push(cur);
                cur = d;
            } else {
                out.push(d);
                cur = 1;
            }
        } else {
            cur *= d;
        }
    }
    if cur > 1 || out.is_empty() {
        out.push(cur);
    }
    out
}

/// Buffers reused across projections (`members ×` the tensor).
#[derive(Clone, Debug, Default)]
pub struct Scratch {
    a: Vec<f32>,
    b: Vec<f32>,
}

/// Project `x` (laid out as `f.dims`) into the eigenbases `q` (`back`: out of them) into
/// `out`: axis by axis, `torch.tensordot(x, Q, dims=[[0], [0]])` (`[[0], [1]]` back), which
/// contracts the leading axis and appends the result as the last, so after every axis the
/// layout is the original again. An axis without a basis is only moved to the end.
pub fn project(x: &[f32], f: &Factors, q: &[Option<Vec<f32>>], back: bool, s: &mut Scratch, out: &mut Vec<f32>) {
    out.resize(x.len(), 0.0);
    project_batch(&[x], f, &[q], back, s, &mut [out.as_mut_slice()]);
}

/// [`project`] for a batch of members with the same factors (`x[j]`, `q[j]` → `out[j]`), each
/// axis's contraction one [`Product::batched`] over the members.
pub fn project_batch(x: &[&[f32]], f: &Factors, q: &[&[Option<Vec<f32>>]], back: bool, s: &mut Scratch, out: &mut [&mut [f32]]) {
    let n = f.numel();
    s.a.clear();
    x.iter().for_each(|x| s.a.extend_from_slice(x));
    s.b.resize(s.a.len(), 0.0);
    for (axis, &d) in f.dims.iter().enumerate() {
        let r = n / d.max(1);
        let bases: Option<Vec<&[f32]>> = q.iter().map(|q| q.get(axis).and_then(Option::as_deref)).collect();
        if let Some(bases) = bases {
            // [d × r] → [r × d] = xᵀ·Q (xᵀ·Qᵀ back).
            let product = Product::transposed_times(r, d, d).with_b(if back { Layout::Transposed } else { Layout::RowMajor });
            product.batched(&members(&s.a, n), &bases, &mut members_mut(&mut s.b, n));
        } else {
            for (a, b) in s.a.chunks_exact(n.max(1)).zip(s.b.chunks_exact_mut(n.max(1))) {
                transpose(a, d, r, b);
            }
        }
        std::mem::swap(&mut s.a, &mut s.b);
    }
    for (out, a) in out.iter_mut().zip(s.a.chunks_exact(n.max(1))) {
        out.copy_from_slice(a);
    }
}

/// `GG[i] ← lerp(GG[i], outer_i(g), w)` for every preconditioned axis, where `outer_i` contracts
/// `g` with itself over every axis but `i` (soap.py's `tensordot`), and `lerp` is torch's
/// (`a + w·(b − a)` for `|w| < ½`, else `b − (b − a)·(1 − w)`).
pub fn accumulate(g: &[f32], f: &Factors, gg: &mut [Option<Vec<f32>>], w: f32, s: &mut Scratch) {
    accumulate_batch(&[g], f, &mut [gg], &[w], s);
}

/// [`accumulate`] for a batch of members with the same factors (`g[j]`, `gg[j]`, `w[j]`),
/// each axis's outer products one [`Product::batched`] over the members.
pub fn accumulate_batch(g: &[&[f32]], f: &Factors, gg: &mut [&mut [Option<Vec<f32>>]], w: &[f32], s: &mut Scratch) {
    let n = f.numel();
    let mut before = 1;
    for (i, (&d, &preconditioned)) in f.dims.iter().zip(&f.preconditioned).enumerate() {
        if preconditioned {
            // Axis i first: g as [before × n/before], transposed → [d × n/d].
            s.a.resize(g.len() * n, 0.0);
            for (g, a) in g.iter().zip(s.a.chunks_exact_mut(n.max(1))) {
                if i == 0 {
                    a.copy_from_slice(g);
                } else {
                    transpose(g, before, n / before, a);
                }
            }
            s.b.resize(g.len() * d * d, 0.0);
            let rows = members(&s.a, n);
            Product::times_transposed(d, n / d, d).batched(&rows, &rows, &mut members_mut(&mut s.b, d * d));
            for ((gg, &w), b) in gg.iter_mut().zip(w).zip(s.b.chunks_exact(d * d)) {
                let gg = gg[i].as_mut().expect("a preconditioned axis has a factor");
                for (a, &b) in gg.iter_mut().zip(b) {
                    *a = if w.abs() < 0.5 { *a + w * (b - *a) } else { b - (b - *a) * (1.0 - w) };
                }
            }
        }
        before *= d;
    }
}

/// The eigenbasis of the symmetric `d × d` factor `gg`: eigenvectors as columns, by
/// decreasing eigenvalue (soap.py's `eigh(gg + 1e-30·I)` then `flip`), computed in f64.
/// A factor that is not finite (a diverged run) gets the identity, so the run goes on to be
/// recorded as diverged.
pub fn eigenbasis(gg: &[f32], d: usize) -> Vec<f32> {
    let m = Mat::<f64>::from_fn(d, d, |i, j| f64::from(if i == j { gg[i * d + j] + 1e-30 } else { gg[i * d + j] }));
    let Some(evd) = gg.iter().all(|v| v.is_finite()).then(|| m.self_adjoint_eigen(Side::Lower).ok()).flatten() else {
        return identity(d);
    };
    let (u, lambda) = (evd.U(), evd.S().column_vector());
    let mut order: Vec<usize> = (0..d).collect();
    order.sort_by(|&a, &b| lambda[b].total_cmp(&lambda[a]));
    let mut q = vec![0.0; d * d];
    for (j, &src) in order.iter().enumerate() {
        for i in 0..d {
            q[i * d + j] = u[(i, src)] as f32;
        }
    }
    q
}

fn identity(d: usize) -> Vec<f32> {
    (0..d * d).map(|i| if i % (d + 1) == 0 { 1.0 } else { 0.0 }).collect()
}

/// soap.py's `get_orthogonal_matrix_QR` for axis `axis`: sort the basis `o` by the estimated
/// eigenvalues `diag(oᵀ·gg·o)` (decreasing), permute the second moment `v` (laid out as
/// `f.dims`) along the axis the same way, and return the Q of `gg·o`'s QR (one power
/// iteration), in f32 as the reference computes it.
pub fn refresh(gg: &[f32], o: &[f32], f: &Factors, axis: usize, v: &mut [f32], s: &mut Scratch) -> Vec<f32> {
    let d = f.dims[axis];
    s.a.resize(d * d, 0.0);
    matmul(d, d, d, gg, Layout::RowMajor, o, Layout::RowMajor, &mut s.a);
    let est: Vec<f64> = (0..d).map(|j| (0..d).map(|i| f64::from(o[i * d + j]) * f64::from(s.a[i * d + j])).sum()).collect();
    let mut order: Vec<usize> = (0..d).collect();
    order.sort_by(|&a, &b| est[b].total_cmp(&est[a]));
    permute_axis(v, f, axis, &order, &mut s.b);
    if !s.a.iter().all(|x| x.is_finite()) {
        return identity(d);
    }
    let power = Mat::<f32>::from_fn(d, d, |i, j| s.a[i * d + order[j]]);
    let q = power.qr().compute_Q();
    let mut out = vec![0.0; d * d];
    for i in 0..d {
        for j in 0..d {
            out[i * d + j] = q[(i, j)];
        }
    }
    out
}

/// `v ← v.index_select(axis, order)` for `v` laid out as `f.dims`.
fn permute_axis(v: &mut [f32], f: &Factors, axis: usize, order: &[usize], tmp: &mut Vec<f32>) {
    let d = f.dims[axis];
    let inner: usize = f.dims[axis + 1..].iter().product();
    let outer = v.len() / (d * inner).max(1);
    tmp.clear();
    tmp.extend_from_slice(v);
    for o in 0..outer {
        for (j, &src) in order.iter().enumerate() {
            let (to, from) = ((o * d + j) * inner, (o * d + src) * inner);
            v[to..to + inner].copy_from_slice(&tmp[from..from + inner]);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merging_follows_soap_py() {
        assert_eq!(merge(&[3, 3, 2, 4], 30), [18, 4]);
        assert_eq!(merge(&[40, 24], 30), [40, 24]);
        assert_eq!(merge(&[64, 2, 2, 2], 10000), [512]);
        assert_eq!(merge(&[1, 1], 10), [1]);
        assert_eq!(merge(&[5, 1, 7], 6), [5, 7]);
    }

    #[test]
    fn projecting_and_back_is_the_identity_and_matches_a_dense_rotation() {
        let f = Factors::of(&[3, 4], 10000, false, false);
        // Orthogonal bases from QR of fixed matrices.
        let basis = |d: usize| {
            refresh(
                &(0..d * d).map(|i| ((i * 7 % 5) as f32) - 2.0 + if i % (d + 1) == 0 { 9.0 } else { 0.0 }).collect::<Vec<_>>(),
                &identity(d),
                &Factors::of(&[d], 99, false, true),
                0,
                &mut vec![0.0; d],
                &mut Scratch::default(),
            )
        };
        let q = [Some(basis(3)), Some(basis(4))];
        let x: Vec<f32> = (0..12).map(|i| (i as f32 * 0.37).sin()).collect();
        let mut s = Scratch::default();
        let (mut y, mut back) = (Vec::new(), Vec::new());
        project(&x, &f, &q, false, &mut s, &mut y);
        // y = Q₀ᵀ·X·Q₁.
        let (q0, q1) = (q[0].as_ref().unwrap(), q[1].as_ref().unwrap());
        for a in 0..3 {
            for b in 0..4 {
                let want: f32 = (0..3).flat_map(|i| (0..4).map(move |j| (i, j))).map(|(i, j)| q0[i * 3 + a] * x[i * 4 + j] * q1[j * 4 + b]).sum();
                assert!((y[a * 4 + b] - want).abs() < 1e-5, "y[{a},{b}] {} vs {want}", y[a * 4 + b]);
            }
        }
        project(&y, &f, &q, true, &mut s, &mut back);
        for (a, b) in x.iter().zip(&back) {
            assert!((a - b).abs() < 1e-5);
        }
    }

    #[test]
    fn the_eigenbasis_diagonalises_by_decreasing_eigenvalue() {
        let d = 4;
        let gg: Vec<f32> = vec![4.0, 1.0, 0.0, 0.5, 1.0, 3.0, 0.2, 0.0, 0.0, 0.2, 1.0, 0.1, 0.5, 0.0, 0.1, 2.0];
        let q = eigenbasis(&gg, d);
        let mut last = f64::INFINITY;
        for j in 0..d {
            let col: Vec<f64> = (0..d).map(|i| f64::from(q[i * d + j])).collect();
            let gcol: Vec<f64> = (0..d).map(|i| (0..d).map(|k| f64::from(gg[i * d + k]) * col[k]).sum()).collect();
            let lambda: f64 = col.iter().zip(&gcol).map(|(a, b)| a * b).sum();
            assert!(lambda <= last + 1e-9, "eigenvalues not decreasing");
            last = lambda;
            for i in 0..d {
                assert!((gcol[i] - lambda * col[i]).abs() < 1e-5, "column {j} is not an eigenvector");
            }
        }
        assert!(Factors::of(&[24, 40], 10000, false, false).underdetermined(1));
        assert!(!Factors::of(&[24, 40], 10000, false, false).underdetermined(2), "two gradients span 48 ≥ 40 columns");
        assert!(!Factors::of(&[5, 6], 10000, false, false).underdetermined(1), "a 1-D null space is determined up to sign");
        assert!(!Factors::of(&[24, 40], 30, false, false).underdetermined(1));
        assert!(Factors::of(&[7], 30, false, true).underdetermined(5));
        assert!(!Factors::of(&[7], 30, false, true).underdetermined(6));
        assert!(!Factors::of(&[7], 30, false, false).underdetermined(1));
    }
}
