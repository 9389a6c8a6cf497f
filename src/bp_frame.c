/* Wire format v3 (bp_frame.h, docs/wire-format.md): decoding and checking
 * whole messages, the record iterators, and packing messages. Owns the
 * pack buffer only; must not do I/O, touch a socket or allocate while
 * decoding. */
#include <stdlib.h>
#include <string.h>

#include "bp_frame.h"
#include "bp_path.h"

static void put16(uint8_t *p, uint16_t v)
{
    p[0] = (uint8_t)(v >> 8);
    p[1] = (uint8_t)v;
}

static void put32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)(v >> 24);
    p[1] = (uint8_t)(v >> 16);
    p[2] = (uint8_t)(v >> 8);
    p[3] = (uint8_t)v;
}

static void put64(uint8_t *p, uint64_t v)
{
    put32(p, (uint32_t)(v >> 32));
    put32(p + 4, (uint32_t)v);
}

static uint16_t get16(const uint8_t *p)
{
    return (uint16_t)(p[0] << 8 | p[1]);
}

static uint32_t get32(const uint8_t *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static uint64_t get64(const uint8_t *p)
{
    return (uint64_t)get32(p) << 32 | get32(p + 4);
}

/* Walks n variable-length records starting at off; each has a fixed part
 * of rec bytes whose u32 at len_at is the payload length. The records must
 * fill the body exactly. */
static int walk_records(const uint8_t *b, size_t blen, size_t off, uint32_t n, size_t rec,
                        size_t len_at, uint32_t max_rec)
{
    for (uint32_t i = 0; i < n; i++) {
        if (blen - off < rec)
            return BP_EPROTO;
        uint32_t l = get32(b + off + len_at);
        if (max_rec && l > max_rec)
            return BP_EPROTO;
        off += rec;
        if (blen - off < l)
            return BP_EPROTO;
        off += l;
    }
    return off == blen ? BP_OK : BP_EPROTO;
}

/* n fixed-size records after a fixed part: exact length, no overflow. */
static int exact(size_t blen, size_t fixed, uint32_t n, size_t rec)
{
    if (blen < fixed || (blen - fixed) % rec || (blen - fixed) / rec != n)
        return BP_EPROTO;
    return BP_OK;
}

/* A result record's optional blocks (info, then files) fit its l bytes,
 * and what is left is within max_rec. */
static int check_result_blocks(const uint8_t *d, uint32_t l, uint8_t flags, uint32_t max_rec)
{
    if (flags & BP_RF_INFO) {
        if (l < BP_INFO_FIXED || d[12] > BP_INFO_HEAD_MAX || l - BP_INFO_FIXED < d[12])
            return BP_EPROTO;
        l -= BP_INFO_FIXED + d[12];
        d += BP_INFO_FIXED + d[12];
    }
    if (flags & BP_RF_FILES) {
        if (l < 1 || d[0] == 0)
            return BP_EPROTO;
        l--;
    }
    return max_rec && l > max_rec ? BP_EPROTO : BP_OK;
}

/* HELLO: fixed part, id, then optionally u16 labels_len + labels. */
static int check_hello(const uint8_t *b, size_t bl, uint32_t n)
{
    if (n != 0 || bl < BP_HELLO_FIXED + 1 || b[8] > BP_ID_MAX ||
        bl < (size_t)BP_HELLO_FIXED + 1 + b[8])
        return BP_EPROTO;
    size_t rest = bl - BP_HELLO_FIXED - 1 - b[8];
    if (rest == 0)
        return BP_OK;
    const uint8_t *l = b + BP_HELLO_FIXED + 1 + b[8];
    if (rest < 2 || rest - 2 != get16(l) || rest - 2 > BP_LABELS_MAX)
        return BP_EPROTO;
    return BP_OK;
}

static int check_fetch(const uint8_t *b, size_t bl, uint32_t n)
{
    if (exact(bl, BP_FETCH_FIXED, n, BP_FETCH_REC) != BP_OK)
        return BP_EPROTO;
    for (uint32_t i = 0; i < n; i++) {
        const uint8_t *r = b + BP_FETCH_FIXED + (size_t)i * BP_FETCH_REC;
        uint32_t l = get32(r + 12);
        if (r[10] > BP_FK_BASE || l == 0 || l > BP_CHUNK_BYTES)
            return BP_EPROTO;
    }
    return BP_OK;
}

static int check_chunk(const uint8_t *b, size_t bl, uint32_t n)
{
    if (n != 0 || bl < BP_CHUNK_FIXED || bl - BP_CHUNK_FIXED > BP_CHUNK_BYTES ||
        b[10] > BP_FK_BASE || b[11] > BP_CK_REFUSED)
        return BP_EPROTO;
    return b[11] != BP_CK_DATA && bl != BP_CHUNK_FIXED ? BP_EPROTO : BP_OK;
}

static int check_base(const uint8_t *b, size_t bl, uint32_t n)
{
    size_t off = 0;
    if (n > BP_MAX_BASEFILES)
        return BP_EPROTO;
    for (uint32_t i = 0; i < n; i++) {
        if (bl - off < BP_BASE_REC)
            return BP_EPROTO;
        size_t nl = get16(b + off + 40);
        off += BP_BASE_REC;
        if (bl - off < nl || bp_path_check((const char *)b + off, nl, 1) != BP_OK)
            return BP_EPROTO;
        off += nl;
    }
    return off == bl ? BP_OK : BP_EPROTO;
}

static int check_put(const uint8_t *b, size_t bl, uint32_t n)
{
    if (n != 0 || bl < BP_PUT_FIXED)
        return BP_EPROTO;
    size_t nl = get16(b + 28);
    if (bl - BP_PUT_FIXED < nl || bp_path_check((const char *)b + BP_PUT_FIXED, nl, 0) != BP_OK)
        return BP_EPROTO;
    uint64_t off = get64(b + 12), size = get64(b + 20), dl = bl - BP_PUT_FIXED - nl;
    if (dl > BP_CHUNK_BYTES || off > size || size - off < dl)
        return BP_EPROTO;
    return BP_OK;
}

static int check_putack(const uint8_t *b, size_t bl, uint32_t n)
{
    if (exact(bl, 0, n, BP_PUTACK_REC) != BP_OK)
        return BP_EPROTO;
    for (uint32_t i = 0; i < n; i++)
        if (b[(size_t)i * BP_PUTACK_REC + 11] > BP_PA_REFUSED)
            return BP_EPROTO;
    return BP_OK;
}

/* The file messages of version 3 (types 14-18). */
static int check_file_msg(const struct bp_msg *m)
{
    switch (m->type) {
    case BP_MSG_FETCH:
        return check_fetch(m->body, m->body_len, m->n);
    case BP_MSG_CHUNK:
        return check_chunk(m->body, m->body_len, m->n);
    case BP_MSG_BASE:
        return check_base(m->body, m->body_len, m->n);
    case BP_MSG_PUT:
        return check_put(m->body, m->body_len, m->n);
    case BP_MSG_PUTACK:
        return check_putack(m->body, m->body_len, m->n);
    default:
        return BP_EPROTO;
    }
}

int bp_msg_decode(struct bp_msg *m, const void *buf, size_t len, uint32_t max_rec)
{
    const uint8_t *p = buf;
    if (len < 3 || p[0] != 'b' || p[1] != 'p')
        return BP_EPROTO;
    /* The version is checked before the length: another version may have
     * another layout, and deserves its own error. */
    if (p[2] != BP_PROTO_VERSION)
        return BP_EVERSION;
    if (len < BP_MSG_HDR)
        return BP_EPROTO;
    m->type = p[3];
    m->n = get32(p + 4);
    m->batch = get64(p + 8);
    m->body = p + BP_MSG_HDR;
    m->body_len = len - BP_MSG_HDR;
    const uint8_t *b = m->body;
    size_t bl = m->body_len;
    switch (m->type) {
    case BP_MSG_HELLO:
        return check_hello(b, bl, m->n);
    case BP_MSG_CREDIT: /* u32 credit, then ids; BYE has the same shape */
    case BP_MSG_BYE:
        return exact(bl, BP_CREDIT_FIXED, m->n, 8);
    case BP_MSG_TASKS:
        return walk_records(b, bl, 0, m->n, BP_TASK_REC, 12, max_rec);
    case BP_MSG_RESULTS: {
        if (bl < 1 || b[0] > BP_ID_MAX || bl < (size_t)1 + b[0])
            return BP_EPROTO;
        uint32_t lim = max_rec ? max_rec + BP_INFO_FIXED + BP_INFO_HEAD_MAX : 0;
        int rc = walk_records(b, bl, (size_t)1 + b[0], m->n, BP_RESULT_REC, 20, lim);
        if (rc != BP_OK)
            return rc;
        /* Statuses and info blocks are checked here so consumers can index
         * tables by the first and trust the second. */
        size_t off = (size_t)1 + b[0];
        for (uint32_t i = 0; i < m->n; i++) {
            uint32_t l = get32(b + off + 20);
            if (b[off + 10] > BP_ST_MAX)
                return BP_EPROTO;
            if (check_result_blocks(b + off + BP_RESULT_REC, l, b[off + 11], max_rec) != BP_OK)
                return BP_EPROTO;
            off += BP_RESULT_REC + l;
        }
        return BP_OK;
    }
    case BP_MSG_ACK:
        if (exact(bl, 0, m->n, BP_ACK_REC) != BP_OK)
            return BP_EPROTO;
        for (uint32_t i = 0; i < m->n; i++)
            if (b[(size_t)i * BP_ACK_REC + 10] > BP_ACK_RETRY)
                return BP_EPROTO;
        return BP_OK;
    case BP_MSG_HEARTBEAT:
        return m->n == 0 && bl == BP_HB_BODY ? BP_OK : BP_EPROTO;
    case BP_MSG_END:
        return m->n == 0 && bl == BP_END_BODY ? BP_OK : BP_EPROTO;
    case BP_MSG_CLOSE: /* NOLINT(bugprone-branch-clone): EXTENT's size is its own */
        return m->n == 0 && bl == BP_CLOSE_BODY ? BP_OK : BP_EPROTO;
    case BP_MSG_EXTENT:
        return m->n == 0 && bl == BP_EXTENT_BODY ? BP_OK : BP_EPROTO;
    case BP_MSG_COMPLETE:
        return m->n == 0 && bl == BP_COMPLETE_BODY ? BP_OK : BP_EPROTO;
    case BP_MSG_RESYNC:
    case BP_MSG_BEGIN:
        return m->n == 0 && bl == 0 ? BP_OK : BP_EPROTO;
    case BP_MSG_CANCEL:
        return exact(bl, 0, m->n, BP_CANCEL_REC);
    default:
        return check_file_msg(m);
    }
}

int bp_msg_next_task(const struct bp_msg *m, size_t *off, struct bp_task_rec *t)
{
    if (*off >= m->body_len)
        return 0;
    const uint8_t *r = m->body + *off;
    t->id = get64(r);
    t->attempt = get16(r + 8);
    t->flags = r[10];
    t->len = get32(r + 12);
    t->data = r + BP_TASK_REC;
    *off += BP_TASK_REC + (size_t)t->len;
    return 1;
}

int bp_msg_next_result(const struct bp_msg *m, size_t *off, struct bp_result_rec *x)
{
    if (*off == 0)
        *off = (size_t)1 + m->body[0];
    if (*off >= m->body_len)
        return 0;
    const uint8_t *r = m->body + *off;
    x->id = get64(r);
    x->attempt = get16(r + 8);
    x->status = r[10];
    x->flags = r[11];
    x->code = (int32_t)get32(r + 12);
    x->elapsed_ms = get32(r + 16);
    x->len = get32(r + 20);
    x->data = r + BP_RESULT_REC;
    *off += BP_RESULT_REC + (size_t)x->len;
    if (x->flags & BP_RF_INFO) { /* (the decoder checked the block fits) */
        x->task_len = get32(x->data);
        x->start_ms = get64(x->data + 4);
        x->head_len = x->data[12];
        x->head = x->data + BP_INFO_FIXED;
        x->data += BP_INFO_FIXED + x->head_len;
        x->len -= BP_INFO_FIXED + x->head_len;
    } else {
        x->task_len = 0;
        x->start_ms = 0;
        x->head = NULL;
        x->head_len = 0;
    }
    x->nfiles = 0;
    if (x->flags & BP_RF_FILES) { /* (checked too) */
        x->nfiles = x->data[0];
        x->data++;
        x->len--;
    }
    return 1;
}

int bp_msg_next_ack(const struct bp_msg *m, size_t *off, struct bp_ack_rec *a)
{
    if (*off >= m->body_len)
        return 0;
    const uint8_t *r = m->body + *off;
    a->id = get64(r);
    a->attempt = get16(r + 8);
    a->kind = r[10];
    *off += BP_ACK_REC;
    return 1;
}

int bp_msg_next_cancel(const struct bp_msg *m, size_t *off, struct bp_ack_rec *a)
{
    if (*off >= m->body_len)
        return 0;
    const uint8_t *r = m->body + *off;
    a->id = get64(r);
    a->attempt = get16(r + 8);
    a->kind = 0;
    *off += BP_CANCEL_REC;
    return 1;
}

int bp_msg_next_id(const struct bp_msg *m, size_t *off, uint64_t *id)
{
    if (*off == 0)
        *off = 4; /* CREDIT and BYE: a u32 before the ids */
    if (*off >= m->body_len)
        return 0;
    *id = get64(m->body + *off);
    *off += 8;
    return 1;
}

void bp_msg_hello(const struct bp_msg *m, struct bp_hello *h)
{
    h->jobs = get16(m->body);
    h->credit = get32(m->body + 4);
    h->id_len = m->body[8];
    h->id = (const char *)m->body + 9;
    size_t at = (size_t)BP_HELLO_FIXED + 1 + h->id_len;
    h->labels = NULL;
    h->labels_len = 0;
    if (m->body_len > at) { /* (checked by the decoder) */
        h->labels_len = get16(m->body + at);
        h->labels = (const char *)m->body + at + 2;
    }
}

uint32_t bp_msg_u32(const struct bp_msg *m)
{
    return m->body_len >= 4 ? get32(m->body) : 0;
}

uint64_t bp_msg_u64(const struct bp_msg *m, size_t at)
{
    return m->body_len >= at + 8 ? get64(m->body + at) : 0;
}

const char *bp_msg_wid(const struct bp_msg *m, uint8_t *len)
{
    *len = m->body[0];
    return (const char *)m->body + 1;
}

void bp_pack_init(struct bp_pack *p)
{
    memset(p, 0, sizeof *p);
}

void bp_pack_free(struct bp_pack *p)
{
    free(p->p);
    memset(p, 0, sizeof *p);
}

/* Makes room for more bytes; on failure the pack is marked broken and
 * returns NULL (callers then write nothing). */
static uint8_t *room(struct bp_pack *p, size_t more)
{
    if (p->err)
        return NULL;
    if (p->cap - p->len < more) {
        size_t cap = p->cap ? p->cap : 256;
        while (cap - p->len < more) {
            if (cap > SIZE_MAX / 2) {
                p->err = BP_ENOMEM;
                return NULL;
            }
            cap *= 2;
        }
        uint8_t *n = realloc(p->p, cap);
        if (!n) {
            p->err = BP_ENOMEM;
            return NULL;
        }
        p->p = n;
        p->cap = cap;
    }
    uint8_t *at = p->p + p->len;
    p->len += more;
    return at;
}

void bp_pack_begin(struct bp_pack *p, int type, uint64_t batch)
{
    p->len = 0;
    p->n = 0;
    p->err = 0;
    uint8_t *h = room(p, BP_MSG_HDR);
    if (!h)
        return;
    h[0] = 'b';
    h[1] = 'p';
    h[2] = BP_PROTO_VERSION;
    h[3] = (uint8_t)type;
    put32(h + 4, 0);
    put64(h + 8, batch);
}

void bp_pack_u8(struct bp_pack *p, uint8_t v)
{
    uint8_t *d = room(p, 1);
    if (d)
        *d = v;
}

void bp_pack_u16(struct bp_pack *p, uint16_t v)
{
    uint8_t *d = room(p, 2);
    if (d)
        put16(d, v);
}

void bp_pack_u32(struct bp_pack *p, uint32_t v)
{
    uint8_t *d = room(p, 4);
    if (d)
        put32(d, v);
}

void bp_pack_u64(struct bp_pack *p, uint64_t v)
{
    uint8_t *d = room(p, 8);
    if (d)
        put64(d, v);
}

void bp_pack_bytes(struct bp_pack *p, const void *src, size_t len)
{
    uint8_t *d = room(p, len);
    if (d && len)
        memcpy(d, src, len);
}

void bp_pack_task(struct bp_pack *p, uint64_t id, uint16_t attempt, uint8_t flags, const void *d,
                  uint32_t len)
{
    uint8_t *r = room(p, BP_TASK_REC + (size_t)len);
    if (!r)
        return;
    put64(r, id);
    put16(r + 8, attempt);
    r[10] = flags;
    r[11] = 0;
    put32(r + 12, len);
    if (len)
        memcpy(r + BP_TASK_REC, d, len);
    p->n++;
}

uint8_t *bp_pack_result_reserve(struct bp_pack *p, const struct bp_result_rec *x)
{
    uint8_t hl = x->head_len > BP_INFO_HEAD_MAX ? BP_INFO_HEAD_MAX : x->head_len;
    size_t info = (x->flags & BP_RF_INFO) ? BP_INFO_FIXED + (size_t)hl : 0;
    size_t files = (x->flags & BP_RF_FILES) ? 1 : 0;
    uint8_t *r = room(p, BP_RESULT_REC + info + files + (size_t)x->len);
    if (!r)
        return NULL;
    put64(r, x->id);
    put16(r + 8, x->attempt);
    r[10] = x->status;
    r[11] = x->flags;
    put32(r + 12, (uint32_t)x->code);
    put32(r + 16, x->elapsed_ms);
    put32(r + 20, (uint32_t)(info + files + x->len));
    p->n++;
    r += BP_RESULT_REC;
    if (info) {
        put32(r, x->task_len);
        put64(r + 4, x->start_ms);
        r[12] = hl;
        if (hl)
            memcpy(r + BP_INFO_FIXED, x->head, hl);
        r += info;
    }
    if (files)
        *r++ = x->nfiles;
    return r;
}

void bp_pack_result(struct bp_pack *p, const struct bp_result_rec *x)
{
    uint8_t *d = bp_pack_result_reserve(p, x);
    if (d && x->len)
        memcpy(d, x->data, x->len);
}

void bp_pack_ack(struct bp_pack *p, uint64_t id, uint16_t attempt, uint8_t kind)
{
    uint8_t *r = room(p, BP_ACK_REC);
    if (!r)
        return;
    put64(r, id);
    put16(r + 8, attempt);
    r[10] = kind;
    r[11] = 0;
    p->n++;
}

void bp_pack_cancel(struct bp_pack *p, uint64_t id, uint16_t attempt)
{
    uint8_t *r = room(p, BP_CANCEL_REC);
    if (!r)
        return;
    put64(r, id);
    put16(r + 8, attempt);
    p->n++;
}

void bp_pack_id(struct bp_pack *p, uint64_t id)
{
    uint8_t *r = room(p, 8);
    if (!r)
        return;
    put64(r, id);
    p->n++;
}

int bp_pack_finish(struct bp_pack *p)
{
    if (p->err || p->len < BP_MSG_HDR)
        return BP_ENOMEM;
    put32(p->p + 4, p->n);
    return BP_OK;
}

const char *bp_status_name(int status)
{
    static const char *const names[] = {"ok",         "failed",    "timeout",     "too-big",
                                        "exec-error", "signaled",  "interrupted", "lost",
                                        "halted",     "file-error"};
    if (status < 0 || status > BP_ST_MAX)
        return "unknown";
    return names[status];
}

const char *bp_msg_name(int type)
{
    static const char *const names[] = {"?",      "HELLO", "CREDIT",   "TASKS",   "HEARTBEAT",
                                        "RESYNC", "END",   "BYE",      "RESULTS", "BEGIN",
                                        "CLOSE",  "ACK",   "COMPLETE", "EXTENT",  "FETCH",
                                        "CHUNK",  "BASE",  "PUT",      "PUTACK",  "CANCEL"};
    if (type < 1 || type > BP_MSG_TYPE_MAX)
        return "?";
    return names[type];
}

int bp_msg_next_fetch(const struct bp_msg *m, size_t *off, struct bp_fetch_rec *f)
{
    if (*off == 0)
        *off = BP_FETCH_FIXED;
    if (*off >= m->body_len)
        return 0;
    const uint8_t *r = m->body + *off;
    f->id = get64(r);
    f->attempt = get16(r + 8);
    f->kind = r[10];
    f->len = get32(r + 12);
    f->offset = get64(r + 16);
    *off += BP_FETCH_REC;
    return 1;
}

void bp_msg_chunk(const struct bp_msg *m, struct bp_chunk *c)
{
    const uint8_t *b = m->body;
    c->id = get64(b);
    c->attempt = get16(b + 8);
    c->kind = b[10];
    c->status = b[11];
    c->code = get32(b + 12);
    c->offset = get64(b + 16);
    c->data = b + BP_CHUNK_FIXED;
    c->len = (uint32_t)(m->body_len - BP_CHUNK_FIXED);
}

int bp_msg_next_base(const struct bp_msg *m, size_t *off, struct bp_base_rec *x)
{
    if (*off >= m->body_len)
        return 0;
    const uint8_t *r = m->body + *off;
    x->sha256 = r;
    x->size = get64(r + 32);
    x->name_len = get16(r + 40);
    x->name = (const char *)r + BP_BASE_REC;
    *off += BP_BASE_REC + (size_t)x->name_len;
    return 1;
}

void bp_msg_put(const struct bp_msg *m, struct bp_put *u)
{
    const uint8_t *b = m->body;
    u->id = get64(b);
    u->attempt = get16(b + 8);
    u->idx = b[10];
    u->offset = get64(b + 12);
    u->size = get64(b + 20);
    u->name_len = get16(b + 28);
    u->name = (const char *)b + BP_PUT_FIXED;
    u->data = b + BP_PUT_FIXED + u->name_len;
    u->len = (uint32_t)(m->body_len - BP_PUT_FIXED - u->name_len);
}

int bp_msg_next_putack(const struct bp_msg *m, size_t *off, struct bp_putack_rec *a)
{
    if (*off >= m->body_len)
        return 0;
    const uint8_t *r = m->body + *off;
    a->id = get64(r);
    a->attempt = get16(r + 8);
    a->idx = r[10];
    a->status = r[11];
    a->code = get32(r + 12);
    a->received = get64(r + 16);
    *off += BP_PUTACK_REC;
    return 1;
}

int bp_file_desc_parse(const void *d, size_t len, struct bp_file_desc *f)
{
    const uint8_t *p = d;
    if (len < BP_FDESC_FIXED)
        return BP_EPROTO;
    f->size = get64(p);
    f->mtime_ns = get64(p + 8);
    f->name_len = get16(p + 16);
    if (len - BP_FDESC_FIXED < f->name_len)
        return BP_EPROTO;
    f->name = (const char *)p + BP_FDESC_FIXED;
    if (bp_path_check(f->name, f->name_len, 0) != BP_OK)
        return BP_EPROTO;
    f->path = f->name + f->name_len;
    f->path_len = len - BP_FDESC_FIXED - f->name_len;
    return BP_OK;
}

size_t bp_file_desc_build(uint8_t *buf, size_t cap, uint64_t size, uint64_t mtime_ns,
                          const char *name, size_t name_len, const char *path, size_t path_len)
{
    if (bp_path_check(name, name_len, 0) != BP_OK || cap < BP_FDESC_FIXED ||
        cap - BP_FDESC_FIXED < name_len || cap - BP_FDESC_FIXED - name_len < path_len)
        return 0;
    put64(buf, size);
    put64(buf + 8, mtime_ns);
    put16(buf + 16, (uint16_t)name_len);
    memcpy(buf + BP_FDESC_FIXED, name, name_len);
    memcpy(buf + BP_FDESC_FIXED + name_len, path, path_len);
    return BP_FDESC_FIXED + name_len + path_len;
}

void bp_pack_fetch(struct bp_pack *p, const struct bp_fetch_rec *f)
{
    uint8_t *r = room(p, BP_FETCH_REC);
    if (!r)
        return;
    put64(r, f->id);
    put16(r + 8, f->attempt);
    r[10] = f->kind;
    r[11] = 0;
    put32(r + 12, f->len);
    put64(r + 16, f->offset);
    p->n++;
}

uint8_t *bp_pack_chunk_reserve(struct bp_pack *p, const struct bp_chunk *c)
{
    uint8_t *r = room(p, BP_CHUNK_FIXED + (size_t)c->len);
    if (!r)
        return NULL;
    put64(r, c->id);
    put16(r + 8, c->attempt);
    r[10] = c->kind;
    r[11] = c->status;
    put32(r + 12, c->code);
    put64(r + 16, c->offset);
    return r + BP_CHUNK_FIXED;
}

void bp_pack_base(struct bp_pack *p, const uint8_t sha256[32], uint64_t size, const char *name,
                  uint16_t name_len)
{
    uint8_t *r = room(p, BP_BASE_REC + (size_t)name_len);
    if (!r)
        return;
    memcpy(r, sha256, 32);
    put64(r + 32, size);
    put16(r + 40, name_len);
    memcpy(r + BP_BASE_REC, name, name_len);
    p->n++;
}

uint8_t *bp_pack_put_reserve(struct bp_pack *p, const struct bp_put *u)
{
    uint8_t *r = room(p, BP_PUT_FIXED + (size_t)u->name_len + u->len);
    if (!r)
        return NULL;
    put64(r, u->id);
    put16(r + 8, u->attempt);
    r[10] = u->idx;
    r[11] = 0;
    put64(r + 12, u->offset);
    put64(r + 20, u->size);
    put16(r + 28, u->name_len);
    memcpy(r + BP_PUT_FIXED, u->name, u->name_len);
    return r + BP_PUT_FIXED + u->name_len;
}

void bp_pack_putack(struct bp_pack *p, const struct bp_putack_rec *a)
{
    uint8_t *r = room(p, BP_PUTACK_REC);
    if (!r)
        return;
    put64(r, a->id);
    put16(r + 8, a->attempt);
    r[10] = a->idx;
    r[11] = a->status;
    put32(r + 12, a->code);
    put64(r + 16, a->received);
    p->n++;
}

void bp_pack_trim(struct bp_pack *p, size_t cut)
{
    if (!p->err && p->len >= BP_MSG_HDR + cut)
        p->len -= cut;
}
