/* The ventilator's batch policy (bp_vbatch.h): waits, give-ups, --halt,
 * the end of the batch. Drives the dispatcher; must not do I/O, read a
 * clock or log (it leaves notes). */
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "bp.h"
#include "bp_frame.h"
#include "bp_vbatch.h"

#define NOTE_EVERY_MS 5000

static void note(struct bp_vbatch *b, int what, int64_t x, int64_t y)
{
    if (b->nnotes < (int)(sizeof b->notes / sizeof b->notes[0]))
        b->notes[b->nnotes++] = (struct bp_vb_note_rec){.what = what, .a = x, .b = y};
}

void bp_vbatch_init(struct bp_vbatch *b, const struct bp_vbatch_cfg *cfg, int64_t now)
{
    memset(b, 0, sizeof *b);
    b->c = *cfg;
    b->start = now;
    b->wait_end = cfg->wait_timeout_ms ? now + cfg->wait_timeout_ms : INT64_MAX;
    b->next_note = now + NOTE_EVERY_MS;
    b->no_worker_since = now;
    b->waiting = cfg->wait_workers > 0;
    b->result = BP_OK;
}

/* Stops the run early with result rc: END(stopping). The sink learns the
 * size read so far, unless the batch is to be resumed (then it is bigger). */
static void stop_with(struct bp_vbatch *b, struct bp_dispatch *d, int64_t now, int rc, int close_it)
{
    struct bp_dispatch_stats s;
    bp_dispatch_stats(d, &s);
    b->stopping = 1;
    b->stop_at = now;
    if (!s.input_done && close_it)
        bp_dispatch_input_done(d);
    bp_dispatch_finish(d, BP_END_STOPPING);
    b->result = rc;
}

void bp_vbatch_stop(struct bp_vbatch *b, struct bp_dispatch *d, int64_t now)
{
    if (b->stopping)
        return;
    struct bp_dispatch_stats s;
    bp_dispatch_stats(d, &s);
    note(b, BP_VB_STOPPING, s.added - s.ok - s.failed, s.added);
    stop_with(b, d, now, BP_EINCOMPLETE, !b->c.resumable);
}

void bp_vbatch_input_end(struct bp_vbatch *b, struct bp_dispatch *d, int64_t now, int rc, int fatal)
{
    b->eof = 1;
    if (fatal) {
        stop_with(b, d, now, rc, 1);
        return;
    }
    bp_dispatch_input_done(d);
    if (rc != BP_EXIT_INFO)
        b->result = rc;
}

int bp_vbatch_may_read(const struct bp_vbatch *b)
{
    return !b->stopping && !b->waiting && !b->eof;
}

int bp_vbatch_before(struct bp_vbatch *b, struct bp_dispatch *d, int64_t now)
{
    struct bp_dispatch_stats s;
    bp_dispatch_stats(d, &s);
    if (b->waiting && s.workers_match >= b->c.wait_workers) {
        b->waiting = 0;
        note(b, BP_VB_CONNECTED, s.workers_match, 0);
    }
    if (b->waiting && now >= b->next_note) {
        note(b, BP_VB_WAITING, s.workers_match, b->c.wait_workers);
        b->next_note = now + NOTE_EVERY_MS;
    }
    if (!b->stopping && b->waiting && now >= b->wait_end) {
        note(b, BP_VB_NO_WORKERS, s.workers_match, b->c.wait_workers);
        return BP_ETIMEDOUT;
    }
    b->sink_seen |= s.sink_alive;
    if (!b->stopping && b->c.use_sink && !b->sink_seen && now >= b->wait_end) {
        note(b, BP_VB_NO_SINK, 0, 0);
        return BP_ETIMEDOUT;
    }
    /* Work waiting and nobody to do it: bounded like every other wait
     * (no sink yet is reported as such). */
    if (s.workers_match > 0 || s.queued == 0 || (b->c.use_sink && !b->sink_seen))
        b->no_worker_since = now;
    if (!b->stopping && !b->waiting && b->c.wait_timeout_ms &&
        now - b->no_worker_since >= b->c.wait_timeout_ms) {
        note(b, BP_VB_NO_WORKER_NOW, s.queued, 0);
        stop_with(b, d, now, BP_ETIMEDOUT, !b->c.resumable);
    }
    return BP_OK;
}

/* --halt: N failures, or N percent of the tasks done once 10 are. */
static int should_halt(const struct bp_vbatch_cfg *c, const struct bp_dispatch_stats *s)
{
    if (!c->halt_when || s->failed == 0)
        return 0;
    if (!c->halt_pct)
        return s->failed >= c->halt_fail;
    int64_t done = s->ok + s->failed;
    return done >= 10 && s->failed * 100 >= (int64_t)c->halt_fail * done;
}

void bp_vbatch_after(struct bp_vbatch *b, struct bp_dispatch *d, int64_t now)
{
    struct bp_dispatch_stats s;
    bp_dispatch_stats(d, &s);
    int now_too = b->c.halt_when == BP_HALT_NOW;
    if (!b->stopping && !b->halted && should_halt(&b->c, &s)) {
        snprintf(b->why, sizeof b->why, "halted: %" PRId64 " tasks failed (--halt %s,fail=%d%s)",
                 s.failed, now_too ? "now" : "soon", b->c.halt_fail, b->c.halt_pct ? "%" : "");
        note(b, BP_VB_HALTED, s.queued, now_too);
        b->halted = 1;
        b->eof = 1;
        bp_dispatch_halt(d, now_too, b->why);
        bp_dispatch_input_done(d);
        bp_dispatch_stats(d, &s);
    }
    if (!s.all_final || s.finished)
        return;
    if (!b->all_final_at)
        b->all_final_at = now;
    if (s.complete || !b->c.use_sink || now - b->all_final_at >= b->c.complete_wait_ms) {
        if (b->c.use_sink && !s.complete)
            note(b, BP_VB_UNCONFIRMED, 0, 0);
        /* --halt now: the workers stop what still runs for us. */
        bp_dispatch_finish(d, b->halted && now_too ? BP_END_HALTED : BP_END_COMPLETE);
    }
}

int bp_vbatch_over(const struct bp_vbatch *b, const struct bp_dispatch *d, int64_t now)
{
    struct bp_dispatch_stats s;
    bp_dispatch_stats(d, &s);
    if (s.finished && s.end_pending == 0)
        return 1;
    /* END could not reach every worker: they find out anyway. */
    return b->stopping && now - b->stop_at >= b->c.stop_wait_ms;
}

int64_t bp_vbatch_next_deadline(const struct bp_vbatch *b)
{
    int64_t n = INT64_MAX;
    if (b->waiting && b->next_note < n)
        n = b->next_note;
    if (b->waiting && b->wait_end < n)
        n = b->wait_end;
    if (b->all_final_at && b->all_final_at + b->c.complete_wait_ms < n)
        n = b->all_final_at + b->c.complete_wait_ms;
    if (b->stopping && b->stop_at + b->c.stop_wait_ms < n)
        n = b->stop_at + b->c.stop_wait_ms;
    return n;
}
