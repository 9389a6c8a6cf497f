/* The append-only journal file (bp_journal.h): records with length and
 * CRC, the scan that finds a torn or corrupt tail, appending and syncing;
 * also the big-endian and CRC-32 helpers. Owns the file and its queue of
 * records; must not know what a record means (docs/journal.md: the
 * roles' formats). */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "bp.h"
#include "bp_internal.h"
#include "bp_journal.h"

#define REC_HDR 8 /* u32 len, u32 crc */

struct bp_journal {
    int fd;
    char *path;
    uint8_t *buf; /* queued records */
    size_t len, cap;
    int broken;
};

void bp_put_be64(uint8_t *p, uint64_t v)
{
    for (int i = 7; i >= 0; i--, v >>= 8)
        p[i] = (uint8_t)v;
}

void bp_put_be32(uint8_t *p, uint32_t v)
{
    for (int i = 3; i >= 0; i--, v >>= 8)
        p[i] = (uint8_t)v;
}

uint64_t bp_get_be64(const uint8_t *p)
{
    uint64_t v = 0;
    for (int i = 0; i < 8; i++)
        v = v << 8 | p[i];
    return v;
}

uint32_t bp_get_be32(const uint8_t *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

uint32_t bp_crc32(uint32_t crc, const void *p, size_t len)
{
    static uint32_t table[256];
    static int ready;
    if (!ready) {
        /* Benign if two threads race: both write the same values. */
        for (uint32_t i = 0; i < 256; i++) {
            uint32_t c = i;
            for (int k = 0; k < 8; k++)
                c = c & 1 ? 0xEDB88320u ^ (c >> 1) : c >> 1;
            table[i] = c;
        }
        ready = 1;
    }
    const uint8_t *b = p;
    crc = ~crc;
    while (len--)
        crc = table[(crc ^ *b++) & 0xff] ^ (crc >> 8);
    return ~crc;
}

uint64_t bp_fnv64(uint64_t h, const void *p, size_t len)
{
    const uint8_t *b = p;
    while (len--) {
        h ^= *b++;
        h *= 0x100000001b3ull;
    }
    return h;
}

/* Reads exactly len bytes unless the file ends first. Returns the count
 * read, or -1 on an error. */
static ssize_t read_full(int fd, void *p, size_t len)
{
    size_t got = 0;
    while (got < len) {
        ssize_t n = read(fd, (uint8_t *)p + got, len - got);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return -1;
        if (n == 0)
            break;
        got += (size_t)n;
    }
    return (ssize_t)got;
}

/* Whether a whole valid record starts anywhere after the first byte of
 * the bad record at from: then it was damage in the middle, not a torn
 * tail, whatever its length field now says. A tail too big to check
 * counts as damage (the cautious answer). */
static int valid_record_in(int fd, int64_t from, int64_t size)
{
    int64_t rem = size - from;
    if (rem < REC_HDR + 1)
        return 0;
    if (rem > (int64_t)BP_JOURNAL_REC_MAX)
        return 1;
    uint8_t *b = malloc((size_t)rem);
    if (!b)
        return 1;
    int found = pread(fd, b, (size_t)rem, (off_t)from) != (ssize_t)rem;
    for (size_t o = 1; !found && o + REC_HDR < (size_t)rem; o++) {
        uint32_t len = bp_get_be32(b + o);
        if (len >= 1 && len <= (size_t)rem - o - REC_HDR &&
            bp_crc32(0, b + o + REC_HDR, len) == bp_get_be32(b + o + 4))
            found = 1;
    }
    free(b);
    return found;
}

/* One scan's file, its record buffer and where errors go. */
struct scan {
    int fd; /* -1: none (an empty file holds nothing to scan) */
    const char *path;
    struct bp_journal_scan *s;
    uint8_t *buf; /* the current record: buf[0..len) */
    size_t cap;
    uint32_t len;
    char *err;
    size_t err_len;
};

/* A read error: err says it, errno is kept. Closes fd if it is >= 0. */
static int scan_read_error(const struct scan *c, int fd)
{
    int e = errno;
    snprintf(c->err, c->err_len, "cannot read journal %s: %s", c->path, strerror(e));
    if (fd >= 0)
        close(fd);
    errno = e;
    return BP_EIO;
}

/* Opens the journal and checks its magic. Returns BP_OK with c->fd at the
 * first record (c->fd -1 when the file is empty), or an error. */
static int scan_open(struct scan *c, const char magic[BP_JOURNAL_MAGIC_LEN])
{
    int fd = open(c->path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return scan_read_error(c, -1);
    struct stat st;
    if (fstat(fd, &st) != 0)
        return scan_read_error(c, fd);
    c->s->size = st.st_size;
    uint8_t m[BP_JOURNAL_MAGIC_LEN];
    ssize_t n = read_full(fd, m, sizeof m);
    if (n < 0)
        return scan_read_error(c, fd);
    if (n == 0) {
        /* Created, then killed before the magic went out: nothing in it. */
        close(fd);
        c->s->tail = BP_JT_CLEAN;
        return BP_OK;
    }
    if ((size_t)n < sizeof m || memcmp(m, magic, sizeof m) != 0) {
        snprintf(c->err, c->err_len, "%s is not a boardpipe journal of this kind", c->path);
        close(fd);
        return BP_EPROTO;
    }
    c->s->valid_end = (int64_t)sizeof m;
    c->fd = fd;
    return BP_OK;
}

/* Reads the record at c->s->valid_end into c->buf. Returns 1 when a whole
 * record with a good checksum is there, 0 at the end: clean, torn or
 * corrupt (c->s->tail says which), or an error (*rc). */
static int next_record(struct scan *c, int *rc)
{
    struct bp_journal_scan *s = c->s;
    uint8_t h[REC_HDR];
    ssize_t n = read_full(c->fd, h, sizeof h);
    if (n < 0) {
        *rc = scan_read_error(c, -1);
        return 0;
    }
    if (n == 0)
        return 0; /* clean end */
    uint32_t len = bp_get_be32(h), crc = bp_get_be32(h + 4);
    if ((size_t)n < sizeof h || len == 0 || len > BP_JOURNAL_REC_MAX ||
        (int64_t)len > s->size - s->valid_end - REC_HDR) {
        s->tail = BP_JT_TORN;
        return 0;
    }
    if (c->cap < len) {
        uint8_t *p = realloc(c->buf, len);
        if (!p) {
            *rc = BP_ENOMEM;
            snprintf(c->err, c->err_len, "out of memory reading journal %s", c->path);
            return 0;
        }
        c->buf = p;
        c->cap = len;
    }
    n = read_full(c->fd, c->buf, len);
    if (n < 0) {
        *rc = scan_read_error(c, -1);
        return 0;
    }
    if ((size_t)n < len) {
        s->tail = BP_JT_TORN;
        return 0;
    }
    if (bp_crc32(0, c->buf, len) != crc) {
        /* The last record (a write cut by a power loss) or one in the
         * middle (the medium changed what we wrote). */
        s->tail = s->valid_end + REC_HDR + (int64_t)len < s->size ? BP_JT_CORRUPT : BP_JT_TORN;
        return 0;
    }
    c->len = len;
    return 1;
}

int bp_journal_scan(const char *path, const char magic[BP_JOURNAL_MAGIC_LEN], bp_journal_fn fn,
                    void *arg, struct bp_journal_scan *s, char *err, size_t err_len)
{
    memset(s, 0, sizeof *s);
    if (err_len)
        err[0] = '\0';
    struct scan c = {-1, path, s, NULL, 0, 0, err, err_len};
    int rc = scan_open(&c, magic);
    if (rc != BP_OK || c.fd < 0)
        return rc;
    while (next_record(&c, &rc)) {
        if (fn && (rc = fn(arg, c.buf[0], c.buf + 1, c.len - 1)) != 0)
            break;
        s->records++;
        s->valid_end += REC_HDR + (int64_t)c.len;
    }
    if (rc == BP_OK && s->tail == BP_JT_TORN && valid_record_in(c.fd, s->valid_end, s->size))
        s->tail = BP_JT_CORRUPT;
    free(c.buf);
    close(c.fd);
    return rc;
}

struct bp_journal *bp_journal_open(const char *path, const char magic[BP_JOURNAL_MAGIC_LEN],
                                   int64_t keep, char *err, size_t err_len)
{
    struct bp_journal *j = calloc(1, sizeof *j);
    if (!j || !(j->path = strdup(path))) {
        snprintf(err, err_len, "out of memory opening journal %s", path);
        free(j);
        return NULL;
    }
    int flags = O_WRONLY | O_CREAT | O_CLOEXEC | (keep < 0 ? O_TRUNC : 0);
    j->fd = open(path, flags, 0600);
    if (j->fd < 0) {
        snprintf(err, err_len, "cannot write journal %s: %s", path, strerror(errno));
        bp_journal_close(&j, 0);
        return NULL;
    }
    /* A fresh file, or one whose magic never made it: start it anew. */
    if (keep < BP_JOURNAL_MAGIC_LEN)
        keep = 0;
    if (ftruncate(j->fd, (off_t)keep) != 0 || lseek(j->fd, (off_t)keep, SEEK_SET) < 0) {
        snprintf(err, err_len, "cannot write journal %s: %s", path, strerror(errno));
        bp_journal_close(&j, 0);
        return NULL;
    }
    if (keep == 0) {
        j->buf = malloc(BP_JOURNAL_MAGIC_LEN);
        if (!j->buf) {
            snprintf(err, err_len, "out of memory opening journal %s", path);
            bp_journal_close(&j, 0);
            return NULL;
        }
        j->cap = BP_JOURNAL_MAGIC_LEN;
        memcpy(j->buf, magic, BP_JOURNAL_MAGIC_LEN);
        j->len = BP_JOURNAL_MAGIC_LEN;
        if (bp_journal_flush(j, 1) != BP_OK) {
            snprintf(err, err_len, "cannot write journal %s: %s", path, strerror(errno));
            bp_journal_close(&j, 0);
            return NULL;
        }
    }
    return j;
}

int bp_journal_put(struct bp_journal *j, uint8_t type, const void *p, size_t len)
{
    if (len >= BP_JOURNAL_REC_MAX)
        return BP_ETOOBIG;
    size_t need = j->len + REC_HDR + 1 + len;
    if (need > j->cap) {
        size_t cap = j->cap ? j->cap : 4096;
        while (cap < need)
            cap *= 2;
        uint8_t *b = realloc(j->buf, cap);
        if (!b)
            return BP_ENOMEM;
        j->buf = b;
        j->cap = cap;
    }
    uint8_t *r = j->buf + j->len;
    r[REC_HDR] = type;
    if (len)
        memcpy(r + REC_HDR + 1, p, len);
    bp_put_be32(r, (uint32_t)len + 1);
    bp_put_be32(r + 4, bp_crc32(0, r + REC_HDR, len + 1));
    j->len = need;
    return BP_OK;
}

size_t bp_journal_pending(const struct bp_journal *j)
{
    return j->len;
}

int bp_journal_flush(struct bp_journal *j, int sync)
{
    if (j->broken) {
        errno = EIO;
        return BP_EIO;
    }
    size_t off = 0;
    while (off < j->len) {
        ssize_t n = write(j->fd, j->buf + off, j->len - off);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0) {
            if (n == 0)
                errno = EIO;
            j->broken = 1;
            return BP_EIO;
        }
        off += (size_t)n;
    }
    j->len = 0;
    /* Large buffers (a burst of ordered results) are not kept for ever. */
    if (j->cap > ((size_t)4 << 20)) {
        free(j->buf);
        j->buf = NULL;
        j->cap = 0;
    }
    if (sync && fdatasync(j->fd) != 0) {
        j->broken = 1;
        return BP_EIO;
    }
    return BP_OK;
}

int bp_journal_close(struct bp_journal **jp, int unlink_it)
{
    struct bp_journal *j = *jp;
    if (!j)
        return BP_OK;
    *jp = NULL;
    int rc = BP_OK;
    if (j->fd >= 0) {
        if (!unlink_it && j->len && bp_journal_flush(j, 0) != BP_OK)
            rc = BP_EIO;
        if (close(j->fd) != 0)
            rc = BP_EIO;
        if (unlink_it && unlink(j->path) != 0 && errno != ENOENT)
            rc = BP_EIO;
    }
    free(j->buf);
    free(j->path);
    free(j);
    return rc;
}

int bp_journal_refuse_unfinished(const char *base, const char *suffix,
                                 const char magic[BP_JOURNAL_MAGIC_LEN], const char *what)
{
    char path[1024];
    if (bp_journal_path(path, sizeof path, NULL, base, suffix) != BP_OK)
        return BP_EUSAGE;
    struct bp_journal_scan sc;
    char err[64];
    int rc = bp_journal_scan(path, magic, NULL, NULL, &sc, err, sizeof err);
    if (rc == BP_EIO && errno == ENOENT)
        return BP_OK;
    if (rc == BP_EIO) {
        bp_log(BP_LOG_ERROR, "cannot read %s: %s", path, strerror(errno));
        return BP_EIO;
    }
    if (rc != BP_OK || sc.records == 0)
        return BP_OK; /* not a journal of this kind, or nothing in it */
    bp_log(BP_LOG_ERROR,
           "journal %s holds an unfinished batch %s: continue it with --resume, or remove the "
           "journal to start afresh",
           path, what);
    return BP_EUSAGE;
}

int bp_journal_path(char *buf, size_t len, const char *given, const char *base, const char *suffix)
{
    int n = given ? snprintf(buf, len, "%s", given) : snprintf(buf, len, "%s%s", base, suffix);
    if (n < 0 || (size_t)n >= len) {
        bp_log(BP_LOG_ERROR, "journal path too long: %.100s...", given ? given : base);
        return BP_EUSAGE;
    }
    return BP_OK;
}
