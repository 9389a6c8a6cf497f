/* bp_path: which names from peers are taken, and that files opened
 * beneath a directory never leave it, whatever symlinks are planted. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
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
#include "bp_path.h"

static int ok(const char *s, int one)
{
    return bp_path_check(s, strlen(s), one) == BP_OK;
}

static void t_names(void **state)
{
    (void)state;
    const char *good[] = {"a",   "a/b/c.txt", "with space", "q'uo\"te", "new\nline", "\xff\xfe.bin",
                          "..a", "a..",       ".hidden",    "a/.b/c"};
    for (size_t i = 0; i < sizeof good / sizeof good[0]; i++)
        assert_true(ok(good[i], 0));
    const char *bad[] = {"",     "/abs", "a//b",   "a/",      "./a",       "a/./b", "..",
                         "../x", "a/..", "a/../b", ".bp-tmp", ".bp-tmp/x", "."};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        assert_false(ok(bad[i], 0));
    assert_int_equal(bp_path_check("a\0b", 3, 0), BP_EPROTO); /* NUL inside */
    assert_false(ok("a/b", 1));
    assert_true(ok("a", 1));
    char big[BP_NAME_MAX + 2];
    memset(big, 'x', sizeof big);
    for (int i = 200; i < (int)sizeof big; i += 200)
        big[i] = '/';
    assert_int_equal(bp_path_check(big, BP_NAME_MAX, 0), BP_OK);
    assert_int_equal(bp_path_check(big, BP_NAME_MAX + 1, 0), BP_EPROTO);
    char part[300];
    memset(part, 'y', sizeof part);
    assert_int_equal(bp_path_check(part, 255, 0), BP_OK);
    assert_int_equal(bp_path_check(part, 256, 0), BP_EPROTO);
    char deep[64] = "";
    for (int i = 0; i < BP_NAME_PARTS; i++)
        strcat(deep, i ? "/d" : "d");
    assert_true(ok(deep, 0));
    strcat(deep, "/d");
    assert_false(ok(deep, 0));
    char buf[BP_NAME_MAX + 1];
    assert_int_equal(bp_path_copy(buf, "a/b", 3, 0), BP_OK);
    assert_string_equal(buf, "a/b");
    assert_int_equal(bp_path_copy(buf, "../b", 4, 0), BP_EPROTO);
}

static char dir[64];

static int setup(void **state)
{
    (void)state;
    snprintf(dir, sizeof dir, "/tmp/bp-test-path-XXXXXX");
    return mkdtemp(dir) ? 0 : -1;
}

static int teardown(void **state)
{
    (void)state;
    return bp_path_rmtree(dir);
}

static void t_beneath(void **state)
{
    (void)state;
    char out[128], p[256];
    snprintf(out, sizeof out, "%s/outside", dir);
    assert_int_equal(mkdir(out, 0755), 0);
    snprintf(p, sizeof p, "%s/root", dir);
    assert_int_equal(mkdir(p, 0755), 0);
    int root = open(p, O_RDONLY | O_DIRECTORY);
    assert_true(root >= 0);
    /* made with its directories */
    int fd = bp_path_open_beneath(root, "x/y/z.txt", O_WRONLY | O_CREAT | O_EXCL, 0644, 1);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, "hi", 2), 2);
    close(fd);
    /* without mkdirs a missing directory is an error */
    assert_int_equal(bp_path_open_beneath(root, "no/such", O_RDONLY, 0, 0), -ENOENT);
    /* a planted symlink to outside, as a directory and as the file */
    assert_int_equal(symlinkat(out, root, "link"), 0);
    assert_int_equal(bp_path_open_beneath(root, "link/f", O_WRONLY | O_CREAT, 0644, 1), -ENOTDIR);
    assert_true(bp_path_open_beneath(root, "link", O_RDONLY, 0, 0) < 0);
    char f[256];
    snprintf(f, sizeof f, "%s/secret", out);
    fd = open(f, O_WRONLY | O_CREAT, 0600);
    assert_true(fd >= 0);
    close(fd);
    assert_int_equal(symlinkat(f, root, "s"), 0);
    assert_int_equal(bp_path_open_beneath(root, "s", O_WRONLY | O_TRUNC, 0, 0), -ELOOP);
    struct stat st;
    assert_int_equal(stat(out, &st), 0);
    snprintf(f, sizeof f, "%s/f", out);
    assert_int_equal(access(f, F_OK), -1); /* nothing was made outside */
    /* the parent of a one-part name is the directory itself */
    const char *leaf;
    int d = bp_path_parent_beneath(root, "top", 0, &leaf);
    assert_true(d >= 0);
    assert_string_equal(leaf, "top");
    close(d);
    /* same bytes */
    int a = bp_path_open_beneath(root, "x/y/z.txt", O_RDONLY, 0, 0);
    int b = bp_path_open_beneath(root, "c.txt", O_RDWR | O_CREAT, 0644, 0);
    assert_true(a >= 0 && b >= 0);
    assert_int_equal(write(b, "hi", 2), 2);
    assert_int_equal(bp_path_same_bytes(a, b), 1);
    assert_int_equal(write(b, "!", 1), 1);
    assert_int_equal(bp_path_same_bytes(a, b), 0);
    close(a);
    close(b);
    close(root);
    /* rmtree removes the tree and leaves the symlinks' targets alone */
    assert_int_equal(bp_path_rmtree(p), 0);
    assert_int_equal(access(p, F_OK), -1);
    snprintf(f, sizeof f, "%s/secret", out);
    assert_int_equal(access(f, F_OK), 0);
}

int main(void)
{
    bp_log_init("test_path", BP_LOG_ERROR);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(t_names),
        cmocka_unit_test_setup_teardown(t_beneath, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
