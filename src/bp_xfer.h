/*
 * The worker's file transfers, sans I/O (docs/wire-format.md, "Files"):
 * downloads from the ventilator (FETCH / CHUNK) and uploads to the sink
 * (PUT / PUTACK). It owns no socket and no file, reads no clock and never
 * logs: the caller hands it what peers sent and the time (ms, any
 * monotonic origin), asks it which requests and chunks to send, does the
 * reading and writing itself, and sleeps until bp_xfer_next_deadline()
 * (the pattern of bp_dispatch.h). So lost, duplicated or hostile answers
 * are plain unit tests (tests/test_xfer.c).
 *
 * Downloads: each file is asked for in requests of at most BP_CHUNK_BYTES,
 * in order; at most BP_FETCH_WINDOW requests are without their CHUNK over
 * all downloads. A request unanswered for the liveness time is asked
 * again. `got` (sent in every FETCH) counts the requests settled in this
 * session: answered, or given up after silence, so the ventilator's count
 * of requests minus `got` is exactly what this side counts as out. A CHUNK
 * that answers no outstanding request (a late answer to one given up, an
 * unknown id, an offset never asked) is ignored and not counted.
 *
 * Uploads: each returned file is sent as PUT chunks from the sink's
 * `received` on; at most BP_PUT_WINDOW chunks are unacknowledged over all
 * uploads. A PUTACK moves `received` forward; one going backwards (a sink
 * restarted mid-file) makes the upload go on from there; silence for the
 * liveness time sends again from `received`; BUSY waits a heartbeat
 * interval and starts over.
 *
 * Memory is fixed at creation (max_get downloads, max_put uploads); no
 * number a peer sends sizes anything.
 */
#ifndef BP_XFER_H
#define BP_XFER_H

#include <stdint.h>

#include "bp_frame.h"

struct bp_xfer;

struct bp_xfer_cfg {
    int hb_ms;        /* --heartbeat (1000): BUSY waits this long */
    int liveness;     /* --liveness (3): silence of liveness x hb_ms means lost */
    int max_get;      /* downloads at once */
    int max_put;      /* uploads at once */
    uint32_t chunk;   /* bytes per request / PUT (BP_CHUNK_BYTES; smaller in tests) */
    int fetch_window; /* BP_FETCH_WINDOW */
    int put_window;   /* BP_PUT_WINDOW */
};

/* Fills c with the protocol's values and the given table sizes. */
void bp_xfer_defaults(struct bp_xfer_cfg *c, int hb_ms, int liveness, int max_get, int max_put);

/* Creates the transfer state. Returns NULL when out of memory or cfg is
 * invalid. */
struct bp_xfer *bp_xfer_new(const struct bp_xfer_cfg *cfg);

/* Frees *x (may be NULL) and sets it to NULL. */
void bp_xfer_destroy(struct bp_xfer **x);

/* Starts downloading size bytes of (kind, id, attempt). Returns a handle
 * (>= 0) or -1 when max_get downloads are under way. */
int bp_xfer_get(struct bp_xfer *x, uint8_t kind, uint64_t id, uint16_t attempt, uint64_t size);

/* Forgets download h (its requests still out keep their window places
 * until answered or given up). */
void bp_xfer_get_cancel(struct bp_xfer *x, int h);

/* A new session with the ventilator (a new HELLO): every download is
 * forgotten, nothing is out, got is 0. */
void bp_xfer_new_session(struct bp_xfer *x);

/* What a message did to a transfer. */
enum bp_xfer_what {
    BP_XF_NONE = 0,     /* nothing for the caller (ignored, or progress only) */
    BP_XF_DATA = 1,     /* write data[0..len) at off of download h */
    BP_XF_GET_DONE = 2, /* (with DATA possibly) download h has every byte */
    BP_XF_GET_FAIL = 4, /* download h failed: code = BP_CK_* status, err = its code */
    BP_XF_PUT_DONE = 8, /* upload h acknowledged whole */
    BP_XF_PUT_FAIL = 16 /* upload h refused: err = BP_FE_* reason */
};

struct bp_xfer_ev {
    int what; /* BP_XF_* bits */
    int h;
    uint64_t off;
    const uint8_t *data;
    uint32_t len;
    int code;
    uint32_t err;
};

/* A CHUNK from the ventilator. Fills ev; a download that fails or
 * completes is forgotten by then. A short CHUNK before the end of the
 * file fails the download as BP_CK_CHANGED. */
void bp_xfer_on_chunk(struct bp_xfer *x, const struct bp_chunk *c, int64_t now,
                      struct bp_xfer_ev *ev);

/* FETCH records due now (at most max), requests given up first, and
 * counts them as out from now. Returns how many (0: nothing due, or the
 * window is full). */
int bp_xfer_fetches(struct bp_xfer *x, int64_t now, struct bp_fetch_rec *out, int max);

/* The records of the last bp_xfer_fetches() could not be sent: they are
 * due again and not out. */
void bp_xfer_fetch_unsent(struct bp_xfer *x);

/* The `got` to put in a FETCH. */
uint32_t bp_xfer_got(const struct bp_xfer *x);

/* Starts uploading a file of size bytes as (id, attempt, idx). Returns a
 * handle (>= 0) or -1 when max_put uploads are under way. */
int bp_xfer_put(struct bp_xfer *x, uint64_t id, uint16_t attempt, uint8_t idx, uint64_t size,
                int64_t now);

/* Forgets upload h. */
void bp_xfer_put_cancel(struct bp_xfer *x, int h);

/* The next PUT chunk due now: upload *h, bytes [*off, *off + *len), then
 * counted as sent at now. Returns 1, or 0 when nothing is due (window
 * full, all sent, a BUSY wait). Uploads take turns. */
int bp_xfer_next_put(struct bp_xfer *x, int64_t now, int *h, uint64_t *off, uint32_t *len);

/* The chunk from the last bp_xfer_next_put() could not be sent: it is due
 * again. */
void bp_xfer_put_unsent(struct bp_xfer *x);

/* One PUTACK record from the sink. Fills ev (PUT_DONE, PUT_FAIL or NONE);
 * an upload done or failed is forgotten by then. */
void bp_xfer_on_putack(struct bp_xfer *x, const struct bp_putack_rec *a, int64_t now,
                       struct bp_xfer_ev *ev);

/* Gives up requests and chunks unanswered for the liveness time (they
 * are sent again). Cheap to call more often than needed. */
void bp_xfer_on_timer(struct bp_xfer *x, int64_t now);

/* When bp_xfer_on_timer() or a BUSY retry is next due; INT64_MAX if never.
 * Requests ready to go are not timers: drain bp_xfer_fetches() and
 * bp_xfer_next_put() first. */
int64_t bp_xfer_next_deadline(const struct bp_xfer *x);

struct bp_xfer_stats {
    int gets, puts;    /* transfers under way */
    int fetch_out;     /* requests without their CHUNK */
    int put_out;       /* chunks without their PUTACK */
    int64_t stale;     /* answers that matched nothing (ignored) */
    int64_t refetched; /* requests asked again after silence */
    int64_t resent;    /* uploads restarted (silence, backwards, BUSY) */
};

void bp_xfer_stats(const struct bp_xfer *x, struct bp_xfer_stats *s);

#endif
