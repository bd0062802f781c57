/* edgeinf CLI: info | generate | tokenize | detokenize | perplexity | bench. Other tools and tests parse this output:
 * generate prints only the generated text on stdout; diagnostics go to stderr. */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "edgeinf.h"

/* ------------------------------------------------------------------ options */

#define DEFAULT_MODEL "models/edgeinf-default-q8_0.gguf"

typedef struct opts {
    const char *model, *spm, *prompt, *file, *adapter, *policy, *save, *restore;
    int n_predict, top_k, seed_set, threads, stats, no_bos, ctx, n_prompt, n_gen, n_sink, window, seg, n_recent,
        pod_share;
    long long memory_budget;
    const char *stops[16];
    int n_stops;
    float temp, top_p, min_p, repeat_penalty;
    unsigned long long seed;
    char **rest;
    int n_rest;
} opts;

static int usage(void) {
    fprintf(stderr,
            "usage: edgeinf <command> [options]     (-m defaults to $EDGEINF_MODEL or " DEFAULT_MODEL ")\n"
            "  info -m MODEL\n"
            "  generate -m MODEL (-p TEXT | -f FILE) [-n N] [--temp T] [--top-k K] [--top-p P] [--min-p P]\n"
            "           [--repeat-penalty R] [--seed S] [--threads N] [--policy P] [--adapter FILE] [--stats]\n"
            "           [--ctx N] [--memory-budget BYTES] [--n-sink N] [--window N] [--seg N] [--n-recent N]\n"
            "           [--pod-share scores|keys] [--stop STR]... (generation ends before STR, which is not printed)\n"
            "           [--save FILE] [--restore FILE]   checkpoint after generating (-n 0: after the prompt) /\n"
            "           continue from one (-p/-f optional, appended; same model, policy, layout and sampling options)\n"
            "           policies: auto (default: the adapter's kind with --adapter, else full), full, streaming,\n"
            "           edgeinfinite, pod, edgeinfinite+pod\n"
            "  tokenize (-m MODEL | --spm FILE) [--no-bos] (-p TEXT | -f FILE)\n"
            "  detokenize (-m MODEL | --spm FILE) ID...\n"
            "  perplexity -m MODEL -f FILE [--ctx N] [--policy P] [--adapter FILE] [--threads N] (+ layout options)\n"
            "  bench -m MODEL [-p N_PROMPT] [-n N_GEN] [--threads N]\n");
    return 2;
}

static int parse_num(const char *flag, const char *v, double lo, double hi, double *out) {
    char *end;
    errno = 0;
    double d = strtod(v, &end);
    if (errno || end == v || *end || !(d >= lo && d <= hi)) {
        fprintf(stderr, "edgeinf: %s expects a number in [%g, %g], got '%s'\n", flag, lo, hi, v);
        return -1;
    }
    *out = d;
    return 0;
}

static int parse_opts(const char *cmd, int argc, char **argv, opts *o) {
    ei_sampler_params sp = ei_sampler_default_params();
    memset(o, 0, sizeof *o);
    o->n_predict = 128;
    o->temp = sp.temperature;
    o->top_k = sp.top_k;
    o->top_p = sp.top_p;
    o->min_p = sp.min_p;
    o->repeat_penalty = sp.repeat_penalty;
    o->seed = sp.seed;
    o->n_prompt = 128;
    o->n_gen = 64;
    o->rest = malloc(sizeof(char *) * (size_t)(argc + 1));
    const int is_bench = !strcmp(cmd, "bench");
    for (int i = 0; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        double d;
#define NEEDV()                                                        \
    if (!v) {                                                          \
        fprintf(stderr, "edgeinf: option %s needs a value\n", a);      \
        return -1;                                                     \
    }                                                                  \
    i++;
#define NUM(lo, hi) \
    NEEDV() if (parse_num(a, v, lo, hi, &d)) return -1;
        if (!strcmp(a, "-m") || !strcmp(a, "--model")) { NEEDV() o->model = v; }
        else if (!strcmp(a, "--spm")) { NEEDV() o->spm = v; }
        else if (!strcmp(a, "-p") && is_bench) { NUM(1, 1 << 20) o->n_prompt = (int)d; }
        else if (!strcmp(a, "-p") || !strcmp(a, "--prompt")) { NEEDV() o->prompt = v; }
        else if (!strcmp(a, "-f") || !strcmp(a, "--file")) { NEEDV() o->file = v; }
        else if (!strcmp(a, "-n") && is_bench) { NUM(1, 1 << 20) o->n_gen = (int)d; }
        else if (!strcmp(a, "-n") || !strcmp(a, "--n-predict")) { NUM(0, 1 << 24) o->n_predict = (int)d; }
        else if (!strcmp(a, "--temp")) { NUM(0, 100) o->temp = (float)d; }
        else if (!strcmp(a, "--top-k")) { NUM(0, 1 << 24) o->top_k = (int)d; }
        else if (!strcmp(a, "--top-p")) { NUM(0, 1) o->top_p = (float)d; }
        else if (!strcmp(a, "--min-p")) { NUM(0, 1) o->min_p = (float)d; }
        else if (!strcmp(a, "--repeat-penalty")) { NUM(0.01, 100) o->repeat_penalty = (float)d; }
        else if (!strcmp(a, "--seed")) { NUM(0, 1.8e19) o->seed = (unsigned long long)d; o->seed_set = 1; }
        else if (!strcmp(a, "--threads") || !strcmp(a, "-t")) { NUM(1, 1024) o->threads = (int)d; }
        else if (!strcmp(a, "--ctx")) { NUM(2, 1 << 24) o->ctx = (int)d; }
        else if (!strcmp(a, "--policy")) { NEEDV() o->policy = v; }
        else if (!strcmp(a, "--n-sink")) { NUM(1, 1 << 20) o->n_sink = (int)d; }
        else if (!strcmp(a, "--window")) { NUM(1, 1 << 24) o->window = (int)d; }
        else if (!strcmp(a, "--seg")) { NUM(1, 1 << 20) o->seg = (int)d; }
        else if (!strcmp(a, "--n-recent")) { NUM(1, 1 << 24) o->n_recent = (int)d; }
        else if (!strcmp(a, "--stop")) {
            NEEDV()
            if (o->n_stops == 16) {
                fprintf(stderr, "edgeinf: at most 16 --stop strings\n");
                return -1;
            }
            o->stops[o->n_stops++] = v;
        }
        else if (!strcmp(a, "--pod-share")) {
            NEEDV()
            if (strcmp(v, "scores") && strcmp(v, "keys")) {
                fprintf(stderr, "edgeinf: --pod-share expects 'scores' or 'keys', got '%s'\n", v);
                return -1;
            }
            o->pod_share = !strcmp(v, "scores") ? 1 : 2;
        }
        else if (!strcmp(a, "--memory-budget")) { NUM(1, 1e15) o->memory_budget = (long long)d; }
        else if (!strcmp(a, "--adapter")) { NEEDV() o->adapter = v; }
        else if (!strcmp(a, "--save")) { NEEDV() o->save = v; }
        else if (!strcmp(a, "--restore")) { NEEDV() o->restore = v; }
        else if (!strcmp(a, "--stats")) o->stats = 1;
        else if (!strcmp(a, "--no-bos")) o->no_bos = 1;
        else if (a[0] == '-' && a[1] && !(a[1] >= '0' && a[1] <= '9')) {
            fprintf(stderr, "edgeinf %s: unknown option '%s'\n", cmd, a);
            return -1;
        } else o->rest[o->n_rest++] = argv[i];
#undef NUM
#undef NEEDV
    }
    return 0;
}

/* Reads a whole file into a NUL-terminated buffer (caller frees). */
static char *read_file(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    if (!f) {
        fprintf(stderr, "edgeinf: cannot open '%s': %s\n", path, strerror(errno));
        return NULL;
    }
    size_t cap = 1 << 16, n = 0;
    char *buf = malloc(cap);
    for (;;) {
        if (n + 4096 + 1 > cap) buf = realloc(buf, cap *= 2);
        size_t r = fread(buf + n, 1, cap - n - 1, f);
        n += r;
        if (r == 0) break;
    }
    fclose(f);
    buf[n] = 0;
    if (len) *len = n;
    return buf;
}

static int fail(const char *what, int rc) {
    const char *msg = ei_last_error();
    fprintf(stderr, "edgeinf: %s: %s%s%s\n", what, ei_strerror(rc), *msg ? ": " : "", msg);
    return 1;
}

/* The model when -m is not given: $EDGEINF_MODEL, else the shipped default model next to the binary's checkout
 * (<exe dir>/../models/...), else ./models/... (path buffer owned by the caller). */
static const char *default_model(char *buf, size_t cap) {
    const char *env = getenv("EDGEINF_MODEL");
    if (env && *env) return env;
    char exe[4096];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (n > 0) {
        exe[n] = 0;
        char *slash = strrchr(exe, '/');
        if (slash) {
            *slash = 0;
            snprintf(buf, cap, "%s/../%s", exe, DEFAULT_MODEL);
            if (access(buf, R_OK) == 0) return buf;
        }
    }
    return DEFAULT_MODEL;
}

static int load_model(const opts *o, ei_model **m) {
    char buf[4200];
    const char *path = o->model ? o->model : default_model(buf, sizeof buf);
    ei_model_params mp = ei_model_default_params();
    mp.n_threads = o->threads;
    int rc = ei_model_load_from_file(path, &mp, m);
    if (rc && !o->model)
        fprintf(stderr, "edgeinf: no -m given, so the default model '%s' was tried\n", path);
    return rc ? fail("cannot load model", rc) : 0;
}

static ei_adapter *g_adapter; /* loaded by session_for, freed in main */

static int session_for(const opts *o, ei_model *m, ei_session **s) {
    ei_session_params sp = ei_session_default_params();
    int rc;
    if (o->policy && (rc = ei_policy_from_name(o->policy, &sp.policy))) return fail("--policy", rc);
    if (o->adapter && !g_adapter && (rc = ei_adapter_load_from_file(m, o->adapter, &g_adapter)))
        return fail("cannot load adapter", rc);
    sp.adapter = g_adapter;
    sp.n_ctx = o->ctx;
    sp.n_sink = o->n_sink;
    sp.window = o->window;
    sp.seg = o->seg;
    sp.memory_budget = o->memory_budget;
    sp.n_recent = o->n_recent;
    sp.pod_share = o->pod_share;
    if ((rc = ei_session_create(m, &sp, s))) return fail("cannot create session", rc);
    return 0;
}

/* Tokenizes text; returns a malloc'd array or NULL (error printed). */
static int32_t *tokenize_text(const ei_tokenizer *tok, const char *text, int add_bos, int32_t *n) {
    int32_t flags = add_bos ? EI_TOKENIZE_ADD_BOS : 0, need = 0;
    int rc = ei_tokenize(tok, text, -1, flags, NULL, 0, &need);
    if (rc && rc != EI_ERR_BUFFER_TOO_SMALL) {
        fail("cannot tokenize", rc);
        return NULL;
    }
    int32_t *ids = malloc(sizeof(int32_t) * (size_t)(need + 1));
    if ((rc = ei_tokenize(tok, text, -1, flags, ids, need + 1, n))) {
        fail("cannot tokenize", rc);
        free(ids);
        return NULL;
    }
    return ids;
}

static char *prompt_text(const opts *o) {
    if (o->prompt && o->file) {
        fprintf(stderr, "edgeinf: give -p or -f, not both\n");
        return NULL;
    }
    if (o->prompt) return strdup(o->prompt);
    if (o->file) return read_file(o->file, NULL);
    fprintf(stderr, "edgeinf: a prompt is required (-p TEXT or -f FILE)\n");
    return NULL;
}

static double now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

/* ------------------------------------------------------------------ commands */

static int cmd_info(const opts *o) {
    ei_model *m;
    int rc = load_model(o, &m);
    if (rc) return rc;
    size_t need = 0;
    ei_model_describe(m, NULL, 0, &need);
    char *buf = malloc(need);
    ei_model_describe(m, buf, need, &need);
    fputs(buf, stdout);
    free(buf);
    ei_model_free(m);
    return 0;
}

static int cmd_generate(const opts *o) {
    ei_model *m;
    int rc = load_model(o, &m);
    if (rc) return rc;
    /* --restore: the prompt is optional and continues the checkpoint's text (no BOS). */
    char *text = o->restore && !o->prompt && !o->file ? strdup("") : prompt_text(o);
    ei_session *s = NULL;
    ei_sampler *smp = NULL;
    ei_stop *stop = NULL;
    int32_t n = 0, *ids = NULL;
    int ret = 1;
    if (!text) goto out;
    const ei_tokenizer *tok = ei_model_get_tokenizer(m);
    if (!(ids = tokenize_text(tok, text, !o->restore, &n))) goto out;
    if ((ret = session_for(o, m, &s))) goto out;
    ret = 1;
    ei_sampler_params qp = ei_sampler_default_params();
    qp.temperature = o->temp;
    qp.top_k = o->top_k;
    qp.top_p = o->top_p;
    qp.min_p = o->min_p;
    qp.repeat_penalty = o->repeat_penalty;
    qp.seed = o->seed;
    if ((rc = ei_sampler_create(&qp, &smp))) {
        fail("sampler", rc);
        goto out;
    }
    if (o->restore) { /* session and sampler continue where the checkpoint left them */
        const double t0 = now_ms();
        if ((rc = ei_session_load(s, smp, o->restore))) {
            fail("cannot restore checkpoint", rc);
            goto out;
        }
        ei_session_stats st;
        ei_session_get_stats(s, &st);
        fprintf(stderr, "edgeinf: restored '%s' (%lld tokens) in %.2f ms\n", o->restore, (long long)st.tokens,
                now_ms() - t0);
    }
    for (int32_t i = 0; i < n; i++) ei_sampler_accept(smp, ids[i]);
    if (n > 0 && (rc = ei_session_prefill(s, ids, n))) {
        fail("prefill", rc);
        goto out;
    }
    if (!ei_session_get_logits(s)) {
        fprintf(stderr, "edgeinf: nothing to continue: the checkpoint holds no tokens and the prompt is empty\n");
        goto out;
    }
    ei_detok dt;
    ei_detok_init(&dt, tok);
    dt.at_start = 0; /* the prompt came before: keep the generated text's leading space */
    if ((rc = ei_stop_create(o->stops, o->n_stops, &stop))) {
        fail("--stop", rc);
        goto out;
    }
    char piece[256], shown[4400];
    int32_t np, ns, stopped = 0;
    const int32_t eos = ei_tokenizer_eos(tok), nv = ei_model_n_vocab(m);
    for (int i = 0; i < o->n_predict && !stopped; i++) {
        int32_t t = ei_sampler_sample(smp, ei_session_get_logits(s), nv);
        if (t == eos) break;
        ei_sampler_accept(smp, t);
        if (ei_detok_push(&dt, t, piece, sizeof piece, &np) == 0 && np &&
            ei_stop_push(stop, piece, np, shown, sizeof shown, &ns, &stopped) == 0 && ns) {
            fwrite(shown, 1, (size_t)ns, stdout);
            fflush(stdout);
        }
        /* the last token is only run through the model when a checkpoint must hold it */
        if ((i + 1 < o->n_predict || o->save) && (rc = ei_session_decode(s, t))) {
            fputc('\n', stdout);
            fail("decode", rc);
            goto out;
        }
    }
    if (!stopped && ei_detok_flush(&dt, piece, sizeof piece, &np) == 0 && np &&
        ei_stop_push(stop, piece, np, shown, sizeof shown, &ns, &stopped) == 0 && ns)
        fwrite(shown, 1, (size_t)ns, stdout);
    if (!stopped && ei_stop_flush(stop, shown, sizeof shown, &ns) == 0 && ns) fwrite(shown, 1, (size_t)ns, stdout);
    fputc('\n', stdout);
    if (o->save) {
        const double t0 = now_ms();
        size_t bytes = 0;
        ei_session_save_to_buffer(s, smp, NULL, 0, &bytes);
        if ((rc = ei_session_save(s, smp, o->save))) {
            fail("cannot save checkpoint", rc);
            goto out;
        }
        ei_session_stats st;
        ei_session_get_stats(s, &st);
        fprintf(stderr, "edgeinf: saved '%s' (%lld tokens, %zu bytes) in %.2f ms\n", o->save, (long long)st.tokens,
                bytes, now_ms() - t0);
    }
    if (o->stats) {
        ei_session_stats st;
        ei_session_get_stats(s, &st);
        fprintf(stderr,
                "{\"policy\":\"%s\",\"prefill_tokens\":%lld,\"prefill_ms\":%.3f,\"decode_tokens\":%lld,\"decode_ms\":%.3f,"
                "\"tokens\":%lld,\"kv_tokens\":%lld,\"kv_bytes\":%lld,\"memory_bytes\":%lld,\"compressions\":%lld,"
                "\"n_sink\":%d,\"window\":%d,\"seg\":%d}\n",
                ei_policy_name(st.policy), (long long)st.prefill_tokens, st.prefill_ms, (long long)st.decode_tokens,
                st.decode_ms, (long long)st.tokens, (long long)st.kv_tokens, (long long)st.kv_bytes,
                (long long)st.memory_bytes, (long long)st.compressions, st.n_sink, st.window, st.seg);
    }
    ret = 0;
out:
    ei_stop_free(stop);
    ei_sampler_free(smp);
    ei_session_free(s);
    free(ids);
    free(text);
    ei_model_free(m);
    return ret;
}

/* The tokenizer of -m MODEL or --spm FILE; *owned_model / *owned_tok receive what the caller must free. */
static const ei_tokenizer *tokenizer_for(const opts *o, ei_model **owned_model, ei_tokenizer **owned_tok) {
    *owned_model = NULL;
    *owned_tok = NULL;
    int rc;
    if (o->spm) {
        if ((rc = ei_tokenizer_load_spm_file(o->spm, owned_tok))) {
            fail("cannot load tokenizer", rc);
            return NULL;
        }
        return *owned_tok;
    }
    if (load_model(o, owned_model)) return NULL;
    return ei_model_get_tokenizer(*owned_model);
}

static int cmd_tokenize(const opts *o) {
    ei_model *m;
    ei_tokenizer *t;
    const ei_tokenizer *tok = tokenizer_for(o, &m, &t);
    if (!tok) return 1;
    char *text = prompt_text(o);
    int32_t n = 0, *ids = text ? tokenize_text(tok, text, !o->no_bos, &n) : NULL;
    if (ids) {
        for (int32_t i = 0; i < n; i++) printf(i ? " %d" : "%d", ids[i]);
        printf("\n");
    }
    int ret = ids ? 0 : 1;
    free(ids);
    free(text);
    ei_model_free(m);
    ei_tokenizer_free(t);
    return ret;
}

static int cmd_detokenize(const opts *o) {
    ei_model *m;
    ei_tokenizer *t;
    const ei_tokenizer *tok = tokenizer_for(o, &m, &t);
    if (!tok) return 1;
    int ret = 1;
    int32_t *ids = malloc(sizeof(int32_t) * (size_t)(o->n_rest + 1));
    for (int i = 0; i < o->n_rest; i++) {
        char *end;
        long v = strtol(o->rest[i], &end, 10);
        if (*end || end == o->rest[i]) {
            fprintf(stderr, "edgeinf: '%s' is not a token id\n", o->rest[i]);
            goto out;
        }
        ids[i] = (int32_t)v;
    }
    int32_t need = 0;
    int rc = ei_detokenize(tok, ids, o->n_rest, NULL, 0, &need);
    if (rc && rc != EI_ERR_BUFFER_TOO_SMALL) {
        fail("cannot detokenize", rc);
        goto out;
    }
    char *buf = malloc((size_t)need + 1);
    if ((rc = ei_detokenize(tok, ids, o->n_rest, buf, need + 1, &need)) == 0) {
        fwrite(buf, 1, (size_t)need, stdout);
        fputc('\n', stdout);
        ret = 0;
    } else fail("cannot detokenize", rc);
    free(buf);
out:
    free(ids);
    ei_model_free(m);
    ei_tokenizer_free(t);
    return ret;
}

/* Perplexity: BOS + the file's tokens. `full`: cut into windows of --ctx tokens (default: the training context), each
 * from a fresh session. Window policies (streaming, edgeinfinite): the whole file through one session, whatever its
 * length (that is the long-document measure). Every token after a window's first is scored; ppl = exp(mean NLL). */
static int cmd_perplexity(const opts *o) {
    if (!o->file) {
        fprintf(stderr, "edgeinf perplexity: -f FILE is required\n");
        return 2;
    }
    ei_model *m;
    int rc = load_model(o, &m);
    if (rc) return rc;
    int ret = 1;
    char *text = read_file(o->file, NULL);
    int32_t n = 0, *ids = NULL;
    ei_session *s = NULL;
    float *logits = NULL;
    if (!text || !(ids = tokenize_text(ei_model_get_tokenizer(m), text, 1, &n))) goto out;
    if (n < 2) {
        fprintf(stderr, "edgeinf perplexity: '%s' has fewer than 2 tokens\n", o->file);
        goto out;
    }
    if (session_for(o, m, &s)) goto out;
    ei_session_stats st;
    ei_session_get_stats(s, &st);
    const int unbounded = st.policy == EI_POLICY_STREAMING || st.policy == EI_POLICY_EDGEINFINITE ||
                          st.policy == EI_POLICY_EDGEINFINITE_POD;
    const int32_t nv = ei_model_n_vocab(m);
    const int32_t win = unbounded ? n : (o->ctx > 0 ? o->ctx : ei_model_n_ctx_train(m));
    const int32_t step = unbounded ? 256 : win; /* tokens per eval call */
    logits = malloc(sizeof(float) * (size_t)step * nv);
    if (!logits) {
        fprintf(stderr, "edgeinf perplexity: out of memory for %d x %d logits\n", step, nv);
        goto out;
    }
    double nll = 0, t0 = now_ms();
    int64_t scored = 0;
    for (int32_t off = 0; off + 1 < n; off += win) {
        const int32_t len = n - off < win ? n - off : win;
        if (len < 2) break;
        ei_session_reset(s);
        for (int32_t c = 0; c < len; c += step) {
            const int32_t cl = len - c < step ? len - c : step;
            if ((rc = ei_session_eval(s, ids + off + c, cl, logits))) {
                fail("eval", rc);
                goto out;
            }
            for (int32_t i = 0; i < cl && off + c + i + 1 < off + len; i++) {
                const float *lg = logits + (size_t)i * nv;
                float mx = lg[0];
                for (int32_t j = 1; j < nv; j++) mx = lg[j] > mx ? lg[j] : mx;
                double se = 0;
                for (int32_t j = 0; j < nv; j++) se += exp((double)lg[j] - mx);
                nll += log(se) + mx - lg[ids[off + c + i + 1]];
                scored++;
            }
            if (unbounded && (c / step) % 64 == 63)
                fprintf(stderr, "[%d/%d] ppl so far %.4f (%.0f tok/s)\n", off + c + cl, n, exp(nll / scored),
                        (off + c + cl) / ((now_ms() - t0) / 1e3));
        }
        if (!unbounded) fprintf(stderr, "[%d/%d] ppl so far %.4f\n", off + len, n, exp(nll / scored));
    }
    printf("ppl=%.6f tokens=%lld\n", exp(nll / scored), (long long)scored);
    ret = 0;
out:
    free(logits);
    ei_session_free(s);
    free(ids);
    free(text);
    ei_model_free(m);
    return ret;
}

/* bench: prefill N_PROMPT pseudo-random tokens, then decode N_GEN greedy tokens; one JSON line. */
static int cmd_bench(const opts *o) {
    ei_model *m;
    int rc = load_model(o, &m);
    if (rc) return rc;
    ei_session *s = NULL;
    int ret = 1;
    const int32_t nv = ei_model_n_vocab(m);
    int32_t *ids = malloc(sizeof(int32_t) * (size_t)o->n_prompt);
    uint64_t x = 88172645463325252ull;
    for (int i = 0; i < o->n_prompt; i++) {
        x ^= x << 13, x ^= x >> 7, x ^= x << 17;
        ids[i] = (int32_t)(x % (uint64_t)nv);
    }
    opts o2 = *o;
    if (o2.ctx == 0) o2.ctx = o->n_prompt + o->n_gen;
    if (session_for(&o2, m, &s)) goto out;
    double t0 = now_ms();
    if ((rc = ei_session_prefill(s, ids, o->n_prompt))) {
        fail("prefill", rc);
        goto out;
    }
    double t1 = now_ms();
    for (int i = 0; i < o->n_gen; i++) {
        const float *lg = ei_session_get_logits(s);
        int32_t best = 0;
        for (int32_t j = 1; j < nv; j++)
            if (lg[j] > lg[best]) best = j;
        if ((rc = ei_session_decode(s, best))) {
            fail("decode", rc);
            goto out;
        }
    }
    double t2 = now_ms();
    printf("{\"n_params\":%lld,\"n_prompt\":%d,\"n_gen\":%d,\"threads\":%d,\"prefill_tps\":%.2f,\"decode_tps\":%.2f}\n",
           (long long)ei_model_n_params(m), o->n_prompt, o->n_gen, o->threads, o->n_prompt / ((t1 - t0) / 1e3),
           o->n_gen / ((t2 - t1) / 1e3));
    ret = 0;
out:
    free(ids);
    ei_session_free(s);
    ei_model_free(m);
    return ret;
}

int main(int argc, char **argv) {
    if (argc < 2) return usage();
    const char *cmd = argv[1];
    if (!strcmp(cmd, "-h") || !strcmp(cmd, "--help") || !strcmp(cmd, "help")) {
        usage();
        return 0;
    }
    opts o;
    int known = !strcmp(cmd, "info") || !strcmp(cmd, "generate") || !strcmp(cmd, "tokenize") ||
                !strcmp(cmd, "detokenize") || !strcmp(cmd, "perplexity") || !strcmp(cmd, "bench");
    if (!known) {
        fprintf(stderr, "edgeinf: unknown command '%s'\n", cmd);
        return usage();
    }
    if (parse_opts(cmd, argc - 2, argv + 2, &o)) {
        free(o.rest);
        return 2;
    }
    int rc;
    if (!strcmp(cmd, "info")) rc = cmd_info(&o);
    else if (!strcmp(cmd, "generate")) rc = cmd_generate(&o);
    else if (!strcmp(cmd, "tokenize")) rc = cmd_tokenize(&o);
    else if (!strcmp(cmd, "detokenize")) rc = cmd_detokenize(&o);
    else if (!strcmp(cmd, "perplexity")) rc = cmd_perplexity(&o);
    else rc = cmd_bench(&o);
    free(o.rest);
    ei_adapter_free(g_adapter);
    return rc;
}
