/*
 * The ventilator's delivery state machine: who owns which task, credit,
 * heartbeats, deadlines, redelivery, retries. It touches no socket, reads
 * no clock and never logs: the caller hands it messages and the current
 * time (ms, any monotonic origin), asks it what to send, and asks when it
 * next needs to be woken (the ngtcp2 read_pkt / get_expiry /
 * handle_expiry pattern). So every fault sequence is a plain unit test.
 *
 * A task's life:  QUEUED -> OUT (on a worker) -> DONE (the worker says its
 * result went to the sink) -> FINAL (the sink acknowledged a final result).
 * A worker that dies or goes silent, a task past its deadline, or a DONE
 * task whose acknowledgement does not come in time is a *loss*: the task
 * goes back to the front of the queue, until it has been lost
 * max_attempts times; then the dispatcher itself sends the sink a final
 * result with status BP_ST_LOST ("lost N times"). A failed try with
 * retries left comes back as an ACK of kind RETRY and is queued again,
 * preferably for another worker.
 *
 * Memory is bounded by the configuration (tasks held, payload bytes,
 * workers), whatever peers send. Steady state allocates nothing: task
 * payload buffers and the output buffer are reused.
 */
#ifndef BP_DISPATCH_H
#define BP_DISPATCH_H

#include <stddef.h>
#include <stdint.h>

#include "bp_frame.h"
#include "bp_spec.h"

struct bp_dispatch;

struct bp_dispatch_cfg {
    uint64_t batch;       /* batch id carried by every message */
    int hb_ivl_ms;        /* heartbeat interval, both ways (1000) */
    int liveness;         /* intervals of silence before a peer is dead (3) */
    int max_attempts;     /* losses before a task fails as lost (3) */
    int retries;          /* re-runs of a failed command (0) */
    int task_deadline_ms; /* a task out longer is redelivered (0: never) */
    int ack_timeout_ms;   /* DONE without the sink's ACK for this long: redelivered */
    int retry_wait_ms;    /* a retry waits this long for a worker other than the
                             one that failed it, while another is connected (5000) */
    uint32_t max_tasks;   /* tasks held at once, read but not final */
    size_t max_bytes;     /* payload bytes held at once */
    uint32_t max_workers; /* live workers tracked; more HELLOs are refused */
    uint32_t max_credit;  /* credit one worker may hold */
    uint32_t pack_max;    /* tasks in one TASKS message */
    size_t pack_bytes;    /* bytes in one TASKS message (one task may be bigger) */
    uint32_t max_rec;     /* largest task/result payload accepted */
    int use_sink;         /* 0: no sink; a task is final when its worker says DONE */
    uint8_t task_flags;   /* added to every TASKS record (BP_TF_FILE: --files) */
    /* --basefile: the body of the BASE message (base_n records) each worker
     * gets after its HELLO, before any TASKS; not copied, must outlive the
     * dispatcher. base_n 0: none. */
    const uint8_t *base_body;
    size_t base_len;
    uint32_t base_n;
    /* Called when a task becomes final (ok: 1, failed or lost: 0, 2: the
     * sink said COMPLETE before acknowledging it, so the outcome is the
     * one the sink holds and counts), so the caller can journal it. May
     * be NULL. Must not call the dispatcher. */
    void (*on_final)(void *arg, uint64_t id, int ok);
    void *on_final_arg;
    /* Stragglers (bp_spec.h; quantile_pm 0, the default here: off). Once
     * input is done and nothing is queued, a task out on one worker longer
     * than bp_spec_threshold() is sent once more, as a new attempt, to a
     * worker with credit (never the one running it): two copies run, the
     * first final acknowledgement is the outcome, the other copy gets a
     * CANCEL. A task is speculated at most once. */
    struct bp_spec_cfg spec;
    /* --require: called at each HELLO with the worker's id and labels
     * (len bytes, bp_labels.h; checked by the codec for length only); a
     * worker it returns 0 for gets no task, nor counts in workers_match.
     * NULL: every worker matches. Must not call the dispatcher. */
    int (*match)(void *arg, const char *wid, const void *labels, size_t len);
    void *match_arg;
};

/* Fills c with the defaults above for batch. */
void bp_dispatch_defaults(struct bp_dispatch_cfg *c, uint64_t batch);

/* Creates a dispatcher. Returns NULL when out of memory or cfg is invalid.
 * The first heartbeat to the sink is due at now. */
struct bp_dispatch *bp_dispatch_new(const struct bp_dispatch_cfg *cfg, int64_t now);

/* Frees *d (may be NULL) and sets it to NULL. */
void bp_dispatch_destroy(struct bp_dispatch **d);

/* Whether the caller should read another input record now: 1 while fewer
 * than max_tasks / max_bytes are held and the queue is shorter than what
 * the workers' credit (or one pack) can take. */
int bp_dispatch_want_input(const struct bp_dispatch *d);

/* Takes a copy of one task; its id is the number of tasks added before
 * it (input order). Returns BP_OK, BP_ENOMEM, BP_ETOOBIG (len > max_rec)
 * or BP_EUSAGE (input already done). */
int bp_dispatch_add(struct bp_dispatch *d, const void *data, size_t len, uint64_t *id);

/* Takes the next id for a task that is already final (a resumed batch:
 * the journal says its result reached the sink), without holding it.
 * Counted in added and in ok or failed; on_final is not called. Returns
 * BP_OK or BP_EUSAGE (input already done). */
int bp_dispatch_add_final(struct bp_dispatch *d, int ok, uint64_t *id);

/* Takes the next id for a --files path that cannot be read (errno err):
 * it never goes to a worker; the sink gets a final file-error result
 * "cannot read PATH: ..." from the ventilator, as for a lost task, and it
 * counts in failed and unreadable. Returns like bp_dispatch_add(). */
int bp_dispatch_add_unreadable(struct bp_dispatch *d, const void *path, size_t len, int err,
                               uint64_t *id);

/* No more tasks will be added: the batch has bp_dispatch_stats().added. */
void bp_dispatch_input_done(struct bp_dispatch *d);

/* A message from a worker, rid being its ROUTER routing id (1-255 bytes).
 * Returns BP_OK, or BP_EPROTO / BP_EVERSION when dropped (counted). */
int bp_dispatch_on_worker(struct bp_dispatch *d, const void *rid, size_t rid_len, const void *msg,
                          size_t len, int64_t now);

/* A message from the sink. Same returns as bp_dispatch_on_worker(). */
int bp_dispatch_on_sink(struct bp_dispatch *d, const void *msg, size_t len, int64_t now);

/* The socket says this peer cannot be reached (EHOSTUNREACH): a worker
 * is dead and its tasks go back to the queue; anything still queued for
 * the peer (a RESYNC) is dropped, so the next peek returns something else. */
void bp_dispatch_worker_gone(struct bp_dispatch *d, const void *rid, size_t rid_len, int64_t now);

/* Handles everything due at now: silent workers and sink, overdue tasks,
 * missing acknowledgements. Cheap to call more often than needed. */
void bp_dispatch_on_timer(struct bp_dispatch *d, int64_t now);

/* When bp_dispatch_on_timer() (or a heartbeat) is next due, INT64_MAX if
 * never. Messages ready to go are not timers: drain bp_dispatch_peek()
 * first. */
int64_t bp_dispatch_next_deadline(const struct bp_dispatch *d);

enum bp_dest { BP_TO_WORKER = 1, BP_TO_SINK = 2 };

/* One message to send; valid until the next call on the dispatcher. */
struct bp_out {
    int dest;           /* BP_TO_WORKER or BP_TO_SINK */
    const uint8_t *rid; /* the worker's routing id */
    size_t rid_len;
    const uint8_t *data;
    size_t len;
};

/* The next message to send, to a destination in dest_mask (BP_TO_WORKER |
 * BP_TO_SINK: what can take a message now). Returns 1 with *out filled,
 * 0 when nothing is due. Nothing changes until bp_dispatch_commit():
 * peeking twice gives the same message. */
int bp_dispatch_peek(struct bp_dispatch *d, int64_t now, int dest_mask, struct bp_out *out);

/* The message from the last bp_dispatch_peek() was sent: apply it (tasks
 * become OUT on that worker, credit is spent, heartbeats rescheduled). */
void bp_dispatch_commit(struct bp_dispatch *d, int64_t now);

/* One FETCH request to answer with a CHUNK (docs/wire-format.md "Files"). */
struct bp_fetch_req {
    const uint8_t *rid; /* the worker's routing id */
    size_t rid_len;
    struct bp_fetch_rec f;
    int refused;         /* answer BP_CK_REFUSED: not that worker's attempt (any more) */
    const uint8_t *data; /* BP_FK_TASK: the task's payload (its file descriptor) */
    size_t len;
};

/* The next FETCH request a worker made (within its window, for its
 * session), checked against what is out on it now. Returns 1 with *r
 * filled (valid until the next call on the dispatcher), 0 when none is
 * left. The caller answers each with one CHUNK. */
int bp_dispatch_next_fetch(struct bp_dispatch *d, struct bp_fetch_req *r);

/* Stops the batch early (--halt): no task is sent any more, and every
 * task still queued (with now_too: also every task out on a worker, whose
 * late result the sink may still keep) becomes final as failed, reported
 * to the sink with status BP_ST_HALTED and reason why (truncated to 95
 * bytes). Tasks whose results wait for the sink's ack keep them. The
 * caller stops reading input and calls bp_dispatch_input_done(). */
void bp_dispatch_halt(struct bp_dispatch *d, int now_too, const char *why);

/* Ends the run: every live worker is sent END(reason) and no task is sent
 * any more. reason: BP_END_COMPLETE or BP_END_STOPPING. */
void bp_dispatch_finish(struct bp_dispatch *d, int reason);

struct bp_dispatch_stats {
    int64_t added;                  /* tasks taken in (the batch size once input is done) */
    int64_t ok, failed;             /* final outcomes acknowledged (failed includes lost) */
    int64_t lost;                   /* tasks failed as lost max_attempts times */
    int64_t halted;                 /* tasks failed because the batch was halted */
    int64_t unreadable;             /* --files paths that could not be read (failed) */
    int64_t redelivered;            /* losses put back in the queue */
    int64_t retried;                /* failed tries run again (--retries) */
    int64_t handed_back;            /* tasks returned unstarted by stopping workers */
    int64_t speculated;             /* second copies of stragglers sent */
    int64_t spec_won;               /* ... whose result was the outcome */
    int64_t cancelled;              /* attempts a CANCEL was sent for */
    int64_t queued, out, done_wait; /* tasks in each state now */
    int64_t held_bytes;
    int64_t malformed;  /* messages dropped: malformed or other version */
    int64_t refused;    /* HELLOs over max_workers, messages from unknown peers */
    int64_t stale;      /* messages or acks about another batch or a task not held */
    int workers;        /* live workers now (HELLO seen, not dead/gone) */
    int workers_match;  /* ... of them, those cfg.match accepts */
    int workers_seen;   /* distinct worker sessions so far */
    int sink_alive;     /* the sink answered within liveness */
    int sink_confirmed; /* ... on this batch (tasks may go out) */
    int64_t announced;  /* ids below this were announced to the sink */
    int complete;       /* the sink said COMPLETE for this batch (what was still held
                           then is final: the sink has every result) */
    int input_done;
    int finished;    /* bp_dispatch_finish() called */
    int all_final;   /* input done and every task final */
    int end_pending; /* END messages still to send */
};

void bp_dispatch_stats(const struct bp_dispatch *d, struct bp_dispatch_stats *s);

/* For tests and logs: the state of task id (0 not held or final, 1 queued,
 * 2 out, 3 its result (or its lost report) waiting for the sink's ack, 4 its
 * lost report waiting to go to the sink) and,
 * when out, the HELLO id of the worker it is on (NUL-terminated in wid,
 * wid_len >= 65). attempt gets the number of deliveries so far. */
int bp_dispatch_task(const struct bp_dispatch *d, uint64_t id, char *wid, size_t wid_len,
                     int *attempt);

/* For logs: calls fn for each live worker with its HELLO id, tasks out and
 * tasks completed. */
void bp_dispatch_each_worker(const struct bp_dispatch *d,
                             void (*fn)(void *arg, const char *wid, int64_t out, int64_t done),
                             void *arg);

/* For logs: calls fn for each live worker with its HELLO id, its labels
 * (len bytes, as it sent them) and whether cfg.match accepted it. */
void bp_dispatch_each_labels(const struct bp_dispatch *d,
                             void (*fn)(void *arg, const char *wid, const void *labels, size_t len,
                                        int match),
                             void *arg);

#endif
