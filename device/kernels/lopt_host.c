/* The CPU device's fused learned steps: lopt.h's per-element code over blocks of BM_LANES (16)
 * elements, both passes in one call. build.rs compiles this file once per instruction set, as
 * host.c. Pass 1's squares go to 16 f64 lanes (element i to lane i mod 16), added in lane
 * order after: the host rules' `lane_sum` tree, so the same sums to the bit. */
#include "lopt.h"

#ifndef BM_SUFFIX
#define BM_SUFFIX _baseline
#endif
#define BM_GLUE2(a, b) a##b
#define BM_GLUE(a, b) BM_GLUE2(a, b)

#define BM_LOPT_HOST(name, slots, features, hidden, layers)                                        \
    void BM_GLUE(bm_##name##_lopt_host, BM_SUFFIX)(size_t n, float *restrict w, const float *restrict g,   \
                                                   const float *restrict s, float *restrict out,       \
                                                   const float *restrict net, const bm_lopt_consts *k) { \
        double lanes[features][BM_LANES] = {{0}};                                                  \
        float f[features];                                                                         \
        size_t full = n / BM_LANES * BM_LANES;                                                     \
        for (size_t c = 0; c < n; c += BM_LANES) {                                                 \
            int len = c < full ? BM_LANES : (int)(n - c);                                          \
            for (int e = 0; e < len; e++) {                                                        \
                bm_##name##_fold(c + e, n, w, g, s, out, k, f);                                    \
                for (int j = 0; j < features; j++)                                                 \
                    lanes[j][e] += (double)(f[j] * f[j]);                                          \
            }                                                                                      \
        }                                                                                          \
        float norm[features];                                                                      \
        for (int j = 0; j < features; j++) {                                                       \
            double sum = 0.0;                                                                      \
            for (int e = 0; e < BM_LANES; e++)                                                     \
                sum += lanes[j][e];                                                                \
            norm[j] = bm_lopt_norm(sum, n);                                                        \
        }                                                                                          \
        for (size_t c = 0; c < n; c += BM_LANES) {                                                 \
            int len = c < full ? BM_LANES : (int)(n - c);                                          \
            float x[features][BM_LANES], o[2][BM_LANES];                                           \
            for (int e = 0; e < BM_LANES; e++) {                                                   \
                if (e < len)                                                                       \
                    bm_##name##_read(c + e, n, w, g, out, f);                                      \
                for (int j = 0; j < features; j++)                                                 \
                    x[j][e] = e < len ? f[j] * norm[j] : 0.0f;                                     \
            }                                                                                      \
            bm_lopt_mlp(net, features, hidden, layers, x, o);                                      \
            for (int e = 0; e < len; e++)                                                          \
                w[c + e] = bm_lopt_step(w[c + e], o[0][e], o[1][e], k);                            \
        }                                                                                          \
    }

BM_LOPT_RULES(BM_LOPT_HOST)
