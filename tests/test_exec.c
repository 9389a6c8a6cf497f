/* Unit tests for running task commands (bp_exec.c), driven by a small poll
 * loop like the worker's. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "bp_exec.h"
#include "bp_frame.h"
#include "bp_internal.h"

/* Overall bound on one job: far above anything expected, even under
 * qemu-user on a loaded machine. */
#define JOB_BOUND_MS 60000

/* Runs the loop until the job is done; optionally interrupts it once
 * interrupt_after_ms has passed. Returns the elapsed time in ms. */
static int64_t drive(struct bp_job *j, int64_t interrupt_after_ms)
{
    int64_t start = bp_now_ms();
    int interrupted = 0;
    for (;;) {
        int64_t now = bp_now_ms(), wake = 0;
        if (bp_job_check(j, now, &wake))
            break;
        if (now - start > JOB_BOUND_MS)
            fail_msg("job not done after %d ms", JOB_BOUND_MS);
        if (interrupt_after_ms >= 0 && !interrupted && now - start >= interrupt_after_ms) {
            bp_job_interrupt(j);
            interrupted = 1;
            continue;
        }
        long timeout = 100;
        if (wake > 0 && wake - now < timeout)
            timeout = wake - now < 0 ? 0 : (long)(wake - now);
        if (interrupt_after_ms >= 0 && !interrupted) {
            int64_t left = start + interrupt_after_ms - now;
            if (left < timeout)
                timeout = left < 0 ? 0 : (long)left;
        }
        zmq_pollitem_t items[3];
        int n = bp_job_pollitems(j, items);
        assert_true(n >= 0 && n <= 3);
        int rc = zmq_poll(items, n, timeout);
        if (rc < 0) {
            assert_int_equal(zmq_errno(), EINTR);
            continue;
        }
        bp_job_io(j, items, n);
    }
    assert_int_equal(j->done, 1);
    assert_int_equal(j->pid, 0);
    assert_int_equal(j->fd_in, -1);
    assert_int_equal(j->fd_out, -1);
    assert_int_equal(j->fd_err, -1);
    return bp_now_ms() - start;
}

static int64_t run(struct bp_job *j, const char *cmd, const void *in, size_t len, int timeout_ms)
{
    assert_int_equal(bp_job_start(j, cmd, in, len, timeout_ms, bp_now_ms()), BP_OK);
    return drive(j, -1);
}

static void expect_result(const struct bp_job *j, const char *want)
{
    size_t len = (size_t)-1;
    const uint8_t *r = bp_job_result(j, &len);
    assert_non_null(r);
    if (len != strlen(want) || memcmp(r, want, len) != 0)
        fail_msg("result '%.*s' (%zu bytes), want '%s'", (int)(len > 200 ? 200 : len),
                 (const char *)r, len, want);
}

/* The result (stderr tail for failures) contains needle. */
static void expect_in_result(const struct bp_job *j, const char *needle)
{
    size_t len;
    const uint8_t *r = bp_job_result(j, &len);
    char buf[BP_ERR_TAIL + 1];
    assert_true(len <= BP_ERR_TAIL);
    memcpy(buf, r, len);
    buf[len] = '\0';
    if (!strstr(buf, needle))
        fail_msg("result '%s' lacks '%s'", buf, needle);
}

static int setup(void **state)
{
    struct bp_job *j = malloc(sizeof *j);
    if (!j)
        return -1;
    bp_job_init(j, 1 << 20);
    *state = j;
    return 0;
}

static int teardown(void **state)
{
    struct bp_job *j = *state;
    bp_job_release(j);
    free(j);
    return 0;
}

static void t_init(void **state)
{
    struct bp_job *j = *state;
    assert_int_equal(j->pid, 0);
    assert_int_equal(j->fd_in, -1);
    assert_int_equal(j->fd_out, -1);
    assert_int_equal(j->fd_err, -1);
    assert_int_equal(j->done, 0);
    zmq_pollitem_t items[3];
    /* An idle job has no pipes. */
    assert_int_equal(bp_job_pollitems(j, items), 0);
}

static void t_upper(void **state)
{
    struct bp_job *j = *state;
    static const char in[] = "hello, World\n";
    run(j, "tr a-z A-Z", in, sizeof in - 1, 0);
    assert_int_equal(j->status, BP_ST_OK);
    assert_int_equal(j->code, 0);
    expect_result(j, "HELLO, WORLD"); /* one trailing newline dropped */
}

static void t_one_newline_dropped(void **state)
{
    struct bp_job *j = *state;
    run(j, "printf 'abc\\n\\n'", "", 0, 0);
    assert_int_equal(j->status, BP_ST_OK);
    expect_result(j, "abc\n");
    run(j, "printf 'no newline'", "x", 1, 0);
    assert_int_equal(j->status, BP_ST_OK);
    expect_result(j, "no newline");
}

static void t_empty(void **state)
{
    struct bp_job *j = *state;
    run(j, "cat", "", 0, 0);
    assert_int_equal(j->status, BP_ST_OK);
    expect_result(j, "");
    run(j, "true", "", 0, 0);
    assert_int_equal(j->status, BP_ST_OK);
    expect_result(j, "");
}

static uint8_t *pattern(size_t n)
{
    uint8_t *p = malloc(n);
    assert_non_null(p);
    for (size_t i = 0; i < n; i++)
        p[i] = (uint8_t)((i * 31 + i / 251) % 251); /* all kinds of bytes, NULs too */
    if (p[n - 1] == '\n')
        p[n - 1] = 'x';
    return p;
}

/* 1 MiB in and out at once: the job must feed stdin while draining stdout,
 * or cat blocks on a full pipe and nothing moves. */
static void t_large_cat(void **state)
{
    struct bp_job *j = *state; /* max_out 1 MiB */
    const size_t n = 1 << 20;
    uint8_t *in = pattern(n);
    run(j, "cat", in, n, 0);
    assert_int_equal(j->status, BP_ST_OK);
    size_t len;
    const uint8_t *r = bp_job_result(j, &len);
    assert_int_equal(len, n);
    assert_memory_equal(r, in, n);
    free(in);
}

static void t_too_big(void **state)
{
    (void)state;
    struct bp_job j;
    bp_job_init(&j, 1000);
    uint8_t *in = pattern(10000);
    run(&j, "cat", in, 10000, 0);
    assert_int_equal(j.status, BP_ST_TOOBIG);
    expect_in_result(&j, "1000");

    /* Far more output than the limit: drained, not buffered, and the
     * command still runs to its end. */
    run(&j, "head -c 3000000 /dev/zero", "", 0, 0);
    assert_int_equal(j.status, BP_ST_TOOBIG);
    assert_true(j.out_cap <= 1001);

    /* Exactly the limit is fine (one more byte is not). */
    run(&j, "cat", in, 1000, 0);
    assert_int_equal(j.status, BP_ST_OK);
    size_t len;
    const uint8_t *r = bp_job_result(&j, &len);
    assert_int_equal(len, 1000);
    assert_memory_equal(r, in, 1000);
    run(&j, "cat", in, 1001, 0);
    assert_int_equal(j.status, BP_ST_TOOBIG);

    /* A failed exit is reported as failed, whatever the output size. */
    run(&j, "cat; exit 2", in, 5000, 0);
    assert_int_equal(j.status, BP_ST_FAILED);
    assert_int_equal(j.code, 2);
    free(in);
    bp_job_release(&j);
}

static void t_failed(void **state)
{
    struct bp_job *j = *state;
    run(j, "echo oops >&2; exit 3", "task", 4, 0);
    assert_int_equal(j->status, BP_ST_FAILED);
    assert_int_equal(j->code, 3);
    expect_in_result(j, "oops");

    run(j, "boardpipe-no-such-command-xyz", "", 0, 0);
    assert_int_equal(j->status, BP_ST_FAILED);
    assert_int_equal(j->code, 127);
    expect_in_result(j, "boardpipe-no-such-command-xyz");
}

/* Only the last BP_ERR_TAIL bytes of stderr are kept. */
static void t_stderr_tail(void **state)
{
    struct bp_job *j = *state;
    run(j,
        "i=0; while [ $i -lt 300 ]; do printf 'line %03d\\n' $i >&2; i=$((i+1)); done;"
        " printf END >&2; exit 1",
        "", 0, 0);
    assert_int_equal(j->status, BP_ST_FAILED);
    assert_int_equal(j->code, 1);
    size_t len;
    const uint8_t *r = bp_job_result(j, &len);
    assert_int_equal(len, BP_ERR_TAIL);
    assert_memory_equal(r + len - 3, "END", 3);
    assert_memory_equal(r + len - 3 - 9, "line 299\n", 9);
}

static void t_signaled(void **state)
{
    struct bp_job *j = *state;
    run(j, "kill -9 $$", "", 0, 0);
    assert_int_equal(j->status, BP_ST_SIGNALED);
    assert_int_equal(j->code, SIGKILL);
    run(j, "kill -TERM $$", "x", 1, 0);
    assert_int_equal(j->status, BP_ST_SIGNALED);
    assert_int_equal(j->code, SIGTERM);
}

static void t_timeout(void **state)
{
    struct bp_job *j = *state;
    int64_t ms = run(j, "sleep 30", "", 0, 200);
    assert_int_equal(j->status, BP_ST_TIMEOUT);
    assert_true(ms >= 150);
    if (ms > 10000)
        fail_msg("timeout of 200 ms took %lld ms", (long long)ms);
    expect_in_result(j, "timed out");

    /* The whole process group goes, not just the shell. */
    ms = run(j, "sleep 30 | cat; echo never", "", 0, 200);
    assert_int_equal(j->status, BP_ST_TIMEOUT);
    if (ms > 10000)
        fail_msg("timeout of a pipeline took %lld ms", (long long)ms);

    /* A quick command with a timeout is fine. */
    run(j, "cat", "quick", 5, 30000);
    assert_int_equal(j->status, BP_ST_OK);
    expect_result(j, "quick");
}

/* A command that never reads its input: writing to its stdin fails with
 * EPIPE, which is not an error (the worker ignores SIGPIPE, as here). */
static void t_no_stdin_read(void **state)
{
    struct bp_job *j = *state;
    const size_t n = 1 << 20;
    uint8_t *in = pattern(n);
    run(j, "echo done", in, n, 0);
    assert_int_equal(j->status, BP_ST_OK);
    expect_result(j, "done");
    run(j, "exec 0<&-; sleep 0.2; echo later", in, n, 0);
    assert_int_equal(j->status, BP_ST_OK);
    expect_result(j, "later");
    /* Reads a bit, then stops. */
    run(j, "head -c 10", in, n, 0);
    assert_int_equal(j->status, BP_ST_OK);
    size_t len;
    const uint8_t *r = bp_job_result(j, &len);
    assert_true(len == 10 || (len == 9 && in[9] == '\n'));
    assert_memory_equal(r, in, len);
    free(in);
}

static void t_interrupt(void **state)
{
    struct bp_job *j = *state;
    assert_int_equal(bp_job_start(j, "sleep 30", "", 0, 0, bp_now_ms()), BP_OK);
    assert_true(j->pid > 0);
    int64_t ms = drive(j, 100);
    assert_int_equal(j->status, BP_ST_INTERRUPTED);
    if (ms > 10000)
        fail_msg("interrupt took %lld ms", (long long)ms);
    expect_in_result(j, "interrupted");
    /* Interrupting a finished job changes nothing. */
    bp_job_interrupt(j);
    assert_int_equal(j->status, BP_ST_INTERRUPTED);
    assert_int_equal(j->done, 1);
}

/* A background grandchild keeping stdout open does not hold the task up
 * for long once the command itself has exited. */
static void t_grandchild_holds_pipes(void **state)
{
    struct bp_job *j = *state;
    assert_int_equal(bp_job_start(j, "sleep 20 & echo hi", "", 0, 0, bp_now_ms()), BP_OK);
    pid_t pgid = j->pid;
    int64_t ms = drive(j, -1);
    kill(-pgid, SIGKILL); /* the orphan sleep */
    assert_int_equal(j->status, BP_ST_OK);
    expect_result(j, "hi");
    if (ms > 10000)
        fail_msg("task with a background child took %lld ms", (long long)ms);
}

/* One job runs many tasks in turn; its buffer is reused. */
static void t_reuse(void **state)
{
    struct bp_job *j = *state;
    char in[64], want[64];
    for (int i = 0; i < 20; i++) {
        int n = snprintf(in, sizeof in, "task number %d", i);
        snprintf(want, sizeof want, "TASK NUMBER %d", i);
        run(j, i % 2 ? "tr a-z A-Z" : "tr a-z A-Z; echo", in, (size_t)n, 5000);
        assert_int_equal(j->status, BP_ST_OK);
        if (i % 2)
            expect_result(j, want);
        else {
            size_t len;
            const uint8_t *r = bp_job_result(j, &len);
            assert_int_equal(len, (size_t)n);
            assert_memory_equal(r, want, (size_t)n);
        }
    }
}

/* Releasing a job with a command still running kills and reaps it. */
static void t_release_running(void **state)
{
    (void)state;
    struct bp_job j;
    bp_job_init(&j, 100);
    int64_t t0 = bp_now_ms();
    assert_int_equal(bp_job_start(&j, "sleep 30", "", 0, 0, t0), BP_OK);
    pid_t pid = j.pid;
    assert_true(pid > 0);
    bp_job_release(&j);
    assert_true(bp_now_ms() - t0 < 10000);
    /* Reaped: no such child any more. */
    int st;
    assert_int_equal(waitpid(pid, &st, WNOHANG), -1);
}

int main(void)
{
    /* Like the worker: a command closing its stdin must not kill us. */
    signal(SIGPIPE, SIG_IGN);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(t_init, setup, teardown),
        cmocka_unit_test_setup_teardown(t_upper, setup, teardown),
        cmocka_unit_test_setup_teardown(t_one_newline_dropped, setup, teardown),
        cmocka_unit_test_setup_teardown(t_empty, setup, teardown),
        cmocka_unit_test_setup_teardown(t_large_cat, setup, teardown),
        cmocka_unit_test(t_too_big),
        cmocka_unit_test_setup_teardown(t_failed, setup, teardown),
        cmocka_unit_test_setup_teardown(t_stderr_tail, setup, teardown),
        cmocka_unit_test_setup_teardown(t_signaled, setup, teardown),
        cmocka_unit_test_setup_teardown(t_timeout, setup, teardown),
        cmocka_unit_test_setup_teardown(t_no_stdin_read, setup, teardown),
        cmocka_unit_test_setup_teardown(t_interrupt, setup, teardown),
        cmocka_unit_test_setup_teardown(t_grandchild_holds_pipes, setup, teardown),
        cmocka_unit_test_setup_teardown(t_reuse, setup, teardown),
        cmocka_unit_test(t_release_running),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
