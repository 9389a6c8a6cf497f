/* The sink's role loop: sockets, the output and --joblog files, the
 * journal and its replay, metrics, the summary; it moves bytes to and from
 * bp_sinkm. Must not make protocol decisions (bp_sinkm does). */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "bp_frame.h"
#include "bp_internal.h"
#include "bp_journal.h"
#include "bp_metrics.h"
#include "bp_path.h"
#include "bp_rbook.h"
#include "bp_sinkfiles.h"
#include "bp_sinkm.h"
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
/* The largest PUT: header, fixed part, name, one chunk. */
static const uint32_t SINK_CHUNK = BP_CHUNK_BYTES;
#define SINK_PUT_MAX ((int64_t)BP_MSG_HDR + BP_PUT_FIXED + BP_NAME_MAX + (int64_t)SINK_CHUNK)
/* Accepted returned files waiting for the journal's sync: past this the
 * turn is committed at once (their names are held in memory). */
#define SINK_FILES_WAITING 4096
struct sink {
    /* (grouped by size: clang-tidy's padding check) */
    const struct bp_opts *o;
    const struct bp_io *io;
    void *ctx;
    void *sock; /* v2: ROUTER; raw: PULL */
    FILE *out;
    FILE *joblog; /* --joblog, or NULL */
    /* --metrics-file */
    int64_t m_ok, m_failed;      /* results of batches finished before this one */
    int64_t m_last_n, m_last_ms; /* results counted at the last write, and when that moved */
    int64_t m_next;
    struct bp_role_sec sec;
    /* the decisions: ventilator, batch, results, holds, acks (bp_sinkm.h) */
    struct bp_sinkm sm;
    struct bp_sinkfiles *files; /* returned files (--output-dir) */
    struct bp_stats st;
    struct bp_reorder ro;
    int64_t fail_lines;
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
    int io_error;
    int jf_dirty;                       /* results accepted since the last commit */
    int unsynced;                       /* written since the last fsync */
    int said_dropped;                   /* the first drop of held results was logged */
    const struct bp_result_rec *jfiles; /* the result being journaled returned files */
    char jpath[1024];
};

/* Sink journal records (docs/journal.md). */
static const char SJ_MAGIC[BP_JOURNAL_MAGIC_LEN] = {'b', 'p', 's', 'j', 'r', 'n', '1', '\n'};
enum { SJ_BATCH = 'B', SJ_TOTAL = 'T', SJ_FINAL = 'F', SJ_WRITTEN = 'W' };
#define SJ_OK 0x01     /* the task's final result is ok */
#define SJ_HELD 0x02   /* --ordered: held, not written yet; its bytes follow */
#define SJ_HALTED 0x04 /* not run: the ventilator halted the batch */
#define SJ_FILES 0x08  /* returned files: u16 attempt, u8 n, n x (u16 len, name) follow */
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

/* Appends the names of r's returned files (the last r->nfiles waiting
 * for the commit) to the F entry just noted: u16 attempt, u8 n, then n x
 * (u16 length, name). */
static void journal_files(struct sink *k, const struct bp_result_rec *r)
{
    size_t n = 0;
    const struct bp_sf_pending *p = bp_sinkfiles_pending(k->files, &n);
    if (n < r->nfiles)
        return; /* (cannot happen: accepted just before) */
    p += n - r->nfiles;
    size_t need = 3;
    for (int i = 0; i < r->nfiles; i++)
        need += 2 + (size_t)p[i].name_len;
    jf_reserve(k, need);
    if (!k->j)
        return;
    uint8_t *q = k->jf + k->jf_len;
    q[0] = (uint8_t)(r->attempt >> 8);
    q[1] = (uint8_t)r->attempt;
    q[2] = r->nfiles;
    q += 3;
    for (int i = 0; i < r->nfiles; i++) {
        q[0] = (uint8_t)(p[i].name_len >> 8);
        q[1] = (uint8_t)p[i].name_len;
        memcpy(q + 2, p[i].name, p[i].name_len);
        q += 2 + p[i].name_len;
    }
    k->jf_len += need;
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
    p[8] = (uint8_t)((ok > 0 ? SJ_OK : 0) | (held ? SJ_HELD : 0) | (ok < 0 ? SJ_HALTED : 0) |
                     (k->jfiles ? SJ_FILES : 0));
    if (held) {
        bp_put_be32(p + 9, (uint32_t)len);
        if (len)
            memcpy(p + 13, data, len);
    }
    k->jf_len += need;
    if (k->jfiles)
        journal_files(k, k->jfiles);
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

/* What a turn's acknowledgements wait for: the journal's commit (and
 * sync), then the accepted returned files renamed into place. sync_now
 * as journal_commit(). */
static void commit_then_ack(struct sink *k, int sync_now)
{
    if (k->jpath[0] && !k->j && k->io_error)
        return; /* the journal failed: nothing more is on record */
    if (!journal_commit(k, bp_now_ms(), sync_now))
        return;
    bp_sinkfiles_commit(k->files);
    bp_sinkm_flush_acks(&k->sm);
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

/* ops->begin: a batch starts (restoring: read back from its journal,
 * which is kept, so no new one). */
static void sink_begin(void *arg, uint64_t batch, int restoring)
{
    struct sink *k = arg;
    k->fail_lines = 0;
    k->said_dropped = 0;
    /* The metrics' counters go on over batches. */
    k->m_ok += k->st.ok;
    k->m_failed += k->st.failed;
    bp_stats_free(&k->st);
    bp_stats_init(&k->st, bp_now_ms());
    bp_reorder_free(&k->ro);
    bp_reorder_init(&k->ro);
    if (k->jpath[0] && !restoring)
        journal_new_batch(k, batch);
    bp_sinkfiles_begin(k->files, batch, restoring);
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
            ",\"stale\":%" PRId64 ",\"malformed\":%" PRId64 ",\"foreign\":%" PRId64
            ",\"forged\":%" PRId64 ",\"refused\":%" PRId64 ",",
            r->batch, r->total, r->ok + r->failed, r->ok, r->failed, r->missing, r->duplicates,
            r->redelivered, r->retried, r->recovered, r->lost, r->halted, r->stale, r->malformed,
            r->foreign, r->forged, r->refused);
    const struct bp_sinkfiles *sf = k->files;
    fprintf(f,
            "\"files\":{\"returned\":%" PRId64 ",\"bytes\":%" PRId64 ",\"torn\":%" PRId64
            ",\"refused\":%" PRId64 ",\"write_errors\":%" PRId64 ",\"conflicts\":%" PRId64
            ",\"kept\":%" PRId64 "},\"elapsed_s\":%.6f,\"workers\":{",
            sf->files, sf->bytes, sf->torn, sf->refused, sf->write_errors, sf->conflicts, sf->kept,
            r->elapsed_s);
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
    for (int64_t id = (int64_t)k->sm.rb.low; id < k->sm.rb.total && shown < 20; id++) {
        if (bp_idset_has(&k->sm.rb.seen, (uint64_t)id))
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
         BP_COUNTER, (double)k->sm.malformed},
        {"boardpipe_sink_forged_total",
         "Control messages dropped because the sender may not speak for the ventilator.",
         BP_COUNTER, (double)k->sm.forged},
        {"boardpipe_sink_refused_total", "Connections refused by CURVE authentication.", BP_COUNTER,
         (double)bp_zap_refused(k->sec.zap)},
        {"boardpipe_sink_files_returned_total",
         "Returned files placed under --output-dir (or found there with the same bytes).",
         BP_COUNTER, (double)k->files->files},
        {"boardpipe_sink_files_bytes_total", "Bytes of the returned files placed.", BP_COUNTER,
         (double)k->files->bytes},
        {"boardpipe_sink_files_torn_total",
         "Results with files dropped unacknowledged: their uploads were not complete.", BP_COUNTER,
         (double)k->files->torn},
        {"boardpipe_sink_uploads_refused_total",
         "Uploads refused (name, size, count, write error) or for ids never announced.", BP_COUNTER,
         (double)k->files->refused},
        {"boardpipe_sink_upload_write_errors_total",
         "Writes of uploads that failed (disk full, ...).", BP_COUNTER,
         (double)k->files->write_errors},
        {"boardpipe_sink_files_conflicts_total",
         "Results failed because a returned name holds other contents.", BP_COUNTER,
         (double)k->files->conflicts},
        {"boardpipe_sink_files_kept_total",
         "Accepted returned files kept in .bp-kept: their name was taken when placing them.",
         BP_COUNTER, (double)k->files->kept},
        {"boardpipe_sink_batch_active", "1 while a batch runs.", BP_GAUGE,
         k->sm.active ? 1.0 : 0.0},
        {"boardpipe_sink_batch_tasks", "Tasks in the batch (-1: not announced yet).", BP_GAUGE,
         (double)k->sm.rb.total},
        {"boardpipe_sink_batch_results", "Tasks of the batch with a final result.", BP_GAUGE,
         (double)(k->sm.rb.ok + k->sm.rb.failed_n)},
        {"boardpipe_sink_batch_redelivered",
         "Tasks of the batch whose final result came from a later delivery.", BP_GAUGE,
         (double)bp_rbook_redelivered(&k->sm.rb)},
        {"boardpipe_sink_batch_duplicates", "Results of the batch received twice, dropped.",
         BP_GAUGE, (double)k->sm.rb.dups},
        {"boardpipe_sink_batch_foreign",
         "Results of the batch for ids the ventilator never announced, dropped.", BP_GAUGE,
         (double)k->sm.rb.foreign},
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

/* Whatever the reorder buffer still holds goes out now, gaps skipped. */
static void flush_ordered(struct sink *k)
{
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
}

static void fill_report(struct sink *k, struct bp_report *r, int64_t now)
{
    memset(r, 0, sizeof *r);
    r->batch = k->sm.batch;
    r->total = k->sm.rb.total;
    r->ok = k->sm.rb.ok;
    r->failed = k->sm.rb.failed_n;
    r->duplicates = k->sm.rb.dups;
    r->foreign = k->sm.rb.foreign + k->sm.hold_dropped;
    r->stale = k->sm.stale;
    r->malformed = k->sm.malformed;
    r->forged = k->sm.forged;
    r->refused = bp_zap_refused(k->sec.zap);
    r->redelivered = bp_rbook_redelivered(&k->sm.rb);
    r->retried = k->sm.rb.retried;
    r->recovered = k->sm.rb.recovered;
    r->lost = k->sm.lost;
    r->halted = k->sm.halted;
    r->workers = k->st.nw;
    r->elapsed_s = (double)(now - k->st.start_ms) / 1000.0;
    r->missing = bp_rbook_missing(&k->sm.rb);
}

static void log_summary(struct sink *k, const struct bp_report *r, int complete)
{
    double rate = r->elapsed_s > 0 ? (double)(r->ok + r->failed) / r->elapsed_s : 0;
    char tot[32] = "?";
    if (k->sm.rb.total >= 0)
        snprintf(tot, sizeof tot, "%" PRId64, k->sm.rb.total);
    bp_log(complete ? BP_LOG_INFO : BP_LOG_ERROR,
           "batch %016" PRIx64 " %s: %" PRId64 "/%s tasks, %" PRId64 " ok, %" PRId64
           " failed, %" PRId64 " missing, %" PRId64 " duplicates in %.3f s (%.1f tasks/s)",
           r->batch, complete ? "complete" : "INCOMPLETE", r->ok + r->failed, tot, r->ok, r->failed,
           r->missing, r->duplicates, r->elapsed_s, rate);
    if (r->redelivered || r->retried || r->lost)
        bp_log(BP_LOG_INFO,
               "  %" PRId64 " redelivered (%" PRId64 " recovered after a loss), %" PRId64
               " failed tries retried, %" PRId64 " lost",
               r->redelivered, r->recovered, r->retried, r->lost);
    for (int i = 0; i < k->st.nw; i++) {
        const struct bp_wstat *w = &k->st.w[i];
        int64_t n = w->ok + w->failed;
        bp_log(BP_LOG_INFO, "  worker %-24s %8" PRId64 " ok %6" PRId64 " failed %9.1f ms/task",
               w->id, w->ok, w->failed, n ? (double)w->ms / (double)n : 0.0);
    }
    if (k->sm.stale || k->sm.malformed || r->forged || r->refused || r->foreign)
        bp_log(BP_LOG_WARN,
               "dropped %" PRId64 " results of other batches, %" PRId64
               " results for ids the ventilator never announced, %" PRId64
               " malformed messages, %" PRId64 " forged control messages; refused %" PRId64
               " connections (CURVE)",
               k->sm.stale, r->foreign, k->sm.malformed, r->forged, r->refused);
    const struct bp_sinkfiles *sf = k->files;
    if (sf->files || sf->torn || sf->refused || sf->conflicts || sf->kept)
        bp_log(
            sf->refused || sf->kept || sf->write_errors ? BP_LOG_WARN : BP_LOG_INFO,
            "  files: %" PRId64 " returned (%" PRId64 " bytes), %" PRId64 " torn results, %" PRId64
            " uploads refused (%" PRId64 " write errors), %" PRId64 " conflicts, %" PRId64 " kept",
            sf->files, sf->bytes, sf->torn, sf->refused, sf->write_errors, sf->conflicts, sf->kept);
    if (complete)
        return;
    if (k->sm.rb.total < 0)
        bp_log(BP_LOG_ERROR, "the ventilator never announced the batch size");
    else
        log_missing(k);
}

/* Ends the current batch: flushes output, prints the summary, tells the
 * ventilator. Returns the batch's outcome. */
static int batch_finish(struct sink *k, struct bp_report *rep, int complete)
{
    int64_t now = bp_now_ms();
    flush_ordered(k);
    fflush(k->out);
    commit_then_ack(k, 1);
    if (complete)
        bp_sinkfiles_end(k->files);
    if (k->progress)
        bp_role_progress_line(NULL);
    struct bp_report r;
    fill_report(k, &r, now);
    log_summary(k, &r, complete);
    if (complete)
        bp_sinkm_send_complete(&k->sm, r.ok, r.failed);
    write_json(k, &r);
    if (rep)
        *rep = r;
    bp_sinkm_end(&k->sm);
    write_metrics(k, 1);
    if (k->j && complete) {
        /* Every result is written: nothing left to resume. */
        if (bp_journal_close(&k->j, 1) != BP_OK)
            bp_log(BP_LOG_WARN, "cannot remove journal %s: %s", k->jpath, strerror(errno));
    } else if (k->j) {
        bp_log(BP_LOG_INFO, "batch %016" PRIx64 " kept in %s: a sink with --resume continues it",
               k->sm.batch, k->jpath);
    }
    if (!complete)
        return BP_EINCOMPLETE;
    if (k->sm.halted) {
        bp_log(BP_LOG_ERROR, "the ventilator halted the batch: %" PRId64 " tasks not run",
               k->sm.halted);
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

/* ---- what the machine (bp_sinkm) asks of the I/O side ---- */

static int sink_send(void *arg, const uint8_t *rid, size_t rid_len, const void *data, size_t len)
{
    struct sink *k = arg;
    int rc = bp_send_to(k->sock, rid, rid_len, data, len, ZMQ_DONTWAIT);
    if (rc != BP_OK && rc != BP_EIO && rc != BP_ETIMEDOUT)
        bp_log(BP_LOG_DEBUG, "cannot reach a peer: %s", zmq_strerror(errno));
    return rc;
}

static void sink_abandon(void *arg)
{
    batch_finish(arg, NULL, 0);
}

static void sink_total(void *arg, int64_t total)
{
    struct sink *k = arg;
    if (k->j) {
        /* A sink restarted quickly is not told the size again. */
        uint8_t b[8];
        bp_put_be64(b, (uint64_t)total);
        if (bp_journal_put(k->j, SJ_TOTAL, b, sizeof b) != BP_OK)
            journal_fail(k, "queueing a record");
        k->jf_dirty = 1;
    }
    bp_log(BP_LOG_DEBUG, "batch %016" PRIx64 " has %" PRId64 " tasks", k->sm.batch, total);
}

/* A result the book took: ACCEPT is written (or held for --ordered),
 * counted and journaled; every attempt goes to the joblog. */
static void sink_result(void *arg, const struct bp_result_rec *r, const char *wid, int verdict)
{
    struct sink *k = arg;
    if (k->joblog)
        joblog_line(k, r, wid); /* every attempt, also late and retried ones */
    if (verdict == BP_RB_RETRY)
        bp_log(BP_LOG_DEBUG, "task %" PRIu64 " try %u %s on %s: retried", r->id,
               (unsigned)r->attempt, bp_status_name(r->status), wid);
    if (verdict != BP_RB_ACCEPT) {
        /* a duplicate's uploads, or a failed try's: never placed */
        bp_sinkfiles_drop_attempt(k->files, r->id, verdict == BP_RB_DUP ? -1 : r->attempt);
        return;
    }
    int ok = r->status == BP_ST_OK;
    bp_stats_add(&k->st, wid, ok);
    bp_stats_time(&k->st, r->elapsed_ms);
    if (!ok && r->status != BP_ST_HALTED) /* (those are counted: one line says why) */
        report_failure(k, r, wid);
    if (ok && (r->flags & BP_RF_FILES)) {
        /* (bp_sinkm asked sink_files() first: they are all there) */
        size_t waiting = bp_sinkfiles_accept(k->files, r);
        k->jfiles = r;
        output(k, r, ok);
        k->jfiles = NULL;
        if (!k->jpath[0] || waiting >= SINK_FILES_WAITING)
            commit_then_ack(k, 1); /* no journal: in place before any ack */
        return;
    }
    bp_sinkfiles_drop(k->files, r->id);
    output(k, r, ok);
}

/* ops->files: a final ok result with FILES the book would take. */
static int sink_files(void *arg, const struct bp_result_rec *r, char *why, size_t why_len)
{
    struct sink *k = arg;
    int c = bp_sinkfiles_check(k->files, r, why, why_len);
    if (c == BP_SF_TORN) {
        bp_log(BP_LOG_DEBUG,
               "task %" PRIu64 " try %u: result with %u files, not all uploaded whole: "
               "dropped (torn), it comes again",
               r->id, (unsigned)r->attempt, (unsigned)r->nfiles);
        return BP_SM_FILES_TORN;
    }
    return c == BP_SF_CONFLICT ? BP_SM_FILES_CONFLICT : BP_SM_FILES_READY;
}

static void sink_acks_full(void *arg)
{
    commit_then_ack(arg, 1);
}

static void sink_note(void *arg, int what, const char *text, int64_t n)
{
    struct sink *k = arg;
    switch (what) {
    case BP_SM_FORGED:
        if (n <= 5 || bp_log_enabled(BP_LOG_DEBUG))
            bp_log(BP_LOG_WARN,
                   "dropped %s from a peer that is not the ventilator (%" PRId64 " so far)", text,
                   n);
        break;
    case BP_SM_DROPPED:
        if (!k->said_dropped++ || bp_log_enabled(BP_LOG_DEBUG))
            bp_log(BP_LOG_WARN,
                   "dropped %" PRId64 " results for task ids the ventilator has not announced (%s)",
                   n, text);
        break;
    case BP_SM_BEGIN_OVER:
        bp_log(BP_LOG_WARN, "batch %016" PRIx64 " begins before %016" PRIx64 " completed",
               (uint64_t)n, k->sm.batch);
        break;
    case BP_SM_VENT:
        if (bp_log_enabled(BP_LOG_DEBUG)) {
            char hex[64] = "";
            for (int64_t i = 0; i < n && i < 16; i++)
                snprintf(hex + 2 * i, sizeof hex - 2 * (size_t)i, "%02x",
                         ((const uint8_t *)text)[i]);
            bp_log(BP_LOG_DEBUG, "ventilator is peer %s", hex);
        }
        break;
    case BP_SM_VENT_GONE:
        bp_log(BP_LOG_DEBUG, "the ventilator's connection is gone");
        break;
    default:
        break;
    }
}

static const struct bp_sinkm_ops sink_ops = {.send = sink_send,
                                             .begin = sink_begin,
                                             .abandon = sink_abandon,
                                             .total = sink_total,
                                             .result = sink_result,
                                             .acks_full = sink_acks_full,
                                             .files = sink_files,
                                             .note = sink_note};

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
    bp_sinkm_free(&k->sm); /* (its book too) */
    bp_sinkfiles_destroy(&k->files);
    bp_reorder_free(&k->ro);
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

/* The returned files of an F entry at p (avail bytes; see
 * journal_files()): each still in .bp-tmp is renamed into place (roll
 * forward: the result was accepted). Returns the bytes used, or 0 when
 * the entry makes no sense. */
static size_t sj_files(struct sink *k, uint64_t id, const uint8_t *p, size_t avail)
{
    if (avail < 3)
        return 0;
    uint16_t attempt = (uint16_t)(p[0] << 8 | p[1]);
    int n = p[2];
    size_t i = 3;
    char name[BP_NAME_MAX + 1];
    for (int idx = 0; idx < n; idx++) {
        if (avail - i < 2)
            return 0;
        size_t len = (size_t)(p[i] << 8 | p[i + 1]);
        if (avail - i - 2 < len || bp_path_copy(name, (const char *)p + i + 2, len, 0) != BP_OK)
            return 0;
        if (k->o->resume) /* (a journal about to be refused is only read) */
            bp_sinkfiles_restore(k->files, id, attempt, (uint8_t)idx, name);
        i += 2 + len;
    }
    return i;
}

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
        if (fl & SJ_FILES) {
            size_t used = sj_files(k, id, st->pend + i, st->pend_len - i);
            if (!used)
                return BP_EPROTO;
            i += used;
        }
        int ok = fl & SJ_OK;
        int fresh = bp_rbook_restore(&k->sm.rb, id, ok);
        if (fresh < 0)
            return BP_EPROTO;
        if (!fresh)
            continue;
        if (fl & SJ_HALTED)
            k->sm.halted++;
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
        bp_sinkm_begin(&st->k->sm, st->batch, 1, bp_now_ms());
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

/* Opens --output for a journaled run: a new batch truncates it (without
 * --resume; an unfinished journal was refused already), --resume with no
 * batch appends, and a resumed batch cuts it to what the journal says was
 * committed (what came after was never acknowledged and comes again). */
static int open_output(struct sink *k, int resumed, uint64_t committed)
{
    const struct bp_opts *o = k->o;
    if (!o->resume) {
        k->out = fopen(o->output, "wb");
        return BP_OK;
    }
    if (!resumed) {
        k->out = fopen(o->output, "ab"); /* --resume never truncates */
        return BP_OK;
    }
    int fd = open(o->output, O_RDWR | O_CLOEXEC);
    struct stat sb;
    if (fd < 0 || fstat(fd, &sb) != 0) {
        bp_log(BP_LOG_ERROR, "cannot continue %s: %s", o->output, strerror(errno));
        if (fd >= 0)
            close(fd);
        return BP_EIO;
    }
    if ((uint64_t)sb.st_size < committed) {
        bp_log(BP_LOG_ERROR,
               "%s is shorter than journal %s says (%" PRId64 " < %" PRIu64
               " bytes): refusing to resume",
               o->output, k->jpath, (int64_t)sb.st_size, committed);
        close(fd);
        return BP_EUSAGE;
    }
    if (ftruncate(fd, (off_t)committed) != 0 || lseek(fd, 0, SEEK_END) < 0) {
        bp_log(BP_LOG_ERROR, "cannot continue %s: %s", o->output, strerror(errno));
        close(fd);
        return BP_EIO;
    }
    k->out = fdopen(fd, "ab");
    if (!k->out)
        close(fd);
    return BP_OK;
}

/* --resume, after the journal: the accepted files it rolled forward are
 * in place; the rest of .bp-tmp goes. */
static void files_restored(struct sink *k)
{
    bp_sinkfiles_restored(k->files);
    if (k->files->rolled)
        bp_log(BP_LOG_INFO, "%" PRId64 " returned files accepted before the crash put in place",
               k->files->rolled);
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
    if (o->resume)
        files_restored(k);
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
    int rc2 = open_output(k, st.batch != 0, st.out_off);
    if (rc2 != BP_OK)
        return rc2;
    if (!k->out || fseeko(k->out, 0, SEEK_END) != 0) {
        bp_log(BP_LOG_ERROR, "cannot write %s: %s", o->output, strerror(errno));
        return BP_EIO;
    }
    k->own_out = 1;
    if (st.batch) {
        if (st.total >= 0 && bp_rbook_close(&k->sm.rb, (uint64_t)st.total) < 0) {
            bp_log(BP_LOG_ERROR, "journal %s: results for tasks beyond the batch's %" PRId64,
                   k->jpath, st.total);
            return BP_EUSAGE;
        }
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

/* Without --journal/--resume: a journal at the default path (FILE.journal,
 * which --resume makes) still describes an unfinished batch whose results
 * are in FILE. Starting afresh would truncate them: refused. */
static int refuse_unfinished(const struct bp_opts *o)
{
    char what[1200];
    snprintf(what, sizeof what, "whose results are in %s (left as it is)", o->output);
    return bp_journal_refuse_unfinished(o->output, ".journal", SJ_MAGIC, what);
}

/* --output-dir (made if missing; not a directory: refused, exit 2). */
static int files_open(struct sink *k)
{
    const struct bp_opts *o = k->o;
    char err[1200];
    struct bp_sinkfiles_cfg fc = {.dir = o->output_dir,
                                  .max_size = (uint64_t)o->max_return_size,
                                  .stale_ms = (int64_t)o->hb_ms * o->liveness,
                                  .sync = o->sync,
                                  .send = sink_send,
                                  .arg = k};
    k->files = bp_sinkfiles_new(&fc, err, sizeof err);
    /* A file size limit (ulimit -f) makes a write fail with EFBIG, which
     * refuses that upload, instead of killing the sink. */
    if (k->files && o->output_dir)
        signal(SIGXFSZ, SIG_IGN);
    if (k->files)
        return BP_OK;
    bp_log(BP_LOG_ERROR, "%s", err);
    return BP_EUSAGE;
}

static int sink_open(struct sink *k)
{
    const struct bp_opts *o = k->o;
    char err[320];
    if (files_open(k) != BP_OK)
        return BP_EUSAGE;
    if (k->io && k->io->out) {
        k->out = k->io->out;
    } else if (o->journal || o->resume) {
        int rc = sink_restore(k);
        if (rc != BP_OK)
            return rc;
    } else if (o->output && strcmp(o->output, "-") != 0) {
        int rc = refuse_unfinished(o);
        if (rc != BP_OK)
            return rc;
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
    int rc = bp_role_ctx(k->io, &k->ctx, &k->own_ctx);
    if (rc != BP_OK)
        return rc;
    rc = bp_role_sec_open(&k->sec, o, k->ctx, k->io);
    if (rc != BP_OK)
        return rc;
    struct bp_sockcfg c = bp_role_sockcfg(o);
    bp_role_sec_server(&k->sec, &c);
    /* A pack of small results, or one result of up to --max-msg-size;
     * and a PUT chunk whatever --max-msg-size says. */
    c.max_msg = o->max_msg + BP_PACK_BYTES + 64 + BP_ID_MAX + BP_INFO_FIXED + BP_INFO_HEAD_MAX;
    if (c.max_msg < SINK_PUT_MAX)
        c.max_msg = SINK_PUT_MAX;
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
    k->sm.malformed++;
    bp_role_note_malformed(k->sm.malformed, rc, "",
                           rc == BP_EPROTO ? "; plain strings need --raw" : NULL);
}

/* How a turn of the loop ends. */
enum turn { GO_ON = 0, DONE, FAILED };

/* One frame received. Returns GO_ON, or DONE when --once has its batch
 * (or raw count). */
static int on_frame(struct sink *k, zmq_msg_t *rid, zmq_msg_t *m, int *result,
                    struct bp_report *rep)
{
    const struct bp_opts *o = k->o;
    if (o->raw) {
        write_rec(k, zmq_msg_data(m), zmq_msg_size(m));
        k->raw_count++;
        return o->once && o->count && k->raw_count >= o->count ? DONE : GO_ON;
    }
    struct bp_msg msg;
    int rc = bp_msg_decode(&msg, zmq_msg_data(m), zmq_msg_size(m), (uint32_t)o->max_msg);
    if (rc != BP_OK) {
        note_malformed(k, rc);
        return GO_ON;
    }
    if (msg.type == BP_MSG_PUT) {
        int64_t now = bp_now_ms();
        int ours = k->sm.active && msg.batch == k->sm.batch;
        if (ours)
            k->sm.last_activity = now;
        bp_sinkfiles_put(k->files, zmq_msg_data(rid), zmq_msg_size(rid), &msg, &k->sm.rb, ours,
                         now);
        return GO_ON;
    }
    int host_key = -1; /* the sender has the host's own key (CURVE); -1: plain mode, unknown */
    if (k->sec.on) {
        const char *uid = zmq_msg_gets(m, "User-Id");
        host_key = uid && !strcmp(uid, k->sec.me.pub);
    }
    bp_sinkm_on_msg(&k->sm, zmq_msg_data(rid), zmq_msg_size(rid), m, &msg, host_key, bp_now_ms());
    if (k->sm.active && bp_rbook_complete(&k->sm.rb)) {
        *result = batch_finish(k, rep, 1);
        if (o->once)
            return DONE;
    }
    return GO_ON;
}

/* Reads what is there, READ_BURST frames at most. Returns a turn's end. */
static int read_burst(struct sink *k, zmq_msg_t *rid, zmq_msg_t *m, int *result,
                      struct bp_report *rep)
{
    for (int n = 0; n < READ_BURST; n++) {
        int rc = k->o->raw ? bp_recv_raw(k->sock, m, ZMQ_DONTWAIT)
                           : bp_recv_from(k->sock, rid, m, ZMQ_DONTWAIT);
        if (rc == BP_ETIMEDOUT || rc == BP_EINTR)
            return GO_ON;
        if (rc == BP_EPROTO) {
            note_malformed(k, rc);
            continue;
        }
        if (rc != BP_OK) {
            bp_log(BP_LOG_ERROR, "receive failed: %s", zmq_strerror(errno));
            *result = BP_EZMQ;
            return FAILED;
        }
        if (on_frame(k, rid, m, result, rep) == DONE)
            return DONE;
    }
    return GO_ON;
}

/* How long to sleep: to the inactivity timeout or the journal's sync, at
 * most 1 s (250 ms when drawing progress). -1: the batch timed out now. */
static long sink_timeout(struct sink *k, int64_t now)
{
    const struct bp_opts *o = k->o;
    int64_t wake = INT64_MAX;
    if (o->timeout_ms && k->sm.active) {
        wake = k->sm.last_activity + o->timeout_ms;
        if (wake <= now)
            return -1;
    }
    if (k->j && k->unsynced && o->sync == BP_SYNC_INTERVAL && k->next_sync < wake)
        wake = k->next_sync;
    return bp_role_timeout(now, wake, k->progress && k->sm.active ? 250 : 1000);
}

/* The end of a turn: what it brought is acknowledged in one message (with
 * a journal: once it is on record, see journal_commit()); metrics, held
 * results, progress. */
static void after_turn(struct sink *k, int64_t *next_draw)
{
    bp_sinkfiles_flush(k->files);
    if (k->sm.active)
        commit_then_ack(k, 0);
    bp_sinkfiles_timer(k->files, bp_now_ms());
    write_metrics(k, 0);
    if (k->sm.nhold)
        bp_sinkm_on_timer(&k->sm, bp_now_ms());
    int64_t now = bp_now_ms();
    if (k->progress && k->sm.active && now >= *next_draw) {
        char line[96];
        bp_stats_progress(&k->st, k->sm.rb.total, now, line, sizeof line);
        bp_role_progress_line(line);
        *next_draw = now + 250;
    }
}

/* The loop: wait, read, act. Returns the run's outcome. */
static int sink_loop(struct sink *k, struct bp_report *rep)
{
    const struct bp_opts *o = k->o;
    int result = BP_OK, end = GO_ON;
    int64_t next_draw = 0;
    zmq_msg_t rid, m;
    zmq_msg_init(&rid);
    zmq_msg_init(&m);
    while (end == GO_ON) {
        if (k->sm.active && bp_rbook_complete(&k->sm.rb)) {
            /* A resumed batch whose last results were on record already
             * (the crash came before the summary): nothing more will come. */
            result = batch_finish(k, rep, 1);
            if (o->once)
                break;
        }
        if (bp_role_stopped(k->io)) {
            /* Stopping is not an error; a batch left incomplete is. */
            if (k->sm.active)
                result = batch_finish(k, rep, 0);
            end = DONE;
            break;
        }
        /* Flush before blocking, so results appear while the batch runs. */
        fflush(k->out);
        if (k->joblog)
            fflush(k->joblog);
        long tmo = sink_timeout(k, bp_now_ms());
        if (tmo < 0) {
            bp_log(BP_LOG_ERROR, "no result for %.1f s: giving up on the batch",
                   (double)o->timeout_ms / 1000.0);
            result = batch_finish(k, rep, 0);
            end = o->once ? DONE : GO_ON;
            continue;
        }
        zmq_pollitem_t it = {.socket = k->sock, .events = ZMQ_POLLIN};
        if (zmq_poll(&it, 1, tmo) < 0 && errno != EINTR) {
            bp_log(BP_LOG_ERROR, "poll failed: %s", zmq_strerror(errno));
            result = BP_EZMQ;
            break;
        }
        end = read_burst(k, &rid, &m, &result, rep);
        after_turn(k, &next_draw);
        if (k->io_error && k->j == NULL && k->jpath[0] && k->sm.active) {
            result = BP_EIO; /* the journal failed: stop rather than lose */
            end = FAILED;
        }
    }
    if (end == DONE && o->raw)
        bp_log(BP_LOG_INFO, "%" PRId64 " results", k->raw_count);
    zmq_msg_close(&rid);
    zmq_msg_close(&m);
    return result;
}

int bp_sink_run(const struct bp_opts *o, const struct bp_io *io, struct bp_report *rep)
{
    struct sink k = {.o = o, .io = io};
    struct bp_report dummy;
    if (!rep)
        rep = &dummy;
    memset(rep, 0, sizeof *rep);
    bp_stats_init(&k.st, bp_now_ms());
    bp_reorder_init(&k.ro);
    struct bp_sinkm_cfg smc = {.dead_ms = (int64_t)o->hb_ms * o->liveness,
                               .max_rec = (uint32_t)o->max_msg,
                               .eager_acks = !(o->journal || o->resume)};
    bp_sinkm_init(&k.sm, &smc, &sink_ops, &k);
    int rc = sink_open(&k);
    if (rc != BP_OK) {
        sink_close(&k);
        return rc;
    }
    k.progress = bp_role_progress(o);
    int result = sink_loop(&k, rep);
    write_metrics(&k, 1);
    if (o->raw)
        rep->ok = k.raw_count;
    rep->malformed = k.sm.malformed;
    sink_close(&k);
    if (k.io_error && (result == BP_OK || result == BP_EFAILED))
        result = BP_EIO;
    return result;
}
