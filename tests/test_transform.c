/* Unit tests for the built-in transforms (bp_transform.c). */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <string.h>

#include "bp_transform.h"

/* Runs transform name over in both out of place and in place and checks
 * both against want (len bytes). */
static void check(const char *name, const char *in, size_t len, const char *want)
{
    const struct bp_transform *t = bp_transform_find(name);
    assert_non_null(t);
    assert_string_equal(t->name, name);
    assert_non_null(t->fn);

    uint8_t src[256], out[256 + 1], inplace[256];
    assert_true(len <= sizeof src);
    memcpy(src, in, len);
    memset(out, 0xcc, sizeof out);
    t->fn(src, len, out);
    if (len)
        assert_memory_equal(out, want, len);
    assert_int_equal(out[len], 0xcc); /* keeps the length */
    if (len)
        assert_memory_equal(src, in, len); /* input untouched */

    memcpy(inplace, in, len);
    t->fn(inplace, len, inplace);
    if (len)
        assert_memory_equal(inplace, want, len);
}

static void t_upper(void **state)
{
    (void)state;
    check("upper", "hello, World 123 az{`@[", 23, "HELLO, WORLD 123 AZ{`@[");
    check("upper", "a", 1, "A");
}

static void t_lower(void **state)
{
    (void)state;
    check("lower", "HELLO, World 123 AZ{`@[", 23, "hello, world 123 az{`@[");
    check("lower", "Z", 1, "z");
}

static void t_echo(void **state)
{
    (void)state;
    check("echo", "Hello\0World\n", 12, "Hello\0World\n");
}

static void t_reverse(void **state)
{
    (void)state;
    check("reverse", "abcdef", 6, "fedcba");
    check("reverse", "abcde", 5, "edcba");
    check("reverse", "ab", 2, "ba");
    check("reverse", "x", 1, "x");
    check("reverse", "a\0b\xff", 4,
          "\xff"
          "b\0a");
}

static void t_empty(void **state)
{
    (void)state;
    const char *names[] = {"upper", "lower", "echo", "reverse"};
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        const struct bp_transform *t = bp_transform_find(names[i]);
        assert_non_null(t);
        uint8_t in[1] = {'q'}, out[1] = {0xcc};
        t->fn(in, 0, out);
        assert_int_equal(out[0], 0xcc);
        assert_int_equal(in[0], 'q');
        t->fn(in, 0, in);
        assert_int_equal(in[0], 'q');
    }
}

static void t_non_ascii(void **state)
{
    (void)state;
    /* UTF-8 "é" and "É", Latin-1 bytes, NUL, DEL: all left alone. */
    const char in[] = "\xc3\xa9\xc3\x89\xe9\xc9\x00\x7f\x80\xff"
                      "aZ";
    const size_t n = sizeof in - 1;
    check("upper", in, n,
          "\xc3\xa9\xc3\x89\xe9\xc9\x00\x7f\x80\xff"
          "AZ");
    check("lower", in, n,
          "\xc3\xa9\xc3\x89\xe9\xc9\x00\x7f\x80\xff"
          "az");
    check("echo", in, n, in);

    /* Every byte value: only ASCII letters change. */
    uint8_t all[256], up[256], lo[256];
    for (int i = 0; i < 256; i++)
        all[i] = (uint8_t)i;
    bp_transform_find("upper")->fn(all, 256, up);
    bp_transform_find("lower")->fn(all, 256, lo);
    for (int i = 0; i < 256; i++) {
        int want_up = (i >= 'a' && i <= 'z') ? i - 32 : i;
        int want_lo = (i >= 'A' && i <= 'Z') ? i + 32 : i;
        assert_int_equal(up[i], want_up);
        assert_int_equal(lo[i], want_lo);
    }
}

static void t_unknown(void **state)
{
    (void)state;
    assert_null(bp_transform_find("UPPER"));
    assert_null(bp_transform_find(""));
    assert_null(bp_transform_find("rot13"));
    assert_null(bp_transform_find("upperx"));
    const char *names = bp_transform_names();
    assert_non_null(names);
    assert_non_null(strstr(names, "upper"));
    assert_non_null(strstr(names, "lower"));
    assert_non_null(strstr(names, "echo"));
    assert_non_null(strstr(names, "reverse"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(t_upper),   cmocka_unit_test(t_lower), cmocka_unit_test(t_echo),
        cmocka_unit_test(t_reverse), cmocka_unit_test(t_empty), cmocka_unit_test(t_non_ascii),
        cmocka_unit_test(t_unknown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
