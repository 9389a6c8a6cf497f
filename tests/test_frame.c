/* Unit tests for the v2 wire codec (bp_frame.c). */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include "bp_frame.h"
#include "bp_path.h"

/* ---- helpers ---------------------------------------------------------- */

static void put32be(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)(v >> 24);
    p[1] = (uint8_t)(v >> 16);
    p[2] = (uint8_t)(v >> 8);
    p[3] = (uint8_t)v;
}

static uint32_t get32be(const uint8_t *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static uint64_t get64be(const uint8_t *p)
{
    return (uint64_t)get32be(p) << 32 | get32be(p + 4);
}

/* A private copy of exactly len bytes, so that ASan sees any read past
 * the end of the message. */
static uint8_t *dup_exact(const void *src, size_t len)
{
    uint8_t *b = malloc(len ? len : 1);
    assert_non_null(b);
    if (len)
        memcpy(b, src, len);
    return b;
}

/* Decodes len bytes from an exact-size heap copy. */
static int decode_copy(const void *src, size_t len, uint32_t max_rec)
{
    uint8_t *b = dup_exact(src, len);
    struct bp_msg m;
    int rc = bp_msg_decode(&m, b, len, max_rec);
    free(b);
    return rc;
}

static void finish(struct bp_pack *p)
{
    assert_int_equal(bp_pack_finish(p), BP_OK);
    assert_int_equal(p->err, 0);
}

static void make_hello(struct bp_pack *p, uint16_t jobs, uint32_t credit, const char *id,
                       size_t idlen)
{
    bp_pack_begin(p, BP_MSG_HELLO, 0);
    bp_pack_u16(p, jobs);
    bp_pack_u16(p, 0);
    bp_pack_u32(p, credit);
    bp_pack_u8(p, (uint8_t)idlen);
    bp_pack_bytes(p, id, idlen);
    finish(p);
}

static void make_ids(struct bp_pack *p, int type, uint32_t fixed, const uint64_t *ids, size_t n)
{
    bp_pack_begin(p, type, 77);
    bp_pack_u32(p, fixed);
    for (size_t i = 0; i < n; i++)
        bp_pack_id(p, ids[i]);
    finish(p);
}

static const uint8_t payload_a[] = {0, 1, 2, 0xff, 'x'};
static const char payload_b[] = "hello world";

static void make_tasks(struct bp_pack *p)
{
    bp_pack_begin(p, BP_MSG_TASKS, 0x1122334455667788ull);
    bp_pack_task(p, 0, 1, 0, NULL, 0);
    bp_pack_task(p, 7, 2, BP_TF_LAST_TRY, payload_a, sizeof payload_a);
    bp_pack_task(p, UINT64_MAX, UINT16_MAX, 0xfe, payload_b, (uint32_t)strlen(payload_b));
    finish(p);
}

static void make_results(struct bp_pack *p, const char *wid, size_t wid_len)
{
    bp_pack_begin(p, BP_MSG_RESULTS, 5);
    bp_pack_u8(p, (uint8_t)wid_len);
    bp_pack_bytes(p, wid, wid_len);
    for (int st = 0; st <= BP_ST_MAX; st++) {
        struct bp_result_rec r = {.id = (uint64_t)st * 1000 + 3,
                                  .attempt = (uint16_t)(st + 1),
                                  .status = (uint8_t)st,
                                  .flags = (uint8_t)(st & 1 ? BP_RF_FINAL : 0),
                                  .code = -st,
                                  .elapsed_ms = (uint32_t)st * 17u,
                                  .data = (const uint8_t *)payload_b,
                                  .len = (uint32_t)st};
        bp_pack_result(p, &r);
    }
    finish(p);
}

static void make_acks(struct bp_pack *p)
{
    bp_pack_begin(p, BP_MSG_ACK, 9);
    bp_pack_ack(p, 1, 1, BP_ACK_OK);
    bp_pack_ack(p, 2, 3, BP_ACK_FAILED);
    bp_pack_ack(p, UINT64_MAX, UINT16_MAX, BP_ACK_RETRY);
    finish(p);
}

static void make_fixed(struct bp_pack *p, int type, size_t body)
{
    bp_pack_begin(p, type, 3);
    for (size_t i = 0; i < body; i++)
        bp_pack_u8(p, (uint8_t)(0x10 + i));
    finish(p);
}

/* ---- header and round trips -------------------------------------------- */

static void t_header_layout(void **state)
{
    (void)state;
    struct bp_pack p;
    bp_pack_init(&p);
    bp_pack_begin(&p, BP_MSG_HEARTBEAT, 0x0102030405060708ull);
    bp_pack_u64(&p, 0xA1A2A3A4A5A6A7A8ull);
    bp_pack_u64(&p, 42);
    finish(&p);
    assert_int_equal(p.len, BP_MSG_HDR + BP_HB_BODY);
    static const uint8_t hdr[16] = {'b', 'p', BP_PROTO_VERSION, 4, 0, 0, 0, 0, 1, 2, 3, 4, 5, 6,
                                    7,   8};
    assert_memory_equal(p.p, hdr, sizeof hdr);
    /* big-endian body */
    assert_int_equal(p.p[16], 0xA1);
    assert_int_equal(p.p[23], 0xA8);
    assert_int_equal(p.p[31], 42);

    struct bp_msg m;
    memset(&m, 0x5a, sizeof m);
    assert_int_equal(bp_msg_decode(&m, p.p, p.len, 0), BP_OK);
    assert_int_equal(m.type, BP_MSG_HEARTBEAT);
    assert_int_equal(m.n, 0);
    assert_true(m.batch == 0x0102030405060708ull);
    assert_ptr_equal(m.body, p.p + BP_MSG_HDR);
    assert_int_equal(m.body_len, BP_HB_BODY);
    assert_true(bp_msg_u64(&m, 0) == 0xA1A2A3A4A5A6A7A8ull);
    assert_true(bp_msg_u64(&m, 8) == 42);
    assert_true(bp_msg_u64(&m, 9) == 0); /* past the body: 0, no overread */

    /* The record count goes into the header at finish. */
    bp_pack_begin(&p, BP_MSG_ACK, UINT64_MAX);
    for (int i = 0; i < 300; i++)
        bp_pack_ack(&p, (uint64_t)i, 1, BP_ACK_OK);
    finish(&p);
    assert_int_equal(get32be(p.p + 4), 300);
    assert_true(get64be(p.p + 8) == UINT64_MAX);
    assert_int_equal(p.len, BP_MSG_HDR + 300 * BP_ACK_REC);
    assert_int_equal(decode_copy(p.p, p.len, 0), BP_OK);
    bp_pack_free(&p);
}

static void t_pack_reuse(void **state)
{
    (void)state;
    struct bp_pack p;
    bp_pack_init(&p);
    /* finish without begin: nothing to finish */
    assert_int_equal(bp_pack_finish(&p), BP_ENOMEM);
    make_tasks(&p);
    size_t cap = p.cap;
    /* begin drops what was there: an empty BEGIN */
    bp_pack_begin(&p, BP_MSG_BEGIN, 12);
    finish(&p);
    assert_int_equal(p.len, BP_MSG_HDR);
    assert_int_equal(p.n, 0);
    assert_int_equal(get32be(p.p + 4), 0);
    assert_true(p.cap >= cap); /* the buffer is kept */
    struct bp_msg m;
    assert_int_equal(bp_msg_decode(&m, p.p, p.len, 0), BP_OK);
    assert_int_equal(m.type, BP_MSG_BEGIN);
    assert_true(m.batch == 12);
    assert_int_equal(m.body_len, 0);
    bp_pack_free(&p);
    assert_null(p.p);
    bp_pack_free(&p); /* twice is harmless */
}

static void t_roundtrip_hello(void **state)
{
    (void)state;
    struct bp_pack p;
    bp_pack_init(&p);
    char id[BP_ID_MAX];
    for (int i = 0; i < BP_ID_MAX; i++)
        id[i] = (char)(i * 7 + 1);
    const size_t lens[] = {0, 1, 5, BP_ID_MAX};
    for (size_t k = 0; k < sizeof lens / sizeof lens[0]; k++) {
        make_hello(&p, (uint16_t)(k + 0xfff0), 0xdeadbeefu - (uint32_t)k, id, lens[k]);
        assert_int_equal(p.len, BP_MSG_HDR + BP_HELLO_FIXED + 1 + lens[k]);
        uint8_t *b = dup_exact(p.p, p.len);
        struct bp_msg m;
        assert_int_equal(bp_msg_decode(&m, b, p.len, 0), BP_OK);
        assert_int_equal(m.type, BP_MSG_HELLO);
        assert_int_equal(m.n, 0);
        assert_true(m.batch == 0);
        struct bp_hello h;
        bp_msg_hello(&m, &h);
        assert_int_equal(h.jobs, k + 0xfff0);
        assert_true(h.credit == 0xdeadbeefu - (uint32_t)k);
        assert_int_equal(h.id_len, lens[k]);
        assert_memory_equal(h.id, id, lens[k]);
        free(b);
    }
    bp_pack_free(&p);
}

static void t_roundtrip_credit_bye(void **state)
{
    (void)state;
    struct bp_pack p;
    bp_pack_init(&p);
    const uint64_t ids[] = {0, 1, 0x8000000000000000ull, UINT64_MAX, 12345};
    const int types[] = {BP_MSG_CREDIT, BP_MSG_BYE};
    for (int t = 0; t < 2; t++) {
        for (size_t n = 0; n <= 5; n++) {
            make_ids(&p, types[t], 0xCAFEF00Du + (uint32_t)n, ids, n);
            assert_int_equal(p.len, BP_MSG_HDR + 4 + 8 * n);
            uint8_t *b = dup_exact(p.p, p.len);
            struct bp_msg m;
            assert_int_equal(bp_msg_decode(&m, b, p.len, 0), BP_OK);
            assert_int_equal(m.type, types[t]);
            assert_int_equal(m.n, n);
            assert_true(m.batch == 77);
            assert_true(bp_msg_u32(&m) == 0xCAFEF00Du + (uint32_t)n);
            size_t off = 0, got = 0;
            uint64_t id;
            while (bp_msg_next_id(&m, &off, &id)) {
                assert_true(got < n);
                assert_true(id == ids[got]);
                got++;
            }
            assert_int_equal(got, n);
            free(b);
        }
    }
    bp_pack_free(&p);
}

static void t_roundtrip_tasks(void **state)
{
    (void)state;
    struct bp_pack p;
    bp_pack_init(&p);
    make_tasks(&p);
    uint8_t *b = dup_exact(p.p, p.len);
    struct bp_msg m;
    assert_int_equal(bp_msg_decode(&m, b, p.len, 0), BP_OK);
    assert_int_equal(m.type, BP_MSG_TASKS);
    assert_int_equal(m.n, 3);
    assert_true(m.batch == 0x1122334455667788ull);
    size_t off = 0;
    struct bp_task_rec t;
    assert_int_equal(bp_msg_next_task(&m, &off, &t), 1);
    assert_true(t.id == 0);
    assert_int_equal(t.attempt, 1);
    assert_int_equal(t.flags, 0);
    assert_int_equal(t.len, 0);
    assert_int_equal(bp_msg_next_task(&m, &off, &t), 1);
    assert_true(t.id == 7);
    assert_int_equal(t.attempt, 2);
    assert_int_equal(t.flags, BP_TF_LAST_TRY);
    assert_int_equal(t.len, sizeof payload_a);
    assert_memory_equal(t.data, payload_a, sizeof payload_a);
    assert_int_equal(bp_msg_next_task(&m, &off, &t), 1);
    assert_true(t.id == UINT64_MAX);
    assert_int_equal(t.attempt, UINT16_MAX);
    assert_int_equal(t.flags, 0xfe);
    assert_int_equal(t.len, strlen(payload_b));
    assert_memory_equal(t.data, payload_b, strlen(payload_b));
    assert_ptr_equal(t.data + t.len, b + p.len);
    assert_int_equal(bp_msg_next_task(&m, &off, &t), 0);
    assert_int_equal(bp_msg_next_task(&m, &off, &t), 0);
    free(b);

    /* max_rec: the largest payload exactly at the bound is fine */
    assert_int_equal(decode_copy(p.p, p.len, (uint32_t)strlen(payload_b)), BP_OK);
    assert_int_equal(decode_copy(p.p, p.len, (uint32_t)strlen(payload_b) - 1), BP_EPROTO);
    assert_int_equal(decode_copy(p.p, p.len, 1), BP_EPROTO);

    /* an empty TASKS message is well-formed */
    bp_pack_begin(&p, BP_MSG_TASKS, 1);
    finish(&p);
    assert_int_equal(bp_msg_decode(&m, p.p, p.len, 0), BP_OK);
    off = 0;
    assert_int_equal(bp_msg_next_task(&m, &off, &t), 0);
    bp_pack_free(&p);
}

static void check_results(const uint8_t *b, size_t len, const char *wid, size_t wid_len)
{
    struct bp_msg m;
    assert_int_equal(bp_msg_decode(&m, b, len, 0), BP_OK);
    assert_int_equal(m.type, BP_MSG_RESULTS);
    assert_int_equal(m.n, BP_ST_MAX + 1);
    assert_true(m.batch == 5);
    uint8_t wl = 0xee;
    const char *w = bp_msg_wid(&m, &wl);
    assert_int_equal(wl, wid_len);
    assert_memory_equal(w, wid, wid_len);
    size_t off = 0;
    struct bp_result_rec r;
    int st = 0;
    while (bp_msg_next_result(&m, &off, &r)) {
        assert_true(st <= BP_ST_MAX);
        assert_true(r.id == (uint64_t)st * 1000 + 3);
        assert_int_equal(r.attempt, st + 1);
        assert_int_equal(r.status, st);
        assert_int_equal(r.flags, st & 1 ? BP_RF_FINAL : 0);
        assert_int_equal(r.code, -st);
        assert_int_equal(r.elapsed_ms, st * 17);
        assert_int_equal(r.len, st);
        assert_memory_equal(r.data, payload_b, (size_t)st);
        assert_true(r.data + r.len <= b + len);
        st++;
    }
    assert_int_equal(st, BP_ST_MAX + 1);
}

static void t_roundtrip_results(void **state)
{
    (void)state;
    struct bp_pack p;
    bp_pack_init(&p);
    char wid[BP_ID_MAX];
    memset(wid, 'w', sizeof wid);
    const size_t lens[] = {0, 10, BP_ID_MAX};
    for (size_t k = 0; k < 3; k++) {
        make_results(&p, wid, lens[k]);
        uint8_t *b = dup_exact(p.p, p.len);
        check_results(b, p.len, wid, lens[k]);
        free(b);
    }

    /* bp_pack_result_reserve: the caller fills the payload in place */
    bp_pack_begin(&p, BP_MSG_RESULTS, 1);
    bp_pack_u8(&p, 2);
    bp_pack_bytes(&p, "w9", 2);
    struct bp_result_rec r = {.id = 99,
                              .attempt = 2,
                              .status = BP_ST_FAILED,
                              .flags = BP_RF_FINAL,
                              .code = 127,
                              .elapsed_ms = 5,
                              .data = NULL,
                              .len = 4};
    uint8_t *d = bp_pack_result_reserve(&p, &r);
    assert_non_null(d);
    memcpy(d, "abcd", 4);
    finish(&p);
    struct bp_msg m;
    assert_int_equal(bp_msg_decode(&m, p.p, p.len, 4), BP_OK);
    assert_int_equal(bp_msg_decode(&m, p.p, p.len, 3), BP_EPROTO);
    assert_int_equal(bp_msg_decode(&m, p.p, p.len, 0), BP_OK);
    size_t off = 0;
    struct bp_result_rec x;
    assert_int_equal(bp_msg_next_result(&m, &off, &x), 1);
    assert_true(x.id == 99);
    assert_int_equal(x.code, 127);
    assert_int_equal(x.status, BP_ST_FAILED);
    assert_int_equal(x.flags, BP_RF_FINAL);
    assert_memory_equal(x.data, "abcd", 4);
    assert_int_equal(bp_msg_next_result(&m, &off, &x), 0);

    /* no records */
    bp_pack_begin(&p, BP_MSG_RESULTS, 1);
    bp_pack_u8(&p, 0);
    finish(&p);
    assert_int_equal(bp_msg_decode(&m, p.p, p.len, 0), BP_OK);
    off = 0;
    assert_int_equal(bp_msg_next_result(&m, &off, &x), 0);
    bp_pack_free(&p);
}

/* A result with a task-info block (--joblog): packed and read back, the
 * result itself unchanged; the limit on the result still holds, the block
 * comes on top; a block that does not fit its record is refused. */
static void t_results_info(void **state)
{
    (void)state;
    struct bp_pack p;
    bp_pack_init(&p);
    uint8_t task[100];
    memset(task, 't', sizeof task);
    bp_pack_begin(&p, BP_MSG_RESULTS, 1);
    bp_pack_u8(&p, 1);
    bp_pack_bytes(&p, "w", 1);
    struct bp_result_rec r = {.id = 5,
                              .attempt = 1,
                              .status = BP_ST_SIGNALED,
                              .flags = BP_RF_FINAL | BP_RF_INFO,
                              .code = 9,
                              .elapsed_ms = 1234,
                              .data = (const uint8_t *)"out",
                              .len = 3,
                              .task_len = 100,
                              .start_ms = 1700000000123ull,
                              .head = task,
                              .head_len = 200}; /* more than the block holds: cut to 40 */
    bp_pack_result(&p, &r);
    struct bp_result_rec plain = {
        .id = 6, .attempt = 1, .flags = BP_RF_FINAL, .data = (const uint8_t *)"abc", .len = 3};
    bp_pack_result(&p, &plain);
    finish(&p);
    struct bp_msg m;
    assert_int_equal(decode_copy(p.p, p.len, 3), BP_OK); /* the block is not counted */
    assert_int_equal(decode_copy(p.p, p.len, 2), BP_EPROTO);
    assert_int_equal(bp_msg_decode(&m, p.p, p.len, 0), BP_OK);
    size_t off = 0;
    struct bp_result_rec x;
    assert_int_equal(bp_msg_next_result(&m, &off, &x), 1);
    assert_true(x.id == 5 && (x.flags & BP_RF_INFO));
    assert_int_equal(x.len, 3);
    assert_memory_equal(x.data, "out", 3);
    assert_int_equal(x.task_len, 100);
    assert_true(x.start_ms == 1700000000123ull);
    assert_int_equal(x.head_len, BP_INFO_HEAD_MAX);
    assert_memory_equal(x.head, task, BP_INFO_HEAD_MAX);
    assert_int_equal(bp_msg_next_result(&m, &off, &x), 1);
    assert_true(x.id == 6 && !(x.flags & BP_RF_INFO) && x.head == NULL && x.task_len == 0);
    assert_memory_equal(x.data, "abc", 3);
    assert_int_equal(bp_msg_next_result(&m, &off, &x), 0);

    /* Damaged blocks: shorter than its fixed part, a head over 40 bytes,
     * a head longer than the record. */
    uint8_t *b = dup_exact(p.p, p.len);
    size_t rec = BP_MSG_HDR + 2;       /* the first record */
    size_t info = rec + BP_RESULT_REC; /* its block */
    uint32_t rl = (uint32_t)(BP_INFO_FIXED + BP_INFO_HEAD_MAX + 3);
    b[info + 12] = BP_INFO_HEAD_MAX + 1;
    assert_int_equal(decode_copy(b, p.len, 0), BP_EPROTO);
    b[info + 12] = BP_INFO_HEAD_MAX;
    assert_int_equal(decode_copy(b, p.len, 0), BP_OK);
    /* the record made shorter (the rest re-framed as garbage is refused too) */
    put32be(b + rec + 20, BP_INFO_FIXED - 1);
    assert_int_equal(decode_copy(b, p.len, 0), BP_EPROTO);
    put32be(b + rec + 20, rl);
    b[rec + 11] = BP_RF_FINAL; /* no block flag: the block reads as result bytes */
    assert_int_equal(decode_copy(b, p.len, 0), BP_OK);
    free(b);
    /* a record exactly as long as the block, with a head that overruns it */
    bp_pack_begin(&p, BP_MSG_RESULTS, 1);
    bp_pack_u8(&p, 0);
    struct bp_result_rec e = {.id = 1, .flags = BP_RF_INFO, .head = task, .head_len = 4};
    bp_pack_result(&p, &e);
    finish(&p);
    assert_int_equal(decode_copy(p.p, p.len, 0), BP_OK);
    b = dup_exact(p.p, p.len);
    b[BP_MSG_HDR + 1 + BP_RESULT_REC + 12] = 5;
    assert_int_equal(decode_copy(b, p.len, 0), BP_EPROTO);
    free(b);
    bp_pack_free(&p);
}

static void t_roundtrip_ack(void **state)
{
    (void)state;
    struct bp_pack p;
    bp_pack_init(&p);
    make_acks(&p);
    uint8_t *b = dup_exact(p.p, p.len);
    struct bp_msg m;
    assert_int_equal(bp_msg_decode(&m, b, p.len, 0), BP_OK);
    assert_int_equal(m.type, BP_MSG_ACK);
    assert_int_equal(m.n, 3);
    assert_true(m.batch == 9);
    size_t off = 0;
    struct bp_ack_rec a;
    assert_int_equal(bp_msg_next_ack(&m, &off, &a), 1);
    assert_true(a.id == 1);
    assert_int_equal(a.attempt, 1);
    assert_int_equal(a.kind, BP_ACK_OK);
    assert_int_equal(bp_msg_next_ack(&m, &off, &a), 1);
    assert_true(a.id == 2);
    assert_int_equal(a.attempt, 3);
    assert_int_equal(a.kind, BP_ACK_FAILED);
    assert_int_equal(bp_msg_next_ack(&m, &off, &a), 1);
    assert_true(a.id == UINT64_MAX);
    assert_int_equal(a.attempt, UINT16_MAX);
    assert_int_equal(a.kind, BP_ACK_RETRY);
    assert_int_equal(bp_msg_next_ack(&m, &off, &a), 0);
    free(b);
    bp_pack_free(&p);
}

/* CANCEL: n x {u64 id, u16 attempt}, checked whole like the rest. */
static void t_roundtrip_cancel(void **state)
{
    (void)state;
    struct bp_pack p;
    bp_pack_init(&p);
    bp_pack_begin(&p, BP_MSG_CANCEL, 7);
    bp_pack_cancel(&p, 5, 2);
    bp_pack_cancel(&p, UINT64_MAX, UINT16_MAX);
    assert_int_equal(bp_pack_finish(&p), BP_OK);
    assert_int_equal(p.len, BP_MSG_HDR + 2 * BP_CANCEL_REC);
    uint8_t *b = dup_exact(p.p, p.len);
    struct bp_msg m;
    assert_int_equal(bp_msg_decode(&m, b, p.len, 0), BP_OK);
    assert_int_equal(m.type, BP_MSG_CANCEL);
    size_t off = 0;
    struct bp_ack_rec a;
    assert_int_equal(bp_msg_next_cancel(&m, &off, &a), 1);
    assert_true(a.id == 5 && a.attempt == 2);
    assert_int_equal(bp_msg_next_cancel(&m, &off, &a), 1);
    assert_true(a.id == UINT64_MAX && a.attempt == UINT16_MAX);
    assert_int_equal(bp_msg_next_cancel(&m, &off, &a), 0);
    /* a short record, a count that does not match, an empty one */
    assert_int_equal(bp_msg_decode(&m, b, p.len - 1, 0), BP_EPROTO);
    b[7] = 3;
    assert_int_equal(bp_msg_decode(&m, b, p.len, 0), BP_EPROTO);
    b[7] = 0;
    assert_int_equal(bp_msg_decode(&m, b, BP_MSG_HDR, 0), BP_OK);
    free(b);
    bp_pack_free(&p);
}

static void t_roundtrip_fixed(void **state)
{
    (void)state;
    struct bp_pack p;
    bp_pack_init(&p);
    struct bp_msg m;

    bp_pack_begin(&p, BP_MSG_END, 4);
    bp_pack_u32(&p, BP_END_STOPPING);
    finish(&p);
    assert_int_equal(decode_copy(p.p, p.len, 0), BP_OK);
    assert_int_equal(bp_msg_decode(&m, p.p, p.len, 0), BP_OK);
    assert_int_equal(m.type, BP_MSG_END);
    assert_int_equal(bp_msg_u32(&m), BP_END_STOPPING);

    bp_pack_begin(&p, BP_MSG_CLOSE, 4);
    bp_pack_u64(&p, 0x123456789ull);
    finish(&p);
    assert_int_equal(decode_copy(p.p, p.len, 0), BP_OK);
    assert_int_equal(bp_msg_decode(&m, p.p, p.len, 0), BP_OK);
    assert_int_equal(m.type, BP_MSG_CLOSE);
    assert_true(bp_msg_u64(&m, 0) == 0x123456789ull);

    bp_pack_begin(&p, BP_MSG_COMPLETE, 4);
    bp_pack_u64(&p, 10);
    bp_pack_u64(&p, 3);
    finish(&p);
    assert_int_equal(decode_copy(p.p, p.len, 0), BP_OK);
    assert_int_equal(bp_msg_decode(&m, p.p, p.len, 0), BP_OK);
    assert_int_equal(m.type, BP_MSG_COMPLETE);
    assert_true(bp_msg_u64(&m, 0) == 10);
    assert_true(bp_msg_u64(&m, 8) == 3);

    const int empty[] = {BP_MSG_RESYNC, BP_MSG_BEGIN};
    for (int i = 0; i < 2; i++) {
        bp_pack_begin(&p, empty[i], 4);
        finish(&p);
        assert_int_equal(p.len, BP_MSG_HDR);
        assert_int_equal(decode_copy(p.p, p.len, 0), BP_OK);
        assert_int_equal(bp_msg_decode(&m, p.p, p.len, 0), BP_OK);
        assert_int_equal(m.type, empty[i]);
        assert_int_equal(m.body_len, 0);
        assert_int_equal(bp_msg_u32(&m), 0); /* no body: 0, no overread */
    }
    bp_pack_free(&p);
}

/* ---- rejections ---------------------------------------------------------- */

static void t_version(void **state)
{
    (void)state;
    /* right magic, another version: named as such even when too short */
    assert_int_equal(decode_copy("bp\x01", 3, 0), BP_EVERSION);
    assert_int_equal(decode_copy("bp\x02", 3, 0), BP_EVERSION); /* v2 boards */
    assert_int_equal(decode_copy("bp\x04", 3, 0), BP_EVERSION);
    assert_int_equal(decode_copy("bp\x00", 3, 0), BP_EVERSION);
    assert_int_equal(decode_copy("bp\xff\x04", 4, 0), BP_EVERSION);
    struct bp_pack p;
    bp_pack_init(&p);
    bp_pack_begin(&p, BP_MSG_HEARTBEAT, 1);
    bp_pack_u64(&p, 1);
    bp_pack_u64(&p, 2);
    finish(&p);
    for (int v = 0; v < 256; v++) {
        p.p[2] = (uint8_t)v;
        assert_int_equal(decode_copy(p.p, p.len, 0), v == BP_PROTO_VERSION ? BP_OK : BP_EVERSION);
        /* version before length and type */
        assert_int_equal(decode_copy(p.p, 7, 0), v == BP_PROTO_VERSION ? BP_EPROTO : BP_EVERSION);
    }
    p.p[2] = 1;
    p.p[3] = 0; /* unknown type, other version: still other version */
    assert_int_equal(decode_copy(p.p, p.len, 0), BP_EVERSION);
    bp_pack_free(&p);
}

static void t_bad_magic_short(void **state)
{
    (void)state;
    assert_int_equal(decode_copy("", 0, 0), BP_EPROTO);
    assert_int_equal(decode_copy("b", 1, 0), BP_EPROTO);
    assert_int_equal(decode_copy("bp", 2, 0), BP_EPROTO);
    assert_int_equal(decode_copy("bq\x02", 3, 0), BP_EPROTO);
    assert_int_equal(decode_copy("Bp\x02", 3, 0), BP_EPROTO);
    assert_int_equal(decode_copy("bp\x03", 3, 0), BP_EPROTO); /* right version, short */

    struct bp_pack p;
    bp_pack_init(&p);
    bp_pack_begin(&p, BP_MSG_BEGIN, 1);
    finish(&p);
    for (size_t l = 3; l < BP_MSG_HDR; l++)
        assert_int_equal(decode_copy(p.p, l, 0), BP_EPROTO);
    assert_int_equal(decode_copy(p.p, BP_MSG_HDR, 0), BP_OK);
    p.p[0] = 'x';
    assert_int_equal(decode_copy(p.p, p.len, 0), BP_EPROTO);
    p.p[0] = 'b';
    p.p[1] = 'P';
    assert_int_equal(decode_copy(p.p, p.len, 0), BP_EPROTO);
    p.p[1] = 'p';
    assert_int_equal(decode_copy(p.p, p.len, 0), BP_OK);
    bp_pack_free(&p);
}

static void t_unknown_type(void **state)
{
    (void)state;
    uint8_t b[BP_MSG_HDR] = {'b', 'p', BP_PROTO_VERSION, 0};
    const int bad[] = {0, BP_MSG_TYPE_MAX + 1, 20, 100, 255};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        b[3] = (uint8_t)bad[i];
        assert_int_equal(decode_copy(b, sizeof b, 0), BP_EPROTO);
    }
    /* with a body that would fit a known type */
    uint8_t hb[BP_MSG_HDR + BP_HB_BODY] = {'b', 'p', BP_PROTO_VERSION, 0};
    hb[3] = 14;
    assert_int_equal(decode_copy(hb, sizeof hb, 0), BP_EPROTO);
    /* EXTENT: exactly one u64 */
    hb[3] = BP_MSG_EXTENT;
    assert_int_equal(decode_copy(hb, sizeof hb, 0), BP_EPROTO);
    assert_int_equal(decode_copy(hb, BP_MSG_HDR + BP_EXTENT_BODY, 0), BP_OK);
    hb[3] = BP_MSG_HEARTBEAT;
    assert_int_equal(decode_copy(hb, sizeof hb, 0), BP_OK);
}

/* Re-decodes p with its count field replaced. */
static int with_n(const struct bp_pack *p, uint32_t n, uint32_t max_rec)
{
    uint8_t *b = dup_exact(p->p, p->len);
    put32be(b + 4, n);
    struct bp_msg m;
    int rc = bp_msg_decode(&m, b, p->len, max_rec);
    free(b);
    return rc;
}

static void t_count_mismatch(void **state)
{
    (void)state;
    struct bp_pack p;
    bp_pack_init(&p);
    const uint64_t ids[] = {1, 2, 3};

    make_tasks(&p);
    assert_int_equal(with_n(&p, 3, 0), BP_OK);
    assert_int_equal(with_n(&p, 2, 0), BP_EPROTO); /* leftover bytes */
    assert_int_equal(with_n(&p, 4, 0), BP_EPROTO); /* record missing */
    assert_int_equal(with_n(&p, 0, 0), BP_EPROTO);

    make_results(&p, "w", 1);
    assert_int_equal(with_n(&p, BP_ST_MAX + 1, 0), BP_OK);
    assert_int_equal(with_n(&p, BP_ST_MAX, 0), BP_EPROTO);
    assert_int_equal(with_n(&p, BP_ST_MAX + 2, 0), BP_EPROTO);
    assert_int_equal(with_n(&p, 0, 0), BP_EPROTO);

    make_acks(&p);
    assert_int_equal(with_n(&p, 2, 0), BP_EPROTO);
    assert_int_equal(with_n(&p, 4, 0), BP_EPROTO);

    const int types[] = {BP_MSG_CREDIT, BP_MSG_BYE};
    for (int t = 0; t < 2; t++) {
        make_ids(&p, types[t], 1, ids, 3);
        assert_int_equal(with_n(&p, 3, 0), BP_OK);
        assert_int_equal(with_n(&p, 2, 0), BP_EPROTO);
        assert_int_equal(with_n(&p, 4, 0), BP_EPROTO);
        assert_int_equal(with_n(&p, 0, 0), BP_EPROTO);
    }

    /* types without records want n = 0 */
    make_hello(&p, 1, 1, "w1", 2);
    assert_int_equal(with_n(&p, 1, 0), BP_EPROTO);
    make_fixed(&p, BP_MSG_HEARTBEAT, BP_HB_BODY);
    assert_int_equal(with_n(&p, 1, 0), BP_EPROTO);
    make_fixed(&p, BP_MSG_END, BP_END_BODY);
    assert_int_equal(with_n(&p, 1, 0), BP_EPROTO);
    make_fixed(&p, BP_MSG_CLOSE, BP_CLOSE_BODY);
    assert_int_equal(with_n(&p, 1, 0), BP_EPROTO);
    make_fixed(&p, BP_MSG_COMPLETE, BP_COMPLETE_BODY);
    assert_int_equal(with_n(&p, 1, 0), BP_EPROTO);
    make_fixed(&p, BP_MSG_BEGIN, 0);
    assert_int_equal(with_n(&p, 1, 0), BP_EPROTO);
    make_fixed(&p, BP_MSG_RESYNC, 0);
    assert_int_equal(with_n(&p, 1, 0), BP_EPROTO);
    bp_pack_free(&p);
}

static void t_record_past_end(void **state)
{
    (void)state;
    struct bp_pack p;
    bp_pack_init(&p);
    /* the last task's length says one byte more than there is */
    make_tasks(&p);
    uint8_t *b = dup_exact(p.p, p.len);
    size_t last = p.len - strlen(payload_b) - BP_TASK_REC;
    put32be(b + last + 12, (uint32_t)strlen(payload_b) + 1);
    assert_int_equal(decode_copy(b, p.len, 0), BP_EPROTO);
    put32be(b + last + 12, UINT32_MAX);
    assert_int_equal(decode_copy(b, p.len, 0), BP_EPROTO);
    put32be(b + last + 12, (uint32_t)strlen(payload_b) - 1); /* leaves one byte over */
    assert_int_equal(decode_copy(b, p.len, 0), BP_EPROTO);
    free(b);
    /* the first task's length runs over the others */
    b = dup_exact(p.p, p.len);
    put32be(b + BP_MSG_HDR + 12, (uint32_t)(p.len - BP_MSG_HDR));
    assert_int_equal(decode_copy(b, p.len, 0), BP_EPROTO);
    free(b);
    /* a truncated fixed part */
    for (size_t l = BP_MSG_HDR + 1; l < p.len; l++)
        assert_int_equal(decode_copy(p.p, l, 0), BP_EPROTO);

    /* same for results: last record (status 7, len 7) */
    make_results(&p, "wid", 3);
    b = dup_exact(p.p, p.len);
    last = p.len - BP_ST_MAX - BP_RESULT_REC;
    assert_int_equal(get32be(b + last + 20), BP_ST_MAX);
    put32be(b + last + 20, BP_ST_MAX + 1);
    assert_int_equal(decode_copy(b, p.len, 0), BP_EPROTO);
    put32be(b + last + 20, UINT32_MAX);
    assert_int_equal(decode_copy(b, p.len, 0), BP_EPROTO);
    put32be(b + last + 20, 0x80000000u);
    assert_int_equal(decode_copy(b, p.len, 0), BP_EPROTO);
    free(b);
    for (size_t l = BP_MSG_HDR; l < p.len; l++)
        assert_int_equal(decode_copy(p.p, l, 0), BP_EPROTO);
    /* worker id length running past the end */
    b = dup_exact(p.p, p.len);
    b[BP_MSG_HDR] = 60; /* <= 64 but the records no longer line up */
    assert_int_equal(decode_copy(b, p.len, 0), BP_EPROTO);
    free(b);
    uint8_t r1[BP_MSG_HDR + 2] = {'b', 'p', BP_PROTO_VERSION, BP_MSG_RESULTS};
    r1[BP_MSG_HDR] = 2; /* wid_len 2, 1 byte present */
    assert_int_equal(decode_copy(r1, sizeof r1, 0), BP_EPROTO);
    r1[BP_MSG_HDR] = 1;
    assert_int_equal(decode_copy(r1, sizeof r1, 0), BP_OK);
    assert_int_equal(decode_copy(r1, BP_MSG_HDR, 0), BP_EPROTO); /* no wid_len byte */
    bp_pack_free(&p);
}

static void t_trailing_garbage(void **state)
{
    (void)state;
    struct bp_pack p;
    bp_pack_init(&p);
    const uint64_t ids[] = {5, 6};
    for (int k = 0; k < 12; k++) {
        switch (k) {
        case 0:
            make_tasks(&p);
            break;
        case 1:
            make_results(&p, "x", 1);
            break;
        case 2:
            make_acks(&p);
            break;
        case 3:
            make_ids(&p, BP_MSG_CREDIT, 1, ids, 2);
            break;
        case 4:
            make_ids(&p, BP_MSG_BYE, 1, ids, 2);
            break;
        case 5:
            make_hello(&p, 1, 2, "abc", 3);
            break;
        case 6:
            make_fixed(&p, BP_MSG_HEARTBEAT, BP_HB_BODY);
            break;
        case 7:
            make_fixed(&p, BP_MSG_END, BP_END_BODY);
            break;
        case 8:
            make_fixed(&p, BP_MSG_CLOSE, BP_CLOSE_BODY);
            break;
        case 9:
            make_fixed(&p, BP_MSG_COMPLETE, BP_COMPLETE_BODY);
            break;
        case 10:
            make_fixed(&p, BP_MSG_BEGIN, 0);
            break;
        default:
            make_fixed(&p, BP_MSG_RESYNC, 0);
            break;
        }
        assert_int_equal(decode_copy(p.p, p.len, 0), BP_OK);
        for (int extra = 1; extra <= 13; extra += 4) {
            for (int i = 0; i < extra; i++)
                bp_pack_u8(&p, 0);
            assert_int_equal(decode_copy(p.p, p.len, 0), BP_EPROTO);
        }
    }
    bp_pack_free(&p);
}

static void t_max_rec(void **state)
{
    (void)state;
    struct bp_pack p;
    bp_pack_init(&p);
    uint8_t big[300];
    memset(big, 'z', sizeof big);
    bp_pack_begin(&p, BP_MSG_TASKS, 1);
    bp_pack_task(&p, 1, 1, 0, big, 10);
    bp_pack_task(&p, 2, 1, 0, big, 300);
    finish(&p);
    assert_int_equal(decode_copy(p.p, p.len, 0), BP_OK);
    assert_int_equal(decode_copy(p.p, p.len, 300), BP_OK);
    assert_int_equal(decode_copy(p.p, p.len, 299), BP_EPROTO);
    assert_int_equal(decode_copy(p.p, p.len, 10), BP_EPROTO);

    bp_pack_begin(&p, BP_MSG_RESULTS, 1);
    bp_pack_u8(&p, 0);
    struct bp_result_rec r = {.id = 1, .attempt = 1, .data = big, .len = 300};
    bp_pack_result(&p, &r);
    finish(&p);
    assert_int_equal(decode_copy(p.p, p.len, 300), BP_OK);
    assert_int_equal(decode_copy(p.p, p.len, 299), BP_EPROTO);
    bp_pack_free(&p);
}

static void t_hello_bad(void **state)
{
    (void)state;
    struct bp_pack p;
    bp_pack_init(&p);
    char id[256];
    memset(id, 'i', sizeof id);
    /* id of 65 bytes, consistent length: too long */
    make_hello(&p, 1, 1, id, BP_ID_MAX + 1);
    assert_int_equal(decode_copy(p.p, p.len, 0), BP_EPROTO);
    make_hello(&p, 1, 1, id, 255);
    assert_int_equal(decode_copy(p.p, p.len, 0), BP_EPROTO);
    /* idlen says 5, 4 / 6 bytes present */
    bp_pack_begin(&p, BP_MSG_HELLO, 0);
    bp_pack_u16(&p, 1);
    bp_pack_u16(&p, 0);
    bp_pack_u32(&p, 1);
    bp_pack_u8(&p, 5);
    bp_pack_bytes(&p, id, 4);
    finish(&p);
    assert_int_equal(decode_copy(p.p, p.len, 0), BP_EPROTO);
    bp_pack_bytes(&p, id, 1);
    assert_int_equal(decode_copy(p.p, p.len, 0), BP_OK);
    bp_pack_bytes(&p, id, 1);
    assert_int_equal(decode_copy(p.p, p.len, 0), BP_EPROTO);
    /* no idlen byte at all */
    for (size_t l = BP_MSG_HDR; l < BP_MSG_HDR + BP_HELLO_FIXED + 1; l++)
        assert_int_equal(decode_copy(p.p, l, 0), BP_EPROTO);
    /* labels: u16 length, then exactly that many bytes, at most BP_LABELS_MAX */
    make_hello(&p, 1, 1, id, 5);
    size_t base = p.len;
    static char lab[BP_LABELS_MAX + 2];
    memset(lab, 'l', sizeof lab);
    bp_pack_u16(&p, 3);
    bp_pack_bytes(&p, lab, 3);
    struct bp_msg m;
    uint8_t *c = dup_exact(p.p, p.len);
    assert_int_equal(bp_msg_decode(&m, c, p.len, 0), BP_OK);
    struct bp_hello h;
    bp_msg_hello(&m, &h);
    assert_int_equal(h.labels_len, 3);
    assert_memory_equal(h.labels, "lll", 3);
    free(c);
    assert_int_equal(decode_copy(p.p, p.len - 1, 0), BP_EPROTO); /* 2 of 3 */
    assert_int_equal(decode_copy(p.p, base + 1, 0), BP_EPROTO);  /* half a length */
    bp_pack_bytes(&p, lab, 1);
    assert_int_equal(decode_copy(p.p, p.len, 0), BP_EPROTO); /* one too many */
    p.len = base;
    bp_pack_u16(&p, BP_LABELS_MAX + 1);
    bp_pack_bytes(&p, lab, BP_LABELS_MAX + 1);
    assert_int_equal(decode_copy(p.p, p.len, 0), BP_EPROTO);
    bp_pack_free(&p);
}

static void t_results_bad(void **state)
{
    (void)state;
    struct bp_pack p;
    bp_pack_init(&p);
    make_results(&p, "w", 1);
    uint8_t *b = dup_exact(p.p, p.len);
    /* the status of the last record (status byte at 10) */
    size_t last = p.len - BP_ST_MAX - BP_RESULT_REC;
    assert_int_equal(b[last + 10], BP_ST_MAX);
    b[last + 10] = BP_ST_MAX + 1;
    assert_int_equal(decode_copy(b, p.len, 0), BP_EPROTO);
    b[last + 10] = 0xff;
    assert_int_equal(decode_copy(b, p.len, 0), BP_EPROTO);
    b[last + 10] = BP_ST_LOST;
    assert_int_equal(decode_copy(b, p.len, 0), BP_OK);
    /* and the first */
    b[BP_MSG_HDR + 2 + 10] = BP_ST_MAX + 1;
    assert_int_equal(decode_copy(b, p.len, 0), BP_EPROTO);
    free(b);
    /* worker id over 64 bytes */
    char wid[BP_ID_MAX + 1];
    memset(wid, 'q', sizeof wid);
    make_results(&p, wid, BP_ID_MAX);
    assert_int_equal(decode_copy(p.p, p.len, 0), BP_OK);
    make_results(&p, wid, BP_ID_MAX + 1);
    assert_int_equal(decode_copy(p.p, p.len, 0), BP_EPROTO);
    bp_pack_free(&p);
}

static void t_ack_bad_kind(void **state)
{
    (void)state;
    struct bp_pack p;
    bp_pack_init(&p);
    make_acks(&p);
    uint8_t *b = dup_exact(p.p, p.len);
    for (int k = 0; k < 256; k++) {
        b[BP_MSG_HDR + BP_ACK_REC + 10] = (uint8_t)k;
        assert_int_equal(decode_copy(b, p.len, 0), k <= BP_ACK_RETRY ? BP_OK : BP_EPROTO);
    }
    b[BP_MSG_HDR + BP_ACK_REC + 10] = BP_ACK_OK;
    b[p.len - 2] = 3; /* last record */
    assert_int_equal(decode_copy(b, p.len, 0), BP_EPROTO);
    free(b);
    bp_pack_free(&p);
}

static void t_fixed_wrong_size(void **state)
{
    (void)state;
    struct bp_pack p;
    bp_pack_init(&p);
    const struct {
        int type;
        size_t body;
    } f[] = {{BP_MSG_HEARTBEAT, BP_HB_BODY},
             {BP_MSG_END, BP_END_BODY},
             {BP_MSG_CLOSE, BP_CLOSE_BODY},
             {BP_MSG_COMPLETE, BP_COMPLETE_BODY},
             {BP_MSG_BEGIN, 0},
             {BP_MSG_RESYNC, 0}};
    for (size_t i = 0; i < sizeof f / sizeof f[0]; i++) {
        for (size_t body = 0; body <= 24; body++) {
            make_fixed(&p, f[i].type, body);
            assert_int_equal(decode_copy(p.p, p.len, 0), body == f[i].body ? BP_OK : BP_EPROTO);
        }
    }
    /* CREDIT and BYE without their u32, or with a partial id */
    uint8_t c[BP_MSG_HDR + 4 + 7] = {'b', 'p', BP_PROTO_VERSION, BP_MSG_CREDIT};
    for (size_t l = BP_MSG_HDR; l <= sizeof c; l++) {
        c[3] = BP_MSG_CREDIT;
        assert_int_equal(decode_copy(c, l, 0), l == BP_MSG_HDR + 4 ? BP_OK : BP_EPROTO);
        c[3] = BP_MSG_BYE;
        assert_int_equal(decode_copy(c, l, 0), l == BP_MSG_HDR + 4 ? BP_OK : BP_EPROTO);
    }
    /* ACK with a partial record */
    uint8_t a[BP_MSG_HDR + BP_ACK_REC + 5] = {'b', 'p', BP_PROTO_VERSION, BP_MSG_ACK, 0, 0, 0, 1};
    for (size_t l = BP_MSG_HDR; l <= sizeof a; l++)
        assert_int_equal(decode_copy(a, l, 0), l == BP_MSG_HDR + BP_ACK_REC ? BP_OK : BP_EPROTO);
    bp_pack_free(&p);
}

/* n = 0xFFFFFFFF (and other huge counts) with tiny bodies: rejected, and
 * nothing is read past the exact-size buffer (ASan). */
static void t_huge_count(void **state)
{
    (void)state;
    const uint32_t ns[] = {UINT32_MAX, 0x80000000u, 0x20000000u, 0x15555556u, 0x10000000u, 2};
    const int types[] = {BP_MSG_TASKS, BP_MSG_RESULTS, BP_MSG_ACK, BP_MSG_CREDIT, BP_MSG_BYE};
    uint8_t raw[BP_MSG_HDR + 40];
    for (size_t ni = 0; ni < sizeof ns / sizeof ns[0]; ni++) {
        for (size_t ti = 0; ti < sizeof types / sizeof types[0]; ti++) {
            for (size_t body = 0; body <= 40; body++) {
                memset(raw, 0, sizeof raw);
                raw[0] = 'b';
                raw[1] = 'p';
                raw[2] = BP_PROTO_VERSION;
                raw[3] = (uint8_t)types[ti];
                put32be(raw + 4, ns[ni]);
                /* plausible lengths: all zero (0-length records) */
                int rc = decode_copy(raw, BP_MSG_HDR + body, 0);
                if (ns[ni] == 2 && types[ti] == BP_MSG_TASKS && body == 2 * BP_TASK_REC)
                    assert_int_equal(rc, BP_OK);
                else if (ns[ni] == 2 && types[ti] == BP_MSG_ACK && body == 2 * BP_ACK_REC)
                    assert_int_equal(rc, BP_OK);
                else if (ns[ni] == 2 && (types[ti] == BP_MSG_CREDIT || types[ti] == BP_MSG_BYE) &&
                         body == 4 + 16)
                    assert_int_equal(rc, BP_OK);
                else
                    assert_int_equal(rc, BP_EPROTO);
            }
        }
    }
    /* a record that claims almost 4 GiB */
    uint8_t t[BP_MSG_HDR + BP_TASK_REC] = {'b', 'p', BP_PROTO_VERSION, BP_MSG_TASKS, 0, 0, 0, 1};
    put32be(t + BP_MSG_HDR + 12, UINT32_MAX);
    assert_int_equal(decode_copy(t, sizeof t, 0), BP_EPROTO);
    put32be(t + BP_MSG_HDR + 12, UINT32_MAX - BP_TASK_REC + 1);
    assert_int_equal(decode_copy(t, sizeof t, 0), BP_EPROTO);
}

static void t_names(void **state)
{
    (void)state;
    static const char *const st[] = {"ok",       "failed",      "timeout", "too-big", "exec-error",
                                     "signaled", "interrupted", "lost",    "halted",  "file-error"};
    assert_int_equal(sizeof st / sizeof st[0], BP_ST_MAX + 1);
    for (int s = 0; s <= BP_ST_MAX; s++)
        assert_string_equal(bp_status_name(s), st[s]);
    assert_string_equal(bp_status_name(BP_ST_LOST), "lost");
    assert_string_equal(bp_status_name(BP_ST_MAX + 1), "unknown");
    assert_string_equal(bp_status_name(-1), "unknown");
    assert_string_equal(bp_status_name(255), "unknown");

    static const char *const ty[] = {"HELLO", "CREDIT",   "TASKS",   "HEARTBEAT", "RESYNC",
                                     "END",   "BYE",      "RESULTS", "BEGIN",     "CLOSE",
                                     "ACK",   "COMPLETE", "EXTENT",  "FETCH",     "CHUNK",
                                     "BASE",  "PUT",      "PUTACK",  "CANCEL"};
    for (int t = 1; t <= BP_MSG_TYPE_MAX; t++)
        assert_string_equal(bp_msg_name(t), ty[t - 1]);
    assert_string_equal(bp_msg_name(0), "?");
    assert_string_equal(bp_msg_name(BP_MSG_TYPE_MAX + 1), "?");
    assert_string_equal(bp_msg_name(-1), "?");
    assert_string_equal(bp_msg_name(255), "?");
}

/* ---- deterministic mutation fuzzing ---------------------------------------- */

static uint64_t rng_state;

static uint32_t rnd(void)
{
    /* xorshift64* */
    rng_state ^= rng_state >> 12;
    rng_state ^= rng_state << 25;
    rng_state ^= rng_state >> 27;
    return (uint32_t)((rng_state * 2685821657736338717ull) >> 32);
}

static uint32_t rnd_below(uint32_t n)
{
    return n ? rnd() % n : 0;
}

/* What the decoder accepted of the file messages (types 14-18) walks
 * cleanly and keeps the documented limits. */
static void walk_file_msg(const struct bp_msg *m)
{
    size_t off = 0;
    uint32_t k = 0;
    switch (m->type) {
    case BP_MSG_FETCH: {
        struct bp_fetch_rec f;
        while (bp_msg_next_fetch(m, &off, &f)) {
            assert_true(f.len > 0 && f.len <= BP_CHUNK_BYTES && f.kind <= BP_FK_BASE);
            k++;
        }
        break;
    }
    case BP_MSG_CHUNK: {
        struct bp_chunk c;
        bp_msg_chunk(m, &c);
        assert_true(c.len <= BP_CHUNK_BYTES && c.status <= BP_CK_REFUSED);
        return;
    }
    case BP_MSG_BASE: {
        struct bp_base_rec b;
        while (bp_msg_next_base(m, &off, &b)) {
            assert_int_equal(bp_path_check(b.name, b.name_len, 1), BP_OK);
            k++;
        }
        assert_int_equal(off, m->body_len);
        break;
    }
    case BP_MSG_PUT: {
        struct bp_put u;
        bp_msg_put(m, &u);
        assert_true(u.len <= BP_CHUNK_BYTES && u.offset + u.len <= u.size);
        assert_int_equal(bp_path_check(u.name, u.name_len, 0), BP_OK);
        return;
    }
    case BP_MSG_PUTACK: {
        struct bp_putack_rec a;
        while (bp_msg_next_putack(m, &off, &a)) {
            assert_true(a.status <= BP_PA_REFUSED);
            k++;
        }
        break;
    }
    default:
        fail_msg("decoder accepted type %d", m->type);
    }
    assert_int_equal(k, m->n);
}

/* Walks every record of an accepted message; everything stays inside
 * [buf, buf + len) and the record count matches n. */
static void walk_all(const struct bp_msg *m, const uint8_t *buf, size_t len, uint32_t max_rec)
{
    const uint8_t *end = buf + len;
    assert_ptr_equal(m->body, buf + BP_MSG_HDR);
    assert_int_equal(m->body_len, len - BP_MSG_HDR);
    size_t off = 0;
    uint32_t k = 0;
    switch (m->type) {
    case BP_MSG_TASKS: {
        struct bp_task_rec t;
        while (bp_msg_next_task(m, &off, &t)) {
            assert_true(t.data >= m->body && t.data <= end);
            assert_true(t.len <= (size_t)(end - t.data));
            if (max_rec)
                assert_true(t.len <= max_rec);
            if (t.len) /* touch both ends */
                assert_true(t.data[0] + t.data[t.len - 1] < 1024);
            k++;
        }
        assert_int_equal(k, m->n);
        assert_int_equal(off, m->body_len);
        break;
    }
    case BP_MSG_RESULTS: {
        uint8_t wl;
        const char *w = bp_msg_wid(m, &wl);
        assert_true(wl <= BP_ID_MAX);
        assert_true((const uint8_t *)w + wl <= end);
        struct bp_result_rec r;
        while (bp_msg_next_result(m, &off, &r)) {
            assert_true(r.data >= m->body && r.data <= end);
            assert_true(r.len <= (size_t)(end - r.data));
            assert_true(r.status <= BP_ST_MAX);
            assert_non_null(bp_status_name(r.status));
            if (max_rec)
                assert_true(r.len <= max_rec);
            if (r.len)
                assert_true(r.data[0] + r.data[r.len - 1] < 1024);
            k++;
        }
        assert_int_equal(k, m->n);
        break;
    }
    case BP_MSG_ACK: {
        struct bp_ack_rec a;
        while (bp_msg_next_ack(m, &off, &a)) {
            assert_true(a.kind <= BP_ACK_RETRY);
            k++;
        }
        assert_int_equal(k, m->n);
        assert_int_equal(off, m->body_len);
        break;
    }
    case BP_MSG_CREDIT:
    case BP_MSG_BYE: {
        (void)bp_msg_u32(m);
        uint64_t id;
        while (bp_msg_next_id(m, &off, &id))
            k++;
        assert_int_equal(k, m->n);
        assert_int_equal(off, m->body_len);
        break;
    }
    case BP_MSG_HELLO: {
        struct bp_hello h;
        bp_msg_hello(m, &h);
        assert_true(h.id_len <= BP_ID_MAX && h.labels_len <= BP_LABELS_MAX);
        if (h.labels)
            assert_ptr_equal((const uint8_t *)h.labels + h.labels_len, end);
        else
            assert_ptr_equal((const uint8_t *)h.id + h.id_len, end);
        assert_int_equal(m->n, 0);
        break;
    }
    case BP_MSG_HEARTBEAT:
    case BP_MSG_COMPLETE:
        assert_int_equal(m->body_len, 16);
        (void)bp_msg_u64(m, 0);
        (void)bp_msg_u64(m, 8);
        break;
    case BP_MSG_CLOSE:
    case BP_MSG_EXTENT:
        assert_int_equal(m->body_len, 8);
        (void)bp_msg_u64(m, 0);
        break;
    case BP_MSG_END:
        assert_int_equal(m->body_len, 4);
        (void)bp_msg_u32(m);
        break;
    case BP_MSG_BEGIN:
    case BP_MSG_RESYNC:
        assert_int_equal(m->body_len, 0);
        break;
    default:
        walk_file_msg(m);
    }
}

#define SEEDS 13

static void t_fuzz(void **state)
{
    (void)state;
    struct bp_pack p;
    bp_pack_init(&p);
    uint8_t *seed[SEEDS];
    size_t seed_len[SEEDS];
    const uint64_t ids[] = {3, 1, 4, 1, 5};
    for (int s = 0; s < SEEDS; s++) {
        switch (s) {
        case 0:
            make_tasks(&p);
            break;
        case 1:
            make_results(&p, "worker-1", 8);
            break;
        case 2:
            make_acks(&p);
            break;
        case 3:
            make_ids(&p, BP_MSG_CREDIT, 10, ids, 5);
            break;
        case 4:
            make_ids(&p, BP_MSG_BYE, 1, ids, 2);
            break;
        case 5:
            make_hello(&p, 4, 100, "board-07", 8);
            break;
        case 6:
            make_fixed(&p, BP_MSG_HEARTBEAT, BP_HB_BODY);
            break;
        case 7:
            make_fixed(&p, BP_MSG_END, BP_END_BODY);
            break;
        case 8:
            make_fixed(&p, BP_MSG_CLOSE, BP_CLOSE_BODY);
            break;
        case 9:
            make_fixed(&p, BP_MSG_COMPLETE, BP_COMPLETE_BODY);
            break;
        case 10:
            make_fixed(&p, BP_MSG_BEGIN, 0);
            break;
        case 11:
            make_results(&p, "", 0);
            break;
        default: {
            bp_pack_begin(&p, BP_MSG_TASKS, 2);
            for (uint32_t i = 0; i < 6; i++)
                bp_pack_task(&p, i, 1, 0, payload_b, i);
            finish(&p);
            break;
        }
        }
        seed[s] = dup_exact(p.p, p.len);
        seed_len[s] = p.len;
        assert_int_equal(decode_copy(seed[s], seed_len[s], 0), BP_OK);
    }

    uint8_t work[512];
    rng_state = 0x9E3779B97F4A7C15ull;
    int n_ok = 0, n_proto = 0, n_ver = 0;
    for (int it = 0; it < 20000; it++) {
        int s = (int)rnd_below(SEEDS);
        size_t len = seed_len[s];
        assert_true(len <= sizeof work);
        memcpy(work, seed[s], len);
        int ops = 1 + (int)rnd_below(4);
        for (int o = 0; o < ops; o++) {
            uint32_t what = rnd_below(9);
            if (what <= 1 && len) { /* flip a bit */
                size_t at = rnd_below((uint32_t)len);
                work[at] ^= (uint8_t)(1u << rnd_below(8));
            } else if (what == 2 && len) { /* random byte */
                work[rnd_below((uint32_t)len)] = (uint8_t)rnd();
            } else if (what == 3) { /* truncate */
                len = rnd_below((uint32_t)len + 1);
            } else if (what == 4) { /* extend */
                size_t more = 1 + rnd_below(24);
                if (len + more > sizeof work)
                    more = sizeof work - len;
                for (size_t i = 0; i < more; i++)
                    work[len + i] = (uint8_t)(rnd_below(3) ? 0 : rnd());
                len += more;
            } else if (what == 5 && len >= 8) { /* the count */
                static const uint32_t interesting[] = {
                    0, 1, 2, 0x7fffffff, 0x80000000, 0xffffffff, 0x10000000};
                uint32_t n =
                    rnd_below(2) ? interesting[rnd_below(7)] : get32be(work + 4) + rnd_below(5) - 2;
                put32be(work + 4, n);
            } else if (what == 6 && len > BP_MSG_HDR + 4) { /* a u32 in the body */
                size_t at = BP_MSG_HDR + rnd_below((uint32_t)(len - BP_MSG_HDR - 3));
                static const uint32_t lens[] = {0, 1, 0xffffffff, 0xfffffff0, 0x7fffffff, 64};
                put32be(work + at,
                        rnd_below(2) ? lens[rnd_below(6)] : get32be(work + at) + rnd_below(9) - 4);
            } else if (what == 7 && len >= 4) { /* the type */
                work[3] = (uint8_t)rnd_below(16);
            } else if (what == 8 && len >= 3) { /* the version */
                work[2] = (uint8_t)(rnd_below(4) ? 2 : rnd_below(4));
            }
        }
        uint32_t max_rec = rnd_below(3) ? 0 : rnd_below(16);
        uint8_t *b = dup_exact(work, len);
        struct bp_msg m;
        int rc = bp_msg_decode(&m, b, len, max_rec);
        if (rc == BP_OK) {
            n_ok++;
            assert_true(len >= BP_MSG_HDR);
            assert_int_equal(b[2], BP_PROTO_VERSION);
            walk_all(&m, b, len, max_rec);
        } else if (rc == BP_EVERSION) {
            n_ver++;
            assert_true(len >= 3 && b[0] == 'b' && b[1] == 'p' && b[2] != BP_PROTO_VERSION);
        } else {
            assert_int_equal(rc, BP_EPROTO);
            n_proto++;
        }
        free(b);
    }
    /* the mutations reach all three outcomes */
    assert_true(n_ok > 100);
    assert_true(n_proto > 1000);
    assert_true(n_ver > 100);
    for (int s = 0; s < SEEDS; s++)
        free(seed[s]);
    bp_pack_free(&p);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(t_header_layout),
        cmocka_unit_test(t_pack_reuse),
        cmocka_unit_test(t_roundtrip_hello),
        cmocka_unit_test(t_roundtrip_credit_bye),
        cmocka_unit_test(t_roundtrip_tasks),
        cmocka_unit_test(t_roundtrip_results),
        cmocka_unit_test(t_results_info),
        cmocka_unit_test(t_roundtrip_ack),
        cmocka_unit_test(t_roundtrip_fixed),
        cmocka_unit_test(t_version),
        cmocka_unit_test(t_bad_magic_short),
        cmocka_unit_test(t_unknown_type),
        cmocka_unit_test(t_count_mismatch),
        cmocka_unit_test(t_record_past_end),
        cmocka_unit_test(t_trailing_garbage),
        cmocka_unit_test(t_max_rec),
        cmocka_unit_test(t_hello_bad),
        cmocka_unit_test(t_results_bad),
        cmocka_unit_test(t_ack_bad_kind),
        cmocka_unit_test(t_roundtrip_cancel),
        cmocka_unit_test(t_fixed_wrong_size),
        cmocka_unit_test(t_huge_count),
        cmocka_unit_test(t_names),
        cmocka_unit_test(t_fuzz),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
