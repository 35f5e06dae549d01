/* The baselines' fused elementwise steps: one pass per parameter tensor reads the parameter,
 * its gradient and the old state, writes the parameter in place and the new state to a fresh
 * buffer (the old state stays valid, so a run's snapshot is a reference to it).
 *
 * This one source is compiled twice: by nvcc to PTX for the CUDA kernels (rules.cu, with
 * --fmad=false) and by the host C compiler for the CPU device (host.c, with
 * -ffp-contract=off). Every operation is a single IEEE f32 operation in the order the host
 * rules in beatmatch-baselines take them, so both compilations round as the host does.
 *
 * State slot j of element i lives at s[j * n + i]. The constants c[] are computed on the host
 * per step (bias corrections, the schedule's learning rate) and named per rule below. */
#ifndef BEATMATCH_RULES_H
#define BEATMATCH_RULES_H

#ifdef __CUDACC__
#define BM_INLINE __device__ __forceinline__
#define BM_RESTRICT __restrict__
#else
#include <math.h>
#include <stddef.h>
#define BM_INLINE static inline
#define BM_RESTRICT restrict
#endif

/* The step's constants; which entry means what is per rule. Keep the size in step with
 * `Consts` in device/src/fused.rs. */
typedef struct {
    float c[12];
} bm_consts;

/* The buffers never overlap (the op checks), which lets the host compiler vectorise. */
#define BM_ARGS                                                                                    \
    size_t i, size_t n, float *BM_RESTRICT w, const float *BM_RESTRICT g,                         \
        const float *BM_RESTRICT s, float *BM_RESTRICT out, const bm_consts k

/* Adam's moments (written to out) and direction m̂ / (√v̂ + eps): c = {1-b1, b1, 1-b2, b2,
 * 1-b1^t, 1-b2^t, eps, ...}; slots m, v. */
BM_INLINE float bm_adam_direction(BM_ARGS) {
    (void)w;
    float m = g[i] * k.c[0] + s[i] * k.c[1];
    float v = (g[i] * g[i]) * k.c[2] + s[n + i] * k.c[3];
    out[i] = m;
    out[n + i] = v;
    return (m / k.c[4]) / (sqrtf(v / k.c[5]) + k.c[6]);
}

/* Adam: c[7] = -lr. */
BM_INLINE void bm_adam(BM_ARGS) {
    float dir = bm_adam_direction(i, n, w, g, s, out, k);
    w[i] = w[i] + dir * k.c[7];
}

/* AdamW: c[7] = -lr, c[8] = wd; the decay is added to the direction. */
BM_INLINE void bm_adamw(BM_ARGS) {
    float dir = bm_adam_direction(i, n, w, g, s, out, k);
    w[i] = w[i] + (dir + w[i] * k.c[8]) * k.c[7];
}

/* SGD with momentum: c = {mu, lr, nesterov (0 or 1)}; slot: the trace. */
BM_INLINE void bm_sgd(BM_ARGS) {
    (void)n; /* one slot */
    float t = g[i] + s[i] * k.c[0];
    float u = k.c[2] != 0.0f ? g[i] + t * k.c[0] : t;
    out[i] = t;
    w[i] = w[i] - u * k.c[1];
}

/* NAdamW: c = {l2 wd, b1, 1-b1, b2, 1-b2, lr_t, eps, lr_t * adamw wd, nesterov (0 or 1)};
 * slots m, v. */
BM_INLINE void bm_nadamw(BM_ARGS) {
    float w0 = w[i];
    float gg = g[i] - w0 * k.c[0];
    float m = s[i] * k.c[1] + gg * k.c[2];
    float v = s[n + i] * k.c[3] + (gg * gg) * k.c[4];
    float num = k.c[8] != 0.0f ? m * k.c[1] + gg * k.c[2] : m;
    float step = (num * k.c[5]) / (sqrtf(v) + k.c[6]) + w0 * k.c[7];
    out[i] = m;
    out[n + i] = v;
    w[i] = w0 - step;
}

/* RMSProp: c = {1-decay, decay, eps, -lr}; slot: nu. */
BM_INLINE void bm_rmsprop(BM_ARGS) {
    (void)n; /* one slot */
    float nu = (g[i] * g[i]) * k.c[0] + s[i] * k.c[1];
    out[i] = nu;
    w[i] = w[i] + (g[i] / sqrtf(nu + k.c[2])) * k.c[3];
}

/* Lion: c = {1-b1, b1, wd, -lr, 1-b2, b2}; slot: mu. The sign is jnp.sign's (0 at ±0). */
BM_INLINE void bm_lion(BM_ARGS) {
    (void)n; /* one slot */
    float x = g[i] * k.c[0] + s[i] * k.c[1];
    float sign = (float)(x > 0.0f) - (float)(x < 0.0f);
    float w0 = w[i];
    w[i] = w0 + (sign + w0 * k.c[2]) * k.c[3];
    out[i] = g[i] * k.c[4] + s[i] * k.c[5];
}

/* AdEMAMix: c = {1-b1, b1, 1-b3, b3, 1-b2, b2, 1-b1^t, 1-b2^t, alpha, eps, wd, -lr}; slots m1 (fast
 * EMA), m2 (slow EMA), nu. */
BM_INLINE void bm_ademamix(BM_ARGS) {
    float m1 = g[i] * k.c[0] + s[i] * k.c[1];
    float m2 = g[i] * k.c[2] + s[n + i] * k.c[3];
    float nu = (g[i] * g[i]) * k.c[4] + s[2 * n + i] * k.c[5];
    out[i] = m1;
    out[n + i] = m2;
    out[2 * n + i] = nu;
    float u = (m1 / k.c[6] + m2 * k.c[8]) / (sqrtf(nu / k.c[7]) + k.c[9]);
    w[i] = w[i] + (u + w[i] * k.c[10]) * k.c[11];
}

/* AlgoPerf's NAdamW: c = {1-b1, b1, 1-b2, b2, 1-b1^t, 1-b2^t, eps, wd, -lr_t}; slots m, v. The
 * Nesterov look-ahead is bias-corrected; the decay is added before the learning rate. */
BM_INLINE void bm_algoperf_nadamw(BM_ARGS) {
    float m = g[i] * k.c[0] + s[i] * k.c[1];
    float v = (g[i] * g[i]) * k.c[2] + s[n + i] * k.c[3];
    out[i] = m;
    out[n + i] = v;
    float m_hat = (g[i] * k.c[0] + m * k.c[1]) / k.c[4];
    float u = m_hat / (sqrtf(v / k.c[5]) + k.c[6]);
    w[i] = w[i] + (u + w[i] * k.c[7]) * k.c[8];
}

/* Every rule, with its state slots per parameter: the one list of fused kernels. The wrappers
 * (host.c, rules.cu) expand it, device/build.rs reads it to generate the Rust side's `Kernel`
 * enum and instruction-set tables, and ci/cuda-check.sh counts the PTX entries against it.
 * A new rule is a function above plus one entry here. Keep the list on this one line. */
#define BM_RULES(X) X(adam, 2) X(adamw, 2) X(sgd, 1) X(nadamw, 2) X(rmsprop, 1) X(lion, 1) X(ademamix, 3) X(algoperf_nadamw, 2)

#endif
