/* test_stop.c — stop strings over streamed text: the stop string and anything after it never shown, a held-back
 * prefix that does not complete is released, splits at every byte give the same result. */
#include <string.h>

#include "edgeinf.h"
#include "test.h"

/* Streams `text` in pieces of `piece` bytes; returns what was shown (static buffer) and whether it stopped. */
static const char *stream(const char *const *stops, int n_stops, const char *text, int piece, int *stopped) {
    static char shown[512];
    char buf[512];
    ei_stop *st = NULL;
    int32_t n, stp = 0;
    shown[0] = 0;
    if (ei_stop_create(stops, n_stops, &st)) return "(create failed)";
    const int len = (int)strlen(text);
    for (int i = 0; i < len && !stp; i += piece) {
        int c = len - i < piece ? len - i : piece;
        if (ei_stop_push(st, text + i, c, buf, sizeof buf, &n, &stp)) return "(push failed)";
        strcat(shown, buf);
    }
    if (!stp && ei_stop_flush(st, buf, sizeof buf, &n) == 0) strcat(shown, buf);
    *stopped = stp;
    ei_stop_free(st);
    return shown;
}

static void test_stops_before_the_string(void) {
    const char *stops[] = {"\nUser:", "###"};
    for (int piece = 1; piece <= 7; piece++) {
        int stopped;
        const char *s = stream(stops, 2, "Hello there.\nUser: more", piece, &stopped);
        CHECK(stopped && !strcmp(s, "Hello there."), "piece %d: '%s'", piece, s);
        s = stream(stops, 2, "a ## b # c ##", piece, &stopped);
        CHECK(!stopped && !strcmp(s, "a ## b # c ##"), "held-back prefixes released at the end, piece %d: '%s'", piece, s);
        s = stream(stops, 2, "x###y", piece, &stopped);
        CHECK(stopped && !strcmp(s, "x"), "piece %d: '%s'", piece, s);
    }
}

static void test_earliest_of_several_and_overlaps(void) {
    const char *stops[] = {"bcd", "cx", "aab"};
    int stopped;
    const char *s = stream(stops, 3, "zzaabcd", 1, &stopped);
    CHECK(stopped && !strcmp(s, "zz"), "earliest match wins: '%s'", s);
    s = stream(stops, 3, "aaaab!", 2, &stopped);
    CHECK(stopped && !strcmp(s, "aa"), "overlapping prefix: '%s'", s);
}

static void test_no_stops_and_errors(void) {
    int stopped;
    const char *s = stream(NULL, 0, "plain text", 3, &stopped);
    CHECK(!stopped && !strcmp(s, "plain text"), "'%s'", s);
    ei_stop *st = NULL;
    const char *stops[] = {"ab"};
    CHECK(ei_stop_create(stops, 1, &st) == 0, "create");
    char small[2];
    int32_t n, stp;
    CHECK(ei_stop_push(st, "xyz", 3, small, sizeof small, &n, &stp) == EI_ERR_BUFFER_TOO_SMALL && n == 4, "needs %d", n);
    char buf[16];
    CHECK(ei_stop_push(st, "xyz", 3, buf, sizeof buf, &n, &stp) == 0 && n == 3, "retry after too small consumed nothing");
    ei_stop_free(st);
    CHECK(ei_stop_create(NULL, 2, &st) == EI_ERR_INVALID_ARG, "NULL list refused");
}

int main(void) {
    RUN(test_stops_before_the_string);
    RUN(test_earliest_of_several_and_overlaps);
    RUN(test_no_stops_and_errors);
    return TEST_SUMMARY();
}
