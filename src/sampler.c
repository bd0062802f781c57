/* sampler.c — next-token sampling: repetition penalty, greedy or top-k → temperature → softmax → top-p →
 * min-p → a seeded draw.
 *
 * Same seed + same logits + same history gives the same token on every platform: the RNG is integer-only
 * (xorshift64*, seeded through splitmix64), candidates are ordered by a total order (logit desc, id asc),
 * and the softmax uses a local exp built from + - * only (libm's expf differs between glibc and the musl of
 * emscripten in the last bit), accumulated in double in a fixed order. */
#include "edgeinf.h"
#include "sampler.h"
#include "error.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* Keep every product rounded on its own (GCC in GNU mode would fuse into FMA where the target has it), so
 * results are the same on every target and build mode. */
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC optimize("fp-contract=off")
#elif defined(__clang__)
#pragma STDC FP_CONTRACT OFF
#endif

#define MAX_REPEAT_LAST_N (1 << 20)

typedef struct {
    float logit;
    int32_t id;
} cand;

struct ei_sampler {
    ei_sampler_params p;
    uint64_t rng;     /* xorshift64* state, never 0 */
    int32_t *hist;    /* ring buffer of the last p.repeat_last_n accepted ids */
    int32_t hist_len; /* valid entries (<= repeat_last_n) */
    int32_t hist_pos; /* next write slot */
    int32_t *uniq;    /* scratch for de-duplicating the history (repeat_last_n) */
    cand *c;          /* scratch candidates (cap) */
    double *prob;     /* scratch probabilities (cap) */
    int32_t cap;
};

ei_sampler_params ei_sampler_default_params(void) {
    ei_sampler_params p = {
        .temperature = 0.8f,
        .top_k = 40,
        .top_p = 0.95f,
        .min_p = 0.05f,
        .repeat_penalty = 1.0f,
        .repeat_last_n = 64,
        .seed = 42,
    };
    return p;
}

/* ------------------------------------------------------------------ RNG */

static uint64_t splitmix64(uint64_t x) {
    x += 0x9e3779b97f4a7c15ull;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
    return x ^ (x >> 31);
}

static uint64_t rng_next(uint64_t *s) {
    uint64_t x = *s;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    *s = x;
    return x * 0x2545f4914f6cdd1dull;
}

static void rng_seed(ei_sampler *smp) {
    smp->rng = splitmix64(smp->p.seed);
    if (smp->rng == 0) smp->rng = 0x9e3779b97f4a7c15ull; /* xorshift must not start at 0 */
}

/* Uniform double in [0, 1) from the top 53 bits. */
static double rng_uniform(uint64_t *s) { return (double)(rng_next(s) >> 11) * (1.0 / 9007199254740992.0); }

/* ------------------------------------------------------------------ lifecycle */

int ei_sampler_create(const ei_sampler_params *params, ei_sampler **out) {
    if (!out) return ei_set_error(EI_ERR_INVALID_ARG, "sampler: out is NULL");
    *out = NULL;
    ei_sampler_params p = params ? *params : ei_sampler_default_params();
    if (isnan(p.temperature) || isnan(p.top_p) || isnan(p.min_p))
        return ei_set_error(EI_ERR_INVALID_ARG, "sampler: temperature/top_p/min_p is NaN");
    if (!(p.repeat_penalty > 0.0f) || isinf(p.repeat_penalty))
        return ei_set_error(EI_ERR_INVALID_ARG, "sampler: repeat_penalty %g must be > 0", (double)p.repeat_penalty);
    if (p.repeat_last_n < 0 || p.repeat_last_n > MAX_REPEAT_LAST_N)
        return ei_set_error(EI_ERR_INVALID_ARG, "sampler: repeat_last_n %d not in 0..%d", (int)p.repeat_last_n,
                            MAX_REPEAT_LAST_N);
    ei_sampler *smp = calloc(1, sizeof *smp);
    if (!smp) return ei_set_error(EI_ERR_NOMEM, "sampler: out of memory");
    smp->p = p;
    if (p.repeat_last_n > 0) {
        smp->hist = malloc((size_t)p.repeat_last_n * sizeof *smp->hist);
        smp->uniq = malloc((size_t)p.repeat_last_n * sizeof *smp->uniq);
        if (!smp->hist || !smp->uniq) {
            ei_sampler_free(smp);
            return ei_set_error(EI_ERR_NOMEM, "sampler: out of memory for repeat_last_n %d", (int)p.repeat_last_n);
        }
    }
    rng_seed(smp);
    *out = smp;
    return EI_OK;
}

void ei_sampler_free(ei_sampler *smp) {
    if (!smp) return;
    free(smp->hist);
    free(smp->uniq);
    free(smp->c);
    free(smp->prob);
    free(smp);
}

/* Back to the state right after create: empty history, RNG reseeded. */
void ei_sampler_reset(ei_sampler *smp) {
    if (!smp) return;
    smp->hist_len = 0;
    smp->hist_pos = 0;
    rng_seed(smp);
}

void ei_sampler_accept(ei_sampler *smp, int32_t id) {
    if (!smp || smp->p.repeat_last_n <= 0) return;
    smp->hist[smp->hist_pos] = id;
    smp->hist_pos = (smp->hist_pos + 1) % smp->p.repeat_last_n;
    if (smp->hist_len < smp->p.repeat_last_n) smp->hist_len++;
}

/* ------------------------------------------------------------------ helpers */

/* Total order: higher logit first, then lower id (so ties never depend on qsort's algorithm). */
static int cand_before(const cand *a, const cand *b) {
    return a->logit > b->logit || (a->logit == b->logit && a->id < b->id);
}

static int cand_cmp(const void *pa, const void *pb) {
    const cand *a = pa, *b = pb;
    return cand_before(a, b) ? -1 : cand_before(b, a) ? 1 : 0;
}

static int int_cmp(const void *pa, const void *pb) {
    const int32_t a = *(const int32_t *)pa, b = *(const int32_t *)pb;
    return (a > b) - (a < b);
}

/* Min-heap on the total order (root = the worst kept candidate), for top-k selection in O(n log k). */
static void heap_sift_down(cand *h, int32_t n, int32_t i) {
    for (;;) {
        int32_t l = 2 * i + 1, r = l + 1, m = i;
        if (l < n && cand_before(&h[m], &h[l])) m = l;
        if (r < n && cand_before(&h[m], &h[r])) m = r;
        if (m == i) return;
        cand t = h[i];
        h[i] = h[m];
        h[m] = t;
        i = m;
    }
}

/* Moves the k best of c[0..n) into c[0..k), sorted best first. */
static void select_top_k(cand *c, int32_t n, int32_t k) {
    for (int32_t i = k / 2 - 1; i >= 0; i--) heap_sift_down(c, k, i);
    for (int32_t i = k; i < n; i++)
        if (cand_before(&c[i], &c[0])) {
            c[0] = c[i];
            heap_sift_down(c, k, 0);
        }
    qsort(c, (size_t)k, sizeof *c, cand_cmp);
}

/* exp(x) for x <= 0 from + - * only, so it is bit-identical on every IEEE target (no libm, no FMA: every
 * product is a separate statement). exp(x) = 2^k * exp(r), |r| <= ln2/2, degree-11 Taylor: rel. err < 1e-14;
 * 0 below -700. Not static only so that test_sampler can check it against libm. */
double ei_sampler_det_exp(double x);
double ei_sampler_det_exp(double x) {
    if (!(x >= -700.0)) return 0.0; /* also NaN */
    const double ln2_hi = 0.693147180369123816490, ln2_lo = 1.90821492927058770002e-10;
    const double inv_ln2 = 1.44269504088896338700;
    double kf = x * inv_ln2;
    kf = kf < 0 ? -(double)(int64_t)(0.5 - kf) : (double)(int64_t)(kf + 0.5); /* round half away */
    const double kh = kf * ln2_hi;
    const double kl = kf * ln2_lo;
    double r = x - kh;
    r = r - kl;
    double e = 1.0 / 39916800.0; /* 1/11! */
    static const double inv_fact[] = {1.0 / 3628800.0, 1.0 / 362880.0, 1.0 / 40320.0, 1.0 / 5040.0, 1.0 / 720.0,
                                      1.0 / 120.0, 1.0 / 24.0, 1.0 / 6.0, 0.5, 1.0, 1.0};
    for (int i = 0; i < 11; i++) {
        const double t = e * r;
        e = t + inv_fact[i];
    }
    /* scale by 2^k, k in [-1010, 0]: two steps keep every factor a normal double */
    int64_t k = (int64_t)kf;
    while (k < -1000) {
        e = e * 0x1p-1000;
        k += 1000;
    }
    union {
        double d;
        uint64_t u;
    } s = {.u = (uint64_t)(k + 1023) << 52};
    return e * s.d;
}

/* ------------------------------------------------------------------ sample */

/* Grows the scratch arrays to n entries. */
static int ensure_cap(ei_sampler *smp, int32_t n) {
    if (n <= smp->cap) return EI_OK;
    cand *c = realloc(smp->c, (size_t)n * sizeof *c);
    if (!c) return ei_set_error(EI_ERR_NOMEM, "sampler: out of memory for %d candidates", (int)n);
    smp->c = c;
    double *p = realloc(smp->prob, (size_t)n * sizeof *p);
    if (!p) return ei_set_error(EI_ERR_NOMEM, "sampler: out of memory for %d candidates", (int)n);
    smp->prob = p;
    smp->cap = n;
    return EI_OK;
}

/* llama.cpp's penalty, once per distinct id among the last repeat_last_n accepted tokens. */
static void apply_repeat_penalty(ei_sampler *smp, cand *c, int32_t n_vocab) {
    const float pen = smp->p.repeat_penalty;
    if (pen == 1.0f || smp->hist_len == 0) return;
    memcpy(smp->uniq, smp->hist, (size_t)smp->hist_len * sizeof *smp->uniq);
    qsort(smp->uniq, (size_t)smp->hist_len, sizeof *smp->uniq, int_cmp);
    for (int32_t i = 0; i < smp->hist_len; i++) {
        const int32_t id = smp->uniq[i];
        if ((i > 0 && id == smp->uniq[i - 1]) || id < 0 || id >= n_vocab) continue;
        /* c is still indexed by id here */
        if (c[id].logit > 0.0f)
            c[id].logit /= pen;
        else
            c[id].logit *= pen;
    }
}

int32_t ei_sampler_sample(ei_sampler *smp, const float *logits, int32_t n_vocab) {
    if (!smp || !logits || n_vocab <= 0)
        return ei_set_error(EI_ERR_INVALID_ARG, "sampler: NULL sampler/logits or n_vocab %d <= 0", (int)n_vocab);
    int rc = ensure_cap(smp, n_vocab);
    if (rc) return rc;
    cand *c = smp->c;
    for (int32_t i = 0; i < n_vocab; i++) {
        c[i].id = i;
        c[i].logit = isnan(logits[i]) ? -INFINITY : logits[i]; /* NaN would break the total order */
    }
    apply_repeat_penalty(smp, c, n_vocab);

    const ei_sampler_params *p = &smp->p;
    if (p->temperature <= 0.0f) {
        int32_t best = 0;
        for (int32_t i = 1; i < n_vocab; i++)
            if (c[i].logit > c[best].logit) best = i; /* strict: ties keep the lowest id */
        return best;
    }

    /* top-k, leaving the survivors sorted best first */
    int32_t n = n_vocab;
    if (p->top_k > 0 && p->top_k < n) {
        select_top_k(c, n, p->top_k);
        n = p->top_k;
    } else {
        qsort(c, (size_t)n, sizeof *c, cand_cmp);
    }
    if (c[0].logit == -INFINITY) return c[0].id; /* every logit -inf/NaN: no distribution, pick the order's first */

    /* temperature + softmax (c[0] holds the max) */
    double *pr = smp->prob;
    const float temp = p->temperature;
    const float max_l = c[0].logit / temp;
    if (isinf(max_l)) return c[0].id; /* +inf (or overflow by a tiny temperature) dominates everything */
    double sum = 0.0;
    for (int32_t i = 0; i < n; i++) {
        const float l = c[i].logit / temp;
        const double v = (double)l - (double)max_l;
        pr[i] = ei_sampler_det_exp(v);
        sum += pr[i];
    }

    /* top-p: smallest prefix whose mass reaches top_p (at least one token) */
    if (p->top_p < 1.0f) {
        double cum = 0.0;
        const double target = (double)p->top_p * sum;
        for (int32_t i = 0; i < n; i++) {
            cum += pr[i];
            if (cum >= target) {
                n = i + 1;
                break;
            }
        }
    }
    /* min-p: drop tokens below min_p times the best one's probability (pr[0] is the max) */
    if (p->min_p > 0.0f) {
        const double floor_p = (double)p->min_p * pr[0];
        int32_t keep = 1;
        while (keep < n && pr[keep] >= floor_p) keep++;
        n = keep;
    }

    /* draw from what is left, renormalised */
    double total = 0.0;
    for (int32_t i = 0; i < n; i++) total += pr[i];
    const double u = rng_uniform(&smp->rng) * total;
    double cum = 0.0;
    for (int32_t i = 0; i < n; i++) {
        cum += pr[i];
        if (u < cum) return c[i].id;
    }
    return c[n - 1].id;
}

/* ------------------------------------------------------------------ state (for session checkpoints) */

/* Serialized sampler state: RNG + history as fixed-width integers in host byte order (every target of the
 * engine, x86-64 and wasm32, is little-endian, so checkpoints move between native and wasm). Declared in sampler.h.
 * Params are not part of the state: load into a sampler created with the same params. */
size_t ei_sampler_state_size(const ei_sampler *smp) {
    return sizeof(uint64_t) + 2 * sizeof(int32_t) + (size_t)(smp ? smp->hist_len : 0) * sizeof(int32_t);
}

int ei_sampler_state_save(const ei_sampler *smp, void *buf, size_t cap) {
    if (!smp || !buf) return ei_set_error(EI_ERR_INVALID_ARG, "sampler state: NULL argument");
    const size_t need = ei_sampler_state_size(smp);
    if (cap < need) return ei_set_error(EI_ERR_BUFFER_TOO_SMALL, "sampler state: %zu bytes needed", need);
    char *o = buf;
    memcpy(o, &smp->rng, sizeof smp->rng);
    o += sizeof smp->rng;
    memcpy(o, &smp->p.repeat_last_n, sizeof(int32_t));
    o += sizeof(int32_t);
    memcpy(o, &smp->hist_len, sizeof(int32_t));
    o += sizeof(int32_t);
    /* history oldest first, so loading does not depend on the ring position */
    for (int32_t i = 0; i < smp->hist_len; i++) {
        const int32_t n = smp->p.repeat_last_n;
        const int32_t id = smp->hist[(smp->hist_pos - smp->hist_len + i + n) % n];
        memcpy(o, &id, sizeof id);
        o += sizeof id;
    }
    return EI_OK;
}

int ei_sampler_state_load(ei_sampler *smp, const void *buf, size_t size) {
    if (!smp || !buf) return ei_set_error(EI_ERR_INVALID_ARG, "sampler state: NULL argument");
    const char *in = buf;
    uint64_t rng;
    int32_t last_n, len;
    if (size < sizeof rng + 2 * sizeof(int32_t)) return ei_set_error(EI_ERR_FORMAT, "sampler state: truncated");
    memcpy(&rng, in, sizeof rng);
    memcpy(&last_n, in + sizeof rng, sizeof last_n);
    memcpy(&len, in + sizeof rng + sizeof last_n, sizeof len);
    if (last_n != smp->p.repeat_last_n)
        return ei_set_error(EI_ERR_MISMATCH, "sampler state: repeat_last_n %d, sampler has %d", (int)last_n,
                            (int)smp->p.repeat_last_n);
    if (len < 0 || len > last_n || rng == 0 || size != sizeof rng + 2 * sizeof(int32_t) + (size_t)len * sizeof(int32_t))
        return ei_set_error(EI_ERR_FORMAT, "sampler state: bad history length %d or size %zu", (int)len, size);
    smp->rng = rng;
    if (len > 0) memcpy(smp->hist, in + sizeof rng + 2 * sizeof(int32_t), (size_t)len * sizeof(int32_t));
    smp->hist_len = len;
    smp->hist_pos = last_n > 0 ? len % last_n : 0;
    return EI_OK;
}
