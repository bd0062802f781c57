/* engine_stub.c — a fake edgeinf engine (same edgeinf.h API) for testing the browser plumbing alone.
 *
 * Byte-level "model": ids 0..255 are bytes, 256 = BOS, 257 = EOS. The GGUF check is only the magic,
 * so a non-GGUF file fails like the real engine. The logits always point at the next byte of a fixed
 * text, so greedy output is predictable. Built only by `make wasm-stub` (never shipped).
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "edgeinf.h"

static const char STORY[] = "Once upon a time there was a small engine that streamed tokens. ";
static char g_err[256];

static int set_err(int code, const char *msg) {
    snprintf(g_err, sizeof g_err, "%s", msg);
    return code;
}
const char *ei_strerror(int err) {
    switch (err) {
    case EI_ERR_FORMAT: return "EI_ERR_FORMAT: malformed file";
    case EI_ERR_NOMEM: return "EI_ERR_NOMEM: allocation failed";
    case EI_ERR_CONTEXT_FULL: return "EI_ERR_CONTEXT_FULL: context full";
    case EI_ERR_INVALID_ARG: return "EI_ERR_INVALID_ARG: bad argument";
    case EI_ERR_UNSUPPORTED: return "EI_ERR_UNSUPPORTED: unsupported";
    default: return "EI_ERR: other";
    }
}
const char *ei_last_error(void) { return g_err; }

struct ei_tokenizer { int dummy; };
struct ei_model { ei_tokenizer tok; size_t size; };
struct ei_session { const ei_model *m; int64_t tokens; int32_t n_ctx; int32_t policy; float logits[258]; int ready; double ms; };
struct ei_sampler { ei_sampler_params p; uint64_t rng; };

ei_model_params ei_model_default_params(void) { ei_model_params p = {0, 0}; return p; }
int ei_model_load_from_buffer(const void *data, size_t size, const ei_model_params *params, ei_model **out) {
    (void)params;
    if (size < 4 || memcmp(data, "GGUF", 4) != 0) return set_err(EI_ERR_FORMAT, "stub: bad magic (not a GGUF file)");
    if (size < 64) return set_err(EI_ERR_FORMAT, "stub: truncated GGUF header");
    ei_model *m = calloc(1, sizeof *m);
    if (!m) return set_err(EI_ERR_NOMEM, "stub: no memory");
    m->size = size;
    *out = m;
    return 0;
}
void ei_model_free(ei_model *m) { free(m); }
int32_t ei_model_n_vocab(const ei_model *m) { (void)m; return 258; }
int32_t ei_model_n_ctx_train(const ei_model *m) { (void)m; return 512; }
int32_t ei_model_n_layer(const ei_model *m) { (void)m; return 1; }
int64_t ei_model_n_params(const ei_model *m) { return (int64_t)m->size; }
const ei_tokenizer *ei_model_get_tokenizer(const ei_model *m) { return &m->tok; }
const char *ei_model_meta_str(const ei_model *m, const char *key) {
    (void)m;
    return strcmp(key, "general.name") == 0 ? "stub" : NULL;
}
const char *ei_model_fingerprint(const ei_model *m) { (void)m; return "0123456789abcdef"; }
int32_t ei_tokenizer_bos(const ei_tokenizer *t) { (void)t; return 256; }
int32_t ei_tokenizer_eos(const ei_tokenizer *t) { (void)t; return 257; }
int ei_tokenize(const ei_tokenizer *tok, const char *text, int32_t len, int32_t flags, int32_t *ids, int32_t cap,
                int32_t *n_out) {
    (void)tok;
    if (len < 0) len = (int32_t)strlen(text);
    int32_t n = len + ((flags & EI_TOKENIZE_ADD_BOS) ? 1 : 0);
    *n_out = n;
    if (n > cap) return EI_ERR_BUFFER_TOO_SMALL;
    int32_t k = 0;
    if (flags & EI_TOKENIZE_ADD_BOS) ids[k++] = 256;
    for (int32_t i = 0; i < len; i++) ids[k++] = (unsigned char)text[i];
    return 0;
}
void ei_detok_init(ei_detok *d, const ei_tokenizer *tok) { memset(d, 0, sizeof *d); d->tok = tok; }
int ei_detok_push(ei_detok *d, int32_t id, char *buf, int32_t cap, int32_t *n_out) {
    (void)cap;
    *n_out = 0;
    buf[0] = 0;
    d->n_pushed++;
    if (id >= 256) return 0;
    d->pending[d->n_pending++] = (char)id;
    unsigned char c0 = (unsigned char)d->pending[0];
    int need = c0 < 0x80 ? 1 : c0 >= 0xF0 ? 4 : c0 >= 0xE0 ? 3 : 2;
    if (d->n_pending < need) return 0;
    memcpy(buf, d->pending, (size_t)d->n_pending);
    buf[d->n_pending] = 0;
    *n_out = d->n_pending;
    d->n_pending = 0;
    return 0;
}
int ei_detok_flush(ei_detok *d, char *buf, int32_t cap, int32_t *n_out) {
    (void)d; (void)cap;
    buf[0] = 0;
    *n_out = 0;
    return 0;
}
int ei_policy_from_name(const char *name, int32_t *out) {
    static const char *names[] = {"auto", "full", "streaming", "edgeinfinite", "pod", "edgeinfinite+pod"};
    for (int i = 0; i < 6; i++)
        if (strcmp(name, names[i]) == 0) {
            if (i >= 2) return set_err(EI_ERR_UNSUPPORTED, "stub: policy not implemented yet");
            *out = i;
            return 0;
        }
    return set_err(EI_ERR_INVALID_ARG, "stub: unknown policy name");
}
const char *ei_policy_name(int32_t p) { return p == 0 ? "auto" : p == 1 ? "full" : "other"; }
ei_session_params ei_session_default_params(void) {
    ei_session_params p;
    memset(&p, 0, sizeof p);
    return p;
}
int ei_session_create(ei_model *m, const ei_session_params *p, ei_session **out) {
    int32_t n_ctx = p->n_ctx > 0 ? p->n_ctx : 512;
    if ((double)n_ctx * 4096.0 > 3.5e9) return set_err(EI_ERR_NOMEM, "stub: KV cache too large");
    ei_session *s = calloc(1, sizeof *s);
    if (!s) return set_err(EI_ERR_NOMEM, "stub: no memory");
    s->m = m;
    s->n_ctx = n_ctx;
    s->policy = p->policy;
    *out = s;
    return 0;
}
void ei_session_free(ei_session *s) { free(s); }
void ei_session_reset(ei_session *s) { s->tokens = 0; s->ready = 0; }
/* Burns a little CPU per token so streaming is observable, like a real model would. */
static void work(void) {
    volatile double x = 0;
    for (int i = 0; i < 200000; i++) x += sin(i);
}
int ei_session_prefill(ei_session *s, const int32_t *ids, int32_t n) {
    if (s->tokens + n > s->n_ctx) return set_err(EI_ERR_CONTEXT_FULL, "stub: context full");
    for (int32_t i = 0; i < n; i++)
        if (ids[i] < 0 || ids[i] >= 258) return set_err(EI_ERR_RANGE, "stub: bad token id");
    s->tokens += n;
    work();
    for (int i = 0; i < 258; i++) s->logits[i] = 0;
    s->logits[(unsigned char)STORY[s->tokens % (int64_t)(sizeof STORY - 1)]] = 5;
    s->ready = 1;
    return 0;
}
int ei_session_decode(ei_session *s, int32_t id) { return ei_session_prefill(s, &id, 1); }
const float *ei_session_get_logits(const ei_session *s) { return s->ready ? s->logits : NULL; }
void ei_session_get_stats(const ei_session *s, ei_session_stats *o) {
    memset(o, 0, sizeof *o);
    o->policy = s->policy;
    o->tokens = s->tokens;
    o->kv_tokens = s->tokens;
    o->kv_bytes = s->tokens * 4096;
    o->decode_tokens = s->tokens;
    o->decode_ms = (double)s->tokens;
}
ei_sampler_params ei_sampler_default_params(void) {
    ei_sampler_params p = {0.8f, 40, 0.95f, 0.05f, 1.0f, 64, 42};
    return p;
}
int ei_sampler_create(const ei_sampler_params *p, ei_sampler **out) {
    ei_sampler *s = calloc(1, sizeof *s);
    if (!s) return EI_ERR_NOMEM;
    s->p = *p;
    s->rng = p->seed * 6364136223846793005ULL + 1;
    *out = s;
    return 0;
}
void ei_sampler_free(ei_sampler *s) { free(s); }
int32_t ei_sampler_sample(ei_sampler *s, const float *logits, int32_t n) {
    int32_t best = 0;
    for (int32_t i = 1; i < n; i++)
        if (logits[i] > logits[best]) best = i;
    if (s->p.temperature <= 0) return best;
    s->rng = s->rng * 6364136223846793005ULL + 1442695040888963407ULL;
    return ((s->rng >> 33) % 4 == 0) ? (int32_t)('a' + (s->rng >> 40) % 26) : best;
}
void ei_sampler_accept(ei_sampler *s, int32_t id) { (void)s; (void)id; }
