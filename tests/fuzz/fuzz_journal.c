/* Fuzz target: the journal reader (bp_journal_scan) on any file, then
 * reopening it cut to what was accepted, which must scan clean with the
 * same records. A journal is local, but it is what --resume trusts after
 * a power cut: a damaged one must be reported, never crash or be
 * half-believed. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "bp.h"
#include "bp_journal.h"
#include "fuzz.h"

static const char MAGIC[BP_JOURNAL_MAGIC_LEN] = {'b', 'p', 'v', 'j', 'r', 'n', '1', '\n'};
static char path[256];

static void cleanup(void)
{
    if (path[0])
        unlink(path);
}

static int count_rec(void *arg, uint8_t type, const uint8_t *p, size_t len)
{
    unsigned x = type;
    for (size_t i = 0; i < len; i++)
        x += p[i];
    ++*(int64_t *)arg;
    return x == 0xdeadbeefu; /* (never: keeps the reads) */
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!path[0]) {
        const char *tmp = getenv("TMPDIR");
        snprintf(path, sizeof path, "%s/bp-fuzz-journal-%ld", tmp && *tmp ? tmp : "/tmp",
                 (long)getpid());
        atexit(cleanup);
    }
    FILE *f = fopen(path, "wb");
    if (!f)
        abort();
    if (size && fwrite(data, 1, size, f) != size)
        abort();
    if (fclose(f) != 0)
        abort();
    struct bp_journal_scan s;
    char err[600];
    int64_t seen = 0;
    int rc = bp_journal_scan(path, MAGIC, count_rec, &seen, &s, err, sizeof err);
    if (rc != BP_OK)
        return 0; /* not a journal (of this kind): said so in err */
    if (seen != s.records || s.valid_end > s.size || s.valid_end < 0 ||
        (s.tail == BP_JT_CLEAN && s.size > BP_JOURNAL_MAGIC_LEN && s.valid_end != s.size))
        abort();
    struct bp_journal *j = bp_journal_open(path, MAGIC, s.valid_end, err, sizeof err);
    if (!j || bp_journal_close(&j, 0) != BP_OK)
        abort();
    struct bp_journal_scan s2;
    int64_t again = 0;
    if (bp_journal_scan(path, MAGIC, count_rec, &again, &s2, err, sizeof err) != BP_OK ||
        again != s.records || s2.tail != BP_JT_CLEAN)
        abort();
    return 0;
}

/* A record as bp_journal_put() writes it. */
static size_t rec(uint8_t *b, uint8_t type, const void *p, size_t len)
{
    b[8] = type;
    memcpy(b + 9, p, len);
    bp_put_be32(b, (uint32_t)len + 1);
    bp_put_be32(b + 4, bp_crc32(0, b + 8, len + 1));
    return 9 + len;
}

size_t fuzz_seed(int i, uint8_t *buf, size_t cap)
{
    if (i > 2 || cap < 512)
        return 0;
    size_t n = BP_JOURNAL_MAGIC_LEN;
    memcpy(buf, MAGIC, n);
    uint8_t p[64];
    bp_put_be64(p, 0x1234);
    n += rec(buf + n, 'B', p, 8);
    if (i == 0)
        return n;
    bp_put_be64(p, 10);
    bp_put_be64(p + 8, 0xcbf29ce484222325ull);
    n += rec(buf + n, 'I', p, 16);
    for (int k = 0; k < 3; k++) {
        bp_put_be64(p + 9 * k, (uint64_t)k);
        p[9 * k + 8] = 1;
    }
    n += rec(buf + n, 'F', p, 27);
    if (i == 2)
        n += rec(buf + n, 'F', p, 9);
    return n;
}
