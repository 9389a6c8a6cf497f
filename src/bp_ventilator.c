#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bp_frame.h"
#include "bp_input.h"
#include "bp_internal.h"
#include "bp_role.h"
#include "bp_sock.h"

struct vent {
    const struct bp_opts *o;
    const struct bp_io *io;
    void *ctx;
    int own_ctx;
    void *push;
    void *sink;
    void *mon;
    FILE *in;
    int own_in;
    int connected; /* workers with a completed handshake */
    uint32_t *fds; /* their connections' fds, from the monitor */
    int fd_cap;
};

/* Reads pending monitor events and keeps the count of connected workers. */
static void mon_drain(struct vent *v)
{
    for (;;) {
        zmq_msg_t ev, addr;
        zmq_msg_init(&ev);
        if (zmq_msg_recv(&ev, v->mon, ZMQ_DONTWAIT) < 0) {
            zmq_msg_close(&ev);
            return;
        }
        uint16_t event = 0;
        uint32_t fd = 0;
        if (zmq_msg_size(&ev) >= 6) {
            /* host order, by libzmq's contract; the value is the fd */
            memcpy(&event, zmq_msg_data(&ev), 2);
            memcpy(&fd, (const char *)zmq_msg_data(&ev) + 2, 4);
        }
        int more = zmq_msg_more(&ev);
        zmq_msg_close(&ev);
        if (more) {
            zmq_msg_init(&addr);
            if (zmq_msg_recv(&addr, v->mon, 0) >= 0)
                zmq_msg_close(&addr);
        }
        /* Count by connection: a disconnect is only a worker leaving if
         * that connection had completed its handshake (a stray or failed
         * peer also ends in DISCONNECTED). */
        if (event == ZMQ_EVENT_HANDSHAKE_SUCCEEDED) {
            if (v->connected == v->fd_cap) {
                int cap = v->fd_cap ? v->fd_cap * 2 : 16;
                uint32_t *p = realloc(v->fds, (size_t)cap * sizeof *p);
                if (!p)
                    continue;
                v->fds = p;
                v->fd_cap = cap;
            }
            v->fds[v->connected++] = fd;
            bp_log(BP_LOG_DEBUG, "worker connected (%d now)", v->connected);
        } else if (event == ZMQ_EVENT_DISCONNECTED) {
            for (int i = 0; i < v->connected; i++)
                if (v->fds[i] == fd) {
                    v->fds[i] = v->fds[--v->connected];
                    bp_log(BP_LOG_DEBUG, "worker disconnected (%d now)", v->connected);
                    break;
                }
        }
    }
}

static int mon_open(struct vent *v)
{
    char ep[64];
    snprintf(ep, sizeof ep, "inproc://bp-vent-monitor-%p", (void *)v);
    if (zmq_socket_monitor(v->push, ep, ZMQ_EVENT_HANDSHAKE_SUCCEEDED | ZMQ_EVENT_DISCONNECTED)) {
        bp_log(BP_LOG_ERROR, "cannot monitor the task socket: %s", zmq_strerror(errno));
        return BP_EZMQ;
    }
    v->mon = zmq_socket(v->ctx, ZMQ_PAIR);
    if (!v->mon || zmq_connect(v->mon, ep)) {
        bp_log(BP_LOG_ERROR, "cannot connect the monitor: %s", zmq_strerror(errno));
        return BP_EZMQ;
    }
    return BP_OK;
}

static int wait_workers(struct vent *v)
{
    const struct bp_opts *o = v->o;
    int64_t start = bp_now_ms();
    int64_t deadline = o->wait_timeout_ms ? start + o->wait_timeout_ms : -1;
    int64_t next_note = start + 5000;
    bp_log(BP_LOG_INFO, "waiting for %d worker%s on %s", o->wait_workers,
           o->wait_workers == 1 ? "" : "s", o->bind);
    for (;;) {
        mon_drain(v);
        if (v->connected >= o->wait_workers)
            break;
        if (bp_role_stopped(v->io))
            return BP_EINTR;
        int64_t now = bp_now_ms();
        if (deadline >= 0 && now >= deadline) {
            bp_log(BP_LOG_ERROR, "only %d of %d workers connected after %.1f s", v->connected,
                   o->wait_workers, (double)o->wait_timeout_ms / 1000.0);
            return BP_ETIMEDOUT;
        }
        if (now >= next_note) {
            bp_log(BP_LOG_INFO, "%d of %d workers connected", v->connected, o->wait_workers);
            next_note = now + 5000;
        }
        zmq_pollitem_t it = {.socket = v->mon, .events = ZMQ_POLLIN};
        if (zmq_poll(&it, 1, 250) < 0 && errno != EINTR)
            return BP_EZMQ;
    }
    bp_log(BP_LOG_INFO, "%d worker%s connected", v->connected, v->connected == 1 ? "" : "s");
    return BP_OK;
}

/* Sends to the sink (BEGIN/END); the sink must be reachable. io's stop
 * flag ends the wait (NULL: only the timeout does). */
static int tell_sink(struct vent *v, const struct bp_io *io, int type, uint64_t batch,
                     uint64_t task)
{
    struct bp_hdr h = {.type = (uint8_t)type, .batch = batch, .task = task};
    int tmo = v->o->wait_timeout_ms ? v->o->wait_timeout_ms : -1;
    int rc = bp_role_wait_out(v->sink, io, tmo);
    if (rc == BP_OK)
        rc = bp_send(v->sink, &h, "", 0, ZMQ_DONTWAIT);
    if (rc == BP_ETIMEDOUT)
        bp_log(BP_LOG_ERROR, "sink at %s not reachable after %.1f s", v->o->sink,
               (double)v->o->wait_timeout_ms / 1000.0);
    else if (rc == BP_EZMQ)
        bp_log(BP_LOG_ERROR, "cannot send to sink %s: %s", v->o->sink, zmq_strerror(errno));
    return rc;
}

static int open_input(struct vent *v)
{
    const char *path = v->o->input;
    if (v->io && v->io->in) {
        v->in = v->io->in;
    } else if (!path) {
        v->in = NULL; /* the tutorial's strings */
    } else if (!strcmp(path, "-")) {
        v->in = stdin;
    } else {
        v->in = fopen(path, "rb");
        if (!v->in) {
            bp_log(BP_LOG_ERROR, "cannot read %s: %s", path, strerror(errno));
            return BP_EIO;
        }
        v->own_in = 1;
    }
    return BP_OK;
}

static int send_all(struct vent *v, uint64_t batch, struct bp_report *rep)
{
    const struct bp_opts *o = v->o;
    struct bp_reader rd;
    int rc = bp_reader_init(&rd, v->in, o->nul, (size_t)o->max_msg);
    if (rc != BP_OK)
        return rc;
    int progress = bp_role_progress(o);
    int64_t next_draw = 0;
    struct bp_hdr h = {.type = BP_MSG_TASK, .batch = batch};
    int stall = o->wait_timeout_ms ? o->wait_timeout_ms : -1;
    for (;;) {
        const char *rec;
        size_t len;
        rc = bp_reader_next(&rd, &rec, &len);
        if (rc == BP_EXIT_INFO) {
            rc = BP_OK;
            break;
        }
        if (rc == BP_ETOOBIG) {
            rep->rejected++;
            bp_log(BP_LOG_ERROR, "record %" PRId64 " is longer than %" PRId64 " bytes: skipped",
                   rd.record, o->max_msg);
            continue;
        }
        if (rc != BP_OK) {
            bp_log(BP_LOG_ERROR, "reading input failed after record %" PRId64 ": %s", rd.record,
                   strerror(errno));
            break;
        }
        h.task = (uint64_t)rep->sent;
        for (;;) {
            rc = o->raw ? bp_send_raw(v->push, rec, len, ZMQ_DONTWAIT)
                        : bp_send(v->push, &h, rec, len, ZMQ_DONTWAIT);
            if (rc != BP_ETIMEDOUT)
                break;
            /* No worker has room (or none is connected): wait, bounded. */
            rc = bp_role_wait_out(v->push, v->io, stall);
            if (rc == BP_ETIMEDOUT)
                bp_log(BP_LOG_ERROR, "no worker took a task for %.1f s (%" PRId64 " sent)",
                       (double)stall / 1000.0, rep->sent);
            if (rc != BP_OK)
                break;
        }
        if (rc == BP_EINTR && bp_role_stopped(v->io))
            break;
        if (rc != BP_OK) {
            if (rc == BP_EZMQ)
                bp_log(BP_LOG_ERROR, "sending task failed: %s", zmq_strerror(errno));
            break;
        }
        rep->sent++;
        if (bp_role_stopped(v->io)) {
            rc = BP_EINTR;
            break;
        }
        if (progress) {
            int64_t now = bp_now_ms();
            if (now >= next_draw) {
                char line[64];
                snprintf(line, sizeof line, "%" PRId64 " tasks sent", rep->sent);
                bp_role_progress_line(line);
                next_draw = now + 250;
            }
        }
    }
    if (progress)
        bp_role_progress_line(NULL);
    bp_reader_free(&rd);
    return rc;
}

static void vent_close(struct vent *v)
{
    if (v->mon && v->push) {
        zmq_socket_monitor(v->push, NULL, 0);
        bp_sock_close(&v->mon);
    }
    bp_sock_close(&v->mon);
    bp_sock_close(&v->push);
    bp_sock_close(&v->sink);
    if (v->own_ctx && v->ctx)
        zmq_ctx_term(v->ctx);
    if (v->own_in && v->in)
        fclose(v->in);
    free(v->fds);
    v->fds = NULL;
}

int bp_ventilator_run(const struct bp_opts *o, const struct bp_io *io, struct bp_report *rep)
{
    struct vent v = {.o = o, .io = io};
    struct bp_report dummy;
    char err[320];
    int rc;
    if (!rep)
        rep = &dummy;
    memset(rep, 0, sizeof *rep);
    int64_t t0 = bp_now_ms();

    if ((rc = open_input(&v)) != BP_OK)
        return rc;
    v.ctx = io && io->zmq_ctx ? io->zmq_ctx : NULL;
    if (!v.ctx) {
        v.ctx = bp_ctx_new();
        v.own_ctx = 1;
        if (!v.ctx) {
            bp_log(BP_LOG_ERROR, "cannot create ZeroMQ context: %s", zmq_strerror(errno));
            vent_close(&v);
            return BP_EZMQ;
        }
    }
    struct bp_sockcfg cfg = bp_role_sockcfg(o);
    cfg.sndhwm = 1000;
    v.push = bp_sock_new(v.ctx, ZMQ_PUSH, &cfg, err, sizeof err);
    /* The monitor must watch before the bind: a worker that is already
     * retrying would otherwise connect unseen and never be counted. */
    if (v.push && o->wait_workers > 0 && (rc = mon_open(&v)) != BP_OK) {
        vent_close(&v);
        return rc;
    }
    if (!v.push || bp_sock_attach(&v.push, o->bind, 1, err, sizeof err) != BP_OK) {
        bp_log(BP_LOG_ERROR, "%s", err);
        vent_close(&v);
        return BP_EZMQ;
    }
    char ep[BP_ENDPOINT_MAX];
    if (bp_sock_endpoint(v.push, ep, sizeof ep) == BP_OK)
        bp_log(BP_LOG_DEBUG, "tasks on %s", ep);

    if (!o->raw && o->sink) {
        struct bp_sockcfg sc = bp_role_sockcfg(o);
        /* Queue to the sink only once it is really there: otherwise BEGIN
         * and END would sit in a pipe and vanish at exit. */
        sc.immediate = 1;
        v.sink = bp_sock_open(v.ctx, ZMQ_PUSH, o->sink, 0, &sc, err, sizeof err);
        if (!v.sink) {
            bp_log(BP_LOG_ERROR, "%s", err);
            vent_close(&v);
            return BP_EZMQ;
        }
    }
    if (o->wait_workers > 0) {
        rc = wait_workers(&v);
        if (rc != BP_OK) {
            vent_close(&v);
            return rc;
        }
    }
    rep->batch = o->raw ? 0 : bp_role_batch_id();
    if (v.sink && (rc = tell_sink(&v, io, BP_MSG_BATCH_BEGIN, rep->batch, 0)) != BP_OK) {
        vent_close(&v);
        return rc;
    }
    int send_rc = send_all(&v, rep->batch, rep);
    /* The sink learns the real batch size even after an error or a stop,
     * so it can finish with what was sent instead of waiting forever. */
    if (v.sink) {
        rc = tell_sink(&v, NULL, BP_MSG_BATCH_END, rep->batch, (uint64_t)rep->sent);
        if (rc != BP_OK && send_rc == BP_OK)
            send_rc = rc;
    }
    rep->elapsed_s = (double)(bp_now_ms() - t0) / 1000.0;
    if (o->raw)
        bp_log(BP_LOG_INFO, "sent %" PRId64 " tasks in %.3f s", rep->sent, rep->elapsed_s);
    else
        bp_log(BP_LOG_INFO, "batch %016" PRIx64 ": sent %" PRId64 " tasks in %.3f s", rep->batch,
               rep->sent, rep->elapsed_s);
    if (rep->rejected)
        bp_log(BP_LOG_ERROR, "%" PRId64 " input records rejected", rep->rejected);
    if (o->linger_ms > 0)
        bp_log(BP_LOG_DEBUG, "handing queued tasks to workers (up to %.1f s)",
               (double)o->linger_ms / 1000.0);
    vent_close(&v);
    if (send_rc != BP_OK)
        return send_rc;
    return rep->rejected ? BP_EFAILED : BP_OK;
}
