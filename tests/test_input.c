/* Unit tests for the task record reader (bp_input.c). */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bp.h"
#include "bp_input.h"

/* Opens len bytes of data as a FILE (fmemopen; tmpfile for no data). */
static FILE *open_data(const void *data, size_t len)
{
    FILE *f;
    if (len == 0) {
        f = tmpfile();
    } else {
        f = fmemopen((void *)(uintptr_t)data, len, "r");
    }
    assert_non_null(f);
    return f;
}

static void expect_rec(struct bp_reader *r, const void *want, size_t want_len)
{
    const char *rec = NULL;
    size_t len = (size_t)-1;
    assert_int_equal(bp_reader_next(r, &rec, &len), BP_OK);
    assert_non_null(rec);
    assert_int_equal(len, want_len);
    if (want_len)
        assert_memory_equal(rec, want, want_len);
    assert_int_equal(rec[len], '\0'); /* usable as a C string too */
}

#define EXPECT_STR(r, s) expect_rec((r), (s), strlen(s))

static void expect_end(struct bp_reader *r)
{
    const char *rec;
    size_t len;
    assert_int_equal(bp_reader_next(r, &rec, &len), BP_EXIT_INFO);
    assert_int_equal(bp_reader_next(r, &rec, &len), BP_EXIT_INFO); /* stays at end */
}

static void open_reader(struct bp_reader *r, FILE **f, const void *data, size_t len, int nul,
                        size_t max)
{
    *f = open_data(data, len);
    assert_int_equal(bp_reader_init(r, *f, nul, max), BP_OK);
}

static void close_reader(struct bp_reader *r, FILE *f)
{
    bp_reader_free(r);
    bp_reader_free(r); /* twice is harmless */
    fclose(f);
}

static void t_lines(void **state)
{
    (void)state;
    static const char d[] = "hola\naloha\nbuenas noches\n";
    struct bp_reader r;
    FILE *f;
    open_reader(&r, &f, d, sizeof d - 1, 0, 1024);
    EXPECT_STR(&r, "hola");
    assert_int_equal(r.record, 1);
    EXPECT_STR(&r, "aloha");
    EXPECT_STR(&r, "buenas noches");
    assert_int_equal(r.record, 3);
    expect_end(&r);
    close_reader(&r, f);
}

static void t_crlf(void **state)
{
    (void)state;
    static const char d[] = "one\r\ntwo\r\n\r\nthree\rx\r\nlast\r";
    struct bp_reader r;
    FILE *f;
    open_reader(&r, &f, d, sizeof d - 1, 0, 1024);
    EXPECT_STR(&r, "one");
    EXPECT_STR(&r, "two");
    EXPECT_STR(&r, "");         /* a CR LF line: an empty task */
    EXPECT_STR(&r, "three\rx"); /* only a trailing CR goes */
    EXPECT_STR(&r, "last");
    expect_end(&r);
    close_reader(&r, f);
}

/* An empty line is an empty task, as in GNU parallel: the records line up
 * with the input's lines. */
static void t_empty_lines(void **state)
{
    (void)state;
    static const char d[] = "a\n\nb\n\n\r\nc\n";
    struct bp_reader r;
    FILE *f;
    open_reader(&r, &f, d, sizeof d - 1, 0, 1024);
    EXPECT_STR(&r, "a");
    EXPECT_STR(&r, "");
    EXPECT_STR(&r, "b");
    EXPECT_STR(&r, "");
    EXPECT_STR(&r, ""); /* CR LF: empty too */
    EXPECT_STR(&r, "c");
    expect_end(&r);
    assert_int_equal(r.record, 6);
    close_reader(&r, f);

    /* The last newline ends the last record; it starts none. */
    static const char only[] = "\n\r\n\n";
    open_reader(&r, &f, only, sizeof only - 1, 0, 1024);
    EXPECT_STR(&r, "");
    EXPECT_STR(&r, "");
    EXPECT_STR(&r, "");
    expect_end(&r);
    close_reader(&r, f);
}

/* skip_empty (--skip-empty, parallel's -r): the old behaviour, lines and
 * NUL records alike; skipped lines still count as records read. */
static void t_skip_empty(void **state)
{
    (void)state;
    static const char d[] = "\n\n\na\n\n\r\nb\n\n";
    struct bp_reader r;
    FILE *f;
    open_reader(&r, &f, d, sizeof d - 1, 0, 1024);
    r.skip_empty = 1;
    EXPECT_STR(&r, "a");
    EXPECT_STR(&r, "b");
    expect_end(&r);
    assert_int_equal(r.record, 8);
    close_reader(&r, f);

    static const char z[] = "\0x\0\0y\0";
    open_reader(&r, &f, z, sizeof z - 1, 1, 1024);
    r.skip_empty = 1;
    EXPECT_STR(&r, "x");
    EXPECT_STR(&r, "y");
    expect_end(&r);
    close_reader(&r, f);
}

static void t_empty_input(void **state)
{
    (void)state;
    struct bp_reader r;
    FILE *f;
    open_reader(&r, &f, "", 0, 0, 1024);
    expect_end(&r);
    assert_int_equal(r.record, 0);
    close_reader(&r, f);
    open_reader(&r, &f, "", 0, 1, 1024);
    expect_end(&r);
    close_reader(&r, f);
}

static void t_last_line_no_newline(void **state)
{
    (void)state;
    static const char d[] = "first\nsecond";
    struct bp_reader r;
    FILE *f;
    open_reader(&r, &f, d, sizeof d - 1, 0, 1024);
    EXPECT_STR(&r, "first");
    EXPECT_STR(&r, "second");
    expect_end(&r);
    close_reader(&r, f);

    static const char one[] = "x";
    open_reader(&r, &f, one, 1, 0, 1024);
    EXPECT_STR(&r, "x");
    expect_end(&r);
    close_reader(&r, f);
}

static void t_nul_mode(void **state)
{
    (void)state;
    /* Empty records are kept, newlines/CRs/binary bytes are data. */
    static const char d[] = "a\0\0line\nwith\r\nbreaks\r\0\x01\xff\x80\0tail";
    struct bp_reader r;
    FILE *f;
    open_reader(&r, &f, d, sizeof d - 1, 1, 1024);
    expect_rec(&r, "a", 1);
    expect_rec(&r, "", 0);
    expect_rec(&r, "line\nwith\r\nbreaks\r", 18);
    expect_rec(&r, "\x01\xff\x80", 3);
    expect_rec(&r, "tail", 4);
    assert_int_equal(r.record, 5);
    expect_end(&r);
    close_reader(&r, f);

    /* Trailing NUL: no extra empty record at the end. */
    static const char t[] = "x\0\0";
    open_reader(&r, &f, t, sizeof t - 1, 1, 1024);
    expect_rec(&r, "x", 1);
    expect_rec(&r, "", 0);
    expect_end(&r);
    close_reader(&r, f);
}

static void t_too_big(void **state)
{
    (void)state;
    static const char d[] = "abc\nabcd\nabcdefghijkl\nxy\nabcde";
    struct bp_reader r;
    FILE *f;
    const char *rec;
    size_t len;
    open_reader(&r, &f, d, sizeof d - 1, 0, 4);
    EXPECT_STR(&r, "abc");
    EXPECT_STR(&r, "abcd"); /* exactly max: accepted */
    assert_int_equal(bp_reader_next(&r, &rec, &len), BP_ETOOBIG);
    assert_int_equal(r.record, 3);
    EXPECT_STR(&r, "xy"); /* goes on after the long record */
    assert_int_equal(r.record, 4);
    assert_int_equal(bp_reader_next(&r, &rec, &len), BP_ETOOBIG); /* at EOF */
    expect_end(&r);
    close_reader(&r, f);

    static const char n[] = "12345678\0ok\0"
                            "123456789";
    open_reader(&r, &f, n, sizeof n - 1, 1, 4);
    assert_int_equal(bp_reader_next(&r, &rec, &len), BP_ETOOBIG);
    expect_rec(&r, "ok", 2);
    assert_int_equal(bp_reader_next(&r, &rec, &len), BP_ETOOBIG);
    expect_end(&r);
    close_reader(&r, f);
}

/* Records longer than the initial buffer make it grow, up to max. */
static void t_long_records(void **state)
{
    (void)state;
    const size_t big = 100000, max = 200000;
    size_t total = big + 1 + max + 1 + (max + 1) + 1 + 3;
    char *d = malloc(total);
    assert_non_null(d);
    size_t o = 0;
    for (size_t i = 0; i < big; i++)
        d[o++] = (char)('a' + i % 26);
    d[o++] = '\n';
    for (size_t i = 0; i < max; i++)
        d[o++] = 'm';
    d[o++] = '\n';
    for (size_t i = 0; i <= max; i++) /* max + 1 bytes */
        d[o++] = 'x';
    d[o++] = '\n';
    memcpy(d + o, "end", 3);
    o += 3;
    assert_int_equal(o, total);

    struct bp_reader r;
    FILE *f;
    const char *rec;
    size_t len;
    open_reader(&r, &f, d, total, 0, max);
    expect_rec(&r, d, big);
    assert_int_equal(bp_reader_next(&r, &rec, &len), BP_OK);
    assert_int_equal(len, max);
    for (size_t i = 0; i < max; i++)
        if (rec[i] != 'm')
            fail_msg("byte %zu of the max-size record is %d", i, rec[i]);
    assert_true(r.cap <= max + 1); /* memory bounded by max */
    assert_int_equal(bp_reader_next(&r, &rec, &len), BP_ETOOBIG);
    assert_true(r.cap <= max + 1);
    EXPECT_STR(&r, "end");
    expect_end(&r);
    close_reader(&r, f);
    free(d);
}

/* Many short records across read-ahead refills: those inside the buffer
 * come from the fast path (no copy), those cut by a refill from the slow
 * one; all in order, NUL-terminated, CRs and empty lines handled alike. */
static void t_many_across_refills(void **state)
{
    (void)state;
    FILE *f = tmpfile(); /* a real descriptor: read(2) refills */
    assert_non_null(f);
    const int n = 30000;
    for (int i = 0; i < n; i++)
        fprintf(f, "rec%d%s", i, i % 7 == 0 ? "\r\n" : i % 11 == 0 ? "\n\n" : "\n");
    rewind(f);
    struct bp_reader r;
    assert_int_equal(bp_reader_init(&r, f, 0, 64), BP_OK);
    char want[32];
    for (int i = 0; i < n; i++) {
        snprintf(want, sizeof want, "rec%d", i);
        EXPECT_STR(&r, want);
        if (i % 7 != 0 && i % 11 == 0)
            EXPECT_STR(&r, ""); /* the empty line after it */
    }
    expect_end(&r);
    assert_int_equal(r.record, n + (n + 10) / 11 - (n + 76) / 77); /* empty lines count */
    bp_reader_free(&r);
    fclose(f);
}

static void t_tutorial(void **state)
{
    (void)state;
    static const char *const want[7] = {
        "hola", "aloha", "hello", "buenas noches", "buenas tardes", "buenos dias", "bienvenido"};
    struct bp_reader r;
    assert_int_equal(bp_reader_init(&r, NULL, 0, 1024), BP_OK);
    for (int i = 0; i < 7; i++) {
        assert_string_equal(bp_tutorial_tasks[i], want[i]);
        EXPECT_STR(&r, want[i]);
        assert_int_equal(r.record, i + 1);
    }
    expect_end(&r);
    assert_int_equal(r.record, 7);
    bp_reader_free(&r);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(t_lines),        cmocka_unit_test(t_crlf),
        cmocka_unit_test(t_empty_lines),  cmocka_unit_test(t_skip_empty),
        cmocka_unit_test(t_empty_input),  cmocka_unit_test(t_last_line_no_newline),
        cmocka_unit_test(t_nul_mode),     cmocka_unit_test(t_too_big),
        cmocka_unit_test(t_long_records), cmocka_unit_test(t_many_across_refills),
        cmocka_unit_test(t_tutorial),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
