/* The sink's book of one batch (bp_rbook.h): pure bookkeeping over three
 * id bitmaps. Owns nothing but those; must not do I/O or read a clock. */
#include <string.h>

#include "bp.h"
#include "bp_frame.h"
#include "bp_rbook.h"

void bp_rbook_init(struct bp_rbook *b)
{
    memset(b, 0, sizeof *b);
    b->total = -1;
    bp_idset_init(&b->seen);
    bp_idset_init(&b->failed);
    bp_idset_init(&b->tried);
}

void bp_rbook_free(struct bp_rbook *b)
{
    bp_idset_free(&b->seen);
    bp_idset_free(&b->failed);
    bp_idset_free(&b->tried);
    bp_rbook_init(b);
}

int bp_rbook_extent(struct bp_rbook *b, uint64_t n)
{
    if (b->total >= 0 && n > (uint64_t)b->total)
        return -1;
    if (n <= b->extent)
        return 0;
    b->extent = n;
    return 1;
}

int bp_rbook_close(struct bp_rbook *b, uint64_t total)
{
    if (b->total >= 0)
        return total == (uint64_t)b->total ? 0 : -1;
    /* (the ids accepted so far are below the extent) */
    if (total > (uint64_t)INT64_MAX / 2 || total < b->extent)
        return -1;
    b->total = (int64_t)total;
    b->extent = total;
    return 1;
}

static void advance_low(struct bp_rbook *b)
{
    while (bp_idset_has(&b->seen, b->low))
        b->low++;
}

int bp_rbook_result(struct bp_rbook *b, uint64_t id, uint16_t attempt, int ok, int final,
                    uint8_t *ack)
{
    if (id >= b->extent) {
        if (b->total >= 0 || id - b->extent >= BP_RBOOK_EARLY_WINDOW) {
            b->foreign++;
            return BP_RB_FOREIGN;
        }
        b->early++;
        return BP_RB_EARLY;
    }
    /* Below low: a late duplicate, answered below. */
    if (id >= b->low && id - b->low >= BP_RBOOK_ID_WINDOW) {
        b->foreign++;
        return BP_RB_FOREIGN;
    }
    if (bp_idset_has(&b->seen, id)) {
        b->dups++;
        *ack = bp_idset_has(&b->failed, id) ? BP_ACK_FAILED : BP_ACK_OK;
        return BP_RB_DUP;
    }
    if (!ok && !final) {
        if (bp_idset_add(&b->tried, id) < 0)
            return BP_RB_NOMEM;
        b->retried++;
        *ack = BP_ACK_RETRY;
        return BP_RB_RETRY;
    }
    if (bp_idset_add(&b->seen, id) < 0)
        return BP_RB_NOMEM;
    if (!ok && bp_idset_add(&b->failed, id) < 0)
        return BP_RB_NOMEM; /* (seen stays: a failure remembered as ok is only a count off) */
    advance_low(b);
    if (ok)
        b->ok++;
    else
        b->failed_n++;
    if (attempt > 1) {
        b->later += attempt - 1;
        if (ok && !bp_idset_has(&b->tried, id))
            b->recovered++;
    }
    *ack = ok ? BP_ACK_OK : BP_ACK_FAILED;
    return BP_RB_ACCEPT;
}

int bp_rbook_place(const struct bp_rbook *b, uint64_t id)
{
    if (id >= b->extent)
        return b->total >= 0 || id - b->extent >= BP_RBOOK_EARLY_WINDOW ? BP_RB_FOREIGN
                                                                        : BP_RB_EARLY;
    if (id >= b->low && id - b->low >= BP_RBOOK_ID_WINDOW)
        return BP_RB_FOREIGN;
    return bp_idset_has(&b->seen, id) ? BP_RB_DUP : BP_RB_ACCEPT;
}

int bp_rbook_restore(struct bp_rbook *b, uint64_t id, int ok)
{
    int fresh = bp_idset_add(&b->seen, id);
    if (fresh < 0)
        return -1;
    if (!fresh)
        return 0;
    if (!ok && bp_idset_add(&b->failed, id) < 0)
        return -1;
    if (ok)
        b->ok++;
    else
        b->failed_n++;
    /* It was accepted, so it was announced. */
    if (id >= b->extent)
        b->extent = id + 1;
    advance_low(b);
    return 1;
}

int bp_rbook_complete(const struct bp_rbook *b)
{
    return b->total >= 0 && b->low >= (uint64_t)b->total;
}

int64_t bp_rbook_missing(const struct bp_rbook *b)
{
    if (b->total < 0)
        return 0;
    int64_t have = b->ok + b->failed_n;
    return have < b->total ? b->total - have : 0;
}

int64_t bp_rbook_redelivered(const struct bp_rbook *b)
{
    int64_t r = b->later - b->retried;
    return r > 0 ? r : 0;
}
