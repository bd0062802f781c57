/* stop.c — stop strings over streamed text. Holds back the longest suffix of the text that is a prefix of some stop
 * string, so neither a stop string nor the start of one that may still complete is ever shown. */
#include <stdlib.h>
#include <string.h>

#include "edgeinf.h"
#include "error.h"

struct ei_stop {
    char **strs;
    int32_t *lens;
    int32_t n, max_len;
    char *held;     /* text not yet emitted (at most max_len - 1 bytes between calls) */
    int32_t n_held;
    int32_t stopped;
};

int ei_stop_create(const char *const *strs, int32_t n, ei_stop **out) {
    if (!out || n < 0 || (n && !strs)) return ei_set_error(EI_ERR_INVALID_ARG, "ei_stop_create: bad arguments");
    *out = NULL;
    ei_stop *st = calloc(1, sizeof *st);
    if (!st) return ei_set_error(EI_ERR_NOMEM, "out of memory");
    st->strs = calloc((size_t)(n ? n : 1), sizeof *st->strs);
    st->lens = calloc((size_t)(n ? n : 1), sizeof *st->lens);
    if (!st->strs || !st->lens) {
        ei_stop_free(st);
        return ei_set_error(EI_ERR_NOMEM, "out of memory");
    }
    for (int32_t i = 0; i < n; i++) {
        if (!strs[i] || !*strs[i]) continue;
        size_t len = strlen(strs[i]);
        if (len > 4096) {
            ei_stop_free(st);
            return ei_set_error(EI_ERR_INVALID_ARG, "stop string %d is %zu bytes (4096 at most)", i, len);
        }
        if (!(st->strs[st->n] = strdup(strs[i]))) {
            ei_stop_free(st);
            return ei_set_error(EI_ERR_NOMEM, "out of memory");
        }
        st->lens[st->n++] = (int32_t)len;
        if ((int32_t)len > st->max_len) st->max_len = (int32_t)len;
    }
    *out = st;
    return 0;
}

void ei_stop_free(ei_stop *st) {
    if (!st) return;
    for (int32_t i = 0; st->strs && i < st->n; i++) free(st->strs[i]);
    free(st->strs);
    free(st->lens);
    free(st->held);
    free(st);
}

/* Bytes at the end of t[0..n) that are a proper prefix of some stop string (so must be held back). */
static int32_t partial_suffix(const ei_stop *st, const char *t, int32_t n) {
    int32_t best = 0;
    for (int32_t i = 0; i < st->n; i++)
        for (int32_t k = st->lens[i] - 1 < n ? st->lens[i] - 1 : n; k > best; k--)
            if (!memcmp(t + n - k, st->strs[i], (size_t)k)) {
                best = k;
                break;
            }
    return best;
}

int ei_stop_push(ei_stop *st, const char *text, int32_t len, char *buf, int32_t cap, int32_t *n_out, int32_t *stopped) {
    if (!st || !n_out || !stopped || (len && !text) || len < 0 || (cap && !buf))
        return ei_set_error(EI_ERR_INVALID_ARG, "ei_stop_push: bad arguments");
    *n_out = 0;
    *stopped = st->stopped;
    if (st->stopped) {
        if (cap) buf[0] = 0;
        return 0;
    }
    /* work on held + text */
    const int32_t n = st->n_held + len;
    char *t = malloc((size_t)n + 1);
    if (!t) return ei_set_error(EI_ERR_NOMEM, "out of memory");
    if (st->n_held) memcpy(t, st->held, (size_t)st->n_held);
    if (len) memcpy(t + st->n_held, text, (size_t)len);
    int32_t cut = -1; /* earliest complete stop string */
    for (int32_t i = 0; i < st->n; i++) {
        const char *hit = NULL;
        for (int32_t at = 0; at + st->lens[i] <= n; at++)
            if (!memcmp(t + at, st->strs[i], (size_t)st->lens[i])) {
                hit = t + at;
                break;
            }
        if (hit && (cut < 0 || hit - t < cut)) cut = (int32_t)(hit - t);
    }
    const int32_t emit = cut >= 0 ? cut : n - partial_suffix(st, t, n);
    if (emit + 1 > cap) {
        free(t);
        *n_out = emit + 1;
        return ei_set_error(EI_ERR_BUFFER_TOO_SMALL, "ei_stop_push: %d bytes do not fit in %d", emit + 1, cap);
    }
    if (emit) memcpy(buf, t, (size_t)emit);
    buf[emit] = 0;
    *n_out = emit;
    if (cut >= 0) {
        st->stopped = *stopped = 1;
        st->n_held = 0;
        free(t);
        return 0;
    }
    free(st->held);
    st->n_held = n - emit;
    st->held = t;
    memmove(st->held, t + emit, (size_t)st->n_held);
    return 0;
}

int ei_stop_flush(ei_stop *st, char *buf, int32_t cap, int32_t *n_out) {
    if (!st || !n_out || (cap && !buf)) return ei_set_error(EI_ERR_INVALID_ARG, "ei_stop_flush: bad arguments");
    *n_out = st->stopped ? 0 : st->n_held;
    if (*n_out + 1 > cap) {
        *n_out += 1;
        return ei_set_error(EI_ERR_BUFFER_TOO_SMALL, "ei_stop_flush: %d bytes do not fit in %d", *n_out, cap);
    }
    if (*n_out) memcpy(buf, st->held, (size_t)*n_out);
    buf[*n_out] = 0;
    st->n_held = 0;
    return 0;
}
