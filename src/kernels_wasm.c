/* kernels_wasm.c — WebAssembly SIMD128 kernels (emcc -msimd128; clang 14 intrinsics, no relaxed SIMD).
 *
 * Each kernel reproduces the summation order of its _ref twin in kernels_ref.c exactly (see the comment at
 * the top of that file), so the wasm build computes the same bits as the native builds. Wasm SIMD has no
 * FMA, so products and sums are rounded separately, as in the reference. */
#include "kernels.h"

#include <wasm_simd128.h>

/* ------------------------------------------------------------------ helpers */

/* Canonical fold of 32 partials held as 8 x 4 lanes: +16, +8, +4, +2, +1. */
static inline float fold32_wasm(v128_t *p) {
    for (int k = 0; k < 4; k++) p[k] = wasm_f32x4_add(p[k], p[k + 4]);
    p[0] = wasm_f32x4_add(p[0], p[2]);
    p[1] = wasm_f32x4_add(p[1], p[3]);
    v128_t v = wasm_f32x4_add(p[0], p[1]);
    v = wasm_f32x4_add(v, wasm_i32x4_shuffle(v, v, 2, 3, 2, 3));
    return wasm_f32x4_extract_lane(v, 0) + wasm_f32x4_extract_lane(v, 1);
}

/* (q0 + q2) + (q1 + q3). */
static inline float fold4_wasm(v128_t q) {
    q = wasm_f32x4_add(q, wasm_i32x4_shuffle(q, q, 2, 3, 2, 3));
    return wasm_f32x4_extract_lane(q, 0) + wasm_f32x4_extract_lane(q, 1);
}

/* 4 exact f16 -> f32 conversions (no f16 instructions in SIMD128): shift the half's exponent+mantissa into
 * float position and scale by 2^112, which is exact for normals and subnormals; inf/NaN get the float
 * all-ones exponent. */
static inline v128_t f16x4_to_f32(v128_t h32) {
    const v128_t em = wasm_i32x4_shl(wasm_v128_and(h32, wasm_i32x4_splat(0x7fff)), 13);
    v128_t mag = wasm_f32x4_mul(em, wasm_i32x4_splat(0x77800000)); /* bits of 2^112 */
    const v128_t infnan = wasm_i32x4_ge(em, wasm_i32x4_splat(0x0f800000)); /* half exponent 31 */
    mag = wasm_v128_or(mag, wasm_v128_and(infnan, wasm_i32x4_splat(0x7f800000)));
    const v128_t sign = wasm_i32x4_shl(wasm_v128_and(h32, wasm_i32x4_splat(0x8000)), 16);
    return wasm_v128_or(mag, sign);
}

static inline void load_f16x8(const ei_f16 *p, v128_t *lo, v128_t *hi) {
    const v128_t h = wasm_v128_load(p);
    *lo = f16x4_to_f32(wasm_u32x4_extend_low_u16x8(h));
    *hi = f16x4_to_f32(wasm_u32x4_extend_high_u16x8(h));
}

/* 4 int32 partial sums of the dot of 16 signed bytes x and y (exact: i16 products, i32 pair sums). */
static inline v128_t dot_i8x16(v128_t x, v128_t y) {
    const v128_t lo = wasm_i32x4_dot_i16x8(wasm_i16x8_extend_low_i8x16(x), wasm_i16x8_extend_low_i8x16(y));
    const v128_t hi = wasm_i32x4_dot_i16x8(wasm_i16x8_extend_high_i8x16(x), wasm_i16x8_extend_high_i8x16(y));
    return wasm_i32x4_add(lo, hi);
}

/* [sum v0, sum v1, sum v2, sum v3] of four i32x4 vectors (a 4x4 transpose-add). */
static inline v128_t hsum4_i32(v128_t v0, v128_t v1, v128_t v2, v128_t v3) {
    const v128_t u0 = wasm_i32x4_add(wasm_i32x4_shuffle(v0, v1, 0, 4, 1, 5), wasm_i32x4_shuffle(v0, v1, 2, 6, 3, 7));
    const v128_t u1 = wasm_i32x4_add(wasm_i32x4_shuffle(v2, v3, 0, 4, 1, 5), wasm_i32x4_shuffle(v2, v3, 2, 6, 3, 7));
    return wasm_i32x4_add(wasm_i32x4_shuffle(u0, u1, 0, 1, 4, 5), wasm_i32x4_shuffle(u0, u1, 2, 3, 6, 7));
}

static inline int32_t hsum_i32(v128_t v) {
    return wasm_i32x4_extract_lane(v, 0) + wasm_i32x4_extract_lane(v, 1) + wasm_i32x4_extract_lane(v, 2) +
           wasm_i32x4_extract_lane(v, 3);
}

static inline v128_t blk_q8_0_q8_0(const block_q8_0 *a, const block_q8_0 *b) {
    return wasm_i32x4_add(dot_i8x16(wasm_v128_load(a->qs), wasm_v128_load(b->qs)),
                          dot_i8x16(wasm_v128_load(a->qs + 16), wasm_v128_load(b->qs + 16)));
}

static inline v128_t blk_q4_0_q8_0(const block_q4_0 *a, const block_q8_0 *b) {
    const v128_t q = wasm_v128_load(a->qs);
    const v128_t eight = wasm_i8x16_splat(8);
    const v128_t lo = wasm_i8x16_sub(wasm_v128_and(q, wasm_i8x16_splat(0x0f)), eight);
    const v128_t hi = wasm_i8x16_sub(wasm_u8x16_shr(q, 4), eight);
    return wasm_i32x4_add(dot_i8x16(lo, wasm_v128_load(b->qs)), dot_i8x16(hi, wasm_v128_load(b->qs + 16)));
}

/* d_a * d_b of 4 block pairs, the halves widened with SIMD (exact, so identical to the scalar path). */
static inline v128_t scales4(ei_f16 a0, ei_f16 a1, ei_f16 a2, ei_f16 a3, ei_f16 b0, ei_f16 b1, ei_f16 b2,
                             ei_f16 b3) {
    const v128_t da = f16x4_to_f32(wasm_i32x4_make(a0, a1, a2, a3));
    const v128_t db = f16x4_to_f32(wasm_i32x4_make(b0, b1, b2, b3));
    return wasm_f32x4_mul(da, db);
}

/* ------------------------------------------------------------------ kernels */

static float dot_f32_wasm(int64_t n, const float *a, const float *b) {
    v128_t p[8];
    for (int k = 0; k < 8; k++) p[k] = wasm_f32x4_splat(0.0f);
    int64_t i = 0;
    for (; i + 32 <= n; i += 32)
        for (int k = 0; k < 8; k++)
            p[k] = wasm_f32x4_add(p[k], wasm_f32x4_mul(wasm_v128_load(a + i + 4 * k), wasm_v128_load(b + i + 4 * k)));
    float s = fold32_wasm(p);
    for (; i < n; i++) {
        const float t = a[i] * b[i];
        s += t;
    }
    return s;
}

static float dot_f16_f32_wasm(int64_t n, const ei_f16 *a, const float *b) {
    v128_t p[8];
    for (int k = 0; k < 8; k++) p[k] = wasm_f32x4_splat(0.0f);
    int64_t i = 0;
    for (; i + 32 <= n; i += 32)
        for (int k = 0; k < 8; k += 2) {
            v128_t lo, hi;
            load_f16x8(a + i + 4 * k, &lo, &hi);
            p[k] = wasm_f32x4_add(p[k], wasm_f32x4_mul(lo, wasm_v128_load(b + i + 4 * k)));
            p[k + 1] = wasm_f32x4_add(p[k + 1], wasm_f32x4_mul(hi, wasm_v128_load(b + i + 4 * k + 4)));
        }
    float s = fold32_wasm(p);
    for (; i < n; i++) {
        const float t = ei_f16_to_f32(a[i]) * b[i];
        s += t;
    }
    return s;
}

static float dot_q8_0_q8_0_wasm(int64_t n, const block_q8_0 *a, const block_q8_0 *b) {
    const int64_t nb = n / QK8_0;
    v128_t acc = wasm_f32x4_splat(0.0f);
    int64_t ib = 0;
    for (; ib + 4 <= nb; ib += 4) {
        const block_q8_0 *x = a + ib, *y = b + ib;
        const v128_t si = hsum4_i32(blk_q8_0_q8_0(x, y), blk_q8_0_q8_0(x + 1, y + 1), blk_q8_0_q8_0(x + 2, y + 2),
                                    blk_q8_0_q8_0(x + 3, y + 3));
        const v128_t d = scales4(x[0].d, x[1].d, x[2].d, x[3].d, y[0].d, y[1].d, y[2].d, y[3].d);
        acc = wasm_f32x4_add(acc, wasm_f32x4_mul(wasm_f32x4_convert_i32x4(si), d));
    }
    float s = fold4_wasm(acc);
    for (; ib < nb; ib++) {
        const float d = ei_f16_to_f32(a[ib].d) * ei_f16_to_f32(b[ib].d);
        const float c = (float)hsum_i32(blk_q8_0_q8_0(a + ib, b + ib)) * d;
        s += c;
    }
    return s;
}

static float dot_q4_0_q8_0_wasm(int64_t n, const block_q4_0 *a, const block_q8_0 *b) {
    const int64_t nb = n / QK4_0;
    v128_t acc = wasm_f32x4_splat(0.0f);
    int64_t ib = 0;
    for (; ib + 4 <= nb; ib += 4) {
        const block_q4_0 *x = a + ib;
        const block_q8_0 *y = b + ib;
        const v128_t si = hsum4_i32(blk_q4_0_q8_0(x, y), blk_q4_0_q8_0(x + 1, y + 1), blk_q4_0_q8_0(x + 2, y + 2),
                                    blk_q4_0_q8_0(x + 3, y + 3));
        const v128_t d = scales4(x[0].d, x[1].d, x[2].d, x[3].d, y[0].d, y[1].d, y[2].d, y[3].d);
        acc = wasm_f32x4_add(acc, wasm_f32x4_mul(wasm_f32x4_convert_i32x4(si), d));
    }
    float s = fold4_wasm(acc);
    for (; ib < nb; ib++) {
        const float d = ei_f16_to_f32(a[ib].d) * ei_f16_to_f32(b[ib].d);
        const float c = (float)hsum_i32(blk_q4_0_q8_0(a + ib, b + ib)) * d;
        s += c;
    }
    return s;
}

/* roundf (half away from zero) of 4 floats with |v| < 2^23, as int32 (f32x4.nearest is half-to-even). */
static inline v128_t roundf_i32x4(v128_t v) {
    const v128_t av = wasm_f32x4_abs(v);
    v128_t t = wasm_f32x4_trunc(av);
    const v128_t up = wasm_f32x4_ge(wasm_f32x4_sub(av, t), wasm_f32x4_splat(0.5f));
    t = wasm_f32x4_add(t, wasm_v128_and(up, wasm_f32x4_splat(1.0f)));
    const v128_t sign = wasm_v128_and(v, wasm_f32x4_splat(-0.0f));
    return wasm_i32x4_trunc_sat_f32x4(wasm_v128_or(t, sign));
}

static void quantize_row_q8_0_wasm(const float *x, block_q8_0 *y, int64_t n) {
    const int64_t nb = n / QK8_0;
    for (int64_t ib = 0; ib < nb; ib++) {
        const float *xb = x + ib * QK8_0;
        v128_t v[8];
        v128_t m = wasm_f32x4_splat(0.0f);
        for (int k = 0; k < 8; k++) {
            v[k] = wasm_v128_load(xb + 4 * k);
            m = wasm_f32x4_pmax(m, wasm_f32x4_abs(v[k])); /* pmax = maxps; max adds NaN fix-ups */
        }
        m = wasm_f32x4_pmax(m, wasm_i32x4_shuffle(m, m, 2, 3, 2, 3));
        const float m0 = wasm_f32x4_extract_lane(m, 0), m1 = wasm_f32x4_extract_lane(m, 1);
        const float amax = m0 > m1 ? m0 : m1;
        const float d = amax / 127;
        const float id = d != 0.0f ? 1.0f / d : 0.0f;
        y[ib].d = ei_f32_to_f16(d);
        const v128_t vid = wasm_f32x4_splat(id);
        v128_t q[8];
        for (int k = 0; k < 8; k++) q[k] = roundf_i32x4(wasm_f32x4_mul(v[k], vid));
        const v128_t s0 = wasm_i16x8_narrow_i32x4(q[0], q[1]), s1 = wasm_i16x8_narrow_i32x4(q[2], q[3]);
        const v128_t s2 = wasm_i16x8_narrow_i32x4(q[4], q[5]), s3 = wasm_i16x8_narrow_i32x4(q[6], q[7]);
        wasm_v128_store(y[ib].qs, wasm_i8x16_narrow_i16x8(s0, s1));
        wasm_v128_store(y[ib].qs + 16, wasm_i8x16_narrow_i16x8(s2, s3));
    }
}

static void axpy_f32_wasm(int64_t n, float a, const float *x, float *y) {
    const v128_t va = wasm_f32x4_splat(a);
    int64_t i = 0;
    for (; i + 4 <= n; i += 4)
        wasm_v128_store(y + i, wasm_f32x4_add(wasm_v128_load(y + i), wasm_f32x4_mul(va, wasm_v128_load(x + i))));
    for (; i < n; i++) {
        const float t = a * x[i];
        y[i] += t;
    }
}

static const ei_kernel_table kernels_wasm = {
    .isa = "wasm-simd128",
    .dot_f32 = dot_f32_wasm,
    .dot_f16_f32 = dot_f16_f32_wasm,
    .dot_q8_0_q8_0 = dot_q8_0_q8_0_wasm,
    .dot_q4_0_q8_0 = dot_q4_0_q8_0_wasm,
    .quantize_row_q8_0 = quantize_row_q8_0_wasm,
    .axpy_f32 = axpy_f32_wasm,
};

/* A wasm module built with -msimd128 only instantiates where SIMD exists, so no run-time check is needed. */
const ei_kernel_table *ei_kernels(void) { return &kernels_wasm; }
