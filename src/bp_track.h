/* Task tracking at the sink: which task ids have been seen (duplicate
 * suppression, missing lists) and a reorder buffer for --ordered output. */
#ifndef BP_TRACK_H
#define BP_TRACK_H

#include <stddef.h>
#include <stdint.h>
#include <zmq.h>

/* A growable bitmap of task ids. */
struct bp_idset {
    uint64_t *bits;
    size_t words;
};

/* Highest task id the sink tracks before the batch size is known: a
 * garbage id must not make it allocate gigabytes. */
#define BP_IDSET_LIMIT ((uint64_t)1 << 32)

void bp_idset_init(struct bp_idset *s);
void bp_idset_free(struct bp_idset *s);

/* Marks id. Returns 1 if it was new, 0 if already set, -1 if id is at or
 * over BP_IDSET_LIMIT or memory ran out. */
int bp_idset_add(struct bp_idset *s, uint64_t id);

/* Returns 1 if id is set. */
int bp_idset_has(const struct bp_idset *s, uint64_t id);

/* Returns how many ids are set. */
int64_t bp_idset_count(const struct bp_idset *s);

/* Holds out-of-order results until the ones before them have arrived.
 * Slots are a ring indexed by id - next; each holds a moved zmq_msg_t. */
struct bp_reorder {
    uint64_t next; /* the id to write next */
    zmq_msg_t *msgs;
    uint8_t *state; /* 0 empty, 1 result, 2 skip (failed task) */
    size_t cap;     /* power of two */
    size_t held;
};

/* How far ahead of the next id to write a result may be held: bounds the
 * sink's memory (and keeps 32-bit size arithmetic far from overflow). */
#define BP_REORDER_WINDOW ((uint64_t)1 << 20)

void bp_reorder_init(struct bp_reorder *r);
void bp_reorder_free(struct bp_reorder *r);

/* Files result id. msg is moved in (left empty) unless skip, which marks
 * the id as having no output. Returns 0, or -1 on an id below next, at
 * or past next + BP_REORDER_WINDOW, already held, or out of memory. */
int bp_reorder_put(struct bp_reorder *r, uint64_t id, zmq_msg_t *msg, int skip);

/* If the result for r->next is here, moves it into msg (skip entries give
 * *skip = 1 and leave msg alone), advances next and returns 1; else 0. */
int bp_reorder_pop(struct bp_reorder *r, zmq_msg_t *msg, int *skip);

/* Drops whatever is held below id and moves next up to id (no-op when
 * next is already there): those ids were written elsewhere. */
void bp_reorder_skip_to(struct bp_reorder *r, uint64_t id);

#endif
