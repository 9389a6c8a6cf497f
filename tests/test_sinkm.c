/* Unit tests for the sink's decisions (bp_sinkm.c) with no sockets: fake
 * ops record what would be sent and written. Forged control, CLOSE races,
 * late duplicates, results before BEGIN, a new batch over an unfinished
 * one, a resume, the bounds of what is held. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <string.h>

#include "bp.h"
#include "bp_frame.h"
#include "bp_sinkm.h"

#define B1 0xB1ull
#define B2 0xB2ull
#define T0 1000000

struct rec {
    int sends, sends_to_x, acks, completes, begins, abandons, totals, notes_forged, dropped;
    int accepted[64], dups[64], retries[64];
    uint8_t last_ack_kind[64];
    int vent_gone; /* the probe finds the ventilator's connection closed */
    uint64_t last_hb_batch;
    int files_say, files_asked; /* what f_files answers (BP_SM_FILES_*), how often asked */
    uint8_t status[64];         /* of accepted results */
};

static struct rec R;
static struct bp_pack P;

static int f_send(void *arg, const uint8_t *rid, size_t rid_len, const void *data, size_t len)
{
    (void)arg;
    struct bp_msg m;
    assert_int_equal(bp_msg_decode(&m, data, len, 1 << 20), BP_OK);
    int to_vent = rid_len == 1 && rid[0] == 'V';
    if (to_vent && R.vent_gone)
        return BP_EIO;
    R.sends++;
    if (rid_len == 1 && rid[0] == 'X')
        R.sends_to_x++;
    if (m.type == BP_MSG_ACK) {
        R.acks++;
        size_t off = 0;
        struct bp_ack_rec a;
        while (bp_msg_next_ack(&m, &off, &a))
            if (a.id < 64)
                R.last_ack_kind[a.id] = a.kind;
    }
    if (m.type == BP_MSG_COMPLETE)
        R.completes++;
    if (m.type == BP_MSG_HEARTBEAT && bp_msg_u64(&m, 8))
        R.last_hb_batch = m.batch;
    return BP_OK;
}
static void f_begin(void *arg, uint64_t batch, int restoring)
{
    (void)arg;
    (void)batch;
    (void)restoring;
    R.begins++;
}
static void f_abandon(void *arg)
{
    (void)arg;
    R.abandons++;
}
static void f_total(void *arg, int64_t total)
{
    (void)arg;
    (void)total;
    R.totals++;
}
static void f_result(void *arg, const struct bp_result_rec *r, const char *wid, int verdict)
{
    (void)arg;
    (void)wid;
    assert_true(r->id < 64);
    if (verdict == BP_RB_ACCEPT) {
        R.accepted[r->id]++;
        R.status[r->id] = r->status;
    }
    if (verdict == BP_RB_DUP)
        R.dups[r->id]++;
    if (verdict == BP_RB_RETRY)
        R.retries[r->id]++;
}
static void f_acks_full(void *arg)
{
    (void)arg;
}
static void f_note(void *arg, int what, const char *text, int64_t n)
{
    (void)arg;
    (void)text;
    if (what == BP_SM_FORGED)
        R.notes_forged++;
    if (what == BP_SM_DROPPED)
        R.dropped += (int)n;
}
static int f_files(void *arg, const struct bp_result_rec *r, char *why, size_t why_len)
{
    (void)arg;
    (void)r;
    R.files_asked++;
    snprintf(why, why_len, "exists with other contents: x");
    return R.files_say;
}
static const struct bp_sinkm_ops OPS = {f_send,   f_begin,     f_abandon, f_total,
                                        f_result, f_acks_full, f_files,   f_note};

static void start(struct bp_sinkm *sm)
{
    memset(&R, 0, sizeof R);
    struct bp_sinkm_cfg c = {.dead_ms = 3000, .max_rec = 1 << 16, .eager_acks = 1};
    bp_sinkm_init(sm, &c, &OPS, NULL);
}

/* Sends the message built in P from peer (one byte of routing id). */
static void from(struct bp_sinkm *sm, char peer, int host_key, int64_t now)
{
    assert_int_equal(bp_pack_finish(&P), BP_OK);
    zmq_msg_t raw;
    assert_int_equal(zmq_msg_init_size(&raw, P.len), 0);
    memcpy(zmq_msg_data(&raw), P.p, P.len);
    struct bp_msg m;
    assert_int_equal(bp_msg_decode(&m, zmq_msg_data(&raw), P.len, 1 << 16), BP_OK);
    uint8_t rid = (uint8_t)peer;
    bp_sinkm_on_msg(sm, &rid, 1, &raw, &m, host_key, now);
    zmq_msg_close(&raw);
}

static void ctl(struct bp_sinkm *sm, char peer, int type, uint64_t batch, int64_t val, int key)
{
    bp_sinkm_flush_acks(sm);
    bp_pack_begin(&P, type, batch);
    if (type == BP_MSG_CLOSE || type == BP_MSG_EXTENT)
        bp_pack_u64(&P, (uint64_t)val);
    if (type == BP_MSG_HEARTBEAT) {
        bp_pack_u64(&P, (uint64_t)val);
        bp_pack_u64(&P, 0);
    }
    from(sm, peer, key, T0);
}

/* A RESULTS message of one record. */
static void res(struct bp_sinkm *sm, char peer, uint64_t batch, uint64_t id, int status, int final,
                uint16_t attempt, int64_t now)
{
    struct bp_result_rec r = {.id = id,
                              .attempt = attempt,
                              .status = (uint8_t)status,
                              .flags = final ? BP_RF_FINAL : 0,
                              .data = (const uint8_t *)"r",
                              .len = 1};
    bp_pack_begin(&P, BP_MSG_RESULTS, batch);
    bp_pack_u8(&P, 1);
    bp_pack_bytes(&P, &peer, 1);
    bp_pack_result(&P, &r);
    from(sm, peer, -1, now);
    bp_sinkm_flush_acks(sm); /* the end of the loop's turn */
}

/* A RESULTS message of one final ok record with FILES (n files). */
static void res_files(struct bp_sinkm *sm, uint64_t id, uint16_t attempt, int n)
{
    struct bp_result_rec r = {.id = id,
                              .attempt = attempt,
                              .status = BP_ST_OK,
                              .flags = BP_RF_FINAL | BP_RF_FILES,
                              .nfiles = (uint8_t)n,
                              .data = (const uint8_t *)"r",
                              .len = 1};
    bp_pack_begin(&P, BP_MSG_RESULTS, B1);
    bp_pack_u8(&P, 1);
    bp_pack_bytes(&P, "W", 1);
    bp_pack_result(&P, &r);
    from(sm, 'W', -1, T0);
    bp_sinkm_flush_acks(sm);
}

/* A ventilator V that began batch B1 and announced n ids. */
static void begun(struct bp_sinkm *sm, int n)
{
    ctl(sm, 'V', BP_MSG_BEGIN, B1, 0, -1);
    ctl(sm, 'V', BP_MSG_EXTENT, B1, n, -1);
    ctl(sm, 'V', BP_MSG_HEARTBEAT, B1, 7, -1);
    assert_int_equal(sm->active, 1);
    assert_int_equal((int)sm->vent_len, 1);
    assert_true(R.last_hb_batch == B1);
}

/* Plain mode: nobody takes over from a live ventilator; once its
 * connection is gone, a restarted one may. */
static void t_forged_control(void **state)
{
    (void)state;
    struct bp_sinkm sm;
    start(&sm);
    begun(&sm, 4);
    ctl(&sm, 'X', BP_MSG_CLOSE, B1, 1, -1); /* a batch of one */
    ctl(&sm, 'X', BP_MSG_BEGIN, B2, 0, -1); /* a new batch */
    ctl(&sm, 'X', BP_MSG_EXTENT, B1, 1000, -1);
    res(&sm, 'X', B1, 0, BP_ST_LOST, 1, 1, T0); /* only the ventilator gives up */
    assert_int_equal(R.notes_forged, 4);
    assert_true(sm.batch == B1 && sm.rb.total < 0 && sm.rb.extent == 4);
    assert_int_equal(R.accepted[0], 0);
    /* a ping on the batch from X is answered, but X is not adopted */
    ctl(&sm, 'X', BP_MSG_HEARTBEAT, B1, 9, -1);
    assert_true(sm.vent[0] == 'V');
    /* the ventilator's connection is gone: X (a restarted one) may speak */
    R.vent_gone = 1;
    ctl(&sm, 'X', BP_MSG_CLOSE, B1, 4, -1);
    assert_true(sm.vent[0] == 'X');
    assert_true(sm.rb.total == 4);
    bp_sinkm_free(&sm);

    /* CURVE: only the host's own key, whatever the connection */
    start(&sm);
    ctl(&sm, 'X', BP_MSG_BEGIN, B1, 0, 0);
    assert_int_equal(sm.active, 0);
    assert_int_equal(R.notes_forged, 1);
    ctl(&sm, 'V', BP_MSG_BEGIN, B1, 0, 1);
    assert_int_equal(sm.active, 1);
    bp_sinkm_free(&sm);
}

/* Results before the EXTENT that announces them are held, then taken;
 * results beyond the batch held before CLOSE are dropped by it; a CLOSE
 * with another size is forged. Late duplicates are acknowledged again
 * with the first result's outcome. */
static void t_close_races_and_dups(void **state)
{
    (void)state;
    struct bp_sinkm sm;
    start(&sm);
    begun(&sm, 2);
    res(&sm, 'W', B1, 3, BP_ST_OK, 1, 1, T0); /* EXTENT(4) still on its way */
    res(&sm, 'W', B1, 5, BP_ST_OK, 1, 1, T0); /* never a task of this batch */
    assert_int_equal(R.accepted[3], 0);
    assert_int_equal(sm.nhold, 2);
    ctl(&sm, 'V', BP_MSG_EXTENT, B1, 4, -1);
    assert_int_equal(R.accepted[3], 1);
    assert_int_equal(sm.nhold, 1);
    ctl(&sm, 'V', BP_MSG_CLOSE, B1, 4, -1);
    assert_int_equal(R.totals, 1);
    assert_int_equal(sm.nhold, 0);
    assert_int_equal(R.dropped, 1);
    assert_int_equal(R.accepted[5], 0);
    ctl(&sm, 'V', BP_MSG_CLOSE, B1, 4, -1); /* a repeat: nothing new */
    assert_int_equal(R.totals, 1);
    ctl(&sm, 'V', BP_MSG_CLOSE, B1, 3, -1); /* said once */
    assert_int_equal(R.notes_forged, 1);
    /* first result wins; a late one gets the first's outcome */
    res(&sm, 'W', B1, 0, BP_ST_FAILED, 1, 1, T0);
    res(&sm, 'W', B1, 0, BP_ST_OK, 1, 2, T0);
    assert_int_equal(R.accepted[0], 1);
    assert_int_equal(R.dups[0], 1);
    assert_int_equal(R.last_ack_kind[0], BP_ACK_FAILED);
    /* a failed try with retries left: a retry, not a result */
    res(&sm, 'W', B1, 1, BP_ST_FAILED, 0, 1, T0);
    assert_int_equal(R.retries[1], 1);
    assert_int_equal(R.last_ack_kind[1], BP_ACK_RETRY);
    res(&sm, 'W', B1, 1, BP_ST_OK, 1, 2, T0);
    res(&sm, 'W', B1, 2, BP_ST_OK, 1, 1, T0);
    assert_int_equal(bp_rbook_complete(&sm.rb), 1);
    bp_sinkm_send_complete(&sm, sm.rb.ok, sm.rb.failed_n);
    assert_int_equal(R.completes, 1);
    bp_sinkm_free(&sm);
}

/* A sink restarted without the batch: results of tasks already out
 * arrive before the ventilator's BEGIN. Held, then taken once BEGIN and
 * EXTENT come; with no BEGIN ever, they expire as stale, unacknowledged. */
static void t_results_before_begin(void **state)
{
    (void)state;
    struct bp_sinkm sm;
    start(&sm);
    res(&sm, 'W', B1, 0, BP_ST_OK, 1, 1, T0);
    res(&sm, 'W', B1, 1, BP_ST_OK, 1, 1, T0);
    assert_int_equal(sm.nhold, 2);
    assert_int_equal(R.acks, 0);
    begun(&sm, 2);
    assert_int_equal(R.accepted[0] + R.accepted[1], 2);
    assert_int_equal(sm.nhold, 0);
    assert_true(R.acks > 0);
    bp_sinkm_free(&sm);

    start(&sm);
    res(&sm, 'W', B2, 0, BP_ST_OK, 1, 1, T0);
    assert_true(bp_sinkm_next_deadline(&sm) == T0 + 3001);
    bp_sinkm_on_timer(&sm, T0 + 3000);
    assert_int_equal(sm.nhold, 1);
    bp_sinkm_on_timer(&sm, T0 + 3001);
    assert_int_equal(sm.nhold, 0);
    assert_int_equal(sm.stale, 1);
    assert_int_equal(R.acks, 0);
    bp_sinkm_free(&sm);
}

/* A new batch over one with results: the old one is abandoned (the
 * caller's summary), the new one begins; results of the old are stale. */
static void t_new_batch_over_unfinished(void **state)
{
    (void)state;
    struct bp_sinkm sm;
    start(&sm);
    begun(&sm, 3);
    res(&sm, 'W', B1, 0, BP_ST_OK, 1, 1, T0);
    ctl(&sm, 'V', BP_MSG_BEGIN, B2, 0, -1);
    assert_int_equal(R.abandons, 1);
    assert_int_equal(R.begins, 2);
    assert_true(sm.batch == B2);
    res(&sm, 'W', B1, 1, BP_ST_OK, 1, 1, T0);
    assert_int_equal(R.accepted[1], 0);
    assert_int_equal(sm.stale, 1);
    /* a new BEGIN before any result: no abandon */
    ctl(&sm, 'V', BP_MSG_BEGIN, B1, 0, -1);
    assert_int_equal(R.abandons, 1);
    bp_sinkm_free(&sm);
}

/* A resume: the journal's results are back in the book; a result sent
 * again is a duplicate, acknowledged with the stored outcome. */
static void t_resume(void **state)
{
    (void)state;
    struct bp_sinkm sm;
    start(&sm);
    bp_sinkm_begin(&sm, B1, 1, T0);
    assert_int_equal(bp_rbook_restore(&sm.rb, 0, 1), 1);
    assert_int_equal(bp_rbook_restore(&sm.rb, 1, 0), 1);
    ctl(&sm, 'V', BP_MSG_HEARTBEAT, B1, 5, -1); /* it knows the batch: no batch 0 */
    assert_true(R.last_hb_batch == B1);
    res(&sm, 'W', B1, 1, BP_ST_OK, 1, 2, T0);
    assert_int_equal(R.dups[1], 1);
    assert_int_equal(R.last_ack_kind[1], BP_ACK_FAILED);
    bp_sinkm_free(&sm);
}

/* What is held is bounded: past HOLD_BYTES a message is dropped, counted. */
static void t_hold_bounds(void **state)
{
    (void)state;
    struct bp_sinkm sm;
    start(&sm);
    begun(&sm, 1);
    static uint8_t big[1 << 16];
    struct bp_result_rec r = {.id = 1,
                              .attempt = 1,
                              .status = BP_ST_OK,
                              .flags = BP_RF_FINAL,
                              .data = big,
                              .len = sizeof big - 64};
    int n = (int)(BP_SINKM_HOLD_BYTES / sizeof big) + 4;
    for (int i = 0; i < n; i++) {
        bp_pack_begin(&P, BP_MSG_RESULTS, B1);
        bp_pack_u8(&P, 1);
        bp_pack_bytes(&P, "W", 1);
        bp_pack_result(&P, &r);
        from(&sm, 'W', -1, T0);
    }
    assert_true(sm.hold_bytes <= BP_SINKM_HOLD_BYTES);
    assert_true(sm.nhold < n);
    assert_true(R.dropped >= 4);
    bp_sinkm_free(&sm);
}

/* A result with returned files: asked about only when the book would
 * take it; torn is not acknowledged; a conflict becomes a final
 * file-error acknowledged failed. */
static void t_files(void **state)
{
    (void)state;
    struct bp_sinkm sm;
    start(&sm);
    begun(&sm, 8);
    R.files_say = BP_SM_FILES_TORN;
    int acks = R.acks;
    res_files(&sm, 1, 1, 2);
    assert_int_equal(R.files_asked, 1);
    assert_int_equal(R.accepted[1], 0);
    assert_int_equal(R.acks, acks);
    R.files_say = BP_SM_FILES_CONFLICT;
    res_files(&sm, 1, 2, 2);
    assert_int_equal(R.accepted[1], 1);
    assert_int_equal(R.status[1], BP_ST_FILEERR);
    assert_int_equal(R.last_ack_kind[1], BP_ACK_FAILED);
    R.files_say = BP_SM_FILES_READY;
    res_files(&sm, 2, 1, 1);
    assert_int_equal(R.status[2], BP_ST_OK);
    assert_int_equal(R.last_ack_kind[2], BP_ACK_OK);
    /* a duplicate and an unannounced id are not asked about */
    res_files(&sm, 2, 2, 1);
    res_files(&sm, 50, 1, 1);
    assert_int_equal(R.files_asked, 3);
    assert_int_equal(R.dups[2], 1);
    bp_sinkm_free(&sm);
}

int main(void)
{
    bp_pack_init(&P);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(t_forged_control),
        cmocka_unit_test(t_close_races_and_dups),
        cmocka_unit_test(t_results_before_begin),
        cmocka_unit_test(t_new_batch_over_unfinished),
        cmocka_unit_test(t_resume),
        cmocka_unit_test(t_hold_bounds),
        cmocka_unit_test(t_files),
    };
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    bp_pack_free(&P);
    return rc;
}
