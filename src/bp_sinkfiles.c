/* The sink's returned files (bp_sinkfiles.h): writes uploads into
 * DIR/.bp-tmp, checks and commits accepted ones. Owns the output
 * directory's descriptors and the uploads' temporary files; must not read
 * the journal or decide about results (bp_sinkm, bp_sink.c do). */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "bp.h"
#include "bp_internal.h"
#include "bp_path.h"
#include "bp_sinkfiles.h"

#define TMP_DIR ".bp-tmp"
#define KEPT_DIR ".bp-kept"

static void tmp_name(const struct bp_sinkfiles *f, char *buf, size_t len, uint64_t id,
                     uint16_t attempt, uint8_t idx)
{
    snprintf(buf, len, "%016" PRIx64 ".%" PRIu64 ".%u.%u", f->batch, id, (unsigned)attempt,
             (unsigned)idx);
}

/* A name from a peer, made printable for a log line. */
static void show(char *buf, size_t len, const char *name, size_t n)
{
    bp_printable(buf, len, name, n);
}

static int open_dir(const char *dir, char *err, size_t err_len)
{
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0 && errno == ENOENT && mkdir(dir, 0755) == 0)
        fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0)
        snprintf(err, err_len, "--output-dir %s: %s", dir,
                 errno == ENOTDIR ? "not a directory" : strerror(errno));
    return fd;
}

struct bp_sinkfiles *bp_sinkfiles_new(const struct bp_sinkfiles_cfg *cfg, char *err, size_t err_len)
{
    struct bp_sinkfiles *f = calloc(1, sizeof *f);
    struct bp_upload_cfg uc = {.max_size = cfg->max_size, .stale_ms = cfg->stale_ms};
    if (f)
        f->up = bp_uploads_new(&uc);
    if (!f || !f->up) {
        snprintf(err, err_len, "out of memory");
        if (f)
            free(f);
        return NULL;
    }
    f->c = *cfg;
    f->dirfd = f->tmpfd = -1;
    for (int i = 0; i < BP_UPLOAD_SLOTS; i++)
        f->fds[i] = -1;
    for (int i = 0; i < BP_SF_PEERS; i++)
        bp_pack_init(&f->peer[i].p);
    if (cfg->dir && (f->dirfd = open_dir(cfg->dir, err, err_len)) < 0) {
        bp_sinkfiles_destroy(&f);
        return NULL;
    }
    return f;
}

/* Gives up upload slot: its temporary file goes. */
static void drop_slot(struct bp_sinkfiles *f, int slot)
{
    if (f->fds[slot] >= 0) {
        close(f->fds[slot]);
        f->fds[slot] = -1;
    }
    const struct bp_upload *e = &f->up->u[slot];
    char tn[80];
    tmp_name(f, tn, sizeof tn, e->id, e->attempt, e->idx);
    if (f->tmpfd >= 0)
        unlinkat(f->tmpfd, tn, 0);
    bp_uploads_release(f->up, slot);
}

static void drop_by(struct bp_sinkfiles *f, int how, uint64_t id, uint16_t attempt, int64_t now)
{
    for (int s; (s = bp_uploads_next_drop(f->up, how, id, attempt, now)) >= 0;)
        drop_slot(f, s);
}

static void pending_clear(struct bp_sinkfiles *f)
{
    for (size_t i = 0; i < f->npend; i++)
        free(f->pend[i].name);
    f->npend = 0;
}

void bp_sinkfiles_destroy(struct bp_sinkfiles **fp)
{
    if (!fp || !*fp)
        return;
    struct bp_sinkfiles *f = *fp;
    for (int i = 0; i < BP_UPLOAD_SLOTS; i++)
        if (f->fds[i] >= 0)
            close(f->fds[i]); /* (temporaries stay: a resume may need them) */
    pending_clear(f);
    free(f->pend);
    for (int i = 0; i < BP_SF_PEERS; i++)
        bp_pack_free(&f->peer[i].p);
    bp_uploads_destroy(&f->up);
    if (f->tmpfd >= 0)
        close(f->tmpfd);
    if (f->dirfd >= 0)
        close(f->dirfd);
    free(f);
    *fp = NULL;
}

/* Makes (if missing) and opens DIR/.bp-tmp, never through a symlink. */
static void tmp_open(struct bp_sinkfiles *f)
{
    if (mkdirat(f->dirfd, TMP_DIR, 0700) == 0) {
        if (f->c.sync != BP_SYNC_NONE)
            fsync(f->dirfd); /* (its entry, before anything in it counts) */
    } else if (errno != EEXIST) {
        bp_log(BP_LOG_ERROR, "cannot make %s/" TMP_DIR ": %s", f->c.dir, strerror(errno));
    }
    f->tmpfd = openat(f->dirfd, TMP_DIR, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (f->tmpfd < 0)
        bp_log(BP_LOG_ERROR, "cannot open %s/" TMP_DIR ": %s", f->c.dir, strerror(errno));
}

/* Removes everything in .bp-tmp (and .bp-tmp itself when rm_dir). */
static void tmp_clear(struct bp_sinkfiles *f, int rm_dir)
{
    if (f->dirfd < 0)
        return;
    char path[4200];
    snprintf(path, sizeof path, "%s/" TMP_DIR, f->c.dir);
    if (f->tmpfd >= 0) {
        close(f->tmpfd);
        f->tmpfd = -1;
    }
    int rc = bp_path_rmtree(path);
    if (rc < 0)
        bp_log(BP_LOG_WARN, "cannot empty %s/" TMP_DIR ": %s", f->c.dir, strerror(-rc));
    if (rm_dir)
        return;
    tmp_open(f);
}

void bp_sinkfiles_begin(struct bp_sinkfiles *f, uint64_t batch, int restoring)
{
    drop_by(f, BP_UD_ALL, 0, 0, 0);
    pending_clear(f);
    f->batch = batch;
    if (f->dirfd < 0)
        return;
    if (!restoring) {
        tmp_clear(f, 0);
        return;
    }
    if (f->tmpfd >= 0)
        close(f->tmpfd);
    tmp_open(f);
}

void bp_sinkfiles_end(struct bp_sinkfiles *f)
{
    drop_by(f, BP_UD_ALL, 0, 0, 0);
    pending_clear(f);
    tmp_clear(f, 1);
}

void bp_sinkfiles_restored(struct bp_sinkfiles *f)
{
    tmp_clear(f, 0);
}

void bp_sinkfiles_timer(struct bp_sinkfiles *f, int64_t now)
{
    int s = bp_uploads_next_drop(f->up, BP_UD_STALE, 0, 0, now);
    if (s < 0)
        return;
    bp_log(BP_LOG_DEBUG, "uploads of task %" PRIu64 " silent too long: given up", f->up->u[s].id);
    drop_by(f, BP_UD_STALE, 0, 0, now);
}

void bp_sinkfiles_drop(struct bp_sinkfiles *f, uint64_t id)
{
    drop_by(f, BP_UD_ID, id, 0, 0);
}

void bp_sinkfiles_drop_attempt(struct bp_sinkfiles *f, uint64_t id, int attempt)
{
    if (attempt < 0)
        drop_by(f, BP_UD_ID, id, 0, 0);
    else
        drop_by(f, BP_UD_ATTEMPT, id, (uint16_t)attempt, 0);
}

/* ---- PUT and PUTACK ---- */

void bp_sinkfiles_flush(struct bp_sinkfiles *f)
{
    for (int i = 0; i < f->npeer; i++) {
        struct bp_sf_peer *p = &f->peer[i];
        if (bp_pack_finish(&p->p) == BP_OK)
            f->c.send(f->c.arg, p->rid, p->rid_len, p->p.p, p->p.len);
    }
    f->npeer = 0;
}

/* Packs one PUTACK for rid (a pack per peer, flushed when full). */
static void answer(struct bp_sinkfiles *f, const uint8_t *rid, size_t rid_len, uint64_t batch,
                   const struct bp_putack_rec *a)
{
    struct bp_sf_peer *p = NULL;
    for (int i = 0; i < f->npeer && !p; i++)
        if (f->peer[i].rid_len == rid_len && !memcmp(f->peer[i].rid, rid, rid_len) &&
            f->peer[i].batch == batch)
            p = &f->peer[i];
    if (!p && (f->npeer == BP_SF_PEERS || rid_len > sizeof p->rid))
        bp_sinkfiles_flush(f);
    if (!p && rid_len <= sizeof f->peer[0].rid) {
        p = &f->peer[f->npeer++];
        memcpy(p->rid, rid, rid_len);
        p->rid_len = rid_len;
        p->batch = batch;
        bp_pack_begin(&p->p, BP_MSG_PUTACK, batch);
    }
    if (p)
        bp_pack_putack(&p->p, a);
    if (p && p->p.n >= BP_SF_ACKS_MAX)
        bp_sinkfiles_flush(f); /* (what a worker takes in one PUTACK) */
}

/* Writes the chunk the table accepted. Returns BP_OK or BP_EIO (logged,
 * counted; the upload is dropped). */
static int write_chunk(struct bp_sinkfiles *f, const struct bp_up_decision *d,
                       const struct bp_put *u)
{
    int fd = f->fds[d->slot];
    char tn[80];
    if (d->fresh) {
        tmp_name(f, tn, sizeof tn, u->id, u->attempt, u->idx);
        fd = f->tmpfd < 0
                 ? -1
                 : openat(f->tmpfd, tn, O_RDWR | O_CREAT | O_TRUNC | O_NOFOLLOW | O_CLOEXEC, 0644);
        f->fds[d->slot] = fd;
    }
    size_t done = 0;
    while (fd >= 0 && done < u->len) {
        ssize_t n = pwrite(fd, u->data + done, u->len - done, (off_t)(u->offset + done));
        if (n <= 0)
            break;
        done += (size_t)n;
    }
    if (fd >= 0 && done == u->len)
        return BP_OK;
    int e = fd < 0 && f->tmpfd < 0 ? ENOENT : errno;
    char nm[BP_NAME_MAX * 4 + 1];
    show(nm, sizeof nm, u->name, u->name_len);
    bp_log(BP_LOG_ERROR,
           "cannot write returned file %s of task %" PRIu64 " into %s/" TMP_DIR ": %s", nm, u->id,
           f->c.dir, strerror(e));
    f->write_errors++;
    drop_slot(f, d->slot);
    return BP_EIO;
}

/* Upload slot is complete: synced per --sync (before its result can be
 * journaled) and closed while it waits for that result. */
static void upload_done(struct bp_sinkfiles *f, int slot)
{
    if (f->c.sync != BP_SYNC_NONE && fdatasync(f->fds[slot]) != 0)
        bp_log(BP_LOG_ERROR, "cannot sync a returned file of task %" PRIu64 ": %s",
               f->up->u[slot].id, strerror(errno));
    close(f->fds[slot]);
    f->fds[slot] = -1;
}

/* Whether a PUT for u's id may be taken now: -1 drop it unanswered
 * (foreign), else the decision's start (BUSY, or answered whole). */
static int admit(struct bp_sinkfiles *f, const struct bp_put *u, const struct bp_msg *m,
                 const struct bp_rbook *rb, int active, struct bp_up_decision *d)
{
    memset(d, 0, sizeof *d);
    d->slot = -1;
    if (f->dirfd < 0) {
        d->verdict = BP_UP_REFUSE;
        d->code = BP_FE_WRITE;
        if (!f->said_foreign++)
            bp_log(BP_LOG_ERROR, "a worker returns files but this sink has no --output-dir");
        return 1;
    }
    if (!active || m->batch != f->batch) {
        d->verdict = BP_UP_REFUSE; /* (its BEGIN comes within a heartbeat) */
        d->code = BP_FE_BUSY;
        return 1;
    }
    int place = bp_rbook_place(rb, u->id);
    if (place == BP_RB_FOREIGN)
        return -1;
    if (place == BP_RB_EARLY) {
        d->verdict = BP_UP_REFUSE; /* its EXTENT is on its way */
        d->code = BP_FE_BUSY;
        return 1;
    }
    if (place == BP_RB_DUP) {
        /* Final already: its result will be a duplicate. Nothing is
         * written; each chunk is acknowledged as if it were (the worker
         * takes no answer beyond what it sent), so the worker gets to its
         * result, which is acknowledged with the stored outcome. */
        d->verdict = BP_UP_ANSWER;
        d->received = u->offset + u->len;
        return 1;
    }
    return 0;
}

void bp_sinkfiles_put(struct bp_sinkfiles *f, const uint8_t *rid, size_t rid_len,
                      const struct bp_msg *m, const struct bp_rbook *rb, int active, int64_t now)
{
    struct bp_put u;
    bp_msg_put(m, &u);
    struct bp_up_decision d;
    int a = admit(f, &u, m, rb, active, &d);
    char nm[BP_NAME_MAX * 4 + 1];
    if (a < 0) {
        f->refused++;
        if (f->refused <= 5 || bp_log_enabled(BP_LOG_DEBUG))
            bp_log(BP_LOG_WARN,
                   "dropped a returned file for task %" PRIu64
                   ", an id the ventilator never announced",
                   u.id);
        return;
    }
    if (a == 0)
        bp_uploads_put(f->up, &u, rid, rid_len, now, &d);
    if (d.verdict == BP_UP_WRITE && write_chunk(f, &d, &u) != BP_OK) {
        d.verdict = BP_UP_REFUSE;
        d.code = BP_FE_WRITE;
    } else if (d.verdict == BP_UP_WRITE) {
        d.received = f->up->u[d.slot].received + u.len;
        if (bp_uploads_wrote(f->up, d.slot, u.len))
            upload_done(f, d.slot);
    }
    if (d.verdict == BP_UP_REFUSE && d.code != BP_FE_BUSY && d.code != BP_FE_WRITE) {
        f->refused++;
        show(nm, sizeof nm, u.name, u.name_len);
        bp_log(BP_LOG_WARN, "refused returned file %s of task %" PRIu64 ": %s", nm, u.id,
               d.code == BP_FE_SIZE    ? "over --max-return-size (or past its size)"
               : d.code == BP_FE_COUNT ? "too many files"
                                       : "bad or repeated name");
    } else if (d.verdict == BP_UP_REFUSE && d.code == BP_FE_WRITE) {
        f->refused++;
    }
    struct bp_putack_rec ack = {.id = u.id,
                                .attempt = u.attempt,
                                .idx = u.idx,
                                .status = d.verdict == BP_UP_REFUSE ? BP_PA_REFUSED : BP_PA_OK,
                                .code = d.verdict == BP_UP_REFUSE ? d.code : 0,
                                .received = d.verdict == BP_UP_REFUSE ? 0 : d.received};
    answer(f, rid, rid_len, m->batch, &ack);
}

/* ---- results: check, accept, commit ---- */

enum there { ABSENT = 0, SAME, OTHER };

/* Whether fd holds the same bytes as the regular file name opens to
 * beneath dfd (never following a symlink). */
static int compare_at(int dfd, const char *name, int fd)
{
    int ex = bp_path_open_beneath(dfd, name, O_RDONLY | O_NONBLOCK, 0, 0);
    if (ex == -ENOENT)
        return ABSENT;
    if (ex < 0)
        return OTHER; /* a symlink or a file in the way */
    struct stat st;
    int same = fstat(ex, &st) == 0 && S_ISREG(st.st_mode) && bp_path_same_bytes(ex, fd) == 1;
    close(ex);
    return same ? SAME : OTHER;
}

/* What is at upload slot's name: under DIR, or waiting for this turn's
 * commit under the same name. */
static int what_is_there(struct bp_sinkfiles *f, int slot, int fd)
{
    const struct bp_upload *e = &f->up->u[slot];
    for (size_t i = f->npend; i-- > 0;) {
        const struct bp_sf_pending *p = &f->pend[i];
        if (p->name_len != e->name_len || memcmp(p->name, e->name, e->name_len) != 0)
            continue;
        char tn[80];
        tmp_name(f, tn, sizeof tn, p->id, p->attempt, p->idx);
        int r = p->same ? ABSENT : compare_at(f->tmpfd, tn, fd);
        if (r != ABSENT)
            return r;
    }
    return compare_at(f->dirfd, e->name, fd);
}

/* Opens upload slot's temporary file to read it. */
static int open_tmp(const struct bp_sinkfiles *f, int slot)
{
    const struct bp_upload *e = &f->up->u[slot];
    char tn[80];
    tmp_name(f, tn, sizeof tn, e->id, e->attempt, e->idx);
    return f->tmpfd < 0 ? -1 : openat(f->tmpfd, tn, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
}

int bp_sinkfiles_check(struct bp_sinkfiles *f, const struct bp_result_rec *r, char *why,
                       size_t why_len)
{
    if (f->dirfd < 0 || !bp_uploads_complete(f->up, r->id, r->attempt, r->nfiles)) {
        f->torn++;
        return BP_SF_TORN;
    }
    for (int i = 0; i < r->nfiles; i++) {
        int s = bp_uploads_find(f->up, r->id, r->attempt, (uint8_t)i);
        int fd = s < 0 ? -1 : open_tmp(f, s);
        int t = fd < 0 ? OTHER : what_is_there(f, s, fd);
        if (fd >= 0)
            close(fd);
        if (s >= 0)
            f->same[s] = t == SAME;
        if (t != OTHER)
            continue;
        char nm[BP_NAME_MAX * 4 + 1] = "?";
        if (s >= 0)
            show(nm, sizeof nm, f->up->u[s].name, f->up->u[s].name_len);
        snprintf(why, why_len, "exists with other contents: %s", nm);
        f->conflicts++;
        return BP_SF_CONFLICT;
    }
    return BP_SF_READY;
}

static int pending_push(struct bp_sinkfiles *f, const struct bp_upload *e, int same)
{
    if (f->npend == f->pend_cap) {
        size_t cap = f->pend_cap ? f->pend_cap * 2 : 64;
        struct bp_sf_pending *p = realloc(f->pend, cap * sizeof *p);
        if (!p)
            return BP_ENOMEM;
        f->pend = p;
        f->pend_cap = cap;
    }
    char *name = malloc((size_t)e->name_len + 1);
    if (!name)
        return BP_ENOMEM;
    memcpy(name, e->name, (size_t)e->name_len + 1);
    f->pend[f->npend++] = (struct bp_sf_pending){.id = e->id,
                                                 .size = e->size,
                                                 .attempt = e->attempt,
                                                 .idx = e->idx,
                                                 .same = (uint8_t)same,
                                                 .name_len = e->name_len,
                                                 .name = name};
    return BP_OK;
}

size_t bp_sinkfiles_accept(struct bp_sinkfiles *f, const struct bp_result_rec *r)
{
    for (int i = 0; i < r->nfiles; i++) {
        int s = bp_uploads_find(f->up, r->id, r->attempt, (uint8_t)i);
        if (s < 0)
            continue; /* (checked just before: cannot happen) */
        if (pending_push(f, &f->up->u[s], f->same[s]) != BP_OK)
            bp_log(BP_LOG_ERROR,
                   "out of memory: returned file of task %" PRIu64 " left in " TMP_DIR
                   " until a resume",
                   r->id);
        bp_uploads_release(f->up, s);
    }
    /* Their names in .bp-tmp too: the journal's F entry comes next. */
    if (f->c.sync != BP_SYNC_NONE && fsync(f->tmpfd) != 0)
        bp_log(BP_LOG_ERROR, "cannot sync %s/" TMP_DIR ": %s", f->c.dir, strerror(errno));
    drop_by(f, BP_UD_OTHERS, r->id, r->attempt, 0);
    return f->npend;
}

const struct bp_sf_pending *bp_sinkfiles_pending(const struct bp_sinkfiles *f, size_t *n)
{
    *n = f->npend;
    return f->pend;
}

/* An accepted upload that cannot go to its name: moved to .bp-kept as
 * evidence, counted, one line. */
static void keep(struct bp_sinkfiles *f, const char *tn, const char *name, const char *why)
{
    char nm[BP_NAME_MAX * 4 + 1];
    show(nm, sizeof nm, name, strlen(name));
    f->kept++;
    if (mkdirat(f->dirfd, KEPT_DIR, 0700) != 0 && errno != EEXIST) {
        bp_log(BP_LOG_ERROR, "returned file %s: %s; cannot keep its bytes: %s", nm, why,
               strerror(errno));
        return;
    }
    int kd = openat(f->dirfd, KEPT_DIR, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (kd < 0 || renameat(f->tmpfd, tn, kd, tn) != 0)
        bp_log(BP_LOG_ERROR, "returned file %s: %s; cannot keep its bytes: %s", nm, why,
               strerror(errno));
    else
        bp_log(BP_LOG_ERROR, "returned file %s: %s; its bytes are kept in %s/" KEPT_DIR "/%s", nm,
               why, f->c.dir, tn);
    if (kd >= 0)
        close(kd);
}

/* Renames the temporary of (id, attempt, idx) to name beneath DIR, if it
 * is still there; a name already there with the same bytes just takes the
 * temporary away. Never overwrites. */
static int place(struct bp_sinkfiles *f, uint64_t id, uint16_t attempt, uint8_t idx,
                 const char *name)
{
    char tn[80];
    tmp_name(f, tn, sizeof tn, id, attempt, idx);
    struct stat st;
    if (f->tmpfd < 0 || fstatat(f->tmpfd, tn, &st, AT_SYMLINK_NOFOLLOW) != 0)
        return 0; /* placed before (a resume), or never there */
    int tf = openat(f->tmpfd, tn, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
    int t = tf < 0 ? OTHER : compare_at(f->dirfd, name, tf);
    if (tf >= 0)
        close(tf);
    if (t == SAME) {
        unlinkat(f->tmpfd, tn, 0);
    } else if (t == OTHER) {
        keep(f, tn, name, "something else is there");
        return 0;
    } else {
        const char *leaf;
        int pd = bp_path_parent_beneath(f->dirfd, name, 1, &leaf);
        if (pd < 0 || renameat(f->tmpfd, tn, pd, leaf) != 0) {
            keep(f, tn, name, strerror(pd < 0 ? -pd : errno));
            if (pd >= 0)
                close(pd);
            return 0;
        }
        if (f->c.sync != BP_SYNC_NONE && fsync(pd) != 0)
            bp_log(BP_LOG_WARN, "cannot sync the directory of a returned file: %s",
                   strerror(errno));
        close(pd);
    }
    f->files++;
    f->bytes += st.st_size;
    return 1;
}

void bp_sinkfiles_commit(struct bp_sinkfiles *f)
{
    for (size_t i = 0; i < f->npend; i++) {
        const struct bp_sf_pending *p = &f->pend[i];
        place(f, p->id, p->attempt, p->idx, p->name);
    }
    pending_clear(f);
}

void bp_sinkfiles_restore(struct bp_sinkfiles *f, uint64_t id, uint16_t attempt, uint8_t idx,
                          const char *name)
{
    f->rolled += place(f, id, attempt, idx, name);
}
