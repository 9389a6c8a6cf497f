/* Unit tests for the ventilator's batch policy (bp_vbatch.c) driving the
 * real dispatcher on a fake clock: waits and their give-ups, --halt, the
 * wait for COMPLETE, stopping. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <string.h>

#include "bp.h"
#include "bp_dispatch.h"
#include "bp_frame.h"
#include "bp_vbatch.h"

#define T0 1000000
#define BATCH 0x5eull

struct h {
    struct bp_dispatch *d;
    struct bp_vbatch b;
    struct bp_pack p;
    int64_t now;
    uint32_t last_end; /* the reason of the last END sent */
    int closes;        /* CLOSE messages sent */
};

/* --require: a worker matches when its id starts with 'm' (set by a
 * test, NULL otherwise). */
static int (*g_match)(void *arg, const char *wid, const void *labels, size_t len);

static int id_starts_with_m(void *arg, const char *wid, const void *labels, size_t len)
{
    (void)arg;
    (void)labels;
    (void)len;
    return wid[0] == 'm';
}

static void start(struct h *h, const struct bp_vbatch_cfg *bc)
{
    memset(h, 0, sizeof *h);
    h->now = T0;
    struct bp_dispatch_cfg c;
    bp_dispatch_defaults(&c, BATCH);
    c.max_tasks = 64;
    c.match = g_match;
    h->d = bp_dispatch_new(&c, h->now);
    assert_non_null(h->d);
    bp_pack_init(&h->p);
    bp_vbatch_init(&h->b, bc, h->now);
}

static void end(struct h *h)
{
    bp_dispatch_destroy(&h->d);
    bp_pack_free(&h->p);
}

static struct bp_vbatch_cfg cfg(void)
{
    struct bp_vbatch_cfg c = {.wait_workers = 1,
                              .wait_timeout_ms = 60000,
                              .use_sink = 1,
                              .complete_wait_ms = 5000,
                              .stop_wait_ms = 1000};
    return c;
}

static int has_note(const struct h *h, int what)
{
    for (int i = 0; i < h->b.nnotes; i++)
        if (h->b.notes[i].what == what)
            return 1;
    return 0;
}

/* Sends everything due, noting ENDs and CLOSEs. */
static void drain(struct h *h)
{
    struct bp_out o;
    while (bp_dispatch_peek(h->d, h->now, BP_TO_WORKER | BP_TO_SINK, &o)) {
        struct bp_msg m;
        assert_int_equal(bp_msg_decode(&m, o.data, o.len, 1 << 20), BP_OK);
        if (m.type == BP_MSG_END)
            h->last_end = bp_msg_u32(&m);
        if (m.type == BP_MSG_CLOSE)
            h->closes++;
        bp_dispatch_commit(h->d, h->now);
    }
}

static void sink_says(struct h *h, int type, uint64_t a, uint64_t b)
{
    bp_pack_begin(&h->p, type, BATCH);
    if (type == BP_MSG_HEARTBEAT || type == BP_MSG_COMPLETE) {
        bp_pack_u64(&h->p, a);
        bp_pack_u64(&h->p, b);
    }
    assert_int_equal(bp_pack_finish(&h->p), BP_OK);
    assert_int_equal(bp_dispatch_on_sink(h->d, h->p.p, h->p.len, h->now), BP_OK);
}

static void hello(struct h *h, const char *rid)
{
    bp_pack_begin(&h->p, BP_MSG_HELLO, 0);
    bp_pack_u16(&h->p, 1);
    bp_pack_u16(&h->p, 0);
    bp_pack_u32(&h->p, 8);
    bp_pack_u8(&h->p, (uint8_t)strlen(rid));
    bp_pack_bytes(&h->p, rid, strlen(rid));
    assert_int_equal(bp_pack_finish(&h->p), BP_OK);
    assert_int_equal(bp_dispatch_on_worker(h->d, rid, strlen(rid), h->p.p, h->p.len, h->now),
                     BP_OK);
}

/* One turn of the ventilator's loop, minus the sockets. */
static int turn(struct h *h, int64_t at)
{
    h->now = at;
    h->b.nnotes = 0;
    int rc = bp_vbatch_before(&h->b, h->d, h->now);
    if (rc != BP_OK)
        return rc;
    bp_dispatch_on_timer(h->d, h->now);
    bp_vbatch_after(&h->b, h->d, h->now);
    drain(h);
    return BP_OK;
}

static void add(struct h *h, int n)
{
    for (int i = 0; i < n; i++)
        assert_int_equal(bp_dispatch_add(h->d, "t", 1, NULL), BP_OK);
}

/* --wait-workers 1 that never comes: a note every 5 s, then ETIMEDOUT at
 * --wait-timeout, and no input read before. */
static void t_no_worker_comes(void **state)
{
    (void)state;
    static struct h h;
    struct bp_vbatch_cfg c = cfg();
    start(&h, &c);
    assert_int_equal(bp_vbatch_may_read(&h.b), 0);
    int notes = 0;
    while (h.now < T0 + 59999) {
        int64_t next = bp_vbatch_next_deadline(&h.b);
        assert_true(next > h.now);
        assert_int_equal(turn(&h, next < T0 + 59999 ? next : T0 + 59999), BP_OK);
        notes += has_note(&h, BP_VB_WAITING);
    }
    assert_int_equal(notes, 11); /* at 5, 10, ... 55 s */
    assert_int_equal(turn(&h, T0 + 60000), BP_ETIMEDOUT);
    assert_true(has_note(&h, BP_VB_NO_WORKERS));
    end(&h);
}

/* The worker came, the sink never answers: ETIMEDOUT at the wait time. */
static void t_no_sink(void **state)
{
    (void)state;
    static struct h h;
    struct bp_vbatch_cfg c = cfg();
    start(&h, &c);
    hello(&h, "w1");
    assert_int_equal(turn(&h, T0 + 10), BP_OK);
    assert_true(has_note(&h, BP_VB_CONNECTED));
    assert_int_equal(bp_vbatch_may_read(&h.b), 1);
    assert_int_equal(turn(&h, T0 + 59000), BP_OK);
    assert_int_equal(turn(&h, T0 + 60000), BP_ETIMEDOUT);
    assert_true(has_note(&h, BP_VB_NO_SINK));
    end(&h);
}

/* The sink alive, no worker to take the tasks queued: nothing until the
 * wait time (10 s) is over, then NO_WORKER_NOW at `at`. */
static void no_worker_for_10s(struct h *h, int64_t at)
{
    for (int64_t t = T0 + 1000; t < T0 + 11000; t += 1000) {
        sink_says(h, BP_MSG_HEARTBEAT, 0, 1);
        assert_int_equal(turn(h, t), BP_OK);
        assert_int_equal(h->b.stopping, 0);
    }
    sink_says(h, BP_MSG_HEARTBEAT, 0, 1);
    assert_int_equal(turn(h, at), BP_OK);
    assert_true(has_note(h, BP_VB_NO_WORKER_NOW));
}

/* Tasks queued and every worker gone for the wait time: stop, END(1),
 * CLOSE with what was read (not resumable), over a second later. */
static void t_worker_gone_for_good(void **state)
{
    (void)state;
    static struct h h;
    struct bp_vbatch_cfg c = cfg();
    c.wait_timeout_ms = 10000;
    start(&h, &c);
    hello(&h, "w1");
    sink_says(&h, BP_MSG_HEARTBEAT, 0, 1);
    add(&h, 20);
    assert_int_equal(turn(&h, T0 + 1), BP_OK);
    bp_dispatch_worker_gone(h.d, "w1", 2, h.now);
    no_worker_for_10s(&h, T0 + 11001);
    assert_int_equal(h.b.stopping, 1);
    assert_int_equal(h.b.result, BP_ETIMEDOUT);
    assert_int_equal(h.closes, 1);
    /* no live worker to send END to: over at once */
    assert_int_equal(bp_vbatch_over(&h.b, h.d, h.now), 1);
    end(&h);
}

/* --require with no matching worker: --wait-workers counts only the
 * matching ones; and once the last matching one is gone, the workers that
 * do not match do not keep the batch waiting: NO_WORKER_NOW after the
 * wait time, as with no worker at all. */
static void t_no_matching_worker(void **state)
{
    (void)state;
    static struct h h;
    struct bp_vbatch_cfg c = cfg();
    c.wait_timeout_ms = 10000;
    g_match = id_starts_with_m;
    start(&h, &c);
    hello(&h, "w1");
    sink_says(&h, BP_MSG_HEARTBEAT, 0, 1);
    assert_int_equal(turn(&h, T0 + 1), BP_OK);
    assert_int_equal(h.b.waiting, 1); /* w1 does not count */
    hello(&h, "m1");
    assert_int_equal(turn(&h, T0 + 2), BP_OK);
    assert_true(has_note(&h, BP_VB_CONNECTED));
    add(&h, 20);
    assert_int_equal(turn(&h, T0 + 3), BP_OK);
    bp_dispatch_worker_gone(h.d, "m1", 2, h.now);
    no_worker_for_10s(&h, T0 + 11004);
    assert_int_equal(h.b.result, BP_ETIMEDOUT);
    end(&h);
    /* never one: --wait-workers gives up */
    start(&h, &c);
    hello(&h, "w1");
    sink_says(&h, BP_MSG_HEARTBEAT, 0, 1);
    assert_int_equal(turn(&h, T0 + 9999), BP_OK);
    assert_int_equal(turn(&h, T0 + 10000), BP_ETIMEDOUT);
    assert_true(has_note(&h, BP_VB_NO_WORKERS));
    end(&h);
    g_match = NULL;
}

/* A stop (signal) on a batch with a journal: END(stopping), and no CLOSE
 * (a resume will read more). */
static void t_stop_resumable(void **state)
{
    (void)state;
    static struct h h;
    struct bp_vbatch_cfg c = cfg();
    c.resumable = 1;
    start(&h, &c);
    hello(&h, "w1");
    sink_says(&h, BP_MSG_HEARTBEAT, 0, 1);
    add(&h, 5);
    assert_int_equal(turn(&h, T0 + 1), BP_OK);
    bp_vbatch_stop(&h.b, h.d, h.now);
    assert_true(has_note(&h, BP_VB_STOPPING));
    drain(&h);
    assert_int_equal(h.closes, 0);
    assert_int_equal(h.last_end, BP_END_STOPPING);
    assert_int_equal(h.b.result, BP_EINCOMPLETE);
    assert_int_equal(bp_vbatch_may_read(&h.b), 0);
    assert_int_equal(bp_vbatch_over(&h.b, h.d, h.now), 1); /* END went out to w1 */
    end(&h);
}

/* Every task final but no COMPLETE: finished after complete_wait_ms, with
 * a note; --halt now,fail=1: END(halted) so workers stop what runs. */
static void t_complete_wait_and_halt(void **state)
{
    (void)state;
    static struct h h;
    struct bp_vbatch_cfg c = cfg();
    start(&h, &c);
    hello(&h, "w1");
    sink_says(&h, BP_MSG_HEARTBEAT, 0, 1);
    add(&h, 1);
    bp_vbatch_input_end(&h.b, h.d, h.now, BP_EXIT_INFO, 0);
    assert_int_equal(turn(&h, T0 + 1), BP_OK);
    bp_pack_begin(&h.p, BP_MSG_ACK, BATCH);
    bp_pack_ack(&h.p, 0, 1, BP_ACK_OK);
    assert_int_equal(bp_pack_finish(&h.p), BP_OK);
    assert_int_equal(bp_dispatch_on_sink(h.d, h.p.p, h.p.len, h.now), BP_OK);
    assert_int_equal(turn(&h, T0 + 2), BP_OK);
    assert_int_equal(turn(&h, T0 + 5001), BP_OK);
    assert_int_equal(h.last_end, 0);
    assert_int_equal(bp_vbatch_next_deadline(&h.b), T0 + 2 + 5000);
    assert_int_equal(turn(&h, T0 + 5002), BP_OK);
    assert_true(has_note(&h, BP_VB_UNCONFIRMED));
    assert_int_equal(bp_vbatch_over(&h.b, h.d, h.now), 1);
    end(&h);

    c.halt_when = BP_HALT_NOW;
    c.halt_fail = 1;
    start(&h, &c);
    hello(&h, "w1");
    sink_says(&h, BP_MSG_HEARTBEAT, 0, 1);
    add(&h, 3);
    assert_int_equal(turn(&h, T0 + 1), BP_OK); /* 3 tasks out on w1 */
    bp_pack_begin(&h.p, BP_MSG_ACK, BATCH);
    bp_pack_ack(&h.p, 0, 1, BP_ACK_FAILED);
    assert_int_equal(bp_pack_finish(&h.p), BP_OK);
    assert_int_equal(bp_dispatch_on_sink(h.d, h.p.p, h.p.len, h.now), BP_OK);
    assert_int_equal(turn(&h, T0 + 2), BP_OK);
    assert_true(has_note(&h, BP_VB_HALTED));
    assert_true(strstr(h.b.why, "--halt now,fail=1") != NULL);
    /* the sink acknowledges the two halted reports and confirms */
    bp_pack_begin(&h.p, BP_MSG_ACK, BATCH);
    bp_pack_ack(&h.p, 1, 1, BP_ACK_FAILED);
    bp_pack_ack(&h.p, 2, 1, BP_ACK_FAILED);
    assert_int_equal(bp_pack_finish(&h.p), BP_OK);
    assert_int_equal(bp_dispatch_on_sink(h.d, h.p.p, h.p.len, h.now), BP_OK);
    sink_says(&h, BP_MSG_COMPLETE, 0, 3);
    assert_int_equal(turn(&h, T0 + 3), BP_OK);
    assert_int_equal(h.last_end, BP_END_HALTED);
    end(&h);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(t_no_matching_worker),
        cmocka_unit_test(t_no_worker_comes),
        cmocka_unit_test(t_no_sink),
        cmocka_unit_test(t_worker_gone_for_good),
        cmocka_unit_test(t_stop_resumable),
        cmocka_unit_test(t_complete_wait_and_halt),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
