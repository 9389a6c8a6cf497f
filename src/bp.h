/*
 * boardpipe public API (prefix bp_).
 *
 * The library holds everything but main(): option parsing, the wire format,
 * socket set-up, transforms and the three role loops. It never writes to
 * stdout on its own (results go to the FILE the caller hands in), logs only
 * to stderr, and never calls exit(). Functions return 0 (BP_OK) or a
 * positive BP_E* code; results come back through out-parameters.
 */
#ifndef BP_H
#define BP_H

#include <signal.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

enum bp_err {
    BP_OK = 0,
    BP_EUSAGE,      /* bad command line or configuration */
    BP_ENOMEM,      /* out of memory */
    BP_EIO,         /* file or pipe I/O failed */
    BP_EZMQ,        /* a ZeroMQ call failed (bind, connect, ...) */
    BP_ETIMEDOUT,   /* waited longer than allowed */
    BP_EPROTO,      /* malformed frame */
    BP_EVERSION,    /* frame of another protocol version */
    BP_ETOOBIG,     /* record or frame over the size limit */
    BP_EINTR,       /* stopped by a signal before finishing */
    BP_EFAILED,     /* the run finished but some tasks failed or were rejected */
    BP_EINCOMPLETE, /* the run ended with tasks missing */
    BP_EHALTED,     /* --halt stopped the batch early */
    BP_EXIT_INFO    /* --help/--version handled: not an error */
};

/* Returns a static, human-readable text for a BP_E* code. */
const char *bp_strerror(int err);

/* Process exit code for a BP_E* code: 0 ok, 1 runtime error, 2 usage,
 * 3 some tasks failed, 4 tasks missing, 5 halted (--halt), 130 interrupted. */
int bp_exit_code(int err);

enum bp_role { BP_ROLE_VENTILATOR, BP_ROLE_WORKER, BP_ROLE_SINK };

/* Logging to stderr: BP_LOG_QUIET shows errors only, BP_LOG_DEBUG all. */
enum bp_log_level { BP_LOG_ERROR, BP_LOG_WARN, BP_LOG_INFO, BP_LOG_DEBUG };
void bp_log_init(const char *prog, int level);

#define BP_ENDPOINT_MAX 256
#define BP_ID_MAX 64
#define BP_DEFAULT_MAX_MSG (1024 * 1024)

/* --sync: when the journal (and the sink's output) are forced to disk.
 * The sink acknowledges a result only once it is on disk (always,
 * interval), so a power cut loses nothing the ventilator counts as done. */
enum bp_sync { BP_SYNC_INTERVAL = 0, BP_SYNC_ALWAYS, BP_SYNC_NONE };

/* --halt: soon lets tasks out on workers finish, now gives them up too. */
enum bp_halt { BP_HALT_NEVER = 0, BP_HALT_SOON, BP_HALT_NOW };

/* A repeatable option's values, in the order given (--basefile, --return). */
#define BP_LIST_MAX 64
struct bp_strlist {
    const char *v[BP_LIST_MAX];
    int n;
};

/* Every option of every role. bp_opts_parse() fills it from the environment
 * (BP_<LONG_NAME>) and then the command line. Strings point into argv or
 * the environment, or into the struct's own buffers. */
struct bp_opts {
    enum bp_role role;
    int log_level;
    int raw;        /* tutorial-compatible single-frame strings */
    int nul;        /* NUL-separated records instead of lines */
    int skip_empty; /* ventilator: empty records are no tasks (parallel's -r) */
    /* files (docs/wire-format.md "Files") */
    int files;                   /* ventilator: input records are paths of files to ship */
    struct bp_strlist basefiles; /* ventilator: sent once to each board, cached there */
    struct bp_strlist returns;   /* worker: files sent back after a task (patterns) */
    struct bp_strlist labels;    /* worker --label NAME[=VALUE], in its HELLO */
    int64_t max_return_size;     /* worker, sink: largest returned file */
    int max_return_files;        /* worker: returned files per task */
    const char *scratch;         /* worker: where task directories go (NULL: $TMPDIR, /tmp) */
    const char *cache_dir;       /* worker: base-file cache (NULL: a default) */
    const char *output_dir;      /* sink: where returned files land */
    int64_t max_msg;             /* ZMQ_MAXMSGSIZE and the record limit */
    int linger_ms;
    int progress;     /* -1 auto (TTY), 0 off, 1 on */
    const char *bind; /* ventilator, sink */
    /* ventilator */
    const char *sink;  /* NULL or "none": do not talk to the sink */
    const char *input; /* NULL: the tutorial's seven strings; "-": stdin */
    int wait_workers;
    int wait_timeout_ms; /* wait for workers / for a worker to take a task */
    /* worker */
    const char *tasks;
    const char *results;
    const char *control;   /* worker: SUB connect; NULL/"none" disables */
    const char *transform; /* built-in transform name */
    const char *exec;      /* shell command per task */
    int jobs;
    int task_timeout_ms; /* 0: none */
    int sleep_ms;        /* the tutorial's per-task sleep */
    int once;            /* worker: exit on batch end; sink: exit after a batch */
    int grace_ms;        /* worker: time to finish in-flight tasks on stop */
    const char *status_file;
    const char *metrics_file; /* worker, sink: Prometheus text format (node_exporter textfile) */
    char id[BP_ID_MAX + 1];
    /* delivery (protocol v2) */
    int hb_ms;            /* heartbeat interval, ventilator <-> worker <-> sink */
    int liveness;         /* silent intervals before a peer counts as dead */
    int max_attempts;     /* ventilator: losses before a task fails as lost */
    int retries;          /* ventilator: re-runs of a failed command */
    int task_deadline_ms; /* ventilator: redeliver a task out longer (0: never) */
    int ack_timeout_ms;   /* ventilator: a result the sink did not acknowledge */
    int prefetch;         /* worker: tasks queued beyond running ones (-1: auto) */
    int host_timeout_ms;  /* worker --once: give up on a vanished ventilator */
    /* ventilator --speculate: stragglers, as bp_spec_parse() takes it (NULL: defaults) */
    const char *speculate;
    /* ventilator --require: bp_req_parse()'s expression; tasks go to matching workers */
    const char *require;
    /* worker --max-temp (degrees C, 0: off) and --thermal-file (NULL: thermal_zone0) */
    int max_temp;
    const char *thermal_file;
    /* worker --task-memory: each command's RLIMIT_DATA in bytes (0: none) */
    int64_t task_memory;
    /* sink */
    const char *control_bind;
    const char *output; /* NULL or "-": stdout */
    int ordered;
    int timeout_ms; /* sink: give up after this long without progress */
    int64_t count;  /* sink --raw --once: results to wait for */
    const char *summary_json;
    const char *joblog; /* sink: one line per attempt, GNU parallel's layout */
    /* host durability (ventilator, sink) */
    const char *journal; /* NULL: none unless --resume (then a default path) */
    int resume;          /* continue the batch in the journal, if there is one */
    int sync;            /* BP_SYNC_*: when the journal (and output) reach the disk */
    int sync_ms;         /* BP_SYNC_INTERVAL: at most this long apart */
    /* ventilator --halt WHEN,fail=N[%] (GNU parallel's --halt) */
    int halt_when; /* 0 never, BP_HALT_SOON, BP_HALT_NOW */
    int halt_fail; /* failures (or percent, with halt_pct) that halt */
    int halt_pct;
    /* CURVE (docs: README "Security") */
    const char *keygen;       /* write a key pair NAME.key(_secret) and stop */
    const char *curve_secret; /* our secret certificate: CURVE on */
    const char *curve_allow;  /* host roles: directory of admitted public certs */
    const char *curve_server; /* worker: the host's public certificate */
    char err[256];            /* one-line message when parsing fails */
};

/* Fills *o with defaults for role, then applies BP_* environment variables
 * from envp (NULL: the process environment), then argv. Returns BP_OK,
 * BP_EXIT_INFO after --help/--version (o->err holds nothing; the caller
 * prints bp_usage() or bp_version_format()), or BP_EUSAGE with a one-line
 * message in o->err. argv is not modified; o may point into it. */
int bp_opts_parse(struct bp_opts *o, enum bp_role role, int argc, char *const argv[],
                  char *const envp[], int *want_version);

/* Static usage text for a role, for --help. The per-role functions link
 * only their own text (a tool knows its role). */
const char *bp_usage(enum bp_role role);
const char *bp_usage_ventilator(void);
const char *bp_usage_worker(void);
const char *bp_usage_sink(void);

/* Writes "<prog> (boardpipe) X (git REV)\nlibzmq A.B.C\ntarget T\n" into buf.
 * Returns the length, or -1 if buf is too small. */
int bp_version_format(char *buf, size_t len, const char *prog);

/* What a role run needs from its caller. All fields may be NULL/0:
 * in/out default to the files named in the options (or stdin/stdout),
 * stop is a flag a signal handler sets, zmq_ctx lets several roles share a
 * context (needed for inproc:// endpoints). None of it is owned by the run. */
struct bp_io {
    FILE *in;
    FILE *out;
    volatile sig_atomic_t *stop;
    volatile sig_atomic_t *reload; /* host roles: set (SIGHUP) to reload --curve-allow */
    void *zmq_ctx;
};

/* Outcome of a run, for callers and tests. */
struct bp_report {
    uint64_t batch;
    int64_t sent;        /* ventilator: tasks read into the batch */
    int64_t rejected;    /* ventilator: input records refused (too big) */
    int64_t total;       /* sink: batch size announced by the ventilator */
    int64_t ok;          /* worker: tasks done; sink: results ok */
    int64_t failed;      /* tasks that failed */
    int64_t missing;     /* results never received (ventilator: tasks not final) */
    int64_t duplicates;  /* sink: results received twice, dropped */
    int64_t malformed;   /* frames dropped as malformed / wrong version */
    int64_t stale;       /* sink: results of another batch, dropped */
    int64_t lost;        /* tasks failed as lost --max-attempts times */
    int64_t halted;      /* tasks not run: --halt stopped the batch */
    int64_t unreadable;  /* ventilator --files: paths that could not be read (failed) */
    int64_t redelivered; /* deliveries made again after a loss (a worker died or went
                            silent, a deadline passed, no acknowledgement came); the
                            sink counts those its accepted results show */
    int64_t retried;     /* failed tries run again (--retries) */
    int64_t speculated;  /* ventilator: second copies of stragglers sent */
    int64_t spec_won;    /* ventilator: ... whose result was the outcome */
    int64_t cancelled;   /* ventilator: attempts stopped with CANCEL */
    int64_t recovered;   /* sink: tasks ok after a lost delivery */
    int64_t refused;     /* peers refused by CURVE authentication */
    int64_t forged;      /* control messages from a peer that is not the host, dropped */
    int64_t foreign;     /* sink: results for ids the ventilator never announced, dropped */
    int workers;         /* sink: distinct workers seen */
    double elapsed_s;
};

/* Writes a new CURVE key pair as NAME.key and NAME.key_secret (czmq's
 * zcert format; the secret file mode 0600), refusing to overwrite. Returns
 * BP_OK or an error with a one-line reason in err. */
int bp_keygen(const char *name, char *err, size_t errlen);

/* Role loops. Each runs until its job is done, an error, or *io->stop.
 * Returns BP_OK or a BP_E* code; *rep (may be NULL) gets the counts. */
int bp_ventilator_run(const struct bp_opts *o, const struct bp_io *io, struct bp_report *rep);
int bp_worker_run(const struct bp_opts *o, const struct bp_io *io, struct bp_report *rep);
int bp_sink_run(const struct bp_opts *o, const struct bp_io *io, struct bp_report *rep);

#endif
