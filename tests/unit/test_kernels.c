/* test_kernels.c — the ISA kernels against their scalar _ref twins (bit-identical by design), the _ref kernels
 * against double-precision sums, and ei_matmul against a naive dequantized matmul for every weight type and
 * for 1 and 3 threads. Runs natively and, built by mk/kernels.mk, as wasm under Node.
 *
 *   test_kernels          run the tests
 *   test_kernels --bench  also print ISA-vs-ref timings (information only, never asserted) */
#include "kernels.h"
#include "test.h"
#include "threadpool.h"

#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static uint64_t rng_state = 0x9e3779b97f4a7c15ull;
static uint32_t rnd32(void) {
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return (uint32_t)(rng_state >> 16);
}
static float rndf(float lo, float hi) { return lo + (hi - lo) * (float)(rnd32() & 0xffffff) / 16777216.0f; }

/* Random vector; scale picks the magnitude (large ones check that nothing saturates or reorders). */
static void fill(float *x, int64_t n, float scale) {
    for (int64_t i = 0; i < n; i++) x[i] = rndf(-1, 1) * scale;
}

/* Random q8 block with quants in [-127, 127] (what ggml's quantizer produces). */
static void fill_q8(block_q8_0 *b, int64_t nb) {
    for (int64_t i = 0; i < nb; i++) {
        b[i].d = ei_f32_to_f16(rndf(0.001f, 2.0f) * (rnd32() & 1 ? 1 : -1));
        for (int j = 0; j < 32; j++) b[i].qs[j] = (int8_t)((int)(rnd32() % 255) - 127);
    }
}

static void fill_q4(block_q4_0 *b, int64_t nb) {
    for (int64_t i = 0; i < nb; i++) {
        b[i].d = ei_f32_to_f16(rndf(0.001f, 2.0f) * (rnd32() & 1 ? 1 : -1));
        for (int j = 0; j < 16; j++) b[i].qs[j] = (uint8_t)rnd32();
    }
}

static int same_bits(float a, float b) { return memcmp(&a, &b, sizeof a) == 0; }

static const int64_t float_sizes[] = {1, 3, 7, 8, 9, 15, 16, 31, 32, 33, 63, 64, 65, 100, 255, 256, 1000, 4096, 4113};
static const int64_t quant_sizes[] = {32, 64, 96, 128, 160, 192, 224, 256, 288, 1024, 4096, 4096 + 96};
#define NF (int)(sizeof float_sizes / sizeof float_sizes[0])
#define NQ (int)(sizeof quant_sizes / sizeof quant_sizes[0])
#define MAXN 4200

static void test_isa_selected(void) {
    const ei_kernel_table *k = ei_kernels();
    printf("  kernels: %s\n", k->isa);
    CHECK(k && k->isa && k->dot_f32 && k->dot_f16_f32 && k->dot_q8_0_q8_0 && k->dot_q4_0_q8_0 &&
              k->quantize_row_q8_0 && k->axpy_f32,
          "complete table");
#if defined(__wasm_simd128__)
    CHECK(strcmp(k->isa, "wasm-simd128") == 0, "wasm SIMD build must use the SIMD table, got %s", k->isa);
#elif defined(__x86_64__) && defined(__AVX2__)
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma"))
        CHECK(strcmp(k->isa, "avx2") == 0, "AVX2 CPU must use the AVX2 table, got %s", k->isa);
#endif
    CHECK(strcmp(ei_kernels_ref.isa, "generic") == 0, "ref table name");
}

/* The reference itself against a double-precision dot: error within n * eps * sum |a b|. */
static void test_ref_dot_accuracy(void) {
    static float a[MAXN], b[MAXN];
    static ei_f16 h[MAXN];
    for (int s = 0; s < NF; s++) {
        const int64_t n = float_sizes[s];
        fill(a, n, 1.0f);
        fill(b, n, 3.0f);
        for (int64_t i = 0; i < n; i++) h[i] = ei_f32_to_f16(a[i]);
        double exact = 0, mag = 0, exact_h = 0;
        for (int64_t i = 0; i < n; i++) {
            exact += (double)a[i] * b[i];
            mag += fabs((double)a[i] * b[i]);
            exact_h += (double)ei_f16_to_f32(h[i]) * b[i];
        }
        const double tol = (double)(n + 2) * 6e-8 * mag + 1e-30;
        CHECK(fabs(ei_dot_f32_ref(n, a, b) - exact) <= tol, "f32 n=%lld: %g vs %g", (long long)n,
              ei_dot_f32_ref(n, a, b), exact);
        CHECK(fabs(ei_dot_f16_f32_ref(n, h, b) - exact_h) <= tol, "f16 n=%lld", (long long)n);
    }
}

/* The quant reference against the exact sum over blocks of d_a d_b sum(q_a q_b), in double. */
static void test_ref_quant_dot_accuracy(void) {
    static block_q8_0 a8[MAXN / 32], b8[MAXN / 32];
    static block_q4_0 a4[MAXN / 32];
    for (int s = 0; s < NQ; s++) {
        const int64_t n = quant_sizes[s], nb = n / 32;
        fill_q8(a8, nb);
        fill_q8(b8, nb);
        fill_q4(a4, nb);
        double e8 = 0, m8 = 0, e4 = 0, m4 = 0;
        for (int64_t i = 0; i < nb; i++) {
            long s8 = 0, s4 = 0;
            for (int j = 0; j < 32; j++) {
                s8 += (long)a8[i].qs[j] * b8[i].qs[j];
                int q4 = j < 16 ? (a4[i].qs[j] & 15) - 8 : (a4[i].qs[j - 16] >> 4) - 8;
                s4 += (long)q4 * b8[i].qs[j];
            }
            double d8 = (double)ei_f16_to_f32(a8[i].d) * ei_f16_to_f32(b8[i].d);
            double d4 = (double)ei_f16_to_f32(a4[i].d) * ei_f16_to_f32(b8[i].d);
            e8 += s8 * d8;
            m8 += fabs(s8 * d8);
            e4 += s4 * d4;
            m4 += fabs(s4 * d4);
        }
        CHECK(fabs(ei_dot_q8_0_q8_0_ref(n, a8, b8) - e8) <= (nb + 2) * 6e-8 * m8 + 1e-30, "q8 n=%lld", (long long)n);
        CHECK(fabs(ei_dot_q4_0_q8_0_ref(n, a4, b8) - e4) <= (nb + 2) * 6e-8 * m4 + 1e-30, "q4 n=%lld", (long long)n);
    }
}

static void test_dot_f32_vs_ref(void) {
    static float a[MAXN], b[MAXN];
    const ei_kernel_table *k = ei_kernels();
    const float scales[] = {1.0f, 1e-20f, 1e15f};
    int bad = 0;
    for (int sc = 0; sc < 3; sc++)
        for (int s = 0; s < NF; s++) {
            const int64_t n = float_sizes[s];
            fill(a, n, scales[sc]);
            fill(b, n, scales[sc] * 0.5f);
            float r = ei_dot_f32_ref(n, a, b), v = k->dot_f32(n, a, b);
            if (!same_bits(r, v)) {
                bad++;
                fprintf(stderr, "  dot_f32 n=%lld scale %g: %.9g vs ref %.9g\n", (long long)n, scales[sc], v, r);
            }
        }
    CHECK(bad == 0, "%d dot_f32 results differ from ref", bad);
}

static void test_dot_f16_vs_ref(void) {
    static float b[MAXN], t[MAXN];
    static ei_f16 a[MAXN];
    const ei_kernel_table *k = ei_kernels();
    int bad = 0;
    for (int sc = 0; sc < 3; sc++)
        for (int s = 0; s < NF; s++) {
            const int64_t n = float_sizes[s];
            fill(t, n, sc == 0 ? 1.0f : sc == 1 ? 60000.0f : 1e-6f); /* normal, near max, subnormal halves */
            for (int64_t i = 0; i < n; i++) a[i] = ei_f32_to_f16(t[i]);
            fill(b, n, sc == 1 ? 1e20f : 1.0f);
            float r = ei_dot_f16_f32_ref(n, a, b), v = k->dot_f16_f32(n, a, b);
            if (!same_bits(r, v)) {
                bad++;
                fprintf(stderr, "  dot_f16 n=%lld: %.9g vs ref %.9g\n", (long long)n, v, r);
            }
        }
    /* inf in the half operand propagates the same way */
    for (int64_t i = 0; i < 64; i++) a[i] = ei_f32_to_f16(1.0f);
    a[5] = 0x7c00;
    fill(b, 64, 1.0f);
    b[5] = 1.0f;
    CHECK(isinf(k->dot_f16_f32(64, a, b)) && isinf(ei_dot_f16_f32_ref(64, a, b)), "half inf propagates");
    CHECK(bad == 0, "%d dot_f16_f32 results differ from ref", bad);
}

static void test_dot_quant_vs_ref(void) {
    static block_q8_0 a8[MAXN / 32], b8[MAXN / 32];
    static block_q4_0 a4[MAXN / 32];
    const ei_kernel_table *k = ei_kernels();
    int bad8 = 0, bad4 = 0;
    for (int rep = 0; rep < 3; rep++)
        for (int s = 0; s < NQ; s++) {
            const int64_t n = quant_sizes[s], nb = n / 32;
            fill_q8(a8, nb);
            fill_q8(b8, nb);
            fill_q4(a4, nb);
            if (rep == 2) /* extreme quants: every product at its largest magnitude */
                for (int64_t i = 0; i < nb; i++)
                    for (int j = 0; j < 32; j++) {
                        a8[i].qs[j] = (j & 1) ? 127 : -127;
                        b8[i].qs[j] = (j & 2) ? -127 : 127;
                        if (j < 16) a4[i].qs[j] = (j & 1) ? 0x00 : 0xff;
                    }
            float r8 = ei_dot_q8_0_q8_0_ref(n, a8, b8), v8 = k->dot_q8_0_q8_0(n, a8, b8);
            float r4 = ei_dot_q4_0_q8_0_ref(n, a4, b8), v4 = k->dot_q4_0_q8_0(n, a4, b8);
            if (!same_bits(r8, v8)) {
                bad8++;
                fprintf(stderr, "  q8 n=%lld: %.9g vs ref %.9g\n", (long long)n, v8, r8);
            }
            if (!same_bits(r4, v4)) {
                bad4++;
                fprintf(stderr, "  q4 n=%lld: %.9g vs ref %.9g\n", (long long)n, v4, r4);
            }
        }
    CHECK(bad8 == 0, "%d dot_q8_0_q8_0 results differ from ref", bad8);
    CHECK(bad4 == 0, "%d dot_q4_0_q8_0 results differ from ref", bad4);
}

static void test_quantize_vs_ref(void) {
    enum { N = 32 * 70 };
    static float x[N];
    static block_q8_0 r[N / 32], v[N / 32];
    const ei_kernel_table *k = ei_kernels();
    for (int rep = 0; rep < 4; rep++) {
        for (int i = 0; i < N; i++) x[i] = rndf(-1, 1) * ldexpf(1, (int)(i / 32 % 40) - 20 + rep * 10);
        if (rep == 3) /* exact .5 ties: absmax 127 makes the scale 1, so x*id = x */
            for (int b = 0; b < N / 32; b++) {
                x[b * 32] = 127.0f;
                for (int j = 1; j < 32; j++) x[b * 32 + j] = (float)((int)(rnd32() % 253) - 126) + 0.5f;
            }
        for (int b = 0; b < 3; b++) x[5 * 32 + b] = 0.0f; /* partly zero block */
        for (int j = 0; j < 32; j++) x[7 * 32 + j] = 0.0f;  /* all-zero block */
        k->quantize_row_q8_0(x, v, N);
        ei_quantize_row_q8_0_ref(x, r, N);
        CHECK(memcmp(r, v, sizeof r) == 0, "quantize_row_q8_0 differs from ref (rep %d)", rep);
    }
}

static void test_axpy_vs_ref(void) {
    static float x[MAXN], y0[MAXN], y1[MAXN];
    const ei_kernel_table *k = ei_kernels();
    for (int s = 0; s < NF; s++) {
        const int64_t n = float_sizes[s];
        fill(x, n, 1e3f);
        fill(y0, n, 1.0f);
        memcpy(y1, y0, (size_t)n * sizeof *y0);
        const float a = rndf(-3, 3), y_first = y0[n - 1];
        ei_axpy_f32_ref(n, a, x, y0);
        k->axpy_f32(n, a, x, y1);
        CHECK(memcmp(y0, y1, (size_t)n * sizeof *y0) == 0, "axpy n=%lld differs from ref", (long long)n);
        CHECK(fabs(y0[n - 1] - ((double)y_first + (double)a * x[n - 1])) < 1e-3, "axpy n=%lld: wrong value",
              (long long)n);
    }
}

/* ------------------------------------------------------------------ matmul */

/* W (n_out, n_in) of `type` built from random floats; returns bytes, and wf = the dequantized weights. */
static void *make_weights(uint32_t type, int64_t n_out, int64_t n_in, float *wf) {
    float *src = malloc((size_t)(n_out * n_in) * sizeof *src);
    fill(src, n_out * n_in, 0.5f);
    const size_t row = ei_row_size(type, n_in);
    char *w = malloc(row * (size_t)n_out);
    for (int64_t o = 0; o < n_out; o++) {
        const float *s = src + o * n_in;
        void *d = w + (size_t)o * row;
        switch (type) {
        case EI_TYPE_F32: memcpy(d, s, row); break;
        case EI_TYPE_F16:
            for (int64_t i = 0; i < n_in; i++) ((ei_f16 *)d)[i] = ei_f32_to_f16(s[i]);
            break;
        case EI_TYPE_Q8_0: ei_quantize_row_q8_0_ref(s, d, n_in); break;
        case EI_TYPE_Q4_0: ei_quantize_row_q4_0_ref(s, d, n_in); break;
        }
        ei_dequantize_row(type, d, wf + o * n_in, n_in);
    }
    free(src);
    return w;
}

static void check_matmul(uint32_t type, int64_t n_out, int64_t n_in, int64_t n_tok, ei_threadpool *tp3) {
    float *wf = malloc((size_t)(n_out * n_in) * sizeof *wf);
    void *w = make_weights(type, n_out, n_in, wf);
    float *x = malloc((size_t)(n_tok * n_in) * sizeof *x), *xd = malloc((size_t)(n_tok * n_in) * sizeof *xd);
    float *y1 = malloc((size_t)(n_tok * n_out) * sizeof *y1), *y3 = malloc((size_t)(n_tok * n_out) * sizeof *y3);
    fill(x, n_tok * n_in, 2.0f);
    const int quant = type == EI_TYPE_Q8_0 || type == EI_TYPE_Q4_0;
    /* what the engine multiplies for quantized weights is x after a Q8_0 round trip */
    block_q8_0 *xq = malloc(ei_row_size(EI_TYPE_Q8_0, n_in) * (size_t)n_tok + 1);
    for (int64_t t = 0; t < n_tok; t++) {
        if (quant) {
            ei_quantize_row_q8_0_ref(x + t * n_in, xq + t * (n_in / 32), n_in);
            ei_dequantize_row(EI_TYPE_Q8_0, xq + t * (n_in / 32), xd + t * n_in, n_in);
        } else {
            memcpy(xd + t * n_in, x + t * n_in, (size_t)n_in * sizeof *x);
        }
    }
    const size_t ss = ei_matmul_scratch_size(type, n_tok, n_in);
    CHECK(quant ? ss >= (size_t)n_tok * (size_t)(n_in / 32) * sizeof(block_q8_0) : ss == 0, "scratch size %zu", ss);
    void *scratch = malloc(ss ? ss : 1);
    for (int64_t i = 0; i < n_tok * n_out; i++) y1[i] = y3[i] = -12345.0f;
    ei_matmul(NULL, type, w, n_out, n_in, x, n_tok, y1, scratch);
    ei_matmul(tp3, type, w, n_out, n_in, x, n_tok, y3, scratch);
    int bad_naive = 0, bad_dot = 0;
    const ei_kernel_table *k = ei_kernels();
    const size_t row = ei_row_size(type, n_in);
    for (int64_t t = 0; t < n_tok; t++)
        for (int64_t o = 0; o < n_out; o++) {
            double s = 0, m = 0;
            for (int64_t i = 0; i < n_in; i++) {
                s += (double)wf[o * n_in + i] * xd[t * n_in + i];
                m += fabs((double)wf[o * n_in + i] * xd[t * n_in + i]);
            }
            const float got = y1[t * n_out + o];
            if (!(fabs(got - s) <= (n_in + 2) * 6e-8 * m + 1e-30)) {
                if (bad_naive++ < 3)
                    fprintf(stderr, "  %s t=%lld o=%lld: %.9g vs naive %.9g\n", ei_type_name(type), (long long)t,
                            (long long)o, got, s);
            }
            const char *wr = (const char *)w + (size_t)o * row;
            float d;
            switch (type) {
            case EI_TYPE_F32: d = k->dot_f32(n_in, (const float *)wr, x + t * n_in); break;
            case EI_TYPE_F16: d = k->dot_f16_f32(n_in, (const ei_f16 *)wr, x + t * n_in); break;
            case EI_TYPE_Q8_0: d = k->dot_q8_0_q8_0(n_in, (const block_q8_0 *)wr, xq + t * (n_in / 32)); break;
            default: d = k->dot_q4_0_q8_0(n_in, (const block_q4_0 *)wr, xq + t * (n_in / 32)); break;
            }
            if (!same_bits(d, got)) bad_dot++;
        }
    CHECK(bad_naive == 0, "%s %lldx%lld n_tok=%lld: %d elements differ from the naive matmul", ei_type_name(type),
          (long long)n_out, (long long)n_in, (long long)n_tok, bad_naive);
    CHECK(bad_dot == 0, "%s: %d elements differ from the kernel dot", ei_type_name(type), bad_dot);
    CHECK(memcmp(y1, y3, (size_t)(n_tok * n_out) * sizeof *y1) == 0, "%s n_tok=%lld: 1 and %d threads differ",
          ei_type_name(type), (long long)n_tok, ei_threadpool_size(tp3));
    free(wf);
    free(w);
    free(x);
    free(xd);
    free(xq);
    free(y1);
    free(y3);
    free(scratch);
}

static void test_matmul_all_types(void) {
    ei_threadpool *tp3 = ei_threadpool_create(3);
    CHECK(tp3 != NULL, "pool");
    const uint32_t types[] = {EI_TYPE_F32, EI_TYPE_F16, EI_TYPE_Q8_0, EI_TYPE_Q4_0};
    for (int ti = 0; ti < 4; ti++) {
        check_matmul(types[ti], 37, 96, 1, tp3);
        check_matmul(types[ti], 37, 256, 3, tp3);
        check_matmul(types[ti], 200, 160, 7, tp3);
        check_matmul(types[ti], 1, 64, 2, tp3);
    }
    check_matmul(EI_TYPE_F32, 9, 45, 4, tp3); /* n_in not a block multiple is fine for float weights */
    ei_threadpool_free(tp3);
}

static void test_matmul_bad_input_is_loud(void) {
    float x[32] = {0}, y[2] = {0, 0};
    char w[64] = {0};
    ei_matmul(NULL, 12 /* Q4_K */, w, 2, 32, x, 1, y, w);
    CHECK(isnan(y[0]) && isnan(y[1]), "unsupported type fills NaN");
    y[0] = y[1] = 0;
    ei_matmul(NULL, EI_TYPE_Q8_0, w, 1, 32, x, 1, y, NULL);
    CHECK(isnan(y[0]), "missing scratch fills NaN");
}

/* ------------------------------------------------------------------ bench (information only) */

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static volatile float bench_sink;

/* Best of 3 passes: the first ones also warm caches and, in wasm, let the engine tier the code up. */
#define BENCH(label, reps, call_isa, call_ref)                                                     \
    do {                                                                                           \
        double best_ref = 1e30, best_isa = 1e30;                                                   \
        for (int pass_ = 0; pass_ < 3; pass_++) {                                                  \
        double t0 = now_s();                                                                       \
        for (int r_ = 0; r_ < (reps); r_++) bench_sink += (call_ref);                              \
        double t1 = now_s();                                                                       \
        for (int r_ = 0; r_ < (reps); r_++) bench_sink += (call_isa);                              \
        double t2 = now_s();                                                                       \
        if (t1 - t0 < best_ref) best_ref = t1 - t0;                                                \
        if (t2 - t1 < best_isa) best_isa = t2 - t1;                                                \
        }                                                                                          \
        printf("  bench %-16s ref %8.1f ns  %s %8.1f ns  speedup %5.2fx\n", label,                \
               1e9 * best_ref / (reps), k->isa, 1e9 * best_isa / (reps), best_ref / best_isa);     \
    } while (0)

static void bench(void) {
    enum { N = 4096 };
    static float a[N], b[N];
    static ei_f16 h[N];
    static block_q8_0 q8a[N / 32], q8b[N / 32];
    static block_q4_0 q4[N / 32];
    const ei_kernel_table *k = ei_kernels();
    fill(a, N, 1);
    fill(b, N, 1);
    for (int i = 0; i < N; i++) h[i] = ei_f32_to_f16(a[i]);
    fill_q8(q8a, N / 32);
    fill_q8(q8b, N / 32);
    fill_q4(q4, N / 32);
    printf("  bench: n = %d\n", N);
    BENCH("dot_f32", 20000, k->dot_f32(N, a, b), ei_dot_f32_ref(N, a, b));
    BENCH("dot_f16_f32", 20000, k->dot_f16_f32(N, h, b), ei_dot_f16_f32_ref(N, h, b));
    BENCH("dot_q8_0_q8_0", 20000, k->dot_q8_0_q8_0(N, q8a, q8b), ei_dot_q8_0_q8_0_ref(N, q8a, q8b));
    BENCH("dot_q4_0_q8_0", 20000, k->dot_q4_0_q8_0(N, q4, q8b), ei_dot_q4_0_q8_0_ref(N, q4, q8b));
    BENCH("quantize_q8_0", 5000, (k->quantize_row_q8_0(a, q8a, N), q8a[3].qs[1]),
          (ei_quantize_row_q8_0_ref(a, q8a, N), q8a[3].qs[1]));
    BENCH("axpy_f32", 20000, (k->axpy_f32(N, 1e-9f, a, b), b[7]), (ei_axpy_f32_ref(N, 1e-9f, a, b), b[7]));
}

int main(int argc, char **argv) {
    RUN(test_isa_selected);
    RUN(test_ref_dot_accuracy);
    RUN(test_ref_quant_dot_accuracy);
    RUN(test_dot_f32_vs_ref);
    RUN(test_dot_f16_vs_ref);
    RUN(test_dot_quant_vs_ref);
    RUN(test_quantize_vs_ref);
    RUN(test_axpy_vs_ref);
    RUN(test_matmul_all_types);
    RUN(test_matmul_bad_input_is_loud);
    if (argc > 1 && strcmp(argv[1], "--bench") == 0) bench();
    return TEST_SUMMARY();
}
