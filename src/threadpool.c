/* threadpool.c — fork-join pool: the caller and n-1 persistent workers each run fn(ctx, ith, nth).
 *
 * Decode calls the pool several times per layer per token, with only a few microseconds of single-threaded
 * work in between, so waking workers through a condvar every time would dominate. Workers therefore spin on
 * a generation counter for a while and only then sleep on a condvar; the caller does the same while it
 * waits for the last worker. Sleepers announce themselves (n_sleeping / caller_sleeping) so the fast path
 * never touches the mutex.
 *
 * Without threads (EI_NO_THREADS, or emscripten without -pthread) every run is inline. */
#include "threadpool.h"

#include "error.h"

#include <stdlib.h>

#if defined(__EMSCRIPTEN__) && !defined(__EMSCRIPTEN_PTHREADS__) && !defined(EI_NO_THREADS)
#define EI_NO_THREADS 1
#endif

#define EI_MAX_THREADS 256

#ifndef EI_NO_THREADS

#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <unistd.h>
#ifdef __EMSCRIPTEN__
#include <emscripten/threading.h>
#endif

/* Spin iterations before sleeping: long enough (~0.1-1 ms) to bridge the gap between two matmuls of one
 * token, short enough that an idle session does not burn a core. */
#ifdef __EMSCRIPTEN__
#define SPIN_ITERS 100000 /* no pause instruction in wasm: each iteration is only a load */
#else
#define SPIN_ITERS 20000
#endif

struct ei_threadpool {
    int n; /* threads including the caller */
    pthread_t *threads;
    pthread_mutex_t mu;
    pthread_cond_t cv_work; /* workers sleep here waiting for a new generation */
    pthread_cond_t cv_done; /* the caller sleeps here waiting for pending == 0 */
    ei_task_fn fn;          /* written by the caller before gen is bumped */
    void *ctx;
    atomic_uint gen;        /* bumped once per run */
    atomic_int pending;     /* workers still inside the current run */
    atomic_int n_sleeping;  /* workers blocked (or about to block) on cv_work */
    atomic_int caller_sleeping;
    atomic_int stop;
};

struct worker_arg {
    ei_threadpool *tp;
    int ith;
};

/* One spin step. Every 64th step yields the core: with more threads than free cores (a shared machine, a
 * browser's busy workers) the thread everybody waits for may be the one that is not running. */
static inline void cpu_relax(int i) {
    if ((i & 63) == 63) {
        sched_yield();
        return;
    }
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#elif defined(__aarch64__)
    __asm__ __volatile__("yield");
#endif
}

/* Worker body: wait for a new generation (spin, then sleep), run the task, report completion. */
static void *worker_main(void *p) {
    struct worker_arg a = *(struct worker_arg *)p;
    free(p);
    ei_threadpool *tp = a.tp;
    unsigned seen = 0;
    for (;;) {
        unsigned g = atomic_load(&tp->gen);
        for (int i = 0; g == seen && i < SPIN_ITERS && !atomic_load_explicit(&tp->stop, memory_order_relaxed); i++) {
            cpu_relax(i);
            g = atomic_load(&tp->gen);
        }
        if (g == seen) {
            pthread_mutex_lock(&tp->mu);
            atomic_fetch_add(&tp->n_sleeping, 1);
            /* The caller bumps gen and then reads n_sleeping (both seq_cst): either we see the new gen
             * here, or it sees us sleeping and broadcasts under the mutex. */
            while ((g = atomic_load(&tp->gen)) == seen && !atomic_load(&tp->stop))
                pthread_cond_wait(&tp->cv_work, &tp->mu);
            atomic_fetch_sub(&tp->n_sleeping, 1);
            pthread_mutex_unlock(&tp->mu);
        }
        if (atomic_load(&tp->stop)) break;
        seen = g;
        tp->fn(tp->ctx, a.ith, tp->n);
        if (atomic_fetch_sub(&tp->pending, 1) == 1 && atomic_load(&tp->caller_sleeping)) {
            pthread_mutex_lock(&tp->mu);
            pthread_cond_signal(&tp->cv_done);
            pthread_mutex_unlock(&tp->mu);
        }
    }
    return NULL;
}

static int online_cpus(void) {
#ifdef __EMSCRIPTEN__
    int n = emscripten_num_logical_cores();
#else
    long n = sysconf(_SC_NPROCESSORS_ONLN);
#endif
    return n > 0 ? (int)n : 1;
}

/* Stops and joins the first n_started workers. */
static void stop_workers(ei_threadpool *tp, int n_started) {
    pthread_mutex_lock(&tp->mu);
    atomic_store(&tp->stop, 1);
    pthread_cond_broadcast(&tp->cv_work);
    pthread_mutex_unlock(&tp->mu);
    for (int i = 0; i < n_started; i++) pthread_join(tp->threads[i], NULL);
}

ei_threadpool *ei_threadpool_create(int n_threads) {
    if (n_threads <= 0) n_threads = online_cpus();
    if (n_threads > EI_MAX_THREADS) n_threads = EI_MAX_THREADS;
    ei_threadpool *tp = calloc(1, sizeof *tp);
    if (!tp) {
        ei_set_error(EI_ERR_NOMEM, "thread pool: out of memory");
        return NULL;
    }
    tp->n = 1;
    if (n_threads > 1) {
        tp->threads = calloc((size_t)(n_threads - 1), sizeof *tp->threads);
        if (!tp->threads) {
            free(tp);
            ei_set_error(EI_ERR_NOMEM, "thread pool: out of memory for %d threads", n_threads);
            return NULL;
        }
    }
    pthread_mutex_init(&tp->mu, NULL);
    pthread_cond_init(&tp->cv_work, NULL);
    pthread_cond_init(&tp->cv_done, NULL);
    atomic_init(&tp->gen, 0);
    atomic_init(&tp->pending, 0);
    atomic_init(&tp->n_sleeping, 0);
    atomic_init(&tp->caller_sleeping, 0);
    atomic_init(&tp->stop, 0);
    /* A worker that cannot be started (e.g. a browser's worker limit) just makes the pool smaller: each
     * worker only reads tp->n once a run has begun, after creation finished. */
    for (int i = 1; i < n_threads; i++) {
        struct worker_arg *a = malloc(sizeof *a);
        if (!a) break;
        a->tp = tp;
        a->ith = i;
        if (pthread_create(&tp->threads[i - 1], NULL, worker_main, a) != 0) {
            free(a);
            break;
        }
        tp->n++;
    }
    return tp;
}

void ei_threadpool_free(ei_threadpool *tp) {
    if (!tp) return;
    stop_workers(tp, tp->n - 1);
    pthread_mutex_destroy(&tp->mu);
    pthread_cond_destroy(&tp->cv_work);
    pthread_cond_destroy(&tp->cv_done);
    free(tp->threads);
    free(tp);
}

int ei_threadpool_size(const ei_threadpool *tp) { return tp ? tp->n : 1; }

/* Not reentrant: one run at a time, from one thread, and fn must not call back into the same pool. */
void ei_threadpool_run(ei_threadpool *tp, ei_task_fn fn, void *ctx) {
    if (!tp || tp->n == 1) {
        fn(ctx, 0, 1);
        return;
    }
    tp->fn = fn;
    tp->ctx = ctx;
    atomic_store(&tp->pending, tp->n - 1);
    atomic_fetch_add(&tp->gen, 1);
    if (atomic_load(&tp->n_sleeping) > 0) {
        pthread_mutex_lock(&tp->mu);
        pthread_cond_broadcast(&tp->cv_work);
        pthread_mutex_unlock(&tp->mu);
    }
    fn(ctx, 0, tp->n);
    for (int i = 0; atomic_load(&tp->pending) > 0 && i < SPIN_ITERS; i++) cpu_relax(i);
    if (atomic_load(&tp->pending) > 0) {
        pthread_mutex_lock(&tp->mu);
        atomic_store(&tp->caller_sleeping, 1);
        /* Same handshake as the workers': the last worker decrements pending, then reads caller_sleeping. */
        while (atomic_load(&tp->pending) > 0) pthread_cond_wait(&tp->cv_done, &tp->mu);
        atomic_store(&tp->caller_sleeping, 0);
        pthread_mutex_unlock(&tp->mu);
    }
}

#else /* EI_NO_THREADS */

struct ei_threadpool {
    int n;
};

/* Single-threaded build: a valid handle of size 1 so callers need no special case. */
ei_threadpool *ei_threadpool_create(int n_threads) {
    (void)n_threads;
    ei_threadpool *tp = calloc(1, sizeof *tp);
    if (!tp) {
        ei_set_error(EI_ERR_NOMEM, "thread pool: out of memory");
        return NULL;
    }
    tp->n = 1;
    return tp;
}

void ei_threadpool_free(ei_threadpool *tp) { free(tp); }

int ei_threadpool_size(const ei_threadpool *tp) {
    (void)tp;
    return 1;
}

void ei_threadpool_run(ei_threadpool *tp, ei_task_fn fn, void *ctx) {
    (void)tp;
    fn(ctx, 0, 1);
}

#endif
