/* quant.h — ggml-compatible quantization blocks and fp16 conversion.
 * Block layouts are byte-identical to ggml's so GGUF tensors are used in place. */
#ifndef EI_QUANT_H
#define EI_QUANT_H

#include <stdint.h>
#include <stddef.h>

#define QK8_0 32
#define QK4_0 32

typedef uint16_t ei_f16;

typedef struct {
    ei_f16 d;          /* scale */
    int8_t qs[QK8_0];  /* quants */
} block_q8_0;

typedef struct {
    ei_f16 d;               /* scale */
    uint8_t qs[QK4_0 / 2];  /* nibbles: low nibble = element j, high nibble = element j + 16 */
} block_q4_0;

_Static_assert(sizeof(block_q8_0) == 34, "block_q8_0 must be 34 bytes like ggml");
_Static_assert(sizeof(block_q4_0) == 18, "block_q4_0 must be 18 bytes like ggml");

/* GGML type ids (as stored in GGUF). */
enum ei_ggml_type {
    EI_TYPE_F32 = 0,
    EI_TYPE_F16 = 1,
    EI_TYPE_Q4_0 = 2,
    EI_TYPE_Q8_0 = 8,
};

/* IEEE half <-> float, exact (round-to-nearest-even on the way down). */
float ei_f16_to_f32(ei_f16 h);
ei_f16 ei_f32_to_f16(float f);

/* Name of a ggml type id ("Q4_K" for 12...), "?" if unknown. Knows the names of types we refuse. */
const char *ei_type_name(uint32_t type);
/* 1 if the engine can compute with this type. */
int ei_type_supported(uint32_t type);
/* Bytes of a row of n elements of a supported type, or 0 if n does not fit the block size. */
size_t ei_row_size(uint32_t type, int64_t n);

/* Reference (scalar) quantizers, same rounding as ggml's quantize_row_*_ref. n % 32 == 0. */
void ei_quantize_row_q8_0_ref(const float *x, block_q8_0 *y, int64_t n);
void ei_quantize_row_q4_0_ref(const float *x, block_q4_0 *y, int64_t n);
/* Row dequantizers into floats (supported types). */
void ei_dequantize_row(uint32_t type, const void *src, float *dst, int64_t n);

#endif
