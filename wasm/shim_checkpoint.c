/* shim_checkpoint.c — session checkpoints for the JavaScript runtime (web/engine-core.js).
 *
 * A saved session is two pieces, stored side by side by the caller (IndexedDB in the browser, a file in Node):
 *   - the engine's checkpoint (ei_session_save_to_buffer; docs/checkpoint.md): KV cache, compressed memory, counters,
 *     logits and, when a generation ran, the sampler's RNG + penalty history. Constant size for window policies.
 *   - the shim's state, EIW_STATE_BYTES (layout below): what the streaming loop keeps beside the engine (identity of
 *     the tokens fed, the sampled-but-not-fed token, the detokenizer, the sampler's params), so that a restored session
 *     reuses its KV cache for a prompt that extends the conversation and continues exactly where it stopped. It holds
 *     the checkpoint's size and CRC32, so a state is never applied to a checkpoint it was not saved with.
 *
 * Shim state, version 1, little-endian:
 *   0 magic "EIWS" | 4 u32 version | 8 u32 checkpoint size | 12 u32 checkpoint CRC32 | 16 i64 tokens fed (hist.n)
 *   24 u64 hash a | 32 u64 hash b | 40 i32 hist known | 44 i32 pending token (-1 none) | 48 i32 detok n_pushed
 *   52 i32 detok at_start | 56 i32 detok n_pending | 60 8 B detok pending bytes | 68 i32 has sampler
 *   72 f32 temperature | 76 i32 top_k | 80 f32 top_p | 84 f32 min_p | 88 f32 repeat_penalty | 92 i32 repeat_last_n
 *   96 u64 seed | 104 u32 reserved 0 | 108 u32 CRC32 of bytes 0..107
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "edgeinf.h"
#include "error.h"
#include "shim.h"

#define EIW_STATE_BYTES 112
#define EIW_STATE_VERSION 1

/* ------------------------------------------------------------------ bytes */

/* CRC32 (IEEE, as zlib and docs/checkpoint.md), table built on first use. */
static uint32_t crc32_of(const uint8_t *p, size_t n) {
    static uint32_t table[256];
    static int ready;
    if (!ready) {
        for (uint32_t i = 0; i < 256; i++) {
            uint32_t c = i;
            for (int k = 0; k < 8; k++) c = (c & 1) ? 0xEDB88320u ^ (c >> 1) : c >> 1;
            table[i] = c;
        }
        ready = 1;
    }
    uint32_t c = 0xFFFFFFFFu;
    for (size_t i = 0; i < n; i++) c = table[(c ^ p[i]) & 0xFF] ^ (c >> 8);
    return c ^ 0xFFFFFFFFu;
}

static void put32(uint8_t *p, uint32_t v) {
    for (int i = 0; i < 4; i++) p[i] = (uint8_t)(v >> (8 * i));
}
static void put64(uint8_t *p, uint64_t v) {
    for (int i = 0; i < 8; i++) p[i] = (uint8_t)(v >> (8 * i));
}
static uint32_t get32(const uint8_t *p) {
    uint32_t v = 0;
    for (int i = 0; i < 4; i++) v |= (uint32_t)p[i] << (8 * i);
    return v;
}
static uint64_t get64(const uint8_t *p) {
    uint64_t v = 0;
    for (int i = 0; i < 8; i++) v |= (uint64_t)p[i] << (8 * i);
    return v;
}
static void putf(uint8_t *p, float f) {
    uint32_t v;
    memcpy(&v, &f, 4);
    put32(p, v);
}
static float getf(const uint8_t *p) {
    uint32_t v = get32(p);
    float f;
    memcpy(&f, &v, 4);
    return f;
}

/* ------------------------------------------------------------------ save */

/* Bytes of the shim state (constant). */
EIW_EXPORT int32_t eiw_state_bytes(void) { return EIW_STATE_BYTES; }

/* Size of the engine checkpoint eiw_session_save would write now (a double: exact below 2^53), or a negative error.
 * The sampler of the last generation is included when there is one. */
EIW_EXPORT double eiw_session_checkpoint_size(const eiw_session *ws) {
    size_t n = 0;
    int rc = ei_session_save_to_buffer(ws->s, ws->smp, NULL, 0, &n);
    if (rc < 0 && rc != EI_ERR_BUFFER_TOO_SMALL) return eiw_fail(rc);
    return (double)n;
}

/* Writes the engine checkpoint into buf (cap bytes, from eiw_session_checkpoint_size) and the shim state into
 * state (EIW_STATE_BYTES). Refused while a generation runs (between tokens its state is not a resting point).
 * Returns the checkpoint's size or a negative error. The session is not modified. */
EIW_EXPORT double eiw_session_save(const eiw_session *ws, uint8_t *buf, uint32_t cap, uint8_t *state) {
    if (ws->generating)
        return eiw_fail(ei_set_error(EI_ERR_INVALID_ARG, "save: a generation is running; save after it ends"));
    size_t n = 0;
    int rc = ei_session_save_to_buffer(ws->s, ws->smp, buf, cap, &n);
    if (rc < 0) return eiw_fail(rc);
    if (n > UINT32_MAX) return eiw_fail(ei_set_error(EI_ERR_UNSUPPORTED, "save: checkpoint over 4 GB"));

    memset(state, 0, EIW_STATE_BYTES);
    memcpy(state, "EIWS", 4);
    put32(state + 4, EIW_STATE_VERSION);
    put32(state + 8, (uint32_t)n);
    put32(state + 12, crc32_of(buf, n));
    put64(state + 16, (uint64_t)ws->hist.n);
    put64(state + 24, ws->hist.a);
    put64(state + 32, ws->hist.b);
    put32(state + 40, (uint32_t)ws->hist.known);
    put32(state + 44, (uint32_t)ws->pending);
    put32(state + 48, (uint32_t)ws->detok.n_pushed);
    put32(state + 52, (uint32_t)ws->detok.at_start);
    put32(state + 56, (uint32_t)ws->detok.n_pending);
    memcpy(state + 60, ws->detok.pending, 8);
    put32(state + 68, ws->smp ? 1u : 0u);
    if (ws->smp) {
        putf(state + 72, ws->qp.temperature);
        put32(state + 76, (uint32_t)ws->qp.top_k);
        putf(state + 80, ws->qp.top_p);
        putf(state + 84, ws->qp.min_p);
        putf(state + 88, ws->qp.repeat_penalty);
        put32(state + 92, (uint32_t)ws->qp.repeat_last_n);
        put64(state + 96, ws->qp.seed);
    }
    put32(state + 108, crc32_of(state, 108));
    return (double)n;
}

/* ------------------------------------------------------------------ restore */

/* The shim state's fields, validated. */
typedef struct shim_state {
    eiw_hist hist;
    int32_t pending, n_pushed, at_start, n_pending;
    char pending_bytes[8];
    int32_t has_sampler;
    ei_sampler_params qp;
} shim_state;

/* Parses and checks a shim state against the checkpoint bytes it must belong to. */
static int parse_state(const eiw_session *ws, const uint8_t *st, int32_t st_size, const uint8_t *ck, uint32_t ck_size,
                       shim_state *out) {
    if (st_size != EIW_STATE_BYTES)
        return ei_set_error(EI_ERR_FORMAT, "session state: %d bytes, expected %d", (int)st_size, EIW_STATE_BYTES);
    if (memcmp(st, "EIWS", 4) != 0) return ei_set_error(EI_ERR_FORMAT, "session state: bad magic");
    uint32_t version = get32(st + 4);
    if (version != EIW_STATE_VERSION)
        return ei_set_error(EI_ERR_UNSUPPORTED, "session state version %u is not supported: this build reads version %d",
                            (unsigned)version, EIW_STATE_VERSION);
    uint32_t crc = crc32_of(st, 108);
    if (get32(st + 108) != crc) return ei_set_error(EI_ERR_FORMAT, "session state: CRC mismatch");
    if (get32(st + 8) != ck_size)
        return ei_set_error(EI_ERR_FORMAT, "checkpoint is %u bytes, the session state was saved with one of %u "
                            "(truncated or replaced)", (unsigned)ck_size, (unsigned)get32(st + 8));
    if (get32(st + 12) != crc32_of(ck, ck_size))
        return ei_set_error(EI_ERR_FORMAT, "checkpoint bytes differ from those the session state was saved with "
                            "(corrupted or replaced)");
    memset(out, 0, sizeof *out);
    out->hist.n = (int64_t)get64(st + 16);
    out->hist.a = get64(st + 24);
    out->hist.b = get64(st + 32);
    out->hist.known = (int32_t)get32(st + 40);
    out->pending = (int32_t)get32(st + 44);
    out->n_pushed = (int32_t)get32(st + 48);
    out->at_start = (int32_t)get32(st + 52);
    out->n_pending = (int32_t)get32(st + 56);
    memcpy(out->pending_bytes, st + 60, 8);
    out->has_sampler = (int32_t)get32(st + 68);
    int32_t n_vocab = ei_model_n_vocab(ws->m->model);
    if (out->hist.n < 0 || (out->hist.known != 0 && out->hist.known != 1) || out->pending < -1 ||
        out->pending >= n_vocab || out->n_pushed < 0 || (out->at_start != 0 && out->at_start != 1) ||
        out->n_pending < 0 || out->n_pending > 8 || (out->has_sampler != 0 && out->has_sampler != 1))
        return ei_set_error(EI_ERR_FORMAT, "session state: a field is out of range");
    if (out->has_sampler) {
        out->qp.temperature = getf(st + 72);
        out->qp.top_k = (int32_t)get32(st + 76);
        out->qp.top_p = getf(st + 80);
        out->qp.min_p = getf(st + 84);
        out->qp.repeat_penalty = getf(st + 88);
        out->qp.repeat_last_n = (int32_t)get32(st + 92);
        out->qp.seed = get64(st + 96);
    }
    return 0;
}

/* Restores a session (created with the same model, policy, layout and adapter) from an engine checkpoint and, when
 * state_size > 0, the shim state saved with it. Without state (a checkpoint written by the CLI, say) the token
 * history is unknown: eiw_gen_continue continues from the checkpoint's logits, and the next eiw_gen_begin starts
 * over. Everything is validated before anything changes: on error the session is as it was.
 * Errors: EI_ERR_FORMAT / EI_ERR_UNSUPPORTED / EI_ERR_MISMATCH from the checkpoint (ei_session_load_from_buffer) or
 * the state, EI_ERR_INVALID_ARG while a generation runs. */
EIW_EXPORT int32_t eiw_session_restore(eiw_session *ws, const uint8_t *ck, uint32_t ck_size, const uint8_t *st,
                                       int32_t st_size) {
    if (ws->generating)
        return eiw_fail(ei_set_error(EI_ERR_INVALID_ARG, "restore: a generation is running"));
    shim_state x;
    ei_sampler *smp = NULL;
    int rc;
    if (st_size > 0) {
        if ((rc = parse_state(ws, st, st_size, ck, ck_size, &x)) < 0) return eiw_fail(rc);
        if (x.has_sampler && (rc = ei_sampler_create(&x.qp, &smp)) < 0) {
            char why[256];
            snprintf(why, sizeof why, "%s", ei_last_error());  /* the message buffer is about to be rewritten */
            return eiw_fail(ei_set_error(rc, "session state: sampler params: %s", why));
        }
    }
    if ((rc = ei_session_load_from_buffer(ws->s, smp, ck, ck_size)) < 0) {
        ei_sampler_free(smp);
        return eiw_fail(rc);
    }
    ei_sampler_free(ws->smp);
    ws->smp = smp;
    free(ws->todo);
    ws->todo = NULL;
    ws->n_todo = ws->i_todo = 0;
    ei_detok_init(&ws->detok, ei_model_get_tokenizer(ws->m->model));
    ws->text[0] = '\0';
    if (st_size > 0) {
        ws->hist = x.hist;
        ws->pending = x.pending;
        if (smp) ws->qp = x.qp;
        ws->detok.n_pushed = x.n_pushed;
        ws->detok.at_start = x.at_start;
        ws->detok.n_pending = x.n_pending;
        memcpy(ws->detok.pending, x.pending_bytes, 8);
    } else {
        ei_session_stats stt;
        ei_session_get_stats(ws->s, &stt);
        eiw_hist_init(&ws->hist);
        ws->hist.n = stt.tokens;
        ws->hist.known = 0;
        ws->pending = -1;
        ws->detok.n_pushed = 1;  /* the text continues earlier text: keep the first piece's leading space */
        ws->detok.at_start = 0;
    }
    return 0;
}
