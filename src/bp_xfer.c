/* The worker's file transfers as a state machine (bp_xfer.h): downloads,
 * their requests and the fetch window; uploads, their chunks and the put
 * window. Owns only its tables; must not touch a socket, a file or the
 * clock, and must not log. */
#include <stdlib.h>
#include <string.h>

#include "bp_xfer.h"

/* A download (ventilator -> worker). */
struct get {
    int used;
    uint8_t kind;
    uint16_t attempt;
    uint64_t id, size;
    uint64_t next; /* first byte not asked for yet */
    int asked_all;
};

/* A request: out (sent, unanswered) or due (to send: new or given up). */
enum { R_FREE = 0, R_DUE, R_OUT };

struct req {
    int state;
    int h; /* the download, -1 once it was forgotten */
    int batch;
    uint8_t kind;
    uint16_t attempt;
    uint64_t id, off;
    uint32_t len;
    int64_t sent;
};

/* An upload (worker -> sink). */
struct put {
    int used;
    uint8_t idx;
    uint16_t attempt;
    int sent_once;
    uint64_t id, size;
    uint64_t next;     /* next byte to send */
    uint64_t received; /* the sink's word: written contiguously from 0 */
    uint64_t hi;       /* highest end ever sent */
    int64_t heard;     /* its last PUTACK */
    int64_t busy_until;
};

/* A PUT chunk without its PUTACK. */
struct pchunk {
    int used;
    int h;
    uint64_t off, end;
    int64_t sent;
};

struct bp_xfer {
    struct bp_xfer_cfg c;
    struct get *gets;
    struct put *puts;
    struct req *reqs;      /* c.fetch_window places */
    struct pchunk *chunks; /* c.put_window places */
    uint32_t got;
    int fetch_out, put_out;
    int batch;          /* stamp of the last bp_xfer_fetches() */
    int rr_get, rr_put; /* whose turn */
    int last_chunk;     /* the last chunk handed out, or -1 */
    uint64_t last_next; /* its upload's next before it */
    int64_t stale, refetched, resent;
};

void bp_xfer_defaults(struct bp_xfer_cfg *c, int hb_ms, int liveness, int max_get, int max_put)
{
    c->hb_ms = hb_ms;
    c->liveness = liveness;
    c->max_get = max_get;
    c->max_put = max_put;
    c->chunk = BP_CHUNK_BYTES;
    c->fetch_window = BP_FETCH_WINDOW;
    c->put_window = BP_PUT_WINDOW;
}

struct bp_xfer *bp_xfer_new(const struct bp_xfer_cfg *cfg)
{
    if (cfg->hb_ms <= 0 || cfg->liveness <= 0 || cfg->max_get <= 0 || cfg->max_put <= 0 ||
        cfg->chunk == 0 || cfg->chunk > BP_CHUNK_BYTES || cfg->fetch_window <= 0 ||
        cfg->put_window <= 0)
        return NULL;
    struct bp_xfer *x = calloc(1, sizeof *x);
    if (!x)
        return NULL;
    x->c = *cfg;
    x->gets = calloc((size_t)cfg->max_get, sizeof *x->gets);
    x->puts = calloc((size_t)cfg->max_put, sizeof *x->puts);
    x->reqs = calloc((size_t)cfg->fetch_window, sizeof *x->reqs);
    x->chunks = calloc((size_t)cfg->put_window, sizeof *x->chunks);
    x->last_chunk = -1;
    if (!x->gets || !x->puts || !x->reqs || !x->chunks)
        bp_xfer_destroy(&x);
    return x;
}

void bp_xfer_destroy(struct bp_xfer **x)
{
    if (!x || !*x)
        return;
    free((*x)->gets);
    free((*x)->puts);
    free((*x)->reqs);
    free((*x)->chunks);
    free(*x);
    *x = NULL;
}

static int64_t dead_ms(const struct bp_xfer *x)
{
    return (int64_t)x->c.hb_ms * x->c.liveness;
}

/* ---- downloads ---- */

int bp_xfer_get(struct bp_xfer *x, uint8_t kind, uint64_t id, uint16_t attempt, uint64_t size)
{
    for (int h = 0; h < x->c.max_get; h++) {
        struct get *g = &x->gets[h];
        if (g->used)
            continue;
        *g = (struct get){.used = 1, .kind = kind, .attempt = attempt, .id = id, .size = size};
        return h;
    }
    return -1;
}

static void req_free(struct bp_xfer *x, struct req *r)
{
    if (r->state == R_OUT)
        x->fetch_out--;
    r->state = R_FREE;
}

void bp_xfer_get_cancel(struct bp_xfer *x, int h)
{
    if (h < 0 || h >= x->c.max_get || !x->gets[h].used)
        return;
    x->gets[h].used = 0;
    for (int i = 0; i < x->c.fetch_window; i++) {
        struct req *r = &x->reqs[i];
        if (r->state == R_FREE || r->h != h)
            continue;
        if (r->state == R_DUE)
            req_free(x, r);
        else
            r->h = -1; /* out: keeps its place until answered or given up */
    }
}

void bp_xfer_new_session(struct bp_xfer *x)
{
    memset(x->gets, 0, (size_t)x->c.max_get * sizeof *x->gets);
    memset(x->reqs, 0, (size_t)x->c.fetch_window * sizeof *x->reqs);
    x->fetch_out = 0;
    x->got = 0;
}

/* Whether download h still has requests in the table. */
static int get_pending(const struct bp_xfer *x, int h)
{
    for (int i = 0; i < x->c.fetch_window; i++)
        if (x->reqs[i].state != R_FREE && x->reqs[i].h == h)
            return 1;
    return 0;
}

static struct req *req_find(struct bp_xfer *x, const struct bp_chunk *c)
{
    for (int i = 0; i < x->c.fetch_window; i++) {
        struct req *r = &x->reqs[i];
        if (r->state != R_FREE && r->kind == c->kind && r->id == c->id &&
            r->attempt == c->attempt && r->off == c->offset)
            return r;
    }
    return NULL;
}

static void get_fail(struct bp_xfer *x, int h, int code, uint32_t err, struct bp_xfer_ev *ev)
{
    bp_xfer_get_cancel(x, h);
    ev->what |= BP_XF_GET_FAIL;
    ev->h = h;
    ev->code = code;
    ev->err = err;
}

void bp_xfer_on_chunk(struct bp_xfer *x, const struct bp_chunk *c, int64_t now,
                      struct bp_xfer_ev *ev)
{
    (void)now;
    memset(ev, 0, sizeof *ev);
    ev->h = -1;
    struct req *r = req_find(x, c);
    if (!r) {
        x->stale++;
        return;
    }
    if (r->state == R_OUT) /* (a given-up one was counted then) */
        x->got++;
    int h = r->h;
    uint32_t want = r->len;
    req_free(x, r);
    if (h < 0) /* its download was forgotten */
        return;
    const struct get *g = &x->gets[h];
    if (c->status != BP_CK_DATA) {
        get_fail(x, h, c->status, c->code, ev);
        return;
    }
    uint64_t left = g->size - c->offset;
    uint32_t exp = left < want ? (uint32_t)left : want;
    if (c->len != exp) { /* short before the end, or longer than asked */
        get_fail(x, h, BP_CK_CHANGED, 0, ev);
        return;
    }
    ev->what = BP_XF_DATA;
    ev->h = h;
    ev->off = c->offset;
    ev->data = c->data;
    ev->len = c->len;
    if (g->asked_all && !get_pending(x, h)) {
        ev->what |= BP_XF_GET_DONE;
        x->gets[h].used = 0;
    }
}

static void rec_of(const struct req *r, struct bp_fetch_rec *f)
{
    *f = (struct bp_fetch_rec){
        .id = r->id, .attempt = r->attempt, .kind = r->kind, .len = r->len, .offset = r->off};
}

/* A new request of the next download in turn with bytes left to ask for,
 * into free place r. Returns 0 when none has. */
static int req_new(struct bp_xfer *x, struct req *r)
{
    for (int k = 0; k < x->c.max_get; k++) {
        int h = (x->rr_get + k) % x->c.max_get;
        struct get *g = &x->gets[h];
        if (!g->used || g->asked_all)
            continue;
        uint64_t left = g->size - g->next;
        uint32_t len = left < x->c.chunk ? (uint32_t)left : x->c.chunk;
        *r = (struct req){.state = R_DUE,
                          .h = h,
                          .kind = g->kind,
                          .attempt = g->attempt,
                          .id = g->id,
                          .off = g->next,
                          .len = len ? len : 1}; /* an empty file: one request, no data */
        g->next += len;
        g->asked_all = g->next >= g->size;
        x->rr_get = (h + 1) % x->c.max_get;
        return 1;
    }
    return 0;
}

int bp_xfer_fetches(struct bp_xfer *x, int64_t now, struct bp_fetch_rec *out, int max)
{
    int n = 0;
    x->batch++;
    /* Given-up requests first, then new ones, while the window has room. */
    for (int pass = 0; pass < 2; pass++) {
        for (int i = 0; i < x->c.fetch_window && n < max; i++) {
            struct req *r = &x->reqs[i];
            if (x->fetch_out >= x->c.fetch_window)
                return n;
            if (pass == 1 && r->state == R_FREE && !req_new(x, r))
                return n;
            if (r->state != R_DUE)
                continue;
            r->state = R_OUT;
            r->sent = now;
            r->batch = x->batch;
            x->fetch_out++;
            rec_of(r, &out[n++]);
        }
    }
    return n;
}

void bp_xfer_fetch_unsent(struct bp_xfer *x)
{
    for (int i = 0; i < x->c.fetch_window; i++) {
        struct req *r = &x->reqs[i];
        if (r->state == R_OUT && r->batch == x->batch) {
            r->state = R_DUE;
            x->fetch_out--;
        }
    }
}

uint32_t bp_xfer_got(const struct bp_xfer *x)
{
    return x->got;
}

/* ---- uploads ---- */

int bp_xfer_put(struct bp_xfer *x, uint64_t id, uint16_t attempt, uint8_t idx, uint64_t size,
                int64_t now)
{
    for (int h = 0; h < x->c.max_put; h++) {
        struct put *p = &x->puts[h];
        if (p->used)
            continue;
        *p = (struct put){
            .used = 1, .idx = idx, .attempt = attempt, .id = id, .size = size, .heard = now};
        return h;
    }
    return -1;
}

/* Drops upload h's chunks in flight (all, or those ending by upto). */
static void chunks_drop(struct bp_xfer *x, int h, int all, uint64_t upto)
{
    for (int i = 0; i < x->c.put_window; i++) {
        struct pchunk *c = &x->chunks[i];
        if (c->used && c->h == h && (all || c->end <= upto)) {
            c->used = 0;
            x->put_out--;
            if (x->last_chunk == i)
                x->last_chunk = -1;
        }
    }
}

void bp_xfer_put_cancel(struct bp_xfer *x, int h)
{
    if (h < 0 || h >= x->c.max_put || !x->puts[h].used)
        return;
    chunks_drop(x, h, 1, 0);
    x->puts[h].used = 0;
}

/* Whether upload p has a chunk to send now. */
static int put_ready(const struct put *p, int64_t now)
{
    if (!p->used || now < p->busy_until)
        return 0;
    return p->next < p->size || (p->size == 0 && !p->sent_once);
}

int bp_xfer_next_put(struct bp_xfer *x, int64_t now, int *h, uint64_t *off, uint32_t *len)
{
    if (x->put_out >= x->c.put_window)
        return 0;
    int slot = -1;
    for (int i = 0; i < x->c.put_window && slot < 0; i++)
        if (!x->chunks[i].used)
            slot = i;
    for (int k = 0; k < x->c.max_put && slot >= 0; k++) {
        int u = (x->rr_put + k) % x->c.max_put;
        struct put *p = &x->puts[u];
        if (!put_ready(p, now))
            continue;
        uint64_t left = p->size - p->next;
        uint32_t l = left < x->c.chunk ? (uint32_t)left : x->c.chunk;
        x->chunks[slot] =
            (struct pchunk){.used = 1, .h = u, .off = p->next, .end = p->next + l, .sent = now};
        x->put_out++;
        x->last_chunk = slot;
        x->last_next = p->next;
        p->busy_until = 0;
        *h = u;
        *off = p->next;
        *len = l;
        p->next += l;
        p->sent_once = 1;
        if (p->next > p->hi)
            p->hi = p->next;
        x->rr_put = (u + 1) % x->c.max_put;
        return 1;
    }
    return 0;
}

void bp_xfer_put_unsent(struct bp_xfer *x)
{
    if (x->last_chunk < 0)
        return;
    struct pchunk *c = &x->chunks[x->last_chunk];
    x->puts[c->h].next = x->last_next;
    c->used = 0;
    x->put_out--;
    x->last_chunk = -1;
}

static struct put *put_find(struct bp_xfer *x, const struct bp_putack_rec *a, int *h)
{
    for (int u = 0; u < x->c.max_put; u++) {
        struct put *p = &x->puts[u];
        if (p->used && p->id == a->id && p->attempt == a->attempt && p->idx == a->idx) {
            *h = u;
            return p;
        }
    }
    return NULL;
}

/* Starts upload h over from the sink's received (silence, BUSY, a sink
 * that lost bytes). */
static void put_rewind(struct bp_xfer *x, int h, uint64_t received)
{
    struct put *p = &x->puts[h];
    chunks_drop(x, h, 1, 0);
    p->received = received;
    p->next = received;
    x->resent++;
}

void bp_xfer_on_putack(struct bp_xfer *x, const struct bp_putack_rec *a, int64_t now,
                       struct bp_xfer_ev *ev)
{
    memset(ev, 0, sizeof *ev);
    int h = -1;
    struct put *p = put_find(x, a, &h);
    ev->h = h;
    /* Unknown, never sent, or more than was ever sent: not about us. */
    if (!p || !p->sent_once || (a->status == BP_PA_OK && a->received > p->hi)) {
        x->stale++;
        return;
    }
    p->heard = now;
    if (a->status != BP_PA_OK && a->code == BP_FE_BUSY) {
        put_rewind(x, h, 0);
        p->busy_until = now + x->c.hb_ms;
        return;
    }
    if (a->status != BP_PA_OK) {
        bp_xfer_put_cancel(x, h);
        ev->what = BP_XF_PUT_FAIL;
        ev->err = a->code;
        return;
    }
    if (a->received < p->received) {
        put_rewind(x, h, a->received); /* the sink lost bytes: from there */
        return;
    }
    p->received = a->received;
    chunks_drop(x, h, 0, a->received);
    if (p->next < p->received)
        p->next = p->received;
    if (p->received == p->size) {
        bp_xfer_put_cancel(x, h);
        ev->what = BP_XF_PUT_DONE;
    }
}

/* ---- time ---- */

/* When upload h's silence ends it (INT64_MAX: nothing in flight). */
static int64_t put_silence_end(const struct bp_xfer *x, int h)
{
    int64_t oldest = INT64_MAX;
    for (int i = 0; i < x->c.put_window; i++)
        if (x->chunks[i].used && x->chunks[i].h == h && x->chunks[i].sent < oldest)
            oldest = x->chunks[i].sent;
    if (oldest == INT64_MAX)
        return INT64_MAX;
    int64_t from = x->puts[h].heard > oldest ? x->puts[h].heard : oldest;
    return from + dead_ms(x);
}

void bp_xfer_on_timer(struct bp_xfer *x, int64_t now)
{
    for (int i = 0; i < x->c.fetch_window; i++) {
        struct req *r = &x->reqs[i];
        if (r->state != R_OUT || now < r->sent + dead_ms(x))
            continue;
        /* Given up: counted as settled, so the ventilator's count and ours
         * agree; asked again unless its download is gone. */
        x->got++;
        x->refetched++;
        req_free(x, r);
        if (r->h >= 0)
            r->state = R_DUE;
    }
    for (int h = 0; h < x->c.max_put; h++) {
        struct put *p = &x->puts[h];
        if (p->used && now >= put_silence_end(x, h))
            put_rewind(x, h, p->received);
        if (p->busy_until && now >= p->busy_until)
            p->busy_until = 0; /* due now: bp_xfer_next_put() takes it */
    }
}

int64_t bp_xfer_next_deadline(const struct bp_xfer *x)
{
    int64_t next = INT64_MAX;
    for (int i = 0; i < x->c.fetch_window; i++) {
        const struct req *r = &x->reqs[i];
        if (r->state == R_OUT && r->sent + dead_ms(x) < next)
            next = r->sent + dead_ms(x);
    }
    for (int h = 0; h < x->c.max_put; h++) {
        const struct put *p = &x->puts[h];
        if (!p->used)
            continue;
        int64_t s = put_silence_end(x, h);
        if (s < next)
            next = s;
        if (p->busy_until > 0 && p->busy_until < next)
            next = p->busy_until;
    }
    return next;
}

void bp_xfer_stats(const struct bp_xfer *x, struct bp_xfer_stats *s)
{
    memset(s, 0, sizeof *s);
    for (int h = 0; h < x->c.max_get; h++)
        s->gets += x->gets[h].used;
    for (int h = 0; h < x->c.max_put; h++)
        s->puts += x->puts[h].used;
    s->fetch_out = x->fetch_out;
    s->put_out = x->put_out;
    s->stale = x->stale;
    s->refetched = x->refetched;
    s->resent = x->resent;
}
