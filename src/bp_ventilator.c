/* The ventilator's role loop: input, sockets, the journal, progress and
 * the report; it moves bytes to and from bp_dispatch and bp_vbatch. Must
 * not hold batch or delivery policy of its own. */
#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bp_dispatch.h"
#include "bp_frame.h"
#include "bp_input.h"
#include "bp_internal.h"
#include "bp_journal.h"
#include "bp_labels.h"
#include "bp_role.h"
#include "bp_sock.h"
#include "bp_track.h"
#include "bp_vbatch.h"
#include "bp_vfiles.h"

/* How long a finished batch waits for the sink's COMPLETE (every result
 * was acknowledged one by one already; this only confirms the batch). */
#define COMPLETE_WAIT_MS 5000
/* Messages read from one socket per loop turn, so none starves the rest. */
#define READ_BURST 256
/* Workers one ventilator tracks (the dispatcher's hard limit); more
 * HELLOs are refused. Descriptors limit a host first (one per worker). */
#define MAX_WORKERS 65536

struct vent {
    const struct bp_opts *o;
    const struct bp_io *io;
    void *ctx;
    int own_ctx;
    void *tasks; /* v2: ROUTER; raw: PUSH */
    void *sink;  /* v2: DEALER to the sink, or NULL */
    FILE *in;
    int own_in;
    struct bp_reader rd;
    int rd_open;
    struct bp_dispatch *d;
    struct bp_vfiles *vf; /* --files / --basefile, else NULL */
    struct bp_pack cpk;   /* the CHUNK being sent */
    uint64_t batch;
    struct bp_role_sec sec;
    /* raw mode: plain peers say nothing, so connections are counted */
    void *mon;
    int connected; /* connections with a completed handshake */
    uint32_t *fds; /* their fds, from the monitor */
    int fd_cap;
    /* the journal (--journal / --resume): see docs/journal.md */
    struct bp_journal *j;
    char jpath[1024];
    uint8_t *jfin; /* final outcomes not yet queued: n x (u64 id, u8 ok) */
    size_t jfin_len;
    int64_t in_count; /* records taken in (ids 0 .. in_count - 1) */
    uint64_t in_hash; /* of those records, to recognise the input */
    int64_t j_count;  /* in_count last journaled */
    int64_t j_next_sync;
    int j_unsynced;
    /* what the journal says was done before (a resumed batch) */
    int resumed;
    uint64_t r_batch;
    int64_t r_count;
    uint64_t r_hash;
    struct bp_idset r_final, r_failed;
    int64_t r_bad;
    struct bp_req req; /* --require (req.n 0: none) */
};

/* Ventilator journal records (docs/journal.md). */
static const char VJ_MAGIC[BP_JOURNAL_MAGIC_LEN] = {'b', 'p', 'v', 'j', 'r', 'n', '1', '\n'};
enum { VJ_BATCH = 'B', VJ_INPUT = 'I', VJ_FINAL = 'F' };
#define VJ_FIN_REC 9
#define VJ_FIN_MAX ((size_t)64 * 1024 / VJ_FIN_REC * VJ_FIN_REC)

static uint64_t hash_record(uint64_t h, const void *rec, size_t len)
{
    uint8_t l[4];
    bp_put_be32(l, (uint32_t)len);
    return bp_fnv64(bp_fnv64(h, l, sizeof l), rec, len);
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
    int rc = bp_reader_init(&v->rd, v->in, v->o->nul, (size_t)v->o->max_msg);
    v->rd.skip_empty = v->o->skip_empty;
    v->rd_open = rc == BP_OK;
    return rc;
}

/* ---- the journal ---- */

static void journal_drop(struct vent *v, const char *what)
{
    bp_log(BP_LOG_ERROR,
           "journal %s: %s failed (%s): going on without it; a resume would "
           "run the tasks done from here on again",
           v->jpath, what, strerror(errno));
    bp_journal_close(&v->j, 0);
}

static void jfin_put(struct vent *v)
{
    if (v->j && v->jfin_len && bp_journal_put(v->j, VJ_FINAL, v->jfin, v->jfin_len) != BP_OK)
        journal_drop(v, "queueing a record");
    v->jfin_len = 0;
}

/* The dispatcher's on_final: a task's result reached the sink. */
static void on_final(void *arg, uint64_t id, int ok)
{
    struct vent *v = arg;
    if (!v->j)
        return;
    if (v->jfin_len + VJ_FIN_REC > VJ_FIN_MAX)
        jfin_put(v);
    bp_put_be64(v->jfin + v->jfin_len, id);
    v->jfin[v->jfin_len + 8] = (uint8_t)(ok == 1 ? 1 : ok == 2 ? 2 : 0); /* docs/journal.md */
    v->jfin_len += VJ_FIN_REC;
}

/* Writes what this turn added to the journal; syncs as --sync says.
 * Losing what was not synced only makes a resume run those tasks again
 * (the sink keeps the first result), so nothing waits for the disk. */
static void journal_turn(struct vent *v, int64_t now, int force_sync)
{
    if (!v->j)
        return;
    /* (a resumed batch re-reads what the journal has: nothing new to say
     * until it reads past that) */
    if (v->in_count > v->j_count) {
        uint8_t b[16];
        bp_put_be64(b, (uint64_t)v->in_count);
        bp_put_be64(b + 8, v->in_hash);
        if (bp_journal_put(v->j, VJ_INPUT, b, sizeof b) != BP_OK) {
            journal_drop(v, "queueing a record");
            return;
        }
        v->j_count = v->in_count;
    }
    jfin_put(v);
    if (!v->j)
        return;
    if (bp_journal_pending(v->j)) {
        v->j_unsynced = 1;
        if (bp_journal_flush(v->j, 0) != BP_OK) {
            journal_drop(v, "writing");
            return;
        }
    }
    int mode = v->o->sync;
    if (!v->j_unsynced || mode == BP_SYNC_NONE)
        return;
    if (mode == BP_SYNC_ALWAYS || force_sync || now >= v->j_next_sync) {
        if (bp_journal_flush(v->j, 1) != BP_OK) {
            journal_drop(v, "syncing");
            return;
        }
        v->j_unsynced = 0;
        v->j_next_sync = now + v->o->sync_ms;
    }
}

/* When journal_turn() must run again to sync (INT64_MAX: not needed). */
static int64_t journal_deadline(const struct vent *v)
{
    if (!v->j || !v->j_unsynced || v->o->sync != BP_SYNC_INTERVAL)
        return INT64_MAX;
    return v->j_next_sync;
}

static int vj_record(void *arg, uint8_t type, const uint8_t *p, size_t len)
{
    struct vent *v = arg;
    switch (type) {
    case VJ_BATCH:
        if (len < 8 || v->r_batch)
            return BP_EPROTO;
        v->r_batch = bp_get_be64(p);
        return v->r_batch ? BP_OK : BP_EPROTO;
    case VJ_INPUT:
        if (len != 16 || (int64_t)bp_get_be64(p) < v->r_count)
            return BP_EPROTO;
        v->r_count = (int64_t)bp_get_be64(p);
        v->r_hash = bp_get_be64(p + 8);
        return BP_OK;
    case VJ_FINAL:
        if (len % VJ_FIN_REC)
            return BP_EPROTO;
        for (size_t i = 0; i < len; i += VJ_FIN_REC) {
            uint64_t id = bp_get_be64(p + i);
            /* Finals come after the input record that took their task. */
            if (id >= (uint64_t)v->r_count || bp_idset_add(&v->r_final, id) < 0 ||
                (!p[i + 8] && bp_idset_add(&v->r_failed, id) < 0)) {
                v->r_bad++;
                continue;
            }
        }
        return BP_OK;
    default:
        return BP_EPROTO;
    }
}

/* Reads the input's first count records again: the same file gives the
 * same hash. Returns BP_OK or BP_EUSAGE with the reason logged. */
static int check_input(struct vent *v, int64_t count, uint64_t want)
{
    const struct bp_opts *o = v->o;
    FILE *f = fopen(o->input, "rb");
    if (!f) {
        bp_log(BP_LOG_ERROR, "cannot read %s: %s", o->input, strerror(errno));
        return BP_EIO;
    }
    struct bp_reader r;
    if (bp_reader_init(&r, f, o->nul, (size_t)o->max_msg) != BP_OK) {
        fclose(f);
        return BP_ENOMEM;
    }
    r.skip_empty = o->skip_empty;
    uint64_t h = BP_FNV64_INIT;
    int64_t n = 0;
    int rc = BP_OK;
    while (n < count) {
        const char *rec;
        size_t len;
        rc = bp_reader_next(&r, &rec, &len);
        if (rc == BP_ETOOBIG)
            continue; /* skipped on every run alike */
        if (rc != BP_OK)
            break;
        h = hash_record(h, rec, len);
        n++;
    }
    bp_reader_free(&r);
    fclose(f);
    if (rc == BP_EIO) {
        bp_log(BP_LOG_ERROR, "cannot read %s: %s", o->input, strerror(errno));
        return BP_EIO;
    }
    if (n < count || h != want) {
        bp_log(BP_LOG_ERROR,
               "%s is not the input of the batch in journal %s (%s its first %" PRId64
               " tasks): refusing to resume; remove the journal to start a new batch",
               o->input, v->jpath, n < count ? "it is shorter than" : "it differs in", count);
        return BP_EUSAGE;
    }
    return BP_OK;
}

/* Opens the journal: continues the batch in it (--resume) or starts a
 * new one. Sets *batch. Returns BP_OK or an error (logged). */
static int journal_open(struct vent *v, uint64_t *batch)
{
    const struct bp_opts *o = v->o;
    if (bp_journal_path(v->jpath, sizeof v->jpath, o->journal, o->input, ".vjournal") != BP_OK)
        return BP_EUSAGE;
    v->jfin = malloc(VJ_FIN_MAX);
    if (!v->jfin)
        return BP_ENOMEM;
    char err[1200];
    struct bp_journal_scan sc;
    int rc = bp_journal_scan(v->jpath, VJ_MAGIC, vj_record, v, &sc, err, sizeof err);
    int64_t keep = -1;
    if (rc == BP_EIO && errno == ENOENT) {
        /* no journal yet: a new batch */
    } else if (rc != BP_OK) {
        if (rc == BP_EPROTO && !err[0])
            snprintf(err, sizeof err,
                     "journal %s: a record makes no sense (%" PRId64
                     " read before it): not a ventilator journal of this version?",
                     v->jpath, sc.records);
        bp_log(BP_LOG_ERROR, "%s", err);
        return rc == BP_ENOMEM ? rc : BP_EUSAGE;
    } else if (!v->r_batch && sc.tail == BP_JT_CORRUPT) {
        bp_log(BP_LOG_ERROR,
               "journal %s is damaged before its batch record: refusing to "
               "resume (remove it to start a new batch)",
               v->jpath);
        return BP_EUSAGE;
    } else if (v->r_batch) {
        if (!o->resume) {
            bp_log(BP_LOG_ERROR,
                   "journal %s holds batch %016" PRIx64 ": continue it with --resume, or "
                   "remove the file to start a new batch",
                   v->jpath, v->r_batch);
            return BP_EUSAGE;
        }
        if (sc.tail == BP_JT_TORN)
            bp_log(BP_LOG_WARN,
                   "journal %s: the last record is torn (%" PRId64
                   " bytes cut): its tasks run again",
                   v->jpath, sc.size - sc.valid_end);
        else if (sc.tail == BP_JT_CORRUPT)
            bp_log(BP_LOG_WARN,
                   "journal %s: damaged record at byte %" PRId64 ", the %" PRId64
                   " bytes from there are dropped: those tasks run again",
                   v->jpath, sc.valid_end, sc.size - sc.valid_end);
        if (v->r_bad)
            bp_log(BP_LOG_WARN,
                   "journal %s: %" PRId64 " records name tasks it never read: "
                   "ignored",
                   v->jpath, v->r_bad);
        rc = check_input(v, v->r_count, v->r_hash);
        if (rc != BP_OK)
            return rc;
        keep = sc.valid_end;
        v->resumed = 1;
    }
    /* (a journal with no batch record yet, e.g. killed right after
     * creating it, is started anew) */
    v->j = bp_journal_open(v->jpath, VJ_MAGIC, keep, err, sizeof err);
    if (!v->j) {
        bp_log(BP_LOG_ERROR, "%s", err);
        return BP_EIO;
    }
    if (v->resumed) {
        *batch = v->r_batch;
        v->j_count = v->r_count; /* re-read up to here, same hash */
        return BP_OK;
    }
    uint8_t b[8];
    bp_put_be64(b, *batch);
    if (bp_journal_put(v->j, VJ_BATCH, b, sizeof b) != BP_OK ||
        bp_journal_flush(v->j, 1) != BP_OK) {
        bp_log(BP_LOG_ERROR, "cannot write journal %s: %s", v->jpath, strerror(errno));
        return BP_EIO;
    }
    return BP_OK;
}

/* Without --journal/--resume: a journal at the default path (FILE.vjournal,
 * which --resume makes) holds an unfinished batch of this input. A new
 * batch beside it would leave it behind: refused. */
static int refuse_unfinished(const struct bp_opts *o)
{
    if (!o->input || !strcmp(o->input, "-"))
        return BP_OK; /* (no default journal without an input file) */
    char what[1200];
    snprintf(what, sizeof what, "of %s", o->input);
    return bp_journal_refuse_unfinished(o->input, ".vjournal", VJ_MAGIC, what);
}

/* Takes one input record into the batch: a task, or (resumed) an id
 * whose result the journal says reached the sink already. */
/* A --files record: the task carries the file's descriptor; a path that
 * cannot be read is a task that fails at once, with one line here. */
static int take_file(struct vent *v, const char *rec, size_t len)
{
    const uint8_t *desc;
    size_t dlen;
    int err;
    if (bp_vfiles_describe(v->vf, rec, len, &desc, &dlen, &err) == BP_OK)
        return bp_dispatch_add(v->d, desc, dlen, NULL);
    char show[256];
    bp_printable(show, sizeof show, rec, len);
    bp_log(BP_LOG_WARN, "task %" PRId64 ": cannot read '%s': %s (the task fails)", v->in_count,
           show, strerror(err));
    return bp_dispatch_add_unreadable(v->d, rec, len, err, NULL);
}

static int take_record(struct vent *v, const char *rec, size_t len)
{
    uint64_t id = (uint64_t)v->in_count;
    int rc;
    if (v->resumed && v->in_count < v->r_count && bp_idset_has(&v->r_final, id))
        rc = bp_dispatch_add_final(v->d, !bp_idset_has(&v->r_failed, id), NULL);
    else if (v->o->files)
        rc = take_file(v, rec, len);
    else
        rc = bp_dispatch_add(v->d, rec, len, NULL);
    if (rc == BP_OK) {
        /* The hash only goes into the journal: without one, hashing every
         * record would be a tenth of the ventilator's work per task. */
        if (v->j)
            v->in_hash = hash_record(v->in_hash, rec, len);
        v->in_count++;
    }
    return rc;
}

static void vent_close(struct vent *v)
{
    if (v->mon && v->tasks)
        zmq_socket_monitor(v->tasks, NULL, 0);
    bp_sock_close(&v->mon);
    free(v->fds);
    v->fds = NULL;
    bp_dispatch_destroy(&v->d);
    bp_vfiles_destroy(&v->vf);
    bp_pack_free(&v->cpk);
    bp_sock_close(&v->tasks);
    bp_sock_close(&v->sink);
    bp_role_sec_close(&v->sec);
    if (v->own_ctx && v->ctx)
        zmq_ctx_term(v->ctx);
    if (v->rd_open)
        bp_reader_free(&v->rd);
    if (v->own_in && v->in)
        fclose(v->in);
    bp_journal_close(&v->j, 0);
    free(v->jfin);
    v->jfin = NULL;
    bp_idset_free(&v->r_final);
    bp_idset_free(&v->r_failed);
}

/* Whether reading a record now would not block on a slow pipe or tty. */
static int input_ready(const struct bp_reader *r)
{
    if (r->fd < 0 || r->in_pos < r->in_len || r->eof)
        return 1;
    struct pollfd p = {.fd = r->fd, .events = POLLIN};
    return poll(&p, 1, 0) > 0;
}

/* Reads the next record; BP_EXIT_INFO at the end. Oversized records are
 * skipped and counted here. */
static int next_record(struct vent *v, struct bp_report *rep, const char **rec, size_t *len)
{
    for (;;) {
        int rc = bp_reader_next(&v->rd, rec, len);
        if (rc != BP_ETOOBIG)
            return rc;
        rep->rejected++;
        bp_log(BP_LOG_ERROR, "record %" PRId64 " is longer than %" PRId64 " bytes: skipped",
               v->rd.record, v->o->max_msg);
    }
}

/* ---- raw mode: the tutorial's PUSH, no ids, no acknowledgement ---- */

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
    if (zmq_socket_monitor(v->tasks, ep, ZMQ_EVENT_HANDSHAKE_SUCCEEDED | ZMQ_EVENT_DISCONNECTED)) {
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

static int raw_wait_workers(struct vent *v)
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

static int run_raw(struct vent *v, struct bp_report *rep)
{
    const struct bp_opts *o = v->o;
    int stall = o->wait_timeout_ms ? o->wait_timeout_ms : -1;
    if (o->wait_workers > 0) {
        int rc = raw_wait_workers(v);
        if (rc != BP_OK)
            return rc;
    }
    for (;;) {
        const char *rec;
        size_t len;
        int rc = next_record(v, rep, &rec, &len);
        if (rc == BP_EXIT_INFO)
            return BP_OK;
        if (rc != BP_OK) {
            bp_log(BP_LOG_ERROR, "reading input failed after record %" PRId64 ": %s", v->rd.record,
                   strerror(errno));
            return rc;
        }
        for (;;) {
            rc = bp_send_raw(v->tasks, rec, len, ZMQ_DONTWAIT);
            if (rc != BP_ETIMEDOUT)
                break;
            rc = bp_role_wait_out(v->tasks, v->io, stall);
            if (rc == BP_ETIMEDOUT)
                bp_log(BP_LOG_ERROR, "no worker took a task for %.1f s (%" PRId64 " sent)",
                       (double)stall / 1000.0, rep->sent);
            if (rc != BP_OK)
                break;
        }
        if (rc != BP_OK) {
            if (rc == BP_EZMQ)
                bp_log(BP_LOG_ERROR, "sending task failed: %s", zmq_strerror(errno));
            return rc;
        }
        rep->sent++;
        if (bp_role_stopped(v->io))
            return BP_EINTR;
    }
}

/* ---- v2: acknowledged, credit-based ---- */

/* Each worker's HELLO (bp_dispatch cfg.match): its labels against
 * --require (none: all match); -v shows them. */
static int match_require(void *arg, const char *wid, const void *labels, size_t len)
{
    const struct vent *v = arg;
    int ok = bp_req_match(&v->req, labels, len);
    char show[BP_LABELS_MAX + 64], id[BP_ID_MAX * 4 + 1];
    bp_printable(id, sizeof id, wid, strlen(wid));
    bp_log(BP_LOG_DEBUG, "worker %s: labels %s%s", id,
           bp_labels_format(labels, len, show, sizeof show),
           ok ? "" : " (no match for --require: no task for it)");
    return ok;
}

/* For a run with no matching worker: what the connected ones are. */
static void log_labels(void *arg, const char *wid, const void *labels, size_t len, int match)
{
    int *n = arg;
    char show[BP_LABELS_MAX + 64], id[BP_ID_MAX * 4 + 1];
    if (match || ++*n > 8)
        return;
    bp_printable(id, sizeof id, wid, strlen(wid));
    bp_log(BP_LOG_ERROR, "  worker %s: %s", id, bp_labels_format(labels, len, show, sizeof show));
}

static void log_worker(void *arg, const char *wid, int64_t out, int64_t done)
{
    (void)arg;
    char show[BP_ID_MAX * 4 + 1];
    bp_printable(show, sizeof show, wid, strlen(wid));
    bp_log(BP_LOG_DEBUG, "  worker %-24s %6" PRId64 " out %8" PRId64 " done", show, out, done);
}

/* Sends what the dispatcher has to say. Returns 1 if a sink message is
 * waiting for the sink to become writable. */
static int drain_out(struct vent *v, int64_t now)
{
    struct bp_out out;
    for (int n = 0; n < 100000; n++) {
        int mask = BP_TO_WORKER | (v->sink && bp_sock_writable(v->sink) ? BP_TO_SINK : 0);
        if (!bp_dispatch_peek(v->d, now, mask, &out))
            break;
        int rc;
        if (out.dest == BP_TO_SINK)
            rc = bp_send_raw(v->sink, out.data, out.len, ZMQ_DONTWAIT);
        else
            rc = bp_send_to(v->tasks, out.rid, out.rid_len, out.data, out.len, ZMQ_DONTWAIT);
        if (rc == BP_OK) {
            bp_dispatch_commit(v->d, now);
            continue;
        }
        if (rc == BP_EIO && out.dest == BP_TO_WORKER) {
            bp_dispatch_worker_gone(v->d, out.rid, out.rid_len, now);
            continue;
        }
        if (rc != BP_ETIMEDOUT && rc != BP_EINTR)
            bp_log(BP_LOG_WARN, "cannot send to %s: %s",
                   out.dest == BP_TO_SINK ? "the sink" : "a worker", zmq_strerror(errno));
        break;
    }
    return v->sink && !bp_sock_writable(v->sink) && bp_dispatch_peek(v->d, now, BP_TO_SINK, &out);
}

/* Answers the workers' FETCH requests, a CHUNK each, read from disk now.
 * A CHUNK that cannot be sent is dropped: its worker asks again. */
static void serve_fetches(struct vent *v)
{
    struct bp_fetch_req r;
    while (bp_dispatch_next_fetch(v->d, &r)) {
        int st = v->vf ? bp_vfiles_chunk(v->vf, &r, v->batch, &v->cpk) : -1;
        if (st < 0)
            continue;
        if (st == BP_CK_CHANGED || st == BP_CK_ERROR)
            bp_log(BP_LOG_WARN, "%s %" PRIu64 ": %s", r.f.kind == BP_FK_BASE ? "base file" : "task",
                   r.f.id,
                   st == BP_CK_CHANGED ? "the file changed since it was read: not shipped"
                                       : "the file cannot be read any more");
        (void)bp_send_to(v->tasks, r.rid, r.rid_len, v->cpk.p, v->cpk.len, ZMQ_DONTWAIT);
    }
}

static void read_workers(struct vent *v, int64_t now)
{
    zmq_msg_t rid, msg;
    zmq_msg_init(&rid);
    zmq_msg_init(&msg);
    for (int n = 0; n < READ_BURST; n++) {
        int rc = bp_recv_from(v->tasks, &rid, &msg, ZMQ_DONTWAIT);
        if (rc == BP_ETIMEDOUT || rc == BP_EINTR)
            break;
        if (rc == BP_EZMQ) {
            bp_log(BP_LOG_ERROR, "receiving from workers failed: %s", zmq_strerror(errno));
            break;
        }
        /* A message of more than one frame (e.g. a v1 peer's) is handed on
         * as an empty one, so the dispatcher counts it as malformed. */
        rc = bp_dispatch_on_worker(v->d, zmq_msg_data(&rid), zmq_msg_size(&rid),
                                   rc == BP_OK ? zmq_msg_data(&msg) : "",
                                   rc == BP_OK ? zmq_msg_size(&msg) : 0, now);
        if (rc != BP_OK) {
            struct bp_dispatch_stats s;
            bp_dispatch_stats(v->d, &s);
            bp_role_note_malformed(s.malformed, rc, " from a worker",
                                   rc == BP_EVERSION ? ": a boardpipe of another protocol version?"
                                                     : NULL);
        }
    }
    zmq_msg_close(&rid);
    zmq_msg_close(&msg);
    serve_fetches(v);
}

static void read_sink(struct vent *v, int64_t now)
{
    zmq_msg_t msg;
    zmq_msg_init(&msg);
    for (int n = 0; n < READ_BURST; n++) {
        int rc = bp_recv_raw(v->sink, &msg, ZMQ_DONTWAIT);
        if (rc == BP_ETIMEDOUT || rc == BP_EINTR)
            break;
        if (rc == BP_OK)
            rc = bp_dispatch_on_sink(v->d, zmq_msg_data(&msg), zmq_msg_size(&msg), now);
        if (rc == BP_EVERSION)
            bp_log(BP_LOG_ERROR, "the sink speaks another protocol version");
        if (rc == BP_EZMQ)
            break;
    }
    zmq_msg_close(&msg);
}

static void progress(struct vent *v, int64_t now, int64_t *next_draw)
{
    if (now < *next_draw)
        return;
    struct bp_dispatch_stats s;
    bp_dispatch_stats(v->d, &s);
    char line[128];
    snprintf(line, sizeof line,
             "%" PRId64 "%s tasks, %" PRId64 " done, %" PRId64 " out, %d worker%s", s.added,
             s.input_done ? "" : "+", s.ok + s.failed, s.out + s.done_wait, s.workers,
             s.workers == 1 ? "" : "s");
    bp_role_progress_line(line);
    *next_draw = now + 250;
}

/* With --require: the workers connected that do not match, and why not. */
static void no_match_note(struct vent *v)
{
    int n = 0;
    if (!v->o->require || !v->d)
        return;
    bp_log(BP_LOG_ERROR, "--require %s: the connected workers that do not match:", v->o->require);
    bp_dispatch_each_labels(v->d, log_labels, &n);
    if (n == 0)
        bp_log(BP_LOG_ERROR, "  (none connected)");
    else if (n > 8)
        bp_log(BP_LOG_ERROR, "  (and %d more)", n - 8);
}

/* Says what the batch policy noted. */
static void log_notes(struct vent *v, struct bp_vbatch *b)
{
    const struct bp_opts *o = v->o;
    double wait_s = (double)o->wait_timeout_ms / 1000.0;
    for (int i = 0; i < b->nnotes; i++) {
        const struct bp_vb_note_rec *n = &b->notes[i];
        switch (n->what) {
        case BP_VB_STOPPING:
            bp_log(BP_LOG_WARN, "stopping with %" PRId64 " of %" PRId64 " tasks not done", n->a,
                   n->b);
            break;
        case BP_VB_CONNECTED:
            bp_log(BP_LOG_INFO, "%d worker%s connected", (int)n->a, n->a == 1 ? "" : "s");
            break;
        case BP_VB_WAITING:
            bp_log(BP_LOG_INFO, "%d of %d workers connected", (int)n->a, (int)n->b);
            break;
        case BP_VB_NO_WORKERS:
            bp_log(BP_LOG_ERROR, "only %d of %d workers%s connected after %.1f s", (int)n->a,
                   (int)n->b, o->require ? " matching --require" : "", wait_s);
            no_match_note(v);
            break;
        case BP_VB_NO_SINK:
            bp_log(BP_LOG_ERROR, "sink at %s not reachable after %.1f s", o->sink, wait_s);
            break;
        case BP_VB_NO_WORKER_NOW:
            bp_log(BP_LOG_ERROR, "no worker%s for %.1f s with %" PRId64 " tasks waiting: giving up",
                   o->require ? " matching --require" : "", wait_s, n->a);
            no_match_note(v);
            break;
        case BP_VB_HALTED:
            bp_log(BP_LOG_ERROR, "%s: %" PRId64 " tasks waiting are not run%s", b->why, n->a,
                   n->b ? ", those running are stopped" : "");
            break;
        case BP_VB_UNCONFIRMED:
            bp_log(BP_LOG_WARN, "the sink acknowledged every result but did not confirm the batch");
            break;
        default:
            break;
        }
    }
    b->nnotes = 0;
}

/* Input is read only as fast as workers take it, and only what is there
 * now: memory stays bounded by the dispatcher's window, whatever the
 * file's size, and a slow pipe never blocks the loop. */
static void read_input(struct vent *v, struct bp_vbatch *b, struct bp_report *rep, int64_t now)
{
    while (bp_vbatch_may_read(b) && bp_dispatch_want_input(v->d) && input_ready(&v->rd)) {
        const char *rec;
        size_t len;
        int rc = next_record(v, rep, &rec, &len);
        if (rc == BP_EXIT_INFO) {
            bp_vbatch_input_end(b, v->d, now, rc, 0);
            return;
        }
        if (rc != BP_OK) {
            bp_log(BP_LOG_ERROR, "reading input failed after record %" PRId64 ": %s", v->rd.record,
                   strerror(errno));
            bp_vbatch_input_end(b, v->d, now, BP_EIO, 0);
            return;
        }
        rc = take_record(v, rec, len);
        if (rc != BP_OK) {
            bp_log(BP_LOG_ERROR, "cannot hold task %" PRId64 ": %s", v->rd.record, bp_strerror(rc));
            bp_vbatch_input_end(b, v->d, now, rc, 1);
            return;
        }
    }
}

/* Sleeps until a message, input or a deadline (the dispatcher's, the
 * policy's, the journal's sync) needs the loop. */
static int wait_io(struct vent *v, const struct bp_vbatch *b, int64_t now, int sink_wait, int draw)
{
    zmq_pollitem_t it[3];
    int n = 0;
    it[n++] = (zmq_pollitem_t){.socket = v->tasks, .events = ZMQ_POLLIN};
    if (v->sink)
        it[n++] = (zmq_pollitem_t){.socket = v->sink,
                                   .events = (short)(ZMQ_POLLIN | (sink_wait ? ZMQ_POLLOUT : 0))};
    int want_in = bp_vbatch_may_read(b) && bp_dispatch_want_input(v->d);
    if (want_in && v->rd.fd >= 0)
        it[n++] = (zmq_pollitem_t){.fd = v->rd.fd, .events = ZMQ_POLLIN};
    int64_t wake = bp_dispatch_next_deadline(v->d);
    if (journal_deadline(v) < wake)
        wake = journal_deadline(v);
    if (bp_vbatch_next_deadline(b) < wake)
        wake = bp_vbatch_next_deadline(b);
    long tmo = bp_role_timeout(now, wake, draw ? 250 : 1000);
    if (tmo == 0 && sink_wait)
        tmo = 50; /* the due message is for a sink that is not there yet */
    if (want_in && v->rd.fd < 0)
        tmo = 0;
    if (zmq_poll(it, n, tmo) < 0 && errno != EINTR) {
        bp_log(BP_LOG_ERROR, "poll failed: %s", zmq_strerror(errno));
        return BP_EZMQ;
    }
    return BP_OK;
}

/* The run's counts and exit code, from the dispatcher. */
static int run_report(struct vent *v, const struct bp_vbatch *b, struct bp_report *rep)
{
    struct bp_dispatch_stats s;
    bp_dispatch_stats(v->d, &s);
    rep->sent = s.added;
    rep->total = s.added;
    rep->ok = s.ok;
    rep->failed = s.failed;
    rep->lost = s.lost;
    rep->redelivered = s.redelivered;
    rep->retried = s.retried;
    rep->speculated = s.speculated;
    rep->spec_won = s.spec_won;
    rep->cancelled = s.cancelled;
    rep->missing = s.added - s.ok - s.failed;
    rep->malformed = s.malformed;
    rep->workers = s.workers_seen;
    rep->halted = s.halted;
    rep->unreadable = s.unreadable;
    if (v->vf && bp_log_enabled(BP_LOG_DEBUG)) {
        struct bp_vfiles_stats fs;
        bp_vfiles_stats(v->vf, &fs);
        bp_log(BP_LOG_DEBUG,
               "files: %" PRId64 " shipped (%" PRId64 " bytes), %" PRId64
               " base files sent, %" PRId64 " unreadable, %" PRId64 " changed while shipped",
               fs.files, fs.bytes, fs.base_sent, s.unreadable, fs.changed);
    }
    if (bp_log_enabled(BP_LOG_DEBUG)) {
        bp_dispatch_each_worker(v->d, log_worker, NULL);
        bp_log(BP_LOG_DEBUG,
               "%" PRId64 " stale, %" PRId64 " malformed, %" PRId64 " refused messages; %" PRId64
               " handed back; sink %s",
               s.stale, s.malformed, s.refused, s.handed_back,
               s.complete     ? "confirmed the batch"
               : s.sink_alive ? "alive"
                              : "silent");
    }
    int result = b->result;
    if (result == BP_OK && b->halted && !rep->missing)
        result = BP_EHALTED;
    if (result == BP_OK && rep->missing)
        result = BP_EINCOMPLETE;
    if (result == BP_OK && (rep->failed || rep->rejected))
        result = BP_EFAILED;
    return result;
}

/* The acknowledged, credit-based channel (wire v2): the dispatcher
 * decides who gets what, the batch policy decides when; this loop moves
 * bytes between them, the sockets, the input and the journal. */
static int run_acked(struct vent *v, struct bp_report *rep)
{
    const struct bp_opts *o = v->o;
    struct bp_vbatch b;
    struct bp_vbatch_cfg bc = {.wait_workers = o->wait_workers,
                               .wait_timeout_ms = o->wait_timeout_ms,
                               .use_sink = v->sink != NULL,
                               .resumable = v->j != NULL,
                               .halt_when = o->halt_when,
                               .halt_fail = o->halt_fail,
                               .halt_pct = o->halt_pct,
                               .complete_wait_ms = COMPLETE_WAIT_MS,
                               .stop_wait_ms = 1000};
    bp_vbatch_init(&b, &bc, bp_now_ms());
    int64_t next_draw = 0;
    int draw = bp_role_progress(o);
    if (b.waiting)
        bp_log(BP_LOG_INFO, "waiting for %d worker%s on %s", o->wait_workers,
               o->wait_workers == 1 ? "" : "s", o->bind);
    for (;;) {
        int64_t now = bp_now_ms();
        if (bp_role_stopped(v->io))
            bp_vbatch_stop(&b, v->d, now);
        int rc = bp_vbatch_before(&b, v->d, now);
        log_notes(v, &b);
        if (rc != BP_OK)
            return rc;
        read_input(v, &b, rep, now);
        bp_dispatch_on_timer(v->d, now);
        bp_vbatch_after(&b, v->d, now);
        log_notes(v, &b);
        int sink_wait = drain_out(v, now);
        if (bp_vbatch_over(&b, v->d, now))
            break;
        if (draw)
            progress(v, now, &next_draw);
        journal_turn(v, now, 0);
        if (wait_io(v, &b, now, sink_wait, draw) != BP_OK)
            return BP_EZMQ;
        now = bp_now_ms();
        read_workers(v, now);
        if (v->sink)
            read_sink(v, now);
    }
    if (draw)
        bp_role_progress_line(NULL);
    return run_report(v, &b, rep);
}

static int open_sockets(struct vent *v)
{
    const struct bp_opts *o = v->o;
    char err[320];
    int rc = bp_role_sec_open(&v->sec, o, v->ctx, v->io);
    if (rc != BP_OK)
        return rc;
    struct bp_sockcfg c = bp_role_sockcfg(o);
    bp_role_sec_server(&v->sec, &c);
    if (o->raw) {
        c.sndhwm = 1000;
        /* Send-only: a peer that sends anyway is cut off (MAXMSGSIZE) and
         * can queue next to nothing (RCVHWM). */
        c.max_msg = 64;
        c.rcvhwm = 1;
        v->tasks = bp_sock_new(v->ctx, ZMQ_PUSH, &c, err, sizeof err);
        /* The monitor must watch before the bind: a worker that is already
         * retrying would otherwise connect unseen and never be counted. */
        if (v->tasks && o->wait_workers > 0 && mon_open(v) != BP_OK)
            return BP_EZMQ;
        if (v->tasks && bp_sock_attach(&v->tasks, o->bind, 1, err, sizeof err) != BP_OK)
            v->tasks = NULL;
    } else {
        /* Worker messages are credits, ids and heartbeats: small. */
        c.max_msg = 64 * 1024 + 64;
        /* Credit bounds what is queued to each worker, not the HWM. */
        c.sndhwm = 0;
        /* Bounds what one connection can make us queue (plain mode; with
         * CURVE nobody unknown gets that far): 256 x 64 KiB. */
        c.rcvhwm = 256;
        c.router_mandatory = 1;
        c.linger_ms = o->linger_ms < 1000 ? o->linger_ms : 1000;
        v->tasks = bp_sock_open(v->ctx, ZMQ_ROUTER, o->bind, 1, &c, err, sizeof err);
    }
    if (!v->tasks) {
        bp_log(BP_LOG_ERROR, "%s", err);
        return BP_EZMQ;
    }
    char ep[BP_ENDPOINT_MAX];
    if (bp_sock_endpoint(v->tasks, ep, sizeof ep) == BP_OK)
        bp_log(BP_LOG_DEBUG, "tasks on %s", ep);
    if (!o->raw && o->sink) {
        struct bp_sockcfg sc = bp_role_sockcfg(o);
        /* The sink is the same host: it serves our own key. */
        bp_role_sec_client(&v->sec, &sc);
        /* Not ZMQ_IMMEDIATE: with it libzmq drops what a sink sent just
         * before it disconnected (its last ACKs and COMPLETE). Tasks wait
         * for the sink's first answer anyway (the dispatcher). */
        /* ACKs and heartbeats: an ACK pack held for the sink's journal
         * sync may hold up to BP_MAX_PENDING_ACKS (a bigger one would cut
         * the connection: the bench's journal run stalled on that). */
        sc.max_msg = (int64_t)BP_ACK_MSG_MAX + 64;
        /* Everything that matters was acknowledged before we close: what is
         * still queued for a sink that never came is not worth 10 s. */
        sc.linger_ms = o->linger_ms < 1000 ? o->linger_ms : 1000;
        v->sink = bp_sock_open(v->ctx, ZMQ_DEALER, o->sink, 0, &sc, err, sizeof err);
        if (!v->sink) {
            bp_log(BP_LOG_ERROR, "%s", err);
            return BP_EZMQ;
        }
    }
    return BP_OK;
}

/* A batch on the acknowledged channel: the journal (or a refusal to
 * start beside an unfinished one), the dispatcher, the run, and the
 * journal's end (removed once complete, kept for --resume otherwise). */
static int run_batch(struct vent *v, struct bp_report *rep, int64_t t0)
{
    const struct bp_opts *o = v->o;
    int rc;
    rep->batch = bp_role_batch_id();
    v->in_hash = BP_FNV64_INIT;
    bp_idset_init(&v->r_final);
    bp_idset_init(&v->r_failed);
    if (!o->journal && !o->resume && (rc = refuse_unfinished(o)) != BP_OK)
        return rc;
    if ((o->journal || o->resume) && (rc = journal_open(v, &rep->batch)) != BP_OK)
        return rc;
    if (v->resumed)
        bp_log(BP_LOG_INFO,
               "resuming batch %016" PRIx64 " from %s: %" PRId64 " tasks read before, %" PRId64
               " of them done",
               rep->batch, v->jpath, v->r_count, bp_idset_count(&v->r_final));
    struct bp_dispatch_cfg c;
    bp_dispatch_defaults(&c, rep->batch);
    v->batch = rep->batch;
    c.on_final = on_final;
    c.on_final_arg = v;
    c.hb_ivl_ms = o->hb_ms;
    c.liveness = o->liveness;
    c.max_attempts = o->max_attempts;
    c.retries = o->retries;
    c.task_deadline_ms = o->task_deadline_ms;
    c.ack_timeout_ms = o->ack_timeout_ms;
    bp_spec_defaults(&c.spec);
    c.match = match_require;
    c.match_arg = v;
    if (o->require) {
        char why[200];
        (void)bp_req_parse(o->require, &v->req, why, sizeof why); /* (checked by bp_opts) */
    }
    if (o->speculate) {
        char why[200];
        (void)bp_spec_parse(o->speculate, &c.spec, why, sizeof why); /* (checked by bp_opts) */
    }
    c.max_rec = (uint32_t)o->max_msg;
    c.use_sink = v->sink != NULL;
    c.max_workers = MAX_WORKERS;
    if (o->files || o->basefiles.n) {
        char err[PATH_MAX + 128];
        v->vf = bp_vfiles_new(&o->basefiles, err, sizeof err);
        if (!v->vf) {
            bp_log(BP_LOG_ERROR, "%s", err);
            return BP_EUSAGE;
        }
        bp_vfiles_base(v->vf, &c.base_body, &c.base_len, &c.base_n);
        c.task_flags = o->files ? BP_TF_FILE : 0;
        /* a descriptor holds the path twice (its name and the host path) */
        if (o->files && c.max_rec < 2 * PATH_MAX + BP_FDESC_FIXED)
            c.max_rec = 2 * PATH_MAX + BP_FDESC_FIXED;
    }
    if (c.max_bytes < (size_t)o->max_msg * 4)
        c.max_bytes = (size_t)o->max_msg * 4;
    v->d = bp_dispatch_new(&c, t0);
    if (!v->d) {
        bp_log(BP_LOG_ERROR, "cannot set up the dispatcher: out of memory");
        return BP_ENOMEM;
    }
    rc = run_acked(v, rep);
    if (!v->j)
        return rc;
    /* Complete (every task has its final result at the sink): the journal
     * has served. Otherwise it is what --resume needs. */
    journal_turn(v, bp_now_ms(), 1);
    if (rep->missing == 0 && (rc == BP_OK || rc == BP_EFAILED || rc == BP_EHALTED)) {
        if (bp_journal_close(&v->j, 1) != BP_OK)
            bp_log(BP_LOG_WARN, "cannot remove journal %s: %s", v->jpath, strerror(errno));
    } else if (v->j) {
        bp_log(BP_LOG_INFO, "batch %016" PRIx64 " kept in %s: run again with --resume to finish it",
               rep->batch, v->jpath);
    }
    return rc;
}

int bp_ventilator_run(const struct bp_opts *o, const struct bp_io *io, struct bp_report *rep)
{
    struct vent v = {.o = o, .io = io};
    struct bp_report dummy;
    int rc;
    if (!rep)
        rep = &dummy;
    memset(rep, 0, sizeof *rep);
    int64_t t0 = bp_now_ms();

    if ((rc = open_input(&v)) != BP_OK) {
        vent_close(&v);
        return rc;
    }
    if ((rc = bp_role_ctx(io, &v.ctx, &v.own_ctx)) != BP_OK || (rc = open_sockets(&v)) != BP_OK) {
        vent_close(&v);
        return rc;
    }
    if (o->raw) {
        rc = run_raw(&v, rep);
    } else {
        rc = run_batch(&v, rep, t0);
        if (!v.d) { /* it never started: the reason is said */
            vent_close(&v);
            return rc;
        }
    }
    rep->elapsed_s = (double)(bp_now_ms() - t0) / 1000.0;
    rep->refused = bp_zap_refused(v.sec.zap);
    if (rep->refused)
        bp_log(BP_LOG_WARN, "%" PRId64 " connections refused (CURVE: key not allowed)",
               rep->refused);
    if (o->raw)
        bp_log(BP_LOG_INFO, "sent %" PRId64 " tasks in %.3f s (raw: no delivery guarantee)",
               rep->sent, rep->elapsed_s);
    else
        bp_log(rc == BP_OK ? BP_LOG_INFO : BP_LOG_ERROR,
               "batch %016" PRIx64 ": %" PRId64 " tasks, %" PRId64 " ok, %" PRId64
               " failed (%" PRId64 " lost, %" PRId64 " halted), %" PRId64 " not done; %" PRId64
               " redelivered, %" PRId64 " retried, in %.3f s",
               rep->batch, rep->total, rep->ok, rep->failed, rep->lost, rep->halted, rep->missing,
               rep->redelivered, rep->retried, rep->elapsed_s);
    if (rep->speculated)
        bp_log(BP_LOG_INFO,
               "stragglers: %" PRId64 " run again on an idle worker, %" PRId64
               " of them finished first; %" PRId64 " attempts cancelled",
               rep->speculated, rep->spec_won, rep->cancelled);
    if (rep->rejected)
        bp_log(BP_LOG_ERROR, "%" PRId64 " input records rejected", rep->rejected);
    vent_close(&v);
    if (rc == BP_EINTR)
        return BP_OK; /* raw mode stopped by a signal: not an error */
    if (rc == BP_OK && rep->rejected)
        return BP_EFAILED;
    return rc;
}
