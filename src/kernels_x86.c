/* kernels_x86.c — AVX2 + F16C kernels (compiled with -mavx2 -mfma -mf16c), chosen at run time.
 *
 * Each kernel reproduces the summation order of its _ref twin in kernels_ref.c exactly (see the comment at
 * the top of that file), so results are bit-identical to the scalar code and to the wasm build. Products
 * and sums are separate mul/add instructions on purpose: FMA would round differently. */
#include "kernels.h"

#include <cpuid.h>
#include <immintrin.h>

/* GCC in GNU mode (-std=gnu11) fuses mul+add into FMA across statements and intrinsics; the summation
 * order contract needs them rounded separately whatever -std the build uses. */
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC optimize("fp-contract=off")
#elif defined(__clang__)
#pragma STDC FP_CONTRACT OFF
#endif
#include <math.h>
#include <stdatomic.h>
#include <string.h>

/* ------------------------------------------------------------------ horizontal helpers */

/* Canonical fold of 32 partials held as 4 x 8 lanes: +16, +8, +4, +2, +1. */
static inline float fold32_avx(__m256 s0, __m256 s1, __m256 s2, __m256 s3) {
    s0 = _mm256_add_ps(s0, s2);
    s1 = _mm256_add_ps(s1, s3);
    s0 = _mm256_add_ps(s0, s1);
    __m128 v = _mm_add_ps(_mm256_castps256_ps128(s0), _mm256_extractf128_ps(s0, 1));
    v = _mm_add_ps(v, _mm_movehl_ps(v, v));
    v = _mm_add_ss(v, _mm_shuffle_ps(v, v, 1));
    return _mm_cvtss_f32(v);
}

/* (q0 + q2) + (q1 + q3) of the 4 per-group block accumulators. */
static inline float fold4(__m128 q) {
    q = _mm_add_ps(q, _mm_movehl_ps(q, q));
    q = _mm_add_ss(q, _mm_shuffle_ps(q, q, 1));
    return _mm_cvtss_f32(q);
}

/* Exact int32 sums of four 8-lane int32 vectors -> [sum v0, sum v1, sum v2, sum v3]. */
static inline __m128i hsum4_epi32(__m256i v0, __m256i v1, __m256i v2, __m256i v3) {
    __m256i h = _mm256_hadd_epi32(_mm256_hadd_epi32(v0, v1), _mm256_hadd_epi32(v2, v3));
    return _mm_add_epi32(_mm256_castsi256_si128(h), _mm256_extracti128_si256(h, 1));
}

/* 8 int32 partial sums of the signed byte dot x·y (|x| <= 127 or x = -8..7; y != -128, as ggml). */
static inline __m256i dot_i8_32(__m256i x, __m256i y) {
    const __m256i ax = _mm256_sign_epi8(x, x);
    const __m256i sy = _mm256_sign_epi8(y, x);
    const __m256i p16 = _mm256_maddubs_epi16(ax, sy);
    return _mm256_madd_epi16(p16, _mm256_set1_epi16(1));
}

/* 32 Q4_0 codes of a block as signed bytes in element order (low nibbles = 0..15, high = 16..31). */
static inline __m256i unpack_q4_0(const uint8_t *qs) {
    const __m128i q = _mm_loadu_si128((const __m128i *)qs);
    const __m256i both = _mm256_inserti128_si256(_mm256_castsi128_si256(q), _mm_srli_epi16(q, 4), 1);
    const __m256i nib = _mm256_and_si256(both, _mm256_set1_epi8(0x0f));
    return _mm256_sub_epi8(nib, _mm256_set1_epi8(8));
}

static inline __m128 scales4(ei_f16 a0, ei_f16 a1, ei_f16 a2, ei_f16 a3, ei_f16 b0, ei_f16 b1, ei_f16 b2,
                             ei_f16 b3) {
    const __m128 da = _mm_cvtph_ps(_mm_setr_epi16((short)a0, (short)a1, (short)a2, (short)a3, 0, 0, 0, 0));
    const __m128 db = _mm_cvtph_ps(_mm_setr_epi16((short)b0, (short)b1, (short)b2, (short)b3, 0, 0, 0, 0));
    return _mm_mul_ps(da, db);
}

/* ------------------------------------------------------------------ kernels */

static float dot_f32_avx2(int64_t n, const float *a, const float *b) {
    __m256 s0 = _mm256_setzero_ps(), s1 = s0, s2 = s0, s3 = s0;
    int64_t i = 0;
    for (; i + 32 <= n; i += 32) {
        s0 = _mm256_add_ps(s0, _mm256_mul_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i)));
        s1 = _mm256_add_ps(s1, _mm256_mul_ps(_mm256_loadu_ps(a + i + 8), _mm256_loadu_ps(b + i + 8)));
        s2 = _mm256_add_ps(s2, _mm256_mul_ps(_mm256_loadu_ps(a + i + 16), _mm256_loadu_ps(b + i + 16)));
        s3 = _mm256_add_ps(s3, _mm256_mul_ps(_mm256_loadu_ps(a + i + 24), _mm256_loadu_ps(b + i + 24)));
    }
    float s = fold32_avx(s0, s1, s2, s3);
    for (; i < n; i++) {
        const float t = a[i] * b[i];
        s += t;
    }
    return s;
}

static inline __m256 load_f16x8(const ei_f16 *p) {
    return _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)p));
}

static float dot_f16_f32_avx2(int64_t n, const ei_f16 *a, const float *b) {
    __m256 s0 = _mm256_setzero_ps(), s1 = s0, s2 = s0, s3 = s0;
    int64_t i = 0;
    for (; i + 32 <= n; i += 32) {
        s0 = _mm256_add_ps(s0, _mm256_mul_ps(load_f16x8(a + i), _mm256_loadu_ps(b + i)));
        s1 = _mm256_add_ps(s1, _mm256_mul_ps(load_f16x8(a + i + 8), _mm256_loadu_ps(b + i + 8)));
        s2 = _mm256_add_ps(s2, _mm256_mul_ps(load_f16x8(a + i + 16), _mm256_loadu_ps(b + i + 16)));
        s3 = _mm256_add_ps(s3, _mm256_mul_ps(load_f16x8(a + i + 24), _mm256_loadu_ps(b + i + 24)));
    }
    float s = fold32_avx(s0, s1, s2, s3);
    for (; i < n; i++) {
        const float t = ei_f16_to_f32(a[i]) * b[i];
        s += t;
    }
    return s;
}

static inline __m256i load_i8x32(const int8_t *p) { return _mm256_loadu_si256((const __m256i *)p); }

/* One block's contribution for the nb % 4 tail, in scalar float like the reference. */
static inline float tail_q8_0(const block_q8_0 *a, const block_q8_0 *b) {
    const __m128i s = hsum4_epi32(dot_i8_32(load_i8x32(a->qs), load_i8x32(b->qs)), _mm256_setzero_si256(),
                                  _mm256_setzero_si256(), _mm256_setzero_si256());
    const float d = ei_f16_to_f32(a->d) * ei_f16_to_f32(b->d);
    return (float)_mm_cvtsi128_si32(s) * d;
}

static float dot_q8_0_q8_0_avx2(int64_t n, const block_q8_0 *a, const block_q8_0 *b) {
    const int64_t nb = n / QK8_0;
    __m128 acc = _mm_setzero_ps();
    int64_t ib = 0;
    for (; ib + 4 <= nb; ib += 4) {
        const block_q8_0 *x = a + ib, *y = b + ib;
        const __m128i si = hsum4_epi32(dot_i8_32(load_i8x32(x[0].qs), load_i8x32(y[0].qs)),
                                       dot_i8_32(load_i8x32(x[1].qs), load_i8x32(y[1].qs)),
                                       dot_i8_32(load_i8x32(x[2].qs), load_i8x32(y[2].qs)),
                                       dot_i8_32(load_i8x32(x[3].qs), load_i8x32(y[3].qs)));
        const __m128 d = scales4(x[0].d, x[1].d, x[2].d, x[3].d, y[0].d, y[1].d, y[2].d, y[3].d);
        acc = _mm_add_ps(acc, _mm_mul_ps(_mm_cvtepi32_ps(si), d));
    }
    float s = fold4(acc);
    for (; ib < nb; ib++) s += tail_q8_0(a + ib, b + ib);
    return s;
}

static inline float tail_q4_0(const block_q4_0 *a, const block_q8_0 *b) {
    const __m128i s = hsum4_epi32(dot_i8_32(unpack_q4_0(a->qs), load_i8x32(b->qs)), _mm256_setzero_si256(),
                                  _mm256_setzero_si256(), _mm256_setzero_si256());
    const float d = ei_f16_to_f32(a->d) * ei_f16_to_f32(b->d);
    return (float)_mm_cvtsi128_si32(s) * d;
}

static float dot_q4_0_q8_0_avx2(int64_t n, const block_q4_0 *a, const block_q8_0 *b) {
    const int64_t nb = n / QK4_0;
    __m128 acc = _mm_setzero_ps();
    int64_t ib = 0;
    for (; ib + 4 <= nb; ib += 4) {
        const block_q4_0 *x = a + ib;
        const block_q8_0 *y = b + ib;
        const __m128i si = hsum4_epi32(dot_i8_32(unpack_q4_0(x[0].qs), load_i8x32(y[0].qs)),
                                       dot_i8_32(unpack_q4_0(x[1].qs), load_i8x32(y[1].qs)),
                                       dot_i8_32(unpack_q4_0(x[2].qs), load_i8x32(y[2].qs)),
                                       dot_i8_32(unpack_q4_0(x[3].qs), load_i8x32(y[3].qs)));
        const __m128 d = scales4(x[0].d, x[1].d, x[2].d, x[3].d, y[0].d, y[1].d, y[2].d, y[3].d);
        acc = _mm_add_ps(acc, _mm_mul_ps(_mm_cvtepi32_ps(si), d));
    }
    float s = fold4(acc);
    for (; ib < nb; ib++) s += tail_q4_0(a + ib, b + ib);
    return s;
}

/* roundf (half away from zero) of 8 floats with |v| < 2^23, as int32. _mm256_round_ps only has
 * half-to-even, which would differ from the reference on exact .5 ties. */
static inline __m256i roundf_epi32(__m256 v) {
    const __m256 sign = _mm256_set1_ps(-0.0f);
    const __m256 av = _mm256_andnot_ps(sign, v);
    __m256 t = _mm256_round_ps(av, _MM_FROUND_TO_ZERO | _MM_FROUND_NO_EXC);
    const __m256 up = _mm256_cmp_ps(_mm256_sub_ps(av, t), _mm256_set1_ps(0.5f), _CMP_GE_OQ);
    t = _mm256_add_ps(t, _mm256_and_ps(up, _mm256_set1_ps(1.0f)));
    return _mm256_cvttps_epi32(_mm256_or_ps(t, _mm256_and_ps(v, sign)));
}

static void quantize_row_q8_0_avx2(const float *x, block_q8_0 *y, int64_t n) {
    const int64_t nb = n / QK8_0;
    const __m256 sign = _mm256_set1_ps(-0.0f);
    for (int64_t ib = 0; ib < nb; ib++) {
        const float *xb = x + ib * QK8_0;
        __m256 v0 = _mm256_loadu_ps(xb), v1 = _mm256_loadu_ps(xb + 8);
        __m256 v2 = _mm256_loadu_ps(xb + 16), v3 = _mm256_loadu_ps(xb + 24);
        __m256 m = _mm256_max_ps(_mm256_max_ps(_mm256_andnot_ps(sign, v0), _mm256_andnot_ps(sign, v1)),
                                 _mm256_max_ps(_mm256_andnot_ps(sign, v2), _mm256_andnot_ps(sign, v3)));
        __m128 m4 = _mm_max_ps(_mm256_castps256_ps128(m), _mm256_extractf128_ps(m, 1));
        m4 = _mm_max_ps(m4, _mm_movehl_ps(m4, m4));
        m4 = _mm_max_ss(m4, _mm_shuffle_ps(m4, m4, 1));
        const float amax = _mm_cvtss_f32(m4);
        const float d = amax / 127;
        const float id = d != 0.0f ? 1.0f / d : 0.0f;
        y[ib].d = ei_f32_to_f16(d);
        const __m256 vid = _mm256_set1_ps(id);
        const __m256i i0 = roundf_epi32(_mm256_mul_ps(v0, vid));
        const __m256i i1 = roundf_epi32(_mm256_mul_ps(v1, vid));
        const __m256i i2 = roundf_epi32(_mm256_mul_ps(v2, vid));
        const __m256i i3 = roundf_epi32(_mm256_mul_ps(v3, vid));
        /* packs work per 128-bit lane; the final permute restores element order. */
        const __m256i p16a = _mm256_packs_epi32(i0, i1);
        const __m256i p16b = _mm256_packs_epi32(i2, i3);
        const __m256i p8 = _mm256_packs_epi16(p16a, p16b);
        const __m256i ord = _mm256_permutevar8x32_epi32(p8, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
        _mm256_storeu_si256((__m256i *)y[ib].qs, ord);
    }
}

static void axpy_f32_avx2(int64_t n, float a, const float *x, float *y) {
    const __m256 va = _mm256_set1_ps(a);
    int64_t i = 0;
    for (; i + 8 <= n; i += 8)
        _mm256_storeu_ps(y + i, _mm256_add_ps(_mm256_loadu_ps(y + i), _mm256_mul_ps(va, _mm256_loadu_ps(x + i))));
    for (; i < n; i++) {
        const float t = a * x[i];
        y[i] += t;
    }
}

static const ei_kernel_table kernels_avx2 = {
    .isa = "avx2",
    .dot_f32 = dot_f32_avx2,
    .dot_f16_f32 = dot_f16_f32_avx2,
    .dot_q8_0_q8_0 = dot_q8_0_q8_0_avx2,
    .dot_q4_0_q8_0 = dot_q4_0_q8_0_avx2,
    .quantize_row_q8_0 = quantize_row_q8_0_avx2,
    .axpy_f32 = axpy_f32_avx2,
};

/* 1 if CPUID reports F16C (leaf 1, ECX bit 29); __builtin_cpu_supports has no "f16c" in clang 14. */
static int cpu_has_f16c(void) {
    unsigned a, b, c, d;
    return __get_cpuid(1, &a, &b, &c, &d) && (c & (1u << 29));
}

/* AVX2 table when the CPU has AVX2, FMA and F16C (this file is compiled with all three, so the compiler may
 * use any of them), else the scalar reference. Decided once and cached: CPUID is slow (a VM exit under a
 * hypervisor) and callers ask per matmul. Threads racing on the first call store the same pointer. */
const ei_kernel_table *ei_kernels(void) {
    static _Atomic(const ei_kernel_table *) cached;
    const ei_kernel_table *k = atomic_load_explicit(&cached, memory_order_acquire);
    if (!k) {
        __builtin_cpu_init();
        k = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && cpu_has_f16c() ? &kernels_avx2
                                                                                                : &ei_kernels_ref;
        atomic_store_explicit(&cached, k, memory_order_release);
    }
    return k;
}
