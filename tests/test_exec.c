/* Unit tests for running task commands (bp_exec.c), driven by a small poll
 * loop like the worker's. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#ifndef BP_EMULATED
#define BP_EMULATED 0
#endif

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
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

/* How long killed processes may take to disappear: SIGKILL is delivered
 * asynchronously; generous for qemu-user on a loaded machine. */
#define GONE_BOUND_MS 30000

static void sleep_ms(long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
        ;
}

/* A process seen in /proc, told apart from a later one with the same pid
 * by its start time (start 0: never seen alive). */
struct proc {
    pid_t pid;
    unsigned long long start;
};

/* Reads state, process group and start time from /proc/PID/stat. Returns
 * 0, or -1 if there is no such process. */
static int proc_stat(pid_t pid, char *state, long *pgrp, unsigned long long *start)
{
    char path[64], buf[1024];
    snprintf(path, sizeof path, "/proc/%ld/stat", (long)pid);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -1;
    ssize_t n = read(fd, buf, sizeof buf - 1);
    close(fd);
    if (n <= 0)
        return -1;
    buf[n] = '\0';
    /* The name in parentheses may hold spaces: fields start after the last ')'. */
    char *p = strrchr(buf, ')');
    if (!p)
        return -1;
    char *save = NULL;
    int i = 0;
    for (char *t = strtok_r(p + 1, " ", &save); t; t = strtok_r(NULL, " ", &save), i++) {
        if (i == 0)
            *state = t[0];
        else if (i == 2)
            *pgrp = strtol(t, NULL, 10);
        else if (i == 19) {
            *start = strtoull(t, NULL, 10);
            return 0;
        }
    }
    return -1;
}

static struct proc proc_get(pid_t pid)
{
    struct proc p = {pid, 0};
    char st;
    long pg;
    if (proc_stat(pid, &st, &pg, &p.start) != 0)
        p.start = 0;
    return p;
}

/* A zombie counts as dead: a killed orphan waits for init (or a
 * subreaper) to reap it, and PID 1 of a container may take its time. */
static int proc_alive(const struct proc *p)
{
    char st;
    long pg;
    unsigned long long start;
    if (p->start == 0 || proc_stat(p->pid, &st, &pg, &start) != 0)
        return 0;
    return start == p->start && st != 'Z' && st != 'X' && st != 'x';
}

static long proc_pgrp(pid_t pid)
{
    char st;
    long pg = -1;
    unsigned long long start;
    if (proc_stat(pid, &st, &pg, &start) != 0)
        return -1;
    return pg;
}

static void expect_gone(const struct proc *p, const char *what)
{
    int64_t end = bp_now_ms() + GONE_BOUND_MS;
    while (proc_alive(p)) {
        if (bp_now_ms() > end)
            fail_msg("%s (pid %ld) still alive %d ms after its job ended", what, (long)p->pid,
                     GONE_BOUND_MS);
        sleep_ms(10);
    }
}

/* Per-test state for the tests that track a task's processes: whatever
 * happens, teardown kills them and removes the temp files. */
struct fx {
    struct bp_job job, job2;
    char dir[256];
    char file[300];
    struct proc procs[8];
    int nprocs;
    pid_t child; /* a stand-in worker process; 0: none */
};

static int setup_fx(void **state)
{
    struct fx *f = calloc(1, sizeof *f);
    if (!f)
        return -1;
    bp_job_init(&f->job, 1 << 20);
    bp_job_init(&f->job2, 1 << 20);
    const char *tmp = getenv("TMPDIR");
    if (!tmp || !*tmp)
        tmp = "/tmp";
    if (snprintf(f->dir, sizeof f->dir, "%s/bp_exec_XXXXXX", tmp) >= (int)sizeof f->dir ||
        !mkdtemp(f->dir) ||
        snprintf(f->file, sizeof f->file, "%s/pids", f->dir) >= (int)sizeof f->file) {
        free(f);
        return -1;
    }
    *state = f;
    return 0;
}

static int teardown_fx(void **state)
{
    struct fx *f = *state;
    int st;
    if (f->child > 0) {
        kill(f->child, SIGKILL);
        while (waitpid(f->child, &st, 0) < 0 && errno == EINTR)
            ;
    }
    for (int i = 0; i < f->nprocs; i++)
        if (proc_alive(&f->procs[i]))
            kill(f->procs[i].pid, SIGKILL);
    bp_job_release(&f->job);
    bp_job_release(&f->job2);
    if (unlink(f->file) != 0 && errno != ENOENT)
        fprintf(stderr, "cannot remove %s: %s\n", f->file, strerror(errno));
    if (rmdir(f->dir) != 0)
        fprintf(stderr, "cannot remove %s: %s\n", f->dir, strerror(errno));
    free(f);
    return 0;
}

/* Records pid for the checks (and for teardown) while it runs. */
static struct proc *fx_track(struct fx *f, pid_t pid)
{
    assert_true(f->nprocs < (int)(sizeof f->procs / sizeof f->procs[0]));
    f->procs[f->nprocs] = proc_get(pid);
    return &f->procs[f->nprocs++];
}

/* Waits until f->file holds n complete lines, and tracks the pid on each:
 * the commands below write their shell's and their children's pids. */
static void fx_wait_pids(struct fx *f, int n)
{
    int64_t end = bp_now_ms() + JOB_BOUND_MS;
    for (;;) {
        char buf[512];
        ssize_t len = 0;
        int fd = open(f->file, O_RDONLY | O_CLOEXEC);
        if (fd >= 0) {
            len = read(fd, buf, sizeof buf - 1);
            close(fd);
        }
        int lines = 0;
        for (ssize_t i = 0; i < len; i++)
            lines += buf[i] == '\n';
        if (lines >= n) {
            buf[len] = '\0';
            char *p = buf;
            for (int i = 0; i < n; i++) {
                char *e;
                long pid = strtol(p, &e, 10);
                if (e == p || *e != '\n' || pid <= 1)
                    fail_msg("bad pid line in '%s'", buf);
                fx_track(f, (pid_t)pid);
                p = e + 1;
            }
            return;
        }
        if (bp_now_ms() > end)
            fail_msg("%s: no %d pids after %d ms", f->file, n, JOB_BOUND_MS);
        sleep_ms(10);
    }
}

/* cmd with every %s replaced by the quoted pid file. */
static void fx_cmd(const struct fx *f, char *buf, size_t size, const char *fmt)
{
    char q[320];
    snprintf(q, sizeof q, "'%s'", f->file);
    size_t o = 0;
    for (const char *p = fmt; *p; p++) {
        const char *add = p[0] == '%' && p[1] == 's' ? q : NULL;
        size_t n = add ? strlen(add) : 1;
        assert_true(o + n < size);
        memcpy(buf + o, add ? add : p, n);
        o += n;
        if (add)
            p++;
    }
    buf[o] = '\0';
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

/* --task-memory: the command runs under RLIMIT_DATA, so an allocation
 * over it fails (as the command's own failure) and one without the limit
 * works. qemu-user does not pass RLIMIT_DATA on (it would limit the
 * emulator itself), so under emulation only the runs are checked. */
static void t_mem_limit(void **state)
{
    struct bp_job *j = *state;
    bp_job_set_mem_limit(j, (uint64_t)32 << 20);
    run(j, "ulimit -d", "", 0, 0);
    assert_int_equal(j->status, BP_ST_OK);
    if (!BP_EMULATED)
        expect_in_result(j, "32768"); /* (KiB) */
    run(j, "dd if=/dev/zero of=/dev/null bs=100M count=1", "", 0, 0);
    if (!BP_EMULATED) {
        assert_int_equal(j->status, BP_ST_FAILED);
        expect_in_result(j, "memory");
    }
    bp_job_set_mem_limit(j, 0);
    run(j, "dd if=/dev/zero of=/dev/null bs=100M count=1 2>/dev/null", "", 0, 0);
    assert_int_equal(j->status, BP_ST_OK);
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
    struct fx *f = *state;
    struct bp_job *j = &f->job;
    int64_t ms = run(j, "sleep 30", "", 0, 200);
    assert_int_equal(j->status, BP_ST_TIMEOUT);
    assert_int_equal(j->code, SIGKILL); /* the signal sent, for the joblog */
    assert_true(ms >= 150);
    if (ms > 10000)
        fail_msg("timeout of 200 ms took %lld ms", (long long)ms);
    expect_in_result(j, "timed out");

    ms = run(j, "sleep 30 | cat; echo never", "", 0, 200);
    assert_int_equal(j->status, BP_ST_TIMEOUT);
    if (ms > 10000)
        fail_msg("timeout of a pipeline took %lld ms", (long long)ms);

    /* The whole process group goes, not just the shell: the shell and a
     * background child write their pids; the job is driven (and so times
     * out) only once both are written. */
    char cmd[1024];
    fx_cmd(f, cmd, sizeof cmd, "echo $$ > %s; sleep 300 & echo $! >> %s; sleep 300 | cat");
    assert_int_equal(bp_job_start(j, cmd, "", 0, 200, bp_now_ms()), BP_OK);
    fx_wait_pids(f, 2);
    assert_true(proc_alive(&f->procs[0]) && proc_alive(&f->procs[1]));
    ms = drive(j, -1);
    assert_int_equal(j->status, BP_ST_TIMEOUT);
    if (ms > 10000)
        fail_msg("timeout with a background child took %lld ms", (long long)ms);
    expect_gone(&f->procs[0], "the shell");
    expect_gone(&f->procs[1], "the background sleep");

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
    struct fx *f = *state;
    struct bp_job *j = &f->job;
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

    /* The shell's children go too. */
    char cmd[1024];
    fx_cmd(f, cmd, sizeof cmd, "echo $$ > %s; sleep 300 & echo $! >> %s; wait");
    assert_int_equal(bp_job_start(j, cmd, "", 0, 0, bp_now_ms()), BP_OK);
    fx_wait_pids(f, 2);
    bp_job_interrupt(j);
    drive(j, -1);
    assert_int_equal(j->status, BP_ST_INTERRUPTED);
    expect_gone(&f->procs[0], "the shell");
    expect_gone(&f->procs[1], "the background sleep");
}

/* A background child of a task that has ended (well or not) does not
 * outlive the job, whether or not it holds the task's stdout, and one
 * holding stdout does not hold the task up for long. */
static void t_background_child(void **state)
{
    struct fx *f = *state;
    struct bp_job *j = &f->job;
    static const char *const cmds[] = {
        "sleep 300 >/dev/null 2>&1 & echo $!", /* pipes closed at once */
        "sleep 300 & echo $!",                 /* the sleep holds stdout */
    };
    for (size_t i = 0; i < sizeof cmds / sizeof cmds[0]; i++) {
        int64_t ms = run(j, cmds[i], "", 0, 0);
        assert_int_equal(j->status, BP_ST_OK);
        if (ms > 10000)
            fail_msg("'%s' took %lld ms", cmds[i], (long long)ms);
        size_t len;
        const uint8_t *r = bp_job_result(j, &len);
        char buf[32];
        assert_true(len > 0 && len < sizeof buf);
        memcpy(buf, r, len);
        buf[len] = '\0';
        char *e;
        long pid = strtol(buf, &e, 10);
        assert_true(*e == '\0' && pid > 1);
        /* Probably dead already, then there is nothing to track. */
        expect_gone(fx_track(f, (pid_t)pid), "the background sleep");
    }

    /* A failed task: the same. */
    char cmd[1024];
    fx_cmd(f, cmd, sizeof cmd, "sleep 300 >/dev/null 2>&1 & echo $! > %s; exit 3");
    assert_int_equal(bp_job_start(j, cmd, "", 0, 0, bp_now_ms()), BP_OK);
    fx_wait_pids(f, 1);
    drive(j, -1);
    assert_int_equal(j->status, BP_ST_FAILED);
    assert_int_equal(j->code, 3);
    expect_gone(&f->procs[f->nprocs - 1], "the background sleep");
}

/* A stand-in worker (a child of the test) starts cmd, which writes
 * npids pids to the pid file, and is then killed with SIGKILL: the guard,
 * the shell and its children must all go. */
static void worker_killed(struct fx *f, const char *fmt, int npids)
{
    char cmd[1024];
    fx_cmd(f, cmd, sizeof cmd, fmt);
    if (unlink(f->file) != 0 && errno != ENOENT)
        fail_msg("unlink %s: %s", f->file, strerror(errno));
    f->nprocs = 0;
    int pp[2];
    assert_int_equal(pipe(pp), 0);
    pid_t w = fork();
    assert_true(w >= 0);
    if (w == 0) {
        /* Only the job here: no cmocka, never return into the test. */
        close(pp[0]);
        struct bp_job job;
        bp_job_init(&job, 4096);
        bp_job_start(&job, cmd, "", 0, 0, bp_now_ms());
        pid_t g = job.done ? -1 : job.pid;
        if (write(pp[1], &g, sizeof g) != (ssize_t)sizeof g)
            _exit(1);
        for (;;)
            pause();
    }
    f->child = w;
    close(pp[1]);
    pid_t g = -1;
    ssize_t r;
    do
        r = read(pp[0], &g, sizeof g);
    while (r < 0 && errno == EINTR);
    close(pp[0]);
    if (r != (ssize_t)sizeof g || g <= 0)
        fail_msg("the stand-in worker could not start '%s'", cmd);
    struct proc *guard = fx_track(f, g);
    fx_wait_pids(f, npids);
    for (int i = 0; i < f->nprocs; i++) {
        if (!proc_alive(&f->procs[i]))
            fail_msg("pid %ld gone before the worker was killed", (long)f->procs[i].pid);
        /* All in the guard's group. */
        assert_int_equal(proc_pgrp(f->procs[i].pid), (long)g);
    }

    assert_int_equal(kill(w, SIGKILL), 0);
    int st;
    while (waitpid(w, &st, 0) < 0)
        assert_int_equal(errno, EINTR);
    f->child = 0;
    assert_true(WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL);
    expect_gone(guard, "the guard");
    for (int i = 1; i < f->nprocs; i++)
        expect_gone(&f->procs[i], i == 1 ? "the shell or its child" : "a child of the shell");
}

static void t_worker_killed(void **state)
{
    struct fx *f = *state;
    /* The shell and its child still running. */
    worker_killed(f, "echo $$ > %s; sleep 300 & echo $! >> %s; wait", 2);
    /* The shell has exited (its status not yet collected by the worker);
     * its orphan still runs, in the group the guard holds. */
    worker_killed(f, "sleep 300 >/dev/null 2>&1 & echo $! > %s", 1);
}

/* A command that cannot be started is reported at once, with the errno. */
static void t_exec_error(void **state)
{
    struct fx *f = *state;
    struct bp_job *j = &f->job;
    bp_job_set_shell(j, "/nonexistent/boardpipe-sh");
    assert_int_equal(bp_job_start(j, "true", "x", 1, 1000, bp_now_ms()), BP_OK);
    assert_int_equal(j->done, 1);
    assert_int_equal(j->status, BP_ST_EXECERR);
    assert_int_equal(j->code, ENOENT);
    assert_int_equal(j->pid, 0);
    expect_in_result(j, "cannot run /nonexistent/boardpipe-sh");
    drive(j, -1); /* done stays done, nothing left open */
    assert_int_equal(j->status, BP_ST_EXECERR);

    /* Not executable (root may run anything with an x bit: none here). */
    int fd = open(f->file, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    assert_true(fd >= 0);
    close(fd);
    bp_job_set_shell(j, f->file);
    assert_int_equal(bp_job_start(j, "true", "", 0, 0, bp_now_ms()), BP_OK);
    assert_int_equal(j->status, BP_ST_EXECERR);
    assert_int_equal(j->code, EACCES);
    expect_in_result(j, "cannot run");

    /* The job works again with the default shell. */
    bp_job_set_shell(j, NULL);
    run(j, "echo ok", "", 0, 0);
    assert_int_equal(j->status, BP_ST_OK);
    expect_result(j, "ok");
}

/* One job's pipes do not leak into another's processes: a later job's
 * guard holding an earlier job's stdin would keep its `cat` waiting for
 * the end of its input. */
static void t_jobs_independent(void **state)
{
    struct fx *f = *state;
    struct bp_job *a = &f->job, *b = &f->job2;
    assert_int_equal(bp_job_start(a, "cat", "abc", 3, 0, bp_now_ms()), BP_OK);
    assert_int_equal(bp_job_start(b, "sleep 300", "", 0, 0, bp_now_ms()), BP_OK);
    int64_t ms = drive(a, -1);
    assert_int_equal(a->status, BP_ST_OK);
    expect_result(a, "abc");
    if (ms > 10000)
        fail_msg("cat took %lld ms next to another job", (long long)ms);
    assert_int_equal(b->done, 0);
    bp_job_interrupt(b);
    drive(b, -1);
    assert_int_equal(b->status, BP_ST_INTERRUPTED);
}

/* The command gets default signal dispositions and an empty signal mask,
 * whatever the worker ignores (SIGPIPE) or blocks. */
static void t_signal_defaults(void **state)
{
    struct fx *f = *state;
    struct bp_job *j = &f->job;
    sigset_t usr1, old;
    sigemptyset(&usr1);
    sigaddset(&usr1, SIGUSR1);
    assert_int_equal(sigprocmask(SIG_BLOCK, &usr1, &old), 0);
    int rc =
        bp_job_start(j, "exec grep -E '^Sig(Blk|Ign):' /proc/self/status", "", 0, 0, bp_now_ms());
    assert_int_equal(sigprocmask(SIG_SETMASK, &old, NULL), 0);
    assert_int_equal(rc, BP_OK);
    drive(j, -1);
    assert_int_equal(j->status, BP_ST_OK);
    expect_result(j, "SigBlk:\t0000000000000000\nSigIgn:\t0000000000000000");
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

/* Releasing a job with a command still running kills its whole group
 * and reaps the guard. */
static void t_release_running(void **state)
{
    struct fx *f = *state;
    struct bp_job *j = &f->job;
    char cmd[1024];
    fx_cmd(f, cmd, sizeof cmd, "echo $$ > %s; sleep 300 & echo $! >> %s; wait");
    int64_t t0 = bp_now_ms();
    assert_int_equal(bp_job_start(j, cmd, "", 0, 0, t0), BP_OK);
    pid_t pid = j->pid;
    assert_true(pid > 0);
    fx_wait_pids(f, 2);
    bp_job_release(j);
    assert_true(bp_now_ms() - t0 < 20000);
    /* Reaped: no such child any more. */
    int st;
    assert_int_equal(waitpid(pid, &st, WNOHANG), -1);
    expect_gone(&f->procs[0], "the shell");
    expect_gone(&f->procs[1], "the background sleep");
    bp_job_init(j, 1 << 20); /* teardown releases it again */
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
        cmocka_unit_test_setup_teardown(t_mem_limit, setup, teardown),
        cmocka_unit_test_setup_teardown(t_stderr_tail, setup, teardown),
        cmocka_unit_test_setup_teardown(t_signaled, setup, teardown),
        cmocka_unit_test_setup_teardown(t_timeout, setup_fx, teardown_fx),
        cmocka_unit_test_setup_teardown(t_no_stdin_read, setup, teardown),
        cmocka_unit_test_setup_teardown(t_interrupt, setup_fx, teardown_fx),
        cmocka_unit_test_setup_teardown(t_background_child, setup_fx, teardown_fx),
        cmocka_unit_test_setup_teardown(t_worker_killed, setup_fx, teardown_fx),
        cmocka_unit_test_setup_teardown(t_exec_error, setup_fx, teardown_fx),
        cmocka_unit_test_setup_teardown(t_jobs_independent, setup_fx, teardown_fx),
        cmocka_unit_test_setup_teardown(t_signal_defaults, setup_fx, teardown_fx),
        cmocka_unit_test_setup_teardown(t_reuse, setup, teardown),
        cmocka_unit_test_setup_teardown(t_release_running, setup_fx, teardown_fx),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
