/*
 * The sink's decisions, sans I/O: who the ventilator is (and who may speak
 * for it), the batch's life (begin, extent, close, a new batch over an
 * unfinished one), result acceptance through the batch's book (bp_rbook:
 * only announced ids, first result wins, completion), results it cannot
 * place yet (held, bounded in count, bytes and time), answers to pings,
 * and the acknowledgements of each turn. It owns no socket or file, reads
 * no clock and never logs: the sink's loop hands it each message and the
 * time, and it calls back (struct bp_sinkm_ops) to send bytes, to write
 * and journal an accepted result, to start a batch's journal, and to note
 * what should be logged. So forged control, CLOSE races, late duplicates
 * and a restart mid-batch are unit tests (tests/test_sinkm.c).
 */
#ifndef BP_SINKM_H
#define BP_SINKM_H

#include <stddef.h>
#include <stdint.h>
#include <zmq.h>

#include "bp_frame.h"
#include "bp_rbook.h"

/* Results held at most: messages, bytes (the liveness time is the third
 * bound, in the config). */
#define BP_SINKM_HOLD_MAX 4096
#define BP_SINKM_HOLD_BYTES ((size_t)16 << 20)

/* What a note is about (for the log). */
enum bp_sinkm_note {
    BP_SM_FORGED = 1, /* text: what was dropped from a peer that is not the ventilator */
    BP_SM_DROPPED,    /* n results for ids never announced dropped; text: why */
    BP_SM_BEGIN_OVER, /* a new batch begins before the current one completed */
    BP_SM_VENT,       /* the ventilator is (now) this peer */
    BP_SM_VENT_GONE   /* its connection is gone */
};

struct bp_sinkm_ops {
    /* Sends one message to a peer. Returns BP_OK, BP_EIO when the peer's
     * connection is gone, another code when it cannot take it now. */
    int (*send)(void *arg, const uint8_t *rid, size_t rid_len, const void *data, size_t len);
    /* A batch begins (restoring: read back from the journal, which is kept). */
    void (*begin)(void *arg, uint64_t batch, int restoring);
    /* The current batch ends unfinished: a new one begins over it. */
    void (*abandon)(void *arg);
    /* CLOSE said the batch's size (now known: journal it). */
    void (*total)(void *arg, int64_t total);
    /* A record the book took: verdict BP_RB_ACCEPT (write it, count it,
     * journal it), BP_RB_DUP or BP_RB_RETRY (seen, not written). */
    void (*result)(void *arg, const struct bp_result_rec *r, const char *wid, int verdict);
    /* The acknowledgements held reached BP_MAX_PENDING_ACKS: commit what
     * they acknowledge and call bp_sinkm_flush_acks() if that can be done
     * now. */
    void (*acks_full)(void *arg);
    /* May be NULL. A final ok result with FILES that the book would take:
     * whether its returned files are all there (BP_SM_FILES_READY),
     * not (BP_SM_FILES_TORN: dropped unacknowledged, the ventilator
     * delivers it again), or a name is taken by other contents
     * (BP_SM_FILES_CONFLICT: the result becomes a final file-error with
     * the text why, NUL-terminated, at most why_len bytes). */
    int (*files)(void *arg, const struct bp_result_rec *r, char *why, size_t why_len);
    /* Something worth a log line. */
    void (*note)(void *arg, int what, const char *text, int64_t n);
};

/* What ops->files() says. */
enum bp_sinkm_files { BP_SM_FILES_READY = 0, BP_SM_FILES_TORN, BP_SM_FILES_CONFLICT };

struct bp_sinkm_cfg {
    int64_t dead_ms;  /* the ventilator's silence that makes it gone; the hold's time */
    uint32_t max_rec; /* --max-msg-size (held messages are decoded again) */
    int eager_acks;   /* no journal: a full ACK pack goes out at once */
    int curve;        /* with CURVE, only the host's own key may control */
};

struct bp_sinkm_held {
    zmq_msg_t m;
    uint64_t batch;
    uint64_t from, lim; /* its records with ids in [from, lim) wait */
    int64_t since;
    int vent; /* it came from the ventilator (may carry lost/halted results) */
};

struct bp_sinkm {
    struct bp_sinkm_cfg c;
    const struct bp_sinkm_ops *ops;
    void *arg;
    /* the ventilator of the current batch */
    uint8_t vent[255];
    size_t vent_len;
    int64_t vent_heard;
    /* the current batch */
    int active;
    uint64_t batch;
    int64_t last_activity; /* its last message (the --timeout) */
    struct bp_rbook rb;
    int64_t stale, malformed, forged, lost, halted, acks_dropped;
    int64_t hold_dropped; /* held results given up: too many, too old, beyond the batch */
    struct bp_sinkm_held *hold;
    int nhold, hold_cap;
    size_t hold_bytes;
    struct bp_pack acks;
    struct bp_pack reply;
};

/* An idle machine (no batch). ops and arg stay the caller's. */
void bp_sinkm_init(struct bp_sinkm *sm, const struct bp_sinkm_cfg *cfg,
                   const struct bp_sinkm_ops *ops, void *arg);

/* Frees what it holds. */
void bp_sinkm_free(struct bp_sinkm *sm);

/* Starts batch (BEGIN, CLOSE with no batch, or a journal being read back:
 * restoring). Held results of other batches go. */
void bp_sinkm_begin(struct bp_sinkm *sm, uint64_t batch, int restoring, int64_t now);

/* One decoded message from peer rid, raw being its frame (held results
 * are copied from it). host_key: 1 the sender has the host's own key, 0
 * not, -1 unknown (plain mode). */
void bp_sinkm_on_msg(struct bp_sinkm *sm, const uint8_t *rid, size_t rid_len, zmq_msg_t *raw,
                     const struct bp_msg *m, int host_key, int64_t now);

/* Held results older than the liveness time are given up. */
void bp_sinkm_on_timer(struct bp_sinkm *sm, int64_t now);

/* When bp_sinkm_on_timer() has something to do (INT64_MAX: never). */
int64_t bp_sinkm_next_deadline(const struct bp_sinkm *sm);

/* Sends the acknowledgements held (one ACK message) to the ventilator. */
void bp_sinkm_flush_acks(struct bp_sinkm *sm);

/* Tells the ventilator the batch is complete (COMPLETE ok, failed). */
void bp_sinkm_send_complete(struct bp_sinkm *sm, int64_t ok, int64_t failed);

/* The batch is over (complete, given up or stopped): idle again. */
void bp_sinkm_end(struct bp_sinkm *sm);

#endif
