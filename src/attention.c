/* attention.c — the one attention path. A policy decides (1) where a new token's K/V go in the cache and (2) which
 * cache spans each query sees; the softmax-weighted sum over those spans is shared by every policy, so every policy's
 * proximal/distant parts are normalised together in one softmax.
 *
 * Implemented policies: full. streaming / edgeinfinite / pod plug in here (slot mapping + spans + memory term). */
#include <math.h>
#include <string.h>

#include "error.h"
#include "kernels.h"
#include "session.h"
#include "threadpool.h"

#define MAX_SPANS 4

/* ------------------------------------------------------------------ policy: slots and spans */

int32_t ei_attn_cache_slots(const ei_model *m, const ei_session_params *p) {
    int32_t n_ctx = p->n_ctx > 0 ? p->n_ctx : m->hp.n_ctx_train;
    return n_ctx;
}

int ei_attn_reserve(ei_session *s, int32_t n) {
    if (s->n_past + n > s->kv.cap)
        return ei_set_error(EI_ERR_CONTEXT_FULL,
                            "context full: %lld tokens held + %d new > %d slots of the '%s' policy (use a longer "
                            "--ctx, or the streaming/edgeinfinite policy for unbounded input)",
                            (long long)s->n_past, n, s->kv.cap, ei_policy_name(s->policy));
    return 0;
}

int64_t ei_attn_kv_tokens(const ei_session *s) { return s->n_past < s->kv.cap ? s->n_past : s->kv.cap; }

/* Slot of the token at absolute position pos. */
static int32_t slot_of(const ei_session *s, int64_t pos) { return (int32_t)pos; }

/* Spans visible to the query at absolute position pos (causal: itself included). Returns the span count. */
static int spans_for(const ei_session *s, int64_t pos, ei_kv_span *spans) {
    spans[0].start = 0;
    spans[0].n = (int32_t)pos + 1;
    return 1;
}

/* ------------------------------------------------------------------ the shared softmax-attention core */

typedef struct attn_job {
    ei_session *s;
    int l;
    const float *q;
    int32_t n;
    int64_t pos0;
    float *out;
} attn_job;

/* One query head against the given spans: scores, one softmax over all of them, weighted sum of values. */
static void attend_head(const ei_kernel_table *K, const float *q, const float *kc, const float *vc, int32_t kv_dim,
                        int32_t hd, const ei_kv_span *spans, int n_spans, float *scores, float *out) {
    const float scale = 1.0f / sqrtf((float)hd);
    float mx = -INFINITY;
    int32_t t = 0;
    for (int sp = 0; sp < n_spans; sp++)
        for (int32_t j = 0; j < spans[sp].n; j++, t++) {
            float sc = K->dot_f32(hd, q, kc + (size_t)(spans[sp].start + j) * kv_dim) * scale;
            scores[t] = sc;
            if (sc > mx) mx = sc;
        }
    float sum = 0;
    for (int32_t i = 0; i < t; i++) {
        scores[i] = expf(scores[i] - mx);
        sum += scores[i];
    }
    const float inv = 1.0f / sum;
    memset(out, 0, sizeof(float) * (size_t)hd);
    t = 0;
    for (int sp = 0; sp < n_spans; sp++)
        for (int32_t j = 0; j < spans[sp].n; j++, t++)
            K->axpy_f32(hd, scores[t] * inv, vc + (size_t)(spans[sp].start + j) * kv_dim, out);
}

static void attn_task(void *ctx, int ith, int nth) {
    attn_job *job = ctx;
    ei_session *s = job->s;
    const ei_hparams *hp = &s->model->hp;
    const ei_kernel_table *K = ei_kernels();
    const int32_t hd = hp->head_dim, kv_dim = s->kv.kv_dim, group = hp->n_head / hp->n_head_kv;
    const size_t layer_off = (size_t)job->l * s->kv.cap * kv_dim;
    float *scores = s->scores + (size_t)ith * s->kv.cap;
    const int64_t total = (int64_t)job->n * hp->n_head;
    for (int64_t w = ith; w < total; w += nth) {
        const int32_t i = (int32_t)(w / hp->n_head), h = (int32_t)(w % hp->n_head), kvh = h / group;
        ei_kv_span spans[MAX_SPANS];
        int ns = spans_for(s, job->pos0 + i, spans);
        attend_head(K, job->q + ((size_t)i * hp->n_head + h) * hd, s->kv.k + layer_off + (size_t)kvh * hd,
                    s->kv.v + layer_off + (size_t)kvh * hd, kv_dim, hd, spans, ns, scores,
                    job->out + ((size_t)i * hp->n_head + h) * hd);
    }
}

void ei_attn_layer(ei_session *s, int l, const float *q, const float *k, const float *v, int32_t n, int64_t pos0,
                   float *out) {
    const int32_t kv_dim = s->kv.kv_dim;
    const size_t layer_off = (size_t)l * s->kv.cap * kv_dim;
    for (int32_t i = 0; i < n; i++) {
        int32_t slot = slot_of(s, pos0 + i);
        memcpy(s->kv.k + layer_off + (size_t)slot * kv_dim, k + (size_t)i * kv_dim, sizeof(float) * kv_dim);
        memcpy(s->kv.v + layer_off + (size_t)slot * kv_dim, v + (size_t)i * kv_dim, sizeof(float) * kv_dim);
    }
    attn_job job = {s, l, q, n, pos0, out};
    ei_threadpool_run(s->model->tp, attn_task, &job);
}
