#include <errno.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "bp_exec.h"
#include "bp_frame.h"
#include "bp_internal.h"
#include "bp_role.h"
#include "bp_sock.h"
#include "bp_transform.h"

/* One task in progress: a child process (--exec) or a built-in result
 * held back until its --sleep is over. */
struct slot {
    int busy;
    uint64_t batch, task;
    int64_t started, ready_at;
    zmq_msg_t msg; /* the task payload (exec: the child's stdin) */
    struct bp_job job;
    int item_first, item_n; /* this job's pipes in the poll set */
};

struct worker {
    const struct bp_opts *o;
    const struct bp_io *io;
    void *ctx;
    int own_ctx;
    void *pull, *push, *sub;
    const struct bp_transform *tf;
    struct slot *slots;
    int nslots, busy;
    zmq_pollitem_t *items;
    int stopping;
    int64_t grace_end;
    int batch_over;
    int64_t done, failed, malformed, unsent;
    int64_t next_status;
    const char *state;
};

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
    fprintf(f, "id=%s\nstate=%s\ndone=%" PRId64 "\nfailed=%" PRId64 "\nrunning=%d\npid=%ld\n",
            w->o->id, w->state, w->done, w->failed, w->busy, (long)getpid());
    /* rename() makes the update atomic for readers such as `bpfleet status`. */
    if (fclose(f) != 0 || rename(tmp, path) != 0)
        bp_log(BP_LOG_WARN, "cannot update status file %s: %s", path, strerror(errno));
}

/* Sends a result, waiting (bounded) while the sink's queue is full. */
static int send_result(struct worker *w, uint64_t batch, uint64_t task, int status, int code,
                       int64_t started, const void *data, size_t len, zmq_msg_t *zero_copy)
{
    const struct bp_opts *o = w->o;
    struct bp_hdr h = {.type = BP_MSG_RESULT,
                       .status = (uint8_t)status,
                       .batch = batch,
                       .task = task,
                       .code = code};
    int64_t el = bp_now_ms() - started;
    h.aux = el < 0 ? 0 : el > UINT32_MAX ? UINT32_MAX : (uint32_t)el;
    bp_hdr_set_wid(&h, o->id);
    if (status == BP_ST_OK)
        w->done++;
    else
        w->failed++;
    if (o->raw && status != BP_ST_OK) {
        /* Plain peers have no status field: report here, send nothing. */
        char show[160];
        bp_printable(show, sizeof show, data, len > 120 ? 120 : len);
        bp_log(BP_LOG_ERROR, "task %s (code %d): %s", bp_status_name(status), code, show);
        return BP_OK;
    }
    for (;;) {
        int rc;
        if (zero_copy)
            rc = bp_send_msg(w->push, o->raw ? NULL : &h, zero_copy, ZMQ_DONTWAIT);
        else if (o->raw)
            rc = bp_send_raw(w->push, data, len, ZMQ_DONTWAIT);
        else
            rc = bp_send(w->push, &h, data, len, ZMQ_DONTWAIT);
        if (rc != BP_ETIMEDOUT) {
            if (rc != BP_OK) {
                w->unsent++;
                bp_log(BP_LOG_ERROR, "cannot send result of task %" PRIu64 ": %s", task,
                       zmq_strerror(errno));
            }
            return rc;
        }
        /* Sink queue full: backpressure. A stopping worker waits out its
         * grace period, then gives up (and says so). */
        int wait = -1;
        if (w->stopping) {
            int64_t left = w->grace_end - bp_now_ms();
            wait = left > 0 ? (int)left : 0;
        }
        rc = bp_role_wait_out(w->push, w->stopping ? NULL : w->io, wait);
        if (rc == BP_EINTR && !w->stopping) {
            w->stopping = 1;
            w->grace_end = bp_now_ms() + o->grace_ms;
            continue;
        }
        if (rc != BP_OK) {
            w->unsent++;
            bp_log(BP_LOG_ERROR, "sink not taking results: result of task %" PRIu64 " lost", task);
            return rc;
        }
    }
}

static void finish_slot(struct worker *w, struct slot *s)
{
    if (w->o->exec) {
        size_t len;
        const uint8_t *out = bp_job_result(&s->job, &len);
        if (s->job.status != BP_ST_OK) {
            char show[200];
            bp_printable(show, sizeof show, out, len > 160 ? 160 : len);
            bp_log(BP_LOG_DEBUG, "task %" PRIu64 " %s (code %d): %s", s->task,
                   bp_status_name(s->job.status), s->job.code, show);
        }
        send_result(w, s->batch, s->task, s->job.status, s->job.code, s->started, out, len, NULL);
    } else {
        send_result(w, s->batch, s->task, BP_ST_OK, 0, s->started, NULL, 0, &s->msg);
    }
    zmq_msg_close(&s->msg);
    s->busy = 0;
    w->busy--;
}

/* Takes one received task payload (moved from msg) into a free slot, or
 * answers it at once for a built-in transform without --sleep. */
static void start_task(struct worker *w, uint64_t batch, uint64_t task, zmq_msg_t *msg)
{
    const struct bp_opts *o = w->o;
    int64_t now = bp_now_ms();
    if (!o->exec) {
        /* Transform in place: the received buffer is ours. */
        w->tf->fn(zmq_msg_data(msg), zmq_msg_size(msg), zmq_msg_data(msg));
        if (o->sleep_ms <= 0) {
            send_result(w, batch, task, BP_ST_OK, 0, now, NULL, 0, msg);
            return;
        }
    }
    struct slot *s = NULL;
    for (int i = 0; i < w->nslots; i++)
        if (!w->slots[i].busy) {
            s = &w->slots[i];
            break;
        }
    if (!s) /* cannot happen: tasks are read only while a slot is free */
        abort();
    s->busy = 1;
    w->busy++;
    s->batch = batch;
    s->task = task;
    s->started = now;
    zmq_msg_init(&s->msg);
    zmq_msg_move(&s->msg, msg);
    if (o->exec) {
        s->ready_at = 0;
        bp_job_start(&s->job, o->exec, zmq_msg_data(&s->msg), zmq_msg_size(&s->msg),
                     o->task_timeout_ms, now);
    } else {
        s->ready_at = now + o->sleep_ms;
    }
}

static void read_tasks(struct worker *w)
{
    zmq_msg_t msg;
    zmq_msg_init(&msg);
    /* A slot per task read: never take more than we can run. Built-ins
     * without --sleep need no slot. */
    int instant = !w->o->exec && w->o->sleep_ms <= 0;
    for (int n = 0; n < 256 && (instant || w->busy < w->nslots) && !w->stopping; n++) {
        struct bp_hdr h;
        int rc = w->o->raw ? bp_recv_raw(w->pull, &msg, ZMQ_DONTWAIT)
                           : bp_recv(w->pull, &h, &msg, ZMQ_DONTWAIT);
        if (rc == BP_ETIMEDOUT || rc == BP_EINTR)
            break;
        if (rc == BP_EPROTO || rc == BP_EVERSION ||
            (rc == BP_OK && !w->o->raw && h.type != BP_MSG_TASK)) {
            w->malformed++;
            if (w->malformed <= 5 || bp_log_enabled(BP_LOG_DEBUG))
                bp_log(BP_LOG_WARN, "dropped %s message from the ventilator (%" PRId64 " so far)%s",
                       rc == BP_EVERSION ? "other-version" : "malformed", w->malformed,
                       rc == BP_EPROTO && w->malformed == 1 ? "; plain strings need --raw" : "");
            continue;
        }
        if (rc != BP_OK) {
            bp_log(BP_LOG_ERROR, "receiving task failed: %s", zmq_strerror(errno));
            break;
        }
        if (w->o->raw)
            h.batch = h.task = 0;
        start_task(w, h.batch, h.task, &msg);
    }
    zmq_msg_close(&msg);
}

static void read_control(struct worker *w)
{
    zmq_msg_t msg;
    zmq_msg_init(&msg);
    for (;;) {
        struct bp_hdr h;
        int rc = bp_recv(w->sub, &h, &msg, ZMQ_DONTWAIT);
        if (rc == BP_ETIMEDOUT || rc == BP_EINTR || rc == BP_EZMQ)
            break;
        if (rc == BP_OK && h.type == BP_MSG_CONTROL_END) {
            bp_log(BP_LOG_DEBUG, "sink: batch %016" PRIx64 " is over", h.batch);
            w->batch_over = 1;
        }
    }
    zmq_msg_close(&msg);
}

/* Tasks already queued for this worker when it stops are reported as
 * interrupted, so the sink can account for them. */
static void hand_back_queued(struct worker *w)
{
    zmq_msg_t msg;
    zmq_msg_init(&msg);
    int64_t n = 0;
    for (;;) {
        struct bp_hdr h;
        int rc = bp_recv(w->pull, &h, &msg, ZMQ_DONTWAIT);
        if (rc != BP_OK) {
            if (rc == BP_EPROTO || rc == BP_EVERSION)
                continue;
            break;
        }
        if (h.type != BP_MSG_TASK)
            continue;
        static const char why[] = "boardpipe: worker stopping: task not started";
        send_result(w, h.batch, h.task, BP_ST_INTERRUPTED, 0, bp_now_ms(), why, sizeof why - 1,
                    NULL);
        n++;
    }
    zmq_msg_close(&msg);
    if (n)
        bp_log(BP_LOG_WARN, "handed back %" PRId64 " queued task%s as interrupted", n,
               n == 1 ? "" : "s");
}

static int open_sockets(struct worker *w)
{
    const struct bp_opts *o = w->o;
    char err[320];
    struct bp_sockcfg c = bp_role_sockcfg(o);
    /* Few tasks queued here: the rest stay at the ventilator for other
     * workers. (Real per-task balancing needs credit; see docs.) */
    c.rcvhwm = o->exec || o->sleep_ms ? 2 * o->jobs + 2 : 100;
    /* Only results need lingering at exit; the PULL and SUB sockets have
     * nothing worth delivering (a SUB would wait on its subscription). */
    c.linger_ms = 0;
    w->pull = bp_sock_open(w->ctx, ZMQ_PULL, o->tasks, 0, &c, err, sizeof err);
    if (!w->pull)
        goto fail;
    c = bp_role_sockcfg(o);
    w->push = bp_sock_open(w->ctx, ZMQ_PUSH, o->results, 0, &c, err, sizeof err);
    if (!w->push)
        goto fail;
    if (o->control && !o->raw) {
        c = bp_role_sockcfg(o);
        c.linger_ms = 0;
        c.subscribe = "bp";
        w->sub = bp_sock_open(w->ctx, ZMQ_SUB, o->control, 0, &c, err, sizeof err);
        if (!w->sub)
            goto fail;
    }
    return BP_OK;
fail:
    bp_log(BP_LOG_ERROR, "%s", err);
    return BP_EZMQ;
}

static void worker_close(struct worker *w)
{
    if (w->slots) {
        for (int i = 0; i < w->nslots; i++) {
            if (w->slots[i].busy)
                zmq_msg_close(&w->slots[i].msg);
            bp_job_release(&w->slots[i].job);
        }
        free(w->slots);
    }
    free(w->items);
    bp_sock_close(&w->pull);
    bp_sock_close(&w->push);
    bp_sock_close(&w->sub);
    if (w->own_ctx && w->ctx)
        zmq_ctx_term(w->ctx);
}

static int worker_loop(struct worker *w)
{
    const struct bp_opts *o = w->o;
    for (;;) {
        int64_t now = bp_now_ms();
        if (!w->stopping && bp_role_stopped(w->io)) {
            w->stopping = 1;
            w->grace_end = now + o->grace_ms;
            bp_log(BP_LOG_INFO, "stopping: finishing %d running task%s (grace %.1f s)", w->busy,
                   w->busy == 1 ? "" : "s", (double)o->grace_ms / 1000.0);
        }
        if (w->stopping && now >= w->grace_end)
            for (int i = 0; i < w->nslots; i++)
                if (w->slots[i].busy && o->exec)
                    bp_job_interrupt(&w->slots[i].job);
        if (w->busy == 0 && (w->stopping || (o->once && w->batch_over)))
            return BP_OK;
        w->state = w->stopping ? "stopping" : w->busy ? "running" : "idle";
        if (o->status_file && now >= w->next_status) {
            write_status(w);
            w->next_status = now + 1000;
        }

        int n = 0;
        int task_idx = -1, ctl_idx = -1;
        if (!w->stopping && (w->busy < w->nslots)) {
            task_idx = n;
            w->items[n++] = (zmq_pollitem_t){.socket = w->pull, .events = ZMQ_POLLIN};
        }
        if (w->sub) {
            ctl_idx = n;
            w->items[n++] = (zmq_pollitem_t){.socket = w->sub, .events = ZMQ_POLLIN};
        }
        int64_t wake = now + 1000;
        if (w->stopping && w->grace_end < wake)
            wake = w->grace_end;
        if (o->status_file && w->next_status < wake)
            wake = w->next_status;
        for (int i = 0; i < w->nslots; i++) {
            struct slot *s = &w->slots[i];
            if (!s->busy)
                continue;
            s->item_n = 0;
            if (o->exec) {
                int64_t jw;
                if (bp_job_check(&s->job, now, &jw)) {
                    wake = now;
                    continue;
                }
                if (jw && jw < wake)
                    wake = jw;
                s->item_first = n;
                s->item_n = bp_job_pollitems(&s->job, &w->items[n]);
                n += s->item_n;
            } else if (s->ready_at < wake) {
                wake = s->ready_at;
            }
        }
        long tmo = wake > now ? (long)(wake - now) : 0;
        int rc = zmq_poll(w->items, n, tmo);
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
        now = bp_now_ms();
        for (int i = 0; i < w->nslots; i++) {
            struct slot *s = &w->slots[i];
            if (!s->busy)
                continue;
            int64_t jw;
            if (o->exec ? bp_job_check(&s->job, now, &jw) : now >= s->ready_at)
                finish_slot(w, s);
        }
        if (ctl_idx >= 0 && (w->items[ctl_idx].revents & ZMQ_POLLIN))
            read_control(w);
        if (task_idx >= 0 && (w->items[task_idx].revents & ZMQ_POLLIN))
            read_tasks(w);
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
    w.tf = bp_transform_find(o->transform ? o->transform : "upper");
    if (!w.tf) {
        bp_log(BP_LOG_ERROR, "unknown transform '%s'", o->transform);
        return BP_EUSAGE;
    }
    /* A command that exits before reading its stdin must not kill us. */
    signal(SIGPIPE, SIG_IGN);
    w.nslots = o->jobs > 0 ? o->jobs : 1;
    w.slots = calloc((size_t)w.nslots, sizeof *w.slots);
    w.items = calloc((size_t)w.nslots * 3 + 2, sizeof *w.items);
    if (!w.slots || !w.items) {
        worker_close(&w);
        return BP_ENOMEM;
    }
    for (int i = 0; i < w.nslots; i++)
        bp_job_init(&w.slots[i].job, (size_t)o->max_msg);
    w.ctx = io && io->zmq_ctx ? io->zmq_ctx : NULL;
    if (!w.ctx) {
        w.ctx = bp_ctx_new();
        w.own_ctx = 1;
        if (!w.ctx) {
            bp_log(BP_LOG_ERROR, "cannot create ZeroMQ context: %s", zmq_strerror(errno));
            worker_close(&w);
            return BP_EZMQ;
        }
    }
    if ((rc = open_sockets(&w)) != BP_OK) {
        worker_close(&w);
        return rc;
    }
    bp_log(BP_LOG_DEBUG, "worker %s: tasks from %s, results to %s, %d job%s, %s%s", o->id, o->tasks,
           o->results, w.nslots, w.nslots == 1 ? "" : "s",
           o->exec ? "exec: " : "transform: ", o->exec ? o->exec : w.tf->name);
    rc = worker_loop(&w);
    if (w.stopping && !o->raw)
        hand_back_queued(&w);
    w.state = "stopped";
    write_status(&w);
    rep->ok = w.done;
    rep->failed = w.failed;
    rep->malformed = w.malformed;
    rep->elapsed_s = (double)(bp_now_ms() - t0) / 1000.0;
    bp_log(BP_LOG_DEBUG,
           "worker %s: %" PRId64 " done, %" PRId64 " failed, %" PRId64 " malformed dropped", o->id,
           w.done, w.failed, w.malformed);
    if (w.unsent)
        bp_log(BP_LOG_ERROR, "%" PRId64 " results could not be sent", w.unsent);
    worker_close(&w);
    if (rc == BP_OK && w.unsent)
        rc = BP_EIO;
    return rc;
}
