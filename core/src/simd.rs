//! Run a hot loop compiled for the widest vector unit the CPU has.
//!
//! The crates build for baseline x86-64 (SSE2). A [`Kernel`]'s `run` is `#[inline(always)]`, so
//! [`simd_dispatch`] compiles it three times — AVX-512F, AVX2 + FMA, baseline — and picks one at
//! run time. Rust never contracts `a·b + c` into an FMA, and an explicit `f32::mul_add` is one
//! correctly rounded operation on every path (an instruction on the first two, libm's `fmaf` on
//! the baseline), so every path computes the same bits: the choice changes speed, not results.
//! Where plain Rust does not compile to the vector moves a kernel needs (an 8 × 8 transpose),
//! [`Avx2`] carries them, for kernels that check for it.

/// Work to compile once per instruction set; implement `run` with `#[inline(always)]`.
pub trait Kernel {
    /// Whether [`simd_dispatch`] may run this work on the AVX-512F build; if not, a CPU with
    /// AVX-512 runs the AVX2 one (the same bits). For the kernels, or the cases of a kernel,
    /// whose AVX-512 build measured slower.
    fn avx512(&self) -> bool {
        true
    }

    /// Do the work.
    fn run(&mut self);
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,fma")]
unsafe fn run_avx512<K: Kernel>(k: &mut K) {
    k.run()
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn run_avx2<K: Kernel>(k: &mut K) {
    k.run()
}

/// Instruction-set levels, widest last.
const BASELINE: u8 = 0;
const AVX2: u8 = 1;
const AVX512: u8 = 2;
/// Not yet read from `BEATMATCH_SIMD`.
const UNSET: u8 = u8::MAX;

/// The widest level kernels may use: the CPU's, capped by `BEATMATCH_SIMD` (`avx2` or
/// `baseline`, to measure or check a narrower path on a wider CPU) or by [`limit`].
static CAP: std::sync::atomic::AtomicU8 = std::sync::atomic::AtomicU8::new(UNSET);

fn detected() -> u8 {
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx512f") {
            return AVX512;
        }
        if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma") {
            return AVX2;
        }
    }
    BASELINE
}

fn level_of(name: &str) -> Option<u8> {
    match name {
        "avx512f" => Some(AVX512),
        "avx2" => Some(AVX2),
        "baseline" => Some(BASELINE),
        _ => None,
    }
}

fn level() -> u8 {
    use std::sync::atomic::Ordering::Relaxed;
    match CAP.load(Relaxed) {
        UNSET => {
            let cap = std::env::var("BEATMATCH_SIMD").ok().and_then(|v| level_of(v.trim())).unwrap_or(AVX512);
            let l = detected().min(cap);
            CAP.store(l, Relaxed);
            l
        }
        l => l,
    }
}

/// Run kernels no wider than `isa` (`avx512f`, `avx2`, `baseline`) from now on, in this
/// process (never wider than the CPU has): for tests and benchmarks that compare the paths.
/// Every dispatch reads it, so a benchmark may switch back and forth; a test sets it once,
/// since the tests of a process share it.
pub fn limit(isa: &str) -> Result<(), String> {
    let cap = level_of(isa).ok_or_else(|| format!("unknown instruction set {isa:?}: expected avx512f, avx2 or baseline"))?;
    CAP.store(detected().min(cap), std::sync::atomic::Ordering::Relaxed);
    Ok(())
}

/// The instruction set [`simd_dispatch`] runs kernels with: `avx512f`, `avx2` (with FMA) or
/// `baseline` — the CPU's widest, unless capped (`BEATMATCH_SIMD`, [`limit`]). Benchmarks
/// print it beside their numbers.
pub fn isa() -> &'static str {
    match level() {
        AVX512 => "avx512f",
        AVX2 => "avx2",
        _ => "baseline",
    }
}

/// Run `k` compiled for AVX-512F, AVX2 + FMA or the baseline: the widest [`isa`] allows (AVX2
/// where that is AVX-512F and `k` opts out of it, [`Kernel::avx512`]).
pub fn simd_dispatch<K: Kernel>(k: &mut K) {
    #[cfg(target_arch = "x86_64")]
    {
        match level() {
            // SAFETY: `level` never exceeds what the CPU supports: AVX-512F here, and every
            // AVX-512F CPU has AVX2 and FMA (the AVX-512 build below assumes FMA as well).
            AVX512 if !k.avx512() => return unsafe { run_avx2(k) },
            // SAFETY: `level` never exceeds what the CPU supports: AVX-512F here.
            AVX512 => return unsafe { run_avx512(k) },
            // SAFETY: likewise, AVX2 and FMA here.
            AVX2 => return unsafe { run_avx2(k) },
            _ => {}
        }
    }
    k.run()
}

/// Proof that kernels may use AVX2 now: the CPU has it and [`isa`] allows it (`avx2` or
/// wider). It carries the vector moves that plain Rust in a [`Kernel`] does not compile to —
/// an 8 × 8 transpose by shuffles, where the compiler writes 64 scalar loads — so a kernel
/// takes one per call with [`Avx2::get`] and falls back to scalar code without it. Moves
/// change no bits.
#[derive(Clone, Copy, Debug)]
pub struct Avx2(());

impl Avx2 {
    /// One, where kernels may use AVX2 now.
    pub fn get() -> Option<Self> {
        (level() >= AVX2).then_some(Self(()))
    }

    /// Transpose an 8 × 8 tile: `dst[j * dst_stride + l] = src[l * src_stride + j]` for `j, l`
    /// in `0..8`. Panics where either slice is too short for its tile, or where `dst_stride`
    /// is under 8 (the tile's rows would overlap).
    #[inline(always)]
    pub fn transpose8(self, src: &[f32], src_stride: usize, dst: &mut [f32], dst_stride: usize) {
        assert!(src.len() >= 7 * src_stride + 8 && dst.len() >= 7 * dst_stride + 8, "an 8 × 8 tile needs 7 strides and 8 values");
        assert!(dst_stride >= 8, "an 8 × 8 tile's rows of 8 would overlap at a stride of {dst_stride}");
        #[cfg(target_arch = "x86_64")]
        // SAFETY: `self` exists only where the CPU has AVX2 (so AVX); the assertion keeps every
        // load and store of the 8 rows of 8 inside the slices.
        unsafe {
            transpose8_avx(src.as_ptr(), src_stride, dst.as_mut_ptr(), dst_stride)
        }
        #[cfg(not(target_arch = "x86_64"))]
        for j in 0..8 {
            for l in 0..8 {
                dst[j * dst_stride + l] = src[l * src_stride + j];
            }
        }
    }
}

/// The 8 × 8 transpose of [`Avx2::transpose8`]: unpack pairs of rows, shuffle quads, swap
/// 128-bit halves (24 shuffles for 8 loads and 8 stores).
///
/// # Safety
/// The CPU has AVX; `src` and `dst` are valid for 8 rows of 8 floats at their strides.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
unsafe fn transpose8_avx(src: *const f32, src_stride: usize, dst: *mut f32, dst_stride: usize) {
    use std::arch::x86_64::*;
    let r: [__m256; 8] = std::array::from_fn(|l| _mm256_loadu_ps(src.add(l * src_stride)));
    let t: [__m256; 8] = std::array::from_fn(|i| {
        let (a, b) = (r[2 * (i / 2)], r[2 * (i / 2) + 1]);
        if i % 2 == 0 {
            _mm256_unpacklo_ps(a, b)
        } else {
            _mm256_unpackhi_ps(a, b)
        }
    });
    // Quads: from rows 0–3 (t0–t3) then rows 4–7 (t4–t7), columns j and j + 4 in each half.
    let q: [__m256; 8] = std::array::from_fn(|i| {
        let base = 4 * (i / 4);
        let (a, b) = (t[base + (i % 4) / 2], t[base + 2 + (i % 4) / 2]);
        if i % 2 == 0 {
            _mm256_shuffle_ps::<0x44>(a, b)
        } else {
            _mm256_shuffle_ps::<0xEE>(a, b)
        }
    });
    for j in 0..4 {
        _mm256_storeu_ps(dst.add(j * dst_stride), _mm256_permute2f128_ps::<0x20>(q[j], q[4 + j]));
        _mm256_storeu_ps(dst.add((j + 4) * dst_stride), _mm256_permute2f128_ps::<0x31>(q[j], q[4 + j]));
    }
}

/// `e^x` for f32: Cephes' `expf` (range reduction by ln 2 in two parts, a degree-5 polynomial,
/// the exponent set through the bits), vectorisable; within 2 ulp.
#[inline(always)]
pub fn exp(x: f32) -> f32 {
    const LOG2E: f32 = std::f32::consts::LOG2_E;
    let x_in = x;
    let x = x.clamp(-87.336_54, 88.722_83);
    let n = (x * LOG2E + 0.5).floor();
    let r = x - n * 0.693_359_4 - n * -2.121_944_4e-4;
    let z = r * r;
    let p = (((((1.987_569_1e-4 * r + 1.398_199_9e-3) * r + 8.333_452e-3) * r + 4.166_579_6e-2) * r + 1.666_666_5e-1) * r + 5e-1) * z + r + 1.0;
    // 2^n for n in [-126, 128]: the bits of the exponent field (n = 128 at the clamp gives +∞).
    // n + 127 is an integer in [1, 255]; added to 2^23 it lands in the low mantissa bits, so
    // the exponent comes out of float arithmetic and a mask. `n as i32` gave the same bits
    // but Rust's saturating cast (NaN → 0) does not vectorise: lanes went one by one.
    let biased = (n + 127.0 + 8_388_608.0).to_bits() & 0xff;
    let bits = biased << 23;
    let y = p * f32::from_bits(bits);
    if x_in <= -87.336_54 {
        0.0
    } else {
        y
    }
}

/// While alive, the current thread flushes subnormal floats to zero (MXCSR's FTZ and DAZ
/// bits, x86-64 only); dropping it restores the previous mode.
///
/// Why: optimizer state decays geometrically where gradients are zero (the always-black
/// border pixels of an image dataset, say), and once momenta reach subnormal range every
/// operation on them takes a slow microcode path — measured here, Adam's update became a third
/// of a Fashion-MNIST MLP's step. XLA's CPU backend, which the JAX peer runs on, flushes
/// subnormals too. Training loops hold one of these; the fixture conformance tests call
/// optimizers directly and so run without it.
pub struct FlushDenormals {
    #[cfg(target_arch = "x86_64")]
    saved: u32,
}

impl FlushDenormals {
    /// Set FTZ and DAZ for this thread.
    pub fn new() -> Self {
        #[cfg(target_arch = "x86_64")]
        {
            #[allow(deprecated)]
            // SAFETY: reading and writing this thread's MXCSR; only the FTZ (bit 15) and DAZ
            // (bit 6) bits change, which alter results for subnormal operands alone.
            unsafe {
                let saved = std::arch::x86_64::_mm_getcsr();
                std::arch::x86_64::_mm_setcsr(saved | 0x8040);
                Self { saved }
            }
        }
        #[cfg(not(target_arch = "x86_64"))]
        Self {}
    }
}

impl Default for FlushDenormals {
    fn default() -> Self {
        Self::new()
    }
}

impl Drop for FlushDenormals {
    fn drop(&mut self) {
        #[cfg(target_arch = "x86_64")]
        #[allow(deprecated)]
        // SAFETY: puts back the mode read in `new`.
        unsafe {
            std::arch::x86_64::_mm_setcsr(self.saved)
        }
    }
}

/// A thread's floating-point mode (MXCSR on x86-64), to hand to worker threads so they round
/// and flush exactly as the thread that spawned them.
#[derive(Clone, Copy, Debug)]
pub struct FpMode(#[allow(dead_code)] u32);

impl FpMode {
    /// This thread's mode.
    pub fn current() -> Self {
        #[cfg(target_arch = "x86_64")]
        #[allow(deprecated)]
        // SAFETY: reads this thread's MXCSR.
        return Self(unsafe { std::arch::x86_64::_mm_getcsr() });
        #[cfg(not(target_arch = "x86_64"))]
        Self(0)
    }

    /// Take this mode on the current thread until the guard drops.
    pub fn apply(self) -> FlushDenormals {
        let guard = FlushDenormals::new();
        #[cfg(target_arch = "x86_64")]
        #[allow(deprecated)]
        // SAFETY: writes a mode another thread of this process was running with.
        unsafe {
            std::arch::x86_64::_mm_setcsr(self.0)
        };
        guard
    }
}

#[cfg(test)]
mod tests {
    use super::FlushDenormals;

    #[test]
    fn an_8_by_8_tile_is_transposed_between_any_strides() {
        let Some(avx) = super::Avx2::get() else {
            eprintln!("skipped: no AVX2 here (or BEATMATCH_SIMD caps it)");
            return;
        };
        for (src_stride, dst_stride) in [(8, 8), (10, 8), (8, 10), (13, 300)] {
            let src: Vec<f32> = (0..7 * src_stride + 8).map(|i| i as f32).collect();
            let mut dst = vec![-1.0; 7 * dst_stride + 8];
            avx.transpose8(&src, src_stride, &mut dst, dst_stride);
            for (i, &v) in dst.iter().enumerate() {
                let (j, l) = (i / dst_stride, i % dst_stride);
                let want = if l < 8 { src[l * src_stride + j] } else { -1.0 };
                assert_eq!(v.to_bits(), want.to_bits(), "strides {src_stride}, {dst_stride}: at {i}");
            }
        }
        // A source one value short of its tile is refused, not read past; so are overlapping rows.
        assert!(std::panic::catch_unwind(|| avx.transpose8(&[0.0; 63], 8, &mut [0.0; 64], 8)).is_err());
        assert!(std::panic::catch_unwind(|| avx.transpose8(&[0.0; 64], 8, &mut [0.0; 64], 7)).is_err());
    }

    /// `exp` as written before its exponent came out of float arithmetic: `n as i32`.
    fn exp_with_cast(x: f32) -> f32 {
        let x_in = x;
        let x = x.clamp(-87.336_54, 88.722_83);
        let n = (x * std::f32::consts::LOG2_E + 0.5).floor();
        let r = x - n * 0.693_359_4 - n * -2.121_944_4e-4;
        let z = r * r;
        let p = (((((1.987_569_1e-4 * r + 1.398_199_9e-3) * r + 8.333_452e-3) * r + 4.166_579_6e-2) * r + 1.666_666_5e-1) * r + 5e-1) * z + r + 1.0;
        let y = p * f32::from_bits(((n as i32 + 127).max(0) as u32) << 23);
        if x_in <= -87.336_54 {
            0.0
        } else {
            y
        }
    }

    /// Same bits as the cast for every 61st f32 bit pattern (all of them were checked once,
    /// 2026-12-05: `BEATMATCH_EXP_EVERY=1`), NaNs and infinities included.
    #[test]
    fn exp_keeps_its_bits() {
        let every: usize = std::env::var("BEATMATCH_EXP_EVERY").ok().and_then(|s| s.parse().ok()).unwrap_or(61);
        let mut checked = 0u64;
        for b in (0..=u32::MAX).step_by(every) {
            let x = f32::from_bits(b);
            let (new, old) = (super::exp(x), exp_with_cast(x));
            assert_eq!(new.to_bits(), old.to_bits(), "exp({x:e}) (bits {b:#x}): {new:e} vs {old:e}");
            checked += 1;
        }
        for x in [f32::INFINITY, f32::NEG_INFINITY, f32::NAN, -87.336_54, 88.722_83, 0.0, -0.0] {
            assert_eq!(super::exp(x).to_bits(), exp_with_cast(x).to_bits(), "exp({x:e})");
        }
        assert!(checked > 1 << 20);
    }

    #[test]
    fn subnormals_flush_while_the_guard_lives() {
        let tiny = std::hint::black_box(f32::MIN_POSITIVE);
        assert!((tiny * std::hint::black_box(0.5)) > 0.0);
        {
            let _g = FlushDenormals::new();
            #[cfg(target_arch = "x86_64")]
            assert_eq!(tiny * std::hint::black_box(0.5), 0.0);
        }
        assert!((tiny * std::hint::black_box(0.5)) > 0.0, "the mode is restored");
    }
}
