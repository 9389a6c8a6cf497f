/* The worker's role loop: sockets, tasks run through bp_exec or a built-in
 * transform, the status and metrics files; it moves bytes to and from
 * bp_wchan. Must not keep channel state of its own. */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "bp_exec.h"
#include "bp_frame.h"
#include "bp_heat.h"
#include "bp_internal.h"
#include "bp_labels.h"
#include "bp_metrics.h"
#include "bp_path.h"
#include "bp_role.h"
#include "bp_sha256.h"
#include "bp_sock.h"
#include "bp_transform.h"
#include "bp_wchan.h"
#include "bp_wfile.h"
#include "bp_xfer.h"

/* Credit a worker with an instant built-in transform asks for: enough that
 * the channel is never round-trip bound for small tasks. BUILTIN_WINDOW
 * before task sizes are known and at least; up to BUILTIN_WINDOW_MAX (the
 * ventilator's cap) while that many tasks fit in BUILTIN_BYTES, so memory
 * queued here stays bounded whatever the task size. */
#define BUILTIN_WINDOW 1024
#define BUILTIN_WINDOW_MAX 4096
#define BUILTIN_BYTES ((double)(1 << 20))
/* Done ids held for one CREDIT: 32 KiB, inside the ventilator's 64 KiB
 * limit on worker messages. */
#define MAX_DONE 4096
/* The most tasks a worker queues beyond its running ones (--prefetch). */
#define MAX_PREFETCH 256
/* Longest pause between two tries to reach a silent ventilator. */
#define MAX_BACKOFF_MS 30000

/* A task received and not started yet. */
struct qtask {
    uint64_t batch, id;
    uint16_t attempt;
    uint8_t flags;
    uint8_t *data;
    uint32_t len, cap;
};

/* A FILE task's phases: its file comes, its command runs, its --return
 * files go; or it failed and its result is due. */
enum { F_NONE = 0, F_FETCH, F_RUN, F_PUT, F_READY, F_FAILED };

struct ftask {
    int phase;
    int dirfd, outfd;
    int gh;  /* its download (bp_xfer), -1: none */
    int *ph; /* its uploads, one per return file (-1: done) */
    struct bp_wret *rets;
    int nret, nacked;
    int status, code; /* F_FAILED: the result */
    char *cmd;        /* the command with its replacement strings filled in */
    uint64_t size;
    size_t name_len;
    char why[400];
    char name[BP_NAME_MAX + 1]; /* the shipped name */
    char dir[4096];             /* the scratch directory */
};

/* A base file of this session. */
struct wbase {
    int gh, fd; /* its download and temporary file while fetched, else -1 */
    char hex[2 * BP_SHA256_LEN + 1];
    char name[256];
    char tmp[4200];
};

/* One task in progress: a child process (--exec) or a built-in result held
 * back until its --sleep is over. */
struct slot {
    int busy;
    struct ftask f; /* FILE tasks */
    struct qtask t; /* the task (its buffer stays with the slot) */
    int64_t started, ready_at;
    int64_t started_wall; /* for the sink's --joblog */
    struct bp_job job;
    int item_first, item_n;
    int cancelled; /* a CANCEL came for it: it ends with no result */
};

struct worker {
    /* (grouped by size: clang-tidy's padding check) */
    const struct bp_opts *o;
    const struct bp_io *io;
    void *ctx;
    void *tsock; /* v2: DEALER to the ventilator; raw: PULL */
    void *rsock; /* v2: DEALER to the sink; raw: PUSH */
    struct bp_role_sec sec;
    struct bp_secmon tmon, rmon; /* CURVE handshakes with the ventilator and the sink */
    const struct bp_transform *tf;
    struct slot *slots;
    struct qtask *q;
    zmq_pollitem_t *items;
    /* the task channel (v2): its state and timers (bp_wchan.h) */
    struct bp_wchan ch;
    double task_ms;    /* moving average, for --prefetch auto */
    double task_bytes; /* moving average of a task's wire size */
    /* results being packed (v2) */
    struct bp_pack rp;
    uint64_t rp_batch;
    uint64_t *rp_ids;
    uint64_t *done; /* ids whose results went out: reported in CREDIT */
    uint64_t done_batch;
    struct bp_pack cp; /* control messages to the ventilator */
    /* files (docs/wire-format.md "Files") */
    struct bp_xfer *xf;
    int *gmap;         /* download handle -> slot (>= 0) or base file (-1 - i) */
    int *pmap;         /* upload handle -> slot * 256 + return file */
    struct bp_pack up; /* PUT chunks */
    struct wbase *bases;
    const char *scratch;
    int nbase, base_pending, base_failed, put_blocked;
    char cache[4096];
    /* lifecycle */
    int64_t grace_end;
    int64_t halt_kill_at; /* END(halted): what still runs then is killed */
    int64_t ok_n, failed_n, malformed, unsent, dropped;
    int64_t redelivered;         /* tasks received on a later attempt */
    int64_t cancelled;           /* attempts stopped by a CANCEL (second copies) */
    int64_t m_last_n, m_last_ms; /* --metrics-file: tasks counted, when it changed */
    int64_t m_start_ms;
    int64_t next_status;
    const char *state;
    int own_ctx;
    int instant; /* built-in transform without --sleep: no slot needed */
    int nslots, busy;
    uint32_t qcap, qhead, qlen;
    uint32_t window_max;
    uint32_t rp_n;
    int rp_blocked; /* the sink cannot take the pack now */
    uint32_t ndone, done_cap;
    int stopping;
    int batch_over;
    int gave_up;  /* no ventilator for --host-timeout, or no socket */
    int m_failed; /* said once that the metrics file cannot be written */
    size_t labels_len;
    uint8_t labels[BP_LABELS_MAX]; /* sent in the HELLO (bp_labels.h) */
    struct bp_heat heat;           /* --max-temp */
    int64_t next_heat;
    int heat_warned;
};

static void files_new_session(struct worker *w);

static void set_linger(void *sock, int ms)
{
    if (sock)
        zmq_setsockopt(sock, ZMQ_LINGER, &ms, sizeof ms);
}

static int64_t dead_ms(const struct worker *w)
{
    return (int64_t)w->o->hb_ms * w->o->liveness;
}

static int active(const struct worker *w)
{
    return w->ch.state == BP_WC_ACTIVE;
}

static void write_status(struct worker *w)
{
    const char *path = w->o->status_file;
    if (!path)
        return;
    char tmp[4096];
    if (snprintf(tmp, sizeof tmp, "%s.tmp", path) >= (int)sizeof tmp)
        return;
    FILE *f = fopen(tmp, "w");
    if (!f) {
        bp_log(BP_LOG_WARN, "cannot write status file %s: %s", tmp, strerror(errno));
        return;
    }
    fprintf(f,
            "id=%s\nstate=%s\ndone=%" PRId64 "\nfailed=%" PRId64
            "\nrunning=%d\nqueued=%u\npid=%ld\n",
            w->o->id, w->state, w->ok_n, w->failed_n, w->busy, w->qlen, (long)getpid());
    /* The labels of its HELLO, one line each (values may hold spaces). */
    size_t off = 0;
    struct bp_label l;
    while (bp_labels_next(w->labels, w->labels_len, &off, &l))
        fprintf(f, "label.%.*s=%.*s\n", (int)l.name_len, l.name, l.value ? (int)l.value_len : 0,
                l.value ? l.value : "");
    /* rename() makes the update atomic for readers such as `bpfleet status`. */
    if (fclose(f) != 0 || rename(tmp, path) != 0)
        bp_log(BP_LOG_WARN, "cannot update status file %s: %s", path, strerror(errno));
}

/* --metrics-file: node_exporter's textfile format. The last task's time
 * is when a write first saw the count move (no clock read per task). */
static void write_metrics(struct worker *w)
{
    const char *path = w->o->metrics_file;
    if (!path)
        return;
    int64_t n = w->ok_n + w->failed_n;
    if (n != w->m_last_n) {
        w->m_last_n = n;
        w->m_last_ms = bp_wall_ms();
    }
    const struct bp_metric m[] = {
        {"boardpipe_worker_tasks_done_total", "Tasks run with an ok result.", BP_COUNTER,
         (double)w->ok_n},
        {"boardpipe_worker_tasks_failed_total", "Tasks run with a failed result.", BP_COUNTER,
         (double)w->failed_n},
        {"boardpipe_worker_tasks_redelivered_total",
         "Tasks received again after a delivery was lost (attempt > 1).", BP_COUNTER,
         (double)w->redelivered},
        {"boardpipe_worker_tasks_dropped_total",
         "Queued tasks dropped (host lost, or more than the credit given).", BP_COUNTER,
         (double)w->dropped},
        {"boardpipe_worker_busy_slots", "Tasks running now.", BP_GAUGE, (double)w->busy},
        {"boardpipe_worker_slots", "Tasks that may run at once (--jobs).", BP_GAUGE,
         (double)w->nslots},
        {"boardpipe_worker_queued_tasks", "Tasks received and not started yet.", BP_GAUGE,
         (double)w->qlen},
        {"boardpipe_worker_host_connected", "1 while the ventilator answers, else 0.", BP_GAUGE,
         active(w) ? 1.0 : 0.0},
        {"boardpipe_worker_too_hot", "1 while over --max-temp (asking for no work), else 0.",
         BP_GAUGE, w->heat.hot ? 1.0 : 0.0},
        {"boardpipe_worker_temperature_celsius",
         "The last --max-temp reading of --thermal-file (0: none).", BP_GAUGE,
         (double)w->heat.last_mc / 1000.0},
        {"boardpipe_worker_last_task_timestamp_seconds",
         "When a task last finished, seconds since the epoch (0: none yet).", BP_GAUGE,
         (double)w->m_last_ms / 1000.0},
        {"boardpipe_worker_start_time_seconds", "When the worker started, seconds since the epoch.",
         BP_GAUGE, (double)w->m_start_ms / 1000.0},
    };
    char err[320];
    if (bp_metrics_write(path, "worker", w->o->id, m, sizeof m / sizeof m[0], err, sizeof err) !=
        BP_OK) {
        if (!w->m_failed++)
            bp_log(BP_LOG_WARN, "%s", err);
    } else {
        w->m_failed = 0;
    }
}

/* Copies a task into t's reusable buffer. */
static int task_copy(struct qtask *t, const struct bp_task_rec *r, uint64_t batch)
{
    if (t->cap < r->len || !t->data) {
        uint32_t cap = r->len < 64 ? 64 : r->len;
        uint8_t *p = realloc(t->data, cap);
        if (!p)
            return BP_ENOMEM;
        t->data = p;
        t->cap = cap;
    }
    if (r->len)
        memcpy(t->data, r->data, r->len);
    t->len = r->len;
    t->batch = batch;
    t->id = r->id;
    t->attempt = r->attempt;
    t->flags = r->flags;
    return BP_OK;
}

/* Tasks held: queued, running, and results not sent yet. Credit keeps
 * this (plus credit not yet used) within the window. */
static int64_t held(const struct worker *w)
{
    return (int64_t)w->qlen + w->busy + w->rp_n;
}

static uint32_t window(const struct worker *w)
{
    const struct bp_opts *o = w->o;
    if (w->instant && o->prefetch >= 0)
        return (uint32_t)(o->prefetch > 0 ? o->prefetch : 1);
    if (w->instant) {
        double fit = w->task_bytes > 0 ? BUILTIN_BYTES / w->task_bytes : 0;
        return fit >= BUILTIN_WINDOW_MAX ? BUILTIN_WINDOW_MAX
               : fit <= BUILTIN_WINDOW   ? BUILTIN_WINDOW
                                         : (uint32_t)fit;
    }
    uint32_t pf;
    if (o->prefetch >= 0) {
        pf = (uint32_t)o->prefetch;
    } else {
        /* Enough queued to cover a round trip, and not one task more: a
         * slow board must not sit on work a fast one could do. */
        double per_slot = w->task_ms > 0 ? w->task_ms / w->nslots : 0;
        double want = per_slot > 0 ? 2.0 * w->ch.rtt_ms / per_slot : 0;
        pf = want > MAX_PREFETCH ? MAX_PREFETCH : (uint32_t)want;
    }
    return (uint32_t)w->nslots + pf;
}

/* ---- messages to the ventilator ---- */

static int send_ctl(struct worker *w)
{
    if (bp_pack_finish(&w->cp) != BP_OK)
        return BP_ENOMEM;
    return bp_send_raw(w->tsock, w->cp.p, w->cp.len, ZMQ_DONTWAIT);
}

static void send_hello(struct worker *w, int64_t now)
{
    const struct bp_opts *o = w->o;
    int64_t credit = (int64_t)window(w) - held(w);
    if (credit < 0 || w->stopping || w->heat.hot)
        credit = 0;
    size_t idl = strlen(o->id);
    files_new_session(w); /* a new session: what was being fetched is void */
    bp_pack_begin(&w->cp, BP_MSG_HELLO, 0);
    bp_pack_u16(&w->cp, (uint16_t)w->nslots);
    bp_pack_u16(&w->cp, 0);
    bp_pack_u32(&w->cp, (uint32_t)credit);
    bp_pack_u8(&w->cp, (uint8_t)idl);
    bp_pack_bytes(&w->cp, o->id, idl);
    bp_pack_u16(&w->cp, (uint16_t)w->labels_len);
    bp_pack_bytes(&w->cp, w->labels, w->labels_len);
    int rc = send_ctl(w);
    bp_wchan_hello_sent(&w->ch, now, credit, rc == BP_OK);
    if (rc == BP_OK)
        bp_log(BP_LOG_DEBUG, "hello sent (credit %" PRId64 ")", credit);
}

/* The labels for the HELLO: --label's (checked by bp_opts), then what
 * this board is (bp_labels_detect). */
static void worker_labels(struct worker *w)
{
    for (int i = 0; i < w->o->labels.n; i++)
        (void)bp_labels_add_arg(w->labels, sizeof w->labels, &w->labels_len, w->o->labels.v[i]);
    bp_labels_detect(w->labels, sizeof w->labels, &w->labels_len, "");
    char show[512];
    bp_log(BP_LOG_DEBUG, "labels: %s",
           bp_labels_format(w->labels, w->labels_len, show, sizeof show));
}

static void send_heartbeat(struct worker *w, int64_t now)
{
    bp_pack_begin(&w->cp, BP_MSG_HEARTBEAT, w->ch.batch);
    bp_pack_u64(&w->cp, (uint64_t)now | 1);
    bp_pack_u64(&w->cp, 0);
    send_ctl(w);
    bp_wchan_hb_sent(&w->ch, now);
}

/* Reports done ids and tops credit up to the window. */
static void send_credit(struct worker *w, int force)
{
    int64_t grant = 0;
    if (!w->stopping && !(w->o->once && w->batch_over) && !w->heat.hot)
        grant = bp_wchan_grant(&w->ch, (int64_t)window(w) - held(w));
    /* Small grants are batched for instant tasks: one message per pack. */
    int64_t thresh = w->instant ? window(w) / 4 : 1;
    if (!w->ndone && grant < thresh && !force)
        return;
    if (!w->ndone && !grant)
        return;
    bp_pack_begin(&w->cp, BP_MSG_CREDIT, w->ndone ? w->done_batch : w->ch.batch);
    bp_pack_u32(&w->cp, (uint32_t)grant);
    for (uint32_t i = 0; i < w->ndone; i++)
        bp_pack_id(&w->cp, w->done[i]);
    if (send_ctl(w) == BP_OK)
        bp_wchan_granted(&w->ch, grant);
    /* Done ids that could not be told are not retried: the ventilator
     * learns from the sink's acknowledgements anyway. */
    w->ndone = 0;
}

/* --max-temp: the thermal file, read every second; over the limit the
 * board asks for no work (no credit) until it has cooled (bp_heat.h). */
static void heat_check(struct worker *w, int64_t now)
{
    if (!w->o->max_temp || now < w->next_heat)
        return;
    w->next_heat = now + 1000;
    const char *path =
        w->o->thermal_file ? w->o->thermal_file : "/sys/class/thermal/thermal_zone0/temp";
    char buf[32];
    ssize_t r = -1;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd >= 0) {
        r = read(fd, buf, sizeof buf);
        close(fd);
    }
    if (!bp_heat_note(&w->heat, buf, r > 0 ? (size_t)r : 0)) {
        if (w->heat.bad && !w->heat_warned++)
            bp_log(BP_LOG_WARN, "--max-temp: no temperature in %s", path);
        return;
    }
    double c = (double)w->heat.last_mc / 1000.0;
    if (w->heat.hot)
        bp_log(BP_LOG_WARN, "too hot: %.1f C (--max-temp %d): no more work until below %d C", c,
               w->o->max_temp, w->o->max_temp - BP_HEAT_HYST_MC / 1000);
    else
        bp_log(BP_LOG_INFO, "cooled to %.1f C: asking for work again", c);
    send_credit(w, 1);
}

static void note_done(struct worker *w, uint64_t batch, uint64_t id)
{
    if (w->ndone && (w->ndone == w->done_cap || batch != w->done_batch))
        send_credit(w, 1);
    w->done_batch = batch;
    w->done[w->ndone++] = id;
}

/* ---- results ---- */

/* Sends the results pack. Returns BP_OK (sent or nothing to send) or
 * BP_ETIMEDOUT when the sink cannot take it now (kept for later). */
static int flush_results(struct worker *w)
{
    if (!w->rp_n)
        return BP_OK;
    if (bp_pack_finish(&w->rp) != BP_OK) {
        bp_log(BP_LOG_ERROR, "out of memory packing results: %u lost", w->rp_n);
        w->unsent += w->rp_n;
        w->rp_n = 0;
        return BP_OK;
    }
    int rc = bp_send_raw(w->rsock, w->rp.p, w->rp.len, ZMQ_DONTWAIT);
    if (rc == BP_ETIMEDOUT || rc == BP_EINTR) {
        w->rp_blocked = 1;
        return BP_ETIMEDOUT;
    }
    w->rp_blocked = 0;
    if (rc != BP_OK) {
        bp_log(BP_LOG_ERROR, "cannot send %u results: %s", w->rp_n, zmq_strerror(errno));
        w->unsent += w->rp_n;
    } else {
        for (uint32_t i = 0; i < w->rp_n; i++)
            note_done(w, w->rp_batch, w->rp_ids[i]);
    }
    w->rp_n = 0;
    return BP_OK;
}

/* Makes room in the pack for one more result of len bytes of batch. */
static int result_room(struct worker *w, uint64_t batch, size_t len)
{
    if (w->rp_n && (batch != w->rp_batch || w->rp_n == w->window_max ||
                    w->rp.len + BP_RESULT_REC + len > BP_PACK_BYTES))
        if (flush_results(w) != BP_OK)
            return BP_ETIMEDOUT;
    if (!w->rp_n) {
        bp_pack_begin(&w->rp, BP_MSG_RESULTS, batch);
        size_t idl = strlen(w->o->id);
        bp_pack_u8(&w->rp, (uint8_t)idl);
        bp_pack_bytes(&w->rp, w->o->id, idl);
        w->rp_batch = batch;
    }
    return BP_OK;
}

/* Plain peers: one frame per result, failures only logged. */
static void raw_result(struct worker *w, int status, int code, const void *data, size_t len)
{
    if (status != BP_ST_OK) {
        char show[160];
        bp_printable(show, sizeof show, data, len > 120 ? 120 : len);
        bp_log(BP_LOG_ERROR, "task %s (code %d): %s", bp_status_name(status), code, show);
        return;
    }
    for (;;) {
        int rc = bp_send_raw(w->rsock, data, len, ZMQ_DONTWAIT);
        if (rc == BP_OK)
            return;
        int wait = -1;
        if (w->stopping) {
            int64_t left = w->grace_end - bp_now_ms();
            wait = left > 0 ? (int)left : 0;
        }
        if (rc == BP_ETIMEDOUT || rc == BP_EINTR)
            rc = bp_role_wait_out(w->rsock, w->stopping ? NULL : w->io, wait);
        if (rc == BP_EINTR && !w->stopping) {
            w->stopping = 1;
            w->grace_end = bp_now_ms() + w->o->grace_ms;
            continue;
        }
        if (rc != BP_OK) {
            w->unsent++;
            bp_log(BP_LOG_ERROR, "sink not taking results: a result was lost");
            return;
        }
    }
}

static void count(struct worker *w, int status, int64_t elapsed)
{
    if (status == BP_ST_OK)
        w->ok_n++;
    else
        w->failed_n++;
    /* Moving average of task time, for the prefetch window. */
    double el = (double)elapsed;
    w->task_ms = w->task_ms > 0 ? 0.8 * w->task_ms + 0.2 * el : (el > 0 ? el : 0.01);
}

/* Appends the outcome of t. Returns BP_ETIMEDOUT if the sink is blocked
 * (nothing appended: try again later). */
static int add_result(struct worker *w, const struct qtask *t, int status, int code,
                      int64_t elapsed, const void *data, size_t len, int64_t started_wall,
                      uint8_t nfiles)
{
    if (w->o->raw) {
        count(w, status, elapsed);
        raw_result(w, status, code, data, len);
        return BP_OK;
    }
    /* Commands carry a task-info block (the sink's --joblog): the task's
     * size, start and first bytes. Not the built-ins: their hot path stays
     * lean. */
    int info = started_wall > 0;
    uint8_t hl = t->len < BP_INFO_HEAD_MAX ? (uint8_t)t->len : BP_INFO_HEAD_MAX;
    if (result_room(w, t->batch, len + (info ? BP_INFO_FIXED + hl : 0) + 1) != BP_OK)
        return BP_ETIMEDOUT;
    struct bp_result_rec r = {
        .id = t->id,
        .attempt = t->attempt,
        .status = (uint8_t)status,
        .flags = status == BP_ST_OK || (t->flags & BP_TF_LAST_TRY) ? BP_RF_FINAL : 0,
        .code = code,
        .elapsed_ms = elapsed < 0            ? 0
                      : elapsed > UINT32_MAX ? UINT32_MAX
                                             : (uint32_t)elapsed,
        .data = data,
        .len = (uint32_t)len};
    if (info) {
        r.flags |= BP_RF_INFO;
        r.task_len = t->len;
        r.start_ms = (uint64_t)started_wall;
        r.head = t->data;
        r.head_len = hl;
    }
    if (nfiles) {
        r.flags |= BP_RF_FILES;
        r.nfiles = nfiles;
    }
    bp_pack_result(&w->rp, &r);
    w->rp_ids[w->rp_n++] = t->id;
    count(w, status, elapsed);
    return BP_OK;
}

/* A built-in transform straight into the results pack: no copy, no slot. */
static int run_instant(struct worker *w, uint64_t batch, const struct bp_task_rec *tr)
{
    if (tr->flags & BP_TF_FILE) {
        static const char why[] = "file tasks need --exec";
        struct qtask t = {.batch = batch, .id = tr->id, .attempt = tr->attempt, .flags = tr->flags};
        return add_result(w, &t, BP_ST_EXECERR, 0, 0, why, sizeof why - 1, 0, 0);
    }
    if (w->o->raw) {
        /* The task bytes are ours (a received message): transform in place. */
        w->tf->fn(tr->data, tr->len, (uint8_t *)(uintptr_t)tr->data);
        count(w, BP_ST_OK, 0);
        raw_result(w, BP_ST_OK, 0, tr->data, tr->len);
        return BP_OK;
    }
    if (result_room(w, batch, tr->len) != BP_OK)
        return BP_ETIMEDOUT;
    struct bp_result_rec r = {.id = tr->id,
                              .attempt = tr->attempt,
                              .status = BP_ST_OK,
                              .flags = BP_RF_FINAL,
                              .len = tr->len};
    uint8_t *dst = bp_pack_result_reserve(&w->rp, &r);
    if (!dst)
        return BP_ENOMEM;
    w->tf->fn(tr->data, tr->len, dst);
    w->rp_ids[w->rp_n++] = tr->id;
    w->ok_n++;
    return BP_OK;
}

/* ---- file tasks (docs/wire-format.md "Files") ---- */

static int slot_index(const struct worker *w, const struct slot *s)
{
    return (int)(s - w->slots);
}

/* Forgets a file task's transfers, files and scratch directory. */
static void file_cleanup(struct worker *w, struct slot *s)
{
    struct ftask *f = &s->f;
    if (f->gh >= 0)
        bp_xfer_get_cancel(w->xf, f->gh);
    f->gh = -1;
    for (int i = 0; i < f->nret; i++)
        if (f->ph[i] >= 0)
            bp_xfer_put_cancel(w->xf, f->ph[i]);
    if (f->rets)
        bp_wfile_close_rets(f->rets, f->nret);
    free(f->rets);
    free(f->ph);
    f->rets = NULL;
    f->ph = NULL;
    f->nret = f->nacked = 0;
    if (f->outfd >= 0)
        close(f->outfd);
    f->outfd = -1;
    if (f->dirfd >= 0)
        close(f->dirfd);
    f->dirfd = -1;
    if (f->dir[0] && bp_path_rmtree(f->dir) != 0)
        bp_log(BP_LOG_WARN, "cannot remove %s", f->dir);
    f->dir[0] = '\0';
    free(f->cmd);
    f->cmd = NULL;
    f->phase = F_NONE;
}

/* The attempt failed: its result (status, code, the text) goes out next. */
static void file_fail(struct worker *w, struct slot *s, int status, int code, const char *what)
{
    struct ftask *f = &s->f;
    char show[300];
    bp_printable(show, sizeof show, f->name, f->name_len > 200 ? 200 : f->name_len);
    snprintf(f->why, sizeof f->why, "%s: %s", what, show);
    f->status = status;
    f->code = code;
    f->phase = F_FAILED;
    if (f->gh >= 0)
        bp_xfer_get_cancel(w->xf, f->gh);
    f->gh = -1;
}

/* The task was taken away (REFUSED, a new session): no result. */
static void file_drop(struct worker *w, struct slot *s)
{
    file_cleanup(w, s);
    s->busy = 0;
    w->busy--;
    w->dropped++;
}

/* Links each base file into the scratch directory. */
static int link_bases(struct worker *w, struct ftask *f)
{
    for (int i = 0; i < w->nbase; i++) {
        char target[4200];
        snprintf(target, sizeof target, "%s/%s", w->cache, w->bases[i].hex);
        if (symlinkat(target, f->dirfd, w->bases[i].name) != 0)
            return -errno;
    }
    return 0;
}

/* Starts a FILE task in s: its directory, its file, its download. */
static void file_start(struct worker *w, struct slot *s)
{
    struct ftask *f = &s->f;
    struct bp_file_desc d;
    f->phase = F_FETCH;
    f->name_len = 0;
    if (!w->o->exec) {
        file_fail(w, s, BP_ST_EXECERR, 0, "file tasks need --exec");
        return;
    }
    if (bp_file_desc_parse(s->t.data, s->t.len, &d) != BP_OK ||
        bp_path_copy(f->name, d.name, d.name_len, 0) != BP_OK) {
        file_fail(w, s, BP_ST_FILEERR, BP_FE_NAME, "bad file descriptor");
        return;
    }
    f->name_len = d.name_len;
    f->size = d.size;
    f->dirfd = bp_wfile_scratch_make(w->scratch, s->t.id, s->t.attempt, f->dir, sizeof f->dir);
    if (f->dirfd < 0) {
        f->dir[0] = '\0';
        file_fail(w, s, BP_ST_FILEERR, BP_FE_WRITE, "cannot make the scratch directory");
        return;
    }
    if (link_bases(w, f) != 0) {
        file_fail(w, s, BP_ST_FILEERR, BP_FE_WRITE, "cannot link the base files");
        return;
    }
    f->outfd = bp_path_open_beneath(f->dirfd, f->name, O_WRONLY | O_CREAT | O_EXCL, 0644, 1);
    if (f->outfd < 0) {
        f->outfd = -1;
        file_fail(w, s, BP_ST_FILEERR, BP_FE_WRITE, "cannot create the shipped file");
        return;
    }
    f->gh = bp_xfer_get(w->xf, BP_FK_TASK, s->t.id, s->t.attempt, d.size);
    if (f->gh < 0) {
        file_fail(w, s, BP_ST_FILEERR, BP_FE_WRITE, "too many downloads");
        return;
    }
    w->gmap[f->gh] = slot_index(w, s);
}

/* Writes len bytes at off of fd. Returns 0 or -1 (errno). */
static int pwrite_all(int fd, const uint8_t *p, size_t len, uint64_t off)
{
    while (len) {
        ssize_t n = pwrite(fd, p, len, (off_t)off);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return -1;
        p += n;
        len -= (size_t)n;
        off += (uint64_t)n;
    }
    return 0;
}

/* The shipped file is whole: the command starts in the scratch directory,
 * with the file's name in it, or the file as its stdin. */
static void file_run(struct worker *w, struct slot *s, int64_t now)
{
    struct ftask *f = &s->f;
    struct stat st;
    if (fstat(f->outfd, &st) != 0 || (uint64_t)st.st_size != f->size) {
        file_fail(w, s, BP_ST_FILEERR, BP_FE_WRITE, "shipped file has the wrong size");
        return;
    }
    close(f->outfd);
    f->outfd = -1;
    const char *cmd = w->o->exec;
    int in = -1;
    if (bp_wfile_has_repl(cmd)) {
        if (bp_wfile_subst(cmd, f->name, f->name_len, s->t.id + 1, 1, &f->cmd) != BP_OK) {
            file_fail(w, s, BP_ST_EXECERR, 0, "command too long");
            return;
        }
        cmd = f->cmd;
    } else {
        in = bp_path_open_beneath(f->dirfd, f->name, O_RDONLY, 0, 0);
        if (in < 0) {
            file_fail(w, s, BP_ST_FILEERR, BP_FE_READ, "cannot open the shipped file");
            return;
        }
    }
    f->phase = F_RUN;
    s->started = now;
    s->started_wall = bp_wall_ms();
    bp_job_set_dir(&s->job, f->dir, in);
    bp_job_start(&s->job, cmd, NULL, 0, w->o->task_timeout_ms, now);
    if (in >= 0)
        close(in);
}

static void on_file_chunk(struct worker *w, struct slot *s, const struct bp_xfer_ev *ev,
                          int64_t now)
{
    struct ftask *f = &s->f;
    if ((ev->what & BP_XF_DATA) && pwrite_all(f->outfd, ev->data, ev->len, ev->off) != 0) {
        file_fail(w, s, BP_ST_FILEERR, BP_FE_WRITE, strerror(errno));
        return;
    }
    if (ev->what & BP_XF_GET_DONE) {
        f->gh = -1;
        file_run(w, s, now);
    } else if (ev->what & BP_XF_GET_FAIL) {
        f->gh = -1;
        if (ev->code == BP_CK_REFUSED)
            file_drop(w, s);
        else if (ev->code == BP_CK_CHANGED)
            file_fail(w, s, BP_ST_FILEERR, BP_FE_CHANGED, "input changed while shipped");
        else
            file_fail(w, s, BP_ST_FILEERR, BP_FE_READ, "the host cannot read the input");
    }
}

/* ---- base files ---- */

static void base_abandon(struct worker *w, struct wbase *b)
{
    if (b->gh >= 0)
        bp_xfer_get_cancel(w->xf, b->gh);
    b->gh = -1;
    if (b->fd >= 0) {
        close(b->fd);
        unlink(b->tmp);
    }
    b->fd = -1;
}

/* A base file cannot be had: the session is over (the worker stops). */
static void base_fail(struct worker *w, struct wbase *b, const char *why)
{
    char show[300];
    bp_printable(show, sizeof show, b->name, strlen(b->name));
    bp_log(BP_LOG_ERROR, "base file %s: %s: giving up", show, why);
    base_abandon(w, b);
    w->gave_up = 1;
    w->base_failed = 1;
}

/* The download of b is complete: check its hash, move it into the cache. */
static void base_done(struct worker *w, struct wbase *b)
{
    uint8_t d[BP_SHA256_LEN];
    char hex[2 * BP_SHA256_LEN + 1], path[4200];
    if (bp_wfile_sha256_fd(b->fd, d) != BP_OK) {
        base_fail(w, b, "cannot read it back");
        return;
    }
    bp_sha256_hex(d, hex);
    snprintf(path, sizeof path, "%s/%s", w->cache, b->hex);
    if (strcmp(hex, b->hex) != 0 || fsync(b->fd) != 0 || rename(b->tmp, path) != 0) {
        base_fail(w, b, strcmp(hex, b->hex) ? "not the contents BASE announced" : strerror(errno));
        return;
    }
    close(b->fd);
    b->fd = -1;
    b->gh = -1;
    w->base_pending--;
    bp_log(BP_LOG_DEBUG, "base file %s cached", b->hex);
}

static void on_base_chunk(struct worker *w, struct wbase *b, const struct bp_xfer_ev *ev)
{
    if ((ev->what & BP_XF_DATA) && pwrite_all(b->fd, ev->data, ev->len, ev->off) != 0) {
        base_fail(w, b, strerror(errno));
        return;
    }
    if (ev->what & BP_XF_GET_DONE) {
        base_done(w, b);
    } else if (ev->what & BP_XF_GET_FAIL) {
        b->gh = -1;
        base_fail(w, b,
                  ev->code == BP_CK_CHANGED ? "changed on the host" : "the host cannot send it");
    }
}

/* Takes base file i of a BASE: cached already, or fetched. */
static void base_take(struct worker *w, int i, const struct bp_base_rec *r)
{
    struct wbase *b = &w->bases[i];
    char path[4200];
    b->gh = b->fd = -1;
    bp_sha256_hex(r->sha256, b->hex);
    snprintf(path, sizeof path, "%s/%s", w->cache, b->hex);
    struct stat st;
    if (stat(path, &st) == 0 && S_ISREG(st.st_mode) && (uint64_t)st.st_size == r->size)
        return;
    w->base_pending++;
    snprintf(b->tmp, sizeof b->tmp, "%s/.tmp-%s-%ld", w->cache, b->hex, (long)getpid());
    b->fd = open(b->tmp, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0600);
    if (b->fd < 0) {
        base_fail(w, b, strerror(errno));
        return;
    }
    b->gh = bp_xfer_get(w->xf, BP_FK_BASE, (uint64_t)i, 0, r->size);
    if (b->gh < 0) {
        base_fail(w, b, "too many downloads");
        return;
    }
    w->gmap[b->gh] = -1 - i;
}

/* BASE: the base files of this session (replacing any earlier list). */
static void on_base(struct worker *w, const struct bp_msg *m)
{
    for (int i = 0; i < w->nbase; i++)
        base_abandon(w, &w->bases[i]);
    w->nbase = 0;
    w->base_pending = 0;
    if (!w->cache[0] &&
        bp_wfile_cache_dir(w->o->cache_dir, w->scratch, w->cache, sizeof w->cache) != BP_OK) {
        bp_log(BP_LOG_ERROR, "no usable cache directory for base files");
        w->gave_up = 1;
        w->base_failed = 1;
        return;
    }
    size_t off = 0;
    struct bp_base_rec r;
    while (w->nbase < BP_MAX_BASEFILES && bp_msg_next_base(m, &off, &r)) {
        struct wbase *b = &w->bases[w->nbase];
        if (bp_path_copy(b->name, r.name, r.name_len, 1) != BP_OK)
            continue; /* (the decoder checked it) */
        base_take(w, w->nbase++, &r);
    }
    bp_log(BP_LOG_DEBUG, "%d base file%s, %d to fetch", w->nbase, w->nbase == 1 ? "" : "s",
           w->base_pending);
}

/* CHUNK: data for a task's file or a base file. */
static void on_chunk(struct worker *w, const struct bp_msg *m, int64_t now)
{
    struct bp_chunk c;
    struct bp_xfer_ev ev;
    bp_msg_chunk(m, &c);
    bp_xfer_on_chunk(w->xf, &c, now, &ev);
    if (ev.what == BP_XF_NONE || ev.h < 0)
        return;
    int who = w->gmap[ev.h];
    if (who < 0)
        on_base_chunk(w, &w->bases[-1 - who], &ev);
    else
        on_file_chunk(w, &w->slots[who], &ev, now);
}

/* A new session (HELLO): downloads of tasks are void (the ventilator
 * gives those tasks to others), so are those of base files (a new BASE
 * follows). */
static void files_new_session(struct worker *w)
{
    if (!w->xf)
        return;
    for (int i = 0; i < w->nslots; i++) {
        struct slot *s = &w->slots[i];
        if (s->busy && s->f.phase == F_FETCH)
            file_drop(w, s);
    }
    for (int i = 0; i < w->nbase; i++)
        base_abandon(w, &w->bases[i]);
    w->base_pending = 0;
    bp_xfer_new_session(w->xf);
}

/* Sends the FETCH requests due. */
static void pump_fetch(struct worker *w, int64_t now)
{
    struct bp_fetch_rec recs[BP_FETCH_WINDOW];
    if (!w->xf || !active(w))
        return;
    int n = bp_xfer_fetches(w->xf, now, recs, BP_FETCH_WINDOW);
    if (!n)
        return;
    bp_pack_begin(&w->cp, BP_MSG_FETCH, w->ch.batch);
    bp_pack_u32(&w->cp, bp_xfer_got(w->xf));
    for (int i = 0; i < n; i++)
        bp_pack_fetch(&w->cp, &recs[i]);
    if (send_ctl(w) != BP_OK)
        bp_xfer_fetch_unsent(w->xf);
}

/* ---- files back ---- */

/* The command succeeded: collects the --return files and starts their
 * uploads. Returns 1 when uploads go on, 0 when the result can go now. */
static int file_returns(struct worker *w, struct slot *s, int64_t now)
{
    struct ftask *f = &s->f;
    const struct bp_opts *o = w->o;
    if (!o->returns.n)
        return 0;
    f->rets = calloc((size_t)o->max_return_files, sizeof *f->rets);
    f->ph = calloc((size_t)o->max_return_files, sizeof *f->ph);
    if (!f->rets || !f->ph) {
        file_fail(w, s, BP_ST_FILEERR, BP_FE_READ, "out of memory");
        return 1;
    }
    int n = 0, reason = 0;
    char why[300];
    if (bp_wfile_collect(f->dirfd, f->dir, &o->returns, f->name, f->name_len, s->t.id + 1,
                         o->max_return_files, o->max_return_size, f->rets, &n, &reason, why,
                         sizeof why) != BP_OK) {
        file_fail(w, s, BP_ST_FILEERR, reason, "");
        snprintf(f->why, sizeof f->why, "%s", why);
        return 1;
    }
    f->nret = n;
    for (int i = 0; i < n; i++) {
        f->ph[i] = bp_xfer_put(w->xf, s->t.id, s->t.attempt, (uint8_t)i, f->rets[i].size, now);
        if (f->ph[i] < 0) {
            file_fail(w, s, BP_ST_FILEERR, BP_FE_COUNT, "too many uploads");
            return 1;
        }
        w->pmap[f->ph[i]] = slot_index(w, s) * 256 + i;
    }
    f->phase = n ? F_PUT : F_RUN;
    return n > 0;
}

/* One PUT chunk of return file i of s; 0 sent, 1 not now (the sink's
 * pipe is full), -1 the attempt failed. */
static int send_put(struct worker *w, struct slot *s, int i, uint64_t off, uint32_t len)
{
    struct bp_wret *r = &s->f.rets[i];
    if (!bp_wfile_unchanged(r->fd, r->size, r->mtime_ns)) {
        file_fail(w, s, BP_ST_FILEERR, BP_FE_CHANGED, "return file changed while sent");
        return -1;
    }
    struct bp_put u = {.id = s->t.id,
                       .attempt = s->t.attempt,
                       .idx = (uint8_t)i,
                       .offset = off,
                       .size = r->size,
                       .name = r->name,
                       .name_len = (uint16_t)strlen(r->name),
                       .len = len};
    bp_pack_begin(&w->up, BP_MSG_PUT, s->t.batch);
    uint8_t *d = bp_pack_put_reserve(&w->up, &u);
    ssize_t got = 0;
    while (d && (size_t)got < len) {
        ssize_t k = pread(r->fd, d + got, len - (size_t)got, (off_t)(off + (uint64_t)got));
        if (k < 0 && errno == EINTR)
            continue;
        if (k <= 0)
            break;
        got += k;
    }
    if (!d || (size_t)got != len || bp_pack_finish(&w->up) != BP_OK) {
        file_fail(w, s, BP_ST_FILEERR, BP_FE_READ, "cannot read a return file");
        return -1;
    }
    int rc = bp_send_raw(w->rsock, w->up.p, w->up.len, ZMQ_DONTWAIT);
    return rc == BP_OK ? 0 : 1;
}

/* Sends the PUT chunks the window allows. */
static void pump_put(struct worker *w, int64_t now)
{
    int h;
    uint64_t off;
    uint32_t len;
    while (w->xf && bp_xfer_next_put(w->xf, now, &h, &off, &len)) {
        struct slot *s = &w->slots[w->pmap[h] / 256];
        int rc = send_put(w, s, w->pmap[h] % 256, off, len);
        if (rc == 1) {
            bp_xfer_put_unsent(w->xf);
            w->put_blocked = 1;
            return;
        }
    }
    w->put_blocked = 0;
}

static void on_putack(struct worker *w, const struct bp_putack_rec *a, int64_t now)
{
    struct bp_xfer_ev ev;
    bp_xfer_on_putack(w->xf, a, now, &ev);
    if (ev.what == BP_XF_NONE || ev.h < 0)
        return;
    struct slot *s = &w->slots[w->pmap[ev.h] / 256];
    int i = w->pmap[ev.h] % 256;
    if (!s->busy || s->f.phase != F_PUT)
        return;
    s->f.ph[i] = -1;
    if (ev.what & BP_XF_PUT_DONE) {
        if (++s->f.nacked == s->f.nret)
            s->f.phase = F_READY;
        return;
    }
    char what[64];
    snprintf(what, sizeof what, "the sink refused a return file (reason %u)", ev.err);
    file_fail(w, s, BP_ST_FILEERR, (int)ev.err, what);
}

/* Reads what the sink sent: PUTACKs. */
static void read_sink(struct worker *w, int64_t now)
{
    zmq_msg_t msg;
    zmq_msg_init(&msg);
    for (int k = 0; k < 64; k++) {
        if (bp_recv_raw(w->rsock, &msg, ZMQ_DONTWAIT) != BP_OK)
            break;
        struct bp_msg m;
        size_t off = 0;
        struct bp_putack_rec a;
        if (bp_msg_decode(&m, zmq_msg_data(&msg), zmq_msg_size(&msg), 0) != BP_OK ||
            m.type != BP_MSG_PUTACK || !w->xf) {
            w->malformed++;
            continue;
        }
        while (bp_msg_next_putack(&m, &off, &a))
            on_putack(w, &a, now);
    }
    zmq_msg_close(&msg);
}

/* Whether a FILE task's slot has its outcome ready. */
static int file_due(struct slot *s, int64_t now)
{
    int64_t jw;
    int ph = s->f.phase;
    return ph == F_FAILED || ph == F_READY || (ph == F_RUN && bp_job_check(&s->job, now, &jw));
}

/* The result of a FILE task (file_due() said so). Returns BP_OK once the
 * slot is free, else BP_ETIMEDOUT (the sink is blocked) or BP_EAGAIN-like
 * 1 (uploads started). */
static int file_finish(struct worker *w, struct slot *s, int64_t now)
{
    struct ftask *f = &s->f;
    const uint8_t *out = (const uint8_t *)f->why;
    size_t len = strlen(f->why);
    int status = f->status, code = f->code;
    uint8_t nfiles = 0;
    if (f->phase == F_RUN) {
        out = bp_job_result(&s->job, &len);
        status = s->job.status;
        code = s->job.code;
        if (status == BP_ST_OK && file_returns(w, s, now))
            return 1;
    } else if (f->phase == F_READY) {
        out = bp_job_result(&s->job, &len);
        status = BP_ST_OK;
        code = 0;
        nfiles = (uint8_t)f->nret;
    }
    if (add_result(w, &s->t, status, code, now - s->started, out, len, s->started_wall, nfiles) !=
        BP_OK)
        return BP_ETIMEDOUT;
    file_cleanup(w, s);
    s->busy = 0;
    w->busy--;
    return BP_OK;
}

/* The file side: transfers, handle maps, base files, the scratch base
 * (stale directories of dead workers swept). */
static int files_init(struct worker *w)
{
    const struct bp_opts *o = w->o;
    struct bp_xfer_cfg c;
    int max_put = w->nslots * o->max_return_files;
    bp_xfer_defaults(&c, o->hb_ms, o->liveness, w->nslots + BP_MAX_BASEFILES, max_put);
    w->xf = bp_xfer_new(&c);
    w->gmap = calloc((size_t)c.max_get, sizeof *w->gmap);
    w->pmap = calloc((size_t)max_put, sizeof *w->pmap);
    w->bases = calloc(BP_MAX_BASEFILES, sizeof *w->bases);
    bp_pack_init(&w->up);
    if (!w->xf || !w->gmap || !w->pmap || !w->bases)
        return BP_ENOMEM;
    w->scratch = bp_wfile_scratch_base(o->scratch);
    /* A file size limit (ulimit -f) makes writing a shipped file fail with
     * EFBIG, a file-error like a full disk, instead of killing the worker.
     * Commands get the default back (the guard resets every signal). */
    signal(SIGXFSZ, SIG_IGN);
    int n = bp_wfile_scratch_sweep(w->scratch);
    if (n)
        bp_log(BP_LOG_INFO, "removed %d scratch director%s of dead workers in %s", n,
               n == 1 ? "y" : "ies", w->scratch);
    return BP_OK;
}

/* ---- the local queue and slots ---- */

static int enqueue(struct worker *w, uint64_t batch, const struct bp_task_rec *tr)
{
    if (w->qlen == w->qcap) {
        /* More than the credit we gave: a confused or hostile peer. */
        w->dropped++;
        return BP_ETOOBIG;
    }
    struct qtask *t = &w->q[(w->qhead + w->qlen) % w->qcap];
    if (task_copy(t, tr, batch) != BP_OK) {
        w->dropped++;
        return BP_ENOMEM;
    }
    w->qlen++;
    return BP_OK;
}

/* Forgets the queued, unstarted tasks (the ventilator has them back). */
/* END(complete): every task has its final result at the sink, so files
 * still coming or going belong to copies nobody needs; the sink may be
 * gone already, and an upload would wait for it for ever. */
static void drop_transfers(struct worker *w)
{
    for (int i = 0; i < w->nslots; i++) {
        struct slot *s = &w->slots[i];
        if (!s->busy || (s->f.phase != F_FETCH && s->f.phase != F_PUT))
            continue;
        file_cleanup(w, s);
        s->busy = 0;
        w->busy--;
    }
}

static void drop_queue(struct worker *w, const char *why)
{
    if (w->qlen)
        bp_log(BP_LOG_INFO, "%s: dropping %u queued task%s (the ventilator sends them again)", why,
               w->qlen, w->qlen == 1 ? "" : "s");
    w->qlen = 0;
}

static void start_slot(struct worker *w, struct slot *s, int64_t now)
{
    struct qtask *t = &w->q[w->qhead];
    /* Swap buffers so neither side allocates. */
    struct qtask tmp = s->t;
    s->t = *t;
    *t = tmp;
    w->qhead = (w->qhead + 1) % w->qcap;
    w->qlen--;
    s->busy = 1;
    w->busy++;
    s->started = now;
    s->started_wall = 0;
    if (s->t.flags & BP_TF_FILE) {
        file_start(w, s);
    } else if (w->o->exec) {
        s->ready_at = 0;
        s->started_wall = bp_wall_ms();
        bp_job_start(&s->job, w->o->exec, s->t.data, s->t.len, w->o->task_timeout_ms, now);
    } else {
        w->tf->fn(s->t.data, s->t.len, s->t.data);
        s->ready_at = now + w->o->sleep_ms;
    }
}

/* Starts queued tasks while there is room (instant ones run at once). */
static void start_queued(struct worker *w, int64_t now)
{
    if (w->stopping || w->base_pending)
        return;
    if (w->instant) {
        while (w->qlen && !w->rp_blocked) {
            struct qtask *t = &w->q[w->qhead];
            struct bp_task_rec tr = {.id = t->id,
                                     .attempt = t->attempt,
                                     .flags = t->flags,
                                     .data = t->data,
                                     .len = t->len};
            if (run_instant(w, t->batch, &tr) != BP_OK)
                return;
            w->qhead = (w->qhead + 1) % w->qcap;
            w->qlen--;
        }
        return;
    }
    for (int i = 0; i < w->nslots && w->qlen; i++)
        if (!w->slots[i].busy)
            start_slot(w, &w->slots[i], now);
}

static int finish_slot(struct worker *w, struct slot *s, int64_t now)
{
    int rc;
    if (s->cancelled) { /* its other copy's result is the outcome: nothing to say */
        s->cancelled = 0;
        s->busy = 0;
        w->busy--;
        return BP_OK;
    }
    if (s->f.phase)
        return file_finish(w, s, now);
    if (w->o->exec) {
        size_t len;
        const uint8_t *out = bp_job_result(&s->job, &len);
        if (s->job.status != BP_ST_OK) {
            char show[200];
            bp_printable(show, sizeof show, out, len > 160 ? 160 : len);
            bp_log(BP_LOG_DEBUG, "task %" PRIu64 " %s (code %d): %s", s->t.id,
                   bp_status_name(s->job.status), s->job.code, show);
        }
        rc = add_result(w, &s->t, s->job.status, s->job.code, now - s->started, out, len,
                        s->started_wall, 0);
    } else {
        rc = add_result(w, &s->t, BP_ST_OK, 0, now - s->started, s->t.data, s->t.len, 0, 0);
    }
    if (rc != BP_OK)
        return rc; /* the sink is blocked: finish it later */
    s->busy = 0;
    w->busy--;
    return BP_OK;
}

/* ---- receiving ---- */

static void note_malformed(struct worker *w, int rc)
{
    w->malformed++;
    bp_role_note_malformed(w->malformed, rc, " from the ventilator",
                           rc == BP_EPROTO ? "; plain strings need --raw" : NULL);
}

static void on_tasks(struct worker *w, const struct bp_msg *m, int64_t now)
{
    (void)now;
    size_t off = 0;
    struct bp_task_rec tr;
    if (m->n) {
        double per = (double)m->body_len / m->n;
        w->task_bytes = w->task_bytes > 0 ? 0.8 * w->task_bytes + 0.2 * per : per;
    }
    int back = 0;
    while (bp_msg_next_task(m, &off, &tr)) {
        if (tr.attempt > 1)
            w->redelivered++;
        if (w->stopping || (w->o->once && w->batch_over)) {
            /* Crossed our BYE in flight: straight back, no attempt lost. */
            if (!back++) {
                bp_pack_begin(&w->cp, BP_MSG_BYE, m->batch);
                bp_pack_u32(&w->cp, 0);
            }
            bp_pack_id(&w->cp, tr.id);
            continue;
        }
        if (w->instant && !w->qlen && !w->rp_blocked && run_instant(w, m->batch, &tr) == BP_OK)
            continue;
        enqueue(w, m->batch, &tr);
    }
    if (back)
        send_ctl(w);
    /* Instant tasks: their results and the credit they free go out per
     * pack received, not once the whole burst read is done, so the
     * ventilator refills the window while we work through the rest. */
    if (w->instant && !back) {
        flush_results(w);
        send_credit(w, 0);
    }
}

/* Whether queued/running task t is attempt a of a CANCEL in batch. */
static int cancel_hit(const struct qtask *t, uint64_t batch, const struct bp_ack_rec *a)
{
    return t->batch == batch && t->id == a->id && t->attempt == a->attempt;
}

/* CANCEL: the attempts named stop and report nothing (another copy's
 * result won): queued ones are dropped, a running command's process
 * group is killed, a --sleep task forgotten. Freed places come back as
 * credit with the next CREDIT. */
static void on_cancel(struct worker *w, const struct bp_msg *m)
{
    size_t off = 0;
    struct bp_ack_rec a;
    while (bp_msg_next_cancel(m, &off, &a)) {
        for (int i = 0; i < w->nslots; i++) {
            struct slot *s = &w->slots[i];
            /* (a file task's transfers run to their end: its result is a
             * duplicate at the sink) */
            if (!s->busy || s->cancelled || s->f.phase || !cancel_hit(&s->t, m->batch, &a))
                continue;
            w->cancelled++;
            s->cancelled = 1;
            if (w->o->exec)
                bp_job_interrupt(&s->job); /* finish_slot() frees it */
            else
                finish_slot(w, s, 0);
        }
        for (uint32_t k = 0; k < w->qlen; k++) {
            struct qtask *t = &w->q[(w->qhead + k) % w->qcap];
            if (!cancel_hit(t, m->batch, &a))
                continue;
            /* swap it to the back (buffers stay owned), then drop it */
            for (uint32_t j = k; j + 1 < w->qlen; j++) {
                struct qtask *x = &w->q[(w->qhead + j) % w->qcap];
                struct qtask *y = &w->q[(w->qhead + j + 1) % w->qcap];
                struct qtask tmp = *x;
                *x = *y;
                *y = tmp;
            }
            w->qlen--;
            w->cancelled++;
            break;
        }
        bp_log(BP_LOG_DEBUG, "task %" PRIu64 " attempt %u cancelled: another copy's result won",
               a.id, (unsigned)a.attempt);
    }
}

/* END(halted), --halt now: the batch gave up what runs here. Commands
 * get SIGTERM now and SIGKILL after --grace; built-in tasks just stop. */
static void halt_running(struct worker *w, int64_t now)
{
    if (w->busy)
        bp_log(BP_LOG_INFO, "the ventilator halted the batch: stopping %d running task%s", w->busy,
               w->busy == 1 ? "" : "s");
    for (int i = 0; i < w->nslots; i++) {
        struct slot *s = &w->slots[i];
        if (!s->busy)
            continue;
        if (w->o->exec) {
            bp_job_term(&s->job);
            w->halt_kill_at = now + w->o->grace_ms;
        } else {
            s->busy = 0;
            w->busy--;
        }
    }
}

/* --grace after END(halted): what still runs is killed with its group. */
static void halt_kill(struct worker *w, int64_t now)
{
    if (!w->halt_kill_at || now < w->halt_kill_at)
        return;
    w->halt_kill_at = 0;
    for (int i = 0; i < w->nslots; i++)
        if (w->slots[i].busy && w->o->exec)
            bp_job_interrupt(&w->slots[i].job);
}

static void on_vent_message(struct worker *w, const void *buf, size_t len, int64_t now)
{
    struct bp_msg m;
    int rc = bp_msg_decode(&m, buf, len, (uint32_t)w->o->max_msg);
    if (rc != BP_OK) {
        note_malformed(w, rc);
        return;
    }
    int ever = w->ch.ever_connected;
    int what = bp_wchan_on_msg(&w->ch, &m, now);
    if (what & BP_WC_CONNECTED)
        bp_log(ever ? BP_LOG_INFO : BP_LOG_DEBUG, "connected to the ventilator");
    if (what & BP_WC_DROP)
        drop_queue(w, "the ventilator lost track of this worker"); /* RESYNC: HELLO is due */
    switch (m.type) {
    case BP_MSG_TASKS:
        on_tasks(w, &m, now);
        break;
    case BP_MSG_CHUNK:
        if (w->xf)
            on_chunk(w, &m, now);
        break;
    case BP_MSG_BASE:
        if (w->xf)
            on_base(w, &m);
        break;
    case BP_MSG_CANCEL:
        on_cancel(w, &m);
        break;
    case BP_MSG_HEARTBEAT:
    case BP_MSG_RESYNC:
        break; /* (the channel's business) */
    case BP_MSG_END: {
        uint32_t why = bp_msg_u32(&m);
        if (why == BP_END_COMPLETE) {
            bp_log(BP_LOG_DEBUG, "batch %016" PRIx64 " is complete", m.batch);
            drop_transfers(w);
        } else if (why == BP_END_HALTED)
            halt_running(w, now);
        else
            bp_log(BP_LOG_INFO, "the ventilator is stopping");
        w->batch_over = 1;
        drop_queue(w, "batch over");
        break;
    }
    default:
        note_malformed(w, BP_EPROTO);
    }
}

static void read_vent(struct worker *w, int64_t now)
{
    zmq_msg_t msg;
    zmq_msg_init(&msg);
    for (int n = 0; n < 64; n++) {
        if (w->o->raw && (w->instant ? 0 : held(w) >= (int64_t)w->nslots))
            break;
        int rc = bp_recv_raw(w->tsock, &msg, ZMQ_DONTWAIT);
        if (rc == BP_ETIMEDOUT || rc == BP_EINTR)
            break;
        if (rc == BP_EPROTO) {
            note_malformed(w, rc);
            continue;
        }
        if (rc != BP_OK) {
            bp_log(BP_LOG_ERROR, "receiving from the ventilator failed: %s", zmq_strerror(errno));
            break;
        }
        if (w->o->raw) {
            struct bp_task_rec tr = {.data = zmq_msg_data(&msg),
                                     .len = (uint32_t)zmq_msg_size(&msg)};
            if (w->instant)
                run_instant(w, 0, &tr);
            else
                enqueue(w, 0, &tr);
            continue;
        }
        on_vent_message(w, zmq_msg_data(&msg), zmq_msg_size(&msg), now);
    }
    zmq_msg_close(&msg);
}

/* ---- sockets ---- */

/* Opens a connecting socket whose CURVE handshakes mon watches from
 * before the first connection (a wrong key is then reported at once). */
static int open_watched(struct worker *w, int type, const struct bp_sockcfg *c,
                        const char *endpoint, void **sock, struct bp_secmon *mon)
{
    char err[320];
    *sock = bp_sock_new(w->ctx, type, c, err, sizeof err);
    if (*sock && bp_secmon_open(mon, &w->sec, w->ctx, *sock) != BP_OK) {
        snprintf(err, sizeof err, "cannot watch the CURVE handshake: %s", zmq_strerror(errno));
        bp_sock_close(sock);
    }
    if (*sock && bp_sock_attach(sock, endpoint, 0, err, sizeof err) != BP_OK)
        bp_secmon_close(mon, NULL);
    if (!*sock) {
        bp_log(BP_LOG_ERROR, "%s", err);
        return BP_EZMQ;
    }
    return BP_OK;
}

static int open_task_socket(struct worker *w)
{
    const struct bp_opts *o = w->o;
    struct bp_sockcfg c = bp_role_sockcfg(o);
    bp_role_sec_client(&w->sec, &c);
    /* A task message is a pack of small tasks or one large task. */
    c.max_msg = o->max_msg + BP_PACK_BYTES + 64;
    if (o->raw) {
        /* Few tasks queued here: the rest stay at the ventilator. */
        c.rcvhwm = w->instant ? 100 : 2 * w->nslots + 2;
        c.linger_ms = 0;
    } else {
        /* Not ZMQ_IMMEDIATE: with it libzmq drops what the ventilator sent
         * just before it went away (its END). The one HELLO per socket
         * waits in the pipe until the ventilator is there. */
        c.linger_ms = 1000; /* room for a last BYE */
    }
    return open_watched(w, o->raw ? ZMQ_PULL : ZMQ_DEALER, &c, o->tasks, &w->tsock, &w->tmon);
}

static int open_sockets(struct worker *w)
{
    const struct bp_opts *o = w->o;
    int rc = bp_role_sec_open(&w->sec, o, w->ctx, w->io);
    if (rc == BP_OK)
        rc = open_task_socket(w);
    if (rc != BP_OK)
        return rc;
    struct bp_sockcfg c = bp_role_sockcfg(o);
    bp_role_sec_client(&w->sec, &c);
    /* Nothing but PUTACKs comes back on it, and only with --return: a
     * peer that sends anything else is cut off (MAXMSGSIZE) and can queue
     * next to nothing (RCVHWM). */
    c.max_msg = o->returns.n ? (int64_t)BP_MSG_HDR + (int64_t)BP_PUTACK_REC * 4096 : 64;
    c.rcvhwm = o->returns.n ? 256 : 1;
    c.sndhwm = o->raw ? 0 : 64;
    return open_watched(w, o->raw ? ZMQ_PUSH : ZMQ_DEALER, &c, o->results, &w->rsock, &w->rmon);
}

/* Nothing heard from the ventilator for the liveness time: stop taking
 * work, give up what is queued, reconnect afresh. Running tasks go on;
 * their results still go to the sink (which keeps the first result of a
 * task), so a short outage wastes nothing. */
/* The channel says: the ventilator went silent, or did not answer our
 * HELLO. Queued tasks go (others get them); a new connection, so a
 * ventilator that still hears the old one cannot keep counting on them.
 * The old HELLO still waiting in its pipe goes with it (linger 0). */
static void vent_lost(struct worker *w, int what)
{
    if (what & BP_WC_SILENT)
        bp_log(BP_LOG_WARN, "no word from the ventilator for %.1f s: reconnecting",
               (double)dead_ms(w) / 1000.0);
    drop_queue(w, "ventilator lost");
    set_linger(w->tsock, 0);
    /* A refusal is said once, not again at every new connection. */
    int said = w->tmon.said;
    bp_secmon_close(&w->tmon, w->tsock);
    bp_sock_close(&w->tsock);
    int rc = open_task_socket(w);
    w->tmon.said = said;
    if (rc != BP_OK)
        w->gave_up = 1;
}

static void worker_close(struct worker *w)
{
    if (w->slots) {
        for (int i = 0; i < w->nslots; i++) {
            bp_job_release(&w->slots[i].job);
            if (w->slots[i].f.phase)
                file_cleanup(w, &w->slots[i]);
            free(w->slots[i].t.data);
        }
        free(w->slots);
    }
    for (int i = 0; w->bases && i < w->nbase; i++)
        base_abandon(w, &w->bases[i]);
    free(w->bases);
    free(w->gmap);
    free(w->pmap);
    bp_pack_free(&w->up);
    bp_xfer_destroy(&w->xf);
    if (w->q) {
        for (uint32_t i = 0; i < w->qcap; i++)
            free(w->q[i].data);
        free(w->q);
    }
    free(w->items);
    free(w->rp_ids);
    free(w->done);
    bp_pack_free(&w->rp);
    bp_pack_free(&w->cp);
    bp_secmon_close(&w->tmon, w->tsock);
    bp_secmon_close(&w->rmon, w->rsock);
    bp_sock_close(&w->tsock);
    bp_sock_close(&w->rsock);
    bp_role_sec_close(&w->sec);
    if (w->own_ctx && w->ctx)
        zmq_ctx_term(w->ctx);
}

/* ---- stopping ---- */

static void begin_stop(struct worker *w, int64_t now)
{
    const struct bp_opts *o = w->o;
    w->stopping = 1;
    w->grace_end = now + o->grace_ms;
    bp_log(BP_LOG_INFO,
           "stopping: handing back %u queued, finishing %d running task%s (grace %.1f s)", w->qlen,
           w->busy, w->busy == 1 ? "" : "s", (double)o->grace_ms / 1000.0);
    if (o->raw || !active(w)) {
        w->qlen = 0;
        return;
    }
    /* Unstarted tasks go back at once, so others can run them now. */
    bp_pack_begin(&w->cp, BP_MSG_BYE, w->ch.batch);
    bp_pack_u32(&w->cp, 0);
    for (uint32_t i = 0; i < w->qlen; i++)
        bp_pack_id(&w->cp, w->q[(w->qhead + i) % w->qcap].id);
    send_ctl(w);
    w->qlen = 0;
}

/* The last word: everything sent, and the ids of tasks cut off by the
 * end of the grace period handed back. */
static void say_gone(struct worker *w, const uint64_t *ids, int n)
{
    if (w->o->raw || !active(w))
        return;
    send_credit(w, 0);
    bp_pack_begin(&w->cp, BP_MSG_BYE, w->ch.batch);
    bp_pack_u32(&w->cp, BP_BYE_GONE);
    for (int i = 0; i < n; i++)
        bp_pack_id(&w->cp, ids[i]);
    send_ctl(w);
}

/* ---- the loop ---- */

/* The grace after a stop is over: what still runs is killed with its
 * process group, and its id goes into cut[] (handed back by say_gone). */
static void cut_running(struct worker *w, uint64_t **cut, int *ncut)
{
    for (int i = 0; i < w->nslots; i++) {
        struct slot *s = &w->slots[i];
        if (!s->busy)
            continue;
        if (!*cut)
            *cut = calloc((size_t)w->nslots, sizeof **cut);
        if (*cut)
            (*cut)[(*ncut)++] = s->t.id;
        if (w->o->exec)
            bp_job_release(&s->job); /* kills its process group */
        if (s->f.phase)
            file_cleanup(w, s);
        s->busy = 0;
        w->busy--;
    }
    if (w->rp_n) {
        bp_log(BP_LOG_ERROR, "the sink did not take %u results in time", w->rp_n);
        w->unsent += w->rp_n;
        w->rp_n = 0;
    }
}

/* The task channel's timers (bp_wchan decides; this sends). */
static void channel_step(struct worker *w, int64_t now)
{
    const struct bp_opts *o = w->o;
    if (o->raw)
        return;
    if (!w->stopping) {
        int what = bp_wchan_on_timer(&w->ch, now);
        if (what & BP_WC_REOPEN)
            vent_lost(w, what);
        if (what & BP_WC_GIVE_UP) {
            bp_log(BP_LOG_ERROR, "no ventilator at %s for %.1f s: giving up", o->tasks,
                   (double)o->host_timeout_ms / 1000.0);
            w->gave_up = 1;
        }
        if (!w->gave_up && bp_wchan_due(&w->ch, now) == BP_MSG_HELLO)
            send_hello(w, now);
    }
    /* Also while stopping: a worker finishing its tasks is alive. */
    if (bp_wchan_due(&w->ch, now) == BP_MSG_HEARTBEAT)
        send_heartbeat(w, now);
}

/* Fills w->items from *n on with each running job's pipes; returns the
 * earliest a slot wants the loop (a job's check, a --sleep's end). */
static int64_t slot_items(struct worker *w, int *n, int64_t now, int64_t wake)
{
    for (int i = 0; i < w->nslots; i++) {
        struct slot *s = &w->slots[i];
        if (!s->busy)
            continue;
        s->item_n = 0;
        if (s->f.phase && s->f.phase != F_RUN) {
            if (s->f.phase == F_FAILED || s->f.phase == F_READY)
                wake = now;
        } else if (w->o->exec) {
            int64_t jw;
            if (bp_job_check(&s->job, now, &jw)) {
                wake = now;
                continue;
            }
            if (jw && jw < wake)
                wake = jw;
            s->item_first = *n;
            s->item_n = bp_job_pollitems(&s->job, &w->items[*n]);
            *n += s->item_n;
        } else if (s->ready_at < wake) {
            wake = s->ready_at;
        }
    }
    return wake;
}

/* Sleeps until a socket, a job's pipe or a deadline needs the loop.
 * *task_idx / *res_idx get the sockets' places in w->items (-1: none). */
static int wait_io(struct worker *w, int64_t now, int *task_idx, int *res_idx)
{
    const struct bp_opts *o = w->o;
    int n = 0;
    *task_idx = *res_idx = -1;
    int read_tasks = !o->raw || (!w->stopping && (w->instant || held(w) < w->nslots));
    if (w->tsock && read_tasks) {
        *task_idx = n;
        w->items[n++] = (zmq_pollitem_t){.socket = w->tsock, .events = ZMQ_POLLIN};
    }
    short rev = (short)((w->rp_blocked || w->put_blocked ? ZMQ_POLLOUT : 0) |
                        (w->xf && w->o->returns.n ? ZMQ_POLLIN : 0));
    if (rev) {
        *res_idx = n;
        w->items[n++] = (zmq_pollitem_t){.socket = w->rsock, .events = rev};
    }
    int64_t wake = INT64_MAX;
    if (!o->raw)
        wake = bp_wchan_next_deadline(&w->ch);
    if (w->xf && bp_xfer_next_deadline(w->xf) < wake)
        wake = bp_xfer_next_deadline(w->xf);
    if (w->stopping && w->grace_end < wake)
        wake = w->grace_end;
    if (w->halt_kill_at && w->halt_kill_at < wake)
        wake = w->halt_kill_at;
    if ((o->status_file || o->metrics_file) && w->next_status < wake)
        wake = w->next_status;
    wake = slot_items(w, &n, now, wake);
    int rc = zmq_poll(w->items, n, bp_role_timeout(now, wake, w->rp_blocked ? 100 : 1000));
    bp_secmon_poll(&w->tmon, "the ventilator");
    bp_secmon_poll(&w->rmon, "the sink");
    if (rc < 0 && errno != EINTR) {
        bp_log(BP_LOG_ERROR, "poll failed: %s", zmq_strerror(errno));
        return BP_EZMQ;
    }
    if (rc > 0 && o->exec) {
        for (int i = 0; i < w->nslots; i++) {
            struct slot *s = &w->slots[i];
            if (s->busy && !s->job.done && s->item_n)
                bp_job_io(&s->job, &w->items[s->item_first], s->item_n);
        }
    }
    return BP_OK;
}

/* After the wait: finished jobs, new tasks, results and credit out. */
static void after_wait(struct worker *w, int task_idx, int res_idx)
{
    int64_t now = bp_now_ms();
    halt_kill(w, now);
    if (res_idx >= 0 && (w->items[res_idx].revents & ZMQ_POLLIN))
        read_sink(w, now);
    if (w->xf)
        bp_xfer_on_timer(w->xf, now);
    if (res_idx >= 0 || w->rp_blocked)
        flush_results(w);
    for (int i = 0; i < w->nslots; i++) {
        struct slot *s = &w->slots[i];
        if (!s->busy)
            continue;
        int64_t jw;
        if (s->f.phase   ? file_due(s, now)
            : w->o->exec ? bp_job_check(&s->job, now, &jw)
                         : now >= s->ready_at)
            finish_slot(w, s, now);
    }
    start_queued(w, now);
    if (task_idx >= 0 && (w->items[task_idx].revents & ZMQ_POLLIN))
        read_vent(w, now);
    start_queued(w, now);
    /* A lone result goes out at once; many go out in packs. */
    flush_results(w);
    pump_fetch(w, now);
    pump_put(w, now);
    if (!w->o->raw)
        send_credit(w, 0);
}

static int worker_loop(struct worker *w)
{
    const struct bp_opts *o = w->o;
    uint64_t *cut = NULL;
    int ncut = 0;
    for (;;) {
        int64_t now = bp_now_ms();
        heat_check(w, now); /* (before the first HELLO: its credit) */
        if (!w->stopping && bp_role_stopped(w->io))
            begin_stop(w, now);
        if (w->stopping && now >= w->grace_end)
            cut_running(w, &cut, &ncut);
        channel_step(w, now);
        if (w->gave_up && !w->stopping) {
            w->stopping = 1;
            w->grace_end = now + o->grace_ms;
            w->qlen = 0;
        }
        int idle = w->busy == 0 && w->qlen == 0 && w->rp_n == 0;
        if (idle && (w->stopping || (o->once && w->batch_over))) {
            /* After END the ventilator is leaving: a BYE would only wait
             * out the linger in a pipe nobody reads. */
            if (w->stopping)
                say_gone(w, cut, ncut);
            else
                set_linger(w->tsock, 0);
            free(cut);
            return w->gave_up ? BP_ETIMEDOUT : BP_OK;
        }
        w->state = w->stopping ? "stopping" : w->heat.hot ? "hot" : w->busy ? "running" : "idle";
        if ((o->status_file || o->metrics_file) && now >= w->next_status) {
            write_status(w);
            write_metrics(w);
            w->next_status = now + 1000;
        }
        int task_idx, res_idx;
        if (wait_io(w, now, &task_idx, &res_idx) != BP_OK) {
            free(cut);
            return BP_EZMQ;
        }
        after_wait(w, task_idx, res_idx);
    }
}

int bp_worker_run(const struct bp_opts *o, const struct bp_io *io, struct bp_report *rep)
{
    struct worker w = {.o = o, .io = io, .state = "starting"};
    struct bp_report dummy;
    int rc;
    if (!rep)
        rep = &dummy;
    memset(rep, 0, sizeof *rep);
    int64_t t0 = bp_now_ms();
    w.m_start_ms = bp_wall_ms();
    w.tf = bp_transform_find(o->transform ? o->transform : "upper");
    if (!w.tf) {
        bp_log(BP_LOG_ERROR, "unknown transform '%s'", o->transform);
        return BP_EUSAGE;
    }
    worker_labels(&w);
    bp_heat_init(&w.heat, o->max_temp);
    /* A command that exits before reading its stdin must not kill us. */
    signal(SIGPIPE, SIG_IGN);
    w.nslots = o->jobs > 0 ? o->jobs : 1;
    w.instant = !o->exec && o->sleep_ms <= 0;
    w.window_max = w.instant ? BUILTIN_WINDOW_MAX : (uint32_t)w.nslots + MAX_PREFETCH;
    if (o->prefetch > 0 && (uint32_t)o->prefetch + (uint32_t)w.nslots > w.window_max)
        w.window_max = (uint32_t)o->prefetch + (uint32_t)w.nslots;
    w.qcap = w.window_max;
    w.done_cap = 4 * w.window_max < MAX_DONE ? 4 * w.window_max : MAX_DONE;
    w.slots = calloc((size_t)w.nslots, sizeof *w.slots);
    w.items = calloc((size_t)w.nslots * 3 + 3, sizeof *w.items);
    w.q = calloc(w.qcap, sizeof *w.q);
    w.rp_ids = calloc(w.window_max, sizeof *w.rp_ids);
    w.done = calloc(w.done_cap, sizeof *w.done);
    bp_pack_init(&w.rp);
    bp_pack_init(&w.cp);
    if (!w.slots || !w.items || !w.q || !w.rp_ids || !w.done) {
        worker_close(&w);
        return BP_ENOMEM;
    }
    for (int i = 0; i < w.nslots; i++) {
        bp_job_init(&w.slots[i].job, (size_t)o->max_msg);
        bp_job_set_mem_limit(&w.slots[i].job, (uint64_t)o->task_memory);
        w.slots[i].f.dirfd = w.slots[i].f.outfd = w.slots[i].f.gh = -1;
    }
    if (!o->raw && files_init(&w) != BP_OK) {
        worker_close(&w);
        return BP_ENOMEM;
    }
    if ((rc = bp_role_ctx(io, &w.ctx, &w.own_ctx)) != BP_OK || (rc = open_sockets(&w)) != BP_OK) {
        worker_close(&w);
        return rc;
    }
    bp_log(BP_LOG_DEBUG, "worker %s: tasks from %s, results to %s, %d job%s, %s%s", o->id, o->tasks,
           o->results, w.nslots, w.nslots == 1 ? "" : "s",
           o->exec ? "exec: " : "transform: ", o->exec ? o->exec : w.tf->name);
    struct bp_wchan_cfg cc = {.hb_ms = o->hb_ms,
                              .liveness = o->liveness,
                              .max_backoff_ms = MAX_BACKOFF_MS,
                              .host_timeout_ms = o->once ? o->host_timeout_ms : 0};
    bp_wchan_init(&w.ch, &cc, t0);
    rc = worker_loop(&w);
    w.state = "stopped";
    write_status(&w);
    write_metrics(&w);
    rep->ok = w.ok_n;
    rep->failed = w.failed_n;
    rep->malformed = w.malformed;
    rep->elapsed_s = (double)(bp_now_ms() - t0) / 1000.0;
    bp_log(BP_LOG_DEBUG,
           "worker %s: %" PRId64 " done, %" PRId64 " failed, %" PRId64 " malformed, %" PRId64
           " dropped, %" PRId64 " cancelled",
           o->id, w.ok_n, w.failed_n, w.malformed, w.dropped, w.cancelled);
    if (w.unsent)
        bp_log(BP_LOG_ERROR, "%" PRId64 " results could not be sent", w.unsent);
    worker_close(&w);
    if (rc == BP_OK && w.unsent)
        rc = BP_EIO;
    if (w.base_failed)
        rc = BP_EIO;
    return rc;
}
