/* The learned optimizers' fused steps, in PyLO's two passes per parameter tensor
 * (Belilovsky-Lab/pylo's CUDA kernels; the design, not their code):
 *
 *   pass 1  fold the gradient into the accumulators (written to a fresh state buffer, so the
 *           old state stays valid as a snapshot) and sum each feature's squares over the
 *           tensor;
 *   pass 2  per element: the features again, times √(mean square + 1e-5)⁻¹, through the
 *           per-parameter MLP (relu between layers) to a direction and a magnitude, and the
 *           step `w ← w − direction · exp(magnitude · exp_mult) · step_mult`.
 *
 * No feature is materialised in memory. The training-step embedding the network also reads is
 * folded into its first layer's bias on the host each step (as the host rules fold it).
 *
 * One source, compiled twice like rules.h: by the host C compiler for the CPU device
 * (lopt_host.c, -ffp-contract=off, once per instruction set) and by nvcc to PTX (lopt.cu,
 * --fmad=false). The per-element code works on BM_LANES elements side by side — 16 on the host
 * (the host rules' block, so compilers vectorise across it), 1 on the GPU (a thread per
 * element). On the host every operation is the one the host rule (beatmatch-learned) takes, in
 * its order: the same bits. On a GPU pass 1's sums are added in another order (atomics), so a
 * GPU step agrees with the host to the sums' rounding, not bit for bit. */
#ifndef BEATMATCH_LOPT_H
#define BEATMATCH_LOPT_H

#ifdef __CUDACC__
#define BM_LOPT_INLINE __device__ __forceinline__
#define BM_LANES 1
#else
#include <math.h>
#include <stddef.h>
#define BM_LOPT_INLINE static inline
#define BM_LANES 16
#endif

/* The widest hidden layer a network may have. */
#define BM_LOPT_MAX_HIDDEN 32

/* MLP-LOpt (learned_optimization's MLPLOpt): the gradient, the parameter and six momenta
 * through 8 → 32 → 32 → 2 (its entry in BM_LOPT_RULES below). */
#define BM_MLP_LOPT_MOMENTA 6

/* A step's scalars. Keep in step with `LoptConsts` in device/src/lopt.rs. */
typedef struct {
    float exp_mult;
    float step_mult;
    /* The momentum decays, in feature order. */
    float decays[BM_MLP_LOPT_MOMENTA];
} bm_lopt_consts;

/* e^x as beatmatch_core::simd::exp computes it (Cephes' expf), operation for operation. */
BM_LOPT_INLINE float bm_exp(float x) {
    const float log2e = 1.44269504088896340736f;
    float xc = x < -87.33654f ? -87.33654f : (x > 88.72283f ? 88.72283f : x);
    float n = floorf(xc * log2e + 0.5f);
    float r = xc - n * 0.6933594f - n * -2.1219444e-4f;
    float z = r * r;
    float p = (((((1.9875691e-4f * r + 1.3981999e-3f) * r + 8.333452e-3f) * r + 4.1665796e-2f) * r + 1.6666665e-1f) * r + 5e-1f) * z + r + 1.0f;
    /* 2^n through the exponent field: n + 127 is an integer in [1, 255], which added to 2^23
     * lands in the low mantissa bits. */
    union {
        unsigned u;
        float f;
    } biased, two_n;
    biased.f = n + 127.0f + 8388608.0f;
    two_n.u = (biased.u & 0xffu) << 23;
    float y = p * two_n.f;
    return x <= -87.33654f ? 0.0f : y;
}

/* One dense layer over BM_LANES elements: each output its bias plus its inputs' products in
 * input order, one fused multiply-add each (the host rules' order, so their bits), relu where
 * asked. One output at a time: on a GPU each thread is one element; the host build
 * (lopt_host.c) computes the same sums 4 outputs at a time in vector registers. */
BM_LOPT_INLINE void bm_lopt_layer(const float *w, const float *b, int n_in, int n_out, int relu, float in[][BM_LANES], float res[][BM_LANES]) {
    for (int j = 0; j < n_out; j++) {
        float acc[BM_LANES];
        for (int e = 0; e < BM_LANES; e++)
            acc[e] = b[j];
        for (int i = 0; i < n_in; i++) {
            float wij = w[i * n_out + j];
            for (int e = 0; e < BM_LANES; e++)
                acc[e] = fmaf(in[i][e], wij, acc[e]);
        }
        if (relu)
            for (int e = 0; e < BM_LANES; e++)
                acc[e] = acc[e] > 0.0f ? acc[e] : 0.0f;
        for (int e = 0; e < BM_LANES; e++)
            res[j][e] = acc[e];
    }
}

/* Defines NAME, the network over a block: `layers` dense layers, weights `[in][out]` row-major
 * then biases, layer after layer, in one array; `features` inputs, `hidden` wide between
 * layers, 2 outputs; relu between layers; each layer computed by
 * LAYER(w, b, n_in, n_out, relu, in, res). The sizes are the rule's constants. */
#define BM_LOPT_MLP(NAME, LAYER)                                                                   \
    BM_LOPT_INLINE void NAME(const float *net, int features, int hidden, int layers, float x[][BM_LANES], float o[2][BM_LANES]) { \
        float h[2][BM_LOPT_MAX_HIDDEN][BM_LANES];                                                  \
        const float *p = net;                                                                      \
        for (int l = 0; l < layers; l++) {                                                         \
            int n_in = l == 0 ? features : hidden, n_out = l == layers - 1 ? 2 : hidden;           \
            const float *w = p, *b = p + n_in * n_out;                                             \
            p = b + n_out;                                                                         \
            LAYER(w, b, n_in, n_out, l != layers - 1, l == 0 ? x : h[(l - 1) % 2], l == layers - 1 ? o : h[l % 2]); \
        }                                                                                          \
    }
BM_LOPT_MLP(bm_lopt_mlp, bm_lopt_layer)

/* The step from the network's outputs, as the host rules' `StepRule::Embedded`. */
BM_LOPT_INLINE float bm_lopt_step(float w, float dir, float mag, const bm_lopt_consts *k) {
    float ex = bm_exp(mag * k->exp_mult);
    return w - dir * ex * k->step_mult;
}

/* MLP-LOpt, pass 1 at element i: fold g into the six momenta (old s, new out; slot j at
 * j·n + i) and leave the eight features in f. */
BM_LOPT_INLINE void bm_mlp_lopt_fold(size_t i, size_t n, const float *w, const float *g, const float *s, float *out, const bm_lopt_consts *k,
                                     float *f) {
    float gi = g[i];
    f[0] = gi;
    f[1] = w[i];
    for (int j = 0; j < BM_MLP_LOPT_MOMENTA; j++) {
        float d = k->decays[j];
        float m = d * s[j * n + i] + (1.0f - d) * gi;
        out[j * n + i] = m;
        f[2 + j] = m;
    }
}

/* MLP-LOpt, pass 2's features at element i, from the new momenta m. */
BM_LOPT_INLINE void bm_mlp_lopt_read(size_t i, size_t n, const float *w, const float *g, const float *m, float *f) {
    f[0] = g[i];
    f[1] = w[i];
    for (int j = 0; j < BM_MLP_LOPT_MOMENTA; j++)
        f[2 + j] = m[j * n + i];
}

/* The normaliser from a feature's summed squares over n elements. */
BM_LOPT_INLINE float bm_lopt_norm(double sum, size_t n) {
    return 1.0f / sqrtf(1e-5f + (float)(sum / (double)n));
}

/* Every fused learned rule: X(name, state slots per parameter, features (the network's inputs
 * after the step embedding is folded in), hidden width, layers). The one list: lopt_host.c and
 * lopt.cu expand it; device/build.rs generates the Rust side from it (`LoptKernel`). Keep the
 * list on this one line. */
#define BM_LOPT_RULES(X) X(mlp_lopt, 6, 8, 32, 3)

#endif
