/* Task records from the input (bp_input.h): lines or NUL-separated
 * records from a file, or the tutorial's strings. Owns the reader's
 * buffers; must not log, send or decide what a record means. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "bp.h"
#include "bp_input.h"

const char *const bp_tutorial_tasks[7] = {
    "hola", "aloha", "hello", "buenas noches", "buenas tardes", "buenos dias", "bienvenido",
};

#define BP_READ_CHUNK 65536

int bp_reader_init(struct bp_reader *r, FILE *f, int nul, size_t max)
{
    memset(r, 0, sizeof *r);
    r->f = f;
    r->nul = nul;
    r->max = max;
    r->fd = f ? fileno(f) : -1;
    r->cap = max < 4096 ? max + 1 : 4096;
    r->buf = malloc(r->cap);
    r->in = f ? malloc(BP_READ_CHUNK) : NULL;
    if (!r->buf || (f && !r->in)) {
        bp_reader_free(r);
        return BP_ENOMEM;
    }
    return BP_OK;
}

void bp_reader_free(struct bp_reader *r)
{
    free(r->buf);
    free(r->in);
    r->buf = r->in = NULL;
}

/* Refills the read-ahead buffer. read(2) on a descriptor returns what a
 * pipe has now, so records flow as a slow producer writes them; fread()
 * serves streams without one (fmemopen). Returns 0, or -1 on an error. */
static int refill(struct bp_reader *r)
{
    r->in_pos = 0;
    r->in_len = 0;
    if (r->fd >= 0) {
        for (;;) {
            ssize_t n = read(r->fd, r->in, BP_READ_CHUNK);
            if (n > 0) {
                r->in_len = (size_t)n;
                return 0;
            }
            if (n == 0) {
                r->eof = 1;
                return 0;
            }
            if (errno != EINTR)
                return -1;
        }
    }
    size_t n = fread(r->in, 1, BP_READ_CHUNK, r->f);
    r->in_len = n;
    if (n == 0) {
        if (ferror(r->f))
            return -1;
        r->eof = 1;
    }
    return 0;
}

/* Appends in[0..n) to the record, up to max bytes. */
static int append(struct bp_reader *r, size_t *len, const char *p, size_t n, int *too_big)
{
    if (*len + n > r->max) {
        *too_big = 1;
        n = *len < r->max ? r->max - *len : 0;
    }
    if (*len + n + 1 > r->cap) {
        size_t cap = r->cap;
        while (cap < *len + n + 1)
            cap *= 2;
        if (cap > r->max + 1)
            cap = r->max + 1;
        char *b = realloc(r->buf, cap);
        if (!b)
            return BP_ENOMEM;
        r->buf = b;
        r->cap = cap;
    }
    memcpy(r->buf + *len, p, n);
    *len += n;
    return BP_OK;
}

/* Ends the text record p[0..n) that either path of bp_reader_next() found:
 * drops a CR before the newline, and returns 0 for an empty record with
 * skip_empty set, else NUL-terminates it into *rec and *len and returns
 * 1. */
static int finish_record(const struct bp_reader *r, char *p, size_t n, const char **rec,
                         size_t *len)
{
    if (!r->nul && n && p[n - 1] == '\r')
        n--;
    if (r->skip_empty && n == 0)
        return 0;
    p[n] = '\0';
    *rec = p;
    *len = n;
    return 1;
}

int bp_reader_next(struct bp_reader *r, const char **rec, size_t *len)
{
    if (!r->f) {
        if (r->builtin >= sizeof bp_tutorial_tasks / sizeof bp_tutorial_tasks[0])
            return BP_EXIT_INFO;
        *rec = bp_tutorial_tasks[r->builtin++];
        *len = strlen(*rec);
        r->record++;
        return BP_OK;
    }
    int delim = r->nul ? '\0' : '\n';
    for (;;) {
        /* Fast path: a whole record in the read-ahead buffer is handed out
         * where it is, its delimiter overwritten by the NUL (no copy). */
        if (r->in_pos < r->in_len) {
            char *p = r->in + r->in_pos;
            char *d = memchr(p, delim, r->in_len - r->in_pos);
            size_t n = d ? (size_t)(d - p) : 0;
            if (d && n <= r->max) {
                r->in_pos += n + 1;
                r->record++;
                if (finish_record(r, p, n, rec, len))
                    return BP_OK;
                continue;
            }
        }
        size_t n = 0;
        int too_big = 0, any = 0, ended = 0;
        /* Bounded: a huge record costs at most max bytes of memory. */
        while (!ended) {
            if (r->in_pos == r->in_len) {
                if (r->eof)
                    break;
                if (refill(r) != 0)
                    return BP_EIO;
                continue;
            }
            const char *p = r->in + r->in_pos;
            size_t avail = r->in_len - r->in_pos;
            const char *d = memchr(p, delim, avail);
            size_t take = d ? (size_t)(d - p) : avail;
            any = 1;
            if (append(r, &n, p, take, &too_big) != BP_OK)
                return BP_ENOMEM;
            r->in_pos += take + (d ? 1 : 0);
            ended = d != NULL;
        }
        if (!any)
            return BP_EXIT_INFO;
        r->record++;
        if (too_big)
            return BP_ETOOBIG;
        if (finish_record(r, r->buf, n, rec, len))
            return BP_OK;
        if (!ended)
            return BP_EXIT_INFO;
    }
}
