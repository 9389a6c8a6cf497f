/* Unit tests for the metrics file (bp_metrics.c): the Prometheus text
 * format node_exporter's textfile collector reads, label escaping, and the
 * write-then-rename that keeps readers from seeing half a file. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "bp.h"
#include "bp_metrics.h"

static char dir[64], path[128];

static int setup(void **state)
{
    (void)state;
    snprintf(dir, sizeof dir, "/tmp/bp-test-metrics-XXXXXX");
    if (!mkdtemp(dir))
        return -1;
    snprintf(path, sizeof path, "%s/worker.prom", dir);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    unlink(path);
    return rmdir(dir);
}

static char *slurp(const char *p)
{
    static char buf[8192];
    FILE *f = fopen(p, "r");
    assert_non_null(f);
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = '\0';
    return buf;
}

static void t_format(void **state)
{
    (void)state;
    const struct bp_metric m[] = {
        {"boardpipe_worker_tasks_done_total", "Tasks run with an ok result.", BP_COUNTER, 12345},
        {"boardpipe_worker_busy_slots", "Tasks running now.", BP_GAUGE, 2},
        {"boardpipe_worker_last_task_timestamp_seconds", "When.", BP_GAUGE, 1764000000.25},
    };
    char err[320];
    assert_int_equal(bp_metrics_write(path, "worker", "pi-7", m, 3, err, sizeof err), BP_OK);
    const char *t = slurp(path);
    assert_string_equal(t, "# HELP boardpipe_worker_tasks_done_total Tasks run with an ok result.\n"
                           "# TYPE boardpipe_worker_tasks_done_total counter\n"
                           "boardpipe_worker_tasks_done_total{worker=\"pi-7\"} 12345\n"
                           "# HELP boardpipe_worker_busy_slots Tasks running now.\n"
                           "# TYPE boardpipe_worker_busy_slots gauge\n"
                           "boardpipe_worker_busy_slots{worker=\"pi-7\"} 2\n"
                           "# HELP boardpipe_worker_last_task_timestamp_seconds When.\n"
                           "# TYPE boardpipe_worker_last_task_timestamp_seconds gauge\n"
                           "boardpipe_worker_last_task_timestamp_seconds{worker=\"pi-7\"} "
                           "1764000000.25\n");
    /* No label at all, and the temporary file is gone. */
    assert_int_equal(bp_metrics_write(path, NULL, NULL, m + 1, 1, err, sizeof err), BP_OK);
    assert_non_null(strstr(slurp(path), "\nboardpipe_worker_busy_slots 2\n"));
    char tmp[160];
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    assert_int_not_equal(access(tmp, F_OK), 0);
}

static void t_escapes(void **state)
{
    (void)state;
    const struct bp_metric m = {"x_total", "h", BP_COUNTER, 1};
    char err[320];
    assert_int_equal(bp_metrics_write(path, "worker", "a\"b\\c\nd\033[2Je", &m, 1, err, sizeof err),
                     BP_OK);
    assert_non_null(strstr(slurp(path), "x_total{worker=\"a\\\"b\\\\c\\nd[2Je\"} 1\n"));
}

static void t_errors(void **state)
{
    (void)state;
    const struct bp_metric m = {"x_total", "h", BP_COUNTER, 1};
    char err[320] = "";
    char bad[160];
    snprintf(bad, sizeof bad, "%s/no/such/dir/m.prom", dir);
    assert_int_equal(bp_metrics_write(bad, NULL, NULL, &m, 1, err, sizeof err), BP_EIO);
    assert_non_null(strstr(err, "no/such/dir"));
    /* An old file stays whole when the new one cannot be written. */
    assert_int_equal(bp_metrics_write(path, NULL, NULL, &m, 1, err, sizeof err), BP_OK);
    if (geteuid() != 0) { /* root writes anywhere: the mode test means nothing */
        chmod(dir, 0500);
        assert_int_equal(bp_metrics_write(path, NULL, NULL, &m, 1, err, sizeof err), BP_EIO);
        chmod(dir, 0700);
    }
    assert_non_null(strstr(slurp(path), "x_total 1\n"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(t_format, setup, teardown),
        cmocka_unit_test_setup_teardown(t_escapes, setup, teardown),
        cmocka_unit_test_setup_teardown(t_errors, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
