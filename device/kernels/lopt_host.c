/* The CPU device's fused learned steps: lopt.h's per-element code over blocks of BM_LANES (16)
 * elements, both passes in one call. build.rs compiles this file once per instruction set, as
 * host.c. Pass 1's squares go to 16 f64 lanes (element i to lane i mod 16), added in lane
 * order after: the host rules' `lane_sum` tree, so the same sums to the bit. */
#include "lopt.h"

/* The per-parameter MLP over a block, in registers: the same sums as lopt.h's bm_lopt_mlp (each
 * output its bias plus its inputs' products in input order, one fused multiply-add each: the
 * same bits) with 4 outputs at a time, so each input vector is loaded once per 4 outputs and 4
 * independent FMA chains hide the latency (bm_lopt_mlp's one output at a time ran into it, ~4×
 * slower). Vector intrinsics where this compilation has AVX-512F or AVX2 + FMA; the plain loops
 * of lopt.h elsewhere. relu is max(x, 0) with 0 second, so NaN and -0 give 0 as `x > 0 ? x : 0`. */
#if defined(__AVX512F__) || (defined(__AVX2__) && defined(__FMA__))
#include <immintrin.h>
#if defined(__AVX512F__)
#define BM_W 16
typedef __m512 bm_v;
#define bm_load _mm512_loadu_ps
#define bm_store _mm512_storeu_ps
#define bm_set1 _mm512_set1_ps
#define bm_fma _mm512_fmadd_ps
#define bm_max _mm512_max_ps
#else
#define BM_W 8
typedef __m256 bm_v;
#define bm_load _mm256_loadu_ps
#define bm_store _mm256_storeu_ps
#define bm_set1 _mm256_set1_ps
#define bm_fma _mm256_fmadd_ps
#define bm_max _mm256_max_ps
#endif
#define BM_NV (BM_LANES / BM_W)

#define BM_HOST_TILE(T)                                                                            \
    static inline void bm_host_tile##T(const float *w, const float *b, int n_in, int n_out, int j0, int relu, \
                                       float in[][BM_LANES], float res[][BM_LANES]) {              \
        bm_v acc[T][BM_NV];                                                                        \
        for (int t = 0; t < T; t++)                                                                \
            for (int v = 0; v < BM_NV; v++)                                                        \
                acc[t][v] = bm_set1(b[j0 + t]);                                                    \
        for (int i = 0; i < n_in; i++) {                                                           \
            bm_v x[BM_NV];                                                                         \
            for (int v = 0; v < BM_NV; v++)                                                        \
                x[v] = bm_load(&in[i][v * BM_W]);                                                  \
            for (int t = 0; t < T; t++) {                                                          \
                bm_v wij = bm_set1(w[i * n_out + j0 + t]);                                         \
                for (int v = 0; v < BM_NV; v++)                                                    \
                    acc[t][v] = bm_fma(x[v], wij, acc[t][v]);                                      \
            }                                                                                      \
        }                                                                                          \
        for (int t = 0; t < T; t++)                                                                \
            for (int v = 0; v < BM_NV; v++)                                                        \
                bm_store(&res[j0 + t][v * BM_W], relu ? bm_max(acc[t][v], bm_set1(0.0f)) : acc[t][v]); \
    }
BM_HOST_TILE(4)
BM_HOST_TILE(1)

/* One layer, 4 outputs at a time (bm_lopt_layer's sums). */
static inline void bm_host_layer(const float *w, const float *b, int n_in, int n_out, int relu, float in[][BM_LANES], float res[][BM_LANES]) {
    int j0 = 0;
    for (; j0 + 4 <= n_out; j0 += 4)
        bm_host_tile4(w, b, n_in, n_out, j0, relu, in, res);
    for (; j0 < n_out; j0++)
        bm_host_tile1(w, b, n_in, n_out, j0, relu, in, res);
}
BM_LOPT_MLP(bm_host_mlp, bm_host_layer)
#else
#define bm_host_mlp bm_lopt_mlp
#endif

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
            bm_host_mlp(net, features, hidden, layers, x, o);                                      \
            for (int e = 0; e < len; e++)                                                          \
                w[c + e] = bm_lopt_step(w[c + e], o[0][e], o[1][e], k);                            \
        }                                                                                          \
    }

BM_LOPT_RULES(BM_LOPT_HOST)
