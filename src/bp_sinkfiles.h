/*
 * The sink's returned files (docs/wire-format.md, "Files back" and
 * "Commit at the sink"): the I/O beside the upload table (bp_upload).
 * It owns --output-dir's descriptor, DIR/.bp-tmp/ and the uploads' open
 * temporary files; it writes PUT chunks there with pwrite, packs the
 * PUTACKs of a receive burst per peer, checks a result's uploads (torn,
 * or a name already there with other contents), and after the journal's
 * sync renames accepted uploads into place (never following a symlink,
 * never overwriting). The sink's loop (bp_sink.c) decides when; this
 * module never reads the journal and makes no protocol decision beyond
 * the upload table's.
 *
 * Temporary names: DIR/.bp-tmp/<batch, 16 hex>.<id>.<attempt>.<idx>.
 * Evidence (an accepted upload whose final name holds other bytes when it
 * is to be renamed) moves to DIR/.bp-kept/ under the same name.
 * Memory: the upload table, one pack per peer of a burst (at most
 * BP_SF_PEERS), and the names of accepted files waiting for the commit.
 */
#ifndef BP_SINKFILES_H
#define BP_SINKFILES_H

#include <stddef.h>
#include <stdint.h>

#include "bp_frame.h"
#include "bp_rbook.h"
#include "bp_upload.h"

#define BP_SF_PEERS 8       /* peers with PUTACKs packed in one burst */
#define BP_SF_ACKS_MAX 4096 /* records in one PUTACK (the worker's limit) */

/* What bp_sinkfiles_check() says about a final ok result with FILES. */
enum bp_sf_check { BP_SF_READY = 0, BP_SF_TORN, BP_SF_CONFLICT };

struct bp_sinkfiles_cfg {
    const char *dir;   /* --output-dir (NULL: every upload is refused) */
    uint64_t max_size; /* --max-return-size */
    int64_t stale_ms;  /* the liveness time: silent uploads are given up */
    int sync;          /* --sync (BP_SYNC_*): temporaries and directories */
    /* Sends one message to a peer (the sink's ROUTER). */
    int (*send)(void *arg, const uint8_t *rid, size_t rid_len, const void *data, size_t len);
    void *arg;
};

/* An accepted file waiting for its rename. */
struct bp_sf_pending {
    uint64_t id, size;
    uint16_t attempt;
    uint8_t idx;
    uint8_t same; /* already there with the same bytes: only the temporary goes */
    uint16_t name_len;
    char *name;
};

struct bp_sf_peer {
    uint8_t rid[255];
    size_t rid_len;
    uint64_t batch;
    struct bp_pack p;
};

struct bp_sinkfiles {
    struct bp_sinkfiles_cfg c;
    int dirfd, tmpfd; /* -1: none */
    uint64_t batch;
    struct bp_uploads *up;
    int fds[BP_UPLOAD_SLOTS]; /* each upload's temporary file while in progress */
    struct bp_sf_pending *pend;
    size_t npend, pend_cap;
    struct bp_sf_peer peer[BP_SF_PEERS];
    int npeer;
    /* counters over the sink's life */
    int64_t files, bytes; /* placed under DIR (or found there, same bytes) */
    int64_t torn;         /* final ok results with FILES dropped: uploads not complete */
    int64_t refused;      /* uploads refused (name, size, count, write) or for foreign ids */
    int64_t write_errors; /* writes into .bp-tmp that failed */
    int64_t conflicts;    /* results made file-error: a name there with other contents */
    int64_t kept;         /* accepted uploads kept as evidence in .bp-kept (not placed) */
    int64_t rolled;       /* --resume: accepted files put in place from .bp-tmp */
    int said_foreign;
    uint8_t same[BP_UPLOAD_SLOTS]; /* bp_sinkfiles_check(): already there, same bytes */
};

/* Opens (creating it if missing, one level) the output directory. Returns
 * NULL with a one-line reason in err (not a directory, cannot create,
 * out of memory). cfg->dir NULL gives a table that refuses uploads. */
struct bp_sinkfiles *bp_sinkfiles_new(const struct bp_sinkfiles_cfg *cfg, char *err,
                                      size_t err_len);

/* Closes what *f holds, frees it (may be NULL) and sets it to NULL. */
void bp_sinkfiles_destroy(struct bp_sinkfiles **f);

/* A batch begins: open uploads are dropped; DIR/.bp-tmp/ is made, and
 * emptied unless restoring (a journal is read back: roll forward first,
 * then bp_sinkfiles_restored()). */
void bp_sinkfiles_begin(struct bp_sinkfiles *f, uint64_t batch, int restoring);

/* The batch is complete: uploads dropped, .bp-tmp/ removed. */
void bp_sinkfiles_end(struct bp_sinkfiles *f);

/* One PUT m (decoded) from rid: decided by the table (with rb's
 * announced ids when active is the current batch's), written, its PUTACK
 * packed. */
void bp_sinkfiles_put(struct bp_sinkfiles *f, const uint8_t *rid, size_t rid_len,
                      const struct bp_msg *m, const struct bp_rbook *rb, int active, int64_t now);

/* Sends the PUTACKs packed in this burst. */
void bp_sinkfiles_flush(struct bp_sinkfiles *f);

/* A final ok result r with FILES, about to be accepted: BP_SF_READY when
 * its nfiles uploads are complete and none conflicts, BP_SF_TORN (counted)
 * when they are not all there, BP_SF_CONFLICT (counted) with why (text
 * for the file-error result) when a name is taken by other contents. */
int bp_sinkfiles_check(struct bp_sinkfiles *f, const struct bp_result_rec *r, char *why,
                       size_t why_len);

/* r was accepted (after bp_sinkfiles_check() said READY): its uploads are
 * synced per --sync, closed and wait for bp_sinkfiles_commit(); other
 * attempts of the id are dropped. Returns the files waiting in all. */
size_t bp_sinkfiles_accept(struct bp_sinkfiles *f, const struct bp_result_rec *r);

/* The files waiting for the commit; the last r->nfiles are r's. */
const struct bp_sf_pending *bp_sinkfiles_pending(const struct bp_sinkfiles *f, size_t *n);

/* After the journal's sync: every waiting file is renamed into place. */
void bp_sinkfiles_commit(struct bp_sinkfiles *f);

/* Drops the uploads of id (every attempt) that no accepted result uses. */
void bp_sinkfiles_drop(struct bp_sinkfiles *f, uint64_t id);

/* Drops the uploads of attempt of id (attempt < 0: of every attempt). */
void bp_sinkfiles_drop_attempt(struct bp_sinkfiles *f, uint64_t id, int attempt);

/* Gives up uploads silent for the liveness time. */
void bp_sinkfiles_timer(struct bp_sinkfiles *f, int64_t now);

/* --resume: a journaled accepted file (name NUL-terminated): renamed
 * into place if its temporary is still there. */
void bp_sinkfiles_restore(struct bp_sinkfiles *f, uint64_t id, uint16_t attempt, uint8_t idx,
                          const char *name);

/* --resume, after the journal: whatever else is in .bp-tmp/ goes. */
void bp_sinkfiles_restored(struct bp_sinkfiles *f);

#endif
