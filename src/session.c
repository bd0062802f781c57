/* session.c — the session API: creation (KV cache + scratch sized once), step-wise prefill/decode, stats. */
#include "session.h"

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
    ei_session_params p = {.policy = EI_POLICY_AUTO, .n_ctx = 0, .n_sink = 16, .window = 512, .seg = 128,
                           .n_threads = 0, .memory_budget = 0};
    return p;
}

static double now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

/* ------------------------------------------------------------------ create / free */

static size_t max3(size_t a, size_t b, size_t c) { return a > b ? (a > c ? a : c) : (b > c ? b : c); }

int ei_session_create(ei_model *m, const ei_session_params *params, ei_session **out) {
    if (!m || !out) return ei_set_error(EI_ERR_INVALID_ARG, "ei_session_create: NULL argument");
    *out = NULL;
    ei_session_params p = params ? *params : ei_session_default_params();
    int32_t policy = p.policy;
    if (policy == EI_POLICY_AUTO) policy = EI_POLICY_FULL; /* no adapter support yet: auto == exact base model */
    if (policy != EI_POLICY_FULL)
        return ei_set_error(EI_ERR_UNSUPPORTED, "policy '%s' is not implemented in this build (available: auto, full)",
                            ei_policy_name(policy));
    if (p.n_ctx < 0) return ei_set_error(EI_ERR_INVALID_ARG, "n_ctx %d < 0", p.n_ctx);
    const ei_hparams *hp = &m->hp;
    ei_session *s = calloc(1, sizeof *s);
    if (!s) return ei_set_error(EI_ERR_NOMEM, "out of memory");
    s->model = m;
    s->params = p;
    s->policy = policy;
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
    s->kv.k = malloc(sizeof(float) * kv_floats);
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
    s->scores = malloc(sizeof(float) * (size_t)s->n_threads * s->kv.cap);
    s->rope_cs = malloc(sizeof(float) * C * hp->rope_dim);
    if (!s->kv.k || !s->kv.v || !s->logits || !s->x || !s->xn || !s->q || !s->k || !s->v || !s->att || !s->ffn_a ||
        !s->ffn_b || !s->mm_scratch || !s->scores || !s->rope_cs) {
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
    free(s->scores);
    free(s->rope_cs);
    free(s);
}

void ei_session_reset(ei_session *s) {
    s->n_past = 0;
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
    for (int32_t off = 0; off < n; off += EI_CHUNK) {
        const int32_t c = n - off < EI_CHUNK ? n - off : EI_CHUNK;
        rc = ei_forward_chunk(s, ids + off, c, all_logits ? all_logits + (size_t)off * nv : NULL);
        if (rc) return rc;
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
    out->kv_tokens = ei_attn_kv_tokens(s);
    out->kv_bytes = (int64_t)2 * sizeof(float) * s->model->hp.n_layer * s->kv.cap * s->kv.kv_dim;
    out->memory_bytes = 0;
    out->compressions = 0;
}
