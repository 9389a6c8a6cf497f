/*
 * boardpipe wire format, version 2 (docs/wire-format.md).
 *
 * Every boardpipe message is ONE ZeroMQ frame: a 16-byte header followed by
 * a type-specific body. Messages that carry tasks, results, done ids or
 * acknowledgements hold several records, so one ZeroMQ message can carry
 * many small tasks (a frame costs about as much as a message).
 *
 *   0  2  magic "bp"        4  4  n: record count (type-specific)
 *   2  1  version (2)       8  8  batch id
 *   3  1  type
 *
 * All integers are big-endian. The decoder validates a whole message
 * (every record inside the body, exact lengths) before anyone reads it, so
 * the record iterators cannot fail. It never allocates.
 */
#ifndef BP_FRAME_H
#define BP_FRAME_H

#include <stddef.h>
#include <stdint.h>

#include "bp.h"

#define BP_PROTO_VERSION 2
#define BP_MSG_HDR 16

/* A pack is closed once it holds this many bytes (a single record may be
 * larger, up to --max-msg-size). */
#define BP_PACK_BYTES ((size_t)64 * 1024)
/* The sink holds at most this many acknowledgements: those of one turn
 * wait for its journal's sync, so an ACK message can pass BP_PACK_BYTES, up
 * to BP_ACK_MSG_MAX bytes (the ventilator's limit for what the sink sends). */
#define BP_MAX_PENDING_ACKS 65536
#define BP_ACK_MSG_MAX ((size_t)BP_MSG_HDR + (size_t)12 * BP_MAX_PENDING_ACKS)

enum bp_msg_type {
    BP_MSG_HELLO = 1,     /* worker -> ventilator: I am here, take my credit */
    BP_MSG_CREDIT = 2,    /* worker -> ventilator: more credit + ids done */
    BP_MSG_TASKS = 3,     /* ventilator -> worker: n tasks */
    BP_MSG_HEARTBEAT = 4, /* any direction: liveness, RTT ping/echo */
    BP_MSG_RESYNC = 5,    /* ventilator -> worker: unknown peer, say HELLO */
    BP_MSG_END = 6,       /* ventilator -> worker: batch over / stopping */
    BP_MSG_BYE = 7,       /* worker -> ventilator: leaving, hands ids back */
    BP_MSG_RESULTS = 8,   /* worker/ventilator -> sink: n results */
    BP_MSG_BEGIN = 9,     /* ventilator -> sink: a batch starts */
    BP_MSG_CLOSE = 10,    /* ventilator -> sink: the batch has N tasks */
    BP_MSG_ACK = 11,      /* sink -> ventilator: n results received */
    BP_MSG_COMPLETE = 12, /* sink -> ventilator: every task has a result */
    BP_MSG_EXTENT = 13,   /* ventilator -> sink: ids 0 .. N-1 exist (read so far) */
    BP_MSG_TYPE_MAX = 13
};

enum bp_task_status {
    BP_ST_OK = 0,          /* payload is the result */
    BP_ST_FAILED = 1,      /* command exited non-zero; code = exit status */
    BP_ST_TIMEOUT = 2,     /* killed after --task-timeout; code = the signal sent */
    BP_ST_TOOBIG = 3,      /* output over the size limit */
    BP_ST_EXECERR = 4,     /* command could not be started */
    BP_ST_SIGNALED = 5,    /* command killed by a signal; code = signal */
    BP_ST_INTERRUPTED = 6, /* worker stopped before finishing the task */
    BP_ST_LOST = 7,        /* ventilator: delivered --max-attempts times, never answered */
    BP_ST_HALTED = 8,      /* ventilator: not run, the batch was halted (--halt) */
    BP_ST_MAX = 8
};

/* TASKS record flags */
#define BP_TF_LAST_TRY 0x01 /* a failure of this attempt is final */
/* RESULTS record flags */
#define BP_RF_FINAL 0x01 /* final outcome (else: a failed try to be retried) */
#define BP_RF_INFO 0x02  /* the payload starts with a task-info block (for --joblog) */
/* The task-info block: u32 task length, u64 start (ms since the epoch),
 * u8 n, then the task's first n bytes (n <= BP_INFO_HEAD_MAX). */
#define BP_INFO_FIXED 13
#define BP_INFO_HEAD_MAX 40
/* ACK kinds */
enum bp_ack_kind { BP_ACK_OK = 0, BP_ACK_FAILED = 1, BP_ACK_RETRY = 2 };
/* END reasons */
/* END reasons: HALTED also tells the worker to stop what it runs for the
 * batch (--halt now): SIGTERM to each command's group, SIGKILL after --grace. */
enum bp_end_reason { BP_END_COMPLETE = 0, BP_END_STOPPING = 1, BP_END_HALTED = 2 };
/* BYE flags */
#define BP_BYE_GONE 0x01 /* the worker exits now; nothing of it is left running */

/* Fixed parts of the bodies (see docs/wire-format.md). */
#define BP_HELLO_FIXED 8  /* u16 jobs, u16 flags, u32 credit, then u8 idlen + id */
#define BP_CREDIT_FIXED 4 /* u32 credit, then n x u64 ids */
#define BP_TASK_REC 16    /* u64 id, u16 attempt, u8 flags, u8 0, u32 len, bytes */
#define BP_HB_BODY 16     /* u64 ping (sender clock, 0 = none), u64 echo */
#define BP_END_BODY 4     /* u32 reason */
#define BP_BYE_FIXED 4    /* u32 flags, then n x u64 ids */
#define BP_RESULT_REC                                                                              \
    24                      /* u64 id, u16 attempt, u8 status, u8 flags, i32 code,                 \
                               u32 elapsed ms, u32 len, bytes */
#define BP_CLOSE_BODY 8     /* u64 total */
#define BP_EXTENT_BODY 8    /* u64 n: ids below n belong to the batch */
#define BP_ACK_REC 12       /* u64 id, u16 attempt, u8 kind, u8 0 */
#define BP_COMPLETE_BODY 16 /* u64 ok, u64 failed */

/* A decoded message: views into the caller's buffer. */
struct bp_msg {
    uint8_t type;
    uint32_t n;
    uint64_t batch;
    const uint8_t *body;
    size_t body_len;
};

struct bp_task_rec {
    uint64_t id;
    uint16_t attempt;
    uint8_t flags;
    const uint8_t *data;
    uint32_t len;
};

struct bp_result_rec {
    uint64_t id;
    uint16_t attempt;
    uint8_t status;
    uint8_t flags;
    int32_t code;
    uint32_t elapsed_ms;
    const uint8_t *data; /* the result (after the info block, if any) */
    uint32_t len;
    /* with BP_RF_INFO in flags: the task-info block */
    uint32_t task_len;
    uint64_t start_ms;
    const uint8_t *head; /* the task's first head_len bytes */
    uint8_t head_len;
};

struct bp_ack_rec {
    uint64_t id;
    uint16_t attempt;
    uint8_t kind;
};

struct bp_hello {
    uint16_t jobs;
    uint32_t credit;
    const char *id; /* not NUL-terminated: id_len bytes */
    uint8_t id_len;
};

/* Decodes and validates one message of len bytes. max_rec bounds the size
 * of one task/result record's payload (0: no bound beyond the frame).
 * Returns BP_OK, BP_EVERSION (right magic, another version; checked before
 * anything else so a future layout is named as such) or BP_EPROTO (bad
 * magic, unknown type, or a body that does not match its type exactly).
 * m points into buf afterwards. Never allocates. */
int bp_msg_decode(struct bp_msg *m, const void *buf, size_t len, uint32_t max_rec);

/* Record iterators for a message bp_msg_decode() accepted. *off starts at
 * 0 and is advanced; each returns 1 with a record, 0 after the last. */
int bp_msg_next_task(const struct bp_msg *m, size_t *off, struct bp_task_rec *t);
int bp_msg_next_result(const struct bp_msg *m, size_t *off, struct bp_result_rec *r);
int bp_msg_next_ack(const struct bp_msg *m, size_t *off, struct bp_ack_rec *a);
/* CREDIT and BYE carry n task ids after their fixed part. */
int bp_msg_next_id(const struct bp_msg *m, size_t *off, uint64_t *id);

/* Fixed fields of single-record messages. */
void bp_msg_hello(const struct bp_msg *m, struct bp_hello *h);
uint32_t bp_msg_u32(const struct bp_msg *m);            /* CREDIT credit, END reason, BYE flags */
uint64_t bp_msg_u64(const struct bp_msg *m, size_t at); /* HB ping/echo, CLOSE, COMPLETE */
/* RESULTS: the worker id (printable or not: the caller sanitises it). */
const char *bp_msg_wid(const struct bp_msg *m, uint8_t *len);

/* A growable output buffer for building one message; reused across
 * messages so steady state allocates nothing. */
struct bp_pack {
    uint8_t *p;
    size_t len, cap;
    uint32_t n; /* records so far */
    int err;    /* BP_ENOMEM once growing failed; sticky until begin */
};

void bp_pack_init(struct bp_pack *p);
void bp_pack_free(struct bp_pack *p);

/* Starts a message of type for batch (drops whatever p held). */
void bp_pack_begin(struct bp_pack *p, int type, uint64_t batch);
/* Appends fixed bytes / integers (for the fixed parts of bodies). */
void bp_pack_u8(struct bp_pack *p, uint8_t v);
void bp_pack_u16(struct bp_pack *p, uint16_t v);
void bp_pack_u32(struct bp_pack *p, uint32_t v);
void bp_pack_u64(struct bp_pack *p, uint64_t v);
void bp_pack_bytes(struct bp_pack *p, const void *d, size_t len);
/* Appends one record and counts it. */
void bp_pack_task(struct bp_pack *p, uint64_t id, uint16_t attempt, uint8_t flags, const void *d,
                  uint32_t len);
void bp_pack_result(struct bp_pack *p, const struct bp_result_rec *r);
/* Like bp_pack_result() but leaves r->len payload bytes for the caller to
 * fill (r->data is ignored). Returns where they go, or NULL when out of
 * memory. The pointer is valid until the pack grows again. */
uint8_t *bp_pack_result_reserve(struct bp_pack *p, const struct bp_result_rec *r);
void bp_pack_ack(struct bp_pack *p, uint64_t id, uint16_t attempt, uint8_t kind);
void bp_pack_id(struct bp_pack *p, uint64_t id); /* counted id (CREDIT, BYE) */
/* Writes the record count into the header. Returns BP_OK or BP_ENOMEM. */
int bp_pack_finish(struct bp_pack *p);

/* Short lower-case name of a task status ("ok", "failed", ...). */
const char *bp_status_name(int status);
/* Name of a message type ("TASKS", ...), "?" when unknown. */
const char *bp_msg_name(int type);

#endif
