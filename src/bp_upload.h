/*
 * The sink's table of returned files being uploaded (docs/wire-format.md,
 * "Files back"), sans I/O: it decides what to do with each PUT chunk and
 * which uploads to give up, and the sink's loop does the writing. It owns
 * no file and no socket, reads no clock and never logs, so hostile
 * uploads (huge sizes, offsets past the end, many ids, one key from two
 * peers, idx 255) are plain unit tests (tests/test_upload.c).
 *
 * An upload is keyed by (id, attempt, idx) within the table's batch; it
 * remembers the sender's routing id (answers go to the latest sender of
 * its chunks: a worker whose connection was remade keeps its upload), the
 * name and size its first chunk said, and `received`, the bytes written
 * contiguously from 0. The rules for one chunk:
 * - an unknown upload: a chunk at offset 0 opens it (if the limits allow);
 *   any other offset is answered received = 0 (a sink restarted mid-file:
 *   the worker starts over), nothing is opened;
 * - offset == received: written (BP_UP_WRITE), then bp_upload_wrote();
 * - any other offset: not written, answered with received;
 * - refused with a BP_FE_* reason: a size over the limit or not the one
 *   the upload began with (SIZE), a chunk past the size or another name
 *   for the same upload or a name another idx of the attempt has (NAME),
 *   idx 255 (COUNT: at most 255 files per attempt), the table full (BUSY:
 *   BP_MAX_UPLOADS uploads in progress, or BP_UPLOAD_SLOTS in all).
 *
 * A complete upload (received == size) waits for its result but is no
 * longer "open": only uploads in progress count against BP_MAX_UPLOADS, so
 * workers that hold finished files of a task while they upload its next
 * one cannot fill the table with them and wait for each other for ever.
 *
 * Memory: BP_UPLOAD_SLOTS entries, allocated once, and the names (at most
 * BP_NAME_MAX bytes each).
 */
#ifndef BP_UPLOAD_H
#define BP_UPLOAD_H

#include <stddef.h>
#include <stdint.h>

#include "bp_frame.h"
#include "bp_path.h"

/* idx is below this: 255 files per attempt (RESULTS' nfiles is a u8). */
#define BP_UPLOAD_IDX_MAX 255
/* Uploads held in all, complete ones (waiting for their result) included. */
#define BP_UPLOAD_SLOTS 4096

struct bp_upload {
    uint64_t id, size, received;
    int64_t last; /* the attempt's last accepted chunk (any of its files) */
    uint16_t attempt;
    uint16_t name_len;
    uint8_t idx;
    uint8_t used;
    uint8_t done; /* complete: received == size */
    uint8_t rid_len;
    uint8_t rid[255]; /* the sender of its latest chunk */
    char *name;       /* name_len bytes and a NUL */
};

struct bp_upload_cfg {
    uint64_t max_size; /* --max-return-size */
    int64_t stale_ms;  /* an attempt silent this long is given up */
};

struct bp_uploads {
    struct bp_upload_cfg c;
    struct bp_upload *u; /* BP_UPLOAD_SLOTS entries */
    int open;            /* uploads in progress (at most BP_MAX_UPLOADS) */
    int held;            /* entries in use (at most BP_UPLOAD_SLOTS) */
};

enum bp_up_verdict {
    BP_UP_WRITE = 1, /* write the chunk's data at its offset, then bp_upload_wrote() */
    BP_UP_ANSWER,    /* write nothing; answer ok with d->received */
    BP_UP_REFUSE     /* write nothing; answer refused with d->code (BP_FE_*) */
};

struct bp_up_decision {
    int verdict;
    int slot;     /* the upload's entry (-1: none) */
    int fresh;    /* the chunk opened the upload: make its temporary file */
    uint8_t code; /* BP_FE_* for BP_UP_REFUSE */
    uint64_t received;
};

/* How bp_uploads_next_drop() picks. */
enum bp_up_drop {
    BP_UD_OTHERS = 1, /* of id, every attempt but the given one */
    BP_UD_ATTEMPT,    /* of id, the given attempt */
    BP_UD_ID,         /* of id, every attempt */
    BP_UD_STALE,      /* attempts silent for stale_ms at now */
    BP_UD_ALL         /* everything (the batch ends) */
};

/* A new, empty table. Returns NULL when out of memory. */
struct bp_uploads *bp_uploads_new(const struct bp_upload_cfg *cfg);

/* Frees *t (may be NULL) and sets it to NULL. The caller has closed
 * whatever it kept for the entries. */
void bp_uploads_destroy(struct bp_uploads **t);

/* Decides for one PUT chunk u from peer rid (rid_len 1..255) at now; see
 * the rules above. d gets the decision. The caller has checked the chunk
 * belongs to the table's batch and an announced id. */
void bp_uploads_put(struct bp_uploads *t, const struct bp_put *u, const uint8_t *rid,
                    size_t rid_len, int64_t now, struct bp_up_decision *d);

/* The chunk of len bytes BP_UP_WRITE asked for is written: received
 * grows. Returns 1 when that made the upload complete, else 0. */
int bp_uploads_wrote(struct bp_uploads *t, int slot, uint32_t len);

/* The entry of (id, attempt, idx), or -1. */
int bp_uploads_find(const struct bp_uploads *t, uint64_t id, uint16_t attempt, uint8_t idx);

/* Whether attempt of id has exactly the uploads idx 0 .. nfiles-1, each
 * complete (received == size), and no other: 1 yes, 0 no. */
int bp_uploads_complete(const struct bp_uploads *t, uint64_t id, uint16_t attempt, int nfiles);

/* The next entry to give up by rule how (id, attempt, now as it needs),
 * or -1 when none is left. The caller removes what it keeps for it, then
 * calls bp_uploads_release(). */
int bp_uploads_next_drop(const struct bp_uploads *t, int how, uint64_t id, uint16_t attempt,
                         int64_t now);

/* Frees entry slot. */
void bp_uploads_release(struct bp_uploads *t, int slot);

#endif
