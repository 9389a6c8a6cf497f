/* Fuzz target: the input reader (bp_reader_next) on any bytes, in line and
 * NUL mode with a small record limit, through a file descriptor and
 * through a stream without one: both must give the same records, none
 * longer than the limit or holding a separator, one per separator (empty
 * ones too) unless empty records are skipped (--skip-empty). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "bp.h"
#include "bp_input.h"
#include "fuzz.h"

#define MAX_RECS 4096

static char path[256];

static void cleanup(void)
{
    if (path[0])
        unlink(path);
}

struct recs {
    int n, toobig;
    size_t off[MAX_RECS], len[MAX_RECS];
    char *data;
    size_t used;
};

static void read_all(FILE *f, int nul, int skip, size_t max, struct recs *out)
{
    struct bp_reader r;
    if (bp_reader_init(&r, f, nul, max) != BP_OK)
        abort();
    r.skip_empty = skip;
    const char *rec;
    size_t len;
    int rc;
    while ((rc = bp_reader_next(&r, &rec, &len)) != BP_EXIT_INFO) {
        if (rc == BP_ETOOBIG) {
            out->toobig++;
            continue;
        }
        if (rc != BP_OK || len > max || memchr(rec, nul ? '\0' : '\n', len))
            abort();
        if (skip && len == 0)
            abort(); /* empty records are skipped */
        if (out->n < MAX_RECS) {
            out->off[out->n] = out->used;
            out->len[out->n] = len;
            memcpy(out->data + out->used, rec, len);
            out->used += len;
        }
        out->n++;
    }
    bp_reader_free(&r);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 2)
        return 0;
    int nul = data[0] & 1, skip = data[0] >> 1 & 1;
    size_t max = 1 + data[1] % 200;
    data += 2;
    size -= 2;
    if (!path[0]) {
        const char *tmp = getenv("TMPDIR");
        snprintf(path, sizeof path, "%s/bp-fuzz-input-%ld", tmp && *tmp ? tmp : "/tmp",
                 (long)getpid());
        atexit(cleanup);
    }
    FILE *f = fopen(path, "wb");
    if (!f || (size && fwrite(data, 1, size, f) != size) || fclose(f) != 0)
        abort();
    static struct recs a, b;
    static char da[1 << 16], db[1 << 16];
    memset(&a, 0, sizeof a);
    memset(&b, 0, sizeof b);
    a.data = da;
    b.data = db;
    f = fopen(path, "rb");
    if (!f)
        abort();
    read_all(f, nul, skip, max, &a);
    fclose(f);
    /* The same bytes through a stream with no descriptor (fread path). */
    char empty = 0;
    f = fmemopen(size ? (void *)data : &empty, size ? size : 1, "rb");
    if (!f)
        abort();
    if (!size)
        (void)fgetc(f);
    read_all(f, nul, skip, max, &b);
    fclose(f);
    if (a.n != b.n || a.toobig != b.toobig || a.used != b.used || memcmp(da, db, a.used) != 0)
        abort();
    for (int i = 0; i < a.n && i < MAX_RECS; i++)
        if (a.len[i] != b.len[i])
            abort();
    /* Every record counts, the empty ones too: one per separator, and
     * one for what follows the last. */
    if (!skip) {
        int want = 0;
        for (size_t i = 0; i < size; i++)
            want += data[i] == (nul ? '\0' : '\n');
        want += size && data[size - 1] != (nul ? '\0' : '\n');
        if (a.n + a.toobig != want)
            abort();
    }
    return 0;
}

size_t fuzz_seed(int i, uint8_t *buf, size_t cap)
{
    static const char s0[] = "\x00\x10"
                             "hola\naloha\r\nhello\n\nbuenas noches";
    static const char s1[] = "\x01\x08"
                             "one\0two\0three-is-long\0\0four";
    static const char s2[] = "\x00\x03"
                             "ab\nabcd\nabc\nx";
    static const char s3[] = "\x02\x10"
                             "a\n\n\r\nb\n";
    static const struct {
        const char *p;
        size_t n;
    } seeds[] = {
        {s0, sizeof s0 - 1}, {s1, sizeof s1 - 1}, {s2, sizeof s2 - 1}, {s3, sizeof s3 - 1}};
    if (i < 0 || i >= (int)(sizeof seeds / sizeof seeds[0]) || seeds[i].n > cap)
        return 0;
    memcpy(buf, seeds[i].p, seeds[i].n);
    return seeds[i].n;
}
