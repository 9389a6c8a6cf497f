/*
 * boardpipe wire format, version 1 (docs/wire-format.md).
 *
 * Every boardpipe message is two ZeroMQ frames: one compact binary header
 * and one payload frame (possibly empty). The header is 32 bytes plus the
 * worker id, all integers big-endian:
 *
 *   0  2  magic "bp"          16  8  task id
 *   2  1  version (1)         24  4  code   (exit status / signal)
 *   3  1  type                28  4  aux    (worker-side elapsed ms)
 *   4  1  status              32  n  worker id (n = wid_len, <= 64)
 *   5  1  flags (0)
 *   6  1  wid_len
 *   7  1  reserved (0)
 *   8  8  batch id
 */
#ifndef BP_FRAME_H
#define BP_FRAME_H

#include <stddef.h>
#include <stdint.h>

#include "bp.h"

#define BP_PROTO_VERSION 1
#define BP_HDR_FIXED 32
#define BP_HDR_MAX (BP_HDR_FIXED + BP_ID_MAX)

enum bp_msg_type {
    BP_MSG_TASK = 1,        /* ventilator -> worker: one task */
    BP_MSG_RESULT = 2,      /* worker -> sink: one task's outcome */
    BP_MSG_BATCH_BEGIN = 3, /* ventilator -> sink: a batch starts */
    BP_MSG_BATCH_END = 4,   /* ventilator -> sink: task id = batch size */
    BP_MSG_CONTROL_END = 5, /* sink -> workers (PUB): the batch is over */
    /* reserved for no-loss delivery and balancing: */
    BP_MSG_ACK = 6,
    BP_MSG_READY = 7,
    BP_MSG_TYPE_MAX = 7
};

enum bp_task_status {
    BP_ST_OK = 0,          /* payload is the result */
    BP_ST_FAILED = 1,      /* command exited non-zero; code = exit status */
    BP_ST_TIMEOUT = 2,     /* killed after --task-timeout */
    BP_ST_TOOBIG = 3,      /* output over the size limit */
    BP_ST_EXECERR = 4,     /* command could not be started */
    BP_ST_SIGNALED = 5,    /* command killed by a signal; code = signal */
    BP_ST_INTERRUPTED = 6, /* worker stopped before finishing the task */
    BP_ST_MAX = 6
};

struct bp_hdr {
    uint8_t type;
    uint8_t status;
    uint8_t flags;
    uint8_t wid_len;
    uint64_t batch;
    uint64_t task;
    int32_t code;
    uint32_t aux;
    char wid[BP_ID_MAX + 1]; /* NUL-terminated copy of the worker id */
};

/* Encodes h into buf (cap bytes). Sets *len. Returns BP_OK, or BP_ETOOBIG
 * if buf is too small, or BP_EPROTO if h->type/wid_len is out of range. */
int bp_hdr_encode(const struct bp_hdr *h, void *buf, size_t cap, size_t *len);

/* Decodes a header frame. Returns BP_OK, BP_EPROTO (bad magic, length,
 * type or status) or BP_EVERSION (a version this build does not speak). */
int bp_hdr_decode(struct bp_hdr *h, const void *buf, size_t len);

/* Sets h->wid/h->wid_len from id (truncated to BP_ID_MAX bytes). */
void bp_hdr_set_wid(struct bp_hdr *h, const char *id);

/* Short lower-case name of a task status ("ok", "failed", ...). */
const char *bp_status_name(int status);

#endif
