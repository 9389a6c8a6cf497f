/*
 * boardpipe wire format, version 3 (docs/wire-format.md).
 *
 * Every boardpipe message is ONE ZeroMQ frame: a 16-byte header followed by
 * a type-specific body. Messages that carry tasks, results, done ids or
 * acknowledgements hold several records, so one ZeroMQ message can carry
 * many small tasks (a frame costs about as much as a message).
 *
 *   0  2  magic "bp"        4  4  n: record count (type-specific)
 *   2  1  version (3)       8  8  batch id
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

#define BP_PROTO_VERSION 3
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
    BP_MSG_FETCH = 14,    /* worker -> ventilator: send me these byte ranges */
    BP_MSG_CHUNK = 15,    /* ventilator -> worker: one byte range of a file */
    BP_MSG_BASE = 16,     /* ventilator -> worker: the base files (name, size, hash) */
    BP_MSG_PUT = 17,      /* worker -> sink: one chunk of a returned file */
    BP_MSG_PUTACK = 18,   /* sink -> worker: bytes of uploads written */
    BP_MSG_CANCEL = 19,   /* ventilator -> worker: stop these attempts, report nothing */
    BP_MSG_TYPE_MAX = 19
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
    BP_ST_FILEERR = 9,     /* a file could not be shipped, written or returned */
    BP_ST_MAX = 9
};

/* TASKS record flags */
#define BP_TF_LAST_TRY 0x01 /* a failure of this attempt is final */
#define BP_TF_FILE 0x02     /* the payload is a file descriptor (bp_file_desc) */
/* RESULTS record flags */
#define BP_RF_FINAL 0x01 /* final outcome (else: a failed try to be retried) */
#define BP_RF_INFO 0x02  /* the payload starts with a task-info block (for --joblog) */
#define BP_RF_FILES 0x04 /* after the info block: u8 nfiles returned (PUT idx 0..n-1) */
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
#define BP_CANCEL_REC 10    /* u64 id, u16 attempt */
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
    uint8_t nfiles; /* with BP_RF_FILES: files returned (1..255), else 0 */
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
    const char *labels; /* the board's labels (v3), labels_len bytes, or NULL */
    uint16_t labels_len;
};

/* HELLO may end with u16 labels_len and that many bytes of labels (the
 * board's NAME=VALUE / NAME entries, each ended by a NUL: docs/wire-format.md). */
#define BP_LABELS_MAX 2048

/* Files (docs/wire-format.md, "Files"). */
#define BP_CHUNK_BYTES ((uint32_t)65536) /* data in one CHUNK or PUT, at most */
#define BP_FETCH_WINDOW 16               /* FETCH requests without a CHUNK, per worker */
#define BP_PUT_WINDOW 16                 /* PUT chunks without a PUTACK, per worker */
#define BP_MAX_UPLOADS 256               /* uploads the sink has open at once */
#define BP_MAX_BASEFILES 64
#define BP_FETCH_FIXED 4  /* u32 got, then n fetch records */
#define BP_FETCH_REC 24   /* u64 id, u16 attempt, u8 kind, u8 0, u32 len, u64 offset */
#define BP_CHUNK_FIXED 24 /* u64 id, u16 attempt, u8 kind, u8 status, u32 code, u64 offset */
#define BP_BASE_REC 42    /* sha256[32], u64 size, u16 name_len, then the name */
#define BP_PUT_FIXED 30   /* u64 id, u16 attempt, u8 idx, u8 0, u64 offset, u64 size, u16 nlen */
#define BP_PUTACK_REC 24  /* u64 id, u16 attempt, u8 idx, u8 status, u32 code, u64 received */
#define BP_FDESC_FIXED 18 /* task file descriptor: u64 size, u64 mtime_ns, u16 name_len */
/* FETCH / CHUNK kinds */
enum bp_fetch_kind { BP_FK_TASK = 0, BP_FK_BASE = 1 };
/* CHUNK statuses */
enum bp_chunk_status { BP_CK_DATA = 0, BP_CK_CHANGED = 1, BP_CK_ERROR = 2, BP_CK_REFUSED = 3 };
/* PUTACK statuses, and the reasons a refusal (or a file-error result) gives */
enum bp_putack_status { BP_PA_OK = 0, BP_PA_REFUSED = 1 };
enum bp_file_reason {
    BP_FE_NAME = 1,    /* a name that is not a safe relative path */
    BP_FE_SIZE = 2,    /* over --max-return-size */
    BP_FE_COUNT = 3,   /* more files than allowed */
    BP_FE_BUSY = 4,    /* too many uploads open: try again later */
    BP_FE_WRITE = 5,   /* the receiver could not write it (disk full, ...) */
    BP_FE_EXISTS = 6,  /* a file of that name with other contents is there */
    BP_FE_CHANGED = 7, /* the file changed while it was shipped */
    BP_FE_MISSING = 8, /* a --return file the command did not make */
    BP_FE_READ = 9     /* the file could not be read */
};

struct bp_fetch_rec {
    uint64_t id; /* task id (BP_FK_TASK) or index in BASE (BP_FK_BASE) */
    uint16_t attempt;
    uint8_t kind;
    uint32_t len;
    uint64_t offset;
};

struct bp_chunk {
    uint64_t id;
    uint16_t attempt;
    uint8_t kind, status;
    uint32_t code;
    uint64_t offset;
    const uint8_t *data;
    uint32_t len;
};

struct bp_base_rec {
    const uint8_t *sha256; /* 32 bytes */
    uint64_t size;
    const char *name; /* checked: one component; not NUL-terminated */
    uint16_t name_len;
};

struct bp_put {
    uint64_t id;
    uint16_t attempt;
    uint8_t idx;
    uint64_t offset, size; /* offset + len <= size (checked) */
    const char *name;      /* checked relative name; not NUL-terminated */
    uint16_t name_len;
    const uint8_t *data;
    uint32_t len;
};

struct bp_putack_rec {
    uint64_t id;
    uint16_t attempt;
    uint8_t idx, status;
    uint32_t code;
    uint64_t received;
};

/* A FILE task's payload. */
struct bp_file_desc {
    uint64_t size, mtime_ns;
    const char *name; /* shipped relative name, checked; not NUL-terminated */
    uint16_t name_len;
    const char *path; /* the host's path (rest of the payload) */
    size_t path_len;
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
/* CANCEL: the next (id, attempt) record at *off (0 at first); 0 when none
 * is left. a->kind is set to 0. */
int bp_msg_next_cancel(const struct bp_msg *m, size_t *off, struct bp_ack_rec *a);
/* CREDIT and BYE carry n task ids after their fixed part. */
int bp_msg_next_id(const struct bp_msg *m, size_t *off, uint64_t *id);

/* File messages (decoded and checked by bp_msg_decode(); names too). */
int bp_msg_next_fetch(const struct bp_msg *m, size_t *off, struct bp_fetch_rec *f);
void bp_msg_chunk(const struct bp_msg *m, struct bp_chunk *c);
int bp_msg_next_base(const struct bp_msg *m, size_t *off, struct bp_base_rec *b);
void bp_msg_put(const struct bp_msg *m, struct bp_put *u);
int bp_msg_next_putack(const struct bp_msg *m, size_t *off, struct bp_putack_rec *a);

/* Parses a FILE task's payload. Returns BP_OK, or BP_EPROTO (short, or a
 * name bp_path_check() refuses). Views into d. */
int bp_file_desc_parse(const void *d, size_t len, struct bp_file_desc *f);
/* Writes a FILE task's payload into buf (cap bytes). Returns its length,
 * or 0 when it does not fit or the name is refused. */
size_t bp_file_desc_build(uint8_t *buf, size_t cap, uint64_t size, uint64_t mtime_ns,
                          const char *name, size_t name_len, const char *path, size_t path_len);

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
/* One CANCEL record: attempt `attempt` of task id is to be stopped. */
void bp_pack_cancel(struct bp_pack *p, uint64_t id, uint16_t attempt);
void bp_pack_id(struct bp_pack *p, uint64_t id); /* counted id (CREDIT, BYE) */
/* File messages. bp_pack_begin() first (and, for FETCH, bp_pack_u32(got)).
 * The *_reserve() calls leave the data bytes (c->len, u->len) for the
 * caller to fill, e.g. by pread() straight into the pack, and return
 * where they go (NULL when out of memory; valid until the pack grows). */
void bp_pack_fetch(struct bp_pack *p, const struct bp_fetch_rec *f);
uint8_t *bp_pack_chunk_reserve(struct bp_pack *p, const struct bp_chunk *c);
void bp_pack_base(struct bp_pack *p, const uint8_t sha256[32], uint64_t size, const char *name,
                  uint16_t name_len);
uint8_t *bp_pack_put_reserve(struct bp_pack *p, const struct bp_put *u);
void bp_pack_putack(struct bp_pack *p, const struct bp_putack_rec *a);
/* Drops the last cut bytes of the pack (a short pread into reserved data). */
void bp_pack_trim(struct bp_pack *p, size_t cut);

/* Writes the record count into the header. Returns BP_OK or BP_ENOMEM. */
int bp_pack_finish(struct bp_pack *p);

/* Short lower-case name of a task status ("ok", "failed", ...). */
const char *bp_status_name(int status);
/* Name of a message type ("TASKS", ...), "?" when unknown. */
const char *bp_msg_name(int type);

#endif
