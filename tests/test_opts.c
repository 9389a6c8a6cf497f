/* Unit tests for option parsing (bp_opts.c). */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "bp.h"

/* A writable argv built from string literals. */
#define MAX_ARGS 48
struct args {
    char buf[MAX_ARGS][160];
    char *v[MAX_ARGS + 1];
    int n;
};

static void mkargs(struct args *a, const char *first, ...)
{
    va_list ap;
    memset(a, 0, sizeof *a);
    va_start(ap, first);
    for (const char *s = first; s; s = va_arg(ap, const char *)) {
        assert_true(a->n < MAX_ARGS);
        assert_true(strlen(s) < sizeof a->buf[0]);
        snprintf(a->buf[a->n], sizeof a->buf[0], "%s", s);
        a->v[a->n] = a->buf[a->n];
        a->n++;
    }
    va_end(ap);
    a->v[a->n] = NULL;
}

/* No BP_* variables unless a test passes some: the process environment
 * must not leak in. */
static char *const no_env[] = {NULL};

static int parse(struct bp_opts *o, enum bp_role role, struct args *a, char *const envp[],
                 int *want_version)
{
    memset(o, 0x5a, sizeof *o); /* defaults must be filled in, not assumed */
    return bp_opts_parse(o, role, a->n, a->v, envp ? envp : no_env, want_version);
}

static void parse_ok(struct bp_opts *o, enum bp_role role, struct args *a, char *const envp[])
{
    int wv = -1;
    int rc = parse(o, role, a, envp, &wv);
    if (rc != BP_OK)
        fail_msg("bp_opts_parse: %d, err: %s", rc, o->err);
    assert_int_equal(wv, 0);
    assert_string_equal(o->err, "");
}

/* Expects BP_EUSAGE with a one-line message containing want. */
static void parse_bad(enum bp_role role, struct args *a, char *const envp[], const char *want)
{
    struct bp_opts o;
    int rc = parse(&o, role, a, envp, NULL);
    if (rc != BP_EUSAGE)
        fail_msg("expected BP_EUSAGE for '%s', got %d", want, rc);
    assert_true(strlen(o.err) > 0);
    assert_true(strlen(o.err) < sizeof o.err);
    assert_null(strchr(o.err, '\n'));
    if (!strstr(o.err, want))
        fail_msg("message '%s' does not mention '%s'", o.err, want);
}

static void check_common_defaults(const struct bp_opts *o)
{
    assert_int_equal(o->log_level, BP_LOG_INFO);
    assert_int_equal(o->raw, 0);
    assert_int_equal(o->nul, 0);
    assert_int_equal(o->max_msg, BP_DEFAULT_MAX_MSG);
    assert_int_equal(o->progress, -1);
}

static void t_defaults_worker(void **state)
{
    (void)state;
    struct args a;
    struct bp_opts o;
    mkargs(&a, "worker", NULL);
    parse_ok(&o, BP_ROLE_WORKER, &a, NULL);
    check_common_defaults(&o);
    assert_int_equal(o.role, BP_ROLE_WORKER);
    assert_string_equal(o.tasks, "tcp://localhost:5557");
    assert_string_equal(o.results, "tcp://localhost:5558");
    assert_null(o.control); /* v2: no control channel */
    assert_string_equal(o.transform, "upper");
    assert_null(o.exec);
    assert_int_equal(o.jobs, 1);
    assert_int_equal(o.task_timeout_ms, 0);
    assert_int_equal(o.sleep_ms, 0);
    assert_int_equal(o.once, 0);
    assert_int_equal(o.grace_ms, 10000);
    assert_int_equal(o.linger_ms, 5000);
    assert_null(o.status_file);
    assert_int_equal(o.hb_ms, 1000);
    assert_int_equal(o.liveness, 3);
    assert_int_equal(o.prefetch, -1); /* auto */
    assert_int_equal(o.host_timeout_ms, 60000);

    /* Default id: "host:pid". */
    char host[64] = "worker";
    if (gethostname(host, sizeof host) != 0)
        snprintf(host, sizeof host, "worker");
    host[sizeof host - 1] = '\0';
    char want[BP_ID_MAX + 1];
    snprintf(want, sizeof want, "%.40s:%ld", host, (long)getpid());
    assert_string_equal(o.id, want);
    assert_true(strlen(o.id) <= BP_ID_MAX);
}

static void t_defaults_ventilator(void **state)
{
    (void)state;
    struct args a;
    struct bp_opts o;
    mkargs(&a, "ventilator", NULL);
    parse_ok(&o, BP_ROLE_VENTILATOR, &a, NULL);
    check_common_defaults(&o);
    assert_int_equal(o.role, BP_ROLE_VENTILATOR);
    assert_string_equal(o.bind, "tcp://*:5557");
    assert_string_equal(o.sink, "tcp://localhost:5558");
    assert_null(o.input);
    assert_int_equal(o.wait_workers, 0);
    assert_int_equal(o.wait_timeout_ms, 60000);
    assert_int_equal(o.linger_ms, 10000);
    assert_int_equal(o.hb_ms, 1000);
    assert_int_equal(o.liveness, 3);
    assert_int_equal(o.max_attempts, 3);
    assert_int_equal(o.retries, 0);
    assert_int_equal(o.task_deadline_ms, 0);
    assert_int_equal(o.ack_timeout_ms, 10000);
}

static void t_defaults_sink(void **state)
{
    (void)state;
    struct args a;
    struct bp_opts o;
    mkargs(&a, "sink", NULL);
    parse_ok(&o, BP_ROLE_SINK, &a, NULL);
    check_common_defaults(&o);
    assert_int_equal(o.role, BP_ROLE_SINK);
    assert_string_equal(o.bind, "tcp://*:5558");
    assert_null(o.control_bind); /* v2: no control channel */
    assert_null(o.output);
    assert_int_equal(o.ordered, 0);
    assert_int_equal(o.once, 0);
    assert_int_equal(o.timeout_ms, 0);
    assert_int_equal(o.count, 0);
    assert_null(o.summary_json);
    assert_int_equal(o.linger_ms, 2000);
}

static void t_flags_worker(void **state)
{
    (void)state;
    struct args a;
    struct bp_opts o;
    mkargs(&a, "worker", "--tasks", "tcp://10.0.0.1:6000", "--results=ipc:///tmp/bp-results",
           "--control", "none", "-t", "reverse", "-e", "tr a-z A-Z", "-j", "4", "--task-timeout",
           "250ms", "--sleep", "1.5s", "--grace", "2m", "--id", "pi-zero-1", "--status-file",
           "/tmp/st", "--max-msg-size", "64K", "--linger", "0", "--raw", "-v", NULL);
    parse_ok(&o, BP_ROLE_WORKER, &a, NULL);
    assert_string_equal(o.tasks, "tcp://10.0.0.1:6000");
    assert_string_equal(o.results, "ipc:///tmp/bp-results");
    assert_null(o.control);
    assert_string_equal(o.transform, "reverse");
    assert_string_equal(o.exec, "tr a-z A-Z");
    assert_int_equal(o.jobs, 4);
    assert_int_equal(o.task_timeout_ms, 250);
    assert_int_equal(o.sleep_ms, 1500);
    assert_int_equal(o.once, 0);
    assert_int_equal(o.grace_ms, 120000);
    assert_string_equal(o.id, "pi-zero-1");
    assert_string_equal(o.status_file, "/tmp/st");
    assert_int_equal(o.max_msg, 65536);
    assert_int_equal(o.linger_ms, 0);
    assert_int_equal(o.raw, 1);
    assert_int_equal(o.log_level, BP_LOG_DEBUG);

    mkargs(&a, "worker", "-v", "-q", "--transform=lower", "--jobs=2", NULL);
    parse_ok(&o, BP_ROLE_WORKER, &a, NULL);
    assert_int_equal(o.log_level, BP_LOG_ERROR); /* last one wins */
    assert_string_equal(o.transform, "lower");
    assert_int_equal(o.jobs, 2);
    assert_null(o.control);
}

static void t_flags_ventilator(void **state)
{
    (void)state;
    struct args a;
    struct bp_opts o;
    mkargs(&a, "ventilator", "--bind", "tcp://*:7000", "--sink", "none", "-i", "-", "-0", "-w", "3",
           "--wait-timeout", "0", "--progress", "--linger", "1s", NULL);
    parse_ok(&o, BP_ROLE_VENTILATOR, &a, NULL);
    assert_string_equal(o.bind, "tcp://*:7000");
    assert_null(o.sink);
    assert_string_equal(o.input, "-");
    assert_int_equal(o.nul, 1);
    assert_int_equal(o.wait_workers, 3);
    assert_int_equal(o.wait_timeout_ms, 0);
    assert_int_equal(o.progress, 1);
    assert_int_equal(o.linger_ms, 1000);
    assert_int_equal(o.skip_empty, 0); /* empty lines are tasks */

    mkargs(&a, "ventilator", "--progress", "--no-progress", "--sink", "tcp://sinkhost:1", NULL);
    parse_ok(&o, BP_ROLE_VENTILATOR, &a, NULL);
    assert_int_equal(o.progress, 0);
    assert_string_equal(o.sink, "tcp://sinkhost:1");
    mkargs(&a, "ventilator", "-r", NULL);
    parse_ok(&o, BP_ROLE_VENTILATOR, &a, NULL);
    assert_int_equal(o.skip_empty, 1);
    mkargs(&a, "ventilator", "--skip-empty", NULL);
    parse_ok(&o, BP_ROLE_VENTILATOR, &a, NULL);
    assert_int_equal(o.skip_empty, 1);
}

static void t_flags_sink(void **state)
{
    (void)state;
    struct args a;
    struct bp_opts o;
    mkargs(&a, "sink", "--bind", "tcp://*:7001", "--control-bind", "none", "-o", "out.txt",
           "--null", "--ordered", "--once", "--timeout", "1.5s", "--summary-json", "s.json",
           "--max-msg-size", "1M", NULL);
    parse_ok(&o, BP_ROLE_SINK, &a, NULL);
    assert_string_equal(o.bind, "tcp://*:7001");
    assert_null(o.control_bind);
    assert_string_equal(o.output, "out.txt");
    assert_int_equal(o.nul, 1);
    assert_int_equal(o.ordered, 1);
    assert_int_equal(o.once, 1);
    assert_int_equal(o.timeout_ms, 1500);
    assert_string_equal(o.summary_json, "s.json");
    assert_int_equal(o.max_msg, 1048576);

    mkargs(&a, "sink", "--raw", "--once", "--count", "7", NULL);
    parse_ok(&o, BP_ROLE_SINK, &a, NULL);
    assert_int_equal(o.raw, 1);
    assert_int_equal(o.count, 7);
}

static void t_env(void **state)
{
    (void)state;
    struct args a;
    struct bp_opts o;
    char e1[] = "BP_JOBS=3", e2[] = "BP_ONCE=1", e3[] = "BP_TASK_TIMEOUT=1.5s",
         e4[] = "BP_TASKS=tcp://envhost:5557", e5[] = "BP_CONTROL=tcp://envhost:6000",
         e6[] = "BP_MAX_MSG_SIZE=64K", e7[] = "BP_ORDERED=1", /* not a worker option */
        e8[] = "BP_HELP=1", e9[] = "BP_VERSION=1", e10[] = "BP_JOBSX=9", e11[] = "XBP_ID=nope";
    char *const env[] = {e1, e2, e3, e4, e5, e6, e7, e8, e9, e10, e11, NULL};
    mkargs(&a, "worker", NULL);
    parse_ok(&o, BP_ROLE_WORKER, &a, env);
    assert_int_equal(o.jobs, 3);
    assert_int_equal(o.once, 1);
    assert_int_equal(o.task_timeout_ms, 1500);
    assert_string_equal(o.tasks, "tcp://envhost:5557");
    /* BP_CONTROL is accepted (old unit files keep working) and unused. */
    assert_int_equal(o.max_msg, 65536);
    assert_string_not_equal(o.id, "nope");

    /* Flags take yes/no values from the environment. */
    char f1[] = "BP_ONCE=no", f2[] = "BP_RAW=true", f3[] = "BP_VERBOSE=yes", f4[] = "BP_ID=envid";
    char *const env2[] = {f1, f2, f3, f4, NULL};
    parse_ok(&o, BP_ROLE_WORKER, &a, env2);
    assert_int_equal(o.once, 0);
    assert_int_equal(o.raw, 1);
    assert_int_equal(o.log_level, BP_LOG_DEBUG);
    assert_string_equal(o.id, "envid");

    /* Sink and ventilator names. */
    char s1[] = "BP_CONTROL_BIND=tcp://*:6001", s2[] = "BP_SUMMARY_JSON=/tmp/x.json",
         s3[] = "BP_NULL=1", s4[] = "BP_TIMEOUT=2m";
    char *const env3[] = {s1, s2, s3, s4, NULL};
    mkargs(&a, "sink", NULL);
    parse_ok(&o, BP_ROLE_SINK, &a, env3); /* BP_CONTROL_BIND accepted, unused */
    assert_string_equal(o.summary_json, "/tmp/x.json");
    assert_int_equal(o.nul, 1);
    assert_int_equal(o.timeout_ms, 120000);

    char v1[] = "BP_WAIT_WORKERS=2", v2[] = "BP_INPUT=tasks.txt", v3[] = "BP_SINK=none";
    char *const env4[] = {v1, v2, v3, NULL};
    mkargs(&a, "ventilator", NULL);
    parse_ok(&o, BP_ROLE_VENTILATOR, &a, env4);
    assert_int_equal(o.wait_workers, 2);
    assert_string_equal(o.input, "tasks.txt");
    assert_null(o.sink);
}

static void t_env_bad(void **state)
{
    (void)state;
    struct args a;
    char e1[] = "BP_ONCE=maybe";
    char *const env1[] = {e1, NULL};
    mkargs(&a, "worker", NULL);
    parse_bad(BP_ROLE_WORKER, &a, env1, "BP_ONCE");
    char e2[] = "BP_JOBS=many";
    char *const env2[] = {e2, NULL};
    parse_bad(BP_ROLE_WORKER, &a, env2, "BP_JOBS");
    char e3[] = "BP_TASKS=localhost:5557";
    char *const env3[] = {e3, NULL};
    parse_bad(BP_ROLE_WORKER, &a, env3, "localhost:5557");
}

static void t_cmdline_wins(void **state)
{
    (void)state;
    struct args a;
    struct bp_opts o;
    char e1[] = "BP_JOBS=3", e2[] = "BP_ONCE=1", e3[] = "BP_TRANSFORM=lower",
         e4[] = "BP_TASKS=tcp://envhost:1";
    char *const env[] = {e1, e2, e3, e4, NULL};
    mkargs(&a, "worker", "--jobs", "5", "-t", "echo", "--tasks", "tcp://clihost:2", NULL);
    parse_ok(&o, BP_ROLE_WORKER, &a, env);
    assert_int_equal(o.jobs, 5);
    assert_int_equal(o.once, 1); /* not overridden */
    assert_string_equal(o.transform, "echo");
    assert_string_equal(o.tasks, "tcp://clihost:2");

    /* --option=value overrides the environment too. */
    mkargs(&a, "worker", "--jobs=7", NULL);
    parse_ok(&o, BP_ROLE_WORKER, &a, env);
    assert_int_equal(o.jobs, 7);
}

static void t_durations(void **state)
{
    (void)state;
    static const struct {
        const char *s;
        int ms;
    } ok[] = {
        {"250ms", 250}, {"1.5s", 1500}, {"2m", 120000}, {"1h", 3600000},
        {"3", 3000},    {"0", 0},       {"0.5", 500},   {"10s", 10000},
    };
    for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++) {
        struct args a;
        struct bp_opts o;
        mkargs(&a, "worker", "--task-timeout", ok[i].s, NULL);
        parse_ok(&o, BP_ROLE_WORKER, &a, NULL);
        if (o.task_timeout_ms != ok[i].ms)
            fail_msg("'%s' -> %d ms, want %d", ok[i].s, o.task_timeout_ms, ok[i].ms);
    }
    static const char *const bad[] = {"abc", "5x", "-1s", "", "1.5sec", "ms", "99999999h"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        struct args a;
        mkargs(&a, "worker", "--sleep", bad[i], NULL);
        parse_bad(BP_ROLE_WORKER, &a, NULL, "--sleep");
    }
}

static void t_sizes(void **state)
{
    (void)state;
    static const struct {
        const char *s;
        int64_t n;
    } ok[] = {
        {"64K", 65536},
        {"64k", 65536},
        {"1M", 1048576},
        {"1MiB", 1048576},
        {"100000", 100000},
        {"64", 64},
        {"2048M", (int64_t)1 << 31},
    };
    for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++) {
        struct args a;
        struct bp_opts o;
        mkargs(&a, "sink", "--max-msg-size", ok[i].s, NULL);
        parse_ok(&o, BP_ROLE_SINK, &a, NULL);
        if (o.max_msg != ok[i].n)
            fail_msg("'%s' -> %lld, want %lld", ok[i].s, (long long)o.max_msg, (long long)ok[i].n);
    }
    static const char *const bad[] = {"63", "1.5M", "3G", "2049M", "-1K", "x", "", "10Q"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        struct args a;
        mkargs(&a, "sink", "--max-msg-size", bad[i], NULL);
        parse_bad(BP_ROLE_SINK, &a, NULL, "--max-msg-size");
    }
}

static void t_errors(void **state)
{
    (void)state;
    struct args a;
    mkargs(&a, "worker", "--bogus", NULL);
    parse_bad(BP_ROLE_WORKER, &a, NULL, "unknown option '--bogus'");
    mkargs(&a, "worker", "-x", NULL);
    parse_bad(BP_ROLE_WORKER, &a, NULL, "unknown option '-x'");
    /* An option of another role is unknown here. */
    mkargs(&a, "worker", "--ordered", NULL);
    parse_bad(BP_ROLE_WORKER, &a, NULL, "--ordered");
    mkargs(&a, "sink", "--exec", "cat", NULL);
    parse_bad(BP_ROLE_SINK, &a, NULL, "--exec");
    mkargs(&a, "worker", "-0", NULL);
    parse_bad(BP_ROLE_WORKER, &a, NULL, "-0");
    mkargs(&a, "sink", "--skip-empty", NULL);
    parse_bad(BP_ROLE_SINK, &a, NULL, "--skip-empty");

    mkargs(&a, "worker", "--tasks", NULL);
    parse_bad(BP_ROLE_WORKER, &a, NULL, "--tasks");
    parse_bad(BP_ROLE_WORKER, &a, NULL, "needs a value");
    mkargs(&a, "worker", "-j", NULL);
    parse_bad(BP_ROLE_WORKER, &a, NULL, "needs a value");

    mkargs(&a, "worker", "--tasks", "localhost:5557", NULL);
    parse_bad(BP_ROLE_WORKER, &a, NULL, "invalid endpoint 'localhost:5557'");
    mkargs(&a, "worker", "--results", "tcp://", NULL);
    parse_bad(BP_ROLE_WORKER, &a, NULL, "invalid endpoint");
    mkargs(&a, "sink", "--bind", "://x", NULL);
    parse_bad(BP_ROLE_SINK, &a, NULL, "invalid endpoint");
    mkargs(&a, "ventilator", "--sink", "sinkhost:5558", NULL);
    parse_bad(BP_ROLE_VENTILATOR, &a, NULL, "invalid endpoint");
    mkargs(&a, "ventilator", "--bind", "none", NULL); /* bind cannot be none */
    parse_bad(BP_ROLE_VENTILATOR, &a, NULL, "invalid endpoint");

    mkargs(&a, "worker", "--jobs", "abc", NULL);
    parse_bad(BP_ROLE_WORKER, &a, NULL, "--jobs");
    mkargs(&a, "worker", "--jobs", "1025", NULL);
    parse_bad(BP_ROLE_WORKER, &a, NULL, "--jobs");
    mkargs(&a, "worker", "--jobs", "-1", NULL);
    parse_bad(BP_ROLE_WORKER, &a, NULL, "--jobs");
    mkargs(&a, "worker", "--jobs", "3x", NULL);
    parse_bad(BP_ROLE_WORKER, &a, NULL, "--jobs");
    mkargs(&a, "ventilator", "-w", "lots", NULL);
    parse_bad(BP_ROLE_VENTILATOR, &a, NULL, "--wait-workers");
    mkargs(&a, "sink", "--count", "-5", NULL);
    parse_bad(BP_ROLE_SINK, &a, NULL, "--count");

    mkargs(&a, "worker", "-t", "rot13", NULL);
    parse_bad(BP_ROLE_WORKER, &a, NULL, "unknown transform 'rot13'");
    mkargs(&a, "worker", "--exec", "", NULL);
    parse_bad(BP_ROLE_WORKER, &a, NULL, "empty command");
    mkargs(&a, "worker", "--id", "", NULL);
    parse_bad(BP_ROLE_WORKER, &a, NULL, "--id");
    mkargs(&a, "worker", "--id",
           "0123456789012345678901234567890123456789012345678901234567890123X", NULL);
    parse_bad(BP_ROLE_WORKER, &a, NULL, "--id");

    mkargs(&a, "sink", "--ordered", "--raw", NULL);
    parse_bad(BP_ROLE_SINK, &a, NULL, "--ordered");
    /* worker --once learns the batch end from the ventilator's END: it
     * needs the acknowledged channel, not --raw. */
    mkargs(&a, "worker", "--once", "--raw", NULL);
    parse_bad(BP_ROLE_WORKER, &a, NULL,
              "--once needs the acknowledged channel: it cannot be used with --raw");
    char e1[] = "BP_RAW=1";
    char *const env[] = {e1, NULL};
    mkargs(&a, "sink", "--ordered", NULL);
    parse_bad(BP_ROLE_SINK, &a, env, "--raw");
    mkargs(&a, "worker", "--once", NULL);
    parse_bad(BP_ROLE_WORKER, &a, env, "--once needs the acknowledged channel");

    mkargs(&a, "worker", "extra", NULL);
    parse_bad(BP_ROLE_WORKER, &a, NULL, "unexpected argument 'extra'");
    mkargs(&a, "sink", "--once", "out.txt", NULL);
    parse_bad(BP_ROLE_SINK, &a, NULL, "unexpected argument 'out.txt'");
    mkargs(&a, "ventilator", "a.txt", "b.txt", NULL);
    parse_bad(BP_ROLE_VENTILATOR, &a, NULL, "unexpected argument 'b.txt'");
    mkargs(&a, "ventilator", "--input", "a.txt", "b.txt", NULL);
    parse_bad(BP_ROLE_VENTILATOR, &a, NULL, "unexpected argument 'b.txt'");
}

/* The id at the limit is accepted. */
static void t_id_limit(void **state)
{
    (void)state;
    struct args a;
    struct bp_opts o;
    const char *id64 = "0123456789012345678901234567890123456789012345678901234567890123";
    assert_int_equal(strlen(id64), BP_ID_MAX);
    mkargs(&a, "worker", "--id", id64, NULL);
    parse_ok(&o, BP_ROLE_WORKER, &a, NULL);
    assert_string_equal(o.id, id64);
}

static void t_help_version(void **state)
{
    (void)state;
    struct args a;
    struct bp_opts o;
    int wv = -1;
    const enum bp_role roles[] = {BP_ROLE_VENTILATOR, BP_ROLE_WORKER, BP_ROLE_SINK};
    for (size_t i = 0; i < 3; i++) {
        mkargs(&a, "prog", "--help", NULL);
        wv = -1;
        assert_int_equal(parse(&o, roles[i], &a, NULL, &wv), BP_EXIT_INFO);
        assert_int_equal(wv, 0);
        mkargs(&a, "prog", "-h", NULL);
        assert_int_equal(parse(&o, roles[i], &a, NULL, &wv), BP_EXIT_INFO);
        assert_int_equal(wv, 0);
        mkargs(&a, "prog", "--version", NULL);
        assert_int_equal(parse(&o, roles[i], &a, NULL, &wv), BP_EXIT_INFO);
        assert_int_equal(wv, 1);
        mkargs(&a, "prog", "-V", NULL);
        wv = -1;
        assert_int_equal(parse(&o, roles[i], &a, NULL, &wv), BP_EXIT_INFO);
        assert_int_equal(wv, 1);
        /* want_version may be NULL */
        assert_int_equal(parse(&o, roles[i], &a, NULL, NULL), BP_EXIT_INFO);
        /* help wins over operands that would be errors */
        mkargs(&a, "prog", "--help", "x", "y", NULL);
        assert_int_equal(parse(&o, roles[i], &a, NULL, &wv), BP_EXIT_INFO);
        assert_int_equal(wv, 0);

        const char *u = bp_usage(roles[i]);
        assert_non_null(u);
        assert_non_null(strstr(u, "Usage:"));
        assert_non_null(strstr(u, "--help"));
    }
    /* BP_HELP / BP_VERSION in the environment do nothing. */
    char e1[] = "BP_HELP=1", e2[] = "BP_VERSION=1";
    char *const env[] = {e1, e2, NULL};
    mkargs(&a, "worker", NULL);
    assert_int_equal(parse(&o, BP_ROLE_WORKER, &a, env, &wv), BP_OK);
    assert_int_equal(wv, 0);
}

static void t_version_format(void **state)
{
    (void)state;
    char buf[256];
    int n = bp_version_format(buf, sizeof buf, "worker");
    assert_true(n > 0);
    assert_int_equal((size_t)n, strlen(buf));
    assert_true(strncmp(buf, "worker (boardpipe) ", 19) == 0);
    assert_non_null(strstr(buf, "\nlibzmq "));
    assert_non_null(strstr(buf, "\ntarget "));
    assert_non_null(strstr(buf, "\nlicense MIT; notices ")); /* where they are (#23) */
    char tiny[8];
    assert_int_equal(bp_version_format(tiny, sizeof tiny, "worker"), -1);
}

static void t_ventilator_file(void **state)
{
    (void)state;
    struct args a;
    struct bp_opts o;
    mkargs(&a, "ventilator", "tasks.txt", NULL);
    parse_ok(&o, BP_ROLE_VENTILATOR, &a, NULL);
    assert_string_equal(o.input, "tasks.txt");

    mkargs(&a, "ventilator", "-w", "2", "-", NULL);
    parse_ok(&o, BP_ROLE_VENTILATOR, &a, NULL);
    assert_string_equal(o.input, "-");
    assert_int_equal(o.wait_workers, 2);

    /* Operand before options (GNU argument order). */
    mkargs(&a, "ventilator", "tasks.txt", "--bind", "tcp://*:9000", NULL);
    parse_ok(&o, BP_ROLE_VENTILATOR, &a, NULL);
    assert_string_equal(o.input, "tasks.txt");
    assert_string_equal(o.bind, "tcp://*:9000");

    /* "--" ends the options. */
    mkargs(&a, "ventilator", "--", "-odd-name", NULL);
    parse_ok(&o, BP_ROLE_VENTILATOR, &a, NULL);
    assert_string_equal(o.input, "-odd-name");
}

/* The FILE operand is part of the command line, so it beats BP_INPUT. */
static void t_ventilator_file_over_env(void **state)
{
    (void)state;
    struct args a;
    struct bp_opts o;
    char e1[] = "BP_INPUT=from-env.txt";
    char *const env[] = {e1, NULL};
    mkargs(&a, "ventilator", "from-cli.txt", NULL);
    parse_ok(&o, BP_ROLE_VENTILATOR, &a, env);
    assert_string_equal(o.input, "from-cli.txt");
}

static void t_jobs_zero(void **state)
{
    (void)state;
    struct args a;
    struct bp_opts o;
    long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
    mkargs(&a, "worker", "--jobs", "0", NULL);
    parse_ok(&o, BP_ROLE_WORKER, &a, NULL);
    assert_true(o.jobs >= 1);
    assert_true(o.jobs <= 1024);
    if (ncpu > 0 && ncpu <= 1024)
        assert_int_equal(o.jobs, ncpu);

    char e1[] = "BP_JOBS=0";
    char *const env[] = {e1, NULL};
    mkargs(&a, "worker", NULL);
    parse_ok(&o, BP_ROLE_WORKER, &a, env);
    assert_true(o.jobs >= 1);
}

/* getopt state is reset on every call: a parse that stopped early (error)
 * does not disturb the next one. */
static void t_repeat(void **state)
{
    (void)state;
    struct args a;
    struct bp_opts o;
    for (int i = 0; i < 3; i++) {
        mkargs(&a, "worker", "-j", "2", "--bogus", "-t", "echo", NULL);
        parse_bad(BP_ROLE_WORKER, &a, NULL, "--bogus");
        mkargs(&a, "worker", "-j3", "-techo", NULL);
        parse_ok(&o, BP_ROLE_WORKER, &a, NULL);
        assert_int_equal(o.jobs, 3);
        assert_string_equal(o.transform, "echo");
        mkargs(&a, "worker", "-x", NULL);
        parse_bad(BP_ROLE_WORKER, &a, NULL, "-x");
        mkargs(&a, "sink", "-o", "f", NULL);
        parse_ok(&o, BP_ROLE_SINK, &a, NULL);
        assert_string_equal(o.output, "f");
    }
}

/* Protocol v2 has no PUB/SUB control channel: --control and --control-bind
 * are accepted (old scripts keep working) and ignored; worker --once needs
 * no control channel any more. */
static void t_control_gone(void **state)
{
    (void)state;
    struct args a;
    struct bp_opts o;
    mkargs(&a, "worker", "--once", "--control", "none", NULL);
    parse_ok(&o, BP_ROLE_WORKER, &a, NULL);
    assert_int_equal(o.once, 1);
    assert_null(o.control);
    mkargs(&a, "worker", "--once", NULL);
    parse_ok(&o, BP_ROLE_WORKER, &a, NULL);
    assert_int_equal(o.once, 1);
    assert_null(o.control);
    mkargs(&a, "worker", "--once", "--control", "tcp://localhost:5559", NULL);
    parse_ok(&o, BP_ROLE_WORKER, &a, NULL);
    assert_int_equal(o.once, 1);
    mkargs(&a, "worker", "--control=", NULL); /* empty: same as none */
    parse_ok(&o, BP_ROLE_WORKER, &a, NULL);
    assert_null(o.control);

    char e1[] = "BP_CONTROL=none", e2[] = "BP_ONCE=1";
    char *const env[] = {e1, e2, NULL};
    mkargs(&a, "worker", NULL);
    parse_ok(&o, BP_ROLE_WORKER, &a, env);
    assert_int_equal(o.once, 1);
    assert_null(o.control);

    mkargs(&a, "sink", "--once", "--control-bind", "tcp://*:5559", NULL);
    parse_ok(&o, BP_ROLE_SINK, &a, NULL);
    mkargs(&a, "sink", "--control-bind", "none", NULL);
    parse_ok(&o, BP_ROLE_SINK, &a, NULL);
    assert_null(o.control_bind);
    char s1[] = "BP_CONTROL_BIND=none";
    char *const senv[] = {s1, NULL};
    mkargs(&a, "sink", NULL);
    parse_ok(&o, BP_ROLE_SINK, &a, senv);
    assert_null(o.control_bind);

    /* Still validated as endpoints: a typo is not silently ignored. */
    mkargs(&a, "worker", "--control", "localhost:5559", NULL);
    parse_bad(BP_ROLE_WORKER, &a, NULL, "invalid endpoint 'localhost:5559'");
}

/* Good values of the delivery options, on the roles that have them. */
static void t_delivery_flags(void **state)
{
    (void)state;
    struct args a;
    struct bp_opts o;
    mkargs(&a, "ventilator", "--heartbeat", "250ms", "--liveness", "5", "--max-attempts", "7",
           "--retries", "2", "--task-deadline", "1.5m", "--ack-timeout", "30s", NULL);
    parse_ok(&o, BP_ROLE_VENTILATOR, &a, NULL);
    assert_int_equal(o.hb_ms, 250);
    assert_int_equal(o.liveness, 5);
    assert_int_equal(o.max_attempts, 7);
    assert_int_equal(o.retries, 2);
    assert_int_equal(o.task_deadline_ms, 90000);
    assert_int_equal(o.ack_timeout_ms, 30000);
    assert_null(o.speculate); /* (the ventilator's defaults: bp_spec_defaults()) */
    mkargs(&a, "ventilator", "--speculate", "off", NULL);
    parse_ok(&o, BP_ROLE_VENTILATOR, &a, NULL);
    assert_string_equal(o.speculate, "off");
    mkargs(&a, "ventilator", "--speculate=0.9,1.5,500ms", NULL);
    parse_ok(&o, BP_ROLE_VENTILATOR, &a, NULL);
    assert_string_equal(o.speculate, "0.9,1.5,500ms");
    mkargs(&a, "ventilator", "--require", "arch=aarch64,mem>=2G,camera", NULL);
    parse_ok(&o, BP_ROLE_VENTILATOR, &a, NULL);
    assert_string_equal(o.require, "arch=aarch64,mem>=2G,camera");
    mkargs(&a, "worker", "--label", "camera", "--label=room=lab 2", NULL);
    parse_ok(&o, BP_ROLE_WORKER, &a, NULL);
    assert_int_equal(o.labels.n, 2);
    assert_string_equal(o.labels.v[1], "room=lab 2");
    assert_int_equal(o.max_temp, 0);
    mkargs(&a, "worker", "--max-temp", "80", "--thermal-file", "/tmp/t", NULL);
    parse_ok(&o, BP_ROLE_WORKER, &a, NULL);
    assert_int_equal(o.max_temp, 80);
    assert_string_equal(o.thermal_file, "/tmp/t");
    assert_true(o.task_memory == 0);
    mkargs(&a, "worker", "--task-memory", "512M", NULL);
    parse_ok(&o, BP_ROLE_WORKER, &a, NULL);
    assert_true(o.task_memory == (int64_t)512 << 20);

    /* The limits themselves are accepted. */
    mkargs(&a, "ventilator", "--heartbeat=10ms", "--liveness=1", "--max-attempts=1", "--retries=0",
           "--task-deadline=0", "--ack-timeout=10ms", NULL);
    parse_ok(&o, BP_ROLE_VENTILATOR, &a, NULL);
    assert_int_equal(o.hb_ms, 10);
    assert_int_equal(o.liveness, 1);
    assert_int_equal(o.max_attempts, 1);
    assert_int_equal(o.retries, 0);
    assert_int_equal(o.task_deadline_ms, 0);
    assert_int_equal(o.ack_timeout_ms, 10);
    mkargs(&a, "ventilator", "--heartbeat", "1h", "--liveness", "1000", "--max-attempts", "1000",
           "--retries", "1000", "--ack-timeout", "3600", NULL);
    parse_ok(&o, BP_ROLE_VENTILATOR, &a, NULL);
    assert_int_equal(o.hb_ms, 3600000);
    assert_int_equal(o.liveness, 1000);
    assert_int_equal(o.max_attempts, 1000);
    assert_int_equal(o.retries, 1000);
    assert_int_equal(o.ack_timeout_ms, 3600000);

    mkargs(&a, "worker", "--heartbeat", "0.5", "--liveness", "10", "--prefetch", "8",
           "--host-timeout", "2m", NULL);
    parse_ok(&o, BP_ROLE_WORKER, &a, NULL);
    assert_int_equal(o.hb_ms, 500);
    assert_int_equal(o.liveness, 10);
    assert_int_equal(o.prefetch, 8);
    assert_int_equal(o.host_timeout_ms, 120000);

    mkargs(&a, "worker", "--prefetch", "0", "--host-timeout", "0", NULL);
    parse_ok(&o, BP_ROLE_WORKER, &a, NULL);
    assert_int_equal(o.prefetch, 0);
    assert_int_equal(o.host_timeout_ms, 0); /* wait forever */
    mkargs(&a, "worker", "--prefetch", "4096", NULL);
    parse_ok(&o, BP_ROLE_WORKER, &a, NULL);
    assert_int_equal(o.prefetch, 4096);
    /* auto after a number: the last one wins */
    mkargs(&a, "worker", "--prefetch", "3", "--prefetch=auto", NULL);
    parse_ok(&o, BP_ROLE_WORKER, &a, NULL);
    assert_int_equal(o.prefetch, -1);
}

/* BP_<NAME> for each delivery option, and the command line over it. */
static void t_delivery_env(void **state)
{
    (void)state;
    struct args a;
    struct bp_opts o;
    char v1[] = "BP_HEARTBEAT=200ms", v2[] = "BP_LIVENESS=4", v3[] = "BP_MAX_ATTEMPTS=5",
         v4[] = "BP_RETRIES=1", v5[] = "BP_TASK_DEADLINE=45s", v6[] = "BP_ACK_TIMEOUT=2s",
         v7[] = "BP_PREFETCH=9", /* not a ventilator option: ignored */
        v8[] = "BP_HOST_TIMEOUT=1s";
    char *const venv[] = {v1, v2, v3, v4, v5, v6, v7, v8, NULL};
    mkargs(&a, "ventilator", NULL);
    parse_ok(&o, BP_ROLE_VENTILATOR, &a, venv);
    assert_int_equal(o.hb_ms, 200);
    assert_int_equal(o.liveness, 4);
    assert_int_equal(o.max_attempts, 5);
    assert_int_equal(o.retries, 1);
    assert_int_equal(o.task_deadline_ms, 45000);
    assert_int_equal(o.ack_timeout_ms, 2000);
    assert_int_equal(o.prefetch, -1);
    assert_int_equal(o.host_timeout_ms, 60000);

    mkargs(&a, "ventilator", "--retries", "3", "--heartbeat", "2s", NULL);
    parse_ok(&o, BP_ROLE_VENTILATOR, &a, venv);
    assert_int_equal(o.retries, 3);
    assert_int_equal(o.hb_ms, 2000);
    assert_int_equal(o.liveness, 4); /* not overridden */

    char w1[] = "BP_PREFETCH=auto", w2[] = "BP_HOST_TIMEOUT=90s", w3[] = "BP_HEARTBEAT=100ms",
         w4[] = "BP_LIVENESS=6", w5[] = "BP_RETRIES=5", /* not a worker option: ignored */
        w6[] = "BP_MAX_ATTEMPTS=9";
    char *const wenv[] = {w1, w2, w3, w4, w5, w6, NULL};
    mkargs(&a, "worker", NULL);
    parse_ok(&o, BP_ROLE_WORKER, &a, wenv);
    assert_int_equal(o.prefetch, -1);
    assert_int_equal(o.host_timeout_ms, 90000);
    assert_int_equal(o.hb_ms, 100);
    assert_int_equal(o.liveness, 6);
    assert_int_equal(o.retries, 0);
    assert_int_equal(o.max_attempts, 3);

    char w7[] = "BP_PREFETCH=16";
    char *const wenv2[] = {w7, NULL};
    parse_ok(&o, BP_ROLE_WORKER, &a, wenv2);
    assert_int_equal(o.prefetch, 16);
    mkargs(&a, "worker", "--prefetch", "auto", NULL);
    parse_ok(&o, BP_ROLE_WORKER, &a, wenv2);
    assert_int_equal(o.prefetch, -1);
}

/* Bad values: BP_EUSAGE and a one-line message naming the option (or the
 * variable) and the value. */
static void t_delivery_bad(void **state)
{
    (void)state;
    static const struct {
        enum bp_role role;
        const char *opt, *val, *want;
    } bad[] = {
        {BP_ROLE_WORKER, "--prefetch", "-1",
         "--prefetch: expected 'auto' or a number from 0 to 4096, got '-1'"},
        {BP_ROLE_WORKER, "--prefetch", "lots",
         "--prefetch: expected 'auto' or a number from 0 to 4096, got 'lots'"},
        {BP_ROLE_WORKER, "--prefetch", "4097", "got '4097'"},
        {BP_ROLE_WORKER, "--prefetch", "AUTO", "got 'AUTO'"},
        {BP_ROLE_WORKER, "--prefetch", "", "--prefetch"},
        {BP_ROLE_WORKER, "--liveness", "0",
         "--liveness: expected a number from 1 to 1000, got '0'"},
        {BP_ROLE_VENTILATOR, "--liveness", "1001",
         "--liveness: expected a number from 1 to 1000, got '1001'"},
        {BP_ROLE_VENTILATOR, "--liveness", "3x", "got '3x'"},
        {BP_ROLE_WORKER, "--heartbeat", "5ms",
         "--heartbeat: expected a duration from 10ms to 1h (e.g. 1s, 500ms), got '5ms'"},
        {BP_ROLE_VENTILATOR, "--heartbeat", "9ms",
         "--heartbeat: expected a duration from 10ms to 1h"},
        {BP_ROLE_VENTILATOR, "--heartbeat", "0",
         "--heartbeat: expected a duration from 10ms to 1h"},
        {BP_ROLE_VENTILATOR, "--heartbeat", "61m", "got '61m'"},
        {BP_ROLE_WORKER, "--heartbeat", "fast", "got 'fast'"},
        {BP_ROLE_VENTILATOR, "--max-attempts", "0",
         "--max-attempts: expected a number from 1 to 1000, got '0'"},
        {BP_ROLE_VENTILATOR, "--max-attempts", "1001", "--max-attempts"},
        {BP_ROLE_VENTILATOR, "--max-attempts", "-3", "--max-attempts"},
        {BP_ROLE_VENTILATOR, "--retries", "-1",
         "--retries: expected a number from 0 to 1000, got '-1'"},
        {BP_ROLE_VENTILATOR, "--retries", "1001", "--retries"},
        {BP_ROLE_VENTILATOR, "--retries", "some", "--retries"},
        {BP_ROLE_VENTILATOR, "--task-deadline", "x",
         "--task-deadline: expected a duration (e.g. 10s, 250ms, 2m; 0 = none), got 'x'"},
        {BP_ROLE_VENTILATOR, "--task-deadline", "-5s", "--task-deadline"},
        {BP_ROLE_VENTILATOR, "--ack-timeout", "5ms",
         "--ack-timeout: expected a duration from 10ms to 1h"},
        {BP_ROLE_VENTILATOR, "--ack-timeout", "2h", "--ack-timeout"},
        {BP_ROLE_VENTILATOR, "--ack-timeout", "0", "--ack-timeout"},
        {BP_ROLE_VENTILATOR, "--speculate", "on",
         "--speculate: expected 'off' or QUANTILE,MULTIPLIER[,MIN]"},
        {BP_ROLE_VENTILATOR, "--speculate", "0.75", "got '0.75'"},
        {BP_ROLE_VENTILATOR, "--speculate", "2,2", "--speculate"},
        {BP_ROLE_VENTILATOR, "--speculate", "0.5,2,soon", "--speculate"},
        {BP_ROLE_VENTILATOR, "--require", "", "--require: '': expected NAME or NAME OP VALUE"},
        {BP_ROLE_VENTILATOR, "--require", "mem=>2G", "--require: 'mem=>2G'"},
        {BP_ROLE_WORKER, "--label", "bad name", "--label: expected NAME or NAME=VALUE"},
        {BP_ROLE_WORKER, "--label", "=v", "got '=v'"},
        {BP_ROLE_WORKER, "--max-temp", "151",
         "--max-temp: expected a temperature from 0 to 150 (C; 0 = off), got '151'"},
        {BP_ROLE_WORKER, "--max-temp", "hot", "--max-temp"},
        {BP_ROLE_WORKER, "--thermal-file", "", "--thermal-file"},
        {BP_ROLE_WORKER, "--task-memory", "lots", "--task-memory: expected a size"},
        {BP_ROLE_WORKER, "--host-timeout", "soon", "--host-timeout: expected a duration"},
        {BP_ROLE_WORKER, "--host-timeout", "-1", "--host-timeout"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        struct args a;
        mkargs(&a, "prog", bad[i].opt, bad[i].val, NULL);
        parse_bad(bad[i].role, &a, NULL, bad[i].want);
    }

    /* The same checks through the environment, named by the variable. */
    static const struct {
        enum bp_role role;
        const char *var, *want;
    } envbad[] = {
        {BP_ROLE_WORKER, "BP_PREFETCH=-1", "environment BP_PREFETCH: expected 'auto' or a number"},
        {BP_ROLE_WORKER, "BP_PREFETCH=lots", "got 'lots'"},
        {BP_ROLE_WORKER, "BP_HEARTBEAT=5ms",
         "environment BP_HEARTBEAT: expected a duration from 10ms"},
        {BP_ROLE_WORKER, "BP_LIVENESS=0", "environment BP_LIVENESS"},
        {BP_ROLE_WORKER, "BP_HOST_TIMEOUT=x", "environment BP_HOST_TIMEOUT"},
        {BP_ROLE_VENTILATOR, "BP_MAX_ATTEMPTS=0", "environment BP_MAX_ATTEMPTS"},
        {BP_ROLE_VENTILATOR, "BP_RETRIES=-1", "environment BP_RETRIES"},
        {BP_ROLE_VENTILATOR, "BP_TASK_DEADLINE=x", "environment BP_TASK_DEADLINE"},
        {BP_ROLE_VENTILATOR, "BP_ACK_TIMEOUT=1ms", "environment BP_ACK_TIMEOUT"},
        {BP_ROLE_VENTILATOR, "BP_HEARTBEAT=", "environment BP_HEARTBEAT"},
    };
    for (size_t i = 0; i < sizeof envbad / sizeof envbad[0]; i++) {
        struct args a;
        char var[80];
        snprintf(var, sizeof var, "%s", envbad[i].var);
        char *const env[] = {var, NULL};
        mkargs(&a, "prog", NULL);
        parse_bad(envbad[i].role, &a, env, envbad[i].want);
    }

    /* A bad environment value is an error even when the command line sets
     * the option too: the environment is applied first. */
    char e1[] = "BP_LIVENESS=0";
    char *const env1[] = {e1, NULL};
    struct args a;
    mkargs(&a, "worker", "--liveness", "3", NULL);
    parse_bad(BP_ROLE_WORKER, &a, env1, "BP_LIVENESS");

    /* Missing values. */
    mkargs(&a, "worker", "--prefetch", NULL);
    parse_bad(BP_ROLE_WORKER, &a, NULL, "needs a value");
    mkargs(&a, "ventilator", "--retries", NULL);
    parse_bad(BP_ROLE_VENTILATOR, &a, NULL, "needs a value");
}

/* Each delivery option belongs to its roles only. */
static void t_delivery_roles(void **state)
{
    (void)state;
    static const struct {
        enum bp_role role;
        const char *opt, *val;
    } other[] = {
        {BP_ROLE_SINK, "--heartbeat", "1s"},         {BP_ROLE_SINK, "--liveness", "3"},
        {BP_ROLE_WORKER, "--max-attempts", "3"},     {BP_ROLE_SINK, "--max-attempts", "3"},
        {BP_ROLE_WORKER, "--retries", "1"},          {BP_ROLE_WORKER, "--task-deadline", "1s"},
        {BP_ROLE_WORKER, "--ack-timeout", "1s"},     {BP_ROLE_VENTILATOR, "--prefetch", "1"},
        {BP_ROLE_SINK, "--prefetch", "1"},           {BP_ROLE_VENTILATOR, "--host-timeout", "1s"},
        {BP_ROLE_VENTILATOR, "--control", "none"},   {BP_ROLE_WORKER, "--control-bind", "none"},
        {BP_ROLE_WORKER, "--speculate", "off"},      {BP_ROLE_SINK, "--speculate", "off"},
        {BP_ROLE_WORKER, "--require", "x"},          {BP_ROLE_VENTILATOR, "--label", "x"},
        {BP_ROLE_VENTILATOR, "--max-temp", "80"},    {BP_ROLE_SINK, "--thermal-file", "x"},
        {BP_ROLE_VENTILATOR, "--task-memory", "1M"},
    };
    for (size_t i = 0; i < sizeof other / sizeof other[0]; i++) {
        struct args a;
        char want[64];
        snprintf(want, sizeof want, "unknown option '%s'", other[i].opt);
        mkargs(&a, "prog", other[i].opt, other[i].val, NULL);
        parse_bad(other[i].role, &a, NULL, want);
    }
}

/* --journal, --resume, --sync, --sync-interval: defaults, values, the
 * environment, and the combinations that cannot work. */
static void t_durability(void **state)
{
    (void)state;
    struct bp_opts o;
    struct args a;
    mkargs(&a, "ventilator", "-i", "t.txt", NULL);
    parse_ok(&o, BP_ROLE_VENTILATOR, &a, NULL);
    assert_null(o.journal);
    assert_int_equal(o.resume, 0);
    assert_int_equal(o.sync, BP_SYNC_INTERVAL);
    assert_int_equal(o.sync_ms, 200);

    mkargs(&a, "ventilator", "--resume", "--journal", "j.bin", "--sync", "always",
           "--sync-interval", "2s", "t.txt", NULL);
    parse_ok(&o, BP_ROLE_VENTILATOR, &a, NULL);
    assert_int_equal(o.resume, 1);
    assert_string_equal(o.journal, "j.bin");
    assert_int_equal(o.sync, BP_SYNC_ALWAYS);
    assert_int_equal(o.sync_ms, 2000);
    assert_string_equal(o.input, "t.txt");

    assert_int_equal(o.halt_when, BP_HALT_NEVER);
    mkargs(&a, "sink", "--joblog", "jobs.tsv", NULL);
    parse_ok(&o, BP_ROLE_SINK, &a, NULL);
    assert_string_equal(o.joblog, "jobs.tsv");
    mkargs(&a, "ventilator", "--halt", "soon,fail=3", NULL);
    parse_ok(&o, BP_ROLE_VENTILATOR, &a, NULL);
    assert_int_equal(o.halt_when, BP_HALT_SOON);
    assert_int_equal(o.halt_fail, 3);
    assert_int_equal(o.halt_pct, 0);
    mkargs(&a, "ventilator", "--halt", "now,fail=25%", NULL);
    parse_ok(&o, BP_ROLE_VENTILATOR, &a, NULL);
    assert_int_equal(o.halt_when, BP_HALT_NOW);
    assert_int_equal(o.halt_fail, 25);
    assert_int_equal(o.halt_pct, 1);
    mkargs(&a, "ventilator", "--halt", "now,fail=1", "--halt", "never", NULL);
    parse_ok(&o, BP_ROLE_VENTILATOR, &a, NULL);
    assert_int_equal(o.halt_when, BP_HALT_NEVER);

    char e1[] = "BP_RESUME=1", e2[] = "BP_SYNC=none", e3[] = "BP_OUTPUT=out.txt";
    char *const env[] = {e1, e2, e3, NULL};
    mkargs(&a, "sink", NULL);
    parse_ok(&o, BP_ROLE_SINK, &a, env);
    assert_int_equal(o.resume, 1);
    assert_int_equal(o.sync, BP_SYNC_NONE);
    assert_null(o.journal);

    static const struct {
        enum bp_role role;
        const char *a1, *a2, *a3, *want;
    } bad[] = {
        {BP_ROLE_VENTILATOR, "--resume", NULL, NULL, "need --input FILE"},
        {BP_ROLE_VENTILATOR, "--resume", "-i", "-", "stdin cannot be read again"},
        {BP_ROLE_VENTILATOR, "--journal", "j", NULL, "need --input FILE"},
        {BP_ROLE_SINK, "--resume", NULL, NULL, "need --output FILE"},
        {BP_ROLE_SINK, "--journal", "j", NULL, "need --output FILE"},
        {BP_ROLE_SINK, "--resume", "-o", "-", "stdout cannot be continued"},
        {BP_ROLE_SINK, "--resume", "--raw", NULL, "not with --raw"},
        {BP_ROLE_VENTILATOR, "--sync", "sometimes", NULL,
         "--sync: expected always, interval or none, got 'sometimes'"},
        {BP_ROLE_SINK, "--sync-interval", "0", NULL, "--sync-interval: must be at least 1ms"},
        {BP_ROLE_SINK, "--journal", "", NULL, "--journal: empty file name"},
        {BP_ROLE_WORKER, "--resume", NULL, NULL, "unknown option '--resume'"},
        {BP_ROLE_WORKER, "--journal", "j", NULL, "unknown option '--journal'"},
        {BP_ROLE_VENTILATOR, "--halt", "soon", NULL, "--halt: expected never, soon,fail=N"},
        {BP_ROLE_VENTILATOR, "--halt", "soon,fail=0", NULL, "got 'soon,fail=0'"},
        {BP_ROLE_VENTILATOR, "--halt", "now,fail=101%", NULL, "got 'now,fail=101%'"},
        {BP_ROLE_VENTILATOR, "--halt", "now,fail=%", NULL, "--halt"},
        {BP_ROLE_VENTILATOR, "--halt", "later,fail=1", NULL, "--halt"},
        {BP_ROLE_VENTILATOR, "--halt", "now,fail=1x", NULL, "--halt"},
        {BP_ROLE_SINK, "--halt", "now,fail=1", NULL, "unknown option '--halt'"},
        {BP_ROLE_SINK, "--joblog", "", NULL, "--joblog: empty file name"},
        {BP_ROLE_SINK, "--joblog", "j", "--raw", "--joblog needs task ids"},
        {BP_ROLE_VENTILATOR, "--joblog", "j", NULL, "unknown option '--joblog'"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        mkargs(&a, "prog", bad[i].a1, bad[i].a2, bad[i].a3, NULL);
        parse_bad(bad[i].role, &a, NULL, bad[i].want);
    }
}

/* Every code has a text of its own: not the fallback for an unknown code
 * (a missing table entry would silently read "unknown error") and not
 * another code's text. BP_OK and BP_EXIT_INFO are both success and may
 * share one. */
static void t_curve(void **state)
{
    (void)state;
    struct bp_opts o;
    struct args a;
    mkargs(&a, "sink", NULL);
    parse_ok(&o, BP_ROLE_SINK, &a, NULL);
    assert_null(o.curve_secret);
    assert_null(o.curve_allow);
    assert_null(o.keygen);

    mkargs(&a, "sink", "--curve-secret", "h.key_secret", "--curve-allow", "boards", NULL);
    parse_ok(&o, BP_ROLE_SINK, &a, NULL);
    assert_string_equal(o.curve_secret, "h.key_secret");
    assert_string_equal(o.curve_allow, "boards");
    mkargs(&a, "worker", "--curve-secret", "b.key_secret", "--curve-server", "h.key", NULL);
    parse_ok(&o, BP_ROLE_WORKER, &a, NULL);
    assert_string_equal(o.curve_server, "h.key");
    char *env[] = {"BP_CURVE_SECRET=e.key_secret", "BP_CURVE_ALLOW=d", NULL};
    mkargs(&a, "ventilator", NULL);
    parse_ok(&o, BP_ROLE_VENTILATOR, &a, env);
    assert_string_equal(o.curve_secret, "e.key_secret");
    assert_string_equal(o.curve_allow, "d");

    /* All or nothing: half a CURVE set-up is a usage error. */
    mkargs(&a, "sink", "--curve-secret", "h.key_secret", NULL);
    parse_bad(BP_ROLE_SINK, &a, NULL, "--curve-allow is needed");
    mkargs(&a, "ventilator", "--curve-allow", "boards", NULL);
    parse_bad(BP_ROLE_VENTILATOR, &a, NULL, "--curve-secret is needed");
    mkargs(&a, "worker", "--curve-secret", "b.key_secret", NULL);
    parse_bad(BP_ROLE_WORKER, &a, NULL, "--curve-server is needed");
    mkargs(&a, "worker", "--curve-server", "h.key", NULL);
    parse_bad(BP_ROLE_WORKER, &a, NULL, "--curve-secret is needed");
    /* Each role takes only its own half. */
    mkargs(&a, "worker", "--curve-allow", "d", NULL);
    parse_bad(BP_ROLE_WORKER, &a, NULL, "unknown option");
    mkargs(&a, "sink", "--curve-server", "h.key", NULL);
    parse_bad(BP_ROLE_SINK, &a, NULL, "unknown option");
    mkargs(&a, "sink", "--curve-secret", "", "--curve-allow", "d", NULL);
    parse_bad(BP_ROLE_SINK, &a, NULL, "empty file name");

    /* --keygen on every role; not from the environment (a unit file
     * must not turn a service into a key generator). */
    mkargs(&a, "worker", "--keygen", "board7", NULL);
    parse_ok(&o, BP_ROLE_WORKER, &a, NULL);
    assert_string_equal(o.keygen, "board7");
    mkargs(&a, "ventilator", "--keygen", "host", NULL);
    parse_ok(&o, BP_ROLE_VENTILATOR, &a, NULL);
    assert_string_equal(o.keygen, "host");
    mkargs(&a, "ventilator", "--keygen", "host", "extra", NULL);
    parse_bad(BP_ROLE_VENTILATOR, &a, NULL, "unexpected argument");
    /* A message quoting what was given stays one printable line. */
    mkargs(&a, "sink", "--sync", "al\nways\033[2J", NULL);
    parse_bad(BP_ROLE_SINK, &a, NULL, "al?ways?[2J");
    char *kenv[] = {"BP_KEYGEN=x", NULL};
    mkargs(&a, "sink", NULL);
    parse_ok(&o, BP_ROLE_SINK, &a, kenv);
    assert_null(o.keygen);
}

static void t_strerror(void **state)
{
    (void)state;
    const char *unknown = bp_strerror(-1);
    assert_non_null(unknown);
    assert_true(strlen(unknown) > 0);
    assert_string_equal(bp_strerror(INT_MIN), unknown);
    assert_string_equal(bp_strerror(1000), unknown);
    assert_string_equal(bp_strerror(INT_MAX), unknown);
    for (int e = BP_OK; e <= BP_EXIT_INFO; e++) {
        const char *s = bp_strerror(e);
        assert_non_null(s);
        if (strlen(s) == 0 || strcmp(s, unknown) == 0)
            fail_msg("bp_strerror(%d) is '%s', the text for an unknown code", e, s);
        for (int f = BP_OK; f < e; f++) {
            if (f == BP_OK && e == BP_EXIT_INFO)
                continue;
            if (strcmp(s, bp_strerror(f)) == 0)
                fail_msg("codes %d and %d share the text '%s'", f, e, s);
        }
    }
    assert_non_null(strstr(bp_strerror(BP_ETIMEDOUT), "timed out"));
    assert_non_null(strstr(bp_strerror(BP_EUSAGE), "usage"));
    assert_int_equal(bp_exit_code(BP_OK), 0);
    assert_int_equal(bp_exit_code(BP_EXIT_INFO), 0);
    assert_int_equal(bp_exit_code(BP_EUSAGE), 2);
    assert_int_equal(bp_exit_code(BP_EIO), 1);
    assert_int_equal(bp_exit_code(BP_EFAILED), 3);
    assert_int_equal(bp_exit_code(BP_EINCOMPLETE), 4);
    assert_int_equal(bp_exit_code(BP_EINTR), 130);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(t_defaults_worker),
        cmocka_unit_test(t_curve),
        cmocka_unit_test(t_defaults_ventilator),
        cmocka_unit_test(t_defaults_sink),
        cmocka_unit_test(t_flags_worker),
        cmocka_unit_test(t_flags_ventilator),
        cmocka_unit_test(t_flags_sink),
        cmocka_unit_test(t_env),
        cmocka_unit_test(t_env_bad),
        cmocka_unit_test(t_cmdline_wins),
        cmocka_unit_test(t_durations),
        cmocka_unit_test(t_sizes),
        cmocka_unit_test(t_errors),
        cmocka_unit_test(t_id_limit),
        cmocka_unit_test(t_help_version),
        cmocka_unit_test(t_version_format),
        cmocka_unit_test(t_ventilator_file),
        cmocka_unit_test(t_ventilator_file_over_env),
        cmocka_unit_test(t_jobs_zero),
        cmocka_unit_test(t_repeat),
        cmocka_unit_test(t_control_gone),
        cmocka_unit_test(t_delivery_flags),
        cmocka_unit_test(t_delivery_env),
        cmocka_unit_test(t_delivery_bad),
        cmocka_unit_test(t_delivery_roles),
        cmocka_unit_test(t_durability),
        cmocka_unit_test(t_strerror),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
