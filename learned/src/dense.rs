//! A dense layer `x @ w + b` over a small batch of rows (the tensors of a model, a handful),
//! its weights repacked once at bind time so each 16-column tile streams past once per call.
//! The per-tensor networks of VeLO and Celo (mix layers, LSTM, heads) are made of these.

use crate::features::{simd_dispatch, Kernel, B};
use crate::theta::{Theta, ThetaError};

/// A dense layer bound from theta's `NAME/w` `[n_in, n_out]` and `NAME/b` `[n_out]`.
pub(crate) struct Dense {
    /// Weights `[in][out]` repacked into 16-column tiles, `[out / 16][in][16]` (the last tile
    /// zero-padded), so one tile's weights are one contiguous stream.
    packed: Vec<f32>,
    /// Biases zero-padded to whole tiles.
    b_padded: Vec<f32>,
    n_in: usize,
    n_out: usize,
}

impl Dense {
    pub(crate) fn load(theta: &Theta, arch: &'static str, name: &str, n_in: usize, n_out: usize) -> Result<Self, ThetaError> {
        let w = theta.get(arch, &format!("{name}/w"), &[n_in, n_out])?;
        let mut packed = vec![0f32; n_out.div_ceil(B) * n_in * B];
        for i in 0..n_in {
            for j in 0..n_out {
                packed[((j / B) * n_in + i) * B + j % B] = w[i * n_out + j];
            }
        }
        let mut b_padded = theta.get(arch, &format!("{name}/b"), &[n_out])?.to_vec();
        b_padded.resize(n_out.div_ceil(B) * B, 0.0);
        Ok(Self { packed, b_padded, n_in, n_out })
    }

    /// `x @ w + b` for `rows` rows of `x` (`[rows][n_in]`). The batch is the number of tensors
    /// (a handful): per 16-column tile, up to 6 rows' outputs stay in registers while the
    /// tile's weights stream past once (no packing per call, as a GEMM library would redo for
    /// the up to 8 MB of weights). Each output is its bias plus its products added in input
    /// order, a multiply then an add each: the bits of the plain triple loop.
    pub(crate) fn batch(&self, x: &[f32], rows: usize) -> Vec<f32> {
        assert_eq!(x.len(), rows * self.n_in);
        let tiles = self.n_out.div_ceil(B);
        let mut padded = vec![0f32; rows * tiles * B];
        simd_dispatch(&mut TiledRows { d: self, x, out: &mut padded, rows });
        (0..rows).flat_map(|t| padded[t * tiles * B..t * tiles * B + self.n_out].iter().copied()).collect()
    }
}

struct TiledRows<'a> {
    d: &'a Dense,
    x: &'a [f32],
    out: &'a mut [f32],
    rows: usize,
}

impl TiledRows<'_> {
    /// Rows `t0..t0 + R`, every column tile, into `self.out` (`[rows][tiles · 16]`).
    #[inline(always)]
    fn group<const R: usize>(&mut self, t0: usize) {
        let (n_in, tiles) = (self.d.n_in, self.d.n_out.div_ceil(B));
        let xr: [&[f32]; R] = std::array::from_fn(|r| &self.x[(t0 + r) * n_in..(t0 + r + 1) * n_in]);
        for tile in 0..tiles {
            let bias: &[f32; B] = self.d.b_padded[tile * B..(tile + 1) * B].try_into().unwrap();
            let mut acc = [*bias; R];
            let wt = &self.d.packed[tile * n_in * B..(tile + 1) * n_in * B];
            for (i, w) in wt.chunks_exact(B).enumerate() {
                let w: &[f32; B] = w.try_into().unwrap();
                for r in 0..R {
                    axpy_row(&mut acc[r], w, xr[r][i]);
                }
            }
            for (r, a) in acc.iter().enumerate() {
                let o: &mut [f32; B] = (&mut self.out[((t0 + r) * tiles + tile) * B..((t0 + r) * tiles + tile + 1) * B]).try_into().unwrap();
                *o = *a;
            }
        }
    }
}

/// `a ← a + x · w`, lane by lane (a multiply, then an add).
#[inline(always)]
fn axpy_row(a: &mut [f32; B], w: &[f32; B], x: f32) {
    for c in 0..B {
        a[c] += x * w[c];
    }
}

impl Kernel for TiledRows<'_> {
    #[inline(always)]
    fn run(&mut self) {
        let mut t0 = 0;
        while t0 < self.rows {
            t0 += match self.rows - t0 {
                6.. => {
                    self.group::<6>(t0);
                    6
                }
                3.. => {
                    self.group::<3>(t0);
                    3
                }
                2 => {
                    self.group::<2>(t0);
                    2
                }
                _ => {
                    self.group::<1>(t0);
                    1
                }
            };
        }
    }
}
