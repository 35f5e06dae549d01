// The CUDA kernels: one thread per element (grid-stride) of each member, compiled to PTX by
// device/build.rs.
#include "rules.h"

/* Member blockIdx.y of gridDim.y (its tensors back to back, as host.c lays them out), stepped
 * with constants k[member] (device memory, uploaded once per step). */
#define BM_KERNEL(name, slots)                                                                     \
    extern "C" __global__ void bm_##name##_kernel(size_t n, float *BM_RESTRICT w,                \
                                                  const float *BM_RESTRICT g,                    \
                                                  const float *BM_RESTRICT s,                    \
                                                  float *BM_RESTRICT out,                        \
                                                  const bm_consts *BM_RESTRICT ks) {             \
        const size_t m = blockIdx.y;                                                             \
        const bm_consts k = ks[m];                                                               \
        float *wm = w + m * n;                                                                   \
        const float *gm = g + m * n;                                                             \
        const float *sm = s + m * (slots) * n;                                                   \
        float *om = out + m * (slots) * n;                                                       \
        for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n;                    \
             i += (size_t)blockDim.x * gridDim.x)                                                \
            bm_##name(i, n, wm, gm, sm, om, k);                                                  \
    }

BM_RULES(BM_KERNEL)
