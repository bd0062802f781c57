/* test_gguf.c — GGUF reader and model loader on good and broken inputs. Files are built in memory by a small writer
 * below so each defect is exact: truncation at every byte, wrong magic/version, offsets beyond the file, absurd dims,
 * missing keys, unsupported types, empty vocabulary, random bit flips. Nothing may crash (the suite runs under ASan). */
#include <stdlib.h>
#include <string.h>

#include "edgeinf.h"
#include "quant.h"
#include "test.h"

#include "gguf_build.h"

/* What to break in the model built by build_model(). */
typedef struct defect {
    const char *skip_key;     /* omit this metadata key */
    const char *skip_tensor;  /* omit this tensor */
    const char *arch;         /* general.architecture value */
    uint32_t version;
    uint32_t wq_type;         /* type id written for blk.0.attn_q.weight */
    uint64_t wq_offset_add;   /* added to the offset of blk.0.attn_q.weight */
    uint64_t head_count;      /* llama.attention.head_count */
    uint64_t dim0_override;   /* if set, ne0 of token_embd.weight */
    int empty_vocab;
    const char *tok_model;
} defect;

enum { DIM = 32, NL = 1, NH = 2, NKV = 1, FFN = 64, NV = 8, CTX = 64 };

typedef struct tdesc {
    char name[48];
    int64_t ne0, ne1;
} tdesc;

/* Builds a valid 1-layer llama GGUF (F32 weights, small deterministic values) unless `d` says otherwise. */
static wbuf build_model(const defect *d) {
    static const char *vocab[NV] = {"<unk>", "<s>", "</s>", "\xe2\x96\x81" "a", "\xe2\x96\x81" "b", "a", "b", "c"};
    tdesc ts[16];
    int nt = 0;
#define T(nm, a, b) do { snprintf(ts[nt].name, sizeof ts[nt].name, "%s", nm); ts[nt].ne0 = a; ts[nt].ne1 = b; nt++; } while (0)
    T("token_embd.weight", DIM, NV);
    T("output_norm.weight", DIM, 1);
    T("blk.0.attn_norm.weight", DIM, 1);
    T("blk.0.ffn_norm.weight", DIM, 1);
    T("blk.0.attn_q.weight", DIM, DIM);
    T("blk.0.attn_k.weight", DIM, DIM / NH * NKV);
    T("blk.0.attn_v.weight", DIM, DIM / NH * NKV);
    T("blk.0.attn_output.weight", DIM, DIM);
    T("blk.0.ffn_gate.weight", DIM, FFN);
    T("blk.0.ffn_up.weight", DIM, FFN);
    T("blk.0.ffn_down.weight", FFN, DIM);
#undef T
    int n_write = 0;
    for (int i = 0; i < nt; i++) n_write += !(d->skip_tensor && !strcmp(d->skip_tensor, ts[i].name));

    wbuf b = {0};
    put(&b, "GGUF", 4);
    put_u32(&b, d->version ? d->version : 3);
    put_u64(&b, (uint64_t)n_write);
    const char *keys[] = {"general.architecture", "llama.embedding_length", "llama.block_count",
                          "llama.feed_forward_length", "llama.attention.head_count", "llama.attention.head_count_kv",
                          "llama.context_length", "llama.attention.layer_norm_rms_epsilon", "llama.rope.freq_base",
                          "tokenizer.ggml.model", "tokenizer.ggml.tokens", "tokenizer.ggml.scores",
                          "tokenizer.ggml.bos_token_id", "tokenizer.ggml.eos_token_id"};
    const int nk = sizeof keys / sizeof *keys;
    int n_kv = 0;
    for (int i = 0; i < nk; i++) n_kv += !(d->skip_key && !strcmp(d->skip_key, keys[i]));
    put_u64(&b, (uint64_t)n_kv);
    for (int i = 0; i < nk; i++) {
        const char *k = keys[i];
        if (d->skip_key && !strcmp(d->skip_key, k)) continue;
        if (i == 0) kv_str(&b, k, d->arch ? d->arch : "llama");
        else if (i == 1) kv_u32(&b, k, DIM);
        else if (i == 2) kv_u32(&b, k, NL);
        else if (i == 3) kv_u32(&b, k, FFN);
        else if (i == 4) { put_str(&b, k); put_u32(&b, 10); put_u64(&b, d->head_count ? d->head_count : NH); }
        else if (i == 5) kv_u32(&b, k, NKV);
        else if (i == 6) kv_u32(&b, k, CTX);
        else if (i == 7) kv_f32(&b, k, 1e-5f);
        else if (i == 8) kv_f32(&b, k, 10000.0f);
        else if (i == 9) kv_str(&b, k, d->tok_model ? d->tok_model : "llama");
        else if (i == 10) {
            put_str(&b, k); put_u32(&b, 9); put_u32(&b, 8);
            int n = d->empty_vocab ? 0 : NV;
            put_u64(&b, (uint64_t)n);
            for (int j = 0; j < n; j++) put_str(&b, vocab[j]);
        } else if (i == 11) {
            put_str(&b, k); put_u32(&b, 9); put_u32(&b, 6);
            int n = d->empty_vocab ? 0 : NV;
            put_u64(&b, (uint64_t)n);
            for (int j = 0; j < n; j++) { float s = -(float)j; put(&b, &s, 4); }
        } else if (i == 12) kv_u32(&b, k, 1);
        else kv_u32(&b, k, 2);
    }
    uint64_t off = 0;
    uint64_t offs[16];
    for (int i = 0; i < nt; i++) {
        offs[i] = off;
        off += (uint64_t)(ts[i].ne0 * ts[i].ne1 * 4 + 31) / 32 * 32;
    }
    for (int i = 0; i < nt; i++) {
        if (d->skip_tensor && !strcmp(d->skip_tensor, ts[i].name)) continue;
        put_str(&b, ts[i].name);
        const int is_vec = ts[i].ne1 == 1;
        put_u32(&b, is_vec ? 1 : 2);
        uint64_t ne0 = (uint64_t)ts[i].ne0;
        if (i == 0 && d->dim0_override) ne0 = d->dim0_override;
        put_u64(&b, ne0);
        if (!is_vec) put_u64(&b, (uint64_t)ts[i].ne1);
        int is_wq = !strcmp(ts[i].name, "blk.0.attn_q.weight");
        put_u32(&b, is_wq && d->wq_type ? d->wq_type : EI_TYPE_F32);
        put_u64(&b, offs[i] + (is_wq ? d->wq_offset_add : 0));
    }
    while (b.n % 32) put(&b, "\0", 1);
    uint32_t seed = 12345;
    for (int i = 0; i < nt; i++) {
        while (b.n % 32) put(&b, "\0", 1);
        for (int64_t j = 0; j < ts[i].ne0 * ts[i].ne1; j++) {
            seed = seed * 1664525u + 1013904223u;
            float v = ts[i].ne1 == 1 ? 1.0f : ((float)(seed >> 9) / (1 << 23) - 0.5f) * 0.2f;
            put(&b, &v, 4);
        }
    }
    return b;
}

static int load(const wbuf *b, ei_model **m) {
    ei_model_params p = ei_model_default_params();
    p.n_threads = 1;
    return ei_model_load_from_buffer(b->p, b->n, &p, m);
}

/* Loads a model built with defect d and checks the error code and that the message mentions `needle`. */
static void expect_error(const defect *d, int code, const char *needle) {
    wbuf b = build_model(d);
    ei_model *m = NULL;
    int rc = load(&b, &m);
    CHECK(rc == code, "expected %s, got %d (%s) for '%s'", ei_strerror(code), rc, ei_last_error(), needle);
    CHECK(m == NULL, "model returned on error");
    CHECK(strstr(ei_last_error(), needle) != NULL, "message '%s' lacks '%s'", ei_last_error(), needle);
    ei_model_free(m);
    free(b.p);
}

/* ------------------------------------------------------------------ tests */

static void test_valid_model_loads_and_runs(void) {
    defect d = {0};
    wbuf b = build_model(&d);
    ei_model *m = NULL;
    int rc = load(&b, &m);
    CHECK(rc == 0, "load failed: %s", ei_last_error());
    if (rc) { free(b.p); return; }
    CHECK(ei_model_n_vocab(m) == NV, "n_vocab %d", ei_model_n_vocab(m));
    CHECK(ei_model_n_layer(m) == NL, "n_layer");
    CHECK(ei_model_n_ctx_train(m) == CTX, "ctx");
    CHECK(!strcmp(ei_model_meta_str(m, "general.architecture"), "llama"), "meta str");
    CHECK(ei_model_meta_str(m, "no.such.key") == NULL, "absent key");
    ei_session *s = NULL;
    CHECK(ei_session_create(m, NULL, &s) == 0, "session: %s", ei_last_error());
    int32_t ids[3] = {1, 3, 4};
    CHECK(ei_session_prefill(s, ids, 3) == 0, "prefill: %s", ei_last_error());
    const float *lg = ei_session_get_logits(s);
    CHECK(lg != NULL, "logits");
    int finite = 1;
    for (int i = 0; lg && i < NV; i++) finite &= lg[i] == lg[i];
    CHECK(finite, "logits finite");
    /* bad token ids: refused, session unchanged */
    ei_session_stats st0, st1;
    ei_session_get_stats(s, &st0);
    CHECK(ei_session_decode(s, NV) == EI_ERR_RANGE, "id == n_vocab refused");
    CHECK(ei_session_decode(s, -1) == EI_ERR_RANGE, "negative id refused");
    ei_session_get_stats(s, &st1);
    CHECK(st0.tokens == st1.tokens, "session unchanged after a refused id");
    /* context budget: CTX tokens max */
    int32_t many[CTX + 1];
    for (int i = 0; i <= CTX; i++) many[i] = 5;
    CHECK(ei_session_prefill(s, many, CTX) == EI_ERR_CONTEXT_FULL, "over budget refused: %s", ei_last_error());
    ei_session_free(s);
    size_t need = 0;
    CHECK(ei_model_describe(m, NULL, 0, &need) == EI_ERR_BUFFER_TOO_SMALL && need > 100, "describe size");
    ei_model_free(m);
    free(b.p);
}

static void test_every_truncation_is_refused(void) {
    defect d = {0};
    wbuf b = build_model(&d);
    int bad = 0;
    for (size_t len = 0; len < b.n; len += (len < 2048 ? 1 : 97)) {
        uint8_t *copy = malloc(len ? len : 1); /* exact-size copy so ASan sees any overread */
        memcpy(copy, b.p, len);
        ei_model *m = NULL;
        ei_model_params p = ei_model_default_params();
        p.n_threads = 1;
        int rc = ei_model_load_from_buffer(copy, len, &p, &m);
        if (rc == 0 || m) bad++;
        if (rc != EI_ERR_FORMAT && rc != EI_ERR_MISSING_KEY) bad++;
        ei_model_free(m);
        free(copy);
    }
    CHECK(bad == 0, "%d truncated prefixes were not refused with FORMAT/MISSING_KEY", bad);
    free(b.p);
}

static void test_random_bit_flips_never_crash(void) {
    defect d = {0};
    wbuf b = build_model(&d);
    uint32_t seed = 99;
    int loaded = 0;
    for (int it = 0; it < 3000; it++) {
        uint8_t *copy = malloc(b.n);
        memcpy(copy, b.p, b.n);
        for (int f = 0; f < 1 + it % 4; f++) {
            seed = seed * 1103515245u + 12345u;
            size_t pos = (seed >> 8) % (it % 2 ? 600 : b.n); /* half the flips hit the header */
            copy[pos] ^= (uint8_t)(1u << ((seed >> 3) & 7));
        }
        ei_model *m = NULL;
        ei_model_params p = ei_model_default_params();
        p.n_threads = 1;
        if (ei_model_load_from_buffer(copy, b.n, &p, &m) == 0) {
            loaded++;
            ei_session *s = NULL;
            if (ei_session_create(m, NULL, &s) == 0) {
                int32_t ids[2] = {1, 3};
                ei_session_prefill(s, ids, 2);
                ei_session_free(s);
            }
        }
        ei_model_free(m);
        free(copy);
    }
    CHECK(loaded > 0, "some flips land in weights and must still load (%d did)", loaded);
    free(b.p);
}

static void test_bad_headers(void) {
    uint8_t junk[64] = "GGUX";
    ei_model *m = NULL;
    CHECK(ei_model_load_from_buffer(junk, sizeof junk, NULL, &m) == EI_ERR_FORMAT, "bad magic");
    CHECK(strstr(ei_last_error(), "magic"), "message names the magic: %s", ei_last_error());
    CHECK(ei_model_load_from_buffer(junk, 0, NULL, &m) == EI_ERR_FORMAT, "empty buffer");
    defect d = {.version = 1};
    expect_error(&d, EI_ERR_UNSUPPORTED, "version 1");
    d.version = 4;
    expect_error(&d, EI_ERR_UNSUPPORTED, "version 4");
    CHECK(ei_model_load_from_file("/nonexistent/x.gguf", NULL, &m) == EI_ERR_IO, "missing file");
}

static void test_structural_defects(void) {
    defect d = {.wq_offset_add = 1u << 30};
    expect_error(&d, EI_ERR_FORMAT, "beyond the end of the file");
    defect d2 = {.wq_offset_add = 3};
    expect_error(&d2, EI_ERR_FORMAT, "not aligned");
    defect d3 = {.dim0_override = 1ull << 50};
    expect_error(&d3, EI_ERR_FORMAT, "absurd dimension");
    defect d4 = {.head_count = 1ull << 40};
    expect_error(&d4, EI_ERR_FORMAT, "llama.attention.head_count");
    defect d5 = {.head_count = 3};
    expect_error(&d5, EI_ERR_FORMAT, "not divisible");
    defect d6 = {.dim0_override = 48};
    expect_error(&d6, EI_ERR_FORMAT, "token_embd.weight");
}

static void test_missing_and_unsupported(void) {
    defect d = {.skip_key = "llama.embedding_length"};
    expect_error(&d, EI_ERR_MISSING_KEY, "llama.embedding_length");
    defect d2 = {.skip_key = "tokenizer.ggml.tokens"};
    expect_error(&d2, EI_ERR_MISSING_KEY, "tokenizer.ggml.tokens");
    defect d3 = {.skip_tensor = "blk.0.ffn_up.weight"};
    expect_error(&d3, EI_ERR_MISSING_KEY, "blk.0.ffn_up.weight");
    defect d4 = {.wq_type = 12};
    expect_error(&d4, EI_ERR_UNSUPPORTED, "Q4_K");
    defect d5 = {.arch = "gpt2"};
    expect_error(&d5, EI_ERR_UNSUPPORTED, "gpt2");
    defect d6 = {.tok_model = "gpt2"};
    expect_error(&d6, EI_ERR_UNSUPPORTED, "gpt2");
    defect d7 = {.empty_vocab = 1};
    expect_error(&d7, EI_ERR_FORMAT, "empty vocabulary");
}

int main(void) {
    RUN(test_valid_model_loads_and_runs);
    RUN(test_bad_headers);
    RUN(test_structural_defects);
    RUN(test_missing_and_unsupported);
    RUN(test_every_truncation_is_refused);
    RUN(test_random_bit_flips_never_crash);
    return TEST_SUMMARY();
}
