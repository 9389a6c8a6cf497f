/* Unit tests for the sink's returned files (bp_sinkfiles.c) in a
 * temporary directory: PUT chunks written and answered, a result's
 * uploads checked (torn, conflicts: other bytes, a planted symlink, a
 * directory, a name taken earlier in the same turn), the commit, the
 * roll-forward of --resume and the evidence kept. No sockets: PUTACKs
 * are caught by the send hook. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "bp.h"
#include "bp_frame.h"
#include "bp_path.h"
#include "bp_rbook.h"
#include "bp_sinkfiles.h"

#define BATCH 0x42

static char dir[256];
static struct bp_putack_rec last; /* the last PUTACK record sent */
static int nacks;

static int f_send(void *arg, const uint8_t *rid, size_t rid_len, const void *data, size_t len)
{
    (void)arg;
    (void)rid;
    (void)rid_len;
    struct bp_msg m;
    assert_int_equal(bp_msg_decode(&m, data, len, 0), BP_OK);
    assert_int_equal(m.type, BP_MSG_PUTACK);
    size_t off = 0;
    while (bp_msg_next_putack(&m, &off, &last))
        nacks++;
    return BP_OK;
}

static struct bp_sinkfiles *make(const char *d, uint64_t max)
{
    struct bp_sinkfiles_cfg c = {
        .dir = d, .max_size = max, .stale_ms = 3000, .sync = BP_SYNC_NONE, .send = f_send};
    char err[300];
    struct bp_sinkfiles *f = bp_sinkfiles_new(&c, err, sizeof err);
    assert_non_null(f);
    return f;
}

static void write_file(const char *rel, const char *data)
{
    char p[600];
    snprintf(p, sizeof p, "%s/%s", dir, rel);
    FILE *fp = fopen(p, "wb");
    assert_non_null(fp);
    fputs(data, fp);
    fclose(fp);
}

static int file_is(const char *rel, const char *data)
{
    char p[600], buf[256] = "";
    snprintf(p, sizeof p, "%s/%s", dir, rel);
    FILE *fp = fopen(p, "rb");
    if (!fp)
        return 0;
    size_t n = fread(buf, 1, sizeof buf - 1, fp);
    fclose(fp);
    return n == strlen(data) && memcmp(buf, data, n) == 0;
}

static int exists(const char *rel)
{
    char p[600];
    struct stat st;
    snprintf(p, sizeof p, "%s/%s", dir, rel);
    return lstat(p, &st) == 0;
}

/* One whole upload of data as (id, attempt 1, idx) in one chunk. */
static void upload(struct bp_sinkfiles *f, const struct bp_rbook *rb, uint64_t id, uint8_t idx,
                   const char *name, const char *data)
{
    struct bp_pack p;
    bp_pack_init(&p);
    bp_pack_begin(&p, BP_MSG_PUT, BATCH);
    struct bp_put u = {.id = id,
                       .attempt = 1,
                       .idx = idx,
                       .size = strlen(data),
                       .name = name,
                       .name_len = (uint16_t)strlen(name),
                       .len = (uint32_t)strlen(data)};
    uint8_t *d = bp_pack_put_reserve(&p, &u);
    assert_non_null(d);
    memcpy(d, data, u.len);
    assert_int_equal(bp_pack_finish(&p), BP_OK);
    struct bp_msg m;
    assert_int_equal(bp_msg_decode(&m, p.p, p.len, 0), BP_OK);
    bp_sinkfiles_put(f, (const uint8_t *)"W", 1, &m, rb, 1, 0);
    bp_sinkfiles_flush(f);
    bp_pack_free(&p);
}

static struct bp_result_rec res(uint64_t id, int nfiles)
{
    struct bp_result_rec r = {.id = id,
                              .attempt = 1,
                              .status = BP_ST_OK,
                              .flags = BP_RF_FINAL | BP_RF_FILES,
                              .nfiles = (uint8_t)nfiles};
    return r;
}

static int setup(void **state)
{
    (void)state;
    snprintf(dir, sizeof dir, "/tmp/bp-test-sinkfiles-XXXXXX");
    assert_non_null(mkdtemp(dir));
    nacks = 0;
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    bp_path_rmtree(dir);
    return 0;
}

static void t_not_a_directory(void **state)
{
    (void)state;
    write_file("plain", "x");
    char p[600], err[300] = "";
    snprintf(p, sizeof p, "%s/plain", dir);
    struct bp_sinkfiles_cfg c = {.dir = p, .max_size = 10, .stale_ms = 1, .send = f_send};
    assert_null(bp_sinkfiles_new(&c, err, sizeof err));
    assert_non_null(strstr(err, "not a directory"));
    /* missing: made */
    snprintf(p, sizeof p, "%s/new", dir);
    c.dir = p;
    struct bp_sinkfiles *f = bp_sinkfiles_new(&c, err, sizeof err);
    assert_non_null(f);
    assert_true(exists("new"));
    bp_sinkfiles_destroy(&f);
    assert_null(f);
}

/* Written, checked, accepted, committed; other contents conflict, the
 * same contents are kept; .bp-tmp goes at the end. */
static void t_commit_and_conflicts(void **state)
{
    (void)state;
    struct bp_sinkfiles *f = make(dir, 1 << 20);
    struct bp_rbook rb;
    bp_rbook_init(&rb);
    assert_int_equal(bp_rbook_close(&rb, 10), 1);
    bp_sinkfiles_begin(f, BATCH, 0);
    assert_true(exists(".bp-tmp"));
    write_file("taken", "old");
    write_file("same", "same");
    char why[300];
    upload(f, &rb, 0, 0, "a/b/new", "new bytes");
    assert_int_equal(last.status, BP_PA_OK);
    assert_int_equal(last.received, 9);
    upload(f, &rb, 0, 1, "same", "same");
    struct bp_result_rec r = res(0, 2);
    assert_int_equal(bp_sinkfiles_check(f, &r, why, sizeof why), BP_SF_READY);
    assert_int_equal(bp_sinkfiles_accept(f, &r), 2);
    assert_false(exists("a/b/new")); /* not before the commit */
    /* the same name in the same turn with other bytes: a conflict */
    upload(f, &rb, 1, 0, "a/b/new", "other");
    r = res(1, 1);
    assert_int_equal(bp_sinkfiles_check(f, &r, why, sizeof why), BP_SF_CONFLICT);
    assert_string_equal(why, "exists with other contents: a/b/new");
    bp_sinkfiles_drop(f, 1);
    upload(f, &rb, 2, 0, "taken", "new");
    r = res(2, 1);
    assert_int_equal(bp_sinkfiles_check(f, &r, why, sizeof why), BP_SF_CONFLICT);
    bp_sinkfiles_commit(f);
    assert_true(file_is("a/b/new", "new bytes"));
    assert_true(file_is("same", "same"));
    assert_true(file_is("taken", "old"));
    assert_int_equal(f->files, 2);
    assert_int_equal(f->conflicts, 2);
    /* a torn result: one of two */
    upload(f, &rb, 3, 0, "t", "t");
    r = res(3, 2);
    assert_int_equal(bp_sinkfiles_check(f, &r, why, sizeof why), BP_SF_TORN);
    assert_int_equal(f->torn, 1);
    bp_sinkfiles_end(f);
    assert_false(exists(".bp-tmp"));
    bp_sinkfiles_destroy(&f);
    bp_rbook_free(&rb);
}

/* A symlink planted in the tree, or a directory in the way: conflicts;
 * nothing is written through the link. */
static void t_symlink_and_directory(void **state)
{
    (void)state;
    char out[600], o2[600], link[600], adir[600];
    snprintf(out, sizeof out, "%s/elsewhere", dir);
    snprintf(o2, sizeof o2, "%s/out", dir);
    snprintf(link, sizeof link, "%s/out/in", dir);
    snprintf(adir, sizeof adir, "%s/out/adir", dir);
    assert_int_equal(mkdir(out, 0755), 0);
    assert_int_equal(mkdir(o2, 0755), 0);
    assert_int_equal(symlink(out, link), 0);
    assert_int_equal(mkdir(adir, 0755), 0);
    struct bp_sinkfiles *f = make(o2, 100);
    struct bp_rbook rb;
    bp_rbook_init(&rb);
    assert_int_equal(bp_rbook_close(&rb, 10), 1);
    bp_sinkfiles_begin(f, BATCH, 0);
    char why[300];
    upload(f, &rb, 0, 0, "in/x", "escape");
    struct bp_result_rec r = res(0, 1);
    assert_int_equal(bp_sinkfiles_check(f, &r, why, sizeof why), BP_SF_CONFLICT);
    upload(f, &rb, 1, 0, "adir", "x");
    r = res(1, 1);
    assert_int_equal(bp_sinkfiles_check(f, &r, why, sizeof why), BP_SF_CONFLICT);
    /* too big, foreign, early, already final */
    upload(f, &rb, 2, 0, "big",
           "0123456789012345678901234567890123456789012345678901234567890123"
           "4567890123456789012345678901234567890123456789");
    assert_int_equal(last.status, BP_PA_REFUSED);
    assert_int_equal(last.code, BP_FE_SIZE);
    int before = nacks;
    upload(f, &rb, 1u << 30, 0, "far", "x");
    assert_int_equal(nacks, before); /* unanswered */
    uint8_t k;
    assert_int_equal(bp_rbook_result(&rb, 5, 1, 1, 1, &k), BP_RB_ACCEPT);
    upload(f, &rb, 5, 0, "late", "late");
    assert_int_equal(last.status, BP_PA_OK);
    assert_int_equal(last.received, 4);
    bp_sinkfiles_end(f);
    char p[700];
    snprintf(p, sizeof p, "%s/x", out);
    assert_int_equal(access(p, F_OK), -1); /* nothing through the link */
    bp_sinkfiles_destroy(&f);
    bp_rbook_free(&rb);
}

/* --resume: an accepted upload still in .bp-tmp is renamed; one whose
 * name holds the same bytes is removed; one whose name holds other bytes
 * is kept in .bp-kept; the rest of .bp-tmp goes. */
static void t_roll_forward(void **state)
{
    (void)state;
    struct bp_sinkfiles *f = make(dir, 100);
    struct bp_rbook rb;
    bp_rbook_init(&rb);
    assert_int_equal(bp_rbook_close(&rb, 10), 1);
    bp_sinkfiles_begin(f, BATCH, 0);
    upload(f, &rb, 0, 0, "r0", "zero");
    upload(f, &rb, 1, 0, "r1", "one");
    upload(f, &rb, 2, 0, "r2", "two");
    upload(f, &rb, 3, 0, "r3", "never accepted");
    bp_sinkfiles_destroy(&f); /* (killed: the temporaries stay) */
    write_file("r1", "one");
    write_file("r2", "TWO");
    f = make(dir, 100);
    bp_sinkfiles_begin(f, BATCH, 1);
    bp_sinkfiles_restore(f, 0, 1, 0, "r0");
    bp_sinkfiles_restore(f, 1, 1, 0, "r1");
    bp_sinkfiles_restore(f, 2, 1, 0, "r2");
    bp_sinkfiles_restore(f, 7, 1, 0, "r7"); /* (placed before the crash) */
    bp_sinkfiles_restored(f);
    assert_true(file_is("r0", "zero"));
    assert_true(file_is("r1", "one"));
    assert_true(file_is("r2", "TWO"));
    assert_false(exists("r3"));
    assert_int_equal(f->rolled, 2);
    assert_int_equal(f->kept, 1);
    char kept[80];
    snprintf(kept, sizeof kept, ".bp-kept/%016x.2.1.0", BATCH);
    assert_true(file_is(kept, "two"));
    char tmp[600];
    snprintf(tmp, sizeof tmp, "%s/.bp-tmp", dir);
    assert_int_equal(rmdir(tmp), 0); /* (empty) */
    bp_sinkfiles_destroy(&f);
    bp_rbook_free(&rb);
}

/* Without --output-dir every upload is refused (write error). */
static void t_no_output_dir(void **state)
{
    (void)state;
    struct bp_sinkfiles *f = make(NULL, 100);
    struct bp_rbook rb;
    bp_rbook_init(&rb);
    bp_sinkfiles_begin(f, BATCH, 0);
    upload(f, &rb, 0, 0, "x", "x");
    assert_int_equal(last.status, BP_PA_REFUSED);
    assert_int_equal(last.code, BP_FE_WRITE);
    struct bp_result_rec r = res(0, 1);
    char why[64];
    assert_int_equal(bp_sinkfiles_check(f, &r, why, sizeof why), BP_SF_TORN);
    bp_sinkfiles_end(f);
    bp_sinkfiles_destroy(&f);
    bp_rbook_free(&rb);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(t_not_a_directory, setup, teardown),
        cmocka_unit_test_setup_teardown(t_commit_and_conflicts, setup, teardown),
        cmocka_unit_test_setup_teardown(t_symlink_and_directory, setup, teardown),
        cmocka_unit_test_setup_teardown(t_roll_forward, setup, teardown),
        cmocka_unit_test_setup_teardown(t_no_output_dir, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
