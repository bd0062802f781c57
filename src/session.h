/* session.h — internal: a generation session (KV cache, scratch, counters) and the attention-policy hooks. */
#ifndef EI_SESSION_H
#define EI_SESSION_H

#include "edgeinf.h"
#include "adapter.h"
#include "model.h"

#define EI_CHUNK 64 /* tokens per forward batch during prefill: bounds scratch memory */

/* KV cache of one session: per layer `cap` slots of kv_dim floats for K (RoPE'd) and V. Which slot a token occupies and
 * which slots a query sees is the policy's business (attention.c). */
typedef struct ei_kv_cache {
    int32_t cap;     /* slots per layer */
    int32_t kv_dim;  /* n_head_kv * head_dim */
    float *k;        /* all keys: (n_layer, cap, kv_dim), except pod: non-anchor layers hold only a ring of pod_ring rows */
    float **k_layer; /* (n_layer) first key row of each layer */
    float *v;        /* (n_layer, cap, kv_dim) */
} ei_kv_cache;

/* PoD state of a session (docs/pod.md). */
typedef struct ei_pod_state {
    const ei_pod_config *cfg; /* blocks (anchor per layer) from the adapter; NULL unless policy pod */
    int32_t n_sink, n_recent, share;
    int32_t ring;             /* key rows of a non-anchor layer: n_sink + n_recent - 1 + U_max (<= cap) */
    float *q_anchor;          /* (EI_CHUNK, n_head*head_dim) the current block anchor's rotated queries (share=scores) */
} ei_pod_state;

/* A run of n keys and values visible to a query, scored with query q: rows of kv_dim floats starting at k and v
 * (already offset to the query's KV head). Keys and values may come from different layers (PoD shares keys). */
typedef struct ei_span {
    const float *q, *k, *v;
    int32_t n;
} ei_span;

/* Compressed memory of the edgeinfinite policy: per (layer, KV head) M (hd x hd) and z (hd), fp32. */
typedef struct ei_memory {
    float *M;            /* (n_layer, n_head_kv, hd, hd) */
    float *z;            /* (n_layer, n_head_kv, hd) */
    int64_t *segments;   /* (n_layer) segments folded in so far */
    float *code_k;       /* (n_layer, cap, rank) x̂·A_k of cached tokens (rank > 0), for k_mem at eviction */
    float *code_v;       /* (n_layer, cap, rank) */
    float *scratch;      /* (2*seg*hd + 2*kv_dim) for compression */
} ei_memory;

struct ei_session {
    ei_model *model;
    ei_session_params params;
    int32_t policy;       /* resolved (never AUTO) */
    int32_t n_sink, window, seg, n_seg_window; /* window policies: layout; n_seg_window = window / seg */
    const ei_adapter *adapter;
    ei_kv_cache kv;
    ei_memory mem;
    ei_pod_state pod;
    int64_t n_past;       /* tokens processed */
    int32_t *slot_ids;    /* (kv.cap) token id held in each cache slot (ei_attn_slot); read by checkpoints */
    float *logits;        /* (n_vocab) */
    int has_logits;
    /* scratch for one chunk of EI_CHUNK tokens */
    float *x, *xn, *q, *k, *v, *att, *ffn_a, *ffn_b;
    float *q0;            /* pre-RoPE q of the chunk (the memory read is position-free) */
    double *rope_freq;    /* (rope_dim/2) base^(-2i/rope_dim), computed once */
    float *rope_cs_sink;  /* (EI_CHUNK, rope_dim) cos, sin at each token's cache slot (for sink keys) */
    float *task_scratch;  /* (n_threads, task_scratch_floats) per-thread scratch of the attention tasks */
    int32_t task_scratch_floats;
    void *mm_scratch;
    float *rope_cs;       /* (EI_CHUNK, rope_dim) interleaved cos, sin */
    int32_t n_threads;
    ei_session_stats stats;
};

/* session.c — cache slot of the token at absolute position p (a token in the cache or arriving): p itself for full,
 * the sink slot or the ring slot for window policies. Must agree with attention.c's slot_of (the ring has
 * cap - n_sink = window + seg slots, so both formulas coincide). */
int32_t ei_attn_slot(const ei_session *s, int64_t p);

/* attention.c — the one attention path, parameterised by the session's policy. */
/* Checks that n more tokens fit the policy's budget (EI_ERR_CONTEXT_FULL otherwise). */
int ei_attn_reserve(ei_session *s, int32_t n);
/* Cache slots the policy needs for a session (from its params). */
int32_t ei_attn_cache_slots(const ei_model *m, const ei_session_params *p);
/* Runs attention for layer `l` on n new tokens at positions pos0.. (a run from ei_attn_max_run, after ei_attn_evict):
 * q, k are RoPE'd at absolute positions, q0 is q before RoPE, v the values, xn the layer's normed input
 * (n, dim). Stores the new k, v and writes out (n, n_head*head_dim). */
void ei_attn_layer(ei_session *s, int l, const float *xn, const float *q, const float *k, const float *q0,
                   const float *v, int32_t n, int64_t pos0, float *out);
/* Before a chunk starting at absolute position p: evicts (compresses, for memory policies) the segment leaving the
 * cache, in every layer, before any layer overwrites its slots. */
void ei_attn_evict(ei_session *s, int64_t p);
/* Tokens from position p a forward chunk may hold (<= want): window policies never cross a segment start, so eviction
 * happens between chunks. */
int32_t ei_attn_max_run(const ei_session *s, int64_t p, int32_t want);
/* Position at which a query at absolute position pos is rotated for sink keys (its cache slot). */
int64_t ei_attn_sink_pos(const ei_session *s, int64_t pos);
/* Per-thread scratch floats the attention tasks need. */
int32_t ei_attn_task_scratch_floats(const ei_model *m, int32_t cap, int32_t rank);
/* Tokens currently held in the cache. */
int64_t ei_attn_kv_tokens(const ei_session *s);

/* forward.c — run n tokens (n <= EI_CHUNK) through the model at positions n_past..; writes logits of the last token
 * into s->logits, and of every token into all_logits (n * n_vocab) when not NULL. */
int ei_forward_chunk(ei_session *s, const int32_t *ids, int32_t n, float *all_logits);

#endif
