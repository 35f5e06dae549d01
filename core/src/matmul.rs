//! Matrix products on host buffers, on the calling thread: one call of the `gemm` crate (which
//! picks AVX-512 or AVX2 at run time), operands row-major or transposed. Its summation order is
//! fixed by the shapes, so the same product gives the same bits however many other members or
//! runs share the process.

/// `dst[m×n] = a[m×k] · b[k×n]`, all row-major, on this thread: the product the dense engine's
/// layers and Muon's Newton–Schulz iteration are made of (benchmarks time it as the machine's
/// sgemm reference).
pub fn sgemm(m: usize, k: usize, n: usize, a: &[f32], b: &[f32], dst: &mut [f32]) {
    matmul(m, k, n, a, Layout::RowMajor, b, Layout::RowMajor, dst);
}

/// How a matrix operand is stored.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Layout {
    /// `[rows][cols]` as given.
    RowMajor,
    /// The operand is the transpose of a row-major matrix stored as given.
    Transposed,
}

/// `dst[m×n] = a[m×k] · b[k×n]`, row-major output, operands row-major or transposed.
#[allow(clippy::too_many_arguments)]
pub fn matmul(m: usize, k: usize, n: usize, a: &[f32], a_layout: Layout, b: &[f32], b_layout: Layout, dst: &mut [f32]) {
    assert!(a.len() >= m * k && b.len() >= k * n && dst.len() >= m * n);
    // (column stride, row stride) of each operand.
    let (a_cs, a_rs) = if a_layout == Layout::RowMajor { (1, k as isize) } else { (m as isize, 1) };
    let (b_cs, b_rs) = if b_layout == Layout::RowMajor { (1, n as isize) } else { (k as isize, 1) };
    // SAFETY: the asserts above keep every index gemm forms inside the three slices.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            dst.as_mut_ptr(),
            1,
            n as isize,
            false,
            a.as_ptr(),
            a_cs,
            a_rs,
            b.as_ptr(),
            b_cs,
            b_rs,
            0.0f32,
            1.0f32,
            false,
            false,
            false,
            gemm::Parallelism::None,
        );
    }
}

/// `dst[c × r] = src[r × c]ᵀ`, both row-major: the copy Muon's Newton–Schulz and SOAP's
/// projections make where an axis must come first.
pub fn transpose(src: &[f32], r: usize, c: usize, dst: &mut [f32]) {
    for i in 0..r {
        for j in 0..c {
            dst[j * r + i] = src[i * c + j];
        }
    }
}

/// One product's shape and operand layouts, `dst[m×n] = a[m×k] · b[k×n]`, to run for one
/// member or for a batch of them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Product {
    /// Rows of `a` and `dst`.
    pub m: usize,
    /// Columns of `a`, rows of `b`.
    pub k: usize,
    /// Columns of `b` and `dst`.
    pub n: usize,
    /// How `a` is stored.
    pub a: Layout,
    /// How `b` is stored.
    pub b: Layout,
}

impl Product {
    /// Row-major `a[m×k] · b[k×n]`.
    pub fn new(m: usize, k: usize, n: usize) -> Self {
        Self { m, k, n, a: Layout::RowMajor, b: Layout::RowMajor }
    }

    /// `a · bᵀ` with `b` stored row-major as `n × k` (a Gram product when `b` is `a`).
    pub fn times_transposed(m: usize, k: usize, n: usize) -> Self {
        Self { b: Layout::Transposed, ..Self::new(m, k, n) }
    }

    /// `aᵀ · b` with `a` stored row-major as `k × m`.
    pub fn transposed_times(m: usize, k: usize, n: usize) -> Self {
        Self { a: Layout::Transposed, ..Self::new(m, k, n) }
    }

    /// The same product with `b` transposed instead (when `back` is true).
    pub fn with_b(self, b: Layout) -> Self {
        Self { b, ..self }
    }

    /// One member's product.
    pub fn run(&self, a: &[f32], b: &[f32], dst: &mut [f32]) {
        matmul(self.m, self.k, self.n, a, self.a, b, self.b, dst);
    }

    /// The batched product over members, `dst[j] = a[j] · b[j]` for every `j` (as cuBLAS's
    /// `gemmBatched`: one call over a list of operands). On the host each member's product is
    /// the `gemm` crate's for these shapes, in member order, so a member's bits do not depend
    /// on the batch it is in — the property populations are tested on (a member equals itself
    /// alone). Its cost is the sum of the members': at the shapes Muon and SOAP meet, one
    /// product already runs near the core's sgemm peak, so batching saves the per-member
    /// bookkeeping around the products, not the products.
    pub fn batched(&self, a: &[&[f32]], b: &[&[f32]], dst: &mut [&mut [f32]]) {
        assert!(a.len() == dst.len() && b.len() == dst.len(), "a batched product needs one a, b and dst per member");
        for ((a, b), dst) in a.iter().zip(b).zip(dst.iter_mut()) {
            self.run(a, b, dst);
        }
    }
}

/// The members of a buffer holding `size` values per member, one after another.
pub fn members(buf: &[f32], size: usize) -> Vec<&[f32]> {
    buf.chunks_exact(size.max(1)).collect()
}

/// [`members`], mutable.
pub fn members_mut(buf: &mut [f32], size: usize) -> Vec<&mut [f32]> {
    buf.chunks_exact_mut(size.max(1)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_batched_product_gives_each_member_its_own_bits() {
        let (m, k, n) = (5, 7, 3);
        let a: Vec<f32> = (0..3 * m * k).map(|i| ((i * 37 % 101) as f32 - 50.0) * 0.013).collect();
        let b: Vec<f32> = (0..3 * k * n).map(|i| ((i * 53 % 97) as f32 - 48.0) * 0.021).collect();
        for p in [Product::new(m, k, n), Product::transposed_times(m, k, n), Product::times_transposed(m, k, n)] {
            let mut batched = vec![0.0; 3 * m * n];
            p.batched(&members(&a, m * k), &members(&b, k * n), &mut members_mut(&mut batched, m * n));
            for j in 0..3 {
                let mut alone = vec![0.0; m * n];
                p.run(&a[j * m * k..][..m * k], &b[j * k * n..][..k * n], &mut alone);
                assert_eq!(alone, batched[j * m * n..][..m * n], "member {j} of {p:?}");
                // And the product itself, by definition.
                let at = |i: usize, l: usize| if p.a == Layout::RowMajor { a[j * m * k + i * k + l] } else { a[j * m * k + l * m + i] };
                let bt = |l: usize, c: usize| if p.b == Layout::RowMajor { b[j * k * n + l * n + c] } else { b[j * k * n + c * k + l] };
                for i in 0..m {
                    for c in 0..n {
                        let want: f32 = (0..k).map(|l| at(i, l) * bt(l, c)).sum();
                        assert!((alone[i * n + c] - want).abs() < 1e-4, "{p:?} [{i},{c}]");
                    }
                }
            }
        }
    }
}
