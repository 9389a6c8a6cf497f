/* Unit tests for the worker's file transfers (bp_xfer.c): the fetch
 * window and `got`, CHUNK statuses, short and hostile answers, requests
 * asked again after silence; the put window, PUTACKs going forward,
 * backwards, duplicated, refused and BUSY; all on a fake clock. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>

#include "bp.h"
#include "bp_frame.h"
#include "bp_xfer.h"

#define T0 1000000
#define CH 10 /* bytes per chunk in these tests */

static struct bp_xfer *mk(int max_get, int max_put)
{
    struct bp_xfer_cfg c;
    bp_xfer_defaults(&c, 1000, 3, max_get, max_put);
    c.chunk = CH;
    c.fetch_window = 4;
    c.put_window = 3;
    struct bp_xfer *x = bp_xfer_new(&c);
    assert_non_null(x);
    return x;
}

static const uint8_t zeros[64];

static struct bp_chunk chunk_of(const struct bp_fetch_rec *f, uint8_t status, uint32_t len)
{
    return (struct bp_chunk){.id = f->id,
                             .attempt = f->attempt,
                             .kind = f->kind,
                             .status = status,
                             .offset = f->offset,
                             .data = zeros,
                             .len = len};
}

/* 35 bytes: 4 requests (window 4), 10+10+10+5, each answered; done. */
static void t_fetch_whole(void **state)
{
    (void)state;
    struct bp_xfer *x = mk(2, 1);
    int h = bp_xfer_get(x, BP_FK_TASK, 7, 1, 35);
    assert_int_equal(h, 0);
    struct bp_fetch_rec f[8];
    assert_int_equal(bp_xfer_fetches(x, T0, f, 8), 4);
    assert_int_equal(bp_xfer_fetches(x, T0, f + 4, 4), 0); /* window full */
    assert_int_equal(f[3].offset, 30);
    assert_int_equal(f[3].len, 5);
    struct bp_xfer_ev ev;
    uint64_t sum = 0;
    for (int i = 0; i < 4; i++) {
        struct bp_chunk c = chunk_of(&f[i], BP_CK_DATA, f[i].len);
        bp_xfer_on_chunk(x, &c, T0, &ev);
        assert_true(ev.what & BP_XF_DATA);
        sum += ev.len;
        assert_int_equal(!!(ev.what & BP_XF_GET_DONE), i == 3);
    }
    assert_int_equal(sum, 35);
    assert_int_equal(bp_xfer_got(x), 4);
    bp_xfer_destroy(&x);
    assert_null(x);
}

/* Answers out of order; a CHUNK for an unknown id or offset is ignored and
 * not counted in got; a duplicate is ignored. */
static void t_fetch_odd(void **state)
{
    (void)state;
    struct bp_xfer *x = mk(2, 1);
    bp_xfer_get(x, BP_FK_TASK, 7, 1, 20);
    struct bp_fetch_rec f[4];
    assert_int_equal(bp_xfer_fetches(x, T0, f, 4), 2);
    struct bp_xfer_ev ev;
    struct bp_chunk c = chunk_of(&f[1], BP_CK_DATA, 10);
    bp_xfer_on_chunk(x, &c, T0, &ev);
    assert_int_equal(ev.what, BP_XF_DATA);
    bp_xfer_on_chunk(x, &c, T0, &ev); /* duplicate */
    assert_int_equal(ev.what, BP_XF_NONE);
    struct bp_chunk u = c;
    u.id = 99;
    bp_xfer_on_chunk(x, &u, T0, &ev);
    assert_int_equal(ev.what, BP_XF_NONE);
    u = chunk_of(&f[0], BP_CK_DATA, 10);
    u.offset = 5;
    bp_xfer_on_chunk(x, &u, T0, &ev);
    assert_int_equal(ev.what, BP_XF_NONE);
    assert_int_equal(bp_xfer_got(x), 1);
    c = chunk_of(&f[0], BP_CK_DATA, 10);
    bp_xfer_on_chunk(x, &c, T0, &ev);
    assert_int_equal(ev.what, BP_XF_DATA | BP_XF_GET_DONE);
    struct bp_xfer_stats s;
    bp_xfer_stats(x, &s);
    assert_int_equal(s.stale, 3);
    assert_int_equal(s.gets, 0);
    bp_xfer_destroy(&x);
}

/* changed / error / refused fail the download; a short chunk before the
 * end is a change; an empty file is one request answered with no data. */
static void t_fetch_status(void **state)
{
    (void)state;
    struct bp_xfer *x = mk(4, 1);
    uint8_t st[3] = {BP_CK_CHANGED, BP_CK_ERROR, BP_CK_REFUSED};
    struct bp_fetch_rec f[4];
    struct bp_xfer_ev ev;
    for (int i = 0; i < 3; i++) {
        int h = bp_xfer_get(x, BP_FK_TASK, (uint64_t)i, 1, 5);
        assert_int_equal(bp_xfer_fetches(x, T0, f, 4), 1);
        struct bp_chunk c = chunk_of(&f[0], st[i], 0);
        c.code = 2;
        bp_xfer_on_chunk(x, &c, T0, &ev);
        assert_int_equal(ev.what, BP_XF_GET_FAIL);
        assert_int_equal(ev.h, h);
        assert_int_equal(ev.code, st[i]);
    }
    bp_xfer_get(x, BP_FK_TASK, 10, 1, 25);
    assert_int_equal(bp_xfer_fetches(x, T0, f, 4), 3);
    struct bp_chunk c = chunk_of(&f[0], BP_CK_DATA, 4);
    bp_xfer_on_chunk(x, &c, T0, &ev);
    assert_int_equal(ev.what, BP_XF_GET_FAIL);
    assert_int_equal(ev.code, BP_CK_CHANGED);
    /* the other two are still out: answers to them are ignored */
    assert_int_equal(bp_xfer_fetches(x, T0, f + 3, 1), 0);
    int h = bp_xfer_get(x, BP_FK_BASE, 0, 0, 0);
    c = chunk_of(&f[1], BP_CK_DATA, 10);
    bp_xfer_on_chunk(x, &c, T0, &ev);
    assert_int_equal(ev.what, BP_XF_NONE);
    assert_int_equal(bp_xfer_fetches(x, T0, f, 4), 1);
    assert_int_equal(f[0].len, 1);
    assert_int_equal(f[0].kind, BP_FK_BASE);
    c = chunk_of(&f[0], BP_CK_DATA, 0);
    bp_xfer_on_chunk(x, &c, T0, &ev);
    assert_int_equal(ev.what, BP_XF_DATA | BP_XF_GET_DONE);
    assert_int_equal(ev.h, h);
    bp_xfer_destroy(&x);
}

/* Silence: after liveness the request is given up (got counts it) and
 * asked again; its late answer is then taken once; an unsent batch goes
 * back to due without counting. */
static void t_fetch_silence(void **state)
{
    (void)state;
    struct bp_xfer *x = mk(1, 1);
    bp_xfer_get(x, BP_FK_TASK, 1, 2, 10);
    struct bp_fetch_rec f[4];
    assert_int_equal(bp_xfer_fetches(x, T0, f, 4), 1);
    bp_xfer_fetch_unsent(x);
    assert_int_equal(bp_xfer_fetches(x, T0, f, 4), 1);
    assert_int_equal(bp_xfer_got(x), 0);
    assert_int_equal(bp_xfer_next_deadline(x), T0 + 3000);
    bp_xfer_on_timer(x, T0 + 2999);
    assert_int_equal(bp_xfer_fetches(x, T0 + 2999, f, 4), 0);
    bp_xfer_on_timer(x, T0 + 3000);
    assert_int_equal(bp_xfer_got(x), 1);
    assert_int_equal(bp_xfer_fetches(x, T0 + 3000, f, 4), 1);
    assert_int_equal(f[0].offset, 0);
    struct bp_xfer_ev ev;
    struct bp_chunk c = chunk_of(&f[0], BP_CK_DATA, 10);
    bp_xfer_on_chunk(x, &c, T0 + 3001, &ev);
    assert_int_equal(ev.what, BP_XF_DATA | BP_XF_GET_DONE);
    bp_xfer_on_chunk(x, &c, T0 + 3002, &ev); /* the second answer */
    assert_int_equal(ev.what, BP_XF_NONE);
    assert_int_equal(bp_xfer_got(x), 2);
    assert_int_equal(bp_xfer_next_deadline(x), INT64_MAX);
    bp_xfer_new_session(x);
    assert_int_equal(bp_xfer_got(x), 0);
    bp_xfer_destroy(&x);
}

static void ack(struct bp_xfer *x, uint64_t id, uint8_t idx, uint8_t status, uint32_t code,
                uint64_t received, int64_t now, struct bp_xfer_ev *ev)
{
    struct bp_putack_rec a = {
        .id = id, .attempt = 1, .idx = idx, .status = status, .code = code, .received = received};
    bp_xfer_on_putack(x, &a, now, ev);
}

/* 45 bytes, window 3: three chunks, then one per ack; duplicate acks,
 * acks past what was sent and unknown uploads change nothing. */
static void t_put_window(void **state)
{
    (void)state;
    struct bp_xfer *x = mk(1, 2);
    int h = bp_xfer_put(x, 5, 1, 0, 45, T0);
    int u;
    uint64_t off;
    uint32_t len;
    for (int i = 0; i < 3; i++) {
        assert_int_equal(bp_xfer_next_put(x, T0, &u, &off, &len), 1);
        assert_int_equal(off, (uint64_t)i * CH);
        assert_int_equal(u, h);
    }
    assert_int_equal(bp_xfer_next_put(x, T0, &u, &off, &len), 0);
    struct bp_xfer_ev ev;
    ack(x, 5, 0, BP_PA_OK, 0, 40, T0, &ev); /* more than sent */
    ack(x, 6, 0, BP_PA_OK, 0, 10, T0, &ev); /* unknown */
    ack(x, 5, 1, BP_PA_OK, 0, 10, T0, &ev); /* another idx */
    assert_int_equal(bp_xfer_next_put(x, T0, &u, &off, &len), 0);
    ack(x, 5, 0, BP_PA_OK, 0, 10, T0, &ev);
    ack(x, 5, 0, BP_PA_OK, 0, 10, T0, &ev); /* duplicate */
    assert_int_equal(bp_xfer_next_put(x, T0, &u, &off, &len), 1);
    assert_int_equal(off, 30);
    assert_int_equal(bp_xfer_next_put(x, T0, &u, &off, &len), 0);
    ack(x, 5, 0, BP_PA_OK, 0, 40, T0, &ev);
    assert_int_equal(bp_xfer_next_put(x, T0, &u, &off, &len), 1);
    assert_int_equal(off, 40);
    assert_int_equal(len, 5);
    bp_xfer_put_unsent(x);
    assert_int_equal(bp_xfer_next_put(x, T0, &u, &off, &len), 1);
    assert_int_equal(off, 40);
    ack(x, 5, 0, BP_PA_OK, 0, 45, T0, &ev);
    assert_int_equal(ev.what, BP_XF_PUT_DONE);
    struct bp_xfer_stats s;
    bp_xfer_stats(x, &s);
    assert_int_equal(s.stale, 3);
    assert_int_equal(s.puts, 0);
    assert_int_equal(s.put_out, 0);
    bp_xfer_destroy(&x);
}

/* received going backwards (a sink restarted): from there; silence: from
 * the last received; BUSY: from 0 after a heartbeat interval; another
 * refusal fails; an empty file is one empty chunk. */
static void t_put_faults(void **state)
{
    (void)state;
    struct bp_xfer *x = mk(1, 2);
    bp_xfer_put(x, 5, 1, 0, 30, T0);
    int u;
    uint64_t off;
    uint32_t len;
    struct bp_xfer_ev ev;
    while (bp_xfer_next_put(x, T0, &u, &off, &len))
        ;
    ack(x, 5, 0, BP_PA_OK, 0, 20, T0, &ev);
    ack(x, 5, 0, BP_PA_OK, 0, 0, T0 + 1, &ev);
    assert_int_equal(bp_xfer_next_put(x, T0 + 1, &u, &off, &len), 1);
    assert_int_equal(off, 0);
    ack(x, 5, 0, BP_PA_OK, 0, 10, T0 + 2, &ev);
    while (bp_xfer_next_put(x, T0 + 2, &u, &off, &len))
        ;
    assert_int_equal(bp_xfer_next_deadline(x), T0 + 3002);
    bp_xfer_on_timer(x, T0 + 3002);
    assert_int_equal(bp_xfer_next_put(x, T0 + 3002, &u, &off, &len), 1);
    assert_int_equal(off, 10);
    ack(x, 5, 0, BP_PA_REFUSED, BP_FE_BUSY, 0, T0 + 3003, &ev);
    assert_int_equal(ev.what, BP_XF_NONE);
    assert_int_equal(bp_xfer_next_put(x, T0 + 3003, &u, &off, &len), 0);
    assert_int_equal(bp_xfer_next_deadline(x), T0 + 4003);
    bp_xfer_on_timer(x, T0 + 4003);
    assert_int_equal(bp_xfer_next_put(x, T0 + 4003, &u, &off, &len), 1);
    assert_int_equal(off, 0);
    ack(x, 5, 0, BP_PA_REFUSED, BP_FE_WRITE, 0, T0 + 4004, &ev);
    assert_int_equal(ev.what, BP_XF_PUT_FAIL);
    assert_int_equal(ev.err, BP_FE_WRITE);
    ack(x, 5, 0, BP_PA_OK, 0, 10, T0 + 4005, &ev); /* about a failed upload */
    assert_int_equal(ev.what, BP_XF_NONE);
    int h = bp_xfer_put(x, 6, 1, 3, 0, T0);
    ack(x, 6, 3, BP_PA_OK, 0, 0, T0, &ev); /* before anything was sent */
    assert_int_equal(ev.what, BP_XF_NONE);
    assert_int_equal(bp_xfer_next_put(x, T0, &u, &off, &len), 1);
    assert_int_equal(len, 0);
    assert_int_equal(bp_xfer_next_put(x, T0, &u, &off, &len), 0);
    ack(x, 6, 3, BP_PA_OK, 0, 0, T0, &ev);
    assert_int_equal(ev.what, BP_XF_PUT_DONE);
    assert_int_equal(ev.h, h);
    bp_xfer_destroy(&x);
}

/* Two uploads share the window and take turns; tables are bounded. */
static void t_put_share(void **state)
{
    (void)state;
    struct bp_xfer *x = mk(1, 2);
    assert_int_equal(bp_xfer_put(x, 1, 1, 0, 100, T0), 0);
    assert_int_equal(bp_xfer_put(x, 1, 1, 1, 100, T0), 1);
    assert_int_equal(bp_xfer_put(x, 1, 1, 2, 100, T0), -1);
    assert_int_equal(bp_xfer_get(x, 0, 1, 1, 1), 0);
    assert_int_equal(bp_xfer_get(x, 0, 2, 1, 1), -1);
    int u, seen[2] = {0, 0};
    uint64_t off;
    uint32_t len;
    while (bp_xfer_next_put(x, T0, &u, &off, &len))
        seen[u]++;
    assert_int_equal(seen[0] + seen[1], 3);
    assert_true(seen[0] && seen[1]);
    bp_xfer_put_cancel(x, 0);
    bp_xfer_put_cancel(x, 0);
    bp_xfer_get_cancel(x, 5);
    struct bp_xfer_stats s;
    bp_xfer_stats(x, &s);
    assert_int_equal(s.puts, 1);
    assert_true(s.put_out < 3);
    bp_xfer_destroy(&x);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(t_fetch_whole),  cmocka_unit_test(t_fetch_odd),
        cmocka_unit_test(t_fetch_status), cmocka_unit_test(t_fetch_silence),
        cmocka_unit_test(t_put_window),   cmocka_unit_test(t_put_faults),
        cmocka_unit_test(t_put_share),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
