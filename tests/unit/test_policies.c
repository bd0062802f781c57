/* test_policies.c — streaming and edgeinfinite on the tiny fixture model (docs/edgeinfinite.md):
 * bit-identical to `full` while nothing is evicted (routing), different afterwards, independent of chunking and thread
 * count, constant KV, memory budget, adapter validation. Adapters are built in memory with known values. */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "edgeinf.h"
#include "gguf_build.h"
#include "test.h"

#define MODEL "tests/fixtures/tiny/tiny-f32.gguf"
#define MODEL_Q8 "tests/fixtures/tiny/tiny-q8_0.gguf"
enum { DIM = 64, NL = 2, NH = 4, NKV = 2, HD = 16, RANK = 2, N_SINK = 4, WINDOW = 16, SEG = 8, NTOK = 120 };

/* An adapter for the tiny model: gate bias `bias` (0 -> gate 0.5 at x̂·w = 0), small pseudo-random weights. */
static wbuf build_adapter(float bias, uint32_t n_head, uint32_t version) {
    wbuf b = {0};
    const int nt = NL * 8;
    put(&b, "GGUF", 4);
    put_u32(&b, 3);
    put_u64(&b, (uint64_t)nt);
    put_u64(&b, 14);
    kv_str(&b, "general.architecture", "edgeinf-adapter");
    kv_u32(&b, "edgeinf.adapter.version", version);
    kv_str(&b, "edgeinf.adapter.kind", "edgeinfinite");
    kv_u32(&b, "edgeinf.adapter.n_layer", NL);
    kv_u32(&b, "edgeinf.adapter.n_head", n_head);
    kv_u32(&b, "edgeinf.adapter.n_head_kv", NKV);
    kv_u32(&b, "edgeinf.adapter.head_dim", HD);
    kv_u32(&b, "edgeinf.adapter.dim", DIM);
    kv_u32(&b, "edgeinf.ei.n_sink", N_SINK);
    kv_u32(&b, "edgeinf.ei.window", WINDOW);
    kv_u32(&b, "edgeinf.ei.seg", SEG);
    kv_f32(&b, "edgeinf.ei.eps", 1e-6f);
    kv_u32(&b, "edgeinf.ei.rank", RANK);
    kv_bool(&b, "edgeinf.adapter.unused_flag", 1);
    struct { const char *suffix; int64_t ne0, ne1; } ts[8] = {
        {"ei_gate.weight", DIM, NH}, {"ei_gate.bias", NH, 1},
        {"ei_mem_k_a.weight", DIM, RANK}, {"ei_mem_k_b.weight", RANK, NKV * HD},
        {"ei_mem_v_a.weight", DIM, RANK}, {"ei_mem_v_b.weight", RANK, NKV * HD},
        {"ei_mem_q_a.weight", DIM, RANK}, {"ei_mem_q_b.weight", RANK, NH * HD}};
    uint64_t off = 0;
    for (int l = 0; l < NL; l++)
        for (int t = 0; t < 8; t++) {
            char name[64];
            snprintf(name, sizeof name, "blk.%d.%s", l, ts[t].suffix);
            put_str(&b, name);
            const int is_vec = ts[t].ne1 == 1;
            put_u32(&b, is_vec ? 1 : 2);
            put_u64(&b, (uint64_t)ts[t].ne0);
            if (!is_vec) put_u64(&b, (uint64_t)ts[t].ne1);
            put_u32(&b, 0);
            put_u64(&b, off);
            off += ((uint64_t)(ts[t].ne0 * ts[t].ne1 * 4) + 31) / 32 * 32;
        }
    pad_to(&b, 32);
    uint32_t seed = 7;
    for (int l = 0; l < NL; l++)
        for (int t = 0; t < 8; t++) {
            pad_to(&b, 32);
            for (int64_t i = 0; i < ts[t].ne0 * ts[t].ne1; i++) {
                seed = seed * 1664525u + 1013904223u;
                float v = ((float)(seed >> 9) / (1 << 23) - 0.5f) * 0.2f;
                if (t == 1) v = bias;
                put(&b, &v, 4);
            }
        }
    return b;
}

/* A PoD adapter (no tensors) for the tiny model: block starts, n_sink, n_recent, share, delta. */
static wbuf build_pod_adapter(const uint32_t *starts, int n_starts, uint32_t n_recent, const char *share, float delta) {
    wbuf b = {0};
    put(&b, "GGUF", 4);
    put_u32(&b, 3);
    put_u64(&b, 0);
    put_u64(&b, 13);
    kv_str(&b, "general.architecture", "edgeinf-adapter");
    kv_u32(&b, "edgeinf.adapter.version", 1);
    kv_str(&b, "edgeinf.adapter.kind", "pod");
    kv_u32(&b, "edgeinf.adapter.n_layer", NL);
    kv_u32(&b, "edgeinf.adapter.n_head", NH);
    kv_u32(&b, "edgeinf.adapter.n_head_kv", NKV);
    kv_u32(&b, "edgeinf.adapter.head_dim", HD);
    kv_u32(&b, "edgeinf.adapter.dim", DIM);
    put_str(&b, "edgeinf.pod.block_starts");
    put_u32(&b, 9);
    put_u32(&b, 4);
    put_u64(&b, (uint64_t)n_starts);
    for (int i = 0; i < n_starts; i++) put_u32(&b, starts[i]);
    kv_u32(&b, "edgeinf.pod.n_sink", N_SINK);
    kv_u32(&b, "edgeinf.pod.n_recent", n_recent);
    kv_str(&b, "edgeinf.pod.share", share);
    kv_f32(&b, "edgeinf.pod.delta", delta);
    return b;
}

static ei_model *load_model(const char *path, int threads) {
    ei_model_params p = ei_model_default_params();
    p.n_threads = threads;
    ei_model *m = NULL;
    int rc = ei_model_load_from_file(path, &p, &m);
    CHECK(rc == 0, "load %s: %s", path, ei_last_error());
    return m;
}

static void token_ids(int32_t *ids, int n) {
    uint32_t x = 12345;
    ids[0] = 1;
    for (int i = 1; i < n; i++) {
        x = x * 1103515245u + 12345u;
        ids[i] = 3 + (int32_t)((x >> 8) % 380);
    }
}

/* Logits after every token: the first `split` in one eval, the rest in pieces of `piece` tokens. */
static float *run(ei_model *m, int32_t policy, const ei_adapter *ad, const int32_t *ids, int n, int split, int piece,
                  ei_session_stats *st_out) {
    ei_session_params sp = ei_session_default_params();
    sp.policy = policy;
    sp.adapter = ad;
    if (policy != EI_POLICY_FULL) {
        sp.n_sink = N_SINK;
        sp.window = WINDOW;
        sp.seg = SEG;
    }
    ei_session *s = NULL;
    int rc = ei_session_create(m, &sp, &s);
    CHECK(rc == 0, "session %s: %s", ei_policy_name(policy), ei_last_error());
    if (rc) return NULL;
    const int32_t nv = ei_model_n_vocab(m);
    float *out = malloc(sizeof(float) * (size_t)n * nv);
    CHECK(ei_session_eval(s, ids, split, out) == 0, "eval: %s", ei_last_error());
    for (int i = split; i < n; i += piece) {
        int c = n - i < piece ? n - i : piece;
        CHECK(ei_session_eval(s, ids + i, c, out + (size_t)i * nv) == 0, "eval: %s", ei_last_error());
    }
    if (st_out) ei_session_get_stats(s, st_out);
    ei_session_free(s);
    return out;
}

static int first_diff_row(const float *a, const float *b, int n, int nv) {
    for (int i = 0; i < n; i++)
        if (memcmp(a + (size_t)i * nv, b + (size_t)i * nv, sizeof(float) * nv)) return i;
    return n;
}

static void check_policy_vs_full(const char *path, int32_t policy, int with_adapter) {
    ei_model *m = load_model(path, 1);
    if (!m) return;
    wbuf ab = build_adapter(0.0f, NH, 1);
    ei_adapter *ad = NULL;
    if (with_adapter) CHECK(ei_adapter_load_from_buffer(m, ab.p, ab.n, &ad) == 0, "adapter: %s", ei_last_error());
    int32_t ids[NTOK];
    token_ids(ids, NTOK);
    const int nv = ei_model_n_vocab(m), budget = N_SINK + WINDOW + SEG;
    ei_session_stats st;
    float *full = run(m, EI_POLICY_FULL, NULL, ids, NTOK, 5, 1, NULL);
    float *pol = run(m, policy, ad, ids, NTOK, 5, 1, &st);
    float *pol2 = run(m, policy, ad, ids, NTOK, 37, 13, NULL); /* other chunking */
    if (full && pol && pol2) {
        int d = first_diff_row(full, pol, NTOK, nv);
        CHECK(d == budget, "%s: first row differing from full is %d, expected %d (nothing evicted before)",
              ei_policy_name(policy), d, budget);
        CHECK(first_diff_row(pol, pol2, NTOK, nv) == NTOK, "%s: result depends on chunking", ei_policy_name(policy));
        const int64_t evicted_segs = (NTOK - 1 - N_SINK) / SEG - WINDOW / SEG;
        CHECK(st.kv_tokens == NTOK - evicted_segs * SEG, "kv_tokens %lld", (long long)st.kv_tokens);
        const int32_t want_policy = policy == EI_POLICY_AUTO ? EI_POLICY_EDGEINFINITE : policy;
        CHECK(st.policy == want_policy, "resolved policy %s", ei_policy_name(st.policy));
        CHECK(st.compressions == (want_policy == EI_POLICY_EDGEINFINITE ? evicted_segs : 0),
              "compressions %lld (want %lld)", (long long)st.compressions, (long long)evicted_segs);
        CHECK(st.kv_bytes == 2 * 4 * NL * NKV * HD * budget, "kv_bytes %lld", (long long)st.kv_bytes);
        CHECK(st.n_sink == N_SINK && st.window == WINDOW && st.seg == SEG, "layout in stats");
        int finite = 1;
        for (size_t i = 0; i < (size_t)NTOK * nv; i++) finite &= isfinite(pol[i]);
        CHECK(finite, "finite logits");
    }
    free(full);
    free(pol);
    free(pol2);
    ei_adapter_free(ad);
    free(ab.p);
    ei_model_free(m);
}

static void test_streaming_equals_full_until_eviction(void) { check_policy_vs_full(MODEL, EI_POLICY_STREAMING, 0); }
static void test_edgeinfinite_routing_exact_until_memory(void) { check_policy_vs_full(MODEL, EI_POLICY_EDGEINFINITE, 1); }
static void test_edgeinfinite_q8(void) { check_policy_vs_full(MODEL_Q8, EI_POLICY_EDGEINFINITE, 1); }
static void test_auto_with_adapter_is_edgeinfinite(void) { check_policy_vs_full(MODEL, EI_POLICY_AUTO, 1); }

/* The memory must matter: edgeinfinite differs from streaming once something was compressed, and a gate near 0
 * (bias -30) brings it back to streaming. */
static void test_memory_and_gate_matter(void) {
    ei_model *m = load_model(MODEL, 2);
    if (!m) return;
    wbuf on = build_adapter(0.0f, NH, 1), off = build_adapter(-30.0f, NH, 1);
    ei_adapter *a_on = NULL, *a_off = NULL;
    CHECK(ei_adapter_load_from_buffer(m, on.p, on.n, &a_on) == 0, "%s", ei_last_error());
    CHECK(ei_adapter_load_from_buffer(m, off.p, off.n, &a_off) == 0, "%s", ei_last_error());
    CHECK(ei_adapter_n_params(a_on) == NL * (NH * DIM + NH + 3 * RANK * DIM + 2 * NKV * HD * RANK + NH * HD * RANK),
          "n_params %lld", (long long)ei_adapter_n_params(a_on));
    CHECK(!strcmp(ei_adapter_kind(a_on), "edgeinfinite") && !strcmp(ei_adapter_kind(NULL), "none"), "kind %s",
          ei_adapter_kind(a_on));
    int32_t ids[NTOK];
    token_ids(ids, NTOK);
    const int nv = ei_model_n_vocab(m);
    float *str = run(m, EI_POLICY_STREAMING, NULL, ids, NTOK, 64, 64, NULL);
    float *ei_on = run(m, EI_POLICY_EDGEINFINITE, a_on, ids, NTOK, 64, 64, NULL);
    float *ei_off = run(m, EI_POLICY_EDGEINFINITE, a_off, ids, NTOK, 64, 64, NULL);
    if (str && ei_on && ei_off) {
        double d_on = 0, d_off = 0;
        for (size_t i = 0; i < (size_t)NTOK * nv; i++) {
            d_on = fmax(d_on, fabs(ei_on[i] - str[i]));
            d_off = fmax(d_off, fabs(ei_off[i] - str[i]));
        }
        CHECK(d_on > 1e-3, "memory read through an open gate changes the logits (max diff %g)", d_on);
        CHECK(d_off < 1e-5, "a closed gate gives streaming (max diff %g)", d_off);
    }
    free(str);
    free(ei_on);
    free(ei_off);
    ei_adapter_free(a_on);
    ei_adapter_free(a_off);
    free(on.p);
    free(off.p);
    ei_model_free(m);
}

static void test_adapter_refusals(void) {
    ei_model *m = load_model(MODEL, 1);
    if (!m) return;
    wbuf bad_heads = build_adapter(0, NH * 2, 1), bad_ver = build_adapter(0, NH, 2);
    ei_adapter *ad = NULL;
    CHECK(ei_adapter_load_from_buffer(m, bad_heads.p, bad_heads.n, &ad) == EI_ERR_MISMATCH && !ad,
          "head count mismatch: %s", ei_last_error());
    CHECK(strstr(ei_last_error(), "n_head") != NULL, "message names the field: %s", ei_last_error());
    CHECK(ei_adapter_load_from_buffer(m, bad_ver.p, bad_ver.n, &ad) == EI_ERR_UNSUPPORTED, "version: %s", ei_last_error());
    CHECK(ei_adapter_load_from_file(m, MODEL, &ad) == EI_ERR_FORMAT, "a model is not an adapter: %s", ei_last_error());
    for (size_t cut = 0; cut < bad_ver.n; cut += 7) /* truncations never crash */
        if (ei_adapter_load_from_buffer(m, bad_ver.p, cut, &ad) == 0) ei_adapter_free(ad);
    ei_session_params sp = ei_session_default_params();
    sp.policy = EI_POLICY_EDGEINFINITE;
    ei_session *s = NULL;
    CHECK(ei_session_create(m, &sp, &s) == EI_ERR_INVALID_ARG && !s, "edgeinfinite without adapter refused");
    sp.policy = EI_POLICY_STREAMING;
    sp.n_sink = 4;
    sp.window = 12;
    sp.seg = 8;
    CHECK(ei_session_create(m, &sp, &s) == EI_ERR_INVALID_ARG, "window not a multiple of seg refused");
    sp.window = 4096;
    CHECK(ei_session_create(m, &sp, &s) == EI_ERR_INVALID_ARG, "layout beyond the training context refused");
    free(bad_heads.p);
    free(bad_ver.p);
    ei_model_free(m);
}

static void test_memory_budget(void) {
    ei_model *m = load_model(MODEL, 1);
    if (!m) return;
    const int64_t per_tok = 2 * 4 * NL * NKV * HD;
    ei_session_params sp = ei_session_default_params();
    sp.policy = EI_POLICY_STREAMING;
    sp.seg = 16;
    sp.n_sink = 4;
    sp.memory_budget = per_tok * (4 + 64 + 16) + 100; /* room for window 64 exactly */
    ei_session *s = NULL;
    CHECK(ei_session_create(m, &sp, &s) == 0, "%s", ei_last_error());
    if (s) {
        ei_session_stats st;
        ei_session_get_stats(s, &st);
        CHECK(st.window == 64 && st.kv_bytes + st.memory_bytes <= sp.memory_budget, "window %d, bytes %lld", st.window,
              (long long)(st.kv_bytes + st.memory_bytes));
        ei_session_free(s);
    }
    sp.memory_budget = per_tok * 10;
    CHECK(ei_session_create(m, &sp, &s) == EI_ERR_INVALID_ARG, "budget too small refused");
    CHECK(strstr(ei_last_error(), "too small") != NULL, "message: %s", ei_last_error());
    ei_model_free(m);
}

/* PoD: one block per layer is exactly full; one block differs only once tokens turn distant; KV bytes follow
 * docs/pod.md (values of every layer, keys: anchors all, others a ring); bad blocks and δ refused. */
static void test_pod(void) {
    ei_model *m = load_model(MODEL, 1);
    if (!m) return;
    const uint32_t per_layer[2] = {0, 1}, one_block[1] = {0}, bad_start[1] = {1}, not_increasing[2] = {0, 0};
    wbuf a2 = build_pod_adapter(per_layer, 2, 16, "scores", 0.9f), a1 = build_pod_adapter(one_block, 1, 16, "keys", 0.9f);
    ei_adapter *ad2 = NULL, *ad1 = NULL, *bad = NULL;
    CHECK(ei_adapter_load_from_buffer(m, a2.p, a2.n, &ad2) == 0, "%s", ei_last_error());
    CHECK(ei_adapter_load_from_buffer(m, a1.p, a1.n, &ad1) == 0, "%s", ei_last_error());
    int32_t ids[NTOK];
    token_ids(ids, NTOK);
    const int nv = ei_model_n_vocab(m);
    ei_session_stats st;
    float *full = run(m, EI_POLICY_FULL, NULL, ids, NTOK, 5, 1, NULL);
    float *pod_all = run(m, EI_POLICY_POD, ad2, ids, NTOK, 37, 1, NULL);
    float *pod_one = run(m, EI_POLICY_POD, ad1, ids, NTOK, 37, 1, &st);
    if (full && pod_all && pod_one) {
        CHECK(first_diff_row(full, pod_all, NTOK, nv) == NTOK, "one block per layer == full, bit for bit");
        CHECK(first_diff_row(full, pod_one, NTOK, nv) == N_SINK + 16, "one block: first differing row %d, want %d",
              first_diff_row(full, pod_one, NTOK, nv), N_SINK + 16);
        const int64_t cap = ei_model_n_ctx_train(m), ring = N_SINK + 16 - 1 + 64, kv_dim = NKV * HD;
        CHECK(st.kv_bytes == 4 * kv_dim * ((NL + 1) * cap + (NL - 1) * (ring < cap ? ring : cap)),
              "kv_bytes %lld", (long long)st.kv_bytes);
        CHECK(st.policy == EI_POLICY_POD && st.memory_bytes == 0, "stats");
    }
    ei_session_params sp = ei_session_default_params();
    sp.adapter = ad1;
    ei_session *s = NULL;
    CHECK(ei_session_create(m, &sp, &s) == 0, "%s", ei_last_error());
    if (s) {
        ei_session_get_stats(s, &st);
        CHECK(st.policy == EI_POLICY_POD, "auto with a pod adapter is pod");
        size_t need = 0;
        uint8_t ck[65536]; /* a pod checkpoint of this tiny session is a few KB (docs/checkpoint.md) */
        CHECK(ei_session_save_to_buffer(s, NULL, NULL, 0, &need) == EI_ERR_BUFFER_TOO_SMALL && need <= sizeof ck &&
                  ei_session_save_to_buffer(s, NULL, ck, sizeof ck, &need) == 0,
              "pod checkpoints saved: %s", ei_last_error());
        ei_session_free(s);
    }
    sp.policy = EI_POLICY_EDGEINFINITE;
    CHECK(ei_session_create(m, &sp, &s) == EI_ERR_INVALID_ARG, "edgeinfinite with a pod-only adapter refused");
    wbuf b1 = build_pod_adapter(bad_start, 1, 16, "keys", 0.9f), b2 = build_pod_adapter(not_increasing, 2, 16, "keys", 0.9f),
         b3 = build_pod_adapter(one_block, 1, 16, "values", 0.9f), b4 = build_pod_adapter(one_block, 1, 16, "keys", 1.5f),
         b5 = build_pod_adapter(one_block, 1, 0, "keys", 0.5f);
    CHECK(ei_adapter_load_from_buffer(m, b1.p, b1.n, &bad) == EI_ERR_MISMATCH, "blocks not starting at 0: %s", ei_last_error());
    CHECK(ei_adapter_load_from_buffer(m, b2.p, b2.n, &bad) == EI_ERR_MISMATCH, "blocks not increasing: %s", ei_last_error());
    CHECK(ei_adapter_load_from_buffer(m, b3.p, b3.n, &bad) == EI_ERR_FORMAT, "share 'values': %s", ei_last_error());
    CHECK(ei_adapter_load_from_buffer(m, b4.p, b4.n, &bad) == EI_ERR_INVALID_ARG && strstr(ei_last_error(), "delta"),
          "delta 1.5: %s", ei_last_error());
    CHECK(ei_adapter_load_from_buffer(m, b5.p, b5.n, &bad) == EI_ERR_FORMAT, "n_recent 0: %s", ei_last_error());
    wbuf *all[] = {&a1, &a2, &b1, &b2, &b3, &b4, &b5};
    for (size_t i = 0; i < sizeof all / sizeof *all; i++) free(all[i]->p);
    free(full);
    free(pod_all);
    free(pod_one);
    ei_adapter_free(ad1);
    ei_adapter_free(ad2);
    ei_model_free(m);
}

int main(void) {
    RUN(test_streaming_equals_full_until_eviction);
    RUN(test_edgeinfinite_routing_exact_until_memory);
    RUN(test_edgeinfinite_q8);
    RUN(test_auto_with_adapter_is_edgeinfinite);
    RUN(test_memory_and_gate_matter);
    RUN(test_adapter_refusals);
    RUN(test_memory_budget);
    RUN(test_pod);
    return TEST_SUMMARY();
}
