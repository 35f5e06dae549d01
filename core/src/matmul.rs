//! Matrix products on host buffers, on the calling thread: one call of the `gemm` crate (which
//! picks AVX-512 or AVX2 at run time), operands row-major or transposed, or for narrow products
//! (a classifier's output layer) a kernel of this crate's own that computes `gemm`'s bits
//! without its per-call work (`small`). The summation order is fixed by the shapes, so the same
//! product gives the same bits however many other members or runs share the process.

mod small;

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
///
/// Narrow products (at most 12 output columns, depth at most 512: a classifier's output
/// layer) take a kernel of this crate's own that computes the bits the `gemm` crate would,
/// without its per-call work; the rest are one call of `gemm`.
#[allow(clippy::too_many_arguments)]
pub fn matmul(m: usize, k: usize, n: usize, a: &[f32], a_layout: Layout, b: &[f32], b_layout: Layout, dst: &mut [f32]) {
    // Both paths assert the operands' lengths before their unsafe code.
    if SMALL_PRODUCTS.load(std::sync::atomic::Ordering::Relaxed) && small::applies(m, k, n, a_layout, b_layout) {
        small::matmul(m, k, n, a, a_layout, b, b_layout, dst);
    } else {
        gemm_call(m, k, n, a, a_layout, b, b_layout, dst);
    }
}

/// Whether [`matmul`] may take its own kernel for narrow products (the default).
static SMALL_PRODUCTS: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(true);

/// Run every product through the `gemm` crate (`false`) or let narrow ones take this crate's
/// kernel (`true`, the default), from now on, in this process: for benchmarks that time both
/// in one run. Either way a product gives the same bits.
pub fn set_small_products(on: bool) {
    SMALL_PRODUCTS.store(on, std::sync::atomic::Ordering::Relaxed);
}

/// [`matmul`] as one call of the `gemm` crate, whatever the shape.
#[allow(clippy::too_many_arguments)]
fn gemm_call(m: usize, k: usize, n: usize, a: &[f32], a_layout: Layout, b: &[f32], b_layout: Layout, dst: &mut [f32]) {
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

/// How many members' `b`s one product `a[m×k] · [b₁ … b_K]` may put side by side (`K·n`
/// columns) and still give each member's columns the bits of `a · b_j` alone (1: one product
/// per member).
///
/// The `gemm` crate sums each output element in one chain of FMAs over the depth, cut into
/// blocks of `kc`. Its `kc` depends on `k` alone, except that products of at most 64 × 64 cut
/// at 512 and larger ones where the cache sizes say. So below a depth of 513 any number of
/// members agree; deeper, a product of at most 64 rows must stay on the side of 64 columns
/// that one member's is on. Degenerate shapes (one row or column, a depth of two) take its
/// vector paths, which sum in another order: they stay one product per member.
/// `a_batched_product_over_side_by_side_members_gives_their_own_bits` tests the rule.
pub fn side_by_side(m: usize, k: usize, n: usize) -> usize {
    if m < 2 || n < 2 || k < 3 {
        1
    } else if k <= 512 || m > 64 || n > 64 {
        usize::MAX
    } else {
        64 / n
    }
}

/// The results of [`Product::shared_left`], in its reused buffers.
#[derive(Clone, Debug, Default)]
pub struct SideBySide {
    b: Vec<f32>,
    dst: Vec<f32>,
    /// Per member: where its first row starts in `dst`, and the stride between its rows.
    at: Vec<(usize, usize)>,
    /// Rows and columns of one member's result.
    m: usize,
    n: usize,
}

/// One member's `m × n` result inside a wider row-major buffer.
#[derive(Clone, Copy, Debug)]
pub struct Rows<'a> {
    values: &'a [f32],
    stride: usize,
    width: usize,
}

impl<'a> Rows<'a> {
    /// Row `r` (`width` values).
    #[inline(always)]
    pub fn row(&self, r: usize) -> &'a [f32] {
        &self.values[r * self.stride..r * self.stride + self.width]
    }
}

impl SideBySide {
    /// Member `j`'s result of the last [`Product::shared_left`].
    pub fn member(&self, j: usize) -> Rows<'_> {
        let (start, stride) = self.at[j];
        Rows { values: &self.dst[start..start + (self.m - 1) * stride + self.n], stride, width: self.n }
    }

    /// Member `j`'s result, copied into `dst` (`m × n`, row-major).
    pub fn copy_member(&self, j: usize, dst: &mut [f32]) {
        let (start, stride) = self.at[j];
        copy_rows((dst, self.n), (&self.dst[start..], stride), self.m, self.n);
    }
}

/// Copies `rows` rows of `n` values from `src` to `dst`, each given with its row stride. Rows
/// of up to 16 values are copied as fixed-size moves: through `memcpy` calls, packing 784
/// rows of 10 values per member cost a quarter of the product it packed for.
fn copy_rows((dst, dst_stride): (&mut [f32], usize), (src, src_stride): (&[f32], usize), rows: usize, n: usize) {
    fn fixed<const N: usize>((dst, dst_stride): (&mut [f32], usize), (src, src_stride): (&[f32], usize), rows: usize) {
        for r in 0..rows {
            let from: &[f32; N] = src[r * src_stride..r * src_stride + N].try_into().expect("N values");
            let to: &mut [f32; N] = (&mut dst[r * dst_stride..r * dst_stride + N]).try_into().expect("N values");
            *to = *from;
        }
    }
    macro_rules! widths {
        ($($w:literal)*) => {
            match n {
                $($w => fixed::<$w>((dst, dst_stride), (src, src_stride), rows),)*
                _ => {
                    for r in 0..rows {
                        dst[r * dst_stride..r * dst_stride + n].copy_from_slice(&src[r * src_stride..r * src_stride + n]);
                    }
                }
            }
        };
    }
    widths!(1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16);
}

/// The widest member result ([`Product::n`], columns) worth putting side by side. Measured by
/// `cargo bench -p beatmatch-core --bench side_by_side` (15 members, the registry's batch sizes
/// and input widths; `bench/results/2026-12-05-xeon-spr-avx512.md`): members 8 or 10 columns
/// wide ran 2.3–5.1× faster side by side, 16 columns 1.15–1.96×, 32 or more 0.55–1.14×. The
/// `gemm` crate runs a product 32 columns wide well already, and copying the members'
/// operands side by side then costs more than it saves.
pub const SIDE_BY_SIDE_WIDEST: usize = 16;

impl Product {
    /// Whether [`Product::shared_left`] over `members` members runs products side by side, and
    /// that pays ([`SIDE_BY_SIDE_WIDEST`]); if not, one product per member is as fast.
    pub fn side_by_side_pays(&self, members: usize) -> bool {
        members >= 2 && self.n <= SIDE_BY_SIDE_WIDEST && side_by_side(self.m, self.k, self.n) >= 2
    }

    /// `a · b[j]` for every member `j`, with `a` shared (a population's input batch), into
    /// `scratch` (read with [`SideBySide::member`]): products over the members' `b`s side by
    /// side, as many at a time as [`side_by_side`] says give each member its own bits (one
    /// product per member where that is one). `b` must be row-major. Side by side, the
    /// members' `b`s are copied into `scratch`, which is what turns K narrow products into one
    /// wide one, the shape the `gemm` crate runs near its peak.
    pub fn shared_left(&self, a: &[f32], b: &[&[f32]], scratch: &mut SideBySide) {
        assert!(self.b == Layout::RowMajor, "side by side needs row-major members");
        let (m, k, n) = (self.m, self.k, self.n);
        scratch.dst.resize(b.len() * m * n, 0.0);
        (scratch.m, scratch.n) = (m, n);
        scratch.at.clear();
        let per_product = if b.len() < 2 { 1 } else { side_by_side(m, k, n) };
        for (g, group) in b.chunks(per_product).enumerate() {
            let base = g * per_product * m * n;
            let dst = &mut scratch.dst[base..base + group.len() * m * n];
            if let [b] = group {
                self.run(a, b, dst);
                scratch.at.push((base, n));
                continue;
            }
            let wide = group.len() * n;
            scratch.b.resize(k * wide, 0.0);
            for (j, b) in group.iter().enumerate() {
                copy_rows((&mut scratch.b[j * n..], wide), (b, n), k, n);
                scratch.at.push((base + j * n, wide));
            }
            matmul(m, k, wide, a, self.a, &scratch.b, Layout::RowMajor, dst);
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
    fn a_batched_product_over_side_by_side_members_gives_their_own_bits() {
        // The shapes the dense networks meet (batch rows × inputs, inputs × batch rows for a
        // weight gradient) and the edges of the rule: depths either side of 512 with few and
        // many rows, one row, one column, a depth of two.
        let shapes = [
            (32, 40, 10),
            (128, 40, 32),
            (40, 128, 32),
            (32, 784, 10),
            (128, 784, 10),
            (784, 128, 10),
            (64, 600, 8),
            (65, 600, 8),
            (32, 600, 65),
            (1, 40, 10),
            (32, 40, 1),
            (16, 2, 8),
            (128, 100, 3),
        ];
        let mut scratch = SideBySide::default();
        let mut wide_ones = 0;
        for (m, k, n) in shapes {
            for p in [Product::new(m, k, n), Product::transposed_times(m, k, n)] {
                for members in [1, 2, 3, 15, 30] {
                    let a: Vec<f32> = (0..m * k).map(|i| ((i * 37 % 101) as f32 - 50.0) * 0.0131).collect();
                    let b: Vec<f32> = (0..members * k * n).map(|i| ((i * 53 % 97) as f32 - 48.0) * 0.0217).collect();
                    p.shared_left(&a, &super::members(&b, k * n), &mut scratch);
                    for j in 0..members {
                        let mut alone = vec![0.0; m * n];
                        p.run(&a, &b[j * k * n..][..k * n], &mut alone);
                        let mut side = vec![f32::NAN; m * n];
                        scratch.copy_member(j, &mut side);
                        assert!(alone.iter().zip(&side).all(|(x, y)| x.to_bits() == y.to_bits()), "member {j} of {members} in {p:?}");
                    }
                }
                wide_ones += usize::from(side_by_side(m, k, n) > 1);
            }
        }
        // The rule is not vacuous: 10 of these 13 shapes run side by side.
        assert_eq!(wide_ones, 20);
    }

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
