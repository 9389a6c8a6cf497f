#include <ctype.h>
#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "bp_internal.h"
#include "bp_transform.h"

extern char **environ;

#define R_V (1u << BP_ROLE_VENTILATOR)
#define R_W (1u << BP_ROLE_WORKER)
#define R_S (1u << BP_ROLE_SINK)
#define R_ALL (R_V | R_W | R_S)

enum {
    O_HELP = 'h',
    O_VERSION = 'V',
    O_VERBOSE = 'v',
    O_QUIET = 'q',
    O_NUL = '0',
    O_INPUT = 'i',
    O_OUTPUT = 'o',
    O_EXEC = 'e',
    O_JOBS = 'j',
    O_TRANSFORM = 't',
    O_WAIT_WORKERS = 'w',
    O_SKIP_EMPTY = 'r',
    O_RAW = 256,
    O_MAX_MSG,
    O_LINGER,
    O_PROGRESS,
    O_NO_PROGRESS,
    O_BIND,
    O_SINK,
    O_WAIT_TIMEOUT,
    O_TASKS,
    O_RESULTS,
    O_CONTROL,
    O_TASK_TIMEOUT,
    O_SLEEP,
    O_ONCE,
    O_GRACE,
    O_STATUS_FILE,
    O_ID,
    O_CONTROL_BIND,
    O_ORDERED,
    O_TIMEOUT,
    O_COUNT,
    O_SUMMARY_JSON,
    O_HEARTBEAT,
    O_LIVENESS,
    O_MAX_ATTEMPTS,
    O_RETRIES,
    O_TASK_DEADLINE,
    O_ACK_TIMEOUT,
    O_PREFETCH,
    O_HOST_TIMEOUT,
    O_JOURNAL,
    O_RESUME,
    O_SYNC,
    O_SYNC_INTERVAL,
    O_HALT,
    O_JOBLOG,
    O_KEYGEN,
    O_CURVE_SECRET,
    O_CURVE_ALLOW,
    O_CURVE_SERVER,
    O_METRICS_FILE
};

struct opt_def {
    const char *name;
    int has_arg;
    int val;
    unsigned roles;
};

static const struct opt_def opt_defs[] = {
    {"help", no_argument, O_HELP, R_ALL},
    {"version", no_argument, O_VERSION, R_ALL},
    {"verbose", no_argument, O_VERBOSE, R_ALL},
    {"quiet", no_argument, O_QUIET, R_ALL},
    {"raw", no_argument, O_RAW, R_ALL},
    {"null", no_argument, O_NUL, R_V | R_S},
    {"skip-empty", no_argument, O_SKIP_EMPTY, R_V},
    {"max-msg-size", required_argument, O_MAX_MSG, R_ALL},
    {"linger", required_argument, O_LINGER, R_ALL},
    {"progress", no_argument, O_PROGRESS, R_V | R_S},
    {"no-progress", no_argument, O_NO_PROGRESS, R_V | R_S},
    {"bind", required_argument, O_BIND, R_V | R_S},
    {"sink", required_argument, O_SINK, R_V},
    {"input", required_argument, O_INPUT, R_V},
    {"wait-workers", required_argument, O_WAIT_WORKERS, R_V},
    {"wait-timeout", required_argument, O_WAIT_TIMEOUT, R_V},
    {"tasks", required_argument, O_TASKS, R_W},
    {"results", required_argument, O_RESULTS, R_W},
    {"control", required_argument, O_CONTROL, R_W},
    {"transform", required_argument, O_TRANSFORM, R_W},
    {"exec", required_argument, O_EXEC, R_W},
    {"jobs", required_argument, O_JOBS, R_W},
    {"task-timeout", required_argument, O_TASK_TIMEOUT, R_W},
    {"sleep", required_argument, O_SLEEP, R_W},
    {"once", no_argument, O_ONCE, R_W | R_S},
    {"grace", required_argument, O_GRACE, R_W},
    {"status-file", required_argument, O_STATUS_FILE, R_W},
    {"id", required_argument, O_ID, R_W},
    {"control-bind", required_argument, O_CONTROL_BIND, R_S},
    {"output", required_argument, O_OUTPUT, R_S},
    {"ordered", no_argument, O_ORDERED, R_S},
    {"timeout", required_argument, O_TIMEOUT, R_S},
    {"count", required_argument, O_COUNT, R_S},
    {"summary-json", required_argument, O_SUMMARY_JSON, R_S},
    {"heartbeat", required_argument, O_HEARTBEAT, R_V | R_W},
    {"liveness", required_argument, O_LIVENESS, R_V | R_W},
    {"max-attempts", required_argument, O_MAX_ATTEMPTS, R_V},
    {"retries", required_argument, O_RETRIES, R_V},
    {"task-deadline", required_argument, O_TASK_DEADLINE, R_V},
    {"ack-timeout", required_argument, O_ACK_TIMEOUT, R_V},
    {"prefetch", required_argument, O_PREFETCH, R_W},
    {"host-timeout", required_argument, O_HOST_TIMEOUT, R_W},
    {"journal", required_argument, O_JOURNAL, R_V | R_S},
    {"resume", no_argument, O_RESUME, R_V | R_S},
    {"sync", required_argument, O_SYNC, R_V | R_S},
    {"sync-interval", required_argument, O_SYNC_INTERVAL, R_V | R_S},
    {"halt", required_argument, O_HALT, R_V},
    {"joblog", required_argument, O_JOBLOG, R_S},
    {"keygen", required_argument, O_KEYGEN, R_ALL},
    {"curve-secret", required_argument, O_CURVE_SECRET, R_ALL},
    {"curve-allow", required_argument, O_CURVE_ALLOW, R_V | R_S},
    {"curve-server", required_argument, O_CURVE_SERVER, R_W},
    {"metrics-file", required_argument, O_METRICS_FILE, R_W | R_S},
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

/* Where a duration option's value goes, or NULL if d is not one. */
static int *duration_field(struct bp_opts *o, int val)
{
    switch (val) {
    case O_LINGER:
        return &o->linger_ms;
    case O_WAIT_TIMEOUT:
        return &o->wait_timeout_ms;
    case O_TASK_TIMEOUT:
        return &o->task_timeout_ms;
    case O_SLEEP:
        return &o->sleep_ms;
    case O_GRACE:
        return &o->grace_ms;
    case O_TIMEOUT:
        return &o->timeout_ms;
    case O_TASK_DEADLINE:
        return &o->task_deadline_ms;
    case O_HOST_TIMEOUT:
        return &o->host_timeout_ms;
    case O_SYNC_INTERVAL:
        return &o->sync_ms;
    default:
        return NULL;
    }
}

/* Applies one option. src names where it came from, for messages. */
static int apply(struct bp_opts *o, const struct opt_def *d, const char *arg, const char *src,
                 int *info)
{
    int64_t n;
    int b;
#define BAD(...)                                                                                   \
    do {                                                                                           \
        snprintf(o->err, sizeof o->err, __VA_ARGS__);                                              \
        return BP_EUSAGE;                                                                          \
    } while (0)

    if (d->has_arg == required_argument && !arg)
        BAD("%s: needs a value", src);
    /* Flags given through the environment carry a yes/no value. */
    if (d->has_arg == no_argument && arg) {
        b = parse_bool(arg);
        if (b < 0)
            BAD("%s: expected 1/0, yes/no or true/false, got '%s'", src, arg);
        if (!b)
            return BP_OK;
    }
    /* Never NULL past the check above; spelled out for the analyzers. */
    const char *val = arg ? arg : "";
    int *dur = duration_field(o, d->val);
    if (dur) {
        if (parse_duration_ms(val, dur))
            BAD("%s: expected a duration (e.g. 10s, 250ms, 2m; 0 = none), got '%s'", src, val);
        return BP_OK;
    }
    switch (d->val) {
    case O_HELP:
        *info = 1;
        break;
    case O_VERSION:
        *info = 2;
        break;
    case O_VERBOSE:
        o->log_level = BP_LOG_DEBUG;
        break;
    case O_QUIET:
        o->log_level = BP_LOG_ERROR;
        break;
    case O_RAW:
        o->raw = 1;
        break;
    case O_NUL:
        o->nul = 1;
        break;
    case O_SKIP_EMPTY:
        o->skip_empty = 1;
        break;
    case O_PROGRESS:
        o->progress = 1;
        break;
    case O_NO_PROGRESS:
        o->progress = 0;
        break;
    case O_ONCE:
        o->once = 1;
        break;
    case O_ORDERED:
        o->ordered = 1;
        break;
    case O_RESUME:
        o->resume = 1;
        break;
    case O_JOURNAL:
        if (!*val)
            BAD("%s: empty file name", src);
        o->journal = val;
        break;
    case O_HALT:
        if (parse_halt(o, val))
            BAD("%s: expected never, soon,fail=N, now,fail=N or soon/now,fail=P%% (e.g. "
                "soon,fail=1), got '%s'",
                src, val);
        break;
    case O_SYNC:
        if (!strcmp(val, "always"))
            o->sync = BP_SYNC_ALWAYS;
        else if (!strcmp(val, "interval"))
            o->sync = BP_SYNC_INTERVAL;
        else if (!strcmp(val, "none"))
            o->sync = BP_SYNC_NONE;
        else
            BAD("%s: expected always, interval or none, got '%s'", src, val);
        break;
    case O_MAX_MSG:
        if (parse_size(val, &n) || n < 64 || n > (int64_t)1 << 31)
            BAD("%s: expected a size from 64 to 2G (e.g. 1M), got '%s'", src, val);
        o->max_msg = n;
        break;
    case O_WAIT_WORKERS:
        if (parse_int64(val, 0, 100000, &n))
            BAD("%s: expected a number of workers (0-100000), got '%s'", src, val);
        o->wait_workers = (int)n;
        break;
    case O_JOBS:
        if (parse_int64(val, 0, 1024, &n))
            BAD("%s: expected 0 (= number of CPUs) to 1024, got '%s'", src, val);
        o->jobs = (int)n;
        break;
    case O_HEARTBEAT:
    case O_ACK_TIMEOUT: {
        int ms;
        if (parse_duration_ms(val, &ms) || ms < 10 || ms > 3600000)
            BAD("%s: expected a duration from 10ms to 1h (e.g. 1s, 500ms), got '%s'", src, val);
        if (d->val == O_HEARTBEAT)
            o->hb_ms = ms;
        else
            o->ack_timeout_ms = ms;
        break;
    }
    case O_LIVENESS:
    case O_MAX_ATTEMPTS:
        if (parse_int64(val, 1, 1000, &n))
            BAD("%s: expected a number from 1 to 1000, got '%s'", src, val);
        if (d->val == O_LIVENESS)
            o->liveness = (int)n;
        else
            o->max_attempts = (int)n;
        break;
    case O_RETRIES:
        if (parse_int64(val, 0, 1000, &n))
            BAD("%s: expected a number from 0 to 1000, got '%s'", src, val);
        o->retries = (int)n;
        break;
    case O_PREFETCH:
        if (!strcmp(val, "auto")) {
            o->prefetch = -1;
            break;
        }
        if (parse_int64(val, 0, 4096, &n))
            BAD("%s: expected 'auto' or a number from 0 to 4096, got '%s'", src, val);
        o->prefetch = (int)n;
        break;
    case O_COUNT:
        if (parse_int64(val, 0, INT64_MAX / 2, &n))
            BAD("%s: expected a task count, got '%s'", src, val);
        o->count = n;
        break;
    case O_BIND:
    case O_TASKS:
    case O_RESULTS:
        if (!endpoint_ok(val))
            BAD("%s: invalid endpoint '%s' (expected e.g. tcp://host:5557)", src, val);
        if (d->val == O_BIND)
            o->bind = val;
        else if (d->val == O_TASKS)
            o->tasks = val;
        else
            o->results = val;
        break;
    case O_SINK:
    case O_CONTROL:
    case O_CONTROL_BIND:
        if (!is_none(val) && !endpoint_ok(val))
            BAD("%s: invalid endpoint '%s' (expected e.g. tcp://host:5558, or none)", src, val);
        if (d->val == O_SINK)
            o->sink = val;
        else if (d->val == O_CONTROL)
            o->control = val;
        else
            o->control_bind = val;
        break;
    case O_INPUT:
        o->input = val;
        break;
    case O_OUTPUT:
        o->output = val;
        break;
    case O_SUMMARY_JSON:
        o->summary_json = val;
        break;
    case O_JOBLOG:
        if (!*val)
            BAD("%s: empty file name", src);
        o->joblog = val;
        break;
    case O_STATUS_FILE:
        o->status_file = val;
        break;
    case O_METRICS_FILE:
        if (!*val)
            BAD("%s: empty file name", src);
        o->metrics_file = val;
        break;
    case O_KEYGEN:
    case O_CURVE_SECRET:
    case O_CURVE_ALLOW:
    case O_CURVE_SERVER:
        if (!*val)
            BAD("%s: empty file name", src);
        if (d->val == O_KEYGEN)
            o->keygen = val;
        else if (d->val == O_CURVE_SECRET)
            o->curve_secret = val;
        else if (d->val == O_CURVE_ALLOW)
            o->curve_allow = val;
        else
            o->curve_server = val;
        break;
    case O_TRANSFORM:
        if (!bp_transform_find(val))
            BAD("%s: unknown transform '%s' (known: %s)", src, val, bp_transform_names());
        o->transform = val;
        break;
    case O_EXEC:
        if (!*val)
            BAD("%s: empty command", src);
        o->exec = val;
        break;
    case O_ID:
        if (!*val || strlen(val) > BP_ID_MAX)
            BAD("%s: worker id must be 1 to %d bytes", src, BP_ID_MAX);
        snprintf(o->id, sizeof o->id, "%s", val);
        break;
    default:
        BAD("%s: unhandled option", src);
    }
    return BP_OK;
#undef BAD
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

static int parse(struct bp_opts *o, enum bp_role role, int argc, char *const argv[],
                 char *const envp[], int *want_version)
{
    unsigned mask = 1u << role;
    int info = 0;
    int rc;
    defaults(o, role);
    if (want_version)
        *want_version = 0;

    /* Environment first (for service units), so the command line wins. */
    for (size_t i = 0; i < N_OPTS; i++) {
        const struct opt_def *d = &opt_defs[i];
        if (!(d->roles & mask) || d->val == O_HELP || d->val == O_VERSION || d->val == O_KEYGEN)
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
        if ((rc = apply(o, d, v, src, &info)) != BP_OK)
            return rc;
    }

    struct option lopts[N_OPTS + 1];
    char shorts[64];
    size_t nl = 0, ns = 0;
    shorts[ns++] = ':';
    for (size_t i = 0; i < N_OPTS; i++) {
        const struct opt_def *d = &opt_defs[i];
        if (!(d->roles & mask))
            continue;
        lopts[nl].name = d->name;
        lopts[nl].has_arg = d->has_arg;
        lopts[nl].flag = NULL;
        lopts[nl].val = d->val;
        nl++;
        if (d->val < 256) {
            shorts[ns++] = (char)d->val;
            if (d->has_arg == required_argument)
                shorts[ns++] = ':';
        }
    }
    memset(&lopts[nl], 0, sizeof lopts[nl]);
    shorts[ns] = '\0';

    int input_cli = 0;
    opterr = 0;
    optind = 0; /* full re-initialisation (glibc and musl) */
    for (;;) {
        int li = -1;
        int c = getopt_long(argc, argv, shorts, lopts, &li);
        if (c == -1)
            break;
        const char *bad = optind > 0 && optind <= argc ? argv[optind - 1] : "?";
        if (c == '?') {
            if (optopt && optopt < 256)
                snprintf(o->err, sizeof o->err, "unknown option '-%c'", optopt);
            else
                snprintf(o->err, sizeof o->err, "unknown option '%s'", bad);
            return BP_EUSAGE;
        }
        if (c == ':') {
            snprintf(o->err, sizeof o->err, "option '%s' needs a value", bad);
            return BP_EUSAGE;
        }
        const struct opt_def *d = NULL;
        for (size_t i = 0; i < N_OPTS; i++)
            if (opt_defs[i].val == c && (opt_defs[i].roles & mask))
                d = &opt_defs[i];
        if (!d) {
            snprintf(o->err, sizeof o->err, "unknown option '%s'", bad);
            return BP_EUSAGE;
        }
        if (d->val == O_INPUT)
            input_cli = 1;
        char src[80];
        snprintf(src, sizeof src, "--%s", d->name);
        if ((rc = apply(o, d, d->has_arg ? optarg : NULL, src, &info)) != BP_OK)
            return rc;
    }
    if (info) {
        if (want_version)
            *want_version = info == 2;
        return BP_EXIT_INFO;
    }
    if (o->keygen) {
        if (optind < argc) {
            snprintf(o->err, sizeof o->err, "unexpected argument '%s'", argv[optind]);
            return BP_EUSAGE;
        }
        return BP_OK; /* the caller writes the key pair and stops */
    }
    /* The ventilator takes its input file as an operand too. */
    /* An operand wins over BP_INPUT, but not over --input. */
    if (role == BP_ROLE_VENTILATOR && optind < argc && !input_cli)
        o->input = argv[optind++];
    if (optind < argc) {
        snprintf(o->err, sizeof o->err, "unexpected argument '%s'", argv[optind]);
        return BP_EUSAGE;
    }

    if (role == BP_ROLE_WORKER) {
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
        if (o->once && o->raw) {
            snprintf(o->err, sizeof o->err,
                     "--once needs the acknowledged channel: it cannot be used with --raw");
            return BP_EUSAGE;
        }
    }
    if (role == BP_ROLE_VENTILATOR && is_none(o->sink))
        o->sink = NULL;
    /* CURVE: a host role needs its secret certificate and the boards'
     * allowlist; a worker its own secret and the host's public one. */
    const char *other = role == BP_ROLE_WORKER ? o->curve_server : o->curve_allow;
    const char *other_name = role == BP_ROLE_WORKER ? "--curve-server" : "--curve-allow";
    if (!o->curve_secret != !other) {
        snprintf(o->err, sizeof o->err, "%s", o->curve_secret ? other_name : "--curve-secret");
        snprintf(o->err + strlen(o->err), sizeof o->err - strlen(o->err),
                 " is needed with %s (CURVE is all or nothing)",
                 o->curve_secret ? "--curve-secret" : other_name);
        return BP_EUSAGE;
    }
    if ((o->journal || o->resume) && o->raw) {
        snprintf(o->err, sizeof o->err,
                 "--journal/--resume need the acknowledged channel: not with --raw");
        return BP_EUSAGE;
    }
    if (o->sync == BP_SYNC_INTERVAL && o->sync_ms < 1) {
        snprintf(o->err, sizeof o->err, "--sync-interval: must be at least 1ms");
        return BP_EUSAGE;
    }
    /* A resumed batch is read again from the start: a pipe cannot be. */
    if (role == BP_ROLE_VENTILATOR && (o->journal || o->resume) &&
        (!o->input || !strcmp(o->input, "-"))) {
        snprintf(o->err, sizeof o->err,
                 "--journal/--resume need --input FILE (stdin cannot be read again)");
        return BP_EUSAGE;
    }
    if (role == BP_ROLE_SINK && (o->journal || o->resume) &&
        (!o->output || !strcmp(o->output, "-"))) {
        snprintf(o->err, sizeof o->err,
                 "--journal/--resume need --output FILE (stdout cannot be continued)");
        return BP_EUSAGE;
    }
    if (role == BP_ROLE_SINK) {
        if (is_none(o->control_bind))
            o->control_bind = NULL;
        if (o->raw && o->joblog) {
            snprintf(o->err, sizeof o->err,
                     "--joblog needs task ids: it cannot be used with --raw");
            return BP_EUSAGE;
        }
        if (o->raw && o->ordered) {
            snprintf(o->err, sizeof o->err,
                     "--ordered needs task ids: it cannot be used with --raw");
            return BP_EUSAGE;
        }
    }
    return BP_OK;
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

static const char usage_vent[] =
    "Usage: ventilator [OPTIONS] [FILE]\n"
    "Hands tasks to boardpipe workers as they ask for them (ROUTER, binds) and\n"
    "keeps each task until the sink has its result: a task on a worker that\n"
    "dies or goes silent is sent again. Tasks come from FILE (or --input; '-'\n"
    "is stdin), one per line; with no input the tutorial's seven strings.\n"
    "\n"
    "  -i, --input FILE        read tasks from FILE ('-': stdin)\n"
    "  -0, --null              tasks are NUL-separated (binary-safe)\n"
    "  -r, --skip-empty        an empty line (or record) is no task (GNU parallel's\n"
    "                          -r); by default it is an empty task, so results\n"
    "                          line up with the input under the sink's --ordered\n"
    "      --bind ENDPOINT     where workers connect (default tcp://*:5557)\n"
    "      --sink ENDPOINT     the sink that acknowledges results (default\n"
    "                          tcp://localhost:5558; 'none': a task counts as done\n"
    "                          when its worker says so, with no acknowledgement)\n"
    "  -w, --wait-workers N    wait until N workers said hello before starting\n"
    "      --wait-timeout DUR  give up waiting for workers or the sink after DUR\n"
    "                          (default 60s; 0: forever)\n"
    "      --heartbeat DUR     heartbeat interval to workers and sink (1s)\n"
    "      --liveness N        missed heartbeats before a worker is dead (3)\n"
    "      --max-attempts N    deliveries a task may lose before it fails as\n"
    "                          'lost N times' (3)\n"
    "      --retries N         run a failed command again, up to N times (default 0):\n"
    "                          a retry waits up to 5 s for a worker other than the\n"
    "                          one that failed it, while another is connected\n"
    "      --task-deadline DUR redeliver a task out on a worker longer than DUR\n"
    "                          (default: none; the worker keeps running it)\n"
    "      --ack-timeout DUR   redeliver a task whose result the sink did not\n"
    "                          acknowledge within DUR of the worker finishing (10s)\n"
    "      --resume            continue the batch in the journal (its batch id;\n"
    "                          only tasks without an acknowledged result are sent);\n"
    "                          with no journal yet, start one (default journal:\n"
    "                          FILE.vjournal next to the input; without --resume\n"
    "                          an unfinished one there is refused, exit 2)\n"
    "      --journal JFILE     keep the batch's progress in JFILE (removed when the\n"
    "                          batch completes); refuses an existing one without\n"
    "                          --resume\n"
    "      --sync MODE         when the journal is forced to disk: interval (every\n"
    "                          --sync-interval, default 200ms), always, none\n"
    "                          (what is not on disk is run again after a power cut)\n"
    "      --halt WHEN,fail=N  stop the batch once N tasks failed (N%: that share of\n"
    "                          the tasks done, once 10 are): soon lets tasks out on\n"
    "                          workers finish, now stops them too (the workers send\n"
    "                          SIGTERM, SIGKILL after their --grace); the tasks not\n"
    "                          run are reported 'halted' and both host roles exit 5\n"
    "      --curve-secret FILE encrypt and authenticate with CURVE: the host's secret\n"
    "                          certificate (NAME.key_secret from --keygen, mode 600)\n"
    "      --curve-allow DIR   with --curve-secret: admit only workers whose public\n"
    "                          certificate (*.key) is in DIR; SIGHUP reloads DIR\n"
    "      --keygen NAME       write a new key pair as NAME.key and NAME.key_secret\n"
    "                          and exit (never overwrites)\n"
    "      --max-msg-size SIZE largest task (default 1M)\n"
    "      --linger DUR        time to deliver the last messages on exit (1s at most)\n"
    "      --raw               plain single-frame strings over PUSH (tutorial/pyzmq\n"
    "                          peers): NO delivery guarantee, nothing is sent again\n"
    "      --progress          live progress line on stderr (default: if a TTY)\n"
    "      --no-progress       no progress line\n"
    "  -v, --verbose           more log lines on stderr\n"
    "  -q, --quiet             errors only\n"
    "  -h, --help              this text\n"
    "  -V, --version           version, libzmq version and target\n"
    "\n"
    "Every option can also be set as BP_<NAME> in the environment, e.g.\n"
    "BP_WAIT_WORKERS=2 (command-line options win).\n"
    "Exit status: 0 every task ok, 1 error, 2 usage, 3 some tasks failed (or input\n"
    "records rejected), 4 stopped before every task had a result, 5 halted (--halt).\n";

static const char usage_worker[] =
    "Usage: worker [OPTIONS]\n"
    "Asks a ventilator for tasks, runs them and sends the results to a sink.\n"
    "\n"
    "      --tasks ENDPOINT    ventilator (default tcp://localhost:5557)\n"
    "      --results ENDPOINT  sink (default tcp://localhost:5558)\n"
    "  -t, --transform NAME    built-in transform: upper (default), lower, echo, reverse\n"
    "  -e, --exec CMD          run '/bin/sh -c CMD' per task: task on stdin, result is\n"
    "                          its stdout; a non-zero exit is reported as failed\n"
    "  -j, --jobs N            tasks run at once (default 1; 0: number of CPUs)\n"
    "      --prefetch N|auto   tasks held beyond the running ones (default auto:\n"
    "                          enough to cover a round trip; none for long tasks)\n"
    "      --task-timeout DUR  kill a command running longer (default: none)\n"
    "      --sleep DUR         wait DUR per task (the tutorial's 1s), default 0\n"
    "      --once              exit 0 when the ventilator ends the batch\n"
    "      --host-timeout DUR  with --once: exit 1 when no ventilator answered for\n"
    "                          DUR (default 60s; 0: wait forever)\n"
    "      --heartbeat DUR     heartbeat interval (1s)\n"
    "      --liveness N        missed heartbeats before the ventilator counts as\n"
    "                          gone: queued tasks are dropped (it sends them to\n"
    "                          others), running ones finish, then reconnect (3)\n"
    "      --grace DUR         on SIGINT/SIGTERM: queued tasks are handed back at\n"
    "                          once, running ones get DUR to finish (10s), then are\n"
    "                          killed and handed back\n"
    "      --id NAME           worker id (default hostname:pid)\n"
    "      --status-file FILE  keep id/state/done/failed counters in FILE\n"
    "      --metrics-file FILE the same and more as Prometheus text, rewritten every\n"
    "                          second (node_exporter's textfile collector: FILE in\n"
    "                          its directory, named *.prom)\n"
    "      --curve-secret FILE encrypt and authenticate with CURVE: this board's\n"
    "                          secret certificate (NAME.key_secret, mode 600)\n"
    "      --curve-server FILE with --curve-secret: the host's public certificate\n"
    "                          (NAME.key); a host with another key is refused\n"
    "      --keygen NAME       write a new key pair as NAME.key and NAME.key_secret\n"
    "                          and exit (never overwrites)\n"
    "      --max-msg-size SIZE largest task or result (default 1M)\n"
    "      --linger DUR        time to deliver queued results on exit (5s)\n"
    "      --raw               plain single-frame strings over PULL/PUSH\n"
    "                          (tutorial/pyzmq peers): NO delivery guarantee\n"
    "  -v, --verbose           more log lines on stderr\n"
    "  -q, --quiet             errors only\n"
    "  -h, --help              this text\n"
    "  -V, --version           version, libzmq version and target\n"
    "\n"
    "Every option can also be set as BP_<NAME> in the environment, e.g.\n"
    "BP_TASKS=tcp://host:5557 BP_JOBS=0 BP_ONCE=1 (command-line options win).\n"
    "(--control is accepted and ignored: protocol v2 has no control channel.)\n"
    "Exit status: 0 ok, 1 error (or --once gave up on the host), 2 usage.\n";

static const char usage_sink[] =
    "Usage: sink [OPTIONS]\n"
    "Collects results from workers (ROUTER, binds), acknowledges each to the\n"
    "ventilator and writes each task's result once, one per line, in completion\n"
    "order; the summary goes to stderr.\n"
    "\n"
    "      --bind ENDPOINT     where workers and the ventilator connect\n"
    "                          (default tcp://*:5558)\n"
    "  -o, --output FILE       write results to FILE instead of stdout\n"
    "  -0, --null              NUL-separated results instead of lines\n"
    "      --ordered           write results in input order\n"
    "      --once              exit after one batch is complete\n"
    "      --timeout DUR       end a batch when no result came for DUR (default 0:\n"
    "                          wait forever); missing tasks are listed\n"
    "      --count N           with --raw --once: exit after N results\n"
    "      --summary-json FILE also write the batch summary as JSON to FILE\n"
    "      --metrics-file FILE results, failures, redeliveries, dropped messages and\n"
    "                          refused peers as Prometheus text, rewritten every\n"
    "                          second (node_exporter's textfile collector)\n"
    "      --joblog FILE       append one line per attempt to FILE in GNU parallel's\n"
    "                          --joblog columns (Seq = task id + 1, the input line\n"
    "                          number, so parallel --resume reads it; Host = worker\n"
    "                          id; Exitval -1 and Signal for a --task-timeout kill;\n"
    "                          Send/Command from --exec workers only)\n"
    "      --resume            continue the batch in the journal: the output is\n"
    "                          appended to (never truncated), no task written twice;\n"
    "                          with no journal yet, start one (default journal:\n"
    "                          FILE.journal next to --output FILE; without --resume\n"
    "                          an unfinished one there is refused, FILE untouched)\n"
    "      --journal JFILE     keep what was written in JFILE (removed when the\n"
    "                          batch completes); refuses an existing one without\n"
    "                          --resume\n"
    "      --sync MODE         results are acknowledged once on disk: interval\n"
    "                          (fsync every --sync-interval, default 200ms), always\n"
    "                          (every turn), none (no fsync: a process crash loses\n"
    "                          nothing, a power cut may)\n"
    "      --curve-secret FILE encrypt and authenticate with CURVE: the host's secret\n"
    "                          certificate (the ventilator's, NAME.key_secret)\n"
    "      --curve-allow DIR   with --curve-secret: admit only workers whose public\n"
    "                          certificate (*.key) is in DIR, plus the host itself\n"
    "                          (the ventilator); SIGHUP reloads DIR\n"
    "      --keygen NAME       write a new key pair as NAME.key and NAME.key_secret\n"
    "                          and exit (never overwrites)\n"
    "      --max-msg-size SIZE largest result (default 1M)\n"
    "      --raw               plain single-frame strings over PULL (tutorial/pyzmq\n"
    "                          peers): no ids, no acknowledgement\n"
    "      --progress          live progress line on stderr (default: if a TTY)\n"
    "      --no-progress       no progress line\n"
    "  -v, --verbose           more log lines on stderr\n"
    "  -q, --quiet             errors only\n"
    "  -h, --help              this text\n"
    "  -V, --version           version, libzmq version and target\n"
    "\n"
    "Every option can also be set as BP_<NAME> in the environment.\n"
    "(--control-bind is accepted and ignored: protocol v2 has no control channel.)\n"
    "Exit status: 0 all tasks ok, 1 error, 2 usage, 3 some tasks failed,\n"
    "4 tasks missing (timeout, or stopped mid-batch), 5 the ventilator halted the\n"
    "batch (--halt).\n";

const char *bp_usage(enum bp_role role)
{
    switch (role) {
    case BP_ROLE_VENTILATOR:
        return usage_vent;
    case BP_ROLE_WORKER:
        return usage_worker;
    default:
        return usage_sink;
    }
}
