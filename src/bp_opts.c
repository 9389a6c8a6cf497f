/* Command-line and BP_* environment options of the three roles (bp.h:
 * bp_opts_parse, bp_usage). Owns the option table, the value parsers, the
 * checks across options and the --help texts; must not open files or
 * sockets, log, or act on an option: it only fills struct bp_opts.
 *
 * One row of opt_defs per option (curl's tool_getparam.c does the same):
 * its name, short letter, roles, kind (how its value is read and checked)
 * and field. To add an option: add its field to struct bp_opts, one row
 * here (its kind's macro checks the field's type) and its line in the
 * role's usage text below; a kind of value not yet known takes one
 * setter and one entry in kinds[]. */
#include <ctype.h>
#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "bp_frame.h"
#include "bp_internal.h"
#include "bp_labels.h"
#include "bp_spec.h"
#include "bp_transform.h"

extern char **environ;

#define R_V (1u << BP_ROLE_VENTILATOR)
#define R_W (1u << BP_ROLE_WORKER)
#define R_S (1u << BP_ROLE_SINK)
#define R_ALL (R_V | R_W | R_S)
#define NO_ENV (1u << 7) /* command line only: no BP_<NAME> */

/* How a value is read, checked and stored (the setter in kinds[]). */
enum opt_kind {
    KIND_FLAG,      /* no value: the int field becomes lo */
    KIND_INFO,      /* no value: --help (lo 1) or --version (lo 2) */
    KIND_DURATION,  /* "250ms", "1.5s", "2m", "1h": int ms in [lo, hi] */
    KIND_NUMBER,    /* whole number in [lo, hi] into an int */
    KIND_COUNT,     /* whole number in [lo, hi] into an int64_t */
    KIND_SIZE,      /* bytes with an optional K/M suffix, in [lo, hi] */
    KIND_TEXT,      /* any string */
    KIND_NAME,      /* a non-empty string ("empty <what>" otherwise) */
    KIND_ENDPOINT,  /* transport://address */
    KIND_PEER,      /* an endpoint, or none ("", "none") */
    KIND_PREFETCH,  /* "auto" (-1) or a KIND_NUMBER */
    KIND_SYNC,      /* always, interval, none */
    KIND_HALT,      /* GNU parallel's --halt WHEN,fail=N[%] */
    KIND_TRANSFORM, /* the name of a built-in transform */
    KIND_WORKER_ID, /* 1 to BP_ID_MAX bytes, copied */
    KIND_LIST       /* repeatable: each non-empty value is appended (at most hi) */
};

struct opt_def {
    const char *name; /* long name; BP_<NAME> in the environment */
    char letter;      /* short option, or 0 */
    unsigned roles;   /* R_* that take it, | NO_ENV */
    enum opt_kind kind;
    size_t at;        /* where it goes: offsetof(struct bp_opts, field) */
    int64_t lo, hi;   /* accepted range; KIND_FLAG/INFO: the value set */
    const char *what; /* messages say "expected <what>", "empty <what>" */
};

/* A row's kind and field together; a field of another type does not compile.
 * T is a type name, which a _Generic association cannot take in parentheses: */
/* NOLINTNEXTLINE(bugprone-macro-parentheses) */
#define AT(f, T) _Generic(((struct bp_opts *)0)->f, T : offsetof(struct bp_opts, f))
#define FLAG(f) KIND_FLAG, AT(f, int)
#define INFO KIND_INFO, 0
#define DURATION(f) KIND_DURATION, AT(f, int)
#define NUMBER(f) KIND_NUMBER, AT(f, int)
#define COUNT(f) KIND_COUNT, AT(f, int64_t)
#define SIZE(f) KIND_SIZE, AT(f, int64_t)
#define TEXT(f) KIND_TEXT, AT(f, const char *)
#define NAME(f) KIND_NAME, AT(f, const char *)
#define ENDPOINT(f) KIND_ENDPOINT, AT(f, const char *)
#define PEER(f) KIND_PEER, AT(f, const char *)
#define PREFETCH(f) KIND_PREFETCH, AT(f, int)
#define SYNC(f) KIND_SYNC, AT(f, int)
#define HALT(f) KIND_HALT, AT(f, int)
#define TRANSFORM(f) KIND_TRANSFORM, AT(f, const char *)
#define WORKER_ID(f) KIND_WORKER_ID, AT(f, char *)
#define LIST(f) KIND_LIST, AT(f, struct bp_strlist)

/* What the messages say a valid value is. */
#define ANY_DURATION "a duration (e.g. 10s, 250ms, 2m; 0 = none)"
#define TICK_DURATION "a duration from 10ms to 1h (e.g. 1s, 500ms)"
#define FROM_1_TO_1000 "a number from 1 to 1000"
#define FILE_NAME "file name"
#define ENDPOINT_5557 "e.g. tcp://host:5557"
#define PEER_5558 "e.g. tcp://host:5558, or none"

/* The order is the environment's order: the first bad BP_* is reported. */
static const struct opt_def opt_defs[] = {
    {"help", 'h', R_ALL | NO_ENV, INFO, 1, 1, NULL},
    {"version", 'V', R_ALL | NO_ENV, INFO, 2, 2, NULL},
    {"verbose", 'v', R_ALL, FLAG(log_level), BP_LOG_DEBUG, 0, NULL},
    {"quiet", 'q', R_ALL, FLAG(log_level), BP_LOG_ERROR, 0, NULL},
    {"raw", 0, R_ALL, FLAG(raw), 1, 0, NULL},
    {"null", '0', R_V | R_S, FLAG(nul), 1, 0, NULL},
    {"skip-empty", 'r', R_V, FLAG(skip_empty), 1, 0, NULL},
    {"max-msg-size", 0, R_ALL, SIZE(max_msg), 64, (int64_t)1 << 31,
     "a size from 64 to 2G (e.g. 1M)"},
    {"linger", 0, R_ALL, DURATION(linger_ms), 0, INT_MAX, ANY_DURATION},
    {"progress", 0, R_V | R_S, FLAG(progress), 1, 0, NULL},
    {"no-progress", 0, R_V | R_S, FLAG(progress), 0, 0, NULL},
    {"bind", 0, R_V | R_S, ENDPOINT(bind), 0, 0, ENDPOINT_5557},
    {"sink", 0, R_V, PEER(sink), 0, 0, PEER_5558},
    {"input", 'i', R_V, TEXT(input), 0, 0, NULL},
    {"wait-workers", 'w', R_V, NUMBER(wait_workers), 0, 100000, "a number of workers (0-100000)"},
    {"wait-timeout", 0, R_V, DURATION(wait_timeout_ms), 0, INT_MAX, ANY_DURATION},
    {"tasks", 0, R_W, ENDPOINT(tasks), 0, 0, ENDPOINT_5557},
    {"results", 0, R_W, ENDPOINT(results), 0, 0, ENDPOINT_5557},
    {"control", 0, R_W, PEER(control), 0, 0, PEER_5558},
    {"transform", 't', R_W, TRANSFORM(transform), 0, 0, NULL},
    {"exec", 'e', R_W, NAME(exec), 0, 0, "command"},
    {"jobs", 'j', R_W, NUMBER(jobs), 0, 1024, "0 (= number of CPUs) to 1024"},
    {"task-timeout", 0, R_W, DURATION(task_timeout_ms), 0, INT_MAX, ANY_DURATION},
    {"sleep", 0, R_W, DURATION(sleep_ms), 0, INT_MAX, ANY_DURATION},
    {"once", 0, R_W | R_S, FLAG(once), 1, 0, NULL},
    {"grace", 0, R_W, DURATION(grace_ms), 0, INT_MAX, ANY_DURATION},
    {"status-file", 0, R_W, TEXT(status_file), 0, 0, NULL},
    {"id", 0, R_W, WORKER_ID(id), 1, BP_ID_MAX, NULL},
    {"control-bind", 0, R_S, PEER(control_bind), 0, 0, PEER_5558},
    {"output", 'o', R_S, TEXT(output), 0, 0, NULL},
    {"ordered", 0, R_S, FLAG(ordered), 1, 0, NULL},
    {"timeout", 0, R_S, DURATION(timeout_ms), 0, INT_MAX, ANY_DURATION},
    {"count", 0, R_S, COUNT(count), 0, INT64_MAX / 2, "a task count"},
    {"summary-json", 0, R_S, TEXT(summary_json), 0, 0, NULL},
    {"heartbeat", 0, R_V | R_W, DURATION(hb_ms), 10, 3600000, TICK_DURATION},
    {"liveness", 0, R_V | R_W, NUMBER(liveness), 1, 1000, FROM_1_TO_1000},
    {"max-attempts", 0, R_V, NUMBER(max_attempts), 1, 1000, FROM_1_TO_1000},
    {"retries", 0, R_V, NUMBER(retries), 0, 1000, "a number from 0 to 1000"},
    {"task-deadline", 0, R_V, DURATION(task_deadline_ms), 0, INT_MAX, ANY_DURATION},
    {"ack-timeout", 0, R_V, DURATION(ack_timeout_ms), 10, 3600000, TICK_DURATION},
    {"speculate", 0, R_V, TEXT(speculate), 0, 0, NULL},
    {"require", 0, R_V, TEXT(require), 0, 0, NULL},
    {"prefetch", 0, R_W, PREFETCH(prefetch), 0, 4096, "'auto' or a number from 0 to 4096"},
    {"host-timeout", 0, R_W, DURATION(host_timeout_ms), 0, INT_MAX, ANY_DURATION},
    {"journal", 0, R_V | R_S, NAME(journal), 0, 0, FILE_NAME},
    {"resume", 0, R_V | R_S, FLAG(resume), 1, 0, NULL},
    {"sync", 0, R_V | R_S, SYNC(sync), 0, 0, "always, interval or none"},
    {"sync-interval", 0, R_V | R_S, DURATION(sync_ms), 0, INT_MAX, ANY_DURATION},
    {"halt", 0, R_V, HALT(halt_when), 0, 0,
     "never, soon,fail=N, now,fail=N or soon/now,fail=P% (e.g. soon,fail=1)"},
    {"joblog", 0, R_S, NAME(joblog), 0, 0, FILE_NAME},
    {"keygen", 0, R_ALL | NO_ENV, NAME(keygen), 0, 0, FILE_NAME},
    {"curve-secret", 0, R_ALL, NAME(curve_secret), 0, 0, FILE_NAME},
    {"curve-allow", 0, R_V | R_S, NAME(curve_allow), 0, 0, FILE_NAME},
    {"curve-server", 0, R_W, NAME(curve_server), 0, 0, FILE_NAME},
    {"metrics-file", 0, R_W | R_S, NAME(metrics_file), 0, 0, FILE_NAME},
    {"files", 0, R_V, FLAG(files), 1, 0, NULL},
    {"basefile", 0, R_V, LIST(basefiles), 0, 64, FILE_NAME},
    {"return", 0, R_W, LIST(returns), 0, 32, "pattern"},
    {"label", 0, R_W, LIST(labels), 0, 64, "label"},
    {"max-temp", 0, R_W, NUMBER(max_temp), 0, 150, "a temperature from 0 to 150 (C; 0 = off)"},
    {"thermal-file", 0, R_W, NAME(thermal_file), 0, 0, FILE_NAME},
    {"task-memory", 0, R_W, SIZE(task_memory), 0, INT64_MAX, "a size (e.g. 512M, 2G; 0 = none)"},
    {"max-return-size", 0, R_W | R_S, SIZE(max_return_size), 0, INT64_MAX,
     "a size (e.g. 512M, 4G)"},
    {"max-return-files", 0, R_W, NUMBER(max_return_files), 1, 255, "a number from 1 to 255"},
    {"scratch", 0, R_W, NAME(scratch), 0, 0, "directory"},
    {"cache-dir", 0, R_W, NAME(cache_dir), 0, 0, "directory"},
    {"output-dir", 0, R_S, NAME(output_dir), 0, 0, "directory"},
};
#define N_OPTS (sizeof opt_defs / sizeof opt_defs[0])

/* Parses a whole decimal integer in [lo, hi]. */
static int parse_int64(const char *s, int64_t lo, int64_t hi, int64_t *out)
{
    char *end;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (errno || end == s || *end || v < lo || v > hi)
        return -1;
    *out = v;
    return 0;
}

/* "250ms", "1.5s", "2m", "1h" or a plain number of seconds -> ms. */
static int parse_duration_ms(const char *s, int *out)
{
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (errno || end == s || v < 0 || !(v == v))
        return -1;
    double mult = 1000;
    if (!strcmp(end, "ms"))
        mult = 1;
    else if (!strcmp(end, "s") || !*end)
        mult = 1000;
    else if (!strcmp(end, "m"))
        mult = 60000;
    else if (!strcmp(end, "h"))
        mult = 3600000;
    else
        return -1;
    v *= mult;
    if (v > INT_MAX)
        return -1;
    *out = (int)(v + 0.5);
    return 0;
}

/* "1048576", "64K", "1M" -> bytes. */
static int parse_size(const char *s, int64_t *out)
{
    char *end;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (errno || end == s || v < 0)
        return -1;
    int64_t mult = 1;
    if (!strcmp(end, "K") || !strcmp(end, "k") || !strcmp(end, "KiB"))
        mult = 1024;
    else if (!strcmp(end, "M") || !strcmp(end, "MiB"))
        mult = (int64_t)1024 * 1024;
    else if (!strcmp(end, "G") || !strcmp(end, "GiB"))
        mult = (int64_t)1024 * 1024 * 1024;
    else if (*end)
        return -1;
    if (v > INT64_MAX / mult)
        return -1;
    *out = v * mult;
    return 0;
}

static int parse_bool(const char *s)
{
    if (!strcmp(s, "1") || !strcasecmp(s, "yes") || !strcasecmp(s, "true") || !strcasecmp(s, "on"))
        return 1;
    if (!strcmp(s, "0") || !strcasecmp(s, "no") || !strcasecmp(s, "false") ||
        !strcasecmp(s, "off") || !*s)
        return 0;
    return -1;
}

/* "never", "soon,fail=3", "now,fail=1", "soon,fail=10%" (GNU parallel's
 * spelling; percents of the tasks done so far, 1-100). */
static int parse_halt(struct bp_opts *o, const char *s)
{
    if (!strcmp(s, "never")) {
        o->halt_when = BP_HALT_NEVER;
        return 0;
    }
    const char *rest;
    if (!strncmp(s, "soon,fail=", 10)) {
        o->halt_when = BP_HALT_SOON;
        rest = s + 10;
    } else if (!strncmp(s, "now,fail=", 9)) {
        o->halt_when = BP_HALT_NOW;
        rest = s + 9;
    } else {
        return -1;
    }
    char num[16];
    size_t n = strlen(rest);
    int pct = n > 0 && rest[n - 1] == '%';
    if (pct)
        n--;
    if (n == 0 || n >= sizeof num)
        return -1;
    memcpy(num, rest, n);
    num[n] = '\0';
    int64_t v;
    if (parse_int64(num, 1, pct ? 100 : 1000000000, &v))
        return -1;
    o->halt_fail = (int)v;
    o->halt_pct = pct;
    return 0;
}

static int endpoint_ok(const char *s)
{
    const char *p = strstr(s, "://");
    return p && p > s && p[3];
}

static int is_none(const char *s)
{
    return !s || !*s || !strcmp(s, "none");
}

static void defaults(struct bp_opts *o, enum bp_role role)
{
    memset(o, 0, sizeof *o);
    o->role = role;
    o->log_level = BP_LOG_INFO;
    o->max_msg = (int64_t)BP_DEFAULT_MAX_MSG;
    o->progress = -1;
    o->wait_timeout_ms = 60000;
    o->jobs = 1;
    o->grace_ms = 10000;
    o->transform = "upper";
    o->hb_ms = 1000;
    o->liveness = 3;
    o->max_attempts = 3;
    o->ack_timeout_ms = 10000;
    o->prefetch = -1;
    o->host_timeout_ms = 60000;
    o->sync_ms = 200;
    o->max_return_size = (int64_t)4 << 30;
    o->max_return_files = 64;
    switch (role) {
    case BP_ROLE_VENTILATOR:
        o->bind = "tcp://*:5557";
        o->sink = "tcp://localhost:5558";
        o->linger_ms = 10000;
        break;
    case BP_ROLE_WORKER:
        o->tasks = "tcp://localhost:5557";
        o->results = "tcp://localhost:5558";
        o->linger_ms = 5000;
        break;
    case BP_ROLE_SINK:
        o->bind = "tcp://*:5558";
        o->linger_ms = 2000;
        break;
    }
}

/* Puts a one-line message in o->err; returns BP_EUSAGE. */
static int bad(struct bp_opts *o, const char *fmt, ...) BP_PRINTF(2, 3);
static int bad(struct bp_opts *o, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(o->err, sizeof o->err, fmt, ap);
    va_end(ap);
    return BP_EUSAGE;
}

/* One option's value on its way to its field. */
struct setting {
    struct bp_opts *o;
    const struct opt_def *d;
    const char *val; /* never NULL */
    const char *src; /* where it came from, for messages */
    int *info;       /* 1 after --help, 2 after --version */
};

static int *int_field(const struct setting *s)
{
    return (int *)(void *)((char *)s->o + s->d->at);
}

static int64_t *int64_field(const struct setting *s)
{
    return (int64_t *)(void *)((char *)s->o + s->d->at);
}

static const char **str_field(const struct setting *s)
{
    return (const char **)(void *)((char *)s->o + s->d->at);
}

/* "<src>: expected <what>, got '<val>'", the message of most kinds. */
static int expected(const struct setting *s)
{
    return bad(s->o, "%s: expected %s, got '%s'", s->src, s->d->what, s->val);
}

static int set_flag(const struct setting *s)
{
    *int_field(s) = (int)s->d->lo;
    return BP_OK;
}

static int set_info(const struct setting *s)
{
    *s->info = (int)s->d->lo;
    return BP_OK;
}

static int set_duration(const struct setting *s)
{
    int ms;
    if (parse_duration_ms(s->val, &ms) || ms < s->d->lo || ms > s->d->hi)
        return expected(s);
    *int_field(s) = ms;
    return BP_OK;
}

static int set_number(const struct setting *s)
{
    int64_t n;
    if (parse_int64(s->val, s->d->lo, s->d->hi, &n))
        return expected(s);
    *int_field(s) = (int)n;
    return BP_OK;
}

static int set_count(const struct setting *s)
{
    int64_t n;
    if (parse_int64(s->val, s->d->lo, s->d->hi, &n))
        return expected(s);
    *int64_field(s) = n;
    return BP_OK;
}

static int set_size(const struct setting *s)
{
    int64_t n;
    if (parse_size(s->val, &n) || n < s->d->lo || n > s->d->hi)
        return expected(s);
    *int64_field(s) = n;
    return BP_OK;
}

static int set_text(const struct setting *s)
{
    *str_field(s) = s->val;
    return BP_OK;
}

static int set_name(const struct setting *s)
{
    if (!*s->val)
        return bad(s->o, "%s: empty %s", s->src, s->d->what);
    return set_text(s);
}

static int set_endpoint(const struct setting *s)
{
    if (!endpoint_ok(s->val))
        return bad(s->o, "%s: invalid endpoint '%s' (expected %s)", s->src, s->val, s->d->what);
    return set_text(s);
}

static int set_peer(const struct setting *s)
{
    if (!is_none(s->val))
        return set_endpoint(s);
    return set_text(s);
}

static int set_prefetch(const struct setting *s)
{
    if (strcmp(s->val, "auto") != 0)
        return set_number(s);
    *int_field(s) = -1;
    return BP_OK;
}

static int set_sync(const struct setting *s)
{
    static const char *const names[] = {
        [BP_SYNC_INTERVAL] = "interval", [BP_SYNC_ALWAYS] = "always", [BP_SYNC_NONE] = "none"};
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
        if (!strcmp(s->val, names[i])) {
            *int_field(s) = (int)i;
            return BP_OK;
        }
    return expected(s);
}

static int set_halt(const struct setting *s)
{
    return parse_halt(s->o, s->val) ? expected(s) : BP_OK;
}

static int set_transform(const struct setting *s)
{
    if (!bp_transform_find(s->val))
        return bad(s->o, "%s: unknown transform '%s' (known: %s)", s->src, s->val,
                   bp_transform_names());
    return set_text(s);
}

static int set_worker_id(const struct setting *s)
{
    size_t n = strlen(s->val);
    if (n < (size_t)s->d->lo || n > (size_t)s->d->hi)
        return bad(s->o, "%s: worker id must be %d to %d bytes", s->src, (int)s->d->lo,
                   (int)s->d->hi);
    snprintf(s->o->id, sizeof s->o->id, "%s", s->val);
    return BP_OK;
}

static int set_list(const struct setting *s)
{
    struct bp_strlist *l = (struct bp_strlist *)(void *)((char *)s->o + s->d->at);
    if (!*s->val)
        return bad(s->o, "%s: empty %s", s->src, s->d->what);
    if (l->n >= (int)s->d->hi || l->n >= BP_LIST_MAX)
        return bad(s->o, "%s: at most %d of these", s->src, (int)s->d->hi);
    l->v[l->n++] = s->val;
    return BP_OK;
}

/* Per kind: whether it takes a value, and what reads and stores it. */
static const struct {
    int has_arg;
    int (*set)(const struct setting *);
} kinds[] = {
    [KIND_FLAG] = {no_argument, set_flag},
    [KIND_INFO] = {no_argument, set_info},
    [KIND_DURATION] = {required_argument, set_duration},
    [KIND_NUMBER] = {required_argument, set_number},
    [KIND_COUNT] = {required_argument, set_count},
    [KIND_SIZE] = {required_argument, set_size},
    [KIND_TEXT] = {required_argument, set_text},
    [KIND_NAME] = {required_argument, set_name},
    [KIND_ENDPOINT] = {required_argument, set_endpoint},
    [KIND_PEER] = {required_argument, set_peer},
    [KIND_PREFETCH] = {required_argument, set_prefetch},
    [KIND_SYNC] = {required_argument, set_sync},
    [KIND_HALT] = {required_argument, set_halt},
    [KIND_TRANSFORM] = {required_argument, set_transform},
    [KIND_WORKER_ID] = {required_argument, set_worker_id},
    [KIND_LIST] = {required_argument, set_list},
};

/* Applies one option: arg is its value (NULL: none given); src names where
 * it came from, for messages. */
static int apply(struct bp_opts *o, const struct opt_def *d, const char *arg, const char *src,
                 int *info)
{
    int has_arg = kinds[d->kind].has_arg;
    if (has_arg == required_argument && !arg)
        return bad(o, "%s: needs a value", src);
    /* Flags given through the environment carry a yes/no value. */
    if (has_arg == no_argument && arg) {
        int b = parse_bool(arg);
        if (b < 0)
            return bad(o, "%s: expected 1/0, yes/no or true/false, got '%s'", src, arg);
        if (!b)
            return BP_OK;
    }
    /* Never NULL past the check above; spelled out for the analyzers. */
    struct setting s = {o, d, arg ? arg : "", src, info};
    return kinds[d->kind].set(&s);
}

static const char *env_lookup(char *const envp[], const char *name)
{
    if (!envp)
        return getenv(name);
    size_t n = strlen(name);
    for (size_t i = 0; envp[i]; i++)
        if (!strncmp(envp[i], name, n) && envp[i][n] == '=')
            return envp[i] + n + 1;
    return NULL;
}

/* Applies the BP_<NAME> variables of the role's options, in table order. */
static int parse_env(struct bp_opts *o, unsigned mask, char *const envp[], int *info)
{
    for (size_t i = 0; i < N_OPTS; i++) {
        const struct opt_def *d = &opt_defs[i];
        if (!(d->roles & mask) || (d->roles & NO_ENV))
            continue;
        char name[64] = "BP_";
        size_t k = 3;
        for (const char *p = d->name; *p && k + 1 < sizeof name; p++)
            name[k++] = *p == '-' ? '_' : (char)toupper((unsigned char)*p);
        name[k] = '\0';
        const char *v = env_lookup(envp, name);
        if (!v)
            continue;
        char src[80];
        snprintf(src, sizeof src, "environment %s", name);
        int rc = apply(o, d, v, src, info);
        if (rc != BP_OK)
            return rc;
    }
    return BP_OK;
}

/* getopt_long's value for row i: its letter, or 256 + i. */
static int opt_val(size_t i)
{
    return opt_defs[i].letter ? opt_defs[i].letter : 256 + (int)i;
}

/* getopt_long's tables for the role's options. */
static void getopt_tables(unsigned mask, struct option *lopts, char *shorts)
{
    size_t nl = 0, ns = 0;
    shorts[ns++] = ':';
    for (size_t i = 0; i < N_OPTS; i++) {
        const struct opt_def *d = &opt_defs[i];
        if (!(d->roles & mask))
            continue;
        int has_arg = kinds[d->kind].has_arg;
        lopts[nl].name = d->name;
        lopts[nl].has_arg = has_arg;
        lopts[nl].flag = NULL;
        lopts[nl].val = opt_val(i);
        nl++;
        if (d->letter) {
            shorts[ns++] = d->letter;
            if (has_arg == required_argument)
                shorts[ns++] = ':';
        }
    }
    memset(&lopts[nl], 0, sizeof lopts[nl]);
    shorts[ns] = '\0';
}

/* The role's row getopt_long returned c for, or NULL. */
static const struct opt_def *find_opt(int c, unsigned mask)
{
    for (size_t i = 0; i < N_OPTS; i++)
        if (opt_val(i) == c && (opt_defs[i].roles & mask))
            return &opt_defs[i];
    return NULL;
}

/* Applies the command line's options; leaves optind at the first operand.
 * *input_cli tells whether --input was given there. */
static int parse_argv(struct bp_opts *o, unsigned mask, int argc, char *const argv[], int *info,
                      int *input_cli)
{
    struct option lopts[N_OPTS + 1];
    char shorts[64];
    getopt_tables(mask, lopts, shorts);
    opterr = 0;
    optind = 0; /* full re-initialisation (glibc and musl) */
    for (;;) {
        int li = -1;
        int c = getopt_long(argc, argv, shorts, lopts, &li);
        if (c == -1)
            return BP_OK;
        const char *given = optind > 0 && optind <= argc ? argv[optind - 1] : "?";
        if (c == '?') {
            if (optopt && optopt < 256)
                return bad(o, "unknown option '-%c'", optopt);
            return bad(o, "unknown option '%s'", given);
        }
        if (c == ':')
            return bad(o, "option '%s' needs a value", given);
        const struct opt_def *d = find_opt(c, mask);
        if (!d)
            return bad(o, "unknown option '%s'", given);
        if (!strcmp(d->name, "input"))
            *input_cli = 1;
        char src[80];
        snprintf(src, sizeof src, "--%s", d->name);
        int rc = apply(o, d, kinds[d->kind].has_arg ? optarg : NULL, src, info);
        if (rc != BP_OK)
            return rc;
    }
}

/* The worker's derived defaults and its own checks. */
static int finish_worker(struct bp_opts *o)
{
    if (o->jobs == 0) {
        long n = sysconf(_SC_NPROCESSORS_ONLN);
        o->jobs = n > 0 ? (int)(n > 1024 ? 1024 : n) : 1;
    }
    if (!o->id[0]) {
        char host[64] = "worker";
        if (gethostname(host, sizeof host) != 0)
            snprintf(host, sizeof host, "worker");
        host[sizeof host - 1] = '\0';
        snprintf(o->id, sizeof o->id, "%.40s:%ld", host, (long)getpid());
    }
    if (is_none(o->control))
        o->control = NULL;
    if (o->once && o->raw)
        return bad(o, "--once needs the acknowledged channel: it cannot be used with --raw");
    return BP_OK;
}

/* CURVE: a host role needs its secret certificate and the boards'
 * allowlist; a worker its own secret and the host's public one. */
static int check_curve(struct bp_opts *o, enum bp_role role)
{
    const char *other = role == BP_ROLE_WORKER ? o->curve_server : o->curve_allow;
    const char *other_name = role == BP_ROLE_WORKER ? "--curve-server" : "--curve-allow";
    if (!o->curve_secret == !other)
        return BP_OK;
    return bad(o, "%s is needed with %s (CURVE is all or nothing)",
               o->curve_secret ? other_name : "--curve-secret",
               o->curve_secret ? "--curve-secret" : other_name);
}

/* --journal/--resume and --sync against the rest. */
static int check_durability(struct bp_opts *o, enum bp_role role)
{
    int journal = o->journal || o->resume;
    if (journal && o->raw)
        return bad(o, "--journal/--resume need the acknowledged channel: not with --raw");
    if (o->sync == BP_SYNC_INTERVAL && o->sync_ms < 1)
        return bad(o, "--sync-interval: must be at least 1ms");
    /* A resumed batch is read again from the start: a pipe cannot be. */
    if (role == BP_ROLE_VENTILATOR && journal && (!o->input || !strcmp(o->input, "-")))
        return bad(o, "--journal/--resume need --input FILE (stdin cannot be read again)");
    if (role == BP_ROLE_SINK && journal && (!o->output || !strcmp(o->output, "-")))
        return bad(o, "--journal/--resume need --output FILE (stdout cannot be continued)");
    return BP_OK;
}

static int finish_sink(struct bp_opts *o)
{
    if (is_none(o->control_bind))
        o->control_bind = NULL;
    if (o->raw && o->joblog)
        return bad(o, "--joblog needs task ids: it cannot be used with --raw");
    if (o->raw && o->ordered)
        return bad(o, "--ordered needs task ids: it cannot be used with --raw");
    return BP_OK;
}

/* Mixed fleets: --speculate and --require parse, --label entries are
 * valid and fit a HELLO. */
static int check_fleet(struct bp_opts *o, enum bp_role role)
{
    char why[200];
    if (role == BP_ROLE_VENTILATOR && o->speculate) {
        struct bp_spec_cfg sc;
        if (bp_spec_parse(o->speculate, &sc, why, sizeof why))
            return bad(o, "--speculate: %s", why);
    }
    if (role == BP_ROLE_VENTILATOR && o->require) {
        static struct bp_req r; /* (2 KB per term: off the stack) */
        if (bp_req_parse(o->require, &r, why, sizeof why))
            return bad(o, "--require: %s", why);
    }
    uint8_t b[BP_LABELS_MAX];
    size_t n = 0;
    for (int i = 0; role == BP_ROLE_WORKER && i < o->labels.n; i++)
        if (bp_labels_add_arg(b, sizeof b, &n, o->labels.v[i]))
            return bad(
                o,
                "--label: expected NAME or NAME=VALUE (NAME: 1-%d of letters, digits, "
                "_ . -; VALUE: up to %d printable bytes; at most %d bytes in all), got '%.60s'",
                BP_LABEL_NAME_MAX, BP_LABEL_VALUE_MAX, BP_LABELS_MAX, o->labels.v[i]);
    return BP_OK;
}

/* Checks across options, in the order their messages take precedence. */
static int finish(struct bp_opts *o, enum bp_role role)
{
    int rc;
    if (role == BP_ROLE_WORKER && (rc = finish_worker(o)) != BP_OK)
        return rc;
    if (role == BP_ROLE_VENTILATOR && is_none(o->sink))
        o->sink = NULL;
    if ((rc = check_fleet(o, role)) != BP_OK)
        return rc;
    if ((rc = check_curve(o, role)) != BP_OK || (rc = check_durability(o, role)) != BP_OK)
        return rc;
    if (role == BP_ROLE_SINK)
        return finish_sink(o);
    return BP_OK;
}

static int parse(struct bp_opts *o, enum bp_role role, int argc, char *const argv[],
                 char *const envp[], int *want_version)
{
    unsigned mask = 1u << role;
    int info = 0, input_cli = 0;
    int rc;
    defaults(o, role);
    if (want_version)
        *want_version = 0;
    /* Environment first (for service units), so the command line wins. */
    if ((rc = parse_env(o, mask, envp, &info)) != BP_OK ||
        (rc = parse_argv(o, mask, argc, argv, &info, &input_cli)) != BP_OK)
        return rc;
    if (info) {
        if (want_version)
            *want_version = info == 2;
        return BP_EXIT_INFO;
    }
    if (o->keygen) {
        if (optind < argc)
            return bad(o, "unexpected argument '%s'", argv[optind]);
        return BP_OK; /* the caller writes the key pair and stops */
    }
    /* The ventilator takes its input file as an operand too. */
    /* An operand wins over BP_INPUT, but not over --input. */
    if (role == BP_ROLE_VENTILATOR && optind < argc && !input_cli)
        o->input = argv[optind++];
    if (optind < argc)
        return bad(o, "unexpected argument '%s'", argv[optind]);
    return finish(o, role);
}

int bp_opts_parse(struct bp_opts *o, enum bp_role role, int argc, char *const argv[],
                  char *const envp[], int *want_version)
{
    int rc = parse(o, role, argc, argv, envp, want_version);
    /* Messages quote what was given: keep them one printable line (found
     * by fuzz_opts: a newline or an escape in an argument came through). */
    if (rc == BP_EUSAGE)
        for (char *p = o->err; *p; p++)
            if ((unsigned char)*p < 0x20 || *p == 0x7f)
                *p = '?';
    return rc;
}
