/* The three role loops in one process: sink and workers on threads, the
 * ventilator on the test's thread, all over inproc:// in one context. */
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <zmq.h>

#include "bp.h"

struct run {
    pthread_t th;
    struct bp_opts o;
    struct bp_io io;
    struct bp_report rep;
    int rc;
};

static void *sink_main(void *p)
{
    struct run *r = p;
    r->rc = bp_sink_run(&r->o, &r->io, &r->rep);
    return NULL;
}

static void *worker_main(void *p)
{
    struct run *r = p;
    r->rc = bp_worker_run(&r->o, &r->io, &r->rep);
    return NULL;
}

static int counter;

/* Per-test endpoint names, so tests never see each other's sockets. */
static void endpoints(char *tasks, char *results, char *control, size_t len)
{
    counter++;
    snprintf(tasks, len, "inproc://tasks-%d", counter);
    snprintf(results, len, "inproc://results-%d", counter);
    snprintf(control, len, "inproc://control-%d", counter);
}

struct pipeline {
    void *ctx;
    char tasks[64], results[64], control[64];
    struct run sink;
    struct run workers[4];
    int nworkers;
    char *out;
    size_t outlen;
    FILE *outf;
};

static void opts(struct bp_opts *o, enum bp_role role, const char *const *args, int nargs)
{
    char *argv[32];
    char storage[32][256];
    int argc = 0;
    snprintf(storage[argc], sizeof storage[argc], "test");
    argv[argc] = storage[argc];
    argc++;
    for (int i = 0; i < nargs && argc < 31; i++, argc++) {
        snprintf(storage[argc], sizeof storage[argc], "%s", args[i]);
        argv[argc] = storage[argc];
    }
    argv[argc] = NULL;
    char *envp[] = {NULL};
    int rc = bp_opts_parse(o, role, argc, argv, envp, NULL);
    if (rc != BP_OK)
        fail_msg("bp_opts_parse: %s", o->err);
    /* Only flags and numbers are passed here: no string option may point
     * into storage, which ends with this function. */
}

/* Starts a sink and n workers (worker args apply to all). */
static void start(struct pipeline *p, int nworkers, const char *wexec, int jobs, int ordered)
{
    memset(p, 0, sizeof *p);
    p->ctx = zmq_ctx_new();
    assert_non_null(p->ctx);
    endpoints(p->tasks, p->results, p->control, sizeof p->tasks);
    p->outf = open_memstream(&p->out, &p->outlen);
    assert_non_null(p->outf);

    const char *sargs[] = {"--once", "--timeout", "60s", "-q"};
    opts(&p->sink.o, BP_ROLE_SINK, sargs, 4);
    p->sink.o.bind = p->results;
    p->sink.o.control_bind = p->control;
    p->sink.o.ordered = ordered;
    p->sink.o.progress = 0;
    p->sink.io.zmq_ctx = p->ctx;
    p->sink.io.out = p->outf;
    assert_int_equal(pthread_create(&p->sink.th, NULL, sink_main, &p->sink), 0);

    p->nworkers = nworkers;
    for (int i = 0; i < nworkers; i++) {
        struct run *w = &p->workers[i];
        const char *wargs[] = {"--once", "-q"};
        opts(&w->o, BP_ROLE_WORKER, wargs, 2);
        w->o.tasks = p->tasks;
        w->o.results = p->results;
        w->o.control = p->control;
        w->o.exec = wexec;
        w->o.jobs = jobs;
        snprintf(w->o.id, sizeof w->o.id, "w%d", i);
        w->io.zmq_ctx = p->ctx;
        assert_int_equal(pthread_create(&w->th, NULL, worker_main, w), 0);
    }
}

static int vent(struct pipeline *p, FILE *in, struct bp_report *rep)
{
    struct bp_opts o;
    const char *vargs[] = {"-q"};
    opts(&o, BP_ROLE_VENTILATOR, vargs, 1);
    o.bind = p->tasks;
    o.sink = p->results;
    o.progress = 0;
    o.input = in ? "-" : NULL;
    struct bp_io io = {.in = in, .zmq_ctx = p->ctx};
    return bp_ventilator_run(&o, &io, rep);
}

static void finish(struct pipeline *p)
{
    pthread_join(p->sink.th, NULL);
    for (int i = 0; i < p->nworkers; i++)
        pthread_join(p->workers[i].th, NULL);
    fclose(p->outf);
    zmq_ctx_term(p->ctx);
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static void tutorial_strings_upper_cased_once_each(void **state)
{
    (void)state;
    struct pipeline p;
    struct bp_report vr;
    start(&p, 2, NULL, 1, 0);
    assert_int_equal(vent(&p, NULL, &vr), BP_OK);
    assert_int_equal(vr.sent, 7);
    finish(&p);
    assert_int_equal(p.sink.rc, BP_OK);
    assert_int_equal(p.sink.rep.ok, 7);
    assert_int_equal(p.sink.rep.duplicates, 0);
    assert_int_equal(p.sink.rep.batch, vr.batch);
    assert_int_equal(p.workers[0].rc, BP_OK);
    assert_int_equal(p.workers[1].rc, BP_OK);
    assert_int_equal(p.workers[0].rep.ok + p.workers[1].rep.ok, 7);

    char *lines[8];
    int n = 0;
    for (char *s = strtok(p.out, "\n"); s && n < 8; s = strtok(NULL, "\n"))
        lines[n++] = s;
    assert_int_equal(n, 7);
    qsort(lines, 7, sizeof lines[0], cmp_str);
    const char *want[] = {"ALOHA",       "BIENVENIDO", "BUENAS NOCHES", "BUENAS TARDES",
                          "BUENOS DIAS", "HELLO",      "HOLA"};
    for (int i = 0; i < 7; i++)
        assert_string_equal(lines[i], want[i]);
    free(p.out);
}

static void exec_ordered_output_matches_input(void **state)
{
    (void)state;
    enum { N = 300 };
    char *in = NULL, *want = NULL;
    size_t inlen = 0, wantlen = 0;
    FILE *fi = open_memstream(&in, &inlen);
    FILE *fw = open_memstream(&want, &wantlen);
    for (int i = 0; i < N; i++) {
        fprintf(fi, "task-%d\n", i);
        fprintf(fw, "TASK-%d\n", i);
    }
    fclose(fi);
    fclose(fw);
    FILE *src = fmemopen(in, inlen, "r");
    assert_non_null(src);

    struct pipeline p;
    struct bp_report vr;
    start(&p, 2, "tr a-z A-Z", 3, 1);
    assert_int_equal(vent(&p, src, &vr), BP_OK);
    assert_int_equal(vr.sent, N);
    finish(&p);
    fclose(src);
    assert_int_equal(p.sink.rc, BP_OK);
    assert_int_equal(p.sink.rep.ok, N);
    assert_int_equal(p.sink.rep.total, N);
    assert_int_equal(p.outlen, wantlen);
    assert_memory_equal(p.out, want, wantlen);
    free(p.out);
    free(in);
    free(want);
}

static void failing_command_is_reported_failed(void **state)
{
    (void)state;
    const char data[] = "1\n2\n3\n4\n";
    FILE *src = fmemopen((void *)data, sizeof data - 1, "r");
    struct pipeline p;
    struct bp_report vr;
    start(&p, 1, "read x; [ \"$x\" = 3 ] && { echo bad three >&2; exit 7; }; echo ok$x", 1, 1);
    assert_int_equal(vent(&p, src, &vr), BP_OK);
    finish(&p);
    fclose(src);
    assert_int_equal(p.sink.rc, BP_EFAILED);
    assert_int_equal(p.sink.rep.ok, 3);
    assert_int_equal(p.sink.rep.failed, 1);
    assert_int_equal(p.sink.rep.missing, 0);
    assert_string_equal(p.out, "ok1\nok2\nok4\n");
    free(p.out);
}

static void empty_input_completes(void **state)
{
    (void)state;
    FILE *src = fmemopen((void *)"\n\n", 2, "r");
    struct pipeline p;
    struct bp_report vr;
    start(&p, 1, NULL, 1, 0);
    assert_int_equal(vent(&p, src, &vr), BP_OK);
    assert_int_equal(vr.sent, 0);
    finish(&p);
    fclose(src);
    assert_int_equal(p.sink.rc, BP_OK);
    assert_int_equal(p.sink.rep.total, 0);
    assert_int_equal(p.outlen, 0);
    free(p.out);
}

int main(void)
{
    bp_log_init("test_pipeline", BP_LOG_ERROR);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(tutorial_strings_upper_cased_once_each),
        cmocka_unit_test(exec_ordered_output_matches_input),
        cmocka_unit_test(failing_command_is_reported_failed),
        cmocka_unit_test(empty_input_completes),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
