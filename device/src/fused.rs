//! The baselines' fused steps: one kernel per parameter tensor and step reads the parameter,
//! its gradient and the old state, writes the parameter in place and the new state to a fresh
//! tensor. The per-element code is one C source (`kernels/rules.h`) compiled for the CPU by
//! the host C compiler (`kernels/host.c`, once per instruction set) and, with the `cuda`
//! feature, to PTX by nvcc (`kernels/rules.cu`); both compilations keep every operation a
//! single IEEE f32 operation in the host rules' order, so on the CPU the fused step gives the
//! host rules' bits. The CUDA kernels were compiled here but never run on a GPU.

use crate::DeviceRule;
use beatmatch_core::StepContext;
use candle_core::op::BackpropOp;
use candle_core::{bail, CpuStorage, DType, InplaceOp3, Layout, Storage, Tensor, Var};
use std::cell::Cell;
use std::ops::Range;

/// One step's constants, in the order `kernels/rules.h` documents per rule (the C struct
/// `bm_consts`).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Consts(pub [f32; 12]);

impl Consts {
    /// The constants `c`, the rest zero.
    pub fn of(c: &[f32]) -> Self {
        let mut k = [0.0; 12];
        k[..c.len()].copy_from_slice(c);
        Self(k)
    }
}

/// A fused kernel of `kernels/rules.h`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kernel {
    /// Adam; slots m, v.
    Adam,
    /// AdamW; slots m, v.
    AdamW,
    /// SGD with heavy-ball or Nesterov momentum; slot: the trace.
    Sgd,
    /// NAdamW; slots m, v.
    NAdamW,
    /// RMSProp; slot ν.
    RmsProp,
    /// Lion; slot μ.
    Lion,
}

type HostFn = unsafe extern "C" fn(usize, *mut f32, *const f32, *const f32, *mut f32, *const Consts);

/// One compilation of `kernels/host.c`: its functions in [`Kernel`] order.
macro_rules! host_table {
    ($($f:ident),* $(,)?) => {{
        extern "C" {
            $(fn $f(n: usize, w: *mut f32, g: *const f32, s: *const f32, out: *mut f32, k: *const Consts);)*
        }
        [$($f as HostFn),*]
    }};
}

/// The compilation for instruction set `isa` (`avx512f`, `avx2`, `baseline`); `None` where
/// this build has none (non-x86 targets have the baseline only).
pub fn host_kernels(isa: &str) -> Option<[HostFn; 6]> {
    match isa {
        "baseline" => Some(host_table!(
            bm_adam_host_baseline,
            bm_adamw_host_baseline,
            bm_sgd_host_baseline,
            bm_nadamw_host_baseline,
            bm_rmsprop_host_baseline,
            bm_lion_host_baseline
        )),
        #[cfg(target_arch = "x86_64")]
        "avx2" => Some(host_table!(bm_adam_host_avx2, bm_adamw_host_avx2, bm_sgd_host_avx2, bm_nadamw_host_avx2, bm_rmsprop_host_avx2, bm_lion_host_avx2)),
        #[cfg(target_arch = "x86_64")]
        "avx512f" => Some(host_table!(
            bm_adam_host_avx512f,
            bm_adamw_host_avx512f,
            bm_sgd_host_avx512f,
            bm_nadamw_host_avx512f,
            bm_rmsprop_host_avx512f,
            bm_lion_host_avx512f
        )),
        _ => None,
    }
}

impl Kernel {
    /// State values per parameter.
    pub fn slots(self) -> usize {
        match self {
            Kernel::Adam | Kernel::AdamW | Kernel::NAdamW => 2,
            Kernel::Sgd | Kernel::RmsProp | Kernel::Lion => 1,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Kernel::Adam => "adam",
            Kernel::AdamW => "adamw",
            Kernel::Sgd => "sgd",
            Kernel::NAdamW => "nadamw",
            Kernel::RmsProp => "rmsprop",
            Kernel::Lion => "lion",
        }
    }

    /// The CPU function for the instruction set `beatmatch_core::simd::isa` names (the
    /// CPU's widest unless `BEATMATCH_SIMD` caps it).
    fn host(self) -> HostFn {
        let table = host_kernels(beatmatch_core::simd::isa()).or_else(|| host_kernels("baseline")).expect("every build has the baseline kernels");
        table[self as usize]
    }
}

/// A rule whose whole step is one fused kernel: its constants for the step after `steps`
/// steps were taken.
pub trait FusedRule: Send + Sync + 'static {
    /// The kernel.
    const KERNEL: Kernel;
    /// Short name, for messages.
    const NAME: &'static str;
    /// The constants of step `steps + 1` of `ctx.num_steps`.
    fn consts(&self, steps: u64, ctx: &StepContext<'_>) -> Consts;
}

/// Per-tensor state (`[slots, n]`, slot-major as the kernels read it) and the steps taken.
#[derive(Clone, Debug)]
pub struct State {
    /// One per parameter tensor.
    pub tensors: Vec<Tensor>,
    /// Steps taken.
    pub steps: u64,
}

/// A [`FusedRule`] as a [`DeviceRule`].
pub struct Fused<R>(pub R);

impl<R: FusedRule> DeviceRule for Fused<R> {
    type State = State;
    fn name(&self) -> &'static str {
        R::NAME
    }
    fn init(&self, params: &[Var]) -> candle_core::Result<State> {
        let tensors = params.iter().map(|w| Tensor::zeros((R::KERNEL.slots(), w.elem_count()), DType::F32, w.device())).collect::<candle_core::Result<_>>()?;
        Ok(State { tensors, steps: 0 })
    }
    fn update(&self, s: &mut State, params: &[Var], grads: &[Tensor], ctx: &StepContext<'_>) -> candle_core::Result<()> {
        let k = self.0.consts(s.steps, ctx);
        for ((w, g), st) in params.iter().zip(grads).zip(s.tensors.iter_mut()) {
            *st = step(R::KERNEL, k, w, g, st)?;
        }
        s.steps += 1;
        Ok(())
    }
}

/// One fused step of `w` (in place) with gradient `g` and state `s`; the new state.
pub fn step(kernel: Kernel, k: Consts, w: &Var, g: &Tensor, s: &Tensor) -> candle_core::Result<Tensor> {
    let n = w.elem_count();
    if g.elem_count() != n || s.dims() != [kernel.slots(), n] {
        bail!(
            "{}: a parameter of {n} values, a gradient of {} and a state of shape {:?} (expected [{}, {n}])",
            kernel.name(),
            g.elem_count(),
            s.dims(),
            kernel.slots()
        );
    }
    let (g, s) = (g.contiguous()?, s.contiguous()?);
    let op = Step { kernel, k, n, out: Cell::new(None) };
    w.inplace_op3(&g, &s, &op)?;
    let Some(out) = op.out.take() else { bail!("{}: the kernel produced no state", kernel.name()) };
    Ok(Tensor::from_storage(out, (kernel.slots(), n), BackpropOp::none(), false))
}

/// The candle op: the parameter is the destination; the new state is left in `out`.
struct Step {
    kernel: Kernel,
    k: Consts,
    /// Parameters.
    n: usize,
    out: Cell<Option<Storage>>,
}

impl Step {
    /// State values.
    fn len(&self) -> usize {
        self.kernel.slots() * self.n
    }
}

/// The span of a contiguous f32 view of `len` values.
fn span(l: &Layout, len: usize, what: &str) -> candle_core::Result<Range<usize>> {
    match l.contiguous_offsets() {
        Some((a, b)) if b - a == len => Ok(a..b),
        _ => bail!("fused step: the {what} is not a contiguous view of {len} values"),
    }
}

impl InplaceOp3 for Step {
    fn name(&self) -> &'static str {
        self.kernel.name()
    }

    fn cpu_fwd(&self, w: &mut CpuStorage, wl: &Layout, g: &CpuStorage, gl: &Layout, s: &CpuStorage, sl: &Layout) -> candle_core::Result<()> {
        let (CpuStorage::F32(w), CpuStorage::F32(g), CpuStorage::F32(s)) = (w, g, s) else { bail!("{}: the fused steps take f32 tensors", self.kernel.name()) };
        let w = &mut w[span(wl, self.n, "parameter")?];
        let g = &g[span(gl, self.n, "gradient")?];
        let s = &s[span(sl, self.len(), "state")?];
        let mut out = Vec::<f32>::with_capacity(self.len());
        // SAFETY: the four buffers are distinct allocations (candle refuses aliased sources
        // for this op, and `out` is fresh) of the lengths the kernel reads (n, n, len) and
        // writes (n, len); the kernel writes every value of `out`.
        unsafe {
            (self.kernel.host())(self.n, w.as_mut_ptr(), g.as_ptr(), s.as_ptr(), out.as_mut_ptr(), &self.k);
            out.set_len(self.len());
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

#[cfg(feature = "cuda")]
mod cuda {
    use super::{span, Consts, Step};
    use candle_core::cuda_backend::cudarc::driver::{DeviceRepr, LaunchConfig, PushKernelArg};
    use candle_core::cuda_backend::WrapErr;
    use candle_core::{CudaStorage, Layout, Storage};

    /// The kernels of `kernels/rules.cu` (built by build.rs).
    const PTX: &str = include_str!(concat!(env!("OUT_DIR"), "/rules.ptx"));

    // SAFETY: `Consts` is `#[repr(C)]` plain f32s, laid out as the kernels' `bm_consts`.
    unsafe impl DeviceRepr for Consts {}

    /// Threads per block; the grid strides, so its size is only a cap.
    const BLOCK: u32 = 256;

    pub(super) fn launch(op: &Step, w: &mut CudaStorage, wl: &Layout, g: &CudaStorage, gl: &Layout, s: &CudaStorage, sl: &Layout) -> candle_core::Result<()> {
        let dev = w.device.clone();
        let func = dev.get_or_load_custom_func(&format!("bm_{}_kernel", op.kernel.name()), "beatmatch_rules", PTX)?;
        let g = g.as_cuda_slice::<f32>()?.slice(span(gl, op.n, "gradient")?);
        let s = s.as_cuda_slice::<f32>()?.slice(span(sl, op.len(), "state")?);
        let wr = span(wl, op.n, "parameter")?;
        // SAFETY: the kernel writes every value before anything reads it.
        let mut out = unsafe { dev.alloc::<f32>(op.len())? };
        let mut wv = w.as_cuda_slice_mut::<f32>()?.slice_mut(wr);
        let blocks = op.n.div_ceil(BLOCK as usize).clamp(1, 1 << 20) as u32;
        let cfg = LaunchConfig { grid_dim: (blocks, 1, 1), block_dim: (BLOCK, 1, 1), shared_mem_bytes: 0 };
        {
            let mut b = func.builder();
            b.arg(&op.n);
            b.arg(&mut wv);
            b.arg(&g);
            b.arg(&s);
            b.arg(&mut out);
            b.arg(&op.k);
            // SAFETY: the arguments match bm_*_kernel's (size_t, float*, const float*, const
            // float*, float*, bm_consts) and the lengths checked above.
            unsafe { b.launch(cfg) }.w()?;
        }
        op.out.set(Some(Storage::Cuda(CudaStorage::wrap_cuda_slice(out, dev))));
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    fn adam_consts() -> Consts {
        Consts::of(&[0.1, 0.9, 0.001, 0.999, 0.1, 0.001, 1e-8, -0.01])
    }

    fn values(t: &Tensor) -> Vec<f32> {
        t.flatten_all().unwrap().to_vec1().unwrap()
    }

    #[test]
    fn a_step_writes_a_fresh_state_and_leaves_the_old_one_as_it_was() {
        let dev = Device::Cpu;
        let w = Var::from_vec((0..12).map(|i| i as f32 * 0.1).collect::<Vec<f32>>(), (3, 4), &dev).unwrap();
        let g = Tensor::from_vec((0..12).map(|i| 1.0 - i as f32 * 0.2).collect::<Vec<f32>>(), (3, 4), &dev).unwrap();
        let s = Tensor::zeros((2, 12), DType::F32, &dev).unwrap();
        let before = values(w.as_tensor());
        let next = step(Kernel::Adam, adam_consts(), &w, &g, &s).unwrap();
        assert!(values(&s).iter().all(|&v| v == 0.0), "the old state changed");
        assert_eq!(next.dims(), [2, 12]);
        assert!(values(&next)[..12].iter().zip(values(&g)).all(|(m, g)| *m == g * 0.1), "m = (1 − b1)·g after one step from zero");
        let after = values(w.as_tensor());
        assert_eq!(after.iter().zip(&before).filter(|(a, b)| a != b).count(), 11, "every parameter with a non-zero gradient moves (g is 0 at index 5)");
    }

    #[test]
    fn a_strided_gradient_is_read_by_its_values() {
        let dev = Device::Cpu;
        let g0 = Tensor::from_vec((0..12).map(|i| (i as f32 - 5.5) * 0.3).collect::<Vec<f32>>(), (3, 4), &dev).unwrap().t().unwrap();
        assert!(!g0.is_contiguous());
        let run = |g: &Tensor| {
            let w = Var::from_vec(vec![0.5f32; 12], (4, 3), &dev).unwrap();
            let s = Tensor::ones((2, 12), DType::F32, &dev).unwrap();
            let next = step(Kernel::Adam, adam_consts(), &w, g, &s).unwrap();
            (values(w.as_tensor()), values(&next))
        };
        assert_eq!(run(&g0), run(&g0.contiguous().unwrap()));
    }

    #[test]
    fn every_instruction_set_gives_the_baselines_bits() {
        const KERNELS: [Kernel; 6] = [Kernel::Adam, Kernel::AdamW, Kernel::Sgd, Kernel::NAdamW, Kernel::RmsProp, Kernel::Lion];
        // An odd length, so the vector loops' remainders run too; states ≥ 0 (second moments).
        let n = 1003;
        let w0: Vec<f32> = (0..n).map(|i| ((i * 37 % 101) as f32 - 50.0) * 0.013).collect();
        let g: Vec<f32> = (0..n).map(|i| ((i * 53 % 97) as f32 - 48.0) * 0.021).collect();
        let s: Vec<f32> = (0..2 * n).map(|i| (i * 29 % 89) as f32 * 0.011).collect();
        let k = Consts::of(&[0.1, 0.9, 0.001, 0.999, 0.1, 0.001, 1e-8, -0.01, 0.01, 1.0]);
        let run = |f: HostFn, kernel: Kernel| {
            let (mut w, mut out) = (w0.clone(), vec![0f32; kernel.slots() * n]);
            // SAFETY: lengths n, n, slots·n, slots·n as the kernels read and write them.
            unsafe { f(n, w.as_mut_ptr(), g.as_ptr(), s.as_ptr(), out.as_mut_ptr(), &k) };
            (w.iter().chain(&out).map(|v| v.to_bits()).collect::<Vec<_>>(), w != w0)
        };
        let baseline = host_kernels("baseline").unwrap();
        let mut checked = 0;
        #[cfg(target_arch = "x86_64")]
        for (isa, present) in [("avx2", is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma")), ("avx512f", is_x86_feature_detected!("avx512f"))]
        {
            if !present {
                continue;
            }
            let table = host_kernels(isa).unwrap();
            for kernel in KERNELS {
                let (want, moved) = run(baseline[kernel as usize], kernel);
                assert!(moved, "{kernel:?} left the parameters as they were");
                assert!(run(table[kernel as usize], kernel).0 == want, "{kernel:?}: {isa} differs from the baseline");
            }
            checked += 1;
        }
        println!("instruction sets checked against the baseline: {checked} (running {})", beatmatch_core::simd::isa());
    }

    #[test]
    fn a_state_of_the_wrong_shape_is_refused_with_the_shapes() {
        let dev = Device::Cpu;
        let w = Var::zeros(5, DType::F32, &dev).unwrap();
        let g = Tensor::zeros(5, DType::F32, &dev).unwrap();
        let s = Tensor::zeros((1, 5), DType::F32, &dev).unwrap();
        let e = step(Kernel::Adam, adam_consts(), &w, &g, &s).unwrap_err().to_string();
        assert!(e.contains("[1, 5]") && e.contains("expected [2, 5]"), "{e}");
    }
}
