/* Unit tests for the wire header (bp_frame.c). */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <string.h>

#include "bp_frame.h"

static void fill_hdr(struct bp_hdr *h, size_t wid_len)
{
    memset(h, 0, sizeof *h);
    h->type = BP_MSG_RESULT;
    h->status = BP_ST_SIGNALED;
    h->flags = 0;
    h->batch = 0x0102030405060708ull;
    h->task = 0x1112131415161718ull;
    h->code = -2;
    h->aux = 0xA1B2C3D4u;
    char id[BP_ID_MAX + 1];
    for (size_t i = 0; i < wid_len; i++)
        id[i] = (char)('a' + (int)(i % 26));
    id[wid_len] = '\0';
    bp_hdr_set_wid(h, id);
}

static void roundtrip(size_t wid_len)
{
    struct bp_hdr h, d;
    uint8_t buf[BP_HDR_MAX];
    size_t len = 0;
    fill_hdr(&h, wid_len);
    assert_int_equal(h.wid_len, wid_len);
    assert_int_equal(bp_hdr_encode(&h, buf, sizeof buf, &len), BP_OK);
    assert_int_equal(len, BP_HDR_FIXED + wid_len);
    memset(&d, 0x5a, sizeof d);
    assert_int_equal(bp_hdr_decode(&d, buf, len), BP_OK);
    assert_int_equal(d.type, h.type);
    assert_int_equal(d.status, h.status);
    assert_int_equal(d.flags, h.flags);
    assert_int_equal(d.wid_len, wid_len);
    assert_true(d.batch == h.batch);
    assert_true(d.task == h.task);
    assert_int_equal(d.code, -2);
    assert_true(d.aux == 0xA1B2C3D4u);
    assert_int_equal(strlen(d.wid), wid_len);
    assert_string_equal(d.wid, h.wid);
}

static void t_roundtrip_wid0(void **state)
{
    (void)state;
    roundtrip(0);
}

static void t_roundtrip_wid64(void **state)
{
    (void)state;
    roundtrip(64);
}

static void t_roundtrip_all_types_statuses(void **state)
{
    (void)state;
    for (int type = 1; type <= BP_MSG_TYPE_MAX; type++)
        for (int st = 0; st <= BP_ST_MAX; st++) {
            struct bp_hdr h, d;
            uint8_t buf[BP_HDR_MAX];
            size_t len;
            fill_hdr(&h, 5);
            h.type = (uint8_t)type;
            h.status = (uint8_t)st;
            h.code = INT32_MIN;
            h.aux = UINT32_MAX;
            h.batch = UINT64_MAX;
            h.task = 0;
            assert_int_equal(bp_hdr_encode(&h, buf, sizeof buf, &len), BP_OK);
            assert_int_equal(bp_hdr_decode(&d, buf, len), BP_OK);
            assert_int_equal(d.type, type);
            assert_int_equal(d.status, st);
            assert_int_equal(d.code, INT32_MIN);
            assert_true(d.aux == UINT32_MAX);
            assert_true(d.batch == UINT64_MAX);
            assert_true(d.task == 0);
            assert_string_equal(d.wid, "abcde");
        }
}

static void t_layout(void **state)
{
    (void)state;
    struct bp_hdr h;
    uint8_t buf[BP_HDR_MAX];
    size_t len;
    fill_hdr(&h, 3);
    h.type = BP_MSG_TASK;
    h.status = BP_ST_OK;
    h.code = 0x01020304;
    memset(buf, 0xee, sizeof buf);
    assert_int_equal(bp_hdr_encode(&h, buf, sizeof buf, &len), BP_OK);
    assert_int_equal(len, 35);
    static const uint8_t want[35] = {
        'b',  'p',  1,    BP_MSG_TASK, BP_ST_OK, 0,    3,    0,    /* 0..7 */
        0x01, 0x02, 0x03, 0x04,        0x05,     0x06, 0x07, 0x08, /* batch */
        0x11, 0x12, 0x13, 0x14,        0x15,     0x16, 0x17, 0x18, /* task */
        0x01, 0x02, 0x03, 0x04,                                    /* code */
        0xA1, 0xB2, 0xC3, 0xD4,                                    /* aux */
        'a',  'b',  'c',
    };
    assert_memory_equal(buf, want, sizeof want);
    assert_int_equal(buf[35], 0xee); /* nothing written past len */

    /* Negative code: two's complement, big-endian. */
    h.code = -2;
    assert_int_equal(bp_hdr_encode(&h, buf, sizeof buf, &len), BP_OK);
    static const uint8_t neg[4] = {0xff, 0xff, 0xff, 0xfe};
    assert_memory_equal(buf + 24, neg, 4);
}

static size_t encode_ok(uint8_t *buf, size_t wid_len)
{
    struct bp_hdr h;
    size_t len = 0;
    fill_hdr(&h, wid_len);
    assert_int_equal(bp_hdr_encode(&h, buf, BP_HDR_MAX, &len), BP_OK);
    return len;
}

static void t_reject_bad_magic(void **state)
{
    (void)state;
    uint8_t buf[BP_HDR_MAX];
    struct bp_hdr d;
    size_t len = encode_ok(buf, 4);
    buf[0] = 'B';
    assert_int_equal(bp_hdr_decode(&d, buf, len), BP_EPROTO);
    buf[0] = 'b';
    buf[1] = 'q';
    assert_int_equal(bp_hdr_decode(&d, buf, len), BP_EPROTO);
    buf[1] = 'p';
    assert_int_equal(bp_hdr_decode(&d, buf, len), BP_OK);
}

static void t_reject_short(void **state)
{
    (void)state;
    uint8_t buf[BP_HDR_MAX];
    struct bp_hdr d;
    size_t len = encode_ok(buf, 0);
    assert_int_equal(len, BP_HDR_FIXED);
    for (size_t n = 0; n < BP_HDR_FIXED; n++)
        assert_int_equal(bp_hdr_decode(&d, buf, n), BP_EPROTO);
    assert_int_equal(bp_hdr_decode(&d, buf, BP_HDR_FIXED), BP_OK);
}

static void t_reject_wrong_total(void **state)
{
    (void)state;
    uint8_t buf[BP_HDR_MAX + 8];
    struct bp_hdr d;
    memset(buf, 0, sizeof buf);
    size_t len = encode_ok(buf, 10);
    assert_int_equal(bp_hdr_decode(&d, buf, len - 1), BP_EPROTO);
    assert_int_equal(bp_hdr_decode(&d, buf, len + 1), BP_EPROTO);
    assert_int_equal(bp_hdr_decode(&d, buf, BP_HDR_FIXED), BP_EPROTO);
    /* wid_len field says 9 while 10 bytes follow */
    buf[6] = 9;
    assert_int_equal(bp_hdr_decode(&d, buf, len), BP_EPROTO);
    buf[6] = 10;
    assert_int_equal(bp_hdr_decode(&d, buf, len), BP_OK);
}

static void t_reject_wid_too_long(void **state)
{
    (void)state;
    uint8_t buf[BP_HDR_FIXED + 80];
    struct bp_hdr d;
    memset(buf, 'x', sizeof buf);
    encode_ok(buf, 0);
    buf[6] = BP_ID_MAX + 1;
    assert_int_equal(bp_hdr_decode(&d, buf, BP_HDR_FIXED + BP_ID_MAX + 1), BP_EPROTO);
    buf[6] = 255;
    assert_int_equal(bp_hdr_decode(&d, buf, sizeof buf), BP_EPROTO);

    /* The encoder refuses it too. */
    struct bp_hdr h;
    size_t len;
    uint8_t big[512];
    fill_hdr(&h, 0);
    h.wid_len = BP_ID_MAX + 1;
    assert_int_equal(bp_hdr_encode(&h, big, sizeof big, &len), BP_EPROTO);
}

static void t_reject_bad_type_status(void **state)
{
    (void)state;
    uint8_t buf[BP_HDR_MAX];
    struct bp_hdr d;
    size_t len = encode_ok(buf, 2);
    buf[3] = 0;
    assert_int_equal(bp_hdr_decode(&d, buf, len), BP_EPROTO);
    buf[3] = BP_MSG_TYPE_MAX + 1;
    assert_int_equal(bp_hdr_decode(&d, buf, len), BP_EPROTO);
    buf[3] = BP_MSG_TASK;
    buf[4] = BP_ST_MAX + 1;
    assert_int_equal(bp_hdr_decode(&d, buf, len), BP_EPROTO);
    buf[4] = 255;
    assert_int_equal(bp_hdr_decode(&d, buf, len), BP_EPROTO);
    buf[4] = BP_ST_OK;
    assert_int_equal(bp_hdr_decode(&d, buf, len), BP_OK);

    /* Encoder side. */
    struct bp_hdr h;
    fill_hdr(&h, 0);
    h.type = 0;
    assert_int_equal(bp_hdr_encode(&h, buf, sizeof buf, &len), BP_EPROTO);
    h.type = BP_MSG_TYPE_MAX + 1;
    assert_int_equal(bp_hdr_encode(&h, buf, sizeof buf, &len), BP_EPROTO);
    h.type = BP_MSG_TASK;
    h.status = BP_ST_MAX + 1;
    assert_int_equal(bp_hdr_encode(&h, buf, sizeof buf, &len), BP_EPROTO);
}

static void t_other_version(void **state)
{
    (void)state;
    uint8_t buf[BP_HDR_MAX];
    struct bp_hdr d;
    size_t len = encode_ok(buf, 4);
    buf[2] = 2;
    assert_int_equal(bp_hdr_decode(&d, buf, len), BP_EVERSION);
    buf[2] = 0;
    assert_int_equal(bp_hdr_decode(&d, buf, len), BP_EVERSION);
    /* Shorter than a v1 header: still a version error, not a length one. */
    buf[2] = 2;
    assert_int_equal(bp_hdr_decode(&d, buf, 3), BP_EVERSION);
    assert_int_equal(bp_hdr_decode(&d, buf, 10), BP_EVERSION);
    /* ...and longer. */
    uint8_t longer[200];
    memset(longer, 0, sizeof longer);
    memcpy(longer, "bp\x07", 3);
    assert_int_equal(bp_hdr_decode(&d, longer, sizeof longer), BP_EVERSION);
    /* Too short to carry a version at all. */
    assert_int_equal(bp_hdr_decode(&d, buf, 2), BP_EPROTO);
}

static void t_encode_too_small(void **state)
{
    (void)state;
    struct bp_hdr h;
    uint8_t buf[BP_HDR_MAX];
    size_t len = 12345;
    fill_hdr(&h, 8);
    assert_int_equal(bp_hdr_encode(&h, buf, BP_HDR_FIXED + 7, &len), BP_ETOOBIG);
    assert_int_equal(len, 12345);
    assert_int_equal(bp_hdr_encode(&h, buf, 0, &len), BP_ETOOBIG);
    assert_int_equal(bp_hdr_encode(&h, buf, BP_HDR_FIXED + 8, &len), BP_OK);
    assert_int_equal(len, BP_HDR_FIXED + 8);
}

static void t_set_wid(void **state)
{
    (void)state;
    struct bp_hdr h;
    memset(&h, 0, sizeof h);
    bp_hdr_set_wid(&h, "host:42");
    assert_int_equal(h.wid_len, 7);
    assert_string_equal(h.wid, "host:42");
    bp_hdr_set_wid(&h, NULL);
    assert_int_equal(h.wid_len, 0);
    assert_string_equal(h.wid, "");
    char longid[100];
    memset(longid, 'z', sizeof longid - 1);
    longid[sizeof longid - 1] = '\0';
    bp_hdr_set_wid(&h, longid);
    assert_int_equal(h.wid_len, BP_ID_MAX);
    assert_int_equal(strlen(h.wid), BP_ID_MAX);
}

static void t_status_name(void **state)
{
    (void)state;
    assert_string_equal(bp_status_name(BP_ST_OK), "ok");
    assert_string_equal(bp_status_name(BP_ST_FAILED), "failed");
    assert_string_equal(bp_status_name(BP_ST_TIMEOUT), "timeout");
    assert_string_equal(bp_status_name(BP_ST_TOOBIG), "too-big");
    assert_string_equal(bp_status_name(BP_ST_EXECERR), "exec-error");
    assert_string_equal(bp_status_name(BP_ST_SIGNALED), "signaled");
    assert_string_equal(bp_status_name(BP_ST_INTERRUPTED), "interrupted");
    assert_string_equal(bp_status_name(BP_ST_MAX + 1), "unknown");
    assert_string_equal(bp_status_name(-1), "unknown");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(t_roundtrip_wid0),
        cmocka_unit_test(t_roundtrip_wid64),
        cmocka_unit_test(t_roundtrip_all_types_statuses),
        cmocka_unit_test(t_layout),
        cmocka_unit_test(t_reject_bad_magic),
        cmocka_unit_test(t_reject_short),
        cmocka_unit_test(t_reject_wrong_total),
        cmocka_unit_test(t_reject_wid_too_long),
        cmocka_unit_test(t_reject_bad_type_status),
        cmocka_unit_test(t_other_version),
        cmocka_unit_test(t_encode_too_small),
        cmocka_unit_test(t_set_wid),
        cmocka_unit_test(t_status_name),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
