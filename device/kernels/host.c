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

/* `members` members' tensors back to back (w, g: n values each; s, out: slots·n each), member m
 * stepped with constants k[m]: each member's loop is the one a member alone runs. */
#define BM_HOST(name, slots)                                                                       \
    void BM_GLUE(bm_##name##_host, BM_SUFFIX)(size_t members, size_t n, float *BM_RESTRICT w,     \
                                              const float *BM_RESTRICT g,                        \
                                              const float *BM_RESTRICT s,                        \
                                              float *BM_RESTRICT out, const bm_consts *k) {      \
        for (size_t m = 0; m < members; m++) {                                                   \
            const bm_consts kk = k[m];                                                           \
            float *BM_RESTRICT wm = w + m * n;                                                   \
            const float *BM_RESTRICT gm = g + m * n;                                             \
            const float *BM_RESTRICT sm = s + m * (slots) * n;                                   \
            float *BM_RESTRICT om = out + m * (slots) * n;                                       \
            for (size_t i = 0; i < n; i++)                                                       \
                bm_##name(i, n, wm, gm, sm, om, kk);                                             \
        }                                                                                        \
    }

BM_RULES(BM_HOST)
