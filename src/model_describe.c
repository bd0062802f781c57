/* model_describe.c — human-readable summary of a model (the CLI's `info`). */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "error.h"
#include "model.h"
#include "quant.h"

typedef struct sbuf {
    char *buf;
    size_t cap, len;
} sbuf;

/* Appends formatted text; keeps counting past the capacity so the caller learns the size needed. */
static void sb_printf(sbuf *b, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    size_t room = b->len < b->cap ? b->cap - b->len : 0;
    int n = vsnprintf(room ? b->buf + b->len : NULL, room, fmt, ap);
    va_end(ap);
    if (n > 0) b->len += (size_t)n;
}

static void describe_value(sbuf *b, const ei_gguf_kv *kv) {
    int64_t i;
    float f;
    switch (kv->type) {
    case GGUF_STRING:
        sb_printf(b, "\"%.*s\"", (int)(kv->str.len > 80 ? 80 : kv->str.len), kv->str.ptr);
        if (kv->str.len > 80) sb_printf(b, "... (%llu bytes)", (unsigned long long)kv->str.len);
        break;
    case GGUF_ARRAY: sb_printf(b, "[%s x %llu]", ei_gguf_vtype_name(kv->arr_type), (unsigned long long)kv->arr_n); break;
    case GGUF_BOOL: sb_printf(b, "%s", kv->data[0] ? "true" : "false"); break;
    case GGUF_F32: memcpy(&f, kv->data, 4); sb_printf(b, "%g", (double)f); break;
    case GGUF_F64: { double d; memcpy(&d, kv->data, 8); sb_printf(b, "%g", d); } break;
    default: {
        ei_gguf g1 = {.n_kv = 1, .kv = (ei_gguf_kv *)kv};
        char key[256];
        snprintf(key, sizeof key, "%.*s", (int)(kv->key.len > 255 ? 255 : kv->key.len), kv->key.ptr);
        if (ei_gguf_get_i64(&g1, key, &i) == 0) sb_printf(b, "%lld", (long long)i);
        else sb_printf(b, "?");
    }
    }
}

int ei_model_describe(const ei_model *m, char *buf, size_t cap, size_t *n_out) {
    sbuf b = {buf, cap, 0};
    const ei_hparams *hp = &m->hp;
    sb_printf(&b, "model: %s\n", m->name ? m->name : "(unnamed)");
    sb_printf(&b, "gguf version %u, %llu tensors, %llu metadata keys, fingerprint %s\n", m->gguf.version,
              (unsigned long long)m->gguf.n_tensors, (unsigned long long)m->gguf.n_kv, m->fingerprint);
    sb_printf(&b,
              "arch llama: n_vocab %d, dim %d, n_layer %d, n_head %d, n_head_kv %d, head_dim %d, ffn %d, ctx_train %d, "
              "rope_base %g, rms_eps %g\n",
              hp->n_vocab, hp->dim, hp->n_layer, hp->n_head, hp->n_head_kv, hp->head_dim, hp->ffn_dim, hp->n_ctx_train,
              (double)hp->rope_base, (double)hp->rms_eps);
    sb_printf(&b, "parameters: %lld (%s embeddings)\n", (long long)m->n_params,
              m->output.data == m->tok_embd.data ? "tied" : "untied");
    sb_printf(&b, "metadata:\n");
    for (uint64_t i = 0; i < m->gguf.n_kv; i++) {
        const ei_gguf_kv *kv = &m->gguf.kv[i];
        sb_printf(&b, "  %.*s = ", (int)kv->key.len, kv->key.ptr);
        describe_value(&b, kv);
        sb_printf(&b, "\n");
    }
    uint64_t counts[32] = {0}, bytes[32] = {0};
    for (uint64_t i = 0; i < m->gguf.n_tensors; i++) {
        const ei_gguf_tensor *t = &m->gguf.tensors[i];
        if (t->type < 32) {
            counts[t->type]++;
            bytes[t->type] += t->nbytes;
        }
    }
    sb_printf(&b, "tensors by type:");
    for (int t = 0; t < 32; t++)
        if (counts[t]) sb_printf(&b, " %s x%llu (%.2f MB)", ei_type_name(t), (unsigned long long)counts[t], bytes[t] / 1e6);
    sb_printf(&b, "\n");
    if (n_out) *n_out = b.len + 1;
    if (b.len + 1 > cap) return ei_set_error(EI_ERR_BUFFER_TOO_SMALL, "describe: need %zu bytes", b.len + 1);
    return 0;
}
