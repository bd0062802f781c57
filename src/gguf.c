/* gguf.c — GGUF reader. Every length, count and offset read from the file is checked against the buffer before use:
 * the file is untrusted input (a truncated download, a random file picked by a user). */
#include "gguf.h"

#include <stdlib.h>
#include <string.h>

#include "error.h"
#include "quant.h"

#define GGUF_MAGIC "GGUF"
#define GGUF_MAX_DIMS 4
/* Sanity caps: far above any real model, low enough that a corrupt count cannot make us allocate gigabytes. */
#define GGUF_MAX_TENSORS (1u << 20)
#define GGUF_MAX_KV (1u << 20)

/* ------------------------------------------------------------------ cursor */

typedef struct cursor {
    const uint8_t *p, *end, *base;
} cursor;

static size_t cur_left(const cursor *c) { return (size_t)(c->end - c->p); }

static int cur_read(cursor *c, void *dst, size_t n, const char *what) {
    if (cur_left(c) < n)
        return ei_set_error(EI_ERR_FORMAT, "gguf: file truncated while reading %s at byte %zu", what,
                            (size_t)(c->p - c->base));
    memcpy(dst, c->p, n);
    c->p += n;
    return 0;
}

static int cur_str(cursor *c, ei_gguf_str *s, const char *what) {
    uint64_t len = 0;
    int rc = cur_read(c, &len, 8, what);
    if (rc) return rc;
    if (len > cur_left(c))
        return ei_set_error(EI_ERR_FORMAT, "gguf: %s: string length %llu beyond the end of the file at byte %zu (file truncated?)", what,
                            (unsigned long long)len, (size_t)(c->p - c->base));
    s->ptr = (const char *)c->p;
    s->len = len;
    c->p += len;
    return 0;
}

static size_t vtype_size(uint32_t t) {
    switch (t) {
    case GGUF_U8: case GGUF_I8: case GGUF_BOOL: return 1;
    case GGUF_U16: case GGUF_I16: return 2;
    case GGUF_U32: case GGUF_I32: case GGUF_F32: return 4;
    case GGUF_U64: case GGUF_I64: case GGUF_F64: return 8;
    default: return 0;
    }
}

const char *ei_gguf_vtype_name(uint32_t t) {
    static const char *names[] = {"u8", "i8", "u16", "i16", "u32", "i32", "f32", "bool", "string", "array", "u64", "i64",
                                  "f64"};
    return t < sizeof names / sizeof names[0] ? names[t] : "?";
}

/* ------------------------------------------------------------------ metadata */

static int parse_kv(cursor *c, ei_gguf_kv *kv, uint64_t idx) {
    int rc = cur_str(c, &kv->key, "metadata key");
    if (rc) return rc;
    if ((rc = cur_read(c, &kv->type, 4, "metadata type"))) return rc;
    const int klen = kv->key.len > 200 ? 200 : (int)kv->key.len;
    if (kv->type == GGUF_STRING) return cur_str(c, &kv->str, "metadata string value");
    if (kv->type == GGUF_ARRAY) {
        if ((rc = cur_read(c, &kv->arr_type, 4, "array type"))) return rc;
        if ((rc = cur_read(c, &kv->arr_n, 8, "array length"))) return rc;
        kv->data = c->p;
        if (kv->arr_type == GGUF_STRING) {
            /* Each string takes at least 8 bytes: bound the count before allocating. */
            if (kv->arr_n > cur_left(c) / 8)
                return ei_set_error(EI_ERR_FORMAT, "gguf: key '%.*s': string array of %llu items runs past the end of the file (file truncated?)",
                                    klen, kv->key.ptr, (unsigned long long)kv->arr_n);
            kv->strs = malloc(sizeof *kv->strs * (kv->arr_n ? kv->arr_n : 1));
            if (!kv->strs) return ei_set_error(EI_ERR_NOMEM, "gguf: out of memory for key '%.*s'", klen, kv->key.ptr);
            for (uint64_t i = 0; i < kv->arr_n; i++)
                if ((rc = cur_str(c, &kv->strs[i], "string array element"))) return rc;
            return 0;
        }
        size_t es = vtype_size(kv->arr_type);
        if (!es)
            return ei_set_error(EI_ERR_FORMAT, "gguf: key '%.*s': unsupported array element type %u", klen, kv->key.ptr,
                                kv->arr_type);
        if (kv->arr_n > cur_left(c) / es)
            return ei_set_error(EI_ERR_FORMAT, "gguf: key '%.*s': array of %llu items runs past the end of the file (file truncated?)", klen,
                                kv->key.ptr, (unsigned long long)kv->arr_n);
        c->p += kv->arr_n * es;
        return 0;
    }
    size_t es = vtype_size(kv->type);
    if (!es)
        return ei_set_error(EI_ERR_FORMAT, "gguf: metadata #%llu ('%.*s'): unknown value type %u",
                            (unsigned long long)idx, klen, kv->key.ptr, kv->type);
    if (cur_left(c) < es) return ei_set_error(EI_ERR_FORMAT, "gguf: file truncated in value of key '%.*s'", klen, kv->key.ptr);
    kv->data = c->p;
    c->p += es;
    return 0;
}

/* ------------------------------------------------------------------ tensors */

static int parse_tensor_info(cursor *c, ei_gguf_tensor *t, uint64_t idx) {
    int rc = cur_str(c, &t->name, "tensor name");
    if (rc) return rc;
    const int nlen = t->name.len > 200 ? 200 : (int)t->name.len;
    if ((rc = cur_read(c, &t->n_dims, 4, "tensor dims"))) return rc;
    if (t->n_dims == 0 || t->n_dims > GGUF_MAX_DIMS)
        return ei_set_error(EI_ERR_FORMAT, "gguf: tensor %.*s: %u dimensions (1..%d allowed)", nlen, t->name.ptr,
                            t->n_dims, GGUF_MAX_DIMS);
    for (int i = 0; i < 4; i++) t->ne[i] = 1;
    for (uint32_t i = 0; i < t->n_dims; i++) {
        uint64_t d = 0;
        if ((rc = cur_read(c, &d, 8, "tensor shape"))) return rc;
        if (d == 0 || d > ((uint64_t)1 << 40))
            return ei_set_error(EI_ERR_FORMAT, "gguf: tensor %.*s: absurd dimension %llu", nlen, t->name.ptr,
                                (unsigned long long)d);
        t->ne[i] = (int64_t)d;
    }
    if ((rc = cur_read(c, &t->type, 4, "tensor type"))) return rc;
    if ((rc = cur_read(c, &t->offset, 8, "tensor offset"))) return rc;
    (void)idx;
    return 0;
}

/* Byte size of a tensor of a supported type, 0 if the shape does not fit the type's block size or overflows. */
static uint64_t tensor_nbytes(const ei_gguf_tensor *t) {
    uint64_t rows = 1;
    for (int i = 1; i < 4; i++) {
        if (rows > ((uint64_t)1 << 40) / (uint64_t)t->ne[i]) return 0;
        rows *= (uint64_t)t->ne[i];
    }
    uint64_t row = ei_row_size(t->type, t->ne[0]);
    if (!row || rows > UINT64_MAX / row) return 0;
    return rows * row;
}

/* ------------------------------------------------------------------ parse */

int ei_gguf_parse(const void *data, size_t size, ei_gguf *g) {
    memset(g, 0, sizeof *g);
    if (!data) return ei_set_error(EI_ERR_INVALID_ARG, "gguf: NULL buffer");
    cursor c = {data, (const uint8_t *)data + size, data};
    char magic[4];
    int rc;
    if (size < 4 || memcmp(data, GGUF_MAGIC, 4) != 0)
        return ei_set_error(EI_ERR_FORMAT, "not a GGUF file: bad magic (expected \"GGUF\"%s)",
                            size < 4 ? ", file shorter than 4 bytes" : "");
    cur_read(&c, magic, 4, "magic");
    if ((rc = cur_read(&c, &g->version, 4, "version"))) return rc;
    if (g->version != 2 && g->version != 3)
        return ei_set_error(EI_ERR_UNSUPPORTED, "gguf: version %u not supported (2 and 3 are)", g->version);
    if ((rc = cur_read(&c, &g->n_tensors, 8, "tensor count"))) return rc;
    if ((rc = cur_read(&c, &g->n_kv, 8, "metadata count"))) return rc;
    if (g->n_tensors > GGUF_MAX_TENSORS || g->n_kv > GGUF_MAX_KV)
        return ei_set_error(EI_ERR_FORMAT, "gguf: absurd counts (%llu tensors, %llu metadata keys)",
                            (unsigned long long)g->n_tensors, (unsigned long long)g->n_kv);
    g->base = data;
    g->size = size;
    g->kv = calloc(g->n_kv ? g->n_kv : 1, sizeof *g->kv);
    g->tensors = calloc(g->n_tensors ? g->n_tensors : 1, sizeof *g->tensors);
    if (!g->kv || !g->tensors) {
        ei_gguf_free(g);
        return ei_set_error(EI_ERR_NOMEM, "gguf: out of memory");
    }
    for (uint64_t i = 0; i < g->n_kv; i++)
        if ((rc = parse_kv(&c, &g->kv[i], i))) goto fail;

    g->alignment = 32;
    const ei_gguf_kv *al = ei_gguf_find(g, "general.alignment");
    if (al) {
        int64_t a;
        if ((rc = ei_gguf_get_i64(g, "general.alignment", &a))) goto fail;
        if (a <= 0 || (a & (a - 1)) || a > 65536) {
            rc = ei_set_error(EI_ERR_FORMAT, "gguf: general.alignment %lld is not a power of two", (long long)a);
            goto fail;
        }
        g->alignment = (uint64_t)a;
    }
    for (uint64_t i = 0; i < g->n_tensors; i++)
        if ((rc = parse_tensor_info(&c, &g->tensors[i], i))) goto fail;

    uint64_t pos = (uint64_t)(c.p - c.base);
    uint64_t data_start = (pos + g->alignment - 1) / g->alignment * g->alignment;
    if (data_start > size && g->n_tensors) {
        rc = ei_set_error(EI_ERR_FORMAT, "gguf: file truncated before the tensor data section");
        goto fail;
    }
    for (uint64_t i = 0; i < g->n_tensors; i++) {
        ei_gguf_tensor *t = &g->tensors[i];
        const int nlen = t->name.len > 200 ? 200 : (int)t->name.len;
        if (t->offset % g->alignment) {
            rc = ei_set_error(EI_ERR_FORMAT, "gguf: tensor %.*s: offset %llu not aligned to %llu", nlen, t->name.ptr,
                              (unsigned long long)t->offset, (unsigned long long)g->alignment);
            goto fail;
        }
        if (!ei_type_supported(t->type)) continue; /* refused by name by whoever needs it */
        t->nbytes = tensor_nbytes(t);
        if (!t->nbytes) {
            rc = ei_set_error(EI_ERR_FORMAT, "gguf: tensor %.*s: shape %lld x %lld does not fit type %s", nlen,
                              t->name.ptr, (long long)t->ne[0], (long long)t->ne[1], ei_type_name(t->type));
            goto fail;
        }
        if (t->offset > size || data_start + t->offset > size || t->nbytes > size - data_start - t->offset) {
            rc = ei_set_error(EI_ERR_FORMAT,
                              "gguf: tensor %.*s: data [%llu, +%llu) lies beyond the end of the file (%zu bytes): "
                              "truncated download?",
                              nlen, t->name.ptr, (unsigned long long)(data_start + t->offset),
                              (unsigned long long)t->nbytes, size);
            goto fail;
        }
        t->data = c.base + data_start + t->offset;
    }
    return 0;
fail:
    ei_gguf_free(g);
    return rc;
}

void ei_gguf_free(ei_gguf *g) {
    if (!g) return;
    if (g->kv)
        for (uint64_t i = 0; i < g->n_kv; i++) free(g->kv[i].strs);
    free(g->kv);
    free(g->tensors);
    memset(g, 0, sizeof *g);
}

/* ------------------------------------------------------------------ lookups */

int ei_gguf_str_eq(ei_gguf_str a, const char *s) {
    size_t n = strlen(s);
    return a.len == n && memcmp(a.ptr, s, n) == 0;
}

const ei_gguf_kv *ei_gguf_find(const ei_gguf *g, const char *key) {
    for (uint64_t i = 0; i < g->n_kv; i++)
        if (ei_gguf_str_eq(g->kv[i].key, key)) return &g->kv[i];
    return NULL;
}

const ei_gguf_tensor *ei_gguf_find_tensor(const ei_gguf *g, const char *name) {
    for (uint64_t i = 0; i < g->n_tensors; i++)
        if (ei_gguf_str_eq(g->tensors[i].name, name)) return &g->tensors[i];
    return NULL;
}

int ei_gguf_get_i64(const ei_gguf *g, const char *key, int64_t *out) {
    const ei_gguf_kv *kv = ei_gguf_find(g, key);
    if (!kv) return ei_set_error(EI_ERR_MISSING_KEY, "gguf: required key '%s' missing", key);
    const uint8_t *p = kv->data;
    switch (kv->type) {
    case GGUF_U8: *out = *p; return 0;
    case GGUF_I8: *out = (int8_t)*p; return 0;
    case GGUF_U16: { uint16_t v; memcpy(&v, p, 2); *out = v; return 0; }
    case GGUF_I16: { int16_t v; memcpy(&v, p, 2); *out = v; return 0; }
    case GGUF_U32: { uint32_t v; memcpy(&v, p, 4); *out = v; return 0; }
    case GGUF_I32: { int32_t v; memcpy(&v, p, 4); *out = v; return 0; }
    case GGUF_I64: { int64_t v; memcpy(&v, p, 8); *out = v; return 0; }
    case GGUF_U64: {
        uint64_t v;
        memcpy(&v, p, 8);
        if (v > INT64_MAX) return ei_set_error(EI_ERR_FORMAT, "gguf: key '%s': value too large", key);
        *out = (int64_t)v;
        return 0;
    }
    default:
        return ei_set_error(EI_ERR_FORMAT, "gguf: key '%s' has type %s, expected an integer", key,
                            ei_gguf_vtype_name(kv->type));
    }
}

int ei_gguf_get_i32_range(const ei_gguf *g, const char *key, int64_t lo, int64_t hi, int32_t *out) {
    int64_t v;
    int rc = ei_gguf_get_i64(g, key, &v);
    if (rc) return rc;
    if (v < lo || v > hi)
        return ei_set_error(EI_ERR_FORMAT, "gguf: %s = %lld is outside [%lld, %lld]", key, (long long)v, (long long)lo,
                            (long long)hi);
    *out = (int32_t)v;
    return 0;
}

int ei_gguf_get_f32(const ei_gguf *g, const char *key, float *out) {
    const ei_gguf_kv *kv = ei_gguf_find(g, key);
    if (!kv) return ei_set_error(EI_ERR_MISSING_KEY, "gguf: required key '%s' missing", key);
    if (kv->type == GGUF_F32) { memcpy(out, kv->data, 4); return 0; }
    if (kv->type == GGUF_F64) { double d; memcpy(&d, kv->data, 8); *out = (float)d; return 0; }
    int64_t v;
    if (ei_gguf_get_i64(g, key, &v) == 0) { *out = (float)v; return 0; }
    return ei_set_error(EI_ERR_FORMAT, "gguf: key '%s' has type %s, expected a float", key, ei_gguf_vtype_name(kv->type));
}

int ei_gguf_get_bool(const ei_gguf *g, const char *key, int *out) {
    const ei_gguf_kv *kv = ei_gguf_find(g, key);
    if (!kv) return ei_set_error(EI_ERR_MISSING_KEY, "gguf: key '%s' missing", key);
    if (kv->type != GGUF_BOOL)
        return ei_set_error(EI_ERR_FORMAT, "gguf: key '%s' has type %s, expected bool", key, ei_gguf_vtype_name(kv->type));
    *out = kv->data[0] != 0;
    return 0;
}

int ei_gguf_get_str(const ei_gguf *g, const char *key, ei_gguf_str *out) {
    const ei_gguf_kv *kv = ei_gguf_find(g, key);
    if (!kv) return ei_set_error(EI_ERR_MISSING_KEY, "gguf: required key '%s' missing", key);
    if (kv->type != GGUF_STRING)
        return ei_set_error(EI_ERR_FORMAT, "gguf: key '%s' has type %s, expected string", key, ei_gguf_vtype_name(kv->type));
    *out = kv->str;
    return 0;
}
