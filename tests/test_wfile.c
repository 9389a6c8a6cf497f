/* Unit tests for the worker's files (bp_wfile.c): GNU parallel's
 * replacement strings and quoting, scratch directories, --return
 * collection (missing, symlinks, limits, globs). */
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
#include "bp_wfile.h"

static void expect_subst(const char *cmd, const char *name, int quote, const char *want)
{
    char *out = NULL;
    assert_int_equal(bp_wfile_subst(cmd, name, strlen(name), 42, quote, &out), BP_OK);
    assert_string_equal(out, want);
    free(out);
}

/* The same as `parallel --dry-run` prints (GNU parallel 20221122). */
static void t_subst(void **state)
{
    (void)state;
    expect_subst("echo {} {/} {.} {/.} {#}", "a b'c.txt", 1,
                 "echo 'a b'\"'\"'c.txt' 'a b'\"'\"'c.txt' 'a b'\"'\"'c' 'a b'\"'\"'c' 42");
    expect_subst("echo {} {/} {.} {/.}", "dir/x y.tar.gz", 1,
                 "echo 'dir/x y.tar.gz' 'x y.tar.gz' 'dir/x y.tar' 'x y.tar'");
    expect_subst("echo {} {.}", "plain.txt", 1, "echo plain.txt plain");
    expect_subst("echo {.} {/.}", ".hidden", 1, "echo '' ''");
    expect_subst("echo {.}", "dir.d/file", 1, "echo dir.d/file");
    expect_subst("echo {}", "x=y", 1, "echo 'x=y'");
    expect_subst("echo {}", "a+b", 1, "echo a+b");
    expect_subst("echo {}", "nl\nx", 1, "echo 'nl\nx'");
    expect_subst("{/.}.out {} {{}} {x}", "d/a.jpg", 0, "a.out d/a.jpg {d/a.jpg} {x}");
    assert_true(bp_wfile_has_repl("x {/.} y"));
    assert_false(bp_wfile_has_repl("x {/ y {x}"));
}

static void touch(int dirfd, const char *name, size_t size)
{
    int fd = bp_path_open_beneath(dirfd, name, O_WRONLY | O_CREAT | O_EXCL, 0644, 1);
    assert_true(fd >= 0);
    if (size)
        assert_int_equal(ftruncate(fd, (off_t)size), 0);
    close(fd);
}

static void t_collect(void **state)
{
    (void)state;
    char base[] = "/tmp/bp-test-wfile-XXXXXX";
    assert_non_null(mkdtemp(base));
    char dir[4096];
    int dfd = bp_wfile_scratch_make(base, 3, 1, dir, sizeof dir);
    assert_true(dfd >= 0);
    touch(dfd, "a.out", 5);
    touch(dfd, "sub/b.out", 7);
    touch(dfd, "big", 100);
    assert_int_equal(symlinkat("/etc/passwd", dfd, "link"), 0);
    struct bp_strlist p = {.v = {"{/.}.out", "sub/*.out", "*.none"}, .n = 3};
    struct bp_wret r[4];
    int n = 0, why_code = 0;
    char why[256];
    assert_int_equal(
        bp_wfile_collect(dfd, dir, &p, "x/a.jpg", 7, 4, 4, 50, r, &n, &why_code, why, sizeof why),
        BP_OK);
    assert_int_equal(n, 2);
    assert_string_equal(r[0].name, "a.out");
    assert_string_equal(r[1].name, "sub/b.out");
    assert_int_equal(r[1].size, 7);
    assert_true(bp_wfile_unchanged(r[0].fd, r[0].size, r[0].mtime_ns));
    bp_wfile_close_rets(r, n);
    const char *bad[] = {"missing", "link", "big", "sub"};
    int codes[] = {BP_FE_MISSING, BP_FE_NAME, BP_FE_SIZE, BP_FE_NAME};
    for (int i = 0; i < 4; i++) {
        struct bp_strlist q = {.v = {"a.out", bad[i]}, .n = 2};
        assert_int_equal(
            bp_wfile_collect(dfd, dir, &q, "a", 1, 1, 4, 50, r, &n, &why_code, why, sizeof why),
            BP_EIO);
        assert_int_equal(why_code, codes[i]);
        assert_non_null(strstr(why, bad[i]));
    }
    struct bp_strlist q = {.v = {"*"}, .n = 1};
    assert_int_equal(
        bp_wfile_collect(dfd, dir, &q, "a", 1, 1, 1, 500, r, &n, &why_code, why, sizeof why),
        BP_EIO);
    assert_int_equal(why_code, BP_FE_COUNT); /* a.out, then big: one too many */
    close(dfd);
    /* a dead pid's directory is swept, ours is not */
    char stale[4200];
    snprintf(stale, sizeof stale, "%s/bp-99999999-1.1", base);
    assert_int_equal(mkdir(stale, 0700), 0);
    assert_int_equal(bp_wfile_scratch_sweep(base), 1);
    assert_int_equal(access(stale, F_OK), -1);
    assert_int_equal(access(dir, F_OK), 0);
    assert_int_equal(bp_path_rmtree(base), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(t_subst),
        cmocka_unit_test(t_collect),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
