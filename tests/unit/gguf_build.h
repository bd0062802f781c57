/* gguf_build.h — a tiny GGUF writer for tests that need files built byte by byte (bad-input and adapter tests). */
#ifndef EI_TEST_GGUF_BUILD_H
#define EI_TEST_GGUF_BUILD_H

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

typedef struct wbuf {
    uint8_t *p;
    size_t n, cap;
} wbuf;

static inline void put(wbuf *b, const void *d, size_t n) {
    if (b->n + n > b->cap) {
        b->cap = (b->n + n) * 2 + 64;
        b->p = realloc(b->p, b->cap);
    }
    memcpy(b->p + b->n, d, n);
    b->n += n;
}
static inline void put_u32(wbuf *b, uint32_t v) { put(b, &v, 4); }
static inline void put_u64(wbuf *b, uint64_t v) { put(b, &v, 8); }
static inline void put_str(wbuf *b, const char *s) {
    put_u64(b, strlen(s));
    put(b, s, strlen(s));
}
static inline void kv_u32(wbuf *b, const char *k, uint32_t v) { put_str(b, k); put_u32(b, 4); put_u32(b, v); }
static inline void kv_f32(wbuf *b, const char *k, float v) { put_str(b, k); put_u32(b, 6); put(b, &v, 4); }
static inline void kv_str(wbuf *b, const char *k, const char *v) { put_str(b, k); put_u32(b, 8); put_str(b, v); }

static inline void kv_bool(wbuf *b, const char *k, int v) { uint8_t x = (uint8_t)(v != 0); put_str(b, k); put_u32(b, 7); put(b, &x, 1); }
static inline void pad_to(wbuf *b, size_t align) { while (b->n % align) put(b, "\0", 1); }

#endif
