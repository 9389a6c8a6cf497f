/* Unit tests for the sink's book of a batch (bp_rbook.c): which ids belong
 * to the batch, first result wins, completion. No sockets, no clock. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdlib.h>

#include "bp.h"
#include "bp_frame.h"
#include "bp_rbook.h"

static int res(struct bp_rbook *b, uint64_t id, int ok)
{
    uint8_t ack = 0xff;
    int v = bp_rbook_result(b, id, 1, ok, 1, &ack);
    if (v == BP_RB_ACCEPT || v == BP_RB_DUP)
        assert_true(ack == BP_ACK_OK || ack == BP_ACK_FAILED);
    return v;
}

/* The attack of issue #18: a peer that joined as a worker (so it knows the
 * batch id) sends results for ids far beyond the batch before the
 * ventilator's CLOSE. Before: those inside the old 2^20 id window were
 * written and counted, and "ok + failed >= total" called the batch
 * complete with real tasks missing. Now: never written, never counted,
 * and complete only when every id in [0, total) is in. */
static void t_far_ids_before_close(void **state)
{
    (void)state;
    struct bp_rbook b;
    bp_rbook_init(&b);
    assert_int_equal(bp_rbook_extent(&b, 2000), 1);
    /* the honest worker returns all but 4 of the real tasks */
    for (uint64_t id = 0; id < 2000; id++)
        if (id != 7 && id != 500 && id != 1200 && id != 1999)
            assert_int_equal(res(&b, id, 1), BP_RB_ACCEPT);
    /* the foreign peer: ids near and far beyond the batch */
    srand(18);
    int early = 0, foreign = 0;
    uint64_t ids[] = {2000,
                      2001,
                      2047,
                      4000,
                      100000,
                      (uint64_t)1 << 19,
                      ((uint64_t)1 << 20) - 1,
                      (uint64_t)1 << 32,
                      UINT64_MAX};
    for (size_t i = 0; i < sizeof ids / sizeof ids[0]; i++) {
        int v = res(&b, ids[i], 1);
        assert_true(v == BP_RB_EARLY || v == BP_RB_FOREIGN);
        early += v == BP_RB_EARLY;
        foreign += v == BP_RB_FOREIGN;
    }
    for (int i = 0; i < 1000; i++) {
        uint64_t id = 2000 + ((uint64_t)rand() << 16 ^ (uint64_t)rand());
        int v = res(&b, id, 1);
        assert_true(v == BP_RB_EARLY || v == BP_RB_FOREIGN);
    }
    assert_true(early > 0 && foreign > 0);
    assert_int_equal(b.ok, 1996);
    /* CLOSE(2000): the batch is not complete, 4 are missing */
    assert_int_equal(bp_rbook_close(&b, 2000), 1);
    assert_int_equal(bp_rbook_complete(&b), 0);
    assert_int_equal(bp_rbook_missing(&b), 4);
    /* after CLOSE, beyond the batch is foreign, never early */
    assert_int_equal(res(&b, 2000, 1), BP_RB_FOREIGN);
    assert_int_equal(res(&b, 2100, 1), BP_RB_FOREIGN);
    assert_int_equal(b.ok, 1996);
    /* the real ones arrive */
    assert_int_equal(res(&b, 7, 1), BP_RB_ACCEPT);
    assert_int_equal(res(&b, 500, 0), BP_RB_ACCEPT);
    assert_int_equal(res(&b, 1200, 1), BP_RB_ACCEPT);
    assert_int_equal(bp_rbook_complete(&b), 0);
    assert_int_equal(res(&b, 1999, 1), BP_RB_ACCEPT);
    assert_int_equal(bp_rbook_complete(&b), 1);
    assert_int_equal(bp_rbook_missing(&b), 0);
    assert_int_equal(b.ok, 1999);
    assert_int_equal(b.failed_n, 1);
    assert_true(b.ok + b.failed_n == 2000);
    bp_rbook_free(&b);
}

/* Nothing announced: every result waits or is foreign. EARLY ids become
 * acceptable once the extent passes them. */
static void t_extent(void **state)
{
    (void)state;
    struct bp_rbook b;
    bp_rbook_init(&b);
    assert_int_equal(res(&b, 0, 1), BP_RB_EARLY);
    assert_int_equal(res(&b, BP_RBOOK_EARLY_WINDOW - 1, 1), BP_RB_EARLY);
    assert_int_equal(res(&b, BP_RBOOK_EARLY_WINDOW, 1), BP_RB_FOREIGN);
    assert_int_equal(b.ok, 0);
    assert_int_equal(bp_rbook_extent(&b, 10), 1);
    assert_int_equal(bp_rbook_extent(&b, 10), 0); /* a repeat */
    assert_int_equal(bp_rbook_extent(&b, 5), 0);  /* never shrinks */
    assert_true(b.extent == 10);
    assert_int_equal(res(&b, 0, 1), BP_RB_ACCEPT);
    assert_int_equal(res(&b, 9, 1), BP_RB_ACCEPT);
    assert_int_equal(res(&b, 10, 1), BP_RB_EARLY);
    /* CLOSE below the extent or below accepted ids: not the batch's size */
    assert_int_equal(bp_rbook_close(&b, 9), -1);
    assert_int_equal(bp_rbook_close(&b, 12), 1);
    assert_int_equal(bp_rbook_close(&b, 12), 0);
    assert_int_equal(bp_rbook_close(&b, 13), -1);  /* said once */
    assert_int_equal(bp_rbook_extent(&b, 13), -1); /* beyond the size */
    assert_int_equal(bp_rbook_extent(&b, 12), 0);
    assert_int_equal(res(&b, 11, 1), BP_RB_ACCEPT);
    assert_int_equal(res(&b, 12, 1), BP_RB_FOREIGN);
    assert_int_equal(bp_rbook_complete(&b), 0);
    for (uint64_t id = 1; id < 9; id++)
        assert_int_equal(res(&b, id, 1), BP_RB_ACCEPT);
    assert_int_equal(bp_rbook_complete(&b), 0);
    assert_int_equal(res(&b, 10, 1), BP_RB_ACCEPT);
    assert_int_equal(bp_rbook_complete(&b), 1);
    bp_rbook_free(&b);
}

/* First result wins; duplicates are acknowledged with the stored outcome;
 * non-final failures are retries; counts for redelivery. */
static void t_first_wins_and_counts(void **state)
{
    (void)state;
    struct bp_rbook b;
    bp_rbook_init(&b);
    assert_int_equal(bp_rbook_extent(&b, 4), 1);
    uint8_t ack = 0;
    /* task 0: failed try (retry), then ok on attempt 2 */
    assert_int_equal(bp_rbook_result(&b, 0, 1, 0, 0, &ack), BP_RB_RETRY);
    assert_int_equal(ack, BP_ACK_RETRY);
    assert_int_equal(bp_rbook_result(&b, 0, 2, 1, 1, &ack), BP_RB_ACCEPT);
    assert_int_equal(ack, BP_ACK_OK);
    /* task 1: lost twice (attempt 3 is the first result), ok */
    assert_int_equal(bp_rbook_result(&b, 1, 3, 1, 1, &ack), BP_RB_ACCEPT);
    /* task 2: failed final; a late ok is a duplicate acked 'failed' */
    assert_int_equal(bp_rbook_result(&b, 2, 1, 0, 1, &ack), BP_RB_ACCEPT);
    assert_int_equal(ack, BP_ACK_FAILED);
    assert_int_equal(bp_rbook_result(&b, 2, 2, 1, 1, &ack), BP_RB_DUP);
    assert_int_equal(ack, BP_ACK_FAILED);
    /* a late failure of task 0 after its ok: duplicate, acked ok */
    assert_int_equal(bp_rbook_result(&b, 0, 1, 0, 0, &ack), BP_RB_DUP);
    assert_int_equal(ack, BP_ACK_OK);
    assert_int_equal(b.ok, 2);
    assert_int_equal(b.failed_n, 1);
    assert_int_equal(b.retried, 1);
    assert_int_equal(b.dups, 2);
    /* later deliveries: task 0 one (a retry), task 1 two (losses) */
    assert_int_equal(bp_rbook_redelivered(&b), 2);
    assert_int_equal(b.recovered, 1);
    assert_int_equal(bp_rbook_close(&b, 4), 1);
    assert_int_equal(bp_rbook_missing(&b), 1);
    bp_rbook_free(&b);
}

/* A made-up id far above the lowest missing one must not grow the bitmaps. */
static void t_id_window(void **state)
{
    (void)state;
    struct bp_rbook b;
    bp_rbook_init(&b);
    uint64_t big = (uint64_t)1 << 40;
    assert_int_equal(bp_rbook_extent(&b, big), 1);
    assert_int_equal(res(&b, BP_RBOOK_ID_WINDOW, 1), BP_RB_FOREIGN);
    assert_int_equal(res(&b, big - 1, 1), BP_RB_FOREIGN);
    assert_int_equal(res(&b, BP_RBOOK_ID_WINDOW - 1, 1), BP_RB_ACCEPT);
    assert_true(b.seen.words <= (BP_RBOOK_ID_WINDOW / 64) + 1);
    bp_rbook_free(&b);
}

/* Results read back from a journal: final, announced, counted. */
static void t_restore(void **state)
{
    (void)state;
    struct bp_rbook b;
    bp_rbook_init(&b);
    assert_int_equal(bp_rbook_restore(&b, 0, 1), 1);
    assert_int_equal(bp_rbook_restore(&b, 2, 0), 1);
    assert_int_equal(bp_rbook_restore(&b, 2, 0), 0);
    assert_true(b.extent == 3);
    assert_true(b.low == 1);
    uint8_t ack = 0;
    assert_int_equal(bp_rbook_result(&b, 2, 2, 1, 1, &ack), BP_RB_DUP);
    assert_int_equal(ack, BP_ACK_FAILED);
    assert_int_equal(bp_rbook_close(&b, 2), -1); /* id 2 was accepted */
    assert_int_equal(bp_rbook_close(&b, 3), 1);
    assert_int_equal(res(&b, 1, 1), BP_RB_ACCEPT);
    assert_int_equal(bp_rbook_complete(&b), 1);
    bp_rbook_free(&b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(t_far_ids_before_close),
        cmocka_unit_test(t_extent),
        cmocka_unit_test(t_first_wins_and_counts),
        cmocka_unit_test(t_id_window),
        cmocka_unit_test(t_restore),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
