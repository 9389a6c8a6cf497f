/* The sink's decisions (bp_sinkm.h): the ventilator's identity, batch
 * life, acceptance through bp_rbook, held results, pings, acks. Owns the
 * held copies and two packs; must not do I/O (but through its ops), read a
 * clock or log. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bp.h"
#include "bp_internal.h" /* bp_printable: no log, no clock */
#include "bp_path.h"
#include "bp_sinkm.h"

void bp_sinkm_init(struct bp_sinkm *sm, const struct bp_sinkm_cfg *cfg,
                   const struct bp_sinkm_ops *ops, void *arg)
{
    memset(sm, 0, sizeof *sm);
    sm->c = *cfg;
    sm->ops = ops;
    sm->arg = arg;
    bp_rbook_init(&sm->rb);
    bp_pack_init(&sm->acks);
    bp_pack_init(&sm->reply);
}

static void hold_release(struct bp_sinkm *sm, int i)
{
    sm->hold_bytes -= zmq_msg_size(&sm->hold[i].m);
    zmq_msg_close(&sm->hold[i].m);
    sm->hold[i] = sm->hold[--sm->nhold];
}

void bp_sinkm_free(struct bp_sinkm *sm)
{
    while (sm->nhold)
        hold_release(sm, sm->nhold - 1);
    free(sm->hold);
    sm->hold = NULL;
    sm->hold_cap = 0;
    bp_rbook_free(&sm->rb);
    bp_pack_free(&sm->acks);
    bp_pack_free(&sm->reply);
}

void bp_sinkm_begin(struct bp_sinkm *sm, uint64_t batch, int restoring, int64_t now)
{
    sm->active = 1;
    sm->batch = batch;
    sm->stale = sm->lost = sm->halted = sm->hold_dropped = 0;
    /* (what is held for this batch waits for its EXTENT) */
    for (int i = 0; i < sm->nhold;)
        if (sm->hold[i].batch != batch)
            hold_release(sm, i);
        else
            i++;
    sm->last_activity = now;
    sm->vent_len = 0;
    sm->acks.n = 0;
    bp_rbook_free(&sm->rb);
    sm->ops->begin(sm->arg, batch, restoring);
}

void bp_sinkm_end(struct bp_sinkm *sm)
{
    sm->active = 0;
}

/* ---- the ventilator ---- */

static int send_to_vent(struct bp_sinkm *sm, struct bp_pack *p)
{
    if (!sm->vent_len || bp_pack_finish(p) != BP_OK)
        return BP_EIO;
    int rc = sm->ops->send(sm->arg, sm->vent, sm->vent_len, p->p, p->len);
    if (rc == BP_EIO) {
        /* Its connection is gone: the next ventilator is adopted at once. */
        sm->ops->note(sm->arg, BP_SM_VENT_GONE, NULL, 0);
        sm->vent_len = 0;
    }
    return rc;
}

static void adopt_ventilator(struct bp_sinkm *sm, const uint8_t *rid, size_t n, int64_t now)
{
    if (n == 0 || n > sizeof sm->vent)
        return;
    memcpy(sm->vent, rid, n);
    sm->vent_len = n;
    sm->vent_heard = now;
    sm->ops->note(sm->arg, BP_SM_VENT, (const char *)sm->vent, (int64_t)n);
}

static int is_vent(const struct bp_sinkm *sm, const uint8_t *rid, size_t n)
{
    return sm->vent_len && n == sm->vent_len && !memcmp(rid, sm->vent, n);
}

/* Whether the ventilator we know is still there: heard from within the
 * liveness time, and its connection still open (a probe heartbeat to a
 * closed one fails at once: ROUTER_MANDATORY). */
static int vent_alive(struct bp_sinkm *sm, int64_t now)
{
    if (!sm->vent_len)
        return 0;
    if (now - sm->vent_heard > sm->c.dead_ms) {
        sm->vent_len = 0;
        return 0;
    }
    bp_pack_begin(&sm->reply, BP_MSG_HEARTBEAT, sm->batch);
    bp_pack_u64(&sm->reply, 0);
    bp_pack_u64(&sm->reply, 0);
    send_to_vent(sm, &sm->reply); /* clears vent_len when it is gone */
    return sm->vent_len != 0;
}

/* Whether the sender may speak for the ventilator (BEGIN, CLOSE, EXTENT,
 * its own results, being the one acknowledged). With CURVE: only the
 * host's own key. In plain mode: the known ventilator, or anyone once it
 * is gone (a restarted one); nobody can take over from a live one. */
static int may_control(struct bp_sinkm *sm, const uint8_t *rid, size_t n, int host_key, int64_t now)
{
    if (host_key >= 0)
        return host_key;
    return is_vent(sm, rid, n) || !vent_alive(sm, now);
}

static void forged(struct bp_sinkm *sm, const char *what)
{
    sm->forged++;
    sm->ops->note(sm->arg, BP_SM_FORGED, what, sm->forged);
}

/* ---- acknowledgements ---- */

void bp_sinkm_flush_acks(struct bp_sinkm *sm)
{
    if (!sm->acks.n || !sm->vent_len)
        return;
    /* A lost ack costs a redelivery, which is acknowledged again. */
    send_to_vent(sm, &sm->acks);
    bp_pack_begin(&sm->acks, BP_MSG_ACK, sm->batch);
}

static void ack(struct bp_sinkm *sm, uint64_t id, uint16_t attempt, uint8_t kind)
{
    if (sm->acks.n >= BP_MAX_PENDING_ACKS) {
        if (!sm->vent_len) {
            sm->acks_dropped++;
            return;
        }
        sm->ops->acks_full(sm->arg);
        if (sm->acks.n >= BP_MAX_PENDING_ACKS) {
            sm->acks_dropped++; /* (not on record yet: comes again) */
            return;
        }
    }
    if (sm->acks.n == 0)
        bp_pack_begin(&sm->acks, BP_MSG_ACK, sm->batch);
    bp_pack_ack(&sm->acks, id, attempt, kind);
    /* (with a journal, a full pack waits for the turn's commit) */
    if (sm->acks.len >= BP_PACK_BYTES && sm->c.eager_acks)
        bp_sinkm_flush_acks(sm);
}

void bp_sinkm_send_complete(struct bp_sinkm *sm, int64_t ok, int64_t failed)
{
    if (!sm->vent_len)
        return;
    bp_pack_begin(&sm->reply, BP_MSG_COMPLETE, sm->batch);
    bp_pack_u64(&sm->reply, (uint64_t)ok);
    bp_pack_u64(&sm->reply, (uint64_t)failed);
    send_to_vent(sm, &sm->reply);
}

/* ---- results ---- */

/* One result record: the book decides, the caller's result() acts.
 * Returns the verdict. */
static int on_result(struct bp_sinkm *sm, const struct bp_result_rec *r, const char *wid)
{
    char why[BP_NAME_MAX * 4 + 64];
    struct bp_result_rec fe;
    if ((r->flags & BP_RF_FILES) && (r->flags & BP_RF_FINAL) && r->status == BP_ST_OK &&
        sm->ops->files && bp_rbook_place(&sm->rb, r->id) == BP_RB_ACCEPT) {
        int c = sm->ops->files(sm->arg, r, why, sizeof why);
        if (c == BP_SM_FILES_TORN)
            return 0; /* not acknowledged: it comes again */
        if (c == BP_SM_FILES_CONFLICT) {
            /* Nothing is overwritten: the task fails, for good. */
            fe = *r;
            fe.status = BP_ST_FILEERR;
            fe.code = BP_FE_EXISTS;
            fe.data = (const uint8_t *)why;
            fe.len = (uint32_t)strnlen(why, sizeof why);
            r = &fe;
        }
    }
    uint8_t kind = BP_ACK_OK;
    int v = bp_rbook_result(&sm->rb, r->id, r->attempt, r->status == BP_ST_OK,
                            (r->flags & BP_RF_FINAL) != 0, &kind);
    if (v == BP_RB_EARLY || v == BP_RB_FOREIGN)
        return v; /* never written, never counted as a result */
    if (v == BP_RB_NOMEM) {
        sm->malformed++;
        return v;
    }
    if (v == BP_RB_ACCEPT && r->status == BP_ST_LOST)
        sm->lost++;
    if (v == BP_RB_ACCEPT && r->status == BP_ST_HALTED)
        sm->halted++;
    sm->ops->result(sm->arg, r, wid, v);
    ack(sm, r->id, r->attempt, kind);
    return v;
}

/* The records of a RESULTS message with ids in [from, lim). vent: the
 * sender speaks for the ventilator (only it gives a task up as lost or
 * halted). Returns how many records are EARLY (to be held). */
static int on_results(struct bp_sinkm *sm, const struct bp_msg *m, int vent, uint64_t from,
                      uint64_t lim)
{
    uint8_t wl;
    const char *w = bp_msg_wid(m, &wl);
    /* Peer-chosen: made printable before it reaches a log or a file. */
    char wid[BP_ID_MAX * 4 + 1];
    if (wl)
        bp_printable(wid, sizeof wid, w, wl);
    else
        snprintf(wid, sizeof wid, "?");
    size_t off = 0;
    struct bp_result_rec r;
    int early = 0;
    while (bp_msg_next_result(m, &off, &r)) {
        if (r.id < from || r.id >= lim)
            continue;
        if ((r.status == BP_ST_LOST || r.status == BP_ST_HALTED) && !vent) {
            forged(sm, "a 'lost'/'halted' result");
            continue;
        }
        if (on_result(sm, &r, wid) == BP_RB_EARLY)
            early++;
    }
    return early;
}

/* ---- held results ---- */

/* Records of a held message still waiting: [from, lim). */
static int64_t held_waiting(const struct bp_sinkm *sm, const struct bp_sinkm_held *h)
{
    struct bp_msg m;
    if (bp_msg_decode(&m, zmq_msg_data((zmq_msg_t *)&h->m), zmq_msg_size((zmq_msg_t *)&h->m),
                      sm->c.max_rec) != BP_OK)
        return 0;
    size_t off = 0;
    struct bp_result_rec r;
    int64_t n = 0;
    while (bp_msg_next_result(&m, &off, &r))
        n += r.id >= h->from && r.id < h->lim;
    return n;
}

/* Gives up on held entry i: what still waits there is dropped, counted
 * (as stale when its batch never began). */
static void hold_drop(struct bp_sinkm *sm, int i, const char *why)
{
    int64_t n = held_waiting(sm, &sm->hold[i]);
    if (!sm->active || sm->hold[i].batch != sm->batch) {
        sm->stale += n;
    } else {
        if (n)
            sm->ops->note(sm->arg, BP_SM_DROPPED, why, n);
        sm->hold_dropped += n;
    }
    hold_release(sm, i);
}

/* Holds a RESULTS message of batch whose records in [from, lim) (early of
 * them) cannot be placed yet. A copy of its own: a shared one could pin a
 * whole receive buffer. */
static void hold_msg(struct bp_sinkm *sm, zmq_msg_t *raw, int vent, int64_t early, uint64_t batch,
                     uint64_t from, uint64_t lim, int64_t now)
{
    size_t sz = zmq_msg_size(raw);
    if (sm->nhold == sm->hold_cap && sm->hold_cap < BP_SINKM_HOLD_MAX) {
        int cap = sm->hold_cap ? sm->hold_cap * 2 : 64;
        struct bp_sinkm_held *p = realloc(sm->hold, (size_t)cap * sizeof *p);
        if (p) {
            sm->hold = p;
            sm->hold_cap = cap;
        }
    }
    struct bp_sinkm_held *h = sm->nhold < sm->hold_cap ? &sm->hold[sm->nhold] : NULL;
    if (!h || sm->hold_bytes + sz > BP_SINKM_HOLD_BYTES || zmq_msg_init_size(&h->m, sz) != 0) {
        if (sm->active && batch == sm->batch) {
            sm->ops->note(sm->arg, BP_SM_DROPPED, "too many held", early);
            sm->hold_dropped += early;
        } else {
            sm->stale += early;
        }
        return;
    }
    if (sz)
        memcpy(zmq_msg_data(&h->m), zmq_msg_data(raw), sz);
    h->batch = batch;
    h->from = from;
    h->lim = lim;
    h->since = now;
    h->vent = vent;
    sm->nhold++;
    sm->hold_bytes += sz;
}

/* The extent grew (EXTENT, CLOSE): held records below it are offered again. */
static void hold_offer(struct bp_sinkm *sm)
{
    for (int i = 0; i < sm->nhold;) {
        struct bp_sinkm_held *h = &sm->hold[i];
        if (h->batch != sm->batch) {
            i++;
            continue;
        }
        uint64_t to = sm->rb.extent < h->lim ? sm->rb.extent : h->lim;
        struct bp_msg m;
        if (to > h->from &&
            bp_msg_decode(&m, zmq_msg_data(&h->m), zmq_msg_size(&h->m), sm->c.max_rec) == BP_OK) {
            on_results(sm, &m, h->vent, h->from, to);
            h->from = to;
        }
        if (held_waiting(sm, h) == 0)
            hold_release(sm, i); /* all taken (moves the last entry to i) */
        else if (sm->rb.total >= 0 || h->from >= h->lim)
            hold_drop(sm, i, "beyond the batch");
        else
            i++;
    }
}

void bp_sinkm_on_timer(struct bp_sinkm *sm, int64_t now)
{
    /* Held longer than the liveness time: not waiting for an EXTENT in
     * flight; nobody announced them. */
    for (int i = 0; i < sm->nhold;) {
        if (now - sm->hold[i].since > sm->c.dead_ms)
            hold_drop(sm, i, "held too long");
        else
            i++;
    }
}

int64_t bp_sinkm_next_deadline(const struct bp_sinkm *sm)
{
    int64_t n = INT64_MAX;
    for (int i = 0; i < sm->nhold; i++)
        if (sm->hold[i].since + sm->c.dead_ms + 1 < n)
            n = sm->hold[i].since + sm->c.dead_ms + 1;
    return n;
}

/* ---- control and pings ---- */

/* BEGIN, CLOSE or EXTENT from a sender that may speak for the ventilator,
 * on the current batch. */
static void on_control(struct bp_sinkm *sm, const uint8_t *rid, size_t rid_len,
                       const struct bp_msg *m, int64_t now)
{
    if (!is_vent(sm, rid, rid_len))
        adopt_ventilator(sm, rid, rid_len, now);
    if (m->type == BP_MSG_EXTENT) {
        int rc = bp_rbook_extent(&sm->rb, bp_msg_u64(m, 0));
        if (rc < 0)
            forged(sm, "an EXTENT over the batch size");
        else if (rc > 0 && sm->nhold)
            hold_offer(sm);
        return;
    }
    if (m->type != BP_MSG_CLOSE)
        return;
    int rc = bp_rbook_close(&sm->rb, bp_msg_u64(m, 0));
    if (rc < 0) {
        /* A batch's size is said once and never changes. */
        forged(sm, "a CLOSE with another batch size");
        return;
    }
    if (rc == 0)
        return;
    sm->ops->total(sm->arg, sm->rb.total);
    if (sm->nhold)
        hold_offer(sm);
}

static void on_ping(struct bp_sinkm *sm, const uint8_t *rid, size_t rid_len, const struct bp_msg *m,
                    int host_key, int64_t now)
{
    /* Answer a ping at once: the ventilator measures us by it. The sender
     * of a ping on the current batch is its ventilator. */
    uint64_t ping = bp_msg_u64(m, 0);
    if (!ping)
        return;
    int ours = sm->active && m->batch == sm->batch;
    if (ours && !is_vent(sm, rid, rid_len) && may_control(sm, rid, rid_len, host_key, now))
        adopt_ventilator(sm, rid, rid_len, now);
    /* Batch 0: "I do not know that batch", so its ventilator says BEGIN
     * (and what it read, and CLOSE) again. */
    bp_pack_begin(&sm->reply, BP_MSG_HEARTBEAT, ours ? m->batch : 0);
    bp_pack_u64(&sm->reply, 0);
    bp_pack_u64(&sm->reply, ping);
    if (bp_pack_finish(&sm->reply) == BP_OK)
        sm->ops->send(sm->arg, rid, rid_len, sm->reply.p, sm->reply.len);
}

/* Whether a control message of another batch (or of none yet) starts
 * one: BEGIN does; CLOSE does when nothing is active (a sink restarted
 * without its journal); the rest is stale. Returns 1 when m belongs to
 * the batch now. */
static int adopt_batch(struct bp_sinkm *sm, const struct bp_msg *m, int64_t now)
{
    if (!sm->active) {
        if (m->type != BP_MSG_BEGIN && m->type != BP_MSG_CLOSE) {
            sm->stale++;
            return 0;
        }
        bp_sinkm_begin(sm, m->batch, 0, now);
        return 1;
    }
    if (m->batch == sm->batch)
        return 1;
    if (m->type != BP_MSG_BEGIN) {
        sm->stale++;
        return 0;
    }
    if (sm->rb.ok + sm->rb.failed_n > 0) {
        sm->ops->note(sm->arg, BP_SM_BEGIN_OVER, NULL, (int64_t)m->batch);
        sm->ops->abandon(sm->arg);
    }
    bp_sinkm_begin(sm, m->batch, 0, now);
    return 1;
}

void bp_sinkm_on_msg(struct bp_sinkm *sm, const uint8_t *rid, size_t rid_len, zmq_msg_t *raw,
                     const struct bp_msg *m, int host_key, int64_t now)
{
    if (is_vent(sm, rid, rid_len))
        sm->vent_heard = now;
    if (m->type == BP_MSG_HEARTBEAT) {
        on_ping(sm, rid, rid_len, m, host_key, now);
        return;
    }
    if (m->type != BP_MSG_RESULTS && m->type != BP_MSG_BEGIN && m->type != BP_MSG_CLOSE &&
        m->type != BP_MSG_EXTENT) {
        sm->malformed++;
        return;
    }
    int control = m->type != BP_MSG_RESULTS;
    if (control && !may_control(sm, rid, rid_len, host_key, now)) {
        forged(sm, m->type == BP_MSG_BEGIN   ? "a BEGIN"
                   : m->type == BP_MSG_CLOSE ? "a CLOSE"
                                             : "an EXTENT");
        return;
    }
    int vent = host_key >= 0 ? host_key : is_vent(sm, rid, rid_len);
    if (!control && !sm->active) {
        /* No batch begun: a sink restarted without its journal, while the
         * workers' results for tasks already out keep coming; the
         * ventilator says BEGIN again within a heartbeat. Held, bounded;
         * made-up ones expire as stale, unacknowledged. */
        hold_msg(sm, raw, vent, m->n, m->batch, 0, UINT64_MAX, now);
        return;
    }
    if (!adopt_batch(sm, m, now))
        return;
    sm->last_activity = now;
    if (control) {
        on_control(sm, rid, rid_len, m, now);
        return;
    }
    int early = on_results(sm, m, vent, 0, UINT64_MAX);
    if (early)
        hold_msg(sm, raw, vent, early, sm->batch, sm->rb.extent,
                 sm->rb.extent + BP_RBOOK_EARLY_WINDOW, now);
}
