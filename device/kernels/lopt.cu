// The fused learned steps on a GPU: lopt.h's per-element code, one thread per element
// (grid-stride), compiled to PTX by device/build.rs. Never run on a GPU (see docs/gpu.md).
//
// pass 0: (rules with factored statistics, tensors of rank >= 2) the statistics' sums by f64
//         atomics into `sums` (zeroed by the caller), then a thread per statistic entry for its
//         new value, rsqrt and column factor, then a thread per row mean for the row factors.
// pass 1: fold the gradient into the new state and sum each feature's squares: per thread in
//         f64, then across the warp by shuffles, then one atomicAdd per warp into `sums`
//         (zeroed by the caller).
// pass 2: the normalisers from `sums`, then per element the network and the step; the network
//         (a few thousand floats) is read from global memory through the read-only cache.
// VeLO's per-tensor statistics (the LSTM's inputs): three reduction phases and a finish.
#include "lopt.h"

#define BM_GRID_STRIDE(i, count) for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < (count); i += (size_t)blockDim.x * gridDim.x)

extern "C" __global__ void bm_adafac_sums(size_t n, const float *__restrict__ g, bm_lopt_consts k, double *__restrict__ sums) {
    size_t lr = bm_adafac_len_r(n, &k);
    BM_GRID_STRIDE(i, n) {
        double sq = (double)(g[i] * g[i] + 1e-30f);
        atomicAdd(&sums[bm_drop(i, (size_t)k.row_inner, (size_t)k.row_axis)], sq);
        atomicAdd(&sums[lr + bm_drop(i, (size_t)k.col_inner, (size_t)k.col_axis)], sq);
    }
}

extern "C" __global__ void bm_adafac_stats(size_t n, const float *__restrict__ s, float *__restrict__ out, bm_lopt_consts k,
                                           const double *__restrict__ sums) {
    size_t lr = bm_adafac_len_r(n, &k), lc = bm_adafac_len_c(n, &k);
    size_t rows = bm_adafac_rows_at(n), cols = bm_adafac_cols_at(n, &k);
    BM_GRID_STRIDE(t, BM_ADAFAC_K * (lr + lc)) {
        int j = (int)(t / (lr + lc));
        size_t e = t % (lr + lc);
        if (e < lr)
            bm_adafac_entry(s + rows, out + rows, lr, e, j, sums[e], (double)k.row_axis, 0, &k);
        else
            bm_adafac_entry(s + cols, out + cols, lc, e - lr, j, sums[e], (double)k.col_axis, 1, &k);
    }
}

extern "C" __global__ void bm_adafac_row_factors(size_t n, float *__restrict__ out, bm_lopt_consts k) {
    size_t lr = bm_adafac_len_r(n, &k), means = lr / (size_t)k.col_axis;
    BM_GRID_STRIDE(t, BM_ADAFAC_K * means) {
        bm_adafac_row_factor(out + bm_adafac_rows_at(n), lr, (int)(t / means), t % means, &k);
    }
}

// VeLO's per-tensor statistics: one launch per phase (f64 sums per thread, across the warp by
// shuffles, one atomicAdd per warp and sum into `sums`, zeroed by the caller), then one thread
// for the 8 statistics.
extern "C" __global__ void bm_velo_stats_phase(size_t n, const float *__restrict__ p, const float *__restrict__ st, int phase,
                                               double *__restrict__ sums) {
    float norm, mu[3], t[6];
    int count = bm_velo_phase(phase, sums, n, &norm, mu);
    double acc[6] = {0.0, 0.0, 0.0, 0.0, 0.0, 0.0};
    BM_GRID_STRIDE(i, n) {
        bm_velo_terms(phase, i, n, p, st, st + 3 * n, norm, mu, t);
        for (int j = 0; j < count; j++)
            acc[j] += (double)t[j];
    }
    for (int j = 0; j < count; j++) {
        double x = acc[j];
        for (int off = 16; off > 0; off >>= 1)
            x += __shfl_down_sync(0xffffffffu, x, off);
        if ((threadIdx.x & 31) == 0)
            atomicAdd(&sums[bm_velo_first_sum(phase) + j], x);
    }
}

extern "C" __global__ void bm_velo_stats_finish(size_t n, const double *__restrict__ sums, float *__restrict__ out) {
    if (blockIdx.x == 0 && threadIdx.x == 0)
        bm_velo_finish(sums, n, out);
}

#define BM_LOPT_KERNELS(name, features, layers, chunk, factored)                                   \
    extern "C" __global__ void bm_##name##_pass1(size_t n, const float *__restrict__ w,            \
                                                 const float *__restrict__ g,                      \
                                                 const float *__restrict__ s,                      \
                                                 float *__restrict__ out, bm_lopt_consts k,        \
                                                 double *__restrict__ sums) {                      \
        double acc[features];                                                                      \
        float f[features][1];                                                                      \
        for (int j = 0; j < features; j++)                                                         \
            acc[j] = 0.0;                                                                          \
        BM_GRID_STRIDE(i, n) {                                                                     \
            bm_##name##_fold(i, 1, n, w, g, s, out, &k, f);                                        \
            for (int j = 0; j < features; j++)                                                     \
                acc[j] += (double)(f[j][0] * f[j][0]);                                             \
        }                                                                                          \
        for (int j = 0; j < features; j++) {                                                       \
            double v = acc[j];                                                                     \
            for (int off = 16; off > 0; off >>= 1)                                                 \
                v += __shfl_down_sync(0xffffffffu, v, off);                                        \
            if ((threadIdx.x & 31) == 0)                                                           \
                atomicAdd(&sums[j], v);                                                            \
        }                                                                                          \
    }                                                                                              \
    extern "C" __global__ void bm_##name##_pass2(size_t n, float *__restrict__ w,                  \
                                                 const float *__restrict__ g,                      \
                                                 const float *__restrict__ st,                     \
                                                 const float *__restrict__ net, bm_lopt_consts k,  \
                                                 const double *__restrict__ sums) {                \
        float norm[features];                                                                      \
        for (int j = 0; j < features; j++)                                                         \
            norm[j] = bm_lopt_norm(sums[j], n);                                                    \
        float f[features][1], o[2][1];                                                             \
        BM_GRID_STRIDE(i, n) {                                                                     \
            bm_##name##_read(i, 1, n, w, g, st, &k, f);                                            \
            for (int j = 0; j < features; j++)                                                     \
                f[j][0] *= norm[j];                                                                \
            bm_lopt_mlp(net, features, k.hidden, layers, f, o);                                    \
            w[i] = bm_##name##_step(w[i], o[0][0], o[1][0], &k);                                   \
        }                                                                                          \
    }

BM_LOPT_RULES(BM_LOPT_KERNELS)
