/* Unit tests for the journal file (bp_journal.c): records round-trip, a
 * torn or corrupt tail is found and cut, nothing else is accepted as a
 * journal, and random damage never crashes the reader. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "bp.h"
#include "bp_journal.h"

static const char MAGIC[BP_JOURNAL_MAGIC_LEN] = {'b', 'p', 't', 'e', 's', 't', '1', '\n'};

static char dir[64];
static char path[96];

static int setup(void **state)
{
    (void)state;
    snprintf(dir, sizeof dir, "/tmp/bp-test-journal-XXXXXX");
    if (!mkdtemp(dir))
        return -1;
    snprintf(path, sizeof path, "%s/j", dir);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    unlink(path);
    return rmdir(dir);
}

struct seen {
    int n;
    uint8_t type[64];
    size_t len[64];
    uint8_t first[64];
    int stop_at; /* return 7 at this record (-1 never) */
};

static int collect(void *arg, uint8_t type, const uint8_t *p, size_t len)
{
    struct seen *s = arg;
    if (s->n == s->stop_at)
        return 7;
    if (s->n < 64) {
        s->type[s->n] = type;
        s->len[s->n] = len;
        s->first[s->n] = len ? p[0] : 0;
    }
    s->n++;
    return 0;
}

static int64_t file_size(void)
{
    struct stat st;
    assert_int_equal(stat(path, &st), 0);
    return st.st_size;
}

static void set_size(int64_t size)
{
    assert_int_equal(truncate(path, (off_t)size), 0);
}

static void flip(int64_t at)
{
    int fd = open(path, O_RDWR);
    assert_true(fd >= 0);
    uint8_t b;
    assert_int_equal(pread(fd, &b, 1, at), 1);
    b ^= 0x20;
    assert_int_equal(pwrite(fd, &b, 1, at), 1);
    close(fd);
}

/* Three records of 1, 0 and 300 payload bytes; returns the offsets where
 * each ends. */
static void write_three(int64_t end[3])
{
    char err[200];
    struct bp_journal *j = bp_journal_open(path, MAGIC, -1, err, sizeof err);
    assert_non_null(j);
    uint8_t big[300];
    memset(big, 'z', sizeof big);
    assert_int_equal(bp_journal_put(j, 1, "a", 1), BP_OK);
    assert_int_equal(bp_journal_put(j, 2, NULL, 0), BP_OK);
    assert_int_equal(bp_journal_pending(j), (size_t)(8 + 2) + (8 + 1));
    assert_int_equal(bp_journal_flush(j, 0), BP_OK);
    assert_int_equal(bp_journal_pending(j), 0);
    assert_int_equal(bp_journal_put(j, 3, big, sizeof big), BP_OK);
    assert_int_equal(bp_journal_close(&j, 0), BP_OK); /* close flushes */
    assert_null(j);
    end[0] = 8 + 8 + 2;
    end[1] = end[0] + 8 + 1;
    end[2] = end[1] + 8 + 301;
    assert_int_equal(file_size(), end[2]);
}

static void t_checksums(void **state)
{
    (void)state;
    assert_int_equal(bp_crc32(0, "123456789", 9), 0xCBF43926u);
    assert_int_equal(bp_crc32(bp_crc32(0, "1234", 4), "56789", 5), 0xCBF43926u);
    assert_int_equal(bp_crc32(0, "", 0), 0);
    assert_true(bp_fnv64(BP_FNV64_INIT, "", 0) == BP_FNV64_INIT);
    assert_true(bp_fnv64(BP_FNV64_INIT, "a", 1) == 0xaf63dc4c8601ec8cull);
    uint8_t b[8];
    bp_put_be64(b, 0x0102030405060708ull);
    assert_int_equal(b[0], 1);
    assert_int_equal(b[7], 8);
    assert_true(bp_get_be64(b) == 0x0102030405060708ull);
    bp_put_be32(b, 0xA1B2C3D4u);
    assert_int_equal(b[0], 0xA1);
    assert_int_equal(bp_get_be32(b), 0xA1B2C3D4u);
}

static void t_roundtrip(void **state)
{
    (void)state;
    int64_t end[3];
    write_three(end);
    struct seen s = {.stop_at = -1};
    struct bp_journal_scan sc;
    char err[200];
    assert_int_equal(bp_journal_scan(path, MAGIC, collect, &s, &sc, err, sizeof err), BP_OK);
    assert_int_equal(s.n, 3);
    assert_int_equal(sc.records, 3);
    assert_int_equal(sc.tail, BP_JT_CLEAN);
    assert_int_equal(sc.valid_end, end[2]);
    assert_int_equal(sc.size, end[2]);
    assert_int_equal(s.type[0], 1);
    assert_int_equal(s.len[0], 1);
    assert_int_equal(s.first[0], 'a');
    assert_int_equal(s.type[1], 2);
    assert_int_equal(s.len[1], 0);
    assert_int_equal(s.type[2], 3);
    assert_int_equal(s.len[2], 300);
    assert_int_equal(s.first[2], 'z');

    /* Reopened to append after what is there. */
    struct bp_journal *j = bp_journal_open(path, MAGIC, sc.valid_end, err, sizeof err);
    assert_non_null(j);
    assert_int_equal(bp_journal_put(j, 4, "xy", 2), BP_OK);
    assert_int_equal(bp_journal_flush(j, 1), BP_OK);
    assert_int_equal(bp_journal_close(&j, 0), BP_OK);
    memset(&s, 0, sizeof s);
    s.stop_at = -1;
    assert_int_equal(bp_journal_scan(path, MAGIC, collect, &s, &sc, err, sizeof err), BP_OK);
    assert_int_equal(s.n, 4);
    assert_int_equal(s.type[3], 4);
    assert_int_equal(sc.tail, BP_JT_CLEAN);

    /* The callback can stop the scan, and its code comes back. */
    memset(&s, 0, sizeof s);
    s.stop_at = 1;
    assert_int_equal(bp_journal_scan(path, MAGIC, collect, &s, &sc, err, sizeof err), 7);
    assert_int_equal(s.n, 1);

    /* Opening anew replaces it; closing with unlink removes it. */
    j = bp_journal_open(path, MAGIC, -1, err, sizeof err);
    assert_non_null(j);
    assert_int_equal(file_size(), BP_JOURNAL_MAGIC_LEN);
    assert_int_equal(bp_journal_close(&j, 1), BP_OK);
    assert_int_equal(access(path, F_OK), -1);
}

/* A write cut anywhere inside the last record: the first two survive,
 * the tail is reported torn, and reopening at valid_end cuts it off. */
static void t_torn_tail(void **state)
{
    (void)state;
    int64_t end[3];
    char err[200];
    write_three(end);
    for (int64_t size = end[2] - 1; size > end[1]; size -= 37) {
        write_three(end);
        set_size(size);
        struct seen s = {.stop_at = -1};
        struct bp_journal_scan sc;
        assert_int_equal(bp_journal_scan(path, MAGIC, collect, &s, &sc, err, sizeof err), BP_OK);
        assert_int_equal(s.n, 2);
        assert_int_equal(sc.records, 2);
        assert_int_equal(sc.tail, BP_JT_TORN);
        assert_int_equal(sc.valid_end, end[1]);
        assert_int_equal(sc.size, size);
        struct bp_journal *j = bp_journal_open(path, MAGIC, sc.valid_end, err, sizeof err);
        assert_non_null(j);
        assert_int_equal(file_size(), end[1]);
        assert_int_equal(bp_journal_put(j, 9, "k", 1), BP_OK);
        assert_int_equal(bp_journal_close(&j, 0), BP_OK);
        memset(&s, 0, sizeof s);
        s.stop_at = -1;
        assert_int_equal(bp_journal_scan(path, MAGIC, collect, &s, &sc, err, sizeof err), BP_OK);
        assert_int_equal(s.n, 3);
        assert_int_equal(s.type[2], 9);
        assert_int_equal(sc.tail, BP_JT_CLEAN);
    }
    /* Cut inside the header of the last record. */
    write_three(end);
    set_size(end[1] + 5);
    struct bp_journal_scan sc;
    assert_int_equal(bp_journal_scan(path, MAGIC, NULL, NULL, &sc, err, sizeof err), BP_OK);
    assert_int_equal(sc.records, 2);
    assert_int_equal(sc.tail, BP_JT_TORN);
}

/* A flipped byte: in the last record it reads as a torn tail; in an
 * earlier one as corruption with records after it. */
static void t_flipped_byte(void **state)
{
    (void)state;
    int64_t end[3];
    char err[200];
    struct bp_journal_scan sc;
    write_three(end);
    flip(end[2] - 10); /* payload of the last record */
    assert_int_equal(bp_journal_scan(path, MAGIC, NULL, NULL, &sc, err, sizeof err), BP_OK);
    assert_int_equal(sc.records, 2);
    assert_int_equal(sc.tail, BP_JT_TORN);
    assert_int_equal(sc.valid_end, end[1]);

    write_three(end);
    flip(end[0] + 8); /* the type byte of the second record */
    assert_int_equal(bp_journal_scan(path, MAGIC, NULL, NULL, &sc, err, sizeof err), BP_OK);
    assert_int_equal(sc.records, 1);
    assert_int_equal(sc.tail, BP_JT_CORRUPT);
    assert_int_equal(sc.valid_end, end[0]);

    write_three(end);
    flip(end[0] + 4); /* the checksum of the second record */
    assert_int_equal(bp_journal_scan(path, MAGIC, NULL, NULL, &sc, err, sizeof err), BP_OK);
    assert_int_equal(sc.tail, BP_JT_CORRUPT);

    /* A damaged length in the middle (over the limit, or past the end):
     * valid records follow, so it is damage, not a torn tail. */
    write_three(end);
    flip(end[0]); /* top byte of the second record's length */
    assert_int_equal(bp_journal_scan(path, MAGIC, NULL, NULL, &sc, err, sizeof err), BP_OK);
    assert_int_equal(sc.records, 1);
    assert_int_equal(sc.tail, BP_JT_CORRUPT);
    write_three(end);
    flip(end[0] + 3); /* low byte: a wrong length whose checksum fails */
    assert_int_equal(bp_journal_scan(path, MAGIC, NULL, NULL, &sc, err, sizeof err), BP_OK);
    assert_int_equal(sc.tail, BP_JT_CORRUPT);

    /* A length over the limit is never allocated: a torn tail. */
    write_three(end);
    flip(end[1]); /* top byte of the last record's length: 0x20 << 24 */
    assert_int_equal(bp_journal_scan(path, MAGIC, NULL, NULL, &sc, err, sizeof err), BP_OK);
    assert_int_equal(sc.records, 2);
    assert_int_equal(sc.tail, BP_JT_TORN);
}

static void t_not_a_journal(void **state)
{
    (void)state;
    char err[200];
    struct bp_journal_scan sc;
    /* missing */
    errno = 0;
    assert_int_equal(bp_journal_scan(path, MAGIC, NULL, NULL, &sc, err, sizeof err), BP_EIO);
    assert_int_equal(errno, ENOENT);
    assert_non_null(strstr(err, "cannot read journal"));
    /* empty (killed before the magic was written): nothing in it */
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fclose(f);
    assert_int_equal(bp_journal_scan(path, MAGIC, NULL, NULL, &sc, err, sizeof err), BP_OK);
    assert_int_equal(sc.records, 0);
    assert_int_equal(sc.tail, BP_JT_CLEAN);
    /* another kind of journal, a text file, a short magic */
    const char other[BP_JOURNAL_MAGIC_LEN] = {'b', 'p', 't', 'e', 's', 't', '2', '\n'};
    struct bp_journal *j = bp_journal_open(path, other, -1, err, sizeof err);
    assert_non_null(j);
    assert_int_equal(bp_journal_close(&j, 0), BP_OK);
    assert_int_equal(bp_journal_scan(path, MAGIC, NULL, NULL, &sc, err, sizeof err), BP_EPROTO);
    assert_non_null(strstr(err, "not a boardpipe journal"));
    f = fopen(path, "w");
    assert_non_null(f);
    fputs("hello world, this is text\n", f);
    fclose(f);
    assert_int_equal(bp_journal_scan(path, MAGIC, NULL, NULL, &sc, err, sizeof err), BP_EPROTO);
    f = fopen(path, "w");
    assert_non_null(f);
    fputs("bpt", f);
    fclose(f);
    assert_int_equal(bp_journal_scan(path, MAGIC, NULL, NULL, &sc, err, sizeof err), BP_EPROTO);
    /* a directory that does not exist: open fails with a reason */
    char bad[128];
    snprintf(bad, sizeof bad, "%s/no/such/dir/j", dir);
    assert_null(bp_journal_open(bad, MAGIC, -1, err, sizeof err));
    assert_non_null(strstr(err, "cannot write journal"));
    /* too big a record is refused before anything is queued */
    j = bp_journal_open(path, MAGIC, -1, err, sizeof err);
    assert_non_null(j);
    assert_int_equal(bp_journal_put(j, 1, "", BP_JOURNAL_REC_MAX), BP_ETOOBIG);
    assert_int_equal(bp_journal_pending(j), 0);
    assert_int_equal(bp_journal_close(&j, 1), BP_OK);
}

static void t_path(void **state)
{
    (void)state;
    char buf[16];
    assert_int_equal(bp_journal_path(buf, sizeof buf, NULL, "out.txt", ".journal"), BP_OK);
    assert_string_equal(buf, "out.txt.journal");
    assert_int_equal(bp_journal_path(buf, sizeof buf, "j", "out.txt", ".journal"), BP_OK);
    assert_string_equal(buf, "j");
    assert_int_equal(bp_journal_path(buf, sizeof buf, NULL, "outfile.txt", ".journal"), BP_EUSAGE);
    assert_int_equal(bp_journal_path(buf, sizeof buf, "0123456789abcdef", "o", ".j"), BP_EUSAGE);
}

/* Random damage after a valid start: the reader never crashes, never
 * reads past what it reports, and what it accepts it accepts again. */
static void t_random_damage(void **state)
{
    (void)state;
    char err[200];
    unsigned seed = 12345;
    for (int round = 0; round < 300; round++) {
        struct bp_journal *j = bp_journal_open(path, MAGIC, -1, err, sizeof err);
        assert_non_null(j);
        int nrec = (int)(rand_r(&seed) % 20);
        uint8_t buf[200];
        for (int i = 0; i < nrec; i++) {
            size_t len = (size_t)(rand_r(&seed) % sizeof buf);
            for (size_t k = 0; k < len; k++)
                buf[k] = (uint8_t)rand_r(&seed);
            assert_int_equal(bp_journal_put(j, (uint8_t)i, buf, len), BP_OK);
        }
        assert_int_equal(bp_journal_close(&j, 0), BP_OK);
        int64_t size = file_size();
        int damage = (int)(rand_r(&seed) % 4);
        if (damage == 1 && size > BP_JOURNAL_MAGIC_LEN)
            flip(BP_JOURNAL_MAGIC_LEN + (int64_t)(rand_r(&seed) % (unsigned)(size - 8)));
        else if (damage == 2 && size > BP_JOURNAL_MAGIC_LEN)
            set_size(BP_JOURNAL_MAGIC_LEN + (int64_t)(rand_r(&seed) % (unsigned)(size - 8)));
        else if (damage == 3) {
            FILE *f = fopen(path, "ab");
            assert_non_null(f);
            int n = (int)(rand_r(&seed) % 40);
            for (int k = 0; k < n; k++)
                putc(rand_r(&seed) & 0xff, f);
            fclose(f);
        }
        struct seen s = {.stop_at = -1};
        struct bp_journal_scan sc;
        assert_int_equal(bp_journal_scan(path, MAGIC, collect, &s, &sc, err, sizeof err), BP_OK);
        assert_true(sc.records <= nrec);
        assert_int_equal(s.n, sc.records);
        assert_true(sc.valid_end <= sc.size);
        if (damage == 0)
            assert_true(sc.records == nrec && sc.tail == BP_JT_CLEAN);
        /* Cut to what was accepted: a clean journal with the same records. */
        j = bp_journal_open(path, MAGIC, sc.valid_end, err, sizeof err);
        assert_non_null(j);
        assert_int_equal(bp_journal_close(&j, 0), BP_OK);
        struct bp_journal_scan sc2;
        assert_int_equal(bp_journal_scan(path, MAGIC, NULL, NULL, &sc2, err, sizeof err), BP_OK);
        assert_int_equal(sc2.records, sc.records);
        assert_int_equal(sc2.tail, BP_JT_CLEAN);
    }
}

#define T(f) cmocka_unit_test_setup_teardown(f, setup, teardown)

int main(void)
{
    const struct CMUnitTest tests[] = {
        T(t_checksums),     T(t_roundtrip), T(t_torn_tail),     T(t_flipped_byte),
        T(t_not_a_journal), T(t_path),      T(t_random_damage),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
