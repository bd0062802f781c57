/* matmul.c — Y = X · Wᵀ for F32 / F16 / Q8_0 / Q4_0 weights, split over output rows with the thread pool.
 *
 * Every output element is one kernel dot product computed by exactly one thread, so the result does not
 * depend on the thread count or on which thread took which rows. Rows are handed out in chunks through an
 * atomic counter (a descheduled worker on a busy machine or browser does not stall the others); inside a
 * chunk all tokens are processed against the chunk's weight rows so those stay in cache across tokens. */
#include "kernels.h"
#include "threadpool.h"

#include <math.h>
#include <stdatomic.h>
#include <stddef.h>

#define CHUNK_BYTES (64 * 1024) /* weight bytes per chunk when several tokens reuse them (fits in L2) */

typedef struct {
    const ei_kernel_table *k;
    uint32_t type;
    const char *w;   /* (n_out, w_row bytes) */
    size_t w_row;
    int64_t n_out, n_in, n_tok;
    const float *x;  /* (n_tok, n_in) */
    block_q8_0 *xq;  /* (n_tok, n_in / 32) quantized x, quantized types only */
    float *y;        /* (n_tok, n_out) */
    int64_t chunk;   /* rows per claim */
    atomic_llong next; /* next unclaimed row */
} mm_ctx;

size_t ei_matmul_scratch_size(uint32_t type, int64_t n_tok, int64_t n_in) {
    if (type != EI_TYPE_Q8_0 && type != EI_TYPE_Q4_0) return 0;
    return (size_t)(n_tok > 0 ? n_tok : 0) * ei_row_size(EI_TYPE_Q8_0, n_in);
}

/* Quantizes the x rows ith, ith + nth, ... into xq. */
static void quantize_task(void *p, int ith, int nth) {
    mm_ctx *c = p;
    const int64_t nbr = c->n_in / QK8_0;
    for (int64_t t = ith; t < c->n_tok; t += nth) c->k->quantize_row_q8_0(c->x + t * c->n_in, c->xq + t * nbr, c->n_in);
}

/* One output element: row o of W against token t. */
static inline float dot_row(const mm_ctx *c, int64_t o, int64_t t) {
    const void *wr = c->w + (size_t)o * c->w_row;
    const int64_t n = c->n_in;
    switch (c->type) {
    case EI_TYPE_F32: return c->k->dot_f32(n, wr, c->x + t * n);
    case EI_TYPE_F16: return c->k->dot_f16_f32(n, wr, c->x + t * n);
    case EI_TYPE_Q8_0: return c->k->dot_q8_0_q8_0(n, wr, c->xq + t * (n / QK8_0));
    default: return c->k->dot_q4_0_q8_0(n, wr, c->xq + t * (n / QK8_0));
    }
}

static void matmul_task(void *p, int ith, int nth) {
    (void)ith;
    (void)nth;
    mm_ctx *c = p;
    for (;;) {
        const int64_t o0 = atomic_fetch_add(&c->next, c->chunk);
        if (o0 >= c->n_out) break;
        const int64_t o1 = o0 + c->chunk < c->n_out ? o0 + c->chunk : c->n_out;
        for (int64_t t = 0; t < c->n_tok; t++) {
            float *yt = c->y + t * c->n_out;
            for (int64_t o = o0; o < o1; o++) yt[o] = dot_row(c, o, t);
        }
    }
}

/* Preconditions (checked when the model is loaded, not here): `type` supported, n_in % 32 == 0 for the
 * quantized types, scratch of ei_matmul_scratch_size() bytes for them. If they are violated anyway, Y is
 * filled with NaN so the error cannot go unnoticed. The caller owns every buffer; nothing is kept. */
void ei_matmul(struct ei_threadpool *tp, uint32_t type, const void *w, int64_t n_out, int64_t n_in, const float *x,
               int64_t n_tok, float *y, void *scratch) {
    if (n_out <= 0 || n_tok <= 0) return;
    const int quantized = type == EI_TYPE_Q8_0 || type == EI_TYPE_Q4_0;
    const size_t w_row = ei_row_size(type, n_in);
    if (!ei_type_supported(type) || w_row == 0 || (quantized && !scratch)) {
        for (int64_t i = 0; i < n_out * n_tok; i++) y[i] = NAN;
        return;
    }
    mm_ctx c = {
        .k = ei_kernels(), .type = type, .w = w, .w_row = w_row, .n_out = n_out, .n_in = n_in, .n_tok = n_tok,
        .x = x, .xq = scratch, .y = y,
    };
    atomic_init(&c.next, 0);
    const int nth = ei_threadpool_size(tp);

    if (quantized) {
        if (n_tok > 1 && nth > 1)
            ei_threadpool_run(tp, quantize_task, &c);
        else
            quantize_task(&c, 0, 1);
    }

    /* ~4 claims per thread for balance; with several tokens, also keep a chunk's weights cache-sized. */
    int64_t chunk = (n_out + 4 * (int64_t)nth - 1) / (4 * (int64_t)nth);
    if (n_tok > 1) {
        const int64_t cap = (int64_t)(CHUNK_BYTES / w_row);
        if (chunk > cap) chunk = cap;
    }
    c.chunk = chunk > 0 ? chunk : 1;

    if (nth > 1 && n_out > 1)
        ei_threadpool_run(tp, matmul_task, &c);
    else
        matmul_task(&c, 0, 1);
}
