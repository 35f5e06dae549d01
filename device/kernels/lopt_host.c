/* The CPU device's fused learned steps: lopt.h's per-element code over blocks of BM_LANES (16)
 * elements, every pass in one call. build.rs compiles this file once per instruction set, as
 * host.c. Pass 1's squares go to 16 f64 lanes (element i to lane i mod 16), per chunk of
 * blocks (the rule's `chunk`), each chunk's lanes added in lane order and the chunks in
 * order: the host rules' tree, so the same sums to the bit. */
#include "lopt.h"
#include <stdlib.h>

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

/* Pass 0 on the host: nothing for rules without factored statistics; for the others the
 * statistics' sums in one sweep in element order (as the host rule sums them), then each
 * entry's new value, rsqrt and factors. Nonzero if the sums' buffer could not be had. */
static int bm_adafac_pass0(size_t n, const float *g, const float *s, float *out, const bm_lopt_consts *k) {
    if (!k->factored)
        return 0;
    size_t lr = bm_adafac_len_r(n, k), lc = bm_adafac_len_c(n, k);
    double *sums = calloc(lr + lc, sizeof(double));
    if (!sums)
        return 1;
    /* Element order, the indices stepped a block at a time (no division per element). */
    for (size_t c = 0; c < n; c += BM_LANES) {
        int len = n - c < BM_LANES ? (int)(n - c) : BM_LANES;
        size_t r[BM_LANES], q[BM_LANES];
        bm_drop_lanes(c, len, (size_t)k->row_inner, (size_t)k->row_axis, r);
        bm_drop_lanes(c, len, (size_t)k->col_inner, (size_t)k->col_axis, q);
        for (int e = 0; e < len; e++) {
            double sq = (double)(g[c + e] * g[c + e] + 1e-30f);
            sums[r[e]] += sq;
            sums[lr + q[e]] += sq;
        }
    }
    size_t rows = bm_adafac_rows_at(n), cols = bm_adafac_cols_at(n, k);
    for (int j = 0; j < BM_ADAFAC_K; j++) {
        for (size_t e = 0; e < lr; e++)
            bm_adafac_entry(s + rows, out + rows, lr, e, j, sums[e], (double)k->row_axis, 0, k);
        for (size_t e = 0; e < lc; e++)
            bm_adafac_entry(s + cols, out + cols, lc, e, j, sums[lr + e], (double)k->col_axis, 1, k);
        for (size_t mi = 0; mi < lr / (size_t)k->col_axis; mi++)
            bm_adafac_row_factor(out + rows, lr, j, mi, k);
    }
    free(sums);
    return 0;
}

/* lanes[j][e] += f[j][e]² (in f64) for the live lanes. */
static inline __attribute__((always_inline)) void bm_add_squares(int features, float f[][BM_LANES], double lanes[][BM_LANES], int len) {
    for (int j = 0; j < features; j++) {
        float sq[BM_LANES];
        for (int e = 0; e < BM_LANES; e++)
            sq[e] = f[j][e] * f[j][e];
        for (int e = 0; e < len; e++)
            lanes[j][e] += (double)sq[e];
    }
}

/* A block through `step` with `len` a constant for full blocks (so, inlined, their lanes are
 * contiguous loads) and the live count for the last. */
#define BM_BLOCK(len, step)                                                                        \
    do {                                                                                           \
        if ((len) == BM_LANES) {                                                                   \
            const int bm_len = BM_LANES;                                                           \
            step;                                                                                  \
        } else {                                                                                   \
            const int bm_len = (len);                                                              \
            step;                                                                                  \
        }                                                                                          \
    } while (0)

#define BM_LOPT_HOST(name, features, layers, chunk, factored)                                      \
    int BM_GLUE(bm_##name##_lopt_host, BM_SUFFIX)(size_t n, float *restrict w, const float *restrict g, \
                                                  const float *restrict s, float *restrict out,    \
                                                  const float *restrict net, const bm_lopt_consts *k) { \
        if (factored && bm_adafac_pass0(n, g, s, out, k))                                          \
            return 1;                                                                              \
        double sum[features] = {0};                                                                \
        float f[features][BM_LANES];                                                               \
        size_t blocks = (n + BM_LANES - 1) / BM_LANES, per = chunk ? chunk : (blocks ? blocks : 1); \
        for (size_t b0 = 0; b0 < blocks; b0 += per) {                                              \
            double lanes[features][BM_LANES] = {{0}};                                              \
            for (size_t b = b0; b < b0 + per && b < blocks; b++) {                                 \
                size_t c = b * BM_LANES;                                                           \
                int len = n - c < BM_LANES ? (int)(n - c) : BM_LANES;                              \
                BM_BLOCK(len, bm_##name##_fold(c, bm_len, n, w, g, s, out, k, f);                  \
                         bm_add_squares(features, f, lanes, bm_len));                              \
            }                                                                                      \
            for (int j = 0; j < features; j++) {                                                   \
                double part = 0.0;                                                                 \
                for (int e = 0; e < BM_LANES; e++)                                                 \
                    part += lanes[j][e];                                                           \
                sum[j] += part;                                                                    \
            }                                                                                      \
        }                                                                                          \
        float norm[features];                                                                      \
        for (int j = 0; j < features; j++)                                                         \
            norm[j] = bm_lopt_norm(sum[j], n);                                                     \
        for (size_t c = 0; c < n; c += BM_LANES) {                                                 \
            int len = n - c < BM_LANES ? (int)(n - c) : BM_LANES;                                  \
            float o[2][BM_LANES];                                                                  \
            BM_BLOCK(len, bm_##name##_read(c, bm_len, n, w, g, out, k, f));                        \
            for (int j = 0; j < features; j++)                                                     \
                for (int e = 0; e < BM_LANES; e++)                                                 \
                    f[j][e] *= norm[j];                                                            \
            bm_host_mlp(net, features, k->hidden, layers, f, o);                                   \
            for (int e = 0; e < len; e++)                                                          \
                w[c + e] = bm_##name##_step(w[c + e], o[0][e], o[1][e], k);                        \
        }                                                                                          \
        return 0;                                                                                  \
    }

BM_LOPT_RULES(BM_LOPT_HOST)

/* The state values a rule keeps for a tensor of n with geometry k (`rule`: its place in
 * BM_LOPT_RULES). */
typedef size_t (*bm_len_fn)(size_t, const bm_lopt_consts *);
#define BM_LOPT_LEN(name, features, layers, chunk, factored) bm_##name##_state_len,
static const bm_len_fn bm_lopt_lens[] = {BM_LOPT_RULES(BM_LOPT_LEN)};
size_t BM_GLUE(bm_lopt_state_len, BM_SUFFIX)(int rule, size_t n, const bm_lopt_consts *k) {
    return bm_lopt_lens[rule](n, k);
}

/* VeLO's per-tensor statistics (lopt.h's bm_velo_*): each phase's sums over the host rules'
 * `lane_sum` tree (element i to f64 lane i mod 16, each lane in element order, then the lanes
 * in order), so the host rule's bits. `st` is the velo kernel's state (momenta, then the second
 * moment); `out` gets the 8 statistics. */
void BM_GLUE(bm_velo_stats, BM_SUFFIX)(size_t n, const float *restrict p, const float *restrict st, float *restrict out) {
    double sums[BM_VELO_SUMS] = {0};
    const float *m = st, *v = st + 3 * n;
    for (int phase = 0; phase < 3; phase++) {
        float norm, mu[3], t[6];
        int count = bm_velo_phase(phase, sums, n, &norm, mu);
        double lanes[6][BM_LANES] = {{0}};
        for (size_t i = 0; i < n; i++) {
            bm_velo_terms(phase, i, n, p, m, v, norm, mu, t);
            for (int j = 0; j < count; j++)
                lanes[j][i % BM_LANES] += (double)t[j];
        }
        for (int j = 0; j < count; j++) {
            double sum = 0.0;
            for (int e = 0; e < BM_LANES; e++)
                sum += lanes[j][e];
            sums[bm_velo_first_sum(phase) + j] = sum;
        }
    }
    bm_velo_finish(sums, n, out);
}

