/* The ventilator's delivery state machine (bp_dispatch.h): tasks, workers,
 * credit, deadlines, redelivery, retries. Owns the task table and worker
 * records; must not do I/O, read a clock or log. */
#include <stdio.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "bp_dispatch.h"
#include "bp_path.h"
#include "bp_frame.h"

/* Task states (bp_dispatch_task reports LOSTQ and LOSTSENT both as 4). */
enum { T_FREE = 0, T_QUEUED, T_OUT, T_DONE, T_LOSTQ, T_LOSTSENT, T_ZOMBIE };

struct task {
    uint64_t id;
    uint8_t state;
    uint8_t inq;      /* in the queue, the retry list or the lost list */
    uint16_t attempt; /* deliveries so far */
    uint16_t losses, fails;
    uint8_t halted;   /* reported to the sink as halted, not lost */
    int32_t unread;   /* an errno: a --files path the ventilator could not read */
    int32_t worker;   /* OUT/DONE: the worker index; -1 none */
    uint32_t wgen;    /* that worker's generation, so a reused index never matches */
    int32_t avoid;    /* a worker that failed this task (retries go elsewhere) */
    int64_t retry_at; /* when its failed try came back (avoid holds for retry_wait_ms) */
    int64_t t_out;
    /* Stragglers: the attempt the worker above runs (attempt counts
     * deliveries), and a second copy (the shadow; sworker -1: none). */
    uint16_t oatt, satt;
    uint16_t spec_att; /* the speculative copy's attempt (0: never speculated) */
    uint16_t won;      /* the attempt whose result is final (0: not known) */
    int32_t sworker;
    uint32_t swgen;
    int64_t st_out;
    int64_t deadline; /* OUT: task deadline (0 none); DONE/LOSTSENT: ack deadline */
    uint8_t *data;
    uint32_t len, cap;
};

/* A worker as the ventilator sees it: a peer session on the ROUTER. */
struct wpeer {
    uint8_t rid[255];
    uint8_t rid_len;
    uint8_t live;
    uint8_t leaving; /* said BYE: no more tasks */
    uint8_t end_pending;
    uint8_t base_due; /* the BASE message goes out before any TASKS */
    uint32_t gen;
    uint32_t chunks; /* CHUNKs owed or sent this session (FETCH window) */
    uint32_t credit;
    int64_t last_seen, next_hb;
    uint64_t echo; /* a ping to answer, 0 none */
    int64_t out, done;
    char id[BP_ID_MAX + 1];
    uint8_t nomatch; /* cfg.match said no: no task for it */
    uint16_t labels_len;
    uint8_t labels[BP_LABELS_MAX]; /* as its HELLO said (for logs) */
};

struct resync {
    uint8_t rid[255];
    uint8_t len;
};

#define NIL UINT32_MAX

/* Live workers in the order of a time that only grows (next_hb, last_seen):
 * the head is the next due. Doubly linked by worker index. */
struct wlist {
    uint32_t head, tail;
    uint32_t *prev, *next;
    uint8_t *on;
};

/* Workers that may have something to send: a FIFO of worker indices,
 * each at most once (in[]). */
struct wring {
    uint32_t *v;
    uint32_t head, len, mask;
    uint8_t *in;
};

#define N_RESYNC 16
#define LOST_REASON_MAX 96
/* FETCH requests held for the loop: a worker has at most BP_FETCH_WINDOW
 * without their CHUNK, so this only overflows under a flood (dropped). */
#define FETCH_Q 4096
/* CANCELs waiting to go, and stragglers found by the last scan: bounded;
 * a CANCEL that does not fit is dropped (that copy runs to its end, its
 * result a duplicate at the sink). */
#define CANCEL_Q 1024
#define N_CAND 64

enum {
    PK_NONE,
    PK_BEGIN,
    PK_EXTENT,
    PK_CLOSE,
    PK_SINK_HB,
    PK_LOST,
    PK_RESYNC,
    PK_END,
    PK_BASE,
    PK_HB,
    PK_TASKS,
    PK_SPEC,
    PK_CANCEL
};
/* How finalize() learned the outcome. */
enum { FIN_FAILED = 0, FIN_OK = 1, FIN_AT_SINK = 2 };

struct bp_dispatch {
    struct bp_dispatch_cfg c;
    int64_t dead_ms, scan_ms;
    struct task *t;
    uint32_t *freel;
    uint32_t nfree;
    uint32_t *map; /* id -> slot + 1; 0 empty; open addressing */
    uint64_t map_mask;
    uint32_t *q; /* ring of slots, front = next to send */
    uint32_t qhead, qlen, qmask;
    uint32_t *rq; /* retry list: failed tries, preferably for another worker */
    uint32_t rqlen;
    uint32_t *lq; /* lost tasks whose final result goes to the sink */
    uint32_t lqlen;
    struct wpeer *w;
    uint32_t nw;   /* worker slots in use (live or not) */
    uint32_t wcap; /* worker slots allocated: grows up to max_workers */
    /* So that no message costs a walk over every worker: */
    uint32_t *wmap; /* rid -> live worker index + 1; open addressing */
    uint32_t wmap_mask;
    uint32_t *wfree; /* dead worker slots to reuse */
    uint32_t nwfree;
    struct wlist hbl;    /* by next_hb: whose heartbeat is due */
    struct wlist seenl;  /* by last_seen: who went silent */
    struct wring ctl;    /* END or a heartbeat due */
    struct wring tr;     /* credit to serve */
    uint64_t credit_sum; /* credit of live workers that are not leaving */
    uint32_t takers;     /* ... of them with credit */
    uint32_t n_end;      /* live workers with END due */
    uint32_t next_gen;
    struct resync rs[N_RESYNC];
    int nrs;
    int sink_alive, sink_seen, need_begin, need_close, complete;
    /* The sink answered a message carrying this batch since it last said
     * it did not know it (batch 0): only then do tasks go out, so their
     * results cannot reach a sink that would drop them as stale. */
    int sink_confirmed;
    /* Ids below this were announced to the sink (EXTENT, CLOSE); a task
     * goes out only once its id is. */
    uint64_t announced;
    int need_extent;
    uint64_t pk_extent;
    int64_t sink_last, sink_next_hb;
    uint64_t next_id;
    int input_done, finished, end_reason;
    int halted;
    char halt_why[LOST_REASON_MAX];
    uint64_t sink_ok, sink_failed; /* from COMPLETE, when we had to take its word */
    int64_t held, held_bytes, queued, out, done_wait, lost_wait;
    int64_t next_scan;
    struct bp_dispatch_stats st;
    struct bp_pack pk;
    /* what the last peek prepared, for commit */
    int pk_kind;
    uint32_t pk_w;
    uint32_t pk_n;      /* records in the message */
    uint32_t pk_qpop;   /* entries to pop from the queue front */
    uint32_t *pk_slots; /* the slots in the message */
    uint32_t *scratch;  /* max_tasks slots of room for one message's ids */
    /* FETCH requests accepted, not yet served (bp_dispatch_next_fetch) */
    struct fetchq {
        uint32_t w, gen;
        struct bp_fetch_rec f;
    } fq[FETCH_Q];
    uint32_t fq_head, fq_len;
    /* stragglers (bp_spec.h) */
    int final_pings;          /* sink pings since every task was final */
    uint32_t nomatch_n;       /* live workers cfg.match said no to */
    struct bp_spec_hist hist; /* task times, t_out to DONE */
    uint32_t cand[N_CAND];    /* stragglers found by the last scan */
    uint32_t ncand, cqlen;
    struct cancelq {
        uint64_t id;
        uint32_t w, gen;
        uint16_t att;
    } cq[CANCEL_Q];
};

void bp_dispatch_defaults(struct bp_dispatch_cfg *c, uint64_t batch)
{
    memset(c, 0, sizeof *c);
    c->batch = batch;
    c->hb_ivl_ms = 1000;
    c->liveness = 3;
    c->max_attempts = 3;
    c->retries = 0;
    c->task_deadline_ms = 0;
    c->ack_timeout_ms = 10000;
    c->retry_wait_ms = 5000;
    c->max_tasks = 65536;
    c->max_bytes = (size_t)64 << 20;
    c->max_workers = 1024;
    c->max_credit = 4096;
    c->pack_max = 256;
    c->pack_bytes = BP_PACK_BYTES;
    c->max_rec = BP_DEFAULT_MAX_MSG;
    c->use_sink = 1;
}

static uint64_t hash64(uint64_t id)
{
    return id * 0x9E3779B97F4A7C15ull;
}

static uint32_t map_find(const struct bp_dispatch *d, uint64_t id)
{
    uint64_t i = hash64(id) & d->map_mask;
    for (;;) {
        uint32_t v = d->map[i];
        if (!v)
            return UINT32_MAX;
        if (d->t[v - 1].id == id)
            return v - 1;
        i = (i + 1) & d->map_mask;
    }
}

static void map_put(struct bp_dispatch *d, uint64_t id, uint32_t slot)
{
    uint64_t i = hash64(id) & d->map_mask;
    while (d->map[i])
        i = (i + 1) & d->map_mask;
    d->map[i] = slot + 1;
}

/* Linear probing with backward-shift deletion: no tombstones to pile up. */
static void map_del(struct bp_dispatch *d, uint64_t id)
{
    uint64_t i = hash64(id) & d->map_mask;
    for (;;) {
        uint32_t v = d->map[i];
        if (!v)
            return;
        if (d->t[v - 1].id == id)
            break;
        i = (i + 1) & d->map_mask;
    }
    uint64_t j = i;
    for (;;) {
        j = (j + 1) & d->map_mask;
        uint32_t v = d->map[j];
        if (!v)
            break;
        uint64_t home = hash64(d->t[v - 1].id) & d->map_mask;
        /* Move v back to the hole unless its home lies cyclically in (i, j]. */
        int in_between = i <= j ? (home > i && home <= j) : (home > i || home <= j);
        if (!in_between) {
            d->map[i] = v;
            i = j;
        }
    }
    d->map[i] = 0;
}

static uint32_t pow2_at_least(uint64_t n)
{
    uint64_t p = 1;
    while (p < n)
        p <<= 1;
    return p > UINT32_MAX ? 0 : (uint32_t)p;
}

/* ---- worker indexes: lists by time, rings of work, the rid map ---- */

static void wl_unlink(struct wlist *l, uint32_t i)
{
    if (!l->on[i])
        return;
    if (l->prev[i] != NIL)
        l->next[l->prev[i]] = l->next[i];
    else
        l->head = l->next[i];
    if (l->next[i] != NIL)
        l->prev[l->next[i]] = l->prev[i];
    else
        l->tail = l->prev[i];
    l->on[i] = 0;
}

/* i's time was just set to now (+ a constant): it goes last. */
static void wl_touch(struct wlist *l, uint32_t i)
{
    wl_unlink(l, i);
    l->prev[i] = l->tail;
    l->next[i] = NIL;
    if (l->tail != NIL)
        l->next[l->tail] = i;
    else
        l->head = i;
    l->tail = i;
    l->on[i] = 1;
}

static void ring_push(struct wring *r, uint32_t i)
{
    if (r->in[i])
        return;
    r->in[i] = 1;
    r->v[(r->head + r->len++) & r->mask] = i;
}

static uint32_t ring_front(const struct wring *r)
{
    return r->v[r->head];
}

static void ring_pop(struct wring *r)
{
    r->in[r->v[r->head]] = 0;
    r->head = (r->head + 1) & r->mask;
    r->len--;
}

/* The front goes last (round robin). */
static void ring_rotate(struct wring *r)
{
    uint32_t i = r->v[r->head];
    r->head = (r->head + 1) & r->mask;
    r->v[(r->head + r->len - 1) & r->mask] = i;
}

static uint32_t rid_hash(const uint8_t *rid, size_t len)
{
    uint32_t h = 2166136261u; /* FNV-1a */
    for (size_t i = 0; i < len; i++)
        h = (h ^ rid[i]) * 16777619u;
    return h;
}

static void wmap_put(struct bp_dispatch *d, uint32_t wi)
{
    uint32_t k = rid_hash(d->w[wi].rid, d->w[wi].rid_len) & d->wmap_mask;
    while (d->wmap[k])
        k = (k + 1) & d->wmap_mask;
    d->wmap[k] = wi + 1;
}

/* Linear probing's deletion: later entries of the cluster move back. */
static void wmap_del(struct bp_dispatch *d, uint32_t wi)
{
    uint32_t m = d->wmap_mask;
    uint32_t i = rid_hash(d->w[wi].rid, d->w[wi].rid_len) & m;
    while (d->wmap[i] && d->wmap[i] != wi + 1)
        i = (i + 1) & m;
    if (!d->wmap[i])
        return;
    for (uint32_t j = (i + 1) & m; d->wmap[j]; j = (j + 1) & m) {
        const struct wpeer *o = &d->w[d->wmap[j] - 1];
        uint32_t home = rid_hash(o->rid, o->rid_len) & m;
        /* It stays if its home lies cyclically in (i, j]. */
        if (i <= j ? (i < home && home <= j) : (i < home || home <= j))
            continue;
        d->wmap[i] = d->wmap[j];
        i = j;
    }
    d->wmap[i] = 0;
}

/* w's share of the credit counts (sign +1 after a change, -1 before). */
static void w_acct(struct bp_dispatch *d, const struct wpeer *w, int sign)
{
    if (!w->live || w->leaving || w->nomatch) /* (no task for it: --require) */
        return;
    if (sign > 0) {
        d->credit_sum += w->credit;
        d->takers += w->credit > 0;
    } else {
        d->credit_sum -= w->credit;
        d->takers -= w->credit > 0;
    }
}

static void set_end(struct bp_dispatch *d, struct wpeer *w, int on)
{
    d->n_end -= w->end_pending;
    w->end_pending = (uint8_t)(on != 0);
    d->n_end += w->end_pending;
    if (on)
        ring_push(&d->ctl, (uint32_t)(w - d->w));
}

static int wlist_init(struct wlist *l, uint32_t n)
{
    l->head = l->tail = NIL;
    l->prev = malloc((size_t)n * sizeof *l->prev);
    l->next = malloc((size_t)n * sizeof *l->next);
    l->on = calloc(n, 1);
    return l->prev && l->next && l->on ? 0 : -1;
}

static int wring_init(struct wring *r, uint32_t n)
{
    uint32_t cap = pow2_at_least(n);
    r->v = malloc((size_t)cap * sizeof *r->v);
    r->in = calloc(n, 1);
    r->mask = cap - 1;
    return r->v && r->in ? 0 : -1;
}

static void windex_free(struct bp_dispatch *d)
{
    struct wlist *ls[2] = {&d->hbl, &d->seenl};
    for (int i = 0; i < 2; i++) {
        free(ls[i]->prev);
        free(ls[i]->next);
        free(ls[i]->on);
    }
    free(d->ctl.v);
    free(d->ctl.in);
    free(d->tr.v);
    free(d->tr.in);
    free(d->wmap);
    free(d->wfree);
}

static int windex_init(struct bp_dispatch *d, uint32_t n)
{
    uint32_t mcap = pow2_at_least((uint64_t)n * 2);
    d->wmap = calloc(mcap, sizeof *d->wmap);
    d->wmap_mask = mcap - 1;
    d->wfree = malloc((size_t)n * sizeof *d->wfree);
    int rc = wlist_init(&d->hbl, n) | wlist_init(&d->seenl, n) | wring_init(&d->ctl, n) |
             wring_init(&d->tr, n);
    return rc || !d->wmap || !d->wfree ? -1 : 0;
}

struct bp_dispatch *bp_dispatch_new(const struct bp_dispatch_cfg *cfg, int64_t now)
{
    if (!cfg || cfg->hb_ivl_ms <= 0 || cfg->liveness <= 0 || cfg->max_attempts <= 0 ||
        cfg->retries < 0 || cfg->max_tasks == 0 || cfg->max_tasks > (1u << 24) ||
        cfg->max_workers == 0 || cfg->max_workers > 65536 || cfg->pack_max == 0 ||
        cfg->max_credit == 0 || cfg->ack_timeout_ms <= 0 || cfg->max_attempts > 60000 ||
        cfg->retries > 60000 || cfg->retry_wait_ms < 0)
        return NULL;
    struct bp_dispatch *d = calloc(1, sizeof *d);
    if (!d)
        return NULL;
    d->c = *cfg;
    d->dead_ms = (int64_t)cfg->hb_ivl_ms * cfg->liveness;
    d->scan_ms = cfg->hb_ivl_ms / 4 > 10 ? cfg->hb_ivl_ms / 4 : 10;
    uint32_t n = cfg->max_tasks;
    uint32_t qcap = pow2_at_least(n);
    uint32_t mcap = pow2_at_least((uint64_t)n * 2);
    d->t = calloc(n, sizeof *d->t);
    d->freel = malloc((size_t)n * sizeof *d->freel);
    d->map = calloc(mcap, sizeof *d->map);
    d->q = malloc((size_t)qcap * sizeof *d->q);
    d->rq = malloc((size_t)n * sizeof *d->rq);
    d->lq = malloc((size_t)n * sizeof *d->lq);
    d->wcap = cfg->max_workers < 64 ? cfg->max_workers : 64;
    d->w = calloc(d->wcap, sizeof *d->w);
    d->scratch = malloc((size_t)n * sizeof *d->scratch);
    d->pk_slots = malloc((size_t)(cfg->pack_max > n ? cfg->pack_max : n) * sizeof *d->pk_slots);
    if (!qcap || !mcap || !d->t || !d->freel || !d->map || !d->q || !d->rq || !d->lq || !d->w ||
        !d->pk_slots || !d->scratch || windex_init(d, cfg->max_workers) != 0) {
        bp_dispatch_destroy(&d);
        return NULL;
    }
    d->map_mask = mcap - 1;
    d->qmask = qcap - 1;
    for (uint32_t i = 0; i < n; i++)
        d->freel[i] = n - 1 - i;
    d->nfree = n;
    bp_pack_init(&d->pk);
    d->need_begin = cfg->use_sink;
    d->sink_next_hb = now;
    d->next_scan = INT64_MAX;
    return d;
}

void bp_dispatch_destroy(struct bp_dispatch **dp)
{
    if (!dp || !*dp)
        return;
    struct bp_dispatch *d = *dp;
    if (d->t)
        for (uint32_t i = 0; i < d->c.max_tasks; i++)
            free(d->t[i].data);
    free(d->t);
    free(d->freel);
    free(d->map);
    free(d->q);
    free(d->rq);
    free(d->lq);
    free(d->w);
    windex_free(d);
    free(d->pk_slots);
    free(d->scratch);
    bp_pack_free(&d->pk);
    free(d);
    *dp = NULL;
}

/* ---- queues ---- */

static void q_push_back(struct bp_dispatch *d, uint32_t s)
{
    d->q[(d->qhead + d->qlen) & d->qmask] = s;
    d->qlen++;
    d->t[s].inq = 1;
}

static void q_push_front(struct bp_dispatch *d, uint32_t s)
{
    d->qhead = (d->qhead - 1) & d->qmask;
    d->q[d->qhead] = s;
    d->qlen++;
    d->t[s].inq = 1;
}

static uint32_t q_at(const struct bp_dispatch *d, uint32_t i)
{
    return d->q[(d->qhead + i) & d->qmask];
}

/* ---- task life ---- */

static void slot_free(struct bp_dispatch *d, uint32_t s);

/* Takes the queue's front entry off; a task that became final while
 * queued (a zombie) is freed now. */
static void q_pop_front(struct bp_dispatch *d)
{
    uint32_t s = d->q[d->qhead];
    d->qhead = (d->qhead + 1) & d->qmask;
    d->qlen--;
    d->t[s].inq = 0;
    if (d->t[s].state == T_ZOMBIE)
        slot_free(d, s);
}

static void slot_free(struct bp_dispatch *d, uint32_t s)
{
    struct task *t = &d->t[s];
    map_del(d, t->id);
    /* Keep an ordinary buffer for the next task; give big ones back. */
    if (t->cap > BP_PACK_BYTES) {
        free(t->data);
        t->data = NULL;
        t->cap = 0;
    }
    t->state = T_FREE;
    t->inq = 0;
    d->freel[d->nfree++] = s;
}

/* Leaves state s of task t (keeps the per-state counts right). */
static void leave_state(struct bp_dispatch *d, struct task *t)
{
    switch (t->state) {
    case T_QUEUED:
        d->queued--;
        break;
    case T_OUT:
        d->out--;
        if (t->worker >= 0 && d->w[t->worker].gen == t->wgen && d->w[t->worker].out > 0)
            d->w[t->worker].out--;
        break;
    case T_DONE:
        d->done_wait--;
        break;
    case T_LOSTQ:
    case T_LOSTSENT:
        d->lost_wait--;
        break;
    default:
        break;
    }
}

/* ---- stragglers: a task's second copy (the shadow) ---- */

/* Queues a CANCEL of attempt att of task id for worker wi's session gen;
 * a full queue drops it (that copy runs to its end: a duplicate). */
static void cancel_push(struct bp_dispatch *d, int32_t wi, uint32_t gen, uint64_t id, uint16_t att)
{
    if (wi < 0 || d->cqlen == CANCEL_Q || !d->w[wi].live || d->w[wi].gen != gen)
        return;
    d->cq[d->cqlen++] = (struct cancelq){.w = (uint32_t)wi, .gen = gen, .id = id, .att = att};
}

/* t's second copy is over; cancel: it may still run, stop it. */
static void drop_shadow(struct bp_dispatch *d, struct task *t, int cancel)
{
    if (t->sworker < 0)
        return;
    struct wpeer *w = &d->w[t->sworker];
    if (w->gen == t->swgen && w->out > 0)
        w->out--;
    if (cancel)
        cancel_push(d, t->sworker, t->swgen, t->id, t->satt);
    t->sworker = -1;
}

/* t's first copy is gone (lost, handed back, failed a try): the second,
 * still running, takes its place; nothing goes back to the queue. */
static void promote(struct bp_dispatch *d, struct task *t)
{
    leave_state(d, t);
    t->state = T_OUT;
    d->out++;
    t->worker = t->sworker;
    t->wgen = t->swgen;
    t->oatt = t->satt;
    t->t_out = t->st_out;
    t->deadline = d->c.task_deadline_ms > 0 ? t->st_out + d->c.task_deadline_ms : 0;
    t->sworker = -1;
}

/* The copies of t trade places (the shadow finished first). */
static void swap_copies(struct task *t)
{
    int32_t w = t->worker;
    uint32_t g = t->wgen;
    uint16_t a = t->oatt;
    int64_t o = t->t_out;
    t->worker = t->sworker;
    t->wgen = t->swgen;
    t->oatt = t->satt;
    t->t_out = t->st_out;
    t->sworker = w;
    t->swgen = g;
    t->satt = a;
    t->st_out = o;
}

/* t is final with attempt t->won's result (0: not known): a copy still
 * running is stopped. */
static void spec_settle(struct bp_dispatch *d, struct task *t)
{
    if (t->spec_att && t->won == t->spec_att)
        d->st.spec_won++;
    drop_shadow(d, t, t->satt != t->won);
    if (t->spec_att && t->state == T_OUT && t->won && t->oatt != t->won)
        cancel_push(d, t->worker, t->wgen, t->id, t->oatt);
}

/* Un-counts a delivery handed back unstarted (only the newest one's
 * number can be given again). */
static void unsend(struct task *t)
{
    if (t->attempt && t->attempt == t->oatt)
        t->attempt--;
}

/* A final outcome for the task in slot s: FIN_OK, FIN_FAILED, or
 * FIN_AT_SINK (counted from the sink's COMPLETE, not here). */
static void finalize(struct bp_dispatch *d, uint32_t s, int how)
{
    struct task *t = &d->t[s];
    int was_lost = t->state == T_LOSTSENT || t->state == T_LOSTQ;
    spec_settle(d, t);
    leave_state(d, t);
    if (d->c.on_final)
        d->c.on_final(d->c.on_final_arg, t->id, how);
    if (how == FIN_OK)
        d->st.ok++;
    else if (how == FIN_FAILED)
        d->st.failed++;
    if (was_lost && how == FIN_FAILED && t->unread)
        d->st.unreadable++;
    else if (was_lost && how == FIN_FAILED && t->halted)
        d->st.halted++;
    else if (was_lost && how == FIN_FAILED)
        d->st.lost++;
    d->held--;
    d->held_bytes -= t->len;
    if (t->inq) {
        /* Still referenced by a queue: freed when it comes off it. */
        t->state = T_ZOMBIE;
        return;
    }
    slot_free(d, s);
}

/* Back to the front of the queue (a loss, a hand-back). */
static void requeue_front(struct bp_dispatch *d, uint32_t s)
{
    struct task *t = &d->t[s];
    leave_state(d, t);
    t->state = T_QUEUED;
    t->worker = -1;
    d->queued++;
    q_push_front(d, s);
}

/* A delivery of slot s was lost (worker died, deadline, no ack). */
static void lose(struct bp_dispatch *d, uint32_t s, int64_t now)
{
    struct task *t = &d->t[s];
    (void)now;
    if (t->sworker >= 0) {
        promote(d, t); /* its other copy runs on: not a loss */
        return;
    }
    if (t->losses < UINT16_MAX)
        t->losses++;
    if (t->losses >= d->c.max_attempts) {
        if (!d->c.use_sink) {
            t->state = T_LOSTSENT; /* nobody to tell: final at once */
            d->lost_wait++;
            finalize(d, s, FIN_FAILED);
            return;
        }
        leave_state(d, t);
        t->state = T_LOSTQ;
        d->lost_wait++;
        if (!t->inq) {
            d->lq[d->lqlen++] = s;
            t->inq = 1;
        }
        return;
    }
    d->st.redelivered++;
    requeue_front(d, s);
}

/* ---- workers ---- */

static struct wpeer *find_worker(struct bp_dispatch *d, const void *rid, size_t len)
{
    uint32_t k = rid_hash(rid, len) & d->wmap_mask;
    for (; d->wmap[k]; k = (k + 1) & d->wmap_mask) {
        struct wpeer *w = &d->w[d->wmap[k] - 1];
        if (w->rid_len == len && !memcmp(w->rid, rid, len))
            return w;
    }
    return NULL;
}

static uint32_t widx(const struct bp_dispatch *d, const struct wpeer *w)
{
    return (uint32_t)(w - d->w);
}

/* Everything out on w goes back to the queue; loss says whether that
 * counts against the tasks (death) or not (hand-back, new session). */
static void release_worker_tasks(struct bp_dispatch *d, struct wpeer *w, int loss, int64_t now)
{
    int32_t wi = (int32_t)widx(d, w);
    if (w->out == 0)
        return;
    /* Lose in reverse id order so the queue front ends up in id order. */
    for (uint32_t k = d->c.max_tasks; k-- > 0;) {
        struct task *t = &d->t[k];
        if (t->sworker == wi && t->swgen == w->gen) {
            d->st.handed_back += !loss;
            drop_shadow(d, t, 0); /* (the first copy runs on) */
            continue;
        }
        if (t->state != T_OUT || t->worker != wi || t->wgen != w->gen)
            continue;
        if (loss) {
            lose(d, k, now);
        } else {
            unsend(t);
            d->st.handed_back++;
            if (t->sworker >= 0)
                promote(d, t);
            else
                requeue_front(d, k);
        }
    }
    w->out = 0;
}

static void kill_worker(struct bp_dispatch *d, struct wpeer *w, int64_t now)
{
    uint32_t wi = widx(d, w);
    release_worker_tasks(d, w, 1, now);
    w_acct(d, w, -1);
    set_end(d, w, 0);
    wmap_del(d, wi);
    wl_unlink(&d->hbl, wi);
    wl_unlink(&d->seenl, wi);
    w->live = 0;
    d->wfree[d->nwfree++] = wi; /* (its ring entries go when met) */
    d->st.workers--;
    d->nomatch_n -= w->nomatch;
}

/* More worker slots (doubling, up to max_workers): a host with a few
 * workers does not pay for the most it may track. */
static int grow_workers(struct bp_dispatch *d)
{
    uint32_t cap = d->wcap * 2 < d->c.max_workers ? d->wcap * 2 : d->c.max_workers;
    if (cap <= d->wcap)
        return -1;
    struct wpeer *w = realloc(d->w, (size_t)cap * sizeof *w);
    if (!w)
        return -1;
    memset(w + d->wcap, 0, (size_t)(cap - d->wcap) * sizeof *w);
    d->w = w;
    d->wcap = cap;
    return 0;
}

static struct wpeer *new_worker(struct bp_dispatch *d, const void *rid, size_t len)
{
    struct wpeer *w;
    if (d->nwfree)
        w = &d->w[d->wfree[--d->nwfree]];
    else if (d->nw < d->wcap || grow_workers(d) == 0)
        w = &d->w[d->nw++];
    else
        return NULL;
    memset(w, 0, sizeof *w);
    memcpy(w->rid, rid, len);
    w->rid_len = (uint8_t)len;
    w->live = 1;
    w->gen = ++d->next_gen;
    wmap_put(d, widx(d, w));
    d->st.workers++;
    d->st.workers_seen++;
    return w;
}

static void add_resync(struct bp_dispatch *d, const void *rid, size_t len)
{
    for (int i = 0; i < d->nrs; i++)
        if (d->rs[i].len == len && !memcmp(d->rs[i].rid, rid, len))
            return;
    if (d->nrs == N_RESYNC)
        return; /* the peer asks again with its next heartbeat */
    memcpy(d->rs[d->nrs].rid, rid, len);
    d->rs[d->nrs].len = (uint8_t)len;
    d->nrs++;
}

/* Keeps the HELLO's labels and asks cfg.match about them (--require). */
static void hello_labels(struct bp_dispatch *d, struct wpeer *w, const struct bp_hello *h)
{
    w->labels_len = h->labels_len; /* (the codec checked <= BP_LABELS_MAX) */
    if (h->labels_len)
        memcpy(w->labels, h->labels, h->labels_len);
    d->nomatch_n -= w->nomatch;
    w->nomatch = d->c.match && !d->c.match(d->c.match_arg, w->id, w->labels, w->labels_len);
    d->nomatch_n += w->nomatch;
}

static void on_hello(struct bp_dispatch *d, const void *rid, size_t rlen, const struct bp_msg *m,
                     int64_t now)
{
    struct bp_hello h;
    bp_msg_hello(m, &h);
    struct wpeer *w = find_worker(d, rid, rlen);
    if (w) {
        /* A new session on the same connection: what it had is void
         * (its tasks, and FETCH requests still queued: a new generation). */
        release_worker_tasks(d, w, 0, now);
        w->gen = ++d->next_gen;
    } else {
        /* The same worker (by its id) on a new connection: the old one is
         * gone, and what it held will not come back through it. */
        for (uint32_t i = 0; i < d->nw && h.id_len; i++) {
            struct wpeer *o = &d->w[i];
            if (o->live && strlen(o->id) == h.id_len && !memcmp(o->id, h.id, h.id_len))
                kill_worker(d, o, now);
        }
        w = new_worker(d, rid, rlen);
        if (!w) {
            d->st.refused++;
            return;
        }
    }
    memcpy(w->id, h.id, h.id_len);
    w->id[h.id_len] = '\0';
    w_acct(d, w, -1);
    w->credit = h.credit > d->c.max_credit ? d->c.max_credit : h.credit;
    w->leaving = 0;
    hello_labels(d, w, &h);
    w_acct(d, w, +1);
    if (w->credit)
        ring_push(&d->tr, widx(d, w));
    w->last_seen = now;
    w->next_hb = now + d->c.hb_ivl_ms;
    wl_touch(&d->seenl, widx(d, w));
    wl_touch(&d->hbl, widx(d, w));
    set_end(d, w, d->finished);
    w->base_due = d->c.base_n > 0;
    w->chunks = 0;
    if (w->base_due)
        ring_push(&d->ctl, widx(d, w));
}

/* FETCH: each request within the worker's window is queued for the loop
 * (bp_dispatch_next_fetch); the rest is dropped and counted. got is what
 * the worker settled (a CHUNK came, or it gave the request up and asks
 * again), so chunks - got is what it has outstanding; a got above chunks
 * (a request this side dropped, then given up there) counts as none. */
static void on_fetch(struct bp_dispatch *d, struct wpeer *w, const struct bp_msg *m)
{
    uint32_t got = bp_msg_u32(m);
    if (got > w->chunks)
        got = w->chunks;
    struct bp_fetch_rec f;
    size_t off = 0;
    while (bp_msg_next_fetch(m, &off, &f)) {
        if (w->chunks - got >= BP_FETCH_WINDOW || d->fq_len == FETCH_Q) {
            d->st.malformed++;
            continue;
        }
        struct fetchq *e = &d->fq[(d->fq_head + d->fq_len) % FETCH_Q];
        e->w = widx(d, w);
        e->gen = w->gen;
        e->f = f;
        d->fq_len++;
        w->chunks++;
    }
}

static void on_done_id(struct bp_dispatch *d, struct wpeer *w, uint64_t id, int64_t now)
{
    uint32_t s = map_find(d, id);
    if (s == UINT32_MAX) {
        d->st.stale++;
        return;
    }
    struct task *t = &d->t[s];
    int32_t wi = (int32_t)widx(d, w);
    int shadow = t->sworker == wi && t->swgen == w->gen;
    if (!shadow && (t->state != T_OUT || t->worker != wi || t->wgen != w->gen)) {
        d->st.stale++;
        return;
    }
    w->done++;
    if (shadow && t->state != T_OUT) {
        drop_shadow(d, t, 0); /* the second to finish: a duplicate at the sink */
        return;
    }
    if (shadow)
        swap_copies(t);
    bp_spec_note(&d->hist, now - t->t_out);
    if (!d->c.use_sink) {
        t->won = t->oatt;
        finalize(d, s, FIN_OK);
        return;
    }
    leave_state(d, t);
    t->state = T_DONE;
    t->deadline = now + d->c.ack_timeout_ms;
    d->done_wait++;
    if (d->next_scan == INT64_MAX)
        d->next_scan = now + d->scan_ms;
}

/* BYE: ids handed back unstarted go to the queue front (no attempt
 * lost); the worker takes no more; BYE(GONE): whatever else it had out is
 * a loss. */
static void on_bye(struct bp_dispatch *d, struct wpeer *w, const struct bp_msg *mp, int ours,
                   int64_t now)
{
    size_t off = 0;
    uint64_t id;
    uint32_t flags = bp_msg_u32(mp);
    int32_t wi = (int32_t)widx(d, w);
    uint32_t nb = 0;
    while (bp_msg_next_id(mp, &off, &id)) {
        uint32_t s = ours ? map_find(d, id) : UINT32_MAX;
        struct task *t = s == UINT32_MAX ? NULL : &d->t[s];
        if (t && t->sworker == wi && t->swgen == w->gen) {
            d->st.handed_back++;
            drop_shadow(d, t, 0);
            continue;
        }
        if (!t || t->state != T_OUT || t->worker != wi || t->wgen != w->gen) {
            d->st.stale++;
            continue;
        }
        unsend(t);
        d->st.handed_back++;
        if (t->sworker >= 0) {
            promote(d, t); /* (a repeated id is now the other copy's: stale) */
            continue;
        }
        leave_state(d, t); /* OUT no more: a repeated id is now stale */
        t->state = T_QUEUED;
        d->queued++;
        d->scratch[nb++] = s;
    }
    /* Pushed to the front in reverse, so they go out again in order. */
    while (nb--) {
        d->t[d->scratch[nb]].worker = -1;
        q_push_front(d, d->scratch[nb]);
    }
    w_acct(d, w, -1);
    w->leaving = 1;
    w->credit = 0;
    if (flags & BP_BYE_GONE)
        kill_worker(d, w, now); /* whatever it still had out is a loss */
}

int bp_dispatch_on_worker(struct bp_dispatch *d, const void *rid, size_t rid_len, const void *buf,
                          size_t len, int64_t now)
{
    struct bp_msg m;
    int rc = bp_msg_decode(&m, buf, len, d->c.max_rec);
    if (rc != BP_OK || rid_len == 0 || rid_len > 255) {
        d->st.malformed++;
        return rc == BP_OK ? BP_EPROTO : rc;
    }
    if (m.type == BP_MSG_HELLO) {
        on_hello(d, rid, rid_len, &m, now);
        return BP_OK;
    }
    if (m.type != BP_MSG_CREDIT && m.type != BP_MSG_HEARTBEAT && m.type != BP_MSG_BYE &&
        m.type != BP_MSG_FETCH) {
        d->st.malformed++;
        return BP_EPROTO;
    }
    struct wpeer *w = find_worker(d, rid, rid_len);
    if (!w) {
        d->st.refused++;
        if (m.type != BP_MSG_BYE)
            add_resync(d, rid, rid_len);
        return BP_OK;
    }
    w->last_seen = now;
    wl_touch(&d->seenl, widx(d, w));
    int ours = m.batch == d->c.batch;
    size_t off = 0;
    uint64_t id;
    switch (m.type) {
    case BP_MSG_HEARTBEAT: {
        uint64_t ping = bp_msg_u64(&m, 0);
        if (ping) {
            w->echo = ping;
            w->next_hb = now;
            ring_push(&d->ctl, widx(d, w));
        }
        break;
    }
    case BP_MSG_CREDIT: {
        uint64_t c = (uint64_t)w->credit + bp_msg_u32(&m);
        w_acct(d, w, -1);
        w->credit = c > d->c.max_credit ? d->c.max_credit : (uint32_t)c;
        w_acct(d, w, +1);
        if (w->credit && !w->leaving)
            ring_push(&d->tr, widx(d, w));
        while (bp_msg_next_id(&m, &off, &id))
            if (ours)
                on_done_id(d, w, id, now);
            else
                d->st.stale++;
        break;
    }
    case BP_MSG_BYE:
        on_bye(d, w, &m, ours, now);
        break;
    case BP_MSG_FETCH:
        if (ours)
            on_fetch(d, w, &m);
        else
            d->st.stale++;
        break;
    default:
        break;
    }
    return BP_OK;
}

int bp_dispatch_next_fetch(struct bp_dispatch *d, struct bp_fetch_req *r)
{
    while (d->fq_len) {
        const struct fetchq *e = &d->fq[d->fq_head];
        d->fq_head = (d->fq_head + 1) % FETCH_Q;
        d->fq_len--;
        const struct wpeer *w = &d->w[e->w];
        if (!w->live || w->gen != e->gen)
            continue; /* its session ended: nobody to answer */
        r->rid = w->rid;
        r->rid_len = w->rid_len;
        r->f = e->f;
        r->data = NULL;
        r->len = 0;
        r->refused = 0;
        if (e->f.kind == BP_FK_BASE) {
            r->refused = e->f.id >= d->c.base_n;
            return 1;
        }
        uint32_t s = map_find(d, e->f.id);
        const struct task *t = s == UINT32_MAX ? NULL : &d->t[s];
        int own = t && t->state == T_OUT && t->worker == (int32_t)e->w && t->wgen == e->gen &&
                  t->oatt == e->f.attempt;
        if (!own &&
            (!t || t->sworker != (int32_t)e->w || t->swgen != e->gen || t->satt != e->f.attempt)) {
            r->refused = 1; /* not (or no longer) that worker's attempt */
            return 1;
        }
        r->data = t->data;
        r->len = t->len;
        return 1;
    }
    return 0;
}

void bp_dispatch_worker_gone(struct bp_dispatch *d, const void *rid, size_t rid_len, int64_t now)
{
    struct wpeer *w = find_worker(d, rid, rid_len);
    if (w)
        kill_worker(d, w, now);
    /* A RESYNC for a connection that is gone can never be sent; left
     * queued it would be peeked first for ever and starve everyone. */
    for (int i = 0; i < d->nrs; i++) {
        if (d->rs[i].len == rid_len && !memcmp(d->rs[i].rid, rid, rid_len)) {
            memmove(&d->rs[i], &d->rs[i + 1], (size_t)(d->nrs - i - 1) * sizeof d->rs[0]);
            d->nrs--;
            break; /* add_resync() keeps rids unique */
        }
    }
}

/* ---- sink ---- */

/* The sink must hear the batch again (BEGIN, what was read, CLOSE), and
 * say it knows it before more tasks go out. */
static void sink_retell(struct bp_dispatch *d, int64_t now)
{
    d->need_begin = 1;
    d->need_close = d->input_done;
    d->announced = 0; /* (so what was read is announced again: extent_due()) */
    /* A ping right behind the BEGIN confirms it; while the sink keeps not
     * knowing the batch (it refused the BEGIN), pings keep their pace. */
    if (d->sink_confirmed)
        d->sink_next_hb = now;
    d->sink_confirmed = 0;
}

static void sink_heard(struct bp_dispatch *d, int64_t now)
{
    d->sink_last = now;
    if (d->sink_alive)
        return;
    d->sink_alive = 1;
    if (d->sink_seen) {
        /* The sink was gone: tell it the batch again (idempotent there),
         * and give results in flight a fresh chance to be acknowledged. */
        sink_retell(d, now);
        for (uint32_t k = 0; k < d->c.max_tasks; k++) {
            struct task *t = &d->t[k];
            if (t->state == T_DONE || t->state == T_LOSTSENT)
                t->deadline = now + d->c.ack_timeout_ms;
        }
    }
    d->sink_seen = 1;
}

/* The sink has a final result for every task of the batch. Normally every
 * one was acknowledged already; after a crash of ours (acknowledgements
 * lost, or a journal cut short) some may still be held, sent again or out
 * on workers: the sink will never acknowledge those again (a --once sink
 * has left), so they are final now with the outcome the sink holds, and
 * the batch's counts are the sink's. Only a COMPLETE that fits the batch
 * counts: input read to the end, and as many results as tasks read. */
static void on_complete(struct bp_dispatch *d, uint64_t ok, uint64_t failed)
{
    if (d->complete || !d->input_done || ok + failed != d->next_id || ok > d->next_id) {
        d->st.stale++;
        return;
    }
    d->complete = 1;
    if (!d->held)
        return; /* the normal end: every task acknowledged, our counts are the sink's */
    d->sink_ok = ok;
    d->sink_failed = failed;
    for (uint32_t k = 0; k < d->c.max_tasks; k++) {
        uint8_t st = d->t[k].state;
        if (st != T_FREE && st != T_ZOMBIE)
            finalize(d, k, FIN_AT_SINK);
    }
}

static void on_ack(struct bp_dispatch *d, const struct bp_ack_rec *a, int64_t now)
{
    uint32_t s = map_find(d, a->id);
    if (s == UINT32_MAX) {
        d->st.stale++;
        return;
    }
    struct task *t = &d->t[s];
    if (t->state == T_ZOMBIE || t->state == T_FREE) {
        d->st.stale++;
        return;
    }
    if (a->kind != BP_ACK_RETRY) {
        t->won = a->attempt;
        finalize(d, s, a->kind == BP_ACK_OK ? FIN_OK : FIN_FAILED);
        return;
    }
    if (t->sworker >= 0 && a->attempt == t->satt) {
        d->st.retried++; /* a failed try of the second copy: the first runs on */
        drop_shadow(d, t, 0);
        return;
    }
    /* A failed try: only the current delivery's failure counts. */
    if (a->attempt != t->oatt || (t->state != T_OUT && t->state != T_DONE)) {
        d->st.stale++;
        return;
    }
    if (t->sworker >= 0) {
        d->st.retried++; /* the second copy runs on: that is the retry */
        promote(d, t);
        return;
    }
    if (t->fails < UINT16_MAX)
        t->fails++;
    if (t->fails > d->c.retries) {
        /* The worker should have made it final; do not loop on it. */
        lose(d, s, now);
        return;
    }
    d->st.retried++;
    t->avoid = t->worker;
    t->retry_at = now;
    leave_state(d, t);
    t->state = T_QUEUED;
    t->worker = -1;
    d->queued++;
    d->rq[d->rqlen++] = s;
    t->inq = 1;
}

int bp_dispatch_on_sink(struct bp_dispatch *d, const void *buf, size_t len, int64_t now)
{
    struct bp_msg m;
    int rc = bp_msg_decode(&m, buf, len, d->c.max_rec);
    if (rc != BP_OK) {
        d->st.malformed++;
        return rc;
    }
    if (m.batch == 0 && m.type == BP_MSG_HEARTBEAT) {
        /* The sink answers, but does not know our batch (it restarted, or
         * it did not take our BEGIN): tell it again, and send no task
         * until it answers on our batch. */
        sink_heard(d, now);
        sink_retell(d, now);
        return BP_OK;
    }
    if (m.batch != d->c.batch) {
        d->st.stale++;
        return BP_OK;
    }
    size_t off = 0;
    struct bp_ack_rec a;
    switch (m.type) {
    case BP_MSG_ACK:
        sink_heard(d, now);
        while (bp_msg_next_ack(&m, &off, &a))
            on_ack(d, &a, now);
        break;
    case BP_MSG_HEARTBEAT:
        sink_heard(d, now);
        break;
    case BP_MSG_COMPLETE:
        sink_heard(d, now);
        on_complete(d, bp_msg_u64(&m, 0), bp_msg_u64(&m, 8));
        break;
    default:
        d->st.malformed++;
        return BP_EPROTO;
    }
    d->sink_confirmed = 1; /* (it said something on our batch: it knows it) */
    return BP_OK;
}

/* ---- input ---- */

int bp_dispatch_want_input(const struct bp_dispatch *d)
{
    if (d->input_done || d->finished || d->nfree == 0 || d->held_bytes >= (int64_t)d->c.max_bytes)
        return 0;
    return (uint64_t)d->queued < d->c.pack_max + d->credit_sum;
}

int bp_dispatch_add(struct bp_dispatch *d, const void *data, size_t len, uint64_t *id)
{
    if (d->input_done)
        return BP_EUSAGE;
    if (len > d->c.max_rec)
        return BP_ETOOBIG;
    if (d->nfree == 0)
        return BP_ENOMEM;
    uint32_t s = d->freel[d->nfree - 1];
    struct task *t = &d->t[s];
    if (t->cap < len || !t->data) {
        size_t cap = len < 64 ? 64 : len;
        uint8_t *p = realloc(t->data, cap);
        if (!p)
            return BP_ENOMEM;
        t->data = p;
        t->cap = (uint32_t)cap;
    }
    d->nfree--;
    if (len)
        memcpy(t->data, data, len);
    t->len = (uint32_t)len;
    t->id = d->next_id++;
    t->state = T_QUEUED;
    t->attempt = t->losses = t->fails = 0;
    t->halted = 0;
    t->unread = 0;
    t->worker = t->avoid = t->sworker = -1;
    t->oatt = t->spec_att = t->won = 0;
    t->deadline = 0;
    map_put(d, t->id, s);
    q_push_back(d, s);
    d->queued++;
    d->held++;
    d->held_bytes += (int64_t)len;
    d->st.added++;
    if (id)
        *id = t->id;
    return BP_OK;
}

int bp_dispatch_add_final(struct bp_dispatch *d, int ok, uint64_t *id)
{
    if (d->input_done)
        return BP_EUSAGE;
    if (id)
        *id = d->next_id;
    d->next_id++;
    d->st.added++;
    if (ok)
        d->st.ok++;
    else
        d->st.failed++;
    return BP_OK;
}

int bp_dispatch_add_unreadable(struct bp_dispatch *d, const void *path, size_t len, int err,
                               uint64_t *id)
{
    uint64_t tid;
    int rc = bp_dispatch_add(d, path, len, &tid);
    if (rc != BP_OK)
        return rc;
    uint32_t s = map_find(d, tid);
    struct task *t = &d->t[s];
    d->qlen--; /* off the queue's back, where bp_dispatch_add() put it */
    t->inq = 0;
    d->queued--;
    t->unread = err > 0 ? err : EIO;
    t->state = T_LOSTQ;
    d->lost_wait++;
    if (!d->c.use_sink) {
        t->state = T_LOSTSENT; /* nobody to tell: final at once */
        finalize(d, s, FIN_FAILED);
    } else {
        d->lq[d->lqlen++] = s;
        t->inq = 1;
    }
    if (id)
        *id = tid;
    return BP_OK;
}

void bp_dispatch_input_done(struct bp_dispatch *d)
{
    if (d->input_done)
        return;
    d->input_done = 1;
    d->need_close = d->c.use_sink;
}

/* ---- timers ---- */

/* Whether stragglers are looked for: speculation on, every task read and
 * sent, some still out, the batch going on. */
static int spec_watch(const struct bp_dispatch *d)
{
    return d->c.spec.quantile_pm > 0 && d->input_done && d->queued == 0 && d->out > 0 &&
           !d->finished && !d->halted;
}

/* How long a task must have been out to get a second copy now; -1: none
 * will (too early, or no worker with credit to take one). */
static int64_t spec_threshold(const struct bp_dispatch *d)
{
    if (!spec_watch(d))
        return -1;
    int idle = 0;
    for (uint32_t i = 0; i < d->nw && !idle; i++)
        idle = d->w[i].live && !d->w[i].leaving && d->w[i].credit > 0 && !d->w[i].nomatch;
    if (!idle)
        return -1;
    int64_t fin = d->st.ok + d->st.failed + d->done_wait;
    return bp_spec_threshold(&d->c.spec, &d->hist, fin, d->st.added);
}

void bp_dispatch_on_timer(struct bp_dispatch *d, int64_t now)
{
    for (uint32_t i = 0; i < d->rqlen; i++) {
        struct task *t = &d->t[d->rq[i]];
        if (t->avoid >= 0 && now - t->retry_at >= d->c.retry_wait_ms)
            t->avoid = -1; /* waited long enough: any worker will do */
    }
    while (d->seenl.head != NIL && now - d->w[d->seenl.head].last_seen >= d->dead_ms)
        kill_worker(d, &d->w[d->seenl.head], now);
    if (d->c.use_sink && d->sink_alive && now - d->sink_last >= d->dead_ms)
        d->sink_alive = 0;
    if (spec_watch(d) && d->next_scan == INT64_MAX)
        d->next_scan = now; /* (and every scan_ms while it holds) */
    if (now < d->next_scan)
        return;
    int need = spec_watch(d);
    int64_t thr = spec_threshold(d);
    d->ncand = 0;
    for (uint32_t k = 0; k < d->c.max_tasks; k++) {
        struct task *t = &d->t[k];
        if (thr >= 0 && t->state == T_OUT && t->sworker < 0 && !t->spec_att &&
            now - t->t_out > thr && d->ncand < N_CAND)
            d->cand[d->ncand++] = k;
        if (t->state == T_OUT && d->c.task_deadline_ms > 0) {
            if (now - t->t_out >= d->c.task_deadline_ms)
                lose(d, k, now);
            else
                need = 1;
        } else if (t->state == T_DONE || t->state == T_LOSTSENT) {
            /* No ack while the sink is away is the sink's fault, not the task's. */
            if (d->sink_alive && now >= t->deadline) {
                if (t->state == T_DONE) {
                    lose(d, k, now);
                } else {
                    t->state = T_LOSTQ; /* send the lost result again */
                    if (!t->inq) {
                        d->lq[d->lqlen++] = k;
                        t->inq = 1;
                    }
                }
            }
            need = 1;
        }
    }
    d->next_scan = need ? now + d->scan_ms : INT64_MAX;
}

int64_t bp_dispatch_next_deadline(const struct bp_dispatch *d)
{
    int64_t n = d->next_scan;
    /* A retry waiting for another worker may go to the one it avoids. */
    for (uint32_t i = 0; i < d->rqlen; i++) {
        const struct task *t = &d->t[d->rq[i]];
        if (t->state == T_QUEUED && t->avoid >= 0 && t->retry_at + d->c.retry_wait_ms < n)
            n = t->retry_at + d->c.retry_wait_ms;
    }
    if (d->c.use_sink) {
        if (d->sink_next_hb < n)
            n = d->sink_next_hb;
        if (d->sink_alive && d->sink_last + d->dead_ms < n)
            n = d->sink_last + d->dead_ms;
    }
    /* The heads of the lists by time; a worker waiting in the control
     * ring is due already (its heartbeat, or an echo). */
    if (d->hbl.head != NIL && d->w[d->hbl.head].next_hb < n)
        n = d->w[d->hbl.head].next_hb;
    if (d->seenl.head != NIL && d->w[d->seenl.head].last_seen + d->dead_ms < n)
        n = d->w[d->seenl.head].last_seen + d->dead_ms;
    if (d->ctl.len && d->w[ring_front(&d->ctl)].live && d->w[ring_front(&d->ctl)].next_hb < n)
        n = d->w[ring_front(&d->ctl)].next_hb;
    return n;
}

/* ---- output ---- */

/* Drops finished (zombie) entries off the queue front and the retry list,
 * so what is left there is really waiting. */
static void purge(struct bp_dispatch *d)
{
    while (d->qlen && d->t[d->q[d->qhead]].state != T_QUEUED)
        q_pop_front(d);
    uint32_t j = 0;
    for (uint32_t i = 0; i < d->rqlen; i++) {
        uint32_t s = d->rq[i];
        if (d->t[s].state == T_QUEUED) {
            d->rq[j++] = s;
            continue;
        }
        d->t[s].inq = 0;
        if (d->t[s].state == T_ZOMBIE)
            slot_free(d, s);
    }
    d->rqlen = j;
    j = 0;
    for (uint32_t i = 0; i < d->lqlen; i++) {
        uint32_t s = d->lq[i];
        if (d->t[s].state == T_LOSTQ) {
            d->lq[j++] = s;
            continue;
        }
        d->t[s].inq = 0;
        if (d->t[s].state == T_ZOMBIE)
            slot_free(d, s);
    }
    d->lqlen = j;
}

/* Whether a worker other than wi could take a task, now or later. */
static int other_worker(const struct bp_dispatch *d, uint32_t wi)
{
    for (uint32_t i = 0; i < d->nw; i++)
        if (i != wi && d->w[i].live && !d->w[i].leaving && !d->w[i].nomatch)
            return 1;
    return 0;
}

/* Whether the retry of t should wait for a worker other than wi, the one
 * that failed it: while another worker is connected, for retry_wait_ms. */
static int retry_avoids(const struct bp_dispatch *d, const struct task *t, uint32_t wi, int others,
                        int64_t now)
{
    return t->avoid == (int32_t)wi && others && now - t->retry_at < d->c.retry_wait_ms;
}

/* Adds the task in slot s to the TASKS pack unless the pack is full (a
 * pack always takes its first task, however big). Returns 0 when full. */
static int pack_task(struct bp_dispatch *d, uint32_t s, uint32_t *n, size_t *bytes)
{
    const struct task *t = &d->t[s];
    if (*n && *bytes + BP_TASK_REC + t->len > d->c.pack_bytes)
        return 0;
    uint8_t fl = (uint8_t)((t->fails >= d->c.retries ? BP_TF_LAST_TRY : 0) | d->c.task_flags);
    bp_pack_task(&d->pk, t->id, (uint16_t)(t->attempt + 1), fl, t->data, t->len);
    *bytes += BP_TASK_REC + t->len;
    d->pk_slots[(*n)++] = s;
    return 1;
}

/* Fills a TASKS pack for worker wi; returns the number of tasks in it.
 * Only ids the sink has been told of go out. */
static uint32_t build_tasks(struct bp_dispatch *d, uint32_t wi, int64_t now)
{
    struct wpeer *w = &d->w[wi];
    uint32_t lim = w->credit < d->c.pack_max ? w->credit : d->c.pack_max;
    /* A short queue is shared out between the workers that can take
     * work, rather than all going to whoever asks first. */
    uint32_t takers = d->takers;
    if (takers > 1) {
        uint64_t share = ((uint64_t)d->queued + takers - 1) / takers;
        if (share < lim)
            lim = (uint32_t)share;
    }
    size_t bytes = BP_MSG_HDR; /* pack_bytes bounds the whole message */
    uint32_t n = 0;
    int others = d->rqlen ? other_worker(d, wi) : 0;
    uint64_t told = d->c.use_sink ? d->announced : UINT64_MAX;
    bp_pack_begin(&d->pk, BP_MSG_TASKS, d->c.batch);
    for (uint32_t i = 0; i < d->rqlen && n < lim; i++) {
        const struct task *t = &d->t[d->rq[i]];
        if (t->state != T_QUEUED || t->id >= told || retry_avoids(d, t, wi, others, now))
            continue;
        if (!pack_task(d, d->rq[i], &n, &bytes))
            break;
    }
    uint32_t k = 0;
    for (; k < d->qlen && n < lim; k++) {
        uint32_t s = q_at(d, k);
        if (d->t[s].state != T_QUEUED)
            continue;
        /* (the queue pops from the front: stop, do not skip) */
        if (d->t[s].id >= told || !pack_task(d, s, &n, &bytes))
            break;
    }
    d->pk_qpop = k;
    return n;
}

static void build_hb(struct bp_dispatch *d, uint64_t ping, uint64_t echo)
{
    bp_pack_begin(&d->pk, BP_MSG_HEARTBEAT, d->c.batch);
    bp_pack_u64(&d->pk, ping);
    bp_pack_u64(&d->pk, echo);
}

/* The text of the result the ventilator reports for a task it gave up. */
static int lost_reason(const struct bp_dispatch *d, const struct task *t, char *why, size_t n)
{
    if (t->unread)
        return snprintf(why, n, "boardpipe: cannot read %.*s: %s",
                        (int)(t->len > BP_NAME_MAX ? BP_NAME_MAX : t->len), (const char *)t->data,
                        strerror(t->unread));
    if (t->halted)
        return snprintf(why, n, "%s", d->halt_why);
    return snprintf(why, n,
                    "boardpipe: lost %u times (worker died, went silent or overran its deadline)",
                    (unsigned)t->losses);
}

static int emit(struct bp_dispatch *d, int kind, int dest, const struct wpeer *w, struct bp_out *o)
{
    if (bp_pack_finish(&d->pk) != BP_OK)
        return 0; /* out of memory: try again on the next call */
    d->pk_kind = kind;
    o->dest = dest;
    o->rid = w ? w->rid : NULL;
    o->rid_len = w ? w->rid_len : 0;
    o->data = d->pk.p;
    o->len = d->pk.len;
    return 1;
}

/* Whether to tell the sink what was read (EXTENT) now. Tasks never go
 * out before their id was announced (build_tasks stops there); this only
 * decides when: once less than a pack of announced tasks is left at the
 * queue's front (input is read ahead of it, so one EXTENT covers many
 * packs: one more message per pack would double the sink's), and with
 * every ping while input is read (need_extent). */
static int extent_due(const struct bp_dispatch *d)
{
    if (!d->next_id)
        return 0;
    if (d->next_id <= d->announced)
        return d->need_extent;
    if (!d->qlen)
        return 1;
    uint64_t front = d->t[q_at(d, 0)].id;
    return front + d->c.pack_max >= d->announced;
}

static int peek_sink(struct bp_dispatch *d, int64_t now, struct bp_out *o)
{
    if (d->need_begin) {
        bp_pack_begin(&d->pk, BP_MSG_BEGIN, d->c.batch);
        return emit(d, PK_BEGIN, BP_TO_SINK, NULL, o);
    }
    if (extent_due(d)) {
        /* What was read belongs to the batch: the sink writes results only
         * for ids it was told of. */
        bp_pack_begin(&d->pk, BP_MSG_EXTENT, d->c.batch);
        bp_pack_u64(&d->pk, d->next_id);
        d->pk_extent = d->next_id;
        return emit(d, PK_EXTENT, BP_TO_SINK, NULL, o);
    }
    if (now >= d->sink_next_hb) {
        /* The sink answers a ping at once: that is how we know it is there. */
        build_hb(d, (uint64_t)now | 1, 0);
        return emit(d, PK_SINK_HB, BP_TO_SINK, NULL, o);
    }
    if (d->lqlen) {
        bp_pack_begin(&d->pk, BP_MSG_RESULTS, d->c.batch);
        static const char me[] = "ventilator";
        bp_pack_u8(&d->pk, (uint8_t)(sizeof me - 1));
        bp_pack_bytes(&d->pk, me, sizeof me - 1);
        uint32_t n = 0;
        for (uint32_t i = 0; i < d->lqlen && n < d->c.pack_max; i++) {
            struct task *t = &d->t[d->lq[i]];
            if (t->state != T_LOSTQ)
                continue;
            char why[LOST_REASON_MAX + BP_NAME_MAX];
            int wl = lost_reason(d, t, why, sizeof why);
            struct bp_result_rec r = {.id = t->id,
                                      .attempt = t->attempt,
                                      .status = t->unread   ? BP_ST_FILEERR
                                                : t->halted ? BP_ST_HALTED
                                                            : BP_ST_LOST,
                                      .flags = BP_RF_FINAL,
                                      .code = t->unread ? t->unread : t->losses,
                                      .data = (const uint8_t *)why,
                                      .len = wl > 0 ? (uint32_t)wl : 0};
            bp_pack_result(&d->pk, &r);
            d->pk_slots[n++] = d->lq[i];
        }
        if (n) {
            d->pk_n = n;
            return emit(d, PK_LOST, BP_TO_SINK, NULL, o);
        }
    }
    if (d->need_close) {
        bp_pack_begin(&d->pk, BP_MSG_CLOSE, d->c.batch);
        bp_pack_u64(&d->pk, d->next_id);
        return emit(d, PK_CLOSE, BP_TO_SINK, NULL, o);
    }
    return 0;
}

/* Every task in state from (T_QUEUED, or T_OUT too with now_too) becomes
 * final as halted: reported to the sink like a lost one. */
static void halt_tasks(struct bp_dispatch *d, int now_too)
{
    for (uint32_t k = 0; k < d->c.max_tasks; k++) {
        struct task *t = &d->t[k];
        if (t->state != T_QUEUED && !(now_too && t->state == T_OUT))
            continue;
        leave_state(d, t);
        t->halted = 1;
        t->state = T_LOSTQ;
        d->lost_wait++;
        if (!d->c.use_sink) {
            t->state = T_LOSTSENT; /* nobody to tell: final at once */
            finalize(d, k, FIN_FAILED);
        }
    }
    /* Off the queue and the retry list (nothing there is queued now),
     * onto the list of reports for the sink. */
    purge(d);
    for (uint32_t k = 0; k < d->c.max_tasks; k++) {
        struct task *t = &d->t[k];
        if (t->state == T_LOSTQ && !t->inq) {
            d->lq[d->lqlen++] = k;
            t->inq = 1;
        }
    }
}

void bp_dispatch_halt(struct bp_dispatch *d, int now_too, const char *why)
{
    if (!d->halted)
        snprintf(d->halt_why, sizeof d->halt_why, "%s", why);
    d->halted = 1;
    halt_tasks(d, now_too);
}

/* A TASKS message with a second copy of a straggler for worker wi (one
 * found by the last scan, not running there). Returns 1 when built. */
static int build_spec(struct bp_dispatch *d, uint32_t wi)
{
    for (uint32_t i = 0; i < d->ncand; i++) {
        uint32_t s = d->cand[i];
        const struct task *t = &d->t[s];
        if (t->state != T_OUT || t->sworker >= 0 || t->spec_att || t->worker == (int32_t)wi)
            continue;
        size_t bytes = BP_MSG_HDR;
        uint32_t n = 0;
        bp_pack_begin(&d->pk, BP_MSG_TASKS, d->c.batch);
        pack_task(d, s, &n, &bytes);
        d->pk_n = n;
        d->pk_qpop = 0;
        return 1;
    }
    return 0;
}

/* Whether w, at the control ring's front, has an END, its BASE or a
 * heartbeat due. */
static int ctl_due(const struct wpeer *w, int64_t now)
{
    return w->live && (w->end_pending || w->base_due || now >= w->next_hb || w->echo);
}

/* END, BASE (before any TASKS: the control ring is served first) and
 * heartbeats (due ones join the control ring from the list by next_hb),
 * first come first served. */
static int peek_ctl(struct bp_dispatch *d, int64_t now, struct bp_out *o)
{
    while (d->hbl.head != NIL && d->w[d->hbl.head].next_hb <= now) {
        uint32_t i = d->hbl.head;
        wl_unlink(&d->hbl, i);
        ring_push(&d->ctl, i);
    }
    while (d->ctl.len) {
        uint32_t i = ring_front(&d->ctl);
        struct wpeer *w = &d->w[i];
        if (!ctl_due(w, now)) {
            ring_pop(&d->ctl);
            continue;
        }
        d->pk_w = i;
        if (w->end_pending) {
            bp_pack_begin(&d->pk, BP_MSG_END, d->c.batch);
            bp_pack_u32(&d->pk, (uint32_t)d->end_reason);
            return emit(d, PK_END, BP_TO_WORKER, w, o);
        }
        if (w->base_due) {
            bp_pack_begin(&d->pk, BP_MSG_BASE, d->c.batch);
            bp_pack_bytes(&d->pk, d->c.base_body, d->c.base_len);
            d->pk.n = d->c.base_n;
            return emit(d, PK_BASE, BP_TO_WORKER, w, o);
        }
        build_hb(d, 0, w->echo);
        return emit(d, PK_HB, BP_TO_WORKER, w, o);
    }
    return 0;
}

/* A CANCEL for the first queued entry's worker, with all of its entries
 * (entries of sessions that ended are dropped first). */
static int peek_cancel(struct bp_dispatch *d, struct bp_out *o)
{
    uint32_t j = 0;
    for (uint32_t i = 0; i < d->cqlen; i++)
        if (d->w[d->cq[i].w].live && d->w[d->cq[i].w].gen == d->cq[i].gen)
            d->cq[j++] = d->cq[i];
    d->cqlen = j;
    if (!d->cqlen)
        return 0;
    d->pk_w = d->cq[0].w;
    bp_pack_begin(&d->pk, BP_MSG_CANCEL, d->c.batch);
    for (uint32_t i = 0; i < d->cqlen; i++)
        if (d->cq[i].w == d->pk_w)
            bp_pack_cancel(&d->pk, d->cq[i].id, d->cq[i].att);
    return emit(d, PK_CANCEL, BP_TO_WORKER, &d->w[d->pk_w], o);
}

/* The CANCEL from the last peek was sent: its entries are done. */
static void commit_cancel(struct bp_dispatch *d)
{
    uint32_t j = 0;
    for (uint32_t i = 0; i < d->cqlen; i++) {
        if (d->cq[i].w == d->pk_w)
            d->st.cancelled++;
        else
            d->cq[j++] = d->cq[i];
    }
    d->cqlen = j;
}

/* The second copy from the last peek went to worker w: it runs the new
 * attempt, the copy that was out becomes the shadow. */
static void commit_spec(struct bp_dispatch *d, struct wpeer *w, int64_t now)
{
    struct task *t = &d->t[d->pk_slots[0]];
    t->sworker = t->worker;
    t->swgen = t->wgen;
    t->satt = t->oatt;
    t->st_out = t->t_out;
    t->worker = (int32_t)d->pk_w;
    t->wgen = w->gen;
    t->attempt++;
    t->oatt = t->spec_att = t->attempt;
    t->t_out = now;
    t->deadline = d->c.task_deadline_ms > 0 ? now + d->c.task_deadline_ms : 0;
    w_acct(d, w, -1);
    w->credit--;
    w_acct(d, w, +1);
    w->out++;
    d->st.speculated++;
}

/* A second copy of a straggler found by the last scan, to a worker with
 * credit that does not run it; only at a batch's end (spec_watch). */
static int peek_spec(struct bp_dispatch *d, struct bp_out *o)
{
    if (!d->ncand || !spec_watch(d) || (d->c.use_sink && !(d->sink_alive && d->sink_confirmed)))
        return 0;
    for (uint32_t i = 0; i < d->nw; i++) {
        struct wpeer *w = &d->w[i];
        if (!w->live || w->leaving || w->nomatch || !w->credit)
            continue;
        d->pk_w = i;
        if (build_spec(d, i))
            return emit(d, PK_SPEC, BP_TO_WORKER, w, o);
    }
    return 0;
}

/* TASKS for the workers with credit, round robin. */
static int peek_tasks(struct bp_dispatch *d, int64_t now, struct bp_out *o)
{
    for (uint32_t j = d->tr.len; j > 0; j--) {
        uint32_t i = ring_front(&d->tr);
        struct wpeer *w = &d->w[i];
        if (!w->live || w->leaving || !w->credit || w->nomatch) {
            ring_pop(&d->tr);
            continue;
        }
        d->pk_w = i;
        uint32_t n = build_tasks(d, i, now);
        if (n) {
            d->pk_n = n;
            return emit(d, PK_TASKS, BP_TO_WORKER, w, o);
        }
        /* Nothing for this one: nor for any other, unless a retry
         * avoids this worker and may go to the next. */
        if (!d->rqlen)
            return 0;
        ring_rotate(&d->tr);
    }
    return 0;
}

int bp_dispatch_peek(struct bp_dispatch *d, int64_t now, int mask, struct bp_out *o)
{
    d->pk_kind = PK_NONE;
    if (d->halted && d->queued > 0)
        halt_tasks(d, 0); /* a retry or a redelivery after the halt */
    purge(d);
    if ((mask & BP_TO_SINK) && d->c.use_sink && peek_sink(d, now, o))
        return 1;
    if (!(mask & BP_TO_WORKER))
        return 0;
    if (d->nrs) {
        bp_pack_begin(&d->pk, BP_MSG_RESYNC, d->c.batch);
        d->pk_kind = PK_RESYNC;
        if (bp_pack_finish(&d->pk) != BP_OK)
            return 0;
        o->dest = BP_TO_WORKER;
        o->rid = d->rs[0].rid;
        o->rid_len = d->rs[0].len;
        o->data = d->pk.p;
        o->len = d->pk.len;
        return 1;
    }
    if (peek_ctl(d, now, o))
        return 1;
    if (d->cqlen && peek_cancel(d, o))
        return 1;
    int may_send = !d->finished && !d->halted && d->queued > 0 &&
                   (!d->c.use_sink || (d->sink_alive && d->sink_confirmed));
    if (may_send && peek_tasks(d, now, o))
        return 1;
    return peek_spec(d, o);
}

/* The TASKS message from the last peek went to worker w. */
static void commit_tasks(struct bp_dispatch *d, struct wpeer *w, int64_t now)
{
    int64_t dl = d->c.task_deadline_ms > 0 ? now + d->c.task_deadline_ms : 0;
    for (uint32_t i = 0; i < d->pk_n; i++) {
        uint32_t s = d->pk_slots[i];
        struct task *t = &d->t[s];
        t->state = T_OUT;
        t->worker = (int32_t)d->pk_w;
        t->wgen = w->gen;
        t->attempt++;
        t->oatt = t->attempt;
        t->t_out = now;
        t->deadline = dl;
        d->queued--;
        d->out++;
    }
    w_acct(d, w, -1);
    w->credit -= d->pk_n;
    w_acct(d, w, +1);
    w->out += d->pk_n;
    /* Off the queue and the retry list now, so that a loss before the
     * next peek can put a task back without it being there twice. */
    for (uint32_t i = 0; i < d->pk_qpop; i++)
        q_pop_front(d);
    uint32_t j = 0;
    for (uint32_t i = 0; i < d->rqlen; i++) {
        uint32_t s = d->rq[i];
        if (d->t[s].state == T_OUT)
            d->t[s].inq = 0;
        else
            d->rq[j++] = s;
    }
    d->rqlen = j;
    if (dl && d->next_scan == INT64_MAX)
        d->next_scan = now + d->scan_ms;
    /* (peek_tasks took w from the ring's front) */
    if (w->credit && !w->leaving)
        ring_rotate(&d->tr);
    else
        ring_pop(&d->tr);
}

void bp_dispatch_commit(struct bp_dispatch *d, int64_t now)
{
    struct wpeer *w = d->pk_kind >= PK_END ? &d->w[d->pk_w] : NULL;
    switch (d->pk_kind) {
    case PK_BEGIN:
        d->need_begin = 0;
        break;
    case PK_EXTENT:
        if (d->pk_extent > d->announced)
            d->announced = d->pk_extent;
        d->need_extent = 0;
        break;
    case PK_CLOSE:
        d->need_close = 0;
        break;
    case PK_SINK_HB:
        d->sink_next_hb = now + d->c.hb_ivl_ms;
        /* Said again with every ping while input is read: a sink that
         * restarted from its journal knows the batch but not the extent. */
        d->need_extent = !d->input_done;
        /* And CLOSE again when every task is final and a whole ping
         * interval brought no COMPLETE: a CLOSE lost in a sink outage
         * shorter than the liveness (never seen as one) would leave the
         * sink without the batch's size. Not sooner: a CLOSE that crosses
         * the COMPLETE would reopen the batch at a sink that ended it. */
        if (d->c.use_sink && d->input_done && !d->held && !d->complete && d->final_pings++ >= 1)
            d->need_close = 1;
        break;
    case PK_LOST:
        for (uint32_t i = 0; i < d->pk_n; i++) {
            struct task *t = &d->t[d->pk_slots[i]];
            t->state = T_LOSTSENT;
            t->deadline = now + d->c.ack_timeout_ms;
        }
        if (d->next_scan == INT64_MAX)
            d->next_scan = now + d->scan_ms;
        break; /* purge() takes them off the lost list */
    case PK_RESYNC:
        memmove(&d->rs[0], &d->rs[1], (size_t)(d->nrs - 1) * sizeof d->rs[0]);
        d->nrs--;
        break;
    case PK_END:
        set_end(d, w, 0);
        if (!ctl_due(w, now))
            ring_pop(&d->ctl);
        break;
    case PK_BASE:
        w->base_due = 0;
        if (!ctl_due(w, now))
            ring_pop(&d->ctl);
        break;
    case PK_HB:
        w->echo = 0;
        w->next_hb = now + d->c.hb_ivl_ms;
        wl_touch(&d->hbl, d->pk_w);
        if (!ctl_due(w, now))
            ring_pop(&d->ctl);
        break;
    case PK_TASKS:
        commit_tasks(d, w, now);
        break;
    case PK_SPEC:
        commit_spec(d, w, now);
        break;
    case PK_CANCEL:
        commit_cancel(d);
        break;
    default:
        break;
    }
    d->pk_kind = PK_NONE;
}

void bp_dispatch_finish(struct bp_dispatch *d, int reason)
{
    d->finished = 1;
    d->end_reason = reason;
    for (uint32_t i = 0; i < d->nw; i++)
        if (d->w[i].live)
            set_end(d, &d->w[i], 1);
}

void bp_dispatch_stats(const struct bp_dispatch *d, struct bp_dispatch_stats *s)
{
    *s = d->st;
    s->queued = d->queued;
    s->out = d->out;
    s->done_wait = d->done_wait;
    s->held_bytes = d->held_bytes;
    s->sink_alive = d->sink_alive;
    s->sink_confirmed = d->sink_confirmed;
    s->announced = (int64_t)d->announced;
    s->complete = d->complete;
    s->input_done = d->input_done;
    s->finished = d->finished;
    s->all_final = d->input_done && d->held == 0;
    if (d->sink_ok + d->sink_failed == d->next_id && s->all_final && d->sink_ok + d->sink_failed) {
        s->ok = (int64_t)d->sink_ok;
        s->failed = (int64_t)d->sink_failed;
    }
    s->end_pending = (int)d->n_end;
    s->workers_match = d->st.workers - (int)d->nomatch_n;
}

int bp_dispatch_task(const struct bp_dispatch *d, uint64_t id, char *wid, size_t wid_len,
                     int *attempt)
{
    if (wid && wid_len)
        wid[0] = '\0';
    uint32_t s = map_find(d, id);
    if (s == UINT32_MAX)
        return 0;
    const struct task *t = &d->t[s];
    if (attempt)
        *attempt = t->attempt;
    switch (t->state) {
    case T_QUEUED:
        return 1;
    case T_OUT:
        if (wid && wid_len && t->worker >= 0)
            snprintf(wid, wid_len, "%s", d->w[t->worker].id);
        return 2;
    case T_DONE:
    case T_LOSTSENT:
        return 3;
    case T_LOSTQ:
        return 4;
    default:
        return 0;
    }
}

void bp_dispatch_each_worker(const struct bp_dispatch *d,
                             void (*fn)(void *arg, const char *wid, int64_t out, int64_t done),
                             void *arg)
{
    for (uint32_t i = 0; i < d->nw; i++)
        if (d->w[i].live)
            fn(arg, d->w[i].id, d->w[i].out, d->w[i].done);
}

void bp_dispatch_each_labels(const struct bp_dispatch *d,
                             void (*fn)(void *arg, const char *wid, const void *labels, size_t len,
                                        int match),
                             void *arg)
{
    for (uint32_t i = 0; i < d->nw; i++)
        if (d->w[i].live)
            fn(arg, d->w[i].id, d->w[i].labels, d->w[i].labels_len, !d->w[i].nomatch);
}
