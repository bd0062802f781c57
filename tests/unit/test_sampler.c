/* test_sampler.c — greedy, seeding, top-k/top-p/min-p filtering, temperature, the repetition penalty and the
 * saved state. Probabilities are checked against a softmax computed here with libm (an independent
 * reference), counting draws over many samples with fixed seeds. */
#include "edgeinf.h"
#include "test.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* Params with every filter off: plain softmax sampling at temperature t. */
static ei_sampler_params plain(float t, uint64_t seed) {
    ei_sampler_params p = ei_sampler_default_params();
    p.temperature = t;
    p.top_k = 0;
    p.top_p = 1.0f;
    p.min_p = 0.0f;
    p.repeat_penalty = 1.0f;
    p.seed = seed;
    return p;
}

static ei_sampler *make(const ei_sampler_params *p) {
    ei_sampler *s = NULL;
    int rc = ei_sampler_create(p, &s);
    CHECK(rc == 0 && s, "create: %d %s", rc, ei_last_error());
    return s;
}

static void random_logits(float *l, int n, unsigned seed) {
    srand(seed);
    for (int i = 0; i < n; i++) l[i] = (float)(rand() % 20000) / 1000.0f - 10.0f;
}

static void test_defaults(void) {
    ei_sampler_params p = ei_sampler_default_params();
    CHECK(p.temperature == 0.8f && p.top_k == 40 && p.top_p == 0.95f && p.min_p == 0.05f, "filters");
    CHECK(p.repeat_penalty == 1.0f && p.repeat_last_n == 64 && p.seed == 42, "penalty / seed");
}

static void test_bad_args(void) {
    ei_sampler *s = NULL;
    ei_sampler_params p = ei_sampler_default_params();
    p.repeat_penalty = 0.0f;
    CHECK(ei_sampler_create(&p, &s) == EI_ERR_INVALID_ARG && !s, "penalty 0 refused");
    p = ei_sampler_default_params();
    p.repeat_last_n = -3;
    CHECK(ei_sampler_create(&p, &s) == EI_ERR_INVALID_ARG, "negative window refused");
    p = ei_sampler_default_params();
    p.temperature = NAN;
    CHECK(ei_sampler_create(&p, &s) == EI_ERR_INVALID_ARG, "NaN temperature refused");
    CHECK(ei_sampler_create(NULL, NULL) == EI_ERR_INVALID_ARG, "NULL out refused");
    CHECK(ei_sampler_create(NULL, &s) == 0 && s, "NULL params = defaults");
    float l[3] = {0, 1, 2};
    CHECK(ei_sampler_sample(s, l, 0) < 0, "n_vocab 0 is an error");
    CHECK(ei_sampler_sample(s, NULL, 3) < 0, "NULL logits is an error");
    CHECK(ei_sampler_sample(NULL, l, 3) < 0, "NULL sampler is an error");
    ei_sampler_free(s);
    ei_sampler_free(NULL);
}

static void test_greedy(void) {
    ei_sampler_params p = plain(0.0f, 1);
    ei_sampler *s = make(&p);
    float l[1000];
    for (int r = 0; r < 20; r++) {
        random_logits(l, 1000, (unsigned)r);
        int best = 0;
        for (int i = 1; i < 1000; i++)
            if (l[i] > l[best]) best = i;
        CHECK(ei_sampler_sample(s, l, 1000) == best, "greedy = argmax (round %d)", r);
    }
    float tie[5] = {1.0f, 3.0f, -2.0f, 3.0f, 3.0f};
    CHECK(ei_sampler_sample(s, tie, 5) == 1, "ties -> lowest id");
    float nan_l[4] = {NAN, 2.0f, NAN, 1.0f};
    CHECK(ei_sampler_sample(s, nan_l, 4) == 1, "NaN logits are never picked");
    p.temperature = -1.0f;
    ei_sampler *s2 = make(&p);
    CHECK(ei_sampler_sample(s2, tie, 5) == 1, "negative temperature is greedy too");
    ei_sampler_free(s);
    ei_sampler_free(s2);
}

static void test_seed_determinism(void) {
    float l[500];
    random_logits(l, 500, 7);
    for (int i = 0; i < 500; i++) l[i] *= 0.3f; /* flat enough that draws vary */
    ei_sampler_params p = ei_sampler_default_params();
    p.top_k = 0;
    p.top_p = 1.0f;
    p.min_p = 0.0f;
    ei_sampler *a = make(&p), *b = make(&p);
    p.seed = 43;
    ei_sampler *c = make(&p);
    int same_ab = 1, same_ac = 1, distinct = 0, seen[500] = {0};
    int first[200];
    for (int i = 0; i < 200; i++) {
        int ta = ei_sampler_sample(a, l, 500), tb = ei_sampler_sample(b, l, 500), tc = ei_sampler_sample(c, l, 500);
        first[i] = ta;
        same_ab &= ta == tb;
        same_ac &= ta == tc;
        if (ta >= 0 && ta < 500 && !seen[ta]++) distinct++;
        ei_sampler_accept(a, ta);
        ei_sampler_accept(b, tb);
    }
    CHECK(same_ab, "same seed, same inputs -> same tokens");
    CHECK(!same_ac, "another seed -> other tokens");
    CHECK(distinct > 20, "draws vary (%d distinct)", distinct);
    /* reset = fresh sampler: the sequence starts over */
    ei_sampler_reset(a);
    int same_again = 1;
    for (int i = 0; i < 200; i++) same_again &= ei_sampler_sample(a, l, 500) == first[i];
    CHECK(same_again, "reset reseeds");
    ei_sampler_free(a);
    ei_sampler_free(b);
    ei_sampler_free(c);
}

static void test_top_k_1_is_greedy(void) {
    ei_sampler_params p = ei_sampler_default_params();
    p.top_k = 1;
    ei_sampler *s = make(&p);
    p = plain(0.0f, 1);
    ei_sampler *g = make(&p);
    float l[300];
    int ok = 1;
    for (int r = 0; r < 50; r++) {
        random_logits(l, 300, 100u + (unsigned)r);
        ok &= ei_sampler_sample(s, l, 300) == ei_sampler_sample(g, l, 300);
    }
    CHECK(ok, "top_k = 1 picks the argmax");
    ei_sampler_free(s);
    ei_sampler_free(g);
}

/* Draw counts at temperature t with everything else off match softmax(l / t) (libm reference). */
static void test_distribution_matches_softmax(void) {
    const float l[6] = {2.0f, 1.0f, 0.5f, 0.0f, -1.0f, -3.0f};
    const float temps[2] = {1.0f, 0.5f};
    for (int ti = 0; ti < 2; ti++) {
        ei_sampler_params p = plain(temps[ti], 1234);
        ei_sampler *s = make(&p);
        enum { N = 40000 };
        int cnt[6] = {0};
        for (int i = 0; i < N; i++) {
            int t = ei_sampler_sample(s, l, 6);
            if (t >= 0 && t < 6) cnt[t]++;
        }
        double z = 0, pr[6];
        for (int i = 0; i < 6; i++) z += exp(l[i] / temps[ti]);
        for (int i = 0; i < 6; i++) {
            pr[i] = exp(l[i] / temps[ti]) / z;
            double sd = sqrt(N * pr[i] * (1 - pr[i]));
            CHECK(fabs(cnt[i] - N * pr[i]) <= 5 * sd + 2, "T=%g token %d: %d draws, expected %.0f", temps[ti], i, cnt[i],
                  N * pr[i]);
        }
        ei_sampler_free(s);
    }
}

/* top-k = 3: only the 3 best ever come out, and all of them do. */
static void test_top_k(void) {
    float l[50];
    random_logits(l, 50, 99);
    for (int i = 0; i < 50; i++) l[i] *= 0.05f; /* nearly flat */
    int order[50];
    for (int i = 0; i < 50; i++) order[i] = i;
    for (int i = 0; i < 50; i++) /* selection sort by logit, desc */
        for (int j = i + 1; j < 50; j++)
            if (l[order[j]] > l[order[i]]) {
                int t = order[i];
                order[i] = order[j];
                order[j] = t;
            }
    ei_sampler_params p = plain(1.0f, 5);
    p.top_k = 3;
    ei_sampler *s = make(&p);
    int cnt[50] = {0};
    for (int i = 0; i < 3000; i++) {
        int t = ei_sampler_sample(s, l, 50);
        if (t >= 0 && t < 50) cnt[t]++;
    }
    int outside = 0;
    for (int i = 3; i < 50; i++) outside += cnt[order[i]];
    CHECK(outside == 0, "%d draws outside the top 3", outside);
    CHECK(cnt[order[0]] > 500 && cnt[order[1]] > 500 && cnt[order[2]] > 500, "each of the top 3 drawn");
    ei_sampler_free(s);
}

/* probabilities (T = 1): 0.4, 0.3, 0.2, then 0.1 spread over 20 tokens (0.005 each). */
static void nucleus_logits(float *l) {
    l[0] = logf(0.4f);
    l[1] = logf(0.3f);
    l[2] = logf(0.2f);
    for (int i = 3; i < 23; i++) l[i] = logf(0.005f);
}

static void test_top_p(void) {
    float l[23];
    nucleus_logits(l);
    ei_sampler_params p = plain(1.0f, 11);
    p.top_p = 0.85f; /* 0.4 + 0.3 = 0.7 < 0.85 <= 0.9: the nucleus is tokens 0, 1, 2 */
    ei_sampler *s = make(&p);
    int cnt[23] = {0};
    enum { N = 20000 };
    for (int i = 0; i < N; i++) {
        int t = ei_sampler_sample(s, l, 23);
        if (t >= 0 && t < 23) cnt[t]++;
    }
    int tail = 0;
    for (int i = 3; i < 23; i++) tail += cnt[i];
    CHECK(tail == 0, "top-p: %d draws from the low-probability tail", tail);
    /* renormalised over the nucleus: 4/9, 3/9, 2/9 */
    CHECK(fabs(cnt[0] - N * 4.0 / 9) < 5 * sqrt(N * 0.25), "token 0: %d", cnt[0]);
    CHECK(fabs(cnt[2] - N * 2.0 / 9) < 5 * sqrt(N * 0.25), "token 2: %d", cnt[2]);
    ei_sampler_free(s);
    /* control: with top-p off the tail does come out (~10% of draws) */
    p.top_p = 1.0f;
    s = make(&p);
    tail = 0;
    for (int i = 0; i < N; i++) tail += ei_sampler_sample(s, l, 23) >= 3;
    CHECK(tail > N / 20, "without top-p the tail is drawn (%d)", tail);
    ei_sampler_free(s);
}

static void test_min_p(void) {
    float l[23];
    nucleus_logits(l);
    ei_sampler_params p = plain(1.0f, 12);
    p.min_p = 0.6f; /* floor 0.24: keeps 0.4 and 0.3, drops 0.2 and the tail */
    ei_sampler *s = make(&p);
    int cnt[23] = {0};
    enum { N = 20000 };
    for (int i = 0; i < N; i++) {
        int t = ei_sampler_sample(s, l, 23);
        if (t >= 0 && t < 23) cnt[t]++;
    }
    int dropped = 0;
    for (int i = 2; i < 23; i++) dropped += cnt[i];
    CHECK(dropped == 0, "min-p: %d draws below the floor", dropped);
    CHECK(fabs(cnt[0] - N * 4.0 / 7) < 5 * sqrt(N * 0.25), "token 0: %d (expected %.0f)", cnt[0], N * 4.0 / 7);
    ei_sampler_free(s);
}

static void test_repetition_penalty(void) {
    float l[4] = {1.0f, 0.9f, -1.0f, -1.2f};
    ei_sampler_params p = plain(0.0f, 1);
    p.repeat_penalty = 1.5f;
    p.repeat_last_n = 3;
    ei_sampler *s = make(&p);
    CHECK(ei_sampler_sample(s, l, 4) == 0, "no history: argmax");
    ei_sampler_accept(s, 0);
    ei_sampler_accept(s, 0); /* repeated ids are penalised once */
    CHECK(ei_sampler_sample(s, l, 4) == 1, "positive logit divided: 1.0/1.5 < 0.9");
    CHECK(l[0] == 1.0f, "logits not modified");
    float neg[3] = {-1.0f, -1.2f, -5.0f};
    ei_sampler_reset(s);
    ei_sampler_accept(s, 0);
    CHECK(ei_sampler_sample(s, neg, 3) == 1, "negative logit multiplied: -1.5 < -1.2");
    /* the window only holds the last 3 accepted tokens */
    ei_sampler_reset(s);
    ei_sampler_accept(s, 0);
    ei_sampler_accept(s, 2);
    ei_sampler_accept(s, 3);
    ei_sampler_accept(s, 3);
    CHECK(ei_sampler_sample(s, l, 4) == 0, "token 0 left the window");
    ei_sampler_accept(s, 5000); /* ids beyond n_vocab are ignored, not a crash */
    CHECK(ei_sampler_sample(s, l, 4) == 0, "out-of-range history id");
    ei_sampler_free(s);
    p.repeat_penalty = 1.0f;
    s = make(&p);
    ei_sampler_accept(s, 0);
    CHECK(ei_sampler_sample(s, l, 4) == 0, "penalty 1 is off");
    ei_sampler_free(s);
}

/* Declared here: sampler.c exports these for session checkpoints (not in edgeinf.h yet). */
size_t ei_sampler_state_size(const ei_sampler *smp);
int ei_sampler_state_save(const ei_sampler *smp, void *buf, size_t cap);
int ei_sampler_state_load(ei_sampler *smp, const void *buf, size_t size);

double ei_sampler_det_exp(double x);

/* The sampler's own exp (platform-independent) against libm. */
static void test_det_exp(void) {
    int bad = 0;
    for (int i = 0; i <= 200000; i++) {
        const double x = -700.0 * i / 200000.0;
        const double want = exp(x), got = ei_sampler_det_exp(x);
        if (!(fabs(got - want) <= 1e-14 * want)) {
            if (bad++ < 3) fprintf(stderr, "  exp(%.17g) = %.17g, libm %.17g\n", x, got, want);
        }
    }
    CHECK(bad == 0, "%d values off by more than 1e-14 relative", bad);
    CHECK(ei_sampler_det_exp(0.0) == 1.0 && ei_sampler_det_exp(-0.0) == 1.0, "exp(0) = 1");
    CHECK(ei_sampler_det_exp(-800.0) == 0.0 && ei_sampler_det_exp(-INFINITY) == 0.0, "underflow to 0");
}

static void test_state_roundtrip(void) {
    float l[200];
    random_logits(l, 200, 3);
    for (int i = 0; i < 200; i++) l[i] *= 0.2f;
    ei_sampler_params p = ei_sampler_default_params();
    p.top_k = 0;
    p.repeat_penalty = 1.3f;
    p.repeat_last_n = 8;
    ei_sampler *a = make(&p), *b = make(&p);
    for (int i = 0; i < 13; i++) ei_sampler_accept(a, ei_sampler_sample(a, l, 200));
    char buf[256];
    size_t n = ei_sampler_state_size(a);
    CHECK(n <= sizeof buf, "state size %zu", n);
    CHECK(ei_sampler_state_save(a, buf, 4) == EI_ERR_BUFFER_TOO_SMALL, "small buffer refused");
    CHECK(ei_sampler_state_save(a, buf, sizeof buf) == 0, "save");
    CHECK(ei_sampler_state_load(b, buf, n - 1) < 0, "truncated state refused");
    CHECK(ei_sampler_state_load(b, buf, n) == 0, "load: %s", ei_last_error());
    int same = 1;
    for (int i = 0; i < 50; i++) {
        int ta = ei_sampler_sample(a, l, 200), tb = ei_sampler_sample(b, l, 200);
        same &= ta == tb;
        ei_sampler_accept(a, ta);
        ei_sampler_accept(b, tb);
    }
    CHECK(same, "a restored sampler continues identically");
    p.repeat_last_n = 9;
    ei_sampler *c = make(&p);
    CHECK(ei_sampler_state_load(c, buf, n) == EI_ERR_MISMATCH, "other repeat_last_n refused");
    ei_sampler_free(a);
    ei_sampler_free(b);
    ei_sampler_free(c);
}

int main(void) {
    RUN(test_defaults);
    RUN(test_bad_args);
    RUN(test_greedy);
    RUN(test_seed_determinism);
    RUN(test_top_k_1_is_greedy);
    RUN(test_distribution_matches_softmax);
    RUN(test_top_k);
    RUN(test_top_p);
    RUN(test_min_p);
    RUN(test_repetition_penalty);
    RUN(test_det_exp);
    RUN(test_state_roundtrip);
    return TEST_SUMMARY();
}
