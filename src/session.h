/* session.h — internal: a generation session (KV cache, scratch, counters) and the attention-policy hooks. */
#ifndef EI_SESSION_H
#define EI_SESSION_H

#include "edgeinf.h"
#include "model.h"

#define EI_CHUNK 64 /* tokens per forward batch during prefill: bounds scratch memory */

/* KV cache of one session: per layer `cap` slots of kv_dim floats for K (RoPE'd) and V. Which slot a token occupies and
 * which slots a query sees is the policy's business (attention.c). */
typedef struct ei_kv_cache {
    int32_t cap;     /* slots per layer */
    int32_t kv_dim;  /* n_head_kv * head_dim */
    float *k;        /* (n_layer, cap, kv_dim) */
    float *v;        /* (n_layer, cap, kv_dim) */
} ei_kv_cache;

/* A contiguous run of cache slots visible to a query. */
typedef struct ei_kv_span {
    int32_t start, n;
} ei_kv_span;

struct ei_session {
    ei_model *model;
    ei_session_params params;
    int32_t policy;       /* resolved (never AUTO) */
    ei_kv_cache kv;
    int64_t n_past;       /* tokens processed */
    float *logits;        /* (n_vocab) */
    int has_logits;
    /* scratch for one chunk of EI_CHUNK tokens */
    float *x, *xn, *q, *k, *v, *att, *ffn_a, *ffn_b;
    void *mm_scratch;
    float *scores;        /* (n_threads, cap) attention scores */
    float *rope_cs;       /* (EI_CHUNK, rope_dim) interleaved cos, sin */
    int32_t n_threads;
    ei_session_stats stats;
};

/* attention.c — the one attention path, parameterised by the session's policy. */
/* Checks that n more tokens fit the policy's budget (EI_ERR_CONTEXT_FULL otherwise). */
int ei_attn_reserve(ei_session *s, int32_t n);
/* Cache slots the policy needs for a session (from its params). */
int32_t ei_attn_cache_slots(const ei_model *m, const ei_session_params *p);
/* Runs attention for layer `l` on n new tokens at positions pos0.. : stores their k, v (already RoPE'd) in the cache
 * and writes out (n, n_head*head_dim). */
void ei_attn_layer(ei_session *s, int l, const float *q, const float *k, const float *v, int32_t n, int64_t pos0,
                   float *out);
/* Tokens currently held in the cache. */
int64_t ei_attn_kv_tokens(const ei_session *s);

/* forward.c — run n tokens (n <= EI_CHUNK) through the model at positions n_past..; writes logits of the last token
 * into s->logits, and of every token into all_logits (n * n_vocab) when not NULL. */
int ei_forward_chunk(ei_session *s, const int32_t *ids, int32_t n, float *all_logits);

#endif
