/*
 * The sink's book of one batch: which task ids belong to it, which have a
 * final result, and what to answer for each result record. It touches no
 * socket, reads no clock and never logs: the sink hands it what the
 * ventilator says (EXTENT, CLOSE) and each result record, and it says what
 * to do with the record. So the rules that decide "written once" and
 * "complete" are plain unit tests (tests/test_rbook.c).
 *
 * The rules:
 * - An id belongs to the batch only once the ventilator said so: EXTENT(n)
 *   (ids below n were read) or CLOSE(total). A result for an id the
 *   ventilator has not announced is never written nor counted. Just above
 *   the extent it is EARLY (the EXTENT may still be on its way on another
 *   connection: the caller holds it, bounded, and asks again when the
 *   extent grows); further up it is FOREIGN (dropped and counted).
 * - The first final result of an id wins; a later one is a duplicate,
 *   acknowledged again with the stored outcome.
 * - A failed try that is not final is a retry: counted, not written.
 * - The batch is complete when CLOSE said its size and every id in
 *   [0, total) has a final result. Never "enough results".
 *
 * Memory: the id bitmaps grow with the highest accepted id, which is below
 * the ventilator's extent and within BP_RBOOK_ID_WINDOW of the lowest id
 * without a result, whatever peers send.
 */
#ifndef BP_RBOOK_H
#define BP_RBOOK_H

#include <stdint.h>

#include "bp_track.h"

/* A result id is accepted only this far above the lowest id without a
 * final result: the ventilator never holds more than 65 536 tasks, and a
 * made-up id must not decide how big the id bitmaps grow. */
#define BP_RBOOK_ID_WINDOW ((uint64_t)1 << 20)
/* How far above the extent a result is EARLY (held) rather than FOREIGN:
 * the ventilator announces what it read before it sends those tasks, and
 * holds at most 65 536 tasks, so an honest result is never further ahead
 * of an EXTENT still in flight. */
#define BP_RBOOK_EARLY_WINDOW ((uint64_t)1 << 17)

enum bp_rb_verdict {
    BP_RB_ACCEPT = 1, /* a new final result: write it (ok) or report it; acknowledge it final */
    BP_RB_DUP,        /* already final: drop it, acknowledge again with *ack (first wins) */
    BP_RB_RETRY,      /* a failed try with retries left: count it, acknowledge RETRY */
    BP_RB_EARLY,      /* not announced yet, but close: hold it, offer it again later */
    BP_RB_FOREIGN,    /* not an id of this batch: drop it, no acknowledgement */
    BP_RB_NOMEM       /* cannot be tracked now: drop it, no acknowledgement */
};

struct bp_rbook {
    uint64_t extent;        /* ids below this belong to the batch */
    int64_t total;          /* from CLOSE; -1 until then */
    uint64_t low;           /* the lowest id without a final result */
    struct bp_idset seen;   /* a final result is in */
    struct bp_idset failed; /* ... and it was a failure */
    struct bp_idset tried;  /* a failed try of it was retried */
    int64_t ok, failed_n;   /* final results accepted */
    int64_t retried;        /* failed tries acknowledged as retries */
    int64_t later;          /* sum of (attempt - 1) over accepted final results */
    int64_t recovered;      /* ok on a later delivery, never retried */
    int64_t dups, early, foreign;
};

/* An empty book: nothing announced, size unknown. */
void bp_rbook_init(struct bp_rbook *b);

/* Frees the bitmaps and empties the book. */
void bp_rbook_free(struct bp_rbook *b);

/* The ventilator read ids below n. Returns 1 when the extent grew (held
 * EARLY results may now be accepted), 0 when it did not (n is not above
 * the extent: a repeat), -1 when n is over the batch's size. */
int bp_rbook_extent(struct bp_rbook *b, uint64_t n);

/* The batch has exactly total ids. Returns 1 when that is news (the
 * extent may have grown), 0 for a repeat of the same size, -1 for
 * another size or a size below what was announced or accepted already. */
int bp_rbook_close(struct bp_rbook *b, uint64_t total);

/* One result record: id, attempt (deliveries so far), whether it is ok,
 * whether it is final. Returns a verdict; *ack gets the acknowledgement
 * kind (BP_ACK_*) for ACCEPT, DUP and RETRY. Updates the counts. */
int bp_rbook_result(struct bp_rbook *b, uint64_t id, uint16_t attempt, int ok, int final,
                    uint8_t *ack);

/* What a result for id would be now, without counting or changing
 * anything: BP_RB_ACCEPT (announced, no final result yet), BP_RB_DUP
 * (already final), BP_RB_EARLY or BP_RB_FOREIGN (not announced). Pure:
 * the sink asks before it takes a returned file's bytes or checks a
 * result's uploads. */
int bp_rbook_place(const struct bp_rbook *b, uint64_t id);

/* Puts back a final result read from a journal (no counts but ok/failed).
 * Returns 1 if new, 0 if known, -1 out of memory. */
int bp_rbook_restore(struct bp_rbook *b, uint64_t id, int ok);

/* 1 when CLOSE said the size and every id below it has a final result. */
int bp_rbook_complete(const struct bp_rbook *b);

/* Ids of [0, total) without a final result (0 while the size is unknown). */
int64_t bp_rbook_missing(const struct bp_rbook *b);

/* Deliveries made again after a loss, as far as the results show: later
 * deliveries of accepted results that no retry explains. */
int64_t bp_rbook_redelivered(const struct bp_rbook *b);

#endif
