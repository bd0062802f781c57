/* test.h — minimal unit-test harness. Each test file is its own program:
 *   static void test_x(void) { CHECK(1 + 1 == 2, "math"); }
 *   int main(void) { RUN(test_x); return TEST_SUMMARY(); }
 * A test passes when none of its CHECKs fails. The last line printed is "N passed, N failed". */
#ifndef EI_TEST_H
#define EI_TEST_H

#include <stdio.h>

static int t_tests_passed, t_tests_failed, t_cur_failed;

#define CHECK(cond, ...)                                                      \
    do {                                                                      \
        if (!(cond)) {                                                        \
            t_cur_failed++;                                                   \
            fprintf(stderr, "  FAIL %s:%d: %s: ", __FILE__, __LINE__, #cond); \
            fprintf(stderr, __VA_ARGS__);                                     \
            fputc('\n', stderr);                                              \
        }                                                                     \
    } while (0)

#define RUN(fn)                                                   \
    do {                                                          \
        t_cur_failed = 0;                                         \
        fn();                                                     \
        if (t_cur_failed) {                                       \
            t_tests_failed++;                                     \
            fprintf(stderr, "not ok %s\n", #fn);                  \
        } else {                                                  \
            t_tests_passed++;                                     \
            printf("ok %s\n", #fn);                               \
        }                                                         \
        fflush(stdout);                                           \
    } while (0)

#define TEST_SUMMARY() \
    (printf("%d passed, %d failed\n", t_tests_passed, t_tests_failed), t_tests_failed ? 1 : 0)

#endif
