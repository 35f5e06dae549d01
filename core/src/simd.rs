//! Run a hot loop compiled for the widest vector unit the CPU has.
//!
//! The crates build for baseline x86-64 (SSE2). A [`Kernel`]'s `run` is `#[inline(always)]`, so
//! [`simd_dispatch`] compiles it three times — AVX-512F, AVX2, baseline — and picks one at run
//! time. Rust never contracts `a·b + c` into an FMA, so every path computes the same bits: the
//! choice changes speed, not results.

/// Work to compile once per instruction set; implement `run` with `#[inline(always)]`.
pub trait Kernel {
    /// Do the work.
    fn run(&mut self);
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn run_avx512<K: Kernel>(k: &mut K) {
    k.run()
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn run_avx2<K: Kernel>(k: &mut K) {
    k.run()
}

/// Run `k` compiled for AVX-512F, AVX2 or the baseline, whichever this CPU has.
pub fn simd_dispatch<K: Kernel>(k: &mut K) {
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx512f") {
            // SAFETY: the CPU supports AVX-512F.
            return unsafe { run_avx512(k) };
        }
        if std::arch::is_x86_feature_detected!("avx2") {
            // SAFETY: the CPU supports AVX2.
            return unsafe { run_avx2(k) };
        }
    }
    k.run()
}
