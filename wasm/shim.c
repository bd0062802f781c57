/* shim.c — the C functions the JavaScript runtime calls (web/engine-core.js).
 *
 * Thin on purpose: it wraps edgeinf.h into signatures that are easy to call through emscripten
 * (plain ints, floats and pointers, no structs by value) and keeps the small per-session state the
 * streaming loop needs (a constant-size identity of the tokens fed so far for prompt-prefix reuse, the
 * sampled-but-not-yet-fed token, the UTF-8-safe detokenizer, the sampler of the last generation, the text of
 * the last step). All model math stays in src/. Checkpoints (save / restore) are in shim_checkpoint.c.
 *
 * Error convention: functions return a negative EI_ERR_* (or NULL) and leave the message in
 * ei_last_error(); eiw_last_code() repeats the code for the calls that return a pointer.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "edgeinf.h"
#include "error.h"
#include "shim.h"

/* eiw_gen_step() result when the model produced its end-of-sequence token. */
#define EIW_DONE_EOS (-1000)

static int g_last_code;

int eiw_fail(int code) {
    g_last_code = code;
    return code;
}
#define fail eiw_fail

/* Code of the last failing shim call (0 if the last call succeeded). */
EIW_EXPORT int eiw_last_code(void) { return g_last_code; }
/* Message with context of the last failure on this thread (borrowed). */
EIW_EXPORT const char *eiw_last_error(void) { return ei_last_error(); }
/* Static "EI_ERR_X: description" for a code (borrowed). */
EIW_EXPORT const char *eiw_strerror(int code) { return ei_strerror(code); }

/* ------------------------------------------------------------------ token history identity */

/* splitmix64's finaliser: a bijective 64-bit mixer, so each lane is a chain of strong mixes of (lane ^ token). */
static uint64_t mix64(uint64_t x) {
    x ^= x >> 30;
    x *= 0xbf58476d1ce4e5b9ull;
    x ^= x >> 27;
    x *= 0x94d049bb133111ebull;
    return x ^ (x >> 31);
}

void eiw_hist_init(eiw_hist *h) {
    h->n = 0;
    h->a = 0x243f6a8885a308d3ull;  /* two unrelated seeds (digits of pi and e) */
    h->b = 0xb7e151628aed2a6bull;
    h->known = 1;
}

void eiw_hist_push(eiw_hist *h, const int32_t *ids, int64_t n) {
    for (int64_t i = 0; i < n; i++) {
        uint64_t t = (uint64_t)(uint32_t)ids[i];
        h->a = mix64(h->a ^ (t + 0x9e3779b97f4a7c15ull));
        h->b = mix64(h->b + t * 0xd6e8feb86659fd93ull + 1);
    }
    h->n += n;
}

/* ------------------------------------------------------------------ model */

/* Loads a GGUF model from buf (allocated with malloc by the caller). Takes ownership of buf in every
 * case: it is freed on failure, or with the model by eiw_model_free. Returns NULL on failure. */
EIW_EXPORT eiw_model *eiw_model_load(void *buf, uint32_t size, int32_t n_threads) {
    g_last_code = 0;
    eiw_model *m = calloc(1, sizeof *m);
    if (!m) {
        free(buf);
        fail(EI_ERR_NOMEM);
        return NULL;
    }
    ei_model_params mp = ei_model_default_params();
    mp.use_mmap = 0;
    mp.n_threads = n_threads;
    int rc = ei_model_load_from_buffer(buf, size, &mp, &m->model);
    if (rc < 0) {
        free(buf);
        free(m);
        fail(rc);
        return NULL;
    }
    m->buf = buf;
    return m;
}

/* Frees the model and its bytes. Sessions on it must be freed first. NULL is ignored. */
EIW_EXPORT void eiw_model_free(eiw_model *m) {
    if (!m) return;
    ei_adapter_free(m->adapter);
    ei_model_free(m->model);
    free(m->buf);
    free(m);
}

/* Loads an adapter GGUF from buf (the caller keeps ownership: the engine copies what it needs) and uses it
 * for sessions created afterwards, replacing any previous one. Returns 0 or a negative error. */
EIW_EXPORT int32_t eiw_model_set_adapter(eiw_model *m, const void *buf, uint32_t size) {
    ei_adapter *a = NULL;
    int rc = ei_adapter_load_from_buffer(m->model, buf, size, &a);
    if (rc < 0) return fail(rc);
    ei_adapter_free(m->adapter);
    m->adapter = a;
    g_last_code = 0;
    return 0;
}

/* Trainable parameters of the loaded adapter (0 if none). */
EIW_EXPORT double eiw_adapter_n_params(const eiw_model *m) {
    return m->adapter ? (double)ei_adapter_n_params(m->adapter) : 0;
}

/* The loaded adapter's kind ("edgeinfinite", "pod", "edgeinfinite+pod"; "none" without one). */
EIW_EXPORT const char *eiw_adapter_kind(const eiw_model *m) { return ei_adapter_kind(m->adapter); }

/* Integer facts about the model: 0 n_vocab, 1 n_ctx_train, 2 n_layer, 3 bos id, 4 eos id (-1 = none). */
EIW_EXPORT int32_t eiw_model_int(const eiw_model *m, int32_t which) {
    const ei_tokenizer *tok = ei_model_get_tokenizer(m->model);
    switch (which) {
    case 0: return ei_model_n_vocab(m->model);
    case 1: return ei_model_n_ctx_train(m->model);
    case 2: return ei_model_n_layer(m->model);
    case 3: return ei_tokenizer_bos(tok);
    case 4: return ei_tokenizer_eos(tok);
    default: return -1;
    }
}

/* Parameter count as a double (exact below 2^53). */
EIW_EXPORT double eiw_model_n_params(const eiw_model *m) { return (double)ei_model_n_params(m->model); }
/* String metadata value or NULL (borrowed, lives as long as the model). */
EIW_EXPORT const char *eiw_model_meta_str(const eiw_model *m, const char *key) {
    return ei_model_meta_str(m->model, key);
}
/* Hex fingerprint of the model (borrowed). */
EIW_EXPORT const char *eiw_model_fingerprint(const eiw_model *m) { return ei_model_fingerprint(m->model); }

/* Tokenizes NUL-terminated text into a malloc'd array (*ids, caller frees; *n ids). Byte fallback
 * gives at most one token per byte, plus the dummy prefix and BOS/EOS, so len + 8 always fits; the
 * second try only guards against a tokenizer that needs more. */
static int tokenize_alloc(const ei_tokenizer *tok, const char *text, int32_t add_bos, int32_t **ids, int32_t *n) {
    int32_t flags = add_bos ? EI_TOKENIZE_ADD_BOS : 0;
    size_t len = strlen(text);
    if (len > INT32_MAX - 16) return EI_ERR_INVALID_ARG;
    int32_t cap = (int32_t)len + 8;
    for (int attempt = 0; attempt < 2; attempt++) {
        *ids = malloc((size_t)cap * sizeof **ids);
        if (!*ids) return EI_ERR_NOMEM;
        int rc = ei_tokenize(tok, text, (int32_t)len, flags, *ids, cap, n);
        if (rc == 0) return 0;
        free(*ids);
        *ids = NULL;
        if (rc != EI_ERR_BUFFER_TOO_SMALL || *n <= cap) return rc;
        cap = *n;
    }
    return EI_ERR_INTERNAL;
}

/* Number of tokens text encodes to (with BOS when add_bos), or a negative error. */
EIW_EXPORT int32_t eiw_count_tokens(const eiw_model *m, const char *text, int32_t add_bos) {
    int32_t *ids = NULL, n = 0;
    int rc = tokenize_alloc(ei_model_get_tokenizer(m->model), text, add_bos, &ids, &n);
    free(ids);
    return rc < 0 ? fail(rc) : n;
}

/* ------------------------------------------------------------------ session */

/* A shim session on an engine session made with sp (the model's adapter is given to it). NULL on failure. */
static eiw_session *session_new(eiw_model *m, ei_session_params *sp) {
    sp->adapter = m->adapter;
    eiw_session *ws = calloc(1, sizeof *ws);
    if (!ws) {
        fail(EI_ERR_NOMEM);
        return NULL;
    }
    int rc = ei_session_create(m->model, sp, &ws->s);
    if (rc < 0) {
        free(ws);
        fail(rc);
        return NULL;
    }
    ws->m = m;
    ws->pending = -1;
    eiw_hist_init(&ws->hist);
    return ws;
}

/* Creates a session. policy is a name ("auto", "full", ...); integer params <= 0 (and memory_budget
 * <= 0) keep the engine's defaults (n_threads is unused: the model's pool serves every session). Returns NULL on
 * failure. The model must outlive the session. */
EIW_EXPORT eiw_session *eiw_session_create_pod(eiw_model *m, const char *policy, int32_t n_ctx, int32_t n_sink,
                                               int32_t window, int32_t seg, int32_t n_recent, int32_t pod_share,
                                               double memory_budget);
EIW_EXPORT eiw_session *eiw_session_create(eiw_model *m, const char *policy, int32_t n_ctx, int32_t n_sink,
                                           int32_t window, int32_t seg, int32_t n_threads,
                                           double memory_budget) {
    (void)n_threads;
    return eiw_session_create_pod(m, policy, n_ctx, n_sink, window, seg, 0, 0, memory_budget);
}

/* Frees the session and any generation state. NULL is ignored. */
EIW_EXPORT void eiw_session_free(eiw_session *ws) {
    if (!ws) return;
    ei_sampler_free(ws->smp);
    ei_session_free(ws->s);
    free(ws->todo);
    free(ws);
}

/* Forgets the tokens (KV cache, memory, history, prompt still to read); keeps the sampler. */
static void forget_tokens(eiw_session *ws) {
    ei_session_reset(ws->s);
    eiw_hist_init(&ws->hist);
    ws->n_todo = ws->i_todo = 0;
    ws->pending = -1;
}

/* Forgets every token of the session and the last generation's sampler (nothing is left to continue). */
EIW_EXPORT void eiw_session_reset(eiw_session *ws) {
    forget_tokens(ws);
    ei_sampler_free(ws->smp);
    ws->smp = NULL;
    ws->generating = 0;
}

/* Writes the session's stats as 13 doubles: policy, tokens, kv_tokens, kv_bytes, memory_bytes,
 * compressions, prefill_tokens, prefill_ms, decode_tokens, decode_ms, n_sink, window, seg. */
EIW_EXPORT void eiw_session_stats(const eiw_session *ws, double *out) {
    ei_session_stats st;
    memset(&st, 0, sizeof st);
    ei_session_get_stats(ws->s, &st);
    out[0] = st.policy;
    out[1] = (double)st.tokens;
    out[2] = (double)st.kv_tokens;
    out[3] = (double)st.kv_bytes;
    out[4] = (double)st.memory_bytes;
    out[5] = (double)st.compressions;
    out[6] = (double)st.prefill_tokens;
    out[7] = st.prefill_ms;
    out[8] = (double)st.decode_tokens;
    out[9] = st.decode_ms;
    out[10] = st.n_sink;
    out[11] = st.window;
    out[12] = st.seg;
}

/* Name of a policy enum value (borrowed). */
EIW_EXPORT const char *eiw_policy_name(int32_t policy) { return ei_policy_name(policy); }

/* ------------------------------------------------------------------ generation */

/* Sampler params from the JS call: negative top_k / repeat_last_n and NaN floats keep the defaults; the seed is
 * given as two 32-bit halves and used only when has_seed. */
static ei_sampler_params sampler_params(float temperature, int32_t top_k, float top_p, float min_p,
                                        float repeat_penalty, int32_t repeat_last_n, int32_t has_seed,
                                        uint32_t seed_lo, uint32_t seed_hi) {
    ei_sampler_params qp = ei_sampler_default_params();
    if (temperature == temperature) qp.temperature = temperature;
    if (top_k >= 0) qp.top_k = top_k;
    if (top_p == top_p) qp.top_p = top_p;
    if (min_p == min_p) qp.min_p = min_p;
    if (repeat_penalty == repeat_penalty) qp.repeat_penalty = repeat_penalty;
    if (repeat_last_n >= 0) qp.repeat_last_n = repeat_last_n;
    if (has_seed) qp.seed = ((uint64_t)seed_hi << 32) | seed_lo;
    return qp;
}

/* Makes a sampler with qp the session's (replacing the previous one). Returns 0 or a negative error. */
static int set_sampler(eiw_session *ws, const ei_sampler_params *qp) {
    ei_sampler *smp = NULL;
    int rc = ei_sampler_create(qp, &smp);
    if (rc < 0) return rc;
    ei_sampler_free(ws->smp);
    ws->smp = smp;
    ws->qp = *qp;
    return 0;
}

/* Hash of ids[0..n) in a fresh history (for the prefix test of eiw_gen_begin). */
static eiw_hist hist_of(const int32_t *ids, int64_t n) {
    eiw_hist h;
    eiw_hist_init(&h);
    eiw_hist_push(&h, ids, n);
    return h;
}

/* Starts a generation for `text` (the whole context: a fresh prompt or a full chat transcript).
 * When the tokens of text extend what the session already holds (same count and hash of the first
 * hist.n tokens), only the new tail is prefilled (the KV cache is reused); otherwise the session's tokens are
 * forgotten first. Sampling params: see sampler_params. Returns the number of prompt tokens still to prefill
 * (call eiw_gen_prefill until it returns 0), or a negative error. */
EIW_EXPORT int32_t eiw_gen_begin(eiw_session *ws, const char *text, int32_t add_bos, float temperature,
                                 int32_t top_k, float top_p, float min_p, float repeat_penalty,
                                 int32_t repeat_last_n, int32_t has_seed, uint32_t seed_lo, uint32_t seed_hi) {
    const ei_tokenizer *tok = ei_model_get_tokenizer(ws->m->model);
    ws->generating = 0;
    int32_t *ids = NULL, n = 0;
    int rc = tokenize_alloc(tok, text, add_bos, &ids, &n);
    if (rc < 0) return fail(rc);
    if (n == 0) {  /* nothing to condition on: no BOS and empty text */
        free(ids);
        return fail(ei_set_error(EI_ERR_INVALID_ARG, "generate: the prompt is empty"));
    }
    ei_sampler_params qp = sampler_params(temperature, top_k, top_p, min_p, repeat_penalty, repeat_last_n,
                                          has_seed, seed_lo, seed_hi);
    if ((rc = set_sampler(ws, &qp)) < 0) {
        free(ids);
        return fail(rc);
    }

    /* Reuse the KV cache when the new context starts with everything fed so far. */
    int32_t keep = 0;
    if (ws->hist.known && ws->hist.n > 0 && n >= ws->hist.n) {
        eiw_hist h = hist_of(ids, ws->hist.n);
        if (h.a == ws->hist.a && h.b == ws->hist.b) keep = (int32_t)ws->hist.n;
    }
    if (!keep && (ws->hist.n > 0 || ws->n_todo > 0 || !ws->hist.known)) forget_tokens(ws);
    ws->pending = -1;
    for (int32_t i = 0; i < n; i++) ei_sampler_accept(ws->smp, ids[i]);

    free(ws->todo);
    ws->todo = NULL;
    ws->n_todo = ws->i_todo = 0;
    if (n > keep) {
        ws->todo = malloc((size_t)(n - keep) * sizeof *ws->todo);
        if (!ws->todo) {
            free(ids);
            return fail(EI_ERR_NOMEM);
        }
        memcpy(ws->todo, ids + keep, (size_t)(n - keep) * sizeof *ids);
        ws->n_todo = n - keep;
    }

    /* Generated text continues the prompt: keep the leading space of its first piece (only a token that
     * starts the whole text loses its dummy-prefix space), unless the prompt holds no text at all. */
    ei_detok_init(&ws->detok, tok);
    int32_t bos = ei_tokenizer_bos(tok);
    int32_t n_text = (add_bos && bos >= 0 && ids[0] == bos) ? n - 1 : n;
    ws->detok.n_pushed = n_text;
    ws->detok.at_start = n_text == 0;
    free(ids);
    ws->text[0] = '\0';
    ws->generating = 1;
    g_last_code = 0;
    return ws->n_todo;
}

/* Starts a generation that continues exactly where the last one stopped (no new text: the last sampled token is
 * fed, and the text goes on with the same detokenizer). With fresh = 0 the last generation's sampler continues (its
 * params, RNG state and penalty history: a greedy or seeded run split in two gives the tokens of one run); with
 * fresh = 1 (or when the session has no sampler, e.g. restored from a checkpoint without shim state) a new sampler
 * with the given params is used. EI_ERR_INVALID_ARG when there is nothing to continue (no token fed, or the last
 * prompt was not completely read). Returns 0 or a negative error. */
EIW_EXPORT int32_t eiw_gen_continue(eiw_session *ws, int32_t fresh, float temperature, int32_t top_k, float top_p,
                                    float min_p, float repeat_penalty, int32_t repeat_last_n, int32_t has_seed,
                                    uint32_t seed_lo, uint32_t seed_hi) {
    ws->generating = 0;
    if (ws->i_todo < ws->n_todo)
        return fail(ei_set_error(EI_ERR_INVALID_ARG, "continue: the last prompt was not completely read (aborted?); "
                                                     "generate with the whole text instead"));
    if (ws->pending < 0 && !ei_session_get_logits(ws->s))
        return fail(ei_set_error(EI_ERR_INVALID_ARG, "continue: nothing to continue (the session holds no tokens)"));
    if (fresh || !ws->smp) {
        ei_sampler_params qp = sampler_params(temperature, top_k, top_p, min_p, repeat_penalty, repeat_last_n,
                                              has_seed, seed_lo, seed_hi);
        int rc = set_sampler(ws, &qp);
        if (rc < 0) return fail(rc);
    }
    ws->text[0] = '\0';
    ws->generating = 1;
    g_last_code = 0;
    return 0;
}

/* Prefills up to max_n of the remaining prompt tokens. Returns how many remain (0 = logits ready), or a
 * negative error (EI_ERR_CONTEXT_FULL...; the session then holds only what was fed before). */
EIW_EXPORT int32_t eiw_gen_prefill(eiw_session *ws, int32_t max_n) {
    int32_t left = ws->n_todo - ws->i_todo;
    if (left <= 0) return 0;
    int32_t n = (max_n > 0 && max_n < left) ? max_n : left;
    int rc = ei_session_prefill(ws->s, ws->todo + ws->i_todo, n);
    if (rc < 0) return fail(rc);
    eiw_hist_push(&ws->hist, ws->todo + ws->i_todo, n);
    ws->i_todo += n;
    return ws->n_todo - ws->i_todo;
}

/* One streaming step: feeds the previously sampled token (if any), samples the next one and turns it
 * into text (eiw_gen_text). Returns the token id, EIW_DONE_EOS when the model ended the text, or a
 * negative error (EI_ERR_CONTEXT_FULL when the policy's budget is spent). Feeding lazily means a
 * generation that stops at max tokens does not pay for one extra forward pass. */
EIW_EXPORT int32_t eiw_gen_step(eiw_session *ws) {
    ws->text[0] = '\0';
    if (!ws->generating || !ws->smp || ws->i_todo < ws->n_todo) return fail(EI_ERR_INVALID_ARG);
    if (ws->pending >= 0) {
        int rc = ei_session_decode(ws->s, ws->pending);
        if (rc < 0) return fail(rc);
        eiw_hist_push(&ws->hist, &ws->pending, 1);
        ws->pending = -1;
    }
    const float *logits = ei_session_get_logits(ws->s);
    if (!logits) return fail(EI_ERR_INVALID_ARG);
    int32_t n_vocab = ei_model_n_vocab(ws->m->model);
    int32_t t = ei_sampler_sample(ws->smp, logits, n_vocab);
    if (t < 0) return fail(t);
    if (t == ei_tokenizer_eos(ei_model_get_tokenizer(ws->m->model))) return EIW_DONE_EOS;
    ei_sampler_accept(ws->smp, t);
    ws->pending = t;
    int32_t n_out = 0;
    int rc = ei_detok_push(&ws->detok, t, ws->text, EIW_TEXT_CAP, &n_out);
    if (rc < 0) return fail(rc);
    g_last_code = 0;
    return t;
}

/* Ends a generation: emits what the detokenizer still holds (into eiw_gen_text). The session keeps its tokens for
 * the next generation, and the sampler for eiw_gen_continue and checkpoints. Returns the bytes of text emitted. */
EIW_EXPORT int32_t eiw_gen_end(eiw_session *ws) {
    int32_t n_out = 0;
    ws->text[0] = '\0';
    if (ei_detok_flush(&ws->detok, ws->text, EIW_TEXT_CAP, &n_out) < 0) n_out = 0;
    ws->generating = 0;
    return n_out;
}

/* Text (UTF-8, NUL-terminated) produced by the last eiw_gen_step / eiw_gen_end; borrowed. */
EIW_EXPORT const char *eiw_gen_text(const eiw_session *ws) { return ws->text; }

/* ------------------------------------------------------------------ raw token feeds (test tools)
 * The token-level calls of edgeinf.h, for tools that drive the engine by ids (tests/wasm/logits_dump.mjs runs the
 * parity checkers against the wasm builds). Each keeps the session's token history in step, so prefix reuse and
 * checkpoints stay coherent, and ends any generation in progress (its pending token and prompt are dropped). */

/* The thread pool's size (the caller + its workers actually started; 1 in the single-thread build). */
EIW_EXPORT int32_t eiw_model_n_threads(const eiw_model *m) { return ei_model_n_threads(m->model); }

/* eiw_session_create plus the pod options: n_recent (<= 0: the adapter's) and pod_share (0 adapter's, 1 scores,
 * 2 keys). Returns NULL on failure. */
EIW_EXPORT eiw_session *eiw_session_create_pod(eiw_model *m, const char *policy, int32_t n_ctx, int32_t n_sink,
                                               int32_t window, int32_t seg, int32_t n_recent, int32_t pod_share,
                                               double memory_budget) {
    g_last_code = 0;
    ei_session_params sp = ei_session_default_params();
    int rc = ei_policy_from_name(policy, &sp.policy);
    if (rc < 0) {
        fail(rc);
        return NULL;
    }
    if (n_ctx > 0) sp.n_ctx = n_ctx;
    if (n_sink > 0) sp.n_sink = n_sink;
    if (window > 0) sp.window = window;
    if (seg > 0) sp.seg = seg;
    if (n_recent > 0) sp.n_recent = n_recent;
    sp.pod_share = pod_share;
    if (memory_budget > 0) sp.memory_budget = (int64_t)memory_budget;
    return session_new(m, &sp);
}

/* Drops what a generation left half done before tokens are fed directly. */
static void end_generation(eiw_session *ws) {
    ws->generating = 0;
    ws->pending = -1;
    free(ws->todo);
    ws->todo = NULL;
    ws->n_todo = ws->i_todo = 0;
}

/* ei_session_eval: feeds ids[0..n) in one prefill and writes the logits after every one of them to out (n * n_vocab
 * floats, caller-owned). Returns 0 or a negative error (the session is then unchanged). */
EIW_EXPORT int32_t eiw_session_eval(eiw_session *ws, const int32_t *ids, int32_t n, float *out) {
    end_generation(ws);
    int rc = ei_session_eval(ws->s, ids, n, out);
    if (rc < 0) return fail(rc);
    eiw_hist_push(&ws->hist, ids, n);
    g_last_code = 0;
    return 0;
}

/* ei_session_prefill of ids[0..n). Returns 0 or a negative error. */
EIW_EXPORT int32_t eiw_session_prefill(eiw_session *ws, const int32_t *ids, int32_t n) {
    end_generation(ws);
    int rc = ei_session_prefill(ws->s, ids, n);
    if (rc < 0) return fail(rc);
    eiw_hist_push(&ws->hist, ids, n);
    g_last_code = 0;
    return 0;
}

/* ei_session_decode of one id. Returns 0 or a negative error. */
EIW_EXPORT int32_t eiw_session_decode(eiw_session *ws, int32_t id) {
    end_generation(ws);
    int rc = ei_session_decode(ws->s, id);
    if (rc < 0) return fail(rc);
    eiw_hist_push(&ws->hist, &id, 1);
    g_last_code = 0;
    return 0;
}

/* The next-token logits after the last token fed (n_vocab floats, borrowed until the next feed), or NULL. */
EIW_EXPORT const float *eiw_session_logits(const eiw_session *ws) { return ei_session_get_logits(ws->s); }
