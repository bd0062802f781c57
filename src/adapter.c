/* adapter.c — load an EdgeInfinite adapter GGUF and check it against the base model. */
#include "adapter.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "error.h"
#include "gguf.h"
#include "model.h"
#include "quant.h"

/* Copies tensor `name` of shape [ne0, ne1] into dst as f32. */
static int copy_tensor(const ei_gguf *g, const char *name, int64_t ne0, int64_t ne1, float *dst) {
    const ei_gguf_tensor *t = ei_gguf_find_tensor(g, name);
    if (!t) return ei_set_error(EI_ERR_MISSING_KEY, "adapter: tensor %s missing", name);
    if (t->type != EI_TYPE_F32 && t->type != EI_TYPE_F16)
        return ei_set_error(EI_ERR_UNSUPPORTED, "adapter: tensor %s has type %s (F32 or F16 expected)", name,
                            ei_type_name(t->type));
    if (t->ne[0] != ne0 || t->ne[1] != ne1 || t->ne[2] != 1 || t->ne[3] != 1)
        return ei_set_error(EI_ERR_MISMATCH, "adapter: tensor %s has shape [%lld, %lld], the base model needs [%lld, %lld]",
                            name, (long long)t->ne[0], (long long)t->ne[1], (long long)ne0, (long long)ne1);
    for (int64_t r = 0; r < ne1; r++)
        ei_dequantize_row(t->type, (const uint8_t *)t->data + (size_t)r * ei_row_size(t->type, ne0), dst + r * ne0, ne0);
    return 0;
}

static int check_dim(const ei_gguf *g, const char *key, int32_t want, int32_t *out) {
    int rc = ei_gguf_get_i32_range(g, key, 1, 1 << 20, out);
    if (rc) return rc;
    if (*out != want)
        return ei_set_error(EI_ERR_MISMATCH, "adapter was made for another model: %s = %d, the base model has %d", key,
                            *out, want);
    return 0;
}

/* PoD keys (docs/pod.md): blocks given by their start layers, which must begin at 0 and increase strictly. */
static int load_pod(ei_adapter *a, const ei_gguf *g, int32_t n_layer) {
    const ei_gguf_kv *kv = ei_gguf_find(g, "edgeinf.pod.block_starts");
    if (!kv) return ei_set_error(EI_ERR_MISSING_KEY, "adapter: key 'edgeinf.pod.block_starts' missing");
    if (kv->type != GGUF_ARRAY || kv->arr_type != GGUF_U32)
        return ei_set_error(EI_ERR_FORMAT, "adapter: edgeinf.pod.block_starts must be an array of u32");
    if (kv->arr_n == 0 || kv->arr_n > (uint64_t)n_layer)
        return ei_set_error(EI_ERR_MISMATCH, "adapter: edgeinf.pod.block_starts has %llu blocks for %d layers",
                            (unsigned long long)kv->arr_n, n_layer);
    a->pod.anchor = malloc(sizeof(int32_t) * (size_t)n_layer);
    if (!a->pod.anchor) return ei_set_error(EI_ERR_NOMEM, "adapter: out of memory");
    a->pod.n_blocks = (int32_t)kv->arr_n;
    int64_t prev = -1;
    for (uint64_t b = 0; b < kv->arr_n; b++) {
        uint32_t start;
        memcpy(&start, kv->data + 4 * b, 4);
        if ((b == 0 && start != 0) || (int64_t)start <= prev || start >= (uint32_t)n_layer)
            return ei_set_error(EI_ERR_MISMATCH,
                                "adapter: edgeinf.pod.block_starts[%llu] = %u: blocks must start at 0, increase "
                                "strictly and stay below n_layer %d",
                                (unsigned long long)b, start, n_layer);
        const uint32_t end = b + 1 < kv->arr_n ? 0 : (uint32_t)n_layer;
        uint32_t next = end;
        if (b + 1 < kv->arr_n) memcpy(&next, kv->data + 4 * (b + 1), 4);
        for (uint32_t l = start; l < next && l < (uint32_t)n_layer; l++) a->pod.anchor[l] = (int32_t)start;
        prev = start;
    }
    int rc;
    if ((rc = ei_gguf_get_i32_range(g, "edgeinf.pod.n_sink", 0, 1 << 20, &a->pod.n_sink))) return rc;
    if ((rc = ei_gguf_get_i32_range(g, "edgeinf.pod.n_recent", 1, 1 << 24, &a->pod.n_recent))) return rc;
    ei_gguf_str sh;
    if ((rc = ei_gguf_get_str(g, "edgeinf.pod.share", &sh))) return rc;
    if (ei_gguf_str_eq(sh, "scores")) a->pod.share = EI_POD_SHARE_SCORES;
    else if (ei_gguf_str_eq(sh, "keys")) a->pod.share = EI_POD_SHARE_KEYS;
    else
        return ei_set_error(EI_ERR_FORMAT, "adapter: edgeinf.pod.share '%.*s' is neither 'scores' nor 'keys'",
                            (int)(sh.len > 32 ? 32 : sh.len), sh.ptr);
    if ((rc = ei_gguf_get_f32(g, "edgeinf.pod.delta", &a->pod.delta))) return rc;
    if (!(a->pod.delta > 0 && a->pod.delta <= 1))
        return ei_set_error(EI_ERR_INVALID_ARG, "adapter: edgeinf.pod.delta %g outside (0, 1]", (double)a->pod.delta);
    return 0;
}

static int adapter_init(ei_adapter *a, const ei_model *m, const ei_gguf *g) {
    ei_gguf_str s;
    int rc = ei_gguf_get_str(g, "general.architecture", &s);
    if (rc) return rc;
    if (!ei_gguf_str_eq(s, "edgeinf-adapter"))
        return ei_set_error(EI_ERR_FORMAT, "not an edgeinf adapter: general.architecture is '%.*s'",
                            (int)(s.len > 64 ? 64 : s.len), s.ptr);
    int32_t version = 0;
    if ((rc = ei_gguf_get_i32_range(g, "edgeinf.adapter.version", 0, 1 << 30, &version))) return rc;
    if (version != 1)
        return ei_set_error(EI_ERR_UNSUPPORTED, "adapter format version %d not supported (this build reads 1)", version);
    if ((rc = ei_gguf_get_str(g, "edgeinf.adapter.kind", &s))) return rc;
    a->has_ei = ei_gguf_str_eq(s, "edgeinfinite") || ei_gguf_str_eq(s, "edgeinfinite+pod");
    a->has_pod = ei_gguf_str_eq(s, "pod") || ei_gguf_str_eq(s, "edgeinfinite+pod");
    if (!a->has_ei && !a->has_pod)
        return ei_set_error(EI_ERR_UNSUPPORTED, "adapter kind '%.*s' not supported (edgeinfinite, pod, edgeinfinite+pod)",
                            (int)(s.len > 64 ? 64 : s.len), s.ptr);
    const ei_hparams *hp = &m->hp;
    if ((rc = check_dim(g, "edgeinf.adapter.n_layer", hp->n_layer, &a->n_layer))) return rc;
    if ((rc = check_dim(g, "edgeinf.adapter.n_head", hp->n_head, &a->n_head))) return rc;
    if ((rc = check_dim(g, "edgeinf.adapter.n_head_kv", hp->n_head_kv, &a->n_head_kv))) return rc;
    if ((rc = check_dim(g, "edgeinf.adapter.head_dim", hp->head_dim, &a->head_dim))) return rc;
    if ((rc = check_dim(g, "edgeinf.adapter.dim", hp->dim, &a->dim))) return rc;
    if (a->has_pod && (rc = load_pod(a, g, hp->n_layer))) return rc;
    if (!a->has_ei) {
        if (g->n_tensors)
            return ei_set_error(EI_ERR_FORMAT, "adapter: a 'pod' adapter has no tensors, this one has %llu",
                                (unsigned long long)g->n_tensors);
        return 0;
    }
    if ((rc = ei_gguf_get_i32_range(g, "edgeinf.ei.n_sink", 0, 1 << 20, &a->n_sink))) return rc;
    if ((rc = ei_gguf_get_i32_range(g, "edgeinf.ei.window", 1, 1 << 22, &a->window))) return rc;
    if ((rc = ei_gguf_get_i32_range(g, "edgeinf.ei.seg", 1, 1 << 20, &a->seg))) return rc;
    if ((rc = ei_gguf_get_i32_range(g, "edgeinf.ei.rank", 0, 1024, &a->rank))) return rc;
    if (a->window % a->seg)
        return ei_set_error(EI_ERR_FORMAT, "adapter: window %d is not a multiple of seg %d", a->window, a->seg);
    if ((rc = ei_gguf_get_f32(g, "edgeinf.ei.eps", &a->eps))) return rc;
    if (!(a->eps > 0 && a->eps < 1)) return ei_set_error(EI_ERR_FORMAT, "adapter: eps %g out of range", (double)a->eps);
    if (a->has_pod && a->pod.n_sink != a->n_sink)
        return ei_set_error(EI_ERR_FORMAT, "adapter: edgeinf.pod.n_sink %d differs from edgeinf.ei.n_sink %d",
                            a->pod.n_sink, a->n_sink);
    if (a->has_pod && a->pod.n_recent > a->window)
        return ei_set_error(EI_ERR_FORMAT, "adapter: edgeinf.pod.n_recent %d exceeds the window %d", a->pod.n_recent,
                            a->window);

    const int64_t dim = hp->dim, nh = hp->n_head, kvd = (int64_t)hp->n_head_kv * hp->head_dim,
                  qd = (int64_t)hp->n_head * hp->head_dim, r = a->rank;
    const int64_t per_layer = nh * dim + nh + (r ? 3 * r * dim + 2 * kvd * r + qd * r : 0);
    a->n_params = per_layer * hp->n_layer;
    a->layers = calloc((size_t)hp->n_layer, sizeof *a->layers);
    a->storage = malloc(sizeof(float) * (size_t)a->n_params);
    if (!a->layers || !a->storage) return ei_set_error(EI_ERR_NOMEM, "adapter: out of memory");
    float *p = a->storage;
    char name[96];
    for (int l = 0; l < hp->n_layer; l++) {
        ei_adapter_layer *L = &a->layers[l];
#define TAKE(field, suffix, ne0, ne1)                                     \
    L->field = p;                                                         \
    p += (ne0) * (ne1);                                                   \
    snprintf(name, sizeof name, "blk.%d." suffix, l);                     \
    if ((rc = copy_tensor(g, name, ne0, ne1, L->field))) return rc;
        TAKE(gate_w, "ei_gate.weight", dim, nh)
        TAKE(gate_b, "ei_gate.bias", nh, 1)
        if (r) {
            TAKE(mk_a, "ei_mem_k_a.weight", dim, r)
            TAKE(mk_b, "ei_mem_k_b.weight", r, kvd)
            TAKE(mv_a, "ei_mem_v_a.weight", dim, r)
            TAKE(mv_b, "ei_mem_v_b.weight", r, kvd)
            TAKE(mq_a, "ei_mem_q_a.weight", dim, r)
            TAKE(mq_b, "ei_mem_q_b.weight", r, qd)
        }
#undef TAKE
    }
    return 0;
}

int ei_adapter_load_from_buffer(const ei_model *m, const void *data, size_t size, ei_adapter **out) {
    if (!m || !out) return ei_set_error(EI_ERR_INVALID_ARG, "ei_adapter_load: NULL argument");
    *out = NULL;
    ei_gguf g;
    int rc = ei_gguf_parse(data, size, &g);
    if (rc) return rc;
    ei_adapter *a = calloc(1, sizeof *a);
    if (!a) {
        ei_gguf_free(&g);
        return ei_set_error(EI_ERR_NOMEM, "adapter: out of memory");
    }
    rc = adapter_init(a, m, &g);
    ei_gguf_free(&g);
    if (rc) {
        ei_adapter_free(a);
        return rc;
    }
    ei_clear_error();
    *out = a;
    return 0;
}

int ei_adapter_load_from_file(const ei_model *m, const char *path, ei_adapter **out) {
    if (!path || !out) return ei_set_error(EI_ERR_INVALID_ARG, "ei_adapter_load_from_file: NULL argument");
    *out = NULL;
    FILE *f = fopen(path, "rb");
    if (!f) return ei_set_error(EI_ERR_IO, "cannot open adapter '%s'", path);
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    if (n <= 0) {
        fclose(f);
        return ei_set_error(EI_ERR_FORMAT, "adapter '%s' is empty", path);
    }
    void *buf = malloc((size_t)n);
    if (!buf) {
        fclose(f);
        return ei_set_error(EI_ERR_NOMEM, "out of memory reading '%s'", path);
    }
    size_t got = fread(buf, 1, (size_t)n, f);
    fclose(f);
    int rc = got == (size_t)n ? ei_adapter_load_from_buffer(m, buf, (size_t)n, out)
                              : ei_set_error(EI_ERR_IO, "short read on '%s'", path);
    free(buf);
    if (rc) {
        char msg[600];
        snprintf(msg, sizeof msg, "%s: %s", path, ei_last_error());
        return ei_set_error(rc, "%s", msg);
    }
    return 0;
}

void ei_adapter_free(ei_adapter *a) {
    if (!a) return;
    free(a->pod.anchor);
    free(a->layers);
    free(a->storage);
    free(a);
}

int64_t ei_adapter_n_params(const ei_adapter *a) { return a ? a->n_params : 0; }

const char *ei_adapter_kind(const ei_adapter *a) {
    if (!a) return "none";
    return a->has_ei && a->has_pod ? "edgeinfinite+pod" : a->has_pod ? "pod" : "edgeinfinite";
}
