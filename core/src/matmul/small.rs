//! Narrow matrix products in one pass over the operands, without the `gemm` crate's per-call
//! work (its dispatch, cache-size rules, scratch buffers and packing), to the same bits.
//!
//! Why: at an output layer's shapes that per-call work is most of a product's time (`cargo
//! bench -p beatmatch-core --bench small_products`): a 128 × 32 × 10 product, a 32-unit MLP's
//! output layer, is 41k multiply-adds and took about 4 µs through `gemm`, 2 µs here.
//!
//! Why the bits are `gemm`'s: for the shapes [`applies`] admits, `gemm` computes every output
//! element as one chain of fused multiply-adds over the depth, in order, from +0, and stores
//! it times 1 (its main path; its depth blocks are at least 512 deep, and shapes with one
//! row or column, a depth of at most two, or a small `a · bᵀ` take other paths, which this
//! module leaves to it). That is the chain this kernel computes, element by element; an FMA
//! is one correctly rounded operation whatever the vector width, so AVX-512 and AVX2 agree.
//! `small_products_give_the_bits_of_gemm` tests it on the shapes the engine meets.

use super::Layout;
use std::cell::RefCell;

/// Columns a pass computes side by side: one AVX-512 vector, two AVX2 ones.
const W: usize = 16;
/// Rows an AVX-512 tile computes side by side: 12 accumulators of 16 columns, of its 32
/// registers, so the FMA units have 12 independent chains to overlap.
const ROWS_AVX512: usize = 12;
/// Rows an AVX2 tile computes side by side: 6 × 2 accumulators, 12 of its 16 registers (the
/// rest hold `b`'s row and the broadcast).
const ROWS_AVX2: usize = 6;
/// The deepest product `gemm` sums as one chain (it cuts depths above 512 into blocks).
const DEEPEST: usize = 512;
/// The widest product (`n`, output columns) this path takes. `cargo bench -p beatmatch-core
/// --bench small_products` times both ways in one run (`bench/results/2026-12-06-xeon-spr-avx512.md`):
/// 8 or 10 columns (a classifier's output layer, a narrow hidden layer) ran 1.2–2.1× faster
/// here on AVX-512, 1.1–1.8× on AVX2. At 16 columns, measured while setting this, the two
/// were within 0.8–1.3× of each other (`gemm`'s kernels fill their 16-row tiles exactly
/// there), and wider products gain nothing from saving the per-call work.
const WIDEST: usize = 12;

/// Whether `dst[m×n] = a[m×k] · b[k×n]` (layouts as given) takes this path: a product `gemm`
/// sums as one ordered FMA chain per element, narrow enough to gain, on a core with FMA.
pub(super) fn applies(m: usize, k: usize, n: usize, a: Layout, b: Layout) -> bool {
    n <= WIDEST && same_order_as_gemm(m, k, n, a, b) && crate::simd::isa() != "baseline"
}

/// Whether `gemm` computes this product's elements as single ordered FMA chains from +0: not
/// its vector paths (one row or column, depth ≤ 2), not its horizontal kernels (`a · bᵀ`
/// with at most 256 outputs), and one depth block.
fn same_order_as_gemm(m: usize, k: usize, n: usize, a: Layout, b: Layout) -> bool {
    let horizontal = a == Layout::RowMajor && b == Layout::Transposed && m * n <= 256;
    m >= 2 && n >= 2 && (3..=DEEPEST).contains(&k) && !horizontal
}

thread_local! {
    /// `b` packed in column blocks of [`W`] (`k × W` each, zero-padded), reused across calls.
    static PANEL: RefCell<Vec<f32>> = const { RefCell::new(Vec::new()) };
}

/// `dst[m×n] = a[m×k] · b[k×n]`, row-major output: each element one FMA chain over the depth
/// in order, from +0. Vector kernels on AVX-512 and AVX2 + FMA ([`crate::simd::isa`]); on
/// the baseline a scalar loop of `f32::mul_add` (libm's `fmaf`: the same bits, slowly).
#[allow(clippy::too_many_arguments)]
pub(super) fn matmul(m: usize, k: usize, n: usize, a: &[f32], a_layout: Layout, b: &[f32], b_layout: Layout, dst: &mut [f32]) {
    assert!(a.len() >= m * k && b.len() >= k * n && dst.len() >= m * n);
    // `a[i][l]` is `a[i·rs + l·cs]`.
    let (rs, cs) = if a_layout == Layout::RowMajor { (k, 1) } else { (1, m) };
    PANEL.with_borrow_mut(|panel| {
        pack(k, n, b, b_layout, panel);
        match crate::simd::isa() {
            #[cfg(target_arch = "x86_64")]
            // SAFETY: `isa` names AVX-512F only where the CPU has it; every index the tiles
            // read is inside `a` (rows < m, depths < k, asserted above) and `panel` (packed
            // for k and n).
            "avx512f" => unsafe { tiles::<ROWS_AVX512>(m, k, n, (a, rs, cs), panel, dst, tile_avx512::<ROWS_AVX512>) },
            #[cfg(target_arch = "x86_64")]
            // SAFETY: likewise, AVX2 and FMA.
            "avx2" => unsafe { tiles::<ROWS_AVX2>(m, k, n, (a, rs, cs), panel, dst, tile_avx2::<ROWS_AVX2>) },
            _ => scalar(m, k, n, (a, rs, cs), panel, dst),
        }
    });
}

/// `b` into column blocks of `W`: block `j`, depth `l` is `panel[(j·k + l)·W ..][..W]`,
/// columns past `n` zero.
fn pack(k: usize, n: usize, b: &[f32], layout: Layout, panel: &mut Vec<f32>) {
    panel.clear();
    panel.resize(n.div_ceil(W) * k * W, 0.0);
    for (j, block) in panel.chunks_exact_mut(k * W).enumerate() {
        let cols = W.min(n - j * W);
        match layout {
            Layout::RowMajor => {
                for (row, b) in block.chunks_exact_mut(W).zip(b.chunks_exact(n)) {
                    row[..cols].copy_from_slice(&b[j * W..][..cols]);
                }
            }
            Layout::Transposed => {
                for (c, b) in b[j * W * k..].chunks_exact(k).take(cols).enumerate() {
                    for (row, &v) in block.chunks_exact_mut(W).zip(b) {
                        row[c] = v;
                    }
                }
            }
        }
    }
}

/// Where a tile's results go: its first element, the row stride, and how many of the tile's
/// rows and columns are real (the last tiles of a product may have fewer).
#[derive(Clone, Copy)]
struct Out {
    at: *mut f32,
    stride: usize,
    rows: usize,
    cols: usize,
}

/// A tile kernel: depth `k`, `a`'s rows (pointer, row and depth strides), one packed column
/// block (`k × W`), and where its results go.
type Tile = unsafe fn(usize, (*const f32, usize, usize), *const f32, Out);

/// Every output tile of `T` rows (the last tile fewer) by `W` columns.
///
/// # Safety
/// `tile` must be runnable on this CPU, compute `T` rows and read and write only the real ones.
unsafe fn tiles<const T: usize>(m: usize, k: usize, n: usize, (a, rs, cs): (&[f32], usize, usize), panel: &[f32], dst: &mut [f32], tile: Tile) {
    for i0 in (0..m).step_by(T) {
        let rows = T.min(m - i0);
        let a_rows = (a[i0 * rs..].as_ptr(), rs, cs);
        for (j, block) in panel.chunks_exact(k * W).enumerate() {
            let out = Out { at: dst[i0 * n + j * W..].as_mut_ptr(), stride: n, rows, cols: W.min(n - j * W) };
            tile(k, a_rows, block.as_ptr(), out);
        }
    }
}

/// `T` rows × 16 columns in `T` AVX-512 registers: per depth, one load of `b`, then one
/// broadcast FMA per row. Rows past `out.rows` repeat row 0 (computed, not stored).
///
/// # Safety
/// AVX-512F; `a` readable for `out.rows` rows and `k` depths, `b` for `k × W` values, `out`
/// writable for its rows and columns.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn tile_avx512<const T: usize>(k: usize, (a, rs, cs): (*const f32, usize, usize), b: *const f32, out: Out) {
    use std::arch::x86_64::*;
    let offsets: [usize; T] = std::array::from_fn(|r| if r < out.rows { r * rs } else { 0 });
    let mut acc = [_mm512_setzero_ps(); T];
    for l in 0..k {
        let bv = _mm512_loadu_ps(b.add(l * W));
        let a_l = a.add(l * cs);
        for r in 0..T {
            acc[r] = _mm512_fmadd_ps(_mm512_set1_ps(*a_l.add(offsets[r])), bv, acc[r]);
        }
    }
    let mask = ((1u32 << out.cols) - 1) as u16;
    for (r, acc) in acc.iter().enumerate().take(out.rows) {
        _mm512_mask_storeu_ps(out.at.add(r * out.stride), mask, *acc);
    }
}

/// As [`tile_avx512`], each row's 16 columns in two AVX2 registers.
///
/// # Safety
/// AVX2 and FMA; otherwise as [`tile_avx512`].
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn tile_avx2<const T: usize>(k: usize, (a, rs, cs): (*const f32, usize, usize), b: *const f32, out: Out) {
    use std::arch::x86_64::*;
    let offsets: [usize; T] = std::array::from_fn(|r| if r < out.rows { r * rs } else { 0 });
    let mut acc = [[_mm256_setzero_ps(); 2]; T];
    for l in 0..k {
        let (b0, b1) = (_mm256_loadu_ps(b.add(l * W)), _mm256_loadu_ps(b.add(l * W + 8)));
        let a_l = a.add(l * cs);
        for r in 0..T {
            let av = _mm256_set1_ps(*a_l.add(offsets[r]));
            acc[r][0] = _mm256_fmadd_ps(av, b0, acc[r][0]);
            acc[r][1] = _mm256_fmadd_ps(av, b1, acc[r][1]);
        }
    }
    // Lane `c` of half `h` is stored where column `8h + c` is real (the mask's sign bit).
    let lanes = |h: i32| _mm256_setr_epi32(h, h + 1, h + 2, h + 3, h + 4, h + 5, h + 6, h + 7);
    let limit = _mm256_set1_epi32(out.cols as i32);
    let masks = [_mm256_cmpgt_epi32(limit, lanes(0)), _mm256_cmpgt_epi32(limit, lanes(8))];
    for (r, acc) in acc.iter().enumerate().take(out.rows) {
        let row = out.at.add(r * out.stride);
        _mm256_maskstore_ps(row, masks[0], acc[0]);
        _mm256_maskstore_ps(row.add(8), masks[1], acc[1]);
    }
}

/// The same chains, one element at a time (a CPU without FMA instructions).
fn scalar(m: usize, k: usize, n: usize, (a, rs, cs): (&[f32], usize, usize), panel: &[f32], dst: &mut [f32]) {
    for i in 0..m {
        for c in 0..n {
            let (block, col) = (&panel[c / W * k * W..], c % W);
            dst[i * n + c] = (0..k).fold(0.0f32, |acc, l| a[i * rs + l * cs].mul_add(block[l * W + col], acc));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Values with every sign and scale a layer meets, zeros of both signs and subnormals
    /// among them, and (where `special`) an infinity and a NaN.
    fn values(len: usize, seed: usize, special: bool) -> Vec<f32> {
        (0..len)
            .map(|i| match (i * 7 + seed) % 53 {
                0 => 0.0,
                1 => -0.0,
                2 => 1e-40,
                3 if special => f32::INFINITY,
                4 if special => f32::NAN,
                _ => ((i * 2654435761 + seed * 97) % 2003) as f32 / 1001.0 - 1.0,
            })
            .collect()
    }

    /// Every shape of `ms × ks × ns` (up to `largest` multiply-adds) `gemm` sums in this path's order, all four layouts: its bits against `gemm`'s
    /// (NaNs as NaNs). Returns how many products were compared.
    fn compare(ms: &[usize], ks: &[usize], ns: &[usize], largest: usize) -> usize {
        let layouts = [Layout::RowMajor, Layout::Transposed];
        let mut compared = 0;
        for (&m, &k, &n) in ms.iter().flat_map(|m| ks.iter().flat_map(move |k| ns.iter().map(move |n| (m, k, n)))) {
            for (a_layout, b_layout) in layouts.iter().flat_map(|&a| layouts.iter().map(move |&b| (a, b))) {
                if !same_order_as_gemm(m, k, n, a_layout, b_layout) || m * k * n > largest {
                    continue;
                }
                let special = compared % 3 == 0;
                let (a, b) = (values(m * k, m + k, special), values(k * n, n, special));
                let (mut want, mut got) = (vec![f32::NAN; m * n], vec![f32::NAN; m * n]);
                super::super::gemm_call(m, k, n, &a, a_layout, &b, b_layout, &mut want);
                matmul(m, k, n, &a, a_layout, &b, b_layout, &mut got);
                for (i, (w, g)) in want.iter().zip(&got).enumerate() {
                    let same = w.to_bits() == g.to_bits() || (w.is_nan() && g.is_nan());
                    assert!(same, "{m}×{k}×{n} {a_layout:?}·{b_layout:?}, element {i}: gemm {w:e}, here {g:e}");
                }
                compared += 1;
            }
        }
        compared
    }

    /// The registry's dense, LSTM and Transformer shapes (batch rows 2–256, widths 2–256,
    /// inputs 40, 64 and 784 as rows of a weight gradient) and the edges of the rule: depths 3
    /// and 512, rows one over a tile of 6 or 12, columns one over a block of 16. Wider
    /// products than the path takes are checked too: they run its other column blocks.
    fn check_the_engine_shapes() {
        let ms = [2, 5, 6, 7, 10, 13, 32, 40, 64, 65, 128, 256, 784];
        let ks = [3, 4, 10, 32, 40, 64, 128, 256, 512];
        let ns = [2, 3, 8, 10, 12, 16, 17, 32, 64, 128, 256];
        let compared = compare(&ms, &ks, &ns, 1 << 21);
        // Not vacuous: most of the candidates are small enough and sum in gemm's order.
        assert!(compared > 2500, "only {compared} products compared");
    }

    #[test]
    fn small_products_give_the_bits_of_gemm() {
        check_the_engine_shapes();
    }

    #[test]
    fn small_products_give_the_bits_of_gemm_on_avx2() {
        crate::simd::limit("avx2").unwrap();
        check_the_engine_shapes();
    }

    #[test]
    fn small_products_give_the_bits_of_gemm_on_the_baseline() {
        crate::simd::limit("baseline").unwrap();
        let compared = compare(&[2, 7, 32, 128], &[3, 40, 128], &[2, 10, 17], 1 << 16);
        assert!(compared > 50, "only {compared} products compared");
    }

    #[test]
    fn the_rule_leaves_gemm_its_other_paths() {
        use Layout::*;
        assert!(same_order_as_gemm(128, 32, 10, RowMajor, RowMajor));
        assert!(same_order_as_gemm(32, 128, 10, Transposed, RowMajor));
        assert!(same_order_as_gemm(128, 10, 32, RowMajor, Transposed), "a · bᵀ with more than 256 outputs");
        assert!(!same_order_as_gemm(10, 10, 10, RowMajor, Transposed), "gemm's horizontal kernels");
        assert!(!same_order_as_gemm(1, 40, 10, RowMajor, RowMajor), "one row: gemv");
        assert!(!same_order_as_gemm(32, 40, 1, RowMajor, RowMajor), "one column: gemv");
        assert!(!same_order_as_gemm(16, 2, 8, RowMajor, RowMajor), "depth 2: gevv");
        assert!(!same_order_as_gemm(32, 784, 10, RowMajor, RowMajor), "two depth blocks");
    }
}
