/*
 * The ventilator's batch policy, sans I/O: when to start (--wait-workers),
 * when to give up waiting (for workers, for the sink, for any worker while
 * tasks wait: --wait-timeout), --halt, how long to wait for the sink's
 * COMPLETE once every task is final, and when the run is over (END sent,
 * or a second after a stop). It drives the dispatcher (bp_dispatch, also
 * pure) and never touches a socket, a clock or a log: the loop hands it
 * the time and what happened (a stop, the end of the input), reads input
 * only while bp_vbatch_may_read() says so, and logs the notes it leaves.
 */
#ifndef BP_VBATCH_H
#define BP_VBATCH_H

#include <stdint.h>

#include "bp_dispatch.h"

struct bp_vbatch_cfg {
    int wait_workers;    /* --wait-workers: read no input before this many said HELLO */
    int wait_timeout_ms; /* --wait-timeout: for workers, the sink, a worker for queued work */
    int use_sink;        /* a sink confirms results (else the workers' word is final) */
    int resumable;       /* a journal keeps the batch: a stop does not CLOSE it */
    int halt_when;       /* 0, BP_HALT_SOON or BP_HALT_NOW (--halt) */
    int halt_fail;       /* failures (or percent, with halt_pct) that halt */
    int halt_pct;
    int complete_wait_ms; /* every task final: wait this long for COMPLETE (5000) */
    int stop_wait_ms;     /* stopping: END may not reach everyone; over after this (1000) */
};

/* What the loop should say (bp_vbatch.notes; a and b as documented). */
enum bp_vb_note {
    BP_VB_STOPPING = 1,  /* a stop was asked for: a tasks not done of b */
    BP_VB_CONNECTED,     /* a workers connected: the batch starts */
    BP_VB_WAITING,       /* a of b workers connected so far */
    BP_VB_NO_WORKERS,    /* only a of b workers came in time: the run ends, ETIMEDOUT */
    BP_VB_NO_SINK,       /* the sink never answered in time: the run ends, ETIMEDOUT */
    BP_VB_NO_WORKER_NOW, /* no worker for the wait time with a tasks queued: stopping */
    BP_VB_HALTED,        /* --halt: why says so; a tasks waiting not run */
    BP_VB_UNCONFIRMED    /* every result acknowledged, no COMPLETE: finished anyway */
};

struct bp_vb_note_rec {
    int what;
    int64_t a, b;
};

struct bp_vbatch {
    struct bp_vbatch_cfg c;
    int64_t start, wait_end, next_note, all_final_at, stop_at, no_worker_since;
    int waiting, stopping, sink_seen, halted, eof;
    int result; /* BP_OK or what the run ends with */
    char why[96];
    struct bp_vb_note_rec notes[8];
    int nnotes;
};

/* A batch policy starting at now. */
void bp_vbatch_init(struct bp_vbatch *b, const struct bp_vbatch_cfg *cfg, int64_t now);

/* A stop was asked for (SIGINT/SIGTERM): END(stopping) to the workers; the
 * sink learns the size read so far unless the batch is resumable. */
void bp_vbatch_stop(struct bp_vbatch *b, struct bp_dispatch *d, int64_t now);

/* The input ended: rc BP_EXIT_INFO at its end, another code on a read
 * error (the batch ends with it), fatal when a task could not even be
 * held (then the run stops too). */
void bp_vbatch_input_end(struct bp_vbatch *b, struct bp_dispatch *d, int64_t now, int rc,
                         int fatal);

/* Whether the loop may read input now (the dispatcher's own
 * bp_dispatch_want_input() says how much). */
int bp_vbatch_may_read(const struct bp_vbatch *b);

/* Before input is read: the waits and their give-ups. Returns BP_OK, or
 * BP_ETIMEDOUT when the run ends now (a note says why). */
int bp_vbatch_before(struct bp_vbatch *b, struct bp_dispatch *d, int64_t now);

/* After the dispatcher's timer: --halt and the end of the batch. */
void bp_vbatch_after(struct bp_vbatch *b, struct bp_dispatch *d, int64_t now);

/* Whether the run is over (every END sent, or stopping for stop_wait_ms). */
int bp_vbatch_over(const struct bp_vbatch *b, const struct bp_dispatch *d, int64_t now);

/* When the policy next needs the loop to run (a note, a timeout). */
int64_t bp_vbatch_next_deadline(const struct bp_vbatch *b);

#endif
