//! The learned optimizers' fused steps, in PyLO's two passes per parameter tensor: pass 1 folds
//! the gradient into the accumulators (a fresh state tensor; the old one stays valid as a
//! snapshot) and sums each feature's squares; pass 2 normalises the features, runs the
//! per-parameter MLP in registers and steps the parameter in place. No `[n, features]` matrix
//! is built (the candle-op path builds one per tensor and step). Rules with Adafactor-style
//! factored statistics (small_fc, VeLO and Celo) have a pass 0 before: the statistics' row and column sums,
//! their new values and the factors, into the new state.
//!
//! One C source (`kernels/lopt.h`), compiled by the host C compiler for the CPU device
//! (`kernels/lopt_host.c`, once per instruction set: the host rule's operations in its order,
//! so the same bits) and, with the `cuda` feature, to PTX by nvcc (`kernels/lopt.cu`: two
//! kernels per rule, pass 1's sums by warp shuffles and f64 atomics, and pass 0's three).
//! The CUDA kernels were compiled here but never run on a GPU.

use crate::fused::{apply, cpu_views};
use beatmatch_core::shape::{largest_two_axes, without};
use candle_core::{bail, CpuStorage, DType, InplaceOp3, Layout, Storage, Tensor, Var};
use std::cell::Cell;

/// Accumulator decays the kernels' constants hold (MLP-LOpt's six momenta; small_fc's and
/// VeLO's three momenta, one second moment and three factored statistics).
pub const MAX_DECAYS: usize = 8;

/// The widest hidden layer a kernel's network may have (`BM_LOPT_MAX_HIDDEN`).
pub const MAX_HIDDEN: usize = 32;

/// Where a tensor's factored statistics sit (the C struct's geometry fields): the row
/// statistic drops the largest axis (`row_axis` long, `row_inner` values after it), the column
/// statistic the second largest; the row factor's mean runs over the row statistic's copy of
/// the second largest axis (`mean_inner` values after it). All zero: no factored statistics.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Geometry {
    factored: u64,
    row_inner: u64,
    row_axis: u64,
    col_inner: u64,
    col_axis: u64,
    mean_inner: u64,
}

impl Geometry {
    /// The factored statistics of a tensor of `shape` (none below rank 2 or without values),
    /// over its two largest axes as the host rules' `accum::factored_dims`.
    pub fn of(shape: &[usize]) -> Self {
        let Some((d1, d0)) = largest_two_axes(shape).filter(|_| shape.iter().product::<usize>() > 0) else { return Self::default() };
        let after = |s: &[usize], a: usize| s[a + 1..].iter().product::<usize>() as u64;
        let row_shape = without(shape, d0);
        let reduced_d1 = if d1 > d0 { d1 - 1 } else { d1 };
        Self {
            factored: 1,
            row_inner: after(shape, d0),
            row_axis: shape[d0] as u64,
            col_inner: after(shape, d1),
            col_axis: shape[d1] as u64,
            mean_inner: after(&row_shape, reduced_d1),
        }
    }

    /// Row- and column-statistic entries per decay for a tensor of `n` values.
    #[cfg_attr(not(feature = "cuda"), allow(dead_code))]
    fn lens(&self, n: usize) -> (usize, usize) {
        (n / self.row_axis as usize, n / self.col_axis as usize)
    }
}

/// One step's scalars and the tensor's geometry (the C struct `bm_lopt_consts`). Callers set
/// the scalars; [`step`] sets the hidden width from the network and the geometry from the
/// parameter.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct LoptConsts {
    /// Scale inside the magnitude's exponential.
    pub exp_mult: f32,
    /// Scale of the step.
    pub step_mult: f32,
    /// The accumulators' decays, in the rule's order (unused entries zero).
    pub decays: [f32; MAX_DECAYS],
    hidden: i32,
    pad: i32,
    /// VeLO's step (the `velo` kernel): the tensor's RMS, `√(mean p² + 1e-9)`.
    pub param_scale: f32,
    /// VeLO's step: the per-tensor learning-rate multiplier.
    pub lr_mult: f32,
    geometry: Geometry,
}

impl LoptConsts {
    /// The step's scales and the accumulators' decays (at most [`MAX_DECAYS`], in the rule's
    /// order).
    pub fn new(exp_mult: f32, step_mult: f32, decays: &[f32]) -> Self {
        let mut k = Self { exp_mult, step_mult, ..Self::default() };
        k.decays[..decays.len()].copy_from_slice(decays);
        k
    }

    /// The same with VeLO's step scalars (read by the `velo` kernel only).
    pub fn with_velo_step(self, param_scale: f32, lr_mult: f32) -> Self {
        Self { param_scale, lr_mult, ..self }
    }
}

type LoptHostFn = unsafe extern "C" fn(usize, *mut f32, *const f32, *const f32, *mut f32, *const f32, *const LoptConsts) -> i32;

extern "C" {
    /// `kernels/lopt_host.c`: the state values rule `rule` keeps for a tensor of `n` with
    /// geometry `k` (the baseline compilation; every compilation computes the same).
    fn bm_lopt_state_len_baseline(rule: i32, n: usize, k: *const LoptConsts) -> usize;
}

// `LoptKernel` (with `sizes`, `name`) and `lopt_host_kernels`, generated by build.rs from the
// one list of rules in `kernels/lopt.h`.
include!(concat!(env!("OUT_DIR"), "/lopt_kernels.rs"));

impl LoptKernel {
    /// The network's inputs: the features, after the step embedding is folded into the first
    /// bias.
    pub fn features(self) -> usize {
        self.sizes()[0]
    }

    /// Whether the rule keeps factored statistics (and so has pass 0).
    pub fn factored(self) -> bool {
        self.sizes()[3] == 1
    }

    /// The network's layers as `(inputs, outputs)` at hidden width `hidden`: the features, the
    /// hidden layers, 2 outputs (direction, magnitude).
    pub fn layers(self, hidden: usize) -> Vec<(usize, usize)> {
        let [features, layers, ..] = self.sizes();
        (0..layers).map(|l| (if l == 0 { features } else { hidden }, if l + 1 == layers { 2 } else { hidden })).collect()
    }

    /// Values of the network array the kernel reads at hidden width `hidden`: per layer its
    /// weights `[in][out]` row-major, then its biases.
    pub fn net_len(self, hidden: usize) -> usize {
        self.layers(hidden).iter().map(|(i, o)| i * o + o).sum()
    }

    /// The state values the rule keeps for a parameter of `shape` (its layout is
    /// `kernels/lopt.h`'s, per rule).
    pub fn state_len(self, shape: &[usize]) -> usize {
        let k = LoptConsts { geometry: self.geometry(shape), ..LoptConsts::default() };
        // SAFETY: a plain function of its arguments; `self as i32` is a place in the list the
        // C table was built from.
        unsafe { bm_lopt_state_len_baseline(self as i32, shape.iter().product(), &k) }
    }

    /// The geometry the kernel reads for a parameter of `shape`.
    fn geometry(self, shape: &[usize]) -> Geometry {
        if self.factored() {
            Geometry::of(shape)
        } else {
            Geometry::default()
        }
    }

    /// The CPU function for the instruction set `beatmatch_core::simd::isa` names.
    fn host(self) -> LoptHostFn {
        let table = lopt_host_kernels(beatmatch_core::simd::isa()).or_else(|| lopt_host_kernels("baseline")).expect("every build has the baseline kernels");
        table[self as usize]
    }
}

/// A step's network as a kernel reads it ([`LoptKernel::net_len`]'s layout), made once per
/// step and used for every tensor: on a GPU it is uploaded once, at its first use.
pub struct Net {
    kernel: LoptKernel,
    hidden: usize,
    values: Vec<f32>,
    #[cfg(feature = "cuda")]
    on_gpu: std::cell::OnceCell<candle_core::cuda_backend::cudarc::driver::CudaSlice<f32>>,
}

impl Net {
    /// `values` as `kernel`'s network at hidden width `hidden`; refused (with the layers it
    /// should have) if the lengths disagree or the width is over [`MAX_HIDDEN`].
    pub fn new(kernel: LoptKernel, hidden: usize, values: Vec<f32>) -> candle_core::Result<Self> {
        if hidden == 0 || hidden > MAX_HIDDEN || values.len() != kernel.net_len(hidden) {
            bail!(
                "{}: a network of {} values at hidden width {hidden} (expected {}: layers {:?} with biases; widths 1..={MAX_HIDDEN})",
                kernel.name(),
                values.len(),
                kernel.net_len(hidden.clamp(1, MAX_HIDDEN)),
                kernel.layers(hidden.clamp(1, MAX_HIDDEN))
            );
        }
        Ok(Self {
            kernel,
            hidden,
            values,
            #[cfg(feature = "cuda")]
            on_gpu: Default::default(),
        })
    }
}

/// The zero state of `kernel` for parameter `w` (a vector of [`LoptKernel::state_len`] values).
pub fn zeros(kernel: LoptKernel, w: &Var) -> candle_core::Result<Tensor> {
    Tensor::zeros(kernel.state_len(w.dims()), DType::F32, w.device())
}

/// One fused step of `w` (in place) with gradient `g`, state `s` (from [`zeros`] or the last
/// step) and the step's network `net`; the new state.
pub fn step(k: LoptConsts, w: &Var, g: &Tensor, s: &Tensor, net: &Net) -> candle_core::Result<Tensor> {
    let kernel = net.kernel;
    let k = LoptConsts { hidden: net.hidden as i32, geometry: kernel.geometry(w.dims()), ..k };
    let op = Step { kernel, k, n: w.elem_count(), len: kernel.state_len(w.dims()), net, out: Cell::new(None) };
    apply(kernel.name(), &[op.len], w, g, s, &op, &op.out)
}

/// The candle op: the parameter is the destination; the new state is left in `out`.
struct Step<'a> {
    kernel: LoptKernel,
    k: LoptConsts,
    /// Parameters.
    n: usize,
    /// State values.
    len: usize,
    net: &'a Net,
    out: Cell<Option<Storage>>,
}

impl InplaceOp3 for Step<'_> {
    fn name(&self) -> &'static str {
        self.kernel.name()
    }

    fn cpu_fwd(&self, w: &mut CpuStorage, wl: &Layout, g: &CpuStorage, gl: &Layout, s: &CpuStorage, sl: &Layout) -> candle_core::Result<()> {
        let (w, g, s) = cpu_views(self.kernel.name(), (self.n, self.len), (w, wl), (g, gl), (s, sl))?;
        // Zeroed, not merely reserved: the kernel writes every value, but a value it skipped
        // would be a wrong number, not undefined behaviour.
        let mut out = vec![0f32; self.len];
        // SAFETY: the five buffers are distinct allocations (candle refuses aliased sources
        // for this op, `out` is fresh, `net` is the step's) of the lengths the kernel reads
        // (n, n, len, net_len: checked in `Net::new` and `step`) and writes (n, len).
        let failed = unsafe { (self.kernel.host())(self.n, w.as_mut_ptr(), g.as_ptr(), s.as_ptr(), out.as_mut_ptr(), self.net.values.as_ptr(), &self.k) };
        if failed != 0 {
            bail!("{}: no memory for pass 0's sums", self.kernel.name());
        }
        self.out.set(Some(Storage::Cpu(CpuStorage::F32(out))));
        Ok(())
    }

    #[cfg(feature = "cuda")]
    fn cuda_fwd(
        &self,
        w: &mut candle_core::CudaStorage,
        wl: &Layout,
        g: &candle_core::CudaStorage,
        gl: &Layout,
        s: &candle_core::CudaStorage,
        sl: &Layout,
    ) -> candle_core::Result<()> {
        cuda::launch(self, w, wl, g, gl, s, sl)
    }
}

/// VeLO's 8 per-tensor statistics `[mean p², mean v·norm, var_m (3), var_v (3)]` (the LSTM's
/// inputs, `velo::TensorStats` with the mean square first) of parameter values `p` and the
/// `velo` kernel's state `st` before this step's fold: one fused reduction (`kernels/lopt.h`'s
/// `bm_velo_*`; on the CPU the host rule's summation tree, so its bits), an `[8]` tensor on
/// `p`'s device.
pub fn velo_stats(p: &Tensor, st: &Tensor) -> candle_core::Result<Tensor> {
    let n = p.elem_count();
    if st.elem_count() < 4 * n {
        bail!("velo_stats: a state of {} values for a parameter of {n} (expected the velo kernel's, at least {})", st.elem_count(), 4 * n);
    }
    p.contiguous()?.apply_op2_no_bwd(&st.contiguous()?, &VeloStats { n, len: st.elem_count() })
}

/// The candle op of [`velo_stats`].
struct VeloStats {
    /// Parameters.
    n: usize,
    /// State values.
    len: usize,
}

type VeloStatsFn = unsafe extern "C" fn(usize, *const f32, *const f32, *mut f32);

extern "C" {
    fn bm_velo_stats_baseline(n: usize, p: *const f32, st: *const f32, out: *mut f32);
    #[cfg(target_arch = "x86_64")]
    fn bm_velo_stats_avx2(n: usize, p: *const f32, st: *const f32, out: *mut f32);
    #[cfg(target_arch = "x86_64")]
    fn bm_velo_stats_avx512f(n: usize, p: *const f32, st: *const f32, out: *mut f32);
}

/// The compilation of `bm_velo_stats` for the instruction set `beatmatch_core::simd::isa` names.
fn velo_stats_host() -> VeloStatsFn {
    match beatmatch_core::simd::isa() {
        #[cfg(target_arch = "x86_64")]
        "avx512f" => bm_velo_stats_avx512f,
        #[cfg(target_arch = "x86_64")]
        "avx2" => bm_velo_stats_avx2,
        _ => bm_velo_stats_baseline,
    }
}

impl candle_core::CustomOp2 for VeloStats {
    fn name(&self) -> &'static str {
        "velo_stats"
    }

    fn cpu_fwd(&self, p: &CpuStorage, pl: &Layout, st: &CpuStorage, sl: &Layout) -> candle_core::Result<(CpuStorage, candle_core::Shape)> {
        let (CpuStorage::F32(p), CpuStorage::F32(st)) = (p, st) else { bail!("velo_stats takes f32 tensors") };
        let (p, st) = (&p[crate::fused::span(pl, self.n, "parameter")?], &st[crate::fused::span(sl, self.len, "state")?]);
        let mut out = vec![0f32; 8];
        // SAFETY: `p` holds n values, `st` at least 4n (checked in `velo_stats`), `out` 8: what
        // the function reads and writes.
        unsafe { velo_stats_host()(self.n, p.as_ptr(), st.as_ptr(), out.as_mut_ptr()) };
        Ok((CpuStorage::F32(out), candle_core::Shape::from(8)))
    }

    #[cfg(feature = "cuda")]
    fn cuda_fwd(
        &self,
        p: &candle_core::CudaStorage,
        pl: &Layout,
        st: &candle_core::CudaStorage,
        sl: &Layout,
    ) -> candle_core::Result<(candle_core::CudaStorage, candle_core::Shape)> {
        cuda::velo_stats(self.n, self.len, p, pl, st, sl)
    }
}

#[cfg(feature = "cuda")]
mod cuda {
    use super::{LoptConsts, Step};
    use crate::fused::span;
    use candle_core::cuda_backend::cudarc::driver::{DeviceRepr, LaunchConfig, PushKernelArg};
    use candle_core::cuda_backend::WrapErr;
    use candle_core::{CudaStorage, Layout, Storage};

    /// The kernels of `kernels/lopt.cu` (built by build.rs).
    const PTX: &str = include_str!(concat!(env!("OUT_DIR"), "/lopt.ptx"));

    // SAFETY: `LoptConsts` is `#[repr(C)]` f32s, two i32s and u64s, laid out as the kernels'
    // `bm_lopt_consts`.
    unsafe impl DeviceRepr for LoptConsts {}

    /// Threads per block (a multiple of the warp, which pass 1's shuffles assume); the grid
    /// strides, so its size is only a cap.
    const BLOCK: u32 = 256;

    /// A grid-stride launch over `count` items.
    fn cfg(count: usize) -> LaunchConfig {
        let blocks = count.div_ceil(BLOCK as usize).clamp(1, 1 << 16) as u32;
        LaunchConfig { grid_dim: (blocks, 1, 1), block_dim: (BLOCK, 1, 1), shared_mem_bytes: 0 }
    }

    pub(super) fn velo_stats(
        n: usize,
        len: usize,
        p: &CudaStorage,
        pl: &Layout,
        st: &CudaStorage,
        sl: &Layout,
    ) -> candle_core::Result<(CudaStorage, candle_core::Shape)> {
        let dev = p.device.clone();
        let p = p.as_cuda_slice::<f32>()?.slice(span(pl, n, "parameter")?);
        let st = st.as_cuda_slice::<f32>()?.slice(span(sl, len, "state")?);
        let mut sums = dev.alloc_zeros::<f64>(11)?;
        let mut out = dev.alloc_zeros::<f32>(8)?;
        let phase_fn = dev.get_or_load_custom_func("bm_velo_stats_phase", "beatmatch_lopt", PTX)?;
        for phase in 0i32..3 {
            let mut b = phase_fn.builder();
            b.arg(&n);
            b.arg(&p);
            b.arg(&st);
            b.arg(&phase);
            b.arg(&mut sums);
            // SAFETY: (size_t, const float*, const float*, int, double*); `p` holds n values,
            // `st` at least 4n, `sums` 11; the stream orders the phases.
            unsafe { b.launch(cfg(n)) }.w()?;
        }
        let finish = dev.get_or_load_custom_func("bm_velo_stats_finish", "beatmatch_lopt", PTX)?;
        let mut b = finish.builder();
        b.arg(&n);
        b.arg(&sums);
        b.arg(&mut out);
        // SAFETY: (size_t, const double*, float*): 11 sums in, 8 statistics out.
        unsafe { b.launch(LaunchConfig { grid_dim: (1, 1, 1), block_dim: (1, 1, 1), shared_mem_bytes: 0 }) }.w()?;
        Ok((CudaStorage::wrap_cuda_slice(out, dev), candle_core::Shape::from(8)))
    }

    pub(super) fn launch(
        op: &Step<'_>,
        w: &mut CudaStorage,
        wl: &Layout,
        g: &CudaStorage,
        gl: &Layout,
        s: &CudaStorage,
        sl: &Layout,
    ) -> candle_core::Result<()> {
        let dev = w.device.clone();
        let func = |name: &str| dev.get_or_load_custom_func(name, "beatmatch_lopt", PTX);
        let name = op.kernel.name();
        let g = g.as_cuda_slice::<f32>()?.slice(span(gl, op.n, "gradient")?);
        let s = s.as_cuda_slice::<f32>()?.slice(span(sl, op.len, "state")?);
        let wr = span(wl, op.n, "parameter")?;
        // Zeroed for the reason the CPU path gives.
        let mut out = dev.alloc_zeros::<f32>(op.len)?;
        let net = match op.net.on_gpu.get() {
            Some(net) => net,
            None => {
                let _ = op.net.on_gpu.set(dev.clone_htod(&op.net.values)?);
                op.net.on_gpu.get().expect("just set")
            }
        };
        let mut wv = w.as_cuda_slice_mut::<f32>()?.slice_mut(wr);
        let geometry = op.k.geometry;
        if geometry.factored != 0 {
            let (lr, lc) = geometry.lens(op.n);
            let mut sums = dev.alloc_zeros::<f64>(lr + lc)?;
            {
                let f = func("bm_adafac_sums")?;
                let mut b = f.builder();
                b.arg(&op.n);
                b.arg(&g);
                b.arg(&op.k);
                b.arg(&mut sums);
                // SAFETY: (size_t, const float*, bm_lopt_consts, double*); `sums` holds the
                // lr + lc entries the geometry indexes.
                unsafe { b.launch(cfg(op.n)) }.w()?;
            }
            {
                let f = func("bm_adafac_stats")?;
                let mut b = f.builder();
                b.arg(&op.n);
                b.arg(&s);
                b.arg(&mut out);
                b.arg(&op.k);
                b.arg(&sums);
                // SAFETY: (size_t, const float*, float*, bm_lopt_consts, const double*); the
                // state lengths are the layout's (`state_len`).
                unsafe { b.launch(cfg(3 * (lr + lc))) }.w()?;
            }
            {
                let f = func("bm_adafac_row_factors")?;
                let mut b = f.builder();
                b.arg(&op.n);
                b.arg(&mut out);
                b.arg(&op.k);
                // SAFETY: (size_t, float*, bm_lopt_consts); ordered after the statistics.
                unsafe { b.launch(cfg(3 * (lr / geometry.col_axis as usize))) }.w()?;
            }
        }
        let mut sums = dev.alloc_zeros::<f64>(op.kernel.features())?;
        {
            let f = func(&format!("bm_{name}_pass1"))?;
            let mut b = f.builder();
            b.arg(&op.n);
            // Read only here; cudarc pushes a view as a pointer only through `&mut`.
            b.arg(&mut wv);
            b.arg(&g);
            b.arg(&s);
            b.arg(&mut out);
            b.arg(&op.k);
            b.arg(&mut sums);
            // SAFETY: the arguments match bm_*_pass1's (size_t, const float*, const float*,
            // const float*, float*, bm_lopt_consts, double*) and the lengths checked in `step`.
            unsafe { b.launch(cfg(op.n)) }.w()?;
        }
        {
            let f = func(&format!("bm_{name}_pass2"))?;
            let mut b = f.builder();
            b.arg(&op.n);
            b.arg(&mut wv);
            b.arg(&g);
            b.arg(&out);
            b.arg(net);
            b.arg(&op.k);
            b.arg(&sums);
            // SAFETY: as above, for bm_*_pass2's (size_t, float*, const float*, const float*,
            // const float*, bm_lopt_consts, const double*); the stream orders it after pass 1.
            unsafe { b.launch(cfg(op.n)) }.w()?;
        }
        op.out.set(Some(Storage::Cuda(CudaStorage::wrap_cuda_slice(out, dev))));
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    const ALL: [LoptKernel; 3] = [LoptKernel::MlpLopt, LoptKernel::SmallFc, LoptKernel::Velo];

    fn consts() -> LoptConsts {
        LoptConsts::new(0.001, 0.001, &[0.1, 0.5, 0.9, 0.99, 0.999, 0.9999, 0.95]).with_velo_step(0.7, 1.3)
    }

    fn values(len: usize, a: usize, m: usize, scale: f32) -> Vec<f32> {
        (0..len).map(|i| ((i * a % m) as f32 - (m / 2) as f32) * scale).collect()
    }

    fn net(kernel: LoptKernel, hidden: usize) -> Net {
        Net::new(kernel, hidden, values(kernel.net_len(hidden), 37, 101, 0.02)).unwrap()
    }

    #[test]
    fn every_instruction_set_gives_the_baselines_bits() {
        // Odd lengths (the last block partial), every rank, and a factored tensor whose
        // largest axis comes first, last and in the middle.
        let baseline = lopt_host_kernels("baseline").unwrap();
        let mut checked = 0;
        for kernel in ALL {
            for shape in [vec![1003], vec![17, 59], vec![59, 17], vec![3, 29, 11], vec![4, 6, 3], vec![]] {
                let n: usize = shape.iter().product();
                let len = kernel.state_len(&shape);
                let w0 = values(n, 37, 101, 0.013);
                let g = values(n, 53, 97, 0.021);
                // State values ≥ 0 (second moments are).
                let s: Vec<f32> = values(len, 29, 89, 0.011).iter().map(|v| v.abs()).collect();
                let net = net(kernel, 4);
                let k = LoptConsts { hidden: 4, geometry: kernel.geometry(&shape), ..consts() };
                let run = |f: LoptHostFn| {
                    let (mut w, mut out) = (w0.clone(), vec![f32::NAN; len]);
                    // SAFETY: lengths n, n, len, len and net_len, as the kernel reads and writes them.
                    assert_eq!(unsafe { f(n, w.as_mut_ptr(), g.as_ptr(), s.as_ptr(), out.as_mut_ptr(), net.values.as_ptr(), &k) }, 0);
                    assert!(out.iter().all(|v| v.is_finite()), "{kernel:?} {shape:?}: a state value left unwritten or not finite");
                    (w.iter().chain(&out).map(|v| v.to_bits()).collect::<Vec<_>>(), w != w0)
                };
                let (want, moved) = run(baseline[kernel as usize]);
                assert!(moved, "{kernel:?} {shape:?}: the parameters did not move");
                #[cfg(target_arch = "x86_64")]
                for (isa, present) in
                    [("avx2", is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma")), ("avx512f", is_x86_feature_detected!("avx512f"))]
                {
                    if present {
                        assert!(run(lopt_host_kernels(isa).unwrap()[kernel as usize]).0 == want, "{kernel:?} {shape:?}: {isa} differs from the baseline");
                        checked += 1;
                    }
                }
            }
        }
        println!("instruction sets checked against the baseline: {checked} (running {})", beatmatch_core::simd::isa());
    }

    #[test]
    fn the_geometry_names_the_two_largest_axes() {
        // [3, 29, 11]: the row statistic drops axis 1 (29), the column statistic axis 2 (11);
        // the row statistic [3, 11] takes its mean over its axis 1.
        let g = Geometry::of(&[3, 29, 11]);
        assert_eq!(g, Geometry { factored: 1, row_inner: 11, row_axis: 29, col_inner: 1, col_axis: 11, mean_inner: 1 });
        assert_eq!(Geometry::of(&[7]), Geometry::default());
        assert_eq!(Geometry::of(&[0, 4]), Geometry::default());
        // small_fc: 4n accumulators plus 9 planes over the 3·11 row and 3·29 column entries.
        assert_eq!(LoptKernel::SmallFc.state_len(&[3, 29, 11]), 4 * 957 + 9 * (33 + 87));
        assert_eq!(LoptKernel::SmallFc.state_len(&[7]), 7 * 7);
        assert_eq!(LoptKernel::MlpLopt.state_len(&[3, 29, 11]), 6 * 957);
    }

    #[test]
    fn a_network_of_the_wrong_size_is_refused_with_its_layers() {
        let dev = Device::Cpu;
        let kernel = LoptKernel::MlpLopt;
        let e = Net::new(kernel, 32, vec![0.0; 10]).err().unwrap().to_string();
        assert!(e.contains("10 values") && e.contains(&kernel.net_len(32).to_string()) && e.contains("(8, 32)"), "{e}");
        let e = Net::new(kernel, 33, vec![0.0; kernel.net_len(33)]).err().unwrap().to_string();
        assert!(e.contains("widths 1..=32"), "{e}");
        let w = Var::zeros(5, DType::F32, &dev).unwrap();
        let g = Tensor::zeros(5, DType::F32, &dev).unwrap();
        let e = step(consts(), &w, &g, &Tensor::zeros((1, 5), DType::F32, &dev).unwrap(), &net(kernel, 32)).unwrap_err().to_string();
        assert!(e.contains("expected [30]"), "{e}");
    }
}
