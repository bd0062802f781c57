/* edgeinf.h — public C API of the edgeinf inference engine.
 *
 * Usage:
 *   ei_model_params mp = ei_model_default_params();
 *   ei_model *model;
 *   if (ei_model_load_from_file("m.gguf", &mp, &model) < 0) puts(ei_last_error());
 *   ei_session_params sp = ei_session_default_params();
 *   ei_session *s;
 *   ei_session_create(model, &sp, &s);
 *   int32_t ids[256], n;
 *   ei_tokenize(ei_model_get_tokenizer(model), "Hello", -1, EI_TOKENIZE_ADD_BOS, ids, 256, &n);
 *   ei_session_prefill(s, ids, n);                 // logits of the last token are now ready
 *   ei_sampler *smp; ei_sampler_params qp = ei_sampler_default_params();
 *   ei_sampler_create(&qp, &smp);
 *   for (;;) {
 *       int32_t t = ei_sampler_sample(smp, ei_session_get_logits(s), ei_model_n_vocab(model));
 *       ei_sampler_accept(smp, t);
 *       ... ei_detok_push(...) to print UTF-8-safe text ...
 *       ei_session_decode(s, t);                   // one token, logits refreshed
 *   }
 *   ei_sampler_free(smp); ei_session_free(s); ei_model_free(model);
 *
 * Conventions: every fallible call returns int (0 = ok, negative = EI_ERR_*);
 * ei_last_error() gives the message (with context) of the last failure on the
 * calling thread. Handles are opaque; params are passed by pointer. The library
 * never calls exit() or abort().
 */
#ifndef EDGEINF_H
#define EDGEINF_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* ------------------------------------------------------------------ errors */

enum ei_error {
    EI_OK = 0,
    EI_ERR_IO = -1,            /* file cannot be opened / read / written */
    EI_ERR_FORMAT = -2,        /* malformed file (bad magic, truncated, offsets out of range) */
    EI_ERR_UNSUPPORTED = -3,   /* valid but unsupported (tensor type, architecture, version) */
    EI_ERR_NOMEM = -4,         /* allocation failed */
    EI_ERR_INVALID_ARG = -5,   /* bad argument from the caller */
    EI_ERR_RANGE = -6,         /* index out of range (token id, position) */
    EI_ERR_CONTEXT_FULL = -7,  /* prompt or generation exceeds the policy's budget */
    EI_ERR_MISSING_KEY = -8,   /* required GGUF metadata key or tensor missing */
    EI_ERR_BUFFER_TOO_SMALL = -9, /* output buffer too small; *n_out holds the size needed */
    EI_ERR_INVALID_UTF8 = -10, /* input text is not valid UTF-8 */
    EI_ERR_MISMATCH = -11,     /* file belongs to another model / config */
    EI_ERR_INTERNAL = -12,     /* a bug: please report */
};

/* Static name + description of an error code, e.g. "EI_ERR_FORMAT: malformed file". */
const char *ei_strerror(int err);
/* Message of the last failure on this thread, with context; "" if none. Valid until the next failing call. */
const char *ei_last_error(void);

/* ------------------------------------------------------------------ model */

typedef struct ei_model ei_model;
typedef struct ei_tokenizer ei_tokenizer;

typedef struct ei_model_params {
    int32_t use_mmap;    /* 1 = mmap the file (native only); 0 = read into memory */
    int32_t n_threads;   /* worker threads for matmuls; <= 0 = all cores */
} ei_model_params;

ei_model_params ei_model_default_params(void);

/* Load a GGUF model from a path. On success *out owns the model (free with ei_model_free). */
int ei_model_load_from_file(const char *path, const ei_model_params *params, ei_model **out);
/* Load from memory. The buffer is NOT copied: it must stay alive and unchanged until ei_model_free. */
int ei_model_load_from_buffer(const void *data, size_t size, const ei_model_params *params, ei_model **out);
void ei_model_free(ei_model *model);

int32_t ei_model_n_vocab(const ei_model *model);
int32_t ei_model_n_ctx_train(const ei_model *model);
int32_t ei_model_n_layer(const ei_model *model);
int64_t ei_model_n_params(const ei_model *model);
/* Threads of the model's pool (1 without threads). */
int32_t ei_model_n_threads(const ei_model *model);
/* Borrowed; lives as long as the model. */
const ei_tokenizer *ei_model_get_tokenizer(const ei_model *model);
/* Writes a human-readable summary (metadata + tensor table) into buf. Returns 0, or
 * EI_ERR_BUFFER_TOO_SMALL with *n_out = bytes needed (including NUL). */
int ei_model_describe(const ei_model *model, char *buf, size_t cap, size_t *n_out);
/* String metadata value by key ("general.name", "tokenizer.chat_template"...), NULL if absent. Borrowed. */
const char *ei_model_meta_str(const ei_model *model, const char *key);
/* A short hex fingerprint of the weights + hparams (identifies the model in checkpoints). Borrowed. */
const char *ei_model_fingerprint(const ei_model *model);

/* ------------------------------------------------------------------ tokenizer */

enum ei_tokenize_flags {
    EI_TOKENIZE_ADD_BOS = 1,
    EI_TOKENIZE_ADD_EOS = 2,
};

/* Load a standalone tokenizer from a SentencePiece .model file (or buffer). Free with ei_tokenizer_free. */
int ei_tokenizer_load_spm_file(const char *path, ei_tokenizer **out);
int ei_tokenizer_load_spm_buffer(const void *data, size_t size, ei_tokenizer **out);
void ei_tokenizer_free(ei_tokenizer *tok);

int32_t ei_tokenizer_n_vocab(const ei_tokenizer *tok);
int32_t ei_tokenizer_bos(const ei_tokenizer *tok);   /* -1 if none */
int32_t ei_tokenizer_eos(const ei_tokenizer *tok);   /* -1 if none */

/* Encode UTF-8 text (len < 0: NUL-terminated) into ids. Returns 0 with *n_out ids written, or
 * EI_ERR_BUFFER_TOO_SMALL with *n_out = ids needed, or EI_ERR_INVALID_UTF8. */
int ei_tokenize(const ei_tokenizer *tok, const char *text, int32_t len, int32_t flags,
                int32_t *ids, int32_t cap, int32_t *n_out);
/* Raw bytes a token stands for in running text (▁ -> space, <0xNN> -> that byte; control tokens -> "").
 * `first` = 1 when the token starts the text: the dummy-prefix space is dropped then.
 * Returns 0 with *n_out bytes (not NUL-terminated), BUFFER_TOO_SMALL, or EI_ERR_RANGE for a bad id. */
int ei_token_to_bytes(const ei_tokenizer *tok, int32_t id, int32_t first, char *buf, int32_t cap, int32_t *n_out);
/* Decode ids to NUL-terminated text (invalid UTF-8 sequences become U+FFFD). Same return rules. */
int ei_detokenize(const ei_tokenizer *tok, const int32_t *ids, int32_t n, char *buf, int32_t cap, int32_t *n_out);

/* UTF-8-safe streaming detokenizer: push token ids one by one; only complete code points come out. */
typedef struct ei_detok {
    const ei_tokenizer *tok;
    int32_t n_pushed;   /* tokens pushed so far */
    int32_t n_pending;  /* bytes of an unfinished code point held back */
    char pending[8];
    int32_t at_start;   /* 1 until the first text piece: like sentencepiece, its leading space (dummy prefix) is
                         * dropped. Set it to 0 after init when the text continues earlier text (a prompt). */
} ei_detok;
/* Starts a stream with at_start = 1. */
void ei_detok_init(ei_detok *d, const ei_tokenizer *tok);
/* Appends the newly complete text to buf (NUL-terminated); *n_out = bytes written. cap >= 64 always suffices
 * for one token of a vocabulary whose pieces are <= 48 bytes; otherwise BUFFER_TOO_SMALL. */
int ei_detok_push(ei_detok *d, int32_t id, char *buf, int32_t cap, int32_t *n_out);
/* Emits what is still pending (as U+FFFD when incomplete). */
int ei_detok_flush(ei_detok *d, char *buf, int32_t cap, int32_t *n_out);

/* ------------------------------------------------------------------ adapter */

/* An EdgeInfinite memory-gating adapter (separate small GGUF, docs/edgeinfinite.md). The base model is untouched. */
typedef struct ei_adapter ei_adapter;

/* Load an adapter for `model` (checked against its dimensions: EI_ERR_MISMATCH otherwise). The model must outlive it.
 * load_from_buffer copies what it needs: the buffer may be freed afterwards. */
int ei_adapter_load_from_file(const ei_model *model, const char *path, ei_adapter **out);
int ei_adapter_load_from_buffer(const ei_model *model, const void *data, size_t size, ei_adapter **out);
void ei_adapter_free(ei_adapter *adapter);
/* Trainable parameters in the adapter. */
int64_t ei_adapter_n_params(const ei_adapter *adapter);
/* What the adapter serves: "edgeinfinite" (memory gate), "pod" (layer blocks) or "edgeinfinite+pod" (both);
 * "none" for NULL. The string is static. */
const char *ei_adapter_kind(const ei_adapter *adapter);

/* ------------------------------------------------------------------ session */

typedef struct ei_session ei_session;

enum ei_policy {
    EI_POLICY_AUTO = 0,          /* edgeinfinite (exact base model until memory is used) with an adapter, else full */
    EI_POLICY_FULL = 1,          /* whole KV cache */
    EI_POLICY_STREAMING = 2,     /* sink + window, older tokens dropped */
    EI_POLICY_EDGEINFINITE = 3,  /* sink + window + compressed memory */
    EI_POLICY_POD = 4,           /* shared distant-token attention across layer blocks */
    EI_POLICY_EDGEINFINITE_POD = 5,
};
/* "auto", "full", ... -> enum; returns EI_ERR_INVALID_ARG for an unknown name. */
int ei_policy_from_name(const char *name, int32_t *out);
const char *ei_policy_name(int32_t policy);

typedef struct ei_session_params {
    int32_t policy;       /* enum ei_policy */
    int32_t n_ctx;        /* full policy: max tokens (<= 0: the model's training context) */
    int32_t n_sink;       /* streaming/edgeinfinite: sink tokens (<= 0: the adapter's, else 16) */
    int32_t window;       /* streaming/edgeinfinite: recent-token window, a multiple of seg (<= 0: adapter's, else 512) */
    int32_t seg;          /* streaming/edgeinfinite: segment size (<= 0: the adapter's, else 128) */
    int32_t n_threads;    /* unused: the model's thread pool is used */
    int64_t memory_budget;/* > 0: bytes for KV cache + compressed memory; window and seg are chosen to fit (auto,
                           * streaming, edgeinfinite); EI_ERR_INVALID_ARG if even the smallest layout does not fit */
    const ei_adapter *adapter; /* EdgeInfinite gate and/or PoD blocks (required by edgeinfinite / pod; auto uses it when
                                * given: edgeinfinite if it has a gate, else pod). Borrowed. */
    int32_t n_recent;     /* pod: proximal recent tokens (<= 0: the adapter's) */
    int32_t pod_share;    /* pod: 0 = the adapter's, 1 = share scores, 2 = share keys (docs/pod.md) */
} ei_session_params;

ei_session_params ei_session_default_params(void);

/* Create a session on a model (the model must outlive it). */
int ei_session_create(ei_model *model, const ei_session_params *params, ei_session **out);
void ei_session_free(ei_session *s);
/* Forget all tokens (keeps allocations). */
void ei_session_reset(ei_session *s);

/* Append n tokens and run them through the model; afterwards ei_session_get_logits() holds the
 * next-token logits after the last one. Errors: EI_ERR_RANGE (bad id), EI_ERR_CONTEXT_FULL. On error
 * the session is unchanged. */
int ei_session_prefill(ei_session *s, const int32_t *ids, int32_t n);
/* Same as prefill of one token. */
int ei_session_decode(ei_session *s, int32_t id);
/* Like prefill, but also writes the logits after every token into all_logits (n * n_vocab floats). */
int ei_session_eval(ei_session *s, const int32_t *ids, int32_t n, float *all_logits);
/* Next-token logits (n_vocab floats), valid until the next call on the session; NULL before any token. */
const float *ei_session_get_logits(const ei_session *s);

typedef struct ei_session_stats {
    int32_t policy;
    int64_t tokens;          /* tokens seen since creation/reset */
    int64_t kv_tokens;       /* tokens currently held in the KV cache */
    int64_t kv_bytes;        /* bytes of KV cache allocated */
    int64_t memory_bytes;    /* bytes of compressed memory */
    int64_t compressions;    /* segments folded into memory */
    int64_t prefill_tokens;
    double prefill_ms;
    int64_t decode_tokens;
    double decode_ms;
    int32_t n_sink, window, seg; /* the layout in use (0 for full) */
} ei_session_stats;

void ei_session_get_stats(const ei_session *s, ei_session_stats *out);

/* ------------------------------------------------------------------ sampler */

typedef struct ei_sampler ei_sampler;

typedef struct ei_sampler_params {
    float temperature;     /* <= 0: greedy */
    int32_t top_k;         /* <= 0: off */
    float top_p;           /* >= 1: off */
    float min_p;           /* <= 0: off */
    float repeat_penalty;  /* 1: off */
    int32_t repeat_last_n; /* window of recent tokens the penalty looks at */
    uint64_t seed;
} ei_sampler_params;

ei_sampler_params ei_sampler_default_params(void);
int ei_sampler_create(const ei_sampler_params *params, ei_sampler **out);
void ei_sampler_free(ei_sampler *smp);
/* Picks a token from logits (not modified). Deterministic for a given seed and history. */
int32_t ei_sampler_sample(ei_sampler *smp, const float *logits, int32_t n_vocab);
/* Records a token in the history (for the repetition penalty); call for prompt and generated tokens. */
void ei_sampler_accept(ei_sampler *smp, int32_t id);
void ei_sampler_reset(ei_sampler *smp);

/* ------------------------------------------------------------------ checkpoint */

/* A session's whole state (counters, layout, the KV slots in use, compressed memory, last logits, the ids of the tokens
 * in the cache, and optionally a sampler's RNG + history) as one little-endian file; format in docs/checkpoint.md.
 * streaming/edgeinfinite/edgeinfinite+pod checkpoints have a constant size; full and pod ones grow with the context.
 * A checkpoint loads only into a session of the same model (fingerprint), policy layout and adapter, and a sampler
 * created with the same params. Loading validates everything first: on any error the session and sampler are
 * unchanged. */
#define EI_CHECKPOINT_VERSION 1

/* Atomically writes the checkpoint to `path` (path.tmp, fsync, rename, fsync of the directory): a failure leaves a
 * previous file at `path` intact. smp may be NULL (no sampler state saved). */
int ei_session_save(const ei_session *s, const ei_sampler *smp, const char *path);
/* Restores s (and smp when not NULL; then the file must hold a sampler state) from a file written by ei_session_save.
 * Errors: EI_ERR_IO, EI_ERR_FORMAT (empty, truncated, CRC mismatch), EI_ERR_UNSUPPORTED (other format version),
 * EI_ERR_MISMATCH (other model, layout or adapter). */
int ei_session_load(ei_session *s, ei_sampler *smp, const char *path);
/* The same into / from memory (for callers that store the bytes themselves, e.g. IndexedDB). save_to_buffer sets
 * *n_out to the checkpoint's size and returns EI_ERR_BUFFER_TOO_SMALL when cap is smaller (buf may then be NULL). */
int ei_session_save_to_buffer(const ei_session *s, const ei_sampler *smp, void *buf, size_t cap, size_t *n_out);
int ei_session_load_from_buffer(ei_session *s, ei_sampler *smp, const void *data, size_t size);

/* ------------------------------------------------------------------ stop strings */

/* Streams generated text and stops at the first occurrence of any stop string, never emitting the stop string or a
 * prefix of one that may still complete. */
typedef struct ei_stop ei_stop;

/* Copies the n strings (empty strings are ignored). */
int ei_stop_create(const char *const *strs, int32_t n, ei_stop **out);
void ei_stop_free(ei_stop *st);
/* Feeds text; writes to buf what is now safe to show (NUL-terminated, *n_out bytes) and sets *stopped = 1 once a stop
 * string appeared (everything from it on is dropped; later pushes emit nothing). BUFFER_TOO_SMALL with *n_out = bytes
 * needed when cap is short (nothing consumed). */
int ei_stop_push(ei_stop *st, const char *text, int32_t len, char *buf, int32_t cap, int32_t *n_out, int32_t *stopped);
/* End of generation: emits the held-back text (it did not become a stop string). */
int ei_stop_flush(ei_stop *st, char *buf, int32_t cap, int32_t *n_out);

#ifdef __cplusplus
}
#endif
#endif /* EDGEINF_H */
