/* test_quant.c — fp16 conversion, type table, Q8_0/Q4_0 quantizers (hand-computed blocks) and error bounds.
 * References are independent of the code under test: IEEE definitions evaluated with ldexp, hand-derived
 * blocks, and (when compiled with F16C) the CPU's own conversion instruction. */
#include "quant.h"
#include "test.h"

#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#if defined(__F16C__)
#include <immintrin.h>
#endif

static uint32_t fbits(float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    return u;
}

static float bitsf(uint32_t u) {
    float f;
    memcpy(&f, &u, 4);
    return f;
}

/* Value of a half by the IEEE 754 definition (finite halves only). */
static double half_value(uint16_t h) {
    int s = h >> 15, e = (h >> 10) & 31, m = h & 1023;
    double v = e == 0 ? ldexp(m, -24) : ldexp(1024 + m, e - 25);
    return s ? -v : v;
}

static uint64_t rng_state = 0x1234567;
static uint32_t rnd32(void) {
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return (uint32_t)(rng_state >> 16);
}
static float rndf(float lo, float hi) { return lo + (hi - lo) * (float)(rnd32() & 0xffffff) / 16777216.0f; }

static void test_f16_to_f32_all(void) {
    int bad = 0;
    for (uint32_t h = 0; h < 65536; h++) {
        float f = ei_f16_to_f32((ei_f16)h);
        int e = (h >> 10) & 31;
        if (e == 31) {
            if ((h & 1023) == 0) {
                if (!(isinf(f) && (signbit(f) != 0) == (h >> 15))) bad++;
            } else if (!isnan(f)) {
                bad++;
            }
        } else if ((double)f != half_value((uint16_t)h) || (signbit(f) != 0) != (int)(h >> 15)) {
            bad++;
        }
    }
    CHECK(bad == 0, "%d halves widen wrongly", bad);
}

static void test_f16_roundtrip_all(void) {
    int bad = 0;
    for (uint32_t h = 0; h < 65536; h++) {
        ei_f16 back = ei_f32_to_f16(ei_f16_to_f32((ei_f16)h));
        if (((h >> 10) & 31) == 31 && (h & 1023)) {
            if ((back & 0x7c00) != 0x7c00 || (back & 1023) == 0) bad++; /* NaN stays NaN */
        } else if (back != h) {
            bad++;
        }
    }
    CHECK(bad == 0, "%d halves do not round-trip", bad);
}

static void test_f16_special(void) {
    CHECK(ei_f32_to_f16(0.0f) == 0x0000, "+0");
    CHECK(ei_f32_to_f16(-0.0f) == 0x8000, "-0 keeps its sign");
    CHECK(ei_f32_to_f16(INFINITY) == 0x7c00, "+inf");
    CHECK(ei_f32_to_f16(-INFINITY) == 0xfc00, "-inf");
    ei_f16 n = ei_f32_to_f16(NAN);
    CHECK((n & 0x7c00) == 0x7c00 && (n & 0x3ff), "NaN -> 0x%04x", n);
    CHECK(isnan(ei_f16_to_f32(0x7e00)) && isnan(ei_f16_to_f32(0xfc01)), "half NaN widens to NaN");
    CHECK(ei_f32_to_f16(65504.0f) == 0x7bff, "max half");
    CHECK(ei_f32_to_f16(65519.99f) == 0x7bff, "just below the inf threshold");
    CHECK(ei_f32_to_f16(65520.0f) == 0x7c00, "65520 ties to even = inf");
    CHECK(ei_f32_to_f16(1e10f) == 0x7c00, "overflow -> inf");
    CHECK(ei_f32_to_f16(ldexpf(1, -24)) == 0x0001, "smallest subnormal");
    CHECK(ei_f32_to_f16(ldexpf(1, -25)) == 0x0000, "2^-25 ties to even = 0");
    CHECK(ei_f32_to_f16(ldexpf(1.5f, -25)) == 0x0001, "0.75 ulp rounds up");
    CHECK(ei_f32_to_f16(ldexpf(3, -25)) == 0x0002, "1.5 ulp ties to even = 2");
    CHECK(ei_f32_to_f16(ldexpf(5, -25)) == 0x0002, "2.5 ulp ties to even = 2");
    CHECK(ei_f32_to_f16(ldexpf(1023, -24)) == 0x03ff, "largest subnormal");
    CHECK(ei_f32_to_f16(ldexpf(2047, -25)) == 0x0400, "rounds up into the smallest normal");
    CHECK(ei_f32_to_f16(ldexpf(1, -14)) == 0x0400, "smallest normal");
    CHECK(ei_f32_to_f16(-ldexpf(1, -30)) == 0x8000, "tiny negative -> -0");
    CHECK(ei_f32_to_f16(1.0f + ldexpf(1, -11)) == 0x3c00, "1 + half ulp ties to even = 1");
    CHECK(ei_f32_to_f16(1.0f + ldexpf(3, -11)) == 0x3c02, "1 + 1.5 ulp ties to even");
    CHECK(ei_f32_to_f16(1.0f + ldexpf(1, -11) + ldexpf(1, -20)) == 0x3c01, "above the tie rounds up");
    CHECK(ei_f32_to_f16(bitsf(0x387fe000)) == 0x0400, "top of the subnormal range rounds to normal");
}

/* Random floats: the chosen half must be a nearest one, ties to even (and equal F16C when available). */
static void test_f16_rounding_random(void) {
    int bad = 0, bad_hw = 0;
    for (int i = 0; i < 200000; i++) {
        float x;
        if (i % 3 == 0)
            x = bitsf((rnd32() & 0x80000000u) | (0x33000000u + rnd32() % (0x477fe000u - 0x33000000u)));
        else
            x = rndf(-70000.0f, 70000.0f) * ldexpf(1, -(int)(rnd32() % 30));
        ei_f16 h = ei_f32_to_f16(x);
        if ((h & 0x7c00) == 0x7c00) {
            if (fabsf(x) < 65520.0f) bad++;
        } else {
            double v = half_value(h), err = fabs((double)x - v);
            uint16_t mag = h & 0x7fff;
            double up = mag < 0x7bff ? half_value((uint16_t)(mag + 1)) : 65536.0;
            double dn = mag > 0 ? half_value((uint16_t)(mag - 1)) : -half_value(1);
            double eu = fabs(fabs((double)x) - up), ed = fabs(fabs((double)x) - dn);
            if (err > eu || err > ed) bad++;
            if ((err == eu || err == ed) && (h & 1)) bad++; /* tie must go to even */
        }
#if defined(__F16C__)
        if (h != (ei_f16)_cvtss_sh(x, 0)) bad_hw++;
#endif
    }
    CHECK(bad == 0, "%d conversions not nearest-even", bad);
    CHECK(bad_hw == 0, "%d conversions differ from F16C", bad_hw);
}

static void test_type_table(void) {
    CHECK(strcmp(ei_type_name(0), "F32") == 0 && strcmp(ei_type_name(1), "F16") == 0, "F32/F16");
    CHECK(strcmp(ei_type_name(2), "Q4_0") == 0 && strcmp(ei_type_name(8), "Q8_0") == 0, "Q4_0/Q8_0");
    CHECK(strcmp(ei_type_name(12), "Q4_K") == 0 && strcmp(ei_type_name(14), "Q6_K") == 0, "K quants");
    CHECK(strcmp(ei_type_name(16), "IQ2_XXS") == 0 && strcmp(ei_type_name(30), "BF16") == 0, "IQ2_XXS/BF16");
    CHECK(strcmp(ei_type_name(4), "?") == 0 && strcmp(ei_type_name(1000), "?") == 0, "unknown ids");
    CHECK(ei_type_supported(0) && ei_type_supported(1) && ei_type_supported(2) && ei_type_supported(8), "supported");
    CHECK(!ei_type_supported(3) && !ei_type_supported(12) && !ei_type_supported(30), "refused");
    CHECK(ei_row_size(EI_TYPE_F32, 10) == 40 && ei_row_size(EI_TYPE_F16, 10) == 20, "float rows");
    CHECK(ei_row_size(EI_TYPE_Q8_0, 64) == 68 && ei_row_size(EI_TYPE_Q4_0, 64) == 36, "quant rows");
    CHECK(ei_row_size(EI_TYPE_Q8_0, 33) == 0 && ei_row_size(EI_TYPE_Q4_0, 16) == 0, "partial block -> 0");
    CHECK(ei_row_size(EI_TYPE_F32, -1) == 0 && ei_row_size(12, 256) == 0, "bad n / unsupported -> 0");
}

/* Q8_0 with absmax 127 (scale exactly 1): quants are roundf(x), ties away from zero, as ggml. */
static void test_q8_0_hand_block(void) {
    float x[64] = {0};
    const float in[] = {127.0f, -127.0f, 0.5f, -0.5f, 1.5f, 2.49f, -2.5f, 0.49f, 100.7f, -3.0f};
    const int8_t want[] = {127, -127, 1, -1, 2, 2, -3, 0, 101, -3};
    memcpy(x, in, sizeof in);
    /* second block: absmax 63.5 -> scale 0.5, x / 0.5 = 2x */
    x[32] = 63.5f;
    x[33] = 0.25f;  /* 0.5 -> 1 */
    x[34] = -0.75f; /* -1.5 -> -2 */
    x[35] = 10.0f;  /* 20 */
    block_q8_0 y[2];
    ei_quantize_row_q8_0_ref(x, y, 64);
    CHECK(y[0].d == 0x3c00, "scale 1.0 -> 0x3c00, got 0x%04x", y[0].d);
    for (int j = 0; j < 10; j++) CHECK(y[0].qs[j] == want[j], "q[%d] = %d, want %d", j, y[0].qs[j], want[j]);
    for (int j = 10; j < 32; j++) CHECK(y[0].qs[j] == 0, "zero q[%d]", j);
    CHECK(y[1].d == 0x3800, "scale 0.5 -> 0x3800, got 0x%04x", y[1].d);
    CHECK(y[1].qs[0] == 127 && y[1].qs[1] == 1 && y[1].qs[2] == -2 && y[1].qs[3] == 20 && y[1].qs[4] == 0,
          "block 2: %d %d %d %d", y[1].qs[0], y[1].qs[1], y[1].qs[2], y[1].qs[3]);
    float zero[32] = {0};
    ei_quantize_row_q8_0_ref(zero, y, 32);
    CHECK(y[0].d == 0 && y[0].qs[5] == 0, "all-zero block");
    float back[64];
    ei_quantize_row_q8_0_ref(x, y, 64);
    ei_dequantize_row(EI_TYPE_Q8_0, y, back, 64);
    CHECK(back[0] == 127.0f && back[2] == 1.0f && back[6] == -3.0f && back[34] == -1.0f, "dequantized");
}

/* Q4_0: scale = (value of largest magnitude) / -8; q = min(15, trunc(x / scale + 8.5)). */
static void test_q4_0_hand_block(void) {
    float x[64] = {0};
    /* block 1: max magnitude is -8 -> scale 1, id 1 */
    const float in[] = {-8.0f, 7.0f, 7.6f, 0.0f, 0.49f, 0.5f, -0.5f, -0.51f, 3.2f, -7.99f};
    const int want[] = {0, 15, 15, 8, 8, 9, 8, 7, 11, 0};
    memcpy(x, in, sizeof in);
    x[16] = 1.0f; /* high nibble of byte 0: 9 */
    x[17] = -2.0f; /* 6 */
    /* block 2: max magnitude is +8 -> scale -1, id -1: q = trunc(8.5 - x) */
    x[32] = 8.0f;   /* 0 */
    x[33] = -7.0f;  /* 15 */
    x[34] = -8.0f;  /* 16.5 -> clamp 15 */
    x[35] = 2.5f;   /* 6 */
    block_q4_0 y[2];
    ei_quantize_row_q4_0_ref(x, y, 64);
    CHECK(y[0].d == 0x3c00, "scale 1 -> 0x3c00, got 0x%04x", y[0].d);
    CHECK(y[1].d == 0xbc00, "scale -1 -> 0xbc00, got 0x%04x", y[1].d);
    for (int j = 0; j < 10; j++) {
        int lo = y[0].qs[j] & 15;
        CHECK(lo == want[j], "q[%d] = %d, want %d", j, lo, want[j]);
    }
    CHECK((y[0].qs[0] >> 4) == 9 && (y[0].qs[1] >> 4) == 6, "high nibbles %d %d", y[0].qs[0] >> 4, y[0].qs[1] >> 4);
    CHECK((y[0].qs[2] >> 4) == 8, "zero -> 8");
    CHECK((y[1].qs[0] & 15) == 0 && (y[1].qs[1] & 15) == 15 && (y[1].qs[2] & 15) == 15 && (y[1].qs[3] & 15) == 6,
          "block 2: %d %d %d %d", y[1].qs[0] & 15, y[1].qs[1] & 15, y[1].qs[2] & 15, y[1].qs[3] & 15);
    float back[64];
    ei_dequantize_row(EI_TYPE_Q4_0, y, back, 64);
    CHECK(back[0] == -8.0f && back[1] == 7.0f && back[3] == 0.0f && back[16] == 1.0f, "dequantized block 1");
    CHECK(back[32] == 8.0f && back[33] == -7.0f && back[34] == -7.0f, "dequantized block 2");
}

static void test_quant_error_bounds(void) {
    enum { N = 32 * 64 };
    static float x[N], back[N];
    static block_q8_0 q8[N / 32];
    static block_q4_0 q4[N / 32];
    for (int i = 0; i < N; i++) x[i] = rndf(-1, 1) * ldexpf(1, (int)(i / 32 % 20) - 6);
    ei_quantize_row_q8_0_ref(x, q8, N);
    ei_dequantize_row(EI_TYPE_Q8_0, q8, back, N);
    int bad8 = 0, bad4 = 0;
    for (int b = 0; b < N / 32; b++) {
        float amax = 0;
        for (int j = 0; j < 32; j++) amax = fmaxf(amax, fabsf(x[b * 32 + j]));
        for (int j = 0; j < 32; j++)
            if (fabsf(x[b * 32 + j] - back[b * 32 + j]) > 0.51f * amax / 127 + amax * 2e-3f) bad8++;
    }
    ei_quantize_row_q4_0_ref(x, q4, N);
    ei_dequantize_row(EI_TYPE_Q4_0, q4, back, N);
    for (int b = 0; b < N / 32; b++) {
        float amax = 0;
        for (int j = 0; j < 32; j++) amax = fmaxf(amax, fabsf(x[b * 32 + j]));
        for (int j = 0; j < 32; j++)
            if (fabsf(x[b * 32 + j] - back[b * 32 + j]) > 1.01f * amax / 8) bad4++;
    }
    CHECK(bad8 == 0, "%d Q8_0 values beyond half a step", bad8);
    CHECK(bad4 == 0, "%d Q4_0 values beyond one step", bad4);
    /* and the error is not trivially zero/huge: RMS relative error in the expected range */
    double e2 = 0, s2 = 0;
    for (int i = 0; i < N; i++) {
        e2 += (double)(x[i] - back[i]) * (x[i] - back[i]);
        s2 += (double)x[i] * x[i];
    }
    CHECK(sqrt(e2 / s2) > 0.01 && sqrt(e2 / s2) < 0.2, "Q4_0 relative RMS error %g", sqrt(e2 / s2));
}

static void test_dequantize_float_types(void) {
    float x[5] = {1.0f, -2.5f, 65504.0f, 1e-7f, -0.0f}, y[5];
    ei_f16 h[5];
    for (int i = 0; i < 5; i++) h[i] = ei_f32_to_f16(x[i]);
    ei_dequantize_row(EI_TYPE_F16, h, y, 5);
    CHECK(y[0] == 1.0f && y[1] == -2.5f && y[2] == 65504.0f && signbit(y[4]), "f16 row");
    CHECK(fabsf(y[3] - 1e-7f) < 3e-8f, "f16 subnormal %g", y[3]);
    ei_dequantize_row(EI_TYPE_F32, x, y, 5);
    CHECK(memcmp(x, y, sizeof x) == 0, "f32 row copies");
    CHECK(fbits(y[4]) == 0x80000000u, "-0 copied");
}

int main(void) {
    RUN(test_f16_to_f32_all);
    RUN(test_f16_roundtrip_all);
    RUN(test_f16_special);
    RUN(test_f16_rounding_random);
    RUN(test_type_table);
    RUN(test_q8_0_hand_block);
    RUN(test_q4_0_hand_block);
    RUN(test_quant_error_bounds);
    RUN(test_dequantize_float_types);
    return TEST_SUMMARY();
}
