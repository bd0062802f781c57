/* kernels.h — the compute kernels, dispatched per ISA.
 *
 * Every SIMD kernel has a scalar `_ref` twin (kernels_ref.c) and a test comparing them.
 * One file per ISA provides `ei_kernels_isa` (kernels_x86.c, kernels_wasm.c, kernels_generic.c);
 * exactly one of them is linked. Functions take n = element count (multiple of 32 for quantized). */
#ifndef EI_KERNELS_H
#define EI_KERNELS_H

#include "quant.h"

typedef struct ei_kernel_table {
    const char *isa;  /* "avx2", "wasm-simd128", "generic" */
    float (*dot_f32)(int64_t n, const float *a, const float *b);
    float (*dot_f16_f32)(int64_t n, const ei_f16 *a, const float *b);
    float (*dot_q8_0_q8_0)(int64_t n, const block_q8_0 *a, const block_q8_0 *b);
    float (*dot_q4_0_q8_0)(int64_t n, const block_q4_0 *a, const block_q8_0 *b);
    void (*quantize_row_q8_0)(const float *x, block_q8_0 *y, int64_t n);
    /* y[i] += a * x[i] */
    void (*axpy_f32)(int64_t n, float a, const float *x, float *y);
} ei_kernel_table;

/* Scalar reference kernels. */
float ei_dot_f32_ref(int64_t n, const float *a, const float *b);
float ei_dot_f16_f32_ref(int64_t n, const ei_f16 *a, const float *b);
float ei_dot_q8_0_q8_0_ref(int64_t n, const block_q8_0 *a, const block_q8_0 *b);
float ei_dot_q4_0_q8_0_ref(int64_t n, const block_q4_0 *a, const block_q8_0 *b);
void ei_axpy_f32_ref(int64_t n, float a, const float *x, float *y);
extern const ei_kernel_table ei_kernels_ref;

/* The table for the ISA this binary was built for (falls back to ref entries at run time where the CPU lacks
 * the instructions). */
const ei_kernel_table *ei_kernels(void);

/* Matrix multiply: Y (n_tok, n_out) = X (n_tok, n_in) · Wᵀ, W (n_out, n_in) row-major of ggml `type`.
 * X is f32; for quantized W it is quantized to Q8_0 on the fly (scratch from the caller, see
 * ei_matmul_scratch_size). Work is split over output rows with the thread pool (may be NULL). */
struct ei_threadpool;
size_t ei_matmul_scratch_size(uint32_t type, int64_t n_tok, int64_t n_in);
void ei_matmul(struct ei_threadpool *tp, uint32_t type, const void *w, int64_t n_out, int64_t n_in,
               const float *x, int64_t n_tok, float *y, void *scratch);

#endif
