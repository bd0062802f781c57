/* threadpool.h — a tiny fork-join pool: run f(ctx, i, n) for i in [0, n) on n workers. */
#ifndef EI_THREADPOOL_H
#define EI_THREADPOOL_H

typedef struct ei_threadpool ei_threadpool;
typedef void (*ei_task_fn)(void *ctx, int ith, int nth);

/* n_threads <= 0 -> number of online CPUs. Returns NULL on failure (callers then run single-threaded).
 * Without pthreads (plain wasm) it always runs tasks inline. */
ei_threadpool *ei_threadpool_create(int n_threads);
void ei_threadpool_free(ei_threadpool *tp);
int ei_threadpool_size(const ei_threadpool *tp);  /* 1 for NULL */
/* Runs fn(ctx, ith, nth) for ith in 0..nth-1 (nth = pool size), the calling thread taking ith = 0; returns
 * when all are done. */
void ei_threadpool_run(ei_threadpool *tp, ei_task_fn fn, void *ctx);

#endif
