#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "bp_frame.h"
#include "bp_internal.h"
#include "bp_journal.h"
#include "bp_metrics.h"
#include "bp_role.h"
#include "bp_sock.h"
#include "bp_stats.h"
#include "bp_track.h"

#define MAX_FAIL_LINES 20
/* Acknowledgements held (BP_MAX_PENDING_ACKS, bp_frame.h) while the
 * ventilator is not known yet or the journal has not synced them; past
 * this they go out at once, or (no ventilator) are dropped: the ventilator
 * sends those tasks again and the sink acknowledges them then. */
#define READ_BURST 4096
/* Result ids are accepted only this far above the lowest id without a
 * final result: the ventilator never has more than 65 536 tasks out, and
 * a peer's made-up id must not decide how big the id bitmaps grow. */
#define ID_WINDOW ((uint64_t)1 << 20)

struct sink {
    /* (grouped by size: clang-tidy's padding check) */
    const struct bp_opts *o;
    const struct bp_io *io;
    void *ctx;
    void *sock; /* v2: ROUTER; raw: PULL */
    FILE *out;
    FILE *joblog; /* --joblog, or NULL */
    /* the ventilator of the current batch: vent[] below */
    size_t vent_len;
    int64_t vent_heard; /* its last message */
    int64_t forged;     /* control messages from others, dropped */
    /* --metrics-file */
    int64_t m_ok, m_failed;      /* results of batches finished before this one */
    int64_t m_last_n, m_last_ms; /* results counted at the last write, and when that moved */
    int64_t m_next;
    struct bp_role_sec sec;
    struct bp_pack acks;
    struct bp_pack reply;
    /* the current batch */
    uint64_t batch;
    int64_t total;
    int64_t last_activity;
    struct bp_stats st;
    struct bp_idset seen;   /* a final result is in */
    struct bp_idset failed; /* ... and it was a failure */
    struct bp_idset tried;  /* a failed try was retried */
    uint64_t low;           /* the lowest id without a final result */
    struct bp_reorder ro;
    int64_t dups, stale, malformed, fail_lines, retried, redelivered, recovered, lost, halted;
    int64_t acks_dropped;
    int64_t raw_count;
    /* the journal (--journal / --resume): see docs/journal.md */
    struct bp_journal *j;
    uint8_t *jf; /* this turn's accepted results, not yet journaled */
    size_t jf_len, jf_cap;
    int64_t next_sync;
    int own_ctx;
    int own_out;
    int progress;
    int m_failed_writes;
    int active;
    int end_seen;
    int io_error;
    int jf_dirty;  /* results accepted since the last commit */
    int unsynced;  /* written since the last fsync */
    int restoring; /* batch_start() from the journal: keep it */
    char jpath[1024];
    uint8_t vent[255];
};

/* Sink journal records (docs/journal.md). */
static const char SJ_MAGIC[BP_JOURNAL_MAGIC_LEN] = {'b', 'p', 's', 'j', 'r', 'n', '1', '\n'};
enum { SJ_BATCH = 'B', SJ_TOTAL = 'T', SJ_FINAL = 'F', SJ_WRITTEN = 'W' };
#define SJ_OK 0x01     /* the task's final result is ok */
#define SJ_HELD 0x02   /* --ordered: held, not written yet; its bytes follow */
#define SJ_HALTED 0x04 /* not run: the ventilator halted the batch */
#define SJ_FLUSH_AT ((size_t)1 << 20)

/* Unlocked stdio: only this thread ever touches k->out, and with
 * libzmq's threads running every locked call would take a real lock (a
 * fifth of the sink's work per small result). */
static int write_rec(struct sink *k, const void *data, size_t len)
{
    if (fwrite_unlocked(data, 1, len, k->out) != len ||
        putc_unlocked(k->o->nul ? '\0' : '\n', k->out) == EOF) {
        if (!k->io_error)
            bp_log(BP_LOG_ERROR, "cannot write results: %s", strerror(errno));
        k->io_error = 1;
        return BP_EIO;
    }
    return BP_OK;
}

static void journal_fail(struct sink *k, const char *what)
{
    /* Acknowledging what is not on record would let a resume lose it:
     * the sink stops rather than go on without its journal. */
    bp_log(BP_LOG_ERROR, "journal %s: %s failed: %s", k->jpath, what, strerror(errno));
    bp_journal_close(&k->j, 0);
    k->io_error = 1;
}

static void jf_reserve(struct sink *k, size_t more)
{
    if (k->jf_len + more <= k->jf_cap)
        return;
    size_t cap = k->jf_cap ? k->jf_cap : 4096;
    while (cap < k->jf_len + more)
        cap *= 2;
    uint8_t *p = realloc(k->jf, cap);
    if (!p) {
        errno = ENOMEM;
        journal_fail(k, "holding a record");
        return;
    }
    k->jf = p;
    k->jf_cap = cap;
}

static void jf_put(struct sink *k)
{
    if (k->j && k->jf_len && bp_journal_put(k->j, SJ_FINAL, k->jf, k->jf_len) != BP_OK)
        journal_fail(k, "queueing a record");
    k->jf_len = 0;
}

/* Notes an accepted final result for the journal: ok 1, failed 0, or -1
 * failed as halted (held: --ordered keeps its bytes in memory, so the
 * journal keeps them too). */
static void journal_result(struct sink *k, uint64_t id, int ok, int held, const void *data,
                           size_t len)
{
    if (!k->j)
        return;
    size_t need = 9 + (held ? 4 + len : 0);
    jf_reserve(k, need);
    if (!k->j)
        return;
    uint8_t *p = k->jf + k->jf_len;
    bp_put_be64(p, id);
    p[8] = (uint8_t)((ok > 0 ? SJ_OK : 0) | (held ? SJ_HELD : 0) | (ok < 0 ? SJ_HALTED : 0));
    if (held) {
        bp_put_be32(p + 9, (uint32_t)len);
        if (len)
            memcpy(p + 13, data, len);
    }
    k->jf_len += need;
    k->jf_dirty = 1;
    if (k->jf_len >= SJ_FLUSH_AT)
        jf_put(k);
}

static int fsync_out(struct sink *k)
{
    int fd = fileno(k->out);
    return fd >= 0 && fdatasync(fd) != 0 && errno != EINVAL ? -1 : 0;
}

/* Makes this turn's results part of the record: output flushed, then the
 * accepted ids and the output's length journaled (a turn counts only
 * once its W record is in), and both forced to disk when --sync says so
 * (sync_now: whatever the interval). Returns 1 when acknowledgements may
 * go out (what they acknowledge is as durable as --sync promises). */
static int journal_commit(struct sink *k, int64_t now, int sync_now)
{
    if (!k->j)
        return 1;
    if (k->jf_dirty) {
        if (fflush(k->out) != 0) {
            journal_fail(k, "writing the output");
            return 0;
        }
        jf_put(k);
        uint8_t w[16];
        off_t end = ftello(k->out);
        bp_put_be64(w, (uint64_t)(end < 0 ? 0 : end));
        bp_put_be64(w + 8, k->ro.next);
        if (!k->j || bp_journal_put(k->j, SJ_WRITTEN, w, sizeof w) != BP_OK) {
            if (k->j)
                journal_fail(k, "queueing a record");
            return 0;
        }
        k->jf_dirty = 0;
    }
    if (bp_journal_pending(k->j)) {
        if (bp_journal_flush(k->j, 0) != BP_OK) {
            journal_fail(k, "writing");
            return 0;
        }
        k->unsynced = 1;
    }
    if (!k->unsynced || k->o->sync == BP_SYNC_NONE)
        return 1;
    if (k->o->sync == BP_SYNC_INTERVAL && !sync_now && now < k->next_sync)
        return 0; /* the acknowledgements wait for the next sync */
    if (fsync_out(k) != 0) {
        journal_fail(k, "syncing the output");
        return 0;
    }
    if (bp_journal_flush(k->j, 1) != BP_OK) {
        journal_fail(k, "syncing");
        return 0;
    }
    k->unsynced = 0;
    k->next_sync = now + k->o->sync_ms;
    return 1;
}

/* Starts the journal of a new batch (the old one is replaced). */
static void journal_new_batch(struct sink *k, uint64_t batch)
{
    char err[1200];
    bp_journal_close(&k->j, 0);
    k->jf_len = 0;
    k->jf_dirty = 0;
    k->j = bp_journal_open(k->jpath, SJ_MAGIC, -1, err, sizeof err);
    if (!k->j) {
        bp_log(BP_LOG_ERROR, "%s", err);
        k->io_error = 1;
        return;
    }
    uint8_t b[9];
    bp_put_be64(b, batch);
    b[8] = k->o->ordered ? 1 : 0;
    if (bp_journal_put(k->j, SJ_BATCH, b, sizeof b) != BP_OK)
        journal_fail(k, "queueing a record");
    k->unsynced = 1;
}

static void batch_start(struct sink *k, uint64_t batch)
{
    k->active = 1;
    k->batch = batch;
    k->end_seen = 0;
    k->total = -1;
    k->dups = k->stale = k->fail_lines = 0;
    k->retried = k->redelivered = k->recovered = k->lost = k->halted = 0;
    k->low = 0;
    k->last_activity = bp_now_ms();
    k->vent_len = 0;
    k->acks.n = 0;
    /* The metrics' counters go on over batches. */
    k->m_ok += k->st.ok;
    k->m_failed += k->st.failed;
    bp_stats_free(&k->st);
    bp_stats_init(&k->st, k->last_activity);
    bp_idset_free(&k->seen);
    bp_idset_free(&k->failed);
    bp_idset_free(&k->tried);
    bp_reorder_free(&k->ro);
    bp_reorder_init(&k->ro);
    if (k->jpath[0] && !k->restoring)
        journal_new_batch(k, batch);
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
            "{\"batch\":\"%016" PRIx64 "\",\"total\":%" PRId64 ",\"delivered\":%" PRId64
            ",\"ok\":%" PRId64 ",\"failed\":%" PRId64 ",\"missing\":%" PRId64
            ",\"duplicates\":%" PRId64 ",\"redelivered\":%" PRId64 ",\"retried\":%" PRId64
            ",\"recovered\":%" PRId64 ",\"lost\":%" PRId64 ",\"halted\":%" PRId64
            ",\"stale\":%" PRId64 ",\"malformed\":%" PRId64 ",\"forged\":%" PRId64
            ",\"refused\":%" PRId64 ",\"elapsed_s\":%.6f,\"workers\":{",
            r->batch, r->total, r->ok + r->failed, r->ok, r->failed, r->missing, r->duplicates,
            r->redelivered, r->retried, r->recovered, r->lost, r->halted, r->stale, r->malformed,
            r->forged, r->refused, r->elapsed_s);
    for (int i = 0; i < k->st.nw; i++) {
        const struct bp_wstat *w = &k->st.w[i];
        int64_t n = w->ok + w->failed;
        if (i)
            putc(',', f);
        json_str(f, w->id);
        fprintf(f, ":{\"ok\":%" PRId64 ",\"failed\":%" PRId64 ",\"mean_ms\":%.3f}", w->ok,
                w->failed, n ? (double)w->ms / (double)n : 0.0);
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

static int send_to_vent(struct sink *k, struct bp_pack *p)
{
    if (!k->vent_len || bp_pack_finish(p) != BP_OK)
        return BP_EIO;
    int rc = bp_send_to(k->sock, k->vent, k->vent_len, p->p, p->len, ZMQ_DONTWAIT);
    if (rc == BP_EIO) {
        /* Its connection is gone: the next ventilator is adopted at once. */
        bp_log(BP_LOG_DEBUG, "the ventilator's connection is gone");
        k->vent_len = 0;
    } else if (rc != BP_OK && rc != BP_ETIMEDOUT) {
        bp_log(BP_LOG_DEBUG, "cannot reach the ventilator: %s", zmq_strerror(errno));
    }
    return rc;
}

static void flush_acks(struct sink *k)
{
    if (!k->acks.n || !k->vent_len)
        return;
    /* A lost ack costs a redelivery, which is acknowledged again. */
    send_to_vent(k, &k->acks);
    bp_pack_begin(&k->acks, BP_MSG_ACK, k->batch);
}

static void ack(struct sink *k, uint64_t id, uint16_t attempt, uint8_t kind)
{
    if (k->acks.n >= BP_MAX_PENDING_ACKS) {
        if (!k->vent_len) {
            k->acks_dropped++;
            return;
        }
        if (journal_commit(k, bp_now_ms(), 1))
            flush_acks(k);
    }
    if (k->acks.n == 0)
        bp_pack_begin(&k->acks, BP_MSG_ACK, k->batch);
    bp_pack_ack(&k->acks, id, attempt, kind);
    /* (with a journal, a full pack waits for the turn's commit) */
    if (k->acks.len >= BP_PACK_BYTES && !k->j)
        flush_acks(k);
}

/* --metrics-file: node_exporter's textfile format, at most once a second
 * (force: now). Counters run over the process's life; batch_* gauges are
 * the current (or last) batch's. */
static void write_metrics(struct sink *k, int force)
{
    const char *path = k->o->metrics_file;
    int64_t now = bp_now_ms();
    if (!path || (!force && now < k->m_next))
        return;
    k->m_next = now + 1000;
    int64_t ok = k->m_ok + k->st.ok + k->raw_count, failed = k->m_failed + k->st.failed;
    if (ok + failed != k->m_last_n) {
        k->m_last_n = ok + failed;
        k->m_last_ms = bp_wall_ms();
    }
    const struct bp_metric m[] = {
        {"boardpipe_sink_results_ok_total", "Tasks with an ok final result.", BP_COUNTER,
         (double)ok},
        {"boardpipe_sink_results_failed_total", "Tasks with a failed final result.", BP_COUNTER,
         (double)failed},
        {"boardpipe_sink_malformed_total", "Messages dropped as malformed or of another version.",
         BP_COUNTER, (double)k->malformed},
        {"boardpipe_sink_forged_total",
         "Control messages dropped because the sender may not speak for the ventilator.",
         BP_COUNTER, (double)k->forged},
        {"boardpipe_sink_refused_total", "Connections refused by CURVE authentication.", BP_COUNTER,
         (double)bp_zap_refused(k->sec.zap)},
        {"boardpipe_sink_batch_active", "1 while a batch runs.", BP_GAUGE, k->active ? 1.0 : 0.0},
        {"boardpipe_sink_batch_tasks", "Tasks in the batch (-1: not announced yet).", BP_GAUGE,
         (double)(k->end_seen ? k->total : -1)},
        {"boardpipe_sink_batch_results", "Tasks of the batch with a final result.", BP_GAUGE,
         (double)(k->st.ok + k->st.failed)},
        {"boardpipe_sink_batch_redelivered",
         "Tasks of the batch whose final result came from a later delivery.", BP_GAUGE,
         (double)k->redelivered},
        {"boardpipe_sink_batch_duplicates", "Results of the batch received twice, dropped.",
         BP_GAUGE, (double)k->dups},
        {"boardpipe_sink_batch_workers", "Workers that sent results in the batch.", BP_GAUGE,
         (double)k->st.nw},
        {"boardpipe_sink_last_result_timestamp_seconds",
         "When a result last arrived, seconds since the epoch (0: none yet).", BP_GAUGE,
         (double)k->m_last_ms / 1000.0},
    };
    char err[320];
    if (bp_metrics_write(path, NULL, NULL, m, sizeof m / sizeof m[0], err, sizeof err) != BP_OK) {
        if (!k->m_failed_writes++)
            bp_log(BP_LOG_WARN, "%s", err);
    } else {
        k->m_failed_writes = 0;
    }
}

/* Ends the current batch: flushes output, prints the summary, tells the
 * ventilator. Returns the batch's outcome. */
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
    if (journal_commit(k, now, 1))
        flush_acks(k);
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
    r.forged = k->forged;
    r.refused = bp_zap_refused(k->sec.zap);
    r.redelivered = k->redelivered;
    r.retried = k->retried;
    r.recovered = k->recovered;
    r.lost = k->lost;
    r.halted = k->halted;
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
    if (r.redelivered || r.retried || r.lost)
        bp_log(BP_LOG_INFO,
               "  %" PRId64 " redelivered (%" PRId64 " recovered after a loss), %" PRId64
               " failed tries retried, %" PRId64 " lost",
               r.redelivered, r.recovered, r.retried, r.lost);
    for (int i = 0; i < k->st.nw; i++) {
        const struct bp_wstat *w = &k->st.w[i];
        int64_t n = w->ok + w->failed;
        bp_log(BP_LOG_INFO, "  worker %-24s %8" PRId64 " ok %6" PRId64 " failed %9.1f ms/task",
               w->id, w->ok, w->failed, n ? (double)w->ms / (double)n : 0.0);
    }
    if (k->stale || k->malformed || r.forged || r.refused)
        bp_log(BP_LOG_WARN,
               "dropped %" PRId64 " results of other batches, %" PRId64
               " malformed messages, %" PRId64 " forged control messages; refused %" PRId64
               " connections (CURVE)",
               k->stale, k->malformed, r.forged, r.refused);
    if (!complete) {
        if (!k->end_seen)
            bp_log(BP_LOG_ERROR, "the ventilator never announced the batch size");
        else
            log_missing(k);
    } else if (k->vent_len) {
        bp_pack_begin(&k->reply, BP_MSG_COMPLETE, k->batch);
        bp_pack_u64(&k->reply, (uint64_t)r.ok);
        bp_pack_u64(&k->reply, (uint64_t)r.failed);
        send_to_vent(k, &k->reply);
    }
    write_json(k, &r);
    if (rep)
        *rep = r;
    k->active = 0;
    write_metrics(k, 1);
    if (k->j && complete) {
        /* Every result is written: nothing left to resume. */
        if (bp_journal_close(&k->j, 1) != BP_OK)
            bp_log(BP_LOG_WARN, "cannot remove journal %s: %s", k->jpath, strerror(errno));
    } else if (k->j) {
        bp_log(BP_LOG_INFO, "batch %016" PRIx64 " kept in %s: a sink with --resume continues it",
               k->batch, k->jpath);
    }
    if (!complete)
        return BP_EINCOMPLETE;
    if (k->halted) {
        bp_log(BP_LOG_ERROR, "the ventilator halted the batch: %" PRId64 " tasks not run",
               k->halted);
        return BP_EHALTED;
    }
    return r.failed ? BP_EFAILED : BP_OK;
}

static void report_failure(struct sink *k, const struct bp_result_rec *r, const char *wid)
{
    if (k->fail_lines++ >= MAX_FAIL_LINES) {
        if (k->fail_lines == MAX_FAIL_LINES + 1)
            bp_log(BP_LOG_ERROR, "(further failures are counted, not shown)");
        return;
    }
    char show[240];
    size_t n = r->len;
    const char *d = (const char *)r->data;
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
    bp_log(BP_LOG_ERROR, "task %" PRIu64 " %s (code %d) on %s: %s", r->id,
           bp_status_name(r->status), r->code, wid, show);
}

/* Writes an ok result now, or files it for --ordered. r->data points into
 * the received message m, which may be moved into the reorder buffer. */
static void output(struct sink *k, const struct bp_result_rec *r, int ok)
{
    int jok = ok ? 1 : r->status == BP_ST_HALTED ? -1 : 0;
    if (!k->o->ordered) {
        if (ok)
            write_rec(k, r->data, r->len);
        journal_result(k, r->id, jok, 0, NULL, 0);
        return;
    }
    zmq_msg_t m;
    if (zmq_msg_init_size(&m, ok ? r->len : 0) != 0) {
        bp_log(BP_LOG_ERROR, "out of memory holding task %" PRIu64 ": written out of order", r->id);
        if (ok)
            write_rec(k, r->data, r->len);
        journal_result(k, r->id, jok, 0, NULL, 0);
        return;
    }
    if (ok && r->len)
        memcpy(zmq_msg_data(&m), r->data, r->len);
    if (bp_reorder_put(&k->ro, r->id, &m, !ok) != 0) {
        /* Too far ahead to hold: written now rather than lost. */
        bp_log(BP_LOG_WARN,
               "task %" PRIu64 " too far ahead of %" PRIu64 " for --ordered: written out of order",
               r->id, k->ro.next);
        if (ok)
            write_rec(k, r->data, r->len);
        journal_result(k, r->id, jok, 0, NULL, 0);
        zmq_msg_close(&m);
        return;
    }
    /* Held (the pops below may write it at once): the journal keeps its
     * bytes, and a resume puts back what its W record says is not
     * written yet. */
    journal_result(k, r->id, jok, ok, r->data, r->len);
    zmq_msg_close(&m);
    zmq_msg_t out;
    zmq_msg_init(&out);
    int skip;
    while (bp_reorder_pop(&k->ro, &out, &skip))
        if (!skip)
            write_rec(k, zmq_msg_data(&out), zmq_msg_size(&out));
    zmq_msg_close(&out);
}

/* Copies at most n bytes of s into buf (len > 0) as one printable field:
 * control bytes, tabs and backslashes escaped, NUL-terminated. */
static void joblog_field(char *buf, size_t len, const void *s, size_t n)
{
    bp_printable(buf, len, s, n);
    for (char *p = buf; *p; p++)
        if (*p == '\t')
            *p = ' ';
}

/* One line per attempt in GNU parallel's --joblog columns: Seq (the task
 * id + 1: parallel's {#} is 1-based, and its --resume reads it so), Host
 * (worker id), Starttime, JobRuntime, Send, Receive, Exitval, Signal,
 * Command (the task's first bytes). Exitval is -1 for what did not end with
 * an exit status (timeout, too big, not started, lost, halted); Signal is
 * the signal that ended the command, for a timeout the one the worker sent
 * (parallel's --timeout logs "-1 15"). */
static void joblog_line(struct sink *k, const struct bp_result_rec *r, const char *wid)
{
    double start = r->head ? (double)r->start_ms / 1000.0
                           : (double)(bp_wall_ms() - (int64_t)r->elapsed_ms) / 1000.0;
    int exitval = r->status == BP_ST_OK ? 0 : r->status == BP_ST_FAILED ? r->code : -1;
    int sig = r->status == BP_ST_SIGNALED || r->status == BP_ST_TIMEOUT ? r->code : 0;
    char host[BP_ID_MAX * 4 + 1], cmd[BP_INFO_HEAD_MAX * 4 + 1] = "";
    joblog_field(host, sizeof host, wid, strlen(wid));
    if (r->head_len)
        joblog_field(cmd, sizeof cmd, r->head, r->head_len);
    if (fprintf(k->joblog, "%" PRIu64 "\t%s\t%.3f\t%.3f\t%" PRIu32 "\t%" PRIu32 "\t%d\t%d\t%s\n",
                r->id + 1, host, start, (double)r->elapsed_ms / 1000.0, r->task_len, r->len,
                exitval, sig, cmd) < 0 &&
        !k->io_error) {
        bp_log(BP_LOG_ERROR, "cannot write %s: %s", k->o->joblog, strerror(errno));
        k->io_error = 1;
    }
}

static void on_result(struct sink *k, const struct bp_result_rec *r, const char *wid)
{
    /* Ids below low are late duplicates: those are answered below. */
    if ((k->end_seen && r->id >= (uint64_t)k->total) ||
        (r->id >= k->low && r->id - k->low >= ID_WINDOW)) {
        k->malformed++;
        return;
    }
    if (k->joblog)
        joblog_line(k, r, wid); /* every attempt, also late and retried ones */
    if (bp_idset_has(&k->seen, r->id)) {
        /* Already final: first result wins; tell the ventilator again. */
        k->dups++;
        ack(k, r->id, r->attempt, bp_idset_has(&k->failed, r->id) ? BP_ACK_FAILED : BP_ACK_OK);
        return;
    }
    int ok = r->status == BP_ST_OK;
    if (!ok && !(r->flags & BP_RF_FINAL)) {
        /* A failed try with retries left: counted, not written. */
        if (bp_idset_add(&k->tried, r->id) < 0) {
            k->malformed++;
            return;
        }
        k->retried++;
        bp_log(BP_LOG_DEBUG, "task %" PRIu64 " try %u %s on %s: retried", r->id,
               (unsigned)r->attempt, bp_status_name(r->status), wid);
        ack(k, r->id, r->attempt, BP_ACK_RETRY);
        return;
    }
    int fresh = bp_idset_add(&k->seen, r->id);
    if (fresh < 0 || (!ok && bp_idset_add(&k->failed, r->id) < 0)) {
        k->malformed++;
        return;
    }
    while (bp_idset_has(&k->seen, k->low))
        k->low++;
    bp_stats_add(&k->st, wid, ok);
    bp_stats_time(&k->st, r->elapsed_ms);
    if (r->attempt > 1) {
        k->redelivered++;
        if (ok && !bp_idset_has(&k->tried, r->id))
            k->recovered++;
    }
    if (r->status == BP_ST_LOST)
        k->lost++;
    if (r->status == BP_ST_HALTED)
        k->halted++;
    if (!ok && r->status != BP_ST_HALTED) /* (those are counted: one line says why) */
        report_failure(k, r, wid);
    output(k, r, ok);
    ack(k, r->id, r->attempt, ok ? BP_ACK_OK : BP_ACK_FAILED);
}

static void adopt_ventilator(struct sink *k, zmq_msg_t *rid)
{
    size_t n = zmq_msg_size(rid);
    if (n == 0 || n > sizeof k->vent)
        return;
    memcpy(k->vent, zmq_msg_data(rid), n);
    k->vent_len = n;
    k->vent_heard = bp_now_ms();
    if (bp_log_enabled(BP_LOG_DEBUG)) {
        char hex[64] = "";
        for (size_t i = 0; i < n && i < 16; i++)
            snprintf(hex + 2 * i, sizeof hex - 2 * i, "%02x", ((const uint8_t *)k->vent)[i]);
        bp_log(BP_LOG_DEBUG, "ventilator is peer %s", hex);
    }
}

static int is_vent(const struct sink *k, zmq_msg_t *rid)
{
    return k->vent_len && zmq_msg_size(rid) == k->vent_len &&
           !memcmp(zmq_msg_data(rid), k->vent, k->vent_len);
}

/* Whether the ventilator we know is still there: heard from within the
 * liveness time, and its connection still open (a probe heartbeat to a
 * closed one fails at once: ROUTER_MANDATORY). */
static int vent_alive(struct sink *k)
{
    if (!k->vent_len)
        return 0;
    if (bp_now_ms() - k->vent_heard > (int64_t)k->o->hb_ms * k->o->liveness) {
        k->vent_len = 0;
        return 0;
    }
    bp_pack_begin(&k->reply, BP_MSG_HEARTBEAT, k->batch);
    bp_pack_u64(&k->reply, 0);
    bp_pack_u64(&k->reply, 0);
    send_to_vent(k, &k->reply); /* clears vent_len when it is gone */
    return k->vent_len != 0;
}

/* Whether the sender may speak for the ventilator (BEGIN, CLOSE, its
 * own results, being the one acknowledged). With CURVE: only the host's
 * own key. In plain mode: the known ventilator, or anyone once it is gone
 * (a restarted one); nobody can take over from a live one. */
static int may_control(struct sink *k, zmq_msg_t *rid, int from_host)
{
    if (from_host >= 0)
        return from_host;
    return is_vent(k, rid) || !vent_alive(k);
}

static void forged(struct sink *k, const char *what)
{
    if (k->forged++ < 5 || bp_log_enabled(BP_LOG_DEBUG))
        bp_log(BP_LOG_WARN,
               "dropped %s from a peer that is not the ventilator (%" PRId64 " so far)", what,
               k->forged);
}

static void on_message(struct sink *k, zmq_msg_t *rid, const struct bp_msg *m, int from_host)
{
    if (is_vent(k, rid))
        k->vent_heard = bp_now_ms();
    if (m->type == BP_MSG_HEARTBEAT) {
        /* Answer a ping at once: the ventilator measures us by it. The
         * sender of a ping on the current batch is its ventilator. */
        uint64_t ping = bp_msg_u64(m, 0);
        if (!ping)
            return;
        if (k->active && m->batch == k->batch && !is_vent(k, rid) && may_control(k, rid, from_host))
            adopt_ventilator(k, rid);
        /* Batch 0: "I do not know that batch", so its ventilator sends
         * BEGIN (and CLOSE) again. */
        bp_pack_begin(&k->reply, BP_MSG_HEARTBEAT,
                      k->active && m->batch == k->batch ? m->batch : 0);
        bp_pack_u64(&k->reply, 0);
        bp_pack_u64(&k->reply, ping);
        if (bp_pack_finish(&k->reply) == BP_OK)
            bp_send_to(k->sock, zmq_msg_data(rid), zmq_msg_size(rid), k->reply.p, k->reply.len,
                       ZMQ_DONTWAIT);
        return;
    }
    if (m->type != BP_MSG_RESULTS && m->type != BP_MSG_BEGIN && m->type != BP_MSG_CLOSE) {
        k->malformed++;
        return;
    }
    int control = m->type != BP_MSG_RESULTS;
    if (control && !may_control(k, rid, from_host)) {
        forged(k, m->type == BP_MSG_BEGIN ? "a BEGIN" : "a CLOSE");
        return;
    }
    if (!k->active && m->type == BP_MSG_RESULTS) {
        /* No batch begun: results cannot overtake BEGIN (tasks go out only
         * once we answered the ventilator's ping, which came after its
         * BEGIN), so these are from another run, or made up. Unacknowledged,
         * real ones come again once their ventilator told us its batch. */
        k->stale++;
        return;
    }
    if (!k->active) {
        batch_start(k, m->batch);
    } else if (m->batch != k->batch) {
        if (m->type == BP_MSG_BEGIN && (k->st.ok + k->st.failed) > 0) {
            bp_log(BP_LOG_WARN, "batch %016" PRIx64 " begins before %016" PRIx64 " completed",
                   m->batch, k->batch);
            batch_finish(k, NULL, 0);
            batch_start(k, m->batch);
        } else if (m->type == BP_MSG_BEGIN) {
            batch_start(k, m->batch);
        } else {
            k->stale++;
            return;
        }
    }
    k->last_activity = bp_now_ms();
    switch (m->type) {
    case BP_MSG_BEGIN:
        adopt_ventilator(k, rid);
        break;
    case BP_MSG_CLOSE: {
        uint64_t total = bp_msg_u64(m, 0);
        if (total > (uint64_t)INT64_MAX / 2 || (k->end_seen && (int64_t)total != k->total)) {
            /* A batch's size is said once and never changes. */
            forged(k, "a CLOSE with another batch size");
            return;
        }
        adopt_ventilator(k, rid);
        int64_t was = k->end_seen ? k->total : -1;
        k->end_seen = 1;
        k->total = (int64_t)total;
        if (k->j && k->total != was) {
            /* A sink restarted quickly is not told the size again. */
            uint8_t b[8];
            bp_put_be64(b, (uint64_t)k->total);
            if (bp_journal_put(k->j, SJ_TOTAL, b, sizeof b) != BP_OK)
                journal_fail(k, "queueing a record");
            k->jf_dirty = 1;
        }
        bp_log(BP_LOG_DEBUG, "batch %016" PRIx64 " has %" PRId64 " tasks", k->batch, k->total);
        break;
    }
    case BP_MSG_RESULTS: {
        uint8_t wl;
        const char *w = bp_msg_wid(m, &wl);
        /* Peer-chosen: made printable before it reaches a log or a file. */
        char wid[BP_ID_MAX * 4 + 1];
        if (wl)
            bp_printable(wid, sizeof wid, w, wl);
        else
            snprintf(wid, sizeof wid, "?");
        size_t off = 0;
        struct bp_result_rec r;
        int vent = -1; /* asked once, when a record needs it */
        while (bp_msg_next_result(m, &off, &r)) {
            if (r.status == BP_ST_LOST || r.status == BP_ST_HALTED) {
                /* Only the ventilator gives a task up. */
                if (vent < 0)
                    vent = from_host >= 0 ? from_host : is_vent(k, rid);
                if (!vent) {
                    forged(k, "a 'lost'/'halted' result");
                    continue;
                }
            }
            on_result(k, &r, wid);
        }
        break;
    }
    default:
        break;
    }
}

static void sink_close(struct sink *k)
{
    if (k->j && k->out && journal_commit(k, bp_now_ms(), 1) == 0)
        bp_log(BP_LOG_ERROR, "journal %s: the last results may not be on record", k->jpath);
    bp_journal_close(&k->j, 0);
    if (k->joblog && fclose(k->joblog) != 0)
        bp_log(BP_LOG_ERROR, "cannot write %s: %s", k->o->joblog, strerror(errno));
    k->joblog = NULL;
    bp_sock_close(&k->sock);
    bp_role_sec_close(&k->sec);
    if (k->own_ctx && k->ctx)
        zmq_ctx_term(k->ctx);
    if (k->out)
        fflush(k->out);
    if (k->own_out && k->out && fclose(k->out) != 0)
        bp_log(BP_LOG_ERROR, "cannot write %s: %s", k->o->output, strerror(errno));
    bp_stats_free(&k->st);
    bp_idset_free(&k->seen);
    bp_idset_free(&k->failed);
    bp_idset_free(&k->tried);
    bp_reorder_free(&k->ro);
    bp_pack_free(&k->acks);
    bp_pack_free(&k->reply);
    free(k->jf);
    k->jf = NULL;
}

/* What a journal says, read back for --resume. */
struct sj_state {
    struct sink *k;
    uint64_t batch;
    int ordered;
    int64_t total;
    uint8_t *pend; /* F payloads since the last W: not committed yet */
    size_t pend_len, pend_cap;
    int64_t committed; /* W records */
    uint64_t out_off;
    int64_t done, failed;
};

/* Applies the F entries of one committed turn. */
static int sj_apply(struct sj_state *st, uint64_t next)
{
    struct sink *k = st->k;
    size_t i = 0;
    while (i < st->pend_len) {
        if (st->pend_len - i < 9)
            return BP_EPROTO;
        uint64_t id = bp_get_be64(st->pend + i);
        uint8_t fl = st->pend[i + 8];
        i += 9;
        const uint8_t *data = NULL;
        uint32_t len = 0;
        if (fl & SJ_HELD) {
            if (st->pend_len - i < 4 || st->pend_len - i - 4 < bp_get_be32(st->pend + i))
                return BP_EPROTO;
            len = bp_get_be32(st->pend + i);
            data = st->pend + i + 4;
            i += 4 + len;
        }
        int fresh = bp_idset_add(&k->seen, id);
        if (fresh < 0)
            return BP_EPROTO;
        if (!fresh)
            continue;
        int ok = fl & SJ_OK;
        if (!ok && bp_idset_add(&k->failed, id) < 0)
            return BP_EPROTO;
        if (fl & SJ_HALTED)
            k->halted++;
        bp_stats_add(&k->st, "(before resume)", ok);
        if (!ok)
            st->failed++;
        st->done++;
        if (k->o->ordered && id >= k->ro.next && id >= next) {
            zmq_msg_t m;
            int held = (fl & SJ_HELD) && ok;
            if (zmq_msg_init_size(&m, held ? len : 0) != 0)
                return BP_ENOMEM;
            if (held && len)
                memcpy(zmq_msg_data(&m), data, len);
            int rc = bp_reorder_put(&k->ro, id, &m, !held);
            zmq_msg_close(&m);
            if (rc != 0)
                return BP_EPROTO;
        }
    }
    st->pend_len = 0;
    if (k->o->ordered)
        bp_reorder_skip_to(&k->ro, next);
    return BP_OK;
}

static int sj_record(void *arg, uint8_t type, const uint8_t *p, size_t len)
{
    struct sj_state *st = arg;
    switch (type) {
    case SJ_BATCH:
        if (len != 9 || st->batch)
            return BP_EPROTO;
        st->batch = bp_get_be64(p);
        st->ordered = p[8] & 1;
        if (!st->batch)
            return BP_EPROTO;
        if (st->ordered != (st->k->o->ordered != 0))
            return BP_EUSAGE;
        /* the batch, as it was when the journal began */
        st->k->restoring = 1;
        batch_start(st->k, st->batch);
        st->k->restoring = 0;
        return BP_OK;
    case SJ_TOTAL:
        if (len != 8 || !st->batch)
            return BP_EPROTO;
        st->total = (int64_t)bp_get_be64(p);
        return BP_OK;
    case SJ_FINAL:
        if (!st->batch)
            return BP_EPROTO;
        if (st->pend_len + len > st->pend_cap) {
            size_t cap = st->pend_cap ? st->pend_cap : 4096;
            while (cap < st->pend_len + len)
                cap *= 2;
            uint8_t *n = realloc(st->pend, cap);
            if (!n)
                return BP_ENOMEM;
            st->pend = n;
            st->pend_cap = cap;
        }
        memcpy(st->pend + st->pend_len, p, len);
        st->pend_len += len;
        return BP_OK;
    case SJ_WRITTEN: {
        if (len != 16 || !st->batch)
            return BP_EPROTO;
        int rc = sj_apply(st, bp_get_be64(p + 8));
        if (rc != BP_OK)
            return rc;
        st->out_off = bp_get_be64(p);
        st->committed++;
        return BP_OK;
    }
    default:
        return BP_EPROTO;
    }
}

/* --resume / --journal: reads the journal back (if there is one) and
 * opens the output to continue it. Returns BP_OK or an error (logged). */
static int sink_restore(struct sink *k)
{
    const struct bp_opts *o = k->o;
    if (bp_journal_path(k->jpath, sizeof k->jpath, o->journal, o->output, ".journal") != BP_OK)
        return BP_EUSAGE;
    struct sj_state st = {.k = k, .total = -1};
    struct bp_journal_scan sc;
    char err[1200];
    int rc = bp_journal_scan(k->jpath, SJ_MAGIC, sj_record, &st, &sc, err, sizeof err);
    int missing = rc == BP_EIO && errno == ENOENT;
    free(st.pend);
    if (missing) {
        /* no journal yet: the batch to come starts one */
    } else if (rc == BP_EUSAGE) {
        bp_log(BP_LOG_ERROR, "journal %s was written %s --ordered: resume with the same options",
               k->jpath, o->ordered ? "without" : "with");
        return rc;
    } else if (rc != BP_OK) {
        if (!err[0])
            snprintf(err, sizeof err,
                     "journal %s: record %" PRId64 " makes no sense: not a "
                     "sink journal of this version?",
                     k->jpath, sc.records + 1);
        bp_log(BP_LOG_ERROR, "%s", err);
        return rc == BP_ENOMEM ? rc : BP_EUSAGE;
    }
    if (st.batch && !o->resume) {
        bp_log(BP_LOG_ERROR,
               "journal %s holds batch %016" PRIx64 ": continue it with --resume, "
               "or remove the file to start afresh",
               k->jpath, st.batch);
        return BP_EUSAGE;
    }
    if (sc.tail == BP_JT_CORRUPT) {
        /* Results acknowledged after the damage would be lost for good. */
        bp_log(BP_LOG_ERROR,
               "journal %s is damaged at byte %" PRId64 " with %" PRId64
               " bytes after it: refusing to resume (move it away to start afresh)",
               k->jpath, sc.valid_end, sc.size - sc.valid_end);
        return BP_EUSAGE;
    }
    if (st.batch && sc.tail == BP_JT_TORN)
        bp_log(BP_LOG_WARN,
               "journal %s: the last record is torn (%" PRId64 " bytes cut); "
               "what it held was never acknowledged and comes again",
               k->jpath, sc.size - sc.valid_end);
    if (!o->resume) {
        k->out = fopen(o->output, "wb");
    } else if (!st.batch) {
        k->out = fopen(o->output, "ab"); /* --resume never truncates */
    } else {
        int fd = open(o->output, O_RDWR | O_CLOEXEC);
        struct stat sb;
        if (fd < 0 || fstat(fd, &sb) != 0) {
            bp_log(BP_LOG_ERROR, "cannot continue %s: %s", o->output, strerror(errno));
            if (fd >= 0)
                close(fd);
            return BP_EIO;
        }
        if ((uint64_t)sb.st_size < st.out_off) {
            bp_log(BP_LOG_ERROR,
                   "%s is shorter than journal %s says (%" PRId64 " < %" PRIu64
                   " bytes): refusing to resume",
                   o->output, k->jpath, (int64_t)sb.st_size, st.out_off);
            close(fd);
            return BP_EUSAGE;
        }
        /* What was written after the last commit was never acknowledged:
         * it comes again, so it goes. */
        if (ftruncate(fd, (off_t)st.out_off) != 0 || lseek(fd, 0, SEEK_END) < 0) {
            bp_log(BP_LOG_ERROR, "cannot continue %s: %s", o->output, strerror(errno));
            close(fd);
            return BP_EIO;
        }
        k->out = fdopen(fd, "ab");
        if (!k->out)
            close(fd);
    }
    if (!k->out || fseeko(k->out, 0, SEEK_END) != 0) {
        bp_log(BP_LOG_ERROR, "cannot write %s: %s", o->output, strerror(errno));
        return BP_EIO;
    }
    k->own_out = 1;
    if (st.batch) {
        if (st.total >= 0) {
            k->end_seen = 1;
            k->total = st.total;
        }
        while (bp_idset_has(&k->seen, k->low))
            k->low++;
        bp_log(BP_LOG_INFO,
               "resuming batch %016" PRIx64 " from %s: %" PRId64 " results written "
               "before (%" PRId64 " failed)%s",
               st.batch, k->jpath, st.done, st.failed,
               k->ro.held ? ", some held for --ordered" : "");
        char e2[1200];
        k->j = bp_journal_open(k->jpath, SJ_MAGIC, sc.valid_end, e2, sizeof e2);
        if (!k->j) {
            bp_log(BP_LOG_ERROR, "%s", e2);
            return BP_EIO;
        }
    }
    return BP_OK;
}

static int sink_open(struct sink *k)
{
    const struct bp_opts *o = k->o;
    char err[320];
    if (k->io && k->io->out) {
        k->out = k->io->out;
    } else if (o->journal || o->resume) {
        int rc = sink_restore(k);
        if (rc != BP_OK)
            return rc;
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
    if (o->joblog) {
        /* Appended to, like parallel's: a resumed batch adds its attempts. */
        k->joblog = fopen(o->joblog, "a");
        if (!k->joblog) {
            bp_log(BP_LOG_ERROR, "cannot write %s: %s", o->joblog, strerror(errno));
            return BP_EIO;
        }
        if (ftello(k->joblog) == 0 && fseeko(k->joblog, 0, SEEK_END) == 0 && ftello(k->joblog) == 0)
            fputs("Seq\tHost\tStarttime\tJobRuntime\tSend\tReceive\tExitval\tSignal\tCommand\n",
                  k->joblog);
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
    int rc = bp_role_sec_open(&k->sec, o, k->ctx, k->io);
    if (rc != BP_OK)
        return rc;
    struct bp_sockcfg c = bp_role_sockcfg(o);
    bp_role_sec_server(&k->sec, &c);
    /* A pack of small results, or one result of up to --max-msg-size. */
    c.max_msg = o->max_msg + BP_PACK_BYTES + 64 + BP_ID_MAX + BP_INFO_FIXED + BP_INFO_HEAD_MAX;
    /* What one connection can make us queue: about 32 MiB (plain mode;
     * with CURVE nobody unknown gets that far). */
    int64_t per = (int64_t)32 * 1024 * 1024 / c.max_msg;
    c.rcvhwm = per < 16 ? 16 : per > 1000 ? 1000 : (int)per;
    if (o->raw)
        c.rcvhwm = 10000;
    /* Sending to a ventilator whose connection closed fails at once. */
    c.router_mandatory = !o->raw;
    k->sock = bp_sock_open(k->ctx, o->raw ? ZMQ_PULL : ZMQ_ROUTER, o->bind, 1, &c, err, sizeof err);
    if (!k->sock) {
        bp_log(BP_LOG_ERROR, "%s", err);
        return BP_EZMQ;
    }
    char ep[BP_ENDPOINT_MAX];
    if (bp_sock_endpoint(k->sock, ep, sizeof ep) == BP_OK)
        bp_log(BP_LOG_DEBUG, "results on %s", ep);
    return BP_OK;
}

static void note_malformed(struct sink *k, int rc)
{
    k->malformed++;
    if (k->malformed <= 5 || bp_log_enabled(BP_LOG_DEBUG))
        bp_log(BP_LOG_WARN, "dropped %s message (%" PRId64 " so far)%s",
               rc == BP_EVERSION ? "other-version" : "malformed", k->malformed,
               rc == BP_EPROTO && k->malformed == 1 ? "; plain strings need --raw" : "");
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
    bp_idset_init(&k.failed);
    bp_idset_init(&k.tried);
    bp_reorder_init(&k.ro);
    bp_pack_init(&k.acks);
    bp_pack_init(&k.reply);
    int rc = sink_open(&k);
    if (rc != BP_OK) {
        sink_close(&k);
        return rc;
    }
    k.progress = bp_role_progress(o);
    int result = BP_OK;
    int64_t next_draw = 0;
    zmq_msg_t rid, m;
    zmq_msg_init(&rid);
    zmq_msg_init(&m);
    for (;;) {
        if (k.active && k.end_seen && k.st.ok + k.st.failed >= k.total) {
            /* A resumed batch whose last results were on record already
             * (the crash came before the summary): nothing more will come. */
            result = batch_finish(&k, rep, 1);
            if (o->once)
                break;
        }
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
        if (k.joblog)
            fflush(k.joblog);
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
        if (k.j && k.unsynced && o->sync == BP_SYNC_INTERVAL)
            tmo = k.next_sync <= now        ? 0
                  : k.next_sync - now < tmo ? (long)(k.next_sync - now)
                                            : tmo;
        zmq_pollitem_t it = {.socket = k.sock, .events = ZMQ_POLLIN};
        int prc = zmq_poll(&it, 1, tmo);
        if (prc < 0 && errno != EINTR) {
            bp_log(BP_LOG_ERROR, "poll failed: %s", zmq_strerror(errno));
            result = BP_EZMQ;
            break;
        }
        int done = 0;
        for (int n = 0; n < READ_BURST && !done; n++) {
            rc = o->raw ? bp_recv_raw(k.sock, &m, ZMQ_DONTWAIT)
                        : bp_recv_from(k.sock, &rid, &m, ZMQ_DONTWAIT);
            if (rc == BP_ETIMEDOUT || rc == BP_EINTR)
                break;
            if (rc == BP_EPROTO) {
                note_malformed(&k, rc);
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
            struct bp_msg msg;
            rc = bp_msg_decode(&msg, zmq_msg_data(&m), zmq_msg_size(&m), (uint32_t)o->max_msg);
            if (rc != BP_OK) {
                note_malformed(&k, rc);
                continue;
            }
            int from_host = -1; /* plain mode: not known */
            if (k.sec.on) {
                const char *uid = zmq_msg_gets(&m, "User-Id");
                from_host = uid && !strcmp(uid, k.sec.me.pub);
            }
            on_message(&k, &rid, &msg, from_host);
            if (k.active && k.end_seen && k.st.ok + k.st.failed >= k.total) {
                result = batch_finish(&k, rep, 1);
                if (o->once)
                    done = 1;
            }
        }
        /* Acknowledge what this turn brought, in one message (with a
         * journal: once it is on record, see journal_commit()). */
        if (k.active && journal_commit(&k, bp_now_ms(), 0))
            flush_acks(&k);
        write_metrics(&k, 0);
        if (k.io_error && k.j == NULL && k.jpath[0] && k.active) {
            result = BP_EIO; /* the journal failed: stop rather than lose */
            break;
        }
        if (done == 2)
            break;
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
    zmq_msg_close(&rid);
    zmq_msg_close(&m);
    write_metrics(&k, 1);
    if (o->raw)
        rep->ok = k.raw_count;
    rep->malformed = k.malformed;
    sink_close(&k);
    if (k.io_error && (result == BP_OK || result == BP_EFAILED))
        result = BP_EIO;
    return result;
}
