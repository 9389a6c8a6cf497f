/* Reads task records: lines (default) or NUL-separated, from a FILE, or
 * the tutorial's seven strings when no input is given. */
#ifndef BP_INPUT_H
#define BP_INPUT_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

struct bp_reader {
    FILE *f;    /* NULL: the built-in tutorial strings */
    int nul;    /* NUL-separated records */
    size_t max; /* longest record accepted */
    char *buf;  /* reused for every record (owned) */
    size_t cap;
    size_t builtin; /* next built-in string */
    int64_t record; /* 1-based number of the last record read */
    int fd;         /* f's descriptor, or -1 (e.g. fmemopen): then fread */
    char *in;       /* read-ahead buffer (owned) */
    size_t in_pos, in_len;
    int eof;
    /* Empty records are skipped (parallel's -r); by default they are
     * empty tasks. */
    int skip_empty;
};

/* The seven strings of the ZeroMQ tutorial this project started from. */
extern const char *const bp_tutorial_tasks[7];

/* Prepares a reader over f; NULL means the tutorial strings. f stays the
 * caller's. Returns BP_OK or BP_ENOMEM. */
int bp_reader_init(struct bp_reader *r, FILE *f, int nul, size_t max);

/* Frees the reader's buffer. */
void bp_reader_free(struct bp_reader *r);

/* Reads the next record into *rec and *len (valid until the next call).
 * Returns BP_OK, BP_EIO on a read error, BP_ETOOBIG for a record longer
 * than max (skipped; the next call goes on after it), or BP_EXIT_INFO at
 * the end of input. In line mode a trailing "\r" is dropped. An empty
 * line (or NUL record) is an empty record, as for GNU parallel, unless
 * skip_empty is set (parallel's -r): then it is skipped. */
int bp_reader_next(struct bp_reader *r, const char **rec, size_t *len);

#endif
