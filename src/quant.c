/* quant.c — fp16 conversion, ggml type table, Q8_0/Q4_0 reference quantizers and row dequantizers.
 *
 * Everything here is plain integer/float C so it gives the same bits on every target (no F16C, no libm
 * rounding differences): the quantizers must reproduce ggml's quantize_row_*_ref byte for byte. */
#include "quant.h"

#include <math.h>
#include <string.h>

/* ------------------------------------------------------------------ fp16 <-> fp32 */

static inline uint32_t f32_bits(float f) {
    uint32_t u;
    memcpy(&u, &f, sizeof u);
    return u;
}

static inline float bits_f32(uint32_t u) {
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}

/* Exact widening: every half value (subnormals, ±inf, NaN payloads) has an exact float. Shifting the half's
 * exponent+mantissa into float position and multiplying by 2^112 rebases the exponent exactly, subnormal
 * halves included (they become float subnormals first, and IEEE multiplication by a power of two is exact;
 * this assumes the FPU does not flush subnormals, which C and wasm guarantee by default). */
float ei_f16_to_f32(ei_f16 h) {
    const uint32_t em = (uint32_t)(h & 0x7fffu) << 13;
    uint32_t mag = f32_bits(bits_f32(em) * 0x1p112f);
    if (em >= 0x0f800000u) mag |= 0x7f800000u; /* half exponent 31: inf / NaN, payload kept */
    return bits_f32(((uint32_t)(h & 0x8000u) << 16) | mag);
}

/* Round-to-nearest-even narrowing, same as F16C's _cvtss_sh(x, 0) and ggml's portable path. */
ei_f16 ei_f32_to_f16(float f) {
    uint32_t x = f32_bits(f);
    uint16_t sign = (uint16_t)((x >> 16) & 0x8000u);
    x &= 0x7fffffffu;
    if (x >= 0x7f800000u) { /* inf or NaN (NaN is kept quiet, top payload bits preserved) */
        if (x == 0x7f800000u) return (ei_f16)(sign | 0x7c00u);
        return (ei_f16)(sign | 0x7e00u | ((x >> 13) & 0x3ffu));
    }
    if (x >= 0x477ff000u) return (ei_f16)(sign | 0x7c00u); /* >= 65520 rounds to inf */
    if (x < 0x38800000u) {                                   /* below 2^-14: half subnormal or zero */
        if (x < 0x33000000u) return sign;                    /* < 2^-25: rounds to ±0 */
        uint32_t e = x >> 23;
        uint32_t m = (x & 0x7fffffu) | 0x800000u;
        uint32_t shift = 126 - e; /* value = m * 2^(e-150), half ulp 2^-24 -> shift by 126-e (14..24) */
        uint32_t r = m >> shift;
        uint32_t rem = m & ((1u << shift) - 1);
        uint32_t halfway = 1u << (shift - 1);
        if (rem > halfway || (rem == halfway && (r & 1))) r++;
        return (ei_f16)(sign | r); /* r may carry into 0x400: the smallest normal, which is right */
    }
    uint32_t r = ((x >> 23) - 112) << 10 | ((x >> 13) & 0x3ffu);
    uint32_t rem = x & 0x1fffu;
    if (rem > 0x1000u || (rem == 0x1000u && (r & 1))) r++; /* a carry moves into the exponent correctly */
    return (ei_f16)(sign | r);
}

/* ------------------------------------------------------------------ type table */

/* ggml type ids as stored in GGUF; ids 4, 5, 31-33 and 36-38 were removed from ggml. */
static const char *const type_names[] = {
    "F32",     "F16",    "Q4_0",    "Q4_1",  "?",      "?",      "Q5_0",   "Q5_1",  "Q8_0",     "Q8_1",
    "Q2_K",    "Q3_K",   "Q4_K",    "Q5_K",  "Q6_K",   "Q8_K",   "IQ2_XXS", "IQ2_XS", "IQ3_XXS", "IQ1_S",
    "IQ4_NL",  "IQ3_S",  "IQ2_S",   "IQ4_XS", "I8",    "I16",    "I32",    "I64",   "F64",      "IQ1_M",
    "BF16",    "Q4_0_4_4", "Q4_0_4_8", "Q4_0_8_8", "TQ1_0", "TQ2_0", "IQ4_NL_4_4", "IQ4_NL_4_8", "IQ4_NL_8_8",
    "MXFP4",
};

const char *ei_type_name(uint32_t type) {
    if (type >= sizeof type_names / sizeof type_names[0]) return "?";
    return type_names[type];
}

int ei_type_supported(uint32_t type) {
    return type == EI_TYPE_F32 || type == EI_TYPE_F16 || type == EI_TYPE_Q8_0 || type == EI_TYPE_Q4_0;
}

size_t ei_row_size(uint32_t type, int64_t n) {
    /* The bound keeps n * 4 (and block counts) far from size_t overflow on 32-bit wasm. */
    if (n <= 0 || n > ((int64_t)1 << 28)) return 0;
    switch (type) {
    case EI_TYPE_F32: return (size_t)n * sizeof(float);
    case EI_TYPE_F16: return (size_t)n * sizeof(ei_f16);
    case EI_TYPE_Q8_0: return n % QK8_0 ? 0 : (size_t)(n / QK8_0) * sizeof(block_q8_0);
    case EI_TYPE_Q4_0: return n % QK4_0 ? 0 : (size_t)(n / QK4_0) * sizeof(block_q4_0);
    default: return 0;
    }
}

/* ------------------------------------------------------------------ quantizers */

/* Scale = absmax / 127, quants = roundf(x / scale) (half away from zero), like ggml. */
void ei_quantize_row_q8_0_ref(const float *x, block_q8_0 *y, int64_t n) {
    const int64_t nb = n / QK8_0;
    for (int64_t i = 0; i < nb; i++) {
        const float *xb = x + i * QK8_0;
        float amax = 0.0f;
        for (int j = 0; j < QK8_0; j++) {
            float a = fabsf(xb[j]);
            amax = amax > a ? amax : a;
        }
        const float d = amax / 127;
        const float id = d != 0.0f ? 1.0f / d : 0.0f;
        y[i].d = ei_f32_to_f16(d);
        for (int j = 0; j < QK8_0; j++) {
            const float v = xb[j] * id;
            y[i].qs[j] = (int8_t)roundf(v);
        }
    }
}

/* Scale = (signed value of largest magnitude) / -8, quants = min(15, trunc(x/scale + 8.5)), like ggml:
 * the extreme value maps to 0 and the code range is asymmetric (-8..7). */
void ei_quantize_row_q4_0_ref(const float *x, block_q4_0 *y, int64_t n) {
    const int64_t nb = n / QK4_0;
    for (int64_t i = 0; i < nb; i++) {
        const float *xb = x + i * QK4_0;
        float amax = 0.0f, max = 0.0f;
        for (int j = 0; j < QK4_0; j++) {
            if (amax < fabsf(xb[j])) {
                amax = fabsf(xb[j]);
                max = xb[j];
            }
        }
        const float d = max / -8;
        const float id = d != 0.0f ? 1.0f / d : 0.0f;
        y[i].d = ei_f32_to_f16(d);
        for (int j = 0; j < QK4_0 / 2; j++) {
            const float v0 = xb[j] * id;
            const float v1 = xb[QK4_0 / 2 + j] * id;
            int q0 = (int8_t)(v0 + 8.5f);
            int q1 = (int8_t)(v1 + 8.5f);
            q0 = q0 < 15 ? q0 : 15;
            q1 = q1 < 15 ? q1 : 15;
            y[i].qs[j] = (uint8_t)(q0 | (q1 << 4));
        }
    }
}

/* ------------------------------------------------------------------ dequantizers */

void ei_dequantize_row(uint32_t type, const void *src, float *dst, int64_t n) {
    switch (type) {
    case EI_TYPE_F32:
        memcpy(dst, src, (size_t)n * sizeof(float));
        break;
    case EI_TYPE_F16: {
        const ei_f16 *h = src;
        for (int64_t i = 0; i < n; i++) dst[i] = ei_f16_to_f32(h[i]);
        break;
    }
    case EI_TYPE_Q8_0: {
        const block_q8_0 *b = src;
        for (int64_t i = 0; i < n / QK8_0; i++) {
            const float d = ei_f16_to_f32(b[i].d);
            for (int j = 0; j < QK8_0; j++) dst[i * QK8_0 + j] = b[i].qs[j] * d;
        }
        break;
    }
    case EI_TYPE_Q4_0: {
        const block_q4_0 *b = src;
        for (int64_t i = 0; i < n / QK4_0; i++) {
            const float d = ei_f16_to_f32(b[i].d);
            for (int j = 0; j < QK4_0 / 2; j++) {
                dst[i * QK4_0 + j] = ((b[i].qs[j] & 0x0f) - 8) * d;
                dst[i * QK4_0 + QK4_0 / 2 + j] = ((b[i].qs[j] >> 4) - 8) * d;
            }
        }
        break;
    }
    default: /* unsupported types are rejected at load time; nothing is written */
        break;
    }
}
