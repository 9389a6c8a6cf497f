/*
 * An append-only journal file: what a host role must remember to resume a
 * batch after a crash. The file is an 8-byte magic naming its kind, then
 * records:
 *
 *   u32 len    bytes of type + payload (big-endian)
 *   u32 crc    CRC-32 (IEEE) of type + payload
 *   u8  type   the owner's record type
 *   payload    len - 1 bytes
 *
 * A record is written with one write(2) together with the others of its
 * turn, so a killed process leaves whole records; a power cut or a bad
 * block can leave a torn or corrupt tail, which the scan finds (checksum,
 * length) and reports, and opening for append cuts off. What the records
 * mean is the caller's business (the ventilator's and the sink's formats
 * are in docs/journal.md).
 */
#ifndef BP_JOURNAL_H
#define BP_JOURNAL_H

#include <stddef.h>
#include <stdint.h>

#define BP_JOURNAL_MAGIC_LEN 8
/* A record longer than this is corruption, not data. */
#define BP_JOURNAL_REC_MAX ((uint32_t)64 << 20)

enum bp_journal_tail {
    BP_JT_CLEAN = 0, /* the file ends after its last record */
    BP_JT_TORN,      /* the last record is cut short or fails its checksum */
    BP_JT_CORRUPT    /* a record fails its checksum with more bytes after it */
};

struct bp_journal_scan {
    int64_t records;   /* valid records */
    int64_t valid_end; /* offset just past the last valid record */
    int64_t size;      /* the file's size */
    int tail;          /* BP_JT_*: what follows valid_end */
};

/* Called for each valid record, in file order. p is valid during the call
 * only. A non-zero return stops the scan and is returned by it. */
typedef int (*bp_journal_fn)(void *arg, uint8_t type, const uint8_t *p, size_t len);

/* Reads the journal at path: checks its magic, then calls fn (may be NULL)
 * for every record up to the first that is cut short, over
 * BP_JOURNAL_REC_MAX or fails its checksum; s says where and why it
 * stopped. Returns BP_OK (a damaged tail is not an error: see s->tail),
 * BP_EIO when the file cannot be read (errno set; ENOENT when it does not
 * exist), BP_EPROTO when it is not a journal of this kind (err says so),
 * or fn's non-zero return. Memory: one buffer as big as the largest
 * record, freed before returning. */
int bp_journal_scan(const char *path, const char magic[BP_JOURNAL_MAGIC_LEN], bp_journal_fn fn,
                    void *arg, struct bp_journal_scan *s, char *err, size_t err_len);

/* For a role started without --resume: whether the journal it would keep
 * at its default path (base + suffix) holds an unfinished batch (at least
 * one record of this kind: journals are removed when their batch
 * completes). A new batch must not start over it. Returns BP_OK when there
 * is none (no file, or not a journal of this kind); else logs one line
 * naming the journal, what (e.g. "whose results are in out.txt"), and the
 * way out (--resume, or remove the journal), and returns BP_EUSAGE (BP_EIO
 * when it cannot be read). */
int bp_journal_refuse_unfinished(const char *base, const char *suffix,
                                 const char magic[BP_JOURNAL_MAGIC_LEN], const char *what);

struct bp_journal;

/* Opens path for appending. keep < 0: a new journal (an existing file is
 * replaced); keep >= 0: an existing one, cut to keep bytes (the
 * valid_end of its scan) first. Returns NULL with a one-line reason in
 * err. */
struct bp_journal *bp_journal_open(const char *path, const char magic[BP_JOURNAL_MAGIC_LEN],
                                   int64_t keep, char *err, size_t err_len);

/* Queues one record (len: payload bytes, at most BP_JOURNAL_REC_MAX - 1).
 * Nothing reaches the file before bp_journal_flush(). Returns BP_OK,
 * BP_ETOOBIG or BP_ENOMEM. */
int bp_journal_put(struct bp_journal *j, uint8_t type, const void *p, size_t len);

/* Bytes queued by bp_journal_put() and not yet written. */
size_t bp_journal_pending(const struct bp_journal *j);

/* Writes what is queued (whole records, in one write(2) where it fits).
 * sync: also fdatasync() the file. Returns BP_OK or BP_EIO (errno set);
 * after an error the journal is unusable. */
int bp_journal_flush(struct bp_journal *j, int sync);

/* Flushes (without syncing), closes and frees *j (may be NULL); sets it to
 * NULL. unlink: also removes the file (the batch is over). Returns BP_OK
 * or BP_EIO when the last write or the removal failed. */
int bp_journal_close(struct bp_journal **j, int unlink_it);

/* The journal's path: given if not NULL, else base + suffix (next to the
 * input or output it belongs to). Returns BP_OK, or BP_EUSAGE (logged)
 * when it does not fit in len bytes. */
int bp_journal_path(char *buf, size_t len, const char *given, const char *base, const char *suffix);

/* CRC-32 (IEEE 802.3, the zlib one) of len bytes, continuing from crc
 * (0 to start). */
uint32_t bp_crc32(uint32_t crc, const void *p, size_t len);

/* 64-bit FNV-1a, continuing from h (BP_FNV64_INIT to start). */
#define BP_FNV64_INIT 0xcbf29ce484222325ull
uint64_t bp_fnv64(uint64_t h, const void *p, size_t len);

/* Big-endian helpers for record payloads. */
void bp_put_be64(uint8_t *p, uint64_t v);
void bp_put_be32(uint8_t *p, uint32_t v);
uint64_t bp_get_be64(const uint8_t *p);
uint32_t bp_get_be32(const uint8_t *p);

#endif
