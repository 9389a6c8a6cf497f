/* Unit tests for the worker's side of the task channel (bp_wchan.c):
 * HELLO and its backoff, liveness, RESYNC, credit, RTT, --host-timeout,
 * on a fake clock: a 60-second outage runs in microseconds. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include "bp.h"
#include "bp_frame.h"
#include "bp_wchan.h"

#define T0 1000000
#define BATCH 0x77ull

static struct bp_pack pk;

static struct bp_msg msg_of(int type, uint32_t n, uint64_t a, uint64_t b)
{
    bp_pack_begin(&pk, type, BATCH);
    if (type == BP_MSG_HEARTBEAT) {
        bp_pack_u64(&pk, a);
        bp_pack_u64(&pk, b);
    }
    for (uint32_t i = 0; i < n; i++)
        bp_pack_task(&pk, i, 1, 0, "t", 1);
    assert_int_equal(bp_pack_finish(&pk), BP_OK);
    struct bp_msg m;
    assert_int_equal(bp_msg_decode(&m, pk.p, pk.len, 1 << 16), BP_OK);
    return m;
}

static void cfg_of(struct bp_wchan_cfg *c, int host_timeout_ms)
{
    c->hb_ms = 1000;
    c->liveness = 3;
    c->max_backoff_ms = 30000;
    c->host_timeout_ms = host_timeout_ms;
}

/* The worker's loop in short: sleep to the next deadline, run the timer,
 * send what is due. Returns the on_timer bits seen; *reopens gets the
 * times of REOPEN. */
static int run_until(struct bp_wchan *c, int64_t *now, int64_t until, int64_t *reopens,
                     int *nreopen)
{
    int seen = 0;
    while (*now < until) {
        int64_t next = bp_wchan_next_deadline(c);
        assert_true(next > *now || bp_wchan_due(c, *now)); /* never a busy loop */
        if (next > until)
            next = until;
        if (next > *now)
            *now = next;
        int what = bp_wchan_on_timer(c, *now);
        seen |= what;
        if ((what & BP_WC_REOPEN) && reopens)
            reopens[(*nreopen)++] = *now;
        int due = bp_wchan_due(c, *now);
        if (due == BP_MSG_HELLO)
            bp_wchan_hello_sent(c, *now, 4, 1);
        else if (due == BP_MSG_HEARTBEAT)
            bp_wchan_hb_sent(c, *now);
        if (what & BP_WC_GIVE_UP)
            break;
    }
    return seen;
}

/* A ventilator that never answers: HELLO, then a new connection after
 * 3 s, 6 s, 12 s, 24 s and 30 s, 30 s ... (the backoff doubles, capped). */
static void t_backoff(void **state)
{
    (void)state;
    struct bp_wchan c;
    struct bp_wchan_cfg cfg;
    cfg_of(&cfg, 0);
    bp_wchan_init(&c, &cfg, T0);
    int64_t now = T0;
    assert_int_equal(bp_wchan_due(&c, now), BP_MSG_HELLO);
    int64_t at[32];
    int n = 0;
    int seen = run_until(&c, &now, T0 + 150000, at, &n);
    assert_int_equal(seen & (BP_WC_SILENT | BP_WC_GIVE_UP), 0);
    const int64_t want[] = {3000, 9000, 21000, 45000, 75000, 105000, 135000};
    assert_int_equal(n, 7);
    for (int i = 0; i < n; i++)
        assert_true(at[i] - T0 == want[i]);
    assert_int_equal(c.state, BP_WC_HELLO);
}

/* Connected, then a 60-second outage: one SILENT reopen after 3 s of
 * silence, then HELLOs with backoff; the answer after the outage makes
 * the channel active again with the backoff reset. */
static void t_outage_60s(void **state)
{
    (void)state;
    struct bp_wchan c;
    struct bp_wchan_cfg cfg;
    cfg_of(&cfg, 0);
    bp_wchan_init(&c, &cfg, T0);
    int64_t now = T0;
    bp_wchan_hello_sent(&c, now, 4, 1);
    now += 5;
    struct bp_msg m = msg_of(BP_MSG_TASKS, 2, 0, 0);
    assert_int_equal(bp_wchan_on_msg(&c, &m, now), BP_WC_CONNECTED);
    assert_int_equal(c.state, BP_WC_ACTIVE);
    assert_int_equal(c.credit_out, 2);
    assert_int_equal(bp_wchan_due(&c, now), BP_MSG_HEARTBEAT); /* at once: the RTT */
    bp_wchan_hb_sent(&c, now);
    /* its answer: RTT 5 ms */
    now += 5;
    m = msg_of(BP_MSG_HEARTBEAT, 0, 0, (uint64_t)(now - 5) | 1);
    assert_int_equal(bp_wchan_on_msg(&c, &m, now), 0);
    assert_true(c.rtt_ms > 1.0 && c.rtt_ms <= 5.0);
    int64_t last = now;
    /* the ventilator is gone for 60 s */
    int64_t at[32];
    int n = 0;
    int seen = run_until(&c, &now, last + 60000, at, &n);
    assert_true(seen & BP_WC_SILENT);
    assert_true(at[0] == last + 3000); /* silent for liveness x heartbeat */
    assert_int_equal(n, 5);            /* +3, then unanswered at +6, +12, +24, +48 */
    assert_true(at[4] - at[3] == 24000);
    assert_int_equal(c.state, BP_WC_HELLO);
    assert_int_equal(c.credit_out, 4); /* the last HELLO's */
    /* it is back */
    m = msg_of(BP_MSG_HEARTBEAT, 0, 0, 0);
    assert_int_equal(bp_wchan_on_msg(&c, &m, now), BP_WC_CONNECTED);
    assert_true(c.backoff_ms == 0);
    assert_int_equal(bp_wchan_due(&c, now), BP_MSG_HEARTBEAT);
}

/* --once --host-timeout: never connected, gives up host_timeout after the
 * start; once connected and lost, after host_timeout from the loss. */
static void t_host_timeout(void **state)
{
    (void)state;
    struct bp_wchan c;
    struct bp_wchan_cfg cfg;
    cfg_of(&cfg, 60000);
    bp_wchan_init(&c, &cfg, T0);
    int64_t now = T0;
    int seen = run_until(&c, &now, T0 + 100000, NULL, NULL);
    assert_true(seen & BP_WC_GIVE_UP);
    assert_true(now == T0 + 60000);
    assert_int_equal(bp_wchan_on_timer(&c, now + 1) & BP_WC_GIVE_UP, 0); /* said once */

    bp_wchan_init(&c, &cfg, T0);
    now = T0;
    bp_wchan_hello_sent(&c, now, 1, 1);
    struct bp_msg m = msg_of(BP_MSG_HEARTBEAT, 0, 0, 0);
    now = T0 + 50000;
    assert_int_equal(bp_wchan_on_msg(&c, &m, now), BP_WC_CONNECTED);
    seen = run_until(&c, &now, T0 + 200000, NULL, NULL);
    assert_true(seen & BP_WC_GIVE_UP);
    assert_true(now == T0 + 50000 + 3000 + 60000); /* lost at +53 s, given up 60 s later */
}

/* RESYNC: the queue goes, HELLO is due at once, credit starts over. A full
 * pipe retries the HELLO in 100 ms. Credit: what tasks used is given back
 * only up to the room, and only while active. */
static void t_resync_and_credit(void **state)
{
    (void)state;
    struct bp_wchan c;
    struct bp_wchan_cfg cfg;
    cfg_of(&cfg, 0);
    bp_wchan_init(&c, &cfg, T0);
    int64_t now = T0;
    assert_true(bp_wchan_grant(&c, 10) == 0); /* not active: nothing */
    bp_wchan_hello_sent(&c, now, 10, 1);
    struct bp_msg m = msg_of(BP_MSG_TASKS, 4, 0, 0);
    assert_int_equal(bp_wchan_on_msg(&c, &m, now), BP_WC_CONNECTED);
    assert_true(c.batch == BATCH);
    assert_true(c.credit_out == 6);
    assert_true(bp_wchan_grant(&c, 10) == 4);
    bp_wchan_granted(&c, 4);
    assert_true(bp_wchan_grant(&c, 10) == 0);
    assert_true(bp_wchan_grant(&c, 3) == 0);
    m = msg_of(BP_MSG_RESYNC, 0, 0, 0);
    assert_int_equal(bp_wchan_on_msg(&c, &m, now + 1), BP_WC_DROP);
    assert_int_equal(c.state, BP_WC_HELLO);
    assert_true(c.credit_out == 0);
    assert_int_equal(bp_wchan_due(&c, now + 1), BP_MSG_HELLO);
    bp_wchan_hello_sent(&c, now + 1, 5, 0); /* the pipe is full */
    assert_int_equal(bp_wchan_due(&c, now + 50), 0);
    assert_int_equal(bp_wchan_due(&c, now + 101), BP_MSG_HELLO);
    bp_wchan_hello_sent(&c, now + 101, 5, 1);
    assert_true(c.credit_out == 5);
    assert_true(bp_wchan_next_deadline(&c) == now + 101 + 3000);
}

static int teardown(void **state)
{
    (void)state;
    bp_pack_free(&pk);
    return 0;
}

int main(void)
{
    bp_pack_init(&pk);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(t_backoff),
        cmocka_unit_test(t_outage_60s),
        cmocka_unit_test(t_host_timeout),
        cmocka_unit_test(t_resync_and_credit),
    };
    return cmocka_run_group_tests(tests, NULL, teardown);
}
