/*
 * The ventilator's files (--files, --basefile; docs/wire-format.md
 * "Files"): a task's file descriptor made from an input path, the BASE
 * message, and the CHUNK that answers each FETCH, read from disk when it
 * is asked for. Holds no file open between requests and buffers nothing
 * beyond the one message being built, so a batch of 100 000 photos or a
 * 1 GiB file costs the same memory. No sockets: the loop sends what this
 * builds.
 */
#ifndef BP_VFILES_H
#define BP_VFILES_H

#include <stddef.h>
#include <stdint.h>

#include "bp.h"
#include "bp_dispatch.h"
#include "bp_frame.h"

struct bp_vfiles;

struct bp_vfiles_stats {
    int64_t files;     /* task files whose first chunk went out */
    int64_t bytes;     /* task file bytes sent */
    int64_t base_sent; /* base files whose first chunk went out */
    int64_t changed;   /* CHUNKs answered "changed" (file not as described) */
    int64_t errors;    /* CHUNKs answered "error" (could not read) */
    int64_t refused;   /* CHUNKs answered "refused" (not that worker's task) */
};

/* Opens and hashes (SHA-256) each base file in basefiles (may be NULL or
 * empty). Returns a new object, or NULL with a one-line reason in err (a
 * base file that cannot be read, is not a regular file, or two with the
 * same name). The caller owns it (bp_vfiles_destroy). */
struct bp_vfiles *bp_vfiles_new(const struct bp_strlist *basefiles, char *err, size_t errlen);

/* Frees *vf (may be NULL) and sets it to NULL. */
void bp_vfiles_destroy(struct bp_vfiles **vf);

/* The BASE message's body and record count (n 0: no base files). Owned by
 * vf. */
void bp_vfiles_base(const struct bp_vfiles *vf, const uint8_t **body, size_t *len, uint32_t *n);

/* Makes the FILE task payload for input path rec (len bytes): stats it
 * (opens nothing). Returns BP_OK with *desc (owned by vf, valid until the
 * next call) or BP_EIO with *err an errno (cannot stat or read, not a
 * regular file: EINVAL for a path that has no name to ship it under). */
int bp_vfiles_describe(struct bp_vfiles *vf, const char *rec, size_t len, const uint8_t **desc,
                       size_t *dlen, int *err);

/* Builds in pk (for batch) the CHUNK that answers r: the bytes asked for,
 * read now with pread, or changed / error / refused. Returns the CHUNK's
 * status (BP_CK_*), or -1 when out of memory (nothing to send). */
int bp_vfiles_chunk(struct bp_vfiles *vf, const struct bp_fetch_req *r, uint64_t batch,
                    struct bp_pack *pk);

/* Counts so far. */
void bp_vfiles_stats(const struct bp_vfiles *vf, struct bp_vfiles_stats *s);

#endif
