/* test_checkpoint.c — session checkpoints (docs/checkpoint.md): bit-identical round trips, restore-then-continue equal
 * to an uninterrupted run, constant size for window policies, every kind of bad file refused with the session left
 * unchanged, atomic file replacement. Runs on the tiny fixtures (tests/fixtures/tiny, tests/fixtures/tiny-ei, and
 * tests/fixtures/tiny-pod for pod and edgeinfinite+pod).
 * The file's CRCs and layout are checked against a bitwise CRC32 and a parser written here, independent of
 * src/checkpoint.c. "Unchanged" is checked byte for byte: the session's own checkpoint before and after. */
#include "edgeinf.h"
#include "adapter.h"
#include "test.h"

#include <errno.h>
#include <signal.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#define MODEL_F32 "tests/fixtures/tiny/tiny-f32.gguf"
#define MODEL_Q8 "tests/fixtures/tiny/tiny-q8_0.gguf"
#define ADAPTER "tests/fixtures/tiny-ei/tiny-ei-adapter.gguf"
#define POD_DIR "tests/fixtures/tiny-pod/"

static ei_model *g_model, *g_model_q8;
static ei_adapter *g_adapter;
/* pod adapters (share scores / keys; both layers in one block, n_sink 4, n_recent 16) and edgeinfinite+pod ones
 * (tiny-ei's gate and layout 4 + 16 + 8, one block, n_recent 8) */
static ei_adapter *g_pod_s, *g_pod_k, *g_eipod_s, *g_eipod_k;
static char g_dir[256];

/* ------------------------------------------------------------------ helpers */

/* Bitwise CRC32 (IEEE, reflected): the reference the file's CRCs are checked against. */
static uint32_t crc_ref(const uint8_t *p, size_t n) {
    uint32_t c = 0xFFFFFFFFu;
    for (size_t i = 0; i < n; i++) {
        c ^= p[i];
        for (int k = 0; k < 8; k++) c = (c >> 1) ^ (0xEDB88320u & (0u - (c & 1)));
    }
    return ~c;
}
static uint32_t rd32(const uint8_t *p) { return p[0] | p[1] << 8 | p[2] << 16 | (uint32_t)p[3] << 24; }
static uint64_t rd64(const uint8_t *p) { return rd32(p) | (uint64_t)rd32(p + 4) << 32; }
static void wr32(uint8_t *p, uint32_t v) {
    for (int i = 0; i < 4; i++) p[i] = (uint8_t)(v >> 8 * i);
}

/* Section table of a checkpoint, parsed here: offsets of each section header, tags, lengths. */
typedef struct {
    int n;
    size_t off[32], len[32];
    char tag[32][5];
} sections;

static int parse_sections(const uint8_t *b, size_t size, sections *sc) {
    sc->n = (int)rd32(b + 12);
    size_t off = 96;
    for (int i = 0; i < sc->n; i++) {
        if (off + 16 > size) return -1;
        sc->off[i] = off;
        memcpy(sc->tag[i], b + off, 4);
        sc->tag[i][4] = 0;
        sc->len[i] = (size_t)rd64(b + off + 4);
        off += 16 + sc->len[i];
    }
    return off == size ? 0 : -1;
}

static int find_section(const sections *sc, const char *tag) {
    for (int i = 0; i < sc->n; i++)
        if (!strcmp(sc->tag[i], tag)) return i;
    return -1;
}

typedef struct {
    int policy, n_sink, window, seg, ctx;
    const ei_adapter *adapter;
    int n_recent, pod_share; /* pod policies: 0 = the adapter's; pod_share 1 = scores, 2 = keys */
} layout;

static const layout L_FULL = {EI_POLICY_FULL, 0, 0, 0, 200, NULL, 0, 0};
static const layout L_STREAM = {EI_POLICY_STREAMING, 4, 16, 8, 0, NULL, 0, 0};
static layout L_EI; /* edgeinfinite with the fixture adapter (set in main) */

static ei_session *make_session(ei_model *m, const layout *l) {
    ei_session_params p = ei_session_default_params();
    p.policy = l->policy;
    p.n_sink = l->n_sink;
    p.window = l->window;
    p.seg = l->seg;
    p.n_ctx = l->ctx;
    p.adapter = l->adapter;
    p.n_recent = l->n_recent;
    p.pod_share = l->pod_share;
    ei_session *s = NULL;
    int rc = ei_session_create(m, &p, &s);
    CHECK(rc == 0 && s, "session create: %d %s", rc, ei_last_error());
    return s;
}

static ei_sampler *make_sampler(int seeded, int32_t last_n) {
    ei_sampler_params p = ei_sampler_default_params();
    if (seeded) {
        p.temperature = 0.9f;
        p.repeat_penalty = 1.1f;
        p.seed = 7;
    } else p.temperature = 0;
    p.repeat_last_n = last_n;
    ei_sampler *smp = NULL;
    CHECK(ei_sampler_create(&p, &smp) == 0, "sampler create");
    return smp;
}

/* Deterministic pseudo-random token ids in [3, n_vocab). */
static void tokens(int32_t *ids, int n, uint32_t seed) {
    const int32_t nv = ei_model_n_vocab(g_model);
    for (int i = 0; i < n; i++) {
        seed = seed * 1664525u + 1013904223u;
        ids[i] = 3 + (int32_t)((seed >> 8) % (uint32_t)(nv - 3));
    }
}

/* Runs n pseudo-random tokens through s in uneven chunks (prefill and single-token decode both used). */
static int feed(ei_session *s, int n, uint32_t seed) {
    int32_t *ids = malloc(sizeof(int32_t) * (size_t)(n ? n : 1));
    tokens(ids, n, seed);
    int rc = 0;
    for (int off = 0; off < n && !rc;) {
        int c = 1 + (off * 7 + 3) % 11;
        if (c > n - off) c = n - off;
        rc = c == 1 ? ei_session_decode(s, ids[off]) : ei_session_prefill(s, ids + off, c);
        off += c;
    }
    free(ids);
    CHECK(rc == 0, "feed: %d %s", rc, ei_last_error());
    return rc;
}

/* The session's checkpoint as a malloc'd buffer (with the sampler when given). */
static uint8_t *snapshot(const ei_session *s, const ei_sampler *smp, size_t *n) {
    size_t need = 0;
    int rc = ei_session_save_to_buffer(s, smp, NULL, 0, &need);
    CHECK(rc == EI_ERR_BUFFER_TOO_SMALL && need > 96, "size query: %d %zu", rc, need);
    uint8_t *b = malloc(need);
    rc = ei_session_save_to_buffer(s, smp, b, need, n);
    CHECK(rc == 0 && *n == need, "save to buffer: %d %s", rc, ei_last_error());
    return b;
}

static int logits_equal(const ei_session *a, const ei_session *b) {
    const float *la = ei_session_get_logits(a), *lb = ei_session_get_logits(b);
    if (!la || !lb) return la == lb;
    return !memcmp(la, lb, sizeof(float) * (size_t)ei_model_n_vocab(g_model));
}

/* Generates n tokens from s with smp (accept + decode each); writes them to out. */
static void generate(ei_session *s, ei_sampler *smp, int n, int32_t *out) {
    for (int i = 0; i < n; i++) {
        out[i] = ei_sampler_sample(smp, ei_session_get_logits(s), ei_model_n_vocab(g_model));
        ei_sampler_accept(smp, out[i]);
        CHECK(ei_session_decode(s, out[i]) == 0, "decode: %s", ei_last_error());
    }
}

static const layout *all_layouts(int i) { return i == 0 ? &L_FULL : i == 1 ? &L_STREAM : &L_EI; }

/* ------------------------------------------------------------------ format */

static int cmp_i32(const void *a, const void *b) {
    const int32_t x = *(const int32_t *)a, y = *(const int32_t *)b;
    return (x > y) - (x < y);
}

/* The bytes follow docs/checkpoint.md: magic, version, header size, fingerprints, layout, header CRC, then sections
 * whose CRCs match a bitwise CRC32 computed here. */
static void test_format(void) {
    CHECK(crc_ref((const uint8_t *)"123456789", 9) == 0xCBF43926u, "reference CRC32 check value");
    for (int li = 0; li < 3; li++) {
        const layout *l = all_layouts(li);
        ei_session *s = make_session(g_model, l);
        ei_sampler *smp = make_sampler(1, 64);
        feed(s, 70, 11);
        size_t n;
        uint8_t *b = snapshot(s, smp, &n);
        CHECK(!memcmp(b, "EICK", 4) && rd32(b + 4) == EI_CHECKPOINT_VERSION && rd32(b + 8) == 96, "magic/version");
        CHECK(!memcmp(b + 16, ei_model_fingerprint(g_model), 16), "model fingerprint");
        static const uint8_t zero[16];
        CHECK(l->adapter ? memcmp(b + 32, zero, 16) != 0 : !memcmp(b + 32, zero, 16), "adapter fingerprint");
        CHECK((int)rd32(b + 48) == l->policy, "policy %u", rd32(b + 48));
        CHECK(crc_ref(b, 92) == rd32(b + 92), "header CRC");
        sections sc;
        CHECK(parse_sections(b, n, &sc) == 0, "sections cover the file");
        for (int i = 0; i < sc.n; i++)
            CHECK(crc_ref(b + sc.off[i] + 16, sc.len[i]) == rd32(b + sc.off[i] + 12), "CRC of %s", sc.tag[i]);
        const char *want[] = {"CNTR", "TOKS", "KEYS", "VALS", "LOGT", "MEMM", "MEMZ", "MSEG", "CODK", "CODV", "SMPL"};
        for (int t = 0; t < 11; t++) {
            const int ei_only = t >= 5 && t <= 9;
            CHECK((find_section(&sc, want[t]) >= 0) == (!ei_only || l->policy == EI_POLICY_EDGEINFINITE),
                  "%s: section %s", ei_policy_name(l->policy), want[t]);
        }
        /* TOKS: the ids of the tokens in the cache, in their slots (for full: the tokens in order) */
        if (l->policy == EI_POLICY_FULL) {
            int32_t ids[70];
            /* feed() tokens: regenerate them */
            tokens(ids, 70, 11);
            const int ts = find_section(&sc, "TOKS");
            int same = sc.len[ts] == 70 * 4;
            for (int i = 0; same && i < 70; i++) same = (int32_t)rd32(b + sc.off[ts] + 16 + 4 * i) == ids[i];
            CHECK(same, "full: TOKS holds the 70 token ids in order");
        }
        if (l->policy != EI_POLICY_FULL) {
            /* window policies: the live ids are those of the sink and of the last kv_tokens - n_sink positions */
            int32_t ids[70], want[70], got[64];
            tokens(ids, 70, 11);
            ei_session_stats st;
            ei_session_get_stats(s, &st);
            int nw = 0, ng = 0;
            for (int p = 0; p < 70; p++)
                if (p < l->n_sink || p >= 70 - (st.kv_tokens - l->n_sink)) want[nw++] = ids[p];
            const int tk = find_section(&sc, "TOKS");
            for (size_t i = 0; i < sc.len[tk] / 4 && ng < 64; i++) {
                const int32_t id = (int32_t)rd32(b + sc.off[tk] + 16 + 4 * i);
                if (id != -1) got[ng++] = id;
            }
            qsort(want, (size_t)nw, sizeof(int32_t), cmp_i32);
            qsort(got, (size_t)ng, sizeof(int32_t), cmp_i32);
            CHECK(nw == ng && !memcmp(want, got, sizeof(int32_t) * (size_t)nw) && (int64_t)sc.len[tk] / 4 == 28,
                  "%s: TOKS holds the %d cached ids (got %d)", ei_policy_name(l->policy), nw, ng);
        }
        const int ts = find_section(&sc, "CNTR");
        CHECK(rd64(b + sc.off[ts] + 16) == 70, "CNTR n_past");
        free(b);
        ei_sampler_free(smp);
        ei_session_free(s);
    }
}

static void test_buffer_api(void) {
    ei_session *s = make_session(g_model, &L_STREAM);
    feed(s, 10, 1);
    size_t need = 0, n = 0;
    CHECK(ei_session_save_to_buffer(s, NULL, NULL, 0, &need) == EI_ERR_BUFFER_TOO_SMALL && need > 96, "size query");
    uint8_t *b = malloc(need);
    CHECK(ei_session_save_to_buffer(s, NULL, b, need - 1, &n) == EI_ERR_BUFFER_TOO_SMALL && n == need, "cap - 1");
    CHECK(ei_session_save_to_buffer(s, NULL, b, need, &n) == 0 && n == need, "exact cap");
    CHECK(ei_session_save_to_buffer(NULL, NULL, b, need, &n) == EI_ERR_INVALID_ARG, "NULL session");
    CHECK(ei_session_save_to_buffer(s, NULL, b, need, NULL) == EI_ERR_INVALID_ARG, "NULL n_out");
    CHECK(ei_session_load_from_buffer(NULL, NULL, b, need) == EI_ERR_INVALID_ARG, "NULL session on load");
    CHECK(ei_session_load_from_buffer(s, NULL, NULL, 5) == EI_ERR_INVALID_ARG, "NULL data on load");
    CHECK(ei_session_save(s, NULL, "") == EI_ERR_INVALID_ARG, "empty path");
    free(b);
    ei_session_free(s);
}

/* ------------------------------------------------------------------ round trips */

/* Save after n tokens, load into a fresh session and into one that has seen other tokens: logits bit-identical, same
 * stats, and 20 more decoded tokens give bit-identical logits at every step; re-saving gives the same bytes. */
static void roundtrip_at(const layout *l, int n_tokens, int n_after) {
    ei_session *a = make_session(g_model, l), *b = make_session(g_model, l), *c = make_session(g_model, l);
    if (!a || !b || !c) return;
    feed(a, n_tokens, 5);
    feed(c, 37, 99); /* c holds other tokens (and other memory) before loading */
    size_t n, n2, n3;
    uint8_t *buf = snapshot(a, NULL, &n);
    CHECK(ei_session_load_from_buffer(b, NULL, buf, n) == 0, "%s@%d load fresh: %s", ei_policy_name(l->policy),
          n_tokens, ei_last_error());
    CHECK(ei_session_load_from_buffer(c, NULL, buf, n) == 0, "load dirty: %s", ei_last_error());
    CHECK(logits_equal(a, b) && logits_equal(a, c), "%s@%d: logits after load", ei_policy_name(l->policy), n_tokens);
    uint8_t *buf2 = snapshot(b, NULL, &n2), *buf3 = snapshot(c, NULL, &n3);
    CHECK(n2 == n && !memcmp(buf, buf2, n), "%s@%d: re-save of the loaded session is byte-identical",
          ei_policy_name(l->policy), n_tokens);
    CHECK(n3 == n && !memcmp(buf, buf3, n), "re-save of the dirty-then-loaded session is byte-identical");
    ei_session_stats sa, sb;
    ei_session_get_stats(a, &sa);
    ei_session_get_stats(c, &sb);
    CHECK(sa.tokens == sb.tokens && sa.kv_tokens == sb.kv_tokens && sa.compressions == sb.compressions &&
              sa.prefill_tokens == sb.prefill_tokens && sa.decode_tokens == sb.decode_tokens &&
              sa.prefill_ms == sb.prefill_ms,
          "stats restored");
    int32_t ids[64];
    tokens(ids, n_after, 1234);
    int same = 1;
    for (int i = 0; i < n_after; i++) {
        ei_session_decode(a, ids[i]);
        ei_session_decode(b, ids[i]);
        ei_session_decode(c, ids[i]);
        same &= logits_equal(a, b) && logits_equal(a, c);
    }
    CHECK(same, "%s@%d: logits identical over %d further tokens", ei_policy_name(l->policy), n_tokens, n_after);
    free(buf);
    free(buf2);
    free(buf3);
    ei_session_free(a);
    ei_session_free(b);
    ei_session_free(c);
}

static void test_roundtrip(void) {
    for (int li = 0; li < 3; li++) {
        roundtrip_at(all_layouts(li), 1, 20);
        roundtrip_at(all_layouts(li), 150, 20);
    }
    /* Every token count around the first evictions (window policies: sink 4 + window 16 + seg 8 = 28, then every 8):
     * the live-slot set written must be exactly attention's (save checks it against the cache's token count). */
    for (int li = 1; li < 3; li++)
        for (int n = 0; n <= 60; n += (n < 3 || (n > 24 && n < 46)) ? 1 : 5) roundtrip_at(all_layouts(li), n, 2);
}

/* Restore then continue == uninterrupted, greedy and seeded sampling, token for token; the checkpoint goes through a
 * file and a new session + sampler. */
static void continue_case(const layout *l, int seeded) {
    enum { P = 45, K1 = 30, K2 = 40 };
    int32_t prompt[P], ref[K1 + K2], got[K1 + K2];
    tokens(prompt, P, 77);
    ei_session *s = make_session(g_model, l);
    ei_sampler *smp = make_sampler(seeded, 64);
    for (int i = 0; i < P; i++) ei_sampler_accept(smp, prompt[i]);
    ei_session_prefill(s, prompt, P);
    generate(s, smp, K1 + K2, ref);
    ei_session_free(s);
    ei_sampler_free(smp);

    char path[300];
    snprintf(path, sizeof path, "%s/cont.eick", g_dir);
    s = make_session(g_model, l);
    smp = make_sampler(seeded, 64);
    for (int i = 0; i < P; i++) ei_sampler_accept(smp, prompt[i]);
    ei_session_prefill(s, prompt, P);
    generate(s, smp, K1, got);
    CHECK(ei_session_save(s, smp, path) == 0, "save: %s", ei_last_error());
    ei_session_free(s);
    ei_sampler_free(smp);

    s = make_session(g_model, l);
    smp = make_sampler(seeded, 64);
    CHECK(ei_session_load(s, smp, path) == 0, "load: %s", ei_last_error());
    generate(s, smp, K2, got + K1);
    CHECK(!memcmp(ref, got, sizeof ref), "%s %s: restored continuation == uninterrupted", ei_policy_name(l->policy),
          seeded ? "seeded" : "greedy");
    /* the test can fail: a fresh sampler (RNG from the seed again) must give another continuation when sampling */
    if (seeded) {
        ei_session *s2 = make_session(g_model, l);
        ei_sampler *fresh = make_sampler(1, 64);
        int32_t other[K2];
        CHECK(ei_session_load(s2, NULL, path) == 0, "load without sampler");
        generate(s2, fresh, K2, other);
        CHECK(memcmp(other, got + K1, sizeof other) != 0, "the sampler state matters (fresh RNG differs)");
        ei_sampler_free(fresh);
        ei_session_free(s2);
    }
    ei_session_free(s);
    ei_sampler_free(smp);
}

static void test_continue(void) {
    for (int li = 0; li < 3; li++) {
        continue_case(all_layouts(li), 0);
        continue_case(all_layouts(li), 1);
    }
}

/* ------------------------------------------------------------------ size */

static size_t size_after(const layout *l, int n) {
    ei_session *s = make_session(g_model, l);
    ei_sampler *smp = make_sampler(1, 64);
    if (n) feed(s, n, 3);
    for (int i = 0; i < 64; i++) ei_sampler_accept(smp, 5); /* full history: the sampler part is constant too */
    size_t sz = 0;
    ei_session_save_to_buffer(s, smp, NULL, 0, &sz);
    ei_sampler_free(smp);
    ei_session_free(s);
    return sz;
}

static void test_constant_size(void) {
    for (int li = 1; li < 3; li++) {
        const layout *l = all_layouts(li);
        const size_t a = size_after(l, 100), b = size_after(l, 1000), c = size_after(l, 0), d = size_after(l, 29);
        CHECK(a == b && a == c && a == d, "%s: %zu bytes after 100 tokens, %zu after 1000, %zu after 0, %zu after 29",
              ei_policy_name(l->policy), a, b, c, d);
    }
    /* full grows by one slot per token: 4 B of token id + K and V of every layer */
    const size_t f1 = size_after(&L_FULL, 10), f2 = size_after(&L_FULL, 110);
    ei_session *s = make_session(g_model, &L_FULL);
    ei_session_stats st;
    ei_session_get_stats(s, &st);
    const size_t per_token = 4 + (size_t)st.kv_bytes / 200;
    ei_session_free(s);
    CHECK(f2 - f1 == 100 * per_token, "full: %zu -> %zu bytes for 100 tokens, expected %zu each", f1, f2, per_token);
}

/* ------------------------------------------------------------------ refusals */

/* A target session (with sampler) that has processed other tokens; its own checkpoint is the reference for
 * "unchanged". */
typedef struct {
    ei_session *s;
    ei_sampler *smp;
    uint8_t *ref;
    size_t n_ref;
} target;

static target make_target(ei_model *m, const layout *l) {
    target t = {make_session(m, l), make_sampler(1, 64), NULL, 0};
    feed(t.s, 33, 4242);
    ei_sampler_accept(t.smp, 17);
    t.ref = snapshot(t.s, t.smp, &t.n_ref);
    return t;
}

static int unchanged(const target *t) {
    size_t n;
    uint8_t *b = snapshot(t->s, t->smp, &n);
    int same = n == t->n_ref && !memcmp(b, t->ref, n);
    free(b);
    return same;
}

static void free_target(target *t) {
    free(t->ref);
    ei_sampler_free(t->smp);
    ei_session_free(t->s);
}

/* Loads data into t: must fail with code `err` and a message containing `needle` (and needle2 when not NULL), and
 * leave t exactly as it was. */
static void expect_refused(target *t, const uint8_t *data, size_t size, int err, const char *needle,
                           const char *needle2, const char *what) {
    int rc = ei_session_load_from_buffer(t->s, t->smp, data, size);
    const char *msg = ei_last_error();
    CHECK(rc == err, "%s: rc %d (%s), want %d", what, rc, msg, err);
    CHECK(strstr(msg, needle) != NULL, "%s: message '%s' lacks '%s'", what, msg, needle);
    if (needle2) CHECK(strstr(msg, needle2) != NULL, "%s: message '%s' lacks '%s'", what, msg, needle2);
    CHECK(unchanged(t), "%s: session or sampler changed", what);
}

/* Recomputes the CRC of section i (after a deliberate edit) so that only the semantic checks can refuse it. */
static void fix_crc(uint8_t *b, const sections *sc, int i) {
    wr32(b + sc->off[i] + 12, crc_ref(b + sc->off[i] + 16, sc->len[i]));
}

static void refusals_for(const layout *l) {
    const char *pn = ei_policy_name(l->policy);
    ei_session *src = make_session(g_model, l);
    ei_sampler *ssmp = make_sampler(1, 64);
    feed(src, 120, 8);
    ei_sampler_accept(ssmp, 9);
    size_t n;
    uint8_t *good = snapshot(src, ssmp, &n), *b = malloc(n + 1);
    sections sc;
    CHECK(parse_sections(good, n, &sc) == 0, "parse");
    target t = make_target(g_model, l);
    char what[128];

    expect_refused(&t, good, 0, EI_ERR_FORMAT, "empty", NULL, "empty");
    /* truncated at every section boundary, inside every section header, and at random points */
    for (int i = 0; i <= sc.n; i++) {
        const size_t cut = i < sc.n ? sc.off[i] : n;
        for (size_t d = 0; d < 3; d++) {
            const size_t at = d == 0 ? cut : d == 1 ? cut - 7 : cut - 1;
            if (at == 0 || at >= n) continue;
            snprintf(what, sizeof what, "%s truncated at %zu", pn, at);
            expect_refused(&t, good, at, EI_ERR_FORMAT, "truncated", NULL, what);
        }
    }
    srand(1234);
    for (int i = 0; i < 60; i++) {
        const size_t at = 1 + (size_t)rand() % (n - 1);
        snprintf(what, sizeof what, "%s truncated at %zu", pn, at);
        expect_refused(&t, good, at, EI_ERR_FORMAT, "truncated", NULL, what);
    }
    memcpy(b, good, n);
    b[n] = 0;
    expect_refused(&t, b, n + 1, EI_ERR_FORMAT, "after the last", NULL, "trailing byte");

    /* bit flips: in a section payload -> CRC mismatch naming the section; in the header -> a typed refusal */
    for (int i = 0; i < 80; i++) {
        const size_t at = (size_t)rand() % n;
        const int bit = rand() % 8;
        memcpy(b, good, n);
        b[at] ^= (uint8_t)(1 << bit);
        int sec = -1;
        for (int k = 0; k < sc.n; k++)
            if (at >= sc.off[k] + 16 && at < sc.off[k] + 16 + sc.len[k]) sec = k;
        snprintf(what, sizeof what, "%s bit %d of byte %zu", pn, bit, at);
        if (sec >= 0) expect_refused(&t, b, n, EI_ERR_FORMAT, "CRC mismatch", sc.tag[sec], what);
        else {
            int rc = ei_session_load_from_buffer(t.s, t.smp, b, n);
            CHECK(rc == EI_ERR_FORMAT || rc == EI_ERR_UNSUPPORTED || rc == EI_ERR_MISMATCH, "%s: rc %d", what, rc);
            CHECK(unchanged(&t), "%s: changed", what);
        }
    }
    /* every bit of the header after the magic and the version: header CRC mismatch */
    for (size_t at = 8; at < 96; at++)
        for (int bit = 0; bit < 8; bit++) {
            memcpy(b, good, n);
            b[at] ^= (uint8_t)(1 << bit);
            int rc = ei_session_load_from_buffer(t.s, t.smp, b, n);
            if (rc != EI_ERR_FORMAT || !strstr(ei_last_error(), "header: CRC mismatch")) {
                CHECK(0, "%s header bit %d of byte %zu: rc %d %s", pn, bit, at, rc, ei_last_error());
                at = 96;
                break;
            }
        }
    CHECK(unchanged(&t), "header flips: changed");
    /* magic, version */
    memcpy(b, good, n);
    b[0] = 'X';
    expect_refused(&t, b, n, EI_ERR_FORMAT, "not an edgeinf checkpoint", NULL, "magic");
    memcpy(b, good, n);
    wr32(b + 4, 2);
    wr32(b + 92, crc_ref(b, 92));
    expect_refused(&t, b, n, EI_ERR_UNSUPPORTED, "version 2", "version 1", "version 2");
    /* valid CRCs, impossible content: only the semantic checks can refuse these */
    const int tk = find_section(&sc, "TOKS"), cn = find_section(&sc, "CNTR");
    memcpy(b, good, n);
    wr32(b + sc.off[tk] + 16, 100000);
    fix_crc(b, &sc, tk);
    expect_refused(&t, b, n, EI_ERR_FORMAT, "token id 100000", NULL, "token id out of range");
    memcpy(b, good, n);
    wr32(b + sc.off[cn] + 16, 119); /* n_past 120 -> 119 */
    fix_crc(b, &sc, cn);
    expect_refused(&t, b, n, EI_ERR_FORMAT, "checkpoint", NULL, "n_past edited");
    memcpy(b, good, n);
    wr32(b + sc.off[cn] + 16 + 48, 0); /* logits flag cleared with 120 tokens */
    fix_crc(b, &sc, cn);
    expect_refused(&t, b, n, EI_ERR_FORMAT, "logits flag", NULL, "logits flag edited");
    /* sampler: other repeat_last_n refused; file without a sampler state when one is asked for */
    ei_sampler *other = make_sampler(1, 32);
    CHECK(ei_session_load_from_buffer(t.s, other, good, n) == EI_ERR_MISMATCH &&
              strstr(ei_last_error(), "repeat_last_n"),
          "%s: sampler of other params refused: %s", pn, ei_last_error());
    CHECK(unchanged(&t), "sampler mismatch: session changed");
    ei_sampler_free(other);
    size_t n_nos;
    uint8_t *nos = snapshot(src, NULL, &n_nos);
    expect_refused(&t, nos, n_nos, EI_ERR_MISMATCH, "no sampler state", NULL, "no sampler state");
    free(nos);

    /* after all of this the target still works: it continues exactly like a twin that never saw a refused load */
    ei_session *twin = make_session(g_model, l);
    feed(twin, 33, 4242);
    int32_t ids[10];
    tokens(ids, 10, 5);
    int same = 1;
    for (int i = 0; i < 10; i++) {
        ei_session_decode(t.s, ids[i]);
        ei_session_decode(twin, ids[i]);
        same &= logits_equal(t.s, twin);
    }
    CHECK(same, "%s: the session still works after the refusals", pn);
    ei_session_free(twin);
    free_target(&t);
    /* and the good file loads */
    target t2 = make_target(g_model, l);
    CHECK(ei_session_load_from_buffer(t2.s, t2.smp, good, n) == 0 && logits_equal(t2.s, src), "%s: good file loads", pn);
    free_target(&t2);
    free(b);
    free(good);
    ei_sampler_free(ssmp);
    ei_session_free(src);
}

static void test_refusals(void) {
    for (int li = 0; li < 3; li++) refusals_for(all_layouts(li));
}

/* Other model, other layout, other policy, other adapter: EI_ERR_MISMATCH naming what differs. */
static void test_mismatch(void) {
    ei_session *src = make_session(g_model, &L_EI);
    feed(src, 50, 2);
    size_t n;
    uint8_t *good = snapshot(src, NULL, &n);

    target t = make_target(g_model_q8, &L_EI);
    expect_refused(&t, good, n, EI_ERR_MISMATCH, ei_model_fingerprint(g_model), ei_model_fingerprint(g_model_q8),
                   "other model");
    free_target(&t);

    layout l = L_EI;
    l.window = 24;
    t = make_target(g_model, &l);
    expect_refused(&t, good, n, EI_ERR_MISMATCH, "window 16 in the file, 24 in the session", NULL, "other window");
    free_target(&t);
    l = L_EI;
    l.n_sink = 2;
    t = make_target(g_model, &l);
    expect_refused(&t, good, n, EI_ERR_MISMATCH, "n_sink 4 in the file, 2 in the session", NULL, "other n_sink");
    free_target(&t);
    l = L_EI;
    l.seg = 4;
    t = make_target(g_model, &l);
    expect_refused(&t, good, n, EI_ERR_MISMATCH, "seg", NULL, "other seg");
    free_target(&t);
    t = make_target(g_model, &L_STREAM);
    expect_refused(&t, good, n, EI_ERR_MISMATCH, "policy 'edgeinfinite' in the file, 'streaming'", NULL, "other policy");
    free_target(&t);

    /* other adapter: same shape, one weight changed */
    ei_adapter *ad2 = NULL;
    CHECK(ei_adapter_load_from_file(g_model, ADAPTER, &ad2) == 0, "adapter 2");
    ad2->storage[ad2->n_params - 1] += 0.5f;
    l = L_EI;
    l.adapter = ad2;
    t = make_target(g_model, &l);
    expect_refused(&t, good, n, EI_ERR_MISMATCH, "adapter", NULL, "other adapter");
    free_target(&t);
    ei_adapter_free(ad2);

    /* full: other n_ctx */
    ei_session *fs = make_session(g_model, &L_FULL);
    feed(fs, 20, 2);
    size_t fn;
    uint8_t *fb = snapshot(fs, NULL, &fn);
    l = L_FULL;
    l.ctx = 100;
    t = make_target(g_model, &l);
    expect_refused(&t, fb, fn, EI_ERR_MISMATCH, "n_ctx", NULL, "other n_ctx");
    free_target(&t);
    free(fb);
    ei_session_free(fs);
    free(good);
    ei_session_free(src);
}

/* ------------------------------------------------------------------ files */

static uint8_t *slurp(const char *path, size_t *n) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    *n = (size_t)ftell(f);
    fseek(f, 0, SEEK_SET);
    uint8_t *b = malloc(*n ? *n : 1);
    if (fread(b, 1, *n, f) != *n) *n = 0;
    fclose(f);
    return b;
}

static int exists(const char *p) {
    struct stat st;
    return stat(p, &st) == 0;
}

/* A failed save never damages the previous file: tmp path not creatable, a write that fails midway (file size limit),
 * a directory that does not exist. Successful saves replace the file and leave no temp file. */
static void test_atomic(void) {
    char path[300], tmp[310], bad[320];
    snprintf(path, sizeof path, "%s/atomic.eick", g_dir);
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    ei_session *s = make_session(g_model, &L_EI);
    ei_sampler *smp = make_sampler(1, 64);
    feed(s, 40, 1);
    CHECK(ei_session_save(s, smp, path) == 0, "first save: %s", ei_last_error());
    CHECK(!exists(tmp), "no temp file left");
    size_t n1, n2;
    uint8_t *v1 = slurp(path, &n1);
    feed(s, 45, 2); /* new state: a different file */
    size_t nb;
    uint8_t *v2 = snapshot(s, smp, &nb);
    CHECK(nb != n1 || memcmp(v1, v2, nb), "the second state differs from the first");

    /* 1. path.tmp cannot be created (a directory is in the way) */
    CHECK(mkdir(tmp, 0755) == 0, "mkdir tmp");
    CHECK(ei_session_save(s, smp, path) == EI_ERR_IO && strstr(ei_last_error(), ".tmp"), "tmp not creatable: %s",
          ei_last_error());
    uint8_t *now = slurp(path, &n2);
    CHECK(now && n2 == n1 && !memcmp(now, v1, n1), "previous file intact after a failed create");
    free(now);
    rmdir(tmp);

    /* 2. the write fails midway: the file size limit stops it after 4 KB (EFBIG) */
    struct rlimit old;
    getrlimit(RLIMIT_FSIZE, &old);
    void (*prev)(int) = signal(SIGXFSZ, SIG_IGN);
    struct rlimit lim = old;
    lim.rlim_cur = 4096;
    CHECK(setrlimit(RLIMIT_FSIZE, &lim) == 0, "setrlimit");
    const int rc = ei_session_save(s, smp, path);
    char msg[512];
    snprintf(msg, sizeof msg, "%s", ei_last_error());
    setrlimit(RLIMIT_FSIZE, &old);
    signal(SIGXFSZ, prev);
    CHECK(rc == EI_ERR_IO && strstr(msg, "cannot write"), "write failing midway: rc %d %s", rc, msg);
    now = slurp(path, &n2);
    CHECK(now && n2 == n1 && !memcmp(now, v1, n1), "previous file intact after a failed write");
    free(now);
    CHECK(!exists(tmp), "the partial temp file was removed");

    /* 3. a directory that is not writable (root ignores permissions: then this case cannot be made) */
    if (geteuid() != 0) {
        CHECK(chmod(g_dir, 0555) == 0, "chmod");
        CHECK(ei_session_save(s, smp, path) == EI_ERR_IO, "read-only directory: %s", ei_last_error());
        chmod(g_dir, 0755);
        now = slurp(path, &n2);
        CHECK(now && n2 == n1 && !memcmp(now, v1, n1), "previous file intact in a read-only directory");
        free(now);
    }

    /* 4. no such directory */
    snprintf(bad, sizeof bad, "%s/missing/dir.eick", g_dir);
    CHECK(ei_session_save(s, smp, bad) == EI_ERR_IO, "missing directory");

    /* the previous file still loads and gives the first state */
    ei_session *r = make_session(g_model, &L_EI);
    ei_sampler *rs = make_sampler(1, 64);
    CHECK(ei_session_load(r, rs, path) == 0, "load previous: %s", ei_last_error());
    size_t nr;
    uint8_t *vr = snapshot(r, rs, &nr);
    CHECK(nr == n1 && !memcmp(vr, v1, n1), "loaded state == first save");
    free(vr);

    /* a successful save replaces it */
    CHECK(ei_session_save(s, smp, path) == 0, "second save");
    now = slurp(path, &n2);
    CHECK(now && n2 == nb && !memcmp(now, v2, nb), "file replaced by the new state");
    CHECK(!exists(tmp), "no temp file left");
    free(now);

    /* loading errors from files: missing, a directory, empty file; the message names the path */
    CHECK(ei_session_load(r, rs, bad) == EI_ERR_IO, "missing file");
    CHECK(ei_session_load(r, rs, g_dir) == EI_ERR_IO, "a directory");
    snprintf(bad, sizeof bad, "%s/empty.eick", g_dir);
    FILE *f = fopen(bad, "wb");
    fclose(f);
    CHECK(ei_session_load(r, rs, bad) == EI_ERR_FORMAT && strstr(ei_last_error(), "empty") &&
              strstr(ei_last_error(), "empty.eick"),
          "empty file: %s", ei_last_error());
    vr = snapshot(r, rs, &nr);
    CHECK(nr == n1 && !memcmp(vr, v1, n1), "refused file loads leave the session as it was");
    free(vr);
    unlink(bad);
    unlink(path);
    ei_sampler_free(rs);
    ei_session_free(r);
    free(v1);
    free(v2);
    ei_sampler_free(smp);
    ei_session_free(s);
}

/* ------------------------------------------------------------------ pod and edgeinfinite+pod */

static layout L_POD_S, L_POD_K, L_EIPOD_S, L_EIPOD_K; /* set in main */
static const layout *pod_layouts(int i) {
    return i == 0 ? &L_POD_S : i == 1 ? &L_POD_K : i == 2 ? &L_EIPOD_S : &L_EIPOD_K;
}

/* A copy of a fixture adapter with every layer anchoring its own block (two blocks instead of one). */
static ei_adapter *two_block_adapter(const char *path) {
    ei_adapter *a = NULL;
    CHECK(ei_adapter_load_from_file(g_model, path, &a) == 0, "load %s: %s", path, ei_last_error());
    if (!a) return NULL;
    for (int32_t l = 0; l < a->n_layer; l++) a->pod.anchor[l] = l;
    a->pod.n_blocks = a->n_layer;
    return a;
}

/* Position held in row i of a PoD non-anchor layer's KEYS after n tokens (docs/checkpoint.md: the sinks, then the
 * n_recent - 1 latest positions, in token order), or -1 for a zero row. Written from the doc, not from checkpoint.c. */
static int64_t held_position(int n_sink, int n_recent, int64_t n, int64_t i) {
    const int64_t sinks = n < n_sink ? n : n_sink;
    if (i < sinks) return i;
    int64_t first = n - n_recent + 1;
    if (first < n_sink) first = n_sink;
    const int64_t t = first + i - sinks;
    return t < n ? t : -1;
}

/* The file follows docs/checkpoint.md for pod policies: PODC first (n_recent, share, blocks), header n_sink / slots,
 * a pod adapter fingerprint. Its contents are checked against a reference session whose state must be the same: the
 * anchor layer 0 attends like full (pod) or edgeinfinite (edgeinfinite+pod), so layer 1 sees the same input and
 * computes the same keys and values; the file's layer-1 KEYS rows must be the reference's keys of the held positions,
 * and TOKS, VALS and layer 0's KEYS the reference's bytes. */
static void test_pod_format(void) {
    const int32_t kv_dim = g_pod_s->n_head_kv * g_pod_s->head_dim;
    for (int li = 0; li < 4; li++) {
        const layout *l = pod_layouts(li);
        const int eipod = l->policy == EI_POLICY_EDGEINFINITE_POD;
        const int n_recent = eipod ? 8 : 16, cap = eipod ? 28 : 200, R = 4 + n_recent - 1;
        const layout ref_l = eipod ? (layout){EI_POLICY_EDGEINFINITE, 4, 16, 8, 0, l->adapter, 0, 0} : L_FULL;
        const int counts[] = {3, 10, 19, 20, 45, 70, 101, 150};
        for (int ci = 0; ci < 8; ci++) {
            const int n = counts[ci];
            ei_session *s = make_session(g_model, l), *r = make_session(g_model, &ref_l);
            feed(s, n, 21);
            feed(r, n, 21);
            size_t nb, nr;
            uint8_t *b = snapshot(s, NULL, &nb), *rb = snapshot(r, NULL, &nr);
            const char *pn = ei_policy_name(l->policy);
            CHECK((int)rd32(b + 48) == l->policy && (int)rd32(b + 52) == 4 && (int)rd32(b + 64) == cap,
                  "%s@%d: header policy %u, n_sink %u, slots %u", pn, n, rd32(b + 48), rd32(b + 52), rd32(b + 64));
            CHECK(crc_ref(b, 92) == rd32(b + 92), "header CRC");
            static const uint8_t zero[16];
            CHECK(memcmp(b + 32, zero, 16) != 0, "%s: adapter fingerprint present", pn);
            if (eipod) CHECK(memcmp(b + 32, rb + 32, 16) != 0, "edgeinfinite+pod fingerprint covers the pod keys");
            sections sc, rc;
            CHECK(parse_sections(b, nb, &sc) == 0 && parse_sections(rb, nr, &rc) == 0, "sections cover the files");
            for (int i = 0; i < sc.n; i++)
                CHECK(crc_ref(b + sc.off[i] + 16, sc.len[i]) == rd32(b + sc.off[i] + 12), "CRC of %s", sc.tag[i]);
            CHECK(sc.n > 0 && !strcmp(sc.tag[0], "PODC") && sc.len[0] == 16, "%s: PODC first, 16 bytes", pn);
            const uint8_t *pc = b + sc.off[0] + 16;
            const uint32_t share = l->pod_share == 2 || l->adapter == g_pod_k || l->adapter == g_eipod_k;
            CHECK(rd32(pc) == (uint32_t)n_recent && rd32(pc + 4) == share && rd32(pc + 8) == 1 && rd32(pc + 12) == 0,
                  "%s: PODC n_recent %u share %u blocks %u start %u", pn, rd32(pc), rd32(pc + 4), rd32(pc + 8),
                  rd32(pc + 12));
            for (int t = 0; t < rc.n; t++)
                CHECK(find_section(&sc, rc.tag[t]) >= 0, "%s: section %s present", pn, rc.tag[t]);
            CHECK(sc.n == rc.n + 1, "%s: the reference's sections plus PODC", pn);
            const int ts = find_section(&sc, "TOKS"), rt = find_section(&rc, "TOKS");
            const int vs = find_section(&sc, "VALS"), rv = find_section(&rc, "VALS");
            CHECK(sc.len[ts] == rc.len[rt] && !memcmp(b + sc.off[ts], rb + rc.off[rt], 16 + sc.len[ts]), "%s@%d TOKS", pn,
                  n);
            CHECK(sc.len[vs] == rc.len[rv] && !memcmp(b + sc.off[vs], rb + rc.off[rv], 16 + sc.len[vs]), "%s@%d VALS", pn,
                  n);
            const int ks = find_section(&sc, "KEYS"), rk = find_section(&rc, "KEYS");
            const size_t slots = eipod ? (size_t)cap : (size_t)n, row = 4 * (size_t)kv_dim;
            CHECK(sc.len[ks] == row * (slots + (size_t)R), "%s@%d: KEYS %zu bytes, expected %zu (slots %zu + %d rows)",
                  pn, n, sc.len[ks], row * (slots + R), slots, R);
            if (sc.len[ks] != row * (slots + (size_t)R)) goto next;
            const uint8_t *k = b + sc.off[ks] + 16, *rkp = rb + rc.off[rk] + 16;
            CHECK(!memcmp(k, rkp, row * slots), "%s@%d: layer 0 (anchor) keys == the reference's", pn, n);
            int good = 1, held = 0;
            for (int64_t i = 0; i < R; i++) {
                const int64_t t = held_position(4, n_recent, n, i);
                const uint8_t *got = k + row * (slots + (size_t)i);
                if (t < 0) {
                    for (size_t j = 0; j < row; j++) good &= got[j] == 0;
                    continue;
                }
                held++;
                const int64_t slot = !eipod || t < 4 ? t : 4 + (t - 4) % 24;
                good &= !memcmp(got, rkp + row * (slots + (size_t)slot), row);
            }
            CHECK(good && held == (n < R ? n : R), "%s@%d: layer 1 rows = the reference's keys of the %d held positions",
                  pn, n, held);
        next:
            free(b);
            free(rb);
            ei_session_free(s);
            ei_session_free(r);
        }
    }
}

/* Round trips at token counts around the first distant token (pod: 20, edgeinfinite+pod: 12), the wrap of the
 * non-anchor key ring (pod: 83 rows, edgeinfinite+pod: 19) and the first evictions (edgeinfinite+pod: 28, 36, ...):
 * bit-identical logits after loading, over further tokens, and byte-identical re-saves. */
static void test_pod_roundtrip(void) {
    for (int li = 0; li < 2; li++) {
        const int counts[] = {0, 1, 3, 4, 5, 18, 19, 20, 21, 22, 40, 63, 64, 65, 82, 83, 84, 85, 120, 150};
        for (int i = 0; i < 20; i++) roundtrip_at(pod_layouts(li), counts[i], counts[i] <= 150 ? 20 : 2);
    }
    for (int li = 2; li < 4; li++)
        for (int n = 0; n <= 70; n += (n < 6 || (n > 9 && n < 40)) ? 1 : 3) roundtrip_at(pod_layouts(li), n, 3);
    for (int li = 2; li < 4; li++) roundtrip_at(pod_layouts(li), 300, 20);
    /* every layer its own block: no ring layer (pod is then full, edgeinfinite+pod edgeinfinite) */
    ei_adapter *p2 = two_block_adapter(POD_DIR "tiny-pod-scores.gguf"), *e2 = two_block_adapter(POD_DIR "tiny-eipod-keys.gguf");
    layout l = L_POD_S;
    l.adapter = p2;
    roundtrip_at(&l, 70, 20);
    l = L_EIPOD_K;
    l.adapter = e2;
    roundtrip_at(&l, 70, 20);
    ei_adapter_free(p2);
    ei_adapter_free(e2);
}

/* The non-anchor rows written are the ones read: changing one float of the latest held key of layer 1 in the file
 * (CRC fixed) loads, and the next token's logits differ from the original session's (the test can fail). */
static void test_pod_rows_matter(void) {
    for (int li = 0; li < 4; li++) {
        const layout *l = pod_layouts(li);
        const int eipod = l->policy == EI_POLICY_EDGEINFINITE_POD, n = 50, R = eipod ? 11 : 19;
        const size_t slots = eipod ? 28 : n, row = 4 * (size_t)(g_pod_s->n_head_kv * g_pod_s->head_dim);
        ei_session *a = make_session(g_model, l), *b = make_session(g_model, l), *c = make_session(g_model, l);
        feed(a, n, 31);
        size_t nb;
        uint8_t *buf = snapshot(a, NULL, &nb);
        sections sc;
        parse_sections(buf, nb, &sc);
        const int ks = find_section(&sc, "KEYS");
        uint8_t *edit = malloc(nb);
        memcpy(edit, buf, nb);
        float f;
        uint8_t *at = edit + sc.off[ks] + 16 + row * (slots + (size_t)R - 1); /* row R-1: the latest token, n - 1 */
        memcpy(&f, at, 4);
        f += 0.25f;
        memcpy(at, &f, 4);
        fix_crc(edit, &sc, ks);
        CHECK(ei_session_load_from_buffer(b, NULL, buf, nb) == 0, "load");
        CHECK(ei_session_load_from_buffer(c, NULL, edit, nb) == 0, "edited load: %s", ei_last_error());
        int32_t id = 7;
        ei_session_decode(a, id);
        ei_session_decode(b, id);
        ei_session_decode(c, id);
        CHECK(logits_equal(a, b) && !logits_equal(a, c), "%s %s: the saved layer-1 key of token %d is read",
              ei_policy_name(l->policy), l->adapter == g_pod_k || l->adapter == g_eipod_k ? "keys" : "scores", n - 1);
        free(edit);
        free(buf);
        ei_session_free(a);
        ei_session_free(b);
        ei_session_free(c);
    }
}

static void test_pod_continue(void) {
    for (int li = 0; li < 4; li++) {
        continue_case(pod_layouts(li), 0);
        continue_case(pod_layouts(li), 1);
    }
}

/* edgeinfinite+pod: constant size; smaller than edgeinfinite's by the non-anchor rows it does not keep (minus PODC).
 * pod: grows by 4 B of token id + L value rows + B anchor key rows per token (docs/pod.md). */
static void test_pod_size(void) {
    const size_t row = 4 * (size_t)(g_pod_s->n_head_kv * g_pod_s->head_dim);
    for (int li = 2; li < 4; li++) {
        const layout *l = pod_layouts(li);
        const size_t a = size_after(l, 100), b = size_after(l, 1000), c = size_after(l, 0), d = size_after(l, 29);
        CHECK(a == b && a == c && a == d, "edgeinfinite+pod: %zu bytes after 100 tokens, %zu after 1000, %zu after 0, "
                                          "%zu after 29", a, b, c, d);
        const layout ei = {EI_POLICY_EDGEINFINITE, 4, 16, 8, 0, l->adapter, 0, 0};
        const size_t e = size_after(&ei, 100);
        /* (L - B) = 1 layer keeps n_sink + n_recent - 1 = 11 of the 28 slots' keys; PODC = 16 + 12 + 4 bytes */
        CHECK(e - a == row * (28 - 11) - 32, "edgeinfinite %zu vs edgeinfinite+pod %zu bytes", e, a);
    }
    for (int li = 0; li < 2; li++) {
        const size_t f1 = size_after(pod_layouts(li), 10), f2 = size_after(pod_layouts(li), 110);
        const size_t per_token = 4 + row * (2 + 1);
        CHECK(f2 - f1 == 100 * per_token, "pod: %zu -> %zu bytes for 100 tokens, expected %zu each", f1, f2, per_token);
        CHECK(size_after(pod_layouts(li), 3) + 7 * per_token == f1, "pod: below n_sink + n_recent too");
    }
}

/* The generic battery (truncations, bit flips, header, version, impossible contents, sampler) on pod files. */
static void test_pod_refusals(void) {
    for (int li = 0; li < 4; li++) refusals_for(pod_layouts(li));
}

/* Another block layout, n_recent, share, n_sink, n_ctx, window, policy or adapter: EI_ERR_MISMATCH naming it. */
static void test_pod_mismatch(void) {
    ei_adapter *p2 = two_block_adapter(POD_DIR "tiny-pod-scores.gguf"), *e2 = two_block_adapter(POD_DIR "tiny-eipod-scores.gguf");
    ei_adapter *pdef = NULL, *ew = NULL;
    CHECK(ei_adapter_load_from_file(g_model, POD_DIR "tiny-pod-scores.gguf", &pdef) == 0, "adapter copy");
    CHECK(ei_adapter_load_from_file(g_model, POD_DIR "tiny-eipod-scores.gguf", &ew) == 0, "adapter copy");
    CHECK(!strcmp(ei_adapter_kind(pdef), "pod") && !strcmp(ei_adapter_kind(ew), "edgeinfinite+pod"), "kinds %s, %s",
          ei_adapter_kind(pdef), ei_adapter_kind(ew));
    if (!p2 || !e2 || !pdef || !ew) return;
    pdef->pod.n_recent = 12; /* only the adapter's default differs: the session below asks for 16 */
    ew->storage[0] += 0.5f;  /* one gate weight differs */
    struct {
        const layout *file;
        layout target;
        const char *needle, *what;
    } cases[] = {
        {&L_POD_S, {EI_POLICY_POD, 4, 0, 0, 200, g_pod_s, 12, 0}, "n_recent 16 in the file, 12 in the session", "pod n_recent"},
        {&L_POD_S, {EI_POLICY_POD, 4, 0, 0, 200, g_pod_s, 0, 2}, "share 'scores' in the file, 'keys' in the session", "pod share override"},
        {&L_POD_S, L_POD_K, "share 'scores' in the file, 'keys' in the session", "pod share (other adapter)"},
        {&L_POD_K, L_POD_S, "share 'keys' in the file, 'scores' in the session", "pod share (keys file)"},
        {&L_POD_S, {EI_POLICY_POD, 4, 0, 0, 200, p2, 0, 0}, "blocks (start layers) 0 in the file, 0,1 in the session", "pod blocks"},
        {&L_POD_S, {EI_POLICY_POD, 2, 0, 0, 200, g_pod_s, 0, 0}, "n_sink 4 in the file, 2 in the session", "pod n_sink"},
        {&L_POD_S, {EI_POLICY_POD, 4, 0, 0, 150, g_pod_s, 0, 0}, "n_ctx", "pod n_ctx"},
        {&L_POD_S, L_FULL, "policy 'pod' in the file, 'full' in the session", "pod file, full session"},
        {&L_POD_S, {EI_POLICY_POD, 4, 0, 0, 200, pdef, 16, 0}, "adapter", "pod adapter with other defaults"},
        {&L_EIPOD_S, {EI_POLICY_EDGEINFINITE_POD, 4, 16, 8, 0, g_eipod_s, 4, 0}, "n_recent 8 in the file, 4 in the session", "eipod n_recent"},
        {&L_EIPOD_S, L_EIPOD_K, "share 'scores' in the file, 'keys' in the session", "eipod share"},
        {&L_EIPOD_S, {EI_POLICY_EDGEINFINITE_POD, 4, 16, 8, 0, e2, 0, 0}, "blocks (start layers) 0 in the file, 0,1 in the session", "eipod blocks"},
        {&L_EIPOD_S, {EI_POLICY_EDGEINFINITE_POD, 4, 24, 8, 0, g_eipod_s, 0, 0}, "window 16 in the file, 24 in the session", "eipod window"},
        {&L_EIPOD_S, {EI_POLICY_EDGEINFINITE, 4, 16, 8, 0, g_eipod_s, 0, 0}, "policy 'edgeinfinite+pod' in the file, 'edgeinfinite'", "eipod file, edgeinfinite session"},
        {&L_EIPOD_S, {EI_POLICY_EDGEINFINITE_POD, 4, 16, 8, 0, ew, 0, 0}, "adapter", "eipod other adapter weight"},
        {&L_EI, L_EIPOD_S, "policy 'edgeinfinite' in the file, 'edgeinfinite+pod'", "edgeinfinite file, eipod session"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        ei_session *src = make_session(g_model, cases[i].file);
        feed(src, 50, 2);
        size_t n;
        uint8_t *good = snapshot(src, NULL, &n);
        target t = make_target(g_model, &cases[i].target);
        expect_refused(&t, good, n, EI_ERR_MISMATCH, cases[i].needle, NULL, cases[i].what);
        free_target(&t);
        free(good);
        ei_session_free(src);
    }
    /* the other way round: a two-block file into the one-block session */
    layout l2 = L_POD_S;
    l2.adapter = p2;
    ei_session *src = make_session(g_model, &l2);
    feed(src, 50, 2);
    size_t n;
    uint8_t *good = snapshot(src, NULL, &n);
    target t = make_target(g_model, &L_POD_S);
    expect_refused(&t, good, n, EI_ERR_MISMATCH, "blocks (start layers) 0,1 in the file, 0 in the session", NULL,
                   "two-block file");
    free_target(&t);
    free(good);
    ei_session_free(src);
    ei_adapter_free(p2);
    ei_adapter_free(e2);
    ei_adapter_free(pdef);
    ei_adapter_free(ew);
}

int main(void) {
    ei_model_params mp = ei_model_default_params();
    mp.n_threads = 2;
    if (ei_model_load_from_file(MODEL_F32, &mp, &g_model) || ei_model_load_from_file(MODEL_Q8, &mp, &g_model_q8) ||
        ei_adapter_load_from_file(g_model, ADAPTER, &g_adapter)) {
        fprintf(stderr, "cannot load fixtures: %s\n", ei_last_error());
        printf("0 passed, 1 failed\n");
        return 1;
    }
    L_EI = (layout){EI_POLICY_EDGEINFINITE, 4, 16, 8, 0, g_adapter, 0, 0};
    if (ei_adapter_load_from_file(g_model, POD_DIR "tiny-pod-scores.gguf", &g_pod_s) ||
        ei_adapter_load_from_file(g_model, POD_DIR "tiny-pod-keys.gguf", &g_pod_k) ||
        ei_adapter_load_from_file(g_model, POD_DIR "tiny-eipod-scores.gguf", &g_eipod_s) ||
        ei_adapter_load_from_file(g_model, POD_DIR "tiny-eipod-keys.gguf", &g_eipod_k)) {
        fprintf(stderr, "cannot load the pod fixtures: %s\n", ei_last_error());
        printf("0 passed, 1 failed\n");
        return 1;
    }
    L_POD_S = (layout){EI_POLICY_POD, 4, 0, 0, 200, g_pod_s, 0, 0};
    L_POD_K = (layout){EI_POLICY_POD, 4, 0, 0, 200, g_pod_k, 0, 0};
    L_EIPOD_S = (layout){EI_POLICY_EDGEINFINITE_POD, 4, 16, 8, 0, g_eipod_s, 0, 0};
    L_EIPOD_K = (layout){EI_POLICY_EDGEINFINITE_POD, 4, 16, 8, 0, g_eipod_k, 0, 0};
    const char *td = getenv("TMPDIR");
    snprintf(g_dir, sizeof g_dir, "%s/eick.XXXXXX", td && *td ? td : "/tmp");
    if (!mkdtemp(g_dir)) {
        perror("mkdtemp");
        return 1;
    }
    RUN(test_format);
    RUN(test_buffer_api);
    RUN(test_roundtrip);
    RUN(test_continue);
    RUN(test_constant_size);
    RUN(test_refusals);
    RUN(test_mismatch);
    RUN(test_atomic);
    RUN(test_pod_format);
    RUN(test_pod_roundtrip);
    RUN(test_pod_rows_matter);
    RUN(test_pod_continue);
    RUN(test_pod_size);
    RUN(test_pod_refusals);
    RUN(test_pod_mismatch);
    rmdir(g_dir);
    ei_adapter_free(g_pod_s);
    ei_adapter_free(g_pod_k);
    ei_adapter_free(g_eipod_s);
    ei_adapter_free(g_eipod_k);
    ei_adapter_free(g_adapter);
    ei_model_free(g_model_q8);
    ei_model_free(g_model);
    return TEST_SUMMARY();
}
