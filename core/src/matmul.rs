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
