/* bp_spec: the --speculate option, the median of task times, the
 * straggler threshold. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <string.h>

#include "bp_spec.h"

static void t_parse(void **state)
{
    (void)state;
    struct bp_spec_cfg c;
    char err[256];
    bp_spec_defaults(&c);
    assert_int_equal(c.quantile_pm, 750);
    assert_int_equal(c.mult_pct, 200);
    assert_int_equal(c.min_ms, 1000);
    assert_int_equal(bp_spec_parse("off", &c, err, sizeof err), 0);
    assert_int_equal(c.quantile_pm, 0);
    assert_int_equal(bp_spec_parse("0.9,1.5", &c, err, sizeof err), 0);
    assert_int_equal(c.quantile_pm, 900);
    assert_int_equal(c.mult_pct, 150);
    assert_int_equal(c.min_ms, 1000);
    assert_int_equal(bp_spec_parse("1,3,250ms", &c, err, sizeof err), 0);
    assert_true(c.quantile_pm == 1000 && c.mult_pct == 300 && c.min_ms == 250);
    assert_int_equal(bp_spec_parse("0.5,2,2", &c, err, sizeof err), 0);
    assert_int_equal(c.min_ms, 2000);
    assert_int_equal(bp_spec_parse("0.5,2,1m", &c, err, sizeof err), 0);
    assert_int_equal(c.min_ms, 60000);
    static const char *const bad[] = {
        "",        "on",     "0.75",     "0,2",     "1.5,2",      "-1,2",  "0.5,0.9",
        "0.5,101", "0.5,2,", "0.5,2,1h", "0.5,2,x", "0.5,2,1s,4", "nan,2", "0.5,2,99999999"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        struct bp_spec_cfg keep = c;
        err[0] = '\0';
        assert_int_equal(bp_spec_parse(bad[i], &c, err, sizeof err), -1);
        assert_non_null(strstr(err, "QUANTILE,MULTIPLIER"));
        assert_memory_equal(&keep, &c, sizeof c);
    }
}

static void t_median(void **state)
{
    (void)state;
    struct bp_spec_hist h;
    memset(&h, 0, sizeof h);
    assert_int_equal(bp_spec_median(&h), -1);
    bp_spec_note(&h, 100);
    /* within a bucket's width (19 %) below the true value */
    int64_t m = bp_spec_median(&h);
    assert_true(m <= 100 && m * 100 >= 81 * 100);
    for (int i = 0; i < 10; i++)
        bp_spec_note(&h, 100);
    bp_spec_note(&h, 10000);
    bp_spec_note(&h, -5);
    m = bp_spec_median(&h);
    assert_true(m <= 100 && m >= 81);
    /* exact below 4 ms, huge times land in the last bucket */
    memset(&h, 0, sizeof h);
    bp_spec_note(&h, 3);
    assert_int_equal(bp_spec_median(&h), 3);
    memset(&h, 0, sizeof h);
    bp_spec_note(&h, INT64_MAX);
    assert_true(bp_spec_median(&h) > (int64_t)1 << 32);
    /* every value maps to a bucket whose low end is <= it, > 80 % of it */
    for (int64_t v = 1; v < 5000000; v = v * 5 / 4 + 1) {
        memset(&h, 0, sizeof h);
        bp_spec_note(&h, v);
        m = bp_spec_median(&h);
        assert_true(m <= v && m * 5 > v * 4 - 5);
    }
}

static void t_threshold(void **state)
{
    (void)state;
    struct bp_spec_cfg c;
    struct bp_spec_hist h;
    memset(&h, 0, sizeof h);
    bp_spec_defaults(&c);
    assert_int_equal(bp_spec_threshold(&c, &h, 60, 60), -1); /* no time known */
    for (int i = 0; i < 50; i++)
        bp_spec_note(&h, 100);
    assert_int_equal(bp_spec_threshold(&c, &h, 44, 60), -1);   /* under 75 % */
    assert_int_equal(bp_spec_threshold(&c, &h, 45, 60), 1000); /* the minimum */
    for (int i = 0; i < 100; i++)
        bp_spec_note(&h, 4000);
    int64_t t = bp_spec_threshold(&c, &h, 45, 60); /* 2 x the median */
    assert_true(t <= 8000 && t > 6400);
    c.quantile_pm = 0;
    assert_int_equal(bp_spec_threshold(&c, &h, 60, 60), -1);
    bp_spec_defaults(&c);
    assert_int_equal(bp_spec_threshold(&c, &h, 0, 0), -1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(t_parse),
        cmocka_unit_test(t_median),
        cmocka_unit_test(t_threshold),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
