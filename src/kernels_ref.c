/* kernels_ref.c — scalar reference kernels, and the summation order every SIMD twin reproduces.
 *
 * Why a fixed order: the SIMD kernels (AVX2, wasm SIMD) are written to give the *same bits* as these
 * functions, so native and wasm builds compute identical matmuls and golden tests carry across targets.
 * The order is:
 *   f32 / f16 dots: element i goes into partial sum p[i % 32] (multiply, then add: never fused); the 32
 *     partials are folded as p[j] += p[j+16], then +8, +4, +2, +1; the n % 32 tail is added last, in order.
 *   quant dots: block b gives c_b = (float)sumi_b * (d_a * d_b) with sumi_b the exact int32 block dot;
 *     c_b goes into q[b % 4] for whole groups of 4 blocks, folded as (q0+q2) + (q1+q3); the nb % 4 tail
 *     blocks are added last, in order.
 * This relies on no FMA contraction: the pragma below turns it off for GCC (which fuses across statements in
 * GNU mode) and clang, and every product is its own statement anyway. */
#include "kernels.h"

/* Keep every product rounded on its own (GCC in GNU mode would fuse into FMA where the target has it), so
 * results are the same on every target and build mode. */
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC optimize("fp-contract=off")
#elif defined(__clang__)
#pragma STDC FP_CONTRACT OFF
#endif

#define NPART 32 /* partial sums of the f32/f16 dots: 4 AVX2 registers or 8 wasm registers */

/* Folds the 32 partials in the canonical tree order. */
static float fold32(float *p) {
    for (int w = NPART / 2; w >= 1; w /= 2)
        for (int j = 0; j < w; j++) p[j] += p[j + w];
    return p[0];
}

float ei_dot_f32_ref(int64_t n, const float *a, const float *b) {
    float p[NPART] = {0};
    int64_t i = 0;
    for (; i + NPART <= n; i += NPART)
        for (int j = 0; j < NPART; j++) {
            const float t = a[i + j] * b[i + j];
            p[j] += t;
        }
    float s = fold32(p);
    for (; i < n; i++) {
        const float t = a[i] * b[i];
        s += t;
    }
    return s;
}

float ei_dot_f16_f32_ref(int64_t n, const ei_f16 *a, const float *b) {
    float p[NPART] = {0};
    int64_t i = 0;
    for (; i + NPART <= n; i += NPART)
        for (int j = 0; j < NPART; j++) {
            const float t = ei_f16_to_f32(a[i + j]) * b[i + j];
            p[j] += t;
        }
    float s = fold32(p);
    for (; i < n; i++) {
        const float t = ei_f16_to_f32(a[i]) * b[i];
        s += t;
    }
    return s;
}

/* Contribution of one block pair: exact int32 dot, then one float rounding (d_a * d_b is exact: two
 * 11-bit significands fit in a float). */
static inline float blk_q8_0_q8_0(const block_q8_0 *a, const block_q8_0 *b) {
    int32_t sumi = 0;
    for (int j = 0; j < QK8_0; j++) sumi += (int32_t)a->qs[j] * (int32_t)b->qs[j];
    const float d = ei_f16_to_f32(a->d) * ei_f16_to_f32(b->d);
    return (float)sumi * d;
}

static inline float blk_q4_0_q8_0(const block_q4_0 *a, const block_q8_0 *b) {
    int32_t sumi = 0;
    for (int j = 0; j < QK4_0 / 2; j++) {
        const int32_t lo = (a->qs[j] & 0x0f) - 8;
        const int32_t hi = (a->qs[j] >> 4) - 8;
        sumi += lo * b->qs[j] + hi * b->qs[j + QK4_0 / 2];
    }
    const float d = ei_f16_to_f32(a->d) * ei_f16_to_f32(b->d);
    return (float)sumi * d;
}

float ei_dot_q8_0_q8_0_ref(int64_t n, const block_q8_0 *a, const block_q8_0 *b) {
    const int64_t nb = n / QK8_0;
    float q[4] = {0, 0, 0, 0};
    int64_t ib = 0;
    for (; ib + 4 <= nb; ib += 4)
        for (int k = 0; k < 4; k++) q[k] += blk_q8_0_q8_0(a + ib + k, b + ib + k);
    q[0] += q[2];
    q[1] += q[3];
    float s = q[0] + q[1];
    for (; ib < nb; ib++) s += blk_q8_0_q8_0(a + ib, b + ib);
    return s;
}

float ei_dot_q4_0_q8_0_ref(int64_t n, const block_q4_0 *a, const block_q8_0 *b) {
    const int64_t nb = n / QK4_0;
    float q[4] = {0, 0, 0, 0};
    int64_t ib = 0;
    for (; ib + 4 <= nb; ib += 4)
        for (int k = 0; k < 4; k++) q[k] += blk_q4_0_q8_0(a + ib + k, b + ib + k);
    q[0] += q[2];
    q[1] += q[3];
    float s = q[0] + q[1];
    for (; ib < nb; ib++) s += blk_q4_0_q8_0(a + ib, b + ib);
    return s;
}

void ei_axpy_f32_ref(int64_t n, float a, const float *x, float *y) {
    for (int64_t i = 0; i < n; i++) {
        const float t = a * x[i];
        y[i] += t;
    }
}

const ei_kernel_table ei_kernels_ref = {
    .isa = "generic",
    .dot_f32 = ei_dot_f32_ref,
    .dot_f16_f32 = ei_dot_f16_f32_ref,
    .dot_q8_0_q8_0 = ei_dot_q8_0_q8_0_ref,
    .dot_q4_0_q8_0 = ei_dot_q4_0_q8_0_ref,
    .quantize_row_q8_0 = ei_quantize_row_q8_0_ref,
    .axpy_f32 = ei_axpy_f32_ref,
};
