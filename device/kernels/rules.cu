// The CUDA kernels: one thread per element (grid-stride), compiled to PTX by device/build.rs.
#include "rules.h"

#define BM_KERNEL(name, slots)                                                                     \
    extern "C" __global__ void bm_##name##_kernel(size_t n, float *BM_RESTRICT w,                \
                                                  const float *BM_RESTRICT g,                    \
                                                  const float *BM_RESTRICT s,                    \
                                                  float *BM_RESTRICT out, bm_consts k) {         \
        for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n;                    \
             i += (size_t)blockDim.x * gridDim.x)                                                \
            bm_##name(i, n, w, g, s, out, k);                                                    \
    }

BM_RULES(BM_KERNEL)
