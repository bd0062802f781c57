/* attention.c — the one attention path (docs/edgeinfinite.md is the exact contract). A policy decides
 *   (1) which cache slot a token's K/V occupy (ei_attn_slot; key_row for PoD rings),
 *   (2) which slot spans each query sees and with which query rotation (spans_for),
 *   (3) what happens to tokens leaving the cache (evict: dropped, or compressed into memory),
 * and the softmax over all visible spans (one softmax, so sink and window scores are normalised together) plus the
 * memory/gate blend are shared by every policy.
 *
 * Policies: full (all tokens), streaming (sink + window, evicted segments dropped), edgeinfinite (sink + window +
 * compressed memory read through the adapter's gate), pod (distant keys/scores shared within measured layer blocks,
 * docs/pod.md). */
#include <math.h>
#include <string.h>

#include "error.h"
#include "kernels.h"
#include "session.h"
#include "threadpool.h"

#define MAX_SPANS 6

static int is_window_policy(const ei_session *s) {
    return s->policy == EI_POLICY_STREAMING || s->policy == EI_POLICY_EDGEINFINITE ||
           s->policy == EI_POLICY_EDGEINFINITE_POD;
}
static int has_memory(const ei_session *s) {
    return s->policy == EI_POLICY_EDGEINFINITE || s->policy == EI_POLICY_EDGEINFINITE_POD;
}

/* ------------------------------------------------------------------ layout: slots, spans, eviction */

int32_t ei_attn_cache_slots(const ei_model *m, const ei_session_params *p) {
    if (p->policy == EI_POLICY_STREAMING || p->policy == EI_POLICY_EDGEINFINITE || p->policy == EI_POLICY_EDGEINFINITE_POD)
        return p->n_sink + p->window + p->seg;
    return p->n_ctx > 0 ? p->n_ctx : m->hp.n_ctx_train;
}

int ei_attn_reserve(ei_session *s, int32_t n) {
    if (is_window_policy(s)) return 0; /* constant memory: any length fits */
    if (s->n_past + n > s->kv.cap)
        return ei_set_error(EI_ERR_CONTEXT_FULL,
                            "context full: %lld tokens held + %d new > %d slots of the '%s' policy (use a longer "
                            "--ctx, or the streaming/edgeinfinite policy for unbounded input)",
                            (long long)s->n_past, n, s->kv.cap, ei_policy_name(s->policy));
    return 0;
}

/* Segment of a non-sink position, and its offset in the segment. */
static int64_t seg_of(const ei_session *s, int64_t p) { return (p - s->n_sink) / s->seg; }

/* Segments evicted once the token at p is in: those before seg_of(p) - W. */
static int64_t evicted_segments(const ei_session *s, int64_t p) {
    if (p < s->n_sink) return 0;
    int64_t e = seg_of(s, p) - s->n_seg_window;
    return e > 0 ? e : 0;
}

int64_t ei_attn_kv_tokens(const ei_session *s) {
    if (!is_window_policy(s)) return s->n_past < s->kv.cap ? s->n_past : s->kv.cap;
    if (s->n_past == 0) return 0;
    return s->n_past - evicted_segments(s, s->n_past - 1) * s->seg;
}

int64_t ei_attn_sink_pos(const ei_session *s, int64_t p) {
    if (!is_window_policy(s)) return p;
    /* slot = n_sink + (p - p_fw), p_fw = n_sink + evicted * seg */
    return p - evicted_segments(s, p) * s->seg;
}

int32_t ei_attn_slot(const ei_session *s, int64_t p) {
    if (!is_window_policy(s) || p < s->n_sink) return (int32_t)p;
    const int64_t j = seg_of(s, p), o = (p - s->n_sink) % s->seg;
    return s->n_sink + (int32_t)(j % (s->n_seg_window + 1)) * s->seg + (int32_t)o;
}

static int is_pod(const ei_session *s) { return s->pod.cfg != NULL; }

/* 1 if layer l keeps only proximal keys (a PoD non-anchor layer). */
static int is_ring_layer(const ei_session *s, int l) { return is_pod(s) && s->pod.cfg->anchor[l] != l; }

/* Key row of token t in layer l: its cache slot, except in a PoD non-anchor layer, which keeps the sinks at their slot
 * and recent keys in a ring (docs/pod.md: a distant key is never read again). */
static int32_t key_row(const ei_session *s, int l, int64_t t) {
    if (!is_ring_layer(s, l) || t < s->pod.n_sink) return ei_attn_slot(s, t);
    return s->pod.n_sink + (int32_t)((t - s->pod.n_sink) % (s->pod.ring - s->pod.n_sink));
}

int32_t ei_attn_max_run(const ei_session *s, int64_t p, int32_t want) {
    if (!is_window_policy(s) || p < s->n_sink) {
        if (is_window_policy(s) && p + want > s->n_sink) return (int32_t)(s->n_sink - p);
        return want;
    }
    const int64_t left = s->seg - (p - s->n_sink) % s->seg;
    return left < want ? (int32_t)left : want;
}

/* Appends a span, merging with the previous one when its keys and values continue it under the same query. */
static int push_span(ei_span *spans, int n, const float *q, const float *k, const float *v, int32_t len, int32_t kv_dim) {
    if (len <= 0) return n;
    if (n > 0 && spans[n - 1].q == q && spans[n - 1].k + (size_t)spans[n - 1].n * kv_dim == k &&
        spans[n - 1].v + (size_t)spans[n - 1].n * kv_dim == v) {
        spans[n - 1].n += len;
        return n;
    }
    spans[n] = (ei_span){q, k, v, len};
    return n + 1;
}

/* Tokens [t0, t1] with the keys of layer kl (rows by key_row; ring = use kl's proximal-key ring) and the values at
 * vb, under query q, in runs contiguous in both. */
static int push_range(const ei_session *s, int kl, ei_span *spans, int n, const float *q, const float *kb,
                      const float *vb, int64_t t0, int64_t t1) {
    const int32_t kv_dim = s->kv.kv_dim;
    while (t0 <= t1) {
        const int32_t krow = key_row(s, kl, t0), vrow = ei_attn_slot(s, t0);
        int64_t run = t1 - t0 + 1;
        if (is_window_policy(s) && t0 >= s->n_sink) {
            const int64_t left = s->seg - (t0 - s->n_sink) % s->seg; /* segments sit in a ring of slots */
            if (left < run) run = left;
        } else if (is_window_policy(s) && t1 >= s->n_sink) {
            run = s->n_sink - t0;
        }
        if (is_ring_layer(s, kl) && t0 >= s->pod.n_sink && krow + run > s->pod.ring) run = s->pod.ring - krow;
        n = push_span(spans, n, q, kb + (size_t)krow * kv_dim, vb + (size_t)vrow * kv_dim, (int32_t)run, kv_dim);
        t0 += run;
    }
    return n;
}

/* Spans visible to the query at absolute position p in layer l for KV head kvh (causal: itself included), in
 * increasing token order: sinks, then the cached window/context. q: the query rotated at p; q_sink: rotated at its
 * cache slot (window policies after an eviction, for sink keys); q_anchor: the block anchor's query (pod,
 * share=scores). PoD non-anchor layers score distant tokens on their anchor's keys (docs/pod.md). At most 6 spans. */
static int spans_for(const ei_session *s, int l, int64_t p, int32_t kvh, const float *q, const float *q_sink,
                     const float *q_anchor, ei_span *spans) {
    const int32_t kv_dim = s->kv.kv_dim, hd = s->model->hp.head_dim;
    const float *kb = s->kv.k_layer[l] + (size_t)kvh * hd;
    const float *vb = s->kv.v + (size_t)l * s->kv.cap * kv_dim + (size_t)kvh * hd;
    const int window = is_window_policy(s);
    const int32_t ns = window ? s->n_sink : is_pod(s) ? s->pod.n_sink : 0;
    if (p < ns) return push_range(s, l, spans, 0, q, kb, vb, 0, p);
    const int64_t first = window ? evicted_segments(s, p) : 0;
    /* Before any eviction the query's slot equals its position: same rotation for sink keys, one merged span. */
    int n = push_range(s, l, spans, 0, first > 0 ? q_sink : q, kb, vb, 0, ns - 1);
    int64_t t0 = ns + first * (window ? s->seg : 0); /* oldest cached non-sink token */
    if (is_ring_layer(s, l)) {
        const int64_t last_distant = p - s->pod.n_recent;
        if (last_distant >= t0) {
            const int a = s->pod.cfg->anchor[l];
            const float *ka = s->kv.k_layer[a] + (size_t)kvh * hd; /* the anchor keeps every cached key */
            n = push_range(s, a, spans, n, s->pod.share == EI_POD_SHARE_SCORES ? q_anchor : q, ka, vb, t0, last_distant);
            t0 = last_distant + 1;
        }
    }
    return push_range(s, l, spans, n, q, kb, vb, t0, p);
}

/* ------------------------------------------------------------------ compressed memory (edgeinfinite) */

static float sigma(float u) { return u > 0 ? u + 1.0f : expf(u); } /* ELU(u) + 1 */

/* x (rank) = A (rank, dim) · xn */
static void lowrank_down(const ei_kernel_table *K, const float *A, int32_t rank, int32_t dim, const float *xn, float *u) {
    for (int32_t r = 0; r < rank; r++) u[r] = K->dot_f32(dim, A + (size_t)r * dim, xn);
}

/* out[o] += Σ_r B[o][r] u[r] for o in [o0, o0+n) */
static void lowrank_up_add(const float *B, int32_t rank, const float *u, int32_t o0, int32_t n, float *out) {
    for (int32_t o = 0; o < n; o++) {
        const float *b = B + (size_t)(o0 + o) * rank;
        float acc = 0;
        for (int32_t r = 0; r < rank; r++) acc += b[r] * u[r];
        out[o] += acc;
    }
}

/* Folds the cached segment `e` of layer l into memory (delta rule), before its slots are reused. Keys are stored
 * rotated at their absolute position: rotating back gives k⁰ (docs/edgeinfinite.md: memory is position-free). */
static void compress_segment(ei_session *s, int l, int64_t e) {
    const ei_hparams *hp = &s->model->hp;
    const ei_adapter *ad = s->adapter;
    const int32_t hd = hp->head_dim, kv_dim = s->kv.kv_dim, seg = s->seg, rank = ad->rank, rd = hp->rope_dim;
    const float eps = ad->eps;
    const ei_adapter_layer *AL = &ad->layers[l];
    const size_t layer_off = (size_t)l * s->kv.cap * kv_dim;
    float *sk = s->mem.scratch;                     /* (seg, hd) σ(k_mem) for one head */
    float *vd = sk + (size_t)seg * hd;              /* (seg, hd) v_mem - retrieved */
    float *kt = vd + (size_t)seg * hd;              /* (kv_dim) k_mem of one token */
    float *vt = kt + kv_dim;                        /* (kv_dim) v_mem of one token */
    for (int32_t g = 0; g < hp->n_head_kv; g++) {
        float *M = s->mem.M + ((size_t)l * hp->n_head_kv + g) * hd * hd;
        float *z = s->mem.z + ((size_t)l * hp->n_head_kv + g) * hd;
        for (int32_t t = 0; t < seg; t++) {
            const int64_t p = s->n_sink + e * seg + t;
            const int32_t slot = ei_attn_slot(s, p);
            /* a PoD non-anchor layer no longer holds evicted keys: its memory keys start from its anchor's k⁰ */
            const int kl = is_ring_layer(s, l) ? s->pod.cfg->anchor[l] : l;
            const float *kr = s->kv.k_layer[kl] + (size_t)slot * kv_dim + (size_t)g * hd;
            const float *vr = s->kv.v + layer_off + (size_t)slot * kv_dim + (size_t)g * hd;
            memcpy(kt, kr, sizeof(float) * hd);
            memcpy(vt, vr, sizeof(float) * hd);
            for (int32_t i = 0; i < rd / 2; i++) { /* inverse RoPE at p (angles in double) */
                const double a = (double)p * s->rope_freq[i];
                const float co = (float)cos(a), si = (float)sin(a), x0 = kt[2 * i], x1 = kt[2 * i + 1];
                kt[2 * i] = x0 * co + x1 * si;
                kt[2 * i + 1] = -x0 * si + x1 * co;
            }
            if (rank) {
                lowrank_up_add(AL->mk_b, rank, s->mem.code_k + ((size_t)l * s->kv.cap + slot) * rank, g * hd, hd, kt);
                lowrank_up_add(AL->mv_b, rank, s->mem.code_v + ((size_t)l * s->kv.cap + slot) * rank, g * hd, hd, vt);
            }
            float *skt = sk + (size_t)t * hd, *vdt = vd + (size_t)t * hd;
            float den = eps;
            for (int32_t a = 0; a < hd; a++) {
                skt[a] = sigma(kt[a]);
                den += skt[a] * z[a];
            }
            /* retrieved = σk·M / (σk·z + ε), from memory before this segment's update */
            for (int32_t c = 0; c < hd; c++) vdt[c] = 0;
            for (int32_t a = 0; a < hd; a++) {
                const float w = skt[a];
                const float *row = M + (size_t)a * hd;
                for (int32_t c = 0; c < hd; c++) vdt[c] += w * row[c];
            }
            for (int32_t c = 0; c < hd; c++) vdt[c] = vt[c] - vdt[c] / den;
        }
        for (int32_t t = 0; t < seg; t++) {
            const float *skt = sk + (size_t)t * hd, *vdt = vd + (size_t)t * hd;
            for (int32_t a = 0; a < hd; a++) {
                float *row = M + (size_t)a * hd;
                const float w = skt[a];
                for (int32_t c = 0; c < hd; c++) row[c] += w * vdt[c];
                z[a] += w;
            }
        }
    }
    s->mem.segments[l]++;
}

/* ------------------------------------------------------------------ the shared softmax-attention core */

typedef struct attn_job {
    ei_session *s;
    int l;
    const float *xn, *q, *q0;
    int32_t i0, n;   /* tokens [i0, i0+n) of the chunk */
    int64_t pos0;    /* absolute position of chunk token 0 */
    float *out;
} attn_job;

/* One query head against the given spans: scores (each span with its own query), one softmax over all of them,
 * weighted sum of values. */
static void attend_head(const ei_kernel_table *K, int32_t kv_dim, int32_t hd, const ei_span *spans, int n_spans,
                        float *scores, float *out) {
    const float scale = 1.0f / sqrtf((float)hd);
    float mx = -INFINITY;
    int32_t t = 0;
    for (int sp = 0; sp < n_spans; sp++)
        for (int32_t j = 0; j < spans[sp].n; j++, t++) {
            float sc = K->dot_f32(hd, spans[sp].q, spans[sp].k + (size_t)j * kv_dim) * scale;
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
            K->axpy_f32(hd, scores[t] * inv, spans[sp].v + (size_t)j * kv_dim, out);
}

/* Memory read + gate for head h of token i: out = g·A_mem + (1-g)·out. */
static void blend_memory(ei_session *s, int l, int32_t h, const float *xn, const float *q0_tok, float *scratch,
                         float *out) {
    const ei_hparams *hp = &s->model->hp;
    const ei_adapter *ad = s->adapter;
    const ei_adapter_layer *AL = &ad->layers[l];
    const ei_kernel_table *K = ei_kernels();
    const int32_t hd = hp->head_dim, g_kv = h / (hp->n_head / hp->n_head_kv), rank = ad->rank;
    float *sq = scratch, *am = scratch + hd, *u = am + hd;
    memcpy(sq, q0_tok + (size_t)h * hd, sizeof(float) * hd);
    if (rank) {
        lowrank_down(K, AL->mq_a, rank, hp->dim, xn, u);
        lowrank_up_add(AL->mq_b, rank, u, h * hd, hd, sq);
    }
    const float *M = s->mem.M + ((size_t)l * hp->n_head_kv + g_kv) * hd * hd;
    const float *z = s->mem.z + ((size_t)l * hp->n_head_kv + g_kv) * hd;
    float den = ad->eps;
    for (int32_t a = 0; a < hd; a++) {
        sq[a] = sigma(sq[a]);
        den += sq[a] * z[a];
    }
    memset(am, 0, sizeof(float) * hd);
    for (int32_t a = 0; a < hd; a++) K->axpy_f32(hd, sq[a], M + (size_t)a * hd, am);
    const float gate = 1.0f / (1.0f + expf(-(K->dot_f32(hp->dim, AL->gate_w + (size_t)h * hp->dim, xn) + AL->gate_b[h])));
    for (int32_t c = 0; c < hd; c++) out[c] = gate * (am[c] / den) + (1.0f - gate) * out[c];
}

static void attn_task(void *ctx, int ith, int nth) {
    attn_job *job = ctx;
    ei_session *s = job->s;
    const ei_hparams *hp = &s->model->hp;
    const ei_kernel_table *K = ei_kernels();
    const int32_t hd = hp->head_dim, rd = hp->rope_dim, kv_dim = s->kv.kv_dim, group = hp->n_head / hp->n_head_kv;
    float *scratch = s->task_scratch + (size_t)ith * s->task_scratch_floats;
    float *scores = scratch, *q_sink = scores + s->kv.cap, *mscratch = q_sink + hd;
    const int use_memory = has_memory(s) && s->mem.segments[job->l] > 0;
    const int64_t total = (int64_t)job->n * hp->n_head;
    for (int64_t w = ith; w < total; w += nth) {
        const int32_t i = job->i0 + (int32_t)(w / hp->n_head), h = (int32_t)(w % hp->n_head), kvh = h / group;
        const int64_t p = job->pos0 + i;
        const float *q = job->q + ((size_t)i * hp->n_head + h) * hd;
        if (is_window_policy(s) && evicted_segments(s, p) > 0) { /* query rotated at its cache slot for sink keys */
            const float *q0 = job->q0 + ((size_t)i * hp->n_head + h) * hd, *cs = s->rope_cs_sink + (size_t)i * rd;
            memcpy(q_sink, q0, sizeof(float) * hd);
            for (int32_t a = 0; a < rd; a += 2) {
                const float x0 = q0[a], x1 = q0[a + 1];
                q_sink[a] = x0 * cs[a] - x1 * cs[a + 1];
                q_sink[a + 1] = x0 * cs[a + 1] + x1 * cs[a];
            }
        }
        ei_span spans[MAX_SPANS];
        const float *q_anchor = s->pod.q_anchor ? s->pod.q_anchor + ((size_t)i * hp->n_head + h) * hd : NULL;
        const int ns = spans_for(s, job->l, p, kvh, q, q_sink, q_anchor, spans);
        float *out = job->out + ((size_t)i * hp->n_head + h) * hd;
        attend_head(K, kv_dim, hd, spans, ns, scores, out);
        if (use_memory)
            blend_memory(s, job->l, h, job->xn + (size_t)i * hp->dim, job->q0 + (size_t)i * hp->n_head * hd, mscratch,
                         out);
    }
}

int32_t ei_attn_task_scratch_floats(const ei_model *m, int32_t cap, int32_t rank) {
    const int32_t hd = m->hp.head_dim;
    int32_t attn = cap + hd + 2 * hd + rank;
    return attn;
}

/* ------------------------------------------------------------------ eviction and one layer */

void ei_attn_evict(ei_session *s, int64_t p) {
    if (!is_window_policy(s) || p < s->n_sink || (p - s->n_sink) % s->seg) return;
    const int64_t e = seg_of(s, p) - s->n_seg_window - 1;
    if (e < 0 || !has_memory(s)) return; /* streaming: the slots are simply reused */
    /* every layer before any layer writes the new segment: a PoD layer compresses with its anchor's keys */
    for (int l = 0; l < s->model->hp.n_layer; l++) compress_segment(s, l, e);
}

void ei_attn_layer(ei_session *s, int l, const float *xn, const float *q, const float *k, const float *q0,
                   const float *v, int32_t n, int64_t pos0, float *out) {
    const ei_hparams *hp = &s->model->hp;
    const int32_t kv_dim = s->kv.kv_dim, dim = hp->dim;
    const size_t layer_off = (size_t)l * s->kv.cap * kv_dim;
    if (is_pod(s) && s->pod.share == EI_POD_SHARE_SCORES && s->pod.cfg->anchor[l] == l)
        memcpy(s->pod.q_anchor, q, sizeof(float) * (size_t)n * hp->n_head * hp->head_dim);
    const int32_t rank = s->adapter && has_memory(s) ? s->adapter->rank : 0;
    const ei_adapter_layer *AL = rank ? &s->adapter->layers[l] : NULL;
    for (int32_t i = 0; i < n; i++) {
        const int32_t slot = ei_attn_slot(s, pos0 + i);
        memcpy(s->kv.k_layer[l] + (size_t)key_row(s, l, pos0 + i) * kv_dim, k + (size_t)i * kv_dim,
               sizeof(float) * kv_dim);
        memcpy(s->kv.v + layer_off + (size_t)slot * kv_dim, v + (size_t)i * kv_dim, sizeof(float) * kv_dim);
        if (rank) {
            const ei_kernel_table *K = ei_kernels();
            lowrank_down(K, AL->mk_a, rank, dim, xn + (size_t)i * dim, s->mem.code_k + ((size_t)l * s->kv.cap + slot) * rank);
            lowrank_down(K, AL->mv_a, rank, dim, xn + (size_t)i * dim, s->mem.code_v + ((size_t)l * s->kv.cap + slot) * rank);
        }
    }
    attn_job job = {s, l, xn, q, q0, 0, n, pos0, out};
    ei_threadpool_run(s->model->tp, attn_task, &job);
}
