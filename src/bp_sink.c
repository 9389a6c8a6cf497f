#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "bp_frame.h"
#include "bp_internal.h"
#include "bp_role.h"
#include "bp_sock.h"
#include "bp_stats.h"
#include "bp_track.h"

#define MAX_FAIL_LINES 20

struct sink {
    const struct bp_opts *o;
    const struct bp_io *io;
    void *ctx;
    int own_ctx;
    void *pull, *pub;
    FILE *out;
    int own_out;
    int progress;
    /* the current batch */
    int active;
    uint64_t batch;
    int end_seen;
    int64_t total;
    int64_t last_activity;
    struct bp_stats st;
    struct bp_idset seen;
    struct bp_reorder ro;
    int64_t dups, stale, malformed, fail_lines;
    int64_t raw_count;
    int io_error;
};

static int write_rec(struct sink *k, const void *data, size_t len)
{
    if (fwrite(data, 1, len, k->out) != len || putc(k->o->nul ? '\0' : '\n', k->out) == EOF) {
        if (!k->io_error)
            bp_log(BP_LOG_ERROR, "cannot write results: %s", strerror(errno));
        k->io_error = 1;
        return BP_EIO;
    }
    return BP_OK;
}

static void batch_start(struct sink *k, uint64_t batch)
{
    k->active = 1;
    k->batch = batch;
    k->end_seen = 0;
    k->total = -1;
    k->dups = k->stale = k->fail_lines = 0;
    k->last_activity = bp_now_ms();
    bp_stats_free(&k->st);
    bp_stats_init(&k->st, k->last_activity);
    bp_idset_free(&k->seen);
    bp_reorder_free(&k->ro);
    bp_reorder_init(&k->ro);
    bp_log(BP_LOG_DEBUG, "batch %016" PRIx64 " started", batch);
}

static void json_str(FILE *f, const char *s)
{
    putc('"', f);
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\')
            fprintf(f, "\\%c", c);
        else if (c < 0x20)
            fprintf(f, "\\u%04x", c);
        else
            putc(c, f);
    }
    putc('"', f);
}

static void write_json(struct sink *k, const struct bp_report *r)
{
    const char *path = k->o->summary_json;
    if (!path)
        return;
    FILE *f = fopen(path, "w");
    if (!f) {
        bp_log(BP_LOG_ERROR, "cannot write %s: %s", path, strerror(errno));
        k->io_error = 1;
        return;
    }
    fprintf(f,
            "{\"batch\":\"%016" PRIx64 "\",\"total\":%" PRId64 ",\"ok\":%" PRId64
            ",\"failed\":%" PRId64 ",\"missing\":%" PRId64 ",\"duplicates\":%" PRId64
            ",\"stale\":%" PRId64 ",\"malformed\":%" PRId64 ",\"elapsed_s\":%.6f,\"workers\":{",
            r->batch, r->total, r->ok, r->failed, r->missing, r->duplicates, r->stale, r->malformed,
            r->elapsed_s);
    for (int i = 0; i < k->st.nw; i++) {
        if (i)
            putc(',', f);
        json_str(f, k->st.w[i].id);
        fprintf(f, ":{\"ok\":%" PRId64 ",\"failed\":%" PRId64 "}", k->st.w[i].ok,
                k->st.w[i].failed);
    }
    fputs("}}\n", f);
    if (fclose(f) != 0) {
        bp_log(BP_LOG_ERROR, "cannot write %s: %s", path, strerror(errno));
        k->io_error = 1;
    }
}

/* Lists up to 20 missing task ids on stderr. */
static void log_missing(struct sink *k)
{
    char line[400];
    size_t o = 0;
    int shown = 0;
    for (int64_t id = 0; id < k->total && shown < 20; id++) {
        if (bp_idset_has(&k->seen, (uint64_t)id))
            continue;
        int n = snprintf(line + o, sizeof line - o, "%s%" PRId64, shown ? " " : "", id);
        if (n < 0 || (size_t)n >= sizeof line - o)
            break;
        o += (size_t)n;
        shown++;
    }
    if (shown)
        bp_log(BP_LOG_ERROR, "missing task ids: %s%s", line, shown == 20 ? " ..." : "");
}

/* Ends the current batch: flushes output, prints the summary, tells the
 * workers. Returns the batch's outcome. */
static int batch_finish(struct sink *k, struct bp_report *rep, int complete)
{
    int64_t now = bp_now_ms();
    /* Whatever the reorder buffer still holds goes out now, gaps skipped. */
    while (k->ro.held) {
        zmq_msg_t m;
        int skip = 0;
        zmq_msg_init(&m);
        if (bp_reorder_pop(&k->ro, &m, &skip)) {
            if (!skip)
                write_rec(k, zmq_msg_data(&m), zmq_msg_size(&m));
        } else {
            k->ro.next++;
        }
        zmq_msg_close(&m);
    }
    fflush(k->out);
    if (k->progress)
        bp_role_progress_line(NULL);
    struct bp_report r = {0};
    r.batch = k->batch;
    r.total = k->total;
    r.ok = k->st.ok;
    r.failed = k->st.failed;
    r.duplicates = k->dups;
    r.stale = k->stale;
    r.malformed = k->malformed;
    r.workers = k->st.nw;
    r.elapsed_s = (double)(now - k->st.start_ms) / 1000.0;
    if (k->end_seen && k->total > r.ok + r.failed)
        r.missing = k->total - r.ok - r.failed;
    double rate = r.elapsed_s > 0 ? (double)(r.ok + r.failed) / r.elapsed_s : 0;
    char tot[32] = "?";
    if (k->end_seen)
        snprintf(tot, sizeof tot, "%" PRId64, k->total);
    bp_log(complete ? BP_LOG_INFO : BP_LOG_ERROR,
           "batch %016" PRIx64 " %s: %" PRId64 "/%s tasks, %" PRId64 " ok, %" PRId64
           " failed, %" PRId64 " missing, %" PRId64 " duplicates in %.3f s (%.1f tasks/s)",
           r.batch, complete ? "complete" : "INCOMPLETE", r.ok + r.failed, tot, r.ok, r.failed,
           r.missing, r.duplicates, r.elapsed_s, rate);
    for (int i = 0; i < k->st.nw; i++)
        bp_log(BP_LOG_INFO, "  worker %-24s %8" PRId64 " ok %6" PRId64 " failed", k->st.w[i].id,
               k->st.w[i].ok, k->st.w[i].failed);
    if (k->stale || k->malformed)
        bp_log(BP_LOG_WARN,
               "dropped %" PRId64 " results of other batches, %" PRId64 " malformed messages",
               k->stale, k->malformed);
    if (!complete) {
        if (!k->end_seen)
            bp_log(BP_LOG_ERROR, "the ventilator never announced the batch size");
        else
            log_missing(k);
    }
    write_json(k, &r);
    if (k->pub) {
        struct bp_hdr h = {.type = BP_MSG_CONTROL_END, .batch = k->batch};
        if (bp_send(k->pub, &h, "", 0, ZMQ_DONTWAIT) != BP_OK)
            bp_log(BP_LOG_WARN, "cannot announce the batch end to workers");
    }
    if (rep)
        *rep = r;
    k->active = 0;
    if (!complete)
        return BP_EINCOMPLETE;
    return r.failed ? BP_EFAILED : BP_OK;
}

static void report_failure(struct sink *k, const struct bp_hdr *h, zmq_msg_t *m)
{
    if (k->fail_lines++ >= MAX_FAIL_LINES) {
        if (k->fail_lines == MAX_FAIL_LINES + 1)
            bp_log(BP_LOG_ERROR, "(further failures are counted, not shown)");
        return;
    }
    char show[240];
    size_t n = zmq_msg_size(m);
    const char *d = zmq_msg_data(m);
    while (n && (d[n - 1] == '\n' || d[n - 1] == '\r'))
        n--;
    /* The tail's last line is usually the error. */
    size_t from = 0;
    for (size_t i = n; i > 1; i--)
        if (d[i - 2] == '\n' && i - 1 < n) {
            from = i - 1;
            break;
        }
    if (n - from > 200)
        from = n - 200;
    bp_printable(show, sizeof show, d + from, n - from);
    bp_log(BP_LOG_ERROR, "task %" PRIu64 " %s (code %d) on %s: %s", h->task,
           bp_status_name(h->status), h->code, h->wid_len ? h->wid : "?", show);
}

static void on_result(struct sink *k, const struct bp_hdr *h, zmq_msg_t *m)
{
    if (!k->active) {
        /* A result can overtake the ventilator's BEGIN: they travel on
         * different connections. */
        batch_start(k, h->batch);
    } else if (h->batch != k->batch) {
        k->stale++;
        return;
    }
    k->last_activity = bp_now_ms();
    if ((k->end_seen && h->task >= (uint64_t)k->total)) {
        k->malformed++;
        return;
    }
    int fresh = bp_idset_add(&k->seen, h->task);
    if (fresh < 0) {
        k->malformed++;
        return;
    }
    if (!fresh) {
        k->dups++;
        bp_log(BP_LOG_DEBUG, "duplicate result for task %" PRIu64 " dropped", h->task);
        return;
    }
    int ok = h->status == BP_ST_OK;
    bp_stats_add(&k->st, h->wid_len ? h->wid : "?", ok);
    if (!ok)
        report_failure(k, h, m);
    if (!k->o->ordered) {
        if (ok)
            write_rec(k, zmq_msg_data(m), zmq_msg_size(m));
        return;
    }
    if (bp_reorder_put(&k->ro, h->task, m, !ok) != 0) {
        /* Too far ahead to hold: written now rather than lost. */
        bp_log(BP_LOG_WARN,
               "task %" PRIu64 " too far ahead of %" PRIu64 " for --ordered: written out of order",
               h->task, k->ro.next);
        if (ok)
            write_rec(k, zmq_msg_data(m), zmq_msg_size(m));
        return;
    }
    zmq_msg_t out;
    zmq_msg_init(&out);
    int skip;
    while (bp_reorder_pop(&k->ro, &out, &skip))
        if (!skip)
            write_rec(k, zmq_msg_data(&out), zmq_msg_size(&out));
    zmq_msg_close(&out);
}

static void on_message(struct sink *k, const struct bp_hdr *h, zmq_msg_t *m)
{
    switch (h->type) {
    case BP_MSG_RESULT:
        on_result(k, h, m);
        break;
    case BP_MSG_BATCH_BEGIN:
        if (k->active && k->batch == h->batch)
            break;
        if (k->active && (k->st.ok + k->st.failed) > 0) {
            bp_log(BP_LOG_WARN, "batch %016" PRIx64 " begins before %016" PRIx64 " completed",
                   h->batch, k->batch);
            batch_finish(k, NULL, 0);
        }
        batch_start(k, h->batch);
        break;
    case BP_MSG_BATCH_END:
        if (!k->active)
            batch_start(k, h->batch);
        if (h->batch != k->batch) {
            k->stale++;
            break;
        }
        k->end_seen = 1;
        k->total = (int64_t)h->task;
        k->last_activity = bp_now_ms();
        bp_log(BP_LOG_DEBUG, "batch %016" PRIx64 " has %" PRId64 " tasks", k->batch, k->total);
        break;
    default:
        k->malformed++;
    }
}

/* A worker whose control connection was still being set up when the
 * batch ended would miss a single announcement (PUB drops messages for
 * peers not yet subscribed), so a sink about to exit repeats it a few
 * times over half a second, a few reconnect intervals of libzmq. */
static void announce_end(struct sink *k, const struct bp_io *io)
{
    struct bp_hdr h = {.type = BP_MSG_CONTROL_END, .batch = k->batch};
    for (int i = 0; i < 5 && !bp_role_stopped(io); i++) {
        zmq_poll(NULL, 0, 100);
        bp_send(k->pub, &h, "", 0, ZMQ_DONTWAIT);
    }
}

static void sink_close(struct sink *k)
{
    bp_sock_close(&k->pull);
    bp_sock_close(&k->pub);
    if (k->own_ctx && k->ctx)
        zmq_ctx_term(k->ctx);
    if (k->out)
        fflush(k->out);
    if (k->own_out && k->out && fclose(k->out) != 0)
        bp_log(BP_LOG_ERROR, "cannot write %s: %s", k->o->output, strerror(errno));
    bp_stats_free(&k->st);
    bp_idset_free(&k->seen);
    bp_reorder_free(&k->ro);
}

static int sink_open(struct sink *k)
{
    const struct bp_opts *o = k->o;
    char err[320];
    if (k->io && k->io->out) {
        k->out = k->io->out;
    } else if (o->output && strcmp(o->output, "-") != 0) {
        k->out = fopen(o->output, "wb");
        if (!k->out) {
            bp_log(BP_LOG_ERROR, "cannot write %s: %s", o->output, strerror(errno));
            return BP_EIO;
        }
        k->own_out = 1;
    } else {
        k->out = stdout;
    }
    k->ctx = k->io && k->io->zmq_ctx ? k->io->zmq_ctx : NULL;
    if (!k->ctx) {
        k->ctx = bp_ctx_new();
        k->own_ctx = 1;
        if (!k->ctx) {
            bp_log(BP_LOG_ERROR, "cannot create ZeroMQ context: %s", zmq_strerror(errno));
            return BP_EZMQ;
        }
    }
    struct bp_sockcfg c = bp_role_sockcfg(o);
    c.rcvhwm = 10000;
    k->pull = bp_sock_open(k->ctx, ZMQ_PULL, o->bind, 1, &c, err, sizeof err);
    if (!k->pull) {
        bp_log(BP_LOG_ERROR, "%s", err);
        return BP_EZMQ;
    }
    char ep[BP_ENDPOINT_MAX];
    if (bp_sock_endpoint(k->pull, ep, sizeof ep) == BP_OK)
        bp_log(BP_LOG_DEBUG, "results on %s", ep);
    if (!o->raw && o->control_bind) {
        c = bp_role_sockcfg(o);
        k->pub = bp_sock_open(k->ctx, ZMQ_PUB, o->control_bind, 1, &c, err, sizeof err);
        if (!k->pub) {
            bp_log(BP_LOG_ERROR, "%s", err);
            return BP_EZMQ;
        }
    }
    return BP_OK;
}

int bp_sink_run(const struct bp_opts *o, const struct bp_io *io, struct bp_report *rep)
{
    struct sink k = {.o = o, .io = io};
    struct bp_report dummy;
    if (!rep)
        rep = &dummy;
    memset(rep, 0, sizeof *rep);
    bp_stats_init(&k.st, bp_now_ms());
    bp_idset_init(&k.seen);
    bp_reorder_init(&k.ro);
    int rc = sink_open(&k);
    if (rc != BP_OK) {
        sink_close(&k);
        return rc;
    }
    k.progress = bp_role_progress(o);
    int result = BP_OK;
    int64_t next_draw = 0;
    zmq_msg_t m;
    zmq_msg_init(&m);
    for (;;) {
        if (bp_role_stopped(io)) {
            /* Stopping is not an error; a batch left incomplete is. */
            if (k.active)
                result = batch_finish(&k, rep, 0);
            else if (o->raw)
                bp_log(BP_LOG_INFO, "%" PRId64 " results", k.raw_count);
            break;
        }
        /* Flush before blocking, so results appear while the batch runs. */
        fflush(k.out);
        int64_t now = bp_now_ms();
        long tmo = 1000;
        if (k.progress && k.active)
            tmo = 250;
        if (o->timeout_ms && k.active) {
            int64_t left = k.last_activity + o->timeout_ms - now;
            if (left <= 0) {
                bp_log(BP_LOG_ERROR, "no result for %.1f s: giving up on the batch",
                       (double)o->timeout_ms / 1000.0);
                result = batch_finish(&k, rep, 0);
                if (o->once)
                    break;
                continue;
            }
            if (left < tmo)
                tmo = (long)left;
        }
        zmq_pollitem_t it = {.socket = k.pull, .events = ZMQ_POLLIN};
        int prc = zmq_poll(&it, 1, tmo);
        if (prc < 0 && errno != EINTR) {
            bp_log(BP_LOG_ERROR, "poll failed: %s", zmq_strerror(errno));
            result = BP_EZMQ;
            break;
        }
        int done = 0;
        for (int n = 0; n < 4096 && !done; n++) {
            struct bp_hdr h;
            rc = o->raw ? bp_recv_raw(k.pull, &m, ZMQ_DONTWAIT)
                        : bp_recv(k.pull, &h, &m, ZMQ_DONTWAIT);
            if (rc == BP_ETIMEDOUT || rc == BP_EINTR)
                break;
            if (rc == BP_EPROTO || rc == BP_EVERSION) {
                k.malformed++;
                if (k.malformed <= 5 || bp_log_enabled(BP_LOG_DEBUG))
                    bp_log(BP_LOG_WARN, "dropped %s message (%" PRId64 " so far)%s",
                           rc == BP_EVERSION ? "other-version" : "malformed", k.malformed,
                           rc == BP_EPROTO && k.malformed == 1 ? "; plain strings need --raw" : "");
                continue;
            }
            if (rc != BP_OK) {
                bp_log(BP_LOG_ERROR, "receive failed: %s", zmq_strerror(errno));
                result = BP_EZMQ;
                done = 2;
                break;
            }
            if (o->raw) {
                write_rec(&k, zmq_msg_data(&m), zmq_msg_size(&m));
                k.raw_count++;
                if (o->once && o->count && k.raw_count >= o->count)
                    done = 1;
                continue;
            }
            on_message(&k, &h, &m);
            if (k.active && k.end_seen && k.st.ok + k.st.failed >= k.total) {
                result = batch_finish(&k, rep, 1);
                if (o->once)
                    done = 1;
            }
        }
        if (done == 2)
            break;
        if (done && k.pub && !o->raw)
            announce_end(&k, io);
        if (done) {
            if (o->raw)
                bp_log(BP_LOG_INFO, "%" PRId64 " results", k.raw_count);
            break;
        }
        if (k.progress && k.active && (now = bp_now_ms()) >= next_draw) {
            char line[96];
            bp_stats_progress(&k.st, k.end_seen ? k.total : -1, now, line, sizeof line);
            bp_role_progress_line(line);
            next_draw = now + 250;
        }
    }
    zmq_msg_close(&m);
    if (o->raw)
        rep->ok = k.raw_count;
    rep->malformed = k.malformed;
    sink_close(&k);
    if (k.io_error && (result == BP_OK || result == BP_EFAILED))
        result = BP_EIO;
    return result;
}
