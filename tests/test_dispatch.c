/* Unit tests for the ventilator's delivery state machine (bp_dispatch.c):
 * deterministic fault sequences with hand-made messages and a fake clock. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <errno.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include "bp_dispatch.h"
#include "bp_frame.h"
#include "bp_labels.h"

#define BATCH 0x0B0A4D0000C0FFEEull
#define T0 1000000 /* the fake clock starts here: a ping of 0 means "none" */
#define OK(x) assert_int_equal((x), BP_OK)
#define RID(s) (s), (sizeof(s) - 1)
#define ALL (BP_TO_WORKER | BP_TO_SINK)

/* ---- harness ------------------------------------------------------------- */

/* One message the dispatcher sent (peeked and committed). */
struct sent {
    int dest;
    uint8_t rid[256];
    size_t rid_len;
    uint8_t *data; /* exactly len bytes (ASan catches overreads) */
    size_t len;
    struct bp_msg m;
    int64_t at;
};

struct ka {
    uint8_t rid[16];
    size_t len;
};

struct h {
    struct bp_dispatch *d;
    struct bp_dispatch_cfg c;
    int64_t now;
    struct bp_pack p;
    struct sent *out;
    size_t nout, cap;
    int sink_ka;     /* tick(): the sink says HEARTBEAT every step */
    struct ka ka[8]; /* tick(): these workers say HEARTBEAT every step */
    int nka;
    uint64_t told; /* ids announced to the sink (EXTENT, CLOSE) since its last BEGIN */
};

static void base_cfg(struct bp_dispatch_cfg *c)
{
    bp_dispatch_defaults(c, BATCH);
    c->batch = BATCH;
    c->hb_ivl_ms = 1000;
    c->liveness = 3;
    c->max_attempts = 3;
    c->retries = 0;
    c->task_deadline_ms = 0;
    c->ack_timeout_ms = 10000;
    c->max_tasks = 1000;
    c->max_bytes = 1 << 20;
    c->max_workers = 16;
    c->max_credit = 1000;
    c->pack_max = 256;
    c->pack_bytes = BP_PACK_BYTES;
    c->max_rec = 1 << 16;
    c->use_sink = 1;
}

/* Harnesses not ended yet: a failing test jumps out of its body, and the
 * teardown frees what it left (no leak reports on top of the failure). */
static struct h *open_h[8];
static int n_open_h;

static void h_start(struct h *h, const struct bp_dispatch_cfg *c)
{
    memset(h, 0, sizeof *h);
    assert_true(n_open_h < 8);
    open_h[n_open_h++] = h;
    h->c = *c;
    h->now = T0;
    bp_pack_init(&h->p);
    h->d = bp_dispatch_new(c, h->now);
    assert_non_null(h->d);
}

static void h_clear(struct h *h)
{
    for (size_t i = 0; i < h->nout; i++)
        free(h->out[i].data);
    h->nout = 0;
}

static void h_end(struct h *h)
{
    for (int i = 0; i < n_open_h; i++)
        if (open_h[i] == h)
            open_h[i] = open_h[--n_open_h];
    h_clear(h);
    free(h->out);
    bp_pack_free(&h->p);
    bp_dispatch_destroy(&h->d);
    assert_null(h->d);
}

static struct bp_dispatch_stats stats_of(const struct h *h)
{
    struct bp_dispatch_stats s;
    memset(&s, 0x5a, sizeof s);
    bp_dispatch_stats(h->d, &s);
    return s;
}

/* State of task id; wid gets the worker's HELLO id when out. */
static int st(const struct h *h, uint64_t id, char *wid, int *att)
{
    char w[BP_ID_MAX + 1];
    int a = -1;
    memset(w, 'X', sizeof w);
    int s = bp_dispatch_task(h->d, id, w, sizeof w, &a);
    assert_true(s >= 0 && s <= 4);
    if (s == 2)
        assert_non_null(memchr(w, 0, sizeof w));
    if (wid) {
        memcpy(wid, w, sizeof w);
        wid[BP_ID_MAX] = 0;
    }
    if (att)
        *att = a;
    return s;
}

static int st0(const struct h *h, uint64_t id)
{
    return st(h, id, NULL, NULL);
}

/* Asserts task id is out on the worker with HELLO id wid at attempt att. */
static void assert_out_on(const struct h *h, uint64_t id, const char *wid, int att)
{
    char w[BP_ID_MAX + 1];
    int a;
    assert_int_equal(st(h, id, w, &a), 2);
    assert_string_equal(w, wid);
    if (att > 0)
        assert_int_equal(a, att);
}

/* Peeks and commits everything due for mask, recording it, with checks
 * that hold for every message. Returns how many were sent. */
static size_t drain_mask(struct h *h, int mask)
{
    size_t n = 0;
    struct bp_out o;
    while (bp_dispatch_peek(h->d, h->now, mask, &o)) {
        assert_true(n < 100000);
        assert_true(o.dest == BP_TO_WORKER || o.dest == BP_TO_SINK);
        assert_true(o.dest & mask);
        if (h->nout == h->cap) {
            h->cap = h->cap ? h->cap * 2 : 64;
            h->out = realloc(h->out, h->cap * sizeof *h->out);
            assert_non_null(h->out);
        }
        struct sent *s = &h->out[h->nout++];
        memset(s, 0, sizeof *s);
        s->dest = o.dest;
        s->at = h->now;
        s->len = o.len;
        s->data = malloc(o.len ? o.len : 1);
        assert_non_null(s->data);
        memcpy(s->data, o.data, o.len);
        if (o.dest == BP_TO_WORKER) {
            assert_true(o.rid_len >= 1 && o.rid_len <= 255);
            memcpy(s->rid, o.rid, o.rid_len);
            s->rid_len = o.rid_len;
        }
        /* peeking twice gives the same message */
        struct bp_out o2;
        assert_int_equal(bp_dispatch_peek(h->d, h->now, mask, &o2), 1);
        assert_int_equal(o2.dest, s->dest);
        assert_int_equal(o2.len, s->len);
        assert_memory_equal(o2.data, s->data, s->len);
        if (o.dest == BP_TO_WORKER) {
            assert_int_equal(o2.rid_len, s->rid_len);
            assert_memory_equal(o2.rid, s->rid, s->rid_len);
        }
        assert_int_equal(bp_msg_decode(&s->m, s->data, s->len, h->c.max_rec), BP_OK);
        assert_true(s->m.batch == h->c.batch);
        int t = s->m.type;
        if (o.dest == BP_TO_WORKER) {
            assert_true(t == BP_MSG_TASKS || t == BP_MSG_HEARTBEAT || t == BP_MSG_RESYNC ||
                        t == BP_MSG_END || (t == BP_MSG_BASE && h->c.base_n) ||
                        (t == BP_MSG_CANCEL && h->c.spec.quantile_pm));
        } else {
            assert_true(h->c.use_sink);
            assert_true(t == BP_MSG_BEGIN || t == BP_MSG_CLOSE || t == BP_MSG_RESULTS ||
                        t == BP_MSG_HEARTBEAT || t == BP_MSG_EXTENT);
            if (t == BP_MSG_BEGIN)
                h->told = 0;
            if ((t == BP_MSG_EXTENT || t == BP_MSG_CLOSE) && bp_msg_u64(&s->m, 0) > h->told)
                h->told = bp_msg_u64(&s->m, 0);
        }
        if (t == BP_MSG_TASKS) {
            struct bp_dispatch_stats ss = stats_of(h);
            assert_int_equal(ss.finished, 0); /* no task after finish */
            if (h->c.use_sink)
                assert_int_equal(ss.sink_alive, 1); /* no task while the sink is away */
            assert_true(s->m.n >= 1 && s->m.n <= h->c.pack_max);
            size_t off = 0;
            struct bp_task_rec r;
            while (bp_msg_next_task(&s->m, &off, &r)) { /* only queued tasks go out */
                /* (or, alone, a second copy of a straggler) */
                if (!(s->m.n == 1 && h->c.spec.quantile_pm && st0(h, r.id) == 2))
                    assert_int_equal(st0(h, r.id), 1);
                if (h->c.use_sink) /* ... and only ids the sink was told of */
                    assert_true(r.id < h->told);
            }
        }
        bp_dispatch_commit(h->d, h->now);
        if (t == BP_MSG_TASKS) {
            size_t off = 0;
            struct bp_task_rec r;
            while (bp_msg_next_task(&s->m, &off, &r))
                assert_int_equal(st0(h, r.id), 2);
        }
        n++;
    }
    return n;
}

static size_t drain(struct h *h)
{
    return drain_mask(h, ALL);
}

/* The i-th recorded message matching dest/type (and rid when given),
 * searching from index from; NULL when none. */
static const struct sent *find(const struct h *h, size_t from, int dest, int type, const void *rid,
                               size_t rid_len, size_t nth)
{
    for (size_t i = from; i < h->nout; i++) {
        const struct sent *s = &h->out[i];
        if (s->dest != dest || s->m.type != type)
            continue;
        if (rid && (s->rid_len != rid_len || memcmp(s->rid, rid, rid_len)))
            continue;
        if (nth-- == 0)
            return s;
    }
    return NULL;
}

static size_t count(const struct h *h, size_t from, int dest, int type, const void *rid,
                    size_t rid_len)
{
    size_t n = 0;
    while (find(h, from, dest, type, rid, rid_len, n))
        n++;
    return n;
}

/* All task records sent to rid (any rid when NULL) from index from, in
 * order. Returns how many (at most max are stored). */
static size_t tasks_to(const struct h *h, size_t from, const void *rid, size_t rid_len,
                       struct bp_task_rec *rec, size_t max)
{
    size_t n = 0;
    for (size_t i = from; i < h->nout; i++) {
        const struct sent *s = &h->out[i];
        if (s->dest != BP_TO_WORKER || s->m.type != BP_MSG_TASKS)
            continue;
        if (rid && (s->rid_len != rid_len || memcmp(s->rid, rid, rid_len)))
            continue;
        size_t off = 0;
        struct bp_task_rec r;
        while (bp_msg_next_task(&s->m, &off, &r)) {
            if (n < max)
                rec[n] = r;
            n++;
        }
    }
    return n;
}

static int w_send(struct h *h, const void *rid, size_t rid_len)
{
    OK(bp_pack_finish(&h->p));
    return bp_dispatch_on_worker(h->d, rid, rid_len, h->p.p, h->p.len, h->now);
}

/* A HELLO; labels (len bytes) only when not NULL. */
static int w_hello_labels(struct h *h, const void *rid, size_t rid_len, const char *id,
                          uint32_t credit, const void *labels, size_t len)
{
    size_t idlen = strlen(id);
    bp_pack_begin(&h->p, BP_MSG_HELLO, 0);
    bp_pack_u16(&h->p, 1);
    bp_pack_u16(&h->p, 0);
    bp_pack_u32(&h->p, credit);
    bp_pack_u8(&h->p, (uint8_t)idlen);
    bp_pack_bytes(&h->p, id, idlen);
    if (labels) {
        bp_pack_u16(&h->p, (uint16_t)len);
        bp_pack_bytes(&h->p, labels, len);
    }
    return w_send(h, rid, rid_len);
}

static int w_hello(struct h *h, const void *rid, size_t rid_len, const char *id, uint32_t credit)
{
    return w_hello_labels(h, rid, rid_len, id, credit, NULL, 0);
}

static int w_ids(struct h *h, int type, const void *rid, size_t rid_len, uint32_t fixed,
                 const uint64_t *ids, size_t n)
{
    bp_pack_begin(&h->p, type, h->c.batch);
    bp_pack_u32(&h->p, fixed);
    for (size_t i = 0; i < n; i++)
        bp_pack_id(&h->p, ids[i]);
    return w_send(h, rid, rid_len);
}

static int w_credit(struct h *h, const void *rid, size_t rid_len, uint32_t credit,
                    const uint64_t *done, size_t n)
{
    return w_ids(h, BP_MSG_CREDIT, rid, rid_len, credit, done, n);
}

static int w_bye(struct h *h, const void *rid, size_t rid_len, uint32_t flags, const uint64_t *ids,
                 size_t n)
{
    return w_ids(h, BP_MSG_BYE, rid, rid_len, flags, ids, n);
}

static int w_hb(struct h *h, const void *rid, size_t rid_len, uint64_t ping, uint64_t echo)
{
    bp_pack_begin(&h->p, BP_MSG_HEARTBEAT, h->c.batch);
    bp_pack_u64(&h->p, ping);
    bp_pack_u64(&h->p, echo);
    return w_send(h, rid, rid_len);
}

static int s_send(struct h *h)
{
    OK(bp_pack_finish(&h->p));
    return bp_dispatch_on_sink(h->d, h->p.p, h->p.len, h->now);
}

/* The sink's HEARTBEAT on batch (0: "I do not know your batch"). */
static int s_hb_batch(struct h *h, uint64_t batch, uint64_t ping, uint64_t echo)
{
    bp_pack_begin(&h->p, BP_MSG_HEARTBEAT, batch);
    bp_pack_u64(&h->p, ping);
    bp_pack_u64(&h->p, echo);
    return s_send(h);
}

static int s_hb(struct h *h, uint64_t ping, uint64_t echo)
{
    return s_hb_batch(h, h->c.batch, ping, echo);
}

static int s_ack_batch(struct h *h, uint64_t batch, uint64_t id, uint16_t attempt, uint8_t kind)
{
    bp_pack_begin(&h->p, BP_MSG_ACK, batch);
    bp_pack_ack(&h->p, id, attempt, kind);
    return s_send(h);
}

static int s_ack(struct h *h, uint64_t id, uint16_t attempt, uint8_t kind)
{
    return s_ack_batch(h, h->c.batch, id, attempt, kind);
}

static void add_n(struct h *h, int n)
{
    struct bp_dispatch_stats s = stats_of(h);
    for (int i = 0; i < n; i++) {
        char buf[32];
        int l = snprintf(buf, sizeof buf, "task-%d", (int)s.added + i);
        uint64_t id = UINT64_MAX;
        OK(bp_dispatch_add(h->d, buf, (size_t)l, &id));
        assert_true(id == (uint64_t)s.added + (uint64_t)i);
    }
}

/* A dispatcher whose sink has answered: BEGIN and the ping went out. */
static void h_start_sink(struct h *h, const struct bp_dispatch_cfg *c)
{
    h_start(h, c);
    drain(h);
    OK(s_hb(h, (uint64_t)h->now, (uint64_t)h->now));
    drain(h);
    assert_int_equal(stats_of(h).sink_alive, 1);
    h_clear(h);
}

static void ka_add(struct h *h, const void *rid, size_t len)
{
    assert_true(h->nka < 8 && len <= sizeof h->ka[0].rid);
    memcpy(h->ka[h->nka].rid, rid, len);
    h->ka[h->nka].len = len;
    h->nka++;
}

/* Moves the clock to until in steps: keep-alive messages, the timer,
 * then everything due is sent. */
static void tick(struct h *h, int64_t until, int64_t step)
{
    while (h->now < until) {
        h->now += step;
        if (h->now > until)
            h->now = until;
        if (h->sink_ka)
            OK(s_hb(h, (uint64_t)h->now, 0));
        for (int i = 0; i < h->nka; i++)
            OK(w_hb(h, h->ka[i].rid, h->ka[i].len, (uint64_t)h->now, 0));
        bp_dispatch_on_timer(h->d, h->now);
        drain(h);
    }
}

static int has_text(const uint8_t *d, size_t len, const char *t)
{
    size_t tl = strlen(t);
    for (size_t i = 0; i + tl <= len; i++)
        if (!memcmp(d + i, t, tl))
            return 1;
    return 0;
}

/* A heartbeat's ping is the sender's clock. The dispatcher sends now | 1
 * (so that a clock at 0 is not "no ping"): within 1 ms is accepted. */
static int ping_is_clock(const struct bp_msg *m, int64_t at)
{
    uint64_t p = bp_msg_u64(m, 0);
    return p != 0 && (p == (uint64_t)at || p == ((uint64_t)at | 1));
}

/* ---- tests ------------------------------------------------------------------ */

static void t_defaults(void **state)
{
    (void)state;
    struct bp_dispatch_cfg c;
    memset(&c, 0x77, sizeof c);
    bp_dispatch_defaults(&c, 42);
    assert_true(c.batch == 42);
    assert_int_equal(c.hb_ivl_ms, 1000);
    assert_int_equal(c.liveness, 3);
    assert_int_equal(c.max_attempts, 3);
    assert_int_equal(c.retries, 0);
    assert_int_equal(c.task_deadline_ms, 0);
    assert_int_equal(c.ack_timeout_ms, 10000);     /* docs/wire-format.md: 10 s */
    assert_int_equal(c.max_tasks, 65536);          /* "at most 65 536 tasks" */
    assert_true(c.max_bytes == 64u * 1024 * 1024); /* "and 64 MiB of payload" */
    assert_int_equal(c.pack_max, 256);
    assert_true(c.pack_bytes == BP_PACK_BYTES);
    assert_true(c.max_workers > 0 && c.max_credit > 0 && c.max_rec > 0);
    struct bp_dispatch *d = bp_dispatch_new(&c, 0);
    assert_non_null(d);
    bp_dispatch_destroy(&d);
    assert_null(d);
    bp_dispatch_destroy(&d); /* NULL is fine */
    /* plainly invalid configurations */
    for (int k = 0; k < 6; k++) {
        struct bp_dispatch_cfg b;
        bp_dispatch_defaults(&b, 1);
        switch (k) {
        case 0:
            b.hb_ivl_ms = 0;
            break;
        case 1:
            b.liveness = 0;
            break;
        case 2:
            b.max_attempts = 0;
            break;
        case 3:
            b.max_tasks = 0;
            break;
        case 4:
            b.max_workers = 0;
            break;
        default:
            b.pack_max = 0;
            break;
        }
        d = bp_dispatch_new(&b, 0);
        assert_null(d);
    }
}

/* With a sink, no task goes out before it has spoken; BEGIN + ping first,
 * CLOSE(total) after input_done. */
static void t_sink_gate(void **state)
{
    (void)state;
    struct bp_dispatch_cfg c;
    base_cfg(&c);
    static struct h h; /* static: the teardown may free it after a failure */
    h_start(&h, &c);
    add_n(&h, 3);
    OK(w_hello(&h, RID("\0\0\0\1w"), "w1", 10));
    drain(&h);
    assert_int_equal(count(&h, 0, BP_TO_WORKER, BP_MSG_TASKS, NULL, 0), 0);
    assert_int_equal(stats_of(&h).sink_alive, 0);
    /* to the sink: BEGIN, then EXTENT(3) (what was read belongs to the
     * batch) and a ping */
    const struct sent *bg = find(&h, 0, BP_TO_SINK, BP_MSG_BEGIN, NULL, 0, 0);
    const struct sent *ex = find(&h, 0, BP_TO_SINK, BP_MSG_EXTENT, NULL, 0, 0);
    const struct sent *hb = find(&h, 0, BP_TO_SINK, BP_MSG_HEARTBEAT, NULL, 0, 0);
    assert_non_null(bg);
    assert_non_null(ex);
    assert_non_null(hb);
    assert_true(bg < ex && bg < hb);
    assert_true(bp_msg_u64(&ex->m, 0) == 3);
    assert_true(ping_is_clock(&hb->m, hb->at)); /* ping = the clock */
    assert_true(bp_msg_u64(&hb->m, 0) != 0);
    uint64_t ping = bp_msg_u64(&hb->m, 0);

    /* time passes, still nothing for the worker */
    OK(w_hb(&h, RID("\0\0\0\1w"), 0, 0));
    h.now += 500;
    bp_dispatch_on_timer(h.d, h.now);
    drain(&h);
    assert_int_equal(count(&h, 0, BP_TO_WORKER, BP_MSG_TASKS, NULL, 0), 0);

    /* the sink answers: tasks go */
    h_clear(&h);
    OK(s_hb(&h, (uint64_t)h.now, ping));
    assert_int_equal(stats_of(&h).sink_alive, 1);
    drain(&h);
    struct bp_task_rec r[8];
    assert_int_equal(tasks_to(&h, 0, RID("\0\0\0\1w"), r, 8), 3);
    for (int i = 0; i < 3; i++) {
        char want[16];
        int l = snprintf(want, sizeof want, "task-%d", i);
        assert_true(r[i].id == (uint64_t)i);
        assert_int_equal(r[i].attempt, 1);
        assert_int_equal(r[i].flags, BP_TF_LAST_TRY); /* retries = 0 */
        assert_int_equal(r[i].len, l);
        assert_memory_equal(r[i].data, want, (size_t)l);
        assert_out_on(&h, (uint64_t)i, "w1", 1);
    }
    struct bp_dispatch_stats s = stats_of(&h);
    assert_int_equal(s.out, 3);
    assert_int_equal(s.queued, 0);
    assert_int_equal(s.workers, 1);

    /* end of input: CLOSE(3) */
    h_clear(&h);
    bp_dispatch_input_done(h.d);
    drain(&h);
    const struct sent *cl = find(&h, 0, BP_TO_SINK, BP_MSG_CLOSE, NULL, 0, 0);
    assert_non_null(cl);
    assert_true(bp_msg_u64(&cl->m, 0) == 3);
    s = stats_of(&h);
    assert_int_equal(s.input_done, 1);
    assert_int_equal(s.added, 3);
    assert_int_equal(s.all_final, 0);
    uint64_t id;
    assert_int_equal(bp_dispatch_add(h.d, "x", 1, &id), BP_EUSAGE);
    assert_int_equal(stats_of(&h).added, 3);
    h_end(&h);
}

/* Credit bounds every TASKS message; pack_max splits them; ids go out in
 * order. */
static void t_credit(void **state)
{
    (void)state;
    struct bp_dispatch_cfg c;
    base_cfg(&c);
    c.pack_max = 2;
    static struct h h; /* static: the teardown may free it after a failure */
    h_start_sink(&h, &c);
    add_n(&h, 7);
    OK(w_hello(&h, RID("w1"), "w1", 3));
    drain(&h);
    struct bp_task_rec r[16];
    assert_int_equal(tasks_to(&h, 0, RID("w1"), r, 16), 3);
    for (int i = 0; i < 3; i++) {
        assert_true(r[i].id == (uint64_t)i);
        assert_out_on(&h, (uint64_t)i, "w1", 1);
    }
    assert_int_equal(count(&h, 0, BP_TO_WORKER, BP_MSG_TASKS, RID("w1")), 2); /* 2 + 1 */
    assert_int_equal(st0(&h, 3), 1);

    /* credit spent: nothing more, even later */
    h_clear(&h);
    OK(w_credit(&h, RID("w1"), 0, NULL, 0));
    h.now += 100;
    bp_dispatch_on_timer(h.d, h.now);
    drain(&h);
    assert_int_equal(tasks_to(&h, 0, NULL, 0, r, 16), 0);

    /* CREDIT with a done id: more tasks */
    uint64_t done0[] = {0};
    OK(w_credit(&h, RID("w1"), 2, done0, 1));
    assert_int_equal(st0(&h, 0), 3);
    drain(&h);
    assert_int_equal(tasks_to(&h, 0, RID("w1"), r, 16), 2);
    assert_true(r[0].id == 3 && r[1].id == 4);

    h_clear(&h);
    uint64_t done12[] = {1, 2};
    OK(w_credit(&h, RID("w1"), 10, done12, 2));
    drain(&h);
    assert_int_equal(tasks_to(&h, 0, RID("w1"), r, 16), 2);
    assert_true(r[0].id == 5 && r[1].id == 6);
    struct bp_dispatch_stats s = stats_of(&h);
    assert_int_equal(s.done_wait, 3);
    assert_int_equal(s.out, 4);
    assert_int_equal(s.queued, 0);

    /* credit left (8): a new task goes out at once */
    h_clear(&h);
    add_n(&h, 1);
    drain(&h);
    assert_int_equal(tasks_to(&h, 0, RID("w1"), r, 16), 1);
    assert_true(r[0].id == 7);
    h_end(&h);
}

/* One worker never holds more than max_credit, whatever it asks. */
static void t_max_credit(void **state)
{
    (void)state;
    struct bp_dispatch_cfg c;
    base_cfg(&c);
    c.max_credit = 4;
    static struct h h; /* static: the teardown may free it after a failure */
    h_start_sink(&h, &c);
    add_n(&h, 20);
    OK(w_hello(&h, RID("A"), "wa", 100));
    drain(&h);
    struct bp_task_rec r[32];
    assert_int_equal(tasks_to(&h, 0, RID("A"), r, 32), 4);
    h_clear(&h);
    uint64_t done[] = {0};
    OK(w_credit(&h, RID("A"), UINT32_MAX, done, 1));
    drain(&h);
    assert_int_equal(tasks_to(&h, 0, RID("A"), r, 32), 4);
    assert_true(r[0].id == 4 && r[3].id == 7);
    h_end(&h);
}

/* A pack stays within pack_bytes unless a single task is bigger: then it
 * goes alone. */
static void t_pack_bytes(void **state)
{
    (void)state;
    struct bp_dispatch_cfg c;
    base_cfg(&c);
    c.pack_bytes = 200;
    static struct h h; /* static: the teardown may free it after a failure */
    h_start_sink(&h, &c);
    uint8_t pay[500];
    memset(pay, 'p', sizeof pay);
    uint64_t id;
    for (int i = 0; i < 6; i++)
        OK(bp_dispatch_add(h.d, pay, 50, &id));
    OK(bp_dispatch_add(h.d, pay, 500, &id));
    assert_true(id == 6);
    OK(bp_dispatch_add(h.d, pay, 10, &id));
    OK(bp_dispatch_add(h.d, pay, 10, &id));
    OK(w_hello(&h, RID("w1"), "w1", 100));
    drain(&h);
    uint64_t next = 0;
    size_t msgs = 0;
    for (size_t i = 0; i < h.nout; i++) {
        const struct sent *s = &h.out[i];
        if (s->m.type != BP_MSG_TASKS)
            continue;
        msgs++;
        size_t off = 0;
        struct bp_task_rec r;
        int big = 0;
        while (bp_msg_next_task(&s->m, &off, &r)) {
            assert_true(r.id == next);
            next++;
            if (r.len == 500)
                big = 1;
        }
        if (big)
            assert_int_equal(s->m.n, 1);
        else /* the whole message, its 16-byte header included */
            assert_true(s->len <= c.pack_bytes);
    }
    assert_true(next == 9);
    assert_true(msgs >= 5); /* 6 x 66-byte records: at most 2 per 200-byte pack */
    h_end(&h);
}

/* DONE, then ACK ok/failed; stale acks; an ack before the worker's DONE. */
static void t_done_ack(void **state)
{
    (void)state;
    struct bp_dispatch_cfg c;
    base_cfg(&c);
    static struct h h; /* static: the teardown may free it after a failure */
    h_start_sink(&h, &c);
    add_n(&h, 6);
    OK(w_hello(&h, RID("w1"), "w1", 6));
    drain(&h);
    uint64_t done[] = {0, 1};
    OK(w_credit(&h, RID("w1"), 0, done, 2));
    assert_int_equal(st0(&h, 0), 3);
    assert_int_equal(st0(&h, 1), 3);
    struct bp_dispatch_stats s = stats_of(&h);
    assert_int_equal(s.done_wait, 2);
    assert_int_equal(s.out, 4);

    OK(s_ack(&h, 0, 1, BP_ACK_OK));
    assert_int_equal(st0(&h, 0), 0);
    OK(s_ack(&h, 1, 1, BP_ACK_FAILED));
    assert_int_equal(st0(&h, 1), 0);
    s = stats_of(&h);
    assert_int_equal(s.ok, 1);
    assert_int_equal(s.failed, 1);
    assert_int_equal(s.lost, 0);
    assert_int_equal(s.done_wait, 0);
    assert_int_equal(s.stale, 0);

    /* not held: stale */
    OK(s_ack(&h, 99, 1, BP_ACK_OK));
    OK(s_ack(&h, 0, 1, BP_ACK_OK));
    OK(s_ack(&h, 1, 1, BP_ACK_RETRY));
    s = stats_of(&h);
    assert_int_equal(s.stale, 3);
    assert_int_equal(s.ok, 1);
    assert_int_equal(s.failed, 1);
    assert_int_equal(s.retried, 0);

    /* another batch: stale, the task stays */
    uint64_t done2[] = {2};
    OK(w_credit(&h, RID("w1"), 0, done2, 1));
    OK(s_ack_batch(&h, BATCH + 1, 2, 1, BP_ACK_OK));
    assert_int_equal(st0(&h, 2), 3);
    assert_int_equal(stats_of(&h).stale, 4);
    assert_int_equal(stats_of(&h).ok, 1);

    /* an ack before the worker says DONE: final */
    OK(s_ack(&h, 3, 1, BP_ACK_OK));
    assert_int_equal(st0(&h, 3), 0);
    uint64_t done3[] = {3};
    OK(w_credit(&h, RID("w1"), 0, done3, 1)); /* late DONE: harmless */
    assert_int_equal(st0(&h, 3), 0);
    s = stats_of(&h);
    assert_int_equal(s.ok, 2);

    /* one ACK message, several records */
    bp_pack_begin(&h.p, BP_MSG_ACK, BATCH);
    bp_pack_ack(&h.p, 2, 1, BP_ACK_OK);
    bp_pack_ack(&h.p, 4, 1, BP_ACK_OK);
    bp_pack_ack(&h.p, 5, 1, BP_ACK_FAILED);
    OK(s_send(&h));
    s = stats_of(&h);
    assert_int_equal(s.ok, 4);
    assert_int_equal(s.failed, 2);
    assert_int_equal(s.out + s.queued + s.done_wait, 0);
    assert_int_equal(s.all_final, 0); /* input not done */
    bp_dispatch_input_done(h.d);
    s = stats_of(&h);
    assert_int_equal(s.all_final, 1);
    assert_int_equal(s.held_bytes, 0);
    h_end(&h);
}

/* A resumed batch: ids the journal has as final are taken without a task
 * (never sent, counted); on_final reports exactly the tasks that become
 * final here, with their outcome, once each. */
struct finals {
    int n;
    uint64_t id[16];
    int ok[16];
};

static void note_final(void *arg, uint64_t id, int ok)
{
    struct finals *f = arg;
    assert_true(f->n < 16);
    f->id[f->n] = id;
    f->ok[f->n] = ok;
    f->n++;
}

static void t_resume_finals(void **state)
{
    (void)state;
    struct bp_dispatch_cfg c;
    base_cfg(&c);
    static struct finals f;
    memset(&f, 0, sizeof f);
    c.on_final = note_final;
    c.on_final_arg = &f;
    static struct h h; /* static: the teardown may free it after a failure */
    h_start_sink(&h, &c);
    uint64_t id = 99;
    OK(bp_dispatch_add_final(h.d, 1, &id));
    assert_true(id == 0);
    add_n(&h, 2); /* ids 1, 2 */
    OK(bp_dispatch_add_final(h.d, 0, &id));
    assert_true(id == 3);
    add_n(&h, 1); /* id 4 */
    assert_int_equal(st0(&h, 0), 0);
    assert_int_equal(st0(&h, 3), 0);
    OK(w_hello(&h, RID("w1"), "w1", 10));
    drain(&h);
    struct bp_task_rec r[8];
    size_t n = tasks_to(&h, 0, RID("w1"), r, 8);
    assert_int_equal(n, 3);
    assert_true(r[0].id == 1 && r[1].id == 2 && r[2].id == 4);
    assert_int_equal(f.n, 0);
    uint64_t done[] = {1, 2, 4};
    OK(w_credit(&h, RID("w1"), 0, done, 3));
    OK(s_ack(&h, 1, 1, BP_ACK_OK));
    OK(s_ack(&h, 2, 1, BP_ACK_FAILED));
    OK(s_ack(&h, 2, 1, BP_ACK_FAILED)); /* again: stale, not final twice */
    OK(s_ack(&h, 4, 1, BP_ACK_OK));
    assert_int_equal(f.n, 3);
    assert_true(f.id[0] == 1 && f.ok[0] == 1);
    assert_true(f.id[1] == 2 && f.ok[1] == 0);
    assert_true(f.id[2] == 4 && f.ok[2] == 1);
    bp_dispatch_input_done(h.d);
    assert_int_equal(bp_dispatch_add_final(h.d, 1, NULL), BP_EUSAGE);
    struct bp_dispatch_stats s = stats_of(&h);
    assert_int_equal(s.added, 5);
    assert_int_equal(s.ok, 3);
    assert_int_equal(s.failed, 2);
    assert_int_equal(s.all_final, 1);
    h_end(&h);
}

/* COMPLETE from the sink while tasks are still held (a resumed ventilator
 * whose acknowledgements were lost): the sink has every result and a
 * --once sink is gone, so they are final with the sink's counts; a
 * COMPLETE for fewer results than tasks we took changes nothing. */
static int64_t fin_calls[3]; /* on_final's outcomes: failed, ok, at the sink */

static void count_final(void *arg, uint64_t id, int ok)
{
    (void)arg;
    (void)id;
    assert_true(ok >= 0 && ok <= 2);
    fin_calls[ok]++;
}

static void t_complete_word(void **state)
{
    (void)state;
    struct bp_dispatch_cfg c;
    base_cfg(&c);
    c.on_final = count_final;
    static struct h h; /* static: the teardown may free it after a failure */
    h_start_sink(&h, &c);
    add_n(&h, 4);
    OK(w_hello(&h, RID("w1"), "w1", 2));
    drain(&h);
    bp_dispatch_input_done(h.d);
    bp_pack_begin(&h.p, BP_MSG_COMPLETE, BATCH);
    bp_pack_u64(&h.p, 2);
    bp_pack_u64(&h.p, 1);
    OK(s_send(&h)); /* 3 < 4: not this batch's whole */
    struct bp_dispatch_stats s = stats_of(&h);
    assert_int_equal(s.all_final, 0);
    assert_int_equal(s.complete, 0);
    assert_int_equal(s.out + s.queued, 4);
    /* More results than tasks: the sink counts something that is not
     * ours (a foreign id): not a COMPLETE to trust either. */
    bp_pack_begin(&h.p, BP_MSG_COMPLETE, BATCH);
    bp_pack_u64(&h.p, 4);
    bp_pack_u64(&h.p, 1);
    OK(s_send(&h));
    s = stats_of(&h);
    assert_int_equal(s.all_final, 0);
    assert_int_equal(s.complete, 0);
    assert_int_equal(s.stale, 2);
    h_end(&h);

    /* Before the input is done, no COMPLETE can be ours. */
    h_start_sink(&h, &c);
    add_n(&h, 4);
    bp_pack_begin(&h.p, BP_MSG_COMPLETE, BATCH);
    bp_pack_u64(&h.p, 4);
    bp_pack_u64(&h.p, 0);
    OK(s_send(&h));
    assert_int_equal(stats_of(&h).complete, 0);
    assert_int_equal(stats_of(&h).all_final, 0);
    h_end(&h);

    /* Exactly the batch: tasks whose acks were lost are final with the
     * outcome the sink holds (on_final says 2, not ok), and the counts are
     * the sink's. */
    memset(fin_calls, 0, sizeof fin_calls);
    h_start_sink(&h, &c);
    add_n(&h, 4);
    OK(w_hello(&h, RID("w1"), "w1", 4));
    drain(&h);
    bp_dispatch_input_done(h.d);
    uint64_t done[] = {0, 1};
    OK(w_credit(&h, RID("w1"), 0, done, 2));
    OK(s_ack(&h, 0, 1, BP_ACK_OK));
    bp_pack_begin(&h.p, BP_MSG_COMPLETE, BATCH);
    bp_pack_u64(&h.p, 2);
    bp_pack_u64(&h.p, 2);
    OK(s_send(&h));
    s = stats_of(&h);
    assert_int_equal(s.all_final, 1);
    assert_int_equal(s.complete, 1);
    assert_int_equal(s.ok, 2);
    assert_int_equal(s.failed, 2);
    assert_int_equal(s.lost, 0);
    assert_int_equal(s.out + s.queued + s.done_wait, 0);
    assert_int_equal(fin_calls[1], 1);
    assert_int_equal(fin_calls[2], 3);
    assert_int_equal(fin_calls[0], 0);
    h_clear(&h);
    drain(&h);
    assert_int_equal(count(&h, 0, BP_TO_WORKER, BP_MSG_TASKS, NULL, 0), 0);
    h_end(&h);
}

/* --halt: queued tasks (and with now_too the ones out) are reported to
 * the sink as halted, once each, and nothing is sent to workers any more,
 * not even a retry or a redelivery that comes after the halt. */
static void t_halt(void **state)
{
    (void)state;
    for (int now_too = 0; now_too <= 1; now_too++) {
        struct bp_dispatch_cfg c;
        base_cfg(&c);
        c.retries = 1;
        static struct h h; /* static: the teardown may free it after a failure */
        h_start_sink(&h, &c);
        add_n(&h, 10);
        OK(w_hello(&h, RID("w1"), "w1", 3));
        drain(&h);
        assert_int_equal(stats_of(&h).out, 3); /* 0 1 2 */
        h_clear(&h);
        bp_dispatch_halt(h.d, now_too, "halted: test");
        bp_dispatch_input_done(h.d);
        /* a failed try of task 0 with a retry left: not sent again */
        uint64_t done0[] = {0};
        OK(w_credit(&h, RID("w1"), 5, done0, 1));
        OK(s_ack(&h, 0, 1, BP_ACK_RETRY));
        drain(&h);
        assert_int_equal(count(&h, 0, BP_TO_WORKER, BP_MSG_TASKS, NULL, 0), 0);
        /* halted reports: 3..9, task 0 (its retry), and 1, 2 with now_too */
        int reported[10] = {0};
        for (size_t i = 0; i < h.nout; i++) {
            const struct sent *m = &h.out[i];
            if (m->dest != BP_TO_SINK || m->m.type != BP_MSG_RESULTS)
                continue;
            size_t off = 0;
            struct bp_result_rec r;
            while (bp_msg_next_result(&m->m, &off, &r)) {
                assert_int_equal(r.status, BP_ST_HALTED);
                assert_true(r.flags & BP_RF_FINAL);
                assert_true(r.id < 10);
                assert_true(has_text(r.data, r.len, "halted: test"));
                reported[r.id]++;
                OK(s_ack(&h, r.id, r.attempt, BP_ACK_FAILED));
            }
        }
        for (uint64_t id = 0; id < 10; id++)
            assert_int_equal(reported[id], id == 1 || id == 2 ? now_too : 1);
        if (!now_too) {
            /* the tasks out finish as usual */
            uint64_t done[] = {1, 2};
            OK(w_credit(&h, RID("w1"), 0, done, 2));
            OK(s_ack(&h, 1, 1, BP_ACK_OK));
            OK(s_ack(&h, 2, 1, BP_ACK_OK));
        }
        struct bp_dispatch_stats s = stats_of(&h);
        assert_int_equal(s.all_final, 1);
        assert_int_equal(s.halted, now_too ? 10 : 8);
        assert_int_equal(s.ok, now_too ? 0 : 2);
        assert_int_equal(s.lost, 0);
        h_end(&h);
    }
}

/* A silent worker dies after liveness x interval: OUT tasks go to the
 * front of the queue, DONE tasks wait for their ack until ack_timeout. */
static void t_worker_silence(void **state)
{
    (void)state;
    struct bp_dispatch_cfg c;
    base_cfg(&c);
    c.ack_timeout_ms = 5000;
    static struct h h; /* static: the teardown may free it after a failure */
    h_start_sink(&h, &c);
    h.sink_ka = 1;
    add_n(&h, 4);
    OK(w_hello(&h, RID("\0\0\0\0\1"), "w1", 2));
    drain(&h);
    assert_out_on(&h, 0, "w1", 1);
    assert_out_on(&h, 1, "w1", 1);
    uint64_t done[] = {0};
    OK(w_credit(&h, RID("\0\0\0\0\1"), 0, done, 1));
    assert_int_equal(st0(&h, 0), 3);

    tick(&h, T0 + 2900, 100);
    assert_int_equal(stats_of(&h).workers, 1);
    assert_out_on(&h, 1, "w1", 1);
    tick(&h, T0 + 3100, 100);
    struct bp_dispatch_stats s = stats_of(&h);
    assert_int_equal(s.workers, 0);
    assert_int_equal(s.redelivered, 1);
    assert_int_equal(st0(&h, 1), 1);
    assert_int_equal(st0(&h, 0), 3); /* done: waits for its ack */
    assert_int_equal(s.done_wait, 1);
    assert_int_equal(s.queued, 3);

    /* the next worker gets the lost task first, attempt 2 */
    h_clear(&h);
    OK(w_hello(&h, RID("\0\0\0\0\2"), "w2", 1));
    ka_add(&h, RID("\0\0\0\0\2"));
    drain(&h);
    struct bp_task_rec r[4];
    assert_int_equal(tasks_to(&h, 0, NULL, 0, r, 4), 1);
    assert_true(r[0].id == 1);
    assert_int_equal(r[0].attempt, 2);
    assert_out_on(&h, 1, "w2", 2);

    /* no ack for task 0 within ack_timeout (DONE at T0): a loss */
    tick(&h, T0 + 4900, 100);
    assert_int_equal(st0(&h, 0), 3);
    tick(&h, T0 + 5100, 100);
    assert_int_equal(st0(&h, 0), 1);
    assert_int_equal(stats_of(&h).redelivered, 2);
    h_clear(&h);
    uint64_t done1[] = {1};
    OK(w_credit(&h, RID("\0\0\0\0\2"), 1, done1, 1));
    drain(&h);
    assert_int_equal(tasks_to(&h, 0, NULL, 0, r, 4), 1);
    assert_true(r[0].id == 0); /* requeued at the front, before 2 and 3 */
    assert_int_equal(r[0].attempt, 2);
    /* a RESYNC for the dead session's rid when it speaks again */
    h_clear(&h);
    OK(w_hb(&h, RID("\0\0\0\0\1"), 1, 0));
    drain(&h);
    assert_non_null(find(&h, 0, BP_TO_WORKER, BP_MSG_RESYNC, RID("\0\0\0\0\1"), 0));
    h_end(&h);
}

/* worker_gone: immediate death; the tasks go to the next worker. */
static void t_worker_gone(void **state)
{
    (void)state;
    struct bp_dispatch_cfg c;
    base_cfg(&c);
    static struct h h; /* static: the teardown may free it after a failure */
    h_start_sink(&h, &c);
    add_n(&h, 3);
    OK(w_hello(&h, RID("A"), "wa", 3));
    drain(&h);
    bp_dispatch_worker_gone(h.d, RID("nobody"), h.now); /* unknown: nothing */
    assert_int_equal(stats_of(&h).workers, 1);
    assert_int_equal(stats_of(&h).out, 3);
    bp_dispatch_worker_gone(h.d, RID("A"), h.now);
    struct bp_dispatch_stats s = stats_of(&h);
    assert_int_equal(s.workers, 0);
    assert_int_equal(s.out, 0);
    assert_int_equal(s.queued, 3);
    assert_int_equal(s.redelivered, 3);
    h_clear(&h);
    drain(&h);
    assert_int_equal(count(&h, 0, BP_TO_WORKER, BP_MSG_TASKS, NULL, 0), 0);
    OK(w_hello(&h, RID("B"), "wb", 5));
    drain(&h);
    struct bp_task_rec r[4];
    assert_int_equal(tasks_to(&h, 0, RID("B"), r, 4), 3);
    for (int i = 0; i < 3; i++) {
        assert_true(r[i].id == (uint64_t)i);
        assert_int_equal(r[i].attempt, 2);
        assert_out_on(&h, (uint64_t)i, "wb", 2);
    }
    /* the gone session is unknown now */
    h_clear(&h);
    uint64_t done[] = {0};
    OK(w_credit(&h, RID("A"), 3, done, 1));
    assert_int_equal(st0(&h, 0), 2); /* still out on wb */
    drain(&h);
    assert_non_null(find(&h, 0, BP_TO_WORKER, BP_MSG_RESYNC, RID("A"), 0));
    assert_int_equal(count(&h, 0, BP_TO_WORKER, BP_MSG_TASKS, NULL, 0), 0);
    h_end(&h);
}

/* HELLO with the same id from a new rid: the old session is dead at once. */
static void t_rehello(void **state)
{
    (void)state;
    struct bp_dispatch_cfg c;
    base_cfg(&c);
    static struct h h; /* static: the teardown may free it after a failure */
    h_start_sink(&h, &c);
    add_n(&h, 3);
    OK(w_hello(&h, RID("\0\0\0\0\7"), "board", 2));
    drain(&h);
    assert_out_on(&h, 0, "board", 1);
    assert_out_on(&h, 1, "board", 1);
    h_clear(&h);
    OK(w_hello(&h, RID("\0\0\0\0\10"), "board", 3));
    struct bp_dispatch_stats s = stats_of(&h);
    assert_int_equal(s.workers, 1);
    assert_int_equal(s.workers_seen, 2);
    assert_int_equal(s.redelivered, 2);
    drain(&h);
    struct bp_task_rec r[4];
    assert_int_equal(tasks_to(&h, 0, RID("\0\0\0\0\10"), r, 4), 3);
    assert_true(r[0].id == 0 && r[1].id == 1 && r[2].id == 2);
    assert_int_equal(r[0].attempt, 2);
    assert_int_equal(r[1].attempt, 2);
    assert_int_equal(r[2].attempt, 1);
    assert_int_equal(count(&h, 0, BP_TO_WORKER, BP_MSG_TASKS, RID("\0\0\0\0\7")), 0);
    /* the old rid is unknown */
    h_clear(&h);
    int64_t refused = stats_of(&h).refused;
    OK(w_hb(&h, RID("\0\0\0\0\7"), 5, 0));
    drain(&h);
    assert_non_null(find(&h, 0, BP_TO_WORKER, BP_MSG_RESYNC, RID("\0\0\0\0\7"), 0));
    assert_int_equal(stats_of(&h).refused, refused + 1);
    h_end(&h);
}

/* Lost max_attempts times: the dispatcher's own LOST result, then the
 * sink's FAILED ack. */
static void t_lost(void **state)
{
    (void)state;
    struct bp_dispatch_cfg c;
    base_cfg(&c);
    c.max_attempts = 2;
    static struct h h; /* static: the teardown may free it after a failure */
    h_start_sink(&h, &c);
    add_n(&h, 2);
    OK(w_hello(&h, RID("A"), "wa", 1));
    drain(&h);
    assert_out_on(&h, 0, "wa", 1);
    bp_dispatch_worker_gone(h.d, RID("A"), h.now);
    assert_int_equal(st0(&h, 0), 1);
    OK(w_hello(&h, RID("B"), "wb", 1));
    drain(&h);
    assert_out_on(&h, 0, "wb", 2);
    h_clear(&h);
    bp_dispatch_worker_gone(h.d, RID("B"), h.now);
    struct bp_dispatch_stats s = stats_of(&h);
    assert_int_equal(st0(&h, 0), 4); /* lost: its result waits to go */
    assert_int_equal(s.redelivered, 1);
    assert_int_equal(s.lost, 0);
    assert_int_equal(s.failed, 0);
    /* the sink cannot take a message: it waits */
    drain_mask(&h, BP_TO_WORKER);
    assert_int_equal(count(&h, 0, BP_TO_SINK, BP_MSG_RESULTS, NULL, 0), 0);
    assert_int_equal(st0(&h, 0), 4);
    drain(&h);
    const struct sent *rs = find(&h, 0, BP_TO_SINK, BP_MSG_RESULTS, NULL, 0, 0);
    assert_non_null(rs);
    assert_int_equal(count(&h, 0, BP_TO_SINK, BP_MSG_RESULTS, NULL, 0), 1);
    assert_int_equal(rs->m.n, 1);
    uint8_t wl;
    const char *wid = bp_msg_wid(&rs->m, &wl);
    assert_true(wl == 0 || (wl == 10 && !memcmp(wid, "ventilator", 10)));
    size_t off = 0;
    struct bp_result_rec r;
    assert_int_equal(bp_msg_next_result(&rs->m, &off, &r), 1);
    assert_true(r.id == 0);
    assert_int_equal(r.status, BP_ST_LOST);
    assert_true(r.flags & BP_RF_FINAL);
    assert_int_equal(r.code, 2); /* docs: code = number of losses */
    assert_true(has_text(r.data, r.len, "lost"));
    assert_int_equal(bp_msg_next_result(&rs->m, &off, &r), 0);
    /* sent: no longer "waiting to go to the sink" (4) but waiting for the
     * ack (3); checked at the end so the rest runs either way */
    int state_sent = st0(&h, 0);
    assert_int_not_equal(state_sent, 0);
    bp_msg_next_result(&rs->m, &(size_t){0}, &r);
    OK(s_ack(&h, 0, r.attempt, BP_ACK_FAILED));
    s = stats_of(&h);
    assert_int_equal(st0(&h, 0), 0);
    assert_int_equal(s.failed, 1);
    assert_int_equal(s.lost, 1);
    assert_int_equal(s.ok, 0);
    /* task 1 is untouched by all this: attempt 1 on the next worker */
    h_clear(&h);
    OK(w_hello(&h, RID("C"), "wc", 1));
    drain(&h);
    struct bp_task_rec tr[2];
    assert_int_equal(tasks_to(&h, 0, RID("C"), tr, 2), 1);
    assert_true(tr[0].id == 1);
    assert_int_equal(tr[0].attempt, 1);
    h_end(&h);
    assert_int_equal(state_sent, 3);
}

/* A final ack for a task that was just declared lost: it is final as
 * acknowledged, and no LOST result goes to the sink for it. */
static void t_lost_then_acked(void **state)
{
    (void)state;
    struct bp_dispatch_cfg c;
    base_cfg(&c);
    c.max_attempts = 1;
    static struct h h; /* static: the teardown may free it after a failure */
    h_start_sink(&h, &c);
    add_n(&h, 2);
    OK(w_hello(&h, RID("A"), "wa", 2));
    drain(&h);
    bp_dispatch_worker_gone(h.d, RID("A"), h.now);
    assert_int_equal(st0(&h, 0), 4);
    assert_int_equal(st0(&h, 1), 4);
    /* A's result for task 0 had reached the sink before A died */
    OK(s_ack(&h, 0, 1, BP_ACK_OK));
    struct bp_dispatch_stats s = stats_of(&h);
    assert_int_equal(st0(&h, 0), 0);
    assert_int_equal(s.ok, 1);
    assert_int_equal(s.lost, 0);
    h_clear(&h);
    drain(&h);
    size_t n = 0;
    for (size_t i = 0; i < h.nout; i++) {
        const struct sent *m = &h.out[i];
        if (m->dest != BP_TO_SINK || m->m.type != BP_MSG_RESULTS)
            continue;
        size_t off = 0;
        struct bp_result_rec r;
        while (bp_msg_next_result(&m->m, &off, &r)) {
            assert_true(r.id == 1); /* never 0: it is final */
            n++;
        }
    }
    assert_int_equal(n, 1);
    /* a late ack after the LOST result went: final as the sink says */
    OK(s_ack(&h, 1, 1, BP_ACK_FAILED));
    s = stats_of(&h);
    assert_int_equal(s.failed, 1);
    assert_int_equal(s.lost, 1);
    bp_dispatch_input_done(h.d);
    assert_int_equal(stats_of(&h).all_final, 1);
    h_end(&h);
}

/* ACK RETRY: queued again for another worker, LAST_TRY after `retries`
 * failed tries; a RETRY for an older attempt is stale. */
static void t_retry_other_worker(void **state)
{
    (void)state;
    struct bp_dispatch_cfg c;
    base_cfg(&c);
    c.retries = 1;
    static struct h h; /* static: the teardown may free it after a failure */
    h_start_sink(&h, &c);
    add_n(&h, 1);
    OK(w_hello(&h, RID("A"), "wa", 1));
    drain(&h);
    struct bp_task_rec r[4];
    assert_int_equal(tasks_to(&h, 0, RID("A"), r, 4), 1);
    assert_int_equal(r[0].attempt, 1);
    assert_int_equal(r[0].flags & BP_TF_LAST_TRY, 0); /* one retry left */
    OK(w_hello(&h, RID("B"), "wb", 1));
    uint64_t done[] = {0};
    OK(w_credit(&h, RID("A"), 1, done, 1)); /* A has credit again */
    h_clear(&h);
    OK(s_ack(&h, 0, 1, BP_ACK_RETRY));
    assert_int_equal(stats_of(&h).retried, 1);
    drain(&h);
    assert_int_equal(tasks_to(&h, 0, RID("A"), r, 4), 0); /* not the one that failed it */
    assert_int_equal(tasks_to(&h, 0, RID("B"), r, 4), 1);
    assert_true(r[0].id == 0);
    assert_int_equal(r[0].attempt, 2);
    assert_int_equal(r[0].flags & BP_TF_LAST_TRY, BP_TF_LAST_TRY);
    assert_out_on(&h, 0, "wb", 2);
    /* the same RETRY again (attempt 1): stale, ignored */
    int64_t stale = stats_of(&h).stale;
    OK(s_ack(&h, 0, 1, BP_ACK_RETRY));
    assert_int_equal(stats_of(&h).stale, stale + 1);
    assert_int_equal(stats_of(&h).retried, 1);
    assert_out_on(&h, 0, "wb", 2);
    OK(s_ack(&h, 0, 2, BP_ACK_FAILED));
    struct bp_dispatch_stats s = stats_of(&h);
    assert_int_equal(s.failed, 1);
    assert_int_equal(s.ok, 0);
    assert_int_equal(s.lost, 0);
    assert_int_equal(st0(&h, 0), 0);
    h_end(&h);
}

/* With one worker the retry goes back to it; retries = 2 gives LAST_TRY
 * on the third delivery. A DONE id for a task no longer out on that
 * worker is ignored. */
static void t_retry_same_worker(void **state)
{
    (void)state;
    struct bp_dispatch_cfg c;
    base_cfg(&c);
    c.retries = 2;
    static struct h h; /* static: the teardown may free it after a failure */
    h_start_sink(&h, &c);
    add_n(&h, 1);
    OK(w_hello(&h, RID("A"), "wa", 1));
    drain(&h);
    struct bp_task_rec r[4];
    assert_int_equal(tasks_to(&h, 0, RID("A"), r, 4), 1);
    assert_int_equal(r[0].flags, 0);
    /* the sink's RETRY arrives before the worker's CREDIT */
    h_clear(&h);
    OK(s_ack(&h, 0, 1, BP_ACK_RETRY));
    assert_int_equal(st0(&h, 0), 1);
    uint64_t done[] = {0};
    OK(w_credit(&h, RID("A"), 1, done, 1)); /* done refers to attempt 1: ignored */
    assert_int_equal(stats_of(&h).done_wait, 0);
    drain(&h);
    assert_int_equal(tasks_to(&h, 0, RID("A"), r, 4), 1);
    assert_int_equal(r[0].attempt, 2);
    assert_int_equal(r[0].flags, 0);
    assert_out_on(&h, 0, "wa", 2);
    h_clear(&h);
    OK(w_credit(&h, RID("A"), 1, done, 1));
    assert_int_equal(st0(&h, 0), 3);
    OK(s_ack(&h, 0, 2, BP_ACK_RETRY));
    drain(&h);
    assert_int_equal(tasks_to(&h, 0, RID("A"), r, 4), 1);
    assert_int_equal(r[0].attempt, 3);
    assert_int_equal(r[0].flags, BP_TF_LAST_TRY);
    OK(s_ack(&h, 0, 3, BP_ACK_OK));
    struct bp_dispatch_stats s = stats_of(&h);
    assert_int_equal(s.retried, 2);
    assert_int_equal(s.ok, 1);
    assert_int_equal(s.failed, 0);
    assert_int_equal(s.redelivered, 0);
    h_end(&h);
}

/* --retries with a worker that fails everything (A) and one that is busy
 * (B, no credit): the retry waits for B rather than going back to A, which
 * has credit; it goes to A only after retry_wait_ms, or at once when A is
 * the only worker left. */
static void t_retry_waits_for_another(void **state)
{
    (void)state;
    struct bp_dispatch_cfg c;
    base_cfg(&c);
    c.retries = 1;
    c.retry_wait_ms = 5000;
    static struct h h; /* static: the teardown may free it after a failure */
    h_start_sink(&h, &c);
    h.sink_ka = 1;
    add_n(&h, 2);
    OK(w_hello(&h, RID("A"), "bad", 1));
    OK(w_hello(&h, RID("B"), "good", 1));
    ka_add(&h, RID("A"));
    ka_add(&h, RID("B"));
    drain(&h);
    assert_int_equal(st0(&h, 0), 2);
    assert_int_equal(st0(&h, 1), 2);
    char w0[BP_ID_MAX + 1];
    (void)st(&h, 0, w0, NULL);
    int a_has_0 = !strcmp(w0, "bad");
    uint64_t fail_id = a_has_0 ? 0 : 1;
    /* A fails its task and asks for more; B is still busy */
    uint64_t done[] = {fail_id};
    OK(w_credit(&h, RID("A"), 1, done, 1));
    h_clear(&h);
    OK(s_ack(&h, fail_id, 1, BP_ACK_RETRY));
    tick(&h, h.now + 4900, 100);
    struct bp_task_rec r[4];
    assert_int_equal(tasks_to(&h, 0, RID("A"), r, 4), 0); /* not back to A yet */
    assert_int_equal(st0(&h, fail_id), 1);
    /* B frees up: the retry goes to B */
    uint64_t other = 1 - fail_id;
    uint64_t bdone[] = {other};
    OK(w_credit(&h, RID("B"), 1, bdone, 1));
    drain(&h);
    assert_int_equal(tasks_to(&h, 0, RID("B"), r, 4), 1);
    assert_true(r[0].id == fail_id);
    assert_out_on(&h, fail_id, "good", 2);
    h_end(&h);

    /* Both busy again: after retry_wait_ms the retry may go back to A. */
    h_start_sink(&h, &c);
    h.sink_ka = 1;
    add_n(&h, 2);
    OK(w_hello(&h, RID("A"), "bad", 1));
    drain(&h);
    OK(w_hello(&h, RID("B"), "good", 1));
    ka_add(&h, RID("A"));
    ka_add(&h, RID("B"));
    drain(&h);
    assert_out_on(&h, 0, "bad", 1);
    assert_out_on(&h, 1, "good", 1);
    uint64_t d0[] = {0};
    OK(w_credit(&h, RID("A"), 1, d0, 1));
    h_clear(&h);
    OK(s_ack(&h, 0, 1, BP_ACK_RETRY));
    int64_t failed_at = h.now;
    assert_true(bp_dispatch_next_deadline(h.d) <= failed_at + 5000);
    tick(&h, failed_at + 4900, 100);
    assert_int_equal(tasks_to(&h, 0, RID("A"), r, 4), 0);
    tick(&h, failed_at + 5100, 100);
    assert_int_equal(tasks_to(&h, 0, RID("A"), r, 4), 1);
    assert_out_on(&h, 0, "bad", 2);
    h_end(&h);

    /* A alone: no wait. */
    h_start_sink(&h, &c);
    add_n(&h, 1);
    OK(w_hello(&h, RID("A"), "bad", 1));
    drain(&h);
    OK(w_credit(&h, RID("A"), 1, d0, 1));
    h_clear(&h);
    OK(s_ack(&h, 0, 1, BP_ACK_RETRY));
    drain(&h);
    assert_int_equal(tasks_to(&h, 0, RID("A"), r, 4), 1);
    h_end(&h);
}

/* docs/wire-format.md: tasks go out only once the sink answered on this
 * batch. A sink that restarted without the batch answers a ping with
 * batch 0: BEGIN, EXTENT and CLOSE go again, and no task goes out in the
 * same drain (a worker's result could reach the sink before the BEGIN and
 * be dropped as stale: the task would end 'lost' though it ran). Only an
 * answer on the batch lets tasks go again. */
static void t_sink_forgot_batch(void **state)
{
    (void)state;
    struct bp_dispatch_cfg c;
    base_cfg(&c);
    c.max_attempts = 1;
    static struct h h; /* static: the teardown may free it after a failure */
    h_start_sink(&h, &c);
    add_n(&h, 3);
    bp_dispatch_input_done(h.d);
    drain(&h);
    /* The sink restarts without the batch and answers the next ping with 0. */
    h_clear(&h);
    OK(s_hb_batch(&h, 0, 0, (uint64_t)h.now));
    OK(w_hello(&h, RID("A"), "wa", 10));
    drain(&h);
    assert_non_null(find(&h, 0, BP_TO_SINK, BP_MSG_BEGIN, NULL, 0, 0));
    assert_non_null(find(&h, 0, BP_TO_SINK, BP_MSG_CLOSE, NULL, 0, 0));
    const struct sent *ping = find(&h, 0, BP_TO_SINK, BP_MSG_HEARTBEAT, NULL, 0, 0);
    assert_non_null(ping); /* a ping right behind the BEGIN */
    uint64_t ping_val = bp_msg_u64(&ping->m, 0);
    assert_int_equal(count(&h, 0, BP_TO_WORKER, BP_MSG_TASKS, NULL, 0), 0);
    /* more batch-0 answers: still nothing, and no ping storm */
    for (int i = 0; i < 3; i++) {
        h_clear(&h);
        OK(s_hb_batch(&h, 0, 0, (uint64_t)h.now));
        drain(&h);
        assert_int_equal(count(&h, 0, BP_TO_WORKER, BP_MSG_TASKS, NULL, 0), 0);
        assert_int_equal(count(&h, 0, BP_TO_SINK, BP_MSG_HEARTBEAT, NULL, 0), 0);
    }
    /* the sink took the BEGIN: its answer carries the batch, tasks go */
    h_clear(&h);
    OK(s_hb(&h, 0, ping_val));
    drain(&h);
    struct bp_task_rec r[4];
    assert_int_equal(tasks_to(&h, 0, RID("A"), r, 4), 3);
    h_end(&h);
}

/* task_deadline_ms: a task out too long is redelivered, its worker alive. */
static void t_task_deadline(void **state)
{
    (void)state;
    struct bp_dispatch_cfg c;
    base_cfg(&c);
    c.task_deadline_ms = 2000;
    static struct h h; /* static: the teardown may free it after a failure */
    h_start_sink(&h, &c);
    h.sink_ka = 1;
    add_n(&h, 2);
    OK(w_hello(&h, RID("A"), "wa", 1));
    ka_add(&h, RID("A"));
    drain(&h);
    assert_out_on(&h, 0, "wa", 1);
    tick(&h, T0 + 1900, 100);
    assert_out_on(&h, 0, "wa", 1);
    assert_int_equal(stats_of(&h).redelivered, 0);
    h_clear(&h);
    tick(&h, T0 + 2100, 100);
    struct bp_dispatch_stats s = stats_of(&h);
    assert_int_equal(s.redelivered, 1);
    assert_int_equal(s.workers, 1);
    int a;
    int s0 = st(&h, 0, NULL, &a);
    if (s0 == 2) { /* given back to wa at once: then as attempt 2 */
        assert_int_equal(a, 2);
    } else {
        assert_int_equal(s0, 1);
        OK(w_hello(&h, RID("B"), "wb", 1));
        drain(&h);
        assert_out_on(&h, 0, "wb", 2);
    }
    struct bp_task_rec r[4];
    assert_int_equal(tasks_to(&h, 0, NULL, 0, r, 4), 1);
    assert_true(r[0].id == 0);
    assert_int_equal(r[0].attempt, 2);
    h_end(&h);
}

/* BYE hands queued ids back (no loss); the worker gets nothing more;
 * BYE GONE removes it. */
static void t_bye(void **state)
{
    (void)state;
    struct bp_dispatch_cfg c;
    base_cfg(&c);
    static struct h h; /* static: the teardown may free it after a failure */
    h_start_sink(&h, &c);
    add_n(&h, 6);
    OK(w_hello(&h, RID("A"), "wa", 4));
    drain(&h);
    h_clear(&h);
    uint64_t back[] = {1, 2};
    OK(w_bye(&h, RID("A"), 0, back, 2));
    struct bp_dispatch_stats s = stats_of(&h);
    assert_int_equal(st0(&h, 1), 1);
    assert_int_equal(st0(&h, 2), 1);
    assert_int_equal(s.handed_back, 2);
    assert_int_equal(s.redelivered, 0);
    assert_int_equal(s.lost, 0);
    /* more credit from a stopping worker: ignored */
    uint64_t done[] = {0};
    OK(w_credit(&h, RID("A"), 5, done, 1));
    assert_int_equal(st0(&h, 0), 3);
    h.now += 100;
    bp_dispatch_on_timer(h.d, h.now);
    drain(&h);
    assert_int_equal(count(&h, 0, BP_TO_WORKER, BP_MSG_TASKS, NULL, 0), 0);
    assert_int_equal(count(&h, 0, BP_TO_WORKER, BP_MSG_RESYNC, NULL, 0), 0);
    OK(w_hello(&h, RID("B"), "wb", 5));
    drain(&h);
    struct bp_task_rec r[8];
    /* handed back at the front of the queue (in either order), then 4, 5 */
    assert_int_equal(tasks_to(&h, 0, RID("B"), r, 8), 4);
    assert_true((r[0].id == 1 && r[1].id == 2) || (r[0].id == 2 && r[1].id == 1));
    assert_true(r[2].id == 4 && r[3].id == 5);
    /* BYE GONE: the last task comes back, the worker is removed */
    h_clear(&h);
    int workers = stats_of(&h).workers;
    uint64_t last[] = {3};
    OK(w_credit(&h, RID("B"), 1, NULL, 0));
    OK(w_bye(&h, RID("A"), BP_BYE_GONE, last, 1));
    s = stats_of(&h);
    assert_int_equal(s.workers, workers - 1);
    assert_int_equal(s.handed_back, 3);
    assert_int_equal(s.redelivered, 0);
    assert_int_equal(st0(&h, 0), 3); /* done before: still waits for its ack */
    drain(&h);
    assert_int_equal(tasks_to(&h, 0, RID("B"), r, 8), 1);
    assert_true(r[0].id == 3);
    h_end(&h);

    /* BYE GONE while tasks are out that it does not list: none stays out */
    h_start_sink(&h, &c);
    add_n(&h, 2);
    OK(w_hello(&h, RID("A"), "wa", 2));
    drain(&h);
    OK(w_bye(&h, RID("A"), BP_BYE_GONE, NULL, 0));
    s = stats_of(&h);
    assert_int_equal(s.workers, 0);
    assert_int_equal(s.out, 0);
    assert_int_equal(st0(&h, 0), 1);
    assert_int_equal(st0(&h, 1), 1);
    h_end(&h);
}

/* Unknown peers get RESYNC; HELLOs over max_workers are refused. */
static void t_unknown_and_refused(void **state)
{
    (void)state;
    struct bp_dispatch_cfg c;
    base_cfg(&c);
    c.max_workers = 2;
    static struct h h; /* static: the teardown may free it after a failure */
    h_start_sink(&h, &c);
    uint64_t ids[] = {0};
    (void)w_credit(&h, RID("X"), 3, ids, 1);
    (void)w_hb(&h, RID("\0Y"), 1, 0);
    (void)w_bye(&h, RID("Z"), 0, NULL, 0);
    drain(&h);
    assert_non_null(find(&h, 0, BP_TO_WORKER, BP_MSG_RESYNC, RID("X"), 0));
    assert_non_null(find(&h, 0, BP_TO_WORKER, BP_MSG_RESYNC, RID("\0Y"), 0));
    /* (a BYE from an unknown peer is refused; a RESYNC to a worker that
     * is leaving would only make it come back: not required) */
    struct bp_dispatch_stats s = stats_of(&h);
    assert_int_equal(s.refused, 3);
    assert_int_equal(s.workers, 0);
    assert_int_equal(s.workers_seen, 0);

    OK(w_hello(&h, RID("A"), "wa", 0));
    OK(w_hello(&h, RID("B"), "wb", 0));
    (void)w_hello(&h, RID("C"), "wc", 5);
    s = stats_of(&h);
    assert_int_equal(s.workers, 2);
    assert_int_equal(s.refused, 4);
    h_clear(&h);
    add_n(&h, 2);
    drain(&h);
    assert_int_equal(count(&h, 0, BP_TO_WORKER, BP_MSG_TASKS, NULL, 0), 0);
    /* a place frees up: C may come in */
    bp_dispatch_worker_gone(h.d, RID("A"), h.now);
    OK(w_hello(&h, RID("C"), "wc", 5));
    assert_int_equal(stats_of(&h).workers, 2);
    drain(&h);
    struct bp_task_rec r[4];
    assert_int_equal(tasks_to(&h, 0, RID("C"), r, 4), 2);
    h_end(&h);
}

/* Thousands of workers: found by their routing id through deaths, slot
 * reuse and new sessions (the rid map's deletions), each served once per
 * credit, the silent ones found dead, without a walk over all of them. */
static void t_many_workers(void **state)
{
    (void)state;
    enum { NW = 3000 };
    struct bp_dispatch_cfg c;
    base_cfg(&c);
    c.use_sink = 0;
    c.max_workers = 4096;
    c.max_tasks = 4 * NW;
    struct h h;
    h_start(&h, &c);
    uint8_t rid[NW][3];
    char id[16];
    for (int i = 0; i < NW; i++) {
        rid[i][0] = (uint8_t)(i >> 8);
        rid[i][1] = (uint8_t)i;
        rid[i][2] = 'r';
        snprintf(id, sizeof id, "w%d", i);
        OK(w_hello(&h, rid[i], 3, id, 0));
    }
    assert_int_equal(stats_of(&h).workers, NW);
    for (int i = 0; i < NW; i += 3)
        bp_dispatch_worker_gone(h.d, rid[i], 3, h.now);
    assert_int_equal(stats_of(&h).workers, NW - NW / 3);
    for (int i = 0; i < NW; i++)
        OK(w_hb(&h, rid[i], 3, 0, 0)); /* the gone ones are strangers now */
    assert_int_equal(stats_of(&h).refused, NW / 3);
    for (int i = 0; i < NW; i += 3) { /* back on new connections (slots reused) */
        rid[i][2] = 'n';
        snprintf(id, sizeof id, "w%d", i);
        OK(w_hello(&h, rid[i], 3, id, 0));
    }
    assert_int_equal(stats_of(&h).workers, NW);
    h_clear(&h);
    add_n(&h, NW);
    for (int i = 0; i < NW; i++)
        OK(w_credit(&h, rid[i], 3, 1, NULL, 0));
    drain(&h);
    assert_int_equal(count(&h, 0, BP_TO_WORKER, BP_MSG_TASKS, NULL, 0), NW);
    assert_int_equal(stats_of(&h).out, NW);
    assert_int_equal(stats_of(&h).refused, NW / 3);
    /* Half of them keep talking; the other half is found dead. */
    for (int k = 0; k < 4; k++) {
        h.now += c.hb_ivl_ms;
        for (int i = 0; i < NW; i += 2)
            OK(w_hb(&h, rid[i], 3, 0, 0));
        bp_dispatch_on_timer(h.d, h.now);
        drain(&h);
    }
    struct bp_dispatch_stats s = stats_of(&h);
    assert_int_equal(s.workers, NW / 2);
    assert_int_equal(s.redelivered, NW / 2);
    assert_int_equal(s.refused, NW / 3);
    h_end(&h);
}

/* A RESYNC queued for a connection that is gone (the send says
 * EHOSTUNREACH, the driver calls worker_gone) is dropped: the next peek
 * is the live workers' traffic, not the same RESYNC for ever (found by
 * the link-cut chaos test: the ventilator spun and starved every worker). */
static void t_resync_to_gone_peer(void **state)
{
    (void)state;
    struct bp_dispatch_cfg c;
    base_cfg(&c);
    static struct h h; /* static: the teardown may free it after a failure */
    h_start_sink(&h, &c);
    OK(w_hello(&h, RID("A"), "wa", 3));
    add_n(&h, 3);
    (void)w_hb(&h, RID("X"), 1, 0); /* an old session's heartbeat */
    (void)w_hb(&h, RID("Y"), 1, 0);
    struct bp_out o;
    assert_int_equal(bp_dispatch_peek(h.d, h.now, BP_TO_WORKER, &o), 1);
    assert_int_equal(o.rid_len, 1);
    assert_memory_equal(o.rid, "X", 1);
    /* the driver's send failed: X is unreachable */
    bp_dispatch_worker_gone(h.d, RID("X"), h.now);
    assert_int_equal(bp_dispatch_peek(h.d, h.now, BP_TO_WORKER, &o), 1);
    assert_false(o.rid_len == 1 && !memcmp(o.rid, "X", 1));
    drain(&h);
    assert_int_equal(count(&h, 0, BP_TO_WORKER, BP_MSG_RESYNC, RID("X")), 0);
    assert_int_equal(count(&h, 0, BP_TO_WORKER, BP_MSG_RESYNC, RID("Y")), 1);
    struct bp_task_rec r[4];
    assert_int_equal(tasks_to(&h, 0, RID("A"), r, 4), 3);
    h_end(&h);
}

/* Heartbeats: a worker's ping is echoed; every live worker and the sink
 * hear from the ventilator at least every interval. */
static void t_heartbeats(void **state)
{
    (void)state;
    struct bp_dispatch_cfg c;
    base_cfg(&c);
    static struct h h; /* static: the teardown may free it after a failure */
    h_start_sink(&h, &c);
    h.sink_ka = 1;
    OK(w_hello(&h, RID("A"), "wa", 0));
    OK(w_hello(&h, RID("B"), "wb", 0));
    drain(&h);
    OK(w_hb(&h, RID("A"), 777777, 0));
    int64_t t_ping = h.now;
    drain(&h);
    /* the next heartbeat to A echoes the ping */
    const struct sent *e = NULL;
    for (int i = 0; i < 30 && !e; i++) {
        e = find(&h, 0, BP_TO_WORKER, BP_MSG_HEARTBEAT, RID("A"), 0);
        if (!e) {
            h.now += 50;
            OK(s_hb(&h, (uint64_t)h.now, 0));
            bp_dispatch_on_timer(h.d, h.now);
            drain(&h);
        }
    }
    assert_non_null(e);
    assert_true(bp_msg_u64(&e->m, 8) == 777777);
    assert_true(e->at - t_ping <= c.hb_ivl_ms);

    /* 10 s with both workers talking: gaps never exceed the interval */
    h_clear(&h);
    ka_add(&h, RID("A"));
    ka_add(&h, RID("B"));
    int64_t start = h.now;
    tick(&h, start + 10000, 100);
    const char *rids[] = {"A", "B"};
    for (int w = 0; w < 3; w++) {
        int64_t last = start;
        size_t n = 0;
        for (size_t i = 0; i < h.nout; i++) {
            const struct sent *s = &h.out[i];
            if (w < 2 && (s->dest != BP_TO_WORKER || s->rid_len != 1 || s->rid[0] != rids[w][0]))
                continue;
            if (w == 2 && s->dest != BP_TO_SINK)
                continue;
            if (s->m.type != BP_MSG_HEARTBEAT)
                continue;
            assert_true(s->at - last <= c.hb_ivl_ms);
            if (w == 2) /* sink pings carry the clock */
                assert_true(ping_is_clock(&s->m, s->at));
            last = s->at;
            n++;
        }
        assert_true(h.now - last <= c.hb_ivl_ms);
        assert_true(n >= 9);
    }
    assert_int_equal(stats_of(&h).workers, 2);
    h_end(&h);
}

/* The sink goes silent: no tasks go out, DONE tasks are not lost; when it
 * speaks again BEGIN and CLOSE are repeated and ack deadlines restart. */
static void t_sink_outage(void **state)
{
    (void)state;
    struct bp_dispatch_cfg c;
    base_cfg(&c);
    c.ack_timeout_ms = 5000;
    static struct h h; /* static: the teardown may free it after a failure */
    h_start_sink(&h, &c);
    add_n(&h, 3);
    bp_dispatch_input_done(h.d);
    OK(w_hello(&h, RID("A"), "wa", 2));
    ka_add(&h, RID("A"));
    drain(&h);
    uint64_t done[] = {0};
    OK(w_credit(&h, RID("A"), 0, done, 1));
    assert_int_equal(st0(&h, 0), 3);
    /* the sink says nothing from now on */
    tick(&h, T0 + 2900, 100);
    assert_int_equal(stats_of(&h).sink_alive, 1);
    tick(&h, T0 + 4000, 100);
    assert_int_equal(stats_of(&h).sink_alive, 0);
    h_clear(&h);
    OK(w_credit(&h, RID("A"), 1, NULL, 0));
    tick(&h, T0 + 10000, 100);
    assert_int_equal(count(&h, 0, BP_TO_WORKER, BP_MSG_TASKS, NULL, 0), 0);
    assert_int_equal(st0(&h, 0), 3); /* not lost: the sink was away */
    assert_int_equal(st0(&h, 2), 1);
    assert_int_equal(stats_of(&h).redelivered, 0);
    assert_int_equal(stats_of(&h).workers, 1);
    /* the sink is back */
    h_clear(&h);
    OK(s_hb(&h, (uint64_t)h.now, 0));
    h.sink_ka = 1;
    int64_t back = h.now;
    assert_int_equal(stats_of(&h).sink_alive, 1);
    drain(&h);
    assert_non_null(find(&h, 0, BP_TO_SINK, BP_MSG_BEGIN, NULL, 0, 0));
    const struct sent *cl = find(&h, 0, BP_TO_SINK, BP_MSG_CLOSE, NULL, 0, 0);
    assert_non_null(cl);
    assert_true(bp_msg_u64(&cl->m, 0) == 3);
    struct bp_task_rec r[4];
    assert_int_equal(tasks_to(&h, 0, RID("A"), r, 4), 1);
    assert_true(r[0].id == 2);
    /* a fresh ack deadline from when the sink came back */
    tick(&h, back + 4900, 100);
    assert_int_equal(st0(&h, 0), 3);
    assert_int_equal(stats_of(&h).redelivered, 0);
    tick(&h, back + 5100, 100);
    assert_int_equal(stats_of(&h).redelivered, 1);
    assert_int_equal(st0(&h, 0), 1);
    h_end(&h);
}

/* A sink that answers with batch 0 does not know the batch (it restarted,
 * or refused a BEGIN): BEGIN, and CLOSE once the input is done, go again,
 * at every such answer; an answer on the batch sends nothing again. */
static void t_sink_unknown_batch(void **state)
{
    (void)state;
    struct bp_dispatch_cfg c;
    base_cfg(&c);
    static struct h h;
    h_start_sink(&h, &c);
    add_n(&h, 2);
    OK(s_hb(&h, 0, (uint64_t)h.now));
    drain(&h);
    assert_null(find(&h, 0, BP_TO_SINK, BP_MSG_BEGIN, NULL, 0, 0));
    OK(s_hb_batch(&h, 0, 0, (uint64_t)h.now));
    drain(&h);
    assert_non_null(find(&h, 0, BP_TO_SINK, BP_MSG_BEGIN, NULL, 0, 0));
    assert_null(find(&h, 0, BP_TO_SINK, BP_MSG_CLOSE, NULL, 0, 0));
    assert_int_equal(stats_of(&h).stale, 0);
    h_clear(&h);
    bp_dispatch_input_done(h.d);
    drain(&h);
    const struct sent *cl = find(&h, 0, BP_TO_SINK, BP_MSG_CLOSE, NULL, 0, 0);
    assert_non_null(cl);
    h_clear(&h);
    OK(s_hb_batch(&h, 0, 0, (uint64_t)h.now));
    drain(&h);
    assert_non_null(find(&h, 0, BP_TO_SINK, BP_MSG_BEGIN, NULL, 0, 0));
    cl = find(&h, 0, BP_TO_SINK, BP_MSG_CLOSE, NULL, 0, 0);
    assert_non_null(cl);
    assert_true(bp_msg_u64(&cl->m, 0) == 2);
    /* Another batch's answer is stale, and sends nothing. */
    h_clear(&h);
    OK(s_hb_batch(&h, c.batch + 1, 0, (uint64_t)h.now));
    drain(&h);
    assert_null(find(&h, 0, BP_TO_SINK, BP_MSG_BEGIN, NULL, 0, 0));
    assert_int_equal(stats_of(&h).stale, 1);
    h_end(&h);
}

/* Without a sink: final when the worker says DONE; no sink messages. */
static void t_no_sink(void **state)
{
    (void)state;
    struct bp_dispatch_cfg c;
    base_cfg(&c);
    c.use_sink = 0;
    static struct h h; /* static: the teardown may free it after a failure */
    h_start(&h, &c);
    add_n(&h, 3);
    OK(w_hello(&h, RID("A"), "wa", 3));
    ka_add(&h, RID("A"));
    drain(&h);
    struct bp_task_rec r[4];
    assert_int_equal(tasks_to(&h, 0, RID("A"), r, 4), 3);
    uint64_t done[] = {0, 1};
    OK(w_credit(&h, RID("A"), 0, done, 2));
    struct bp_dispatch_stats s = stats_of(&h);
    assert_int_equal(s.ok, 2);
    assert_int_equal(st0(&h, 0), 0);
    assert_int_equal(st0(&h, 1), 0);
    bp_dispatch_input_done(h.d);
    tick(&h, T0 + 20000, 250); /* no ack timeout without a sink */
    uint64_t done2[] = {2};
    OK(w_credit(&h, RID("A"), 0, done2, 1));
    s = stats_of(&h);
    assert_int_equal(s.ok, 3);
    assert_int_equal(s.redelivered, 0);
    assert_int_equal(s.all_final, 1);
    drain(&h);
    for (size_t i = 0; i < h.nout; i++)
        assert_int_equal(h.out[i].dest, BP_TO_WORKER);
    assert_int_equal(bp_dispatch_peek(h.d, h.now, BP_TO_SINK, &(struct bp_out){0}), 0);
    h_end(&h);
}

/* finish(): END to every live worker, then no tasks. */
static void t_finish(void **state)
{
    (void)state;
    struct bp_dispatch_cfg c;
    base_cfg(&c);
    static struct h h; /* static: the teardown may free it after a failure */
    h_start_sink(&h, &c);
    add_n(&h, 4);
    OK(w_hello(&h, RID("A"), "wa", 1));
    OK(w_hello(&h, RID("B"), "wb", 1));
    OK(w_hello(&h, RID("C"), "wc", 1));
    bp_dispatch_worker_gone(h.d, RID("C"), h.now);
    drain(&h);
    h_clear(&h);
    bp_dispatch_finish(h.d, BP_END_COMPLETE);
    struct bp_dispatch_stats s = stats_of(&h);
    assert_int_equal(s.finished, 1);
    assert_int_equal(s.end_pending, 2);
    drain(&h);
    assert_int_equal(stats_of(&h).end_pending, 0);
    const struct sent *ea = find(&h, 0, BP_TO_WORKER, BP_MSG_END, RID("A"), 0);
    const struct sent *eb = find(&h, 0, BP_TO_WORKER, BP_MSG_END, RID("B"), 0);
    assert_non_null(ea);
    assert_non_null(eb);
    assert_int_equal(bp_msg_u32(&ea->m), BP_END_COMPLETE);
    assert_int_equal(bp_msg_u32(&eb->m), BP_END_COMPLETE);
    assert_int_equal(count(&h, 0, BP_TO_WORKER, BP_MSG_END, NULL, 0), 2);
    /* more credit: still nothing (drain() fails on TASKS after finish) */
    uint64_t done[] = {0};
    OK(w_credit(&h, RID("A"), 5, done, 1));
    h.now += 100;
    bp_dispatch_on_timer(h.d, h.now);
    drain(&h);
    assert_int_equal(count(&h, 0, BP_TO_WORKER, BP_MSG_TASKS, NULL, 0), 0);
    h_end(&h);

    /* STOPPING */
    h_start_sink(&h, &c);
    OK(w_hello(&h, RID("A"), "wa", 1));
    drain(&h);
    bp_dispatch_finish(h.d, BP_END_STOPPING);
    drain(&h);
    ea = find(&h, 0, BP_TO_WORKER, BP_MSG_END, RID("A"), 0);
    assert_non_null(ea);
    assert_int_equal(bp_msg_u32(&ea->m), BP_END_STOPPING);
    h_end(&h);
}

static int stats_equal_but_malformed(const struct bp_dispatch_stats *a,
                                     const struct bp_dispatch_stats *b)
{
    return a->added == b->added && a->ok == b->ok && a->failed == b->failed && a->lost == b->lost &&
           a->redelivered == b->redelivered && a->retried == b->retried &&
           a->handed_back == b->handed_back && a->queued == b->queued && a->out == b->out &&
           a->done_wait == b->done_wait && a->held_bytes == b->held_bytes &&
           a->refused == b->refused && a->stale == b->stale && a->workers == b->workers &&
           a->workers_seen == b->workers_seen && a->sink_alive == b->sink_alive &&
           a->complete == b->complete && a->input_done == b->input_done &&
           a->finished == b->finished && a->all_final == b->all_final &&
           a->end_pending == b->end_pending;
}

/* Garbage and other versions are dropped and counted, nothing else moves. */
static void t_malformed(void **state)
{
    (void)state;
    struct bp_dispatch_cfg c;
    base_cfg(&c);
    static struct h h; /* static: the teardown may free it after a failure */
    h_start_sink(&h, &c);
    add_n(&h, 2);
    OK(w_hello(&h, RID("A"), "wa", 1));
    drain(&h);
    h_clear(&h);
    struct bp_dispatch_stats s0 = stats_of(&h);
    static const uint8_t garbage[] = "GET / HTTP/1.1\r\n\r\n";
    static const uint8_t v1[] = {'b', 'p', 1, 4, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1};
    uint8_t v3[BP_MSG_HDR + BP_HB_BODY] = {'b', 'p', BP_PROTO_VERSION + 1, BP_MSG_HEARTBEAT};
    assert_int_equal(bp_dispatch_on_worker(h.d, RID("A"), garbage, sizeof garbage, h.now),
                     BP_EPROTO);
    assert_int_equal(bp_dispatch_on_worker(h.d, RID("A"), v1, sizeof v1, h.now), BP_EVERSION);
    assert_int_equal(bp_dispatch_on_worker(h.d, RID("A"), v3, sizeof v3, h.now), BP_EVERSION);
    assert_int_equal(bp_dispatch_on_worker(h.d, RID("A"), "", 0, h.now), BP_EPROTO);
    assert_int_equal(bp_dispatch_on_worker(h.d, RID("Q"), garbage, 5, h.now), BP_EPROTO);
    assert_int_equal(bp_dispatch_on_sink(h.d, garbage, sizeof garbage, h.now), BP_EPROTO);
    assert_int_equal(bp_dispatch_on_sink(h.d, v1, sizeof v1, h.now), BP_EVERSION);
    assert_int_equal(bp_dispatch_on_sink(h.d, "bp", 2, h.now), BP_EPROTO);
    /* a CREDIT whose count does not match its ids */
    bp_pack_begin(&h.p, BP_MSG_CREDIT, BATCH);
    bp_pack_u32(&h.p, 100);
    bp_pack_id(&h.p, 0);
    OK(bp_pack_finish(&h.p));
    h.p.p[7] = 2;
    assert_int_equal(bp_dispatch_on_worker(h.d, RID("A"), h.p.p, h.p.len, h.now), BP_EPROTO);
    struct bp_dispatch_stats s1 = stats_of(&h);
    assert_int_equal(s1.malformed, s0.malformed + 9);
    assert_true(stats_equal_but_malformed(&s0, &s1));
    assert_int_equal(st0(&h, 0), 2);
    drain(&h);
    assert_int_equal(count(&h, 0, BP_TO_WORKER, BP_MSG_TASKS, NULL, 0), 0);
    assert_int_equal(count(&h, 0, BP_TO_WORKER, BP_MSG_RESYNC, NULL, 0), 0);

    /* well-formed messages of the wrong direction do no harm */
    const int types[] = {BP_MSG_TASKS, BP_MSG_RESYNC, BP_MSG_END, BP_MSG_RESULTS,
                         BP_MSG_BEGIN, BP_MSG_CLOSE,  BP_MSG_ACK, BP_MSG_COMPLETE,
                         BP_MSG_HELLO, BP_MSG_CREDIT, BP_MSG_BYE};
    for (size_t i = 0; i < sizeof types / sizeof types[0]; i++) {
        bp_pack_begin(&h.p, types[i], BATCH);
        switch (types[i]) {
        case BP_MSG_TASKS:
            bp_pack_task(&h.p, 0, 1, 0, "x", 1);
            break;
        case BP_MSG_END:
            bp_pack_u32(&h.p, 0);
            break;
        case BP_MSG_RESULTS: {
            bp_pack_u8(&h.p, 0);
            struct bp_result_rec rr = {.id = 0, .attempt = 1, .flags = BP_RF_FINAL};
            bp_pack_result(&h.p, &rr);
            break;
        }
        case BP_MSG_CLOSE:
            bp_pack_u64(&h.p, 1);
            break;
        case BP_MSG_ACK: /* a task that is not held: from the sink, stale */
            bp_pack_ack(&h.p, 99, 1, BP_ACK_OK);
            break;
        case BP_MSG_COMPLETE:
            bp_pack_u64(&h.p, 0);
            bp_pack_u64(&h.p, 0);
            break;
        case BP_MSG_HELLO:
            bp_pack_u16(&h.p, 1);
            bp_pack_u16(&h.p, 0);
            bp_pack_u32(&h.p, 1);
            bp_pack_u8(&h.p, 1);
            bp_pack_u8(&h.p, 'z');
            break;
        case BP_MSG_CREDIT:
        case BP_MSG_BYE:
            bp_pack_u32(&h.p, 0);
            break;
        default:
            break;
        }
        OK(bp_pack_finish(&h.p));
        int rc = bp_dispatch_on_sink(h.d, h.p.p, h.p.len, h.now);
        assert_true(rc == BP_OK || rc == BP_EPROTO);
        if (types[i] != BP_MSG_HELLO && types[i] != BP_MSG_CREDIT && types[i] != BP_MSG_BYE) {
            rc = bp_dispatch_on_worker(h.d, RID("A"), h.p.p, h.p.len, h.now);
            assert_true(rc == BP_OK || rc == BP_EPROTO);
        }
        drain(&h);
    }
    assert_int_equal(stats_of(&h).added, 2);
    assert_int_equal(stats_of(&h).ok, 0); /* an ACK from a worker is no ack */
    h_end(&h);
}

/* Memory bounds: want_input stops at max_tasks / max_bytes; add refuses
 * records over max_rec. */
static void t_bounds(void **state)
{
    (void)state;
    struct bp_dispatch_cfg c;
    base_cfg(&c);
    c.max_tasks = 4;
    c.max_rec = 60;
    static struct h h; /* static: the teardown may free it after a failure */
    h_start_sink(&h, &c);
    uint8_t buf[100];
    memset(buf, 'b', sizeof buf);
    uint64_t id = 7;
    assert_int_equal(bp_dispatch_want_input(h.d), 1);
    assert_int_equal(bp_dispatch_add(h.d, buf, 61, &id), BP_ETOOBIG);
    assert_int_equal(stats_of(&h).added, 0);
    OK(bp_dispatch_add(h.d, buf, 60, &id));
    assert_true(id == 0);
    add_n(&h, 2);
    assert_int_equal(bp_dispatch_want_input(h.d), 1);
    add_n(&h, 1);
    assert_int_equal(bp_dispatch_want_input(h.d), 0);
    /* they go out: still held */
    OK(w_hello(&h, RID("A"), "wa", 10));
    drain(&h);
    assert_int_equal(bp_dispatch_want_input(h.d), 0);
    uint64_t done[] = {0, 1};
    OK(w_credit(&h, RID("A"), 0, done, 2));
    assert_int_equal(bp_dispatch_want_input(h.d), 0);
    OK(s_ack(&h, 0, 1, BP_ACK_OK));
    assert_int_equal(bp_dispatch_want_input(h.d), 1);
    assert_int_equal(stats_of(&h).held_bytes, 3 * 6);
    h_end(&h);

    base_cfg(&c);
    c.max_bytes = 100;
    h_start_sink(&h, &c);
    OK(bp_dispatch_add(h.d, buf, 60, &id));
    assert_int_equal(bp_dispatch_want_input(h.d), 1);
    assert_int_equal(stats_of(&h).held_bytes, 60);
    OK(bp_dispatch_add(h.d, buf, 40, &id));
    assert_int_equal(stats_of(&h).held_bytes, 100);
    assert_int_equal(bp_dispatch_want_input(h.d), 0);
    OK(w_hello(&h, RID("A"), "wa", 10));
    drain(&h);
    OK(s_ack(&h, 1, 1, BP_ACK_OK));
    assert_int_equal(stats_of(&h).held_bytes, 60);
    assert_int_equal(bp_dispatch_want_input(h.d), 1);
    h_end(&h);
}

/* ---- next_deadline: an event-driven run that only wakes when told ------------ */

#define PW 3
#define PT 60

struct pworker {
    const char *rid;
    const char *id;
    int task_ms;
    int window;
    int64_t dies_at; /* INT64_MAX: never */
    int alive;
    int64_t next_hb, last_sent, last_heard;
    uint64_t q[64];
    uint16_t qa[64];
    int64_t fin[64];
    int nq;
};

struct live {
    int64_t out[PW];
    int n;
    struct pworker *w;
};

static void live_fn(void *arg, const char *wid, int64_t out, int64_t done)
{
    struct live *l = arg;
    (void)done;
    for (int i = 0; i < PW; i++)
        if (!strcmp(wid, l->w[i].id))
            l->out[i] = out;
    l->n++;
}

static void t_deadline_progress(void **state)
{
    (void)state;
    struct bp_dispatch_cfg c;
    base_cfg(&c);
    c.ack_timeout_ms = 4000;
    c.pack_max = 4;
    static struct h h; /* static: the teardown may free it after a failure */
    h_start(&h, &c);
    struct pworker w[PW] = {
        {.rid = "\0A", .id = "fast", .task_ms = 50, .window = 4, .dies_at = INT64_MAX},
        {.rid = "\0B", .id = "slow", .task_ms = 700, .window = 2, .dies_at = INT64_MAX},
        {.rid = "\0C", .id = "dies", .task_ms = 300, .window = 3, .dies_at = T0 + 1000},
    };
    for (int i = 0; i < PW; i++) {
        w[i].alive = 1;
        w[i].next_hb = T0 + c.hb_ivl_ms;
        w[i].last_sent = T0;
        w[i].last_heard = T0;
        OK(w_hello(&h, w[i].rid, 2, w[i].id, (uint32_t)w[i].window));
    }
    int64_t sink_next_hb = T0 + 200, sink_last_sent = T0;
    int stall = 0;
    size_t seen = 0;
    int iter;
    for (iter = 0; iter < 20000; iter++) {
        int64_t next = bp_dispatch_next_deadline(h.d);
        assert_true(next != INT64_MAX);
        if (sink_next_hb < next)
            next = sink_next_hb;
        for (int i = 0; i < PW; i++) {
            if (!w[i].alive)
                continue;
            if (w[i].dies_at < next)
                next = w[i].dies_at;
            if (w[i].next_hb < next)
                next = w[i].next_hb;
            if (w[i].nq && w[i].fin[0] < next)
                next = w[i].fin[0];
        }
        if (next <= h.now) {
            next = h.now;
            stall++;
            assert_true(stall < 50); /* a deadline in the past that on_timer does not clear */
        } else {
            stall = 0;
        }
        h.now = next;
        /* the peers */
        if (sink_next_hb <= h.now) {
            OK(s_hb(&h, (uint64_t)h.now, 0));
            sink_next_hb = h.now + c.hb_ivl_ms;
        }
        for (int i = 0; i < PW; i++) {
            struct pworker *x = &w[i];
            if (x->alive && x->dies_at <= h.now)
                x->alive = 0;
            if (!x->alive)
                continue;
            if (x->next_hb <= h.now) {
                OK(w_hb(&h, x->rid, 2, (uint64_t)h.now, 0));
                x->next_hb = h.now + c.hb_ivl_ms;
                x->last_heard = h.now;
            }
            uint64_t done[64];
            size_t nd = 0;
            while (x->nq && x->fin[0] <= h.now) {
                OK(s_ack(&h, x->q[0], x->qa[0], BP_ACK_OK)); /* result reached the sink */
                done[nd++] = x->q[0];
                x->nq--;
                memmove(x->q, x->q + 1, (size_t)x->nq * sizeof x->q[0]);
                memmove(x->qa, x->qa + 1, (size_t)x->nq * sizeof x->qa[0]);
                memmove(x->fin, x->fin + 1, (size_t)x->nq * sizeof x->fin[0]);
            }
            if (nd) {
                OK(w_credit(&h, x->rid, 2, (uint32_t)nd, done, nd));
                x->last_heard = h.now;
            }
        }
        struct bp_dispatch_stats s = stats_of(&h);
        while (!s.input_done && bp_dispatch_want_input(h.d)) {
            add_n(&h, 1);
            s = stats_of(&h);
            if (s.added == PT)
                bp_dispatch_input_done(h.d);
            s = stats_of(&h);
        }
        bp_dispatch_on_timer(h.d, h.now);
        drain(&h);
        for (; seen < h.nout; seen++) {
            const struct sent *m = &h.out[seen];
            if (m->dest == BP_TO_SINK) {
                sink_last_sent = m->at;
                assert_int_not_equal(m->m.type, BP_MSG_RESULTS); /* nothing is lost */
                continue;
            }
            for (int i = 0; i < PW; i++) {
                struct pworker *x = &w[i];
                if (m->rid_len != 2 || memcmp(m->rid, x->rid, 2))
                    continue;
                x->last_sent = m->at;
                if (m->m.type != BP_MSG_TASKS || !x->alive)
                    continue;
                size_t off = 0;
                struct bp_task_rec r;
                while (bp_msg_next_task(&m->m, &off, &r)) {
                    assert_true(x->nq < 64);
                    int64_t start = x->nq ? x->fin[x->nq - 1] : h.now;
                    x->q[x->nq] = r.id;
                    x->qa[x->nq] = r.attempt;
                    x->fin[x->nq] = start + x->task_ms;
                    x->nq++;
                }
            }
        }
        s = stats_of(&h);
        if (s.all_final)
            break;
        /* everything is drained: the deadline covers every live worker's
         * next heartbeat and liveness expiry, and the sink's ping */
        int64_t nd = bp_dispatch_next_deadline(h.d);
        struct live l;
        memset(&l, 0, sizeof l);
        l.w = w;
        for (int i = 0; i < PW; i++)
            l.out[i] = -1;
        bp_dispatch_each_worker(h.d, live_fn, &l);
        assert_int_equal(l.n, s.workers);
        for (int i = 0; i < PW; i++) {
            if (l.out[i] < 0)
                continue;
            assert_true(h.now - w[i].last_sent <= c.hb_ivl_ms);
            assert_true(nd <= w[i].last_sent + c.hb_ivl_ms);
            assert_true(nd <= w[i].last_heard + (int64_t)c.liveness * c.hb_ivl_ms);
        }
        assert_true(h.now - sink_last_sent <= c.hb_ivl_ms);
        assert_true(nd <= sink_last_sent + c.hb_ivl_ms);
    }
    assert_true(iter < 20000);
    struct bp_dispatch_stats s = stats_of(&h);
    assert_int_equal(s.all_final, 1);
    assert_int_equal(s.added, PT);
    assert_int_equal(s.ok, PT);
    assert_int_equal(s.failed, 0);
    assert_true(s.redelivered >= 1); /* "dies" had tasks */
    assert_int_equal(s.workers, 2);
    assert_true(h.now - T0 < 120000);
    h_clear(&h);
    bp_dispatch_finish(h.d, BP_END_COMPLETE);
    drain(&h);
    assert_int_equal(count(&h, 0, BP_TO_WORKER, BP_MSG_END, NULL, 0), 2);
    assert_null(find(&h, 0, BP_TO_WORKER, BP_MSG_END, "\0C", 2, 0));
    assert_int_equal(stats_of(&h).end_pending, 0);
    h_end(&h);
}

/* ---- randomized fault scenario (fixed seed) ------------------------------------ */

#define RW 5
#define RT 400
#define WIN 6

enum { W_OFF, W_ON, W_SILENT, W_STOPPING };

struct rworker {
    int k, sess, state;
    uint8_t rid[5];
    char id[4];
    int64_t granted, got, last_msg;
    uint64_t q[64];
    uint16_t qa[64];
    uint8_t qf[64];
    int nq;
};

struct rack {
    uint64_t id;
    uint16_t att;
    uint8_t kind;
};

struct rsim {
    struct h h;
    struct rworker w[RW];
    int sink_up;
    int64_t sink_back_at;
    uint8_t fin[RT];   /* the sink's outcome: 0 none, 1 ok, 2 failed */
    int delivered[RT]; /* final acks the dispatcher took */
    struct rack acks[4096];
    int nacks;
    int calm;
    size_t seen;
    int64_t last_ok, last_failed;
    int64_t closes;
};

static uint64_t rs_state;

static uint32_t rnd(void)
{
    rs_state ^= rs_state >> 12;
    rs_state ^= rs_state << 25;
    rs_state ^= rs_state >> 27;
    return (uint32_t)((rs_state * 2685821657736338717ull) >> 32);
}

static int chance(int pct)
{
    return (int)(rnd() % 100) < pct;
}

static void rw_send_rid(struct rworker *x)
{
    x->rid[0] = 0;
    x->rid[1] = 'w';
    x->rid[2] = (uint8_t)x->k;
    x->rid[3] = (uint8_t)(x->sess >> 8);
    x->rid[4] = (uint8_t)x->sess;
}

static void rw_hello(struct rsim *r, struct rworker *x, int new_session)
{
    if (new_session) {
        x->sess++;
        rw_send_rid(x);
    }
    x->nq = 0;
    x->got = 0;
    x->granted = r->calm ? WIN : (int64_t)(rnd() % (WIN + 1));
    x->state = W_ON;
    x->last_msg = r->h.now;
    OK(w_hello(&r->h, x->rid, 5, x->id, (uint32_t)x->granted));
}

/* The sink takes one result and queues its acknowledgement. */
static void sink_result(struct rsim *r, uint64_t id, uint16_t att, int ok, int final)
{
    assert_true(id < RT);
    uint8_t kind;
    if (r->fin[id]) {
        kind = r->fin[id] == 1 ? BP_ACK_OK : BP_ACK_FAILED; /* duplicate: stored outcome */
    } else if (final) {
        r->fin[id] = ok ? 1 : 2;
        kind = ok ? BP_ACK_OK : BP_ACK_FAILED;
    } else {
        kind = BP_ACK_RETRY;
    }
    assert_true(r->nacks < 4096);
    r->acks[r->nacks++] = (struct rack){id, att, kind};
}

static void sink_flush(struct rsim *r)
{
    if (!r->sink_up || !r->nacks)
        return;
    if (!r->calm && chance(30))
        return; /* later */
    int drop = !r->calm && chance(5);
    bp_pack_begin(&r->h.p, BP_MSG_ACK, BATCH);
    for (int i = 0; i < r->nacks; i++)
        bp_pack_ack(&r->h.p, r->acks[i].id, r->acks[i].att, r->acks[i].kind);
    if (!drop) {
        OK(s_send(&r->h));
        for (int i = 0; i < r->nacks; i++)
            if (r->acks[i].kind != BP_ACK_RETRY)
                r->delivered[r->acks[i].id]++;
    }
    r->nacks = 0;
}

/* Runs the first n queued tasks: results to the sink, then CREDIT. */
static void rw_process(struct rsim *r, struct rworker *x, int n, int topup)
{
    uint64_t done[64];
    int nd = 0;
    for (int i = 0; i < n && x->nq; i++) {
        int ok = r->calm ? 1 : !chance(20);
        int final = ok || (x->qf[0] & BP_TF_LAST_TRY);
        sink_result(r, x->q[0], x->qa[0], ok, final);
        done[nd++] = x->q[0];
        x->nq--;
        memmove(x->q, x->q + 1, (size_t)x->nq * sizeof x->q[0]);
        memmove(x->qa, x->qa + 1, (size_t)x->nq * sizeof x->qa[0]);
        memmove(x->qf, x->qf + 1, (size_t)x->nq * sizeof x->qf[0]);
    }
    if (chance(50))
        sink_flush(r); /* acks before the worker's CREDIT */
    int64_t credit = 0;
    if (topup)
        credit = WIN - x->nq - (x->granted - x->got);
    else if (chance(30))
        credit = 2; /* a stopping worker offering credit: must be ignored */
    assert_true(credit >= 0);
    if (nd || credit) {
        OK(w_credit(&r->h, x->rid, 5, (uint32_t)credit, done, (size_t)nd));
        if (x->state != W_STOPPING)
            x->granted += credit;
        x->last_msg = r->h.now;
    }
}

static struct rworker *rw_by_rid(struct rsim *r, const uint8_t *rid, size_t len)
{
    for (int i = 0; i < RW; i++)
        if (r->w[i].state != W_OFF && len == 5 && !memcmp(r->w[i].rid, rid, 5))
            return &r->w[i];
    return NULL;
}

/* Delivers what the dispatcher sent to the fake peers. */
static void rs_deliver(struct rsim *r)
{
    struct h *h = &r->h;
    for (int round = 0; round < 10; round++) {
        drain_mask(h, BP_TO_WORKER | (r->sink_up ? BP_TO_SINK : 0));
        if (r->seen == h->nout)
            return;
        for (; r->seen < h->nout; r->seen++) {
            const struct sent *m = &h->out[r->seen];
            if (m->dest == BP_TO_SINK) {
                if (m->m.type == BP_MSG_CLOSE) {
                    assert_true(bp_msg_u64(&m->m, 0) == RT);
                    r->closes++;
                } else if (m->m.type == BP_MSG_RESULTS) {
                    size_t off = 0;
                    struct bp_result_rec rr;
                    while (bp_msg_next_result(&m->m, &off, &rr)) {
                        assert_int_equal(rr.status, BP_ST_LOST);
                        assert_true(rr.flags & BP_RF_FINAL);
                        /* never LOST after the dispatcher took a final ack */
                        assert_int_equal(r->delivered[rr.id], 0);
                        sink_result(r, rr.id, rr.attempt, 0, 1);
                    }
                }
                continue;
            }
            struct rworker *x = rw_by_rid(r, m->rid, m->rid_len);
            if (m->m.type == BP_MSG_TASKS) {
                assert_non_null(x);                         /* never to a session that is gone */
                assert_int_not_equal(x->state, W_STOPPING); /* nor after BYE */
                size_t off = 0;
                struct bp_task_rec t;
                while (bp_msg_next_task(&m->m, &off, &t)) {
                    assert_true(x->nq < 64);
                    x->q[x->nq] = t.id;
                    x->qa[x->nq] = t.attempt;
                    x->qf[x->nq] = t.flags;
                    x->nq++;
                    x->got++;
                }
                assert_true(x->got <= x->granted); /* never beyond the credit */
            } else if (m->m.type == BP_MSG_RESYNC && x) {
                if (x->state == W_ON)
                    rw_hello(r, x, 0);
                else if (x->state == W_STOPPING)
                    x->state = W_OFF;
            }
        }
    }
    fail_msg("the dispatcher keeps answering its own answers");
}

static int64_t g_out[RW];
static int g_live;

static void rs_live_fn(void *arg, const char *wid, int64_t out, int64_t done)
{
    (void)arg;
    (void)done;
    assert_true(wid[0] == 'w' && wid[1] >= '0' && wid[1] < '0' + RW && wid[2] == 0);
    assert_int_equal(g_out[wid[1] - '0'], -1); /* one live session per id */
    g_out[wid[1] - '0'] = out;
    g_live++;
}

static void rs_check(struct rsim *r)
{
    struct bp_dispatch_stats s = stats_of(&r->h);
    int64_t n[5] = {0};
    int64_t per_w[RW] = {0};
    for (uint64_t id = 0; id < (uint64_t)s.added; id++) {
        char wid[BP_ID_MAX + 1];
        int a;
        int k = st(&r->h, id, wid, &a);
        n[k]++;
        if (k == 2) {
            assert_true(wid[0] == 'w' && wid[1] >= '0' && wid[1] < '0' + RW);
            per_w[wid[1] - '0']++;
        }
    }
    int64_t held = n[1] + n[2] + n[3] + n[4];
    assert_int_equal(s.ok + s.failed + held, s.added);
    assert_int_equal(s.queued, n[1]);
    assert_int_equal(s.out, n[2]);
    assert_true(s.ok >= r->last_ok && s.failed >= r->last_failed);
    r->last_ok = s.ok;
    r->last_failed = s.failed;
    assert_true(s.lost <= s.failed);
    for (int i = 0; i < RW; i++)
        g_out[i] = -1;
    g_live = 0;
    bp_dispatch_each_worker(r->h.d, rs_live_fn, NULL);
    assert_int_equal(g_live, s.workers);
    for (int i = 0; i < RW; i++) {
        if (g_out[i] < 0)
            assert_int_equal(per_w[i], 0); /* out only on live workers */
        else
            assert_int_equal(per_w[i], g_out[i]);
    }
}

static void rs_step(struct rsim *r)
{
    struct h *h = &r->h;
    h->now += r->calm ? 200 : (int64_t)(rnd() % 400);
    /* the sink */
    if (!r->calm && r->sink_up && chance(2)) {
        r->sink_up = 0;
        r->sink_back_at = h->now + 1000 + (int64_t)(rnd() % 7000);
    }
    if (!r->sink_up && (r->calm || h->now >= r->sink_back_at))
        r->sink_up = 1;
    if (r->sink_up)
        OK(s_hb(h, (uint64_t)h->now, 0));
    /* input */
    struct bp_dispatch_stats s = stats_of(h);
    while (!s.input_done && bp_dispatch_want_input(h->d)) {
        char buf[48];
        uint64_t id;
        size_t len = rnd() % 40;
        memset(buf, 'a' + (int)(s.added % 26), len);
        OK(bp_dispatch_add(h->d, buf, len, &id));
        assert_true(id == (uint64_t)s.added);
        if (id + 1 == RT)
            bp_dispatch_input_done(h->d);
        s = stats_of(h);
    }
    /* the workers */
    for (int i = 0; i < RW; i++) {
        struct rworker *x = &r->w[i];
        switch (x->state) {
        case W_OFF:
            if (r->calm || chance(15))
                rw_hello(r, x, 1);
            break;
        case W_SILENT:
            if (r->calm) {
                rw_hello(r, x, 1);
            } else if (chance(8)) {
                if (chance(50)) { /* same connection: maybe RESYNC */
                    x->state = W_ON;
                    OK(w_hb(h, x->rid, 5, (uint64_t)h->now, 0));
                    x->last_msg = h->now;
                } else {
                    rw_hello(r, x, 1); /* new connection, same id */
                }
            }
            break;
        case W_STOPPING:
            if (r->sink_up)
                rw_process(r, x, r->calm ? x->nq : chance(40), 0);
            if (h->now - x->last_msg >= 500) {
                OK(w_hb(h, x->rid, 5, (uint64_t)h->now, 0));
                x->last_msg = h->now;
            }
            if (!x->nq) {
                OK(w_bye(h, x->rid, 5, BP_BYE_GONE, NULL, 0));
                x->state = W_OFF;
            }
            break;
        default: { /* W_ON */
            int ev = r->calm ? 100 : (int)(rnd() % 100);
            if (ev < 3) {
                x->state = W_SILENT;
            } else if (ev < 5) {
                bp_dispatch_worker_gone(h->d, x->rid, 5, h->now);
                x->state = W_OFF;
            } else if (ev < 7) {
                uint64_t back[64];
                int nb = 0;
                for (int j = 1; j < x->nq; j++) /* the first one is running */
                    back[nb++] = x->q[j];
                x->nq = x->nq ? 1 : 0;
                OK(w_bye(h, x->rid, 5, 0, back, (size_t)nb));
                x->state = W_STOPPING;
                x->last_msg = h->now;
            } else if (ev < 8) {
                OK(w_bye(h, x->rid, 5, BP_BYE_GONE, x->q, (size_t)x->nq));
                x->nq = 0;
                x->state = W_OFF;
            } else if (ev < 9) {
                rw_hello(r, x, 1);
            } else if (ev < 10) {
                static const uint8_t junk[] = {'b', 'p', BP_PROTO_VERSION, BP_MSG_CREDIT, 0, 0,
                                               0,   9};
                assert_int_equal(bp_dispatch_on_worker(h->d, x->rid, 5, junk, sizeof junk, h->now),
                                 BP_EPROTO);
            } else {
                if (r->sink_up)
                    /* a board runs about one task per step */
                    rw_process(r, x, r->calm ? x->nq : chance(35) * (1 + (int)(rnd() % 2)), 1);
                if (x->granted - x->got + x->nq < WIN && chance(30))
                    rw_process(r, x, 0, 1);
                if (h->now - x->last_msg >= 500 || chance(30)) {
                    OK(w_hb(h, x->rid, 5, (uint64_t)h->now, 0));
                    x->last_msg = h->now;
                }
            }
            break;
        }
        }
    }
    sink_flush(r);
    bp_dispatch_on_timer(h->d, h->now);
    rs_deliver(r);
    rs_check(r);
    if (h->nout > 4096) { /* keep memory flat */
        h_clear(h);
        r->seen = 0;
    }
}

static void t_random_faults(void **state)
{
    (void)state;
    static struct rsim r; /* big: not on the stack */
    memset(&r, 0, sizeof r);
    struct bp_dispatch_cfg c;
    base_cfg(&c);
    c.retries = 1;
    c.max_attempts = 3;
    c.ack_timeout_ms = 3000;
    c.task_deadline_ms = 6000;
    c.pack_max = 4;
    c.max_tasks = 30; /* input comes in as room frees up */
    h_start(&r.h, &c);
    rs_state = 0x2545F4914F6CDD1Dull;
    for (int i = 0; i < RW; i++) {
        r.w[i].k = i;
        r.w[i].id[0] = 'w';
        r.w[i].id[1] = (char)('0' + i);
        r.w[i].state = W_OFF;
    }
    r.sink_up = 1;
    for (int step = 0; step < 600; step++)
        rs_step(&r);
    int64_t chaos_ok = stats_of(&r.h).ok;
    r.calm = 1;
    int step;
    for (step = 0; step < 3000; step++) {
        rs_step(&r);
        if (stats_of(&r.h).all_final)
            break;
    }
    struct bp_dispatch_stats s = stats_of(&r.h);
    print_message("random: ok %lld failed %lld lost %lld redelivered %lld retried %lld "
                  "handed_back %lld stale %lld refused %lld sessions %d\n",
                  (long long)s.ok, (long long)s.failed, (long long)s.lost, (long long)s.redelivered,
                  (long long)s.retried, (long long)s.handed_back, (long long)s.stale,
                  (long long)s.refused, s.workers_seen);
    assert_true(step < 3000);
    assert_int_equal(s.all_final, 1);
    assert_int_equal(s.added, RT);
    assert_int_equal(s.ok + s.failed, RT);
    int64_t sok = 0, sfailed = 0;
    for (int i = 0; i < RT; i++) {
        assert_int_not_equal(r.fin[i], 0);
        assert_true(r.delivered[i] >= 1);
        if (r.fin[i] == 1)
            sok++;
        else
            sfailed++;
    }
    /* the dispatcher counted each task once, as the sink decided */
    assert_int_equal(s.ok, sok);
    assert_int_equal(s.failed, sfailed);
    assert_true(r.closes >= 1);
    /* the scenario did exercise the faults */
    assert_true(s.redelivered > 0);
    assert_true(s.retried > 0);
    assert_true(s.handed_back > 0);
    assert_true(s.malformed > 0);
    assert_true(chaos_ok < RT); /* the faults hit a busy batch */
    assert_true(s.workers_seen > RW);
    bp_dispatch_finish(r.h.d, BP_END_COMPLETE);
    drain(&r.h);
    assert_int_equal(stats_of(&r.h).end_pending, 0);
    h_end(&r.h);
}

static int teardown(void **state)
{
    (void)state;
    while (n_open_h)
        h_end(open_h[n_open_h - 1]);
    return 0;
}

/* ---- files (--files, --basefile) ---------------------------------------- */

static int w_fetch(struct h *h, const void *rid, size_t rid_len, uint32_t got,
                   const struct bp_fetch_rec *f, size_t n)
{
    bp_pack_begin(&h->p, BP_MSG_FETCH, h->c.batch);
    bp_pack_u32(&h->p, got);
    for (size_t i = 0; i < n; i++)
        bp_pack_fetch(&h->p, &f[i]);
    return w_send(h, rid, rid_len);
}

/* BASE goes to each worker after its HELLO and before any TASKS; TASKS
 * carry the FILE flag; a FETCH is answered only for the attempt out on
 * that worker, within its window. */
/* ---- stragglers (speculation) ---- */

/* Three workers, one task each to start; spec on with the defaults. */
static void spec_start(struct h *h, int ntasks)
{
    struct bp_dispatch_cfg c;
    base_cfg(&c);
    bp_spec_defaults(&c.spec);
    h_start_sink(h, &c);
    h->sink_ka = 1;
    add_n(h, ntasks);
    bp_dispatch_input_done(h->d);
    OK(w_hello(h, RID("A"), "wa", 1));
    OK(w_hello(h, RID("B"), "wb", 1));
    OK(w_hello(h, RID("C"), "wc", 1));
    ka_add(h, RID("A"));
    ka_add(h, RID("B"));
    ka_add(h, RID("C"));
    drain(h);
}

/* The worker rid says task id (attempt att) is done, the sink keeps it. */
static void spec_finish(struct h *h, const void *rid, size_t rid_len, uint64_t id, uint16_t att)
{
    OK(w_credit(h, rid, rid_len, 1, &id, 1));
    OK(s_ack(h, id, att, BP_ACK_OK));
    drain(h);
}

/* Workers B and C run every task they get in step_ms, A sits on task 0,
 * until nothing is left for B and C. */
static void spec_run_fast(struct h *h, int64_t step_ms)
{
    static const char *const rids[] = {"B", "C"};
    for (int round = 0; round < 100; round++) {
        tick(h, h->now + step_ms, step_ms);
        int any = 0;
        for (int k = 0; k < 2; k++) {
            for (uint64_t id = 1; id < 100; id++) {
                char w[BP_ID_MAX + 1];
                int a;
                if (st(h, id, w, &a) == 2 && w[1] == rids[k][0] + 32) {
                    spec_finish(h, rids[k], 1, id, (uint16_t)a);
                    any = 1;
                }
            }
        }
        if (!any)
            return;
    }
    fail();
}

/* A straggler with an idle worker: a second copy goes out (a new
 * attempt), wins, and the first copy gets a CANCEL; its late DONE is
 * stale. */
static void t_spec_straggler(void **state)
{
    (void)state;
    static struct h h;
    spec_start(&h, 10);
    assert_out_on(&h, 0, "wa", 1);
    spec_run_fast(&h, 100);
    assert_int_equal(stats_of(&h).speculated, 0); /* not before the minimum (1 s) */
    int64_t t_idle = h.now;
    h_clear(&h);
    tick(&h, T0 + 1500, 50);
    struct bp_dispatch_stats s = stats_of(&h);
    assert_int_equal(s.speculated, 1);
    assert_true(h.now - t_idle < 1500);
    char w[BP_ID_MAX + 1];
    int a;
    assert_int_equal(st(&h, 0, w, &a), 2);
    assert_int_equal(a, 2);
    assert_true(!strcmp(w, "wb") || !strcmp(w, "wc"));
    const char *rid = !strcmp(w, "wb") ? "B" : "C";
    struct bp_task_rec r[4];
    assert_int_equal(tasks_to(&h, 0, rid, 1, r, 4), 1);
    assert_true(r[0].id == 0 && r[0].attempt == 2);
    /* not again, not to A, nothing else sent as a copy */
    tick(&h, h.now + 2000, 100);
    assert_int_equal(stats_of(&h).speculated, 1);
    assert_int_equal(tasks_to(&h, 0, NULL, 0, r, 4), 1);
    h_clear(&h);
    spec_finish(&h, rid, 1, 0, 2);
    s = stats_of(&h);
    assert_int_equal(s.spec_won, 1);
    assert_int_equal(s.cancelled, 1);
    assert_int_equal(s.all_final, 1);
    assert_int_equal(s.redelivered, 0);
    const struct sent *cx = find(&h, 0, BP_TO_WORKER, BP_MSG_CANCEL, RID("A"), 0);
    assert_non_null(cx);
    assert_int_equal(cx->m.n, 1);
    size_t off = 0;
    struct bp_ack_rec k;
    assert_int_equal(bp_msg_next_cancel(&cx->m, &off, &k), 1);
    assert_true(k.id == 0 && k.attempt == 1);
    assert_int_equal(count(&h, 0, BP_TO_WORKER, BP_MSG_CANCEL, NULL, 0), 1);
    /* the first copy's late word is stale, its duplicate's ack too */
    int64_t stale = s.stale;
    uint64_t id0 = 0;
    OK(w_credit(&h, RID("A"), 1, &id0, 1));
    OK(s_ack(&h, 0, 1, BP_ACK_OK));
    s = stats_of(&h);
    assert_int_equal(s.stale, stale + 2);
    assert_int_equal(s.ok, 10);
    h_end(&h);
}

/* spec_start(10 tasks), B and C run theirs, then the clock goes on until
 * task 0 (on A) got its second copy: returns that worker's rid. */
static const char *spec_copied(struct h *h)
{
    spec_start(h, 10);
    spec_run_fast(h, 100);
    tick(h, T0 + 1500, 50);
    assert_int_equal(stats_of(h).speculated, 1);
    char w[BP_ID_MAX + 1];
    assert_int_equal(st(h, 0, w, NULL), 2);
    return !strcmp(w, "wb") ? "B" : "C";
}

/* A speculated task whose first copy finishes first: that result is the
 * outcome, the second copy is cancelled. */
static void t_spec_first_wins(void **state)
{
    (void)state;
    static struct h h;
    const char *rid = spec_copied(&h);
    h_clear(&h);
    /* A's DONE first, then the sink's ack of attempt 1 */
    uint64_t id0 = 0;
    OK(w_credit(&h, RID("A"), 1, &id0, 1));
    assert_int_equal(st0(&h, 0), 3);
    OK(s_ack(&h, 0, 1, BP_ACK_OK));
    drain(&h);
    struct bp_dispatch_stats s = stats_of(&h);
    assert_int_equal(s.all_final, 1);
    assert_int_equal(s.spec_won, 0);
    assert_int_equal(s.cancelled, 1);
    const struct sent *cx = find(&h, 0, BP_TO_WORKER, BP_MSG_CANCEL, rid, 1, 0);
    assert_non_null(cx);
    size_t off = 0;
    struct bp_ack_rec k;
    assert_int_equal(bp_msg_next_cancel(&cx->m, &off, &k), 1);
    assert_true(k.id == 0 && k.attempt == 2);
    assert_null(find(&h, 0, BP_TO_WORKER, BP_MSG_CANCEL, RID("A"), 0));
    h_end(&h);
}

/* The copies stand in for each other: the second copy's worker dies (no
 * loss, the first runs on), and when the first's dies, the second copy
 * is the task (no redelivery). */
static void t_spec_copy_dies(void **state)
{
    (void)state;
    static struct h h;
    const char *rid = spec_copied(&h);
    h.nka = 0;
    ka_add(&h, RID("A"));
    ka_add(&h, !strcmp(rid, "B") ? "C" : "B", 1);
    bp_dispatch_worker_gone(h.d, rid, 1, h.now);
    drain(&h);
    struct bp_dispatch_stats s = stats_of(&h);
    assert_int_equal(s.redelivered, 0);
    assert_int_equal(s.queued, 0);
    assert_out_on(&h, 0, "wa", 2); /* (2 deliveries so far) */
    /* no second speculation of the same task; A's result ends it */
    tick(&h, h.now + 3000, 100);
    assert_int_equal(stats_of(&h).speculated, 1);
    spec_finish(&h, RID("A"), 0, 1);
    assert_int_equal(stats_of(&h).all_final, 1);
    h_end(&h);
    /* the other way round: A (the first copy) dies */
    rid = spec_copied(&h);
    bp_dispatch_worker_gone(h.d, RID("A"), h.now);
    s = stats_of(&h);
    assert_int_equal(s.redelivered, 0);
    assert_int_equal(s.queued, 0);
    spec_finish(&h, rid, 1, 0, 2);
    s = stats_of(&h);
    assert_int_equal(s.all_final, 1);
    assert_int_equal(s.spec_won, 1);
    assert_int_equal(s.cancelled, 0); /* nobody left to cancel */
    h_end(&h);
}

/* A uniform fleet: tasks of equal time, the last one a bit slower (900
 * ms: under the minimum): no second copy. And with speculation off, a
 * real straggler is left alone. */
static void t_spec_uniform(void **state)
{
    (void)state;
    static struct h h;
    static const char *const rids[] = {"A", "B", "C"};
    spec_start(&h, 30);
    int64_t out29 = 0;
    for (int round = 0; round < 40; round++) {
        tick(&h, h.now + 100, 100);
        for (int k = 0; k < 3; k++)
            for (uint64_t id = 0; id < 30; id++) {
                char w[BP_ID_MAX + 1];
                int a;
                if (st(&h, id, w, &a) != 2 || w[1] != rids[k][0] + 32)
                    continue;
                if (id == 29 && !out29)
                    out29 = h.now;
                if (id != 29 || h.now - out29 >= 900)
                    spec_finish(&h, rids[k], 1, id, (uint16_t)a);
            }
    }
    struct bp_dispatch_stats s = stats_of(&h);
    assert_int_equal(s.all_final, 1);
    assert_int_equal(s.speculated, 0);
    assert_int_equal(count(&h, 0, BP_TO_WORKER, BP_MSG_CANCEL, NULL, 0), 0);
    h_end(&h);
    struct bp_dispatch_cfg c;
    base_cfg(&c);
    h_start_sink(&h, &c);
    h.sink_ka = 1;
    add_n(&h, 4);
    bp_dispatch_input_done(h.d);
    OK(w_hello(&h, RID("A"), "wa", 1));
    OK(w_hello(&h, RID("B"), "wb", 4));
    ka_add(&h, RID("A"));
    ka_add(&h, RID("B"));
    drain(&h);
    for (uint64_t id = 1; id < 4; id++)
        if (st0(&h, id) == 2)
            spec_finish(&h, RID("B"), id, 1);
    tick(&h, h.now + 30000, 500);
    assert_int_equal(stats_of(&h).speculated, 0);
    assert_out_on(&h, 0, "wa", 1);
    h_end(&h);
}

/* ---- --require: a match bit per worker, set at HELLO ---- */

static int need_camera(void *arg, const char *wid, const void *labels, size_t len)
{
    struct bp_label l;
    (void)wid;
    ++*(int *)arg;
    return bp_labels_find(labels, len, "camera", &l);
}

static void count_labels(void *arg, const char *wid, const void *labels, size_t len, int match)
{
    int *n = arg;
    if (!strcmp(wid, "wb"))
        assert_true(match && len == 12 && !memcmp(labels, "camera\0arch=", 12));
    else
        assert_true(!match && len == 0);
    (*n)++;
}

/* Only matching workers get tasks, however much credit the others have,
 * second copies of stragglers included; a new session asks again. */
static void t_require_match(void **state)
{
    (void)state;
    static struct h h;
    struct bp_dispatch_cfg c;
    base_cfg(&c);
    int asked = 0;
    c.match = need_camera;
    c.match_arg = &asked;
    bp_spec_defaults(&c.spec);
    h_start_sink(&h, &c);
    h.sink_ka = 1;
    add_n(&h, 6);
    bp_dispatch_input_done(h.d);
    OK(w_hello(&h, RID("A"), "wa", 100));
    OK(w_hello_labels(&h, RID("B"), "wb", 2, "camera\0arch=", 12));
    assert_int_equal(asked, 2);
    ka_add(&h, RID("A"));
    ka_add(&h, RID("B"));
    drain(&h);
    struct bp_dispatch_stats s = stats_of(&h);
    assert_int_equal(s.workers, 2);
    assert_int_equal(s.workers_match, 1);
    assert_int_equal(s.out, 2);
    struct bp_task_rec r[8];
    assert_int_equal(tasks_to(&h, 0, RID("A"), r, 8), 0);
    int n = 0;
    bp_dispatch_each_labels(h.d, count_labels, &n);
    assert_int_equal(n, 2);
    /* B runs everything; A idles with credit and never gets a copy */
    for (int round = 0; round < 20 && !stats_of(&h).all_final; round++) {
        tick(&h, h.now + 2000, 500);
        for (uint64_t id = 0; id < 6; id++)
            if (st0(&h, id) == 2)
                spec_finish(&h, RID("B"), id, 1);
    }
    s = stats_of(&h);
    assert_int_equal(s.all_final, 1);
    assert_int_equal(s.speculated, 0);
    assert_int_equal(tasks_to(&h, 0, RID("A"), r, 8), 0);
    /* A says HELLO again with a camera: now it matches */
    OK(w_hello_labels(&h, RID("A"), "wa", 1, "camera\0", 7));
    assert_int_equal(stats_of(&h).workers_match, 2);
    h_end(&h);
}

/* Every task final and no COMPLETE for a whole ping interval: CLOSE goes
 * again with the pings (a first one lost in a short sink outage); not
 * before every task is final, and not once COMPLETE came. */
static void t_close_again(void **state)
{
    (void)state;
    struct bp_dispatch_cfg c;
    base_cfg(&c);
    static struct h h;
    h_start_sink(&h, &c);
    h.sink_ka = 1;
    add_n(&h, 1);
    bp_dispatch_input_done(h.d);
    OK(w_hello(&h, RID("A"), "wa", 1));
    ka_add(&h, RID("A"));
    drain(&h);
    assert_int_equal(count(&h, 0, BP_TO_SINK, BP_MSG_CLOSE, NULL, 0), 1);
    tick(&h, h.now + 5000, 250); /* out, not final: no CLOSE again */
    assert_int_equal(count(&h, 0, BP_TO_SINK, BP_MSG_CLOSE, NULL, 0), 1);
    uint64_t id0 = 0;
    OK(w_credit(&h, RID("A"), 1, &id0, 1));
    OK(s_ack(&h, 0, 1, BP_ACK_OK));
    assert_int_equal(stats_of(&h).all_final, 1);
    h_clear(&h);
    tick(&h, h.now + 900, 100); /* within a ping interval: not yet */
    assert_int_equal(count(&h, 0, BP_TO_SINK, BP_MSG_CLOSE, NULL, 0), 0);
    tick(&h, h.now + 2200, 100);
    size_t n = count(&h, 0, BP_TO_SINK, BP_MSG_CLOSE, NULL, 0);
    assert_true(n >= 1 && n <= 2);
    bp_pack_begin(&h.p, BP_MSG_COMPLETE, BATCH);
    bp_pack_u64(&h.p, 1);
    bp_pack_u64(&h.p, 0);
    OK(s_send(&h));
    h_clear(&h);
    tick(&h, h.now + 5000, 250);
    assert_int_equal(count(&h, 0, BP_TO_SINK, BP_MSG_CLOSE, NULL, 0), 0);
    h_end(&h);
}

static void t_files_fetch(void **state)
{
    (void)state;
    static const uint8_t base[] = "0123456789abcdef0123456789abcdef\0\0\0\0\0\0\0\5\0\1m";
    struct bp_dispatch_cfg c;
    base_cfg(&c);
    c.task_flags = BP_TF_FILE;
    c.base_body = base;
    c.base_len = sizeof base - 1;
    c.base_n = 1;
    static struct h h;
    h_start_sink(&h, &c);
    add_n(&h, 2);
    OK(w_hello(&h, RID("A"), "wa", 1));
    OK(w_hello(&h, RID("B"), "wb", 1));
    drain(&h);
    const struct sent *b = find(&h, 0, BP_TO_WORKER, BP_MSG_BASE, RID("A"), 0);
    const struct sent *t = find(&h, 0, BP_TO_WORKER, BP_MSG_TASKS, RID("A"), 0);
    assert_non_null(b);
    assert_non_null(t);
    assert_true(b < t);
    assert_int_equal(b->m.n, 1);
    assert_int_equal(count(&h, 0, BP_TO_WORKER, BP_MSG_BASE, RID("B")), 1);
    struct bp_task_rec r;
    size_t off = 0;
    assert_true(bp_msg_next_task(&t->m, &off, &r));
    assert_true(r.flags & BP_TF_FILE);
    uint64_t id_a = r.id;
    struct bp_fetch_rec f[] = {{id_a, r.attempt, BP_FK_TASK, 100, 0},
                               {id_a, (uint16_t)(r.attempt + 1), BP_FK_TASK, 100, 0},
                               {0, 0, BP_FK_BASE, 100, 0},
                               {1, 0, BP_FK_BASE, 100, 0}};
    OK(w_fetch(&h, RID("A"), 0, f, 4));
    OK(w_fetch(&h, RID("B"), 0, f, 1)); /* A's task, asked by B */
    struct bp_fetch_req q;
    assert_true(bp_dispatch_next_fetch(h.d, &q));
    assert_false(q.refused);
    assert_int_equal(q.len, 6);
    assert_memory_equal(q.data, "task-", 5);
    assert_true(bp_dispatch_next_fetch(h.d, &q)); /* another attempt */
    assert_true(q.refused);
    assert_true(bp_dispatch_next_fetch(h.d, &q)); /* base file 0 */
    assert_false(q.refused);
    assert_int_equal(q.f.kind, BP_FK_BASE);
    assert_true(bp_dispatch_next_fetch(h.d, &q)); /* no base file 1 */
    assert_true(q.refused);
    assert_true(bp_dispatch_next_fetch(h.d, &q)); /* B asking for A's */
    assert_true(q.refused);
    assert_memory_equal(q.rid, "B", 1);
    assert_false(bp_dispatch_next_fetch(h.d, &q));
    /* The window: A has 4 CHUNKs owed and says it got none; 12 more fit. */
    int64_t mal = stats_of(&h).malformed;
    struct bp_fetch_rec many[20];
    for (int i = 0; i < 20; i++)
        many[i] = (struct bp_fetch_rec){id_a, r.attempt, BP_FK_TASK, 10, (uint64_t)i * 10};
    OK(w_fetch(&h, RID("A"), 0, many, 20));
    assert_int_equal(stats_of(&h).malformed, mal + 8);
    /* A settled more than it was sent (requests dropped here, given up
     * there): nothing outstanding, a whole window again. */
    OK(w_fetch(&h, RID("A"), 1000, many, 20));
    assert_int_equal(stats_of(&h).malformed, mal + 8 + 4);
    /* A new session of A: what it asked before is not answered. */
    OK(w_hello(&h, RID("A"), "wa", 1));
    assert_false(bp_dispatch_next_fetch(h.d, &q));
    h_end(&h);
}

/* An unreadable --files path never goes to a worker: the sink gets a
 * final file-error from the ventilator, and it counts as unreadable. */
static void t_files_unreadable(void **state)
{
    (void)state;
    struct bp_dispatch_cfg c;
    base_cfg(&c);
    c.task_flags = BP_TF_FILE;
    static struct h h;
    h_start_sink(&h, &c);
    uint64_t id = 99;
    OK(bp_dispatch_add_unreadable(h.d, "nope/x.jpg", 10, ENOENT, &id));
    assert_int_equal(id, 0);
    add_n(&h, 1);
    bp_dispatch_input_done(h.d);
    OK(w_hello(&h, RID("A"), "wa", 10));
    drain(&h);
    struct bp_task_rec rec[4];
    assert_int_equal(tasks_to(&h, 0, RID("A"), rec, 4), 1);
    assert_int_equal(rec[0].id, 1);
    const struct sent *r = find(&h, 0, BP_TO_SINK, BP_MSG_RESULTS, NULL, 0, 0);
    assert_non_null(r);
    size_t off = 0;
    struct bp_result_rec x;
    assert_true(bp_msg_next_result(&r->m, &off, &x));
    assert_int_equal(x.id, 0);
    assert_int_equal(x.status, BP_ST_FILEERR);
    assert_int_equal(x.code, ENOENT);
    assert_true(x.flags & BP_RF_FINAL);
    assert_non_null(memmem(x.data, x.len, "cannot read nope/x.jpg", 22));
    OK(s_ack(&h, 0, x.attempt, BP_ACK_FAILED));
    struct bp_dispatch_stats s = stats_of(&h);
    assert_int_equal(s.unreadable, 1);
    assert_int_equal(s.failed, 1);
    assert_int_equal(s.lost, 0);
    h_end(&h);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(t_defaults, teardown),
        cmocka_unit_test_teardown(t_sink_gate, teardown),
        cmocka_unit_test_teardown(t_credit, teardown),
        cmocka_unit_test_teardown(t_max_credit, teardown),
        cmocka_unit_test_teardown(t_pack_bytes, teardown),
        cmocka_unit_test_teardown(t_done_ack, teardown),
        cmocka_unit_test_teardown(t_worker_silence, teardown),
        cmocka_unit_test_teardown(t_worker_gone, teardown),
        cmocka_unit_test_teardown(t_rehello, teardown),
        cmocka_unit_test_teardown(t_lost, teardown),
        cmocka_unit_test_teardown(t_lost_then_acked, teardown),
        cmocka_unit_test_teardown(t_retry_other_worker, teardown),
        cmocka_unit_test_teardown(t_retry_same_worker, teardown),
        cmocka_unit_test_teardown(t_retry_waits_for_another, teardown),
        cmocka_unit_test_teardown(t_sink_forgot_batch, teardown),
        cmocka_unit_test_teardown(t_task_deadline, teardown),
        cmocka_unit_test_teardown(t_bye, teardown),
        cmocka_unit_test_teardown(t_unknown_and_refused, teardown),
        cmocka_unit_test_teardown(t_resync_to_gone_peer, teardown),
        cmocka_unit_test_teardown(t_resume_finals, teardown),
        cmocka_unit_test_teardown(t_halt, teardown),
        cmocka_unit_test_teardown(t_complete_word, teardown),
        cmocka_unit_test_teardown(t_heartbeats, teardown),
        cmocka_unit_test_teardown(t_sink_outage, teardown),
        cmocka_unit_test_teardown(t_sink_unknown_batch, teardown),
        cmocka_unit_test_teardown(t_no_sink, teardown),
        cmocka_unit_test_teardown(t_finish, teardown),
        cmocka_unit_test_teardown(t_malformed, teardown),
        cmocka_unit_test_teardown(t_bounds, teardown),
        cmocka_unit_test_teardown(t_deadline_progress, teardown),
        cmocka_unit_test_teardown(t_random_faults, teardown),
        cmocka_unit_test_teardown(t_many_workers, teardown),
        cmocka_unit_test_teardown(t_files_fetch, teardown),
        cmocka_unit_test_teardown(t_files_unreadable, teardown),
        cmocka_unit_test_teardown(t_spec_straggler, teardown),
        cmocka_unit_test_teardown(t_spec_first_wins, teardown),
        cmocka_unit_test_teardown(t_spec_copy_dies, teardown),
        cmocka_unit_test_teardown(t_spec_uniform, teardown),
        cmocka_unit_test_teardown(t_require_match, teardown),
        cmocka_unit_test_teardown(t_close_again, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
