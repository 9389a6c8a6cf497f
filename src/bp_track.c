/* The sink's id bitmaps and the --ordered reorder buffer (bp_track.h).
 * Owns the bitmaps and the messages held for reordering; must not do I/O
 * or read a clock. */
#include <stdlib.h>
#include <string.h>

#include "bp_track.h"

void bp_idset_init(struct bp_idset *s)
{
    s->bits = NULL;
    s->words = 0;
}

void bp_idset_free(struct bp_idset *s)
{
    free(s->bits);
    bp_idset_init(s);
}

int bp_idset_add(struct bp_idset *s, uint64_t id)
{
    if (id >= BP_IDSET_LIMIT)
        return -1;
    size_t w = (size_t)(id / 64);
    if (w >= s->words) {
        size_t n = s->words ? s->words : 16;
        while (n <= w)
            n *= 2;
        uint64_t *p = realloc(s->bits, n * sizeof *p);
        if (!p)
            return -1;
        memset(p + s->words, 0, (n - s->words) * sizeof *p);
        s->bits = p;
        s->words = n;
    }
    uint64_t bit = (uint64_t)1 << (id % 64);
    if (s->bits[w] & bit)
        return 0;
    s->bits[w] |= bit;
    return 1;
}

int bp_idset_has(const struct bp_idset *s, uint64_t id)
{
    size_t w = (size_t)(id / 64);
    return w < s->words && (s->bits[w] >> (id % 64) & 1);
}

int64_t bp_idset_count(const struct bp_idset *s)
{
    int64_t n = 0;
    for (size_t i = 0; i < s->words; i++)
        n += __builtin_popcountll(s->bits[i]);
    return n;
}

void bp_reorder_init(struct bp_reorder *r)
{
    memset(r, 0, sizeof *r);
}

void bp_reorder_free(struct bp_reorder *r)
{
    for (size_t i = 0; i < r->cap; i++)
        if (r->state[i] == 1)
            zmq_msg_close(&r->msgs[i]);
    free(r->msgs);
    free(r->state);
    bp_reorder_init(r);
}

static int grow(struct bp_reorder *r, size_t need)
{
    size_t cap = r->cap ? r->cap : 64;
    while (cap <= need)
        cap *= 2;
    zmq_msg_t *m = calloc(cap, sizeof *m);
    uint8_t *st = calloc(cap, 1);
    if (!m || !st) {
        free(m);
        free(st);
        return -1;
    }
    /* Re-seat the held entries at their new ring positions. */
    for (size_t i = 0; i < r->cap; i++) {
        uint64_t id = r->next + i;
        size_t from = (size_t)(id & (r->cap - 1));
        size_t to = (size_t)(id & (cap - 1));
        st[to] = r->state[from];
        if (st[to] == 1)
            memcpy(&m[to], &r->msgs[from], sizeof m[to]);
    }
    free(r->msgs);
    free(r->state);
    r->msgs = m;
    r->state = st;
    r->cap = cap;
    return 0;
}

int bp_reorder_put(struct bp_reorder *r, uint64_t id, zmq_msg_t *msg, int skip)
{
    if (id < r->next)
        return -1;
    uint64_t off = id - r->next;
    if (off >= r->cap && (off >= BP_REORDER_WINDOW || grow(r, (size_t)off) != 0))
        return -1;
    size_t i = (size_t)(id & (r->cap - 1));
    if (r->state[i])
        return -1;
    if (skip) {
        r->state[i] = 2;
    } else {
        zmq_msg_init(&r->msgs[i]);
        zmq_msg_move(&r->msgs[i], msg);
        r->state[i] = 1;
    }
    r->held++;
    return 0;
}

int bp_reorder_pop(struct bp_reorder *r, zmq_msg_t *msg, int *skip)
{
    if (!r->cap)
        return 0;
    size_t i = (size_t)(r->next & (r->cap - 1));
    if (!r->state[i])
        return 0;
    *skip = r->state[i] == 2;
    if (!*skip) {
        zmq_msg_move(msg, &r->msgs[i]);
        zmq_msg_close(&r->msgs[i]);
    }
    r->state[i] = 0;
    r->next++;
    r->held--;
    return 1;
}

void bp_reorder_skip_to(struct bp_reorder *r, uint64_t id)
{
    while (r->next < id) {
        if (r->cap) {
            size_t i = (size_t)(r->next & (r->cap - 1));
            if (r->state[i] == 1)
                zmq_msg_close(&r->msgs[i]);
            if (r->state[i])
                r->held--;
            r->state[i] = 0;
        }
        r->next++;
        if (!r->held && r->next < id)
            r->next = id; /* nothing left to drop on the way */
    }
}
