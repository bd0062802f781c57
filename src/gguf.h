/* gguf.h — a bounds-checked GGUF (v2, v3) reader over a memory buffer.
 * The buffer is not copied: metadata strings and tensor data point into it. */
#ifndef EI_GGUF_H
#define EI_GGUF_H

#include <stddef.h>
#include <stdint.h>

enum ei_gguf_vtype {
    GGUF_U8 = 0, GGUF_I8 = 1, GGUF_U16 = 2, GGUF_I16 = 3, GGUF_U32 = 4, GGUF_I32 = 5, GGUF_F32 = 6,
    GGUF_BOOL = 7, GGUF_STRING = 8, GGUF_ARRAY = 9, GGUF_U64 = 10, GGUF_I64 = 11, GGUF_F64 = 12,
};

typedef struct ei_gguf_str {
    const char *ptr; /* into the buffer, not NUL-terminated */
    uint64_t len;
} ei_gguf_str;

typedef struct ei_gguf_kv {
    ei_gguf_str key;
    uint32_t type;       /* enum ei_gguf_vtype */
    uint32_t arr_type;   /* element type when type == GGUF_ARRAY */
    uint64_t arr_n;      /* element count when type == GGUF_ARRAY */
    const uint8_t *data; /* scalar value, or first array element (numeric arrays are packed little-endian) */
    ei_gguf_str *strs;   /* owned: decoded elements of a string array (arr_n entries), or NULL */
    ei_gguf_str str;     /* value of a GGUF_STRING */
} ei_gguf_kv;

typedef struct ei_gguf_tensor {
    ei_gguf_str name;
    uint32_t n_dims;
    int64_t ne[4];       /* ne[0] innermost; unused dims = 1 */
    uint32_t type;       /* ggml type id */
    uint64_t offset;     /* relative to the data section */
    const void *data;    /* absolute pointer into the buffer */
    uint64_t nbytes;
} ei_gguf_tensor;

typedef struct ei_gguf {
    uint32_t version;
    uint64_t n_kv, n_tensors;
    ei_gguf_kv *kv;          /* owned */
    ei_gguf_tensor *tensors; /* owned */
    uint64_t alignment;
    const uint8_t *base;     /* the buffer */
    size_t size;
} ei_gguf;

/* Parses and validates a GGUF held in [data, data+size): header, every key/value, the tensor table, alignment, and that
 * every tensor of a supported type lies inside the buffer. Tensors of unknown types are kept (nbytes 0) so callers can
 * refuse them by name. Returns 0, or EI_ERR_FORMAT / EI_ERR_UNSUPPORTED / EI_ERR_NOMEM with a message. */
int ei_gguf_parse(const void *data, size_t size, ei_gguf *out);
void ei_gguf_free(ei_gguf *g);

const ei_gguf_kv *ei_gguf_find(const ei_gguf *g, const char *key);
const ei_gguf_tensor *ei_gguf_find_tensor(const ei_gguf *g, const char *name);
/* Typed getters: return 0 and set *out, EI_ERR_MISSING_KEY if absent, EI_ERR_FORMAT if of an incompatible type. Integer
 * getters accept any integer type whose value fits. */
int ei_gguf_get_i64(const ei_gguf *g, const char *key, int64_t *out);
int ei_gguf_get_f32(const ei_gguf *g, const char *key, float *out);
/* Integer in [lo, hi] (hi <= INT32_MAX) into an int32; EI_ERR_FORMAT naming the key when outside. */
int ei_gguf_get_i32_range(const ei_gguf *g, const char *key, int64_t lo, int64_t hi, int32_t *out);
int ei_gguf_get_bool(const ei_gguf *g, const char *key, int *out);
int ei_gguf_get_str(const ei_gguf *g, const char *key, ei_gguf_str *out);
/* 1 if the string equals s. */
int ei_gguf_str_eq(ei_gguf_str a, const char *s);
const char *ei_gguf_vtype_name(uint32_t t);

#endif
