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
#define BM_LOPT_INLINE static inline __attribute__((always_inline))
#define BM_LANES 16
#endif

/* The widest hidden layer a network may have. */
#define BM_LOPT_MAX_HIDDEN 32
/* The most accumulator decays a rule has (MLP-LOpt's six momenta; small_fc's three momenta,
 * one second moment and three factored statistics: seven). */
#define BM_LOPT_MAX_DECAYS 8

/* A step's scalars and the tensor's geometry. Keep in step with `LoptConsts` in
 * device/src/lopt.rs. */
typedef struct {
    float exp_mult;
    float step_mult;
    /* The accumulators' decays, in the rule's order (unused entries zero). */
    float decays[BM_LOPT_MAX_DECAYS];
    /* The network's hidden width (at most BM_LOPT_MAX_HIDDEN). */
    int hidden;
    int pad;
    /* VeLO's step (velo): the tensor's RMS `√(mean p² + 1e-9)` and the LSTM's multiplier. */
    float param_scale;
    float lr_mult;
    /* A tensor of rank >= 2 has factored statistics (small_fc): its row statistic drops the
     * largest axis (`row_axis` long, `row_inner` values after it), its column statistic the
     * second largest (`col_axis`, `col_inner`); the row factor's mean runs over the second
     * largest axis of the row statistic (`mean_inner` values after it). Zero `factored` for
     * rank < 2 and for rules without factored statistics. */
    unsigned long long factored;
    unsigned long long row_inner;
    unsigned long long row_axis;
    unsigned long long col_inner;
    unsigned long long col_axis;
    unsigned long long mean_inner;
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

/* VeLO's step, as the host rules' `StepRule::Velo`:
 * `w − lr_mult · (direction · (param_scale · exp(magnitude · exp_mult)) · step_mult)`. */
BM_LOPT_INLINE float bm_velo_step(float w, float dir, float mag, const bm_lopt_consts *k) {
    float ex = bm_exp(mag * k->exp_mult);
    return w - k->lr_mult * (dir * (k->param_scale * ex) * k->step_mult);
}
#define bm_mlp_lopt_step bm_lopt_step
#define bm_small_fc_step bm_lopt_step

/* Every rule defines, over a block of BM_LANES elements from i0 of which `len` are live (lanes
 * past `len` repeat the last live element: they compute, and write, its values again, and the
 * caller drops their results), with state `s` old and `out` new, laid out as
 * bm_<rule>_state_len says:
 *   bm_<rule>_state_len(n, k)  state values for a tensor of n;
 *   bm_<rule>_fold(...)        pass 1: fold g into the new state, leave the features in f;
 *   bm_<rule>_read(...)        pass 2: the features again, from the new state.
 * Every operation is a loop over the lanes (vectorised on the host; one lane on a GPU). Rules
 * with factored statistics also have a pass 0 over the whole tensor (bm_adafac_* below). */

/* Lane e's element. With `len` a constant BM_LANES (a full block, after inlining) the lanes
 * are contiguous and loads are plain vector loads. */
#define BM_AT(e) (i0 + ((e) < len ? (size_t)(e) : (size_t)len - 1))

/* MLP-LOpt (learned_optimization's MLPLOpt): the gradient, the parameter and six momenta
 * (slot j at j·n + i). */
#define BM_MLP_LOPT_MOMENTA 6

BM_LOPT_INLINE size_t bm_mlp_lopt_state_len(size_t n, const bm_lopt_consts *k) {
    (void)k;
    return BM_MLP_LOPT_MOMENTA * n;
}

BM_LOPT_INLINE void bm_mlp_lopt_read(size_t i0, int len, size_t n, const float *w, const float *g, const float *m, const bm_lopt_consts *k,
                                     float f[][BM_LANES]) {
    (void)k;
    for (int e = 0; e < BM_LANES; e++) {
        f[0][e] = g[BM_AT(e)];
        f[1][e] = w[BM_AT(e)];
    }
    for (int j = 0; j < BM_MLP_LOPT_MOMENTA; j++)
        for (int e = 0; e < BM_LANES; e++)
            f[2 + j][e] = m[j * n + BM_AT(e)];
}

BM_LOPT_INLINE void bm_mlp_lopt_fold(size_t i0, int len, size_t n, const float *w, const float *g, const float *s, float *out,
                                     const bm_lopt_consts *k, float f[][BM_LANES]) {
    for (int j = 0; j < BM_MLP_LOPT_MOMENTA; j++) {
        float d = k->decays[j];
        for (int e = 0; e < BM_LANES; e++)
            out[j * n + BM_AT(e)] = d * s[j * n + BM_AT(e)] + (1.0f - d) * g[BM_AT(e)];
    }
    bm_mlp_lopt_read(i0, len, n, w, g, out, k, f);
}

/* small_fc_lopt (learned_optimization's AdafacMLPLOpt), as beatmatch-learned's `accum` and
 * `features` compute it. Its decays: momenta 0..3, the second moment 3, the factored
 * statistics 4..7. Its state: momenta [3][n], the second moment [n], then for rank < 2 the
 * diagonal statistics [3][n], for rank >= 2 the row statistic's planes [3][3][len_r]
 * (value, rsqrt(value + 1e-8), the row factor; per plane one row per decay) and the column
 * statistic's [3][3][len_c]. The planes other than the value are functions of it, written by
 * pass 0 each step. */
#define BM_ADAFAC_K 3

/* The index into the statistic with an axis dropped (`axis` long, `inner` values after it). */
BM_LOPT_INLINE size_t bm_drop(size_t i, size_t inner, size_t axis) {
    return i / (inner * axis) * inner + i % inner;
}

/* bm_drop for each lane of a block: lane 0 by division, the others by stepping (no division
 * per element). */
BM_LOPT_INLINE void bm_drop_lanes(size_t i0, int len, size_t inner, size_t axis, size_t idx[BM_LANES]) {
    size_t a = i0 % inner, b = i0 / inner % axis, at = bm_drop(i0, inner, axis);
    for (int e = 0; e < BM_LANES; e++) {
        idx[e] = at;
        if (e + 1 < len && ++a == inner) {
            a = 0;
            at -= inner;
            if (++b == axis) {
                b = 0;
                at += inner;
            }
        }
        if (e + 1 < len)
            at++;
    }
}

/* A statistic plane's values at the lanes' indices `idx` (from bm_drop_lanes): one contiguous
 * run or one value for every lane where the block lies so (a rank-2 tensor's blocks, mostly),
 * else one by one. The indices step by +1 or jump back (by `inner` - 1), so a last index 15
 * past the first means a run; with `inner` > 1 neighbours always differ, and with `inner` = 1
 * the indices never fall, so equal first, second and last mean one value. */
BM_LOPT_INLINE void bm_plane_lanes(const float *plane, const size_t idx[BM_LANES], float v[BM_LANES]) {
    if (idx[BM_LANES - 1] == idx[0] + BM_LANES - 1) {
        const float *run = plane + idx[0];
        for (int e = 0; e < BM_LANES; e++)
            v[e] = run[e];
    } else if (idx[BM_LANES - 1] == idx[0] && (BM_LANES == 1 || idx[1] == idx[0])) {
        float x = plane[idx[0]];
        for (int e = 0; e < BM_LANES; e++)
            v[e] = x;
    } else {
        for (int e = 0; e < BM_LANES; e++)
            v[e] = plane[idx[e]];
    }
}

BM_LOPT_INLINE size_t bm_adafac_len_r(size_t n, const bm_lopt_consts *k) {
    return n / (size_t)k->row_axis;
}

BM_LOPT_INLINE size_t bm_adafac_len_c(size_t n, const bm_lopt_consts *k) {
    return n / (size_t)k->col_axis;
}

BM_LOPT_INLINE size_t bm_small_fc_state_len(size_t n, const bm_lopt_consts *k) {
    size_t tail = k->factored ? 3 * BM_ADAFAC_K * (bm_adafac_len_r(n, k) + bm_adafac_len_c(n, k)) : BM_ADAFAC_K * n;
    return (BM_ADAFAC_K + 1) * n + tail;
}

/* `1/√x` and the reference's `safe_rsqrt`, `1/√max(x, 1e-9)` (fmaxf: NaN gives 1e-9, as f32::max). */
BM_LOPT_INLINE float bm_rsqrt(float x) {
    return 1.0f / sqrtf(x);
}

BM_LOPT_INLINE float bm_safe_rsqrt(float x) {
    return 1.0f / sqrtf(fmaxf(x, 1e-9f));
}

/* Where the row and the column planes start in a factored state. */
BM_LOPT_INLINE size_t bm_adafac_rows_at(size_t n) {
    return (BM_ADAFAC_K + 1) * n;
}

BM_LOPT_INLINE size_t bm_adafac_cols_at(size_t n, const bm_lopt_consts *k) {
    return bm_adafac_rows_at(n) + 3 * BM_ADAFAC_K * bm_adafac_len_r(n, k);
}

/* A statistic's entry after this step's fold at decay d: its mean of g² + 1e-30 is `sum`
 * over `count` elements (the sum in f64, the mean rounded to f32, as the host rule). */
BM_LOPT_INLINE float bm_adafac_ema(float old, float d, double sum, double count) {
    return d * old + (1.0f - d) * (float)(sum / count);
}

/* The Adafactor-style features of a block from the new state `st`, in beatmatch-learned's
 * `features::fill` order and operations: the gradient, (VeLO: the gradient clipped to ±0.1,)
 * the parameter, the momenta, the second moment, the momenta times rsqrt(v + 1e-6) and that
 * rsqrt, the factored-preconditioned gradients, (VeLO: the gradient times that rsqrt,) then
 * the factored statistics' features (the row and column values, their rsqrt(· + 1e-8), the
 * momenta times both factors) or, for rank < 2, the diagonal's (its values and their rsqrt
 * twice, the momenta times rsqrt(v + 1e-6), VeLO: times rsqrt(v)). small_fc's 28, VeLO's 30. */
BM_LOPT_INLINE void bm_adafac_read(int velo, size_t i0, int len, size_t n, const float *w, const float *g, const float *st, const bm_lopt_consts *k,
                                   float f[][BM_LANES]) {
    /* Where each group starts (`velo` is a constant after inlining). */
    const int P = velo ? 2 : 1, M = P + 1, V = M + BM_ADAFAC_K, MR = V + 1, RS = MR + BM_ADAFAC_K, FG = RS + 1;
    const int ST = FG + BM_ADAFAC_K + velo;
    float rs[BM_LANES];
    for (int e = 0; e < BM_LANES; e++) {
        f[0][e] = g[BM_AT(e)];
        if (velo) {
            float x = f[0][e];
            f[1][e] = x < -0.1f ? -0.1f : (x > 0.1f ? 0.1f : x);
        }
        f[P][e] = w[BM_AT(e)];
        f[V][e] = st[BM_ADAFAC_K * n + BM_AT(e)];
        rs[e] = bm_rsqrt(f[V][e] + 1e-6f);
        f[RS][e] = rs[e];
        if (velo)
            f[FG + BM_ADAFAC_K][e] = f[0][e] * rs[e];
    }
    for (int j = 0; j < BM_ADAFAC_K; j++)
        for (int e = 0; e < BM_LANES; e++) {
            f[M + j][e] = st[j * n + BM_AT(e)];
            f[MR + j][e] = f[M + j][e] * rs[e];
        }
    const float *tail = st + bm_adafac_rows_at(n);
    if (k->factored) {
        size_t lr = bm_adafac_len_r(n, k), lc = bm_adafac_len_c(n, k);
        const float *rp = tail, *cp = st + bm_adafac_cols_at(n, k);
        size_t r[BM_LANES], c[BM_LANES];
        bm_drop_lanes(i0, len, (size_t)k->row_inner, (size_t)k->row_axis, r);
        bm_drop_lanes(i0, len, (size_t)k->col_inner, (size_t)k->col_axis, c);
        for (int j = 0; j < BM_ADAFAC_K; j++) {
            float fr[BM_LANES], fc[BM_LANES];
            bm_plane_lanes(rp + (2 * BM_ADAFAC_K + j) * lr, r, fr);
            bm_plane_lanes(cp + (2 * BM_ADAFAC_K + j) * lc, c, fc);
            bm_plane_lanes(rp + j * lr, r, f[ST + j]);
            bm_plane_lanes(cp + j * lc, c, f[ST + 3 + j]);
            bm_plane_lanes(rp + (BM_ADAFAC_K + j) * lr, r, f[ST + 6 + j]);
            bm_plane_lanes(cp + (BM_ADAFAC_K + j) * lc, c, f[ST + 9 + j]);
            for (int e = 0; e < BM_LANES; e++) {
                f[FG + j][e] = f[0][e] * fr[e] * fc[e];
                f[ST + 12 + j][e] = f[M + j][e] * fr[e] * fc[e];
            }
        }
    } else {
        for (int j = 0; j < BM_ADAFAC_K; j++)
            for (int e = 0; e < BM_LANES; e++) {
                float x = tail[j * n + BM_AT(e)];
                f[FG + j][e] = f[0][e] * bm_safe_rsqrt(x + 1e-9f);
                f[ST + j][e] = x;
                f[ST + 3 + j][e] = x;
                f[ST + 6 + j][e] = bm_rsqrt(x + 1e-8f);
                f[ST + 9 + j][e] = f[ST + 6 + j][e];
                f[ST + 12 + j][e] = f[M + j][e] * bm_rsqrt(velo ? x : x + 1e-6f);
            }
    }
}

BM_LOPT_INLINE void bm_small_fc_read(size_t i0, int len, size_t n, const float *w, const float *g, const float *st, const bm_lopt_consts *k,
                                     float f[][BM_LANES]) {
    bm_adafac_read(0, i0, len, n, w, g, st, k, f);
}

BM_LOPT_INLINE void bm_velo_read(size_t i0, int len, size_t n, const float *w, const float *g, const float *st, const bm_lopt_consts *k,
                                 float f[][BM_LANES]) {
    bm_adafac_read(1, i0, len, n, w, g, st, k, f);
}

/* small_fc and VeLO, pass 1: the momenta, the second moment and (rank < 2) the diagonal
 * statistics folded into `out` (the factored planes are pass 0's). */
BM_LOPT_INLINE void bm_adafac_fold(size_t i0, int len, size_t n, const float *g, const float *s, float *out, const bm_lopt_consts *k) {
    for (int j = 0; j <= BM_ADAFAC_K; j++) {
        float d = k->decays[j];
        for (int e = 0; e < BM_LANES; e++) {
            size_t at = j * n + BM_AT(e);
            float gi = g[BM_AT(e)];
            out[at] = d * s[at] + (1.0f - d) * (j < BM_ADAFAC_K ? gi : gi * gi);
        }
    }
    if (!k->factored)
        for (int j = 0; j < BM_ADAFAC_K; j++) {
            float d = k->decays[BM_ADAFAC_K + 1 + j];
            for (int e = 0; e < BM_LANES; e++) {
                size_t at = (BM_ADAFAC_K + 1 + j) * n + BM_AT(e);
                float gi = g[BM_AT(e)];
                out[at] = d * s[at] + (1.0f - d) * (gi * gi + 1e-30f);
            }
        }
}

BM_LOPT_INLINE void bm_small_fc_fold(size_t i0, int len, size_t n, const float *w, const float *g, const float *s, float *out,
                                     const bm_lopt_consts *k, float f[][BM_LANES]) {
    bm_adafac_fold(i0, len, n, g, s, out, k);
    bm_small_fc_read(i0, len, n, w, g, out, k, f);
}

/* VeLO (learned_optimization's HyperV2) and Celo: small_fc's accumulators and state, 30
 * features, a network per tensor and step, and VeLO's step. */
#define bm_velo_state_len bm_small_fc_state_len

BM_LOPT_INLINE void bm_velo_fold(size_t i0, int len, size_t n, const float *w, const float *g, const float *s, float *out, const bm_lopt_consts *k,
                                 float f[][BM_LANES]) {
    bm_adafac_fold(i0, len, n, g, s, out, k);
    bm_velo_read(i0, len, n, w, g, out, k, f);
}

/* Pass 0's per-entry work on the factored planes (`s_base`, `out_base`: the row or column
 * planes of the old and the new state, `len` entries per decay; `sum`: the entry's
 * Σ(g² + 1e-30) over `count` elements): the statistic's new value and its rsqrt plane, and
 * the column factor (`col`). The row factor needs the new row statistic's means:
 * bm_adafac_row_factor. */
BM_LOPT_INLINE void bm_adafac_entry(const float *s_base, float *out_base, size_t len, size_t e, int j, double sum, double count, int col,
                                    const bm_lopt_consts *k) {
    float x = bm_adafac_ema(s_base[j * len + e], k->decays[BM_ADAFAC_K + 1 + j], sum, count);
    out_base[j * len + e] = x;
    out_base[(BM_ADAFAC_K + j) * len + e] = bm_rsqrt(x + 1e-8f);
    if (col)
        out_base[(2 * BM_ADAFAC_K + j) * len + e] = bm_safe_rsqrt(x);
}

/* The row factor of decay j for the `nr` entries that share mean index `mi`:
 * `safe_rsqrt(x / (mean + 1e-9))`, the mean summed in f64 in entry order. */
BM_LOPT_INLINE void bm_adafac_row_factor(float *rows, size_t len, int j, size_t mi, const bm_lopt_consts *k) {
    size_t inner = (size_t)k->mean_inner, nr = (size_t)k->col_axis;
    size_t first = mi / inner * inner * nr + mi % inner;
    double sum = 0.0;
    for (size_t t = 0; t < nr; t++)
        sum += (double)rows[j * len + first + t * inner];
    float mean = (float)(sum / (double)nr);
    for (size_t t = 0; t < nr; t++) {
        size_t e = first + t * inner;
        rows[(2 * BM_ADAFAC_K + j) * len + e] = bm_safe_rsqrt(rows[j * len + e] / (mean + 1e-9f));
    }
}

/* VeLO's per-tensor statistics (the LSTM's inputs, from the parameter and the state before this
 * step's fold), as beatmatch-learned's `velo::rnn_features` reduces them: f64 sums of f32 terms
 * in three phases, each needing the last's results —
 *   phase 0: Σ p²                                     -> sums[0]
 *   phase 1: Σ m_j·norm (j < 3), Σ v·norm              -> sums[1..5]   (norm from phase 0)
 *   phase 2: Σ (m_j·norm − μ_j)², Σ (v·norm − μ_j)²     -> sums[5..11]  (μ_j from phase 1)
 * then the 8 statistics [mean p², mean v·norm, var_m (3), var_v (3)] (`velo::TensorStats`). */
#define BM_VELO_SUMS 11
#define BM_VELO_STATS 8

/* What phase `phase` reads of the earlier phases' sums — `norm` (phases 1, 2) from the mean
 * square, `mu` (phase 2) the momenta's normalised means — and how many terms (and sums) it
 * has: 1, 4 or 6. */
BM_LOPT_INLINE int bm_velo_phase(int phase, const double *sums, size_t n, float *norm, float mu[3]) {
    *norm = phase ? 1.0f / sqrtf(fmaxf((float)(sums[0] / (double)n), 1e-9f)) : 0.0f;
    for (int j = 0; j < 3; j++)
        mu[j] = phase == 2 ? (float)(sums[1 + j] / (double)n) : 0.0f;
    return phase == 0 ? 1 : (phase == 1 ? 4 : 6);
}

/* Phase `phase`'s terms at element i into t[] (as many as bm_velo_phase says); `m` the momenta
 * [3][n], `v` the second moment. */
BM_LOPT_INLINE void bm_velo_terms(int phase, size_t i, size_t n, const float *p, const float *m, const float *v, float norm, const float *mu,
                                  float *t) {
    if (phase == 0) {
        t[0] = p[i] * p[i];
        return;
    }
    float vn = v[i] * norm;
    if (phase == 1) {
        for (int j = 0; j < 3; j++)
            t[j] = m[j * n + i] * norm;
        t[3] = vn;
        return;
    }
    for (int j = 0; j < 3; j++) {
        float d = m[j * n + i] * norm - mu[j];
        t[j] = d * d;
    }
    for (int j = 0; j < 3; j++) {
        float d = vn - mu[j];
        t[3 + j] = d * d;
    }
}

/* Where phase `phase`'s sums start. */
BM_LOPT_INLINE int bm_velo_first_sum(int phase) {
    return phase == 0 ? 0 : (phase == 1 ? 1 : 5);
}

BM_LOPT_INLINE void bm_velo_finish(const double *sums, size_t n, float *out) {
    out[0] = (float)(sums[0] / (double)n);
    out[1] = (float)(sums[4] / (double)n);
    for (int j = 0; j < 6; j++)
        out[2 + j] = (float)(sums[5 + j] / (double)n);
}

/* The normaliser from a feature's summed squares over n elements. */
BM_LOPT_INLINE float bm_lopt_norm(double sum, size_t n) {
    return 1.0f / sqrtf(1e-5f + (float)(sum / (double)n));
}

/* Every fused learned rule: X(name, features (the network's inputs after the step embedding
 * is folded in), layers, chunk (pass 1's squares are summed per chunk of that many 16-element
 * blocks, then the chunks in order, as the host rule sums them; 0: the whole tensor is one
 * chunk), factored (whether the rule has pass 0's factored statistics)). The one list:
 * lopt_host.c and lopt.cu expand it; device/build.rs generates the Rust side from it
 * (`LoptKernel`). Keep the list on this one line. */
#define BM_LOPT_RULES(X) X(mlp_lopt, 8, 3, 0, 0) X(small_fc, 28, 3, 256, 1) X(velo, 30, 3, 256, 1)

#endif
