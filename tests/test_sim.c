/* A seeded, deterministic simulation of a whole batch (FoundationDB's
 * way): the real delivery state machine (bp_dispatch) and the real book
 * of the sink (bp_rbook), driven by model workers, a model sink and a
 * faulty network on a virtual clock, over many seeds. The guarantees are
 * checked as invariants, at every step and at the end:
 *   - the sink writes at most one result per task id, and only for ids
 *     the ventilator had read (never a foreign id, never beyond the batch);
 *   - the batch ends (no stall), with exactly one final result per task;
 *   - a task whose result reached the sink never ends 'lost';
 *   - ventilator and sink agree on ok/failed, and on retried.
 * Faults: message delay and jitter (FIFO per connection, none across),
 * connections cut (in-flight messages lost, the worker comes back under
 * a new routing id), workers killed and restarted, workers frozen, the
 * sink restarted (from its journal; or, before it wrote anything, without
 * the batch), and peers sending results for made-up ids. Stragglers: some
 * workers are 10 or 50 times slower, and speculation (second copies,
 * CANCEL) is on in most runs with random thresholds. --require: in some
 * runs only some workers match (w0 always); a task on any other fails.
 * A failing seed prints itself; BP_SIM_SEED=N replays one, BP_SIM_FIRST=N
 * starts the run at seed N, BP_SIM_SEEDS=N
 * sets how many run (fewer under an emulator: see tests/unit.cmake). */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bp.h"
#include "bp_dispatch.h"
#include "bp_frame.h"
#include "bp_rbook.h"

#define BATCH 0x51A1BA7C40000001ull
#define MAXW 8
#define MAXT 400
#define MAXMSG 20000
#define HB 1000
#define LIVE 3
#define HORIZON (3600 * 1000) /* virtual ms before a batch counts as stalled */

enum { N_VENT = 0, N_SINK = 1, N_W0 = 2 }; /* nodes; workers are N_W0 + i */

/* ---- deterministic randomness ---- */

static uint64_t rng_s;
static uint64_t rnd(void)
{
    rng_s ^= rng_s << 13;
    rng_s ^= rng_s >> 7;
    rng_s ^= rng_s << 17;
    return rng_s;
}
static int chance(int per_mille)
{
    return (int)(rnd() % 1000) < per_mille;
}
static int64_t between(int64_t a, int64_t b)
{
    return a + (int64_t)(rnd() % (uint64_t)(b - a + 1));
}

/* ---- the network: a message in flight on one connection ---- */

struct msg {
    int from, to;
    int64_t at;
    uint32_t conn; /* the connection's generation when sent: a cut drops it */
    uint32_t rid;  /* worker -> ventilator: the routing id the ROUTER sees */
    size_t len;
    uint8_t *data;
};

/* ---- the model worker ---- */

struct qt {
    uint64_t id;
    uint16_t attempt;
    uint8_t flags;
    int64_t done_at; /* 0: not started */
};

struct wk {
    int alive;
    uint32_t rid;      /* the routing id of its current connection */
    int64_t frozen_to; /* does nothing before this */
    int64_t revive_at; /* dead: comes back then */
    int64_t heard;     /* last message from the ventilator */
    int64_t next_hb;
    int jobs, window;
    struct qt q[64];
    int nq;
    int ended;
    int fails; /* 1: fails every task (a broken board) */
    int slow;  /* task times are multiplied by this (1, 10, 50) */
    int match; /* --require accepts it (always, in a run without one) */
    char id[16];
};

/* ---- the model sink (the real one's rules: bp_rbook) ---- */

struct held {
    uint8_t *data;
    size_t len;
    uint64_t batch, from, lim;
};

struct sk {
    int alive;
    int64_t revive_at;
    uint64_t batch; /* 0: none begun */
    struct bp_rbook rb;
    struct held hold[4096]; /* as the real sink: HOLD_MAX */
    int nhold;
    int completed;
    int wrote_any;
    /* what its journal keeps: accepted results (id, ok) and the size */
    uint8_t fin[MAXT]; /* 0 none, 1 ok, 2 failed */
    int64_t total;
};

/* ---- the world ---- */

struct world {
    struct bp_dispatch *d;
    struct bp_dispatch_cfg c;
    int64_t now;
    int nw, ntasks;
    struct wk w[MAXW];
    struct sk s;
    struct msg *m;
    int nm;
    /* (one more node: the hostile peer) */
    uint32_t conn[N_W0 + MAXW + 1][N_W0 + MAXW + 1]; /* generation per directed connection */
    int64_t last_at[N_W0 + MAXW + 1][N_W0 + MAXW + 1];
    uint32_t next_rid;
    int64_t writes[MAXT]; /* results written per id */
    int64_t dropped;      /* real results the live sink threw away unacknowledged */
    int64_t foreign_sent; /* made-up results a hostile peer sent */
    int64_t all_final_at;
    int8_t journaled[MAXT]; /* the ventilator's on_final: -1 none, 0 failed, 1 ok, 2 at the sink */
    int added;
    int jitter, cut_pm, kill_pm, freeze_pm, sink_pm, hostile;
    int64_t cancels; /* attempts the model workers stopped on a CANCEL */
    int misrouted;   /* 1 + a worker that got TASKS without matching --require */
    struct bp_pack p;
    char why[512];
};

static struct world W;

#define CHECK(cond, ...)                                                                           \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            snprintf(W.why, sizeof W.why, __VA_ARGS__);                                            \
            return -1;                                                                             \
        }                                                                                          \
    } while (0)

static void send_msg(int from, int to, uint32_t rid, const struct bp_pack *p)
{
    if (W.nm == MAXMSG)
        return; /* (a full network drops: a fault like any other) */
    int64_t at = W.now + 1 + between(0, W.jitter);
    /* one connection is a TCP stream: in order */
    if (at < W.last_at[from][to])
        at = W.last_at[from][to];
    W.last_at[from][to] = at;
    struct msg *m = &W.m[W.nm++];
    m->from = from;
    m->to = to;
    m->at = at;
    m->conn = W.conn[from][to];
    m->rid = rid;
    m->len = p->len;
    m->data = malloc(p->len);
    assert_non_null(m->data);
    memcpy(m->data, p->p, p->len);
}

static void cut(int a, int b)
{
    W.conn[a][b]++;
    W.conn[b][a]++;
}

/* ---- workers ---- */

static void w_send_vent(struct wk *w, int i)
{
    assert_int_equal(bp_pack_finish(&W.p), BP_OK);
    send_msg(N_W0 + i, N_VENT, w->rid, &W.p);
}

static void w_hello(struct wk *w, int i)
{
    size_t l = strlen(w->id);
    bp_pack_begin(&W.p, BP_MSG_HELLO, 0);
    bp_pack_u16(&W.p, (uint16_t)w->jobs);
    bp_pack_u16(&W.p, 0);
    int held = w->nq;
    bp_pack_u32(&W.p, (uint32_t)(w->window > held ? w->window - held : 0));
    bp_pack_u8(&W.p, (uint8_t)l);
    bp_pack_bytes(&W.p, w->id, l);
    w_send_vent(w, i);
}

/* A new connection (after a cut, a RESYNC or a restart): a new routing id. */
static void w_reconnect(struct wk *w, int i)
{
    w->rid = ++W.next_rid;
    w->heard = W.now;
    w_hello(w, i);
}

static void w_start(struct wk *w, int i)
{
    w->alive = 1;
    w->nq = 0;
    w->ended = 0;
    w->next_hb = W.now + HB;
    w_reconnect(w, i);
}

static void w_on_vent(struct wk *w, int i, const struct msg *mm)
{
    struct bp_msg m;
    assert_int_equal(bp_msg_decode(&m, mm->data, mm->len, 1 << 16), BP_OK);
    w->heard = W.now;
    size_t off = 0;
    struct bp_task_rec t;
    switch (m.type) {
    case BP_MSG_TASKS:
        if (!w->match)
            W.misrouted = i + 1; /* (--require: nothing for the others) */
        while (bp_msg_next_task(&m, &off, &t))
            if (w->nq < 64) /* (else lost: the ventilator finds out) */
                w->q[w->nq++] = (struct qt){.id = t.id, .attempt = t.attempt, .flags = t.flags};
        break;
    case BP_MSG_RESYNC:
        w->nq = 0;
        w_hello(w, i);
        break;
    case BP_MSG_END:
        w->ended = 1;
        w->nq = 0;
        break;
    case BP_MSG_CANCEL: {
        /* the attempt stops, nothing is reported; its place is free */
        struct bp_ack_rec a;
        uint32_t freed = 0;
        while (bp_msg_next_cancel(&m, &off, &a))
            for (int k = 0; k < w->nq; k++)
                if (w->q[k].id == a.id && w->q[k].attempt == a.attempt) {
                    w->q[k--] = w->q[--w->nq];
                    freed++;
                    W.cancels++;
                }
        if (freed) {
            bp_pack_begin(&W.p, BP_MSG_CREDIT, BATCH);
            bp_pack_u32(&W.p, freed);
            w_send_vent(w, i);
        }
        break;
    }
    default:
        break;
    }
}

static int fails(const struct wk *w, uint64_t id)
{
    return w->fails || id % 31 == 7; /* a few tasks fail everywhere */
}

static void w_step(struct wk *w, int i)
{
    if (!w->alive) {
        if (W.now >= w->revive_at)
            w_start(w, i); /* (a board comes back whatever the sink did) */
        return;
    }
    if (W.now < w->frozen_to || w->ended)
        return;
    /* start what fits, finish what is due */
    int running = 0;
    for (int k = 0; k < w->nq; k++)
        if (w->q[k].done_at && running < w->jobs)
            running++;
    for (int k = 0; k < w->nq && running < w->jobs; k++)
        if (!w->q[k].done_at) {
            w->q[k].done_at = W.now + between(5, 200) * w->slow;
            running++;
        }
    for (int k = 0; k < w->nq;) {
        struct qt *t = &w->q[k];
        if (!t->done_at || W.now < t->done_at) {
            k++;
            continue;
        }
        int ok = !fails(w, t->id);
        struct bp_result_rec r = {
            .id = t->id,
            .attempt = t->attempt,
            .status = ok ? BP_ST_OK : BP_ST_FAILED,
            .flags = (ok || (t->flags & BP_TF_LAST_TRY)) ? BP_RF_FINAL : 0,
            .code = ok ? 0 : 1,
            .data = (const uint8_t *)"r",
            .len = 1,
        };
        bp_pack_begin(&W.p, BP_MSG_RESULTS, BATCH);
        bp_pack_u8(&W.p, (uint8_t)strlen(w->id));
        bp_pack_bytes(&W.p, w->id, strlen(w->id));
        bp_pack_result(&W.p, &r);
        assert_int_equal(bp_pack_finish(&W.p), BP_OK);
        send_msg(N_W0 + i, N_SINK, 0, &W.p);
        bp_pack_begin(&W.p, BP_MSG_CREDIT, BATCH);
        bp_pack_u32(&W.p, 1);
        bp_pack_id(&W.p, t->id);
        w_send_vent(w, i);
        w->q[k] = w->q[--w->nq];
    }
    if (W.now >= w->next_hb) {
        bp_pack_begin(&W.p, BP_MSG_HEARTBEAT, BATCH);
        bp_pack_u64(&W.p, (uint64_t)W.now | 1);
        bp_pack_u64(&W.p, 0);
        w_send_vent(w, i);
        w->next_hb = W.now + HB;
    }
    /* the host went silent: drop the queue, a new connection, HELLO */
    if (W.now - w->heard >= (int64_t)HB * LIVE) {
        w->nq = 0;
        w_reconnect(w, i);
    }
}

/* ---- the sink ---- */

static void s_send(int type, uint64_t batch)
{
    (void)type;
    (void)batch;
    assert_int_equal(bp_pack_finish(&W.p), BP_OK);
    send_msg(N_SINK, N_VENT, 0, &W.p);
}

static int s_results(const struct bp_msg *m, uint64_t from, uint64_t lim, int *early);

static void s_hold(const struct msg *mm, uint64_t batch, uint64_t from, uint64_t lim)
{
    struct sk *s = &W.s;
    if (s->nhold == 4096) {
        W.dropped++; /* unacknowledged: sent again after the ack timeout */
        return;
    }
    struct held *h = &s->hold[s->nhold++];
    h->data = malloc(mm->len);
    assert_non_null(h->data);
    memcpy(h->data, mm->data, mm->len);
    h->len = mm->len;
    h->batch = batch;
    h->from = from;
    h->lim = lim;
}

static int s_offer(void)
{
    struct sk *s = &W.s;
    for (int i = 0; i < s->nhold;) {
        struct held *h = &s->hold[i];
        if (h->batch != s->batch) {
            i++;
            continue;
        }
        uint64_t to = s->rb.extent < h->lim ? s->rb.extent : h->lim;
        if (to > h->from) {
            struct bp_msg m;
            assert_int_equal(bp_msg_decode(&m, h->data, h->len, 1 << 16), BP_OK);
            int early;
            if (s_results(&m, h->from, to, &early) < 0)
                return -1;
            h->from = to;
        }
        if (s->rb.total >= 0 || h->from >= h->lim) {
            free(h->data);
            s->hold[i] = s->hold[--s->nhold];
        } else {
            i++;
        }
    }
    return 0;
}

/* The records of m in [from, lim): the real sink's on_result, in short. */
static int s_results(const struct bp_msg *m, uint64_t from, uint64_t lim, int *early)
{
    struct sk *s = &W.s;
    size_t off = 0;
    struct bp_result_rec r;
    *early = 0;
    bp_pack_begin(&W.p, BP_MSG_ACK, s->batch);
    while (bp_msg_next_result(m, &off, &r)) {
        if (r.id < from || r.id >= lim)
            continue;
        uint8_t ack = 0;
        int v = bp_rbook_result(&s->rb, r.id, r.attempt, r.status == BP_ST_OK,
                                (r.flags & BP_RF_FINAL) != 0, &ack);
        if (v == BP_RB_EARLY)
            (*early)++;
        if (v == BP_RB_ACCEPT) {
            CHECK(r.id < (uint64_t)W.added, "sink wrote task %" PRIu64 ", only %d read", r.id,
                  W.added);
            W.writes[r.id]++;
            CHECK(W.writes[r.id] == 1, "task %" PRIu64 " written twice", r.id);
            s->fin[r.id] = r.status == BP_ST_OK ? 1 : 2;
            s->wrote_any = 1;
        }
        if (v == BP_RB_ACCEPT || v == BP_RB_DUP || v == BP_RB_RETRY)
            bp_pack_ack(&W.p, r.id, r.attempt, ack);
    }
    if (W.p.n)
        s_send(BP_MSG_ACK, s->batch);
    return 0;
}

static void s_complete(void)
{
    struct sk *s = &W.s;
    if (s->completed || !bp_rbook_complete(&s->rb))
        return;
    s->completed = 1;
    bp_pack_begin(&W.p, BP_MSG_COMPLETE, s->batch);
    bp_pack_u64(&W.p, (uint64_t)s->rb.ok);
    bp_pack_u64(&W.p, (uint64_t)s->rb.failed_n);
    s_send(BP_MSG_COMPLETE, s->batch);
}

/* A restart: what the journal kept comes back; held results, the extent
 * and connections are gone. Before anything was written, its journal
 * holds nothing, not even the batch. */
static void s_restart(void)
{
    struct sk *s = &W.s;
    for (int i = 0; i < s->nhold; i++)
        free(s->hold[i].data);
    s->nhold = 0;
    bp_rbook_free(&s->rb);
    if (!s->wrote_any) {
        s->batch = 0;
        s->total = -1;
    }
    for (uint64_t id = 0; id < MAXT; id++)
        if (s->fin[id])
            assert_true(bp_rbook_restore(&s->rb, id, s->fin[id] == 1) >= 0);
    if (s->total >= 0)
        assert_true(bp_rbook_close(&s->rb, (uint64_t)s->total) >= 0);
    s->alive = 1;
}

static int s_on(const struct msg *mm)
{
    struct sk *s = &W.s;
    struct bp_msg m;
    if (bp_msg_decode(&m, mm->data, mm->len, 1 << 16) != BP_OK)
        return 0;
    int early = 0;
    switch (m.type) {
    case BP_MSG_HEARTBEAT: {
        uint64_t ping = bp_msg_u64(&m, 0);
        if (!ping)
            break;
        bp_pack_begin(&W.p, BP_MSG_HEARTBEAT, s->batch && m.batch == s->batch ? m.batch : 0);
        bp_pack_u64(&W.p, 0);
        bp_pack_u64(&W.p, ping);
        s_send(BP_MSG_HEARTBEAT, 0);
        break;
    }
    case BP_MSG_BEGIN:
        if (s->batch != m.batch) {
            CHECK(!s->wrote_any, "a BEGIN restarted a batch with results");
            s->batch = m.batch;
        }
        return s_offer();
    case BP_MSG_EXTENT:
        if (m.batch == s->batch && bp_rbook_extent(&s->rb, bp_msg_u64(&m, 0)) > 0)
            return s_offer();
        break;
    case BP_MSG_CLOSE:
        if (m.batch != s->batch && !s->batch)
            s->batch = m.batch;
        if (m.batch == s->batch) {
            int rc = bp_rbook_close(&s->rb, bp_msg_u64(&m, 0));
            CHECK(rc >= 0, "CLOSE(%" PRIu64 ") refused by the book", bp_msg_u64(&m, 0));
            s->total = s->rb.total;
            if (s_offer() < 0)
                return -1;
        }
        break;
    case BP_MSG_RESULTS: {
        if (!s->batch) {
            s_hold(mm, m.batch, 0, UINT64_MAX);
            break;
        }
        if (m.batch != s->batch) {
            W.dropped++; /* stale (never, here: one batch) */
            break;
        }
        if (s_results(&m, 0, UINT64_MAX, &early) < 0)
            return -1;
        if (early)
            s_hold(mm, s->batch, s->rb.extent, s->rb.extent + BP_RBOOK_EARLY_WINDOW);
        break;
    }
    default:
        break;
    }
    s_complete();
    return 0;
}

/* ---- the ventilator ---- */

static int vent_drain(void)
{
    struct bp_out o;
    for (int n = 0; n < 10000; n++) {
        if (!bp_dispatch_peek(W.d, W.now, BP_TO_WORKER | BP_TO_SINK, &o))
            return 0;
        if (o.dest == BP_TO_SINK) {
            struct bp_pack p = {.p = (uint8_t *)o.data, .len = o.len};
            send_msg(N_VENT, N_SINK, 0, &p);
            bp_dispatch_commit(W.d, W.now);
            continue;
        }
        /* a routing id the ROUTER no longer has: EHOSTUNREACH */
        uint32_t rid;
        assert_int_equal(o.rid_len, sizeof rid);
        memcpy(&rid, o.rid, sizeof rid);
        int to = -1;
        for (int i = 0; i < W.nw; i++)
            if (W.w[i].alive && W.w[i].rid == rid)
                to = i;
        if (to < 0) {
            bp_dispatch_worker_gone(W.d, o.rid, o.rid_len, W.now);
            continue;
        }
        struct bp_pack p = {.p = (uint8_t *)o.data, .len = o.len};
        send_msg(N_VENT, N_W0 + to, 0, &p);
        bp_dispatch_commit(W.d, W.now);
    }
    return 0;
}

static void vent_input(void)
{
    while (W.added < W.ntasks && bp_dispatch_want_input(W.d)) {
        char t[16];
        int l = snprintf(t, sizeof t, "t%d", W.added);
        uint64_t id;
        assert_int_equal(bp_dispatch_add(W.d, t, (size_t)l, &id), BP_OK);
        assert_true(id == (uint64_t)W.added);
        W.added++;
    }
    if (W.added == W.ntasks)
        bp_dispatch_input_done(W.d);
}

/* ---- faults ---- */

static void hostile(void)
{
    /* a peer that knows the batch sends made-up ids near and far */
    uint64_t id = chance(500) ? (uint64_t)W.added + (rnd() % 300) : rnd();
    struct bp_result_rec r = {.id = id,
                              .attempt = 1,
                              .status = BP_ST_OK,
                              .flags = BP_RF_FINAL,
                              .data = (const uint8_t *)"evil",
                              .len = 4};
    bp_pack_begin(&W.p, BP_MSG_RESULTS, BATCH);
    bp_pack_u8(&W.p, 4);
    bp_pack_bytes(&W.p, "evil", 4);
    bp_pack_result(&W.p, &r);
    assert_int_equal(bp_pack_finish(&W.p), BP_OK);
    send_msg(N_W0 + W.nw, N_SINK, 0, &W.p); /* (a node of its own) */
    if (id >= (uint64_t)W.added)
        W.foreign_sent++;
}

static void faults(void)
{
    int i = (int)(rnd() % (uint64_t)W.nw);
    struct wk *w = &W.w[i];
    if (chance(W.cut_pm) && w->alive) {
        cut(N_W0 + i, N_VENT);
        cut(N_W0 + i, N_SINK);
        w->rid = ++W.next_rid; /* libzmq reconnects: the ROUTER sees a new peer */
    }
    if (chance(W.kill_pm) && w->alive) {
        w->alive = 0;
        w->revive_at = W.now + between(100, 5000);
        cut(N_W0 + i, N_VENT);
        cut(N_W0 + i, N_SINK);
    }
    if (chance(W.freeze_pm) && w->alive)
        w->frozen_to = W.now + between(100, 6000);
    if (chance(W.sink_pm) && W.s.alive) {
        W.s.alive = 0;
        W.s.revive_at = W.now + between(10, 2000);
        cut(N_SINK, N_VENT);
        for (int k = 0; k < W.nw; k++)
            cut(N_W0 + k, N_SINK);
    }
    if (W.hostile && chance(W.hostile))
        hostile();
}

/* ---- one run ---- */

static void world_free(void)
{
    for (int i = 0; i < W.nm; i++)
        free(W.m[i].data);
    free(W.m);
    for (int i = 0; i < W.s.nhold; i++)
        free(W.s.hold[i].data);
    bp_rbook_free(&W.s.rb);
    bp_dispatch_destroy(&W.d);
    bp_pack_free(&W.p);
}

/* --require in the model: the worker's own flag (ids are "w<i>"). */
static int sim_match(void *arg, const char *wid, const void *labels, size_t len)
{
    (void)arg;
    (void)labels;
    (void)len;
    long i = strtol(wid + 1, NULL, 10);
    return i >= 0 && i < W.nw && W.w[i].match;
}

/* What the ventilator would journal: must be what the sink holds. */
static void on_final(void *arg, uint64_t id, int ok)
{
    (void)arg;
    assert_true(id < MAXT && W.journaled[id] == -1);
    W.journaled[id] = (int8_t)ok;
}

static void world_new(uint64_t seed)
{
    memset(&W, 0, sizeof W);
    memset(W.journaled, -1, sizeof W.journaled);
    rng_s = seed * 0x9E3779B97F4A7C15ull + 1;
    for (int i = 0; i < 8; i++)
        (void)rnd();
    W.now = 1000000;
    W.nw = (int)between(1, MAXW);
    W.ntasks = (int)between(1, MAXT);
    W.jitter = (int)between(0, 300);
    W.cut_pm = chance(500) ? (int)between(0, 3) : 0;
    W.kill_pm = chance(500) ? (int)between(0, 3) : 0;
    W.freeze_pm = chance(300) ? (int)between(0, 2) : 0;
    W.sink_pm = chance(300) ? (int)between(0, 2) : 0;
    W.hostile = chance(300) ? (int)between(1, 50) : 0;
    bp_dispatch_defaults(&W.c, BATCH);
    W.c.hb_ivl_ms = HB;
    W.c.liveness = LIVE;
    W.c.max_attempts = (int)between(1, 4);
    W.c.retries = (int)between(0, 2);
    W.c.max_tasks = (uint32_t)between(8, 256);
    W.c.max_credit = 64;
    W.c.pack_max = (uint32_t)between(1, 32);
    W.c.ack_timeout_ms = (int)between(2000, 10000);
    W.c.retry_wait_ms = (int)between(0, 5000);
    W.c.max_rec = 1 << 16;
    W.c.on_final = on_final;
    W.d = bp_dispatch_new(&W.c, W.now);
    assert_non_null(W.d);
    W.m = calloc(MAXMSG, sizeof *W.m);
    assert_non_null(W.m);
    bp_pack_init(&W.p);
    bp_rbook_init(&W.s.rb);
    W.s.alive = 1;
    W.s.total = -1;
    for (int i = 0; i < W.nw; i++) {
        struct wk *w = &W.w[i];
        snprintf(w->id, sizeof w->id, "w%d", i);
        w->jobs = (int)between(1, 4);
        w->window = w->jobs + (int)between(0, 4);
        w->fails = W.nw > 1 && i == 0 && chance(200);
        w->slow = 1;
        w_start(w, i);
    }
    /* (drawn last: the runs above keep their seeds' faults) */
    for (int i = 0; i < W.nw; i++)
        W.w[i].slow = chance(250) ? (chance(500) ? 10 : 50) : 1;
    int require = chance(300);
    for (int i = 0; i < W.nw; i++)
        W.w[i].match = !require || i == 0 || chance(500);
    if (require)
        W.c.match = sim_match;
    int spec = chance(800);
    if (spec) {
        W.c.spec.quantile_pm = (int)between(300, 1000);
        W.c.spec.mult_pct = (int)between(100, 300);
        W.c.spec.min_ms = (int)between(0, 2000);
    }
    if (spec || require) {
        bp_dispatch_destroy(&W.d);
        W.d = bp_dispatch_new(&W.c, W.now);
        assert_non_null(W.d);
    }
}

/* Delivers what is due, in time order. */
static int deliver(void)
{
    for (;;) {
        int best = -1;
        for (int i = 0; i < W.nm; i++)
            if (W.m[i].at <= W.now && (best < 0 || W.m[i].at < W.m[best].at))
                best = i;
        if (best < 0)
            return 0;
        if (W.m[best].to >= N_W0 && W.m[best].to < N_W0 + W.nw &&
            W.w[W.m[best].to - N_W0].frozen_to > W.now) {
            W.m[best].at = W.w[W.m[best].to - N_W0].frozen_to; /* read when it wakes */
            continue;
        }
        struct msg mm = W.m[best];
        W.m[best] = W.m[--W.nm];
        int rc = 0;
        if (mm.conn != W.conn[mm.from][mm.to]) {
            /* cut while in flight */
        } else if (mm.to == N_VENT && mm.from == N_SINK) {
            (void)bp_dispatch_on_sink(W.d, mm.data, mm.len, W.now);
        } else if (mm.to == N_VENT) {
            struct wk *w = &W.w[mm.from - N_W0];
            if (w->alive && mm.rid == w->rid)
                (void)bp_dispatch_on_worker(W.d, &mm.rid, sizeof mm.rid, mm.data, mm.len, W.now);
        } else if (mm.to == N_SINK) {
            if (W.s.alive)
                rc = s_on(&mm);
        } else {
            struct wk *w = &W.w[mm.to - N_W0];
            if (w->alive)
                w_on_vent(w, mm.to - N_W0, &mm);
        }
        free(mm.data);
        if (rc < 0)
            return -1;
    }
}

static int run_seed(uint64_t seed)
{
    world_new(seed);
    int64_t end = W.now + HORIZON;
    struct bp_dispatch_stats st;
    for (;;) {
        W.now += between(1, 20);
        if (W.now >= end)
            bp_dispatch_stats(W.d, &st);
        CHECK(W.now < end,
              "stalled: %d tasks, not finished after %d s (read %d, queued %" PRId64
              ", out %" PRId64 ", waiting for acks %" PRId64
              ", sink %s%s, input %s, announced %" PRId64 ", sink extent %" PRIu64 " total %" PRId64
              ", held %d, %d workers)",
              W.ntasks, HORIZON / 1000, W.added, st.queued, st.out, st.done_wait,
              st.sink_alive ? "alive" : "silent", st.sink_confirmed ? " (confirmed)" : "",
              st.input_done ? "done" : "not done", st.announced, W.s.rb.extent, W.s.rb.total,
              W.s.nhold, st.workers);
        if (!W.s.alive && W.now >= W.s.revive_at)
            s_restart();
        faults();
        if (deliver() < 0)
            return -1;
        CHECK(!W.misrouted, "TASKS for w%d, which does not match --require", W.misrouted - 1);
        for (int i = 0; i < W.nw; i++)
            w_step(&W.w[i], i);
        vent_input();
        bp_dispatch_on_timer(W.d, W.now);
        bp_dispatch_stats(W.d, &st);
        /* (the ventilator's policy: COMPLETE, or 5 s after all is final) */
        if (st.all_final && !W.all_final_at)
            W.all_final_at = W.now;
        if (st.all_final && !st.finished && (st.complete || W.now - W.all_final_at >= 5000))
            bp_dispatch_finish(W.d, BP_END_COMPLETE);
        vent_drain();
        bp_dispatch_stats(W.d, &st);
        if (st.finished && st.end_pending == 0)
            break;
    }
    /* the end: the guarantees */
    CHECK(bp_rbook_complete(&W.s.rb), "the ventilator ended, the sink is not complete");
    for (int id = 0; id < W.ntasks; id++) {
        CHECK(W.writes[id] == 1, "task %d has %" PRId64 " results", id, W.writes[id]);
        /* the ventilator's journal says what the sink holds (or "at the sink") */
        int j = W.journaled[id], want = W.s.fin[id] == 1 ? 1 : 0;
        CHECK(j == want || j == 2, "task %d: the ventilator journaled %d, the sink holds %s", id, j,
              want ? "ok" : "failed");
    }
    CHECK(W.s.rb.ok + W.s.rb.failed_n == W.ntasks, "sink counts %" PRId64 "+%" PRId64 " of %d",
          W.s.rb.ok, W.s.rb.failed_n, W.ntasks);
    CHECK(st.ok == W.s.rb.ok && st.failed == W.s.rb.failed_n,
          "ventilator says %" PRId64 " ok %" PRId64 " failed, sink %" PRId64 "/%" PRId64, st.ok,
          st.failed, W.s.rb.ok, W.s.rb.failed_n);
    /* A live sink never throws a real result away (results before BEGIN
     * are held, not dropped as stale): with no hostile peer to fill the
     * hold, nothing is dropped. */
    CHECK(W.hostile || W.dropped == 0, "the live sink dropped %" PRId64 " real results", W.dropped);
    return 0;
}

static void t_simulation(void **state)
{
    (void)state;
    const char *one = getenv("BP_SIM_SEED");
    const char *many = getenv("BP_SIM_SEEDS");
    const char *first = getenv("BP_SIM_FIRST"); /* (by hand: more seeds from here) */
    uint64_t from = one ? strtoull(one, NULL, 10) : first ? strtoull(first, NULL, 10) : 1;
    uint64_t n = one ? 1 : many ? strtoull(many, NULL, 10) : 2000;
    int64_t lost = 0, retried = 0, redelivered = 0, foreign = 0, spec = 0, won = 0, cancels = 0;
    for (uint64_t seed = from; seed < from + n; seed++) {
        if (run_seed(seed) < 0) {
            fprintf(stderr, "seed %" PRIu64 ": %s (replay: BP_SIM_SEED=%" PRIu64 ")\n", seed, W.why,
                    seed);
            world_free();
            fail();
        }
        struct bp_dispatch_stats st;
        bp_dispatch_stats(W.d, &st);
        lost += st.lost;
        retried += st.retried;
        redelivered += st.redelivered;
        foreign += W.s.rb.foreign;
        spec += st.speculated;
        won += st.spec_won;
        cancels += W.cancels;
        world_free();
    }
    printf("%" PRIu64 " seeds: %" PRId64 " redelivered, %" PRId64 " retried, %" PRId64
           " lost, %" PRId64 " foreign results dropped, %" PRId64 " speculated (%" PRId64
           " won), %" PRId64 " attempts cancelled\n",
           n, redelivered, retried, lost, foreign, spec, won, cancels);
}

int main(void)
{
    const struct CMUnitTest tests[] = {cmocka_unit_test(t_simulation)};
    return cmocka_run_group_tests(tests, NULL, NULL);
}
