/* The sink's upload table (bp_upload.h): decisions for PUT chunks and
 * which uploads to give up. Owns one fixed array; must not do I/O, read a
 * clock or log. */
#include <stdlib.h>
#include <string.h>

#include "bp.h"
#include "bp_upload.h"

struct bp_uploads *bp_uploads_new(const struct bp_upload_cfg *cfg)
{
    struct bp_uploads *t = calloc(1, sizeof *t);
    if (!t)
        return NULL;
    t->u = calloc(BP_UPLOAD_SLOTS, sizeof *t->u);
    if (!t->u) {
        free(t);
        return NULL;
    }
    t->c = *cfg;
    return t;
}

void bp_uploads_destroy(struct bp_uploads **t)
{
    if (!t || !*t)
        return;
    for (int i = 0; i < BP_UPLOAD_SLOTS; i++)
        free((*t)->u[i].name);
    free((*t)->u);
    free(*t);
    *t = NULL;
}

int bp_uploads_find(const struct bp_uploads *t, uint64_t id, uint16_t attempt, uint8_t idx)
{
    for (int i = 0; i < BP_UPLOAD_SLOTS; i++) {
        const struct bp_upload *e = &t->u[i];
        if (e->used && e->id == id && e->attempt == attempt && e->idx == idx)
            return i;
    }
    return -1;
}

/* Whether another idx of the attempt already has this name. */
static int name_taken(const struct bp_uploads *t, const struct bp_put *u)
{
    for (int i = 0; i < BP_UPLOAD_SLOTS; i++) {
        const struct bp_upload *e = &t->u[i];
        if (e->used && e->id == u->id && e->attempt == u->attempt && e->idx != u->idx &&
            e->name_len == u->name_len && memcmp(e->name, u->name, u->name_len) == 0)
            return 1;
    }
    return 0;
}

/* Every entry of the attempt heard from now (its files come one after
 * another: a finished one waits for the last). */
static void touch(struct bp_uploads *t, uint64_t id, uint16_t attempt, int64_t now)
{
    for (int i = 0; i < BP_UPLOAD_SLOTS; i++) {
        struct bp_upload *e = &t->u[i];
        if (e->used && e->id == id && e->attempt == attempt)
            e->last = now;
    }
}

static void refuse(struct bp_up_decision *d, uint8_t code)
{
    d->verdict = BP_UP_REFUSE;
    d->code = code;
}

/* A chunk at offset 0 of an upload the table does not have: the limits,
 * then a free entry. */
static void open_upload(struct bp_uploads *t, const struct bp_put *u, int64_t now,
                        struct bp_up_decision *d)
{
    if (u->idx >= BP_UPLOAD_IDX_MAX) {
        refuse(d, BP_FE_COUNT);
        return;
    }
    if (u->size > t->c.max_size) {
        refuse(d, BP_FE_SIZE);
        return;
    }
    if (u->name_len == 0 || u->name_len > BP_NAME_MAX || name_taken(t, u)) {
        refuse(d, BP_FE_NAME);
        return;
    }
    int slot = -1;
    for (int i = 0; i < BP_UPLOAD_SLOTS && slot < 0 && t->open < BP_MAX_UPLOADS; i++)
        if (!t->u[i].used)
            slot = i;
    char *name = slot < 0 ? NULL : malloc((size_t)u->name_len + 1);
    if (!name) {
        refuse(d, BP_FE_BUSY); /* (or out of memory: later, too) */
        return;
    }
    struct bp_upload *e = &t->u[slot];
    memset(e, 0, sizeof *e);
    e->used = 1;
    e->name = name;
    e->id = u->id;
    e->attempt = u->attempt;
    e->idx = u->idx;
    e->size = u->size;
    e->name_len = u->name_len;
    memcpy(e->name, u->name, u->name_len);
    e->name[u->name_len] = '\0';
    t->open++;
    t->held++;
    touch(t, u->id, u->attempt, now);
    e->last = now;
    d->verdict = BP_UP_WRITE;
    d->slot = slot;
    d->fresh = 1;
}

void bp_uploads_put(struct bp_uploads *t, const struct bp_put *u, const uint8_t *rid,
                    size_t rid_len, int64_t now, struct bp_up_decision *d)
{
    memset(d, 0, sizeof *d);
    d->slot = -1;
    if (u->offset > u->size || u->size - u->offset < u->len) {
        refuse(d, BP_FE_SIZE); /* (the codec refuses these already) */
        return;
    }
    int slot = bp_uploads_find(t, u->id, u->attempt, u->idx);
    if (slot < 0 && u->offset != 0) {
        d->verdict = BP_UP_ANSWER; /* received 0: start over */
        return;
    }
    if (slot < 0)
        open_upload(t, u, now, d);
    else
        d->slot = slot;
    if (d->slot < 0)
        return;
    struct bp_upload *e = &t->u[d->slot];
    if (rid_len && rid_len <= sizeof e->rid) {
        memcpy(e->rid, rid, rid_len);
        e->rid_len = (uint8_t)rid_len;
    }
    if (d->fresh)
        return;
    if (u->size != e->size) {
        refuse(d, BP_FE_SIZE);
        return;
    }
    if (u->name_len != e->name_len || memcmp(u->name, e->name, u->name_len) != 0) {
        refuse(d, BP_FE_NAME);
        return;
    }
    d->received = e->received;
    if (u->offset == e->received && u->len > 0) {
        d->verdict = BP_UP_WRITE;
        touch(t, u->id, u->attempt, now);
    } else {
        d->verdict = BP_UP_ANSWER;
    }
}

int bp_uploads_wrote(struct bp_uploads *t, int slot, uint32_t len)
{
    if (slot < 0 || slot >= BP_UPLOAD_SLOTS || !t->u[slot].used)
        return 0;
    struct bp_upload *e = &t->u[slot];
    e->received += len;
    if (e->received > e->size)
        e->received = e->size; /* (cannot happen: the offset was checked) */
    if (e->done || e->received != e->size)
        return 0;
    e->done = 1;
    t->open--; /* (waits for its result; no longer in progress) */
    return 1;
}

int bp_uploads_complete(const struct bp_uploads *t, uint64_t id, uint16_t attempt, int nfiles)
{
    int have = 0;
    for (int i = 0; i < BP_UPLOAD_SLOTS; i++) {
        const struct bp_upload *e = &t->u[i];
        if (!e->used || e->id != id || e->attempt != attempt)
            continue;
        if (e->idx >= nfiles || e->received != e->size)
            return 0;
        have++;
    }
    /* (idx is unique per attempt, so have == nfiles is each one once) */
    return nfiles > 0 && have == nfiles;
}

static int drops(const struct bp_uploads *t, const struct bp_upload *e, int how, uint64_t id,
                 uint16_t attempt, int64_t now)
{
    switch (how) {
    case BP_UD_OTHERS:
        return e->id == id && e->attempt != attempt;
    case BP_UD_ATTEMPT:
        return e->id == id && e->attempt == attempt;
    case BP_UD_ID:
        return e->id == id;
    case BP_UD_STALE:
        return now - e->last >= t->c.stale_ms;
    case BP_UD_ALL:
        return 1;
    default:
        return 0;
    }
}

int bp_uploads_next_drop(const struct bp_uploads *t, int how, uint64_t id, uint16_t attempt,
                         int64_t now)
{
    /* Asked for every result the sink takes: without uploads (most
     * batches) no walk over the table, which cost 8x the whole pipeline. */
    if (t->held == 0)
        return -1;
    for (int i = 0; i < BP_UPLOAD_SLOTS; i++)
        if (t->u[i].used && drops(t, &t->u[i], how, id, attempt, now))
            return i;
    return -1;
}

void bp_uploads_release(struct bp_uploads *t, int slot)
{
    if (slot < 0 || slot >= BP_UPLOAD_SLOTS || !t->u[slot].used)
        return;
    struct bp_upload *e = &t->u[slot];
    if (!e->done)
        t->open--;
    t->held--;
    free(e->name);
    e->name = NULL;
    e->used = 0;
}
