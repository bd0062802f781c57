/* test_threadpool.c — every index runs exactly once per run, the caller takes ith 0, runs are fork-join
 * (all work visible when run returns), both the spinning and the sleeping wake-up paths work. */
#include "test.h"
#include "threadpool.h"

#include <pthread.h>
#include <stdatomic.h>
#include <string.h>
#include <time.h>

#define MAXT 16

typedef struct {
    atomic_int count[MAXT];
    atomic_int bad_nth;
    int expect_nth;
    pthread_t caller;
    atomic_int caller_not_0;
    int slow; /* ith 1 sleeps a bit: the others must still wait for it */
    int out[MAXT];
} job;

static void sleep_us(long us) {
    struct timespec ts = {us / 1000000, (us % 1000000) * 1000};
    nanosleep(&ts, NULL);
}

static void task(void *p, int ith, int nth) {
    job *j = p;
    if (nth != j->expect_nth || ith < 0 || ith >= nth) atomic_fetch_add(&j->bad_nth, 1);
    if (ith >= 0 && ith < MAXT) atomic_fetch_add(&j->count[ith], 1);
    if (ith == 0 && !pthread_equal(pthread_self(), j->caller)) atomic_fetch_add(&j->caller_not_0, 1);
    if (j->slow && ith == 1) sleep_us(2000);
    if (ith >= 0 && ith < MAXT) j->out[ith] = ith * 10 + 1; /* plain write: run must publish it */
}

static void reset(job *j, int nth) {
    memset(j, 0, sizeof *j);
    j->expect_nth = nth;
    j->caller = pthread_self();
}

static void check_run(ei_threadpool *tp, int nth, int slow, int *bad) {
    job j;
    reset(&j, nth);
    j.slow = slow;
    ei_threadpool_run(tp, task, &j);
    for (int i = 0; i < MAXT; i++) {
        int want = i < nth ? 1 : 0;
        if (atomic_load(&j.count[i]) != want || (i < nth && j.out[i] != i * 10 + 1)) (*bad)++;
    }
    if (atomic_load(&j.bad_nth) || atomic_load(&j.caller_not_0)) (*bad)++;
}

static void test_null_pool_inline(void) {
    int bad = 0;
    CHECK(ei_threadpool_size(NULL) == 1, "NULL pool has size 1");
    check_run(NULL, 1, 0, &bad);
    CHECK(bad == 0, "NULL pool runs ith 0 of 1 inline");
}

static void test_sizes(void) {
    ei_threadpool *tp1 = ei_threadpool_create(1), *tp3 = ei_threadpool_create(3), *tpa = ei_threadpool_create(0);
    CHECK(tp1 && tp3 && tpa, "create");
    CHECK(ei_threadpool_size(tp1) == 1, "size 1");
#ifndef EI_NO_THREADS
    CHECK(ei_threadpool_size(tp3) == 3, "size 3, got %d", ei_threadpool_size(tp3));
#endif
    CHECK(ei_threadpool_size(tpa) >= 1, "size from the CPU count: %d", ei_threadpool_size(tpa));
    int bad = 0;
    check_run(tp1, 1, 0, &bad);
    check_run(tpa, ei_threadpool_size(tpa), 0, &bad);
    CHECK(bad == 0, "runs on pools of size 1 and auto");
    ei_threadpool_free(tp1);
    ei_threadpool_free(tp3);
    ei_threadpool_free(tpa);
    ei_threadpool_free(NULL);
}

/* Many back-to-back runs (spinning wake-ups), then runs after idle gaps (workers have gone to sleep). */
static void test_each_index_once(void) {
    for (int n = 2; n <= 5; n += 3) {
        ei_threadpool *tp = ei_threadpool_create(n);
        CHECK(tp != NULL, "create %d", n);
        if (!tp) return;
        const int nth = ei_threadpool_size(tp);
        int bad = 0;
        for (int r = 0; r < 3000; r++) check_run(tp, nth, 0, &bad);
        CHECK(bad == 0, "%d bad back-to-back runs on %d threads", bad, nth);
        bad = 0;
        for (int r = 0; r < 4; r++) {
            sleep_us(30000); /* longer than the spin phase: the next run must wake sleeping workers */
            check_run(tp, nth, 0, &bad);
        }
        CHECK(bad == 0, "%d bad runs after idle gaps", bad);
        bad = 0;
        for (int r = 0; r < 5; r++) check_run(tp, nth, 1, &bad); /* a slow worker: the caller must wait */
        CHECK(bad == 0, "%d bad runs with a slow worker", bad);
        ei_threadpool_free(tp);
    }
}

/* Sums a range split by ith: the result must be the same for every pool size. */
typedef struct {
    const int *v;
    int n;
    long part[MAXT];
} sum_job;

static void sum_task(void *p, int ith, int nth) {
    sum_job *s = p;
    long acc = 0;
    for (int i = s->n * ith / nth; i < s->n * (ith + 1) / nth; i++) acc += s->v[i];
    s->part[ith] = acc;
}

static void test_partition_sum(void) {
    static int v[10007];
    long want = 0;
    for (int i = 0; i < 10007; i++) {
        v[i] = (i * 7919) % 1000 - 500;
        want += v[i];
    }
    for (int n = 1; n <= 4; n++) {
        ei_threadpool *tp = ei_threadpool_create(n);
        sum_job s = {.v = v, .n = 10007};
        ei_threadpool_run(tp, sum_task, &s);
        long got = 0;
        for (int i = 0; i < ei_threadpool_size(tp); i++) got += s.part[i];
        CHECK(got == want, "%d threads: %ld vs %ld", n, got, want);
        ei_threadpool_free(tp);
    }
}

int main(void) {
    RUN(test_null_pool_inline);
    RUN(test_sizes);
    RUN(test_each_index_once);
    RUN(test_partition_sum);
    return TEST_SUMMARY();
}
