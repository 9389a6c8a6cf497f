/*
 * Board labels and task requirements (issue #22): what a worker says it
 * is in its HELLO, and the ventilator's --require expression matched
 * against it.
 *
 * Labels travel as entries "NAME=VALUE" or "NAME" (a flag), each ended by
 * a NUL, at most BP_LABELS_MAX bytes in all (bp_frame.h). A NAME is 1 to
 * BP_LABEL_NAME_MAX bytes of [A-Za-z0-9_.-]; a VALUE up to
 * BP_LABEL_VALUE_MAX printable ASCII bytes (no NUL). Entries from a peer
 * that break these rules are skipped, one by one; nothing is allocated.
 *
 * --require: terms joined by ',' (and), each NAME (the label is there,
 * with or without a value) or NAME OP VALUE with OP one of = != >= <= >
 * <. = and != compare as numbers when both sides are numbers, else as
 * text; the others only as numbers (else the term fails). A number may
 * end in K, M, G or T (powers of 1024): mem>=2G. A label that is absent
 * fails every term but !=.
 *
 * Parsing and matching are pure; bp_labels_detect() reads the machine.
 */
#ifndef BP_LABELS_H
#define BP_LABELS_H

#include <stddef.h>
#include <stdint.h>

#define BP_LABEL_NAME_MAX 32
#define BP_LABEL_VALUE_MAX 255
#define BP_REQ_MAX 16 /* terms in one --require */

/* One label entry, pointing into the block it came from. */
struct bp_label {
    const char *name;
    size_t name_len;
    const char *value; /* NULL: a flag */
    size_t value_len;
};

/* The next valid entry of the block p[0..len) from *off (0 at first):
 * returns 1 with *l filled, 0 at the end. Invalid entries are skipped;
 * bytes after the last NUL are ignored. */
int bp_labels_next(const void *p, size_t len, size_t *off, struct bp_label *l);

/* Finds label name (NUL-terminated) in the block: 1 with *l filled, or 0. */
int bp_labels_find(const void *p, size_t len, const char *name, struct bp_label *l);

/* Appends "name=value" (value NULL: the flag "name") and a NUL to the
 * block buf[0..*len) of capacity cap, unless an entry of that name is in
 * it already. Returns 0, or -1 (an invalid name or value, or no room;
 * the block is unchanged). */
int bp_labels_add(uint8_t *buf, size_t cap, size_t *len, const char *name, const char *value);

/* Adds "NAME" or "NAME=VALUE" as given to worker --label. Returns like
 * bp_labels_add(). */
int bp_labels_add_arg(uint8_t *buf, size_t cap, size_t *len, const char *arg);

/* Writes the block as "name=value name ..." (NUL-terminated, cut to n;
 * invalid entries left out). Returns out. */
char *bp_labels_format(const void *p, size_t len, char *out, size_t n);

/* Adds what this machine is, after what is in buf already (the user's
 * --label entries win): arch (uname), cores (online CPUs), mem (bytes of
 * RAM), model (ROOT/proc/device-tree/model, when present), hostname, and
 * the flags camera (a ROOT/dev/video* exists) and i2c (ROOT/dev/i2c-*).
 * root "" is the real machine; tests pass a directory. Entries that do
 * not fit are left out. */
void bp_labels_detect(uint8_t *buf, size_t cap, size_t *len, const char *root);

enum { BP_REQ_HAS, BP_REQ_EQ, BP_REQ_NE, BP_REQ_GE, BP_REQ_LE, BP_REQ_GT, BP_REQ_LT };

struct bp_req {
    int n;
    struct bp_req_term {
        char name[BP_LABEL_NAME_MAX + 1];
        char value[BP_LABEL_VALUE_MAX + 1];
        int op;
    } t[BP_REQ_MAX];
};

/* Parses a --require expression. Returns 0, or -1 with a reason in err. */
int bp_req_parse(const char *expr, struct bp_req *r, char *err, size_t errlen);

/* Whether the labels block p[0..len) satisfies every term of r (an empty
 * r: always). */
int bp_req_match(const struct bp_req *r, const void *p, size_t len);

#endif
