/* The CPU device's kernels: the same per-element code as rules.cu, as a loop. build.rs
 * compiles this file once per instruction set (-mavx512f, -mavx2, the baseline), naming each
 * compilation's functions with BM_SUFFIX; the Rust side picks one as beatmatch_core::simd
 * does. Every operation is a single IEEE operation (no contraction), so all give the same
 * bits. */
#include "rules.h"

#ifndef BM_SUFFIX
#define BM_SUFFIX _baseline
#endif
#define BM_GLUE2(a, b) a##b
#define BM_GLUE(a, b) BM_GLUE2(a, b)

#define BM_HOST(name, slots)                                                                       \
    void BM_GLUE(bm_##name##_host, BM_SUFFIX)(size_t n, float *BM_RESTRICT w,                    \
                                              const float *BM_RESTRICT g,                        \
                                              const float *BM_RESTRICT s,                        \
                                              float *BM_RESTRICT out, const bm_consts *k) {      \
        const bm_consts kk = *k;                                                                 \
        for (size_t i = 0; i < n; i++)                                                           \
            bm_##name(i, n, w, g, s, out, kk);                                                   \
    }

BM_RULES(BM_HOST)
