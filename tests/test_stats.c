/* Unit tests for batch statistics (bp_stats.c). */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <string.h>

#include "bp_stats.h"

static const struct bp_wstat *wfind(const struct bp_stats *s, const char *id)
{
    for (int i = 0; i < s->nw; i++)
        if (!strcmp(s->w[i].id, id))
            return &s->w[i];
    return NULL;
}

static void t_empty(void **state)
{
    (void)state;
    struct bp_stats s;
    bp_stats_init(&s, 1000);
    assert_int_equal(s.start_ms, 1000);
    assert_int_equal(s.ok, 0);
    assert_int_equal(s.failed, 0);
    assert_int_equal(s.nw, 0);
    assert_true(bp_stats_rate(&s, 1000) == 0.0);
    assert_true(bp_stats_rate(&s, 5000) == 0.0);
    char buf[128];
    bp_stats_progress(&s, 10, 1000, buf, sizeof buf);
    assert_string_equal(buf, "0/10  0.0/s  ETA --:--");
    bp_stats_free(&s);
    bp_stats_free(&s); /* twice is harmless */
}

static void t_counts(void **state)
{
    (void)state;
    struct bp_stats s;
    bp_stats_init(&s, 0);
    assert_int_equal(bp_stats_add(&s, "a", 1), BP_OK);
    assert_int_equal(bp_stats_add(&s, "a", 1), BP_OK);
    assert_int_equal(bp_stats_add(&s, "b", 0), BP_OK);
    assert_int_equal(bp_stats_add(&s, "a", 0), BP_OK);
    assert_int_equal(bp_stats_add(&s, "c", 1), BP_OK);
    assert_int_equal(bp_stats_add(&s, "b", 1), BP_OK);
    assert_int_equal(bp_stats_add(&s, "", 1), BP_OK); /* raw mode: no id */
    assert_int_equal(s.ok, 5);
    assert_int_equal(s.failed, 2);
    assert_int_equal(s.nw, 4);
    const struct bp_wstat *a = wfind(&s, "a"), *b = wfind(&s, "b"), *c = wfind(&s, "c"),
                          *e = wfind(&s, "");
    assert_non_null(a);
    assert_non_null(b);
    assert_non_null(c);
    assert_non_null(e);
    assert_int_equal(a->ok, 2);
    assert_int_equal(a->failed, 1);
    assert_int_equal(b->ok, 1);
    assert_int_equal(b->failed, 1);
    assert_int_equal(c->ok, 1);
    assert_int_equal(c->failed, 0);
    assert_int_equal(e->ok, 1);
    bp_stats_free(&s);
    assert_null(s.w);
    assert_int_equal(s.nw, 0);
}

static void t_long_id(void **state)
{
    (void)state;
    struct bp_stats s;
    char id[BP_ID_MAX + 1];
    memset(id, 'w', BP_ID_MAX);
    id[BP_ID_MAX] = '\0';
    bp_stats_init(&s, 0);
    assert_int_equal(bp_stats_add(&s, id, 1), BP_OK);
    assert_int_equal(bp_stats_add(&s, id, 1), BP_OK);
    assert_int_equal(s.nw, 1);
    assert_string_equal(s.w[0].id, id);
    assert_int_equal(s.w[0].ok, 2);
    bp_stats_free(&s);
}

static void t_others(void **state)
{
    (void)state;
    struct bp_stats s;
    char id[32];
    bp_stats_init(&s, 0);
    for (int i = 0; i < BP_STATS_MAX_WORKERS; i++) {
        snprintf(id, sizeof id, "w%d", i);
        assert_int_equal(bp_stats_add(&s, id, 1), BP_OK);
    }
    assert_int_equal(s.nw, BP_STATS_MAX_WORKERS);
    assert_null(wfind(&s, "(others)"));

    /* Workers beyond the limit share one entry. */
    for (int i = BP_STATS_MAX_WORKERS; i < BP_STATS_MAX_WORKERS + 10; i++) {
        snprintf(id, sizeof id, "w%d", i);
        assert_int_equal(bp_stats_add(&s, id, i % 2), BP_OK);
    }
    assert_int_equal(s.nw, BP_STATS_MAX_WORKERS + 1);
    const struct bp_wstat *o = wfind(&s, "(others)");
    assert_non_null(o);
    assert_int_equal(o->ok, 5);
    assert_int_equal(o->failed, 5);
    assert_null(wfind(&s, "w256"));

    /* Known workers still get their own tallies. */
    assert_int_equal(bp_stats_add(&s, "w0", 0), BP_OK);
    assert_int_equal(bp_stats_add(&s, "w255", 1), BP_OK);
    assert_int_equal(wfind(&s, "w0")->ok, 1);
    assert_int_equal(wfind(&s, "w0")->failed, 1);
    assert_int_equal(wfind(&s, "w255")->ok, 2);
    assert_int_equal(s.nw, BP_STATS_MAX_WORKERS + 1);

    /* Totals count everything. */
    assert_int_equal(s.ok, BP_STATS_MAX_WORKERS + 5 + 1);
    assert_int_equal(s.failed, 5 + 1);
    int64_t sum_ok = 0, sum_failed = 0;
    for (int i = 0; i < s.nw; i++) {
        sum_ok += s.w[i].ok;
        sum_failed += s.w[i].failed;
    }
    assert_int_equal(sum_ok, s.ok);
    assert_int_equal(sum_failed, s.failed);
    bp_stats_free(&s);
}

static void t_rate(void **state)
{
    (void)state;
    struct bp_stats s;
    bp_stats_init(&s, 1000);
    for (int i = 0; i < 10; i++)
        bp_stats_add(&s, "a", i < 8);
    assert_true(bp_stats_rate(&s, 1000) == 0.0); /* no time yet */
    assert_true(bp_stats_rate(&s, 500) == 0.0);  /* clock before start */
    assert_true(bp_stats_rate(&s, 6000) == 2.0); /* 10 in 5 s */
    assert_true(bp_stats_rate(&s, 1500) == 20.0);
    bp_stats_free(&s);
}

static void t_progress(void **state)
{
    (void)state;
    struct bp_stats s;
    char buf[128];
    bp_stats_init(&s, 1000);
    for (int i = 0; i < 10; i++)
        bp_stats_add(&s, "a", i != 3);

    /* 10 done in 5 s = 2.0/s; 90 left -> 45 s. */
    bp_stats_progress(&s, 100, 6000, buf, sizeof buf);
    assert_string_equal(buf, "10/100  2.0/s  ETA 0:45");
    /* 190 left -> 95 s -> 1:35 */
    bp_stats_progress(&s, 200, 6000, buf, sizeof buf);
    assert_string_equal(buf, "10/200  2.0/s  ETA 1:35");
    /* 9990 left -> 4995 s -> 1:23:15 */
    bp_stats_progress(&s, 10000, 6000, buf, sizeof buf);
    assert_string_equal(buf, "10/10000  2.0/s  ETA 1:23:15");
    /* all done */
    bp_stats_progress(&s, 10, 6000, buf, sizeof buf);
    assert_string_equal(buf, "10/10  2.0/s  ETA 0:00");
    /* more results than announced: no ETA */
    bp_stats_progress(&s, 5, 6000, buf, sizeof buf);
    assert_string_equal(buf, "10/5  2.0/s  ETA --:--");
    /* unknown total */
    bp_stats_progress(&s, -1, 6000, buf, sizeof buf);
    assert_string_equal(buf, "10 done  2.0/s");
    /* no time passed: no rate, no ETA */
    bp_stats_progress(&s, 100, 1000, buf, sizeof buf);
    assert_string_equal(buf, "10/100  0.0/s  ETA --:--");
    /* rounding: 10 in 3 s = 3.3/s, 5 left -> 1.5 s -> 2 s */
    bp_stats_progress(&s, 15, 4000, buf, sizeof buf);
    assert_string_equal(buf, "10/15  3.3/s  ETA 0:02");

    /* A small buffer is truncated, never overrun. */
    char small[8];
    memset(small, 'x', sizeof small);
    bp_stats_progress(&s, 100, 6000, small, sizeof small);
    assert_int_equal(small[sizeof small - 1], '\0');
    assert_string_equal(small, "10/100 ");
    bp_stats_free(&s);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(t_empty),  cmocka_unit_test(t_counts), cmocka_unit_test(t_long_id),
        cmocka_unit_test(t_others), cmocka_unit_test(t_rate),   cmocka_unit_test(t_progress),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
