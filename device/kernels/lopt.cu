// The fused learned steps on a GPU: lopt.h's per-element code, one thread per element
// (grid-stride), compiled to PTX by device/build.rs. Never run on a GPU (see docs/gpu.md).
//
// pass 1: fold the gradient into the new state and sum each feature's squares: per thread in
//         f64, then across the warp by shuffles, then one atomicAdd per warp into `sums`
//         (zeroed by the caller).
// pass 2: the normalisers from `sums`, then per element the network and the step; the network
//         (a few thousand floats) is read from global memory through the read-only cache.
#include "lopt.h"

#define BM_LOPT_KERNELS(name, slots, features, hidden, layers)                                     \
    extern "C" __global__ void bm_##name##_pass1(size_t n, const float *__restrict__ w,            \
                                                 const float *__restrict__ g,                     \
                                                 const float *__restrict__ s,                     \
                                                 float *__restrict__ out, bm_lopt_consts k,       \
                                                 double *__restrict__ sums) {                     \
        double acc[features];                                                                      \
        float f[features];                                                                         \
        for (int j = 0; j < features; j++)                                                         \
            acc[j] = 0.0;                                                                          \
        for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n;                      \
             i += (size_t)blockDim.x * gridDim.x) {                                                \
            bm_##name##_fold(i, n, w, g, s, out, &k, f);                                           \
            for (int j = 0; j < features; j++)                                                     \
                acc[j] += (double)(f[j] * f[j]);                                                   \
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
                                                 const float *__restrict__ g,                     \
                                                 const float *__restrict__ m,                     \
                                                 const float *__restrict__ net, bm_lopt_consts k, \
                                                 const double *__restrict__ sums) {               \
        float norm[features];                                                                      \
        for (int j = 0; j < features; j++)                                                         \
            norm[j] = bm_lopt_norm(sums[j], n);                                                    \
        float f[features], x[features][1], o[2][1];                                                \
        for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n;                      \
             i += (size_t)blockDim.x * gridDim.x) {                                                \
            bm_##name##_read(i, n, w, g, m, f);                                                    \
            for (int j = 0; j < features; j++)                                                     \
                x[j][0] = f[j] * norm[j];                                                          \
            bm_lopt_mlp(net, features, hidden, layers, x, o);                                      \
            w[i] = bm_lopt_step(w[i], o[0][0], o[1][0], &k);                                       \
        }                                                                                          \
    }

BM_LOPT_RULES(BM_LOPT_KERNELS)
