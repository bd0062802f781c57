/* model.c — load a llama-architecture GGUF: hyper-parameters, weights bound in place, tokenizer from metadata. */
#include "model.h"

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "error.h"
#include "quant.h"
#include "tokenizer.h"

#define MAX_DIM (1 << 16)
#define MAX_LAYERS 1024
#define MAX_VOCAB (1 << 22)

ei_model_params ei_model_default_params(void) {
    ei_model_params p = {.use_mmap = 1, .n_threads = 0};
    return p;
}

/* ------------------------------------------------------------------ hparams */

static int load_hparams(ei_model *m) {
    const ei_gguf *g = &m->gguf;
    ei_gguf_str arch;
    int rc = ei_gguf_get_str(g, "general.architecture", &arch);
    if (rc) return rc;
    if (!ei_gguf_str_eq(arch, "llama"))
        return ei_set_error(EI_ERR_UNSUPPORTED, "architecture '%.*s' not supported (only 'llama')",
                            (int)(arch.len > 64 ? 64 : arch.len), arch.ptr);
    ei_hparams *hp = &m->hp;
    if ((rc = ei_gguf_get_i32_range(g, "llama.embedding_length", 1, MAX_DIM, &hp->dim))) return rc;
    if ((rc = ei_gguf_get_i32_range(g, "llama.block_count", 1, MAX_LAYERS, &hp->n_layer))) return rc;
    if ((rc = ei_gguf_get_i32_range(g, "llama.feed_forward_length", 1, 4 * MAX_DIM, &hp->ffn_dim))) return rc;
    if ((rc = ei_gguf_get_i32_range(g, "llama.attention.head_count", 1, 4096, &hp->n_head))) return rc;
    hp->n_head_kv = hp->n_head;
    if (ei_gguf_find(g, "llama.attention.head_count_kv") &&
        (rc = ei_gguf_get_i32_range(g, "llama.attention.head_count_kv", 1, 4096, &hp->n_head_kv)))
        return rc;
    if ((rc = ei_gguf_get_i32_range(g, "llama.context_length", 1, 1 << 24, &hp->n_ctx_train))) return rc;
    if (hp->dim % hp->n_head)
        return ei_set_error(EI_ERR_FORMAT, "embedding length %d not divisible by head count %d", hp->dim, hp->n_head);
    if (hp->n_head % hp->n_head_kv)
        return ei_set_error(EI_ERR_FORMAT, "head count %d not divisible by KV head count %d", hp->n_head, hp->n_head_kv);
    hp->head_dim = hp->dim / hp->n_head;
    if (hp->head_dim % 2) return ei_set_error(EI_ERR_FORMAT, "head dimension %d is odd (RoPE needs pairs)", hp->head_dim);
    hp->rope_dim = hp->head_dim;
    if (ei_gguf_find(g, "llama.rope.dimension_count") &&
        (rc = ei_gguf_get_i32_range(g, "llama.rope.dimension_count", 2, hp->head_dim, &hp->rope_dim)))
        return rc;
    hp->rope_base = 10000.0f;
    if (ei_gguf_find(g, "llama.rope.freq_base") && (rc = ei_gguf_get_f32(g, "llama.rope.freq_base", &hp->rope_base)))
        return rc;
    if ((rc = ei_gguf_get_f32(g, "llama.attention.layer_norm_rms_epsilon", &hp->rms_eps))) return rc;
    if (!(hp->rms_eps > 0 && hp->rms_eps < 1))
        return ei_set_error(EI_ERR_FORMAT, "rms epsilon %g out of range", (double)hp->rms_eps);
    if (!(hp->rope_base > 1)) return ei_set_error(EI_ERR_FORMAT, "rope freq base %g out of range", (double)hp->rope_base);
    if (ei_gguf_find(g, "llama.rope.scaling.type")) {
        ei_gguf_str st;
        if (ei_gguf_get_str(g, "llama.rope.scaling.type", &st) == 0 && !ei_gguf_str_eq(st, "none"))
            return ei_set_error(EI_ERR_UNSUPPORTED, "rope scaling '%.*s' not supported", (int)st.len, st.ptr);
    }
    return 0;
}

/* ------------------------------------------------------------------ tensors */

static int bind_weight(ei_model *m, const char *name, int64_t n_in, int64_t n_out, ei_weight *w, int optional) {
    const ei_gguf_tensor *t = ei_gguf_find_tensor(&m->gguf, name);
    if (!t) {
        if (optional) return 1;
        return ei_set_error(EI_ERR_MISSING_KEY, "tensor %s missing", name);
    }
    if (!ei_type_supported(t->type))
        return ei_set_error(EI_ERR_UNSUPPORTED, "tensor %s: type %u (%s) not supported (F32, F16, Q8_0, Q4_0 are)", name,
                            t->type, ei_type_name(t->type));
    if (t->n_dims != 2 || t->ne[0] != n_in || t->ne[1] != n_out)
        return ei_set_error(EI_ERR_FORMAT, "tensor %s: shape [%lld, %lld] (%u dims), expected [%lld, %lld]", name,
                            (long long)t->ne[0], (long long)t->ne[1], t->n_dims, (long long)n_in, (long long)n_out);
    w->type = t->type;
    w->n_in = n_in;
    w->n_out = n_out;
    w->data = t->data;
    m->n_params += n_in * n_out;
    return 0;
}

/* Norm vectors are tiny: keep an owned f32 copy whatever their stored type. */
static int bind_norm(ei_model *m, const char *name, float **out) {
    const ei_gguf_tensor *t = ei_gguf_find_tensor(&m->gguf, name);
    if (!t) return ei_set_error(EI_ERR_MISSING_KEY, "tensor %s missing", name);
    if (!ei_type_supported(t->type))
        return ei_set_error(EI_ERR_UNSUPPORTED, "tensor %s: type %u (%s) not supported", name, t->type,
                            ei_type_name(t->type));
    if (t->ne[0] != m->hp.dim || t->ne[1] != 1 || t->ne[2] != 1 || t->ne[3] != 1)
        return ei_set_error(EI_ERR_FORMAT, "tensor %s: shape [%lld, %lld], expected [%d]", name, (long long)t->ne[0],
                            (long long)t->ne[1], m->hp.dim);
    *out = malloc(sizeof(float) * (size_t)m->hp.dim);
    if (!*out) return ei_set_error(EI_ERR_NOMEM, "out of memory for %s", name);
    ei_dequantize_row(t->type, t->data, *out, m->hp.dim);
    m->n_params += m->hp.dim;
    return 0;
}

static int bind_tensors(ei_model *m) {
    const ei_hparams *hp = &m->hp;
    int rc;
    const ei_gguf_tensor *emb = ei_gguf_find_tensor(&m->gguf, "token_embd.weight");
    if (!emb) return ei_set_error(EI_ERR_MISSING_KEY, "tensor token_embd.weight missing");
    m->hp.n_vocab = (int32_t)emb->ne[1];
    if (emb->ne[1] < 1 || emb->ne[1] > MAX_VOCAB)
        return ei_set_error(EI_ERR_FORMAT, "token_embd.weight: vocabulary of %lld rows", (long long)emb->ne[1]);
    if ((rc = bind_weight(m, "token_embd.weight", hp->dim, hp->n_vocab, &m->tok_embd, 0))) return rc;
    rc = bind_weight(m, "output.weight", hp->dim, hp->n_vocab, &m->output, 1);
    if (rc < 0) return rc;
    if (rc == 1) m->output = m->tok_embd; /* tied embeddings */
    if ((rc = bind_norm(m, "output_norm.weight", &m->output_norm))) return rc;
    m->layers = calloc((size_t)hp->n_layer, sizeof *m->layers);
    if (!m->layers) return ei_set_error(EI_ERR_NOMEM, "out of memory for layers");
    const int64_t q_out = (int64_t)hp->n_head * hp->head_dim, kv_out = (int64_t)hp->n_head_kv * hp->head_dim;
    char name[96];
#define LAYER_W(field, suffix, nin, nout)                                  \
    snprintf(name, sizeof name, "blk.%d." suffix ".weight", l);            \
    if ((rc = bind_weight(m, name, nin, nout, &L->field, 0))) return rc;
    for (int l = 0; l < hp->n_layer; l++) {
        ei_layer *L = &m->layers[l];
        snprintf(name, sizeof name, "blk.%d.attn_norm.weight", l);
        if ((rc = bind_norm(m, name, &L->attn_norm))) return rc;
        snprintf(name, sizeof name, "blk.%d.ffn_norm.weight", l);
        if ((rc = bind_norm(m, name, &L->ffn_norm))) return rc;
        LAYER_W(wq, "attn_q", hp->dim, q_out)
        LAYER_W(wk, "attn_k", hp->dim, kv_out)
        LAYER_W(wv, "attn_v", hp->dim, kv_out)
        LAYER_W(wo, "attn_output", q_out, hp->dim)
        LAYER_W(w_gate, "ffn_gate", hp->dim, hp->ffn_dim)
        LAYER_W(w_up, "ffn_up", hp->dim, hp->ffn_dim)
        LAYER_W(w_down, "ffn_down", hp->ffn_dim, hp->dim)
    }
#undef LAYER_W
    return 0;
}

/* ------------------------------------------------------------------ tokenizer */

static int load_tokenizer(ei_model *m) {
    const ei_gguf *g = &m->gguf;
    ei_gguf_str tm;
    int rc = ei_gguf_get_str(g, "tokenizer.ggml.model", &tm);
    if (rc) return rc;
    if (!ei_gguf_str_eq(tm, "llama"))
        return ei_set_error(EI_ERR_UNSUPPORTED,
                            "tokenizer.ggml.model '%.*s' not supported (only 'llama' = SentencePiece)",
                            (int)(tm.len > 64 ? 64 : tm.len), tm.ptr);
    const ei_gguf_kv *toks = ei_gguf_find(g, "tokenizer.ggml.tokens");
    if (!toks) return ei_set_error(EI_ERR_MISSING_KEY, "gguf: required key 'tokenizer.ggml.tokens' missing");
    if (toks->type != GGUF_ARRAY || toks->arr_type != GGUF_STRING)
        return ei_set_error(EI_ERR_FORMAT, "tokenizer.ggml.tokens is not an array of strings");
    if (toks->arr_n == 0) return ei_set_error(EI_ERR_FORMAT, "tokenizer.ggml.tokens: empty vocabulary");
    if ((int64_t)toks->arr_n != m->hp.n_vocab)
        return ei_set_error(EI_ERR_FORMAT, "tokenizer has %llu tokens but token_embd.weight has %d rows",
                            (unsigned long long)toks->arr_n, m->hp.n_vocab);
    const int32_t n = (int32_t)toks->arr_n;
    const ei_gguf_kv *scores = ei_gguf_find(g, "tokenizer.ggml.scores");
    const ei_gguf_kv *types = ei_gguf_find(g, "tokenizer.ggml.token_type");
    if (scores && (scores->type != GGUF_ARRAY || scores->arr_type != GGUF_F32 || (int64_t)scores->arr_n != n))
        return ei_set_error(EI_ERR_FORMAT, "tokenizer.ggml.scores must be %d f32 values", n);
    if (types && (types->type != GGUF_ARRAY || types->arr_type != GGUF_I32 || (int64_t)types->arr_n != n))
        return ei_set_error(EI_ERR_FORMAT, "tokenizer.ggml.token_type must be %d i32 values", n);

    const char **pieces = malloc(sizeof *pieces * (size_t)n);
    int32_t *lens = malloc(sizeof *lens * (size_t)n);
    float *sc = scores ? malloc(sizeof *sc * (size_t)n) : NULL;
    int32_t *ty = types ? malloc(sizeof *ty * (size_t)n) : NULL;
    if (!pieces || !lens || (scores && !sc) || (types && !ty)) {
        rc = ei_set_error(EI_ERR_NOMEM, "out of memory for the vocabulary");
        goto done;
    }
    for (int32_t i = 0; i < n; i++) {
        if (toks->strs[i].len > 4096) {
            rc = ei_set_error(EI_ERR_FORMAT, "token %d is %llu bytes long", i, (unsigned long long)toks->strs[i].len);
            goto done;
        }
        pieces[i] = toks->strs[i].ptr;
        lens[i] = (int32_t)toks->strs[i].len;
    }
    if (sc) memcpy(sc, scores->data, sizeof *sc * (size_t)n); /* unaligned in the file: copy */
    if (ty) memcpy(ty, types->data, sizeof *ty * (size_t)n);

    ei_vocab_desc d = {.n_vocab = n, .pieces = pieces, .piece_lens = lens, .scores = sc, .types = ty,
                       .algo = EI_TOK_BPE, .bos_id = -1, .eos_id = -1, .unk_id = -1,
                       .add_dummy_prefix = 1, .remove_extra_whitespaces = 0, .byte_fallback = 0};
    int64_t v;
    if (ei_gguf_get_i64(g, "tokenizer.ggml.bos_token_id", &v) == 0) d.bos_id = (int32_t)v;
    if (ei_gguf_get_i64(g, "tokenizer.ggml.eos_token_id", &v) == 0) d.eos_id = (int32_t)v;
    if (ei_gguf_get_i64(g, "tokenizer.ggml.unknown_token_id", &v) == 0) d.unk_id = (int32_t)v;
    if ((d.bos_id >= n) || (d.eos_id >= n) || (d.unk_id >= n)) {
        rc = ei_set_error(EI_ERR_FORMAT, "special token id out of range (bos %d, eos %d, unk %d, vocab %d)", d.bos_id,
                          d.eos_id, d.unk_id, n);
        goto done;
    }
    ei_gguf_str algo;
    if (ei_gguf_get_str(g, "edgeinf.tokenizer.algorithm", &algo) == 0) {
        if (ei_gguf_str_eq(algo, "unigram")) d.algo = EI_TOK_UNIGRAM;
        else if (!ei_gguf_str_eq(algo, "bpe")) {
            rc = ei_set_error(EI_ERR_UNSUPPORTED, "edgeinf.tokenizer.algorithm '%.*s' unknown", (int)algo.len, algo.ptr);
            goto done;
        }
    }
    int b;
    /* llama.cpp's key first, ours (written by models/edgeinf_ref/export.py) wins when both exist. */
    if (ei_gguf_get_bool(g, "tokenizer.ggml.add_space_prefix", &b) == 0) d.add_dummy_prefix = b;
    if (ei_gguf_get_bool(g, "edgeinf.tokenizer.add_dummy_prefix", &b) == 0) d.add_dummy_prefix = b;
    if (ei_gguf_get_bool(g, "tokenizer.ggml.remove_extra_whitespaces", &b) == 0) d.remove_extra_whitespaces = b;
    if (ei_gguf_get_bool(g, "edgeinf.tokenizer.remove_extra_whitespaces", &b) == 0) d.remove_extra_whitespaces = b;
    /* llama.cpp's SPM vocabularies fall back to bytes whenever byte tokens are present. */
    if (ty)
        for (int32_t i = 0; i < n; i++)
            if (ty[i] == EI_TOKTYPE_BYTE) { d.byte_fallback = 1; break; }
    if (ei_gguf_get_bool(g, "edgeinf.tokenizer.byte_fallback", &b) == 0) d.byte_fallback = b;
    ei_clear_error();
    rc = ei_tokenizer_create(&d, &m->tok);
done:
    free(pieces);
    free(lens);
    free(sc);
    free(ty);
    return rc;
}

/* ------------------------------------------------------------------ load / free */

/* FNV-1a over the hparams and a sample of every tensor's bytes: cheap, stable across loads, differs between models. */
static void compute_fingerprint(ei_model *m) {
    uint64_t h = 1469598103934665603ull;
#define MIX(ptr, n)                                                             \
    for (size_t i_ = 0; i_ < (size_t)(n); i_++) {                               \
        h ^= ((const uint8_t *)(ptr))[i_];                                      \
        h *= 1099511628211ull;                                                  \
    }
    MIX(&m->hp, sizeof m->hp);
    for (uint64_t i = 0; i < m->gguf.n_tensors; i++) {
        const ei_gguf_tensor *t = &m->gguf.tensors[i];
        MIX(t->name.ptr, t->name.len);
        if (t->data) {
            size_t n = t->nbytes < 4096 ? t->nbytes : 4096;
            MIX(t->data, n);
            MIX((const uint8_t *)t->data + t->nbytes - n, n);
        }
    }
#undef MIX
    snprintf(m->fingerprint, sizeof m->fingerprint, "%016llx", (unsigned long long)h);
}

/* GGUF strings are not NUL-terminated: keep a terminated copy of each string value for ei_model_meta_str. */
static int dup_string_meta(ei_model *m) {
    m->meta_cstr = calloc(m->gguf.n_kv ? m->gguf.n_kv : 1, sizeof *m->meta_cstr);
    if (!m->meta_cstr) return ei_set_error(EI_ERR_NOMEM, "out of memory for metadata");
    for (uint64_t i = 0; i < m->gguf.n_kv; i++) {
        const ei_gguf_kv *kv = &m->gguf.kv[i];
        if (kv->type != GGUF_STRING) continue;
        if (!(m->meta_cstr[i] = malloc(kv->str.len + 1))) return ei_set_error(EI_ERR_NOMEM, "out of memory for metadata");
        memcpy(m->meta_cstr[i], kv->str.ptr, kv->str.len);
        m->meta_cstr[i][kv->str.len] = 0;
    }
    m->name = ei_model_meta_str(m, "general.name");
    return 0;
}

static int model_init(ei_model *m, const ei_model_params *params) {
    int rc;
    if ((rc = ei_gguf_parse(m->map ? m->map : m->owned, m->map_size, &m->gguf))) return rc;
    if ((rc = load_hparams(m))) return rc;
    if ((rc = bind_tensors(m))) return rc;
    if ((rc = load_tokenizer(m))) return rc;
    if ((rc = dup_string_meta(m))) return rc;
    ei_clear_error();
    compute_fingerprint(m);
    m->tp = ei_threadpool_create(params ? params->n_threads : 0);
    return 0;
}

int ei_model_load_from_buffer(const void *data, size_t size, const ei_model_params *params, ei_model **out) {
    if (!out) return ei_set_error(EI_ERR_INVALID_ARG, "ei_model_load_from_buffer: out is NULL");
    *out = NULL;
    if (!data) return ei_set_error(EI_ERR_INVALID_ARG, "ei_model_load_from_buffer: NULL buffer");
    ei_model *m = calloc(1, sizeof *m);
    if (!m) return ei_set_error(EI_ERR_NOMEM, "out of memory");
    /* Not owned: the caller keeps the buffer alive. `map` doubles as the data pointer with no unmap on free. */
    m->map = (void *)data;
    m->map_size = size;
    int rc = model_init(m, params);
    m->map = NULL; /* never unmapped: see ei_model_free */
    if (rc) {
        ei_model_free(m);
        return rc;
    }
    *out = m;
    return 0;
}

int ei_model_load_from_file(const char *path, const ei_model_params *params, ei_model **out) {
    if (!out || !path) return ei_set_error(EI_ERR_INVALID_ARG, "ei_model_load_from_file: NULL argument");
    *out = NULL;
    int fd = open(path, O_RDONLY);
    if (fd < 0) return ei_set_error(EI_ERR_IO, "cannot open model '%s'", path);
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        close(fd);
        return ei_set_error(EI_ERR_IO, "'%s' is not a regular file", path);
    }
    ei_model *m = calloc(1, sizeof *m);
    if (!m) {
        close(fd);
        return ei_set_error(EI_ERR_NOMEM, "out of memory");
    }
    m->map_size = (size_t)st.st_size;
    int use_mmap = params ? params->use_mmap : 1;
    if (m->map_size == 0) {
        close(fd);
        free(m);
        return ei_set_error(EI_ERR_FORMAT, "'%s' is empty, not a GGUF file", path);
    }
    if (use_mmap) {
        void *p = mmap(NULL, m->map_size, PROT_READ, MAP_PRIVATE, fd, 0);
        if (p == MAP_FAILED) use_mmap = 0;
        else m->map = p;
    }
    if (!use_mmap) {
        m->owned = malloc(m->map_size);
        if (!m->owned) {
            size_t sz = m->map_size;
            close(fd);
            free(m);
            return ei_set_error(EI_ERR_NOMEM, "out of memory reading '%s' (%zu bytes)", path, sz);
        }
        size_t got = 0;
        while (got < m->map_size) {
            ssize_t r = read(fd, (char *)m->owned + got, m->map_size - got);
            if (r <= 0) break;
            got += (size_t)r;
        }
        if (got != m->map_size) {
            close(fd);
            ei_model_free(m);
            return ei_set_error(EI_ERR_IO, "short read on '%s'", path);
        }
    }
    close(fd);
    int rc = model_init(m, params);
    if (rc) {
        char msg[600];
        snprintf(msg, sizeof msg, "%s: %s", path, ei_last_error());
        ei_model_free(m);
        return ei_set_error(rc, "%s", msg);
    }
    *out = m;
    return 0;
}

void ei_model_free(ei_model *m) {
    if (!m) return;
    if (m->layers)
        for (int l = 0; l < m->hp.n_layer; l++) {
            free(m->layers[l].attn_norm);
            free(m->layers[l].ffn_norm);
        }
    free(m->layers);
    free(m->output_norm);
    if (m->meta_cstr)
        for (uint64_t i = 0; i < m->gguf.n_kv; i++) free(m->meta_cstr[i]);
    free(m->meta_cstr);
    ei_tokenizer_free(m->tok);
    ei_threadpool_free(m->tp);
    ei_gguf_free(&m->gguf);
    if (m->map) munmap(m->map, m->map_size);
    free(m->owned);
    free(m);
}

/* ------------------------------------------------------------------ accessors */

int32_t ei_model_n_vocab(const ei_model *m) { return m->hp.n_vocab; }
int32_t ei_model_n_ctx_train(const ei_model *m) { return m->hp.n_ctx_train; }
int32_t ei_model_n_layer(const ei_model *m) { return m->hp.n_layer; }
int64_t ei_model_n_params(const ei_model *m) { return m->n_params; }
int32_t ei_model_n_threads(const ei_model *m) { return ei_threadpool_size(m->tp); }
const ei_tokenizer *ei_model_get_tokenizer(const ei_model *m) { return m->tok; }
const char *ei_model_fingerprint(const ei_model *m) { return m->fingerprint; }

const char *ei_model_meta_str(const ei_model *m, const char *key) {
    if (!key || !m->meta_cstr) return NULL;
    for (uint64_t i = 0; i < m->gguf.n_kv; i++)
        if (m->meta_cstr[i] && ei_gguf_str_eq(m->gguf.kv[i].key, key)) return m->meta_cstr[i];
    return NULL;
}
