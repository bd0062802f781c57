/* logits_dump — test tool: runs token ids through the engine and writes what parity tests compare.
 *   logits_dump logits MODEL OUT.f32 SPLIT ID...   logits after every id (rows = number of ids) as raw float32; the
 *                                                  first SPLIT ids go in one prefill (ei_session_eval), the rest in
 *                                                  one decode call each, so both paths are exercised
 *   logits_dump greedy MODEL N ID...               prints N greedy tokens after the ids, space-separated
 *   logits_dump last MODEL OUT.f32 ID...           only the logits after the last id (prefill in chunks of 4096)
 * Options before the command: --policy NAME, --threads N, --sink N, --window N, --seg N, --adapter FILE,
 * --repeat R (the id list is repeated R times: long periodic inputs without a huge command line), --n-recent N,
 * --pod-share scores|keys. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "edgeinf.h"

static int die(const char *what, int rc) {
    fprintf(stderr, "logits_dump: %s: %s: %s\n", what, ei_strerror(rc), ei_last_error());
    return 1;
}

static int argmax(const float *x, int32_t n) {
    int32_t b = 0;
    for (int32_t i = 1; i < n; i++)
        if (x[i] > x[b]) b = i;
    return b;
}

int main(int argc, char **argv) {
    const char *policy = "full", *adapter_path = NULL;
    int threads = 1, a = 1, n_sink = 0, window = 0, seg = 0, n_recent = 0, share = 0;
    long repeat = 1;
    while (a + 1 < argc && argv[a][0] == '-' && argv[a][1] == '-') {
        if (!strcmp(argv[a], "--policy")) policy = argv[a + 1];
        else if (!strcmp(argv[a], "--threads")) threads = atoi(argv[a + 1]);
        else if (!strcmp(argv[a], "--sink")) n_sink = atoi(argv[a + 1]);
        else if (!strcmp(argv[a], "--window")) window = atoi(argv[a + 1]);
        else if (!strcmp(argv[a], "--seg")) seg = atoi(argv[a + 1]);
        else if (!strcmp(argv[a], "--adapter")) adapter_path = argv[a + 1];
        else if (!strcmp(argv[a], "--repeat")) repeat = atol(argv[a + 1]);
        else if (!strcmp(argv[a], "--n-recent")) n_recent = atoi(argv[a + 1]);
        else if (!strcmp(argv[a], "--pod-share")) share = !strcmp(argv[a + 1], "scores") ? 1 : !strcmp(argv[a + 1], "keys") ? 2 : -1;
        else break;
        a += 2;
    }
    const int is_logits = a < argc && !strcmp(argv[a], "logits");
    const int is_last = a < argc && !strcmp(argv[a], "last");
    const int first_id = a + (is_logits ? 4 : 3);
    if (argc <= first_id || repeat < 1 || (!is_logits && !is_last && strcmp(argv[a], "greedy"))) {
        fprintf(stderr, "usage: logits_dump [options] (logits MODEL OUT SPLIT | greedy MODEL N | last MODEL OUT) ID...\n");
        return 2;
    }
    ei_model_params mp = ei_model_default_params();
    mp.n_threads = threads;
    ei_model *m;
    int rc = ei_model_load_from_file(argv[a + 1], &mp, &m);
    if (rc) return die("load", rc);
    ei_session_params sp = ei_session_default_params();
    if ((rc = ei_policy_from_name(policy, &sp.policy))) return die("policy", rc);
    sp.n_sink = n_sink;
    sp.window = window;
    sp.seg = seg;
    sp.n_recent = n_recent;
    sp.pod_share = share;
    ei_adapter *ad = NULL;
    if (adapter_path && (rc = ei_adapter_load_from_file(m, adapter_path, &ad))) return die("adapter", rc);
    sp.adapter = ad;
    ei_session *s;
    if ((rc = ei_session_create(m, &sp, &s))) return die("session", rc);
    const int n_arg = argc - first_id;
    const long n = n_arg * repeat;
    int32_t *ids = malloc(sizeof(int32_t) * (size_t)n);
    for (long i = 0; i < n; i++) ids[i] = atoi(argv[first_id + i % n_arg]);
    const int32_t nv = ei_model_n_vocab(m);
    if (is_last) {
        for (long off = 0; off < n; off += 4096)
            if ((rc = ei_session_prefill(s, ids + off, (int32_t)(n - off < 4096 ? n - off : 4096)))) return die("prefill", rc);
        FILE *f = fopen(argv[a + 2], "wb");
        if (!f || fwrite(ei_session_get_logits(s), sizeof(float), (size_t)nv, f) != (size_t)nv) {
            fprintf(stderr, "logits_dump: cannot write %s\n", argv[a + 2]);
            return 1;
        }
        fclose(f);
    } else if (is_logits) {
        int split = atoi(argv[a + 3]);
        split = split < 1 ? 1 : split > n ? n : split;
        float *out = malloc(sizeof(float) * (size_t)n * nv);
        if ((rc = ei_session_eval(s, ids, split, out))) return die("eval", rc);
        for (int i = split; i < n; i++) {
            if ((rc = ei_session_decode(s, ids[i]))) return die("decode", rc);
            memcpy(out + (size_t)i * nv, ei_session_get_logits(s), sizeof(float) * nv);
        }
        FILE *f = fopen(argv[a + 2], "wb");
        if (!f || fwrite(out, sizeof(float) * nv, (size_t)n, f) != (size_t)n) {
            fprintf(stderr, "logits_dump: cannot write %s\n", argv[a + 2]);
            return 1;
        }
        fclose(f);
        free(out);
    } else {
        int n_gen = atoi(argv[a + 2]);
        if ((rc = ei_session_prefill(s, ids, n))) return die("prefill", rc);
        for (int i = 0; i < n_gen; i++) {
            int32_t t = argmax(ei_session_get_logits(s), nv);
            printf(i ? " %d" : "%d", t);
            if (i + 1 < n_gen && (rc = ei_session_decode(s, t))) return die("decode", rc);
        }
        printf("\n");
    }
    free(ids);
    ei_session_free(s);
    ei_adapter_free(ad);
    ei_model_free(m);
    return 0;
}
