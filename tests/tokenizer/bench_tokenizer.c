/* bench_tokenizer.c — encode/decode throughput on ~1 MB of text, as one prompt (not a test).
 *   build/tok-bench corpus.txt model1.model [model2.model ...]
 * The text is the corpus repeated to 1 MiB and encoded as a single string, the long-prompt case.
 * Prints one line per model: tokens, seconds, tokens/s, MB/s, and whether decode(encode(x)) == x. */
#include "edgeinf.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* The corpus repeated to at least `want` bytes, cut at a line end. Caller frees. */
static char *make_text(const char *path, size_t want, size_t *len) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    size_t n = (size_t)ftell(f);
    fseek(f, 0, SEEK_SET);
    char *src = malloc(n + 1);
    if (!src || fread(src, 1, n, f) != n || n == 0) {
        fclose(f);
        free(src);
        return NULL;
    }
    fclose(f);
    char *text = malloc(want + n + 1);
    size_t o = 0;
    while (o < want) {
        memcpy(text + o, src, n);
        o += n;
    }
    while (o > want && text[o - 1] != '\n') o--;
    text[o] = 0;
    *len = o;
    free(src);
    return text;
}

int main(int argc, char **argv) {
    if (argc < 3) {
        fprintf(stderr, "usage: %s corpus.txt model.model...\n", argv[0]);
        return 2;
    }
    size_t len;
    char *text = make_text(argv[1], 1 << 20, &len);
    if (!text) {
        fprintf(stderr, "cannot read %s\n", argv[1]);
        return 1;
    }
    for (int a = 2; a < argc; a++) {
        ei_tokenizer *t;
        if (ei_tokenizer_load_spm_file(argv[a], &t) < 0) {
            fprintf(stderr, "%s\n", ei_last_error());
            return 1;
        }
        int32_t n = 0;
        ei_tokenize(t, text, (int32_t)len, 0, NULL, 0, &n); /* size query */
        int32_t *ids = malloc((size_t)n * sizeof *ids);
        double t0 = now_s();
        int rc = ei_tokenize(t, text, (int32_t)len, 0, ids, n, &n);
        double t1 = now_s();
        char *back = malloc(len * 2 + 16);
        int32_t nb = 0;
        int rc2 = ei_detokenize(t, ids, n, back, (int32_t)(len * 2 + 16), &nb);
        double t2 = now_s();
        int same = rc2 == 0 && (size_t)nb == len && memcmp(back, text, len) == 0;
        printf("%-40s rc %d: %d tokens from %zu bytes in %.3f s = %.0f tokens/s (%.2f MB/s); decode %.3f s; "
               "decode(encode(x)) == x: %s\n",
               argv[a], rc, n, len, t1 - t0, n / (t1 - t0), len / (t1 - t0) / 1e6, t2 - t1,
               same ? "yes" : "no (expected when the model removes extra whitespace)");
        free(back);
        free(ids);
        ei_tokenizer_free(t);
    }
    free(text);
    return 0;
}
