/* session.c — the session API: creation (KV cache + scratch sized once), step-wise prefill/decode, stats. */
#include "session.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "error.h"
#include "kernels.h"
#include "threadpool.h"

static const char *const policy_names[] = {"auto", "full", "streaming", "edgeinfinite", "pod", "edgeinfinite+pod"};

int ei_policy_from_name(const char *name, int32_t *out) {
    for (int32_t i = 0; i < (int32_t)(sizeof policy_names / sizeof *policy_names); i++)
        if (name && !strcmp(name, policy_names[i])) {
            *out = i;
            return 0;
        }
    return ei_set_error(EI_ERR_INVALID_ARG,
                        "unknown policy '%s' (auto, full, streaming, edgeinfinite, pod, edgeinfinite+pod)",
                        name ? name : "(null)");
}

const char *ei_policy_name(int32_t p) {
    return p >= 0 && p < (int32_t)(sizeof policy_names / sizeof *policy_names) ? policy_names[p] : "?";
}

ei_session_params ei_session_default_params(void) {
    ei_session_params p = {.policy = EI_POLICY_AUTO, .n_ctx = 0, .n_sink = 0, .window = 0, .seg = 0,
                           .n_threads = 0, .memory_budget = 0, .adapter = NULL};
    return p;
}

static double now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

/* ------------------------------------------------------------------ create / free */

static size_t max3(size_t a, size_t b, size_t c) { return a > b ? (a > c ? a : c) : (b > c ? b : c); }

/* Bytes of KV cache + compressed memory for a layout (what stats report and the budget counts). */
static int64_t layout_bytes(const ei_model *m, int32_t policy, int32_t cap, int32_t rank) {
    const ei_hparams *hp = &m->hp;
    const int64_t kv_dim = (int64_t)hp->n_head_kv * hp->head_dim;
    int64_t b = 2 * (int64_t)sizeof(float) * hp->n_layer * cap * kv_dim;
    if (policy == EI_POLICY_EDGEINFINITE || policy == EI_POLICY_EDGEINFINITE_POD)
        b += (int64_t)sizeof(float) * hp->n_layer *
             ((int64_t)hp->n_head_kv * (hp->head_dim * hp->head_dim + hp->head_dim) + 2 * (int64_t)cap * rank);
    return b;
}

/* Resolves the policy and, for window policies, n_sink / window / seg: explicit params win, then the adapter's, then
 * 16 / 512 / 128 shrunk to fit the training context; a memory budget picks the largest window that fits. */
static int resolve_layout(const ei_model *m, ei_session_params *p) {
    const ei_hparams *hp = &m->hp;
    const ei_adapter *ad0 = p->adapter;
    if (p->policy == EI_POLICY_AUTO)
        p->policy = !ad0 ? EI_POLICY_FULL
                    : ad0->has_ei && ad0->has_pod ? EI_POLICY_EDGEINFINITE_POD
                    : ad0->has_ei ? EI_POLICY_EDGEINFINITE
                    : EI_POLICY_POD;
    if (p->policy == EI_POLICY_EDGEINFINITE_POD && !(ad0 && ad0->has_ei && ad0->has_pod))
        return ei_set_error(EI_ERR_INVALID_ARG, "policy 'edgeinfinite+pod' needs an 'edgeinfinite+pod' adapter (a memory "
                                                "gate and measured layer blocks; --adapter FILE)");
    if (p->policy < EI_POLICY_AUTO || p->policy > EI_POLICY_EDGEINFINITE_POD)
        return ei_set_error(EI_ERR_INVALID_ARG, "unknown policy %d", p->policy);
    if (p->policy == EI_POLICY_EDGEINFINITE && !(ad0 && ad0->has_ei))
        return ei_set_error(EI_ERR_INVALID_ARG, "policy 'edgeinfinite' needs an adapter with a memory gate (--adapter "
                                                "FILE / Engine.load({adapter}))");
    if (p->policy == EI_POLICY_POD && !(ad0 && ad0->has_pod))
        return ei_set_error(EI_ERR_INVALID_ARG, "policy 'pod' needs an adapter with measured layer blocks (made by "
                                                "models/pod_calibrate.py; --adapter FILE)");
    if (p->pod_share < 0 || p->pod_share > 2) return ei_set_error(EI_ERR_INVALID_ARG, "pod_share %d not 0..2", p->pod_share);
    if (p->policy == EI_POLICY_POD || p->policy == EI_POLICY_EDGEINFINITE_POD) {
        if (p->n_recent <= 0) p->n_recent = ad0->pod.n_recent;
        if (p->n_sink <= 0) p->n_sink = ad0->pod.n_sink;
        p->pod_share = p->pod_share ? p->pod_share - 1 : ad0->pod.share;
    }
    if (p->n_ctx < 0) return ei_set_error(EI_ERR_INVALID_ARG, "n_ctx %d < 0", p->n_ctx);
    if (p->memory_budget < 0) return ei_set_error(EI_ERR_INVALID_ARG, "memory budget %lld < 0", (long long)p->memory_budget);
    const int32_t ctx = hp->n_ctx_train;
    if (p->policy == EI_POLICY_FULL || p->policy == EI_POLICY_POD) {
        if (p->memory_budget > 0 && p->policy == EI_POLICY_POD)
            return ei_set_error(EI_ERR_UNSUPPORTED, "a memory budget is not supported with the pod policy (use --ctx)");
        if (p->memory_budget > 0) {
            const int64_t per_tok = layout_bytes(m, EI_POLICY_FULL, 1, 0);
            int64_t n = p->memory_budget / per_tok;
            if (n < 1)
                return ei_set_error(EI_ERR_INVALID_ARG, "memory budget %lld B is below one token of KV (%lld B)",
                                    (long long)p->memory_budget, (long long)per_tok);
            p->n_ctx = (int32_t)(n < ctx ? n : ctx);
        }
        return 0;
    }
    /* The adapter's layout is the default of every window policy (streaming as a baseline gets the same KV budget);
     * its memory and rank only count for edgeinfinite. */
    const ei_adapter *ad = p->adapter;
    const int32_t rank = ad && p->policy != EI_POLICY_STREAMING ? ad->rank : 0;
    int32_t seg = p->seg > 0 ? p->seg : ad ? ad->seg : 128;
    while (p->seg <= 0 && !ad && seg > 8 && seg * 4 > ctx) seg /= 2;
    int32_t n_sink = p->n_sink > 0 ? p->n_sink : ad ? ad->n_sink : (seg < 16 ? seg : 16);
    int32_t window = p->window > 0 ? p->window : ad ? ad->window : 512;
    if (p->window <= 0 && !ad && n_sink + window + seg > ctx) window = (ctx - n_sink - seg) / seg * seg;
    if (p->memory_budget > 0) {
        /* the largest window (a multiple of seg, >= seg) whose layout fits the budget and the training context */
        int32_t best = 0;
        for (int32_t w = seg; n_sink + w + seg <= ctx; w += seg)
            if (layout_bytes(m, p->policy, n_sink + w + seg, rank) <= p->memory_budget) best = w;
        if (!best)
            return ei_set_error(EI_ERR_INVALID_ARG,
                                "memory budget %lld B is too small: the smallest %s layout (sink %d + window %d + "
                                "segment %d) needs %lld B",
                                (long long)p->memory_budget, ei_policy_name(p->policy), n_sink, seg, seg,
                                (long long)layout_bytes(m, p->policy, n_sink + 2 * seg, rank));
        window = best;
    }
    if (seg < 1 || window < seg || window % seg)
        return ei_set_error(EI_ERR_INVALID_ARG, "window %d must be a positive multiple of the segment size %d", window, seg);
    if (n_sink < 0 || n_sink + window + seg > ctx)
        return ei_set_error(EI_ERR_INVALID_ARG,
                            "sink %d + window %d + segment %d = %d exceeds the model's training context %d (positions "
                            "beyond it were never trained)",
                            n_sink, window, seg, n_sink + window + seg, ctx);
    if (p->policy == EI_POLICY_EDGEINFINITE_POD && p->n_recent > window)
        return ei_set_error(EI_ERR_INVALID_ARG, "n_recent %d exceeds the window %d (docs/pod.md)", p->n_recent, window);
    p->n_sink = n_sink;
    p->window = window;
    p->seg = seg;
    return 0;
}

int ei_session_create(ei_model *m, const ei_session_params *params, ei_session **out) {
    if (!m || !out) return ei_set_error(EI_ERR_INVALID_ARG, "ei_session_create: NULL argument");
    *out = NULL;
    ei_session_params p = params ? *params : ei_session_default_params();
    int rc = resolve_layout(m, &p);
    if (rc) return rc;
    const int32_t policy = p.policy;
    const ei_hparams *hp = &m->hp;
    ei_session *s = calloc(1, sizeof *s);
    if (!s) return ei_set_error(EI_ERR_NOMEM, "out of memory");
    s->model = m;
    s->params = p;
    s->policy = policy;
    s->adapter = policy == EI_POLICY_EDGEINFINITE || policy == EI_POLICY_EDGEINFINITE_POD ? p.adapter : NULL;
    if (policy == EI_POLICY_POD || policy == EI_POLICY_EDGEINFINITE_POD) {
        s->pod.cfg = &p.adapter->pod;
        s->pod.n_sink = p.n_sink;
        s->pod.n_recent = p.n_recent;
        s->pod.share = p.pod_share;
    }
    if (policy == EI_POLICY_STREAMING || policy == EI_POLICY_EDGEINFINITE || policy == EI_POLICY_EDGEINFINITE_POD) {
        s->n_sink = p.n_sink;
        s->window = p.window;
        s->seg = p.seg;
        s->n_seg_window = p.window / p.seg;
    }
    s->n_threads = ei_threadpool_size(m->tp);
    s->kv.cap = ei_attn_cache_slots(m, &p);
    s->kv.kv_dim = hp->n_head_kv * hp->head_dim;
    const size_t kv_floats = (size_t)hp->n_layer * s->kv.cap * s->kv.kv_dim;
    const size_t C = EI_CHUNK, q_dim = (size_t)hp->n_head * hp->head_dim;
    size_t mm = 0;
    for (int l = 0; l < hp->n_layer; l++) {
        const ei_layer *L = &m->layers[l];
        size_t a = ei_matmul_scratch_size(L->wq.type, C, L->wq.n_in);
        size_t b = ei_matmul_scratch_size(L->wo.type, C, L->wo.n_in);
        size_t c = ei_matmul_scratch_size(L->w_down.type, C, L->w_down.n_in);
        size_t d = ei_matmul_scratch_size(L->w_gate.type, C, L->w_gate.n_in);
        mm = max3(mm, max3(a, b, c), d);
    }
    mm = max3(mm, ei_matmul_scratch_size(m->output.type, C, m->output.n_in), 64);
    /* Keys: cap rows per layer, except PoD non-anchor layers, which keep a ring of proximal keys only. */
    size_t k_rows = (size_t)hp->n_layer * s->kv.cap;
    if (s->pod.cfg) {
        /* U_max of docs/pod.md: a forward chunk writes at most EI_CHUNK keys, and at most seg under window policies */
        const int32_t u_max = s->seg > 0 && s->seg < EI_CHUNK ? s->seg : EI_CHUNK;
        const int64_t ring = (int64_t)s->pod.n_sink + s->pod.n_recent - 1 + u_max;
        s->pod.ring = (int32_t)(ring < s->kv.cap ? ring : s->kv.cap);
        k_rows = 0;
        for (int l = 0; l < hp->n_layer; l++) k_rows += s->pod.cfg->anchor[l] == l ? s->kv.cap : s->pod.ring;
        if (s->pod.share == EI_POD_SHARE_SCORES) s->pod.q_anchor = malloc(sizeof(float) * C * q_dim);
    }
    s->kv.k = malloc(sizeof(float) * k_rows * s->kv.kv_dim);
    s->kv.k_layer = malloc(sizeof(float *) * (size_t)hp->n_layer);
    if (s->kv.k && s->kv.k_layer)
        for (int l = 0, row = 0; l < hp->n_layer; l++) {
            s->kv.k_layer[l] = s->kv.k + (size_t)row * s->kv.kv_dim;
            row += s->pod.cfg && s->pod.cfg->anchor[l] != l ? s->pod.ring : s->kv.cap;
        }
    s->kv.v = malloc(sizeof(float) * kv_floats);
    s->logits = malloc(sizeof(float) * hp->n_vocab);
    s->x = malloc(sizeof(float) * C * hp->dim);
    s->xn = malloc(sizeof(float) * C * max3(hp->dim, q_dim, 1));
    s->q = malloc(sizeof(float) * C * q_dim);
    s->k = malloc(sizeof(float) * C * s->kv.kv_dim);
    s->v = malloc(sizeof(float) * C * s->kv.kv_dim);
    s->att = malloc(sizeof(float) * C * q_dim);
    s->ffn_a = malloc(sizeof(float) * C * hp->ffn_dim);
    s->ffn_b = malloc(sizeof(float) * C * hp->ffn_dim);
    s->mm_scratch = malloc(mm);
    s->rope_cs = malloc(sizeof(float) * C * hp->rope_dim);
    s->rope_cs_sink = malloc(sizeof(float) * C * hp->rope_dim);
    s->q0 = malloc(sizeof(float) * C * q_dim);
    s->rope_freq = malloc(sizeof(double) * (size_t)(hp->rope_dim / 2));
    for (int32_t i = 0; s->rope_freq && i < hp->rope_dim / 2; i++)
        s->rope_freq[i] = pow((double)hp->rope_base, -2.0 * i / hp->rope_dim);
    s->slot_ids = malloc(sizeof(int32_t) * (size_t)s->kv.cap);
    const int32_t rank = s->adapter ? s->adapter->rank : 0;
    s->task_scratch_floats = ei_attn_task_scratch_floats(m, s->kv.cap, rank);
    s->task_scratch = malloc(sizeof(float) * (size_t)s->n_threads * s->task_scratch_floats);
    int mem_ok = 1;
    if (s->adapter) {
        const size_t hd = (size_t)hp->head_dim, nl = (size_t)hp->n_layer, nkv = (size_t)hp->n_head_kv;
        s->mem.M = calloc(nl * nkv * hd * hd, sizeof(float));
        s->mem.z = calloc(nl * nkv * hd, sizeof(float));
        s->mem.segments = calloc(nl, sizeof(int64_t));
        s->mem.scratch = malloc(sizeof(float) * (2 * (size_t)s->seg * hd + 2 * (size_t)s->kv.kv_dim));
        if (rank) {
            s->mem.code_k = calloc(nl * (size_t)s->kv.cap * rank, sizeof(float));
            s->mem.code_v = calloc(nl * (size_t)s->kv.cap * rank, sizeof(float));
        }
        mem_ok = s->mem.M && s->mem.z && s->mem.segments && s->mem.scratch && (!rank || (s->mem.code_k && s->mem.code_v));
    }
    if (!s->kv.k || !s->kv.k_layer || (s->pod.share == EI_POD_SHARE_SCORES && s->pod.cfg && !s->pod.q_anchor) ||
        !s->kv.v || !s->logits || !s->x || !s->xn || !s->q || !s->k || !s->v || !s->att || !s->ffn_a ||
        !s->ffn_b || !s->mm_scratch || !s->rope_cs || !s->rope_cs_sink || !s->q0 || !s->rope_freq || !s->task_scratch ||
        !s->slot_ids || !mem_ok) {
        size_t kvb = 2 * sizeof(float) * kv_floats;
        ei_session_free(s);
        return ei_set_error(EI_ERR_NOMEM, "out of memory creating a session (KV cache of %d tokens = %zu MB)",
                            p.n_ctx > 0 ? p.n_ctx : hp->n_ctx_train, kvb >> 20);
    }
    s->stats.policy = policy;
    *out = s;
    return 0;
}

void ei_session_free(ei_session *s) {
    if (!s) return;
    free(s->kv.k);
    free(s->kv.k_layer);
    free(s->pod.q_anchor);
    free(s->kv.v);
    free(s->logits);
    free(s->x);
    free(s->xn);
    free(s->q);
    free(s->k);
    free(s->v);
    free(s->att);
    free(s->ffn_a);
    free(s->ffn_b);
    free(s->mm_scratch);
    free(s->rope_cs);
    free(s->rope_cs_sink);
    free(s->q0);
    free(s->rope_freq);
    free(s->slot_ids);
    free(s->task_scratch);
    free(s->mem.M);
    free(s->mem.z);
    free(s->mem.segments);
    free(s->mem.scratch);
    free(s->mem.code_k);
    free(s->mem.code_v);
    free(s);
}

void ei_session_reset(ei_session *s) {
    s->n_past = 0;
    if (s->adapter) {
        const ei_hparams *hp = &s->model->hp;
        const size_t hd = (size_t)hp->head_dim, nl = (size_t)hp->n_layer, nkv = (size_t)hp->n_head_kv;
        memset(s->mem.M, 0, sizeof(float) * nl * nkv * hd * hd);
        memset(s->mem.z, 0, sizeof(float) * nl * nkv * hd);
        memset(s->mem.segments, 0, sizeof(int64_t) * nl);
    }
    s->has_logits = 0;
    int32_t policy = s->stats.policy;
    memset(&s->stats, 0, sizeof s->stats);
    s->stats.policy = policy;
}

/* ------------------------------------------------------------------ prefill / decode */

static int run_tokens(ei_session *s, const int32_t *ids, int32_t n, float *all_logits, int is_decode) {
    if (!s || (!ids && n > 0)) return ei_set_error(EI_ERR_INVALID_ARG, "NULL session or ids");
    if (n <= 0) return ei_set_error(EI_ERR_INVALID_ARG, "no tokens to evaluate (n = %d)", n);
    const int32_t nv = s->model->hp.n_vocab;
    for (int32_t i = 0; i < n; i++)
        if (ids[i] < 0 || ids[i] >= nv)
            return ei_set_error(EI_ERR_RANGE, "token id %d at index %d out of range [0, %d)", ids[i], i, nv);
    int rc = ei_attn_reserve(s, n);
    if (rc) return rc;
    const double t0 = now_ms();
    for (int32_t off = 0, c; off < n; off += c) {
        c = ei_attn_max_run(s, s->n_past, n - off < EI_CHUNK ? n - off : EI_CHUNK);
        const int64_t p0 = s->n_past;
        rc = ei_forward_chunk(s, ids + off, c, all_logits ? all_logits + (size_t)off * nv : NULL);
        if (rc) return rc;
        for (int32_t i = 0; i < c; i++) s->slot_ids[ei_attn_slot(s, p0 + i)] = ids[off + i];
    }
    const double dt = now_ms() - t0;
    s->stats.tokens += n;
    if (is_decode) {
        s->stats.decode_tokens += n;
        s->stats.decode_ms += dt;
    } else {
        s->stats.prefill_tokens += n;
        s->stats.prefill_ms += dt;
    }
    return 0;
}

int ei_session_prefill(ei_session *s, const int32_t *ids, int32_t n) { return run_tokens(s, ids, n, NULL, 0); }
int ei_session_decode(ei_session *s, int32_t id) { return run_tokens(s, &id, 1, NULL, 1); }
int ei_session_eval(ei_session *s, const int32_t *ids, int32_t n, float *all_logits) {
    if (!all_logits) return ei_set_error(EI_ERR_INVALID_ARG, "ei_session_eval: all_logits is NULL");
    return run_tokens(s, ids, n, all_logits, 0);
}

const float *ei_session_get_logits(const ei_session *s) { return s && s->has_logits ? s->logits : NULL; }

void ei_session_get_stats(const ei_session *s, ei_session_stats *out) {
    *out = s->stats;
    const ei_hparams *hp = &s->model->hp;
    out->kv_tokens = ei_attn_kv_tokens(s);
    out->kv_bytes = layout_bytes(s->model, EI_POLICY_FULL, s->kv.cap, 0);
    if (s->pod.cfg) { /* values of every layer + keys of anchors (cap) and of the other layers (ring), docs/pod.md */
        int64_t k_rows = 0;
        for (int l = 0; l < hp->n_layer; l++) k_rows += s->pod.cfg->anchor[l] == l ? s->kv.cap : s->pod.ring;
        out->kv_bytes = (int64_t)sizeof(float) * s->kv.kv_dim * ((int64_t)hp->n_layer * s->kv.cap + k_rows);
    }
    out->memory_bytes = s->adapter ? layout_bytes(s->model, s->policy, s->kv.cap, s->adapter->rank) -
                                         layout_bytes(s->model, EI_POLICY_FULL, s->kv.cap, 0)
                                   : 0;
    out->compressions = s->mem.segments ? s->mem.segments[0] : 0;
    out->n_sink = s->n_sink;
    out->window = s->window;
    out->seg = s->seg;
}
