/* bp_vfiles: descriptors made from --files paths, base files hashed, and
 * every CHUNK read from disk as it is asked for, with a file that changed
 * or vanished since it was described caught, never shipped torn. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "bp.h"
#include "bp_frame.h"
#include "bp_path.h"
#include "bp_sha256.h"
#include "bp_vfiles.h"

static char dir[64];

static int setup(void **state)
{
    (void)state;
    snprintf(dir, sizeof dir, "/tmp/bp-test-vfiles-XXXXXX");
    if (!mkdtemp(dir) || chdir(dir) != 0)
        return -1;
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    if (chdir("/") != 0)
        return -1;
    return bp_path_rmtree(dir);
}

static void put_file(const char *name, const void *p, size_t len)
{
    FILE *f = fopen(name, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(p, 1, len, f), len);
    assert_int_equal(fclose(f), 0);
}

/* Asks for [off, off + len) of the file behind desc; returns the status. */
static int ask(struct bp_vfiles *vf, const uint8_t *desc, size_t dlen, uint64_t off, uint32_t len,
               struct bp_pack *pk, struct bp_chunk *c)
{
    struct bp_fetch_req r = {.rid = (const uint8_t *)"W",
                             .rid_len = 1,
                             .f = {7, 2, BP_FK_TASK, len, off},
                             .data = desc,
                             .len = dlen};
    int st = bp_vfiles_chunk(vf, &r, 42, pk);
    struct bp_msg m;
    assert_int_equal(bp_msg_decode(&m, pk->p, pk->len, 0), BP_OK);
    assert_int_equal(m.type, BP_MSG_CHUNK);
    assert_int_equal(m.batch, 42);
    bp_msg_chunk(&m, c);
    assert_int_equal(c->id, 7);
    assert_int_equal(c->attempt, 2);
    assert_int_equal(c->status, st);
    return st;
}

static void t_describe_and_ship(void **state)
{
    (void)state;
    static uint8_t data[200000];
    for (size_t i = 0; i < sizeof data; i++)
        data[i] = (uint8_t)(i * 7 + 3);
    assert_int_equal(mkdir("sub", 0755), 0);
    put_file("sub/a b.bin", data, sizeof data);
    char err[256];
    struct bp_vfiles *vf = bp_vfiles_new(NULL, err, sizeof err);
    assert_non_null(vf);
    const uint8_t *d;
    size_t dl;
    int e = 0;
    assert_int_equal(bp_vfiles_describe(vf, "sub/a b.bin", 11, &d, &dl, &e), BP_OK);
    struct bp_file_desc fd;
    assert_int_equal(bp_file_desc_parse(d, dl, &fd), BP_OK);
    assert_int_equal(fd.size, sizeof data);
    assert_int_equal(fd.name_len, 11);
    assert_memory_equal(fd.name, "sub/a b.bin", 11);
    uint8_t desc[512];
    memcpy(desc, d, dl);
    struct bp_pack pk;
    bp_pack_init(&pk);
    struct bp_chunk c;
    uint64_t off = 0;
    while (off < sizeof data) {
        assert_int_equal(ask(vf, desc, dl, off, BP_CHUNK_BYTES, &pk, &c), BP_CK_DATA);
        assert_int_equal(c.offset, off);
        assert_memory_equal(c.data, data + off, c.len);
        off += c.len;
    }
    assert_int_equal(ask(vf, desc, dl, off, 10, &pk, &c), BP_CK_DATA);
    assert_int_equal(c.len, 0); /* at the end: no bytes */
    assert_int_equal(ask(vf, desc, dl, off + 1, 10, &pk, &c), BP_CK_ERROR);
    struct bp_vfiles_stats s;
    bp_vfiles_stats(vf, &s);
    assert_int_equal(s.files, 1);
    assert_int_equal(s.bytes, sizeof data);
    /* changed: one byte more */
    data[0] ^= 1;
    put_file("sub/a b.bin", data, sizeof data + 0);
    struct stat st;
    assert_int_equal(stat("sub/a b.bin", &st), 0);
    put_file("sub/a b.bin", data, sizeof data - 1);
    assert_int_equal(ask(vf, desc, dl, 0, 100, &pk, &c), BP_CK_CHANGED);
    assert_int_equal(c.len, 0);
    /* vanished */
    assert_int_equal(unlink("sub/a b.bin"), 0);
    assert_int_equal(ask(vf, desc, dl, 0, 100, &pk, &c), BP_CK_ERROR);
    assert_int_equal(c.code, ENOENT);
    /* refused */
    struct bp_fetch_req r = {.f = {7, 2, BP_FK_TASK, 10, 0}, .refused = 1};
    assert_int_equal(bp_vfiles_chunk(vf, &r, 42, &pk), BP_CK_REFUSED);
    /* describe: an absolute path ships under its last part; bad paths */
    char abs[128];
    snprintf(abs, sizeof abs, "%s/x.txt", dir);
    put_file("x.txt", "x", 1);
    assert_int_equal(bp_vfiles_describe(vf, abs, strlen(abs), &d, &dl, &e), BP_OK);
    assert_int_equal(bp_file_desc_parse(d, dl, &fd), BP_OK);
    assert_memory_equal(fd.name, "x.txt", 5);
    assert_memory_equal(fd.path, abs, strlen(abs));
    assert_int_equal(bp_vfiles_describe(vf, "./sub/../x.txt", 14, &d, &dl, &e), BP_OK);
    assert_int_equal(bp_file_desc_parse(d, dl, &fd), BP_OK);
    assert_memory_equal(fd.name, "x.txt", 5); /* ".." in it: the last part */
    assert_int_equal(bp_vfiles_describe(vf, "././x.txt", 9, &d, &dl, &e), BP_OK);
    assert_int_equal(bp_file_desc_parse(d, dl, &fd), BP_OK);
    assert_int_equal(fd.name_len, 5); /* find's "./" dropped */
    assert_int_equal(bp_vfiles_describe(vf, "nope", 4, &d, &dl, &e), BP_EIO);
    assert_int_equal(e, ENOENT);
    assert_int_equal(bp_vfiles_describe(vf, "sub", 3, &d, &dl, &e), BP_EIO);
    assert_int_equal(e, EISDIR);
    assert_int_equal(bp_vfiles_describe(vf, "x\0y", 3, &d, &dl, &e), BP_EIO);
    assert_int_equal(bp_vfiles_describe(vf, "", 0, &d, &dl, &e), BP_EIO);
    bp_pack_free(&pk);
    bp_vfiles_destroy(&vf);
    assert_null(vf);
}

static void t_base_files(void **state)
{
    (void)state;
    put_file("model.dat", "weights", 7);
    put_file("lut.bin", "", 0);
    struct bp_strlist l = {{"model.dat", "lut.bin"}, 2};
    char err[256];
    struct bp_vfiles *vf = bp_vfiles_new(&l, err, sizeof err);
    assert_non_null(vf);
    const uint8_t *body;
    size_t len;
    uint32_t n;
    bp_vfiles_base(vf, &body, &len, &n);
    assert_int_equal(n, 2);
    uint8_t msg[256];
    memcpy(msg, "bp\3\20\0\0\0\2\0\0\0\0\0\0\0\0", BP_MSG_HDR);
    memcpy(msg + BP_MSG_HDR, body, len);
    struct bp_msg m;
    assert_int_equal(bp_msg_decode(&m, msg, BP_MSG_HDR + len, 0), BP_OK);
    size_t off = 0;
    struct bp_base_rec b;
    assert_true(bp_msg_next_base(&m, &off, &b));
    uint8_t want[BP_SHA256_LEN];
    struct bp_sha256 h;
    bp_sha256_init(&h);
    bp_sha256_update(&h, "weights", 7);
    bp_sha256_final(&h, want);
    assert_memory_equal(b.sha256, want, BP_SHA256_LEN);
    assert_int_equal(b.size, 7);
    assert_memory_equal(b.name, "model.dat", 9);
    assert_true(bp_msg_next_base(&m, &off, &b));
    assert_int_equal(b.size, 0);
    struct bp_pack pk;
    bp_pack_init(&pk);
    struct bp_fetch_req r = {.f = {0, 0, BP_FK_BASE, 100, 0}};
    assert_int_equal(bp_vfiles_chunk(vf, &r, 1, &pk), BP_CK_DATA);
    bp_pack_free(&pk);
    bp_vfiles_destroy(&vf);
    /* refused at start: a missing one, a directory, two of one name */
    struct bp_strlist bad1 = {{"missing"}, 1}, bad2 = {{"/tmp"}, 1},
                      bad3 = {{"model.dat", "./model.dat"}, 2};
    assert_null(bp_vfiles_new(&bad1, err, sizeof err));
    assert_non_null(strstr(err, "missing"));
    assert_null(bp_vfiles_new(&bad2, err, sizeof err));
    assert_null(bp_vfiles_new(&bad3, err, sizeof err));
    assert_non_null(strstr(err, "already"));
}

int main(void)
{
    bp_log_init("test_vfiles", BP_LOG_ERROR);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(t_describe_and_ship, setup, teardown),
        cmocka_unit_test_setup_teardown(t_base_files, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
