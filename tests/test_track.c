/* Unit tests for task tracking: the id set and the reorder buffer
 * (bp_track.c). */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <string.h>

#include "bp_track.h"

/* ---- bp_idset ---------------------------------------------------------- */

static void t_idset_basic(void **state)
{
    (void)state;
    struct bp_idset s;
    bp_idset_init(&s);
    assert_int_equal(bp_idset_has(&s, 0), 0);
    assert_int_equal(bp_idset_has(&s, 12345), 0);
    assert_int_equal(bp_idset_count(&s), 0);
    assert_int_equal(bp_idset_add(&s, 0), 1);
    assert_int_equal(bp_idset_add(&s, 63), 1);
    assert_int_equal(bp_idset_add(&s, 64), 1);
    assert_int_equal(bp_idset_count(&s), 3);
    assert_int_equal(bp_idset_has(&s, 0), 1);
    assert_int_equal(bp_idset_has(&s, 1), 0);
    assert_int_equal(bp_idset_has(&s, 62), 0);
    assert_int_equal(bp_idset_has(&s, 63), 1);
    assert_int_equal(bp_idset_has(&s, 64), 1);
    assert_int_equal(bp_idset_has(&s, 65), 0);
    bp_idset_free(&s);
    assert_int_equal(bp_idset_has(&s, 0), 0);
    bp_idset_free(&s);
}

static void t_idset_dup(void **state)
{
    (void)state;
    struct bp_idset s;
    bp_idset_init(&s);
    assert_int_equal(bp_idset_add(&s, 7), 1);
    assert_int_equal(bp_idset_add(&s, 7), 0);
    assert_int_equal(bp_idset_add(&s, 7), 0);
    assert_int_equal(bp_idset_has(&s, 7), 1);
    bp_idset_free(&s);
}

static void t_idset_grow(void **state)
{
    (void)state;
    struct bp_idset s;
    bp_idset_init(&s);
    /* Sparse ids far apart force several growths; earlier bits survive. */
    const uint64_t ids[] = {5, 1023, 1024, 5000, 100000, 1000003};
    for (size_t i = 0; i < sizeof ids / sizeof ids[0]; i++)
        assert_int_equal(bp_idset_add(&s, ids[i]), 1);
    for (size_t i = 0; i < sizeof ids / sizeof ids[0]; i++) {
        assert_int_equal(bp_idset_has(&s, ids[i]), 1);
        assert_int_equal(bp_idset_add(&s, ids[i]), 0);
        assert_int_equal(bp_idset_has(&s, ids[i] - 1), ids[i] == 1024);
    }
    int count = 0;
    for (uint64_t id = 0; id < 1000010; id++)
        count += bp_idset_has(&s, id);
    assert_int_equal(count, 6);
    /* Dense run. */
    for (uint64_t id = 2000000; id < 2010000; id++)
        assert_int_equal(bp_idset_add(&s, id), 1);
    for (uint64_t id = 2000000; id < 2010000; id++)
        assert_int_equal(bp_idset_has(&s, id), 1);
    assert_int_equal(bp_idset_has(&s, 1999999), 0);
    assert_int_equal(bp_idset_has(&s, 2010000), 0);
    bp_idset_free(&s);
}

static void t_idset_limit(void **state)
{
    (void)state;
    struct bp_idset s;
    bp_idset_init(&s);
    assert_int_equal(bp_idset_add(&s, BP_IDSET_LIMIT), -1);
    assert_int_equal(bp_idset_add(&s, BP_IDSET_LIMIT + 1), -1);
    assert_int_equal(bp_idset_add(&s, UINT64_MAX), -1);
    assert_int_equal(bp_idset_has(&s, BP_IDSET_LIMIT), 0);
    assert_int_equal(bp_idset_has(&s, UINT64_MAX), 0);
    /* Refused ids allocate nothing. */
    assert_null(s.bits);
    assert_int_equal(s.words, 0);
    bp_idset_free(&s);
}

/* ---- bp_reorder -------------------------------------------------------- */

/* Messages over libzmq's inline size (33 bytes) are heap-allocated, so a
 * leaked one shows up under ASan. */
static void make_msg(zmq_msg_t *m, uint64_t id)
{
    char text[80];
    int n = snprintf(text, sizeof text, "result %llu padded to be heap-allocated by libzmq....",
                     (unsigned long long)id);
    assert_true(n > 40);
    assert_int_equal(zmq_msg_init_size(m, (size_t)n), 0);
    memcpy(zmq_msg_data(m), text, (size_t)n);
}

static void check_msg(zmq_msg_t *m, uint64_t id)
{
    char text[80];
    int n = snprintf(text, sizeof text, "result %llu padded to be heap-allocated by libzmq....",
                     (unsigned long long)id);
    assert_int_equal(zmq_msg_size(m), (size_t)n);
    assert_memory_equal(zmq_msg_data(m), text, (size_t)n);
}

static void put_ok(struct bp_reorder *r, uint64_t id)
{
    zmq_msg_t m;
    make_msg(&m, id);
    assert_int_equal(bp_reorder_put(r, id, &m, 0), 0);
    assert_int_equal(zmq_msg_size(&m), 0); /* moved out */
    zmq_msg_close(&m);
}

static void pop_expect(struct bp_reorder *r, uint64_t id)
{
    zmq_msg_t m;
    int skip = -1;
    zmq_msg_init(&m);
    assert_int_equal(bp_reorder_pop(r, &m, &skip), 1);
    assert_int_equal(skip, 0);
    check_msg(&m, id);
    zmq_msg_close(&m);
}

static void pop_expect_skip(struct bp_reorder *r)
{
    zmq_msg_t m;
    int skip = -1;
    zmq_msg_init(&m);
    assert_int_equal(bp_reorder_pop(r, &m, &skip), 1);
    assert_int_equal(skip, 1);
    assert_int_equal(zmq_msg_size(&m), 0);
    zmq_msg_close(&m);
}

static void pop_none(struct bp_reorder *r)
{
    zmq_msg_t m;
    int skip = -1;
    zmq_msg_init(&m);
    assert_int_equal(bp_reorder_pop(r, &m, &skip), 0);
    zmq_msg_close(&m);
}

static void t_reorder_empty(void **state)
{
    (void)state;
    struct bp_reorder r;
    bp_reorder_init(&r);
    pop_none(&r);
    assert_int_equal(r.next, 0);
    bp_reorder_free(&r);
}

static void t_reorder_in_order(void **state)
{
    (void)state;
    struct bp_reorder r;
    bp_reorder_init(&r);
    for (uint64_t id = 0; id < 200; id++) {
        put_ok(&r, id);
        assert_int_equal(r.held, 1);
        pop_expect(&r, id);
        assert_int_equal(r.held, 0);
        pop_none(&r);
    }
    assert_int_equal(r.next, 200);
    bp_reorder_free(&r);
}

static void t_reorder_out_of_order(void **state)
{
    (void)state;
    struct bp_reorder r;
    bp_reorder_init(&r);
    put_ok(&r, 2);
    put_ok(&r, 1);
    pop_none(&r); /* 0 missing */
    assert_int_equal(r.held, 2);
    put_ok(&r, 4);
    put_ok(&r, 0);
    pop_expect(&r, 0);
    pop_expect(&r, 1);
    pop_expect(&r, 2);
    pop_none(&r); /* 3 missing */
    assert_int_equal(r.next, 3);
    put_ok(&r, 3);
    pop_expect(&r, 3);
    pop_expect(&r, 4);
    pop_none(&r);
    assert_int_equal(r.held, 0);
    bp_reorder_free(&r);
}

/* skip_to drops what is held below the id (freed: ASan would see a leak)
 * and keeps what is at or above it. */
static void t_reorder_skip_to(void **state)
{
    (void)state;
    struct bp_reorder r;
    bp_reorder_init(&r);
    bp_reorder_skip_to(&r, 0);
    assert_int_equal(r.next, 0);
    put_ok(&r, 1);
    put_ok(&r, 3);
    put_ok(&r, 7);
    assert_int_equal(bp_reorder_put(&r, 5, NULL, 1), 0);
    bp_reorder_skip_to(&r, 4);
    assert_int_equal(r.next, 4);
    assert_int_equal(r.held, 2);
    pop_none(&r);
    bp_reorder_skip_to(&r, 2); /* never backwards */
    assert_int_equal(r.next, 4);
    put_ok(&r, 4);
    pop_expect(&r, 4);
    zmq_msg_t m;
    zmq_msg_init(&m);
    int skip = 0;
    assert_int_equal(bp_reorder_pop(&r, &m, &skip), 1);
    assert_int_equal(skip, 1); /* 5 */
    zmq_msg_close(&m);
    pop_none(&r);
    bp_reorder_skip_to(&r, 1000000); /* past everything: 7 dropped */
    assert_int_equal(r.next, 1000000);
    assert_int_equal(r.held, 0);
    put_ok(&r, 1000000);
    pop_expect(&r, 1000000);
    bp_reorder_free(&r);
}

static void t_reorder_skip(void **state)
{
    (void)state;
    struct bp_reorder r;
    bp_reorder_init(&r);
    zmq_msg_t keep;
    make_msg(&keep, 99);
    /* A skip entry leaves msg alone. */
    assert_int_equal(bp_reorder_put(&r, 1, &keep, 1), 0);
    check_msg(&keep, 99);
    zmq_msg_close(&keep);
    put_ok(&r, 2);
    put_ok(&r, 0);
    pop_expect(&r, 0);
    pop_expect_skip(&r);
    pop_expect(&r, 2);
    pop_none(&r);
    /* Double put of a skip, and skip over a held result. */
    make_msg(&keep, 3);
    assert_int_equal(bp_reorder_put(&r, 3, &keep, 1), 0);
    assert_int_equal(bp_reorder_put(&r, 3, &keep, 1), -1);
    assert_int_equal(bp_reorder_put(&r, 3, &keep, 0), -1);
    check_msg(&keep, 3); /* a refused put does not take the message */
    zmq_msg_close(&keep);
    pop_expect_skip(&r);
    assert_int_equal(r.held, 0);
    bp_reorder_free(&r);
}

static void t_reorder_below_next(void **state)
{
    (void)state;
    struct bp_reorder r;
    bp_reorder_init(&r);
    put_ok(&r, 0);
    put_ok(&r, 1);
    pop_expect(&r, 0);
    pop_expect(&r, 1);
    zmq_msg_t m;
    make_msg(&m, 0);
    assert_int_equal(bp_reorder_put(&r, 0, &m, 0), -1);
    assert_int_equal(bp_reorder_put(&r, 1, &m, 0), -1);
    assert_int_equal(bp_reorder_put(&r, 1, &m, 1), -1);
    check_msg(&m, 0);
    zmq_msg_close(&m);
    assert_int_equal(r.held, 0);
    bp_reorder_free(&r);
}

static void t_reorder_double_put(void **state)
{
    (void)state;
    struct bp_reorder r;
    bp_reorder_init(&r);
    put_ok(&r, 5);
    zmq_msg_t m;
    make_msg(&m, 5);
    assert_int_equal(bp_reorder_put(&r, 5, &m, 0), -1);
    check_msg(&m, 5); /* still ours */
    zmq_msg_close(&m);
    assert_int_equal(r.held, 1);
    for (uint64_t id = 0; id < 5; id++)
        put_ok(&r, id);
    for (uint64_t id = 0; id <= 5; id++)
        pop_expect(&r, id);
    pop_none(&r);
    bp_reorder_free(&r);
}

static void t_reorder_grow_reverse(void **state)
{
    (void)state;
    struct bp_reorder r;
    bp_reorder_init(&r);
    for (uint64_t i = 0; i < 1000; i++) {
        uint64_t id = 999 - i;
        put_ok(&r, id);
        if (id)
            pop_none(&r);
    }
    assert_int_equal(r.held, 1000);
    assert_true(r.cap >= 1000);
    assert_int_equal(r.cap & (r.cap - 1), 0); /* power of two */
    for (uint64_t id = 0; id < 1000; id++)
        pop_expect(&r, id);
    pop_none(&r);
    assert_int_equal(r.held, 0);
    assert_int_equal(r.next, 1000);
    bp_reorder_free(&r);
}

/* Growth while the ring has wrapped: entries must be re-seated at their
 * new positions. */
static void t_reorder_grow_wrapped(void **state)
{
    (void)state;
    struct bp_reorder r;
    bp_reorder_init(&r);
    for (uint64_t id = 0; id < 50; id++) {
        put_ok(&r, id);
        pop_expect(&r, id);
    }
    size_t cap0 = r.cap;
    assert_true(cap0 > 0);
    /* Fill next+1 .. next+cap0-1 (wraps the ring), leave next open. */
    uint64_t next = r.next;
    for (uint64_t id = next + 1; id < next + cap0; id++) {
        if (id % 7 == 0) {
            zmq_msg_t m;
            zmq_msg_init(&m);
            assert_int_equal(bp_reorder_put(&r, id, &m, 1), 0);
            zmq_msg_close(&m);
        } else {
            put_ok(&r, id);
        }
    }
    assert_int_equal(r.cap, cap0);
    /* Far ahead: grows. */
    uint64_t far = next + 5 * cap0 + 3;
    put_ok(&r, far);
    assert_true(r.cap > cap0);
    pop_none(&r);
    put_ok(&r, next);
    for (uint64_t id = next; id < next + cap0; id++) {
        if (id % 7 == 0 && id != next)
            pop_expect_skip(&r);
        else
            pop_expect(&r, id);
    }
    pop_none(&r);
    for (uint64_t id = next + cap0; id < far; id++)
        put_ok(&r, id);
    for (uint64_t id = next + cap0; id <= far; id++)
        pop_expect(&r, id);
    pop_none(&r);
    assert_int_equal(r.held, 0);
    bp_reorder_free(&r);
}

/* Results still held at free time are released (ASan checks). */
static void t_reorder_free_held(void **state)
{
    (void)state;
    struct bp_reorder r;
    bp_reorder_init(&r);
    for (uint64_t id = 1; id < 300; id += 2)
        put_ok(&r, id);
    zmq_msg_t m;
    zmq_msg_init(&m);
    assert_int_equal(bp_reorder_put(&r, 400, &m, 1), 0);
    zmq_msg_close(&m);
    bp_reorder_free(&r);
    assert_int_equal(r.cap, 0);
    assert_int_equal(r.held, 0);
    assert_null(r.msgs);
    bp_reorder_free(&r);
}

/* An absurd id is refused, not allocated. */
static void t_reorder_huge_id(void **state)
{
    (void)state;
    struct bp_reorder r;
    bp_reorder_init(&r);
    zmq_msg_t m;
    make_msg(&m, 1);
    assert_int_equal(bp_reorder_put(&r, UINT64_MAX, &m, 0), -1);
    check_msg(&m, 1);
    zmq_msg_close(&m);
    bp_reorder_free(&r);
}

/* A garbage id far ahead: a task id up to 2^32 (BP_IDSET_LIMIT) reaches
 * the reorder buffer before the batch size is known. On 32-bit targets
 * size_t is 32 bits: an offset of 2^32 + k truncated to size_t is k (a
 * slot that looks free or held), and 2^26 slots of zmq_msg_t (64 bytes
 * each) are 2^32 bytes, which wraps to a 0-byte allocation. So offsets
 * must be judged in 64 bits and bounded by the window: next + WINDOW - 1
 * is held, next + WINDOW and everything past it is refused, leaving the
 * message with the caller and allocating nothing. */
static void refuse(struct bp_reorder *r, uint64_t id)
{
    size_t cap = r->cap, held = r->held;
    zmq_msg_t m;
    make_msg(&m, id);
    if (bp_reorder_put(r, id, &m, 0) != -1)
        fail_msg("id %llu (next %llu) was accepted", (unsigned long long)id,
                 (unsigned long long)r->next);
    check_msg(&m, id); /* still the caller's */
    zmq_msg_close(&m);
    zmq_msg_init(&m);
    assert_int_equal(bp_reorder_put(r, id, &m, 1), -1); /* nor as a skip */
    zmq_msg_close(&m);
    assert_int_equal(r->cap, cap); /* nothing allocated */
    assert_int_equal(r->held, held);
}

static void t_reorder_far_id_32bit(void **state)
{
    (void)state;
    const uint64_t W = BP_REORDER_WINDOW;
    const uint64_t G = (uint64_t)1 << 32;
    struct bp_reorder r;
    bp_reorder_init(&r);
    put_ok(&r, 0);
    put_ok(&r, 2);
    /* next = 0: ids whose 32-bit truncation is 0 (next), 1 (free), 2
     * (held), and the offsets that would overflow a 32-bit size. */
    const uint64_t far[] = {W,     W + 1, (uint64_t)1 << 26, G - 1, G,
                            G + 1, G + 2, G + W - 1,         G + W, UINT64_MAX};
    for (size_t i = 0; i < sizeof far / sizeof far[0]; i++)
        refuse(&r, far[i]);
    /* The window's last id is held; the ring never grows past the window. */
    put_ok(&r, W - 1);
    assert_int_equal(r.held, 3);
    assert_true(r.cap >= W - 1);
    assert_true(r.cap <= W);
    refuse(&r, W);
    /* Slot 1 was not taken by G + 1 (which truncates to 1). */
    pop_expect(&r, 0);
    pop_none(&r);
    put_ok(&r, 1);
    pop_expect(&r, 1);
    pop_expect(&r, 2);
    pop_none(&r);
    /* next = 3: the window moved with it. */
    assert_int_equal(r.next, 3);
    put_ok(&r, 3 + W - 1); /* slot 2, just freed */
    refuse(&r, 3 + W);
    refuse(&r, 3 + W + 1);
    assert_int_equal(r.held, 2);
    assert_true(r.cap <= W);
    pop_none(&r);
    bp_reorder_free(&r); /* the held ones are released (ASan) */

    /* Ids crossing 2^32: the sink's state after G - 2 results in order (set
     * directly; popping 2^32 entries would take too long). Ring slots are
     * the ids' low bits, so G - 2 .. G + 1 must come out in order. */
    bp_reorder_init(&r);
    r.next = G - 2;
    put_ok(&r, G + 1);
    put_ok(&r, G);
    put_ok(&r, G - 1);
    pop_none(&r);
    refuse(&r, G - 3); /* below next */
    refuse(&r, G - 2 + W);
    refuse(&r, 2); /* what G + 2 truncates to: below next */
    put_ok(&r, G - 2);
    for (uint64_t id = G - 2; id <= G + 1; id++)
        pop_expect(&r, id);
    pop_none(&r);
    assert_int_equal(r.held, 0);
    /* next = G + 2: the window's last id is held, its end refused. */
    put_ok(&r, G + 2 + W - 1);
    refuse(&r, G + 2 + W);
    put_ok(&r, G + 2);
    pop_expect(&r, G + 2);
    pop_none(&r);
    bp_reorder_free(&r);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(t_idset_basic),          cmocka_unit_test(t_idset_dup),
        cmocka_unit_test(t_idset_grow),           cmocka_unit_test(t_idset_limit),
        cmocka_unit_test(t_reorder_empty),        cmocka_unit_test(t_reorder_in_order),
        cmocka_unit_test(t_reorder_out_of_order), cmocka_unit_test(t_reorder_skip),
        cmocka_unit_test(t_reorder_below_next),   cmocka_unit_test(t_reorder_double_put),
        cmocka_unit_test(t_reorder_grow_reverse), cmocka_unit_test(t_reorder_grow_wrapped),
        cmocka_unit_test(t_reorder_free_held),    cmocka_unit_test(t_reorder_huge_id),
        cmocka_unit_test(t_reorder_skip_to),      cmocka_unit_test(t_reorder_far_id_32bit),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
