/* Unit tests for the sink's upload table (bp_upload.c): what each PUT
 * chunk gets, hostile sizes, offsets, names and counts, and which uploads
 * are given up. No files, no sockets, no clock. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <string.h>

#include "bp.h"
#include "bp_frame.h"
#include "bp_path.h"
#include "bp_upload.h"

static const uint8_t RID_A[] = {0, 1, 2, 3, 4};
static const uint8_t RID_B[] = {0, 9, 9, 9, 9};

static struct bp_uploads *table(uint64_t max_size)
{
    struct bp_upload_cfg c = {.max_size = max_size, .stale_ms = 3000};
    struct bp_uploads *t = bp_uploads_new(&c);
    assert_non_null(t);
    return t;
}

static struct bp_put chunk(uint64_t id, uint16_t attempt, uint8_t idx, uint64_t offset,
                           uint64_t size, uint32_t len, const char *name)
{
    static const uint8_t data[BP_CHUNK_BYTES];
    struct bp_put u = {.id = id,
                       .attempt = attempt,
                       .idx = idx,
                       .offset = offset,
                       .size = size,
                       .name = name,
                       .name_len = (uint16_t)strlen(name),
                       .data = data,
                       .len = len};
    return u;
}

/* Puts a chunk from A at time now; writes it when asked. Returns the verdict. */
static int put(struct bp_uploads *t, struct bp_put u, int64_t now, struct bp_up_decision *d)
{
    bp_uploads_put(t, &u, RID_A, sizeof RID_A, now, d);
    if (d->verdict == BP_UP_WRITE)
        bp_uploads_wrote(t, d->slot, u.len);
    return d->verdict;
}

static void t_in_order_and_resume(void **state)
{
    (void)state;
    struct bp_uploads *t = table(1 << 20);
    struct bp_up_decision d;
    uint64_t size = 2 * (uint64_t)BP_CHUNK_BYTES + 1;
    assert_int_equal(put(t, chunk(5, 1, 0, 0, size, BP_CHUNK_BYTES, "a"), 0, &d), BP_UP_WRITE);
    assert_true(d.fresh);
    /* a lost chunk: the next one is not written, received says where */
    assert_int_equal(put(t, chunk(5, 1, 0, 2 * BP_CHUNK_BYTES, size, 1, "a"), 0, &d), BP_UP_ANSWER);
    assert_int_equal(d.received, BP_CHUNK_BYTES);
    /* a repeat of a chunk already written */
    assert_int_equal(put(t, chunk(5, 1, 0, 0, size, BP_CHUNK_BYTES, "a"), 0, &d), BP_UP_ANSWER);
    assert_int_equal(d.received, BP_CHUNK_BYTES);
    assert_false(bp_uploads_complete(t, 5, 1, 1));
    assert_int_equal(put(t, chunk(5, 1, 0, BP_CHUNK_BYTES, size, BP_CHUNK_BYTES, "a"), 0, &d),
                     BP_UP_WRITE);
    assert_false(d.fresh);
    assert_int_equal(put(t, chunk(5, 1, 0, 2 * BP_CHUNK_BYTES, size, 1, "a"), 0, &d), BP_UP_WRITE);
    assert_true(bp_uploads_complete(t, 5, 1, 1));
    assert_false(bp_uploads_complete(t, 5, 1, 2)); /* idx 1 missing */
    assert_false(bp_uploads_complete(t, 5, 2, 1)); /* another attempt */
    assert_false(bp_uploads_complete(t, 5, 1, 0));
    bp_uploads_destroy(&t);
    assert_null(t);
    bp_uploads_destroy(&t);
}

/* A sink restarted mid-file knows nothing: offset != 0 gets received 0,
 * and nothing is opened. */
static void t_unknown_offset(void **state)
{
    (void)state;
    struct bp_uploads *t = table(1 << 20);
    struct bp_up_decision d;
    assert_int_equal(put(t, chunk(1, 1, 0, 4096, 8192, 4096, "x"), 0, &d), BP_UP_ANSWER);
    assert_int_equal(d.received, 0);
    assert_int_equal(d.slot, -1);
    assert_int_equal(t->open, 0);
    /* empty file: complete at once; a repeat is answered */
    assert_int_equal(put(t, chunk(2, 1, 0, 0, 0, 0, "empty"), 0, &d), BP_UP_WRITE);
    assert_true(bp_uploads_complete(t, 2, 1, 1));
    assert_int_equal(put(t, chunk(2, 1, 0, 0, 0, 0, "empty"), 0, &d), BP_UP_ANSWER);
    assert_int_equal(d.received, 0);
    bp_uploads_destroy(&t);
}

static void t_hostile_sizes_and_names(void **state)
{
    (void)state;
    struct bp_uploads *t = table(1000);
    struct bp_up_decision d;
    assert_int_equal(put(t, chunk(1, 1, 0, 0, UINT64_MAX, 10, "big"), 0, &d), BP_UP_REFUSE);
    assert_int_equal(d.code, BP_FE_SIZE);
    assert_int_equal(put(t, chunk(1, 1, 0, 0, 1001, 10, "big"), 0, &d), BP_UP_REFUSE);
    assert_int_equal(d.code, BP_FE_SIZE);
    /* a chunk past the size (the codec refuses it too) */
    assert_int_equal(put(t, chunk(1, 1, 0, 990, 1000, 11, "x"), 0, &d), BP_UP_REFUSE);
    assert_int_equal(put(t, chunk(1, 1, 0, UINT64_MAX, 1000, 1, "x"), 0, &d), BP_UP_REFUSE);
    assert_int_equal(t->open, 0);
    /* idx 255 is the 256th file */
    assert_int_equal(put(t, chunk(1, 1, 255, 0, 10, 10, "n"), 0, &d), BP_UP_REFUSE);
    assert_int_equal(d.code, BP_FE_COUNT);
    assert_int_equal(put(t, chunk(1, 1, 254, 0, 10, 1, "n"), 0, &d), BP_UP_WRITE);
    /* the same upload with another name or size, another idx with its name */
    assert_int_equal(put(t, chunk(1, 1, 254, 1, 10, 1, "m"), 0, &d), BP_UP_REFUSE);
    assert_int_equal(d.code, BP_FE_NAME);
    assert_int_equal(put(t, chunk(1, 1, 254, 1, 11, 1, "n"), 0, &d), BP_UP_REFUSE);
    assert_int_equal(d.code, BP_FE_SIZE);
    assert_int_equal(put(t, chunk(1, 1, 3, 0, 10, 1, "n"), 0, &d), BP_UP_REFUSE);
    assert_int_equal(d.code, BP_FE_NAME);
    /* (another attempt may use it) */
    assert_int_equal(put(t, chunk(1, 2, 3, 0, 10, 1, "n"), 0, &d), BP_UP_WRITE);
    bp_uploads_destroy(&t);
}

/* Many ids: the table fills, then says BUSY; a slot given up is reused. */
static void t_busy_and_stale(void **state)
{
    (void)state;
    struct bp_uploads *t = table(1 << 20);
    struct bp_up_decision d;
    for (int i = 0; i < BP_MAX_UPLOADS; i++)
        assert_int_equal(put(t, chunk((uint64_t)i, 1, 0, 0, 100, 10, "f"), i < 10 ? 0 : 2000, &d),
                         BP_UP_WRITE);
    assert_int_equal(put(t, chunk(9999, 1, 0, 0, 100, 10, "f"), 2000, &d), BP_UP_REFUSE);
    assert_int_equal(d.code, BP_FE_BUSY);
    /* the first ten went silent at 0: stale at 3000, the others not */
    int n = 0;
    for (int s; (s = bp_uploads_next_drop(t, BP_UD_STALE, 0, 0, 3000)) >= 0; n++) {
        assert_true(t->u[s].id < 10);
        bp_uploads_release(t, s);
    }
    assert_int_equal(n, 10);
    assert_int_equal(put(t, chunk(9999, 1, 0, 0, 100, 10, "f"), 3000, &d), BP_UP_WRITE);
    /* a chunk of one file keeps the attempt's other files fresh */
    assert_int_equal(put(t, chunk(9999, 1, 1, 0, 100, 10, "g"), 3000, &d), BP_UP_WRITE);
    assert_int_equal(put(t, chunk(9999, 1, 1, 10, 100, 10, "g"), 5999, &d), BP_UP_WRITE);
    int s = bp_uploads_find(t, 9999, 1, 0);
    assert_true(s >= 0);
    assert_int_equal(t->u[s].last, 5999);
    while ((s = bp_uploads_next_drop(t, BP_UD_ALL, 0, 0, 0)) >= 0)
        bp_uploads_release(t, s);
    assert_int_equal(t->open, 0);
    bp_uploads_destroy(&t);
}

/* Complete uploads wait for their result without counting as open:
 * workers holding finished files while they upload the next ones cannot
 * fill the table; BP_UPLOAD_SLOTS bounds them all. */
static void t_complete_not_open(void **state)
{
    (void)state;
    struct bp_uploads *t = table(1 << 20);
    struct bp_up_decision d;
    for (int i = 0; i < BP_UPLOAD_SLOTS; i++) {
        assert_int_equal(
            put(t, chunk((uint64_t)i / 200, 1, (uint8_t)(i % 200), 0, 1, 1, "f"), 0, &d),
            i % 200 ? BP_UP_REFUSE : BP_UP_WRITE);
        if (i % 200) /* (one name per attempt: the others are refused) */
            assert_int_equal(d.code, BP_FE_NAME);
    }
    while (t->held)
        bp_uploads_release(t, bp_uploads_next_drop(t, BP_UD_ALL, 0, 0, 0));
    char name[8];
    for (int i = 0; i < BP_UPLOAD_SLOTS; i++) {
        snprintf(name, sizeof name, "%d", i % 200);
        struct bp_put u = chunk((uint64_t)i / 200, 1, (uint8_t)(i % 200), 0, 1, 1, name);
        assert_int_equal(put(t, u, 0, &d), BP_UP_WRITE);
    }
    assert_int_equal(t->open, 0);
    assert_int_equal(t->held, BP_UPLOAD_SLOTS);
    assert_int_equal(put(t, chunk(9999, 1, 0, 0, 1, 1, "x"), 0, &d), BP_UP_REFUSE);
    assert_int_equal(d.code, BP_FE_BUSY);
    assert_true(bp_uploads_complete(t, 0, 1, 200));
    bp_uploads_destroy(&t);
}

/* One key from two peers: the latest sender gets the answers; the
 * offset rule holds whoever sends. */
static void t_two_peers(void **state)
{
    (void)state;
    struct bp_uploads *t = table(1 << 20);
    struct bp_up_decision d;
    assert_int_equal(put(t, chunk(7, 1, 0, 0, 20, 10, "f"), 0, &d), BP_UP_WRITE);
    struct bp_put u = chunk(7, 1, 0, 0, 20, 10, "f");
    bp_uploads_put(t, &u, RID_B, sizeof RID_B, 1, &d);
    assert_int_equal(d.verdict, BP_UP_ANSWER);
    assert_int_equal(d.received, 10);
    assert_memory_equal(t->u[d.slot].rid, RID_B, sizeof RID_B);
    u.offset = 10;
    bp_uploads_put(t, &u, RID_B, sizeof RID_B, 1, &d);
    assert_int_equal(d.verdict, BP_UP_WRITE);
    bp_uploads_wrote(t, d.slot, 10);
    assert_true(bp_uploads_complete(t, 7, 1, 1));
    bp_uploads_destroy(&t);
}

/* A winner's attempt: the other attempts of its id go, its own stays. */
static void t_drop_rules(void **state)
{
    (void)state;
    struct bp_uploads *t = table(1 << 20);
    struct bp_up_decision d;
    for (uint16_t a = 1; a <= 3; a++)
        for (uint8_t i = 0; i < 2; i++)
            assert_int_equal(put(t, chunk(4, a, i, 0, 1, 1, i ? "b" : "a"), 0, &d), BP_UP_WRITE);
    assert_int_equal(put(t, chunk(5, 1, 0, 0, 1, 1, "a"), 0, &d), BP_UP_WRITE);
    for (int s; (s = bp_uploads_next_drop(t, BP_UD_OTHERS, 4, 2, 0)) >= 0;) {
        assert_true(t->u[s].id == 4 && t->u[s].attempt != 2);
        bp_uploads_release(t, s);
    }
    assert_int_equal(t->held, 3);
    assert_true(bp_uploads_complete(t, 4, 2, 2));
    for (int s; (s = bp_uploads_next_drop(t, BP_UD_ATTEMPT, 4, 2, 0)) >= 0;)
        bp_uploads_release(t, s);
    assert_int_equal(t->held, 1);
    assert_int_equal(bp_uploads_next_drop(t, BP_UD_ID, 4, 0, 0), -1);
    assert_true(bp_uploads_next_drop(t, BP_UD_ID, 5, 0, 0) >= 0);
    bp_uploads_release(t, -1);
    bp_uploads_release(t, BP_UPLOAD_SLOTS);
    bp_uploads_destroy(&t);
}

/* The codec refuses '..', absolute and '.bp-' names in a PUT before the
 * table sees them. */
static void t_codec_refuses_names(void **state)
{
    (void)state;
    const char *bad[] = {"../x", "/etc/passwd", "a/../b", ".bp-tmp/x", "a//b", ".", "a/./b"};
    struct bp_pack p;
    bp_pack_init(&p);
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        struct bp_put u = chunk(1, 1, 0, 0, 1, 1, bad[i]);
        bp_pack_begin(&p, BP_MSG_PUT, 7);
        uint8_t *dst = bp_pack_put_reserve(&p, &u);
        if (dst)
            dst[0] = 'z';
        assert_int_equal(bp_pack_finish(&p), BP_OK);
        struct bp_msg m;
        assert_int_equal(bp_msg_decode(&m, p.p, p.len, 0), BP_EPROTO);
    }
    struct bp_put u = chunk(1, 1, 0, 0, 1, 1, "ok name/with \"quotes\"\n");
    bp_pack_begin(&p, BP_MSG_PUT, 7);
    uint8_t *dst = bp_pack_put_reserve(&p, &u);
    assert_non_null(dst);
    dst[0] = 'z';
    assert_int_equal(bp_pack_finish(&p), BP_OK);
    struct bp_msg m;
    assert_int_equal(bp_msg_decode(&m, p.p, p.len, 0), BP_OK);
    bp_pack_free(&p);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(t_in_order_and_resume),
        cmocka_unit_test(t_unknown_offset),
        cmocka_unit_test(t_hostile_sizes_and_names),
        cmocka_unit_test(t_busy_and_stale),
        cmocka_unit_test(t_complete_not_open),
        cmocka_unit_test(t_two_peers),
        cmocka_unit_test(t_drop_rules),
        cmocka_unit_test(t_codec_refuses_names),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
