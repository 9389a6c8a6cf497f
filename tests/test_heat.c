/* bp_heat: the --max-temp limit and its hysteresis. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <string.h>

#include "bp_heat.h"

static int note(struct bp_heat *h, const char *s)
{
    return bp_heat_note(h, s, strlen(s));
}

static void t_hysteresis(void **state)
{
    (void)state;
    struct bp_heat h;
    bp_heat_init(&h, 70);
    assert_int_equal(note(&h, "69999\n"), 0);
    assert_int_equal(h.hot, 0);
    assert_true(h.last_mc == 69999);
    assert_int_equal(note(&h, "70000\n"), 1); /* at the limit: hot */
    assert_int_equal(h.hot, 1);
    assert_int_equal(note(&h, "66000"), 0); /* still within 5 °C */
    assert_int_equal(note(&h, "65000"), 0);
    assert_int_equal(h.hot, 1);
    assert_int_equal(note(&h, "64999"), 1); /* cooled */
    assert_int_equal(h.hot, 0);
    assert_int_equal(note(&h, "69000"), 0);
    assert_int_equal(note(&h, "81234"), 1);
}

static void t_bad_and_off(void **state)
{
    (void)state;
    struct bp_heat h;
    bp_heat_init(&h, 70);
    assert_int_equal(note(&h, "90000"), 1);
    static const char *const bad[] = {"", "hot", "12a", "\n", "99999999999999999999999"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        assert_int_equal(note(&h, bad[i]), 0);
        assert_int_equal(h.bad, 1);
        assert_int_equal(h.hot, 1); /* a bad reading changes nothing */
    }
    /* a long text is cut, not overrun */
    char big[100];
    memset(big, '1', sizeof big - 1);
    big[sizeof big - 1] = '\0';
    assert_int_equal(note(&h, big), 0);
    assert_int_equal(note(&h, "-5000"), 1); /* below zero is a temperature too */
    assert_int_equal(h.bad, 0);
    bp_heat_init(&h, 0); /* off: nothing is ever hot */
    assert_int_equal(note(&h, "200000"), 0);
    assert_int_equal(h.hot, 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(t_hysteresis),
        cmocka_unit_test(t_bad_and_off),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
