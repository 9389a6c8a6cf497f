/* The three role loops in one process: each role on a thread of its own,
 * all over inproc:// in one context (protocol v2: the ventilator's ROUTER,
 * the workers' DEALERs, the sink's ROUTER, acknowledgements back to the
 * ventilator).
 *
 * Every test runs in a fixture: teardown stops every thread still running
 * (its stop flag), joins it and frees everything, so a failed assertion
 * neither hangs the program nor leaks. The test thread only ever waits for
 * a role with a generous deadline. */
#include <dirent.h>
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>
#include <zmq.h>

#include "bp.h"
#include "bp_frame.h"

/* Longest wait for one role to end. Runs take well under a second here;
 * this only bounds a hang (qemu runs are ~10x slower). */
#define WAIT_MS 60000
/* Heartbeats every 100 ms keep the start quick, but a peer is given up for
 * dead only after 100 of them are missed (10 s), and a result only counts
 * as lost without the sink's acknowledgement after 60 s: a thread starved
 * on a loaded machine under qemu must not look dead (its tasks would be
 * redelivered). No case here tests those timeouts. */
#define LIVENESS "100"
#define ACK_TIMEOUT "60s"
#define MAX_WORKERS 4

struct run {
    pthread_t th;
    int started;
    enum bp_role role;
    char name[16];
    struct bp_opts o;
    struct bp_io io;
    volatile sig_atomic_t stop;
    struct bp_report rep;
    int rc;
    atomic_int done;
    char exec[512];   /* o.exec points here */
    char status[128]; /* o.status_file points here when set */
};

struct pipeline {
    void *ctx;
    char tasks[64], results[64];
    struct run vent, sink;
    struct run workers[MAX_WORKERS];
    int nworkers;
    FILE *outf; /* the sink's output */
    char *out;
    size_t outlen;
    FILE *in; /* the ventilator's input */
    char *inbuf;
    void *catcher; /* stands in for the sink with --sink none */
    char dir[64];  /* scratch directory, removed with its files */
};

static void *role_main(void *p)
{
    struct run *r = p;
    switch (r->role) {
    case BP_ROLE_VENTILATOR:
        r->rc = bp_ventilator_run(&r->o, &r->io, &r->rep);
        break;
    case BP_ROLE_WORKER:
        r->rc = bp_worker_run(&r->o, &r->io, &r->rep);
        break;
    case BP_ROLE_SINK:
        r->rc = bp_sink_run(&r->o, &r->io, &r->rep);
        break;
    }
    atomic_store(&r->done, 1);
    return NULL;
}

static void sleep_ms(long ms)
{
    struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0)
        ;
}

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Parses a NULL-terminated argument list into r->o. Only flags and
 * numbers may be given here: string options would point into argv, which
 * ends with this function (endpoints and commands are set afterwards). */
static void parse(struct run *r, enum bp_role role, const char *const *args)
{
    char *argv[32];
    char storage[32][64];
    int argc = 0;
    snprintf(storage[argc], sizeof storage[argc], "test");
    argv[argc] = storage[argc];
    argc++;
    for (int i = 0; args && args[i]; i++, argc++) {
        assert_true(argc < 31);
        assert_true(strlen(args[i]) < sizeof storage[argc]);
        snprintf(storage[argc], sizeof storage[argc], "%s", args[i]);
        argv[argc] = storage[argc];
    }
    argv[argc] = NULL;
    char *envp[] = {NULL};
    r->role = role;
    int rc = bp_opts_parse(&r->o, role, argc, argv, envp, NULL);
    if (rc != BP_OK)
        fail_msg("bp_opts_parse: %s", r->o.err);
    r->o.progress = 0;
    r->io.stop = &r->stop;
}

static void launch(struct run *r)
{
    assert_int_equal(pthread_create(&r->th, NULL, role_main, r), 0);
    r->started = 1;
}

/* Waits for r to end (at most WAIT_MS) and joins it. */
static void await(struct run *r)
{
    if (!r->started)
        return;
    int64_t end = now_ms() + WAIT_MS;
    while (!atomic_load(&r->done)) {
        if (now_ms() >= end)
            fail_msg("%s still running after %d s", r->name, WAIT_MS / 1000);
        sleep_ms(5);
    }
    pthread_join(r->th, NULL);
    r->started = 0;
}

static void expect_rc(const struct run *r, int want)
{
    if (r->rc != want)
        fail_msg("%s returned %d (%s), want %d (%s)", r->name, r->rc, bp_strerror(r->rc), want,
                 bp_strerror(want));
}

static int counter;

static int setup(void **state)
{
    struct pipeline *p = calloc(1, sizeof *p);
    if (!p)
        return -1;
    counter++;
    snprintf(p->tasks, sizeof p->tasks, "inproc://tasks-%d", counter);
    snprintf(p->results, sizeof p->results, "inproc://results-%d", counter);
    snprintf(p->vent.name, sizeof p->vent.name, "ventilator");
    snprintf(p->sink.name, sizeof p->sink.name, "sink");
    for (int i = 0; i < MAX_WORKERS; i++)
        snprintf(p->workers[i].name, sizeof p->workers[i].name, "worker w%d", i);
    p->ctx = zmq_ctx_new();
    p->outf = open_memstream(&p->out, &p->outlen);
    *state = p;
    return p->ctx && p->outf ? 0 : -1;
}

static void remove_dir(const char *dir)
{
    DIR *d = opendir(dir);
    if (!d)
        return;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, ".."))
            continue;
        char path[512];
        snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
        unlink(path);
    }
    closedir(d);
    rmdir(dir);
}

static int teardown(void **state)
{
    struct pipeline *p = *state;
    if (!p)
        return 0;
    /* Whatever still runs (a failed assertion): stop it, then join. */
    struct run *all[2 + MAX_WORKERS] = {&p->vent, &p->sink};
    for (int i = 0; i < MAX_WORKERS; i++)
        all[2 + i] = &p->workers[i];
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++)
        all[i]->stop = 1;
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++)
        if (all[i]->started)
            pthread_join(all[i]->th, NULL);
    if (p->catcher) {
        int zero = 0;
        zmq_setsockopt(p->catcher, ZMQ_LINGER, &zero, sizeof zero);
        zmq_close(p->catcher);
    }
    if (p->outf)
        fclose(p->outf);
    free(p->out);
    if (p->in)
        fclose(p->in);
    free(p->inbuf);
    if (p->ctx)
        zmq_ctx_term(p->ctx);
    if (p->dir[0])
        remove_dir(p->dir);
    free(p);
    *state = NULL;
    return 0;
}

/* The ventilator's input: a copy of data. Without it: the tutorial's
 * seven strings. */
static void input(struct pipeline *p, const char *data)
{
    size_t len = strlen(data);
    p->inbuf = malloc(len + 1);
    assert_non_null(p->inbuf);
    memcpy(p->inbuf, data, len + 1);
    assert_true(len > 0); /* fmemopen needs a size */
    p->in = fmemopen(p->inbuf, len, "r");
    assert_non_null(p->in);
}

static void scratch_dir(struct pipeline *p)
{
    const char *tmp = getenv("TMPDIR");
    snprintf(p->dir, sizeof p->dir, "%s/bp-pipeline-XXXXXX", tmp && *tmp ? tmp : "/tmp");
    if (!mkdtemp(p->dir)) {
        p->dir[0] = '\0';
        fail_msg("mkdtemp failed");
    }
}

/* A --once sink writing to the fixture's memstream. */
static void start_sink(struct pipeline *p, int ordered)
{
    const char *args[] = {"--once", "--timeout", "60s", "-q", NULL};
    parse(&p->sink, BP_ROLE_SINK, args);
    p->sink.o.bind = p->results;
    p->sink.o.ordered = ordered;
    p->sink.io.zmq_ctx = p->ctx;
    p->sink.io.out = p->outf;
    launch(&p->sink);
}

/* Worker i, --once; exec NULL for the built-in transform. args: extra
 * options (flags and numbers). */
static void start_worker(struct pipeline *p, int i, const char *exec, int jobs,
                         const char *const *args)
{
    assert_true(i < MAX_WORKERS);
    struct run *w = &p->workers[i];
    /* A short --grace: a teardown that stops a worker whose sink is gone
     * waits that long for its last results. */
    const char *base[24] = {"--once",     "-q",     "--heartbeat", "100ms",
                            "--liveness", LIVENESS, "--grace",     "3s"};
    int n = 8;
    for (int k = 0; args && args[k] && n < 23; k++)
        base[n++] = args[k];
    base[n] = NULL;
    parse(w, BP_ROLE_WORKER, base);
    w->o.tasks = p->tasks;
    w->o.results = p->results;
    w->o.jobs = jobs;
    if (exec) {
        assert_true(strlen(exec) < sizeof w->exec);
        snprintf(w->exec, sizeof w->exec, "%s", exec);
        w->o.exec = w->exec;
    }
    if (w->status[0])
        w->o.status_file = w->status;
    snprintf(w->o.id, sizeof w->o.id, "w%d", i);
    w->io.zmq_ctx = p->ctx;
    if (i >= p->nworkers)
        p->nworkers = i + 1;
    launch(w);
}

/* The ventilator; sink 0 for --sink none. Every case with workers passes
 * --wait-workers with their number: a thread may be slow to start, and a
 * --once worker that says hello after the batch is over finds no
 * ventilator to end it (it waits for ever). */
static void start_vent(struct pipeline *p, int sink, const char *const *args)
{
    /* (no second copies of slow tasks: the checks count executions) */
    const char *base[24] = {"-q",         "--heartbeat", "100ms",
                            "--liveness", LIVENESS,      "--ack-timeout",
                            ACK_TIMEOUT,  "--speculate", "off"};
    int n = 9;
    if (!sink) {
        base[n++] = "--sink";
        base[n++] = "none";
    }
    for (int k = 0; args && args[k] && n < 23; k++)
        base[n++] = args[k];
    base[n] = NULL;
    parse(&p->vent, BP_ROLE_VENTILATOR, base);
    p->vent.o.bind = p->tasks;
    if (sink)
        p->vent.o.sink = p->results;
    else
        assert_null(p->vent.o.sink);
    p->vent.o.input = p->in ? "-" : NULL;
    p->vent.io.in = p->in;
    p->vent.io.zmq_ctx = p->ctx;
    launch(&p->vent);
}

/* Waits for every role; the sink's output is complete afterwards. */
static void finish(struct pipeline *p)
{
    await(&p->vent);
    await(&p->sink);
    for (int i = 0; i < p->nworkers; i++)
        await(&p->workers[i]);
    fflush(p->outf);
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* The output holds exactly the lines of want (any order), each once. */
static void expect_lines(const char *out, size_t outlen, const char *const *want, int nwant)
{
    char *buf = malloc(outlen + 1);
    const char **got = calloc((size_t)nwant + 1, sizeof *got);
    const char **exp = calloc((size_t)nwant + 1, sizeof *exp);
    if (!buf || !got || !exp) {
        free(buf);
        free(got);
        free(exp);
        fail_msg("out of memory");
    }
    memcpy(buf, out, outlen);
    buf[outlen] = '\0';
    int n = 0, extra = 0;
    char *save = NULL;
    for (char *s = strtok_r(buf, "\n", &save); s; s = strtok_r(NULL, "\n", &save)) {
        if (n < nwant)
            got[n++] = s;
        else
            extra++;
    }
    for (int i = 0; i < nwant; i++)
        exp[i] = want[i];
    qsort(got, (size_t)n, sizeof *got, cmp_str);
    qsort(exp, (size_t)nwant, sizeof *exp, cmp_str);
    char msg[256] = "";
    if (n + extra != nwant)
        snprintf(msg, sizeof msg, "%d output lines, want %d", n + extra, nwant);
    for (int i = 0; !msg[0] && i < nwant; i++)
        if (strcmp(got[i], exp[i]))
            snprintf(msg, sizeof msg, "output line '%.100s', want '%.100s'", got[i], exp[i]);
    free(buf);
    free(got);
    free(exp);
    if (msg[0])
        fail_msg("%s", msg);
}

/* A batch of n tasks "<prefix>i\n" in input; want[i] = "<wprefix>i". */
struct lines {
    char s[64][32];
    const char *v[64];
};

static void numbered(struct lines *l, int n, const char *prefix)
{
    assert_true(n <= 64);
    for (int i = 0; i < n; i++) {
        snprintf(l->s[i], sizeof l->s[i], "%s%d", prefix, i);
        l->v[i] = l->s[i];
    }
}

static void numbered_input(struct pipeline *p, int n)
{
    char buf[1024];
    size_t len = 0;
    buf[0] = '\0';
    for (int i = 0; i < n; i++) {
        int k = snprintf(buf + len, sizeof buf - len, "%d\n", i);
        assert_true(k > 0 && (size_t)k < sizeof buf - len);
        len += (size_t)k;
    }
    input(p, buf);
}

static const char *const tutorial_upper[] = {
    "ALOHA", "BIENVENIDO", "BUENAS NOCHES", "BUENAS TARDES", "BUENOS DIAS", "HELLO", "HOLA"};

/* (a) The tutorial's seven strings with two workers: the dispatcher shares
 * a short queue, so both get work; every task comes out once. */
static void tutorial_two_workers_share_the_batch(void **state)
{
    struct pipeline *p = *state;
    start_sink(p, 0);
    start_worker(p, 0, NULL, 1, NULL);
    start_worker(p, 1, NULL, 1, NULL);
    const char *vargs[] = {"--wait-workers", "2", NULL};
    start_vent(p, 1, vargs);
    finish(p);
    expect_rc(&p->vent, BP_OK);
    expect_rc(&p->sink, BP_OK);
    expect_rc(&p->workers[0], BP_OK);
    expect_rc(&p->workers[1], BP_OK);
    assert_int_equal(p->vent.rep.sent, 7);
    assert_int_equal(p->vent.rep.ok, 7);
    assert_int_equal(p->vent.rep.failed, 0);
    assert_int_equal(p->vent.rep.missing, 0);
    assert_int_equal(p->vent.rep.redelivered, 0);
    assert_int_equal(p->sink.rep.ok, 7);
    assert_int_equal(p->sink.rep.total, 7);
    assert_int_equal(p->sink.rep.duplicates, 0);
    assert_int_equal(p->sink.rep.batch, p->vent.rep.batch);
    assert_int_equal(p->workers[0].rep.ok + p->workers[1].rep.ok, 7);
    if (p->workers[0].rep.ok < 1 || p->workers[1].rep.ok < 1)
        fail_msg("tasks not shared: w0 did %lld, w1 did %lld", (long long)p->workers[0].rep.ok,
                 (long long)p->workers[1].rep.ok);
    expect_lines(p->out, p->outlen, tutorial_upper, 7);
}

static void exec_ordered_output_matches_input(void **state)
{
    struct pipeline *p = *state;
    /* Six slots on two workers finish out of order; each task is a fork
     * and exec (slow under ASan and qemu): 60 is plenty. */
    enum { N = 60 };
    char *in = NULL, *want = NULL;
    size_t inlen = 0, wantlen = 0;
    FILE *fi = open_memstream(&in, &inlen);
    FILE *fw = open_memstream(&want, &wantlen);
    assert_non_null(fi);
    assert_non_null(fw);
    for (int i = 0; i < N; i++) {
        fprintf(fi, "task-%d\n", i);
        fprintf(fw, "TASK-%d\n", i);
    }
    fclose(fi);
    fclose(fw);
    /* The fixture owns the input; want is checked and freed right here. */
    p->inbuf = in;
    p->in = fmemopen(in, inlen, "r");
    if (!p->in)
        free(want);
    assert_non_null(p->in);

    start_sink(p, 1);
    start_worker(p, 0, "tr a-z A-Z", 3, NULL);
    start_worker(p, 1, "tr a-z A-Z", 3, NULL);
    const char *vargs[] = {"--wait-workers", "2", NULL};
    start_vent(p, 1, vargs);
    finish(p);
    int same = p->outlen == wantlen && memcmp(p->out, want, wantlen) == 0;
    free(want);
    expect_rc(&p->vent, BP_OK);
    expect_rc(&p->sink, BP_OK);
    expect_rc(&p->workers[0], BP_OK);
    expect_rc(&p->workers[1], BP_OK);
    assert_int_equal(p->vent.rep.sent, N);
    assert_int_equal(p->vent.rep.ok, N);
    assert_int_equal(p->sink.rep.ok, N);
    assert_int_equal(p->sink.rep.total, N);
    assert_int_equal(p->workers[0].rep.ok + p->workers[1].rep.ok, N);
    assert_true(same);
}

/* v2: the ventilator knows every outcome, so a failed task makes both it
 * and the sink report BP_EFAILED (exit status 3). */
static void failing_command_is_reported_failed(void **state)
{
    struct pipeline *p = *state;
    input(p, "1\n2\n3\n4\n");
    start_sink(p, 1);
    start_worker(p, 0, "read x; [ \"$x\" = 3 ] && { echo bad three >&2; exit 7; }; echo ok$x", 1,
                 NULL);
    const char *vargs[] = {"--wait-workers", "1", NULL};
    start_vent(p, 1, vargs);
    finish(p);
    expect_rc(&p->vent, BP_EFAILED);
    expect_rc(&p->sink, BP_EFAILED);
    expect_rc(&p->workers[0], BP_OK); /* a failed command is not a worker error */
    assert_int_equal(p->vent.rep.sent, 4);
    assert_int_equal(p->vent.rep.ok, 3);
    assert_int_equal(p->vent.rep.failed, 1);
    assert_int_equal(p->vent.rep.missing, 0);
    assert_int_equal(p->vent.rep.retried, 0);
    assert_int_equal(p->vent.rep.lost, 0);
    assert_int_equal(p->sink.rep.ok, 3);
    assert_int_equal(p->sink.rep.failed, 1);
    assert_int_equal(p->sink.rep.missing, 0);
    assert_int_equal(p->workers[0].rep.ok, 3);
    assert_int_equal(p->workers[0].rep.failed, 1);
    assert_int_equal(p->outlen, strlen("ok1\nok2\nok4\n"));
    assert_memory_equal(p->out, "ok1\nok2\nok4\n", p->outlen);
}

static void empty_input_completes(void **state)
{
    struct pipeline *p = *state;
    /* Empty lines are tasks; with --skip-empty none is left. */
    input(p, "\n\n");
    start_sink(p, 0);
    start_worker(p, 0, NULL, 1, NULL);
    /* The batch is over as soon as it starts: the worker must be in first. */
    const char *vargs[] = {"--wait-workers", "1", "--skip-empty", NULL};
    start_vent(p, 1, vargs);
    finish(p);
    expect_rc(&p->vent, BP_OK);
    expect_rc(&p->sink, BP_OK);
    expect_rc(&p->workers[0], BP_OK);
    assert_int_equal(p->vent.rep.sent, 0);
    assert_int_equal(p->vent.rep.ok, 0);
    assert_int_equal(p->sink.rep.total, 0);
    assert_int_equal(p->outlen, 0);
}

/* Whether a file whose name starts with prefix exists in dir. */
static int dir_has(const char *dir, const char *prefix)
{
    DIR *d = opendir(dir);
    if (!d)
        return 0;
    int found = 0;
    struct dirent *e;
    while (!found && (e = readdir(d)) != NULL)
        found = !strncmp(e->d_name, prefix, strlen(prefix));
    closedir(d);
    return found;
}

/* Whether the file at path exists and its start contains s. */
static int file_has(const char *path, const char *s)
{
    FILE *f = fopen(path, "r");
    if (!f)
        return 0;
    char buf[512];
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = '\0';
    return strstr(buf, s) != NULL;
}

/* (b) A worker stopped mid-batch (SIGTERM in real life) hands its queued
 * tasks back and finishes the running one; the other worker completes the
 * batch, every task once. */
static void stopped_worker_hands_tasks_back(void **state)
{
    struct pipeline *p = *state;
    enum { N = 10 };
    struct lines want;
    numbered(&want, N, "done-");
    numbered_input(p, N);
    scratch_dir(p);
    char slow[384], fast[128], gate[128];
    snprintf(gate, sizeof gate, "%s/go", p->dir);
    snprintf(p->workers[0].status, sizeof p->workers[0].status, "%s/status-w0", p->dir);
    /* w0 leaves a mark when it starts a task, then holds it until the test
     * opens the gate: it is stopped during its first task, however slow
     * or loaded the machine. */
    snprintf(slow, sizeof slow,
             "read x; touch %s/w0-$x; while [ ! -e %s ]; do sleep 0.01; done; echo done-$x", p->dir,
             gate);
    snprintf(fast, sizeof fast, "read x; sleep 0.05; echo done-$x");
    start_sink(p, 0);
    /* Two tasks queued beyond the running one: they are what goes back. */
    const char *w0args[] = {"--prefetch", "2", NULL};
    start_worker(p, 0, slow, 1, w0args);
    start_worker(p, 1, fast, 1, NULL);
    const char *vargs[] = {"--wait-workers", "2", NULL};
    start_vent(p, 1, vargs);

    int64_t end = now_ms() + WAIT_MS;
    while (!dir_has(p->dir, "w0-")) {
        if (atomic_load(&p->vent.done))
            fail_msg("the batch ended before w0 started a task");
        if (now_ms() >= end)
            fail_msg("w0 never started a task");
        sleep_ms(5);
    }
    p->workers[0].stop = 1;
    /* Its status file says "stopping" only after it handed its queue back. */
    while (!file_has(p->workers[0].status, "state=stopping\n")) {
        if (atomic_load(&p->workers[0].done))
            fail_msg("w0 ended without finishing its running task");
        if (now_ms() >= end)
            fail_msg("w0 never said it was stopping");
        sleep_ms(5);
    }
    FILE *g = fopen(gate, "w");
    assert_non_null(g);
    assert_int_equal(fclose(g), 0);
    finish(p);
    expect_rc(&p->vent, BP_OK);
    expect_rc(&p->sink, BP_OK);
    expect_rc(&p->workers[0], BP_OK); /* stopping is not an error */
    expect_rc(&p->workers[1], BP_OK);
    assert_int_equal(p->vent.rep.sent, N);
    assert_int_equal(p->vent.rep.ok, N);
    assert_int_equal(p->vent.rep.failed, 0);
    assert_int_equal(p->vent.rep.missing, 0);
    assert_int_equal(p->sink.rep.ok, N);
    assert_int_equal(p->sink.rep.duplicates, 0);
    /* w0 was stopped during its first task: it finished that one only and
     * handed back what it had queued. */
    if (p->workers[0].rep.ok != 1)
        fail_msg("w0 did %lld tasks, want 1", (long long)p->workers[0].rep.ok);
    assert_int_equal(p->workers[0].rep.failed, 0);
    assert_int_equal(p->workers[0].rep.ok + p->workers[1].rep.ok, N);
    expect_lines(p->out, p->outlen, want.v, N);
}

/* (c) --retries 1 and a command that fails on its first try only: every
 * task ends ok, each after one retry. */
static void retried_tasks_end_ok(void **state)
{
    struct pipeline *p = *state;
    enum { N = 6 };
    struct lines want;
    numbered(&want, N, "ok-");
    numbered_input(p, N);
    scratch_dir(p);
    char cmd[256];
    snprintf(cmd, sizeof cmd,
             "read x; f=%s/$x; if [ -e $f ]; then echo ok-$x; else touch $f; exit 1; fi", p->dir);
    start_sink(p, 0);
    start_worker(p, 0, cmd, 2, NULL);
    start_worker(p, 1, cmd, 2, NULL);
    const char *vargs[] = {"--retries", "1", "--wait-workers", "2", NULL};
    start_vent(p, 1, vargs);
    finish(p);
    expect_rc(&p->vent, BP_OK);
    expect_rc(&p->sink, BP_OK);
    expect_rc(&p->workers[0], BP_OK);
    expect_rc(&p->workers[1], BP_OK);
    assert_int_equal(p->vent.rep.sent, N);
    assert_int_equal(p->vent.rep.ok, N);
    assert_int_equal(p->vent.rep.failed, 0);
    assert_int_equal(p->vent.rep.retried, N);
    assert_int_equal(p->vent.rep.missing, 0);
    assert_int_equal(p->sink.rep.ok, N);
    assert_int_equal(p->sink.rep.failed, 0);
    assert_int_equal(p->sink.rep.duplicates, 0);
    /* Each task ran twice: once failing, once ok. */
    assert_int_equal(p->workers[0].rep.ok + p->workers[1].rep.ok, N);
    assert_int_equal(p->workers[0].rep.failed + p->workers[1].rep.failed, N);
    expect_lines(p->out, p->outlen, want.v, N);
}

/* Results that reached the stand-in sink: ok payloads into got[id]
 * (seen[id] set). Returns how many tasks this call added. */
static int catch_results(void *sock, char got[][32], int seen[], int max)
{
    int n = 0;
    for (;;) {
        zmq_msg_t rid, m;
        zmq_msg_init(&rid);
        zmq_msg_init(&m);
        int ok = zmq_msg_recv(&rid, sock, ZMQ_DONTWAIT) >= 0 &&
                 zmq_msg_recv(&m, sock, ZMQ_DONTWAIT) >= 0;
        struct bp_msg msg;
        if (ok && bp_msg_decode(&msg, zmq_msg_data(&m), zmq_msg_size(&m), 0) == BP_OK &&
            msg.type == BP_MSG_RESULTS) {
            size_t off = 0;
            struct bp_result_rec r;
            while (bp_msg_next_result(&msg, &off, &r)) {
                if (r.id >= (uint64_t)max || r.status != BP_ST_OK || seen[r.id])
                    continue;
                seen[r.id] = 1;
                snprintf(got[r.id], 32, "%.*s", (int)(r.len < 31 ? r.len : 31),
                         (const char *)r.data);
                n++;
            }
        }
        zmq_msg_close(&rid);
        zmq_msg_close(&m);
        if (!ok)
            return n;
    }
}

/* (d) --sink none: a task is final when its worker says it sent the
 * result; no sink acknowledges anything. */
static void no_sink_counts_worker_done(void **state)
{
    struct pipeline *p = *state;
    /* Something must take the workers' results: a bare ROUTER. */
    p->catcher = zmq_socket(p->ctx, ZMQ_ROUTER);
    assert_non_null(p->catcher);
    assert_int_equal(zmq_bind(p->catcher, p->results), 0);
    start_worker(p, 0, NULL, 1, NULL);
    start_worker(p, 1, NULL, 1, NULL);
    /* Both in before the 7 tasks go: a --once worker that says hello after
     * the batch is over finds no ventilator to end it. */
    const char *const vargs[] = {"--wait-workers", "2", NULL};
    start_vent(p, 0, vargs);
    finish(p);
    expect_rc(&p->vent, BP_OK);
    expect_rc(&p->workers[0], BP_OK);
    expect_rc(&p->workers[1], BP_OK);
    assert_int_equal(p->vent.rep.sent, 7);
    assert_int_equal(p->vent.rep.ok, 7);
    assert_int_equal(p->vent.rep.failed, 0);
    assert_int_equal(p->vent.rep.missing, 0);
    assert_int_equal(p->workers[0].rep.ok + p->workers[1].rep.ok, 7);

    char got[7][32];
    int seen[7] = {0};
    memset(got, 0, sizeof got);
    int n = 0;
    int64_t end = now_ms() + WAIT_MS;
    while ((n += catch_results(p->catcher, got, seen, 7)) < 7 && now_ms() < end)
        sleep_ms(5);
    assert_int_equal(n, 7);
    const char *gotv[7];
    for (int i = 0; i < 7; i++)
        gotv[i] = got[i];
    char joined[256];
    size_t len = 0;
    for (int i = 0; i < 7; i++) {
        int k = snprintf(joined + len, sizeof joined - len, "%s\n", gotv[i]);
        assert_true(k > 0 && (size_t)k < sizeof joined - len);
        len += (size_t)k;
    }
    expect_lines(joined, len, tutorial_upper, 7);
}

#define T(f) cmocka_unit_test_setup_teardown(f, setup, teardown)

int main(void)
{
    /* BP_TEST_DEBUG=1: the roles' debug log, to see why a run went wrong. */
    bp_log_init("test_pipeline", getenv("BP_TEST_DEBUG") ? BP_LOG_DEBUG : BP_LOG_ERROR);
    const struct CMUnitTest tests[] = {
        T(tutorial_two_workers_share_the_batch), T(exec_ordered_output_matches_input),
        T(failing_command_is_reported_failed),   T(empty_input_completes),
        T(stopped_worker_hands_tasks_back),      T(retried_tasks_end_ok),
        T(no_sink_counts_worker_done),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
