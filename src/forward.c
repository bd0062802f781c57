/* forward.c — the transformer forward pass over a chunk of tokens: embeddings, per layer RMSNorm -> QKV -> RoPE ->
 * attention (policy-parameterised, attention.c) -> output projection -> RMSNorm -> SwiGLU FFN, final norm, logits. */
#include <math.h>
#include <string.h>

#include "error.h"
#include "kernels.h"
#include "quant.h"
#include "session.h"

/* ------------------------------------------------------------------ small ops */

/* out = x / rms(x) * w, row by row. */
static void rmsnorm(float *out, const float *x, const float *w, int32_t dim, int32_t n, float eps) {
    for (int32_t r = 0; r < n; r++) {
        const float *xr = x + (size_t)r * dim;
        float *o = out + (size_t)r * dim;
        double ss = 0;
        for (int32_t i = 0; i < dim; i++) ss += (double)xr[i] * xr[i];
        const float inv = 1.0f / sqrtf((float)(ss / dim) + eps);
        for (int32_t i = 0; i < dim; i++) o[i] = xr[i] * inv * w[i];
    }
}

/* cos/sin table for positions pos0..pos0+n-1 from the session's frequencies. Angles are computed in double: at
 * position 1e6 an fp32 product is off by ~0.06 rad. */
static void rope_table(float *cs, int64_t pos0, int32_t n, int32_t rope_dim, const double *freq) {
    for (int32_t r = 0; r < n; r++)
        for (int32_t i = 0; i < rope_dim / 2; i++) {
            double a = (double)(pos0 + r) * freq[i];
            cs[(size_t)r * rope_dim + 2 * i] = (float)cos(a);
            cs[(size_t)r * rope_dim + 2 * i + 1] = (float)sin(a);
        }
}

/* Rotates adjacent pairs (x[2i], x[2i+1]) of each head (llama.cpp's "normal" RoPE) for n rows of n_heads heads. */
static void rope_apply(float *x, const float *cs, int32_t n, int32_t n_heads, int32_t hd, int32_t rope_dim) {
    for (int32_t r = 0; r < n; r++)
        for (int32_t h = 0; h < n_heads; h++) {
            float *v = x + ((size_t)r * n_heads + h) * hd;
            const float *c = cs + (size_t)r * rope_dim;
            for (int32_t i = 0; i < rope_dim; i += 2) {
                const float x0 = v[i], x1 = v[i + 1], co = c[i], si = c[i + 1];
                v[i] = x0 * co - x1 * si;
                v[i + 1] = x0 * si + x1 * co;
            }
        }
}

static void matmul(ei_session *s, const ei_weight *w, const float *x, int32_t n, float *y) {
    ei_matmul(s->model->tp, w->type, w->data, w->n_out, w->n_in, x, n, y, s->mm_scratch);
}

/* ------------------------------------------------------------------ forward */

int ei_forward_chunk(ei_session *s, const int32_t *ids, int32_t n, float *all_logits) {
    const ei_model *m = s->model;
    const ei_hparams *hp = &m->hp;
    const int32_t dim = hp->dim, hd = hp->head_dim, q_dim = hp->n_head * hd;
    const int64_t pos0 = s->n_past;
    if (n <= 0 || n > EI_CHUNK || ei_attn_max_run(s, pos0, n) != n)
        return ei_set_error(EI_ERR_INTERNAL, "forward: chunk of %d tokens at %lld", n, (long long)pos0);
    ei_attn_evict(s, pos0);

    const size_t emb_row = ei_row_size(m->tok_embd.type, dim);
    for (int32_t i = 0; i < n; i++)
        ei_dequantize_row(m->tok_embd.type, (const uint8_t *)m->tok_embd.data + (size_t)ids[i] * emb_row,
                          s->x + (size_t)i * dim, dim);
    rope_table(s->rope_cs, pos0, n, hp->rope_dim, s->rope_freq);
    /* Cache-slot rotation for sink keys (window policies); equals the above until something is evicted. */
    for (int32_t i = 0; i < n && s->n_seg_window > 0; i++)
        rope_table(s->rope_cs_sink + (size_t)i * hp->rope_dim, ei_attn_sink_pos(s, pos0 + i), 1, hp->rope_dim,
                   s->rope_freq);

    for (int l = 0; l < hp->n_layer; l++) {
        const ei_layer *L = &m->layers[l];
        rmsnorm(s->xn, s->x, L->attn_norm, dim, n, hp->rms_eps);
        matmul(s, &L->wq, s->xn, n, s->q);
        matmul(s, &L->wk, s->xn, n, s->k);
        matmul(s, &L->wv, s->xn, n, s->v);
        memcpy(s->q0, s->q, sizeof(float) * (size_t)n * q_dim);
        rope_apply(s->q, s->rope_cs, n, hp->n_head, hd, hp->rope_dim);
        rope_apply(s->k, s->rope_cs, n, hp->n_head_kv, hd, hp->rope_dim);
        ei_attn_layer(s, l, s->xn, s->q, s->k, s->q0, s->v, n, pos0, s->att);
        matmul(s, &L->wo, s->att, n, s->xn);
        for (size_t i = 0; i < (size_t)n * dim; i++) s->x[i] += s->xn[i];

        rmsnorm(s->xn, s->x, L->ffn_norm, dim, n, hp->rms_eps);
        matmul(s, &L->w_gate, s->xn, n, s->ffn_a);
        matmul(s, &L->w_up, s->xn, n, s->ffn_b);
        for (size_t i = 0; i < (size_t)n * hp->ffn_dim; i++) {
            const float g = s->ffn_a[i];
            s->ffn_a[i] = g / (1.0f + expf(-g)) * s->ffn_b[i];
        }
        matmul(s, &L->w_down, s->ffn_a, n, s->xn);
        for (size_t i = 0; i < (size_t)n * dim; i++) s->x[i] += s->xn[i];
    }

    /* Logits: every row when asked, else only the last (the output matrix is the biggest one). */
    if (all_logits) {
        rmsnorm(s->xn, s->x, m->output_norm, dim, n, hp->rms_eps);
        matmul(s, &m->output, s->xn, n, all_logits);
        memcpy(s->logits, all_logits + (size_t)(n - 1) * hp->n_vocab, sizeof(float) * hp->n_vocab);
    } else {
        rmsnorm(s->xn, s->x + (size_t)(n - 1) * dim, m->output_norm, dim, 1, hp->rms_eps);
        matmul(s, &m->output, s->xn, 1, s->logits);
    }
    s->n_past += n;
    s->has_logits = 1;
    return 0;
}
